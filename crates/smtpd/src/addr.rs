//! Parsing the arguments of MAIL and RCPT (qmail's `addrparse`, made strict where
//! qmail was lax).
//!
//! `MAIL FROM:<path> [params]`, `RCPT TO:<path> [params]`. Spaces after the colon are
//! skipped. A path in angle brackets ends at the first `>` outside a quoted string; a path
//! without brackets (qmail accepted it; so do we) ends at the first space. As in qmail,
//! a source route (`@a,@b:`) is removed, quotes are removed and `\x` unescaped, so
//! `"a@b"@c` becomes `a@b@c`; the caller learns that a source route or quoting was
//! present, because those are relay tricks ([`Path::relay_probe`]). Addresses are
//! limited to 900 bytes (qmail) and may not contain control characters.

/// The longest address accepted (qmail-smtpd's limit; qmail-queue's is 1003).
pub const MAX_ADDR: usize = 900;

/// A parsed path.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Path {
    /// The address with quotes and source route removed.
    pub addr: String,
    /// A source route (`@a,@b:`) was present.
    pub source_route: bool,
    /// The local part was quoted or used backslash escapes.
    pub quoted: bool,
}

/// Why a path or its parameters were refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddrError {
    /// Unparseable: `555 syntax error`.
    Syntax,
    /// Too long or with forbidden bytes: `553 ... can't accept addresses like that`.
    Unacceptable,
}

impl Path {
    /// The domain: the text after the last `@`, or `None` for an address without `@`.
    pub fn domain(&self) -> Option<&str> {
        self.addr.rsplit_once('@').map(|(_, d)| d)
    }

    /// The local part: the text before the last `@` (the whole address without `@`).
    pub fn local(&self) -> &str {
        self.addr
            .rsplit_once('@')
            .map(|(l, _)| l)
            .unwrap_or(&self.addr)
    }

    /// A relay trick: a source route, or a local part carrying `@`, `%` or `!` routing
    /// (after quote removal, so `"a@b"@c` counts). Such recipients are refused unless
    /// the client may relay (qmail's relay-reject patch, BLOCKRELAYPROBE in qmail-ldap).
    pub fn relay_probe(&self) -> bool {
        self.source_route || self.local().contains(['@', '%', '!'])
    }
}

/// Split `MAIL FROM:...` / `RCPT TO:...` arguments: `arg` is the text after the verb;
/// `keyword` is `FROM` or `TO`. Returns the path and the parameter text after it.
pub fn split_command<'a>(arg: &'a str, keyword: &str) -> Result<(Path, &'a str), AddrError> {
    let arg = arg.trim_start_matches(' ');
    let klen = keyword.len();
    if arg.len() < klen + 1
        || !arg.is_char_boundary(klen)
        || !arg[..klen].eq_ignore_ascii_case(keyword)
        || arg.as_bytes()[klen] != b':'
    {
        return Err(AddrError::Syntax);
    }
    parse_path(&arg[klen + 1..])
}

/// Parse a path at the start of `s` (spaces first skipped); return it and the rest.
pub fn parse_path(s: &str) -> Result<(Path, &str), AddrError> {
    let s = s.trim_start_matches(' ');
    let bytes = s.as_bytes();
    let (raw, rest): (&str, &str) = if bytes.first() == Some(&b'<') {
        // Find the closing '>' outside quotes.
        let mut in_quote = false;
        let mut escaped = false;
        let mut end = None;
        for (i, &b) in bytes.iter().enumerate().skip(1) {
            if escaped {
                escaped = false;
                continue;
            }
            match b {
                b'\\' => escaped = true,
                b'"' => in_quote = !in_quote,
                b'>' if !in_quote => {
                    end = Some(i);
                    break;
                }
                _ => {}
            }
        }
        let end = end.ok_or(AddrError::Syntax)?;
        (&s[1..end], &s[end + 1..])
    } else {
        match s.find(' ') {
            Some(i) => (&s[..i], &s[i..]),
            None => (s, ""),
        }
    };
    if !rest.is_empty() && !rest.starts_with(' ') {
        return Err(AddrError::Syntax);
    }
    let mut path = Path::default();
    let mut raw = raw;
    // Source route: "@a,@b:rest".
    if raw.starts_with('@') {
        match raw.find(':') {
            Some(i) => {
                path.source_route = true;
                raw = &raw[i + 1..];
            }
            None => return Err(AddrError::Syntax),
        }
    }
    let mut addr = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => path.quoted = true,
            '\\' => {
                path.quoted = true;
                match chars.next() {
                    Some(c) => addr.push(c),
                    None => return Err(AddrError::Syntax),
                }
            }
            _ => addr.push(c),
        }
    }
    if addr.len() > MAX_ADDR || addr.chars().any(|c| c.is_control()) {
        return Err(AddrError::Unacceptable);
    }
    path.addr = addr;
    Ok((path, rest.trim_start_matches(' ')))
}

