//! Starting a connection's program on tcpserver's direct way ([`crate::server`]): a
//! clone that shares tcpserver's memory and runs beside it until it execs
//! ([`qsys::vfork::clone_beside`]), doing in the child exactly what ucspi-tcp's forked
//! child does before its exec (the connection on descriptors 0 and 1, the changed
//! environment, SIGPIPE back to its default, an empty signal mask), and nothing else.
//!
//! Why not `posix_spawn`: glibc's child resets every one of the 64 signals (two
//! `rt_sigaction` calls each, 130 system calls per connection), and its parent maps and
//! unmaps a fresh stack and reads `RLIMIT_NOFILE` four times, where tcpserver knows at
//! start which signals it catches; std's `Command` on top rebuilds the whole environment
//! in a map for every spawn. Why not `fork`: the child would copy tcpserver's page tables
//! and take copy-on-write faults, and the exec would tear that copy down again. Why not
//! a vfork (`CLONE_VFORK`), as posix_spawn does: tcpserver would be suspended until the
//! exec has loaded the program, and accept nothing meanwhile; under a load of short
//! connections that wait was a tenth of the machine's time left idle (bench/README.md,
//! session 10).
//!
//! How it stays sound: everything the child reads is built by the parent before the
//! clone ([`Launcher::spawn`]): the argument and environment arrays and the candidate
//! paths, in a [`Slot`] of its own that tcpserver neither changes nor frees until it
//! has reaped that child ([`Launcher::reaped`]), since it cannot know when the exec
//! happened. The child allocates nothing, takes no lock, and makes only errno-free
//! system calls ([`qsys::vfork::raw`]): it shares tcpserver's errno, which glibc's
//! wrappers would write under tcpserver's feet. Every signal is blocked across the
//! clone, so none of tcpserver's handlers can run on the child's stack; the child puts
//! the signals tcpserver catches back to their defaults (its own copy of the
//! dispositions: no `CLONE_SIGHAND`) before it unblocks them; which signals those are
//! is read once, in [`Launcher::new`] (tcpserver installs no handler after its start).
//! A failed exec leaves its errno in the slot and the child exits 111, as ucspi-tcp's
//! child does; tcpserver learns why when it reaps the child.

use qsys::vfork::raw;
use std::collections::HashMap;
use std::ffi::{CString, OsString, c_char, c_int, c_void};
use std::io;
use std::os::fd::RawFd;
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicI32, Ordering};

/// A child's stack: its own code and a few system calls; 16 KiB is ample.
const STACK_SIZE: usize = 16 * 1024;

/// The exit code of a child whose program could not be run (ucspi-tcp's).
pub const UNABLE_TO_RUN: c_int = 111;

/// A program to start for each connection, with what can be prepared once.
pub struct Launcher {
    /// The program and its arguments (`argv_ptrs` points into them).
    argv: Vec<CString>,
    /// argv as the null-terminated pointer array execve takes (the strings' bytes stay
    /// where they are when the Launcher moves).
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
    /// Every slot made so far.
    slots: Vec<Slot>,
    /// The slots of children not reaped yet, by pid.
    busy: HashMap<libc::pid_t, usize>,
    /// The slots free for the next child.
    free: Vec<usize>,
}

/// What one child reads and writes, owned by the parent, untouched from the clone
/// until the child is reaped. Every part is on the heap, so that it stays where the
/// child reads it when [`Launcher::slots`] grows and moves the slot.
struct Slot {
    stack: Vec<u8>,
    /// The changed variables, `NAME=VALUE` (`envp` points into them and into
    /// [`Launcher::base`]).
    env: Vec<CString>,
    envp: Vec<*const c_char>,
    /// The candidates of a rule's own PATH, when it sets one.
    paths: Vec<CString>,
    path_ptrs: Vec<*const c_char>,
    args: Box<ChildArgs>,
}

