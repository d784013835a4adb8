//! maildirmake - create a Maildir
//!
//! SYNOPSIS
//!     maildirmake dir
//!
//! DESCRIPTION
//!     Creates dir and its tmp, new and cur subdirectories, mode 0700, owned by the
//!     caller. Run it as the mailbox owner.
//!
//! EXIT CODES
//!     0 created; 100 usage; 111 the directory could not be created.

fn main() {
    qsys::help!();
    qsys::die::install_panic_hook("maildirmake");
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    let [dir] = args.as_slice() else {
        qsys::die::fatal("maildirmake", "usage: maildirmake name", 100)
    };
    if let Err(e) = delivery::maildir::make(std::path::Path::new(dir)) {
        qsys::die::fatal(
            "maildirmake",
            &format!("unable to make {}: {e}", dir.to_string_lossy()),
            111,
        )
    }
}
