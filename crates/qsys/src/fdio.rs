//! The connection as tcpserver hands it to its child: read fd 0, write fd 1, with an
//! optional timeout on every wait (qmail's `timeoutread`/`timeoutwrite`). Used under
//! qmail-smtpd and qmail-popup (below TLS too) and by rblsmtpd.

use std::io::{self, Read, Write};
use std::os::fd::BorrowedFd;
use std::time::Duration;

/// The connection as tcpserver passes it: read fd 0, write fd 1. Each read and write waits
/// at most `timeout` (when set) for the descriptor to become ready, then fails with
/// `ErrorKind::TimedOut`. Reads and writes go straight to the descriptors (no buffering
/// here), so nothing is read ahead of what the caller asked for.
#[derive(Debug, Clone, Copy, Default)]
pub struct FdIo {
    pub timeout: Option<Duration>,
}

impl FdIo {
    pub fn new(timeout: Option<Duration>) -> FdIo {
        FdIo { timeout }
    }

    fn wait(&self, fd: BorrowedFd<'_>, flags: nix::poll::PollFlags) -> io::Result<()> {
        let Some(t) = self.timeout else {
            return Ok(());
        };
        let ms = i32::try_from(t.as_millis()).unwrap_or(i32::MAX);
        let ms = nix::poll::PollTimeout::try_from(ms).unwrap_or(nix::poll::PollTimeout::MAX);
        loop {
            let mut fds = [nix::poll::PollFd::new(fd, flags)];
            match nix::poll::poll(&mut fds, ms) {
                Ok(0) => return Err(io::Error::new(io::ErrorKind::TimedOut, "timeout")),
                Ok(_) => return Ok(()),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }
}

fn stdin() -> BorrowedFd<'static> {
    // SAFETY: fd 0 stays open for the life of the process; nothing here closes it.
    unsafe { BorrowedFd::borrow_raw(0) }
}

fn stdout() -> BorrowedFd<'static> {
    // SAFETY: as for fd 0.
    unsafe { BorrowedFd::borrow_raw(1) }
}

impl Read for FdIo {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.wait(stdin(), nix::poll::PollFlags::POLLIN)?;
        loop {
            match nix::unistd::read(stdin(), buf) {
                Ok(n) => return Ok(n),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }
}

impl Write for FdIo {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.wait(stdout(), nix::poll::PollFlags::POLLOUT)?;
        loop {
            match nix::unistd::write(stdout(), buf) {
                Ok(n) => return Ok(n),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
