//! Recipient validation at RCPT time: no accept-then-bounce (backscatter) for unknown
//! local addresses.
//!
//! `control/recipients.cdb`, written by `qmail-recipients`, holds the local parts that
//! qmail-lspawn would deliver (after `virtualdomains` rewriting, lowercased):
//! key `=LOCAL` for an exact local part, key `+PREFIX` for every local part starting with
//! PREFIX (a `-default` file; the key `+` alone is a catch-all). When the file exists,
//! qmail-smtpd refuses with `550 5.1.1` a recipient in a domain of `locals` or
//! `virtualdomains` whose local part matches no key. `postmaster` is always accepted.
//!
//! Sources, in the order qmail-lspawn consults them: `users/assign` (`=` and `+`
//! entries), every passwd user with uid != 0 whose home directory exists and is owned by
//! them (the user, plus `user-EXT` for each `.qmail-EXT` and `user-PRE-` for each
//! `.qmail-PRE-default` in the home; `.qmail-default` makes `user-` a prefix), and the
//! alias user's `HOME/alias/.qmail-*` files; plus the lines of `control/recipients`
//! (`local` or `prefix-*`), for addresses served by programs the tool cannot see.
//!
//! Known approximation: a `+` assign entry or a `-default` file accepts every extension
//! below it even if qmail-local would bounce part of them.

