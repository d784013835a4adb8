//! What qmail-quarantine does, as root, in a directory its filter user (qmailf) owns:
//! list, show, release, delete.
//!
//! qmailf can put anything into HOME/quarantine, so nothing here follows a link: HOME is
//! opened as the administrator named it, then `quarantine`, `new` and `cur` one
//! component at a time, and each message with `O_NOFOLLOW` as a regular file with one
//! link (qsys::safefs). An ID is a file name of `new/` or `cur/` (there also without
//! the `:2,FLAGS` a mail reader appends); one with a `/` or a leading `.` is refused
//! before anything is opened.
//!
//! Release hands the message, without its `X-Quarantine-*` block, to HOME/bin/qmail-queue
//! itself (never `$QMAILQUEUE`: the filter that stopped it must not stop it again) with
//! the recorded envelope, and removes the copy only after qmail-queue exited 0. The copy
//! is locked meanwhile, so two releases at once queue it once.

use crate::record::{self, Record};
use nix::fcntl::{Flock, FlockArg};
use qsys::safefs::{Dir, Kind};
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The Maildir subdirectories a quarantined message may be in.
const SUBDIRS: [&str; 2] = ["new", "cur"];

/// Why a command failed: permanent (exit 100: bad ID, no such message, a refused or
/// damaged entry, qmail-queue refused for good) or temporary (exit 111).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub permanent: bool,
    pub text: String,
}

impl Failure {
    fn perm(text: impl Into<String>) -> Failure {
        Failure {
            permanent: true,
            text: text.into(),
        }
    }

    fn temp(text: impl Into<String>) -> Failure {
        Failure {
            permanent: false,
            text: text.into(),
        }
    }

    /// An I/O error: a refusal (a link, a wrong file type) or damaged data is
    /// permanent, anything else temporary.
    fn io(e: io::Error) -> Failure {
        match e.kind() {
            io::ErrorKind::PermissionDenied
            | io::ErrorKind::InvalidData
            | io::ErrorKind::InvalidInput => Failure::perm(e.to_string()),
            _ => Failure::temp(e.to_string()),
        }
    }

    /// The exit code for this failure: 100 permanent, 111 temporary.
    pub fn exit_code(&self) -> i32 {
        if self.permanent {
            qsys::die::PERM
        } else {
            qsys::die::TEMP
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// Refuse an ID that is not a plain Maildir file name.
pub fn check_id(id: &str) -> Result<(), Failure> {
    if id.is_empty() || id.contains('/') || id.starts_with('.') || id.contains('\0') {
        return Err(Failure::perm(format!(
            "not a quarantine ID: {}",
            record::escape(id)
        )));
    }
    Ok(())
}

/// One listed message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub id: String,
    pub record: Record,
}

/// An opened quarantine directory.
pub struct Quarantine {
    path: PathBuf,
    subdirs: Vec<Dir>,
}

/// A message found by ID: its directory, its name there, its open file, and its inode
/// (to see that it is still the same file once locked).
struct Found<'a> {
    dir: &'a Dir,
    name: String,
    file: File,
    ino: (u64, u64),
}

impl Quarantine {
    /// Open HOME/quarantine (HOME as given; everything below it without following links).
    pub fn open(home: &Path) -> Result<Quarantine, Failure> {
        let home_dir = Dir::open_trusted(home).map_err(Failure::io)?;
        let q = home_dir.subdir(crate::DIR).map_err(Failure::io)?;
        let subdirs = SUBDIRS
            .iter()
            .map(|s| q.subdir(s))
            .collect::<io::Result<Vec<_>>>()
            .map_err(Failure::io)?;
        Ok(Quarantine {
            path: q.path().to_path_buf(),
            subdirs,
        })
    }

    /// The quarantine directory's path (for messages).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every message, oldest name first. Entries that cannot be read (a link, a damaged
    /// file) are left out and described in the second list, one text each.
    pub fn list(&self) -> Result<(Vec<Entry>, Vec<String>), Failure> {
        let mut entries = Vec::new();
        let mut problems = Vec::new();
        for dir in &self.subdirs {
            for id in names(dir).map_err(Failure::io)? {
                if check_id(&id).is_err() {
                    continue;
                }
                let read = dir
                    .open_entry(&id, Kind::File)
                    .and_then(|fd| fd.ok_or_else(|| io::ErrorKind::NotFound.into()))
                    .and_then(|fd| record::read(&mut BufReader::new(File::from(fd))));
                match read {
                    Ok(record) => entries.push(Entry { id, record }),
                    // removed meanwhile (released, delivered to cur/)
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => problems.push(format!("{}: {e}", dir.join(&id).display())),
                }
            }
        }
        entries.sort_by(|a, b| a.id.cmp(&b.id));
        Ok((entries, problems))
    }

