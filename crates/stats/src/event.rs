//! One log line, read as one event.
//!
//! The formats are those our programs write (multilog has already cut the `@TAI64N `
//! stamp off):
//! - qmail-send (crates/send, qmail 1.03's wording, no program prefix): `new msg N`,
//!   `info msg N: bytes B from <S> qp P uid U`, `starting delivery D: msg N to
//!   local|remote R`, `delivery D: success|failure|deferral: TEXT`, `end msg N`,
//!   `bounce msg N qp P`, `triple bounce: discarding bounce/N`; sender, recipient and
//!   TEXT went through qmail's `logsafe` (no space, `_` in its place, `/` for newline);
//! - qmail-smtpd (crates/smtpd/src/session.rs): `qmail-smtpd: pid P: refused CMD[ <A>]
//!   from IP[ user U]: REPLY[ (DETAIL)]`, `... message accepted qp Q from IP <S> to N
//!   recipients ...`, `... auth failed ip=IP mech=M user=U`, `... AUTH refused...ip=IP...`.
//!
//! Every field a client chose is taken as opaque text; a line that matches no format is
//! [`Event::Other`]. Only qmail-send writes lines without a `NAME: ` prefix, so a client
//! cannot forge a qmail-send event through another program's log line.

/// What a line says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    NewMsg(u64),
    InfoMsg {
        id: u64,
        bytes: u64,
        sender: String,
    },
    Starting {
        delivery: u64,
        id: u64,
        remote: bool,
        recipient: String,
    },
    Delivery {
        delivery: u64,
        outcome: Outcome,
        text: String,
    },
    EndMsg(u64),
    BounceMsg,
    TripleBounce,
    /// A refused MAIL, RCPT, DATA or BDAT, or a failed or refused AUTH.
    Refused {
        reason: Reason,
        client: String,
    },
    /// qmail-smtpd queued a message.
    Accepted {
        client: String,
    },
    /// qmail-scan's verdict on a message (`qmail-scan: clean|quarantine|refuse|defer
    /// ... [virus=NAME] ...`, bin/qmail-scan), with the virus clamd named.
    Scan {
        verdict: Verdict,
        virus: Option<String>,
    },
    Other,
}

/// How one delivery attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure,
    Deferral,
}

/// What the content filter qmail-scan did with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Clean,
    Quarantine,
    Refuse,
    Defer,
}

impl Verdict {
    pub const ALL: [Verdict; 4] = [
        Verdict::Clean,
        Verdict::Quarantine,
        Verdict::Refuse,
        Verdict::Defer,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Verdict::Clean => "clean",
            Verdict::Quarantine => "quarantined",
            Verdict::Refuse => "refused",
            Verdict::Defer => "deferred",
        }
    }
}

/// Why qmail-smtpd refused: the classes an administrator asks about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reason {
    Relay,
    Badmailfrom,
    Badrcptto,
    UnknownRecipient,
    Virus,
    Spam,
    Dmarc,
    Policy,
    AuthFailure,
    AuthRequired,
    RateLimit,
    Size,
    SenderNotYours,
    Protocol,
    QueueFailure,
    Other,
}

impl Reason {
    pub const ALL: [Reason; 16] = [
        Reason::Relay,
        Reason::Badmailfrom,
        Reason::Badrcptto,
        Reason::UnknownRecipient,
        Reason::Virus,
        Reason::Spam,
        Reason::Dmarc,
        Reason::Policy,
        Reason::AuthFailure,
        Reason::AuthRequired,
        Reason::RateLimit,
        Reason::Size,
        Reason::SenderNotYours,
        Reason::Protocol,
        Reason::QueueFailure,
        Reason::Other,
    ];

    /// The name used in every output format.
    pub fn name(self) -> &'static str {
        match self {
            Reason::Relay => "relay",
            Reason::Badmailfrom => "badmailfrom",
            Reason::Badrcptto => "badrcptto",
            Reason::UnknownRecipient => "unknown recipient",
            Reason::Virus => "virus",
            Reason::Spam => "spam",
            Reason::Dmarc => "dmarc",
            Reason::Policy => "policy",
            Reason::AuthFailure => "auth failure",
            Reason::AuthRequired => "auth required",
            Reason::RateLimit => "rate limit",
            Reason::Size => "size",
            Reason::SenderNotYours => "sender not yours",
            Reason::Protocol => "protocol",
            Reason::QueueFailure => "queue failure",
            Reason::Other => "other",
        }
    }
}

/// Read one log line (without its stamp).
pub fn parse(line: &str) -> Event {
    if let Some(rest) = line.strip_prefix("qmail-smtpd: pid ") {
        return match rest.split_once(": ") {
            Some((pid, msg)) if pid.bytes().all(|b| b.is_ascii_digit()) => smtpd(msg),
            _ => Event::Other,
        };
    }
    if let Some(rest) = line.strip_prefix("qmail-scan: ") {
        return scan(rest);
    }
    send(line).unwrap_or(Event::Other)
}

