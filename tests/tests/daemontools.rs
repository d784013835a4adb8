//! End-to-end tests of our daemontools clone (svscan, supervise, svc, svstat, svok,
//! multilog, tai64n, tai64nlocal, setuidgid, envuidgid, envdir, softlimit, qmailctl)
//! and of the installed run scripts, with real processes in temporary directories.
//!
//! Interop tests run Debian's daemontools (`/usr/bin/svstat`, `svc`, `svok`,
//! `supervise`, `tai64nlocal`) against ours and ours against theirs; they skip
//! (`e2e::skip`) when the package is missing (CI installs it). Tests that change uids
//! need root and skip otherwise; everything else also runs as an ordinary user.

use e2e::*;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const DEADLINE: u64 = 30;

fn bin(name: &str) -> PathBuf {
    build_dir().join(name)
}

/// Skip (`e2e::skip`) and return unless Debian's daemontools is installed.
macro_rules! need_daemontools {
    () => {
        need_tool!("/usr/bin/supervise", "daemontools");
    };
}

/// Debian's program `name` (the test checked with `need_daemontools!` first).
fn debian(name: &str) -> PathBuf {
    let p = PathBuf::from("/usr/bin").join(name);
    assert!(
        p.is_file(),
        "{} missing: install Debian's daemontools (apt-get install daemontools)",
        p.display()
    );
    p
}

fn tmp() -> tempfile::TempDir {
    let d = tempfile::Builder::new()
        .prefix("dt-e2e")
        .tempdir_in("/tmp")
        .expect("tempdir");
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    d
}

fn write_exec(path: &Path, text: &str) {
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p).unwrap();
    }
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Poll `f` until it returns Some, panicking with `what` after the deadline. The panic
/// names the caller's line (track_caller all the way up from the test).
#[track_caller]
fn wait_for<T>(what: &str, f: impl FnMut() -> Option<T>) -> T {
    wait_until(what, DEADLINE, f)
}

fn run(prog: &Path, args: &[&str]) -> Output {
    Command::new(prog)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", prog.display()))
}

fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn svstat_with(prog: &Path, dir: &Path) -> String {
    let o = run(prog, &[dir.to_str().unwrap()]);
    text(&o)
        .trim_end()
        .strip_prefix(&format!("{}: ", dir.display()))
        .unwrap_or_default()
        .to_string()
}

fn svstat(dir: &Path) -> String {
    svstat_with(&bin("svstat"), dir)
}

fn svc(dir: &Path, opts: &str) {
    let o = run(&bin("svc"), &[opts, dir.to_str().unwrap()]);
    assert!(o.status.success(), "svc {opts}: {o:?}");
}

/// The pid svstat reports for an up service.
fn up_pid(status: &str) -> Option<u32> {
    status
        .strip_prefix("up (pid ")?
        .split(')')
        .next()?
        .parse()
        .ok()
}

#[track_caller]
fn wait_up(dir: &Path) -> u32 {
    wait_for(&format!("{} up", dir.display()), || up_pid(&svstat(dir)))
}

#[track_caller]
fn wait_status(dir: &Path, pred: impl Fn(&str) -> bool, what: &str) -> String {
    wait_for(what, || {
        let s = svstat(dir);
        pred(&s).then_some(s)
    })
}

fn alive(pid: u32) -> bool {
    // a zombie is dead for our purposes
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z'),
        Err(_) => false,
    }
}

fn proc_state(pid: u32) -> char {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit(')').next()?.trim_start().chars().next())
        .unwrap_or('?')
}

fn kill(pid: u32, sig: nix::sys::signal::Signal) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig);
}

/// A supervise process (ours or Debian's) on one directory; told to exit and killed
/// when dropped.
struct Sup {
    child: Child,
    dir: PathBuf,
}

/// Give the signals the run scripts trap their default disposition in `cmd`'s
/// process: supervise passes its dispositions on to ./run, and a shell cannot trap a
/// signal it was started ignoring (INT and QUIT when the tests run as a background
/// job of a script, HUP under nohup).
fn default_signals(cmd: &mut Command) -> &mut Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: signal(2) is async-signal-safe; SIG_DFL installs no handler.
    unsafe {
        cmd.pre_exec(|| {
            for sig in [
                libc::SIGHUP,
                libc::SIGINT,
                libc::SIGQUIT,
                libc::SIGALRM,
                libc::SIGTERM,
            ] {
                libc::signal(sig, libc::SIG_DFL);
            }
            Ok(())
        })
    }
}

/// Have `cmd`'s process start with `sigs` ignored, as a parent may leave them.
fn ignore_signals<'a>(cmd: &'a mut Command, sigs: &'static [libc::c_int]) -> &'a mut Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: signal(2) is async-signal-safe; SIG_IGN installs no handler.
    unsafe {
        cmd.pre_exec(move || {
            for &sig in sigs {
                libc::signal(sig, libc::SIG_IGN);
            }
            Ok(())
        })
    }
}

impl Sup {
    #[track_caller]
    fn start(prog: &Path, dir: &Path) -> Sup {
        Sup::spawn(default_signals(&mut Command::new(prog)), dir)
    }

    /// Start supervise from `cmd` (the program, to which `dir` is added).
    #[track_caller]
    fn spawn(cmd: &mut Command, dir: &Path) -> Sup {
        let child = cmd
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("start supervise");
        let dir = dir.to_path_buf();
        // supervise is ready when its ok fifo has a reader
        let ok = dir.join("supervise/ok");
        wait_for("supervise ready", || {
            std::fs::OpenOptions::new()
                .write(true)
                .custom_flags_nb()
                .open(&ok)
                .ok()
        });
        Sup { child, dir }
    }

    #[track_caller]
    fn wait_exit(&mut self) -> std::process::ExitStatus {
        wait_for("supervise exit", || self.child.try_wait().ok().flatten())
    }
}

