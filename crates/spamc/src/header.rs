//! The header block of a message as the queue holds it (RFC 5322 section 2.2, LF line
//! ends; a CR before the LF is kept as part of the line), and the fields we add.
//!
//! One parser serves both sides of learning: the filter removes every field named
//! [`REPORTER`] (and every `X-Spam-*` field) from the header it passes on, and the
//! learner believes a [`REPORTER`] field only in that same header. Both must agree on
//! where the header ends and where a field starts, so both use [`fields`]: the header
//! ends at the first empty line (or a line holding only CR); a line starting with space
//! or tab continues the field above; any other line starts a field, its name being what
//! comes before the first `:`, white space trimmed (a line without `:` is a nameless
//! field, which matches no name). A message without an empty line is all header.

use crate::protocol::Score;

/// The field the filter adds, on mail to a learning address from a local or
/// authenticated sender, naming who sent it; removed from every message first.
pub const REPORTER: &str = "X-Qmail-Spam-Reporter";

/// One field of the header: its name and its bytes (continuation lines and the final
/// LF included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field<'a> {
    pub name: String,
    pub raw: &'a [u8],
}

impl Field<'_> {
    /// The value: after the first `:`, continuation lines joined, white space trimmed.
    pub fn value(&self) -> String {
        let text = String::from_utf8_lossy(self.raw);
        let after = text.split_once(':').map(|(_, v)| v).unwrap_or("");
        after
            .split(['\r', '\n'])
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// The length of the header block, the empty line included: the body starts there.
pub fn header_len(message: &[u8]) -> usize {
    header_end(message).unwrap_or(message.len())
}

/// Where the empty line ending the header block ends; `None` when `message` holds none
/// (all of it is header, or only the start of a message was read).
pub fn header_end(message: &[u8]) -> Option<usize> {
    let mut pos = 0;
    while pos < message.len() {
        let end = line_end(message, pos);
        let line = &message[pos..end];
        // a last line without its LF may be the start of a longer one
        if (line == b"\n" || line == b"\r\n") || (line == b"\r" && end < message.len()) {
            return Some(end);
        }
        pos = end;
    }
    None
}

fn line_end(m: &[u8], from: usize) -> usize {
    m[from..]
        .iter()
        .position(|&b| b == b'\n')
        .map_or(m.len(), |i| from + i + 1)
}

/// The fields of the header block of `message`, in order.
pub fn fields(message: &[u8]) -> Vec<Field<'_>> {
    let header = &message[..header_len(message)];
    let mut out: Vec<Field> = Vec::new();
    let mut start = None;
    let mut pos = 0;
    while pos < header.len() {
        let end = line_end(header, pos);
        let line = &header[pos..end];
        let blank = line == b"\n" || line == b"\r\n" || line == b"\r";
        let continuation = matches!(line.first(), Some(b' ' | b'\t'));
        if (!continuation || start.is_none())
            && let Some(s) = start.take()
        {
            out.push(field(&header[s..pos]));
        }
        if blank {
            break;
        }
        if start.is_none() {
            start = Some(pos);
        }
        pos = end;
    }
    if let Some(s) = start {
        out.push(field(&header[s..pos]));
    }
    out
}

fn field(raw: &[u8]) -> Field<'_> {
    let name = match raw.iter().position(|&b| b == b':') {
        Some(i) if !matches!(raw.first(), Some(b' ' | b'\t')) => {
            String::from_utf8_lossy(&raw[..i]).trim().to_string()
        }
        _ => String::new(),
    };
    Field { name, raw }
}

/// True for the fields the filter owns: every `X-Spam-*` and [`REPORTER`].
pub fn ours(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower.starts_with("x-spam-") || lower == REPORTER.to_ascii_lowercase()
}

/// The header block of `message` without the fields for which `drop` is true (the
/// empty line ending it kept), and how many were dropped.
pub fn without(message: &[u8], drop: impl Fn(&str) -> bool) -> (Vec<u8>, usize) {
    let len = header_len(message);
    let mut out = Vec::with_capacity(len);
    let mut dropped = 0;
    let mut kept = 0;
    for f in fields(message) {
        kept += f.raw.len();
        if drop(&f.name) {
            dropped += 1;
        } else {
            out.extend_from_slice(f.raw);
        }
    }
    // the empty line (or nothing, for a message that is all header)
    out.extend_from_slice(&message[kept.min(len)..len]);
    (out, dropped)
}

/// The values of the fields named `name` (any case).
pub fn values(message: &[u8], name: &str) -> Vec<String> {
    fields(message)
        .iter()
        .filter(|f| f.name.eq_ignore_ascii_case(name))
        .map(Field::value)
        .collect()
}

