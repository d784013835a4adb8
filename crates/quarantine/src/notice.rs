//! The administrator's notice of a quarantined message: a complete RFC 5322 message
//! (`From: MAILER-DAEMON@ME`, `To:` the administrator, `Subject: quarantined: RULE`,
//! plain UTF-8 text) with the envelope, the client, the rule and its remark, the
//! message's header (never its body, and at most [`MAX_HEADER`] bytes of it) and where
//! the copy is and how to release it. qmail-scan queues it through qmail-queue itself.
//!
//! Everything in it came from a client or a rules file: values pass through
//! [`crate::record::escape`] (no CR, LF or NUL can start a line of their own, in the
//! header or in the body), and the Subject is RFC 2047-encoded when it is not ASCII.

use crate::Reason;
use crate::record::escape;
use base64::Engine;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};

/// The most of the quarantined message's header the notice quotes.
pub const MAX_HEADER: usize = 64 * 1024;
/// The most of the rule the Subject shows.
const MAX_SUBJECT_RULE: usize = 200;

static SEQ: AtomicU32 = AtomicU32::new(0);

/// The administrator's notice (a complete RFC 5322 message with From: MAILER-DAEMON@me,
/// To: the admin, Subject naming the rule): envelope, client, rule, the message's header
/// (not its body), and the quarantined copy's path.
pub fn notice(me: &str, admin: &str, reason: &Reason, header: &[u8], stored: &Path) -> Vec<u8> {
    notice_at(me, admin, reason, header, stored, crate::now())
}

