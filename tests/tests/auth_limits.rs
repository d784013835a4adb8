//! End-to-end tests of the password checks and their limits (issue 11, items 3, 4, 5,
//! 7): who may ask the installed checkpassword, the one escaped log line per failed
//! AUTH, failure counters per IPv6 /64 and per account that fail closed, and the
//! recipient rate limit keyed on the canonical account and shared exactly between
//! concurrent sessions.
//!
//! qmail-smtpd is run directly on pipes (as tcpserver would run it, with TCPREMOTEIP
//! set), so each session's log is its own stderr.

use e2e::*;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

const ME: &str = "mx.example.test";

fn b64(s: &[u8]) -> String {
    use base64::prelude::*;
    BASE64_STANDARD.encode(s)
}

/// An installation whose counter directory exists as the installer makes it.
fn system() -> System {
    let sys = System::install(ME, &["example.test"]);
    sys.control("rcpthosts", "example.test\n");
    sys.control("authfaildelay", "0\n");
    std::fs::create_dir_all(sys.root.join("smtpd")).unwrap();
    sys
}

/// A checkpassword accepting any user with the password `secret` (exit 1 otherwise).
fn any_user_checkpassword(sys: &System) -> PathBuf {
    let p = sys.root.parent().unwrap().join("cp-any");
    std::fs::write(
        &p,
        "#!/bin/sh\npass=$(head -c 512 <&3 | tr '\\000' '\\n' | sed -n 2p)\n[ \"$pass\" = secret ] && exec \"$@\"\nexit 1\n",
    )
    .unwrap();
    std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    p
}

/// One qmail-smtpd --submission session from `ip`: the client's lines (CRLF added),
/// then EOF. Returns (replies, log).
fn session(sys: &System, cp: &Path, ip: &str, lines: &[String]) -> (String, String) {
    session_as(sys, cp, ip, lines, None)
}

/// [`session`], run as `ids` (uid, gid) when given.
fn session_as(
    sys: &System,
    cp: &Path,
    ip: &str,
    lines: &[String],
    ids: Option<(u32, u32)>,
) -> (String, String) {
    let mut cmd = Command::new(sys.bin("qmail-smtpd"));
    if let Some((uid, gid)) = ids {
        cmd.uid(uid).gid(gid).current_dir("/");
    }
    let mut child = cmd
        .arg("--submission")
        .arg(cp)
        .arg("/bin/true")
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("TCPREMOTEIP", ip)
        .env("TCPLOCALIP", "127.0.0.1")
        .env("AUTHPLAINTEXT", "")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run qmail-smtpd");
    let mut input = String::new();
    for l in lines {
        input.push_str(l);
        input.push_str("\r\n");
    }
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(input.as_bytes());
    });
    let out = child.wait_with_output().unwrap();
    let _ = writer.join();
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn plain(user: &[u8], pass: &[u8]) -> String {
    let mut v = vec![0u8];
    v.extend_from_slice(user);
    v.push(0);
    v.extend_from_slice(pass);
    format!("AUTH PLAIN {}", b64(&v))
}

fn auth_session(sys: &System, cp: &Path, ip: &str, user: &[u8], pass: &[u8]) -> (String, String) {
    session(sys, cp, ip, &["EHLO c.test".into(), plain(user, pass)])
}

/// The reply lines after the greeting and EHLO (which end in `250 ` + text).
fn replies(out: &str) -> Vec<&str> {
    out.lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| !l.starts_with("250-") && !l.starts_with("220 "))
        .skip(1)
        .collect()
}

#[test]
fn auth_plain_user_with_crlf_makes_one_log_line() {
    let sys = system();
    let cp = any_user_checkpassword(&sys);
    let forged = b"x\r\nqmail-smtpd: pid 1: AUTH PLAIN user root from 10.9.9.9";
    let (out, log) = auth_session(&sys, &cp, "192.0.2.7", forged, b"wrong");
    assert_eq!(
        replies(&out),
        ["535 5.7.8 authentication failed (#5.7.8)"],
        "{out}"
    );
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 1, "{log}");
    assert!(
        lines[0]
            .contains("auth failed ip=192.0.2.7 mech=PLAIN user=x\\015\\012qmail-smtpd:\\040pid"),
        "{log}"
    );
    assert!(!log.contains("\nqmail-smtpd: pid 1:"), "{log}");
}

