//! envdir - run a program with environment modified according to files in a directory
//!
//! SYNOPSIS
//!     envdir DIR CHILD...
//!
//! DESCRIPTION
//!     For every file in DIR whose name does not start with `.`: an empty file removes
//!     that variable; otherwise its first line, without trailing spaces and tabs and
//!     with NUL bytes turned into newlines, becomes the value. Then execs CHILD
//!     (searched in $PATH). A subdirectory in DIR is an error.
//!
//! EXIT CODES
//!     111 usage (as in daemontools), unreadable DIR or file, exec failure.

fn main() {
    qsys::help!();
    qsys::die::install_panic_hook("envdir");
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.len() < 3 {
        runtools::usage("envdir", "dir child", 111);
    }
    let changes = match runtools::envdir_changes(std::path::Path::new(&args[1])) {
        Ok(c) => c,
        Err(m) => runtools::fatal("envdir", &m),
    };
    for (k, v) in changes {
        // SAFETY: single-threaded program about to exec.
        unsafe {
            match v {
                Some(v) => std::env::set_var(&k, v),
                None => std::env::remove_var(&k),
            }
        }
    }
    runtools::exec("envdir", &args[2..]);
}
