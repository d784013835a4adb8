//! End-to-end tests of qmail-queued, the queue writer qmail-smtpd hands its messages to
//! (doc/queue-writer.md section 9): it runs as qmailq and makes qmail-queue's files;
//! qmail-smtpd holds no queue descriptor; only qmaild is served; the Received line and
//! the `qp` are unchanged; every way the writer can be missing (no socket, a dead one,
//! one that never greets, killed mid-message) still queues or refuses temporarily; and
//! SIGKILLs of the writer and the delivery programs lose no acknowledged message.

mod smtpd_common;

use e2e::*;
use nix::sys::signal::Signal;
use smtpd_common::*;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// qmail-queued of `sys`, started as its run script starts it (setuidgid qmailq when
/// root); returns once its socket is up.
struct Writer;

impl Writer {
    fn start(sys: &System) -> e2e::daemon::Daemon {
        e2e::daemon::Daemon::start(sys, "qmail-queued", Some("qmailq"), "queued/socket")
    }
}

/// A qmail-queue that always fails (81): a 250 then proves the writer queued it.
fn break_qmail_queue(sys: &System) -> PathBuf {
    let q = sys.bin("qmail-queue");
    let saved = sys.root.join("qmail-queue.real");
    std::fs::rename(&q, &saved).unwrap();
    std::fs::write(&q, "#!/bin/sh\nexit 81\n").unwrap();
    std::fs::set_permissions(&q, PermissionsExt::from_mode(0o755)).unwrap();
    saved
}

fn restore_qmail_queue(sys: &System, saved: &Path) {
    std::fs::rename(saved, sys.bin("qmail-queue")).unwrap();
}

fn uid(name: &str) -> u32 {
    nix::unistd::User::from_name(name)
        .unwrap()
        .unwrap()
        .uid
        .as_raw()
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        if e.file_type().unwrap().is_dir() {
            v.extend(files_under(&e.path()));
        } else {
            v.push(e.path());
        }
    }
    v
}

/// The `qp` of a 250 reply (`250 2.0.0 ok 1234567890 qp 4711`).
fn qp_of(reply: &str) -> u32 {
    reply
        .split_whitespace()
        .last()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no qp in {reply:?}"))
}

