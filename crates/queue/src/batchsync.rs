//! fsyncs of a batch, committed together: the batch commits of qmail-send (its todo
//! batches, crates/send/src/commit.rs) and of qmail-queued ([`crate::writer`]).
//!
//! Every file and directory is still fsynced on its own and each result checked; what
//! this module adds is an order that lets the disk work overlap. [`start_writeback`]
//! first starts writing every file's dirty pages (`sync_file_range(SYNC_FILE_RANGE_WRITE)`,
//! which neither waits nor makes anything durable): the blocks are allocated and the
//! writes queued at once. On ext4 with a journal every file's metadata then joins the
//! running transaction, the first fsync commits it, and the fsyncs after it find their
//! inode committed and return without another commit; without a journal (the project's
//! VM) each fsync still writes its inode, but waits on data already on its way. Measured
//! on that VM (bench/README.md, "The hot path, session 5"): 10 messages x 2 files + a
//! directory, 2.4 ms one fsync after another, 1.8-2.0 ms from 16 threads, 1.0-1.2 ms
//! with the writeback started first; one message 0.25-0.28, 0.27 and 0.18-0.21 ms. For
//! qmail-send's batches ([`sync_files`]) that is all: no thread is needed.
//!
//! `sync_file_range` is only a hint. Where it fails (another file system, an old
//! kernel) nothing is lost: the fsyncs that follow do all the work, as before.
//!
//! [`Lanes`] goes one step further for a process that stays up (qmail-queued): the
//! fsyncs of a batch run side by side, on the caller's thread and on helper threads
//! kept for it, and the caller goes on only when every one has returned. Without a
//! journal each fsync writes its own inode and then waits for a cache flush of the
//! device; side by side those writes and flushes are in the device's queue together
//! instead of one after another. Measured on the project's VM (session 14): a
//! one-message commit (message file, `intd/N` and `mess/S` side by side, then `todo/`)
//! 0.46-0.51 ms against 0.53-0.67 one after another; threads started per commit
//! instead of kept, 0.51-0.53. Nothing about what is made durable, or in which order
//! against what follows, changes: the caller still has every fsync's own result before
//! its next step.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::mpsc;

/// Start writing back each file's dirty pages, without waiting; errors are ignored
/// (the fsync that must follow reports any trouble).
pub fn start_writeback<'a>(files: impl IntoIterator<Item = &'a File>) {
    for f in files {
        // SAFETY: sync_file_range only reads the descriptor, which `f` keeps open for
        // the call; no memory is passed.
        unsafe {
            libc::sync_file_range(f.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE);
        }
    }
}

/// Start the writeback of every file, then fsync each; the results in order.
pub fn sync_files(files: &[&File]) -> Vec<io::Result<()>> {
    start_writeback(files.iter().copied());
    files.iter().map(|f| f.sync_all()).collect()
}

/// One fsync (or anything else that may fail) to run on some lane.
pub type Task = Box<dyn FnOnce() -> io::Result<()> + Send>;

/// A lane's share of a run: each task with its index, and where the results go.
struct Share {
    tasks: Vec<(usize, Task)>,
    results: mpsc::Sender<Vec<(usize, io::Result<()>)>>,
}

/// Helper threads that stay up to run tasks beside the caller's thread ([`Lanes::run`]).
pub struct Lanes {
    helpers: Vec<mpsc::Sender<Share>>,
}

/// A helper's stack: it only calls fsync.
const HELPER_STACK: usize = 64 * 1024;

impl Lanes {
    /// Up to `helpers` helper threads; one that cannot start leaves fewer lanes, down
    /// to the caller's thread alone.
    pub fn start(helpers: usize) -> Lanes {
        let mut senders = Vec::with_capacity(helpers);
        for _ in 0..helpers {
            let (tx, rx) = mpsc::channel::<Share>();
            let started = std::thread::Builder::new()
                .name("fsync".into())
                .stack_size(HELPER_STACK)
                .spawn(move || {
                    for share in rx {
                        let done: Vec<(usize, io::Result<()>)> =
                            share.tasks.into_iter().map(|(i, t)| (i, t())).collect();
                        let _ = share.results.send(done);
                    }
                });
            if started.is_ok() {
                senders.push(tx);
            }
        }
        Lanes { helpers: senders }
    }

