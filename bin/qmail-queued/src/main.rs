//! qmail-queued - the queue writer that stays up, for qmail-smtpd
//!
//! SYNOPSIS
//!     qmail-queued   (started by supervise: HOME/supervise/qmail-queued/run)
//!
//! DESCRIPTION
//!     Does qmail-queue's job for qmail-smtpd without a program started per message
//!     (doc/queue-writer.md). Listens on HOME/queued/socket (mode 0660, group nofiles,
//!     made as socket.new and renamed), serves only the owner of HOME/smtpd (qmaild, by
//!     SO_PEERCRED; any other peer is closed at once and uses qmail-queue), one message
//!     per connection: the envelope, then the message in chunks, checked and bounded as
//!     qmail-queue checks them. Messages received at the same time are committed together
//!     (one fsync of queue/todo for the batch, after every message file, intd/N and
//!     mess/S fsync), in qmail-queue's order, and each client hears 0 only after that;
//!     then queue/lock/trigger is pulled. The Received line reads as qmail-queue's,
//!     `Received: (qmail P invoked from network); DATE` with P the client's pid, and
//!     intd/N holds the client's uid and pid. HOME is the parent of the directory
//!     holding this program.
//!
//!     qmail-smtpd falls back to qmail-queue when the socket is missing, refuses it, or
//!     sends no greeting within 5 seconds; qmail-queue stays the interface of every
//!     other injector and of QMAILQUEUE filter chains.
//!
//!     One at a time: it holds an exclusive lock on HOME/queue/lock/queued. Warnings
//!     (a refused peer, a client gone mid-message, a refused message) go to stderr.
//!
//! USER
//!     qmailq (the queue's owner; the run script uses setuidgid qmailq), umask 033: its
//!     files are qmail-queue's (owner qmailq, mode 0644). It refuses to run as root or
//!     as any user other than the queue's owner.
//!
//! EXIT CODES
//!     111 unable to start (another writer holds the lock, the queue or HOME/smtpd
//!     unreadable, the socket not made, run as root or not as the queue's owner) or
//!     unable to accept connections any more; it does not exit otherwise.

fn main() {
    qsys::help!();
    qsys::die::install_panic_hook("qmail-queued");
    if std::env::args_os().nth(1).is_some_and(|a| a == "--help") {
        print!("{}", MANUAL);
        return;
    }
    let fatal = |msg: &str| qsys::die::fatal("qmail-queued", msg, 111);
    let Ok(home) = qsys::home() else {
        fatal("unable to find my home directory")
    };
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o033));
    let (listener, queue, served, _lock) = match queue::writer::start(&home) {
        Ok(s) => s,
        Err(e) => fatal(&e.0),
    };
    qsys::die::warn(
        "qmail-queued",
        "status",
        &format!(
            "serving uid {} on {}",
            served.uid,
            queue::writer::socket_path(&home).display()
        ),
    );
    if let Err(e) = queue::writer::serve(listener, queue, served) {
        fatal(&format!("unable to accept connections: {e}"));
    }
}

const MANUAL: &str = "qmail-queued - the queue writer that stays up, for qmail-smtpd

usage: qmail-queued   (as qmailq, from HOME/supervise/qmail-queued/run)

Listens on HOME/queued/socket for qmail-smtpd (the owner of HOME/smtpd only) and queues
its messages as qmail-queue would, committing concurrent messages together. qmail-smtpd
uses qmail-queue whenever the writer is down. Exit 111: unable to start.
";
