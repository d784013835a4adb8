//! The table of known control files and the one typed reader for numeric and enumerated
//! ones (issue 12, "Silent mistakes").
//!
//! Every control file a program or run script reads is listed in [`KNOWN`] with its
//! reader, kind, default and what a malformed value does. Programs read numbers, 0/1 flags
//! and choices through [`check`] (via `Controls::number`, `Controls::choice` and
//! `Controls::int`); `qmail-showctl` prints the same table, so the two cannot drift.
//!
//! A value is the file's first line without leading and trailing white space. An empty
//! or missing file means the default. A number is decimal digits only (`10k`, `-5`, `abc`
//! and `1e6` are malformed); a flag is `0` or `1`; a choice is one of its words. A
//! malformed value gets the file's [`OnInvalid`] policy; a number out of range is replaced
//! by the nearest allowed one. Either way the caller gets an [`Invalid`] to log.

use std::fmt;

/// What a control file holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A decimal number within `min..=max`; `unit` says what it counts.
    Number {
        min: u64,
        max: u64,
        unit: &'static str,
    },
    /// `0` or `1`.
    Flag,
    /// One of these words.
    Choice(&'static [&'static str]),
    /// A single line of text (a host name, an address).
    Line,
    /// One item per line.
    List,
    /// A file read whole or by another program (cdb, PEM, tcprules text).
    File,
}

/// What a malformed number, flag or choice means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnInvalid {
    /// The default applies.
    Default,
    /// This value applies (the safe one, e.g. `tlsrequired` = 1).
    Use(u64),
    /// The program refuses to work with it (qmail-smtpd: 451 to every session).
    Refuse,
}

/// One known control file.
#[derive(Clone, Copy, Debug)]
pub struct Known {
    pub name: &'static str,
    pub kind: Kind,
    /// For numbers and flags the default value in decimal; for choices the default
    /// word; otherwise a description.
    pub default: &'static str,
    /// The programs (or run scripts) that read it.
    pub readers: &'static str,
    pub on_invalid: OnInvalid,
}

const fn num(
    name: &'static str,
    min: u64,
    max: u64,
    unit: &'static str,
    default: &'static str,
    readers: &'static str,
) -> Known {
    Known {
        name,
        kind: Kind::Number { min, max, unit },
        default,
        readers,
        on_invalid: OnInvalid::Default,
    }
}

const fn text(
    name: &'static str,
    kind: Kind,
    default: &'static str,
    readers: &'static str,
) -> Known {
    Known {
        name,
        kind,
        default,
        readers,
        on_invalid: OnInvalid::Default,
    }
}

const fn flag(
    name: &'static str,
    default: &'static str,
    readers: &'static str,
    on_invalid: OnInvalid,
) -> Known {
    Known {
        name,
        kind: Kind::Flag,
        default,
        readers,
        on_invalid,
    }
}

const MAXU: u64 = u64::MAX;
const DAY: u64 = 86_400;

