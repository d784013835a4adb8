//! One message through the whole chain: what qmail-qfilter does between reading its
//! input and queueing, shared by the qmail-qfilter program (started per message) and
//! qmail-qfilterd's per-message child ([`crate::served`]).
//!
//! [`Settings::load`] reads the chain's limits and finds the filter user, [`filter_env`]
//! builds the one environment every filter gets (qmail-qfilter's manual, ENVIRONMENT),
//! and [`run_chain`] runs the filters in turn over sealed memory files, logging why the
//! chain stopped, and ends with an [`End`]: queue this file, drop, or refuse. Nothing
//! here exits the process; the caller turns the end into an exit code or an answer.

use crate::chain::Filter;
use crate::envelope::Envelope;
use crate::run::{self, Ended, Identity, Limits, Verdict};
use queue::client::QqFailure;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::path::Path;
use std::time::{Duration, Instant};

/// The caller's variables a filter may see, when the caller may speak for the
/// connection (root, or qmaild: qmail-smtpd).
pub const KEPT: [&str; 11] = [
    "PROTO",
    "TCPLOCALIP",
    "TCPLOCALPORT",
    "TCPLOCALHOST",
    "TCPREMOTEIP",
    "TCPREMOTEPORT",
    "TCPREMOTEHOST",
    "TCPREMOTEINFO",
    "RELAYCLIENT",
    "SMTPAUTHUSER",
    "SMTPHELO",
];

/// Why the chain cannot run or went wrong: qmail-queue's exit code and a log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trouble {
    pub code: i32,
    pub why: String,
}

fn trouble(code: i32, why: impl Into<String>) -> Trouble {
    Trouble {
        code,
        why: why.into(),
    }
}

/// The chain's settings for one message, read afresh for each (a change of a control
/// file counts from the next message on).
#[derive(Debug, Clone)]
pub struct Settings {
    pub filters: Vec<Filter>,
    /// `control/filtermemory`.
    pub memory: u64,
    /// `control/filtertimeout`: the whole chain's wall-clock limit.
    pub timeout: Duration,
    /// Who the filters run as (`None`: as the caller, in a single-user install).
    pub identity: Option<Identity>,
}

impl Settings {
    /// The limits of `control/filtermemory` and `control/filtertimeout` (55 when one
    /// cannot be read) and the filter user ([`identity`], 71) for `filters`.
    pub fn load(home: &Path, filters: Vec<Filter>) -> Result<Settings, Trouble> {
        let identity = identity(home).map_err(|e| trouble(71, e))?;
        Settings::load_for(home, filters, identity)
    }

    /// [`Settings::load`] with the identity already known (qmail-qfilterd finds it once).
    pub fn load_for(
        home: &Path,
        filters: Vec<Filter>,
        identity: Option<Identity>,
    ) -> Result<Settings, Trouble> {
        let controls = control::Controls::new(home);
        let limit = |name: &str, default| {
            controls
                .int(name, default)
                .map_err(|e| trouble(55, format!("unable to read control/{name}: {e}")))
        };
        let memory = limit("filtermemory", crate::DEFAULT_MEMORY)?;
        let timeout = Duration::from_secs(limit("filtertimeout", crate::DEFAULT_TIMEOUT)?);
        Ok(Settings {
            filters,
            memory,
            timeout,
            identity,
        })
    }
}

