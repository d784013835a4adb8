//! Bounce messages (qmail's `addbounce`/`injectbounce`, qmail.md 2.7), sent as an
//! RFC 3464 delivery status notification.
//!
//! `bounce/N` collects one record per failed recipient: `<addr>:\n`, the report text
//! (a `\n\n` inside turned into `\n/`), and a blank line. When the message is done the
//! records become a `multipart/report; report-type=delivery-status` message: part 1 is
//! qmail's QSBMF text word for word ("Hi. This is the qmail-send program at ..."), part
//! 2 the machine-readable `message/delivery-status`, part 3 the original message (as
//! `message/rfc822`, with its Return-Path). A bounce goes from `<>` to the sender; a
//! bounce of a bounce (empty sender) from `#@[]` to doublebounceto@doublebouncehost;
//! a bounce of a double bounce (`#@[]`) is dropped.

use crate::config::Config;
use std::io::{self, Read, Write};

/// One bounce record.
pub fn record(recipient: &str, text: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(recipient.len() + text.len() + 8);
    v.push(b'<');
    v.extend(recipient.bytes().map(|b| if b == b'\n' { b'_' } else { b }));
    v.extend_from_slice(b">:\n");
    let mut prev_nl = false;
    for &b in text {
        if b == b'\n' && prev_nl {
            v.extend_from_slice(b"/\n");
            continue;
        }
        prev_nl = b == b'\n';
        v.push(b);
    }
    if !v.ends_with(b"\n") {
        v.push(b'\n');
    }
    v.push(b'\n');
    v
}

/// What the bounce is and where it goes.
#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    /// From `<>` to the original sender.
    Single { to: String },
    /// From `#@[]` to the postmaster address.
    Double { to: String },
    /// A double bounce bounced: dropped.
    Triple,
}

/// Decide the route from the message's envelope sender.
pub fn route(cfg: &Config, sender: &str) -> Route {
    let sender = sender.strip_suffix("-@[]").unwrap_or(sender);
    if sender == "#@[]" {
        Route::Triple
    } else if sender.is_empty() {
        Route::Double {
            to: format!("{}@{}", cfg.doublebounceto, cfg.doublebouncehost),
        }
    } else {
        Route::Single {
            to: sender.to_string(),
        }
    }
}

/// The enhanced status code of a report text: its first `(#x.y.z)`, else the code a
/// remote server gave (`Remote host said: 550 5.1.1 ...`), else 5.0.0.
pub fn status_code(text: &str) -> String {
    let valid = |s: &str| {
        let p: Vec<&str> = s.split('.').collect();
        p.len() == 3
            && p.iter()
                .all(|x| !x.is_empty() && x.len() <= 3 && x.bytes().all(|b| b.is_ascii_digit()))
    };
    if let Some(i) = text.find("(#")
        && let Some(j) = text[i..].find(')')
        && valid(&text[i + 2..i + j])
    {
        return text[i + 2..i + j].to_string();
    }
    if let Some(i) = text.find("Remote host said: ") {
        let rest = &text[i + 18..];
        if let Some(code) = rest.split_whitespace().nth(1)
            && valid(code)
        {
            return code.to_string();
        }
    }
    "5.0.0".into()
}

/// The failed recipients and their texts, parsed back from `bounce/N`.
pub fn parse_records(data: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(data);
    text.split("\n\n")
        .filter_map(|rec| {
            let rec = rec.trim_start_matches('\n');
            let (first, rest) = rec.split_once('\n').unwrap_or((rec, ""));
            let addr = first.strip_prefix('<')?.strip_suffix(">:")?;
            Some((addr.to_string(), rest.to_string()))
        })
        .collect()
}

