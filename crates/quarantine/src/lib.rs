//! The quarantine (issue 14, DESIGN section 10): where a content filter puts a message
//! it accepted but must not deliver, and what the administrator does with it.
//!
//! - [`store`]: qmail-scan (running as qmailf) writes the message into the Maildir
//!   HOME/quarantine (`tmp/`, fsync, link into `new/`: Maildir's delivery rule, done by
//!   the one Maildir writer, [`delivery::maildir::deliver`]), preceded by a block of
//!   `X-Quarantine-*` fields recording why and the envelope ([`record`]); the file name
//!   is the message's ID.
//! - [`notice`]: the administrator's notice, a complete RFC 5322 message with the
//!   envelope, client, rule, the message's header (not its body) and how to release it.
//! - [`admin`]: list, show, release (re-queue through HOME/bin/qmail-queue itself, never
//!   `$QMAILQUEUE`, so the rule that caught it is not applied again) and delete, for
//!   qmail-quarantine running as root: every entry is opened without following links.
//!
//! Interface shared with qmail-scan: [`Reason`], [`store`], [`notice`] (fixed in
//! helper-wave2.md, do not change their signatures).

pub mod admin;
pub mod notice;
pub mod record;
pub mod terminal;

pub use notice::notice;

use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// The quarantine's directory below an installation's HOME.
pub const DIR: &str = "quarantine";

/// The quarantine Maildir of the installation at `home`.
pub fn dir(home: &Path) -> PathBuf {
    home.join(DIR)
}

/// Why a message was quarantined, and its envelope (what `release` re-queues to).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reason {
    /// The rule that matched, e.g. `.exe` or `Virus-Date: .{100,}`.
    pub rule: String,
    /// The rule's remark column.
    pub remark: String,
    /// The envelope sender (empty for a bounce).
    pub sender: String,
    /// The envelope recipients.
    pub recipients: Vec<String>,
    /// `TCPREMOTEIP`, or `local`.
    pub client_ip: String,
    /// The HELO name, or empty.
    pub helo: String,
}

/// Store `message` in the quarantine Maildir `dir` (HOME/quarantine), with the reason
/// and the envelope recorded so that `release` can re-queue it; returns the file's path.
pub fn store(dir: &Path, message: &[u8], reason: &Reason) -> io::Result<PathBuf> {
    let prefix = record::header(reason, now(), message.len() as u64);
    let fd = nix::sys::memfd::memfd_create(c"quarantine", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)
        .map_err(io::Error::from)?;
    let mut copy = std::fs::File::from(fd);
    copy.write_all(message)?;
    let name = delivery::maildir::deliver(dir, &prefix, &mut copy).map_err(|f| {
        io::Error::other(format!(
            "unable to store in {}: {}",
            dir.display(),
            f.text.trim_end_matches(['.', ' '])
        ))
    })?;
    Ok(dir.join("new").join(name))
}

/// Seconds since the epoch (0 if the clock is before it).
pub(crate) fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn reason() -> Reason {
        Reason {
            rule: ".exe".into(),
            remark: "executable attachment".into(),
            sender: "a@example.org".into(),
            recipients: vec!["b@example.net".into(), "c@example.net".into()],
            client_ip: "192.0.2.7".into(),
            helo: "mx.example.org".into(),
        }
    }

    #[test]
    fn store_writes_the_record_then_the_message_into_new() {
        let d = tempfile::tempdir().unwrap();
        let q = d.path().join("quarantine");
        delivery::maildir::make(&q).unwrap();
        let msg = b"Subject: hi\n\nbody\n";
        let path = store(&q, msg, &reason()).unwrap();
        assert_eq!(path.parent().unwrap(), q.join("new"));
        assert_eq!(std::fs::read_dir(q.join("tmp")).unwrap().count(), 0);
        let file = std::fs::read(&path).unwrap();
        let (rec, rest) = record::parse(&file).unwrap();
        assert_eq!(rec.reason, reason());
        assert_eq!(rest, msg);
        assert!(file.starts_with(b"X-Quarantine-Rule: .exe\n"));
        let other = store(&q, msg, &reason()).unwrap();
        assert_ne!(path, other);
    }

    #[test]
    fn store_into_a_missing_dir_is_an_error_not_a_panic() {
        let d = tempfile::tempdir().unwrap();
        let e = store(&d.path().join("nope"), b"x\n", &reason()).unwrap_err();
        assert!(e.to_string().contains("unable to store"), "{e}");
    }
}