/// SpamAssassin's fields for `score`: `X-Spam-Flag: YES` when spamd called it spam,
/// `X-Spam-Level` (one `*` per whole point, at most 50), `X-Spam-Status` (`Yes|No,
/// score=S required=R tests=A,B`, folded before 78 columns).
pub fn spam_fields(score: &Score) -> String {
    let mut out = String::new();
    if score.spam {
        out.push_str("X-Spam-Flag: YES\n");
    }
    let stars = if score.score >= 1.0 {
        score.score.min(50.0) as usize
    } else {
        0
    };
    out.push_str("X-Spam-Level: ");
    out.push_str(&"*".repeat(stars));
    out.push('\n');
    let mut line = format!(
        "X-Spam-Status: {}, score={:.1} required={:.1} tests=",
        if score.spam { "Yes" } else { "No" },
        score.score,
        score.required
    );
    if score.tests.is_empty() {
        line.push_str("none");
    }
    for (i, t) in score.tests.iter().enumerate() {
        let piece = if i + 1 < score.tests.len() {
            format!("{t},")
        } else {
            t.clone()
        };
        if line.len() + piece.len() > 76 {
            out.push_str(&line);
            out.push('\n');
            line = String::from("\t");
        }
        line.push_str(&piece);
    }
    out.push_str(&line);
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_ends_at_the_first_empty_line() {
        assert_eq!(header_len(b"A: 1\nB: 2\n\nbody\n\n"), 11);
        assert_eq!(header_len(b"A: 1\r\n\r\nbody"), 8);
        assert_eq!(header_len(b"A: 1\n\r\nbody"), 7);
        assert_eq!(header_len(b"A: 1\nB: 2"), 9);
        assert_eq!(header_len(b"\nbody"), 1);
        assert_eq!(header_len(b""), 0);
        assert_eq!(header_end(b"A: 1\nB: 2"), None);
        assert_eq!(header_end(b"A: 1\n\r"), None, "maybe the start of a line");
        assert_eq!(header_end(b"A: 1\n\n"), Some(6));
    }

    #[test]
    fn fields_with_continuations_and_odd_lines() {
        let m = b"Received: from a\n\tby b\nX-Spam-Flag : YES\nnot a field\n continued\nSubject: hi\n\nX-Spam-Flag: body\n";
        let f = fields(m);
        let names: Vec<&str> = f.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, vec!["Received", "X-Spam-Flag", "", "Subject"]);
        assert_eq!(f[0].value(), "from a by b");
        assert_eq!(f[1].value(), "YES");
        // a continuation first (no field above it) is a nameless field
        let f = fields(b" X-Qmail-Spam-Reporter: local\nA: b\n\n");
        assert_eq!(f[0].name, "");
    }

    #[test]
    fn forged_fields_are_removed_in_any_case_and_only_in_the_header() {
        let m = b"x-spam-status: Yes\nX-SPAM-FLAG: YES\nSubject: s\nX-Qmail-Spam-Reporter: local\n\tmore\nx-qmail-spam-reporter : auth=eve\n\nX-Spam-Flag: YES\nX-Qmail-Spam-Reporter: local\n";
        let (h, n) = without(m, ours);
        assert_eq!(n, 4);
        assert_eq!(h, b"Subject: s\n\n");
        assert!(values(m, REPORTER).len() == 2);
        // all header, no empty line
        let (h, n) = without(b"X-Spam-Flag: YES\nA: b", ours);
        assert_eq!((h.as_slice(), n), (&b"A: b"[..], 1));
        // the body's lines never count
        assert!(values(b"A: b\n\nX-Qmail-Spam-Reporter: local\n", REPORTER).is_empty());
    }

    /// The filter's promise to the learner, on many generated headers: after removing
    /// our fields, the learner's parser finds none of them in what goes on.
    #[test]
    fn no_reporter_field_survives_the_filter() {
        const PIECES: &[&str] = &[
            "X-Spam-Flag: YES\n",
            "X-Qmail-Spam-Reporter: local\n",
            "x-qmail-spam-reporter : auth=eve\n",
            "X-Qmail-Spam-Reporter:local",
            " continued\n",
            "\tX-Qmail-Spam-Reporter: local\n",
            "\n",
            "\r\n",
            "\r",
            "Subject: a\n",
            "no colon here\n",
            ":\n",
            "Received: from x\n",
            "body X-Qmail-Spam-Reporter: local\n",
        ];
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..20_000 {
            let n = (next() % 12) as usize;
            let m: String = (0..n)
                .map(|_| PIECES[(next() % PIECES.len() as u64) as usize])
                .collect();
            let m = m.as_bytes();
            let (mut cleaned, _) = without(m, ours);
            cleaned.extend_from_slice(&m[header_len(m)..]);
            let left: Vec<_> = fields(&cleaned)
                .into_iter()
                .filter(|f| ours(&f.name))
                .collect();
            assert!(
                left.is_empty(),
                "{:?} -> {:?}",
                String::from_utf8_lossy(m),
                String::from_utf8_lossy(&cleaned)
            );
            assert!(crate::learn::reporter(&cleaned).is_none());
        }
    }

    #[test]
    fn spamassassin_style_fields() {
        let s = Score {
            spam: true,
            score: 1000.0,
            required: 5.0,
            tests: vec!["GTUBE".into(), "NO_RECEIVED".into(), "NO_RELAYS".into()],
        };
        assert_eq!(
            spam_fields(&s),
            format!(
                "X-Spam-Flag: YES\nX-Spam-Level: {}\nX-Spam-Status: Yes, score=1000.0 required=5.0 tests=GTUBE,NO_RECEIVED,\n\tNO_RELAYS\n",
                "*".repeat(50)
            )
        );
        let s = Score {
            spam: false,
            score: -0.04,
            required: 5.0,
            tests: vec![],
        };
        assert_eq!(
            spam_fields(&s),
            "X-Spam-Level: \nX-Spam-Status: No, score=-0.0 required=5.0 tests=none\n"
        );
        let long = Score {
            spam: false,
            score: 2.5,
            required: 5.0,
            tests: (0..30).map(|i| format!("TEST_NUMBER_{i}")).collect(),
        };
        let text = spam_fields(&long);
        assert!(text.lines().all(|l| l.len() <= 78), "{text}");
        assert!(text.starts_with("X-Spam-Level: **\n"));
    }
}
