//! `control/scanrules`: qmail-scanner's TAB-separated rules file with the stricter grammar
//! of wave2.md 1.3, plus an optional 4th column choosing the action.
//!
//! ```text
//! # comment; blank lines ignored; fields are separated by runs of TABs
//! .ext      0|-1|SIZE=-1   remark [action]   attachment name ends with .ext (any case), any size
//! name      SIZE           remark [action]   exact name (any case) and exact decoded size
//! REGEX     Virus-HDR:     remark [action]   REGEX (anchored ^(?:REGEX)$, case-sensitive,
//!                                            on bytes with ASCII classes; `(?u)` for
//!                                            Unicode) against each occurrence of header HDR
//! @check    0              remark [action]   remark and action of a built-in check
//! ```
//! `Policy-` is accepted for `Virus-`. HDR is a header name (case-insensitive) or one of
//! the pseudo-headers `MAILFROM` (envelope sender), `To`/`RCPTTO` (each envelope
//! recipient), `TCPREMOTEIP`, `HELO`. `Content-Type` is special: it is matched against
//! the `type/subtype` (lower case) of every MIME part at any depth, so
//! `message/partial<TAB>Virus-Content-Type:` catches fragments (the colon is optional).
//! The action is `quarantine` (accept, keep a copy, notify the administrator: the
//! default for every rule) or `refuse` (554 with the remark, nothing queued).
//! Built-in checks ([`Builtin`]) run whatever the file says; an `@` line only changes
//! their remark and action (`@virus` defaults to `refuse`). A line that does not parse is
//! an error naming its line number: a rules file is never half-loaded.
//!
//! A regex is parsed at load (so a bad one is refused with its line) but compiled only
//! when a value could match it ([`Pattern`]): compiling costs up to ~300,000
//! instructions per rule (`.{100,}`), more than the rest of a clean message's scan, and
//! most messages never need most rules.

use regex::bytes::Regex;
use regex_syntax::hir::{Class, Hir, HirKind, Look};
use std::sync::OnceLock;

/// What to do with a message a rule matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Accept (250), store in the quarantine, notify the administrator, deliver nothing.
    Quarantine,
    /// Refuse at SMTP: 554 with the remark, nothing queued.
    Refuse,
}

/// Checks built into qmail-scan; each has a name usable as `@name` in the rules file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Builtin {
    /// Executable content (PE, ELF, MSI/OLE installer, CAB, LNK) whatever its name.
    Executable,
    /// A name like `invoice.pdf.exe`: a harmless-looking extension before a dangerous one.
    DoubleExtension,
    /// Archive or MIME nesting over the depth, member count, expanded size or ratio limits.
    Limits,
    /// An encrypted archive member (nothing can look inside).
    Encrypted,
    /// An attachment or member name that cannot be decoded.
    UndecodableName,
    /// A zip, gzip or tar archive that cannot be read to the end.
    BadArchive,
    /// clamd found a virus.
    Virus,
}

impl Builtin {
    pub const ALL: [Builtin; 7] = [
        Builtin::Executable,
        Builtin::DoubleExtension,
        Builtin::Limits,
        Builtin::Encrypted,
        Builtin::UndecodableName,
        Builtin::BadArchive,
        Builtin::Virus,
    ];

    /// The `@name` of the check.
    pub fn name(self) -> &'static str {
        match self {
            Builtin::Executable => "executable",
            Builtin::DoubleExtension => "double-extension",
            Builtin::Limits => "limits",
            Builtin::Encrypted => "encrypted",
            Builtin::UndecodableName => "undecodable-name",
            Builtin::BadArchive => "bad-archive",
            Builtin::Virus => "virus",
        }
    }

    fn default_remark(self) -> &'static str {
        match self {
            Builtin::Executable => "executable content not allowed",
            Builtin::DoubleExtension => "attachment with a double extension not allowed",
            Builtin::Limits => "archive or MIME nesting over the scanner's limits",
            Builtin::Encrypted => "encrypted archive not allowed",
            Builtin::UndecodableName => "attachment name cannot be decoded",
            Builtin::BadArchive => "archive cannot be read",
            Builtin::Virus => "virus found",
        }
    }

    fn default_action(self) -> Action {
        match self {
            Builtin::Virus => Action::Refuse,
            _ => Action::Quarantine,
        }
    }
}

