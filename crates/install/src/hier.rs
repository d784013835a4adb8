//! The installed hierarchy: programs, directories, owners, modes (qmail's `hier.c`).

use nix::unistd::{Gid, Uid};
use qsys::safefs::{self, Dir, Kind};
use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// What to install where.
#[derive(Clone, Debug)]
pub struct Options {
    /// The installation root (`/var/qmail` by default).
    pub root: PathBuf,
    /// The directory the programs are copied from.
    pub source: PathBuf,
    /// This host's name for the first `control/me`.
    pub me: String,
}

/// Owner names used below; `root` means uid 0.
#[derive(Clone, Copy)]
enum Owner {
    Root,
    User(&'static str),
}

/// One program: its name, its mode, its owner, and its group when that is not `qmail`.
struct Program {
    name: &'static str,
    mode: u32,
    owner: Owner,
    group: Option<&'static str>,
}

const fn prog(name: &'static str, mode: u32) -> Program {
    Program {
        name,
        mode,
        owner: Owner::Root,
        group: None,
    }
}

/// Every program the suite installs (modes from qmail's hier.c). Programs not present in
/// the source directory are skipped, so the table can list programs of later releases.
const PROGRAMS: &[Program] = &[
    Program {
        name: "qmail-queue",
        mode: 0o4711,
        owner: Owner::User("qmailq"),
        group: None,
    },
    prog("qmail-lspawn", 0o700),
    prog("qmail-start", 0o700),
    prog("qmail-newu", 0o700),
    prog("qmail-newmrh", 0o700),
    prog("qmail-install", 0o700),
    prog("qmail-local", 0o711),
    prog("qmail-remote", 0o711),
    prog("qmail-rspawn", 0o711),
    prog("qmail-clean", 0o711),
    prog("qmail-send", 0o711),
    prog("qmail-popup", 0o711),
    // setgid shadow (as Debian's unix_chkpwd): qmail-smtpd, as qmaild, verifies AUTH
    // through it; the POP3 path runs it as root. Without a shadow group: 0711, group qmail.
    Program {
        name: "checkpassword",
        mode: 0o2711,
        owner: Owner::Root,
        group: Some("shadow"),
    },
    prog("qmail-vuser", 0o700),
    prog("qmail-vdeliver", 0o755),
    prog("qmail-recipients", 0o700),
    prog("qmail-inject", 0o755),
    prog("sendmail", 0o755),
    prog("qmail-showctl", 0o755),
    prog("qmail-qread", 0o755),
    prog("qmail-qstat", 0o755),
    prog("qmail-tcpto", 0o755),
    prog("qmail-tcpok", 0o755),
    prog("qmail-pop3d", 0o755),
    prog("qmail-smtpd", 0o755),
    prog("maildirmake", 0o755),
    prog("tcpserver", 0o755),
    prog("tcprules", 0o755),
    prog("tcprulescheck", 0o755),
    prog("tcpclient", 0o755),
    prog("rblsmtpd", 0o755),
    prog("svscan", 0o755),
    prog("svscanboot", 0o755),
    prog("supervise", 0o755),
    prog("svc", 0o755),
    prog("svstat", 0o755),
    prog("svok", 0o755),
    prog("multilog", 0o755),
    prog("tai64n", 0o755),
    prog("tai64nlocal", 0o755),
    prog("setuidgid", 0o755),
    prog("envuidgid", 0o755),
    prog("envdir", 0o755),
    prog("softlimit", 0o755),
    prog("qmailctl", 0o755),
    // the content filter chain (DESIGN section 10): set-id qmailf:nofiles, so that
    // filters run as qmailf whoever injects (without a nofiles group: 4711)
    Program {
        name: "qmail-qfilter",
        mode: 0o6711,
        owner: Owner::User("qmailf"),
        group: Some("nofiles"),
    },
    prog("qmail-scan", 0o755),
    prog("qmail-quarantine", 0o700),
    // fastforward: /etc/aliases for sendmail and Postfix refugees
    prog("newaliases", 0o755),
    prog("fastforward", 0o755),
    // spam scoring (issue 16): the chain's filter and the learner
    prog("qmail-spamc", 0o755),
    prog("qmail-spamlearn", 0o755),
    prog("qmail-guard", 0o755),
    // the queue writer for qmail-smtpd (doc/queue-writer.md), run as qmailq by its service
    prog("qmail-queued", 0o711),
    // the filter chain for qmail-smtpd (doc/filter-chain.md), run as qmailf by its service
    prog("qmail-qfilterd", 0o711),
    prog("qmail-authcheck", 0o755),
    // DKIM keys (issue 15): makes keys for qmailr and checks the DNS records
    prog("qmail-dkim", 0o700),
    prog("qmail-dkimsign", 0o711),
    // mail statistics from the logs (text, JSON, an HTML page)
    prog("qmail-stats", 0o755),
    // the auditor: reads secrets and the integrity key, so root's alone
    prog("qmail-audit", 0o700),
];

/// A directory (relative to the root) with owner, group and mode.
struct DirSpec {
    path: String,
    owner: Owner,
    group: &'static str,
    mode: u32,
}

fn dirs() -> Vec<DirSpec> {
    let d = |path: &str, owner, mode| DirSpec {
        path: path.to_string(),
        owner,
        group: "qmail",
        mode,
    };
    let mut v = vec![
        d("", Owner::Root, 0o755),
        d("bin", Owner::Root, 0o755),
        d("control", Owner::Root, 0o755),
        d("users", Owner::Root, 0o755),
        d("doc", Owner::Root, 0o755),
        d("man", Owner::Root, 0o755),
        d("man/man8", Owner::Root, 0o755),
        d("boot", Owner::Root, 0o755),
        d("supervise", Owner::Root, 0o755),
        d("alias", Owner::User("alias"), 0o2755),
        // qmail-scan's quarantine, a Maildir only qmailf (and root) can read
        DirSpec {
            group: "nofiles",
            ..d("quarantine", Owner::User("qmailf"), 0o700)
        },
        DirSpec {
            group: "nofiles",
            ..d("quarantine/tmp", Owner::User("qmailf"), 0o700)
        },
        DirSpec {
            group: "nofiles",
            ..d("quarantine/new", Owner::User("qmailf"), 0o700)
        },
        DirSpec {
            group: "nofiles",
            ..d("quarantine/cur", Owner::User("qmailf"), 0o700)
        },
        // failure counters of qmail-smtpd and qmail-popup (AUTH lockout), as qmaild
        d("smtpd", Owner::User("qmaild"), 0o700),
        d("queue", Owner::User("qmailq"), 0o750),
        d("queue/pid", Owner::User("qmailq"), 0o700),
        d("queue/intd", Owner::User("qmailq"), 0o700),
        d("queue/todo", Owner::User("qmailq"), 0o750),
        d("queue/bounce", Owner::User("qmails"), 0o700),
        d("queue/lock", Owner::User("qmailq"), 0o750),
        d("queue/mess", Owner::User("qmailq"), 0o750),
        d("queue/info", Owner::User("qmails"), 0o700),
        d("queue/local", Owner::User("qmails"), 0o700),
        d("queue/remote", Owner::User("qmails"), 0o700),
        // qmail-queued's socket: only qmailq and group nofiles (qmaild) reach it; setgid,
        // so that the socket qmailq makes there is group nofiles
        DirSpec {
            group: "nofiles",
            ..d("queued", Owner::User("qmailq"), 0o2750)
        },
        // qmail-qfilterd's socket: root's, so that no filter (qmailf) can put a socket
        // of its own in its place; group nofiles (qmaild) reaches it; setgid, so that
        // the socket qmail-qfilterd makes as root before it becomes qmailf is group
        // nofiles
        DirSpec {
            group: "nofiles",
            ..d("qfilterd", Owner::Root, 0o2750)
        },
    ];
    // checkpassword's per-account locks: only its setgid group may create or open them
    if qsys::ids::gid("shadow").is_some() {
        v.push(DirSpec {
            path: "checkpassword".into(),
            owner: Owner::Root,
            group: "shadow",
            mode: 0o770,
        });
    }
    for split in 0..23 {
        v.push(d(
            &format!("queue/mess/{split}"),
            Owner::User("qmailq"),
            0o750,
        ));
        v.push(d(
            &format!("queue/info/{split}"),
            Owner::User("qmails"),
            0o700,
        ));
        v.push(d(
            &format!("queue/local/{split}"),
            Owner::User("qmails"),
            0o700,
        ));
        v.push(d(
            &format!("queue/remote/{split}"),
            Owner::User("qmails"),
            0o700,
        ));
    }
    v
}

/// The run scripts installed under `supervise/` (the source tree's `supervise/`), one
/// service directory each, with a `log/` service beside it.
const SUPERVISE: &[(&str, &str)] = &[
    (
        "qmail-send/run",
        include_str!("../../../supervise/qmail-send/run"),
    ),
    (
        "qmail-send/log/run",
        include_str!("../../../supervise/qmail-send/log/run"),
    ),
    (
        "qmail-smtpd/run",
        include_str!("../../../supervise/qmail-smtpd/run"),
    ),
    (
        "qmail-smtpd/log/run",
        include_str!("../../../supervise/qmail-smtpd/log/run"),
    ),
    (
        "qmail-submission/run",
        include_str!("../../../supervise/qmail-submission/run"),
    ),
    (
        "qmail-submission/log/run",
        include_str!("../../../supervise/qmail-submission/log/run"),
    ),
    (
        "qmail-smtps/run",
        include_str!("../../../supervise/qmail-smtps/run"),
    ),
    (
        "qmail-smtps/log/run",
        include_str!("../../../supervise/qmail-smtps/log/run"),
    ),
    (
        "qmail-pop3d/run",
        include_str!("../../../supervise/qmail-pop3d/run"),
    ),
    (
        "qmail-pop3d/log/run",
        include_str!("../../../supervise/qmail-pop3d/log/run"),
    ),
    (
        "qmail-pop3ds/run",
        include_str!("../../../supervise/qmail-pop3ds/run"),
    ),
    (
        "qmail-pop3ds/log/run",
        include_str!("../../../supervise/qmail-pop3ds/log/run"),
    ),
    (
        "qmail-spamd/run",
        include_str!("../../../supervise/qmail-spamd/run"),
    ),
    (
        "qmail-spamd/log/run",
        include_str!("../../../supervise/qmail-spamd/log/run"),
    ),
    (
        "qmail-guard/run",
        include_str!("../../../supervise/qmail-guard/run"),
    ),
    (
        "qmail-guard/log/run",
        include_str!("../../../supervise/qmail-guard/log/run"),
    ),
    (
        "qmail-queued/run",
        include_str!("../../../supervise/qmail-queued/run"),
    ),
    (
        "qmail-queued/log/run",
        include_str!("../../../supervise/qmail-queued/log/run"),
    ),
    (
        "qmail-qfilterd/run",
        include_str!("../../../supervise/qmail-qfilterd/run"),
    ),
    (
        "qmail-qfilterd/log/run",
        include_str!("../../../supervise/qmail-qfilterd/log/run"),
    ),
];

/// qmail-scan's default rules (the source tree's control/scanrules), written once.
const SCANRULES: &str = include_str!("../../../control/scanrules");

/// SpamAssassin's site configuration for the qmail-spamd service, written once.
const SPAMASSASSIN_CF: &str = include_str!("../../../control/spamassassin.cf");

/// Boot files installed under `boot/` with `@HOME@` replaced by the root: a systemd
/// unit and a plain init script, each starting `svscanboot /service`, the
/// certificate deploy hook for certbot and acme.sh, and the sendmail replacement.
const BOOT: &[(&str, &str, u32)] = &[
    (
        "svscan.service",
        include_str!("../../../init/svscan.service"),
        0o644,
    ),
    (
        "svscan.init",
        include_str!("../../../init/svscan.init"),
        0o755,
    ),
    (
        "cert-deploy",
        include_str!("../../../init/cert-deploy"),
        0o755,
    ),
    (
        "replace-sendmail",
        include_str!("../../../init/replace-sendmail"),
        0o755,
    ),
];

/// The services of [`SUPERVISE`], in the order `link_services` links them.
pub const SERVICES: &[&str] = &[
    "qmail-send",
    "qmail-smtpd",
    "qmail-submission",
    "qmail-smtps",
    "qmail-pop3d",
    "qmail-pop3ds",
    IMAP_SERVICE,
    "qmail-guard",
    "qmail-queued",
    "qmail-qfilterd",
];

/// The services that speak TLS from the first byte: without `control/servercert.pem`
/// they would accept connections and fail every one.
pub const NEED_CERTIFICATE: &[&str] = &["qmail-smtps", "qmail-pop3ds", IMAP_SERVICE];

/// What [`link_services`] did.
#[derive(Debug, Default, PartialEq)]
pub struct Linked {
    /// The names newly linked.
    pub done: Vec<String>,
    /// Services of the full set left out because no certificate is installed.
    pub need_certificate: Vec<String>,
}
/// Services installed but linked only when named (`--service NAME`): off until the
/// administrator turns them on.
pub const OPTIONAL_SERVICES: &[&str] = &["qmail-spamd"];

/// Link services into a service directory svscan watches (`/service`):
/// `DIR/NAME -> ROOT/supervise/NAME` for every NAME in `names` (all of [`SERVICES`]
/// when empty). An existing entry is left alone (an administrator's choice wins).
/// Each link is made under a temporary name and renamed, so svscan never sees a
/// half-made entry. A service qmail-install did not write (qmail-imapd without
/// Dovecot) is left out of the full set and refused when named; so is a service of
/// [`NEED_CERTIFICATE`] while `control/servercert.pem` does not exist.
pub fn link_services(root: &Path, dir: &Path, names: &[&str]) -> io::Result<Linked> {
    let all = names.is_empty();
    let names: Vec<&str> = if all {
        SERVICES.to_vec()
    } else {
        names.to_vec()
    };
    let have_cert = root.join("control").join("servercert.pem").exists();
    ctx(std::fs::create_dir_all(dir), || {
        format!("unable to create {}", dir.display())
    })?;
    let mut linked = Linked::default();
    for n in names {
        if !SERVICES.contains(&n) && !OPTIONAL_SERVICES.contains(&n) {
            return Err(io::Error::other(format!("unknown service {n}")));
        }
        // qmail-imapd exists only where Dovecot was installed
        if !root.join("supervise").join(n).join("run").is_file() {
            if all {
                continue;
            }
            return Err(io::Error::other(format!(
                "service {n} is not installed{}",
                if n == IMAP_SERVICE {
                    " (Dovecot was missing when qmail-install ran)"
                } else {
                    ""
                }
            )));
        }
        if NEED_CERTIFICATE.contains(&n) && !have_cert {
            if all {
                linked.need_certificate.push(n.to_string());
                continue;
            }
            return Err(io::Error::other(format!(
                "not linking {n}: it needs a certificate in {}/control/servercert.pem \
                 (INSTALL.md, \"TLS, SMTP AUTH and POP3\")",
                root.display()
            )));
        }
        let link = dir.join(n);
        if std::fs::symlink_metadata(&link).is_ok() {
            continue;
        }
        let target = root.join("supervise").join(n);
        let tmp = dir.join(format!(".{n}.new"));
        let _ = std::fs::remove_file(&tmp);
        ctx(std::os::unix::fs::symlink(&target, &tmp), || {
            format!("unable to link {}", tmp.display())
        })?;
        ctx(std::fs::rename(&tmp, &link), || {
            format!("unable to link {}", link.display())
        })?;
        linked.done.push(n.to_string());
    }
    Ok(linked)
}

/// Resolves owner names to ids once. Without root every id is the caller's and no
/// ownership is changed.
struct Ids {
    root: bool,
}

impl Ids {
    fn uid(&self, o: Owner) -> io::Result<Option<Uid>> {
        if !self.root {
            return Ok(None);
        }
        match o {
            Owner::Root => Ok(Some(Uid::from_raw(0))),
            Owner::User(n) => qsys::ids::uid(n)
                .map(Some)
                .ok_or_else(|| io::Error::other(format!("no user {n}"))),
        }
    }
    fn gid(&self, g: &str) -> io::Result<Option<Gid>> {
        if !self.root {
            return Ok(None);
        }
        qsys::ids::gid(g)
            .map(Some)
            .ok_or_else(|| io::Error::other(format!("no group {g}")))
    }
}

fn ctx<T>(r: io::Result<T>, what: impl FnOnce() -> String) -> io::Result<T> {
    r.map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", what())))
}

/// Install (or upgrade) according to `opts`; returns the list of programs installed.
///
/// Every owner and mode change below goes through [`qsys::safefs`]: the queue, `~alias`
/// and the lock files live in directories qmail users can write, and an upgrade runs as
/// root. A directory or lock file replaced by a symbolic link or another file type is
/// refused with a message naming it (nothing is changed through it); `~alias`'s
/// `.qmail-*` files and `Maildir` are created only when no entry of that name exists
/// (whatever alias put there is left alone).
pub fn install(opts: &Options) -> io::Result<Vec<String>> {
    let ids = Ids {
        root: qsys::is_root(),
    };
    if ids.root {
        refuse_untrusted_ancestor(&opts.root)?;
        ensure_accounts(&opts.root)?;
    }
    let root = Dir::open_trusted(&opts.root)?;
    for d in dirs() {
        let dir = match d.path.rsplit_once('/') {
            None if d.path.is_empty() => root.walk(Path::new(""))?,
            None => root.make_dir(&d.path, d.mode)?,
            Some((parent, name)) => root.walk(Path::new(parent))?.make_dir(name, d.mode)?,
        };
        dir.set_owner_mode(ids.uid(d.owner)?, ids.gid(d.group)?, d.mode)?;
    }
    lock_files(&root, &ids)?;
    let installed = programs(opts, &root, &ids)?;
    supervise_scripts(&opts.root)?;
    first_controls(opts)?;
    alias_files(&root, &ids)?;
    tls_files(&root, &ids)?;
    if let ImapSetup::Written = imap_setup(&opts.root) {
        dovecot_files(&opts.root)?;
    }
    guard_files(&root, &ids)?;
    Ok(installed)
}

/// The TLS certificate and key already in `control/` (an administrator's, or one a
/// renewal copied there) given to qmaild, the user that speaks TLS, mode 0400: run as
/// root, every (re)install repairs a key someone made unreadable to qmaild or readable
/// to everyone. Never through a link.
fn tls_files(root: &Dir, ids: &Ids) -> io::Result<()> {
    let control = root.subdir("control")?;
    let uid = ids.uid(Owner::User("qmaild"))?;
    for name in [TLS_CERT, TLS_KEY] {
        if let Some(fd) = control.open_entry(name, Kind::File)? {
            qsys::safefs::set_owner_mode(&fd, &control.join(name), uid, None, 0o400)?;
        }
    }
    Ok(())
}

/// The certificate chain (with the key, or the key apart in [`TLS_KEY`]), as the tls
/// crate reads them.
const TLS_CERT: &str = "servercert.pem";
const TLS_KEY: &str = "serverkey.pem";

/// As root, refuse a root below a directory another user could rename it out of (a
/// checkout in /home/USER): the set-id qmail-queue and checkpassword would refuse to run
/// from there (`qsys::setid_home_check`), so the installation could never queue mail.
/// `root` need not exist yet (the directories still to be made will be root's): the
/// check starts at the deepest one that does, so nothing is created in such a tree.
pub fn refuse_untrusted_ancestor(root: &Path) -> io::Result<()> {
    let root = std::path::absolute(root)?;
    let existing = root
        .ancestors()
        .find(|a| a.exists())
        .unwrap_or(Path::new("/"));
    let mut probe = std::fs::canonicalize(existing)?;
    if existing != root {
        // a name below the existing directory: its ancestors start with that directory
        let rest = root.strip_prefix(existing).unwrap_or(&root);
        if let Some(first) = rest.components().next() {
            probe.push(first);
        }
    }
    match qsys::untrusted_ancestor(&probe)? {
        None => Ok(()),
        Some(dir) => Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "refusing to install as root into {}: {} is not root's alone, so the \
                 set-id qmail-queue would refuse to run there; install into a root-owned \
                 tree such as /var/qmail (or run qmail-install as that directory's owner)",
                root.display(),
                dir.display()
            ),
        )),
    }
}

