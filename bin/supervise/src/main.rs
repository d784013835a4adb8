//! supervise - start and monitor a service (daemontools 0.76 compatible)
//!
//! SYNOPSIS
//!     supervise DIR
//!
//! DESCRIPTION
//!     Runs DIR/run with DIR as working directory and restarts it when it exits (at
//!     most once a second), unless DIR/down exists (then it waits for `svc -u`).
//!     Obeys the letters written to DIR/supervise/control (see svc) and keeps
//!     DIR/supervise/status in daemontools' 18-byte layout, so Debian's svstat, svc
//!     and svok work against it and ours against Debian's supervise.
//!
//! FILES
//!     DIR/supervise/lock (flock'ed: one supervise per DIR), control and ok (fifos),
//!     status (written as status.new and renamed). A dangling `supervise` symlink gets
//!     its target directory created.
//!
//! USER
//!     Whoever starts it (root under svscan at boot; any user for a private tree).
//!     ./run is started as the same user and drops privileges itself.
//!
//! EXIT CODES
//!     0 after `svc -x` once the service is down; 100 usage; 111 fatal error
//!     (`supervise: fatal: unable to acquire DIR/supervise/lock: temporary failure`).

fn main() {
    qsys::help!();
    qsys::die::install_panic_hook("supervise");
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 2 || args[1].is_empty() {
        eprintln!("supervise: usage: supervise dir");
        std::process::exit(100);
    }
    svcdir::supervise::supervise(&args[1]);
}
