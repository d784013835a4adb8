//! A clamd INSTREAM client with timeouts (wave2.md 2.1, 2.3).
//!
//! `zINSTREAM\0`, then the data in chunks of a 4-byte big-endian length and the bytes, then
//! a zero length; the reply is one NUL-terminated line: `stream: OK`, `stream: NAME FOUND`
//! or `... ERROR`. clamd closes the connection when a stream goes over its
//! `StreamMaxLength`, while we are still writing: a failed write therefore stops the
//! writing and the reply is still read. Every failure to get a clear answer (refused,
//! timed out, an ERROR reply, anything unexpected) is [`Outcome::Error`]: the caller
//! makes it a temporary failure, never a pass; a stream over clamd's size limit is
//! [`Outcome::TooBig`] (a retry cannot help). The unix-socket connect is non-blocking
//! and retried until the timeout, so a full listen queue cannot hang the filter.

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::time::Duration;

/// clamd's answer about one stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Clean,
    /// The signature name, e.g. `Test.EICAR-NDB.UNOFFICIAL`.
    Infected(String),
    /// The stream is over clamd's `StreamMaxLength`: it will never be scanned.
    TooBig(String),
    /// Why there is no answer (for the log; not for the client).
    Error(String),
}

const CHUNK: usize = 64 * 1024;
const REPLY_MAX: u64 = 4096;

/// Scan `data` with the clamd at `address`: a unix socket path (starting with `/`) or
/// `host:port`. `timeout` bounds the connect and each read and write.
pub fn scan(address: &str, data: &[u8], timeout: Duration) -> Outcome {
    let address = address.trim();
    if address.starts_with('/') {
        match connect_unix(address, timeout) {
            Ok(s) => {
                if let Err(e) = s
                    .set_read_timeout(Some(timeout))
                    .and_then(|_| s.set_write_timeout(Some(timeout)))
                {
                    return Outcome::Error(format!("clamd {address}: {e}"));
                }
                exchange(s, data)
                    .unwrap_or_else(|e| Outcome::Error(format!("clamd {address}: {e}")))
            }
            Err(e) => Outcome::Error(format!("clamd {address}: {e}")),
        }
    } else {
        match connect_tcp(address, timeout) {
            Ok(s) => exchange(s, data)
                .unwrap_or_else(|e| Outcome::Error(format!("clamd {address}: {e}"))),
            Err(e) => Outcome::Error(format!("clamd {address}: {e}")),
        }
    }
}

/// A unix-socket connect that gives up after `timeout` ([`qsys::net::connect_unix`]).
fn connect_unix(path: &str, timeout: Duration) -> io::Result<UnixStream> {
    qsys::net::connect_unix(path, std::time::Instant::now() + timeout)
}

