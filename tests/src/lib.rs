//! Harness for the end-to-end tests: install the built programs into a temporary root
//! with `qmail-install`, start the system with `qmail-start`, and wait for results.
//!
//! Binaries are found next to the test executable's directory (`target/debug/`); CI
//! builds them first with `cargo build --workspace --bins`.

pub mod clamd;
pub mod daemon;
pub mod svscan;

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The directory holding the built programs.
pub fn build_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .to_path_buf();
    assert!(
        dir.join("qmail-install").is_file(),
        "{} has no qmail-install: run `cargo build --workspace --bins` first",
        dir.display()
    );
    dir
}

pub fn is_root() -> bool {
    nix::unistd::getuid().is_root()
}

/// Run `cmd` with `input` on its stdin (written from a thread, so a child that writes
/// before it reads cannot deadlock) and its stdout and stderr captured.
#[track_caller]
pub fn output_with_input(cmd: &mut Command, input: impl AsRef<[u8]>) -> std::process::Output {
    use std::io::Write;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stdin = child.stdin.take().expect("stdin");
    let input = input.as_ref().to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().expect("wait");
    let _ = writer.join();
    out
}

/// A test that cannot run here (not root, a tool or package missing). Under `CI=true`
/// (CI runs as root with every package installed) this fails the test: a skip there
/// hides a broken setup. Elsewhere it prints `SKIPPED: test: reason` straight to stderr
/// (libtest hides what a passing test prints with `eprintln!`) and appends the same line
/// to [`skip_list`], which the last e2e test binary (`tests/tests/zz_skipped.rs`) prints
/// at the end of `cargo test`. Call it, then `return` from the test.
pub fn skip(reason: &str) {
    use std::io::Write;
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("?");
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test} cannot run under CI=true: {reason}");
    }
    let line = format!("SKIPPED: {test}: {reason}\n");
    let _ = std::io::stderr().write_all(line.as_bytes());
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(skip_list())
    {
        let _ = f.write_all(line.as_bytes());
    }
}

/// `target/skipped-tests.txt`: the skips of this `cargo test` run (emptied by the e2e
/// library's unit tests, which cargo runs first, and read by `zz_skipped.rs`, last).
/// `E2E_SKIP_LIST` names another file (the harness's own tests use it).
pub fn skip_list() -> PathBuf {
    if let Some(p) = std::env::var_os("E2E_SKIP_LIST") {
        return PathBuf::from(p);
    }
    let dir = build_dir();
    dir.parent().unwrap_or(&dir).join("skipped-tests.txt")
}

/// Whether the program `tool` (an absolute path, or a name looked up in PATH and the sbin
/// directories) exists; if not, [`skip`] naming the Debian `package` that provides it.
pub fn have_tool(tool: &str, package: &str) -> bool {
    if find_tool(tool).is_some() {
        return true;
    }
    skip(&format!("{tool} is missing (apt-get install {package})"));
    false
}

/// The path of program `tool`: itself when absolute, else the first match in PATH,
/// /usr/local/sbin, /usr/sbin, /sbin.
pub fn find_tool(tool: &str) -> Option<PathBuf> {
    let p = Path::new(tool);
    if p.is_absolute() {
        return p.is_file().then(|| p.to_path_buf());
    }
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"])
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(tool))
        .find(|c| c.is_file())
}

/// Whether `/usr/bin/python3` can import `module`; if not, [`skip`] naming `package`.
pub fn have_python_module(module: &str, package: &str) -> bool {
    let ok = Command::new("/usr/bin/python3")
        .args(["-c", &format!("import {module}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        skip(&format!(
            "python3 module {module} is missing (apt-get install {package})"
        ));
    }
    ok
}

/// [`skip`] and return from the calling test unless tool `$tool` (see [`have_tool`]) is
/// installed; `$package` is the Debian package that provides it.
#[macro_export]
macro_rules! need_tool {
    ($tool:expr, $package:expr) => {
        if !$crate::have_tool($tool, $package) {
            return;
        }
    };
}

