//! The sendmail check: `/usr/sbin/sendmail` and `/usr/lib/sendmail` lead to ours
//! (`HOME/boot/replace-sendmail` makes them so); no other MTA package installed
//! (`dpkg-query`) or running (the process list); the only listener on the SMTP ports
//! (our configured smtpd, submission and smtps ports) is ours.

use crate::net::Listener;
use crate::services::{self, Service};
use crate::{Audit, Finding, Severity};
use std::path::Path;
use std::process::{Command, Stdio};

const CHECK: &str = "sendmail";

/// Debian packages of other MTAs.
const OTHER_MTAS: &[&str] = &[
    "postfix",
    "exim4-daemon-light",
    "exim4-daemon-heavy",
    "sendmail-bin",
    "opensmtpd",
    "nullmailer",
    "courier-mta",
    "dma",
    "ssmtp",
    "msmtp-mta",
    "notqmail",
];

/// Process names of other MTAs' daemons (postfix's is `master`).
const OTHER_DAEMONS: &[&str] = &[
    "master",
    "exim4",
    "sendmail",
    "sendmail-mta",
    "smtpd",
    "nullmailer-send",
    "courieresmtpd",
];

pub fn check(a: &Audit, listeners: &[Listener], ours: &[Service]) -> Vec<Finding> {
    let mut v = Vec::new();
    if a.local_only {
        v.push(Finding::info(
            CHECK,
            "host",
            "--local: sendmail links and other MTAs not checked",
        ));
    } else {
        v.extend(links(&a.home));
        v.extend(packages(&a.home));
        v.extend(processes(&a.home));
    }
    v.extend(smtp_ports(a, listeners, ours));
    v
}

pub fn links(home: &Path) -> Vec<Finding> {
    let ours = std::fs::canonicalize(home.join("bin/sendmail")).ok();
    let fix = format!("{}/boot/replace-sendmail", home.display());
    ["/usr/sbin/sendmail", "/usr/lib/sendmail"]
        .iter()
        .filter_map(|p| {
            let to = std::fs::canonicalize(p).ok();
            if to.is_some() && to == ours {
                return None;
            }
            Some(Finding::new(
                CHECK,
                Severity::Warning,
                *p,
                format!("a link to {}/bin/sendmail", home.display()),
                match to {
                    Some(t) => format!("leads to {}", t.display()),
                    None => "missing".into(),
                },
                fix.clone(),
            ))
        })
        .collect()
}

fn packages(home: &Path) -> Vec<Finding> {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f", "${Package} ${Status}\n"])
        .args(OTHER_MTAS)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output();
    let Ok(out) = out else {
        return vec![Finding::info(
            CHECK,
            "packages",
            "no dpkg-query: other MTA packages not checked",
        )];
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.ends_with(" installed") && !l.contains("not-installed"))
        .filter_map(|l| l.split_whitespace().next())
        .map(|p| {
            Finding::new(
                CHECK,
                Severity::Warning,
                format!("package {p}"),
                "no other MTA installed",
                "installed",
                format!("apt-get purge {p} (after {}/boot/replace-sendmail), or make sure it never runs", home.display()),
            )
        })
        .collect()
}

fn processes(home: &Path) -> Vec<Finding> {
    let mut v = Vec::new();
    let mine = std::fs::canonicalize(home.join("bin")).unwrap_or_default();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return v;
    };
    for e in rd.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
        let comm = comm.trim_end();
        if !OTHER_DAEMONS.contains(&comm) {
            continue;
        }
        let exe = std::fs::read_link(e.path().join("exe")).unwrap_or_default();
        if exe.starts_with(&mine) {
            continue;
        }
        v.push(Finding::new(
            CHECK,
            Severity::Warning,
            format!("process {comm}[{pid}] ({})", exe.display()),
            "no other MTA running",
            "running",
            "stop and disable it (systemctl disable --now postfix, exim4, ...)",
        ));
    }
    v
}

/// The ports of our SMTP services: the configured number, or (0: any free one) the
/// ports our service actually listens on.
fn smtp_ports(a: &Audit, listeners: &[Listener], ours: &[Service]) -> Vec<Finding> {
    let ctl = a.control();
    let mut ports: Vec<(u16, &str)> = Vec::new();
    for name in ["qmail-smtpd", "qmail-submission", "qmail-smtps"] {
        let Some(pc) = services::port_control(name) else {
            continue;
        };
        let configured = ctl.number(pc).map(|c| c.value).unwrap_or(0);
        if let Ok(p @ 1..) = u16::try_from(configured) {
            ports.push((p, name));
        } else {
            for l in listeners {
                if services::owner(l, ours).is_some_and(|s| s.name == name) {
                    ports.push((l.port, name));
                }
            }
        }
    }
    let mut v = Vec::new();
    for l in listeners
        .iter()
        .filter(|l| l.proto == "tcp" && a.in_scope(l.ip))
    {
        let Some((_, name)) = ports.iter().find(|(p, _)| *p == l.port) else {
            continue;
        };
        if services::owner(l, ours).is_none() {
            v.push(Finding::new(
                CHECK,
                Severity::Error,
                l.shown(),
                format!("only our {name} on port {}", l.port),
                "another program listening on it",
                "stop the other MTA or move it off the port",
            ));
        }
    }
    v
}
