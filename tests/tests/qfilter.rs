//! End-to-end tests of the content filter chain (DESIGN section 10, issue 14): an
//! installed system in a temporary root, qmail-smtpd run per connection as qmaild by our
//! tcpserver, Python's smtplib as the client, sendmail, and small shell filters named in
//! control/filters. qmail-qfilter runs them as qmailf under its limits and then the real
//! qmail-queue. qmail-send stays stopped until a test wants a delivery, so that every
//! accepted message is countable in queue/mess.

mod smtpd_common;

use e2e::*;
use smtpd_common::*;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Filter 1: records its uid, groups, variables and envelope in STATE, adds a header.
const ADD_HEADER: &str = r#"#!/bin/sh
id -u > @STATE@/uid
id -G > @STATE@/groups
printf '%s|%s|%s|%s|%s\n' "$QMAILUSER" "$QMAILHOST" "$QMAILRCPTS" "${TCPREMOTEIP-none}" "${SMTPAUTHUSER-none}" > @STATE@/env
tr '\0' , <&3 > @STATE@/envelope
echo 'X-Filtered: yes'
exec cat
"#;

/// Filter 2: refuses a message with "forbidden" in it (exit 82 and a reason on fd 6),
/// drops one with "drop-me" (exit 99), passes the rest unchanged.
const POLICY: &str = r#"#!/bin/sh
t=$(mktemp) || exit 71
cat > "$t"
if grep -q forbidden "$t"; then rm -f "$t"; echo 'Dno thanks (#5.7.1)' >&6; exit 82; fi
if grep -q drop-me "$t"; then rm -f "$t"; exit 99; fi
cat "$t"
rm -f "$t"
"#;

/// A filter that sleeps on "sleepy" and fills memory on "hungry".
const GREEDY: &str = r#"#!/bin/sh
t=$(mktemp) || exit 71
cat > "$t"
if grep -q sleepy "$t"; then sleep 60; fi
if grep -q hungry "$t"; then x=$(head -c 300000000 /dev/zero | tr '\0' a); fi
cat "$t"
rm -f "$t"
"#;

/// The filter scripts and a state directory any user can write, beside the root.
struct Filters {
    dir: PathBuf,
    state: PathBuf,
}

impl Filters {
    fn new(sys: &System) -> Filters {
        let base = sys.root.parent().unwrap();
        let dir = base.join("filters");
        let state = base.join("state");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::create_dir_all(&state).unwrap();
        std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o777)).unwrap();
        let f = Filters { dir, state };
        for (name, text) in [
            ("add-header", ADD_HEADER),
            ("policy", POLICY),
            ("greedy", GREEDY),
        ] {
            let p = f.path(name);
            let text = text.replace("@STATE@", &f.state.to_string_lossy());
            std::fs::write(&p, text).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        f
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn state(&self, name: &str) -> String {
        std::fs::read_to_string(self.state.join(name)).unwrap_or_default()
    }

    /// control/filters naming these filters, in order.
    fn chain(&self, sys: &System, names: &[&str]) {
        let mut text = String::from("# the test's chain\n");
        for n in names {
            text.push_str(&format!("{}\n", self.path(n).display()));
        }
        sys.control("filters", &text);
    }
}

