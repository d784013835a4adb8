//! What qmail-spamc does with a message (issue 16; wave2.md 3.4): the settings from
//! HOME/control, who the client is, whether to ask spamd, and the verdict on a score.
//!
//! The client, from the variables qmail-qfilter passes (it passes the connection's
//! only when its caller is qmail-smtpd or root, so a local user's `sendmail` cannot
//! pretend to be a relay client): `SMTPAUTHUSER` set and not empty = authenticated;
//! else `RELAYCLIENT` set (even empty, as tcprules sets it) = relay client; else no
//! `TCPREMOTEIP` = injected on this host (sendmail, qmail-inject); else a remote client.
//! The first three are trusted: their mail is not scored unless
//! `control/spamchecktrusted` is 1, and their mail to a learning address is stamped
//! with [`crate::header::REPORTER`] naming them.

use std::time::Duration;

use crate::protocol::{Class, Score};

/// The settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `control/spamd`: unix socket path or IP:port; `None` (missing or empty) = off.
    pub spamd: Option<String>,
    /// `control/spamreject`: refuse at this score or above; 0 (default) = never.
    pub reject: u64,
    /// `control/spamsizelimit`: bytes; larger messages are not scored.
    pub size_limit: u64,
    /// `control/spamtimeout`: seconds for the whole exchange with spamd.
    pub timeout: Duration,
    /// `control/spamchecktrusted` = 1: score trusted clients' mail too.
    pub check_trusted: bool,
}

/// Defaults (also in control/README and the known-files table).
pub const DEFAULT_SIZE_LIMIT: u64 = 512_000;
pub const DEFAULT_TIMEOUT: u64 = 30;

impl Config {
    /// Read from `controls`; an unreadable file is an error naming it.
    pub fn load(controls: &control::Controls) -> Result<Config, String> {
        let unreadable = |name: &str, e: std::io::Error| {
            format!("unable to read control/{name}: {}", qsys::die::errstr(&e))
        };
        let spamd = controls
            .line("spamd")
            .map_err(|e| unreadable("spamd", e))?
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty());
        let num =
            |name: &str, default: u64| controls.int(name, default).map_err(|e| unreadable(name, e));
        Ok(Config {
            spamd,
            reject: num("spamreject", 0)?,
            size_limit: num("spamsizelimit", DEFAULT_SIZE_LIMIT)?,
            timeout: Duration::from_secs(num("spamtimeout", DEFAULT_TIMEOUT)?.clamp(1, 3600)),
            check_trusted: num("spamchecktrusted", 0)? == 1,
        })
    }
}

/// Who handed the message in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Client {
    /// Injected on this host (no TCPREMOTEIP).
    Local,
    /// RELAYCLIENT set for this address.
    Relay(String),
    /// SMTP AUTH as this user.
    Auth(String),
    /// Anyone else, from this address.
    Remote(String),
}

impl Client {
    /// The client from the filter's environment (module doc).
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Client {
        let ip = var("TCPREMOTEIP").unwrap_or_default();
        if let Some(user) = var("SMTPAUTHUSER").filter(|u| !u.is_empty()) {
            return Client::Auth(user);
        }
        if var("RELAYCLIENT").is_some() {
            return Client::Relay(ip);
        }
        if var("TCPREMOTEIP").is_none() {
            return Client::Local;
        }
        Client::Remote(ip)
    }

    pub fn trusted(&self) -> bool {
        !matches!(self, Client::Remote(_))
    }

    /// The [`crate::header::REPORTER`] value for this client, `None` for untrusted ones:
    /// `local`, `relay=IP`, `auth=USER` (printable ASCII, at most 200 bytes).
    pub fn reporter(&self) -> Option<String> {
        let safe = |s: &str| -> String {
            s.chars()
                .filter(|c| c.is_ascii_graphic())
                .take(200)
                .collect()
        };
        match self {
            Client::Local => Some("local".into()),
            Client::Relay(ip) => Some(format!("relay={}", safe(ip))),
            Client::Auth(u) => Some(format!("auth={}", safe(u))),
            Client::Remote(_) => None,
        }
    }

    /// For the log: `local`, `relay`, `auth`, `remote`.
    pub fn word(&self) -> &'static str {
        match self {
            Client::Local => "local",
            Client::Relay(_) => "relay",
            Client::Auth(_) => "auth",
            Client::Remote(_) => "remote",
        }
    }
}

/// The learning class of a recipient: local part `learn-spam` or `learn-ham` (any case).
pub fn learning_address(rcpt: &[u8]) -> Option<Class> {
    let at = rcpt.iter().rposition(|&b| b == b'@').unwrap_or(rcpt.len());
    let local = &rcpt[..at];
    if local.eq_ignore_ascii_case(b"learn-spam") {
        Some(Class::Spam)
    } else if local.eq_ignore_ascii_case(b"learn-ham") {
        Some(Class::Ham)
    } else {
        None
    }
}

/// Whether to ask spamd, or why not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    Score,
    /// Not scored, for this reason (a log word).
    Skip(&'static str),
}

