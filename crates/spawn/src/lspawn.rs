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
//!
//! [`plan`] is qmail-lspawn's decision for one recipient (split at the last `@`, an
//! empty local part is accepted and discarded, lookup, and as root no delivery as uid
//! 0); [`fork_delivery`] runs it: a forked child drops to the recipient's uid and group
//! (verified, [`qsys::prot::drop_verified`]) and then runs qmail-local's delivery
//! library ([`delivery::local::deliver`]) in-process instead of exec'ing qmail-local
//! (issue 13: one exec per delivery less). qmail-local stays the program for manual use.
//!
//! Why this keeps qmail's separation (DESIGN.md section 5; the long form is
//! doc/delivery.md): the child holds nothing of lspawn's that the recipient could use.
//! Its descriptors are exactly the message (0) and the report pipe (1, 2): lspawn's
//! command and report pipes, its log pipe and the other deliveries' pipes are replaced
//! or closed (close_range) before the drop. Its environment is lspawn's, which is what
//! an exec'ed qmail-local inherited, so a `|program` sees the same environment as
//! before. Its memory is a copy of lspawn's (users/cdb records and passwd entries, both
//! world-readable, and other deliveries' envelopes): the child is made non-dumpable
//! before the drop, so no process of the recipient's uid can ptrace it or read its
//! /proc/PID/mem, and a `|program` is a fresh exec. The drop comes first: nothing of
//! the user's (home, `.qmail` files, mailboxes) is touched before it, and a failed
//! drop ends the child with exit 120 ("Unable to run qmail-local.", a deferral, the
//! report a failed exec gave). The exit code and output follow qmail-local's, so
//! [`report`] is unchanged.
//!
//! What root touches here (issue 11 item 2): `users/cdb` (root's own install), a
//! `stat` of a passwd home (metadata only, as qmail-getpw; a path from passwd, and
//! nothing is opened, created or changed through it) and, in [`crate::serve`], the
//! message `mess/S/N` (opened without following a link). Every `.qmail` file, the home
//! and the mailboxes are touched only by the delivery code, after the drop.

use crate::protocol::Status;
use delivery::local::Recipient;
use std::fs::File;
use std::io::Write;
use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd};
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

/// One local delivery to run: who receives it and the address it was sent to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub assignment: Assignment,
    pub local: String,
    pub domain: String,
}

/// A recipient split at its last `@` into local part and domain; `None` without `@`.
pub fn split_recipient(recipient: &[u8]) -> Option<(String, String)> {
    let at = recipient.iter().rposition(|&b| b == b'@')?;
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    Some((text(&recipient[..at]), text(&recipient[at + 1..])))
}

/// qmail-lspawn's decision for `recipient` in installation `home`: a delivery to run,
/// or the report to send without running anything. `root`: this process can change
/// uids, so a delivery as uid 0 is refused (as qmail's qmail-lspawn exit 113).
pub fn plan(home: &Path, recipient: &[u8], root: bool) -> Result<Delivery, (Status, Vec<u8>)> {
    let refuse = |s: Status, t: &str| Err((s, t.as_bytes().to_vec()));
    let Some((local, domain)) = split_recipient(recipient) else {
        return refuse(
            Status::Failure,
            "Sorry, address must include host name. (#5.1.3)",
        );
    };
    if local.is_empty() {
        return Err((Status::Success, Vec::new()));
    }
    let assignment = match lookup(home, &local) {
        Ok(a) => a,
        Err(LookupError::Cdb) => {
            return refuse(
                Status::Deferral,
                "Trouble reading users/cdb in qmail-lspawn.",
            );
        }
        Err(LookupError::NoAlias) => return refuse(Status::Deferral, "Unable to find alias user!"),
    };
    if root && assignment.uid == 0 {
        return refuse(
            Status::Deferral,
            "Not allowed to perform deliveries as root.",
        );
    }
    Ok(Delivery {
        assignment,
        local,
        domain,
    })
}

/// What every delivery of this qmail-lspawn shares: the default delivery (its
/// argument), the qmail-queue program forwards go through (`$QMAILQUEUE` or
/// `HOME/bin/qmail-queue`, as qmail-local finds it), and whether to drop to the
/// recipient's ids (running as root).
pub struct Local {
    pub default_delivery: String,
    pub qmail_queue: PathBuf,
    pub drop: bool,
}

/// qmail-local's arguments for `d`, as qmail-local parses them from its command line
/// (`user homedir local dash ext domain sender defaultdelivery`, each taken as text).
pub fn recipient(d: &Delivery, sender: &[u8], default_delivery: &str) -> Recipient {
    let a = &d.assignment;
    Recipient {
        user: a.user.clone(),
        home: PathBuf::from(a.home.to_string_lossy().into_owned()),
        local: d.local.clone(),
        dash: a.dash.clone(),
        ext: a.ext.clone(),
        domain: d.domain.clone(),
        sender: String::from_utf8_lossy(sender).into_owned(),
        default_delivery: default_delivery.to_string(),
    }
}

