//! NAME
//!     qmail-inject - preprocess and send a mail message
//!
//! SYNOPSIS
//!     qmail-inject [ -nNaAhH ] [ -fsender ] [ recipient ... ]
//!
//! DESCRIPTION
//!     Reads a mail message on descriptor 0, rewrites its header as qmail-inject(8) and
//!     qmail-header(5) describe, and queues it by running HOME/bin/qmail-queue (or
//!     $QMAILQUEUE, or HOME/bin/qmail-qfilter when control/filters names a filter) with
//!     the message on its descriptor 0 and the envelope on its descriptor 1; a filter's
//!     refusal is printed with the filter's own text. HOME is the parent of the
//!     directory holding this program. sendmail queues through this same code.
//!
//!     -a  recipients are the arguments only       -h  recipients come from the header
//!     -A  arguments if any, else header (default) -H  header and arguments
//!     -f sender  envelope sender (overrides Return-Path and the environment)
//!     -n  print the message (with Return-Path) on descriptor 1 instead of queueing
//!     -N  queue the message (default)
//!
//!     Header recipients: To, Cc, Bcc, Apparently-To (Resent-To, Resent-Cc, Resent-Bcc
//!     for a resent message). Bcc, Resent-Bcc, Return-Path and Content-Length are
//!     removed; Date, Message-ID, From and "Cc: recipient list not shown: ;" are added
//!     when missing (Resent- variants for a resent message). Addresses are qualified:
//!     no host -> @defaulthost, host without a dot -> .defaultdomain, trailing + ->
//!     .plusdomain.
//!
//! FILES
//!     HOME/control/defaulthost, defaultdomain, plusdomain, idhost (each defaults to
//!     HOME/control/me, then to its own name).
//!
//! ENVIRONMENT
//!     QMAILUSER MAILUSER USER LOGNAME (From user), QMAILHOST MAILHOST (From host),
//!     QMAILNAME MAILNAME NAME (personal name), QMAILSUSER QMAILSHOST (envelope sender),
//!     QMAILINJECT (letters c s f i r m), QMAILMFTFILE, QMAILDEFAULTDOMAIN,
//!     QMAILDEFAULTHOST, QMAILPLUSDOMAIN, QMAILIDHOST, QMAILQUEUE.
//!
//! USER
//!     Runs as the calling user; qmail-queue does the privileged part.
//!
//! EXIT CODES
//!     0 queued (or printed); 100 usage, unparsable header field or address, no
//!     recipients, header over 4 MB, or a permanent qmail-queue failure; 111 temporary
//!     failure (controls unreadable, read error, qmail-queue trouble), printed as
//!     "qmail-inject: fatal: <text>".

#![cfg_attr(not(test), no_main)]

const SYNOPSIS: &str = "usage: qmail-inject [ -nNaAhH ] [ -fsender ] [ recipient ... ]
  -a args only, -h header only, -A args if any else header (default), -H both,
  -f sender, -n print instead of queueing, -N queue (default).
  Reads the message on stdin; exit 0 ok, 100 permanent error, 111 temporary error.
";

qsys::lean_main!(run);

fn run() {
    qsys::help!();
    qsys::die::install_panic_hook("qmail-inject");
    inject::cli::qmail_inject(SYNOPSIS)
}
