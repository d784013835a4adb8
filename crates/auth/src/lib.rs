//! Password checks for qmail-popup (POP3) and qmail-smtpd (SMTP AUTH).
//!
//! - [`crypt`]: crypt(3) hashes through libxcrypt, constant-time comparison.
//! - [`Credentials`]: the checkpassword record `user\0pass\0timestamp\0` read from fd 3
//!   (at most 512 bytes), wiped when dropped.
//! - [`check`]: who the login is (virtual user from the `vusers` store first, when the
//!   name is an address; otherwise `/etc/passwd` + `/etc/shadow`) and whether the
//!   password (or APOP digest) is right.
//! - [`become_account`]: the checkpassword epilogue: `USER`, `HOME`, `SHELL`, groups,
//!   gid, uid, working directory, exec.
//! - [`client`]: the caller's side (qmail-smtpd and qmail-popup): the record on fd 3,
//!   the timeout, the exit status as an enum, the password wiped.
//! - [`canonical_login`]: one name per account, for counters keyed on it.
//! - [`dovecot`]: the mode for Dovecot's checkpassword driver (IMAP): verify, count
//!   failures, and hand uid, gid, home and Maildir back instead of becoming the user.
//!
//! # Who may verify
//!
//! checkpassword is installed `root:shadow` mode 2711 (setgid `shadow`, like Debian's
//! `unix_chkpwd`). Holding that group, it answers only root and [`CALLERS`] (qmaild,
//! which qmail-smtpd runs as for SMTP AUTH): any other caller is refused with exit 2
//! before the record is read or a hash looked at ([`caller_allowed`]), so a local user
//! cannot use it as an oracle for other users' passwords. Run without set-id bits (a
//! developer's install as one user), it can read only what its caller can, and answers
//! anyone. Run by root (qmail-popup's parent), it verifies and becomes the user.
//! Run by qmaild (qmail-smtpd's AUTH), its effective group `shadow` lets it read
//! `/etc/shadow` and `users/vpasswd.cdb` (group `shadow`, 0640); it verifies, drops the
//! group again (real gid) and execs the subprogram without changing uid. qmail-smtpd
//! itself never gains that group. Dovecot's auth service (IMAP) runs as qmaild too, in
//! the configuration qmail-install writes, so it is the same caller ([`dovecot`]). Without the setgid bit, a non-root caller can verify
//! only what it can read; an unreadable hash database is a temporary failure (111),
//! never "bad password".
//!
//! # Refusals
//!
//! Exit 1 (after the same amount of hashing as a real check, so unknown names do not
//! answer faster: every answer includes one yescrypt computation at Debian's default
//! cost, the dummy's when the user is unknown or has a cheaper hash): unknown user; wrong password; empty password; locked hash (`!`,
//! `*`, empty); disabled virtual user; uid 0; expired shadow account; a shell listed in
//! `control/nologinshells` (default `/usr/sbin/nologin`, `/sbin/nologin`, `/bin/false`,
//! `/usr/bin/false`).
//!
//! APOP and CRAM-MD5: when the timestamp is not empty and the user keeps a clear-text
//! secret (virtual users created with `--apop`), the password may also be the hex MD5 of
//! `timestamp + secret` (APOP, from qmail-popup) or the hex HMAC-MD5 of the timestamp
//! keyed with the secret (CRAM-MD5, from qmail-smtpd's `user\0digest\0challenge\0`).
//! System users have no clear-text secret, so neither works for them.

pub mod client;
pub mod crypt;
pub mod dovecot;

use std::ffi::CString;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// Longest record checkpassword reads from fd 3 (the interface's limit).
pub const MAX_RECORD: usize = 512;

/// The three fields of a checkpassword record; the password is wiped on drop.
pub struct Credentials {
    pub user: Vec<u8>,
    pub pass: Vec<u8>,
    pub timestamp: Vec<u8>,
}

/// Shows the user and timestamp, never the password.
impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &String::from_utf8_lossy(&self.user))
            .field("pass", &"<hidden>")
            .field("timestamp", &String::from_utf8_lossy(&self.timestamp))
            .finish()
    }
}

