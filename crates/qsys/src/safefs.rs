//! File operations for root on paths a less privileged user controls (issue 11 item 2).
//!
//! qmail-install (rerun as root for an upgrade) and qmail-vuser change owners and modes
//! inside trees other users can write: the queue (qmailq, qmails), `~alias`, a virtual
//! domain's directory. A path-based `chown`, `chmod` or `write` there follows whatever
//! symbolic link that user planted. Everything here works on descriptors instead:
//!
//! - a [`Dir`] is an open directory; names below it are single components, opened with
//!   `O_NOFOLLOW` relative to it (`openat`), so no link is followed anywhere on the way;
//! - an existing entry must be of the expected [`Kind`] (checked with `fstatat` before
//!   opening, so a device is never opened, and with `fstat` after, so a swap in between
//!   is caught); anything but a directory with more than one link is refused: a hard link
//!   to a file or named pipe elsewhere (its owner may link it; anyone may where
//!   `fs.protected_hardlinks=0`) would have that other name's owner and mode changed;
//! - a directory named by a path that crosses trees other users control (`--dir
//!   /home/OWNER/mail/DOMAIN`) is opened with [`Dir::open_from_root`], which walks from
//!   `/` and follows a symbolic link only where nobody but root (or the caller) could
//!   have put it;
//! - new files are created with `O_CREAT|O_EXCL|O_NOFOLLOW`;
//! - owner and mode change with `fchown` then `fchmod` on the open descriptor (`chown`
//!   clears set-id bits, so the mode comes last).
//!
//! A refusal is an `io::Error` whose text names the path and what was found there, for
//! the caller's `prog: fatal: ...` line.

use nix::fcntl::{AtFlags, OFlag, openat, readlinkat, renameat};
use nix::sys::stat::{FileStat, Mode, SFlag, fstat, fstatat, mkdirat};
use nix::unistd::{Gid, Uid, UnlinkatFlags, fchown, mkfifoat, unlinkat};
use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

/// The file type an entry must have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
    Fifo,
}

impl Kind {
    fn bits(self) -> SFlag {
        match self {
            Kind::Dir => SFlag::S_IFDIR,
            Kind::File => SFlag::S_IFREG,
            Kind::Fifo => SFlag::S_IFIFO,
        }
    }
}

/// Words for a file type in a message.
fn type_name(mode: u32) -> &'static str {
    match SFlag::from_bits_truncate(mode & SFlag::S_IFMT.bits()) {
        SFlag::S_IFDIR => "a directory",
        SFlag::S_IFREG => "a regular file",
        SFlag::S_IFIFO => "a named pipe",
        SFlag::S_IFLNK => "a symbolic link",
        SFlag::S_IFSOCK => "a socket",
        SFlag::S_IFCHR => "a character device",
        SFlag::S_IFBLK => "a block device",
        _ => "an unknown file type",
    }
}

/// Why an entry of mode `mode` with `nlink` links is not an acceptable `kind`, or `None`.
pub fn unexpected(kind: Kind, mode: u32, nlink: u64) -> Option<String> {
    let found = mode & SFlag::S_IFMT.bits();
    if found != kind.bits().bits() {
        return Some(format!(
            "{} where {} belongs",
            type_name(found),
            type_name(kind.bits().bits())
        ));
    }
    if kind != Kind::Dir && nlink > 1 {
        return Some(format!(
            "{} with {nlink} links (a hard link to one elsewhere?)",
            type_name(found)
        ));
    }
    None
}

fn refuse(path: &Path, why: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        format!("refusing to touch {}: {why}", path.display()),
    )
}

fn with_path(path: &Path, what: &str, e: nix::Error) -> io::Error {
    let e = io::Error::from(e);
    io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
}

/// `name` as one path component: not empty, no `/`, not `.` or `..`.
fn component(name: &str) -> io::Result<&str> {
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("not a file name: {name}"),
        ));
    }
    Ok(name)
}

const OPEN_FLAGS: OFlag = OFlag::O_RDONLY
    .union(OFlag::O_NOFOLLOW)
    .union(OFlag::O_CLOEXEC)
    .union(OFlag::O_NONBLOCK)
    .union(OFlag::O_NOCTTY);