impl Drop for Sup {
    fn drop(&mut self) {
        let _ = Command::new(bin("svc")).arg("-dx").arg(&self.dir).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

trait NonBlock {
    fn custom_flags_nb(&mut self) -> &mut Self;
}

impl NonBlock for std::fs::OpenOptions {
    fn custom_flags_nb(&mut self) -> &mut Self {
        std::os::unix::fs::OpenOptionsExt::custom_flags(self, libc::O_NONBLOCK)
    }
}

/// Cleanup after a failed svscan test: kill svscan and tell every supervise left in
/// `dirs` to kill its service and exit.
struct Cleanup {
    pid: u32,
    dirs: Vec<PathBuf>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        kill(self.pid, nix::sys::signal::Signal::SIGKILL);
        for d in &self.dirs {
            for dir in [d.clone(), d.join("log")] {
                let _ = Command::new(bin("svc")).arg("-dkx").arg(dir).status();
            }
        }
    }
}

/// A service whose run script sets its traps, records its start (so a recorded pid is
/// ready for the trapped signals) and then sleeps (in the shell, so trapped signals
/// are seen).
fn sleeper(dir: &Path) {
    write_exec(
        &dir.join("run"),
        "#!/bin/sh\n\
         trap 'echo hup >> signals' HUP\n\
         trap 'echo alrm >> signals' ALRM\n\
         trap 'echo int >> signals' INT\n\
         echo $$ >> starts\n\
         while :; do sleep 0.05; done\n",
    );
}

/// Wait until the run script of process `pid` has recorded its start in `dir/starts`:
/// svstat shows the pid as soon as supervise has forked, before the shell has run a
/// line, and a signal sent then finds no trap yet (on a loaded machine, for a while).
#[track_caller]
fn wait_ready(dir: &Path, pid: u32) {
    wait_for(&format!("{} pid {pid} ready", dir.display()), || {
        std::fs::read_to_string(dir.join("starts"))
            .ok()?
            .lines()
            .any(|l| l.trim() == pid.to_string())
            .then_some(())
    });
}

fn starts(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join("starts"))
        .unwrap_or_default()
        .lines()
        .count()
}

#[test]
fn supervise_restarts_the_service_after_kill_9() {
    let d = tmp();
    let s = d.path().join("svc");
    sleeper(&s);
    let _sup = Sup::start(&bin("supervise"), &s);
    let first = wait_up(&s);
    wait_ready(&s, first);
    kill(first, nix::sys::signal::Signal::SIGKILL);
    let second = wait_for("a new pid", || up_pid(&svstat(&s)).filter(|&p| p != first));
    assert!(alive(second));
    wait_ready(&s, second);
    assert_eq!(starts(&s), 2, "two starts recorded");
    // the status file is daemontools' 18 bytes: pid little-endian at 12, 'u' at 17
    let st = std::fs::read(s.join("supervise/status")).unwrap();
    assert_eq!(st.len(), 18);
    assert_eq!(u32::from_le_bytes([st[12], st[13], st[14], st[15]]), second);
    assert_eq!(st[17], b'u');
    assert_eq!(&st[..2], &[0x40, 0], "TAI64 label");
    // a second supervise on the same directory is refused
    let o = run(&bin("supervise"), &[s.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(111));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("supervise: fatal: unable to acquire")
            && String::from_utf8_lossy(&o.stderr).contains("temporary failure"),
        "{o:?}"
    );
}

#[test]
fn svc_letters_drive_supervise() {
    let d = tmp();
    let s = d.path().join("svc");
    sleeper(&s);
    let mut sup = Sup::start(&bin("supervise"), &s);
    let pid = wait_up(&s);
    wait_ready(&s, pid);

    svc(&s, "-p");
    let st = wait_status(&s, |x| x.contains(", paused"), "paused");
    assert!(st.starts_with(&format!("up (pid {pid})")), "{st}");
    wait_for("process stopped", || (proc_state(pid) == 'T').then_some(()));
    svc(&s, "-c");
    wait_status(&s, |x| !x.contains("paused"), "continued");
    wait_for("process running", || (proc_state(pid) != 'T').then_some(()));

    for (letter, word) in [("-h", "hup"), ("-a", "alrm"), ("-i", "int")] {
        svc(&s, letter);
        wait_for(word, || {
            std::fs::read_to_string(s.join("signals"))
                .ok()
                .filter(|t| t.contains(word))
        });
    }
    assert_eq!(up_pid(&svstat(&s)), Some(pid), "h/a/i do not restart");

    svc(&s, "-d");
    let st = wait_status(&s, |x| x.starts_with("down "), "down");
    assert!(st.ends_with(" seconds, normally up"), "{st}");
    wait_for("process gone", || (!alive(pid)).then_some(()));

    svc(&s, "-u");
    let pid2 = wait_up(&s);
    assert_ne!(pid, pid2);

    svc(&s, "-t");
    let pid3 = wait_for("restart after -t", || {
        up_pid(&svstat(&s)).filter(|&p| p != pid2)
    });
    svc(&s, "-k");
    let pid4 = wait_for("restart after -k", || {
        up_pid(&svstat(&s)).filter(|&p| p != pid3)
    });

    // -o: once; after a kill it stays down, and svstat no longer says "want up"
    svc(&s, "-o");
    svc(&s, "-k");
    wait_status(&s, |x| x.starts_with("down "), "down after -o -k");
    let n = starts(&s);
    // proving an absence: supervise would restart within its 1 s start pause
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(starts(&s), n, "not restarted after -o");
    assert!(!alive(pid4));

    // -x: supervise exits; svok says not running
    svc(&s, "-x");
    let code = sup.wait_exit();
    assert!(code.success(), "{code:?}");
    assert_eq!(
        run(&bin("svok"), &[s.to_str().unwrap()]).status.code(),
        Some(100)
    );
    assert_eq!(svstat(&s), "supervise not running");
}

#[test]
fn down_file_keeps_the_service_down_until_asked() {
    let d = tmp();
    let s = d.path().join("svc");
    sleeper(&s);
    std::fs::write(s.join("down"), "").unwrap();
    let _sup = Sup::start(&bin("supervise"), &s);
    let st = wait_status(&s, |x| x.starts_with("down "), "down");
    assert!(
        st.ends_with(" seconds"),
        "no 'normally up' with ./down: {st}"
    );
    // proving an absence: a wrongly started service would have run its script by now
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(starts(&s), 0);
    svc(&s, "-u");
    let pid = wait_up(&s);
    // the start is recorded before the -d below can stop the script
    wait_ready(&s, pid);
    let st = svstat(&s);
    assert!(st.ends_with(" seconds, normally down"), "{st}");
    svc(&s, "-d");
    wait_status(&s, |x| x.starts_with("down "), "down again");
    assert_eq!(starts(&s), 1);
}

#[test]
fn svstat_wording_for_missing_and_stopped_supervise() {
    let d = tmp();
    let s = d.path().join("svc");
    sleeper(&s);
    assert_eq!(
        svstat(&s),
        "unable to open supervise/ok: file does not exist"
    );
    assert_eq!(
        svstat(&d.path().join("nonexistent")),
        "unable to chdir: file does not exist"
    );
    assert_eq!(
        run(&bin("svok"), &[s.to_str().unwrap()]).status.code(),
        Some(100)
    );
    assert_eq!(
        run(
            &bin("svok"),
            &[d.path().join("nonexistent").to_str().unwrap()]
        )
        .status
        .code(),
        Some(111)
    );
    let o = run(&bin("svc"), &["-z", s.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(100));
    let o = run(&bin("svc"), &["-u", s.to_str().unwrap()]);
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("svc: warning: unable to control"));
    assert_eq!(run(&bin("supervise"), &[]).status.code(), Some(100));
}

