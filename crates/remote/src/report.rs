//! The reports qmail-remote writes on descriptor 1 (qmail.md 6.1, `q103:qmail-remote.c`).
//!
//! Zero or more recipient reports (`r`, `h`, `s`), then exactly one message report
//! (`K`, `Z`, `D`), each `<letter><text>\0`. qmail-rspawn turns them into one spawn report
//! (qmail.md 3.4); [`rspawn_summary`] reproduces that mapping so tests can check the
//! combined text qmail-send will log and bounce with. This module also holds qmail's
//! address quoting (`quote.c`) and every fixed text, spelled exactly as qmail spells it.

/// The result of one qmail-remote run, written out once at exit.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Recipient reports in argv order: (`r`|`h`|`s`, text).
    pub recipients: Vec<(u8, String)>,
    /// The message report: (`K`|`Z`|`D`, text).
    pub message: Option<(u8, String)>,
}

impl Report {
    pub fn new() -> Report {
        Report::default()
    }

    /// A report that is nothing but a message report.
    pub fn only(letter: u8, text: &str) -> Report {
        Report {
            recipients: Vec::new(),
            message: Some((letter, text.to_string())),
        }
    }

    pub fn rcpt(&mut self, letter: u8, text: String) {
        self.recipients.push((letter, text));
    }

    pub fn finish(&mut self, letter: u8, text: String) {
        if self.message.is_none() {
            self.message = Some((letter, text));
        }
    }

    /// The bytes for descriptor 1. NULs inside texts become `?` (a NUL ends a report).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut put = |letter: u8, text: &str| {
            out.push(letter);
            out.extend(text.bytes().map(|b| if b == 0 { b'?' } else { b }));
            out.push(0);
        };
        for (l, t) in &self.recipients {
            put(*l, t);
        }
        match &self.message {
            Some((l, t)) => put(*l, t),
            None => put(b'Z', "qmail-remote produced no message report. (#4.3.0)\n"),
        }
        out
    }
}

/// The fixed texts (each ends with `\n`, as qmail writes them).
pub mod text {
    pub const USAGE: &str = "I (qmail-remote) was invoked improperly. (#5.3.5)\n";
    pub const CONTROLS: &str = "Unable to read control files. (#4.3.0)\n";
    pub const HOME: &str = "Unable to switch to home directory. (#4.3.0)\n";
    pub const READ_MESSAGE: &str = "Unable to read message. (#4.3.0)\n";
    pub const PARTIAL_LINE: &str =
        "SMTP cannot transfer messages with partial final lines. (#5.6.2)\n";
    pub const NO_CONNECT: &str = "Sorry, I wasn't able to establish an SMTP connection. (#4.4.1)\n";
    pub const DNS_SOFT: &str = "Sorry, I couldn't find any host by that name. (#4.1.2)\n";
    pub const NO_MX: &str = "Sorry, I couldn't find a mail exchanger or IP address. (#5.4.4)\n";
    pub const PREFME: &str = "Sorry. Although I'm listed as a best-preference MX or A for that host,\nit isn't in my control/locals file, so I don't treat it as local. (#5.4.6)\n";
    pub const BAD_ROUTE: &str = "Unable to parse control/smtproutes. (#4.3.0)\n";
    pub const BAD_ADDRESS: &str = "Addresses with line breaks cannot be sent over SMTP. (#5.1.3)\n";

    /// `DSorry, I couldn't find any host named X. (#5.1.2)`
    pub fn no_host(host: &str) -> String {
        format!("Sorry, I couldn't find any host named {host}. (#5.1.2)\n")
    }
}

/// qmail's `outsmtptext`: `Remote host said: ` and the reply as received (CRs dropped,
/// lines ending `\n`), or nothing for an empty reply.
pub fn remote_said(reply_text: &str) -> String {
    if reply_text.is_empty() {
        String::new()
    } else {
        format!("Remote host said: {reply_text}")
    }
}

