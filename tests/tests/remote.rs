//! End-to-end tests of qmail-remote against real SMTP servers and a real DNS server,
//! all on loopback: Postfix's `smtp-sink` (fault injection), Python's aiosmtpd (keeps
//! the mail, so content can be checked) and dnsmasq (MX/A records, NXDOMAIN). Nothing
//! is sent off this machine: `control/nameservers` points at the dnsmasq started here.
//!
//! Needs `cargo build --bins` first (the test copies target/debug/qmail-remote into a
//! temporary HOME/bin, because qmail-remote finds HOME from /proc/self/exe).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use e2e::{
    DNSMASQ, Server, dnsmasq, have_python_module, is_root, need_root, need_tool,
    output_when_not_busy, refusing_port, refusing_udp_port, wait_listen_port,
};

fn built(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    // target/debug/deps/remote-XXXX -> target/debug/NAME
    let p = exe
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .join(name);
    assert!(
        p.exists(),
        "{} is missing: run `cargo build --workspace --bins` before the e2e tests",
        p.display()
    );
    p
}

const SMTP_SINK: &str = "/usr/sbin/smtp-sink";

/// Skip (e2e::skip) and return unless aiosmtpd is installed.
macro_rules! need_aiosmtpd {
    () => {
        if !have_python_module("aiosmtpd", "python3-aiosmtpd") {
            return;
        }
    };
}

/// A temporary installation with qmail-remote and its controls.
struct Home {
    dir: tempfile::TempDir,
    _no_dns: Option<std::net::UdpSocket>,
}

