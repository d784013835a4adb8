//! `tcpserver -A N`: the program started ahead forks each connection's process from
//! itself (the program's side; tcpserver's is `ucspi::ahead`).
//!
//! With `-a` every connection still costs an exec and the C library's start, only
//! earlier. With `-A N` tcpserver puts `TCPSERVER_AHEAD=N` in the environment of the
//! program it starts ahead; in its start ([`crate::ahead::take_connection`], before any
//! of its own code has run or read anything but its own path) that process becomes a
//! *zygote*: it says
//! [`Report::Forking`] and forks a *spare*, which waits for the next connection on the
//! socket exactly as a program started by `-a` does. The spare that takes a connection
//! tells tcpserver its pid ([`Report::Took`]) and goes on as if tcpserver had exec'ed it
//! for that connection; the zygote forks the next spare at once, so the fork is off the
//! time the next client waits for its greeting. The zygote reaps its children and
//! reports each end with its raw wait status ([`Report::Ended`]); tcpserver counts and
//! logs them as its own.
//!
//! What a forked process shares with its siblings, and why that is bounded:
//! - Its memory is a copy of the zygote's at the end of the C library's start: the
//!   arguments, the environment and the program's own path ([`crate::own_path`]),
//!   nothing of any connection (the zygote never reads
//!   one) and nothing secret (control files, keys and certificates are read by each
//!   process after its hand-over, as after an exec).
//! - Its address-space layout (ASLR) and the C library's pointer guard are the
//!   zygote's (so is the C library's stack-protector canary), where an exec would draw
//!   new ones. A client that can crash its session could learn something of the layout
//!   from one crash and use it in another session of the same zygote. So a child that
//!   crashes ([`crate::crash_signal`]: a fault, an abort, a bad instruction) ends its
//!   zygote at once, with its waiting spare: no session forked after the crash shares
//!   the layout. A probe gets at most as many tries per layout as it holds sessions of
//!   that zygote open when the first one crashes (at most N, and at most tcpserver's
//!   `-C` per client address). Without a crash a zygote serves at most N connections,
//!   then exits; Postfix's smtpd serves 100 sessions per process (`max_use`) in one
//!   process with the same layout.
//! - The zygote's running children outlive it: tcpserver is their subreaper
//!   (`PR_SET_CHILD_SUBREAPER`) and reaps them as its own once the zygote is gone.

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, SigmaskHow, Signal, kill};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::unistd::{ForkResult, Pid, fork};

use crate::ahead::{Handed, Report, receive};

/// The spare: a forked process waiting for the next connection, and the read end of
/// the pipe on which it says it took one.
struct Spare {
    pid: Pid,
    took: OwnedFd,
}

/// The zygote (module doc): returns only in a forked process, with the connection it
/// took (or what [`receive`] said instead); the zygote itself exits 0 after
/// `connections` connections, after a crash of one of its processes, when tcpserver
/// goes away or a spare ends without a connection, and 111 when it cannot go on.
pub fn serve(control: &OwnedFd, connections: u32) -> io::Result<Option<Handed>> {
    if !say(control, Report::Forking) {
        std::process::exit(0);
    }
    let mut chld = SigSet::empty();
    chld.add(Signal::SIGCHLD);
    let before = chld
        .thread_swap_mask(SigmaskHow::SIG_BLOCK)
        .unwrap_or_else(|e| fatal("unable to block SIGCHLD", e));
    let sfd = SignalFd::with_flags(&chld, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        .unwrap_or_else(|e| fatal("unable to make a signalfd", e));
    let zygote = nix::unistd::getpid();
    let mut taken: u32 = 0;
    let mut spare: Option<Spare> = None;
    loop {
        if spare.is_none() {
            if taken >= connections {
                std::process::exit(0);
            }
            // non-blocking: the zygote only ever looks whether the spare has said it
            let (took, tell) =
                nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK)
                    .unwrap_or_else(|e| fatal("unable to make a pipe", e));
            // SAFETY: the process is single-threaded (its start); glibc's fork keeps its
            // own state right in the child.
            match unsafe { fork() } {
                Ok(ForkResult::Child) => {
                    drop(sfd);
                    drop(took);
                    if before.thread_set_mask().is_err() {
                        std::process::exit(111);
                    }
                    return take(control, tell, zygote);
                }
                Ok(ForkResult::Parent { child }) => {
                    drop(tell);
                    spare = Some(Spare { pid: child, took });
                }
                Err(e) => fatal("unable to fork", e),
            }
        }
        let Some(s) = spare.as_ref() else { continue };
        let mut fds = [
            // no events asked: only the hang-up of tcpserver's end, never its hand-overs
            PollFd::new(control.as_fd(), PollFlags::empty()),
            PollFd::new(s.took.as_fd(), PollFlags::POLLIN),
            PollFd::new(sfd.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => fatal("unable to poll", e),
        }
        let gone = fds[0].any().unwrap_or(false);
        let told = fds[1].any().unwrap_or(false);
        let signalled = fds[2].any().unwrap_or(false);
        if gone {
            end(spare);
        }
        if told && let Some(s) = spare.take() {
            if !took_one(&s) {
                // gone without a connection: tcpserver went away, or someone killed it
                // (then the hand-over it may have read is lost, and tcpserver learns
                // that when this zygote ends)
                end(None);
            }
            taken += 1;
        }
        if signalled {
            while let Ok(Some(_)) = sfd.read_signal() {}
            reap(control, &mut spare, &mut taken);
        }
    }
}

/// The spare's side: wait for a connection; once one is taken (or a packet that is not
/// one, which also counts: tcpserver expects a report for every hand-over), tell
/// tcpserver and the zygote. A spare dies with its zygote, which a kill may end
/// without [`end`]: a spare left waiting would take hand-overs tcpserver has already
/// counted lost.
fn take(control: &OwnedFd, tell: OwnedFd, zygote: Pid) -> io::Result<Option<Handed>> {
    // SAFETY: prctl with integer arguments.
    let dies_with_zygote =
        unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) } == 0;
    if !dies_with_zygote || nix::unistd::getppid() != zygote {
        std::process::exit(0);
    }
    let got = receive(control);
    // the session that follows outlives the zygote
    // SAFETY: as above.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, 0 as libc::c_ulong) };
    if !matches!(got, Ok(None)) {
        let _ = say(control, Report::Took(std::process::id()));
        let _ = nix::unistd::write(&tell, b"T");
    }
    got
}

