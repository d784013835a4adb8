//! End-to-end tests of issue 12's "silent mistakes": malformed control values are
//! reported (qmail-showctl, the programs' logs), a world-readable key is warned about,
//! qmail-smtpd logs every refusal. An installed system in a temporary root.

mod smtpd_common;

use e2e::*;
use smtpd_common::*;

fn showctl(sys: &System) -> (i32, String) {
    let out = sys.run_as(None, "qmail-showctl", &[], b"");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn showctl_flags_every_invalid_value_and_shows_every_program() {
    let sys = system();
    let (code, text) = showctl(&sys);
    assert_eq!(code, 0, "{text}");
    // smtpd, POP3, filter, checkpassword and run-script files with their values in force
    for line in [
        "me: mx.example.test\n",
        "concurrencylocal: (default) 10\n",
        "databytes: (default) 0\n",
        "pop3authmax: (default) 3\n",
        "filtertimeout: (default) 300\n",
        "checkpassworddelay: (default) 1\n",
        "listenbacklog: (default) 0\n",
        "authfaildelay: 0\n",
        "read by qmail-smtpd",
        "read by qmail-popup",
    ] {
        assert!(text.contains(line), "{line:?} missing in\n{text}");
    }
    assert!(!text.contains("not read by the mail core"), "{text}");

    sys.control("databytes", "10k\n");
    sys.control("concurrencyremote", "-5\n");
    sys.control("concurrencylocal", "abc\n");
    sys.control("tlsrequired", "yes\n");
    sys.control("pop3authmax", "1000\n");
    sys.control("maxrcpt", "50\n");
    let (code, text) = showctl(&sys);
    assert_eq!(code, 1, "{text}");
    for line in [
        "databytes: INVALID: control/databytes line 1: 10k is not allowed",
        "concurrencyremote: INVALID: control/concurrencyremote line 1: -5 is not allowed \
         (allowed: a decimal number 1 to 120 (deliveries)); using the default 20",
        "concurrencylocal: INVALID: control/concurrencylocal line 1: abc is not allowed",
        "tlsrequired: INVALID: control/tlsrequired line 1: yes is not allowed (allowed: 0 or 1); \
         using 1, the safe value",
        "pop3authmax: INVALID: control/pop3authmax line 1: 1000 is not allowed",
        "maxrcpt: 50\n",
        "5 invalid value(s)",
    ] {
        assert!(text.contains(line), "{line:?} missing in\n{text}");
    }

    // run scripts ask for the value in force
    let out = sys.run_as(None, "qmail-showctl", &["-v", "concurrencyremote"], b"");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "20\n");
    assert!(String::from_utf8_lossy(&out.stderr).contains("control/concurrencyremote line 1"));
}

#[test]
fn smtpd_refuses_sessions_on_a_malformed_databytes_and_says_why() {
    let sys = system();
    sys.control("databytes", "10k\n");
    let srv = SmtpServer::start(&sys, &[], &[]);
    let mut c = srv.client();
    let greeting = c.reply();
    assert!(greeting.starts_with("421 "), "{greeting}");
    assert!(
        eventually(10, || srv
            .log_text()
            .contains("control/databytes line 1: 10k is not allowed")),
        "{}",
        srv.log_text()
    );
    drop(c);
    sys.control("databytes", "10240\n");
    let mut c = srv.client();
    assert!(c.reply().starts_with("220 "));
    c.cmd("EHLO client.test");
    let r = c.cmd("MAIL FROM:<a@client.test> SIZE=20000");
    assert!(r.starts_with("552 "), "{r}");
}

#[test]
fn smtpd_logs_a_malformed_number_and_keeps_the_default() {
    let sys = system();
    sys.control("maxrcpt", "lots\n");
    let srv = SmtpServer::start(&sys, &[], &[]);
    let mut c = srv.client();
    assert!(c.reply().starts_with("220 "));
    c.cmd("QUIT");
    assert!(
        eventually(10, || srv.log_text().contains(
            "qmail-smtpd: warning: control/maxrcpt line 1: lots is not allowed \
             (allowed: a decimal number 1 to 100000 (recipients)); using the default 1000"
        )),
        "{}",
        srv.log_text()
    );
}

