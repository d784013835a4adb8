//! tcpserver's per-client limits, beside `-c` (which caps all connections together):
//! simultaneous connections from one client address (`-C`, as s6-tcpserver's `-C` and
//! the tcpserver-limits patch's `MAXCONNIP`) and new connections from one address per
//! window (`-N` per `-W` seconds, as Postfix's `smtpd_client_connection_rate_limit` per
//! `anvil_rate_time_unit`). A client is its IPv4 address or its IPv6 /64
//! (`limits::ip_key`, as every per-client counter of the mail system).
//!
//! The parent keeps the counts in memory, as Postfix's anvil does: it is the one process
//! that sees every accept and every child's end, so the counts are exact without locks.
//! The window is anvil's fixed one: it starts at a client's first connection and, once
//! `-W` seconds old, starts again at the next; refused connections are not counted.
//!
//! A rule of `-x` may set either limit for its clients with the variables
//! [`CONCURRENCY_VAR`] and [`RATE_VAR`] (a decimal number; `0` means no limit, which
//! exempts the client as Postfix's `smtpd_client_event_limit_exceptions` do). Unlike
//! the tcpserver-limits patch, where `MAXCONNIP="0"` refuses everyone, refusing is left
//! to `deny`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The rule variable that sets the simultaneous connections per client.
pub const CONCURRENCY_VAR: &str = "MAXCONNIP";
/// The rule variable that sets the new connections per client and window.
pub const RATE_VAR: &str = "MAXCONNRATEIP";

/// The limits for one client; 0 means none.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    /// Simultaneous connections.
    pub concurrent: u64,
    /// New connections per window.
    pub rate: u64,
}

impl Limits {
    /// These limits as changed by a rule's variables: each of [`CONCURRENCY_VAR`] and
    /// [`RATE_VAR`] that holds a decimal number replaces the value. The error names a
    /// variable that is set but not a number (the value is kept, for a log line).
    pub fn with_rule(self, vars: &[(Vec<u8>, Vec<u8>)]) -> (Limits, Option<String>) {
        let mut out = self;
        let mut bad = None;
        for (name, value) in vars {
            let slot = match name.as_slice() {
                n if n == CONCURRENCY_VAR.as_bytes() => &mut out.concurrent,
                n if n == RATE_VAR.as_bytes() => &mut out.rate,
                _ => continue,
            };
            match std::str::from_utf8(value)
                .ok()
                .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                .map(|v| v.parse::<u64>().unwrap_or(u64::MAX))
            {
                Some(n) => *slot = n,
                None => {
                    bad = Some(format!(
                        "{}={} is not a number",
                        String::from_utf8_lossy(name),
                        qsys::logsafe::text(value)
                    ))
                }
            }
        }
        (out, bad)
    }
}

/// What [`Table::admit`] decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Counted as one more running connection and one more start.
    Admit,
    /// `running` connections of the client are open; its limit is `limit`.
    TooMany { running: u64, limit: u64 },
    /// The client started `started` connections in the current window; its limit is
    /// `limit`.
    TooFast { started: u64, limit: u64 },
}

#[derive(Debug)]
struct Entry {
    running: u64,
    window_start: Instant,
    started: u64,
}

/// The running connections and recent starts per client.
#[derive(Debug)]
pub struct Table {
    window: Duration,
    entries: HashMap<String, Entry>,
    /// The client of each running child.
    pids: HashMap<u32, String>,
    /// Sweep for idle entries when the table grows past this.
    sweep_at: usize,
}

const MIN_SWEEP: usize = 1024;

impl Table {
    /// An empty table counting starts over `window`.
    pub fn new(window: Duration) -> Table {
        Table {
            window,
            entries: HashMap::new(),
            pids: HashMap::new(),
            sweep_at: MIN_SWEEP,
        }
    }

