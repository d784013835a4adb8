//! svscan - start and monitor a collection of services (daemontools 0.76 compatible)
//!
//! SYNOPSIS
//!     svscan [DIR]
//!
//! DESCRIPTION
//!     Changes to DIR (default: the current directory) and every 5 seconds starts a
//!     `supervise NAME` for each subdirectory NAME not starting with `.` that has none
//!     (restarting dead ones), plus `supervise log` in NAME when NAME/log exists, with a
//!     pipe from the service's stdout to the logger's stdin that svscan holds open, so
//!     no line is lost when either side restarts. `supervise` is taken from svscan's
//!     own directory when present, else from $PATH. Each supervise gets its own session.
//!
//!     SIGALRM or SIGHUP: rescan now. SIGTERM or SIGINT (Ctrl-C): stop every service
//!     (`svc -dx`), let each logger drain its pipe and exit, then exit 0. (daemontools
//!     0.76 catches no signal; this is daemontools-encore's behaviour.)
//!
//! USER
//!     root at boot (see svscanboot); any user for a private service directory.
//!
//! EXIT CODES
//!     0 after SIGTERM/SIGINT shutdown; 111 unable to chdir to DIR.

fn main() {
    qsys::help!();
    qsys::die::install_panic_hook("svscan");
    let args: Vec<String> = std::env::args().collect();
    svcdir::scan::svscan(args.get(1).map(String::as_str));
}
