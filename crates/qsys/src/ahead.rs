//! Starting ahead of the connection (`tcpserver -a`): the program's side and the wire
//! format both sides share.
//!
//! A process start costs more than anything a short session does: exec, the C library's
//! start (whose CPUID loops trap to the hypervisor on a virtual machine), relocations.
//! With `-a`, tcpserver starts the next connection's program before that connection
//! arrives, with [`VAR`] in its environment and one end of a `SOCK_SEQPACKET` socket
//! pair on descriptors 0 and 1. The program, in [`take_connection`] at the end of its
//! start ([`crate::start::init`], before its own code reads anything but its own path,
//! [`crate::own_path`]), says [`READY`]
//! on that socket and waits. At the next connection tcpserver sends it one packet: the
//! connection's descriptor (`SCM_RIGHTS`) and the environment changes it would have made
//! before an exec ([`encode`]). The program puts the connection on 0 and 1, applies the
//! changes, removes [`VAR`], and goes on as if tcpserver had just exec'ed it: one
//! process per connection as before, only started earlier. Everything it reads about
//! the connection (TCPREMOTEIP, the rules' variables, the control files) it reads after
//! the hand-over.
//!
//! A program that does not know the protocol never says [`READY`] (it writes something
//! else, or nothing, or exits): tcpserver then starts it at each connection as usual.
//! When tcpserver goes away the socket ends and the waiting program exits 0.
//!
//! With `tcpserver -A N` the variable's value is N, and a value above 1 makes the
//! waiting program a zygote that forks a process for each of N connections
//! ([`crate::zygote`]); it says [`FORKING`] instead of [`READY`] and reports on the
//! same socket ([`Report`]).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// The variable that makes a program wait for its connection (its value is not used).
pub const VAR: &str = "TCPSERVER_AHEAD";

/// The byte a waiting program sends when it is ready for its connection.
pub const READY: u8 = b'R';

/// The byte a program sends instead of [`READY`] when it forks each connection's process
/// from itself (`tcpserver -A`, [`crate::zygote`]).
pub const FORKING: u8 = b'Z';

/// What a program started ahead says to tcpserver on its socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Report {
    /// Ready for one connection, which it serves itself (`-a`).
    Ready,
    /// Ready for connections, each served by a process it forks ([`crate::zygote`]).
    Forking,
    /// Process `pid`, forked ahead, took the oldest connection not taken yet.
    Took(u32),
    /// Process `pid`, which took a connection, ended with this raw wait status.
    Ended(u32, i32),
}

impl Report {
    /// The packet: the byte alone, or `T` and the pid, or `E`, the pid and the status
    /// (little-endian).
    pub fn encode(self) -> Vec<u8> {
        match self {
            Report::Ready => vec![READY],
            Report::Forking => vec![FORKING],
            Report::Took(pid) => [&[b'T'][..], &pid.to_le_bytes()].concat(),
            Report::Ended(pid, status) => {
                [&[b'E'][..], &pid.to_le_bytes(), &status.to_le_bytes()].concat()
            }
        }
    }

    /// The report in `packet`; `None` for anything else.
    pub fn decode(packet: &[u8]) -> Option<Report> {
        let word = |at: usize| -> Option<[u8; 4]> { packet.get(at..at + 4)?.try_into().ok() };
        match (packet.first()?, packet.len()) {
            (&READY, 1) => Some(Report::Ready),
            (&FORKING, 1) => Some(Report::Forking),
            (b'T', 5) => Some(Report::Took(u32::from_le_bytes(word(1)?))),
            (b'E', 9) => Some(Report::Ended(
                u32::from_le_bytes(word(1)?),
                i32::from_le_bytes(word(5)?),
            )),
            _ => None,
        }
    }
}

/// A connection handed over and the environment changes that came with it.
pub type Handed = (OwnedFd, Vec<Change>);

/// The most bytes of environment changes one hand-over carries.
pub const MAX_CHANGES: usize = 64 * 1024;

/// An environment change: set the variable to the value, or remove it (`None`).
pub type Change = (Vec<u8>, Option<Vec<u8>>);

