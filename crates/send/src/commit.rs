//! Making a todo batch durable: the same fsyncs as one at a time, issued at once, on a
//! thread of their own.
//!
//! Every file qmail-send writes while preprocessing, and every directory whose entries
//! changed, is still fsynced on its own and each result checked before todo/N is
//! removed (DESIGN.md section 5). Two things differ from doing them one by one in the
//! loop:
//!
//! - Every file's writeback is started before the first fsync ([`queue::batchsync`]), so
//!   the disk work of the whole batch overlaps (and on a journalled file system the
//!   first fsync commits the batch's metadata, the others finding it committed).
//! - They run on the [`Committer`]'s thread, not the loop's: while a batch waits on the
//!   disk the loop keeps reading the spawners' reports and starting deliveries. Under a flood of new mail a batch waits far longer
//!   than a local delivery takes; with the loop waiting too, the deliveries sat idle
//!   and todo/ grew without bound (issue 13). The loop asks qmail-clean to remove
//!   todo/N only once the committer reported every fsync of that message successful.
//!
//! A message's deliveries do not wait for its commit, and a message done before it is
//! due is never committed at all: todo/N stays its durable record meanwhile
//! (crate::engine, doc/todo-commit.md).

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::mpsc;

/// fsync each directory; the results in the same order.
pub fn sync_dirs(dirs: &[PathBuf]) -> Vec<io::Result<()>> {
    dirs.iter().map(|d| qsys::fsync::sync_dir(d)).collect()
}

/// What one message of a batch wrote: its files, and the directories whose entries it
/// changed.
pub struct Written {
    pub id: u64,
    pub files: Vec<File>,
    pub dirs: Vec<PathBuf>,
}

/// How a batch's fsyncs went: the ids whose every file and directory is durable, and
/// a line for the log per failure.
#[derive(Debug, Default, PartialEq)]
pub struct Outcome {
    pub durable: Vec<u64>,
    pub trouble: Vec<String>,
}

/// fsync every file of the batch, then every directory changed by a message whose
/// files all synced. A message is durable when its files are and every one of those
/// directories is (a failed directory fails the whole batch: which message's entry it
/// held is not known).
pub fn make_durable(batch: Vec<Written>) -> Outcome {
    let mut out = Outcome::default();
    let files: Vec<(u64, &File)> = batch
        .iter()
        .flat_map(|w| w.files.iter().map(move |f| (w.id, f)))
        .collect();
    let synced = queue::batchsync::sync_files(&files.iter().map(|(_, f)| *f).collect::<Vec<_>>());
    let mut failed = HashSet::new();
    for ((id, _), r) in files.iter().zip(synced) {
        if let Err(e) = r {
            failed.insert(*id);
            out.trouble
                .push(format!("warning: trouble syncing files of todo/{id}: {e}"));
        }
    }
    let dirs: HashSet<&PathBuf> = batch
        .iter()
        .filter(|w| !failed.contains(&w.id))
        .flat_map(|w| w.dirs.iter())
        .collect();
    let dirs: Vec<PathBuf> = dirs.into_iter().cloned().collect();
    let mut dirs_ok = true;
    for (d, r) in dirs.iter().zip(sync_dirs(&dirs)) {
        if let Err(e) = r {
            out.trouble
                .push(format!("warning: unable to sync {}: {e}", d.display()));
            dirs_ok = false;
        }
    }
    if dirs_ok {
        out.durable = batch
            .iter()
            .map(|w| w.id)
            .filter(|id| !failed.contains(id))
            .collect();
    }
    out
}

/// The thread that makes batches durable, one at a time in the order given. The loop
/// polls [`Committer::ready_fd`]; it becomes readable when an outcome is waiting.
pub struct Committer {
    batches: Option<mpsc::Sender<Vec<Written>>>,
    outcomes: mpsc::Receiver<Outcome>,
    outcomes_in: mpsc::Sender<Outcome>,
    ready: UnixStream,
    ready_in: UnixStream,
}

