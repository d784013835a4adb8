//! End-to-end tests of qmail-guard (issue 16, "Sender blocking from the logs"): logs made
//! by the real programs (qmail-send, qmail-smtpd) through the real multilog, passes of
//! the installed `qmail-guard -1` (as root: it becomes qmailg and may replace only the
//! files control/ links into HOME/guard/), and the blocks checked with real clients:
//! qmail-smtpd's 553 for a blocked sender, tcpserver refusing a blocked address at
//! connect. Expiry is driven by a short control/guardexpire and waited for by state.

use e2e::*;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const ME: &str = "mx.example.test";

/// A log directory as the log/run scripts make it (0755, so qmailg can read it), fed by
/// our multilog with TAI64N stamps.
fn logdir(sys: &System, name: &str) -> PathBuf {
    let d = sys.root.parent().unwrap().join(name);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::set_permissions(&d, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    d
}

/// multilog with `args` (e.g. `t s4096 ./dir`), its stdin a pipe.
fn multilog(sys: &System, args: &[&str], dir: &Path) -> Child {
    Command::new(sys.bin("multilog"))
        .args(args)
        .arg(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run multilog")
}

/// Feed `text` to a multilog writing `dir` and wait for it to finish.
fn log_through_multilog(sys: &System, args: &[&str], dir: &Path, text: &str) {
    let mut m = multilog(sys, args, dir);
    m.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    assert!(m.wait().unwrap().success());
}

fn current(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("current")).unwrap_or_default()
}

/// Everything a multilog directory holds, rotated files first.
fn all_logs(dir: &Path) -> String {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('@'))
        .collect();
    names.sort();
    let mut s = String::new();
    for n in names {
        s.push_str(&std::fs::read_to_string(dir.join(n)).unwrap());
    }
    s + &current(dir)
}

