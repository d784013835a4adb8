//! qmail-guard: spamguard's job (reference/wave2.md 4.1 and 4.3) without its bugs. It
//! reads the multilog logs of qmail-send and of the SMTP and POP3 services
//! incrementally ([`logs`]), counts messages per envelope sender and failed logins plus
//! permanently refused recipients per client address ([`events`]) in a sliding window
//! timed by the lines' TAI64N stamps ([`window`]), and acts on three thresholds:
//!
//! - warn: one notice to the administrator (at most one per key per window);
//! - block: the sender goes into `control/badmailfrom`, the client address into a
//!   `IP:deny` rule at the top of `control/tcp.smtp`, whose cdb is rebuilt ([`files`]);
//! - paranoid (spamguard's meaning, which its own bug lost: it never read its "high"
//!   file): senders and addresses in `control/guardhigh` (list servers, a busy office
//!   NAT) are exempt from warn and block, but not from paranoid: at that count they are
//!   blocked all the same. Without guardhigh entries paranoid only names the block.
//!
//! `control/guardignore` is never acted on (not even at paranoid), nor is what an
//! administrator's own badmailfrom line already refuses. Patterns in both lists are
//! matched case-insensitively against the sender or the address text, with `*` (any
//! run) and `?` (one character). Blocks are lifted after `control/guardexpire` seconds:
//! exactly the lines qmail-guard added are removed ([`files`]).
//!
//! Every action is one log line on stderr (`qmail-guard: block sender ...`) and one
//! notice mail to `control/guardadmin` through qmail-inject. What it did is remembered
//! in `HOME/guard/state` ([`state`]), written after the files were changed; a pass that
//! cannot change a file saves nothing, so the next pass reads the same lines again.
//! Two passes never run at once (`HOME/guard/lock`).

pub mod events;
pub mod files;
pub mod logs;
pub mod state;
pub mod window;

use events::Event;
use state::{Block, Kind, State};
use std::io;
use std::path::{Path, PathBuf};
use window::Secs;

/// Most keys each window keeps (memory bound: a few MB at most).
pub const MAX_KEYS: usize = 50_000;

/// Three thresholds for one kind of key (0 = off).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    pub warn: u64,
    pub block: u64,
    pub paranoid: u64,
}

impl Limits {
    /// spamguard's check: warn < block < paranoid, where set.
    fn check(&self, what: &str) -> Result<(), String> {
        if self.block > 0 && self.warn >= self.block {
            return Err(format!("control/{what}warn must be below {what}block"));
        }
        if self.paranoid > 0 && self.block > 0 && self.paranoid <= self.block {
            return Err(format!("control/{what}paranoid must be above {what}block"));
        }
        Ok(())
    }

    fn highest(&self) -> u64 {
        self.warn.max(self.block).max(self.paranoid)
    }
}

/// Everything a pass needs, from the control files.
#[derive(Clone, Debug)]
pub struct Config {
    pub home: PathBuf,
    pub senders: Limits,
    pub clients: Limits,
    pub window: u64,
    pub expire: u64,
    pub interval: u64,
    pub admin: String,
    pub ignore: Vec<String>,
    pub high: Vec<String>,
    /// Log directories, and whether each was named in control/guardlogs.
    pub logs: Vec<(PathBuf, bool)>,
}

