//! Splitting a message into header fields and body the way qmail-inject does
//! (qmail's `headerbody.c` and `hfield.c`; RFC 5322 section 2.2 fields and folding).
//!
//! The header is read line by line from the input. A line starting with a space or tab
//! continues the previous field. The header ends at an empty line (`\n`, and here also
//! `\r\n`), at end of input, or at the first line that is not a field (no `:`, or a field
//! name with a byte outside 33..126): qmail then inserts an empty line and that line
//! starts the body, so nothing of the input is ever lost. A `From ` line (mbox
//! separator) in the header is kept as the field `MBOX-Line: From ...`. A last line
//! without its newline gets one, as in qmail. A message without any header is an empty
//! header plus the whole input as body.
//!
//! Memory is bounded: the header (not the body, which is streamed) may hold at most
//! [`MAX_HEADER`] bytes, so a 2 MB header line works and a 100 MB one fails cleanly.
//!
//! Field boundaries are taken from `mail_parser`'s `parse_headers` (its byte offsets:
//! `offset_field`..`offset_end`) run over the header block found here; the block only
//! holds valid field lines, where mail-parser and qmail agree. If mail-parser's fields do
//! not tile the block exactly (it skips lines it does not understand, see the crates
//! reference), the boundaries found by the line scan here are used instead, so untouched
//! fields are always copied byte for byte.

use std::io::{self, BufRead};
use std::ops::Range;

/// The most header bytes qmail-inject holds in memory.
pub const MAX_HEADER: usize = 4 << 20;

/// Why the header could not be read.
#[derive(Debug)]
pub enum ReadError {
    Io(io::Error),
    /// The header is larger than [`MAX_HEADER`].
    TooLong,
}

/// A message header as read from the input.
#[derive(Debug, Default)]
pub struct Header {
    /// The header lines, each ending in `\n` (MBOX-Line synthesized).
    pub block: Vec<u8>,
    /// Each field (with its continuation lines) as a range of `block`.
    pub fields: Vec<Range<usize>>,
    /// The input that starts the body: the empty line, or `\n` plus the first line that
    /// was not a field; empty when the input ended inside the header.
    pub body_start: Vec<u8>,
    /// True if the input may hold more body after `body_start`.
    pub more: bool,
}

impl Header {
    pub fn field(&self, i: usize) -> &[u8] {
        &self.block[self.fields[i].clone()]
    }
}

/// Read one line (with its `\n`) into `line`; false at end of input. A last line without
/// `\n` gets one. Fails with TooLong once `budget` bytes would be exceeded.
fn read_line<R: BufRead>(r: &mut R, line: &mut Vec<u8>, budget: usize) -> Result<bool, ReadError> {
    line.clear();
    loop {
        let buf = match r.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(ReadError::Io(e)),
        };
        if buf.is_empty() {
            if line.is_empty() {
                return Ok(false);
            }
            line.push(b'\n');
            return Ok(true);
        }
        let (take, done) = match buf.iter().position(|&c| c == b'\n') {
            Some(p) => (p + 1, true),
            None => (buf.len(), false),
        };
        if line.len() + take > budget {
            return Err(ReadError::TooLong);
        }
        line.extend_from_slice(&buf[..take]);
        r.consume(take);
        if done {
            return Ok(true);
        }
    }
}

/// qmail's `hfield_valid`: a `:` exists and the name before it (trailing blanks
/// removed) is non-empty and made of bytes 33..126.
pub fn valid_field(line: &[u8]) -> bool {
    let Some(colon) = line.iter().position(|&c| c == b':') else {
        return false;
    };
    let name = trim_blanks(&line[..colon]);
    !name.is_empty() && name.iter().all(|&c| c > 32 && c < 127)
}

