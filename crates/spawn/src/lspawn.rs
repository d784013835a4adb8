//! qmail-lspawn's parts (qmail.md 3.6): which user receives a local address, how
//! qmail-local is started, and how its exit code becomes a report.
//!
//! Lookup order for the local part (lowercased): `users/cdb` (exact `=` entries, then
//! `+` prefixes probed only where the prefix ends in one of the "wildchars"), then the
//! passwd database (the local part, or its part before a `-`, longest first: a user with
//! uid != 0 whose home exists and is owned by them), then the `alias` user with the
//! whole local part as extension. The `alias` home is this installation's `alias/`
//! directory, so that several installations can share one `alias` account.
//!
//! qmail runs the passwd lookup in a separate qmail-getpw program as qmailp; here it
//! is a plain `getpwnam` in qmail-lspawn itself, which already runs as root.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Who receives a local address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    pub user: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
    pub dash: String,
    pub ext: String,
}

/// Why a lookup failed; each maps to one of qmail's QLX codes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LookupError {
    Cdb,
    NoAlias,
}

fn parse_assignment(data: &[u8], extra: &[u8]) -> Option<Assignment> {
    let fields: Vec<&[u8]> = data.split(|&b| b == 0).collect();
    if fields.len() < 6 {
        return None;
    }
    let s = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let mut ext = s(fields[5]);
    ext.push_str(&s(extra));
    Some(Assignment {
        user: s(fields[0]),
        uid: s(fields[1]).parse().ok()?,
        gid: s(fields[2]).parse().ok()?,
        home: PathBuf::from(s(fields[3])),
        dash: s(fields[4]),
        ext,
    })
}

/// Look `local` up in `users/cdb` (qmail's `nughde_get`).
pub fn lookup_cdb(cdb_path: &Path, local: &str) -> Result<Option<Assignment>, LookupError> {
    let db = match control::cdbfile::Cdb::open(cdb_path) {
        Ok(Some(db)) => db,
        Ok(None) => return Ok(None),
        Err(_) => return Err(LookupError::Cdb),
    };
    let lower = local.to_ascii_lowercase();
    let mut key = Vec::with_capacity(lower.len() + 2);
    key.push(b'!');
    key.extend_from_slice(lower.as_bytes());
    key.push(0);
    if let Some(v) = db.get(&key).map_err(|_| LookupError::Cdb)? {
        return Ok(parse_assignment(&v, b""));
    }
    let wild = db
        .get(b"")
        .map_err(|_| LookupError::Cdb)?
        .unwrap_or_default();
    let bytes = lower.as_bytes();
    // A `+loc` entry is stored under `!loc`; probe prefixes longest first, but only
    // those ending in a character some `+` prefix ends in (and the bare `!`).
    for k in (0..=bytes.len()).rev() {
        if k == 0 || wild.contains(&bytes[k - 1]) {
            let mut key = vec![b'!'];
            key.extend_from_slice(&bytes[..k]);
            if let Some(v) = db.get(&key).map_err(|_| LookupError::Cdb)? {
                return Ok(parse_assignment(&v, &local.as_bytes()[k..]));
            }
        }
    }
    Ok(None)
}

/// The passwd lookup of qmail-getpw: the local part, then each prefix ending just
/// before a `-`, longest first.
pub fn lookup_passwd(local: &str) -> Option<Assignment> {
    let lower = local.to_ascii_lowercase();
    let mut candidates = vec![(lower.as_str(), "", "")];
    for (i, c) in lower.char_indices().rev() {
        if c == '-' {
            candidates.push((&lower[..i], "-", &local[i + 1..]));
        }
    }
    for (name, dash, ext) in candidates {
        if name.is_empty() || name.len() >= 32 {
            continue;
        }
        let Ok(Some(pw)) = nix::unistd::User::from_name(name) else {
            continue;
        };
        if pw.uid.is_root() {
            continue;
        }
        let Ok(meta) = std::fs::metadata(&pw.dir) else {
            continue;
        };
        if meta.uid() != pw.uid.as_raw() {
            continue;
        }
        return Some(Assignment {
            user: pw.name,
            uid: pw.uid.as_raw(),
            gid: pw.gid.as_raw(),
            home: pw.dir,
            dash: dash.to_string(),
            ext: ext.to_string(),
        });
    }
    None
}