/// Debian's svstat, svc and svok against our supervise.
#[test]
fn debian_tools_work_against_our_supervise() {
    need_daemontools!();
    let d = tmp();
    let s = d.path().join("svc");
    sleeper(&s);
    let _sup = Sup::start(&bin("supervise"), &s);
    let pid = wait_up(&s);
    let theirs = svstat_with(&debian("svstat"), &s);
    assert!(
        theirs.starts_with(&format!("up (pid {pid}) ")) && theirs.ends_with(" seconds"),
        "{theirs}"
    );
    assert_eq!(
        run(&debian("svok"), &[s.to_str().unwrap()]).status.code(),
        Some(0)
    );
    run(&debian("svc"), &["-p", s.to_str().unwrap()]);
    wait_for("paused seen by Debian's svstat", || {
        svstat_with(&debian("svstat"), &s)
            .ends_with(", paused")
            .then_some(())
    });
    run(&debian("svc"), &["-cd", s.to_str().unwrap()]);
    let theirs = wait_for("down seen by Debian's svstat", || {
        let t = svstat_with(&debian("svstat"), &s);
        t.starts_with("down ").then_some(t)
    });
    assert!(theirs.ends_with(" seconds, normally up"), "{theirs}");
    // same wording from both (seconds may differ by one tick)
    let strip = |x: String| x.replace(|c: char| c.is_ascii_digit(), "");
    assert_eq!(strip(svstat(&s)), strip(theirs));
    run(&debian("svc"), &["-u", s.to_str().unwrap()]);
    wait_up(&s);
    // Debian's supervise refuses our locked directory
    let o = run(&debian("supervise"), &[s.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(111), "{o:?}");
}

/// Our svstat, svc and svok against Debian's supervise.
#[test]
fn our_tools_work_against_debian_supervise() {
    need_daemontools!();
    let d = tmp();
    let s = d.path().join("svc");
    sleeper(&s);
    let mut sup = Sup::start(&debian("supervise"), &s);
    let pid = wait_up(&s);
    assert_eq!(
        svstat_with(&debian("svstat"), &s).replace(|c: char| c.is_ascii_digit(), ""),
        svstat(&s).replace(|c: char| c.is_ascii_digit(), "")
    );
    assert_eq!(
        run(&bin("svok"), &[s.to_str().unwrap()]).status.code(),
        Some(0)
    );
    svc(&s, "-p");
    wait_status(&s, |x| x.contains(", paused"), "paused");
    svc(&s, "-c");
    svc(&s, "-t");
    let pid2 = wait_for("restart after -t", || {
        up_pid(&svstat(&s)).filter(|&p| p != pid)
    });
    // Debian's supervise reads no command for a second after each start: ask until
    // it is down (-d again is harmless)
    let st = wait_for("down after -d", || {
        let st = svstat(&s);
        if st.starts_with("down ") {
            return Some(st);
        }
        svc(&s, "-d");
        None
    });
    assert!(st.ends_with(", normally up"), "{st}");
    assert!(!alive(pid2) || proc_state(pid2) == 'Z');
    svc(&s, "-x");
    assert!(sup.wait_exit().success());
    assert_eq!(svstat(&s), "supervise not running");
}

/// svscan: a service with a log, both killed with -9 several times: the logger gets
/// every line through the pipe svscan holds; SIGTERM stops everything in order.
#[test]
fn svscan_log_pipe_keeps_every_line_across_restarts() {
    let d = tmp();
    let sv = d.path().join("service");
    let s = sv.join("counter");
    // print first, then record: a kill between the two repeats a line, never skips one
    write_exec(
        &s.join("run"),
        "#!/bin/sh\nn=$(cat count 2>/dev/null || echo 0)\n\
         while :; do n=$((n+1)); echo \"line $n\"; echo $n > count.tmp; mv count.tmp count; \
         sleep 0.01; done\n",
    );
    write_exec(
        &s.join("log/run"),
        "#!/bin/sh\nexec multilog t s4096 n100 ./main\n",
    );
    let path = format!("{}:/usr/bin:/bin", build_dir().display());
    let mut scan = Command::new(bin("svscan"))
        .arg(&sv)
        .env("PATH", &path)
        .stdin(Stdio::null())
        .spawn()
        .expect("svscan");
    let _cleanup = Cleanup {
        pid: scan.id(),
        dirs: vec![s.clone()],
    };
    let logdir = s.join("log");
    let count = |s: &Path| -> u64 {
        std::fs::read_to_string(s.join("count"))
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0)
    };
    wait_up(&s);
    wait_up(&logdir);
    for round in 0..3 {
        let target = count(&s) + 30;
        wait_for("lines written", || (count(&s) >= target).then_some(()));
        let (victim, dir) = if round % 2 == 0 {
            ("logger", &logdir)
        } else {
            ("service", &s)
        };
        let pid = wait_up(dir);
        if victim == "logger" {
            // multilog, like the original, loses what it has read but not yet written
            // when killed in that instant: kill it while it is idle (service paused,
            // every line written so far logged); the service then goes on writing
            // into the pipe while the logger is down
            svc(&s, "-p");
            // svc only asks; supervise stops the service a moment later, and until then
            // it writes on
            let service = wait_up(&s);
            wait_status(&s, |x| x.contains(", paused"), "paused");
            wait_for("the service stopped", || {
                (proc_state(service) == 'T').then_some(())
            });
            let n = count(&s);
            wait_for("the logger caught up", || {
                std::fs::read_to_string(logdir.join("main/current"))
                    .ok()
                    .filter(|t| t.contains(&format!(" line {n}\n")))
            });
            wait_for("the logger idle", || idle_reader(pid).then_some(()));
            kill(pid, nix::sys::signal::Signal::SIGKILL);
            svc(&s, "-c");
        } else {
            kill(pid, nix::sys::signal::Signal::SIGKILL);
        }
        wait_for(&format!("{victim} restarted"), || {
            up_pid(&svstat(dir)).filter(|&p| p != pid)
        });
    }
    let target = count(&s) + 30;
    wait_for("more lines", || (count(&s) >= target).then_some(()));
    // stop in order: the service first, the logger drains the pipe, svscan exits 0
    kill(scan.id(), nix::sys::signal::Signal::SIGTERM);
    let st = wait_for("svscan exit", || scan.try_wait().ok().flatten());
    assert!(st.success(), "{st:?}");
    assert_eq!(svstat(&s), "supervise not running");
    assert_eq!(svstat(&logdir), "supervise not running");
    let last = count(&s);
    let mut seen = vec![false; last as usize + 1];
    let mut us = 0;
    for e in std::fs::read_dir(logdir.join("main")).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.ends_with(".u") {
            us += 1;
        }
        if !(name == "current" || name.starts_with('@')) {
            continue;
        }
        for l in std::fs::read_to_string(e.path()).unwrap().lines() {
            let n: usize = l
                .rsplit(' ')
                .next()
                .and_then(|x| x.parse().ok())
                .unwrap_or_else(|| panic!("bad line {l:?}"));
            assert!(l.starts_with("@4000"), "{l}");
            if n < seen.len() {
                seen[n] = true;
            }
        }
    }
    let missing: Vec<usize> = (1..seen.len()).filter(|&i| !seen[i]).collect();
    assert!(missing.is_empty(), "lost lines {missing:?} of {last}");
    assert!(us >= 1, "a killed multilog leaves a .u file");
    let cur = std::fs::metadata(logdir.join("main/current")).unwrap();
    assert_eq!(
        cur.permissions().mode() & 0o777,
        0o744,
        "clean exit marks current"
    );
}

