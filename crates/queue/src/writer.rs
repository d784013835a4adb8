//! The body of `qmail-queued`: qmail-queue's job for qmail-smtpd, done by one process
//! that stays up and commits concurrent messages together (doc/queue-writer.md, DESIGN
//! section 5). qmail-queue ([`crate::qq`]) stays the program interface; this is its
//! hot-path twin with the same checks and the same queue invariants.
//!
//! Wire protocol on `HOME/queued/socket` (a Unix stream socket, one message per
//! connection, integers big-endian):
//! 1. writer: the greeting byte [`GREETING`], once it has a receiver and an unnamed file
//!    for the connection. A peer it does not serve (`SO_PEERCRED` uid other than
//!    qmaild's), or one over [`MAX_CLIENTS`], is closed without it: the client falls back
//!    to qmail-queue.
//! 2. client: `u32` length, then the envelope in qmail-queue's fd 1 format (`F..\0`
//!    `T..\0`... `\0`); a length over [`ENVELOPE_MAX`] is answered 54 before anything
//!    is read; the bytes are checked with qmail-queue's [`check_envelope`] (91, 11, 54).
//! 3. client: chunks, `u32` length (1..=[`MAX_CHUNK`]) then the bytes, ended by a length
//!    of 0. A longer chunk is answered 54. The bytes go uninterpreted into the file
//!    after the Received line (a write error or full disk: 53).
//! 4. writer: one byte, qmail-queue's exit code, and after a 0 the message number (`u64`).
//!
//! Every read has [`READ_TIMEOUT`]; a message may take [`MESSAGE_LIMIT`] in all (52).
//! A client that goes away before the end chunk gets no answer and leaves nothing: its
//! file is unnamed (`O_TMPFILE`) and the kernel frees it.
//!
//! Group commit ([`Committer`], [`Queue::commit`]): a receiver touches `mess/`, `intd/`
//! and `todo/` only in a commit; the one committing takes everything pending (up to
//! [`MAX_BATCH`]) and, in qmail-queue's
//! order, links each file to `mess/S/N` and writes `intd/N` (64, 65, 53); fsyncs every
//! message file, every `intd/N` and each distinct `mess/S` (every file's writeback
//! started first, the fsyncs side by side on the committing thread and two helper
//! threads, all returned before the next step: [`crate::batchsync`]); links `intd/N`
//! to `todo/N` (66); fsyncs `todo/` once (53 for the whole batch if it fails); only
//! then answers 0, and then pulls the trigger once. Why that is as durable as
//! qmail-queue: an fsync of a directory makes durable every entry made in it before the
//! call, whoever made it; each link of the batch is made before its directory's fsync
//! is called, and a client hears 0 only after the fsync that covers its `todo/N` name
//! returned success, itself issued after its file, `mess/S` and `intd/N` were durable.
//! The crash analysis per step is doc/queue-writer.md section 6.

use crate::batchsync::{Lanes, Task};
use crate::layout::{Layout, SPLIT};
use crate::qq::{self, Cleanup, QqError};
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

pub use crate::qq::{ENVELOPE_MAX, check_envelope};

/// The byte the writer sends when it is ready for a message.
pub const GREETING: u8 = b'Q';
/// Most connections served at once (concurrencyincoming's scale); more are closed
/// before the greeting and fall back to qmail-queue.
pub const MAX_CLIENTS: usize = 120;
/// How long a receiver thread with no connection waits for one before it ends.
pub const IDLE_LIFE: Duration = Duration::from_secs(60);
/// Most messages committed together.
pub const MAX_BATCH: usize = 128;
/// Longest message chunk.
pub const MAX_CHUNK: usize = 65536;
/// Each read from a client (qmail-smtpd's own timeout).
pub const READ_TIMEOUT: Duration = Duration::from_secs(1200);
/// A whole message (qmail-queue's alarm, 52).
pub const MESSAGE_LIMIT: Duration = Duration::from_secs(86_400);
/// The socket, relative to HOME.
pub const SOCKET: &str = "queued/socket";