#[test]
fn ipv6_clients_are_counted_by_their_64() {
    let sys = system();
    sys.control("authfaillimit", "2\n");
    let cp = any_user_checkpassword(&sys);
    for ip in ["2001:db8:5:6::1", "2001:db8:5:6:ffff::2"] {
        let (out, log) = auth_session(&sys, &cp, ip, b"joe", b"bad");
        assert!(out.contains("535 5.7.8"), "{out}");
        assert!(
            log.contains(&format!("auth failed ip={ip} mech=PLAIN user=joe")),
            "{log}"
        );
    }
    // a third address of the same /64, with the right password: locked out
    let (out, _) = auth_session(&sys, &cp, "2001:db8:5:6::99", b"joe", b"secret");
    assert!(
        out.contains("421 4.7.0 too many authentication failures"),
        "{out}"
    );
    // another /64 is another client
    let (out, _) = auth_session(&sys, &cp, "2001:db8:5:7::1", b"joe", b"secret");
    assert!(out.contains("235 2.7.0"), "{out}");
}

#[test]
fn failures_per_account_are_limited_across_addresses() {
    let sys = system();
    sys.control("authfaillimit", "0\n");
    sys.control("authfailaccountlimit", "2\n");
    let cp = any_user_checkpassword(&sys);
    // one guess each from many addresses, the account spelled two ways
    for (ip, user) in [
        ("10.0.0.1", &b"Joe@Example.test"[..]),
        ("10.0.0.2", b"joe%example.test"),
    ] {
        let (out, _) = auth_session(&sys, &cp, ip, user, b"bad");
        assert!(out.contains("535 5.7.8"), "{out}");
    }
    let (out, log) = auth_session(&sys, &cp, "10.0.0.3", b"joe@example.test", b"secret");
    assert!(
        out.contains("454 4.7.0 too many authentication failures for this account"),
        "{out}"
    );
    assert!(log.contains("AUTH refused"), "{log}");
    // other accounts are not affected
    let (out, _) = auth_session(&sys, &cp, "10.0.0.3", b"ann@example.test", b"secret");
    assert!(out.contains("235 2.7.0"), "{out}");
}

#[test]
fn an_unusable_counter_fails_closed() {
    let sys = system();
    let cp = any_user_checkpassword(&sys);
    let state = sys.root.join("smtpd");
    std::fs::remove_dir_all(&state).unwrap();
    std::fs::write(&state, "not a directory\n").unwrap();
    let (out, log) = auth_session(&sys, &cp, "10.1.1.1", b"joe", b"secret");
    assert_eq!(
        replies(&out),
        ["454 4.7.0 temporary authentication failure (#4.3.0)"],
        "{out}"
    );
    assert!(
        log.contains("unable to read the AUTH failure counter"),
        "{log}"
    );
    // with the limit off, no counter is needed
    sys.control("authfaillimit", "0\n");
    sys.control("authfailaccountlimit", "0\n");
    let (out, _) = auth_session(&sys, &cp, "10.1.1.1", b"joe", b"secret");
    assert!(out.contains("235 2.7.0"), "{out}");
    // the rate limit fails closed too
    sys.control("ratelimit", "5\n");
    let (out, _) = session(
        &sys,
        &cp,
        "10.1.1.1",
        &[
            "EHLO c.test".into(),
            plain(b"joe", b"secret"),
            "MAIL FROM:<joe@example.test>".into(),
        ],
    );
    assert!(
        out.contains("451 4.3.0 unable to check the message rate"),
        "{out}"
    );
}

fn rcpt_session(sys: &System, cp: &Path, user: &[u8], rcpts: usize) -> Vec<String> {
    let mut lines = vec![
        "EHLO c.test".to_string(),
        plain(user, b"secret"),
        "MAIL FROM:<x@example.test>".into(),
    ];
    for i in 0..rcpts {
        lines.push(format!("RCPT TO:<r{i}@elsewhere.test>"));
    }
    let (out, _) = session(sys, cp, "10.2.2.2", &lines);
    replies(&out).iter().map(|s| s.to_string()).collect()
}