fn connect_tcp(address: &str, timeout: Duration) -> io::Result<TcpStream> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
    for a in address.to_socket_addrs()? {
        match TcpStream::connect_timeout(&a, timeout) {
            Ok(s) => {
                s.set_read_timeout(Some(timeout))?;
                s.set_write_timeout(Some(timeout))?;
                return Ok(s);
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// The protocol over any connected stream (tests use a socket pair).
pub fn exchange<S: Read + Write>(mut s: S, data: &[u8]) -> io::Result<Outcome> {
    let sent = send(&mut s, data);
    let mut reply = Vec::new();
    let read = (&mut s).take(REPLY_MAX).read_to_end(&mut reply);
    if reply.is_empty() {
        // No reply at all: report the first error we met.
        sent?;
        read?;
    }
    Ok(parse_reply(&reply))
}

fn send<S: Write>(s: &mut S, data: &[u8]) -> io::Result<()> {
    s.write_all(b"zINSTREAM\0")?;
    for chunk in data.chunks(CHUNK) {
        let len = u32::try_from(chunk.len()).unwrap_or(u32::MAX).to_be_bytes();
        s.write_all(&len)?;
        s.write_all(chunk)?;
    }
    s.write_all(&[0, 0, 0, 0])?;
    s.flush()
}

/// `stream: OK`, `stream: NAME FOUND`, anything else is an error.
pub fn parse_reply(reply: &[u8]) -> Outcome {
    let end = reply.iter().position(|&b| b == 0).unwrap_or(reply.len());
    let text = String::from_utf8_lossy(&reply[..end]);
    let text = text.trim_end_matches(['\n', '\r']);
    if text == "stream: OK" {
        return Outcome::Clean;
    }
    if let Some(name) = text
        .strip_prefix("stream: ")
        .and_then(|r| r.strip_suffix(" FOUND"))
        .filter(|n| !n.is_empty())
    {
        return Outcome::Infected(name.to_string());
    }
    if text.contains("size limit exceeded") {
        return Outcome::TooBig(format!(
            "clamd answered: {}",
            qsys::logsafe::text(text.as_bytes())
        ));
    }
    if text.is_empty() {
        return Outcome::Error("clamd closed the connection without a reply".into());
    }
    Outcome::Error(format!(
        "clamd answered: {}",
        qsys::logsafe::text(text.as_bytes())
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    /// A fake clamd on a unix socket that reads the INSTREAM chunks and answers.
    fn fake(
        reply: &'static [u8],
        read_limit: Option<usize>,
    ) -> (tempfile::TempDir, String, std::thread::JoinHandle<Vec<u8>>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("clamd.sock");
        let l = UnixListener::bind(&path).unwrap();
        let t = std::thread::spawn(move || {
            let (mut c, _) = l.accept().unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 8192];
            loop {
                if read_limit.is_some_and(|lim| got.len() >= lim) {
                    break;
                }
                match c.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
                if got.ends_with(&[0, 0, 0, 0]) {
                    break;
                }
            }
            let _ = c.write_all(reply);
            got
        });
        (dir, path.to_string_lossy().into_owned(), t)
    }

    #[test]
    fn replies() {
        assert_eq!(parse_reply(b"stream: OK\0"), Outcome::Clean);
        assert_eq!(
            parse_reply(b"stream: Test.EICAR-NDB.UNOFFICIAL FOUND\0"),
            Outcome::Infected("Test.EICAR-NDB.UNOFFICIAL".into())
        );
        assert!(
            matches!(parse_reply(b"INSTREAM size limit exceeded. ERROR\0"), Outcome::TooBig(e) if e.contains("limit"))
        );
        assert!(matches!(parse_reply(b""), Outcome::Error(_)));
        assert!(matches!(
            parse_reply(b"Can't allocate memory ERROR\0"),
            Outcome::Error(_)
        ));
        assert!(matches!(
            parse_reply(b"stream:  FOUND\0"),
            Outcome::Error(_)
        ));
    }

    #[test]
    fn streams_in_chunks_and_reads_the_verdict() {
        let (_d, path, t) = fake(b"stream: Evil FOUND\0", None);
        let data = vec![b'a'; 150_000];
        let out = scan(&path, &data, Duration::from_secs(5));
        assert_eq!(out, Outcome::Infected("Evil".into()));
        let got = t.join().unwrap();
        assert!(got.starts_with(b"zINSTREAM\0\0\x01\0\0"));
        assert_eq!(got.len(), 10 + 4 * 3 + 150_000 + 4);
    }

    #[test]
    fn size_limit_reply_is_read_after_the_server_stops_reading() {
        let (_d, path, t) = fake(b"INSTREAM size limit exceeded. ERROR\0", Some(1000));
        let data = vec![b'a'; 8 << 20];
        let out = scan(&path, &data, Duration::from_secs(5));
        assert!(
            matches!(&out, Outcome::TooBig(e) if e.contains("limit")),
            "{out:?}"
        );
        t.join().unwrap();
    }

    #[test]
    fn unreachable_and_silent_clamd_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("none.sock");
        assert!(matches!(
            scan(&missing.to_string_lossy(), b"x", Duration::from_secs(1)),
            Outcome::Error(_)
        ));
        // A server that accepts and never answers: the read timeout ends the wait.
        let path = dir.path().join("mute.sock");
        let l = UnixListener::bind(&path).unwrap();
        let t = std::thread::spawn(move || {
            let (c, _) = l.accept().unwrap();
            std::thread::sleep(Duration::from_secs(2));
            drop(c);
        });
        let start = std::time::Instant::now();
        let out = scan(&path.to_string_lossy(), b"x", Duration::from_millis(300));
        assert!(matches!(&out, Outcome::Error(_)), "{out:?}");
        assert!(start.elapsed() < Duration::from_millis(1800));
        t.join().unwrap();
        // A listener whose queue is full and who never accepts: connect gives up in time.
        let path = dir.path().join("full.sock");
        let l = UnixListener::bind(&path).unwrap();
        nix::sys::socket::listen(&l, nix::sys::socket::Backlog::new(0).unwrap()).unwrap();
        let mut queued = Vec::new();
        for _ in 0..4 {
            if let Ok(c) = connect_unix(&path.to_string_lossy(), Duration::from_millis(50)) {
                queued.push(c);
            }
        }
        assert!(queued.len() < 4, "the listen queue filled up");
        let start = std::time::Instant::now();
        let out = scan(&path.to_string_lossy(), b"x", Duration::from_millis(300));
        assert!(matches!(&out, Outcome::Error(_)), "{out:?}");
        assert!(start.elapsed() < Duration::from_millis(1500));
        drop(l);
        // TCP: nothing listens on port 1 of localhost.
        assert!(matches!(
            scan("127.0.0.1:1", b"x", Duration::from_secs(1)),
            Outcome::Error(_)
        ));
    }
}