/// The filters of `control/filters` (none when it is missing; 55 when it cannot be
/// read).
pub fn control_filters(home: &Path) -> Result<Vec<Filter>, Trouble> {
    let path = control::Controls::new(home).path("filters");
    match std::fs::read(path) {
        Ok(text) => Ok(crate::chain::from_control(&String::from_utf8_lossy(&text))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(trouble(55, format!("unable to read control/filters: {e}"))),
    }
}

/// The identity filters run as (qmail-qfilter's manual, USER): the filter user when we
/// are it (set-id, or qmail-qfilterd started as it) or root; ourselves in a single-user
/// install (HOME owned by the effective user); anything else is an error.
pub fn identity(home: &Path) -> Result<Option<Identity>, String> {
    use std::os::unix::fs::MetadataExt;
    let euid = nix::unistd::geteuid();
    match qsys::ids::account(crate::FILTER_USER) {
        Some((uid, gid)) if euid == uid || euid.is_root() => Ok(Some(Identity {
            uid: uid.as_raw(),
            gid: gid.as_raw(),
        })),
        None if euid.is_root() => Err(format!(
            "no user {}: filters never run as root",
            crate::FILTER_USER
        )),
        _ => {
            let owner = std::fs::metadata(home).map(|m| m.uid()).unwrap_or(0);
            if owner == euid.as_raw() {
                Ok(None)
            } else {
                Err(format!(
                    "not running as {} (install qmail-qfilter set-user-id {0})",
                    crate::FILTER_USER
                ))
            }
        }
    }
}

/// The filters' whole environment: the caller's [`KEPT`] variables as `caller` gives
/// them (nothing, for a caller who may not speak for the connection), the envelope's
/// `QMAILUSER`, `QMAILHOST` and `QMAILRCPTS`, and `PATH` (HOME/bin first).
pub fn filter_env(
    home: &Path,
    envelope: &Envelope,
    caller: impl Fn(&str) -> Option<OsString>,
) -> Vec<(OsString, OsString)> {
    let mut env: Vec<(OsString, OsString)> = KEPT
        .iter()
        .filter_map(|k| caller(k).map(|v| (OsString::from(k), v)))
        .collect();
    env.extend(envelope.variables());
    let mut path = OsString::from(home.join("bin"));
    path.push(":/usr/local/bin:/usr/bin:/bin");
    env.push(("PATH".into(), path));
    env
}

/// Whether `filter` is qmail-scan, whose code is linked in: `qmail-scan` (found first in
/// HOME/bin) or HOME/bin/qmail-scan, without arguments (it takes none). It then runs in
/// a forked child instead of as a program of its own (qmail-qfilter's manual, LINKED-IN
/// FILTER).
pub fn linked_in(home: &Path, filter: &[OsString]) -> bool {
    match filter {
        [program] => {
            program == OsStr::new("qmail-scan") || Path::new(program) == home.join("bin/qmail-scan")
        }
        _ => false,
    }
}

/// How the chain ended for a message.
#[derive(Debug)]
pub enum End {
    /// Every filter passed it on: queue this file (sealed, read from its start).
    Queue(File),
    /// A filter accepted the message and dropped it: nothing to queue, success.
    Drop,
    /// Refused with qmail-queue's exit code.
    Exit(i32),
    /// Refused with a filter's reason.
    Reason(QqFailure),
}

/// What [`run_chain`] found besides the end.
#[derive(Debug, Default, Clone, Copy)]
pub struct Report {
    /// A linked-in filter crashed ([`qsys::crash_signal`]): a fault or an
    /// abort in code that is a copy of the caller's. qmail-qfilterd starts afresh
    /// after one (doc/filter-chain.md).
    pub linked_crash: bool,
}

/// Run `settings.filters` in turn over `message` (sealed, `size` bytes), each output
/// sealed and handed to the next, `envelope` (sealed) on each filter's fd 3, `env` as
/// their environment; `scan` is qmail-scan's code, run in a forked child for a
/// [`linked_in`] filter (the caller must be single-threaded). Log lines name `me`.
#[allow(clippy::too_many_arguments)]
pub fn run_chain(
    me: &str,
    home: &Path,
    settings: &Settings,
    env: &[(OsString, OsString)],
    message: File,
    size: u64,
    envelope: &File,
    scan: &dyn Fn(),
) -> (End, Report) {
    let deadline = Instant::now() + settings.timeout;
    let mut report = Report::default();
    let mut message = message;
    let mut size = size;
    for (i, filter) in settings.filters.iter().enumerate() {
        let linked = linked_in(home, filter);
        let builtin: Option<&dyn Fn()> = linked.then_some(scan);
        let name = filter.first().map(|p| p.to_string_lossy().into_owned());
        let name = format!("filter {} ({})", i + 1, name.unwrap_or_default());
        let left = deadline.saturating_duration_since(Instant::now());
        let output = match crate::spool::memory_file(c"output") {
            Ok(f) => f,
            Err(e) => {
                return (
                    fatal(me, 53, &format!("unable to create a memory file: {e}")),
                    report,
                );
            }
        };
        let limits = Limits {
            memory: settings.memory,
            file_size: size.saturating_mul(2).saturating_add(16 << 20),
            timeout: left,
        };
        let ended = if left.is_zero() {
            Ended::TimedOut
        } else {
            run::run(
                filter,
                builtin,
                env,
                &message,
                &output,
                envelope,
                limits,
                settings.identity,
            )
            .unwrap_or_else(|e| {
                qsys::die::warn(me, "warning", &format!("unable to run {name}: {e}"));
                Ended::Signal(0)
            })
        };
        report.linked_crash |= linked && matches!(ended, Ended::Signal(s) if qsys::crash_signal(s));
        match run::verdict(&ended) {
            Verdict::Next => {
                if let Err(e) = crate::spool::seal(&output) {
                    return (
                        fatal(me, 53, &format!("unable to seal the output of {name}: {e}")),
                        report,
                    );
                }
                size = output.metadata().map(|m| m.len()).unwrap_or(size);
                message = output;
            }
            verdict => return (stop(me, &name, &ended, verdict), report),
        }
    }
    match std::io::Seek::rewind(&mut message) {
        Ok(_) => (End::Queue(message), report),
        Err(_) => (fatal(me, 53, "unable to seek in a memory file"), report),
    }
}

fn fatal(me: &str, code: i32, why: &str) -> End {
    qsys::die::warn(me, "fatal", why);
    End::Exit(code)
}

/// The end after filter `name` with its verdict (anything but the next filter), logged.
fn stop(me: &str, name: &str, ended: &Ended, verdict: Verdict) -> End {
    let log = |what: &str| qsys::die::warn(me, "info", &format!("{name} {what}"));
    match verdict {
        Verdict::Next => fatal(me, 81, "internal error: the chain stopped on a pass"),
        Verdict::Drop => {
            log("dropped the message");
            End::Drop
        }
        Verdict::Exit(code) => {
            log(&format!("exited {code}"));
            End::Exit(code)
        }
        Verdict::Reason(r) => {
            log(&match ended {
                Ended::TimedOut => "was killed at the time limit".to_string(),
                Ended::Signal(s) => format!("failed (signal {s})"),
                Ended::Exit(..) => format!("refused: {}", qsys::logsafe::text(r.text.as_bytes())),
            });
            End::Reason(r)
        }
    }
}
