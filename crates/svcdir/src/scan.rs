//! `svscan [DIR]`: one `supervise` per subdirectory of DIR, and one for `NAME/log` fed
//! by a pipe from the service.
//!
//! As in daemontools 0.76: every 5 seconds (and at start) reap, read the directory, skip
//! names starting with `.` and non-directories, identify services by (device, inode) so
//! two links to one directory give one supervise, start the supervise processes that are
//! missing (restarting dead ones), and for a service with a `log` create a pipe that
//! svscan holds open for the entry's whole life, so no line is lost when the service,
//! the logger or either supervise restarts. The service's supervise gets the pipe as
//! stdout; the log's supervise runs in `NAME` with argument `log` and the pipe as stdin.
//!
//! Differences, all additive:
//! - `supervise` is taken from svscan's own directory when it is there (an install's
//!   `bin/`), else from `$PATH` like the original.
//! - Each supervise runs in its own session, so a Ctrl-C on the terminal reaches svscan
//!   only; SIGTERM or SIGINT make svscan stop everything in order (what
//!   daemontools-encore does): `d` and `x` to every service, then, once a service's
//!   supervise has gone, svscan closes its end of the log pipe and sends `x` to the log's
//!   supervise, so the logger writes everything still in the pipe, reads end of file and
//!   exits (a `d` follows after 10 s if some leftover process still holds the pipe).
//!   svscan exits 0 when all its supervise processes are gone. A second TERM or INT
//!   (Ctrl-C twice) kills the services (`k`) and stops the loggers at once.
//! - SIGALRM or SIGHUP rescan at once.
//! - svscan holds a descriptor of each service's directory and sends the stop commands
//!   through it, so the orderly stop still reaches every supervise after the scanned
//!   directory (or a service's link in it) was removed. When a supervise's control fifo
//!   cannot be opened at all (its directory deleted), svscan signals that supervise's
//!   process group instead: TERM first (the service and the supervise end; a logger
//!   finishes its line and exits), KILL on the second TERM or INT.
//! - svscan starts by giving every signal but SIGPIPE its default disposition, so
//!   the services do not inherit what svscan's parent ignored (INT for a background
//!   job, HUP under nohup) and an ignored SIGCHLD cannot hide dead supervise processes.

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::resource::{Resource, getrlimit, setrlimit};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use qsys::errstr::{io as io_str, nix as nix_str};
use std::ffi::OsString;
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const PROG: &str = "svscan";
const MAX_SERVICES: usize = 1000;

fn warn(msg: String) {
    qsys::die::warn(PROG, "warning", &msg);
}

struct Entry {
    dev: u64,
    ino: u64,
    name: OsString,
    main: Option<Pid>,
    log: Option<Pid>,
    haslog: bool,
    /// (read end, write end); the write end is dropped during shutdown.
    pipe_r: Option<OwnedFd>,
    pipe_w: Option<OwnedFd>,
    seen: bool,
    /// shutdown: when the log's supervise was first told to exit
    log_told: Option<Instant>,
    /// The service's directory, opened when it was found: commands reach its supervise
    /// even after the name in the scanned directory is gone.
    dir: Option<OwnedFd>,
}

/// The supervise program to run.
fn supervise_program() -> PathBuf {
    if let Ok(exe) = qsys::own_path()
        && let Some(dir) = exe.parent()
    {
        let p = dir.join("supervise");
        if p.is_file() {
            return p;
        }
    }
    PathBuf::from("supervise")
}

