//! RFC 822 lexical tokens, as qmail's `token822.c` sees them (RFC 822 section 3.3,
//! RFC 5322 section 3.2): atoms, quoted strings, domain literals, comments and the
//! specials `. , @ < > : ;`.
//!
//! - [`parse`] splits a header field (or an address) into tokens. White space separates
//!   tokens and is dropped; a backslash quotes the next byte; an unbalanced `)` or `]`,
//!   or an unterminated comment, quoted string or literal, is a syntax error. An atom
//!   holding a control byte, an 8-bit byte, `)`, `]` or `\` is turned into a quoted
//!   string (qmail's `atomcheck`), so 8-bit headers are carried, never rejected.
//! - [`unparse`] writes tokens back with qmail's spacing and its folding rule: after
//!   each comma it may break the line (`,\n  `) so that lines stay near [`LINELEN`].
//! - [`unquote`] gives the bare address text used on the envelope (comments dropped,
//!   quoting removed).
//!
//! Token text lives in one byte buffer per list ([`Tokens::buf`]); a token is a kind and
//! a range, so a 2 MB header line costs a few bytes per token, not an allocation each.

/// qmail's fold width for rewritten address fields.
pub const LINELEN: usize = 80;

/// The kind of one token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Atom,
    Quote,
    Literal,
    Comment,
    Dot,
    Comma,
    At,
    Left,
    Right,
    Colon,
    Semi,
}

impl Kind {
    fn has_text(self) -> bool {
        matches!(
            self,
            Kind::Atom | Kind::Quote | Kind::Literal | Kind::Comment
        )
    }
}

/// One token: its kind and its text as a range of [`Tokens::buf`] (empty for specials).
#[derive(Clone, Copy, Debug)]
pub struct Tok {
    pub kind: Kind,
    pub start: u32,
    pub end: u32,
}

/// A token list with its text buffer.
#[derive(Clone, Debug, Default)]
pub struct Tokens {
    pub buf: Vec<u8>,
    pub toks: Vec<Tok>,
    /// Tokens of qualification suffixes (`@defaulthost`, `.defaultdomain`, ...), made
    /// once per list and shared by every address that gets them.
    suffixes: Vec<(Vec<u8>, Vec<Tok>)>,
}

/// The input does not tokenize (unbalanced brackets or quotes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyntaxError;

fn atom_ok(c: u8) -> bool {
    !matches!(
        c,
        b' ' | b'\t'
            | b'\r'
            | b'\n'
            | b'('
            | b'['
            | b'"'
            | b'<'
            | b'>'
            | b';'
            | b':'
            | b'@'
            | b','
            | b'.'
    )
}

impl Tokens {
    pub fn new() -> Tokens {
        Tokens::default()
    }

    /// The text of token `t`.
    pub fn text(&self, t: &Tok) -> &[u8] {
        &self.buf[t.start as usize..t.end as usize]
    }

    /// Append a special token (no text).
    pub fn push_special(&mut self, kind: Kind) {
        self.toks.push(Tok {
            kind,
            start: 0,
            end: 0,
        });
    }

    /// Append a token with text.
    pub fn push_text(&mut self, kind: Kind, text: &[u8]) {
        let start = self.buf.len();
        self.buf.extend_from_slice(text);
        self.toks.push(Tok {
            kind,
            start: start as u32,
            end: self.buf.len() as u32,
        });
    }

    /// A new token with text, not yet placed in the list.
    pub fn make(&mut self, kind: Kind, text: &[u8]) -> Tok {
        let start = self.buf.len();
        self.buf.extend_from_slice(text);
        Tok {
            kind,
            start: start as u32,
            end: self.buf.len() as u32,
        }
    }

    /// The tokens of `text` (tokenized), stored once per list. A text that does not
    /// tokenize is `None`.
    pub fn suffix(&mut self, text: &[u8]) -> Option<Vec<Tok>> {
        if let Some((_, t)) = self.suffixes.iter().find(|(k, _)| k == text) {
            return Some(t.clone());
        }
        let parsed = parse(text).ok()?;
        let toks: Vec<Tok> = parsed
            .toks
            .iter()
            .map(|x| self.make(x.kind, parsed.text(x)))
            .collect();
        self.suffixes.push((text.to_vec(), toks.clone()));
        Some(toks)
    }

