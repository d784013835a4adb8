//! The filter chain served by a process that stays up: qmail-qfilterd, its protocol and
//! its client (doc/filter-chain.md, "qmail-qfilterd").
//!
//! qmail-qfilter is a program started per message, set-user-id qmailf: its exec and the
//! C library's start cost more CPU than the chain's own work. For qmail-smtpd (qmaild),
//! whose chain is the hot path, qmail-qfilterd runs as qmailf from its own service and
//! forks one child per message; the child runs the chain exactly as qmail-qfilter does
//! ([`crate::runner`]) and answers with the file to queue. qmail-smtpd then queues it
//! itself, as it queues a message without filters (qmail-queued, else qmail-queue), so
//! the Received line, `intd/N` and the `qp` are those of a message without a chain.
//! qmail-qfilter stays the program interface: a server that is down, refuses or does
//! not greet means qmail-smtpd runs qmail-qfilter as before, with nothing lost.
//!
//! Wire (a `SOCK_SEQPACKET` socket at `HOME/qfilterd/socket`, one message per
//! connection, each step one packet):
//!
//! 1. server -> client: [`GREETING`], sent by the child forked for this connection;
//! 2. client -> server: `R` then the caller's variables (`NAME=VALUE\0`..., only
//!    [`crate::runner::KEPT`] names are used), with two descriptors (`SCM_RIGHTS`): the
//!    message and the envelope, each a sealed memory file ([`crate::spool`]);
//! 3. server -> client: the end ([`Answer`]): `Q` with the sealed memory file to queue,
//!    `X` dropped (accepted, nothing to queue), `E` and one byte (qmail-queue's exit
//!    code), or `D`/`Z` and a reason text (a filter's own, permanent or temporary).
//!
//! Each side takes only sealed memory files from the other ([`sealed`]): a read of one
//! can neither block nor see the content change under it.

use crate::envelope::Envelope;
use crate::run::Identity;
use crate::runner::{self, End, Settings};
use queue::client::QqFailure;
use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Seek};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The byte the child for a connection greets with.
pub const GREETING: u8 = b'F';

/// The most bytes of variables one request carries.
pub const MAX_VARIABLES: usize = 64 * 1024;

/// How long a client waits for the greeting before it runs qmail-qfilter instead.
pub const GREETING_WAIT: Duration = Duration::from_secs(5);

/// How long the child waits for the request after its greeting (the client sends it
/// at once: it connects only with the whole message in hand).
pub const REQUEST_WAIT: Duration = Duration::from_secs(30);

/// How long a client waits for the end: past any `control/filtertimeout` a site sets,
/// since the child kills the chain at that limit and answers.
pub const ANSWER_WAIT: Duration = Duration::from_secs(3 * 3600);

/// The exit code of a child whose linked-in filter crashed: the server then starts
/// afresh (doc/filter-chain.md says why).
pub const EXIT_RENEW: i32 = 100;

/// qmail-qfilterd's socket for the installation at `home`.
pub fn socket_path(home: &Path) -> PathBuf {
    home.join("qfilterd/socket")
}

/// Whether `file` is a memory file sealed against writing, growing and shrinking.
pub fn sealed(file: &impl AsFd) -> bool {
    use nix::fcntl::{FcntlArg, SealFlag, fcntl};
    let need = SealFlag::F_SEAL_WRITE | SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW;
    fcntl(file, FcntlArg::F_GET_SEALS).is_ok_and(|s| SealFlag::from_bits_truncate(s).contains(need))
}

/// The chain's end as the client hears it.
#[derive(Debug)]
pub enum Answer {
    /// Queue this (sealed, from its start).
    Queue(File),
    /// Accepted and dropped by a filter.
    Drop,
    /// Refused: qmail-queue's exit code or a filter's reason.
    Refused(QqFailure),
    /// The server's child ended without an answer: a temporary failure.
    Gone,
}

