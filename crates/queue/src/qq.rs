//! The body of `qmail-queue` (qmail's `qmail-queue.c`, with Linux durability).
//!
//! Order of operations, each step failing with qmail's exit code:
//! 1. an unnamed file (`O_TMPFILE`) in `pid/` (63); its inode number N names the
//!    message. Where the file system has no unnamed files, qmail's way:
//!    `pid/<pid>.<time>.<seq>` created O_EXCL (63).
//! 2. linked to `mess/S/N` (64; the unnamed file through `/proc/self/fd/F`, the pid
//!    file by name, whose name is then removed, 63).
//! 3. `Received: (qmail P invoked by ...)` line and the message from fd 0 written (read
//!    error 54, write error or disk full 53).
//! 4. `intd/N` created O_EXCL (65): `u<uid>\0p<pid>\0`, then the envelope from fd 1
//!    (`F` first else 91; an address over 1003 bytes 11; EOF before the final NUL 54).
//!    Then the message file, `mess/S` and `intd/N` fsynced, in that order (53), with
//!    both files' writeback started first so that the disk work of the three overlaps
//!    ([`crate::batchsync`]; until session 5 the message was fsynced before `intd/N`
//!    was even made).
//! 5. `intd/N` linked to `todo/N` (66) and `todo/` fsynced: the commit point. Exit 0.
//!
//! Any failure before the commit point removes what was made, so nothing half-written is
//! ever visible in `todo/` and no failed injection can be delivered.
//!
//! File-system operations per message (issue 13; `strace -f` of one run, bench/README.md
//! "qmail-queue's system calls"): `openat(pid/, O_TMPFILE)`, `fstat`, `linkat` to
//! `mess/S/N`, the writes, `openat(intd/N, O_EXCL)`, its write, `sync_file_range` of
//! both, `fsync` of the file, `open`+`fsync` of `mess/S`, `fsync` of `intd/N`,
//! `linkat` to `todo/N`, `open`+`fsync` of
//! `todo/`, and the trigger's `open`. Each fsync stays, because each makes an
//! acknowledged message safe: the file's (its bytes and its link count, after the link),
//! `mess/S`'s (the name qmail-send and qmail-lspawn open), `intd/N`'s (the envelope
//! bytes, before the name that publishes them), `todo/`'s (the commit: after it, exit 0).
//! `intd/` itself is not fsynced, as before: only the `todo/N` name of that inode is ever
//! relied on. What went, and why that is not weaker:
//! - qmail's `pid/` name: creating it, linking it and removing it were three directory
//!   updates for a name nobody reads; the unnamed file has the same inode-number
//!   uniqueness (the inode is live until linked) and a crash before the link leaves
//!   nothing at all (the kernel frees an unlinked inode), where qmail leaves a `pid/`
//!   file for qmail-send to clean. The link comes before the writes and their fsync, as
//!   in qmail, so the file's fsync still covers its link count.
//! - the passwd lookup for the Received line ([`invoked`]: owners of the installer's
//!   directories instead, one `stat` on the SMTP path, no nsswitch, nscd or passwd).
//!
//! The qmail-queue program also stats the queue directory once (its owner is qmailq) and
//! ends with `_exit`.

use crate::envelope::ADDR_MAX;
use crate::layout::Layout;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// A qmail-queue failure: its exit code and a short reason for the log.
#[derive(Debug)]
pub struct QqError {
    pub code: i32,
    pub reason: String,
}

fn fail<T>(code: i32, reason: impl Into<String>) -> Result<T, QqError> {
    Err(QqError {
        code,
        reason: reason.into(),
    })
}

/// Who injected the message, for the Received line.
pub fn invoked_by(uid: u32, user_name: Option<&str>) -> String {
    match user_name {
        Some("alias") => "invoked by alias".into(),
        Some("qmaild") => "invoked from network".into(),
        Some("qmails") => "invoked for bounce".into(),
        _ => format!("invoked by uid {uid}"),
    }
}

