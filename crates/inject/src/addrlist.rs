//! Address lists and address qualification, as qmail-inject(8) and qmail-header(5)
//! define them (qmail's `token822_addrlist` and the `rw*` functions of qmail-inject.c;
//! RFC 822 section 6 / RFC 5322 section 3.4 address syntax).
//!
//! [`addrlist`] walks a tokenized header field from right to left, which makes RFC 822
//! lists easy: `Name <addr>` (route addresses), groups `name: a, b;`, comments, quoted
//! local parts. Two addresses separated only by white space (`djb fred`) are an illegal
//! list that qmail repairs by inserting a comma. Each address is handed to a callback
//! that may rewrite it (qualification) and record it (recipient lists, sender).
//!
//! [`Qualify::rewrite`] is qmail's `rwgeneric`: source routes `@a,@b:user@host` lose the
//! route, a trailing `.` or `@` is dropped, an address without `@` gets `@defaulthost`, a
//! host ending in `+` has the `+` replaced by `.plusdomain`, and a host without a dot gets
//! `.defaultdomain` appended; domain literals (`[1.2.3.4]`) are left alone, and so are `<>`
//! and `<x@[]>` (the per-recipient VERP marker).

use crate::token::{self, Kind, Tok, Tokens};

/// The field does not have address-list syntax (qmail: "unable to parse this line").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListError;

/// Walk the address list in `t.toks[skip..]` (skip = 2 passes over `Name:` of a whole
/// header field) and return the rewritten token list (the skipped tokens included).
/// `cb` gets each address (its tokens in order, which it may rewrite) from right to
/// left, qmail's order: the first call of a Return-Path field sees its last address.
pub fn addrlist<F>(t: &mut Tokens, skip: usize, mut cb: F) -> Result<Vec<Tok>, ListError>
where
    F: FnMut(&mut Tokens, &mut Vec<Tok>),
{
    // `out` and `addr` are built in reverse (right-to-left) order, as in qmail.
    let toks = std::mem::take(&mut t.toks);
    let mut out: Vec<Tok> = Vec::with_capacity(toks.len() + 8);
    let mut addr: Vec<Tok> = Vec::new();
    let comma = Tok {
        kind: Kind::Comma,
        start: 0,
        end: 0,
    };
    let mut got = |t: &mut Tokens, addr: &mut Vec<Tok>, out: &mut Vec<Tok>| {
        addr.reverse();
        cb(t, addr);
        out.extend(addr.iter().rev());
        addr.clear();
    };
    let mut ingroup = false;
    let mut wordok = true;
    let begin = skip.min(toks.len());
    let mut i = toks.len();
    // `i` is one past the current token (so that `i > begin` means "a token is left").
    while i > begin {
        let cur = toks[i - 1];
        match cur.kind {
            Kind::Semi => {
                if !addr.is_empty() {
                    got(t, &mut addr, &mut out);
                    out.push(comma);
                }
                if ingroup {
                    t.toks = toks;
                    return Err(ListError);
                }
                ingroup = true;
                wordok = true;
            }
            Kind::Colon => {
                if !addr.is_empty() {
                    got(t, &mut addr, &mut out);
                }
                if !ingroup {
                    t.toks = toks;
                    return Err(ListError);
                }
                ingroup = false;
                while i > begin && toks[i - 1].kind != Kind::Comma {
                    out.push(toks[i - 1]);
                    i -= 1;
                }
                if i > begin {
                    out.push(toks[i - 1]);
                    i -= 1;
                }
                wordok = true;
                continue;
            }
            Kind::Right => {
                if !addr.is_empty() {
                    got(t, &mut addr, &mut out);
                    out.push(comma);
                }
                out.push(cur);
                i -= 1;
                while i > begin && toks[i - 1].kind != Kind::Left {
                    addr.push(toks[i - 1]);
                    i -= 1;
                }
                // the address is used even when empty: <>
                got(t, &mut addr, &mut out);
                if i <= begin {
                    t.toks = toks;
                    return Err(ListError);
                }
                out.push(toks[i - 1]);
                i -= 1;
                while i > begin
                    && matches!(
                        toks[i - 1].kind,
                        Kind::Comment | Kind::Atom | Kind::Quote | Kind::At | Kind::Dot
                    )
                {
                    out.push(toks[i - 1]);
                    i -= 1;
                }
                wordok = false;
                continue;
            }
            Kind::Atom | Kind::Quote | Kind::Literal => {
                if !wordok && !addr.is_empty() {
                    got(t, &mut addr, &mut out);
                    out.push(comma);
                }
                wordok = false;
                addr.push(cur);
                i -= 1;
                continue;
            }
            Kind::Comment => {}
            Kind::Comma => {
                if !addr.is_empty() {
                    got(t, &mut addr, &mut out);
                }
                wordok = true;
            }
            Kind::Dot | Kind::At | Kind::Left => {
                wordok = true;
                addr.push(cur);
                i -= 1;
                continue;
            }
        }
        out.push(cur);
        i -= 1;
    }
    if !addr.is_empty() {
        got(t, &mut addr, &mut out);
    }
    out.extend(toks[..begin].iter().rev());
    out.reverse();
    t.toks = toks;
    Ok(out)
}