/// The existing regular file `name` in `dir`, or a new one holding `initial`.
fn file_in(dir: &Dir, name: &str, initial: &[u8]) -> io::Result<File> {
    if let Some(mut f) = dir.create_new(name, 0o600)? {
        ctx(f.write_all(initial), || {
            format!("unable to write {}", dir.join(name).display())
        })?;
        return Ok(f);
    }
    match dir.open_entry(name, Kind::File)? {
        Some(fd) => Ok(File::from(fd)),
        None => Err(io::Error::other(format!(
            "{} vanished while being installed",
            dir.join(name).display()
        ))),
    }
}

fn lock_files(root: &Dir, ids: &Ids) -> io::Result<()> {
    let lock = root.walk(Path::new("queue/lock"))?;
    let tcpto = file_in(&lock, "tcpto", &[0u8; 1024])?;
    safefs::set_owner_mode(
        &tcpto,
        &lock.join("tcpto"),
        ids.uid(Owner::User("qmailr"))?,
        ids.gid("qmail")?,
        0o644,
    )?;
    let mutex = file_in(&lock, "sendmutex", b"")?;
    safefs::set_owner_mode(
        &mutex,
        &lock.join("sendmutex"),
        ids.uid(Owner::User("qmails"))?,
        ids.gid("qmail")?,
        0o600,
    )?;
    lock.make_fifo("trigger", 0o600)?;
    let trigger = lock
        .open_entry("trigger", Kind::Fifo)?
        .ok_or_else(|| io::Error::other(format!("{} vanished", lock.join("trigger").display())))?;
    safefs::set_owner_mode(
        &trigger,
        &lock.join("trigger"),
        ids.uid(Owner::User("qmails"))?,
        ids.gid("qmail")?,
        0o622,
    )
}

