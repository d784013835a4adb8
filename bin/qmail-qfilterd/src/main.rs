//! qmail-qfilterd - the filter chain for qmail-smtpd, from a server that stays up
//!
//! SYNOPSIS
//!     qmail-qfilterd   (started by supervise: HOME/supervise/qmail-qfilterd/run)
//!
//! DESCRIPTION
//!     Runs qmail-qfilter's chain (HOME/control/filters) for qmail-smtpd without a
//!     program started per message (doc/filter-chain.md, "qmail-qfilterd"). Listens on
//!     HOME/qfilterd/socket (a SOCK_SEQPACKET socket, mode 0660, group nofiles, made as
//!     socket.new and renamed) and serves only the owner of HOME/smtpd (qmaild, by
//!     SO_PEERCRED; any other peer is closed at once and runs qmail-qfilter). For each
//!     connection it forks a child, which takes the message and the envelope (sealed
//!     memory files) and the connection's variables, runs every filter exactly as
//!     qmail-qfilter does (same descriptors, environment, limits, identity, time limit,
//!     exit codes and reasons; qmail-scan's code linked in), and answers with the sealed
//!     file to queue, a drop, or the refusal. qmail-smtpd then queues the file itself,
//!     so the message's Received line and queue entry are those of a message without a
//!     chain. control/filters and the limits are read for each message.
//!
//!     qmail-smtpd runs qmail-qfilter, as before this server, when the socket is
//!     missing, refuses it, or sends no greeting within 5 seconds: a server that is down
//!     costs speed, never a message. qmail-qfilter stays the interface of sendmail,
//!     qmail-inject and QMAILQUEUE.
//!
//!     At most 120 messages are in the chain at once. When code linked into the server
//!     (a child, or the qmail-scan code a child forks) dies by a signal, the server
//!     stops accepting and exits 0, and supervise starts it afresh: every child is a
//!     copy of the server, so a fresh start gives the next messages a fresh memory
//!     layout rather than one a crashing message could probe. Warnings and the chain's
//!     log lines go to stderr.
//!
//! USER
//!     qmailf with its group nofiles (the run script uses setuidgid qmailf): the filters'
//!     own user, so that no change of identity is needed per message. It refuses to run
//!     as root. It makes itself not dumpable, so that no filter (also qmailf) can trace
//!     it or read its memory. In a single-user install (HOME owned by the user running
//!     it) it runs as that user.
//!
//! EXIT CODES
//!     0 after a crash of linked-in code (above); 111 unable to start (run as root or
//!     as another user than qmailf, HOME/smtpd unreadable, the socket not made) or
//!     unable to accept connections any more.

fn main() {
    const ME: &str = "qmail-qfilterd";
    qsys::help!();
    qsys::die::install_panic_hook(ME);
    let fatal = |msg: &str| qsys::die::fatal(ME, msg, 111);
    let Ok(home) = qsys::home() else {
        fatal("unable to find my home directory")
    };
    if nix::unistd::geteuid().is_root() {
        fatal("must not run as root (the run script starts it as qmailf)");
    }
    let identity = qfilter::runner::identity(&home).unwrap_or_else(|e| fatal(&e));
    // SAFETY: prctl(PR_SET_DUMPABLE) changes only this process's dumpable flag, which
    // every child inherits.
    if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } != 0 {
        fatal("unable to make myself not dumpable");
    }
    let (listener, served) = qfilter::served::listen(&home).unwrap_or_else(|e| fatal(&e));
    qsys::die::warn(
        ME,
        "status",
        &format!(
            "serving uid {served} on {}",
            qfilter::served::socket_path(&home).display()
        ),
    );
    let scan = || scan::program::run(&home);
    if let Err(e) = qfilter::served::serve(ME, &home, identity, listener, served, &scan) {
        fatal(&format!("unable to accept connections: {e}"));
    }
}