fn trim_blanks(mut s: &[u8]) -> &[u8] {
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// Read the header from `r`, leaving the rest of the body in `r`.
pub fn read<R: BufRead>(r: &mut R) -> Result<Header, ReadError> {
    read_limited(r, MAX_HEADER)
}

/// [`read`] with an explicit header size limit.
pub fn read_limited<R: BufRead>(r: &mut R, limit: usize) -> Result<Header, ReadError> {
    let mut h = Header::default();
    let mut scan: Vec<Range<usize>> = Vec::new();
    let mut line = Vec::new();
    loop {
        let budget = limit.saturating_sub(h.block.len());
        if !read_line(r, &mut line, budget.max(1))? {
            break;
        }
        if let Some(last) = scan.last_mut()
            && (line[0] == b' ' || line[0] == b'\t')
        {
            if h.block.len() + line.len() > limit {
                return Err(ReadError::TooLong);
            }
            h.block.extend_from_slice(&line);
            last.end = h.block.len();
            continue;
        }
        if line == b"\n" || line == b"\r\n" {
            h.body_start = std::mem::take(&mut line);
            h.more = true;
            break;
        }
        let start = h.block.len();
        if line.starts_with(b"From ") {
            h.block.extend_from_slice(b"MBOX-Line: ");
        } else if !valid_field(&line) {
            h.body_start = b"\n".to_vec();
            h.body_start.extend_from_slice(&line);
            h.more = true;
            break;
        }
        if h.block.len() + line.len() > limit {
            return Err(ReadError::TooLong);
        }
        h.block.extend_from_slice(&line);
        scan.push(start..h.block.len());
    }
    h.fields = match fields_by_mail_parser(&h.block) {
        Some(f) if f == scan => f,
        _ => scan,
    };
    Ok(h)
}

/// The field ranges mail-parser finds in a header block, or None if it finds none.
fn fields_by_mail_parser(block: &[u8]) -> Option<Vec<Range<usize>>> {
    if block.is_empty() {
        return Some(Vec::new());
    }
    let parser = mail_parser::MessageParser::new().default_header_ignore();
    let msg = parser.parse_headers(block)?;
    Some(
        msg.headers()
            .iter()
            .map(|h| h.offset_field as usize..h.offset_end as usize)
            .collect(),
    )
}

/// The header fields qmail-inject knows (qmail's `hfield.c`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Field {
    Sender,
    From,
    ReplyTo,
    To,
    Cc,
    Bcc,
    Date,
    MessageId,
    ResentSender,
    ResentFrom,
    ResentReplyTo,
    ResentTo,
    ResentCc,
    ResentBcc,
    ResentDate,
    ResentMessageId,
    ReturnReceiptTo,
    ErrorsTo,
    ApparentlyTo,
    ReturnPath,
    ContentLength,
    MailFollowupTo,
    Other,
}

const NAMES: [(&str, Field); 22] = [
    ("sender", Field::Sender),
    ("from", Field::From),
    ("reply-to", Field::ReplyTo),
    ("to", Field::To),
    ("cc", Field::Cc),
    ("bcc", Field::Bcc),
    ("date", Field::Date),
    ("message-id", Field::MessageId),
    ("resent-sender", Field::ResentSender),
    ("resent-from", Field::ResentFrom),
    ("resent-reply-to", Field::ResentReplyTo),
    ("resent-to", Field::ResentTo),
    ("resent-cc", Field::ResentCc),
    ("resent-bcc", Field::ResentBcc),
    ("resent-date", Field::ResentDate),
    ("resent-message-id", Field::ResentMessageId),
    ("return-receipt-to", Field::ReturnReceiptTo),
    ("errors-to", Field::ErrorsTo),
    ("apparently-to", Field::ApparentlyTo),
    ("return-path", Field::ReturnPath),
    ("content-length", Field::ContentLength),
    ("mail-followup-to", Field::MailFollowupTo),
];