#[test]
fn rate_limit_counts_recipients_of_the_canonical_account() {
    let sys = system();
    sys.control("ratelimit", "3\n");
    sys.control("sendermap", "*:*\n");
    let cp = any_user_checkpassword(&sys);
    let r = rcpt_session(&sys, &cp, b"joe%example.test", 4);
    assert!(r[0].starts_with("235"), "{r:?}");
    assert_eq!(r[1], "250 2.1.0 ok", "{r:?}");
    assert_eq!(&r[2..5], ["250 2.1.5 ok"; 3], "{r:?}");
    assert!(r[5].starts_with("451 4.7.1"), "{r:?}");
    // the same account spelled another way has nothing left
    let r = rcpt_session(&sys, &cp, b"JOE@example.test", 1);
    assert_eq!(
        r[1], "451 4.7.1 sorry, you have sent to too many recipients this hour (#4.7.1)",
        "{r:?}"
    );
    // a long login still gets a counter (its file name is bounded)
    let long = format!("{}@example.test", "j".repeat(200));
    let r = rcpt_session(&sys, &cp, long.as_bytes(), 1);
    assert_eq!(r[1..], ["250 2.1.0 ok", "250 2.1.5 ok"], "{r:?}");
}

#[test]
fn concurrent_sessions_share_the_rate_limit_exactly() {
    let sys = system();
    sys.control("ratelimit", "10\n");
    sys.control("sendermap", "*:*\n");
    let cp = any_user_checkpassword(&sys);
    let accepted: usize = std::thread::scope(|s| {
        let handles: Vec<_> = (0..5)
            .map(|_| s.spawn(|| rcpt_session(&sys, &cp, b"joe", 6)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap()
                    .iter()
                    .filter(|r| r.as_str() == "250 2.1.5 ok")
                    .count()
            })
            .sum()
    });
    assert_eq!(accepted, 10);
}

/// A system account with a password, removed when dropped.
struct TestUser(String);

impl TestUser {
    fn new(name: &str, password: &str) -> TestUser {
        TestUser::with_home(name, password, Path::new("/nonexistent"))
    }

    fn with_home(name: &str, password: &str, home: &Path) -> TestUser {
        let _ = Command::new("userdel")
            .arg(name)
            .stderr(Stdio::null())
            .status();
        let st = Command::new("useradd")
            .args(["-M", "-s", "/bin/sh", "-d"])
            .arg(home)
            .arg(name)
            .status()
            .unwrap();
        assert!(st.success(), "useradd {name}");
        let mut c = Command::new("chpasswd")
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        c.stdin
            .take()
            .unwrap()
            .write_all(format!("{name}:{password}\n").as_bytes())
            .unwrap();
        assert!(c.wait().unwrap().success());
        TestUser(name.into())
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        let _ = Command::new("userdel").arg(&self.0).status();
    }
}

/// Run the installed checkpassword as `uid`:`gid` with `user\0pass\0\0` on fd 3; the
/// subprogram creates `marker`. Returns (exit code, stderr, bytes left unread on fd 3,
/// seconds taken).
fn checkpassword_as(
    sys: &System,
    uid: u32,
    gid: u32,
    record: &[u8],
    marker: &Path,
) -> (Option<i32>, String, usize, f64) {
    let (r, w) = nix::unistd::pipe().unwrap();
    std::fs::File::from(w).write_all(record).unwrap();
    let keep = r.try_clone().unwrap();
    let raw = r.as_raw_fd();
    let mut cmd = Command::new(sys.bin("checkpassword"));
    cmd.arg("/bin/touch")
        .arg(marker)
        .uid(uid)
        .gid(gid)
        .current_dir("/")
        .stderr(Stdio::piped());
    // SAFETY: only dup2 between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(raw, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let t = Instant::now();
    let out = cmd.output().unwrap();
    let took = t.elapsed().as_secs_f64();
    drop(r);
    nix::fcntl::fcntl(
        &keep,
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
    )
    .unwrap();
    let mut left = Vec::new();
    let _ = std::fs::File::from(keep).read_to_end(&mut left);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        left.len(),
        took,
    )
}

