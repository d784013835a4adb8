//! Running qmail-queue from an injecting program (qmail's `qmail.c`): qmail-inject,
//! sendmail, qmail-local forwards, qmail-send bounces and later qmail-smtpd.
//!
//! `$QMAILQUEUE`, when set and non-empty, names the program to run instead of
//! `HOME/bin/qmail-queue` (content filters rely on this). The message goes to the
//! child's fd 0, the envelope to its fd 1; the exit code is mapped to qmail's texts,
//! each with its enhanced status code.
//!
//! A filter's own reason (notqmail's convention, DESIGN section 10): the child exits 82
//! after writing one line to its fd 6, `D<text>` (permanent) or `Z<text>` (temporary).
//! The child's fd 6 is a pipe read after it exits; the line is bounded and reduced to
//! printable ASCII ([`reason`]), since it goes on the SMTP wire and into logs.
//!
//! qmail-smtpd first offers a message to qmail-queued ([`inject_queued`], the protocol of
//! [`crate::writer`]) when its queue program is the installation's plain qmail-queue
//! ([`queued_socket`]); every failure before the message is handed over (no socket,
//! EACCES, no greeting within [`GREETING_WAIT`]) gives the message back for qmail-queue,
//! so a writer that is down costs speed, never a message. qmail-qfilter offers the
//! message that leaves its chain the same way ([`offer_queued`], which answers in
//! qmail-queue's exit codes; doc/queue-writer.md section 7).

use std::io::{self, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

/// Why qmail-queue did not accept a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QqFailure {
    /// Permanent (5xx, bounce) rather than temporary (4xx, retry).
    pub permanent: bool,
    /// qmail's text, e.g. `qq write error or disk full (#4.3.0)`.
    pub text: String,
    /// The text is a filter's own (exit 82 + fd 6), with its own `(#x.y.z)` if any.
    pub custom: bool,
}

impl std::fmt::Display for QqFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// qmail's mapping of a qmail-queue exit code to a failure (`qmail_close`).
pub fn failure_for_exit(code: i32) -> QqFailure {
    let (permanent, text) = match code {
        11 | 115 => (true, "envelope address too long for qq (#5.1.3)"),
        31 => (true, "mail server permanently rejected message (#5.3.0)"),
        51 => (false, "qq out of memory (#4.3.0)"),
        52 => (false, "qq timeout (#4.3.0)"),
        53 => (false, "qq write error or disk full (#4.3.0)"),
        54 => (false, "qq read error (#4.3.0)"),
        55 => (false, "qq unable to read configuration (#4.3.0)"),
        56 => (false, "qq trouble making network connection (#4.3.0)"),
        61 => (false, "qq trouble in home directory (#4.3.0)"),
        62..=66 => (false, "qq trouble creating files in queue (#4.3.0)"),
        71 => (false, "mail server temporarily rejected message (#4.3.0)"),
        72 => (false, "connection to mail server timed out (#4.4.1)"),
        73 => (false, "connection to mail server rejected (#4.4.1)"),
        74 => (false, "communication with mail server failed (#4.4.2)"),
        81 | 91 => (false, "qq internal bug (#4.3.0)"),
        120 => (false, "unable to exec qq (#4.3.0)"),
        12..=40 => (true, "qq permanent problem (#5.3.0)"),
        _ => (false, "qq temporary problem (#4.3.0)"),
    };
    QqFailure {
        permanent,
        text: text.to_string(),
        custom: false,
    }
}

/// The exit code with which a child gives its own reason on fd 6.
pub const EXIT_REASON: i32 = 82;

/// Longest reason text kept (an SMTP reply line is at most 512 bytes with its code).
pub const MAX_REASON: usize = 400;

/// A reason line read from a child's fd 6: its first line, `D` (permanent) or `Z`
/// (temporary) then the text; bytes outside printable ASCII become `?`, the text is cut
/// at [`MAX_REASON`]. `None` when there is no such line or its text is empty.
pub fn reason(bytes: &[u8]) -> Option<QqFailure> {
    let line = bytes.split(|&b| b == b'\n').next().unwrap_or(b"");
    let (&kind, rest) = line.split_first()?;
    let permanent = match kind {
        b'D' => true,
        b'Z' => false,
        _ => return None,
    };
    let text: String = rest
        .iter()
        .take(MAX_REASON)
        .map(|&b| {
            if (0x20..0x7f).contains(&b) {
                b as char
            } else {
                '?'
            }
        })
        .collect();
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    Some(QqFailure {
        permanent,
        text: text.to_string(),
        custom: true,
    })
}

