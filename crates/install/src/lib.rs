//! `qmail-install`: lay out an installation the way qmail's `hier.c` does (DESIGN
//! section 4), idempotently.
//!
//! What it does, in order:
//! 1. As root, create the groups `qmail` and `nofiles` and the users `alias qmaild qmaill
//!    qmailp qmailq qmailr qmails` when missing (system accounts, no login shell). Ids
//!    are whatever the system assigns; programs look them up by name at run time.
//! 2. Directories with qmail's owners and modes (the queue as in qmail.md 2.1), the
//!    `lock/tcpto` file, `lock/sendmutex` and the `lock/trigger` FIFO.
//! 3. Programs copied from the directory holding `qmail-install` itself (a build
//!    directory) into `ROOT/bin`, each through a temporary name and a rename so a running
//!    program is never overwritten in place; `qmail-queue` setuid qmailq.
//! 4. First control files (`me`, `locals`, `rcpthosts`, `defaultdomain`, `plusdomain`)
//!    and `~alias/.qmail-{postmaster,mailer-daemon,root}` plus `~alias/Maildir/`, only
//!    when missing: rerunning never touches control files, the queue or mailboxes.
//!
//! Rerun as root for an upgrade, it never follows a link a less privileged user planted
//! in the queue, the lock files or `~alias` (see [`hier::install`] and `qsys::safefs`),
//! and it is safe to run several times at once (see `hier::settle_account`).
//!
//! Run by an ordinary user, steps 1 and all ownership changes are skipped: every program
//! then runs as that user (DESIGN section 4).

pub mod hier;
pub mod manuals;
pub mod path;

pub use hier::{Options, install};