/// The directories the installer gives to the qmail users that have a wording of
/// their own (crates/install `dirs()`): `smtpd` is qmaild's, `alias` the alias user's,
/// `queue/bounce` qmails'. Probed in this order: the network is the common case.
const OWNED_DIRS: [(&str, &str); 3] = [
    ("smtpd", "qmaild"),
    ("alias", "alias"),
    ("queue/bounce", "qmails"),
];

/// The Received line's wording for real uid `uid` without a user-database lookup: the
/// uids of qmaild, alias and qmails are the owners of their directories in the
/// installation at `home` (one `stat` each, stopping at the first match). An owner equal
/// to `queue_owner` (qmailq) means a single-user install, where every directory is the
/// caller's: no name applies then.
pub fn invoked(home: &Path, queue_owner: u32, uid: u32) -> String {
    if uid != queue_owner {
        for (dir, user) in OWNED_DIRS {
            let owner = std::fs::metadata(home.join(dir)).map(|m| m.uid());
            if owner.is_ok_and(|o| o == uid) {
                return invoked_by(uid, Some(user));
            }
        }
    }
    invoked_by(uid, None)
}

/// Queue one message. `message` is fd 0, `envelope` is fd 1 of qmail-queue. Returns
/// the message number (inode) on success.
pub fn enqueue(
    layout: &Layout,
    message: &mut dyn Read,
    envelope: &mut dyn Read,
    uid: u32,
    invoked: &str,
) -> Result<u64, QqError> {
    let pid = std::process::id();
    let start = qsys::now();
    let dir = &layout.dir;

    let received = format!(
        "Received: (qmail {pid} {invoked}); {}\n",
        qsys::date::date822(start)
    );
    // 1-2. a new file named mess/S/N after its inode number N
    let (mut file, id, mut guard) = match create_unnamed(dir)? {
        Some((file, id)) => {
            let guard = name_message(layout, &file, id)?;
            (file, id, guard)
        }
        None => create_with_pid_file(layout, pid, start)?,
    };
    // 3. Received line + message (made durable with the envelope, below)
    copy_message(received.as_bytes(), message, &mut file)?;

    // 4. intd/N with the envelope
    let intdname = layout.intd(id);
    let mut intd = match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(&intdname)
    {
        Ok(f) => f,
        Err(e) => return fail(65, format!("unable to create intd file: {e}")),
    };
    guard.paths.push(intdname.clone());
    let env = read_envelope(envelope)?;
    let mut head = format!("u{uid}\0p{pid}\0").into_bytes();
    head.extend_from_slice(&env);
    if let Err(e) = intd.write_all(&head) {
        return fail(53, format!("write error: {e}"));
    }
    // 3-4 durable: the message, its mess/S name, the envelope; both writebacks started
    // first, so that the three fsyncs' disk work overlaps (crate::batchsync)
    crate::batchsync::start_writeback([&file, &intd]);
    if let Err(e) = file.sync_all() {
        let _ = file.set_len(0);
        return fail(53, format!("fsync error: {e}"));
    }
    drop(file);
    if let Err(e) = qsys::fsync::sync_parent(&layout.mess(id)) {
        return fail(53, format!("fsync error: {e}"));
    }
    if let Err(e) = intd.sync_all() {
        return fail(53, format!("fsync error: {e}"));
    }
    drop(intd);

    // 5. commit: link into todo/, make the name durable
    let todoname = layout.todo(id);
    if let Err(e) = std::fs::hard_link(&intdname, &todoname) {
        return fail(66, format!("unable to link todo file: {e}"));
    }
    if let Err(e) = qsys::fsync::sync_parent(&todoname) {
        // The todo link may or may not survive a crash; the caller sees a failure
        // and will retry, so at worst the message is delivered twice.
        guard.paths.push(todoname);
        return fail(53, format!("fsync error: {e}"));
    }
    guard.armed = false;
    crate::trigger::pull(dir);
    Ok(id)
}

