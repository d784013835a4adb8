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

/// Most threads one batch's fsyncs use.
pub use queue::concurrent::SYNC_THREADS;

/// fsync each file; the results in the same order.
pub fn sync_files(files: &[&File]) -> Vec<io::Result<()>> {
    queue::concurrent::run(files, |f| f.sync_all())
}

/// fsync each directory; the results in the same order.
pub fn sync_dirs(dirs: &[PathBuf]) -> Vec<io::Result<()>> {
    queue::concurrent::run(dirs, |d| qsys::fsync::sync_dir(d))
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