/// `HOME/queued/socket`.
pub fn socket_path(home: &Path) -> PathBuf {
    home.join(SOCKET)
}

/// The one user the servers that stay up serve (qmail-queued, qmail-qfilterd): the owner
/// of `HOME/smtpd`, qmaild, found without a user-database lookup.
pub fn served_uid(home: &Path) -> io::Result<u32> {
    use std::os::unix::fs::MetadataExt;
    Ok(std::fs::metadata(home.join("smtpd"))?.uid())
}

/// How receiving one message ended without a message.
#[derive(Debug)]
pub enum Refused {
    /// Tell the client this qmail-queue exit code, then close.
    Answer(QqError),
    /// The client is gone or silent (EOF, read error, timeout): nothing to answer.
    Gone(String),
}

fn answer<T>(code: i32, reason: impl Into<String>) -> Result<T, Refused> {
    Err(Refused::Answer(QqError {
        code,
        reason: reason.into(),
    }))
}

fn read_full(input: &mut dyn Read, buf: &mut [u8], what: &str) -> Result<(), Refused> {
    input.read_exact(buf).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => Refused::Gone(format!("end of input before {what}")),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
            Refused::Gone(format!("timeout reading {what}"))
        }
        _ => Refused::Gone(format!("read error in {what}: {e}")),
    })
}

fn read_u32(input: &mut dyn Read, what: &str) -> Result<u32, Refused> {
    let mut b = [0u8; 4];
    read_full(input, &mut b, what)?;
    Ok(u32::from_be_bytes(b))
}

/// Steps 2-3 of the protocol: the envelope and the chunks from `input`; `head` (the
/// Received line) and the chunks into `out`. Returns the envelope as stored in `intd/N`
/// after `u` and `p` (the records without the final NUL). `deadline` bounds the whole
/// message (52).
pub fn receive(
    input: &mut dyn Read,
    out: &mut dyn Write,
    head: &[u8],
    deadline: Instant,
) -> Result<Vec<u8>, Refused> {
    let len = read_u32(input, "the envelope length")?;
    if u64::from(len) > ENVELOPE_MAX {
        return answer(54, format!("envelope length {len} over the limit"));
    }
    // grown as bytes arrive, never allocated from the length alone
    let mut envelope = Vec::with_capacity((len as usize).min(4096));
    match input.take(u64::from(len)).read_to_end(&mut envelope) {
        Ok(n) if n == len as usize => {}
        Ok(_) => return Err(Refused::Gone("end of input in the envelope".into())),
        Err(e) => return Err(Refused::Gone(format!("read error in the envelope: {e}"))),
    }
    if Instant::now() > deadline {
        return answer(52, "timeout: the envelope took over 24 hours");
    }
    if let Err(e) = check_envelope(&envelope) {
        return Err(Refused::Answer(e));
    }
    envelope.pop(); // the final NUL
    let mut file = BufWriter::with_capacity(MAX_CHUNK, out);
    let write_failed = |e: io::Error| {
        Refused::Answer(QqError {
            code: 53,
            reason: format!("write error: {e}"),
        })
    };
    file.write_all(head).map_err(write_failed)?;
    let mut chunk = vec![0u8; MAX_CHUNK];
    loop {
        let len = read_u32(input, "a chunk length")? as usize;
        if len == 0 {
            break;
        }
        if len > MAX_CHUNK {
            return answer(54, format!("chunk length {len} over {MAX_CHUNK}"));
        }
        read_full(input, &mut chunk[..len], "a chunk")?;
        file.write_all(&chunk[..len]).map_err(write_failed)?;
        if Instant::now() > deadline {
            return answer(52, "timeout: the message took over 24 hours");
        }
    }
    file.flush().map_err(write_failed)?;
    Ok(envelope)
}

/// What is fsynced, for [`Syncer`] (tests record and fail these).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// The message file `mess/S/N`.
    Message(u64),
    /// `intd/N`.
    Intd(u64),
    /// The directory `mess/S`.
    MessDir(u64),
    /// The directory `todo/`.
    Todo,
}

