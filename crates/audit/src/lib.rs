//! qmail-audit's checks: each is a small function over an installation (and, where the
//! check is about the host, the host) returning [`Finding`]s with a severity, what was
//! expected, what was found and how to fix it. The checklist is the one administrators
//! of qmail hosts ran by hand (issue 18): owners and modes against the installer's own
//! table (`install::hier::expected`), queue consistency as qmail's queue repair tools
//! check it, the sendmail links, the listeners, an open-relay self-test, the TLS
//! certificate, DNS records, accounts, and an HMAC-authenticated integrity baseline.
//!
//! Nothing here changes the installation, except [`integrity::baseline`] which writes
//! `HOME/audit/manifest` (and the key `HOME/audit/hmac.key` on first use).

pub mod accounts;
pub mod dnscheck;
pub mod installation;
pub mod integrity;
pub mod net;
pub mod queuecheck;
pub mod relay;
pub mod report;
pub mod sendmail;
pub mod services;
pub mod tlscheck;

use std::net::IpAddr;
use std::path::PathBuf;

/// How bad a finding is. Exit status 0 means nothing at [`Severity::Warning`] or above.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Info,
    Warning,
    Error,
}

impl Severity {
    pub fn word(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

/// One result of one check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// The check that produced it (`installation`, `queue`, ...).
    pub check: &'static str,
    pub severity: Severity,
    /// What the finding is about: a path, a port, an address.
    pub subject: String,
    pub expected: String,
    pub found: String,
    /// How to fix it (empty for an info finding that needs nothing).
    pub fix: String,
}

impl Finding {
    pub fn new(
        check: &'static str,
        severity: Severity,
        subject: impl Into<String>,
        expected: impl Into<String>,
        found: impl Into<String>,
        fix: impl Into<String>,
    ) -> Finding {
        Finding {
            check,
            severity,
            subject: subject.into(),
            expected: expected.into(),
            found: found.into(),
            fix: fix.into(),
        }
    }

    /// An informational note (a check skipped, a figure worth knowing).
    pub fn info(
        check: &'static str,
        subject: impl Into<String>,
        found: impl Into<String>,
    ) -> Finding {
        Finding::new(check, Severity::Info, subject, "", found, "")
    }
}

/// What to audit and how far.
#[derive(Clone, Debug)]
pub struct Audit {
    /// The installation (`/var/qmail`).
    pub home: PathBuf,
    /// The directory svscan watches (`/service`).
    pub service_dir: PathBuf,
    /// When set, listener checks consider only sockets bound to these addresses
    /// (`--address`): what a test, or a host running other installations, needs.
    pub addresses: Option<Vec<IpAddr>>,
    /// Skip the checks about the host rather than the installation: the sendmail links,
    /// other MTA packages and processes, system accounts' password hashes (`--local`).
    pub local_only: bool,
    /// Ports of listeners that are not ours but expected on this host (`--expect`, e.g.
    /// 22 for sshd): reported as notes, not as unexpected.
    pub expected_ports: Vec<u16>,
    /// Unix time of the audit.
    pub now: u64,
}

impl Audit {
    pub fn control(&self) -> control::Controls {
        control::Controls::new(&self.home)
    }

    /// Whether a listener on `ip` is in scope.
    pub fn in_scope(&self, ip: IpAddr) -> bool {
        match &self.addresses {
            None => true,
            Some(list) => list.contains(&ip),
        }
    }
}

/// Run every check, in the order of the report.
pub fn run_all(a: &Audit) -> Vec<Finding> {
    let mut v = Vec::new();
    v.extend(installation::check(a));
    v.extend(queuecheck::check(a));
    let listeners = net::listeners();
    let ours = services::our_services(a);
    v.extend(sendmail::check(a, &listeners, &ours));
    v.extend(services::check(a, &ours, &listeners));
    v.extend(relay::check(a, &listeners, &ours));
    v.extend(tlscheck::check(a, &listeners, &ours));
    v.extend(dnscheck::check(a));
    v.extend(accounts::check(a));
    v.extend(integrity::check(a));
    v
}

/// The exit status for a set of findings: 0 when nothing at warning or above, 1 when
/// the worst is a warning, 2 when there is an error.
pub fn exit_status(findings: &[Finding]) -> i32 {
    match findings.iter().map(|f| f.severity).max() {
        Some(Severity::Error) => 2,
        Some(Severity::Warning) => 1,
        _ => 0,
    }
}