/// Skip (see [`skip`]) and return from the calling test unless it runs as root.
#[macro_export]
macro_rules! need_root {
    () => {
        if !$crate::is_root() {
            $crate::skip("needs root");
            return;
        }
    };
}

/// An installation in a temporary directory, with qmail-send running once started.
pub struct System {
    pub root: PathBuf,
    _dir: tempfile::TempDir,
    send: Option<Child>,
    pub log: PathBuf,
}

impl System {
    /// Install into a fresh temporary root with `me` as host name; `locals` adds domains.
    pub fn install(me: &str, locals: &[&str]) -> System {
        let dir = tempfile::Builder::new()
            .prefix("qmail-e2e")
            .tempdir_in("/tmp")
            .expect("tempdir");
        // recipients' homes and qmail users must be able to traverse the root
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        let root = dir.path().join("root");
        let st = Command::new(build_dir().join("qmail-install"))
            .arg("--root")
            .arg(&root)
            .arg("--me")
            .arg(me)
            .stdout(Stdio::null())
            .status()
            .expect("run qmail-install");
        assert!(st.success(), "qmail-install failed");
        let mut l = format!("{me}\n");
        for d in locals {
            l.push_str(d);
            l.push('\n');
        }
        std::fs::write(root.join("control/locals"), l).unwrap();
        // Nothing leaves this machine, DNS included (DESIGN section 9): without this, a
        // bounce to a test's remote sender would ask /etc/resolv.conf's servers. Tests
        // that resolve point it at their own dnsmasq.
        std::fs::write(root.join("control/nameservers"), "127.0.0.1:1\n").unwrap();
        let log = dir.path().join("send.log");
        System {
            root,
            _dir: dir,
            send: None,
            log,
        }
    }

    /// A handle on an existing installation (for injecting from another thread).
    pub fn attach(root: &Path) -> System {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("unused.log");
        System {
            root: root.to_path_buf(),
            _dir: dir,
            send: None,
            log,
        }
    }

    /// True while qmail-send (started by [`System::start`]) is running.
    pub fn send_alive(&mut self) -> bool {
        match self.send.as_mut().map(|c| c.try_wait()) {
            Some(Ok(None)) => true,
            Some(other) => {
                eprintln!("qmail-send ended: {other:?}");
                false
            }
            None => false,
        }
    }

    pub fn control(&self, name: &str, value: &str) {
        std::fs::write(self.root.join("control").join(name), value).unwrap();
    }

    pub fn bin(&self, name: &str) -> PathBuf {
        self.root.join("bin").join(name)
    }