/// Whatever a child wrote to the reason pipe before it exited, at most 1 KiB, without
/// blocking (a writer that is still alive, a grandchild, cannot hold the caller up).
pub fn read_reason(r: &OwnedFd) -> Vec<u8> {
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    let _ = fcntl(r, FcntlArg::F_SETFL(OFlag::O_NONBLOCK));
    let mut buf = vec![0u8; 1024];
    let mut n = 0;
    while n < buf.len() {
        match nix::unistd::read(r, &mut buf[n..]) {
            Ok(0) | Err(_) => break,
            Ok(k) => n += k,
        }
    }
    buf.truncate(n);
    buf
}

/// The qmail-queue program for the installation at `home`, honouring `$QMAILQUEUE`.
pub fn program(home: &Path) -> PathBuf {
    match std::env::var_os("QMAILQUEUE") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => home.join("bin/qmail-queue"),
    }
}

/// The qmail-queue program for mail entering the system (qmail-smtpd, sendmail,
/// qmail-inject): `$QMAILQUEUE` when set and non-empty (a tcprules entry wins), else
/// `HOME/bin/qmail-qfilter` when `control/filters` names at least one filter, else
/// `HOME/bin/qmail-queue`. Forwards and bounces use [`program`]: their mail went through
/// the chain when it came in. An unreadable `control/filters` also chooses the chain,
/// which then fails temporarily: mail never skips the filters by accident.
pub fn entry_program(home: &Path) -> PathBuf {
    if let Some(p) = std::env::var_os("QMAILQUEUE").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let filters = control::Controls::new(home).list("filters");
    match filters {
        Ok(None) => home.join("bin/qmail-queue"),
        Ok(Some(lines)) if lines.iter().all(|l| l.trim().is_empty()) => {
            home.join("bin/qmail-queue")
        }
        _ => home.join("bin/qmail-qfilter"),
    }
}

/// Run `program` with the message written by `write_message` and the given envelope.
/// Returns the child's pid (qmail's "qp") on success.
///
/// SIGCHLD gets its default disposition first: a caller started with SIGCHLD ignored
/// (swaks `--pipe`, some Perl scripts) would otherwise have the kernel reap qmail-queue,
/// the wait would fail, and a message that was queued would be reported as failed and
/// sent again.
pub fn inject<F>(
    program: &Path,
    sender: &[u8],
    recipients: &[impl AsRef<[u8]>],
    write_message: F,
) -> Result<u32, QqFailure>
where
    F: FnOnce(&mut dyn Write) -> io::Result<()>,
{
    inject_env(program, &[], sender, recipients, write_message)
}

/// [`inject`] with changes to the child's environment: `(name, Some(value))` sets a
/// variable, `(name, None)` removes it (qmail-smtpd passes `SMTPAUTHUSER` to the filter
/// chain this way, and removes one it did not set).
pub fn inject_env<F>(
    program: &Path,
    env: &[(&str, Option<&str>)],
    sender: &[u8],
    recipients: &[impl AsRef<[u8]>],
    write_message: F,
) -> Result<u32, QqFailure>
where
    F: FnOnce(&mut dyn Write) -> io::Result<()>,
{
    let temp = |text: &str| QqFailure {
        permanent: false,
        text: text.to_string(),
        custom: false,
    };
    // SAFETY: installs the default disposition, no handler.
    unsafe {
        let _ = nix::sys::signal::signal(
            nix::sys::signal::Signal::SIGCHLD,
            nix::sys::signal::SigHandler::SigDfl,
        );
    }
    let pipe = || {
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(|_| temp("unable to create pipe (#4.3.0)"))
    };
    let (msg_r, msg_w): (OwnedFd, OwnedFd) = pipe()?;
    let (env_r, env_w): (OwnedFd, OwnedFd) = pipe()?;
    let (reason_r, reason_w): (OwnedFd, OwnedFd) = pipe()?;
    let pid = spawn_qq(program, env, &msg_r, &env_r, &reason_w)
        .map_err(|_| temp("unable to exec qq (#4.3.0)"))?;
    drop((msg_r, env_r, reason_w));
    let qp = pid.as_raw() as u32;
    // The child may die early (e.g. a filter rejecting); keep going to read its code.
    let mut message = std::fs::File::from(msg_w);
    let write_ok = write_message(&mut message)
        .and_then(|_| message.flush())
        .is_ok();
    drop(message);
    // Without a complete message, send no envelope: qmail-queue then sees EOF on
    // fd 1 and refuses (54), so a truncated message is never queued.
    let mut env_ok = false;
    if write_ok {
        let envelope = crate::envelope::qq_envelope(sender, recipients);
        let mut env_w = std::fs::File::from(env_w);
        env_ok = env_w.write_all(&envelope).is_ok();
    } else {
        drop(env_w);
    }
    let code = loop {
        match nix::sys::wait::waitpid(pid, None) {
            Ok(nix::sys::wait::WaitStatus::Exited(_, c)) => break Some(c),
            Ok(nix::sys::wait::WaitStatus::Signaled(..)) => break None,
            Ok(_) | Err(nix::Error::EINTR) => continue,
            Err(_) => return Err(temp("qq crashed (#4.3.0)")),
        }
    };
    match code {
        Some(0) if write_ok && env_ok => Ok(qp),
        Some(0) => Err(temp("qq read error (#4.3.0)")),
        Some(EXIT_REASON) => {
            Err(reason(&read_reason(&reason_r)).unwrap_or_else(|| failure_for_exit(EXIT_REASON)))
        }
        Some(c) => Err(failure_for_exit(c)),
        None => Err(temp("qq crashed (#4.3.0)")),
    }
}

