//! Our spamc-protocol client (SpamAssassin's spamd, protocol SPAMC/1.5; verified with
//! raw sockets in wave2.md 3.2).
//!
//! Request: `VERB SPAMC/1.5\r\n`, header lines, `Content-length: N\r\n`, an empty
//! line, exactly N message bytes; then we half-close and read the reply to EOF:
//! `SPAMD/1.x CODE TEXT\r\n`, header lines, an empty line, a body. CODE 0 (`EX_OK`) is
//! success; any other code is spamd's error (sysexits numbers).
//!
//! - `SYMBOLS`: header `Spam: True|False ; SCORE / REQUIRED`, body the names of the
//!   tests that hit, comma-separated ([`check`]).
//! - `TELL` with `Message-class: spam|ham` and `Set: local`: learning (spamd must run
//!   with `--allow-tell`); reply header `DidSet: local` when it learnt, none when the
//!   message was already learnt that way ([`tell`]).
//! - `PING`: `SPAMD/1.5 0 PONG` ([`ping`]).
//!
//! Every step has a deadline: the unix-socket connect is non-blocking and retried (a
//! full listen queue cannot hang us), TCP connects with a timeout, every read and write
//! gets the time left. A reply is read up to [`MAX_REPLY`] bytes. Any failure is an
//! [`Error`] naming what happened, for the log; the caller decides (the filter passes
//! the message unscored, the learner retries later).

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

/// The most reply bytes read (a SYMBOLS reply is a few hundred).
pub const MAX_REPLY: u64 = 64 * 1024;

/// Why spamd gave no usable answer (a text for the log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(pub String);

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// spamd's verdict on one message.
#[derive(Debug, Clone, PartialEq)]
pub struct Score {
    /// `Spam: True`: the score reached spamd's required score.
    pub spam: bool,
    pub score: f64,
    pub required: f64,
    /// The tests that hit, as spamd named them (only `[A-Za-z0-9_]` kept).
    pub tests: Vec<String>,
}

/// The two kinds of message spamd learns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Spam,
    Ham,
}

impl Class {
    pub fn word(self) -> &'static str {
        match self {
            Class::Spam => "spam",
            Class::Ham => "ham",
        }
    }

    pub fn from_word(w: &str) -> Option<Class> {
        match w {
            "spam" => Some(Class::Spam),
            "ham" => Some(Class::Ham),
            _ => None,
        }
    }
}

/// A connected stream to spamd.
enum Stream {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Stream {
    fn set_timeout(&self, t: Duration) -> io::Result<()> {
        // a zero timeout means "none" to the kernel: never pass it
        let t = Some(t.max(Duration::from_millis(1)));
        match self {
            Stream::Unix(s) => s.set_read_timeout(t).and_then(|_| s.set_write_timeout(t)),
            Stream::Tcp(s) => s.set_read_timeout(t).and_then(|_| s.set_write_timeout(t)),
        }
    }

