//! Counting keys a client chose (senders, recipients, domains, client addresses, reply
//! texts) in bounded memory.
//!
//! A [`TopCounter`] holds at most `capacity` keys of at most [`KEY_MAX`] bytes. When a new
//! key arrives at a full table, the less frequent half is dropped (its counts go to
//! [`TopCounter::dropped`]), so the table costs O(capacity) memory and amortised
//! O(log capacity) per key, however many distinct keys a hostile client sends. Keys that
//! stay in the table are counted exactly as long as it never filled; after that a key's
//! count is a lower bound (the classic trade-off of heavy-hitter counting).

use std::collections::HashMap;

/// Longest key kept; longer keys are cut (on a character boundary) and end in `...`.
pub const KEY_MAX: usize = 200;

#[derive(Debug, Clone)]
pub struct TopCounter {
    counts: HashMap<String, u64>,
    capacity: usize,
    dropped: u64,
}

impl TopCounter {
    pub fn new(capacity: usize) -> TopCounter {
        TopCounter {
            counts: HashMap::new(),
            capacity: capacity.max(2),
            dropped: 0,
        }
    }

    pub fn add(&mut self, key: &str, n: u64) {
        let key = bounded(key);
        if let Some(c) = self.counts.get_mut(key.as_str()) {
            *c = c.saturating_add(n);
            return;
        }
        if self.counts.len() >= self.capacity {
            self.prune();
        }
        self.counts.insert(key, n);
    }

    /// Keep the more frequent half (ties by key, so the result does not depend on the
    /// hash order).
    fn prune(&mut self) {
        let mut all: Vec<(String, u64)> = self.counts.drain().collect();
        all.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let keep = self.capacity / 2;
        for (_, n) in &all[keep..] {
            self.dropped = self.dropped.saturating_add(*n);
        }
        all.truncate(keep);
        self.counts.extend(all);
    }

    /// The `n` most frequent keys, most frequent first, ties by key.
    pub fn top(&self, n: usize) -> Vec<(String, u64)> {
        let mut all: Vec<(String, u64)> =
            self.counts.iter().map(|(k, v)| (k.clone(), *v)).collect();
        all.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        all.truncate(n);
        all
    }

    /// The sum of the counts of keys dropped to bound memory.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    pub fn len(&self) -> usize {
        self.counts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }
}

fn bounded(key: &str) -> String {
    if key.len() <= KEY_MAX {
        return key.to_string();
    }
    let mut end = KEY_MAX;
    while !key.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &key[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_orders() {
        let mut t = TopCounter::new(10);
        for k in ["a", "b", "a", "c", "a", "b"] {
            t.add(k, 1);
        }
        assert_eq!(t.top(2), vec![("a".to_string(), 3), ("b".to_string(), 2)]);
        assert_eq!(t.dropped(), 0);
    }

    /// A flood of distinct keys never grows the table past its capacity, and a frequent
    /// key survives it.
    #[test]
    fn a_flood_of_distinct_keys_is_bounded() {
        let mut t = TopCounter::new(100);
        for i in 0..100_000u32 {
            t.add("frequent", 1);
            t.add(&format!("junk{i}"), 1);
            assert!(t.len() <= 100);
        }
        assert_eq!(t.top(1)[0].0, "frequent");
        assert!(t.dropped() > 90_000);
    }

    #[test]
    fn long_keys_are_cut() {
        let mut t = TopCounter::new(4);
        t.add(&"é".repeat(300), 1);
        let k = &t.top(1)[0].0;
        assert!(k.len() <= KEY_MAX + 3 && k.ends_with("..."));
    }
}
