//! qmail-local - deliver or forward one mail message
//!
//! SYNOPSIS
//!     qmail-local [-nN] -- user homedir local dash ext domain sender defaultdelivery
//!
//! DESCRIPTION
//!     Delivers the message on descriptor 0 (a seekable file: qmail-lspawn passes the
//!     queue file) for local@domain, following ~user/.qmail<dash><ext> (lookup order
//!     and line meanings as dot-qmail(5): ./Maildir/, ./mbox, |program, &address or a
//!     bare address) or, when that file is missing or empty, `defaultdelivery`.
//!     Messages that already carry `Delivered-To: local@domain` are refused as loops.
//!     Programs run under /bin/sh -c in homedir with the message on stdin and
//!     SENDER, NEWSENDER, RECIPIENT, LOCAL, HOST, HOST2-4, EXT, EXT2-4, DEFAULT,
//!     DTLINE, RPLINE, UFLINE, USER and HOME set; exit 99 stops further lines.
//!     Forwards are queued in one injection through HOME/bin/qmail-queue (or
//!     $QMAILQUEUE) with the Delivered-To line on top.
//!
//!     -n prints what would be done instead of doing it; -N (default) delivers.
//!     On success prints `did F+W+P` (files, forwards, programs) and `qp N` when it
//!     forwarded; on failure, the reason. Output goes to descriptor 1, which
//!     qmail-lspawn turns into the delivery report.
//!
//!     qmail-lspawn does not exec this program: its child runs the same delivery
//!     library (the delivery crate) in-process after dropping to the recipient
//!     (doc/delivery.md). qmail-local stays for manual use (-n) and tests; both give
//!     the same output and exit codes.
//!
//! USER
//!     The recipient's uid and gid (never root).
//!
//! EXIT CODES
//!     0 delivered; 100 permanent failure (bounce); 111 temporary failure (retry).

#![cfg_attr(not(test), no_main)]

use delivery::local::{Env, Recipient, deliver};
use std::fs::File;
use std::io::Write;
use std::os::fd::FromRawFd;
use std::path::PathBuf;

fn usage() -> ! {
    qsys::die::fatal(
        "qmail-local",
        "usage: qmail-local [ -nN ] user homedir local dash ext domain sender aliasempty",
        100,
    )
}

qsys::lean_main!(run);

fn run() {
    qsys::help!();
    qsys::die::install_panic_hook("qmail-local");
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    let mut dry_run = false;
    let mut args: Vec<String> = Vec::new();
    let mut options = true;
    for a in std::env::args_os().skip(1) {
        let a = a.to_string_lossy().into_owned();
        if options && a == "--" {
            options = false;
        } else if options && a.starts_with('-') && a.len() > 1 {
            for c in a[1..].chars() {
                match c {
                    'n' => dry_run = true,
                    'N' => dry_run = false,
                    _ => usage(),
                }
            }
        } else {
            options = false;
            args.push(a);
        }
    }
    let [
        user,
        home,
        local,
        dash,
        ext,
        domain,
        sender,
        default_delivery,
    ] = <[String; 8]>::try_from(args).unwrap_or_else(|_| usage());
    let r = Recipient {
        user,
        home: PathBuf::from(home),
        local,
        dash,
        ext,
        domain,
        sender,
        default_delivery,
    };
    let qmail_queue = qsys::home()
        .map(|h| queue::client::program(&h))
        .unwrap_or_else(|_| PathBuf::from("qmail-queue"));
    // SAFETY: descriptor 0 is the message file for this process's whole life.
    let mut message = unsafe { File::from_raw_fd(0) };
    let outcome = deliver(&r, &mut message, &Env { qmail_queue }, dry_run);
    let _ = std::io::stdout().lock().write_all(outcome.text.as_bytes());
    let _ = std::io::stdout().flush();
    std::process::exit(outcome.code);
}
