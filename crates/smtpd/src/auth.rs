//! SMTP AUTH (RFC 4954): the PLAIN, LOGIN and CRAM-MD5 exchanges, and verification
//! through the checkpassword interface, so one checkpassword program serves SMTP and
//! POP3.
//!
//! checkpassword gets on fd 3 `user\0password\0timestamp\0` (PLAIN, LOGIN; the timestamp
//! is qmail-popup's `<pid.time@host>`) or `user\0digest\0challenge\0` (CRAM-MD5, as the
//! qmail smtp-auth patch and cmd5checkpw do); fds 0 and 1 are `/dev/null` (never the
//! client), fd 2 is our log. Exit 0 = accepted; 111 (or a crash) = temporary failure
//! (`454`); anything else = rejected (`535`). It is killed after 60 seconds.

use base64::prelude::*;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Longest username or password accepted (the fd 3 record must stay under 512 bytes).
pub const MAX_FIELD: usize = 240;

/// Credentials taken from an exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub user: String,
    /// The password, or for CRAM-MD5 the hex digest.
    pub secret: Vec<u8>,
    /// The timestamp (PLAIN/LOGIN) or challenge (CRAM-MD5).
    pub stamp: String,
}

/// Why an exchange failed before checkpassword ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SaslError {
    /// The client sent `*`.
    Cancelled,
    /// Not base64, or not the expected structure.
    Malformed,
}

/// Decode one client response (`*` cancels).
pub fn decode(line: &[u8]) -> Result<Vec<u8>, SaslError> {
    let line = line.strip_suffix(b" ").unwrap_or(line);
    if line == b"*" {
        return Err(SaslError::Cancelled);
    }
    if line == b"=" {
        return Ok(Vec::new());
    }
    BASE64_STANDARD
        .decode(line)
        .map_err(|_| SaslError::Malformed)
}

fn field(b: &[u8]) -> Result<String, SaslError> {
    if b.len() > MAX_FIELD || b.contains(&0) {
        return Err(SaslError::Malformed);
    }
    String::from_utf8(b.to_vec()).map_err(|_| SaslError::Malformed)
}

/// PLAIN: `authzid\0authcid\0passwd`; an authzid other than the authcid is refused.
pub fn plain(decoded: &[u8], stamp: &str) -> Result<Credentials, SaslError> {
    let parts: Vec<&[u8]> = decoded.split(|&b| b == 0).collect();
    if parts.len() != 3 || parts[1].is_empty() {
        return Err(SaslError::Malformed);
    }
    let user = field(parts[1])?;
    if !parts[0].is_empty() && parts[0] != parts[1] {
        return Err(SaslError::Malformed);
    }
    if parts[2].len() > MAX_FIELD {
        return Err(SaslError::Malformed);
    }
    Ok(Credentials {
        user,
        secret: parts[2].to_vec(),
        stamp: stamp.to_string(),
    })
}

/// LOGIN: user and password, each decoded separately.
pub fn login(user: &[u8], pass: &[u8], stamp: &str) -> Result<Credentials, SaslError> {
    if user.is_empty() || pass.len() > MAX_FIELD || pass.contains(&0) {
        return Err(SaslError::Malformed);
    }
    Ok(Credentials {
        user: field(user)?,
        secret: pass.to_vec(),
        stamp: stamp.to_string(),
    })
}

/// CRAM-MD5: `user SP hexdigest` answering `challenge`.
pub fn cram(decoded: &[u8], challenge: &str) -> Result<Credentials, SaslError> {
    let i = decoded
        .iter()
        .rposition(|&b| b == b' ')
        .ok_or(SaslError::Malformed)?;
    let (user, digest) = (&decoded[..i], &decoded[i + 1..]);
    if user.is_empty() || digest.len() != 32 || !digest.iter().all(u8::is_ascii_hexdigit) {
        return Err(SaslError::Malformed);
    }
    Ok(Credentials {
        user: field(user)?,
        secret: digest.to_ascii_lowercase(),
        stamp: challenge.to_string(),
    })
}

