//! qmail-inject: options, environment, header rewriting and the envelope, following
//! qmail-inject(8) and qmail-header(5) (qmail 1.03 / netqmail 1.06 `qmail-inject.c`).
//!
//! - [`parse_args`]: `-a -A -h -H -n -N -f sender`, clustered like getopt, `--` ends the
//!   options.
//! - [`Settings`]: control files `defaulthost`, `defaultdomain`, `plusdomain`, `idhost`
//!   (each defaulting to `me`, then to its own name) and the environment: QMAILHOST,
//!   MAILHOST, QMAILUSER, MAILUSER, USER, LOGNAME, QMAILNAME, MAILNAME, NAME, QMAILSUSER,
//!   QMAILSHOST, QMAILINJECT, QMAILMFTFILE, QMAILDEFAULTDOMAIN, QMAILDEFAULTHOST,
//!   QMAILPLUSDOMAIN, QMAILIDHOST.
//! - [`rewrite`]: the header work. Address fields are parsed and qualified; a field whose
//!   addresses did not change is copied byte for byte, a changed one is regenerated in
//!   qmail's layout. Bcc, Resent-Bcc, Return-Path and Content-Length are removed. Added
//!   when missing, in this order and before the original fields: Date (RFC 5322 form,
//!   GMT), Message-ID `<YYYYMMDDhhmmss.PID.qmail@idhost>`, From, and
//!   `Cc: recipient list not shown: ;`; for a resent message (any Resent- field) the
//!   Resent- variants instead.
//! - The envelope sender is `-f`, else the (last) Return-Path address unless QMAILINJECT
//!   holds `s`, else QMAILSUSER@QMAILSHOST falling back to the From user and host; the
//!   QMAILINJECT letters `r` and `m` make VERP senders.
//!
//! Choices beyond qmail, on purpose: an empty line written `\r\n` ends the header like
//! `\n`; empty addresses (`<>`) never become envelope recipients; header recipients are
//! kept in their order of appearance; queueing a message without any recipient is refused
//! (exit 100) instead of silently queueing nothing.

use std::collections::HashSet;
use std::ffi::OsString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::addrlist::{Qualify, addrlist};
use crate::header::{Field, Header};
use crate::token::{self, Kind, Tokens};

pub const USAGE: &str = "qmail-inject [ -nNaAhH ] [ -fsender ] [ arg ... ]";

/// Where envelope recipients come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    /// `-A` (default): the arguments if there are any, else the header.
    Default,
    /// `-a`: the arguments only.
    Args,
    /// `-h`: the header only.
    Header,
    /// `-H`: the header and the arguments.
    Both,
}

/// Parsed command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    pub strategy: Strategy,
    /// false with `-n`: print instead of queueing.
    pub queue: bool,
    pub sender: Option<Vec<u8>>,
    pub recipients: Vec<Vec<u8>>,
}

/// What the command line asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    Run(Options),
    Help,
}

/// A bad command line; the text says what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsageError(pub String);

/// Parse qmail-inject's arguments (without the program name), getopt style `aAhHnNf:`.
pub fn parse_args(args: &[OsString]) -> Result<Command, UsageError> {
    let mut o = Options {
        strategy: Strategy::Default,
        queue: true,
        sender: None,
        recipients: Vec::new(),
    };
    let mut i = 0;
    if args.first().map(|a| a.as_bytes()) == Some(b"--help") {
        return Ok(Command::Help);
    }
    while i < args.len() {
        let a = args[i].as_bytes();
        if a == b"--" {
            i += 1;
            break;
        }
        if a.len() < 2 || a[0] != b'-' {
            break;
        }
        let mut j = 1;
        while j < a.len() {
            match a[j] {
                b'a' => o.strategy = Strategy::Args,
                b'A' => o.strategy = Strategy::Default,
                b'h' => o.strategy = Strategy::Header,
                b'H' => o.strategy = Strategy::Both,
                b'n' => o.queue = false,
                b'N' => o.queue = true,
                b'f' => {
                    if j + 1 < a.len() {
                        o.sender = Some(a[j + 1..].to_vec());
                    } else {
                        i += 1;
                        let v = args
                            .get(i)
                            .ok_or_else(|| UsageError("option -f needs an argument".into()))?;
                        o.sender = Some(v.as_bytes().to_vec());
                    }
                    j = a.len();
                    continue;
                }
                c => {
                    return Err(UsageError(format!(
                        "unknown option -{}",
                        char::from(c).escape_default()
                    )));
                }
            }
            j += 1;
        }
        i += 1;
    }
    o.recipients = args[i..].iter().map(|a| a.as_bytes().to_vec()).collect();
    Ok(Command::Run(o))
}

