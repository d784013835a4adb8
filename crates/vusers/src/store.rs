//! Reading and rewriting the store's text files and compiling them to cdb, under a lock.
//!
//! Every change goes: take `users/vpasswd.lock` (flock), read the text files, change
//! them in memory, write each text file (temp, fsync, rename), then compile both cdbs
//! the same way. A crash between the steps leaves text files that are the truth;
//! `qmail-vuser rebuild` recompiles them.

use crate::{DOVECOT_PASSWD, LOCK, VDOMAINS, VDomain, VPASSWD, VPASSWD_CDB, VUSERS_CDB};
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

/// One line of `users/vpasswd`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserEntry {
    pub address: String,
    pub hash: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
    pub quota: u64,
    pub enabled: bool,
    pub apop: Option<Vec<u8>>,
}

/// Hex encoding (lowercase) of the APOP secret.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Decode lowercase or uppercase hex; `None` if malformed.
pub fn unhex(s: &[u8]) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let d = |c: u8| (c as char).to_digit(16);
    s.chunks(2)
        .map(|p| Some((d(p[0])? * 16 + d(p[1])?) as u8))
        .collect()
}

fn path_ok(p: &Path) -> bool {
    let s = p.as_os_str().as_encoded_bytes();
    p.is_absolute() && !s.contains(&b':') && !s.contains(&b'\n') && !s.contains(&0)
}

/// Parse `users/vdomains`. Errors name the line.
pub fn parse_domains(text: &str) -> Result<Vec<VDomain>, String> {
    let mut v: Vec<VDomain> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let err = || format!("vdomains line {}: syntax error", n + 1);
        let f: Vec<&str> = line.split(':').collect();
        if f.len() != 5 || !crate::valid_domain(f[0]) || !path_ok(Path::new(f[4])) {
            return Err(err());
        }
        if v.iter().any(|d| d.domain == f[0]) {
            return Err(format!("vdomains line {}: duplicate domain", n + 1));
        }
        v.push(VDomain {
            domain: f[0].to_string(),
            user: f[1].to_string(),
            uid: f[2].parse().map_err(|_| err())?,
            gid: f[3].parse().map_err(|_| err())?,
            dir: PathBuf::from(f[4]),
        });
    }
    Ok(v)
}

/// Parse `users/vpasswd`. Errors name the line.
pub fn parse_users(text: &str) -> Result<Vec<UserEntry>, String> {
    let mut v: Vec<UserEntry> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let err = || format!("vpasswd line {}: syntax error", n + 1);
        let f: Vec<&str> = line.split(':').collect();
        if f.len() != 8 || crate::split_address(f[0]).is_none() || f[0] != f[0].to_lowercase() {
            return Err(err());
        }
        let home = PathBuf::from(f[4]);
        if !path_ok(&home) || !f[6].bytes().all(|b| b == b'd') {
            return Err(err());
        }
        if v.iter().any(|u| u.address == f[0]) {
            return Err(format!("vpasswd line {}: duplicate address", n + 1));
        }
        v.push(UserEntry {
            address: f[0].to_string(),
            hash: f[1].to_string(),
            uid: f[2].parse().map_err(|_| err())?,
            gid: f[3].parse().map_err(|_| err())?,
            home,
            quota: f[5].parse().map_err(|_| err())?,
            enabled: !f[6].contains('d'),
            apop: if f[7].is_empty() {
                None
            } else {
                Some(unhex(f[7].as_bytes()).ok_or_else(err)?)
            },
        });
    }
    Ok(v)
}

fn format_domains(v: &[VDomain]) -> String {
    v.iter()
        .map(|d| {
            format!(
                "{}:{}:{}:{}:{}\n",
                d.domain,
                d.user,
                d.uid,
                d.gid,
                d.dir.display()
            )
        })
        .collect()
}

fn format_users(v: &[UserEntry]) -> String {
    v.iter()
        .map(|u| {
            format!(
                "{}:{}:{}:{}:{}:{}:{}:{}\n",
                u.address,
                u.hash,
                u.uid,
                u.gid,
                u.home.display(),
                u.quota,
                if u.enabled { "" } else { "d" },
                u.apop.as_deref().map(hex).unwrap_or_default()
            )
        })
        .collect()
}

/// The store of one installation, locked for writing while this value lives.
pub struct Store {
    home: PathBuf,
    pub domains: Vec<VDomain>,
    pub users: Vec<UserEntry>,
    _lock: nix::fcntl::Flock<File>,
}

fn read_text(path: &Path) -> io::Result<String> {
    match std::fs::read(path) {
        Ok(b) => String::from_utf8(b)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "not UTF-8")),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(e),
    }
}