impl Committer {
    /// Start the thread. Without one (the system refuses a thread) each batch is made
    /// durable in [`Committer::submit`] itself, as before: slower, never less safe.
    pub fn start() -> io::Result<Committer> {
        let (ready, ready_in) = UnixStream::pair()?;
        ready.set_nonblocking(true)?;
        let (outcomes_in, outcomes) = mpsc::channel();
        let (batches, todo) = mpsc::channel::<Vec<Written>>();
        let (tell, wake) = (outcomes_in.clone(), ready_in.try_clone()?);
        let started = std::thread::Builder::new()
            .name("commit".into())
            .spawn(move || {
                for batch in todo {
                    if tell.send(make_durable(batch)).is_err() {
                        return;
                    }
                    let _ = (&wake).write(b"+");
                }
            })
            .is_ok();
        Ok(Committer {
            batches: started.then_some(batches),
            outcomes,
            outcomes_in,
            ready,
            ready_in,
        })
    }

    /// Hand a batch over; its outcome comes later from [`Committer::take`].
    pub fn submit(&mut self, batch: Vec<Written>) {
        let batch = match &self.batches {
            Some(to) => match to.send(batch) {
                Ok(()) => return,
                Err(mpsc::SendError(batch)) => batch,
            },
            None => batch,
        };
        // no thread (or it is gone): do it here
        let _ = self.outcomes_in.send(make_durable(batch));
        let _ = (&self.ready_in).write(b"+");
    }

    /// Readable when an outcome is waiting.
    pub fn ready_fd(&self) -> BorrowedFd<'_> {
        self.ready.as_fd()
    }

    /// The next outcome, if one is ready; never waits.
    pub fn take(&mut self) -> Option<Outcome> {
        let mut b = [0u8; 64];
        while matches!((&self.ready).read(&mut b), Ok(n) if n > 0) {}
        self.outcomes.try_recv().ok()
    }

    /// The next outcome, waiting for it (tests, and a loop with nothing else to do).
    pub fn wait(&mut self) -> Option<Outcome> {
        let o = self.outcomes.recv().ok();
        let mut b = [0u8; 64];
        while matches!((&self.ready).read(&mut b), Ok(n) if n > 0) {}
        o
    }
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
    }

    fn written(dir: &std::path::Path, id: u64, sub: &str) -> Written {
        let d = dir.join(sub);
        std::fs::create_dir_all(&d).unwrap();
        let f = File::create(d.join(id.to_string())).unwrap();
        Written {
            id,
            files: vec![f],
            dirs: vec![d],
        }
    }

    #[test]
    fn the_committer_reports_each_batch_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Committer::start().unwrap();
        c.submit(vec![
            written(dir.path(), 1, "a"),
            written(dir.path(), 2, "b"),
        ]);
        c.submit(vec![written(dir.path(), 3, "a")]);
        let first = c.wait().unwrap();
        assert_eq!(first.durable, vec![1, 2]);
        assert!(first.trouble.is_empty());
        assert_eq!(c.wait().unwrap().durable, vec![3]);
        assert_eq!(c.take(), None, "nothing more");
    }

    #[test]
    fn a_directory_that_cannot_be_synced_keeps_the_whole_batch() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = written(dir.path(), 1, "a");
        w.dirs.push(dir.path().join("gone"));
        let out = make_durable(vec![w, written(dir.path(), 2, "b")]);
        assert!(out.durable.is_empty());
        assert_eq!(out.trouble.len(), 1);
        assert!(
            out.trouble[0].contains("unable to sync"),
            "{:?}",
            out.trouble
        );
    }

    #[test]
    fn the_ready_descriptor_wakes_a_poll() {
        use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
        let dir = tempfile::tempdir().unwrap();
        let mut c = Committer::start().unwrap();
        c.submit(vec![written(dir.path(), 9, "a")]);
        let mut fds = [PollFd::new(c.ready_fd(), PollFlags::POLLIN)];
        poll(&mut fds, PollTimeout::from(10_000u16)).unwrap();
        assert!(
            fds[0]
                .revents()
                .is_some_and(|r| r.contains(PollFlags::POLLIN))
        );
        assert_eq!(c.take().unwrap().durable, vec![9]);
    }
}