/// The fsync of a batch's files and directories.
pub trait Syncer: Send + Sync {
    fn fsync(&self, target: Target, file: &File) -> io::Result<()>;
}

/// `fsync(2)`.
pub struct Fsync;

impl Syncer for Fsync {
    fn fsync(&self, _: Target, file: &File) -> io::Result<()> {
        file.sync_all()
    }
}

/// A message received whole, waiting for its commit.
pub struct Message {
    /// The unnamed file, Received line and message written (shared with the fsync
    /// lanes during the commit).
    pub file: Arc<File>,
    /// Its inode number: the message number.
    pub id: u64,
    /// The checked envelope records, without the final NUL.
    pub envelope: Vec<u8>,
    /// The injector's uid and pid (`SO_PEERCRED`), for `u` and `p` in `intd/N`.
    pub uid: u32,
    pub pid: u32,
}

/// The queue's directories, held open, the fsync to use, and the threads that run a
/// batch's fsyncs side by side ([`crate::batchsync::Lanes`]).
pub struct Queue {
    layout: Layout,
    mess_dirs: Vec<Arc<File>>,
    todo_dir: File,
    syncer: Arc<dyn Syncer>,
    lanes: Lanes,
}

/// Helper threads for a commit's fsyncs: with the committing thread, one lane for each
/// of a lone message's three (its file, `intd/N`, `mess/S`).
const SYNC_HELPERS: usize = 2;

/// One message of a batch on its way through the commit.
struct InFlight<'a> {
    msg: &'a Message,
    intd: Option<Arc<File>>,
    names: Cleanup,
    result: Option<QqError>,
}

impl<'a> InFlight<'a> {
    fn fail(&mut self, code: i32, reason: String) {
        if self.result.is_none() {
            self.result = Some(QqError { code, reason });
        }
    }
    fn ok(&self) -> bool {
        self.result.is_none()
    }
}