#[test]
fn installed_checkpassword_answers_only_root_and_qmaild() {
    need_root!();
    let sys = system();
    let cp = sys.bin("checkpassword");
    let meta = std::fs::metadata(&cp).unwrap();
    use std::os::unix::fs::MetadataExt;
    if meta.mode() & 0o2000 == 0 {
        skip("checkpassword was not installed setgid (no shadow group)");
        return;
    }
    let _u = TestUser::new("vtest_cpcall", "Right-pass-7");
    let record = b"vtest_cpcall\0Right-pass-7\0\0";
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
    let nogroup = nobody.gid.as_raw();
    // nobody, with the right password: refused before the record is even read
    let marker = dir.path().join("nobody");
    let (code, err, left, _) =
        checkpassword_as(&sys, nobody.uid.as_raw(), nogroup, record, &marker);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("may not check passwords"), "{err}");
    assert_eq!(left, record.len(), "the record was not read");
    assert!(!marker.exists());
    // qmaild: verified, the subprogram runs
    let qmaild = nix::unistd::User::from_name("qmaild").unwrap().unwrap();
    let marker = dir.path().join("qmaild");
    let (code, err, left, _) = checkpassword_as(
        &sys,
        qmaild.uid.as_raw(),
        qmaild.gid.as_raw(),
        record,
        &marker,
    );
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(left, 0);
    assert!(marker.exists());
    // a wrong password is logged and answered after control/checkpassworddelay
    sys.control("checkpassworddelay", "1\n");
    let marker = dir.path().join("wrong");
    let (code, err, _, took) = checkpassword_as(
        &sys,
        qmaild.uid.as_raw(),
        qmaild.gid.as_raw(),
        b"vtest_cpcall\0wrong\0\0",
        &marker,
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("bad password caller=") && err.trim_end().ends_with(" user=vtest_cpcall"),
        "{err}"
    );
    assert!(took >= 1.0, "answered after {took} s");
    assert!(!marker.exists());
}

#[test]
fn popup_auth_plain_user_with_crlf_makes_one_log_line() {
    let sys = system();
    sys.control("pop3authdelay", "0\n");
    for p in ["qmail-popup", "qmail-pop3d"] {
        if !sys.bin(p).exists() {
            std::fs::copy(build_dir().join(p), sys.bin(p)).unwrap();
        }
    }
    let cp = any_user_checkpassword(&sys);
    let forged = b"\0x\r\nqmail-popup: pid 1: login ok user=root\0wrong";
    let input = format!("AUTH PLAIN {}\r\nQUIT\r\n", b64(forged));
    let out = output_with_input(
        Command::new(sys.bin("qmail-popup"))
            .arg(ME)
            .arg(&cp)
            .arg("/bin/true")
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("TCPREMOTEIP", "2001:db8::7")
            .env("POP3PLAINTEXT", "1"),
        input.as_bytes(),
    );
    let (stdout, log) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(stdout.contains("-ERR authorization failed"), "{stdout}");
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 1, "{log}");
    assert!(
        lines[0]
            .contains("auth failed ip=2001:db8::7 mech=PLAIN user=x\\015\\012qmail-popup:\\040pid"),
        "{log}"
    );
}

/// A checkpassword that notes each run as a line in the returned file, takes half a
/// second (so parallel sessions overlap), and accepts the password `secret`.
fn counting_checkpassword(sys: &System) -> (PathBuf, PathBuf) {
    let dir = sys.root.parent().unwrap();
    let runs = dir.join("cp-runs");
    let p = dir.join("cp-count");
    std::fs::write(
        &p,
        format!(
            "#!/bin/sh\necho run >> {}\npass=$(head -c 512 <&3 | tr '\\000' '\\n' | sed -n 2p)\nsleep 0.5\n[ \"$pass\" = secret ] && exec \"$@\"\nexit 1\n",
            runs.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    // qmail-smtpd started as root runs as qmaild
    std::fs::write(&runs, "").unwrap();
    std::fs::set_permissions(&runs, std::os::unix::fs::PermissionsExt::from_mode(0o666)).unwrap();
    (p, runs)
}

fn run_count(runs: &Path) -> usize {
    std::fs::read_to_string(runs)
        .unwrap_or_default()
        .lines()
        .count()
}

/// One qmail-popup session from `ip` (None: no TCPREMOTEIP) with `input`; returns
/// (replies, log, exit code).
fn popup_session(sys: &System, cp: &Path, ip: Option<&str>, input: &str) -> (String, String, i32) {
    for p in ["qmail-popup", "qmail-pop3d"] {
        if !sys.bin(p).exists() {
            let _ = std::fs::copy(build_dir().join(p), sys.bin(p));
        }
    }
    let mut cmd = Command::new(sys.bin("qmail-popup"));
    cmd.arg(ME)
        .arg(cp)
        .arg("/bin/true")
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("POP3PLAINTEXT", "1");
    if let Some(ip) = ip {
        cmd.env("TCPREMOTEIP", ip);
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_string();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(input.as_bytes());
    });
    let out = child.wait_with_output().unwrap();
    let _ = writer.join();
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.code().unwrap_or(-1),
    )
}

