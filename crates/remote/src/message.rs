//! The message on descriptor 0 and its SMTP DATA encoding (RFC 5321 sections 4.5.2 and
//! 2.3.8; qmail's `blast()`, with notqmail's rule that an existing CRLF is not doubled).
//!
//! The message is scanned once before connecting (8-bit bytes for `BODY=8BITMIME`, and
//! a final line without LF, which qmail refuses permanently with #5.6.2 — we refuse it
//! before sending anything), then sent with every bare LF turned into CRLF, a `.` at the
//! start of a line doubled, and `.CRLF` at the end. Descriptor 0 is a regular file; if
//! it cannot be rewound (a pipe), the message is held in memory instead.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};

/// What the pre-scan found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Scan {
    pub eight_bit: bool,
    pub partial_final_line: bool,
    pub bytes: u64,
}

/// The message source.
pub enum Message {
    File(File),
    Mem(Vec<u8>),
}

/// Scan a whole message held in memory.
pub fn scan_bytes(data: &[u8]) -> Scan {
    Scan {
        eight_bit: data.iter().any(|&b| b >= 0x80),
        partial_final_line: data.last().is_some_and(|&b| b != b'\n'),
        bytes: data.len() as u64,
    }
}

impl Message {
    /// Read the message once and remember how to read it again.
    pub fn open(mut f: File) -> io::Result<(Message, Scan)> {
        if f.seek(SeekFrom::Start(0)).is_err() {
            let mut v = Vec::new();
            f.read_to_end(&mut v)?;
            let s = scan_bytes(&v);
            return Ok((Message::Mem(v), s));
        }
        let mut s = Scan::default();
        let mut last = b'\n';
        let mut buf = vec![0u8; 65536];
        loop {
            let n = match f.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            s.eight_bit |= buf[..n].iter().any(|&b| b >= 0x80);
            s.bytes += n as u64;
            last = buf[n - 1];
        }
        s.partial_final_line = last != b'\n';
        f.seek(SeekFrom::Start(0))?;
        Ok((Message::File(f), s))
    }

    /// Send the message, DATA-encoded and terminated, to `out`.
    pub fn send<W: Write>(&mut self, out: &mut W) -> Result<(), SendError> {
        self.send_after(b"", out)
    }

    /// Send `header` (whole header fields: the DKIM signatures) and then the message,
    /// DATA-encoded and terminated, to `out`.
    pub fn send_after<W: Write>(&mut self, header: &[u8], out: &mut W) -> Result<(), SendError> {
        let mut enc = Stuffer::new();
        let mut o = Vec::with_capacity(140_000);
        enc.feed(header, &mut o);
        out.write_all(&o).map_err(SendError::Write)?;
        match self {
            Message::Mem(v) => {
                for chunk in v.chunks(65536) {
                    o.clear();
                    enc.feed(chunk, &mut o);
                    out.write_all(&o).map_err(SendError::Write)?;
                }
            }
            Message::File(f) => {
                let mut buf = vec![0u8; 65536];
                loop {
                    let n = match f.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(SendError::Read(e)),
                    };
                    o.clear();
                    enc.feed(&buf[..n], &mut o);
                    out.write_all(&o).map_err(SendError::Write)?;
                }
            }
        }
        o.clear();
        if !enc.finish(&mut o) {
            return Err(SendError::PartialLine);
        }
        out.write_all(&o).map_err(SendError::Write)?;
        out.flush().map_err(SendError::Write)
    }
}

#[derive(Debug)]
pub enum SendError {
    Read(io::Error),
    Write(io::Error),
    PartialLine,
}

/// The DATA encoder: LF -> CRLF (CRLF kept), leading dot doubled.
#[derive(Clone, Debug)]
pub struct Stuffer {
    at_line_start: bool,
    prev_cr: bool,
}

impl Default for Stuffer {
    fn default() -> Self {
        Self::new()
    }
}

impl Stuffer {
    pub fn new() -> Stuffer {
        Stuffer {
            at_line_start: true,
            prev_cr: false,
        }
    }

    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) {
        for &b in input {
            if self.at_line_start && b == b'.' {
                out.push(b'.');
            }
            if b == b'\n' && !self.prev_cr {
                out.push(b'\r');
            }
            out.push(b);
            self.at_line_start = b == b'\n';
            self.prev_cr = b == b'\r';
        }
    }

    /// Append the terminating `.CRLF`; false if the input ended inside a line.
    pub fn finish(&mut self, out: &mut Vec<u8>) -> bool {
        if !self.at_line_start {
            return false;
        }
        out.extend_from_slice(b".\r\n");
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(input: &[u8]) -> Option<Vec<u8>> {
        let mut s = Stuffer::new();
        let mut o = Vec::new();
        // feed byte by byte to exercise state across chunk boundaries
        for b in input {
            s.feed(std::slice::from_ref(b), &mut o);
        }
        s.finish(&mut o).then_some(o)
    }

    #[test]
    fn lf_becomes_crlf_and_crlf_is_kept() {
        assert_eq!(encode(b"a\nb\r\nc\n").unwrap(), b"a\r\nb\r\nc\r\n.\r\n");
        assert_eq!(encode(b"bare\rcr\n").unwrap(), b"bare\rcr\r\n.\r\n");
    }

    #[test]
    fn leading_dots_doubled() {
        assert_eq!(
            encode(b".\n..x\nno.dot\n.\r\n").unwrap(),
            b"..\r\n...x\r\nno.dot\r\n..\r\n.\r\n"
        );
        assert_eq!(encode(b"").unwrap(), b".\r\n");
    }

    #[test]
    fn partial_final_line_refused() {
        assert!(encode(b"a\nb").is_none());
        assert!(encode(b"a\r").is_none());
    }

    #[test]
    fn scan_and_send_from_file() {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(b"Subject: x\n\n\xc3\xa9t\xc3\xa9\n.end\n")
            .unwrap();
        let (mut m, s) = Message::open(f).unwrap();
        assert!(s.eight_bit && !s.partial_final_line);
        let mut out = Vec::new();
        m.send(&mut out).unwrap();
        assert_eq!(
            out,
            b"Subject: x\r\n\r\n\xc3\xa9t\xc3\xa9\r\n..end\r\n.\r\n"
        );
        assert_eq!(
            scan_bytes(b"x"),
            Scan {
                eight_bit: false,
                partial_final_line: true,
                bytes: 1
            }
        );
        assert!(!scan_bytes(b"").partial_final_line);
        let mut m = Message::Mem(b"a\nb".to_vec());
        assert!(matches!(
            m.send(&mut Vec::new()),
            Err(SendError::PartialLine)
        ));
    }
}
