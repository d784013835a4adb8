//! The filter's side of the chain's contract (DESIGN section 10, wave2.md 1.1): taking
//! the descriptors qmail-qfilter gives a filter, and answering with a reason: one line
//! `D<text>` (permanent) or `Z<text>` (temporary) on descriptor 6 and exit 82, or, when
//! descriptor 6 is not open (a filter run as `QMAILQUEUE` by a caller without it), exit
//! 31 or 71, qmail-queue's plain permanent and temporary refusals.

use std::fs::File;
use std::io::Write;
use std::os::fd::FromRawFd;

/// Whether descriptor `fd` is open.
pub fn fd_open(fd: i32) -> bool {
    // SAFETY: F_GETFD only queries the descriptor flags.
    unsafe { libc::fcntl(fd, libc::F_GETFD) != -1 }
}

/// Descriptor `fd` (0, 3: the message, the envelope) as a file owned from now on by the
/// caller, who must take each descriptor only once; EBADF when it is not open.
pub fn take_fd(fd: i32) -> std::io::Result<File> {
    if !fd_open(fd) {
        return Err(std::io::Error::from_raw_os_error(libc::EBADF));
    }
    // SAFETY: the descriptor is open, and the caller takes it once (above).
    Ok(unsafe { File::from_raw_fd(fd) })
}

/// Refuse with `text`: `kind` `D` (permanent) or `Z` (temporary); never returns.
pub fn reply(kind: char, text: &str) -> ! {
    if let Ok(mut f) = take_fd(6)
        && f.write_all(format!("{kind}{text}").as_bytes()).is_ok()
    {
        std::process::exit(queue::client::EXIT_REASON);
    }
    std::process::exit(if kind == 'D' { 31 } else { 71 })
}
