//! SMTP reply parsing for the client (RFC 5321 section 4.2; qmail's `smtpcode()`).
//!
//! A reply is one or more lines; `xyz-text` continues, `xyz text` (or a bare `xyz`) ends
//! it. As in qmail the code is taken from the first line and the text kept is the reply
//! as received with CRs dropped, each line ending `\n`, capped at 5000 bytes
//! (HUGESMTPTEXT); NULs are turned into `?` when reported. Unlike qmail, a first line that
//! does not start with three digits `2`..`5` gives code 0, which every caller treats as a
//! temporary failure (never as success). Lines are read with a length cap, and a reply
//! longer than [`MAX_REPLY_BYTES`] in total is treated as a broken connection, so a
//! hostile server cannot make us buffer without bound.

use std::io;

/// qmail's HUGESMTPTEXT: the most reply text kept for reports.
pub const MAX_TEXT: usize = 5000;
/// Longest line kept for parsing (the rest of a longer line is read and dropped).
pub const MAX_LINE: usize = 4096;
/// Most bytes read for one reply before giving up on the connection.
pub const MAX_REPLY_BYTES: usize = 1 << 20;
/// Most lines kept for EHLO keyword parsing.
const MAX_LINES: usize = 200;

/// One SMTP reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// 200..=599, or 0 when the reply was malformed.
    pub code: u16,
    /// The reply as received: CRs dropped, lines joined with `\n`, capped at [`MAX_TEXT`].
    pub text: String,
    /// The text part of each line (after `xyz-` / `xyz `), for EHLO keywords.
    pub lines: Vec<String>,
}

/// How the client treats a reply code (qmail: `>= 500`, `>= 400`, else success).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    Ok,
    Temp,
    Perm,
}

impl Reply {
    pub fn class(&self) -> Class {
        match self.code {
            500..=599 => Class::Perm,
            200..=399 => Class::Ok,
            _ => Class::Temp,
        }
    }
}

fn code_of(line: &[u8]) -> u16 {
    if line.len() >= 3
        && line[..3].iter().all(u8::is_ascii_digit)
        && (b'2'..=b'5').contains(&line[0])
    {
        line[..3]
            .iter()
            .fold(0u16, |a, d| a * 10 + u16::from(d - b'0'))
    } else {
        0
    }
}

/// Read one reply; `next_line` returns the next line without its `\n` (a CR before it
/// may still be there), at most [`MAX_LINE`] bytes of it, plus the number of bytes the
/// full line had on the wire. An I/O error (timeout, EOF, reset) is passed through.
pub fn read_reply<F>(mut next_line: F) -> io::Result<Reply>
where
    F: FnMut() -> io::Result<(Vec<u8>, usize)>,
{
    let mut text: Vec<u8> = Vec::new();
    let mut lines = Vec::new();
    let mut code = None;
    let mut total = 0usize;
    loop {
        let (line, wire) = next_line()?;
        total = total.saturating_add(wire);
        if total > MAX_REPLY_BYTES {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "SMTP reply too long",
            ));
        }
        let line: Vec<u8> = line.into_iter().filter(|&b| b != b'\r').collect();
        if code.is_none() {
            code = Some(code_of(&line));
        }
        if text.len() < MAX_TEXT {
            let room = MAX_TEXT - text.len();
            let take = line.len().min(room.saturating_sub(1));
            text.extend_from_slice(&line[..take]);
            text.push(b'\n');
        }
        if lines.len() < MAX_LINES {
            let body = if line.len() > 4 { &line[4..] } else { &[][..] };
            lines.push(String::from_utf8_lossy(body).into_owned());
        }
        // qmail: the 4th byte `-` means another line follows.
        if line.get(3) != Some(&b'-') {
            break;
        }
    }
    Ok(Reply {
        code: code.unwrap_or(0),
        text: String::from_utf8_lossy(&text).into_owned(),
        lines,
    })
}

/// ESMTP extensions offered in an EHLO reply (RFC 5321 4.1.1.1), keywords upper-cased.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Extensions {
    pub pipelining: bool,
    pub eightbitmime: bool,
    pub starttls: bool,
    pub size: Option<u64>,
}