/// Everything qmail-inject takes from control files and the environment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    pub qualify: Qualify,
    pub idhost: Vec<u8>,
    /// From host (QMAILHOST, MAILHOST); None = qualify with defaulthost.
    pub mailhost: Option<Vec<u8>>,
    /// From user (QMAILUSER, MAILUSER, USER, LOGNAME, `anonymous`).
    pub mailuser: Vec<u8>,
    /// Envelope sender host (QMAILSHOST, else mailhost).
    pub mailrhost: Option<Vec<u8>>,
    /// Envelope sender user (QMAILSUSER, else mailuser).
    pub mailruser: Vec<u8>,
    /// Personal name (QMAILNAME, MAILNAME, NAME).
    pub fullname: Option<Vec<u8>>,
    /// QMAILINJECT `c`: `user@host (Name)` instead of `"Name" <user@host>`.
    pub name_comment: bool,
    /// QMAILINJECT `s`: ignore (and drop) the incoming Return-Path.
    pub delete_sender: bool,
    /// QMAILINJECT `f`: delete incoming From.
    pub delete_from: bool,
    /// QMAILINJECT `i`: delete incoming Message-ID.
    pub delete_messid: bool,
    /// QMAILINJECT `r`: per-recipient VERP.
    pub verp_recipient: bool,
    /// QMAILINJECT `m`: per-message VERP.
    pub verp_message: bool,
    /// Mailing-list addresses from QMAILMFTFILE, lower-cased.
    pub mft: Option<HashSet<Vec<u8>>>,
    pub now: u64,
    pub pid: u32,
}

impl Settings {
    /// Settings from the controls under `home` and the environment lookup `env`.
    pub fn load(home: &Path, env: &dyn Fn(&str) -> Option<Vec<u8>>) -> io::Result<Settings> {
        let ctl = control::Controls::new(home);
        let get = |ctlname: &str, var: &str| -> io::Result<Vec<u8>> {
            let v = ctl.line_or_me(ctlname, ctlname)?.into_bytes();
            Ok(env(var).unwrap_or(v))
        };
        let first = |names: &[&str]| names.iter().find_map(|n| env(n));
        let mut s = Settings {
            qualify: Qualify {
                defaultdomain: get("defaultdomain", "QMAILDEFAULTDOMAIN")?,
                defaulthost: get("defaulthost", "QMAILDEFAULTHOST")?,
                plusdomain: get("plusdomain", "QMAILPLUSDOMAIN")?,
            },
            idhost: get("idhost", "QMAILIDHOST")?,
            mailhost: first(&["QMAILHOST", "MAILHOST"]),
            mailuser: first(&["QMAILUSER", "MAILUSER", "USER", "LOGNAME"])
                .unwrap_or_else(|| b"anonymous".to_vec()),
            fullname: first(&["QMAILNAME", "MAILNAME", "NAME"]),
            now: qsys::now(),
            pid: std::process::id(),
            ..Settings::default()
        };
        s.mailrhost = env("QMAILSHOST").or_else(|| s.mailhost.clone());
        s.mailruser = env("QMAILSUSER").unwrap_or_else(|| s.mailuser.clone());
        if let Some(opts) = env("QMAILINJECT") {
            s.apply_letters(&opts);
        }
        if let Some(f) = env("QMAILMFTFILE") {
            let path = Path::new(std::ffi::OsStr::from_bytes(&f));
            match std::fs::read(path) {
                Ok(text) => {
                    let list = control::parse_list(&String::from_utf8_lossy(&text));
                    s.mft = Some(
                        list.iter()
                            .map(|l| l.to_ascii_lowercase().into_bytes())
                            .collect(),
                    );
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(s)
    }

    /// Apply the QMAILINJECT letters (`c s f i r m`; others are ignored).
    pub fn apply_letters(&mut self, letters: &[u8]) {
        for c in letters {
            match c {
                b'c' => self.name_comment = true,
                b's' => self.delete_sender = true,
                b'f' => self.delete_from = true,
                b'i' => self.delete_messid = true,
                b'r' => self.verp_recipient = true,
                b'm' => self.verp_message = true,
                _ => {}
            }
        }
    }
}

/// A severe error: exit 100 with this text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InjectError {
    /// An address field (or the sender) that does not parse; holds the line.
    Line(Vec<u8>),
    /// A recipient argument that does not parse.
    Address(Vec<u8>),
}

impl std::fmt::Display for InjectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InjectError::Line(l) => {
                let l = String::from_utf8_lossy(l);
                write!(
                    f,
                    "unable to parse this line:\n{}",
                    l.trim_end_matches('\n')
                )
            }
            InjectError::Address(a) => {
                write!(f, "unable to parse address: {}", String::from_utf8_lossy(a))
            }
        }
    }
}

