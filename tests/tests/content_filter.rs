//! The content-filter battery of issue 14 ("Proven by tests") through one installed
//! system: control/filters names HOME/bin/qmail-scan, control/clamd the socket of a real
//! clamd started by the harness (e2e::clamd), qmail-smtpd runs under our tcpserver as
//! qmaild, Python's smtplib is the client, qmail-send delivers, the administrator's
//! notices land in a local user's Maildir and are read over POP3 (qmail-popup,
//! checkpassword, qmail-pop3d under our tcpserver), and `qmail-quarantine release`
//! delivers a quarantined message to its original recipient. sendmail and submission
//! (AUTH) go through the same chain. qmail-qfilterd runs, as installed: SMTP and
//! submission reach the chain through it, sendmail through the qmail-qfilter program.
//!
//! Every case checks what the client heard and what the queue, the quarantine and the
//! mailboxes hold. Needs root (users, qmail-send); the clamd cases skip without clamd.

mod smtpd_common;

use e2e::clamd::{Clamd, EICAR, EICAR_NAME};
use e2e::*;
use smtpd_common::*;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const RCPT: &str = "postmaster@example.test";
const ADMIN: &str = "cfadmin";
const ADMIN_PASSWORD: &str = "Scan-Admin-7";

/// The installed system, its servers and the mailboxes the battery looks at.
struct Battery {
    sys: System,
    smtpd: SmtpServer,
    /// qmail-qfilterd, as installed: SMTP and submission reach the chain through it,
    /// sendmail through the qmail-qfilter program.
    filterd: e2e::daemon::Daemon,
    scratch: PathBuf,
    inbox: PathBuf,
    admin_box: PathBuf,
}

impl Battery {
    /// The chain's log lines for messages over SMTP: qmail-qfilterd's log, and
    /// qmail-smtpd's (where qmail-qfilter's lines go when it runs the chain instead).
    fn chain_log(&self) -> String {
        format!("{}\n{}", self.filterd.log_text(), self.smtpd.log_text())
    }

    /// What an SMTP client hears for `message`, with AUTH when `login` is given.
    /// The sender is joe@example.test with AUTH (submission allows only the user's own).
    fn send_via(&self, port: u16, message: &[u8], login: Option<(&str, &str)>) -> String {
        let path = self.scratch.join("message");
        std::fs::write(&path, message).unwrap();
        let port = port.to_string();
        let sender = match login {
            Some(_) => "joe@example.test",
            None => "sender@elsewhere.test",
        };
        let mut args = vec![port.as_str(), sender, RCPT, path_str(&path)];
        if let Some((u, p)) = login {
            args.extend([u, p]);
        }
        // submission takes only the user's own From: too
        let message = match login {
            Some(_) => String::from_utf8_lossy(message)
                .replacen("From: sender@elsewhere.test", "From: joe@example.test", 1)
                .into_bytes(),
            None => message.to_vec(),
        };
        std::fs::write(&path, message).unwrap();
        let (ok, out) = python(SMTPLIB_SEND, &args);
        assert!(ok, "smtplib: {out}\n{}", self.smtpd.log_text());
        out.trim().to_string()
    }

    fn send(&self, message: &[u8]) -> String {
        self.send_via(self.smtpd.port, message, None)
    }

    fn quarantined(&self) -> usize {
        maildir_new(&self.sys.root.join("quarantine")).len()
    }

    fn delivered(&self) -> usize {
        maildir_new(&self.inbox).len()
    }

    fn notices(&self) -> usize {
        maildir_new(&self.admin_box).len()
    }

    /// A refusal: nothing queued, quarantined or delivered (the queue is empty right
    /// after the reply, and the mailboxes hold what they held).
    fn assert_nothing_kept(&self, what: &str, before: (usize, usize, usize)) {
        assert_eq!(queued(&self.sys), 0, "{what}: queued");
        assert_eq!(
            (self.delivered(), self.quarantined(), self.notices()),
            before,
            "{what}"
        );
    }

    fn counts(&self) -> (usize, usize, usize) {
        (self.delivered(), self.quarantined(), self.notices())
    }

