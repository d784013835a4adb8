//! End-to-end tests of the per-client limits (issue 16): tcpserver's simultaneous and new
//! connections per client address (`-C`, `-N` per `-W`, the MAXCONNIP/MAXCONNRATEIP rule
//! variables, the 421 of `-s`), with clients bound to loopback aliases (127.0.0.2,
//! 127.0.0.3, ...: every 127/8 address is local on Linux), the SMTP run script that
//! passes them, and qmail-smtpd's MAIL, RCPT and AUTH rates per client address shared by
//! concurrent sessions.

use e2e::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Duration;

const ME: &str = "mx.example.test";
const REFUSAL: &str = "421 4.7.0 mx.example.test Error: too many connections from your address";
/// A connection's program: says `ready`, then holds the connection until the client
/// sends a line or closes.
const HOLD: &[&str] = &["/bin/sh", "-c", "echo ready; read x"];

/// Our tcpserver on 127.0.0.1 port 0 with `args` (`-v -1 -H -R -l mx.example.test`
/// first), logging to `log`.
fn tcpserver(args: &[&str], prog: &[&str], log: &Path) -> (Server, SocketAddr) {
    let mut child = Command::new(build_dir().join("tcpserver"))
        .args(["-v", "-1", "-H", "-R", "-l", ME])
        .args(args)
        .args(["127.0.0.1", "0"])
        .args(prog)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("start tcpserver");
    let port = printed_port(&mut child);
    (Server(child), SocketAddr::from(([127, 0, 0, 1], port)))
}

/// A TCP connection from the loopback address `from` to `to`.
fn connect_from(from: &str, to: SocketAddr) -> TcpStream {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, SockaddrStorage, bind, socket};
    use std::os::fd::AsRawFd;
    let src = SocketAddr::new(from.parse().unwrap(), 0);
    let fd = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .unwrap();
    bind(fd.as_raw_fd(), &SockaddrStorage::from(src)).unwrap();
    nix::sys::socket::connect(fd.as_raw_fd(), &SockaddrStorage::from(to)).unwrap();
    let s = TcpStream::from(fd);
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s
}

/// The first line the server sends (without CR LF; empty at EOF).
fn first_line(s: &TcpStream) -> String {
    let mut line = String::new();
    let _ = BufReader::new(s).read_line(&mut line);
    line.trim_end().to_string()
}

/// Connect from `from` and read the first line: `ready` when served.
fn greet(from: &str, to: SocketAddr) -> (TcpStream, String) {
    let s = connect_from(from, to);
    let l = first_line(&s);
    (s, l)
}

fn log_text(log: &Path) -> String {
    std::fs::read_to_string(log).unwrap_or_default()
}

/// Wait until `log` holds `n` lines containing `needle`.
fn wait_log_count(log: &Path, needle: &str, n: usize) {
    wait_until(&format!("{n} log lines with {needle:?}"), 30, || {
        (log_text(log).matches(needle).count() >= n).then_some(())
    });
}

#[test]
fn the_connection_over_the_per_address_limit_is_refused_with_421() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let (_srv, addr) = tcpserver(&["-s", "-C", "2"], HOLD, &log);
    let (a1, l1) = greet("127.0.0.2", addr);
    let (_a2, l2) = greet("127.0.0.2", addr);
    assert_eq!((l1.as_str(), l2.as_str()), ("ready", "ready"));
    // the third from 127.0.0.2 gets the reply and the end of the connection
    let mut refused = connect_from("127.0.0.2", addr);
    let mut got = String::new();
    refused.read_to_string(&mut got).unwrap();
    assert_eq!(got, format!("{REFUSAL}\r\n"));
    // another address is not affected
    let (_b1, l) = greet("127.0.0.3", addr);
    assert_eq!(l, "ready");
    // the refused client took no child slot: three children started
    wait_log_count(&log, "tcpserver: ok ", 3);
    wait_log_count(&log, " refused ", 1);
    let text = log_text(&log);
    let refusals: Vec<&str> = text.lines().filter(|l| l.contains(" refused ")).collect();
    assert_eq!(refusals.len(), 1, "{text}");
    assert!(
        refusals[0].starts_with("tcpserver: refused 127.0.0.2 port ")
            && refusals[0].ends_with(": too many connections from this address (2 open, limit 2)"),
        "{text}"
    );
    assert_eq!(text.matches("tcpserver: ok ").count(), 3, "{text}");
    // once one of its connections ends, 127.0.0.2 is served again
    drop(a1);
    wait_log_count(&log, "tcpserver: end ", 1);
    let (_a3, l) = greet("127.0.0.2", addr);
    assert_eq!(l, "ready");
}

