//! The installed services under our svscan: qmail-send (+log) driven by qmailctl, and
//! the network services' run scripts (smtpd, submission, pop3d) answering on loopback
//! ports set in control files. As root, also the users each part runs as.

use e2e::*;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use e2e::wait_until as wait_for;

fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

use e2e::svscan::Scan;

fn svstat(sys: &System, dir: &Path) -> String {
    let o = Command::new(sys.bin("svstat")).arg(dir).output().unwrap();
    text(&o)
        .trim_end()
        .strip_prefix(&format!("{}: ", dir.display()))
        .unwrap_or_default()
        .to_string()
}

fn up_pid(s: &str) -> Option<u32> {
    s.strip_prefix("up (pid ")?.split(')').next()?.parse().ok()
}

#[track_caller]
fn wait_up(sys: &System, dir: &Path) -> u32 {
    wait_for(&format!("{} up", dir.display()), 30, || {
        up_pid(&svstat(sys, dir))
    })
}

/// The port the network service in `dir` listens on. The tests set its port to 0 in
/// control, so its tcpserver takes one of the kernel's choice; the run script execs
/// tcpserver, so svstat's pid is tcpserver's, and /proc tells its listening port.
#[track_caller]
fn service_port(sys: &System, dir: &Path) -> u16 {
    wait_for(&format!("{} listening", dir.display()), 30, || {
        up_pid(&svstat(sys, dir)).and_then(listen_port)
    })
}

fn qmailctl(sys: &System, scan: &Scan, verb: &str) -> Output {
    Command::new(sys.bin("qmailctl"))
        .arg("-s")
        .arg(&scan.dir)
        .arg(verb)
        .output()
        .unwrap()
}

fn log_text(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("log/main/current")).unwrap_or_default()
}

#[test]
fn qmail_send_under_svscan_with_qmailctl() {
    let sys = System::install("mx.example.test", &[]);
    let mut scan = Scan::start(&sys, &["qmail-send"]);
    let send = scan.svc("qmail-send");
    let log = send.join("log");
    let pid = wait_up(&sys, &send);
    let logpid = wait_up(&sys, &log);
    wait_for("qmail-send's status line in its multilog", 30, || {
        log_text(&send).contains("status: local").then_some(())
    });
    let first = log_text(&send);
    assert!(first.starts_with("@4000"), "{first}");
    if is_root() {
        let qmaill = nix::unistd::User::from_name("qmaill").unwrap().unwrap();
        let qmails = nix::unistd::User::from_name("qmails").unwrap().unwrap();
        assert_eq!(
            uid_of(logpid),
            Some(qmaill.uid.as_raw()),
            "multilog as qmaill"
        );
        assert_eq!(
            std::fs::metadata(log.join("main")).unwrap().uid(),
            qmaill.uid.as_raw()
        );
        wait_for("qmail-start became qmail-send as qmails", 30, || {
            (uid_of(pid) == Some(qmails.uid.as_raw())).then_some(())
        });
    }

    let o = qmailctl(&sys, &scan, "stat");
    assert!(o.status.success(), "{o:?}");
    let out = text(&o);
    assert!(
        out.contains(&format!("{}: up (pid {pid})", send.display())),
        "{out}"
    );
    assert!(
        out.contains(&format!("{}: up (pid {logpid})", log.display())),
        "{out}"
    );
    assert!(out.contains("messages in queue: 0"), "{out}");

    for verb in ["doqueue", "reload", "queue", "help"] {
        let o = qmailctl(&sys, &scan, verb);
        assert!(o.status.success(), "{verb}: {o:?}");
    }
    assert_eq!(qmailctl(&sys, &scan, "nonsense").status.code(), Some(100));

    let o = qmailctl(&sys, &scan, "pause");
    assert!(o.status.success(), "{o:?}");
    wait_for("paused", 30, || {
        svstat(&sys, &send).ends_with(", paused").then_some(())
    });
    assert!(qmailctl(&sys, &scan, "cont").status.success());
    wait_for("continued", 30, || {
        (!svstat(&sys, &send).contains("paused")).then_some(())
    });

    assert!(qmailctl(&sys, &scan, "stop").status.success());
    wait_for("send down", 60, || {
        svstat(&sys, &send).starts_with("down ").then_some(())
    });
    wait_for("log down", 30, || {
        svstat(&sys, &log).starts_with("down ").then_some(())
    });
    assert!(qmailctl(&sys, &scan, "start").status.success());
    let pid2 = wait_up(&sys, &send);
    wait_up(&sys, &log);
    assert_ne!(pid, pid2);

    // kill -9: supervise restarts qmail-send
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid2 as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
    let pid3 = wait_for("restart after kill -9", 30, || {
        up_pid(&svstat(&sys, &send)).filter(|&p| p != pid2)
    });
    assert_ne!(pid3, pid2);

    // cdb: the rules text becomes the cdb tcpserver reads
    sys.control("tcp.smtp", "127.0.0.1:allow,RELAYCLIENT=\"\"\n:allow\n");
    let o = qmailctl(&sys, &scan, "cdb");
    assert!(o.status.success(), "{o:?}");
    let cdb = std::fs::read(sys.root.join("control/tcp.smtp.cdb")).unwrap();
    assert!(cdb.len() > 2048);
    assert!(cdb.windows(9).any(|w| w == b"127.0.0.1"));

    // TERM to svscan stops everything, the logger last, and svscan exits 0
    let st = scan.stop().unwrap();
    assert!(st.success(), "{st:?}");
    assert_eq!(svstat(&sys, &send), "supervise not running");
    assert_eq!(svstat(&sys, &log), "supervise not running");
    let cur = std::fs::metadata(log.join("main/current")).unwrap();
    assert_eq!(cur.mode() & 0o100, 0o100, "multilog exited cleanly");
    let _ = qmailctl(&sys, &scan, "stat");
}

