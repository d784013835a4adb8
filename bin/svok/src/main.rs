//! svok - check whether supervise is running (daemontools 0.76 compatible)
//!
//! SYNOPSIS
//!     svok DIR
//!
//! DESCRIPTION
//!     Opens DIR/supervise/ok for writing without blocking: that works exactly while a
//!     supervise holds it open for reading.
//!
//! EXIT CODES
//!     0 supervise is running; 100 it is not (or usage); 111 other errors
//!     (`svok: fatal: unable to chdir to DIR: ...`).

fn main() {
    qsys::help!();
    qsys::die::install_panic_hook("svok");
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 2 {
        eprintln!("svok: usage: svok dir");
        std::process::exit(100);
    }
    match svcdir::ctl::svok(&args[1]) {
        Ok(code) => std::process::exit(code),
        Err(m) => qsys::die::fatal("svok", &m, 111),
    }
}
