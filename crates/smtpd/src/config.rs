//! Everything qmail-smtpd reads at startup: control files and the environment set by
//! tcpserver and its rules. Read once per connection (qmail-smtpd is spawned per
//! connection, so every change applies to the next connection).
//!
//! qmail's control files (qmail.md 5.2): `me`, `smtpgreeting`, `localiphost`,
//! `timeoutsmtpd`, `rcpthosts`, `morercpthosts.cdb`, `badmailfrom`, `databytes`, plus the
//! common patches' `badrcptto`. New ones, one setting per file (control/README):
//!
//! | file | default | meaning |
//! |---|---|---|
//! | `maxrcpt` | 1000 | recipients per message; more get `452 4.5.3` |
//! | `tlsrequired` | 0 | 1: MAIL and AUTH refused before STARTTLS (port 25/587) |
//! | `authcrammd5` | 0 | 1: offer AUTH CRAM-MD5 (the checkpassword must support it) |
//! | `authfaildelay` | 5 | seconds to wait before answering a failed AUTH |
//! | `authfaillimit` | 10 | failed AUTHs per hour from one IPv4 address or IPv6 /64 before lockout (0: none) |
//! | `authfailaccountlimit` | 20 | failed logins per hour for one account, from anywhere, before its AUTHs get `454`, except from an address that logged in to it within the hour (0: none) |
//! | `sendermap` | none | `user:address` / `user:@domain` / `user:*` lines (submission) |
//! | `ratelimit` | 0 | recipients per hour per authenticated account (0: no limit) |
//! | `recipients.cdb` | none | when present, unknown local recipients get `550 5.1.1` |
//! | `clientmessagerate` | 0 | MAIL commands per client address per window (0: none) |
//! | `clientrcptrate` | 0 | RCPT commands per client address per window (0: none) |
//! | `clientauthrate` | 0 | AUTH commands per client address per window (0: none) |
//! | `clientratewindow` | 60 | seconds of that window (Postfix's `anvil_rate_time_unit`) |
//! | `servercert.pem`, `serverkey.pem` | none | TLS certificate chain and key |
//!
//! Numbers and 0/1 flags go through control's typed reader (`control::known`, the table
//! qmail-showctl prints): a malformed or out-of-range value is logged with the file, the
//! line and what is allowed, and the default (the nearest allowed value; 1 for a
//! malformed `tlsrequired`) applies. A malformed `databytes` (`10k`, `-5`) refuses every
//! session with 421 and an alert line instead of meaning "no limit".
//!
//! Environment: `TCPREMOTEIP`, `TCPREMOTEHOST`, `TCPREMOTEINFO`, `TCPLOCALIP`,
//! `TCPLOCALHOST` (or ucspi-tcp6's `TCP6...` names when those are missing),
//! `RELAYCLIENT`, `DATABYTES`, `QMAILQUEUE` as in qmail. New: `AUTHPLAINTEXT` (set,
//! e.g. by a tcprules line, to allow AUTH PLAIN/LOGIN without TLS from that client),
//! `TLSREQUIRED` (overrides `control/tlsrequired`). `CLIENTMESSAGERATE`,
//! `CLIENTRCPTRATE`, `CLIENTAUTHRATE` override the three client rates for a client (a
//! tcprules entry; `"0"` exempts it); a client with `RELAYCLIENT` and no such variable
//! is not limited, as Postfix's `smtpd_client_event_limit_exceptions` default to
//! `$mynetworks`.

use control::{ConstMap, Controls};
use std::io;
use std::path::{Path, PathBuf};

/// Which service this process is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Port 25: MX, no AUTH.
    Mx,
    /// Port 587: AUTH required before MAIL.
    Submission,
    /// Port 465: implicit TLS, then as submission.
    Smtps,
}

/// The configuration of one connection.
#[derive(Debug, Clone)]
pub struct Config {
    pub home: PathBuf,
    pub controls: Controls,
    pub mode: Mode,
    /// The checkpassword program and its arguments (AUTH offered only with it).
    pub checkpassword: Vec<String>,
    pub greeting: String,
    pub localiphost: String,
    pub timeout: u64,
    pub databytes: u64,
    pub maxrcpt: usize,
    pub rcpthosts: ConstMap,
    pub morercpthosts: Option<PathBuf>,
    pub badmailfrom: ConstMap,
    pub badrcptto: ConstMap,
    pub tls_required: bool,
    pub cram: bool,
    pub authfaildelay: u64,
    pub authfaillimit: u64,
    pub authfailaccountlimit: u64,
    pub ratelimit: u64,
    /// Postfix anvil's rates for this client (0 = none), over `client_window` seconds.
    pub client_rates: ClientRates,
    pub client_window: u64,
    pub sendermap: Vec<(String, String)>,
    /// The local domains (`locals`) and `virtualdomains`, read only when the recipient
    /// check is enabled.
    pub recipients: Option<RecipientCheck>,
    pub remote_ip: String,
    pub remote_host: String,
    pub remote_info: Option<String>,
    pub local_ip: String,
    pub local_host: String,
    pub relayclient: Option<String>,
    pub auth_plaintext: bool,
    pub queue_program: PathBuf,
}

