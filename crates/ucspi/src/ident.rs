//! The RFC 1413 (ident) client behind `TCPREMOTEINFO`, as ucspi-tcp's `remoteinfo.c`:
//! connect from the local address to the peer's port 113 within the timeout, send
//! `REMOTEPORT , LOCALPORT\r\n`, read one line, and keep what follows the third colon with
//! spaces, tabs and CRs removed (at most 256 bytes). An `ERROR` answer (two colons) gives
//! an empty value; no answer gives none.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// The ident answer for the connection `local` <- `remote`, or `None`.
pub fn lookup(local: SocketAddr, remote: SocketAddr, timeout: Duration) -> Option<String> {
    lookup_via(local, remote, SocketAddr::new(remote.ip(), 113), timeout)
}

/// [`lookup`] asking the ident server at `server`.
pub fn lookup_via(
    local: SocketAddr,
    remote: SocketAddr,
    server: SocketAddr,
    timeout: Duration,
) -> Option<String> {
    let deadline = Instant::now() + timeout;
    let sock = nix_connect_from(local, server, timeout)?;
    let mut s = sock;
    let left = deadline.checked_duration_since(Instant::now())?;
    s.set_write_timeout(Some(left)).ok()?;
    s.write_all(format!("{} , {}\r\n", remote.port(), local.port()).as_bytes())
        .ok()?;
    let mut line = Vec::new();
    let mut buf = [0u8; 512];
    while !line.contains(&b'\n') && line.len() < 1024 {
        let left = deadline.checked_duration_since(Instant::now())?;
        s.set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .ok()?;
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => line.extend_from_slice(&buf[..n]),
            Err(_) => return None,
        }
    }
    Some(parse(&line))
}

/// The user part of an ident answer line.
pub fn parse(line: &[u8]) -> String {
    let line = line.split(|&b| b == b'\n').next().unwrap_or(b"");
    let mut colons = 0;
    let mut out = Vec::new();
    for &b in line {
        if colons >= 3 {
            if !matches!(b, b' ' | b'\t' | b'\r') && out.len() < 256 {
                out.push(b);
            }
        } else if b == b':' {
            colons += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Connect to `server` from `local`'s address (port chosen by the kernel).
fn nix_connect_from(local: SocketAddr, server: SocketAddr, timeout: Duration) -> Option<TcpStream> {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, SockaddrStorage, bind, socket};
    let family = if local.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let fd = socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, None).ok()?;
    let from = SockaddrStorage::from(SocketAddr::new(local.ip(), 0));
    bind(std::os::fd::AsRawFd::as_raw_fd(&fd), &from).ok()?;
    let s = TcpStream::from(fd);
    // std has no connect on an existing socket: a non-blocking connect and a poll
    s.set_nonblocking(true).ok()?;
    let to = SockaddrStorage::from(server);
    match nix::sys::socket::connect(std::os::fd::AsRawFd::as_raw_fd(&s), &to) {
        Ok(()) | Err(nix::errno::Errno::EINPROGRESS) => {}
        Err(_) => return None,
    }
    let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    let mut fds = [nix::poll::PollFd::new(
        std::os::fd::AsFd::as_fd(&s),
        nix::poll::PollFlags::POLLOUT,
    )];
    let n = nix::poll::poll(&mut fds, nix::poll::PollTimeout::try_from(ms).ok()?).ok()?;
    if n == 0 || s.take_error().ok()?.is_some() || s.peer_addr().is_err() {
        return None;
    }
    s.set_nonblocking(false).ok()?;
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers() {
        assert_eq!(parse(b"4000 , 25 : USERID : UNIX : alice\r\n"), "alice");
        assert_eq!(parse(b"4000 , 25 : USERID : UNIX :a l\tice\r\n"), "alice");
        assert_eq!(parse(b"4000 , 25 : ERROR : NO-USER\r\n"), "");
    }

    #[test]
    fn fake_identd() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        // we cannot bind 113 unprivileged; exercise the dialogue by pointing at the port
        let t = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut b = [0u8; 64];
            let n = s.read(&mut b).unwrap();
            assert_eq!(&b[..n], b"4000 , 25\r\n");
            s.write_all(b"4000 , 25 : USERID : UNIX : bob\r\n").unwrap();
        });
        let local: SocketAddr = "127.0.0.1:25".parse().unwrap();
        let remote: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let server = SocketAddr::new(remote.ip(), port);
        let got = lookup_via(local, remote, server, Duration::from_secs(5));
        t.join().unwrap();
        assert_eq!(got.as_deref(), Some("bob"));
    }
}