/// qmail's `quit(prepend, append)` text: `<prepend><ip><append>.\n` + the reply.
pub fn host_text(prepend: &str, ip: &str, append: &str, reply_text: &str) -> String {
    format!("{prepend}{ip}{append}.\n{}", remote_said(reply_text))
}

/// qmail's `dropped()` text.
pub fn dropped(ip: &str, critical: bool) -> String {
    let dup = if critical { "Possible duplicate! " } else { "" };
    format!("Connected to {ip} but connection died. {dup}(#4.4.2)\n")
}

/// Characters qmail's `quote.c` lets stand unquoted in a local part (RFC 821 `x`).
fn atom_ok(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-./=?^_`{|}~".contains(&b)
}

/// qmail's `quote()`: a local part that is not a plain dot-atom goes in double quotes,
/// with `"` and `\` backslash-escaped.
pub fn quote_local(local: &str) -> String {
    let b = local.as_bytes();
    let need = b.is_empty()
        || b.iter().any(|&c| !atom_ok(c))
        || b[0] == b'.'
        || b[b.len() - 1] == b'.'
        || b.windows(2).any(|w| w == b"..");
    if !need {
        return local.to_string();
    }
    let mut out = String::with_capacity(local.len() + 2);
    out.push('"');
    for c in local.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// qmail's `quote2()`: quote the part before the last `@`; the empty address stays empty.
pub fn quote_addr(addr: &str) -> String {
    if addr.is_empty() {
        return String::new();
    }
    match addr.rfind('@') {
        Some(i) => format!("{}{}", quote_local(&addr[..i]), &addr[i..]),
        None => quote_local(addr),
    }
}

/// qmail-rspawn's report mapping (qmail.md 3.4): the letter and text qmail-send gets.
pub fn rspawn_summary(out: &[u8]) -> (u8, Vec<u8>) {
    if out.is_empty() {
        return (b'Z', b"qmail-remote produced no output.".to_vec());
    }
    let mut result: i32 = -1;
    let mut have_result = false;
    let mut first_rcpt: Option<&[u8]> = None;
    let mut override_: i32 = 1;
    let mut message_text: &[u8] = b"";
    for piece in out.split(|&b| b == 0) {
        let Some((&letter, rest)) = piece.split_first() else {
            continue;
        };
        match letter {
            b'K' | b'Z' | b'D' if !have_result => {
                have_result = true;
                result = match letter {
                    b'K' => 1,
                    b'Z' => 0,
                    _ => -1,
                };
                message_text = rest;
            }
            b'r' | b'h' | b's' if first_rcpt.is_none() => {
                first_rcpt = Some(rest);
                override_ = match letter {
                    b's' => 0,
                    b'h' => -1,
                    _ => 1,
                };
            }
            _ => {}
        }
    }
    // qmail-rspawn: the first recipient report replaces the result (`s` Z, `h` D).
    if first_rcpt.is_none() || override_ == 1 {
        override_ = result;
    }
    let letter = match override_ {
        1 => b'K',
        0 => b'Z',
        _ => b'D',
    };
    let mut text = first_rcpt.unwrap_or(b"").to_vec();
    if result <= override_ {
        text.extend_from_slice(message_text);
    }
    (letter, text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_bytes_are_letter_text_nul() {
        let mut r = Report::new();
        r.rcpt(b'r', String::new());
        r.rcpt(
            b'h',
            "1.2.3.4 does not like recipient.\nRemote host said: 550 no\n".into(),
        );
        r.finish(
            b'K',
            host_text("", "1.2.3.4", " accepted message", "250 ok\n"),
        );
        r.finish(b'Z', "ignored".into());
        assert_eq!(
            r.to_bytes(),
            b"r\0h1.2.3.4 does not like recipient.\nRemote host said: 550 no\n\0K1.2.3.4 accepted message.\nRemote host said: 250 ok\n\0"
        );
    }

    #[test]
    fn nul_in_text_becomes_question_mark() {
        let r = Report::only(b'Z', "a\0b");
        assert_eq!(r.to_bytes(), b"Za?b\0");
    }

    #[test]
    fn fixed_texts() {
        assert_eq!(
            Report::only(b'D', text::USAGE).to_bytes(),
            b"DI (qmail-remote) was invoked improperly. (#5.3.5)\n\0"
        );
        assert_eq!(
            dropped("1.2.3.4", false),
            "Connected to 1.2.3.4 but connection died. (#4.4.2)\n"
        );
        assert_eq!(
            dropped("1.2.3.4", true),
            "Connected to 1.2.3.4 but connection died. Possible duplicate! (#4.4.2)\n"
        );
        assert_eq!(
            host_text("Giving up on ", "1.2.3.4", "", ""),
            "Giving up on 1.2.3.4.\n"
        );
        assert_eq!(
            host_text(
                "Connected to ",
                "1.2.3.4",
                " but greeting failed",
                "554 go away\n"
            ),
            "Connected to 1.2.3.4 but greeting failed.\nRemote host said: 554 go away\n"
        );
        assert_eq!(
            text::no_host("x.test"),
            "Sorry, I couldn't find any host named x.test. (#5.1.2)\n"
        );
    }

    #[test]
    fn rspawn_mapping_examples_from_qmail_md() {
        let (l, t) =
            rspawn_summary(b"r\0K1.2.3.4 accepted message.\nRemote host said: 250 ok 12 qp 3\n\0");
        assert_eq!(l, b'K');
        assert_eq!(
            t,
            b"1.2.3.4 accepted message.\nRemote host said: 250 ok 12 qp 3\n"
        );
        let (l, t) = rspawn_summary(
            b"h1.2.3.4 does not like recipient.\nRemote host said: 550 no\n\0DGiving up on 1.2.3.4.\n\0",
        );
        assert_eq!(l, b'D');
        assert_eq!(
            t,
            b"1.2.3.4 does not like recipient.\nRemote host said: 550 no\nGiving up on 1.2.3.4.\n"
        );
        let (l, t) = rspawn_summary(b"s1.2.3.4 does not like recipient.\nRemote host said: 451 later\n\0DGiving up on 1.2.3.4.\n\0");
        assert_eq!(l, b'Z');
        assert!(t.ends_with(b"Giving up on 1.2.3.4.\n"));
        let (l, t) =
            rspawn_summary(b"s1.2.3.4 does not like recipient.\n\0K1.2.3.4 accepted message.\n\0");
        assert_eq!(
            (l, &t[..]),
            (b'Z', &b"1.2.3.4 does not like recipient.\n"[..])
        );
        let (l, t) =
            rspawn_summary(b"h1.2.3.4 does not like recipient.\n\0K1.2.3.4 accepted message.\n\0");
        assert_eq!(
            (l, &t[..]),
            (b'D', &b"1.2.3.4 does not like recipient.\n"[..])
        );
        assert_eq!(rspawn_summary(b"").0, b'Z');
    }

    #[test]
    fn quoting_follows_quote_c() {
        assert_eq!(quote_addr(""), "");
        assert_eq!(quote_addr("joe@example.org"), "joe@example.org");
        assert_eq!(quote_addr("joe.b+x@example.org"), "joe.b+x@example.org");
        assert_eq!(
            quote_addr("joe smith@example.org"),
            "\"joe smith\"@example.org"
        );
        assert_eq!(quote_addr(".joe@x"), "\".joe\"@x");
        assert_eq!(quote_addr("a..b@x"), "\"a..b\"@x");
        assert_eq!(quote_addr("a\"b\\c@x"), "\"a\\\"b\\\\c\"@x");
        assert_eq!(quote_addr("a@b@x"), "\"a@b\"@x");
        assert_eq!(quote_addr("postmaster"), "postmaster");
        assert_eq!(quote_addr("@x"), "\"\"@x");
    }
}
