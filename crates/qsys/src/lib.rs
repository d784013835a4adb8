//! System glue shared by every program of the suite.
//!
//! - [`home`]: the installation root, found from the program's own path
//!   (`/proc/self/exe` is `HOME/bin/NAME`, DESIGN section 4), so that any number of
//!   complete installs can live side by side and nothing trusts the environment.
//! - [`ids`]: the qmail users and groups, looked up by name (nothing is compiled in).
//! - [`prot`]: qmail's `prot_gid`/`prot_uid`: exactly one group, then the uid, then a
//!   check that the drop held (the one privilege-drop helper).
//! - [`fsync`]: durable file and directory operations (Linux needs directory fsyncs where
//!   qmail assumed synchronous metadata).
//! - [`logsafe`]: the one escaping for anything a client sent that reaches a log line.
//! - [`errstr`]: the one errno-text table (DJB's wording).
//! - [`die`]: qmail-style fatal messages and the panic hook that turns a panic into a
//!   temporary failure (exit 111).

pub mod date;
pub mod die;
pub mod errstr;
pub mod fdio;
pub mod fsync;
pub mod getopt;
pub mod ids;
pub mod logsafe;
pub mod prot;

use std::path::PathBuf;

/// The installation root of the running program: the parent of the directory that holds
/// its executable (`HOME/bin/NAME` gives `HOME`).
pub fn home() -> std::io::Result<PathBuf> {
    let exe = std::fs::read_link("/proc/self/exe")?;
    exe.parent()
        .and_then(|bin| bin.parent())
        .map(PathBuf::from)
        .ok_or_else(|| std::io::Error::other("program is not installed as HOME/bin/NAME"))
}

/// Seconds since the epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// True when the process runs with real uid 0.
pub fn is_root() -> bool {
    nix::unistd::getuid().is_root()
}

/// Restore the default disposition of SIGPIPE and an empty signal mask: Rust's runtime
/// ignores SIGPIPE, and an exec'ed program (a shell run script, a `|program` delivery)
/// must not inherit that. Call in a forked child just before exec.
pub fn reset_signals_for_exec() {
    use nix::sys::signal::{SigHandler, SigSet, SigmaskHow, Signal, signal, sigprocmask};
    // SAFETY: setting a signal to its default disposition installs no Rust handler.
    unsafe {
        let _ = signal(Signal::SIGPIPE, SigHandler::SigDfl);
        let _ = signal(Signal::SIGCHLD, SigHandler::SigDfl);
    }
    let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
}

/// This machine's host name (`gethostname(2)`), or `localhost`.
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates on success.
    let r = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if r != 0 {
        return "localhost".into();
    }
    let n = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// Block SIGTERM, SIGALRM and SIGHUP for this thread (and, across exec, the program it
/// becomes): qmail-start calls this first, so a signal sent while qmail-send is still
/// starting waits for its signalfd instead of killing it.
pub fn block_control_signals() {
    use nix::sys::signal::{SigSet, Signal};
    let mut mask = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGALRM, Signal::SIGHUP] {
        mask.add(s);
    }
    let _ = mask.thread_block();
}
