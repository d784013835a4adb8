//! The counts as text (for a terminal or a mail) and as JSON (for machines).
//!
//! Both show the same figures under the same names; the JSON document's fields are
//! documented in qmail-stats' manual. Keys a client chose were made printable when read
//! (tally.rs); JSON strings are escaped by serde_json.

use serde_json::{Value, json};

use crate::event::{Reason, Verdict};
use crate::tally::{HOUR_SERIES, Stats};
use crate::time::{format_hour, format_utc};

/// Seconds with millisecond precision, as JSON numbers and in text.
fn secs(ms: i64) -> f64 {
    ms as f64 / 1000.0
}

fn pairs(list: Vec<(String, u64)>, key: &str) -> Value {
    Value::Array(
        list.into_iter()
            .map(|(k, n)| json!({ key: k, "count": n }))
            .collect(),
    )
}

/// The report as one JSON document.
pub fn json(s: &Stats, top: usize) -> Value {
    let by_reason: serde_json::Map<String, Value> = Reason::ALL
        .iter()
        .map(|r| {
            (
                r.name().to_string(),
                json!(s.refusals.get(r).copied().unwrap_or(0)),
            )
        })
        .collect();
    let pct = |p| s.delay_percentile(p).map(secs);
    json!({
        "period": {
            "since": s.since_ms().map(format_utc),
            "first": s.first_ms.map(format_utc),
            "last": s.last_ms.map(format_utc),
        },
        "lines": s.lines,
        "received": s.received,
        "bytes": s.bytes,
        "delivered": {
            "total": s.delivered(),
            "local": s.delivered_local,
            "remote": s.delivered_remote,
        },
        "bounced": s.bounced,
        "deferred": s.deferred,
        "bounce_messages": s.bounce_messages,
        "triple_bounces": s.triple_bounces,
        "smtp_accepted": s.smtp_accepted,
        "delay_seconds": {
            "count": s.delay_count(),
            "p50": pct(50),
            "p90": pct(90),
            "p99": pct(99),
            "max": pct(100),
        },
        "deferrals_by_reason": pairs(s.deferral_reasons.top(top), "reason"),
        "bounces_by_reason": pairs(s.bounce_reasons.top(top), "reason"),
        "top_senders": pairs(s.senders.top(top), "address"),
        "top_recipients": pairs(s.recipients.top(top), "address"),
        "top_remote_domains": pairs(s.remote_domains.top(top), "domain"),
        "refusals": {
            "total": s.refused(),
            "by_reason": by_reason,
            "by_client": pairs(s.refusing_clients.top(top), "client"),
        },
        "content_filter": {
            "verdicts": Verdict::ALL.iter().zip(s.scanned).map(|(v, n)| (v.name().to_string(), json!(n))).collect::<serde_json::Map<String, Value>>(),
            "viruses": pairs(s.viruses.top(top), "virus"),
        },
        "hours": s.hours.iter().map(|(h, c)| {
            let mut o = serde_json::Map::new();
            o.insert("hour".into(), json!(format_hour(*h)));
            for (name, v) in HOUR_SERIES.iter().zip(c.series()) {
                o.insert((*name).into(), json!(v));
            }
            Value::Object(o)
        }).collect::<Vec<_>>(),
        "untracked_lines": s.untracked,
    })
}

fn list(out: &mut String, title: &str, rows: &[(String, u64)]) {
    out.push_str(&format!("{title}:\n"));
    if rows.is_empty() {
        out.push_str("  none\n");
    }
    for (k, n) in rows {
        out.push_str(&format!("  {n:>8}  {k}\n"));
    }
}

/// The delay line's figures, `-` when unknown.
fn delay_text(s: &Stats, p: u32) -> String {
    s.delay_percentile(p)
        .map_or("-".to_string(), |ms| format!("{:.3}s", secs(ms)))
}