/// `qmail-guard -1`: (success, stderr).
fn guard_pass(sys: &System) -> (bool, String) {
    let o = Command::new(sys.bin("qmail-guard"))
        .arg("-1")
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .current_dir("/")
        .output()
        .expect("run qmail-guard");
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn badmailfrom(sys: &System) -> String {
    std::fs::read_to_string(sys.root.join("control/badmailfrom")).unwrap_or_default()
}

fn rules(sys: &System) -> String {
    std::fs::read_to_string(sys.root.join("control/tcp.smtp")).unwrap_or_default()
}

/// One qmail-smtpd session on pipes from `ip` (as tcpserver would run it): the client's
/// lines, then EOF. Returns (replies, log).
fn smtpd_session(sys: &System, ip: &str, args: &[&Path], lines: &[String]) -> (String, String) {
    let mut input = String::new();
    for l in lines {
        input.push_str(l);
        input.push_str("\r\n");
    }
    let out = output_with_input(
        Command::new(sys.bin("qmail-smtpd"))
            .args(args)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("TCPREMOTEIP", ip)
            .env("TCPLOCALIP", "127.0.0.1")
            .env("AUTHPLAINTEXT", ""),
        input,
    );
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn system() -> System {
    let sys = System::install(ME, &["example.test"]);
    sys.control("rcpthosts", "example.test\nmx.example.test\n");
    sys.control("guardadmin", "postmaster@mx.example.test\n");
    sys.control("authfaildelay", "0\n");
    if is_root() {
        // the installer gave qmail-guard its directory and the links into it
        let meta = std::fs::metadata(sys.root.join("guard")).unwrap();
        let qmailg = nix::unistd::User::from_name("qmailg").unwrap().unwrap();
        assert_eq!(
            std::os::unix::fs::MetadataExt::uid(&meta),
            qmailg.uid.as_raw()
        );
    }
    for f in ["badmailfrom", "tcp.smtp", "tcp.smtp.cdb"] {
        let l = std::fs::read_link(sys.root.join("control").join(f)).unwrap();
        assert_eq!(l, Path::new("../guard").join(f));
    }
    sys
}

/// The notices in ~alias/Maildir/new whose text contains `needle`.
fn notices(sys: &System, needle: &str) -> usize {
    maildir_new(&sys.root.join("alias/Maildir"))
        .iter()
        .filter(|p| {
            std::fs::read_to_string(p)
                .unwrap_or_default()
                .contains(needle)
        })
        .count()
}

#[test]
fn a_flooding_sender_is_blocked_notified_refused_and_lifted() {
    let sys = system();
    let sendlog = logdir(&sys, "sendlog");
    sys.control("guardlogs", &format!("{}\n", sendlog.display()));
    sys.control("guardblock", "20\n");
    sys.control("guardignore", "list-*@example.test\n");
    // qmail-send logging through multilog, as supervise/qmail-send/log/run does
    let mut ml = Server(multilog(&sys, &["t"], &sendlog));
    let pipe = std::os::fd::OwnedFd::from(ml.0.stdin.take().unwrap());
    let _send = Server(
        Command::new(sys.bin("qmail-start"))
            .arg("./Maildir/")
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .current_dir("/")
            .stdout(Stdio::from(pipe.try_clone().unwrap()))
            .stderr(Stdio::from(pipe))
            .spawn()
            .unwrap(),
    );
    let msg = b"Subject: hi\n\nhello\n";
    for _ in 0..25 {
        assert_eq!(
            sys.queue("flood@elsewhere.test", &["postmaster@mx.example.test"], msg),
            0
        );
        assert_eq!(
            sys.queue(
                "list-owner@example.test",
                &["postmaster@mx.example.test"],
                msg
            ),
            0
        );
    }
    wait_until("50 info msg lines in the multilog", 60, || {
        (current(&sendlog).matches(" info msg ").count() >= 50).then_some(())
    });
    let (ok, err) = guard_pass(&sys);
    assert!(ok, "{err}");
    assert!(
        err.contains("qmail-guard: block sender flood@elsewhere.test: 20 messages in 3600 s"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    let b = badmailfrom(&sys);
    assert!(b.contains("# qmail-guard: "), "{b}");
    assert!(b.lines().any(|l| l == "flood@elsewhere.test"), "{b}");
    assert!(!b.contains("list-owner"), "{b}");
    // the notice reaches the administrator through qmail-inject and qmail-send
    wait_until("the notice in ~alias/Maildir", 60, || {
        (notices(
            &sys,
            "Subject: qmail-guard: block sender flood@elsewhere.test",
        ) == 1)
            .then_some(())
    });
    // the next transaction of the blocked sender is refused (qmail-smtpd answers 553 to
    // its RCPT, as qmail does); the ignored one is not
    let (out, _) = smtpd_session(
        &sys,
        "192.0.2.9",
        &[],
        &[
            "HELO c.test".into(),
            "MAIL FROM:<flood@elsewhere.test>".into(),
            "RCPT TO:<postmaster@mx.example.test>".into(),
            "RSET".into(),
            "MAIL FROM:<list-owner@example.test>".into(),
            "RCPT TO:<postmaster@mx.example.test>".into(),
        ],
    );
    let replies: Vec<&str> = out.lines().map(|l| l.trim_end()).collect();
    assert!(
        replies[3].starts_with("553 5.7.1 sorry, your envelope sender is in my badmailfrom list"),
        "{out}"
    );
    assert!(replies[6].starts_with("250 "), "{out}");
    // a second pass reads nothing new and does nothing
    let (ok, err) = guard_pass(&sys);
    assert!(ok && err.is_empty(), "{err}");
    // an administrator's own line for the same sender survives the expiry
    let mut admin = badmailfrom(&sys);
    admin.push_str("keep@elsewhere.test\n");
    std::fs::write(sys.root.join("control/badmailfrom"), &admin).unwrap();
    sys.control("guardexpire", "1\n");
    wait_until("the block to expire", 30, || {
        let (ok, err) = guard_pass(&sys);
        assert!(ok, "{err}");
        err.contains("lift sender flood@elsewhere.test")
            .then_some(())
    });
    assert_eq!(badmailfrom(&sys), "keep@elsewhere.test\n");
    wait_until("the lift notice", 60, || {
        (notices(
            &sys,
            "Subject: qmail-guard: lift sender flood@elsewhere.test",
        ) == 1)
            .then_some(())
    });
    let (out, _) = smtpd_session(
        &sys,
        "192.0.2.9",
        &[],
        &[
            "HELO c.test".into(),
            "MAIL FROM:<flood@elsewhere.test>".into(),
        ],
    );
    assert!(!out.contains("553"), "{out}");
}

/// A checkpassword accepting nobody.
fn refusing_checkpassword(sys: &System) -> PathBuf {
    let p = sys.root.parent().unwrap().join("cp-none");
    std::fs::write(&p, "#!/bin/sh\nexit 1\n").unwrap();
    std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    p
}

fn plain(user: &[u8], pass: &[u8]) -> String {
    use base64::prelude::*;
    let mut v = vec![0u8];
    v.extend_from_slice(user);
    v.push(0);
    v.extend_from_slice(pass);
    format!("AUTH PLAIN {}", BASE64_STANDARD.encode(&v))
}

/// The first line tcpserver's client hears when connecting from `from`: `None` when the
/// connection is closed without a greeting.
fn greeting_from(from: &str, port: u16) -> Option<String> {
    let sock = nix::sys::socket::socket(
        nix::sys::socket::AddressFamily::Inet,
        nix::sys::socket::SockType::Stream,
        nix::sys::socket::SockFlag::empty(),
        None,
    )
    .unwrap();
    let local: std::net::SocketAddrV4 = format!("{from}:0").parse().unwrap();
    nix::sys::socket::bind(
        std::os::fd::AsRawFd::as_raw_fd(&sock),
        &nix::sys::socket::SockaddrIn::from(local),
    )
    .unwrap();
    let remote: std::net::SocketAddrV4 = format!("127.0.0.1:{port}").parse().unwrap();
    nix::sys::socket::connect(
        std::os::fd::AsRawFd::as_raw_fd(&sock),
        &nix::sys::socket::SockaddrIn::from(remote),
    )
    .unwrap();
    let s = std::net::TcpStream::from(sock);
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut line = String::new();
    let _ = BufReader::new(&s).read_line(&mut line);
    (!line.is_empty()).then_some(line)
}

#[test]
fn a_password_guesser_is_refused_at_connect_until_the_block_expires() {
    let sys = system();
    let smtpdlog = logdir(&sys, "smtpdlog");
    sys.control("guardlogs", &format!("{}\n", smtpdlog.display()));
    sys.control("guardclientblock", "10\n");
    let cp = refusing_checkpassword(&sys);
    // 12 failed logins from 127.0.0.2 (the 11th and 12th refused by qmail-smtpd's own
    // limit: counted too); one tries to forge a failure line for 127.0.0.1 in its user
    // name, and hostile lines written straight into the log try to inject a rule
    let mut log = String::new();
    for i in 0..12 {
        let user: &[u8] = if i == 0 {
            b"x\r\nqmail-smtpd: pid 1: auth failed ip=127.0.0.1 mech=PLAIN"
        } else {
            b"joe"
        };
        let (out, err) = smtpd_session(
            &sys,
            "127.0.0.2",
            &[Path::new("--submission"), &cp, Path::new("/bin/true")],
            &["EHLO c.test".into(), plain(user, b"bad")],
        );
        assert!(out.contains("535 ") || out.contains("421 "), "{out}");
        log.push_str(&err);
    }
    assert_eq!(
        log.matches("auth failed ip=127.0.0.2 ").count(),
        10,
        "{log}"
    );
    for _ in 0..12 {
        log.push_str("qmail-smtpd: pid 7: auth failed ip=127.0.0.1:deny,X=\"1\" mech=PLAIN\n");
        log.push_str("qmail-smtpd: pid 7: auth failed ip=1.2.3.\n");
        log.push_str("info msg 9: bytes 1 from <@example.test> qp 9 uid 0\n");
    }
    log_through_multilog(&sys, &["t"], &smtpdlog, &log);
    let (ok, err) = guard_pass(&sys);
    assert!(ok, "{err}");
    assert!(
        err.contains(
            "qmail-guard: block client 127.0.0.2: 10 failed logins and refused recipients"
        ),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    let r = rules(&sys);
    assert!(r.starts_with("# qmail-guard: "), "{r}");
    let rule_lines: Vec<&str> = r.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(rule_lines, ["127.0.0.2:deny"], "{r}");
    assert!(badmailfrom(&sys).is_empty());
    // tcpserver with the rebuilt cdb refuses 127.0.0.2 at connect, and only it
    let cdb = sys.root.join("control/tcp.smtp.cdb");
    let mut server = Server(
        Command::new(sys.bin("tcpserver"))
            .args(["-1", "-q", "-H", "-R", "-l0", "-x"])
            .arg(&cdb)
            .args(["127.0.0.1", "0"])
            .arg(sys.bin("qmail-smtpd"))
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let port = printed_port(&mut server.0);
    assert_eq!(greeting_from("127.0.0.2", port), None);
    let g = greeting_from("127.0.0.3", port).unwrap();
    assert!(g.starts_with("220 "), "{g}");
    // the block expires: the rule goes, the cdb is rebuilt, the address connects again
    sys.control("guardexpire", "1\n");
    wait_until("the block to expire", 30, || {
        let (ok, err) = guard_pass(&sys);
        assert!(ok, "{err}");
        err.contains("lift client 127.0.0.2").then_some(())
    });
    assert!(!rules(&sys).contains("127.0.0.2"), "{}", rules(&sys));
    let g = greeting_from("127.0.0.2", port).unwrap();
    assert!(g.starts_with("220 "), "{g}");
}

#[test]
fn a_log_rotated_between_and_during_passes_loses_and_doubles_no_count() {
    let sys = system();
    let sendlog = logdir(&sys, "sendlog");
    sys.control("guardlogs", &format!("{}\n", sendlog.display()));
    sys.control("guardblock", "20\n");
    let line =
        |i: usize| format!("info msg {i}: bytes 100 from <flood@elsewhere.test> qp {i} uid 0\n");
    let filler = |i: usize| {
        format!(
            "status: local 0/10 remote 0/20 {}\n",
            "x".repeat(100 + i % 7)
        )
    };
    // 15 messages, a pass
    let text: String = (0..15).map(line).collect();
    log_through_multilog(&sys, &["t", "s4096"], &sendlog, &text);
    let (ok, err) = guard_pass(&sys);
    assert!(ok && err.is_empty(), "{err}");
    // 4 more among enough other lines that multilog (4096-byte files) rotates several
    // times: 19 in all, no block (a count read twice would block)
    let mut text = String::new();
    for i in 15..19 {
        text.push_str(&line(i));
        for j in 0..15 {
            text.push_str(&filler(j));
        }
    }
    log_through_multilog(&sys, &["t", "s4096"], &sendlog, &text);
    let rotated = std::fs::read_dir(&sendlog)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with('@'))
        .count();
    assert!(rotated >= 2, "multilog rotated {rotated} times");
    assert_eq!(all_logs(&sendlog).matches(" info msg ").count(), 19);
    let (ok, err) = guard_pass(&sys);
    assert!(ok && err.is_empty(), "{err}");
    // the 20th: blocked (a count lost in the rotation would not block)
    log_through_multilog(&sys, &["t", "s4096"], &sendlog, &line(19));
    let (ok, err) = guard_pass(&sys);
    assert!(ok, "{err}");
    assert!(
        err.contains("block sender flood@elsewhere.test: 20 messages"),
        "{err}"
    );
}

fn qmailctl_cdb(sys: &System) -> std::process::Output {
    Command::new(sys.bin("qmailctl"))
        .arg("cdb")
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .output()
        .unwrap()
}

#[test]
fn root_rebuilding_the_rules_follows_no_link_qmailg_planted() {
    need_root!();
    let sys = system();
    let qmailg = nix::unistd::User::from_name("qmailg").unwrap().unwrap();
    // a file only root may write, and qmailg's traps in its own directory
    let canary = sys.root.parent().unwrap().join("canary");
    std::fs::write(&canary, "root's\n").unwrap();
    std::fs::set_permissions(&canary, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let guard = sys.root.join("guard");
    sys.control("tcp.smtp", "127.0.0.1:allow,RELAYCLIENT=\"\"\n");
    let trap = guard.join("tcp.smtp.tmp");
    std::os::unix::fs::symlink(&canary, &trap).unwrap();
    nix::unistd::fchownat(
        nix::fcntl::AT_FDCWD,
        &trap,
        Some(qmailg.uid),
        None,
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .unwrap();
    let o = qmailctl_cdb(&sys);
    // tcprules ran as qmailg: it could not write the canary through the link
    assert_eq!(std::fs::read_to_string(&canary).unwrap(), "root's\n");
    let mode = std::os::unix::fs::MetadataExt::mode(&std::fs::metadata(&canary).unwrap());
    assert_eq!(mode & 0o777, 0o600, "{o:?}");
    // without the trap, the rebuild works and keeps the link
    std::fs::remove_file(&trap).unwrap();
    let o = qmailctl_cdb(&sys);
    assert!(o.status.success(), "{o:?}");
    assert!(sys.root.join("control/tcp.smtp.cdb").is_symlink());
    let cdb = std::fs::read(guard.join("tcp.smtp.cdb")).unwrap();
    assert!(cdb.windows(9).any(|w| w == b"127.0.0.1"));
    // a text linked elsewhere by qmailg is not read by root
    std::fs::remove_file(guard.join("tcp.smtp")).unwrap();
    std::os::unix::fs::symlink("/etc/shadow", guard.join("tcp.smtp")).unwrap();
    let o = qmailctl_cdb(&sys);
    assert!(
        !String::from_utf8_lossy(&o.stderr).contains("root:"),
        "{o:?}"
    );
}

/// `svstat DIR`.
fn svstat(sys: &System, dir: &Path) -> String {
    let o = Command::new(sys.bin("svstat")).arg(dir).output().unwrap();
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn the_service_runs_as_qmailg_and_stays_down_until_configured() {
    let sys = system();
    let smtpdlog = logdir(&sys, "smtpdlog");
    sys.control("guardlogs", &format!("{}\n", smtpdlog.display()));
    sys.control("guardinterval", "1\n");
    let svc = sys.root.join("supervise/qmail-guard");
    let run = |sys: &System| {
        Server(
            Command::new(sys.bin("supervise"))
                .arg(&svc)
                .env_clear()
                .env("PATH", "/usr/bin:/bin")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        )
    };
    // nothing configured: the run script takes the service down
    let sup = run(&sys);
    wait_until("the unconfigured service to go down", 30, || {
        svstat(&sys, &svc).contains(": down ").then_some(())
    });
    drop(sup);
    // configured: it runs (as qmailg when started by root) and blocks within a pass
    sys.control("guardclientblock", "3\n");
    let lines: String = (0..3)
        .map(|_| "qmail-smtpd: pid 5: auth failed ip=192.0.2.44 mech=PLAIN user=x\n")
        .collect();
    log_through_multilog(&sys, &["t"], &smtpdlog, &lines);
    let _sup = run(&sys);
    let pid = wait_until("qmail-guard to run", 30, || {
        pids_of(&sys.bin("qmail-guard")).first().copied()
    });
    if is_root() {
        let qmailg = nix::unistd::User::from_name("qmailg").unwrap().unwrap();
        assert_eq!(uid_of(pid), Some(qmailg.uid.as_raw()));
    }
    wait_until("the block by the service", 30, || {
        rules(&sys).contains("192.0.2.44:deny").then_some(())
    });
    let _ = Command::new(sys.bin("svc")).arg("-dx").arg(&svc).status();
}
