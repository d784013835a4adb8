//! qmail-vdeliver - deliver a message to a virtual user
//!
//! SYNOPSIS
//!     |HOME/bin/qmail-vdeliver      (a line of a virtual domain's .qmail-default)
//!
//! DESCRIPTION
//!     Run by qmail-local for a virtual domain (see qmail-vuser adddomain). Finds the
//!     virtual user $EXT@$HOST (with an extension, `joe-list` finds `joe`) in
//!     HOME/users/vusers.cdb, refuses unknown and disabled users, checks the quota, and
//!     writes the message from descriptor 0, preceded by $RPLINE and $DTLINE, into the
//!     user's Maildir (tmp, fsync, link into new, fsync of new).
//!
//! DESCRIPTORS
//!     0: the message (qmail-local's seekable queue file). 1: the reason on failure,
//!     which becomes the delivery report.
//!
//! CONTROL FILES
//!     vquotapolicy: `bounce` makes an over-quota delivery fail permanently; otherwise
//!     (default `defer`) it is a temporary failure retried until queuelifetime.
//!
//! ENVIRONMENT
//!     EXT, HOST, RPLINE, DTLINE (from qmail-local).
//!
//! USER
//!     The virtual domain's owner (from users/assign, through qmail-lspawn).
//!
//! EXIT CODES
//!     0 delivered; 100 no such user, disabled, over quota with `bounce`; 111 temporary
//!     failure.

use std::io::Write;
use std::os::fd::FromRawFd;

fn main() {
    qsys::help!();
    qsys::die::install_panic_hook("qmail-vdeliver");
    let var = |k: &str| std::env::var(k).unwrap_or_default();
    let (ext, host) = (var("EXT"), var("HOST"));
    let out = |text: &str, code: i32| -> ! {
        let mut o = std::io::stdout().lock();
        let _ = o.write_all(text.as_bytes());
        let _ = o.flush();
        std::process::exit(code)
    };
    if ext.is_empty() || host.is_empty() {
        out(
            "qmail-vdeliver needs $EXT and $HOST from qmail-local. (#4.3.5)",
            111,
        );
    }
    let home = match qsys::home() {
        Ok(h) => h,
        Err(_) => out("Unable to find my home. (#4.3.0)", 111),
    };
    let prefix = format!("{}{}", var("RPLINE"), var("DTLINE"));
    // SAFETY: descriptor 0 is the message file qmail-local passes; nothing else owns it.
    let mut msg = unsafe { std::fs::File::from_raw_fd(0) };
    match vusers::deliver::deliver(&home, &format!("{ext}@{host}"), prefix.as_bytes(), &mut msg) {
        Ok(_) => std::process::exit(0),
        Err(f) => out(&f.text, if f.permanent { 100 } else { 111 }),
    }
}
