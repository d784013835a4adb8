//! The header fields qmail-authcheck writes and removes.
//!
//! - [`authentication_results`]: one `Authentication-Results:` field (RFC 8601 section
//!   2.2) with `me` as authserv-id and one resinfo per method: `spf` with
//!   `smtp.mailfrom` or `smtp.helo`, `dkim` per signature with `header.d`, `header.s`,
//!   `header.a` and the first 8 characters of `header.b` (RFC 6008, to tell signatures
//!   apart), `dmarc` with `header.from` and `policy.dmarc`. Values from the message or
//!   the DNS are written as a token or a quoted-string, printable ASCII only and cut at
//!   [`MAX_VALUE`]; comments are our own fixed words, never text someone else chose.
//! - [`strip`]: removes every `Authentication-Results` field whose authserv-id is ours
//!   (section 5: a receiver MUST remove forgeries of its own id; compared without
//!   regard to case) and every `X-Qmail-Authcheck` field (our verdict, which users'
//!   filters trust), unfolded with their continuation lines, from the header only.
//!
//! Lines end as the message's do (qmail's queue holds LF); folded lines start with a
//! tab.

/// The longest property value written; longer ones are cut.
pub const MAX_VALUE: usize = 255;

/// The verdict field users' filters and spam scoring read.
pub const VERDICT_FIELD: &str = "X-Qmail-Authcheck";

/// One method's result: `method=result (comment) prop=value ...`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResInfo {
    pub method: &'static str,
    pub result: &'static str,
    pub comment: Option<&'static str>,
    /// `(ptype.property, value)`, value unquoted (quoted as needed on output).
    pub props: Vec<(&'static str, String)>,
}

/// `value` as an RFC 8601 pvalue: itself when it is a token (or an address or domain of
/// atext and dots), else a quoted-string; bytes outside printable ASCII become `?`.
pub fn pvalue(value: &str) -> String {
    let cut: String = value
        .chars()
        .take(MAX_VALUE)
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect();
    // a token (RFC 2045: no tspecials), or local-part@domain of atext and a plain domain
    let token = |c: char| c.is_ascii_graphic() && !"()<>@,;:\\\"/[]?=".contains(c);
    let atext = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c);
    let domain = |d: &str| {
        !d.is_empty()
            && d.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c))
    };
    let plain = match cut.split_once('@') {
        None => !cut.is_empty() && cut.chars().all(token),
        Some((l, d)) => !l.is_empty() && l.chars().all(atext) && domain(d),
    };
    if plain {
        return cut;
    }
    let mut q = String::with_capacity(cut.len() + 2);
    q.push('"');
    for c in cut.chars() {
        if c == '"' || c == '\\' {
            q.push('\\');
        }
        q.push(c);
    }
    q.push('"');
    q
}

/// The field, folded one resinfo per line, ending in `eol`.
pub fn authentication_results(authserv_id: &str, results: &[ResInfo], eol: &str) -> String {
    let mut h = format!("Authentication-Results: {}", pvalue(authserv_id));
    if results.is_empty() {
        h.push_str("; none");
    }
    for r in results {
        h.push(';');
        h.push_str(eol);
        h.push('\t');
        h.push_str(r.method);
        h.push('=');
        h.push_str(r.result);
        if let Some(c) = r.comment {
            h.push_str(&format!(" ({c})"));
        }
        for (p, v) in &r.props {
            h.push(' ');
            h.push_str(p);
            h.push('=');
            h.push_str(&pvalue(v));
        }
    }
    h.push_str(eol);
    h
}

/// `X-Qmail-Authcheck: MARK (by ME)`.
pub fn verdict(mark: &str, me: &str, eol: &str) -> String {
    format!("{VERDICT_FIELD}: {mark} (by {}){eol}", pvalue(me))
}

/// The line ending of `message`'s first line: CR LF or LF.
pub fn line_ending(message: &[u8]) -> &'static str {
    match message.iter().position(|&b| b == b'\n') {
        Some(i) if i > 0 && message[i - 1] == b'\r' => "\r\n",
        _ => "\n",
    }
}

/// The authserv-id of an `Authentication-Results` value: the first token or
/// quoted-string after comments and white space.
pub fn authserv_id(value: &[u8]) -> Vec<u8> {
    let mut i = 0;
    let mut depth = 0usize;
    while i < value.len() {
        match value[i] {
            b'(' => depth += 1,
            b')' if depth > 0 => depth -= 1,
            b'\\' if depth > 0 => i += 1,
            b' ' | b'\t' | b'\r' | b'\n' => {}
            _ if depth > 0 => {}
            _ => break,
        }
        i += 1;
    }
    let rest = &value[i.min(value.len())..];
    if let Some(q) = rest.strip_prefix(b"\"") {
        let mut id = Vec::new();
        let mut k = 0;
        while k < q.len() && q[k] != b'"' {
            if q[k] == b'\\' {
                k += 1;
            }
            if let Some(&c) = q.get(k) {
                id.push(c);
            }
            k += 1;
        }
        return id;
    }
    rest.iter()
        .take_while(|&&c| !matches!(c, b';' | b' ' | b'\t' | b'\r' | b'\n' | b'('))
        .copied()
        .collect()
}

