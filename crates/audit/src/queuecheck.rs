//! The queue check, as qmail's queue repair tools (queue_repair, qmail-qsanity) check:
//! every `info`, `local`, `remote`, `todo`, `intd` and `bounce` entry has its `mess`
//! file; every `mess` file has its `todo` entry or its `info` file (else it is an
//! orphan qmail-send will never deliver); files sit in the split directory of their
//! number; `mess`, `intd`, `todo` files belong to qmailq and `info`, `local`, `remote`,
//! `bounce` to qmails (qmail.md 2.1). Then the age of the oldest message against
//! `queuelifetime`, and free space and inodes on the queue's and the logs' file systems.

use crate::{Audit, Finding, Severity};
use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

const CHECK: &str = "queue";

/// A message file younger than this without todo or info may be on its way in.
pub const IN_FLIGHT: u64 = 3600;

/// One queue file: directory kind, number, path, owner, mtime.
#[derive(Clone, Debug)]
pub struct Entry {
    pub dir: &'static str,
    pub id: u64,
    pub path: PathBuf,
    pub uid: u32,
    pub mtime: u64,
    /// The split subdirectory it was found in (split directories only).
    pub split: Option<u64>,
}

const SPLIT_DIRS: [&str; 4] = ["mess", "info", "local", "remote"];
const FLAT: [&str; 3] = ["todo", "intd", "bounce"];

/// Read the queue's file names. Names that are not numbers are reported as strays.
pub fn scan(q: &Path) -> (Vec<Entry>, Vec<PathBuf>) {
    let mut entries = Vec::new();
    let mut strays = Vec::new();
    let mut add = |dir: &'static str, d: PathBuf, split: Option<u64>| {
        let Ok(rd) = std::fs::read_dir(&d) else {
            return;
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Ok(m) = e.path().symlink_metadata() else {
                continue;
            };
            match name.parse::<u64>() {
                Ok(id) if m.is_file() => entries.push(Entry {
                    dir,
                    id,
                    path: e.path(),
                    uid: m.uid(),
                    mtime: u64::try_from(m.mtime()).unwrap_or(0),
                    split,
                }),
                _ => strays.push(e.path()),
            }
        }
    };
    for dir in SPLIT_DIRS {
        for s in 0..queue::SPLIT {
            add(dir, q.join(dir).join(s.to_string()), Some(s));
        }
    }
    for dir in FLAT {
        add(dir, q.join(dir), None);
    }
    (entries, strays)
}

/// The consistency findings for a scanned queue; `uids`: (qmailq, qmails) when known.
pub fn consistency(
    entries: &[Entry],
    strays: &[PathBuf],
    uids: Option<(u32, u32)>,
    now: u64,
) -> Vec<Finding> {
    let mut by: BTreeMap<&str, BTreeSet<u64>> = BTreeMap::new();
    for e in entries {
        by.entry(e.dir).or_default().insert(e.id);
    }
    let has = |d: &str, id: u64| by.get(d).is_some_and(|s| s.contains(&id));
    let mut v = Vec::new();
    for p in strays {
        v.push(Finding::new(
            CHECK,
            Severity::Warning,
            p.display().to_string(),
            "only files named by a message number",
            "a stray entry",
            "stop qmail-send, move it out of the queue, start qmail-send",
        ));
    }
    for e in entries {
        let shown = e.path.display().to_string();
        if let Some(s) = e.split
            && e.id % queue::SPLIT != s
        {
            v.push(Finding::new(
                CHECK,
                Severity::Error,
                shown.clone(),
                format!("in split directory {}", e.id % queue::SPLIT),
                format!("in split directory {s}"),
                "stop qmail-send and move it to its split directory (queue_repair)",
            ));
        }
        let orphan = match e.dir {
            "mess" => !has("todo", e.id) && !has("info", e.id) && !has("intd", e.id),
            "info" | "todo" | "intd" | "bounce" => !has("mess", e.id),
            "local" | "remote" => !has("info", e.id) || !has("mess", e.id),
            _ => false,
        };
        if orphan {
            let young = e.dir == "mess" && now.saturating_sub(e.mtime) < IN_FLIGHT;
            let (expected, fix) = match e.dir {
                "mess" => (
                    "a todo/ entry or an info/ file for the message",
                    "none: qmail-send will never deliver it; stop qmail-send and remove it \
                     (qmail-clean removes a stale one after 36 hours), or requeue it",
                ),
                _ => (
                    "its mess/ file (and info/ for local/ and remote/)",
                    "stop qmail-send and remove the orphaned entry (queue_repair)",
                ),
            };
            v.push(Finding::new(
                CHECK,
                if young {
                    Severity::Info
                } else {
                    Severity::Warning
                },
                shown.clone(),
                expected,
                if young {
                    "an orphan, or a message on its way in"
                } else {
                    "an orphan"
                },
                fix,
            ));
        }
        if let Some((qmailq, qmails)) = uids {
            let want = if matches!(e.dir, "mess" | "todo" | "intd") {
                qmailq
            } else {
                qmails
            };
            if e.uid != want {
                let who = if want == qmailq { "qmailq" } else { "qmails" };
                v.push(Finding::new(
                    CHECK,
                    Severity::Error,
                    shown.clone(),
                    format!("owned by {who}"),
                    format!("owned by uid {}", e.uid),
                    format!("chown {who} {shown}"),
                ));
            }
        }
    }
    v
}

