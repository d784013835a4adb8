//! Dropping privileges the way qmail's `prot.c` does, in one place: `setgroups({gid})`,
//! `setgid(gid)`, then `setuid(uid)`, and then a check that the drop held (real and
//! effective ids are the ones asked for, the supplementary groups are exactly `{gid}`,
//! and `setuid(0)` fails when the drop was away from root). Any difference is an error:
//! the caller must not go on (a pre_exec hook fails the spawn, a program dies).
//!
//! [`drop_verified`] neither allocates nor locks, so it is safe between fork and exec.
//! [`drop_to`] and [`become_user`] are no-ops when the process is not root (a
//! single-user install), by design (DESIGN.md section 4).

use nix::errno::Errno;
use nix::unistd::{Gid, Uid, geteuid};

/// Why a drop failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropError {
    /// A system call failed: which one, and its errno.
    Call(&'static str, Errno),
    /// Every call succeeded but the process does not hold the asked ids (or could
    /// become root again).
    NotHeld,
}

impl DropError {
    /// The errno to report (EPERM when the drop did not hold).
    pub fn errno(self) -> Errno {
        match self {
            DropError::Call(_, e) => e,
            DropError::NotHeld => Errno::EPERM,
        }
    }
}

impl std::fmt::Display for DropError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DropError::Call(call, e) => write!(f, "{call} failed: {}", e.desc()),
            DropError::NotHeld => write!(f, "the privilege drop did not hold"),
        }
    }
}

impl From<DropError> for std::io::Error {
    fn from(e: DropError) -> Self {
        std::io::Error::from_raw_os_error(e.errno() as i32)
    }
}

/// Become `uid:gid` with `gid` as the only supplementary group, then verify. `uid` 0
/// keeps root and changes only the groups (qmail-lspawn as qmail-start starts it).
/// Must be called as root. Async-signal-safe.
pub fn drop_verified(uid: Uid, gid: Gid) -> Result<(), DropError> {
    let was_root = geteuid().is_root();
    let g = gid.as_raw();
    // SAFETY: setgroups reads one gid from a valid pointer.
    if unsafe { libc::setgroups(1, &g) } != 0 {
        return Err(DropError::Call("setgroups", Errno::last()));
    }
    nix::unistd::setgid(gid).map_err(|e| DropError::Call("setgid", e))?;
    nix::unistd::setuid(uid).map_err(|e| DropError::Call("setuid", e))?;
    if !holds(uid, gid)
        || (was_root && !uid.is_root() && nix::unistd::setuid(Uid::from_raw(0)).is_ok())
    {
        return Err(DropError::NotHeld);
    }
    Ok(())
}

/// Become `uid:gid` with exactly the supplementary `groups` (a login's groups from
/// /etc/group, as checkpassword sets them for a system account), then verify as
/// [`drop_verified`] does. Allocates: call it in a process, not between fork and exec.
pub fn drop_verified_groups(uid: Uid, gid: Gid, groups: &[Gid]) -> Result<(), DropError> {
    let was_root = geteuid().is_root();
    nix::unistd::setgroups(groups).map_err(|e| DropError::Call("setgroups", e))?;
    nix::unistd::setgid(gid).map_err(|e| DropError::Call("setgid", e))?;
    nix::unistd::setuid(uid).map_err(|e| DropError::Call("setuid", e))?;
    let mut want: Vec<Gid> = groups.to_vec();
    want.sort_by_key(|g| g.as_raw());
    want.dedup();
    let mut have = nix::unistd::getgroups().map_err(|e| DropError::Call("getgroups", e))?;
    have.sort_by_key(|g| g.as_raw());
    have.dedup();
    let ids_held = nix::unistd::getuid() == uid
        && nix::unistd::geteuid() == uid
        && nix::unistd::getgid() == gid
        && nix::unistd::getegid() == gid;
    if !ids_held
        || have != want
        || (was_root && !uid.is_root() && nix::unistd::setuid(Uid::from_raw(0)).is_ok())
    {
        return Err(DropError::NotHeld);
    }
    Ok(())
}

