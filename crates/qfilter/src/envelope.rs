//! qmail-queue's envelope as a filter chain reads it from fd 1: `F<sender>\0`, then
//! `T<recipient>\0` per recipient, then one more `\0`. Reading stops at that last NUL
//! and never takes more than [`MAX_ENVELOPE`] bytes (1000 recipients, qmail-smtpd's
//! `maxrcpt` default, of the longest legal address fit).
//!
//! The variables follow qmail-qfilter: `QMAILUSER` and `QMAILHOST` are the sender's
//! local part and domain (split at the last `@`; no `@`: all of it is the user, the host
//! is empty), `QMAILRCPTS` the recipients, each followed by a newline. The kernel takes
//! no single variable over 128 KiB: a longer list is left out of `QMAILRCPTS` (then
//! empty), and filters that need it whole read fd 3.

use std::ffi::OsString;
use std::io::Read;
use std::os::unix::ffi::OsStringExt;

/// The most envelope bytes read.
pub const MAX_ENVELOPE: usize = 1024 * 1024;

/// The longest `QMAILRCPTS` value set.
pub const MAX_RCPTS_VARIABLE: usize = 120 * 1024;

/// Why an envelope was not read, with qmail-queue's exit code for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnvelopeError {
    /// More than [`MAX_ENVELOPE`] bytes (11, "envelope address too long for qq").
    TooLong,
    /// Not `F...\0(T...\0)*\0` (91, envelope format error).
    Format,
    /// End of input before the final NUL, or a read error (54): the caller gave up.
    Read,
}

impl EnvelopeError {
    /// qmail-queue's exit code for this failure.
    pub fn exit_code(self) -> i32 {
        match self {
            EnvelopeError::TooLong => 11,
            EnvelopeError::Format => 91,
            EnvelopeError::Read => 54,
        }
    }
}

/// An envelope read whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The bytes as read, final NUL included (what each filter reads on fd 3).
    pub raw: Vec<u8>,
    pub sender: Vec<u8>,
    pub recipients: Vec<Vec<u8>>,
}

impl Envelope {
    /// `QMAILUSER`, `QMAILHOST` and `QMAILRCPTS`.
    pub fn variables(&self) -> Vec<(OsString, OsString)> {
        let (user, host) = match self.sender.iter().rposition(|&b| b == b'@') {
            Some(at) => (&self.sender[..at], &self.sender[at + 1..]),
            None => (&self.sender[..], &b""[..]),
        };
        let mut rcpts = Vec::new();
        for r in &self.recipients {
            rcpts.extend_from_slice(r);
            rcpts.push(b'\n');
        }
        if rcpts.len() > MAX_RCPTS_VARIABLE {
            rcpts.clear();
        }
        vec![
            ("QMAILUSER".into(), OsString::from_vec(user.to_vec())),
            ("QMAILHOST".into(), OsString::from_vec(host.to_vec())),
            ("QMAILRCPTS".into(), OsString::from_vec(rcpts)),
        ]
    }
}

/// Read an envelope from `input`, stopping right after its final NUL.
pub fn read(input: &mut impl Read) -> Result<Envelope, EnvelopeError> {
    let mut raw = Vec::new();
    let mut sender = None;
    let mut recipients = Vec::new();
    let mut field = Vec::new();
    let mut buf = [0u8; 1];
    loop {
        match input.read(&mut buf) {
            Ok(0) => return Err(EnvelopeError::Read),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return Err(EnvelopeError::Read),
        }
        if raw.len() >= MAX_ENVELOPE {
            return Err(EnvelopeError::TooLong);
        }
        raw.push(buf[0]);
        if buf[0] != 0 {
            field.push(buf[0]);
            continue;
        }
        let f = std::mem::take(&mut field);
        match (sender.is_some(), f.split_first()) {
            (false, Some((b'F', s))) => sender = Some(s.to_vec()),
            (true, Some((b'T', r))) => recipients.push(r.to_vec()),
            (true, None) if !recipients.is_empty() => break,
            _ => return Err(EnvelopeError::Format),
        }
    }
    Ok(Envelope {
        raw,
        sender: sender.unwrap_or_default(),
        recipients,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_to_the_final_nul_and_no_further() {
        let mut input: &[u8] = b"Fa@b.c\0Tx@y\0Tz\0\0trailing";
        let e = read(&mut input).unwrap();
        assert_eq!(e.raw, b"Fa@b.c\0Tx@y\0Tz\0\0");
        assert_eq!(input, b"trailing");
        assert_eq!(e.sender, b"a@b.c");
        assert_eq!(e.recipients, vec![b"x@y".to_vec(), b"z".to_vec()]);
        let v = e.variables();
        assert_eq!(v[0].1, "a@b.c".rsplit_once('@').unwrap().0);
        assert_eq!(v[1].1, "b.c");
        assert_eq!(v[2].1, "x@y\nz\n");
    }

    #[test]
    fn the_bounce_sender_and_an_at_less_sender() {
        let e = read(&mut &b"F\0Tx@y\0\0"[..]).unwrap();
        assert_eq!(e.variables()[0].1, "");
        assert_eq!(e.variables()[1].1, "");
        let e = read(&mut &b"Fa@b@c\0Tx@y\0\0"[..]).unwrap();
        assert_eq!(e.variables()[0].1, "a@b");
        let e = read(&mut &b"Froot\0Tx@y\0\0"[..]).unwrap();
        assert_eq!(e.variables()[0].1, "root");
        assert_eq!(e.variables()[1].1, "");
    }

    #[test]
    fn truncated_malformed_and_oversized_envelopes_are_refused() {
        assert_eq!(read(&mut &b""[..]), Err(EnvelopeError::Read));
        assert_eq!(read(&mut &b"Fa\0Tb\0"[..]), Err(EnvelopeError::Read));
        assert_eq!(read(&mut &b"Fa\0\0"[..]), Err(EnvelopeError::Format));
        assert_eq!(read(&mut &b"Ta\0\0"[..]), Err(EnvelopeError::Format));
        assert_eq!(read(&mut &b"Fa\0Xb\0\0"[..]), Err(EnvelopeError::Format));
        let mut big = b"Fa\0".to_vec();
        big.extend(std::iter::repeat_n(b'T', MAX_ENVELOPE));
        assert_eq!(read(&mut &big[..]), Err(EnvelopeError::TooLong));
        assert_eq!(EnvelopeError::TooLong.exit_code(), 11);
    }

    #[test]
    fn a_thousand_long_recipients_are_read_but_too_many_for_the_variable() {
        let mut raw = b"Fa@b\0".to_vec();
        for i in 0..1000 {
            raw.extend_from_slice(format!("T{i:0>250}@x\0").as_bytes());
        }
        raw.push(0);
        let e = read(&mut &raw[..]).unwrap();
        assert_eq!(e.recipients.len(), 1000);
        assert_eq!(e.variables()[2].1, "");
    }
}
