//! The client connection: fd 0 (read) and fd 1 (write) as tcpserver hands them over,
//! every wait bounded by `timeoutsmtpd`, optionally wrapped in TLS.
//!
//! Input is read in bounded chunks into our own buffer, so that on STARTTLS whatever the
//! client pipelined after the command is visible and thrown away before the handshake
//! (CVE-2011-0411 class). Replies are buffered and flushed before any read that would
//! wait, which makes PIPELINING correct: replies in order, one write per batch.

use std::io::{self, Read, Write};
use std::sync::Arc;

/// Anything that carries the plaintext connection: `tls::FdIo` (fd 0/1 with timeouts)
/// in the program, a socket in tests.
pub trait Transport: Read + Write {}
impl<T: Read + Write> Transport for T {}

type Plain = Box<dyn Transport>;

type Tls = rustls::StreamOwned<rustls::ServerConnection, Plain>;

enum Stream {
    Plain(Plain),
    Closed,
    Tls(Box<Tls>),
}

/// What [`Conn::read_line`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// A line without its CR LF (or LF).
    Text(Vec<u8>),
    /// A line longer than the limit; it was read to its end and discarded.
    TooLong,
    /// End of input.
    Eof,
}

/// The buffered, possibly encrypted, client connection.
pub struct Conn {
    stream: Stream,
    /// Input storage: `buf[pos..end]` is read and not yet consumed. Its length only
    /// grows (zero-filled once), so a read does not clear its chunk of it again.
    buf: Vec<u8>,
    pos: usize,
    end: usize,
    out: Vec<u8>,
}

const CHUNK: usize = 16 * 1024;

impl Conn {
    pub fn new(io: Plain) -> Conn {
        Conn {
            stream: Stream::Plain(io),
            buf: Vec::new(),
            pos: 0,
            end: 0,
            out: Vec::with_capacity(1024),
        }
    }

    /// Queue a reply line (CR LF added).
    pub fn send(&mut self, line: &str) {
        self.out.extend_from_slice(line.as_bytes());
        self.out.extend_from_slice(b"\r\n");
    }

