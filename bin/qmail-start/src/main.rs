//! qmail-start - turn on mail delivery
//!
//! SYNOPSIS
//!     qmail-start [defaultdelivery [logger arg ...]]
//!
//! DESCRIPTION
//!     Starts qmail-send and its helpers, connected by pipes as qmail does:
//!     qmail-lspawn (stays root, group qmail), qmail-rspawn (qmailr), qmail-clean
//!     (qmailq), and becomes qmail-send (qmails) with descriptors 0 log, 1/2
//!     lspawn, 3/4 rspawn, 5/6 clean. defaultdelivery (default ./Maildir/) is the
//!     delivery for users without a .qmail file. With a logger, qmail-send's log goes
//!     to that program (run as qmaill); otherwise to descriptor 1 (for supervise and
//!     multilog). The environment is passed to every delivery: run it under `env -`.
//!
//!     Not started as root, every program runs as the calling user (said once in the
//!     log); the separation of users is then not in force.
//!
//! USER
//!     root, briefly.
//!
//! EXIT CODES
//!     111 on any failure to start (nothing printed but the reason); otherwise it
//!     becomes qmail-send.

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

fn die(m: &str) -> ! {
    qsys::die::fatal("qmail-start", m, 111)
}

fn pipe() -> (OwnedFd, OwnedFd) {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .unwrap_or_else(|_| die("unable to create pipe"))
}

/// Set up `c` to drop to `user` (one group: qmail's prot_gid + prot_uid) when root.
fn drop_to(c: &mut Command, user: Option<&str>) {
    let Some(user) = user else { return };
    if !qsys::is_root() {
        return;
    }
    let (uid, gid) = qsys::ids::account(user).unwrap_or_else(|| die(&format!("no user {user}")));
    // SAFETY: drop_verified only makes system calls (no allocation, no locks).
    unsafe {
        c.pre_exec(move || qsys::prot::drop_verified(uid, gid).map_err(Into::into));
    }
}

// The children live as long as qmail-send, which this process becomes; when it exits
// they see EOF and exit, and their parent is then init.
#[allow(clippy::zombie_processes)]
fn start(bin: &Path, args: &[&str], user: Option<&str>, stdin: OwnedFd, stdout: OwnedFd) {
    let log = std::io::stdout().as_raw_fd();
    let err = nix::unistd::dup(unsafe { std::os::fd::BorrowedFd::borrow_raw(log) })
        .unwrap_or_else(|_| die("unable to dup"));
    let mut c = Command::new(bin);
    c.args(args)
        .stdin(Stdio::from(stdin))
        .stdout(Stdio::from(stdout))
        .stderr(Stdio::from(err));
    if qsys::is_root() && user.is_none() {
        // qmail-lspawn stays root but only in group qmail
        let gid = qsys::ids::gid("qmail").unwrap_or_else(|| die("no group qmail"));
        let root = nix::unistd::Uid::from_raw(0);
        // SAFETY: drop_verified only makes system calls (no allocation, no locks).
        unsafe {
            c.pre_exec(move || qsys::prot::drop_verified(root, gid).map_err(Into::into));
        }
    }
    drop_to(&mut c, user);
    c.spawn()
        .unwrap_or_else(|e| die(&format!("unable to start {}: {e}", bin.display())));
}

#[allow(clippy::zombie_processes)] // the logger outlives us, see start()
fn main() {
    qsys::help!();
    qsys::die::install_panic_hook("qmail-start");
    qsys::block_control_signals();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let default_delivery = args.first().cloned().unwrap_or_else(|| "./Maildir/".into());
    let home = qsys::home().unwrap_or_else(|_| die("unable to find my home directory"));
    let _ = std::env::set_current_dir("/");
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    let bin = home.join("bin");

    if args.len() > 1 {
        let (r, w) = pipe();
        let mut c = Command::new(&args[1]);
        c.args(&args[2..]).stdin(Stdio::from(r));
        drop_to(&mut c, Some("qmaill"));
        c.spawn()
            .unwrap_or_else(|e| die(&format!("unable to start logger: {e}")));
        // our descriptor 1 becomes the logger pipe
        let w_raw = w.as_raw_fd();
        // SAFETY: dup2 onto descriptor 1, which this process owns.
        if unsafe { libc::dup2(w_raw, 1) } != 1 {
            die("unable to dup logger pipe");
        }
    }
    if !qsys::is_root() {
        println!(
            "status: qmail-start running as uid {}: every program runs as this one user",
            nix::unistd::getuid()
        );
    }

    let (l_in_r, l_in_w) = pipe();
    let (l_out_r, l_out_w) = pipe();
    let (r_in_r, r_in_w) = pipe();
    let (r_out_r, r_out_w) = pipe();
    let (c_in_r, c_in_w) = pipe();
    let (c_out_r, c_out_w) = pipe();
    start(
        &bin.join("qmail-lspawn"),
        &[&default_delivery],
        None,
        l_in_r,
        l_out_w,
    );
    start(
        &bin.join("qmail-rspawn"),
        &[],
        Some("qmailr"),
        r_in_r,
        r_out_w,
    );
    start(
        &bin.join("qmail-clean"),
        &[],
        Some("qmailq"),
        c_in_r,
        c_out_w,
    );

    // Move our ends to high descriptors, then onto 0..6 for qmail-send.
    let log = nix::fcntl::fcntl(std::io::stdout(), nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(10))
        .unwrap_or_else(|_| die("unable to dup"));
    let ends = [
        log,
        l_in_w.as_raw_fd(),
        l_out_r.as_raw_fd(),
        r_in_w.as_raw_fd(),
        r_out_r.as_raw_fd(),
        c_in_w.as_raw_fd(),
        c_out_r.as_raw_fd(),
    ];
    let high: Vec<i32> = ends
        .iter()
        .map(|&fd| {
            // SAFETY: fd is open; F_DUPFD_CLOEXEC returns a new descriptor >= 10.
            let n = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 10) };
            if n < 0 {
                die("unable to dup");
            }
            n
        })
        .collect();
    for (target, fd) in high.iter().enumerate() {
        // SAFETY: dup2 onto a low descriptor; the new one is not close-on-exec.
        if unsafe { libc::dup2(*fd, target as i32) } != target as i32 {
            die("unable to dup");
        }
    }
    let mut c = Command::new(bin.join("qmail-send"));
    drop_to(&mut c, Some("qmails"));
    let e = c.exec();
    die(&format!("unable to start qmail-send: {e}"));
}
