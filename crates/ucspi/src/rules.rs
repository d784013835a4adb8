//! ucspi-tcp access rules, as `tcprules`, `tcprulescheck` and `tcpserver -x` share them
//! (ucspi-tcp 0.88 `tcprules.c` and `rules.c`; reference/daemontools-ucspi.md section 6).
//!
//! The text: one rule per line, `ADDRESS:allow` or `ADDRESS:deny`, then any number of
//! `,VAR=<q>value<q>` where `<q>` is any one character. Blank lines and lines starting with
//! `#` are comments. A line without a colon is refused with its number (tcprules 0.88
//! ignores it, so `192.0.2.66 deny` silently denied nothing; issue 12), unless it is a
//! comment after leading white space; every line tcprules accepts otherwise gives the
//! same records. Addresses
//! are `1.2.3.4`, prefixes `1.2.3.` (and IPv6 prefixes ending in `:`), ranges
//! `1.2.3.4-7` (expanded to one record per value), `=host`, `=.domain`, `=`, the empty
//! default, and `info@...` forms for ident answers.
//!
//! The cdb: key = the address as written (after range expansion); data = NUL-terminated
//! entries, `D` for deny and `+VAR=value` per variable (allow adds no byte). This is byte
//! for byte what Debian's tcprules writes, so either side reads the other's files.
//!
//! Unlike tcprules, a NUL byte in a variable's name or value is refused: it would cut the
//! entry short and make the rest of the value read as further entries (a `D`, say).
//!
//! IPv6: a rule's address may itself contain colons, so the separator is the first colon
//! followed by `allow` or `deny` (for IPv4 addresses that is the first colon, as in
//! tcprules.c), and lookups also try the prefixes of an IPv6 address that end at a colon,
//! as the IPv6 patch of ucspi-tcp does.

use std::io;

/// One cdb record: key and data.
pub type Record = (Vec<u8>, Vec<u8>);

/// A line that tcprules refuses (the whole file is then refused): its number (from 1),
/// its text and what is wrong with it.
#[derive(Debug, PartialEq, Eq)]
pub struct BadLine {
    pub number: usize,
    pub text: Vec<u8>,
    pub reason: &'static str,
}

/// Why a line is refused.
const NO_COLON: &str = "no colon: a rule is ADDRESS:allow or ADDRESS:deny";
const SYNTAX: &str = "expected ADDRESS:allow or ADDRESS:deny, then ,VAR=\"value\" settings";

/// The records of a whole rules text, in file order (the first duplicate wins at lookup).
pub fn compile(text: &[u8]) -> Result<Vec<Record>, BadLine> {
    let mut out = Vec::new();
    for (i, line) in text.split(|&b| b == b'\n').enumerate() {
        out.extend(parse_line(line).map_err(|e| BadLine { number: i + 1, ..e })?);
    }
    Ok(out)
}

/// The records of one line (none for comments); its number is reported as 1.
pub fn parse_line(line: &[u8]) -> Result<Vec<Record>, BadLine> {
    parse_rule(line).map_err(|reason| BadLine {
        number: 1,
        text: line.to_vec(),
        reason,
    })
}

fn parse_rule(line: &[u8]) -> Result<Vec<Record>, &'static str> {
    let mut end = line.len();
    while end > 0 && matches!(line[end - 1], b' ' | b'\t' | b'\n') {
        end -= 1;
    }
    let line = &line[..end];
    if line.is_empty() || line[0] == b'#' {
        return Ok(Vec::new());
    }
    let colons: Vec<usize> = (0..line.len()).filter(|&i| line[i] == b':').collect();
    let Some(&first) = colons.first() else {
        let indented = line.iter().position(|b| !matches!(b, b' ' | b'\t' | b'\r'));
        return match indented.map(|i| line[i]) {
            None | Some(b'#') => Ok(Vec::new()),
            _ => Err(NO_COLON),
        };
    };
    let starts_verb = |i: usize| {
        let rest = &line[i + 1..];
        rest.starts_with(b"allow") || rest.starts_with(b"deny")
    };
    let colon = colons
        .iter()
        .copied()
        .find(|&i| starts_verb(i))
        .unwrap_or(first);
    let (address, mut rest) = (&line[..colon], &line[colon + 1..]);
    let mut data = Vec::new();
    if let Some(r) = rest.strip_prefix(b"allow") {
        rest = r;
    } else if let Some(r) = rest.strip_prefix(b"deny") {
        data.extend_from_slice(b"D\0");
        rest = r;
    } else {
        return Err(SYNTAX);
    }
    while !rest.is_empty() {
        let r = rest.strip_prefix(b",").ok_or(SYNTAX)?;
        let eq = r.iter().position(|&b| b == b'=').ok_or(SYNTAX)?;
        let (name, after) = (&r[..eq], &r[eq + 1..]);
        let (&quote, value) = after.split_first().ok_or(SYNTAX)?;
        let close = value.iter().position(|&b| b == quote).ok_or(SYNTAX)?;
        // a NUL would end the entry early and let the rest read as other entries
        if name.contains(&0) || value[..close].contains(&0) {
            return Err(SYNTAX);
        }
        data.push(b'+');
        data.extend_from_slice(name);
        data.push(b'=');
        data.extend_from_slice(&value[..close]);
        data.push(0);
        rest = &value[close + 1..];
    }
    Ok(expand(address)
        .map_err(|()| SYNTAX)?
        .into_iter()
        .map(|k| (k, data.clone()))
        .collect())
}