/// Step 1 on Linux: an unnamed file (`O_TMPFILE`) in `pid/`; its inode number is the
/// message number. `None` when the file system cannot make unnamed files (then
/// [`create_with_pid_file`]).
pub(crate) fn create_unnamed(dir: &Path) -> Result<Option<(File, u64)>, QqError> {
    let file = match std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_TMPFILE)
        .mode(0o644)
        .open(dir.join("pid"))
    {
        Ok(f) => f,
        Err(e) if matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP | libc::EISDIR)) => {
            return Ok(None);
        }
        Err(e) => return fail(63, format!("unable to create message file: {e}")),
    };
    match file.metadata() {
        Ok(m) => Ok(Some((file, m.ino()))),
        Err(e) => fail(63, format!("unable to stat message file: {e}")),
    }
}

/// Step 2 for an unnamed file: link it as `mess/S/N` through its `/proc/self/fd` name
/// (`linkat` with `AT_SYMLINK_FOLLOW`, which needs no privilege).
pub(crate) fn name_message(layout: &Layout, file: &File, id: u64) -> Result<Cleanup, QqError> {
    use std::os::fd::AsRawFd;
    let messname = layout.mess(id);
    let proc_name = format!("/proc/self/fd/{}", file.as_raw_fd());
    if let Err(e) = nix::unistd::linkat(
        nix::fcntl::AT_FDCWD,
        proc_name.as_str(),
        nix::fcntl::AT_FDCWD,
        &messname,
        nix::fcntl::AtFlags::AT_SYMLINK_FOLLOW,
    ) {
        return fail(64, format!("unable to link message: {e}"));
    }
    Ok(Cleanup {
        paths: vec![messname],
        armed: true,
    })
}

/// Steps 1-2 as qmail does them, where unnamed files are not available: `pid/<pid>.
/// <time>.<seq>` created O_EXCL, its inode names the message, linked to `mess/S/N`,
/// and the pid name removed.
fn create_with_pid_file(
    layout: &Layout,
    pid: u32,
    start: u64,
) -> Result<(File, u64, Cleanup), QqError> {
    let mut pidfile = None;
    for seq in 1..10 {
        let name = layout.dir.join(format!("pid/{pid}.{start}.{seq}"));
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&name)
        {
            Ok(f) => {
                pidfile = Some((f, name));
                break;
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return fail(63, format!("unable to create pid file: {e}")),
        }
    }
    let Some((file, pidname)) = pidfile else {
        return fail(63, "unable to create pid file");
    };
    let id = match file.metadata() {
        Ok(m) => m.ino(),
        Err(e) => {
            let _ = std::fs::remove_file(&pidname);
            return fail(63, format!("unable to stat pid file: {e}"));
        }
    };
    let messname = layout.mess(id);
    if let Err(e) = std::fs::hard_link(&pidname, &messname) {
        let _ = std::fs::remove_file(&pidname);
        return fail(64, format!("unable to link message: {e}"));
    }
    let guard = Cleanup {
        paths: vec![messname],
        armed: true,
    };
    if let Err(e) = std::fs::remove_file(&pidname) {
        return fail(63, format!("unable to remove pid file: {e}"));
    }
    Ok((file, id, guard))
}

/// `head`, then fd 0, into the message file: read errors are 54, write errors 53. The
/// head goes out with the first block of the message (one write for a small message).
fn copy_message(head: &[u8], input: &mut dyn Read, out: &mut File) -> Result<(), QqError> {
    let mut buf = vec![0u8; 64 * 1024];
    let write = |out: &mut File, data: &[u8]| match out.write_all(data) {
        Ok(()) => Ok(()),
        Err(e) => {
            let _ = out.set_len(0);
            fail(53, format!("write error: {e}"))
        }
    };
    let mut pending = 0;
    if head.len() < buf.len() {
        buf[..head.len()].copy_from_slice(head);
        pending = head.len();
    } else {
        write(out, head)?;
    }
    loop {
        let n = match input.read(&mut buf[pending..]) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return fail(54, format!("read error: {e}")),
        };
        write(out, &buf[..pending + n])?;
        if n == 0 {
            return Ok(());
        }
        pending = 0;
    }
}

