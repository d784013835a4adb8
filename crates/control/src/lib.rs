//! qmail control files (`HOME/control/*`) and cdb files.
//!
//! Syntax follows qmail's `control.c`: a single-value file means its first line with
//! trailing spaces, tabs and the newline stripped; a list file is one item per line, with empty lines and lines
//! starting with `#` ignored. A missing file means "use the default"; any other error
//! reading it is a temporary failure the caller must report (never a silent default).
//! Numbers, 0/1 flags and choices go through [`known`]'s table and typed reader: a
//! malformed value is reported (qmail treated it as absent, silently), never misread.
//!
//! [`ConstMap`] is qmail's `constmap`: case-insensitive lookups of domains and
//! `key:value` lines (locals, rcpthosts, virtualdomains, smtproutes, percenthack).
//! [`cdbfile`] wraps the `cdb` crate for users/cdb, morercpthosts.cdb and tcprules files.

pub mod assign;
pub mod cdbfile;
pub mod known;

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};

/// The control directory of one installation.
#[derive(Clone, Debug)]
pub struct Controls {
    dir: PathBuf,
}

fn read_optional(path: &Path) -> io::Result<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn trim_end(s: &str) -> &str {
    s.trim_end_matches([' ', '\t', '\r', '\n'])
}

impl Controls {
    /// The controls of the installation rooted at `home` (`home/control`).
    pub fn new(home: &Path) -> Controls {
        Controls {
            dir: home.join("control"),
        }
    }

    /// Controls read from an arbitrary directory.
    pub fn in_dir(dir: &Path) -> Controls {
        Controls {
            dir: dir.to_path_buf(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The first line of `name`, trailing white space stripped; `None` if missing.
    /// An empty file gives `Some("")`.
    pub fn line(&self, name: &str) -> io::Result<Option<String>> {
        Ok(read_optional(&self.path(name))?.map(|b| {
            let s = String::from_utf8_lossy(&b);
            trim_end(s.split('\n').next().unwrap_or("")).to_string()
        }))
    }

    /// `line(name)`, or `me`, or the literal `fallback` (qmail's rule for host names).
    pub fn line_or_me(&self, name: &str, fallback: &str) -> io::Result<String> {
        if let Some(v) = self.line(name)? {
            return Ok(v);
        }
        Ok(self.line("me")?.unwrap_or_else(|| fallback.to_string()))
    }

    /// A number, flag or choice control listed in [`known::KNOWN`], checked against
    /// its entry (range, policy, default). The caller logs `invalid` and honours `refuse`.
    pub fn number(&self, name: &str) -> io::Result<known::Checked> {
        let spec = spec_of(name)?;
        let default = known::numeric_default(spec)
            .ok_or_else(|| io::Error::other(format!("control/{name} has no numeric default")))?;
        self.check_with(spec, default)
    }

    /// [`Controls::number`] with a default the caller computes (`pop3plaintext`).
    pub fn number_or(&self, name: &str, default: u64) -> io::Result<known::Checked> {
        self.check_with(spec_of(name)?, default)
    }

    /// A choice control: the word in force, and the problem if the file held another.
    pub fn choice(&self, name: &str) -> io::Result<(&'static str, Option<known::Invalid>)> {
        let spec = spec_of(name)?;
        let c = self.number(name)?;
        let word = match spec.kind {
            known::Kind::Choice(words) => {
                words.get(c.value as usize).copied().unwrap_or(spec.default)
            }
            _ => spec.default,
        };
        Ok((word, c.invalid))
    }

    fn check_with(&self, spec: &known::Known, default: u64) -> io::Result<known::Checked> {
        Ok(known::check(
            spec,
            self.line(spec.name)?.as_deref(),
            default,
        ))
    }

    /// A number control through the typed reader, for programs that only need the value:
    /// a malformed or out-of-range value is logged on stderr (`PROG: warning: control/..`)
    /// and replaced as its table entry says; a file whose policy is to refuse is an error.
    /// No warning is written when stderr is the same file as stdout and not a terminal:
    /// qmail-remote and qmail-local report on that pipe, where a stray line would be
    /// read as the delivery's result.
    /// `default` applies only to a file missing from the table (then any digits pass);
    /// a known file gets the table's default.
    pub fn int(&self, name: &str, default: u64) -> io::Result<u64> {
        let loose = known::Known {
            name: "",
            kind: known::Kind::Number {
                min: 0,
                max: u64::MAX,
                unit: "",
            },
            default: "",
            readers: "",
            on_invalid: known::OnInvalid::Default,
        };
        let spec = known::known(name)
            .filter(|k| numeric_kind(&k.kind))
            .unwrap_or(&loose);
        // the table's default wins, so qmail-showctl shows what the program uses
        let default = known::numeric_default(spec).unwrap_or(default);
        let mut c = known::check(spec, self.line(name)?.as_deref(), default);
        if let Some(i) = c.invalid.as_mut() {
            i.file = name.to_string();
        }
        if c.refuse {
            let msg = c.invalid.map(|i| i.to_string()).unwrap_or_default();
            return Err(io::Error::new(io::ErrorKind::InvalidData, msg));
        }
        if stderr_is_a_log() {
            c.warn(&program_name());
        }
        Ok(c.value)
    }

    /// The items of a list control; `None` if the file is missing.
    pub fn list(&self, name: &str) -> io::Result<Option<Vec<String>>> {
        Ok(read_optional(&self.path(name))?.map(|b| parse_list(&String::from_utf8_lossy(&b))))
    }

    /// The items of a list control; empty if the file is missing.
    pub fn list_or_empty(&self, name: &str) -> io::Result<Vec<String>> {
        Ok(self.list(name)?.unwrap_or_default())
    }
}

fn numeric_kind(kind: &known::Kind) -> bool {
    matches!(
        kind,
        known::Kind::Number { .. } | known::Kind::Flag | known::Kind::Choice(_)
    )
}

fn spec_of(name: &str) -> io::Result<&'static known::Known> {
    known::known(name).ok_or_else(|| {
        io::Error::other(format!(
            "control/{name} is not in the table of known controls"
        ))
    })
}

/// Whether a warning on stderr reaches a log (or a terminal) rather than a protocol
/// channel shared with stdout (qmail-rspawn and qmail-lspawn give their children one
/// pipe for both).
fn stderr_is_a_log() -> bool {
    use std::io::IsTerminal;
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    if std::io::stderr().is_terminal() {
        return true;
    }
    let id = |fd: std::os::fd::BorrowedFd<'_>| {
        fd.try_clone_to_owned()
            .ok()
            .and_then(|o| std::fs::File::from(o).metadata().ok())
            .map(|m| (m.dev(), m.ino()))
    };
    match (id(std::io::stdout().as_fd()), id(std::io::stderr().as_fd())) {
        (Some(out), Some(err)) => out != err,
        (_, err) => err.is_some(),
    }
}

/// The name this process was started as, for warnings.
fn program_name() -> String {
    std::env::args_os()
        .next()
        .map(|a| {
            Path::new(&a)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        })
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "qmail".into())
}

