//! Sender binding in the message header (issue 11, item 7): an authenticated user may
//! name as originator only addresses the sender map allows ([`crate::policy::sender_allowed`]).
//!
//! The rule, decided once here and documented in control/README and the qmail-smtpd
//! manual:
//! - every mailbox of every `From:`, `Sender:`, `Resent-From:` and `Resent-Sender:`
//!   field must be allowed (RFC 5322 lets From: hold several mailboxes, and groups are
//!   looked into);
//! - a message without a `From:` mailbox is refused (nothing is added in its place);
//! - a display name with a word holding an `@` (or a look-alike of it) other than the
//!   mailbox's own address is refused (`From: boss@ours <joe@ours>`; strict on purpose,
//!   so `Joe @ home` is refused too: a reader cannot tell); encoded words are decoded
//!   first, so `=?utf-8?q?boss@ours?=` is seen as `boss@ours`;
//! - a field that cannot be read as an address list is refused: the header is parsed by
//!   `mail-parser`, and every originator field found by a plain line scan must also be
//!   one the parser understood, so that no field a mail reader might still display
//!   (`From :`, odd folding) escapes the check.
//!
//! The header given here is the client's, LF line ends, up to the empty line.

use mail_parser::{Addr, HeaderName, MessageParser};

/// The originator fields that are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    From,
    Sender,
    ResentFrom,
    ResentSender,
}

impl Field {
    /// The field name as written in a reply.
    pub fn name(self) -> &'static str {
        match self {
            Field::From => "From:",
            Field::Sender => "Sender:",
            Field::ResentFrom => "Resent-From:",
            Field::ResentSender => "Resent-Sender:",
        }
    }

    fn of_raw(name: &[u8]) -> Option<Field> {
        let n = name.to_ascii_lowercase();
        match n.as_slice() {
            b"from" => Some(Field::From),
            b"sender" => Some(Field::Sender),
            b"resent-from" => Some(Field::ResentFrom),
            b"resent-sender" => Some(Field::ResentSender),
            _ => None,
        }
    }

    fn of_parsed(name: &HeaderName) -> Option<Field> {
        match name {
            HeaderName::From => Some(Field::From),
            HeaderName::Sender => Some(Field::Sender),
            HeaderName::ResentFrom => Some(Field::ResentFrom),
            HeaderName::ResentSender => Some(Field::ResentSender),
            _ => None,
        }
    }
}

/// Why the header was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No `From:` mailbox at all.
    NoFrom,
    /// The header was too big to be kept for the check.
    HeaderTooBig,
    /// A field that is not a readable address list (or the header was too big to read).
    Unreadable(Field),
    /// A mailbox address the user may not use.
    NotYours(Field, String),
    /// A display name holding another address.
    DisplayName(Field, String),
}

/// Characters a reader takes for an at-sign in a display name.
const AT_SIGNS: [char; 3] = ['@', '\u{FF20}', '\u{FE6B}'];

/// Check the originator fields of `header` against `allowed`.
pub fn check(header: &[u8], allowed: &dyn Fn(&str) -> bool) -> Result<(), Refusal> {
    let raw = raw_fields(header);
    let parsed = MessageParser::new().parse_headers(header);
    let headers = parsed.as_ref().map(|m| m.headers()).unwrap_or(&[]);
    let mut seen = Vec::new();
    let mut from_mailboxes = 0usize;
    for h in headers {
        let Some(field) = Field::of_parsed(&h.name) else {
            continue;
        };
        seen.push(field);
        let Some(list) = h.value.as_address() else {
            return Err(Refusal::Unreadable(field));
        };
        for a in list.iter() {
            mailbox_ok(field, a, allowed)?;
            if field == Field::From {
                from_mailboxes += 1;
            }
        }
    }
    for field in [
        Field::From,
        Field::Sender,
        Field::ResentFrom,
        Field::ResentSender,
    ] {
        let n_raw = raw.iter().filter(|f| **f == field).count();
        if n_raw != seen.iter().filter(|f| **f == field).count() {
            return Err(Refusal::Unreadable(field));
        }
    }
    if from_mailboxes == 0 {
        return Err(Refusal::NoFrom);
    }
    Ok(())
}

fn mailbox_ok(field: Field, a: &Addr, allowed: &dyn Fn(&str) -> bool) -> Result<(), Refusal> {
    let Some(addr) = a.address().filter(|s| !s.is_empty()) else {
        return Err(Refusal::Unreadable(field));
    };
    if !allowed(addr) {
        return Err(Refusal::NotYours(field, addr.to_string()));
    }
    if let Some(name) = a.name()
        && names_other_address(name, addr)
    {
        return Err(Refusal::DisplayName(field, name.to_string()));
    }
    Ok(())
}

