//! The virtual-user store: mail domains that have no system accounts, and their users.
//!
//! # Files (all in `HOME/users/`)
//!
//! | file | mode | content |
//! |---|---|---|
//! | `vdomains` | 0644 | one line per domain: `domain:user:uid:gid:dir` |
//! | `vpasswd` | 0600 | one line per user: `address:hash:uid:gid:home:quota:flags:apop` |
//! | `vusers.cdb` | 0644 | compiled, no secrets: `d`+domain and `u`+address records |
//! | `vpasswd.cdb` | 0640, group `shadow` | compiled secrets: address -> `hash\0apop` |
//! | `vpasswd.lock` | 0600 | lock file held while the tools rewrite the store |
//! | `dovecot-passwd` | 0640, group `shadow` | the same users and hashes as a Dovecot passwd-file (for Dovecot 2.4, which has no checkpassword driver) |
//!
//! Text lines (the administrator may edit them and run `qmail-vuser rebuild`):
//! - `address` is `local@domain`, lowercase; `local` is letters, digits and `._-+=`,
//!   at most 64 bytes, not starting with `.`.
//! - `hash` is a crypt(3) string (`$y$...`, `$6$...`, ...) or empty/`!...` for "no
//!   password login".
//! - `uid:gid` is the account the mailbox belongs to (the domain's owner by default),
//!   `home` the user's directory (its `Maildir/` is the mailbox).
//! - `quota` is the mailbox limit in bytes (0 = none), `flags` holds `d` when the user is
//!   disabled (no login, mail refused), `apop` an optional hex-encoded clear-text secret
//!   for APOP (kept only for users created with `--apop`; APOP needs the clear text).
//!
//! The cdb records of `vusers.cdb`:
//! - key `d` + domain, value `user\0uid\0gid\0dir`;
//! - key `u` + address, value `uid\0gid\0home\0quota\0flags`.
//!
//! `vusers.cdb` is world-readable so that qmail-smtpd (qmaild) can refuse unknown
//! recipients and the delivery program (the domain owner) can find mailboxes and quotas.
//! The hashes live only in `vpasswd.cdb`, readable by root and by the group that may
//! verify passwords (`shadow`, the group checkpassword is installed setgid to); see the
//! `auth` crate. When the store is written by a user other than root, every file belongs
//! to that user (a single-user install).
//!
//! Mail for a virtual domain travels the qmail way: `control/virtualdomains` has
//! `domain:domain`, so `joe@domain` becomes the local address `domain-joe`;
//! `users/assign` has `+domain-:user:uid:gid:dir:-::`, so qmail-local runs as the domain
//! owner in `dir` with extension `joe`; `dir/.qmail-default` is
//! `|HOME/bin/qmail-vdeliver`, which finds `joe@domain` here, checks the quota and
//! writes into the user's Maildir. `dir/.qmail-postmaster` forwards the domain's
//! postmaster to this host's; further `dir/.qmail-NAME` files (aliases, lists) work as
//! in any qmail home and take precedence over the virtual users.

pub mod admin;
pub mod deliver;
pub mod store;

use std::io;
use std::path::{Path, PathBuf};

/// A virtual domain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VDomain {
    pub domain: String,
    /// The account owning the domain's mailboxes.
    pub user: String,
    pub uid: u32,
    pub gid: u32,
    /// The domain's directory (users live in `dir/local`).
    pub dir: PathBuf,
}

/// A virtual user (without its secrets).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VUser {
    /// `local@domain`, lowercase.
    pub address: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
    /// Mailbox limit in bytes, 0 = unlimited.
    pub quota: u64,
    pub enabled: bool,
}

impl VUser {
    pub fn local(&self) -> &str {
        self.address
            .rsplit_once('@')
            .map(|(l, _)| l)
            .unwrap_or(&self.address)
    }
    pub fn domain(&self) -> &str {
        self.address.rsplit_once('@').map(|(_, d)| d).unwrap_or("")
    }
    /// The user's mailbox, `home/Maildir`.
    pub fn maildir(&self) -> PathBuf {
        self.home.join("Maildir")
    }
}