/// True when `pid` is blocked in poll with nothing left in the pipe on its stdin
/// (everything it read has been written out).
fn idle_reader(pid: u32) -> bool {
    #[cfg(target_arch = "x86_64")]
    const POLLS: &[&str] = &["7", "271"];
    #[cfg(not(target_arch = "x86_64"))]
    const POLLS: &[&str] = &["73"];
    let in_poll = std::fs::read_to_string(format!("/proc/{pid}/syscall"))
        .map(|t| POLLS.contains(&t.split_whitespace().next().unwrap_or("")))
        .unwrap_or(false);
    let Ok(pipe) = std::fs::File::open(format!("/proc/{pid}/fd/0")) else {
        return false;
    };
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int into n.
    let r = unsafe {
        libc::ioctl(
            std::os::fd::AsRawFd::as_raw_fd(&pipe),
            libc::FIONREAD,
            &mut n,
        )
    };
    in_poll && r == 0 && n == 0
}

fn multilog(dir: &Path, args: &[&str], input: &[u8]) -> Output {
    use std::io::Write;
    let mut c = Command::new(bin("multilog"))
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("multilog");
    let mut i = c.stdin.take().unwrap();
    // multilog may refuse to start (a locked directory) before reading its input
    let _ = i.write_all(input);
    drop(i);
    c.wait_with_output().unwrap()
}

fn rotated(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with('@'))
        .collect();
    v.sort();
    v
}

