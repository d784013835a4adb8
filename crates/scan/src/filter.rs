//! One message through qmail-scan: the policy walk, then clamd, then the verdict
//! (DESIGN section 10, the filter contract; wave2.md 1.1 for the exit codes).
//!
//! Precedence: a policy hit whose action is `refuse` refuses without asking clamd; then a
//! virus (action of `@virus`, refuse by default); then a policy hit to quarantine; else
//! the message passes with one `X-Qmail-Scanned:` header prepended. clamd without an
//! answer is a temporary failure unless `control/clamdfailopen` is 1 (or the message is
//! going to the quarantine anyway).

use std::time::Duration;

use crate::clamd::{self, Outcome};
use crate::rules::{Action, Builtin, Rules};
use crate::walk::{self, Context, Hit, Stats};

/// How this run is configured (from HOME/control).
#[derive(Debug, Clone)]
pub struct Config {
    pub rules: Rules,
    /// `control/clamd`: unix socket path or host:port; `None` = no virus scan.
    pub clamd: Option<String>,
    /// `control/clamdfailopen` = 1: pass unscanned when clamd has no answer (a risk).
    pub fail_open: bool,
    pub clamd_timeout: Duration,
    /// The name in the added header (`control/me`).
    pub host: String,
}

/// What happens to the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Pass on with this header line (ends in `\n`) prepended.
    Pass(String),
    /// Accept and store in the quarantine for this reason.
    Quarantine(Hit),
    /// Refuse permanently with this text (without the leading `D`), status code included.
    Refuse(String),
    /// Refuse temporarily with this text (without the leading `Z`); the log says why.
    TempFail(String),
}

/// The verdict and what the log line reports.
#[derive(Debug, Clone)]
pub struct Decision {
    pub verdict: Verdict,
    pub hit: Option<Hit>,
    pub virus: Option<String>,
    /// Why clamd gave no answer, if it did not.
    pub clamd_error: Option<String>,
    pub stats: Stats,
}

/// Decide about `message` (fully read) for the envelope and client in `ctx`.
pub fn decide(cfg: &Config, message: &[u8], ctx: &Context) -> Decision {
    let (hit, stats) = walk::check(&cfg.rules, message, ctx);
    let mut d = Decision {
        verdict: Verdict::TempFail(String::new()),
        hit: hit.clone(),
        virus: None,
        clamd_error: None,
        stats,
    };
    if let Some(h) = hit.as_ref().filter(|h| h.action == Action::Refuse) {
        d.verdict = Verdict::Refuse(smtp_text(&h.remark));
        return d;
    }
    let mut scanned_by = "policy";
    if let Some(address) = &cfg.clamd {
        match clamd::scan(address, message, cfg.clamd_timeout) {
            Outcome::Clean => scanned_by = "policy, clamd",
            Outcome::Infected(name) => {
                let v = cfg.rules.builtin(Builtin::Virus);
                d.virus = Some(name.clone());
                let text = smtp_text(&format!("{}: {name}", v.remark));
                d.verdict = match v.action {
                    Action::Refuse => Verdict::Refuse(text),
                    Action::Quarantine => Verdict::Quarantine(Hit {
                        rule: format!("@virus {name}"),
                        line: 0,
                        remark: format!("{}: {name}", v.remark),
                        action: Action::Quarantine,
                        place: "clamd".into(),
                    }),
                };
                return d;
            }
            Outcome::TooBig(e) => {
                // Retrying cannot help: refuse for good (unless fail-open or quarantined).
                d.clamd_error = Some(e);
                if hit.is_none() && !cfg.fail_open {
                    d.verdict =
                        Verdict::Refuse("message too large for the virus scanner (#5.3.4)".into());
                    return d;
                }
                scanned_by = "policy; too large for clamd, not virus-scanned";
            }
            Outcome::Error(e) => {
                d.clamd_error = Some(e);
                if hit.is_none() && !cfg.fail_open {
                    d.verdict = Verdict::TempFail(
                        "virus scanner unavailable, try again later (#4.3.0)".into(),
                    );
                    return d;
                }
                scanned_by = "policy; clamd unavailable, not virus-scanned";
            }
        }
    }
    d.verdict = match hit {
        Some(h) => Verdict::Quarantine(h),
        None => Verdict::Pass(format!(
            "X-Qmail-Scanned: by qmail-scan on {}; clean ({scanned_by})\n",
            header_safe(&cfg.host)
        )),
    };
    d
}

