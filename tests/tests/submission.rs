//! Submission hardening end to end (issue 11): sender binding for authenticated mail
//! (item 7) through Python smtplib, a virtual user made with qmail-vuser and AUTH through
//! the installed checkpassword; and client text in qmail-smtpd's log lines (item 4).
//!
//! qmail-smtpd runs under our tcpserver (`-1` prints the port), as qmaild when root;
//! qmail-send is not started, so what qmail-queue accepted stays in queue/mess.

use e2e::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const ME: &str = "mx.example.test";
const DOMAIN: &str = "example.test";

/// An installation with qmail-smtpd in it and the counters directory qmaild writes.
fn system() -> System {
    let sys = System::install(ME, &[DOMAIN]);
    sys.control("rcpthosts", &format!("{ME}\n{DOMAIN}\n"));
    sys.control("authfaildelay", "0\n");
    let state = sys.root.join("smtpd");
    std::fs::create_dir_all(&state).unwrap();
    if is_root() {
        let u = nix::unistd::User::from_name("qmaild").unwrap().unwrap();
        nix::unistd::chown(&state, Some(u.uid), None).unwrap();
    }
    sys
}

/// `tcpserver -1 -q -H -R -l ME [-u qmaild -g nofiles] 127.0.0.1 0 qmail-smtpd args`,
/// stderr (qmail-smtpd's log) into a file.
struct Smtpd {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Smtpd {
    fn start(sys: &System, args: &[&str], env: &[(&str, &str)]) -> Smtpd {
        let log = sys.root.parent().unwrap().join("smtpd.log");
        let mut cmd = Command::new(sys.bin("tcpserver"));
        cmd.args(["-1", "-q", "-H", "-R", "-l", ME]);
        if is_root() {
            let u = nix::unistd::User::from_name("qmaild").unwrap().unwrap();
            let g = nix::unistd::Group::from_name("nofiles").unwrap().unwrap();
            cmd.args(["-u", &u.uid.to_string(), "-g", &g.gid.to_string()]);
        }
        let mut child = cmd
            .args(["127.0.0.1", "0"])
            .arg(sys.bin("qmail-smtpd"))
            .args(args)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
            .spawn()
            .expect("start tcpserver");
        let mut line = String::new();
        let _ = BufReader::new(child.stdout.take().unwrap()).read_line(&mut line);
        let port = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("tcpserver -1 printed {line:?}"));
        Smtpd { child, port, log }
    }

    fn log_text(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.log).unwrap_or_default()).into_owned()
    }
}

impl Drop for Smtpd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Messages in queue/mess.
fn queued(sys: &System) -> usize {
    std::fs::read_dir(sys.root.join("queue/mess"))
        .unwrap()
        .flatten()
        .map(|d| std::fs::read_dir(d.path()).map(|r| r.count()).unwrap_or(0))
        .sum()
}