/// A virtual user's secrets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Secret {
    /// crypt(3) hash; empty or starting with `!`/`*` means locked.
    pub hash: String,
    /// Clear-text APOP secret, when kept.
    pub apop: Option<Vec<u8>>,
}

pub const VDOMAINS: &str = "users/vdomains";
pub const VPASSWD: &str = "users/vpasswd";
pub const VUSERS_CDB: &str = "users/vusers.cdb";
pub const VPASSWD_CDB: &str = "users/vpasswd.cdb";
pub const LOCK: &str = "users/vpasswd.lock";
/// The virtual users as a Dovecot passwd-file (see [`store::dovecot_passwd`]).
pub const DOVECOT_PASSWD: &str = "users/dovecot-passwd";

/// Longest accepted local part and domain.
pub const MAX_LOCAL: usize = 64;
pub const MAX_DOMAIN: usize = 253;

/// True when `local` is an acceptable virtual user name (lowercase).
pub fn valid_local(local: &str) -> bool {
    !local.is_empty()
        && local.len() <= MAX_LOCAL
        && !local.starts_with('.')
        && local
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-+=".contains(&b))
}

/// True when `domain` is an acceptable domain name (lowercase).
pub fn valid_domain(domain: &str) -> bool {
    !domain.is_empty()
        && domain.len() <= MAX_DOMAIN
        && !domain.starts_with(['.', '-'])
        && !domain.ends_with('.')
        && !domain.contains("..")
        && domain
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
}

/// Split and lowercase `local@domain` (also `local%domain`, as POP clients that cannot
/// send `@` in a user name use). `None` when it is not a well-formed virtual address.
pub fn split_address(address: &str) -> Option<(String, String)> {
    let lower = address.to_ascii_lowercase();
    let (l, d) = lower.rsplit_once('@').or_else(|| lower.rsplit_once('%'))?;
    (valid_local(l) && valid_domain(d)).then(|| (l.to_string(), d.to_string()))
}

fn field(v: &[u8]) -> String {
    String::from_utf8_lossy(v).into_owned()
}

fn open_cdb(home: &Path, name: &str) -> io::Result<Option<control::cdbfile::Cdb>> {
    control::cdbfile::Cdb::open(&home.join(name))
}

pub(crate) fn decode_domain(domain: &str, v: &[u8]) -> Option<VDomain> {
    let f: Vec<&[u8]> = v.split(|&b| b == 0).collect();
    if f.len() != 4 {
        return None;
    }
    Some(VDomain {
        domain: domain.to_string(),
        user: field(f[0]),
        uid: field(f[1]).parse().ok()?,
        gid: field(f[2]).parse().ok()?,
        dir: PathBuf::from(field(f[3])),
    })
}

pub(crate) fn decode_user(address: &str, v: &[u8]) -> Option<VUser> {
    let f: Vec<&[u8]> = v.split(|&b| b == 0).collect();
    if f.len() != 5 {
        return None;
    }
    Some(VUser {
        address: address.to_string(),
        uid: field(f[0]).parse().ok()?,
        gid: field(f[1]).parse().ok()?,
        home: PathBuf::from(field(f[2])),
        quota: field(f[3]).parse().ok()?,
        enabled: !f[4].contains(&b'd'),
    })
}

fn bad_record() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, "malformed record in vusers.cdb")
}

/// The virtual domain `domain` of installation `home`, if there is one.
pub fn domain(home: &Path, domain: &str) -> io::Result<Option<VDomain>> {
    let Some(db) = open_cdb(home, VUSERS_CDB)? else {
        return Ok(None);
    };
    let d = domain.to_ascii_lowercase();
    let mut key = b"d".to_vec();
    key.extend_from_slice(d.as_bytes());
    match db.get(&key)? {
        None => Ok(None),
        Some(v) => decode_domain(&d, &v).map(Some).ok_or_else(bad_record),
    }
}