    /// A quarantine: one more file in HOME/quarantine/new, the notice naming `rule` in
    /// the administrator's Maildir, nothing for the recipient.
    fn assert_quarantined_local(&self, what: &str, before: (usize, usize, usize), rule: &str) {
        let (d, q, n) = before;
        assert_eq!(self.quarantined(), q + 1, "{what}");
        // written by qmail-scan as qmailf, whoever injected (root's sendmail included);
        // qmail-qfilter runs qmail-scan's code in a forked child that became qmailf
        let qmailf = nix::unistd::User::from_name("qmailf").unwrap().unwrap().uid;
        for file in maildir_new(&self.sys.root.join("quarantine")) {
            use std::os::unix::fs::MetadataExt;
            assert_eq!(
                file.metadata().unwrap().uid(),
                qmailf.as_raw(),
                "{what}: {file:?}"
            );
        }
        let notices = wait_maildir(&self.admin_box, n + 1, 30);
        assert!(
            notices.iter().any(|m| m.contains(rule)),
            "{what}: no notice names {rule}: {notices:?}"
        );
        // the notice went through the same queue after the message: had the message been
        // queued too, qmail-send would have delivered it by now
        wait_until("queue empty", 30, || (queued(&self.sys) == 0).then_some(()));
        assert_eq!(self.delivered(), d, "{what}: delivered to the recipient");
    }

    /// The same for a message through `self.smtpd`, whose chain's log names the rule.
    fn assert_quarantined(&self, what: &str, before: (usize, usize, usize), rule: &str) {
        self.assert_quarantined_local(what, before, rule);
        assert!(
            self.chain_log()
                .contains(&format!("qmail-scan: quarantine rule={rule} ")),
            "{what}: {}",
            self.chain_log()
        );
    }
}

fn b64_lines(data: &[u8]) -> String {
    b64(data)
        .as_bytes()
        .chunks(76)
        .map(|c| format!("{}\n", String::from_utf8_lossy(c)))
        .collect()
}

/// A multipart message with a text part and base64 attachments (name, type, bytes).
fn mail(subject: &str, attachments: &[(&str, &str, &[u8])]) -> Vec<u8> {
    let mut m = format!(
        "From: sender@elsewhere.test\nTo: {RCPT}\nSubject: {subject}\n\
         Date: Sun, 6 Dec 2026 05:00:00 +0000\nMessage-ID: <{subject}@elsewhere.test>\n\
         MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"=_b\"\n\n\
         --=_b\nContent-Type: text/plain\n\nhello\n"
    );
    for (name, ctype, data) in attachments {
        m.push_str(&format!(
            "--=_b\nContent-Type: {ctype}; name=\"{name}\"\nContent-Transfer-Encoding: base64\n\
             Content-Disposition: attachment; filename=\"{name}\"\n\n{}",
            b64_lines(data)
        ));
    }
    m.push_str("--=_b--\n");
    m.into_bytes()
}

/// An archive of `members` written by python3: `zip` (deflated) or `tar.gz`.
fn archive(kind: &str, members: &[(&str, &[u8])]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let mut script = String::from("import sys, zipfile, tarfile\n");
    script.push_str(match kind {
        "zip" => "a = zipfile.ZipFile(sys.argv[1], 'w', zipfile.ZIP_DEFLATED)\nadd = a.write\n",
        _ => "a = tarfile.open(sys.argv[1], 'w:gz')\nadd = a.add\n",
    });
    for (i, (name, data)) in members.iter().enumerate() {
        let p = dir.path().join(format!("m{i}"));
        std::fs::write(&p, data).unwrap();
        script.push_str(&format!("add({:?}, {:?})\n", p.to_str().unwrap(), name));
    }
    script.push_str("a.close()\n");
    let out = dir.path().join("out");
    let (ok, text) = python(&script, &[path_str(&out)]);
    assert!(ok, "{text}");
    std::fs::read(out).unwrap()
}

/// A minimal PE image (MZ header pointing at a PE signature).
fn pe_image() -> Vec<u8> {
    let mut v = vec![0u8; 0x100];
    v[..2].copy_from_slice(b"MZ");
    v[0x3C] = 0x80;
    v[0x80..0x84].copy_from_slice(b"PE\0\0");
    v
}

/// Our tcpserver on an ephemeral port running qmail-popup, checkpassword, qmail-pop3d.
fn pop3_server(sys: &System) -> (Server, u16) {
    for p in ["qmail-popup", "qmail-pop3d", "checkpassword"] {
        let dst = sys.bin(p);
        if !dst.exists() {
            std::fs::copy(build_dir().join(p), &dst).unwrap();
        }
    }
    sys.control("pop3authdelay", "0\n");
    let mut child = Command::new(sys.bin("tcpserver"))
        .args(["-1", "-H", "-R", "-D", "127.0.0.1", "0"])
        .arg(sys.bin("qmail-popup"))
        .arg(ME)
        .arg(sys.bin("checkpassword"))
        .arg(sys.bin("qmail-pop3d"))
        .arg("Maildir")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start tcpserver");
    let port = printed_port(&mut child);
    (Server(child), port)
}

