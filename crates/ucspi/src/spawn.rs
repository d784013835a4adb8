//! Starting a connection's program on tcpserver's direct way ([`crate::server`]): a
//! vfork-style clone that does in the child exactly what ucspi-tcp's forked child does
//! before its exec (the connection on descriptors 0 and 1, the changed environment,
//! SIGPIPE back to its default, an empty signal mask), and nothing else.
//!
//! Why not `posix_spawn`: glibc's child resets every one of the 64 signals (two
//! `rt_sigaction` calls each, 130 system calls per connection), and its parent maps and
//! unmaps a fresh stack and reads `RLIMIT_NOFILE` four times, where tcpserver knows at
//! start which signals it catches; std's `Command` on top rebuilds the whole environment
//! in a map for every spawn. Why not `fork`: the child would copy tcpserver's page tables
//! and take copy-on-write faults, and the exec would tear that copy down again.
//!
//! How it stays sound, as glibc's `posix_spawn` does ([`qsys::vfork`] has the clone): the
//! child shares tcpserver's memory (`CLONE_VM`) while tcpserver's thread is suspended
//! until the child has exec'ed or exited (`CLONE_VFORK`). Everything the child reads is built by the parent before the
//! clone ([`Launcher::spawn`]): the argument and environment arrays and the candidate
//! paths. The child allocates nothing, takes no lock, and calls only async-signal-safe
//! functions (`sigaction`, `sigprocmask`, `dup2`, `fcntl`, `execve`, `_exit`). Every
//! signal is blocked across the clone, so none of tcpserver's handlers can run on the
//! child's borrowed stack; the child puts the signals tcpserver catches back to their
//! defaults (its own copy of the dispositions: no `CLONE_SIGHAND`) before it unblocks
//! them; which signals those are is read once, in [`Launcher::new`] (tcpserver installs
//! no handler after its start). A failed exec leaves its errno in the parent's memory and the child `_exit`s
//! 127, reaped here, so a failure never reaches the parent's SIGCHLD accounting.

use std::ffi::{CString, OsString, c_char, c_int, c_void};
use std::io;
use std::os::fd::RawFd;
use std::os::unix::ffi::OsStrExt;

/// The child's stack: it runs a few libc calls and `execve`; 64 KiB is ample and is
/// allocated once (the parent is suspended while the child uses it).
const STACK_SIZE: usize = 64 * 1024;

/// A program to start for each connection, with what can be prepared once.
pub struct Launcher {
    argv: Vec<CString>,
    /// [`Launcher::argv`] as the null-terminated pointer array execve takes (the
    /// strings' bytes stay where they are when the Launcher moves).
    argv_ptrs: Vec<*const c_char>,
    /// The inherited environment, `NAME=VALUE`, and each name's length.
    base: Vec<(CString, usize)>,
    /// Where `argv[0]` may be: itself when it holds a slash, else each `PATH` directory
    /// of the inherited environment (default `/bin:/usr/bin`), searched as
    /// [`crate::server`]'s exec does ([`search_goes_on`]); kept for `path_ptrs`, which
    /// points into them.
    _paths: Vec<CString>,
    path_ptrs: Vec<*const c_char>,
    /// Signals tcpserver catches, put back to their default in the child; SIGPIPE
    /// (ignored by Rust's start) and SIGCHLD are always among them.
    reset: Vec<c_int>,
    stack: Vec<u8>,
}

/// What the child reads and writes: pointers into the parent's memory, valid while the
/// parent is suspended in the clone.
struct ChildArgs {
    conn: c_int,
    argv: *const *const c_char,
    envp: *const *const c_char,
    paths: *const *const c_char,
    npaths: usize,
    reset: *const c_int,
    nreset: usize,
    /// The child's errno when no exec succeeded; 0 otherwise.
    err: c_int,
}