/// An open directory and the path it was reached by (for messages).
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
    path: PathBuf,
}

impl AsFd for Dir {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Dir {
    /// Open a directory an administrator named (an installation root, a domain directory
    /// given on the command line). Links on the way are followed: they are the
    /// administrator's choice.
    pub fn open_trusted(path: &Path) -> io::Result<Dir> {
        let fd = nix::fcntl::open(
            path,
            OPEN_FLAGS.difference(OFlag::O_NOFOLLOW) | OFlag::O_DIRECTORY,
            Mode::empty(),
        )
        .map_err(|e| with_path(path, "unable to open", e))?;
        Ok(Dir {
            fd,
            path: path.to_path_buf(),
        })
    }

    /// Open the directory at the absolute `path` walking from `/` one component at a
    /// time, never through a link another user could have planted: a symbolic link is
    /// followed only when the directory holding it is owned by root (or the caller) and
    /// writable by its owner alone; any other link on the way is refused. `..` goes back
    /// to the directory the walk came from.
    pub fn open_from_root(path: &Path) -> io::Result<Dir> {
        if !path.is_absolute() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("not an absolute path: {}", path.display()),
            ));
        }
        let mut stack = vec![Dir::open_trusted(Path::new("/"))?];
        let mut todo: Vec<OsString> = Vec::new();
        push_components(&mut todo, path);
        let mut links = 0;
        while let Some(name) = todo.pop() {
            if name == ".." {
                if stack.len() > 1 {
                    stack.pop();
                }
                continue;
            }
            let name = name.to_string_lossy().into_owned();
            let cur = stack.last().ok_or_else(|| io::Error::other("empty walk"))?;
            let here = cur.join(&name);
            let st = match fstatat(&cur.fd, name.as_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
                Ok(st) => st,
                Err(nix::Error::ENOENT) => {
                    return Err(io::Error::new(
                        io::ErrorKind::NotFound,
                        format!("{} does not exist", here.display()),
                    ));
                }
                Err(e) => return Err(with_path(&here, "unable to stat", e)),
            };
            if st.st_mode & SFlag::S_IFMT.bits() != SFlag::S_IFLNK.bits() {
                let next = cur.subdir(&name)?;
                stack.push(next);
                continue;
            }
            links += 1;
            let holder = fstat(&cur.fd).map_err(|e| with_path(cur.path(), "unable to stat", e))?;
            if links > MAX_LINKS || !may_follow_in(holder.st_uid, holder.st_mode, euid()) {
                let why = if links > MAX_LINKS {
                    "too many levels of symbolic links".to_string()
                } else {
                    format!(
                        "a symbolic link in {}, which others than root can change (name the \
                         directory it points to)",
                        cur.path().display()
                    )
                };
                return Err(refuse(&here, &why));
            }
            let target = readlinkat(&cur.fd, name.as_str())
                .map_err(|e| with_path(&here, "unable to read link", e))?;
            if Path::new(&target).is_absolute() {
                stack.truncate(1);
            }
            push_components(&mut todo, Path::new(&target));
        }
        let mut d = stack.pop().ok_or_else(|| io::Error::other("empty walk"))?;
        d.path = path.to_path_buf();
        Ok(d)
    }

    /// The path this directory was reached by.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The path of `name` in this directory (for messages).
    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Open the existing entry `name`, which must be `kind`; `Ok(None)` when missing.
    pub fn open_entry(&self, name: &str, kind: Kind) -> io::Result<Option<OwnedFd>> {
        let name = component(name)?;
        let path = self.join(name);
        let before = match fstatat(&self.fd, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(nix::Error::ENOENT) => return Ok(None),
            Err(e) => return Err(with_path(&path, "unable to stat", e)),
        };
        check(&path, kind, &before)?;
        let flags = if kind == Kind::Dir {
            OPEN_FLAGS | OFlag::O_DIRECTORY
        } else {
            OPEN_FLAGS
        };
        let fd = match openat(&self.fd, name, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(nix::Error::ELOOP) => return Err(refuse(&path, "a symbolic link")),
            Err(nix::Error::ENOTDIR) => return Err(refuse(&path, "not a directory")),
            Err(e) => return Err(with_path(&path, "unable to open", e)),
        };
        let after = fstat(&fd).map_err(|e| with_path(&path, "unable to stat", e))?;
        check(&path, kind, &after)?;
        if (after.st_dev, after.st_ino) != (before.st_dev, before.st_ino) {
            return Err(refuse(&path, "it was replaced while being opened"));
        }
        Ok(Some(fd))
    }

    /// The existing subdirectory `name` (never through a link).
    pub fn subdir(&self, name: &str) -> io::Result<Dir> {
        match self.open_entry(name, Kind::Dir)? {
            Some(fd) => Ok(Dir {
                fd,
                path: self.join(name),
            }),
            None => Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{} does not exist", self.join(name).display()),
            )),
        }
    }

    /// Walk `rel` below this directory one component at a time, never through a link.
    pub fn walk(&self, rel: &Path) -> io::Result<Dir> {
        let mut d = Dir {
            fd: self.fd.try_clone()?,
            path: self.path.clone(),
        };
        for c in rel.components() {
            match c {
                Component::CurDir => {}
                Component::Normal(n) => d = d.subdir(&n.to_string_lossy())?,
                _ => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("not a relative path: {}", rel.display()),
                    ));
                }
            }
        }
        Ok(d)
    }

    /// The subdirectory `name`, created (mode `mode` before umask) when missing.
    pub fn make_dir(&self, name: &str, mode: u32) -> io::Result<Dir> {
        self.create_dir_new(name, mode)?;
        self.subdir(name)
    }

    /// Create the subdirectory `name` and return it; `Ok(None)` when an entry of that
    /// name (of any type) exists already.
    pub fn create_dir_new(&self, name: &str, mode: u32) -> io::Result<Option<Dir>> {
        let name = component(name)?;
        match mkdirat(&self.fd, name, Mode::from_bits_truncate(mode)) {
            Ok(()) => self.subdir(name).map(Some),
            Err(nix::Error::EEXIST) => Ok(None),
            Err(e) => Err(with_path(&self.join(name), "unable to create", e)),
        }
    }

    /// Create the regular file `name` (`O_EXCL`, never through a link); `Ok(None)` when
    /// an entry of that name (of any type) exists already.
    pub fn create_new(&self, name: &str, mode: u32) -> io::Result<Option<File>> {
        let name = component(name)?;
        let flags = OFlag::O_WRONLY
            | OFlag::O_CREAT
            | OFlag::O_EXCL
            | OFlag::O_NOFOLLOW
            | OFlag::O_CLOEXEC
            | OFlag::O_NOCTTY;
        match openat(&self.fd, name, flags, Mode::from_bits_truncate(mode)) {
            Ok(fd) => Ok(Some(File::from(fd))),
            Err(nix::Error::EEXIST) => Ok(None),
            Err(e) => Err(with_path(&self.join(name), "unable to create", e)),
        }
    }

    /// Create the FIFO `name` unless an entry of that name exists; true when created.
    pub fn make_fifo(&self, name: &str, mode: u32) -> io::Result<bool> {
        let name = component(name)?;
        match mkfifoat(&self.fd, name, Mode::from_bits_truncate(mode)) {
            Ok(()) => Ok(true),
            Err(nix::Error::EEXIST) => Ok(false),
            Err(e) => Err(with_path(&self.join(name), "unable to create", e)),
        }
    }

    /// Remove the non-directory entry `name` (a link itself, never its target); a
    /// missing entry is fine.
    pub fn remove_file(&self, name: &str) -> io::Result<()> {
        let name = component(name)?;
        match unlinkat(&self.fd, name, UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(nix::Error::ENOENT) => Ok(()),
            Err(e) => Err(with_path(&self.join(name), "unable to remove", e)),
        }
    }

    /// Rename `from` to `to` within this directory (replacing `to`'s entry, whatever it
    /// is, but never writing through it).
    pub fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        let (from, to) = (component(from)?, component(to)?);
        renameat(&self.fd, from, &self.fd, to)
            .map_err(|e| with_path(&self.join(to), "unable to install", e))
    }

    /// fsync the directory (entries created, renamed or removed in it become durable).
    pub fn sync(&self) -> io::Result<()> {
        nix::unistd::fsync(&self.fd).map_err(|e| with_path(&self.path, "unable to sync", e))
    }

    /// [`set_owner_mode`] on this directory itself.
    pub fn set_owner_mode(&self, uid: Option<Uid>, gid: Option<Gid>, mode: u32) -> io::Result<()> {
        set_owner_mode(&self.fd, &self.path, uid, gid, mode)
    }
}

