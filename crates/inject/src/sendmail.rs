//! The sendmail compatibility wrapper: translate a sendmail command line into a
//! qmail-inject command line plus environment changes, which [`crate::cli`] then runs in
//! the same process (netqmail 1.06 `sendmail.c`; the
//! flags are sendmail(8)'s).
//!
//! Options are parsed like qmail's getopt with the option string `vimte:f:p:o:B:F:EJxb:`
//! (plus our `q`): no-argument flags may be clustered (`-ti`), an option argument may be
//! attached (`-fme@x`, `-FCronDaemon`, `-oem`, `-B8BITMIME`) or the next word
//! (`-f me@x`), `--` or the first non-option ends the options, and everything after that
//! is a recipient. `-E` and `-J` swallow the rest of their word.
//!
//! - `-t`: recipients from the header (and the arguments): qmail-inject `-H`, else `-a`.
//! - `-f sender`: passed on as `-f sender`; like netqmail, also unsets QMAILNAME,
//!   MAILNAME, NAME, QMAILHOST, MAILHOST and sets QMAILUSER and QMAILHOST from the sender,
//!   so the From field matches the envelope sender.
//! - `-F name`: MAILNAME=name. Applied after `-f`'s changes (netqmail unsets it again
//!   when `-f` is also given; here an explicit `-F` wins).
//! - `-i -v -x -m -e* -o* -p* -B* -E -J`: accepted and ignored; `-bm`: the default.
//! - `-bp` (or being called `mailq`): run HOME/bin/qmail-qread.
//! - `-bs`: run HOME/bin/qmail-smtpd, with qmail's local-session environment unless
//!   PROTO is already set.
//! - `-q...`: our extension for cron jobs calling `sendmail -q`: pull the queue trigger.
//! - `-bi` (or being called `newaliases`): run HOME/bin/newaliases (fastforward's).
//! - anything else: qmail's usage line, exit 100.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;

pub const USAGE: &str = "sendmail [ -t ] [ -fsender ] [ -Fname ] [ -bp ] [ -bs ] [ arg ... ]";

/// One environment change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EnvOp {
    Set(&'static str, OsString),
    Unset(&'static str),
}

/// What sendmail should do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Do qmail-inject's work with these arguments after applying `env` (in-process).
    Inject {
        args: Vec<OsString>,
        env: Vec<EnvOp>,
    },
    /// Exec HOME/bin/qmail-qread.
    MailQ,
    /// Exec HOME/bin/qmail-smtpd after applying `env`.
    Smtpd { env: Vec<EnvOp> },
    /// Pull the queue trigger and exit 0.
    RunQueue,
    /// Print the manual's synopsis and exit 0.
    Help,
    /// Print the usage line and exit 100; the text says what was wrong.
    Usage(String),
    /// Called as newaliases, or `-bi`: run newaliases.
    NewAliases,
}

/// The environment qmail gives `sendmail -bs` when PROTO is not set.
pub fn smtpd_env(proto_set: bool) -> Vec<EnvOp> {
    if proto_set {
        return Vec::new();
    }
    [
        ("RELAYCLIENT", ""),
        ("DATABYTES", "0"),
        ("PROTO", "TCP"),
        ("TCPLOCALIP", "127.0.0.1"),
        ("TCPLOCALHOST", "localhost"),
        ("TCPREMOTEIP", "127.0.0.1"),
        ("TCPREMOTEHOST", "localhost"),
        ("TCPREMOTEINFO", "sendmail-bs"),
    ]
    .iter()
    .map(|(k, v)| EnvOp::Set(k, OsString::from(v)))
    .collect()
}

/// netqmail's `do_sender`: make the From field match `-f`.
fn sender_env(s: &[u8]) -> Vec<EnvOp> {
    let mut env = vec![
        EnvOp::Unset("QMAILNAME"),
        EnvOp::Unset("MAILNAME"),
        EnvOp::Unset("NAME"),
        EnvOp::Unset("QMAILHOST"),
        EnvOp::Unset("MAILHOST"),
    ];
    match s.iter().rposition(|&c| c == b'@') {
        None => env.push(EnvOp::Set("QMAILUSER", OsStr::from_bytes(s).to_os_string())),
        Some(a) => {
            env.push(EnvOp::Set(
                "QMAILHOST",
                OsStr::from_bytes(&s[a + 1..]).to_os_string(),
            ));
            env.push(EnvOp::Set(
                "QMAILUSER",
                OsStr::from_bytes(&s[..a]).to_os_string(),
            ));
        }
    }
    env
}