/// The rewritten header and the envelope.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Prepared {
    /// Return-Path (only when printing), added fields, then the kept fields.
    pub header: Vec<u8>,
    pub sender: Vec<u8>,
    pub recipients: Vec<Vec<u8>>,
}

/// How an address field's addresses are used.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    /// To, Cc: header recipients and the To+Cc list.
    ToCc,
    /// Bcc, Apparently-To.
    Recip,
    /// Resent-To, Resent-Cc, Resent-Bcc.
    ResentRecip,
    /// Return-Path: the first address seen becomes the envelope sender.
    Return,
    /// Sender, From, Reply-To, ... : only qualified.
    Sender,
}

fn role(f: Field) -> Option<Role> {
    Some(match f {
        Field::To | Field::Cc => Role::ToCc,
        Field::Bcc | Field::ApparentlyTo => Role::Recip,
        Field::ResentTo | Field::ResentCc | Field::ResentBcc => Role::ResentRecip,
        Field::ReturnPath => Role::Return,
        Field::Sender
        | Field::From
        | Field::ReplyTo
        | Field::ReturnReceiptTo
        | Field::ErrorsTo
        | Field::ResentSender
        | Field::ResentFrom
        | Field::ResentReplyTo => Role::Sender,
        _ => return None,
    })
}

struct State<'a> {
    s: &'a Settings,
    sender: Option<Vec<u8>>,
    hr: Vec<Vec<u8>>,
    hrr: Vec<Vec<u8>>,
    tocc: Vec<Vec<u8>>,
}

impl State<'_> {
    /// Parse, qualify and collect one address field; returns the field to keep (the
    /// original bytes when nothing changed).
    fn field(&mut self, raw: &[u8], role: Role) -> Result<Option<Vec<u8>>, InjectError> {
        let mut t = token::parse(raw).map_err(|_| InjectError::Line(raw.to_vec()))?;
        let mut changed = false;
        let mut found: Vec<Vec<u8>> = Vec::new();
        let q = &self.s.qualify;
        let verp = self.s.verp_recipient;
        let sender = &mut self.sender;
        let out = addrlist(&mut t, 2, |t, a| {
            changed |= q.rewrite(t, a);
            let text = token::unquote(t, a);
            if role == Role::Return {
                if sender.is_none() {
                    let mut snd = text;
                    if verp {
                        snd.extend_from_slice(b"-@[]");
                    }
                    *sender = Some(snd);
                }
            } else if role != Role::Sender {
                found.push(text);
            }
        })
        .map_err(|_| InjectError::Line(raw.to_vec()))?;
        found.reverse();
        let found = found.into_iter().filter(|a| !a.is_empty());
        match role {
            Role::ToCc => {
                for a in found {
                    if self.s.mft.is_some() {
                        self.tocc.push(a.clone());
                    }
                    self.hr.push(a);
                }
            }
            Role::Recip => self.hr.extend(found),
            Role::ResentRecip => self.hrr.extend(found),
            Role::Return | Role::Sender => {}
        }
        if changed || !t.same_as(&t.toks, &t, &out) {
            Ok(Some(token::unparse(&t, &out, token::LINELEN)))
        } else {
            Ok(None)
        }
    }
}

