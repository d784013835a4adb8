//! Shared harness of the qmail-smtpd end-to-end tests: a tcpserver-like listener on an
//! ephemeral loopback port that runs the installed qmail-smtpd per connection (as
//! qmaild:nofiles when root, like `tcpserver -u -g`), a line-oriented SMTP client over
//! a raw socket, TLS material, and a test checkpassword.

#![allow(dead_code)]

use e2e::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

pub const ME: &str = "mx.example.test";
pub const DOMAIN: &str = "example.test";

/// An installation with qmail-smtpd in it (qmail-send not started).
pub fn system() -> System {
    let sys = System::install(ME, &[DOMAIN]);
    sys.control("rcpthosts", &format!("{ME}\n{DOMAIN}\n"));
    sys.control("authfaildelay", "0\n");
    // the counters directory the installer is asked to create
    let state = sys.root.join("smtpd");
    std::fs::create_dir_all(&state).unwrap();
    if is_root() {
        let (u, g) = qmaild();
        nix::unistd::chown(&state, Some(u.into()), Some(g.into())).unwrap();
    }
    sys
}

/// qmaild's uid and nofiles' gid.
pub fn qmaild() -> (u32, u32) {
    let u = nix::unistd::User::from_name("qmaild").unwrap().unwrap();
    let g = nix::unistd::Group::from_name("nofiles").unwrap().unwrap();
    (u.uid.as_raw(), g.gid.as_raw())
}

/// A file in the alias directory (owned by alias when root), e.g. `.qmail-sales`.
pub fn alias_file(sys: &System, name: &str, text: &str) {
    let p = sys.root.join("alias").join(name);
    std::fs::write(&p, text).unwrap();
    std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    if is_root() {
        let u = nix::unistd::User::from_name("alias").unwrap().unwrap();
        nix::unistd::chown(&p, Some(u.uid), None).unwrap();
    }
}

/// qmail-smtpd listening on 127.0.0.1 (ephemeral port): our tcpserver from the
/// installation (`tcpserver -1 -q -H -R -l ME [-u qmaild -g nofiles]`, with `env` in its
/// environment, as a run script and tcprules would give it), or, when tcpserver is not
/// built, a stand-in that accepts and runs `bin/qmail-smtpd args` per connection with
/// the same TCP* variables. stderr of every qmail-smtpd goes to `log`.
pub struct SmtpServer {
    pub port: u16,
    pub log: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    tcpserver: Option<std::process::Child>,
}

static SERVERS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

impl SmtpServer {
    pub fn start(sys: &System, args: &[&str], env: &[(&str, &str)]) -> SmtpServer {
        if sys.bin("tcpserver").exists() {
            return SmtpServer::start_tcpserver(sys, args, env);
        }
        SmtpServer::start_harness(sys, args, env)
    }