#[test]
fn multilog_rotates_by_size_and_keeps_n_minus_one() {
    let d = tmp();
    let mut input = String::new();
    for i in 1..=400 {
        input.push_str(&format!("{i:05} {}\n", "x".repeat(90)));
    }
    let o = multilog(d.path(), &["s4096", "n3", "./main"], input.as_bytes());
    assert!(o.status.success(), "{o:?}");
    let main = d.path().join("main");
    let old = rotated(&main);
    assert_eq!(old.len(), 2, "n3 keeps two old files: {old:?}");
    let mut all = String::new();
    for p in &old {
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        assert_eq!(name.len(), 27, "{name}");
        assert!(name.ends_with(".s"), "{name}");
        let m = std::fs::metadata(p).unwrap();
        assert_eq!(m.permissions().mode() & 0o777, 0o744);
        assert!(
            m.len() <= 4096 && m.len() >= 4096 - 2000,
            "{} bytes",
            m.len()
        );
        let t = std::fs::read_to_string(p).unwrap();
        assert!(t.ends_with('\n'));
        all.push_str(&t);
    }
    let cur = std::fs::read_to_string(main.join("current")).unwrap();
    all.push_str(&cur);
    // what is kept is exactly the end of the input, in order
    assert!(input.ends_with(&all), "kept files are the input's tail");
    assert!(all.len() > 4096);
    assert_eq!(
        std::fs::metadata(main.join("current"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o744
    );
    assert_eq!(
        std::fs::metadata(main.join("lock"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    // a second run appends to current and keeps rotating
    let o = multilog(d.path(), &["s4096", "n3", "./main"], b"more\n");
    assert!(o.status.success());
    assert!(
        std::fs::read_to_string(main.join("current"))
            .unwrap()
            .ends_with("more\n")
    );
    // ALRM-free crash recovery: a current without the x bit becomes a .u file
    std::fs::set_permissions(main.join("current"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let o = multilog(d.path(), &["s4096", "n10", "./main"], b"after crash\n");
    assert!(o.status.success());
    assert!(
        rotated(&main)
            .iter()
            .any(|p| p.to_string_lossy().ends_with(".u"))
    );
    assert_eq!(
        std::fs::read_to_string(main.join("current")).unwrap(),
        "after crash\n"
    );
}

#[test]
fn multilog_processor_output_and_state() {
    let d = tmp();
    let mut input = String::new();
    for i in 1..=200 {
        input.push_str(&format!("line {i} {}\n", "y".repeat(60)));
    }
    let o = multilog(
        d.path(),
        &[
            "s4096",
            "!tr a-z A-Z; echo \"previous state: $(cat <&4)\"; echo state-$$ >&5",
            "./p",
        ],
        input.as_bytes(),
    );
    assert!(o.status.success(), "{o:?}");
    let p = d.path().join("p");
    let old = rotated(&p);
    assert!(old.len() >= 2, "{old:?}");
    let first = std::fs::read_to_string(&old[0]).unwrap();
    assert!(first.starts_with("LINE 1 YYY"), "{first}");
    assert!(first.contains("previous state: \n"), "empty state at first");
    let second = std::fs::read_to_string(&old[1]).unwrap();
    assert!(second.contains("previous state: state-"), "{second}");
    assert!(
        std::fs::read_to_string(p.join("state"))
            .unwrap()
            .starts_with("state-")
    );
    assert!(!p.join("previous").exists() && !p.join("processed").exists());
}

#[test]
fn multilog_patterns_stderr_and_status_file() {
    let d = tmp();
    let input = "keep one\ndrop two\nalso keep three\nnothing\n";
    let o = multilog(
        d.path(),
        &[
            "-*", "+*keep*", "e", "=last", "./sel", "+*", "-*o*", "./rest",
        ],
        input.as_bytes(),
    );
    assert!(o.status.success(), "{o:?}");
    assert_eq!(
        std::fs::read_to_string(d.path().join("sel/current")).unwrap(),
        "keep one\nalso keep three\n"
    );
    // "+*" reselects everything; "-*o*" drops lines containing an o
    assert_eq!(
        std::fs::read_to_string(d.path().join("rest/current")).unwrap(),
        ""
    );
    assert_eq!(
        String::from_utf8_lossy(&o.stderr),
        "keep one\nalso keep three\n"
    );
    let last = std::fs::read(d.path().join("last")).unwrap();
    assert_eq!(last.len(), 1001);
    assert!(last.starts_with(b"also keep three\n\n"));
    // a literal pattern must match the whole line
    let o = multilog(
        d.path(),
        &["-*", "+hello", "./exact"],
        b"hello world\nhello\n",
    );
    assert!(o.status.success());
    assert_eq!(
        std::fs::read_to_string(d.path().join("exact/current")).unwrap(),
        "hello\n"
    );
    // a second multilog on a locked directory is refused
    let mut first = Command::new(bin("multilog"))
        .arg("./held")
        .current_dir(d.path())
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("lock taken", || {
        d.path().join("held/current").exists().then_some(())
    });
    let o = multilog(d.path(), &["./held"], b"x\n");
    assert_eq!(o.status.code(), Some(111));
    assert!(String::from_utf8_lossy(&o.stderr).contains("unable to lock directory"));
    drop(first.stdin.take());
    assert!(first.wait().unwrap().success());
}

#[test]
fn timestamps_read_by_our_and_debians_tai64nlocal() {
    need_daemontools!();
    let d = tmp();
    let o = multilog(d.path(), &["t", "./ts"], b"first\nsecond\n");
    assert!(o.status.success());
    let cur = std::fs::read(d.path().join("ts/current")).unwrap();
    let lines: Vec<&str> = std::str::from_utf8(&cur).unwrap().lines().collect();
    assert_eq!(lines.len(), 2);
    for l in &lines {
        assert_eq!(l.as_bytes()[0], b'@');
        assert_eq!(l.as_bytes()[25], b' ');
    }
    // the stamp is now, in daemontools' arithmetic (2^62 + 10 + unix seconds)
    let secs = u64::from_str_radix(&lines[0][1..17], 16).unwrap();
    let unix = secs - (1u64 << 62) - 10;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(unix <= now && unix + 600 > now, "{unix} vs {now}");
    let convert = |prog: PathBuf, input: &[u8]| -> String {
        use std::io::Write;
        let mut c = Command::new(prog)
            .env("TZ", "UTC")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        c.stdin.take().unwrap().write_all(input).unwrap();
        text(&c.wait_with_output().unwrap())
    };
    let ours = convert(bin("tai64nlocal"), &cur);
    let theirs = convert(debian("tai64nlocal"), &cur);
    assert_eq!(ours, theirs);
    assert!(ours.ends_with(" second\n"), "{ours}");
    // and our tai64n's stamps read the same through Debian's tai64nlocal
    let stamped = convert(bin("tai64n"), b"x\ny\n");
    assert_eq!(
        convert(bin("tai64nlocal"), stamped.as_bytes()),
        convert(debian("tai64nlocal"), stamped.as_bytes())
    );
    // a known label
    assert_eq!(
        convert(bin("tai64nlocal"), b"@400000006b0341c718a7458c x\n"),
        "2026-11-22 19:25:49.413615500 x\n"
    );
}

#[test]
fn softlimit_m_really_limits_memory() {
    let o = run(
        &bin("softlimit"),
        &["-m", "50000000", "sh", "-c", "ulimit -v; ulimit -d"],
    );
    assert!(o.status.success(), "{o:?}");
    assert_eq!(text(&o), "48828\n48828\n");
    // an allocation over the limit fails; the same allocation under a higher one works
    let alloc = "x = bytearray(300 * 1024 * 1024); print(len(x))";
    let o = run(
        &bin("softlimit"),
        &["-m", "100000000", "python3", "-c", alloc],
    );
    assert!(!o.status.success(), "300 MB allocated under a 100 MB limit");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("MemoryError"),
        "{o:?}"
    );
    let o = run(
        &bin("softlimit"),
        &["-m", "1000000000", "python3", "-c", alloc],
    );
    assert!(o.status.success(), "{o:?}");
    let o = run(&bin("softlimit"), &["-o", "17", "sh", "-c", "ulimit -n"]);
    assert_eq!(text(&o), "17\n");
    let o = run(
        &bin("softlimit"),
        &[
            "-t",
            "7",
            "-c",
            "0",
            "-f",
            "1024000",
            "-s",
            "4000000",
            "-p",
            "500",
            "sh",
            "-c",
            "ulimit -t; ulimit -c; ulimit -f; ulimit -s; ulimit -p",
        ],
    );
    assert_eq!(text(&o), "7\n0\n2000\n3906\n500\n", "{o:?}");
    assert_eq!(
        run(&bin("softlimit"), &["-x", "1", "true"]).status.code(),
        Some(100)
    );
    assert_eq!(
        run(&bin("softlimit"), &["-m", "1k", "true"]).status.code(),
        Some(100)
    );
}

#[test]
fn envdir_envuidgid_setuidgid() {
    let d = tmp();
    let env = d.path().join("env");
    std::fs::create_dir(&env).unwrap();
    std::fs::write(env.join("FOO"), "bar  \nignored\n").unwrap();
    std::fs::write(env.join("GONE"), "").unwrap();
    let o = Command::new(bin("envdir"))
        .arg(&env)
        .args(["sh", "-c", "echo \"$FOO|${GONE-unset}\""])
        .env("GONE", "was set")
        .output()
        .unwrap();
    assert_eq!(text(&o), "bar|unset\n");
    assert_eq!(run(&bin("envdir"), &[]).status.code(), Some(111));
    let me = nix::unistd::User::from_uid(nix::unistd::getuid())
        .unwrap()
        .unwrap();
    let o = run(&bin("envuidgid"), &[&me.name, "sh", "-c", "echo $UID:$GID"]);
    assert_eq!(text(&o), format!("{}:{}\n", me.uid, me.gid));
    let o = run(&bin("setuidgid"), &["no-such-user-here", "true"]);
    assert_eq!(o.status.code(), Some(111));
    assert!(String::from_utf8_lossy(&o.stderr).contains("setuidgid: fatal: unknown account"));
    if !is_root() {
        skip("the setuidgid uid change needs root (the rest ran)");
        return;
    }
    let o = run(&bin("setuidgid"), &["nobody", "sh", "-c", "id -u; id -G"]);
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
    assert_eq!(text(&o), format!("{}\n{}\n", nobody.uid, nobody.gid));
}

/// Unmounts a test file system when dropped.
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// On a full file system multilog warns, waits and retries: after space is freed every
/// line is there, in order.
#[test]
fn multilog_survives_a_full_disk_without_losing_lines() {
    need_root!(); // to mount a small tmpfs
    use std::io::Write;
    let d = tmp();
    let fs = d.path().join("fs");
    std::fs::create_dir(&fs).unwrap();
    let st = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
        .arg(&fs)
        .status()
        .unwrap();
    if !st.success() {
        skip("this machine refuses to mount a tmpfs (no CAP_SYS_ADMIN)");
        return;
    }
    let _m = Mount(fs.clone());
    // leave a few KB free
    let filler = fs.join("filler");
    let mut f = std::fs::File::create(&filler).unwrap();
    let chunk = vec![b'f'; 4096];
    while f.write_all(&chunk).is_ok() {}
    drop(f);
    let len = std::fs::metadata(&filler).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&filler)
        .unwrap()
        .set_len(len.saturating_sub(8192))
        .unwrap();
    let errlog = d.path().join("err");
    let mut c = Command::new(bin("multilog"))
        .arg("./log")
        .current_dir(&fs)
        .stdin(Stdio::piped())
        .stderr(std::fs::File::create(&errlog).unwrap())
        .spawn()
        .unwrap();
    let mut input = c.stdin.take().unwrap();
    let mut want = String::new();
    for i in 1..=300 {
        want.push_str(&format!("{i:04} {}\n", "z".repeat(95)));
    }
    let data = want.clone();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(data.as_bytes());
    });
    wait_for("the disk-full warning", || {
        std::fs::read_to_string(&errlog)
            .ok()
            .filter(|t| t.contains("pausing: out of disk space"))
    });
    std::fs::remove_file(&filler).unwrap();
    writer.join().unwrap();
    let st = wait_for("multilog exit", || c.try_wait().ok().flatten());
    assert!(st.success(), "{st:?}");
    let got = std::fs::read_to_string(fs.join("log/current")).unwrap();
    assert_eq!(got.len(), want.len(), "every byte written once");
    assert!(got == want, "lines in order, none lost");
    let err = std::fs::read_to_string(&errlog).unwrap();
    assert!(
        err.contains(
            "multilog: warning: unable to write to ./log/current, pausing: out of disk space"
        ),
        "{err}"
    );
}

/// True when a process running `exe` has `dir` as its working directory.
fn runs_in(exe: &Path, dir: &Path) -> bool {
    let dir = std::fs::canonicalize(dir).unwrap();
    pids_of(exe)
        .iter()
        .any(|p| std::fs::read_link(format!("/proc/{p}/cwd")).ok().as_deref() == Some(&dir))
}

/// A service printing 50 numbered lines then sleeping, with a multilog `log`.
fn chatty_service(s: &Path, multilog: &Path) {
    write_exec(
        &s.join("run"),
        "#!/bin/sh\ni=0\nwhile [ $i -lt 50 ]; do i=$((i+1)); echo \"line $i\"; done\n\
         exec sleep 1000\n",
    );
    write_exec(
        &s.join("log/run"),
        &format!("#!/bin/sh\nexec {} ./main\n", multilog.display()),
    );
}

fn log_has_50_lines(s: &Path) -> Option<()> {
    std::fs::read_to_string(s.join("log/main/current"))
        .ok()
        .filter(|t| t.contains("line 1\n") && t.contains("line 50\n"))
        .map(|_| ())
}

/// Debian's svscan starting our supervise (found first in $PATH) and our multilog.
#[test]
fn debian_svscan_runs_our_supervise() {
    need_daemontools!();
    let d = tmp();
    let sv = d.path().join("service");
    let s = sv.join("chatty");
    chatty_service(&s, &bin("multilog"));
    let mut scan = Command::new(debian("svscan"))
        .arg(&sv)
        .env("PATH", format!("{}:/usr/bin:/bin", build_dir().display()))
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let _cleanup = Cleanup {
        pid: scan.id(),
        dirs: vec![s.clone()],
    };
    wait_up(&s);
    wait_up(&s.join("log"));
    wait_for("the lines in our multilog", || log_has_50_lines(&s));
    assert!(
        runs_in(&bin("supervise"), &s),
        "our supervise for the service"
    );
    assert!(
        runs_in(&bin("supervise"), &s.join("log")),
        "and for its log"
    );
    assert!(svstat_with(&debian("svstat"), &s).starts_with("up (pid "));
    // Debian's svscan has no orderly stop: kill it, then svc -dx both
    let _ = scan.kill();
    let _ = scan.wait();
    svc(&s, "-dx");
    wait_for("service supervise gone", || {
        (svstat(&s) == "supervise not running").then_some(())
    });
    svc(&s.join("log"), "-dx");
    wait_for("log supervise gone", || {
        (svstat(&s.join("log")) == "supervise not running").then_some(())
    });
}

/// Our svscan starting Debian's supervise (when none is beside svscan, from $PATH)
/// and Debian's multilog; our SIGTERM shutdown drives Debian's supervise too.
#[test]
fn our_svscan_runs_debian_supervise() {
    need_daemontools!();
    let d = tmp();
    let lonely = d.path().join("bin");
    std::fs::create_dir(&lonely).unwrap();
    std::fs::copy(bin("svscan"), lonely.join("svscan")).unwrap();
    let sv = d.path().join("service");
    let s = sv.join("chatty");
    chatty_service(&s, &debian("multilog"));
    let mut scan = Command::new(lonely.join("svscan"))
        .arg(&sv)
        .env("PATH", "/usr/bin:/bin")
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let _cleanup = Cleanup {
        pid: scan.id(),
        dirs: vec![s.clone()],
    };
    let dsvstat = debian("svstat");
    wait_for("Debian's supervise up", || {
        up_pid(&svstat_with(&dsvstat, &s))
    });
    wait_for("the log up", || {
        up_pid(&svstat_with(&dsvstat, &s.join("log")))
    });
    wait_for("the lines in Debian's multilog", || log_has_50_lines(&s));
    assert!(runs_in(&debian("supervise"), &s));
    assert!(runs_in(&debian("supervise"), &s.join("log")));
    kill(scan.id(), nix::sys::signal::Signal::SIGTERM);
    let st = wait_for("svscan exit", || scan.try_wait().ok().flatten());
    assert!(st.success(), "{st:?}");
    assert_eq!(svstat_with(&dsvstat, &s), "supervise not running");
    assert_eq!(
        svstat_with(&dsvstat, &s.join("log")),
        "supervise not running"
    );
}

/// A service that ignores TERM keeps svscan's orderly shutdown waiting; a second
/// TERM (Ctrl-C twice) kills it and svscan exits.
#[test]
fn svscan_second_term_kills_a_stubborn_service() {
    let d = tmp();
    let sv = d.path().join("service");
    let s = sv.join("stubborn");
    write_exec(
        &s.join("run"),
        "#!/bin/sh\ntrap '' TERM\necho $$ > ignoring\nwhile :; do sleep 0.05; done\n",
    );
    let mut scan = Command::new(bin("svscan"))
        .arg(&sv)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let _cleanup = Cleanup {
        pid: scan.id(),
        dirs: vec![s.clone()],
    };
    let pid = wait_up(&s);
    // svstat shows the pid from the fork on: a TERM sent before the shell has run its
    // trap line kills it (the cause of this test's old flake on a loaded machine:
    // supervise then exited at once and "want down" never came)
    wait_for("the service ignoring TERM", || {
        let t = std::fs::read_to_string(s.join("ignoring")).ok()?;
        (t.trim() == pid.to_string()).then_some(())
    });
    kill(scan.id(), nix::sys::signal::Signal::SIGTERM);
    wait_for("want down", || {
        svstat(&s).ends_with(", want down").then_some(())
    });
    // proving an absence: svscan keeps waiting for the service that ignores TERM
    std::thread::sleep(Duration::from_millis(1500));
    assert!(scan.try_wait().unwrap().is_none(), "still waiting");
    assert!(alive(pid));
    kill(scan.id(), nix::sys::signal::Signal::SIGTERM);
    let st = wait_for("svscan exit", || scan.try_wait().ok().flatten());
    assert!(st.success());
    wait_for("service killed", || (!alive(pid)).then_some(()));
    assert_eq!(svstat(&s), "supervise not running");
}

/// Signals ignored by whoever starts supervise or svscan (a background job of a
/// script ignores INT and QUIT, nohup HUP, some parents SIGCHLD) change nothing: a
/// supervise with SIGCHLD ignored still sees its service die (the kernel would reap it
/// unseen), and svscan gives its services default dispositions (a shell cannot trap
/// a signal it was started ignoring) and still sees a supervise die.
#[test]
fn signals_ignored_by_the_parent_change_nothing() {
    let d = tmp();
    let s = d.path().join("alone");
    sleeper(&s);
    let _sup = Sup::spawn(
        ignore_signals(&mut Command::new(bin("supervise")), &[libc::SIGCHLD]),
        &s,
    );
    let first = wait_up(&s);
    wait_ready(&s, first);
    kill(first, nix::sys::signal::Signal::SIGKILL);
    wait_for(
        "a restart by supervise started with SIGCHLD ignored",
        || up_pid(&svstat(&s)).filter(|&p| p != first),
    );

    let sv = d.path().join("service");
    let t = sv.join("trapper");
    sleeper(&t);
    let mut scan = ignore_signals(
        &mut Command::new(bin("svscan")),
        &[libc::SIGCHLD, libc::SIGINT, libc::SIGHUP],
    )
    .arg(&sv)
    .stdin(Stdio::null())
    .spawn()
    .unwrap();
    let _cleanup = Cleanup {
        pid: scan.id(),
        dirs: vec![t.clone()],
    };
    let pid = wait_up(&t);
    wait_ready(&t, pid);
    for (letter, word) in [("-i", "int"), ("-h", "hup")] {
        svc(&t, letter);
        wait_for(&format!("{word} trapped under svscan"), || {
            std::fs::read_to_string(t.join("signals"))
                .ok()
                .filter(|x| x.contains(word))
        });
    }
    // kill the service's supervise (and the service it leaves behind): svscan
    // starts a new one at its next scan
    let sup = pids_of(&bin("supervise"))
        .into_iter()
        .find(|p| {
            std::fs::read_link(format!("/proc/{p}/cwd")).ok() == std::fs::canonicalize(&t).ok()
        })
        .expect("the service's supervise");
    kill(sup, nix::sys::signal::Signal::SIGKILL);
    kill(pid, nix::sys::signal::Signal::SIGKILL);
    wait_for(
        "a new supervise from svscan started with SIGCHLD ignored",
        || up_pid(&svstat(&t)).filter(|&p| p != pid),
    );
    kill(scan.id(), nix::sys::signal::Signal::SIGTERM);
    let st = wait_for("svscan exit", || scan.try_wait().ok().flatten());
    assert!(st.success(), "{st:?}");
    assert_eq!(svstat(&t), "supervise not running");
}

/// (size and mode of each file, all contents, the `=` file, stderr)
type Outcome = (Vec<(u64, u32)>, Vec<u8>, Vec<u8>, Vec<u8>);

/// The same input through Debian's multilog and ours gives the same files: the same
/// cut points (sizes of every rotated file), contents, modes, `=` file and `e` output.
#[test]
fn multilog_cuts_files_exactly_like_debians() {
    need_daemontools!();
    let d = tmp();
    let input = d.path().join("input");
    let mut text = String::new();
    let mut seed: u64 = 12345;
    for i in 0..3000 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let len = [0, 7, 60, 150, 990, 1200, 2500][(seed >> 33) as usize % 7];
        let tag = if i % 3 == 0 { "keep" } else { "other" };
        text.push_str(&format!("{i:05} {tag} {}\n", "x".repeat(len)));
    }
    text.push_str("final line without newline");
    std::fs::write(&input, &text).unwrap();
    let script = [
        "s5000",
        "n1000",
        "./all",
        "-*",
        "+* keep *",
        "e",
        "=status",
        "s4096",
        "./keep",
    ];
    let run_with = |prog: PathBuf, sub: &str| -> Outcome {
        let dir = d.path().join(sub);
        std::fs::create_dir(&dir).unwrap();
        let o = Command::new(prog)
            .args(script)
            .current_dir(&dir)
            .stdin(std::fs::File::open(&input).unwrap())
            .output()
            .unwrap();
        assert!(o.status.success(), "{o:?}");
        let mut files = Vec::new();
        let mut all = Vec::new();
        for log in ["all", "keep"] {
            let mut rot = rotated(&dir.join(log));
            rot.push(dir.join(log).join("current"));
            for p in rot {
                let m = std::fs::metadata(&p).unwrap();
                files.push((m.len(), m.permissions().mode() & 0o777));
                all.extend(std::fs::read(&p).unwrap());
            }
        }
        let status = std::fs::read(dir.join("status")).unwrap();
        (files, all, status, o.stderr)
    };
    let ours = run_with(bin("multilog"), "ours");
    let theirs = run_with(debian("multilog"), "theirs");
    assert!(ours.0.len() > 20, "{:?}", ours.0);
    assert_eq!(ours.0, theirs.0, "file sizes and modes");
    assert!(ours.1 == theirs.1, "contents");
    assert!(ours.2 == theirs.2, "=status file");
    assert!(ours.3 == theirs.3, "e output");
}

/// A run file that cannot be executed: supervise reports it, keeps trying once a
/// second, and both svstats say "want up".
#[test]
fn unstartable_run_is_down_and_wants_up() {
    need_daemontools!();
    let d = tmp();
    let s = d.path().join("svc");
    std::fs::create_dir(&s).unwrap();
    std::fs::write(s.join("run"), "#!/bin/sh\nexec sleep 100\n").unwrap(); // mode 0644
    let errlog = d.path().join("err");
    let child = Command::new(bin("supervise"))
        .arg(&s)
        .stdin(Stdio::null())
        .stderr(std::fs::File::create(&errlog).unwrap())
        .spawn()
        .unwrap();
    let mut sup = Sup {
        child,
        dir: s.clone(),
    };
    let want = wait_status(&s, |x| x.ends_with(", normally up, want up"), "want up");
    assert!(want.starts_with("down "), "{want}");
    let theirs = svstat_with(&debian("svstat"), &s);
    assert!(theirs.ends_with(", normally up, want up"), "{theirs}");
    wait_for("two attempts reported", || {
        std::fs::read_to_string(&errlog)
            .ok()
            .filter(|t| t.matches("supervise: fatal: unable to start").count() >= 2)
    });
    let err = std::fs::read_to_string(&errlog).unwrap();
    assert!(err.contains("/run: access denied"), "{err}");
    // made executable, it starts at the next attempt
    std::fs::set_permissions(s.join("run"), std::fs::Permissions::from_mode(0o755)).unwrap();
    wait_up(&s);
    svc(&s, "-dx");
    assert!(sup.wait_exit().success());
}

/// Pattern selection agrees with Debian's multilog on tricky patterns (stars that stop
/// at the first match, trailing stars, literal stars, empty lines and patterns).
#[test]
fn multilog_patterns_agree_with_debians() {
    need_daemontools!();
    let d = tmp();
    let lines = "hello\nhello world\nab:c d\na*b\n\nxyz\nnamed[12]: Cleaned cache of 3\n\
                 error: disk\nwarning: error here\n***\nabcabc\n";
    let patterns = [
        "hello",
        "hello*",
        "a*d",
        "*",
        "",
        "a\\*b",
        "a*b",
        "*error*",
        "* error*",
        "*:*",
        "named[*]: Cleaned cache *",
        "abc*c",
        "*c",
        "x*z",
        "**",
    ];
    for (i, p) in patterns.iter().enumerate() {
        let plus = format!("+{p}");
        let minus = format!("-{p}");
        for (tag, script) in [
            ("sel", vec!["-*", plus.as_str()]),
            ("desel", vec![minus.as_str()]),
        ] {
            let mut got = Vec::new();
            for prog in [bin("multilog"), debian("multilog")] {
                let dir = d.path().join(format!("{i}-{tag}-{}", got.len()));
                let mut args = script.clone();
                let dirarg = dir.to_str().unwrap().to_string();
                args.push(&dirarg);
                let o = {
                    use std::io::Write;
                    let mut c = Command::new(&prog)
                        .args(&args)
                        .stdin(Stdio::piped())
                        .spawn()
                        .unwrap();
                    c.stdin.take().unwrap().write_all(lines.as_bytes()).unwrap();
                    c.wait().unwrap()
                };
                assert!(o.success());
                got.push(std::fs::read_to_string(dir.join("current")).unwrap());
            }
            assert_eq!(got[0], got[1], "pattern {tag} {p:?}");
        }
    }
}

/// A processor gives the same rotated files under Debian's multilog and ours.
#[test]
fn multilog_processor_agrees_with_debians() {
    need_daemontools!();
    let d = tmp();
    let mut input = String::new();
    for i in 0..600 {
        input.push_str(&format!("{i} {}\n", "q".repeat(i % 97)));
    }
    // from a file, so both read the same 1024-byte blocks and cut at the same places
    let inpath = d.path().join("input");
    std::fs::write(&inpath, &input).unwrap();
    let mut got = Vec::new();
    for (k, prog) in [bin("multilog"), debian("multilog")]
        .into_iter()
        .enumerate()
    {
        let dir = d.path().join(format!("p{k}"));
        let c = Command::new(prog)
            .args([
                "s4096",
                "n100",
                "!tr a-z A-Z; echo \"was: $(cat <&4)\"; wc -l | tr -d ' ' >&5",
            ])
            .arg(&dir)
            .stdin(std::fs::File::open(&inpath).unwrap())
            .status()
            .unwrap();
        assert!(c.success());
        let mut files = Vec::new();
        for p in rotated(&dir) {
            let m = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
            files.push((std::fs::read_to_string(&p).unwrap(), m));
        }
        files.push((std::fs::read_to_string(dir.join("current")).unwrap(), 0));
        files.push((std::fs::read_to_string(dir.join("state")).unwrap(), 0));
        got.push(files);
    }
    assert!(got[0].len() > 5);
    assert!(got[0] == got[1], "processed files differ");
}

/// The scanned directory removed while svscan runs (issue 12: neither TERM nor INT
/// stopped it): svscan still stops every service in order through the descriptors it
/// holds, and a service whose own directory was deleted too is stopped by signals.
#[test]
fn svscan_stops_after_its_directory_was_removed() {
    let d = tmp();
    let real = d.path().join("real");
    let kept = real.join("kept");
    sleeper(&kept);
    write_exec(
        &kept.join("log/run"),
        "#!/bin/sh\necho $$ > pid\nexec cat > lines\n",
    );
    let doomed = real.join("doomed");
    sleeper(&doomed);
    let sv = d.path().join("service");
    std::fs::create_dir_all(&sv).unwrap();
    std::os::unix::fs::symlink(&kept, sv.join("kept")).unwrap();
    std::os::unix::fs::symlink(&doomed, sv.join("doomed")).unwrap();
    let mut scan = Command::new(bin("svscan"))
        .arg(&sv)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let _cleanup = Cleanup {
        pid: scan.id(),
        dirs: vec![kept.clone(), doomed.clone()],
    };
    let kept_pid = wait_up(&kept);
    wait_ready(&kept, kept_pid);
    let doomed_pid = wait_up(&doomed);
    wait_ready(&doomed, doomed_pid);
    let logger = wait_for("the logger", || {
        std::fs::read_to_string(kept.join("log/pid"))
            .ok()?
            .trim()
            .parse::<u32>()
            .ok()
    });

    std::fs::remove_dir_all(&sv).unwrap();
    std::fs::remove_dir_all(&doomed).unwrap();
    kill(scan.id(), nix::sys::signal::Signal::SIGTERM);
    let st = wait_for("svscan exit", || scan.try_wait().ok().flatten());
    assert!(st.success(), "{st:?}");
    for pid in [kept_pid, doomed_pid, logger] {
        wait_for("every service and logger gone", || {
            (!alive(pid)).then_some(())
        });
    }
    assert_eq!(svstat(&kept), "supervise not running");
}