/// The challenge / timestamp `<pid.time@host>`.
pub fn timestamp(host: &str) -> String {
    format!("<{}.{}@{}>", std::process::id(), qsys::now(), host)
}

/// The result of running checkpassword.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Ok,
    Rejected,
    Temporary,
}

/// Run `argv` (checkpassword and its arguments) with the credentials on fd 3.
pub fn check(argv: &[String], cred: &Credentials) -> Verdict {
    let Some((prog, args)) = argv.split_first() else {
        return Verdict::Temporary;
    };
    let mut rec = Vec::with_capacity(512);
    rec.extend_from_slice(cred.user.as_bytes());
    rec.push(0);
    rec.extend_from_slice(&cred.secret);
    rec.push(0);
    rec.extend_from_slice(cred.stamp.as_bytes());
    rec.push(0);
    // The record (< 1 KiB) fits in the pipe buffer: write it all, then start the child.
    let Ok((r, w)): Result<(OwnedFd, OwnedFd), _> =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
    else {
        return Verdict::Temporary;
    };
    {
        let mut w = std::fs::File::from(w);
        if w.write_all(&rec).is_err() {
            return Verdict::Temporary;
        }
    }
    rec.iter_mut().for_each(|b| *b = 0);
    let rfd = r.as_raw_fd();
    let mut cmd = Command::new(prog);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    // SAFETY: between fork and exec we only call async-signal-safe functions (dup2,
    // signal resets) on descriptors we own.
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
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(_) => return Verdict::Temporary,
    };
    drop(r);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match child.try_wait() {
            Ok(Some(st)) => {
                return match st.code() {
                    Some(0) => Verdict::Ok,
                    Some(111) | None => Verdict::Temporary,
                    Some(_) => Verdict::Rejected,
                };
            }
            Ok(None) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Verdict::Temporary;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_forms() {
        let c = plain(b"\0joe\0secret", "<1.2@h>").unwrap();
        assert_eq!(
            (c.user.as_str(), c.secret.as_slice()),
            ("joe", &b"secret"[..])
        );
        assert!(plain(b"joe\0joe\0pw", "").is_ok());
        assert_eq!(plain(b"ann\0joe\0pw", ""), Err(SaslError::Malformed));
        assert_eq!(plain(b"joe\0pw", ""), Err(SaslError::Malformed));
        assert_eq!(plain(b"\0\0pw", ""), Err(SaslError::Malformed));
        assert_eq!(decode(b"*"), Err(SaslError::Cancelled));
        assert_eq!(decode(b"!!"), Err(SaslError::Malformed));
        assert_eq!(decode(b"AGpvZQBwdw==").unwrap(), b"\0joe\0pw");
    }

    #[test]
    fn cram_form() {
        let c = cram(b"joe 0123456789ABCDEF0123456789abcdef", "<c>").unwrap();
        assert_eq!(c.secret, b"0123456789abcdef0123456789abcdef");
        assert!(cram(b"joe 0123", "<c>").is_err());
        assert!(cram(b"0123456789abcdef0123456789abcdef", "<c>").is_err());
    }

    #[test]
    fn checkpassword_gets_fd3() {
        let d = tempfile::tempdir().unwrap();
        let script = d.path().join("cp");
        let seen = d.path().join("seen");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\nhead -c 512 <&3 | tr '\\0' '|' > {}\n[ \"$(cat {})\" = 'joe|pw|<s>|' ] || exit 1\nexec \"$@\"\n",
                seen.display(),
                seen.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let argv = vec![script.display().to_string(), "/bin/true".into()];
        let good = Credentials {
            user: "joe".into(),
            secret: b"pw".to_vec(),
            stamp: "<s>".into(),
        };
        assert_eq!(check(&argv, &good), Verdict::Ok);
        let bad = Credentials {
            secret: b"no".to_vec(),
            ..good
        };
        assert_eq!(check(&argv, &bad), Verdict::Rejected);
        assert_eq!(check(&["/nonexistent".into()], &bad), Verdict::Temporary);
    }
}