/// Look up the virtual user for `address` (case-insensitive). An address with an
/// extension (`joe-list@domain`) finds `joe@domain` when there is no user `joe-list`
/// (prefixes ending before a `-` are tried, longest first). `Ok(None)`: not a virtual
/// user (the domain may still be virtual: see [`domain`]). Errors are temporary.
///
/// This is what qmail-smtpd calls to refuse unknown recipients of virtual domains.
pub fn lookup(home: &Path, address: &str) -> io::Result<Option<VUser>> {
    let Some((local, dom)) = split_address(address) else {
        return Ok(None);
    };
    let Some(db) = open_cdb(home, VUSERS_CDB)? else {
        return Ok(None);
    };
    let mut candidates = vec![local.as_str()];
    for (i, c) in local.char_indices().rev() {
        if c == '-' && i > 0 {
            candidates.push(&local[..i]);
        }
    }
    for l in candidates {
        let addr = format!("{l}@{dom}");
        let mut key = b"u".to_vec();
        key.extend_from_slice(addr.as_bytes());
        if let Some(v) = db.get(&key)? {
            return decode_user(&addr, &v).map(Some).ok_or_else(bad_record);
        }
    }
    Ok(None)
}

/// The secrets of the virtual user `address` (exact address, lowercase), from
/// `vpasswd.cdb`. Needs the right to read that file.
pub fn secret(home: &Path, address: &str) -> io::Result<Option<Secret>> {
    let Some(db) = open_cdb(home, VPASSWD_CDB)? else {
        return Ok(None);
    };
    let Some(v) = db.get(address.to_ascii_lowercase().as_bytes())? else {
        return Ok(None);
    };
    let (h, a) = match v.iter().position(|&b| b == 0) {
        Some(i) => (&v[..i], &v[i + 1..]),
        None => (&v[..], &b""[..]),
    };
    Ok(Some(Secret {
        hash: field(h),
        apop: store::unhex(a).filter(|s| !s.is_empty()),
    }))
}

/// Bytes and message count of a Maildir's `new/` and `cur/` (the quota's measure).
pub fn maildir_usage(maildir: &Path) -> io::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let (mut bytes, mut count) = (0u64, 0u64);
    for sub in ["new", "cur"] {
        let rd = match std::fs::read_dir(maildir.join(sub)) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for e in rd {
            let e = e?;
            let name = e.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') {
                continue;
            }
            // Maildir++ names carry the size (`,S=1234`); otherwise stat.
            let size = name
                .split([',', ':'])
                .find_map(|p| p.strip_prefix("S=").and_then(|s| s.parse().ok()));
            let size = match size {
                Some(s) => s,
                None => match e.metadata() {
                    Ok(m) => m.size(),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                },
            };
            bytes = bytes.saturating_add(size);
            count += 1;
        }
    }
    Ok((bytes, count))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(valid_local("joe.smith-2"));
        assert!(!valid_local(".joe"));
        assert!(!valid_local("Joe"));
        assert!(!valid_local("jo:e"));
        assert!(!valid_local(&"a".repeat(65)));
        assert!(valid_domain("example.org"));
        assert!(!valid_domain("example..org"));
        assert!(!valid_domain("exa/mple.org"));
        assert_eq!(
            split_address("Joe%Example.ORG"),
            Some(("joe".into(), "example.org".into()))
        );
        assert_eq!(split_address("joe"), None);
        assert_eq!(split_address("a@b@c"), None);
    }

    #[test]
    fn usage_counts_new_and_cur() {
        let d = tempfile::tempdir().unwrap();
        for s in ["new", "cur", "tmp"] {
            std::fs::create_dir(d.path().join(s)).unwrap();
        }
        std::fs::write(d.path().join("new/1.a"), b"12345").unwrap();
        std::fs::write(d.path().join("cur/2.b:2,S"), b"123").unwrap();
        std::fs::write(d.path().join("cur/3.c,S=100:2,"), b"1").unwrap();
        std::fs::write(d.path().join("tmp/4"), b"123456789").unwrap();
        std::fs::write(d.path().join("new/.hidden"), b"123456789").unwrap();
        assert_eq!(maildir_usage(d.path()).unwrap(), (108, 3));
    }
}