#[test]
fn smtp_through_the_writer_keeps_owners_received_line_and_qp() {
    need_root!();
    let sys = system();
    let writer = Writer::start(&sys);
    // the writer runs as qmailq (setuidgid execs it: the same pid)
    let wpid = pids_of(&sys.bin("qmail-queued"));
    assert_eq!(wpid.len(), 1, "one writer");
    assert_eq!(wpid, vec![writer.pid()]);
    assert_eq!(uid_of(wpid[0]), Some(uid("qmailq")));
    // the socket: qmailq:nofiles 0660 in a qmailq:nofiles 0750 (setgid) directory
    let nofiles = nix::unistd::Group::from_name("nofiles")
        .unwrap()
        .unwrap()
        .gid
        .as_raw();
    let dir = std::fs::metadata(sys.root.join("queued")).unwrap();
    assert_eq!((dir.uid(), dir.gid()), (uid("qmailq"), nofiles));
    assert_eq!(dir.mode() & 0o7777, 0o2750);
    let sock = std::fs::symlink_metadata(sys.root.join("queued/socket")).unwrap();
    assert_eq!((sock.uid(), sock.gid()), (uid("qmailq"), nofiles));
    assert_eq!(sock.mode() & 0o777, 0o660);

    let saved = break_qmail_queue(&sys);
    let smtpd = SmtpServer::start(&sys, &[], &[]);
    let mut c = smtpd.client();
    assert!(c.reply().starts_with("220"));
    assert!(c.cmd("HELO client.test").starts_with("250"));
    assert!(c.cmd("MAIL FROM:<a@remote.test>").starts_with("250"));
    assert!(c.cmd("RCPT TO:<alias@example.test>").starts_with("250"));
    assert!(c.cmd("DATA").starts_with("354"));
    // mid-message: qmail-smtpd holds no descriptor under queue/
    let smtpds = pids_of(&sys.bin("qmail-smtpd"));
    assert_eq!(smtpds.len(), 1);
    let queue_dir = sys.root.join("queue");
    for fd in std::fs::read_dir(format!("/proc/{}/fd", smtpds[0]))
        .unwrap()
        .flatten()
    {
        let target = std::fs::read_link(fd.path()).unwrap_or_default();
        assert!(
            !target.starts_with(&queue_dir),
            "qmail-smtpd holds {target:?}"
        );
    }
    c.raw(b"Subject: through the writer\r\n\r\nhello\r\n.\r\n");
    let reply = c.reply();
    assert!(
        reply.starts_with("250 ") && reply.contains(" ok "),
        "{reply}\n{}",
        writer.log_text()
    );
    let qp = qp_of(&reply);
    assert_eq!(qp, smtpds[0], "qp names the qmail-smtpd process");
    c.cmd("QUIT");
    restore_qmail_queue(&sys, &saved);

    // qmail-queue's files and owners, qmail-smtpd's pid in the Received line and intd/todo
    let msgs = queued_messages(&sys);
    assert_eq!(msgs.len(), 1);
    assert!(
        msgs[0].starts_with(&format!("Received: (qmail {qp} invoked from network); ")),
        "{}",
        msgs[0]
    );
    assert!(
        msgs[0]
            .lines()
            .nth(1)
            .is_some_and(|l| l.starts_with("Received: from "))
    );
    let todo = files_under(&sys.root.join("queue/todo"));
    assert_eq!(todo.len(), 1);
    let env = std::fs::read(&todo[0]).unwrap();
    assert_eq!(
        env,
        format!(
            "u{}\0p{qp}\0Fa@remote.test\0Talias@example.test\0",
            uid("qmaild")
        )
        .as_bytes()
    );
    for sub in ["mess", "intd", "todo"] {
        for f in files_under(&sys.root.join("queue").join(sub)) {
            let m = std::fs::metadata(&f).unwrap();
            assert_eq!(m.uid(), uid("qmailq"), "{f:?}");
            assert_eq!(m.mode() & 0o777, 0o644, "{f:?}");
        }
    }
    // the log line of qmail-smtpd carries the same qp
    assert!(
        smtpd.log_text().contains(&format!("qp {qp}")),
        "{}",
        smtpd.log_text()
    );
    assert!(files_under(&sys.root.join("queue/pid")).is_empty());
}

