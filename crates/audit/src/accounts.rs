//! The accounts check: the qmail users (`alias qmaild qmaill qmailp qmailq qmailr
//! qmails qmailf`) have no login shell; system accounts in `/etc/shadow` have no empty
//! password and no weak hash (`$1$` MD5-crypt, 13-character DES crypt); and the password
//! policy in force for virtual users (`control/vpassminlen`, default 10, and
//! `control/vpassclasses`, default 3, as qmail-vuser enforces them) is not weaker than
//! 8 characters of 2 classes.

use crate::{Audit, Finding, Severity};

const CHECK: &str = "accounts";

/// Shells that allow no login.
const NO_LOGIN: &[&str] = &[
    "/usr/sbin/nologin",
    "/sbin/nologin",
    "/bin/false",
    "/usr/bin/false",
    "",
];

/// What is weak about a shadow password field, if anything.
pub fn weak_hash(field: &str) -> Option<&'static str> {
    if field.is_empty() {
        return Some("an empty password (no password needed)");
    }
    if field.starts_with('!') || field.starts_with('*') {
        return None; // locked
    }
    if field.starts_with("$1$") {
        return Some("an MD5-crypt ($1$) hash");
    }
    if field.len() == 13
        && field
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'/')
    {
        return Some("a DES crypt hash");
    }
    None
}

/// Findings for an `/etc/shadow` text.
pub fn shadow(text: &str) -> Vec<Finding> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split(':');
            let (user, pw) = (f.next()?, f.next()?);
            let why = weak_hash(pw)?;
            Some(Finding::new(
                CHECK,
                if pw.is_empty() {
                    Severity::Error
                } else {
                    Severity::Warning
                },
                format!("account {user}"),
                "a locked password or a strong hash (yescrypt, sha512-crypt)",
                why,
                if pw.is_empty() {
                    format!("passwd -l {user}")
                } else {
                    format!("passwd {user} (set a new password), or passwd -l {user}")
                },
            ))
        })
        .collect()
}

pub fn check(a: &Audit) -> Vec<Finding> {
    let mut v = Vec::new();
    for u in qsys::ids::USERS {
        let Ok(Some(pw)) = nix::unistd::User::from_name(u) else {
            continue;
        };
        let shell = pw.shell.to_string_lossy().into_owned();
        if !NO_LOGIN.contains(&shell.as_str()) {
            v.push(Finding::new(
                CHECK,
                Severity::Warning,
                format!("user {u}"),
                "no login shell (/usr/sbin/nologin)",
                format!("shell {shell}"),
                format!("usermod -s /usr/sbin/nologin {u}"),
            ));
        }
    }
    if a.local_only {
        v.push(Finding::info(
            CHECK,
            "/etc/shadow",
            "--local: system accounts not checked",
        ));
    } else {
        match std::fs::read_to_string("/etc/shadow") {
            Ok(t) => v.extend(shadow(&t)),
            Err(e) => v.push(Finding::info(
                CHECK,
                "/etc/shadow",
                format!("not read: {}", qsys::errstr::io(&e)),
            )),
        }
    }
    let ctl = a.control();
    let min = ctl.int("vpassminlen", 10).unwrap_or(10);
    let classes = ctl.int("vpassclasses", 3).unwrap_or(3).min(4);
    let weak = min < 8 || classes < 2;
    v.push(Finding::new(
        CHECK,
        if weak {
            Severity::Warning
        } else {
            Severity::Info
        },
        "virtual users' password policy",
        "at least 8 characters of 2 classes",
        format!("{min} characters, {classes} classes (control/vpassminlen, control/vpassclasses)"),
        if weak {
            "raise control/vpassminlen to 10 and control/vpassclasses to 3"
        } else {
            ""
        },
    ));
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weak_hashes() {
        let t = "root:$y$j9T$abc$def:19000:0:99999:7:::\nold:$1$salt$hash:1::\ndes:abJnggxhB/yWI:1::\nopen::1::\nlocked:!$1$x$y:1::\nsys:*:1::\n";
        let f = shadow(t);
        let who: Vec<(&str, Severity)> =
            f.iter().map(|x| (x.subject.as_str(), x.severity)).collect();
        assert_eq!(
            who,
            vec![
                ("account old", Severity::Warning),
                ("account des", Severity::Warning),
                ("account open", Severity::Error)
            ]
        );
    }
}
