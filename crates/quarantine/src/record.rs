//! The block of `X-Quarantine-*` fields at the top of a quarantined file: why the
//! message was stopped and its envelope, so that `release` can re-queue it.
//!
//! ```text
//! X-Quarantine-Rule: .exe
//! X-Quarantine-Remark: executable attachment
//! X-Quarantine-Sender: a@example.org
//! X-Quarantine-Recipient: b@example.net         (one per recipient)
//! X-Quarantine-Client: 192.0.2.7
//! X-Quarantine-Helo: mx.example.org
//! X-Quarantine-Date: Sun, 6 Dec 2026 05:40:00 +0000
//! X-Quarantine-Size: 1234                       (always last: ends the block)
//! <the message, exactly as the filter received it: 1234 bytes>
//! ```
//!
//! Every value goes through [`escape`]: a backslash and every control byte (CR, LF, NUL,
//! TAB, DEL ...) become `\\` and `\xHH`, so a hostile envelope or HELO cannot add a field
//! line (a forged `X-Quarantine-Recipient:` would be a recipient on release). The block
//! ends at the `X-Quarantine-Size:` field, never at the first line that does not look
//! like ours: a message that itself starts with `X-Quarantine-Recipient:` stays part of
//! the message. The size lets a reader check that the copy is complete.

use crate::Reason;
use std::io::{self, BufRead, Read};

const RULE: &str = "X-Quarantine-Rule";
const REMARK: &str = "X-Quarantine-Remark";
const SENDER: &str = "X-Quarantine-Sender";
const RECIPIENT: &str = "X-Quarantine-Recipient";
const CLIENT: &str = "X-Quarantine-Client";
const HELO: &str = "X-Quarantine-Helo";
const DATE: &str = "X-Quarantine-Date";
const SIZE: &str = "X-Quarantine-Size";

/// Longest field line a reader accepts (a longer one means the file is not ours).
const MAX_LINE: u64 = 64 * 1024;
/// Most field lines a reader accepts (recipients included).
const MAX_LINES: usize = 100_000;
/// Most bytes of fields a reader accepts in all (so a planted file cannot make `list`
/// hold gigabytes of recipients).
const MAX_BLOCK: usize = 16 * 1024 * 1024;

/// A parsed block: the reason, when it was stored, and the message's size in bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub reason: Reason,
    pub date: String,
    pub size: u64,
}

/// `s` as one header value: `\` becomes `\\`, a control byte `\xHH`; the rest (UTF-8
/// included) stays.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            c if c.is_ascii_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// The inverse of [`escape`]; `None` for anything [`escape`] cannot have written.
pub fn unescape(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next()? {
                '\\' => out.push('\\'),
                'x' => {
                    let hex: String = chars.by_ref().take(2).collect();
                    if hex.len() != 2 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
                        return None;
                    }
                    let b = u8::from_str_radix(&hex, 16).ok()?;
                    if !b.is_ascii_control() {
                        return None;
                    }
                    out.push(b as char);
                }
                _ => return None,
            },
            c if c.is_ascii_control() => return None,
            c => out.push(c),
        }
    }
    Some(out)
}

/// The block for `reason`, stored at `secs`, in front of a message of `size` bytes.
pub fn header(reason: &Reason, secs: u64, size: u64) -> Vec<u8> {
    let mut h = String::new();
    let mut field = |name: &str, value: &str| {
        h.push_str(name);
        h.push_str(": ");
        h.push_str(&escape(value));
        h.push('\n');
    };
    field(RULE, &reason.rule);
    field(REMARK, &reason.remark);
    field(SENDER, &reason.sender);
    for r in &reason.recipients {
        field(RECIPIENT, r);
    }
    field(CLIENT, &reason.client_ip);
    field(HELO, &reason.helo);
    field(DATE, &qsys::date::rfc5322(secs));
    field(SIZE, &size.to_string());
    h.into_bytes()
}

fn corrupt(why: impl Into<String>) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("not a quarantined message: {}", why.into()),
    )
}

/// Read the block from the start of `r`, leaving `r` at the message's first byte.
pub fn read(r: &mut impl BufRead) -> io::Result<Record> {
    let mut reason = Reason::default();
    let (mut rule, mut remark, mut sender, mut client, mut helo, mut date) =
        (None, None, None, None, None, None);
    let mut total = 0;
    for _ in 0..MAX_LINES {
        let mut line = Vec::new();
        r.by_ref().take(MAX_LINE).read_until(b'\n', &mut line)?;
        if line.last() != Some(&b'\n') {
            return Err(corrupt("its X-Quarantine fields end early"));
        }
        total += line.len();
        if total > MAX_BLOCK {
            return Err(corrupt("too many X-Quarantine fields"));
        }
        line.pop();
        let line = String::from_utf8(line).map_err(|_| corrupt("a field is not UTF-8"))?;
        let (name, value) = line
            .split_once(": ")
            .ok_or_else(|| corrupt(format!("no field: {}", escape(&line))))?;
        let value = unescape(value)
            .ok_or_else(|| corrupt(format!("badly escaped {}: {}", escape(name), escape(value))))?;
        let once = |slot: &mut Option<String>| {
            if slot.replace(value.clone()).is_some() {
                Err(corrupt(format!("{name} twice")))
            } else {
                Ok(())
            }
        };
        match name {
            RULE => once(&mut rule)?,
            REMARK => once(&mut remark)?,
            SENDER => once(&mut sender)?,
            RECIPIENT => reason.recipients.push(value),
            CLIENT => once(&mut client)?,
            HELO => once(&mut helo)?,
            DATE => once(&mut date)?,
            SIZE => {
                let size = value
                    .parse::<u64>()
                    .map_err(|_| corrupt(format!("size {}", escape(&value))))?;
                reason.rule = rule.ok_or_else(|| corrupt("no X-Quarantine-Rule"))?;
                reason.remark = remark.unwrap_or_default();
                reason.sender = sender.ok_or_else(|| corrupt("no X-Quarantine-Sender"))?;
                reason.client_ip = client.unwrap_or_default();
                reason.helo = helo.unwrap_or_default();
                return Ok(Record {
                    reason,
                    date: date.unwrap_or_default(),
                    size,
                });
            }
            other => return Err(corrupt(format!("unknown field {}", escape(other)))),
        }
    }
    Err(corrupt("too many X-Quarantine fields"))
}