/// What the child is given: pointers into its slot and into the Launcher.
struct ChildArgs {
    conn: c_int,
    argv: *const *const c_char,
    envp: *const *const c_char,
    paths: *const *const c_char,
    npaths: usize,
    reset: *const c_int,
    nreset: usize,
    /// The child's errno when no exec succeeded; 0 otherwise.
    err: AtomicI32,
}

impl Launcher {
    /// Prepare `program` (its name, then its arguments) with the environment tcpserver
    /// runs in; `None` when an argument holds a NUL byte.
    pub fn new(program: &[OsString]) -> Option<Launcher> {
        let argv: Vec<CString> = program
            .iter()
            .map(|a| CString::new(a.as_bytes()).ok())
            .collect::<Option<_>>()?;
        let name = argv.first()?.as_bytes();
        let base: Vec<(CString, usize)> = std::env::vars_os()
            .filter_map(|(k, v)| {
                let mut kv = k.as_bytes().to_vec();
                kv.push(b'=');
                kv.extend_from_slice(v.as_bytes());
                CString::new(kv).ok().map(|c| (c, k.len()))
            })
            .collect();
        let path_var = std::env::var_os("PATH").map(|p| p.as_bytes().to_vec());
        let paths = candidates(name, path_var.as_deref());
        Some(Launcher {
            argv_ptrs: nul_terminated(&argv),
            argv,
            base,
            path_ptrs: nul_terminated(&paths),
            _paths: paths,
            reset: caught_signals(),
            slots: Vec::new(),
            busy: HashMap::new(),
            free: Vec::new(),
        })
    }

    /// Start the program with `conn` on descriptors 0 and 1 and the environment changed
    /// by `changes` (later changes win; `None` removes); its pid, or why no process
    /// could be made. Whether the program itself ran, [`Launcher::reaped`] tells.
    pub fn spawn(
        &mut self,
        conn: RawFd,
        changes: &[(Vec<u8>, Option<Vec<u8>>)],
    ) -> io::Result<u32> {
        let index = match self.free.pop() {
            Some(i) => i,
            None => {
                self.slots.push(Slot::new());
                self.slots.len() - 1
            }
        };
        let slot = &mut self.slots[index];
        slot.env = environment(changes);
        slot.envp.clear();
        slot.envp.extend(slot.env.iter().map(|e| e.as_ptr()));
        slot.envp.extend(kept(&self.base, changes));
        slot.envp.push(std::ptr::null());
        // a rule may set PATH: then the search follows the program's own PATH
        let paths = match changes.iter().rev().find(|(k, _)| k == b"PATH") {
            Some((_, v)) => {
                slot.paths = candidates(self.argv[0].as_bytes(), v.as_deref());
                slot.path_ptrs = nul_terminated(&slot.paths);
                &slot.path_ptrs
            }
            None => &self.path_ptrs,
        };
        *slot.args = ChildArgs {
            conn,
            argv: self.argv_ptrs.as_ptr(),
            envp: slot.envp.as_ptr(),
            paths: paths.as_ptr(),
            npaths: paths.len() - 1,
            reset: self.reset.as_ptr(),
            nreset: self.reset.len(),
            err: AtomicI32::new(0),
        };
        // SAFETY: `child` keeps to the rules of the module doc and reads only `args`
        // and what it points to: this slot, which stays untouched until the child is
        // reaped (it is off the free list until then, and Drop leaks it if need be),
        // and the Launcher's arrays, which never change after `new`.
        let cloned = unsafe {
            qsys::vfork::clone_beside(
                child,
                (&mut *slot.args as *mut ChildArgs).cast::<c_void>(),
                &mut slot.stack,
            )
        };
        match cloned {
            Ok(pid) => {
                self.busy.insert(pid, index);
                Ok(pid as u32)
            }
            Err(e) => {
                self.free.push(index);
                Err(e)
            }
        }
    }