/// Start `program` with `message` on its fd 0, `envelope` on its fd 1 and `reason` on
/// its fd 6 (fd 2 and the rest of the environment inherited, `env` applied), SIGPIPE
/// back to its default (Rust ignores it) and no signal blocked, as std's `Command`
/// would. Through
/// posix_spawn, which glibc does with a vfork-style clone: std falls back to fork for
/// the fd 6 placement, and a fork copies the caller's page tables for each message
/// (qmail-smtpd's start of the filter chain, sendmail's of qmail-queue).
fn spawn_qq(
    program: &Path,
    env: &[(&str, Option<&str>)],
    message: &OwnedFd,
    envelope: &OwnedFd,
    reason: &OwnedFd,
) -> io::Result<nix::unistd::Pid> {
    use nix::spawn::{PosixSpawnAttr, PosixSpawnFileActions, PosixSpawnFlags};
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let cstring =
        |b: &[u8]| CString::new(b).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput));
    let path = cstring(program.as_os_str().as_bytes())?;
    let mut vars: Vec<CString> = Vec::new();
    for (name, value) in std::env::vars_os() {
        if env.iter().any(|(n, _)| n.as_bytes() == name.as_bytes()) {
            continue;
        }
        let mut v = name.as_bytes().to_vec();
        v.push(b'=');
        v.extend_from_slice(value.as_bytes());
        if let Ok(c) = CString::new(v) {
            vars.push(c);
        }
    }
    for (name, value) in env {
        if let Some(value) = value {
            vars.push(cstring(format!("{name}={value}").as_bytes())?);
        }
    }
    // each source above fd 6 first, so that no dup2 below overwrites another's source
    // (a caller started with fd 0 or 1 closed has its pipes there)
    let high = |fd: &OwnedFd| -> io::Result<OwnedFd> {
        let n = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(10))?;
        // SAFETY: fcntl just made `n`, a descriptor nothing else owns.
        Ok(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(n) })
    };
    let (m, e, r) = (high(message)?, high(envelope)?, high(reason)?);
    let mut actions = PosixSpawnFileActions::init()?;
    actions.add_dup2(m.as_raw_fd(), 0)?;
    actions.add_dup2(e.as_raw_fd(), 1)?;
    actions.add_dup2(r.as_raw_fd(), 6)?;
    let mut attr = PosixSpawnAttr::init()?;
    attr.set_sigmask(&nix::sys::signal::SigSet::empty())?;
    let mut pipe_default = nix::sys::signal::SigSet::empty();
    pipe_default.add(nix::sys::signal::Signal::SIGPIPE);
    attr.set_sigdefault(&pipe_default)?;
    attr.set_flags(
        PosixSpawnFlags::POSIX_SPAWN_SETSIGMASK | PosixSpawnFlags::POSIX_SPAWN_SETSIGDEF,
    )?;
    // the high copies close when they drop, on every path
    Ok(nix::spawn::posix_spawn(
        path.as_c_str(),
        &actions,
        &attr,
        &[path.as_c_str()],
        &vars,
    )?)
}

/// How long a client waits for qmail-queued's greeting before using qmail-queue.
pub const GREETING_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// How long a client waits for the verdict after the end of the message: qmail-queued's
/// own limit on a message (24 hours) and a margin.
const VERDICT_WAIT: std::time::Duration = std::time::Duration::from_secs(86_400 + 600);

