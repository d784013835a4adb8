//! The integrity baseline. `qmail-audit --baseline` records a manifest of `bin/`,
//! `control/` and `boot/` (each entry's kind, SHA-256 of its content or link target,
//! owner, group, mode, size) in `HOME/audit/manifest`, authenticated with HMAC-SHA256
//! under a key only root can read (`HOME/audit/hmac.key`, 32 random bytes, mode 0400,
//! created on the first baseline; `HOME/audit` is 0700). A later `qmail-audit` reports
//! every entry added, removed or changed since (a program in `bin/`: error; anything
//! else: warning), and a manifest whose HMAC does not verify as tampering (error; its
//! content is then not trusted for anything).
//!
//! Manifest lines: `KIND SHA256 UID GID MODE SIZE PATH`, KIND `f` file, `d` directory,
//! `l` symbolic link; PATH relative to HOME with bytes outside `!`..`~` and `\` written
//! as `\xNN`. The last line is `hmac HEX` over every byte before it.

use crate::{Audit, Finding, Severity};
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

const CHECK: &str = "integrity";
const DIRS: [&str; 3] = ["bin", "control", "boot"];
pub const KEY: &str = "audit/hmac.key";
pub const MANIFEST: &str = "audit/manifest";

type HmacSha256 = Hmac<Sha256>;

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

fn escape(p: &[u8]) -> String {
    p.iter()
        .map(|&b| {
            if (0x21..0x7f).contains(&b) && b != b'\\' {
                (b as char).to_string()
            } else {
                format!("\\x{b:02x}")
            }
        })
        .collect()
}

/// One entry's recorded facts (everything on its line after the path).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Facts(pub String);

fn hash_file(p: &Path) -> io::Result<String> {
    let mut f = std::fs::File::open(p)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 65536];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

/// The current state of `bin/`, `control/` and `boot/`: escaped path -> facts.
pub fn snapshot(home: &Path) -> BTreeMap<String, Facts> {
    let mut out = BTreeMap::new();
    let mut stack: Vec<(std::path::PathBuf, usize)> =
        DIRS.iter().map(|d| (home.join(d), 0)).collect();
    while let Some((p, depth)) = stack.pop() {
        let Ok(m) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        let rel = p.strip_prefix(home).unwrap_or(&p);
        let ft = m.file_type();
        let (kind, hash) = if ft.is_symlink() {
            let t = std::fs::read_link(&p).unwrap_or_default();
            ("l", hex(&Sha256::digest(t.as_os_str().as_bytes())))
        } else if ft.is_dir() {
            if depth < 8
                && let Ok(rd) = std::fs::read_dir(&p)
            {
                stack.extend(rd.flatten().map(|e| (e.path(), depth + 1)));
            }
            ("d", "-".to_string())
        } else if ft.is_file() {
            ("f", hash_file(&p).unwrap_or_else(|_| "unreadable".into()))
        } else {
            ("o", "-".to_string())
        };
        let size = if kind == "f" { m.size() } else { 0 };
        out.insert(
            escape(rel.as_os_str().as_bytes()),
            Facts(format!(
                "{kind} {hash} {} {} {:o} {size}",
                m.uid(),
                m.gid(),
                m.mode() & 0o7777
            )),
        );
    }
    out
}

/// The manifest text for a snapshot, signed with `key`.
pub fn manifest(snap: &BTreeMap<String, Facts>, key: &[u8]) -> io::Result<Vec<u8>> {
    let mut body = String::new();
    for (path, facts) in snap {
        body.push_str(&format!("{} {path}\n", facts.0));
    }
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(key).map_err(io::Error::other)?;
    mac.update(body.as_bytes());
    body.push_str(&format!("hmac {}\n", hex(&mac.finalize().into_bytes())));
    Ok(body.into_bytes())
}