/// The niceness of process `pid` (field 19 of /proc/PID/stat).
fn nice_of(pid: u32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // the fields after the command name, which is in parentheses and may hold spaces
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(16)?.parse().ok()
}

#[track_caller]
fn greeting(port: u16) -> String {
    wait_for(&format!("a greeting on port {port}"), 30, || {
        let s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        let mut line = String::new();
        BufReader::new(&s).read_line(&mut line).ok()?;
        (!line.is_empty()).then_some(line)
    })
}

#[test]
fn network_run_scripts_listen_on_configured_ports() {
    let sys = System::install("mx.example.test", &[]);
    sys.control("listenaddress", "127.0.0.1\n");
    sys.control("smtpdport", "0\n");
    sys.control("submissionport", "0\n");
    sys.control("pop3dport", "0\n");
    sys.control("concurrencyincoming", "5\n");
    sys.control("tcp.smtp", "127.0.0.1:allow,RELAYCLIENT=\"\"\n");
    let _scan = {
        let scan = Scan::start(&sys, &["qmail-smtpd", "qmail-submission", "qmail-pop3d"]);
        for s in ["qmail-smtpd", "qmail-submission", "qmail-pop3d"] {
            wait_up(&sys, &scan.svc(s));
            wait_up(&sys, &scan.svc(s).join("log"));
        }
        scan
    };
    let p25 = service_port(&sys, &_scan.svc("qmail-smtpd"));
    let p587 = service_port(&sys, &_scan.svc("qmail-submission"));
    let p110 = service_port(&sys, &_scan.svc("qmail-pop3d"));
    // the run scripts gave tcpserver the configured address and port (0: any free one)
    for (s, prog) in [
        ("qmail-smtpd", "qmail-smtpd"),
        ("qmail-submission", "qmail-smtpd"),
        ("qmail-pop3d", "qmail-popup"),
    ] {
        let pid = up_pid(&svstat(&sys, &_scan.svc(s))).unwrap();
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
        let want = format!("\x00127.0.0.1\x000\x00{prog}\x00");
        assert!(
            String::from_utf8_lossy(&cmdline).contains(&want),
            "{s}: {}",
            String::from_utf8_lossy(&cmdline).replace('\0', " ")
        );
    }
    // the SMTP intake yields to delivery (control/nicesmtpd, default 5); POP3 does not
    for (s, want) in [
        ("qmail-smtpd", 5),
        ("qmail-submission", 5),
        ("qmail-pop3d", 0),
    ] {
        let pid = up_pid(&svstat(&sys, &_scan.svc(s))).unwrap();
        assert_eq!(nice_of(pid), Some(want), "{s}");
    }
    let g = greeting(p25);
    assert!(g.starts_with("220 "), "{g}");
    let g = greeting(p587);
    assert!(g.starts_with("220 "), "{g}");
    let g = greeting(p110);
    assert!(g.starts_with("+OK"), "{g}");
    // the run script built the rules cdb from the text
    assert!(sys.root.join("control/tcp.smtp.cdb").is_file());
    // tcpserver -v logs through multilog, with the configured limit
    let smtpd = _scan.svc("qmail-smtpd");
    wait_for("tcpserver status in the smtpd log", 30, || {
        log_text(&smtpd).contains("status: ").then_some(())
    });
    assert!(log_text(&smtpd).contains("/5"), "{}", log_text(&smtpd));
    assert_eq!(
        log_text(&smtpd).contains("qmail-smtpd: not started by root: everything runs as"),
        !is_root()
    );
    if is_root() {
        // while a session is open, qmail-smtpd runs as qmaild
        let mut s = std::net::TcpStream::connect(("127.0.0.1", p25)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut line = String::new();
        BufReader::new(&s).read_line(&mut line).unwrap();
        let qmaild = nix::unistd::User::from_name("qmaild").unwrap().unwrap();
        let exe = sys.bin("qmail-smtpd");
        let pids = wait_for("a qmail-smtpd process", 30, || {
            let p = pids_of(&exe);
            (!p.is_empty()).then_some(p)
        });
        // a session of the greetings above may end (and go) between the scan and the read
        for uid in pids.iter().filter_map(|&p| uid_of(p)) {
            assert_eq!(uid, qmaild.uid.as_raw());
        }
        // the run script's tcpserver -A (control/sessionsperexec): a session's process is
        // forked from a qmail-smtpd exec'ed ahead, its parent
        assert!(
            pids.iter()
                .any(|&p| parent_of(p).is_some_and(|pp| pids.contains(&pp))),
            "no qmail-smtpd forked from another: {pids:?}"
        );
        let _ = s.write_all(b"QUIT\r\n");
    }
}

/// The installed init script (pointed at a temporary service dir, pid file and log)
/// starts svscanboot, which clears the environment and execs svscan; stop shuts
/// everything down in order.
#[test]
fn init_script_runs_svscanboot() {
    let sys = System::install("mx.example.test", &[]);
    let tmp = tempfile::Builder::new()
        .prefix("init-e2e")
        .tempdir_in("/tmp")
        .unwrap();
    let sv = tmp.path().join("service");
    std::fs::create_dir(&sv).unwrap();
    std::os::unix::fs::symlink(sys.root.join("supervise/qmail-send"), sv.join("qmail-send"))
        .unwrap();
    let pidfile = tmp.path().join("svscan.pid");
    let script = std::fs::read_to_string(sys.root.join("boot/svscan.init"))
        .unwrap()
        .replace(
            "SERVICE_DIR=/service",
            &format!("SERVICE_DIR={}", sv.display()),
        )
        .replace(
            "PIDFILE=/run/svscan.pid",
            &format!("PIDFILE={}", pidfile.display()),
        )
        .replace(
            "LOG=/var/log/svscan.log",
            &format!("LOG={}", tmp.path().join("svscan.log").display()),
        );
    assert!(script.contains(&format!("HOME_DIR={}", sys.root.display())));
    let init = tmp.path().join("svscan.init");
    std::fs::write(&init, script).unwrap();
    let run = |verb: &str| {
        Command::new("sh")
            .arg(&init)
            .arg(verb)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let o = run("start");
    assert!(o.status.success(), "{o:?}");
    let send = sv.join("qmail-send");
    wait_up(&sys, &send);
    wait_up(&sys, &send.join("log"));
    let o = run("status");
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let pid: u32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(
        std::fs::read_link(format!("/proc/{pid}/exe")).unwrap(),
        sys.bin("svscan")
    );
    let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    let vars: Vec<&[u8]> = env.split(|&c| c == 0).filter(|v| !v.is_empty()).collect();
    assert_eq!(vars.len(), 1, "svscanboot leaves only PATH");
    assert!(vars[0].starts_with(format!("PATH={}/bin:", sys.root.display()).as_bytes()));
    let o = run("stop");
    assert!(o.status.success(), "{o:?}");
    assert_eq!(svstat(&sys, &send), "supervise not running");
    assert_eq!(run("status").status.code(), Some(3));
}

/// The first line a TLS server sends, read with Python's ssl module.
#[track_caller]
fn tls_greeting(port: u16) -> String {
    const PY: &str = "import socket, ssl, sys\n\
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE\n\
s = ctx.wrap_socket(socket.create_connection(('127.0.0.1', int(sys.argv[1])), timeout=20))\n\
print(s.makefile('rb').readline().decode(), end='')\n";
    wait_for(&format!("a TLS greeting on port {port}"), 30, || {
        let o = Command::new("python3")
            .args(["-c", PY, &port.to_string()])
            .output()
            .ok()?;
        let t = text(&o);
        (o.status.success() && !t.is_empty()).then_some(t)
    })
}

#[test]
fn tls_run_scripts_smtps_and_pop3ds() {
    let sys = System::install("mx.example.test", &[]);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["mx.example.test".into()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    sys.control(
        "servercert.pem",
        &format!("{}{}", cert.pem(), key.serialize_pem()),
    );
    sys.control("listenaddress", "127.0.0.1\n");
    sys.control("smtpsport", "0\n");
    sys.control("pop3dsport", "0\n");
    let scan = Scan::start(&sys, &["qmail-smtps", "qmail-pop3ds"]);
    for s in ["qmail-smtps", "qmail-pop3ds"] {
        wait_up(&sys, &scan.svc(s));
        wait_up(&sys, &scan.svc(s).join("log"));
    }
    let p465 = service_port(&sys, &scan.svc("qmail-smtps"));
    let p995 = service_port(&sys, &scan.svc("qmail-pop3ds"));
    let g = tls_greeting(p465);
    assert!(g.starts_with("220 "), "{g}");
    let g = tls_greeting(p995);
    assert!(g.starts_with("+OK"), "{g}");
}

/// The whole system under our svscan, as the quick start runs it: a message sent by
/// SMTP to the qmail-smtpd service, delivered by the qmail-send service to a system
/// user's Maildir, fetched over the qmail-pop3d service with the user's password
/// (root only: it creates the user and checkpassword reads /etc/shadow).
#[test]
fn smtp_in_pop3_out_under_svscan() {
    need_root!();
    let sys = System::install("mx.example.test", &[]);
    local_user("dtpop");
    let mut c = Command::new("chpasswd")
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin
        .take()
        .unwrap()
        .write_all(b"dtpop:Svc-Pass-4242\n")
        .unwrap();
    assert!(c.wait().unwrap().success());
    sys.control("listenaddress", "127.0.0.1\n");
    sys.control("smtpdport", "0\n");
    sys.control("pop3dport", "0\n");
    let scan = Scan::start(&sys, &["qmail-send", "qmail-smtpd", "qmail-pop3d"]);
    for s in ["qmail-send", "qmail-smtpd", "qmail-pop3d"] {
        wait_up(&sys, &scan.svc(s));
    }
    let p25 = service_port(&sys, &scan.svc("qmail-smtpd"));
    let p110 = service_port(&sys, &scan.svc("qmail-pop3d"));
    greeting(p25);
    greeting(p110);
    const PY: &str = r#"
import smtplib, poplib, sys, time
s = smtplib.SMTP('127.0.0.1', int(sys.argv[1]), timeout=30)
s.sendmail('someone@remote.test', ['dtpop@mx.example.test'],
           'Subject: via svscan\r\n\r\nhello\r\n')
s.quit()
deadline = time.time() + 60
while True:
    p = poplib.POP3('127.0.0.1', int(sys.argv[2]), timeout=30)
    p.user('dtpop'); p.pass_('Svc-Pass-4242')
    n = p.stat()[0]
    if n or time.time() > deadline:
        break
    p.quit(); time.sleep(0.5)
print(n)
for i in range(1, n + 1):
    print(b'\n'.join(p.retr(i)[1]).decode())
p.quit()
"#;
    let o = Command::new("python3")
        .args(["-c", PY, &p25.to_string(), &p110.to_string()])
        .output()
        .unwrap();
    let out = text(&o);
    assert!(o.status.success(), "{o:?}");
    // every message is printed, and qmail-send's log, so that an extra one shows where
    // it came from (its Received line) and whether qmail-send delivered twice
    assert!(
        out.starts_with("1\n"),
        "{out}\nqmail-send log:\n{}",
        log_text(&scan.svc("qmail-send"))
    );
    assert!(out.contains("Subject: via svscan"), "{out}");
    // the delivery is in qmail-send's multilog
    let send = scan.svc("qmail-send");
    wait_for("delivery logged", 30, || {
        log_text(&send).contains(": success: ").then_some(())
    });
}

/// The quick start's process (the shell that becomes svscan): SIGINT, as Ctrl-C
/// sends it, when stopped or dropped.
struct Interrupt(Option<Child>);

impl Interrupt {
    fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let mut c = self.0.take()?;
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(c.id() as i32),
            nix::sys::signal::Signal::SIGINT,
        );
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(st)) = c.try_wait() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("svscan did not exit within 60 s of the signal: killed");
        let _ = c.kill();
        c.wait().ok()
    }
}