    /// Run every task, spread over the helpers and this thread, and return their
    /// results in the tasks' order once all have finished. A task whose helper is gone
    /// runs on this thread; one whose helper ended before answering fails. A task must
    /// not itself call `run` on the same lanes (its helper would wait on itself).
    pub fn run(&self, tasks: Vec<Task>) -> Vec<io::Result<()>> {
        let n = tasks.len();
        if n == 0 {
            return Vec::new();
        }
        let lanes = (self.helpers.len() + 1).min(n);
        let mut shares: Vec<Vec<(usize, Task)>> = (0..lanes).map(|_| Vec::new()).collect();
        for (i, t) in tasks.into_iter().enumerate() {
            // contiguous shares: lane k gets the k-th slice of the tasks
            shares[i * lanes / n].push((i, t));
        }
        let (tx, rx) = mpsc::channel();
        let mut own = shares.remove(0);
        let mut sent = 0;
        for (helper, share) in self.helpers.iter().zip(shares) {
            let share = Share {
                tasks: share,
                results: tx.clone(),
            };
            match helper.send(share) {
                Ok(()) => sent += 1,
                Err(mpsc::SendError(back)) => own.extend(back.tasks),
            }
        }
        drop(tx);
        let mut results: Vec<Option<io::Result<()>>> =
            std::iter::repeat_with(|| None).take(n).collect();
        for (i, t) in own {
            results[i] = Some(t());
        }
        for done in rx.iter().take(sent) {
            for (i, r) in done {
                results[i] = Some(r);
            }
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(io::Error::other("the fsync's thread ended"))))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn every_file_gets_its_own_result_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut files = Vec::new();
        for i in 0..5 {
            let mut f = File::create(dir.path().join(i.to_string())).unwrap();
            f.write_all(b"data").unwrap();
            files.push(f);
        }
        let refs: Vec<&File> = files.iter().collect();
        let r = sync_files(&refs);
        assert_eq!(r.len(), 5);
        assert!(r.iter().all(Result::is_ok));
        assert!(sync_files(&[]).is_empty());
    }

    #[test]
    fn a_descriptor_without_writeback_is_no_error() {
        // a pipe: sync_file_range fails (ESPIPE), the hint is ignored
        let (r, _w) = nix::unistd::pipe().unwrap();
        start_writeback([&File::from(r)]);
    }

    #[test]
    fn lanes_return_every_result_in_order_whatever_ran_where() {
        for helpers in [0, 1, 2, 5] {
            let lanes = Lanes::start(helpers);
            for n in [0usize, 1, 2, 3, 7, 20] {
                let tasks: Vec<Task> = (0..n)
                    .map(|i| -> Task {
                        Box::new(move || {
                            if i % 3 == 1 {
                                Err(io::Error::other(format!("task {i}")))
                            } else {
                                Ok(())
                            }
                        })
                    })
                    .collect();
                let r = lanes.run(tasks);
                assert_eq!(r.len(), n);
                for (i, r) in r.iter().enumerate() {
                    match r {
                        Ok(()) => assert_ne!(i % 3, 1),
                        Err(e) => assert_eq!(e.to_string(), format!("task {i}")),
                    }
                }
            }
        }
    }

    #[test]
    fn tasks_run_side_by_side() {
        // three tasks that each wait for the other two: they finish only if all three
        // run at once (the caller's thread and two helpers)
        let lanes = Lanes::start(2);
        assert_eq!(lanes.helpers.len(), 2, "both helpers started");
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(3));
        let tasks: Vec<Task> = (0..3)
            .map(|_| -> Task {
                let b = std::sync::Arc::clone(&barrier);
                Box::new(move || {
                    b.wait();
                    Ok(())
                })
            })
            .collect();
        assert!(lanes.run(tasks).iter().all(Result::is_ok));
    }

    fn tasks(n: usize) -> Vec<Task> {
        (0..n).map(|_| -> Task { Box::new(|| Ok(())) }).collect()
    }

    #[test]
    fn a_helper_that_is_gone_leaves_its_share_to_the_caller() {
        let (tx, rx) = mpsc::channel::<Share>();
        drop(rx);
        let lanes = Lanes { helpers: vec![tx] };
        let r = lanes.run(tasks(4));
        assert_eq!(r.len(), 4);
        assert!(r.iter().all(Result::is_ok), "{r:?}");
    }

    #[test]
    fn a_helper_that_ends_without_answering_fails_only_its_share() {
        // a helper that drops what it is given: its tasks never run
        let (tx, rx) = mpsc::channel::<Share>();
        let helper = std::thread::spawn(move || {
            for share in rx {
                drop(share);
            }
        });
        let lanes = Lanes { helpers: vec![tx] };
        let r = lanes.run(tasks(4));
        // two lanes: the caller's (tasks 0 and 1) and the helper's (2 and 3)
        assert!(r[0].is_ok() && r[1].is_ok(), "{r:?}");
        for e in &r[2..] {
            let e = e.as_ref().expect_err("the helper never ran it");
            assert_eq!(e.to_string(), "the fsync's thread ended");
        }
        drop(lanes);
        helper.join().unwrap();
    }
}
