//! SMTP AUTH (RFC 4954): the PLAIN, LOGIN and CRAM-MD5 exchanges, and verification
//! through the checkpassword interface (the client in [`auth::client`], shared with
//! qmail-popup), so one checkpassword program serves SMTP and POP3.
//!
//! checkpassword gets on fd 3 `user\0password\0timestamp\0` (PLAIN, LOGIN; the timestamp
//! is qmail-popup's `<pid.time@host>`) or `user\0digest\0challenge\0` (CRAM-MD5, as the
//! qmail smtp-auth patch and cmd5checkpw do); fds 0 and 1 are `/dev/null` (never the
//! client), fd 2 is our log. Exit 0 = accepted; 111, a crash or a timeout = temporary
//! failure (`454`); anything else = rejected (`535`). It is killed after 60 seconds.
//! Every decoded response that held a password is wiped, and so are the credentials.

use auth::Credentials;
use auth::client::{self, Exit, Stdio01};
use base64::prelude::*;
use std::time::Duration;

/// Longest username or password accepted (the fd 3 record must stay under 512 bytes).
pub const MAX_FIELD: usize = 240;
/// How long checkpassword may take.
pub const TIMEOUT: Duration = Duration::from_secs(60);

/// Why an exchange failed before checkpassword ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SaslError {
    /// The client sent `*`.
    Cancelled,
    /// Not base64, or not the expected structure.
    Malformed,
}

/// Decode one client response (`*` cancels). The caller wipes the result.
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

/// Decode `response` and parse it with `parse`, wiping the response and the decoded
/// bytes afterwards, whatever the outcome.
pub fn decode_with<T>(
    mut response: Vec<u8>,
    parse: impl FnOnce(&[u8]) -> Result<T, SaslError>,
) -> Result<T, SaslError> {
    let r = decode(&response).and_then(|mut d| {
        let r = parse(&d);
        auth::crypt::wipe(&mut d);
        r
    });
    auth::crypt::wipe(&mut response);
    r
}

fn field(b: &[u8]) -> Result<Vec<u8>, SaslError> {
    if b.len() > MAX_FIELD || b.contains(&0) || std::str::from_utf8(b).is_err() {
        return Err(SaslError::Malformed);
    }
    Ok(b.to_vec())
}

fn credentials(user: Vec<u8>, pass: &[u8], stamp: &str) -> Credentials {
    Credentials {
        user,
        pass: pass.to_vec(),
        timestamp: stamp.as_bytes().to_vec(),
    }
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
    Ok(credentials(user, parts[2], stamp))
}

/// LOGIN: user and password, each decoded separately.
pub fn login(user: &[u8], pass: &[u8], stamp: &str) -> Result<Credentials, SaslError> {
    if user.is_empty() || pass.len() > MAX_FIELD || pass.contains(&0) {
        return Err(SaslError::Malformed);
    }
    Ok(credentials(field(user)?, pass, stamp))
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
    Ok(credentials(
        field(user)?,
        &digest.to_ascii_lowercase(),
        challenge,
    ))
}

/// The challenge / timestamp `<pid.time@host>`.
pub fn timestamp(host: &str) -> String {
    format!("<{}.{}@{}>", std::process::id(), qsys::now(), host)
}

/// What a check means for the SMTP reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Ok,
    Rejected,
    Temporary,
}

impl Verdict {
    pub fn from_exit(e: Exit) -> Verdict {
        match e {
            Exit::Accepted => Verdict::Ok,
            Exit::Temporary | Exit::Crashed | Exit::TimedOut => Verdict::Temporary,
            Exit::Refused | Exit::Misuse | Exit::Other(_) => Verdict::Rejected,
        }
    }
}

/// Run `argv` (checkpassword and its arguments) with the credentials on fd 3.
pub fn check(argv: &[String], cred: &Credentials) -> Verdict {
    let argv: Vec<std::ffi::OsString> = argv.iter().map(Into::into).collect();
    match client::run(&argv, cred, Stdio01::Null, Some(TIMEOUT)) {
        Ok(e) => Verdict::from_exit(e),
        Err(_) => Verdict::Temporary,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_forms() {
        let c = plain(b"\0joe\0secret", "<1.2@h>").unwrap();
        assert_eq!(
            (c.user.as_slice(), c.pass.as_slice()),
            (&b"joe"[..], &b"secret"[..])
        );
        assert!(plain(b"joe\0joe\0pw", "").is_ok());
        assert_eq!(plain(b"ann\0joe\0pw", "").err(), Some(SaslError::Malformed));
        assert_eq!(plain(b"joe\0pw", "").err(), Some(SaslError::Malformed));
        assert_eq!(plain(b"\0\0pw", "").err(), Some(SaslError::Malformed));
        assert_eq!(decode(b"*"), Err(SaslError::Cancelled));
        assert_eq!(decode(b"!!"), Err(SaslError::Malformed));
        assert_eq!(decode(b"AGpvZQBwdw==").unwrap(), b"\0joe\0pw");
    }

    #[test]
    fn cram_form() {
        let c = cram(b"joe 0123456789ABCDEF0123456789abcdef", "<c>").unwrap();
        assert_eq!(c.pass, b"0123456789abcdef0123456789abcdef");
        assert!(cram(b"joe 0123", "<c>").is_err());
        assert!(cram(b"0123456789abcdef0123456789abcdef", "<c>").is_err());
    }

    #[test]
    fn checkpassword_meanings() {
        assert_eq!(Verdict::from_exit(Exit::Accepted), Verdict::Ok);
        assert_eq!(Verdict::from_exit(Exit::Refused), Verdict::Rejected);
        assert_eq!(Verdict::from_exit(Exit::Other(3)), Verdict::Rejected);
        assert_eq!(Verdict::from_exit(Exit::TimedOut), Verdict::Temporary);
        assert_eq!(Verdict::from_exit(Exit::Crashed), Verdict::Temporary);
        let c = credentials(b"joe".to_vec(), b"pw", "<s>");
        assert_eq!(check(&["/nonexistent".into()], &c), Verdict::Temporary);
        assert_eq!(check(&[], &c), Verdict::Temporary);
    }

    #[test]
    fn decoded_responses_are_parsed_whole() {
        let r = decode_with(b"AGpvZQBwdw==".to_vec(), |d| plain(d, "<s>")).unwrap();
        assert_eq!(r.pass, b"pw");
        assert_eq!(
            decode_with(b"*".to_vec(), |d| plain(d, "")).err(),
            Some(SaslError::Cancelled)
        );
        // a user name with CR LF is taken as given (checkpassword refuses it; the log
        // escapes it)
        let r = decode_with(BASE64_STANDARD.encode(b"\0a\r\nb\0pw").into_bytes(), |d| {
            plain(d, "")
        })
        .unwrap();
        assert_eq!(r.user, b"a\r\nb");
    }
}
