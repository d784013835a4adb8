//! rblsmtpd: refuse mail from clients listed in DNS block lists (ucspi-tcp 0.88
//! `rblsmtpd.c` with Debian's removal of the default list and the A-record form of
//! ucspi-tcp6; RFC 5782 for the queries; reference/daemontools-ucspi.md section 7.3).
//!
//! The decision, first one wins:
//! - `$RBLSMTPD` set and empty: accept without lookups; starting with `-`: a permanent
//!   refusal (553) with the rest as text; any other value: a temporary refusal (451).
//! - the options, in order: `-r base` looks up the TXT record of the client's reversed
//!   address under `base` (nibbles for IPv6) and refuses with its text when there is one;
//!   `-r base:text` looks up the A record instead and uses `text` (with `%IP%` replaced);
//!   `-a base` accepts when an A record exists (an allow list). `-b`/`-B` choose 553 or
//!   451 (default) for later listings; `-c`/`-C` decide whether a failed lookup refuses
//!   with 451 `temporary RBL lookup error` or is ignored (default).
//! - a permanent refusal becomes 451 when any lookup failed: a DNS outage must never
//!   bounce mail.
//!
//! When refused, rblsmtpd speaks just enough SMTP for the client to read the reason: 220,
//! 250 to HELO/EHLO/MAIL/RSET/NOOP, 221 to QUIT, and the refusal to everything else (so
//! the client sees it at RCPT), until QUIT, end of input, or the `-t` timeout (default 60
//! seconds; `-t 0` prints the refusal once instead of talking).

use std::ffi::OsString;
use std::io::{BufRead, Write};
use std::net::IpAddr;
use std::os::unix::ffi::OsStrExt;
use std::time::Duration;

pub const USAGE: &str =
    "rblsmtpd [ -b ] [ -B ] [ -c ] [ -C ] [ -t timeout ] [ -r base ] [ -a base ] smtpd [ arg ... ]";

/// A lookup that failed (timeout, SERVFAIL...), as opposed to "no such name".
#[derive(Debug)]
pub struct LookupFailed;

/// The DNS answers rblsmtpd needs.
pub trait Lookups {
    /// The TXT text at `name` (records joined), `None` when there is none.
    fn txt(&mut self, name: &str) -> Result<Option<Vec<u8>>, LookupFailed>;
    /// Whether `name` has an A record.
    fn a(&mut self, name: &str) -> Result<bool, LookupFailed>;
}

/// What to do with the connection.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Exec the SMTP server.
    Accept,
    /// Refuse every transaction: the full reply line without CRLF (`451 text`/`553 text`).
    Refuse(Vec<u8>),
}

/// The parsed command line: the verdict, the session timeout and the program to run.
#[derive(Debug)]
pub struct Decision {
    pub verdict: Verdict,
    pub timeout: Duration,
    pub program: Vec<OsString>,
}

/// Decide for the client `ip` given `$RBLSMTPD` and the arguments after argv[0]. `Err`
/// is a usage error. Lookups happen while the options are read, as in rblsmtpd.
pub fn decide(
    rblsmtpd: Option<&[u8]>,
    args: &[OsString],
    ip: Option<IpAddr>,
    dns: &mut dyn Lookups,
) -> Result<Decision, String> {
    let (opts, rest) = qsys::getopt::getopt(args, "bBcCt:r:a:")
        .map_err(|c| format!("illegal option -- {}", c as char))?;
    if rest.is_empty() {
        return Err(String::new());
    }
    // 0 undecided, 1 accept, 2 temporary, 3 permanent
    let (mut decision, mut text): (u8, Vec<u8>) = match rblsmtpd {
        None => (0, Vec::new()),
        Some([]) => (1, Vec::new()),
        Some([b'-', rest @ ..]) => (3, rest.to_vec()),
        Some(v) => (2, v.to_vec()),
    };
    let (mut bounce, mut fail_closed, mut must_not_bounce) = (false, false, false);
    let mut timeout = Duration::from_secs(60);
    let ip_text = ip.map(|i| i.to_string()).unwrap_or_default();
    for o in opts {
        let arg = o.arg.unwrap_or_default();
        match o.letter {
            b'b' => bounce = true,
            b'B' => bounce = false,
            b'c' => fail_closed = true,
            b'C' => fail_closed = false,
            b't' => {
                let n = arg
                    .to_str()
                    .and_then(|s| s.parse::<u64>().ok())
                    .ok_or_else(|| "timeout must be a number".to_string())?;
                timeout = Duration::from_secs(n);
            }
            b'r' | b'a' if decision != 0 => {}
            b'r' => {
                let Some(ip) = ip else { continue };
                let spec = arg.to_string_lossy().into_owned();
                let (base, message) = match spec.split_once(':') {
                    Some((b, m)) => (b.to_string(), Some(m.replace("%IP%", &ip_text))),
                    None => (spec, None),
                };
                let name = dns::reversed_name(ip, &base);
                let listed = match &message {
                    Some(m) => dns.a(&name).map(|hit| hit.then(|| m.as_bytes().to_vec())),
                    None => dns.txt(&name),
                };
                match listed {
                    Ok(Some(t)) => {
                        decision = if bounce { 3 } else { 2 };
                        text = t;
                    }
                    Ok(None) => {}
                    Err(LookupFailed) => {
                        must_not_bounce = true;
                        if fail_closed {
                            decision = 2;
                            text = b"temporary RBL lookup error".to_vec();
                        }
                    }
                }
            }
            b'a' => {
                let Some(ip) = ip else { continue };
                let name = dns::reversed_name(ip, &arg.to_string_lossy());
                match dns.a(&name) {
                    Ok(true) => decision = 1,
                    Ok(false) => {}
                    Err(LookupFailed) => {
                        must_not_bounce = true;
                        if fail_closed {
                            decision = 2;
                            text = b"temporary RBL lookup error".to_vec();
                        }
                    }
                }
            }
            _ => {}
        }
    }
    let verdict = match decision {
        0 | 1 => Verdict::Accept,
        d => {
            let code: &[u8] = if d == 3 && !must_not_bounce {
                b"553 "
            } else {
                b"451 "
            };
            let mut line = code.to_vec();
            line.extend(text.iter().take(200).map(
                |&b| {
                    if (32..=126).contains(&b) { b } else { b'?' }
                },
            ));
            Verdict::Refuse(line)
        }
    };
    Ok(Decision {
        verdict,
        timeout,
        program: rest,
    })
}

