//! Connecting to a local daemon (clamd, spamd) with a deadline.
//!
//! A blocking connect to a unix socket waits for as long as the listener's queue stays
//! full; [`connect_unix`] connects non-blocking, retries on EAGAIN until the deadline,
//! and hands back a blocking stream.

use std::io;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

/// Connect to the unix socket `path`, giving up at `deadline` (ErrorKind::TimedOut).
pub fn connect_unix(path: &str, deadline: Instant) -> io::Result<UnixStream> {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, UnixAddr, connect, socket};
    use std::os::fd::AsRawFd;
    let addr = UnixAddr::new(path).map_err(io::Error::from)?;
    loop {
        let fd = socket(
            AddressFamily::Unix,
            SockType::Stream,
            SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
            None,
        )
        .map_err(io::Error::from)?;
        match connect(fd.as_raw_fd(), &addr) {
            Ok(()) => {
                let s = UnixStream::from(fd);
                s.set_nonblocking(false)?;
                return Ok(s);
            }
            Err(nix::errno::Errno::EAGAIN) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(nix::errno::Errno::EAGAIN) => {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out"));
            }
            Err(e) => return Err(io::Error::from(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    #[test]
    fn connects_refuses_and_gives_up_on_a_full_queue() {
        let dir = tempfile::tempdir().unwrap();
        let soon = || Instant::now() + Duration::from_millis(300);
        let missing = dir.path().join("none.sock");
        assert!(connect_unix(&missing.to_string_lossy(), soon()).is_err());
        let path = dir.path().join("full.sock");
        let l = UnixListener::bind(&path).unwrap();
        assert!(connect_unix(&path.to_string_lossy(), soon()).is_ok());
        nix::sys::socket::listen(&l, nix::sys::socket::Backlog::new(0).unwrap()).unwrap();
        let mut queued = Vec::new();
        let start = Instant::now();
        let last = loop {
            match connect_unix(&path.to_string_lossy(), soon()) {
                Ok(c) if queued.len() < 8 => queued.push(c),
                other => break other,
            }
        };
        assert!(last.is_err(), "the listen queue never filled");
        assert!(start.elapsed() < Duration::from_secs(3));
    }
}