impl Drop for Interrupt {
    fn drop(&mut self) {
        self.stop();
    }
}

/// init/quickstart (the README's first command) in a temporary directory: the whole
/// system under svscan on loopback ports of the kernel's choice; a message sent by SMTP to the demo
/// mailbox is fetched by POP3; SIGINT (Ctrl-C) stops everything and svscan exits 0.
#[test]
fn quickstart_runs_the_whole_system() {
    let tmp = tempfile::Builder::new()
        .prefix("quick-e2e")
        .tempdir_in("/tmp")
        .unwrap();
    std::fs::set_permissions(
        tmp.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../init/quickstart");
    let out = tmp.path().join("out");
    let child = Command::new("sh")
        .arg(&script)
        .arg(tmp.path().join("run"))
        .env("QUICKSTART_BIN", build_dir())
        // real ports (not 0): the commands it prints name them
        .env("SMTP_PORT", free_port().to_string())
        .env("SUBMISSION_PORT", free_port().to_string())
        .env("POP3_PORT", free_port().to_string())
        .env("SMTPS_PORT", free_port().to_string())
        .env("POP3S_PORT", free_port().to_string())
        .env("IMAP_PORT", free_port().to_string())
        .env("IMAPS_PORT", free_port().to_string())
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut child = Interrupt(Some(child));
    let info = wait_for("the quick start's instructions", 60, || {
        std::fs::read_to_string(&out)
            .ok()
            .filter(|t| t.contains("Ctrl-C stops everything."))
    });
    assert!(
        info.contains("demo@demo.example.test, password Quick-Start-26"),
        "{info}"
    );
    let sys = System::attach(&tmp.path().join("run/qmail"));
    let service = tmp.path().join("run/service");
    let p25 = service_port(&sys, &service.join("qmail-smtpd"));
    let p587 = service_port(&sys, &service.join("qmail-submission"));
    let p110 = service_port(&sys, &service.join("qmail-pop3d"));
    assert!(greeting(p25).starts_with("220 "));
    assert!(greeting(p587).starts_with("220 "));
    assert!(greeting(p110).starts_with("+OK"));
    const PY: &str = r#"
import smtplib, poplib, ssl, sys, time
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
s = smtplib.SMTP('127.0.0.1', int(sys.argv[1]), timeout=30)
s.sendmail('someone@remote.test', ['demo@demo.example.test'],
           'Subject: quick start\r\n\r\nhello\r\n')
s.quit()
deadline = time.time() + 60
while True:
    p = poplib.POP3('127.0.0.1', int(sys.argv[2]), timeout=30)
    p.stls(ctx)
    p.user('demo@demo.example.test'); p.pass_('Quick-Start-26')
    n = p.stat()[0]
    if n or time.time() > deadline:
        break
    p.quit(); time.sleep(0.5)
print(n)
print(b'\n'.join(p.retr(1)[1]).decode())
p.quit()
"#;
    let o = Command::new("python3")
        .args(["-c", PY, &p25.to_string(), &p110.to_string()])
        .output()
        .unwrap();
    let got = text(&o);
    assert!(
        o.status.success() && got.starts_with("1\n") && got.contains("Subject: quick start"),
        "{o:?}"
    );
    // every command the quick start printed works as printed (issue 12)
    let tries: Vec<&str> = info
        .lines()
        .skip_while(|l| !l.starts_with("Try, from another terminal:"))
        .skip(1)
        .take_while(|l| !l.starts_with("Ctrl-C"))
        .map(str::trim)
        .collect();
    // four, and two for IMAP when Dovecot is installed
    assert!(tries.len() == 4 || tries.len() == 6, "{info}");
    for cmd in tries {
        if cmd.starts_with("swaks") && find_tool("swaks").is_none() {
            need_tool!("swaks", "swaks");
        }
        let o = Command::new("sh").arg("-c").arg(cmd).output().unwrap();
        assert!(o.status.success(), "{cmd}: {o:?}");
        if cmd.starts_with("swaks") {
            assert!(text(&o).contains(" 250 2.0.0 ok "), "{cmd}: {}", text(&o));
        }
    }
    // the queue writer and the filter server run as --link-services installs them
    for s in ["qmail-queued", "qmail-qfilterd"] {
        let d = tmp.path().join("run/service").join(s);
        wait_until(&format!("{s} up"), 20, || up_pid(&svstat(&sys, &d)));
    }
    for socket in ["queued/socket", "qfilterd/socket"] {
        let p = tmp.path().join("run/qmail").join(socket);
        wait_until(&format!("{socket} made"), 20, || p.exists().then_some(()));
    }
    let st = child.stop();
    assert!(st.is_some_and(|s| s.success()), "{st:?}");
    for s in [
        "qmail-send",
        "qmail-smtpd",
        "qmail-pop3d",
        "qmail-queued",
        "qmail-qfilterd",
    ] {
        let d = tmp.path().join("run/service").join(s);
        assert_eq!(svstat(&sys, &d), "supervise not running");
    }
}

/// The installed systemd unit names this installation's svscanboot and passes
/// `systemd-analyze verify` (where systemd's tools are installed).
#[test]
fn installed_systemd_unit_verifies() {
    let sys = System::install("mx.example.test", &[]);
    let unit = std::fs::read_to_string(sys.root.join("boot/svscan.service")).unwrap();
    assert!(unit.contains(&format!(
        "ExecStart={}/bin/svscanboot /service",
        sys.root.display()
    )));
    assert!(unit.contains("KillMode=mixed"));
    assert!(sys.bin("svscanboot").is_file());
    let tmp = tempfile::tempdir().unwrap();
    let copy = tmp.path().join("svscan.service");
    std::fs::write(&copy, &unit).unwrap();
    need_tool!("systemd-analyze", "systemd");
    let o = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
        .unwrap();
    assert!(o.status.success() && o.stderr.is_empty(), "{o:?}");
}
#[test]
fn qmail_install_links_services() {
    let sys = System::install("mx.example.test", &[]);
    let tmp = tempfile::tempdir().unwrap();
    let sv = tmp.path().join("service");
    let o = Command::new(sys.bin("qmail-install"))
        .arg("--root")
        .arg(&sys.root)
        .arg("--link-services")
        .arg(&sv)
        .args(["--service", "qmail-send", "--service", "qmail-smtpd"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    assert_eq!(
        std::fs::read_link(sv.join("qmail-send")).unwrap(),
        sys.root.join("supervise/qmail-send")
    );
    assert!(sv.join("qmail-smtpd/log/run").is_file());
    assert!(!sv.join("qmail-pop3d").exists());
    let o = Command::new(sys.bin("qmail-install"))
        .arg("--root")
        .arg(&sys.root)
        .arg("--link-services")
        .arg(&sv)
        .args(["--service", "bogus"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(111));
}