    /// Start qmail-start (which becomes qmail-send) with default delivery ./Maildir/.
    pub fn start(&mut self) {
        let before = self.log_count("status: local");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(self.bin("qmail-start"))
            .arg("./Maildir/")
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .current_dir("/")
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start qmail-start");
        self.send = Some(child);
        // wait for this qmail-send's first status line, so signals sent next find it ready
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.log_count("status: local") <= before {
            if Instant::now() >= deadline {
                panic!(
                    "qmail-send did not say it was up within 20 s; its log:\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn send_pid(&self) -> Option<u32> {
        self.send.as_ref().map(Child::id)
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        if let Some(pid) = self.send_pid() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig);
        }
    }

    /// SIGKILL qmail-send and wait for it (the spawners then exit on EOF).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.send.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// TERM qmail-send and wait for its exit.
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let mut c = self.send.take()?;
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(c.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(st)) = c.try_wait() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = c.kill();
        c.wait().ok()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Wait until the log contains `needle`.
    pub fn wait_log(&self, needle: &str, secs: u64) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < deadline {
            if self.log_text().contains(needle) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("log never showed {needle:?}; log:\n{}", self.log_text());
    }

    /// Wait until the log contains `needle` at least `n` times.
    #[track_caller]
    pub fn wait_log_count(&self, needle: &str, n: usize, secs: u64) {
        let what = format!("{n} log lines with {needle:?}");
        wait_until(&what, secs, || (self.log_count(needle) >= n).then_some(()));
    }

    /// Count occurrences of `needle` in the log.
    pub fn log_count(&self, needle: &str) -> usize {
        self.log_text().matches(needle).count()
    }

    /// Run a program of this installation with `input` on stdin, as `user` (when root).
    pub fn run_as(
        &self,
        user: Option<&str>,
        prog: &str,
        args: &[&str],
        input: &[u8],
    ) -> std::process::Output {
        let mut c = if let (Some(u), true) = (user, is_root()) {
            let mut c = Command::new("runuser");
            c.args(["-u", u, "--"]).arg(self.bin(prog));
            c
        } else {
            Command::new(self.bin(prog))
        };
        output_with_input(c.args(args), input)
    }

    /// Queue a message with qmail-queue directly (sender, recipients).
    pub fn queue(&self, sender: &str, rcpts: &[&str], message: &[u8]) -> i32 {
        let mut e = format!("F{sender}\0").into_bytes();
        for r in rcpts {
            e.extend_from_slice(format!("T{r}\0").as_bytes());
        }
        e.push(0);
        run_qmail_queue(&mut Command::new(self.bin("qmail-queue")), message, &e)
            .code()
            .unwrap_or(-1)
    }
}

impl Drop for System {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Run `cmd` (qmail-queue, or something that runs it) the QMAILQUEUE way: `message` on
/// its descriptor 0, the raw `envelope` on 1; its exit status. Write errors are ignored:
/// qmail-queue may refuse (and exit) before it has read everything.
pub fn run_qmail_queue(
    cmd: &mut Command,
    message: &[u8],
    envelope: &[u8],
) -> std::process::ExitStatus {
    use std::io::Write;
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::from(r))
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let _ = stdin.write_all(message);
    drop(stdin);
    let _ = std::fs::File::from(w).write_all(envelope);
    child.wait().unwrap()
}

/// Files in a Maildir's new/ (empty if missing).
pub fn maildir_new(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir.join("new"))
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

/// The crash tests' tally: of the messages numbered `accepted` (each sent with the
/// subject `crash N`), the ones not in `dir/new`, and how many extra copies arrived
/// (duplicates are allowed after a crash, losses are not).
pub fn crash_tally(dir: &Path, accepted: &[usize]) -> (Vec<usize>, usize) {
    let mut seen = std::collections::HashMap::new();
    for f in maildir_new(dir) {
        let text = std::fs::read_to_string(&f).unwrap_or_default();
        if let Some(n) = text.lines().find_map(|l| l.strip_prefix("Subject: crash ")) {
            *seen
                .entry(n.trim().parse::<usize>().unwrap_or(usize::MAX))
                .or_insert(0usize) += 1;
        }
    }
    let missing = accepted
        .iter()
        .copied()
        .filter(|i| !seen.contains_key(i))
        .collect();
    (missing, seen.values().map(|&c| c - 1).sum())
}

/// Run Debian's fetchmail once, in the foreground, against `protocol` (POP3, IMAP) on
/// 127.0.0.1:`port` as `user`/`password`; `options` ends its user line (TLS and keep
/// settings). Returns what its MDA received (every message appended to one file) and
/// fetchmail's own output, for the assertion message.
pub fn fetchmail(
    port: u16,
    protocol: &str,
    user: &str,
    password: &str,
    options: &str,
) -> (String, std::process::Output) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("fetched");
    let rc = dir.path().join("fetchmailrc");
    std::fs::write(
        &rc,
        format!(
            "set no syslog\npoll 127.0.0.1 service {port} protocol {protocol} auth password\n  user \"{user}\" password \"{password}\" is root here\n  {options}\n  mda \"/bin/sh -c 'cat >> {}'\"\n",
            out.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&rc, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let res = Command::new("fetchmail")
        .args(["-f"])
        .arg(&rc)
        .args(["--nodetach", "-v"])
        .env("HOME", dir.path())
        .env("FETCHMAILHOME", dir.path())
        .output()
        .unwrap();
    (std::fs::read_to_string(&out).unwrap_or_default(), res)
}

/// Wait until `dir/new` holds at least `n` messages; return their contents.
pub fn wait_maildir(dir: &Path, n: usize, secs: u64) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let files = maildir_new(dir);
        if files.len() >= n {
            return files
                .iter()
                .map(|f| {
                    String::from_utf8_lossy(&std::fs::read(f).unwrap_or_default()).into_owned()
                })
                .collect();
        }
        assert!(
            Instant::now() < deadline,
            "{} has {} of {n} messages",
            dir.display(),
            files.len()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

thread_local! {
    /// The system users this test's thread holds (see [`lock_user`]); dropping a file
    /// releases its lock, which happens when the test's thread ends.
    static USER_LOCKS: std::cell::RefCell<Vec<(String, nix::fcntl::Flock<std::fs::File>)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// Hold the system user `name` for the rest of the calling test: an exclusive `flock`
/// on `/tmp/qmail-e2e-user.NAME.lock`, waited for while another test, in this process
/// or in another test process on this machine (a second `cargo test`, a stress loop),
/// holds it. A real user's home and Maildir are shared by every installation, so two
/// tests using the same user at once see each other's mail. libtest runs every test in
/// its own thread, and the lock is released when that thread ends, after the test's
/// `System` and servers were dropped.
pub fn lock_user(name: &str) {
    if USER_LOCKS.with(|l| l.borrow().iter().any(|(n, _)| n == name)) {
        return;
    }
    use std::os::unix::fs::OpenOptionsExt;
    let path = format!("/tmp/qmail-e2e-user.{name}.lock");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)
        .unwrap_or_else(|e| panic!("open {path}: {e}"));
    use nix::fcntl::{Flock, FlockArg};
    let lock = match Flock::lock(f, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => lock,
        Err((f, _)) => {
            eprintln!("user {name} is in use by another test; waiting for {path}");
            let mut f = f;
            loop {
                match Flock::lock(f, FlockArg::LockExclusive) {
                    Ok(lock) => break lock,
                    Err((again, nix::errno::Errno::EINTR)) => f = again,
                    Err((_, e)) => panic!("flock {path}: {e}"),
                }
            }
        }
    };
    USER_LOCKS.with(|l| l.borrow_mut().push((name.to_string(), lock)));
}

/// A system user with a home and a Maildir, created when missing (root only). The user
/// is held for the calling test ([`lock_user`]) before its Maildir is emptied.
pub fn local_user(name: &str) -> (u32, PathBuf) {
    lock_user(name);
    if nix::unistd::User::from_name(name).ok().flatten().is_none() {
        let st = Command::new("useradd")
            .args(["-m", "-s", "/bin/sh", name])
            .status()
            .expect("useradd");
        assert!(st.success(), "useradd {name}");
    }
    let u = nix::unistd::User::from_name(name).unwrap().unwrap();
    let md = u.dir.join("Maildir");
    let _ = std::fs::remove_dir_all(&md);
    for sub in ["", "tmp", "new", "cur"] {
        std::fs::create_dir_all(md.join(sub)).unwrap();
        nix::unistd::chown(&md.join(sub), Some(u.uid), Some(u.gid)).unwrap();
    }
    for f in std::fs::read_dir(&u.dir).unwrap().flatten() {
        let n = f.file_name().to_string_lossy().into_owned();
        if n.starts_with(".qmail") || n == "Mailbox" || n.starts_with("prog-") {
            let _ = std::fs::remove_file(f.path());
        }
    }
    (u.uid.as_raw(), u.dir)
}

/// Write a file owned by `uid`, mode 0644.
pub fn write_owned(path: &Path, text: &str, uid: u32) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    nix::unistd::chown(path, Some(nix::unistd::Uid::from_raw(uid)), None).unwrap();
}

/// The real uid of process `pid`.
pub fn uid_of(pid: u32) -> Option<u32> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with("Uid:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// The parent pid of process `pid`.
pub fn parent_of(pid: u32) -> Option<u32> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with("PPid:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Pids of processes whose executable is `exe`.
pub fn pids_of(exe: &Path) -> Vec<u32> {
    let mut v = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>()
            && std::fs::read_link(e.path().join("exe")).ok().as_deref() == Some(exe)
        {
            v.push(pid);
        }
    }
    v
}

/// A server process that is killed and reaped when dropped, also when an assertion fails.
pub struct Server(pub Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago, and never handed out before in
/// this process: the kernel may offer a released port again, and the tests of one binary
/// run in parallel, so two of them could otherwise get the same number and talk to each
/// other's servers. Racy across processes (another test binary may bind it meanwhile):
/// only for a server that can neither take port 0 nor report a port (dnsmasq, see
/// [`dnsmasq`], which retries). Others start on port 0: [`printed_port`],
/// [`listen_port`].
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    for _ in 0..1000 {
        let p = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        if GIVEN.lock().unwrap_or_else(|e| e.into_inner()).insert(p) {
            return p;
        }
    }
    panic!("no TCP port left that this process has not used yet");
}

/// A TCP port on 127.0.0.1 that refuses connections for as long as the returned socket
/// lives: bound, never listening, so no other process can take the port meanwhile
/// (what a test of "connection refused" needs, without [`free_port`]'s race).
pub fn refusing_port() -> (OwnedFd, u16) {
    use nix::sys::socket::{
        AddressFamily, SockFlag, SockType, SockaddrIn, bind, getsockname, socket,
    };
    let fd = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .expect("socket");
    bind(
        fd.as_raw_fd(),
        &SockaddrIn::from(std::net::SocketAddrV4::new(
            std::net::Ipv4Addr::LOCALHOST,
            0,
        )),
    )
    .expect("bind 127.0.0.1:0");
    let port = getsockname::<SockaddrIn>(fd.as_raw_fd())
        .expect("getsockname")
        .port();
    (fd, port)
}

/// A UDP port on 127.0.0.1 where nothing answers, for as long as the returned socket
/// lives: the socket holds the port but is connected to 127.0.0.1:9, so the kernel
/// delivers it nothing from anyone else and answers their datagrams with "port
/// unreachable" (a DNS server that is down, at once, without [`free_port`]'s race).
pub fn refusing_udp_port() -> (std::net::UdpSocket, u16) {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind udp 127.0.0.1:0");
    s.connect("127.0.0.1:9").expect("connect udp");
    let port = s.local_addr().expect("udp local_addr").port();
    (s, port)
}

/// Poll `check` every 20 ms until it returns `Some`, at most `secs` seconds; panics
/// naming `what` (and the caller's line) otherwise. The one way these tests wait for a
/// state: on the file, log line or port that proves it, never a fixed sleep.
#[track_caller]
/// `cmd`'s output, trying again while the program is busy: a program this test process
/// has just written (copied into a temporary HOME) is still open for writing in a child
/// another test thread is forking at that moment, until that child execs, and exec
/// fails with ETXTBSY meanwhile.
pub fn output_when_not_busy(cmd: &mut std::process::Command) -> std::process::Output {
    for _ in 0..100 {
        match cmd.output() {
            Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return other.unwrap(),
        }
    }
    panic!("{cmd:?} stayed busy (ETXTBSY) for 2 s")
}

pub fn wait_until<T>(what: &str, secs: u64, mut check: impl FnMut() -> Option<T>) -> T {
    let caller = std::panic::Location::caller();
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what} ({secs} s, at {caller})"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Wait until the clock's second is past the modification second of `path` (qmail's
/// POP3 server, like qmail-pop3d, does not show a message of the current second).
pub fn wait_past_mtime(path: &Path) {
    let mtime = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .unwrap_or_else(|e| panic!("stat {}: {e}", path.display()));
    let second = |t: std::time::SystemTime| {
        t.duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    };
    wait_until("the next second", 5, || {
        (second(std::time::SystemTime::now()) > second(mtime)).then_some(())
    });
}

/// The port a server started on port 0 printed as the first line of its stdout (our
/// and Debian's `tcpserver -1`, the python servers of these tests); `child`'s stdout
/// must be piped. Panics with what it printed instead.
pub fn printed_port(child: &mut Child) -> u16 {
    use std::io::BufRead;
    let mut line = String::new();
    if let Some(out) = child.stdout.take() {
        let _ = std::io::BufReader::new(out).read_line(&mut line);
    }
    line.trim().parse().unwrap_or_else(|_| {
        let st = child.try_wait();
        panic!("server printed {line:?} instead of its port (exit: {st:?})")
    })
}

/// The TCP port process `pid` listens on (its first listening socket), read from /proc:
/// how a test learns the port of a server started on port 0 that does not print it
/// (postfix's smtp-sink).
pub fn listen_port(pid: u32) -> Option<u16> {
    let mut inodes = std::collections::HashSet::new();
    for e in std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.flatten() {
        if let Ok(l) = std::fs::read_link(e.path()) {
            let l = l.to_string_lossy();
            if let Some(n) = l.strip_prefix("socket:[").and_then(|r| r.strip_suffix(']')) {
                inodes.insert(n.to_string());
            }
        }
    }
    for table in [
        format!("/proc/{pid}/net/tcp"),
        format!("/proc/{pid}/net/tcp6"),
    ] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() > 9 && f[3] == "0A" && inodes.contains(f[9]) {
                let hex = f[1].rsplit(':').next()?;
                return u16::from_str_radix(hex, 16).ok();
            }
        }
    }
    None
}

/// Wait until `child` listens on a TCP port and return it (panics if it exits first).
pub fn wait_listen_port(child: &mut Child) -> u16 {
    let pid = child.id();
    wait_until("a server to listen", 20, || {
        if let Ok(Some(st)) = child.try_wait() {
            panic!("server {pid} exited before listening: {st}");
        }
        listen_port(pid)
    })
}

/// Wait until something accepts TCP connections on `addr` (panics if `child` exits).
pub fn wait_port(addr: &str, child: &mut Child) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(20) {
        if std::net::TcpStream::connect(addr).is_ok() {
            return;
        }
        if let Ok(Some(st)) = child.try_wait() {
            panic!("server for {addr} exited early: {st}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("server on {addr} did not start");
}

/// dnsmasq on 127.0.0.1 answering only from `records` (dnsmasq options such as
/// `--txt-record=NAME,TEXT`, `--address=/NAME/IP`); everything under `.test` that it does
/// not know is NXDOMAIN, and nothing is forwarded. Returns the server and its port.
///
/// dnsmasq cannot be told to take port 0 (`--port=0` turns DNS off) nor report one, so
/// this takes a [`free_port`] and starts again on another one when dnsmasq exits because
/// something else bound it meanwhile. The caller checks for the tool first
/// (`need_tool!(DNSMASQ, "dnsmasq-base")`).
pub fn dnsmasq(records: &[&str]) -> (Server, u16) {
    let mut why = String::new();
    for _ in 0..10 {
        let port = free_port();
        let mut cmd = Command::new(DNSMASQ);
        cmd.args([
            "--no-daemon",
            &format!("--port={port}"),
            "--listen-address=127.0.0.1",
            "--bind-interfaces",
            "--no-resolv",
            "--no-hosts",
            "--pid-file=",
            "--local=/test/",
        ]);
        if is_root() {
            cmd.arg("--user=root");
        }
        cmd.args(records)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("start dnsmasq");
        let addr = format!("127.0.0.1:{port}");
        let up = wait_until("dnsmasq to listen", 20, || {
            if std::net::TcpStream::connect(&addr).is_ok() {
                return Some(true);
            }
            child.try_wait().ok().flatten().map(|_| false)
        });
        if up {
            return (Server(child), port);
        }
        if let Some(mut err) = child.stderr.take() {
            why.clear();
            let _ = std::io::Read::read_to_string(&mut err, &mut why);
        }
    }
    panic!("dnsmasq did not start on any of 10 ports: {why}");
}

/// Where Debian's dnsmasq-base installs dnsmasq.
pub const DNSMASQ: &str = "/usr/sbin/dnsmasq";

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether another open file description can take the lock of user `name` now.
    fn free_now(name: &str) -> bool {
        let f = std::fs::File::open(format!("/tmp/qmail-e2e-user.{name}.lock")).unwrap();
        nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock).is_ok()
    }

    /// Cargo runs this library's unit tests before the e2e test binaries, and
    /// `zz_skipped.rs` last: so a `cargo test` run reports the skips of that run only.
    #[test]
    fn a_run_starts_with_an_empty_skip_list() {
        let _ = std::fs::remove_file(skip_list());
    }

    /// Run by [`a_skip_fails_under_ci_and_is_shown_and_listed_elsewhere`] only.
    #[test]
    #[ignore]
    fn skipping_test() {
        skip("the reason");
    }

    #[test]
    fn a_skip_fails_under_ci_and_is_shown_and_listed_elsewhere() {
        let dir = tempfile::tempdir().unwrap();
        let list = dir.path().join("skips");
        let run = |ci: &str| {
            Command::new(std::env::current_exe().unwrap())
                .args(["--exact", "tests::skipping_test", "--ignored"])
                .env("CI", ci)
                .env("E2E_SKIP_LIST", &list)
                .output()
                .unwrap()
        };
        let o = run("true");
        assert!(!o.status.success(), "a skip fails under CI=true");
        assert!(
            String::from_utf8_lossy(&o.stdout).contains("cannot run under CI=true: the reason"),
            "{o:?}"
        );
        assert!(!list.exists());
        let o = run("");
        assert!(o.status.success(), "{o:?}");
        let line = "SKIPPED: tests::skipping_test: the reason\n";
        // shown although libtest captures the output of a passing test
        assert!(String::from_utf8_lossy(&o.stderr).contains(line), "{o:?}");
        assert_eq!(std::fs::read_to_string(&list).unwrap(), line);
    }

    #[test]
    fn a_refusing_port_refuses() {
        let (_held, port) = refusing_port();
        let e = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused);
    }