    /// Same kinds and texts, token for token.
    pub fn same_as(&self, a: &[Tok], other: &Tokens, b: &[Tok]) -> bool {
        a.len() == b.len()
            && a.iter()
                .zip(b)
                .all(|(x, y)| x.kind == y.kind && self.text(x) == other.text(y))
    }
}

/// Tokenize `s` (qmail's `token822_parse`).
pub fn parse(s: &[u8]) -> Result<Tokens, SyntaxError> {
    // Token ranges are u32: refuse what could not be addressed (the header is far
    // smaller; appended text is shared, see `Tokens::suffix`).
    if s.len() > (u32::MAX / 4) as usize {
        return Err(SyntaxError);
    }
    let mut out = Tokens {
        buf: Vec::with_capacity(s.len()),
        toks: Vec::new(),
        suffixes: Vec::new(),
    };
    let n = s.len();
    let mut i = 0;
    while i < n {
        let c = s[i];
        match c {
            b'.' => out.push_special(Kind::Dot),
            b',' => out.push_special(Kind::Comma),
            b'@' => out.push_special(Kind::At),
            b'<' => out.push_special(Kind::Left),
            b'>' => out.push_special(Kind::Right),
            b':' => out.push_special(Kind::Colon),
            b';' => out.push_special(Kind::Semi),
            b' ' | b'\t' | b'\r' | b'\n' => {}
            b')' | b']' => return Err(SyntaxError),
            b'(' | b'"' | b'[' => {
                let (kind, close) = match c {
                    b'(' => (Kind::Comment, b')'),
                    b'"' => (Kind::Quote, b'"'),
                    _ => (Kind::Literal, b']'),
                };
                let start = out.buf.len();
                let mut level = 1usize;
                loop {
                    i += 1;
                    if i >= n {
                        return Err(SyntaxError);
                    }
                    let d = s[i];
                    if d == close {
                        // only comments nest; qmail drops the nested parentheses
                        level -= 1;
                        if level == 0 {
                            break;
                        }
                    } else if d == b'(' && kind == Kind::Comment {
                        level += 1;
                    } else if d == b'\\' {
                        i += 1;
                        if i >= n {
                            return Err(SyntaxError);
                        }
                        out.buf.push(s[i]);
                    } else {
                        out.buf.push(d);
                    }
                }
                out.toks.push(Tok {
                    kind,
                    start: start as u32,
                    end: out.buf.len() as u32,
                });
            }
            _ => {
                let start = out.buf.len();
                let mut kind = Kind::Atom;
                loop {
                    if s[i] == b'\\' {
                        i += 1;
                        if i >= n {
                            break;
                        }
                    }
                    let d = s[i];
                    if !(32..=126).contains(&d) || d == b')' || d == b']' || d == b'\\' {
                        kind = Kind::Quote;
                    }
                    out.buf.push(d);
                    i += 1;
                    if i >= n || !atom_ok(s[i]) {
                        break;
                    }
                }
                out.toks.push(Tok {
                    kind,
                    start: start as u32,
                    end: out.buf.len() as u32,
                });
                continue;
            }
        }
        i += 1;
    }
    Ok(out)
}

fn needspace(last: Option<Kind>, new: Kind) -> bool {
    let Some(t1) = last else { return false };
    if t1 == Kind::Colon || t1 == Kind::Comma || new == Kind::Left {
        return true;
    }
    t1.has_text() && new.has_text()
}

