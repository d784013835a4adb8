//! qmail-pop3d's transaction state (RFC 1939 section 5, `nq106:qmail-pop3d.c`).
//!
//! Differences from qmail 1.03, all towards RFC 1939 and what Dovecot does:
//! - STAT counts only messages not marked deleted (qmail counted them all);
//! - RETR/TOP end with `.` right after the message (no extra blank line), and a line
//!   already ending in CRLF is not given a second CR;
//! - CAPA is answered (TOP, UIDL, PIPELINING);
//! - the Maildir may be Dovecot's too (IMAP): a message it renamed during the session
//!   (moved to `cur/`, flags changed) is found again by its unique part for RETR/TOP
//!   and for the deletion at QUIT, and one it expunged meanwhile is no error.
//!
//! QUIT removes many deleted messages on a few threads at once (`remove_all`), since
//! each removal may wait on the disk.
//!
//! Sizes are file sizes (LF line ends), as in qmail: computing CRLF octets would mean
//! reading every message at login.

use crate::line::{Line, read_line, split_command};
use crate::maildir::{self, Message};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

/// Longest command line accepted.
pub const MAX_LINE: usize = 1024;

/// Threads that remove the deleted messages at QUIT, at most (bench/README.md, session
/// 13: 4 threads removed 4,000 files 2.4 times as fast as one, 8 hardly faster than 4).
const REMOVE_THREADS: usize = 4;

/// Fewer deleted messages than this are removed by the session's thread alone.
const REMOVE_PARALLEL_FROM: usize = 64;

/// Stack of a removing thread: it only builds paths and, for a message another reader
/// renamed, lists a Maildir directory (on the heap).
const REMOVE_STACK: usize = 256 * 1024;

/// One mailbox session.
pub struct Session {
    maildir: PathBuf,
    msgs: Vec<Message>,
    last: usize,
}

/// How a session ended: the exit code of qmail-pop3d.
pub type Exit = i32;

fn ok(w: &mut impl Write, text: &str) -> io::Result<()> {
    w.write_all(format!("+OK {text}\r\n").as_bytes())?;
    w.flush()
}

fn err(w: &mut impl Write, text: &str) -> io::Result<()> {
    w.write_all(format!("-ERR {text}\r\n").as_bytes())?;
    w.flush()
}

/// Copy a message in POP3 form: CRLF line ends, leading `.` doubled; with `body_lines`
/// `Some(k)`, only the header, the blank line and `k` body lines (TOP).
pub fn write_message(
    r: &mut impl BufRead,
    w: &mut impl Write,
    body_lines: Option<u64>,
) -> io::Result<()> {
    let mut line = Vec::with_capacity(256);
    let mut in_header = true;
    let mut body = 0u64;
    loop {
        if !in_header && body_lines.is_some_and(|k| body >= k) {
            break;
        }
        line.clear();
        if r.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        if line.first() == Some(&b'.') {
            w.write_all(b".")?;
        }
        w.write_all(&line)?;
        w.write_all(b"\r\n")?;
        if in_header {
            if line.is_empty() {
                in_header = false;
            }
        } else {
            body += 1;
        }
    }
    w.write_all(b".\r\n")
}

impl Session {
    /// Open `maildir` (cleaning `tmp/`, listing messages older than this second).
    pub fn open(maildir: &Path) -> io::Result<Session> {
        let now = qsys::now() as i64;
        maildir::clean_tmp(maildir, now);
        Ok(Session {
            maildir: maildir.to_path_buf(),
            msgs: maildir::scan(maildir, now)?,
            last: 0,
        })
    }

    pub fn messages(&self) -> &[Message] {
        &self.msgs
    }