/// `qmail-vuser args` with `input` on stdin; must succeed.
fn vuser(sys: &System, args: &[&str], input: &str) {
    let out = output_with_input(
        Command::new(sys.bin("qmail-vuser")).args(args),
        input.as_bytes(),
    );
    assert!(
        out.status.success(),
        "qmail-vuser {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Each case: a name, the envelope sender, the message. smtplib prints `name code`.
const SUBMIT: &str = r#"
import smtplib, sys, json
cases = json.loads(sys.argv[2])
s = smtplib.SMTP('127.0.0.1', int(sys.argv[1]), timeout=60)
s.login('ann@virt.test', 'Correct-Horse-9')
for name, sender, msg in cases:
    try:
        s.sendmail(sender, ['friend@elsewhere.test'], msg.encode())
        print(name, 250)
    except smtplib.SMTPSenderRefused as e:
        print(name, e.smtp_code)
    except smtplib.SMTPDataError as e:
        print(name, e.smtp_code, e.smtp_error.decode())
s.quit()
"#;

#[test]
fn authenticated_users_send_only_as_themselves() {
    if !is_root() {
        // the installed checkpassword verifies virtual users for root and qmaild only
        skip("needs root (qmail-vuser, checkpassword run as qmaild)");
        return;
    }
    let sys = system();
    local_user("qsubvdom");
    vuser(&sys, &["adddomain", "virt.test", "--owner", "qsubvdom"], "");
    vuser(&sys, &["add", "ann@virt.test"], "Correct-Horse-9\n");
    let cp = sys.bin("checkpassword");
    let cp = cp.to_str().unwrap();
    let srv = Smtpd::start(
        &sys,
        &["--submission", cp, "/bin/true"],
        &[("AUTHPLAINTEXT", "")],
    );
    let ann = "ann@virt.test";
    let cases: Vec<(&str, &str, String)> = [
        ("null-sender", "", "From: ann@virt.test\r\n\r\nx\r\n"),
        ("no-from", ann, "Subject: anonymous\r\n\r\nx\r\n"),
        ("sender", ann, "From: ann@virt.test\r\nSender: boss@virt.test\r\n\r\nx\r\n"),
        ("resent-from", ann, "From: ann@virt.test\r\nResent-From: boss@virt.test\r\n\r\nx\r\n"),
        ("resent-sender", ann, "From: ann@virt.test\r\nResent-Sender: <boss@virt.test>\r\n\r\nx\r\n"),
        ("second-mailbox", ann, "From: ann@virt.test, boss@virt.test\r\n\r\nx\r\n"),
        ("folded", ann, "From: Ann <ann@virt.test>,\r\n\tThe Boss <boss@virt.test>\r\n\r\nx\r\n"),
        ("group", ann, "From: Staff: ann@virt.test, boss@virt.test;\r\n\r\nx\r\n"),
        ("display-name", ann, "From: boss@virt.test <ann@virt.test>\r\n\r\nx\r\n"),
        ("encoded-name", ann, "From: =?utf-8?q?boss=40virt=2Etest?= <ann@virt.test>\r\n\r\nx\r\n"),
        ("two-froms", ann, "From: ann@virt.test\r\nfrom: boss@virt.test\r\n\r\nx\r\n"),
        ("legitimate", ann, "From: =?utf-8?q?Ann_M=C3=BCller?= <ANN@virt.test>\r\nSender: ann@virt.test\r\nSubject: ok\r\n\r\nhi\r\n"),
    ]
    .into_iter()
    .map(|(n, s, m)| (n, s, m.to_string()))
    .collect();
    let json = serde_json_lite(&cases);
    let out = Command::new("python3")
        .args(["-c", SUBMIT, &srv.port.to_string(), &json])
        .output()
        .expect("python3");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        srv.log_text()
    );
    let code = |name: &str| {
        text.lines()
            .find(|l| l.split(' ').next() == Some(name))
            .map(|l| l.split(' ').nth(1).unwrap_or("").to_string())
            .unwrap_or_else(|| panic!("no result for {name}: {text}"))
    };
    assert_eq!(code("null-sender"), "553", "{text}");
    assert_eq!(code("no-from"), "554", "{text}");
    assert!(text.contains("needs a From: line"), "{text}");
    for name in [
        "sender",
        "resent-from",
        "resent-sender",
        "second-mailbox",
        "folded",
        "group",
        "display-name",
        "encoded-name",
        "two-froms",
    ] {
        assert_eq!(code(name), "553", "{name}: {text}");
    }
    assert_eq!(code("legitimate"), "250", "{text}\n{}", srv.log_text());
    assert_eq!(queued(&sys), 1, "only the legitimate message is queued");
    let log = srv.log_text();
    assert!(
        log.contains("user ann@virt.test: 553 5.7.1") && log.contains("(Sender: <boss@virt.test>)"),
        "{log}"
    );
    assert!(
        log.contains("refused MAIL <> from 127.0.0.1 user ann@virt.test: 553 5.7.1"),
        "{log}"
    );
}

/// `[[name, sender, message], ...]` as JSON (no serde in the test crate).
fn serde_json_lite(cases: &[(&str, &str, String)]) -> String {
    let esc = |s: &str| {
        let mut o = String::from("\"");
        for c in s.chars() {
            match c {
                '"' => o.push_str("\\\""),
                '\\' => o.push_str("\\\\"),
                c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
                c => o.push(c),
            }
        }
        o.push('"');
        o
    };
    let items: Vec<String> = cases
        .iter()
        .map(|(n, s, m)| format!("[{},{},{}]", esc(n), esc(s), esc(m)))
        .collect();
    format!("[{}]", items.join(","))
}

/// A raw SMTP exchange: send `bytes`, read until the server closes.
fn exchange(port: u16, bytes: &[u8]) -> String {
    let mut sock = TcpStream::connect(("127.0.0.1", port)).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    sock.write_all(bytes).unwrap();
    let mut out = Vec::new();
    let _ = sock.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn client_text_reaches_the_log_as_one_escaped_line() {
    let sys = system();
    let srv = Smtpd::start(&sys, &[], &[]);
    let forged = "qmail-smtpd: pid 1: AUTH PLAIN user root from 10.9.9.9";
    let long = "h".repeat(3000);
    let mut s = Vec::new();
    // HELO with a bare CR, a NUL and a forged line; the address with spaces (quoted)
    s.extend_from_slice(format!("EHLO evil\r{forged}\0{long}\r\n").as_bytes());
    s.extend_from_slice(format!("MAIL FROM:<\"x {forged}\"@elsewhere.test>\r\n").as_bytes());
    s.extend_from_slice(format!("RCPT TO:<\"y {forged}\"@elsewhere.test>\r\n").as_bytes());
    s.extend_from_slice(b"RCPT TO:<joe@example.test>\r\nDATA\r\n");
    s.extend_from_slice(b"Subject: x\r\n\r\nhi\r\n.\r\nQUIT\r\n");
    let replies = exchange(srv.port, &s);
    assert!(replies.contains("250 2.0.0 ok"), "{replies}");
    assert!(replies.contains("\r\n553 5.7.1 "), "{replies}");
    let log = std::fs::read(&srv.log).unwrap();
    assert!(!log.contains(&b'\r') && !log.contains(&0), "{log:?}");
    let log = String::from_utf8_lossy(&log);
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 2, "{log}");
    assert!(
        lines.iter().all(|l| l.starts_with("qmail-smtpd: pid ")),
        "{log}"
    );
    assert!(!log.contains(forged), "{log}");
    let refused = lines[0];
    assert!(
        refused.contains(
            "refused RCPT <y\\040qmail-smtpd:\\040pid\\0401:\\040AUTH\\040PLAIN\\040user\\040root\\040from\\04010.9.9.9@elsewhere.test> from 127.0.0.1: 553 5.7.1 "
        ),
        "{log}"
    );
    let accepted = lines[1];
    assert!(accepted.contains("message accepted qp "), "{log}");
    assert!(
        accepted.contains(" <x\\040qmail-smtpd:\\040pid\\0401:"),
        "{log}"
    );
    assert!(
        accepted.contains(" helo evil\\015qmail-smtpd:\\040pid\\0401:\\040AUTH"),
        "{log}"
    );
    // the HELO is cut (qsys::logsafe::MAX) and marked
    assert!(accepted.ends_with("hhh..."), "{log}");
    assert_eq!(queued(&sys), 1);
}