/// Verify and parse a manifest; `Err` says why it is not to be trusted.
pub fn parse_manifest(text: &[u8], key: &[u8]) -> Result<BTreeMap<String, Facts>, String> {
    let text = std::str::from_utf8(text).map_err(|_| "not text".to_string())?;
    let body_end = text
        .trim_end_matches('\n')
        .rfind('\n')
        .map(|i| i + 1)
        .unwrap_or(0);
    let (body, last) = text.split_at(body_end);
    let tag = last
        .trim_end()
        .strip_prefix("hmac ")
        .and_then(unhex)
        .ok_or_else(|| "no hmac line at its end".to_string())?;
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(key).map_err(|e| e.to_string())?;
    mac.update(body.as_bytes());
    mac.verify_slice(&tag)
        .map_err(|_| "its HMAC does not verify".to_string())?;
    let mut out = BTreeMap::new();
    for line in body.lines() {
        let (facts, path) = line.rsplit_once(' ').ok_or("a line without a path")?;
        out.insert(path.to_string(), Facts(facts.to_string()));
    }
    Ok(out)
}

/// The findings for the differences between `old` (the baseline) and `new`.
pub fn compare(
    old: &BTreeMap<String, Facts>,
    new: &BTreeMap<String, Facts>,
    home: &Path,
) -> Vec<Finding> {
    let sev = |p: &str| {
        if p.starts_with("bin/") {
            Severity::Error
        } else {
            Severity::Warning
        }
    };
    let fix = "find out who changed it and why; when the change is wanted, record it: qmail-audit --baseline";
    let mut v = Vec::new();
    for (p, f) in new {
        let shown = home.join(p).display().to_string();
        match old.get(p) {
            None => v.push(Finding::new(
                CHECK,
                sev(p),
                shown,
                "not present at the baseline",
                format!("added ({})", f.0),
                fix,
            )),
            Some(o) if o != f => v.push(Finding::new(
                CHECK,
                sev(p),
                shown,
                format!("as at the baseline ({})", o.0),
                format!("changed ({})", f.0),
                fix,
            )),
            Some(_) => {}
        }
    }
    for (p, o) in old {
        if !new.contains_key(p) {
            v.push(Finding::new(
                CHECK,
                sev(p),
                home.join(p).display().to_string(),
                format!("present ({})", o.0),
                "removed",
                fix,
            ));
        }
    }
    v
}

fn random_key() -> io::Result<[u8; 32]> {
    let mut k = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut k)?;
    Ok(k)
}

/// Record the baseline: create `HOME/audit` (0700) and the key (0400) when missing,
/// write the manifest. Returns the number of entries recorded.
pub fn baseline(home: &Path) -> io::Result<usize> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
    let dir = home.join("audit");
    match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => {
            return Err(io::Error::new(
                e.kind(),
                format!("unable to create {}: {e}", dir.display()),
            ));
        }
    }
    let m = std::fs::symlink_metadata(&dir)?;
    if !m.is_dir() {
        return Err(io::Error::other(format!(
            "{} is not a directory",
            dir.display()
        )));
    }
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
    let key_path = home.join(KEY);
    let key = match std::fs::read(&key_path) {
        Ok(k) if !k.is_empty() => k,
        Ok(_) => return Err(io::Error::other(format!("{} is empty", key_path.display()))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let k = random_key()?;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o400)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&key_path)?;
            io::Write::write_all(&mut f, &k)?;
            f.sync_all()?;
            k.to_vec()
        }
        Err(e) => {
            return Err(io::Error::new(
                e.kind(),
                format!("unable to read {}: {e}", key_path.display()),
            ));
        }
    };
    let snap = snapshot(home);
    qsys::fsync::write_atomic(&home.join(MANIFEST), &manifest(&snap, &key)?, 0o600)?;
    Ok(snap.len())
}