/// A connection to qmail-qfilterd that has been greeted.
pub struct Client {
    socket: OwnedFd,
}

fn seqpacket() -> io::Result<OwnedFd> {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, socket};
    Ok(socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?)
}

/// Wait at most `wait` for `fd` to be readable (or at its end).
fn readable(fd: &OwnedFd, wait: Duration) -> bool {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let ms = u32::try_from(wait.as_millis()).unwrap_or(u32::MAX);
    let timeout = PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX);
    loop {
        let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, timeout) {
            Ok(n) => return n > 0,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return false,
        }
    }
}

/// One packet and the descriptors it carries (at most `max_fds`), close-on-exec.
/// `None` at the end of the connection or on an error, a truncated packet or too many
/// descriptors.
fn receive(fd: &OwnedFd, max_len: usize, max_fds: usize) -> Option<(Vec<u8>, Vec<OwnedFd>)> {
    use nix::sys::socket::{ControlMessageOwned, MsgFlags, recv, recvmsg};
    // the packet's own length first (MSG_TRUNC on a peek gives it whole), so that the
    // buffer is what the packet needs, not the most it may be (no 64 KiB to clear
    // and fault in per message)
    let len = loop {
        match recv(
            fd.as_raw_fd(),
            &mut [],
            MsgFlags::MSG_PEEK | MsgFlags::MSG_TRUNC,
        ) {
            Ok(n) => break n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return None,
        }
    };
    let mut buf = vec![0u8; len.min(max_len) + 1];
    // room for as many descriptors as one message can carry (SCM_MAX_FD), so that a
    // peer sending too many cannot truncate the control data: a truncated one would
    // leave the descriptors it did carry open and unowned
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 253]);
    loop {
        let mut iov = [io::IoSliceMut::new(&mut buf)];
        match recvmsg::<()>(
            fd.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Ok(msg) => {
                let mut raw = Vec::new();
                if let Ok(cmsgs) = msg.cmsgs() {
                    for c in cmsgs {
                        if let ControlMessageOwned::ScmRights(r) = c {
                            raw.extend(r);
                        }
                    }
                }
                // SAFETY: the kernel gave us these descriptors; each is ours alone.
                let fds: Vec<OwnedFd> = raw
                    .into_iter()
                    .map(|n| unsafe { OwnedFd::from_raw_fd(n) })
                    .collect();
                let cut = msg
                    .flags
                    .intersects(MsgFlags::MSG_TRUNC | MsgFlags::MSG_CTRUNC);
                let len = msg.bytes;
                if cut || len == 0 || len > max_len || fds.len() > max_fds {
                    return None;
                }
                buf.truncate(len);
                return Some((buf, fds));
            }
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return None,
        }
    }
}