/// Every control file of every program, in the order `qmail-showctl` prints them.
pub const KNOWN: &[Known] = &[
    text(
        "me",
        Kind::Line,
        "(none: qmail-send refuses to start without me or locals)",
        "all",
    ),
    text("locals", Kind::List, "me", "qmail-send"),
    text("virtualdomains", Kind::List, "(none)", "qmail-send"),
    text("percenthack", Kind::List, "(none)", "qmail-send"),
    text("envnoathost", Kind::Line, "me", "qmail-send"),
    num(
        "queuelifetime",
        0,
        10 * 365 * DAY,
        "seconds",
        "604800",
        "qmail-send",
    ),
    num("concurrencylocal", 1, 120, "deliveries", "10", "qmail-send"),
    num(
        "concurrencyremote",
        1,
        120,
        "deliveries",
        "20",
        "qmail-send",
    ),
    text("bouncefrom", Kind::Line, "MAILER-DAEMON", "qmail-send"),
    text("bouncehost", Kind::Line, "me", "qmail-send"),
    text("doublebounceto", Kind::Line, "postmaster", "qmail-send"),
    text("doublebouncehost", Kind::Line, "me", "qmail-send"),
    text(
        "defaultdelivery",
        Kind::Line,
        "./Maildir/",
        "qmail-send run script",
    ),
    text("helohost", Kind::Line, "me", "qmail-remote"),
    text(
        "smtproutes",
        Kind::List,
        "(none: MX lookups)",
        "qmail-remote",
    ),
    text(
        "nameservers",
        Kind::List,
        "/etc/resolv.conf",
        "qmail-remote",
    ),
    num("timeoutconnect", 1, DAY, "seconds", "60", "qmail-remote"),
    num("timeoutremote", 1, DAY, "seconds", "1200", "qmail-remote"),
    text(
        "defaultdomain",
        Kind::Line,
        "me minus its first label",
        "qmail-inject",
    ),
    text("defaulthost", Kind::Line, "me", "qmail-inject"),
    text("plusdomain", Kind::Line, "me", "qmail-inject"),
    text("idhost", Kind::Line, "me", "qmail-inject"),
    text("smtpgreeting", Kind::Line, "me", "qmail-smtpd"),
    text("localiphost", Kind::Line, "me", "qmail-smtpd"),
    num("timeoutsmtpd", 1, DAY, "seconds", "1200", "qmail-smtpd"),
    text(
        "rcpthosts",
        Kind::List,
        "(none: no domain accepted)",
        "qmail-smtpd",
    ),
    text("morercpthosts", Kind::List, "(none)", "qmail-newmrh"),
    text("morercpthosts.cdb", Kind::File, "(none)", "qmail-smtpd"),
    text("badmailfrom", Kind::List, "(none)", "qmail-smtpd"),
    text("badrcptto", Kind::List, "(none)", "qmail-smtpd"),
    Known {
        name: "databytes",
        kind: Kind::Number {
            min: 0,
            max: MAXU,
            unit: "bytes, 0 = no limit",
        },
        default: "0",
        readers: "qmail-smtpd",
        on_invalid: OnInvalid::Refuse,
    },
    num("maxrcpt", 1, 100_000, "recipients", "1000", "qmail-smtpd"),
    text(
        "recipients.cdb",
        Kind::File,
        "(none: no check)",
        "qmail-smtpd",
    ),
    text("recipients", Kind::List, "(none)", "qmail-recipients"),
    text(
        "servercert.pem",
        Kind::File,
        "(none: no TLS)",
        "qmail-smtpd, qmail-popup",
    ),
    text(
        "serverkey.pem",
        Kind::File,
        "(none: key in servercert.pem)",
        "qmail-smtpd, qmail-popup",
    ),
    flag("tlsrequired", "0", "qmail-smtpd", OnInvalid::Use(1)),
    flag("authcrammd5", "0", "qmail-smtpd", OnInvalid::Default),
    num("authfaildelay", 0, 60, "seconds", "5", "qmail-smtpd"),
    num(
        "authfaillimit",
        0,
        1_000_000,
        "failures per hour, 0 = none",
        "10",
        "qmail-smtpd, qmail-popup",
    ),
    num(
        "authfailaccountlimit",
        0,
        1_000_000,
        "failures per hour, 0 = none",
        "20",
        "qmail-smtpd, qmail-popup",
    ),
    text("sendermap", Kind::List, "(none)", "qmail-smtpd"),
    num(
        "ratelimit",
        0,
        u32::MAX as u64,
        "recipients per hour, 0 = none",
        "0",
        "qmail-smtpd",
    ),
    text(
        "filters",
        Kind::List,
        "(none: no filter)",
        "qmail-qfilter, run scripts",
    ),
    num(
        "filtermemory",
        1 << 20,
        MAXU,
        "bytes",
        "536870912",
        "qmail-qfilter",
    ),
    num("filtertimeout", 1, DAY, "seconds", "300", "qmail-qfilter"),
    flag(
        "pop3plaintext",
        "1 without servercert.pem, 0 with it",
        "qmail-popup",
        OnInvalid::Use(0),
    ),
    num("pop3authdelay", 0, 60, "seconds", "2", "qmail-popup"),
    num("pop3authmax", 1, 100, "failed logins", "3", "qmail-popup"),
    num(
        "timeoutpop3d",
        1,
        DAY,
        "seconds",
        "1200",
        "qmail-popup, qmail-pop3d",
    ),
    text(
        "nologinshells",
        Kind::List,
        "/usr/sbin/nologin /sbin/nologin /bin/false /usr/bin/false",
        "checkpassword",
    ),
    num("checkpassworddelay", 0, 10, "seconds", "1", "checkpassword"),
    num("vpassminlen", 1, 1024, "characters", "10", "qmail-vuser"),
    num(
        "vpassclasses",
        0,
        4,
        "character classes",
        "3",
        "qmail-vuser",
    ),
    Known {
        name: "vquotapolicy",
        kind: Kind::Choice(&["defer", "bounce"]),
        default: "defer",
        readers: "qmail-vdeliver",
        on_invalid: OnInvalid::Default,
    },
    text(
        "listenaddress",
        Kind::Line,
        "0 (every address)",
        "run scripts",
    ),
    num(
        "smtpdport",
        0,
        65_535,
        "port, 0 = any free one",
        "25",
        "qmail-smtpd run script",
    ),
    num(
        "submissionport",
        0,
        65_535,
        "port, 0 = any free one",
        "587",
        "qmail-submission run script",
    ),
    num(
        "smtpsport",
        0,
        65_535,
        "port, 0 = any free one",
        "465",
        "qmail-smtps run script",
    ),
    num(
        "pop3dport",
        0,
        65_535,
        "port, 0 = any free one",
        "110",
        "qmail-pop3d run script",
    ),
    num(
        "pop3dsport",
        0,
        65_535,
        "port, 0 = any free one",
        "995",
        "qmail-pop3ds run script",
    ),
    num(
        "concurrencyincoming",
        1,
        65_535,
        "sessions",
        "40",
        "qmail-smtpd run script",
    ),
    num(
        "concurrencysubmission",
        1,
        65_535,
        "sessions",
        "40",
        "submission, smtps run scripts",
    ),
    num(
        "concurrencypop3",
        1,
        65_535,
        "sessions",
        "40",
        "pop3d, pop3ds run scripts",
    ),
    num(
        "softlimit",
        1 << 20,
        MAXU,
        "bytes",
        "100000000",
        "run scripts",
    ),
    num(
        "listenbacklog",
        0,
        65_535,
        "clients, 0 = 4 x concurrency, at least 256",
        "0",
        "run scripts",
    ),
    text("tcp.smtp", Kind::File, "(none)", "qmail-smtpd run script"),
    text("tcp.smtp.cdb", Kind::File, "(none)", "tcpserver"),
    text(
        "tcp.submission",
        Kind::File,
        "(none)",
        "submission, smtps run scripts",
    ),
    text("tcp.submission.cdb", Kind::File, "(none)", "tcpserver"),
    text(
        "tcp.pop3",
        Kind::File,
        "(none)",
        "pop3d, pop3ds run scripts",
    ),
    text("tcp.pop3.cdb", Kind::File, "(none)", "tcpserver"),
    // qmail-guard (log-driven blocking; crates/guard, INSTALL.md "Blocking from the logs")
    num(
        "guardwarn",
        0,
        u32::MAX as u64,
        "messages per window from one sender, 0 = no warnings",
        "0",
        "qmail-guard",
    ),
    num(
        "guardblock",
        0,
        u32::MAX as u64,
        "messages per window from one sender, 0 = senders never blocked",
        "0",
        "qmail-guard",
    ),
    num(
        "guardparanoid",
        0,
        u32::MAX as u64,
        "messages per window, blocks guardhigh senders too, 0 = off",
        "0",
        "qmail-guard",
    ),
    num(
        "guardclientwarn",
        0,
        u32::MAX as u64,
        "failed logins + refused recipients per window from one address, 0 = off",
        "0",
        "qmail-guard",
    ),
    num(
        "guardclientblock",
        0,
        u32::MAX as u64,
        "failed logins + refused recipients per window, 0 = addresses never blocked",
        "0",
        "qmail-guard",
    ),
    num(
        "guardclientparanoid",
        0,
        u32::MAX as u64,
        "as guardclientblock, blocks guardhigh addresses too, 0 = off",
        "0",
        "qmail-guard",
    ),
    num(
        "guardwindow",
        60,
        30 * DAY,
        "seconds",
        "3600",
        "qmail-guard",
    ),
    num(
        "guardexpire",
        0,
        10 * 365 * DAY,
        "seconds a block lasts, 0 = until removed by hand",
        "86400",
        "qmail-guard",
    ),
    num(
        "guardinterval",
        1,
        DAY,
        "seconds between passes",
        "60",
        "qmail-guard",
    ),
    text("guardadmin", Kind::Line, "postmaster", "qmail-guard"),
    text("guardignore", Kind::List, "(none)", "qmail-guard"),
    text("guardhigh", Kind::List, "(none)", "qmail-guard"),
    text(
        "guardlogs",
        Kind::List,
        "supervise/SERVICE/log/main of qmail-send, smtpd, submission, smtps, pop3d, pop3ds",
        "qmail-guard",
    ),
    num(
        "clientmessagerate",
        0,
        u32::MAX as u64,
        "MAIL commands per client address per clientratewindow, 0 = none",
        "0",
        "qmail-smtpd",
    ),
    num(
        "clientrcptrate",
        0,
        u32::MAX as u64,
        "RCPT commands per client address per clientratewindow, 0 = none",
        "0",
        "qmail-smtpd",
    ),
    num(
        "clientauthrate",
        0,
        u32::MAX as u64,
        "AUTH commands per client address per clientratewindow, 0 = none",
        "0",
        "qmail-smtpd",
    ),
    num(
        "clientratewindow",
        1,
        DAY,
        "seconds",
        "60",
        "qmail-smtpd, smtpd/submission/smtps run scripts (tcpserver -W)",
    ),
    num(
        "clientconcurrency",
        0,
        65_535,
        "simultaneous sessions per client address, 0 = none",
        "20",
        "smtpd, submission, smtps run scripts (tcpserver -C)",
    ),
    num(
        "clientconnectrate",
        0,
        1_000_000,
        "new connections per client address per clientratewindow, 0 = none",
        "300",
        "smtpd, submission, smtps run scripts (tcpserver -N)",
    ),
    num(
        "sessionsperexec",
        1,
        10_000,
        "sessions served by processes forked from one exec'd qmail-smtpd, 1 = an exec per session",
        "100",
        "smtpd, submission, smtps run scripts (tcpserver -A)",
    ),
    num(
        "nicesmtpd",
        0,
        19,
        "niceness of the SMTP intake (tcpserver and qmail-smtpd, nice -n): on a busy machine delivery comes before accepting more",
        "5",
        "smtpd, submission, smtps run scripts (nice -n)",
    ),
    // Dovecot's listeners (HOME/dovecot/service.conf, written by the run script)
    num(
        "imapport",
        0,
        65_535,
        "port, 0 = no IMAP listener",
        "143",
        "qmail-imapd run script",
    ),
    num(
        "imapsport",
        0,
        65_535,
        "port, 0 = no IMAPS listener",
        "993",
        "qmail-imapd run script",
    ),
    num(
        "concurrencyimap",
        1,
        65_535,
        "sessions",
        "40",
        "qmail-imapd run script",
    ),
    // spam scoring (issue 16)
    text(
        "spamd",
        Kind::Line,
        "(none: no scoring; the qmail-spamd service listens on HOME/spamd/spamd.sock)",
        "qmail-spamc, qmail-spamlearn, qmail-spamd run script",
    ),
    num(
        "spamreject",
        0,
        1000,
        "points, 0 = never refuse",
        "0",
        "qmail-spamc",
    ),
    num("spamsizelimit", 0, MAXU, "bytes", "512000", "qmail-spamc"),
    num(
        "spamtimeout",
        1,
        3600,
        "seconds",
        "30",
        "qmail-spamc, qmail-spamlearn",
    ),
    flag("spamchecktrusted", "0", "qmail-spamc", OnInvalid::Default),
    num(
        "spamdchildren",
        1,
        100,
        "spamd children",
        "5",
        "qmail-spamd run script",
    ),
    flag(
        "spamdnetwork",
        "1",
        "qmail-spamd run script",
        OnInvalid::Default,
    ),
    text(
        "spamassassin.cf",
        Kind::File,
        "(written by qmail-install)",
        "qmail-spamd run script",
    ),
    Known {
        name: "dmarcreject",
        kind: Kind::Choice(&["refuse", "mark"]),
        default: "refuse",
        readers: "qmail-authcheck",
        on_invalid: OnInvalid::Default,
    },
    Known {
        name: "dmarcquarantine",
        kind: Kind::Choice(&["mark", "quarantine"]),
        default: "mark",
        readers: "qmail-authcheck",
        on_invalid: OnInvalid::Default,
    },
    Known {
        name: "spfpolicy",
        kind: Kind::Choice(&["mark", "refuse"]),
        default: "mark",
        readers: "qmail-authcheck",
        on_invalid: OnInvalid::Default,
    },
    num(
        "authchecklookups",
        1,
        1000,
        "DNS lookups per check",
        "40",
        "qmail-authcheck",
    ),
    num(
        "authchecktimeout",
        1,
        60,
        "seconds per DNS lookup",
        "5",
        "qmail-authcheck",
    ),
    text(
        "dkim",
        Kind::File,
        "(none: no DKIM signing) directory DOMAIN/SELECTOR.rsa|.ed25519, see qmail-dkim",
        "qmail-remote",
    ),
];

