//! End-to-end tests of POP3: our tcpserver running qmail-popup, checkpassword and
//! qmail-pop3d from a temporary installation, driven by Python's poplib, raw sockets
//! and fetchmail; system users made with Debian's useradd/chpasswd/usermod/mkpasswd,
//! virtual users made with qmail-vuser and fed through qmail-send and qmail-vdeliver.
//!
//! Tests that create users or change uids need root (CI runs them as root); without
//! root, or without a Debian tool they use, they skip (`e2e::skip`). `pop3d_session_over_pipes` runs as anyone.

use e2e::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

const ME: &str = "mx.example.test";

/// An installation with the virtual-user programs copied in (the installer does not
/// list them yet) and no failure delay.
fn system() -> System {
    let sys = System::install(ME, &["example.test"]);
    for p in [
        "qmail-vuser",
        "qmail-vdeliver",
        "qmail-popup",
        "qmail-pop3d",
        "checkpassword",
    ] {
        let dst = sys.bin(p);
        if !dst.exists() {
            std::fs::copy(build_dir().join(p), &dst).unwrap();
        }
    }
    sys.control("pop3authdelay", "0\n");
    sys
}

/// Skip (`e2e::skip`) and return unless this test can make system users: root, and
/// mkpasswd for the hash types ([`TestUser::new`]).
macro_rules! need_users {
    () => {
        need_root!();
        need_tool!("mkpasswd", "whois");
    };
}

/// A system account for one test, removed when dropped.
struct TestUser {
    name: String,
    uid: u32,
    gid: u32,
    home: PathBuf,
    _dir: tempfile::TempDir,
}

impl TestUser {
    /// `useradd` with a home in a fresh directory, a Maildir, and `password` set with
    /// `chpasswd` (yescrypt, Debian's default) or, for `method`, `usermod -p $(mkpasswd
    /// -m method)`.
    fn new(name: &str, password: &str, method: Option<&str>) -> TestUser {
        let _ = Command::new("userdel")
            .arg(name)
            .stderr(Stdio::null())
            .status();
        let dir = tempfile::Builder::new()
            .prefix("pop3home")
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
        let t = TestUser {
            name: name.into(),
            uid: u.uid.as_raw(),
            gid: u.gid.as_raw(),
            home,
            _dir: dir,
        };
        t.set_password(password, method);
        t
    }

    fn set_password(&self, password: &str, method: Option<&str>) {
        match method {
            None => {
                let mut c = Command::new("chpasswd")
                    .stdin(Stdio::piped())
                    .spawn()
                    .unwrap();
                c.stdin
                    .take()
                    .unwrap()
                    .write_all(format!("{}:{password}\n", self.name).as_bytes())
                    .unwrap();
                assert!(c.wait().unwrap().success());
            }
            Some(m) => {
                let out = Command::new("mkpasswd")
                    .args(["-m", m, password])
                    .output()
                    .unwrap();
                assert!(out.status.success(), "mkpasswd -m {m}");
                let hash = String::from_utf8(out.stdout).unwrap().trim().to_string();
                let st = Command::new("usermod")
                    .args(["-p", &hash, &self.name])
                    .status()
                    .unwrap();
                assert!(st.success());
            }
        }
    }