#[test]
fn tcprules_refuses_a_rule_without_a_colon_and_names_its_line() {
    let d = tempfile::tempdir().unwrap();
    let cdb = d.path().join("tcp.smtp.cdb");
    let run = |text: &str| {
        let mut c = std::process::Command::new(build_dir().join("tcprules"))
            .arg(&cdb)
            .arg(d.path().join("tcp.smtp.tmp"))
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(&mut c.stdin.take().unwrap(), text.as_bytes()).unwrap();
        let o = c.wait_with_output().unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    assert_eq!(run("127.0.0.1:allow\n").0, Some(0));
    let before = std::fs::read(&cdb).unwrap();
    let (code, err) = run("# block them\n127.0.0.1:allow\n192.0.2.66 deny\n");
    assert_eq!(code, Some(100), "{err}");
    assert!(
        err.contains("unable to parse this line: 192.0.2.66 deny (line 3: no colon"),
        "{err}"
    );
    assert_eq!(std::fs::read(&cdb).unwrap(), before);
}

#[test]
fn smtpd_warns_about_a_private_key_readable_by_everyone() {
    let sys = system();
    install_cert(&sys);
    let key = sys.root.join("control/serverkey.pem");
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let srv = SmtpServer::start(&sys, &[], &[]);
    let mut c = srv.client();
    assert!(c.reply().starts_with("220 "));
    c.cmd("EHLO client.test");
    let r = c.cmd("STARTTLS");
    assert!(r.starts_with("220 "), "the key is used anyway: {r}");
    let want = format!(
        "qmail-smtpd: warning: {} holds the private key and is readable by everyone (mode 0644)",
        key.display()
    );
    assert!(
        eventually(10, || srv.log_text().contains(&want)),
        "{}",
        srv.log_text()
    );
}

/// Every refusal leaves one uniform line: command, address, client IP, code and reason.
#[test]
fn smtpd_logs_every_refusal_in_one_uniform_line() {
    let sys = system();
    sys.control("databytes", "2000\n");
    sys.control("badmailfrom", "spammer@bad.test\n");
    let srv = SmtpServer::start(&sys, &[], &[]);
    let mut c = srv.client();
    assert!(c.reply().starts_with("220 "));
    c.cmd("EHLO client.test");
    assert!(
        c.cmd("MAIL FROM:<a@client.test> SIZE=999999")
            .starts_with("552 ")
    );
    assert!(c.cmd("MAIL FROM:<a@client.test>").starts_with("250 "));
    assert!(c.cmd("RCPT TO:<victim@elsewhere.test>").starts_with("553 "));
    assert!(
        c.cmd("RCPT TO:<postmaster@example.test>")
            .starts_with("250 ")
    );
    assert!(c.cmd("DATA").starts_with("354 "));
    c.raw(format!("Subject: big\r\n\r\n{}\r\n.\r\n", "x".repeat(5000)).as_bytes());
    assert!(c.reply().starts_with("552 "));
    assert!(c.cmd("MAIL FROM:<spammer@bad.test>").starts_with("250 "));
    assert!(
        c.cmd("RCPT TO:<postmaster@example.test>")
            .starts_with("553 ")
    );
    c.cmd("QUIT");
    let want = [
        "refused MAIL <a@client.test> from 127.0.0.1: 552 5.3.4 sorry, that message size \
         exceeds my databytes limit (#5.3.4) (SIZE=999999 over databytes 2000)",
        "refused RCPT <victim@elsewhere.test> from 127.0.0.1: 553 5.7.1 sorry, that domain \
         isn't in my list of allowed rcpthosts (#5.7.1)",
        "refused DATA from 127.0.0.1: 552 5.3.4 sorry, that message size exceeds my databytes \
         limit (#5.3.4) (over databytes 2000)",
        "refused RCPT <postmaster@example.test> from 127.0.0.1: 553 5.7.1 sorry, your envelope \
         sender is in my badmailfrom list (#5.7.1) (sender <spammer@bad.test> in badmailfrom)",
    ];
    assert!(
        eventually(10, || want.iter().all(|w| srv.log_text().contains(w))),
        "{}",
        srv.log_text()
    );
    assert_eq!(srv.log_text().matches("refused ").count(), 4);

    // a queue that cannot run: 451 and its line
    let srv = SmtpServer::start(&sys, &[], &[("QMAILQUEUE", "/nonexistent/qmail-queue")]);
    let mut c = srv.client();
    assert!(c.reply().starts_with("220 "));
    c.cmd("HELO client.test");
    c.cmd("MAIL FROM:<a@client.test>");
    c.cmd("RCPT TO:<postmaster@example.test>");
    let r = c.cmd("DATA");
    let r = if r.starts_with("354") {
        c.raw(b"Subject: x\r\n\r\nx\r\n.\r\n");
        c.reply()
    } else {
        r
    };
    assert!(r.starts_with("451 "), "{r}");
    assert!(
        eventually(10, || {
            srv.log_text().contains(
            "refused DATA from 127.0.0.1: 451 4.3.0 qqt failure (#4.3.0) (unable to run qmail-queue)"
        )
        }),
        "{}",
        srv.log_text()
    );
}

/// qmail-popup logs each login that worked: `login ok ip=IP user=U`.
#[test]
fn popup_logs_every_successful_login() {
    use std::io::{BufRead, BufReader, Write};
    use std::process::{Command, Stdio};
    let sys = system();
    for p in ["qmail-popup", "tcpserver"] {
        if !sys.bin(p).exists() {
            std::fs::copy(build_dir().join(p), sys.bin(p)).unwrap();
        }
    }
    sys.control("pop3authdelay", "0\n");
    // a checkpassword that accepts everyone and "runs" a session that just greets
    let cp = sys.root.join("fake-checkpassword");
    std::fs::write(
        &cp,
        "#!/bin/sh\nhead -c 600 <&3 >/dev/null\nprintf '+OK session\\r\\n'\nexit 0\n",
    )
    .unwrap();
    std::fs::set_permissions(&cp, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let log = sys.root.join("pop3.log");
    let mut child = Command::new(sys.bin("tcpserver"))
        .args(["-1", "-H", "-R", "127.0.0.1", "0"])
        .arg(sys.bin("qmail-popup"))
        .arg(ME)
        .arg(&cp)
        .stdout(Stdio::piped())
        .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
        .spawn()
        .unwrap();
    let port = printed_port(&mut child);
    let _srv = Server(child);
    let s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut w = s;
    let mut line = String::new();
    let mut reply = |w: &mut std::net::TcpStream, cmd: &str| {
        if !cmd.is_empty() {
            w.write_all(format!("{cmd}\r\n").as_bytes()).unwrap();
        }
        line.clear();
        r.read_line(&mut line).unwrap();
        line.clone()
    };
    assert!(reply(&mut w, "").starts_with("+OK"));
    assert!(reply(&mut w, "USER joe").starts_with("+OK"));
    let r = reply(&mut w, "PASS secret");
    assert!(r.starts_with("+OK session"), "{r}");
    let text = || std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        eventually(10, || text().contains("qmail-popup: pid ")
            && text().contains(": login ok ip=127.0.0.1 user=joe\n")),
        "{}",
        text()
    );
}

/// qmail-remote reports on one pipe for stdout and stderr: a malformed timeout is not
/// written there (it would be read as the delivery's result); the default applies.
#[test]
fn remote_report_stays_clean_with_a_malformed_timeout() {
    use std::process::{Command, Stdio};
    let sys = system();
    if !sys.bin("qmail-remote").exists() {
        std::fs::copy(build_dir().join("qmail-remote"), sys.bin("qmail-remote")).unwrap();
    }
    sys.control("timeoutconnect", "abc\n");
    sys.control("smtproutes", ":127.0.0.1:1\n");
    let (r, w) = nix::unistd::pipe().unwrap();
    let w2 = w.try_clone().unwrap();
    let mut child = Command::new(sys.bin("qmail-remote"))
        .args(["elsewhere.test", "a@example.test", "b@elsewhere.test"])
        .stdin(Stdio::null())
        .stdout(Stdio::from(w))
        .stderr(Stdio::from(w2))
        .spawn()
        .unwrap();
    let out = std::thread::spawn(move || {
        let mut s = Vec::new();
        std::io::Read::read_to_end(&mut std::fs::File::from(r), &mut s).unwrap();
        s
    });
    child.wait().unwrap();
    let out = String::from_utf8_lossy(&out.join().unwrap()).into_owned();
    assert!(!out.contains("warning"), "{out:?}");
    assert!(out.starts_with(['r', 'h', 's', 'K', 'Z', 'D']), "{out:?}");
}

/// qmail-send logs malformed numbers in its own log and keeps the defaults, at start
/// and when it rereads its controls (HUP).
#[test]
fn send_logs_malformed_concurrency_and_keeps_the_default() {
    let mut sys = system();
    sys.control("concurrencyremote", "-5\n");
    sys.control("concurrencylocal", "abc\n");
    sys.start();
    sys.wait_log(
        "warning: control/concurrencyremote line 1: -5 is not allowed (allowed: a decimal \
         number 1 to 120 (deliveries)); using the default 20",
        20,
    );
    sys.wait_log(
        "warning: control/concurrencylocal line 1: abc is not allowed",
        20,
    );
    sys.wait_log("status: local 0/10 remote 0/20", 20);
    sys.control("concurrencyremote", "500\n");
    sys.signal(nix::sys::signal::Signal::SIGHUP);
    sys.wait_log("using 120, the nearest allowed", 20);
    sys.stop();
}

#[test]
fn the_run_script_logs_a_malformed_number_and_starts_with_the_default() {
    let sys = system();
    sys.control("smtpdport", "0\n");
    sys.control("listenaddress", "127.0.0.1\n");
    sys.control("concurrencyincoming", "abc\n");
    let log = sys.root.join("run-script.log");
    let out = std::fs::File::create(&log).unwrap();
    let mut child = Server(
        std::process::Command::new(sys.root.join("supervise/qmail-smtpd/run"))
            .stdout(out)
            .stdin(std::process::Stdio::null())
            .spawn()
            .expect("start the run script"),
    );
    // tcpserver -v reports its limit once it listens: the default, not a shell error
    let text = wait_until("tcpserver's status line", 30, || {
        let t = std::fs::read_to_string(&log).unwrap_or_default();
        t.contains("tcpserver: status: 0/40").then_some(t)
    });
    assert!(
        text.contains(
            "qmail-showctl: warning: control/concurrencyincoming line 1: abc is not allowed"
        ),
        "{text}"
    );
    assert!(!text.contains("Illegal number"), "{text}");
    let _ = child.0.kill();
}