/// Most envelope bytes read: what 100,000 maximal recipients could need, so that a
/// runaway writer cannot exhaust memory (the envelope is read whole; qmail-queued
/// refuses a longer one with 54 before reading it).
pub const ENVELOPE_MAX: u64 = 100_000 * (ADDR_MAX as u64 + 2);

/// Read and check the envelope from fd 1; returns the bytes to store after `u` and `p`
/// (the `F` record and the `T` records, without the final NUL).
fn read_envelope(input: &mut dyn Read) -> Result<Vec<u8>, QqError> {
    let mut data = Vec::with_capacity(4096);
    if let Err(e) = input.take(ENVELOPE_MAX).read_to_end(&mut data) {
        return fail(54, format!("envelope read error: {e}"));
    }
    check_envelope(&data)?;
    // strip the terminating NUL
    data.truncate(data.len() - 1);
    Ok(data)
}

/// Validate qq envelope bytes: `F<addr>\0` (`T<addr>\0`)* `\0`.
pub fn check_envelope(data: &[u8]) -> Result<(), QqError> {
    let mut pos = 0;
    let mut first = true;
    loop {
        let Some(&kind) = data.get(pos) else {
            return fail(54, "envelope ended early");
        };
        if kind == 0 && !first {
            return if pos + 1 == data.len() {
                Ok(())
            } else {
                fail(91, "trailing bytes after envelope")
            };
        }
        match (first, kind) {
            (true, b'F') | (false, b'T') => {}
            _ => return fail(91, "envelope format error"),
        }
        first = false;
        let rest = &data[pos + 1..];
        let Some(n) = rest.iter().position(|&b| b == 0) else {
            return if rest.len() >= ADDR_MAX {
                fail(11, "address too long")
            } else {
                fail(54, "envelope ended early")
            };
        };
        if n >= ADDR_MAX {
            return fail(11, "address too long");
        }
        pos += n + 2;
    }
}

/// Removes the named files unless disarmed: a failed injection leaves nothing behind.
pub(crate) struct Cleanup {
    pub(crate) paths: Vec<PathBuf>,
    pub(crate) armed: bool,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if self.armed {
            for p in self.paths.iter().rev() {
                remove_quietly(p);
            }
        }
    }
}

