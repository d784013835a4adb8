//! End-to-end tests of IMAP: Debian's Dovecot 2.3 started from the configuration and
//! run script qmail-install wrote (HOME/dovecot/dovecot.conf, supervise/qmail-imapd)
//! under our svscan/supervise on free loopback ports, logins checked by our
//! checkpassword in its Dovecot mode; mail delivered through our qmail-smtpd and
//! qmail-send; driven by Python's imaplib, fetchmail and our POP3 on the same Maildir.
//!
//! Needs root (system users, Dovecot's user separation) and Dovecot (dovecot-imapd);
//! otherwise each test skips (`e2e::skip`).

use e2e::*;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const ME: &str = "mx.example.test";
const DOVECOT: &str = "/usr/sbin/dovecot";
const IMAP_PROCESS: &str = "/usr/lib/dovecot/imap";

/// Skip and return unless this test can run: root, Dovecot, useradd.
macro_rules! need_dovecot {
    () => {
        need_root!();
        if !Path::new(DOVECOT).is_file()
            || !Path::new("/usr/lib/dovecot/checkpassword-reply").is_file()
        {
            e2e::skip("Dovecot is not installed (apt-get install dovecot-imapd)");
            return;
        }
        need_tool!("useradd", "passwd");
    };
}

/// A system account for one test (home in a fresh directory with a Maildir, password
/// set with chpasswd: yescrypt, Debian's default), removed when dropped.
struct TestUser {
    name: String,
    uid: u32,
    home: PathBuf,
    _dir: tempfile::TempDir,
}

impl TestUser {
    fn new(name: &str, password: &str) -> TestUser {
        lock_user(name);
        let _ = Command::new("userdel")
            .arg(name)
            .stderr(Stdio::null())
            .status();
        let dir = tempfile::Builder::new()
            .prefix("imaphome")
            .tempdir_in("/tmp")
            .unwrap();
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        let home = dir.path().join(name);
        let st = Command::new("useradd")
            .args(["-M", "-s", "/bin/sh", "-d"])
            .arg(&home)
            .arg(name)
            .status()
            .unwrap();
        assert!(st.success(), "useradd {name}");
        let u = nix::unistd::User::from_name(name).unwrap().unwrap();
        for sub in ["", "Maildir", "Maildir/new", "Maildir/cur", "Maildir/tmp"] {
            let p = home.join(sub);
            std::fs::create_dir_all(&p).unwrap();
            nix::unistd::chown(&p, Some(u.uid), Some(u.gid)).unwrap();
        }
        let out = output_with_input(
            &mut Command::new("chpasswd"),
            format!("{name}:{password}\n"),
        );
        assert!(out.status.success(), "chpasswd {name}");
        let shadow = Command::new("getent")
            .args(["shadow", name])
            .output()
            .unwrap();
        assert!(
            String::from_utf8_lossy(&shadow.stdout).contains(":$y$"),
            "not yescrypt"
        );
        TestUser {
            name: name.into(),
            uid: u.uid.as_raw(),
            home,
            _dir: dir,
        }
    }

    fn maildir(&self) -> PathBuf {
        self.home.join("Maildir")
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        let _ = Command::new("userdel")
            .arg(&self.name)
            .stderr(Stdio::null())
            .status();
    }
}

use e2e::svscan::{Scan, stop};

/// One installation with Dovecot serving it: IMAP on `port`, IMAPS on `sport`.
struct Imap {
    sys: System,
    scan: Option<Scan>,
    port: u16,
    sport: u16,
}