/// Send one packet with `fds`, without SIGPIPE.
fn send(fd: &OwnedFd, bytes: &[u8], fds: &[std::os::fd::RawFd]) -> io::Result<()> {
    use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};
    let rights = [ControlMessage::ScmRights(fds)];
    let cmsgs: &[ControlMessage] = if fds.is_empty() { &[] } else { &rights };
    loop {
        match sendmsg::<()>(
            fd.as_raw_fd(),
            &[io::IoSlice::new(bytes)],
            cmsgs,
            MsgFlags::MSG_NOSIGNAL,
            None,
        ) {
            Ok(_) => return Ok(()),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

impl Client {
    /// Connect to the qmail-qfilterd at `socket` and wait for its greeting, at most
    /// [`GREETING_WAIT`]; `None` when there is none (no server, not served, at capacity):
    /// the caller then runs qmail-qfilter.
    pub fn connect(socket: &Path) -> Option<Client> {
        let fd = queue::client::connect_at_once(socket, nix::sys::socket::SockType::SeqPacket)?;
        if !readable(&fd, GREETING_WAIT) {
            return None;
        }
        match receive(&fd, 1, 0) {
            Some((b, _)) if b == [GREETING] => Some(Client { socket: fd }),
            _ => None,
        }
    }

    /// Run the chain over `message` with `envelope` (both sealed memory files) and the
    /// caller's `variables`; the server's end. A message or envelope that is not sealed
    /// is not sent (the server would refuse it): [`Answer::Refused`] with 53.
    pub fn filter(self, message: &File, envelope: &File, variables: &[(&str, OsString)]) -> Answer {
        if !sealed(message) || !sealed(envelope) {
            return Answer::Refused(queue::client::failure_for_exit(53));
        }
        let request = request(variables);
        if request.len() > MAX_VARIABLES
            || send(
                &self.socket,
                &request,
                &[message.as_raw_fd(), envelope.as_raw_fd()],
            )
            .is_err()
            || !readable(&self.socket, ANSWER_WAIT)
        {
            return Answer::Gone;
        }
        match receive(&self.socket, 1 + queue::client::MAX_REASON + 1, 1) {
            Some((answer, fds)) => decode(&answer, fds),
            None => Answer::Gone,
        }
    }
}

/// The request packet's bytes for the caller's `variables`.
fn request(variables: &[(&str, OsString)]) -> Vec<u8> {
    let mut request = vec![b'R'];
    for (name, value) in variables {
        request.extend_from_slice(name.as_bytes());
        request.push(b'=');
        request.extend_from_slice(value.as_bytes());
        request.push(0);
    }
    request
}

/// The answer a packet (and the descriptor it carried) stands for; anything malformed
/// is [`Answer::Gone`], a temporary failure.
fn decode(answer: &[u8], mut fds: Vec<OwnedFd>) -> Answer {
    let fd = fds.pop();
    if !fds.is_empty() {
        return Answer::Gone;
    }
    match (answer.first(), fd) {
        (Some(b'Q'), Some(fd)) if answer.len() == 1 => {
            let mut file = File::from(fd);
            if sealed(&file) && file.rewind().is_ok() {
                Answer::Queue(file)
            } else {
                Answer::Gone
            }
        }
        (Some(b'X'), None) if answer.len() == 1 => Answer::Drop,
        (Some(b'E'), None) if answer.len() == 2 => {
            Answer::Refused(queue::client::failure_for_exit(i32::from(answer[1])))
        }
        (Some(b'D' | b'Z'), None) => match queue::client::reason(answer) {
            Some(r) => Answer::Refused(r),
            None => Answer::Refused(queue::client::failure_for_exit(71)),
        },
        _ => Answer::Gone,
    }
}

/// The answer packet for `end` and the descriptor it carries.
fn encode(end: &End) -> (Vec<u8>, Option<std::os::fd::RawFd>) {
    match end {
        End::Queue(f) => (vec![b'Q'], Some(f.as_raw_fd())),
        End::Drop => (vec![b'X'], None),
        End::Exit(code) => (vec![b'E', u8::try_from(*code).unwrap_or(81)], None),
        End::Reason(r) => {
            let mut a = vec![if r.permanent { b'D' } else { b'Z' }];
            a.extend(r.text.bytes().take(queue::client::MAX_REASON));
            (a, None)
        }
    }
}

/// The caller's variables of a request (`NAME=VALUE\0`...), only [`runner::KEPT`]
/// names; `None` for anything malformed.
fn variables(bytes: &[u8]) -> Option<Vec<(String, OsString)>> {
    let body = match bytes {
        [] => return Some(Vec::new()),
        [.., 0] => &bytes[..bytes.len() - 1],
        _ => return None,
    };
    let mut out = Vec::new();
    for entry in body.split(|&b| b == 0) {
        let eq = entry.iter().position(|&b| b == b'=')?;
        let name = std::str::from_utf8(&entry[..eq]).ok()?;
        if runner::KEPT.contains(&name) {
            out.push((
                name.to_string(),
                OsString::from_vec(entry[eq + 1..].to_vec()),
            ));
        }
    }
    Some(out)
}

/// The child's whole job for one connection: greet, take the request, run the chain
/// as `identity` (found once, when the server started), answer. Returns its exit code: [`EXIT_RENEW`] after a linked-in filter crashed, 0
/// otherwise, 111 when the request never came whole (nothing was run).
pub fn serve_one(
    me: &str,
    home: &Path,
    identity: Option<Identity>,
    conn: OwnedFd,
    scan: &dyn Fn(),
) -> i32 {
    if send(&conn, &[GREETING], &[]).is_err() || !readable(&conn, REQUEST_WAIT) {
        return 111;
    }
    let Some((request, fds)) = receive(&conn, MAX_VARIABLES, 2) else {
        return 111;
    };
    let vars = match request.split_first() {
        Some((b'R', rest)) => variables(rest),
        _ => None,
    };
    let (Some(vars), Ok([message, envelope])) = (vars, <[OwnedFd; 2]>::try_from(fds)) else {
        qsys::die::warn(me, "warning", "a malformed request: nothing run");
        return 111;
    };
    let (message, envelope) = (File::from(message), File::from(envelope));
    let (end, report) = chain(me, home, identity, message, envelope, &vars, scan);
    let (bytes, fd) = encode(&end);
    let fds: Vec<_> = fd.into_iter().collect();
    if let Err(e) = send(&conn, &bytes, &fds) {
        qsys::die::warn(me, "warning", &format!("unable to answer: {e}"));
    }
    if report.linked_crash { EXIT_RENEW } else { 0 }
}

/// The chain over a request's message and envelope, as qmail-qfilter runs it.
fn chain(
    me: &str,
    home: &Path,
    identity: Option<Identity>,
    message: File,
    mut envelope: File,
    vars: &[(String, OsString)],
    scan: &dyn Fn(),
) -> (End, runner::Report) {
    let none = runner::Report::default();
    if !sealed(&message) || !sealed(&envelope) {
        qsys::die::warn(me, "warning", "a request with files that are not sealed");
        return (End::Exit(53), none);
    }
    let read: Result<Envelope, _> = crate::envelope::read(&mut io::BufReader::new(&mut envelope));
    let envelope_parsed = match read {
        Ok(e) => e,
        Err(e) => return (End::Exit(e.exit_code()), none),
    };
    let filters = match runner::control_filters(home) {
        Ok(f) => f,
        Err(t) => {
            qsys::die::warn(me, "fatal", &t.why);
            return (End::Exit(t.code), none);
        }
    };
    let mut message = message;
    if filters.is_empty() {
        return match message.rewind() {
            Ok(_) => (End::Queue(message), none),
            Err(_) => (End::Exit(53), none),
        };
    }
    let settings = match Settings::load_for(home, filters, identity) {
        Ok(s) => s,
        Err(t) => {
            qsys::die::warn(me, "fatal", &t.why);
            return (End::Exit(t.code), none);
        }
    };
    let size = message.metadata().map(|m| m.len()).unwrap_or(0);
    let env = runner::filter_env(home, &envelope_parsed, |k| {
        vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    });
    runner::run_chain(me, home, &settings, &env, message, size, &envelope, scan)
}

/// The most children (messages in the chain) at once; the next connection waits in
/// the listen queue, and its client runs qmail-qfilter after [`GREETING_WAIT`].
pub const MAX_CHILDREN: usize = 120;

/// The listening socket of qmail-qfilterd at `home`: made as `socket.new`, mode 0660,
/// given to `group` (nofiles, which qmaild is in) when one is named, renamed over
/// `socket`; and the uid it serves, the owner of `HOME/smtpd` (qmaild). Run by root,
/// it first checks that HOME/qfilterd is root's alone.
pub fn listen(home: &Path, group: Option<u32>) -> Result<(OwnedFd, u32), String> {
    use nix::sys::socket::{Backlog, UnixAddr, bind, listen};
    use std::os::unix::fs::MetadataExt;
    let err = |what: &str, e: &dyn std::fmt::Display| format!("{what}: {e}");
    let served = queue::writer::served_uid(home).map_err(|e| {
        err(
            "unable to stat HOME/smtpd (its owner is the user served)",
            &e,
        )
    })?;
    let socket = socket_path(home);
    let new = socket.with_extension("new");
    if nix::unistd::geteuid().is_root() {
        // root makes the socket: its directory must be root's alone (the installer's
        // 2750), or a filter could have put a link where root is about to work
        let dir = std::fs::symlink_metadata(home.join("qfilterd"))
            .map_err(|e| err("unable to stat HOME/qfilterd", &e))?;
        if !dir.is_dir() || dir.uid() != 0 || dir.mode() & 0o022 != 0 {
            return Err(
                "HOME/qfilterd is not a directory of root's that only root may write \
                        (run qmail-install)"
                    .into(),
            );
        }
    }
    match std::fs::remove_file(&new) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(err("unable to remove qfilterd/socket.new", &e)),
    }
    let fd = seqpacket().map_err(|e| err("unable to make a socket", &e))?;
    let addr = UnixAddr::new(&new).map_err(|e| err("bad socket path", &e))?;
    // mode 0660 from the start (no chmod by path afterwards)
    let umask = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o117));
    let bound = bind(fd.as_raw_fd(), &addr);
    nix::sys::stat::umask(umask);
    bound.map_err(|e| err("unable to bind qfilterd/socket.new", &e))?;
    // the group that reaches it, nofiles, whatever the directory gives (lchown: the
    // name is the socket just made, never a link followed)
    if let Some(group) = group {
        std::os::unix::fs::lchown(&new, None, Some(group))
            .map_err(|e| err("unable to give qfilterd/socket.new to group nofiles", &e))?;
    }
    listen(&fd, Backlog::new(128).unwrap_or(Backlog::MAXCONN))
        .map_err(|e| err("unable to listen", &e))?;
    std::fs::rename(&new, &socket).map_err(|e| err("unable to rename qfilterd/socket", &e))?;
    Ok((fd, served))
}

