//! Maildir delivery (qmail's `maildir_child`, with notqmail's O_EXCL fix and the
//! uniqueness scheme of the Maildir spec: `SECS.M<usec>P<pid>Q<n>.HOST`).
//!
//! The message is written to `tmp/NAME`, fsynced, linked to `new/NAME`, `new/` is
//! fsynced, and `tmp/NAME` removed. Every failure is temporary (qmail never bounces a
//! Maildir failure, not even a missing directory).

use crate::Fail;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};

static SEQ: AtomicU32 = AtomicU32::new(0);

/// The host part of a unique name: `/` and `:` are escaped as the Maildir spec says.
fn safe_host() -> String {
    qsys::hostname().replace('/', "\\057").replace(':', "\\072")
}

/// A unique file name for this process.
pub fn unique_name() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let q = SEQ.fetch_add(1, Ordering::Relaxed);
    format!(
        "{}.M{}P{}Q{}.{}",
        now.as_secs(),
        now.subsec_micros(),
        std::process::id(),
        q,
        safe_host()
    )
}

/// Deliver `message` (read from its start) into the Maildir `dir`, preceded by the
/// `prefix` lines (Return-Path, Delivered-To). Returns the name in `new/`.
pub fn deliver(dir: &Path, prefix: &[u8], message: &mut File) -> Result<String, Fail> {
    let tmpdir = dir.join("tmp");
    if !tmpdir.is_dir() || !dir.join("new").is_dir() {
        return Err(Fail::temp("Unable to chdir to maildir. (#4.2.1)"));
    }
    let mut attempt = 0;
    let (name, mut file) = loop {
        let name = unique_name();
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(tmpdir.join(&name))
        {
            Ok(f) => break (name, f),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt < 3 => attempt += 1,
            Err(_) => return Err(Fail::temp("Temporary error on maildir delivery. (#4.3.0)")),
        }
    };
    let tmp = tmpdir.join(&name);
    let newpath = dir.join("new").join(&name);
    let result = write_copy(&mut file, prefix, message).and_then(|_| file.sync_all());
    drop(file);
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(match e.kind() {
            io::ErrorKind::UnexpectedEof => Fail::temp("Unable to read message. (#4.3.0)"),
            _ => Fail::temp("Temporary error on maildir delivery. (#4.3.0)"),
        });
    }
    if std::fs::hard_link(&tmp, &newpath).is_err() {
        let _ = std::fs::remove_file(&tmp);
        return Err(Fail::temp("Temporary error on maildir delivery. (#4.3.0)"));
    }
    let _ = std::fs::remove_file(&tmp);
    if qsys::fsync::sync_dir(&dir.join("new")).is_err() {
        return Err(Fail::temp("Temporary error on maildir delivery. (#4.3.0)"));
    }
    Ok(name)
}

fn write_copy(out: &mut File, prefix: &[u8], message: &mut File) -> io::Result<()> {
    out.write_all(prefix)?;
    message.seek(SeekFrom::Start(0))?;
    io::copy(message, out)?;
    Ok(())
}

/// Create a Maildir (`dir`, `tmp`, `new`, `cur`, mode 0700), as maildirmake does.
pub fn make(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    let mut b = std::fs::DirBuilder::new();
    b.mode(0o700);
    b.create(dir)?;
    for sub in ["tmp", "new", "cur"] {
        b.create(dir.join(sub))?;
    }
    Ok(())
}

/// Read the whole message file (for tests and small tools).
pub fn read_all(f: &mut File) -> io::Result<Vec<u8>> {
    let mut v = Vec::new();
    f.seek(SeekFrom::Start(0))?;
    f.read_to_end(&mut v)?;
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivers_into_new() {
        let d = tempfile::tempdir().unwrap();
        let md = d.path().join("Maildir");
        make(&md).unwrap();
        let mut msg = tempfile::tempfile().unwrap();
        msg.write_all(b"Subject: x\n\nbody\n").unwrap();
        let name = deliver(&md, b"Return-Path: <a@b>\n", &mut msg).unwrap();
        let got = std::fs::read(md.join("new").join(&name)).unwrap();
        assert_eq!(got, b"Return-Path: <a@b>\nSubject: x\n\nbody\n");
        assert_eq!(std::fs::read_dir(md.join("tmp")).unwrap().count(), 0);
        let n2 = deliver(&md, b"", &mut msg).unwrap();
        assert_ne!(name, n2);
    }

    #[test]
    fn missing_maildir_is_temporary() {
        let d = tempfile::tempdir().unwrap();
        let mut msg = tempfile::tempfile().unwrap();
        let e = deliver(&d.path().join("nope"), b"", &mut msg).unwrap_err();
        assert!(!e.permanent);
    }
}
