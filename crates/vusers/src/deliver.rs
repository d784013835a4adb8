//! Delivery to a virtual user (qmail-vdeliver, run by qmail-local from a virtual
//! domain's `.qmail-default`): find the user, check the enabled flag and the quota,
//! write into the user's Maildir.
//!
//! Quota: the Maildir's `new/` + `cur/` bytes plus this message must not exceed the
//! user's quota. Over quota: a temporary failure (the queue retries until
//! `queuelifetime`, then bounces) unless `control/vquotapolicy` says `bounce`, then a
//! permanent one at once.

use delivery::Fail;
use std::fs::File;
use std::path::Path;

/// Deliver `message` for `address` (`EXT@HOST` as qmail-local gives them) with the
/// `Return-Path`/`Delivered-To` lines `prefix`. Returns the new file name.
pub fn deliver(
    home: &Path,
    address: &str,
    prefix: &[u8],
    message: &mut File,
) -> Result<String, Fail> {
    let user = match crate::lookup(home, address) {
        Ok(Some(u)) => u,
        Ok(None) => return Err(Fail::perm("Sorry, no mailbox here by that name. (#5.1.1)")),
        Err(_) => return Err(Fail::temp("Unable to read users/vusers.cdb. (#4.3.0)")),
    };
    if !user.enabled {
        return Err(Fail::perm("This mailbox is disabled. (#5.2.1)"));
    }
    if user.quota > 0 {
        let size = message
            .metadata()
            .map(|m| m.len())
            .map_err(|_| Fail::temp("Unable to read message. (#4.3.0)"))?;
        let (used, _) = crate::maildir_usage(&user.maildir())
            .map_err(|_| Fail::temp("Unable to read the mailbox size. (#4.3.0)"))?;
        if used
            .saturating_add(size)
            .saturating_add(prefix.len() as u64)
            > user.quota
        {
            let policy = control::Controls::new(home)
                .line("vquotapolicy")
                .ok()
                .flatten()
                .unwrap_or_default();
            return Err(match policy.trim() {
                "bounce" => Fail::perm("The mailbox is over quota. (#5.2.2)"),
                "" | "defer" => Fail::temp("The mailbox is over quota. (#4.2.2)"),
                // the deferral is the only report qmail-vdeliver has: say it there
                other => Fail::temp(format!(
                    "The mailbox is over quota; control/vquotapolicy holds {:?}, which is \
                     neither defer nor bounce, so deferring. (#4.2.2)",
                    qsys::logsafe::text(other.as_bytes())
                )),
            });
        }
    }
    delivery::maildir::deliver(&user.maildir(), prefix, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Store, UserEntry};
    use std::io::Write;

    #[test]
    fn quota_and_unknown_users() {
        let d = tempfile::tempdir().unwrap();
        let h = d.path();
        for s in ["users", "control"] {
            std::fs::create_dir(h.join(s)).unwrap();
        }
        let uhome = h.join("joe");
        for s in ["", "tmp", "new", "cur"] {
            std::fs::create_dir_all(uhome.join("Maildir").join(s)).unwrap();
        }
        let mut s = Store::open(h).unwrap();
        s.users.push(UserEntry {
            address: "joe@v.test".into(),
            hash: String::new(),
            uid: 1,
            gid: 1,
            home: uhome.clone(),
            quota: 100,
            enabled: true,
            apop: None,
        });
        s.save().unwrap();
        drop(s);
        let mut msg = tempfile::tempfile().unwrap();
        msg.write_all(&[b'x'; 40]).unwrap();
        deliver(h, "joe@v.test", b"", &mut msg).unwrap();
        deliver(h, "Joe-ext@V.test", b"", &mut msg).unwrap();
        let e = deliver(h, "joe@v.test", b"", &mut msg).unwrap_err();
        assert!(!e.permanent && e.text.contains("over quota"), "{e:?}");
        std::fs::write(h.join("control/vquotapolicy"), "bounce\n").unwrap();
        let e = deliver(h, "joe@v.test", b"", &mut msg).unwrap_err();
        assert!(e.permanent, "{e:?}");
        std::fs::write(h.join("control/vquotapolicy"), "bounse\n").unwrap();
        let e = deliver(h, "joe@v.test", b"", &mut msg).unwrap_err();
        assert!(
            !e.permanent && e.text.contains("holds \"bounse\", which is neither"),
            "{e:?}"
        );
        let e = deliver(h, "ann@v.test", b"", &mut msg).unwrap_err();
        assert!(e.permanent && e.text.contains("no mailbox"), "{e:?}");
        assert_eq!(
            crate::maildir_usage(&uhome.join("Maildir")).unwrap(),
            (80, 2)
        );
    }
}