/// Write `toks` as header text ending in `\n` (qmail's `token822_unparse`), folding
/// after commas once a line would pass `linelen` bytes (0 = never fold).
pub fn unparse(t: &Tokens, toks: &[Tok], linelen: usize) -> Vec<u8> {
    let mut s: Vec<u8> = Vec::with_capacity(t.buf.len() + toks.len() * 2 + 2);
    // `lineb`: start of the current output line; `linee`: position of the last tentative
    // line break ("\n " after a comma), which is removed again while the line still fits.
    let mut lineb = 0usize;
    let mut linee: Option<usize> = None;
    let mut nsuw = |s: &mut Vec<u8>| {
        let pos = s.len();
        match linee {
            Some(le) if linelen == 0 || pos - lineb <= linelen => {
                s.drain(le..le + 2);
                s.extend_from_slice(b"\n ");
                linee = Some(s.len() - 2);
            }
            _ => {
                if let Some(le) = linee {
                    lineb = le + 1;
                }
                s.extend_from_slice(b"\n ");
                linee = Some(pos);
            }
        }
    };
    let mut last = None;
    for tok in toks {
        if needspace(last, tok.kind) {
            s.push(b' ');
        }
        last = Some(tok.kind);
        match tok.kind {
            Kind::Comma => {
                s.push(b',');
                nsuw(&mut s);
            }
            Kind::At => s.push(b'@'),
            Kind::Dot => s.push(b'.'),
            Kind::Left => s.push(b'<'),
            Kind::Right => s.push(b'>'),
            Kind::Semi => s.push(b';'),
            Kind::Colon => s.push(b':'),
            Kind::Atom | Kind::Quote | Kind::Literal | Kind::Comment => {
                let (open, close) = match tok.kind {
                    Kind::Quote => (Some(b'"'), Some(b'"')),
                    Kind::Literal => (Some(b'['), Some(b']')),
                    Kind::Comment => (Some(b'('), Some(b')')),
                    _ => (None, None),
                };
                if let Some(o) = open {
                    s.push(o);
                }
                for &c in t.text(tok) {
                    if matches!(c, b'"' | b'[' | b']' | b'(' | b')' | b'\\' | b'\r' | b'\n') {
                        s.push(b'\\');
                    }
                    s.push(c);
                }
                if let Some(c) = close {
                    s.push(c);
                }
            }
        }
    }
    nsuw(&mut s);
    s.pop();
    s
}

/// The bare text of an address (qmail's `token822_unquote`): atoms and quoted strings
/// verbatim, literals in brackets, specials as themselves, comments dropped.
pub fn unquote(t: &Tokens, toks: &[Tok]) -> Vec<u8> {
    let mut s = Vec::new();
    for tok in toks {
        match tok.kind {
            Kind::Comma => s.push(b','),
            Kind::At => s.push(b'@'),
            Kind::Dot => s.push(b'.'),
            Kind::Left => s.push(b'<'),
            Kind::Right => s.push(b'>'),
            Kind::Semi => s.push(b';'),
            Kind::Colon => s.push(b':'),
            Kind::Literal => {
                s.push(b'[');
                s.extend_from_slice(t.text(tok));
                s.push(b']');
            }
            Kind::Atom | Kind::Quote => s.extend_from_slice(t.text(tok)),
            Kind::Comment => {}
        }
    }
    s
}

fn quote_ok(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~.".contains(&c)
}

/// Whether a local part must be quoted (qmail's `quote_need`).
pub fn quote_need(s: &[u8]) -> bool {
    if s.is_empty() {
        return true;
    }
    if !s.iter().all(|&c| quote_ok(c)) {
        return true;
    }
    s[0] == b'.' || s[s.len() - 1] == b'.' || s.windows(2).any(|w| w == b"..")
}