/// The hosts used to qualify addresses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Qualify {
    /// Appended as `@defaulthost` to an address without `@`.
    pub defaulthost: Vec<u8>,
    /// Appended as `.defaultdomain` to a host without a dot.
    pub defaultdomain: Vec<u8>,
    /// Replaces a trailing `+` of a host as `.plusdomain`.
    pub plusdomain: Vec<u8>,
}

fn suffix_tokens(t: &mut Tokens, prefix: u8, host: &[u8]) -> Vec<Tok> {
    let mut s = vec![prefix];
    s.extend_from_slice(host);
    // A host that does not tokenize is used as one atom.
    t.suffix(&s).unwrap_or_else(|| {
        let sep = if prefix == b'@' { Kind::At } else { Kind::Dot };
        vec![
            Tok {
                kind: sep,
                start: 0,
                end: 0,
            },
            t.make(Kind::Atom, host),
        ]
    })
}

impl Qualify {
    /// Rewrite one address (tokens in order) in place (qmail's `rwgeneric`).
    /// Returns true if it changed.
    pub fn rewrite(&self, t: &mut Tokens, a: &mut Vec<Tok>) -> bool {
        let before = a.clone();
        self.rewrite_inner(t, a);
        !t.same_as(&before, t, a)
    }

    fn rewrite_inner(&self, t: &mut Tokens, a: &mut Vec<Tok>) {
        let n = a.len();
        if n == 0 {
            return; // <>
        }
        if n >= 2
            && a[n - 1].kind == Kind::Literal
            && a[n - 1].start == a[n - 1].end
            && a[n - 2].kind == Kind::At
        {
            return; // <foo@[]>
        }
        // source route: @a,@b:user@host -> user@host
        if a[0].kind == Kind::At {
            match a.iter().position(|x| x.kind == Kind::Colon) {
                Some(p) => {
                    a.drain(..=p);
                }
                None => a.clear(),
            }
        }
        if a.last().map(|x| x.kind) == Some(Kind::Dot) {
            a.pop();
        }
        if a.is_empty() {
            return;
        }
        if a.last().map(|x| x.kind) == Some(Kind::At) {
            a.pop();
        }
        if a.is_empty() {
            return;
        }
        if !a.iter().any(|x| x.kind == Kind::At) {
            let s = suffix_tokens(t, b'@', &self.defaulthost);
            a.extend(s);
        }
        // trailing '+' on the host
        if let Some(last) = a.last().copied()
            && last.kind == Kind::Atom
            && last.end > last.start
            && t.buf[last.end as usize - 1] == b'+'
        {
            let l = a.len() - 1;
            a[l].end -= 1;
            let s = suffix_tokens(t, b'.', &self.plusdomain);
            a.extend(s);
        }
        // host without a dot (and not a literal)
        let host = match a.iter().rposition(|x| x.kind == Kind::At) {
            Some(p) => &a[p + 1..],
            None => &a[..],
        };
        if host
            .iter()
            .any(|x| x.kind == Kind::Dot || x.kind == Kind::Literal)
        {
            return;
        }
        let s = suffix_tokens(t, b'.', &self.defaultdomain);
        a.extend(s);
    }