impl Drop for Credentials {
    fn drop(&mut self) {
        crypt::wipe(&mut self.pass);
    }
}

impl Credentials {
    /// Parse `user\0pass\0timestamp\0...`; `None` when fewer than two fields end in NUL.
    pub fn parse(data: &[u8]) -> Option<Credentials> {
        let mut it = data.split(|&b| b == 0);
        let user = it.next()?.to_vec();
        let pass = it.next()?.to_vec();
        // the user and password fields must each end in NUL
        if user.len() + pass.len() + 2 > data.len() {
            return None;
        }
        let timestamp = it.next().unwrap_or_default().to_vec();
        Some(Credentials {
            user,
            pass,
            timestamp,
        })
    }

    /// The record as qmail-popup writes it.
    pub fn encode(&self) -> Vec<u8> {
        let mut v =
            Vec::with_capacity(self.user.len() + self.pass.len() + self.timestamp.len() + 3);
        for f in [&self.user, &self.pass, &self.timestamp] {
            v.extend_from_slice(f);
            v.push(0);
        }
        v
    }

    /// Read the record from `r` to EOF, at most [`MAX_RECORD`] bytes (more is misuse).
    pub fn read_from(r: &mut impl Read) -> io::Result<Option<Credentials>> {
        let mut buf = vec![0u8; MAX_RECORD + 1];
        let mut n = 0;
        loop {
            if n == buf.len() {
                crypt::wipe(&mut buf);
                return Ok(None);
            }
            match r.read(&mut buf[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    crypt::wipe(&mut buf);
                    return Err(e);
                }
            }
        }
        let c = Credentials::parse(&buf[..n]);
        crypt::wipe(&mut buf);
        Ok(c)
    }
}

/// The users besides root that a set-id checkpassword answers: qmaild, the user
/// qmail-smtpd runs as (SMTP AUTH). qmail-popup runs it as root.
pub const CALLERS: [&str; 1] = ["qmaild"];

/// Whether a caller with real uid `ruid` may have passwords checked by a process that
/// holds privilege it did not get from that caller (`set_id`: effective uid or gid
/// differs from the real one). Without set-id, anyone: the caller could read the hashes
/// itself. With it, root and the uids `uid_of` gives for [`CALLERS`].
pub fn caller_allowed(ruid: u32, set_id: bool, uid_of: impl Fn(&str) -> Option<u32>) -> bool {
    !set_id || ruid == 0 || CALLERS.iter().any(|name| uid_of(name) == Some(ruid))
}

/// The account a login names, as one key: lowercase, and for an address the form
/// `local@domain` (so `Joe%Example.org` and `joe@example.org` are one account). Used for
/// counters, not for the check itself (checkpassword decides who the login is).
pub fn canonical_login(login: &str) -> String {
    if login.contains(['@', '%'])
        && let Some((local, domain)) = vusers::split_address(login)
    {
        return format!("{local}@{domain}");
    }
    login.to_ascii_lowercase()
}

/// The directory of checkpassword's per-account locks, below HOME: root, group
/// `shadow`, mode 0770 (made by the installer), so that only checkpassword's setgid
/// group can create or open the locks in it; its callers cannot.
pub const GUESS_LOCK_DIR: &str = "checkpassword";
/// How many lock files there are at most: accounts share them by a hash of the name.
pub const GUESS_LOCKS: u32 = 256;

/// The lock file of the account `login` ([`canonical_login`] hashed into one of
/// [`GUESS_LOCKS`] names).
pub fn guess_lock_name(login: &[u8]) -> String {
    use md5::Digest;
    let account = canonical_login(&String::from_utf8_lossy(login));
    let d = md5::Md5::digest(account.as_bytes());
    format!("lock-{:02x}", d[0])
}