/// The value a header rule looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// A header of the message (lower-case name without the colon).
    Header(String),
    /// The `type/subtype` of each MIME part.
    ContentType,
    MailFrom,
    Rcpt,
    RemoteIp,
    Helo,
}

/// What a rule matches.
#[derive(Debug, Clone)]
pub enum Match {
    /// Attachment name ends with this (lower case, with the dot); size as in `size`.
    Extension(String, Option<u64>),
    /// Exact attachment name (lower case) with exact size (`None`: any size).
    Name(String, Option<u64>),
    /// Anchored regex against a header, a part's type, or an envelope field.
    Regex(Subject, Pattern),
}

/// One line of the rules file.
#[derive(Debug, Clone)]
pub struct Rule {
    /// 1-based line number in the file.
    pub line: usize,
    /// The first column as written (what the log and the quarantine record say).
    pub text: String,
    pub what: Match,
    pub remark: String,
    pub action: Action,
}

/// A built-in check's remark and action after `@` lines were applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltinSetting {
    pub remark: String,
    pub action: Action,
}

/// A loaded rules file.
#[derive(Debug, Clone)]
pub struct Rules {
    pub rules: Vec<Rule>,
    builtins: Vec<(Builtin, BuiltinSetting)>,
}

impl Default for Rules {
    fn default() -> Rules {
        Rules {
            rules: Vec::new(),
            builtins: Builtin::ALL
                .iter()
                .map(|b| {
                    (
                        *b,
                        BuiltinSetting {
                            remark: b.default_remark().to_string(),
                            action: b.default_action(),
                        },
                    )
                })
                .collect(),
        }
    }
}

/// Why a rules file was refused: the line and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError {
    pub line: usize,
    pub reason: String,
}

impl std::fmt::Display for RuleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.reason)
    }
}

/// Compiled regexes are capped so a rule cannot make loading slow or huge.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

impl Rules {
    /// Parse a whole rules file; the first bad line is the error.
    pub fn parse(text: &str) -> Result<Rules, RuleError> {
        let mut rules = Rules::default();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let content = raw.trim_end_matches('\r');
            if content.trim().is_empty() || content.trim_start().starts_with('#') {
                continue;
            }
            rules
                .add_line(line, content)
                .map_err(|reason| RuleError { line, reason })?;
        }
        Ok(rules)
    }

    /// The remark and action of a built-in check.
    pub fn builtin(&self, b: Builtin) -> BuiltinSetting {
        self.builtins
            .iter()
            .find(|(k, _)| *k == b)
            .map(|(_, s)| s.clone())
            .unwrap_or(BuiltinSetting {
                remark: b.default_remark().to_string(),
                action: b.default_action(),
            })
    }

    fn add_line(&mut self, line: usize, content: &str) -> Result<(), String> {
        let fields: Vec<&str> = content.split('\t').filter(|f| !f.is_empty()).collect();
        let (first, second, remark, action) = match fields.as_slice() {
            [a, b, c] => (*a, *b, *c, Action::Quarantine),
            [a, b, c, d] => (*a, *b, *c, parse_action(d)?),
            _ => {
                return Err(format!(
                    "expected 3 or 4 TAB-separated fields, found {}",
                    fields.len()
                ));
            }
        };
        let remark = remark.trim();
        if first.trim() != first || first.is_empty() {
            return Err("first field has leading or trailing spaces".into());
        }
        if remark.is_empty() {
            return Err("empty remark".into());
        }
        let second = second.trim();
        if let Some(name) = first.strip_prefix('@') {
            let b = Builtin::ALL
                .iter()
                .find(|b| b.name() == name)
                .ok_or_else(|| format!("unknown built-in check @{name}"))?;
            if parse_size(second)?.is_some() {
                return Err(format!("built-in check @{name} takes size 0"));
            }
            let setting = BuiltinSetting {
                remark: remark.to_string(),
                action,
            };
            for (k, s) in self.builtins.iter_mut() {
                if k == b {
                    *s = setting.clone();
                }
            }
            return Ok(());
        }
        let what = match header_spec(second) {
            Some(spec) => Match::Regex(parse_subject(spec)?, Pattern::new(first)?),
            None => {
                let size = parse_size(second)?;
                let lower = if first.is_ascii() {
                    first.to_ascii_lowercase()
                } else {
                    first.to_lowercase()
                };
                if lower.starts_with('.') {
                    Match::Extension(lower, size)
                } else {
                    // An exact name with "any size" is allowed (qmail-scanner 2's SIZE=-1).
                    Match::Name(lower, if second == "0" { Some(0) } else { size })
                }
            }
        };
        self.rules.push(Rule {
            line,
            text: first.to_string(),
            what,
            remark: remark.to_string(),
            action,
        });
        Ok(())
    }
}

