//! What the administration tool (`qmail-vuser`) does to an installation: domains in the
//! store plus their `users/assign` and `control/virtualdomains` lines, users with their
//! directories and Maildirs, the password policy.
//!
//! Password policy (applies to everyone, the administrator included):
//! `control/vpassminlen` (default 10) characters at least, at most 128;
//! `control/vpassclasses` (default 3) of the four classes lower case, upper case, digit,
//! other; the password may not contain the user's name (when it has 3+ characters);
//! no control characters or NUL.

use crate::store::{Store, UserEntry};
use crate::{VDomain, split_address, valid_domain};
use nix::unistd::{Gid, Uid};
use qsys::safefs::Dir;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

/// An error for the administrator, with a temporary/permanent flag.
#[derive(Debug)]
pub struct AdminError {
    pub text: String,
    /// True for environment trouble (exit 111), false for a refused request (exit 100).
    pub temporary: bool,
}

impl AdminError {
    pub fn refuse(t: impl Into<String>) -> AdminError {
        AdminError {
            text: t.into(),
            temporary: false,
        }
    }
}

impl From<io::Error> for AdminError {
    fn from(e: io::Error) -> AdminError {
        AdminError {
            text: e.to_string(),
            temporary: true,
        }
    }
}

type R<T> = Result<T, AdminError>;

fn ctx<T>(r: io::Result<T>, what: impl FnOnce() -> String) -> R<T> {
    r.map_err(|e| AdminError {
        text: format!("{}: {e}", what()),
        temporary: true,
    })
}

/// Check `password` for `address` against the installation's policy.
pub fn check_password_policy(home: &Path, address: &str, password: &str) -> R<()> {
    let ctl = control::Controls::new(home);
    let min = ctl.int("vpassminlen", 10)? as usize;
    let classes = ctl.int("vpassclasses", 3)?.min(4) as usize;
    let n = password.chars().count();
    if n < min {
        return Err(AdminError::refuse(format!(
            "password too short: at least {min} characters"
        )));
    }
    if n > 128 {
        return Err(AdminError::refuse(
            "password too long: at most 128 characters",
        ));
    }
    if password.chars().any(|c| c.is_control()) {
        return Err(AdminError::refuse("password contains control characters"));
    }
    let has = [
        password.chars().any(|c| c.is_lowercase()),
        password.chars().any(|c| c.is_uppercase()),
        password.chars().any(|c| c.is_ascii_digit()),
        password
            .chars()
            .any(|c| !c.is_alphanumeric() && !c.is_control()),
    ];
    let got = has.iter().filter(|x| **x).count();
    if got < classes {
        return Err(AdminError::refuse(format!(
            "password too simple: use {classes} of lower case, upper case, digits, other characters"
        )));
    }
    let local = address.split('@').next().unwrap_or("");
    if local.len() >= 3 && password.to_lowercase().contains(local) {
        return Err(AdminError::refuse("password contains the user name"));
    }
    Ok(())
}

/// The directory `name` in `parent`, created mode 0700 when missing, owned by `uid:gid`
/// (when root). Never through a link: the domain's owner controls everything below the
/// domain directory, and a planted `vdir/bob -> /root` is refused, not chowned.
fn make_dir_owned(parent: &Dir, name: &str, uid: u32, gid: u32) -> io::Result<Dir> {
    let d = parent.make_dir(name, 0o700)?;
    if qsys::is_root() {
        nix::unistd::fchown(&d, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid))).map_err(
            |e| io::Error::other(format!("unable to chown {}: {e}", d.path().display())),
        )?;
    }
    Ok(d)
}

/// A domain directory's parent (walked from `/` with [`Dir::open_from_root`]) and its
/// last component, which is never followed. `--dir /home/OWNER/mail/DOMAIN` crosses a
/// tree the owner controls: a link there (`mail -> /etc`, planted even while this runs)
/// is refused, so root never creates or writes the domain directory anywhere else.
fn open_domain_dir(dir: &Path) -> io::Result<(Dir, String)> {
    let (Some(parent), Some(name)) = (dir.parent(), dir.file_name()) else {
        return Err(io::Error::other(format!(
            "not a directory name: {}",
            dir.display()
        )));
    };
    Ok((
        Dir::open_from_root(parent)?,
        name.to_string_lossy().into_owned(),
    ))
}