impl Launcher {
    /// Prepare `program` (its name, then its arguments) with the environment tcpserver
    /// runs in; `None` when an argument holds a NUL byte.
    pub fn new(program: &[OsString]) -> Option<Launcher> {
        let argv: Vec<CString> = program
            .iter()
            .map(|a| CString::new(a.as_bytes()).ok())
            .collect::<Option<_>>()?;
        if argv.is_empty() {
            return None;
        }
        let base: Vec<(CString, usize)> = std::env::vars_os()
            .filter_map(|(k, v)| {
                let mut kv = k.as_bytes().to_vec();
                kv.push(b'=');
                kv.extend_from_slice(v.as_bytes());
                CString::new(kv).ok().map(|c| (c, k.len()))
            })
            .collect();
        let path_var = std::env::var_os("PATH").map(|p| p.as_bytes().to_vec());
        let paths = candidates(argv[0].as_bytes(), path_var.as_deref());
        Some(Launcher {
            argv_ptrs: nul_terminated(&argv),
            argv,
            base,
            path_ptrs: nul_terminated(&paths),
            _paths: paths,
            reset: caught_signals(),
            stack: vec![0u8; STACK_SIZE],
        })
    }

    /// Start the program with `conn` on descriptors 0 and 1 and the environment changed
    /// by `changes` (later changes win; `None` removes); its pid, or why it could not
    /// be started (the exec's error).
    pub fn spawn(
        &mut self,
        conn: RawFd,
        changes: &[(Vec<u8>, Option<Vec<u8>>)],
    ) -> io::Result<u32> {
        let envp_owned = self.environment(changes);
        let mut envp: Vec<*const c_char> = envp_owned.iter().map(|e| e.as_ptr()).collect();
        envp.extend(self.kept(changes));
        envp.push(std::ptr::null());
        // a rule may set PATH: then the search follows the program's own PATH
        let changed_paths = changes
            .iter()
            .rev()
            .find(|(k, _)| k == b"PATH")
            .map(|(_, v)| candidates(self.argv[0].as_bytes(), v.as_deref()));
        let changed_ptrs = changed_paths.as_deref().map(nul_terminated);
        let paths = changed_ptrs.as_deref().unwrap_or(&self.path_ptrs);
        let mut args = ChildArgs {
            conn,
            argv: self.argv_ptrs.as_ptr(),
            envp: envp.as_ptr(),
            paths: paths.as_ptr(),
            npaths: paths.len() - 1,
            reset: self.reset.as_ptr(),
            nreset: self.reset.len(),
            err: 0,
        };
        // SAFETY: `child` keeps to the rules of the module doc, and reads only `args`
        // and what it points to, all alive and untouched until the clone returns.
        let pid = unsafe {
            qsys::vfork::clone_vfork(
                child,
                (&mut args as *mut ChildArgs).cast::<c_void>(),
                &mut self.stack,
            )?
        };
        // SAFETY: a plain read of our own local, which the child wrote (if at all)
        // before the clone returned.
        let err = unsafe { std::ptr::read_volatile(&args.err) };
        if err != 0 {
            // SAFETY: reaps our own child, which has exited (it _exits right after).
            unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
            return Err(io::Error::from_raw_os_error(err));
        }
        Ok(pid as u32)
    }

    /// The changed variables, `NAME=VALUE`, last change of a name only.
    fn environment(&self, changes: &[(Vec<u8>, Option<Vec<u8>>)]) -> Vec<CString> {
        let mut out = Vec::with_capacity(changes.len());
        for (i, (name, value)) in changes.iter().enumerate() {
            let later = changes[i + 1..].iter().any(|(k, _)| k == name);
            if let (Some(v), false) = (value, later) {
                let mut kv = Vec::with_capacity(name.len() + 1 + v.len());
                kv.extend_from_slice(name);
                kv.push(b'=');
                kv.extend_from_slice(v);
                if let Ok(c) = CString::new(kv) {
                    out.push(c);
                }
            }
        }
        out
    }

    /// The inherited variables no change names.
    fn kept<'a>(
        &'a self,
        changes: &'a [(Vec<u8>, Option<Vec<u8>>)],
    ) -> impl Iterator<Item = *const c_char> + 'a {
        self.base
            .iter()
            .filter(move |(kv, len)| {
                let name = &kv.as_bytes()[..*len];
                !changes.iter().any(|(k, _)| k == name)
            })
            .map(|(kv, _)| kv.as_ptr())
    }
}