fn generated_field(st: &mut State<'_>, toks: &Tokens, role: Role) -> Result<Vec<u8>, InjectError> {
    let text = token::unparse(toks, &toks.toks, token::LINELEN);
    Ok(st.field(&text, role)?.unwrap_or(text))
}

fn default_from(st: &mut State<'_>) -> Result<Vec<u8>, InjectError> {
    let s = st.s;
    let mut t = Tokens::new();
    t.push_text(Kind::Atom, b"From");
    t.push_special(Kind::Colon);
    let named = s.fullname.is_some() && !s.name_comment;
    if let (Some(name), true) = (&s.fullname, named) {
        t.push_text(Kind::Quote, name);
        t.push_special(Kind::Left);
    }
    let kind = if token::quote_need(&s.mailuser) {
        Kind::Quote
    } else {
        Kind::Atom
    };
    t.push_text(kind, &s.mailuser);
    if let Some(host) = &s.mailhost {
        t.push_special(Kind::At);
        t.push_text(Kind::Atom, host);
    }
    if named {
        t.push_special(Kind::Right);
    }
    if let (Some(name), true) = (&s.fullname, s.name_comment) {
        t.push_text(Kind::Comment, name);
    }
    generated_field(st, &t, Role::Sender)
}

fn default_return_path(st: &mut State<'_>) -> Result<(), InjectError> {
    let s = st.s;
    let mut user = s.mailruser.clone();
    if s.verp_message {
        user.extend_from_slice(format!("-{}.{}", s.now, s.pid).as_bytes());
    }
    if s.verp_recipient {
        user.push(b'-');
    }
    let mut t = Tokens::new();
    t.push_text(Kind::Atom, b"Return-Path");
    t.push_special(Kind::Colon);
    t.push_text(Kind::Quote, &user);
    if let Some(host) = &s.mailrhost {
        t.push_special(Kind::At);
        t.push_text(Kind::Atom, host);
    }
    generated_field(st, &t, Role::Return)?;
    Ok(())
}

fn message_id(s: &Settings) -> Vec<u8> {
    let (y, mo, d, h, mi, sec, _) = qsys::date::civil(s.now);
    let mut v = format!(
        "Message-ID: <{y:04}{mo:02}{d:02}{h:02}{mi:02}{sec:02}.{}.qmail@",
        s.pid
    )
    .into_bytes();
    v.extend_from_slice(&s.idhost);
    v.extend_from_slice(b">\n");
    v
}

/// Qualify the `-f` sender (qmail: quote2, tokenize, rwgeneric, unquote). `-f '<>'`
/// means the null sender, as with Postfix's and Sendmail's sendmail (qmail would make
/// it `"<>"@defaulthost`).
pub fn qualify_sender(s: &Settings, raw: &[u8]) -> Result<Vec<u8>, InjectError> {
    if raw == b"<>" {
        return Ok(Vec::new());
    }
    s.qualify
        .address(raw)
        .map_err(|_| InjectError::Line(raw.to_vec()))
}

