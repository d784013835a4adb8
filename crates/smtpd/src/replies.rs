//! Every reply qmail-smtpd sends, each defined once.
//!
//! Replies keep qmail's wording (and its `(#x.y.z)` suffix) where qmail has one, and
//! carry the RFC 2034 enhanced status code in front, since ENHANCEDSTATUSCODES is
//! advertised. A constant is a whole reply line without CR LF; a function builds the
//! replies that carry a value.

use crate::originator::Refusal;

// Connection and command level.
pub const UNABLE_TO_READ_CONTROLS: &str = "421 4.3.0 unable to read controls (#4.3.0)";
pub const TOO_MANY_ERRORS: &str = "421 4.7.0 too many errors, closing connection (#4.7.0)";
pub const TIMEOUT: &str = "451 4.4.2 timeout (#4.4.2)";
pub const LINE_TOO_LONG: &str = "500 5.5.2 line too long (#5.5.2)";
pub const INVALID_CHARACTERS: &str = "500 5.5.2 invalid characters in command (#5.5.2)";
pub const UNIMPLEMENTED: &str = "502 5.5.1 unimplemented (#5.5.1)";
pub const OK: &str = "250 2.0.0 ok";
pub const FLUSHED: &str = "250 2.0.0 flushed";
pub const VRFY: &str = "252 2.1.5 send some mail, i'll try my best";
pub const HELP: &str = "214 2.0.0 qmail home page: https://cr.yp.to/qmail.html";
pub const HELO_SYNTAX: &str = "501 5.5.4 syntax: HELO hostname (#5.5.4)";
pub const EHLO_SYNTAX: &str = "501 5.5.4 syntax: EHLO hostname (#5.5.4)";

// STARTTLS.
pub const STARTTLS_FIRST: &str = "530 5.7.0 Must issue a STARTTLS command first (#5.7.0)";
pub const STARTTLS_SYNTAX: &str = "501 5.5.4 Syntax error (no parameters allowed) (#5.5.4)";
pub const TLS_ACTIVE: &str = "503 5.5.1 TLS already active (#5.5.1)";
pub const TLS_UNAVAILABLE: &str = "454 4.7.0 TLS not available (#4.7.0)";
pub const TLS_READY: &str = "220 2.0.0 ready for tls";

// AUTH (RFC 4954) and the submission limits.
pub const RATE_EXCEEDED: &str =
    "451 4.7.1 sorry, you have sent to too many recipients this hour (#4.7.1)";
pub const RATE_UNCHECKABLE: &str = "451 4.3.0 unable to check the message rate (#4.3.0)";
pub const AUTH_UNAVAILABLE: &str = "503 5.3.3 auth not available (#5.3.3)";
pub const AUTH_ALREADY: &str = "503 5.5.0 you're already authenticated (#5.5.0)";
pub const AUTH_IN_TRANSACTION: &str = "503 5.5.0 no auth during mail transaction (#5.5.0)";
pub const AUTH_UNIMPLEMENTED: &str = "504 5.5.4 auth type unimplemented (#5.5.1)";
pub const AUTH_ENCRYPTION_REQUIRED: &str =
    "538 5.7.11 encryption required for requested authentication mechanism (#5.7.11)";
pub const AUTH_TEMPORARY: &str = "454 4.7.0 temporary authentication failure (#4.3.0)";
pub const AUTH_CANCELED: &str = "501 5.0.0 auth exchange canceled (#5.0.0)";
pub const AUTH_MALFORMED: &str = "501 5.5.4 malformed auth input (#5.5.4)";
/// An empty server challenge (AUTH PLAIN without an initial response).
pub const AUTH_CHALLENGE_EMPTY: &str = "334 ";
/// AUTH LOGIN's prompts: base64 of `Username:` and `Password:`.
pub const AUTH_USERNAME_PROMPT: &str = "334 VXNlcm5hbWU6";
pub const AUTH_PASSWORD_PROMPT: &str = "334 UGFzc3dvcmQ6";
pub const AUTH_OK: &str = "235 2.7.0 ok, go ahead (#2.0.0)";
pub const AUTH_FAILED: &str = "535 5.7.8 authentication failed (#5.7.8)";
pub const AUTH_TOO_MANY_FAILURES: &str =
    "421 4.7.0 too many authentication failures, try again later (#4.7.0)";
pub const AUTH_ACCOUNT_LOCKED: &str =
    "454 4.7.0 too many authentication failures for this account, try again later (#4.7.0)";