#[test]
fn a_peer_other_than_qmaild_is_refused_and_its_mail_goes_through_qmail_queue() {
    need_root!();
    need_tool!("python3", "python3");
    let sys = system();
    let writer = Writer::start(&sys);
    let socket = sys.root.join("queued/socket");
    let probe = "import socket,sys\ns=socket.socket(socket.AF_UNIX)\ns.settimeout(10)\n\
                 try:\n s.connect(sys.argv[1])\nexcept OSError as e:\n print('error', e.errno); sys.exit(0)\n\
                 print('greeting', repr(s.recv(1)))\n";
    let run = |user: &str| {
        let out = Command::new("runuser")
            .args(["-u", user, "--", "python3", "-c", probe])
            .arg(&socket)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    // alias is in group nofiles: it reaches the socket and is closed before the greeting
    assert_eq!(run("alias"), "greeting b''");
    assert!(
        writer
            .log_text()
            .contains(&format!("refused a client of uid {}", uid("alias")))
    );
    // an ordinary user cannot even connect
    assert_eq!(run("nobody"), format!("error {}", libc::EACCES));
    // qmaild is greeted
    assert_eq!(run("qmaild"), "greeting b'Q'");
    // qmail-smtpd running as alias (group nofiles): the writer refuses it, qmail-queue
    // takes the message, and its Received line names alias as qmail-queue does
    let mut cmd = Command::new(sys.bin("tcpserver"));
    cmd.args(["-1", "-q", "-H", "-R", "-l", ME, "-u"])
        .arg(uid("alias").to_string())
        .arg("-g")
        .arg(
            nix::unistd::Group::from_name("nofiles")
                .unwrap()
                .unwrap()
                .gid
                .as_raw()
                .to_string(),
        )
        .args(["127.0.0.1", "0"])
        .arg(sys.bin("qmail-smtpd"))
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut server = Server(cmd.spawn().unwrap());
    let port = printed_port(&mut server.0);
    let mut c = Client::connect(port);
    assert!(c.reply().starts_with("220"));
    let r = send_message(
        &mut c,
        "a@remote.test",
        &["alias@example.test"],
        "Subject: x\r\n\r\nhi",
    );
    assert!(r.starts_with("250"), "{r}");
    let msgs = queued_messages(&sys);
    assert_eq!(msgs.len(), 1);
    assert!(msgs[0].contains("invoked by alias"), "{}", msgs[0]);
}

#[test]
fn without_a_writer_every_message_is_still_queued() {
    need_root!();
    need_tool!("python3", "python3");
    let sys = system();
    let smtpd = SmtpServer::start(&sys, &[], &[]);
    let send = |n: usize| {
        let mut c = smtpd.client();
        assert!(c.reply().starts_with("220"));
        let body = format!("Subject: fallback {n}\r\n\r\nhi");
        let start = Instant::now();
        let r = send_message(&mut c, "a@remote.test", &["alias@example.test"], &body);
        assert!(r.starts_with("250"), "message {n}: {r}");
        start.elapsed()
    };
    // 1. no socket at all
    send(1);
    // 2. a socket whose writer is dead (SIGKILL leaves the name: connection refused)
    let mut w = Writer::start(&sys);
    w.kill();
    assert!(sys.root.join("queued/socket").exists());
    send(2);
    // 3. a listener that accepts and never greets: qmail-smtpd waits 5 s, then qmail-queue
    let socket = sys.root.join("queued/socket");
    std::fs::remove_file(&socket).unwrap();
    let mute = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    std::fs::set_permissions(&socket, PermissionsExt::from_mode(0o666)).unwrap();
    let accepted = std::thread::spawn(move || mute.accept().map(|(s, _)| s));
    send(3);
    drop(accepted.join().unwrap());
    std::fs::remove_file(&socket).unwrap();
    // 4. a writer again: it takes the next one
    let _w = Writer::start(&sys);
    let saved = break_qmail_queue(&sys);
    send(4);
    restore_qmail_queue(&sys, &saved);
    let msgs = queued_messages(&sys);
    assert_eq!(msgs.len(), 4);
    for n in 1..=4 {
        assert!(
            msgs.iter()
                .any(|m| m.contains(&format!("Subject: fallback {n}")))
        );
    }
    assert!(msgs.iter().all(|m| m.contains("invoked from network")));
}

#[test]
fn a_writer_killed_mid_message_is_a_temporary_failure_and_leaves_nothing() {
    need_root!();
    let sys = system();
    let mut w = Writer::start(&sys);
    let smtpd = SmtpServer::start(&sys, &[], &[]);
    let mut c = smtpd.client();
    assert!(c.reply().starts_with("220"));
    assert!(c.cmd("HELO client.test").starts_with("250"));
    assert!(c.cmd("MAIL FROM:<a@remote.test>").starts_with("250"));
    assert!(c.cmd("RCPT TO:<alias@example.test>").starts_with("250"));
    assert!(c.cmd("DATA").starts_with("354"));
    // more than a chunk, so the writer has part of it when it dies
    c.raw(format!("Subject: cut\r\n\r\n{}\r\n", "x".repeat(200_000)).as_bytes());
    wait_until("the first chunk in the writer's file", 20, || {
        let fds = std::fs::read_dir(format!("/proc/{}/fd", w.pid())).ok()?;
        fds.flatten()
            .filter_map(|f| std::fs::read_link(f.path()).ok())
            .any(|t| t.to_string_lossy().contains("/queue/pid/"))
            .then_some(())
    });
    w.kill();
    c.raw(b"more\r\n.\r\n");
    let r = c.reply();
    assert!(r.starts_with("451"), "{r}");
    assert!(r.contains("qq crashed"), "{r}");
    // the session goes on: the next message falls back to qmail-queue
    let r = send_message(
        &mut c,
        "a@remote.test",
        &["alias@example.test"],
        "Subject: after\r\n\r\nhi",
    );
    assert!(r.starts_with("250"), "{r}");
    let msgs = queued_messages(&sys);
    assert_eq!(msgs.len(), 1);
    assert!(msgs[0].contains("Subject: after"));
    assert_eq!(files_under(&sys.root.join("queue/todo")).len(), 1);
    assert!(files_under(&sys.root.join("queue/pid")).is_empty());
}

struct Lcg(u64);
impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

fn restart_send_if_dead(sys: &mut System) {
    if !sys.send_alive() {
        sys.kill();
        wait_until("the old spawners to exit", 20, || {
            ["qmail-lspawn", "qmail-rspawn", "qmail-clean"]
                .iter()
                .all(|p| pids_of(&sys.bin(p)).is_empty())
                .then_some(())
        });
        sys.start();
    }
}

#[test]
fn sigkill_of_the_writer_and_delivery_loses_no_acknowledged_message() {
    need_root!();
    let (_, home) = local_user("qtqueued");
    let mut sys = system();
    sys.start();
    let mut writer = Some(Writer::start(&sys));
    let smtpd = SmtpServer::start(&sys, &[], &[]);
    let port = smtpd.port;
    let n: usize = std::env::var("CRASH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let sessions = 4;
    let senders: Vec<_> = (0..sessions)
        .map(|s| {
            std::thread::spawn(move || {
                let mut accepted = Vec::new();
                let mut c = Client::connect(port);
                c.reply();
                c.cmd("HELO crash.test");
                for i in (s..n).step_by(sessions) {
                    let body = format!("Subject: crash {i}\r\n\r\nmessage {i}");
                    let r =
                        send_message(&mut c, "a@remote.test", &["qtqueued@example.test"], &body);
                    if r.starts_with("250") {
                        accepted.push(i);
                    } else if !r.starts_with("451") {
                        // a dropped session: start another
                        c = Client::connect(port);
                        c.reply();
                        c.cmd("HELO crash.test");
                    }
                }
                accepted
            })
        })
        .collect();
    let mut rng = Lcg(std::process::id() as u64);
    let mut kills = 0;
    while senders.iter().any(|s| !s.is_finished()) {
        // the point of the test: a kill at a random moment of the injection
        std::thread::sleep(Duration::from_millis(50 + rng.next(200)));
        let victim = match rng.next(4) {
            0 | 1 => "qmail-queued",
            2 => "qmail-send",
            // lspawn and its delivering children (local delivery runs in lspawn's child)
            _ => "qmail-lspawn",
        };
        for pid in pids_of(&sys.bin(victim)) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), Signal::SIGKILL);
            kills += 1;
        }
        if victim == "qmail-queued" {
            // supervise's part: a new writer (a moment without one means fallbacks)
            if let Some(mut w) = writer.take() {
                w.kill();
            }
            writer = Some(Writer::start(&sys));
        }
        restart_send_if_dead(&mut sys);
    }
    let accepted: Vec<usize> = senders
        .into_iter()
        .flat_map(|s| s.join().unwrap())
        .collect();
    assert!(kills > 0, "the crash test killed nothing");
    assert!(
        accepted.len() >= n / 2,
        "only {} of {n} messages accepted",
        accepted.len()
    );
    let deadline = Instant::now() + Duration::from_secs(180);
    let (missing, dups) = loop {
        restart_send_if_dead(&mut sys);
        sys.signal(Signal::SIGALRM);
        // poll interval: the loop waits for the state below, up to `deadline`
        std::thread::sleep(Duration::from_millis(500));
        let (missing, dups) = crash_tally(&home.join("Maildir"), &accepted);
        if missing.is_empty() || Instant::now() > deadline {
            break (missing, dups);
        }
    };
    eprintln!(
        "queued crash test: {} of {n} accepted, {kills} processes killed, {dups} duplicates",
        accepted.len()
    );
    assert!(
        missing.is_empty(),
        "acknowledged but never delivered: {missing:?}\n{}",
        sys.log_text()
    );
    drop(smtpd);
}