/// The changes as sent: `+NAME=VALUE\0` sets, `-NAME\0` removes.
pub fn encode(changes: &[Change]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in changes {
        match value {
            Some(v) => {
                out.push(b'+');
                out.extend_from_slice(name);
                out.push(b'=');
                out.extend_from_slice(v);
            }
            None => {
                out.push(b'-');
                out.extend_from_slice(name);
            }
        }
        out.push(0);
    }
    out
}

/// The changes [`encode`] made; `None` for anything else (an empty name, a name with `=`,
/// an entry without its end).
pub fn decode(bytes: &[u8]) -> Option<Vec<Change>> {
    if bytes.is_empty() {
        return Some(Vec::new());
    }
    let body = bytes.strip_suffix(&[0])?;
    body.split(|&b| b == 0)
        .map(|entry| {
            let (&kind, rest) = entry.split_first()?;
            let (name, value) = match kind {
                b'+' => {
                    let eq = rest.iter().position(|&b| b == b'=')?;
                    (&rest[..eq], Some(rest[eq + 1..].to_vec()))
                }
                b'-' => (rest, None),
                _ => return None,
            };
            if name.is_empty() || name.contains(&b'=') {
                return None;
            }
            Some((name.to_vec(), value))
        })
        .collect()
}

/// Receive one hand-over on `control`: the connection and the changes. `Ok(None)` when
/// tcpserver closed the socket instead (it is going away); an error for a packet that
/// is not a hand-over.
pub fn receive(control: &OwnedFd) -> io::Result<Option<Handed>> {
    use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
    let mut buf = vec![0u8; MAX_CHANGES + 1];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let (len, fds, truncated) = loop {
        let mut iov = [io::IoSliceMut::new(&mut buf)];
        match recvmsg::<()>(
            control.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Ok(msg) => {
                let mut fds = Vec::new();
                for c in msg.cmsgs().map_err(io::Error::from)? {
                    if let ControlMessageOwned::ScmRights(r) = c {
                        fds.extend(r);
                    }
                }
                let truncated = msg
                    .flags
                    .intersects(MsgFlags::MSG_TRUNC | MsgFlags::MSG_CTRUNC);
                break (msg.bytes, fds, truncated);
            }
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    };
    // SAFETY: the kernel gave us these descriptors; each is ours alone from here on.
    let mut fds: Vec<OwnedFd> = fds
        .into_iter()
        .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })
        .collect();
    if len == 0 && fds.is_empty() {
        return Ok(None);
    }
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
    if truncated || fds.len() != 1 {
        return Err(bad(
            "a hand-over carries one descriptor and fits its buffer",
        ));
    }
    let changes = decode(&buf[..len]).ok_or_else(|| bad("malformed environment changes"))?;
    Ok(fds.pop().map(|fd| (fd, changes)))
}

