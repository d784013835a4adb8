//! The spawner loop shared by qmail-lspawn and qmail-rspawn (qmail's `spawn.c`).
//!
//! fd 0: commands from qmail-send; fd 1: reports to it. Working directory: `queue/mess`.
//! On start one byte, the slot count, is written to fd 1. Each command's message
//! `mess/S/N` is opened and checked (a regular file; owned by qmailq when running as
//! root), a child is started with it on fd 0 and a pipe on fds 1 and 2, and the child's
//! output (truncated to `truncate` bytes) becomes the report once the pipe closes and the
//! child is reaped. The child is an exec'ed program ([`Start::Child`], qmail-rspawn) or a
//! forked copy of the spawner that runs the delivery itself ([`Start::Forked`],
//! qmail-lspawn, see [`crate::lspawn`]). EOF on fd 0 ends the loop after the last child.

use crate::protocol::{self, Command, SLOTS, Status};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::process::{Child, ExitStatus};

/// What the kind-specific starter decided for one command.
pub enum Start {
    /// A running child (it holds the pipe's write end; the parent keeps none).
    Child(Child),
    /// A forked child, by pid, under the same rule for the pipe.
    Forked(nix::unistd::Pid),
    /// An answer without running anything (status and text).
    Report(Status, Vec<u8>),
}

/// Turns a child's exit status and output into a report (status, text).
pub type ReportFn<'a> = &'a dyn Fn(ExitStatus, &[u8]) -> (Status, Vec<u8>);

/// The parts that differ between qmail-lspawn and qmail-rspawn.
pub struct Spawner<'a> {
    /// Start a delivery: the command, the open message, and the write end of the output
    /// pipe (to become the child's fds 1 and 2).
    pub start: &'a mut dyn FnMut(&Command, File, OwnedFd) -> Start,
    /// Turn a child's exit status and output into a report (status, text).
    pub report: ReportFn<'a>,
    /// Longest output kept (qmail-lspawn: 3000 bytes).
    pub truncate: usize,
    /// Required owner of message files (qmailq), when known.
    pub message_owner: Option<u32>,
}

struct Running {
    child: Process,
    out: File,
    output: Vec<u8>,
}

/// A child to reap: started through `std::process` or forked.
enum Process {
    Child(Child),
    Forked(nix::unistd::Pid),
}

impl Process {
    /// Wait for the child to end (retrying on EINTR).
    fn wait(&mut self) -> io::Result<ExitStatus> {
        use std::os::unix::process::ExitStatusExt;
        match self {
            Process::Child(c) => c.wait(),
            Process::Forked(pid) => loop {
                let mut raw = 0;
                // SAFETY: waitpid writes the status into a valid local.
                if unsafe { libc::waitpid(pid.as_raw(), &mut raw, 0) } >= 0 {
                    return Ok(ExitStatus::from_raw(raw));
                }
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            },
        }
    }
}

/// Output truncated the way qmail-lspawn does it.
fn truncated(mut output: Vec<u8>, max: usize) -> Vec<u8> {
    if output.len() > max {
        output.truncate(max);
        output.extend_from_slice(b"\nError report too long, sorry.\n");
    }
    output
}

/// Open `mess/S/N` for a delivery. qmail-lspawn runs as root in a directory qmailq
/// owns: the last component is not followed (a link planted by a compromised qmailq),
/// and the open does not block (a FIFO or device in its place); only a regular file
/// owned by `owner` is accepted.
fn open_message(messid: &str, owner: Option<u32>) -> Result<File, (Status, Vec<u8>)> {
    use std::os::unix::fs::OpenOptionsExt;
    let cannot = || {
        (
            Status::Deferral,
            b"qmail-spawn unable to open message. (#4.3.0)".to_vec(),
        )
    };
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(messid)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => (
                Status::Deferral,
                b"Sorry, message has wrong type. (#4.3.5)".to_vec(),
            ),
            _ => cannot(),
        })?;
    let m = f.metadata().map_err(|_| cannot())?;
    if !m.is_file() {
        return Err((
            Status::Deferral,
            b"Sorry, message has wrong type. (#4.3.5)".to_vec(),
        ));
    }
    if owner.is_some_and(|o| o != m.uid()) {
        return Err((
            Status::Deferral,
            b"Sorry, message has wrong owner. (#4.3.5)".to_vec(),
        ));
    }
    nix::fcntl::fcntl(
        &f,
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::empty()),
    )
    .map_err(|_| cannot())?;
    Ok(f)
}