/// The peer's uid and pid (`SO_PEERCRED`, the kernel's word taken at connect).
fn peer(fd: &OwnedFd) -> Option<(u32, i32)> {
    nix::sys::socket::getsockopt(fd, nix::sys::socket::sockopt::PeerCredentials)
        .ok()
        .map(|c| (c.uid(), c.pid()))
}

/// Reap every child that has ended, without waiting unless `block`: how many (`None`
/// when there is no child left at all), and whether one asked for a fresh start
/// ([`EXIT_RENEW`]) or crashed.
fn reap(block: bool) -> (Option<usize>, bool) {
    use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
    let (mut n, mut renew) = (0, false);
    let mut flags = if block {
        None
    } else {
        Some(WaitPidFlag::WNOHANG)
    };
    loop {
        match waitpid(None, flags) {
            Ok(WaitStatus::Exited(_, code)) => {
                n += 1;
                renew |= code == EXIT_RENEW;
            }
            Ok(WaitStatus::Signaled(_, signal, _)) => {
                // the child itself crashed: its code is a copy of ours as well
                n += 1;
                renew |= qsys::crash_signal(signal as i32);
            }
            Ok(WaitStatus::StillAlive) => return (Some(n), renew),
            Err(nix::errno::Errno::ECHILD) => return (None, renew),
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(_) => return (Some(n), renew),
        }
        flags = Some(WaitPidFlag::WNOHANG);
    }
}

