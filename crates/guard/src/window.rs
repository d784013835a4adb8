//! Sliding-window event counts per key (a sender, a client address), timed by the log
//! lines' TAI64N stamps, never by when qmail-guard happens to run.
//!
//! The count of a key at stamp `t` is the number of its events in `(t - span, t]`. Memory
//! is bounded: a key keeps at most `keep` stamps (the highest threshold is all a decision
//! needs: the count is then "at least `keep`"), and at most `max_keys` keys are kept;
//! beyond that the keys whose newest event is oldest are forgotten first.

use std::collections::HashMap;

/// Stamps are whole TAI64 seconds here (the nanoseconds add nothing to a window of
/// seconds), as unix seconds.
pub type Secs = i64;

#[derive(Clone, Debug, Default)]
pub struct Window {
    span: Secs,
    keep: usize,
    max_keys: usize,
    keys: HashMap<String, Vec<Secs>>,
}

impl Window {
    pub fn new(span: Secs, keep: usize, max_keys: usize) -> Window {
        Window {
            span: span.max(1),
            keep: keep.max(1),
            max_keys: max_keys.max(1),
            keys: HashMap::new(),
        }
    }

    /// Record an event of `key` at `t` and return the key's count in the window ending
    /// at `t` (events of other keys are untouched; stamps may arrive out of order when
    /// several logs are read one after the other).
    pub fn add(&mut self, key: &str, t: Secs) -> usize {
        if !self.keys.contains_key(key) && self.keys.len() >= self.max_keys {
            self.evict();
        }
        let span = self.span;
        let keep = self.keep;
        let v = self.keys.entry(key.to_string()).or_default();
        let at = v.partition_point(|&s| s <= t);
        v.insert(at, t);
        let newest = v.last().copied().unwrap_or(t);
        v.retain(|&s| s > newest - span);
        if v.len() > keep {
            let extra = v.len() - keep;
            v.drain(..extra);
        }
        v.iter().filter(|&&s| s > t - span && s <= t).count()
    }

    /// Forget `key`'s events (it was blocked: what led to the block is not counted again).
    pub fn clear(&mut self, key: &str) {
        self.keys.remove(key);
    }

    /// Drop every stamp at or before `now - span`, and keys left empty.
    pub fn prune(&mut self, now: Secs) {
        let span = self.span;
        self.keys.retain(|_, v| {
            v.retain(|&s| s > now - span);
            !v.is_empty()
        });
    }

    /// Forget the tenth of the keys (at least one) whose newest event is oldest.
    fn evict(&mut self) {
        let mut newest: Vec<(Secs, String)> = self
            .keys
            .iter()
            .map(|(k, v)| (v.last().copied().unwrap_or(0), k.clone()))
            .collect();
        newest.sort();
        let n = (newest.len() / 10).max(1);
        for (_, k) in newest.into_iter().take(n) {
            self.keys.remove(&k);
        }
    }

    /// Every key and its stamps (for the state file).
    pub fn entries(&self) -> impl Iterator<Item = (&String, &Vec<Secs>)> {
        self.keys.iter()
    }

    /// Restore a key's stamps (from the state file), within the limits.
    pub fn restore(&mut self, key: &str, stamps: &[Secs]) {
        for &t in stamps {
            self.add(key, t);
        }
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_slide_with_the_stamps_not_the_calls() {
        let mut w = Window::new(3600, 100, 10);
        for i in 0..10 {
            assert_eq!(w.add("a", 1000 + i * 60), i as usize + 1);
        }
        // an hour after the first event, the first is out
        assert_eq!(w.add("a", 1000 + 3600), 10);
        // another key is its own count
        assert_eq!(w.add("b", 5000), 1);
        // out of order: an event counts in the window ending at its own stamp
        assert_eq!(w.add("a", 1001), 1);
        assert_eq!(w.add("a", 4599), 11);
    }

    #[test]
    fn memory_is_bounded() {
        let mut w = Window::new(3600, 5, 100);
        for i in 0..50 {
            w.add("a", i);
        }
        assert_eq!(w.entries().next().unwrap().1.len(), 5);
        assert_eq!(w.add("a", 60), 5);
        for i in 0..1000 {
            w.add(&format!("k{i}"), i);
        }
        assert!(w.len() <= 100);
        // the newest keys survive
        assert!(w.entries().any(|(k, _)| k == "k999"));
        w.prune(10_000);
        assert!(w.is_empty());
    }

    #[test]
    fn clear_forgets() {
        let mut w = Window::new(60, 10, 10);
        w.add("a", 1);
        w.add("a", 2);
        w.clear("a");
        assert_eq!(w.add("a", 3), 1);
    }
}