/// Exit code of a child whose privilege drop failed: qmail-lspawn's 120, reported as
/// "Unable to run qmail-local." (a deferral), the report a failed exec gave.
const DROP_FAILED: i32 = 120;

/// Fork a child that delivers `d` the way qmail-local would: `message` on fd 0, `out`
/// on fds 1 and 2, every other descriptor closed, then the verified drop (with
/// `local.drop`), then [`delivery::local::deliver`]; its text goes to fd 1 and its code
/// is the child's exit code, so [`report`] reads it as qmail-local's. The caller must be
/// single-threaded (the child allocates). The parent keeps neither descriptor.
pub fn fork_delivery(
    d: &Delivery,
    sender: &[u8],
    local: &Local,
    message: File,
    out: OwnedFd,
) -> Result<nix::unistd::Pid, (Status, Vec<u8>)> {
    let r = recipient(d, sender, &local.default_delivery);
    let ids = local.drop.then(|| {
        (
            nix::unistd::Uid::from_raw(d.assignment.uid),
            nix::unistd::Gid::from_raw(d.assignment.gid),
        )
    });
    // SAFETY: qmail-lspawn is single-threaded, so the child may allocate; the child
    // never returns into the caller (it ends in `_exit`).
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Parent { child }) => Ok(child),
        Ok(nix::unistd::ForkResult::Child) => {
            deliver_in_child(&r, &local.qmail_queue, ids, message, out)
        }
        Err(_) => Err((Status::Deferral, b"Unable to run qmail-local.".to_vec())),
    }
}

/// The forked child: lspawn's descriptors replaced and closed, the drop, then the
/// delivery, as qmail-local's `main` does it (umask 077, its panic report).
fn deliver_in_child(
    r: &Recipient,
    qmail_queue: &Path,
    ids: Option<(nix::unistd::Uid, nix::unistd::Gid)>,
    message: File,
    out: OwnedFd,
) -> ! {
    let (message, out) = (message.into_raw_fd(), out.into_raw_fd());
    // SAFETY: plain descriptor calls on descriptors this process owns; the originals
    // are not used again after close_range (ownership was released above).
    let fds_ok = unsafe {
        libc::dup2(message, 0) == 0 && libc::dup2(out, 1) == 1 && libc::dup2(out, 2) == 2
    };
    // SAFETY: as above; PR_SET_DUMPABLE takes no pointer.
    if !fds_ok
        || !unsafe { qsys::fds::close_from(3) }
        || unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } != 0
    {
        exit_now(DROP_FAILED);
    }
    if let Some((uid, gid)) = ids
        && qsys::prot::drop_verified(uid, gid).is_err()
    {
        exit_now(DROP_FAILED);
    }
    qsys::die::install_panic_hook("qmail-local");
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    // SAFETY: descriptor 0 is the message for the rest of this process.
    let mut message = unsafe { File::from_raw_fd(0) };
    let env = delivery::local::Env {
        qmail_queue: qmail_queue.to_path_buf(),
    };
    let outcome = delivery::local::deliver(r, &mut message, &env, false);
    // SAFETY: descriptor 1 is the report pipe for the rest of this process.
    let mut report = unsafe { File::from_raw_fd(1) };
    let _ = report.write_all(outcome.text.as_bytes());
    exit_now(outcome.code)
}

/// End the child at once: no unwinding into lspawn's loop, no exit handlers of lspawn's.
fn exit_now(code: i32) -> ! {
    // SAFETY: _exit ends the process.
    unsafe { libc::_exit(code) }
}