    /// Tell the Launcher that `pid` has been reaped: its slot is free again. The exec's
    /// error when the program could not be run; `None` when it ran, or when `pid` is
    /// not one of ours.
    pub fn reaped(&mut self, pid: u32) -> Option<io::Error> {
        let index = self.busy.remove(&(pid as libc::pid_t))?;
        self.free.push(index);
        match self.slots[index].args.err.load(Ordering::Relaxed) {
            0 => None,
            e => Some(io::Error::from_raw_os_error(e)),
        }
    }
}

impl Drop for Launcher {
    /// A child not reaped yet may still be reading its slot and the arrays it points
    /// into: then all of it is leaked (tcpserver drops its Launcher only as it ends).
    fn drop(&mut self) {
        if self.busy.is_empty() {
            return;
        }
        std::mem::forget(std::mem::take(&mut self.slots));
        std::mem::forget(std::mem::take(&mut self.argv));
        std::mem::forget(std::mem::take(&mut self.argv_ptrs));
        std::mem::forget(std::mem::take(&mut self.base));
        std::mem::forget(std::mem::take(&mut self._paths));
        std::mem::forget(std::mem::take(&mut self.path_ptrs));
        std::mem::forget(std::mem::take(&mut self.reset));
    }
}

impl Slot {
    fn new() -> Slot {
        Slot {
            stack: vec![0u8; STACK_SIZE],
            env: Vec::new(),
            envp: Vec::new(),
            paths: Vec::new(),
            path_ptrs: Vec::new(),
            args: Box::new(ChildArgs {
                conn: -1,
                argv: std::ptr::null(),
                envp: std::ptr::null(),
                paths: std::ptr::null(),
                npaths: 0,
                reset: std::ptr::null(),
                nreset: 0,
                err: AtomicI32::new(0),
            }),
        }
    }
}

/// The changed variables, `NAME=VALUE`, last change of a name only.
fn environment(changes: &[(Vec<u8>, Option<Vec<u8>>)]) -> Vec<CString> {
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
    base: &'a [(CString, usize)],
    changes: &'a [(Vec<u8>, Option<Vec<u8>>)],
) -> impl Iterator<Item = *const c_char> + 'a {
    base.iter()
        .filter(move |(kv, len)| {
            let name = &kv.as_bytes()[..*len];
            !changes.iter().any(|(k, _)| k == name)
        })
        .map(|(kv, _)| kv.as_ptr())
}

