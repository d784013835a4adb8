//! Reading one message from the client into qmail-queue (or qmail-queued): after DATA (through the
//! [`crate::data`] state machine) or as BDAT chunks (RFC 3030). The reader returns one
//! [`Outcome`]; the session turns it into the reply.
//!
//! Whatever is refused, the message is read to its end where the protocol lets the
//! session go on (too big, looping, a forged originator), so that the client and the
//! server stay in step; a bare LF/CR after DATA, an unreadable BDAT command, EOF and
//! read errors stop reading at once.

use crate::data::{Bare, Dot, Step};
use crate::io::{Conn, Line};
use crate::originator::{self, Refusal};
use crate::session::{MAX_HOPS, MAX_LINE};
use std::io::{self, Write};

/// Header bytes kept for the originator check of authenticated senders.
const MAX_HEADER_CAPTURE: usize = 256 * 1024;

/// How reading a message ended.
#[derive(Debug)]
pub enum Outcome {
    /// The whole message went to qmail-queue and nothing is wrong with it: queue it.
    Complete,
    /// More than `databytes`.
    TooBig,
    /// [`MAX_HOPS`] or more Received/Delivered-To lines.
    Looping,
    /// An authenticated user's header names an originator that is not theirs.
    Originator(Refusal),
    /// Writing to qmail-queue failed (its exit code says why).
    QueueWriteFailed,
    /// DATA: a bare LF or CR; the connection is to be closed.
    BareLineEnd(Bare),
    /// BDAT: a CR not followed by LF.
    BareCrInChunk,
    /// BDAT: an unreadable BDAT command between chunks; the connection is to be closed.
    BadBdat,
    /// BDAT: another command between chunks, aborting the transaction; it is to be run.
    Interrupted(Vec<u8>),
    /// EOF from the client before the message ended.
    ClientGone,
    /// Reading from the client failed (a timeout, a TLS error).
    ReadFailed(io::Error),
}

/// What the reader needs besides the connection.
pub struct Limits<'a> {
    /// The Received line written above the message.
    pub received: &'a str,
    /// `databytes` (0: no limit).
    pub databytes: u64,
    /// For an authenticated user: may they name this originator address?
    pub originator: Option<&'a dyn Fn(&str) -> bool>,
}

/// Run qmail-queue (`program`) with the message `read` takes from the client.
/// Returns the reader's outcome (`None` when qmail-queue could not be started, so
/// nothing was read) and qmail-queue's result, which counts only for
/// [`Outcome::Complete`] and [`Outcome::QueueWriteFailed`].
///
/// When `program` is the installation's plain qmail-queue, the message is first offered
/// to qmail-queued (`HOME/queued/socket`, doc/queue-writer.md); if the writer does not
/// take it (down, not greeting, at capacity), nothing has been read yet and qmail-queue
/// runs as before. When it is the installation's qmail-qfilter (control/filters), the
/// message is read whole into a sealed memory file and offered to qmail-qfilterd
/// ([`through_server`]); a `$QMAILQUEUE` of any other program always runs as before.
///
/// `auth_user` (the authenticated user, if any) becomes `SMTPAUTHUSER` in qmail-queue's
/// environment, for the filters of a qmail-qfilter chain; without one the variable is
/// removed, so nothing inherited can pose as an authentication. `helo` becomes
/// `SMTPHELO` (log-safe escaped, at most 256 bytes kept), for qmail-authcheck's SPF.
pub fn into_queue(
    home: &std::path::Path,
    program: &std::path::Path,
    auth_user: Option<&str>,
    helo: Option<&str>,
    sender: &str,
    rcpts: &[String],
    read: impl FnOnce(&mut dyn Write) -> Outcome,
) -> (Option<Outcome>, Result<u32, queue::client::QqFailure>) {
    let helo = helo.map(|h| qsys::logsafe::text(h.as_bytes()));
    let env = [("SMTPAUTHUSER", auth_user), ("SMTPHELO", helo.as_deref())];
    if program == home.join("bin/qmail-qfilter") {
        return through_server(home, program, &env, sender, rcpts, read);
    }
    let mut outcome = None;
    let to_queue = |w: &mut dyn Write| {
        let o = read(w);
        let complete = matches!(o, Outcome::Complete);
        outcome = Some(o);
        if complete {
            Ok(())
        } else {
            // inject's way to hear "do not queue": no envelope (no end chunk) is sent.
            Err(io::ErrorKind::InvalidData.into())
        }
    };
    let result = queue_plain(home, program, &env, sender, rcpts, to_queue);
    (outcome, result)
}

