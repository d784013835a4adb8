//! envuidgid - run a program with environment variables naming an account's uid and gid
//!
//! SYNOPSIS
//!     envuidgid ACCOUNT CHILD...
//!
//! DESCRIPTION
//!     Sets $GID and $UID to ACCOUNT's gid and uid (decimal) and execs CHILD (searched
//!     in $PATH). Used with `tcpserver -U` and multilog run scripts.
//!
//! EXIT CODES
//!     100 usage; 111 unknown account or exec failure.

fn main() {
    qsys::help!();
    qsys::die::install_panic_hook("envuidgid");
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.len() < 3 {
        runtools::usage("envuidgid", "account child", 100);
    }
    let acct = args[1].to_string_lossy().into_owned();
    let (uid, gid) = runtools::account("envuidgid", &acct);
    // SAFETY: single-threaded program about to exec.
    unsafe {
        std::env::set_var("GID", gid.to_string());
        std::env::set_var("UID", uid.to_string());
    }
    runtools::exec("envuidgid", &args[2..]);
}