/// Run the spawner until qmail-send closes fd 0 and every child is done.
pub fn serve(sp: Spawner<'_>) -> io::Result<()> {
    // SAFETY: fds 0 and 1 are this process's command and report pipes for its whole life.
    let (mut input, mut output) = unsafe { (File::from_raw_fd(0), File::from_raw_fd(1)) };
    output.write_all(&[SLOTS])?;
    let mut inbuf = Vec::new();
    let mut running: HashMap<u8, Running> = HashMap::new();
    let mut input_open = true;
    let mut chunk = vec![0u8; 16 * 1024];
    while input_open || !running.is_empty() {
        let slots: Vec<u8> = running.keys().copied().collect();
        let mut fds: Vec<PollFd> = Vec::with_capacity(slots.len() + 1);
        if input_open {
            fds.push(PollFd::new(input.as_fd(), PollFlags::POLLIN));
        }
        for s in &slots {
            if let Some(r) = running.get(s) {
                fds.push(PollFd::new(r.out.as_fd(), PollFlags::POLLIN));
            }
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(nix::Error::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
        let ready: Vec<bool> = fds
            .iter()
            .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        drop(fds);
        let (input_ready, child_ready) = if input_open {
            (ready[0], &ready[1..])
        } else {
            (false, &ready[..])
        };

        for (i, s) in slots.iter().enumerate() {
            if !child_ready[i] {
                continue;
            }
            let Some(r) = running.get_mut(s) else {
                continue;
            };
            let n = match r.out.read(&mut chunk) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => 0,
            };
            if n > 0 {
                if r.output.len() < sp.truncate + 1 {
                    r.output.extend_from_slice(&chunk[..n]);
                }
                continue;
            }
            if let Some(mut done) = running.remove(s) {
                let status = done.child.wait()?;
                let (letter, text) = (sp.report)(
                    status,
                    &truncated(std::mem::take(&mut done.output), sp.truncate),
                );
                output.write_all(&protocol::encode_report(*s, letter, &text))?;
            }
        }

        if input_ready {
            let n = match input.read(&mut chunk) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if n == 0 {
                input_open = false;
            }
            inbuf.extend_from_slice(&chunk[..n]);
            while let Some(cmd) = protocol::take_command(&mut inbuf) {
                let cmd = match cmd {
                    Ok(c) => c,
                    Err(slot) => {
                        output.write_all(&protocol::encode_report(
                            slot,
                            Status::Failure,
                            b"Internal error: messid has unexpected format. (#5.3.5)",
                        ))?;
                        continue;
                    }
                };
                if cmd.slot >= SLOTS || running.contains_key(&cmd.slot) {
                    output.write_all(&protocol::encode_report(
                        cmd.slot,
                        Status::Deferral,
                        b"Internal error: delnum in use. (#4.3.5)",
                    ))?;
                    continue;
                }
                let message = match open_message(&cmd.messid, sp.message_owner) {
                    Ok(f) => f,
                    Err((letter, text)) => {
                        output.write_all(&protocol::encode_report(cmd.slot, letter, &text))?;
                        continue;
                    }
                };
                let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
                let child = match (sp.start)(&cmd, message, w) {
                    Start::Child(child) => Process::Child(child),
                    Start::Forked(pid) => Process::Forked(pid),
                    Start::Report(letter, text) => {
                        output.write_all(&protocol::encode_report(cmd.slot, letter, &text))?;
                        continue;
                    }
                };
                running.insert(
                    cmd.slot,
                    Running {
                        child,
                        out: File::from(r),
                        output: Vec::new(),
                    },
                );
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wrong_type() -> Result<(), (Status, Vec<u8>)> {
        Err((
            Status::Deferral,
            b"Sorry, message has wrong type. (#4.3.5)".to_vec(),
        ))
    }

    #[test]
    fn message_must_be_a_regular_file_not_a_link_or_fifo() {
        let d = tempfile::tempdir().unwrap();
        let p = |n: &str| d.path().join(n).to_string_lossy().into_owned();
        std::fs::write(p("m"), b"x").unwrap();
        assert!(open_message(&p("m"), None).is_ok());
        std::os::unix::fs::symlink(p("m"), p("link")).unwrap();
        assert_eq!(open_message(&p("link"), None).map(|_| ()), wrong_type());
        // A FIFO would block a plain open until a writer came; it must be refused at once.
        nix::unistd::mkfifo(
            d.path().join("fifo").as_path(),
            nix::sys::stat::Mode::S_IRWXU,
        )
        .unwrap();
        assert_eq!(open_message(&p("fifo"), None).map(|_| ()), wrong_type());
        assert_eq!(
            open_message(&p("missing"), None).unwrap_err().0,
            Status::Deferral
        );
        let mine = nix::unistd::getuid().as_raw();
        assert!(open_message(&p("m"), Some(mine)).is_ok());
        assert_eq!(
            open_message(&p("m"), Some(mine + 1)).unwrap_err().1,
            b"Sorry, message has wrong owner. (#4.3.5)"
        );
    }
}