/// The `alias` user with the whole local part as extension.
pub fn alias(home: &Path, local: &str) -> Result<Assignment, LookupError> {
    let (uid, gid) = if qsys::is_root() {
        let (u, g, _) = qsys::ids::user("alias").ok_or(LookupError::NoAlias)?;
        (u.as_raw(), g.as_raw())
    } else {
        (
            nix::unistd::getuid().as_raw(),
            nix::unistd::getgid().as_raw(),
        )
    };
    Ok(Assignment {
        user: "alias".into(),
        uid,
        gid,
        home: home.join("alias"),
        dash: "-".into(),
        ext: local.to_string(),
    })
}

/// The full lookup for installation `home`.
pub fn lookup(home: &Path, local: &str) -> Result<Assignment, LookupError> {
    if let Some(a) = lookup_cdb(&home.join("users/cdb"), local)? {
        return Ok(a);
    }
    if let Some(a) = lookup_passwd(local) {
        return Ok(a);
    }
    alias(home, local)
}

/// qmail-lspawn's report for qmail-local's exit (qmail.md 3.4 table).
pub fn report(code: Option<i32>, output: &[u8]) -> (u8, Vec<u8>) {
    let fixed = |l: u8, t: &str| (l, t.as_bytes().to_vec());
    match code {
        None => fixed(b'Z', "qmail-local crashed."),
        Some(0) => (b'K', output.to_vec()),
        Some(111 | 71 | 74 | 75) => (b'Z', output.to_vec()),
        Some(117) => fixed(b'Z', "Trouble reading users/cdb in qmail-lspawn."),
        Some(119) => fixed(b'Z', "Out of memory in qmail-lspawn."),
        Some(118) => fixed(b'Z', "Temporary failure in qmail-lspawn."),
        Some(116) => fixed(b'Z', "Unable to find alias user!"),
        Some(113) => fixed(b'Z', "Not allowed to perform deliveries as root."),
        Some(112) => fixed(b'Z', "Internal qmail-lspawn bug."),
        Some(115) => fixed(b'Z', "NFS failure in qmail-local."),
        Some(126) => fixed(b'D', "Unable to run qmail-local."),
        Some(120) => fixed(b'Z', "Unable to run qmail-local."),
        Some(_) => (b'D', output.to_vec()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cdb(records: &[(&[u8], &[u8])]) -> (tempfile::TempDir, PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("cdb");
        control::cdbfile::write(&p, records.iter().map(|(k, v)| (*k, *v)), 0o644).unwrap();
        (d, p)
    }

    #[test]
    fn exact_and_wildcard_assignments() {
        let (_d, p) = cdb(&[
            (b"!joe\0", b"joe\x00507\x00100\x00/home/joe\x00\x00"),
            (b"!joe-", b"joe\x00507\x00100\x00/home/joe\x00-\x00"),
            (b"!", b"alias\x007790\x002108\x00/var/qmail/alias\x00-\x00"),
            (b"", b"-"),
        ]);
        let a = lookup_cdb(&p, "Joe").unwrap().unwrap();
        assert_eq!(
            (a.user.as_str(), a.dash.as_str(), a.ext.as_str()),
            ("joe", "", "")
        );
        let a = lookup_cdb(&p, "joe-list").unwrap().unwrap();
        assert_eq!((a.uid, a.dash.as_str(), a.ext.as_str()), (507, "-", "list"));
        let a = lookup_cdb(&p, "nobody-here").unwrap().unwrap();
        assert_eq!((a.user.as_str(), a.ext.as_str()), ("alias", "nobody-here"));
    }

    #[test]
    fn report_mapping() {
        assert_eq!(
            report(Some(0), b"did 1+0+0\n"),
            (b'K', b"did 1+0+0\n".to_vec())
        );
        assert_eq!(report(Some(111), b"x"), (b'Z', b"x".to_vec()));
        assert_eq!(report(Some(100), b"no"), (b'D', b"no".to_vec()));
        assert_eq!(report(None, b""), (b'Z', b"qmail-local crashed.".to_vec()));
        assert_eq!(report(Some(113), b"").0, b'Z');
    }

    #[test]
    fn root_never_receives_mail() {
        assert!(lookup_passwd("root").is_none());
    }
}