fn programs(opts: &Options, root: &Dir, ids: &Ids) -> io::Result<Vec<String>> {
    let bin = root.walk(Path::new("bin"))?;
    let same_dir =
        std::fs::canonicalize(&opts.source).ok() == std::fs::canonicalize(bin.path()).ok();
    let mut done = Vec::new();
    for p in PROGRAMS {
        let src = opts.source.join(p.name);
        let (gid, mode) = program_group(p, ids)?;
        if !same_dir {
            if !src.is_file() {
                continue;
            }
            let tmp = format!(".{}.new", p.name);
            bin.remove_file(&tmp)?;
            let mut out = bin.create_new(&tmp, 0o600)?.ok_or_else(|| {
                io::Error::other(format!("{} appeared meanwhile", bin.join(&tmp).display()))
            })?;
            let mut input = ctx(File::open(&src), || {
                format!("unable to read {}", src.display())
            })?;
            ctx(io::copy(&mut input, &mut out), || {
                format!("unable to copy {}", src.display())
            })?;
            // chown before chmod: chown clears the setuid bit.
            safefs::set_owner_mode(&out, &bin.join(&tmp), ids.uid(p.owner)?, gid, mode)?;
            ctx(out.sync_all(), || {
                format!("unable to sync {}", bin.join(&tmp).display())
            })?;
            bin.rename(&tmp, p.name)?;
        } else if let Some(fd) = bin.open_entry(p.name, Kind::File)? {
            safefs::set_owner_mode(&fd, &bin.join(p.name), ids.uid(p.owner)?, gid, mode)?;
        } else {
            continue;
        }
        done.push(p.name.to_string());
    }
    bin.sync()?;
    Ok(done)
}