/// qmail-scan's one line per message: the verdict word, then `key=value` fields whose
/// values are escaped (`qsys::logsafe::text`: no space, no `=`), so a client's text
/// cannot forge a `virus=` field.
fn scan(rest: &str) -> Event {
    let mut words = rest.split(' ');
    let verdict = match words.next() {
        Some("clean") => Verdict::Clean,
        Some("quarantine") => Verdict::Quarantine,
        Some("refuse") => Verdict::Refuse,
        Some("defer") => Verdict::Defer,
        _ => return Event::Other,
    };
    let virus = words
        .find_map(|w| w.strip_prefix("virus="))
        .map(str::to_string);
    Event::Scan { verdict, virus }
}

fn number(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn send(line: &str) -> Option<Event> {
    if let Some(n) = line.strip_prefix("new msg ") {
        return number(n).map(Event::NewMsg);
    }
    if let Some(n) = line.strip_prefix("end msg ") {
        return number(n).map(Event::EndMsg);
    }
    if line.starts_with("bounce msg ") {
        return Some(Event::BounceMsg);
    }
    if line.starts_with("triple bounce: ") {
        return Some(Event::TripleBounce);
    }
    if let Some(rest) = line.strip_prefix("info msg ") {
        let (id, rest) = rest.split_once(": bytes ")?;
        let (bytes, rest) = rest.split_once(" from <")?;
        // the sender holds no space (logsafe): it ends at the first `> qp `
        let (sender, _) = rest.split_once("> qp ")?;
        return Some(Event::InfoMsg {
            id: number(id)?,
            bytes: number(bytes)?,
            sender: sender.to_string(),
        });
    }
    if let Some(rest) = line.strip_prefix("starting delivery ") {
        let (delivery, rest) = rest.split_once(": msg ")?;
        let (id, rest) = rest.split_once(" to ")?;
        let (channel, recipient) = rest.split_once(' ')?;
        let remote = match channel {
            "local" => false,
            "remote" => true,
            _ => return None,
        };
        return Some(Event::Starting {
            delivery: number(delivery)?,
            id: number(id)?,
            remote,
            recipient: recipient.to_string(),
        });
    }
    if let Some(rest) = line.strip_prefix("delivery ") {
        let (delivery, rest) = rest.split_once(": ")?;
        let (outcome, text) = match rest.split_once(": ") {
            Some((o, t)) => (o, t),
            None => (rest.trim_end_matches(':'), ""),
        };
        let outcome = match outcome {
            "success" => Outcome::Success,
            "failure" => Outcome::Failure,
            "deferral" => Outcome::Deferral,
            _ => return None,
        };
        return Some(Event::Delivery {
            delivery: number(delivery)?,
            outcome,
            text: text.to_string(),
        });
    }
    None
}

fn smtpd(msg: &str) -> Event {
    if let Some(rest) = msg.strip_prefix("refused ") {
        return refused(rest).unwrap_or(Event::Other);
    }
    if let Some(rest) = msg.strip_prefix("message accepted qp ") {
        let client = rest
            .split_once(" from ")
            .and_then(|(_, r)| r.split(' ').next())
            .unwrap_or("");
        return Event::Accepted {
            client: client.to_string(),
        };
    }
    if msg.starts_with("auth failed ") {
        return Event::Refused {
            reason: Reason::AuthFailure,
            client: field(msg, "ip="),
        };
    }
    if msg.starts_with("AUTH refused") {
        return Event::Refused {
            reason: Reason::RateLimit,
            client: field(msg, "ip="),
        };
    }
    Event::Other
}

/// The value of ` KEY=VALUE` (or at the start); our escaping keeps `=` out of client
/// text, so a client cannot forge the key.
fn field(msg: &str, key: &str) -> String {
    msg.split(' ')
        .find_map(|w| w.strip_prefix(key))
        .unwrap_or("")
        .to_string()
}

/// `CMD[ <A>] from IP[ user U]: REPLY[ (DETAIL)]`. The address and user are escaped by
/// qmail-smtpd (no space), so ` from ` after them is the real one.
fn refused(rest: &str) -> Option<Event> {
    let (_cmd, rest) = rest.split_once(' ')?;
    let rest = match rest.strip_prefix('<') {
        Some(r) => r.split_once("> ")?.1,
        None => rest,
    };
    let rest = rest.strip_prefix("from ")?;
    let (who, reply) = rest.split_once(": ")?;
    let client = who.split(' ').next().unwrap_or("");
    Some(Event::Refused {
        reason: classify(reply),
        client: client.to_string(),
    })
}

/// The class of a refusal from qmail-smtpd's reply (crates/smtpd/src/replies.rs) and the
/// detail in parentheses after it. A filter's text (`(filter)`) is classed by its words.
pub fn classify(reply: &str) -> Reason {
    let has = |s: &str| reply.contains(s);
    let lower = reply.to_ascii_lowercase();
    if reply.ends_with("(filter)") {
        return if lower.contains("virus") {
            Reason::Virus
        } else if lower.contains("spam") {
            Reason::Spam
        } else if lower.contains("dmarc") {
            Reason::Dmarc
        } else {
            Reason::Policy
        };
    }
    if has("we don't relay") || has("list of allowed rcpthosts") {
        Reason::Relay
    } else if has("badmailfrom list") {
        Reason::Badmailfrom
    } else if has("badrcptto list") {
        Reason::Badrcptto
    } else if has("no mailbox here by that name") {
        Reason::UnknownRecipient
    } else if has("too much mail from")
        || has("too many recipients from")
        || has("too many AUTH commands")
        || has("recipients this hour")
        || has("message rate")
    {
        Reason::RateLimit
    } else if has("authentication required") || has("STARTTLS command first") {
        Reason::AuthRequired
    } else if has("databytes limit") || has("too large") || has("too big") {
        Reason::Size
    } else if has("not one of your addresses") || has("From: line") {
        Reason::SenderNotYours
    } else if has("(qmail-queue)") {
        Reason::QueueFailure
    } else if lower.contains("dmarc") {
        Reason::Dmarc
    } else if has("too many recipients")
        || has("looping")
        || has("bare CR")
        || has("smtplf")
        || has("syntax")
    {
        Reason::Protocol
    } else {
        Reason::Other
    }
}

/// A deferral's or bounce's reason as one short key: the first line of qmail-send's
/// logsafe text, underscores back to spaces, IPv4 addresses as `IP` so one remote
/// server's many addresses count as one reason, at most 120 characters.
pub fn reason_key(text: &str) -> String {
    let first = text.split('/').find(|s| !s.is_empty()).unwrap_or("");
    let spaced: String = first
        .chars()
        .map(|c| if c == '_' { ' ' } else { c })
        .collect();
    let mut out = String::new();
    for (i, word) in spaced.split(' ').enumerate() {
        if i > 0 {
            out.push(' ');
        }
        let bare = word.trim_end_matches(['.', ',', ':', ')']);
        if is_ipv4(bare.trim_start_matches('(')) {
            out.push_str(&word.replace(bare.trim_start_matches('('), "IP"));
        } else {
            out.push_str(word);
        }
    }
    let out = out.trim();
    let out = if out.is_empty() { "(no text)" } else { out };
    out.chars().take(120).collect()
}

fn is_ipv4(s: &str) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    parts.len() == 4
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qmail_send_lines() {
        assert_eq!(parse("new msg 123"), Event::NewMsg(123));
        assert_eq!(
            parse("info msg 123: bytes 456 from <a@b.test> qp 77 uid 0"),
            Event::InfoMsg {
                id: 123,
                bytes: 456,
                sender: "a@b.test".into()
            }
        );
        assert_eq!(
            parse("info msg 5: bytes 1 from <> qp 7 uid 0"),
            Event::InfoMsg {
                id: 5,
                bytes: 1,
                sender: "".into()
            }
        );
        assert_eq!(
            parse("starting delivery 9: msg 123 to remote x@y.test"),
            Event::Starting {
                delivery: 9,
                id: 123,
                remote: true,
                recipient: "x@y.test".into()
            }
        );
        assert_eq!(
            parse("delivery 9: success: did_0+0+1/"),
            Event::Delivery {
                delivery: 9,
                outcome: Outcome::Success,
                text: "did_0+0+1/".into()
            }
        );
        assert_eq!(parse("end msg 123"), Event::EndMsg(123));
        assert_eq!(parse("bounce msg 123 qp 9"), Event::BounceMsg);
        assert_eq!(parse("status: local 0/10 remote 0/20"), Event::Other);
        assert_eq!(parse("new msg x"), Event::Other);
        assert_eq!(parse("delivery 9: maybe: x"), Event::Other);
        assert_eq!(parse(""), Event::Other);
    }

    #[test]
    fn smtpd_refusals() {
        let r = |l: &str| match parse(l) {
            Event::Refused { reason, client } => (reason, client),
            e => panic!("{e:?}"),
        };
        assert_eq!(
            r(
                "qmail-smtpd: pid 12: refused RCPT <x@far.test> from 192.0.2.1: 553 5.7.1 we don't relay (#5.7.1)"
            ),
            (Reason::Relay, "192.0.2.1".into())
        );
        assert_eq!(
            r("qmail-smtpd: pid 12: refused RCPT <x@ours.test> from 192.0.2.1: 553 5.7.1 sorry, your envelope sender is in my badmailfrom list (#5.7.1) (sender <a@b> in badmailfrom)").0,
            Reason::Badmailfrom
        );
        assert_eq!(
            r("qmail-smtpd: pid 12: refused RCPT <nobody@ours.test> from 192.0.2.1: 550 5.1.1 sorry, no mailbox here by that name (#5.1.1)").0,
            Reason::UnknownRecipient
        );
        assert_eq!(
            r(
                "qmail-smtpd: pid 12: refused DATA from 192.0.2.2 user ann: 554 5.7.1 virus found: Test.EICAR (#5.7.1) (filter)"
            ),
            (Reason::Virus, "192.0.2.2".into())
        );
        assert_eq!(
            r("qmail-smtpd: pid 1: refused DATA from ::1: 554 5.7.1 message looks like spam (#5.7.1) (filter)").0,
            Reason::Spam
        );
        assert_eq!(
            r("qmail-smtpd: pid 1: refused DATA from ::1: 554 5.7.1 DMARC policy reject (#5.7.1) (filter)").0,
            Reason::Dmarc
        );
        assert_eq!(
            r("qmail-smtpd: pid 1: refused BDAT from ::1: 554 5.7.1 attachment type .exe not allowed (#5.7.1) (filter)").0,
            Reason::Policy
        );
        assert_eq!(
            r("qmail-smtpd: pid 1: refused MAIL <a@b> from 10.0.0.1: 450 4.7.1 Error: too much mail from 10.0.0.1 (clientmessagerate: 5 per 60 s)").0,
            Reason::RateLimit
        );
        assert_eq!(
            r("qmail-smtpd: pid 1: auth failed ip=10.0.0.9 mech=PLAIN user=bob"),
            (Reason::AuthFailure, "10.0.0.9".into())
        );
        assert_eq!(
            r("qmail-smtpd: pid 1: AUTH refused: 5 failures in the last hour ip=10.0.0.9"),
            (Reason::RateLimit, "10.0.0.9".into())
        );
        assert_eq!(
            r("qmail-smtpd: pid 1: refused MAIL from 10.0.0.1: 530 5.7.0 authentication required (#5.7.0)").0,
            Reason::AuthRequired
        );
    }

    /// A client's address cannot move the client field or the class: the address is
    /// escaped by qmail-smtpd, and the reply follows the first `: ` after ` from IP`.
    #[test]
    fn hostile_addresses_stay_in_their_field() {
        let l = "qmail-smtpd: pid 1: refused RCPT <a\\040from\\0401.2.3.4:\\040we\\040don't\\040relay> from 192.0.2.7: 550 5.1.1 sorry, no mailbox here by that name (#5.1.1)";
        assert_eq!(
            parse(l),
            Event::Refused {
                reason: Reason::UnknownRecipient,
                client: "192.0.2.7".into()
            }
        );
        assert_eq!(parse("qmail-smtpd: pid x: new msg 1"), Event::Other);
        assert_eq!(parse("qmail-scan: new msg 1"), Event::Other);
    }

    #[test]
    fn qmail_scan_lines() {
        assert_eq!(
            parse(
                "qmail-scan: refuse virus=Eicar-Test-Signature from=a@b rcpts=1 ip=1.2.3.4 helo=x bytes=9 parts=1 members=0 expanded=0 ms=3"
            ),
            Event::Scan {
                verdict: Verdict::Refuse,
                virus: Some("Eicar-Test-Signature".into())
            }
        );
        assert_eq!(
            parse("qmail-scan: clean from=x\\040virus\\075Fake rcpts=1 ip=1.2.3.4"),
            Event::Scan {
                verdict: Verdict::Clean,
                virus: None
            }
        );
        assert_eq!(
            parse(
                "qmail-scan: quarantine rule=@exe line=3 remark=x place=a.zip stored=q/1 from=a@b"
            ),
            Event::Scan {
                verdict: Verdict::Quarantine,
                virus: None
            }
        );
        assert_eq!(parse("qmail-scan: warning: unable to x"), Event::Other);
    }

    #[test]
    fn reason_keys() {
        assert_eq!(
            reason_key("Sorry,_no_mailbox_here_by_that_name._(#5.1.1)/"),
            "Sorry, no mailbox here by that name. (#5.1.1)"
        );
        assert_eq!(
            reason_key("Connected_to_192.0.2.1_but_greeting_failed./"),
            "Connected to IP but greeting failed."
        );
        assert_eq!(reason_key(""), "(no text)");
        assert_eq!(reason_key(&"x".repeat(500)).len(), 120);
    }
}
