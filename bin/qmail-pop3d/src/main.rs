//! qmail-pop3d - distribute mail via POP3 from a Maildir
//!
//! SYNOPSIS
//!     qmail-pop3d maildirname
//!
//! DESCRIPTION
//!     Speaks the POP3 transaction state (RFC 1939) on descriptors 0 and 1 for the
//!     Maildir `maildirname`, relative to the working directory (checkpassword leaves
//!     it at the user's home). Started by checkpassword after a successful login; says
//!     `+OK` first. Commands: STAT, LIST, UIDL, TOP, RETR, DELE, NOOP, RSET, LAST,
//!     CAPA, QUIT. Messages delivered during the current second are left for the next
//!     session. Deletions happen only at QUIT; at QUIT every remaining message in new/
//!     moves to cur/ with `:2,` appended. A connection lost before QUIT changes
//!     nothing. tmp/ files untouched for 36 hours are removed at start.
//!
//! DESCRIPTORS
//!     0: the client (read), 1: the client (write), 2: log.
//!
//! CONTROL FILES
//!     timeoutpop3d: seconds to wait for the client (default 1200); then exit silently.
//!
//! USER
//!     The mailbox owner (set by checkpassword). Refuses to run as root.
//!
//! EXIT CODES
//!     0 after QUIT, a timeout or the client's disconnection; 1 on errors (no Maildir,
//!     run as root, failure to delete at QUIT, write errors).

#![cfg_attr(not(test), no_main)]

use std::io::{BufReader, BufWriter, Write};
use std::path::Path;
use std::time::Duration;

fn die(w: &mut impl Write, msg: &str) -> ! {
    let _ = w.write_all(format!("-ERR {msg}\r\n").as_bytes());
    let _ = w.flush();
    std::process::exit(1)
}

qsys::lean_main!(run);

fn run() {
    qsys::help!();
    qsys::die::install_panic_hook("qmail-pop3d");
    let timeout = qsys::home()
        .ok()
        .and_then(|h| control::Controls::new(&h).int("timeoutpop3d", 1200).ok())
        .unwrap_or(1200)
        .max(1);
    pop3::set_nodelay(1);
    let io = qsys::fdio::FdIo::new(Some(Duration::from_secs(timeout)));
    let mut out = BufWriter::with_capacity(65536, io);
    let Some(dir) = std::env::args_os().nth(1) else {
        die(&mut out, "usage: qmail-pop3d maildirname");
    };
    if nix::unistd::geteuid().is_root() {
        die(&mut out, "qmail-pop3d invoked as uid 0, terminating");
    }
    let mut session = match pop3::pop3d::Session::open(Path::new(&dir)) {
        Ok(s) => s,
        Err(_) => die(&mut out, "this user has no $HOME/Maildir"),
    };
    if out
        .write_all(b"+OK \r\n")
        .and_then(|_| out.flush())
        .is_err()
    {
        std::process::exit(1);
    }
    let mut input = BufReader::with_capacity(4096, io);
    std::process::exit(session.run(&mut input, &mut out));
}