/// The administrator's user, with its password set for POP3.
fn admin_user() -> PathBuf {
    let (_, home) = local_user(ADMIN);
    let mut c = Command::new("chpasswd")
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    c.stdin
        .take()
        .unwrap()
        .write_all(format!("{ADMIN}:{ADMIN_PASSWORD}\n").as_bytes())
        .unwrap();
    assert!(c.wait().unwrap().success());
    home.join("Maildir")
}

/// A shell filter that sleeps a minute, beside the root where qmailf can run it.
fn sleeper(sys: &System) -> PathBuf {
    let p = sys.root.parent().unwrap().join("sleeper");
    std::fs::write(&p, "#!/bin/sh\nsleep 60\nexec cat\n").unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

/// The message as delivered minus the lines the system adds on top (Return-Path,
/// Delivered-To, Received with its continuations, X-Qmail-Scanned), and those lines.
fn strip_added(delivered: &str) -> (String, Vec<String>) {
    let mut added = Vec::new();
    let mut rest = delivered;
    loop {
        let end = rest.find('\n').map_or(rest.len(), |i| i + 1);
        let line = &rest[..end];
        let ours = [
            "Return-Path:",
            "Delivered-To:",
            "Received:",
            "X-Qmail-Scanned:",
        ]
        .iter()
        .any(|h| line.starts_with(h));
        let continued = line.starts_with([' ', '\t']) && !added.is_empty();
        if !(ours || continued) {
            return (rest.to_string(), added);
        }
        added.push(line.to_string());
        rest = &rest[end..];
    }
}

fn id_of(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

#[test]
fn the_issue_14_battery_through_smtp_sendmail_submission_and_pop3() {
    need_root!();
    if !have_tool("/usr/bin/python3", "python3") {
        return;
    }
    let mut sys = system();
    let admin_box = admin_user();
    let scratch = sys.root.parent().unwrap().join("scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    let rules_path = sys.root.join("control/scanrules");
    let default_rules = std::fs::read_to_string(&rules_path).expect("installed scanrules");
    let qmail_scan = sys.bin("qmail-scan");
    assert!(
        qmail_scan.exists(),
        "the installer puts qmail-scan in HOME/bin"
    );
    sys.control("filters", &format!("{}\n", qmail_scan.display()));
    sys.control("scanadmin", &format!("{ADMIN}\n"));
    let mut clamd = Clamd::start_or_skip();
    if let Some(c) = &clamd {
        sys.control("clamd", &format!("{}\n", c.socket().display()));
    }
    sys.start();
    let smtpd = SmtpServer::start(&sys, &[], &[]);
    let filterd = e2e::daemon::Daemon::start(&sys, "qmail-qfilterd", None, "qfilterd/socket");
    let b = Battery {
        inbox: sys.root.join("alias/Maildir"),
        sys,
        smtpd,
        filterd,
        scratch,
        admin_box,
    };

    // --- viruses: 554 with the name, nothing kept; clamd down: 451; back: delivered ---
    if let Some(clamd) = clamd.as_mut() {
        let z = archive("zip", &[("eicar.txt", EICAR)]);
        let zz = archive("zip", &[("inner.zip", &z)]);
        for (what, m) in [
            (
                "attached",
                mail("v1", &[("eicar.com.txt", "text/plain", EICAR)]),
            ),
            (
                "zipped",
                mail("v2", &[("eicar.zip", "application/zip", &z)]),
            ),
            (
                "zip in zip",
                mail("v3", &[("outer.zip", "application/zip", &zz)]),
            ),
        ] {
            let before = b.counts();
            let got = b.send(&m);
            assert!(
                got.starts_with("554 ") && got.contains(EICAR_NAME),
                "{what}: {got}\n{}",
                b.smtpd.log_text()
            );
            b.assert_nothing_kept(what, before);
        }
        assert_eq!(
            b.chain_log().matches("qmail-scan: refuse virus=").count(),
            3,
            "{}",
            b.chain_log()
        );
        let clean = mail("retry", &[]);
        clamd.stop();
        let before = b.counts();
        let got = b.send(&clean);
        assert!(got.starts_with("451 "), "{got}\n{}", b.smtpd.log_text());
        b.assert_nothing_kept("clamd down", before);
        assert!(b.chain_log().contains("qmail-scan: defer clamd="));
        clamd.start_again();
        assert_eq!(b.send(&clean), "250", "{}", b.smtpd.log_text());
        let got = wait_maildir(&b.inbox, before.0 + 1, 30);
        assert!(got.iter().any(|m| m.contains("Subject: retry")));
        assert!(
            got.iter().any(|m| m.contains(
                "X-Qmail-Scanned: by qmail-scan on mx.example.test; clean (policy, clamd)"
            )),
            "{got:?}"
        );
    }

    // --- policy hits: 250, quarantined, the notice reaches the administrator ---
    let scr = archive("zip", &[("game.scr", b"x")]);
    let tgz = archive("tar.gz", &[("inner.zip", &scr)]);
    let pe = pe_image();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (".exe", mail("q1", &[("setup.exe", "application/octet-stream", b"x")]), ".exe"),
        (".scr in zip in tar.gz", mail("q2", &[("games.tar.gz", "application/gzip", &tgz)]), ".scr"),
        ("PE named .txt", mail("q3", &[("notes.txt", "text/plain", &pe)]), "@executable"),
        ("file.pdf.exe", mail("q4", &[("file.pdf.exe", "application/pdf", b"x")]), ".exe"),
        (
            "message/partial",
            b"Subject: q5\nMIME-Version: 1.0\nContent-Type: message/partial; id=\"a\"; number=1; total=2\n\nx\n".to_vec(),
            "message/partial",
        ),
        (
            "200-character Date",
            format!("Date: {}\nSubject: q6\n\nx\n", "1".repeat(200)).into_bytes(),
            ".{100,}",
        ),
    ];
    for (what, m, rule) in &cases {
        let before = b.counts();
        assert_eq!(b.send(m), "250", "{what}: {}", b.smtpd.log_text());
        b.assert_quarantined(what, before, rule);
    }

    // a Subject rule added by the site; its message is released to the recipient
    std::fs::write(
        &rules_path,
        format!("{default_rules}Pickles.*Breakfast\tVirus-Subject:\tno pickles\tquarantine\n"),
    )
    .unwrap();
    let before = b.counts();
    let pickles = b"From: sender@elsewhere.test\nSubject: Pickles for Breakfast\n\nrelease me\n";
    assert_eq!(b.send(pickles), "250", "{}", b.smtpd.log_text());
    b.assert_quarantined("Subject rule", before, "Pickles.*Breakfast");
    let newest = maildir_new(&b.sys.root.join("quarantine"))
        .into_iter()
        .find(|p| {
            std::fs::read_to_string(p)
                .unwrap_or_default()
                .contains("release me")
        })
        .expect("the quarantined message");
    if !b.sys.bin("qmail-quarantine").exists() {
        std::fs::copy(
            build_dir().join("qmail-quarantine"),
            b.sys.bin("qmail-quarantine"),
        )
        .unwrap();
    }
    let out = Command::new(b.sys.bin("qmail-quarantine"))
        .args(["release", &id_of(&newest)])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "release: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = wait_maildir(&b.inbox, before.0 + 1, 30);
    assert!(got.iter().any(|m| m.contains("release me")), "{got:?}");
    assert_eq!(b.quarantined(), before.1, "released from the quarantine");

    // the administrator reads the notices over POP3
    let notices = b.notices();
    for f in maildir_new(&b.admin_box) {
        wait_past_mtime(&f);
    }
    let (_pop3, pport) = pop3_server(&b.sys);
    let (ok, out) = python(
        r#"
import poplib, sys
p = poplib.POP3('127.0.0.1', int(sys.argv[1]), timeout=30)
p.user(sys.argv[2]); p.pass_(sys.argv[3])
n = p.stat()[0]
print(n)
for i in range(1, n + 1):
    print(b'\n'.join(p.retr(i)[1]).decode('latin-1'))
p.quit()
"#,
        &[&pport.to_string(), ADMIN, ADMIN_PASSWORD],
    );
    assert!(ok, "{out}");
    assert_eq!(
        out.lines().next(),
        Some(notices.to_string().as_str()),
        "{out}"
    );
    for rule in [
        ".exe",
        ".scr",
        "@executable",
        "message/partial",
        "Pickles.*Breakfast",
    ] {
        assert!(out.contains(rule), "POP3 shows no notice for {rule}: {out}");
    }
    assert!(out.contains("Subject: Pickles for Breakfast"), "{out}");

    // --- a clean multipart message passes byte for byte ---
    let pdf =
        b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog >>\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n";
    let clean = mail(
        "clean",
        &[
            ("report.pdf", "application/pdf", pdf),
            (
                "data.zip",
                "application/zip",
                &archive("zip", &[("data.csv", b"1,2,3\n")]),
            ),
        ],
    );
    let before = b.counts();
    assert_eq!(b.send(&clean), "250", "{}", b.smtpd.log_text());
    let got = wait_maildir(&b.inbox, before.0 + 1, 30);
    let delivered = got
        .iter()
        .find(|m| m.contains("Subject: clean"))
        .expect("the clean message");
    let (body, added) = strip_added(delivered);
    assert_eq!(body.as_bytes(), clean.as_slice(), "{delivered}");
    assert_eq!(
        added
            .iter()
            .filter(|l| l.starts_with("X-Qmail-Scanned:"))
            .count(),
        1,
        "{added:?}"
    );
    assert_eq!(b.counts().1, before.1);

    // --- a rules file with a bad line: 451, the log names the line ---
    std::fs::write(
        &rules_path,
        "# site rules\n.exe\t0\tno exe\n(broken\tVirus-Subject:\tx\n",
    )
    .unwrap();
    let before = b.counts();
    let got = b.send(&mail("badrules", &[]));
    assert!(got.starts_with("451 "), "{got}");
    b.assert_nothing_kept("bad rules", before);
    assert!(
        b.chain_log()
            .contains("control/scanrules line 3: bad regex"),
        "{}",
        b.chain_log()
    );
    std::fs::write(&rules_path, &default_rules).unwrap();

    // --- a filter past its time limit: 451 ---
    let sleeper = sleeper(&b.sys);
    b.sys.control(
        "filters",
        &format!("{}\n{}\n", qmail_scan.display(), sleeper.display()),
    );
    b.sys.control("filtertimeout", "2\n");
    let before = b.counts();
    let got = b.send(&mail("sleepy", &[]));
    assert_eq!(
        got,
        "451 4.3.0 content filter timed out (#4.3.0)",
        "{}",
        b.smtpd.log_text()
    );
    b.assert_nothing_kept("timeout", before);
    b.sys
        .control("filters", &format!("{}\n", qmail_scan.display()));

    // --- sendmail goes through the chain ---
    let exe = mail("sm-exe", &[("tool.exe", "application/octet-stream", b"x")]);
    let before = b.counts();
    let out = b
        .sys
        .run_as(None, "sendmail", &["-f", "root@example.test", RCPT], &exe);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    b.assert_quarantined_local("sendmail .exe", before, ".exe");
    if clamd.is_some() {
        let virus = mail("sm-virus", &[("eicar.com.txt", "text/plain", EICAR)]);
        let before = b.counts();
        let out = b
            .sys
            .run_as(None, "sendmail", &["-f", "root@example.test", RCPT], &virus);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(EICAR_NAME), "{err}");
        b.assert_nothing_kept("sendmail EICAR", before);
    }

    // --- submission with AUTH goes through the chain ---
    let cp = test_checkpassword(&b.sys);
    let sub = SmtpServer::start(
        &b.sys,
        &["--submission", path_str(&cp), "/bin/true"],
        &[("AUTHPLAINTEXT", "")],
    );
    let before = b.counts();
    let exe = mail("sub-exe", &[("tool.exe", "application/octet-stream", b"x")]);
    assert_eq!(
        b.send_via(sub.port, &exe, Some(("joe", "secret"))),
        "250",
        "{}",
        sub.log_text()
    );
    b.assert_quarantined_local("submission .exe", before, ".exe");
    if clamd.is_some() {
        let virus = mail("sub-virus", &[("eicar.com.txt", "text/plain", EICAR)]);
        let before = b.counts();
        let got = b.send_via(sub.port, &virus, Some(("joe", "secret")));
        assert!(
            got.starts_with("554 ") && got.contains(EICAR_NAME),
            "{got}\n{}",
            sub.log_text()
        );
        b.assert_nothing_kept("submission EICAR", before);
    }
}
