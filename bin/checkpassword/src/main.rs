//! checkpassword - check a password and run a program as its owner
//!
//! SYNOPSIS
//!     checkpassword prog [arg ...]
//!
//! DESCRIPTION
//!     The checkpassword interface (cr.yp.to/checkpwd/interface.html). Reads
//!     `login\0password\0timestamp\0` (at most 512 bytes) from descriptor 3 and closes
//!     it. A login containing `@` (or `%`) is a virtual user of this installation's
//!     store (HOME/users/vusers.cdb and vpasswd.cdb); any other login is a system
//!     account (getpwnam + getspnam, crypt(3) hashes of every kind libxcrypt knows:
//!     yescrypt, sha512, sha256, md5, bcrypt, DES). With a timestamp and a virtual user
//!     that keeps an APOP secret, the password may be the APOP digest.
//!
//!     On success sets USER, HOME and SHELL; as root sets the account's groups, gid
//!     and uid and changes to its home directory; then execs prog. Not as root (SMTP
//!     AUTH from qmail-smtpd as qmaild): gives up the setgid group it was installed
//!     with, keeps the uid, changes directory when it can, and execs prog.
//!
//!     Refused (exit 1), always after the work of one hash check: unknown login, wrong
//!     or empty password, locked hash (`!`, `*`, empty), disabled virtual user, uid 0,
//!     expired account, shell listed in control/nologinshells. Each refusal is logged
//!     (`checkpassword: pid N: bad password caller=UID user=NAME`, NAME escaped and
//!     last) and answered after control/checkpassworddelay seconds.
//!
//! CALLERS
//!     Installed set-id, it answers only root (qmail-popup) and qmaild (qmail-smtpd's
//!     SMTP AUTH). Any other caller is refused with exit 2 before descriptor 3 is read
//!     or any hash looked at: a local user cannot use it to guess other users'
//!     passwords. Not installed set-id (one user runs everything), it answers anyone,
//!     since it can then read no more than its caller.
//!
//!     Set-id and called by qmaild, it holds an exclusive lock on the account's lock
//!     file in HOME/checkpassword (one of 256, by a hash of the account name) from
//!     before the check until it exits or execs, failure delay included: parallel
//!     guesses for one account are answered one per delay. That directory must be
//!     root's, group shadow, mode 0770 (the installer makes it when the shadow group
//!     exists, which is when checkpassword is installed setgid); when it is missing or
//!     unusable, qmaild's checks fail temporarily (111). Root's checks take no lock.
//!
//! DOVECOT MODE
//!     With ORIG_UID in the environment (Dovecot's checkpassword driver sets it; prog
//!     is then /usr/lib/dovecot/checkpassword-reply, descriptor 4 its pipe back to
//!     Dovecot), checkpassword never changes uid: after the same check it exports
//!     USER, HOME, userdb_uid, userdb_gid, userdb_mail (maildir:HOME/Maildir, for
//!     system and virtual users alike) and EXTRA naming the userdb_ fields, gives up
//!     its setgid group and execs prog, which writes them to descriptor 4 (Dovecot's
//!     prefetch userdb then runs the user's imap process as that uid). Failed logins
//!     count against control/authfaillimit (per TCPREMOTEIP) and authfailaccountlimit
//!     in HOME/smtpd, as qmail-smtpd's and qmail-popup's do; a full counter is
//!     refused (exit 1) without a check and logged (`login refused: too many failures
//!     ... ip=IP user=NAME`). Dovecot's auth service runs as qmaild in the
//!     configuration qmail-install writes (HOME/dovecot/dovecot.conf), so this is the
//!     caller SMTP AUTH already is: the shadow group reads the hashes, and the
//!     per-account lock applies.
//!
//! DESCRIPTORS
//!     3: the credential record (read to EOF). 0, 1, 2: passed to prog. In Dovecot
//!     mode 4: passed to prog (checkpassword-reply writes the reply there).
//!
//! FILES
//!     HOME/users/vusers.cdb, HOME/users/vpasswd.cdb (virtual users), /etc/passwd,
//!     /etc/shadow, HOME/checkpassword/lock-XX (per-account locks). HOME is found
//!     from this program's path (HOME/bin/checkpassword).
//!
//! CONTROL FILES
//!     nologinshells: shells (one per line) whose accounts may not log in; default
//!     /usr/sbin/nologin, /sbin/nologin, /bin/false, /usr/bin/false.
//!     checkpassworddelay: seconds to wait before exiting 1 (default 1, at most 10).
//!
//! ENVIRONMENT
//!     Sets USER, HOME, SHELL for prog. Reads ORIG_UID (Dovecot mode) and there
//!     TCPREMOTEIP (else REMOTE_IP) for the failure counters.
//!
//! USER
//!     Installed root:shadow mode 2711. Run by root (qmail-popup), it becomes the
//!     user; run by qmaild (qmail-smtpd), the shadow group lets it read the hashes.
//!
//! EXIT CODES
//!     1 bad login or password; 2 misuse (no prog, no or malformed fd 3 record, a
//!     caller not allowed to ask);
//!     111 temporary failure (hash database unreadable, cannot become the user, cannot
//!     run prog). Otherwise prog's own exit code.

