//! The services check: every service of this installation linked into the service
//! directory (an entry leading to `HOME/supervise/NAME`) is up under supervise and
//! logging (its `log` service up, running multilog, `log/main` owned by qmaill); every
//! TCP/UDP listener in scope belongs to one of our services or is reported as unexpected.

use crate::net::Listener;
use crate::{Audit, Finding, Severity};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

const CHECK: &str = "services";

/// One of our services linked into the service directory.
#[derive(Clone, Debug)]
pub struct Service {
    pub name: String,
    /// `SERVICEDIR/NAME`.
    pub dir: PathBuf,
    /// The pid supervise reports, when up.
    pub pid: Option<u32>,
    /// The control file naming its port, for the network services.
    pub port_control: Option<&'static str>,
}

/// The control file holding the port of each network service (the run scripts' `num`).
pub fn port_control(name: &str) -> Option<&'static str> {
    match name {
        "qmail-smtpd" => Some("smtpdport"),
        "qmail-submission" => Some("submissionport"),
        "qmail-smtps" => Some("smtpsport"),
        "qmail-pop3d" => Some("pop3dport"),
        "qmail-pop3ds" => Some("pop3dsport"),
        _ => None,
    }
}

fn up_pid(dir: &Path) -> Result<Option<u32>, String> {
    match svcdir::status::read(&dir.join("supervise/status")) {
        Ok(s) if s.pid != 0 && Path::new(&format!("/proc/{}", s.pid)).exists() => Ok(Some(s.pid)),
        Ok(_) => Ok(None),
        Err(_) => Err("no readable supervise/status (is svscan running?)".into()),
    }
}

/// Our services in the service directory.
pub fn our_services(a: &Audit) -> Vec<Service> {
    let mine = std::fs::canonicalize(a.home.join("supervise")).unwrap_or_default();
    let Ok(rd) = std::fs::read_dir(&a.service_dir) else {
        return vec![];
    };
    let mut v: Vec<Service> = rd
        .flatten()
        .filter_map(|e| {
            let target = std::fs::canonicalize(e.path()).ok()?;
            if target.parent()? != mine {
                return None;
            }
            let name = target.file_name()?.to_string_lossy().into_owned();
            Some(Service {
                port_control: port_control(&name),
                pid: up_pid(&e.path()).ok().flatten(),
                name,
                dir: e.path(),
            })
        })
        .collect();
    v.sort_by(|x, y| x.name.cmp(&y.name));
    v
}

fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // pid (comm) state ppid ...: comm may hold spaces and parentheses
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// Whether `pid` is `ancestor` or runs below it.
pub fn descends_from(pid: u32, ancestor: u32) -> bool {
    let mut p = pid;
    for _ in 0..64 {
        if p == ancestor {
            return true;
        }
        match parent_of(p) {
            Some(q) if q > 1 && q != p => p = q,
            _ => return false,
        }
    }
    false
}

/// The service of ours holding `l`, if any.
pub fn owner<'a>(l: &Listener, ours: &'a [Service]) -> Option<&'a Service> {
    ours.iter().find(|s| {
        s.pid
            .is_some_and(|sp| l.pids.iter().any(|(p, _)| descends_from(*p, sp)))
    })
}

pub fn check(a: &Audit, ours: &[Service], listeners: &[Listener]) -> Vec<Finding> {
    let mut v = Vec::new();
    if !a.service_dir.is_dir() {
        v.push(Finding::info(
            CHECK,
            a.service_dir.display().to_string(),
            "no service directory: supervised services not checked",
        ));
    } else if ours.is_empty() {
        v.push(Finding::new(
            CHECK,
            Severity::Warning,
            a.service_dir.display().to_string(),
            format!("services of {} linked here", a.home.display()),
            "none",
            "qmail-install --services links them (INSTALL.md)",
        ));
    }
    for s in ours {
        v.extend(service(s));
        if s.port_control.is_some()
            && s.pid.is_some()
            && !listeners
                .iter()
                .any(|l| owner(l, ours).is_some_and(|o| o.name == s.name))
        {
            v.push(Finding::new(
                CHECK,
                Severity::Warning,
                s.dir.display().to_string(),
                "listening on its port",
                "up, but no listener of it found",
                format!(
                    "read {}/log/main/current (a port in use? a bad control file?)",
                    s.dir.display()
                ),
            ));
        }
    }
    for l in listeners.iter().filter(|l| a.in_scope(l.ip)) {
        match owner(l, ours) {
            Some(s) => v.push(Finding::info(
                CHECK,
                l.shown(),
                format!("listener of {}", s.name),
            )),
            None if a.expected_ports.contains(&l.port) => {
                v.push(Finding::info(CHECK, l.shown(), "expected (--expect)"))
            }
            None => v.push(Finding::new(
                CHECK,
                Severity::Warning,
                l.shown(),
                "only the listeners of our configured services",
                "a listener of something else",
                "stop the program or firewall the port if it should not be reachable; \
                 qmail-audit --expect PORT if it should",
            )),
        }
    }
    v
}

fn service(s: &Service) -> Vec<Finding> {
    let mut v = Vec::new();
    let shown = s.dir.display().to_string();
    match up_pid(&s.dir) {
        Ok(Some(_)) => {}
        Ok(None) => v.push(Finding::new(
            CHECK,
            Severity::Error,
            shown.clone(),
            "up",
            "down",
            format!("svc -u {shown}; read {shown}/log/main/current for why it stopped"),
        )),
        Err(e) => v.push(Finding::new(
            CHECK,
            Severity::Error,
            shown.clone(),
            "supervised",
            e,
            "start svscan (HOME/boot/svscan.service)",
        )),
    }
    let log = s.dir.join("log");
    if !log.is_dir() {
        v.push(Finding::new(
            CHECK,
            Severity::Warning,
            shown,
            "a log service",
            "none",
            "rerun qmail-install",
        ));
        return v;
    }
    let lshown = log.display().to_string();
    match up_pid(&log) {
        Ok(Some(pid)) => {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if comm.trim_end() != "multilog" {
                v.push(Finding::new(
                    CHECK,
                    Severity::Warning,
                    lshown.clone(),
                    "multilog running",
                    format!("{} running", comm.trim_end()),
                    "check log/run",
                ));
            }
        }
        Ok(None) => v.push(Finding::new(
            CHECK,
            Severity::Error,
            lshown.clone(),
            "up",
            "down",
            format!("svc -u {lshown}"),
        )),
        Err(e) => v.push(Finding::new(
            CHECK,
            Severity::Error,
            lshown.clone(),
            "supervised",
            e,
            "start svscan",
        )),
    }
    if qsys::is_root() {
        let main = log.join("main");
        let want = qsys::ids::uid("qmaill").map(|u| u.as_raw());
        match std::fs::symlink_metadata(&main) {
            Ok(m) if m.is_dir() && want.is_none_or(|u| u == m.uid()) => {}
            Ok(m) => v.push(Finding::new(
                CHECK,
                Severity::Warning,
                main.display().to_string(),
                "a directory owned by qmaill",
                format!(
                    "{} owned by {}",
                    if m.is_dir() {
                        "a directory"
                    } else {
                        "not a directory"
                    },
                    qsys::ids::name_of_uid(nix::unistd::Uid::from_raw(m.uid()))
                ),
                format!("chown qmaill {}", main.display()),
            )),
            Err(_) => v.push(Finding::new(
                CHECK,
                Severity::Warning,
                main.display().to_string(),
                "present",
                "missing",
                "svc -t the log service (log/run creates it)",
            )),
        }
    }
    v
}