impl Queue {
    /// Open `mess/0..22` and `todo/` of `layout`.
    pub fn open(layout: Layout, syncer: Arc<dyn Syncer>) -> io::Result<Queue> {
        let mut mess_dirs = Vec::with_capacity(SPLIT as usize);
        for s in 0..SPLIT {
            mess_dirs.push(Arc::new(File::open(layout.dir.join(format!("mess/{s}")))?));
        }
        let todo_dir = File::open(layout.dir.join("todo"))?;
        Ok(Queue {
            layout,
            mess_dirs,
            todo_dir,
            syncer,
            lanes: Lanes::start(SYNC_HELPERS),
        })
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// A new unnamed file in `pid/` and its inode number (qmail-queue's step 1).
    pub fn new_file(&self) -> Result<(File, u64), QqError> {
        match qq::create_unnamed(&self.layout.dir)? {
            Some(f) => Ok(f),
            None => Err(QqError {
                code: 63,
                reason: "the file system has no unnamed files".into(),
            }),
        }
    }

    /// Commit a batch (module doc); one result per message, in order. On a failure
    /// nothing of that message is left in the queue.
    pub fn commit(&self, batch: &[Message]) -> Vec<Result<u64, QqError>> {
        let mut work: Vec<InFlight> = batch.iter().map(|m| self.name(m)).collect();
        self.sync_names(&mut work);
        for w in work.iter_mut().filter(|w| w.ok()) {
            let todo = self.layout.todo(w.msg.id);
            match std::fs::hard_link(self.layout.intd(w.msg.id), &todo) {
                Ok(()) => w.names.paths.push(todo),
                Err(e) => w.fail(66, format!("unable to link todo file: {e}")),
            }
        }
        if work.iter().any(|w| w.ok())
            && let Err(e) = self.syncer.fsync(Target::Todo, &self.todo_dir)
        {
            // todo/N may survive a crash although its client hears a failure and
            // retries: a duplicate, never a loss (as qmail-queue's failing fsync)
            for w in work.iter_mut() {
                w.fail(53, format!("fsync error: {e}"));
            }
        }
        work.into_iter()
            .map(|mut w| match w.result.take() {
                None => {
                    w.names.armed = false;
                    Ok(w.msg.id)
                }
                Some(e) => Err(e), // dropping the armed names removes them
            })
            .collect()
    }

    /// Step 1 for one message: `mess/S/N` linked, `intd/N` written.
    fn name<'a>(&self, msg: &'a Message) -> InFlight<'a> {
        let mut w = InFlight {
            msg,
            intd: None,
            names: Cleanup {
                paths: Vec::new(),
                armed: true,
            },
            result: None,
        };
        match qq::name_message(&self.layout, &msg.file, msg.id) {
            Ok(mut names) => {
                names.armed = false;
                w.names.paths.append(&mut names.paths);
            }
            Err(e) => {
                w.result = Some(e);
                return w;
            }
        }
        let intdname = self.layout.intd(msg.id);
        let mut intd = match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&intdname)
        {
            Ok(f) => f,
            Err(e) => {
                w.fail(65, format!("unable to create intd file: {e}"));
                return w;
            }
        };
        w.names.paths.push(intdname);
        let mut data = format!("u{}\0p{}\0", msg.uid, msg.pid).into_bytes();
        data.extend_from_slice(&msg.envelope);
        match intd.write_all(&data) {
            Ok(()) => w.intd = Some(Arc::new(intd)),
            Err(e) => w.fail(53, format!("write error: {e}")),
        }
        w
    }

    /// Step 2: every message file, every `intd/N` and each distinct `mess/S` fsynced,
    /// side by side on the lanes; a failure fails its message (or every message of that
    /// `mess/S`). Step 3 starts only when every one of them has returned.
    fn sync_names(&self, work: &mut [InFlight]) {
        let mut items: Vec<(Target, &Arc<File>)> = Vec::new();
        let mut dirs = [false; SPLIT as usize];
        for w in work.iter().filter(|w| w.ok()) {
            items.push((Target::Message(w.msg.id), &w.msg.file));
            if let Some(f) = &w.intd {
                items.push((Target::Intd(w.msg.id), f));
            }
            dirs[(w.msg.id % SPLIT) as usize] = true;
        }
        for (s, _) in dirs.iter().enumerate().filter(|(_, d)| **d) {
            items.push((Target::MessDir(s as u64), &self.mess_dirs[s]));
        }
        crate::batchsync::start_writeback(
            items
                .iter()
                .filter(|(t, _)| !matches!(t, Target::MessDir(_)))
                .map(|(_, f)| f.as_ref()),
        );
        let tasks: Vec<Task> = items
            .iter()
            .map(|&(t, f)| -> Task {
                let (syncer, f) = (Arc::clone(&self.syncer), Arc::clone(f));
                Box::new(move || syncer.fsync(t, &f))
            })
            .collect();
        let results = self.lanes.run(tasks);
        let failed: Vec<(Target, String)> = items
            .iter()
            .zip(results)
            .filter_map(|((t, _), r)| r.err().map(|e| (*t, e.to_string())))
            .collect();
        for (t, e) in failed {
            for w in work.iter_mut() {
                let id = w.msg.id;
                let hit = match t {
                    Target::Message(n) | Target::Intd(n) => n == id,
                    Target::MessDir(s) => id % SPLIT == s,
                    Target::Todo => false,
                };
                if hit {
                    w.fail(53, format!("fsync error: {e}"));
                }
            }
        }
    }
}

/// The group commit, done by the receivers themselves: a receiver with a whole message
/// adds it to what is pending; if no receiver is committing, it becomes the one and
/// commits everything pending (up to [`MAX_BATCH`], never waiting for a batch to
/// fill), publishes every verdict and wakes the others; otherwise it waits, and
/// either finds its verdict or, the committer gone with messages still pending,
/// commits them itself. At one session a message is committed by its own receiver
/// with no other receiver woken on the way (the two fsync lanes of [`Queue`] are);
/// under load the messages that arrive during one commit form the next batch, as with
/// a committer thread.
pub struct Committer {
    state: Mutex<Pending>,
    changed: Condvar,
}