fn pop_login(user: &str, pass: &str) -> String {
    format!("USER {user}\r\nPASS {pass}\r\nQUIT\r\n")
}

fn popup_system() -> System {
    let sys = system();
    sys.control("pop3authdelay", "0\n");
    sys
}

/// Parallel sessions guessing at once get exactly the limit's checkpassword runs
/// between them (each failure is reserved before checkpassword runs), per address and
/// per account.
#[test]
fn parallel_failed_smtp_logins_run_checkpassword_only_up_to_the_limit() {
    let sys = system();
    sys.control("authfaillimit", "2\n");
    sys.control("authfailaccountlimit", "0\n");
    let (cp, runs) = counting_checkpassword(&sys);
    let parallel = |ips: &[String], user: &str| -> usize {
        std::thread::scope(|s| {
            let hs: Vec<_> = ips
                .iter()
                .map(|ip| {
                    let (sys, cp) = (&sys, &cp);
                    s.spawn(move || auth_session(sys, cp, ip, user.as_bytes(), b"bad").1)
                })
                .collect();
            hs.into_iter()
                .map(|h| h.join().unwrap().matches("auth failed").count())
                .sum()
        })
    };
    let failed = parallel(&vec!["10.3.3.3".to_string(); 6], "joe");
    assert_eq!(run_count(&runs), 2);
    assert_eq!(failed, 2);
    // per account, from six addresses
    sys.control("authfaillimit", "0\n");
    sys.control("authfailaccountlimit", "2\n");
    std::fs::write(&runs, "").unwrap();
    let ips: Vec<String> = (1..=6).map(|i| format!("10.4.4.{i}")).collect();
    let failed = parallel(&ips, "ann");
    assert_eq!(run_count(&runs), 2);
    assert_eq!(failed, 2);
}