/// The table entry of `name`.
pub fn known(name: &str) -> Option<&'static Known> {
    KNOWN.iter().find(|k| k.name == name)
}

/// A malformed or out-of-range value: what was found, what is allowed, what applies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invalid {
    pub file: String,
    /// The offending first line, escaped for a log line.
    pub line: String,
    pub allowed: String,
    /// What the program does instead (`using the default 10`, `refusing sessions`).
    pub action: String,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "control/{} line 1: {} is not allowed (allowed: {}); {}",
            self.file, self.line, self.allowed, self.action
        )
    }
}

/// The value in force for a numeric, flag or choice control (a choice: its index).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checked {
    pub value: u64,
    /// Set when the file held something not allowed.
    pub invalid: Option<Invalid>,
    /// The file's policy is [`OnInvalid::Refuse`] and its value is malformed: `value`
    /// must not be used.
    pub refuse: bool,
}

impl Checked {
    /// Log the problem, if any, as `prog: warning: control/...` on stderr.
    pub fn warn(&self, prog: &str) {
        if let Some(i) = &self.invalid {
            qsys::die::warn(prog, "warning", &i.to_string());
        }
    }
}

/// What `kind` allows, in words.
pub fn allowed(kind: &Kind) -> String {
    let unit = |u: &str| {
        if u.is_empty() {
            String::new()
        } else {
            format!(" ({u})")
        }
    };
    match kind {
        Kind::Number { min, max, unit: u } if *max == MAXU => {
            format!("a decimal number >= {min}{}", unit(u))
        }
        Kind::Number { min, max, unit: u } => format!("a decimal number {min} to {max}{}", unit(u)),
        Kind::Flag => "0 or 1".into(),
        Kind::Choice(words) => words.join(" or "),
        _ => "any text".into(),
    }
}

