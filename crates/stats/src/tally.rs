//! The counts of a period, built from log lines in the order each log wrote them.
//!
//! A line is `@TAI64N TEXT` (multilog's `t`); lines stamped before `since` are skipped.
//! qmail-send's events are tied together by their numbers: `info msg N` gives the
//! message's sender, size and start; `starting delivery D: msg N to CHANNEL R` ties a
//! delivery number to its message and recipient until `delivery D: ...` ends it; the
//! delay of a message runs from its `info msg` to the end of its last delivery, taken at
//! `end msg N`. Every map is bounded (see [`TopCounter`] and the `MAX_` constants), so
//! a huge or hostile log costs bounded memory; what was dropped is counted.

use std::collections::{BTreeMap, HashMap};

use crate::event::{self, Event, Outcome, Reason, Verdict};
use crate::topn::TopCounter;

/// Messages in flight (between `info msg` and `end msg`) remembered for their delay.
pub const MAX_MESSAGES: usize = 200_000;
/// Deliveries in progress remembered for their recipient (qmail-send runs at most a few
/// hundred at once; more means lines were lost).
pub const MAX_DELIVERIES: usize = 100_000;
/// Delays kept for the percentiles; past this, a deterministic reservoir sample.
pub const MAX_DELAYS: usize = 1_000_000;
/// Hours reported (a little over a year).
pub const MAX_HOURS: usize = 24 * 400;
/// Distinct keys kept by each top list.
pub const TOP_CAPACITY: usize = 4096;
/// Longest line read; the rest of a longer line is skipped.
pub const LINE_MAX: usize = 4096;

/// The per-hour series, in this order.
pub const HOUR_SERIES: [&str; 5] = ["received", "delivered", "bounced", "deferred", "refused"];

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Hour {
    pub received: u64,
    pub delivered: u64,
    pub bounced: u64,
    pub deferred: u64,
    pub refused: u64,
}

impl Hour {
    pub fn series(&self) -> [u64; 5] {
        [
            self.received,
            self.delivered,
            self.bounced,
            self.deferred,
            self.refused,
        ]
    }
}

struct Flight {
    start_ms: i64,
    last_end_ms: Option<i64>,
}

struct Started {
    id: u64,
    remote: bool,
    recipient: String,
}

/// Everything counted.
pub struct Stats {
    since_ms: Option<i64>,
    pub first_ms: Option<i64>,
    pub last_ms: Option<i64>,
    pub received: u64,
    pub bytes: u64,
    pub delivered_local: u64,
    pub delivered_remote: u64,
    pub bounced: u64,
    pub deferred: u64,
    pub bounce_messages: u64,
    pub triple_bounces: u64,
    pub smtp_accepted: u64,
    pub deferral_reasons: TopCounter,
    pub bounce_reasons: TopCounter,
    pub senders: TopCounter,
    pub recipients: TopCounter,
    pub remote_domains: TopCounter,
    pub refusals: BTreeMap<Reason, u64>,
    pub refusing_clients: TopCounter,
    pub hours: BTreeMap<i64, Hour>,
    /// qmail-scan's verdicts, in [`Verdict::ALL`]'s order, and the viruses it named.
    pub scanned: [u64; 4],
    pub viruses: TopCounter,
    /// Lines read, and lines whose event could not be tied to its message or hour.
    pub lines: u64,
    pub untracked: u64,
    delays_ms: Vec<i64>,
    delays_seen: u64,
    sample_state: u64,
    flights: HashMap<u64, Flight>,
    started: HashMap<u64, Started>,
}

impl Stats {
    /// Counts of lines stamped at or after `since_ms` (unix milliseconds), or of all.
    pub fn new(since_ms: Option<i64>) -> Stats {
        let top = || TopCounter::new(TOP_CAPACITY);
        Stats {
            since_ms,
            first_ms: None,
            last_ms: None,
            received: 0,
            bytes: 0,
            delivered_local: 0,
            delivered_remote: 0,
            bounced: 0,
            deferred: 0,
            bounce_messages: 0,
            triple_bounces: 0,
            smtp_accepted: 0,
            deferral_reasons: top(),
            bounce_reasons: top(),
            senders: top(),
            recipients: top(),
            remote_domains: top(),
            refusals: BTreeMap::new(),
            refusing_clients: top(),
            hours: BTreeMap::new(),
            scanned: [0; 4],
            viruses: top(),
            lines: 0,
            untracked: 0,
            delays_ms: Vec::new(),
            delays_seen: 0,
            sample_state: 0x9e37_79b9_7f4a_7c15,
            flights: HashMap::new(),
            started: HashMap::new(),
        }
    }