#[test]
fn without_s_a_refused_client_is_just_closed_also_when_forking() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    // a banner (even an empty one) makes tcpserver fork for each connection, the path
    // DNS and ident lookups take: the count follows the forked children as well
    let (_srv, addr) = tcpserver(&["-C", "1", "-B", ""], HOLD, &log);
    let (a, l) = greet("127.0.0.2", addr);
    assert_eq!(l, "ready");
    let mut refused = connect_from("127.0.0.2", addr);
    let mut got = Vec::new();
    let _ = refused.read_to_end(&mut got);
    assert!(got.is_empty(), "{got:?}");
    wait_log_count(&log, "tcpserver: refused 127.0.0.2 port ", 1);
    drop(a);
    wait_log_count(&log, "tcpserver: end ", 1);
    assert_eq!(greet("127.0.0.2", addr).1, "ready");
}

fn rules(dir: &Path, text: &str) -> PathBuf {
    let cdb = dir.join("rules.cdb");
    let out = output_with_input(
        Command::new(build_dir().join("tcprules"))
            .arg(&cdb)
            .arg(dir.join("rules.tmp")),
        text,
    );
    assert!(out.status.success(), "tcprules refused {text:?}");
    cdb
}

#[test]
fn an_exempt_address_is_not_limited() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let cdb = rules(
        dir.path(),
        "127.0.0.4:allow,MAXCONNIP=\"0\",MAXCONNRATEIP=\"0\"\n\
         127.0.0.5:allow,MAXCONNIP=\"2\"\n\
         127.0.0.6:allow,MAXCONNIP=\"many\"\n\
         :allow\n",
    );
    let cdb = cdb.to_str().unwrap();
    let (_srv, addr) = tcpserver(&["-s", "-C", "1", "-N", "3", "-x", cdb], HOLD, &log);
    // exempt from both limits: five at once, more than -N in the window
    let held: Vec<_> = (0..5).map(|_| greet("127.0.0.4", addr)).collect();
    assert!(held.iter().all(|(_, l)| l == "ready"), "{}", log_text(&log));
    // a rule's own limit replaces -C
    let (_c1, l1) = greet("127.0.0.5", addr);
    let (_c2, l2) = greet("127.0.0.5", addr);
    let (_c3, l3) = greet("127.0.0.5", addr);
    assert_eq!([l1, l2, l3.clone()], ["ready", "ready", REFUSAL], "{l3}");
    // the default rule: -C 1; a malformed variable: -C 1 too, with a warning
    let (_d1, l1) = greet("127.0.0.7", addr);
    let (_d2, l2) = greet("127.0.0.7", addr);
    assert_eq!([l1, l2], ["ready", REFUSAL]);
    let (_e1, l1) = greet("127.0.0.6", addr);
    let (_e2, l2) = greet("127.0.0.6", addr);
    assert_eq!([l1, l2], ["ready", REFUSAL]);
    wait_log_count(
        &log,
        "rule for 127.0.0.6: MAXCONNIP=many is not a number",
        2,
    );
    let text = log_text(&log);
    assert!(
        text.contains("tcpserver: warning: rule for 127.0.0.6: MAXCONNIP=many is not a number"),
        "{text}"
    );
    assert!(!text.contains("refused 127.0.0.4 "), "{text}");
}