/// A program's group and mode: its own group when the system has it, else `qmail` without
/// the setgid bit.
fn program_group(p: &Program, ids: &Ids) -> io::Result<(Option<Gid>, u32)> {
    match p.group {
        Some(g) if qsys::ids::gid(g).is_some() => Ok((ids.gid(g)?, p.mode)),
        Some(_) => Ok((ids.gid("qmail")?, p.mode & !0o2000)),
        None => Ok((ids.gid("qmail")?, p.mode)),
    }
}

/// Run scripts and boot files, each written under a temporary name and renamed, so a
/// supervise starting `./run` during an upgrade never reads half a script. Path-based
/// writes are safe here: `supervise/NAME`, `supervise/NAME/log` and `boot` are root's
/// alone (qmaill owns only `log/main`, which the installer never touches).
fn supervise_scripts(root: &Path) -> io::Result<()> {
    let put = |p: &Path, text: &str, mode: u32| -> io::Result<()> {
        if let Some(dir) = p.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut tmp = p.as_os_str().to_owned();
        tmp.push(".new");
        let tmp = PathBuf::from(tmp);
        std::fs::write(&tmp, text)?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))?;
        ctx(std::fs::rename(&tmp, p), || {
            format!("unable to install {}", p.display())
        })
    };
    for (rel, text) in SUPERVISE {
        put(&root.join("supervise").join(rel), text, 0o755)?;
    }
    let home = root.to_string_lossy();
    for (name, text, mode) in BOOT {
        put(
            &root.join("boot").join(name),
            &text.replace("@HOME@", &home),
            *mode,
        )?;
    }
    // the manuals: `man -M HOME/man NAME` (man-db also finds HOME/man by itself when
    // HOME/bin is in PATH), and plain text in doc/ (both root's, like boot/)
    for (name, source) in crate::manuals::MANUALS {
        let text = qsys::manual::text(source);
        put(
            &root.join("man/man8").join(format!("{name}.8")),
            &qsys::manual::roff(name, &text),
            0o644,
        )?;
        put(&root.join("doc").join(format!("{name}.txt")), &text, 0o644)?;
    }
    Ok(())
}