#[test]
fn parallel_failed_pop3_logins_run_checkpassword_only_up_to_the_limit() {
    need_root!();
    let sys = popup_system();
    sys.control("authfaillimit", "2\n");
    sys.control("authfailaccountlimit", "0\n");
    let (cp, runs) = counting_checkpassword(&sys);
    let failed: usize = std::thread::scope(|s| {
        let hs: Vec<_> = (0..6)
            .map(|_| {
                let (sys, cp) = (&sys, &cp);
                s.spawn(move || {
                    popup_session(sys, cp, Some("10.5.5.5"), &pop_login("joe", "bad")).1
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| h.join().unwrap().matches("auth failed").count())
            .sum()
    });
    assert_eq!(run_count(&runs), 2);
    assert_eq!(failed, 2);
}

/// A line field by field: `prog: pid N: auth failed ip=IP mech=M user=NAME`, what an
/// anchored failregex (doc/pop3.md) reads. Returns the ip= field.
fn failure_ip(line: &str, prog: &str) -> String {
    let f: Vec<&str> = line.split(' ').collect();
    assert_eq!(f.len(), 8, "{line}");
    assert_eq!(f[0], format!("{prog}:"), "{line}");
    assert_eq!(&f[3..5], ["auth", "failed"], "{line}");
    assert!(
        f[6].starts_with("mech=") && f[7].starts_with("user="),
        "{line}"
    );
    assert_eq!(line.matches("ip=").count(), 1, "{line}");
    f[5].strip_prefix("ip=").unwrap().to_string()
}

/// A login that looks like a field: the line's one ip= is still the client's, and the
/// user= field comes last.
#[test]
fn a_login_like_ip_field_cannot_pose_as_the_address() {
    let sys = popup_system();
    sys.control("authfaillimit", "0\n");
    sys.control("authfailaccountlimit", "1\n");
    let cp = any_user_checkpassword(&sys);
    let (_, log) = auth_session(&sys, &cp, "192.0.2.8", b"ip=6.6.6.6", b"bad");
    let line = log.lines().find(|l| l.contains("auth failed")).unwrap();
    assert_eq!(failure_ip(line, "qmail-smtpd"), "192.0.2.8");
    assert!(line.ends_with(" user=ip\\0756.6.6.6"), "{line}");
    // the refusal once the account is locked: user= last, one ip=
    let (out, log) = auth_session(&sys, &cp, "192.0.2.9", b"ip=6.6.6.6", b"bad");
    assert!(out.contains("454 4.7.0 too many"), "{out}");
    let line = log.lines().find(|l| l.contains("AUTH refused")).unwrap();
    assert_eq!(line.matches("ip=").count(), 1, "{line}");
    assert!(
        line.ends_with(" ip=192.0.2.9 user=ip\\0756.6.6.6"),
        "{line}"
    );
    // qmail-popup
    sys.control("authfailaccountlimit", "0\n");
    let (_, log, _) = popup_session(
        &sys,
        &cp,
        Some("192.0.2.10"),
        &pop_login("ip=6.6.6.6", "bad"),
    );
    let line = log.lines().find(|l| l.contains("auth failed")).unwrap();
    assert_eq!(failure_ip(line, "qmail-popup"), "192.0.2.10");
    assert!(line.ends_with(" user=ip\\0756.6.6.6"), "{line}");
}

/// Recipients reserved for a transaction that does not queue a message are given back.
#[test]
fn recipients_of_a_transaction_not_queued_are_given_back() {
    let sys = system();
    sys.control("ratelimit", "3\n");
    sys.control("sendermap", "*:*\n");
    let cp = any_user_checkpassword(&sys);
    let mut lines = vec![
        "EHLO c.test".to_string(),
        plain(b"joe", b"secret"),
        "MAIL FROM:<x@example.test>".into(),
    ];
    let rcpts: Vec<String> = (0..3)
        .map(|i| format!("RCPT TO:<r{i}@elsewhere.test>"))
        .collect();
    lines.extend(rcpts.iter().cloned());
    lines.push("RSET".into());
    lines.push("MAIL FROM:<x@example.test>".into());
    lines.extend(rcpts.iter().cloned());
    // a bare LF: nothing queued, the connection closed
    lines.push("DATA".into());
    lines.push("Subject: x\nbody".into());
    lines.push(".".into());
    let (out, _) = session(&sys, &cp, "10.2.2.3", &lines);
    let r = replies(&out);
    assert_eq!(
        r.iter().filter(|l| **l == "250 2.1.5 ok").count(),
        6,
        "{r:?}"
    );
    assert!(r.iter().any(|l| l.starts_with("451 4.5.0")), "{r:?}");
    // all three recipients are still there, and no more
    let r = rcpt_session(&sys, &cp, b"joe", 4);
    assert_eq!(&r[2..5], ["250 2.1.5 ok"; 3], "{r:?}");
    assert!(r[5].starts_with("451 4.7.1"), "{r:?}");
}

/// A system account's password as root (qmail-popup's path) and as qmaild, with the
/// per-account lock: parallel guesses from qmaild are answered one per delay.
#[test]
fn installed_checkpassword_serves_root_and_serialises_qmaild_guesses() {
    need_root!();
    let sys = system();
    let cp = sys.bin("checkpassword");
    use std::os::unix::fs::MetadataExt;
    if std::fs::metadata(&cp).unwrap().mode() & 0o2000 == 0 {
        skip("checkpassword was not installed setgid (no shadow group)");
        return;
    }
    let lockdir = std::fs::metadata(sys.root.join("checkpassword")).unwrap();
    assert_eq!((lockdir.uid(), lockdir.mode() & 0o7777), (0, 0o770));
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let user = TestUser::with_home("vtest_cproot", "Right-pass-8", dir.path());
    let uid = nix::unistd::User::from_name(&user.0)
        .unwrap()
        .unwrap()
        .uid
        .as_raw();
    // root: verified, the subprogram runs as the user
    let marker = dir.path().join("root");
    let (code, err, _, _) =
        checkpassword_as(&sys, 0, 0, b"vtest_cproot\0Right-pass-8\0\0", &marker);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(std::fs::metadata(&marker).unwrap().uid(), uid);
    let marker = dir.path().join("root-wrong");
    let (code, err, _, _) = checkpassword_as(&sys, 0, 0, b"vtest_cproot\0wrong\0\0", &marker);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.trim_end().ends_with("caller=0 user=vtest_cproot"),
        "{err}"
    );
    assert!(!marker.exists());
    // qmaild: two guesses at once for one account take a delay each, one after the other
    sys.control("checkpassworddelay", "1\n");
    let qmaild = nix::unistd::User::from_name("qmaild").unwrap().unwrap();
    let (qu, qg) = (qmaild.uid.as_raw(), qmaild.gid.as_raw());
    let t = Instant::now();
    std::thread::scope(|s| {
        let hs: Vec<_> = ["a", "b"]
            .iter()
            .map(|m| {
                let (sys, marker) = (&sys, dir.path().join(m));
                s.spawn(move || checkpassword_as(sys, qu, qg, b"vtest_cproot\0wrong\0\0", &marker))
            })
            .collect();
        for h in hs {
            let (code, err, _, _) = h.join().unwrap();
            assert_eq!(code, Some(1), "{err}");
        }
    });
    let took = t.elapsed().as_secs_f64();
    assert!(took >= 2.0, "two parallel guesses answered in {took} s");
    // qmaild cannot reach the locks itself
    let out = Command::new("runuser")
        .args(["-u", "qmaild", "--", "ls"])
        .arg(sys.root.join("checkpassword"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    drop(user);
}

/// Every way a counter can be unusable refuses the login before checkpassword runs.
#[test]
fn unusable_counters_fail_closed_everywhere() {
    need_root!();
    let sys = popup_system();
    sys.control("authfaillimit", "5\n");
    sys.control("authfailaccountlimit", "5\n");
    let (cp, runs) = counting_checkpassword(&sys);
    // the account's counter cannot be written (a directory where its file goes)
    let state = sys.root.join("smtpd");
    std::fs::create_dir_all(state.join("authfailaccount")).unwrap();
    let bad = state
        .join("authfailaccount")
        .join(format!("k{}", hex(b"joe")));
    std::fs::create_dir(&bad).unwrap();
    let (out, log) = auth_session(&sys, &cp, "10.6.6.1", b"joe", b"secret");
    assert_eq!(
        replies(&out),
        ["454 4.7.0 temporary authentication failure (#4.3.0)"],
        "{out}"
    );
    assert!(
        log.contains("unable to update the AUTH failure counter"),
        "{log}"
    );
    let (out, log, _) = popup_session(&sys, &cp, Some("10.6.6.1"), &pop_login("joe", "secret"));
    assert!(
        out.contains("-ERR temporary authorization failure"),
        "{out}"
    );
    assert!(
        log.contains("unable to update the failure counter"),
        "{log}"
    );
    // nothing stays held for the address meanwhile
    let ipfile = state
        .join("authfail")
        .join(format!("k{}", hex(b"10.6.6.1")));
    assert_eq!(std::fs::read_to_string(ipfile).unwrap_or_default(), "");
    std::fs::remove_dir(&bad).unwrap();
    // qmail-popup with no usable counter directory at all
    std::fs::rename(&state, sys.root.join("smtpd.away")).unwrap();
    std::fs::write(&state, "not a directory\n").unwrap();
    let (out, _, _) = popup_session(&sys, &cp, Some("10.6.6.2"), &pop_login("joe", "secret"));
    assert!(
        out.contains("-ERR temporary authorization failure"),
        "{out}"
    );
    std::fs::remove_file(&state).unwrap();
    std::fs::rename(sys.root.join("smtpd.away"), &state).unwrap();
    // qmail-smtpd as qmaild, whose counter directory it may not write
    let qmaild = nix::unistd::User::from_name("qmaild").unwrap().unwrap();
    std::fs::remove_dir_all(&state).unwrap();
    std::fs::create_dir(&state).unwrap();
    std::os::unix::fs::chown(&state, Some(qmaild.uid.as_raw()), None).unwrap();
    std::fs::set_permissions(&state, std::os::unix::fs::PermissionsExt::from_mode(0o500)).unwrap();
    let (out, log) = session_as(
        &sys,
        &cp,
        "10.6.6.3",
        &["EHLO c.test".into(), plain(b"joe", b"secret")],
        Some((qmaild.uid.as_raw(), qmaild.gid.as_raw())),
    );
    assert_eq!(
        replies(&out),
        ["454 4.7.0 temporary authentication failure (#4.3.0)"],
        "{out} {log}"
    );
    assert_eq!(run_count(&runs), 0, "checkpassword ran");
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn popup_counts_ipv6_clients_by_their_64() {
    need_root!();
    let sys = popup_system();
    sys.control("authfaillimit", "2\n");
    let cp = any_user_checkpassword(&sys);
    for ip in ["2001:db8:5:6::1", "2001:db8:5:6:ffff::2"] {
        let (out, log, _) = popup_session(&sys, &cp, Some(ip), &pop_login("joe", "bad"));
        assert!(out.contains("-ERR authorization failed"), "{out}");
        assert!(
            log.contains(&format!("auth failed ip={ip} mech=USER user=joe")),
            "{log}"
        );
    }
    let (out, _, _) = popup_session(
        &sys,
        &cp,
        Some("2001:db8:5:6::99"),
        &pop_login("joe", "secret"),
    );
    assert!(
        out.contains("-ERR too many authentication failures from your address"),
        "{out}"
    );
    let (out, _, code) = popup_session(
        &sys,
        &cp,
        Some("2001:db8:5:7::1"),
        &pop_login("joe", "secret"),
    );
    assert!(!out.contains("-ERR") && code == 0, "{out}");
}

#[test]
fn popup_limits_failures_per_account_across_addresses() {
    need_root!();
    let sys = popup_system();
    sys.control("authfaillimit", "0\n");
    sys.control("authfailaccountlimit", "2\n");
    let cp = any_user_checkpassword(&sys);
    for (ip, user) in [
        ("10.0.0.1", "Joe@Example.test"),
        ("10.0.0.2", "joe%example.test"),
    ] {
        let (out, _, _) = popup_session(&sys, &cp, Some(ip), &pop_login(user, "bad"));
        assert!(out.contains("-ERR authorization failed"), "{out}");
    }
    let (out, log, _) = popup_session(
        &sys,
        &cp,
        Some("10.0.0.3"),
        &pop_login("joe@example.test", "secret"),
    );
    assert!(
        out.contains("-ERR [IN-USE] too many authentication failures"),
        "{out}"
    );
    assert!(log.contains("login refused"), "{log}");
    let (out, _, code) = popup_session(
        &sys,
        &cp,
        Some("10.0.0.3"),
        &pop_login("ann@example.test", "secret"),
    );
    assert!(!out.contains("-ERR") && code == 0, "{out}");
}

/// Guessing locks an account for everyone except addresses it logged in from in the
/// last hour.
#[test]
fn an_address_that_logged_in_passes_a_locked_account() {
    let sys = system();
    sys.control("authfaillimit", "0\n");
    sys.control("authfailaccountlimit", "2\n");
    let cp = any_user_checkpassword(&sys);
    let (out, _) = auth_session(&sys, &cp, "10.0.0.9", b"joe", b"secret");
    assert!(out.contains("235 2.7.0"), "{out}");
    for ip in ["10.0.0.1", "10.0.0.2"] {
        let (out, _) = auth_session(&sys, &cp, ip, b"joe", b"bad");
        assert!(out.contains("535 5.7.8"), "{out}");
    }
    let (out, _) = auth_session(&sys, &cp, "10.0.0.3", b"joe", b"secret");
    assert!(out.contains("454 4.7.0 too many"), "{out}");
    let (out, _) = auth_session(&sys, &cp, "10.0.0.9", b"joe", b"secret");
    assert!(out.contains("235 2.7.0"), "{out}");
}

/// No client address (an empty TCPREMOTEIP) is the address `unknown`, not a broken
/// counter that refuses everyone.
#[test]
fn an_empty_client_address_is_counted_as_unknown() {
    need_root!();
    let sys = popup_system();
    let cp = any_user_checkpassword(&sys);
    let (out, log) = auth_session(&sys, &cp, "", b"joe", b"secret");
    assert!(out.contains("235 2.7.0"), "{out} {log}");
    let (out, log, code) = popup_session(&sys, &cp, Some(""), &pop_login("joe", "bad"));
    assert!(out.contains("-ERR authorization failed"), "{out} {log}");
    assert!(log.contains("auth failed ip=unknown mech=USER"), "{log}");
    assert_eq!(code, 0);
    let (out, log, code) = popup_session(&sys, &cp, Some(""), &pop_login("joe", "secret"));
    assert!(!out.contains("-ERR") && code == 0, "{out} {log}");
}
