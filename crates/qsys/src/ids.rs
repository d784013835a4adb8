//! The qmail users and groups (DESIGN section 2), resolved by name at run time.
//!
//! Names are fixed: `alias qmaild qmaill qmailp qmailq qmailr qmails qmailf` (qmailf:
//! the content filters of qmail-qfilter's chain, DESIGN section 10), groups `qmail`
//! and `nofiles`. When a name is missing (an install by an ordinary user, where every
//! program runs as that one user) the lookup says so and callers keep their own ids.

use nix::unistd::{Gid, Group, Uid, User};

pub const USERS: [&str; 8] = [
    "alias", "qmaild", "qmaill", "qmailp", "qmailq", "qmailr", "qmails", "qmailf",
];
pub const GROUP_QMAIL: &str = "qmail";
pub const GROUP_NOFILES: &str = "nofiles";

/// The group each qmail user belongs to (qmail's `conf-users` and `INSTALL.ids`).
pub fn primary_group(user: &str) -> &'static str {
    match user {
        "qmailq" | "qmailr" | "qmails" => GROUP_QMAIL,
        _ => GROUP_NOFILES,
    }
}

/// Look up a user's uid and home by name.
pub fn user(name: &str) -> Option<(Uid, Gid, std::path::PathBuf)> {
    User::from_name(name)
        .ok()
        .flatten()
        .map(|u| (u.uid, u.gid, u.dir))
}

/// Look up a uid by name.
pub fn uid(name: &str) -> Option<Uid> {
    User::from_name(name).ok().flatten().map(|u| u.uid)
}

/// Look up a gid by name.
pub fn gid(name: &str) -> Option<Gid> {
    Group::from_name(name).ok().flatten().map(|g| g.gid)
}

/// The uid and gid a qmail program should take on: its user and that user's qmail group.
pub fn account(user: &str) -> Option<(Uid, Gid)> {
    Some((uid(user)?, gid(primary_group(user))?))
}