/// Rewrite the header and compute the envelope.
pub fn rewrite(s: &Settings, o: &Options, h: &Header) -> Result<Prepared, InjectError> {
    let mut st = State {
        s,
        sender: None,
        hr: Vec::new(),
        hrr: Vec::new(),
        tocc: Vec::new(),
    };
    if let Some(f) = &o.sender {
        st.sender = Some(qualify_sender(s, f)?);
    }
    let strategy = match o.strategy {
        Strategy::Default if o.recipients.is_empty() => Strategy::Header,
        Strategy::Default => Strategy::Args,
        x => x,
    };
    let mut recipients = Vec::new();
    if strategy != Strategy::Header {
        for r in &o.recipients {
            let a = s
                .qualify
                .address(r)
                .map_err(|_| InjectError::Address(r.clone()))?;
            if !a.is_empty() {
                recipients.push(a);
            }
        }
    }

    let mut seen: HashSet<Field> = HashSet::new();
    let mut kept: Vec<std::borrow::Cow<'_, [u8]>> = Vec::with_capacity(h.fields.len());
    for i in 0..h.fields.len() {
        let raw = h.field(i);
        let f = crate::header::classify(raw);
        if (s.delete_from && f == Field::From)
            || (s.delete_messid && f == Field::MessageId)
            || (s.delete_sender && f == Field::ReturnPath)
        {
            continue;
        }
        seen.insert(f);
        let mut out = std::borrow::Cow::Borrowed(raw);
        if let Some(r) = role(f)
            && let Some(new) = st.field(raw, r)?
        {
            out = std::borrow::Cow::Owned(new);
        }
        if matches!(
            f,
            Field::Bcc | Field::ResentBcc | Field::ReturnPath | Field::ContentLength
        ) {
            continue;
        }
        kept.push(out);
    }

    let resent = [
        Field::ResentSender,
        Field::ResentFrom,
        Field::ResentReplyTo,
        Field::ResentTo,
        Field::ResentCc,
        Field::ResentBcc,
        Field::ResentDate,
        Field::ResentMessageId,
    ]
    .iter()
    .any(|f| seen.contains(f));

    if st.sender.is_none() {
        default_return_path(&mut st)?;
    }
    let sender = st.sender.clone().unwrap_or_default();
    let mut header = Vec::new();
    if !o.queue {
        header.extend_from_slice(b"Return-Path: <");
        header.extend_from_slice(&token::quote2(&sender));
        header.extend_from_slice(b">\n");
    }
    let prefix: &[u8] = if resent { b"Resent-" } else { b"" };
    let (date, msgid, from, to, cc) = if resent {
        (
            Field::ResentDate,
            Field::ResentMessageId,
            Field::ResentFrom,
            Field::ResentTo,
            Field::ResentCc,
        )
    } else {
        (
            Field::Date,
            Field::MessageId,
            Field::From,
            Field::To,
            Field::Cc,
        )
    };
    if !seen.contains(&date) {
        header.extend_from_slice(prefix);
        header.extend_from_slice(format!("Date: {}\n", qsys::date::rfc5322(s.now)).as_bytes());
    }
    if !seen.contains(&msgid) {
        header.extend_from_slice(prefix);
        header.extend_from_slice(&message_id(s));
    }
    if !seen.contains(&from) {
        let f = default_from(&mut st)?;
        header.extend_from_slice(prefix);
        header.extend_from_slice(&f);
    }
    if !seen.contains(&to) && !seen.contains(&cc) {
        header.extend_from_slice(prefix);
        header.extend_from_slice(b"Cc: recipient list not shown: ;\n");
    }
    if !resent
        && let Some(mft) = &s.mft
        && !seen.contains(&Field::MailFollowupTo)
        && st
            .tocc
            .iter()
            .any(|a| mft.contains(&a.to_ascii_lowercase()))
    {
        header.extend_from_slice(b"Mail-Followup-To: ");
        for (i, a) in st.tocc.iter().enumerate() {
            if i > 0 {
                header.extend_from_slice(b",\n  ");
            }
            header.extend_from_slice(&token::quote2(a));
        }
        header.push(b'\n');
    }
    for k in &kept {
        header.extend_from_slice(k);
    }

    if strategy != Strategy::Args {
        recipients.extend(if resent { st.hrr } else { st.hr });
    }
    Ok(Prepared {
        header,
        sender,
        recipients,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings {
            qualify: Qualify {
                defaulthost: b"dh.example.org".to_vec(),
                defaultdomain: b"example.org".to_vec(),
                plusdomain: b"plus.example".to_vec(),
            },
            idhost: b"id.example.org".to_vec(),
            mailhost: None,
            mailuser: b"joe".to_vec(),
            mailrhost: None,
            mailruser: b"joe".to_vec(),
            fullname: Some(b"Joe Q".to_vec()),
            now: 951_827_696, // 2000-02-29 12:34:56
            pid: 4242,
            ..Settings::default()
        }
    }

    fn opts(args: &[&str]) -> Options {
        let a: Vec<OsString> = args.iter().map(OsString::from).collect();
        match parse_args(&a).unwrap() {
            Command::Run(o) => o,
            Command::Help => panic!("help"),
        }
    }

    fn run(s: &Settings, args: &[&str], msg: &[u8]) -> (String, Prepared) {
        let h = crate::header::read(&mut io::Cursor::new(msg.to_vec())).unwrap();
        let p = rewrite(s, &opts(args), &h).unwrap();
        (String::from_utf8_lossy(&p.header).into_owned(), p)
    }

    fn rcpts(p: &Prepared) -> Vec<String> {
        p.recipients
            .iter()
            .map(|r| String::from_utf8_lossy(r).into_owned())
            .collect()
    }

    const DATE: &str = "Date: Tue, 29 Feb 2000 12:34:56 +0000\n";
    const MSGID: &str = "Message-ID: <20000229123456.4242.qmail@id.example.org>\n";

    #[test]
    fn options() {
        assert_eq!(opts(&[]).strategy, Strategy::Default);
        let o = opts(&["-an", "-fme@x", "r1", "-h"]);
        assert_eq!(
            (o.strategy, o.queue, o.sender.as_deref()),
            (Strategy::Args, false, Some(&b"me@x"[..]))
        );
        assert_eq!(o.recipients, vec![b"r1".to_vec(), b"-h".to_vec()]);
        let o = opts(&["-H", "-f", "s", "--", "-x"]);
        assert_eq!((o.strategy, o.recipients.len()), (Strategy::Both, 1));
        assert!(parse_args(&[OsString::from("-z")]).is_err());
        assert!(parse_args(&[OsString::from("-f")]).is_err());
        assert_eq!(
            parse_args(&[OsString::from("--help")]).unwrap(),
            Command::Help
        );
    }

    #[test]
    fn adds_missing_fields_and_keeps_the_rest_byte_for_byte() {
        let msg = b"Subject: hi \xe9\r\nX-Odd:   spaced\t\n\nbody\n";
        let (h, p) = run(&settings(), &["-a", "r"], msg);
        let expect = format!(
            "{DATE}{MSGID}From: \"Joe Q\" <joe@dh.example.org>\nCc: recipient list not shown: ;\n"
        );
        assert!(h.starts_with(&expect), "{h}");
        assert!(
            p.header
                .ends_with(b"Subject: hi \xe9\r\nX-Odd:   spaced\t\n")
        );
        assert_eq!(rcpts(&p), vec!["r@dh.example.org"]);
        assert_eq!(p.sender, b"joe@dh.example.org");
    }

    #[test]
    fn present_fields_are_not_added() {
        let msg = b"From: Me <me@x.y>\nTo: you@x.y\nDate: whenever\nMessage-ID: <a@b>\n\n";
        let (h, p) = run(&settings(), &[], msg);
        assert_eq!(
            h,
            "From: Me <me@x.y>\nTo: you@x.y\nDate: whenever\nMessage-ID: <a@b>\n"
        );
        assert_eq!(rcpts(&p), vec!["you@x.y"]);
        // the envelope sender comes from the environment, not from From
        assert_eq!(p.sender, b"joe@dh.example.org");
    }

    #[test]
    fn header_recipients_bcc_removed() {
        let msg = b"To: a@x.y, \"B\" <b@x.y>\nCc: Group: c@x.y, d;\nBcc: secret@x.y\nApparently-To: e@x.y\nContent-Length: 3\nReturn-Path: <rp@x.y>\n\n";
        let (h, p) = run(&settings(), &["-h"], msg);
        assert!(
            !h.contains("Bcc")
                && !h.contains("secret")
                && !h.contains("Content-Length")
                && !h.contains("Return-Path"),
            "{h}"
        );
        assert!(h.contains("To: a@x.y, \"B\" <b@x.y>\n"));
        assert!(h.contains("Cc: Group: c@x.y, d@dh.example.org;\n"), "{h}");
        assert_eq!(
            rcpts(&p),
            vec![
                "a@x.y",
                "b@x.y",
                "c@x.y",
                "d@dh.example.org",
                "secret@x.y",
                "e@x.y"
            ]
        );
        assert_eq!(p.sender, b"rp@x.y");
    }

    #[test]
    fn strategies() {
        let msg = b"To: h@x.y\n\n";
        assert_eq!(rcpts(&run(&settings(), &["a@x.y"], msg).1), vec!["a@x.y"]);
        assert_eq!(rcpts(&run(&settings(), &[], msg).1), vec!["h@x.y"]);
        assert_eq!(
            rcpts(&run(&settings(), &["-a", "a@x.y"], msg).1),
            vec!["a@x.y"]
        );
        assert_eq!(
            rcpts(&run(&settings(), &["-h", "a@x.y"], msg).1),
            vec!["h@x.y"]
        );
        assert_eq!(
            rcpts(&run(&settings(), &["-H", "a@x.y"], msg).1),
            vec!["a@x.y", "h@x.y"]
        );
        assert!(run(&settings(), &["-a"], msg).1.recipients.is_empty());
    }

    #[test]
    fn qualification_in_header_and_envelope() {
        let msg = b"To: fred, eric@mammoth.cs+, joe@host, x@[1.2.3.4]\nFrom: me\n\n";
        let (h, p) = run(&settings(), &[], msg);
        assert!(h.contains("To: fred@dh.example.org, eric@mammoth.cs.plus.example, joe@host.example.org,\n  x@[1.2.3.4]\n"), "{h}");
        assert!(h.contains("From: me@dh.example.org\n"));
        assert_eq!(
            rcpts(&p),
            vec![
                "fred@dh.example.org",
                "eric@mammoth.cs.plus.example",
                "joe@host.example.org",
                "x@[1.2.3.4]"
            ]
        );
    }

    #[test]
    fn resent_messages() {
        let msg = b"From: a@x.y\nTo: b@x.y\nDate: d\nMessage-ID: <m@x>\nResent-To: c@x.y\nResent-Bcc: d@x.y\n\n";
        let (h, p) = run(&settings(), &[], msg);
        assert!(h.starts_with(&format!("Resent-{DATE}Resent-{MSGID}Resent-From: \"Joe Q\" <joe@dh.example.org>\nFrom: a@x.y\n")), "{h}");
        assert!(!h.contains("Resent-Cc") && !h.contains("d@x.y"));
        assert_eq!(rcpts(&p), vec!["c@x.y", "d@x.y"]);
        let (h, _) = run(&settings(), &[], b"Resent-From: r@x.y\nTo: b@x.y\n\n");
        assert!(h.contains("Resent-Cc: recipient list not shown: ;\n"));
        assert!(
            !h.contains("\nCc:")
                && !h.starts_with("Cc:")
                && !h.contains("\nFrom:")
                && !h.starts_with("Date:")
        );
    }

    #[test]
    fn sender_precedence() {
        let msg = b"Return-Path: <rp@x.y>\nTo: t@x.y\n\n";
        let mut s = settings();
        assert_eq!(run(&s, &["-f", "f@x.y"], msg).1.sender, b"f@x.y");
        assert_eq!(run(&s, &["-f", "f"], msg).1.sender, b"f@dh.example.org");
        assert_eq!(run(&s, &["-f", ""], msg).1.sender, b"");
        assert_eq!(run(&s, &["-f", "<>"], msg).1.sender, b"");
        assert_eq!(run(&s, &[], msg).1.sender, b"rp@x.y");
        s.mailhost = Some(b"from.host".to_vec());
        s.mailrhost = Some(b"s.host".to_vec());
        s.mailruser = b"suser".to_vec();
        s.apply_letters(b"s");
        let (h, p) = run(&s, &[], msg);
        assert_eq!(p.sender, b"suser@s.host");
        assert!(h.contains("From: \"Joe Q\" <joe@from.host>\n"));
    }

    #[test]
    fn qmailinject_letters() {
        let msg = b"From: old@x.y\nMessage-ID: <old@x>\nTo: t@x.y\n\n";
        let mut s = settings();
        s.apply_letters(b"fic");
        let (h, _) = run(&s, &[], msg);
        assert!(!h.contains("old"), "{h}");
        assert!(h.contains("From: joe@dh.example.org (Joe Q)\n"), "{h}");
        assert!(h.contains(MSGID));
        let mut s = settings();
        s.apply_letters(b"r");
        assert_eq!(run(&s, &[], msg).1.sender, b"joe-@dh.example.org-@[]");
        let mut s = settings();
        s.apply_letters(b"m");
        assert_eq!(
            run(&s, &[], msg).1.sender,
            b"joe-951827696.4242@dh.example.org"
        );
        let mut s = settings();
        s.apply_letters(b"r");
        assert_eq!(
            run(&s, &[], b"Return-Path: <x@y.z>\n\n").1.sender,
            b"x@y.z-@[]"
        );
    }

    #[test]
    fn print_mode_has_return_path() {
        let (h, _) = run(&settings(), &["-n"], b"To: t@x.y\n\n");
        assert!(h.starts_with("Return-Path: <joe@dh.example.org>\n"));
    }

    #[test]
    fn mail_followup_to() {
        let mut s = settings();
        s.mft = Some([b"list@x.y".to_vec()].into_iter().collect());
        let (h, _) = run(&s, &[], b"To: LIST@x.y\nCc: me@x.y\n\n");
        assert!(h.contains("Mail-Followup-To: LIST@x.y,\n  me@x.y\n"), "{h}");
        let (h, _) = run(&s, &[], b"To: other@x.y\n\n");
        assert!(!h.contains("Mail-Followup-To"));
    }

    #[test]
    fn severe_syntax_errors() {
        let h = crate::header::read(&mut io::Cursor::new(b"To: a:b\n\n".to_vec())).unwrap();
        let e = rewrite(&settings(), &opts(&[]), &h).unwrap_err();
        assert_eq!(e.to_string(), "unable to parse this line:\nTo: a:b");
        let h = crate::header::read(&mut io::Cursor::new(b"To: (unclosed\n\n".to_vec())).unwrap();
        assert!(rewrite(&settings(), &opts(&[]), &h).is_err());
        let h = crate::header::read(&mut io::Cursor::new(b"\n".to_vec())).unwrap();
        assert_eq!(
            rewrite(&settings(), &opts(&["a@)b"]), &h).unwrap_err(),
            InjectError::Address(b"a@)b".to_vec())
        );
    }

    #[test]
    fn nul_and_eight_bit_input_never_panics() {
        let inputs: Vec<&[u8]> = vec![
            b"To: \x00\xff\xfe <a\x00@b>\n\n\x00body",
            b"From: J\xfcrgen <j@x.y>\nTo: \"\xe9\" <e@x.y>\n\n",
            b"To: <<<>>>\n\n",
            b"To: ;;;;\n\n",
            b"To: @@@,,,...\n\n",
            b"To: \\\n\n",
            b"\x00\x01\x02",
            b"",
            b"To:\n\n",
            b"Return-Path: \n\n",
        ];
        for m in inputs {
            let h = crate::header::read(&mut io::Cursor::new(m.to_vec())).unwrap();
            let _ = rewrite(&settings(), &opts(&[]), &h);
        }
        let (h, p) = run(&settings(), &[], b"From: J\xfcrgen <j@x.y>\nTo: t@x.y\n\n");
        assert!(h.contains("From: J\u{fffd}rgen <j@x.y>\n"));
        assert_eq!(p.header.iter().filter(|&&c| c == 0xfc).count(), 1);
    }

    #[test]
    fn two_megabyte_header_line() {
        let mut m = b"To: ".to_vec();
        for i in 0..150_000 {
            m.extend_from_slice(format!("u{i}@x.y, ").as_bytes());
        }
        m.extend_from_slice(b"last@x.y\nX-Big: ");
        m.extend(std::iter::repeat_n(b'z', 2 << 20));
        m.extend_from_slice(b"\n\nbody\n");
        let t = std::time::Instant::now();
        let (_, p) = run(&settings(), &[], &m);
        assert_eq!(p.recipients.len(), 150_001);
        assert!(t.elapsed().as_secs() < 20);
    }
}
