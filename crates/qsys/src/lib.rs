//! System glue shared by every program of the suite.
//!
//! - [`home`]: the installation root, found from the program's own path
//!   (`/proc/self/exe` is `HOME/bin/NAME`, DESIGN section 4), so that any number of
//!   complete installs can live side by side and nothing trusts the environment. A
//!   set-id program (qmail-queue, checkpassword) accepts only a root-owned HOME and
//!   HOME/bin that nobody else can write: a user who hard-links it into a tree of their
//!   own (`fs.protected_hardlinks=0`) gets a refusal, not their own queue or controls.
//! - [`safefs`]: file operations for root on paths other users control (no symlinks
//!   followed, nothing but the expected file type touched).
//! - [`ids`]: the qmail users and groups, looked up by name (nothing is compiled in).
//! - [`prot`]: qmail's `prot_gid`/`prot_uid`: exactly one group, then the uid, then a
//!   check that the drop held (the one privilege-drop helper).
//! - [`fsync`]: durable file and directory operations (Linux needs directory fsyncs where
//!   qmail assumed synchronous metadata).
//! - [`logsafe`]: the one escaping for anything a client sent that reaches a log line.
//! - [`errstr`]: the one errno-text table (DJB's wording).
//! - [`start`]: [`lean_main!`], a process start without std's stack-guard probe, for
//!   the programs started per message.
//! - [`ahead`]: a program started ahead of its connection by `tcpserver -a` waits for it
//!   in its start (the program's side, and the wire format tcpserver shares).
//! - [`zygote`]: `tcpserver -A`: the program started ahead forks each connection's
//!   process, the program's side.
//! - [`fds`]: closing every descriptor above a point, in a forked child that does not exec.
//! - [`vfork`]: a child that shares our memory until it execs (posix_spawn's clone, or
//!   one that runs beside us), and the errno-free system calls such a child makes.
//! - [`net`]: connecting to a local daemon's unix socket with a deadline.
//! - [`die`]: qmail-style fatal messages and the panic hook that turns a panic into a
//!   temporary failure (exit 111).

pub mod ahead;
pub mod date;
pub mod die;
pub mod errstr;
pub mod fdio;
pub mod fds;
pub mod fsync;
pub mod getopt;
pub mod ids;
pub mod logsafe;
pub mod manual;
pub mod net;
pub mod prot;
pub mod safefs;
pub mod start;
pub mod vfork;
pub mod zygote;

use std::path::PathBuf;

/// The installation root of the running program: the parent of the directory that holds
/// its executable (`HOME/bin/NAME` gives `HOME`). Running set-id, HOME and HOME/bin must
/// pass [`setid_home_check`]; a refusal is also written to stderr as
/// `NAME: alert: ...`, since some callers (qmail-queue) answer only with an exit code.
pub fn home() -> std::io::Result<PathBuf> {
    let exe = own_path()?;
    let home = exe
        .parent()
        .and_then(|bin| bin.parent())
        .map(PathBuf::from)
        .ok_or_else(|| std::io::Error::other("program is not installed as HOME/bin/NAME"))?;
    if running_setid()
        && let Err(e) = setid_home_check(&home)
    {
        let name = exe.file_name().unwrap_or_default().to_string_lossy();
        die::warn(&name, "alert", &e.to_string());
        return Err(e);
    }
    Ok(home)
}

/// The running program's path (`/proc/self/exe`), kept after the first read that
/// succeeds (a failed one is tried again at the next call): a process forked ahead of
/// its connection ([`zygote`]) finds it already read by its zygote, which runs the same
/// executable, so its start does not pay the lookup. So such a process sees the path as
/// it was at its zygote's start: should HOME be renamed in between (an old install moved
/// aside, a new one put in its place), it goes on with the old HOME's name, which now
/// names the new install; the zygote lives for at most `tcpserver -A`'s N connections.
pub fn own_path() -> std::io::Result<&'static std::path::Path> {
    static OWN_PATH: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    if let Some(p) = OWN_PATH.get() {
        return Ok(p);
    }
    let p = std::fs::read_link("/proc/self/exe")?;
    Ok(OWN_PATH.get_or_init(|| p))
}

/// True when the kernel ran this program set-id (or with file capabilities): the
/// `AT_SECURE` flag of the auxiliary vector, set when the real and effective ids differ.
pub fn running_setid() -> bool {
    // SAFETY: getauxval reads the process's auxiliary vector and has no side effects.
    unsafe { libc::getauxval(libc::AT_SECURE) != 0 }
}

/// Refuse (`PermissionDenied`) a HOME a set-id program must not trust: HOME or HOME/bin
/// not a directory owned by root, or writable by group or others; or a directory above
/// HOME where another user could rename HOME away and put a tree of their own in its
/// place (not owned by root, or writable by others without the sticky bit of `/tmp`).
pub fn setid_home_check(home: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let refuse = |dir: &std::path::Path, why: &str| {
        std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!(
                "refusing to run set-id from {}: {} is not {why} (a copy or hard link of \
                 the program?)",
                home.display(),
                dir.display()
            ),
        )
    };
    for dir in [home.to_path_buf(), home.join("bin")] {
        let md = std::fs::symlink_metadata(&dir)?;
        if !trusted_dir(md.is_dir(), md.uid(), md.mode()) {
            return Err(refuse(
                &dir,
                "a directory owned by root and writable by root alone",
            ));
        }
    }
    match untrusted_ancestor(home)? {
        Some(dir) => Err(refuse(
            &dir,
            "owned by root and safe from renames by others",
        )),
        None => Ok(()),
    }
}

