//! `supervise DIR`: run `DIR/run`, keep it running, obey `supervise/control`.
//!
//! Start-up follows daemontools 0.76 in the order other tools can observe: chdir, look
//! at `down`, `mkdir supervise` (a dangling `supervise` symlink gets its target created,
//! as Debian's patch does), take `supervise/lock` with a non-blocking flock (a second
//! supervise fails with "temporary failure"), make and hold the `control` fifo (read
//! end, plus a write end so it never reads EOF), write `status`, make and hold the `ok`
//! fifo's read end, then start `./run` unless `down` exists.
//!
//! Control letters (one byte each, unknown bytes ignored): `u` up, `d` down (TERM then
//! CONT), `o` once, `p` pause (STOP), `c` continue (CONT), `h` HUP, `a` ALRM, `i` INT,
//! `t` TERM, `k` KILL, `x` exit when the service is down.
//!
//! One deliberate difference: the original blocks for a second after every start and
//! ignores commands meanwhile; we keep the one-second restart throttle but answer
//! commands at once (a `d` right after a `u` is not lost).
//!
//! supervise catches no signal but SIGCHLD (through a signalfd), like the original: a
//! TERM kills supervise and leaves the service running.

use crate::status::Status;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, Signal, kill};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::stat::Mode;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use qsys::errstr::{io as io_str, nix as nix_str};
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::time::{Duration, Instant};
use tai64::Tai64n;

const PROG: &str = "supervise";

fn fatal(msg: String) -> ! {
    qsys::die::fatal(PROG, &msg, 111)
}

fn warn(msg: String) {
    qsys::die::warn(PROG, "warning", &msg);
}

/// Take an exclusive non-blocking flock on `f`; held until the result is dropped.
pub fn lock_exnb(f: File) -> io::Result<nix::fcntl::Flock<File>> {
    nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock)
        .map_err(|(_, e)| io::Error::from(e))
}

struct State {
    dir: String,
    pid: Option<Pid>,
    stamp: Tai64n,
    paused: bool,
    want: bool,
    want_up: bool,
    exit: bool,
    /// A start was asked for and waits for the throttle.
    pending: bool,
    last_start: Option<Instant>,
}

impl State {
    fn announce(&self) {
        let st = Status {
            stamp: self.stamp,
            pid: self.pid.map(|p| p.as_raw() as u32).unwrap_or(0),
            paused: self.paused,
            want: if self.want {
                if self.want_up { b'u' } else { b'd' }
            } else {
                0
            },
        };
        let r = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .custom_flags(libc::O_NONBLOCK)
            .open("supervise/status.new");
        let mut f = match r {
            Ok(f) => f,
            Err(e) => {
                return warn(format!(
                    "unable to open {}/supervise/status.new: {}",
                    self.dir,
                    io_str(&e)
                ));
            }
        };
        if let Err(e) = f.write_all(&st.encode()) {
            return warn(format!(
                "unable to write {}/supervise/status.new: {}",
                self.dir,
                io_str(&e)
            ));
        }
        drop(f);
        if let Err(e) = std::fs::rename("supervise/status.new", "supervise/status") {
            warn(format!(
                "unable to rename {}/supervise/status.new to status: {}",
                self.dir,
                io_str(&e)
            ));
        }
    }

    fn pidchange(&mut self) {
        self.stamp = Tai64n::now();
    }

    /// Start ./run now if allowed, or remember the wish until the throttle allows.
    fn trystart(&mut self) {
        if self.pid.is_some() {
            return;
        }
        if let Some(t) = self.last_start
            && t.elapsed() < Duration::from_secs(1)
        {
            self.pending = true;
            return;
        }
        self.pending = false;
        self.last_start = Some(Instant::now());
        let mut cmd = std::process::Command::new("./run");
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                qsys::reset_signals_for_exec();
                Ok(())
            });
        }
        match cmd.spawn() {
            Ok(child) => {
                self.pid = Some(Pid::from_raw(child.id() as i32));
                self.paused = false;
                self.pidchange();
                self.announce();
                // the child is reaped with waitpid(-1) below, not through `child`
                drop(child);
            }
            Err(e) => {
                // what the original's child prints before it exits 111
                qsys::die::warn(
                    PROG,
                    "fatal",
                    &format!("unable to start {}/run: {}", self.dir, io_str(&e)),
                );
                self.pidchange();
                self.announce();
                if self.want && self.want_up && !self.exit {
                    self.pending = true;
                }
            }
        }
    }

    fn signal(&self, sig: Signal) {
        if let Some(p) = self.pid {
            let _ = kill(p, sig);
        }
    }

    fn command(&mut self, c: u8) {
        match c {
            b'u' => {
                self.want_up = true;
                self.want = true;
                self.announce();
                self.trystart();
            }
            b'd' => {
                self.want = true;
                self.want_up = false;
                self.pending = false;
                self.signal(Signal::SIGTERM);
                self.signal(Signal::SIGCONT);
                self.paused = false;
                self.announce();
            }
            b'o' => {
                self.want = false;
                self.announce();
                self.trystart();
            }
            b'a' => self.signal(Signal::SIGALRM),
            b'h' => self.signal(Signal::SIGHUP),
            b'k' => self.signal(Signal::SIGKILL),
            b't' => self.signal(Signal::SIGTERM),
            b'i' => self.signal(Signal::SIGINT),
            b'p' => {
                self.paused = true;
                self.announce();
                self.signal(Signal::SIGSTOP);
            }
            b'c' => {
                self.paused = false;
                self.announce();
                self.signal(Signal::SIGCONT);
            }
            b'x' => {
                self.exit = true;
                self.pending = false;
                self.announce();
            }
            _ => {}
        }
    }

    /// Reap children; true when the service ended and supervise should exit.
    fn reap(&mut self) -> bool {
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => return false,
                Ok(ws) => {
                    if ws.pid().is_some() && ws.pid() == self.pid {
                        self.pid = None;
                        self.paused = false;
                        self.pidchange();
                        self.announce();
                        if self.exit {
                            return true;
                        }
                        if self.want && self.want_up {
                            self.trystart();
                        }
                    }
                }
            }
        }
    }
}