/// Translate `argv` (including argv[0], whose base name selects mailq/newaliases).
/// `proto_set` tells whether PROTO is in the environment (for `-bs`).
pub fn translate(argv: &[OsString], proto_set: bool) -> Action {
    let prog = argv
        .first()
        .map(|a| {
            let b = a.as_bytes();
            b.rsplit(|&c| c == b'/').next().unwrap_or(b).to_vec()
        })
        .unwrap_or_default();
    let args = argv.get(1..).unwrap_or(&[]);
    if args.first().map(|a| a.as_bytes()) == Some(b"--help") {
        return Action::Help;
    }
    let usage = |s: String| Action::Usage(s);
    let mut header = false;
    let mut sender: Option<Vec<u8>> = None;
    let mut name: Option<Vec<u8>> = None;
    let mut i = 0;
    'words: while i < args.len() {
        let a = args[i].as_bytes();
        if a == b"--" {
            i += 1;
            break;
        }
        if a.len() < 2 || a[0] != b'-' {
            break;
        }
        let mut j = 1;
        while j < a.len() {
            let c = a[j];
            match c {
                b't' => header = true,
                b'v' | b'i' | b'm' | b'x' => {}
                b'E' | b'J' => {
                    i += 1;
                    continue 'words;
                }
                b'q' => return Action::RunQueue,
                b'e' | b'f' | b'p' | b'o' | b'B' | b'F' | b'b' => {
                    let val: Vec<u8> = if j + 1 < a.len() {
                        a[j + 1..].to_vec()
                    } else {
                        i += 1;
                        match args.get(i) {
                            Some(v) => v.as_bytes().to_vec(),
                            None => {
                                return usage(format!(
                                    "option -{} needs an argument",
                                    char::from(c)
                                ));
                            }
                        }
                    };
                    match c {
                        b'f' => sender = Some(val),
                        b'F' => name = Some(val),
                        b'b' => match val.first() {
                            Some(b'm') => {}
                            Some(b'p') => return Action::MailQ,
                            Some(b'i') => return Action::NewAliases,
                            Some(b's') => {
                                return Action::Smtpd {
                                    env: smtpd_env(proto_set),
                                };
                            }
                            _ => {
                                return usage(format!(
                                    "unsupported mode -b{}",
                                    String::from_utf8_lossy(&val)
                                ));
                            }
                        },
                        _ => {} // -e -p -o -B: qmail has one mode for all of these
                    }
                    i += 1;
                    continue 'words;
                }
                _ => {
                    return usage(format!(
                        "unknown option -{}",
                        char::from(c).escape_default()
                    ));
                }
            }
            j += 1;
        }
        i += 1;
    }
    if prog == b"mailq" {
        return Action::MailQ;
    }
    if prog == b"newaliases" {
        return Action::NewAliases;
    }
    let mut out: Vec<OsString> = vec![OsString::from(if header { "-H" } else { "-a" })];
    let mut env = Vec::new();
    if let Some(s) = &sender {
        out.push(OsString::from("-f"));
        out.push(OsStr::from_bytes(s).to_os_string());
        env.extend(sender_env(s));
    }
    if let Some(n) = name {
        env.push(EnvOp::Set("MAILNAME", OsStr::from_bytes(&n).to_os_string()));
    }
    out.push(OsString::from("--"));
    out.extend(args[i..].iter().cloned());
    Action::Inject { args: out, env }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &[&str]) -> Vec<OsString> {
        s.iter().map(OsString::from).collect()
    }

    fn inject(s: &[&str]) -> (Vec<String>, Vec<EnvOp>) {
        match translate(&argv(s), false) {
            Action::Inject { args, env } => (
                args.iter()
                    .map(|a| a.to_string_lossy().into_owned())
                    .collect(),
                env,
            ),
            other => panic!("{s:?} gave {other:?}"),
        }
    }

    fn set(k: &'static str, v: &str) -> EnvOp {
        EnvOp::Set(k, OsString::from(v))
    }

    #[test]
    fn git_send_email() {
        let (args, env) = inject(&["sendmail", "-i", "-f", "me@x.org", "--", "a@y", "b@z"]);
        assert_eq!(args, vec!["-a", "-f", "me@x.org", "--", "a@y", "b@z"]);
        assert!(env.contains(&EnvOp::Unset("MAILNAME")));
        assert!(env.contains(&EnvOp::Unset("NAME")));
        assert!(env.contains(&EnvOp::Unset("MAILHOST")));
        assert!(env.contains(&set("QMAILUSER", "me")));
        assert!(env.contains(&set("QMAILHOST", "x.org")));
    }

    #[test]
    fn php_mail_and_oi_t() {
        assert_eq!(
            inject(&["/usr/sbin/sendmail", "-t", "-i"]),
            (argv_s(&["-H", "--"]), vec![])
        );
        assert_eq!(inject(&["sendmail", "-oi", "-t"]).0, argv_s(&["-H", "--"]));
        assert_eq!(inject(&["sendmail", "-ti"]).0, argv_s(&["-H", "--"]));
        assert_eq!(
            inject(&["sendmail", "-t", "extra@x"]).0,
            argv_s(&["-H", "--", "extra@x"])
        );
    }

    fn argv_s(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn cron() {
        let (args, env) = inject(&[
            "sendmail",
            "-FCronDaemon",
            "-i",
            "-B8BITMIME",
            "-oem",
            "user",
        ]);
        assert_eq!(args, argv_s(&["-a", "--", "user"]));
        assert_eq!(env, vec![set("MAILNAME", "CronDaemon")]);
    }

    #[test]
    fn mailx() {
        assert_eq!(
            inject(&["sendmail", "-i", "--", "rcpt@x"]).0,
            argv_s(&["-a", "--", "rcpt@x"])
        );
    }

    #[test]
    fn attached_and_separate_arguments() {
        assert_eq!(
            inject(&["sendmail", "-fme@x"]).0,
            argv_s(&["-a", "-f", "me@x", "--"])
        );
        assert_eq!(
            inject(&["sendmail", "-F", "Joe Q", "-f", "u"]).1.last(),
            Some(&set("MAILNAME", "Joe Q"))
        );
        let (_, env) = inject(&["sendmail", "-f", "u", "r"]);
        assert!(env.contains(&set("QMAILUSER", "u")));
        assert!(!env.iter().any(|e| matches!(e, EnvOp::Set("QMAILHOST", _))));
        assert_eq!(
            inject(&[
                "sendmail", "-odi", "-v", "-x", "-m", "-em", "-p", "smtp:x", "-E", "-Jfoo", "-bm",
                "r"
            ])
            .0,
            argv_s(&["-a", "--", "r"])
        );
        // the first non-option ends the options
        assert_eq!(
            inject(&["sendmail", "r", "-t"]).0,
            argv_s(&["-a", "--", "r", "-t"])
        );
    }

    #[test]
    fn modes() {
        assert_eq!(translate(&argv(&["sendmail", "-bp"]), false), Action::MailQ);
        assert_eq!(translate(&argv(&["/usr/bin/mailq"]), false), Action::MailQ);
        assert_eq!(
            translate(&argv(&["sendmail", "-bs"]), true),
            Action::Smtpd { env: vec![] }
        );
        match translate(&argv(&["sendmail", "-bs"]), false) {
            Action::Smtpd { env } => {
                assert!(env.contains(&set("RELAYCLIENT", "")));
                assert!(env.contains(&set("PROTO", "TCP")));
                assert!(env.contains(&set("TCPREMOTEINFO", "sendmail-bs")));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            translate(&argv(&["sendmail", "-q"]), false),
            Action::RunQueue
        );
        assert_eq!(
            translate(&argv(&["sendmail", "-q15m"]), false),
            Action::RunQueue
        );
        assert_eq!(translate(&argv(&["newaliases"]), false), Action::NewAliases);
        assert_eq!(
            translate(&argv(&["sendmail", "-bi"]), false),
            Action::NewAliases
        );
        assert_eq!(
            translate(&argv(&["sendmail", "--help"]), false),
            Action::Help
        );
        assert!(matches!(
            translate(&argv(&["sendmail", "-bd"]), false),
            Action::Usage(_)
        ));
        assert!(matches!(
            translate(&argv(&["sendmail", "-L", "x"]), false),
            Action::Usage(_)
        ));
        assert!(matches!(
            translate(&argv(&["sendmail", "-f"]), false),
            Action::Usage(_)
        ));
    }

    #[test]
    fn eight_bit_arguments_pass_through() {
        let a = vec![
            OsString::from("sendmail"),
            OsString::from("-f"),
            OsStr::from_bytes(b"j\xfc@x").to_os_string(),
            OsStr::from_bytes(b"r\xff").to_os_string(),
        ];
        match translate(&a, false) {
            Action::Inject { args, .. } => {
                assert_eq!(args[2].as_bytes(), b"j\xfc@x");
                assert_eq!(args[4].as_bytes(), b"r\xff");
            }
            other => panic!("{other:?}"),
        }
    }
}
