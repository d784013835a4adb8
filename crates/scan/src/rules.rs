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

use regex::bytes::Regex;

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
    Regex(Subject, Regex),
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
            Some(spec) => Match::Regex(parse_subject(spec)?, compile(first)?),
            None => {
                let size = parse_size(second)?;
                let lower = first.to_lowercase();
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
    let lower = s.to_ascii_lowercase();
    let rest_at = if lower.starts_with("virus-") {
        6
    } else if lower.starts_with("policy-") {
        7
    } else {
        return None;
    };
    let rest = &s[rest_at..];
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

/// Compile a rule's regex, anchored. Matching is on bytes with ASCII classes (`.` is one
/// byte, `(?i)` folds ASCII): a Unicode `.{100,}` costs a millisecond to build, and this
/// runs once per message. `(?u)` in a pattern turns Unicode classes back on.
fn compile(pattern: &str) -> Result<Regex, String> {
    regex::bytes::RegexBuilder::new(&format!("^(?:{pattern})$"))
        .unicode(false)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| {
            let first = e.to_string();
            let short = first.lines().last().unwrap_or("").trim().to_string();
            format!("bad regex: {}", qsys::logsafe::text(short.as_bytes()))
        })
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
}