/// The qmail-queued socket to try for `program`: `HOME/queued/socket` when `program` is
/// the installation's plain `HOME/bin/qmail-queue` (no `$QMAILQUEUE` of another program,
/// no filter chain); `None` otherwise (run `program` as always).
pub fn queued_socket(home: &Path, program: &Path) -> Option<PathBuf> {
    (program == home.join("bin/qmail-queue")).then(|| crate::writer::socket_path(home))
}

/// A connection to the local socket at `path` that never waits to be made: `None` when
/// nobody listens, the listener's queue is full (a server stopped or busy), or anything
/// else fails, so that the caller goes its other way at once. A blocking `connect` to a
/// Unix socket whose queue is full would wait for as long as the server does not
/// accept. The connection returned blocks as usual.
pub fn connect_at_once(path: &Path, kind: nix::sys::socket::SockType) -> Option<OwnedFd> {
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    use nix::sys::socket::{AddressFamily, SockFlag, UnixAddr, connect, socket};
    let fd = socket(
        AddressFamily::Unix,
        kind,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )
    .ok()?;
    connect(fd.as_raw_fd(), &UnixAddr::new(path).ok()?).ok()?;
    fcntl(&fd, FcntlArg::F_SETFL(OFlag::empty())).ok()?;
    Some(fd)
}

/// What became of a message offered to qmail-queued.
pub enum Queued<F> {
    /// Not handed over (no writer, not served, no greeting in time): nothing of the
    /// message was asked for; the message writer comes back for qmail-queue.
    Declined(F),
    /// Handed over: the verdict (the qp is this process's pid, which the writer puts in
    /// the Received line and in `intd/N`, as qmail-queue put its own).
    Done(Result<u32, QqFailure>),
}

/// Send everything, without SIGPIPE (a writer that died is an error, not a death).
fn send_all(stream: &std::os::unix::net::UnixStream, mut data: &[u8]) -> io::Result<()> {
    use nix::sys::socket::{MsgFlags, send};
    while !data.is_empty() {
        match send(stream.as_raw_fd(), data, MsgFlags::MSG_NOSIGNAL) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => data = &data[n..],
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// The message as protocol chunks of at most [`crate::writer::MAX_CHUNK`] bytes.
struct Chunks<'a> {
    stream: &'a std::os::unix::net::UnixStream,
    buf: Vec<u8>,
    failed: bool,
}

impl Chunks<'_> {
    fn send_chunk(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let mut frame = Vec::with_capacity(4 + self.buf.len());
        frame.extend_from_slice(&(self.buf.len() as u32).to_be_bytes());
        frame.extend_from_slice(&self.buf);
        self.buf.clear();
        let r = send_all(self.stream, &frame);
        self.failed |= r.is_err();
        r
    }
}