    fn shutdown_write(&self) -> io::Result<()> {
        match self {
            Stream::Unix(s) => s.shutdown(Shutdown::Write),
            Stream::Tcp(s) => s.shutdown(Shutdown::Write),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => s.read(buf),
            Stream::Tcp(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => s.write(buf),
            Stream::Tcp(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// DJB's wording for a system error, else the error's own text.
fn describe(e: &io::Error) -> String {
    if matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    ) {
        return "timed out".into();
    }
    match e.raw_os_error() {
        Some(_) => qsys::die::errstr(e).to_string(),
        None => e.to_string(),
    }
}

fn left(deadline: Instant) -> io::Result<Duration> {
    let now = Instant::now();
    if now >= deadline {
        return Err(io::Error::new(io::ErrorKind::TimedOut, "timed out"));
    }
    Ok(deadline - now)
}

/// Connect to `address`: a unix socket path (starting with `/`) or `IP:port`
/// (`[IPv6]:port`).
fn connect(address: &str, deadline: Instant) -> io::Result<Stream> {
    if address.starts_with('/') {
        return qsys::net::connect_unix(address, deadline).map(Stream::Unix);
    }
    // no name lookups: qmail-spamc is linked statically, where NSS must not run
    let addr: SocketAddr = address
        .parse()
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "not a socket path or IP:port"))?;
    TcpStream::connect_timeout(&addr, left(deadline)?).map(Stream::Tcp)
}

/// A reply: status code, header lines (name, value), body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: i32,
    pub text: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Parse spamd's reply.
pub fn parse_reply(raw: &[u8]) -> Result<Reply, Error> {
    let bad = |what: &str| {
        Error(format!(
            "spamd answered {what}: {}",
            qsys::logsafe::text(&raw[..raw.len().min(80)])
        ))
    };
    if raw.is_empty() {
        return Err(Error("spamd closed the connection without a reply".into()));
    }
    let (head, body) = match find(raw, b"\r\n\r\n") {
        Some(i) => (&raw[..i], &raw[i + 4..]),
        None => (raw, &b""[..]),
    };
    let head = String::from_utf8_lossy(head);
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or("");
    let mut words = status.splitn(3, ' ');
    let proto = words.next().unwrap_or("");
    if !proto.starts_with("SPAMD/") {
        return Err(bad("something else"));
    }
    let code = words
        .next()
        .and_then(|c| c.parse::<i32>().ok())
        .ok_or_else(|| bad("no status code"))?;
    let text = words.next().unwrap_or("").to_string();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    Ok(Reply {
        code,
        text,
        headers,
        body: body.to_vec(),
    })
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Send one request and read the whole reply.
pub fn exchange(
    address: &str,
    verb: &str,
    headers: &[(&str, &str)],
    message: &[u8],
    timeout: Duration,
) -> Result<Reply, Error> {
    let deadline = Instant::now() + timeout;
    let address = address.trim();
    let fail = |e: io::Error| Error(format!("spamd {address}: {}", describe(&e)));
    let mut s = connect(address, deadline).map_err(fail)?;
    let mut req = format!("{verb} SPAMC/1.5\r\n");
    for (n, v) in headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    req.push_str(&format!("Content-length: {}\r\n\r\n", message.len()));
    let sent = (|| {
        s.set_timeout(left(deadline)?)?;
        s.write_all(req.as_bytes())?;
        for chunk in message.chunks(64 * 1024) {
            s.set_timeout(left(deadline)?)?;
            s.write_all(chunk)?;
        }
        s.shutdown_write()
    })();
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    let read = loop {
        match left(deadline).and_then(|t| s.set_timeout(t)) {
            Ok(()) => {}
            Err(e) => break Err(e),
        }
        match s.read(&mut buf) {
            Ok(0) => break Ok(()),
            Ok(n) => {
                raw.extend_from_slice(&buf[..n]);
                if raw.len() as u64 > MAX_REPLY {
                    return Err(Error(format!("spamd {address}: reply too long")));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => break Err(e),
        }
    };
    if raw.is_empty() {
        // no reply at all: the first error met says why
        sent.map_err(fail)?;
        read.map_err(fail)?;
    } else if let Err(e) = read {
        return Err(fail(e));
    }
    let reply = parse_reply(&raw)?;
    if reply.code != 0 {
        return Err(Error(format!(
            "spamd {address} answered {} {}",
            reply.code,
            qsys::logsafe::text(reply.text.as_bytes())
        )));
    }
    Ok(reply)
}

/// Score `message` (verb `SYMBOLS`).
pub fn check(address: &str, message: &[u8], timeout: Duration) -> Result<Score, Error> {
    let reply = exchange(address, "SYMBOLS", &[], message, timeout)?;
    score_of(&reply)
}

/// The score in a `SYMBOLS` (or `CHECK`) reply.
pub fn score_of(reply: &Reply) -> Result<Score, Error> {
    let spam = reply
        .header("Spam")
        .ok_or_else(|| Error("spamd answered without a Spam: line".into()))?;
    parse_spam_line(spam, &reply.body).ok_or_else(|| {
        Error(format!(
            "spamd answered Spam: {}",
            qsys::logsafe::text(spam.as_bytes())
        ))
    })
}

/// `True ; 1000.0 / 5.0` and the test names of the body.
pub fn parse_spam_line(value: &str, body: &[u8]) -> Option<Score> {
    let (flag, numbers) = value.split_once(';')?;
    let spam = match flag.trim() {
        "True" | "Yes" => true,
        "False" | "No" => false,
        _ => return None,
    };
    let (score, required) = numbers.split_once('/')?;
    // a score outside what any rule set gives is nonsense, not a verdict
    let sane = |f: &f64| f.is_finite() && f.abs() <= 1e6;
    let score: f64 = score.trim().parse().ok().filter(sane)?;
    let required: f64 = required.trim().parse().ok().filter(sane)?;
    let tests = String::from_utf8_lossy(body)
        .split([',', '\r', '\n'])
        .map(|t| {
            t.chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                .take(64)
                .collect::<String>()
        })
        .filter(|t| !t.is_empty())
        .take(200)
        .collect();
    Some(Score {
        spam,
        score,
        required,
        tests,
    })
}

/// Teach spamd that `message` is `class` (`TELL`, `Set: local`). `Ok(true)`: learnt now;
/// `Ok(false)`: spamd had already learnt it so.
pub fn tell(address: &str, message: &[u8], class: Class, timeout: Duration) -> Result<bool, Error> {
    let reply = exchange(
        address,
        "TELL",
        &[("Message-class", class.word()), ("Set", "local")],
        message,
        timeout,
    )?;
    Ok(reply
        .header("DidSet")
        .is_some_and(|v| v.split(',').any(|w| w.trim() == "local")))
}

/// `PING`: true when spamd answers `PONG`.
pub fn ping(address: &str, timeout: Duration) -> Result<(), Error> {
    let deadline = Instant::now() + timeout;
    let fail = |e: io::Error| Error(format!("spamd {address}: {}", describe(&e)));
    let mut s = connect(address.trim(), deadline).map_err(fail)?;
    s.set_timeout(left(deadline).map_err(fail)?).map_err(fail)?;
    s.write_all(b"PING SPAMC/1.5\r\n\r\n").map_err(fail)?;
    let _ = s.shutdown_write();
    let mut raw = Vec::new();
    (&mut s)
        .take(MAX_REPLY)
        .read_to_end(&mut raw)
        .map_err(fail)?;
    let r = parse_reply(&raw)?;
    if r.code == 0 && r.text.trim() == "PONG" {
        Ok(())
    } else {
        Err(Error(format!(
            "spamd answered {}",
            qsys::logsafe::text(&raw[..raw.len().min(80)])
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    /// A fake spamd: reads the request header and its Content-length bytes, answers.
    fn fake(reply: &'static [u8]) -> (tempfile::TempDir, String, std::thread::JoinHandle<Vec<u8>>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spamd.sock");
        let l = UnixListener::bind(&path).unwrap();
        let t = std::thread::spawn(move || {
            let (mut c, _) = l.accept().unwrap();
            let mut got = Vec::new();
            let _ = c.read_to_end(&mut got);
            let _ = c.write_all(reply);
            got
        });
        (dir, path.to_string_lossy().into_owned(), t)
    }

    const T: Duration = Duration::from_secs(5);

    #[test]
    fn symbols_request_and_reply() {
        let (_d, sock, t) = fake(
            b"SPAMD/1.1 0 EX_OK\r\nContent-length: 27\r\nSpam: True ; 1000.0 / 5.0\r\n\r\nGTUBE,NO_RECEIVED,NO_RELAYS",
        );
        let s = check(&sock, b"Subject: x\n\nbody\n", T).unwrap();
        assert!(s.spam);
        assert_eq!(s.score, 1000.0);
        assert_eq!(s.required, 5.0);
        assert_eq!(s.tests, vec!["GTUBE", "NO_RECEIVED", "NO_RELAYS"]);
        let req = t.join().unwrap();
        assert_eq!(
            req,
            b"SYMBOLS SPAMC/1.5\r\nContent-length: 17\r\n\r\nSubject: x\n\nbody\n"
        );
    }

    #[test]
    fn tell_and_its_answers() {
        let (_d, sock, t) = fake(b"SPAMD/1.1 0 EX_OK\r\nDidSet: local\r\n\r\n");
        assert_eq!(tell(&sock, b"m\n", Class::Spam, T), Ok(true));
        let req = String::from_utf8(t.join().unwrap()).unwrap();
        assert!(req.starts_with("TELL SPAMC/1.5\r\nMessage-class: spam\r\nSet: local\r\n"));
        let (_d, sock, _t) = fake(b"SPAMD/1.1 0 EX_OK\r\n\r\n");
        assert_eq!(tell(&sock, b"m\n", Class::Ham, T), Ok(false));
        let (_d, sock, _t) =
            fake(b"SPAMD/1.0 69 Service Unavailable: TELL commands are not enabled\r\n\r\n");
        let e = tell(&sock, b"m\n", Class::Ham, T).unwrap_err();
        assert!(e.0.contains("69"), "{e}");
    }

    #[test]
    fn malformed_replies_are_errors_not_panics() {
        for raw in [
            &b""[..],
            b"HTTP/1.0 200 OK\r\n\r\n",
            b"SPAMD/1.1 x\r\n\r\n",
            b"SPAMD/1.1 0 EX_OK\r\n\r\n",
            b"SPAMD/1.1 0 EX_OK\r\nSpam: Maybe ; 1 / 2\r\n\r\n",
            b"SPAMD/1.1 0 EX_OK\r\nSpam: True ; NaN / 2\r\n\r\n",
            b"SPAMD/1.1 0 EX_OK\r\nSpam: True ; 1e300 / 2\r\n\r\n",
            b"SPAMD/1.1 0 EX_OK\r\nSpam: True ; 1\r\n\r\n",
            b"\xff\xfe\r\n\r\n\r\n",
        ] {
            let r = parse_reply(raw).and_then(|r| score_of(&r));
            assert!(r.is_err(), "{raw:?}");
        }
        let s = parse_spam_line("False ; -0.0 / 5.0", b"a\r\nb;c,D_1\n").unwrap();
        assert!(!s.spam);
        assert_eq!(s.tests, vec!["a", "bc", "D_1"]);
    }

    #[test]
    fn down_and_silent_spamd_are_errors_in_time() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("none.sock");
        assert!(check(&missing.to_string_lossy(), b"x", T).is_err());
        assert!(check("127.0.0.1:1", b"x", T).is_err());
        let path = dir.path().join("mute.sock");
        let l = UnixListener::bind(&path).unwrap();
        let t = std::thread::spawn(move || {
            let (c, _) = l.accept().unwrap();
            std::thread::sleep(Duration::from_secs(2));
            drop(c);
        });
        let start = Instant::now();
        let r = check(&path.to_string_lossy(), b"x", Duration::from_millis(300));
        assert!(r.is_err());
        assert!(start.elapsed() < Duration::from_millis(1800));
        t.join().unwrap();
    }

    #[test]
    fn a_reply_that_never_ends_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.sock");
        let l = UnixListener::bind(&path).unwrap();
        std::thread::spawn(move || {
            let (mut c, _) = l.accept().unwrap();
            let junk = vec![b'a'; 1 << 20];
            let _ = c.write_all(b"SPAMD/1.1 0 EX_OK\r\n");
            let _ = c.write_all(&junk);
        });
        assert!(check(&path.to_string_lossy(), b"x", T).is_err());
    }
}
