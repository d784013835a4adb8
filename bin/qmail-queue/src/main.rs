//! qmail-queue - queue a mail message for delivery
//!
//! SYNOPSIS
//!     qmail-queue
//!
//! DESCRIPTION
//!     Reads a message on descriptor 0 and its envelope on descriptor 1, adds a
//!     `Received: (qmail PID invoked by ...)` line, and puts the message into
//!     HOME/queue, where qmail-send finds it. The envelope is `F<sender>\0`, then
//!     `T<recipient>\0` for each recipient, then one more `\0`. HOME is the parent of
//!     the directory holding this program.
//!
//!     Exit 0 means the message and envelope are on disk (fsynced, directories
//!     included): a crash afterwards cannot lose it. On any failure nothing is left
//!     in queue/todo.
//!
//! USER
//!     Installed setuid qmailq (mode 04711); the real uid names the injector in the
//!     Received line ("invoked by alias", "invoked from network" for qmaild, "invoked for
//!     bounce" for qmails, else "invoked by uid N"; those users are recognised as the
//!     owners of HOME/alias, HOME/smtpd and HOME/queue/bounce, with no passwd lookup).
//!     In a single-user install it runs as its caller.
//!
//! EXIT CODES (qmail's)
//!     0 queued; 11 address too long; 51 out of memory; 52 timeout (24 hours);
//!     53 write error or disk full; 54 read error on message or envelope;
//!     61 home directory; 62 queue directory; 63 queue/pid; 64 queue/mess;
//!     65 queue/intd; 66 queue/todo; 81 internal bug; 91 envelope format error.
//!     11-40 are permanent failures, all others temporary.

#![cfg_attr(not(test), no_main)]

use std::fs::File;
use std::os::fd::FromRawFd;

extern "C" fn on_alarm(_: libc::c_int) {
    // SAFETY: _exit is async-signal-safe. qmail-queue does not clean up on timeout.
    unsafe { libc::_exit(52) }
}

qsys::lean_main!(run);

fn run() {
    qsys::help!();
    std::panic::set_hook(Box::new(|_| std::process::exit(81)));
    let Ok(home) = qsys::home() else {
        std::process::exit(61)
    };
    let layout = queue::Layout::new(&home);
    let queue_owner = match std::fs::metadata(&layout.dir) {
        Ok(m) if m.is_dir() => std::os::unix::fs::MetadataExt::uid(&m),
        _ => std::process::exit(62),
    };
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o033));
    // SAFETY: the handler only calls _exit.
    unsafe {
        let _ = nix::sys::signal::signal(
            nix::sys::signal::Signal::SIGALRM,
            nix::sys::signal::SigHandler::Handler(on_alarm),
        );
        libc::alarm(86_400);
    }
    let uid = nix::unistd::getuid();
    let invoked = queue::qq::invoked(&home, queue_owner, uid.as_raw());
    // SAFETY: descriptors 0 and 1 belong to this process for its whole life.
    let (mut message, mut envelope) = unsafe { (File::from_raw_fd(0), File::from_raw_fd(1)) };
    let code =
        match queue::qq::enqueue(&layout, &mut message, &mut envelope, uid.as_raw(), &invoked) {
            Ok(_) => 0,
            Err(e) => e.code,
        };
    // SAFETY: _exit ends the process; nothing is buffered (no output but the exit code).
    unsafe { libc::_exit(code) }
}
