//! End-to-end checks of qmail-lspawn's in-process local delivery (issue 13, doc/
//! delivery.md): the forked child that runs the delivery code instead of exec'ing
//! qmail-local holds none of lspawn's descriptors, gives a `|program` the environment
//! an exec'ed qmail-local gave it (lspawn's own plus qmail-command(8)'s variables),
//! runs as the recipient (uid, gid, one group) before it touches the user's files, and
//! a SIGKILL of it mid-delivery defers the message, which a retry then delivers once.

use e2e::*;
use nix::sys::signal::Signal;
use std::collections::BTreeSet;

const ME: &str = "mx.example.test";
const DOMAIN: &str = "example.test";

/// The process ids of qmail-lspawn's delivery children (forked copies of qmail-lspawn
/// whose parent is qmail-lspawn).
fn delivery_children(sys: &System) -> Vec<u32> {
    let lspawn = pids_of(&sys.bin("qmail-lspawn"));
    lspawn
        .iter()
        .copied()
        .filter(|p| parent_of(*p).is_some_and(|pp| lspawn.contains(&pp)))
        .collect()
}

/// The `Name:\tv1 v2 ...` fields of a /proc status text.
fn status_field(status: &str, name: &str) -> Vec<String> {
    status
        .lines()
        .find(|l| l.starts_with(name))
        .map(|l| {
            l[name.len()..]
                .split_whitespace()
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn delivery_child_has_no_lspawn_descriptors_and_qmail_locals_environment() {
    need_root!();
    let (uid, home) = local_user("qtfd");
    let gid = nix::unistd::User::from_name("qtfd")
        .unwrap()
        .unwrap()
        .gid
        .as_raw();
    // The program records its descriptors, its environment, its ids and the ids of
    // its parent (the delivery child itself).
    write_owned(
        &home.join(".qmail-probe"),
        "|ls -l /proc/self/fd > prog-fds; env > prog-env; id -u > prog-uid; id -G > prog-groups; cat /proc/$PPID/status > prog-parent\n",
        uid,
    );
    let mut sys = System::install(ME, &[DOMAIN]);
    sys.start();
    assert_eq!(
        sys.queue(
            "a@remote.test",
            &["qtfd-probe@example.test"],
            b"Subject: p\n\nx\n"
        ),
        0
    );
    sys.wait_log("0+0+1", 30);

    // Descriptors: 0 the message, 1 the redirect, 2 the report pipe, and only ls's own
    // directory handle besides.
    let fds = std::fs::read_to_string(home.join("prog-fds")).unwrap();
    let mut seen = BTreeSet::new();
    for line in fds.lines().filter(|l| l.contains(" -> ")) {
        let (left, target) = line.split_once(" -> ").unwrap();
        let fd: u32 = left.split_whitespace().last().unwrap().parse().unwrap();
        seen.insert(fd);
        match fd {
            0 => assert!(target.contains("/queue/mess/"), "fd 0: {target}"),
            1 => assert!(target.ends_with("prog-fds"), "fd 1: {target}"),
            2 => assert!(target.starts_with("pipe:"), "fd 2: {target}"),
            _ => assert!(
                target.starts_with("/proc/"),
                "stray fd {fd}: {target}\n{fds}"
            ),
        }
    }
    assert!(seen.is_superset(&BTreeSet::from([0, 1, 2])), "{fds}");

    // Environment: qmail-lspawn's own, plus qmail-command(8)'s variables, nothing else.
    let lspawn = pids_of(&sys.bin("qmail-lspawn"));
    assert_eq!(lspawn.len(), 1, "one qmail-lspawn between deliveries");
    let environ = std::fs::read(format!("/proc/{}/environ", lspawn[0])).unwrap();
    let mut want: BTreeSet<String> = environ
        .split(|&b| b == 0)
        .filter(|v| !v.is_empty())
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect();
    // The shell adds PWD, SHLVL and `_` on its own.
    let shell_own = ["PWD=", "SHLVL=", "_=", "OLDPWD="];
    let env = std::fs::read_to_string(home.join("prog-env")).unwrap();
    let mut got = BTreeSet::new();
    for line in env.lines() {
        if line.contains('=') && !shell_own.iter().any(|p| line.starts_with(p)) {
            got.insert(line.to_string());
        }
    }
    for name in [
        "USER",
        "HOME",
        "LOCAL",
        "HOST",
        "RECIPIENT",
        "SENDER",
        "NEWSENDER",
        "EXT",
        "EXT2",
        "EXT3",
        "EXT4",
        "HOST2",
        "HOST3",
        "HOST4",
        "DEFAULT",
    ] {
        let present = got.iter().any(|l| l.starts_with(&format!("{name}=")));
        assert!(present || name == "DEFAULT", "{name} missing:\n{env}");
    }
    want.retain(|v| !got.contains(v));
    assert!(want.is_empty(), "lspawn's variables lost: {want:?}\n{env}");
    assert!(got.contains("USER=qtfd"), "{env}");
    assert!(got.contains("RECIPIENT=qtfd-probe@example.test"), "{env}");
    assert!(got.contains(&format!("HOME={}", home.display())), "{env}");

    // Ids: the program and the delivery child that started it are the recipient's.
    let read = |n: &str| std::fs::read_to_string(home.join(n)).unwrap();
    assert_eq!(read("prog-uid").trim(), uid.to_string());
    assert_eq!(read("prog-groups").trim(), gid.to_string());
    let parent = read("prog-parent");
    let u = uid.to_string();
    let g = gid.to_string();
    assert!(
        status_field(&parent, "Uid:").iter().all(|x| *x == u),
        "{parent}"
    );
    assert!(
        status_field(&parent, "Gid:").iter().all(|x| *x == g),
        "{parent}"
    );
    assert_eq!(status_field(&parent, "Groups:"), [g], "{parent}");
    assert_eq!(status_field(&parent, "Name:"), ["qmail-lspawn"], "{parent}");
    sys.stop();
}

#[test]
fn sigkill_of_the_delivery_child_defers_and_the_retry_delivers_once() {
    need_root!();
    let (uid, home) = local_user("qtkill");
    // First attempt: mark, then block in a program; the retry finds the mark and goes on.
    write_owned(
        &home.join(".qmail-slow"),
        "|if test -f prog-again; then exit 0; fi; touch prog-again; exec sleep 120\n./Maildir/\n",
        uid,
    );
    let mut sys = System::install(ME, &[DOMAIN]);
    sys.start();
    assert_eq!(
        sys.queue(
            "a@remote.test",
            &["qtkill-slow@example.test"],
            b"Subject: k\n\nx\n"
        ),
        0
    );
    let child = wait_until("the delivery child", 30, || {
        let c = delivery_children(&sys);
        (home.join("prog-again").exists() && c.len() == 1).then(|| c[0])
    });
    // The child and the program it waits for, which holds the report pipe open.
    let program: Vec<u32> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse::<u32>().ok())
        .filter(|p| parent_of(*p) == Some(child))
        .collect();
    for pid in std::iter::once(child).chain(program) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), Signal::SIGKILL);
    }
    // qmail-send logs the report text through qmail's logsafe: spaces become `_`
    sys.wait_log("deferral: qmail-local_crashed.", 30);
    assert!(maildir_new(&home.join("Maildir")).is_empty());
    let got = wait_until("the retried delivery", 60, || {
        sys.signal(Signal::SIGALRM);
        std::thread::sleep(std::time::Duration::from_millis(200));
        let m = maildir_new(&home.join("Maildir"));
        (!m.is_empty()).then_some(m)
    });
    sys.wait_log("did_1+0+1", 30);
    assert_eq!(got.len(), 1);
    assert_eq!(
        maildir_new(&home.join("Maildir")).len(),
        1,
        "delivered once"
    );
    sys.stop();
}