/// Wait for and hold the exclusive lock of `login`'s account in
/// `HOME/`[`GUESS_LOCK_DIR`]: a set-id checkpassword answering a caller other than root
/// holds it through the check and the failure delay, so that many processes started
/// at once still check one guess per account per delay. Nothing is followed through a
/// link; a directory not owned by root, writable by others, or missing is an error.
pub fn lock_account(home: &Path, login: &[u8]) -> io::Result<nix::fcntl::Flock<std::fs::File>> {
    use qsys::safefs::{Dir, Kind};
    use std::os::unix::fs::MetadataExt;
    let dir = Dir::open_trusted(home)?.subdir(GUESS_LOCK_DIR)?;
    let st = nix::sys::stat::fstat(&dir).map_err(io::Error::from)?;
    if st.st_uid != 0 || st.st_mode & 0o002 != 0 {
        return Err(io::Error::other(format!(
            "{} must be root's and not writable by others",
            dir.path().display()
        )));
    }
    let name = guess_lock_name(login);
    let mut file = None;
    for _ in 0..3 {
        if let Some(fd) = dir.open_entry(&name, Kind::File)? {
            file = Some(std::fs::File::from(fd));
            break;
        }
        if let Some(f) = dir.create_new(&name, 0o600)? {
            file = Some(f);
            break;
        }
    }
    let file = file.ok_or_else(|| io::Error::other(format!("unable to open {name}")))?;
    if file.metadata()?.nlink() != 1 {
        return Err(io::Error::other(format!("{name} has another link")));
    }
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| io::Error::from(e))
}

/// The account a successful login becomes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    /// The login name (`joe` or `joe@example.org`), set as `$USER`.
    pub user: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
    pub shell: String,
    /// For system users: set the supplementary groups from /etc/group (initgroups).
    pub system: bool,
}

/// What a check found.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Ok(Account),
    /// exit 1
    Bad,
    /// exit 111, with the reason for the log
    Temp(String),
}

/// The default `control/nologinshells`.
pub const DEFAULT_NOLOGIN_SHELLS: [&str; 4] = [
    "/usr/sbin/nologin",
    "/sbin/nologin",
    "/bin/false",
    "/usr/bin/false",
];

/// Where to look: the installation (for the virtual-user store) and the shells that
/// may not log in.
pub struct Config {
    pub home: PathBuf,
    pub nologin_shells: Vec<String>,
    /// The shadow file checked for readability when a user is not found (tests point
    /// this elsewhere; normally `/etc/shadow`).
    pub shadow_file: PathBuf,
    /// How long checkpassword waits before answering "bad password"
    /// (`control/checkpassworddelay`, default 1 second, at most 10).
    pub fail_delay: std::time::Duration,
}

impl Config {
    pub fn load(home: &Path) -> io::Result<Config> {
        let ctl = control::Controls::new(home);
        let nologin_shells = ctl.list("nologinshells")?.unwrap_or_else(|| {
            DEFAULT_NOLOGIN_SHELLS
                .iter()
                .map(|s| s.to_string())
                .collect()
        });
        Ok(Config {
            home: home.to_path_buf(),
            nologin_shells,
            shadow_file: PathBuf::from("/etc/shadow"),
            fail_delay: std::time::Duration::from_secs(ctl.int("checkpassworddelay", 1)?.min(10)),
        })
    }
}