/// Send each body as one message over SMTP with smtplib; one line per message:
/// `250` or `CODE TEXT`.
fn smtp_send(port: u16, bodies: &[&str]) -> Vec<String> {
    let script = r#"
import smtplib, sys
for body in sys.argv[2:]:
    s = smtplib.SMTP('127.0.0.1', int(sys.argv[1]), timeout=60)
    try:
        s.sendmail('sender@elsewhere.test', ['postmaster@example.test'],
                   ('Subject: chain\r\n\r\n' + body + '\r\n').encode())
        print('250')
    except smtplib.SMTPDataError as e:
        print(e.smtp_code, e.smtp_error.decode())
    s.quit()
"#;
    let out = Command::new("/usr/bin/python3")
        .arg("-c")
        .arg(script)
        .arg(port.to_string())
        .args(bodies)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "smtplib failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

fn qmailf() -> (u32, u32) {
    let u = nix::unistd::User::from_name("qmailf")
        .unwrap()
        .expect("qmailf");
    let g = nix::unistd::Group::from_name("nofiles").unwrap().unwrap();
    (u.uid.as_raw(), g.gid.as_raw())
}

fn mode_owner(p: &Path) -> (u32, u32) {
    let m = std::fs::metadata(p).unwrap();
    (m.mode() & 0o7777, m.uid())
}

#[test]
fn a_chain_adds_a_header_refuses_with_its_reason_drops_and_runs_as_qmailf() {
    need_root!();
    let mut sys = system();
    let (fuid, fgid) = qmailf();
    assert_eq!(mode_owner(&sys.bin("qmail-qfilter")), (0o6711, fuid));
    assert_eq!(mode_owner(&sys.root.join("quarantine/new")), (0o700, fuid));
    let f = Filters::new(&sys);
    f.chain(&sys, &["add-header", "policy"]);
    let srv = SmtpServer::start(&sys, &[], &[]);
    let got = smtp_send(
        srv.port,
        &["hello clean", "this is forbidden", "please drop-me"],
    );
    assert_eq!(got[0], "250", "{got:?}\n{}", srv.log_text());
    assert_eq!(got[1], "554 5.7.1 no thanks (#5.7.1)");
    assert_eq!(got[2], "250");
    // only the clean message was queued
    let queued = queued_messages(&sys);
    assert_eq!(queued.len(), 1, "{queued:?}");
    // the filter's header sits above qmail-smtpd's Received line (the chain sees the
    // message as qmail-smtpd passes it on), and qmail-queue adds its own on top
    assert!(
        queued[0].contains("X-Filtered: yes\nReceived: from unknown (HELO [127.0.0.1])"),
        "{}",
        queued[0]
    );
    // qmail-queue still names the injector: the chain keeps qmail-smtpd's real uid
    assert!(queued[0].contains("invoked from network"), "{}", queued[0]);
    // filters ran as qmailf with the one group nofiles, and saw the envelope
    assert_eq!(f.state("uid").trim(), fuid.to_string());
    assert_eq!(f.state("groups").trim(), fgid.to_string());
    assert_eq!(
        f.state("env"),
        "sender|elsewhere.test|postmaster@example.test\n|127.0.0.1|none\n"
    );
    assert_eq!(
        f.state("envelope"),
        "Fsender@elsewhere.test,Tpostmaster@example.test,,"
    );
    // the reason is logged, escaped
    assert!(
        srv.log_text().contains("refused: no\\040thanks"),
        "{}",
        srv.log_text()
    );
    sys.start();
    let md = sys.root.join("alias/Maildir");
    let got = wait_maildir(&md, 1, 30);
    assert!(got[0].contains("X-Filtered: yes"), "{}", got[0]);
    assert!(got[0].contains("hello clean"), "{}", got[0]);
}

#[test]
fn a_filter_past_its_time_or_memory_limit_is_a_temporary_failure() {
    need_root!();
    let sys = system();
    let f = Filters::new(&sys);
    f.chain(&sys, &["greedy"]);
    sys.control("filtertimeout", "2\n");
    sys.control("filtermemory", "64000000\n");
    let srv = SmtpServer::start(&sys, &[], &[]);
    let start = Instant::now();
    let got = smtp_send(srv.port, &["sleepy"]);
    assert_eq!(
        got,
        vec!["451 4.3.0 content filter timed out (#4.3.0)"],
        "{}",
        srv.log_text()
    );
    assert!(start.elapsed() < Duration::from_secs(20));
    // the sleeping filter was killed with its process group (its sleep is gone once
    // reaped, long before its 60 seconds)
    wait_until("the filter's sleep killed", 10, || {
        let out = Command::new("pgrep")
            .args(["-u", "qmailf", "-x", "sleep"])
            .output()
            .ok()?;
        out.stdout.is_empty().then_some(())
    });
    let got = smtp_send(srv.port, &["hungry"]);
    assert!(got[0].starts_with("451 "), "{got:?}\n{}", srv.log_text());
    assert!(queued_messages(&sys).is_empty());
    // within its limits the same filter passes the message
    let got = smtp_send(srv.port, &["modest"]);
    assert_eq!(got, vec!["250"], "{}", srv.log_text());
    assert_eq!(queued_messages(&sys).len(), 1);
}

#[test]
fn sendmail_goes_through_the_chain_and_prints_the_reason() {
    need_root!();
    let sys = system();
    let (fuid, fgid) = qmailf();
    let f = Filters::new(&sys);
    f.chain(&sys, &["add-header", "policy"]);
    let args = ["-f", "root@example.test", "postmaster@example.test"];
    // run by root: the filters still run as qmailf, with root's groups gone
    let out = sys.run_as(None, "sendmail", &args, b"Subject: s\n\nforbidden words\n");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no thanks (#5.7.1)"), "{err}");
    assert_eq!(f.state("uid").trim(), fuid.to_string());
    assert_eq!(f.state("groups").trim(), fgid.to_string());
    assert_eq!(f.state("env").split('|').nth(3), Some("none"));
    assert!(queued_messages(&sys).is_empty());
    // a local user: its connection variables are its own invention and are left out
    let out = Command::new("runuser")
        .args(["-u", "nobody", "--"])
        .arg(sys.bin("sendmail"))
        .args(args)
        .env("TCPREMOTEIP", "10.9.9.9")
        .env("SMTPAUTHUSER", "boss")
        .env("RELAYCLIENT", "")
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(b"Subject: s\n\nfine\n")?;
            c.wait_with_output()
        })
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        f.state("env"),
        "root|example.test|postmaster@example.test\n|none|none\n"
    );
    let queued = queued_messages(&sys);
    assert_eq!(queued.len(), 1);
    assert!(queued[0].contains("X-Filtered: yes"), "{}", queued[0]);
    assert_eq!(f.state("uid").trim(), fuid.to_string());
}