/// Links followed at most by [`Dir::open_from_root`] (the kernel's limit).
const MAX_LINKS: usize = 40;

fn euid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

/// Put the components of `p` on the stack `todo` (the last one first, so the first is
/// popped first); `/` and `.` are dropped, `..` kept.
fn push_components(todo: &mut Vec<OsString>, p: &Path) {
    let mut names: Vec<OsString> = p
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
        .collect();
    names.reverse();
    todo.extend(names);
}

/// Whether a symbolic link in a directory of owner `uid` and mode `mode` may be followed
/// by a process of effective uid `me`: only root or `me` can have put it there.
pub fn may_follow_in(uid: u32, mode: u32, me: u32) -> bool {
    (uid == 0 || uid == me) && mode & 0o022 == 0
}

fn check(path: &Path, kind: Kind, st: &FileStat) -> io::Result<()> {
    match unexpected(kind, st.st_mode, st.st_nlink) {
        Some(why) => Err(refuse(path, &why)),
        None => Ok(()),
    }
}

/// `fchown` (when an id is given) then `fchmod` on an open descriptor; `path` is for the
/// message only.
pub fn set_owner_mode(
    fd: impl AsFd,
    path: &Path,
    uid: Option<Uid>,
    gid: Option<Gid>,
    mode: u32,
) -> io::Result<()> {
    if uid.is_some() || gid.is_some() {
        fchown(&fd, uid, gid).map_err(|e| with_path(path, "unable to chown", e))?;
    }
    nix::sys::stat::fchmod(&fd, Mode::from_bits_truncate(mode))
        .map_err(|e| with_path(path, "unable to chmod", e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};

    #[test]
    fn the_rule() {
        assert!(unexpected(Kind::Dir, 0o40755, 2).is_none());
        assert!(unexpected(Kind::File, 0o100644, 1).is_none());
        assert!(unexpected(Kind::Fifo, 0o10622, 1).is_none());
        let link = unexpected(Kind::Dir, 0o120777, 1).unwrap();
        assert_eq!(link, "a symbolic link where a directory belongs");
        assert!(
            unexpected(Kind::File, 0o100644, 2)
                .unwrap()
                .contains("2 links")
        );
        let fifo = unexpected(Kind::Fifo, 0o10600, 2).unwrap();
        assert_eq!(
            fifo,
            "a named pipe with 2 links (a hard link to one elsewhere?)"
        );
        assert!(
            unexpected(Kind::Dir, 0o40755, 7).is_none(),
            "subdirectories"
        );
        assert!(
            unexpected(Kind::File, 0o20644, 1)
                .unwrap()
                .contains("character device")
        );
    }

    #[test]
    fn links_are_never_followed() {
        let t = tempfile::tempdir().unwrap();
        let victim = t.path().join("victim");
        std::fs::create_dir(&victim).unwrap();
        std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(victim.join("file"), "keep").unwrap();
        let top = t.path().join("top");
        std::fs::create_dir(&top).unwrap();
        std::os::unix::fs::symlink(&victim, top.join("dirlink")).unwrap();
        std::os::unix::fs::symlink(victim.join("file"), top.join("filelink")).unwrap();
        std::os::unix::fs::symlink(victim.join("new"), top.join("dangling")).unwrap();
        std::fs::hard_link(victim.join("file"), top.join("hard")).unwrap();
        let d = Dir::open_trusted(&top).unwrap();

        let e = d.subdir("dirlink").unwrap_err().to_string();
        assert!(
            e.contains("refusing to touch") && e.contains("dirlink"),
            "{e}"
        );
        assert!(d.walk(Path::new("dirlink/x")).is_err());
        assert!(d.make_dir("dirlink", 0o700).is_err());
        assert!(d.open_entry("filelink", Kind::File).is_err());
        assert!(
            d.open_entry("hard", Kind::File)
                .unwrap_err()
                .to_string()
                .contains("2 links")
        );
        assert!(d.create_new("dangling", 0o644).unwrap().is_none());
        assert!(d.create_dir_new("dangling", 0o700).unwrap().is_none());
        assert!(!d.make_fifo("dangling", 0o600).unwrap());
        assert!(
            !victim.join("new").exists(),
            "a dangling link's target was created"
        );
        assert!(d.subdir("..").is_err());

        let sub = d.make_dir("sub", 0o700).unwrap();
        sub.set_owner_mode(None, None, 0o750).unwrap();
        assert_eq!(
            std::fs::metadata(top.join("sub")).unwrap().mode() & 0o7777,
            0o750
        );
        assert!(sub.create_new("f", 0o600).unwrap().is_some());
        assert!(sub.open_entry("f", Kind::File).unwrap().is_some());
        assert!(sub.open_entry("missing", Kind::File).unwrap().is_none());
        assert!(sub.open_entry("f", Kind::Dir).is_err());
        sub.rename("f", "g").unwrap();
        sub.remove_file("g").unwrap();
        assert_eq!(std::fs::read(victim.join("file")).unwrap(), b"keep");
        assert_eq!(std::fs::metadata(&victim).unwrap().mode() & 0o7777, 0o755);
    }

    #[test]
    fn the_link_rule() {
        assert!(may_follow_in(0, 0o40755, 0), "root's directory");
        assert!(may_follow_in(1000, 0o40700, 1000), "the caller's own");
        assert!(
            !may_follow_in(1000, 0o40755, 0),
            "a user's directory, for root"
        );
        assert!(!may_follow_in(0, 0o40775, 0), "group writable");
        assert!(
            !may_follow_in(0, 0o41777, 0),
            "/tmp: anyone may plant a link"
        );
    }

    #[test]
    fn walking_from_the_root_follows_only_links_root_put_there() {
        let t = tempfile::tempdir().unwrap();
        let top = t.path();
        let real = top.join("real");
        std::fs::create_dir_all(real.join("sub")).unwrap();
        std::fs::write(real.join("sub/mark"), "real").unwrap();
        symlink(&real, top.join("abs")).unwrap();
        symlink("real/../real", top.join("rel")).unwrap();
        symlink("loop", top.join("loop")).unwrap();
        // a directory another user controls (as root: nobody's; else world-writable)
        let other = top.join("other");
        std::fs::create_dir(&other).unwrap();
        if nix::unistd::geteuid().is_root() {
            std::os::unix::fs::chown(&other, Some(65534), Some(65534)).unwrap();
        } else {
            std::fs::set_permissions(&other, std::fs::Permissions::from_mode(0o777)).unwrap();
        }
        symlink(&real, other.join("mail")).unwrap();

        let mark = |d: &Dir| d.open_entry("mark", Kind::File).unwrap().is_some();
        for ok in ["abs/sub", "rel/sub", "other/../real/sub", "./abs/./sub"] {
            let d = Dir::open_from_root(&top.join(ok)).unwrap();
            assert!(mark(&d), "{ok}");
            assert_eq!(d.path(), top.join(ok));
        }
        for bad in ["other/mail", "other/mail/sub", "other/mail/../real"] {
            let e = Dir::open_from_root(&top.join(bad)).unwrap_err().to_string();
            assert!(
                e.contains("refusing to touch")
                    && e.contains("other/mail")
                    && e.contains("others than root can change"),
                "{bad}: {e}"
            );
        }
        let e = Dir::open_from_root(&top.join("loop")).unwrap_err();
        assert!(e.to_string().contains("too many levels"), "{e}");
        let e = Dir::open_from_root(&top.join("missing/x")).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert!(Dir::open_from_root(&real.join("sub/mark")).is_err());
        assert!(Dir::open_from_root(Path::new("relative")).is_err());
        assert!(Dir::open_from_root(Path::new("/")).is_ok());
    }
}