    pub fn flush(&mut self) -> io::Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        let out = std::mem::take(&mut self.out);
        let r = match &mut self.stream {
            Stream::Plain(s) => s.write_all(&out),
            Stream::Tls(s) => s.write_all(&out).and_then(|_| s.flush()),
            Stream::Closed => Err(io::ErrorKind::BrokenPipe.into()),
        };
        self.out = out;
        self.out.clear();
        r
    }

    /// Bytes read but not yet consumed.
    pub fn buffered(&self) -> &[u8] {
        &self.buf[self.pos..self.end]
    }

    /// Mark `n` buffered bytes consumed.
    pub fn consume(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.end);
    }

    /// Throw away everything buffered; returns how much that was.
    pub fn discard_buffered(&mut self) -> usize {
        let n = self.end - self.pos;
        self.pos = 0;
        self.end = 0;
        n
    }

    /// Flush replies, then read more input (at most one chunk). `Ok(0)` at EOF.
    pub fn fill(&mut self) -> io::Result<usize> {
        self.flush()?;
        if self.pos > 0 {
            self.buf.copy_within(self.pos..self.end, 0);
            self.end -= self.pos;
            self.pos = 0;
        }
        let old = self.end;
        if self.buf.len() < old + CHUNK {
            self.buf.resize(old + CHUNK, 0);
        }
        let room = &mut self.buf[old..old + CHUNK];
        let r = match &mut self.stream {
            Stream::Plain(s) => s.read(room),
            Stream::Tls(s) => match s.read(room) {
                // A client closing without close_notify: plain EOF for us.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(0),
                r => r,
            },
            Stream::Closed => Ok(0),
        };
        let n = r?;
        debug_assert!(n <= CHUNK, "a read of {n} bytes into {CHUNK}");
        self.end = old + n.min(CHUNK);
        Ok(self.end - old)
    }

    /// Read one line of at most `max` bytes (LF-terminated; one trailing CR removed).
    pub fn read_line(&mut self, max: usize) -> io::Result<Line> {
        let mut too_long = false;
        loop {
            let avail = &self.buf[self.pos..self.end];
            if let Some(i) = avail.iter().position(|&b| b == b'\n') {
                let mut line = avail[..i].to_vec();
                self.pos += i + 1;
                if too_long || line.len() > max + 1 {
                    return Ok(Line::TooLong);
                }
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                if line.len() > max {
                    return Ok(Line::TooLong);
                }
                return Ok(Line::Text(line));
            }
            if avail.len() > max + 1 {
                // Discard the long line's start, keep reading to its end.
                too_long = true;
                self.pos = self.end;
            }
            if self.fill()? == 0 {
                return Ok(Line::Eof);
            }
        }
    }

    /// Switch to TLS (server side). Buffered plaintext must have been discarded.
    pub fn start_tls(&mut self, cfg: Arc<rustls::ServerConfig>) -> io::Result<()> {
        self.flush()?;
        self.discard_buffered();
        let conn = rustls::ServerConnection::new(cfg).map_err(io::Error::other)?;
        let old = std::mem::replace(&mut self.stream, Stream::Closed);
        let Stream::Plain(fd) = old else {
            self.stream = old;
            return Err(io::Error::other("TLS already active"));
        };
        let mut tls = Box::new(rustls::StreamOwned::new(conn, fd));
        // Complete the handshake now, so that errors show up here.
        while tls.conn.is_handshaking() {
            match tls.conn.complete_io(&mut tls.sock) {
                Ok((0, 0)) => return Err(io::Error::from(io::ErrorKind::UnexpectedEof)),
                Ok(_) => {}
                Err(e) => {
                    self.stream = Stream::Tls(tls);
                    return Err(e);
                }
            }
        }
        self.stream = Stream::Tls(tls);
        Ok(())
    }

    pub fn is_tls(&self) -> bool {
        matches!(self.stream, Stream::Tls(_))
    }

    /// The server name the client asked for (TLS SNI), as the client sent it.
    pub fn tls_sni(&self) -> Option<String> {
        let Stream::Tls(s) = &self.stream else {
            return None;
        };
        s.conn.server_name().map(str::to_string)
    }

    /// `TLS1.3 TLS13_AES_256_GCM_SHA384`-style description of the session.
    pub fn tls_description(&self) -> Option<String> {
        let Stream::Tls(s) = &self.stream else {
            return None;
        };
        let v = match s.conn.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_3) => "TLS1.3",
            Some(rustls::ProtocolVersion::TLSv1_2) => "TLS1.2",
            _ => "TLS",
        };
        let c = s
            .conn
            .negotiated_cipher_suite()
            .map(|c| format!("{:?}", c.suite()))
            .unwrap_or_default();
        Some(format!("{v} {c}"))
    }

    /// Flush and, under TLS, send close_notify (best effort).
    pub fn close(&mut self) {
        let _ = self.flush();
        if let Stream::Tls(s) = &mut self.stream {
            s.conn.send_close_notify();
            let _ = s.flush();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn_with(input: &[u8]) -> (Conn, std::os::unix::net::UnixStream) {
        let (a, mut b) = std::os::unix::net::UnixStream::pair().unwrap();
        b.write_all(input).unwrap();
        b.shutdown(std::net::Shutdown::Write).unwrap();
        (Conn::new(Box::new(a)), b)
    }

    #[test]
    fn lines_and_limits() {
        let long = "x".repeat(100);
        let (mut c, _peer) = conn_with(format!("HELO a\r\nNOOP\n{long}\r\nQUIT").as_bytes());
        assert_eq!(c.read_line(50).unwrap(), Line::Text(b"HELO a".to_vec()));
        assert_eq!(c.read_line(50).unwrap(), Line::Text(b"NOOP".to_vec()));
        assert_eq!(c.read_line(50).unwrap(), Line::TooLong);
        assert_eq!(c.read_line(50).unwrap(), Line::Eof);
    }

    #[test]
    fn lines_across_many_reads_come_in_order_from_a_buffer_that_stays_small() {
        // more input than several chunks; each fill reads at most one
        let lines: Vec<String> = (0..5000).map(|i| format!("NOOP {i}")).collect();
        let input = lines.join("\r\n") + "\r\n";
        let (a, mut b) = std::os::unix::net::UnixStream::pair().unwrap();
        let writer = std::thread::spawn(move || {
            b.write_all(input.as_bytes()).unwrap();
            b.shutdown(std::net::Shutdown::Write).unwrap();
            b
        });
        let mut c = Conn::new(Box::new(a));
        for want in &lines {
            assert_eq!(
                c.read_line(512).unwrap(),
                Line::Text(want.as_bytes().to_vec())
            );
            // a line of up to 512 (+ CR LF) left over, and a chunk read after it
            assert!(c.buf.len() <= CHUNK + 512 + 1, "{}", c.buf.len());
        }
        assert_eq!(c.read_line(512).unwrap(), Line::Eof);
        let _peer = writer.join().unwrap();
    }

    /// A connection whose peer stays open, and the peer, to write to in steps.
    fn live_conn() -> (Conn, std::os::unix::net::UnixStream) {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        (Conn::new(Box::new(a)), b)
    }

    #[test]
    fn what_was_discarded_never_comes_back_and_new_input_reads_on() {
        // STARTTLS: whatever came after the command is thrown away before the handshake
        let (mut c, mut b) = live_conn();
        b.write_all(b"STARTTLS\r\nEHLO evil\r\n").unwrap();
        assert_eq!(c.read_line(512).unwrap(), Line::Text(b"STARTTLS".to_vec()));
        assert_eq!(c.discard_buffered(), 11);
        assert!(c.buffered().is_empty());
        b.write_all(b"NOOP\r\n").unwrap();
        assert_eq!(c.read_line(512).unwrap(), Line::Text(b"NOOP".to_vec()));
        assert!(c.buffered().is_empty());
    }

    #[test]
    fn a_line_split_across_two_reads_is_joined() {
        let (mut c, mut b) = live_conn();
        b.write_all(b"HELO a\r\nNO").unwrap();
        assert_eq!(c.read_line(512).unwrap(), Line::Text(b"HELO a".to_vec()));
        // "NO" is kept and moved to the front before the next read
        b.write_all(b"OP\r\nQUIT\r\n").unwrap();
        assert_eq!(c.read_line(512).unwrap(), Line::Text(b"NOOP".to_vec()));
        assert_eq!(c.read_line(512).unwrap(), Line::Text(b"QUIT".to_vec()));
    }

    #[test]
    fn very_long_line_is_discarded_in_bounded_memory() {
        let long = "y".repeat(200_000);
        let (mut c, _peer) = conn_with(format!("{long}\r\nNOOP\r\n").as_bytes());
        assert_eq!(c.read_line(1000).unwrap(), Line::TooLong);
        assert!(c.buf.capacity() < 100_000);
        assert_eq!(c.read_line(1000).unwrap(), Line::Text(b"NOOP".to_vec()));
    }
}