/// The program's side (module doc), for [`crate::start::init`]: nothing unless [`VAR`]
/// is set; then say ready on descriptor 0, wait for the connection, put it on 0 and 1
/// and apply the changes. Exits 0 when tcpserver goes away first, 111 on a broken
/// hand-over. Ignored (and removed) in a set-id program. Only while the process is
/// single-threaded (its start).
pub fn take_connection() {
    let Some(value) = std::env::var_os(VAR) else {
        return;
    };
    // SAFETY: called at the start, before any thread exists.
    unsafe { std::env::remove_var(VAR) };
    if crate::running_setid() {
        // tcpserver starts nothing set-id ahead; from anyone else the variable would only
        // hand a set-id program descriptors and variables its caller could give it anyway
        return;
    }
    // read once here, before any waiting: a forked process finds it done (crate::own_path)
    let _ = crate::own_path();
    // the number of connections to serve: more than one makes this process the zygote
    // of `tcpserver -A`, which forks a process for each
    let connections = value
        .to_str()
        .and_then(|v| v.parse::<u32>().ok())
        .unwrap_or(1);
    // SAFETY: descriptor 0 is the control socket by the protocol; we take it over.
    let control = unsafe { OwnedFd::from_raw_fd(0) };
    let got = if connections > 1 {
        // returns in a forked process only, with its connection
        crate::zygote::serve(&control, connections)
    } else {
        match nix::unistd::write(&control, &[READY]) {
            Ok(1) => receive(&control),
            Ok(_) | Err(nix::errno::Errno::EPIPE) => Ok(None),
            Err(e) => Err(e.into()),
        }
    };
    let (conn, changes) = match got {
        Ok(Some(handed)) => handed,
        Ok(None) => std::process::exit(0),
        Err(e) => {
            crate::die::warn(
                "tcpserver -a",
                "fatal",
                &format!("bad hand-over: {}", crate::die::errstr(&e)),
            );
            std::process::exit(111)
        }
    };
    std::mem::forget(control); // its numbers 0 and 1 are reused just below
    for target in [0, 1] {
        // SAFETY: dup2 onto 0 and 1 closes the control socket there and puts the
        // connection in its place (close-on-exec cleared, as tcpserver's exec would).
        if unsafe { libc::dup2(conn.as_raw_fd(), target) } < 0 {
            std::process::exit(111);
        }
    }
    drop(conn);
    use std::os::unix::ffi::OsStrExt;
    for (name, value) in changes {
        let name = std::ffi::OsStr::from_bytes(&name);
        // SAFETY: still the single-threaded start.
        unsafe {
            match value {
                Some(v) => std::env::set_var(name, std::ffi::OsStr::from_bytes(&v)),
                None => std::env::remove_var(name),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::socket::{
        AddressFamily, ControlMessage, MsgFlags, SockFlag, SockType, sendmsg, socketpair,
    };

    fn changes() -> Vec<Change> {
        vec![
            (b"TCPREMOTEIP".to_vec(), Some(b"192.0.2.7".to_vec())),
            (b"RELAYCLIENT".to_vec(), Some(Vec::new())),
            (b"X".to_vec(), Some(b"a=b".to_vec())),
            (b"TCPREMOTEHOST".to_vec(), None),
        ]
    }

    #[test]
    fn changes_survive_the_wire_and_nothing_else_decodes() {
        let wire = encode(&changes());
        assert_eq!(
            wire,
            b"+TCPREMOTEIP=192.0.2.7\0+RELAYCLIENT=\0+X=a=b\0-TCPREMOTEHOST\0"
        );
        assert_eq!(decode(&wire), Some(changes()));
        assert_eq!(decode(b""), Some(Vec::new()));
        for bad in [
            &b"+A=1"[..],
            b"A=1\0",
            b"+=1\0",
            b"+A\0",
            b"-A=1\0",
            b"-\0",
            b"\0",
            b"+A=1\0\0",
        ] {
            assert_eq!(decode(bad), None, "{bad:?}");
        }
    }

    fn pair() -> (OwnedFd, OwnedFd) {
        socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .unwrap()
    }

    #[test]
    fn a_hand_over_brings_one_descriptor_and_the_changes() {
        let (ours, theirs) = pair();
        let (conn, mut far) = std::os::unix::net::UnixStream::pair().unwrap();
        let wire = encode(&changes());
        let fds = [conn.as_raw_fd()];
        let cmsg = [ControlMessage::ScmRights(&fds)];
        sendmsg::<()>(
            ours.as_raw_fd(),
            &[io::IoSlice::new(&wire)],
            &cmsg,
            MsgFlags::empty(),
            None,
        )
        .unwrap();
        drop(conn);
        let (got, ch) = receive(&theirs).unwrap().unwrap();
        assert_eq!(ch, changes());
        use std::io::{Read, Write};
        let mut got = std::fs::File::from(got);
        got.write_all(b"hello").unwrap();
        drop(got);
        let mut s = String::new();
        far.read_to_string(&mut s).unwrap();
        assert_eq!(s, "hello");
        // tcpserver gone: no hand-over
        drop(ours);
        assert!(receive(&theirs).unwrap().is_none());
    }

    #[test]
    fn reports_survive_the_wire_and_nothing_else_decodes() {
        for r in [
            Report::Ready,
            Report::Forking,
            Report::Took(4_000_000),
            Report::Ended(77, -1),
            Report::Ended(1, 0x0600),
        ] {
            assert_eq!(Report::decode(&r.encode()), Some(r));
        }
        for bad in [
            &b""[..],
            b"RR",
            b"T123",
            b"T12345",
            b"E1234567",
            b"E123456789",
            b"X",
        ] {
            assert_eq!(Report::decode(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_packet_without_a_descriptor_is_refused() {
        let (ours, theirs) = pair();
        nix::unistd::write(&ours, b"+A=1\0").unwrap();
        assert!(receive(&theirs).is_err());
    }
}
