//! Wire formats of the spawn protocol (qmail's `spawn.c`), byte-exact.

/// The outcome of one delivery, the second byte of a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// `K`: delivered; the recipient is done.
    Success,
    /// `Z`: temporary failure; qmail-send tries again later.
    Deferral,
    /// `D`: permanent failure; qmail-send bounces.
    Failure,
}

impl Status {
    /// The byte on the wire.
    pub fn byte(self) -> u8 {
        match self {
            Status::Success => b'K',
            Status::Deferral => b'Z',
            Status::Failure => b'D',
        }
    }

    /// The status a wire byte stands for; `None` for any other byte.
    pub fn from_byte(b: u8) -> Option<Status> {
        match b {
            b'K' => Some(Status::Success),
            b'Z' => Some(Status::Deferral),
            b'D' => Some(Status::Failure),
            _ => None,
        }
    }
}

/// Slots a spawner offers (qmail's conf-spawn); the slot id is one byte.
pub const SLOTS: u8 = 120;

/// One delivery request from qmail-send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub slot: u8,
    pub messid: String,
    pub sender: Vec<u8>,
    pub recipient: Vec<u8>,
}

/// Encode a command.
pub fn encode_command(c: &Command) -> Vec<u8> {
    let mut v = Vec::with_capacity(c.messid.len() + c.sender.len() + c.recipient.len() + 4);
    v.push(c.slot);
    v.extend_from_slice(c.messid.as_bytes());
    v.push(0);
    v.extend_from_slice(&c.sender);
    v.push(0);
    v.extend_from_slice(&c.recipient);
    v.push(0);
    v
}

/// Take the first complete command off `buf`. `Ok(None)`: need more bytes.
/// `Err(slot)`: the command is malformed (bad messid); it is consumed.
pub fn take_command(buf: &mut Vec<u8>) -> Option<Result<Command, u8>> {
    if buf.is_empty() {
        return None;
    }
    let mut ends = Vec::with_capacity(3);
    for (i, &b) in buf.iter().enumerate().skip(1) {
        if b == 0 {
            ends.push(i);
            if ends.len() == 3 {
                break;
            }
        }
    }
    if ends.len() < 3 {
        return None;
    }
    let slot = buf[0];
    let messid = buf[1..ends[0]].to_vec();
    let sender = buf[ends[0] + 1..ends[1]].to_vec();
    let recipient = buf[ends[1] + 1..ends[2]].to_vec();
    buf.drain(..=ends[2]);
    let valid = !messid.is_empty()
        && messid.len() <= 100
        && messid.iter().all(|b| b.is_ascii_digit() || *b == b'/');
    if !valid {
        return Some(Err(slot));
    }
    Some(Ok(Command {
        slot,
        messid: String::from_utf8_lossy(&messid).into_owned(),
        sender,
        recipient,
    }))
}

/// Encode a report: slot, status letter, text, NUL (NULs inside the text become `?`).
pub fn encode_report(slot: u8, status: Status, text: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(text.len() + 3);
    v.push(slot);
    v.push(status.byte());
    v.extend(text.iter().map(|&b| if b == 0 { b'?' } else { b }));
    v.push(0);
    v
}

/// One report from a spawner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub slot: u8,
    /// `None`: the status byte was not K, Z or D (qmail-send defers such a report as
    /// mangled).
    pub status: Option<Status>,
    pub text: Vec<u8>,
}

/// Take the first complete report off `buf`.
pub fn take_report(buf: &mut Vec<u8>) -> Option<Report> {
    if buf.len() < 2 {
        return None;
    }
    let end = buf.iter().skip(2).position(|&b| b == 0)? + 2;
    let r = Report {
        slot: buf[0],
        status: Status::from_byte(buf[1]),
        text: buf[2..end].to_vec(),
    };
    buf.drain(..=end);
    Some(r)
}

/// qmail's `senderadd`: a VERP sender `P-@H-@[]` becomes `P-box=rhost@H` for recipient
/// `box@rhost`; any other sender is unchanged.
pub fn verp_sender(sender: &[u8], recipient: &[u8]) -> Vec<u8> {
    let Some(base) = sender.strip_suffix(b"-@[]") else {
        return sender.to_vec();
    };
    let at = base.iter().rposition(|&b| b == b'@').unwrap_or(base.len());
    let (prefix, host) = (&base[..at], &base[at..]);
    let mut v = prefix.to_vec();
    match recipient.iter().rposition(|&b| b == b'@') {
        Some(i) => {
            v.extend_from_slice(&recipient[..i]);
            v.push(b'=');
            v.extend_from_slice(&recipient[i + 1..]);
        }
        None => v.extend_from_slice(recipient),
    }
    v.extend_from_slice(host);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_round_trip_even_with_slot_zero() {
        let c = Command {
            slot: 0,
            messid: "5/28".into(),
            sender: b"".to_vec(),
            recipient: b"joe@x".to_vec(),
        };
        let mut buf = encode_command(&c);
        buf.extend_from_slice(
            &encode_command(&Command {
                slot: 7,
                ..c.clone()
            })[..3],
        );
        assert_eq!(take_command(&mut buf), Some(Ok(c)));
        assert_eq!(take_command(&mut buf), None);
        assert_eq!(buf.len(), 3);
    }

    #[test]
    fn bad_messid_is_refused() {
        let mut buf = b"\x03../etc\0a\0b\0".to_vec();
        assert_eq!(take_command(&mut buf), Some(Err(3)));
        assert!(buf.is_empty());
    }

    #[test]
    fn reports() {
        let mut buf = encode_report(4, Status::Success, b"did 1+0+0\n");
        assert_eq!(buf[..2], [4, b'K']);
        buf.extend_from_slice(&encode_report(0, Status::Deferral, b"x\0y"));
        assert_eq!(take_report(&mut buf).unwrap().text, b"did 1+0+0\n");
        assert_eq!(
            take_report(&mut buf).unwrap(),
            Report {
                slot: 0,
                status: Some(Status::Deferral),
                text: b"x?y".to_vec()
            }
        );
        assert_eq!(take_report(&mut buf), None);
        let mut buf = b"\x01Dno\0\x02Xodd\0".to_vec();
        assert_eq!(take_report(&mut buf).unwrap().status, Some(Status::Failure));
        assert_eq!(take_report(&mut buf).unwrap().status, None);
    }

    #[test]
    fn status_bytes_round_trip() {
        for s in [Status::Success, Status::Deferral, Status::Failure] {
            assert_eq!(Status::from_byte(s.byte()), Some(s));
        }
        assert_eq!(Status::from_byte(b'k'), None);
    }

    #[test]
    fn verp() {
        assert_eq!(
            verp_sender(b"list-@example.org-@[]", b"joe@remote.test"),
            b"list-joe=remote.test@example.org"
        );
        assert_eq!(verp_sender(b"a@b", b"joe@remote.test"), b"a@b");
    }
}
