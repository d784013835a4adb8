//! qmail-lspawn - schedule local deliveries
//!
//! SYNOPSIS
//!     qmail-lspawn defaultdelivery
//!
//! DESCRIPTION
//!     Started by qmail-start. Reads delivery commands from qmail-send on descriptor 0
//!     and writes reports to descriptor 1 (the spawn protocol: one slot byte, the
//!     message id `S/N`, the sender and the recipient, each NUL-terminated; reports are
//!     the slot byte, K/Z/D and text). For each command it finds the user for the
//!     recipient's local part (HOME/users/cdb, then the passwd database, then the
//!     alias user with HOME/alias as home) and forks a child that becomes that user
//!     (one group, then the uid, verified) and does qmail-local's work in-process
//!     (the delivery library HOME/bin/qmail-local runs; no second exec) with the
//!     message HOME/queue/mess/S/N on descriptor 0. The report is what qmail-local's
//!     output and exit code would have made it. A recipient with an empty local part
//!     is accepted and discarded. The decision, the fork and the drop live in the
//!     spawn crate (spawn::lspawn::plan, spawn::lspawn::fork_delivery); why the
//!     in-process delivery keeps qmail's separation: doc/delivery.md.
//!
//! USER
//!     root (the one program that switches to recipients' uids; it refuses uid 0).
//!     Not as root, every delivery runs as the caller.
//!
//! EXIT CODES
//!     0 when qmail-send closes descriptor 0; 100 usage; 111 system failure.

use spawn::lspawn;
use spawn::serve::{Spawner, Start, serve};

fn main() {
    qsys::help!();
    qsys::die::install_panic_hook("qmail-lspawn");
    let fatal = |m: &str, code| -> ! { qsys::die::fatal("qmail-lspawn", m, code) };
    let Some(default_delivery) = std::env::args_os()
        .nth(1)
        .map(|a| a.to_string_lossy().into_owned())
    else {
        fatal("usage: qmail-lspawn defaultdelivery", 100)
    };
    let home = qsys::home().unwrap_or_else(|_| fatal("unable to find my home directory", 111));
    if std::env::set_current_dir(home.join("queue/mess")).is_err() {
        fatal("unable to switch to queue/mess", 111);
    }
    let root = qsys::is_root();
    let qmailq = if root {
        qsys::ids::uid("qmailq").map(|u| u.as_raw())
    } else {
        None
    };
    let local = lspawn::Local {
        default_delivery,
        qmail_queue: queue::client::program(&home),
        drop: root,
    };
    let mut start = |cmd: &spawn::protocol::Command,
                     message: std::fs::File,
                     out: std::os::fd::OwnedFd|
     -> Start {
        let delivery = match lspawn::plan(&home, &cmd.recipient, root) {
            Ok(d) => d,
            Err((status, text)) => return Start::Report(status, text),
        };
        match lspawn::fork_delivery(&delivery, &cmd.sender, &local, message, out) {
            Ok(pid) => Start::Forked(pid),
            Err((status, text)) => Start::Report(status, text),
        }
    };
    let report = |status: std::process::ExitStatus, out: &[u8]| lspawn::report(status.code(), out);
    let spawner = Spawner {
        start: &mut start,
        report: &report,
        truncate: 3000,
        message_owner: qmailq,
    };
    if let Err(e) = serve(spawner) {
        fatal(&format!("lost connection to qmail-send: {e}"), 111);
    }
}