// MAIL and RCPT.
pub const NESTED_MAIL: &str = "503 5.5.1 nested MAIL command (#5.5.1)";
pub const AUTH_REQUIRED: &str = "530 5.7.0 authentication required (#5.7.0)";
pub const PARAMETER_SYNTAX: &str = "555 5.5.4 syntax error in parameters (#5.5.4)";
pub const ADDRESS_SYNTAX: &str = "555 5.5.4 syntax error (#5.5.4)";
pub const ADDRESS_UNACCEPTABLE: &str =
    "553 5.1.3 sorry, I can't accept addresses like that (#5.1.3)";
pub const TOO_BIG: &str = "552 5.3.4 sorry, that message size exceeds my databytes limit (#5.3.4)";
pub const SENDER_NOT_YOURS: &str =
    "553 5.7.1 sorry, that envelope sender is not one of your addresses (#5.7.1)";
pub const MAIL_OK: &str = "250 2.1.0 ok";
pub const MAIL_FIRST: &str = "503 5.5.1 MAIL first (#5.5.1)";
pub const RCPT_FIRST: &str = "503 5.5.1 RCPT first (#5.5.1)";
pub const BADMAILFROM: &str =
    "553 5.7.1 sorry, your envelope sender is in my badmailfrom list (#5.7.1)";
pub const BADRCPTTO: &str =
    "553 5.7.1 sorry, your envelope recipient is in my badrcptto list (#5.7.1)";
pub const TOO_MANY_RECIPIENTS: &str = "452 4.5.3 sorry, too many recipients (#4.5.3)";
pub const NO_RELAY: &str = "553 5.7.1 we don't relay (#5.7.1)";
pub const NOT_IN_RCPTHOSTS: &str =
    "553 5.7.1 sorry, that domain isn't in my list of allowed rcpthosts (#5.7.1)";
pub const NO_MAILBOX: &str = "550 5.1.1 sorry, no mailbox here by that name (#5.1.1)";
pub const RCPT_OK: &str = "250 2.1.5 ok";

// DATA and BDAT.
pub const GO_AHEAD: &str = "354 go ahead";
pub const BDAT_SYNTAX: &str = "501 5.5.4 syntax: BDAT size [LAST], closing connection (#5.5.4)";
pub const QQT_FAILURE: &str = "451 4.3.0 qqt failure (#4.3.0)";
pub const BARE_LINE_END: &str = "451 4.5.0 See https://cr.yp.to/docs/smtplf.html. (#4.5.0)";
pub const BARE_CR_IN_CHUNK: &str = "554 5.6.0 sorry, a bare CR in the message (#5.6.0)";
pub const LOOPING: &str = "554 5.4.6 too many hops, this message is looping (#5.4.6)";
pub const NO_FROM: &str =
    "554 5.6.0 sorry, a submitted message needs a From: line with your address (#5.6.0)";
pub const HEADER_TOO_BIG_TO_CHECK: &str =
    "552 5.3.4 sorry, the header is too big to check its From: line (#5.3.4)";

/// `220 greeting ESMTP`, the first line of a session.
pub fn banner(greeting: &str) -> String {
    format!("220 {greeting} ESMTP")
}

/// Postfix's reply when the client at `ip` sent more MAIL commands than
/// `control/clientmessagerate` allows in the window.
pub fn too_much_mail(ip: &str) -> String {
    format!("450 4.7.1 Error: too much mail from {ip}")
}

/// Postfix's reply to a RCPT over `control/clientrcptrate`.
pub fn too_many_recipients_from(ip: &str) -> String {
    format!("450 4.7.1 Error: too many recipients from {ip}")
}

/// Postfix's reply to an AUTH over `control/clientauthrate`.
pub fn too_many_auth_commands(ip: &str) -> String {
    format!("450 4.7.1 Error: too many AUTH commands from {ip}")
}

/// The HELO answer.
pub fn helo(greeting: &str) -> String {
    format!("250 {greeting}")
}

/// The QUIT answer.
pub fn quit(greeting: &str) -> String {
    format!("221 2.0.0 {greeting}")
}

/// A BDAT chunk that is not the last one was read.
pub fn chunk_received(octets: u64) -> String {
    format!("250 2.0.0 {octets} octets received")
}

/// The message is on disk: qmail-queue exited 0.
pub fn accepted(now: u64, qp: u32) -> String {
    format!("250 2.0.0 ok {now} qp {qp}")
}

/// qmail-queue refused the message; `text` is qmail's, with its `(#x.y.z)`.
pub fn queue_failed(permanent: bool, text: &str) -> String {
    if permanent {
        format!("554 5.3.0 {text}")
    } else {
        format!("451 4.3.0 {text}")
    }
}