fn parse_action(s: &str) -> Result<Action, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "quarantine" => Ok(Action::Quarantine),
        "refuse" => Ok(Action::Refuse),
        other => Err(format!(
            "action must be quarantine or refuse, not {}",
            qsys::logsafe::text(other.as_bytes())
        )),
    }
}

/// `0`, `-1`, `SIZE=-1` = any size (`None`); a positive decimal = that exact size.
fn parse_size(s: &str) -> Result<Option<u64>, String> {
    match s {
        "0" | "-1" | "SIZE=-1" => Ok(None),
        _ => s
            .parse::<u64>()
            .map(Some)
            .map_err(|_| "second field is neither a size nor Virus-HEADER:".to_string()),
    }
}

/// `Virus-Date:` / `Policy-Date:` gives `Date`; the colon may be left out.
fn header_spec(s: &str) -> Option<&str> {
    let after = |prefix: &str| {
        let head = s.as_bytes().get(..prefix.len())?;
        head.eq_ignore_ascii_case(prefix.as_bytes())
            .then(|| s.get(prefix.len()..))
            .flatten()
    };
    let rest = after("virus-").or_else(|| after("policy-"))?;
    Some(rest.strip_suffix(':').unwrap_or(rest))
}

fn parse_subject(name: &str) -> Result<Subject, String> {
    let valid = !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic() && b != b':');
    if !valid {
        return Err("header name missing or invalid after Virus-".into());
    }
    Ok(match name.to_ascii_lowercase().as_str() {
        "mailfrom" => Subject::MailFrom,
        "to" | "rcptto" => Subject::Rcpt,
        "tcpremoteip" => Subject::RemoteIp,
        "helo" => Subject::Helo,
        "content-type" => Subject::ContentType,
        other => Subject::Header(other.to_string()),
    })
}

/// A rule's regex, anchored (`^(?:REGEX)$`). Matching is on bytes with ASCII classes
/// (`.` is one byte, `(?i)` folds ASCII): a Unicode `.{100,}` costs a millisecond to
/// build. `(?u)` in a pattern turns Unicode classes back on.
///
/// Parsed at load; compiled at the first value that could match: a pattern that is one
/// literal is compared as bytes, a value shorter than the shortest match or longer than
/// the longest is no match, without compiling. A pattern whose compiled size could come
/// near [`REGEX_SIZE_LIMIT`] is compiled at load, so that a rule over the limit is a load
/// error naming its line, as any other bad rule.
#[derive(Debug, Clone)]
pub struct Pattern {
    anchored: String,
    literal: Option<Vec<u8>>,
    /// `None`: nothing can match.
    min_len: Option<usize>,
    /// `None`: no upper bound.
    max_len: Option<usize>,
    /// `None` inside: the compile failed (see [`Pattern::is_match`]).
    compiled: OnceLock<Option<Regex>>,
}

/// Patterns estimated ([`size_units`]) above this are compiled at load. Far below what
/// [`REGEX_SIZE_LIMIT`] allows: a pattern left for later always compiles.
const LAZY_UNITS: u64 = 2000;