#[derive(Default)]
struct Pending {
    /// Messages waiting for a commit, each with its ticket.
    waiting: Vec<(u64, Message)>,
    /// Verdicts not yet taken by their receivers.
    verdicts: HashMap<u64, Result<u64, QqError>>,
    /// A receiver is committing a batch now.
    committing: bool,
    next_ticket: u64,
}

impl Default for Committer {
    fn default() -> Self {
        Committer {
            state: Mutex::new(Pending::default()),
            changed: Condvar::new(),
        }
    }
}

impl Committer {
    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Commit `msg` (with whatever else is pending): its verdict, and whether this
    /// receiver committed something, so that it pulls qmail-send's trigger once it has
    /// answered its client ([`Committed`]).
    pub fn commit(&self, queue: &Queue, msg: Message) -> Committed {
        let mut state = self.lock();
        let ticket = state.next_ticket;
        state.next_ticket += 1;
        state.waiting.push((ticket, msg));
        let mut pull_trigger = false;
        loop {
            if let Some(verdict) = state.verdicts.remove(&ticket) {
                return Committed {
                    verdict,
                    pull_trigger,
                };
            }
            if state.committing {
                state = self
                    .changed
                    .wait(state)
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                continue;
            }
            state.committing = true;
            let n = state.waiting.len().min(MAX_BATCH);
            let batch: Vec<(u64, Message)> = state.waiting.drain(..n).collect();
            drop(state);
            let (tickets, messages): (Vec<u64>, Vec<Message>) = batch.into_iter().unzip();
            let results = queue.commit(&messages);
            let queued = results.iter().any(Result::is_ok);
            state = self.lock();
            state.verdicts.extend(tickets.into_iter().zip(results));
            state.committing = false;
            self.changed.notify_all();
            drop(state);
            drop(messages); // the message files close after the verdicts went out
            pull_trigger |= queued;
            state = self.lock();
        }
    }
}

/// One message's commit ([`Committer::commit`]).
pub struct Committed {
    pub verdict: Result<u64, QqError>,
    /// This receiver committed a batch that queued something: it pulls the trigger,
    /// after its answer (the trigger's write wakes qmail-send, which can take the CPU
    /// before the answer goes out: 0.1-0.2 ms of the client's wait for its 250).
    pub pull_trigger: bool,
}

/// What a receiver needs to know.
pub struct Served {
    /// The only peer uid served (qmaild's: the owner of `HOME/smtpd`).
    pub uid: u32,
    /// The Received line's wording for that uid ([`qq::invoked`]).
    pub invoked: String,
}

/// A connection accepted and its peer checked, on its way to a receiver.
struct Conn {
    stream: UnixStream,
    uid: u32,
    pid: u32,
}

/// The receiver threads. A receiver stays for the next connection when it is done
/// with one, and makes its unnamed file before that connection arrives, so a client
/// is greeted without waiting for a thread to start or a file to be made: both cost
/// the client's DATA command a fraction of a millisecond each, a connection per message.
struct Receivers {
    conns: Mutex<mpsc::Receiver<Conn>>,
    /// Receivers waiting for a connection that none has been promised yet.
    idle: AtomicUsize,
}

impl Receivers {
    /// Promise the next connection to a waiting receiver; false when none waits.
    fn claim(&self) -> bool {
        self.idle
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .is_ok()
    }
}