/// The process's ids are exactly `uid`, `gid` and the one supplementary group `gid`.
fn holds(uid: Uid, gid: Gid) -> bool {
    let mut groups: [libc::gid_t; 2] = [0; 2];
    // SAFETY: getgroups writes at most 2 gids into the 2-element buffer.
    let n = unsafe { libc::getgroups(2, groups.as_mut_ptr()) };
    nix::unistd::getuid() == uid
        && nix::unistd::geteuid() == uid
        && nix::unistd::getgid() == gid
        && nix::unistd::getegid() == gid
        && n == 1
        && groups[0] == gid.as_raw()
}

/// Become `uid:gid` with exactly one supplementary group, verified. A no-op when not
/// root. The error is the failed call's errno (EPERM when the drop did not hold).
pub fn drop_to(uid: Uid, gid: Gid) -> nix::Result<()> {
    if !geteuid().is_root() {
        return Ok(());
    }
    drop_verified(uid, gid).map_err(DropError::errno)
}

/// Become the qmail user `name` with its group (see [`crate::ids::account`]).
/// A no-op when not root; an error when root and the user does not exist.
pub fn become_user(name: &str) -> nix::Result<()> {
    if !geteuid().is_root() {
        return Ok(());
    }
    let (uid, gid) = crate::ids::account(name).ok_or(Errno::ENOENT)?;
    drop_to(uid, gid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::wait::{WaitStatus, waitpid};
    use nix::unistd::{ForkResult, fork};

    #[test]
    fn a_drop_with_a_login_s_groups_holds_them_exactly() {
        if !geteuid().is_root() {
            return;
        }
        let code = in_child(|| {
            let groups = [Gid::from_raw(65534), Gid::from_raw(100)];
            match drop_verified_groups(Uid::from_raw(65534), Gid::from_raw(65534), &groups) {
                Ok(()) if nix::unistd::setuid(Uid::from_raw(0)).is_err() => 0,
                Ok(()) => 2,
                Err(_) => 1,
            }
        });
        assert_eq!(code, 0);
    }

    /// Run `f` in a forked child (a drop changes every thread of a process) and return
    /// its exit code.
    fn in_child(f: impl FnOnce() -> i32) -> i32 {
        // SAFETY: the child only makes system calls and _exits.
        match unsafe { fork() }.unwrap() {
            ForkResult::Child => {
                let code = f();
                unsafe { libc::_exit(code) }
            }
            ForkResult::Parent { child } => match waitpid(child, None).unwrap() {
                WaitStatus::Exited(_, c) => c,
                other => panic!("child ended with {other:?}"),
            },
        }
    }

    #[test]
    fn drop_from_root_holds_and_cannot_be_undone() {
        if !geteuid().is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let code = in_child(|| {
            if drop_verified(Uid::from_raw(65534), Gid::from_raw(65533)).is_err() {
                return 1;
            }
            let ok = nix::unistd::getuid().as_raw() == 65534
                && nix::unistd::getegid().as_raw() == 65533
                && nix::unistd::setuid(Uid::from_raw(0)).is_err()
                && nix::unistd::setgid(Gid::from_raw(0)).is_err();
            if ok { 0 } else { 2 }
        });
        assert_eq!(code, 0);
    }

    #[test]
    fn group_only_drop_keeps_root_in_one_group() {
        if !geteuid().is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let code = in_child(
            || match drop_verified(Uid::from_raw(0), Gid::from_raw(65533)) {
                Ok(()) if geteuid().is_root() && nix::unistd::getgid().as_raw() == 65533 => 0,
                _ => 1,
            },
        );
        assert_eq!(code, 0);
    }

    #[test]
    fn a_second_drop_to_other_ids_fails() {
        if !geteuid().is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let code = in_child(|| {
            if drop_verified(Uid::from_raw(65534), Gid::from_raw(65534)).is_err() {
                return 1;
            }
            match drop_verified(Uid::from_raw(65533), Gid::from_raw(65533)) {
                Err(DropError::Call("setgroups", Errno::EPERM)) => 0,
                _ => 2,
            }
        });
        assert_eq!(code, 0);
    }

    #[test]
    fn not_root_is_a_noop() {
        let code = in_child(|| {
            if geteuid().is_root()
                && drop_verified(Uid::from_raw(65534), Gid::from_raw(65534)).is_err()
            {
                return 1;
            }
            match drop_to(Uid::from_raw(65533), Gid::from_raw(65533)) {
                Ok(()) if nix::unistd::getuid().as_raw() != 65533 => 0,
                _ => 2,
            }
        });
        assert_eq!(code, 0);
    }
}
