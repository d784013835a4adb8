//! svstat - print the status of supervised services (daemontools 0.76 compatible)
//!
//! SYNOPSIS
//!     svstat DIR...
//!
//! DESCRIPTION
//!     One line per DIR, worded exactly as daemontools' svstat:
//!     `DIR: up (pid P) S seconds[, normally down][, paused][, want down]`,
//!     `DIR: down S seconds[, normally up][, want up]`, `DIR: supervise not running`,
//!     or `DIR: unable to ...: ERR`. Reads DIR/down, DIR/supervise/ok and the first 18
//!     bytes of DIR/supervise/status.
//!
//! USER
//!     Anyone who can read DIR/supervise (mode 0700: its owner).
//!
//! EXIT CODES
//!     0 always.

use std::io::Write;

fn main() {
    qsys::help!();
    qsys::die::install_panic_hook("svstat");
    qsys::die::default_sigpipe();
    let mut out = String::new();
    for d in std::env::args().skip(1) {
        out.push_str(&svcdir::ctl::svstat_line(&d));
        out.push('\n');
    }
    let _ = std::io::stdout().write_all(out.as_bytes());
}
