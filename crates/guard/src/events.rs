//! The log lines qmail-guard counts, parsed strictly from multilog's stamped lines.
//!
//! A line is `@` + 24 hex digits (multilog `t`) + a space + what the program wrote:
//! - qmail-send (qmail's wording, DESIGN section 6): `info msg N: bytes B from <S> qp P
//!   uid U`: one message from envelope sender S (qmail's `logsafe` escaping: no space,
//!   no newline);
//! - qmail-smtpd and qmail-popup (`PROG: pid N: ...`, client text escaped by
//!   `qsys::logsafe::text`, so no space, `=` or line break of a client's making):
//!   `auth failed ip=IP ...` and `AUTH refused: ... ip=IP ...` (a failed or refused
//!   login), and `refused RCPT <A> from IP: 5...` (a recipient refused permanently).
//!
//! Anything else, and any line whose parts do not have exactly these shapes, is no event:
//! the address must parse as an IP address and the sender must be `local@domain` of
//! plain characters ([`sender_key`]), so no log line, forged or not, can make qmail-guard
//! write a `@domain` pattern, a comment or a second rule.

use std::net::IpAddr;
use tai64::Tai64n;

/// What a log line tells.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// qmail-send took a message from this envelope sender (lower case).
    Message(String),
    /// A client failed (or was refused) a login.
    AuthFailure(IpAddr),
    /// A client had a recipient refused with a 5xx reply.
    RefusedRcpt(IpAddr),
}

/// The longest sender qmail-guard acts on (RFC 5321's path limit).
pub const MAX_SENDER: usize = 254;

/// The stamp and the event of one log line (without its newline), if it is one.
pub fn parse(line: &[u8]) -> Option<(Tai64n, Event)> {
    let (stamp, rest) = stamp(line)?;
    let rest = std::str::from_utf8(rest).ok()?;
    let event = if let Some(r) = rest.strip_prefix("info msg ") {
        message(r)
    } else if let Some(r) = rest
        .strip_prefix("qmail-smtpd: pid ")
        .or_else(|| rest.strip_prefix("qmail-popup: pid "))
    {
        let (pid, msg) = r.split_once(": ")?;
        digits(pid)?;
        client(msg)
    } else {
        None
    }?;
    Some((stamp, event))
}

/// `@` + 24 hex digits + space, and the rest.
pub fn stamp(line: &[u8]) -> Option<(Tai64n, &[u8])> {
    if line.len() < 26 || line[0] != b'@' || line[25] != b' ' {
        return None;
    }
    Some((Tai64n::from_hex(&line[1..25])?, &line[26..]))
}

fn digits(s: &str) -> Option<()> {
    (!s.is_empty() && s.len() <= 20 && s.bytes().all(|c| c.is_ascii_digit())).then_some(())
}

/// `N: bytes B from <S> qp P uid U`.
fn message(r: &str) -> Option<Event> {
    let (id, r) = r.split_once(": bytes ")?;
    digits(id)?;
    let (bytes, r) = r.split_once(" from <")?;
    digits(bytes)?;
    let (sender, tail) = r.rsplit_once("> qp ")?;
    let (qp, uid) = tail.split_once(" uid ")?;
    digits(qp)?;
    digits(uid)?;
    sender_key(sender).map(Event::Message)
}

/// The message of a qmail-smtpd or qmail-popup line.
fn client(msg: &str) -> Option<Event> {
    if let Some(r) = msg.strip_prefix("auth failed ip=") {
        return ip(r.split(' ').next()?).map(Event::AuthFailure);
    }
    if msg.starts_with("AUTH refused: ") {
        let (_, r) = msg.split_once(" ip=")?;
        return ip(r.split(' ').next()?).map(Event::AuthFailure);
    }
    if let Some(r) = msg.strip_prefix("refused RCPT <") {
        let (addr, r) = r.split_once("> from ")?;
        if addr.contains(' ') {
            return None;
        }
        let (from, reply) = r.split_once(": ")?;
        let from = from.split(' ').next()?; // ` user U` may follow the address
        if !reply.starts_with('5') {
            return None;
        }
        return ip(from).map(Event::RefusedRcpt);
    }
    None
}