/// Queue through qmail-queued when `program` is the plain qmail-queue and the writer
/// takes the message, else by running `program`.
fn queue_plain<F>(
    home: &std::path::Path,
    program: &std::path::Path,
    env: &[(&str, Option<&str>)],
    sender: &str,
    rcpts: &[String],
    to_queue: F,
) -> Result<u32, queue::client::QqFailure>
where
    F: FnOnce(&mut dyn Write) -> io::Result<()>,
{
    use queue::client::Queued;
    let offered = match queue::client::queued_socket(home, program) {
        Some(socket) => queue::client::inject_queued(&socket, sender.as_bytes(), rcpts, to_queue),
        None => Queued::Declined(to_queue),
    };
    match offered {
        Queued::Done(result) => result,
        Queued::Declined(to_queue) => {
            queue::client::inject_env(program, env, sender.as_bytes(), rcpts, to_queue)
        }
    }
}

/// The filter chain for a message (`program` is qmail-qfilter): the message is read
/// whole into a sealed memory file first, so the chain starts only on a complete
/// message. Then qmail-qfilterd (doc/filter-chain.md) runs the chain and hands back the
/// file to queue, which goes the way of a message without filters ([`queue_plain`]);
/// without a server that greets, qmail-qfilter runs over the file as before.
fn through_server(
    home: &std::path::Path,
    program: &std::path::Path,
    env: &[(&str, Option<&str>)],
    sender: &str,
    rcpts: &[String],
    read: impl FnOnce(&mut dyn Write) -> Outcome,
) -> (Option<Outcome>, Result<u32, queue::client::QqFailure>) {
    use qfilter::served::{Answer, Client};
    let temp = |text: &str| queue::client::QqFailure {
        permanent: false,
        text: text.to_string(),
        custom: false,
    };
    let Ok(mut message) = qfilter::spool::memory_file(c"message") else {
        return (None, Err(temp("qq out of memory (#4.3.0)")));
    };
    let outcome = read(&mut message);
    match outcome {
        Outcome::Complete => {}
        Outcome::QueueWriteFailed => {
            return (
                Some(outcome),
                Err(temp("qq write error or disk full (#4.3.0)")),
            );
        }
        _ => return (Some(outcome), Err(temp("qq read error (#4.3.0)"))),
    }
    let envelope = queue::envelope::qq_envelope(sender.as_bytes(), rcpts);
    let sealed = io::Seek::rewind(&mut message).is_ok() && qfilter::spool::seal(&message).is_ok();
    let (true, Ok(envelope_file)) = (sealed, qfilter::spool::sealed_file(&envelope)) else {
        return (
            Some(Outcome::QueueWriteFailed),
            Err(temp("qq write error or disk full (#4.3.0)")),
        );
    };
    let copy_of =
        |mut file: std::fs::File| move |w: &mut dyn Write| io::copy(&mut file, w).map(drop);
    let Some(client) = Client::connect(&qfilter::served::socket_path(home)) else {
        let result =
            queue::client::inject_env(program, env, sender.as_bytes(), rcpts, copy_of(message));
        return (Some(outcome), result);
    };
    let variables: Vec<(&str, std::ffi::OsString)> = qfilter::runner::KEPT
        .iter()
        .filter_map(|&k| match env.iter().find(|(n, _)| *n == k) {
            Some((_, v)) => v.map(|v| (k, v.into())),
            None => std::env::var_os(k).map(|v| (k, v)),
        })
        .collect();
    let result = match client.filter(&message, &envelope_file, &variables) {
        Answer::Queue(file) => {
            let plain = home.join("bin/qmail-queue");
            queue_plain(home, &plain, &[], sender, rcpts, copy_of(file))
        }
        Answer::Drop => Ok(std::process::id()),
        Answer::Refused(failure) => Err(failure),
        Answer::Gone => Err(temp("qq crashed (#4.3.0)")),
    };
    (Some(outcome), result)
}

