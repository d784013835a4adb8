//! End to end: the real `sendmail`, `qmail-inject` and `qmail-queue` programs installed
//! (as copies) into a temporary HOME, messages on stdin, and the queue files checked.
//! Needs `cargo build --bins -p qmail-queue -p qmail-inject -p sendmail` first.

use e2e::output_with_input;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn target_dir() -> PathBuf {
    // target/debug/deps/inject-XXXX -> target/debug
    let exe = std::env::current_exe().expect("current_exe");
    exe.parent()
        .and_then(Path::parent)
        .expect("target dir")
        .to_path_buf()
}

fn install() -> tempfile::TempDir {
    let home = tempfile::tempdir().expect("tempdir");
    let h = home.path();
    std::fs::create_dir_all(h.join("bin")).unwrap();
    for prog in ["qmail-inject", "sendmail", "qmail-queue"] {
        let src = target_dir().join(prog);
        assert!(
            src.is_file(),
            "{} is missing: run `cargo build --workspace --bins` (or -p {prog}) before this test",
            src.display()
        );
        std::fs::copy(&src, h.join("bin").join(prog)).unwrap();
    }
    std::fs::create_dir_all(h.join("control")).unwrap();
    for (f, v) in [
        ("me", "mx.example.org"),
        ("defaulthost", "example.org"),
        ("defaultdomain", "example.org"),
        ("idhost", "id.example.org"),
    ] {
        std::fs::write(h.join("control").join(f), format!("{v}\n")).unwrap();
    }
    let q = h.join("queue");
    for d in ["pid", "intd", "todo", "bounce", "lock"] {
        std::fs::create_dir_all(q.join(d)).unwrap();
    }
    for d in ["mess", "info", "local", "remote"] {
        for i in 0..23 {
            std::fs::create_dir_all(q.join(d).join(i.to_string())).unwrap();
        }
    }
    home
}

fn run(home: &Path, prog: &str, args: &[&str], env: &[(&str, &str)], input: &[u8]) -> Output {
    let mut cmd = Command::new(home.join("bin").join(prog));
    cmd.args(args)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("USER", "tester")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn");
    let mut stdin = child.stdin.take().unwrap();
    let _ = stdin.write_all(input);
    drop(stdin);
    child.wait_with_output().expect("wait")
}

struct Queued {
    sender: String,
    recipients: Vec<String>,
    message: String,
}

fn queued(home: &Path) -> Vec<Queued> {
    let q = home.join("queue");
    let mut out = Vec::new();
    for e in std::fs::read_dir(q.join("todo")).unwrap() {
        let e = e.unwrap();
        let id: u64 = e.file_name().to_string_lossy().parse().unwrap();
        let env = std::fs::read(e.path()).unwrap();
        let mut sender = String::new();
        let mut recipients = Vec::new();
        for rec in env.split(|&c| c == 0).filter(|r| !r.is_empty()) {
            let text = String::from_utf8_lossy(&rec[1..]).into_owned();
            match rec[0] {
                b'F' => sender = text,
                b'T' => recipients.push(text),
                _ => {}
            }
        }
        let mess = std::fs::read(
            q.join("mess")
                .join((id % 23).to_string())
                .join(id.to_string()),
        )
        .unwrap();
        out.push(Queued {
            sender,
            recipients,
            message: String::from_utf8_lossy(&mess).into_owned(),
        });
    }
    out
}

fn one(home: &Path) -> Queued {
    let mut v = queued(home);
    assert_eq!(v.len(), 1, "expected exactly one queued message");
    v.remove(0)
}

fn ok(o: &Output) {
    assert!(
        o.status.success(),
        "exit {:?}, stderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stderr)
    );
}

fn header_of(msg: &str) -> &str {
    msg.split("\n\n").next().unwrap_or("")
}

