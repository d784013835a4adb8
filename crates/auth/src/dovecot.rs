//! checkpassword's Dovecot mode: the passdb side of Dovecot 2.3's `checkpassword`
//! driver (`src/auth/db-checkpassword.c`, `checkpassword-reply.c`; see
//! `reference/wave2.md` section 5).
//!
//! Dovecot's auth process runs `checkpassword /usr/lib/dovecot/checkpassword-reply` with
//! the record `user\0password\0\0` on fd 3, a pipe on fd 4, and `ORIG_UID` (its own uid)
//! among `TCPREMOTEIP`, `SERVICE`, `AUTH_*` in the environment. The checkpassword verifies
//! and, instead of becoming the user (checkpassword-reply refuses to run under another
//! uid than `ORIG_UID`), exports `USER`, `HOME` and the userdb fields named in `EXTRA`
//! and execs checkpassword-reply, which writes them to fd 4. Dovecot's `prefetch` userdb
//! then starts the user's imap process with that uid, gid, home and mail location.
//! Exit 1 is "login failed", 111 (any other) a temporary failure.
//!
//! # Who runs it, with which privilege
//!
//! The Dovecot configuration qmail-install writes runs Dovecot's auth service as
//! `qmaild`, the user that already asks checkpassword for SMTP AUTH, so nothing new may
//! verify: the set-id checkpassword (`root:shadow` 2711) answers it as it answers
//! qmail-smtpd ([`crate::caller_allowed`]), reads `/etc/shadow` and `users/vpasswd.cdb`
//! with its effective group `shadow` only, holds the per-account lock
//! ([`crate::lock_account`]), counts failures in `HOME/smtpd` (qmaild's) with the
//! limits qmail-smtpd and qmail-popup share ([`reserve_failure`]), and gives the group
//! up before the exec ([`exec_reply`]). It never changes uid, whoever calls it.

use crate::Account;
pub use limits::Kind as LimitKind;
use std::io;
use std::path::Path;

/// The variable Dovecot sets in the environment of every checkpassword it runs.
pub const MARKER: &str = "ORIG_UID";

/// Whether the caller is Dovecot's checkpassword driver.
pub fn called_by_dovecot() -> bool {
    std::env::var_os(MARKER).is_some()
}

/// The userdb fields returned besides `USER` and `HOME` (names as in `EXTRA`).
pub const EXTRA: &str = "userdb_uid userdb_gid userdb_mail";

/// True when `s` holds a control character (a TAB or newline would split Dovecot's
/// reply into other fields).
fn has_control(s: &str) -> bool {
    s.chars().any(char::is_control)
}

/// Dovecot's `mail` location of `acct`: `maildir:HOME/Maildir`, with `%` doubled so
/// that Dovecot's variable expansion leaves the path alone. `None` for a home Dovecot
/// could not take literally (relative, or holding `:`, which separates location options).
pub fn mail_location(home: &Path) -> Option<String> {
    let h = home.to_str()?;
    if !home.is_absolute() || h.contains(':') || has_control(h) {
        return None;
    }
    Some(format!(
        "maildir:{}/Maildir",
        h.trim_end_matches('/').replace('%', "%%")
    ))
}

/// The environment checkpassword-reply turns into Dovecot's reply for `acct`: `USER`,
/// `HOME`, the fields of [`EXTRA`] and `EXTRA` itself. An error (a name or home with a
/// control character, a home Dovecot cannot use) is a temporary failure: the account
/// is fine, this installation cannot serve it over IMAP.
pub fn reply_env(acct: &Account) -> Result<Vec<(&'static str, String)>, String> {
    if has_control(&acct.user) {
        return Err("login name holds a control character".into());
    }
    let Some(mail) = mail_location(&acct.home) else {
        return Err(format!(
            "home {} cannot be a Dovecot mail location (relative, or holds ':' or a control character)",
            qsys::logsafe::text(acct.home.as_os_str().as_encoded_bytes())
        ));
    };
    Ok(vec![
        ("USER", acct.user.clone()),
        ("HOME", acct.home.to_string_lossy().into_owned()),
        ("userdb_uid", acct.uid.to_string()),
        ("userdb_gid", acct.gid.to_string()),
        ("userdb_mail", mail),
        ("EXTRA", EXTRA.to_string()),
    ])
}

/// Give up a setgid group (the effective gid becomes the real one), keep the uid,
/// export [`reply_env`] and exec `argv` (checkpassword-reply). Returns only on failure.
pub fn exec_reply(acct: &Account, argv: &[std::ffi::OsString]) -> io::Error {
    let Some(prog) = argv.first() else {
        return io::Error::from(io::ErrorKind::InvalidInput);
    };
    let env = match reply_env(acct) {
        Ok(e) => e,
        Err(why) => return io::Error::other(why),
    };
    let rgid = nix::unistd::getgid();
    if let Err(e) = nix::unistd::setresgid(rgid, rgid, rgid) {
        return e.into();
    }
    qsys::reset_signals_for_exec();
    use std::os::unix::process::CommandExt;
    std::process::Command::new(prog)
        .args(&argv[1..])
        .envs(env)
        .exec()
}