/// Serve `listener` for ever: receiver threads (one per connection at a time, kept
/// for the next), which commit together ([`Committer`]). Returns only when accepting
/// fails for good.
pub fn serve(listener: UnixListener, queue: Queue, served: Served) -> io::Result<()> {
    let queue = Arc::new(queue);
    let served = Arc::new(served);
    let active = Arc::new(AtomicUsize::new(0));
    let committer = Arc::new(Committer::default());
    let (conns_tx, conns_rx) = mpsc::channel::<Conn>();
    let receivers = Arc::new(Receivers {
        conns: Mutex::new(conns_rx),
        idle: AtomicUsize::new(0),
    });
    let mut errors = 0u32;
    loop {
        let stream = match listener.accept() {
            Ok((s, _)) => {
                errors = 0;
                s
            }
            Err(e) => {
                // EMFILE and the like pass; a listener that keeps failing is broken
                errors += 1;
                if errors > 1000 {
                    return Err(e);
                }
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        let Some((uid, pid)) = peer(&stream) else {
            continue;
        };
        if uid != served.uid {
            warn(&format!(
                "refused a client of uid {uid} pid {pid}: only uid {} is served",
                served.uid
            ));
            continue;
        }
        if active.fetch_add(1, Ordering::AcqRel) >= MAX_CLIENTS {
            active.fetch_sub(1, Ordering::AcqRel);
            continue; // closed before the greeting: the client uses qmail-queue
        }
        // a waiting receiver is promised this connection, or one is started for it
        if !receivers.claim() {
            let (queue, served, receivers, serving, committer) = (
                Arc::clone(&queue),
                Arc::clone(&served),
                Arc::clone(&receivers),
                Arc::clone(&active),
                Arc::clone(&committer),
            );
            let spawned = std::thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || receive_for_ever(&receivers, &queue, &served, &committer, &serving));
            if spawned.is_err() {
                active.fetch_sub(1, Ordering::AcqRel);
                continue; // closed before the greeting: the client uses qmail-queue
            }
        }
        if conns_tx.send(Conn { stream, uid, pid }).is_err() {
            active.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// A receiver thread: make the next unnamed file, wait for a connection, serve it,
/// again. It is started for a connection nobody was promised, so it counts itself
/// idle only from its second wait on. One that waited [`IDLE_LIFE`] with no
/// connection promised ends.
fn receive_for_ever(
    receivers: &Receivers,
    queue: &Queue,
    served: &Served,
    committer: &Committer,
    active: &AtomicUsize,
) {
    let mut started_for_one = true;
    loop {
        let file = queue.new_file();
        if !std::mem::take(&mut started_for_one) {
            receivers.idle.fetch_add(1, Ordering::AcqRel);
        }
        let conn = loop {
            let next = receivers
                .conns
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .recv_timeout(IDLE_LIFE);
            match next {
                Ok(conn) => break conn,
                // taking back its own place in `idle` (any place: they are alike)
                // means no connection counts on this thread any more
                Err(mpsc::RecvTimeoutError::Timeout) if receivers.claim() => return,
                Err(mpsc::RecvTimeoutError::Timeout) => {} // one is on its way
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
        };
        receiver(conn, file, queue, served, committer);
        active.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The peer's uid and pid (`SO_PEERCRED`: the kernel's word, taken at connect).
fn peer(stream: &UnixStream) -> Option<(u32, u32)> {
    let cred =
        nix::sys::socket::getsockopt(stream, nix::sys::socket::sockopt::PeerCredentials).ok()?;
    Some((cred.uid(), u32::try_from(cred.pid()).ok()?))
}

fn warn(line: &str) {
    qsys::die::warn("qmail-queued", "warning", line);
}

/// One connection: greeting, message, hand-over, verdict. `file` is the unnamed file
/// made for it beforehand (made again here if that failed).
fn receiver(
    conn: Conn,
    file: Result<(File, u64), QqError>,
    queue: &Queue,
    served: &Served,
    committer: &Committer,
) {
    let Conn {
        mut stream,
        uid,
        pid,
    } = conn;
    let start = Instant::now();
    let (mut file, id) = match file.or_else(|_| queue.new_file()) {
        Ok(f) => f,
        Err(e) => {
            // no greeting: the client uses qmail-queue, which reports the trouble
            warn(&e.reason);
            return;
        }
    };
    let timeouts = stream
        .set_read_timeout(Some(READ_TIMEOUT))
        .and_then(|_| stream.set_write_timeout(Some(READ_TIMEOUT)));
    if timeouts.is_err() || stream.write_all(&[GREETING]).is_err() {
        return;
    }
    let received = format!(
        "Received: (qmail {pid} {}); {}\n",
        served.invoked,
        qsys::date::date822(qsys::now())
    );
    let mut pull_trigger = false;
    let verdict = match receive(
        &mut stream,
        &mut file,
        received.as_bytes(),
        start + MESSAGE_LIMIT,
    ) {
        Ok(envelope) => {
            let c = committer.commit(
                queue,
                Message {
                    file: Arc::new(file),
                    id,
                    envelope,
                    uid,
                    pid,
                },
            );
            pull_trigger = c.pull_trigger;
            c.verdict
        }
        Err(Refused::Answer(e)) => Err(e),
        Err(Refused::Gone(why)) => {
            warn(&format!("client pid {pid}: {why}; nothing queued"));
            return;
        }
    };
    let reply = match &verdict {
        Ok(id) => {
            let mut r = vec![0u8];
            r.extend_from_slice(&id.to_be_bytes());
            r
        }
        Err(e) => {
            warn(&format!(
                "client pid {pid}: refused with {}: {}",
                e.code, e.reason
            ));
            vec![u8::try_from(e.code).unwrap_or(81)]
        }
    };
    let _ = stream.write_all(&reply);
    if pull_trigger {
        crate::trigger::pull(&queue.layout.dir);
    }
}

/// Why the writer cannot start (exit 111).
#[derive(Debug)]
pub struct StartError(pub String);

/// Everything `qmail-queued` does before serving, for the installation at `home`, run
/// as the queue's owner: the `queue/lock/queued` lock (held by the returned file for the
/// process's life), the served uid, and the socket, made as `socket.new`, chmod 0660
/// and renamed over `socket`.
pub fn start(home: &Path) -> Result<(UnixListener, Queue, Served, File), StartError> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let err = |what: &str, e: &dyn std::fmt::Display| StartError(format!("{what}: {e}"));
    let layout = Layout::new(home);
    let queue_owner = std::fs::metadata(&layout.dir)
        .map_err(|e| err("unable to stat the queue", &e))?
        .uid();
    let me = nix::unistd::geteuid().as_raw();
    if me == 0 {
        return Err(StartError(
            "must not run as root (the run script starts it as qmailq)".into(),
        ));
    }
    if me != queue_owner {
        return Err(StartError(format!(
            "the queue belongs to uid {queue_owner}, not to me (uid {me})"
        )));
    }
    let lock = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(layout.lock("queued"))
        .map_err(|e| err("unable to open queue/lock/queued", &e))?;
    {
        use std::os::fd::AsRawFd;
        // SAFETY: flock on a descriptor this function owns; no memory effects.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let e = io::Error::last_os_error();
            return Err(err(
                "unable to lock queue/lock/queued (another qmail-queued?)",
                &e,
            ));
        }
    }
    let served_uid = served_uid(home).map_err(|e| {
        err(
            "unable to stat HOME/smtpd (its owner is the user served)",
            &e,
        )
    })?;
    let served = Served {
        uid: served_uid,
        invoked: qq::invoked(home, queue_owner, served_uid),
    };
    let queue = Queue::open(layout, Arc::new(Fsync))
        .map_err(|e| err("unable to open the queue directories", &e))?;
    let socket = socket_path(home);
    let new = socket.with_extension("new");
    match std::fs::remove_file(&new) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(err("unable to remove queued/socket.new", &e)),
    }
    let listener =
        UnixListener::bind(&new).map_err(|e| err("unable to bind queued/socket.new", &e))?;
    std::fs::set_permissions(&new, std::fs::Permissions::from_mode(0o660))
        .map_err(|e| err("unable to chmod queued/socket.new", &e))?;
    std::fs::rename(&new, &socket).map_err(|e| err("unable to rename queued/socket", &e))?;
    Ok((listener, queue, served, lock))
}

#[cfg(test)]
mod tests;