    /// Admit the client `key` under `limits` at `now`, or say which limit it is at.
    /// An admitted connection counts until [`Table::finished`] (after [`Table::attach`]
    /// to its child) or [`Table::release`] (no child after all).
    pub fn admit(&mut self, key: &str, limits: Limits, now: Instant) -> Verdict {
        if self.entries.len() >= self.sweep_at {
            self.sweep(now);
        }
        let window = self.window;
        let e = self.entries.entry(key.to_string()).or_insert(Entry {
            running: 0,
            window_start: now,
            started: 0,
        });
        if now.saturating_duration_since(e.window_start) >= window {
            e.window_start = now;
            e.started = 0;
        }
        if limits.concurrent > 0 && e.running >= limits.concurrent {
            return Verdict::TooMany {
                running: e.running,
                limit: limits.concurrent,
            };
        }
        if limits.rate > 0 && e.started >= limits.rate {
            return Verdict::TooFast {
                started: e.started,
                limit: limits.rate,
            };
        }
        e.running += 1;
        e.started += 1;
        Verdict::Admit
    }

    /// The admitted connection of `key` is served by child `pid`.
    pub fn attach(&mut self, pid: u32, key: &str) {
        self.pids.insert(pid, key.to_string());
    }

    /// An admitted connection of `key` got no child (spawn or fork failed).
    pub fn release(&mut self, key: &str) {
        if let Some(e) = self.entries.get_mut(key) {
            e.running = e.running.saturating_sub(1);
        }
    }

    /// Child `pid` ended: its client has one connection less.
    pub fn finished(&mut self, pid: u32) {
        if let Some(key) = self.pids.remove(&pid) {
            self.release(&key);
        }
    }

    /// The running connections of `key`.
    pub fn running(&self, key: &str) -> u64 {
        self.entries.get(key).map_or(0, |e| e.running)
    }

    /// The number of clients remembered.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Forget clients with nothing running whose window is over; sweep again only once
    /// the table has doubled, so sweeping costs O(1) per connection.
    fn sweep(&mut self, now: Instant) {
        let window = self.window;
        self.entries
            .retain(|_, e| e.running > 0 || now.saturating_duration_since(e.window_start) < window);
        self.sweep_at = (self.entries.len() * 2).max(MIN_SWEEP);
    }
}

/// The reply an SMTP service's client gets when a limit refuses it (Postfix's
/// `421 4.7.0 %s Error: too many connections from %s`, naming no address): `host` is
/// `-l`'s name, or the local address; anything but printable ASCII in it becomes `?`.
pub fn smtp_refusal(host: &str) -> String {
    let host: String = host
        .chars()
        .take(255)
        .map(|c| if c.is_ascii_graphic() { c } else { '?' })
        .collect();
    format!("421 4.7.0 {host} Error: too many connections from your address\r\n")
}