/// A small tmpfs mounted over the installation's queue (its directories copied in with
/// their owners and modes), unmounted and put back when dropped.
struct SmallQueue {
    queue: PathBuf,
    saved: PathBuf,
}

impl SmallQueue {
    fn mount(sys: &System, size: &str) -> Option<SmallQueue> {
        let queue = sys.root.join("queue");
        let saved = sys.root.join("queue.orig");
        std::fs::rename(&queue, &saved).unwrap();
        std::fs::create_dir(&queue).unwrap();
        let mounted = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0750"),
                "tmpfs",
            ])
            .arg(&queue)
            .status()
            .is_ok_and(|s| s.success());
        let q = SmallQueue { queue, saved };
        if !mounted {
            return None;
        }
        let copied = Command::new("cp")
            .arg("-a")
            .arg(q.saved.join("."))
            .arg(q.queue.join("."))
            .status()
            .unwrap();
        assert!(copied.success());
        let top = std::fs::metadata(&q.saved).unwrap();
        nix::unistd::chown(&q.queue, Some(top.uid().into()), Some(top.gid().into())).unwrap();
        std::fs::set_permissions(&q.queue, PermissionsExt::from_mode(top.mode() & 0o7777)).unwrap();
        Some(q)
    }
}

impl Drop for SmallQueue {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.queue).status();
        let _ = std::fs::remove_dir(&self.queue);
        let _ = std::fs::rename(&self.saved, &self.queue);
    }
}