/// The report as text.
pub fn text(s: &Stats, top: usize) -> String {
    let mut o = String::new();
    let when = |t: Option<i64>| t.map_or("-".to_string(), |t| format!("{} UTC", format_utc(t)));
    o.push_str(&format!(
        "period: {} to {}{}\n",
        when(s.first_ms),
        when(s.last_ms),
        s.since_ms()
            .map_or(String::new(), |t| format!(" (since {})", when(Some(t))))
    ));
    o.push_str(&format!("messages received: {}\n", s.received));
    o.push_str(&format!("bytes received: {}\n", s.bytes));
    o.push_str(&format!(
        "deliveries: {} (local {}, remote {})\n",
        s.delivered(),
        s.delivered_local,
        s.delivered_remote
    ));
    o.push_str(&format!("bounced recipients: {}\n", s.bounced));
    o.push_str(&format!("deferrals: {}\n", s.deferred));
    o.push_str(&format!("bounce messages: {}\n", s.bounce_messages));
    o.push_str(&format!("triple bounces: {}\n", s.triple_bounces));
    o.push_str(&format!("messages accepted by SMTP: {}\n", s.smtp_accepted));
    o.push_str(&format!(
        "delivery delay: p50 {} p90 {} p99 {} max {} ({} messages)\n",
        delay_text(s, 50),
        delay_text(s, 90),
        delay_text(s, 99),
        delay_text(s, 100),
        s.delay_count()
    ));
    o.push_str(&format!("SMTP refusals: {}\n", s.refused()));
    for (r, n) in &s.refusals {
        o.push_str(&format!("  {n:>8}  {}\n", r.name()));
    }
    list(&mut o, "refusals by client", &s.refusing_clients.top(top));
    o.push_str("content filter (qmail-scan):");
    for (v, n) in Verdict::ALL.iter().zip(s.scanned) {
        o.push_str(&format!(" {} {n},", v.name()));
    }
    o.pop();
    o.push('\n');
    list(&mut o, "viruses", &s.viruses.top(top));
    list(&mut o, "deferrals by reason", &s.deferral_reasons.top(top));
    list(&mut o, "bounces by reason", &s.bounce_reasons.top(top));
    list(&mut o, "top senders", &s.senders.top(top));
    list(&mut o, "top recipients", &s.recipients.top(top));
    list(&mut o, "top remote domains", &s.remote_domains.top(top));
    o.push_str("per hour (UTC):\n");
    o.push_str(&format!("  {:<16}", "hour"));
    for name in HOUR_SERIES {
        o.push_str(&format!(" {name:>9}"));
    }
    o.push('\n');
    for (h, c) in &s.hours {
        o.push_str(&format!("  {:<16}", format_hour(*h)));
        for v in c.series() {
            o.push_str(&format!(" {v:>9}"));
        }
        o.push('\n');
    }
    if s.untracked > 0 {
        o.push_str(&format!(
            "lines not tied to their message: {}\n",
            s.untracked
        ));
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Stats {
        let mut s = Stats::new(None);
        for l in [
            "@400000006900000000000000 new msg 1",
            "@400000006900000000000000 info msg 1: bytes 10 from <\"<script>\"@x> qp 1 uid 0",
            "@400000006900000100000000 starting delivery 1: msg 1 to local a@b",
            "@400000006900000200000000 delivery 1: success: did_0+0+1/",
            "@400000006900000200000000 end msg 1",
            "@400000006900000300000000 qmail-smtpd: pid 1: refused RCPT <x@y> from 10.0.0.1: 553 5.7.1 we don't relay (#5.7.1)",
        ] {
            s.feed_line(l.as_bytes());
        }
        s
    }

    #[test]
    fn json_fields() {
        let v = json(&sample(), 10);
        assert_eq!(v["received"], 1);
        assert_eq!(v["delivered"]["local"], 1);
        assert_eq!(v["refusals"]["by_reason"]["relay"], 1);
        assert_eq!(v["refusals"]["by_reason"]["virus"], 0);
        assert_eq!(v["delay_seconds"]["max"], 2.0);
        assert_eq!(v["top_senders"][0]["address"], "\"<script>\"@x");
        assert_eq!(v["hours"][0]["refused"], 1);
        // serde_json's output parses back to the same document
        let back: Value = serde_json::from_str(&v.to_string()).unwrap();
        assert_eq!(back, v);
    }

    #[test]
    fn text_lines() {
        let t = text(&sample(), 10);
        assert!(t.contains("messages received: 1\n"), "{t}");
        assert!(t.contains("deliveries: 1 (local 1, remote 0)\n"), "{t}");
        assert!(t.contains("SMTP refusals: 1\n"), "{t}");
        assert!(t.contains("       1  relay\n"), "{t}");
        assert!(t.contains("delivery delay: p50 2.000s"), "{t}");
    }
}
