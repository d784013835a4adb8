//! The qmail users and groups (DESIGN section 2), resolved by name at run time.
//!
//! Names are fixed: `alias qmaild qmaill qmailp qmailq qmailr qmails qmailf qmailg`
//! (qmailf: the content filters of qmail-qfilter's chain, DESIGN section 10; qmailg:
//! qmail-guard, the log-driven blocker), groups `qmail` and `nofiles`. When a name is missing (an install by an ordinary user, where every
//! program runs as that one user) the lookup says so and callers keep their own ids.
//!
//! A program linked with a static glibc (the per-message ones, .cargo/static-link.sh)
//! reads `/etc/passwd` and `/etc/group` itself: glibc would read them too, but for a name
//! not found there it dlopen()s the next NSS module of nsswitch.conf, and that crashes a
//! static program. So there a name only in LDAP or systemd's database is "missing".

use std::path::PathBuf;

use nix::unistd::{Gid, Group, Uid, User};

pub const USERS: [&str; 9] = [
    "alias", "qmaild", "qmaill", "qmailp", "qmailq", "qmailr", "qmails", "qmailf", "qmailg",
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

/// Look up a user's uid, gid and home by name.
pub fn user(name: &str) -> Option<(Uid, Gid, PathBuf)> {
    if static_glibc() {
        let text = std::fs::read("/etc/passwd").ok()?;
        return passwd_entry(&text, name);
    }
    User::from_name(name)
        .ok()
        .flatten()
        .map(|u| (u.uid, u.gid, u.dir))
}

/// The name of the user with `uid` (for messages), or the number when it has none.
pub fn name_of_uid(uid: Uid) -> String {
    let named = if static_glibc() {
        std::fs::read("/etc/passwd")
            .ok()
            .and_then(|text| passwd_name(&text, uid.as_raw()))
    } else {
        User::from_uid(uid).ok().flatten().map(|u| u.name)
    };
    named.unwrap_or_else(|| format!("uid {uid}"))
}

/// The name on the first line of a passwd(5) text whose uid is `uid`.
fn passwd_name(text: &[u8], uid: u32) -> Option<String> {
    text.split(|&b| b == b'\n')
        .map(|line| line.split(|&b| b == b':').collect::<Vec<_>>())
        .find(|f| f.len() >= 7 && number(f[2]) == Some(uid))
        .map(|f| String::from_utf8_lossy(f[0]).into_owned())
}

/// Look up a uid by name.
pub fn uid(name: &str) -> Option<Uid> {
    user(name).map(|(uid, _, _)| uid)
}

/// Look up a gid by name.
pub fn gid(name: &str) -> Option<Gid> {
    if static_glibc() {
        let text = std::fs::read("/etc/group").ok()?;
        return group_entry(&text, name);
    }
    Group::from_name(name).ok().flatten().map(|g| g.gid)
}

/// Whether this program runs without a dynamic loader, i.e. with a static glibc.
pub fn static_glibc() -> bool {
    // SAFETY: getauxval only reads the auxiliary vector. AT_BASE is where the kernel
    // loaded the program interpreter (ld.so): 0 when there is none.
    unsafe { libc::getauxval(libc::AT_BASE) == 0 }
}

/// The fields of the line for `name` in a passwd(5) or group(5) file, if well formed.
fn entry<'a>(text: &'a [u8], name: &str, fields: usize) -> Option<Vec<&'a [u8]>> {
    text.split(|&b| b == b'\n')
        .map(|line| line.split(|&b| b == b':').collect::<Vec<_>>())
        .find(|f| f.len() >= fields && f[0] == name.as_bytes())
}

fn number(field: &[u8]) -> Option<u32> {
    std::str::from_utf8(field).ok()?.parse().ok()
}

/// uid, gid and home of `name` in the text of /etc/passwd.
fn passwd_entry(text: &[u8], name: &str) -> Option<(Uid, Gid, PathBuf)> {
    use std::os::unix::ffi::OsStrExt;
    let f = entry(text, name, 7)?;
    let home = PathBuf::from(std::ffi::OsStr::from_bytes(f[5]));
    Some((
        Uid::from_raw(number(f[2])?),
        Gid::from_raw(number(f[3])?),
        home,
    ))
}

/// gid of `name` in the text of /etc/group.
fn group_entry(text: &[u8], name: &str) -> Option<Gid> {
    Some(Gid::from_raw(number(entry(text, name, 4)?[2])?))
}

/// The uid and gid a qmail program should take on: its user and that user's qmail group.
pub fn account(user: &str) -> Option<(Uid, Gid)> {
    Some((uid(user)?, gid(primary_group(user))?))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &[u8] = b"root:x:0:0:root:/root:/bin/bash\nqmaild:x:994:993::/var/qmail:/usr/sbin/nologin\nbad:x:abc:1::/:/bin/sh\nshort:x:5\n";
    const GROUP: &[u8] = b"root:x:0:\nnofiles:x:993:\nqmail:x:992:qmailq,qmailr\n";

    #[test]
    fn files_lookup() {
        assert_eq!(
            passwd_entry(PASSWD, "qmaild"),
            Some((
                Uid::from_raw(994),
                Gid::from_raw(993),
                PathBuf::from("/var/qmail")
            ))
        );
        assert_eq!(passwd_entry(PASSWD, "qmail"), None);
        assert_eq!(passwd_entry(PASSWD, "bad"), None);
        assert_eq!(passwd_entry(PASSWD, "short"), None);
        assert_eq!(passwd_entry(PASSWD, ""), None);
        assert_eq!(group_entry(GROUP, "qmail"), Some(Gid::from_raw(992)));
        assert_eq!(group_entry(GROUP, "qmailq"), None);
        assert_eq!(passwd_name(PASSWD, 994).as_deref(), Some("qmaild"));
        assert_eq!(passwd_name(PASSWD, 5), None);
    }

    #[test]
    fn test_binary_is_dynamic() {
        assert!(!static_glibc());
    }
}