/// MAIL, RCPT and AUTH commands allowed per client address and window; 0 = no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientRates {
    pub message: u64,
    pub recipient: u64,
    pub auth: u64,
}

/// The data of the recipient check (see [`crate::rcptcheck`]).
#[derive(Debug, Clone)]
pub struct RecipientCheck {
    pub cdb: PathBuf,
    pub locals: ConstMap,
    pub virtualdomains: ConstMap,
}

fn env(name: &str) -> Option<String> {
    std::env::var_os(name).map(|v| v.to_string_lossy().into_owned())
}

/// A client rate: the variable `var` when set to a number (tcprules), else none for a
/// relay client, else the control file `name`.
fn client_rate(c: &Controls, name: &str, var: &str, relayclient: bool) -> io::Result<u64> {
    if let Some(n) = env_number(var, &format!("control/{name}")) {
        return Ok(n);
    }
    if relayclient {
        return Ok(0);
    }
    number(c, name)
}

/// The variable `var` as a decimal number (it overrides a control file); a value that
/// is not one is logged (`...; using INSTEAD`) and ignored.
fn env_number(var: &str, instead: &str) -> Option<u64> {
    let v = env(var)?;
    let n = v.trim().parse::<u64>().ok();
    if n.is_none() {
        qsys::die::warn(
            "qmail-smtpd",
            "warning",
            &format!(
                "{var}={} is not a decimal number; using {instead}",
                qsys::logsafe::text(v.as_bytes())
            ),
        );
    }
    n
}

fn env_or_unknown(name: &str) -> String {
    env(name)
        .filter(|v| !v.is_empty())
        // ucspi-tcp6 names the variables of IPv6 connections TCP6...
        .or_else(|| {
            name.strip_prefix("TCP")
                .and_then(|rest| env(&format!("TCP6{rest}")))
                .filter(|v| !v.is_empty())
        })
        .unwrap_or_else(|| "unknown".into())
}

/// A number or 0/1 flag through control's typed reader: a malformed value is logged
/// (`qmail-smtpd: warning: control/NAME line 1: ...`) and replaced as control/README's
/// table says (the default; 1 for tlsrequired; the nearest allowed when out of range).
/// A malformed `databytes` is an error: the session is refused with 421 rather than
/// taking the message without a limit.
fn number(c: &Controls, name: &str) -> io::Result<u64> {
    let v = c.number(name)?;
    if v.refuse {
        let why = v.invalid.map(|i| i.to_string()).unwrap_or_default();
        return Err(io::Error::new(io::ErrorKind::InvalidData, why));
    }
    v.warn("qmail-smtpd");
    Ok(v.value)
}

/// `true` for a flag control holding 1.
fn flag(c: &Controls, name: &str) -> io::Result<bool> {
    Ok(number(c, name)? != 0)
}

impl Config {
    /// Read controls from `home/control` and the environment.
    pub fn load(home: &Path, mode: Mode, checkpassword: Vec<String>) -> io::Result<Config> {
        let c = Controls::new(home);
        let me = c.line("me")?;
        let greeting = match c.line("smtpgreeting")?.or_else(|| me.clone()) {
            Some(g) => g,
            None => return Err(io::Error::other("control/me is missing")),
        };
        let localiphost = c
            .line("localiphost")?
            .or(me)
            .unwrap_or_else(|| "localhost".into());
        let timeout = number(&c, "timeoutsmtpd")?;
        let mut databytes = number(&c, "databytes")?;
        if let Some(n) = env_number("DATABYTES", &format!("control/databytes ({databytes})")) {
            databytes = n;
        }
        let maxrcpt = number(&c, "maxrcpt")? as usize;
        let rcpthosts = ConstMap::from_keys(&c.list_or_empty("rcpthosts")?);
        let mrh = c.path("morercpthosts.cdb");
        let morercpthosts = mrh.exists().then_some(mrh);
        let badmailfrom = ConstMap::from_keys(&c.list_or_empty("badmailfrom")?);
        let badrcptto = ConstMap::from_keys(&c.list_or_empty("badrcptto")?);
        let tls_required = match env("TLSREQUIRED") {
            Some(v) => !v.is_empty() && v != "0",
            None => flag(&c, "tlsrequired")?,
        };
        let sendermap = c
            .list_or_empty("sendermap")?
            .iter()
            .filter_map(|l| {
                l.split_once(':')
                    .map(|(u, a)| (u.trim().to_ascii_lowercase(), a.trim().to_ascii_lowercase()))
            })
            .collect();
        let rcdb = c.path("recipients.cdb");
        let recipients = if rcdb.exists() {
            Some(RecipientCheck {
                cdb: rcdb,
                locals: ConstMap::from_keys(&c.list_or_empty("locals")?),
                virtualdomains: ConstMap::from_pairs(&c.list_or_empty("virtualdomains")?),
            })
        } else {
            None
        };
        let relayclient = env("RELAYCLIENT");
        let rc = relayclient.is_some();
        let client_rates = ClientRates {
            message: client_rate(&c, "clientmessagerate", "CLIENTMESSAGERATE", rc)?,
            recipient: client_rate(&c, "clientrcptrate", "CLIENTRCPTRATE", rc)?,
            auth: client_rate(&c, "clientauthrate", "CLIENTAUTHRATE", rc)?,
        };
        let client_window = number(&c, "clientratewindow")?;
        // `tcpserver -l0` sets TCPLOCALHOST=0: no name. Then the greeting's host
        // name (normally `me`) rather than qmail's TCPLOCALIP.
        let local_host = env("TCPLOCALHOST")
            .filter(|v| !v.is_empty() && v != "0")
            .unwrap_or_else(|| {
                greeting
                    .split(' ')
                    .next()
                    .filter(|h| !h.is_empty())
                    .map(str::to_string)
                    .unwrap_or_else(|| env_or_unknown("TCPLOCALIP"))
            });
        Ok(Config {
            home: home.to_path_buf(),
            mode,
            checkpassword,
            greeting,
            localiphost,
            timeout,
            databytes,
            maxrcpt,
            rcpthosts,
            morercpthosts,
            badmailfrom,
            badrcptto,
            tls_required,
            cram: flag(&c, "authcrammd5")?,
            authfaildelay: number(&c, "authfaildelay")?,
            authfaillimit: number(&c, "authfaillimit")?,
            authfailaccountlimit: number(&c, "authfailaccountlimit")?,
            ratelimit: number(&c, "ratelimit")?,
            client_rates,
            client_window,
            sendermap,
            recipients,
            remote_ip: env_or_unknown("TCPREMOTEIP"),
            remote_host: env_or_unknown("TCPREMOTEHOST"),
            remote_info: env("TCPREMOTEINFO").filter(|v| !v.is_empty()),
            local_ip: env_or_unknown("TCPLOCALIP"),
            local_host,
            relayclient,
            auth_plaintext: env("AUTHPLAINTEXT").is_some(),
            queue_program: queue::client::entry_program(home),
            controls: c,
        })
    }

