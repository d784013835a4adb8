//! End to end: the programs started per message begin through `qsys::lean_main!`
//! (crates/qsys/src/start.rs, issue 13) and keep what std's start gave them. Under
//! strace, each program started with descriptors 0, 1 and 2 closed reopens them on
//! /dev/null before anything else, ignores SIGPIPE (a write to a gone reader is EPIPE,
//! not a death) and never reads /proc/self/maps (std's stack-guard probe). A program
//! they start or exec still gets SIGPIPE's default action, as with std's start.
//! Needs `cargo build --workspace --bins` first, and strace.

use std::path::Path;
use std::process::{Command, Stdio};

/// Every program started per connection or per message that starts through lean_main!.
const LEAN: [&str; 11] = [
    "qmail-smtpd",
    "qmail-queue",
    "qmail-local",
    "qmail-inject",
    "sendmail",
    "qmail-popup",
    "qmail-pop3d",
    "qmail-remote",
    "rblsmtpd",
    "qmail-qfilter",
    "qmail-scan",
];

/// strace's record of `prog` started by a shell that closed fds 0-2 and exec'ed it
/// (empty environment, no arguments: a do-nothing start).
fn trace_closed_start(prog: &Path, out: &Path) -> String {
    let status = Command::new("strace")
        .arg("-o")
        .arg(out)
        .args(["-e", "trace=openat,open,rt_sigaction,execve"])
        .args(["/bin/sh", "-c", r#"exec "$0" 0<&- 1>&- 2>&-"#])
        .arg(prog)
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run strace");
    assert!(status.code().is_some(), "strace died: {status}");
    let text = std::fs::read_to_string(out).expect("strace output");
    // Only what the program did: the lines after its execve.
    let exec = format!("execve(\"{}\"", prog.display());
    match text.find(&exec) {
        // strace pads before " = RESULT": one space between words.
        Some(at) => text[at..]
            .split(' ')
            .filter(|w| !w.is_empty())
            .collect::<Vec<_>>()
            .join(" "),
        None => panic!("no exec of {} in strace output:\n{text}", prog.display()),
    }
}

#[test]
fn closed_standard_fds_are_reopened_and_sigpipe_ignored() {
    e2e::need_tool!("strace", "strace");
    e2e::need_tool!("strace", "strace");
    let dir = e2e::build_dir();
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut bad = Vec::new();
    for name in LEAN {
        let trace = trace_closed_start(&dir.join(name), &tmp.path().join(name));
        for fd in 0..3 {
            let reopen = format!("openat(AT_FDCWD, \"/dev/null\", O_RDWR) = {fd}");
            if !trace.contains(&reopen) {
                bad.push(format!("{name}: fd {fd} not reopened on /dev/null"));
            }
        }
        if !trace.contains("rt_sigaction(SIGPIPE, {sa_handler=SIG_IGN") {
            bad.push(format!("{name}: SIGPIPE not ignored"));
        }
        if trace.contains("/proc/self/maps") {
            bad.push(format!(
                "{name}: reads /proc/self/maps (std's start, not lean_main!)"
            ));
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

/// The SigIgn mask of /proc/PID/status has bit 12 set when SIGPIPE (13) is ignored.
fn sigpipe_ignored(status: &str) -> Option<bool> {
    let mask = status.lines().find_map(|l| l.strip_prefix("SigIgn:"))?;
    let bits = u64::from_str_radix(mask.trim(), 16).ok()?;
    Some(bits & (1 << (libc::SIGPIPE - 1)) != 0)
}

#[test]
fn programs_they_start_get_sigpipe_default() {
    let dir = e2e::build_dir();
    let tmp = tempfile::tempdir().expect("tempdir");
    let seen = tmp.path().join("status");
    // Stands in for qmail-queue: records its signal dispositions, accepts the message.
    let queue = tmp.path().join("queue.sh");
    std::fs::write(
        &queue,
        format!(
            "#!/bin/sh\ncat /proc/self/status > {}\ncat >/dev/null\ncat <&1 >/dev/null\nexit 0\n",
            seen.display()
        ),
    )
    .expect("write queue.sh");
    std::fs::set_permissions(&queue, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    for prog in ["qmail-inject", "sendmail"] {
        let _ = std::fs::remove_file(&seen);
        let mut child = Command::new(dir.join(prog))
            .arg("someone@example.org")
            .env_clear()
            .env("QMAILQUEUE", &queue)
            .env("QMAILHOST", "example.org")
            .env("QMAILUSER", "me")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        use std::io::Write;
        let _ = child
            .stdin
            .take()
            .expect("stdin")
            .write_all(b"Subject: x\n\nhello\n");
        let out = child.wait_with_output().expect("wait");
        let status = std::fs::read_to_string(&seen).unwrap_or_default();
        assert_eq!(
            sigpipe_ignored(&status),
            Some(false),
            "{prog}: the queue program it started has SIGPIPE ignored or did not run ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn the_program_rblsmtpd_execs_gets_sigpipe_default() {
    let dir = e2e::build_dir();
    let tmp = tempfile::tempdir().expect("tempdir");
    let seen = tmp.path().join("status");
    let out = Command::new(dir.join("rblsmtpd"))
        .args(["/bin/sh", "-c", r#"cat /proc/self/status > "$0""#])
        .arg(&seen)
        .env_clear()
        .env("TCPREMOTEIP", "127.0.0.1")
        .env("RBLSMTPD", "")
        .stdin(Stdio::null())
        .output()
        .expect("run rblsmtpd");
    let status = std::fs::read_to_string(&seen).unwrap_or_default();
    assert_eq!(
        sigpipe_ignored(&status),
        Some(false),
        "rblsmtpd: the program it exec'ed has SIGPIPE ignored or did not run ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}
