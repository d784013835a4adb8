//! What to learn from a report, and from a Maildir folder (issue 16, "learning from
//! users").
//!
//! A report is a message to `learn-spam@`/`learn-ham@` as qmail-local hands it to the
//! delivery program. It is believed only when its header holds exactly one
//! [`REPORTER`] field: qmail-spamc removes every such field from every message and adds
//! one only for a local or authenticated sender ([`crate::policy`]), so a field there
//! was put by our filter, and an outsider's forged one never survives it.
//!
//! The reported messages are the `message/rfc822` attachments of the report (a
//! message forwarded "as attachment"; at most [`MAX_REPORTED`]); a report without one
//! is itself the reported message ("bounced"/"redirected" as is), minus the fields our
//! system put on top (`Return-Path`, `Delivered-To`, [`REPORTER`], `X-Spam-*`).

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::header::{self, REPORTER};

/// The most messages learnt from one report.
pub const MAX_REPORTED: usize = 50;

/// The reporter named by the report's one [`REPORTER`] field; `None` when there is
/// none, or more than one (not what our filter writes).
pub fn reporter(report: &[u8]) -> Option<String> {
    let mut v = header::values(report, REPORTER);
    if v.len() != 1 {
        return None;
    }
    v.pop().filter(|r| !r.is_empty())
}

/// The messages reported in `report` (module doc).
pub fn reported(report: &[u8]) -> Vec<Vec<u8>> {
    let parsed = mail_parser::MessageParser::default().parse(report);
    let attached: Vec<Vec<u8>> = parsed
        .as_ref()
        .map(|m| {
            m.parts
                .iter()
                .filter_map(|p| match &p.body {
                    mail_parser::PartType::Message(inner) => Some(inner.raw_message().to_vec()),
                    _ => None,
                })
                .filter(|raw| !raw.is_empty())
                .take(MAX_REPORTED)
                .collect()
        })
        .unwrap_or_default();
    if !attached.is_empty() {
        return attached;
    }
    let added = |name: &str| {
        header::ours(name)
            || name.eq_ignore_ascii_case("Return-Path")
            || name.eq_ignore_ascii_case("Delivered-To")
    };
    let (mut head, _) = header::without(report, added);
    head.extend_from_slice(&report[header::header_len(report)..]);
    vec![head]
}