/// A filter of the qmail-qfilter chain refused the message with its own `text` (exit 82
/// and a `D`/`Z` line on fd 6): the enhanced code is the text's own `(#x.y.z)` when it
/// has one of the right class, else 5.3.0 or 4.3.0 as for qmail-queue's texts. A text
/// that starts with a reply code of the right class and a space (`550 ...`, as
/// qmail-authcheck writes for DMARC, RFC 7489 section 10.3) replies with that code.
pub fn filter_refused(permanent: bool, text: &str) -> String {
    let (mut code, class) = if permanent { (554, '5') } else { (451, '4') };
    let mut text = text;
    if let Some((c, rest)) = text.split_once(' ')
        && c.len() == 3
        && c.starts_with(class)
        && c.bytes().all(|b| b.is_ascii_digit())
        && let Ok(n) = c.parse()
    {
        code = n;
        text = rest;
    }
    let own = text
        .strip_suffix(')')
        .and_then(|t| t.rsplit_once("(#"))
        .map(|(_, s)| s)
        .filter(|s| {
            s.starts_with(class)
                && s.len() <= 11
                && s.split('.').count() == 3
                && s.split('.')
                    .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        });
    let status = own.map_or_else(|| format!("{class}.3.0"), str::to_string);
    format!("{code} {status} {text}")
}

/// An authenticated user's message named an originator that is not theirs.
pub fn originator_refused(r: &Refusal) -> String {
    match r {
        Refusal::NoFrom => NO_FROM.to_string(),
        Refusal::HeaderTooBig => HEADER_TOO_BIG_TO_CHECK.to_string(),
        Refusal::NotYours(f, _) => format!(
            "553 5.7.1 sorry, that {} address is not one of your addresses (#5.7.1)",
            f.name()
        ),
        Refusal::Unreadable(f) => format!(
            "553 5.7.1 sorry, I can't read that {} line as your address (#5.7.1)",
            f.name()
        ),
        Refusal::DisplayName(f, _) => format!(
            "553 5.7.1 sorry, the name in that {} line is another address (#5.7.1)",
            f.name()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::originator::Field;

    #[test]
    fn the_from_refusal_keeps_its_historic_wording() {
        assert_eq!(
            originator_refused(&Refusal::NotYours(Field::From, "b@x".into())),
            "553 5.7.1 sorry, that From: address is not one of your addresses (#5.7.1)"
        );
        assert_eq!(
            queue_failed(false, "qq read error (#4.3.0)"),
            "451 4.3.0 qq read error (#4.3.0)"
        );
    }

    #[test]
    fn client_rate_replies_are_postfixs() {
        assert_eq!(
            too_much_mail("192.0.2.1"),
            "450 4.7.1 Error: too much mail from 192.0.2.1"
        );
        assert_eq!(
            too_many_recipients_from("2001:db8::1"),
            "450 4.7.1 Error: too many recipients from 2001:db8::1"
        );
        assert_eq!(
            too_many_auth_commands("unknown"),
            "450 4.7.1 Error: too many AUTH commands from unknown"
        );
    }

    #[test]
    fn a_filters_reason_keeps_its_own_status_code() {
        assert_eq!(
            filter_refused(true, "attachment type .exe not allowed (#5.7.1)"),
            "554 5.7.1 attachment type .exe not allowed (#5.7.1)"
        );
        assert_eq!(
            filter_refused(false, "scanner unavailable (#4.3.0)"),
            "451 4.3.0 scanner unavailable (#4.3.0)"
        );
        // no code, a code of the wrong class, or not a code: the generic one
        assert_eq!(filter_refused(true, "no thanks"), "554 5.3.0 no thanks");
        assert_eq!(
            filter_refused(false, "odd (#5.7.1)"),
            "451 4.3.0 odd (#5.7.1)"
        );
        assert_eq!(filter_refused(true, "x (#5.a.1)"), "554 5.3.0 x (#5.a.1)");
        // the filter's own reply code, of the right class only
        assert_eq!(
            filter_refused(true, "550 rejected per DMARC (#5.7.1)"),
            "550 5.7.1 rejected per DMARC (#5.7.1)"
        );
        assert_eq!(
            filter_refused(false, "451 dns failure (#4.4.3)"),
            "451 4.4.3 dns failure (#4.4.3)"
        );
        assert_eq!(filter_refused(true, "451 x"), "554 5.3.0 451 x");
        assert_eq!(filter_refused(true, "5x0 x"), "554 5.3.0 5x0 x");
    }
}
