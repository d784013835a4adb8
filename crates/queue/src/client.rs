//! Running qmail-queue from an injecting program (qmail's `qmail.c`): qmail-inject,
//! sendmail, qmail-local forwards, qmail-send bounces and later qmail-smtpd.
//!
//! `$QMAILQUEUE`, when set and non-empty, names the program to run instead of
//! `HOME/bin/qmail-queue` (content filters rely on this). The message goes to the
//! child's fd 0, the envelope to its fd 1; the exit code is mapped to qmail's texts,
//! each with its enhanced status code.

use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Why qmail-queue did not accept a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QqFailure {
    /// Permanent (5xx, bounce) rather than temporary (4xx, retry).
    pub permanent: bool,
    /// qmail's text, e.g. `qq write error or disk full (#4.3.0)`.
    pub text: String,
}

impl std::fmt::Display for QqFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// qmail's mapping of a qmail-queue exit code to a failure (`qmail_close`).
pub fn failure_for_exit(code: i32) -> QqFailure {
    let (permanent, text) = match code {
        11 | 115 => (true, "envelope address too long for qq (#5.1.3)"),
        31 => (true, "mail server permanently rejected message (#5.3.0)"),
        51 => (false, "qq out of memory (#4.3.0)"),
        52 => (false, "qq timeout (#4.3.0)"),
        53 => (false, "qq write error or disk full (#4.3.0)"),
        54 => (false, "qq read error (#4.3.0)"),
        55 => (false, "qq unable to read configuration (#4.3.0)"),
        56 => (false, "qq trouble making network connection (#4.3.0)"),
        61 => (false, "qq trouble in home directory (#4.3.0)"),
        62..=66 => (false, "qq trouble creating files in queue (#4.3.0)"),
        71 => (false, "mail server temporarily rejected message (#4.3.0)"),
        72 => (false, "connection to mail server timed out (#4.4.1)"),
        73 => (false, "connection to mail server rejected (#4.4.1)"),
        74 => (false, "communication with mail server failed (#4.4.2)"),
        81 | 91 => (false, "qq internal bug (#4.3.0)"),
        120 => (false, "unable to exec qq (#4.3.0)"),
        12..=40 => (true, "qq permanent problem (#5.3.0)"),
        _ => (false, "qq temporary problem (#4.3.0)"),
    };
    QqFailure {
        permanent,
        text: text.to_string(),
    }
}

/// The qmail-queue program for the installation at `home`, honouring `$QMAILQUEUE`.
pub fn program(home: &Path) -> PathBuf {
    match std::env::var_os("QMAILQUEUE") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => home.join("bin/qmail-queue"),
    }
}

/// Run `program` with the message written by `write_message` and the given envelope.
/// Returns the child's pid (qmail's "qp") on success.
///
/// SIGCHLD gets its default disposition first: a caller started with SIGCHLD ignored
/// (swaks `--pipe`, some Perl scripts) would otherwise have the kernel reap qmail-queue,
/// the wait would fail, and a message that was queued would be reported as failed and
/// sent again.
pub fn inject<F>(
    program: &Path,
    sender: &[u8],
    recipients: &[impl AsRef<[u8]>],
    write_message: F,
) -> Result<u32, QqFailure>
where
    F: FnOnce(&mut dyn Write) -> io::Result<()>,
{
    let temp = |text: &str| QqFailure {
        permanent: false,
        text: text.to_string(),
    };
    // SAFETY: installs the default disposition, no handler.
    unsafe {
        let _ = nix::sys::signal::signal(
            nix::sys::signal::Signal::SIGCHLD,
            nix::sys::signal::SigHandler::SigDfl,
        );
    }
    let (env_r, env_w): (OwnedFd, OwnedFd) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|_| temp("unable to create pipe (#4.3.0)"))?;
    let mut child = Command::new(program)
        .stdin(Stdio::piped())
        .stdout(Stdio::from(env_r))
        .spawn()
        .map_err(|_| temp("unable to exec qq (#4.3.0)"))?;
    let qp = child.id();
    let mut write_ok = true;
    if let Some(mut stdin) = child.stdin.take() {
        // The child may die early (e.g. a filter rejecting); keep going to read its code.
        write_ok = write_message(&mut stdin)
            .and_then(|_| stdin.flush())
            .is_ok();
    }
    // Without a complete message, send no envelope: qmail-queue then sees EOF on
    // fd 1 and refuses (54), so a truncated message is never queued.
    let mut env_ok = false;
    if write_ok {
        let envelope = crate::envelope::qq_envelope(sender, recipients);
        let mut env_w = std::fs::File::from(env_w);
        env_ok = env_w.write_all(&envelope).is_ok();
    } else {
        drop(env_w);
    }
    let status = child.wait().map_err(|_| temp("qq crashed (#4.3.0)"))?;
    match status.code() {
        Some(0) if write_ok && env_ok => Ok(qp),
        Some(0) => Err(temp("qq read error (#4.3.0)")),
        Some(c) => Err(failure_for_exit(c)),
        None => Err(temp("qq crashed (#4.3.0)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_code_mapping() {
        assert!(failure_for_exit(11).permanent);
        assert!(failure_for_exit(31).permanent);
        assert!(!failure_for_exit(53).permanent);
        assert_eq!(
            failure_for_exit(53).text,
            "qq write error or disk full (#4.3.0)"
        );
        assert!(!failure_for_exit(81).permanent);
        assert!(failure_for_exit(20).permanent);
        assert!(!failure_for_exit(100).permanent);
    }

    #[test]
    fn runs_a_queue_program() {
        let d = tempfile::tempdir().unwrap();
        let script = d.path().join("qq");
        let out = d.path().join("out");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\ncat > {0}.m\ncat <&1 > {0}.e\nexit 0\n",
                out.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        inject(&script, b"a@x", &["b@y"], |w| w.write_all(b"hello\n")).unwrap();
        assert_eq!(
            std::fs::read(format!("{}.m", out.display())).unwrap(),
            b"hello\n"
        );
        assert_eq!(
            std::fs::read(format!("{}.e", out.display())).unwrap(),
            b"Fa@x\0Tb@y\0\0"
        );
        std::fs::write(&script, "#!/bin/sh\ncat >/dev/null\nexit 31\n").unwrap();
        let e = inject(&script, b"a@x", &["b@y"], |w| w.write_all(b"hello\n")).unwrap_err();
        assert!(e.permanent);
    }
}