    fn shadow_hash(&self) -> String {
        let out = Command::new("getent")
            .args(["shadow", &self.name])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .split(':')
            .nth(1)
            .unwrap_or("")
            .to_string()
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

/// Put `n` messages into `maildir/new` with mtimes in the past, owned by `uid`.
fn fill_maildir(maildir: &Path, n: usize, uid: Option<(u32, u32)>, body: impl Fn(usize) -> String) {
    let base = qsys_now() - 100_000;
    for i in 0..n {
        let p = maildir.join(format!("new/{}.M{i}P1.{ME}", base + i as i64));
        std::fs::write(&p, body(i)).unwrap();
        let ts = nix::sys::time::TimeSpec::new(base + i as i64, 0);
        nix::sys::stat::utimensat(
            nix::fcntl::AT_FDCWD,
            &p,
            &ts,
            &ts,
            nix::sys::stat::UtimensatFlags::FollowSymlink,
        )
        .unwrap();
        if let Some((u, g)) = uid {
            nix::unistd::chown(
                &p,
                Some(nix::unistd::Uid::from_raw(u)),
                Some(nix::unistd::Gid::from_raw(g)),
            )
            .unwrap();
        }
    }
}

fn qsys_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Our tcpserver on an ephemeral loopback port running qmail-popup for `sys`.
fn pop3_server(sys: &System, pop3s: bool, env: &[(&str, &str)]) -> (Server, u16) {
    pop3_server_opts(sys, pop3s, env, &[])
}

/// The same with more tcpserver options (such as `-x rules.cdb`). Under the memory
/// limit the run scripts set (`softlimit -m`, control/softlimit's default), so that what
/// production cannot allocate the tests cannot either (qmail-pop3d's threads at QUIT).
fn pop3_server_opts(
    sys: &System,
    pop3s: bool,
    env: &[(&str, &str)],
    opts: &[&str],
) -> (Server, u16) {
    let mut cmd = Command::new(sys.bin("softlimit"));
    cmd.args(["-m", "100000000"])
        .arg(build_dir().join("tcpserver"))
        .args(["-1", "-H", "-R", "-D"])
        .args(opts)
        .args(["127.0.0.1", "0"])
        .arg(sys.bin("qmail-popup"));
    if pop3s {
        cmd.arg("--pop3s");
    }
    cmd.arg(ME)
        .arg(sys.bin("checkpassword"))
        .arg(sys.bin("qmail-pop3d"))
        .arg("Maildir")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(sys.root.join("pop3.log"))
                .unwrap(),
        ));
    let mut child = cmd.spawn().expect("start tcpserver");
    let port = printed_port(&mut child);
    (Server(child), port)
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

/// poplib: log in with USER/PASS and print `ok STAT` or `fail REPLY`.
const LOGIN: &str = r#"
import poplib, sys
p = poplib.POP3('127.0.0.1', int(sys.argv[1]), timeout=30)
try:
    p.user(sys.argv[2]); p.pass_(sys.argv[3])
    print('ok', p.stat())
    p.quit()
except poplib.error_proto as e:
    print('fail', e)
"#;

fn login(port: u16, user: &str, pass: &str) -> String {
    py(LOGIN, &[&port.to_string(), user, pass])
        .trim()
        .to_string()
}

#[test]
fn pop3d_session_over_pipes() {
    // qmail-pop3d alone, as checkpassword would start it, with pipes for the client
    let dir = tempfile::tempdir().unwrap();
    let md = dir.path().join("Maildir");
    for s in ["", "new", "cur", "tmp"] {
        std::fs::create_dir_all(md.join(s)).unwrap();
    }
    fill_maildir(&md, 2, None, |i| format!("Subject: {i}\n\n.line {i}\n"));
    let mut cmd = Command::new(build_dir().join("qmail-pop3d"));
    cmd.arg("Maildir").current_dir(dir.path());
    if is_root() {
        // qmail-pop3d refuses uid 0: run it as nobody on a Maildir nobody owns
        use std::os::unix::process::CommandExt;
        let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
        for e in walk(dir.path()) {
            nix::unistd::chown(&e, Some(nobody.uid), Some(nobody.gid)).unwrap();
        }
        cmd.uid(nobody.uid.as_raw()).gid(nobody.gid.as_raw());
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
    }
    let out = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin
                .take()
                .unwrap()
                .write_all(b"STAT\r\nRETR 1\r\nTOP 2 0\r\nDELE 1\r\nQUIT\r\n")?;
            c.wait_with_output()
        })
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        text,
        "+OK \r\n+OK 2 40\r\n+OK \r\nSubject: 0\r\n\r\n..line 0\r\n.\r\n+OK \r\nSubject: 1\r\n\r\n.\r\n+OK \r\n+OK \r\n"
    );
    assert_eq!(std::fs::read_dir(md.join("new")).unwrap().count(), 0);
    let cur: Vec<String> = std::fs::read_dir(md.join("cur"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(cur.len(), 1);
    assert!(cur[0].ends_with(":2,"), "{cur:?}");
}

fn walk(p: &Path) -> Vec<PathBuf> {
    let mut v = vec![p.to_path_buf()];
    if p.is_dir() {
        for e in std::fs::read_dir(p).unwrap().flatten() {
            v.extend(walk(&e.path()));
        }
    }
    v
}

#[test]
fn system_users_with_each_hash_type() {
    need_users!();
    let sys = system();
    let (_srv, port) = pop3_server(&sys, false, &[]);
    let cases = [
        ("vtest_p3y", None, "$y$"),
        ("vtest_p36", Some("sha-512"), "$6$"),
        ("vtest_p35", Some("sha-256"), "$5$"),
        ("vtest_p31", Some("md5"), "$1$"),
    ];
    let mut users = Vec::new();
    for (name, method, prefix) in cases {
        let u = TestUser::new(name, "Pass-word-9", method);
        assert!(
            u.shadow_hash().starts_with(prefix),
            "{name}: {}",
            u.shadow_hash()
        );
        fill_maildir(&u.maildir(), 1, Some((u.uid, u.gid)), |_| {
            "Subject: x\n\nhello\n".into()
        });
        assert_eq!(login(port, name, "Pass-word-9"), "ok (1, 18)", "{name}");
        assert!(login(port, name, "Pass-word-8").starts_with("fail b'-ERR authorization failed"));
        users.push(u);
    }
    assert!(login(port, "vtest_nosuch", "Pass-word-9").starts_with("fail"));
    // a locked account and a no-login shell are refused with the right password
    let locked = &users[0];
    assert!(
        Command::new("usermod")
            .args(["-L", &locked.name])
            .status()
            .unwrap()
            .success()
    );
    assert!(login(port, &locked.name, "Pass-word-9").starts_with("fail"));
    let shell = &users[1];
    assert!(
        Command::new("usermod")
            .args(["-s", "/usr/sbin/nologin", &shell.name])
            .status()
            .unwrap()
            .success()
    );
    assert!(login(port, &shell.name, "Pass-word-9").starts_with("fail"));
    // root never logs in
    assert!(login(port, "root", "whatever").starts_with("fail"));
    let log = std::fs::read_to_string(sys.root.join("pop3.log")).unwrap_or_default();
    assert!(
        log.contains("auth failed ip=127.0.0.1 mech=USER user=vtest_nosuch"),
        "{log}"
    );
}

#[test]
fn processes_run_as_qmaild_and_the_mailbox_owner() {
    need_users!();
    let sys = system();
    let (_srv, port) = pop3_server(&sys, false, &[]);
    let u = TestUser::new("vtest_p3uid", "Pass-word-9", Some("sha-512"));
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    assert!(
        line.starts_with("+OK <") && line.contains(&format!("@{ME}>")),
        "{line}"
    );
    // before login: a root parent and a qmaild child
    let qmaild = nix::unistd::User::from_name("qmaild")
        .unwrap()
        .unwrap()
        .uid
        .as_raw();
    let mut uids: Vec<u32> = pids_of(&sys.bin("qmail-popup"))
        .into_iter()
        .filter_map(uid_of)
        .collect();
    uids.sort();
    assert_eq!(uids, vec![0, qmaild]);
    s.write_all(b"USER vtest_p3uid\r\nPASS Pass-word-9\r\n")
        .unwrap();
    for _ in 0..2 {
        line.clear();
        r.read_line(&mut line).unwrap();
        assert!(line.starts_with("+OK"), "{line}");
    }
    let pids = pids_of(&sys.bin("qmail-pop3d"));
    assert_eq!(pids.len(), 1);
    assert_eq!(uid_of(pids[0]), Some(u.uid));
    let env = std::fs::read(format!("/proc/{}/environ", pids[0])).unwrap();
    let env = String::from_utf8_lossy(&env);
    assert!(env.contains("USER=vtest_p3uid\0"), "{env}");
    assert!(
        env.contains(&format!("HOME={}\0", u.home.display())),
        "{env}"
    );
    s.write_all(b"QUIT\r\n").unwrap();
    line.clear();
    r.read_line(&mut line).unwrap();
    assert_eq!(line, "+OK \r\n");
}

/// RETR, DELE, a client that disconnects before QUIT, TOP on a header-only message,
/// too many failures.
const SESSION: &str = r#"
import poplib, sys, socket
port, user, pw = int(sys.argv[1]), sys.argv[2], sys.argv[3]
p = poplib.POP3('127.0.0.1', port, timeout=30)
p.user(user); p.pass_(pw)
print('stat', p.stat())
for i in (1, 2, 3): p.dele(i)
p.sock.close()                      # gone without QUIT: nothing may be deleted
p = poplib.POP3('127.0.0.1', port, timeout=30)
p.user(user); p.pass_(pw)
print('stat', p.stat())
print('top', p.top(3, 5)[1])
print('uidl', len(p.uidl()[1]))
resp, lines, octets = p.retr(1)
print('retr', lines)
p.dele(1); p.dele(2)
print('last', p._shortcmd('LAST'))
p.quit()
p = poplib.POP3('127.0.0.1', port, timeout=30)
p.user(user); p.pass_(pw)
print('stat', p.stat())
p.quit()
p = poplib.POP3('127.0.0.1', port, timeout=30)
for i in range(3):
    try:
        p.user(user); p.pass_('wrong')
    except poplib.error_proto as e:
        print('fail', i, e)
try:
    p.noop()
    print('still open')
except Exception as e:
    print('closed')
"#;

#[test]
fn retrieve_delete_disconnect_and_top() {
    need_users!();
    let sys = system();
    let (_srv, port) = pop3_server(&sys, false, &[]);
    let u = TestUser::new("vtest_p3ses", "Pass-word-9", Some("sha-512"));
    fill_maildir(&u.maildir(), 3, Some((u.uid, u.gid)), |i| match i {
        0 => "Subject: one\n\n.starts with a dot\nsecond\n".into(),
        1 => "Subject: two\n\nbody\n".into(),
        _ => "Subject: headers only\nX-No-Body: yes\n".into(),
    });
    let out = py(SESSION, &[&port.to_string(), &u.name, "Pass-word-9"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "stat (3, 96)", "{out}");
    assert_eq!(lines[1], "stat (3, 96)", "{out}");
    assert_eq!(
        lines[2], "top [b'Subject: headers only', b'X-No-Body: yes']",
        "{out}"
    );
    assert_eq!(lines[3], "uidl 3");
    assert_eq!(
        lines[4],
        "retr [b'Subject: one', b'', b'.starts with a dot', b'second']"
    );
    assert_eq!(lines[5], "last b'+OK 2'");
    assert_eq!(lines[6], "stat (1, 37)", "{out}");
    assert!(
        lines[7].starts_with("fail 0 b'-ERR authorization failed"),
        "{out}"
    );
    assert!(lines[9].starts_with("fail 2"), "{out}");
    assert_eq!(lines[10], "closed", "{out}");
    let left = walk(&u.maildir().join("cur"));
    assert_eq!(left.len(), 2, "{left:?}"); // the directory and one message
}

/// A big mailbox; its 5,000 deletions take QUIT's removal threads, under the run
/// scripts' memory limit.
#[test]
fn ten_thousand_messages() {
    need_users!();
    let sys = system();
    let (_srv, port) = pop3_server(&sys, false, &[]);
    let u = TestUser::new("vtest_p3big", "Pass-word-9", Some("sha-512"));
    fill_maildir(&u.maildir(), 10_000, Some((u.uid, u.gid)), |i| {
        format!("Subject: {i:05}\n\nbody\n")
    });
    let script = r#"
import poplib, sys
p = poplib.POP3('127.0.0.1', int(sys.argv[1]), timeout=60)
p.user(sys.argv[2]); p.pass_(sys.argv[3])
print(p.stat())
print(len(p.list()[1]), len(p.uidl()[1]))
print(p.retr(10000)[1][0], p.retr(1)[1][0])
for i in range(1, 5001): p.dele(i)
p.quit()
"#;
    let out = py(script, &[&port.to_string(), &u.name, "Pass-word-9"]);
    assert_eq!(
        out,
        "(10000, 210000)\n10000 10000\nb'Subject: 09999' b'Subject: 00000'\n"
    );
    assert_eq!(
        std::fs::read_dir(u.maildir().join("cur")).unwrap().count(),
        5000
    );
    assert_eq!(
        std::fs::read_dir(u.maildir().join("new")).unwrap().count(),
        0
    );
}

#[test]
fn fetchmail_fetches_and_deletes() {
    need_users!();
    need_tool!("fetchmail", "fetchmail");
    let sys = system();
    let (_srv, port) = pop3_server(&sys, false, &[]);
    let u = TestUser::new("vtest_p3fm", "Pass-word-9", Some("sha-512"));
    fill_maildir(&u.maildir(), 3, Some((u.uid, u.gid)), |i| {
        format!("From: a@example.test\nSubject: fm {i}\n\nbody {i}\n")
    });
    let (text, res) = fetchmail(port, "POP3", &u.name, "Pass-word-9", "sslproto '' no keep");
    assert!(
        text.contains("Subject: fm 0") && text.contains("Subject: fm 2"),
        "fetchmail: {}\n{}\nfetched: {text}",
        String::from_utf8_lossy(&res.stdout),
        String::from_utf8_lossy(&res.stderr)
    );
    assert_eq!(walk(&u.maildir().join("new")).len(), 1);
    assert_eq!(walk(&u.maildir().join("cur")).len(), 1);
}

/// A self-signed certificate in control/servercert.pem.
fn certificate(sys: &System) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec![ME.into()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    sys.control(
        "servercert.pem",
        &format!("{}{}", cert.pem(), key.serialize_pem()),
    );
}

fn vuser(sys: &System, args: &[&str], stdin: &str) -> std::process::Output {
    sys.run_as(None, "qmail-vuser", args, stdin.as_bytes())
}

fn vuser_ok(sys: &System, args: &[&str], stdin: &str) {
    let out = vuser(sys, args, stdin);
    assert!(
        out.status.success(),
        "qmail-vuser {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

const TLS: &str = r#"
import poplib, sys, ssl, socket, base64
port, sport, user, pw = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
p = poplib.POP3('127.0.0.1', port, timeout=30)
caps = p.capa()
print('capa', sorted(caps))
try:
    p.user(user)
except poplib.error_proto as e:
    print('plain', e)
p.stls(ctx)
print('capa', sorted(p.capa()))
p.user(user); p.pass_(pw)
print('stls', p.stat(), p.retr(1)[1][-1])
p.quit()
s = poplib.POP3_SSL('127.0.0.1', sport, timeout=30, context=ctx)
s.user(user); s.pass_(pw)
print('pop3s', s.stat())
s.quit()
# AUTH PLAIN inside TLS, initial response on the command line
s = poplib.POP3_SSL('127.0.0.1', sport, timeout=30, context=ctx)
print('plainauth', s._shortcmd('AUTH PLAIN ' + base64.b64encode(b'\0' + user.encode() + b'\0' + pw.encode()).decode()))
print('plainauth', s.stat())
s.quit()
# AUTH PLAIN with the response on its own line, after a cancelled attempt
s = poplib.POP3_SSL('127.0.0.1', sport, timeout=30, context=ctx)
print('cont', s._shortcmd('AUTH PLAIN'))
try:
    s._shortcmd('*')
except poplib.error_proto as e:
    print('cont', e)
print('cont', s._shortcmd('AUTH PLAIN'))
print('cont', s._shortcmd(base64.b64encode(user.encode() + b'\0' + user.encode() + b'\0' + pw.encode()).decode()))
s.quit()
# APOP (needs the --apop secret)
a = poplib.POP3('127.0.0.1', port, timeout=30)
print('apop', a.apop(user, pw))
a.quit()
a = poplib.POP3('127.0.0.1', port, timeout=30)
try:
    a.apop(user, 'wrong')
except poplib.error_proto as e:
    print('apopbad', e)
# STLS injection: a command pipelined after STLS must not be executed inside TLS
raw = socket.create_connection(('127.0.0.1', port), timeout=30)
f = raw.makefile('rb')
f.readline()
raw.sendall(b'STLS\r\nUSER ' + user.encode() + b'\r\n')
print('inject', f.readline())
t = ctx.wrap_socket(raw)
t.sendall(b'PASS ' + pw.encode() + b'\r\n')
print('inject', t.recv(100))
"#;

#[test]
fn virtual_user_over_stls_pop3s_apop_and_auth_plain() {
    need_users!();
    let sys = system();
    certificate(&sys);
    let owner = TestUser::new("vtest_p3vm", "Pass-word-9", Some("sha-512"));
    vuser_ok(
        &sys,
        &["adddomain", "virt.example", "--owner", &owner.name],
        "",
    );
    // the policy applies to the administrator too
    let out = vuser(&sys, &["add", "tom@virt.example"], "short\n");
    assert_eq!(out.status.code(), Some(100));
    vuser_ok(
        &sys,
        &["add", "Tom@virt.example", "--apop"],
        "Tls-Secret-42\n",
    );
    let maildir = sys.root.join("vdomains/virt.example/tom/Maildir");
    fill_maildir(&maildir, 1, Some((owner.uid, owner.gid)), |_| {
        "Subject: v\n\nvirtual\n".into()
    });
    let (_srv, port) = pop3_server(&sys, false, &[]);
    let (_ssrv, sport) = pop3_server(&sys, true, &[]);
    let out = py(
        TLS,
        &[
            &port.to_string(),
            &sport.to_string(),
            "tom@virt.example",
            "Tls-Secret-42",
        ],
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "capa ['STLS', 'TOP', 'UIDL']", "{out}");
    assert!(
        lines[1].starts_with("plain b'-ERR plaintext logins are not allowed"),
        "{out}"
    );
    assert_eq!(lines[2], "capa ['SASL', 'TOP', 'UIDL', 'USER']", "{out}");
    assert_eq!(lines[3], "stls (1, 20) b'virtual'", "{out}");
    assert_eq!(lines[4], "pop3s (1, 20)", "{out}");
    assert!(lines[5].starts_with("plainauth b'+OK"), "{out}");
    assert_eq!(lines[6], "plainauth (1, 20)", "{out}");
    assert_eq!(lines[7], "cont b'+ '", "{out}");
    assert_eq!(lines[8], "cont b'-ERR authentication aborted'", "{out}");
    assert_eq!(lines[9], "cont b'+ '", "{out}");
    assert!(lines[10].starts_with("cont b'+OK"), "{out}");
    assert!(lines[11].starts_with("apop b'+OK"), "{out}");
    assert!(
        lines[12].starts_with("apopbad b'-ERR authorization failed"),
        "{out}"
    );
    assert_eq!(
        lines[13], "inject b'+OK begin TLS negotiation\\r\\n'",
        "{out}"
    );
    assert_eq!(lines[14], "inject b'-ERR USER first\\r\\n'", "{out}");
    // a disabled user cannot log in
    vuser_ok(&sys, &["disable", "tom@virt.example"], "");
    let out = py(
        r#"
import poplib, sys, ssl
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
s = poplib.POP3_SSL('127.0.0.1', int(sys.argv[1]), timeout=30, context=ctx)
try:
    s.user('tom@virt.example'); s.pass_('Tls-Secret-42'); print('in')
except poplib.error_proto as e:
    print('fail', e)
"#,
        &[&sport.to_string()],
    );
    assert!(out.starts_with("fail"), "{out}");
}

#[test]
fn virtual_user_receives_mail_and_quota_is_enforced() {
    need_users!();
    let mut sys = system();
    let owner = TestUser::new("vtest_p3vq", "Pass-word-9", Some("sha-512"));
    vuser_ok(
        &sys,
        &["adddomain", "quota.example", "--owner", &owner.name],
        "",
    );
    vuser_ok(
        &sys,
        &["add", "ann@quota.example", "--quota", "2K"],
        "Quota-Pass-42\n",
    );
    vuser_ok(&sys, &["add", "bob@quota.example"], "Quota-Pass-43\n");
    sys.start();
    let md = sys.root.join("vdomains/quota.example/ann/Maildir");
    assert_eq!(
        sys.queue(
            "a@remote.test",
            &["Ann@quota.example"],
            b"Subject: first\n\nsmall\n"
        ),
        0
    );
    let got = wait_maildir(&md, 1, 30);
    assert!(
        got[0].contains("Delivered-To: quota.example-Ann@quota.example\n"),
        "{}",
        got[0]
    );
    // the mailbox belongs to the domain owner
    let meta = std::fs::metadata(maildir_new(&md)[0].clone()).unwrap();
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&meta), owner.uid);
    // unknown user of a virtual domain: bounce
    assert_eq!(
        sys.queue(
            "a@remote.test",
            &["nobody@quota.example"],
            b"Subject: x\n\nx\n"
        ),
        0
    );
    sys.wait_log("no_mailbox_here_by_that_name", 30);
    // over quota: deferred by default
    let big = format!("Subject: big\n\n{}\n", "x".repeat(3000));
    assert_eq!(
        sys.queue("a@remote.test", &["ann@quota.example"], big.as_bytes()),
        0
    );
    sys.wait_log("over_quota._(#4.2.2)", 30);
    assert_eq!(maildir_new(&md).len(), 1);
    // bob has no quota and reads his mail by POP3
    assert_eq!(
        sys.queue("a@remote.test", &["bob@quota.example"], big.as_bytes()),
        0
    );
    let bob_md = sys.root.join("vdomains/quota.example/bob/Maildir");
    wait_maildir(&bob_md, 1, 30);
    // messages of the current second are invisible to POP3: wait for the next one
    wait_past_mtime(&maildir_new(&bob_md)[0]);
    let (_srv, port) = pop3_server(&sys, false, &[]);
    let out = login(port, "bob@quota.example", "Quota-Pass-43");
    assert!(out.starts_with("ok (1, "), "{out}");
    // the bounce policy makes the next over-quota message bounce at once
    sys.control("vquotapolicy", "bounce\n");
    assert_eq!(
        sys.queue("a@remote.test", &["ann@quota.example"], big.as_bytes()),
        0
    );
    sys.wait_log("over_quota._(#5.2.2)", 30);
}

#[test]
fn checkpassword_verifies_for_qmaild_with_the_shadow_group() {
    need_users!();
    let sys = system();
    let u = TestUser::new("vtest_p3cp", "Pass-word-9", None);
    let owner = TestUser::new("vtest_p3co", "Pass-word-9", Some("sha-512"));
    vuser_ok(
        &sys,
        &["adddomain", "cp.example", "--owner", &owner.name],
        "",
    );
    vuser_ok(&sys, &["add", "joe@cp.example"], "Check-Pass-42\n");
    let cp = sys.bin("checkpassword");
    let shadow = nix::unistd::Group::from_name("shadow")
        .unwrap()
        .unwrap()
        .gid;
    nix::unistd::chown(&cp, Some(nix::unistd::Uid::from_raw(0)), Some(shadow)).unwrap();
    std::fs::set_permissions(&cp, std::os::unix::fs::PermissionsExt::from_mode(0o2711)).unwrap();
    let qmaild = nix::unistd::User::from_name("qmaild").unwrap().unwrap();
    let run = |user: &str, pass: &str| -> (Option<i32>, String) {
        use std::os::unix::process::CommandExt;
        let (r, w) = nix::unistd::pipe().unwrap();
        let mut w = std::fs::File::from(w);
        w.write_all(format!("{user}\0{pass}\0\0").as_bytes())
            .unwrap();
        drop(w);
        let raw = std::os::fd::AsRawFd::as_raw_fd(&r);
        let mut cmd = Command::new(&cp);
        cmd.args(["/bin/sh", "-c", "id -u; id -g; echo $USER"])
            .uid(qmaild.uid.as_raw())
            .gid(qmaild.gid.as_raw())
            .current_dir("/");
        unsafe {
            cmd.pre_exec(move || {
                if libc::dup2(raw, 3) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let out = cmd.output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let want = format!("{}\n{}\n", qmaild.uid, qmaild.gid);
    let (code, out) = run(&u.name, "Pass-word-9");
    assert_eq!(code, Some(0));
    assert_eq!(
        out,
        format!("{want}{}\n", u.name),
        "uid kept, shadow group dropped"
    );
    let (code, out) = run("joe@cp.example", "Check-Pass-42");
    assert_eq!((code, out), (Some(0), format!("{want}joe@cp.example\n")));
    assert_eq!(run(&u.name, "Pass-word-8").0, Some(1));
    assert_eq!(run("joe@cp.example", "wrong").0, Some(1));
    assert_eq!(run("vtest_nobody_here", "x").0, Some(1));
    // without the setgid bit qmaild cannot read the hashes: temporary, not "bad"
    std::fs::set_permissions(&cp, std::os::unix::fs::PermissionsExt::from_mode(0o711)).unwrap();
    assert_eq!(run(&u.name, "Pass-word-9").0, Some(111));
    assert_eq!(run("joe@cp.example", "Check-Pass-42").0, Some(111));
    // and so does an unknown name: the answer does not tell who exists
    assert_eq!(run("vtest_nobody_here", "x").0, Some(111));
    assert_eq!(run("nobody@cp.example", "x").0, Some(111));
}

#[test]
fn virtual_user_receives_by_smtp_and_reads_by_pop3() {
    need_users!();
    let mut sys = system();
    let owner = TestUser::new("vtest_p3sm", "Pass-word-9", Some("sha-512"));
    vuser_ok(
        &sys,
        &["adddomain", "smtp.example", "--owner", &owner.name],
        "",
    );
    vuser_ok(&sys, &["add", "eve@smtp.example"], "Smtp-Pass-42\n");
    sys.start();
    // qmail-smtpd as qmaild:nofiles under our tcpserver, as supervise/qmail-smtpd runs it
    let qmaild = nix::unistd::User::from_name("qmaild").unwrap().unwrap();
    let mut cmd = Command::new(build_dir().join("tcpserver"));
    cmd.args(["-1", "-H", "-R", "-D"])
        .arg("-u")
        .arg(qmaild.uid.to_string())
        .arg("-g")
        .arg(qmaild.gid.to_string())
        .args(["127.0.0.1", "0"])
        .arg(sys.bin("qmail-smtpd"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let _smtpd = Server(child);
    let sport: u16 = line.trim().parse().unwrap();
    let out = py(
        r#"
import smtplib, sys
s = smtplib.SMTP('127.0.0.1', int(sys.argv[1]), timeout=30)
s.ehlo('client.test')
print(s.rcpt('nobody@smtp.example') if s.mail('a@remote.test') else '')
s.rset()
s.sendmail('a@remote.test', ['Eve@smtp.example'], b'Subject: by smtp\r\n\r\nhello eve\r\n')
s.quit()
print('sent')
"#,
        &[&sport.to_string()],
    );
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("(550") || lines[0].starts_with("(553"),
        "{out}"
    );
    assert_eq!(lines[1], "sent");
    let md = sys.root.join("vdomains/smtp.example/eve/Maildir");
    let got = wait_maildir(&md, 1, 30);
    assert!(got[0].contains("hello eve"), "{}", got[0]);
    // messages of the current second are invisible to POP3: wait for the next one
    wait_past_mtime(&maildir_new(&md)[0]);
    let (_srv, port) = pop3_server(&sys, false, &[]);
    let out = py(
        r#"
import poplib, sys
p = poplib.POP3('127.0.0.1', int(sys.argv[1]), timeout=30)
p.user('eve@smtp.example'); p.pass_('Smtp-Pass-42')
print(p.retr(1)[1][-1]); p.dele(1); p.quit()
"#,
        &[&port.to_string()],
    );
    assert_eq!(out, "b'hello eve'\n");
    assert!(maildir_new(&md).is_empty());
    assert_eq!(std::fs::read_dir(md.join("cur")).unwrap().count(), 0);
    // postmaster of the virtual domain reaches this host's postmaster (alias)
    let pm = sys.root.join("alias/.qmail-postmaster");
    std::fs::write(&pm, "./pm-box/\n").unwrap();
    let pmbox = sys.root.join("alias/pm-box");
    for s in ["", "new", "cur", "tmp"] {
        std::fs::create_dir_all(pmbox.join(s)).unwrap();
    }
    let alias = nix::unistd::User::from_name("alias").unwrap().unwrap();
    for p in walk(&pmbox).into_iter().chain([pm]) {
        nix::unistd::chown(&p, Some(alias.uid), Some(alias.gid)).unwrap();
    }
    assert_eq!(
        sys.queue(
            "a@remote.test",
            &["postmaster@smtp.example"],
            b"Subject: pm\n\nto pm\n"
        ),
        0
    );
    let got = wait_maildir(&pmbox, 1, 30);
    assert!(got[0].contains("to pm"), "{}", got[0]);
}

#[test]
fn large_messages_through_the_tls_relay() {
    need_users!();
    let sys = system();
    certificate(&sys);
    let u = TestUser::new("vtest_p3tl", "Pass-word-9", Some("sha-512"));
    // 3 MB and a few small ones: the relay must carry many TLS records each way
    fill_maildir(&u.maildir(), 4, Some((u.uid, u.gid)), |i| {
        if i == 1 {
            format!("Subject: big\n\n{}", "0123456789abcdef\n".repeat(180_000))
        } else {
            format!("Subject: small {i}\n\nx\n")
        }
    });
    let (_ssrv, sport) = pop3_server(&sys, true, &[]);
    let out = py(
        r#"
import poplib, sys, ssl
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
s = poplib.POP3_SSL('127.0.0.1', int(sys.argv[1]), timeout=60, context=ctx)
s.user(sys.argv[2]); s.pass_(sys.argv[3])
for i in range(1, 5):
    resp, lines, octets = s.retr(i)
    print(i, len(lines), octets)
    s.dele(i)
print(s.quit())
"#,
        &[&sport.to_string(), &u.name, "Pass-word-9"],
    );
    assert_eq!(
        out, "1 3 23\n2 180002 3240016\n3 3 23\n4 3 23\nb'+OK '\n",
        "{out}"
    );
    assert_eq!(
        std::fs::read_dir(u.maildir().join("new")).unwrap().count(),
        0
    );
    assert_eq!(
        std::fs::read_dir(u.maildir().join("cur")).unwrap().count(),
        0
    );
}

/// Run `cmd` as `user` (root) or as ourselves (not root).
fn as_user<'a>(cmd: &'a mut Command, user: Option<&TestUser>) -> &'a mut Command {
    use std::os::unix::process::CommandExt;
    if let Some(u) = user {
        cmd.uid(u.uid)
            .gid(u.gid)
            .env("HOME", &u.home)
            .env("USER", &u.name);
    }
    cmd
}

#[test]
fn single_user_install_runs_everything_as_one_user() {
    if is_root() {
        need_tool!("mkpasswd", "whois");
    }
    // DESIGN section 4: started by a user other than root, every program runs as that
    // user, with the same code paths. As root, a test user plays that user.
    let owner = is_root().then(|| TestUser::new("vtest_p3one", "Pass-word-9", Some("sha-512")));
    let base = match &owner {
        Some(u) => u.home.clone(),
        None => tempfile::tempdir().unwrap().keep(),
    };
    let root = base.join("qmail");
    let st = as_user(
        Command::new(build_dir().join("qmail-install"))
            .arg("--root")
            .arg(&root)
            .args(["--me", ME])
            .stdout(Stdio::null()),
        owner.as_ref(),
    )
    .status()
    .unwrap();
    assert!(st.success(), "qmail-install as a user");
    for p in ["qmail-vuser", "qmail-popup", "qmail-pop3d", "checkpassword"] {
        let dst = root.join("bin").join(p);
        if !dst.exists() {
            std::fs::copy(build_dir().join(p), &dst).unwrap();
        }
        if let Some(u) = &owner {
            nix::unistd::chown(
                &dst,
                Some(nix::unistd::Uid::from_raw(u.uid)),
                Some(nix::unistd::Gid::from_raw(u.gid)),
            )
            .unwrap();
        }
    }
    std::fs::write(root.join("control/pop3authdelay"), "0\n").unwrap();
    let vuser = |args: &[&str], input: &str| {
        let mut c = as_user(
            Command::new(root.join("bin/qmail-vuser"))
                .args(args)
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::piped()),
            owner.as_ref(),
        )
        .spawn()
        .unwrap();
        c.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    vuser(&["adddomain", "one.example"], "");
    vuser(&["add", "kim@one.example"], "One-User-Pass-7\n");
    let md = root.join("vdomains/one.example/kim/Maildir");
    fill_maildir(&md, 2, owner.as_ref().map(|u| (u.uid, u.gid)), |i| {
        format!("Subject: {i}\n\nsingle\n")
    });
    let mut cmd = Command::new(build_dir().join("tcpserver"));
    cmd.args(["-1", "-H", "-R", "-D", "127.0.0.1", "0"])
        .arg(root.join("bin/qmail-popup"))
        .arg(ME)
        .arg(root.join("bin/checkpassword"))
        .arg(root.join("bin/qmail-pop3d"))
        .arg("Maildir")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = as_user(&mut cmd, owner.as_ref()).spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let _srv = Server(child);
    let port: u16 = line.trim().parse().unwrap();
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut read = || {
        let mut l = String::new();
        r.read_line(&mut l).unwrap();
        l
    };
    assert!(read().starts_with("+OK <"));
    s.write_all(b"USER kim@one.example\r\nPASS One-User-Pass-7\r\n")
        .unwrap();
    assert_eq!(read(), "+OK \r\n");
    assert_eq!(read(), "+OK \r\n");
    let me = owner
        .as_ref()
        .map(|u| u.uid)
        .unwrap_or_else(|| nix::unistd::getuid().as_raw());
    for prog in ["qmail-popup", "qmail-pop3d"] {
        let pids = pids_of(&root.join("bin").join(prog));
        assert!(!pids.is_empty(), "{prog} running");
        for p in pids {
            assert_eq!(uid_of(p), Some(me), "{prog} runs as the install's user");
        }
    }
    s.write_all(b"STAT\r\nQUIT\r\n").unwrap();
    assert_eq!(read(), "+OK 2 38\r\n");
    assert_eq!(read(), "+OK \r\n");
    if owner.is_none() {
        let _ = std::fs::remove_dir_all(&base);
    }
}

#[test]
fn plaintext_policy_from_control_and_tcprules() {
    need_users!();
    let sys = system();
    certificate(&sys);
    let u = TestUser::new("vtest_p3pl", "Pass-word-9", Some("sha-512"));
    let refused = |port: u16| {
        login(port, &u.name, "Pass-word-9").contains("plaintext logins are not allowed")
    };
    // a certificate makes STLS available, so plaintext passwords are refused by default
    let (_a, plain_default) = pop3_server(&sys, false, &[]);
    assert!(refused(plain_default));
    // a tcprules entry allows them for a client
    let rules = sys.root.join("control/tcp.pop3");
    std::fs::write(&rules, "127.0.0.1:allow,POP3PLAINTEXT=\"1\"\n:allow\n").unwrap();
    let mut tr = Command::new(build_dir().join("tcprules"))
        .arg(rules.with_extension("pop3.cdb"))
        .arg(rules.with_extension("pop3.tmp"))
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    tr.stdin
        .take()
        .unwrap()
        .write_all(&std::fs::read(&rules).unwrap())
        .unwrap();
    assert!(tr.wait().unwrap().success());
    let cdb = rules.with_extension("pop3.cdb");
    let (_b, by_rule) = pop3_server_opts(&sys, false, &[], &["-x", cdb.to_str().unwrap()]);
    assert_eq!(login(by_rule, &u.name, "Pass-word-9"), "ok (0, 0)");
    // the control file allows them for everyone (read at each connection) ...
    sys.control("pop3plaintext", "1\n");
    assert_eq!(login(plain_default, &u.name, "Pass-word-9"), "ok (0, 0)");
    // ... unless the environment says no
    let (_c, env_no) = pop3_server(&sys, false, &[("POP3PLAINTEXT", "0")]);
    assert!(refused(env_no));
}

#[test]
fn adddomain_tells_qmail_send_to_reread_through_supervise() {
    if is_root() {
        need_tool!("mkpasswd", "whois");
    }
    // as root or not: the tool writes `h` to qmail-send's supervise control fifo
    let sys = system();
    let sup = sys.root.join("supervise/qmail-send/supervise");
    std::fs::create_dir_all(&sup).unwrap();
    let fifo = sup.join("control");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    // a reader, as supervise keeps one open
    let reader = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo)
        .unwrap();
    let owner = is_root().then(|| TestUser::new("vtest_p3hup", "Pass-word-9", Some("sha-512")));
    let mut args = vec!["adddomain", "hup.example"];
    if let Some(u) = &owner {
        args.extend(["--owner", u.name.as_str()]);
    }
    let out = vuser(&sys, &args, "");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("qmail-send told to reread"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let mut got = Vec::new();
    let _ = (&reader).read_to_end(&mut got);
    assert_eq!(got, b"h");
    // without a reader (no supervise), it says what to do and still succeeds
    drop(reader);
    let mut args = vec!["adddomain", "hup2.example"];
    if let Some(u) = &owner {
        args.extend(["--owner", u.name.as_str()]);
    }
    let out = vuser(&sys, &args, "");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("qmailctl reload"));
}

#[test]
fn debian_tcpserver_and_openssl_s_client() {
    need_users!();
    need_tool!("/usr/bin/tcpserver", "ucspi-tcp");
    need_tool!("openssl", "openssl");
    let theirs = Path::new("/usr/bin/tcpserver");
    let sys = system();
    certificate(&sys);
    let u = TestUser::new("vtest_p3deb", "Pass-word-9", Some("sha-512"));
    fill_maildir(&u.maildir(), 1, Some((u.uid, u.gid)), |_| {
        "Subject: interop\n\nfrom ucspi-tcp\n".into()
    });
    // the original tcpserver (root, no -u), exactly as qmail's documentation runs it
    let mut child = Command::new(theirs)
        .args(["-1", "-H", "-R", "127.0.0.1", "0"])
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
    let _srv = Server(child);
    let mut c = Command::new("openssl")
        .args([
            "s_client",
            "-quiet",
            "-crlf",
            "-starttls",
            "pop3",
            "-connect",
        ])
        .arg(format!("127.0.0.1:{port}"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = c.stdin.take().unwrap();
    let mut out = BufReader::new(c.stdout.take().unwrap());
    let mut talk = |cmd: &str, until: &str| -> String {
        if !cmd.is_empty() {
            stdin.write_all(format!("{cmd}\n").as_bytes()).unwrap();
        }
        let mut got = String::new();
        loop {
            let mut l = String::new();
            if out.read_line(&mut l).unwrap_or(0) == 0 {
                return got;
            }
            got.push_str(&l);
            if l.starts_with(until) {
                return got;
            }
        }
    };
    // s_client consumed the greeting and the STLS exchange; we are inside TLS
    assert!(talk("CAPA", ".").contains("USER"));
    assert!(talk(&format!("USER {}", u.name), "+OK").starts_with("+OK"));
    assert!(talk("PASS Pass-word-9", "+OK").starts_with("+OK"));
    assert!(talk("RETR 1", ".").contains("from ucspi-tcp"));
    assert!(talk("QUIT", "+OK").starts_with("+OK"));
    let _ = c.wait();
}

#[test]
fn failures_per_address_are_limited_across_connections() {
    need_users!();
    let sys = system();
    // qmail-smtpd's counter directory, shared with qmail-popup (owner qmaild, 0700)
    let state = sys.root.join("smtpd");
    std::fs::create_dir_all(&state).unwrap();
    let qmaild = nix::unistd::User::from_name("qmaild").unwrap().unwrap();
    nix::unistd::chown(&state, Some(qmaild.uid), Some(qmaild.gid)).unwrap();
    std::fs::set_permissions(&state, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    sys.control("authfaillimit", "2\n");
    let u = TestUser::new("vtest_p3lim", "Pass-word-9", Some("sha-512"));
    let (_srv, port) = pop3_server(&sys, false, &[]);
    let out = py(
        r#"
import poplib, sys
p = poplib.POP3('127.0.0.1', int(sys.argv[1]), timeout=30)
for pw in ('bad-1', 'bad-2', sys.argv[3]):
    try:
        p.user(sys.argv[2]); p.pass_(pw); print('in')
    except poplib.error_proto as e:
        print(e)
"#,
        &[&port.to_string(), &u.name, "Pass-word-9"],
    );
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].contains("authorization failed"), "{out}");
    assert!(lines[1].contains("authorization failed"), "{out}");
    assert!(
        lines[2].contains("too many authentication failures"),
        "{out}"
    );
    // a new connection with the right password is refused too, for the hour
    assert!(login(port, &u.name, "Pass-word-9").contains("too many authentication failures"));
    let counter = state.join("authfail").join("k3132372e302e302e31"); // k + hex of 127.0.0.1
    // lines `time count`, one per second
    let failures: u64 = std::fs::read_to_string(&counter)
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(1)?.parse::<u64>().ok())
        .sum();
    assert_eq!(failures, 2);
    // without a limit the right password works again
    sys.control("authfaillimit", "0\n");
    assert_eq!(login(port, &u.name, "Pass-word-9"), "ok (0, 0)");
}

#[test]
fn idle_clients_are_disconnected() {
    need_users!();
    let sys = system();
    sys.control("timeoutpop3d", "1\n");
    let u = TestUser::new("vtest_p3idl", "Pass-word-9", Some("sha-512"));
    let (_srv, port) = pop3_server(&sys, false, &[]);
    let eof_after = |login: bool| {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        // generous: the server must hang up long before this
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let mut r = BufReader::new(s.try_clone().unwrap());
        let mut l = String::new();
        r.read_line(&mut l).unwrap();
        assert!(l.starts_with("+OK <"));
        if login {
            s.write_all(format!("USER {}\r\nPASS Pass-word-9\r\n", u.name).as_bytes())
                .unwrap();
            for _ in 0..2 {
                l.clear();
                r.read_line(&mut l).unwrap();
                assert!(l.starts_with("+OK"), "{l}");
            }
        }
        // silence: the next read must end in EOF, not in our 60 s timeout
        let mut rest = Vec::new();
        r.read_to_end(&mut rest)
            .expect("server closed the idle connection");
        rest
    };
    assert!(eof_after(false).is_empty());
    assert!(eof_after(true).is_empty());
}