    pub fn since_ms(&self) -> Option<i64> {
        self.since_ms
    }

    /// Read one raw log line (without its newline).
    pub fn feed_line(&mut self, raw: &[u8]) {
        let (stamp, text) = split_stamp(raw);
        if let Some(since) = self.since_ms
            && stamp.is_none_or(|t| t < since)
        {
            return;
        }
        self.lines += 1;
        if let Some(t) = stamp {
            self.first_ms = Some(self.first_ms.map_or(t, |f| f.min(t)));
            self.last_ms = Some(self.last_ms.map_or(t, |l| l.max(t)));
        }
        let text = printable(text);
        self.apply(stamp, event::parse(&text));
    }

    fn hour(&mut self, t: Option<i64>) -> Option<&mut Hour> {
        let h = t?.div_euclid(3_600_000);
        if !self.hours.contains_key(&h) && self.hours.len() >= MAX_HOURS {
            return None;
        }
        Some(self.hours.entry(h).or_default())
    }

    fn apply(&mut self, t: Option<i64>, e: Event) {
        match e {
            Event::NewMsg(_) => {
                self.received += 1;
                if let Some(h) = self.hour(t) {
                    h.received += 1;
                }
            }
            Event::InfoMsg { id, bytes, sender } => {
                self.bytes = self.bytes.saturating_add(bytes);
                self.senders.add(&display_address(&sender), 1);
                if let Some(start_ms) = t {
                    if self.flights.len() < MAX_MESSAGES || self.flights.contains_key(&id) {
                        self.flights.insert(
                            id,
                            Flight {
                                start_ms,
                                last_end_ms: None,
                            },
                        );
                    } else {
                        self.untracked += 1;
                    }
                }
            }
            Event::Starting {
                delivery,
                id,
                remote,
                recipient,
            } => {
                if self.started.len() < MAX_DELIVERIES || self.started.contains_key(&delivery) {
                    self.started.insert(
                        delivery,
                        Started {
                            id,
                            remote,
                            recipient,
                        },
                    );
                } else {
                    self.untracked += 1;
                }
            }
            Event::Delivery {
                delivery,
                outcome,
                text,
            } => self.delivery(t, delivery, outcome, &text),
            Event::EndMsg(id) => {
                if let Some(f) = self.flights.remove(&id)
                    && let Some(end) = f.last_end_ms
                {
                    self.record_delay(end.saturating_sub(f.start_ms).max(0));
                }
            }
            Event::BounceMsg => self.bounce_messages += 1,
            Event::TripleBounce => self.triple_bounces += 1,
            Event::Refused { reason, client } => {
                *self.refusals.entry(reason).or_default() += 1;
                self.refusing_clients.add(&client, 1);
                if let Some(h) = self.hour(t) {
                    h.refused += 1;
                }
            }
            Event::Accepted { .. } => self.smtp_accepted += 1,
            Event::Scan { verdict, virus } => {
                if let Some(i) = Verdict::ALL.iter().position(|v| *v == verdict) {
                    self.scanned[i] += 1;
                }
                if let Some(v) = virus {
                    self.viruses.add(&v, 1);
                }
            }
            Event::Other => {}
        }
    }

    fn delivery(&mut self, t: Option<i64>, delivery: u64, outcome: Outcome, text: &str) {
        let started = self.started.remove(&delivery);
        if started.is_none() {
            self.untracked += 1;
        }
        match outcome {
            Outcome::Deferral => {
                self.deferred += 1;
                self.deferral_reasons.add(&event::reason_key(text), 1);
                if let Some(h) = self.hour(t) {
                    h.deferred += 1;
                }
                return;
            }
            Outcome::Success => {
                match started.as_ref().map(|s| s.remote) {
                    Some(true) => self.delivered_remote += 1,
                    _ => self.delivered_local += 1,
                }
                if let Some(h) = self.hour(t) {
                    h.delivered += 1;
                }
            }
            Outcome::Failure => {
                self.bounced += 1;
                self.bounce_reasons.add(&event::reason_key(text), 1);
                if let Some(h) = self.hour(t) {
                    h.bounced += 1;
                }
            }
        }
        let Some(s) = started else { return };
        self.recipients.add(&s.recipient, 1);
        if s.remote {
            let domain = s.recipient.rsplit_once('@').map_or("", |(_, d)| d);
            self.remote_domains.add(&domain.to_ascii_lowercase(), 1);
        }
        if let (Some(f), Some(t)) = (self.flights.get_mut(&s.id), t) {
            f.last_end_ms = Some(f.last_end_ms.map_or(t, |l| l.max(t)));
        }
    }

