//! A quarantined message is hostile bytes: shown on a terminal, an escape sequence in it
//! could retitle the window, move the cursor or hide lines. [`TerminalSafe`] passes
//! text, newlines and tabs through and writes every other control byte (and DEL) as
//! `\xHH`, so what the administrator sees is what the file holds.

use std::io::{self, Write};

/// A writer that escapes control bytes on their way to `inner`.
pub struct TerminalSafe<W: Write>(pub W);

impl<W: Write> Write for TerminalSafe<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut out = Vec::with_capacity(buf.len());
        for &b in buf {
            if (b < 0x20 && b != b'\n' && b != b'\t') || b == 0x7f {
                out.extend_from_slice(format!("\\x{b:02x}").as_bytes());
            } else {
                out.push(b);
            }
        }
        self.0.write_all(&out)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_control_bytes_and_keeps_text() {
        let mut t = TerminalSafe(Vec::new());
        t.write_all(b"Subject: hi\tthere\n\x1b]0;owned\x07\r\x7fok \xc3\xa9\n")
            .unwrap();
        assert_eq!(
            String::from_utf8(t.0).unwrap(),
            "Subject: hi\tthere\n\\x1b]0;owned\\x07\\x0d\\x7fok é\n"
        );
    }
}
