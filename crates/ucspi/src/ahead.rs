//! tcpserver's side of `-a` and `-A N`: one program started ahead of the next
//! connection, waiting for it (the protocol and the program's side: [`qsys::ahead`],
//! [`qsys::zygote`]).
//!
//! [`Ahead`] keeps at most one spare: started after each connection is handed on (`-a`)
//! or after its N connections (`-A N`), taken by the next connection once it has said
//! it is ready, replaced when it dies. A program that never says ready (it does not know
//! the protocol) turns `-a` off for good with one warning; connections never wait for a
//! spare, they start their program as without `-a` while the spare is not ready yet.
//!
//! With `-A N` the spare is a zygote that forks each connection's process: a hand-over
//! is queued on its socket, and the process that takes it says so later
//! ([`Event::Took`], in hand-over order, which is why each hand-over keeps the caller's
//! note of it until then); the zygote reports each end ([`Event::Ended`]). A zygote
//! that ends with hand-overs nobody took gives them back as [`Event::Lost`] (their
//! connections were closed with its socket). A zygote that has had its N hand-overs
//! drains: it is only read from until it ends.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io;
use std::net::TcpStream;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::sys::socket::{
    AddressFamily, ControlMessage, MsgFlags, SockFlag, SockType, sendmsg, socketpair,
};
use qsys::ahead::{Change, MAX_CHANGES, Report, VAR};

/// A program started ahead, and tcpserver's end of its socket; `P` is the caller's
/// note of each hand-over a zygote has not reported taken yet.
#[derive(Debug)]
struct Spare<P> {
    pid: u32,
    control: OwnedFd,
    /// What it said it is: [`Report::Ready`] or [`Report::Forking`]; `None` before.
    said: Option<Report>,
    /// Hand-overs so far (a zygote's).
    handed: u32,
    /// Hand-overs no forked process reported taken yet, oldest first.
    pending: VecDeque<P>,
    /// Its end of the socket is closed: nothing more to read (not polled any more).
    hung_up: bool,
}

/// What `-a` / `-A` does now.
#[derive(Debug)]
pub struct Ahead<P> {
    /// False without `-a`, and after a program that did not say ready.
    on: bool,
    /// Connections per program started ahead: 1 with `-a`, N with `-A N`.
    serves: u32,
    spare: Option<Spare<P>>,
    /// Zygotes that had their N hand-overs, still reporting until they end.
    draining: Vec<Spare<P>>,
    /// Spares killed and not reaped yet (they never served a connection).
    retired: Vec<u32>,
    /// The spare ended after it served: start the next one now ([`Ahead::renew`]).
    renew: bool,
}

/// What a reaped child was.
#[derive(Debug, PartialEq, Eq)]
pub enum Reaped {
    /// Not a program started ahead: a connection's program, or a stranger (an orphan of
    /// a zygote's process, when tcpserver is their subreaper).
    Other,
    /// The spare, a zygote, or one killed before.
    Spare,
    /// The spare, which ended before it said ready: `-a` is off now; the warning.
    SpareNeverReady(String),
}

/// What the hand-over of a connection came to.
#[derive(Debug, PartialEq, Eq)]
pub enum HandOver {
    /// The spare (`-a`) took it: this process serves it.
    Served(u32),
    /// Queued for the zygote's next spare ([`Event::Took`] says which process).
    Queued,
    /// No spare could take it: the caller starts the program itself.
    No,
}

/// What a zygote said, or what its end means.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<P> {
    /// Process `pid` serves the hand-over noted `P`.
    Took(u32, P),
    /// Process `pid` (one that took a connection) ended with this raw wait status.
    Ended(u32, i32),
    /// The zygote ended before any process took this hand-over.
    Lost(P),
}

impl<P: Clone> Ahead<P> {
    /// `serves` connections per program started ahead (0: no `-a`; 1: `-a`).
    pub fn new(serves: u32) -> Ahead<P> {
        Ahead {
            on: serves > 0,
            serves: serves.max(1),
            spare: None,
            draining: Vec::new(),
            retired: Vec::new(),
            renew: false,
        }
    }

    /// Whether the spare should be replaced now rather than at the next connection
    /// (asked once).
    pub fn renew(&mut self) -> bool {
        std::mem::take(&mut self.renew)
    }