fn mkfifo(path: &str) -> io::Result<()> {
    match nix::unistd::mkfifo(path, Mode::from_bits_truncate(0o600)) {
        Ok(()) | Err(nix::Error::EEXIST) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn open_read_nb(path: &str) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
}

/// Make `supervise/`; when it is a dangling symlink, create the directory it names.
fn make_supervise_dir() {
    let p = Path::new("supervise");
    if let Ok(m) = std::fs::symlink_metadata(p)
        && m.file_type().is_symlink()
        && std::fs::metadata(p).is_err()
        && let Ok(target) = std::fs::read_link(p)
    {
        let _ = std::fs::DirBuilder::new().mode(0o700).create(&target);
        return;
    }
    let _ = std::fs::DirBuilder::new().mode(0o700).create(p);
}

use std::os::unix::fs::DirBuilderExt;

/// Run supervise on `dir` until told to exit (returns) or a fatal error (exits 111).
pub fn supervise(dir: &str) {
    // A SIGCHLD ignored by whoever started us would make the kernel reap the service
    // itself: waitpid would never report its death and it would stay "up" forever.
    // SAFETY: installing SIG_DFL runs no handler code.
    let _ =
        unsafe { nix::sys::signal::signal(Signal::SIGCHLD, nix::sys::signal::SigHandler::SigDfl) };
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGCHLD);
    if let Err(e) = mask.thread_block() {
        fatal(format!("unable to block SIGCHLD: {}", nix_str(e)));
    }
    let sigfd = match SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC) {
        Ok(f) => f,
        Err(e) => fatal(format!("unable to create signalfd: {}", nix_str(e))),
    };
    if let Err(e) = std::env::set_current_dir(dir) {
        fatal(format!("unable to chdir to {dir}: {}", io_str(&e)));
    }
    let want_up = match std::fs::metadata("down") {
        Ok(_) => false,
        Err(e) if e.kind() == io::ErrorKind::NotFound => true,
        Err(e) => fatal(format!("unable to stat {dir}/down: {}", io_str(&e))),
    };
    make_supervise_dir();
    let lock = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NONBLOCK)
        .open("supervise/lock")
        .and_then(lock_exnb);
    let _lock = match lock {
        Ok(f) => f,
        Err(e) => fatal(format!(
            "unable to acquire {dir}/supervise/lock: {}",
            io_str(&e)
        )),
    };
    if let Err(e) = mkfifo("supervise/control") {
        fatal(format!(
            "unable to create {dir}/supervise/control: {}",
            io_str(&e)
        ));
    }
    let mut control = match open_read_nb("supervise/control") {
        Ok(f) => f,
        Err(e) => fatal(format!(
            "unable to read {dir}/supervise/control: {}",
            io_str(&e)
        )),
    };
    let _control_w = match crate::ctl::open_write(Path::new("supervise/control")) {
        Ok(f) => f,
        Err(e) => fatal(format!(
            "unable to write {dir}/supervise/control: {}",
            io_str(&e)
        )),
    };
    let mut st = State {
        dir: dir.to_string(),
        pid: None,
        stamp: Tai64n::now(),
        paused: false,
        want: true,
        want_up,
        exit: false,
        pending: false,
        last_start: None,
    };
    st.announce();
    if let Err(e) = mkfifo("supervise/ok") {
        fatal(format!(
            "unable to create {dir}/supervise/ok: {}",
            io_str(&e)
        ));
    }
    let _ok = match open_read_nb("supervise/ok") {
        Ok(f) => f,
        Err(e) => fatal(format!("unable to read {dir}/supervise/ok: {}", io_str(&e))),
    };
    if want_up {
        st.trystart();
    }
    let mut buf = [0u8; 64];
    loop {
        if st.exit && st.pid.is_none() {
            return;
        }
        if st.pending && st.pid.is_none() && !st.exit {
            st.trystart();
        }
        let timeout = match (st.pending, st.last_start) {
            (true, Some(t)) => {
                let left = Duration::from_secs(1).saturating_sub(t.elapsed());
                PollTimeout::try_from(left + Duration::from_millis(1)).unwrap_or(PollTimeout::MAX)
            }
            (true, None) => PollTimeout::ZERO,
            _ => PollTimeout::NONE,
        };
        {
            let mut fds = [
                PollFd::new(sigfd.as_fd(), PollFlags::POLLIN),
                PollFd::new(control.as_fd(), PollFlags::POLLIN),
            ];
            let _ = poll(&mut fds, timeout);
        }
        while let Ok(Some(_)) = sigfd.read_signal() {}
        if st.reap() {
            return;
        }
        if let Ok(n) = control.read(&mut buf) {
            for &c in &buf[..n] {
                st.command(c);
                if st.exit && st.pid.is_none() {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_is_exclusive_until_dropped() {
        let d = tempfile::tempdir().unwrap();
        let open = || File::create(d.path().join("lock")).unwrap();
        let held = lock_exnb(open()).unwrap();
        let e = lock_exnb(open()).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EWOULDBLOCK));
        drop(held);
        assert!(lock_exnb(open()).is_ok());
    }
}
