//! qmail-dkimsign - the DKIM signatures of one outgoing message
//!
//! SYNOPSIS
//!     qmail-dkimsign < message
//!
//! DESCRIPTION
//!     Reads a message (LF line ends, as in the queue) on descriptor 0 and writes on
//!     descriptor 1 the DKIM-Signature header fields (RFC 6376, relaxed/relaxed; RSA-SHA256
//!     and Ed25519-SHA256, RFC 8463) that qmail-remote puts before it: one per key of the
//!     domain of the message's first From: address (or of its nearest parent domain with
//!     keys) in HOME/control/dkim/DOMAIN/SELECTOR.rsa|.ed25519 (see qmail-dkim). The
//!     signatures are computed over the message as qmail-remote sends it (CRLF line ends).
//!     Nothing is written when the domain has no keys. Each key that cannot be read or
//!     used is skipped and named on descriptor 2, one line per alert, which qmail-remote
//!     adds to its report (qmail-send's delivery line).
//!
//! FILES
//!     control/dkim/DOMAIN/SELECTOR.rsa, SELECTOR.ed25519    private keys (PEM)
//!
//! USER
//!     qmailr, started by qmail-remote (only qmailr can read the keys).
//!
//! EXIT CODES
//!     0 (signed or not: the alerts say why not); 111 its home cannot be found or
//!     descriptor 1 cannot be written (qmail-remote then sends the message unsigned).

#![cfg_attr(not(test), no_main)]

use std::io::Write;

qsys::lean_main!(run);

fn run() {
    qsys::help!();
    qsys::die::install_panic_hook("qmail-dkimsign");
    let home = match qsys::home() {
        Ok(h) => h,
        Err(_) => qsys::die::fatal("qmail-dkimsign", "unable to find my home directory", 111),
    };
    let signed = dkim::sign_message(&home, &mut std::io::stdin().lock());
    let mut alerts = String::new();
    for a in &signed.alerts {
        alerts.push_str(a);
        alerts.push('\n');
    }
    let _ = std::io::stderr().write_all(alerts.as_bytes());
    let mut out = std::io::stdout().lock();
    if out
        .write_all(&signed.header)
        .and_then(|()| out.flush())
        .is_err()
    {
        std::process::exit(111);
    }
    std::process::exit(0);
}