#[test]
fn sendmail_t_i_takes_recipients_from_the_header() {
    let home = install();
    let msg = b"To: Alice <alice@example.org>, bob\nCc: carol@other.test\nBcc: secret@example.org\nSubject: hello\n\nbody line\n";
    let o = run(home.path(), "sendmail", &["-t", "-i"], &[], msg);
    ok(&o);
    let m = one(home.path());
    assert_eq!(m.sender, "tester@example.org");
    let mut r = m.recipients.clone();
    r.sort();
    assert_eq!(
        r,
        vec![
            "alice@example.org",
            "bob@example.org",
            "carol@other.test",
            "secret@example.org"
        ]
    );
    let head = header_of(&m.message);
    assert!(head.starts_with("Received: (qmail "), "{head}");
    assert!(!head.contains("Bcc") && !head.contains("secret"), "{head}");
    assert!(head.contains("\nDate: "), "{head}");
    assert!(head.contains(".qmail@id.example.org>\n"), "{head}");
    assert!(head.contains("\nFrom: tester@example.org\n"), "{head}");
    assert!(
        head.contains("\nTo: Alice <alice@example.org>, bob@example.org\n"),
        "{head}"
    );
    assert!(head.contains("\nSubject: hello"), "{head}");
    assert!(m.message.ends_with("\n\nbody line\n"));
}

#[test]
fn git_send_email_style() {
    let home = install();
    let msg = b"From: Dev <dev@example.net>\nTo: list@example.org\nSubject: [PATCH] x\n\npatch\n";
    let o = run(
        home.path(),
        "sendmail",
        &[
            "-i",
            "-f",
            "dev@example.net",
            "--",
            "list@example.org",
            "cc@y",
        ],
        &[("NAME", "X")],
        msg,
    );
    ok(&o);
    let m = one(home.path());
    assert_eq!(m.sender, "dev@example.net");
    assert_eq!(m.recipients, vec!["list@example.org", "cc@y.example.org"]);
    assert!(
        m.message
            .contains("\nFrom: Dev <dev@example.net>\nTo: list@example.org\n")
    );
}

#[test]
fn sendmail_f_sets_the_from_field() {
    let home = install();
    let o = run(
        home.path(),
        "sendmail",
        &["-fsender@site.test", "rcpt@example.org"],
        &[("MAILNAME", "Nobody")],
        b"Subject: s\n\nb\n",
    );
    ok(&o);
    let m = one(home.path());
    assert_eq!(m.sender, "sender@site.test");
    assert!(
        m.message.contains("\nFrom: sender@site.test\n"),
        "{}",
        m.message
    );
    assert!(m.message.contains("\nCc: recipient list not shown: ;\n"));
}

#[test]
fn cron_style() {
    let home = install();
    let o = run(
        home.path(),
        "sendmail",
        &["-FCronDaemon", "-i", "-B8BITMIME", "-oem", "root"],
        &[],
        b"Subject: Cron <root@host> job\n\noutput\n",
    );
    ok(&o);
    let m = one(home.path());
    assert_eq!(m.recipients, vec!["root@example.org"]);
    assert!(
        m.message
            .contains("\nFrom: \"CronDaemon\" <tester@example.org>\n"),
        "{}",
        m.message
    );
}

#[test]
fn mailx_and_oi_t_styles() {
    let home = install();
    ok(&run(
        home.path(),
        "sendmail",
        &["-i", "--", "u1@example.org"],
        &[],
        b"Subject: a\n\nx\n",
    ));
    ok(&run(
        home.path(),
        "sendmail",
        &["-oi", "-t"],
        &[],
        b"To: u2@example.org\n\nx\n",
    ));
    let mut all: Vec<String> = queued(home.path())
        .into_iter()
        .flat_map(|q| q.recipients)
        .collect();
    all.sort();
    assert_eq!(all, vec!["u1@example.org", "u2@example.org"]);
}

#[test]
fn qmail_inject_a_and_body_bytes_survive() {
    let home = install();
    let mut msg = b"just a body without header\n".to_vec();
    msg.extend_from_slice(b"\x00\xff binary \xe9\n.\nlast line without newline");
    let o = run(
        home.path(),
        "qmail-inject",
        &["-a", "joe", "x@[10.0.0.1]"],
        &[("QMAILHOST", "h.test")],
        &msg,
    );
    ok(&o);
    let q = home.path().join("queue");
    let todo: Vec<_> = std::fs::read_dir(q.join("todo")).unwrap().collect();
    assert_eq!(todo.len(), 1);
    let m = one(home.path());
    assert_eq!(m.recipients, vec!["joe@example.org", "x@[10.0.0.1]"]);
    assert_eq!(m.sender, "tester@h.test");
    let id: u64 = todo[0]
        .as_ref()
        .unwrap()
        .file_name()
        .to_string_lossy()
        .parse()
        .unwrap();
    let raw = std::fs::read(
        q.join("mess")
            .join((id % 23).to_string())
            .join(id.to_string()),
    )
    .unwrap();
    let mut tail = b"\n\njust a body without header\n".to_vec();
    tail.extend_from_slice(b"\x00\xff binary \xe9\n.\nlast line without newline\n");
    assert!(raw.ends_with(&tail));
}

