//! The message list of a Maildir as qmail-pop3d sees it (`nq106:maildir.c`).
//!
//! On open: remove files in `tmp/` not accessed for 36 hours; list `new/` then `cur/`,
//! skipping names that start with `.`, keeping only files whose mtime is before the
//! current second (a message delivered in this second waits for the next session), in
//! ascending mtime order (ties by name). Sizes are file sizes (LF line ends). A message
//! is only opened when it is retrieved, so 10,000 messages cost 10,000 `stat`s and
//! nothing more.
//!
//! One Maildir, two readers: Dovecot (IMAP) keeps its files (`dovecot-uidlist`,
//! `dovecot-uidvalidity*`, `dovecot.index*`, `dovecot-keywords`, subfolders `.NAME/`)
//! beside `new/` and `cur/`, never in them, so only `new/` and `cur/` are listed; in
//! `cur/` a message may carry any info (`:2,` and flags such as `S`, `F`, `T`, or
//! Dovecot's `,S=size,W=size` before it). Flags live in the name, so Dovecot renames a
//! message whenever its flags change: [`find`] locates it again by its unique part.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// One message of the session.
#[derive(Debug, Clone)]
pub struct Message {
    /// `new/NAME` or `cur/NAME`, relative to the Maildir.
    pub rel: PathBuf,
    pub size: u64,
    pub mtime: i64,
    pub deleted: bool,
}

impl Message {
    /// The unique-id listing value: the file name up to the first `:`.
    pub fn uid(&self) -> String {
        let name = self
            .rel
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        match name.split_once(':') {
            Some((u, _)) => u.to_string(),
            None => name,
        }
    }

    pub fn in_new(&self) -> bool {
        self.rel.starts_with("new")
    }
}

/// Seconds after which an untouched `tmp/` file is removed (qmail's 36 hours).
pub const OSSIFIED: i64 = 129_600;

/// Remove stale `tmp/` files (errors ignored, as qmail does).
pub fn clean_tmp(maildir: &Path, now: i64) {
    let Ok(rd) = std::fs::read_dir(maildir.join("tmp")) else {
        return;
    };
    for e in rd.flatten() {
        if let Ok(m) = e.metadata()
            && m.is_file()
            && m.atime() < now - OSSIFIED
        {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// List the messages of `maildir` visible at time `now`.
pub fn scan(maildir: &Path, now: i64) -> io::Result<Vec<Message>> {
    let mut v = Vec::new();
    for sub in ["new", "cur"] {
        for e in std::fs::read_dir(maildir.join(sub))? {
            let e = e?;
            let name = e.file_name();
            if name.as_encoded_bytes().first() == Some(&b'.') {
                continue;
            }
            let m = match std::fs::metadata(e.path()) {
                Ok(m) => m,
                Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
                Err(err) => return Err(err),
            };
            if !m.is_file() || m.mtime() >= now {
                continue;
            }
            v.push(Message {
                rel: Path::new(sub).join(&name),
                size: m.size(),
                mtime: m.mtime(),
                deleted: false,
            });
        }
    }
    v.sort_by(|a, b| a.mtime.cmp(&b.mtime).then_with(|| a.rel.cmp(&b.rel)));
    Ok(v)
}

/// The unique part of a Maildir file name: up to the first `:` (the info).
pub fn unique_part(name: &str) -> &str {
    name.split_once(':').map_or(name, |(u, _)| u)
}

/// Where the message whose unique part is `unique` is now (`cur/NAME` or `new/NAME`),
/// after another reader moved it or changed its flags; `None` when it is gone.
pub fn find(maildir: &Path, unique: &str) -> io::Result<Option<PathBuf>> {
    if unique.is_empty() || unique.starts_with('.') {
        return Ok(None);
    }
    for sub in ["cur", "new"] {
        let rd = match std::fs::read_dir(maildir.join(sub)) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for e in rd {
            let e = e?;
            let name = e.file_name();
            if unique_part(&name.to_string_lossy()) == unique {
                return Ok(Some(Path::new(sub).join(name)));
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set_mtime(p: &Path, t: i64) {
        let ts = nix::sys::time::TimeSpec::new(t, 0);
        nix::sys::stat::utimensat(
            nix::fcntl::AT_FDCWD,
            p,
            &ts,
            &ts,
            nix::sys::stat::UtimensatFlags::FollowSymlink,
        )
        .unwrap();
    }

    #[test]
    fn order_visibility_and_cleaning() {
        let d = tempfile::tempdir().unwrap();
        for s in ["new", "cur", "tmp"] {
            std::fs::create_dir(d.path().join(s)).unwrap();
        }
        let now = 2_000_000_000;
        for (p, t) in [
            ("new/b", 100),
            ("cur/a:2,S", 50),
            ("new/.hidden", 10),
            ("new/now", now),
            ("tmp/old", 1),
            ("tmp/young", now - 10),
        ] {
            let path = d.path().join(p);
            std::fs::write(&path, b"x\n").unwrap();
            set_mtime(&path, t);
        }
        // Dovecot's files beside new/ and cur/, and its names with any flags
        for (p, t) in [
            ("dovecot-uidlist", 20),
            ("dovecot.index.log", 20),
            ("dovecot-keywords", 20),
            ("cur/c,S=2,W=3:2,FST", 60),
            ("cur/d:2,", 70),
        ] {
            let path = d.path().join(p);
            std::fs::write(&path, b"x\n").unwrap();
            set_mtime(&path, t);
        }
        std::fs::create_dir_all(d.path().join(".Sent/cur")).unwrap();
        let v = scan(d.path(), now).unwrap();
        let names: Vec<String> = v.iter().map(|m| m.rel.display().to_string()).collect();
        assert_eq!(
            names,
            ["cur/a:2,S", "cur/c,S=2,W=3:2,FST", "cur/d:2,", "new/b"]
        );
        assert_eq!(v[1].uid(), "c,S=2,W=3");
        assert_eq!(
            find(d.path(), "c,S=2,W=3").unwrap(),
            Some(PathBuf::from("cur/c,S=2,W=3:2,FST"))
        );
        assert_eq!(find(d.path(), "b").unwrap(), Some(PathBuf::from("new/b")));
        assert_eq!(find(d.path(), "zz").unwrap(), None);
        assert_eq!(find(d.path(), "").unwrap(), None);
        assert_eq!(find(d.path(), ".hidden").unwrap(), None);
        assert_eq!(v[0].uid(), "a");
        assert_eq!(v[0].size, 2);
        clean_tmp(d.path(), now);
        assert!(!d.path().join("tmp/old").exists());
        assert!(d.path().join("tmp/young").exists());
    }
}