/// The refusing SMTP session on `input`/`output` (fds 0/1 in rblsmtpd). Returns when the
/// client quits, closes, or stays silent past the timeout (a read error).
pub fn refuse<R: BufRead, W: Write>(
    reply: &[u8],
    timeout: Duration,
    input: &mut R,
    output: &mut W,
) {
    let mut refusal = reply.to_vec();
    refusal.extend_from_slice(b"\r\n");
    if timeout.is_zero() {
        let _ = output.write_all(&refusal);
        let _ = output.flush();
        return;
    }
    let _ = output.write_all(b"220 rblsmtpd.local\r\n");
    let _ = output.flush();
    let mut line = Vec::new();
    loop {
        line.clear();
        match std::io::Read::take(&mut *input, 1000).read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if line.len() >= 1000 && !line.ends_with(b"\n") {
            // an overlong line: skip the rest of it, then answer it once
            let mut rest = Vec::new();
            loop {
                rest.clear();
                match std::io::Read::take(&mut *input, 1000).read_until(b'\n', &mut rest) {
                    Ok(0) | Err(_) => return,
                    Ok(_) if rest.ends_with(b"\n") => break,
                    Ok(_) => {}
                }
            }
        }
        let verb: Vec<u8> = line
            .iter()
            .take_while(|&&b| b != b' ' && b != b'\r' && b != b'\n')
            .map(u8::to_ascii_lowercase)
            .collect();
        let answer: &[u8] = match verb.as_slice() {
            b"quit" => {
                let _ = output.write_all(b"221 rblsmtpd.local\r\n");
                let _ = output.flush();
                return;
            }
            b"helo" | b"ehlo" | b"mail" | b"rset" | b"noop" => b"250 rblsmtpd.local\r\n",
            _ => &refusal,
        };
        if output
            .write_all(answer)
            .and_then(|()| output.flush())
            .is_err()
        {
            return;
        }
    }
}