/// Counting and checking over the LF-converted message, common to DATA and BDAT.
struct Progress<'a> {
    limits: &'a Limits<'a>,
    scan: HeaderScan,
    bytes: u64,
    too_big: bool,
    write_failed: bool,
}

impl<'a> Progress<'a> {
    fn start(limits: &'a Limits<'a>, w: &mut dyn Write) -> Progress<'a> {
        Progress {
            limits,
            scan: HeaderScan::new(limits.originator.is_some()),
            bytes: 0,
            too_big: false,
            write_failed: w.write_all(limits.received.as_bytes()).is_err(),
        }
    }

    /// Account for message bytes and pass them on while nothing is wrong.
    fn take(&mut self, bytes: &[u8], w: &mut dyn Write, refused: bool) {
        self.scan.feed(bytes);
        self.bytes += bytes.len() as u64;
        if self.limits.databytes > 0 && self.bytes > self.limits.databytes {
            self.too_big = true;
        }
        if !self.too_big && !refused && !self.write_failed && w.write_all(bytes).is_err() {
            self.write_failed = true;
        }
    }

    /// The outcome of a message read to its end: the first thing wrong, in this order.
    fn finish(self) -> Outcome {
        if self.too_big {
            return Outcome::TooBig;
        }
        if self.scan.hops >= MAX_HOPS {
            return Outcome::Looping;
        }
        if let (Some(check), Some(header)) = (self.limits.originator, &self.scan.capture) {
            if self.scan.overflow {
                return Outcome::Originator(Refusal::HeaderTooBig);
            }
            if let Err(r) = originator::check(header, check) {
                return Outcome::Originator(r);
            }
        }
        if self.write_failed {
            return Outcome::QueueWriteFailed;
        }
        Outcome::Complete
    }
}

/// Make sure there is input buffered; the outcome that ends reading otherwise.
fn need_input(conn: &mut Conn) -> Option<Outcome> {
    if !conn.buffered().is_empty() {
        return None;
    }
    match conn.fill() {
        Ok(0) => Some(Outcome::ClientGone),
        Ok(_) => None,
        Err(e) => Some(Outcome::ReadFailed(e)),
    }
}

/// The message after DATA, up to `CR LF . CR LF`.
pub fn read_data(conn: &mut Conn, w: &mut dyn Write, limits: &Limits) -> Outcome {
    let mut p = Progress::start(limits, w);
    let mut dot = Dot::new();
    let mut chunk = Vec::with_capacity(64 * 1024);
    loop {
        if let Some(end) = need_input(conn) {
            return end;
        }
        chunk.clear();
        let done = match dot.push(conn.buffered(), &mut chunk) {
            Step::More => {
                let n = conn.buffered().len();
                conn.consume(n);
                false
            }
            Step::End(n) => {
                conn.consume(n);
                true
            }
            Step::Error(b) => return Outcome::BareLineEnd(b),
        };
        p.take(&chunk, w, false);
        if done {
            return p.finish();
        }
    }
}

/// The BDAT chunks of one message, starting with `first` (size, LAST).
///
/// Chunk data is taken as it is (no dot-stuffing, no end marker), CR LF becoming LF.
/// A bare LF is a line end (what clients that send bare LF need BDAT for); a bare CR is
/// refused (`554`), so that no downstream server can read a CR as a line end. Between
/// chunks the next command is read here: BDAT continues, NOOP is answered, anything
/// else aborts the transaction (nothing queued) and is then run as a command.
pub fn read_chunks(
    conn: &mut Conn,
    w: &mut dyn Write,
    limits: &Limits,
    first: (u64, bool),
) -> Outcome {
    let mut p = Progress::start(limits, w);
    let mut cr_pending = false;
    let mut bare_cr = false;
    let mut chunk = Vec::with_capacity(64 * 1024);
    let (mut size, mut last) = first;
    loop {
        let total = size;
        while size > 0 {
            if let Some(end) = need_input(conn) {
                return end;
            }
            let k = (conn.buffered().len() as u64).min(size) as usize;
            chunk.clear();
            for &b in &conn.buffered()[..k] {
                if cr_pending {
                    cr_pending = false;
                    if b != b'\n' {
                        bare_cr = true;
                    }
                }
                match b {
                    b'\r' => cr_pending = true,
                    _ => chunk.push(b),
                }
            }
            conn.consume(k);
            size -= k as u64;
            p.take(&chunk, w, bare_cr);
        }
        if last {
            break;
        }
        conn.send(&crate::replies::chunk_received(total));
        match next_chunk(conn) {
            Ok(next) => (size, last) = next,
            Err(end) => return end,
        }
    }
    if bare_cr || cr_pending {
        return Outcome::BareCrInChunk;
    }
    p.finish()
}

