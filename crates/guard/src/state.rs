//! qmail-guard's memory between passes: `HOME/guard/state`, a text file replaced whole
//! (temporary file, fsync, rename) at the end of every pass.
//!
//! ```text
//! qmail-guard state 1
//! cursor DEV INO OFFSET STAMP DIR        where reading DIR stopped (STAMP: @hex or -)
//! sender KEY SECS SECS ...               the window's event times of a sender
//! client KEY SECS ...                    ... of a client address
//! warned sender|client KEY SECS          when the last warning was sent
//! block sender|client KEY SINCE COUNT    a block qmail-guard made (unix seconds)
//! ```
//! Keys never hold a space (events.rs); a line that does not parse is skipped, so a
//! damaged file costs counts, never a crash.

use crate::logs::Cursor;
use crate::window::{Secs, Window};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tai64::Tai64n;

const HEAD: &str = "qmail-guard state 1";

/// Senders or client addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Sender,
    Client,
}

impl Kind {
    pub fn word(self) -> &'static str {
        match self {
            Kind::Sender => "sender",
            Kind::Client => "client",
        }
    }
    fn from_word(w: &str) -> Option<Kind> {
        match w {
            "sender" => Some(Kind::Sender),
            "client" => Some(Kind::Client),
            _ => None,
        }
    }
}

/// A block qmail-guard made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Block {
    /// Unix seconds (wall clock) when it was made.
    pub since: u64,
    pub count: usize,
}

#[derive(Debug, Default)]
pub struct State {
    pub cursors: BTreeMap<PathBuf, Cursor>,
    pub senders: Window,
    pub clients: Window,
    pub warned: BTreeMap<(Kind, String), Secs>,
    pub blocks: BTreeMap<(Kind, String), Block>,
}

impl State {
    pub fn new(span: Secs, keep: usize, max_keys: usize) -> State {
        State {
            senders: Window::new(span, keep, max_keys),
            clients: Window::new(span, keep, max_keys),
            ..State::default()
        }
    }

    pub fn window(&mut self, k: Kind) -> &mut Window {
        match k {
            Kind::Sender => &mut self.senders,
            Kind::Client => &mut self.clients,
        }
    }

    /// Parse the file's text into a state with these window limits.
    pub fn parse(text: &str, span: Secs, keep: usize, max_keys: usize) -> State {
        let mut s = State::new(span, keep, max_keys);
        let mut lines = text.lines();
        if lines.next() != Some(HEAD) {
            return s;
        }
        for line in lines {
            let f: Vec<&str> = line.splitn(6, ' ').collect();
            match f.first().copied() {
                Some("cursor") if f.len() == 6 => {
                    let num = |i: usize| f[i].parse::<u64>().ok();
                    if let (Some(dev), Some(ino), Some(offset)) = (num(1), num(2), num(3)) {
                        let stamp = f[4]
                            .strip_prefix('@')
                            .and_then(|h| Tai64n::from_hex(h.as_bytes()));
                        s.cursors.insert(
                            PathBuf::from(f[5]),
                            Cursor {
                                dev,
                                ino,
                                offset,
                                stamp,
                            },
                        );
                    }
                }
                Some(w @ ("sender" | "client")) if f.len() >= 3 => {
                    let all: Vec<&str> = line.split(' ').collect();
                    let stamps: Vec<Secs> =
                        all[2..].iter().filter_map(|t| t.parse().ok()).collect();
                    let k = Kind::from_word(w).unwrap_or(Kind::Sender);
                    s.window(k).restore(all[1], &stamps);
                }
                Some("warned") if f.len() == 4 => {
                    if let (Some(k), Ok(t)) = (Kind::from_word(f[1]), f[3].parse()) {
                        s.warned.insert((k, f[2].to_string()), t);
                    }
                }
                Some("block") if f.len() == 5 => {
                    if let (Some(k), Ok(since), Ok(count)) =
                        (Kind::from_word(f[1]), f[3].parse(), f[4].parse())
                    {
                        s.blocks
                            .insert((k, f[2].to_string()), Block { since, count });
                    }
                }
                _ => {}
            }
        }
        s
    }

    pub fn text(&self) -> String {
        let mut out = format!("{HEAD}\n");
        for (dir, c) in &self.cursors {
            let stamp = c.stamp.map(|t| t.to_hex()).unwrap_or_else(|| "-".into());
            out.push_str(&format!(
                "cursor {} {} {} {stamp} {}\n",
                c.dev,
                c.ino,
                c.offset,
                dir.display()
            ));
        }
        for (k, w) in [(Kind::Sender, &self.senders), (Kind::Client, &self.clients)] {
            let mut keys: Vec<_> = w.entries().collect();
            keys.sort();
            for (key, stamps) in keys {
                out.push_str(k.word());
                out.push(' ');
                out.push_str(key);
                for t in stamps {
                    out.push_str(&format!(" {t}"));
                }
                out.push('\n');
            }
        }
        for ((k, key), t) in &self.warned {
            out.push_str(&format!("warned {} {key} {t}\n", k.word()));
        }
        for ((k, key), b) in &self.blocks {
            out.push_str(&format!(
                "block {} {key} {} {}\n",
                k.word(),
                b.since,
                b.count
            ));
        }
        out
    }

    pub fn load(path: &Path, span: Secs, keep: usize, max_keys: usize) -> std::io::Result<State> {
        let text = crate::files::read(path)?;
        Ok(State::parse(&text, span, keep, max_keys))
    }

    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        qsys::fsync::write_atomic(path, self.text().as_bytes(), 0o600)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut s = State::new(3600, 10, 100);
        s.cursors.insert(
            PathBuf::from("/var/qmail/supervise/qmail-send/log/main"),
            Cursor {
                dev: 1,
                ino: 2,
                offset: 3,
                stamp: Tai64n::from_hex(b"400000006b0341c718a7458c"),
            },
        );
        s.cursors
            .insert(PathBuf::from("/x y/log"), Cursor::default());
        s.senders.add("a@b.test", 100);
        s.senders.add("a@b.test", 200);
        s.clients.add("192.0.2.1", 50);
        s.warned.insert((Kind::Sender, "a@b.test".into()), 200);
        s.blocks.insert(
            (Kind::Client, "2001:db8::1".into()),
            Block {
                since: 1000,
                count: 12,
            },
        );
        let text = s.text();
        let back = State::parse(&text, 3600, 10, 100);
        assert_eq!(back.text(), text);
        assert_eq!(back.cursors.len(), 2);
        // garbage is skipped, never a panic
        let junk = format!("{HEAD}\ncursor x\nblock sender\nsender\nwarned a b c\n\u{0}\n");
        let s = State::parse(&junk, 3600, 10, 100);
        assert!(s.cursors.is_empty() && s.blocks.is_empty());
        assert!(State::parse("other", 1, 1, 1).cursors.is_empty());
    }
}