/// Does the display name hold an address-like word other than `addr`?
fn names_other_address(name: &str, addr: &str) -> bool {
    let separators = |c: char| c.is_whitespace() || "()<>\"',;:[]".contains(c);
    name.split(separators)
        .filter(|w| w.contains(AT_SIGNS))
        .any(|w| !w.eq_ignore_ascii_case(addr))
}

/// The originator fields as a plain scan of the header lines sees them: a line not
/// starting with white space, its name up to `:` (white space before the colon allowed,
/// as the obsolete syntax does).
fn raw_fields(header: &[u8]) -> Vec<Field> {
    let mut v = Vec::new();
    for line in header.split(|&b| b == b'\n') {
        if line.is_empty() {
            break;
        }
        if line[0] == b' ' || line[0] == b'\t' {
            continue;
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = line[..colon].trim_ascii_end();
        if let Some(f) = Field::of_raw(name) {
            v.push(f);
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn joe(a: &str) -> bool {
        a.eq_ignore_ascii_case("joe@ours.test") || a.eq_ignore_ascii_case("alias@ours.test")
    }

    fn run(h: &str) -> Result<(), Refusal> {
        check(h.as_bytes(), &joe)
    }

    #[test]
    fn own_addresses_pass() {
        for h in [
            "From: Joe <joe@ours.test>\nSubject: x\n\n",
            "From: joe@ours.test\n\n",
            "From: \"Joe (joe@ours.test)\" <joe@ours.test>\n\n",
            "From: Joe\n <joe@ours.test>\n\n",
            "From: =?utf-8?q?J=C3=B6e?= <JOE@ours.test>\n\n",
            "From: joe@ours.test, alias@ours.test\nSender: joe@ours.test\n\n",
            "From: Team: joe@ours.test, alias@ours.test;\n\n",
            "Resent-From: alias@ours.test\nResent-Sender: joe@ours.test\nFrom: joe@ours.test\n\n",
        ] {
            assert_eq!(run(h), Ok(()), "{h}");
        }
    }

    #[test]
    fn a_missing_from_is_refused() {
        assert_eq!(run("Subject: no from\n\n"), Err(Refusal::NoFrom));
        assert_eq!(run("\nFrom: joe@ours.test\n"), Err(Refusal::NoFrom));
        assert_eq!(run("From: Nobody:;\n\n"), Err(Refusal::NoFrom));
        assert_eq!(run("Sender: joe@ours.test\n\n"), Err(Refusal::NoFrom));
    }

    #[test]
    fn every_originator_field_and_mailbox_is_checked() {
        for (h, field) in [
            ("From: Boss <boss@ours.test>\n\n", Field::From),
            ("From: joe@ours.test, boss@ours.test\n\n", Field::From),
            ("From: joe@ours.test\nFrom: boss@ours.test\n\n", Field::From),
            (
                "From: Team: joe@ours.test, boss@ours.test;\n\n",
                Field::From,
            ),
            (
                "From: joe@ours.test\nSender: boss@ours.test\n\n",
                Field::Sender,
            ),
            (
                "From: joe@ours.test\nResent-From: boss@ours.test\n\n",
                Field::ResentFrom,
            ),
            (
                "From: joe@ours.test\nresent-sender:\n boss@ours.test\n\n",
                Field::ResentSender,
            ),
            ("FROM: joe@ours.test,\n\tboss@ours.test\n\n", Field::From),
        ] {
            match run(h) {
                Err(Refusal::NotYours(f, a)) => {
                    assert_eq!((f, a.as_str()), (field, "boss@ours.test"), "{h}")
                }
                other => panic!("{h}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_display_name_naming_another_address_is_refused() {
        for h in [
            "From: boss@ours.test <joe@ours.test>\n\n",
            "From: \"boss@ours.test\" <joe@ours.test>\n\n",
            "From: =?utf-8?q?boss@ours.test?= <joe@ours.test>\n\n",
            "From: =?utf-8?b?Ym9zc0BvdXJzLnRlc3Q=?= <joe@ours.test>\n\n",
            "From: \"boss\u{FF20}ours.test\" <joe@ours.test>\n\n",
            "From: \"The Boss\n (boss@ours.test)\" <joe@ours.test>\n\n",
            "From: joe@ours.test\nSender: boss@ours.test <joe@ours.test>\n\n",
        ] {
            assert!(
                matches!(run(h), Err(Refusal::DisplayName(..))),
                "{h}: {:?}",
                run(h)
            );
        }
    }

    #[test]
    fn fields_the_parser_cannot_read_are_refused() {
        for h in [
            "From: joe@ours.test\nFrom : boss@ours.test\n\n",
            "From: Joe\n\n",
            "From:\n\n",
        ] {
            assert!(
                matches!(run(h), Err(Refusal::Unreadable(_) | Refusal::NotYours(..))),
                "{h}: {:?}",
                run(h)
            );
        }
    }
}