fn remove_quietly(p: &Path) {
    let _ = std::fs::remove_file(p);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue() -> (tempfile::TempDir, Layout) {
        let d = tempfile::tempdir().unwrap();
        let l = Layout {
            dir: d.path().to_path_buf(),
        };
        for s in ["pid", "intd", "todo", "lock"] {
            std::fs::create_dir_all(l.dir.join(s)).unwrap();
        }
        for i in 0..crate::SPLIT {
            std::fs::create_dir_all(l.dir.join(format!("mess/{i}"))).unwrap();
        }
        (d, l)
    }

    fn count(l: &Layout, sub: &str) -> usize {
        std::fs::read_dir(l.dir.join(sub)).unwrap().count()
    }

    #[test]
    fn queues_message_and_envelope() {
        let (_d, l) = queue();
        let id = enqueue(
            &l,
            &mut &b"Subject: hi\n\nbody\n"[..],
            &mut &b"Fa@x\0Tb@y\0Tc@z\0\0"[..],
            1000,
            "invoked by uid 1000",
        )
        .unwrap();
        let mess = std::fs::read_to_string(l.mess(id)).unwrap();
        assert!(mess.starts_with(&format!(
            "Received: (qmail {} invoked by uid 1000); ",
            std::process::id()
        )));
        assert!(mess.ends_with("\nSubject: hi\n\nbody\n"));
        let todo = std::fs::read(l.todo(id)).unwrap();
        assert_eq!(
            todo,
            format!("u1000\0p{}\0Fa@x\0Tb@y\0Tc@z\0", std::process::id()).as_bytes()
        );
        assert_eq!(std::fs::metadata(l.mess(id)).unwrap().ino(), id);
        assert_eq!(count(&l, "pid"), 0);
    }

    #[test]
    fn a_message_over_the_copy_buffer_is_copied_whole() {
        let (_d, l) = queue();
        let body: Vec<u8> = (0..200_000u32).map(|i| b'a' + (i % 26) as u8).collect();
        let id = enqueue(&l, &mut &body[..], &mut &b"Fa@x\0Tb@y\0\0"[..], 1, "x").unwrap();
        let mess = std::fs::read(l.mess(id)).unwrap();
        let received = format!("Received: (qmail {} x); ", std::process::id());
        assert!(mess.starts_with(received.as_bytes()));
        assert!(mess.ends_with(&body));
        let head_end = mess.iter().position(|&b| b == b'\n').unwrap() + 1;
        assert_eq!(mess.len(), head_end + body.len());
    }

    #[test]
    fn bad_envelopes_leave_nothing() {
        let (_d, l) = queue();
        let long = {
            let mut v = b"F".to_vec();
            v.extend(std::iter::repeat_n(b'a', 2000));
            v.extend_from_slice(b"\0\0");
            v
        };
        let cases: Vec<(&[u8], i32)> = vec![
            (b"Fa@x\0Tb@y\0", 54),      // missing terminator
            (b"Ta@x\0\0", 91),          // no F first
            (b"Fa@x\0Xb\0\0", 91),      // unknown record
            (b"Fa\0b@x\0Tc@y\0\0", 91), // NUL inside an address
            (&long, 11),                // address too long
            (b"", 54),                  // nothing at all
        ];
        for (env, code) in cases {
            let e = enqueue(&l, &mut &b"x\n"[..], &mut &env[..], 1, "x").unwrap_err();
            assert_eq!(e.code, code, "{:?}", String::from_utf8_lossy(env));
        }
        assert_eq!(count(&l, "todo"), 0);
        assert_eq!(count(&l, "intd"), 0);
        assert_eq!(count(&l, "pid"), 0);
        for i in 0..crate::SPLIT {
            assert_eq!(count(&l, &format!("mess/{i}")), 0);
        }
    }

    #[test]
    fn unnamed_and_pid_file_paths_name_the_message_by_its_inode() {
        let (_d, l) = queue();
        let (_f, id) = create_unnamed(&l.dir).unwrap().unwrap();
        assert_eq!(count(&l, "pid"), 0, "an unnamed file has no name in pid/");
        let guard = name_message(&l, &_f, id).unwrap();
        assert_eq!(std::fs::metadata(l.mess(id)).unwrap().ino(), id);
        drop(guard);
        assert!(!l.mess(id).exists(), "an armed guard removes mess/S/N");
        let (_f, id, guard) = create_with_pid_file(&l, 1, 2).unwrap();
        assert_eq!(std::fs::metadata(l.mess(id)).unwrap().ino(), id);
        assert_eq!(count(&l, "pid"), 0);
        drop(guard);
    }

    #[test]
    fn wording_from_directory_owners() {
        let d = tempfile::tempdir().unwrap();
        for dir in ["smtpd", "alias", "queue/bounce"] {
            std::fs::create_dir_all(d.path().join(dir)).unwrap();
        }
        let me = nix::unistd::getuid().as_raw();
        // Every directory is ours: as qmaild (the first probed) unless we are qmailq.
        let other = me.wrapping_add(1);
        assert_eq!(invoked(d.path(), other, me), "invoked from network");
        assert_eq!(invoked(d.path(), me, me), format!("invoked by uid {me}"));
        assert_eq!(
            invoked(d.path(), other, other),
            format!("invoked by uid {other}")
        );
        std::fs::remove_dir(d.path().join("smtpd")).unwrap();
        assert_eq!(invoked(d.path(), other, me), "invoked by alias");
        std::fs::remove_dir(d.path().join("alias")).unwrap();
        assert_eq!(invoked(d.path(), other, me), "invoked for bounce");
    }

    #[test]
    fn received_wording() {
        assert_eq!(invoked_by(7, Some("alias")), "invoked by alias");
        assert_eq!(invoked_by(7, Some("qmaild")), "invoked from network");
        assert_eq!(invoked_by(7, Some("qmails")), "invoked for bounce");
        assert_eq!(invoked_by(7, Some("joe")), "invoked by uid 7");
    }
}