pub fn check(a: &Audit) -> Vec<Finding> {
    let mpath = a.home.join(MANIFEST);
    let shown = mpath.display().to_string();
    let text = match std::fs::read(&mpath) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return vec![Finding::new(
                CHECK,
                Severity::Info,
                shown,
                "a baseline",
                "none recorded",
                "qmail-audit --baseline (after each upgrade or wanted change)",
            )];
        }
        Err(e) => {
            return vec![Finding::info(
                CHECK,
                shown,
                format!("not read: {} (run as root)", qsys::errstr::io(&e)),
            )];
        }
    };
    let key = match std::fs::read(a.home.join(KEY)) {
        Ok(k) => k,
        Err(e) => {
            return vec![Finding::new(
                CHECK,
                Severity::Error,
                a.home.join(KEY).display().to_string(),
                "the baseline's key",
                format!("unreadable: {}", qsys::errstr::io(&e)),
                "run as root; if the key is gone, check how, then qmail-audit --baseline",
            )];
        }
    };
    match parse_manifest(&text, &key) {
        Err(why) => vec![Finding::new(
            CHECK,
            Severity::Error,
            shown,
            "a manifest signed with the baseline's key",
            format!("tampered: {why}"),
            "treat the installation as compromised until checked; then qmail-audit --baseline",
        )],
        Ok(old) => {
            let v = compare(&old, &snapshot(&a.home), &a.home);
            if v.is_empty() {
                vec![Finding::info(
                    CHECK,
                    shown,
                    format!("{} entries as at the baseline", old.len()),
                )]
            } else {
                v
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn baseline_then_changes_and_tampering() {
        let d = tempfile::tempdir().unwrap();
        let h = d.path();
        for dir in DIRS {
            std::fs::create_dir(h.join(dir)).unwrap();
        }
        std::fs::write(h.join("bin/prog"), b"one").unwrap();
        std::fs::write(h.join("control/me"), b"x\n").unwrap();
        std::fs::write(h.join("control/odd name\n"), b"").unwrap();
        assert_eq!(baseline(h).unwrap(), 6);
        let key = std::fs::read(h.join(KEY)).unwrap();
        assert_eq!(key.len(), 32);
        assert_eq!(
            std::fs::metadata(h.join(KEY)).unwrap().mode() & 0o777,
            0o400
        );
        let text = std::fs::read(h.join(MANIFEST)).unwrap();
        let old = parse_manifest(&text, &key).unwrap();
        assert!(compare(&old, &snapshot(h), h).is_empty());
        std::fs::write(h.join("bin/prog"), b"two").unwrap();
        std::fs::write(h.join("control/stray"), b"").unwrap();
        std::fs::remove_file(h.join("control/me")).unwrap();
        let f = compare(&old, &snapshot(h), h);
        let got: Vec<(String, Severity)> = f
            .iter()
            .map(|x| {
                (
                    x.subject
                        .strip_prefix(&format!("{}/", h.display()))
                        .unwrap()
                        .to_string(),
                    x.severity,
                )
            })
            .collect();
        assert!(
            got.contains(&("bin/prog".into(), Severity::Error)),
            "{got:?}"
        );
        assert!(
            got.contains(&("control/stray".into(), Severity::Warning)),
            "{got:?}"
        );
        assert!(
            got.contains(&("control/me".into(), Severity::Warning)),
            "{got:?}"
        );
        // the directories' mtimes do not count: no other finding
        assert_eq!(got.len(), 3, "{got:?}");
        // a manifest edited to match is refused
        let forged =
            String::from_utf8(text.clone())
                .unwrap()
                .replacen(" bin/prog", " bin/prog2", 1);
        assert!(
            parse_manifest(forged.as_bytes(), &key)
                .unwrap_err()
                .contains("HMAC")
        );
        assert!(parse_manifest(&text, b"other key").is_err());
        assert!(parse_manifest(b"", &key).is_err());
        // a second baseline keeps the key
        baseline(h).unwrap();
        assert_eq!(std::fs::read(h.join(KEY)).unwrap(), key);
    }
}