/// The message files of the Maildir folder `dir` (`cur/` and `new/`), sorted: regular
/// files only, names not starting with `.`.
pub fn folder_messages(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for sub in ["cur", "new"] {
        let rd = match std::fs::read_dir(dir.join(sub)) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for e in rd.flatten() {
            let regular = e.file_type().map(|t| t.is_file()).unwrap_or(false);
            if regular && !e.file_name().to_string_lossy().starts_with('.') {
                out.push(e.path());
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Read a message file without following a symbolic link, at most `max` bytes
/// (`Ok(None)` when it is larger: not learnt).
pub fn read_message(path: &Path, max: u64) -> std::io::Result<Option<Vec<u8>>> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc_flags())
        .open(path)?;
    if !f.metadata()?.is_file() {
        return Ok(None);
    }
    let mut buf = Vec::new();
    f.take(max + 1).read_to_end(&mut buf)?;
    Ok((buf.len() as u64 <= max).then_some(buf))
}

/// The messages of a folder as a child process hands them to its parent (the child
/// reads as the folder's owner; the parent, root, talks to spamd): each as an 8-byte
/// big-endian length and the bytes.
pub fn write_frames(out: &mut impl std::io::Write, messages: &[Vec<u8>]) -> std::io::Result<()> {
    for m in messages {
        out.write_all(&(m.len() as u64).to_be_bytes())?;
        out.write_all(m)?;
    }
    out.flush()
}

/// Read what [`write_frames`] wrote, trusting nothing: a frame over `max` bytes, more
/// than `max_count` frames or a cut-off frame is an error.
pub fn read_frames(
    input: &mut impl Read,
    max: u64,
    max_count: usize,
) -> std::io::Result<Vec<Vec<u8>>> {
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
    let mut out = Vec::new();
    loop {
        let mut len = [0u8; 8];
        match input.read(&mut len[..1])? {
            0 => return Ok(out),
            _ => input.read_exact(&mut len[1..])?,
        }
        let n = u64::from_be_bytes(len);
        if n > max {
            return Err(bad("message frame too long"));
        }
        if out.len() >= max_count {
            return Err(bad("too many message frames"));
        }
        let mut m = Vec::new();
        input.take(n).read_to_end(&mut m)?;
        if m.len() as u64 != n {
            return Err(bad("message frame cut off"));
        }
        out.push(m);
    }
}

fn libc_flags() -> i32 {
    (nix::fcntl::OFlag::O_NOFOLLOW | nix::fcntl::OFlag::O_NONBLOCK).bits()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPAM: &str =
        "From: spammer@bad.test\nSubject: cheap pills\nMessage-ID: <s1@bad.test>\n\nBuy now\n";

    #[test]
    fn only_one_reporter_field_is_believed() {
        assert_eq!(
            reporter(
                b"Return-Path: <joe@x>\nX-Qmail-Spam-Reporter: auth=joe\nSubject: fw\n\nbody\n"
            )
            .as_deref(),
            Some("auth=joe")
        );
        assert_eq!(
            reporter(b"Subject: fw\n\nX-Qmail-Spam-Reporter: local\n"),
            None
        );
        assert_eq!(
            reporter(b"X-Qmail-Spam-Reporter: local\nx-qmail-spam-reporter: local\n\n"),
            None
        );
        assert_eq!(reporter(b"X-Qmail-Spam-Reporter:\n\n"), None);
    }

    #[test]
    fn attached_messages_are_unwrapped() {
        let report = format!(
            "From: joe@example.test\nTo: learn-spam@example.test\nSubject: Fwd\nMIME-Version: 1.0\n\
             Content-Type: multipart/mixed; boundary=\"b\"\n\n--b\nContent-Type: text/plain\n\nspam, see attached\n\
             --b\nContent-Type: message/rfc822\n\n{SPAM}\n--b\nContent-Type: message/rfc822\n\n{SPAM}\n--b--\n"
        );
        let got = reported(report.as_bytes());
        assert_eq!(got.len(), 2);
        let text = String::from_utf8_lossy(&got[0]);
        assert!(text.starts_with("From: spammer@bad.test\n"), "{text}");
        assert!(text.contains("Buy now"));
        assert!(!text.contains("learn-spam"));
    }

    #[test]
    fn a_bounced_message_is_learnt_without_our_fields() {
        let report = format!(
            "Return-Path: <spammer@bad.test>\nDelivered-To: alias-learn-spam@example.test\n\
             X-Qmail-Spam-Reporter: local\nX-Spam-Status: No\nResent-From: joe@example.test\n{SPAM}"
        );
        let got = reported(report.as_bytes());
        assert_eq!(got.len(), 1);
        assert_eq!(
            String::from_utf8_lossy(&got[0]),
            format!("Resent-From: joe@example.test\n{SPAM}")
        );
        // garbage never panics
        for junk in [
            &b""[..],
            b"\n\n",
            b"\xff\xfe:\n\n--",
            b"Content-Type: multipart/mixed; boundary=x\n\n--x\n",
        ] {
            let _ = reported(junk);
            let _ = reporter(junk);
        }
    }

    #[test]
    fn frames_round_trip_and_hostile_frames_fail() {
        let msgs = vec![b"a".to_vec(), Vec::new(), SPAM.as_bytes().to_vec()];
        let mut buf = Vec::new();
        write_frames(&mut buf, &msgs).unwrap();
        assert_eq!(read_frames(&mut &buf[..], 1000, 10).unwrap(), msgs);
        assert!(read_frames(&mut &buf[..], 10, 10).is_err(), "too long");
        assert!(read_frames(&mut &buf[..], 1000, 2).is_err(), "too many");
        assert!(
            read_frames(&mut &buf[..buf.len() - 1], 1000, 10).is_err(),
            "cut"
        );
        assert!(read_frames(&mut &buf[..3], 1000, 10).is_err(), "cut length");
        let huge = u64::MAX.to_be_bytes();
        assert!(read_frames(&mut &huge[..], 1000, 10).is_err());
        assert!(read_frames(&mut &b""[..], 1000, 10).unwrap().is_empty());
    }

    #[test]
    fn folder_files_without_links() {
        let d = tempfile::tempdir().unwrap();
        for sub in ["cur", "new", "tmp"] {
            std::fs::create_dir(d.path().join(sub)).unwrap();
        }
        std::fs::write(d.path().join("cur/1.a:2,S"), SPAM).unwrap();
        std::fs::write(d.path().join("new/2.b"), SPAM).unwrap();
        std::fs::write(d.path().join("tmp/3.c"), SPAM).unwrap();
        std::fs::write(d.path().join("new/.hidden"), SPAM).unwrap();
        std::fs::write(d.path().join("secret"), "secret").unwrap();
        std::os::unix::fs::symlink(d.path().join("secret"), d.path().join("new/4.link")).unwrap();
        let files = folder_messages(d.path()).unwrap();
        assert_eq!(files.len(), 2, "{files:?}");
        assert!(read_message(&d.path().join("new/4.link"), 100).is_err());
        assert_eq!(
            read_message(&files[0], 1000).unwrap().unwrap(),
            SPAM.as_bytes()
        );
        assert_eq!(read_message(&files[0], 10).unwrap(), None);
        assert!(folder_messages(&d.path().join("none")).unwrap().is_empty());
    }
}