    fn record_delay(&mut self, ms: i64) {
        self.delays_seen += 1;
        if self.delays_ms.len() < MAX_DELAYS {
            self.delays_ms.push(ms);
            return;
        }
        // reservoir sampling (algorithm R) with a fixed xorshift: same input, same output
        let mut x = self.sample_state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.sample_state = x;
        let j = x % self.delays_seen;
        if let Some(slot) = self.delays_ms.get_mut(j as usize) {
            *slot = ms;
        }
    }

    /// Messages whose delay is known (the count, not the sample).
    pub fn delay_count(&self) -> u64 {
        self.delays_seen
    }

    /// The `p`th percentile of the delays in milliseconds (nearest rank), None when no
    /// message was seen from start to end.
    pub fn delay_percentile(&self, p: u32) -> Option<i64> {
        if self.delays_ms.is_empty() {
            return None;
        }
        let mut v = self.delays_ms.clone();
        v.sort_unstable();
        let n = v.len() as u64;
        let rank = (u64::from(p.min(100)) * n).div_ceil(100).max(1);
        v.get((rank - 1) as usize).copied()
    }

    pub fn delivered(&self) -> u64 {
        self.delivered_local + self.delivered_remote
    }

    pub fn refused(&self) -> u64 {
        self.refusals.values().sum()
    }
}

/// `(unix milliseconds, text)` of `@TAI64N TEXT`; no time when the stamp is missing.
pub fn split_stamp(raw: &[u8]) -> (Option<i64>, &[u8]) {
    if raw.len() >= 26
        && raw[0] == b'@'
        && raw[25] == b' '
        && let Some(t) = tai64::Tai64n::from_hex(&raw[1..25])
    {
        let ms = t
            .unix_secs()
            .saturating_mul(1000)
            .saturating_add(i64::from(t.nanos / 1_000_000));
        return (Some(ms), &raw[26..]);
    }
    (None, raw)
}

