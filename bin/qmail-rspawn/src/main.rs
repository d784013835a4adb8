//! qmail-rspawn - schedule remote deliveries
//!
//! SYNOPSIS
//!     qmail-rspawn
//!
//! DESCRIPTION
//!     Started by qmail-start. Speaks the spawn protocol with qmail-send on descriptors
//!     0 and 1 (see qmail-lspawn) and runs HOME/bin/qmail-remote (or $QMAILREMOTE)
//!     `host sender recipient` for each command, host being the recipient's domain, with
//!     the message HOME/queue/mess/S/N on descriptor 0. qmail-remote's reports are
//!     turned into one K/Z/D report as qmail-rspawn does. At start it clears
//!     HOME/queue/lock/tcpto.
//!
//! USER
//!     qmailr (set by qmail-start).
//!
//! EXIT CODES
//!     0 when qmail-send closes descriptor 0; 111 system failure.

use spawn::protocol::Status;
use spawn::serve::{Spawner, Start, serve};
use std::process::{Command, Stdio};

fn main() {
    qsys::help!();
    qsys::die::install_panic_hook("qmail-rspawn");
    let fatal = |m: &str| -> ! { qsys::die::fatal("qmail-rspawn", m, 111) };
    let home = qsys::home().unwrap_or_else(|_| fatal("unable to find my home directory"));
    if std::env::set_current_dir(home.join("queue/mess")).is_err() {
        fatal("unable to switch to queue/mess");
    }
    let _ = std::fs::OpenOptions::new()
        .write(true)
        .open("../lock/tcpto")
        .and_then(|mut f| std::io::Write::write_all(&mut f, &[0u8; 1024]));
    let remote = match std::env::var_os("QMAILREMOTE") {
        Some(p) if !p.is_empty() => std::path::PathBuf::from(p),
        _ => home.join("bin/qmail-remote"),
    };
    let qmailq = if qsys::is_root() {
        qsys::ids::uid("qmailq").map(|u| u.as_raw())
    } else {
        None
    };
    let mut start = |cmd: &spawn::protocol::Command,
                     message: std::fs::File,
                     out: std::os::fd::OwnedFd|
     -> Start {
        let Some(at) = cmd.recipient.iter().rposition(|&b| b == b'@') else {
            return Start::Report(
                Status::Failure,
                b"Sorry, address must include host name. (#5.1.3)".to_vec(),
            );
        };
        let host = String::from_utf8_lossy(&cmd.recipient[at + 1..]).into_owned();
        let Ok(err) = out.try_clone() else {
            return Start::Report(
                Status::Deferral,
                b"qmail-spawn unable to create pipe. (#4.3.0)".to_vec(),
            );
        };
        use std::os::unix::ffi::OsStrExt;
        let child = Command::new(&remote)
            .arg(host)
            .arg(std::ffi::OsStr::from_bytes(&cmd.sender))
            .arg(std::ffi::OsStr::from_bytes(&cmd.recipient))
            .stdin(Stdio::from(message))
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn();
        match child {
            Ok(c) => Start::Child(c),
            Err(_) => Start::Report(Status::Deferral, b"Unable to run qmail-remote.".to_vec()),
        }
    };
    let report =
        |status: std::process::ExitStatus, out: &[u8]| spawn::rspawn::report(status.code(), out);
    let spawner = Spawner {
        start: &mut start,
        report: &report,
        truncate: 10_000,
        message_owner: qmailq,
    };
    if let Err(e) = serve(spawner) {
        fatal(&format!("lost connection to qmail-send: {e}"));
    }
}