/// The child (module doc): the connection on 0 and 1, caught signals to their
/// defaults, every signal unblocked, then each candidate path until one execs.
extern "C" fn child(arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the ChildArgs of this child's slot, untouched until it is
    // reaped; every pointer in it was built for this call. Raw system calls only.
    unsafe {
        let a = &*arg.cast::<ChildArgs>();
        for target in [0, 1] {
            let e = if a.conn == target {
                raw::keep_on_exec(target)
            } else {
                raw::dup_to(a.conn, target)
            };
            if e != 0 {
                a.err.store(e, Ordering::Relaxed);
                raw::exit(UNABLE_TO_RUN);
            }
        }
        for i in 0..a.nreset {
            raw::default_action(*a.reset.add(i));
        }
        raw::unblock_all();
        let mut err = libc::ENOENT;
        for i in 0..a.npaths {
            let e = raw::execve(*a.paths.add(i), a.argv, a.envp);
            match search_goes_on(e) {
                Search::Next => {}
                Search::NextRemembering => err = e,
                Search::Stop => {
                    err = e;
                    break;
                }
            }
        }
        a.err.store(err, Ordering::Relaxed);
        raw::exit(UNABLE_TO_RUN)
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
/// SIGPIPE and SIGCHLD: those the child puts back to their defaults. (SIGTERM, which
/// ucspi-tcp's child also puts back, tcpserver resets for all its ways at its start.)
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
        run_with(
            &mut Launcher::new(&os(&["sh", "-c", script])).unwrap(),
            changes,
        )
    }

    /// Run `l`'s program on one end of a socket pair, its stdin closed; what it wrote,
    /// and its status.
    fn run_with(l: &mut Launcher, changes: &[(Vec<u8>, Option<Vec<u8>>)]) -> (String, i32) {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let pid = l.spawn(theirs.as_raw_fd(), changes).unwrap();
        drop(theirs);
        ours.shutdown(std::net::Shutdown::Write).unwrap();
        let mut out = String::new();
        (&ours).read_to_string(&mut out).unwrap();
        let status = wait(pid);
        assert!(l.reaped(pid).is_none(), "the program ran");
        (out, status)
    }

    /// Start `l`'s program on `fd` and wait for it: the exec's errno (`None` when the
    /// program ran) and the wait status.
    fn outcome(
        l: &mut Launcher,
        fd: RawFd,
        changes: &[(Vec<u8>, Option<Vec<u8>>)],
    ) -> (Option<i32>, i32) {
        let pid = l.spawn(fd, changes).unwrap();
        let status = wait(pid);
        (l.reaped(pid).and_then(|e| e.raw_os_error()), status)
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
    fn a_missing_program_ends_its_child_and_the_reason_is_kept() {
        let (_ours, theirs) = UnixStream::pair().unwrap();
        for name in ["/nonexistent/prog", "no-such-program-anywhere"] {
            let mut l = Launcher::new(&os(&[name])).unwrap();
            let (err, status) = outcome(&mut l, theirs.as_raw_fd(), &[]);
            assert_eq!(err, Some(libc::ENOENT), "{name}");
            assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == UNABLE_TO_RUN);
        }
        let mut l = Launcher::new(&os(&["sh"])).unwrap();
        let (err, _) = outcome(&mut l, theirs.as_raw_fd(), &[set("PATH", "/nonexistent")]);
        assert_eq!(err, Some(libc::ENOENT), "a rule's PATH is searched");
    }

    #[test]
    fn a_program_that_is_not_executable_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("plain");
        std::fs::write(&file, "not a program").unwrap();
        let (_ours, theirs) = UnixStream::pair().unwrap();
        let mut l = Launcher::new(&[file.into_os_string()]).unwrap();
        let (err, _) = outcome(&mut l, theirs.as_raw_fd(), &[]);
        assert_eq!(err, Some(libc::EACCES));
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
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let err = loop {
            let e = outcome(&mut l, theirs.as_raw_fd(), &[set("PATH", &path)]).0;
            if e != Some(libc::ETXTBSY) || std::time::Instant::now() > deadline {
                break e;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        assert_eq!(err, Some(libc::ENOEXEC), "/bin/echo ran instead");
    }

    #[test]
    fn children_run_side_by_side_and_their_slots_are_reused_once_reaped() {
        let mut l = Launcher::new(&os(&["sh", "-c", "read x; echo \"$N $x\""])).unwrap();
        let mut running = Vec::new();
        for i in 0..4 {
            let (ours, theirs) = UnixStream::pair().unwrap();
            let pid = l
                .spawn(theirs.as_raw_fd(), &[set("N", &i.to_string())])
                .unwrap();
            running.push((ours, pid));
        }
        assert_eq!(l.slots.len(), 4);
        for (i, (ours, pid)) in running.iter_mut().enumerate() {
            use std::io::Write;
            writeln!(ours, "hello").unwrap();
            let mut line = [0u8; 64];
            let n = ours.read(&mut line).unwrap();
            assert_eq!(&line[..n], format!("{i} hello\n").as_bytes());
            assert_eq!(wait(*pid), 0);
            assert!(l.reaped(*pid).is_none());
        }
        assert!(l.reaped(1).is_none(), "not one of ours");
        let (out, status) = run_with(&mut l, &[set("N", "again")]);
        assert_eq!((out.as_str(), status), ("again \n", 0));
        assert_eq!(l.slots.len(), 4, "a free slot was taken");
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