    #[test]
    fn a_refusing_udp_port_refuses() {
        let (_held, port) = refusing_udp_port();
        let c = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        c.connect(("127.0.0.1", port)).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        c.send(b"query").unwrap();
        let e = c.recv(&mut [0u8; 16]).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused);
    }

    #[test]
    fn listen_port_finds_a_port_0_listener() {
        let mut child = Command::new("/usr/bin/python3")
            .args([
                "-c",
                "import socket,time\ns=socket.socket()\ns.bind(('127.0.0.1',0))\ns.listen()\ntime.sleep(30)",
            ])
            .spawn()
            .expect("python3");
        let port = wait_listen_port(&mut child);
        assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
        let _ = child.kill();
        let _ = child.wait();
    }

    #[test]
    fn free_ports_are_never_handed_out_twice() {
        // 500 draws from the ~28,000 ephemeral ports repeat one with probability 0.99
        let mut seen = std::collections::HashSet::new();
        for _ in 0..500 {
            let p = free_port();
            assert!(seen.insert(p), "port {p} handed out twice");
        }
    }

    #[test]
    fn a_user_is_held_until_the_test_thread_ends() {
        let name = format!("selftest-{}", std::process::id());
        let (held_tx, held_rx) = std::sync::mpsc::channel();
        let (end_tx, end_rx) = std::sync::mpsc::channel::<()>();
        let n = name.clone();
        let t = std::thread::spawn(move || {
            lock_user(&n);
            lock_user(&n); // a second call in the same test does not wait for itself
            held_tx.send(()).unwrap();
            let _ = end_rx.recv();
        });
        held_rx.recv().unwrap();
        assert!(!free_now(&name), "held by the other thread");
        end_tx.send(()).unwrap();
        t.join().unwrap();
        assert!(free_now(&name), "released when that thread ended");
        let _ = std::fs::remove_file(format!("/tmp/qmail-e2e-user.{name}.lock"));
    }
}