impl Write for Chunks<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.failed {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        let room = crate::writer::MAX_CHUNK - self.buf.len();
        let n = data.len().min(room);
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == crate::writer::MAX_CHUNK {
            self.send_chunk()?;
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Offer the message `write_message` writes to the qmail-queued listening on `socket`
/// (the protocol of [`crate::writer`]). Before the greeting has come and the envelope
/// has gone out, every failure is [`Queued::Declined`]; after it, a writer that dies is
/// `qq crashed`, a temporary failure (the client retries), and a refusal is its
/// qmail-queue exit code, mapped as qmail-queue's ([`failure_for_exit`]).
pub fn inject_queued<F>(
    socket: &Path,
    sender: &[u8],
    recipients: &[impl AsRef<[u8]>],
    write_message: F,
) -> Queued<F>
where
    F: FnOnce(&mut dyn Write) -> io::Result<()>,
{
    match offer_queued(socket, sender, recipients, write_message) {
        Offered::Declined(f) => Queued::Declined(f),
        Offered::Answered(Some(0)) => Queued::Done(Ok(std::process::id())),
        Offered::Answered(Some(code)) => Queued::Done(Err(failure_for_exit(code))),
        Offered::Answered(None) => Queued::Done(Err(QqFailure {
            permanent: false,
            text: "qq crashed (#4.3.0)".into(),
            custom: false,
        })),
    }
}

/// What became of a message offered to qmail-queued, in qmail-queue's own terms (for a
/// caller that passes the code on as its exit status, as qmail-qfilter does).
pub enum Offered<F> {
    /// Not handed over: as [`Queued::Declined`].
    Declined(F),
    /// Handed over: qmail-queue's exit code (0 queued; a refusal's code; 54 when
    /// `write_message` failed on its own, so nothing was kept), or `None` when the writer
    /// died or broke off without a verdict (the message may not be counted as queued).
    Answered(Option<i32>),
}

/// [`inject_queued`] with the writer's answer as qmail-queue's exit code.
pub fn offer_queued<F>(
    socket: &Path,
    sender: &[u8],
    recipients: &[impl AsRef<[u8]>],
    write_message: F,
) -> Offered<F>
where
    F: FnOnce(&mut dyn Write) -> io::Result<()>,
{
    use std::io::Read;
    let Some(fd) = connect_at_once(socket, nix::sys::socket::SockType::Stream) else {
        return Offered::Declined(write_message);
    };
    let mut stream = std::os::unix::net::UnixStream::from(fd);
    let mut greeting = [0u8; 1];
    let greeted = stream
        .set_read_timeout(Some(GREETING_WAIT))
        .and_then(|_| stream.read_exact(&mut greeting))
        .is_ok_and(|_| greeting[0] == crate::writer::GREETING);
    let envelope = crate::envelope::qq_envelope(sender, recipients);
    let Ok(len) = u32::try_from(envelope.len()) else {
        return Offered::Declined(write_message);
    };
    let mut frame = len.to_be_bytes().to_vec();
    frame.extend_from_slice(&envelope);
    if !greeted || send_all(&stream, &frame).is_err() {
        return Offered::Declined(write_message);
    }
    let mut chunks = Chunks {
        stream: &stream,
        buf: Vec::with_capacity(crate::writer::MAX_CHUNK),
        failed: false,
    };
    let written = write_message(&mut chunks);
    if written.is_err() && !chunks.failed {
        // the caller says "do not queue": no end chunk, so the writer keeps nothing
        return Offered::Answered(Some(54));
    }
    let sent = written.is_ok() && chunks.send_chunk().is_ok() && send_all(&stream, &[0; 4]).is_ok();
    // a writer that refused early (a bad envelope, a hostile length) answered and closed
    let mut code = [0u8; 1];
    if stream.set_read_timeout(Some(VERDICT_WAIT)).is_err() || stream.read_exact(&mut code).is_err()
    {
        return Offered::Answered(None);
    }
    match code[0] {
        0 if sent => {
            let mut id = [0u8; 8];
            match stream.read_exact(&mut id) {
                Ok(()) => Offered::Answered(Some(0)),
                Err(_) => Offered::Answered(None),
            }
        }
        0 => Offered::Answered(None),
        c => Offered::Answered(Some(i32::from(c))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_to_a_full_listener_is_refused_at_once() {
        use nix::sys::socket::{Backlog, SockType, UnixAddr, bind, listen, socket};
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("socket");
        assert!(
            connect_at_once(&path, SockType::Stream).is_none(),
            "no listener"
        );
        let l = socket(
            nix::sys::socket::AddressFamily::Unix,
            SockType::Stream,
            nix::sys::socket::SockFlag::SOCK_CLOEXEC,
            None,
        )
        .unwrap();
        bind(l.as_raw_fd(), &UnixAddr::new(&path).unwrap()).unwrap();
        listen(&l, Backlog::new(1).unwrap()).unwrap();
        // nobody accepts: the queue fills, and then the next connect fails at once
        // instead of waiting for an accept that never comes
        let mut kept = Vec::new();
        let start = std::time::Instant::now();
        while let Some(c) = connect_at_once(&path, SockType::Stream) {
            kept.push(c);
            assert!(kept.len() < 64, "the listener's queue never filled");
        }
        assert!(!kept.is_empty());
        assert!(start.elapsed() < std::time::Duration::from_secs(5));
        // a connection made is a blocking one, as usual
        let flags = nix::fcntl::fcntl(&kept[0], nix::fcntl::FcntlArg::F_GETFL).unwrap();
        assert_eq!(flags & libc::O_NONBLOCK, 0);
    }

    #[test]
    fn exit_code_mapping() {
        assert!(failure_for_exit(11).permanent);
        assert!(failure_for_exit(31).permanent);
        assert!(!failure_for_exit(53).permanent);
        assert_eq!(
            failure_for_exit(53).text,
            "qq write error or disk full (#4.3.0)"
        );
        assert!(!failure_for_exit(81).permanent);
        assert!(failure_for_exit(20).permanent);
        assert!(!failure_for_exit(100).permanent);
    }

    #[test]
    fn runs_a_queue_program() {
        let d = tempfile::tempdir().unwrap();
        let script = d.path().join("qq");
        let out = d.path().join("out");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\ncat > {0}.m\ncat <&1 > {0}.e\nexit 0\n",
                out.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        inject(&script, b"a@x", &["b@y"], |w| w.write_all(b"hello\n")).unwrap();
        assert_eq!(
            std::fs::read(format!("{}.m", out.display())).unwrap(),
            b"hello\n"
        );
        assert_eq!(
            std::fs::read(format!("{}.e", out.display())).unwrap(),
            b"Fa@x\0Tb@y\0\0"
        );
        std::fs::write(&script, "#!/bin/sh\ncat >/dev/null\nexit 31\n").unwrap();
        let e = inject(&script, b"a@x", &["b@y"], |w| w.write_all(b"hello\n")).unwrap_err();
        assert!(e.permanent);
        assert!(!e.custom);
    }

    #[test]
    fn a_childs_reason_on_fd_6_with_exit_82_is_the_failure_text() {
        let d = tempfile::tempdir().unwrap();
        let script = d.path().join("qq");
        let run = |body: &str| {
            std::fs::write(&script, format!("#!/bin/sh\ncat >/dev/null\n{body}\n")).unwrap();
            std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
                .unwrap();
            inject(&script, b"a@x", &["b@y"], |w| w.write_all(b"hello\n")).unwrap_err()
        };
        let e = run("printf 'Dattachment type .exe not allowed (#5.7.1)\\n' >&6; exit 82");
        assert_eq!(e.text, "attachment type .exe not allowed (#5.7.1)");
        assert!(e.permanent && e.custom);
        let e = run("printf 'Zscanner busy (#4.3.0)' >&6; exit 82");
        assert!(!e.permanent && e.custom);
        assert_eq!(e.text, "scanner busy (#4.3.0)");
        // no text, or a text of another form: qmail's temporary failure
        let e = run("exit 82");
        assert!(!e.permanent && !e.custom);
        let e = run("printf 'Xwhat' >&6; exit 82");
        assert!(!e.custom);
        // fd 6 without exit 82 is ignored
        let e = run("printf 'Dno' >&6; exit 31");
        assert_eq!(e.text, "mail server permanently rejected message (#5.3.0)");
    }

    #[test]
    fn the_environment_can_be_changed_for_the_child() {
        let d = tempfile::tempdir().unwrap();
        let script = d.path().join("qq");
        let out = d.path().join("out");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\ncat >/dev/null\necho \"${{SMTPAUTHUSER-unset}} ${{HOME:+home}}\" > {}\n",
                out.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let env = [("SMTPAUTHUSER", Some("alice"))];
        inject_env(&script, &env, b"a@x", &["b@y"], |w| w.write_all(b"x\n")).unwrap();
        let home = if std::env::var_os("HOME").is_some() {
            "home"
        } else {
            ""
        };
        assert_eq!(
            std::fs::read_to_string(&out).unwrap(),
            format!("alice {home}\n")
        );
        // an inherited variable is removed
        let env = [("SMTPAUTHUSER", None), ("HOME", None)];
        inject_env(&script, &env, b"a@x", &["b@y"], |w| w.write_all(b"x\n")).unwrap();
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "unset \n");
    }

    #[test]
    fn entry_mail_goes_through_the_chain_only_when_filters_are_named() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("control")).unwrap();
        // (the test environment has no QMAILQUEUE)
        let q = |name: &str| d.path().join("bin").join(name);
        assert_eq!(entry_program(d.path()), q("qmail-queue"));
        std::fs::write(d.path().join("control/filters"), "# none yet\n\n").unwrap();
        assert_eq!(entry_program(d.path()), q("qmail-queue"));
        std::fs::write(d.path().join("control/filters"), "qmail-scan\n").unwrap();
        assert_eq!(entry_program(d.path()), q("qmail-qfilter"));
        assert_eq!(program(d.path()), q("qmail-queue"));
    }

    #[test]
    fn a_reason_is_one_bounded_printable_line() {
        let r = reason(b"Dbad\r\x1b[31m text\nsecond line").unwrap();
        assert_eq!(r.text, "bad??[31m text");
        let long = [b'D']
            .iter()
            .chain([b'a'; 2000].iter())
            .copied()
            .collect::<Vec<_>>();
        assert_eq!(reason(&long).unwrap().text.len(), MAX_REASON);
        assert!(reason(b"D   ").is_none());
        assert!(reason(b"").is_none());
    }
}
