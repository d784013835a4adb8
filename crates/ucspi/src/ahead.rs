//! tcpserver's side of `-a`: one program started ahead of the next connection, waiting
//! for it (the protocol and the program's side: [`qsys::ahead`]).
//!
//! [`Ahead`] keeps at most one spare: started after each connection is handed on, taken
//! by the next connection once it has said it is ready, replaced when it dies. A program
//! that never says ready (it does not know the protocol) turns `-a` off for good with
//! one warning; connections never wait for a spare, they start their program as
//! without `-a` while the spare is not ready yet.

use std::ffi::OsString;
use std::io;
use std::net::TcpStream;
use std::os::fd::{AsRawFd, OwnedFd};

use nix::sys::socket::{
    AddressFamily, ControlMessage, MsgFlags, SockFlag, SockType, sendmsg, socketpair,
};
use qsys::ahead::{Change, MAX_CHANGES, READY, VAR};

/// A program started ahead, and tcpserver's end of its socket.
#[derive(Debug)]
struct Spare {
    pid: u32,
    control: OwnedFd,
    ready: bool,
}

/// What `-a` does now.
#[derive(Debug)]
pub struct Ahead {
    /// False without `-a`, and after a program that did not say ready.
    on: bool,
    spare: Option<Spare>,
    /// Spares killed and not reaped yet (they never served a connection).
    retired: Vec<u32>,
}

/// What a reaped child was.
#[derive(Debug, PartialEq, Eq)]
pub enum Reaped {
    /// A connection's program.
    Connection,
    /// The spare, or one killed before.
    Spare,
    /// The spare, which ended before it said ready: `-a` is off now; the warning.
    SpareNeverReady(String),
}

impl Ahead {
    pub fn new(on: bool) -> Ahead {
        Ahead {
            on,
            spare: None,
            retired: Vec::new(),
        }
    }

    /// Start a spare for `program` when there is none; an error is its warning text (the
    /// connections go on without it, and the next one tries again).
    pub fn refill(&mut self, program: &[OsString]) -> Result<(), String> {
        if !self.on || self.spare.is_some() {
            return Ok(());
        }
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        )
        .map_err(|e| format!("unable to make a socket pair: {e}"))?;
        // the program's end blocks: it waits in recvmsg
        nix::fcntl::fcntl(
            &theirs,
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::empty()),
        )
        .map_err(|e| format!("unable to make a socket pair: {e}"))?;
        let second = theirs
            .try_clone()
            .map_err(|e| format!("unable to make a socket pair: {e}"))?;
        let child = std::process::Command::new(&program[0])
            .args(&program[1..])
            .env(VAR, "1")
            .stdin(std::process::Stdio::from(theirs))
            .stdout(std::process::Stdio::from(second))
            .spawn()
            .map_err(|e| {
                format!(
                    "unable to run {} ahead: {}",
                    program[0].to_string_lossy(),
                    qsys::die::errstr(&e)
                )
            })?;
        // reaped through SIGCHLD with the other children
        self.spare = Some(Spare {
            pid: child.id(),
            control: ours,
            ready: false,
        });
        Ok(())
    }

    /// Hand `conn` with the environment `changes` to the spare when it is ready: its pid,
    /// which now serves the connection. `None` when there is no ready spare (or the
    /// hand-over failed): the caller starts the program itself. A spare that answered
    /// something else than ready turns `-a` off.
    pub fn hand_over(
        &mut self,
        conn: &TcpStream,
        changes: &[Change],
    ) -> Result<Option<u32>, String> {
        let Some(spare) = self.spare.as_mut() else {
            return Ok(None);
        };
        if !spare.ready {
            let mut b = [0u8; 16];
            match nix::unistd::read(&spare.control, &mut b) {
                Ok(1) if b[0] == READY => spare.ready = true,
                Err(nix::errno::Errno::EAGAIN) => return Ok(None),
                _ => return Err(self.unsupported()),
            }
        }
        let wire = qsys::ahead::encode(changes);
        if wire.len() > MAX_CHANGES {
            return Ok(None);
        }
        let Some(spare) = self.spare.take() else {
            return Ok(None);
        };
        let fds = [conn.as_raw_fd()];
        let sent = sendmsg::<()>(
            spare.control.as_raw_fd(),
            &[io::IoSlice::new(&wire)],
            &[ControlMessage::ScmRights(&fds)],
            MsgFlags::MSG_NOSIGNAL,
            None,
        );
        match sent {
            Ok(n) if n == wire.len() => Ok(Some(spare.pid)),
            _ => {
                // a spare that cannot take it is of no use
                self.retire(spare.pid);
                Ok(None)
            }
        }
    }

    /// What `pid`, just reaped, was (a spare is not one of the running connections).
    pub fn reaped(&mut self, pid: u32) -> Reaped {
        if let Some(i) = self.retired.iter().position(|&p| p == pid) {
            self.retired.swap_remove(i);
            return Reaped::Spare;
        }
        match &self.spare {
            Some(s) if s.pid == pid => {
                let ready = s.ready;
                self.spare = None;
                if ready {
                    Reaped::Spare
                } else {
                    Reaped::SpareNeverReady(self.unsupported())
                }
            }
            _ => Reaped::Connection,
        }
    }

    /// Turn `-a` off (the spare, if any, is killed and reaped as usual); the warning.
    fn unsupported(&mut self) -> String {
        self.on = false;
        if let Some(s) = self.spare.take() {
            self.retire(s.pid);
        }
        "the program did not wait for its connection (it does not know tcpserver -a): \
         starting it at each connection"
            .to_string()
    }

    /// Kill spare `pid`; [`Ahead::reaped`] knows it when it is reaped.
    fn retire(&mut self, pid: u32) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        self.retired.push(pid);
    }
}
