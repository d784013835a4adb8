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