/// `local@domain` with the local part quoted when needed (qmail's `quote2`): the form an
/// envelope address takes in a header or on the command line before tokenizing.
pub fn quote2(addr: &[u8]) -> Vec<u8> {
    if addr.is_empty() {
        return Vec::new();
    }
    let (local, rest) = match addr.iter().rposition(|&c| c == b'@') {
        Some(j) => (&addr[..j], &addr[j..]),
        None => (addr, &b""[..]),
    };
    let mut out = Vec::with_capacity(addr.len() + 2);
    if quote_need(local) {
        out.push(b'"');
        for &c in local {
            if c == b'"' || c == b'\\' {
                out.push(b'\\');
            }
            out.push(c);
        }
        out.push(b'"');
    } else {
        out.extend_from_slice(local);
    }
    out.extend_from_slice(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(t: &Tokens) -> Vec<Kind> {
        t.toks.iter().map(|x| x.kind).collect()
    }

    #[test]
    fn tokenizes_specials_quotes_comments_literals() {
        let t = parse(br#"To: "Joe \"J\" Smith" <joe@[1.2.3.4]> (a (nested) c)"#).unwrap();
        use Kind::*;
        assert_eq!(
            kinds(&t),
            vec![Atom, Colon, Quote, Left, Atom, At, Literal, Right, Comment]
        );
        assert_eq!(t.text(&t.toks[2]), br#"Joe "J" Smith"#);
        assert_eq!(t.text(&t.toks[6]), b"1.2.3.4");
        assert_eq!(t.text(&t.toks[8]), b"a nested c");
    }

    #[test]
    fn syntax_errors() {
        assert_eq!(parse(b"a )b").unwrap_err(), SyntaxError);
        assert_eq!(parse(b"a)b").unwrap().toks[0].kind, Kind::Quote);
        assert_eq!(parse(b"\"open").unwrap_err(), SyntaxError);
        assert_eq!(parse(b"(open").unwrap_err(), SyntaxError);
        assert_eq!(parse(b"[1.2").unwrap_err(), SyntaxError);
        assert_eq!(parse(b"x\\").unwrap().toks.len(), 1);
    }

    #[test]
    fn eight_bit_and_nul_atoms_become_quoted() {
        let t = parse(b"J\xfcrgen \x00x").unwrap();
        assert_eq!(t.toks[0].kind, Kind::Quote);
        assert_eq!(t.toks[1].kind, Kind::Quote);
        assert_eq!(unparse(&t, &t.toks, LINELEN), b"\"J\xfcrgen\" \"\x00x\"\n");
    }

    #[test]
    fn unparse_spacing_and_folding() {
        let t = parse(b"To:a@b,c@d").unwrap();
        assert_eq!(unparse(&t, &t.toks, LINELEN), b"To: a@b, c@d\n");
        let long: Vec<u8> = (0..20)
            .map(|i| format!("user{i}@example.com"))
            .collect::<Vec<_>>()
            .join(",")
            .into_bytes();
        let mut line = b"To: ".to_vec();
        line.extend_from_slice(&long);
        let t = parse(&line).unwrap();
        let out = unparse(&t, &t.toks, LINELEN);
        for l in out.split(|&c| c == b'\n').filter(|l| !l.is_empty()) {
            assert!(l.len() <= LINELEN + 2, "{}", String::from_utf8_lossy(l));
        }
        assert!(out.windows(3).any(|w| w == b",\n "));
        // the folding only ever adds white space
        let flat: Vec<u8> = out
            .iter()
            .copied()
            .filter(|c| !c.is_ascii_whitespace())
            .collect();
        let orig: Vec<u8> = line
            .iter()
            .copied()
            .filter(|c| !c.is_ascii_whitespace())
            .collect();
        assert_eq!(flat, orig);
    }

    #[test]
    fn unquote_drops_comments_and_quotes() {
        let t = parse(br#""joe smith"(c)@[1.2.3.4]"#).unwrap();
        assert_eq!(unquote(&t, &t.toks), b"joe smith@[1.2.3.4]");
    }

    #[test]
    fn quote2_quotes_local_part_only() {
        assert_eq!(quote2(b"joe@x.y"), b"joe@x.y");
        assert_eq!(quote2(b"joe smith@x.y"), b"\"joe smith\"@x.y");
        assert_eq!(quote2(b"a\"b"), b"\"a\\\"b\"");
        assert_eq!(quote2(b""), b"");
        assert_eq!(quote2(b"a..b@c"), b"\"a..b\"@c");
    }
}
