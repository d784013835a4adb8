//! Making a todo batch durable: the same fsyncs as one at a time, issued at once.
//!
//! Every file qmail-send writes while preprocessing, and every directory whose entries
//! changed, is still fsynced on its own and each result checked before todo/N is
//! removed (DESIGN.md section 5). What changes is only that the fsyncs of a batch run
//! concurrently from a few threads: the file system's journal then commits them
//! together (ext4's jbd2 joins fsyncs waiting on the same transaction), so a batch
//! costs a few journal commits instead of one per file. Measured on the project's
//! 2-core VM (bench/README.md): 32 messages x 2 files + 2 directories took 2-7 ms per
//! message one after another, 0.3-0.9 ms concurrently.

use std::fs::File;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Most threads one batch's fsyncs use.
pub const SYNC_THREADS: usize = 16;

/// fsync each file; the results in the same order.
pub fn sync_files(files: &[&File]) -> Vec<io::Result<()>> {
    concurrently(files, |f| f.sync_all())
}

/// fsync each directory; the results in the same order.
pub fn sync_dirs(dirs: &[PathBuf]) -> Vec<io::Result<()>> {
    concurrently(dirs, |d| qsys::fsync::sync_dir(d))
}

/// `op` over every item from up to [`SYNC_THREADS`] threads (fewer when a thread cannot
/// be started: this thread then does the rest), results in the items' order.
fn concurrently<T: Sync>(
    items: &[T],
    op: impl Fn(&T) -> io::Result<()> + Sync,
) -> Vec<io::Result<()>> {
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
            // a helper that panicked leaves its items None: reported as failures below
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
    use super::*;

    #[test]
    fn every_item_gets_its_own_result_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut dirs: Vec<PathBuf> = (0..40).map(|i| dir.path().join(i.to_string())).collect();
        for d in &dirs {
            std::fs::create_dir(d).unwrap();
        }
        dirs[7] = dir.path().join("missing");
        let r = sync_dirs(&dirs);
        assert_eq!(r.len(), 40);
        for (i, r) in r.iter().enumerate() {
            assert_eq!(r.is_err(), i == 7, "item {i}");
        }
        let f = File::create(dir.path().join("f")).unwrap();
        assert!(sync_files(&[&f, &f, &f]).iter().all(Result::is_ok));
        assert!(sync_files(&[]).is_empty());
    }
}