/// The record and the message of a whole quarantined file, which must be complete.
pub fn parse(file: &[u8]) -> io::Result<(Record, &[u8])> {
    let mut r = file;
    let rec = read(&mut r)?;
    if r.len() as u64 != rec.size {
        return Err(corrupt(format!(
            "the message has {} bytes, the record says {}",
            r.len(),
            rec.size
        )));
    }
    Ok((rec, r))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hostile() -> Reason {
        Reason {
            rule: "Virus-Subject: a\\b".into(),
            remark: "x\r\nX-Quarantine-Recipient: evil@example.com".into(),
            sender: "s@x\nX-Quarantine-Recipient: evil@example.com".into(),
            recipients: vec![
                "ok@example.net".into(),
                "b\0c@x\r".into(),
                "\\x0a@example.net".into(),
                "ünï@例え.jp".into(),
                "".into(),
            ],
            client_ip: "1.2.3.4\x7f".into(),
            helo: "\x1b[31mred\tX-Quarantine-Size: 0".into(),
        }
    }

    #[test]
    fn escape_leaves_no_control_byte_and_round_trips() {
        let all: String = (0u8..0x80)
            .map(|b| b as char)
            .chain("é\\x".chars())
            .collect();
        let e = escape(&all);
        assert!(!e.bytes().any(|b| b.is_ascii_control()), "{e}");
        assert_eq!(unescape(&e).as_deref(), Some(all.as_str()));
        assert_eq!(escape("a\nb\\"), "a\\x0ab\\\\");
    }

    #[test]
    fn unescape_refuses_what_escape_never_writes() {
        for bad in [
            "\\", "\\x", "\\x4", "\\x41", "\\q", "a\nb", "\\xzz", "\\x+a",
        ] {
            assert_eq!(unescape(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_hostile_envelope_cannot_add_fields() {
        let r = hostile();
        let msg = b"Subject: x\n\nbody\n";
        let mut file = header(&r, 0, msg.len() as u64);
        let lines = file.iter().filter(|&&b| b == b'\n').count();
        assert_eq!(lines, 7 + r.recipients.len(), "one line per field");
        assert!(!file.contains(&0) && !file.contains(&b'\r'));
        file.extend_from_slice(msg);
        let (rec, rest) = parse(&file).unwrap();
        assert_eq!(rec.reason, r);
        assert_eq!(rest, msg);
        assert_eq!(rec.date, "Thu, 1 Jan 1970 00:00:00 +0000");
    }

    #[test]
    fn a_message_that_starts_with_our_fields_stays_the_message() {
        let msg = b"X-Quarantine-Recipient: evil@example.com\nX-Quarantine-Size: 0\n\nhi\n";
        let r = crate::tests::reason();
        let mut file = header(&r, 0, msg.len() as u64);
        file.extend_from_slice(msg);
        let (rec, rest) = parse(&file).unwrap();
        assert_eq!(rec.reason.recipients, r.recipients);
        assert_eq!(rest, msg);
    }

    #[test]
    fn damaged_files_are_errors() {
        let r = crate::tests::reason();
        let msg = b"Subject: x\n\nbody\n";
        let mut good = header(&r, 0, msg.len() as u64);
        good.extend_from_slice(msg);
        let short = &good[..good.len() - 1];
        assert!(parse(short).is_err(), "truncated message");
        let s = String::from_utf8(good.clone()).unwrap();
        for bad in [
            s.replacen("X-Quarantine-Rule: .exe\n", "", 1),
            s.replacen("X-Quarantine-Sender: ", "X-Quarantine-Sendr: ", 1),
            s.replacen("X-Quarantine-Helo: ", "X-Quarantine-Rule: ", 1),
            s.replacen("X-Quarantine-Size: 17", "X-Quarantine-Size: -1", 1),
            s.replacen("a@example.org", "a\\q", 1),
            "Subject: x\n\nbody\n".to_string(),
            String::new(),
            "X-Quarantine-Rule: x".to_string(),
        ] {
            assert!(parse(bad.as_bytes()).is_err(), "{bad:?}");
        }
        let mut huge = b"X-Quarantine-Rule: ".to_vec();
        huge.resize(200_000, b'a');
        assert!(parse(&huge).is_err());
        assert!(parse(b"X-Quarantine-Rule: \xff\n").is_err());
        let line = format!("X-Quarantine-Recipient: {}\n", "r".repeat(60_000));
        let many = format!("X-Quarantine-Rule: x\n{}", line.repeat(300));
        let e = parse(many.as_bytes()).unwrap_err();
        assert!(e.to_string().contains("too many"), "{e}");
    }
}