impl Pattern {
    fn new(pattern: &str) -> Result<Pattern, String> {
        let anchored = format!("^(?:{pattern})$");
        if !pattern.is_empty() && !pattern.chars().any(regex_syntax::is_meta_character) {
            // no meta character: the pattern is its own bytes (message/partial)
            return Ok(Pattern {
                literal: Some(pattern.as_bytes().to_vec()),
                min_len: Some(pattern.len()),
                max_len: Some(pattern.len()),
                compiled: OnceLock::new(),
                anchored,
            });
        }
        // regex::bytes with unicode(false) parses with exactly these settings
        let hir = regex_syntax::ParserBuilder::new()
            .unicode(false)
            .utf8(false)
            .build()
            .parse(&anchored)
            .map_err(|e| bad_regex(&e.to_string()))?;
        let p = Pattern {
            literal: literal_of(&hir),
            min_len: hir.properties().minimum_len(),
            max_len: hir.properties().maximum_len(),
            compiled: OnceLock::new(),
            anchored,
        };
        if p.literal.is_none() && size_units(&hir) > LAZY_UNITS {
            let _ = p.compiled.set(Some(compile(&p.anchored)?));
        }
        Ok(p)
    }

    /// Does `value` match? A pattern that fails to compile now (it parsed at load, and
    /// was small enough to leave for later, so this is not expected) counts as a match:
    /// the rule's action applies rather than the rule being skipped.
    pub fn is_match(&self, value: &[u8]) -> bool {
        if let Some(l) = &self.literal {
            return value == l.as_slice();
        }
        let Some(min) = self.min_len else {
            return false;
        };
        if value.len() < min || self.max_len.is_some_and(|max| value.len() > max) {
            return false;
        }
        self.compiled
            .get_or_init(|| compile(&self.anchored).ok())
            .as_ref()
            .is_none_or(|re| re.is_match(value))
    }

    /// Whether the regex was compiled (at load, or for a value).
    pub fn is_compiled(&self) -> bool {
        self.compiled.get().is_some()
    }
}

/// The bytes of an anchored pattern that is one literal (`^literal$`).
fn literal_of(hir: &Hir) -> Option<Vec<u8>> {
    let HirKind::Concat(parts) = hir.kind() else {
        return None;
    };
    match parts.as_slice() {
        [start, middle, end]
            if *start.kind() == HirKind::Look(Look::Start)
                && *end.kind() == HirKind::Look(Look::End) =>
        {
            match middle.kind() {
                HirKind::Literal(l) => Some(l.0.to_vec()),
                _ => None,
            }
        }
        _ => None,
    }
}

/// A generous estimate of the compiled size: one unit per literal byte, look-around
/// and byte range (four per Unicode range, for its UTF-8 sequences), multiplied out
/// by repetitions.
fn size_units(hir: &Hir) -> u64 {
    match hir.kind() {
        HirKind::Empty | HirKind::Look(_) => 1,
        HirKind::Literal(l) => l.0.len() as u64,
        HirKind::Class(Class::Bytes(c)) => c.ranges().len() as u64,
        HirKind::Class(Class::Unicode(c)) => (c.ranges().len() as u64).saturating_mul(4),
        HirKind::Repetition(r) => {
            let copies = u64::from(r.max.unwrap_or(r.min).max(1)) + u64::from(r.max.is_none());
            copies.saturating_mul(size_units(&r.sub))
        }
        HirKind::Capture(c) => size_units(&c.sub),
        HirKind::Concat(v) | HirKind::Alternation(v) => {
            v.iter().map(size_units).fold(0, u64::saturating_add)
        }
    }
}

fn bad_regex(error: &str) -> String {
    let short = error.lines().last().unwrap_or("").trim().to_string();
    format!("bad regex: {}", qsys::logsafe::text(short.as_bytes()))
}

