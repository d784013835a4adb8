//! End-to-end tests of the mail core: a real installation in a temporary root, the real
//! qmail-start/send/lspawn/rspawn/clean/local processes, real injection programs.
//!
//! Most need root (users, uid changes, port binding); without root they skip
//! (`e2e::skip`: reported at the end of the run, a failure under CI=true).

use e2e::*;
use nix::sys::signal::Signal;
use std::time::{Duration, Instant};

const ME: &str = "mx.example.test";
const DOMAIN: &str = "example.test";

fn system() -> System {
    System::install(ME, &[DOMAIN])
}

#[test]
fn local_deliveries_run_as_their_users() {
    need_root!();
    let (uid_a, home_a) = local_user("qta");
    let (uid_b, home_b) = local_user("qtb");
    write_owned(&home_a.join(".qmail-mbox"), "./Mailbox\n", uid_a);
    write_owned(
        &home_a.join(".qmail-prog"),
        "|id -u > prog-uid; cat > prog-msg\n",
        uid_a,
    );
    write_owned(&home_a.join(".qmail-fwd"), "&qtb@example.test\n", uid_a);
    let mut sys = system();
    sys.start();

    // the daemons' users
    let want = [
        ("qmail-send", "qmails"),
        ("qmail-lspawn", "root"),
        ("qmail-rspawn", "qmailr"),
        ("qmail-clean", "qmailq"),
    ];
    for (prog, user) in want {
        let pids = pids_of(&sys.bin(prog));
        assert_eq!(pids.len(), 1, "{prog} running once");
        let uid = nix::unistd::User::from_name(user)
            .unwrap()
            .unwrap()
            .uid
            .as_raw();
        assert_eq!(uid_of(pids[0]), Some(uid), "{prog} runs as {user}");
    }

    let msg = "To: qta@example.test, qta-mbox@example.test, qta-prog@example.test\nCc: qta-fwd@example.test, postmaster@example.test\nBcc: qta-mbox@example.test\nSubject: fan out\n\nhello everyone\n";
    let out = sys.run_as(Some("qta"), "sendmail", &["-t", "-i"], msg.as_bytes());
    assert!(
        out.status.success(),
        "sendmail: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let a = wait_maildir(&home_a.join("Maildir"), 1, 20);
    assert!(
        a[0].contains("Delivered-To: qta@example.test\n"),
        "{}",
        a[0]
    );
    assert!(a[0].contains("Return-Path: <qta@"), "{}", a[0]);
    assert!(!a[0].contains("Bcc:"), "Bcc removed: {}", a[0]);
    assert!(a[0].contains("invoked by uid"), "{}", a[0]);
    let b = wait_maildir(&home_b.join("Maildir"), 1, 20);
    assert!(
        b[0].starts_with("Return-Path: <qta@mx.example.test>\nDelivered-To: qtb@example.test\n"),
        "{}",
        b[0]
    );
    assert!(
        b[0].contains("\nDelivered-To: qta-fwd@example.test\n"),
        "{}",
        b[0]
    );
    let alias = wait_maildir(&sys.root.join("alias/Maildir"), 1, 20);
    assert!(
        alias[0].contains("Delivered-To: postmaster@example.test"),
        "{}",
        alias[0]
    );
    // the message and its forwarded copy are done: every delivery (program, mbox) ended
    sys.wait_log_count("end msg", 2, 20);
    // qmail-local (and its program) ran as the recipient
    assert_eq!(
        std::fs::read_to_string(home_a.join("prog-uid"))
            .unwrap()
            .trim(),
        uid_a.to_string()
    );
    let owner = std::os::unix::fs::MetadataExt::uid(
        &std::fs::metadata(home_b.join("Maildir/new")).unwrap(),
    );
    assert_eq!(owner, uid_b);
    let mbox = std::fs::read_to_string(home_a.join("Mailbox")).unwrap();
    assert!(mbox.starts_with("From qta@"), "{mbox}");
    assert!(mbox.contains("hello everyone\n\n"), "{mbox}");
    assert!(
        std::fs::read_to_string(home_a.join("prog-msg"))
            .unwrap()
            .contains("Subject: fan out")
    );
    // queue files are gone once delivered; qmail-send stops cleanly on TERM
    assert_eq!(sys.stop().and_then(|s| s.code()), Some(0));
    for d in ["todo", "intd", "bounce"] {
        assert_eq!(
            std::fs::read_dir(sys.root.join("queue").join(d))
                .unwrap()
                .count(),
            0,
            "queue/{d} empty"
        );
    }
}

#[test]
fn unknown_user_bounces_and_bounces_of_bounces() {
    need_root!();
    let (_, home) = local_user("qtc");
    let mut sys = system();
    sys.start();
    assert_eq!(
        sys.queue(
            "qtc@example.test",
            &["nosuch@example.test"],
            b"Subject: lost\n\nbody\n"
        ),
        0
    );
    let got = wait_maildir(&home.join("Maildir"), 1, 20);
    let bounce = &got[0];
    assert!(bounce.contains("Return-Path: <>"), "{bounce}");
    assert!(
        bounce.contains("Content-Type: multipart/report; report-type=delivery-status"),
        "{bounce}"
    );
    assert!(bounce.contains("Hi. This is the qmail-send program at mx.example.test.\nI'm afraid I wasn't able to deliver"), "{bounce}");
    assert!(
        bounce.contains("<nosuch@example.test>:\nSorry, no mailbox here by that name. (#5.1.1)\n"),
        "{bounce}"
    );
    assert!(bounce.contains("Status: 5.1.1"), "{bounce}");
    assert!(bounce.contains("Subject: lost"), "{bounce}");
    sys.wait_log("bounce msg", 10);

    // a bounce that bounces goes to the postmaster
    assert_eq!(
        sys.queue("", &["nosuch2@example.test"], b"Subject: orphan\n\nbody\n"),
        0
    );
    let pm = wait_maildir(&sys.root.join("alias/Maildir"), 1, 20);
    assert!(
        pm[0].contains(
            "I tried to deliver a bounce message to this address, but the bounce bounced!"
        ),
        "{}",
        pm[0]
    );
    assert!(pm[0].contains("Return-Path: <#@[]>"), "{}", pm[0]);

    // and a double bounce that bounces is dropped
    assert_eq!(
        sys.queue("#@[]", &["nosuch3@example.test"], b"Subject: x\n\nbody\n"),
        0
    );
    sys.wait_log("triple bounce: discarding bounce/", 20);
}

#[test]
fn looping_dot_qmail_is_refused() {
    need_root!();
    let (uid, home) = local_user("qtd");
    write_owned(&home.join(".qmail-loop"), "qtd-loop@example.test\n", uid);
    let mut sys = system();
    sys.start();
    assert_eq!(
        sys.queue(
            "qtd@example.test",
            &["qtd-loop@example.test"],
            b"Subject: round\n\nbody\n"
        ),
        0
    );
    let got = wait_maildir(&home.join("Maildir"), 1, 30);
    assert!(
        got[0].contains("This message is looping: it already has my Delivered-To line. (#5.4.6)"),
        "{}",
        got[0]
    );
}

#[test]
fn temporary_failure_is_retried() {
    need_root!();
    let (uid, home) = local_user("qte");
    let flag = home.join("prog-flag");
    write_owned(
        &home.join(".qmail-later"),
        &format!("|test -f {} || exit 111\n./Maildir/\n", flag.display()),
        uid,
    );
    let mut sys = system();
    sys.start();
    assert_eq!(
        sys.queue(
            "a@remote.test",
            &["qte-later@example.test"],
            b"Subject: later\n\nbody\n"
        ),
        0
    );
    sys.wait_log("deferral", 20);
    assert!(maildir_new(&home.join("Maildir")).is_empty());
    write_owned(&flag, "", uid);
    sys.signal(Signal::SIGALRM);
    let got = wait_maildir(&home.join("Maildir"), 1, 20);
    assert!(got[0].contains("Subject: later"));
    sys.wait_log("end msg", 10);
}

#[test]
fn remote_delivery_through_the_whole_system() {
    need_root!();
    need_tool!("/usr/sbin/smtp-sink", "postfix");
    if !have_python_module("aiosmtpd", "python3-aiosmtpd") {
        return;
    }
    let (_, home) = local_user("qtf");
    let mailbox = tempfile::tempdir().unwrap();
    let mb = mailbox.path().join("mbox");
    // aiosmtpd's Mailbox handler on a port of the kernel's choice
    let mut sink = std::process::Command::new("/usr/bin/python3")
        .args(["-m", "aiosmtpd", "-n", "-l", "127.0.0.1:0"])
        .args(["-c", "aiosmtpd.handlers.Mailbox"])
        .arg(&mb)
        .spawn()
        .expect("python3");
    let ok_port = wait_listen_port(&mut sink);
    let _sink = Server(sink);
    let mut reject = std::process::Command::new("/usr/sbin/smtp-sink")
        .args(["-u", "nobody", "-f", "RCPT", "127.0.0.1:0", "10"])
        .spawn()
        .expect("smtp-sink (Debian postfix)");
    let bad_port = wait_listen_port(&mut reject);
    let _reject = Server(reject);
    let mut sys = system();
    sys.control(
        "smtproutes",
        &format!("remote.test:127.0.0.1:{ok_port}\nhard.test:127.0.0.1:{bad_port}\n"),
    );
    sys.control("nameservers", "127.0.0.1:1\n");
    sys.start();
    assert_eq!(
        sys.queue(
            "qtf@example.test",
            &["far@remote.test"],
            b"Subject: outbound\n\nover the wire\n"
        ),
        0
    );
    sys.wait_log("delivery 1: success", 30);
    let text = wait_maildir(&mb, 1, 20).concat();
    assert!(
        text.contains("Subject: outbound") && text.contains("over the wire"),
        "{text}"
    );

    assert_eq!(
        sys.queue(
            "qtf@example.test",
            &["nobody@hard.test"],
            b"Subject: refused\n\nbody\n"
        ),
        0
    );
    let got = wait_maildir(&home.join("Maildir"), 1, 30);
    assert!(
        got[0].contains("<nobody@hard.test>:\n127.0.0.1 does not like recipient."),
        "{}",
        got[0]
    );
    // the rspawn side ran as qmailr
    let rspawn = pids_of(&sys.bin("qmail-rspawn"));
    let qmailr = nix::unistd::User::from_name("qmailr")
        .unwrap()
        .unwrap()
        .uid
        .as_raw();
    assert_eq!(uid_of(rspawn[0]), Some(qmailr));
}

#[test]
fn bad_input_leaves_nothing_half_written() {
    let sys = system();
    let empty = |d: &str| {
        std::fs::read_dir(sys.root.join("queue").join(d))
            .unwrap()
            .count()
            == 0
    };
    let run = |env: &[u8]| {
        let mut cmd = std::process::Command::new(sys.bin("qmail-queue"));
        e2e::run_qmail_queue(&mut cmd, b"Subject: x\n\nbody\n", env).code()
    };
    assert_eq!(run(b"Fa@b\0Tc@d\0"), Some(54), "missing terminator");
    assert_eq!(run(b"Fa@b\0Tc\0d@e\0\0"), Some(91), "NUL inside an address");
    assert_eq!(run(b"Ta@b\0\0"), Some(91), "no sender record");
    for d in ["todo", "intd", "pid"] {
        assert!(empty(d), "queue/{d} empty");
    }
    let messages: usize = (0..23)
        .map(|i| {
            std::fs::read_dir(sys.root.join(format!("queue/mess/{i}")))
                .unwrap()
                .count()
        })
        .sum();
    assert_eq!(messages, 0);

    // a 2 MB header line is queued whole
    let mut big = b"To: someone@example.test\nX-Long: ".to_vec();
    big.extend(std::iter::repeat_n(b'x', 2 * 1024 * 1024));
    big.extend_from_slice(b"\nSubject: big\n\nbody\n");
    let out = sys.run_as(None, "qmail-inject", &["-a", "someone@example.test"], &big);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_dir(sys.root.join("queue/todo"))
            .unwrap()
            .count(),
        1
    );

    if !is_root() {
        skip("the full-disk case needs root to mount a tmpfs");
        return;
    }
    // a full disk: a tiny tmpfs as the queue
    let q = sys.root.join("queue");
    let st = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=256k", "tmpfs"])
        .arg(&q)
        .status()
        .unwrap();
    assert!(st.success(), "mount tmpfs");
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _u = Unmount(q.clone());
    let st = std::process::Command::new(sys.bin("qmail-install"))
        .arg("--root")
        .arg(&sys.root)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    let mut huge = b"Subject: too big\n\n".to_vec();
    huge.extend(std::iter::repeat_n(b'y', 1024 * 1024));
    let code = sys.queue("a@b.test", &["c@example.test"], &huge);
    assert_eq!(code, 53, "disk full is exit 53");
    assert!(empty("todo") && empty("intd") && empty("pid"));
    let messages: usize = (0..23)
        .map(|i| {
            std::fs::read_dir(q.join(format!("mess/{i}")))
                .unwrap()
                .count()
        })
        .sum();
    assert_eq!(messages, 0, "no half-written message left");
    // and a small message still goes in
    assert_eq!(
        sys.queue("a@b.test", &["c@example.test"], b"Subject: small\n\nok\n"),
        0
    );
}