/// Replace `name` in `dir` by a file holding `text`, owned by `uid:gid` (when root), mode
/// 0644: written under a temporary name created with `O_EXCL` and renamed over, so an
/// entry the owner planted (a link) is replaced, never written through.
fn replace_file_owned(dir: &Dir, name: &str, text: &[u8], uid: u32, gid: u32) -> io::Result<()> {
    let tmp = format!("{name}.vuser-new");
    dir.remove_file(&tmp)?;
    let mut f = dir.create_new(&tmp, 0o600)?.ok_or_else(|| {
        io::Error::other(format!("{} appeared meanwhile", dir.join(&tmp).display()))
    })?;
    write_owned(&mut f, &dir.join(&tmp), text, uid, gid)?;
    dir.rename(&tmp, name)
}

/// Write `text` to a file just created, then give it to `uid:gid` (when root), mode 0644.
fn write_owned(
    f: &mut std::fs::File,
    path: &Path,
    text: &[u8],
    uid: u32,
    gid: u32,
) -> io::Result<()> {
    use std::io::Write;
    f.write_all(text)?;
    f.sync_all()?;
    let ids = qsys::is_root().then(|| (Uid::from_raw(uid), Gid::from_raw(gid)));
    qsys::safefs::set_owner_mode(&*f, path, ids.map(|i| i.0), ids.map(|i| i.1), 0o644)
}