/// `me` minus its first label, or `me` itself when it has no dot (qmail's config-fast).
fn default_domain(me: &str) -> &str {
    me.split_once('.').map(|(_, rest)| rest).unwrap_or(me)
}

/// The last two labels of `me` (config-fast's plusdomain).
fn plus_domain(me: &str) -> String {
    let labels: Vec<&str> = me.split('.').collect();
    let n = labels.len();
    if n >= 2 {
        labels[n - 2..].join(".")
    } else {
        me.to_string()
    }
}

fn first_controls(opts: &Options) -> io::Result<()> {
    let control = opts.root.join("control");
    let me = opts.me.as_str();
    let files = [
        ("me", format!("{me}\n")),
        ("locals", format!("{me}\n")),
        ("rcpthosts", format!("{me}\n")),
        ("defaultdomain", format!("{}\n", default_domain(me))),
        ("plusdomain", format!("{}\n", plus_domain(me))),
    ];
    let filter_files = [
        // no filter: qmail-smtpd and sendmail run qmail-queue directly
        ("filters", String::new()),
        ("scanrules", SCANRULES.to_string()),
        ("spamassassin.cf", SPAMASSASSIN_CF.to_string()),
    ];
    for (name, text) in files.into_iter().chain(filter_files) {
        let p = control.join(name);
        if !p.exists() {
            qsys::fsync::write_atomic(&p, text.as_bytes(), 0o644)?;
        }
    }
    Ok(())
}

/// `~alias/.qmail-{postmaster,mailer-daemon,root}` and `~alias/Maildir/`, each only
/// when no entry of its name exists: alias owns that directory, and whatever it put
/// there (a link included) is its own and is neither followed nor changed.
fn alias_files(root: &Dir, ids: &Ids) -> io::Result<()> {
    let alias = root.walk(Path::new("alias"))?;
    let (uid, gid) = (ids.uid(Owner::User("alias"))?, ids.gid("nofiles")?);
    for name in [".qmail-postmaster", ".qmail-mailer-daemon", ".qmail-root"] {
        if let Some(f) = alias.create_new(name, 0o600)? {
            safefs::set_owner_mode(&f, &alias.join(name), uid, gid, 0o644)?;
        }
    }
    // the learning addresses (issue 16): reports go to qmail-spamlearn
    for class in ["spam", "ham"] {
        let name = format!(".qmail-learn-{class}");
        if let Some(mut f) = alias.create_new(&name, 0o600)? {
            let line = format!(
                "|{}/bin/qmail-spamlearn deliver {class}\n",
                std::path::absolute(root.path())?.display()
            );
            ctx(f.write_all(line.as_bytes()), || {
                format!("unable to write {}", alias.join(&name).display())
            })?;
            safefs::set_owner_mode(&f, &alias.join(&name), uid, gid, 0o644)?;
        }
    }
    if let Some(maildir) = alias.create_dir_new("Maildir", 0o700)? {
        maildir.set_owner_mode(uid, gid, 0o700)?;
        for sub in ["tmp", "new", "cur"] {
            maildir
                .make_dir(sub, 0o700)?
                .set_owner_mode(uid, gid, 0o700)?;
        }
    }
    Ok(())
}

/// An empty cdb: 256 hash table headers, each pointing at the end of the header with no
/// slots (what cdbmake and tcprules write for no records).
fn empty_cdb() -> Vec<u8> {
    let mut v = Vec::with_capacity(2048);
    for _ in 0..256 {
        v.extend_from_slice(&2048u32.to_le_bytes());
        v.extend_from_slice(&0u32.to_le_bytes());
    }
    v
}

/// qmail-guard's directory `guard/` (qmailg, 0755) and the control files it may replace:
/// `control/badmailfrom`, `control/tcp.smtp` and `control/tcp.smtp.cdb` are links to
/// files of the same names in `guard/`. Replacing a file atomically needs write access
/// to its directory, and qmailg must not write `control/` (it could add any control
/// file), so the three live in a directory of qmailg's own and readers reach them
/// through the links. Made only where `control/NAME` does not exist: an administrator's
/// own file stays as it is (qmail-guard then says it cannot replace it; INSTALL.md shows
/// how to move it in).
fn guard_files(root: &Dir, ids: &Ids) -> io::Result<()> {
    let (uid, gid) = (ids.uid(Owner::User("qmailg"))?, ids.gid("nofiles")?);
    let guard = root.make_dir("guard", 0o755)?;
    guard.set_owner_mode(uid, gid, 0o755)?;
    let control = root.walk(Path::new("control"))?;
    let rules = "# tcprules for qmail-smtpd (qmailctl cdb rebuilds tcp.smtp.cdb); qmail-guard puts\n\
                 # its deny rules first, each after a \"# qmail-guard:\" comment\n";
    let files: [(&str, Vec<u8>); 3] = [
        ("badmailfrom", Vec::new()),
        ("tcp.smtp", rules.as_bytes().to_vec()),
        ("tcp.smtp.cdb", empty_cdb()),
    ];
    for (name, initial) in files {
        if std::fs::symlink_metadata(control.join(name)).is_ok() {
            continue;
        }
        if let Some(mut f) = guard.create_new(name, 0o600)? {
            ctx(f.write_all(&initial), || {
                format!("unable to write {}", guard.join(name).display())
            })?;
            safefs::set_owner_mode(&f, &guard.join(name), uid, gid, 0o644)?;
        }
        let tmp = control.join(&format!(".{name}.new"));
        let _ = std::fs::remove_file(&tmp);
        ctx(
            std::os::unix::fs::symlink(format!("../guard/{name}"), &tmp),
            || format!("unable to link {}", tmp.display()),
        )?;
        ctx(std::fs::rename(&tmp, control.join(name)), || {
            format!("unable to link {}", control.join(name).display())
        })?;
    }
    Ok(())
}