    fn start_tcpserver(sys: &System, args: &[&str], env: &[(&str, &str)]) -> SmtpServer {
        let n = SERVERS.fetch_add(1, Ordering::SeqCst);
        let log = sys.root.parent().unwrap().join(format!("smtpd-{n}.log"));
        let errlog = std::fs::File::create(&log).unwrap();
        let mut cmd = Command::new(sys.bin("tcpserver"));
        cmd.args(["-1", "-q", "-H", "-R", "-l", ME, "-c", "100"]);
        if is_root() {
            let (u, g) = qmaild();
            cmd.args(["-u", &u.to_string(), "-g", &g.to_string()]);
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
            .stderr(Stdio::from(errlog))
            .spawn()
            .expect("start tcpserver");
        let port = printed_port(&mut child);
        SmtpServer {
            port,
            log,
            stop: Arc::new(AtomicBool::new(false)),
            thread: None,
            tcpserver: Some(child),
        }
    }

    fn start_harness(sys: &System, args: &[&str], env: &[(&str, &str)]) -> SmtpServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let log = sys.root.parent().unwrap().join(format!("smtpd-{port}.log"));
        std::fs::write(&log, "").unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let prog = sys.bin("qmail-smtpd");
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let (stop2, log2) = (stop.clone(), log.clone());
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(sock) = conn else { continue };
                let peer = sock.peer_addr().unwrap();
                let fd: OwnedFd = sock.into();
                let out: OwnedFd = fd.try_clone().unwrap();
                let errlog = std::fs::OpenOptions::new()
                    .append(true)
                    .open(&log2)
                    .unwrap();
                let mut cmd = Command::new(&prog);
                cmd.args(&args)
                    .env_clear()
                    .env("PATH", "/usr/bin:/bin")
                    .env("PROTO", "TCP")
                    .env("TCPREMOTEIP", peer.ip().to_string())
                    .env("TCPREMOTEPORT", peer.port().to_string())
                    .env("TCPLOCALIP", "127.0.0.1")
                    .env("TCPLOCALPORT", port.to_string())
                    .env("TCPLOCALHOST", ME)
                    .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                    .stdin(Stdio::from(fd))
                    .stdout(Stdio::from(out))
                    .stderr(Stdio::from(errlog));
                if is_root() {
                    let (u, g) = qmaild();
                    // tcpserver -u -g: one group, then gid, then uid
                    // SAFETY: only async-signal-safe calls between fork and exec.
                    unsafe {
                        cmd.pre_exec(move || {
                            let gid = g as libc::gid_t;
                            if libc::setgroups(1, &gid) != 0
                                || libc::setgid(gid) != 0
                                || libc::setuid(u as libc::uid_t) != 0
                            {
                                return Err(std::io::Error::last_os_error());
                            }
                            Ok(())
                        });
                    }
                }
                if let Ok(mut child) = cmd.spawn() {
                    std::thread::spawn(move || {
                        let _ = child.wait();
                    });
                }
            }
        });
        SmtpServer {
            port,
            log,
            stop,
            thread: Some(thread),
            tcpserver: None,
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn client(&self) -> Client {
        Client::connect(self.port)
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        if let Some(mut c) = self.tcpserver.take() {
            let _ = c.kill();
            let _ = c.wait();
            return;
        }
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A raw SMTP client: send lines, read complete (multi-line) replies.
pub struct Client {
    pub sock: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Client {
    pub fn connect(port: u16) -> Client {
        let sock = TcpStream::connect(("127.0.0.1", port)).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        let reader = BufReader::new(sock.try_clone().unwrap());
        Client { sock, reader }
    }

    /// One reply: all its lines joined with `\n`; empty at EOF.
    pub fn reply(&mut self) -> String {
        let mut all = String::new();
        loop {
            let mut line = Vec::new();
            match self.reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => return all,
                Ok(_) => {}
            }
            let line = String::from_utf8_lossy(&line).trim_end().to_string();
            let more = line.as_bytes().get(3) == Some(&b'-');
            if !all.is_empty() {
                all.push('\n');
            }
            all.push_str(&line);
            if !more {
                return all;
            }
        }
    }

    pub fn raw(&mut self, bytes: &[u8]) {
        self.sock.write_all(bytes).unwrap();
    }

    /// Send a command line (CR LF added) and return its reply.
    pub fn cmd(&mut self, line: &str) -> String {
        self.raw(format!("{line}\r\n").as_bytes());
        self.reply()
    }

    /// True when the server closed the connection (EOF within the read timeout).
    pub fn closed(&mut self) -> bool {
        let mut b = [0u8; 256];
        loop {
            match self.reader.read(&mut b) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
                Err(_) => return false,
            }
        }
    }
}

/// Messages in the queue (files under queue/mess).
pub fn queued(sys: &System) -> usize {
    let mut n = 0;
    for d in std::fs::read_dir(sys.root.join("queue/mess"))
        .unwrap()
        .flatten()
    {
        n += std::fs::read_dir(d.path()).map(|r| r.count()).unwrap_or(0);
    }
    n
}

/// The contents of every queued message.
pub fn queued_messages(sys: &System) -> Vec<String> {
    let mut v = Vec::new();
    for d in std::fs::read_dir(sys.root.join("queue/mess"))
        .unwrap()
        .flatten()
    {
        for f in std::fs::read_dir(d.path()).unwrap().flatten() {
            v.push(String::from_utf8_lossy(&std::fs::read(f.path()).unwrap()).into_owned());
        }
    }
    v
}

/// The envelope recipients of every message waiting in queue/todo (qmail-send stopped).
pub fn todo_recipients(sys: &System) -> Vec<Vec<String>> {
    let mut v = Vec::new();
    for f in std::fs::read_dir(sys.root.join("queue/todo"))
        .unwrap()
        .flatten()
    {
        let data = std::fs::read(f.path()).unwrap();
        v.push(
            data.split(|&b| b == 0)
                .filter(|r| r.first() == Some(&b'T'))
                .map(|r| String::from_utf8_lossy(&r[1..]).into_owned())
                .collect(),
        );
    }
    v
}

/// A self-signed certificate for `ME` into control/servercert.pem (+ serverkey.pem),
/// readable by qmaild only (when root).
pub fn install_cert(sys: &System) {
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec![ME.into()]).unwrap();
    let cert = params.self_signed(&key).unwrap();
    let c = sys.root.join("control/servercert.pem");
    let k = sys.root.join("control/serverkey.pem");
    let _ = std::fs::remove_file(&k);
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    std::fs::set_permissions(&k, std::os::unix::fs::PermissionsExt::from_mode(0o400)).unwrap();
    if is_root() {
        let (u, _) = qmaild();
        nix::unistd::chown(&k, Some(u.into()), None).unwrap();
    }
}