fn invalid(e: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

impl Store {
    /// Lock and read the store of installation `home`.
    pub fn open(home: &Path) -> io::Result<Store> {
        use std::os::unix::fs::OpenOptionsExt;
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(home.join(LOCK))?;
        let lock = nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, e)| io::Error::from(e))?;
        let domains = parse_domains(&read_text(&home.join(VDOMAINS))?).map_err(invalid)?;
        let users = parse_users(&read_text(&home.join(VPASSWD))?).map_err(invalid)?;
        Ok(Store {
            home: home.to_path_buf(),
            domains,
            users,
            _lock: lock,
        })
    }

    pub fn domain(&self, d: &str) -> Option<&VDomain> {
        self.domains.iter().find(|x| x.domain == d)
    }

    pub fn user(&self, address: &str) -> Option<&UserEntry> {
        self.users.iter().find(|u| u.address == address)
    }

    pub fn user_mut(&mut self, address: &str) -> Option<&mut UserEntry> {
        self.users.iter_mut().find(|u| u.address == address)
    }

    /// Write the text files and compile both cdbs.
    pub fn save(&self) -> io::Result<()> {
        qsys::fsync::write_atomic(
            &self.home.join(VDOMAINS),
            format_domains(&self.domains).as_bytes(),
            0o644,
        )?;
        qsys::fsync::write_atomic(
            &self.home.join(VPASSWD),
            format_users(&self.users).as_bytes(),
            0o600,
        )?;
        self.compile()
    }

    /// Compile `vusers.cdb` and `vpasswd.cdb` from the store in memory.
    pub fn compile(&self) -> io::Result<()> {
        let mut pub_recs: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        for d in &self.domains {
            pub_recs.push((
                format!("d{}", d.domain).into_bytes(),
                format!("{}\0{}\0{}\0{}", d.user, d.uid, d.gid, d.dir.display()).into_bytes(),
            ));
        }
        let mut secret_recs: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        for u in &self.users {
            pub_recs.push((
                format!("u{}", u.address).into_bytes(),
                format!(
                    "{}\0{}\0{}\0{}\0{}",
                    u.uid,
                    u.gid,
                    u.home.display(),
                    u.quota,
                    if u.enabled { "" } else { "d" }
                )
                .into_bytes(),
            ));
            let mut v = u.hash.clone().into_bytes();
            v.push(0);
            v.extend_from_slice(u.apop.as_deref().map(hex).unwrap_or_default().as_bytes());
            secret_recs.push((u.address.clone().into_bytes(), v));
        }
        control::cdbfile::write(
            &self.home.join(VUSERS_CDB),
            pub_recs.iter().map(|(k, v)| (k.as_slice(), v.as_slice())),
            0o644,
        )?;
        let secret_path = self.home.join(VPASSWD_CDB);
        control::cdbfile::write(
            &secret_path,
            secret_recs
                .iter()
                .map(|(k, v)| (k.as_slice(), v.as_slice())),
            0o640,
        )?;
        let passwd_path = self.home.join(DOVECOT_PASSWD);
        qsys::fsync::write_atomic(&passwd_path, dovecot_passwd(&self.users).as_bytes(), 0o640)?;
        if qsys::is_root()
            && let Some(g) = qsys::ids::gid(SECRET_GROUP)
        {
            for p in [&secret_path, &passwd_path] {
                nix::unistd::chown(p, Some(nix::unistd::Uid::from_raw(0)), Some(g))
                    .map_err(io::Error::from)?;
            }
        }
        Ok(())
    }
}

/// The users as a Dovecot passwd-file (`users/dovecot-passwd`, one line each:
/// `address:{CRYPT}hash:uid:gid::home::`), for Dovecot's `passwd-file` passdb and userdb:
/// the same crypt(3) hashes checkpassword verifies (Dovecot's `CRYPT` scheme is
/// crypt(3) too), the same uid, gid and home (its `Maildir` is the mailbox). Disabled
/// users and users without a password login (empty, `!` or `*` hash) are left out, so
/// they cannot log in there either. Written with the cdbs, under the store's lock.
pub fn dovecot_passwd(users: &[UserEntry]) -> String {
    users
        .iter()
        .filter(|u| u.enabled && u.hash.starts_with('$'))
        .filter(|u| !u.hash.contains([':', '\n']))
        .map(|u| {
            format!(
                "{}:{{CRYPT}}{}:{}:{}::{}::\n",
                u.address,
                u.hash,
                u.uid,
                u.gid,
                u.home.display()
            )
        })
        .collect()
}