/// The log line of a refusal (without `tcpserver: `): `refused IP port P: ...`.
pub fn refusal_log(ip: &str, port: u16, v: Verdict, window: Duration) -> String {
    let why = match v {
        Verdict::Admit => "admitted".to_string(),
        Verdict::TooMany { running, limit } => {
            format!("too many connections from this address ({running} open, limit {limit})")
        }
        Verdict::TooFast { started, limit } => format!(
            "too many new connections from this address ({started} in {} s, limit {limit})",
            window.as_secs()
        ),
    };
    format!(
        "refused {} port {port}: {why}",
        qsys::logsafe::text(ip.as_bytes())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOTH: Limits = Limits {
        concurrent: 2,
        rate: 3,
    };

    #[test]
    fn concurrency_per_client_and_release_on_end() {
        let mut t = Table::new(Duration::from_secs(60));
        let now = Instant::now();
        let l = Limits {
            concurrent: 2,
            rate: 0,
        };
        assert_eq!(t.admit("127.0.0.2", l, now), Verdict::Admit);
        t.attach(100, "127.0.0.2");
        assert_eq!(t.admit("127.0.0.2", l, now), Verdict::Admit);
        t.attach(101, "127.0.0.2");
        assert_eq!(
            t.admit("127.0.0.2", l, now),
            Verdict::TooMany {
                running: 2,
                limit: 2
            }
        );
        // another client is not affected
        assert_eq!(t.admit("127.0.0.3", l, now), Verdict::Admit);
        t.finished(100);
        t.finished(100); // a second report of one pid changes nothing
        t.finished(999); // nor does an unknown child
        assert_eq!(t.running("127.0.0.2"), 1);
        assert_eq!(t.admit("127.0.0.2", l, now), Verdict::Admit);
        // a connection that got no child is given back
        t.release("127.0.0.2");
        assert_eq!(t.running("127.0.0.2"), 1);
        // no limit: any number
        for _ in 0..100 {
            assert_eq!(t.admit("127.0.0.4", Limits::default(), now), Verdict::Admit);
        }
        assert_eq!(t.running("127.0.0.4"), 100);
    }

    #[test]
    fn rate_trips_and_resets_after_the_window() {
        let mut t = Table::new(Duration::from_secs(10));
        let t0 = Instant::now();
        let l = Limits {
            concurrent: 0,
            rate: 3,
        };
        for i in 0..3 {
            assert_eq!(
                t.admit("10.0.0.1", l, t0 + Duration::from_secs(i)),
                Verdict::Admit
            );
        }
        assert_eq!(
            t.admit("10.0.0.1", l, t0 + Duration::from_secs(9)),
            Verdict::TooFast {
                started: 3,
                limit: 3
            }
        );
        // the window started at the first connection: 10 s later it starts again
        assert_eq!(
            t.admit("10.0.0.1", l, t0 + Duration::from_secs(10)),
            Verdict::Admit
        );
        // refused attempts did not count, and running connections do not hold the rate
        assert_eq!(t.running("10.0.0.1"), 4);
    }

    #[test]
    fn concurrency_is_checked_before_rate() {
        let mut t = Table::new(Duration::from_secs(60));
        let now = Instant::now();
        assert_eq!(t.admit("a", BOTH, now), Verdict::Admit);
        assert_eq!(t.admit("a", BOTH, now), Verdict::Admit);
        assert!(matches!(t.admit("a", BOTH, now), Verdict::TooMany { .. }));
        t.release("a");
        assert_eq!(t.admit("a", BOTH, now), Verdict::Admit);
        t.release("a");
        assert!(matches!(t.admit("a", BOTH, now), Verdict::TooFast { .. }));
    }

    #[test]
    fn idle_clients_are_swept() {
        let mut t = Table::new(Duration::from_secs(1));
        let t0 = Instant::now();
        for i in 0..MIN_SWEEP - 1 {
            t.admit(&format!("k{i}"), Limits::default(), t0);
            t.release(&format!("k{i}"));
        }
        t.admit("busy", Limits::default(), t0);
        assert_eq!(t.len(), MIN_SWEEP);
        // the next admission past the window sweeps every idle client but the busy one
        t.admit("new", Limits::default(), t0 + Duration::from_secs(2));
        assert_eq!(t.len(), 2);
        assert_eq!(t.running("busy"), 1);
    }

    #[test]
    fn rule_variables_set_or_exempt() {
        let base = Limits {
            concurrent: 5,
            rate: 30,
        };
        let v = |pairs: &[(&str, &str)]| -> Vec<(Vec<u8>, Vec<u8>)> {
            pairs
                .iter()
                .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
                .collect()
        };
        assert_eq!(base.with_rule(&v(&[("RELAYCLIENT", "")])), (base, None));
        assert_eq!(
            base.with_rule(&v(&[("MAXCONNIP", "0"), ("MAXCONNRATEIP", "7")])),
            (
                Limits {
                    concurrent: 0,
                    rate: 7
                },
                None
            )
        );
        let (l, bad) = base.with_rule(&v(&[("MAXCONNIP", "ten\n")]));
        assert_eq!(l, base);
        assert_eq!(bad.unwrap(), "MAXCONNIP=ten\\012 is not a number");
        let (l, _) = base.with_rule(&v(&[("MAXCONNRATEIP", "99999999999999999999999")]));
        assert_eq!(l.rate, u64::MAX);
    }

    #[test]
    fn texts() {
        assert_eq!(
            smtp_refusal("mx.example.test"),
            "421 4.7.0 mx.example.test Error: too many connections from your address\r\n"
        );
        assert_eq!(
            smtp_refusal("a\r\nb c"),
            "421 4.7.0 a??b?c Error: too many connections from your address\r\n"
        );
        assert_eq!(
            refusal_log(
                "127.0.0.2",
                4000,
                Verdict::TooMany {
                    running: 3,
                    limit: 3
                },
                Duration::from_secs(60)
            ),
            "refused 127.0.0.2 port 4000: too many connections from this address (3 open, limit 3)"
        );
        assert_eq!(
            refusal_log(
                "::1",
                1,
                Verdict::TooFast {
                    started: 9,
                    limit: 9
                },
                Duration::from_secs(2)
            ),
            "refused ::1 port 1: too many new connections from this address (9 in 2 s, limit 9)"
        );
    }
}