/// A checkpassword accepting `joe`/`secret` (also as CRAM-MD5: the HMAC of the
/// challenge, computed with openssl: a test using it checks for the tool) and `ann@virt.test`/`pw2`, reading fd 3 and exec'ing its subprogram on
/// success, exit 1 otherwise, as the interface defines it.
pub fn test_checkpassword(sys: &System) -> PathBuf {
    let p = sys.root.parent().unwrap().join("checkpw");
    std::fs::write(
        &p,
        r#"#!/bin/sh
rec=$(head -c 512 <&3 | tr '\000' '\n')
user=$(printf '%s\n' "$rec" | sed -n 1p)
pass=$(printf '%s\n' "$rec" | sed -n 2p)
stamp=$(printf '%s\n' "$rec" | sed -n 3p)
case "$user:$pass" in
joe:secret|ann@virt.test:pw2) exec "$@" ;;
esac
if [ "$user" = joe ]; then
  d=$(printf '%s' "$stamp" | openssl dgst -md5 -hmac secret -r | cut -d' ' -f1)
  [ "$d" = "$pass" ] && exec "$@"
fi
exit 1
"#,
    )
    .unwrap();
    std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    p
}

/// smtplib: send the message in file argv[4] (LF turned into CRLF) from argv[2] to
/// argv[3], after AUTH with argv[5]/argv[6] when given; prints `250` or `CODE TEXT`.
/// Run it with [`python`].
pub const SMTPLIB_SEND: &str = r#"
import smtplib, sys
port, frm, rcpt, path = sys.argv[1:5]
msg = open(path, 'rb').read().replace(b'\r\n', b'\n').replace(b'\n', b'\r\n')
s = smtplib.SMTP('127.0.0.1', int(port), timeout=120)
if len(sys.argv) > 6:
    s.login(sys.argv[5], sys.argv[6])
try:
    s.sendmail(frm, [rcpt], msg)
    print('250')
except smtplib.SMTPDataError as e:
    print(e.smtp_code, e.smtp_error.decode())
s.quit()
"#;

/// base64 of `s`.
pub fn b64(s: &[u8]) -> String {
    use base64::prelude::*;
    BASE64_STANDARD.encode(s)
}

/// Run a python3 script with arguments; returns (success, stdout+stderr).
pub fn python(script: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("python3");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Poll `f` until it holds or `secs` pass.
pub fn eventually(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}

/// Send one message over an open session; returns the final reply.
pub fn send_message(c: &mut Client, from: &str, to: &[&str], body: &str) -> String {
    let r = c.cmd(&format!("MAIL FROM:<{from}>"));
    if !r.starts_with("250") {
        return r;
    }
    for t in to {
        let r = c.cmd(&format!("RCPT TO:<{t}>"));
        if !r.starts_with("250") {
            return r;
        }
    }
    let r = c.cmd("DATA");
    if !r.starts_with("354") {
        return r;
    }
    c.raw(body.as_bytes());
    c.raw(b"\r\n.\r\n");
    c.reply()
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

pub fn raw_fd(s: &TcpStream) -> i32 {
    s.as_raw_fd()
}