/// Range expansion: `10.1.2.3-5` gives three keys; addresses with `=` or `@` never expand.
fn expand(address: &[u8]) -> Result<Vec<Vec<u8>>, ()> {
    let Some(dash) = address.iter().position(|&b| b == b'-') else {
        return Ok(vec![address.to_vec()]);
    };
    if address.iter().any(|&b| b == b'=' || b == b'@') {
        return Ok(vec![address.to_vec()]);
    }
    let start = address[..dash]
        .iter()
        .rposition(|&b| b == b'.')
        .map_or(0, |i| i + 1);
    let stop = address[dash..]
        .iter()
        .position(|&b| b == b'.')
        .map_or(address.len(), |i| dash + i);
    let number = |s: &[u8]| -> Result<u32, ()> {
        if s.is_empty() || s.len() > 9 || !s.iter().all(u8::is_ascii_digit) {
            return Err(());
        }
        std::str::from_utf8(s)
            .map_err(|_| ())?
            .parse()
            .map_err(|_| ())
    };
    let lo = number(&address[start..dash])?;
    let hi = number(&address[dash + 1..stop])?.min(255);
    Ok((lo..=hi)
        .map(|v| {
            let mut k = address[..start].to_vec();
            k.extend_from_slice(v.to_string().as_bytes());
            k.extend_from_slice(&address[stop..]);
            k
        })
        .collect())
}

/// The keys tcpserver tries, in order (rules.c): `info@ip`, `info@=host`, `ip`, `=host`,
/// the prefixes of `ip` longest first, `=` + each dot-suffix of `host`, `=`, and ``.
pub fn candidates(ip: &str, host: Option<&str>, info: Option<&str>) -> Vec<Vec<u8>> {
    let mut keys: Vec<Vec<u8>> = Vec::new();
    if let Some(info) = info {
        keys.push(format!("{info}@{ip}").into_bytes());
        if let Some(h) = host {
            keys.push(format!("{info}@={h}").into_bytes());
        }
    }
    keys.push(ip.as_bytes().to_vec());
    if let Some(h) = host {
        keys.push(format!("={h}").into_bytes());
    }
    let b = ip.as_bytes();
    for i in (0..b.len().saturating_sub(1)).rev() {
        if b[i] == b'.' || b[i] == b':' {
            keys.push(b[..=i].to_vec());
        }
    }
    if let Some(h) = host {
        for (i, c) in h.char_indices() {
            if c == '.' {
                keys.push(format!("={}", &h[i..]).into_bytes());
            }
        }
        keys.push(b"=".to_vec());
    }
    keys.push(Vec::new());
    keys
}

/// What the matching rule says.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Decision {
    /// The key of the rule that matched; `None` when none did (then: allow).
    pub rule: Option<Vec<u8>>,
    pub deny: bool,
    /// The variables to set, in the rule's order.
    pub env: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Decode a record's data: `D` entries deny, `+VAR=value` entries set variables, anything
/// else is skipped (as tcpserver skips it).
pub fn decode(rule: Vec<u8>, data: &[u8]) -> Decision {
    let mut d = Decision {
        rule: Some(rule),
        ..Decision::default()
    };
    for entry in data.split(|&b| b == 0) {
        match entry.first() {
            Some(b'D') => d.deny = true,
            Some(b'+') => {
                if let Some(eq) = entry.iter().position(|&b| b == b'=') {
                    d.env
                        .push((entry[1..eq].to_vec(), entry[eq + 1..].to_vec()));
                }
            }
            _ => {}
        }
    }
    d
}

