//! The installation check: every entry of the installer's table
//! (`install::hier::expected`, qmail's `hier.c`) has its owner, group and mode, set-id
//! bits exactly where intended; nothing under `control/` is writable by others; secrets
//! (the TLS key, DKIM keys under `control/dkim`, the password stores in `users/`) are
//! readable only by their users.

use crate::{Audit, Finding, Severity};
use install::hier::{EntryKind, Expected};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

const CHECK: &str = "installation";

/// Mode bits that give privileges: setuid, setgid.
const SETID: u32 = 0o6000;

pub fn check(a: &Audit) -> Vec<Finding> {
    let mut v = Vec::new();
    let root = qsys::is_root();
    let table = install::hier::expected();
    for e in &table {
        v.extend(entry(&a.home, e, root));
    }
    v.extend(unexpected_setid(&a.home, &table));
    v.extend(control_writable(&a.home.join("control")));
    v.extend(secrets(&a.home));
    v
}

fn name_of_gid(gid: u32) -> String {
    nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(gid))
        .ok()
        .flatten()
        .map(|g| g.name)
        .unwrap_or_else(|| gid.to_string())
}

fn name_of_uid(uid: u32) -> String {
    qsys::ids::name_of_uid(nix::unistd::Uid::from_raw(uid))
}

/// Compare one entry with the table; `owners`: also owner and group (an install by root).
pub fn entry(home: &Path, e: &Expected, owners: bool) -> Vec<Finding> {
    let path = home.join(&e.path);
    let shown = path.display().to_string();
    let m = match std::fs::symlink_metadata(&path) {
        Ok(m) => m,
        Err(_) if e.kind == EntryKind::File && e.path.starts_with("bin/") => return vec![],
        Err(err) => {
            return vec![Finding::new(
                CHECK,
                if e.kind == EntryKind::Dir {
                    Severity::Error
                } else {
                    Severity::Warning
                },
                shown,
                "present",
                format!("missing ({})", qsys::errstr::io(&err)),
                "rerun qmail-install (it never touches control files, the queue or mailboxes)",
            )];
        }
    };
    let ft = m.file_type();
    let kind_ok = match e.kind {
        EntryKind::Dir => ft.is_dir(),
        EntryKind::File => ft.is_file(),
        EntryKind::Fifo => ft.is_fifo(),
    };
    if !kind_ok {
        return vec![Finding::new(
            CHECK,
            Severity::Error,
            shown.clone(),
            format!("a {:?}", e.kind).to_lowercase(),
            if ft.is_symlink() {
                "a symbolic link".into()
            } else {
                "another file type".to_string()
            },
            format!("remove {shown} and rerun qmail-install"),
        )];
    }
    let mut v = Vec::new();
    let mode = m.mode() & 0o7777;
    if mode != e.mode {
        let setid_differs = (mode & SETID) != (e.mode & SETID);
        let wider = mode & !e.mode & 0o022 != 0;
        let sev = if setid_differs || wider {
            Severity::Error
        } else {
            Severity::Warning
        };
        v.push(Finding::new(
            CHECK,
            sev,
            shown.clone(),
            format!("mode {:04o}", e.mode),
            format!("mode {mode:04o}"),
            format!("chmod {:04o} {shown} (or rerun qmail-install)", e.mode),
        ));
    }
    if owners {
        let (uid, gid) = (m.uid(), m.gid());
        let want_uid = qsys::ids::uid(&e.owner).map(|u| u.as_raw());
        let want_gid = qsys::ids::gid(&e.group).map(|g| g.as_raw());
        if want_uid.is_some_and(|w| w != uid) || want_gid.is_some_and(|w| w != gid) {
            v.push(Finding::new(
                CHECK,
                Severity::Error,
                shown.clone(),
                format!("owner {}:{}", e.owner, e.group),
                format!("owner {}:{}", name_of_uid(uid), name_of_gid(gid)),
                format!(
                    "chown {}:{} {shown}; chmod {:04o} {shown} (chown clears set-id bits)",
                    e.owner, e.group, e.mode
                ),
            ));
        }
    }
    v
}