#[test]
fn only_root_may_name_filters_as_arguments_of_the_set_id_program() {
    need_root!();
    let sys = system();
    let f = Filters::new(&sys);
    let evil = f.state.join("evil");
    let script = format!("id -u > {}", evil.display());
    let run = |user: Option<&str>| {
        let mut c = match user {
            Some(u) => {
                let mut c = Command::new("runuser");
                c.args(["-u", u, "--"]).arg(sys.bin("qmail-qfilter"));
                c
            }
            None => Command::new(sys.bin("qmail-qfilter")),
        };
        c.args(["/bin/sh", "-c", &script])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .output()
            .unwrap()
    };
    for user in ["nobody", "qmaild"] {
        let out = run(Some(user));
        assert_eq!(out.status.code(), Some(55), "{user}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("for root only"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!evil.exists(), "{user} ran a program as qmailf");
    }
    // root may (the message and envelope are empty, so nothing runs: 54)
    assert_eq!(run(None).status.code(), Some(54));
    assert!(!evil.exists());
}

#[test]
fn without_a_descriptor_6_a_reason_becomes_exit_31_or_71() {
    need_root!();
    let sys = system();
    let f = Filters::new(&sys);
    let base = sys.root.parent().unwrap();
    let message = base.join("message");
    let envelope = base.join("envelope");
    std::fs::write(&envelope, "Fa@example.test\0Tpostmaster@example.test\0\0").unwrap();
    let temp = f.path("temp");
    std::fs::write(&temp, "#!/bin/sh\necho 'Zlater (#4.3.0)' >&6\nexit 82\n").unwrap();
    std::fs::set_permissions(&temp, std::fs::Permissions::from_mode(0o755)).unwrap();
    // the caller closes fd 6, as a qmail-queue caller without notqmail's convention
    let run = |body: &str| {
        std::fs::write(&message, body).unwrap();
        Command::new("sh")
            .args(["-c", "exec 6>&-; exec \"$0\" <\"$1\" 1<\"$2\""])
            .arg(sys.bin("qmail-qfilter"))
            .arg(&message)
            .arg(&envelope)
            .status()
            .unwrap()
            .code()
    };
    f.chain(&sys, &["policy"]);
    assert_eq!(run("Subject: x\n\nforbidden\n"), Some(31));
    assert_eq!(run("Subject: x\n\ndrop-me\n"), Some(0));
    assert!(queued_messages(&sys).is_empty());
    assert_eq!(run("Subject: x\n\nfine\n"), Some(0));
    assert_eq!(queued_messages(&sys).len(), 1);
    f.chain(&sys, &["temp"]);
    assert_eq!(run("Subject: x\n\nfine\n"), Some(71));
    assert_eq!(queued_messages(&sys).len(), 1);
}

#[test]
fn an_empty_filters_file_means_no_qmail_qfilter_and_a_rule_can_bypass_the_chain() {
    need_root!();
    let sys = system();
    // the installer's default: an empty control/filters
    assert_eq!(
        std::fs::read_to_string(sys.root.join("control/filters")).unwrap(),
        ""
    );
    // a qmail-qfilter that would refuse everything proves it is not run
    let real = sys.root.join("qmail-qfilter.real");
    std::fs::rename(sys.bin("qmail-qfilter"), &real).unwrap();
    std::fs::write(
        sys.bin("qmail-qfilter"),
        "#!/bin/sh\necho 'Dqmail-qfilter ran (#5.7.1)' >&6\nexit 82\n",
    )
    .unwrap();
    std::fs::set_permissions(
        sys.bin("qmail-qfilter"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let srv = SmtpServer::start(&sys, &[], &[]);
    assert_eq!(smtp_send(srv.port, &["plain"]), vec!["250"]);
    let out = sys.run_as(None, "sendmail", &["postmaster@example.test"], b"\nplain\n");
    assert!(out.status.success());
    assert_eq!(queued_messages(&sys).len(), 2);
    drop(srv);
    // with a filter named, the chain runs; a tcprules entry setting QMAILQUEUE (as the
    // run scripts set it, from the environment) wins for its clients
    std::fs::rename(&real, sys.bin("qmail-qfilter")).unwrap();
    let f = Filters::new(&sys);
    f.chain(&sys, &["policy"]);
    let chain = sys.bin("qmail-qfilter");
    let srv = SmtpServer::start(&sys, &[], &[("QMAILQUEUE", chain.to_str().unwrap())]);
    assert_eq!(
        smtp_send(srv.port, &["forbidden"]),
        vec!["554 5.7.1 no thanks (#5.7.1)"]
    );
    drop(srv);
    let rules = sys.root.join("control/tcp.smtp");
    let cdb = sys.root.join("control/tcp.smtp.cdb");
    std::fs::write(
        &rules,
        format!(
            "127.0.0.1:allow,QMAILQUEUE=\"{}\"\n:allow\n",
            sys.bin("qmail-queue").display()
        ),
    )
    .unwrap();
    let st = Command::new(sys.bin("tcprules"))
        .arg(&cdb)
        .arg(sys.root.join("control/tcp.smtp.tmp"))
        .stdin(std::fs::File::open(&rules).unwrap())
        .status()
        .unwrap();
    assert!(st.success());
    let (u, g) = qmaild();
    let mut child = Command::new(sys.bin("tcpserver"))
        .args(["-1", "-q", "-H", "-R", "-l", ME, "-x"])
        .arg(&cdb)
        .args(["-u", &u.to_string(), "-g", &g.to_string(), "127.0.0.1", "0"])
        .arg(sys.bin("qmail-smtpd"))
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("QMAILQUEUE", &chain)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let port = printed_port(&mut child);
    let got = smtp_send(port, &["forbidden but trusted"]);
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(got, vec!["250"]);
    assert_eq!(queued_messages(&sys).len(), 3);
}

#[test]
fn submission_passes_the_authenticated_user_to_the_chain() {
    need_root!();
    let sys = system();
    let f = Filters::new(&sys);
    f.chain(&sys, &["add-header", "policy"]);
    let cp = test_checkpassword(&sys);
    let srv = SmtpServer::start(
        &sys,
        &["--submission", path_str(&cp), "/bin/true"],
        &[("AUTHPLAINTEXT", ""), ("SMTPAUTHUSER", "forged")],
    );
    let script = r#"
import smtplib, sys
s = smtplib.SMTP('127.0.0.1', int(sys.argv[1]), timeout=60)
s.login('joe', 'secret')
for body in ('fine', 'forbidden'):
    try:
        s.sendmail('joe@example.test', ['postmaster@example.test'],
                   ('From: joe@example.test\r\nSubject: out\r\n\r\n' + body + '\r\n').encode())
        print('250')
    except smtplib.SMTPDataError as e:
        print(e.smtp_code, e.smtp_error.decode())
s.quit()
"#;
    let (ok, out) = python(script, &[&srv.port.to_string()]);
    assert!(ok, "{out}\n{}", srv.log_text());
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["250", "554 5.7.1 no thanks (#5.7.1)"]
    );
    assert_eq!(f.state("env").split('|').nth(4), Some("joe\n"));
    assert_eq!(queued_messages(&sys).len(), 1);
    // without AUTH (port 25), an inherited SMTPAUTHUSER does not reach the filters
    let srv = SmtpServer::start(&sys, &[], &[("SMTPAUTHUSER", "forged")]);
    assert_eq!(smtp_send(srv.port, &["plain"]), vec!["250"]);
    assert_eq!(f.state("env").split('|').nth(4), Some("none\n"));
}

/// Start `HOME/supervise/qmail-smtpd/run` on a free port; returns it and the port, once
/// its tcpserver accepts connections.
fn run_script(sys: &System) -> (Server, u16) {
    let port = free_port();
    sys.control("listenaddress", "127.0.0.1\n");
    sys.control("smtpdport", &format!("{port}\n"));
    let dir = sys.root.join("supervise/qmail-smtpd");
    let mut child = Command::new("sh")
        .arg("./run")
        .current_dir(&dir)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_port(&format!("127.0.0.1:{port}"), &mut child);
    (Server(child), port)
}

/// The environment of process `pid`, one `NAME=value` per entry.
fn environ(pid: u32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/environ"))
        .unwrap()
        .split(|&b| b == 0)
        .map(|e| String::from_utf8_lossy(e).into_owned())
        .collect()
}

#[test]
fn the_smtpd_run_script_puts_the_chain_in_front_only_when_filters_are_named() {
    need_root!();
    let sys = system();
    let chain = format!("QMAILQUEUE={}", sys.bin("qmail-qfilter").display());
    let (srv, port) = run_script(&sys);
    assert!(!environ(srv.0.id()).contains(&chain));
    assert_eq!(smtp_send(port, &["forbidden"]), vec!["250"]);
    drop(srv);
    let f = Filters::new(&sys);
    f.chain(&sys, &["add-header", "policy"]);
    let (srv, port) = run_script(&sys);
    assert!(
        environ(srv.0.id()).contains(&chain),
        "{:?}",
        environ(srv.0.id())
    );
    // under the run script's softlimit, the filters still run and refuse
    let got = smtp_send(port, &["forbidden", "welcome"]);
    assert_eq!(got, vec!["554 5.7.1 no thanks (#5.7.1)", "250"]);
    drop(srv);
    let queued = queued_messages(&sys);
    assert_eq!(queued.len(), 2);
    assert_eq!(
        queued
            .iter()
            .filter(|m| m.contains("X-Filtered: yes"))
            .count(),
        1
    );
}

#[test]
fn a_filter_that_ignores_the_envelope_never_costs_a_message() {
    need_root!();
    let sys = system();
    sys.control("filters", "/bin/cat\n");
    let base = sys.root.parent().unwrap();
    let message = base.join("message");
    let envelope = base.join("envelope");
    std::fs::write(&message, "Subject: x\n\nbody\n").unwrap();
    std::fs::write(&envelope, "Fa@example.test\0Tpostmaster@example.test\0\0").unwrap();
    // once, the envelope was fed by a thread that could still be writing to a filter
    // gone without reading it when qmail-qfilter became qmail-queue: killed by SIGPIPE
    for i in 0..100 {
        let st = Command::new(sys.bin("qmail-qfilter"))
            .stdin(std::fs::File::open(&message).unwrap())
            .stdout(std::fs::File::open(&envelope).unwrap())
            .status()
            .unwrap();
        assert_eq!(st.code(), Some(0), "run {i}: {st}");
    }
    assert_eq!(queued(&sys), 100);
}

/// Whether a SOCK_SEQPACKET connection to `socket` is greeted (qmail-qfilterd's `F`).
fn greeted(path: &Path) -> bool {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, UnixAddr, connect, socket};
    use std::os::fd::AsRawFd;
    let fd = socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .unwrap();
    connect(fd.as_raw_fd(), &UnixAddr::new(path).unwrap()).unwrap();
    let mut b = [0u8; 4];
    matches!(nix::unistd::read(&fd, &mut b), Ok(1) if b[0] == b'F')
}

#[test]
fn qmail_qfilterd_runs_the_chain_for_qmail_smtpd_without_a_program_per_message() {
    need_root!();
    let sys = system();
    let (fuid, fgid) = qmailf();
    let f = Filters::new(&sys);
    f.chain(&sys, &["add-header", "policy", "greedy"]);
    sys.control("filtertimeout", "3\n");
    // the socket's directory: root:nofiles 2750, only qmaild (nofiles) reaches it and
    // no filter (qmailf) can put a socket of its own there
    let dir = std::fs::metadata(sys.root.join("qfilterd")).unwrap();
    assert_eq!(
        (dir.uid(), dir.gid(), dir.mode() & 0o7777),
        (0, fgid, 0o2750)
    );
    let mut server = e2e::daemon::Daemon::start(&sys, "qmail-qfilterd", None, "qfilterd/socket");
    assert_eq!(uid_of(server.pid()), Some(fuid));
    let socket = sys.root.join("qfilterd/socket");
    let sock = std::fs::symlink_metadata(&socket).unwrap();
    assert_eq!(
        (sock.uid(), sock.gid(), sock.mode() & 0o777),
        (0, fgid, 0o660)
    );
    // started by root, the server became qmailf (above) after making its socket: a
    // filter's user can neither remove it nor put another in its place
    let as_qmailf = |cmd: &str| {
        Command::new(sys.bin("setuidgid"))
            .args(["qmailf", "/bin/sh", "-c", cmd])
            .status()
            .unwrap()
            .success()
    };
    assert!(
        as_qmailf(&format!("test -S {}", socket.display())),
        "qmailf sees it"
    );
    assert!(!as_qmailf(&format!("rm -f {}", socket.display())));
    assert!(!as_qmailf(&format!(
        "touch {0}.x && mv -f {0}.x {0}",
        socket.display()
    )));
    assert!(socket.exists());
    // proof that the server, not the program, ran the chain: qmail-qfilter fails
    let program = sys.bin("qmail-qfilter");
    let saved = sys.root.parent().unwrap().join("qmail-qfilter.saved");
    std::fs::rename(&program, &saved).unwrap();
    std::fs::write(&program, "#!/bin/sh\nexit 81\n").unwrap();
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();

    let srv = SmtpServer::start(&sys, &[], &[]);
    let got = smtp_send(
        srv.port,
        &[
            "hello clean",
            "this is forbidden",
            "please drop-me",
            "sleepy",
        ],
    );
    let logs = || format!("{}\n{}", srv.log_text(), server.log_text());
    assert_eq!(got[0], "250", "{got:?}\n{}", logs());
    assert_eq!(got[1], "554 5.7.1 no thanks (#5.7.1)");
    assert_eq!(got[2], "250");
    assert_eq!(got[3], "451 4.3.0 content filter timed out (#4.3.0)");
    let queued = queued_messages(&sys);
    assert_eq!(queued.len(), 1, "{queued:?}");
    assert!(
        queued[0].contains("X-Filtered: yes\nReceived: from unknown (HELO [127.0.0.1])"),
        "{}",
        queued[0]
    );
    // queued by qmail-smtpd itself, as a message without a chain
    assert!(queued[0].contains("invoked from network"), "{}", queued[0]);
    // the filters ran as qmailf with the one group nofiles and saw what the program
    // gives them: the envelope, its variables and the connection's
    assert_eq!(f.state("uid").trim(), fuid.to_string());
    assert_eq!(f.state("groups").trim(), fgid.to_string());
    assert_eq!(
        f.state("env"),
        "sender|elsewhere.test|postmaster@example.test\n|127.0.0.1|none\n"
    );
    assert_eq!(
        f.state("envelope"),
        "Fsender@elsewhere.test,Tpostmaster@example.test,,"
    );
    // logged by the server, naming the qmail-smtpd process it served
    let line = server
        .log_text()
        .lines()
        .find(|l| l.contains("refused: no\\040thanks"))
        .map(str::to_string);
    assert!(
        line.as_ref()
            .is_some_and(|l| l.starts_with("qmail-qfilterd: client pid ")),
        "{line:?}\n{}",
        logs()
    );
    // a peer other than qmaild (root here) is closed without a greeting
    assert!(!greeted(&socket), "root was served");

    // the server down: qmail-smtpd runs qmail-qfilter again, and the chain still runs
    server.kill();
    std::fs::rename(&saved, &program).unwrap();
    let got = smtp_send(srv.port, &["again forbidden", "clean again"]);
    assert_eq!(
        got,
        vec!["554 5.7.1 no thanks (#5.7.1)", "250"],
        "{}",
        srv.log_text()
    );
    assert_eq!(queued_messages(&sys).len(), 2);
}

/// The pids whose parent is `parent` (/proc/PID/stat's fourth field).
fn children_of(parent: u32) -> Vec<u32> {
    let mut v = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // the name is in parentheses and may hold spaces: fields start after the last ')'
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        if rest.split_whitespace().nth(1) == Some(parent.to_string().as_str()) {
            v.push(pid);
        }
    }
    v
}

