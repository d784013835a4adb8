//! The caller's side of the checkpassword interface, the one copy qmail-smtpd (SMTP
//! AUTH) and qmail-popup (POP3) both use: the record goes down a pipe that the program
//! reads as descriptor 3, its exit status comes back as an [`Exit`], and every buffer
//! that held the password is wiped (the [`Credentials`] themselves wipe on drop).
//!
//! The record (at most [`MAX_RECORD`] bytes) fits in a pipe buffer, so it is written
//! whole before the program starts and the write end is closed: the program sees EOF
//! after it, as the interface requires.

use crate::{Credentials, MAX_RECORD, crypt};
use std::ffi::OsString;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// What checkpassword's exit status means (cr.yp.to/checkpwd/interface.html).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 0: the password was right and the subprogram ran and succeeded.
    Accepted,
    /// 1: bad login or password.
    Refused,
    /// 2: misuse (no record, malformed record, a caller not allowed to ask).
    Misuse,
    /// 111: temporary failure.
    Temporary,
    /// Killed by a signal.
    Crashed,
    /// Still running at the deadline (killed).
    TimedOut,
    /// Any other code: the subprogram's own (the password was right).
    Other(i32),
}

impl Exit {
    pub fn from_status(st: ExitStatus) -> Exit {
        match st.code() {
            Some(0) => Exit::Accepted,
            Some(1) => Exit::Refused,
            Some(2) => Exit::Misuse,
            Some(111) => Exit::Temporary,
            Some(c) => Exit::Other(c),
            None => Exit::Crashed,
        }
    }
}

/// Descriptors 0 and 1 of checkpassword (2 is always inherited: the caller's log).
pub enum Stdio01<'a> {
    /// `/dev/null` (SMTP AUTH: the client must never reach the program).
    Null,
    /// The caller's own 0 and 1 (qmail-popup without TLS: the POP3 client).
    Inherit,
    /// Both on this socket (qmail-popup with TLS: the relay socketpair).
    Socket(&'a OwnedFd),
}

/// Run `argv` (checkpassword and its arguments) with `creds` on descriptor 3; kill it
/// after `timeout` when one is given. `Err` when it could not be started.
pub fn run(
    argv: &[OsString],
    creds: &Credentials,
    stdio: Stdio01<'_>,
    timeout: Option<Duration>,
) -> io::Result<Exit> {
    let Some((prog, args)) = argv.split_first() else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "no checkpassword program",
        ));
    };
    let mut record = creds.encode();
    if record.len() > MAX_RECORD {
        crypt::wipe(&mut record);
        return Ok(Exit::Refused);
    }
    let (r, w): (OwnedFd, OwnedFd) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let written = std::fs::File::from(w).write_all(&record);
    crypt::wipe(&mut record);
    written?;
    let rfd = r.as_raw_fd();
    let mut cmd = Command::new(prog);
    cmd.args(args).stderr(Stdio::inherit());
    match stdio {
        Stdio01::Null => {
            cmd.stdin(Stdio::null()).stdout(Stdio::null());
        }
        Stdio01::Inherit => {}
        Stdio01::Socket(fd) => {
            cmd.stdin(Stdio::from(fd.try_clone()?))
                .stdout(Stdio::from(fd.try_clone()?));
        }
    }
    // SAFETY: between fork and exec only async-signal-safe calls (fcntl, dup2, signal
    // resets) on descriptors we own.
    unsafe {
        cmd.pre_exec(move || {
            let r = if rfd == 3 {
                libc::fcntl(3, libc::F_SETFD, 0)
            } else {
                libc::dup2(rfd, 3)
            };
            if r < 0 {
                return Err(io::Error::last_os_error());
            }
            qsys::reset_signals_for_exec();
            Ok(())
        });
    }
    let mut child = cmd.spawn()?;
    drop(r);
    let Some(timeout) = timeout else {
        return Ok(Exit::from_status(child.wait()?));
    };
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait()? {
            Some(st) => return Ok(Exit::from_status(st)),
            None if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                return Ok(Exit::TimedOut);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn script(dir: &std::path::Path, body: &str) -> OsString {
        let p = dir.join("cp");
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        p.into_os_string()
    }

    fn creds(pass: &str) -> Credentials {
        Credentials {
            user: b"joe".to_vec(),
            pass: pass.as_bytes().to_vec(),
            timestamp: b"<s>".to_vec(),
        }
    }

    #[test]
    fn record_on_fd3_and_exit_meanings() {
        let d = tempfile::tempdir().unwrap();
        let seen = d.path().join("seen");
        let cp = script(
            d.path(),
            &format!(
                "head -c 512 <&3 | tr '\\0' '|' > {s}\n[ \"$(cat {s})\" = 'joe|pw|<s>|' ] || exit 1\nexec \"$@\"",
                s = seen.display()
            ),
        );
        let argv = |tail: &str| vec![cp.clone(), "/bin/sh".into(), "-c".into(), tail.into()];
        let none = Stdio01::Null;
        assert_eq!(
            run(&argv("exit 0"), &creds("pw"), none, None).unwrap(),
            Exit::Accepted
        );
        let t = Some(Duration::from_secs(10));
        assert_eq!(
            run(&argv("exit 0"), &creds("no"), Stdio01::Null, t).unwrap(),
            Exit::Refused
        );
        assert_eq!(
            run(&argv("exit 111"), &creds("pw"), Stdio01::Null, t).unwrap(),
            Exit::Temporary
        );
        assert_eq!(
            run(&argv("exit 7"), &creds("pw"), Stdio01::Null, t).unwrap(),
            Exit::Other(7)
        );
        assert_eq!(
            run(&argv("kill -9 $$"), &creds("pw"), Stdio01::Null, t).unwrap(),
            Exit::Crashed
        );
        assert_eq!(
            run(
                &argv("sleep 5"),
                &creds("pw"),
                Stdio01::Null,
                Some(Duration::from_millis(200))
            )
            .unwrap(),
            Exit::TimedOut
        );
        assert!(run(&["/nonexistent".into()], &creds("pw"), Stdio01::Null, t).is_err());
        assert!(run(&[], &creds("pw"), Stdio01::Null, t).is_err());
        // a record past the interface's limit never reaches the program
        let long = "x".repeat(MAX_RECORD);
        assert_eq!(
            run(&argv("exit 0"), &creds(&long), Stdio01::Null, t).unwrap(),
            Exit::Refused
        );
    }
}