/// The first directory above `home` that fails the ancestor rule of [`setid_home_check`]
/// (another user could rename `home` away), or `None`. qmail-install run as root checks
/// this first: the set-id programs would refuse to run from such a HOME.
pub fn untrusted_ancestor(home: &std::path::Path) -> std::io::Result<Option<PathBuf>> {
    use std::os::unix::fs::MetadataExt;
    for dir in home.ancestors().skip(1) {
        let md = std::fs::metadata(dir)?;
        if !trusted_ancestor(md.uid(), md.mode()) {
            return Ok(Some(dir.to_path_buf()));
        }
    }
    Ok(None)
}

/// The rule of [`setid_home_check`] for HOME and HOME/bin.
fn trusted_dir(is_dir: bool, uid: u32, mode: u32) -> bool {
    is_dir && uid == 0 && mode & 0o022 == 0
}

/// The rule of [`setid_home_check`] for a directory above HOME: root's, and either
/// writable by root alone or sticky (only an entry's owner may rename it).
fn trusted_ancestor(uid: u32, mode: u32) -> bool {
    uid == 0 && (mode & 0o022 == 0 || mode & 0o1000 != 0)
}

/// Seconds since the epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// True when the process runs with real uid 0.
pub fn is_root() -> bool {
    nix::unistd::getuid().is_root()
}

/// Restore the default disposition of SIGPIPE and an empty signal mask: Rust's runtime
/// ignores SIGPIPE, and an exec'ed program (a shell run script, a `|program` delivery)
/// must not inherit that. Call in a forked child just before exec.
pub fn reset_signals_for_exec() {
    use nix::sys::signal::{SigHandler, SigSet, SigmaskHow, Signal, signal, sigprocmask};
    // SAFETY: setting a signal to its default disposition installs no Rust handler.
    unsafe {
        let _ = signal(Signal::SIGPIPE, SigHandler::SigDfl);
        let _ = signal(Signal::SIGCHLD, SigHandler::SigDfl);
    }
    let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
}

/// This machine's host name (`gethostname(2)`), or `localhost`.
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates on success.
    let r = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if r != 0 {
        return "localhost".into();
    }
    let n = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// Block SIGTERM, SIGALRM and SIGHUP for this thread (and, across exec, the program it
/// becomes): qmail-start calls this first, so a signal sent while qmail-send is still
/// starting waits for its signalfd instead of killing it.
pub fn block_control_signals() {
    use nix::sys::signal::{SigSet, Signal};
    let mut mask = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGALRM, Signal::SIGHUP] {
        mask.add(s);
    }
    let _ = mask.thread_block();
}

/// Whether a process that ended by `signal` crashed: a fault, an abort (a panic, an
/// allocation failure), a bad instruction. A kill (the time limit's, an administrator's,
/// a child that could not set itself up) is not one.
pub fn crash_signal(signal: i32) -> bool {
    [
        libc::SIGSEGV,
        libc::SIGBUS,
        libc::SIGILL,
        libc::SIGFPE,
        libc::SIGABRT,
        libc::SIGSYS,
        libc::SIGTRAP,
    ]
    .contains(&signal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setid_home_rule() {
        assert!(trusted_dir(true, 0, 0o40755));
        assert!(trusted_dir(true, 0, 0o40700));
        assert!(!trusted_dir(true, 1000, 0o40755), "owned by a user");
        assert!(!trusted_dir(true, 0, 0o40775), "group writable");
        assert!(
            !trusted_dir(true, 0, 0o41777),
            "world writable, even sticky"
        );
        assert!(!trusted_dir(false, 0, 0o120777), "a symlink");
        assert!(trusted_ancestor(0, 0o40755));
        assert!(trusted_ancestor(0, 0o41777), "/tmp: sticky");
        assert!(!trusted_ancestor(0, 0o40777), "world writable, not sticky");
        assert!(!trusted_ancestor(1000, 0o40755), "a user's home");
    }

    #[test]
    fn setid_home_check_on_disk() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let home = d.path();
        std::fs::create_dir(home.join("bin")).unwrap();
        std::fs::set_permissions(home, std::fs::Permissions::from_mode(0o755)).unwrap();
        if is_root() {
            assert!(setid_home_check(home).is_ok());
            std::fs::set_permissions(home.join("bin"), std::fs::Permissions::from_mode(0o777))
                .unwrap();
            let e = setid_home_check(home).unwrap_err();
            assert!(e.to_string().contains("refusing to run set-id"), "{e}");
        } else {
            // a tree the caller owns is exactly what an attacker would build
            assert!(setid_home_check(home).is_err());
        }
        assert!(setid_home_check(&home.join("missing")).is_err());
        assert!(!running_setid(), "the test runner is not set-id");
    }
}