fn ip(s: &str) -> Option<IpAddr> {
    if s.is_empty() || s.len() > 45 {
        return None;
    }
    let a: IpAddr = s.parse().ok()?;
    match a {
        IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some() => None,
        _ if a.is_unspecified() => None,
        _ => Some(a),
    }
}

/// The sender as qmail-guard records and blocks it: lower case `local@domain` where the
/// local part is non-empty and holds only letters, digits and ``.!#$&'*+/=?^_`{|}~-``
/// (not starting with `#`), and the domain only letters, digits, `.` and `-`. The
/// bounce sender (empty), qmail's double-bounce `#@[]`, quoted or bracketed addresses
/// and anything with a space, `<`, `>` or a control byte are not counted: such a key
/// could not be a badmailfrom line of its own.
pub fn sender_key(s: &str) -> Option<String> {
    if s.is_empty() || s.len() > MAX_SENDER || s.starts_with('#') {
        return None;
    }
    let (local, domain) = s.split_once('@')?;
    let local_ok = |c: char| c.is_ascii_alphanumeric() || "!#$&'*+/=?^_`{|}~.-".contains(c);
    let domain_ok = |c: char| c.is_ascii_alphanumeric() || c == '.' || c == '-';
    if local.is_empty()
        || domain.is_empty()
        || !local.chars().all(local_ok)
        || !domain.chars().all(domain_ok)
        || domain.starts_with('.')
        || domain.starts_with('-')
    {
        return None;
    }
    Some(s.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: &str = "@400000006b0341c718a7458c ";

    fn ev(rest: &str) -> Option<Event> {
        parse(format!("{T}{rest}").as_bytes()).map(|(_, e)| e)
    }

    #[test]
    fn qmail_send_messages() {
        assert_eq!(
            ev("info msg 1234: bytes 567 from <Joe@Example.test> qp 99 uid 1001"),
            Some(Event::Message("joe@example.test".into()))
        );
        assert_eq!(ev("info msg 1: bytes 5 from <> qp 9 uid 0"), None);
        assert_eq!(ev("info msg 1: bytes 5 from <#@[]> qp 9 uid 0"), None);
        // the stamp must be a real one, and the line qmail-send's shape exactly
        assert!(parse(b"@4000 info msg 1: bytes 5 from <a@b.c> qp 9 uid 0").is_none());
        assert_eq!(ev("info msg x: bytes 5 from <a@b.c> qp 9 uid 0"), None);
        assert_eq!(ev("new msg 1"), None);
    }

    #[test]
    fn smtpd_and_popup_failures() {
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        assert_eq!(
            ev("qmail-smtpd: pid 42: auth failed ip=192.0.2.7 mech=PLAIN user=joe"),
            Some(Event::AuthFailure(ip))
        );
        assert_eq!(
            ev("qmail-popup: pid 42: auth failed ip=192.0.2.7 user=joe"),
            Some(Event::AuthFailure(ip))
        );
        assert_eq!(
            ev("qmail-smtpd: pid 42: AUTH refused: 10 failures in the last hour ip=192.0.2.7"),
            Some(Event::AuthFailure(ip))
        );
        assert_eq!(
            ev("qmail-smtpd: pid 4: refused RCPT <x@y.test> from 192.0.2.7: 550 5.1.1 sorry"),
            Some(Event::RefusedRcpt(ip))
        );
        assert_eq!(
            ev("qmail-smtpd: pid 4: refused RCPT <x@y.test> from 2001:db8::7 user u: 553 no"),
            Some(Event::RefusedRcpt("2001:db8::7".parse().unwrap()))
        );
        // temporary refusals are not counted
        assert_eq!(
            ev("qmail-smtpd: pid 4: refused RCPT <x@y.test> from 192.0.2.7: 451 later"),
            None
        );
        assert_eq!(ev("tcpserver: ok 42 0:127.0.0.1:25 :192.0.2.7::5"), None);
    }

    #[test]
    fn hostile_lines_give_no_key() {
        // escaped client text cannot pose as the address, and odd addresses are refused
        for rest in [
            "qmail-smtpd: pid 1: auth failed ip=192.0.2.7\\012:deny mech=PLAIN",
            "qmail-smtpd: pid 1: auth failed ip=0.0.0.0 mech=PLAIN",
            "qmail-smtpd: pid 1: auth failed ip=::ffff:10.0.0.1 mech=PLAIN",
            "qmail-smtpd: pid 1: auth failed ip= mech=PLAIN",
            "qmail-smtpd: pid 1: auth failed ip=1.2.3.:deny",
            "qmail-smtpd: pid 1: refused RCPT <a\\040from\\0401.2.3.4:> from x: 550 no",
            "qmail-smtpd: pid x: auth failed ip=192.0.2.7",
            "info msg 1: bytes 5 from <@victim.test> qp 9 uid 0",
            "info msg 1: bytes 5 from <victim.test> qp 9 uid 0",
            "info msg 1: bytes 5 from <a@b@c.test> qp 9 uid 0",
            "info msg 1: bytes 5 from <\"a\"@c.test> qp 9 uid 0",
            "info msg 1: bytes 5 from <a@[127.0.0.1]> qp 9 uid 0",
            "info msg 1: bytes 5 from <#x@c.test> qp 9 uid 0",
            "info msg 1: bytes 5 from <a@.c.test> qp 9 uid 0",
        ] {
            assert_eq!(ev(rest), None, "{rest}");
        }
        // a sender ending in `> qp 1 uid 1` is cut at the last one, then refused
        assert_eq!(
            ev("info msg 1: bytes 5 from <a@b.test>_qp_1> qp 9 uid 0"),
            None
        );
        assert!(parse(&[b'@'; 3000]).is_none());
        assert!(parse(b"").is_none());
        let mut bin = T.as_bytes().to_vec();
        bin.extend_from_slice(b"info msg 1: bytes 5 from <a\xff@b.test> qp 9 uid 0");
        assert!(parse(&bin).is_none());
    }

    #[test]
    fn no_input_panics() {
        // xorshift bytes, and mutations of real lines
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let seeds = [
            format!("{T}info msg 1: bytes 5 from <a@b.test> qp 9 uid 0"),
            format!("{T}qmail-smtpd: pid 4: refused RCPT <x@y> from 1.2.3.4: 550 no"),
            format!("{T}qmail-popup: pid 4: auth failed ip=::1 user=x"),
        ];
        for i in 0..20_000 {
            let mut b = seeds[i % 3].as_bytes().to_vec();
            for _ in 0..(next() % 4) {
                let at = (next() as usize) % (b.len() + 1);
                match next() % 3 {
                    0 if at < b.len() => b[at] = next() as u8,
                    1 => b.insert(at, next() as u8),
                    _ => b.truncate(at),
                }
            }
            if let Some((_, Event::Message(s))) = parse(&b) {
                assert!(sender_key(&s).is_some() && !s.starts_with('@'), "{s}");
            }
        }
    }

    #[test]
    fn sender_keys() {
        assert_eq!(
            sender_key("A.B+tag@Ex-1.test").as_deref(),
            Some("a.b+tag@ex-1.test")
        );
        assert_eq!(
            sender_key("srs0=ab=cd@x.test").as_deref(),
            Some("srs0=ab=cd@x.test")
        );
        assert!(sender_key(&format!("{}@x.test", "a".repeat(300))).is_none());
        assert!(sender_key("a b@x.test").is_none());
        assert!(sender_key("a@x.test\n").is_none());
    }
}