/// `message` without our forged fields (module doc); the number removed.
pub fn strip(message: &[u8], authserv_id: &str) -> (Vec<u8>, usize) {
    let mut out = Vec::with_capacity(message.len());
    let mut removed = 0;
    let mut pos = 0;
    let mut dropping = false;
    while pos < message.len() {
        let end = message[pos..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(message.len(), |i| pos + i + 1);
        let line = &message[pos..end];
        if line == b"\n" || line == b"\r\n" {
            out.extend_from_slice(&message[pos..]);
            return (out, removed);
        }
        let continuation = matches!(line.first(), Some(b' ' | b'\t'));
        if !continuation {
            dropping = is_ours(message, pos, authserv_id);
            if dropping {
                removed += 1;
            }
        }
        if !dropping {
            out.extend_from_slice(line);
        }
        pos = end;
    }
    (out, removed)
}

/// Whether the field starting at `start` is one [`strip`] removes.
fn is_ours(message: &[u8], start: usize, authserv_id: &str) -> bool {
    let line_end = |p: usize| {
        message[p..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(message.len(), |i| p + i + 1)
    };
    let first = &message[start..line_end(start)];
    let Some(colon) = first.iter().position(|&b| b == b':') else {
        return false;
    };
    let name = first[..colon].trim_ascii_end();
    if name.eq_ignore_ascii_case(VERDICT_FIELD.as_bytes()) {
        return true;
    }
    if !name.eq_ignore_ascii_case(b"Authentication-Results") {
        return false;
    }
    // the whole field, unfolded
    let mut value = first[colon + 1..].to_vec();
    let mut p = line_end(start);
    while p < message.len() && matches!(message[p], b' ' | b'\t') {
        let e = line_end(p);
        value.extend_from_slice(&message[p..e]);
        p = e;
    }
    authserv_id_matches(&self::authserv_id(&value), authserv_id)
}

fn authserv_id_matches(found: &[u8], ours: &str) -> bool {
    let trim = |s: &[u8]| -> Vec<u8> {
        let mut v = s.to_vec();
        while v.last() == Some(&b'.') {
            v.pop();
        }
        v
    };
    !ours.is_empty() && trim(found).eq_ignore_ascii_case(&trim(ours.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pvalues_are_tokens_or_quoted() {
        assert_eq!(pvalue("joe@example.org"), "joe@example.org");
        assert_eq!(pvalue("example.org"), "example.org");
        assert_eq!(pvalue("a b@x"), "\"a b@x\"");
        assert_eq!(pvalue("\"q\\\"@x"), "\"\\\"q\\\\\\\"@x\"");
        assert_eq!(pvalue(""), "\"\"");
        assert_eq!(pvalue("x;y"), "\"x;y\"");
        assert_eq!(pvalue("a\r\nb"), "\"a??b\"");
        assert_eq!(pvalue("a@b@c"), "\"a@b@c\"");
        assert_eq!(pvalue(&"x".repeat(1000)).len(), MAX_VALUE);
        assert_eq!(pvalue("é"), "\"?\"");
        assert_eq!(pvalue("ab/cd+e="), "\"ab/cd+e=\"");
        assert_eq!(pvalue("rsa-sha256"), "rsa-sha256");
    }

    #[test]
    fn the_field_is_folded_one_method_per_line() {
        let r = vec![
            ResInfo {
                method: "spf",
                result: "pass",
                comment: None,
                props: vec![("smtp.mailfrom", "a@s.test".into())],
            },
            ResInfo {
                method: "dkim",
                result: "fail",
                comment: Some("body hash did not verify"),
                props: vec![("header.d", "d.test".into()), ("header.s", "sel".into())],
            },
        ];
        assert_eq!(
            authentication_results("mx.test", &r, "\n"),
            "Authentication-Results: mx.test;\n\tspf=pass smtp.mailfrom=a@s.test;\n\t\
             dkim=fail (body hash did not verify) header.d=d.test header.s=sel\n"
        );
        assert_eq!(
            authentication_results("mx.test", &[], "\r\n"),
            "Authentication-Results: mx.test; none\r\n"
        );
    }

    #[test]
    fn authserv_ids() {
        assert_eq!(authserv_id(b" mx.test; spf=pass"), b"mx.test");
        assert_eq!(authserv_id(b" (c (n)) MX.test 1; none"), b"MX.test");
        assert_eq!(authserv_id(b" \"mx.test\"; none"), b"mx.test");
        assert_eq!(authserv_id(b"mx.test;"), b"mx.test");
        assert_eq!(authserv_id(b""), b"");
        assert_eq!(authserv_id(b"(unclosed"), b"");
    }

    #[test]
    fn forged_fields_of_our_id_are_removed_with_their_continuations() {
        let m = b"Received: x\n\
            Authentication-Results: MX.Example.Test;\n\tdkim=pass header.d=bank.test\n\
            authentication-results : other.test; spf=pass\n\
            Authentication-Results: (c) mx.example.test.; none\n\
            X-Qmail-Authcheck: pass\n\
            Subject: s\n\
            \n\
            Authentication-Results: mx.example.test; body text stays\n";
        let (out, n) = strip(m, "mx.example.test");
        assert_eq!(n, 3);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "Received: x\nauthentication-results : other.test; spf=pass\nSubject: s\n\n\
             Authentication-Results: mx.example.test; body text stays\n"
        );
    }

    #[test]
    fn strip_keeps_crlf_messages_and_headerless_input() {
        let m = b"A: 1\r\nAuthentication-Results: me; none\r\n\r\nbody\r\n";
        let (out, n) = strip(m, "me");
        assert_eq!((out.as_slice(), n), (&b"A: 1\r\n\r\nbody\r\n"[..], 1));
        assert_eq!(strip(b"", "me"), (Vec::new(), 0));
        assert_eq!(strip(b"no colon line", "me").1, 0);
        assert_eq!(strip(b"\n\nAuthentication-Results: me;\n", "me").1, 0);
        assert_eq!(line_ending(b"a\r\nb"), "\r\n");
        assert_eq!(line_ending(b"a\nb"), "\n");
        assert_eq!(line_ending(b""), "\n");
    }
}