    /// Qualify one address given as text (an argument or `-f`): qmail's `quote2`, tokenize,
    /// `rwgeneric`, unquote.
    pub fn address(&self, addr: &[u8]) -> Result<Vec<u8>, token::SyntaxError> {
        let mut t = token::parse(&token::quote2(addr))?;
        let mut a = std::mem::take(&mut t.toks);
        self.rewrite_inner(&mut t, &mut a);
        Ok(token::unquote(&t, &a))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q() -> Qualify {
        Qualify {
            defaulthost: b"dh.example.org".to_vec(),
            defaultdomain: b"example.org".to_vec(),
            plusdomain: b"plus.example".to_vec(),
        }
    }

    /// Rewrite a header field; returns (new text, addresses in qmail's callback order).
    fn field(line: &str) -> (String, Vec<String>) {
        let mut t = token::parse(line.as_bytes()).unwrap();
        let mut seen = Vec::new();
        let qual = q();
        let out = addrlist(&mut t, 2, |t, a| {
            qual.rewrite(t, a);
            seen.push(String::from_utf8_lossy(&token::unquote(t, a)).into_owned());
        })
        .unwrap();
        (
            String::from_utf8_lossy(&token::unparse(&t, &out, token::LINELEN)).into_owned(),
            seen,
        )
    }

    fn addrs(line: &str) -> Vec<String> {
        let mut v = field(line).1;
        v.reverse();
        v
    }

    #[test]
    fn simple_and_named_addresses() {
        assert_eq!(addrs("To: a@b.c, Joe <joe@x.y>"), vec!["a@b.c", "joe@x.y"]);
        assert_eq!(
            field("To: Joe Q. Public <joe@x.y>").0,
            "To: Joe Q.Public <joe@x.y>\n"
        );
        assert_eq!(addrs(r#"To: "Smith, Joe" <joe@x.y>"#), vec!["joe@x.y"]);
    }

    #[test]
    fn groups() {
        let (text, a) = field("To: Friends: a@b.c, d@e.f;, g@h.i");
        assert_eq!(text, "To: Friends: a@b.c, d@e.f;, g@h.i\n");
        assert_eq!(a.len(), 3);
        assert!(field("To: undisclosed-recipients:;").1.is_empty());
        assert_eq!(
            field("Cc: recipient list not shown: ;").0,
            "Cc: recipient list not shown: ;\n"
        );
    }

    #[test]
    fn comments_and_quoted_local_parts() {
        assert_eq!(addrs("To: joe@x.y (Joe Bloggs)"), vec!["joe@x.y"]);
        assert_eq!(addrs(r#"To: "joe smith"@x.y"#), vec!["joe smith@x.y"]);
        assert_eq!(addrs("To: (c) <a@b.c> (d)"), vec!["a@b.c"]);
    }

    #[test]
    fn illegal_spaces_become_commas() {
        let (text, a) = field("To: djb fred");
        assert_eq!(text, "To: djb@dh.example.org, fred@dh.example.org\n");
        assert_eq!(a.len(), 2);
    }

    #[test]
    fn source_routes_are_stripped() {
        assert_eq!(addrs("To: <@r1.x,@r2.y:joe@x.y>"), vec!["joe@x.y"]);
    }

    #[test]
    fn qualification_rules() {
        let q = q();
        let a = |s: &str| String::from_utf8(q.address(s.as_bytes()).unwrap()).unwrap();
        assert_eq!(a("joe"), "joe@dh.example.org");
        assert_eq!(a("joe@mammoth"), "joe@mammoth.example.org");
        assert_eq!(a("eric@mammoth.cs+"), "eric@mammoth.cs.plus.example");
        assert_eq!(a("eric@mammoth+"), "eric@mammoth.plus.example");
        assert_eq!(a("joe@[1.2.3.4]"), "joe@[1.2.3.4]");
        assert_eq!(a("joe@x.y."), "joe@x.y");
        assert_eq!(a("joe@"), "joe@dh.example.org");
        assert_eq!(a(""), "");
        assert_eq!(a("joe-@x.y-@[]"), "joe-@x.y-@[]");
        assert_eq!(a("joe smith@x.y"), "joe smith@x.y");
        // quote2 quotes a route given on the command line, as qmail does
        assert_eq!(a("@r.x:joe@x.y"), "@r.x:joe@x.y");
        assert_eq!(a("a.b@x.y"), "a.b@x.y");
    }

    #[test]
    fn syntax_errors_in_lists() {
        let mut t = token::parse(b"To: a:b").unwrap();
        assert!(addrlist(&mut t, 2, |_, _| {}).is_err());
        let mut t = token::parse(b"To: a;b;").unwrap();
        assert!(addrlist(&mut t, 2, |_, _| {}).is_err());
        let mut t = token::parse(b"To: a>").unwrap();
        assert!(addrlist(&mut t, 2, |_, _| {}).is_err());
    }

    #[test]
    fn unchanged_list_keeps_its_tokens() {
        let mut t = token::parse(b"To: Joe <joe@x.y>, a@b.c").unwrap();
        let qual = q();
        let mut changed = false;
        let out = addrlist(&mut t, 2, |t, a| changed |= qual.rewrite(t, a)).unwrap();
        assert!(!changed);
        assert!(t.same_as(&t.toks, &t, &out));
    }
}