/// Lines of a text file (missing = none).
fn read_lines(p: &Path) -> io::Result<Vec<String>> {
    match std::fs::read_to_string(p) {
        Ok(s) => Ok(s.lines().map(str::to_string).collect()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

fn write_lines(p: &Path, lines: &[String], mode: u32) -> io::Result<()> {
    let mut text = lines.join("\n");
    if !text.is_empty() {
        text.push('\n');
    }
    qsys::fsync::write_atomic(p, text.as_bytes(), mode)
}

/// Rewrite `users/assign` with `line` added (Some) or the domain's line removed, and
/// compile `users/cdb` as qmail-newu does.
fn update_assign(home: &Path, domain: &str, line: Option<String>) -> R<()> {
    let path = home.join("users/assign");
    let prefix = format!("+{domain}-:");
    let mut lines: Vec<String> = read_lines(&path)?
        .into_iter()
        .filter(|l| l != "." && !l.starts_with(&prefix))
        .collect();
    if let Some(l) = line {
        lines.push(l);
    }
    lines.push(".".into());
    let text = lines.join("\n") + "\n";
    let records = control::assign::compile(text.as_bytes())
        .map_err(|e| AdminError::refuse(format!("users/assign: {e}")))?;
    ctx(
        qsys::fsync::write_atomic(&path, text.as_bytes(), 0o644),
        || "unable to write users/assign".into(),
    )?;
    ctx(
        control::cdbfile::write(
            &home.join("users/cdb"),
            records.iter().map(|(k, v)| (k.as_slice(), v.as_slice())),
            0o644,
        ),
        || "unable to write users/cdb".into(),
    )
}

/// Add or remove `entry` in a control list file. `create`: make the file if missing.
fn update_control(home: &Path, name: &str, key: &str, entry: Option<&str>, create: bool) -> R<()> {
    let path = home.join("control").join(name);
    if !create && !path.exists() {
        return Ok(());
    }
    let key_l = key.to_ascii_lowercase();
    let mut lines: Vec<String> = read_lines(&path)?
        .into_iter()
        .filter(|l| {
            let k = l
                .split(':')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            k != key_l
        })
        .collect();
    if let Some(e) = entry {
        lines.push(e.to_string());
    }
    ctx(write_lines(&path, &lines, 0o644), || {
        format!("unable to write control/{name}")
    })
}

/// The account owning a new domain's mail: `owner` or, when not root, the invoking user.
pub fn owner_account(owner: Option<&str>) -> R<(String, u32, u32)> {
    let user = match owner {
        Some(o) => nix::unistd::User::from_name(o)
            .map_err(io::Error::from)?
            .ok_or_else(|| AdminError::refuse(format!("no such user: {o}")))?,
        None if !qsys::is_root() => nix::unistd::User::from_uid(nix::unistd::getuid())
            .map_err(io::Error::from)?
            .ok_or_else(|| AdminError::refuse("who am I?"))?,
        None => nix::unistd::User::from_name("vmail")
            .map_err(io::Error::from)?
            .ok_or_else(|| {
                AdminError::refuse("no user vmail: create it or name the owner with --owner")
            })?,
    };
    if user.uid.is_root() {
        return Err(AdminError::refuse("root may not own mailboxes"));
    }
    Ok((user.name, user.uid.as_raw(), user.gid.as_raw()))
}

/// Add a virtual domain: store entry, directory with `.qmail-default`, `users/assign`
/// + `users/cdb`, `control/virtualdomains`, and `control/rcpthosts` when that exists.
pub fn add_domain(
    home: &Path,
    domain: &str,
    owner: Option<&str>,
    dir: Option<PathBuf>,
) -> R<VDomain> {
    let domain = domain.to_ascii_lowercase();
    if !valid_domain(&domain) {
        return Err(AdminError::refuse(format!("bad domain name: {domain}")));
    }
    let locals = control::Controls::new(home).list_or_empty("locals")?;
    if locals.iter().any(|l| l.eq_ignore_ascii_case(&domain)) {
        return Err(AdminError::refuse(format!(
            "{domain} is in control/locals; a domain is either local or virtual"
        )));
    }
    let (user, uid, gid) = owner_account(owner)?;
    let mut store = Store::open(home)?;
    if store.domain(&domain).is_some() {
        return Err(AdminError::refuse(format!("{domain} exists already")));
    }
    let dir = match dir {
        Some(d) => d,
        None => {
            let base = home.join("vdomains");
            ctx(
                match std::fs::DirBuilder::new().mode(0o755).create(&base) {
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
                    r => r,
                },
                || format!("unable to create {}", base.display()),
            )?;
            base.join(&domain)
        }
    };
    if !dir.is_absolute() {
        return Err(AdminError::refuse(
            "the domain directory must be an absolute path",
        ));
    }
    let (parent, name) = open_domain_dir(&dir)?;
    let ddir = ctx(make_dir_owned(&parent, &name, uid, gid), || {
        format!("unable to create {}", dir.display())
    })?;
    let text = format!("|{}\n", home.join("bin/qmail-vdeliver").display());
    ctx(
        replace_file_owned(&ddir, ".qmail-default", text.as_bytes(), uid, gid),
        || format!("unable to write {}", dir.join(".qmail-default").display()),
    )?;
    // RFC 5321 wants postmaster at every domain: forward it to this host's postmaster.
    // An existing entry (the owner's own file, or anything else) is left alone.
    let me = control::Controls::new(home)
        .line("me")?
        .unwrap_or_else(qsys::hostname);
    let pm = ddir.join(".qmail-postmaster");
    if let Some(mut f) = ddir.create_new(".qmail-postmaster", 0o600)? {
        ctx(
            write_owned(
                &mut f,
                &pm,
                format!("&postmaster@{me}\n").as_bytes(),
                uid,
                gid,
            ),
            || format!("unable to write {}", pm.display()),
        )?;
    }
    let d = VDomain {
        domain: domain.clone(),
        user: user.clone(),
        uid,
        gid,
        dir: dir.clone(),
    };
    store.domains.push(d.clone());
    store.save()?;
    update_assign(
        home,
        &domain,
        Some(format!(
            "+{domain}-:{user}:{uid}:{gid}:{}:-::",
            dir.display()
        )),
    )?;
    update_control(
        home,
        "virtualdomains",
        &domain,
        Some(&format!("{domain}:{domain}")),
        true,
    )?;
    update_control(home, "rcpthosts", &domain, Some(&domain), false)?;
    Ok(d)
}

/// Remove a virtual domain and its users from the store and the control files. Mail
/// directories stay on disk.
pub fn del_domain(home: &Path, domain: &str) -> R<VDomain> {
    let domain = domain.to_ascii_lowercase();
    let mut store = Store::open(home)?;
    let Some(i) = store.domains.iter().position(|d| d.domain == domain) else {
        return Err(AdminError::refuse(format!("no such domain: {domain}")));
    };
    let d = store.domains.remove(i);
    let suffix = format!("@{domain}");
    store.users.retain(|u| !u.address.ends_with(&suffix));
    store.save()?;
    update_assign(home, &domain, None)?;
    update_control(home, "virtualdomains", &domain, None, false)?;
    update_control(home, "rcpthosts", &domain, None, false)?;
    Ok(d)
}

/// Add a user with an already checked password hash.
pub fn add_user(
    home: &Path,
    address: &str,
    hash: String,
    quota: u64,
    apop: Option<Vec<u8>>,
) -> R<UserEntry> {
    let (local, domain) = split_address(address)
        .ok_or_else(|| AdminError::refuse(format!("bad address: {address}")))?;
    let address = format!("{local}@{domain}");
    let mut store = Store::open(home)?;
    let Some(d) = store.domain(&domain).cloned() else {
        return Err(AdminError::refuse(format!("no such domain: {domain}")));
    };
    if store.user(&address).is_some() {
        return Err(AdminError::refuse(format!("{address} exists already")));
    }
    let uhome = d.dir.join(&local);
    let (parent, name) = open_domain_dir(&d.dir)?;
    let made = parent.subdir(&name).and_then(|ddir| {
        let user = make_dir_owned(&ddir, &local, d.uid, d.gid)?;
        let md = make_dir_owned(&user, "Maildir", d.uid, d.gid)?;
        for sub in ["tmp", "new", "cur"] {
            make_dir_owned(&md, sub, d.uid, d.gid)?;
        }
        Ok(())
    });
    ctx(made, || {
        format!("unable to create {}/Maildir", uhome.display())
    })?;
    let e = UserEntry {
        address,
        hash,
        uid: d.uid,
        gid: d.gid,
        home: uhome,
        quota,
        enabled: true,
        apop,
    };
    store.users.push(e.clone());
    store.save()?;
    Ok(e)
}

/// Change a user in place (password, quota, enabled flag) and save.
pub fn modify_user(home: &Path, address: &str, f: impl FnOnce(&mut UserEntry)) -> R<UserEntry> {
    let addr = address.to_ascii_lowercase();
    let mut store = Store::open(home)?;
    let Some(u) = store.user_mut(&addr) else {
        return Err(AdminError::refuse(format!("no such user: {addr}")));
    };
    f(u);
    let copy = u.clone();
    store.save()?;
    Ok(copy)
}

/// Remove a user from the store (the mailbox stays on disk).
pub fn del_user(home: &Path, address: &str) -> R<UserEntry> {
    let addr = address.to_ascii_lowercase();
    let mut store = Store::open(home)?;
    let Some(i) = store.users.iter().position(|u| u.address == addr) else {
        return Err(AdminError::refuse(format!("no such user: {addr}")));
    };
    let u = store.users.remove(i);
    store.save()?;
    Ok(u)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn home() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        for s in ["users", "control", "bin"] {
            std::fs::create_dir(d.path().join(s)).unwrap();
        }
        std::fs::write(d.path().join("control/locals"), "mx.example.test\n").unwrap();
        std::fs::write(d.path().join("control/me"), "mx.example.test\n").unwrap();
        std::fs::write(d.path().join("control/rcpthosts"), "mx.example.test\n").unwrap();
        d
    }

    #[test]
    fn policy() {
        let d = home();
        let h = d.path();
        assert!(check_password_policy(h, "joe@x.org", "Short1!").is_err());
        assert!(check_password_policy(h, "joe@x.org", "alllowercaseletters").is_err());
        assert!(check_password_policy(h, "joe@x.org", "Good-Password-42").is_ok());
        assert!(check_password_policy(h, "joe@x.org", "Hello-Joe-42-xx").is_err());
        std::fs::write(h.join("control/vpassminlen"), "4\n").unwrap();
        std::fs::write(h.join("control/vpassclasses"), "1\n").unwrap();
        assert!(check_password_policy(h, "joe@x.org", "abcd").is_ok());
    }

    #[test]
    fn domains_and_users() {
        if qsys::is_root()
            && nix::unistd::User::from_name("vmail")
                .ok()
                .flatten()
                .is_none()
        {
            // as root the owner must be named; use a system account that exists
            let d = home();
            let dom = add_domain(d.path(), "Virt.Example", Some("nobody"), None).unwrap();
            check_domain(d.path(), &dom);
            return;
        }
        let d = home();
        let dom = add_domain(d.path(), "Virt.Example", None, None).unwrap();
        check_domain(d.path(), &dom);
    }

    fn check_domain(h: &Path, dom: &VDomain) {
        assert_eq!(dom.domain, "virt.example");
        assert!(add_domain(h, "virt.example", dom_owner(dom), None).is_err());
        assert!(add_domain(h, "mx.example.test", dom_owner(dom), None).is_err());
        let vd = std::fs::read_to_string(h.join("control/virtualdomains")).unwrap();
        assert_eq!(vd, "virt.example:virt.example\n");
        let rh = std::fs::read_to_string(h.join("control/rcpthosts")).unwrap();
        assert!(rh.contains("virt.example\n"));
        let assign = std::fs::read_to_string(h.join("users/assign")).unwrap();
        assert!(assign.starts_with("+virt.example-:"), "{assign}");
        assert!(assign.ends_with("\n.\n"));
        assert!(h.join("users/cdb").is_file());
        let pm = std::fs::read_to_string(dom.dir.join(".qmail-postmaster")).unwrap();
        assert_eq!(pm, "&postmaster@mx.example.test\n");
        let dq = std::fs::read_to_string(dom.dir.join(".qmail-default")).unwrap();
        assert!(dq.starts_with('|') && dq.contains("qmail-vdeliver"));

        let u = add_user(h, "Ann@virt.example", "$6$x$y".into(), 500, None).unwrap();
        assert_eq!(u.address, "ann@virt.example");
        assert!(u.home.join("Maildir/new").is_dir());
        assert!(add_user(h, "ann@virt.example", "h".into(), 0, None).is_err());
        assert!(add_user(h, "ann@other.example", "h".into(), 0, None).is_err());
        let found = crate::lookup(h, "ann@virt.example").unwrap().unwrap();
        assert_eq!(found.quota, 500);
        modify_user(h, "ann@virt.example", |u| {
            u.quota = 7;
            u.enabled = false;
        })
        .unwrap();
        let found = crate::lookup(h, "ann@virt.example").unwrap().unwrap();
        assert_eq!((found.quota, found.enabled), (7, false));
        del_user(h, "ann@virt.example").unwrap();
        assert!(crate::lookup(h, "ann@virt.example").unwrap().is_none());
        add_user(h, "bob@virt.example", "h".into(), 0, None).unwrap();
        del_domain(h, "virt.example").unwrap();
        assert!(crate::lookup(h, "bob@virt.example").unwrap().is_none());
        assert_eq!(
            std::fs::read_to_string(h.join("control/virtualdomains")).unwrap(),
            ""
        );
        assert_eq!(
            std::fs::read_to_string(h.join("users/assign")).unwrap(),
            ".\n"
        );
    }

    /// The owner for a test domain: the caller, or (as root) a system account.
    fn test_owner() -> Option<&'static str> {
        qsys::is_root().then_some("nobody")
    }

    #[test]
    fn links_the_domain_owner_planted_are_never_followed() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
        let d = home();
        let h = d.path();
        let victim = h.join("victim");
        std::fs::create_dir(&victim).unwrap();
        std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(victim.join("file"), "keep\n").unwrap();
        let before = std::fs::metadata(&victim).unwrap();
        let dom = add_domain(h, "virt.example", test_owner(), None).unwrap();

        // vdir/bob -> victim: refused, the victim keeps its owner and mode
        symlink(&victim, dom.dir.join("bob")).unwrap();
        let e = add_user(h, "bob@virt.example", "h".into(), 0, None).unwrap_err();
        assert!(
            e.text.contains("symbolic link") && e.text.contains("bob"),
            "{}",
            e.text
        );
        // vdir/eve/Maildir -> victim: the same one level down
        std::fs::create_dir(dom.dir.join("eve")).unwrap();
        symlink(&victim, dom.dir.join("eve/Maildir")).unwrap();
        assert!(add_user(h, "eve@virt.example", "h".into(), 0, None).is_err());
        assert!(!victim.join("tmp").exists());

        // a domain deleted and added again, its directory kept with the owner's links:
        // .qmail-default is replaced (not written through), a dangling
        // .qmail-postmaster is left alone (its target not created)
        del_domain(h, "virt.example").unwrap();
        let dq = dom.dir.join(".qmail-default");
        std::fs::remove_file(&dq).unwrap();
        symlink(victim.join("file"), &dq).unwrap();
        let pm = dom.dir.join(".qmail-postmaster");
        std::fs::remove_file(&pm).unwrap();
        symlink(victim.join("created"), &pm).unwrap();
        add_domain(h, "virt.example", test_owner(), None).unwrap();
        assert_eq!(
            std::fs::read_to_string(victim.join("file")).unwrap(),
            "keep\n"
        );
        assert!(std::fs::symlink_metadata(&dq).unwrap().is_file());
        assert!(
            std::fs::read_to_string(&dq)
                .unwrap()
                .contains("qmail-vdeliver")
        );
        assert!(!victim.join("created").exists());

        let after = std::fs::metadata(&victim).unwrap();
        assert_eq!(
            (after.uid(), after.gid(), after.mode()),
            (before.uid(), before.gid(), before.mode())
        );
    }

    /// `--dir /OWNERHOME/mail/DOMAIN` where the owner made `mail` a link: refused, and
    /// nothing is created or given away where the link points.
    #[test]
    fn a_link_above_the_domain_directory_in_the_owners_tree_is_refused() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
        let d = home();
        let h = d.path();
        let victim = h.join("victim");
        std::fs::create_dir(&victim).unwrap();
        let owner_home = h.join("owner");
        std::fs::create_dir(&owner_home).unwrap();
        if qsys::is_root() {
            std::os::unix::fs::chown(&owner_home, Some(65534), Some(65534)).unwrap();
        } else {
            // a tree others can change, the same to the rule as another user's
            std::fs::set_permissions(&owner_home, std::fs::Permissions::from_mode(0o777)).unwrap();
        }
        symlink(&victim, owner_home.join("mail")).unwrap();
        let dir = owner_home.join("mail/virt.example");
        let e = add_domain(h, "virt.example", test_owner(), Some(dir.clone())).unwrap_err();
        assert!(
            e.text.contains("refusing to touch")
                && e.text.contains("owner/mail")
                && e.text.contains("symbolic link"),
            "{}",
            e.text
        );
        assert!(!victim.join("virt.example").exists());
        assert_eq!(std::fs::read_dir(&victim).unwrap().count(), 0);
        assert!(crate::lookup(h, "x@virt.example").unwrap().is_none());
        // the real directory is fine, and so is a link root placed (in h, root's)
        std::fs::remove_file(owner_home.join("mail")).unwrap();
        std::fs::create_dir(owner_home.join("mail")).unwrap();
        symlink(&owner_home, h.join("owners")).unwrap();
        let dom = add_domain(
            h,
            "virt.example",
            test_owner(),
            Some(h.join("owners/mail/virt.example")),
        )
        .unwrap();
        assert!(dom.dir.join(".qmail-default").is_file());
        // and the owner swaps the link in afterwards: adding a user is refused too
        std::fs::rename(owner_home.join("mail"), h.join("mail.old")).unwrap();
        std::fs::create_dir(victim.join("virt.example")).unwrap();
        symlink(&victim, owner_home.join("mail")).unwrap();
        let e = add_user(h, "bob@virt.example", "h".into(), 0, None).unwrap_err();
        assert!(e.text.contains("symbolic link"), "{}", e.text);
        assert!(!victim.join("virt.example/bob").exists());
        let m = std::fs::metadata(victim.join("virt.example")).unwrap();
        assert_eq!(m.uid(), nix::unistd::geteuid().as_raw());
    }

    fn dom_owner(d: &VDomain) -> Option<&str> {
        Some(d.user.as_str())
    }
}