fn md5_hex(parts: &[&[u8]]) -> String {
    use md5::Digest;
    let mut h = md5::Md5::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// The APOP digest of `timestamp` and `secret` (RFC 1939): hex MD5, lowercase.
pub fn apop_digest(timestamp: &[u8], secret: &[u8]) -> String {
    md5_hex(&[timestamp, secret])
}

/// The CRAM-MD5 digest (RFC 2195): hex HMAC-MD5 keyed with `secret` over `challenge`.
pub fn cram_md5_digest(challenge: &[u8], secret: &[u8]) -> String {
    use hmac::{KeyInit, Mac};
    let Ok(mut mac) = hmac::Hmac::<md5::Md5>::new_from_slice(secret) else {
        return String::new();
    };
    mac.update(challenge);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Check `creds` against the virtual-user store, then the system's accounts.
pub fn check(cfg: &Config, creds: &Credentials) -> Verdict {
    let Ok(name) = std::str::from_utf8(&creds.user) else {
        crypt::burn(&creds.pass);
        return Verdict::Bad;
    };
    if name.is_empty() || name.len() > 255 || name.contains(['\n', ':']) {
        crypt::burn(&creds.pass);
        return Verdict::Bad;
    }
    if name.contains(['@', '%']) {
        check_virtual(cfg, name, creds)
    } else {
        check_system(cfg, name, creds)
    }
}

fn check_virtual(cfg: &Config, name: &str, creds: &Credentials) -> Verdict {
    let Some((local, domain)) = vusers::split_address(name) else {
        crypt::burn(&creds.pass);
        return Verdict::Bad;
    };
    let address = format!("{local}@{domain}");
    let user = match vusers::lookup(&cfg.home, &address) {
        Ok(u) => u.filter(|u| u.address == address),
        Err(e) => return Verdict::Temp(format!("unable to read users/vusers.cdb: {e}")),
    };
    let secret = match vusers::secret(&cfg.home, &address) {
        Ok(s) => s,
        Err(e) => return Verdict::Temp(format!("unable to read users/vpasswd.cdb: {e}")),
    };
    let (Some(user), Some(secret)) = (user, secret) else {
        crypt::burn(&creds.pass);
        return Verdict::Bad;
    };
    let mut ok = crypt::verify(&creds.pass, &secret.hash);
    if let Some(clear) = &secret.apop
        && !creds.timestamp.is_empty()
    {
        let given = creds.pass.to_ascii_lowercase();
        let apop = apop_digest(&creds.timestamp, clear);
        let cram = cram_md5_digest(&creds.timestamp, clear);
        ok |= crypt::ct_eq(apop.as_bytes(), &given);
        ok |= crypt::ct_eq(cram.as_bytes(), &given);
    }
    if !ok || !user.enabled || user.uid == 0 {
        return Verdict::Bad;
    }
    Verdict::Ok(Account {
        user: address,
        uid: user.uid,
        gid: user.gid,
        home: user.home,
        shell: "/bin/sh".into(),
        system: false,
    })
}

/// The shadow entry of `name`: (hash, expire day or -1). `Ok(None)` if not found.
fn shadow_entry(name: &str) -> io::Result<Option<(String, i64)>> {
    let c = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let mut sp: libc::spwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 16384];
    let mut result: *mut libc::spwd = std::ptr::null_mut();
    // SAFETY: all pointers are valid for the sizes given; result is NULL or &sp.
    let r = unsafe {
        libc::getspnam_r(
            c.as_ptr(),
            &mut sp,
            buf.as_mut_ptr(),
            buf.len(),
            &mut result,
        )
    };
    if result.is_null() {
        return match r {
            0 | libc::ENOENT => Ok(None),
            e => Err(io::Error::from_raw_os_error(e)),
        };
    }
    // SAFETY: on success sp_pwdp points to a NUL-terminated string inside buf.
    let hash = unsafe { std::ffi::CStr::from_ptr(sp.sp_pwdp) }
        .to_string_lossy()
        .into_owned();
    let expire = sp.sp_expire;
    crypt::wipe(unsafe {
        std::slice::from_raw_parts_mut(buf.as_mut_ptr().cast::<u8>(), buf.len())
    });
    Ok(Some((hash, expire as i64)))
}

fn check_system(cfg: &Config, name: &str, creds: &Credentials) -> Verdict {
    let pw = match nix::unistd::User::from_name(name) {
        Ok(p) => p,
        Err(e) => return Verdict::Temp(format!("unable to read the passwd database: {e}")),
    };
    let Some(pw) = pw else {
        // Unknown. Without the right to read the hashes a known user would get 111, so
        // an unknown one must too: the answer may not tell who exists.
        if let Err(e) = std::fs::File::open(&cfg.shadow_file) {
            return Verdict::Temp(format!("unable to read {}: {e}", cfg.shadow_file.display()));
        }
        crypt::burn(&creds.pass);
        return Verdict::Bad;
    };
    let pwfield = pw.passwd.to_string_lossy().into_owned();
    let (hash, expire) = if pwfield == "x" || pwfield.is_empty() {
        match shadow_entry(name) {
            Ok(Some(e)) => e,
            Ok(None) => {
                if let Err(e) = std::fs::File::open(&cfg.shadow_file) {
                    return Verdict::Temp(format!(
                        "unable to read {}: {e}",
                        cfg.shadow_file.display()
                    ));
                }
                (String::new(), -1)
            }
            Err(e) => return Verdict::Temp(format!("unable to read the shadow database: {e}")),
        }
    } else {
        (pwfield, -1)
    };
    let ok = crypt::verify(&creds.pass, &hash);
    let shell = pw.shell.to_string_lossy().into_owned();
    let today = (qsys::now() / 86400) as i64;
    let expired = expire > 0 && today >= expire;
    if !ok || pw.uid.is_root() || expired || cfg.nologin_shells.contains(&shell) {
        return Verdict::Bad;
    }
    Verdict::Ok(Account {
        user: pw.name,
        uid: pw.uid.as_raw(),
        gid: pw.gid.as_raw(),
        home: pw.dir,
        shell,
        system: true,
    })
}

/// The checkpassword epilogue: set `USER`, `HOME`, `SHELL`; as root set the groups,
/// gid and uid of the account; otherwise give up a setgid group (the effective gid
/// becomes the real one) and keep the uid. Then chdir to the home (failure is a
/// temporary error as root; as another user it is tolerated, since SMTP AUTH's
/// subprogram does not need it) and exec `argv`. Returns only on failure.
pub fn become_account(acct: &Account, argv: &[std::ffi::OsString]) -> io::Error {
    use nix::unistd::{Gid, Uid};
    let Some(prog) = argv.first() else {
        return io::Error::from(io::ErrorKind::InvalidInput);
    };
    if nix::unistd::geteuid().is_root() {
        let (uid, gid) = (Uid::from_raw(acct.uid), Gid::from_raw(acct.gid));
        let r = if acct.system {
            // the account's groups from /etc/group, then gid and uid
            CString::new(acct.user.as_str())
                .map_err(|_| nix::Error::EINVAL)
                .and_then(|c| nix::unistd::getgrouplist(&c, gid))
                .and_then(|groups| {
                    qsys::prot::drop_verified_groups(uid, gid, &groups)
                        .map_err(qsys::prot::DropError::errno)
                })
        } else {
            qsys::prot::drop_to(uid, gid)
        };
        if let Err(e) = r {
            return e.into();
        }
    } else {
        let rgid = nix::unistd::getgid();
        if let Err(e) = nix::unistd::setresgid(rgid, rgid, rgid) {
            return e.into();
        }
    }
    let root = nix::unistd::geteuid().is_root() || acct.uid == nix::unistd::getuid().as_raw();
    if let Err(e) = std::env::set_current_dir(&acct.home)
        && root
    {
        return e;
    }
    // SAFETY: single-threaded program about to exec.
    unsafe {
        std::env::set_var("USER", &acct.user);
        std::env::set_var("HOME", &acct.home);
        std::env::set_var("SHELL", &acct.shell);
    }
    qsys::reset_signals_for_exec();
    use std::os::unix::process::CommandExt;
    std::process::Command::new(prog).args(&argv[1..]).exec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_parsing() {
        let c = Credentials::parse(b"joe\0pw\0<1.2@h>\0").unwrap();
        assert_eq!(
            (c.user.as_slice(), c.pass.as_slice(), c.timestamp.as_slice()),
            (&b"joe"[..], &b"pw"[..], &b"<1.2@h>"[..])
        );
        let c = Credentials::parse(b"joe\0pw\0").unwrap();
        assert!(c.timestamp.is_empty());
        assert!(Credentials::parse(b"joe\0pw").is_none());
        assert!(Credentials::parse(b"joe").is_none());
        assert_eq!(c.encode(), b"joe\0pw\0\0");
        let mut long = std::io::Cursor::new(vec![b'a'; 600]);
        assert!(Credentials::read_from(&mut long).unwrap().is_none());
        let mut ok = std::io::Cursor::new(b"u\0p\0t\0".to_vec());
        assert_eq!(Credentials::read_from(&mut ok).unwrap().unwrap().user, b"u");
    }

    #[test]
    fn guess_locks_are_shared_per_account_and_bounded() {
        assert_eq!(
            guess_lock_name(b"Joe%Example.test"),
            guess_lock_name(b"joe@example.test")
        );
        let names: std::collections::HashSet<String> = (0..5000)
            .map(|i| guess_lock_name(format!("u{i}").as_bytes()))
            .collect();
        assert!(names.len() <= GUESS_LOCKS as usize);
        assert!(names.iter().all(|n| n.len() == 7 && n.starts_with("lock-")));
    }

    #[test]
    fn guess_lock_directory_must_be_roots() {
        let home = tempfile::tempdir().unwrap();
        assert!(lock_account(home.path(), b"joe").is_err());
        std::fs::create_dir(home.path().join(GUESS_LOCK_DIR)).unwrap();
        let lock = lock_account(home.path(), b"joe");
        if nix::unistd::geteuid().is_root() {
            let lock = lock.unwrap();
            // a second lock of the same account waits: try it without blocking
            let again = std::fs::File::open(
                home.path()
                    .join(GUESS_LOCK_DIR)
                    .join(guess_lock_name(b"joe")),
            )
            .unwrap();
            assert!(
                nix::fcntl::Flock::lock(again, nix::fcntl::FlockArg::LockExclusiveNonblock)
                    .is_err()
            );
            drop(lock);
            std::fs::set_permissions(
                home.path().join(GUESS_LOCK_DIR),
                std::os::unix::fs::PermissionsExt::from_mode(0o777),
            )
            .unwrap();
            assert!(lock_account(home.path(), b"joe").is_err());
        } else {
            assert!(lock.is_err());
        }
    }

    #[test]
    fn callers_of_a_set_id_checkpassword() {
        let uid_of = |n: &str| (n == "qmaild").then_some(1001);
        assert!(caller_allowed(0, true, uid_of));
        assert!(caller_allowed(1001, true, uid_of));
        assert!(!caller_allowed(65534, true, uid_of));
        assert!(!caller_allowed(65534, true, |_| None));
        // not set-id: the caller holds whatever the program holds
        assert!(caller_allowed(65534, false, uid_of));
    }

    #[test]
    fn one_canonical_name_per_account() {
        assert_eq!(canonical_login("Joe%Example.ORG"), "joe@example.org");
        assert_eq!(canonical_login("joe@example.org"), "joe@example.org");
        assert_eq!(canonical_login("JOE"), "joe");
        assert_eq!(canonical_login("a@b@"), "a@b@");
    }

    #[test]
    fn cram_md5_rfc2195_example() {
        assert_eq!(
            cram_md5_digest(
                b"<1896.697170952@postoffice.reston.mci.net>",
                b"tanstaaftanstaaf"
            ),
            "b913a602c7eda7a495b4e6e7334d3890"
        );
    }

    #[test]
    fn apop_rfc1939_example() {
        assert_eq!(
            apop_digest(b"<1896.697170952@dbc.mtview.ca.us>", b"tanstaaf"),
            "c4c9334bac560ecc979e58001b3e22fb"
        );
    }

    fn store(dir: &Path) {
        std::fs::create_dir_all(dir.join("users")).unwrap();
        let mut s = vusers::store::Store::open(dir).unwrap();
        for (addr, pw, enabled, apop) in [
            (
                "joe@example.org",
                "right horse",
                true,
                Some(b"apopsecret".to_vec()),
            ),
            ("off@example.org", "right horse", false, None),
        ] {
            s.users.push(vusers::store::UserEntry {
                address: addr.into(),
                hash: crypt::hash(pw.as_bytes(), "$6$").unwrap(),
                uid: 4321,
                gid: 4321,
                home: dir.join(addr),
                quota: 0,
                enabled,
                apop,
            });
        }
        s.save().unwrap();
    }

    fn creds(u: &str, p: &str, t: &str) -> Credentials {
        Credentials {
            user: u.into(),
            pass: p.into(),
            timestamp: t.into(),
        }
    }

    #[test]
    fn virtual_users() {
        let d = tempfile::tempdir().unwrap();
        store(d.path());
        let cfg = Config::load(d.path()).unwrap();
        match check(&cfg, &creds("Joe@Example.org", "right horse", "<1@x>")) {
            Verdict::Ok(a) => {
                assert_eq!(a.user, "joe@example.org");
                assert_eq!(a.uid, 4321);
                assert!(!a.system);
            }
            v => panic!("{v:?}"),
        }
        assert!(check(&cfg, &creds("joe%example.org", "right horse", "")).is_ok());
        assert_eq!(
            check(&cfg, &creds("joe@example.org", "wrong", "")),
            Verdict::Bad
        );
        assert_eq!(check(&cfg, &creds("joe@example.org", "", "")), Verdict::Bad);
        assert_eq!(
            check(&cfg, &creds("ann@example.org", "right horse", "")),
            Verdict::Bad
        );
        assert_eq!(
            check(&cfg, &creds("off@example.org", "right horse", "")),
            Verdict::Bad
        );
        assert_eq!(
            check(&cfg, &creds("joe-x@example.org", "right horse", "")),
            Verdict::Bad
        );
        let dig = apop_digest(b"<7.8@h>", b"apopsecret");
        assert!(check(&cfg, &creds("joe@example.org", &dig, "<7.8@h>")).is_ok());
        assert_eq!(
            check(&cfg, &creds("joe@example.org", &dig, "<7.9@h>")),
            Verdict::Bad
        );
        let cram = cram_md5_digest(b"<c.1@h>", b"apopsecret");
        assert!(check(&cfg, &creds("joe@example.org", &cram, "<c.1@h>")).is_ok());
        assert_eq!(
            check(&cfg, &creds("joe@example.org", &cram, "<c.2@h>")),
            Verdict::Bad
        );
    }

    #[test]
    fn unknown_system_user_is_bad() {
        let d = tempfile::tempdir().unwrap();
        let mut cfg = Config::load(d.path()).unwrap();
        // a hash database we may read: unknown names are refused
        cfg.shadow_file = d.path().join("shadow");
        std::fs::write(&cfg.shadow_file, "").unwrap();
        assert_eq!(
            check(&cfg, &creds("no-such-user-xq", "pw", "")),
            Verdict::Bad
        );
        // one we may not read: a temporary failure, as for a known name
        cfg.shadow_file = d.path().join("missing");
        assert!(matches!(
            check(&cfg, &creds("no-such-user-xq", "pw", "")),
            Verdict::Temp(_)
        ));
        if nix::unistd::geteuid().is_root() {
            // root never logs in, whatever the password
            let cfg = Config::load(d.path()).unwrap();
            assert_eq!(check(&cfg, &creds("root", "pw", "")), Verdict::Bad);
        }
    }

    /// Every answer, whoever asks, costs exactly one yescrypt computation (known users
    /// here have sha512 hashes, plus the dummy's work): no timing oracle tells unknown
    /// names, locked or disabled accounts from wrong passwords.
    #[test]
    fn every_answer_costs_one_hash() {
        let d = tempfile::tempdir().unwrap();
        store(d.path());
        let mut cfg = Config::load(d.path()).unwrap();
        cfg.shadow_file = d.path().join("shadow");
        std::fs::write(&cfg.shadow_file, "").unwrap();
        let cases = [
            ("joe@example.org", "right horse"),
            ("joe@example.org", "wrong"),
            ("joe@example.org", ""),
            ("off@example.org", "right horse"),
            ("ann@example.org", "x"),
            ("bad@name@", "x"),
            ("no-such-user-xq", "x"),
            ("", "x"),
            ("a:b", "x"),
        ];
        for (u, p) in cases {
            let before = crypt::calls();
            let _ = check(&cfg, &creds(u, p, ""));
            assert_eq!(crypt::calls() - before, 1, "{u}/{p}");
        }
    }

    impl Verdict {
        fn is_ok(&self) -> bool {
            matches!(self, Verdict::Ok(_))
        }
    }
}
