//! qmail-qfilter - run a message through a chain of filters, then queue it
//!
//! SYNOPSIS
//!     qmail-qfilter [filter [arg ...] [-- filter [arg ...]] ...]
//!
//! DESCRIPTION
//!     A QMAILQUEUE program (DESIGN section 10): qmail-smtpd, sendmail and qmail-inject
//!     run it instead of qmail-queue, with the message on descriptor 0 and the envelope
//!     (`F<sender>\0`, `T<recipient>\0`..., `\0`) on descriptor 1. It reads both whole
//!     first (the message into a memory file, sealed once read; the envelope up to
//!     1 MiB), so a filter never sees a message the client has not finished sending.
//!     Then it runs each filter in turn with the message on descriptor 0, a fresh memory
//!     file on descriptor 1 (sealed when the filter has ended, then the next filter's
//!     input), the envelope readable on descriptor 3 (a sealed memory file: no filter
//!     can change it), a pipe on descriptor 6,
//!     descriptor 2 as given (the log), no other descriptor, and / as its working
//!     directory. After the last filter it queues the final message with the
//!     envelope and exits with qmail-queue's status, so the client hears 250 only when
//!     the message is in the queue: when its real uid is the owner of HOME/smtpd
//!     (qmaild, qmail-smtpd's chain) it first sets all its uids to that one and offers
//!     the message to qmail-queued on HOME/queued/socket (doc/queue-writer.md section
//!     7); otherwise, or when the writer is not there, refuses it or does not greet
//!     within 5 seconds, it runs HOME/bin/qmail-queue (never $QMAILQUEUE).
//!
//!     The filters are the arguments, separated by `--` (Bruce Guenter's syntax; only
//!     when run by root, or not set-id: arguments would let anyone, qmaild included,
//!     run any program as qmailf), or
//!     without arguments the lines of HOME/control/filters: one filter per line, its
//!     words separated by white space (no shell, no quoting), `#` lines and empty lines
//!     ignored. No filter at all: the message goes straight to qmail-queue. A program
//!     name without a slash is looked up in HOME/bin, /usr/local/bin, /usr/bin, /bin.
//!
//!     A filter's exit code decides: 0 the next filter (or qmail-queue) gets its output;
//!     99 the message is accepted and dropped (exit 0, nothing queued); 82 with a line
//!     `D<text>` (permanent) or `Z<text>` (temporary) on descriptor 6 refuses it with
//!     that text, e.g. `Dattachment type .exe not allowed (#5.7.1)`, which qmail-smtpd
//!     prints as `554 5.7.1 attachment type .exe not allowed (#5.7.1)`; any other code
//!     is returned as qmail-queue's (31 permanent refusal, 11-40 permanent, others
//!     temporary). A filter killed by a signal (a crash, a limit) or by the time limit
//!     is a temporary failure, never a pass. qmail-qfilter passes a reason on by exiting
//!     82 with the line on its own descriptor 6 when its caller opened one, else it
//!     exits 31 (D) or 71 (Z).
//!
//! LINKED-IN FILTER
//!     qmail-scan's code is part of qmail-qfilter: a filter line that is `qmail-scan`
//!     or HOME/bin/qmail-scan alone runs it in a forked child of qmail-qfilter instead
//!     of starting the program, which saves a program start per message. The child is
//!     set up as the program would be (own session, descriptors 0-3 and 6 and no other,
//!     / as working directory, the limits, qmailf with the single group nofiles, the
//!     environment below, default signal handlers) before any of qmail-scan's code
//!     runs; it shows as qmail-scan in ps. Behaviour, log lines and exit codes are
//!     qmail-scan's. To run the program instead, name it another way (a symbolic
//!     link to it, for one).
//!
//! SERVER
//!     For qmail-smtpd the same chain (the same code, crates/qfilter/src/runner.rs) runs
//!     in qmail-qfilterd, a server of its own that forks a child per message: when
//!     $QMAILQUEUE is this program, qmail-smtpd offers the whole message to it first and
//!     runs qmail-qfilter only when the server is down, refuses or does not greet within
//!     5 seconds. Everything below holds for both.
//!
//! ENVIRONMENT
//!     Filters get only: QMAILUSER and QMAILHOST (the sender's local part and domain,
//!     split at the last @), QMAILRCPTS (the recipients, each followed by a newline;
//!     empty when longer than 120 KiB, which no environment variable can hold),
//!     PATH as above, and from the caller PROTO, TCPLOCALIP, TCPLOCALPORT, TCPLOCALHOST,
//!     TCPREMOTEIP, TCPREMOTEPORT, TCPREMOTEHOST, TCPREMOTEINFO, RELAYCLIENT,
//!     SMTPAUTHUSER and SMTPHELO (qmail-smtpd's HELO argument) when set, if the caller is root or qmaild (qmail-smtpd): from any
//!     other user (sendmail run by a local user) they would be that user's invention
//!     and are left out. Nothing else of the caller's environment is passed on.
//!
//! CONTROL FILES
//!     filters        the chain (above); empty or missing: no filter.
//!     filtermemory   address space limit per filter (RLIMIT_AS), bytes; 536870912.
//!     filtertimeout  seconds the whole chain may take (a filter still running then is
//!                    killed with its process group); also each filter's CPU limit; 300.
//!     Each filter may also write at most twice its input plus 16 MiB to any file
//!     (RLIMIT_FSIZE), and writes no core file.
//!
//! USER
//!     Installed set-user-id qmailf and set-group-id nofiles (mode 6711): each filter
//!     runs in its own process group as qmailf with the single group nofiles, real and
//!     saved ids included (run by root, the supplementary groups are cleared too). A
//!     filter cannot reach the caller's ids (qmaild, or root for sendmail run by root).
//!     qmail-qfilter itself keeps the caller's real uid, so qmail-queue's Received line
//!     still names the injector ("invoked from network"); before it hands the message
//!     to qmail-queued it gives up qmailf for the real uid (qmaild) for the same reason
//!     (the writer serves qmaild alone and names its peer by the kernel's SO_PEERCRED,
//!     which gives the effective uid). Set-id, it refuses a HOME
//!     that is not root's alone. Run by root without the set-id bits, it drops to
//!     qmailf the same way; in a single-user install (HOME owned by its user, no root)
//!     filters run as that user.
//!
//! EXIT CODES
//!     qmail-queue's: its own status after the chain; 0 also for a dropped message;
//!     a filter's code; 82 with the reason on descriptor 6; 11 envelope too long;
//!     53 unable to write or seal the memory files (also: a filter left a writable
//!     mapping of its output behind); 54 read error on the message or the
//!     envelope (also: the caller gave up before the envelope's end); 55 unable to
//!     read control/filters or a filter list that does not parse; 61 HOME refused;
//!     71 a filter that could not run, crashed or timed out (without descriptor 6);
//!     81 internal error; 91 envelope format error; 120 unable to run qmail-queue;
//!     53 also when qmail-queued died after it had taken part of the message.