/// The client's address Dovecot passes (`TCPREMOTEIP`, else `REMOTE_IP`); empty when
/// neither is set (counted under the key `unknown`).
pub fn remote_ip() -> String {
    ["TCPREMOTEIP", "REMOTE_IP"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|s| !s.is_empty()))
        .unwrap_or_default()
}

/// Count this login as a failure of the client's address and of the account before it
/// is checked, with `control/authfaillimit` and `control/authfailaccountlimit`, in the
/// counters qmail-smtpd and qmail-popup use (`HOME/smtpd`): an IMAP guesser meets the
/// same limits as a POP3 or SMTP one. `Ok(Err(kind))` names the full counter. The
/// [`limits::Hold`] is given back with [`settle`] when the login was not a failure.
pub fn reserve_failure(
    home: &Path,
    remote: &str,
    login: &[u8],
    warn_as: &str,
) -> io::Result<Result<limits::Hold, limits::Kind>> {
    let ctl = control::Controls::new(home);
    let value = |name: &str| -> io::Result<u64> {
        let c = ctl.number(name)?;
        c.warn(warn_as);
        Ok(c.value)
    };
    let login_limits = limits::LoginLimits {
        per_address: value("authfaillimit")?,
        per_account: value("authfailaccountlimit")?,
    };
    let account = crate::canonical_login(&String::from_utf8_lossy(login));
    limits::Counters::new(&home.join("smtpd")).reserve_login(
        remote,
        &account,
        login_limits,
        qsys::now(),
    )
}

/// The login held by `hold` was not a failure: give the reservation back; after a
/// success (`ok`), remember the address for the account's limit.
pub fn settle(
    home: &Path,
    hold: limits::Hold,
    remote: &str,
    login: &str,
    ok: bool,
) -> io::Result<()> {
    hold.release()?;
    if ok {
        limits::Counters::new(&home.join("smtpd")).record_login(
            remote,
            &crate::canonical_login(login),
            qsys::now(),
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn acct(user: &str, home: &str) -> Account {
        Account {
            user: user.into(),
            uid: 5001,
            gid: 5002,
            home: PathBuf::from(home),
            shell: "/bin/sh".into(),
            system: false,
        }
    }

    #[test]
    fn reply_names_uid_gid_home_and_maildir() {
        let env = reply_env(&acct("joe@example.org", "/var/vmail/example.org/joe")).unwrap();
        let get = |k: &str| env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("USER"), Some("joe@example.org"));
        assert_eq!(get("HOME"), Some("/var/vmail/example.org/joe"));
        assert_eq!(get("userdb_uid"), Some("5001"));
        assert_eq!(get("userdb_gid"), Some("5002"));
        assert_eq!(
            get("userdb_mail"),
            Some("maildir:/var/vmail/example.org/joe/Maildir")
        );
        // every EXTRA name is exported
        for name in get("EXTRA").unwrap().split(' ') {
            assert!(get(name).is_some(), "{name}");
        }
    }

    #[test]
    fn homes_dovecot_would_misread_are_refused() {
        assert_eq!(
            mail_location(Path::new("/home/50%off/")).as_deref(),
            Some("maildir:/home/50%%off/Maildir")
        );
        assert!(mail_location(Path::new("relative/home")).is_none());
        assert!(mail_location(Path::new("/home/a:INDEX=/tmp")).is_none());
        assert!(reply_env(&acct("joe", "/home/j\toe")).is_err());
        assert!(reply_env(&acct("jo\te", "/home/joe")).is_err());
        assert!(reply_env(&acct("joe\n", "/home/joe")).is_err());
    }

    #[test]
    fn failures_are_counted_per_address_and_account() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("control")).unwrap();
        std::fs::create_dir_all(d.path().join("smtpd")).unwrap();
        std::fs::write(d.path().join("control/authfaillimit"), "2\n").unwrap();
        let ip = "192.0.2.7";
        // two failures fill the address's limit
        for _ in 0..2 {
            let hold = reserve_failure(d.path(), ip, b"joe", "test").unwrap();
            drop(hold.unwrap());
        }
        assert_eq!(
            reserve_failure(d.path(), ip, b"joe", "test")
                .unwrap()
                .unwrap_err(),
            limits::Kind::AuthFailIp
        );
        // another address is still let through, and a success gives its count back
        let hold = reserve_failure(d.path(), "192.0.2.8", b"Joe", "test")
            .unwrap()
            .unwrap();
        settle(d.path(), hold, "192.0.2.8", "Joe", true).unwrap();
        for _ in 0..2 {
            let hold = reserve_failure(d.path(), "192.0.2.8", b"joe", "test")
                .unwrap()
                .unwrap();
            settle(d.path(), hold, "192.0.2.8", "joe", false).unwrap();
        }
    }
}