fn spawn_supervise(
    nofile: Option<(u64, u64)>,
    prog: &Path,
    cwd: Option<&Path>,
    arg: &std::ffi::OsStr,
    stdin: Option<&OwnedFd>,
    stdout: Option<&OwnedFd>,
) -> std::io::Result<Pid> {
    let mut cmd = Command::new(prog);
    cmd.arg(arg);
    if let Some(d) = cwd {
        cmd.current_dir(d);
    }
    if let Some(fd) = stdin {
        cmd.stdin(Stdio::from(fd.try_clone()?));
    }
    if let Some(fd) = stdout {
        cmd.stdout(Stdio::from(fd.try_clone()?));
    }
    // SAFETY: setsid and the signal resets are async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            qsys::reset_signals_for_exec();
            let _ = nix::unistd::setsid();
            if let Some((soft, hard)) = nofile {
                let _ = setrlimit(Resource::RLIMIT_NOFILE, soft, hard);
            }
            Ok(())
        });
    }
    let child = cmd.spawn()?;
    Ok(Pid::from_raw(child.id() as i32))
}

/// Write `letters` to the control fifo `control` (`supervise/control` or
/// `log/supervise/control`) below the service directory `dir`, or below `name` in the
/// scanned directory when svscan holds no descriptor. False when no supervise could be
/// told (no fifo, or nobody reading it).
fn send_control(dir: Option<&OwnedFd>, name: &Path, control: &str, letters: &str) -> bool {
    let opened = match dir {
        Some(d) => nix::fcntl::openat(
            d,
            control,
            nix::fcntl::OFlag::O_WRONLY
                | nix::fcntl::OFlag::O_NONBLOCK
                | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map(std::fs::File::from)
        .map_err(std::io::Error::from),
        None => crate::ctl::open_write(&name.join(control)),
    };
    match opened {
        Ok(mut f) => f.write_all(letters.as_bytes()).is_ok(),
        Err(_) => false,
    }
}

/// Stop a supervise svscan cannot reach through its fifo: signal its process group (each
/// supervise leads its own session, and its service runs in that group).
fn signal_group(pid: Pid, hurry: bool) {
    let sig = if hurry {
        Signal::SIGKILL
    } else {
        Signal::SIGTERM
    };
    let _ = nix::sys::signal::killpg(pid, sig);
}

/// The service directory `name`, opened for `openat` (a path descriptor: no access to
/// its contents is needed beyond naming the fifos).
fn open_service_dir(name: &Path) -> Option<OwnedFd> {
    nix::fcntl::open(
        name,
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .ok()
}

struct Scanner {
    /// The descriptor limit svscan was started with, given back to every supervise
    /// (svscan raises its own: up to three descriptors per service).
    nofile: Option<(u64, u64)>,
    prog: PathBuf,
    entries: Vec<Entry>,
}

impl Scanner {
    fn reap(&mut self) {
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => return,
                Ok(ws) => {
                    let Some(pid) = ws.pid() else { return };
                    for e in &mut self.entries {
                        if e.main == Some(pid) {
                            e.main = None;
                        }
                        if e.log == Some(pid) {
                            e.log = None;
                        }
                    }
                }
            }
        }
    }

    fn start(&mut self, i: usize) {
        let prog = self.prog.clone();
        let e = &mut self.entries[i];
        if e.main.is_none() {
            match spawn_supervise(self.nofile, &prog, None, &e.name, None, e.pipe_w.as_ref()) {
                Ok(p) => e.main = Some(p),
                Err(err) => warn(format!(
                    "unable to start supervise {}: {}",
                    e.name.to_string_lossy(),
                    io_str(&err)
                )),
            }
        }
        if e.haslog && e.log.is_none() {
            let dir = PathBuf::from(&e.name);
            match spawn_supervise(
                self.nofile,
                &prog,
                Some(&dir),
                "log".as_ref(),
                e.pipe_r.as_ref(),
                None,
            ) {
                Ok(p) => e.log = Some(p),
                Err(err) => warn(format!(
                    "unable to start supervise {}/log: {}",
                    e.name.to_string_lossy(),
                    io_str(&err)
                )),
            }
        }
    }

    fn scan(&mut self) {
        let rd = match std::fs::read_dir(".") {
            Ok(rd) => rd,
            Err(e) => return warn(format!("unable to read directory: {}", io_str(&e))),
        };
        for e in &mut self.entries {
            e.seen = false;
        }
        for d in rd.flatten() {
            let name = d.file_name();
            if name.as_bytes().first() == Some(&b'.') {
                continue;
            }
            let md = match std::fs::metadata(&name) {
                Ok(m) => m,
                Err(err) => {
                    warn(format!(
                        "unable to stat {}: {}",
                        name.to_string_lossy(),
                        io_str(&err)
                    ));
                    continue;
                }
            };
            if !md.is_dir() {
                continue;
            }
            let (dev, ino) = (md.dev(), md.ino());
            let i = match self
                .entries
                .iter()
                .position(|e| e.dev == dev && e.ino == ino)
            {
                Some(i) => i,
                None => {
                    if self.entries.len() >= MAX_SERVICES {
                        warn(format!(
                            "unable to start {}: running too many services",
                            name.to_string_lossy()
                        ));
                        continue;
                    }
                    let logpath = Path::new(&name).join("log");
                    let haslog = match std::fs::metadata(&logpath) {
                        Ok(_) => true,
                        Err(err) if err.kind() == std::io::ErrorKind::NotFound => false,
                        Err(err) => {
                            warn(format!(
                                "unable to stat {}/log: {}",
                                name.to_string_lossy(),
                                io_str(&err)
                            ));
                            continue;
                        }
                    };
                    let (pipe_r, pipe_w) = if haslog {
                        match nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC) {
                            Ok((r, w)) => (Some(r), Some(w)),
                            Err(err) => {
                                warn(format!(
                                    "unable to create pipe for {}: {}",
                                    name.to_string_lossy(),
                                    nix_str(err)
                                ));
                                continue;
                            }
                        }
                    } else {
                        (None, None)
                    };
                    self.entries.push(Entry {
                        dev,
                        ino,
                        name: name.clone(),
                        main: None,
                        log: None,
                        haslog,
                        pipe_r,
                        pipe_w,
                        seen: true,
                        log_told: None,
                        dir: open_service_dir(Path::new(&name)),
                    });
                    self.entries.len() - 1
                }
            };
            self.entries[i].seen = true;
            self.start(i);
        }
        // forget entries that are gone and have no supervise left (closes the pipe)
        self.entries
            .retain(|e| e.seen || e.main.is_some() || e.log.is_some());
    }

    /// Stop everything in order; returns when no supervise is left. Commands are
    /// repeated every second (a supervise that was still starting missed the first);
    /// a second TERM or INT also kills the services (`k`) and stops the loggers (one
    /// read less than 200 ms after the first counts as part of it: a TERM and an INT
    /// sent together are one request).
    fn shutdown(&mut self, sigfd: &SignalFd) {
        let start = Instant::now();
        let mut last_sent: Option<Instant> = None;
        let mut hurry = false;
        loop {
            self.reap();
            let now = Instant::now();
            let resend = last_sent.is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1));
            if resend {
                last_sent = Some(now);
            }
            for e in &mut self.entries {
                let name = Path::new(&e.name);
                if let Some(pid) = e.main {
                    let letters = if hurry { "dxk" } else { "dx" };
                    if resend && !send_control(e.dir.as_ref(), name, "supervise/control", letters) {
                        signal_group(pid, hurry);
                    }
                    continue;
                }
                // the service is gone: let the logger drain the pipe and exit at EOF
                e.pipe_w = None;
                if let Some(pid) = e.log
                    && resend
                {
                    let told = *e.log_told.get_or_insert(now);
                    let late = now.duration_since(told) > Duration::from_secs(10);
                    let letters = if hurry || late { "dx" } else { "x" };
                    let control = "log/supervise/control";
                    if !send_control(e.dir.as_ref(), name, control, letters) {
                        signal_group(pid, hurry || late);
                    }
                }
            }
            if self
                .entries
                .iter()
                .all(|e| e.main.is_none() && e.log.is_none())
            {
                return;
            }
            let mut fds = [PollFd::new(sigfd.as_fd(), PollFlags::POLLIN)];
            let _ = poll(&mut fds, PollTimeout::from(100u16));
            while let Ok(Some(si)) = sigfd.read_signal() {
                let sig = si.ssi_signo as i32;
                // measured now, when the signal is read: `now` dates from before the
                // commands and the poll, and under load a second TERM read much later
                // than 200 ms after the first could be taken for part of it and lost
                if (sig == libc::SIGTERM || sig == libc::SIGINT)
                    && start.elapsed() > Duration::from_millis(200)
                    && !hurry
                {
                    hurry = true;
                    last_sent = None;
                }
            }
        }
    }
}