#![cfg_attr(not(test), no_main)]

use qfilter::envelope::Envelope;
use qfilter::runner::{self, End, Settings, Trouble};
use queue::client::{Offered, QqFailure, offer_queued};
use std::ffi::OsString;
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

const ME: &str = "qmail-qfilter";

fn fail(code: i32, why: &str) -> ! {
    qsys::die::warn(ME, "fatal", why);
    std::process::exit(code)
}

fn fail_with(t: Trouble) -> ! {
    fail(t.code, &t.why)
}

fn run() {
    qsys::help!();
    std::panic::set_hook(Box::new(|_| std::process::exit(81)));
    let reason_out = take_reason_fd();
    qsys::fds::close_on_exec_from(3);
    let Ok(home) = qsys::home() else {
        std::process::exit(61)
    };
    let filters = chain(&home);
    if filters.is_empty() {
        exec_queue(&home, None, None);
    }
    let settings = Settings::load(&home, filters).unwrap_or_else(|t| fail_with(t));

    let mut message = spool_file(c"message");
    let size = copy_message(&mut message);
    if qfilter::spool::seal(&message).is_err() {
        fail(53, "unable to seal the message");
    }
    // SAFETY: descriptor 1 is the envelope by the QMAILQUEUE contract; nothing else here
    // uses it.
    let fd1 = unsafe { File::from_raw_fd(1) };
    let envelope = qfilter::envelope::read(&mut BufReader::new(fd1))
        .unwrap_or_else(|e| std::process::exit(e.exit_code()));
    let trusted = trusted_caller();
    let env = runner::filter_env(&home, &envelope, |k| {
        trusted.then(|| std::env::var_os(k)).flatten()
    });
    let env_file = qfilter::spool::sealed_file(&envelope.raw)
        .unwrap_or_else(|e| fail(53, &format!("unable to write the envelope: {e}")));
    let scan_here = || scan::program::run(&home);
    let (end, _) = runner::run_chain(
        ME, &home, &settings, &env, message, size, &env_file, &scan_here,
    );
    match end {
        End::Queue(message) => queue_message(&home, message, env_file, &envelope),
        End::Drop => std::process::exit(0),
        End::Exit(code) => std::process::exit(code),
        End::Reason(r) => give_reason(&r, reason_out),
    }
}

/// The filters: the arguments (root only when set-id), else control/filters.
fn chain(home: &Path) -> Vec<qfilter::chain::Filter> {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    if args.is_empty() {
        return runner::control_filters(home).unwrap_or_else(|t| fail_with(t));
    }
    if qsys::running_setid() && !nix::unistd::getuid().is_root() {
        // set-id qmailf: arguments would let anyone run any program as qmailf
        fail(
            55,
            "filters as arguments are for root only: use control/filters",
        );
    }
    qfilter::chain::from_args(&args).unwrap_or_else(|e| fail(55, &e))
}