/// Ask spamd about a message of `size` bytes from `client`?
pub fn plan(cfg: &Config, client: &Client, size: u64) -> Plan {
    if cfg.spamd.is_none() {
        Plan::Skip("off")
    } else if client.trusted() && !cfg.check_trusted {
        Plan::Skip("trusted")
    } else if size > cfg.size_limit {
        Plan::Skip("toolarge")
    } else {
        Plan::Score
    }
}

/// The permanent refusal for `score`, when `control/spamreject` says so: the text for
/// qmail-smtpd's 554 (without the leading `D`).
pub fn refusal(cfg: &Config, score: &Score) -> Option<String> {
    (cfg.reject > 0 && score.score >= cfg.reject as f64).then(|| {
        format!(
            "message refused as spam: score {:.1}, limit {} (#5.7.1)",
            score.score, cfg.reject
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    fn cfg() -> Config {
        Config {
            spamd: Some("/x".into()),
            reject: 15,
            size_limit: 1000,
            timeout: Duration::from_secs(1),
            check_trusted: false,
        }
    }

    #[test]
    fn who_the_client_is() {
        assert_eq!(Client::from_env(env(&[])), Client::Local);
        let remote = Client::from_env(env(&[("TCPREMOTEIP", "192.0.2.1")]));
        assert_eq!(remote, Client::Remote("192.0.2.1".into()));
        assert!(!remote.trusted() && remote.reporter().is_none());
        let relay = Client::from_env(env(&[("TCPREMOTEIP", "10.0.0.1"), ("RELAYCLIENT", "")]));
        assert_eq!(relay.reporter().as_deref(), Some("relay=10.0.0.1"));
        let auth = Client::from_env(env(&[
            ("TCPREMOTEIP", "192.0.2.1"),
            ("SMTPAUTHUSER", "joe\r\nX: y"),
        ]));
        assert_eq!(auth.reporter().as_deref(), Some("auth=joeX:y"));
        // an empty SMTPAUTHUSER is no authentication
        let c = Client::from_env(env(&[("TCPREMOTEIP", "192.0.2.1"), ("SMTPAUTHUSER", "")]));
        assert_eq!(c, Client::Remote("192.0.2.1".into()));
    }

    #[test]
    fn learning_addresses() {
        assert_eq!(
            learning_address(b"learn-spam@example.test"),
            Some(Class::Spam)
        );
        assert_eq!(
            learning_address(b"LEARN-HAM@example.test"),
            Some(Class::Ham)
        );
        assert_eq!(learning_address(b"learn-ham"), Some(Class::Ham));
        assert_eq!(learning_address(b"xlearn-spam@example.test"), None);
        assert_eq!(learning_address(b"learn-spam-x@example.test"), None);
        assert_eq!(learning_address(b""), None);
    }

    #[test]
    fn plans_and_refusals() {
        let c = cfg();
        let remote = Client::Remote("192.0.2.1".into());
        assert_eq!(plan(&c, &remote, 1000), Plan::Score);
        assert_eq!(plan(&c, &remote, 1001), Plan::Skip("toolarge"));
        assert_eq!(plan(&c, &Client::Local, 10), Plan::Skip("trusted"));
        let all = Config {
            check_trusted: true,
            ..cfg()
        };
        assert_eq!(plan(&all, &Client::Auth("a".into()), 10), Plan::Score);
        let off = Config {
            spamd: None,
            ..cfg()
        };
        assert_eq!(plan(&off, &remote, 10), Plan::Skip("off"));
        let s = |score| Score {
            spam: true,
            score,
            required: 5.0,
            tests: vec![],
        };
        assert_eq!(refusal(&c, &s(14.9)), None);
        assert_eq!(
            refusal(&c, &s(1000.0)).as_deref(),
            Some("message refused as spam: score 1000.0, limit 15 (#5.7.1)")
        );
        let never = Config { reject: 0, ..cfg() };
        assert_eq!(refusal(&never, &s(1000.0)), None);
    }

    #[test]
    fn settings_from_control_files() {
        let d = tempfile::tempdir().unwrap();
        let controls = control::Controls::in_dir(d.path());
        let c = Config::load(&controls).unwrap();
        assert_eq!(c.spamd, None);
        assert_eq!(c.reject, 0);
        assert_eq!(c.size_limit, DEFAULT_SIZE_LIMIT);
        assert_eq!(c.timeout, Duration::from_secs(DEFAULT_TIMEOUT));
        std::fs::write(d.path().join("spamd"), " 127.0.0.1:783 \n").unwrap();
        std::fs::write(d.path().join("spamreject"), "12\n").unwrap();
        std::fs::write(d.path().join("spamchecktrusted"), "1\n").unwrap();
        let c = Config::load(&controls).unwrap();
        assert_eq!(c.spamd.as_deref(), Some("127.0.0.1:783"));
        assert_eq!(c.reject, 12);
        assert!(c.check_trusted);
        std::fs::write(d.path().join("spamd"), "\n").unwrap();
        assert_eq!(Config::load(&controls).unwrap().spamd, None);
    }
}