/// Give every signal but SIGPIPE its default disposition. svscan is the root of the
/// tree and every supervise and service inherits its dispositions: a signal ignored by
/// whoever started svscan (INT and QUIT for `svscan &` in a script, HUP under nohup)
/// would be ignored by every service, which cannot even trap it (`svc -i` or `svc -h`
/// then do nothing to a shell script), and an ignored SIGCHLD makes the kernel reap
/// the supervise processes itself, unseen by svscan's waitpid: a dead one would never
/// be restarted and a TERM shutdown would wait for them forever. (svscan's own TERM,
/// INT, HUP and ALRM reach its signalfd either way: blocked signals are queued even
/// when ignored.) Services start with the dispositions init gives. SIGPIPE stays
/// ignored in svscan (a supervise dying while svscan writes to its fifo must not kill
/// svscan); its children get the default from `reset_signals_for_exec`.
fn default_signals() {
    use nix::sys::signal::{SigHandler, signal};
    for sig in Signal::iterator() {
        if matches!(sig, Signal::SIGKILL | Signal::SIGSTOP | Signal::SIGPIPE) {
            continue;
        }
        // SAFETY: installing SIG_DFL runs no handler code.
        let _ = unsafe { signal(sig, SigHandler::SigDfl) };
    }
}

/// Raise the soft descriptor limit to what [`MAX_SERVICES`] may need (a directory and
/// two pipe ends each) when the hard limit allows; returns the limits to restore in
/// children, `None` when nothing was changed.
fn raise_nofile() -> Option<(u64, u64)> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).ok()?;
    let want = (3 * MAX_SERVICES as u64 + 64).min(hard);
    if want <= soft {
        return None;
    }
    setrlimit(Resource::RLIMIT_NOFILE, want, hard).ok()?;
    Some((soft, hard))
}

