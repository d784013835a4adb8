//! qmail-send's event loop.
//!
//! Descriptors (set up by qmail-start): 0 log; 1/2 to/from qmail-lspawn; 3/4 to/from
//! qmail-rspawn; 5/6 to/from qmail-clean. Working state lives in the queue exactly as
//! qmail keeps it, so qmail's tools and a restart see the same thing:
//!
//! - todo/N is preprocessed (at most [`TODO_BATCH`] messages ahead of the committer,
//!   so a flood of new mail never starves deliveries: the "silly qmail syndrome"):
//!   what info/N, local/N and remote/N are to hold is kept in memory ([`Unwritten`])
//!   and the message's deliveries scheduled at once. todo/N stays the message's durable
//!   record until one of two things happens (doc/todo-commit.md, which argues why no
//!   message can be lost):
//!   - the message is done first (every recipient delivered or bounced, the usual
//!     case for local mail): qmail-clean removes todo/N and intd/N with the rest of
//!     it; info/N and local/N were never written;
//!   - [`COMMIT_DELAY`] passed (or [`TODO_BATCH`] messages wait, or TERM came): the
//!     files are written as they stand then (finished recipients marked, the next
//!     retry of a finished pass as a channel file's mtime), the committer thread
//!     ([`crate::commit`]) fsyncs them and the directories whose entries changed, and
//!     only then does qmail-clean remove todo/N and intd/N. One batch is in the
//!     committer at a time; the loop goes on meanwhile. A commit that fails is tried
//!     again after [`SYSFAIL_RETRY`] seconds.
//!
//!   A crash before either leaves todo/N and the message file, which are durable
//!   since qmail-queue's commit: the message is preprocessed again and its deliveries
//!   so far repeated (qmail's rule, "a crash may repeat a delivery, never lose one",
//!   over a window of about [`COMMIT_DELAY`] and the commit's own time).
//! - Each channel file is read once per pass into memory (or taken from [`Unwritten`]);
//!   deliveries are fed to the spawner while slots are free; a finished recipient's `T`
//!   is overwritten with `D`. When a pass ends with recipients left, the marks are
//!   fsynced and the file's mtime set to the next retry time (so a restart keeps the
//!   schedule); for unwritten files both wait for the commit.
//! - A permanent failure is appended to bounce/N and fsynced before the recipient is
//!   marked done; when both channels are finished the bounce is injected, `end msg N`
//!   logged, info/N removed (if it was written), and qmail-clean asked to remove
//!   mess/N.
//!
//! - Once at start and every [`SLEEP_CLEANUP`] seconds, mess/S/N files a killed
//!   qmail-queue left (36 hours unread, no todo/N, no info/N) go through qmail-clean.
//!
//! Signals: TERM stops new work and exits when the running deliveries are done and
//! every message is committed (a commit that fails then leaves todo/N, to be
//! preprocessed again at the next start); ALRM makes every queued message due now;
//! HUP rereads the control files.