#[test]
fn a_full_disk_is_a_temporary_failure_with_nothing_in_the_queue() {
    need_root!();
    let sys = system();
    let Some(small) = SmallQueue::mount(&sys, "256k") else {
        e2e::skip("cannot mount a tmpfs here");
        return;
    };
    let _w = Writer::start(&sys);
    let saved = break_qmail_queue(&sys);
    let smtpd = SmtpServer::start(&sys, &[], &[]);
    let mut c = smtpd.client();
    assert!(c.reply().starts_with("220"));
    assert!(c.cmd("HELO client.test").starts_with("250"));
    let big = format!(
        "Subject: too big for the disk\r\n\r\n{}",
        "y".repeat(600_000)
    );
    let r = send_message(&mut c, "a@remote.test", &["alias@example.test"], &big);
    assert!(r.starts_with("451"), "{r}");
    assert!(r.contains("qq write error or disk full"), "{r}");
    assert!(files_under(&small.queue.join("todo")).is_empty());
    assert!(files_under(&small.queue.join("intd")).is_empty());
    assert!(files_under(&small.queue.join("mess")).is_empty());
    // the unnamed file is gone with its space: a small message goes through the writer
    let r = send_message(
        &mut c,
        "a@remote.test",
        &["alias@example.test"],
        "Subject: small\r\n\r\nhi",
    );
    assert!(r.starts_with("250"), "{r}");
    assert_eq!(files_under(&small.queue.join("todo")).len(), 1);
    restore_qmail_queue(&sys, &saved);
    drop(smtpd);
}

/// control/filters naming the installed qmail-scan (issue 14's scan mode, no clamd).
fn scan_chain(sys: &System) {
    sys.control("filters", &format!("{}\n", sys.bin("qmail-scan").display()));
}

/// One message over SMTP through `smtpd`; the reply to its DATA.
fn smtp_one(smtpd: &SmtpServer, subject: &str) -> String {
    let mut c = smtpd.client();
    assert!(c.reply().starts_with("220"));
    let body = format!("Subject: {subject}\r\n\r\nclean text\r\n");
    let r = send_message(&mut c, "a@remote.test", &["alias@example.test"], &body);
    c.cmd("QUIT");
    r
}

/// The queued message whose Subject is `subject`.
fn queued_with(sys: &System, subject: &str) -> String {
    let msgs = queued_messages(sys);
    msgs.into_iter()
        .find(|m| m.contains(&format!("Subject: {subject}\n")))
        .unwrap_or_else(|| panic!("no message {subject:?} queued"))
}