/// The argument vector as bytes, for messages.
pub fn show(a: &OsString) -> String {
    String::from_utf8_lossy(a.as_bytes()).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Zone {
        txt: Vec<(&'static str, &'static str)>,
        a: Vec<&'static str>,
        broken: bool,
        asked: Vec<String>,
    }

    impl Lookups for Zone {
        fn txt(&mut self, name: &str) -> Result<Option<Vec<u8>>, LookupFailed> {
            self.asked.push(name.to_string());
            if self.broken {
                return Err(LookupFailed);
            }
            Ok(self
                .txt
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, t)| t.as_bytes().to_vec()))
        }
        fn a(&mut self, name: &str) -> Result<bool, LookupFailed> {
            self.asked.push(name.to_string());
            if self.broken {
                return Err(LookupFailed);
            }
            Ok(self.a.contains(&name))
        }
    }

    fn zone() -> Zone {
        Zone {
            txt: vec![("2.0.0.127.bl.test", "listed: see http://bl.test/\x01")],
            a: vec!["2.0.0.127.bl.test", "3.0.0.127.ok.test"],
            broken: false,
            asked: Vec::new(),
        }
    }

    fn args(s: &[&str]) -> Vec<OsString> {
        s.iter().map(OsString::from).collect()
    }

    fn run(env: Option<&[u8]>, a: &[&str], ip: &str, z: &mut Zone) -> Verdict {
        decide(env, &args(a), Some(ip.parse().unwrap()), z)
            .unwrap()
            .verdict
    }

    /// The TXT text comes from whoever runs (or spoofs) the list's DNS: it reaches the
    /// log line and the SMTP reply, so a CR or LF must not start a new line in either.
    #[test]
    fn txt_line_breaks_cannot_forge_lines() {
        let mut z = zone();
        z.txt = vec![("2.0.0.127.bl.test", "a\r\nrblsmtpd: 1.2.3.4 pid 1: 451 b\n")];
        let Verdict::Refuse(line) = run(None, &["-r", "bl.test", "smtpd"], "127.0.0.2", &mut z)
        else {
            panic!("not refused")
        };
        assert_eq!(line, b"451 a??rblsmtpd: 1.2.3.4 pid 1: 451 b?");
    }

    #[test]
    fn listed_and_not() {
        let mut z = zone();
        assert_eq!(
            run(None, &["-r", "bl.test", "smtpd"], "127.0.0.2", &mut z),
            Verdict::Refuse(b"451 listed: see http://bl.test/?".to_vec())
        );
        assert_eq!(
            run(None, &["-b", "-r", "bl.test", "smtpd"], "127.0.0.2", &mut z),
            Verdict::Refuse(b"553 listed: see http://bl.test/?".to_vec())
        );
        assert_eq!(
            run(None, &["-r", "bl.test", "smtpd"], "127.0.0.9", &mut z),
            Verdict::Accept
        );
        // -b after the -r comes too late for it
        assert!(matches!(
            run(None, &["-r", "bl.test", "-b", "smtpd"], "127.0.0.2", &mut z),
            Verdict::Refuse(l) if l.starts_with(b"451")
        ));
    }

    #[test]
    fn allow_lists_and_environment() {
        let mut z = zone();
        assert_eq!(
            run(
                None,
                &["-a", "ok.test", "-r", "bl.test", "smtpd"],
                "127.0.0.3",
                &mut z
            ),
            Verdict::Accept
        );
        z.asked.clear();
        assert_eq!(
            run(Some(b""), &["-r", "bl.test", "smtpd"], "127.0.0.2", &mut z),
            Verdict::Accept
        );
        assert!(z.asked.is_empty(), "RBLSMTPD= skips every lookup");
        assert_eq!(
            run(Some(b"-go away"), &["smtpd"], "127.0.0.9", &mut z),
            Verdict::Refuse(b"553 go away".to_vec())
        );
        assert_eq!(
            run(Some(b"later"), &["smtpd"], "127.0.0.9", &mut z),
            Verdict::Refuse(b"451 later".to_vec())
        );
    }

    #[test]
    fn a_record_form_and_ipv6_names() {
        let mut z = zone();
        assert_eq!(
            run(
                None,
                &["-b", "-r", "bl.test:blocked %IP%", "smtpd"],
                "127.0.0.2",
                &mut z
            ),
            Verdict::Refuse(b"553 blocked 127.0.0.2".to_vec())
        );
        z.asked.clear();
        run(None, &["-r", "bl6.test", "smtpd"], "2001:db8::1", &mut z);
        assert!(
            z.asked[0].starts_with("1.0.0.0.") && z.asked[0].ends_with(".8.b.d.0.1.0.0.2.bl6.test")
        );
    }

    #[test]
    fn lookup_failures_never_bounce() {
        let mut z = zone();
        z.broken = true;
        assert_eq!(
            run(None, &["-b", "-r", "bl.test", "smtpd"], "127.0.0.2", &mut z),
            Verdict::Accept
        );
        assert_eq!(
            run(None, &["-c", "-r", "bl.test", "smtpd"], "127.0.0.2", &mut z),
            Verdict::Refuse(b"451 temporary RBL lookup error".to_vec())
        );
        z.broken = false;
        let mut z2 = Zone {
            broken: true,
            ..zone()
        };
        // a failed first list turns a later permanent hit into 451
        let d = decide(
            None,
            &args(&["-b", "-r", "x.test", "smtpd"]),
            Some("127.0.0.2".parse().unwrap()),
            &mut z2,
        )
        .unwrap();
        assert_eq!(d.verdict, Verdict::Accept);
    }

    #[test]
    fn usage() {
        let mut z = zone();
        assert!(decide(None, &args(&["-r", "bl.test"]), None, &mut z).is_err());
        assert!(decide(None, &args(&["-z", "smtpd"]), None, &mut z).is_err());
    }

    #[test]
    fn refusing_session() {
        let input = b"EHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nQUIT\r\nNOOP\r\n";
        let mut out = Vec::new();
        refuse(
            b"451 go away",
            Duration::from_secs(5),
            &mut &input[..],
            &mut out,
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "220 rblsmtpd.local\r\n250 rblsmtpd.local\r\n250 rblsmtpd.local\r\n451 go away\r\n451 go away\r\n221 rblsmtpd.local\r\n"
        );
        let mut out = Vec::new();
        refuse(b"553 no", Duration::ZERO, &mut &input[..], &mut out);
        assert_eq!(out, b"553 no\r\n");
    }
}