use crate::bounce;
use crate::commit;
use crate::config::Config;
use crate::schedule::next_retry;
use control::Controls;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use queue::layout::{Channel, Layout, parse_id};
use spawn::protocol::{self, Command, Status};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, FromRawFd};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Most preprocessed messages whose todo/N is still their record (not yet done, not
/// yet committed). Under a backlog the next batch fills while the last one commits,
/// so its fsyncs are shared by up to this many messages.
pub const TODO_BATCH: usize = 64;
/// How long a preprocessed message may wait for its commit: the ones done by then
/// (most local mail) are never fsynced at all. With the commit's own time, also the
/// window of deliveries a crash may repeat.
pub const COMMIT_DELAY: std::time::Duration = std::time::Duration::from_millis(100);
/// Seconds between todo scans when no trigger arrives.
pub const TODO_RESCAN: u64 = 300;
/// Seconds before retrying a failed bounce injection or a failed preprocessing.
pub const SYSFAIL_RETRY: u64 = 123;
/// Seconds between scans of mess/ for what a killed qmail-queue left (qmail's
/// SLEEP_CLEANUP).
pub const SLEEP_CLEANUP: u64 = 76_431;

struct Msg {
    sender: String,
    birth: u64,
    open: [bool; 2],
    /// info/N and the channel files of a message preprocessed and not yet committed,
    /// kept here instead of on disk: a message done before its commit never needs
    /// them. `None` once written (at the commit) or for a message loaded from them.
    unwritten: Option<Unwritten>,
}

/// What preprocessing would have written, kept up to date until the commit writes it
/// ([`Engine::commit_files`]): the marks and retry times of the deliveries made
/// meanwhile go into the files as a written file would have received them.
struct Unwritten {
    info: Vec<u8>,
    /// Each channel file's bytes, a finished recipient's `T` turned to `D`; `None` for
    /// a channel without recipients, or whose last pass finished them all (its file
    /// would have been removed).
    chans: [Option<Vec<u8>>; 2],
    /// A channel whose pass ended with recipients left: its next retry, the mtime its
    /// file gets (a written file gets it in [`Engine::close_job`]).
    retry: [Option<u64>; 2],
    /// Directories whose entries preprocessing changed by removing stale files.
    dirs: Vec<PathBuf>,
    /// A commit tried to write the files and failed: what it left is removed, but the
    /// message's end removes the files again in case that removal failed too.
    tried: bool,
}

/// A preprocessed todo entry: its number and the message (with its files unwritten).
struct Prepared {
    id: u64,
    msg: Msg,
}

struct Job {
    /// The channel file, or `None` while the message's files are unwritten (its
    /// records and marks are then in [`Unwritten::chans`]).
    file: Option<File>,
    records: Vec<(u64, String)>,
    next: usize,
    inflight: usize,
    remaining: usize,
    dying: bool,
    retry: u64,
}

struct Slot {
    id: u64,
    offset: u64,
    recipient: String,
    delnum: u64,
}

struct Chan {
    to: File,
    from: File,
    outbuf: Vec<u8>,
    inbuf: Vec<u8>,
    slots: Vec<Option<Slot>>,
    used: usize,
    limit: usize,
    max: usize,
}

pub struct Engine {
    layout: Layout,
    controls: Controls,
    cfg: Config,
    log: File,
    chans: [Chan; 2],
    clean_to: File,
    clean_from: File,
    msgs: HashMap<u64, Msg>,
    heap: [BinaryHeap<Reverse<(u64, u64)>>; 2],
    jobs: HashMap<(u64, usize), Job>,
    feeding: [Option<u64>; 2],
    todo: VecDeque<u64>,
    todo_set: HashSet<u64>,
    todo_scan_at: u64,
    /// The trigger was pulled since the last scan of todo/.
    todo_triggered: bool,
    committer: commit::Committer,
    /// Scheduled messages whose todo/N is still their durable record.
    uncommitted: HashSet<u64>,
    /// Those not yet handed to the committer, each with the time it began to wait
    /// (oldest first).
    unsynced: Vec<(u64, std::time::Instant)>,
    /// [`COMMIT_DELAY`]; shorter in tests.
    commit_delay: std::time::Duration,
    /// The ids of the batch the committer has, until its outcome is taken.
    committing: Option<Vec<u64>>,
    /// Committed messages whose todo/N qmail-clean could not remove yet.
    todo_unremoved: Vec<u64>,
    /// Messages whose commit failed, tried again from `recommit_at` (and once at TERM).
    recommit: Vec<u64>,
    recommit_at: u64,
    cleanup_at: u64,
    finishing: BinaryHeap<Reverse<(u64, u64)>>,
    delnum: u64,
    term: bool,
    qmail_queue: PathBuf,
}

fn fd(n: i32) -> File {
    // SAFETY: qmail-start hands qmail-send descriptors 0-6; each is owned here once.
    unsafe { File::from_raw_fd(n) }
}

impl Engine {
    /// Take over descriptors 0-6 and the queue of `home`.
    pub fn new(home: &Path) -> io::Result<Engine> {
        let controls = Controls::new(home);
        let cfg = Config::load(&controls)?;
        let chans = Chan::start([fd(1), fd(2), fd(3), fd(4)])?;
        let committer = commit::Committer::start()?;
        // descriptor 0 is taken only now: until here main reports failures on it
        Ok(Engine::assemble(
            home,
            controls,
            cfg,
            chans,
            committer,
            [fd(0), fd(5), fd(6)],
        ))
    }

    /// The engine over started spawner channels and the log and qmail-clean pipes.
    fn assemble(
        home: &Path,
        controls: Controls,
        cfg: Config,
        chans: [Chan; 2],
        committer: commit::Committer,
        [log, clean_to, clean_from]: [File; 3],
    ) -> Engine {
        let mut e = Engine {
            layout: Layout::new(home),
            controls,
            cfg,
            log,
            chans,
            clean_to,
            clean_from,
            msgs: HashMap::new(),
            heap: [BinaryHeap::new(), BinaryHeap::new()],
            jobs: HashMap::new(),
            feeding: [None, None],
            todo: VecDeque::new(),
            todo_set: HashSet::new(),
            todo_scan_at: 0,
            todo_triggered: false,
            committer,
            uncommitted: HashSet::new(),
            unsynced: Vec::new(),
            commit_delay: COMMIT_DELAY,
            committing: None,
            todo_unremoved: Vec::new(),
            recommit: Vec::new(),
            recommit_at: 0,
            cleanup_at: 0,
            finishing: BinaryHeap::new(),
            delnum: 0,
            term: false,
            qmail_queue: queue::client::program(home),
        };
        e.apply_concurrency();
        e
    }

    fn apply_concurrency(&mut self) {
        for (i, c) in self.chans.iter_mut().enumerate() {
            c.limit = (self.cfg.concurrency[i] as usize).min(c.max);
        }
    }

    fn log(&mut self, line: &str) {
        let mut l = String::with_capacity(line.len() + 1);
        l.push_str(line);
        l.push('\n');
        let _ = self.log.write_all(l.as_bytes());
    }

    fn log_status(&mut self) {
        let s = format!(
            "status: local {}/{} remote {}/{}",
            self.chans[0].used, self.chans[0].limit, self.chans[1].used, self.chans[1].limit
        );
        self.log(&s);
    }

    /// Ask qmail-clean to remove `what/N` (`todo` or `foop`); true if it did.
    fn clean(&mut self, what: &str, id: u64) -> bool {
        self.clean_all(what, &[id]).first() == Some(&true)
    }

    /// Ask qmail-clean to remove `what/N` for each id, all requests in one write
    /// (qmail-clean answers them in order, one byte each): one round trip per batch
    /// instead of one per message. True for each it removed.
    fn clean_all(&mut self, what: &str, ids: &[u64]) -> Vec<bool> {
        let mut cmds = Vec::new();
        for id in ids {
            cmds.extend_from_slice(format!("{what}/{id}\0").as_bytes());
        }
        let mut replies = vec![0u8; ids.len()];
        if self.clean_to.write_all(&cmds).is_err()
            || self.clean_from.read_exact(&mut replies).is_err()
        {
            self.log("alert: oh no! lost qmail-clean connection! dying...");
            std::process::exit(111);
        }
        replies.iter().map(|&b| b == b'+').collect()
    }

    /// Load the queue as it is on disk: every info/N with its channel files, then todo/.
    pub fn scan_queue(&mut self) -> io::Result<()> {
        let now = qsys::now();
        for split in 0..queue::SPLIT {
            let dir = self.layout.dir.join(format!("info/{split}"));
            for entry in std::fs::read_dir(&dir)? {
                let entry = entry?;
                let Some(id) = parse_id(&entry.file_name()) else {
                    continue;
                };
                if self.layout.todo(id).exists() {
                    continue; // preprocessing will redo it
                }
                let Ok(data) = std::fs::read(entry.path()) else {
                    continue;
                };
                let birth = mtime(&entry.path()).unwrap_or(now);
                let sender = sender_of(&data);
                let mut open = [false; 2];
                for c in Channel::ALL {
                    if let Some(t) = mtime(&self.layout.chan(c, id)) {
                        open[c as usize] = true;
                        self.heap[c as usize].push(Reverse((t, id)));
                    }
                }
                if !open.iter().any(|&o| o) {
                    self.finishing.push(Reverse((now, id)));
                }
                self.msgs.insert(
                    id,
                    Msg {
                        sender,
                        birth,
                        open,
                        unwritten: None,
                    },
                );
            }
        }
        self.scan_todo();
        Ok(())
    }

    /// Whether todo/ is to be read now: its time has come (the periodic scan, ALRM, a
    /// retry after a failure), or the trigger was pulled and every entry of the last
    /// scan is done. Under a flood the trigger is pulled for every message; reading the
    /// whole directory again each time while a backlog is still in hand would cost
    /// O(todo) per loop turn, and the entries found then would only join the backlog.
    fn todo_scan_due(&self, now: u64) -> bool {
        now >= self.todo_scan_at || (self.todo_triggered && self.todo.is_empty())
    }

    fn scan_todo(&mut self) {
        self.todo_scan_at = qsys::now() + TODO_RESCAN;
        self.todo_triggered = false;
        self.retry_todo_removal();
        let Ok(rd) = std::fs::read_dir(self.layout.dir.join("todo")) else {
            self.log("warning: unable to read todo directory");
            return;
        };
        let mut ids: Vec<u64> = rd
            .filter_map(|e| e.ok().and_then(|e| parse_id(&e.file_name())))
            .collect();
        ids.sort_unstable();
        for id in ids {
            if self.todo_set.insert(id) {
                self.todo.push_back(id);
            }
        }
    }

    /// Preprocess todo/ entries while fewer than [`TODO_BATCH`] messages wait for
    /// their commit, scheduling each at once ([`Engine::schedule`]). Between entries
    /// the spawners' reports are read and freed slots refilled, so that preprocessing
    /// a flood never leaves the deliveries idle. Errs only when a spawner died.
    fn do_todo(&mut self) -> io::Result<()> {
        // messages whose commit failed count too: a disk that refuses every commit
        // stops preprocessing, as it did when preprocessing wrote the files
        while self.unsynced.len() + self.recommit.len() < TODO_BATCH {
            self.serve_spawners()?;
            let Some(id) = self.todo.pop_front() else {
                break;
            };
            match self.preprocess(id) {
                Ok(Some(prepared)) => self.schedule(prepared),
                Ok(None) => {
                    self.todo_set.remove(&id);
                }
                Err(e) => {
                    self.log(&format!(
                        "warning: trouble preprocessing todo/{id}: {}",
                        qsys::logsafe::qmail_send(&e.to_string())
                    ));
                    // leave it for the next scan
                    self.todo_set.remove(&id);
                    self.todo_scan_at = self.todo_scan_at.min(qsys::now() + SYSFAIL_RETRY);
                }
            }
        }
        Ok(())
    }

    /// A preprocessed message joins the deliveries now; its files wait for the
    /// committer, its todo/N (still in `todo_set`, so no scan takes it again) for its
    /// commit or its end, whichever comes first.
    fn schedule(&mut self, p: Prepared) {
        let id = p.id;
        let now = qsys::now();
        for c in Channel::ALL {
            if p.msg.open[c as usize] {
                self.heap[c as usize].push(Reverse((now, id)));
            }
        }
        if !p.msg.open.iter().any(|&o| o) {
            self.finishing.push(Reverse((now, id)));
        }
        self.msgs.insert(id, p.msg);
        self.uncommitted.insert(id);
        self.unsynced.push((id, std::time::Instant::now()));
    }

    /// When the oldest message waiting for the committer began to wait.
    fn unsynced_since(&self) -> Option<std::time::Instant> {
        self.unsynced.first().map(|&(_, t)| t)
    }

    /// Hand the waiting files to the committer when it is free and they are due: the
    /// oldest waited [`COMMIT_DELAY`], [`TODO_BATCH`] of them wait, or `now` (TERM).
    fn submit_commit(&mut self, now: bool) {
        if self.committing.is_some() {
            return;
        }
        let retry = !self.recommit.is_empty() && (now || qsys::now() >= self.recommit_at);
        if retry {
            for id in std::mem::take(&mut self.recommit) {
                if self.uncommitted.contains(&id) {
                    self.unsynced.push((id, std::time::Instant::now()));
                }
            }
            self.recommit_at = qsys::now() + SYSFAIL_RETRY;
        }
        if self.unsynced.is_empty() {
            return;
        }
        let due = now
            || retry
            || self.unsynced.len() >= TODO_BATCH
            || self
                .unsynced_since()
                .is_some_and(|t| t.elapsed() >= self.commit_delay);
        if !due {
            return;
        }
        let mut batch = Vec::new();
        for (id, _) in std::mem::take(&mut self.unsynced) {
            match self.commit_files(id) {
                Ok(w) => batch.push(w),
                Err(e) if now => self.log(&format!(
                    "warning: todo/{id} kept: trouble writing its files: {e}; the next start preprocesses it again"
                )),
                Err(e) => {
                    // todo/N stays its record; tried again with the failed commits
                    self.log(&format!(
                        "warning: todo/{id} kept: trouble writing its files: {e}; trying again in {SYSFAIL_RETRY} seconds"
                    ));
                    self.recommit.push(id);
                    self.recommit_at = qsys::now() + SYSFAIL_RETRY;
                }
            }
        }
        if batch.is_empty() {
            return;
        }
        self.committing = Some(batch.iter().map(|w| w.id).collect());
        self.committer.submit(batch);
    }

    /// The files of message `id` for the committer: written now from what
    /// preprocessing kept ([`Unwritten`]), or, after a commit that failed, the files
    /// an earlier attempt wrote, opened again.
    fn commit_files(&mut self, id: u64) -> io::Result<commit::Written> {
        let Some(msg) = self.msgs.get_mut(&id) else {
            return Err(io::Error::other("message no longer in hand"));
        };
        let birth = msg.birth;
        let Some(mut u) = msg.unwritten.take() else {
            return self.written_again(id);
        };
        match self.write_unwritten(id, birth, &u) {
            Ok(w) => Ok(w),
            Err(e) => {
                // what this attempt wrote goes: a later attempt, or the message's end,
                // must not find files that say less than what is kept here
                self.remove_files(id);
                u.tried = true;
                if let Some(msg) = self.msgs.get_mut(&id) {
                    msg.unwritten = Some(u);
                }
                Err(e)
            }
        }
    }

    /// Remove info/N and both channel files, whichever exist (errors ignored).
    fn remove_files(&self, id: u64) {
        for p in Channel::ALL
            .map(|c| self.layout.chan(c, id))
            .into_iter()
            .chain([self.layout.info(id)])
        {
            let _ = std::fs::remove_file(p);
        }
    }

    /// Write info/N (its mtime the message's birth, as qmail dates a message) and the
    /// channel files with their marks; a channel being delivered now takes its file
    /// for the marks still to come.
    fn write_unwritten(
        &mut self,
        id: u64,
        birth: u64,
        u: &Unwritten,
    ) -> io::Result<commit::Written> {
        let info_path = self.layout.info(id);
        let mut dirs = u.dirs.clone();
        if u.tried {
            // preprocessing removed what earlier passes left, and a failed attempt
            // removes what it wrote; should that removal have failed, it is done
            // again here (a file still in the way fails the creation below), and
            // its directories are synced with this commit
            self.remove_files(id);
            dirs.extend(Channel::ALL.map(|c| parent(&self.layout.chan(c, id))));
        }
        let info = write_new(&info_path, &u.info)?;
        info.set_modified(at(birth))?;
        let mut files = vec![info];
        dirs.push(parent(&info_path));
        let mut for_jobs = Vec::new();
        for c in Channel::ALL {
            let Some(bytes) = &u.chans[c as usize] else {
                continue;
            };
            let path = self.layout.chan(c, id);
            let f = write_new(&path, bytes)?;
            if let Some(t) = u.retry[c as usize] {
                set_retry(&f, t)?;
            }
            if self.jobs.contains_key(&(id, c as usize)) {
                for_jobs.push((c as usize, f.try_clone()?));
            }
            files.push(f);
            dirs.push(parent(&path));
        }
        // only once everything is written: a failure leaves the marks in `u`
        for (c, f) in for_jobs {
            if let Some(job) = self.jobs.get_mut(&(id, c)) {
                job.file = Some(f);
            }
        }
        Ok(commit::Written { id, files, dirs })
    }

    /// Ask qmail-clean again for the todo/N of committed messages it could not remove.
    fn retry_todo_removal(&mut self) {
        let ids = std::mem::take(&mut self.todo_unremoved);
        self.remove_todo(ids, false);
    }

    /// Have qmail-clean remove todo/N of committed messages: each removed one is no
    /// longer in hand; the others wait in `todo_unremoved` (and stay in `todo_set`, so
    /// no scan preprocesses them again while their deliveries run: that would rewrite
    /// local/N with every recipient undone, qmail's todo_do). They are asked for again
    /// at the next scan of todo/ or commit, and at the message's end.
    fn remove_todo(&mut self, ids: Vec<u64>, log_failures: bool) {
        let cleaned = self.clean_all("todo", &ids);
        for (id, cleaned) in ids.into_iter().zip(cleaned) {
            if cleaned {
                self.uncommitted.remove(&id);
                self.todo_set.remove(&id);
            } else {
                if log_failures {
                    self.log(&format!(
                        "warning: qmail-clean unable to clean up todo/{id}"
                    ));
                }
                self.todo_unremoved.push(id);
            }
        }
    }

    /// The files and directories of a preprocessed message, opened again for a commit
    /// that failed before: info/N, whichever channel files are left, and every
    /// directory preprocessing may have changed.
    fn written_again(&self, id: u64) -> io::Result<commit::Written> {
        let mut files = vec![File::open(self.layout.info(id))?];
        let mut dirs = vec![
            parent(&self.layout.info(id)),
            parent(&self.layout.bounce(id)),
        ];
        for c in Channel::ALL {
            let p = self.layout.chan(c, id);
            match File::open(&p) {
                Ok(f) => files.push(f),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            dirs.push(parent(&p));
        }
        Ok(commit::Written { id, files, dirs })
    }

    /// Act on the committer's outcome, if it has one.
    fn take_commit(&mut self) {
        let Some(outcome) = self.committer.take() else {
            return;
        };
        self.finish_commit(outcome);
    }

    /// Each durable message of the batch that is not done yet leaves todo/ (qmail-clean);
    /// one that is not durable keeps todo/N as its record (its deliveries go on; a
    /// restart would preprocess it again).
    fn finish_commit(&mut self, outcome: commit::Outcome) {
        let Some(batch) = self.committing.take() else {
            return;
        };
        for line in &outcome.trouble {
            self.log(line);
        }
        let durable: HashSet<u64> = outcome.durable.into_iter().collect();
        let mut ids = std::mem::take(&mut self.todo_unremoved);
        for id in batch {
            if !self.uncommitted.contains(&id) {
                continue; // done meanwhile: its end removed todo/N
            }
            if durable.contains(&id) {
                ids.push(id);
            } else if self.term {
                self.log(&format!(
                    "warning: todo/{id} kept: its files are not durable; the next start preprocesses it again"
                ));
            } else {
                self.log(&format!(
                    "warning: todo/{id} kept: its files are not durable; trying again in {SYSFAIL_RETRY} seconds"
                ));
                self.recommit.push(id);
                self.recommit_at = qsys::now() + SYSFAIL_RETRY;
            }
        }
        self.remove_todo(ids, true);
    }

    /// Remove what a qmail-queue killed before its commit left behind (qmail's
    /// cleanup): `mess/S/N` not accessed for [`queue::layout::OSSIFIED`] seconds with
    /// neither `todo/N` nor `info/N` is never delivered, so qmail-clean removes it and
    /// its `intd/N` (`foop/N`).
    fn cleanup_stale(&mut self) {
        use std::os::unix::fs::MetadataExt;
        let now = qsys::now();
        self.cleanup_at = now + SLEEP_CLEANUP;
        let mut stale = Vec::new();
        for split in 0..queue::SPLIT {
            let Ok(rd) = std::fs::read_dir(self.layout.dir.join(format!("mess/{split}"))) else {
                continue;
            };
            for entry in rd.flatten() {
                let Some(id) = parse_id(&entry.file_name()) else {
                    continue;
                };
                let old = entry
                    .metadata()
                    .is_ok_and(|m| (m.atime().max(0) as u64) + queue::layout::OSSIFIED < now);
                if old
                    && !self.msgs.contains_key(&id)
                    && !self.todo_set.contains(&id)
                    && !self.layout.todo(id).exists()
                    && !self.layout.info(id).exists()
                {
                    stale.push(id);
                }
            }
        }
        for id in stale {
            self.log(&format!(
                "warning: removing stale mess/{}/{id}",
                id % queue::SPLIT
            ));
            self.clean("foop", id);
        }
    }

    /// Without waiting: read the reports the spawners have written, then start
    /// deliveries in the slots they freed, and hand the commands on.
    fn serve_spawners(&mut self) -> io::Result<()> {
        let mut fds = [
            PollFd::new(self.chans[0].from.as_fd(), PollFlags::POLLIN),
            PollFd::new(self.chans[1].from.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::ZERO) {
            Ok(_) => {}
            Err(nix::Error::EINTR) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        let ready = fds.map(|f| f.revents().is_some_and(|r| !r.is_empty()));
        for (c, ready) in ready.into_iter().enumerate() {
            if ready {
                self.read_reports(c)?;
            }
        }
        self.finish_messages();
        for c in 0..2 {
            self.dispatch(c);
            self.flush_commands(c)?;
        }
        Ok(())
    }

    /// todo/N -> what info/N, local/N and remote/N will hold, kept in memory until the
    /// commit writes them ([`Unwritten`]); stale files of an earlier pass are removed
    /// now. `Ok(None)`: nothing to do.
    fn preprocess(&mut self, id: u64) -> io::Result<Option<Prepared>> {
        let todo = match std::fs::read(self.layout.todo(id)) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let bytes = match std::fs::metadata(self.layout.mess(id)) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.log(&format!("warning: todo/{id} has no message; removing it"));
                // with whatever an earlier pass left (after a power loss), which a
                // start would otherwise load as a message to deliver
                self.remove_files(id);
                let _ = std::fs::remove_file(self.layout.bounce(id));
                self.clean("todo", id);
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        let records =
            queue::envelope::records(&todo).map_err(|_| io::Error::other("truncated todo file"))?;
        let mut dirs = Vec::new();
        for c in Channel::ALL {
            let p = self.layout.chan(c, id);
            match std::fs::remove_file(&p) {
                Ok(()) => dirs.push(parent(&p)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        match std::fs::remove_file(self.layout.info(id)) {
            Ok(()) => dirs.push(parent(&self.layout.info(id))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        // failures an earlier pass recorded: this pass tries those recipients again
        let bounce = self.layout.bounce(id);
        match std::fs::remove_file(&bounce) {
            Ok(()) => dirs.push(parent(&bounce)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let (mut uid, mut pid, mut sender) = (String::new(), String::new(), None);
        let mut lists: [Vec<u8>; 2] = [Vec::new(), Vec::new()];
        for r in &records {
            let v = String::from_utf8_lossy(&r.value).into_owned();
            match r.kind {
                b'u' => uid = v,
                b'p' => pid = v,
                b'F' => sender = Some(v),
                b'T' => {
                    let (c, addr) = self.cfg.rewrite(&v);
                    let l = &mut lists[c as usize];
                    l.push(b'T');
                    l.extend_from_slice(addr.as_bytes());
                    l.push(0);
                }
                _ => return Err(io::Error::other("unknown record in todo file")),
            }
        }
        let sender = sender.ok_or_else(|| io::Error::other("todo file has no sender"))?;
        let mut info = b"F".to_vec();
        info.extend_from_slice(sender.as_bytes());
        info.push(0);
        self.log(&format!("new msg {id}"));
        self.log(&format!(
            "info msg {id}: bytes {bytes} from <{}> qp {pid} uid {uid}",
            qsys::logsafe::qmail_send(&sender)
        ));
        let open = lists.each_ref().map(|l| !l.is_empty());
        let chans = lists.map(|l| (!l.is_empty()).then_some(l));
        let msg = Msg {
            sender,
            birth: qsys::now(),
            open,
            unwritten: Some(Unwritten {
                info,
                chans,
                retry: [None; 2],
                dirs,
                tried: false,
            }),
        };
        Ok(Some(Prepared { id, msg }))
    }

    /// Start deliveries on channel `c` while it has free slots and due work.
    fn dispatch(&mut self, c: usize) {
        let now = qsys::now();
        let mut started = false;
        while self.chans[c].used < self.chans[c].limit {
            let id = match self.feeding[c] {
                Some(id) => id,
                None => {
                    let Some(&Reverse((t, id))) = self.heap[c].peek() else {
                        break;
                    };
                    if t > now {
                        break;
                    }
                    self.heap[c].pop();
                    if self.jobs.contains_key(&(id, c)) || !self.msgs.contains_key(&id) {
                        continue;
                    }
                    if !self.open_job(id, c, now) {
                        continue;
                    }
                    self.feeding[c] = Some(id);
                    id
                }
            };
            let Some(job) = self.jobs.get_mut(&(id, c)) else {
                self.feeding[c] = None;
                continue;
            };
            if job.next >= job.records.len() {
                self.feeding[c] = None;
                if job.inflight == 0 {
                    self.close_job(id, c);
                }
                continue;
            }
            let (offset, recipient) = job.records[job.next].clone();
            job.next += 1;
            job.inflight += 1;
            let sender = self
                .msgs
                .get(&id)
                .map(|m| m.sender.clone())
                .unwrap_or_default();
            let chan = &mut self.chans[c];
            let Some(slot) = chan.slots.iter().position(Option::is_none) else {
                break;
            };
            self.delnum += 1;
            let delnum = self.delnum;
            chan.slots[slot] = Some(Slot {
                id,
                offset,
                recipient: recipient.clone(),
                delnum,
            });
            chan.used += 1;
            let cmd = Command {
                slot: slot as u8,
                messid: Layout::messid(id),
                sender: protocol::verp_sender(sender.as_bytes(), recipient.as_bytes()),
                recipient: recipient.clone().into_bytes(),
            };
            chan.outbuf
                .extend_from_slice(&protocol::encode_command(&cmd));
            let name = Channel::ALL[c].name();
            self.log(&format!(
                "starting delivery {delnum}: msg {id} to {name} {}",
                qsys::logsafe::qmail_send(&recipient)
            ));
            started = true;
        }
        if started {
            self.log_status();
        }
    }

    /// Read channel file `c` of message `id` into a job. False if there is nothing to do.
    fn open_job(&mut self, id: u64, c: usize, now: u64) -> bool {
        let kept = self
            .msgs
            .get(&id)
            .and_then(|m| m.unwritten.as_ref())
            .map(|u| u.chans[c].clone());
        let (file, data) = match kept {
            Some(Some(data)) => (None, data),
            Some(None) => {
                self.channel_finished(id, c);
                return false;
            }
            None => {
                let path = self.layout.chan(Channel::ALL[c], id);
                let file = match std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(&path)
                {
                    Ok(f) => f,
                    Err(_) => {
                        self.channel_finished(id, c);
                        return false;
                    }
                };
                let mut data = Vec::new();
                if (&file).read_to_end(&mut data).is_err() {
                    self.heap[c].push(Reverse((now + SYSFAIL_RETRY, id)));
                    return false;
                }
                (Some(file), data)
            }
        };
        let records: Vec<(u64, String)> = queue::envelope::records(&data)
            .unwrap_or_default()
            .into_iter()
            .filter(|r| r.kind == b'T')
            .map(|r| {
                (
                    r.offset as u64,
                    String::from_utf8_lossy(&r.value).into_owned(),
                )
            })
            .collect();
        let Some(msg) = self.msgs.get(&id) else {
            return false;
        };
        let dying = now > msg.birth + self.cfg.queuelifetime;
        let retry = next_retry(msg.birth, now, c);
        let remaining = records.len();
        self.jobs.insert(
            (id, c),
            Job {
                file,
                records,
                next: 0,
                inflight: 0,
                remaining,
                dying,
                retry,
            },
        );
        true
    }

    /// A pass over a channel file is over: remove it if every recipient is done,
    /// otherwise make the marks durable and schedule the next pass.
    fn close_job(&mut self, id: u64, c: usize) {
        let Some(job) = self.jobs.remove(&(id, c)) else {
            return;
        };
        if self.feeding[c] == Some(id) {
            self.feeding[c] = None;
        }
        let path = self.layout.chan(Channel::ALL[c], id);
        match job.file {
            None => {
                // unwritten: the commit writes what a written file would hold now
                if let Some(u) = self.msgs.get_mut(&id).and_then(|m| m.unwritten.as_mut()) {
                    if job.remaining == 0 {
                        u.chans[c] = None;
                    } else {
                        u.retry[c] = Some(job.retry);
                    }
                }
            }
            Some(file) if job.remaining == 0 => {
                drop(file);
                let _ = std::fs::remove_file(&path);
            }
            Some(file) => {
                if let Err(e) = file.sync_all() {
                    self.log(&format!("warning: trouble syncing {}: {e}", path.display()));
                }
                let _ = set_retry(&file, job.retry);
            }
        }
        if job.remaining == 0 {
            self.channel_finished(id, c);
            return;
        }
        self.heap[c].push(Reverse((job.retry, id)));
    }

    fn channel_finished(&mut self, id: u64, c: usize) {
        if let Some(m) = self.msgs.get_mut(&id) {
            m.open[c] = false;
            if !m.open.iter().any(|&o| o) {
                self.finishing.push(Reverse((qsys::now(), id)));
            }
        }
    }

    /// Read and act on spawner reports for channel `c`.
    fn read_reports(&mut self, c: usize) -> io::Result<()> {
        let mut buf = [0u8; 16 * 1024];
        let n = match self.chans[c].from.read(&mut buf) {
            Ok(0) => return Err(io::Error::other("spawner died")),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(()),
            Err(e) => return Err(e),
        };
        self.chans[c].inbuf.extend_from_slice(&buf[..n]);
        while let Some(r) = protocol::take_report(&mut self.chans[c].inbuf) {
            self.handle_report(c, r);
        }
        Ok(())
    }

    fn handle_report(&mut self, c: usize, r: protocol::Report) {
        let chan = &mut self.chans[c];
        let Some(slot) = chan
            .slots
            .get_mut(usize::from(r.slot))
            .and_then(Option::take)
        else {
            self.log(&format!(
                "warning: internal error: delivery report out of range: slot {}",
                r.slot
            ));
            return;
        };
        chan.used -= 1;
        let text = String::from_utf8_lossy(&r.text).into_owned();
        let dying = self.jobs.get(&(slot.id, c)).is_some_and(|j| j.dying);
        let (status, text) = match r.status {
            Some(Status::Deferral) if dying => (
                Status::Failure,
                format!(
                    "{text}I'm not going to try again; this message has been in the queue too long.\n"
                ),
            ),
            Some(s) => (s, text),
            None => (Status::Deferral, "report mangled, will defer".into()),
        };
        match status {
            Status::Success => {
                self.log(&format!(
                    "delivery {}: success: {}",
                    slot.delnum,
                    qsys::logsafe::qmail_send(&text)
                ));
                self.mark_done(slot.id, c, slot.offset);
            }
            Status::Failure => {
                self.log(&format!(
                    "delivery {}: failure: {}",
                    slot.delnum,
                    qsys::logsafe::qmail_send(&text)
                ));
                if self.add_bounce(slot.id, &slot.recipient, text.as_bytes()) {
                    self.mark_done(slot.id, c, slot.offset);
                }
            }
            Status::Deferral => self.log(&format!(
                "delivery {}: deferral: {}",
                slot.delnum,
                qsys::logsafe::qmail_send(&text)
            )),
        }
        self.log_status();
        if let Some(job) = self.jobs.get_mut(&(slot.id, c)) {
            job.inflight -= 1;
            if job.inflight == 0 && job.next >= job.records.len() {
                self.close_job(slot.id, c);
            }
        }
    }

    fn mark_done(&mut self, id: u64, c: usize, offset: u64) {
        let Some(job) = self.jobs.get_mut(&(id, c)) else {
            return;
        };
        job.remaining -= 1;
        if job.remaining == 0 {
            return; // the pass's end removes the file (or forgets its bytes)
        }
        let marked = match &job.file {
            Some(file) => file.write_all_at(b"D", offset).is_ok(),
            None => self
                .msgs
                .get_mut(&id)
                .and_then(|m| m.unwritten.as_mut())
                .and_then(|u| u.chans[c].as_mut())
                .and_then(|bytes| bytes.get_mut(offset as usize))
                .map(|b| *b = b'D')
                .is_some(),
        };
        if !marked {
            self.log(&format!(
                "warning: trouble marking {}; message will be delivered twice!",
                self.layout.chan(Channel::ALL[c], id).display()
            ));
        }
    }

    /// Append a failure record to bounce/N, durably. False if that failed (the
    /// recipient then stays undelivered and is tried again).
    fn add_bounce(&mut self, id: u64, recipient: &str, text: &[u8]) -> bool {
        let rec = bounce::record(&self.cfg.strip_prepend(recipient), text);
        let r = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(self.layout.bounce(id))
            .and_then(|mut f| f.write_all(&rec).and_then(|_| f.sync_all()));
        match r.and_then(|_| qsys::fsync::sync_dir(&self.layout.dir.join("bounce"))) {
            Ok(()) => true,
            Err(e) => {
                self.log(&format!("alert: unable to append to bounce message: {e}"));
                false
            }
        }
    }

    /// Finish messages whose channels are all done: bounce, log, remove.
    fn finish_messages(&mut self) {
        let now = qsys::now();
        while let Some(&Reverse((t, id))) = self.finishing.peek() {
            if t > now {
                break;
            }
            self.finishing.pop();
            if !self.finish(id) {
                self.finishing.push(Reverse((now + SYSFAIL_RETRY, id)));
            }
        }
    }

    fn finish(&mut self, id: u64) -> bool {
        let Some(msg) = self.msgs.get(&id) else {
            return true;
        };
        let sender = msg.sender.clone();
        let bounce_path = self.layout.bounce(id);
        match std::fs::read(&bounce_path) {
            Ok(records) => {
                let route = bounce::route(&self.cfg, &sender);
                match &route {
                    bounce::Route::Triple => {
                        self.log(&format!("triple bounce: discarding bounce/{id}"))
                    }
                    bounce::Route::Single { to } | bounce::Route::Double { to } => {
                        let from = if matches!(route, bounce::Route::Double { .. }) {
                            "#@[]"
                        } else {
                            ""
                        };
                        let Ok(mut original) = File::open(self.layout.mess(id)) else {
                            return false;
                        };
                        let cfg = self.cfg.clone();
                        let now = qsys::now();
                        let r = queue::client::inject(
                            &self.qmail_queue,
                            from.as_bytes(),
                            &[to.as_bytes()],
                            |w| {
                                bounce::write(
                                    w,
                                    &cfg,
                                    &route,
                                    &records,
                                    &sender,
                                    &mut original,
                                    now,
                                    id,
                                )
                            },
                        );
                        match r {
                            Ok(qp) => self.log(&format!("bounce msg {id} qp {qp}")),
                            Err(e) => {
                                self.log(&format!(
                                    "warning: unable to inject bounce message: {}",
                                    qsys::logsafe::qmail_send(&e.text)
                                ));
                                return false;
                            }
                        }
                    }
                }
                let _ = std::fs::remove_file(&bounce_path);
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(_) => return false,
        }
        if self.uncommitted.contains(&id) {
            // done before its commit: todo/N goes first, the message file last (a
            // killed process never leaves a todo/N without its message; after a power
            // loss either removal may be missing, and preprocessing removes a todo/N
            // without a message)
            if !self.clean("todo", id) {
                self.log(&format!(
                    "warning: qmail-clean unable to clean up todo/{id}"
                ));
                return false;
            }
            self.uncommitted.remove(&id);
            self.todo_set.remove(&id);
            self.todo_unremoved.retain(|&x| x != id);
            self.recommit.retain(|&x| x != id);
            // the message number is the message file's inode number, which the queue
            // hands out again once it is freed: the batch in the committer must not
            // clean a later message's todo/N under this number
            if let Some(batch) = self.committing.as_mut() {
                batch.retain(|&x| x != id);
            }
            self.unsynced.retain(|&(x, _)| x != id);
        }
        self.log(&format!("end msg {id}"));
        match self.msgs.remove(&id).and_then(|m| m.unwritten) {
            None => {
                let _ = std::fs::remove_file(self.layout.info(id));
            }
            Some(u) if u.tried => self.remove_files(id),
            Some(_) => {} // never written
        }
        if !self.clean("foop", id) {
            self.log(&format!(
                "warning: qmail-clean unable to clean up mess/{id}"
            ));
        }
        true
    }

    fn inflight(&self) -> usize {
        self.chans.iter().map(|c| c.used).sum()
    }

    /// The loop. Returns when TERM arrived and the last delivery is done.
    pub fn run(&mut self) -> io::Result<()> {
        let mut mask = SigSet::empty();
        for s in [Signal::SIGTERM, Signal::SIGALRM, Signal::SIGHUP] {
            mask.add(s);
        }
        mask.thread_block()?;
        let sigfd = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK)?;
        // O_RDWR keeps a writer open, so the FIFO never reports hangup.
        let trigger = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(self.layout.lock("trigger"))?;
        self.log_status();
        loop {
            self.take_commit();
            // under TERM the loop ends only once every scheduled message is committed
            // or done: a todo/N left behind would repeat its deliveries at the start
            self.submit_commit(self.term);
            if self.term
                && self.inflight() == 0
                && self.committing.is_none()
                && self.unsynced.is_empty()
            {
                self.retry_todo_removal();
                for id in std::mem::take(&mut self.todo_unremoved) {
                    self.log(&format!(
                        "warning: todo/{id} left: the next start preprocesses it again"
                    ));
                }
                self.log("status: exiting");
                return Ok(());
            }
            if !self.term {
                if self.todo_scan_due(qsys::now()) {
                    self.scan_todo();
                }
                if qsys::now() >= self.cleanup_at {
                    self.cleanup_stale();
                }
                self.finish_messages();
                for c in 0..2 {
                    self.dispatch(c);
                }
                if let Err(e) = self.do_todo() {
                    self.log(&format!(
                        "alert: oh no! lost spawn connection! dying... ({e})"
                    ));
                    return Err(e);
                }
                self.finish_messages();
                for c in 0..2 {
                    self.dispatch(c);
                }
                self.submit_commit(false);
            }
            let timeout = self.timeout();
            let mut fds = vec![
                PollFd::new(sigfd.as_fd(), PollFlags::POLLIN),
                PollFd::new(trigger.as_fd(), PollFlags::POLLIN),
                PollFd::new(self.chans[0].from.as_fd(), PollFlags::POLLIN),
                PollFd::new(self.chans[1].from.as_fd(), PollFlags::POLLIN),
                PollFd::new(self.committer.ready_fd(), PollFlags::POLLIN),
            ];
            for c in &self.chans {
                if !c.outbuf.is_empty() {
                    fds.push(PollFd::new(c.to.as_fd(), PollFlags::POLLOUT));
                }
            }
            match poll(&mut fds, timeout) {
                Ok(_) => {}
                Err(nix::Error::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
            let ready: Vec<bool> = fds
                .iter()
                .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
                .collect();
            drop(fds);
            if ready[0] {
                while let Ok(Some(si)) = sigfd.read_signal() {
                    match Signal::try_from(si.ssi_signo as i32) {
                        Ok(Signal::SIGTERM) => {
                            self.log("status: got TERM, finishing deliveries in progress");
                            self.term = true;
                        }
                        Ok(Signal::SIGALRM) => self.everything_due_now(),
                        Ok(Signal::SIGHUP) => self.reread_controls(),
                        _ => {}
                    }
                }
            }
            if ready[1] {
                let mut b = [0u8; 256];
                while matches!((&trigger).read(&mut b), Ok(n) if n > 0) {}
                self.todo_triggered = true;
            }
            for c in 0..2 {
                if ready[2 + c]
                    && let Err(e) = self.read_reports(c)
                {
                    self.log(&format!(
                        "alert: oh no! lost spawn connection! dying... ({e})"
                    ));
                    return Err(e);
                }
            }
            for c in 0..2 {
                self.flush_commands(c)?;
            }
        }
    }

    fn flush_commands(&mut self, c: usize) -> io::Result<()> {
        let chan = &mut self.chans[c];
        if chan.outbuf.is_empty() {
            return Ok(());
        }
        match nix::unistd::write(&chan.to, &chan.outbuf) {
            Ok(n) => {
                chan.outbuf.drain(..n);
                Ok(())
            }
            Err(nix::Error::EAGAIN) | Err(nix::Error::EINTR) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    fn timeout(&self) -> PollTimeout {
        if self.term {
            // nothing is scheduled any more: the loop waits for the reports and the
            // committer (the commit is submitted at the top of each turn)
            return PollTimeout::from(1000u16);
        }
        if self.unsynced.len() < TODO_BATCH && (!self.todo.is_empty() || self.todo_triggered) {
            return PollTimeout::ZERO;
        }
        // the waiting files' commit, when the committer is free for it
        let commit_ms = match (&self.committing, self.unsynced_since()) {
            (None, Some(t)) => {
                Some(self.commit_delay.saturating_sub(t.elapsed()).as_millis() as u64 + 1)
            }
            _ => None,
        };
        let now = qsys::now();
        let mut next = self.todo_scan_at;
        for c in 0..2 {
            if self.chans[c].used < self.chans[c].limit
                && let Some(Reverse((t, _))) = self.heap[c].peek()
            {
                next = next.min(*t);
            }
        }
        if let Some(Reverse((t, _))) = self.finishing.peek() {
            next = next.min(*t);
        }
        if !self.recommit.is_empty() {
            next = next.min(self.recommit_at);
        }
        let secs = next.saturating_sub(now).clamp(0, 3600);
        let ms = if next <= now { 0 } else { secs * 1000 + 100 };
        let ms = commit_ms.map_or(ms, |c| ms.min(c));
        PollTimeout::try_from(ms as i32).unwrap_or(PollTimeout::NONE)
    }

    fn everything_due_now(&mut self) {
        let now = qsys::now();
        for h in self.heap.iter_mut() {
            let items: Vec<_> = h
                .drain()
                .map(|Reverse((_, id))| Reverse((now, id)))
                .collect();
            h.extend(items);
        }
        self.todo_scan_at = 0;
        self.log("status: got ALRM, retrying now");
    }

    fn reread_controls(&mut self) {
        match Config::load(&self.controls) {
            Ok(cfg) => {
                self.cfg = cfg;
                self.apply_concurrency();
                self.log("status: reread control files");
            }
            Err(e) => self.log(&format!("alert: unable to reread controls: {e}")),
        }
    }
}

impl Chan {
    /// The local and remote channels over `[lspawn to, lspawn from, rspawn to, rspawn
    /// from]`, each spawner's slot count read.
    fn start([lto, lfrom, rto, rfrom]: [File; 4]) -> io::Result<[Chan; 2]> {
        let mut chans = [Chan::new(lto, lfrom), Chan::new(rto, rfrom)];
        for c in chans.iter_mut() {
            let mut b = [0u8; 1];
            c.from
                .read_exact(&mut b)
                .map_err(|_| io::Error::other("hath the daemon spawn no fire?"))?;
            c.max = usize::from(b[0]);
        }
        Ok(chans)
    }

    fn new(to: File, from: File) -> Chan {
        let _ = nix::fcntl::fcntl(
            &to,
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
        );
        Chan {
            to,
            from,
            outbuf: Vec::new(),
            inbuf: Vec::new(),
            slots: (0..usize::from(protocol::SLOTS)).map(|_| None).collect(),
            used: 0,
            limit: 0,
            max: 0,
        }
    }
}

/// The directory holding `p` (a queue path always has one).
fn parent(p: &Path) -> PathBuf {
    p.parent().map(Path::to_path_buf).unwrap_or_default()
}

fn mtime(p: &Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(p).ok().map(|m| m.mtime().max(0) as u64)
}

fn sender_of(info: &[u8]) -> String {
    let r = queue::envelope::records(info).unwrap_or_default();
    r.iter()
        .find(|r| r.kind == b'F')
        .map(|r| String::from_utf8_lossy(&r.value).into_owned())
        .unwrap_or_default()
}

/// `secs` since the epoch, as a file time.
fn at(secs: u64) -> std::time::SystemTime {
    std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs)
}

/// A channel file's next retry, kept as its access and modification time (qmail's way,
/// so a restart keeps the schedule).
fn set_retry(f: &File, secs: u64) -> io::Result<()> {
    f.set_times(
        std::fs::FileTimes::new()
            .set_accessed(at(secs))
            .set_modified(at(secs)),
    )
}

/// Create `path` (0600) with `data`; the caller fsyncs the file it gets.
fn write_new(path: &Path, data: &[u8]) -> io::Result<File> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(data)?;
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logsafe_matches_qmail() {
        assert_eq!(qsys::logsafe::qmail_send("a b\nc%d"), "a_b/c_d");
    }

    /// Every log line's client text (sender, recipient, report text, which holds the
    /// remote server's reply) goes through logsafe: one line always.
    #[test]
    fn client_text_stays_on_one_log_line() {
        let forged = "x\nnew msg 99\r\x1b[2J";
        let safe = qsys::logsafe::qmail_send(forged);
        assert!(!safe.contains(['\n', '\r', '\x1b']));
        assert!(safe.starts_with("x/new"));
    }

    fn pipe() -> (File, File) {
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        (File::from(r), File::from(w))
    }

    /// One turn of the main loop, without waiting; returns the commands sent to
    /// qmail-lspawn (read from `lspawn`, non-blocking).
    fn turn(e: &mut Engine, lspawn: &mut File) -> Vec<Command> {
        if e.todo_scan_due(qsys::now()) {
            e.scan_todo();
        }
        e.do_todo().unwrap();
        e.commit_now();
        e.finish_messages();
        e.dispatch(0);
        e.flush_commands(0).unwrap();
        let mut buf = vec![0u8; 4096];
        let n = lspawn.read(&mut buf).unwrap_or(0);
        buf.truncate(n);
        let mut v = Vec::new();
        while let Some(c) = protocol::take_command(&mut buf) {
            v.push(c.unwrap());
        }
        v
    }

    /// A fresh queue under `home` with control/me mx.example.test.
    fn queue_home(home: &Path) -> Layout {
        let q = home.join("queue");
        for d in queue::layout::FLAT_DIRS {
            std::fs::create_dir_all(q.join(d)).unwrap();
        }
        for d in queue::layout::SPLIT_DIRS {
            for s in 0..queue::SPLIT {
                std::fs::create_dir_all(q.join(format!("{d}/{s}"))).unwrap();
            }
        }
        std::fs::create_dir_all(home.join("control")).unwrap();
        std::fs::write(home.join("control/me"), "mx.example.test\n").unwrap();
        Layout::new(home)
    }

    fn enqueue(layout: &Layout, env: &[u8]) -> u64 {
        queue::qq::enqueue(
            layout,
            &mut &b"Subject: x\n\nhi\n"[..],
            &mut &env[..],
            0,
            "invoked by uid 0",
        )
        .unwrap()
    }

    /// An engine over `home` whose qmail-clean always succeeds; returns it with the
    /// read end of qmail-lspawn's commands (non-blocking) and the write end of its
    /// reports.
    fn engine_with_lspawn(home: &Path) -> (Engine, File, File) {
        let (lspawn_cmds, lspawn_to) = pipe();
        let (lspawn_from, mut lspawn_reports) = pipe();
        let (_rspawn_cmds, rspawn_to) = pipe();
        let (rspawn_from, mut rspawn_reports) = pipe();
        let (clean_cmds, clean_to) = pipe();
        let (clean_from, clean_replies) = pipe();
        lspawn_reports.write_all(&[120]).unwrap();
        rspawn_reports.write_all(&[120]).unwrap();
        // qmail-rspawn stays up for the test's life: its pipe's EOF means it died
        std::mem::forget((_rspawn_cmds, rspawn_reports));
        nix::fcntl::fcntl(
            &lspawn_cmds,
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
        )
        .unwrap();
        let qdir = home.join("queue");
        std::thread::spawn(move || {
            let (mut cmds, mut replies) = (clean_cmds, clean_replies);
            let mut buf = Vec::new();
            let mut b = [0u8; 1];
            while cmds.read(&mut b).unwrap_or(0) == 1 {
                if b[0] != 0 {
                    buf.push(b[0]);
                    continue;
                }
                let cmd = String::from_utf8(std::mem::take(&mut buf)).unwrap();
                let (what, n) = cmd.split_once('/').unwrap();
                let n: u64 = n.parse().unwrap();
                let _ = std::fs::remove_file(qdir.join(format!("intd/{n}")));
                let _ = std::fs::remove_file(match what {
                    "todo" => qdir.join(format!("todo/{n}")),
                    _ => qdir.join(format!("mess/{}/{n}", n % queue::SPLIT)),
                });
                if replies.write_all(b"+").is_err() {
                    return;
                }
            }
        });
        let controls = Controls::new(home);
        let cfg = Config::load(&controls).unwrap();
        let chans = Chan::start([lspawn_to, lspawn_from, rspawn_to, rspawn_from]).unwrap();
        let log = File::create(home.join("send.log")).unwrap();
        let committer = commit::Committer::start().unwrap();
        let e = Engine::assemble(
            home,
            controls,
            cfg,
            chans,
            committer,
            [log, clean_to, clean_from],
        );
        (e, lspawn_cmds, lspawn_reports)
    }

    impl Engine {
        /// Wait for the committer's outcome of the batch in hand and act on it.
        fn wait_commit(&mut self) {
            if self.committing.is_some() {
                let outcome = self.committer.wait().unwrap();
                self.finish_commit(outcome);
            }
        }

        /// Commit what waits now, without the delay, and act on the outcome.
        fn commit_now(&mut self) {
            self.submit_commit(true);
            self.wait_commit();
        }
    }

    /// One message for joe@mx.example.test, preprocessed by an engine as
    /// [`engine_with_lspawn`] makes it (its deliveries scheduled, not yet started).
    fn one_message() -> (tempfile::TempDir, Layout, u64, Engine, File, File) {
        message_with(b"Fa@remote.test\0Tjoe@mx.example.test\0\0")
    }

    /// As [`one_message`], with the envelope `env`.
    fn message_with(env: &[u8]) -> (tempfile::TempDir, Layout, u64, Engine, File, File) {
        let home = tempfile::tempdir().unwrap();
        let layout = queue_home(home.path());
        let id = enqueue(&layout, env);
        let (mut e, lspawn, reports) = engine_with_lspawn(home.path());
        e.scan_queue().unwrap();
        e.do_todo().unwrap();
        (home, layout, id, e, lspawn, reports)
    }

    /// Start the local deliveries due; the commands qmail-lspawn received.
    fn start_local(e: &mut Engine, lspawn: &mut File) -> Vec<Command> {
        e.dispatch(0);
        e.flush_commands(0).unwrap();
        commands(lspawn)
    }

    /// Start the local deliveries due, report each a success, and act on the reports;
    /// returns how many there were.
    fn deliver_all(e: &mut Engine, lspawn: &mut File, reports: &mut File) -> usize {
        let cmds = start_local(e, lspawn);
        for c in &cmds {
            reports
                .write_all(&protocol::encode_report(c.slot, Status::Success, b"ok\n"))
                .unwrap();
        }
        e.read_reports(0).unwrap();
        e.finish_messages();
        cmds.len()
    }

    fn commands(lspawn: &mut File) -> Vec<Command> {
        let mut buf = vec![0u8; 64 * 1024];
        let n = lspawn.read(&mut buf).unwrap_or(0);
        buf.truncate(n);
        let mut v = Vec::new();
        while let Some(c) = protocol::take_command(&mut buf) {
            v.push(c.unwrap());
        }
        v
    }

    /// Issue 13: under a todo flood a batch of preprocessing (two file fsyncs per
    /// message and the directories') took longer than a local delivery, and the
    /// reports were read only after it: the deliveries sat idle, ten per batch. The
    /// batch now reads reports and refills freed slots between messages.
    #[test]
    fn deliveries_are_refilled_during_a_todo_batch() {
        let home = tempfile::tempdir().unwrap();
        let layout = queue_home(home.path());
        for _ in 0..20 {
            enqueue(&layout, b"Fa@remote.test\0Tjoe@mx.example.test\0\0");
        }
        let (mut e, mut lspawn, mut reports) = engine_with_lspawn(home.path());
        e.scan_queue().unwrap();
        let first = turn(&mut e, &mut lspawn);
        assert_eq!(first.len(), 10, "concurrencylocal 10");
        for c in &first {
            reports
                .write_all(&protocol::encode_report(c.slot, Status::Success, b"ok\n"))
                .unwrap();
        }
        for _ in 0..(TODO_BATCH + 8) {
            enqueue(&layout, b"Fa@remote.test\0Tjoe@mx.example.test\0\0");
        }
        e.scan_todo();
        e.do_todo().unwrap();
        let during = commands(&mut lspawn);
        assert_eq!(
            during.len(),
            10,
            "the ten queued messages start while the batch runs"
        );
        assert_eq!(e.chans[0].used, 10);
    }

    /// Issue 13: a preprocessed message is scheduled at once; its todo/N stays its
    /// record until the committer has made info/N and local/N durable, and the loop
    /// goes on (reports read, slots refilled) while a batch commits.
    #[test]
    fn deliveries_go_on_while_a_batch_commits() {
        let home = tempfile::tempdir().unwrap();
        let layout = queue_home(home.path());
        for _ in 0..20 {
            enqueue(&layout, b"Fa@remote.test\0Tjoe@mx.example.test\0\0");
        }
        let (mut e, mut lspawn, mut reports) = engine_with_lspawn(home.path());
        e.scan_queue().unwrap();
        let first = turn(&mut e, &mut lspawn);
        assert_eq!(first.len(), 10);
        let fresh: Vec<u64> = (0..5)
            .map(|_| enqueue(&layout, b"Fa@remote.test\0Tjoe@mx.example.test\0\0"))
            .collect();
        e.scan_todo();
        e.do_todo().unwrap();
        for id in &fresh {
            assert!(e.msgs.contains_key(id), "scheduled before its commit");
            assert!(layout.todo(*id).exists(), "todo/{id} is still its record");
        }
        assert!(e.committing.is_none(), "the commit waits for COMMIT_DELAY");
        e.submit_commit(true);
        assert!(e.committing.is_some(), "the batch is with the committer");
        for c in &first {
            reports
                .write_all(&protocol::encode_report(c.slot, Status::Success, b"ok\n"))
                .unwrap();
        }
        // the outcome is not taken: the loop must not need it to refill the slots
        e.serve_spawners().unwrap();
        assert_eq!(commands(&mut lspawn).len(), 10);
        e.wait_commit();
        for id in &fresh {
            assert!(!layout.todo(*id).exists(), "qmail-clean removed todo/{id}");
            assert!(!e.uncommitted.contains(id));
        }
    }

    /// A message done before its commit (a local delivery takes a few milliseconds)
    /// never has its files written, let alone fsynced: its end removes todo/N, then
    /// the message.
    #[test]
    fn a_message_done_before_its_commit_needs_none() {
        let (_home, layout, id, mut e, mut lspawn, mut reports) = one_message();
        assert!(layout.todo(id).exists());
        assert!(!layout.info(id).exists() && !layout.chan(Channel::Local, id).exists());
        assert_eq!(deliver_all(&mut e, &mut lspawn, &mut reports), 1);
        assert!(!layout.todo(id).exists() && !layout.mess(id).exists());
        assert!(!layout.info(id).exists());
        assert!(e.unsynced.is_empty() && e.uncommitted.is_empty());
        e.submit_commit(true);
        assert!(e.committing.is_none(), "nothing left to commit");
    }

    /// A message still in hand at its commit gets the files a message written at once
    /// would have by then: info/N dated at its birth, local/N with its finished
    /// recipient marked and the next retry as its mtime; the next pass reads them.
    #[test]
    fn the_commit_writes_the_marks_made_before_it() {
        let (_home, layout, id, mut e, mut lspawn, mut reports) =
            message_with(b"Fa@remote.test\0Tjoe@mx.example.test\0Tann@mx.example.test\0\0");
        let cmds = start_local(&mut e, &mut lspawn);
        assert_eq!(cmds.len(), 2);
        for (c, status) in cmds.iter().zip([Status::Success, Status::Deferral]) {
            reports
                .write_all(&protocol::encode_report(c.slot, status, b"x\n"))
                .unwrap();
        }
        e.read_reports(0).unwrap();
        let local = layout.chan(Channel::Local, id);
        assert!(!local.exists(), "nothing written before the commit");
        let retry = e.heap[0].peek().unwrap().0.0;
        e.commit_now();
        assert!(!layout.todo(id).exists(), "committed");
        let data = std::fs::read(&local).unwrap();
        let marks: Vec<(u8, Vec<u8>)> = queue::envelope::records(&data)
            .unwrap()
            .into_iter()
            .map(|r| (r.kind, r.value))
            .collect();
        assert_eq!(
            marks,
            vec![
                (b'D', b"joe@mx.example.test".to_vec()),
                (b'T', b"ann@mx.example.test".to_vec())
            ]
        );
        assert_eq!(mtime(&local), Some(retry));
        assert_eq!(mtime(&layout.info(id)), Some(e.msgs[&id].birth));
        // the next pass reads the file and delivers only the recipient left
        e.heap[0].clear();
        e.heap[0].push(Reverse((0, id)));
        let again = start_local(&mut e, &mut lspawn);
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].recipient, b"ann@mx.example.test");
    }

    /// A commit during a pass hands the written channel file to the pass: the marks
    /// that follow go into it.
    #[test]
    fn a_pass_under_way_marks_the_file_its_commit_wrote() {
        let (_home, layout, id, mut e, mut lspawn, mut reports) = message_with(
            b"Fa@remote.test\0Tjoe@mx.example.test\0Tann@mx.example.test\0Tbob@mx.example.test\0\0",
        );
        let cmds = start_local(&mut e, &mut lspawn);
        assert_eq!(cmds.len(), 3);
        let report = |reports: &mut File, i: usize| {
            reports
                .write_all(&protocol::encode_report(
                    cmds[i].slot,
                    Status::Success,
                    b"ok\n",
                ))
                .unwrap();
        };
        report(&mut reports, 0);
        e.read_reports(0).unwrap();
        e.commit_now();
        report(&mut reports, 1);
        e.read_reports(0).unwrap();
        let data = std::fs::read(layout.chan(Channel::Local, id)).unwrap();
        let kinds: Vec<u8> = queue::envelope::records(&data)
            .unwrap()
            .iter()
            .map(|r| r.kind)
            .collect();
        assert_eq!(kinds, b"DDT");
        report(&mut reports, 2);
        e.read_reports(0).unwrap();
        e.finish_messages();
        assert!(!e.msgs.contains_key(&id));
        assert!(!layout.chan(Channel::Local, id).exists() && !layout.info(id).exists());
    }

    /// A commit whose files cannot all be written leaves none of them, keeps todo/N,
    /// and is tried again later with what the message holds then: a channel
    /// finished meanwhile gets no file, and the message's end leaves nothing behind.
    #[test]
    fn a_commit_that_cannot_write_its_files_leaves_none() {
        let (_home, layout, id, mut e, mut lspawn, mut reports) =
            message_with(b"Fa@remote.test\0Tjoe@mx.example.test\0Tx@remote.test\0\0");
        // remote/S is not a directory: writing remote/N fails after info/N and local/N
        let remote = layout.dir.join(format!("remote/{}", id % queue::SPLIT));
        std::fs::remove_dir(&remote).unwrap();
        std::fs::write(&remote, b"").unwrap();
        e.commit_delay = std::time::Duration::ZERO;
        e.submit_commit(false);
        assert!(e.committing.is_none(), "nothing written, nothing to commit");
        assert!(layout.todo(id).exists(), "todo/N stays the record");
        assert!(!layout.info(id).exists() && !layout.chan(Channel::Local, id).exists());
        assert_eq!(e.recommit, vec![id]);
        // the local recipient is delivered meanwhile; the retry writes no local/N
        assert_eq!(deliver_all(&mut e, &mut lspawn, &mut reports), 1);
        std::fs::remove_file(&remote).unwrap();
        std::fs::create_dir(&remote).unwrap();
        e.recommit_at = 0;
        e.submit_commit(false);
        e.wait_commit();
        assert!(!layout.todo(id).exists(), "committed on the retry");
        assert!(layout.info(id).exists() && layout.chan(Channel::Remote, id).exists());
        assert!(!layout.chan(Channel::Local, id).exists());
    }

    /// The commit waits at most COMMIT_DELAY, and the loop's timeout wakes it then.
    #[test]
    fn the_commit_waits_at_most_its_delay() {
        let (_home, layout, id, mut e, _lspawn, _reports) = one_message();
        e.submit_commit(false);
        assert!(e.committing.is_none());
        let t = i32::from(e.timeout());
        assert!(
            (0..=COMMIT_DELAY.as_millis() as i32 + 1).contains(&t),
            "timeout {t} ms"
        );
        e.commit_delay = std::time::Duration::ZERO;
        e.submit_commit(false);
        e.wait_commit();
        assert!(!layout.todo(id).exists());
        assert!(e.uncommitted.is_empty());
    }

    /// The commit's delay runs from the oldest message still waiting: one done
    /// meanwhile does not make a younger one due early.
    #[test]
    fn a_done_message_leaves_the_commit_delay_to_the_next() {
        let (home, layout, old, mut e, mut lspawn, mut reports) = one_message();
        e.commit_delay = std::time::Duration::from_millis(200);
        std::thread::sleep(std::time::Duration::from_millis(250));
        let young = enqueue(&layout, b"Fa@remote.test\0Tann@mx.example.test\0\0");
        e.scan_todo();
        e.do_todo().unwrap();
        for c in start_local(&mut e, &mut lspawn) {
            if c.messid == Layout::messid(old) {
                reports
                    .write_all(&protocol::encode_report(c.slot, Status::Success, b"ok\n"))
                    .unwrap();
            }
        }
        e.read_reports(0).unwrap();
        e.finish_messages();
        assert!(!e.msgs.contains_key(&old) && e.msgs.contains_key(&young));
        e.submit_commit(false);
        assert!(e.committing.is_none(), "the young message is not due yet");
        drop(home);
    }

    /// A message number is an inode number, handed out again once the message file
    /// is gone: a message done while its batch is in the committer leaves that batch,
    /// so that the batch's outcome never removes a later message's todo/N.
    #[test]
    fn a_message_done_during_its_commit_leaves_the_batch() {
        let (_home, layout, id, mut e, mut lspawn, mut reports) = one_message();
        e.submit_commit(true);
        assert_eq!(deliver_all(&mut e, &mut lspawn, &mut reports), 1);
        assert_eq!(e.committing.as_deref(), Some(&[][..]));
        // a new message under the same number, scheduled before the outcome arrives
        std::fs::write(layout.todo(id), b"u0\0p1\0Fa@b\0Tc@d\0\0").unwrap();
        e.uncommitted.insert(id);
        e.wait_commit();
        assert!(layout.todo(id).exists(), "the new message's todo/N stays");
        assert!(e.uncommitted.contains(&id));
    }

    /// A commit that failed is tried again (its files opened anew) once its retry is
    /// due; todo/N stays until then.
    #[test]
    fn a_failed_commit_is_tried_again() {
        let (_home, layout, id, mut e, _lspawn, _reports) = one_message();
        // the files written for a batch whose fsyncs failed: the committer's answer
        drop(e.commit_files(id).unwrap());
        assert!(layout.info(id).exists() && e.msgs[&id].unwritten.is_none());
        e.unsynced.clear();
        e.committing = Some(vec![id]);
        e.finish_commit(commit::Outcome::default());
        assert_eq!(e.recommit, vec![id]);
        assert!(layout.todo(id).exists());
        e.submit_commit(false);
        assert!(e.committing.is_none(), "not before its retry time");
        e.recommit_at = 0;
        e.submit_commit(false);
        e.wait_commit();
        assert!(!layout.todo(id).exists(), "committed on the retry");
        assert!(e.uncommitted.is_empty() && e.recommit.is_empty());
    }

    /// A batch fsyncs the directories a message changed, and only those: remote/S
    /// only when remote/N was written or a stale one removed.
    #[test]
    fn preprocessing_names_the_directories_it_changed() {
        let home = tempfile::tempdir().unwrap();
        let layout = queue_home(home.path());
        let id = enqueue(&layout, b"Fa@remote.test\0Tjoe@mx.example.test\0\0");
        let (mut e, _lspawn, _reports) = engine_with_lspawn(home.path());
        let dir = |d: &str| layout.dir.join(format!("{d}/{}", id % queue::SPLIT));
        let set = |v: Vec<PathBuf>| v.into_iter().collect::<HashSet<_>>();
        let touched = |e: &mut Engine| {
            let p = e.preprocess(id).unwrap().unwrap();
            e.schedule(p);
            e.commit_files(id).unwrap().dirs
        };
        assert_eq!(set(touched(&mut e)), set(vec![dir("info"), dir("local")]));
        // a crash left remote/N from an earlier pass: its removal must be synced too
        std::fs::write(layout.chan(Channel::Remote, id), b"Tx@y\0").unwrap();
        let touched = touched(&mut e);
        assert_eq!(
            set(touched),
            set(vec![dir("info"), dir("local"), dir("remote")])
        );
    }

    /// A trigger reads todo/ again only once the entries of the last scan are done;
    /// the periodic scan is not held back.
    #[test]
    fn trigger_rescans_todo_only_when_the_backlog_is_done() {
        let home = tempfile::tempdir().unwrap();
        let layout = queue_home(home.path());
        for _ in 0..(TODO_BATCH + 3) {
            enqueue(&layout, b"Fa@remote.test\0Tjoe@mx.example.test\0\0");
        }
        let (mut e, _lspawn, _reports) = engine_with_lspawn(home.path());
        e.scan_queue().unwrap();
        let now = qsys::now();
        assert!(!e.todo_scan_due(now));
        e.do_todo().unwrap();
        e.commit_now();
        assert_eq!(e.todo.len(), 3);
        e.todo_triggered = true;
        assert!(!e.todo_scan_due(now), "a backlog is in hand");
        assert!(e.todo_scan_due(now + TODO_RESCAN + 1), "the periodic scan");
        e.do_todo().unwrap();
        e.commit_now();
        assert!(e.todo_scan_due(now), "backlog done, trigger pending");
        assert_eq!(
            e.timeout(),
            PollTimeout::ZERO,
            "the loop must not sleep on it"
        );
        e.scan_todo();
        assert!(!e.todo_scan_due(now));
    }

    /// A message file that a killed qmail-queue left without todo/N or info/N is
    /// removed once it is 36 hours old (qmail's cleanup); a young one, and an old one
    /// that is queued, stay.
    #[test]
    fn stale_message_files_are_cleaned_up() {
        let home = tempfile::tempdir().unwrap();
        let layout = queue_home(home.path());
        let stray = |name: u64| {
            std::fs::write(layout.mess(name), b"x").unwrap();
            std::fs::write(layout.intd(name), b"u0\0").unwrap();
        };
        let age = |id: u64| {
            let t = nix::sys::time::TimeSpec::new(
                (qsys::now() - queue::layout::OSSIFIED - 10) as i64,
                0,
            );
            nix::sys::stat::utimensat(
                nix::fcntl::AT_FDCWD,
                &layout.mess(id),
                &t,
                &t,
                nix::sys::stat::UtimensatFlags::FollowSymlink,
            )
            .unwrap();
        };
        let (old, young) = (1000, 1001);
        stray(old);
        stray(young);
        age(old);
        let queued = enqueue(&layout, b"Fa@remote.test\0Tjoe@mx.example.test\0\0");
        age(queued);
        let (mut e, _lspawn, _reports) = engine_with_lspawn(home.path());
        e.scan_queue().unwrap();
        e.cleanup_stale();
        assert!(!layout.mess(old).exists() && !layout.intd(old).exists());
        assert!(layout.mess(young).exists());
        assert!(layout.mess(queued).exists() && layout.todo(queued).exists());
        assert!(e.cleanup_at > qsys::now());
    }

    /// qmail-clean could not remove todo/N after its commit (it answered `!`): the
    /// message is already scheduled, so no scan may preprocess todo/N again while it
    /// runs (that rewrites local/N with every recipient undone); the removal is tried
    /// again at the next scan. Here joe is delivered, ann deferred; joe must not get
    /// it twice.
    #[test]
    fn todo_that_clean_could_not_remove_is_delivered_once() {
        let home = tempfile::tempdir().unwrap();
        let q = home.path().join("queue");
        for d in queue::layout::FLAT_DIRS {
            std::fs::create_dir_all(q.join(d)).unwrap();
        }
        for d in queue::layout::SPLIT_DIRS {
            for s in 0..queue::SPLIT {
                std::fs::create_dir_all(q.join(format!("{d}/{s}"))).unwrap();
            }
        }
        std::fs::create_dir(home.path().join("control")).unwrap();
        std::fs::write(home.path().join("control/me"), "mx.example.test\n").unwrap();
        let layout = Layout::new(home.path());
        let id = queue::qq::enqueue(
            &layout,
            &mut &b"Subject: once\n\nhi\n"[..],
            &mut &b"Fa@remote.test\0Tjoe@mx.example.test\0Tann@mx.example.test\0\0"[..],
            0,
            "invoked by uid 0",
        )
        .unwrap();

        let (mut lspawn_cmds, lspawn_to) = pipe();
        let (lspawn_from, mut lspawn_reports) = pipe();
        let (_rspawn_cmds, rspawn_to) = pipe();
        let (rspawn_from, mut rspawn_reports) = pipe();
        let (clean_cmds, clean_to) = pipe();
        let (clean_from, clean_replies) = pipe();
        lspawn_reports.write_all(&[120]).unwrap();
        rspawn_reports.write_all(&[120]).unwrap();
        nix::fcntl::fcntl(
            &lspawn_cmds,
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
        )
        .unwrap();
        // qmail-clean: fails on the first todo/N, then removes what it is asked to
        let qdir = q.clone();
        let clean = std::thread::spawn(move || {
            let (mut cmds, mut replies) = (clean_cmds, clean_replies);
            let mut buf = Vec::new();
            let mut first = true;
            let mut b = [0u8; 1];
            while cmds.read(&mut b).unwrap_or(0) == 1 {
                if b[0] != 0 {
                    buf.push(b[0]);
                    continue;
                }
                let cmd = String::from_utf8(std::mem::take(&mut buf)).unwrap();
                let (what, n) = cmd.split_once('/').unwrap();
                let n: u64 = n.parse().unwrap();
                let reply = if std::mem::take(&mut first) {
                    b"!"
                } else {
                    let other = match what {
                        "todo" => qdir.join(format!("todo/{n}")),
                        _ => qdir.join(format!("mess/{}/{n}", n % queue::SPLIT)),
                    };
                    let _ = std::fs::remove_file(qdir.join(format!("intd/{n}")));
                    let _ = std::fs::remove_file(other);
                    b"+"
                };
                replies.write_all(reply).unwrap();
            }
        });
        let log = home.path().join("send.log");
        let controls = Controls::new(home.path());
        let cfg = Config::load(&controls).unwrap();
        let chans = Chan::start([lspawn_to, lspawn_from, rspawn_to, rspawn_from]).unwrap();
        let mut e = Engine::assemble(
            home.path(),
            controls,
            cfg,
            chans,
            commit::Committer::start().unwrap(),
            [File::create(&log).unwrap(), clean_to, clean_from],
        );
        e.scan_queue().unwrap();

        let mut started = Vec::new();
        let mut step = |e: &mut Engine| {
            for c in turn(e, &mut lspawn_cmds) {
                // joe's delivery succeeds, ann's is deferred
                let status = if c.recipient.starts_with(b"joe@") {
                    Status::Success
                } else {
                    Status::Deferral
                };
                lspawn_reports
                    .write_all(&protocol::encode_report(c.slot, status, b"x\n"))
                    .unwrap();
                e.read_reports(0).unwrap();
                started.push(String::from_utf8_lossy(&c.recipient).into_owned());
            }
        };
        step(&mut e);
        assert!(layout.todo(id).exists(), "qmail-clean left todo/N");
        // the next todo scan (a trigger, or the periodic one), then ALRM: retry now
        e.todo_scan_at = 0;
        step(&mut e);
        e.everything_due_now();
        step(&mut e);
        let log = std::fs::read_to_string(&log).unwrap();
        assert!(
            log.contains(&format!("unable to clean up todo/{id}")),
            "{log}"
        );
        let joe = started.iter().filter(|r| r.starts_with("joe@")).count();
        assert_eq!(joe, 1, "deliveries started: {started:?}\n{log}");
        assert!(started.iter().any(|r| r.starts_with("ann@")), "{log}");
        drop(e);
        clean.join().unwrap();
    }
}