use std::io::Read;
use std::os::fd::FromRawFd;

const PROG: &str = "checkpassword";

fn main() {
    qsys::help!();
    qsys::die::install_panic_hook(PROG);
    let argv: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    if argv.is_empty() {
        qsys::die::fatal(PROG, "usage: checkpassword prog [arg ...]", 2);
    }
    let ruid = nix::unistd::getuid();
    let set_id = ruid != nix::unistd::geteuid() || nix::unistd::getgid() != nix::unistd::getegid();
    let uid_of = |name: &str| {
        nix::unistd::User::from_name(name)
            .ok()
            .flatten()
            .map(|u| u.uid.as_raw())
    };
    if !auth::caller_allowed(ruid.as_raw(), set_id, uid_of) {
        qsys::die::fatal(
            PROG,
            &format!("uid {ruid} may not check passwords (only root and qmaild)"),
            2,
        );
    }
    if nix::fcntl::fcntl(
        // SAFETY: only asks whether descriptor 3 is open.
        unsafe { std::os::fd::BorrowedFd::borrow_raw(3) },
        nix::fcntl::FcntlArg::F_GETFD,
    )
    .is_err()
    {
        qsys::die::fatal(PROG, "descriptor 3 is not open", 2);
    }
    // SAFETY: descriptor 3 is open (checked above) and owned by nothing else here.
    let mut fd3 = unsafe { std::fs::File::from_raw_fd(3) };
    let creds = match auth::Credentials::read_from(&mut fd3.by_ref()) {
        Ok(Some(c)) => c,
        Ok(None) => qsys::die::fatal(PROG, "malformed credential record on descriptor 3", 2),
        Err(e) => qsys::die::fatal(PROG, &format!("unable to read descriptor 3: {e}"), 2),
    };
    drop(fd3);
    let home = match qsys::home() {
        Ok(h) => h,
        Err(e) => qsys::die::fatal(PROG, &format!("unable to find my home: {e}"), 111),
    };
    let cfg = match auth::Config::load(&home) {
        Ok(c) => c,
        Err(e) => qsys::die::fatal(PROG, &format!("unable to read controls: {e}"), 111),
    };
    // one guess per account at a time for callers other than root: a per-process delay
    // alone would let qmaild run any number of guesses at once
    let _account_lock = if set_id && !ruid.is_root() {
        match auth::lock_account(&home, &creds.user) {
            Ok(l) => Some(l),
            Err(e) => qsys::die::fatal(PROG, &format!("unable to lock the account: {e}"), 111),
        }
    } else {
        None
    };
    let dovecot = auth::dovecot::called_by_dovecot();
    let remote = auth::dovecot::remote_ip();
    let hold = if dovecot {
        match auth::dovecot::reserve_failure(&home, &remote, &creds.user, PROG) {
            Ok(Ok(hold)) => Some(hold),
            Ok(Err(full)) => {
                qsys::die::warn(
                    PROG,
                    &format!("pid {}", std::process::id()),
                    &format!(
                        "login refused: too many failures for the {} in the last hour ip={} user={}",
                        if full == auth::dovecot::LimitKind::AuthFailIp {
                            "address"
                        } else {
                            "account"
                        },
                        qsys::logsafe::text(remote.as_bytes()),
                        qsys::logsafe::text(&creds.user)
                    ),
                );
                std::thread::sleep(cfg.fail_delay);
                std::process::exit(1)
            }
            Err(e) => qsys::die::fatal(
                PROG,
                &format!("unable to update the failure counter: {e}"),
                111,
            ),
        }
    } else {
        None
    };
    let verdict = auth::check(&cfg, &creds);
    let user = qsys::logsafe::text(&creds.user);
    let login = String::from_utf8_lossy(&creds.user).into_owned();
    drop(creds);
    // a login that worked, or could not be checked, was not a failure
    if let Some(hold) = hold
        && verdict != auth::Verdict::Bad
        && let Err(e) = auth::dovecot::settle(
            &home,
            hold,
            &remote,
            &login,
            matches!(verdict, auth::Verdict::Ok(_)),
        )
    {
        qsys::die::warn(
            PROG,
            "warning",
            &format!("unable to update the failure counter: {e}"),
        );
    }
    match verdict {
        auth::Verdict::Bad => {
            qsys::die::warn(
                PROG,
                &format!("pid {}", std::process::id()),
                &format!(
                    "bad password caller={ruid}{} user={user}",
                    if dovecot {
                        format!(" ip={}", qsys::logsafe::text(remote.as_bytes()))
                    } else {
                        String::new()
                    }
                ),
            );
            std::thread::sleep(cfg.fail_delay);
            std::process::exit(1)
        }
        auth::Verdict::Temp(why) => qsys::die::fatal(PROG, &why, 111),
        auth::Verdict::Ok(acct) => {
            let e = if dovecot {
                auth::dovecot::exec_reply(&acct, &argv)
            } else {
                auth::become_account(&acct, &argv)
            };
            qsys::die::fatal(
                PROG,
                &format!(
                    "unable to run {} as {}: {e}",
                    argv[0].to_string_lossy(),
                    qsys::logsafe::text(acct.user.as_bytes())
                ),
                111,
            )
        }
    }
}