/// Set-id files in `bin/`, `control/` and `boot/` that the table does not make set-id
/// (a planted or leftover privileged program).
pub fn unexpected_setid(home: &Path, table: &[Expected]) -> Vec<Finding> {
    let mut v = Vec::new();
    for dir in ["bin", "control", "boot"] {
        let Ok(rd) = std::fs::read_dir(home.join(dir)) else {
            continue;
        };
        for e in rd.flatten() {
            let Ok(m) = e.path().symlink_metadata() else {
                continue;
            };
            let rel = format!("{dir}/{}", e.file_name().to_string_lossy());
            let intended = table.iter().any(|t| t.path == rel && t.mode & SETID != 0);
            if m.is_file() && m.mode() & SETID != 0 && !intended {
                let shown = e.path().display().to_string();
                v.push(Finding::new(
                    CHECK,
                    Severity::Error,
                    shown.clone(),
                    "no set-id bits (not a set-id program of the installation)",
                    format!("mode {:04o}", m.mode() & 0o7777),
                    format!("find out where it came from; chmod ug-s {shown}"),
                ));
            }
        }
    }
    v
}

/// Everything under `control/` (and the directory itself) writable by others.
pub fn control_writable(dir: &Path) -> Vec<Finding> {
    let mut v = Vec::new();
    let mut stack = vec![(dir.to_path_buf(), 0)];
    while let Some((p, depth)) = stack.pop() {
        let Ok(m) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if m.file_type().is_symlink() {
            continue;
        }
        if m.mode() & 0o002 != 0 {
            let shown = p.display().to_string();
            v.push(Finding::new(
                CHECK,
                Severity::Error,
                shown.clone(),
                "writable only by its owner (and maybe its group)",
                format!("writable by everyone (mode {:04o})", m.mode() & 0o7777),
                format!("chmod o-w {shown}"),
            ));
        }
        if m.is_dir()
            && depth < 4
            && let Ok(rd) = std::fs::read_dir(&p)
        {
            stack.extend(rd.flatten().map(|e| (e.path(), depth + 1)));
        }
    }
    v
}

fn exposed(path: &Path, who: &str, group_ok: bool) -> Option<Finding> {
    let m = std::fs::symlink_metadata(path).ok()?;
    if !m.is_file() {
        return None;
    }
    let mode = m.mode() & 0o7777;
    let (bad, sev) = if mode & 0o004 != 0 {
        ("everyone", Severity::Error)
    } else if !group_ok && mode & 0o040 != 0 {
        ("its group", Severity::Warning)
    } else {
        return None;
    };
    let shown = path.display().to_string();
    Some(Finding::new(
        CHECK,
        sev,
        shown.clone(),
        format!("a secret readable only by {who}"),
        format!("readable by {bad} (mode {mode:04o})"),
        if group_ok {
            format!("chmod o-rwx {shown}")
        } else {
            format!("chmod 400 {shown}")
        },
    ))
}

fn holds_private_key(path: &Path) -> bool {
    std::fs::read(path)
        .map(|b| b.windows(11).any(|w| w == b"PRIVATE KEY"))
        .unwrap_or(false)
}