impl Extensions {
    pub fn from_ehlo(reply: &Reply) -> Extensions {
        let mut e = Extensions::default();
        // The first line is the greeting-like domain line, not an extension.
        for l in reply.lines.iter().skip(1) {
            let mut words = l.split_ascii_whitespace();
            let Some(kw) = words.next() else { continue };
            match kw.to_ascii_uppercase().as_str() {
                "PIPELINING" => e.pipelining = true,
                "8BITMIME" => e.eightbitmime = true,
                "STARTTLS" => e.starttls = true,
                "SIZE" => e.size = Some(words.next().and_then(|w| w.parse().ok()).unwrap_or(0)),
                _ => {}
            }
        }
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(wire: &[u8]) -> io::Result<Reply> {
        let mut rest: &[u8] = wire;
        read_reply(|| {
            if rest.is_empty() {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            let end = rest
                .iter()
                .position(|&b| b == b'\n')
                .map(|i| i + 1)
                .unwrap_or(rest.len());
            let (line, tail) = rest.split_at(end);
            rest = tail;
            let l = line.strip_suffix(b"\n").unwrap_or(line);
            Ok((l[..l.len().min(MAX_LINE)].to_vec(), line.len()))
        })
    }

    #[test]
    fn single_line() {
        let r = parse(b"250 ok 12 qp 3\r\n").unwrap();
        assert_eq!(r.code, 250);
        assert_eq!(r.text, "250 ok 12 qp 3\n");
        assert_eq!(r.class(), Class::Ok);
    }

    #[test]
    fn multiline_keeps_all_lines_and_stops_at_space() {
        let r = parse(b"550-first\r\n550-second\r\n550 third\r\n250 next reply\r\n").unwrap();
        assert_eq!(r.code, 550);
        assert_eq!(r.text, "550-first\n550-second\n550 third\n");
        assert_eq!(r.class(), Class::Perm);
        assert_eq!(r.lines, vec!["first", "second", "third"]);
    }

    #[test]
    fn bare_code_and_temp() {
        let r = parse(b"451\r\n").unwrap();
        assert_eq!((r.code, r.class()), (451, Class::Temp));
    }

    #[test]
    fn garbage_is_code_zero_and_temporary() {
        for w in [
            &b"hello there\r\n"[..],
            b"\r\n",
            b"99\r\n",
            b"650 what\r\n",
            b"\xff\xfe\x00\r\n",
            b"1234\r\n",
        ] {
            let r = parse(w).unwrap();
            assert_eq!(r.code, 0, "{w:?}");
            assert_eq!(r.class(), Class::Temp);
        }
    }

    #[test]
    fn eof_in_the_middle_is_an_error() {
        assert!(parse(b"250-more coming\r\n").is_err());
        assert!(parse(b"").is_err());
    }

    #[test]
    fn overlong_text_is_capped() {
        let mut w = Vec::new();
        for _ in 0..100 {
            w.extend_from_slice(b"250-");
            w.extend_from_slice(&[b'x'; 300]);
            w.extend_from_slice(b"\r\n");
        }
        w.extend_from_slice(b"250 end\r\n");
        let r = parse(&w).unwrap();
        assert_eq!(r.code, 250);
        assert!(r.text.len() <= MAX_TEXT);
        assert!(r.text.ends_with('\n'));
    }

    #[test]
    fn endless_reply_is_refused() {
        let line = [b"250-".as_slice(), &[b'y'; 4000], b"\r\n"].concat();
        let w: Vec<u8> = line
            .iter()
            .copied()
            .cycle()
            .take(line.len() * 400)
            .collect();
        assert!(parse(&w).is_err());
    }

    #[test]
    fn ehlo_extensions() {
        let r = parse(b"250-mx.example Hello\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250-8bitmime\r\n250 STARTTLS\r\n").unwrap();
        let e = Extensions::from_ehlo(&r);
        assert!(e.pipelining && e.eightbitmime && e.starttls);
        assert_eq!(e.size, Some(1000));
        let r = parse(b"250 mx.example PIPELINING\r\n").unwrap();
        assert_eq!(Extensions::from_ehlo(&r), Extensions::default());
    }
}