impl Config {
    pub fn read(home: &Path) -> Result<Config, String> {
        let c = control::Controls::new(home);
        let e = |e: io::Error| format!("unable to read the control files: {e}");
        let n = |name: &str| c.int(name, 0).map_err(e);
        let senders = Limits {
            warn: n("guardwarn")?,
            block: n("guardblock")?,
            paranoid: n("guardparanoid")?,
        };
        let clients = Limits {
            warn: n("guardclientwarn")?,
            block: n("guardclientblock")?,
            paranoid: n("guardclientparanoid")?,
        };
        senders.check("guard")?;
        clients.check("guardclient")?;
        let logs = match c.list("guardlogs").map_err(e)? {
            Some(l) => l.iter().map(|p| (home.join(p), true)).collect(),
            // every installed service's log but its own
            None => install::hier::SERVICES
                .iter()
                .filter(|&&s| s != "qmail-guard")
                .map(|s| (home.join("supervise").join(s).join("log/main"), false))
                .collect(),
        };
        Ok(Config {
            home: home.to_path_buf(),
            senders,
            clients,
            window: n("guardwindow")?,
            expire: n("guardexpire")?,
            interval: n("guardinterval")?,
            admin: c
                .line("guardadmin")
                .map_err(e)?
                .unwrap_or_else(|| "postmaster".into()),
            ignore: c.list_or_empty("guardignore").map_err(e)?,
            high: c.list_or_empty("guardhigh").map_err(e)?,
            logs,
        })
    }

    fn limits(&self, k: Kind) -> Limits {
        match k {
            Kind::Sender => self.senders,
            Kind::Client => self.clients,
        }
    }

    /// Whether any block is configured (otherwise the service has nothing to do).
    pub fn enabled(&self) -> bool {
        self.senders.block > 0 || self.clients.block > 0
    }

    pub fn badmailfrom(&self) -> PathBuf {
        self.home.join("control/badmailfrom")
    }
    pub fn rules(&self) -> PathBuf {
        self.home.join("control/tcp.smtp")
    }
    pub fn rules_cdb(&self) -> PathBuf {
        self.home.join("control/tcp.smtp.cdb")
    }
    pub fn dir(&self) -> PathBuf {
        self.home.join("guard")
    }
}

/// `*` matches any run, `?` one character; case-insensitive; the whole text must match.
pub fn wildmat(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.to_ascii_lowercase().chars().collect();
    let t: Vec<char> = text.to_ascii_lowercase().chars().collect();
    // iterative matcher with one backtrack point (linear-ish, no recursion)
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

fn listed(list: &[String], key: &str) -> bool {
    list.iter().any(|p| wildmat(p.trim(), key))
}

/// What a pass decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Warn {
        kind: Kind,
        key: String,
        count: usize,
    },
    Block {
        kind: Kind,
        key: String,
        count: usize,
        paranoid: bool,
    },
    Lift {
        kind: Kind,
        key: String,
        since: u64,
    },
}

impl Action {
    /// The log line (after `qmail-guard: `) and the notice's subject.
    pub fn line(&self, cfg: &Config) -> String {
        let span = cfg.window;
        let what = |k: Kind| match k {
            Kind::Sender => "messages",
            Kind::Client => "failed logins and refused recipients",
        };
        match self {
            Action::Warn { kind, key, count } => format!(
                "warn {} {key}: {count} {} in {span} s (warn at {})",
                kind.word(),
                what(*kind),
                cfg.limits(*kind).warn
            ),
            Action::Block {
                kind,
                key,
                count,
                paranoid,
            } => {
                let l = cfg.limits(*kind);
                let (word, at) = if *paranoid {
                    ("paranoid", l.paranoid)
                } else {
                    ("block", l.block)
                };
                format!(
                    "{word} {} {key}: {count} {} in {span} s ({word} at {at}); {}",
                    kind.word(),
                    what(*kind),
                    expiry(cfg, qsys::now())
                )
            }
            Action::Lift { kind, key, since } => {
                format!("lift {} {key}: blocked since {}", kind.word(), utc(*since))
            }
        }
    }
}

fn expiry(cfg: &Config, now: u64) -> String {
    if cfg.expire == 0 {
        "never expires".into()
    } else {
        format!("expires {}", utc(now.saturating_add(cfg.expire)))
    }
}

/// `2026-12-06 08:00:00 UTC`.
pub fn utc(secs: u64) -> String {
    let (y, m, d, h, mi, s, _) = qsys::date::civil(secs);
    format!("{y:04}-{m:02}-{d:02} {h:02}:{mi:02}:{s:02} UTC")
}