#[test]
fn the_filter_chain_hands_its_message_to_the_writer_as_qmaild() {
    need_root!();
    let sys = system();
    scan_chain(&sys);
    let writer = Writer::start(&sys);
    // with qmail-queue broken, a 250 proves the writer took the chain's output
    let saved = break_qmail_queue(&sys);
    let smtpd = SmtpServer::start(&sys, &[], &[]);
    let r = smtp_one(&smtpd, "scanned");
    assert!(
        r.starts_with("250 ") && r.contains(" ok "),
        "{r}\n{}\n{}",
        smtpd.log_text(),
        writer.log_text()
    );
    // a message the filter takes (message/partial: quarantined) never reaches the writer
    let mut c = smtpd.client();
    assert!(c.reply().starts_with("220"));
    let partial = "Subject: part\r\nContent-Type: message/partial; id=\"x\"; number=1\r\n\r\nhi";
    let taken = send_message(&mut c, "a@remote.test", &["alias@example.test"], partial);
    assert!(taken.starts_with("250"), "{taken}");
    assert_eq!(maildir_new(&sys.root.join("quarantine")).len(), 1);
    c.cmd("QUIT");
    restore_qmail_queue(&sys, &saved);
    let qp = qp_of(&r);
    let msgs = queued_messages(&sys);
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    let m = &msgs[0];
    // qmail-qfilter's pid (the qp) and qmaild's wording, as qmail-queue would have put
    // them; qmail-scan's header below the writer's Received line
    assert!(
        m.starts_with(&format!("Received: (qmail {qp} invoked from network); ")),
        "{m}"
    );
    assert!(
        m.lines()
            .nth(1)
            .is_some_and(|l| l.starts_with("X-Qmail-Scanned: by qmail-scan")),
        "{m}"
    );
    let todo = files_under(&sys.root.join("queue/todo"));
    assert_eq!(todo.len(), 1);
    assert_eq!(
        std::fs::read(&todo[0]).unwrap(),
        format!(
            "u{}\0p{qp}\0Fa@remote.test\0Talias@example.test\0",
            uid("qmaild")
        )
        .as_bytes()
    );
    for f in files_under(&sys.root.join("queue/mess")) {
        assert_eq!(std::fs::metadata(&f).unwrap().uid(), uid("qmailq"));
    }
    // the writer refused nobody: qmail-qfilter connected as qmaild, not as qmailf
    assert!(
        !writer.log_text().contains("refused"),
        "{}",
        writer.log_text()
    );
}

#[test]
fn the_filter_chain_falls_back_to_qmail_queue_and_names_other_users_as_it_does() {
    need_root!();
    need_tool!("python3", "python3");
    let sys = system();
    scan_chain(&sys);
    let smtpd = SmtpServer::start(&sys, &[], &[]);
    // 1. no writer at all, 2. a dead socket: qmail-qfilter execs qmail-queue
    let r = smtp_one(&smtpd, "no writer");
    assert!(r.starts_with("250 "), "{r}\n{}", smtpd.log_text());
    let mut w = Writer::start(&sys);
    w.kill();
    let r = smtp_one(&smtpd, "dead writer");
    assert!(r.starts_with("250 "), "{r}\n{}", smtpd.log_text());
    for s in ["no writer", "dead writer"] {
        let m = queued_with(&sys, s);
        assert!(m.contains("invoked from network"), "{m}");
        assert!(m.contains("X-Qmail-Scanned: "), "{m}");
    }
    // 3. a writer up: a local user's and root's sendmail go through the chain and
    // qmail-queue, which names their real uid; they never reach the writer
    let writer = Writer::start(&sys);
    let nobody = uid("nobody");
    for (user, subject, id) in [(Some("nobody"), "local user", nobody), (None, "root", 0)] {
        let text = format!("Subject: {subject}\n\nhi\n");
        let out = sys.run_as(user, "sendmail", &["alias@example.test"], text.as_bytes());
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let m = queued_with(&sys, subject);
        assert!(m.starts_with("Received: (qmail "), "{m}");
        assert!(
            m.lines()
                .next()
                .is_some_and(|l| l.contains(&format!("invoked by uid {id});"))),
            "{m}"
        );
        assert!(m.contains("X-Qmail-Scanned: "), "{m}");
    }
    assert!(
        !writer.log_text().contains("refused"),
        "{}",
        writer.log_text()
    );
    // 4. a filter's user connecting on its own is not served: at best it is closed
    // before the greeting, and it could always run qmail-queue itself
    let probe = "import socket,sys\ns=socket.socket(socket.AF_UNIX)\ns.settimeout(10)\n\
                 try:\n s.connect(sys.argv[1])\nexcept OSError as e:\n print('error', e.errno); sys.exit(0)\n\
                 print('greeting', repr(s.recv(1)))\n";
    let out = Command::new("runuser")
        .args([
            "-u", "qmailf", "-g", "nofiles", "--", "python3", "-c", probe,
        ])
        .arg(sys.root.join("queued/socket"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "greeting b''");
    assert!(
        writer
            .log_text()
            .contains(&format!("refused a client of uid {}", uid("qmailf"))),
        "{}",
        writer.log_text()
    );
    assert_eq!(queued_messages(&sys).len(), 4);
}