/// Check `raw` (the file's first line, `None` when missing) against `spec`, with
/// `default` as the value of an absent or empty file.
pub fn check(spec: &Known, raw: Option<&str>, default: u64) -> Checked {
    let ok = |value| Checked {
        value,
        invalid: None,
        refuse: false,
    };
    let Some(v) = raw.map(str::trim).filter(|v| !v.is_empty()) else {
        return ok(default);
    };
    let parsed: Option<u64> = match spec.kind {
        Kind::Number { .. } | Kind::Flag => {
            if v.bytes().all(|b| b.is_ascii_digit()) {
                // Only digits: too long for u64 is out of range, not malformed.
                Some(v.parse().unwrap_or(MAXU))
            } else {
                None
            }
        }
        Kind::Choice(words) => words.iter().position(|w| *w == v).map(|i| i as u64),
        _ => return ok(default),
    };
    let invalid = |action: String| Invalid {
        file: spec.name.to_string(),
        line: qsys::logsafe::text(v.as_bytes()),
        allowed: allowed(&spec.kind),
        action,
    };
    match (parsed, spec.kind) {
        (Some(n), Kind::Number { min, max, .. }) if n < min || n > max => {
            let near = n.clamp(min, max);
            Checked {
                value: near,
                invalid: Some(invalid(format!("using {near}, the nearest allowed"))),
                refuse: false,
            }
        }
        (Some(n), Kind::Flag) if n > 1 => malformed(spec, default, invalid),
        (Some(n), _) => ok(n),
        (None, _) => malformed(spec, default, invalid),
    }
}