/// Create the qmail groups and users that are missing (root only). Safe to run from
/// several installers at once: an account that another installer created meanwhile is
/// success, not failure (see [`settle_account`]).
fn ensure_accounts(root: &Path) -> io::Result<()> {
    use std::process::Command;
    for g in [qsys::ids::GROUP_QMAIL, qsys::ids::GROUP_NOFILES] {
        settle_account(
            &format!("group {g}"),
            || qsys::ids::gid(g).is_some(),
            || Command::new("groupadd").args(["-r", g]).status(),
            std::thread::sleep,
        )?;
    }
    for u in qsys::ids::USERS {
        let home = if u == "alias" {
            root.join("alias")
        } else {
            root.to_path_buf()
        };
        settle_account(
            &format!("user {u}"),
            || qsys::ids::uid(u).is_some(),
            || {
                Command::new("useradd")
                    .args(["-r", "-M", "-N", "-g", qsys::ids::primary_group(u), "-d"])
                    .arg(&home)
                    .args(["-s", "/usr/sbin/nologin", u])
                    .status()
            },
            std::thread::sleep,
        )?;
    }
    Ok(())
}

/// How often [`settle_account`] runs `useradd`/`groupadd` before giving up.
const ACCOUNT_TRIES: u32 = 6;

/// Make sure an account exists: done when `exists()`; otherwise run `add` and look
/// again. A failed `add` after which the account exists is success (another installer
/// won the race: useradd and groupadd exit 9, "name not unique"); a failed `add` after
/// which it still does not (the password files were locked by another useradd) is tried
/// again after a growing pause, [`ACCOUNT_TRIES`] times in all.
fn settle_account(
    what: &str,
    exists: impl Fn() -> bool,
    mut add: impl FnMut() -> io::Result<std::process::ExitStatus>,
    mut pause: impl FnMut(std::time::Duration),
) -> io::Result<()> {
    let mut last = String::new();
    for attempt in 1..=ACCOUNT_TRIES {
        if exists() {
            return Ok(());
        }
        last = match add() {
            Ok(st) if st.success() => "it is still missing after success".into(),
            Ok(st) => match st.code() {
                Some(c) => format!("exit code {c}"),
                None => "killed by a signal".into(),
            },
            Err(e) => e.to_string(),
        };
        if exists() {
            return Ok(());
        }
        if attempt < ACCOUNT_TRIES {
            pause(std::time::Duration::from_millis(200 * u64::from(attempt)));
        }
    }
    Err(io::Error::other(format!("unable to create {what}: {last}")))
}

/// What kind of entry an [`Expected`] names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryKind {
    Dir,
    File,
    Fifo,
}

/// One installed entry as the installer leaves it (run as root): its path relative to
/// the root, owner and group names, and mode with the set-id bits. Read-only view of the
/// tables above for qmail-audit; the installer stays their one owner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expected {
    pub path: String,
    pub kind: EntryKind,
    pub owner: String,
    pub group: String,
    pub mode: u32,
}

fn owner_name(o: Owner) -> String {
    match o {
        Owner::Root => "root".into(),
        Owner::User(n) => n.into(),
    }
}