impl Home {
    fn new(routes: &str, dns_port: Option<u16>) -> Home {
        let dir = tempfile::tempdir().unwrap();
        let h = dir.path();
        for d in ["bin", "control", "queue/lock"] {
            std::fs::create_dir_all(h.join(d)).unwrap();
        }
        std::fs::copy(built("qmail-remote"), h.join("bin/qmail-remote")).unwrap();
        let ctl = |n: &str, v: &str| std::fs::write(h.join("control").join(n), v).unwrap();
        ctl("me", "me.example.test\n");
        ctl("helohost", "helo.example.test\n");
        ctl("smtproutes", routes);
        ctl("timeoutconnect", "5\n");
        ctl("timeoutremote", "30\n");
        // Never the system resolver: a port where nothing answers if no DNS is needed.
        let (no_dns, port) = match dns_port {
            Some(p) => (None, p),
            None => {
                let (held, p) = refusing_udp_port();
                (Some(held), p)
            }
        };
        ctl("nameservers", &format!("127.0.0.1:{port}\n"));
        std::fs::write(h.join("queue/lock/tcpto"), [0u8; 1024]).unwrap();
        Home {
            dir,
            _no_dns: no_dns,
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Run qmail-remote; returns its reports split at NUL.
    fn remote(&self, args: &[&str], message: &[u8]) -> Vec<String> {
        let msg = self.path().join("message");
        std::fs::write(&msg, message).unwrap();
        let out = output_when_not_busy(
            Command::new(self.path().join("bin/qmail-remote"))
                .args(args)
                .stdin(std::fs::File::open(&msg).unwrap())
                .stderr(Stdio::inherit()),
        );
        assert!(out.status.success(), "qmail-remote exited {}", out.status);
        assert_eq!(
            out.stdout.last(),
            Some(&0u8),
            "output must end with NUL: {:?}",
            out.stdout
        );
        let body = &out.stdout[..out.stdout.len() - 1];
        body.split(|&b| b == 0)
            .map(|r| String::from_utf8_lossy(r).into_owned())
            .collect()
    }
}

/// Postfix's smtp-sink on `addr` (port 0: one of the kernel's choice); returns it and
/// the port it listens on. The caller checks for the tool first.
fn smtp_sink(addr: &str, knobs: &[&str]) -> (Server, u16) {
    let mut cmd = Command::new(SMTP_SINK);
    if is_root() {
        cmd.args(["-u", "nobody"]);
    }
    cmd.args(["-c"])
        .args(knobs)
        .args([addr, "100"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = cmd.spawn().expect("start smtp-sink");
    let port = wait_listen_port(&mut child);
    (Server(child), port)
}

fn aiosmtpd(mailbox: &Path) -> (Server, u16) {
    aiosmtpd_with(mailbox, &[])
}

/// aiosmtpd on 127.0.0.1 (a port of the kernel's choice) keeping mail in the Maildir
/// `mailbox`; `extra` options come first. Returns it and its port.
fn aiosmtpd_with(mailbox: &Path, extra: &[&str]) -> (Server, u16) {
    let mut child = Command::new("/usr/bin/python3")
        .args(["-m", "aiosmtpd", "-n", "-l", "127.0.0.1:0"])
        .args(extra)
        .args(["-c", "aiosmtpd.handlers.Mailbox"])
        .arg(mailbox)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start aiosmtpd");
    let port = wait_listen_port(&mut child);
    (Server(child), port)
}

const MESSAGE: &[u8] = b"From: a@me.example.test\nTo: b@example.test\nSubject: e2e remote\n\nfirst line\n.leading dot\nlast line\n";

#[test]
fn usage_error() {
    let home = Home::new("", None);
    assert_eq!(
        home.remote(&["host", "sender"], b"x\n"),
        vec!["DI (qmail-remote) was invoked improperly. (#5.3.5)\n"]
    );
}

#[test]
fn smtproutes_with_port_delivers_content() {
    need_aiosmtpd!();
    let tmp = tempfile::tempdir().unwrap();
    let mbox = tmp.path().join("maildir");
    let (_srv, port) = aiosmtpd(&mbox);
    let home = Home::new(&format!("example.test:[127.0.0.1]:{port}\n"), None);
    let r = home.remote(
        &[
            "example.test",
            "a@me.example.test",
            "b@example.test",
            "c@example.test",
        ],
        MESSAGE,
    );
    assert_eq!(r.len(), 3, "{r:?}");
    assert_eq!(
        std::fs::read_dir(mbox.join("new")).unwrap().count(),
        1,
        "one message for both recipients"
    );
    assert_eq!(r[0], "r");
    assert_eq!(r[1], "r");
    assert!(
        r[2].starts_with("K127.0.0.1 accepted message.\nRemote host said: 250 "),
        "{r:?}"
    );
    // aiosmtpd's Mailbox handler writes a Maildir.
    let got = maildir_text(&mbox);
    assert!(got.contains("Subject: e2e remote"), "{got}");
    assert!(
        got.contains("\nfirst line\n.leading dot\nlast line\n"),
        "{got}"
    );
}

#[test]
fn rcpt_5xx_is_hard() {
    need_tool!(SMTP_SINK, "postfix");
    let (_srv, port) = smtp_sink("127.0.0.1:0", &["-f", "RCPT"]);
    let home = Home::new(&format!(":[127.0.0.1]:{port}\n"), None);
    let r = home.remote(
        &["x.example.test", "a@me.example.test", "b@x.example.test"],
        MESSAGE,
    );
    assert_eq!(r.len(), 2, "{r:?}");
    assert!(
        r[0].starts_with("h127.0.0.1 does not like recipient.\nRemote host said: 5"),
        "{r:?}"
    );
    assert_eq!(r[1], "DGiving up on 127.0.0.1.\n");
}

#[test]
fn rcpt_4xx_is_soft() {
    need_tool!(SMTP_SINK, "postfix");
    let (_srv, port) = smtp_sink("127.0.0.1:0", &["-r", "RCPT"]);
    let home = Home::new(&format!("x.example.test:127.0.0.1:{port}\n"), None);
    let r = home.remote(
        &["x.example.test", "a@me.example.test", "b@x.example.test"],
        MESSAGE,
    );
    assert_eq!(r.len(), 2, "{r:?}");
    assert!(
        r[0].starts_with("s127.0.0.1 does not like recipient.\nRemote host said: 4"),
        "{r:?}"
    );
    // qmail's wording; qmail-rspawn turns the `s` into a deferral (Z).
    assert_eq!(r[1], "DGiving up on 127.0.0.1.\n");
}

#[test]
fn connection_refused_is_temporary() {
    let (_refusing, port) = refusing_port();
    let home = Home::new(&format!("example.test:[127.0.0.1]:{port}\n"), None);
    let r = home.remote(
        &["example.test", "a@me.example.test", "b@example.test"],
        MESSAGE,
    );
    assert_eq!(
        r,
        vec!["ZSorry, I wasn't able to establish an SMTP connection. (#4.4.1)\n"]
    );
    // A refusal is not a timeout: tcpto stays empty.
    assert_eq!(
        std::fs::read(home.path().join("queue/lock/tcpto")).unwrap(),
        vec![0u8; 1024]
    );
}

#[test]
fn partial_final_line_is_permanent() {
    let home = Home::new("example.test:[127.0.0.1]:9\n", None);
    let r = home.remote(
        &["example.test", "a@me.example.test", "b@example.test"],
        b"Subject: x\n\nno newline",
    );
    assert_eq!(
        r,
        vec!["DSMTP cannot transfer messages with partial final lines. (#5.6.2)\n"]
    );
}

/// A one-shot server that sends `greeting` and reads until the client closes.
fn raw_server(greeting: &'static [u8]) -> (std::thread::JoinHandle<String>, u16) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let h = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s.write_all(greeting).unwrap();
        let mut seen = String::new();
        let mut r = BufReader::new(s.try_clone().unwrap());
        let mut line = String::new();
        while r.read_line(&mut line).unwrap_or(0) > 0 {
            seen.push_str(&line);
            line.clear();
        }
        let _ = s.read(&mut [0u8; 1]);
        seen
    });
    (h, port)
}

#[test]
fn greeting_failure_and_garbage() {
    let (h, port) = raw_server(b"554 go away\r\n");
    let home = Home::new(&format!("example.test:[127.0.0.1]:{port}\n"), None);
    let r = home.remote(
        &["example.test", "a@me.example.test", "b@example.test"],
        MESSAGE,
    );
    assert_eq!(
        r,
        vec!["ZConnected to 127.0.0.1 but greeting failed.\nRemote host said: 554 go away\n"]
    );
    assert_eq!(h.join().unwrap(), "QUIT\r\n");

    let (h, port) = raw_server(b"\x00\xff\xfe garbage without a code\r\n");
    let home = Home::new(&format!("example.test:[127.0.0.1]:{port}\n"), None);
    let r = home.remote(
        &["example.test", "a@me.example.test", "b@example.test"],
        MESSAGE,
    );
    assert_eq!(r.len(), 1);
    assert!(
        r[0].starts_with("ZConnected to 127.0.0.1 but greeting failed.\nRemote host said: ?"),
        "{r:?}"
    );
    h.join().unwrap();
}

#[test]
fn nxdomain_is_permanent() {
    need_tool!(DNSMASQ, "dnsmasq-base");
    let (_dns, dport) = dnsmasq(&[]);
    let home = Home::new("", Some(dport));
    let r = home.remote(
        &["nosuch.test", "a@me.example.test", "b@nosuch.test"],
        MESSAGE,
    );
    assert_eq!(
        r,
        vec!["DSorry, I couldn't find any host named nosuch.test. (#5.1.2)\n"]
    );
}

#[test]
fn mx_pointing_at_this_host_is_refused() {
    need_tool!(DNSMASQ, "dnsmasq-base");
    let (_dns, dport) = dnsmasq(&[
        "--mx-host=self.test,mx.self.test,10",
        "--host-record=mx.self.test,127.0.0.1",
    ]);
    let home = Home::new("", Some(dport));
    let r = home.remote(&["self.test", "a@me.example.test", "b@self.test"], MESSAGE);
    assert_eq!(
        r,
        vec![
            "DSorry. Although I'm listed as a best-preference MX or A for that host,\nit isn't in my control/locals file, so I don't treat it as local. (#5.4.6)\n"
        ]
    );
}

#[test]
fn mx_lookup_delivers() {
    need_root!(); // to bind 127.0.0.2:25
    need_tool!(DNSMASQ, "dnsmasq-base");
    need_tool!(SMTP_SINK, "postfix");
    let (_dns, dport) = dnsmasq(&[
        "--mx-host=example.test,mail.example.test,10",
        "--host-record=mail.example.test,127.0.0.2",
    ]);
    let _sink = smtp_sink("127.0.0.2:25", &[]);
    let home = Home::new("", Some(dport));
    let r = home.remote(
        &["example.test", "a@me.example.test", "b@example.test"],
        MESSAGE,
    );
    assert_eq!(r.len(), 2, "{r:?}");
    assert_eq!(r[0], "r");
    assert!(
        r[1].starts_with("K127.0.0.2 accepted message.\nRemote host said: 250"),
        "{r:?}"
    );
}

fn maildir_text(dir: &Path) -> String {
    std::fs::read_dir(dir.join("new"))
        .expect("maildir written")
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect()
}

#[test]
fn starttls_is_used_when_offered() {
    need_tool!("/usr/bin/openssl", "openssl");
    need_aiosmtpd!();
    let tmp = tempfile::tempdir().unwrap();
    let (cert, key) = (tmp.path().join("c.pem"), tmp.path().join("k.pem"));
    let st = Command::new("/usr/bin/openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "2",
        ])
        .args(["-subj", "/CN=mx.example.test", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "openssl req failed");
    let mbox = tmp.path().join("maildir");
    // aiosmtpd requires STARTTLS before MAIL when it has a certificate: delivery proves TLS.
    let (c, k) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let (_srv, port) = aiosmtpd_with(&mbox, &["--tlscert", c, "--tlskey", k]);
    let home = Home::new(&format!("example.test:[127.0.0.1]:{port}\n"), None);
    let r = home.remote(
        &["example.test", "a@me.example.test", "b@example.test"],
        MESSAGE,
    );
    assert_eq!(r.len(), 2, "{r:?}");
    assert_eq!(r[0], "r");
    assert!(r[1].starts_with("K127.0.0.1 accepted message."), "{r:?}");
    assert!(maildir_text(&mbox).contains("\n.leading dot\n"));
}

#[test]
fn failed_tls_handshake_is_temporary() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let h = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut r = BufReader::new(s.try_clone().unwrap());
        let mut line = String::new();
        s.write_all(b"220 hi\r\n").unwrap();
        r.read_line(&mut line).unwrap();
        s.write_all(b"250-hi\r\n250 STARTTLS\r\n").unwrap();
        line.clear();
        r.read_line(&mut line).unwrap();
        assert_eq!(line, "STARTTLS\r\n");
        s.write_all(b"220 go ahead\r\n").unwrap();
        // Wait for the ClientHello, then answer with something that is not TLS.
        let mut hello = [0u8; 5];
        r.read_exact(&mut hello).unwrap();
        assert_eq!(hello[0], 0x16, "a TLS handshake record");
        s.write_all(b"this is not a TLS server hello at all\r\n")
            .unwrap();
        let mut rest = Vec::new();
        let _ = r.read_to_end(&mut rest);
    });
    let home = Home::new(&format!("example.test:[127.0.0.1]:{port}\n"), None);
    let r = home.remote(
        &["example.test", "a@me.example.test", "b@example.test"],
        MESSAGE,
    );
    assert_eq!(
        r,
        vec!["ZConnected to 127.0.0.1 but TLS negotiation failed. (#4.4.2)\n"]
    );
    h.join().unwrap();
}