/// Run svscan in `dir` (or the current directory). Returns after a TERM/INT shutdown.
pub fn svscan(dir: Option<&str>) {
    if let Some(d) = dir
        && let Err(e) = std::env::set_current_dir(d)
    {
        qsys::die::fatal(
            PROG,
            &format!("unable to chdir to {d}: {}", io_str(&e)),
            111,
        );
    }
    default_signals();
    let mut mask = SigSet::empty();
    for s in [
        Signal::SIGCHLD,
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGALRM,
        Signal::SIGHUP,
    ] {
        mask.add(s);
    }
    if let Err(e) = mask.thread_block() {
        qsys::die::fatal(
            PROG,
            &format!("unable to block signals: {}", nix_str(e)),
            111,
        );
    }
    let sigfd = match SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC) {
        Ok(f) => f,
        Err(e) => qsys::die::fatal(
            PROG,
            &format!("unable to create signalfd: {}", nix_str(e)),
            111,
        ),
    };
    let mut sc = Scanner {
        nofile: raise_nofile(),
        prog: supervise_program(),
        entries: Vec::new(),
    };
    loop {
        sc.reap();
        sc.scan();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let mut fds = [PollFd::new(sigfd.as_fd(), PollFlags::POLLIN)];
            let _ = poll(
                &mut fds,
                PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX),
            );
            let mut rescan = false;
            while let Ok(Some(si)) = sigfd.read_signal() {
                match si.ssi_signo as i32 {
                    libc::SIGTERM | libc::SIGINT => {
                        sc.shutdown(&sigfd);
                        return;
                    }
                    libc::SIGALRM | libc::SIGHUP => rescan = true,
                    _ => sc.reap(),
                }
            }
            if rescan {
                break;
            }
        }
    }
}