/// Between chunks: the next `BDAT size [LAST]`, answering NOOP; anything else ends the
/// chunks with its outcome.
fn next_chunk(conn: &mut Conn) -> Result<(u64, bool), Outcome> {
    loop {
        let line = match conn.read_line(MAX_LINE) {
            Ok(Line::Text(l)) => l,
            Ok(Line::TooLong) => {
                conn.send(crate::replies::LINE_TOO_LONG);
                continue;
            }
            Ok(Line::Eof) => return Err(Outcome::ClientGone),
            Err(e) => return Err(Outcome::ReadFailed(e)),
        };
        let text = String::from_utf8_lossy(&line);
        let (verb, arg) = text.split_once(' ').unwrap_or((&text, ""));
        if verb.eq_ignore_ascii_case("BDAT") {
            return parse_bdat(arg.trim_start_matches(' ')).ok_or(Outcome::BadBdat);
        } else if verb.eq_ignore_ascii_case("NOOP") {
            conn.send(crate::replies::OK);
        } else {
            return Err(Outcome::Interrupted(line));
        }
    }
}

/// `size [LAST]` of a BDAT command.
pub fn parse_bdat(arg: &str) -> Option<(u64, bool)> {
    let mut it = arg.split(' ').filter(|w| !w.is_empty());
    let size = it.next()?;
    if size.is_empty() || size.len() > 18 || !size.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let last = match it.next() {
        None => false,
        Some(w) if w.eq_ignore_ascii_case("LAST") => true,
        Some(_) => return None,
    };
    if it.next().is_some() {
        return None;
    }
    Some((size.parse().ok()?, last))
}

/// Read and throw away `n` bytes of chunk data; false at EOF.
pub fn skip_bytes(conn: &mut Conn, mut n: u64) -> io::Result<bool> {
    while n > 0 {
        if conn.buffered().is_empty() && conn.fill()? == 0 {
            return Ok(false);
        }
        let k = (conn.buffered().len() as u64).min(n);
        conn.consume(k as usize);
        n -= k;
    }
    Ok(true)
}

/// Header tracking over the LF-converted message: hop count and, when asked, a copy
/// of the header for the originator check.
struct HeaderScan {
    in_header: bool,
    line_start: bool,
    prefix: Vec<u8>,
    hops: u32,
    capture: Option<Vec<u8>>,
    overflow: bool,
}

impl HeaderScan {
    fn new(capture: bool) -> HeaderScan {
        HeaderScan {
            in_header: true,
            line_start: true,
            prefix: Vec::new(),
            hops: 0,
            capture: capture.then(Vec::new),
            overflow: false,
        }
    }