/// Every directory, program, lock file, run script, boot file and manual the installer
/// lays out, with the owner, group and mode an install by root gives it. A program's
/// group falls back to `qmail` without its setgid bit when the system lacks the group,
/// as [`install`] does. Programs are listed whether or not they were built.
pub fn expected() -> Vec<Expected> {
    let entry = |path: String, kind, owner: String, group: &str, mode| Expected {
        path,
        kind,
        owner,
        group: group.to_string(),
        mode,
    };
    let mut v: Vec<Expected> = dirs()
        .into_iter()
        .map(|d| entry(d.path, EntryKind::Dir, owner_name(d.owner), d.group, d.mode))
        .collect();
    for (name, owner, mode, kind) in [
        ("tcpto", "qmailr", 0o644, EntryKind::File),
        ("sendmutex", "qmails", 0o600, EntryKind::File),
        ("trigger", "qmails", 0o622, EntryKind::Fifo),
    ] {
        v.push(entry(
            format!("queue/lock/{name}"),
            kind,
            owner.into(),
            "qmail",
            mode,
        ));
    }
    for p in PROGRAMS {
        let (group, mode) = match p.group {
            Some(g) if qsys::ids::gid(g).is_some() => (g, p.mode),
            Some(_) => ("qmail", p.mode & !0o2000),
            None => ("qmail", p.mode),
        };
        v.push(entry(
            format!("bin/{}", p.name),
            EntryKind::File,
            owner_name(p.owner),
            group,
            mode,
        ));
    }
    // written by root with its own group: run scripts, boot files, manuals
    for (rel, _) in SUPERVISE {
        v.push(entry(
            format!("supervise/{rel}"),
            EntryKind::File,
            "root".into(),
            "root",
            0o755,
        ));
    }
    for (name, _, mode) in BOOT {
        v.push(entry(
            format!("boot/{name}"),
            EntryKind::File,
            "root".into(),
            "root",
            *mode,
        ));
    }
    for (name, _) in crate::manuals::MANUALS {
        v.push(entry(
            format!("man/man8/{name}.8"),
            EntryKind::File,
            "root".into(),
            "root",
            0o644,
        ));
        v.push(entry(
            format!("doc/{name}.txt"),
            EntryKind::File,
            "root".into(),
            "root",
            0o644,
        ));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: i32) -> io::Result<std::process::ExitStatus> {
        use std::os::unix::process::ExitStatusExt;
        Ok(std::process::ExitStatus::from_raw(code << 8))
    }

    #[test]
    fn an_account_another_installer_created_is_success() {
        use std::cell::Cell;
        let made = Cell::new(false);
        let runs = Cell::new(0);
        // the race: useradd says 9 (exists) because the other installer was first
        let r = settle_account(
            "user qmaild",
            || made.get(),
            || {
                runs.set(runs.get() + 1);
                made.set(true);
                status(9)
            },
            |_| {},
        );
        assert!(r.is_ok());
        assert_eq!(runs.get(), 1);
        // already there: nothing is run
        let r = settle_account("user qmaild", || true, || panic!("ran useradd"), |_| {});
        assert!(r.is_ok());
    }

    #[test]
    fn a_locked_password_file_is_tried_again_then_reported() {
        use std::cell::Cell;
        let runs = Cell::new(0);
        let r = settle_account(
            "user qmaild",
            || runs.get() >= 3,
            || {
                runs.set(runs.get() + 1);
                if runs.get() < 3 { status(1) } else { status(0) }
            },
            |_| {},
        );
        assert!(r.is_ok());
        assert_eq!(runs.get(), 3);
        let pauses = Cell::new(0);
        let e = settle_account(
            "group qmail",
            || false,
            || status(10),
            |_| pauses.set(pauses.get() + 1),
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "unable to create group qmail: exit code 10");
        assert_eq!(pauses.get(), ACCOUNT_TRIES - 1);
    }

    #[test]
    fn run_scripts_pass_a_backlog_and_never_chown_recursively() {
        for (rel, text) in SUPERVISE {
            if text.contains("tcpserver") {
                assert!(text.contains(r#"-b "$BACKLOG""#), "{rel} passes no -b");
            }
            let recursive = text
                .lines()
                .filter(|l| !l.trim_start().starts_with('#'))
                .any(|l| l.contains("chown -R"));
            assert!(!recursive, "{rel} chowns recursively");
        }
    }

    #[test]
    fn smtp_run_scripts_set_the_filter_chain_before_tcpserver_reads_its_rules() {
        for (rel, text) in SUPERVISE {
            if !text.contains("qmail-smtpd") || rel.contains("log/") {
                continue;
            }
            // env sets QMAILQUEUE for tcpserver, whose rules then may override it
            assert!(
                text.contains(
                    r#"exec env - PATH="$PATH" ${FILTERQ:+"QMAILQUEUE=$FILTERQ"} softlimit"#
                ),
                "{rel} does not choose qmail-qfilter"
            );
            assert!(
                text.contains(r#"FILTERQ="$HOME_DIR/bin/qmail-qfilter""#),
                "{rel}"
            );
        }
    }

    #[test]
    fn domains_from_me() {
        assert_eq!(default_domain("mx.example.org"), "example.org");
        assert_eq!(default_domain("localhost"), "localhost");
        assert_eq!(plus_domain("mx.cs.example.org"), "example.org");
    }

    #[test]
    fn install_as_caller_is_idempotent_and_keeps_controls() {
        if qsys::is_root() {
            return; // the root path is covered by the end-to-end tests
        }
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("src");
        std::fs::create_dir(&src).unwrap();
        std::fs::write(src.join("qmail-send"), b"#!/bin/sh\n").unwrap();
        let opts = Options {
            root: d.path().join("root"),
            source: src,
            me: "mx.example.org".into(),
        };
        std::fs::create_dir(&opts.root).unwrap();
        let got = install(&opts).unwrap();
        assert_eq!(got, vec!["qmail-send"]);
        std::fs::write(opts.root.join("control/me"), "changed\n").unwrap();
        install(&opts).unwrap();
        assert_eq!(
            std::fs::read_to_string(opts.root.join("control/me")).unwrap(),
            "changed\n"
        );
        assert!(opts.root.join("queue/mess/22").is_dir());
        assert_eq!(
            std::fs::read_to_string(opts.root.join("control/filters")).unwrap(),
            ""
        );
        assert!(opts.root.join("quarantine/new").is_dir());
        for n in SERVICES {
            assert!(opts.root.join("supervise").join(n).join("run").is_file());
            assert!(
                opts.root
                    .join("supervise")
                    .join(n)
                    .join("log/run")
                    .is_file()
            );
        }
        let unit = std::fs::read_to_string(opts.root.join("boot/svscan.service")).unwrap();
        assert!(unit.contains(&format!("ExecStart={}/bin/svscanboot", opts.root.display())));
        let sv = d.path().join("service");
        assert_eq!(
            link_services(&opts.root, &sv, &["qmail-send"])
                .unwrap()
                .done,
            vec!["qmail-send"]
        );
        assert!(sv.join("qmail-send/run").is_file());
        // without a certificate the TLS-only services are left out, or refused by name
        let installed = |names: &[&str]| -> Vec<String> {
            names
                .iter()
                .filter(|n| opts.root.join("supervise").join(n).join("run").is_file())
                .map(|n| n.to_string())
                .collect()
        };
        let (tls_only, all) = (installed(NEED_CERTIFICATE), installed(SERVICES));
        let linked = link_services(&opts.root, &sv, &[]).unwrap();
        assert_eq!(linked.need_certificate, tls_only);
        assert_eq!(linked.done.len(), all.len() - 1 - tls_only.len());
        let refused = link_services(&opts.root, &sv, &["qmail-smtps"]).unwrap_err();
        assert!(refused.to_string().contains("servercert.pem"), "{refused}");
        std::fs::write(opts.root.join("control/servercert.pem"), "").unwrap();
        let linked = link_services(&opts.root, &sv, &[]).unwrap();
        assert_eq!(linked.done, tls_only);
        assert!(link_services(&opts.root, &sv, &["nope"]).is_err());
        assert_eq!(
            std::fs::metadata(opts.root.join("queue/lock/tcpto"))
                .unwrap()
                .len(),
            1024
        );
    }
}

/// Dovecot's master, and the helper its checkpassword driver runs after ours.
pub const DOVECOT: &str = "/usr/sbin/dovecot";
pub const DOVECOT_REPLY: &str = "/usr/lib/dovecot/checkpassword-reply";

/// The IMAP service: Dovecot under our supervise, installed only when Dovecot is.
pub const IMAP_SERVICE: &str = "qmail-imapd";

/// Its run scripts and the Dovecot configuration (`@HOME@` replaced by the root),
/// installed as `supervise/qmail-imapd/{run,log/run}` and `dovecot/dovecot.conf`.
const IMAP_SUPERVISE: &[(&str, &str)] = &[
    (
        "qmail-imapd/run",
        include_str!("../../../supervise/qmail-imapd/run"),
    ),
    (
        "qmail-imapd/log/run",
        include_str!("../../../supervise/qmail-imapd/log/run"),
    ),
];
const DOVECOT_CONF: &str = include_str!("../../../supervise/qmail-imapd/dovecot.conf");

/// Whether qmail-install sets up IMAP, and if not, why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImapSetup {
    /// Dovecot is installed: configuration and service written.
    Written,
    /// Dovecot (or its checkpassword-reply) is missing.
    NoDovecot,
    /// The root's path holds characters Dovecot's configuration cannot quote
    /// (white space, `"`, `#`, `{`, `}`, `<`, `%`, `$`): Dovecot splits the
    /// checkpassword's `args` at spaces, and reads `<` as a file.
    UnusableRoot,
}

/// What [`install`] does about IMAP for `root` on this machine.
pub fn imap_setup(root: &Path) -> ImapSetup {
    imap_setup_with(root, Path::new(DOVECOT), Path::new(DOVECOT_REPLY))
}

fn imap_setup_with(root: &Path, dovecot: &Path, reply: &Path) -> ImapSetup {
    if !dovecot.is_file() || !reply.is_file() {
        return ImapSetup::NoDovecot;
    }
    let usable = root.to_str().is_some_and(|r| {
        !r.chars()
            .any(|c| c.is_whitespace() || c.is_control() || "\"'#{}<%$\\".contains(c))
    });
    if usable {
        ImapSetup::Written
    } else {
        ImapSetup::UnusableRoot
    }
}

/// The line qmail-install prints about IMAP.
pub fn imap_message(root: &Path, setup: &ImapSetup) -> String {
    match setup {
        ImapSetup::Written => format!(
            "qmail-install: IMAP: Dovecot configured in {}/dovecot, service {IMAP_SERVICE}",
            root.display()
        ),
        ImapSetup::NoDovecot => format!(
            "qmail-install: IMAP: Dovecot is not installed ({DOVECOT}, {DOVECOT_REPLY}): \
             no IMAP service; install dovecot-imapd and rerun qmail-install"
        ),
        ImapSetup::UnusableRoot => format!(
            "qmail-install: IMAP: {} holds characters Dovecot's configuration cannot take: \
             no IMAP service",
            root.display()
        ),
    }
}

/// `dovecot/dovecot.conf` (rewritten on every install, as the run scripts are),
/// `dovecot/run` and `dovecot/state` (Dovecot's base_dir and state_dir), and the
/// `qmail-imapd` service. All of it is root's (or the installing user's) alone.
fn dovecot_files(root: &Path) -> io::Result<()> {
    let dir = root.join("dovecot");
    for d in [dir.clone(), dir.join("run"), dir.join("state")] {
        match std::fs::create_dir(&d) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return ctx(Err(e), || format!("unable to create {}", d.display())),
        }
        let meta = std::fs::symlink_metadata(&d)?;
        if !meta.is_dir() {
            return Err(io::Error::other(format!(
                "refusing to touch {}: not a directory",
                d.display()
            )));
        }
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755))?;
    }
    let home = root.to_string_lossy();
    qsys::fsync::write_atomic(
        &dir.join("dovecot.conf"),
        DOVECOT_CONF.replace("@HOME@", &home).as_bytes(),
        0o644,
    )?;
    for (rel, text) in IMAP_SUPERVISE {
        let p = root.join("supervise").join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)?;
        }
        qsys::fsync::write_atomic(&p, text.as_bytes(), 0o755)?;
    }
    Ok(())
}