/// Descriptor 6 when the caller opened one (for a reason), made close-on-exec.
fn take_reason_fd() -> Option<OwnedFd> {
    // SAFETY: fcntl on a descriptor number only queries it.
    if unsafe { libc::fcntl(6, libc::F_GETFD) } < 0 {
        return None;
    }
    // SAFETY: descriptor 6 is open and, by the convention, ours to write a reason to.
    let fd = unsafe { OwnedFd::from_raw_fd(6) };
    let _ = nix::fcntl::fcntl(
        &fd,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    );
    Some(fd)
}

/// True when the caller may speak for the connection: not set-id
/// (nothing to gain), or run by root or qmaild (qmail-smtpd). A local user's sendmail is
/// not: its TCPREMOTEIP, RELAYCLIENT or SMTPAUTHUSER would be its own invention.
fn trusted_caller() -> bool {
    let ruid = nix::unistd::getuid();
    !qsys::running_setid() || ruid.is_root() || qsys::ids::uid("qmaild") == Some(ruid)
}

/// A new memory file ([`qfilter::spool`]).
fn spool_file(name: &std::ffi::CStr) -> File {
    qfilter::spool::memory_file(name)
        .unwrap_or_else(|e| fail(53, &format!("unable to create a memory file: {e}")))
}

/// Descriptor 0 to its end into `message`, its size: a read error is 54, a write
/// error 53.
fn copy_message(message: &mut File) -> u64 {
    let mut stdin = io::stdin().lock();
    let mut buf = vec![0u8; 64 * 1024];
    let mut size = 0u64;
    loop {
        let n = match stdin.read(&mut buf) {
            Ok(0) => return size,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => std::process::exit(54),
        };
        if message.write_all(&buf[..n]).is_err() {
            fail(53, "unable to write the message to a memory file");
        }
        size = size.saturating_add(n as u64);
    }
}

/// Stop with a filter's reason: on descriptor 6 with exit 82 when the caller gave one,
/// else exit 31 (permanent) or 71 (temporary).
fn give_reason(r: &QqFailure, out: Option<OwnedFd>) -> ! {
    let kind = if r.permanent { 'D' } else { 'Z' };
    if let Some(fd) = out {
        let line = format!("{kind}{}\n", r.text);
        if File::from(fd).write_all(line.as_bytes()).is_ok() {
            std::process::exit(queue::client::EXIT_REASON)
        }
    }
    std::process::exit(if r.permanent { 31 } else { 71 })
}

/// Queue the chain's output: through qmail-queued when the caller is the user it serves
/// ([`writer_socket`]), else, or when the writer declines before taking any of the
/// message, by becoming qmail-queue. A writer that dies after that is a temporary
/// failure (53): the message cannot be told queued or not, and the client retries.
fn queue_message(home: &Path, message: File, env_file: File, envelope: &Envelope) -> ! {
    if let Some(socket) = writer_socket(home) {
        let mut from = &message;
        if from.rewind().is_err() {
            fail(53, "unable to seek in a memory file");
        }
        let copy = |w: &mut dyn Write| io::copy(&mut from, w).map(drop);
        match offer_queued(&socket, &envelope.sender, &envelope.recipients, copy) {
            Offered::Declined(_) => {}
            Offered::Answered(Some(code)) => std::process::exit(code),
            Offered::Answered(None) => fail(53, "qmail-queued died with the message"),
        }
    }
    exec_queue(home, Some(message), Some(env_file))
}

/// qmail-queued's socket when the real uid is the one user the writer serves, the owner
/// of HOME/smtpd (qmaild: qmail-smtpd's chain, the hot path); `None` for anyone else (a
/// local user's sendmail, root), who keeps qmail-queue. The writer knows its peer only by
/// `SO_PEERCRED`, which gives the effective uid, so every uid of this process becomes
/// the real one first, for good: the writer then sees the injector, as qmail-queue's
/// Received line names its real uid ("invoked from network"), never qmailf. Only the
/// queueing is left to do then: the filters have ended, the memory files are sealed.
fn writer_socket(home: &Path) -> Option<std::path::PathBuf> {
    let ruid = nix::unistd::getuid().as_raw();
    let served = queue::writer::served_uid(home).ok()?;
    if ruid == 0 || ruid != served {
        return None;
    }
    // SAFETY: setresuid changes only this single-threaded process's credentials.
    if unsafe { libc::setresuid(ruid, ruid, ruid) } != 0 {
        return None;
    }
    Some(queue::writer::socket_path(home))
}

/// Become HOME/bin/qmail-queue, with `message` on descriptor 0 and `envelope` on 1
/// (else the ones we were given), both read from their start, and an empty environment.
fn exec_queue(home: &Path, message: Option<File>, envelope: Option<File>) -> ! {
    for mut f in message.iter().chain(envelope.iter()) {
        if f.rewind().is_err() {
            fail(53, "unable to seek in a memory file");
        }
    }
    let mut cmd = Command::new(home.join("bin/qmail-queue"));
    cmd.env_clear();
    if let Some(m) = message {
        cmd.stdin(Stdio::from(m));
    }
    if let Some(e) = envelope {
        cmd.stdout(Stdio::from(e));
    }
    let e = cmd.exec();
    fail(120, &format!("unable to run qmail-queue: {e}"))
}

qsys::lean_main!(run);