#[test]
fn tcpto_and_tcpok() {
    let home = Home::new("", None);
    for b in ["qmail-tcpto", "qmail-tcpok"] {
        std::fs::copy(built(b), home.path().join("bin").join(b)).unwrap();
    }
    let file = home.path().join("queue/lock/tcpto");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as u32;
    let mut img = vec![0u8; 1024];
    img[16..20].copy_from_slice(&[192, 0, 2, 7]);
    img[20] = 3;
    img[24..28].copy_from_slice(&(now - 100).to_le_bytes());
    std::fs::write(&file, &img).unwrap();
    let out = output_when_not_busy(&mut Command::new(home.path().join("bin/qmail-tcpto")));
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("192.0.2.7 timed out 10"), "{text}");
    assert!(
        text.ends_with(" seconds ago; # recent timeouts: 3\n"),
        "{text}"
    );
    let st = output_when_not_busy(&mut Command::new(home.path().join("bin/qmail-tcpok"))).status;
    assert!(st.success());
    assert_eq!(std::fs::read(&file).unwrap(), vec![0u8; 1024]);
    let out = Command::new(home.path().join("bin/qmail-tcpto"))
        .output()
        .unwrap();
    assert_eq!(out.stdout, b"");
}

#[test]
fn dns_server_down_is_temporary() {
    // nameservers points at a port where nothing answers (refusing_udp_port).
    let home = Home::new("", None);
    let r = home.remote(
        &["example.test", "a@me.example.test", "b@example.test"],
        MESSAGE,
    );
    assert_eq!(
        r,
        vec!["ZSorry, I couldn't find any host by that name. (#4.1.2)\n"]
    );
}