#[test]
fn a_connection_rate_limit_trips_and_resets_after_its_window() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let (_srv, addr) = tcpserver(
        &["-s", "-N", "3", "-W", "2"],
        &["/bin/sh", "-c", "echo ready"],
        &log,
    );
    for _ in 0..3 {
        assert_eq!(greet("127.0.0.8", addr).1, "ready");
    }
    // the fourth inside the window is refused, whether the others still run or not
    assert_eq!(greet("127.0.0.8", addr).1, REFUSAL);
    assert_eq!(greet("127.0.0.9", addr).1, "ready");
    wait_log_count(&log, "tcpserver: refused 127.0.0.8 port ", 1);
    assert!(
        log_text(&log).contains("tcpserver: refused 127.0.0.8 port ")
            && log_text(&log)
                .contains(": too many new connections from this address (3 in 2 s, limit 3)"),
        "{}",
        log_text(&log)
    );
    // refused attempts do not count: once the window is over it is served again
    wait_until("127.0.0.8 served again after the window", 20, || {
        (greet("127.0.0.8", addr).1 == "ready").then_some(())
    });
}

/// Many clients of one address at once: exactly the limit is served, the rest refused,
/// and the counts come back to zero when they leave.
#[test]
fn parallel_clients_of_one_address_are_counted_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let (_srv, addr) = tcpserver(&["-s", "-C", "5", "-c", "100"], HOLD, &log);
    let run = |n: usize| -> (usize, usize) {
        let barrier = std::sync::Barrier::new(n);
        let lines: Vec<String> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..n)
                .map(|_| {
                    s.spawn(|| {
                        let (conn, l) = greet("127.0.0.10", addr);
                        // hold every connection until all clients have their answer
                        barrier.wait();
                        drop(conn);
                        l
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let ready = lines.iter().filter(|l| *l == "ready").count();
        let refused = lines.iter().filter(|l| *l == REFUSAL).count();
        assert_eq!(ready + refused, n, "{lines:?}");
        (ready, refused)
    };
    assert_eq!(run(30), (5, 25));
    wait_log_count(&log, "tcpserver: end ", 5);
    wait_until("the count back at 0", 30, || {
        log_text(&log)
            .lines()
            .last()
            .is_some_and(|l| l == "tcpserver: status: 0/100")
            .then_some(())
    });
    assert_eq!(run(12), (5, 7));
}

/// The installed SMTP run scripts (25 and 587) pass the per-client limits from the
/// control files.
#[test]
fn the_smtp_run_scripts_limit_each_client() {
    let sys = System::install(ME, &["example.test"]);
    sys.control("listenaddress", "127.0.0.1\n");
    sys.control("clientconcurrency", "1\n");
    for (service, port_file) in [
        ("qmail-smtpd", "smtpdport"),
        ("qmail-submission", "submissionport"),
    ] {
        let port = free_port();
        sys.control(port_file, &format!("{port}\n"));
        let log = sys.root.join(format!("{service}.log"));
        let mut child = Command::new("sh")
            .arg("./run")
            .current_dir(sys.root.join("supervise").join(service))
            .stdout(std::fs::File::create(&log).unwrap())
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        wait_until("the run script's tcpserver", 30, || {
            if let Ok(Some(st)) = child.try_wait() {
                panic!("{service} run script ended: {st}");
            }
            log_text(&log)
                .contains("tcpserver: status: 0/40")
                .then_some(())
        });
        let _srv = Server(child);
        let (_first, l) = greet("127.0.0.11", addr);
        assert!(l.starts_with("220 mx.example.test ESMTP"), "{service}: {l}");
        let (_second, l) = greet("127.0.0.11", addr);
        assert_eq!(l, REFUSAL, "{service}");
        let (_other, l) = greet("127.0.0.12", addr);
        assert!(l.starts_with("220 "), "{service}: {l}");
    }
}

// ---- qmail-smtpd's per-client rates ----

/// An installation with a counter directory and short client windows.
fn smtp_system() -> System {
    let sys = System::install(ME, &["example.test"]);
    sys.control("rcpthosts", "example.test\n");
    sys.control("authfaildelay", "0\n");
    sys.control("clientratewindow", "2\n");
    std::fs::create_dir_all(sys.root.join("smtpd")).unwrap();
    sys
}

/// One qmail-smtpd session on pipes, from `ip`, driven a command at a time.
struct Smtp {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Smtp {
    fn start(sys: &System, ip: &str, args: &[&str], env: &[(&str, &str)]) -> Smtp {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(sys.root.join("smtpd.log"))
            .unwrap();
        let mut child = Command::new(sys.bin("qmail-smtpd"))
            .args(args)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("TCPREMOTEIP", ip)
            .env("TCPLOCALIP", "127.0.0.1")
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("run qmail-smtpd");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut s = Smtp {
            child,
            stdin,
            stdout,
        };
        let greeting = s.reply();
        assert!(greeting.starts_with("220 "), "{greeting}");
        assert!(s.cmd("EHLO client.test").starts_with("250 "));
        s
    }

    /// The last line of the next reply.
    fn reply(&mut self) -> String {
        loop {
            let mut l = String::new();
            if self.stdout.read_line(&mut l).unwrap_or(0) == 0 {
                return String::new();
            }
            let l = l.trim_end().to_string();
            if l.as_bytes().get(3) != Some(&b'-') {
                return l;
            }
        }
    }

    fn cmd(&mut self, line: &str) -> String {
        self.stdin
            .write_all(format!("{line}\r\n").as_bytes())
            .unwrap();
        self.reply()
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.stdin.write_all(b"QUIT\r\n");
        let _ = self.child.wait();
    }
}

fn smtpd_log(sys: &System) -> String {
    std::fs::read_to_string(sys.root.join("smtpd.log")).unwrap_or_default()
}

#[test]
fn the_message_rate_is_shared_by_concurrent_sessions_and_resets() {
    let sys = smtp_system();
    sys.control("clientmessagerate", "2\n");
    let ip = "10.3.3.3";
    let mut a = Smtp::start(&sys, ip, &[], &[]);
    let mut b = Smtp::start(&sys, ip, &[], &[]);
    assert_eq!(a.cmd("MAIL FROM:<x@other.test>"), "250 2.1.0 ok");
    assert_eq!(b.cmd("MAIL FROM:<y@other.test>"), "250 2.1.0 ok");
    assert_eq!(a.cmd("RSET"), "250 2.0.0 flushed");
    let refused = "450 4.7.1 Error: too much mail from 10.3.3.3";
    assert_eq!(a.cmd("MAIL FROM:<x@other.test>"), refused);
    // the same limit, another address: its own count; a relay client and an exempting
    // rule variable: none
    let mut c = Smtp::start(&sys, "10.3.3.4", &[], &[]);
    assert_eq!(c.cmd("MAIL FROM:<z@other.test>"), "250 2.1.0 ok");
    let mut relay = Smtp::start(&sys, ip, &[], &[("RELAYCLIENT", "")]);
    assert_eq!(relay.cmd("MAIL FROM:<r@other.test>"), "250 2.1.0 ok");
    let mut exempt = Smtp::start(&sys, ip, &[], &[("CLIENTMESSAGERATE", "0")]);
    assert_eq!(exempt.cmd("MAIL FROM:<e@other.test>"), "250 2.1.0 ok");
    let log = smtpd_log(&sys);
    assert!(
        log.contains(
            "refused MAIL <x@other.test> from 10.3.3.3: 450 4.7.1 Error: too much mail from \
             10.3.3.3 (clientmessagerate: 2 per 2 s)"
        ),
        "{log}"
    );
    // refused commands are not counted: once the window moved on, MAIL works again
    wait_until("MAIL accepted again after the window", 20, || {
        (a.cmd("MAIL FROM:<x@other.test>") == "250 2.1.0 ok").then_some(())
    });
}

#[test]
fn the_recipient_rate_is_shared_by_concurrent_sessions_and_resets() {
    let sys = smtp_system();
    sys.control("clientrcptrate", "3\n");
    let ip = "2001:db8:5:5::1";
    let mut a = Smtp::start(&sys, ip, &[], &[]);
    // another address of the same /64 is the same client
    let mut b = Smtp::start(&sys, "2001:db8:5:5::2", &[], &[]);
    assert_eq!(a.cmd("MAIL FROM:<x@other.test>"), "250 2.1.0 ok");
    assert_eq!(b.cmd("MAIL FROM:<y@other.test>"), "250 2.1.0 ok");
    assert_eq!(a.cmd("RCPT TO:<a@example.test>"), "250 2.1.5 ok");
    // refused recipients count too (Postfix counts RCPT commands)
    assert!(b.cmd("RCPT TO:<b@elsewhere.test>").starts_with("553 "));
    assert_eq!(a.cmd("RCPT TO:<c@example.test>"), "250 2.1.5 ok");
    assert_eq!(
        b.cmd("RCPT TO:<d@example.test>"),
        "450 4.7.1 Error: too many recipients from 2001:db8:5:5::2"
    );
    assert_eq!(
        a.cmd("RCPT TO:<e@example.test>"),
        "450 4.7.1 Error: too many recipients from 2001:db8:5:5::1"
    );
    let mut other = Smtp::start(&sys, "2001:db8:5:6::1", &[], &[]);
    assert_eq!(other.cmd("MAIL FROM:<o@other.test>"), "250 2.1.0 ok");
    assert_eq!(other.cmd("RCPT TO:<o@example.test>"), "250 2.1.5 ok");
    wait_until("RCPT accepted again after the window", 20, || {
        (a.cmd("RCPT TO:<f@example.test>") == "250 2.1.5 ok").then_some(())
    });
}

/// A checkpassword accepting any user with the password `secret`.
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

fn plain(user: &str, pass: &str) -> String {
    use base64::prelude::*;
    format!(
        "AUTH PLAIN {}",
        BASE64_STANDARD.encode(format!("\0{user}\0{pass}"))
    )
}

#[test]
fn the_auth_rate_is_shared_by_concurrent_sessions_and_resets() {
    let sys = smtp_system();
    sys.control("clientauthrate", "2\n");
    let cp = any_user_checkpassword(&sys);
    let cp = cp.to_str().unwrap();
    let args = ["--submission", cp, "/bin/true"];
    let env = [("AUTHPLAINTEXT", "")];
    let ip = "10.4.4.4";
    let mut a = Smtp::start(&sys, ip, &args, &env);
    let mut b = Smtp::start(&sys, ip, &args, &env);
    assert!(a.cmd(&plain("joe", "wrong")).starts_with("535 "));
    assert!(b.cmd(&plain("joe", "wrong")).starts_with("535 "));
    let refused = "450 4.7.1 Error: too many AUTH commands from 10.4.4.4";
    // the right password does not help: the command itself is over the rate
    assert_eq!(a.cmd(&plain("joe", "secret")), refused);
    assert_eq!(b.cmd(&plain("joe", "secret")), refused);
    assert!(
        smtpd_log(&sys).contains(
            "AUTH refused: too many AUTH commands ip=10.4.4.4 (clientauthrate: 2 per 2 s)"
        ),
        "{}",
        smtpd_log(&sys)
    );
    // each refused AUTH counts as a client error, so ask from fresh sessions
    wait_until("AUTH accepted again after the window", 20, || {
        let r = Smtp::start(&sys, ip, &args, &env).cmd(&plain("joe", "secret"));
        assert!(r == refused || r.starts_with("235 "), "{r}");
        r.starts_with("235 ").then_some(())
    });
}

/// Many parallel sessions of one address get exactly the recipient rate between them.
#[test]
fn parallel_sessions_share_the_client_rate_exactly() {
    let sys = smtp_system();
    sys.control("clientrcptrate", "20\n");
    sys.control("clientratewindow", "3600\n");
    let accepted: usize = std::thread::scope(|s| {
        let hs: Vec<_> = (0..10)
            .map(|_| {
                s.spawn(|| {
                    let mut c = Smtp::start(&sys, "10.6.6.6", &[], &[]);
                    assert_eq!(c.cmd("MAIL FROM:<x@other.test>"), "250 2.1.0 ok");
                    (0..5)
                        .filter(|i| {
                            c.cmd(&format!("RCPT TO:<r{i}@example.test>")) == "250 2.1.5 ok"
                        })
                        .count()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert_eq!(accepted, 20);
}
