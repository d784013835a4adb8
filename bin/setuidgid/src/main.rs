//! setuidgid - run a program under a specified account's uid and gid
//!
//! SYNOPSIS
//!     setuidgid ACCOUNT CHILD...
//!
//! DESCRIPTION
//!     Looks up ACCOUNT, sets the supplementary groups to just its gid, then the gid,
//!     then the uid, and execs CHILD (searched in $PATH).
//!
//! USER
//!     root (anyone else can only "become" themselves).
//!
//! EXIT CODES
//!     100 usage; 111 unknown account, setgid/setuid or exec failure.

fn main() {
    qsys::help!();
    qsys::die::install_panic_hook("setuidgid");
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.len() < 3 {
        runtools::usage("setuidgid", "account child", 100);
    }
    let acct = args[1].to_string_lossy().into_owned();
    runtools::setuidgid("setuidgid", &acct);
    runtools::exec("setuidgid", &args[2..]);
}