    fn find(&self, id: &str) -> Result<Found<'_>, Failure> {
        check_id(id)?;
        for dir in &self.subdirs {
            if let Some(fd) = dir.open_entry(id, Kind::File).map_err(Failure::io)? {
                let file = File::from(fd);
                let md = file.metadata().map_err(|e| Failure::temp(e.to_string()))?;
                return Ok(Found {
                    dir,
                    name: id.to_string(),
                    file,
                    ino: (md.dev(), md.ino()),
                });
            }
        }
        // moved to cur/ by a mail reader, which appends its flags (`ID:2,S`)
        let cur = self
            .subdirs
            .last()
            .ok_or_else(|| Failure::temp("no cur/"))?;
        let flagged = names(cur)
            .map_err(Failure::io)?
            .into_iter()
            .find(|n| n.strip_prefix(id).is_some_and(|rest| rest.starts_with(':')));
        if let Some(name) = flagged
            && let Some(fd) = cur.open_entry(&name, Kind::File).map_err(Failure::io)?
        {
            let file = File::from(fd);
            let md = file.metadata().map_err(|e| Failure::temp(e.to_string()))?;
            return Ok(Found {
                dir: cur,
                name,
                file,
                ino: (md.dev(), md.ino()),
            });
        }
        Err(Failure::perm(format!(
            "no message {} in {}",
            record::escape(id),
            self.path.display()
        )))
    }

    /// Copy the stored file (its `X-Quarantine-*` block, then the message) to `out`.
    pub fn show(&self, id: &str, out: &mut dyn Write) -> Result<(), Failure> {
        let found = self.find(id)?;
        record::read(&mut BufReader::new(&found.file)).map_err(Failure::io)?;
        let mut file = &found.file;
        file.rewind()
            .and_then(|_| io::copy(&mut file, out))
            .and_then(|_| out.flush())
            .map_err(|e| Failure::temp(format!("unable to write: {e}")))?;
        Ok(())
    }

    /// Queue the message through `qmail_queue` to its recorded envelope, then remove it.
    pub fn release(&self, id: &str, qmail_queue: &Path) -> Result<Record, Failure> {
        let found = self.find(id)?;
        let locked = match Flock::lock(found.file, FlockArg::LockExclusiveNonblock) {
            Ok(l) => l,
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => {
                return Err(Failure::temp(format!(
                    "{} is being released by another process",
                    record::escape(id)
                )));
            }
            Err((_, e)) => return Err(Failure::temp(format!("unable to lock: {e}"))),
        };
        // A concurrent release may have finished between our open and our lock.
        let now = found
            .dir
            .open_entry(&found.name, Kind::File)
            .map_err(Failure::io)?;
        let same = now
            .map(File::from)
            .and_then(|f| f.metadata().ok())
            .is_some_and(|md| (md.dev(), md.ino()) == found.ino);
        if !same {
            return Err(Failure::perm(format!(
                "{} was released or removed meanwhile",
                record::escape(id)
            )));
        }
        let mut r = BufReader::new(&*locked);
        let rec = record::read(&mut r).map_err(Failure::io)?;
        let mut message = Vec::new();
        r.read_to_end(&mut message)
            .map_err(|e| Failure::temp(format!("unable to read: {e}")))?;
        if message.len() as u64 != rec.size {
            return Err(Failure::perm(format!(
                "{}: the message has {} bytes, the record says {}",
                record::escape(id),
                message.len(),
                rec.size
            )));
        }
        if rec.reason.recipients.is_empty() {
            return Err(Failure::perm(format!(
                "{} has no recipients",
                record::escape(id)
            )));
        }
        queue::client::inject(
            qmail_queue,
            rec.reason.sender.as_bytes(),
            &rec.reason.recipients,
            |w| w.write_all(&message),
        )
        .map_err(|f| Failure {
            permanent: f.permanent,
            text: format!("qmail-queue refused the message: {}", f.text),
        })?;
        remove(found.dir, &found.name).map_err(|e| {
            Failure::temp(format!(
                "queued, but unable to remove the copy (delete it, or it is sent again \
                 on the next release): {e}"
            ))
        })?;
        drop(locked);
        Ok(rec)
    }