fn notice_at(
    me: &str,
    admin: &str,
    reason: &Reason,
    header: &[u8],
    stored: &Path,
    secs: u64,
) -> Vec<u8> {
    let me = escape(me);
    let to = match escape(admin) {
        a if a.contains('@') => a,
        a => format!("{a}@{me}"),
    };
    let id = stored
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let id = escape(&id);
    let mut m = String::new();
    m.push_str(&format!("Date: {}\n", qsys::date::rfc5322(secs)));
    m.push_str(&format!("From: MAILER-DAEMON@{me}\n"));
    m.push_str(&format!("To: {to}\n"));
    m.push_str(&format!("Subject: {}\n", subject(&reason.rule)));
    m.push_str(&format!(
        "Message-ID: <quarantine.{secs}.{}.{}@{me}>\n",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    m.push_str("MIME-Version: 1.0\n");
    m.push_str("Content-Type: text/plain; charset=utf-8\n");
    m.push_str("Content-Transfer-Encoding: 8bit\n");
    m.push_str("Auto-Submitted: auto-generated\n");
    m.push('\n');
    m.push_str("A message was accepted and put in quarantine instead of being delivered.\n\n");
    m.push_str(&format!("Rule:      {}\n", escape(&reason.rule)));
    m.push_str(&format!("Remark:    {}\n", escape(&reason.remark)));
    m.push_str(&format!("Sender:    <{}>\n", escape(&reason.sender)));
    for r in &reason.recipients {
        m.push_str(&format!("Recipient: <{}>\n", escape(r)));
    }
    m.push_str(&format!("Client:    {}\n", escape(&reason.client_ip)));
    m.push_str(&format!("HELO:      {}\n", escape(&reason.helo)));
    m.push_str(&format!(
        "Copy:      {}\n",
        escape(&stored.to_string_lossy())
    ));
    m.push_str(&format!("ID:        {id}\n\n"));
    m.push_str("As root on the mail host:\n");
    m.push_str(&format!("  qmail-quarantine show {id}      read it\n"));
    m.push_str(&format!(
        "  qmail-quarantine release {id}   deliver it to its recipients anyway\n"
    ));
    m.push_str(&format!(
        "  qmail-quarantine delete {id}    throw it away\n\n"
    ));
    m.push_str("The message's header (its body is not included):\n\n");
    m.push_str(&quote_header(header));
    m.into_bytes()
}

/// `quarantined: RULE`, encoded-word (RFC 2047, base64) when the rule is not ASCII.
fn subject(rule: &str) -> String {
    let rule: String = escape(rule).chars().take(MAX_SUBJECT_RULE).collect();
    let text = format!("quarantined: {rule}");
    if text.is_ascii() {
        return text;
    }
    // Encoded words are at most 75 characters: 45 bytes of UTF-8 per word, cut only
    // between characters.
    let mut words = Vec::new();
    let mut chunk = String::new();
    for c in text.chars() {
        if chunk.len() + c.len_utf8() > 45 {
            words.push(std::mem::take(&mut chunk));
        }
        chunk.push(c);
    }
    words.push(chunk);
    words
        .iter()
        .map(|w| {
            format!(
                "=?utf-8?b?{}?=",
                base64::engine::general_purpose::STANDARD.encode(w)
            )
        })
        .collect::<Vec<_>>()
        .join("\n ")
}

/// The header part of `header` (up to its first empty line) as text: every line
/// indented, control bytes other than TAB escaped, at most [`MAX_HEADER`] bytes of it.
fn quote_header(header: &[u8]) -> String {
    let end = header_end(header);
    let text = String::from_utf8_lossy(&header[..end.min(MAX_HEADER)]);
    let mut out = String::with_capacity(text.len().min(MAX_HEADER) + 64);
    let mut cut = end > MAX_HEADER;
    'lines: for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        out.push_str("  ");
        for c in line.chars() {
            if out.len() >= MAX_HEADER {
                out.push('\n');
                cut = true;
                break 'lines;
            }
            if c == '\t' {
                out.push(c);
            } else {
                out.push_str(&escape(c.encode_utf8(&mut [0; 4])));
            }
        }
        out.push('\n');
    }
    if cut {
        out.push_str(&format!("  [header cut after {MAX_HEADER} bytes]\n"));
    }
    out
}

/// Where the header of `m` ends: at its first empty line (LF or CRLF), else its end.
fn header_end(m: &[u8]) -> usize {
    let mut at_line_start = true;
    for (i, &b) in m.iter().enumerate() {
        if at_line_start && (b == b'\n' || (b == b'\r' && m.get(i + 1) == Some(&b'\n'))) {
            return i;
        }
        at_line_start = b == b'\n';
    }
    m.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::reason;

    fn text(n: &[u8]) -> &str {
        std::str::from_utf8(n).unwrap()
    }

    fn header_of(n: &[u8]) -> &str {
        let t = text(n);
        &t[..t.find("\n\n").unwrap()]
    }

    #[test]
    fn the_notice_is_a_complete_message() {
        let msg = b"From: a@example.org\nSubject: invoice\n\nSECRET BODY\n";
        let stored = Path::new("/var/qmail/quarantine/new/1765000000.M1P2Q0.host");
        let n = notice_at("mx.example.net", "postmaster", &reason(), msg, stored, 0);
        let h = header_of(&n);
        for want in [
            "Date: Thu, 1 Jan 1970 00:00:00 +0000",
            "From: MAILER-DAEMON@mx.example.net",
            "To: postmaster@mx.example.net",
            "Subject: quarantined: .exe",
            "Message-ID: <quarantine.0.",
            "MIME-Version: 1.0",
            "Content-Type: text/plain; charset=utf-8",
        ] {
            assert!(h.lines().any(|l| l.starts_with(want)), "{want} in\n{h}");
        }
        let t = text(&n);
        for want in [
            "Rule:      .exe\n",
            "Remark:    executable attachment\n",
            "Sender:    <a@example.org>\n",
            "Recipient: <b@example.net>\nRecipient: <c@example.net>\n",
            "Client:    192.0.2.7\n",
            "HELO:      mx.example.org\n",
            "Copy:      /var/qmail/quarantine/new/1765000000.M1P2Q0.host\n",
            "qmail-quarantine release 1765000000.M1P2Q0.host ",
            "  Subject: invoice\n",
        ] {
            assert!(t.contains(want), "{want:?} in\n{t}");
        }
        assert!(!t.contains("SECRET BODY"));
        let n2 = notice_at("me", "admin@example.com", &reason(), msg, stored, 0);
        assert!(text(&n2).contains("\nTo: admin@example.com\n"));
        assert_ne!(header_of(&n), header_of(&n2), "Message-IDs differ");
    }

    #[test]
    fn hostile_values_cannot_add_lines() {
        let r = Reason {
            rule: "x\nBcc: victim@example.com".into(),
            remark: "r\r\nTo release: rm -rf /".into(),
            sender: "s\0@x".into(),
            recipients: vec!["t\n@x".into()],
            client_ip: "1\n2".into(),
            helo: "h\r\nX: y".into(),
        };
        let hdr = b"Subject: a\r\nX-Evil: \x1b[2J\0\nTo: b\n\nbody";
        let n = notice_at(
            "me\nBcc: x",
            "adm\nBcc: y",
            &r,
            hdr,
            Path::new("/q/new/a\nb"),
            0,
        );
        let t = text(&n);
        assert!(!t.contains('\r') && !t.contains('\0') && !t.contains('\x1b'));
        let h = header_of(&n);
        assert!(!h.lines().any(|l| l.starts_with("Bcc:")), "{h}");
        assert_eq!(h.lines().count(), 9, "{h}");
        for line in t.lines().skip(10) {
            assert!(
                !line.starts_with("To release") && !line.starts_with("X: y"),
                "{line:?}"
            );
        }
        assert!(t.contains("  X-Evil: \\x1b[2J\\x00\n"), "{t}");
        assert!(!t.contains("\n  body"), "{t}");
    }

    #[test]
    fn the_quoted_header_is_bounded_and_stops_at_the_body() {
        let mut big = Vec::new();
        for i in 0..10_000 {
            big.extend_from_slice(format!("X-Filler-{i}: aaaaaaaaaaaaaaaa\n").as_bytes());
        }
        big.extend_from_slice(b"\nbody\n");
        let n = notice_at("me", "a", &reason(), &big, Path::new("/q/new/x"), 0);
        assert!(n.len() < MAX_HEADER + 4096, "{}", n.len());
        assert!(text(&n).contains("[header cut after"));
        let binary = vec![0u8; 3 * MAX_HEADER];
        let n = notice_at("me", "a", &reason(), &binary, Path::new("/q/new/x"), 0);
        assert!(n.len() < MAX_HEADER + 4096, "{}", n.len());
        let short = notice_at("me", "a", &reason(), b"A: b\n", Path::new("/q/new/x"), 0);
        assert!(!text(&short).contains("[header cut"));
        assert_eq!(header_end(b"A: b\r\n\r\nbody"), 6);
        assert_eq!(header_end(b"A: b\n\nbody"), 5);
        assert_eq!(header_end(b"no body"), 7);
        assert_eq!(header_end(b""), 0);
    }

    #[test]
    fn a_mail_reader_reads_the_notice() {
        let mut r = reason();
        r.rule = "Virus-Subject: Überweisung.*".into();
        let n = notice(
            "mx.example.net",
            "postmaster",
            &r,
            b"Subject: a\n\n",
            Path::new("/q/x"),
        );
        let m = mail_parser::MessageParser::default().parse(&n).unwrap();
        assert_eq!(
            m.subject(),
            Some("quarantined: Virus-Subject: Überweisung.*")
        );
        let addr = |a: Option<&mail_parser::Address>| {
            a.and_then(|a| a.first())
                .and_then(|a| a.address())
                .map(str::to_string)
        };
        assert_eq!(
            addr(m.from()).as_deref(),
            Some("MAILER-DAEMON@mx.example.net")
        );
        assert_eq!(addr(m.to()).as_deref(), Some("postmaster@mx.example.net"));
        assert!(
            m.message_id()
                .is_some_and(|id| id.ends_with("@mx.example.net"))
        );
        assert!(m.date().is_some());
        let body = m.body_text(0).unwrap();
        assert!(
            body.contains("Rule:      Virus-Subject: Überweisung.*\n"),
            "{body}"
        );
    }

    #[test]
    fn a_non_ascii_rule_is_an_encoded_word() {
        let long = format!("Virus-Subject: {}", "Überweisung ".repeat(30));
        let s = subject(&long);
        assert!(s.is_ascii() && s.starts_with("=?utf-8?b?"), "{s}");
        assert!(s.split("\n ").all(|w| w.len() <= 75), "{s}");
        let decoded: Vec<u8> = s
            .split("\n ")
            .flat_map(|w| {
                let b64 = &w["=?utf-8?b?".len()..w.len() - 2];
                base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .unwrap()
            })
            .collect();
        let decoded = String::from_utf8(decoded).unwrap();
        assert!(decoded.starts_with("quarantined: Virus-Subject: Überweisung"));
        assert_eq!(subject(".exe"), "quarantined: .exe");
    }
}
