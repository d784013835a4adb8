//! NAME
//!     sendmail - sendmail-compatible front end to qmail-inject
//!
//! SYNOPSIS
//!     sendmail [ -t ] [ -fsender ] [ -Fname ] [ -bp ] [ -bs ] [ -q ] [ recipient ... ]
//!
//! DESCRIPTION
//!     Translates a sendmail command line into qmail-inject's and does qmail-inject's
//!     work in this process (no exec of HOME/bin/qmail-inject; HOME is the parent of
//!     the directory holding this program): the message is read on descriptor 0, the
//!     header rewritten and the message queued through HOME/bin/qmail-queue (or
//!     $QMAILQUEUE), exactly as qmail-inject with the translated arguments and
//!     environment would; errors are reported as "qmail-inject: fatal: ...".
//!
//!     -t          recipients from the header too (qmail-inject -H; else -a)
//!     -f sender   envelope sender; also sets QMAILUSER/QMAILHOST from it and unsets
//!                 QMAILNAME MAILNAME NAME QMAILHOST MAILHOST (netqmail)
//!     -F name     personal name (MAILNAME)
//!     -bm         deliver mail (default)
//!     -bp         list the queue: exec HOME/bin/qmail-qread (also when run as mailq)
//!     -bs         SMTP on descriptors 0/1: exec HOME/bin/qmail-smtpd with RELAYCLIENT=""
//!                 DATABYTES=0 PROTO=TCP TCPLOCALIP=127.0.0.1 ... unless PROTO is set
//!     -q...       wake qmail-send (write HOME/queue/lock/trigger) and exit 0
//!     -i -oi -v -x -m -e* -o* -p* -B* -E* -J*   accepted and ignored
//!     No-argument flags may be clustered; arguments may be attached or separate.
//!     Run as newaliases, or with -bi: runs newaliases (compiles /etc/aliases).
//!
//! USER
//!     Runs as the calling user.
//!
//! EXIT CODES
//!     Those of qmail-inject; 100 for a usage error; 111 when the program
//!     to exec for -bp or -bs cannot be run ("sendmail: fatal: unable to run
//!     qmail-smtpd").

#![cfg_attr(not(test), no_main)]

const SYNOPSIS: &str =
    "usage: sendmail [ -t ] [ -fsender ] [ -Fname ] [ -bp ] [ -bs ] [ -q ] [ recipient ... ]
  -t recipients from the header too, -f envelope sender, -F personal name,
  -bp list the queue, -bs SMTP on stdin/stdout, -q wake the queue;
  -i -oi -v -x -m -e* -o* -p* -B* -E* -J* are accepted and ignored.
  Reads the message on stdin and does qmail-inject's work.
";

qsys::lean_main!(run);

fn run() {
    qsys::help!();
    qsys::die::install_panic_hook("sendmail");
    inject::cli::sendmail(SYNOPSIS)
}