/// The group that may read `vpasswd.cdb` (and, on Debian, `/etc/shadow`): checkpassword
/// is installed setgid to it so that qmail-smtpd, running as qmaild, can verify.
pub const SECRET_GROUP: &str = "shadow";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_lookup() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("users")).unwrap();
        let mut s = Store::open(d.path()).unwrap();
        assert!(s.users.is_empty());
        s.domains.push(VDomain {
            domain: "example.org".into(),
            user: "vmail".into(),
            uid: 5000,
            gid: 5000,
            dir: "/var/vmail/example.org".into(),
        });
        s.users.push(UserEntry {
            address: "joe@example.org".into(),
            hash: "$6$salt$hash".into(),
            uid: 5000,
            gid: 5000,
            home: "/var/vmail/example.org/joe".into(),
            quota: 1000,
            enabled: true,
            apop: Some(b"se:cret".to_vec()),
        });
        s.save().unwrap();
        drop(s);
        let s = Store::open(d.path()).unwrap();
        assert_eq!(s.users.len(), 1);
        assert_eq!(s.users[0].apop.as_deref(), Some(&b"se:cret"[..]));
        drop(s);
        let u = crate::lookup(d.path(), "Joe-Lists@Example.org")
            .unwrap()
            .unwrap();
        assert_eq!(u.address, "joe@example.org");
        assert_eq!(u.quota, 1000);
        assert!(u.enabled);
        assert_eq!(u.maildir(), Path::new("/var/vmail/example.org/joe/Maildir"));
        assert!(
            crate::lookup(d.path(), "ann@example.org")
                .unwrap()
                .is_none()
        );
        let dom = crate::domain(d.path(), "EXAMPLE.org").unwrap().unwrap();
        assert_eq!(dom.uid, 5000);
        assert!(crate::domain(d.path(), "other.org").unwrap().is_none());
        let sec = crate::secret(d.path(), "joe@example.org").unwrap().unwrap();
        assert_eq!(sec.hash, "$6$salt$hash");
        assert_eq!(sec.apop.as_deref(), Some(&b"se:cret"[..]));
    }

    #[test]
    fn dovecot_passwd_file_follows_the_store() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("users")).unwrap();
        let mut s = Store::open(d.path()).unwrap();
        let user = |address: &str, hash: &str, enabled| UserEntry {
            address: address.into(),
            hash: hash.into(),
            uid: 5000,
            gid: 5001,
            home: format!("/var/vmail/example.org/{address}").into(),
            quota: 0,
            enabled,
            apop: None,
        };
        s.users
            .push(user("joe@example.org", "$y$j9T$salt$hash", true));
        s.users.push(user("off@example.org", "$6$salt$hash", false));
        s.users.push(user("nopw@example.org", "!", true));
        s.save().unwrap();
        let text = std::fs::read_to_string(d.path().join(DOVECOT_PASSWD)).unwrap();
        assert_eq!(
            text,
            "joe@example.org:{CRYPT}$y$j9T$salt$hash:5000:5001::/var/vmail/example.org/joe@example.org::\n"
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(d.path().join(DOVECOT_PASSWD))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o640);
        // a change of password reaches both
        s.users[0].hash = "$6$new$hash".into();
        s.save().unwrap();
        let text = std::fs::read_to_string(d.path().join(DOVECOT_PASSWD)).unwrap();
        assert!(text.contains("{CRYPT}$6$new$hash"), "{text}");
        assert_eq!(
            crate::secret(d.path(), "joe@example.org")
                .unwrap()
                .unwrap()
                .hash,
            "$6$new$hash"
        );
    }

    #[test]
    fn missing_store_means_no_users() {
        let d = tempfile::tempdir().unwrap();
        assert!(
            crate::lookup(d.path(), "joe@example.org")
                .unwrap()
                .is_none()
        );
        assert!(
            crate::secret(d.path(), "joe@example.org")
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn bad_lines_are_refused() {
        assert!(parse_users("joe@example.org:h:1:1:/h:0::\n").is_ok());
        assert!(parse_users("joe@example.org:h:1:1:rel:0::\n").is_err());
        assert!(parse_users("joe@example.org:h:x:1:/h:0::\n").is_err());
        assert!(parse_users("Joe@example.org:h:1:1:/h:0::\n").is_err());
        assert!(parse_users("joe@example.org:h:1:1:/h:0:q:\n").is_err());
        assert!(parse_users("a@b.c:h:1:1:/h:0::\na@b.c:h:1:1:/h:0::\n").is_err());
        assert!(parse_domains("example.org:vmail:1:1:/d\n").is_ok());
        assert!(parse_domains("example.org:vmail:1:1\n").is_err());
    }
}