#[test]
fn qmail_qfilterd_starts_afresh_after_a_crash_and_qmail_smtpd_falls_back_meanwhile() {
    need_root!();
    let sys = system();
    let f = Filters::new(&sys);
    // a filter that waits on "napping" (a copy of sleep under another name, so that the
    // other tests' checks for a leftover sleep do not see it)
    let nap = f.path("nap");
    std::fs::copy("/bin/sleep", &nap).unwrap();
    let napper = f.path("napper");
    std::fs::write(
        &napper,
        format!(
            "#!/bin/sh\nt=$(mktemp) || exit 71\ncat > \"$t\"\nif grep -q napping \"$t\"; then {} 30; fi\ncat \"$t\"\nrm -f \"$t\"\n",
            nap.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&napper, std::fs::Permissions::from_mode(0o755)).unwrap();
    f.chain(&sys, &["napper"]);
    let mut server = e2e::daemon::Daemon::start(&sys, "qmail-qfilterd", None, "qfilterd/socket");
    let srv = SmtpServer::start(&sys, &[], &[]);
    let port = srv.port;
    let sending = std::thread::spawn(move || smtp_send(port, &["napping"]));
    // the chain child of this message is the server's only child: crash it (SIGABRT, a
    // panic's or an allocation failure's end; a SIGSEGV sent by kill is taken by std's
    // stack-overflow handler, which only re-arms the default for a real fault)
    let child = wait_until("the chain's child of qmail-qfilterd", 20, || {
        children_of(server.pid()).first().copied()
    });
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child as i32),
        nix::sys::signal::Signal::SIGABRT,
    )
    .unwrap();
    let got = sending.join().unwrap();
    // no answer from the chain is a temporary failure, never a pass
    assert!(
        got[0].starts_with("451 ") && got[0].contains("qq crashed"),
        "{got:?}\n{}",
        srv.log_text()
    );
    // the server stops, to be started afresh by supervise with a new layout
    wait_until("qmail-qfilterd to exit", 20, || {
        server.exited().then_some(())
    });
    assert!(
        server.log_text().contains("starting afresh"),
        "{}",
        server.log_text()
    );
    // meanwhile qmail-smtpd runs qmail-qfilter: the chain still runs
    let got = smtp_send(port, &["clean"]);
    assert_eq!(got, vec!["250"], "{}", srv.log_text());
    assert_eq!(queued_messages(&sys).len(), 1);
    let _ = Command::new("pkill").args(["-x", "nap"]).status();
}