/// Compile an anchored pattern (regex's own limits, [`REGEX_SIZE_LIMIT`]).
fn compile(anchored: &str) -> Result<Regex, String> {
    regex::bytes::RegexBuilder::new(anchored)
        .unicode(false)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| bad_regex(&e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_default_file_loads() {
        let text = include_str!("../../../control/scanrules");
        let rules = Rules::parse(text).expect("default rules parse");
        assert!(rules.rules.len() > 40);
        assert!(rules.rules.iter().any(|r| r.text == ".scr"));
        assert!(
            rules
                .rules
                .iter()
                .any(|r| matches!(&r.what, Match::Regex(Subject::ContentType, _)))
        );
    }

    #[test]
    fn good_lines_of_each_form() {
        let text = "# c\n\n.EXE\t0\tno exe\n.vbs\t\t\t-1\t\tVBS\trefuse\nworm.zip\t1234\tknown worm\n\
                    ok.txt\tSIZE=-1\tany size\n.{100,}\t\t\tVirus-Date:\t\tMIME Header Buffer Overflow\n\
                    message/partial\tVirus-Content-Type\tpartial\nPickles.*\tPolicy-Subject:\tp\tquarantine\n\
                    .*@spam\\.example\tVirus-MAILFROM:\tbad sender\n@virus\t0\tinfected\tquarantine\n";
        let r = Rules::parse(text).unwrap();
        assert_eq!(r.rules.len(), 8);
        assert!(matches!(&r.rules[0].what, Match::Extension(e, None) if e == ".exe"));
        assert_eq!(r.rules[0].line, 3);
        assert_eq!(r.rules[1].action, Action::Refuse);
        assert!(matches!(&r.rules[2].what, Match::Name(n, Some(1234)) if n == "worm.zip"));
        assert!(matches!(&r.rules[3].what, Match::Name(_, None)));
        assert!(matches!(&r.rules[4].what, Match::Regex(Subject::Header(h), _) if h == "date"));
        assert!(matches!(
            &r.rules[5].what,
            Match::Regex(Subject::ContentType, _)
        ));
        assert!(matches!(
            &r.rules[7].what,
            Match::Regex(Subject::MailFrom, _)
        ));
        assert_eq!(r.builtin(Builtin::Virus).action, Action::Quarantine);
        assert_eq!(r.builtin(Builtin::Virus).remark, "infected");
        assert_eq!(r.builtin(Builtin::Executable).action, Action::Quarantine);
    }

    #[test]
    fn regex_is_anchored_and_case_sensitive() {
        let r = Rules::parse("Pickles.*Breakfast\tVirus-Subject:\tp\n").unwrap();
        let Match::Regex(_, re) = &r.rules[0].what else {
            panic!("not a regex rule")
        };
        assert!(re.is_match(b"Pickles for Breakfast"));
        assert!(!re.is_match(b"Pickles - where did you go?"));
        assert!(!re.is_match(b"Re: Pickles for Breakfast"));
        assert!(!re.is_match(b"pickles for breakfast"));
        // An alternation cannot escape the anchors.
        let r = Rules::parse("a|b\tVirus-Subject:\tp\n").unwrap();
        let Match::Regex(_, re) = &r.rules[0].what else {
            panic!("not a regex rule")
        };
        assert!(!re.is_match(b"xa") && !re.is_match(b"bx") && re.is_match(b"b"));
        // Non-ASCII text in a pattern matches its UTF-8 bytes; (?u) gives Unicode classes.
        let r = Rules::parse("Caf\u{e9} .*\tVirus-Subject:\tp\n(?u)\\w{3}\tVirus-Subject:\tq\n")
            .unwrap();
        let Match::Regex(_, re) = &r.rules[0].what else {
            panic!("not a regex rule")
        };
        assert!(re.is_match("Caf\u{e9} au lait".as_bytes()));
        let Match::Regex(_, re) = &r.rules[1].what else {
            panic!("not a regex rule")
        };
        assert!(re.is_match("\u{e9}t\u{e9}".as_bytes()));
    }

    #[test]
    fn bad_lines_are_errors_naming_the_line() {
        let cases = [
            ("# ok\n.exe\t0\n", 2, "fields"),
            (".exe\t0\tx\trefuse\textra\n", 1, "fields"),
            ("\n\nfoo\tbar\tx\n", 3, "neither a size"),
            ("(unclosed\tVirus-Subject:\tx\n", 1, "bad regex"),
            ("x\tVirus-:\tx\n", 1, "header name"),
            (".exe\t0\tx\tdelete\n", 1, "action"),
            ("@nosuch\t0\tx\n", 1, "unknown built-in"),
            (".exe\t0\t \n", 1, "empty remark"),
            (".exe 0 spaces not tabs\n", 1, "fields"),
            ("a{1000}{1000}\tVirus-Subject:\tx\n", 1, "bad regex"),
        ];
        for (text, line, what) in cases {
            let e = Rules::parse(text).expect_err(text);
            assert_eq!(e.line, line, "{text:?}");
            assert!(e.reason.contains(what), "{text:?}: {}", e.reason);
        }
    }

    fn pattern_of(rules: &Rules, i: usize) -> &Pattern {
        match &rules.rules[i].what {
            Match::Regex(_, p) => p,
            _ => panic!("rule {i} is not a regex rule"),
        }
    }

    #[test]
    fn regexes_are_compiled_only_when_a_value_could_match() {
        let text = include_str!("../../../control/scanrules");
        let rules = Rules::parse(text).unwrap();
        let regexes: Vec<&Pattern> = (0..rules.rules.len())
            .filter(|&i| matches!(rules.rules[i].what, Match::Regex(..)))
            .map(|i| pattern_of(&rules, i))
            .collect();
        assert!(regexes.len() >= 4);
        assert!(regexes.iter().all(|p| !p.is_compiled()), "none at load");
        // a usual Date, a part's type: no compile
        for p in &regexes {
            assert!(!p.is_match(b"Sun, 6 Dec 2026 07:00:00 +0000"));
            assert!(!p.is_match(b"text/plain"));
        }
        assert!(regexes.iter().all(|p| !p.is_compiled()));
        // message/partial is a literal: compared, never compiled
        assert!(regexes.iter().any(|p| p.is_match(b"message/partial")));
        assert!(regexes.iter().all(|p| !p.is_compiled()));
        // a 200-byte value reaches .{100,}
        assert!(regexes.iter().any(|p| p.is_match(&[b'x'; 200])));
        assert!(regexes.iter().any(|p| p.is_compiled()));
    }

    #[test]
    fn lazy_matching_agrees_with_the_compiled_regex() {
        let patterns = [
            "message/partial",
            "a b",
            "Caf\u{e9} au lait",
            ".{100,}",
            ".{3,5}",
            "Pickles.*Breakfast",
            "a|bc",
            "(?i)hello",
            "x?",
            "",
            "[^\\x00-\\xff]",
            "Caf\u{e9}",
            "(?u)\\w{3}",
            "\\d+\\.\\d+\\.\\d+\\.\\d+",
            "a\\nb",
        ];
        let values: [&[u8]; 16] = [
            b"",
            b"x",
            b"a",
            b"bc",
            b"abc",
            b"HeLLo",
            b"message/partial",
            b"message/partialx",
            b"Pickles for Breakfast",
            b"192.0.2.1",
            "Caf\u{e9}".as_bytes(),
            "\u{e9}t\u{e9}".as_bytes(),
            b"a\nb",
            b"a b",
            "Caf\u{e9} au lait".as_bytes(),
            &[b'y'; 150],
        ];
        for pat in patterns {
            let lazy = Pattern::new(pat).unwrap();
            let eager = compile(&format!("^(?:{pat})$")).unwrap();
            for v in values {
                assert_eq!(lazy.is_match(v), eager.is_match(v), "{pat:?} on {v:?}");
            }
        }
    }

    #[test]
    fn big_patterns_are_compiled_at_load() {
        let r = Rules::parse("a{1500}b{1500}\tVirus-Subject:\tbig\n").unwrap();
        assert!(pattern_of(&r, 0).is_compiled());
        let r = Rules::parse("a{5}\tVirus-Subject:\tsmall\n").unwrap();
        assert!(!pattern_of(&r, 0).is_compiled());
    }
}