/// One pass over the events of the logs: counting and deciding, in memory.
struct Pass<'a> {
    cfg: &'a Config,
    state: State,
    badmailfrom: String,
    actions: Vec<Action>,
}

impl Pass<'_> {
    fn event(&mut self, t: Secs, ev: Event) {
        let (kind, key) = match ev {
            Event::Message(s) => (Kind::Sender, s),
            Event::AuthFailure(ip) | Event::RefusedRcpt(ip) => (Kind::Client, ip.to_string()),
        };
        let limits = self.cfg.limits(kind);
        if limits.highest() == 0
            || self.state.blocks.contains_key(&(kind, key.clone()))
            || listed(&self.cfg.ignore, &key)
        {
            return;
        }
        if kind == Kind::Sender && files::admin_lists_sender(&self.badmailfrom, &key) {
            return;
        }
        let count = self.state.window(kind).add(&key, t);
        let high = listed(&self.cfg.high, &key);
        let at = |n: u64| n > 0 && count as u64 >= n;
        let block = if at(limits.paranoid) {
            Some(true)
        } else if at(limits.block) && !high {
            Some(false)
        } else {
            None
        };
        if let Some(paranoid) = block {
            self.state.window(kind).clear(&key);
            self.state.warned.remove(&(kind, key.clone()));
            self.state.blocks.insert(
                (kind, key.clone()),
                Block {
                    since: qsys::now(),
                    count,
                },
            );
            self.actions.push(Action::Block {
                kind,
                key,
                count,
                paranoid,
            });
            return;
        }
        if at(limits.warn) && !high {
            let recent = self
                .state
                .warned
                .get(&(kind, key.clone()))
                .is_some_and(|&w| t - w < self.cfg.window as Secs);
            if !recent {
                self.state.warned.insert((kind, key.clone()), t);
                self.actions.push(Action::Warn { kind, key, count });
            }
        }
    }
}

/// The lock that keeps two passes apart, held while the returned file is open.
fn lock(dir: &Path) -> io::Result<std::fs::File> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(dir.join("lock"))?;
    // SAFETY: flock on a descriptor we own; no memory is involved.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(f)
}

/// Run one pass: read what the logs added, decide, change the files, save the state.
/// Returns the actions taken (each already logged and its notice sent).
pub fn run_pass(cfg: &Config) -> Result<Vec<Action>, String> {
    let dir = cfg.dir();
    let _lock = lock(&dir).map_err(|e| format!("unable to lock {}/lock: {e}", dir.display()))?;
    let state_path = dir.join("state");
    let keep = cfg.senders.highest().max(cfg.clients.highest()).max(1) as usize;
    let state = State::load(&state_path, cfg.window as Secs, keep, MAX_KEYS)
        .map_err(|e| format!("unable to read {}: {e}", state_path.display()))?;
    let badmailfrom = files::read(&cfg.badmailfrom())
        .map_err(|e| format!("unable to read {}: {e}", cfg.badmailfrom().display()))?;
    let mut pass = Pass {
        cfg,
        state,
        badmailfrom,
        actions: Vec::new(),
    };
    let mut newest: Option<Secs> = None;
    for (logdir, named) in &cfg.logs {
        if !logdir.is_dir() {
            if *named {
                warn(&format!("no log directory {}", logdir.display()));
            }
            continue;
        }
        let mut cursor = pass.state.cursors.get(logdir).copied().unwrap_or_default();
        let r = logs::read_new(logdir, &mut cursor, |line| {
            if let Some((t, ev)) = events::parse(line) {
                let secs = t.unix_secs();
                newest = Some(newest.map_or(secs, |n| n.max(secs)));
                pass.event(secs, ev);
            }
        });
        pass.state.cursors.insert(logdir.clone(), cursor);
        if let Err(e) = r {
            warn(&format!("unable to read {}: {e}", logdir.display()));
        }
    }
    if let Some(now) = newest {
        pass.state.senders.prune(now);
        pass.state.clients.prune(now);
        let span = cfg.window as Secs;
        pass.state.warned.retain(|_, t| now - *t < span);
    }
    let now = qsys::now();
    if cfg.expire > 0 {
        let due: Vec<(Kind, String, u64)> = pass
            .state
            .blocks
            .iter()
            .filter(|(_, b)| b.since.saturating_add(cfg.expire) <= now)
            .map(|((k, key), b)| (*k, key.clone(), b.since))
            .collect();
        for (kind, key, since) in due {
            pass.state.blocks.remove(&(kind, key.clone()));
            pass.actions.push(Action::Lift { kind, key, since });
        }
    }
    apply(cfg, &pass.actions, now)?;
    pass.state
        .save(&state_path)
        .map_err(|e| format!("unable to write {}: {e}", state_path.display()))?;
    for a in &pass.actions {
        let line = a.line(cfg);
        warn_plain(&line);
        if let Err(e) = notify(cfg, &line) {
            warn(&format!("unable to send the notice to {}: {e}", cfg.admin));
        }
    }
    Ok(pass.actions)
}