/// The child (module doc): the connection on 0 and 1, caught signals to their
/// defaults, every signal unblocked, then each candidate path until one execs.
extern "C" fn child(arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the parent's ChildArgs, alive while the parent is suspended;
    // every pointer in it was built for this call. Only async-signal-safe calls follow.
    unsafe {
        let a = &mut *arg.cast::<ChildArgs>();
        for target in [0, 1] {
            let r = if a.conn == target {
                libc::fcntl(target, libc::F_SETFD, 0)
            } else {
                libc::dup2(a.conn, target)
            };
            if r < 0 {
                a.err = *libc::__errno_location();
                libc::_exit(127);
            }
        }
        let mut dfl: libc::sigaction = std::mem::zeroed();
        dfl.sa_sigaction = libc::SIG_DFL;
        for i in 0..a.nreset {
            libc::sigaction(*a.reset.add(i), &dfl, std::ptr::null_mut());
        }
        let mut none = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
        libc::sigemptyset(none.as_mut_ptr());
        libc::sigprocmask(libc::SIG_SETMASK, none.as_ptr(), std::ptr::null_mut());
        let mut err = libc::ENOENT;
        for i in 0..a.npaths {
            libc::execve(*a.paths.add(i), a.argv, a.envp);
            let e = *libc::__errno_location();
            match search_goes_on(e) {
                Search::Next => {}
                Search::NextRemembering => err = e,
                Search::Stop => {
                    err = e;
                    break;
                }
            }
        }
        a.err = err;
        libc::_exit(127)
    }
}

/// What a failed exec of one candidate means for the PATH search (ucspi-tcp's
/// `pathexec_run`): not there, try the next; there but not for us (permission, a
/// directory), try the next but report this if nothing runs; anything else (not an
/// executable format, busy, too long...) is the answer, so that a later directory's
/// program of the same name never runs in its place.
pub(crate) enum Search {
    Next,
    NextRemembering,
    Stop,
}

pub(crate) fn search_goes_on(errno: c_int) -> Search {
    match errno {
        libc::ENOENT => Search::Next,
        libc::EACCES | libc::EPERM | libc::EISDIR => Search::NextRemembering,
        _ => Search::Stop,
    }
}

/// `argv[0]` itself when it holds a slash, else `DIR/argv[0]` for each directory of
/// `path` (an empty one is `.`; no `PATH` at all is `/bin:/usr/bin`).
pub(crate) fn candidates(name: &[u8], path: Option<&[u8]>) -> Vec<CString> {
    if name.contains(&b'/') {
        return CString::new(name).ok().into_iter().collect();
    }
    path.unwrap_or(b"/bin:/usr/bin")
        .split(|&b| b == b':')
        .filter_map(|dir| {
            let mut full = if dir.is_empty() {
                b".".to_vec()
            } else {
                dir.to_vec()
            };
            full.push(b'/');
            full.extend_from_slice(name);
            CString::new(full).ok()
        })
        .collect()
}

/// The signals this process catches (a handler, not the default or ignored), and
/// SIGPIPE and SIGCHLD: those the child puts back to their defaults.
fn caught_signals() -> Vec<c_int> {
    let mut out = vec![libc::SIGPIPE, libc::SIGCHLD];
    for sig in 1..=libc::SIGRTMAX() {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP || out.contains(&sig) {
            continue;
        }
        let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
        // SAFETY: queries the disposition only (no new action).
        if unsafe { libc::sigaction(sig, std::ptr::null(), &mut old) } == 0
            && old.sa_sigaction != libc::SIG_DFL
            && old.sa_sigaction != libc::SIG_IGN
        {
            out.push(sig);
        }
    }
    out
}