    fn feed(&mut self, bytes: &[u8]) {
        if !self.in_header {
            return;
        }
        for &b in bytes {
            if let Some(c) = &mut self.capture {
                if c.len() < MAX_HEADER_CAPTURE {
                    c.push(b);
                } else {
                    self.overflow = true;
                }
            }
            if b == b'\n' {
                if self.line_start {
                    self.in_header = false;
                    return;
                }
                let p = &self.prefix;
                if p.starts_with(b"received") || p.starts_with(b"delivered") {
                    self.hops += 1;
                }
                self.prefix.clear();
                self.line_start = true;
            } else {
                if self.prefix.len() < 9 {
                    self.prefix.push(b.to_ascii_lowercase());
                }
                self.line_start = false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_counting() {
        let mut s = HeaderScan::new(false);
        s.feed(b"Received: a\nDelivered-To: b\nX: y\n\nReceived: body\n");
        assert_eq!(s.hops, 2);
    }

    /// A connection whose client sends `input` (from a thread: it may not fit the
    /// socket buffer) and then EOF.
    fn conn_with(input: &[u8]) -> (Conn, std::thread::JoinHandle<()>) {
        let (a, mut b) = std::os::unix::net::UnixStream::pair().unwrap();
        let input = input.to_vec();
        let client = std::thread::spawn(move || {
            let _ = b.write_all(&input);
            let _ = b.shutdown(std::net::Shutdown::Write);
            // keep reading replies until the server side is gone
            let _ = std::io::copy(&mut b, &mut std::io::sink());
        });
        (Conn::new(Box::new(a)), client)
    }

    fn data(input: &[u8], databytes: u64, check: Option<&dyn Fn(&str) -> bool>) -> Outcome {
        let (mut c, _peer) = conn_with(input);
        let limits = Limits {
            received: "Received: x\n",
            databytes,
            originator: check,
        };
        read_data(&mut c, &mut Vec::new(), &limits)
    }

    #[test]
    fn each_data_outcome() {
        let joe = |a: &str| a == "joe@x.test";
        let joe: &dyn Fn(&str) -> bool = &joe;
        let ok = b"From: joe@x.test\r\n\r\nhi\r\n.\r\n";
        assert!(matches!(data(ok, 0, Some(joe)), Outcome::Complete));
        assert!(matches!(data(ok, 5, Some(joe)), Outcome::TooBig));
        assert!(matches!(
            data(b"From: boss@x.test\r\n\r\n.\r\n", 0, Some(joe)),
            Outcome::Originator(Refusal::NotYours(..))
        ));
        assert!(matches!(
            data(b"hi\r\n.\r\n", 0, Some(joe)),
            Outcome::Originator(Refusal::NoFrom)
        ));
        assert!(matches!(data(b"hi\r\n.\r\n", 0, None), Outcome::Complete));
        let hops = "Received: x\r\n".repeat(MAX_HOPS as usize) + "\r\n.\r\n";
        assert!(matches!(data(hops.as_bytes(), 0, None), Outcome::Looping));
        assert!(matches!(
            data(b"a\n.\r\n", 0, None),
            Outcome::BareLineEnd(Bare::Lf)
        ));
        assert!(matches!(data(b"hi\r\n", 0, None), Outcome::ClientGone));
        let big = format!(
            "From: joe@x.test\r\nX: {}\r\n\r\n.\r\n",
            "y".repeat(300_000)
        );
        assert!(matches!(
            data(big.as_bytes(), 0, Some(joe)),
            Outcome::Originator(Refusal::HeaderTooBig)
        ));
    }

    #[test]
    fn each_chunk_outcome() {
        let run = |input: &[u8], first| {
            let (mut c, _peer) = conn_with(input);
            let limits = Limits {
                received: "",
                databytes: 0,
                originator: None,
            };
            let mut out = Vec::new();
            let o = read_chunks(&mut c, &mut out, &limits, first);
            (o, out)
        };
        let (o, out) = run(b"a\r\nbNOOP\r\nBDAT 2 LAST\r\nc\n", (4, false));
        assert!(matches!(o, Outcome::Complete), "{o:?}");
        assert_eq!(out, b"a\nbc\n");
        assert!(matches!(run(b"a\rb", (3, true)).0, Outcome::BareCrInChunk));
        assert!(matches!(run(b"ab\r", (3, true)).0, Outcome::BareCrInChunk));
        assert!(matches!(
            run(b"abBDAT x\r\n", (2, false)).0,
            Outcome::BadBdat
        ));
        assert!(matches!(
            run(b"abRSET\r\n", (2, false)).0,
            Outcome::Interrupted(l) if l == b"RSET"
        ));
        assert!(matches!(run(b"a", (2, true)).0, Outcome::ClientGone));
    }

    #[test]
    fn chunks_get_the_originator_check_too() {
        let joe = |a: &str| a == "joe@x.test";
        let run = |input: &'static [u8]| {
            let (mut c, _peer) = conn_with(input);
            let limits = Limits {
                received: "",
                databytes: 0,
                originator: Some(&joe),
            };
            read_chunks(&mut c, &mut Vec::new(), &limits, (input.len() as u64, true))
        };
        assert!(matches!(
            run(b"From: joe@x.test\n\nhi\n"),
            Outcome::Complete
        ));
        assert!(matches!(
            run(b"From: joe@x.test\nSender: boss@x.test\n\nhi\n"),
            Outcome::Originator(Refusal::NotYours(..))
        ));
        assert!(matches!(
            run(b"Subject: x\n\nFrom: joe@x.test\n"),
            Outcome::Originator(Refusal::NoFrom)
        ));
    }
}