fn free_space(path: &Path, what: &str) -> Vec<Finding> {
    let Ok(s) = nix::sys::statvfs::statvfs(path) else {
        return vec![];
    };
    let pct = |free: u64, total: u64| free.saturating_mul(100).checked_div(total).unwrap_or(100);
    let space = pct(s.blocks_available(), s.blocks());
    let inodes = pct(s.files_available(), s.files());
    let mut v = Vec::new();
    for (name, p) in [("space", space), ("inodes", inodes)] {
        let sev = if p < 1 {
            Severity::Error
        } else if p < 5 {
            Severity::Warning
        } else {
            Severity::Info
        };
        v.push(Finding::new(
            CHECK,
            sev,
            format!("free {name} for {what} ({})", path.display()),
            "at least 5% free",
            format!("{p}% free"),
            if sev == Severity::Info {
                String::new()
            } else {
                "free some, or grow the file system: a full queue refuses mail (4xx)".into()
            },
        ));
    }
    v
}

pub fn check(a: &Audit) -> Vec<Finding> {
    let q = a.home.join("queue");
    let (entries, strays) = scan(&q);
    let uids = match (qsys::ids::uid("qmailq"), qsys::ids::uid("qmails")) {
        (Some(q), Some(s)) if qsys::is_root() => Some((q.as_raw(), s.as_raw())),
        _ => None,
    };
    let mut v = consistency(&entries, &strays, uids, a.now);
    let messages: Vec<&Entry> = entries.iter().filter(|e| e.dir == "mess").collect();
    let lifetime = a
        .control()
        .number("queuelifetime")
        .map(|c| c.value)
        .unwrap_or(604_800);
    match messages.iter().map(|e| e.mtime).min() {
        None => v.push(Finding::info(
            CHECK,
            q.display().to_string(),
            "no messages in the queue",
        )),
        Some(t) => {
            let age = a.now.saturating_sub(t);
            let sev = if age > lifetime {
                Severity::Warning
            } else {
                Severity::Info
            };
            v.push(Finding::new(
                CHECK,
                sev,
                q.display().to_string(),
                format!("no message older than queuelifetime ({lifetime} s)"),
                format!(
                    "{} messages, the oldest {} hours old",
                    messages.len(),
                    age / 3600
                ),
                if sev == Severity::Info {
                    ""
                } else {
                    "qmail-qread shows it; is qmail-send running?"
                },
            ));
        }
    }
    v.extend(free_space(&q, "the queue"));
    if let Ok(rd) = std::fs::read_dir(&a.service_dir) {
        let mut seen = BTreeSet::new();
        for e in rd.flatten() {
            let main = e.path().join("log/main");
            if let Ok(m) = std::fs::metadata(&main)
                && seen.insert(m.dev())
            {
                v.extend(free_space(&main, "the logs"));
            }
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(dir: &'static str, id: u64, split: Option<u64>, mtime: u64) -> Entry {
        Entry {
            dir,
            id,
            path: PathBuf::from(format!("{dir}/{id}")),
            uid: 1,
            mtime,
            split,
        }
    }

    #[test]
    fn orphans_and_splits() {
        let now = 100_000;
        let ok = vec![
            e("mess", 5, Some(5), 0),
            e("info", 5, Some(5), 0),
            e("remote", 5, Some(5), 0),
            e("mess", 30, Some(7), 0),
            e("todo", 30, None, 0),
        ];
        assert!(consistency(&ok, &[], Some((1, 1)), now).is_empty());
        let bad = vec![
            e("mess", 6, Some(6), 0),        // old orphan
            e("mess", 8, Some(8), now - 10), // maybe in flight
            e("info", 9, Some(9), 0),        // no mess
            e("local", 10, Some(11), 0),     // wrong split, no info
        ];
        let f = consistency(&bad, &[PathBuf::from("todo/x")], Some((1, 2)), now);
        let sev = |s: &str| {
            f.iter()
                .filter(|x| x.subject == s)
                .map(|x| x.severity)
                .max()
        };
        assert_eq!(sev("mess/6"), Some(Severity::Warning));
        assert_eq!(sev("mess/8"), Some(Severity::Info));
        assert_eq!(sev("info/9"), Some(Severity::Error)); // owned by uid 1, not qmails (2)
        assert_eq!(sev("local/10"), Some(Severity::Error));
        assert_eq!(sev("todo/x"), Some(Severity::Warning));
    }
}
