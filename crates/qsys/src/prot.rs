//! Dropping privileges the way qmail's `prot.c` does: `setgroups({gid})`, `setgid(gid)`,
//! then `setuid(uid)`, and a check that it worked. Only root can do this; when the
//! process is not root (a single-user install) the calls are skipped, by design.

use nix::unistd::{Gid, Uid, getegid, geteuid, setgid, setgroups, setuid};

/// Become `uid:gid` with exactly one supplementary group. A no-op when not root.
pub fn drop_to(uid: Uid, gid: Gid) -> nix::Result<()> {
    if !geteuid().is_root() {
        return Ok(());
    }
    setgroups(&[gid])?;
    setgid(gid)?;
    setuid(uid)?;
    if geteuid() != uid || getegid() != gid || (!uid.is_root() && setuid(Uid::from_raw(0)).is_ok())
    {
        return Err(nix::Error::EPERM);
    }
    Ok(())
}

/// Become the qmail user `name` with its group (see [`crate::ids::account`]).
/// A no-op when not root; an error when root and the user does not exist.
pub fn become_user(name: &str) -> nix::Result<()> {
    if !geteuid().is_root() {
        return Ok(());
    }
    let (uid, gid) = crate::ids::account(name).ok_or(nix::Error::ENOENT)?;
    drop_to(uid, gid)
}