#[cfg(test)]
mod imap_tests {
    use super::*;

    #[test]
    fn imap_is_set_up_only_with_dovecot_and_a_plain_root() {
        let d = tempfile::tempdir().unwrap();
        let (bin, reply) = (d.path().join("dovecot"), d.path().join("reply"));
        let root = Path::new("/var/qmail");
        assert_eq!(imap_setup_with(root, &bin, &reply), ImapSetup::NoDovecot);
        std::fs::write(&bin, "").unwrap();
        assert_eq!(imap_setup_with(root, &bin, &reply), ImapSetup::NoDovecot);
        std::fs::write(&reply, "").unwrap();
        assert_eq!(imap_setup_with(root, &bin, &reply), ImapSetup::Written);
        for bad in [
            "/var/my qmail",
            "/var/q\"m",
            "/var/q#m",
            "/var/q%m",
            "/var/q\tm",
        ] {
            assert_eq!(
                imap_setup_with(Path::new(bad), &bin, &reply),
                ImapSetup::UnusableRoot,
                "{bad}"
            );
        }
        assert!(imap_message(root, &ImapSetup::NoDovecot).contains("not installed"));
    }

    #[test]
    fn services_link_without_imap_where_dovecot_was_missing() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("root");
        for s in SERVICES.iter().filter(|s| **s != IMAP_SERVICE) {
            std::fs::create_dir_all(root.join("supervise").join(s)).unwrap();
            std::fs::write(root.join("supervise").join(s).join("run"), "").unwrap();
        }
        std::fs::create_dir_all(root.join("control")).unwrap();
        std::fs::write(root.join("control/servercert.pem"), "").unwrap();
        let sv = d.path().join("service");
        let linked = link_services(&root, &sv, &[]).unwrap();
        assert_eq!(linked.done.len(), SERVICES.len() - 1);
        assert!(!linked.done.iter().any(|s| s == IMAP_SERVICE));
        let e = link_services(&root, &sv, &[IMAP_SERVICE]).unwrap_err();
        assert!(e.to_string().contains("Dovecot was missing"), "{e}");
        dovecot_files(&root).unwrap();
        assert_eq!(link_services(&root, &sv, &[]).unwrap().done, [IMAP_SERVICE]);
    }

    #[test]
    fn dovecot_configuration_names_the_installation() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("supervise")).unwrap();
        dovecot_files(d.path()).unwrap();
        let conf = std::fs::read_to_string(d.path().join("dovecot/dovecot.conf")).unwrap();
        assert!(!conf.contains("@HOME@"));
        let home = d.path().display().to_string();
        for want in [
            format!("base_dir = {home}/dovecot/run"),
            format!("args = {home}/bin/checkpassword"),
            "ssl_min_protocol = TLSv1.2".to_string(),
            "disable_plaintext_auth = yes".to_string(),
            "log_path = /dev/stderr".to_string(),
            "mail_location = maildir:~/Maildir".to_string(),
        ] {
            assert!(conf.contains(&want), "{want}");
        }
        assert!(d.path().join("supervise/qmail-imapd/log/run").is_file());
        // a second install rewrites it in place
        dovecot_files(d.path()).unwrap();
    }
}
