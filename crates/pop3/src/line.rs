//! Reading one command line with a length limit.

use std::io::{self, BufRead};

/// What [`read_line`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// A line without its CRLF or LF.
    Text(Vec<u8>),
    /// A line longer than the limit (consumed up to its end, contents dropped).
    TooLong,
    /// End of input.
    Eof,
}

/// Read up to and including the next LF; lines longer than `max` bytes (counting a CR
/// before the LF) are consumed and
/// reported as [`Line::TooLong`]. A final line without LF counts as a line.
pub fn read_line(r: &mut impl BufRead, max: usize) -> io::Result<Line> {
    let mut out = Vec::new();
    let mut too_long = false;
    let mut any = false;
    loop {
        let buf = match r.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buf.is_empty() {
            if !any {
                return Ok(Line::Eof);
            }
            break;
        }
        any = true;
        let (chunk, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (&buf[..i], i + 1),
            None => (buf, buf.len()),
        };
        if !too_long {
            if out.len() + chunk.len() > max {
                too_long = true;
                out.clear();
            } else {
                out.extend_from_slice(chunk);
            }
        }
        let ended = done <= buf.len() && buf.get(done - 1) == Some(&b'\n');
        r.consume(done);
        if ended {
            break;
        }
    }
    if too_long {
        return Ok(Line::TooLong);
    }
    if out.last() == Some(&b'\r') {
        out.pop();
    }
    Ok(Line::Text(out))
}

/// Split a command line into the upper-cased verb and its argument text.
pub fn split_command(line: &[u8]) -> (String, &[u8]) {
    let (verb, rest) = match line.iter().position(|&b| b == b' ') {
        Some(i) => (&line[..i], &line[i + 1..]),
        None => (line, &b""[..]),
    };
    (String::from_utf8_lossy(verb).to_ascii_uppercase(), rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines() {
        let mut r = io::Cursor::new(b"USER joe\r\nPASS x\nlonglonglong\nlast".to_vec());
        assert_eq!(
            read_line(&mut r, 9).unwrap(),
            Line::Text(b"USER joe".to_vec())
        );
        assert_eq!(
            read_line(&mut r, 9).unwrap(),
            Line::Text(b"PASS x".to_vec())
        );
        assert_eq!(read_line(&mut r, 9).unwrap(), Line::TooLong);
        assert_eq!(read_line(&mut r, 9).unwrap(), Line::Text(b"last".to_vec()));
        assert_eq!(read_line(&mut r, 8).unwrap(), Line::Eof);
        // a long line split across small reads
        let mut r = io::BufReader::with_capacity(3, io::Cursor::new(b"abcdefgh\nok\n".to_vec()));
        assert_eq!(read_line(&mut r, 4).unwrap(), Line::TooLong);
        assert_eq!(read_line(&mut r, 4).unwrap(), Line::Text(b"ok".to_vec()));
        assert_eq!(split_command(b"top 1 2"), ("TOP".to_string(), &b"1 2"[..]));
        assert_eq!(split_command(b"quit"), ("QUIT".to_string(), &b""[..]));
    }
}
