//! multilog - read a sequence of lines from stdin and append selected lines to any
//! number of logs (daemontools 0.76 compatible)
//!
//! SYNOPSIS
//!     multilog script...
//!
//! DESCRIPTION
//!     Actions: t (first only: TAI64N stamp), sSIZE, nNUM, !PROCESSOR, +PATTERN,
//!     -PATTERN, e, =FILE, ./DIR or /DIR (an automatically rotated log directory with
//!     current, @TAI64N.s/.u, state, lock). See the multilog crate for the details.
//!     File system errors are retried every 5 seconds, so lines wait instead of being
//!     lost. TERM: finish the current line and exit; ALRM: rotate now.
//!
//! USER
//!     qmaill in the installed log/run scripts (via setuidgid when root).
//!
//! EXIT CODES
//!     0 at end of input or after TERM; 111 start-up failure (`multilog: fatal: unable
//!     to lock directory DIR: temporary failure`).

fn main() {
    qsys::help!();
    qsys::die::install_panic_hook("multilog");
    let args: Vec<String> = std::env::args().skip(1).collect();
    logdir::run(&args);
}
