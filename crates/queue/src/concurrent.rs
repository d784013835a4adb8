//! fsyncs issued together: the batch commits of qmail-send (its todo batches,
//! crates/send/src/commit.rs) and of qmail-queued ([`crate::writer`]). Every file and
//! directory is still fsynced on its own and each result checked; issued concurrently
//! from a few threads, they are committed together by the file system's journal (ext4's
//! jbd2 joins fsyncs waiting on the same transaction), so a batch costs a few journal
//! commits instead of one per file (bench/README.md, "qmail-send keeping up").

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Most threads one batch's fsyncs use.
pub const SYNC_THREADS: usize = 16;

/// `op` over every item from up to [`SYNC_THREADS`] threads (this thread included, and
/// it alone when no thread can be started), results in the items' order; a thread that
/// panicked leaves its items failed.
pub fn run<T: Sync>(items: &[T], op: impl Fn(&T) -> io::Result<()> + Sync) -> Vec<io::Result<()>> {
    let next = AtomicUsize::new(0);
    let work = || {
        let mut done = Vec::new();
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(item) = items.get(i) else {
                return done;
            };
            done.push((i, op(item)));
        }
    };
    let mut results: Vec<Option<io::Result<()>>> = items.iter().map(|_| None).collect();
    std::thread::scope(|s| {
        let helpers: Vec<_> = (1..items.len().min(SYNC_THREADS))
            .filter_map(|_| std::thread::Builder::new().spawn_scoped(s, work).ok())
            .collect();
        let mut all = work();
        for h in helpers {
            all.extend(h.join().unwrap_or_default());
        }
        for (i, r) in all {
            results[i] = Some(r);
        }
    });
    results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(io::Error::other("fsync thread failed"))))
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_item_gets_its_own_result_in_order() {
        let items: Vec<usize> = (0..40).collect();
        let r = super::run(&items, |&i| {
            if i == 7 {
                Err(std::io::Error::other("seven"))
            } else {
                Ok(())
            }
        });
        assert_eq!(r.len(), 40);
        for (i, r) in r.iter().enumerate() {
            assert_eq!(r.is_err(), i == 7, "item {i}");
        }
        assert!(super::run(&[] as &[usize], |_| Ok(())).is_empty());
    }
}