/// Change badmailfrom and the rules as the actions say.
fn apply(cfg: &Config, actions: &[Action], now: u64) -> Result<(), String> {
    let why = |count: usize| {
        format!(
            "{}: {count} in {} s; {}",
            utc(now),
            cfg.window,
            expiry(cfg, now)
        )
    };
    let (mut add_s, mut add_c, mut lift_s, mut lift_c) = (vec![], vec![], vec![], vec![]);
    for a in actions {
        match a {
            Action::Block {
                kind, key, count, ..
            } => {
                let (list, line) = match kind {
                    Kind::Sender => (&mut add_s, key.clone()),
                    Kind::Client => (&mut add_c, format!("{key}:deny")),
                };
                list.push(files::Added {
                    line,
                    why: why(*count),
                });
            }
            Action::Lift { kind, key, .. } => match kind {
                Kind::Sender => lift_s.push(key.clone()),
                Kind::Client => lift_c.push(format!("{key}:deny")),
            },
            Action::Warn { .. } => {}
        }
    }
    if !add_s.is_empty() || !lift_s.is_empty() {
        let p = cfg.badmailfrom();
        let old = files::read(&p).map_err(|e| format!("unable to read {}: {e}", p.display()))?;
        let new = files::appended(&files::without(&old, &lift_s), &add_s);
        if new != old {
            files::replace(&p, &new).map_err(|e| cannot(&p, e))?;
        }
    }
    let rules = cfg.rules();
    let cdb = cfg.rules_cdb();
    let old =
        files::read(&rules).map_err(|e| format!("unable to read {}: {e}", rules.display()))?;
    let new = files::prepended(&files::without(&old, &lift_c), &add_c);
    // also rebuild a cdb older than its text (an administrator's edit since)
    let stale = match (std::fs::metadata(&rules), std::fs::metadata(&cdb)) {
        (Ok(r), Ok(c)) => r.modified().ok() > c.modified().ok(),
        (Ok(_), Err(_)) => true,
        _ => false,
    };
    if new != old {
        files::replace_rules(&rules, &cdb, &new).map_err(|e| cannot(&cdb, e))?;
    } else if stale && !old.is_empty() {
        // best effort: an administrator's broken text must not stop sender blocking
        if let Err(e) = files::replace_rules(&rules, &cdb, &new) {
            warn(&cannot(&cdb, e));
        }
    }
    Ok(())
}

fn cannot(p: &Path, e: io::Error) -> String {
    let hint = if e.kind() == io::ErrorKind::PermissionDenied {
        " (it must be a link into HOME/guard/, see INSTALL.md)"
    } else {
        ""
    };
    format!("unable to replace {}: {e}{hint}", p.display())
}