/// A tiny deterministic pseudo-random sequence (no dependency needed).
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

#[test]
fn crash_safety_under_sigkill() {
    need_root!();
    let (_, home) = local_user("qtcrash");
    let mut sys = system();
    sys.start();
    let n: usize = std::env::var("CRASH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    let root = sys.root.clone();
    let injector = std::thread::spawn(move || {
        let mut accepted = Vec::new();
        for i in 0..n {
            let inj = System::attach(&root);
            let msg = format!("Subject: crash {i}\n\nmessage {i}\n");
            if inj.queue("a@remote.test", &["qtcrash@example.test"], msg.as_bytes()) == 0 {
                accepted.push(i);
            }
        }
        accepted
    });
    let mut rng = Lcg(std::process::id() as u64);
    let mut kills = 0;
    while !injector.is_finished() {
        // the point of the test: a kill at a random moment of the injection
        std::thread::sleep(Duration::from_millis(100 + rng.next(300)));
        // qmail-clean too: qmail-send dies when it loses it, with messages whose
        // todo/N is still their record (doc/todo-commit.md)
        let victim = match rng.next(4) {
            0 => "qmail-send",
            1 => "qmail-lspawn",
            2 => "qmail-clean",
            _ => "qmail-local",
        };
        for pid in pids_of(&sys.bin(victim)) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), Signal::SIGKILL);
            kills += 1;
        }
        restart_if_dead(&mut sys);
    }
    let accepted = injector.join().unwrap();
    assert!(kills > 0, "the crash test killed nothing");
    assert!(
        accepted.len() >= n * 9 / 10,
        "only {} of {n} injections accepted",
        accepted.len()
    );
    let deadline = Instant::now()
        + Duration::from_secs(
            std::env::var("CRASH_WAIT")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(180),
        );
    let (missing, dups) = loop {
        restart_if_dead(&mut sys);
        sys.signal(Signal::SIGALRM);
        // poll interval: the loop waits for the state below, up to `deadline`
        std::thread::sleep(Duration::from_millis(500));
        let (missing, dups) = crash_tally(&home.join("Maildir"), &accepted);
        if missing.is_empty() || Instant::now() > deadline {
            break (missing, dups);
        }
    };
    eprintln!(
        "crash test: {} accepted, {kills} processes killed, {dups} duplicate deliveries",
        accepted.len()
    );
    if !missing.is_empty() {
        let log = sys.log_text();
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        eprintln!(
            "log tail:\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
        for d in ["todo", "intd", "info/0", "local/0", "bounce", "pid"] {
            eprintln!(
                "queue/{d}: {}",
                std::fs::read_dir(sys.root.join("queue").join(d))
                    .map(|r| r.count())
                    .unwrap_or(0)
            );
        }
        let ps = std::process::Command::new("ps")
            .args(["-eo", "pid,ppid,user,stat,wchan:24,args"])
            .output()
            .unwrap();
        let root = sys.root.display().to_string();
        for l in String::from_utf8_lossy(&ps.stdout)
            .lines()
            .filter(|l| l.contains(&root))
        {
            eprintln!("{l}");
        }
    }
    assert!(
        missing.is_empty(),
        "lost {} acknowledged messages: {:?}",
        missing.len(),
        &missing[..missing.len().min(20)]
    );
}