use std::collections::BTreeSet;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Does the recipients cdb at `cdb` accept local part `local`?
pub fn accepts(cdb: &Path, local: &str) -> io::Result<bool> {
    let local = local.to_ascii_lowercase();
    if local == "postmaster" || local == "mailer-daemon" {
        return Ok(true);
    }
    let Some(db) = control::cdbfile::Cdb::open(cdb)? else {
        return Ok(true);
    };
    let mut key = Vec::with_capacity(local.len() + 1);
    key.push(b'=');
    key.extend_from_slice(local.as_bytes());
    if db.get(&key)?.is_some() {
        return Ok(true);
    }
    let bytes = local.as_bytes();
    for k in (0..=bytes.len()).rev() {
        key.truncate(0);
        key.push(b'+');
        key.extend_from_slice(&bytes[..k]);
        if db.get(&key)?.is_some() {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The recipient check for a domain of the virtual-user store (`vusers`), always on:
/// `postmaster`, an enabled virtual user (`joe`, or `joe-ext` finding `joe`), or a
/// `.qmail-LOCAL` / `.qmail-PRE-default` file the administrator put in the domain's
/// directory (its bare `.qmail-default` is the virtual delivery itself and does not
/// count). `Ok(None)` when `domain` is not virtual.
pub fn virtual_accepts(home: &Path, addr: &str) -> io::Result<Option<bool>> {
    let Some((local, domain)) = addr.rsplit_once('@') else {
        return Ok(None);
    };
    let Some(vd) = vusers::domain(home, domain)? else {
        return Ok(None);
    };
    let local = local.to_ascii_lowercase();
    if local == "postmaster" {
        return Ok(Some(true));
    }
    if let Some(u) = vusers::lookup(home, addr)? {
        return Ok(Some(u.enabled));
    }
    Ok(Some(dot_qmail_accepts(&vd.dir, &local)))
}

/// Is there a `.qmail-EXT` or `.qmail-PRE-default` (not the bare `.qmail-default`)
/// for extension `ext` in `dir`?
pub fn dot_qmail_accepts(dir: &Path, ext: &str) -> bool {
    let safe = ext.to_ascii_lowercase().replace('.', ":");
    if safe.contains('/') || safe.is_empty() {
        return false;
    }
    if dir.join(format!(".qmail-{safe}")).is_file() {
        return true;
    }
    let b = safe.as_bytes();
    (1..b.len())
        .rev()
        .filter(|&i| b[i - 1] == b'-')
        .any(|i| dir.join(format!(".qmail-{}default", &safe[..i])).is_file())
}

/// The local part as qmail-send will deliver it: `Some(local)` for a domain in
/// `locals`, `Some(prepend-local)` for one in `virtualdomains`, `None` otherwise (not
/// ours to check).
pub fn local_part(
    locals: &control::ConstMap,
    virtualdomains: &control::ConstMap,
    addr: &str,
) -> Option<String> {
    let (local, domain) = addr.rsplit_once('@')?;
    let domain = domain.to_ascii_lowercase();
    if locals.contains(&domain) {
        return Some(local.to_string());
    }
    let prepend = virtualdomains
        .get(&format!("{local}@{domain}"))
        .or_else(|| virtualdomains.lookup_domain(&domain, true))?;
    if prepend.is_empty() {
        return None;
    }
    Some(format!("{prepend}-{local}"))
}

/// The keys for the `.qmail*` files in `dir` belonging to local-part prefix `base`
/// (`user-` for a user, empty for the alias user).
fn dot_qmail_keys(dir: &Path, base: &str, keys: &mut BTreeSet<String>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(ext) = name.strip_prefix(".qmail-") else {
            continue;
        };
        // qmail-local looks up the extension with '.' turned into ':'.
        let ext = ext.replace(':', ".").to_ascii_lowercase();
        if ext == "default" {
            keys.insert(format!("+{base}"));
        } else if let Some(pre) = ext.strip_suffix("-default") {
            keys.insert(format!("+{base}{pre}-"));
        } else if !ext.is_empty() {
            keys.insert(format!("={base}{ext}"));
        }
    }
}

/// Every account of the passwd database (getpwent): name, uid, home.
fn all_users() -> Vec<(String, u32, std::path::PathBuf)> {
    use std::ffi::CStr;
    use std::os::unix::ffi::OsStrExt;
    let mut v = Vec::new();
    // SAFETY: getpwent's static buffer is read before the next call; this tool is
    // single-threaded and nothing else iterates the database meanwhile.
    unsafe {
        libc::setpwent();
        loop {
            let pw = libc::getpwent();
            if pw.is_null() {
                break;
            }
            let pw = &*pw;
            if pw.pw_name.is_null() || pw.pw_dir.is_null() {
                continue;
            }
            let name = CStr::from_ptr(pw.pw_name).to_string_lossy().into_owned();
            let dir = std::ffi::OsStr::from_bytes(CStr::from_ptr(pw.pw_dir).to_bytes());
            v.push((name, pw.pw_uid, std::path::PathBuf::from(dir)));
        }
        libc::endpwent();
    }
    v
}

/// Every key for the installation at `home`.
pub fn build_keys(home: &Path) -> io::Result<BTreeSet<String>> {
    let mut keys = BTreeSet::new();
    // users/assign
    match std::fs::read(home.join("users/assign")) {
        Ok(text) => {
            for line in text.split(|&b| b == b'\n') {
                let line = String::from_utf8_lossy(line);
                if line == "." {
                    break;
                }
                let mut it = line.splitn(2, ':');
                let first = it.next().unwrap_or("");
                if let Some(l) = first.strip_prefix('=') {
                    keys.insert(format!("={}", l.to_ascii_lowercase()));
                } else if let Some(l) = first.strip_prefix('+') {
                    keys.insert(format!("+{}", l.to_ascii_lowercase()));
                }
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    // passwd users (as qmail-getpw sees them), through NSS: LDAP or sss users count too
    for (name, uid, dir) in all_users() {
        if uid == 0
            || name.is_empty()
            || name.len() >= 32
            || name.bytes().any(|b| b.is_ascii_uppercase())
        {
            continue;
        }
        let Ok(meta) = std::fs::metadata(&dir) else {
            continue;
        };
        if meta.uid() != uid {
            continue;
        }
        keys.insert(format!("={name}"));
        dot_qmail_keys(Path::new(&dir), &format!("{name}-"), &mut keys);
    }
    // the alias user
    dot_qmail_keys(&home.join("alias"), "", &mut keys);
    // control/recipients: extra local parts
    let c = control::Controls::new(home);
    for l in c.list_or_empty("recipients")? {
        let l = l.to_ascii_lowercase();
        match l.strip_suffix('*') {
            Some(pre) => keys.insert(format!("+{pre}")),
            None => keys.insert(format!("={l}")),
        };
    }
    Ok(keys)
}

/// Write `control/recipients.cdb` for the installation at `home`; returns the key count.
pub fn write_cdb(home: &Path) -> io::Result<usize> {
    let keys = build_keys(home)?;
    let recs: Vec<(&[u8], &[u8])> = keys.iter().map(|k| (k.as_bytes(), &b""[..])).collect();
    control::cdbfile::write(&home.join("control/recipients.cdb"), recs, 0o644)?;
    Ok(keys.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_from_alias_assign_and_extra_list() {
        let d = tempfile::tempdir().unwrap();
        let h = d.path();
        for sub in ["alias", "users", "control"] {
            std::fs::create_dir_all(h.join(sub)).unwrap();
        }
        for f in [
            ".qmail-postmaster",
            ".qmail-sales:eu",
            ".qmail-list-default",
        ] {
            std::fs::write(h.join("alias").join(f), "&x\n").unwrap();
        }
        std::fs::write(
            h.join("users/assign"),
            "=joe:joe:1:1:/h:::\n+shop-:shop:2:2:/s:-::\n.\n",
        )
        .unwrap();
        std::fs::write(h.join("control/recipients"), "# extra\nrobot\nbot-*\n").unwrap();
        assert_eq!(write_cdb(h).unwrap(), build_keys(h).unwrap().len());
        let cdb = h.join("control/recipients.cdb");
        for ok in [
            "postmaster",
            "Sales.EU",
            "list-anything",
            "joe",
            "shop-x",
            "robot",
            "bot-7",
        ] {
            assert!(accepts(&cdb, ok).unwrap(), "{ok}");
        }
        for no in ["sales", "list", "joe-x", "nobody", "bot"] {
            assert!(!accepts(&cdb, no).unwrap(), "{no}");
        }
        std::fs::write(h.join("alias/.qmail-default"), "&x\n").unwrap();
        write_cdb(h).unwrap();
        assert!(accepts(&cdb, "anything").unwrap());
    }

    #[test]
    fn dot_qmail_files_of_a_virtual_domain() {
        let d = tempfile::tempdir().unwrap();
        for f in [".qmail-default", ".qmail-sales", ".qmail-list-default"] {
            std::fs::write(d.path().join(f), "x\n").unwrap();
        }
        assert!(dot_qmail_accepts(d.path(), "Sales"));
        assert!(dot_qmail_accepts(d.path(), "list-x"));
        assert!(!dot_qmail_accepts(d.path(), "list"));
        assert!(!dot_qmail_accepts(d.path(), "nobody"));
        assert!(!dot_qmail_accepts(d.path(), "../x"));
    }

    #[test]
    fn virtual_users_from_the_vusers_store() {
        let d = tempfile::tempdir().unwrap();
        let h = d.path();
        let dom = h.join("virt.test");
        std::fs::create_dir_all(h.join("users")).unwrap();
        std::fs::create_dir_all(&dom).unwrap();
        std::fs::write(dom.join(".qmail-default"), "|vdeliver\n").unwrap();
        std::fs::write(dom.join(".qmail-sales"), "&ann@virt.test\n").unwrap();
        std::fs::write(
            h.join("users/vdomains"),
            format!("virt.test:vowner:1000:1000:{}\n", dom.display()),
        )
        .unwrap();
        std::fs::write(
            h.join("users/vpasswd"),
            format!(
                "ann@virt.test::1000:1000:{0}/ann:0::\noff@virt.test::1000:1000:{0}/off:0:d:\n",
                dom.display()
            ),
        )
        .unwrap();
        vusers::store::Store::open(h).unwrap().compile().unwrap();
        let v = |a: &str| virtual_accepts(h, a).unwrap();
        assert_eq!(v("ann@virt.test"), Some(true));
        assert_eq!(v("Ann-list@Virt.Test"), Some(true));
        assert_eq!(v("postmaster@virt.test"), Some(true));
        assert_eq!(v("sales@virt.test"), Some(true));
        assert_eq!(v("off@virt.test"), Some(false));
        assert_eq!(v("bob@virt.test"), Some(false));
        assert_eq!(v("bob@other.test"), None);
        assert_eq!(v("bob"), None);
    }

    #[test]
    fn local_part_mapping() {
        let locals = control::ConstMap::from_keys(&["example.test".into()]);
        let vd = control::ConstMap::from_pairs(&[
            "virt.test:joe-virt".into(),
            "except.virt.test:".into(),
        ]);
        assert_eq!(
            local_part(&locals, &vd, "a@Example.Test").as_deref(),
            Some("a")
        );
        assert_eq!(
            local_part(&locals, &vd, "b@virt.test").as_deref(),
            Some("joe-virt-b")
        );
        assert_eq!(local_part(&locals, &vd, "b@except.virt.test"), None);
        assert_eq!(local_part(&locals, &vd, "b@elsewhere.test"), None);
    }
}