/// The parameters of MAIL FROM that we support.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MailParams {
    pub size: Option<u64>,
    pub body_8bit: bool,
    pub smtputf8: bool,
}

/// Parse `SIZE=n BODY=7BIT|8BITMIME SMTPUTF8 AUTH=...` (each at most once).
pub fn mail_params(s: &str) -> Result<MailParams, AddrError> {
    let mut p = MailParams::default();
    let (mut seen_size, mut seen_body, mut seen_auth) = (false, false, false);
    for word in s.split(' ').filter(|w| !w.is_empty()) {
        let (k, v) = match word.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (word, None),
        };
        if k.eq_ignore_ascii_case("SIZE") && !seen_size {
            seen_size = true;
            let v = v.ok_or(AddrError::Syntax)?;
            if v.is_empty() || v.len() > 20 || !v.bytes().all(|b| b.is_ascii_digit()) {
                return Err(AddrError::Syntax);
            }
            p.size = Some(v.parse().unwrap_or(u64::MAX));
        } else if k.eq_ignore_ascii_case("BODY") && !seen_body {
            seen_body = true;
            match v {
                Some(v) if v.eq_ignore_ascii_case("7BIT") => {}
                Some(v) if v.eq_ignore_ascii_case("8BITMIME") => p.body_8bit = true,
                _ => return Err(AddrError::Syntax),
            }
        } else if k.eq_ignore_ascii_case("SMTPUTF8") && v.is_none() && !p.smtputf8 {
            p.smtputf8 = true;
        } else if k.eq_ignore_ascii_case("AUTH") && v.is_some() && !seen_auth {
            // RFC 4954 5: accepted and ignored (we trust only our own AUTH).
            seen_auth = true;
        } else {
            return Err(AddrError::Syntax);
        }
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Path {
        split_command(s, "TO").unwrap().0
    }

    #[test]
    fn plain_forms() {
        assert_eq!(p("TO:<a@b>").addr, "a@b");
        assert_eq!(p("to: <a@b>").addr, "a@b");
        assert_eq!(p("To:a@b").addr, "a@b");
        assert_eq!(p("TO:<>").addr, "");
        let (path, rest) = split_command("FROM:<x@y> SIZE=10 BODY=8BITMIME", "FROM").unwrap();
        assert_eq!(path.addr, "x@y");
        let mp = mail_params(rest).unwrap();
        assert_eq!((mp.size, mp.body_8bit), (Some(10), true));
    }

    #[test]
    fn syntax_errors() {
        for bad in [
            "TO<a@b>",
            "TO:<a@b",
            "FROM:<a@b>",
            "TO:<a@b>x",
            "TO:<@a>",
            "",
        ] {
            assert!(split_command(bad, "TO").is_err(), "{bad}");
        }
        assert_eq!(
            split_command(&format!("TO:<{}@b>", "a".repeat(MAX_ADDR)), "TO"),
            Err(AddrError::Unacceptable)
        );
        assert_eq!(
            split_command("TO:<a\u{1}@b>", "TO"),
            Err(AddrError::Unacceptable)
        );
        assert!(mail_params("SIZE=1 SIZE=2").is_err());
        assert!(mail_params("SIZE=x").is_err());
        assert!(mail_params("NOTIFY=NEVER").is_err());
        assert!(mail_params("BODY=BINARYMIME").is_err());
    }

    #[test]
    fn relay_tricks_are_recognised() {
        for trick in [
            "TO:<victim%elsewhere@local>",
            "TO:<elsewhere!victim@local>",
            "TO:<victim@elsewhere@local>",
            "TO:<\"victim@elsewhere\"@local>",
            "TO:<victim\\@elsewhere@local>",
            "TO:<@local:victim@elsewhere>",
            "TO:<@local,@other:victim@elsewhere>",
            "TO:<\"victim%elsewhere\"@local>",
        ] {
            assert!(p(trick).relay_probe(), "{trick}");
        }
        assert!(!p("TO:<user@local>").relay_probe());
        assert!(!p("TO:<first.last+tag@local>").relay_probe());
        assert_eq!(p("TO:<\"victim@elsewhere\"@local>").domain(), Some("local"));
        assert_eq!(p("TO:<a>").domain(), None);
    }

    #[test]
    fn quoted_gt_does_not_end_the_path() {
        assert_eq!(p("TO:<\"a>b\"@c>").addr, "a>b@c");
    }
}