/// Serve connections on `listener` from the uid `served` alone, one forked child each
/// ([`serve_one`]), at most [`MAX_CHILDREN`] at once. Returns (for the program to exit
/// and be started afresh by supervise) once a child reported a crash of linked-in
/// code; an error when accepting fails.
pub fn serve(
    me: &str,
    home: &Path,
    identity: Option<Identity>,
    listener: OwnedFd,
    served: u32,
    scan: &dyn Fn(),
) -> io::Result<()> {
    use nix::sys::socket::{SockFlag, accept4};
    let mut children = 0usize;
    loop {
        let (ended, renew) = reap(children >= MAX_CHILDREN);
        children = match ended {
            Some(n) => children.saturating_sub(n),
            None => 0,
        };
        if renew {
            qsys::die::warn(me, "status", "linked-in code crashed: starting afresh");
            return Ok(());
        }
        if children >= MAX_CHILDREN || !readable(&listener, Duration::from_secs(1)) {
            continue;
        }
        let conn = match accept4(listener.as_raw_fd(), SockFlag::SOCK_CLOEXEC) {
            // SAFETY: accept4 returned a new descriptor that nothing else owns.
            Ok(n) => unsafe { OwnedFd::from_raw_fd(n) },
            Err(nix::errno::Errno::EINTR | nix::errno::Errno::ECONNABORTED) => continue,
            Err(
                nix::errno::Errno::EMFILE | nix::errno::Errno::ENFILE | nix::errno::Errno::ENOMEM,
            ) => {
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let client = match peer(&conn) {
            Some((uid, pid)) if uid == served => pid,
            _ => continue, // closed without a greeting: that caller runs qmail-qfilter
        };
        // SAFETY: this process is single-threaded; the child only runs the chain and
        // exits, the way qmail-qfilter's own children are forked.
        match unsafe { nix::unistd::fork() } {
            Ok(nix::unistd::ForkResult::Child) => {
                drop(listener);
                // the chain's log lines name the qmail-smtpd process they serve
                let me = format!("{me}: client pid {client}");
                let code = serve_one(&me, home, identity, conn, scan);
                // SAFETY: _exit ends this child at once; it has nothing buffered (log
                // lines are written whole, unbuffered) and runs no exit handler of the
                // server's
                unsafe { libc::_exit(code) }
            }
            Ok(nix::unistd::ForkResult::Parent { .. }) => children += 1,
            Err(e) => qsys::die::warn(me, "warning", &format!("unable to fork: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    fn pair() -> (OwnedFd, OwnedFd) {
        use nix::sys::socket::{AddressFamily, SockFlag, SockType, socketpair};
        socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .unwrap()
    }

    /// A home for the server's child: control/filters with `filters`.
    fn home(filters: &str) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("control")).unwrap();
        std::fs::write(d.path().join("control/filters"), filters).unwrap();
        d
    }

    fn sealed_with(bytes: &[u8]) -> File {
        crate::spool::sealed_file(bytes).unwrap()
    }

    /// One connection served in this thread (the packets wait in the socket): the
    /// answer and the child's exit code.
    fn serve(
        home: &Path,
        message: &File,
        envelope: &File,
        vars: &[(&str, OsString)],
        scan: &dyn Fn(),
    ) -> (Answer, i32) {
        let (client, server) = pair();
        send(
            &client,
            &request(vars),
            &[message.as_raw_fd(), envelope.as_raw_fd()],
        )
        .unwrap();
        let identity = runner::identity(home).unwrap();
        let code = serve_one("test", home, identity, server, scan);
        let (greeting, _) = receive(&client, 16, 0).unwrap();
        assert_eq!(greeting, [GREETING]);
        let answer = match receive(&client, 1024, 1) {
            Some((bytes, fds)) => decode(&bytes, fds),
            None => Answer::Gone,
        };
        (answer, code)
    }

    #[test]
    fn variables_keep_only_the_connections_own() {
        let v = variables(b"TCPREMOTEIP=1.2.3.4\0LD_PRELOAD=/x\0SMTPHELO=a=b\0").unwrap();
        assert_eq!(
            v,
            vec![
                ("TCPREMOTEIP".to_string(), OsString::from("1.2.3.4")),
                ("SMTPHELO".to_string(), OsString::from("a=b")),
            ]
        );
        assert_eq!(variables(b"").unwrap(), vec![]);
        assert!(variables(b"TCPREMOTEIP=1").is_none(), "no final NUL");
        assert!(variables(b"NOEQUALS\0").is_none());
    }

    #[test]
    fn answers_round_trip_and_anything_else_is_gone() {
        let (bytes, _) = encode(&End::Drop);
        assert!(matches!(decode(&bytes, vec![]), Answer::Drop));
        let (bytes, _) = encode(&End::Exit(31));
        match decode(&bytes, vec![]) {
            Answer::Refused(f) => assert!(f.permanent && !f.custom),
            a => panic!("{a:?}"),
        }
        let reason = QqFailure {
            permanent: false,
            text: "busy (#4.3.0)".into(),
            custom: true,
        };
        let (bytes, _) = encode(&End::Reason(reason.clone()));
        match decode(&bytes, vec![]) {
            Answer::Refused(f) => assert_eq!(f, reason),
            a => panic!("{a:?}"),
        }
        // a file to queue that is not sealed, or no file at all, is no answer
        let open = crate::spool::memory_file(c"t").unwrap();
        assert!(matches!(decode(b"Q", vec![open.into()]), Answer::Gone));
        assert!(matches!(decode(b"Q", vec![]), Answer::Gone));
        assert!(matches!(decode(b"?", vec![]), Answer::Gone));
        assert!(matches!(decode(b"", vec![]), Answer::Gone));
    }

    #[test]
    fn a_chain_runs_and_its_output_comes_back_sealed() {
        let h = home("/bin/cat\n");
        let message = sealed_with(b"Subject: x\n\nbody\n");
        let envelope = sealed_with(b"Fa@b\0Tc@d\0\0");
        let (answer, code) = serve(h.path(), &message, &envelope, &[], &|| {});
        assert_eq!(code, 0);
        let Answer::Queue(mut f) = answer else {
            panic!("{answer:?}")
        };
        let mut back = String::new();
        f.read_to_string(&mut back).unwrap();
        assert_eq!(back, "Subject: x\n\nbody\n");
        assert!(f.write_all(b"more").is_err(), "sealed");
        // no filter: the message comes back as it went
        let h = home("# none\n");
        let (answer, _) = serve(h.path(), &message, &envelope, &[], &|| {});
        assert!(matches!(answer, Answer::Queue(_)), "{answer:?}");
    }

    #[test]
    fn files_that_are_not_sealed_are_refused_unread() {
        let h = home("/bin/cat\n");
        let mut open = crate::spool::memory_file(c"m").unwrap();
        open.write_all(b"x\n").unwrap();
        let envelope = sealed_with(b"Fa@b\0Tc@d\0\0");
        let (answer, _) = serve(h.path(), &open, &envelope, &[], &|| {});
        match answer {
            Answer::Refused(f) => assert_eq!(f, queue::client::failure_for_exit(53)),
            a => panic!("{a:?}"),
        }
        // a request without its two files runs nothing
        let (client, server) = pair();
        send(&client, b"R", &[]).unwrap();
        assert_eq!(serve_one("test", h.path(), None, server, &|| {}), 111);
    }

    #[test]
    fn a_crash_of_linked_in_code_asks_for_a_fresh_start() {
        let h = home("qmail-scan\n");
        let message = sealed_with(b"Subject: x\n\nbody\n");
        let envelope = sealed_with(b"Fa@b\0Tc@d\0\0");
        let crash = || {
            // SAFETY: raise only sends a signal to this (forked) process.
            unsafe { libc::raise(libc::SIGSEGV) };
        };
        let (answer, code) = serve(h.path(), &message, &envelope, &[], &crash);
        assert_eq!(code, EXIT_RENEW);
        match answer {
            Answer::Refused(f) => assert_eq!(f.text, "content filter failed (#4.3.0)"),
            a => panic!("{a:?}"),
        }
    }
}