/// qmail-lspawn's report for qmail-local's exit (qmail.md 3.4 table).
pub fn report(code: Option<i32>, output: &[u8]) -> (Status, Vec<u8>) {
    use Status::{Deferral, Failure, Success};
    let fixed = |s: Status, t: &str| (s, t.as_bytes().to_vec());
    match code {
        None => fixed(Deferral, "qmail-local crashed."),
        Some(0) => (Success, output.to_vec()),
        Some(111 | 71 | 74 | 75) => (Deferral, output.to_vec()),
        Some(117) => fixed(Deferral, "Trouble reading users/cdb in qmail-lspawn."),
        Some(119) => fixed(Deferral, "Out of memory in qmail-lspawn."),
        Some(118) => fixed(Deferral, "Temporary failure in qmail-lspawn."),
        Some(116) => fixed(Deferral, "Unable to find alias user!"),
        Some(113) => fixed(Deferral, "Not allowed to perform deliveries as root."),
        Some(112) => fixed(Deferral, "Internal qmail-lspawn bug."),
        Some(115) => fixed(Deferral, "NFS failure in qmail-local."),
        Some(126) => fixed(Failure, "Unable to run qmail-local."),
        Some(120) => fixed(Deferral, "Unable to run qmail-local."),
        Some(_) => (Failure, output.to_vec()),
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
            (Status::Success, b"did 1+0+0\n".to_vec())
        );
        assert_eq!(report(Some(111), b"x"), (Status::Deferral, b"x".to_vec()));
        assert_eq!(report(Some(100), b"no"), (Status::Failure, b"no".to_vec()));
        assert_eq!(
            report(None, b""),
            (Status::Deferral, b"qmail-local crashed.".to_vec())
        );
        assert_eq!(report(Some(113), b"").0, Status::Deferral);
    }

    #[test]
    fn recipient_split_at_the_last_at() {
        assert_eq!(
            split_recipient(b"\"a@b\"@example.org"),
            Some(("\"a@b\"".into(), "example.org".into()))
        );
        assert_eq!(
            split_recipient(b"joe-list@x"),
            Some(("joe-list".into(), "x".into()))
        );
        assert_eq!(split_recipient(b"@x"), Some((String::new(), "x".into())));
        assert_eq!(split_recipient(b"no-host"), None);
        assert_eq!(
            split_recipient(b"\xff@\xfe"),
            Some(("\u{fffd}".into(), "\u{fffd}".into()))
        );
    }

    /// An installation whose users/cdb maps `joe` (uid 507), `toor` (uid 0) and, for
    /// anything else, an `alias` entry.
    fn install() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("users")).unwrap();
        control::cdbfile::write(
            &d.path().join("users/cdb"),
            [
                (
                    &b"!joe\0"[..],
                    &b"joe\x00507\x00100\x00/home/joe\x00-\x00\x00"[..],
                ),
                (&b"!toor\0"[..], &b"toor\x000\x000\x00/root\x00\x00\x00"[..]),
                (&b"!"[..], &b"alias\x007790\x002108\x00/a\x00-\x00"[..]),
                (&b""[..], &b"-"[..]),
            ],
            0o644,
        )
        .unwrap();
        d
    }

    #[test]
    fn plan_splits_looks_up_and_refuses() {
        let d = install();
        let p = plan(d.path(), b"Joe@example.org", true).unwrap();
        assert_eq!(
            (p.local.as_str(), p.domain.as_str()),
            ("Joe", "example.org")
        );
        assert_eq!((p.assignment.uid, p.assignment.gid), (507, 100));
        let p = plan(d.path(), b"someone-else@x", true).unwrap();
        assert_eq!(
            (p.assignment.user.as_str(), p.assignment.ext.as_str()),
            ("alias", "someone-else")
        );
        assert_eq!(
            plan(d.path(), b"joe", true).unwrap_err(),
            (
                Status::Failure,
                b"Sorry, address must include host name. (#5.1.3)".to_vec()
            )
        );
        assert_eq!(
            plan(d.path(), b"@x", true).unwrap_err(),
            (Status::Success, vec![])
        );
    }

    #[test]
    fn root_refuses_to_deliver_as_uid_0() {
        let d = install();
        assert_eq!(
            plan(d.path(), b"toor@x", true).unwrap_err(),
            (
                Status::Deferral,
                b"Not allowed to perform deliveries as root.".to_vec()
            )
        );
        // Not root, nothing changes uid: the single-user install delivers as itself.
        assert_eq!(plan(d.path(), b"toor@x", false).unwrap().assignment.uid, 0);
    }

    #[test]
    fn unreadable_users_cdb_defers() {
        let d = install();
        std::fs::write(d.path().join("users/cdb"), b"short").unwrap();
        assert_eq!(
            plan(d.path(), b"joe@x", true).unwrap_err().0,
            Status::Deferral
        );
    }

    #[test]
    fn recipient_is_qmail_locals_arguments() {
        let d = install();
        let p = plan(d.path(), b"Joe@x", false).unwrap();
        let r = recipient(&p, b"s@y\xff", "./Maildir/\n");
        assert_eq!(
            [&r.user, &r.local, &r.dash, &r.ext, &r.domain, &r.sender],
            ["joe", "Joe", "-", "", "x", "s@y\u{fffd}"]
        );
        assert_eq!(r.home, Path::new("/home/joe"));
        assert_eq!(r.default_delivery, "./Maildir/\n");
    }

    #[test]
    fn root_never_receives_mail() {
        assert!(lookup_passwd("root").is_none());
    }
}
