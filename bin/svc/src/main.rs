//! svc - control supervised services (daemontools 0.76 compatible)
//!
//! SYNOPSIS
//!     svc [-udopchaitkx] DIR...
//!
//! DESCRIPTION
//!     Writes the option letters (deduplicated, in order) in one write to
//!     DIR/supervise/control for every DIR: u up, d down (TERM then CONT), o once,
//!     x exit supervise when down, p pause (STOP), c continue (CONT), h HUP,
//!     a ALRM, i INT, t TERM, k KILL. Does not wait for the effect.
//!
//! USER
//!     Anyone who may write the control fifo (its owner; mode 0600).
//!
//! EXIT CODES
//!     0 (problems with a DIR are warnings: `svc: warning: unable to control DIR:
//!     supervise not running`); 100 usage.

fn main() {
    qsys::help!();
    qsys::die::install_panic_hook("svc");
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (letters, dirs) = match svcdir::ctl::parse_svc_args(&args) {
        Ok(v) => v,
        Err(c) => {
            eprintln!("svc: illegal option -- {c}");
            eprintln!("{}", svcdir::ctl::SVC_USAGE);
            std::process::exit(100);
        }
    };
    // SIGPIPE is ignored by Rust's runtime, as svc ignores it: a write error is a warning.
    for d in &dirs {
        if let Err(m) = svcdir::ctl::svc_send(d, &letters) {
            qsys::die::warn("svc", "warning", &m);
        }
    }
}