/// The line as text with every control character as `?`: whatever reaches a terminal,
/// a JSON string or an HTML page is one line of visible characters.
fn printable(b: &[u8]) -> String {
    String::from_utf8_lossy(b)
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// qmail-send logs the null sender as `<>`; show it so.
fn display_address(a: &str) -> String {
    if a.is_empty() {
        "<>".to_string()
    } else {
        a.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(secs: i64, text: &str) -> Vec<u8> {
        let t = tai64::Tai64n {
            secs: (secs as u64).wrapping_add(tai64::EPOCH),
            nanos: 0,
        };
        format!("{} {text}", t.to_hex()).into_bytes()
    }

    fn feed(s: &mut Stats, lines: &[(i64, &str)]) {
        for (t, l) in lines {
            s.feed_line(&line(*t, l));
        }
    }

    #[test]
    fn a_day_of_qmail_send() {
        let mut s = Stats::new(None);
        feed(
            &mut s,
            &[
                (3600, "new msg 1"),
                (3600, "info msg 1: bytes 100 from <a@x.test> qp 5 uid 0"),
                (3601, "starting delivery 1: msg 1 to local joe@ours.test"),
                (3601, "starting delivery 2: msg 1 to remote bob@Far.test"),
                (3602, "delivery 1: success: did_0+0+1/"),
                (
                    3605,
                    "delivery 2: deferral: Connected_to_192.0.2.1_but_greeting_failed./",
                ),
                (3610, "starting delivery 3: msg 1 to remote bob@Far.test"),
                (3620, "delivery 3: success: 192.0.2.1_accepted_message./"),
                (3620, "end msg 1"),
                (7300, "new msg 2"),
                (7300, "info msg 2: bytes 50 from <> qp 6 uid 0"),
                (7301, "starting delivery 4: msg 2 to local nobody@ours.test"),
                (
                    7302,
                    "delivery 4: failure: Sorry,_no_mailbox_here_by_that_name._(#5.1.1)/",
                ),
                (7302, "bounce msg 2 qp 7"),
                (7302, "end msg 2"),
                (7303, "status: local 0/10 remote 0/20"),
            ],
        );
        assert_eq!((s.received, s.bytes), (2, 150));
        assert_eq!((s.delivered_local, s.delivered_remote), (1, 1));
        assert_eq!((s.bounced, s.deferred, s.bounce_messages), (1, 1, 1));
        assert_eq!(s.delay_count(), 2);
        assert_eq!(s.delay_percentile(50), Some(2000));
        assert_eq!(s.delay_percentile(100), Some(20_000));
        assert_eq!(s.remote_domains.top(5), vec![("far.test".to_string(), 1)]);
        assert_eq!(
            s.bounce_reasons.top(5)[0].0,
            "Sorry, no mailbox here by that name. (#5.1.1)"
        );
        assert_eq!(
            s.deferral_reasons.top(5)[0].0,
            "Connected to IP but greeting failed."
        );
        assert_eq!(s.senders.top(5).len(), 2);
        assert!(s.senders.top(5).iter().any(|(k, _)| k == "<>"));
        let hours: Vec<(i64, Hour)> = s.hours.iter().map(|(k, v)| (*k, *v)).collect();
        assert_eq!(hours.len(), 2);
        assert_eq!(hours[0].1.received, 1);
        assert_eq!(hours[0].1.delivered, 2);
        assert_eq!(hours[1].1.bounced, 1);
        assert_eq!(s.untracked, 0);
    }

    #[test]
    fn since_skips_older_and_unstamped_lines() {
        let mut s = Stats::new(Some(5_000_000));
        feed(&mut s, &[(4999, "new msg 1"), (5000, "new msg 2")]);
        s.feed_line(b"new msg 3");
        assert_eq!(s.received, 1);
        let mut all = Stats::new(None);
        all.feed_line(b"new msg 3");
        assert_eq!((all.received, all.hours.len()), (1, 0));
    }

    #[test]
    fn refusals_by_reason_and_client() {
        let mut s = Stats::new(None);
        feed(
            &mut s,
            &[
                (
                    10,
                    "qmail-smtpd: pid 1: refused RCPT <x@far.test> from 192.0.2.1: 553 5.7.1 we don't relay (#5.7.1)",
                ),
                (
                    11,
                    "qmail-smtpd: pid 1: refused RCPT <y@far.test> from 192.0.2.1: 553 5.7.1 we don't relay (#5.7.1)",
                ),
                (
                    12,
                    "qmail-smtpd: pid 2: auth failed ip=192.0.2.9 mech=PLAIN user=x",
                ),
                (
                    13,
                    "qmail-smtpd: pid 2: message accepted qp 9 from 192.0.2.9 <a@b> to 1 recipients",
                ),
            ],
        );
        assert_eq!(s.refused(), 3);
        assert_eq!(s.refusals.get(&Reason::Relay), Some(&2));
        assert_eq!(s.refusals.get(&Reason::AuthFailure), Some(&1));
        assert_eq!(
            s.refusing_clients.top(1),
            vec![("192.0.2.1".to_string(), 2)]
        );
        assert_eq!(s.smtp_accepted, 1);
    }

    #[test]
    fn content_filter_verdicts() {
        let mut s = Stats::new(None);
        feed(
            &mut s,
            &[
                (10, "qmail-scan: clean from=a rcpts=1"),
                (11, "qmail-scan: refuse virus=Eicar from=a rcpts=1"),
                (12, "qmail-scan: quarantine rule=x from=a"),
            ],
        );
        assert_eq!(s.scanned, [1, 1, 1, 0]);
        assert_eq!(s.viruses.top(5), vec![("Eicar".to_string(), 1)]);
    }

    /// Control bytes and invalid UTF-8 in a line never reach the outputs as such.
    #[test]
    fn hostile_bytes_become_visible() {
        let mut s = Stats::new(None);
        s.feed_line(b"info msg 1: bytes 1 from <a\x1b[2J\xff@x> qp 1 uid 0");
        let k = &s.senders.top(1)[0].0;
        assert!(!k.chars().any(|c| c.is_control()), "{k:?}");
    }

    #[test]
    fn bounded_state() {
        let mut s = Stats::new(None);
        for i in 0..(MAX_DELIVERIES as u64 + 10) {
            s.feed_line(format!("starting delivery {i}: msg 1 to local a@b").as_bytes());
        }
        assert!(s.started.len() <= MAX_DELIVERIES);
        assert_eq!(s.untracked, 10);
    }

    #[test]
    fn stamps() {
        assert_eq!(
            split_stamp(b"@400000000000000a0bebc200 x"),
            (Some(200), &b"x"[..])
        );
        assert_eq!(split_stamp(b"@4000zz"), (None, &b"@4000zz"[..]));
    }
}