    /// The directory for per-user and per-IP counters (`HOME/smtpd`, writable by qmaild).
    pub fn state_dir(&self) -> PathBuf {
        self.home.join("smtpd")
    }

    /// The counters in [`Config::state_dir`] (shared with qmail-popup).
    pub fn counters(&self) -> limits::Counters {
        limits::Counters::new(&self.state_dir()).with_client_window(self.client_window)
    }

    /// The client's address as a reply may show it: the address, or `unknown` when
    /// `TCPREMOTEIP` does not hold one.
    pub fn client_address(&self) -> String {
        self.remote_ip
            .parse::<std::net::IpAddr>()
            .map_or_else(|_| "unknown".to_string(), |ip| ip.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn home(files: &[(&str, &str)]) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("control")).unwrap();
        std::fs::write(d.path().join("control/me"), "mx.example.test\n").unwrap();
        for (n, v) in files {
            std::fs::write(d.path().join("control").join(n), v).unwrap();
        }
        d
    }

    fn load(d: &tempfile::TempDir) -> io::Result<Config> {
        Config::load(d.path(), Mode::Mx, Vec::new())
    }

    #[test]
    fn malformed_databytes_refuses_instead_of_no_limit() {
        for v in ["10k\n", "abc\n", "-5\n"] {
            let d = home(&[("databytes", v)]);
            let Err(e) = load(&d) else {
                panic!("{v} accepted")
            };
            assert!(e.to_string().contains("control/databytes line 1"), "{e}");
        }
        let d = home(&[("databytes", "10240\n")]);
        assert_eq!(load(&d).unwrap().databytes, 10240);
    }

    #[test]
    fn malformed_numbers_and_flags_get_safe_values() {
        let d = home(&[
            ("maxrcpt", "abc\n"),
            ("tlsrequired", "yes\n"),
            ("authcrammd5", "on\n"),
            ("authfaildelay", "600\n"),
            ("timeoutsmtpd", "0\n"),
        ]);
        let c = load(&d).unwrap();
        assert_eq!(c.maxrcpt, 1000);
        assert!(c.tls_required);
        assert!(!c.cram);
        assert_eq!(c.authfaildelay, 60);
        assert_eq!(c.timeout, 1);
    }

    #[test]
    fn the_table_agrees_with_the_limits_crate() {
        let d = home(&[]);
        let c = load(&d).unwrap();
        assert_eq!(c.authfaillimit, limits::DEFAULT_IP_FAILURES);
        assert_eq!(c.authfailaccountlimit, limits::DEFAULT_ACCOUNT_FAILURES);
        assert_eq!(c.client_window, limits::CLIENT_WINDOW);
        assert_eq!(c.client_rates, ClientRates::default());
    }

    #[test]
    fn client_rates_from_controls() {
        let d = home(&[
            ("clientmessagerate", "5\n"),
            ("clientrcptrate", "x\n"),
            ("clientauthrate", "7\n"),
            ("clientratewindow", "0\n"),
        ]);
        let c = load(&d).unwrap();
        assert_eq!(
            c.client_rates,
            ClientRates {
                message: 5,
                recipient: 0,
                auth: 7
            }
        );
        assert_eq!(c.client_window, 1);
    }
}
