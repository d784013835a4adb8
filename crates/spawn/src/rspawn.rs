//! qmail-rspawn's conversion of qmail-remote's output (qmail.md 3.4).
//!
//! qmail-remote writes NUL-terminated reports: `r`/`h`/`s` per recipient, then one
//! `K`/`Z`/`D` for the message. The delivery result is the message letter, overridden
//! by the first recipient report (`s` makes it Z, `h` makes it D); the text is the
//! recipient report's text, followed by the message report's text when the result is
//! no better than the recipient's.

use crate::protocol::Status;

/// Convert qmail-remote's exit status and output into a spawn report.
pub fn report(code: Option<i32>, output: &[u8]) -> (Status, Vec<u8>) {
    match code {
        None => return (Status::Deferral, b"qmail-remote crashed.".to_vec()),
        Some(111) => return (Status::Deferral, b"Unable to run qmail-remote.".to_vec()),
        Some(0) => {}
        Some(_) => return (Status::Failure, b"Unable to run qmail-remote.".to_vec()),
    }
    if output.is_empty() {
        return (
            Status::Deferral,
            b"qmail-remote produced no output.".to_vec(),
        );
    }
    let parts: Vec<&[u8]> = output
        .split(|&b| b == 0)
        .filter(|p| !p.is_empty())
        .collect();
    let value = |l: u8| match l {
        b'K' => 1,
        b'Z' => 0,
        _ => -1,
    };
    let message = parts.iter().find(|p| matches!(p[0], b'K' | b'Z' | b'D'));
    let result = message.map(|p| value(p[0])).unwrap_or(-1);
    let recipient = parts.iter().find(|p| matches!(p[0], b'r' | b'h' | b's'));
    let mut text = Vec::new();
    let mut outcome = result;
    if let Some(r) = recipient {
        outcome = match r[0] {
            b's' => 0,
            b'h' => -1,
            _ => result,
        };
        text.extend_from_slice(&r[1..]);
    }
    if result <= outcome
        && let Some(m) = message
    {
        text.extend_from_slice(&m[1..]);
    }
    let status = match outcome {
        1 => Status::Success,
        0 => Status::Deferral,
        _ => Status::Failure,
    };
    (status, text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted() {
        let (l, t) = report(
            Some(0),
            b"r\0K1.2.3.4 accepted message.\nRemote host said: 250 ok 12 qp 3\n\0",
        );
        assert_eq!(l, Status::Success);
        assert_eq!(
            t,
            b"1.2.3.4 accepted message.\nRemote host said: 250 ok 12 qp 3\n"
        );
    }

    #[test]
    fn recipient_rejected() {
        let (l, t) = report(Some(0), b"h1.2.3.4 does not like recipient.\nRemote host said: 550 no\n\0DGiving up on 1.2.3.4.\n\0");
        assert_eq!(l, Status::Failure);
        assert_eq!(
            t,
            b"1.2.3.4 does not like recipient.\nRemote host said: 550 no\nGiving up on 1.2.3.4.\n"
        );
    }

    #[test]
    fn temporary_recipient_failure_defers() {
        let (l, _) = report(Some(0), b"s1.2.3.4 does not like recipient.\nRemote host said: 451 later\n\0DGiving up on 1.2.3.4.\n\0");
        assert_eq!(l, Status::Deferral);
    }

    #[test]
    fn failures_to_run() {
        assert_eq!(report(None, b"").0, Status::Deferral);
        assert_eq!(report(Some(0), b"").1, b"qmail-remote produced no output.");
        assert_eq!(
            report(
                Some(0),
                b"ZSorry, I wasn't able to establish an SMTP connection. (#4.4.1)\n\0"
            )
            .0,
            Status::Deferral
        );
    }
}