    /// Remove the message (a regular file; anything else is refused).
    pub fn delete(&self, id: &str) -> Result<(), Failure> {
        let found = self.find(id)?;
        remove(found.dir, &found.name).map_err(Failure::io)
    }
}

/// Remove `name` from `dir` and make that durable.
fn remove(dir: &Dir, name: &str) -> io::Result<()> {
    dir.remove_file(name)?;
    dir.sync()
}

/// The names in the open directory `dir`, read through its descriptor (the directory
/// itself, whatever its path points to now).
fn names(dir: &Dir) -> io::Result<Vec<String>> {
    let by_fd = format!("/proc/self/fd/{}", dir.as_fd().as_raw_fd());
    let mut v = Vec::new();
    for e in std::fs::read_dir(by_fd)? {
        let name = e?.file_name();
        v.push(name.to_string_lossy().into_owned());
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::reason;
    use std::os::unix::fs::PermissionsExt;

    struct Setup {
        _d: tempfile::TempDir,
        home: PathBuf,
        q: PathBuf,
    }

    fn setup() -> Setup {
        let d = tempfile::tempdir().unwrap();
        let home = d.path().to_path_buf();
        let q = home.join("quarantine");
        delivery::maildir::make(&q).unwrap();
        Setup { _d: d, home, q }
    }

    fn id_of(p: &Path) -> String {
        p.file_name().unwrap().to_string_lossy().into_owned()
    }

    /// A fake qmail-queue that saves message and envelope next to itself and exits `code`.
    fn fake_qq(home: &Path, code: i32) -> PathBuf {
        let qq = home.join("qq");
        std::fs::write(
            &qq,
            format!(
                "#!/bin/sh\ncat > {0}/qq.msg\ncat <&1 > {0}/qq.env\nexit {code}\n",
                home.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&qq, std::fs::Permissions::from_mode(0o755)).unwrap();
        qq
    }

    #[test]
    fn ids_with_a_slash_or_a_leading_dot_are_refused() {
        for bad in ["", "../x", "a/b", ".hidden", ".", "..", "/etc/passwd"] {
            let e = check_id(bad).unwrap_err();
            assert!(
                e.permanent && e.text.starts_with("not a quarantine ID"),
                "{bad}"
            );
        }
        check_id("1765000000.M1P2Q0.host").unwrap();
        check_id("1765000000.M1P2Q0.host:2,S").unwrap();
    }

    #[test]
    fn list_show_delete() {
        let s = setup();
        let msg = b"Subject: one\n\nbody\n";
        let a = crate::store(&s.q, msg, &reason()).unwrap();
        let b = crate::store(&s.q, b"Subject: two\n\n", &reason()).unwrap();
        // a message the administrator's POP3 client or MUA moved to cur/
        let b_cur = s.q.join("cur").join(format!("{}:2,S", id_of(&b)));
        std::fs::rename(&b, &b_cur).unwrap();
        std::fs::write(s.q.join("new/.hidden"), "x").unwrap();
        std::fs::write(s.q.join("new/junk"), "Subject: not ours\n\n").unwrap();
        let q = Quarantine::open(&s.home).unwrap();
        let (list, problems) = q.list().unwrap();
        let ids: Vec<_> = list.iter().map(|e| e.id.clone()).collect();
        assert_eq!(ids, vec![id_of(&a), id_of(&b_cur)]);
        assert_eq!(list[0].record.reason, reason());
        assert_eq!(list[0].record.size, msg.len() as u64);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("junk") && problems[0].contains("not a quarantined"));

        let mut out = Vec::new();
        q.show(&id_of(&a), &mut out).unwrap();
        assert_eq!(out, std::fs::read(&a).unwrap());
        let e = q.show("junk", &mut Vec::new()).unwrap_err();
        assert!(e.permanent, "{e}");

        let mut out = Vec::new();
        q.show(&id_of(&b), &mut out).unwrap();
        assert!(
            out.ends_with(b"Subject: two\n\n"),
            "found in cur/ by its ID"
        );
        assert!(
            q.show(&id_of(&b)[..5], &mut Vec::new()).is_err(),
            "no prefix match"
        );
        q.delete(&id_of(&b)).unwrap();
        assert!(!b_cur.exists());
        let e = q.delete(&id_of(&b_cur)).unwrap_err();
        assert!(e.permanent && e.text.starts_with("no message"), "{e}");
        assert_eq!(q.list().unwrap().0.len(), 1);
    }

    #[test]
    fn release_queues_the_message_without_the_record_then_removes_it() {
        let s = setup();
        let msg = b"X-Quarantine-Recipient: evil@example.com\nSubject: one\n\nbody\n";
        let a = crate::store(&s.q, msg, &reason()).unwrap();
        let q = Quarantine::open(&s.home).unwrap();
        let rec = q.release(&id_of(&a), &fake_qq(&s.home, 0)).unwrap();
        assert_eq!(rec.reason, reason());
        assert_eq!(std::fs::read(s.home.join("qq.msg")).unwrap(), msg);
        assert_eq!(
            std::fs::read(s.home.join("qq.env")).unwrap(),
            b"Fa@example.org\0Tb@example.net\0Tc@example.net\0\0"
        );
        assert!(!a.exists());
    }

    #[test]
    fn a_refused_release_keeps_the_copy() {
        let s = setup();
        let a = crate::store(&s.q, b"Subject: x\n\n", &reason()).unwrap();
        let q = Quarantine::open(&s.home).unwrap();
        let e = q.release(&id_of(&a), &fake_qq(&s.home, 53)).unwrap_err();
        assert!(!e.permanent && e.text.contains("disk full"), "{e}");
        assert_eq!(e.exit_code(), 111);
        let e = q.release(&id_of(&a), &fake_qq(&s.home, 31)).unwrap_err();
        assert!(e.permanent, "{e}");
        assert_eq!(e.exit_code(), 100);
        assert!(a.exists());
        let e = q.release(&id_of(&a), &s.home.join("missing")).unwrap_err();
        assert!(!e.permanent, "{e}");
        assert!(a.exists());
    }

    #[test]
    fn a_truncated_copy_is_not_released() {
        let s = setup();
        let a = crate::store(&s.q, b"Subject: x\n\nbody\n", &reason()).unwrap();
        let data = std::fs::read(&a).unwrap();
        std::fs::write(&a, &data[..data.len() - 3]).unwrap();
        let q = Quarantine::open(&s.home).unwrap();
        let e = q.release(&id_of(&a), &fake_qq(&s.home, 0)).unwrap_err();
        assert!(e.permanent && e.text.contains("record says"), "{e}");
        assert!(!s.home.join("qq.msg").exists());
        assert!(a.exists());
    }

    #[test]
    fn links_are_never_followed() {
        let s = setup();
        let secret = s.home.join("secret");
        std::fs::write(&secret, "root:x:0:0\n").unwrap();
        std::os::unix::fs::symlink(&secret, s.q.join("new/planted")).unwrap();
        std::fs::hard_link(&secret, s.q.join("new/hard")).unwrap();
        let q = Quarantine::open(&s.home).unwrap();
        for id in ["planted", "hard"] {
            let mut out = Vec::new();
            let e = q.show(id, &mut out).unwrap_err();
            assert!(e.permanent && e.text.contains("refusing"), "{e}");
            assert!(out.is_empty());
            assert!(q.release(id, &fake_qq(&s.home, 0)).unwrap_err().permanent);
            assert!(q.delete(id).unwrap_err().permanent);
        }
        assert!(s.q.join("new/planted").symlink_metadata().is_ok());
        assert_eq!(std::fs::read(&secret).unwrap(), b"root:x:0:0\n");
        let (list, problems) = q.list().unwrap();
        assert!(list.is_empty());
        assert_eq!(problems.len(), 2, "{problems:?}");

        // the quarantine directory or new/ itself replaced by a link
        std::fs::remove_dir_all(s.q.join("new")).unwrap();
        std::os::unix::fs::symlink(&s.home, s.q.join("new")).unwrap();
        let e = Quarantine::open(&s.home).err().unwrap();
        assert!(e.permanent && e.text.contains("refusing"), "{e}");
    }
}