/// Whether the spare has said it took a connection (not yet, or it ended without one:
/// nothing to read, or the end of the file).
fn took_one(s: &Spare) -> bool {
    let mut b = [0u8; 1];
    matches!(nix::unistd::read(&s.took, &mut b), Ok(1))
}

/// Reap every ended child, each reported first: a spare that ended may have said it
/// took a connection before anyone heard it from the pipe (tcpserver ignores the end
/// of a pid it never heard of). The report goes out before the child is reaped: should
/// the zygote die in between, the child is left for tcpserver to reap, never lost. A
/// crash, or a spare gone without a connection, ends the zygote ([`end`]).
fn reap(control: &OwnedFd, spare: &mut Option<Spare>, taken: &mut u32) {
    use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid};
    loop {
        let peek = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
        let (pid, status) = match waitid(Id::All, peek) {
            Ok(WaitStatus::Exited(pid, code)) => (pid, (code & 0xff) << 8),
            Ok(WaitStatus::Signaled(pid, sig, core)) => {
                (pid, sig as i32 | if core { 0x80 } else { 0 })
            }
            _ => return,
        };
        if !say(control, Report::Ended(pid.as_raw() as u32, status)) {
            end(spare.take());
        }
        // SAFETY: reaps the child just reported, which nobody else can reap.
        unsafe { libc::waitpid(pid.as_raw(), std::ptr::null_mut(), libc::WNOHANG) };
        if let Some(s) = spare.take_if(|s| s.pid == pid) {
            // its word, if it took one, was written before it ended
            if !took_one(&s) {
                end(None);
            }
            *taken += 1;
        }
        if libc::WIFSIGNALED(status) && crate::crash_signal(libc::WTERMSIG(status)) {
            end(spare.take());
        }
    }
}

/// The zygote's end: its spare is killed unless it has just taken a connection (a
/// hand-over still queued on the socket is then closed with it), its running children
/// go on.
fn end(spare: Option<Spare>) -> ! {
    if let Some(s) = spare
        && !took_one(&s)
    {
        let _ = kill(s.pid, Signal::SIGKILL);
    }
    std::process::exit(0)
}

/// Send `report` to tcpserver; false when it is gone.
fn say(control: &OwnedFd, report: Report) -> bool {
    let packet = report.encode();
    loop {
        match nix::unistd::write(control, &packet) {
            Ok(n) => return n == packet.len(),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return false,
        }
    }
}

fn fatal(what: &str, e: nix::errno::Errno) -> ! {
    crate::die::warn(
        "tcpserver -A",
        "fatal",
        &format!("{what}: {}", crate::die::errstr(&io::Error::from(e))),
    );
    std::process::exit(111)
}
