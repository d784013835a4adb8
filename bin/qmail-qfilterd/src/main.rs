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
//!     Started by root (the run script), it makes its socket in HOME/qfilterd, which
//!     is root's (mode 2750, group nofiles), so that no filter can replace the socket,
//!     and then becomes qmailf with the single group nofiles for good, before it
//!     accepts anything: the filters' own user, so that no change of identity is needed
//!     per message. It makes itself not dumpable, so that no filter (also qmailf) can
//!     trace it or read its memory. Started by qmailf it refuses to run. In a
//!     single-user install (HOME owned by the user running it) it runs as that user.
//!
//! EXIT CODES
//!     0 after a crash of linked-in code (above); 111 unable to start (not started by
//!     root outside a single-user install, no user qmailf, HOME/smtpd unreadable, the
//!     socket not made, qmailf not become) or unable to accept connections any more.

fn main() {
    const ME: &str = "qmail-qfilterd";
    qsys::help!();
    qsys::die::install_panic_hook(ME);
    let fatal = |msg: &str| qsys::die::fatal(ME, msg, 111);
    // nothing our starter left open reaches a filter
    qsys::fds::close_on_exec_from(3);
    // SAFETY: installs the default disposition, no handler: a starter that ignored
    // SIGCHLD would have the kernel reap our children before we could count them.
    unsafe {
        let _ = nix::sys::signal::signal(
            nix::sys::signal::Signal::SIGCHLD,
            nix::sys::signal::SigHandler::SigDfl,
        );
    }
    let Ok(home) = qsys::home() else {
        fatal("unable to find my home directory")
    };
    let root = nix::unistd::geteuid().is_root();
    let identity = qfilter::runner::identity(&home).unwrap_or_else(|e| fatal(&e));
    if !root && identity.is_some() {
        fatal("must be started by root: it makes its socket in HOME/qfilterd, then becomes qmailf");
    }
    let group = identity.filter(|_| root).map(|id| id.gid);
    let (listener, served) = qfilter::served::listen(&home, group).unwrap_or_else(|e| fatal(&e));
    if root {
        let Some(id) = identity else {
            fatal("no filter user to become")
        };
        let (uid, gid) = (
            nix::unistd::Uid::from_raw(id.uid),
            nix::unistd::Gid::from_raw(id.gid),
        );
        if let Err(e) = qsys::prot::drop_verified(uid, gid) {
            fatal(&format!("unable to become {}: {e}", qfilter::FILTER_USER));
        }
    }
    // SAFETY: prctl(PR_SET_DUMPABLE) changes only this process's dumpable flag, which
    // every child inherits.
    if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } != 0 {
        fatal("unable to make myself not dumpable");
    }
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