/// A text for the SMTP reply: printable ASCII only, bounded, with the enhanced code.
pub fn smtp_text(remark: &str) -> String {
    let clean: String = remark
        .chars()
        .take(200)
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect();
    format!("{clean} (#5.7.1)")
}

fn header_safe(s: &str) -> String {
    s.chars()
        .take(200)
        .filter(|c| c.is_ascii_graphic())
        .collect()
}

/// qmail-queue's envelope: `F<sender>\0` then `T<rcpt>\0` ... then `\0`.
pub fn parse_envelope(bytes: &[u8]) -> Option<(String, Vec<String>)> {
    if !bytes.ends_with(b"\0\0") {
        return None;
    }
    let mut fields = bytes.split(|&b| b == 0);
    let sender = fields.next()?.strip_prefix(b"F")?;
    let mut rcpts = Vec::new();
    for f in fields {
        if f.is_empty() {
            return Some((String::from_utf8_lossy(sender).into_owned(), rcpts));
        }
        rcpts.push(String::from_utf8_lossy(f.strip_prefix(b"T")?).into_owned());
    }
    None
}

/// The HELO name from the `Received:` line our qmail-smtpd put on top (the first one) (`from HOST (HELO
/// NAME) (...)`; without `(HELO` the HELO equalled HOST). qmail-smtpd reduces it to
/// `[A-Za-z0-9.@%+/=:_\[\]-]`, other characters becoming `?`.
pub fn helo_from_received(message: &[u8]) -> Option<String> {
    // The first Received field: filters earlier in the chain may have put other fields
    // above it, never a Received line.
    let (_, value) = walk::header_fields(message)
        .into_iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("received"))?;
    let rest = value.strip_prefix("from ")?;
    let (host, after) = rest.split_once(' ').unwrap_or((rest, ""));
    match after.strip_prefix("(HELO ") {
        Some(h) => h.split_once(')').map(|(n, _)| n.to_string()),
        None => Some(host.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::net::UnixListener;

    fn config(clamd: Option<String>) -> Config {
        Config {
            rules: Rules::parse(include_str!("../../../control/scanrules")).unwrap(),
            clamd,
            fail_open: false,
            clamd_timeout: Duration::from_secs(2),
            host: "mx.example.test".into(),
        }
    }

    fn fake_clamd(reply: &'static [u8]) -> (tempfile::TempDir, String) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.sock");
        let l = UnixListener::bind(&path).unwrap();
        std::thread::spawn(move || {
            let (mut c, _) = l.accept().unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            while let Ok(n) = c.read(&mut buf) {
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
                if got.ends_with(&[0, 0, 0, 0]) {
                    break;
                }
            }
            let _ = c.write_all(reply);
        });
        (dir, path.to_string_lossy().into_owned())
    }

    #[test]
    fn envelope_parsing() {
        assert_eq!(
            parse_envelope(b"Fa@b\0Tc@d\0Te@f\0\0"),
            Some(("a@b".into(), vec!["c@d".into(), "e@f".into()]))
        );
        assert_eq!(
            parse_envelope(b"F\0Tx\0\0"),
            Some((String::new(), vec!["x".into()]))
        );
        assert_eq!(parse_envelope(b"Fa@b\0Tc@d\0"), None, "unterminated");
        assert_eq!(parse_envelope(b"Fa@b\0Xc\0\0"), None);
        assert_eq!(parse_envelope(b""), None);
    }

    #[test]
    fn helo_from_our_received_line() {
        let m = b"Received: from relay.example.org (HELO relay) (192.0.2.1)\n  by mx with SMTP; date\nSubject: x\n\n";
        assert_eq!(helo_from_received(m).as_deref(), Some("relay"));
        let m = b"Received: from unknown (192.0.2.1)\n  by mx with SMTP; date\n\n";
        assert_eq!(helo_from_received(m).as_deref(), Some("unknown"));
        let m = b"X-Spam-Status: No\nReceived: from a (HELO b) (192.0.2.1)\nReceived: from c (HELO d)\n\n";
        assert_eq!(helo_from_received(m).as_deref(), Some("b"));
        assert_eq!(helo_from_received(b"Subject: x\n\n"), None);
    }

    #[test]
    fn clean_passes_with_one_header() {
        let (_d, sock) = fake_clamd(b"stream: OK\0");
        let d = decide(
            &config(Some(sock)),
            b"Subject: hi\n\nhello\n",
            &Context::default(),
        );
        assert_eq!(
            d.verdict,
            Verdict::Pass(
                "X-Qmail-Scanned: by qmail-scan on mx.example.test; clean (policy, clamd)\n".into()
            )
        );
        let d = decide(
            &config(None),
            b"Subject: hi\n\nhello\n",
            &Context::default(),
        );
        assert!(matches!(d.verdict, Verdict::Pass(h) if h.ends_with("clean (policy)\n")));
    }

    #[test]
    fn virus_is_refused_with_its_name() {
        let (_d, sock) = fake_clamd(b"stream: Test.EICAR FOUND\0");
        let d = decide(
            &config(Some(sock)),
            b"Subject: hi\n\nx\n",
            &Context::default(),
        );
        assert_eq!(
            d.verdict,
            Verdict::Refuse("virus found: Test.EICAR (#5.7.1)".into())
        );
        assert_eq!(d.virus.as_deref(), Some("Test.EICAR"));
    }

    #[test]
    fn clamd_down_is_a_temporary_failure_unless_fail_open() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("gone.sock").to_string_lossy().into_owned();
        let mut cfg = config(Some(sock));
        let d = decide(&cfg, b"Subject: hi\n\nx\n", &Context::default());
        assert!(matches!(d.verdict, Verdict::TempFail(_)));
        assert!(d.clamd_error.is_some());
        cfg.fail_open = true;
        let d = decide(&cfg, b"Subject: hi\n\nx\n", &Context::default());
        assert!(matches!(d.verdict, Verdict::Pass(h) if h.contains("not virus-scanned")));
    }

    #[test]
    fn refuse_rules_and_quarantine_rules() {
        let mut cfg = config(None);
        cfg.rules =
            Rules::parse("Bad.*\tVirus-Subject:\tbad subject\trefuse\n.exe\t0\tno exe\n").unwrap();
        let d = decide(&cfg, b"Subject: Bad one\n\nx\n", &Context::default());
        assert_eq!(d.verdict, Verdict::Refuse("bad subject (#5.7.1)".into()));
        let m = b"Subject: x\nContent-Type: application/octet-stream; name=\"a.exe\"\n\nMZ\n";
        let d = decide(&cfg, m, &Context::default());
        assert!(matches!(d.verdict, Verdict::Quarantine(h) if h.rule == ".exe"));
    }

    #[test]
    fn a_message_over_clamds_stream_limit_is_refused_for_good() {
        let (_d, sock) = fake_clamd(b"INSTREAM size limit exceeded. ERROR\0");
        let d = decide(
            &config(Some(sock)),
            b"Subject: hi\n\nx\n",
            &Context::default(),
        );
        assert_eq!(
            d.verdict,
            Verdict::Refuse("message too large for the virus scanner (#5.3.4)".into())
        );
    }

    #[test]
    fn smtp_text_is_printable() {
        assert_eq!(smtp_text("a\r\nb\u{e9}"), "a??b? (#5.7.1)");
    }
}