    /// Whether spares fork each connection's process (`-A`): tcpserver must then be the
    /// subreaper of their processes.
    pub fn forking(&self) -> bool {
        self.on && self.serves > 1
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
            .env(VAR, self.serves.to_string())
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
            said: None,
            handed: 0,
            pending: VecDeque::new(),
            hung_up: false,
        });
        Ok(())
    }

    /// The sockets to watch for reports ([`Ahead::reports`]).
    pub fn sockets(&self) -> Vec<BorrowedFd<'_>> {
        self.spare
            .iter()
            .chain(&self.draining)
            .filter(|s| !s.hung_up)
            .map(|s| s.control.as_fd())
            .collect()
    }

    /// Read everything the spare and the draining zygotes said: the events, and the
    /// warning when the spare said something that is not the protocol (`-a` is off).
    pub fn reports(&mut self) -> (Vec<Event<P>>, Option<String>) {
        let mut events = Vec::new();
        let mut warning = None;
        if let Some(s) = self.spare.as_mut()
            && !read_reports(s, &mut events)
        {
            warning = Some(self.unsupported());
        }
        for s in &mut self.draining {
            read_reports(s, &mut events);
        }
        (events, warning)
    }

    /// Hand `conn` with the environment `changes` to the spare when it is ready (`note`
    /// is kept until a zygote's process reports it took it). A spare that answered
    /// something else than ready turns `-a` off.
    pub fn hand_over(
        &mut self,
        conn: &TcpStream,
        changes: &[Change],
        note: &P,
    ) -> Result<HandOver, String> {
        let Some(spare) = self.spare.as_mut() else {
            return Ok(HandOver::No);
        };
        if spare.said.is_none() {
            let mut early = Vec::new();
            if !read_reports(spare, &mut early) {
                return Err(self.unsupported());
            }
        }
        let wire = qsys::ahead::encode(changes);
        if wire.len() > MAX_CHANGES {
            return Ok(HandOver::No);
        }
        let forking = match spare.said {
            None => return Ok(HandOver::No),
            Some(Report::Forking) => true,
            Some(_) => false,
        };
        let fds = [conn.as_raw_fd()];
        let sent = sendmsg::<()>(
            spare.control.as_raw_fd(),
            &[io::IoSlice::new(&wire)],
            &[ControlMessage::ScmRights(&fds)],
            MsgFlags::MSG_NOSIGNAL,
            None,
        );
        if forking && sent == Err(nix::errno::Errno::EAGAIN) {
            // a zygote with its queue full: this connection gets a program of its own
            return Ok(HandOver::No);
        }
        let sent = matches!(sent, Ok(n) if n == wire.len());
        let Some(mut spare) = self.spare.take() else {
            return Ok(HandOver::No);
        };
        if !sent {
            // a spare that cannot take it is of no use
            self.retire(spare);
            return Ok(HandOver::No);
        }
        if !forking {
            return Ok(HandOver::Served(spare.pid));
        }
        spare.handed += 1;
        spare.pending.push_back(note.clone());
        if spare.handed >= self.serves {
            self.draining.push(spare);
        } else {
            self.spare = Some(spare);
        }
        Ok(HandOver::Queued)
    }

    /// What `pid`, just reaped, was (a spare is not one of the running connections),
    /// and, for a zygote, what it said last and the hand-overs it leaves untaken.
    pub fn reaped(&mut self, pid: u32) -> (Reaped, Vec<Event<P>>) {
        let mut events = Vec::new();
        if let Some(i) = self.retired.iter().position(|&p| p == pid) {
            self.retired.swap_remove(i);
            return (Reaped::Spare, events);
        }
        if let Some(i) = self.draining.iter().position(|s| s.pid == pid) {
            let s = self.draining.swap_remove(i);
            last_words(s, &mut events);
            return (Reaped::Spare, events);
        }
        let Some(s) = self.spare.take_if(|s| s.pid == pid) else {
            return (Reaped::Other, events);
        };
        // a zygote that served and ended (a crash of one of its processes) is replaced
        // at once; one that never served is replaced at the next connection, as a
        // spare of `-a` is, so a program that cannot go on is not restarted in a loop
        self.renew = s.handed > 0;
        if s.said.is_none() {
            // it may have said it just before it ended
            let mut s = s;
            if !read_reports(&mut s, &mut events) || s.said.is_none() {
                return (Reaped::SpareNeverReady(self.unsupported()), events);
            }
            last_words(s, &mut events);
            return (Reaped::Spare, events);
        }
        last_words(s, &mut events);
        (Reaped::Spare, events)
    }

    /// Turn `-a` off (the spare, if any, is killed and reaped as usual); the warning.
    fn unsupported(&mut self) -> String {
        self.on = false;
        if let Some(s) = self.spare.take() {
            self.retire(s);
        }
        "the program did not wait for its connection (it does not know tcpserver -a): \
         starting it at each connection"
            .to_string()
    }

    /// Kill `spare`: [`Ahead::reaped`] knows it when it is reaped. A zygote is kept
    /// draining until then: what it reported before it died is still read, and its
    /// untaken hand-overs are given back.
    fn retire(&mut self, spare: Spare<P>) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(spare.pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        if spare.said == Some(Report::Forking) {
            self.draining.push(spare);
        } else {
            self.retired.push(spare.pid);
        }
    }
}

/// Read what `spare` said so far into `events`; false when it said something that is
/// not the protocol, or closed its end, before it said ready.
fn read_reports<P>(spare: &mut Spare<P>, events: &mut Vec<Event<P>>) -> bool {
    let mut b = [0u8; 16];
    loop {
        let n =
            match nix::sys::socket::recv(spare.control.as_raw_fd(), &mut b, MsgFlags::MSG_DONTWAIT)
            {
                Ok(0) => {
                    // its end is closed (a packet is never empty): it is gone, or it
                    // does not know the protocol and closed its descriptors
                    spare.hung_up = true;
                    return spare.said.is_some();
                }
                Err(_) => return true,
                Ok(n) => n,
            };
        let report = Report::decode(&b[..n]);
        match (spare.said, report) {
            (None, Some(r @ (Report::Ready | Report::Forking))) => spare.said = Some(r),
            (None, _) => return false,
            (Some(Report::Forking), Some(Report::Took(pid))) => {
                if let Some(note) = spare.pending.pop_front() {
                    events.push(Event::Took(pid, note));
                }
            }
            (Some(Report::Forking), Some(Report::Ended(pid, status))) => {
                events.push(Event::Ended(pid, status))
            }
            // nothing else is expected; a zygote is our own code, so ignore it
            _ => {}
        }
    }
}

/// A reaped zygote's last reports, then its untaken hand-overs as lost.
fn last_words<P>(mut spare: Spare<P>, events: &mut Vec<Event<P>>) {
    read_reports(&mut spare, events);
    events.extend(spare.pending.drain(..).map(Event::Lost));
}