fn restart_if_dead(sys: &mut System) {
    if !sys.send_alive() {
        sys.kill();
        // the old spawners exit on their pipes' EOF; a new qmail-start must not meet them
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
fn users_assign_and_virtual_domains() {
    need_root!();
    let (uid, home) = local_user("qtv");
    write_owned(&home.join(".qmail-default"), "./Maildir/\n", uid);
    let gid = nix::unistd::User::from_name("qtv")
        .unwrap()
        .unwrap()
        .gid
        .as_raw();
    let mut sys = system();
    std::fs::write(
        sys.root.join("users/assign"),
        format!("+vbox-:qtv:{uid}:{gid}:{}:-::\n.\n", home.display()),
    )
    .unwrap();
    let out = sys.run_as(None, "qmail-newu", &[], b"");
    assert!(
        out.status.success(),
        "qmail-newu: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    sys.control("virtualdomains", "virt.test:vbox\n");
    sys.start();
    assert_eq!(
        sys.queue(
            "a@remote.test",
            &["Info@virt.test"],
            b"Subject: virtual\n\nbody\n"
        ),
        0
    );
    let got = wait_maildir(&home.join("Maildir"), 1, 20);
    assert!(
        got[0].contains("Delivered-To: vbox-Info@virt.test\n"),
        "{}",
        got[0]
    );
    // a syntax error in assign is refused and leaves users/cdb alone
    std::fs::write(sys.root.join("users/assign"), "=broken\n.\n").unwrap();
    let out = sys.run_as(None, "qmail-newu", &[], b"");
    assert_eq!(out.status.code(), Some(111));
    assert!(sys.root.join("users/cdb").is_file());
}

#[test]
fn queue_inspection_tools() {
    let sys = system();
    assert_eq!(
        sys.queue(
            "a@b.test",
            &["c@example.test"],
            b"Subject: waiting\n\nbody\n"
        ),
        0
    );
    let out = sys.run_as(None, "qmail-qstat", &[], b"");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "messages in queue: 1\nmessages in queue but not yet preprocessed: 1\n"
    );
    let out = sys.run_as(None, "qmail-showctl", &[], b"");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("me: mx.example.test\n") && text.contains("concurrencylocal: (default) 10\n"),
        "{text}"
    );
}

#[test]
fn qmail_qread_lists_preprocessed_messages() {
    need_root!();
    let (uid, home) = local_user("qtq");
    write_owned(&home.join(".qmail-hold"), "|exit 111\n", uid);
    let mut sys = system();
    sys.start();
    assert_eq!(
        sys.queue(
            "a@remote.test",
            &["qtq-hold@example.test", "qtq@example.test"],
            b"Subject: held\n\nbody\n"
        ),
        0
    );
    sys.wait_log("deferral", 20);
    wait_maildir(&home.join("Maildir"), 1, 20);
    // qmail-send marks the delivered recipient done in the queue after logging it
    let text = wait_until("qmail-qread to show the done recipient", 20, || {
        let out = sys.run_as(None, "qmail-qread", &[], b"");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.contains("  done\tlocal\tqtq@example.test\n")
            .then_some(text)
    });
    assert!(text.contains("  <a@remote.test> \n"), "{text}");
    assert!(text.contains("\tlocal\tqtq-hold@example.test\n"), "{text}");
    assert!(text.contains("  done\tlocal\tqtq@example.test\n"), "{text}");
}

#[test]
fn queuelifetime_turns_deferrals_into_a_bounce() {
    need_root!();
    let (uid, home) = local_user("qtl");
    write_owned(&home.join(".qmail-never"), "|exit 111\n", uid);
    let mut sys = system();
    sys.control("queuelifetime", "1\n");
    sys.start();
    assert_eq!(
        sys.queue(
            "qtl@example.test",
            &["qtl-never@example.test"],
            b"Subject: old\n\nbody\n"
        ),
        0
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while maildir_new(&home.join("Maildir")).is_empty() {
        assert!(Instant::now() < deadline, "no bounce: {}", sys.log_text());
        // the queue lifetime is 1 s: each ALRM a second later finds the message older
        std::thread::sleep(Duration::from_millis(1100));
        sys.signal(Signal::SIGALRM);
    }
    let got = wait_maildir(&home.join("Maildir"), 1, 5);
    assert!(
        got[0].contains("I'm not going to try again; this message has been in the queue too long."),
        "{}",
        got[0]
    );
}

#[test]
fn hup_rereads_locals() {
    need_root!();
    let (_, home) = local_user("qth");
    let mut sys = system();
    sys.control("smtproutes", ":127.0.0.1:1\n");
    sys.start();
    std::fs::write(
        sys.root.join("control/locals"),
        "mx.example.test\nexample.test\nlater.test\n",
    )
    .unwrap();
    sys.signal(Signal::SIGHUP);
    sys.wait_log("reread control files", 10);
    assert_eq!(
        sys.queue(
            "a@remote.test",
            &["qth@later.test"],
            b"Subject: hup\n\nbody\n"
        ),
        0
    );
    let got = wait_maildir(&home.join("Maildir"), 1, 20);
    assert!(
        got[0].contains("Delivered-To: qth@later.test"),
        "{}",
        got[0]
    );
}
