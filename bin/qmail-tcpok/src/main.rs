//! qmail-tcpok - clear the list of hosts that timed out
//!
//! SYNOPSIS
//!     qmail-tcpok
//!
//! DESCRIPTION
//!     Overwrites HOME/queue/lock/tcpto with 1024 zero bytes under an exclusive flock,
//!     so that qmail-remote again tries every host at once (HOME is the parent of the
//!     directory holding this program). Takes no arguments, reads nothing else.
//!
//! USER
//!     Run by the administrator as root (or as qmailr, who owns the file).
//!
//! EXIT CODES
//!     0 done; 111 the file could not be written (`qmail-tcpok: fatal: ...` on stderr).

fn main() {
    qsys::help!();
    qsys::die::install_panic_hook("qmail-tcpok");
    let home = match qsys::home() {
        Ok(h) => h,
        Err(e) => qsys::die::fatal(
            "qmail-tcpok",
            &format!("unable to find home directory: {e}"),
            111,
        ),
    };
    let path = queue::Layout::new(&home).lock("tcpto");
    if let Err(e) = remote::tcpto::zero(&path) {
        qsys::die::fatal(
            "qmail-tcpok",
            &format!("unable to write {}: {e}", path.display()),
            111,
        );
    }
}