impl Imap {
    /// Install, check that qmail-install set Dovecot up, give it a certificate and
    /// free loopback ports, and start qmail-imapd under svscan; ready when the log
    /// says Dovecot started and both ports answer.
    fn start() -> Imap {
        let sys = System::install(ME, &["example.test"]);
        for p in [
            "qmail-vuser",
            "qmail-vdeliver",
            "qmail-popup",
            "qmail-pop3d",
        ] {
            let dst = sys.bin(p);
            if !dst.exists() {
                std::fs::copy(build_dir().join(p), &dst).unwrap();
            }
        }
        let conf = sys.root.join("dovecot/dovecot.conf");
        assert!(conf.is_file(), "qmail-install wrote no {}", conf.display());
        assert!(sys.root.join("supervise/qmail-imapd/run").is_file());
        certificate(&sys);
        let (port, sport) = (free_port(), free_port());
        sys.control("listenaddress", "127.0.0.1\n");
        sys.control("imapport", &format!("{port}\n"));
        sys.control("imapsport", &format!("{sport}\n"));
        sys.control("checkpassworddelay", "0\n");
        sys.control("pop3authdelay", "0\n");
        let scan = Scan::start(&sys, &["qmail-imapd"]);
        let imap = Imap {
            sys,
            scan: Some(scan),
            port,
            sport,
        };
        wait_until("Dovecot started", 30, || {
            imap.log().contains("starting up for imap").then_some(())
        });
        for p in [port, sport] {
            wait_until("IMAP port open", 30, || {
                std::net::TcpStream::connect(("127.0.0.1", p)).ok()
            });
        }
        imap
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.sys.root.join("supervise/qmail-imapd/log/main/current"))
            .unwrap_or_default()
    }

    fn vuser(&self, args: &[&str], stdin: &str) {
        let out = self.sys.run_as(None, "qmail-vuser", args, stdin.as_bytes());
        assert!(
            out.status.success(),
            "qmail-vuser {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Imap {
    fn drop(&mut self) {
        // stop Dovecot before the installation's directory goes
        self.scan.take();
        if std::thread::panicking() || std::env::var_os("IMAP_TEST_LOG").is_some() {
            eprintln!("Dovecot's log:\n{}", self.log());
        }
    }
}

/// A self-signed certificate in control/servercert.pem (key and certificate in one file).
fn certificate(sys: &System) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec![ME.into()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    sys.control(
        "servercert.pem",
        &format!("{}{}", key.serialize_pem(), cert.pem()),
    );
}

/// qmail-smtpd as qmaild under our tcpserver on an ephemeral loopback port (as
/// supervise/qmail-smtpd runs it), with qmail-send started: mail arrives by SMTP.
fn smtp(sys: &mut System) -> (Server, u16) {
    sys.start();
    let qmaild = nix::unistd::User::from_name("qmaild").unwrap().unwrap();
    let mut child = Command::new(build_dir().join("tcpserver"))
        .args(["-1", "-H", "-R", "-D"])
        .arg("-u")
        .arg(qmaild.uid.to_string())
        .arg("-g")
        .arg(qmaild.gid.to_string())
        .args(["127.0.0.1", "0"])
        .arg(sys.bin("qmail-smtpd"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let port = printed_port(&mut child);
    (Server(child), port)
}

/// Send one message by SMTP with Python's smtplib.
fn send(port: u16, to: &str, subject: &str, body: &str) {
    py(
        r#"
import smtplib, sys
s = smtplib.SMTP('127.0.0.1', int(sys.argv[1]), timeout=30)
s.sendmail('a@remote.test', [sys.argv[2]], ('Subject: %s\r\n\r\n%s\r\n' % (sys.argv[3], sys.argv[4])).encode())
s.quit()
"#,
        &[&port.to_string(), to, subject, body],
    );
}

/// Run a Python 3 script (Debian's interpreter) with `args`; returns stdout, asserting
/// success.
fn py(script: &str, args: &[&str]) -> String {
    let out = Command::new("/usr/bin/python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "python failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Shared by the scripts: an unverified TLS context and a client that connects from
/// a chosen source address.
const PRELUDE: &str = r#"
import imaplib, ssl, socket, sys
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
class From(imaplib.IMAP4):
    source = '127.0.0.1'
    def _create_socket(self, timeout):
        return socket.create_connection((self.host, self.port), timeout, (self.source, 0))
def connect(mode, port, source='127.0.0.1'):
    if mode == 'imaps':
        return imaplib.IMAP4_SSL('127.0.0.1', port, ssl_context=ctx, timeout=30)
    From.source = source
    m = From('127.0.0.1', port, timeout=30)
    if mode == 'starttls':
        m.starttls(ctx)
    return m
"#;

/// Log in, SELECT INBOX, FETCH message 1, STORE \Seen, then \Deleted and EXPUNGE; one
/// line per step.
const SESSION: &str = r#"
mode, port, user, pw, want = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
m = connect(mode, port)
if mode != 'plain':
    print('tls', m.sock.version() in ('TLSv1.2', 'TLSv1.3'))
print('login', m.login(user, pw)[0])
print('select', m.select('INBOX')[1][0].decode())
typ, data = m.fetch('1', '(BODY.PEEK[])')
print('fetch', want.encode() in data[0][1])
typ, data = m.store('1', '+FLAGS', '\\Seen')
print('seen', b'\\Seen' in data[0])
m.store('1', '+FLAGS', '\\Deleted')
print('expunge', m.expunge()[1])
print('after', m.select('INBOX')[1][0].decode())
m.logout()
"#;

fn session(mode: &str, port: u16, user: &str, pw: &str, want: &str) -> String {
    py(
        &format!("{PRELUDE}{SESSION}"),
        &[mode, &port.to_string(), user, pw, want],
    )
}

/// One login attempt: `ok` or `no` and the server's text.
const LOGIN: &str = r#"
mode, port, user, pw, source = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
m = connect(mode, port, source)
print('caps', ' '.join(sorted(c for c in m.capabilities if c in ('LOGINDISABLED', 'STARTTLS'))))
try:
    print('ok', m.login(user, pw)[0])
    m.logout()
except imaplib.IMAP4.error as e:
    print('no', e)
"#;

fn login(mode: &str, port: u16, user: &str, pw: &str, source: &str) -> String {
    py(
        &format!("{PRELUDE}{LOGIN}"),
        &[mode, &port.to_string(), user, pw, source],
    )
}

/// Real uid and command line (NULs as spaces) of every process running `exe`.
fn processes_of(exe: &str) -> Vec<(u32, String)> {
    pids_of(Path::new(exe))
        .into_iter()
        .filter_map(|pid| {
            let uid = uid_of(pid)?;
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            Some((uid, String::from_utf8_lossy(&cmd).replace('\0', " ")))
        })
        .collect()
}

#[test]
fn system_and_virtual_users_over_starttls_and_imaps() {
    need_dovecot!();
    let mut imap = Imap::start();
    let sysuser = TestUser::new("vtest_imsys", "Imap-Pass-31");
    let owner = TestUser::new("vtest_imown", "Owner-Pass-31");
    imap.vuser(&["adddomain", "virt.example", "--owner", &owner.name], "");
    imap.vuser(&["add", "ann@virt.example"], "Virt-Pass-31\n");
    // the passwd-file kept for Dovecot 2.4 holds a hash Dovecot itself verifies
    let passwd = std::fs::read_to_string(imap.sys.root.join("users/dovecot-passwd")).unwrap();
    let fields: Vec<&str> = passwd.trim_end().split(':').collect();
    assert_eq!(fields[0], "ann@virt.example", "{passwd}");
    assert_eq!(fields[2], owner.uid.to_string(), "{passwd}");
    for (pw, ok) in [("Virt-Pass-31", true), ("Wrong-Pass-31", false)] {
        let out = Command::new("doveadm")
            .args(["pw", "-t", fields[1], "-p", pw])
            .output()
            .unwrap();
        assert_eq!(out.status.success(), ok, "{out:?}");
    }
    let (_smtpd, smtp_port) = smtp(&mut imap.sys);
    let vmaildir = imap.sys.root.join("vdomains/virt.example/ann/Maildir");
    send(
        smtp_port,
        &format!("{}@{ME}", sysuser.name),
        "to sys",
        "hello system user",
    );
    send(
        smtp_port,
        "ann@virt.example",
        "to ann",
        "hello virtual user",
    );
    wait_maildir(&sysuser.maildir(), 1, 30);
    wait_maildir(&vmaildir, 1, 30);

    let want = [
        "tls True",
        "login OK",
        "select 1",
        "fetch True",
        "seen True",
        "expunge [b'1']",
        "after 0",
    ]
    .join("\n")
        + "\n";
    let out = session(
        "starttls",
        imap.port,
        &sysuser.name,
        "Imap-Pass-31",
        "hello system user",
    );
    assert_eq!(out, want, "system user over STARTTLS");
    let out = session(
        "imaps",
        imap.sport,
        "ann@virt.example",
        "Virt-Pass-31",
        "hello virtual user",
    );
    assert_eq!(out, want, "virtual user over IMAPS");
    // Dovecot left its files beside new/ and cur/, owned by the mailbox owners
    assert!(sysuser.maildir().join("dovecot-uidlist").is_file());
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(vmaildir.join("dovecot-uidlist")).unwrap();
    assert_eq!(meta.uid(), owner.uid);

    // as root each user's imap process runs as that user; the auth service as qmaild
    send(
        smtp_port,
        &format!("{}@{ME}", sysuser.name),
        "again",
        "second",
    );
    send(smtp_port, "ann@virt.example", "again", "second");
    wait_maildir(&sysuser.maildir(), 1, 30);
    wait_maildir(&vmaildir, 1, 30);
    let mut held = Command::new("/usr/bin/python3")
        .arg("-c")
        .arg(format!(
            "{PRELUDE}{}",
            r#"
a = connect('starttls', int(sys.argv[1])); a.login(sys.argv[2], sys.argv[3]); a.select('INBOX')
b = connect('imaps', int(sys.argv[4])); b.login('ann@virt.example', sys.argv[5]); b.select('INBOX')
print('ready', flush=True)
sys.stdin.readline()
a.logout(); b.logout()
"#
        ))
        .args([
            &imap.port.to_string(),
            &sysuser.name,
            "Imap-Pass-31",
            &imap.sport.to_string(),
            "Virt-Pass-31",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(held.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "ready\n");
    let imaps = processes_of(IMAP_PROCESS);
    let of = |user: &str| -> Vec<u32> {
        imaps
            .iter()
            .filter(|(_, cmd)| cmd.contains(&format!("[{user} ")))
            .map(|(uid, _)| *uid)
            .collect()
    };
    assert_eq!(of(&sysuser.name), [sysuser.uid], "{imaps:?}");
    assert_eq!(of("ann@virt.example"), [owner.uid], "{imaps:?}");
    // every imap process serving someone (its title names the user) runs as non-root;
    // one without a name is a process another test's Dovecot has just forked, before it
    // set its title and dropped to its user
    assert!(
        imaps
            .iter()
            .filter(|(_, cmd)| cmd.contains('['))
            .all(|(uid, _)| *uid != 0),
        "{imaps:?}"
    );
    let qmaild = nix::unistd::User::from_name("qmaild").unwrap().unwrap();
    let root_conf = imap.sys.root.join("dovecot/dovecot.conf");
    let auths: Vec<u32> = processes_of("/usr/lib/dovecot/auth")
        .into_iter()
        .filter(|(_, cmd)| cmd.contains("qmail-imapd"))
        .map(|(uid, _)| uid)
        .collect();
    assert!(
        !auths.is_empty() && auths.iter().all(|u| *u == qmaild.uid.as_raw()),
        "auth processes {auths:?} ({})",
        root_conf.display()
    );
    held.stdin.take().unwrap().write_all(b"\n").unwrap();
    assert!(held.wait().unwrap().success());
}

#[test]
fn wrong_passwords_locked_accounts_and_plaintext_without_tls_are_refused() {
    need_dovecot!();
    let imap = Imap::start();
    let sysuser = TestUser::new("vtest_imbad", "Right-Pass-31");
    let owner = TestUser::new("vtest_imbow", "Owner-Pass-31");
    imap.vuser(&["adddomain", "bad.example", "--owner", &owner.name], "");
    imap.vuser(&["add", "bob@bad.example"], "Pass-Word-Bb-31\n");
    let port = imap.port;
    let no = |out: &str, why: &str| {
        assert!(
            out.lines().any(|l| l.starts_with("no ") && l.contains(why)),
            "{out}"
        )
    };
    // names with + and = (qmail-vuser allows them) reach checkpassword
    imap.vuser(&["add", "b+o=b@bad.example"], "Pass-Word-Pl-31\n");
    let out = login(
        "imaps",
        imap.sport,
        "b+o=b@bad.example",
        "Pass-Word-Pl-31",
        "",
    );
    assert!(out.contains("ok OK"), "{out}");
    // inside TLS: right passwords work, wrong ones do not
    assert!(
        login(
            "starttls",
            port,
            &sysuser.name,
            "Right-Pass-31",
            "127.0.0.1"
        )
        .contains("ok OK")
    );
    assert!(
        login(
            "imaps",
            imap.sport,
            "bob@bad.example",
            "Pass-Word-Bb-31",
            ""
        )
        .contains("ok OK")
    );
    no(
        &login(
            "starttls",
            port,
            &sysuser.name,
            "Wrong-Pass-31",
            "127.0.0.1",
        ),
        "AUTHENTICATIONFAILED",
    );
    no(
        &login("imaps", imap.sport, "bob@bad.example", "Wrong", ""),
        "AUTHENTICATIONFAILED",
    );
    no(
        &login("starttls", port, "vtest_nosuchuser", "x", "127.0.0.1"),
        "AUTHENTICATIONFAILED",
    );
    // locked: a system account locked with usermod -L, a disabled virtual user
    assert!(
        Command::new("usermod")
            .args(["-L", &sysuser.name])
            .status()
            .unwrap()
            .success()
    );
    no(
        &login(
            "starttls",
            port,
            &sysuser.name,
            "Right-Pass-31",
            "127.0.0.1",
        ),
        "AUTHENTICATIONFAILED",
    );
    imap.vuser(&["disable", "bob@bad.example"], "");
    no(
        &login(
            "imaps",
            imap.sport,
            "bob@bad.example",
            "Pass-Word-Bb-31",
            "",
        ),
        "AUTHENTICATIONFAILED",
    );
    assert!(
        Command::new("usermod")
            .args(["-U", &sysuser.name])
            .status()
            .unwrap()
            .success()
    );
    // without TLS from another address than the server's: no plaintext login at all
    let out = login("plain", port, &sysuser.name, "Right-Pass-31", "127.0.0.2");
    assert!(out.starts_with("caps LOGINDISABLED STARTTLS\n"), "{out}");
    no(&out, "PRIVACYREQUIRED");
    // the same client with STARTTLS logs in
    assert!(
        login(
            "starttls",
            port,
            &sysuser.name,
            "Right-Pass-31",
            "127.0.0.2"
        )
        .contains("ok OK")
    );
    // loopback aside: a client on the server's own address may log in without TLS
    let out = login("plain", port, &sysuser.name, "Right-Pass-31", "127.0.0.1");
    assert!(out.contains("ok OK"), "{out}");
    // checkpassword logged the refusals, the client's address with them (through
    // Dovecot's log process and multilog, not in step with the answers)
    let wanted = format!("ip=127.0.0.1 user={}", sysuser.name);
    wait_until("checkpassword's refusals in the log", 30, || {
        let log = imap.log();
        (log.contains("bad password caller=") && log.contains(&wanted)).then_some(())
    });
}

#[test]
fn failures_per_address_are_limited_for_imap_too() {
    need_dovecot!();
    let imap = Imap::start();
    let user = TestUser::new("vtest_imlim", "Right-Pass-31");
    imap.sys.control("authfaillimit", "2\n");
    for _ in 0..2 {
        let out = login("imaps", imap.sport, &user.name, "Wrong-Pass-31", "");
        assert!(out.contains("no "), "{out}");
    }
    // the address used up its failures: even the right password is refused now
    let out = login("imaps", imap.sport, &user.name, "Right-Pass-31", "");
    assert!(out.contains("AUTHENTICATIONFAILED"), "{out}");
    // logged through Dovecot's log process and multilog, not in step with the answer
    wait_until("the refusal in the log", 30, || {
        imap.log()
            .contains(
                "login refused: too many failures for the address in the last hour ip=127.0.0.1",
            )
            .then_some(())
    });
}

#[test]
fn fetchmail_fetches_over_imap() {
    need_dovecot!();
    need_tool!("fetchmail", "fetchmail");
    let mut imap = Imap::start();
    let user = TestUser::new("vtest_imfm", "Fetch-Pass-31");
    let (_smtpd, smtp_port) = smtp(&mut imap.sys);
    send(
        smtp_port,
        &format!("{}@{ME}", user.name),
        "for fetchmail",
        "fetch me",
    );
    wait_maildir(&user.maildir(), 1, 30);
    let (text, res) = fetchmail(
        imap.sport,
        "IMAP",
        &user.name,
        "Fetch-Pass-31",
        "ssl no sslcertck no keep",
    );
    assert!(
        text.contains("Subject: for fetchmail") && text.contains("fetch me"),
        "fetchmail: {}\n{}\nfetched: {text}",
        String::from_utf8_lossy(&res.stdout),
        String::from_utf8_lossy(&res.stderr)
    );
    // fetched and deleted: the mailbox is empty for IMAP and POP3 alike
    let left = std::fs::read_dir(user.maildir().join("new"))
        .unwrap()
        .chain(std::fs::read_dir(user.maildir().join("cur")).unwrap())
        .count();
    assert_eq!(left, 0);
}

/// Our tcpserver running qmail-popup + qmail-pop3d for `sys` on an ephemeral port.
fn pop3_server(sys: &System) -> (Server, u16) {
    let mut child = Command::new(build_dir().join("tcpserver"))
        .args(["-1", "-H", "-R", "-D", "127.0.0.1", "0"])
        .arg(sys.bin("qmail-popup"))
        .arg(ME)
        .arg(sys.bin("checkpassword"))
        .arg(sys.bin("qmail-pop3d"))
        .arg("Maildir")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let port = printed_port(&mut child);
    (Server(child), port)
}

/// POP3 and IMAP take turns on one Maildir, with sessions of both open while mail
/// arrives: what one reader flags or deletes the other sees.
#[test]
fn pop3_and_imap_on_one_mailbox_stay_consistent() {
    need_dovecot!();
    let mut imap = Imap::start();
    let user = TestUser::new("vtest_imp3", "Both-Pass-31");
    let (_smtpd, smtp_port) = smtp(&mut imap.sys);
    for i in 0..3 {
        send(
            smtp_port,
            &format!("{}@{ME}", user.name),
            &format!("m{i}"),
            &format!("body {i}"),
        );
    }
    wait_maildir(&user.maildir(), 3, 30);
    for m in maildir_new(&user.maildir()) {
        wait_past_mtime(&m);
    }
    // POP3 without TLS on loopback, to keep the script short (TLS is tested in pop3.rs)
    imap.sys.control("pop3plaintext", "1\n");
    let (_pop, pop_port) = pop3_server(&imap.sys);
    let script = format!(
        "{PRELUDE}{}",
        r#"
import poplib, smtplib, time
port, pport, user, pw, smtp = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5])
def pop():
    p = poplib.POP3('127.0.0.1', pport, timeout=30); p.user(user); p.pass_(pw); return p
def pop_numbers(p):
    # POP3 message number of each subject
    n = p.stat()[0]
    return {[l for l in p.top(i, 0)[1] if l.startswith(b'Subject:')][0].decode()[9:]: i for i in range(1, n + 1)}
def seq(m, subject):
    return m.search(None, 'SUBJECT', subject)[1][0].decode()
def subjects(m):
    typ, data = m.fetch('1:*', '(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])')
    return sorted(d[1].decode().strip()[9:] + (' seen' if b'\\Seen' in d[0] else '') + (' flagged' if b'\\Flagged' in d[0] else '') for d in data if isinstance(d, tuple))
m = connect('starttls', port); m.login(user, pw)
print('imap', m.select('INBOX')[1][0].decode())
# IMAP reads m0: Dovecot moves all three to cur/, m0 as :2,S
m.fetch(seq(m, 'm0'), '(BODY[])')
print('flags', subjects(m))
# a POP3 session opened now lists the renamed files, retrieves m0 and deletes it
p = pop()
nums = pop_numbers(p)
print('pop', sorted(nums))
print('pop retr', b'body 0' in b'\n'.join(p.retr(nums['m0'])[1]))
p.dele(nums['m0'])
# meanwhile IMAP flags m1 (renaming its file under POP3's feet) and mail arrives
m.store(seq(m, 'm1'), '+FLAGS', '\\Flagged')
s = smtplib.SMTP('127.0.0.1', smtp, timeout=30); s.sendmail('a@remote.test', [user + '@mx.example.test'], b'Subject: m3\r\n\r\nbody 3\r\n'); s.quit()
print('pop retr renamed', b'body 1' in b'\n'.join(p.retr(nums['m1'])[1]))
p.quit()
# IMAP sees POP3's deletion and, once delivered, the new message
for _ in range(300):
    m.noop()
    now = subjects(m)
    if 'm3' in now:
        break
    time.sleep(0.1)
print('imap after pop', now)
# IMAP expunges m1; POP3 will no longer list it
m.store(seq(m, 'm1'), '+FLAGS', '\\Deleted'); m.expunge()
print('imap after expunge', subjects(m))
m.logout()
"#
    );
    let mut out = py(
        &script,
        &[
            &imap.port.to_string(),
            &pop_port.to_string(),
            &user.name,
            "Both-Pass-31",
            &smtp_port.to_string(),
        ],
    );
    // the new message must be older than this second for POP3
    let md = user.maildir();
    wait_until("m3 delivered", 30, || {
        std::fs::read_dir(md.join("new"))
            .ok()?
            .chain(std::fs::read_dir(md.join("cur")).ok()?)
            .count()
            .eq(&2)
            .then_some(())
    });
    for sub in ["new", "cur"] {
        for e in std::fs::read_dir(md.join(sub)).unwrap().flatten() {
            wait_past_mtime(&e.path());
        }
    }
    out += &py(
        r#"
import poplib, sys
p = poplib.POP3('127.0.0.1', int(sys.argv[1]), timeout=30); p.user(sys.argv[2]); p.pass_(sys.argv[3])
n = p.stat()[0]
print('pop last', n, sorted(b'\n'.join(p.retr(i)[1]).split(b'\n')[-1].decode() for i in range(1, n + 1)))
p.quit()
"#,
        &[&pop_port.to_string(), &user.name, "Both-Pass-31"],
    );
    let want = [
        "imap 3",
        "flags ['m0 seen', 'm1', 'm2']",
        "pop ['m0', 'm1', 'm2']",
        "pop retr True",
        "pop retr renamed True",
        "imap after pop ['m1 flagged', 'm2', 'm3']",
        "imap after expunge ['m2', 'm3']",
        "pop last 2 ['body 2', 'body 3']",
    ];
    assert_eq!(out, want.join("\n") + "\n");
}

/// The contract with Dovecot without Dovecot: the installed (set-id) checkpassword run
/// as Dovecot's auth service runs it (as qmaild, ORIG_UID set, the record on fd 3,
/// Dovecot's checkpassword-reply as the program, its reply on fd 4) answers with the
/// user's uid, gid, home and Maildir and does not change uid; a wrong password is exit
/// 1; any other caller (nobody) is refused before fd 3 is read.
#[test]
fn checkpassword_answers_dovecot_on_descriptor_4() {
    need_dovecot!();
    need_tool!("setpriv", "util-linux");
    let imap = Imap::start();
    let sysuser = TestUser::new("vtest_imcpw", "Reply-Pass-31");
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let ask = |as_user: &str, group: &str, login: &str, pw: &str| -> (Option<i32>, String) {
        let cred = dir.path().join("cred");
        let out = dir.path().join("out");
        std::fs::write(&cred, format!("{login}\0{pw}\0\0")).unwrap();
        std::fs::set_permissions(&cred, std::os::unix::fs::PermissionsExt::from_mode(0o644))
            .unwrap();
        let _ = std::fs::remove_file(&out);
        let u = nix::unistd::User::from_name(as_user).unwrap().unwrap();
        let st = Command::new("setpriv")
            .arg(format!("--reuid={as_user}"))
            .arg(format!("--regid={group}"))
            .arg("--clear-groups")
            .args(["env", "-"])
            .arg(format!("ORIG_UID={}", u.uid))
            .args(["TCPREMOTEIP=192.0.2.44", "sh", "-c"])
            .arg(r#"exec "$0" /usr/lib/dovecot/checkpassword-reply 3<"$1" 4>"$2""#)
            .arg(imap.sys.bin("checkpassword"))
            .arg(&cred)
            .arg(&out)
            .stderr(Stdio::null())
            .status()
            .unwrap();
        (st.code(), std::fs::read_to_string(&out).unwrap_or_default())
    };
    let (code, reply) = ask("qmaild", "nofiles", &sysuser.name, "Reply-Pass-31");
    assert_eq!(code, Some(0), "{reply}");
    let fields: Vec<&str> = reply.split('\t').collect();
    for want in [
        format!("user={}", sysuser.name),
        format!("userdb_home={}", sysuser.home.display()),
        format!("userdb_uid={}", sysuser.uid),
        format!("userdb_mail=maildir:{}/Maildir", sysuser.home.display()),
    ] {
        assert!(fields.contains(&want.as_str()), "{want} in {reply:?}");
    }
    let (code, reply) = ask("qmaild", "nofiles", &sysuser.name, "Wrong-Pass-31");
    assert_eq!((code, reply.as_str()), (Some(1), ""));
    let (code, reply) = ask("nobody", "nogroup", &sysuser.name, "Reply-Pass-31");
    assert_eq!((code, reply.as_str()), (Some(2), ""));
}

/// Supervised like our own services: qmail-install says it set IMAP up, qmailctl shows
/// qmail-imapd and its log, stops Dovecot (the ports close) and starts it again.
#[test]
fn qmailctl_stops_and_starts_dovecot() {
    need_dovecot!();
    let imap = Imap::start();
    let out = Command::new(imap.sys.bin("qmail-install"))
        .arg("--root")
        .arg(&imap.sys.root)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains(&format!(
            "qmail-install: IMAP: Dovecot configured in {}/dovecot, service qmail-imapd",
            imap.sys.root.display()
        )),
        "{said}"
    );
    let svdir = imap.scan.as_ref().unwrap().dir.clone();
    let ctl = |verb: &str| {
        let o = Command::new(imap.sys.bin("qmailctl"))
            .arg("-s")
            .arg(&svdir)
            .arg(verb)
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let stat = ctl("stat");
    assert!(stat.contains("qmail-imapd: up (pid "), "{stat}");
    assert!(stat.contains("qmail-imapd/log: up (pid "), "{stat}");
    ctl("stop");
    wait_until("Dovecot stopped", 30, || {
        std::net::TcpStream::connect(("127.0.0.1", imap.sport))
            .is_err()
            .then_some(())
    });
    // Dovecot closes its ports before it has waited for its children and exited, and
    // supervise says "down" only after that exit
    wait_until("qmailctl stat saying down", 30, || {
        ctl("stat").contains("qmail-imapd: down").then_some(())
    });
    ctl("start");
    wait_until("Dovecot started again", 30, || {
        std::net::TcpStream::connect(("127.0.0.1", imap.sport)).ok()
    });
    let out = login("imaps", imap.sport, "vtest_nosuchuser", "x", "");
    assert!(out.contains("AUTHENTICATIONFAILED"), "{out}");
}

/// The quick start (init/quickstart, as root in a root-owned temporary tree) serves
/// IMAP and IMAPS on $IMAP_PORT and $IMAPS_PORT when Dovecot is installed, prints how
/// to try them, and the demo user reads a message sent by SMTP; Ctrl-C (SIGINT) stops
/// Dovecot with the rest.
#[test]
fn quickstart_serves_imap() {
    need_dovecot!();
    let tmp = tempfile::Builder::new()
        .prefix("quick-imap")
        .tempdir_in("/tmp")
        .unwrap();
    std::fs::set_permissions(
        tmp.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../init/quickstart");
    let out = tmp.path().join("out");
    let (smtp_port, imap_port, imaps_port) = (free_port(), free_port(), free_port());
    let child = Command::new("sh")
        .arg(&script)
        .arg(tmp.path().join("run"))
        .env("QUICKSTART_BIN", build_dir())
        .env("SMTP_PORT", smtp_port.to_string())
        .env("SUBMISSION_PORT", "0")
        .env("POP3_PORT", "0")
        .env("SMTPS_PORT", "0")
        .env("POP3S_PORT", "0")
        .env("IMAP_PORT", imap_port.to_string())
        .env("IMAPS_PORT", imaps_port.to_string())
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut child = Some(child);
    let info = wait_until("the quick start's instructions", 60, || {
        std::fs::read_to_string(&out)
            .ok()
            .filter(|t| t.contains("Ctrl-C stops everything."))
    });
    let result = std::panic::catch_unwind(|| {
        assert!(
            info.contains(&format!(
                "IMAP       127.0.0.1:{imap_port} (STARTTLS)    IMAPS 127.0.0.1:{imaps_port}"
            )),
            "{info}"
        );
        assert!(info.contains("imaplib.IMAP4_SSL('127.0.0.1',"), "{info}");
        for p in [smtp_port, imaps_port] {
            wait_until("quick start port open", 60, || {
                std::net::TcpStream::connect(("127.0.0.1", p)).ok()
            });
        }
        send(
            smtp_port,
            "demo@demo.example.test",
            "quick imap",
            "hello imap",
        );
        let got = py(
            &format!(
                "{PRELUDE}{}",
                r#"
import time
for _ in range(600):
    m = connect('imaps', int(sys.argv[1])); m.login('demo@demo.example.test', 'Quick-Start-26')
    n = int(m.select('INBOX')[1][0])
    if n:
        break
    m.logout(); time.sleep(0.1)
print(n, b'hello imap' in m.fetch('1', '(BODY[])')[1][0][1])
"#
            ),
            &[&imaps_port.to_string()],
        );
        assert_eq!(got, "1 True\n");
    });
    let st = child
        .take()
        .and_then(|c| stop(c, nix::sys::signal::Signal::SIGINT));
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
    assert!(st.is_some_and(|s| s.success()), "{st:?}");
    assert!(std::net::TcpStream::connect(("127.0.0.1", imaps_port)).is_err());
}
