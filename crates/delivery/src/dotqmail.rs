//! `.qmail` files (qmail's `dot-qmail(5)` and `qmesearch` in qmail-local.c).
//!
//! Lookup for extension `ext` with delimiter `dash`: `safeext` is `ext` lowercased with
//! every `.` turned into `:` (so an extension can never name `../`). The first regular
//! file among `.qmail<dash><safeext>`, then `.qmail<dash><prefix>default` for each prefix
//! of safeext ending in `-` (longest first) and finally `.qmail<dash>default`, wins.

use crate::Fail;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// A `.qmail` file that was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub name: String,
    pub content: Vec<u8>,
    /// The user-execute bit is set: forward-only mode.
    pub forward_only: bool,
    /// The part of the extension matched by `default` (the `DEFAULT` variable).
    pub default: Option<String>,
}

/// The extension as used in file names.
pub fn safe_ext(ext: &str) -> String {
    ext.to_ascii_lowercase().replace('.', ":")
}

/// The candidate file names in lookup order, each with the `DEFAULT` value it implies.
pub fn candidates(dash: &str, ext: &str) -> Vec<(String, Option<String>)> {
    let safe = safe_ext(ext);
    let mut v = vec![(format!(".qmail{dash}{safe}"), None)];
    let bytes = safe.as_bytes();
    for i in (0..=bytes.len()).rev() {
        if i == 0 || bytes[i - 1] == b'-' {
            // `default` stands for the rest of the (original-case) extension.
            let rest = ext.get(i..).unwrap_or("").to_string();
            v.push((format!(".qmail{dash}{}default", &safe[..i]), Some(rest)));
        }
    }
    v
}

/// Find the `.qmail` file for `dash`/`ext` in `home`. `Ok(None)` if none exists.
pub fn find(home: &Path, dash: &str, ext: &str) -> Result<Option<Found>, Fail> {
    for (name, default) in candidates(dash, ext) {
        if let Some(found) = open(home, &name, default)? {
            return Ok(Some(found));
        }
    }
    Ok(None)
}

/// Open one `.qmail` file: missing or not a regular file is `None`; group- or
/// world-writable is a temporary failure.
fn open(home: &Path, name: &str, default: Option<String>) -> Result<Option<Found>, Fail> {
    let path = home.join(name);
    let meta = match std::fs::metadata(&path) {
        Ok(m) => m,
        Err(e)
            if e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENOTDIR) =>
        {
            return Ok(None);
        }
        Err(e) => return Err(Fail::temp(format!("Unable to open {name}: {e}. (#4.3.0)"))),
    };
    if !meta.is_file() {
        return Ok(None);
    }
    if meta.mode() & 0o002 != 0 {
        return Err(Fail::temp("Uh-oh: .qmail file is writable. (#4.7.0)"));
    }
    let content = std::fs::read(&path)
        .map_err(|e| Fail::temp(format!("Unable to read {name}: {e}. (#4.3.0)")))?;
    Ok(Some(Found {
        name: name.to_string(),
        content,
        forward_only: meta.mode() & 0o100 != 0,
        default,
    }))
}

/// One instruction of a `.qmail` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    Mbox(String),
    Maildir(String),
    Program(String),
    Forward(String),
    /// `+list`: forward-only mode.
    ForwardOnly,
}