/// Look the client up in the rules `db`: the first candidate key with a record decides.
pub fn lookup(
    db: &control::cdbfile::Cdb,
    ip: &str,
    host: Option<&str>,
    info: Option<&str>,
) -> io::Result<Decision> {
    for key in candidates(ip, host, info) {
        if let Some(data) = db.get(&key)? {
            return Ok(decode(key, &data));
        }
    }
    Ok(Decision::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recs(text: &str) -> Vec<(String, String)> {
        compile(text.as_bytes())
            .unwrap()
            .into_iter()
            .map(|(k, v)| {
                (
                    String::from_utf8(k).unwrap(),
                    String::from_utf8(v).unwrap().replace('\0', "^@"),
                )
            })
            .collect()
    }

    #[test]
    fn encoding_matches_tcprules() {
        let r = recs(
            "127.0.0.1:allow,RELAYCLIENT=\"\",NAME='x y'\n10.1.2.3-5:deny\n192.168.:allow,RELAYCLIENT=\"\"  \t\n\
             # comment\n\n  # indented comment\n=.example.org:allow,DOMAIN=/org/\njoe@=h.example:allow\n:allow,DEFAULT=\"yes\"",
        );
        let want = [
            ("127.0.0.1", "+RELAYCLIENT=^@+NAME=x y^@"),
            ("10.1.2.3", "D^@"),
            ("10.1.2.4", "D^@"),
            ("10.1.2.5", "D^@"),
            ("192.168.", "+RELAYCLIENT=^@"),
            ("=.example.org", "+DOMAIN=org^@"),
            ("joe@=h.example", ""),
            ("", "+DEFAULT=yes^@"),
        ];
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        assert_eq!(r, want);
    }

    #[test]
    fn ranges() {
        let keys: Vec<String> = recs("10.0-2.:allow\n1.2.3.250-300:deny\n")
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(
            keys,
            [
                "10.0.",
                "10.1.",
                "10.2.",
                "1.2.3.250",
                "1.2.3.251",
                "1.2.3.252",
                "1.2.3.253",
                "1.2.3.254",
                "1.2.3.255"
            ]
        );
        assert!(compile(b"1.2.x-3:allow\n").is_err());
    }

    #[test]
    fn errors() {
        for bad in [
            "1.2.3.4 : allow",
            "1.2.3.4:allo",
            "1.2.3.4:allowfoo",
            "1.2.3.4:denyxyz",
            "1.2.3.4:allow,X",
            "1.2.3.4:allow,X=",
            "1.2.3.4:allow,X=\"abc",
            "1.2.3.4:allow,X=\"a\0D\"",
        ] {
            assert!(compile(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_line_without_a_colon_is_refused_with_its_number() {
        let e = compile(b"# ours\n127.0.0.1:allow\n192.0.2.66 deny\n").unwrap_err();
        assert_eq!(e.number, 3);
        assert_eq!(e.text, b"192.0.2.66 deny");
        assert!(e.reason.contains("no colon"));
        assert_eq!(compile(b"1.2.3.4:allow,X\n").unwrap_err().number, 1);
        assert!(compile(b"deny\n").is_err());
        assert!(compile(b" \t\n\t# c\n\r\n").unwrap().is_empty());
    }

    #[test]
    fn ipv6_rules() {
        let r = recs("::1:allow,LOOP=\"1\"\n2001:db8::deny\n");
        assert_eq!(r[0], ("::1".into(), "+LOOP=1^@".into()));
        assert_eq!(r[1], ("2001:db8:".into(), "D^@".into()));
        let c = candidates("2001:db8::5", None, None);
        assert!(c.contains(&b"2001:db8:".to_vec()));
    }

    #[test]
    fn lookup_order() {
        let c = candidates("1.2.3.4", Some("a.b.example"), Some("joe"));
        let c: Vec<String> = c
            .into_iter()
            .map(|k| String::from_utf8(k).unwrap())
            .collect();
        assert_eq!(
            c,
            [
                "joe@1.2.3.4",
                "joe@=a.b.example",
                "1.2.3.4",
                "=a.b.example",
                "1.2.3.",
                "1.2.",
                "1.",
                "=.b.example",
                "=.example",
                "=",
                ""
            ]
        );
    }

    #[test]
    fn lookup_through_a_cdb() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("r.cdb");
        let recs = compile(b"10.1.2.4:deny\n10.1.:allow,NET=\"ten\"\n10.1.:deny\n").unwrap();
        control::cdbfile::write(&path, recs.iter().map(|(k, v)| (&k[..], &v[..])), 0o644).unwrap();
        let db = control::cdbfile::Cdb::open(&path).unwrap().unwrap();
        let d1 = lookup(&db, "10.1.2.6", None, None).unwrap();
        assert_eq!(d1.rule.as_deref(), Some(&b"10.1."[..]));
        assert!(!d1.deny);
        assert_eq!(d1.env, vec![(b"NET".to_vec(), b"ten".to_vec())]);
        assert!(lookup(&db, "10.1.2.4", None, None).unwrap().deny);
        assert_eq!(
            lookup(&db, "8.8.8.8", None, None).unwrap(),
            Decision::default()
        );
    }
}