/// Pointers to each string, then a null pointer.
fn nul_terminated(strings: &[CString]) -> Vec<*const c_char> {
    strings
        .iter()
        .map(|s| s.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    fn wait(pid: u32) -> i32 {
        let mut status = 0;
        // SAFETY: reaps our own child.
        unsafe { libc::waitpid(pid as i32, &mut status, 0) };
        status
    }

    /// Run `sh -c SCRIPT` on one end of a socket pair; what it wrote, and its status.
    fn run(script: &str, changes: &[(Vec<u8>, Option<Vec<u8>>)]) -> (String, i32) {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let mut l = Launcher::new(&os(&["sh", "-c", script])).unwrap();
        let pid = l.spawn(theirs.as_raw_fd(), changes).unwrap();
        drop(theirs);
        let mut out = String::new();
        (&ours).read_to_string(&mut out).unwrap();
        (out, wait(pid))
    }

    fn set(k: &str, v: &str) -> (Vec<u8>, Option<Vec<u8>>) {
        (k.as_bytes().to_vec(), Some(v.as_bytes().to_vec()))
    }

    #[test]
    fn the_connection_is_on_0_and_1_and_the_changes_apply() {
        let changes = vec![
            set("TCPREMOTEIP", "192.0.2.1"),
            set("RULEVAR", "first"),
            set("RULEVAR", "second"),
            (b"HOME".to_vec(), None),
        ];
        let (out, status) = run(
            "[ -S /proc/self/fd/0 ] && [ -S /proc/self/fd/1 ] && echo \"$TCPREMOTEIP $RULEVAR ${HOME-unset} ${PATH:+path}\"",
            &changes,
        );
        assert_eq!(status, 0, "{out}");
        assert_eq!(out, "192.0.2.1 second unset path\n");
    }

    #[test]
    fn signals_are_default_and_unblocked_in_the_program() {
        let (out, status) = run("grep -E '^Sig(Blk|Ign)' /proc/self/status", &[]);
        assert_eq!(status, 0, "{out}");
        let mask = |name: &str| {
            let line = out.lines().find(|l| l.starts_with(name)).unwrap();
            u64::from_str_radix(line.split_whitespace().nth(1).unwrap(), 16).unwrap()
        };
        assert_eq!(mask("SigBlk:"), 0);
        assert_eq!(
            mask("SigIgn:") & (1 << (libc::SIGPIPE - 1)),
            0,
            "SIGPIPE ignored"
        );
    }

    #[test]
    fn a_missing_program_is_an_error_and_leaves_no_child() {
        let (_ours, theirs) = UnixStream::pair().unwrap();
        for name in ["/nonexistent/prog", "no-such-program-anywhere"] {
            let mut l = Launcher::new(&os(&[name])).unwrap();
            let e = l.spawn(theirs.as_raw_fd(), &[]).unwrap_err();
            assert_eq!(e.raw_os_error(), Some(libc::ENOENT), "{name}");
        }
        let mut l = Launcher::new(&os(&["sh"])).unwrap();
        let e = l
            .spawn(theirs.as_raw_fd(), &[set("PATH", "/nonexistent")])
            .unwrap_err();
        assert_eq!(
            e.raw_os_error(),
            Some(libc::ENOENT),
            "a rule's PATH is searched"
        );
    }

    #[test]
    fn a_program_that_is_not_executable_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("plain");
        std::fs::write(&file, "not a program").unwrap();
        let (_ours, theirs) = UnixStream::pair().unwrap();
        let mut l = Launcher::new(&[file.into_os_string()]).unwrap();
        let e = l.spawn(theirs.as_raw_fd(), &[]).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EACCES));
    }

    #[test]
    fn the_search_stops_at_a_program_that_cannot_be_exec_ed() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("echo");
        std::fs::write(&bad, "neither ELF nor #!").unwrap();
        std::fs::set_permissions(&bad, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = format!("{}:/bin:/usr/bin", dir.path().display());
        let (_ours, theirs) = UnixStream::pair().unwrap();
        let mut l = Launcher::new(&os(&["echo", "wrong"])).unwrap();
        // a test thread forking at the moment of the write may hold the file open for a
        // while (ETXTBSY): that is not what this test is about
        let e = (0..50)
            .map(|_| {
                l.spawn(theirs.as_raw_fd(), &[set("PATH", &path)])
                    .unwrap_err()
            })
            .find(|e| e.raw_os_error() != Some(libc::ETXTBSY))
            .unwrap();
        assert_eq!(
            e.raw_os_error(),
            Some(libc::ENOEXEC),
            "/bin/echo ran instead"
        );
    }

    #[test]
    fn candidates_follow_path() {
        let c = |n: &str, p: Option<&str>| -> Vec<String> {
            candidates(n.as_bytes(), p.map(str::as_bytes))
                .into_iter()
                .map(|c| c.into_string().unwrap())
                .collect()
        };
        assert_eq!(c("./x", Some("/a")), ["./x"]);
        assert_eq!(c("x", Some("/a::/b")), ["/a/x", "./x", "/b/x"]);
        assert_eq!(c("x", None), ["/bin/x", "/usr/bin/x"]);
    }
}
