//! qmail-tcpto - print the list of hosts that timed out
//!
//! SYNOPSIS
//!     qmail-tcpto
//!
//! DESCRIPTION
//!     Reads HOME/queue/lock/tcpto (HOME is the parent of the directory holding this
//!     program) and prints, for each remembered IPv4 address with recent connect
//!     timeouts, one line on descriptor 1:
//!         `1.2.3.4 timed out 600 seconds ago; # recent timeouts: 2`
//!     qmail-remote skips an address with two or more recent timeouts for about an hour.
//!
//! USER
//!     Anyone who can read the file (it is owned by qmailr, mode 0644).
//!
//! EXIT CODES
//!     0 done; 111 the file could not be read (`qmail-tcpto: fatal: ...` on stderr).

use std::io::Write;

fn main() {
    qsys::help!();
    qsys::die::install_panic_hook("qmail-tcpto");
    let home = match qsys::home() {
        Ok(h) => h,
        Err(e) => qsys::die::fatal(
            "qmail-tcpto",
            &format!("unable to find home directory: {e}"),
            111,
        ),
    };
    let path = queue::Layout::new(&home).lock("tcpto");
    match remote::tcpto::list(&path) {
        Ok(text) => {
            if std::io::stdout().write_all(text.as_bytes()).is_err() {
                qsys::die::fatal("qmail-tcpto", "unable to write output", 111);
            }
        }
        Err(e) => qsys::die::fatal(
            "qmail-tcpto",
            &format!("unable to read {}: {e}", path.display()),
            111,
        ),
    }
}