/// Parse list-file text: one item per line, trailing white space stripped, empty lines
/// and `#` comments dropped.
pub fn parse_list(text: &str) -> Vec<String> {
    text.split('\n')
        .map(trim_end)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

/// Case-insensitive map from keys to values, built from list lines. A line `key:value`
/// maps key to value; a line without `:` maps to the empty value (a plain set member).
/// For duplicate keys the first line wins, as in qmail's constmap.
#[derive(Clone, Debug, Default)]
pub struct ConstMap {
    map: HashMap<String, String>,
}

impl ConstMap {
    /// A set: every line is a key.
    pub fn from_keys(lines: &[String]) -> ConstMap {
        let mut map = HashMap::new();
        for l in lines {
            map.entry(l.to_ascii_lowercase())
                .or_insert_with(String::new);
        }
        ConstMap { map }
    }

    /// A map of `key:value` lines (split at the first `:`); lines without `:` are ignored.
    pub fn from_pairs(lines: &[String]) -> ConstMap {
        let mut map = HashMap::new();
        for l in lines {
            if let Some((k, v)) = l.split_once(':') {
                map.entry(k.to_ascii_lowercase())
                    .or_insert_with(|| v.to_string());
            }
        }
        ConstMap { map }
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        if key.bytes().any(|b| b.is_ascii_uppercase()) {
            self.map.get(&key.to_ascii_lowercase()).map(String::as_str)
        } else {
            self.map.get(key).map(String::as_str)
        }
    }

    pub fn contains(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// qmail's domain lookup order: the whole `host`, then each suffix starting at a
    /// `.` inside it (`.b.c`, `.c`), then, if `with_default`, the empty key.
    pub fn lookup_domain(&self, host: &str, with_default: bool) -> Option<&str> {
        if let Some(v) = self.get(host) {
            return Some(v);
        }
        for (i, c) in host.char_indices() {
            if c == '.'
                && let Some(v) = self.get(&host[i..])
            {
                return Some(v);
            }
        }
        if with_default { self.get("") } else { None }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctl(files: &[(&str, &str)]) -> (tempfile::TempDir, Controls) {
        let d = tempfile::tempdir().unwrap();
        for (n, v) in files {
            std::fs::write(d.path().join(n), v).unwrap();
        }
        let c = Controls::in_dir(d.path());
        (d, c)
    }

    #[test]
    fn single_line_strips_trailing_space_and_takes_first_line() {
        let (_d, c) = ctl(&[("me", "mx.example.org \t\nsecond\n")]);
        assert_eq!(c.line("me").unwrap().as_deref(), Some("mx.example.org"));
        assert_eq!(c.line("missing").unwrap(), None);
    }

    #[test]
    fn int_defaults_when_missing_or_garbage() {
        let (_d, c) = ctl(&[("a", "42\n"), ("b", "x1\n")]);
        assert_eq!(c.int("a", 7).unwrap(), 42);
        assert_eq!(c.int("b", 7).unwrap(), 7);
        assert_eq!(c.int("c", 7).unwrap(), 7);
    }

    #[test]
    fn typed_reader_reports_and_refuses() {
        let (_d, c) = ctl(&[
            ("databytes", "10k\n"),
            ("concurrencyremote", "-5\n"),
            ("maxrcpt", "5\n"),
        ]);
        let e = c.int("databytes", 0).unwrap_err();
        assert!(
            e.to_string()
                .contains("control/databytes line 1: 10k is not allowed"),
            "{e}"
        );
        assert!(c.number("databytes").unwrap().refuse);
        let r = c.number("concurrencyremote").unwrap();
        assert_eq!(r.value, 20);
        assert!(r.invalid.is_some());
        assert_eq!(c.number("maxrcpt").unwrap().value, 5);
        assert_eq!(c.number("ratelimit").unwrap().value, 0);
        assert!(c.number("no-such-control").is_err());
        assert_eq!(c.choice("vquotapolicy").unwrap(), ("defer", None));
        assert_eq!(
            c.int("ratelimit", 77).unwrap(),
            0,
            "the table's default wins"
        );
        assert_eq!(c.int("unknown-number", 77).unwrap(), 77);
        std::fs::write(c.path("me"), "12\n").unwrap();
        assert_eq!(
            c.int("me", 77).unwrap(),
            12,
            "a text control read as a number"
        );
    }

    #[test]
    fn list_skips_comments_and_blank_lines() {
        let (_d, c) = ctl(&[("locals", "# comment\nexample.org\n\nEXAMPLE.net  \n")]);
        assert_eq!(
            c.list("locals").unwrap().unwrap(),
            vec!["example.org", "EXAMPLE.net"]
        );
    }

    #[test]
    fn line_or_me_falls_back() {
        let (_d, c) = ctl(&[("me", "host.example\n")]);
        assert_eq!(
            c.line_or_me("bouncehost", "bouncehost").unwrap(),
            "host.example"
        );
        let (_d2, c2) = ctl(&[]);
        assert_eq!(
            c2.line_or_me("bouncehost", "bouncehost").unwrap(),
            "bouncehost"
        );
    }

    #[test]
    fn constmap_is_case_insensitive_and_first_wins() {
        let m = ConstMap::from_pairs(&["Example.COM:joe".into(), "example.com:other".into()]);
        assert_eq!(m.get("EXAMPLE.com"), Some("joe"));
        let s = ConstMap::from_keys(&["Local.Test".into()]);
        assert!(s.contains("local.test"));
    }

    #[test]
    fn domain_lookup_order() {
        let m = ConstMap::from_pairs(&[
            ".af.mil:relay1".into(),
            "x.af.mil:relay2".into(),
            ":smarthost".into(),
        ]);
        assert_eq!(m.lookup_domain("x.af.mil", true), Some("relay2"));
        assert_eq!(m.lookup_domain("y.af.mil", true), Some("relay1"));
        assert_eq!(m.lookup_domain("af.mil", true), Some("smarthost"));
        assert_eq!(m.lookup_domain("af.mil", false), None);
    }
}