/// Write the bounce message. `records` is the content of `bounce/N`, `original` the
/// queued message, `sender` its envelope sender.
#[allow(clippy::too_many_arguments)] // each is one fact of the bounce; a struct would only rename them
pub fn write(
    out: &mut dyn Write,
    cfg: &Config,
    route: &Route,
    records: &[u8],
    sender: &str,
    original: &mut dyn Read,
    now: u64,
    id: u64,
) -> io::Result<()> {
    let to = match route {
        Route::Single { to } | Route::Double { to } => to.as_str(),
        Route::Triple => return Ok(()),
    };
    let double = matches!(route, Route::Double { .. });
    let boundary = format!("{now}.{id}.{}/{}", std::process::id(), cfg.bouncehost);
    let mut h = String::new();
    h.push_str(&format!("Date: {}\n", qsys::date::rfc5322(now)));
    h.push_str(&format!("From: {}@{}\n", cfg.bouncefrom, cfg.bouncehost));
    h.push_str(&format!("To: {to}\n"));
    h.push_str("Subject: failure notice\n");
    h.push_str("MIME-Version: 1.0\n");
    h.push_str(&format!("Content-Type: multipart/report; report-type=delivery-status;\n\tboundary=\"{boundary}\"\n\n"));
    h.push_str(&format!(
        "--{boundary}\nContent-Type: text/plain; charset=us-ascii\n\n"
    ));
    h.push_str(&format!(
        "Hi. This is the qmail-send program at {}.\n",
        cfg.bouncehost
    ));
    if double {
        h.push_str(
            "I tried to deliver a bounce message to this address, but the bounce bounced!\n\n",
        );
    } else {
        h.push_str(
            "I'm afraid I wasn't able to deliver your message to the following addresses.\n",
        );
        h.push_str("This is a permanent error; I've given up. Sorry it didn't work out.\n\n");
    }
    out.write_all(h.as_bytes())?;
    out.write_all(records)?;
    let mut h = String::new();
    if double {
        h.push_str("--- Below this line is the original bounce.\n\n");
    } else {
        h.push_str("--- Below this line is a copy of the message.\n\n");
    }
    h.push_str(&format!(
        "--{boundary}\nContent-Type: message/delivery-status\n\n"
    ));
    h.push_str(&format!("Reporting-MTA: dns; {}\n", cfg.bouncehost));
    h.push_str(&format!("Arrival-Date: {}\n", qsys::date::rfc5322(now)));
    for (addr, text) in parse_records(records) {
        let diagnostic: String = text.lines().collect::<Vec<_>>().join(" ");
        h.push_str(&format!(
            "\nFinal-Recipient: rfc822; {addr}\nAction: failed\nStatus: {}\n",
            status_code(&text)
        ));
        if let Some(i) = diagnostic.find("Remote host said: ") {
            h.push_str(&format!(
                "Diagnostic-Code: smtp; {}\n",
                &diagnostic[i + 18..]
            ));
        } else {
            h.push_str(&format!("Diagnostic-Code: x-qmail; {diagnostic}\n"));
        }
    }
    h.push_str(&format!("\n--{boundary}\nContent-Type: message/rfc822\n\n"));
    h.push_str(&format!("Return-Path: <{sender}>\n"));
    out.write_all(h.as_bytes())?;
    io::copy(original, out)?;
    out.write_all(format!("\n--{boundary}--\n").as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> Config {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("me"), "mx.example.test\n").unwrap();
        Config::load(&control::Controls::in_dir(d.path())).unwrap()
    }

    #[test]
    fn records_fold_blank_lines() {
        assert_eq!(record("a@b", b"x\n\ny"), b"<a@b>:\nx\n/\ny\n\n");
    }

    #[test]
    fn routes() {
        let c = cfg();
        assert_eq!(route(&c, "a@b"), Route::Single { to: "a@b".into() });
        assert_eq!(
            route(&c, ""),
            Route::Double {
                to: "postmaster@mx.example.test".into()
            }
        );
        assert_eq!(route(&c, "#@[]"), Route::Triple);
        assert_eq!(
            route(&c, "list-@x.test-@[]"),
            Route::Single {
                to: "list-@x.test".into()
            }
        );
    }

    #[test]
    fn status_codes() {
        assert_eq!(
            status_code("Sorry, no mailbox here by that name. (#5.1.1)"),
            "5.1.1"
        );
        assert_eq!(
            status_code("1.2.3.4 does not like recipient.\nRemote host said: 550 5.7.1 no\n"),
            "5.7.1"
        );
        assert_eq!(status_code("whatever"), "5.0.0");
    }

    #[test]
    fn bounce_text_keeps_qsbmf() {
        let c = cfg();
        let mut out = Vec::new();
        let recs = record(
            "joe@example.test",
            b"Sorry, no mailbox here by that name. (#5.1.1)\n",
        );
        write(
            &mut out,
            &c,
            &route(&c, "a@b"),
            &recs,
            "a@b",
            &mut &b"Subject: x\n\nbody\n"[..],
            0,
            7,
        )
        .unwrap();
        let s = String::from_utf8(out).unwrap();
        assert!(s.contains(
            "Hi. This is the qmail-send program at mx.example.test.\nI'm afraid I wasn't able"
        ));
        assert!(s.contains("<joe@example.test>:\nSorry, no mailbox here by that name. (#5.1.1)\n\n--- Below this line is a copy of the message.\n"));
        assert!(s.contains(
            "Final-Recipient: rfc822; joe@example.test\nAction: failed\nStatus: 5.1.1\n"
        ));
        assert!(
            s.contains("Content-Type: message/rfc822\n\nReturn-Path: <a@b>\nSubject: x\n\nbody\n")
        );
    }
}