    /// Parse a message number; the error text is the reply.
    fn number(&self, arg: &[u8]) -> Result<usize, &'static str> {
        let s = std::str::from_utf8(arg).map_err(|_| "syntax error")?;
        let s = s.split(' ').next().unwrap_or("");
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err("syntax error");
        }
        let n: usize = s.parse().map_err(|_| "not that many messages")?;
        if n == 0 {
            return Err("messages are counted from 1");
        }
        if n > self.msgs.len() {
            return Err("not that many messages");
        }
        if self.msgs[n - 1].deleted {
            return Err("already deleted");
        }
        Ok(n - 1)
    }

    /// Run the session on `r`/`w` after the `+OK` greeting; returns the exit code.
    /// Read errors and timeouts end the session without deleting anything.
    pub fn run(&mut self, r: &mut impl BufRead, w: &mut impl Write) -> Exit {
        loop {
            let line = match read_line(r, MAX_LINE) {
                Ok(Line::Text(l)) => l,
                Ok(Line::TooLong) => {
                    if err(w, "line too long").is_err() {
                        return 1;
                    }
                    continue;
                }
                Ok(Line::Eof) | Err(_) => return 0,
            };
            let (verb, arg) = split_command(&line);
            let res = match verb.as_str() {
                "QUIT" => return self.quit(w),
                _ => self.command(&verb, arg, w),
            };
            if res.is_err() {
                return 1;
            }
        }
    }

    fn command(&mut self, verb: &str, arg: &[u8], w: &mut impl Write) -> io::Result<()> {
        match verb {
            "NOOP" => ok(w, ""),
            "STAT" => {
                let live = self.msgs.iter().filter(|m| !m.deleted);
                let (n, total) = live.fold((0u64, 0u64), |(n, t), m| (n + 1, t + m.size));
                ok(w, &format!("{n} {total}"))
            }
            "LIST" | "UIDL" => {
                let value = |m: &Message| {
                    if verb == "LIST" {
                        m.size.to_string()
                    } else {
                        m.uid()
                    }
                };
                if arg.is_empty() {
                    let mut out = String::from("+OK \r\n");
                    for (i, m) in self.msgs.iter().enumerate() {
                        if !m.deleted {
                            out.push_str(&format!("{} {}\r\n", i + 1, value(m)));
                        }
                    }
                    out.push_str(".\r\n");
                    w.write_all(out.as_bytes())?;
                    w.flush()
                } else {
                    match self.number(arg) {
                        Ok(i) => ok(w, &format!("{} {}", i + 1, value(&self.msgs[i]))),
                        Err(e) => err(w, e),
                    }
                }
            }
            "RETR" | "TOP" => {
                let (i, limit) = match self.number(arg) {
                    Err(e) => return err(w, e),
                    Ok(i) if verb == "RETR" => (i, None),
                    Ok(i) => {
                        let mut parts = arg.split(|&b| b == b' ').skip(1);
                        let k = parts
                            .next()
                            .and_then(|k| std::str::from_utf8(k).ok())
                            .and_then(|k| k.parse::<u64>().ok());
                        match k {
                            Some(k) => (i, Some(k)),
                            None => return err(w, "syntax error"),
                        }
                    }
                };
                let f = match self.open_message(i) {
                    Some(f) => f,
                    None => return err(w, "unable to open that message"),
                };
                w.write_all(b"+OK \r\n")?;
                write_message(&mut BufReader::with_capacity(65536, f), w, limit)?;
                w.flush()
            }
            "DELE" => match self.number(arg) {
                Ok(i) => {
                    self.msgs[i].deleted = true;
                    self.last = self.last.max(i + 1);
                    ok(w, "")
                }
                Err(e) => err(w, e),
            },
            "RSET" => {
                for m in &mut self.msgs {
                    m.deleted = false;
                }
                self.last = 0;
                ok(w, "")
            }
            "LAST" => ok(w, &self.last.to_string()),
            "CAPA" => {
                w.write_all(b"+OK capability list follows\r\nTOP\r\nUIDL\r\nPIPELINING\r\n.\r\n")?;
                w.flush()
            }
            _ => err(w, "unimplemented"),
        }
    }

    /// Open message `i`; when another reader (Dovecot) renamed it meanwhile (moved it
    /// to `cur/`, changed its flags), find it by its unique part and remember the name.
    fn open_message(&mut self, i: usize) -> Option<std::fs::File> {
        let m = self.msgs.get_mut(i)?;
        match std::fs::File::open(self.maildir.join(&m.rel)) {
            Ok(f) => Some(f),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let now = maildir::find(&self.maildir, &m.uid()).ok()??;
                let f = std::fs::File::open(self.maildir.join(&now)).ok()?;
                m.rel = now;
                Some(f)
            }
            Err(_) => None,
        }
    }

    /// Remove the message at `rel`, or where another reader moved it since; a message
    /// already gone (expunged over IMAP) is no error.
    fn remove(&self, m: &Message) -> io::Result<()> {
        match std::fs::remove_file(self.maildir.join(&m.rel)) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                match maildir::find(&self.maildir, &m.uid())? {
                    Some(now) => match std::fs::remove_file(self.maildir.join(now)) {
                        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                        r => r,
                    },
                    None => Ok(()),
                }
            }
            r => r,
        }
    }

    /// Move a message not deleted from `new/` to `cur/` (one another reader moved
    /// meanwhile stays where it is).
    fn move_to_cur(&self, m: &Message) {
        if m.in_new()
            && let Some(name) = m.rel.file_name()
        {
            let mut to = name.to_os_string();
            to.push(":2,");
            let _ = std::fs::rename(self.maildir.join(&m.rel), self.maildir.join("cur").join(to));
        }
    }

    /// Remove `doomed`, each one tried, on up to [`REMOVE_THREADS`] threads when there
    /// are at least [`REMOVE_PARALLEL_FROM`]: a removal can wait on the disk (ext4
    /// without a journal, mounted with `discard`, trims the freed blocks before `unlink`
    /// returns: about 70 µs a file on the benchmark machine), and the waits of different
    /// files overlap. A part whose thread cannot be started is done by the session's
    /// thread after its own. Returns whether every one was removed, and how many helper
    /// threads ran.
    fn remove_all(&self, doomed: &[&Message]) -> (bool, usize) {
        let remove_part =
            |part: &[&Message]| part.iter().fold(true, |ok, m| self.remove(m).is_ok() & ok);
        if doomed.len() < REMOVE_PARALLEL_FROM {
            return (remove_part(doomed), 0);
        }
        // Under `softlimit -m` (the run script's 100 MB) a thread's own malloc arena,
        // a 64 MiB reservation, cannot be made, and glibc would try again at each
        // allocation: the few small ones of the helpers share the main arena instead.
        // SAFETY: mallopt only changes a malloc tunable; no other thread runs yet.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 1);
        }
        let size = doomed.len().div_ceil(REMOVE_THREADS);
        let (first, rest) = doomed.split_at(size);
        std::thread::scope(|scope| {
            let mut helpers = Vec::new();
            let mut left = Vec::new();
            for part in rest.chunks(size) {
                match std::thread::Builder::new()
                    .stack_size(REMOVE_STACK)
                    .spawn_scoped(scope, move || remove_part(part))
                {
                    Ok(h) => helpers.push(h),
                    Err(_) => left.push(part),
                }
            }
            let started = helpers.len();
            let mut ok = remove_part(first);
            for part in left {
                ok &= remove_part(part);
            }
            for h in helpers {
                ok &= h.join().unwrap_or(false);
            }
            (ok, started)
        })
    }

    /// QUIT: the UPDATE state (RFC 1939 section 6): deleted messages removed, the rest
    /// of `new/` moved to `cur/`; then `+OK`, or `-ERR` when a deleted message could
    /// not be removed.
    fn quit(&mut self, w: &mut impl Write) -> Exit {
        let doomed: Vec<&Message> = self.msgs.iter().filter(|m| m.deleted).collect();
        let (removed, _) = self.remove_all(&doomed);
        for m in self.msgs.iter().filter(|m| !m.deleted) {
            self.move_to_cur(m);
        }
        let r = if removed {
            ok(w, "")
        } else {
            err(w, "unable to unlink all deleted messages")
        };
        i32::from(r.is_err() || !removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pop(msg: &[u8], k: Option<u64>) -> String {
        let mut out = Vec::new();
        write_message(&mut io::Cursor::new(msg.to_vec()), &mut out, k).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn message_forms() {
        assert_eq!(
            pop(b"A: b\n\n.dot\nx\n", None),
            "A: b\r\n\r\n..dot\r\nx\r\n.\r\n"
        );
        assert_eq!(pop(b"A: b\r\n\r\nx", None), "A: b\r\n\r\nx\r\n.\r\n");
        assert_eq!(
            pop(b"A: b\n\n1\n2\n3\n", Some(2)),
            "A: b\r\n\r\n1\r\n2\r\n.\r\n"
        );
        assert_eq!(pop(b"A: b\n\n1\n", Some(0)), "A: b\r\n\r\n.\r\n");
        // no body at all
        assert_eq!(pop(b"A: b\nC: d\n", Some(5)), "A: b\r\nC: d\r\n.\r\n");
        assert_eq!(pop(b"", None), ".\r\n");
    }

    fn mailbox(n: usize) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        for s in ["new", "cur", "tmp"] {
            std::fs::create_dir(d.path().join(s)).unwrap();
        }
        for i in 0..n {
            let p = d.path().join(format!("new/{}.m{i}", 1000 + i));
            std::fs::write(&p, format!("Subject: {i}\n\nbody {i}\n")).unwrap();
            let ts = nix::sys::time::TimeSpec::new(1000 + i as i64, 0);
            nix::sys::stat::utimensat(
                nix::fcntl::AT_FDCWD,
                &p,
                &ts,
                &ts,
                nix::sys::stat::UtimensatFlags::FollowSymlink,
            )
            .unwrap();
        }
        d
    }

    fn session(dir: &Path, input: &str) -> (String, Exit) {
        let mut s = Session::open(dir).unwrap();
        let mut out = Vec::new();
        let code = s.run(&mut io::Cursor::new(input.as_bytes().to_vec()), &mut out);
        (String::from_utf8(out).unwrap(), code)
    }

    #[test]
    fn commands_and_update() {
        let d = mailbox(3);
        let (out, code) = session(
            d.path(),
            "STAT\r\nLIST\r\nUIDL 2\r\nDELE 2\r\nDELE 2\r\nSTAT\r\nLAST\r\nRETR 2\r\nLIST 4\r\nLIST 0\r\nRETR x\r\nTOP 1 0\r\nbogus\r\nQUIT\r\n",
        );
        assert_eq!(code, 0);
        let want = [
            "+OK 3 57",
            "+OK ",
            "1 19",
            "2 19",
            "3 19",
            ".",
            "+OK 2 1001.m1",
            "+OK ",
            "-ERR already deleted",
            "+OK 2 38",
            "+OK 2",
            "-ERR already deleted",
            "-ERR not that many messages",
            "-ERR messages are counted from 1",
            "-ERR syntax error",
            "+OK ",
            "Subject: 0",
            "",
            ".",
            "-ERR unimplemented",
            "+OK ",
        ];
        assert_eq!(out, want.join("\r\n") + "\r\n");
        let new: Vec<_> = std::fs::read_dir(d.path().join("new")).unwrap().collect();
        assert!(new.is_empty());
        let mut cur: Vec<String> = std::fs::read_dir(d.path().join("cur"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        cur.sort();
        assert_eq!(cur, ["1000.m0:2,", "1002.m2:2,"]);
    }

    /// Dovecot renames a message when it moves it to `cur/` or changes its flags: a
    /// session that listed the old name still retrieves and deletes it.
    #[test]
    fn messages_renamed_by_another_reader_are_found() {
        let d = mailbox(3);
        let mut s = Session::open(d.path()).unwrap();
        std::fs::rename(
            d.path().join("new/1000.m0"),
            d.path().join("cur/1000.m0:2,S"),
        )
        .unwrap();
        std::fs::rename(
            d.path().join("new/1001.m1"),
            d.path().join("cur/1001.m1:2,FS"),
        )
        .unwrap();
        // expunged over IMAP
        std::fs::remove_file(d.path().join("new/1002.m2")).unwrap();
        let mut out = Vec::new();
        let code = s.run(
            &mut io::Cursor::new(b"RETR 1\r\nDELE 2\r\nDELE 3\r\nRETR 3\r\nQUIT\r\n".to_vec()),
            &mut out,
        );
        let out = String::from_utf8(out).unwrap();
        assert_eq!(code, 0, "{out}");
        assert!(out.starts_with("+OK \r\nSubject: 0\r\n"), "{out}");
        assert!(out.ends_with("-ERR already deleted\r\n+OK \r\n"), "{out}");
        let cur: Vec<String> = std::fs::read_dir(d.path().join("cur"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(cur, ["1000.m0:2,S"]);
    }

    /// Enough deletions for the threaded removal: every one is done and the rest
    /// move to `cur/`.
    #[test]
    fn quit_removes_many_messages_on_threads() {
        let n = REMOVE_PARALLEL_FROM * 3 + 5;
        let d = mailbox(n);
        let mut cmds: String = (1..=n)
            .filter(|i| i % 7 != 0)
            .map(|i| format!("DELE {i}\r\n"))
            .collect();
        cmds.push_str("QUIT\r\n");
        let (out, code) = session(d.path(), &cmds);
        assert_eq!(code, 0);
        assert!(out.ends_with("+OK \r\n"), "{out}");
        assert_eq!(std::fs::read_dir(d.path().join("new")).unwrap().count(), 0);
        assert_eq!(
            std::fs::read_dir(d.path().join("cur")).unwrap().count(),
            n / 7
        );
    }

    /// A removal that fails (a directory in the message's place) in the session
    /// thread's part, a helper's and the last one's: the others are all still removed,
    /// three helpers ran, and QUIT says -ERR.
    #[test]
    fn failed_removals_leave_the_others_done() {
        let n = REMOVE_PARALLEL_FROM * 3 + 5;
        let d = mailbox(n);
        let mut s = Session::open(d.path()).unwrap();
        let mut stuck: Vec<PathBuf> = [0, n / 2, n - 1]
            .iter()
            .map(|&i| d.path().join(format!("new/{}.m{i}", 1000 + i)))
            .collect();
        for p in &stuck {
            std::fs::remove_file(p).unwrap();
            std::fs::create_dir(p).unwrap();
            std::fs::write(p.join("x"), "").unwrap();
        }
        for m in &mut s.msgs {
            m.deleted = true;
        }
        let doomed: Vec<&Message> = s.msgs.iter().collect();
        assert_eq!(s.remove_all(&doomed), (false, REMOVE_THREADS - 1));
        let mut left: Vec<PathBuf> = std::fs::read_dir(d.path().join("new"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        left.sort();
        stuck.sort();
        assert_eq!(left, stuck);

        let mut out = Vec::new();
        let code = s.run(&mut io::Cursor::new(b"QUIT\r\n".to_vec()), &mut out);
        assert_eq!(code, 1);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "-ERR unable to unlink all deleted messages\r\n"
        );
    }

    #[test]
    fn disconnect_before_quit_deletes_nothing() {
        let d = mailbox(2);
        let (_, code) = session(d.path(), "DELE 1\r\nDELE 2\r\n");
        assert_eq!(code, 0);
        assert_eq!(std::fs::read_dir(d.path().join("new")).unwrap().count(), 2);
        // RSET undoes deletions
        let (out, _) = session(d.path(), "DELE 1\r\nRSET\r\nLAST\r\nSTAT\r\nQUIT\r\n");
        assert!(out.contains("+OK 0\r\n+OK 2 38\r\n"), "{out}");
        assert_eq!(std::fs::read_dir(d.path().join("cur")).unwrap().count(), 2);
    }
}

/// Random input must never panic the parsers facing the network (a cheap stand-in for
/// a fuzz target that runs in every `cargo test`).
#[cfg(test)]
mod robustness {
    use super::*;

    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn bytes(&mut self, n: usize) -> Vec<u8> {
            const WORDS: [&[u8]; 14] = [
                b"STAT", b"LIST", b"UIDL", b"RETR", b"TOP", b"DELE", b"RSET", b"LAST", b"NOOP",
                b"CAPA", b" ", b"\r\n", b"\n", b"1",
            ];
            let mut v = Vec::new();
            while v.len() < n {
                match self.next() % 4 {
                    0 => v.extend_from_slice(WORDS[(self.next() % 14) as usize]),
                    1 => v.extend_from_slice(self.next().to_string().as_bytes()),
                    _ => v.push(self.next() as u8),
                }
            }
            v
        }
    }

    #[test]
    fn random_sessions_do_not_panic() {
        let d = tempfile::tempdir().unwrap();
        for s in ["new", "cur", "tmp"] {
            std::fs::create_dir(d.path().join(s)).unwrap();
        }
        for i in 0..3 {
            let p = d.path().join(format!("new/{i}"));
            std::fs::write(&p, b"Subject: x\n\n.\n..\nbody\n").unwrap();
            let ts = nix::sys::time::TimeSpec::new(1000 + i, 0);
            nix::sys::stat::utimensat(
                nix::fcntl::AT_FDCWD,
                &p,
                &ts,
                &ts,
                nix::sys::stat::UtimensatFlags::FollowSymlink,
            )
            .unwrap();
        }
        let mut rng = Rng(0x9e3779b97f4a7c15);
        for _ in 0..2000 {
            let n = (rng.next() % 300) as usize;
            let input = rng.bytes(n);
            let mut s = Session::open(d.path()).unwrap();
            let mut out = Vec::new();
            // no QUIT is generated, so the mailbox stays as it is
            let code = s.run(&mut io::Cursor::new(input), &mut out);
            assert_eq!(code, 0);
            assert!(out.ends_with(b"\r\n") || out.is_empty());
            let mut r = io::Cursor::new(rng.bytes(n));
            while !matches!(
                crate::line::read_line(&mut r, 40).unwrap(),
                crate::line::Line::Eof
            ) {}
            #[cfg(feature = "popup")]
            {
                let _ = crate::popup::decode_plain(&rng.bytes(n));
                let _ = auth::Credentials::parse(&rng.bytes(n));
            }
        }
        assert_eq!(std::fs::read_dir(d.path().join("new")).unwrap().count(), 3);
    }
}
