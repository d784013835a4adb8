//! qmail-style diagnostics: `prog: fatal: text` on stderr and a documented exit code.
//!
//! Every `main` calls [`install_panic_hook`] first: a panic is a bug, never an answer to
//! input, and it must become a temporary failure (111) so that the queue retries instead
//! of losing or bouncing mail.

use std::io::Write;

/// Exit code for a temporary failure, as every qmail program uses it.
pub const TEMP: i32 = 111;
/// Exit code for a permanent failure.
pub const PERM: i32 = 100;

/// Write `prog: fatal: msg` to stderr in one write and exit with `code`.
pub fn fatal(prog: &str, msg: &str, code: i32) -> ! {
    warn(prog, "fatal", msg);
    std::process::exit(code)
}

/// Write `prog: kind: msg` to stderr in one write (kind is `warning`, `alert`, ...).
pub fn warn(prog: &str, kind: &str, msg: &str) {
    let line = format!("{prog}: {kind}: {msg}\n");
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// Make a panic print one line and exit 111 (temporary failure) instead of unwinding
/// or aborting with 134.
pub fn install_panic_hook(prog: &'static str) {
    std::panic::set_hook(Box::new(move |info| {
        let place = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        warn(prog, "fatal", &format!("internal error{place}"));
        std::process::exit(TEMP);
    }));
}

/// The text DJB's programs print for an error (the one table is [`crate::errstr`]).
pub fn errstr(e: &std::io::Error) -> &'static str {
    crate::errstr::io(e)
}

/// Give SIGPIPE its default action, as C programs have it: a report tool whose reader
/// went away (`qmail-qread | head`) then ends quietly instead of failing on the write
/// (Rust ignores SIGPIPE, and `println!` turns the EPIPE into a panic). Call first in
/// `main` of programs that print reports; never in daemons that write to clients.
pub fn default_sigpipe() {
    // SAFETY: setting the default disposition installs no handler.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
