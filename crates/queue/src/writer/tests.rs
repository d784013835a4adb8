//! Unit tests of qmail-queued's framing, group commit and server (doc/queue-writer.md
//! section 9: protocol, group commit).

use super::*;
use crate::client::{Queued, inject_queued};
use std::os::unix::fs::MetadataExt;
use std::sync::Mutex;

fn queue_dir() -> (tempfile::TempDir, Layout) {
    let d = tempfile::tempdir().unwrap();
    let l = Layout {
        dir: d.path().join("queue"),
    };
    for s in ["pid", "intd", "todo", "lock"] {
        std::fs::create_dir_all(l.dir.join(s)).unwrap();
    }
    for i in 0..SPLIT {
        std::fs::create_dir_all(l.dir.join(format!("mess/{i}"))).unwrap();
    }
    (d, l)
}

fn count(l: &Layout, sub: &str) -> usize {
    std::fs::read_dir(l.dir.join(sub)).unwrap().count()
}

fn mess_count(l: &Layout) -> usize {
    (0..SPLIT).map(|i| count(l, &format!("mess/{i}"))).sum()
}

/// A protocol stream: the envelope frame, then `chunks`, then the end chunk if `end`.
fn frames(envelope: &[u8], chunks: &[&[u8]], end: bool) -> Vec<u8> {
    let mut v = (envelope.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(envelope);
    for c in chunks {
        v.extend_from_slice(&(c.len() as u32).to_be_bytes());
        v.extend_from_slice(c);
    }
    if end {
        v.extend_from_slice(&[0; 4]);
    }
    v
}

fn run_receive(input: &[u8]) -> (Result<Vec<u8>, Refused>, Vec<u8>) {
    let mut out = Vec::new();
    let deadline = Instant::now() + MESSAGE_LIMIT;
    let r = receive(&mut &input[..], &mut out, b"Received: x\n", deadline);
    (r, out)
}

fn code(r: Result<Vec<u8>, Refused>) -> i32 {
    match r {
        Err(Refused::Answer(e)) => e.code,
        other => panic!("expected an answer, got {other:?}"),
    }
}

#[test]
fn receives_envelope_and_chunks_after_the_head() {
    let (r, out) = run_receive(&frames(
        b"Fa@x\0Tb@y\0\0",
        &[b"Subject: hi\n", b"\nbody\n"],
        true,
    ));
    assert_eq!(r.unwrap(), b"Fa@x\0Tb@y\0");
    assert_eq!(out, b"Received: x\nSubject: hi\n\nbody\n");
}

#[test]
fn the_envelope_cases_of_qmail_queue_give_the_same_codes() {
    let long = {
        let mut v = b"F".to_vec();
        v.extend(std::iter::repeat_n(b'a', 2000));
        v.extend_from_slice(b"\0\0");
        v
    };
    let cases: Vec<(&[u8], i32)> = vec![
        (b"Fa@x\0Tb@y\0", 54),
        (b"Ta@x\0\0", 91),
        (b"Fa@x\0Xb\0\0", 91),
        (b"Fa\0b@x\0Tc@y\0\0", 91),
        (&long, 11),
        (b"", 54),
    ];
    for (env, want) in cases {
        let (r, out) = run_receive(&frames(env, &[b"x\n"], true));
        assert_eq!(code(r), want, "{:?}", String::from_utf8_lossy(env));
        assert!(out.is_empty(), "nothing written for a bad envelope");
    }
}

#[test]
fn hostile_lengths_are_answered_54_before_reading_on() {
    // an envelope length over ENVELOPE_MAX, with nothing behind it
    let mut v = ((ENVELOPE_MAX + 1) as u32).to_be_bytes().to_vec();
    v.extend_from_slice(b"Fa@x\0");
    assert_eq!(code(run_receive(&v).0), 54);
    assert_eq!(code(run_receive(&u32::MAX.to_be_bytes()).0), 54);
    // a chunk over MAX_CHUNK
    let mut v = frames(b"Fa@x\0Tb@y\0\0", &[b"ok\n"], false);
    v.extend_from_slice(&((MAX_CHUNK + 1) as u32).to_be_bytes());
    v.extend_from_slice(b"more");
    assert_eq!(code(run_receive(&v).0), 54);
    v.truncate(v.len() - 8);
    v.extend_from_slice(&u32::MAX.to_be_bytes());
    assert_eq!(code(run_receive(&v).0), 54);
}

#[test]
fn a_client_that_stops_early_gets_no_answer() {
    let whole = frames(b"Fa@x\0Tb@y\0\0", &[b"hello\n"], true);
    // EOF at every byte before the end chunk is complete
    for cut in 0..whole.len() {
        match run_receive(&whole[..cut]).0 {
            Err(Refused::Gone(_)) => {}
            other => panic!("cut at {cut}: {other:?}"),
        }
    }
    assert!(run_receive(&whole).0.is_ok());
}

#[test]
fn a_message_over_its_time_limit_is_52() {
    let mut out = Vec::new();
    let input = frames(b"Fa@x\0Tb@y\0\0", &[b"x\n"], true);
    let past = Instant::now() - Duration::from_secs(1);
    let r = receive(&mut &input[..], &mut out, b"", past);
    assert_eq!(code(r), 52);
}

/// Records every fsync in order; fails the targets in `fail`. At the todo/ fsync it
/// notes which message ids had their todo/N link already made; at a message's own
/// fsyncs, whether its todo/N already existed (it must not: step 3 waits for step 2).
/// With `slow_intd`, each intd/N fsync (a helper's, for a lone message) first sleeps.
#[derive(Default)]
struct Recorder {
    events: Mutex<Vec<Target>>,
    fail: Mutex<Vec<Target>>,
    todo_dir: PathBuf,
    linked_at_todo_sync: Mutex<Vec<u64>>,
    linked_before_own_sync: Mutex<Vec<u64>>,
    slow_intd: std::sync::atomic::AtomicBool,
}

impl Syncer for Arc<Recorder> {
    fn fsync(&self, target: Target, file: &File) -> io::Result<()> {
        if let Target::Intd(_) = target
            && self.slow_intd.load(std::sync::atomic::Ordering::Relaxed)
        {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        if let Target::Message(n) | Target::Intd(n) = target
            && self.todo_dir.join(n.to_string()).exists()
        {
            self.linked_before_own_sync.lock().unwrap().push(n);
        }
        self.events.lock().unwrap().push(target);
        if target == Target::Todo {
            let names = std::fs::read_dir(&self.todo_dir).unwrap();
            let mut linked = self.linked_at_todo_sync.lock().unwrap();
            linked.extend(
                names
                    .flatten()
                    .filter_map(|e| crate::layout::parse_id(&e.file_name())),
            );
        }
        if self.fail.lock().unwrap().contains(&target) {
            return Err(io::Error::other("injected fsync failure"));
        }
        file.sync_all()
    }
}

fn recorder_queue(l: &Layout) -> (Arc<Recorder>, Queue) {
    let rec = Arc::new(Recorder {
        todo_dir: l.dir.join("todo"),
        ..Default::default()
    });
    let q = Queue::open(l.clone(), Arc::new(Arc::clone(&rec))).unwrap();
    (rec, q)
}

fn message(q: &Queue, body: &str) -> Message {
    let (mut file, id) = q.new_file().unwrap();
    file.write_all(body.as_bytes()).unwrap();
    Message {
        file: Arc::new(file),
        id,
        envelope: b"Fa@x\0Tb@y\0".to_vec(),
        uid: 7,
        pid: 4242,
    }
}

#[test]
fn a_batch_is_durable_with_one_todo_fsync_after_every_link() {
    let (_d, l) = queue_dir();
    let (rec, q) = recorder_queue(&l);
    let batch: Vec<Message> = (0..10).map(|i| message(&q, &format!("m{i}\n"))).collect();
    let ids: Vec<u64> = batch.iter().map(|m| m.id).collect();
    let results = q.commit(&batch);
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let events = rec.events.lock().unwrap().clone();
    assert_eq!(events.iter().filter(|t| **t == Target::Todo).count(), 1);
    assert_eq!(events.last(), Some(&Target::Todo), "todo/ last: {events:?}");
    for id in &ids {
        assert!(events.contains(&Target::Message(*id)));
        assert!(events.contains(&Target::Intd(*id)));
        assert!(events.contains(&Target::MessDir(id % SPLIT)));
        let todo = std::fs::read(l.todo(*id)).unwrap();
        assert_eq!(todo, b"u7\0p4242\0Fa@x\0Tb@y\0");
        assert_eq!(std::fs::metadata(l.mess(*id)).unwrap().ino(), *id);
    }
    let dirs = events
        .iter()
        .filter(|t| matches!(t, Target::MessDir(_)))
        .count();
    let distinct: std::collections::BTreeSet<u64> = ids.iter().map(|i| i % SPLIT).collect();
    assert_eq!(dirs, distinct.len(), "each mess/S once");
    let mut linked = rec.linked_at_todo_sync.lock().unwrap().clone();
    linked.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(
        linked, want,
        "every todo/N link exists before the todo/ fsync"
    );
    assert_eq!(count(&l, "pid"), 0);
}

/// Step 2's fsyncs run on other threads (the lanes); step 3 links todo/N only when all
/// of them have returned, however long one takes.
#[test]
fn todo_is_linked_only_after_every_fsync_of_step_2_returned() {
    let (_d, l) = queue_dir();
    let (rec, q) = recorder_queue(&l);
    rec.slow_intd
        .store(true, std::sync::atomic::Ordering::Relaxed);
    for n in [1, 3] {
        let batch: Vec<Message> = (0..n).map(|i| message(&q, &format!("m{i}\n"))).collect();
        let results = q.commit(&batch);
        assert!(results.iter().all(Result::is_ok), "{results:?}");
    }
    assert!(rec.linked_before_own_sync.lock().unwrap().is_empty());
    assert_eq!(count(&l, "todo"), 4);
    let events = rec.events.lock().unwrap();
    assert_eq!(events.iter().filter(|t| **t == Target::Todo).count(), 2);
    assert_eq!(events.last(), Some(&Target::Todo));
}

#[test]
fn a_failing_message_fsync_fails_only_its_message() {
    let (_d, l) = queue_dir();
    let (rec, q) = recorder_queue(&l);
    let batch: Vec<Message> = (0..3).map(|i| message(&q, &format!("m{i}\n"))).collect();
    rec.fail.lock().unwrap().push(Target::Message(batch[1].id));
    let r = q.commit(&batch);
    assert!(r[0].is_ok() && r[2].is_ok());
    assert_eq!(r[1].as_ref().unwrap_err().code, 53);
    assert!(!l.todo(batch[1].id).exists());
    assert!(!l.intd(batch[1].id).exists());
    assert!(!l.mess(batch[1].id).exists());
    assert_eq!(count(&l, "todo"), 2);
}

#[test]
fn a_failing_intd_or_mess_dir_fsync_fails_those_messages() {
    let (_d, l) = queue_dir();
    let (rec, q) = recorder_queue(&l);
    let batch: Vec<Message> = (0..4).map(|i| message(&q, &format!("m{i}\n"))).collect();
    rec.fail.lock().unwrap().push(Target::Intd(batch[0].id));
    rec.fail
        .lock()
        .unwrap()
        .push(Target::MessDir(batch[3].id % SPLIT));
    let r = q.commit(&batch);
    for (m, r) in batch.iter().zip(&r) {
        let hit = m.id == batch[0].id || m.id % SPLIT == batch[3].id % SPLIT;
        assert_eq!(r.is_err(), hit, "message {}", m.id);
        assert_eq!(l.todo(m.id).exists(), !hit);
    }
}

#[test]
fn a_failing_todo_fsync_fails_the_whole_batch_and_leaves_nothing() {
    let (_d, l) = queue_dir();
    let (rec, q) = recorder_queue(&l);
    rec.fail.lock().unwrap().push(Target::Todo);
    let batch: Vec<Message> = (0..5).map(|i| message(&q, &format!("m{i}\n"))).collect();
    let r = q.commit(&batch);
    assert!(r.iter().all(|r| r.as_ref().is_err_and(|e| e.code == 53)));
    assert_eq!(count(&l, "todo"), 0);
    assert_eq!(count(&l, "intd"), 0);
    assert_eq!(mess_count(&l), 0);
}

#[test]
fn the_committer_takes_everything_pending_as_one_batch() {
    let (_d, l) = queue_dir();
    let (rec, q) = recorder_queue(&l);
    let q = Arc::new(q);
    let committer = Arc::new(Committer::default());
    // a commit is under way: the twenty that arrive meanwhile wait as one batch
    committer.lock().committing = true;
    let receivers: Vec<_> = (0..20)
        .map(|i| {
            let (q, c) = (Arc::clone(&q), Arc::clone(&committer));
            let msg = message(&q, &format!("m{i}\n"));
            std::thread::spawn(move || c.commit(&q, msg))
        })
        .collect();
    while committer.lock().waiting.len() < 20 {
        std::thread::yield_now();
    }
    committer.lock().committing = false;
    committer.changed.notify_all();
    for r in receivers {
        assert!(r.join().unwrap().verdict.is_ok());
    }
    let todo_syncs = rec
        .events
        .lock()
        .unwrap()
        .iter()
        .filter(|t| **t == Target::Todo)
        .count();
    assert_eq!(todo_syncs, 1);
    assert_eq!(count(&l, "todo"), 20);
    assert!(committer.lock().verdicts.is_empty(), "every verdict taken");
}

/// One receiver alone commits its own message at once (no other thread involved), and
/// is the one to pull the trigger.
#[test]
fn a_lone_message_is_committed_by_its_own_receiver() {
    let (_d, l) = queue_dir();
    let (_rec, q) = recorder_queue(&l);
    let committer = Committer::default();
    for i in 0..3 {
        let c = committer.commit(&q, message(&q, &format!("m{i}\n")));
        assert!(c.verdict.is_ok());
        // it committed, so it pulls qmail-send's trigger (after its answer)
        assert!(c.pull_trigger);
    }
    assert_eq!(count(&l, "todo"), 3);
    let state = committer.lock();
    assert!(!state.committing && state.waiting.is_empty() && state.verdicts.is_empty());
}

/// A writer on a socket in a temporary installation, serving `served_uid`.
fn server(served_uid: u32) -> (tempfile::TempDir, Layout, PathBuf, Arc<Recorder>) {
    let (d, l) = queue_dir();
    let socket = d.path().join("socket");
    let listener = UnixListener::bind(&socket).unwrap();
    let (rec, q) = recorder_queue(&l);
    let served = Served {
        uid: served_uid,
        invoked: "invoked from network".into(),
    };
    std::thread::spawn(move || serve(listener, q, served));
    (d, l, socket, rec)
}

fn me() -> u32 {
    nix::unistd::geteuid().as_raw()
}

#[test]
fn concurrent_clients_are_queued_through_the_socket() {
    let (_d, l, socket, rec) = server(me());
    let n = 24;
    let clients: Vec<_> = (0..n)
        .map(|i| {
            let socket = socket.clone();
            std::thread::spawn(move || {
                let body = format!("Subject: {i}\n\n{}\n", "x".repeat(100_000 + i));
                match inject_queued(&socket, b"a@x", &["b@y"], |w| w.write_all(body.as_bytes())) {
                    Queued::Done(r) => r,
                    Queued::Declined(_) => panic!("declined"),
                }
            })
        })
        .collect();
    for c in clients {
        assert_eq!(c.join().unwrap(), Ok(std::process::id()));
    }
    assert_eq!(count(&l, "todo"), n);
    let todo_syncs = rec
        .events
        .lock()
        .unwrap()
        .iter()
        .filter(|t| **t == Target::Todo)
        .count();
    assert!((1..=n).contains(&todo_syncs));
    let pid = std::process::id();
    for e in std::fs::read_dir(l.dir.join("todo")).unwrap().flatten() {
        let id = crate::layout::parse_id(&e.file_name()).unwrap();
        let env = std::fs::read(e.path()).unwrap();
        assert_eq!(env, format!("u{}\0p{pid}\0Fa@x\0Tb@y\0", me()).as_bytes());
        let mess = std::fs::read(l.mess(id)).unwrap();
        let head = format!("Received: (qmail {pid} invoked from network); ");
        assert!(mess.starts_with(head.as_bytes()));
        assert!(mess.ends_with(b"x\n"));
    }
    assert_eq!(count(&l, "pid"), 0);
}

/// Receivers stay for the next connection, and one busy with a slow client is never
/// promised another: a second client is greeted while the first holds its connection
/// open, and so is a third after both are done (a receiver counted idle while it
/// served would leave that client waiting for the greeting until it fell back).
#[test]
fn a_client_is_greeted_while_another_holds_its_connection() {
    let (_d, l, socket, _rec) = server(me());
    let send = |body: &str| match inject_queued(&socket, b"a@x", &["b@y"], |w| {
        w.write_all(body.as_bytes())
    }) {
        Queued::Done(r) => r.is_ok(),
        Queued::Declined(_) => false,
    };
    for round in 0..3 {
        let mut slow = UnixStream::connect(&socket).unwrap();
        let mut greeting = [0u8; 1];
        slow.read_exact(&mut greeting).unwrap();
        assert_eq!(greeting[0], GREETING);
        assert!(send("Subject: while one waits\n\nx\n"), "round {round}");
        drop(slow);
        assert!(send("Subject: after\n\nx\n"), "round {round}");
    }
    assert_eq!(count(&l, "todo"), 6);
}

#[test]
fn a_refusal_comes_back_as_qmail_queue_s_failure() {
    let (_d, l, socket, _rec) = server(me());
    // a NUL in an address cannot be sent by qq_envelope; an overlong one can
    let long = "a".repeat(2000);
    let r = inject_queued(&socket, long.as_bytes(), &["b@y"], |w| w.write_all(b"x\n"));
    match r {
        Queued::Done(Err(f)) => assert_eq!(f, crate::client::failure_for_exit(11)),
        _ => panic!("expected a refusal"),
    }
    // the caller stops the message: nothing queued
    let r = inject_queued(&socket, b"a@x", &["b@y"], |w| {
        w.write_all(b"part\n")?;
        Err(io::ErrorKind::InvalidData.into())
    });
    assert!(matches!(r, Queued::Done(Err(_))));
    assert_eq!(count(&l, "todo"), 0);
}

#[test]
fn a_peer_of_another_uid_or_no_writer_is_declined() {
    let (_d, l, socket, _rec) = server(me().wrapping_add(1));
    let r = inject_queued(&socket, b"a@x", &["b@y"], |w| w.write_all(b"x\n"));
    assert!(matches!(r, Queued::Declined(_)));
    assert_eq!(count(&l, "todo"), 0);
    let r = inject_queued(&_d.path().join("none"), b"a@x", &["b@y"], |w| {
        w.write_all(b"x\n")
    });
    assert!(matches!(r, Queued::Declined(_)));
    // a socket nobody accepts on: connect succeeds into the backlog, no greeting comes
    let silent = _d.path().join("silent");
    let _l = UnixListener::bind(&silent).unwrap();
    let r = inject_queued(&silent, b"a@x", &["b@y"], |w| w.write_all(b"x\n"));
    assert!(matches!(r, Queued::Declined(_)));
}

#[test]
fn the_socket_is_tried_only_for_the_plain_qmail_queue() {
    let home = Path::new("/var/qmail");
    assert_eq!(
        crate::client::queued_socket(home, &home.join("bin/qmail-queue")),
        Some(home.join("queued/socket"))
    );
    assert_eq!(
        crate::client::queued_socket(home, &home.join("bin/qmail-qfilter")),
        None
    );
    assert_eq!(
        crate::client::queued_socket(home, Path::new("/usr/bin/qmail-queue")),
        None
    );
}