/// Which known field a header line is: its name (case-insensitive), then optional
/// blanks, then `:`.
pub fn classify(field: &[u8]) -> Field {
    let Some(colon) = field.iter().position(|&c| c == b':') else {
        return Field::Other;
    };
    let name = trim_blanks(&field[..colon]);
    NAMES
        .iter()
        .find(|(n, _)| n.as_bytes().eq_ignore_ascii_case(name))
        .map(|&(_, f)| f)
        .unwrap_or(Field::Other)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rd(input: &[u8]) -> (Header, Vec<u8>) {
        let mut r = io::Cursor::new(input.to_vec());
        let h = read(&mut r).unwrap();
        let mut rest = Vec::new();
        io::Read::read_to_end(&mut r, &mut rest).unwrap();
        (h, rest)
    }

    fn fields(h: &Header) -> Vec<String> {
        (0..h.fields.len())
            .map(|i| String::from_utf8_lossy(h.field(i)).into_owned())
            .collect()
    }

    #[test]
    fn fields_and_body() {
        let (h, rest) = rd(b"To: a\nSubject: x\n  y\n\nbody\n");
        assert_eq!(fields(&h), vec!["To: a\n", "Subject: x\n  y\n"]);
        assert_eq!(h.body_start, b"\n");
        assert_eq!(rest, b"body\n");
    }

    #[test]
    fn no_header_is_all_body() {
        let (h, rest) = rd(b"just a body\nmore\n");
        assert!(h.fields.is_empty());
        assert_eq!(h.body_start, b"\njust a body\n");
        assert_eq!(rest, b"more\n");
    }

    #[test]
    fn non_field_line_ends_the_header_without_loss() {
        let (h, rest) = rd(b"To: a\nhello world\nFrom: b\n\nx");
        assert_eq!(fields(&h), vec!["To: a\n"]);
        assert_eq!(h.body_start, b"\nhello world\n");
        assert_eq!(rest, b"From: b\n\nx");
    }

    #[test]
    fn mbox_line_and_crlf() {
        let (h, rest) = rd(b"From x@y Mon Jan 1\nTo : a\r\n\r\nbody\r\n");
        assert_eq!(
            fields(&h),
            vec!["MBOX-Line: From x@y Mon Jan 1\n", "To : a\r\n"]
        );
        assert_eq!(classify(h.field(1)), Field::To);
        assert_eq!(h.body_start, b"\r\n");
        assert_eq!(rest, b"body\r\n");
    }

    #[test]
    fn header_only_and_empty_input() {
        let (h, _) = rd(b"To: a");
        assert_eq!(fields(&h), vec!["To: a\n"]);
        assert!(h.body_start.is_empty() && !h.more);
        let (h, _) = rd(b"");
        assert!(h.fields.is_empty() && h.body_start.is_empty());
    }

    #[test]
    fn nul_and_eight_bit_names_start_the_body() {
        let (h, _) = rd(b"Subj\0ect: x\n\n");
        assert!(h.fields.is_empty());
        let (h, _) = rd(b"X-\xe9: x\nTo: a\n\n");
        assert!(h.fields.is_empty());
        let (h, _) = rd(b"X-A: \xe9\x00\xff\n\n");
        assert_eq!(h.field(0), b"X-A: \xe9\x00\xff\n");
    }

    #[test]
    fn big_header_line_works_and_bigger_fails() {
        let mut m = b"X-Big: ".to_vec();
        m.extend(std::iter::repeat_n(b'x', 2 << 20));
        m.extend_from_slice(b"\n\nbody");
        let (h, rest) = rd(&m);
        assert_eq!(h.fields.len(), 1);
        assert_eq!(h.fields[0].len(), (2 << 20) + 8);
        assert_eq!(rest, b"body");
        let mut r = io::Cursor::new(m);
        assert!(matches!(
            read_limited(&mut r, 1 << 20),
            Err(ReadError::TooLong)
        ));
    }

    #[test]
    fn classify_names() {
        assert_eq!(classify(b"RESENT-to: x"), Field::ResentTo);
        assert_eq!(classify(b"To\t : x"), Field::To);
        assert_eq!(classify(b"Tox: x"), Field::Other);
        assert_eq!(classify(b"Content-Length: 5"), Field::ContentLength);
    }

    #[test]
    fn mail_parser_agrees_on_valid_blocks() {
        let block = b"To: a\nSubject: x\n\ty\nX-Empty:\nX-8: \xe9\xff\n";
        let scan = {
            let mut r = io::Cursor::new(block.to_vec());
            read(&mut r).unwrap().fields
        };
        assert_eq!(fields_by_mail_parser(block).unwrap(), scan);
    }
}