fn malformed(spec: &Known, default: u64, invalid: impl Fn(String) -> Invalid) -> Checked {
    let word = |n: u64| match spec.kind {
        Kind::Choice(words) => words.get(n as usize).copied().unwrap_or("").to_string(),
        _ => n.to_string(),
    };
    match spec.on_invalid {
        OnInvalid::Default => Checked {
            value: default,
            invalid: Some(invalid(format!("using the default {}", word(default)))),
            refuse: false,
        },
        OnInvalid::Use(n) => Checked {
            value: n,
            invalid: Some(invalid(format!("using {}, the safe value", word(n)))),
            refuse: false,
        },
        OnInvalid::Refuse => Checked {
            value: default,
            invalid: Some(invalid(
                "refusing to work (qmail-smtpd: 421 to every session) until it is fixed".into(),
            )),
            refuse: true,
        },
    }
}

/// The numeric default of `spec` (a choice: the index of its default word); `None` when
/// the default depends on something else (`pop3plaintext`).
pub fn numeric_default(spec: &Known) -> Option<u64> {
    match spec.kind {
        Kind::Choice(words) => words
            .iter()
            .position(|w| *w == spec.default)
            .map(|i| i as u64),
        Kind::Number { .. } | Kind::Flag => spec.default.parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(name: &str) -> &'static Known {
        known(name).unwrap()
    }

    fn c(name: &str, raw: &str) -> Checked {
        let s = k(name);
        check(s, Some(raw), numeric_default(s).unwrap_or(0))
    }

    #[test]
    fn every_default_parses_and_is_allowed() {
        for s in KNOWN {
            match s.kind {
                Kind::Number { min, max, .. } => {
                    let d = numeric_default(s).unwrap_or_else(|| panic!("{}", s.name));
                    assert!(d >= min && d <= max, "{}", s.name);
                }
                Kind::Choice(_) => assert!(numeric_default(s).is_some(), "{}", s.name),
                Kind::Flag if s.name != "pop3plaintext" => {
                    assert!(numeric_default(s).is_some_and(|d| d <= 1), "{}", s.name)
                }
                _ => {}
            }
        }
        let mut names: Vec<_> = KNOWN.iter().map(|s| s.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), KNOWN.len(), "a file is listed twice");
    }

    #[test]
    fn malformed_numbers_are_reported_and_get_the_default() {
        for raw in ["-5", "abc", "10k", "1e3", "0x10", "+3"] {
            let r = c("concurrencyremote", raw);
            assert_eq!(r.value, 20, "{raw}");
            let i = r.invalid.unwrap();
            assert!(i.to_string().contains("control/concurrencyremote line 1"));
            assert!(i.to_string().contains("1 to 120"));
            assert!(i.to_string().contains("using the default 20"), "{i}");
            assert!(!r.refuse);
        }
        assert_eq!(c("concurrencylocal", "abc").value, 10);
    }

    #[test]
    fn good_numbers_pass_with_surrounding_space() {
        let r = c("concurrencyremote", " 50 ");
        assert_eq!((r.value, r.invalid), (50, None));
        let r = check(k("databytes"), None, 0);
        assert_eq!((r.value, r.refuse), (0, false));
        assert_eq!(check(k("databytes"), Some(""), 0).invalid, None);
    }

    #[test]
    fn out_of_range_is_reported_and_clamped() {
        let r = c("concurrencylocal", "500");
        assert_eq!(r.value, 120);
        assert!(r.invalid.unwrap().action.contains("120, the nearest"));
        let r = c("timeoutsmtpd", "0");
        assert_eq!(r.value, 1);
        let r = c("maxrcpt", "99999999999999999999999");
        assert_eq!(r.value, 100_000);
    }

    #[test]
    fn malformed_databytes_refuses_rather_than_no_limit() {
        for raw in ["10k", "abc", "-5"] {
            let r = c("databytes", raw);
            assert!(r.refuse, "{raw}");
            assert!(r.invalid.is_some());
        }
        let r = c("databytes", "10240");
        assert_eq!((r.value, r.refuse), (10240, false));
    }

    #[test]
    fn flags_are_zero_or_one_and_tlsrequired_fails_safe() {
        assert_eq!(c("tlsrequired", "1").value, 1);
        assert_eq!(c("tlsrequired", "0").invalid, None);
        let r = c("tlsrequired", "yes");
        assert_eq!(r.value, 1);
        assert!(r.invalid.unwrap().action.contains("safe"));
        assert_eq!(c("tlsrequired", "2").value, 1);
        assert_eq!(c("authcrammd5", "on").value, 0);
        assert_eq!(check(k("pop3plaintext"), Some("true"), 1).value, 0);
    }

    /// Every file control/README's tables name is in the table (the doc cannot drift).
    #[test]
    fn every_file_of_the_readme_is_known() {
        let readme = include_str!("../../../control/README");
        for line in readme.lines() {
            let Some(name) = line.split(' ').next() else {
                continue;
            };
            let table_row = line[name.len()..].starts_with("  ")
                && name.starts_with(|c: char| c.is_ascii_lowercase())
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.');
            if table_row && name != "file" {
                assert!(
                    known(name).is_some(),
                    "control/README names {name}, the table does not"
                );
            }
        }
    }

    #[test]
    fn choices() {
        assert_eq!(c("vquotapolicy", "bounce").value, 1);
        let r = c("vquotapolicy", "reject");
        assert_eq!(r.value, 0);
        assert!(r.invalid.unwrap().to_string().contains("defer or bounce"));
    }

    #[test]
    fn the_offending_line_is_log_safe() {
        let r = c("maxrcpt", "1\u{1b}[2J x");
        let s = r.invalid.unwrap().to_string();
        assert!(!s.contains('\u{1b}'));
        assert!(!s.contains('\n'));
    }
}