/// Parse `.qmail` text: trailing spaces and tabs stripped, comments and empty lines
/// skipped, but an empty FIRST line is an error (qmail refuses to guess).
pub fn parse(content: &[u8]) -> Result<Vec<Line>, Fail> {
    let text = String::from_utf8_lossy(content);
    let mut out = Vec::new();
    for (i, raw) in text.split('\n').enumerate() {
        let line = raw.trim_end_matches([' ', '\t', '\r']);
        if line.is_empty() {
            if i == 0 && text.len() > 1 {
                return Err(Fail::temp(
                    "Uh-oh: first line of .qmail file is blank. (#4.2.1)",
                ));
            }
            continue;
        }
        // The first character decides (qmail looks at the first byte); slicing by
        // characters keeps a multibyte or replaced first character a plain forward.
        let mut chars = line.chars();
        let first = chars.next();
        let rest = chars.as_str();
        match first {
            Some('#') => {}
            Some('.' | '/') if line.ends_with('/') => out.push(Line::Maildir(line.to_string())),
            Some('.' | '/') => out.push(Line::Mbox(line.to_string())),
            Some('|') => out.push(Line::Program(rest.to_string())),
            Some('+') => {
                if rest == "list" {
                    out.push(Line::ForwardOnly)
                }
            }
            Some('&') => out.push(Line::Forward(rest.to_string())),
            _ => out.push(Line::Forward(line.to_string())),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_order() {
        let names: Vec<String> = candidates("-", "a-b-c").into_iter().map(|c| c.0).collect();
        assert_eq!(
            names,
            vec![
                ".qmail-a-b-c",
                ".qmail-a-b-default",
                ".qmail-a-default",
                ".qmail-default"
            ]
        );
        let names: Vec<String> = candidates("", "").into_iter().map(|c| c.0).collect();
        assert_eq!(names, vec![".qmail", ".qmaildefault"]);
        assert_eq!(candidates("-", "Foo.Bar")[0].0, ".qmail-foo:bar");
        assert_eq!(
            candidates("-", "list-Joe")[1],
            (".qmail-list-default".into(), Some("Joe".into()))
        );
    }

    #[test]
    fn line_kinds() {
        let l =
            parse(b"# c\n./Maildir/\n./Mailbox  \n|prog arg\n&joe@x\nbob@y\n+list\n\n").unwrap();
        assert_eq!(
            l,
            vec![
                Line::Maildir("./Maildir/".into()),
                Line::Mbox("./Mailbox".into()),
                Line::Program("prog arg".into()),
                Line::Forward("joe@x".into()),
                Line::Forward("bob@y".into()),
                Line::ForwardOnly,
            ]
        );
        assert!(parse(b"\n./Maildir/\n").is_err());
        assert_eq!(parse(b"").unwrap(), vec![]);
    }

    /// Found by the issue (and the `dotqmail` fuzz target): a line starting with a
    /// multibyte character, or with invalid UTF-8 turned into U+FFFD, made `&line[1..]`
    /// panic, so qmail-local died and every mail to the address was deferred.
    #[test]
    fn multibyte_and_invalid_first_characters_are_forwards() {
        assert_eq!(
            parse("é@example.org\n".as_bytes()).unwrap(),
            vec![Line::Forward("é@example.org".into())]
        );
        assert_eq!(
            parse(b"\xff\xfe\n|\xc3\n&\xe2\x82\n").unwrap(),
            vec![
                Line::Forward("\u{fffd}\u{fffd}".into()),
                Line::Program("\u{fffd}".into()),
                Line::Forward("\u{fffd}".into()),
            ]
        );
        assert_eq!(
            parse("€\n|\n&\n+\n".as_bytes()).unwrap(),
            vec![
                Line::Forward("€".into()),
                Line::Program(String::new()),
                Line::Forward(String::new())
            ]
        );
    }

    #[test]
    fn candidates_with_multibyte_extensions() {
        let c = candidates("-", "Ü-é.x-");
        assert_eq!(c[0].0, ".qmail-Ü-é:x-");
        assert_eq!(c[1], (".qmail-Ü-é:x-default".into(), Some(String::new())));
        assert_eq!(c[2], (".qmail-Ü-default".into(), Some("é.x-".into())));
    }

    #[test]
    fn finds_default_and_rejects_writable() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join(".qmail-list-default"), "./L/\n").unwrap();
        let f = find(d.path(), "-", "list-x").unwrap().unwrap();
        assert_eq!(f.name, ".qmail-list-default");
        assert_eq!(f.default.as_deref(), Some("x"));
        assert!(find(d.path(), "-", "other").unwrap().is_none());
        std::fs::set_permissions(
            d.path().join(".qmail-list-default"),
            std::fs::Permissions::from_mode(0o666),
        )
        .unwrap();
        assert!(find(d.path(), "-", "list-x").is_err());
    }
}