#[test]
fn print_mode() {
    let home = install();
    let o = run(
        home.path(),
        "qmail-inject",
        &["-n"],
        &[("QMAILINJECT", "i")],
        b"To: a\nMessage-ID: <x@y>\n\nb\n",
    );
    ok(&o);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.starts_with("Return-Path: <tester@example.org>\n"),
        "{out}"
    );
    assert!(out.contains("\nTo: a@example.org\n"));
    assert!(!out.contains("<x@y>"));
    assert!(queued(home.path()).is_empty());
}

fn script(home: &Path, code: i32) -> PathBuf {
    let p = home.join(format!("qq{code}"));
    std::fs::write(&p, format!("#!/bin/sh\ncat >/dev/null\nexit {code}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

#[test]
fn qmailqueue_failures_map_to_exit_codes() {
    let home = install();
    let perm = script(home.path(), 31);
    let o = run(
        home.path(),
        "qmail-inject",
        &["a@example.org"],
        &[("QMAILQUEUE", perm.to_str().unwrap())],
        b"\nx\n",
    );
    assert_eq!(o.status.code(), Some(100));
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .contains("qmail-inject: fatal: mail server permanently rejected message (#5.3.0)")
    );
    let temp = script(home.path(), 53);
    let o = run(
        home.path(),
        "sendmail",
        &["a@example.org"],
        &[("QMAILQUEUE", temp.to_str().unwrap())],
        b"\nx\n",
    );
    assert_eq!(o.status.code(), Some(111));
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .contains("qmail-inject: fatal: qq write error or disk full (#4.3.0)")
    );
    assert!(queued(home.path()).is_empty());
}

#[test]
fn usage_errors_and_modes() {
    let home = install();
    let h = home.path();
    let o = run(h, "sendmail", &["-L", "x"], &[], b"");
    assert_eq!(o.status.code(), Some(100));
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .contains("sendmail: usage: sendmail [ -t ] [ -fsender ]")
    );
    let o = run(h, "qmail-inject", &["-z"], &[], b"");
    assert_eq!(o.status.code(), Some(100));
    let o = run(h, "qmail-inject", &[], &[], b"To: a:b\n\n");
    assert_eq!(o.status.code(), Some(100));
    assert!(String::from_utf8_lossy(&o.stderr).contains("unable to parse this line"));
    let o = run(h, "sendmail", &["-bs"], &[], b"");
    assert_eq!(o.status.code(), Some(111));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("sendmail: fatal: unable to run qmail-smtpd")
    );
    ok(&run(h, "sendmail", &["-q"], &[], b""));
    let o = run(h, "sendmail", &["--help"], &[], b"");
    ok(&o);
    assert!(String::from_utf8_lossy(&o.stdout).contains("sendmail [ -t ]"));
    std::fs::copy(h.join("bin/sendmail"), h.join("bin/newaliases")).unwrap();
    let o = run(h, "newaliases", &[], &[], b"");
    assert_eq!(o.status.code(), Some(100));
    assert!(String::from_utf8_lossy(&o.stderr).contains("newaliases"));
    assert!(queued(h).is_empty());
}

/// A caller that ignores SIGCHLD (swaks --pipe, some Perl scripts) still learns that
/// qmail-queue succeeded: sendmail exits 0 and the message is queued once.
#[test]
fn sendmail_under_a_parent_ignoring_sigchld() {
    let home = install();
    let sendmail = home.path().join("bin/sendmail");
    // perl, as swaks: dash's `trap '' CHLD` does not ignore the signal
    let o = output_with_input(
        Command::new("perl")
            .arg("-e")
            .arg("$SIG{CHLD} = 'IGNORE'; exec @ARGV or die")
            .arg(&sendmail)
            .args(["-i", "someone@example.org"])
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("USER", "tester"),
        b"Subject: sigchld\n\nbody\n",
    );
    ok(&o);
    let m = one(home.path());
    assert_eq!(m.recipients, vec!["someone@example.org"]);
}