/// The notice: `qmail-inject -a ADMIN` with a short message.
fn notify(cfg: &Config, line: &str) -> io::Result<()> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let subject: String = line.chars().take(200).collect();
    let msg = format!(
        "To: {}\nSubject: qmail-guard: {subject}\n\nqmail-guard on {}:\n\n{line}\n\n\
         Blocked senders are in control/badmailfrom, blocked clients in control/tcp.smtp,\n\
         each after a \"# qmail-guard:\" comment; remove both lines to lift a block now.\n",
        cfg.admin,
        qsys::hostname()
    );
    let mut child = Command::new(cfg.home.join("bin/qmail-inject"))
        .arg("-a")
        .arg(&cfg.admin)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(msg.as_bytes())?;
    }
    let st = child.wait()?;
    if st.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!("qmail-inject exited with {st}")))
    }
}

fn warn(msg: &str) {
    qsys::die::warn("qmail-guard", "warning", msg);
}

/// `qmail-guard: LINE` on stderr.
fn warn_plain(line: &str) {
    use std::io::Write;
    let _ = std::io::stderr()
        .lock()
        .write_all(format!("qmail-guard: {line}\n").as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildmat_matches_whole_text() {
        assert!(wildmat("postmaster@*", "Postmaster@example.test"));
        assert!(wildmat("*-owner@lists.*", "x-owner@lists.example.test"));
        assert!(wildmat("192.168.*", "192.168.1.5"));
        assert!(wildmat("a?c", "abc"));
        assert!(!wildmat("a?c", "abbc"));
        assert!(!wildmat("post", "postmaster"));
        assert!(wildmat("*", ""));
        assert!(!wildmat("", "x"));
        assert!(wildmat("*a*a*a*", &"a".repeat(100)));
        assert!(!wildmat("*a*a*b", &"a".repeat(2000)));
    }

    #[test]
    fn ordering_is_checked() {
        let l = Limits {
            warn: 20,
            block: 20,
            paranoid: 0,
        };
        assert!(l.check("guard").is_err());
        let l = Limits {
            warn: 10,
            block: 20,
            paranoid: 15,
        };
        assert!(l.check("guard").is_err());
        let l = Limits {
            warn: 0,
            block: 20,
            paranoid: 0,
        };
        assert!(l.check("guard").is_ok());
    }

    fn cfg(dir: &Path) -> Config {
        Config {
            home: dir.to_path_buf(),
            senders: Limits {
                warn: 5,
                block: 10,
                paranoid: 20,
            },
            clients: Limits {
                warn: 0,
                block: 3,
                paranoid: 0,
            },
            window: 3600,
            expire: 0,
            interval: 60,
            admin: "postmaster".into(),
            ignore: vec!["postmaster@*".into()],
            high: vec!["list@*".into()],
            logs: vec![],
        }
    }

    fn pass(c: &Config) -> Pass<'_> {
        Pass {
            cfg: c,
            state: State::new(3600, 20, 100),
            badmailfrom: "@bad.test\n".into(),
            actions: vec![],
        }
    }

    #[test]
    fn thresholds_ignore_and_high() {
        let d = tempfile::tempdir().unwrap();
        let c = cfg(d.path());
        let mut p = pass(&c);
        for i in 0..25 {
            for s in [
                "flood@x.test",
                "postmaster@x.test",
                "list@x.test",
                "a@bad.test",
            ] {
                p.event(i, Event::Message(s.into()));
            }
        }
        let got: Vec<String> = p.actions.iter().map(|a| a.line(&c)).collect();
        assert_eq!(got.len(), 3, "{got:?}");
        assert!(
            got[0].starts_with("warn sender flood@x.test: 5 messages"),
            "{got:?}"
        );
        assert!(
            got[1].starts_with("block sender flood@x.test: 10 messages"),
            "{got:?}"
        );
        // the high list is blocked only at paranoid; ignore and admin lines never
        assert!(
            got[2].starts_with("paranoid sender list@x.test: 20 messages"),
            "{got:?}"
        );
        // events spread wider than the window never add up
        let mut p = pass(&c);
        for i in 0..50 {
            p.event(i * 2000, Event::AuthFailure("192.0.2.1".parse().unwrap()));
        }
        assert!(p.actions.is_empty());
    }
}