/// The TLS key, DKIM keys and password stores.
pub fn secrets(home: &Path) -> Vec<Finding> {
    let control = home.join("control");
    let mut v = Vec::new();
    for name in [tls::CERT_FILE, tls::KEY_FILE] {
        let p = control.join(name);
        if holds_private_key(&p) {
            v.extend(exposed(&p, "qmaild", false));
        }
    }
    if let Ok(rd) = std::fs::read_dir(control.join("dkim")) {
        for e in rd.flatten() {
            let p = e.path();
            if let Ok(sub) = std::fs::read_dir(&p) {
                for s in sub.flatten() {
                    if holds_private_key(&s.path()) {
                        v.extend(exposed(&s.path(), "its signer", true));
                    }
                }
            } else if holds_private_key(&p) {
                v.extend(exposed(&p, "its signer", true));
            }
        }
    }
    if let Ok(rd) = std::fs::read_dir(home.join("users")) {
        for e in rd.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if n.contains("passwd") || n.contains("shadow") {
                v.extend(exposed(&e.path(), "the password checker's group", true));
            }
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn chmod(p: &Path, m: u32) {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
    }

    #[test]
    fn modes_and_setid_bits() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("bin")).unwrap();
        let p = d.path().join("bin/qmail-queue");
        std::fs::write(&p, b"x").unwrap();
        chmod(&p, 0o711);
        let e = Expected {
            path: "bin/qmail-queue".into(),
            kind: EntryKind::File,
            owner: "root".into(),
            group: "root".into(),
            mode: 0o4711,
        };
        let f = entry(d.path(), &e, false);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].severity, Severity::Error);
        assert!(f[0].fix.contains("chmod 4711"), "{:?}", f[0]);
        chmod(&p, 0o4711);
        assert!(entry(d.path(), &e, false).is_empty());
        // a narrower mode is only a warning
        chmod(&p, 0o4700);
        assert_eq!(entry(d.path(), &e, false)[0].severity, Severity::Warning);
        // a program not built is not reported; a missing directory is
        std::fs::remove_file(&p).unwrap();
        assert!(entry(d.path(), &e, false).is_empty());
        let dir = Expected {
            path: "queue".into(),
            kind: EntryKind::Dir,
            ..e
        };
        assert_eq!(entry(d.path(), &dir, false)[0].severity, Severity::Error);
    }

    #[test]
    fn the_installers_table_has_the_set_id_programs() {
        let t = install::hier::expected();
        let get = |p: &str| t.iter().find(|e| e.path == p).unwrap();
        let qq = get("bin/qmail-queue");
        assert_eq!((qq.owner.as_str(), qq.mode), ("qmailq", 0o4711));
        assert_eq!(get("bin/qmail-audit").mode, 0o700);
        assert_eq!(get("queue/lock/trigger").kind, EntryKind::Fifo);
        assert_eq!(get("queue/info/22").owner, "qmails");
        // a set-id program the table does not list is an error
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("bin")).unwrap();
        for (n, m) in [
            ("qmail-queue", 0o4711),
            ("planted", 0o4755),
            ("plain", 0o755),
        ] {
            std::fs::write(d.path().join("bin").join(n), b"x").unwrap();
            chmod(&d.path().join("bin").join(n), m);
        }
        let f = unexpected_setid(d.path(), &t);
        assert_eq!(f.len(), 1);
        assert!(f[0].subject.ends_with("bin/planted"));
    }

    #[test]
    fn world_writable_control_and_readable_secrets() {
        let d = tempfile::tempdir().unwrap();
        let c = d.path().join("control");
        std::fs::create_dir(&c).unwrap();
        chmod(&c, 0o755);
        std::fs::write(c.join("me"), "x\n").unwrap();
        chmod(&c.join("me"), 0o644);
        assert!(control_writable(&c).is_empty());
        chmod(&c.join("me"), 0o666);
        let f = control_writable(&c);
        assert_eq!(f.len(), 1);
        assert!(f[0].subject.ends_with("control/me"));
        std::fs::write(c.join("serverkey.pem"), "-----BEGIN PRIVATE KEY-----\n").unwrap();
        chmod(&c.join("serverkey.pem"), 0o400);
        assert!(secrets(d.path()).is_empty());
        chmod(&c.join("serverkey.pem"), 0o644);
        assert_eq!(secrets(d.path())[0].severity, Severity::Error);
        chmod(&c.join("serverkey.pem"), 0o440);
        assert_eq!(secrets(d.path())[0].severity, Severity::Warning);
    }
}
