//! Starting a filter the way glibc's posix_spawn starts a program: a child that shares
//! our memory ([`qsys::vfork`]: `clone` with `CLONE_VM | CLONE_VFORK`, we wait until it
//! has exec'ed)
//! instead of a fork, which copies the page tables and then takes copy-on-write faults
//! in both processes, only for the child to exec. posix_spawn itself cannot be used: the
//! child must also set resource limits and become the filter user.
//!
//! Everything the child needs (paths, argv, envp, descriptors, limits) is prepared
//! before; the child makes only system calls (no allocation, no lock), and the
//! credential calls are raw system calls: glibc's wrappers would try to change the ids
//! of every thread of the process whose memory the child shares. A failure before or at
//! exec is written to the shared [`Plan`] and the child exits 127; `spawn` reports it as
//! an error, as `std::process::Command::spawn` does.
//!
//! [`Plan::fork`] is the other way in, for a filter linked into qmail-qfilter
//! (qmail-scan): a real fork whose child makes the same set-up (session, descriptors,
//! working directory, limits, identity), then closes every other descriptor (a fork keeps
//! the close-on-exec ones), takes the filter's environment and name, and calls the
//! filter's code instead of exec'ing its program: one program start fewer. The child
//! holds nothing of qmail-qfilter's that the filter may not see (the message, the
//! envelope and the environment it is given anyway; no key, no other message), it is not
//! dumpable, and it has become the filter user before the filter's code reads a byte of
//! the message. doc/filter-chain.md has the whole argument.

use crate::run::Identity;
use std::ffi::{CString, OsString};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicI32, Ordering};

/// The descriptors a filter gets, in the order of [`Plan::new`]'s `fds`.
const TARGETS: [libc::c_int; 4] = [0, 1, 3, 6];

/// What the child does, prepared by the parent.
pub struct Plan {
    /// Where to look for the program, in order (one path when it has a slash).
    paths: Vec<CString>,
    /// The words of the command line (`argv` points into them).
    words: Vec<CString>,
    argv: Vec<*const libc::c_char>,
    _envp: Vec<CString>,
    envp: Vec<*const libc::c_char>,
    /// Descriptors (at 10 or above) to place on [`TARGETS`].
    fds: [libc::c_int; 4],
    rlimits: [(libc::__rlimit_resource_t, libc::rlim_t); 5],
    identity: Option<Identity>,
    /// Set by the child: the errno of what failed.
    error: AtomicI32,
}

fn cstring(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

impl Plan {
    /// `fds`: the message, the output, the envelope and the reason pipe, each at 10
    /// or above. `rlimits`: (resource, value) pairs, already capped at the hard limits.
    pub fn new(
        program: &OsString,
        args: &[OsString],
        env: &[(OsString, OsString)],
        fds: &[OwnedFd; 4],
        rlimits: [(libc::__rlimit_resource_t, libc::rlim_t); 5],
        identity: Option<Identity>,
    ) -> io::Result<Plan> {
        let name = program.as_bytes();
        let paths = if name.contains(&b'/') {
            vec![cstring(name)?]
        } else {
            let path = env
                .iter()
                .find(|(k, _)| k == "PATH")
                .map(|(_, v)| v.as_bytes())
                .unwrap_or(b"/usr/bin:/bin");
            let mut paths = Vec::new();
            for dir in path.split(|&b| b == b':').filter(|d| !d.is_empty()) {
                let mut p = dir.to_vec();
                p.push(b'/');
                p.extend_from_slice(name);
                paths.push(cstring(&p)?);
            }
            paths
        };
        let argv_owned = std::iter::once(program)
            .chain(args)
            .map(|a| cstring(a.as_bytes()))
            .collect::<io::Result<Vec<_>>>()?;
        let envp_owned = env
            .iter()
            .map(|(k, v)| {
                let mut kv = k.as_bytes().to_vec();
                kv.push(b'=');
                kv.extend_from_slice(v.as_bytes());
                cstring(&kv)
            })
            .collect::<io::Result<Vec<_>>>()?;
        let pointers = |v: &[CString]| {
            v.iter()
                .map(|c| c.as_ptr())
                .chain(std::iter::once(std::ptr::null()))
                .collect::<Vec<_>>()
        };
        Ok(Plan {
            paths,
            argv: pointers(&argv_owned),
            words: argv_owned,
            envp: pointers(&envp_owned),
            _envp: envp_owned,
            fds: [0, 1, 2, 3].map(|i| fds[i].as_raw_fd()),
            rlimits,
            identity,
            error: AtomicI32::new(0),
        })
    }

    /// Start the child; its pid once it has exec'ed the filter.
    pub fn spawn(&self) -> io::Result<libc::pid_t> {
        if self.paths.is_empty() {
            return Err(io::Error::from_raw_os_error(libc::ENOENT));
        }
        let mut stack = vec![0u8; 64 * 1024];
        // SAFETY: `child` makes system calls only (module doc) and reads only this
        // Plan, which stays unchanged until the clone returns.
        let pid = unsafe {
            qsys::vfork::clone_vfork(child, (self as *const Plan).cast_mut().cast(), &mut stack)?
        };
        drop(stack);
        match self.error.load(Ordering::SeqCst) {
            0 => Ok(pid),
            errno => {
                let _ = reap(pid);
                Err(io::Error::from_raw_os_error(errno))
            }
        }
    }
}

impl Plan {
    /// Start the child with a fork, and in it call `entry` as the filter instead of
    /// exec'ing the program (module doc); `entry` ends the process (it exits), and the
    /// child exits 0 if it returns. A child whose set-up fails says so on descriptor 2
    /// and kills itself: the chain sees a signal, a temporary failure, as for a crash.
    ///
    /// The caller must be single-threaded: the child runs ordinary code (it allocates).
    pub fn fork(&self, entry: &dyn Fn()) -> io::Result<libc::pid_t> {
        // SAFETY: a plain fork of a single-threaded process (the caller's promise).
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(io::Error::last_os_error());
        }
        if pid > 0 {
            return Ok(pid);
        }
        // Not dumpable: no other process of the filter user (another filter) may ptrace
        // it or read its memory, which is a copy of qmail-qfilter's (doc/filter-chain.md).
        // SAFETY: we are the child: its own state only.
        unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0) };
        // SAFETY: we are the child: its own state only.
        let errno = match unsafe { set_up(self) } {
            0 => close_all_but_targets(),
            errno => errno,
        };
        if errno != 0 {
            let e = io::Error::from_raw_os_error(errno);
            let name = self.words.first().map(|a| a.to_string_lossy().into_owned());
            qsys::die::warn(
                "qmail-qfilter",
                "warning",
                &format!(
                    "unable to set up {}: {}",
                    name.unwrap_or_default(),
                    qsys::die::errstr(&e)
                ),
            );
            // SAFETY: ending this child at once, by a signal (the doc above).
            unsafe {
                libc::kill(libc::getpid(), libc::SIGKILL);
                libc::_exit(127)
            }
        }
        // SAFETY: the child is single-threaded; the pointers live in its copy of `self`,
        // which it never drops (it exits below or in `entry`).
        unsafe {
            // handlers back to the default, as an exec would (std's for SIGSEGV among them)
            for sig in 1..=libc::SIGRTMAX() {
                let mut old: libc::sigaction = std::mem::zeroed();
                if libc::sigaction(sig, std::ptr::null(), &mut old) == 0
                    && old.sa_sigaction != libc::SIG_DFL
                    && old.sa_sigaction != libc::SIG_IGN
                {
                    libc::signal(sig, libc::SIG_DFL);
                }
            }
            default_signals();
            environ = self.envp.as_ptr();
            if let Some(argv0) = self.words.first() {
                let base = argv0
                    .as_bytes()
                    .rsplit(|&b| b == b'/')
                    .next()
                    .unwrap_or(b"");
                if let Ok(name) = CString::new(&base[..base.len().min(15)]) {
                    libc::prctl(libc::PR_SET_NAME, name.as_ptr());
                }
            }
        }
        qsys::start::init();
        entry();
        std::process::exit(0)
    }
}

unsafe extern "C" {
    /// The C library's environment, which `std::env` reads.
    static mut environ: *const *const libc::c_char;
}

/// Close every descriptor of the forked child but 0-2 and [`TARGETS`] (0, 1, 3, 6): a
/// fork keeps the close-on-exec ones (the sources of the targets among them), an exec
/// would not.
fn close_all_but_targets() -> libc::c_int {
    // SAFETY: the child owns no File or OwnedFd it uses again at 4, 5 or from 7 on
    // (the plan's sources are raw numbers, now copied to the targets).
    let closed = unsafe {
        libc::close(4);
        libc::close(5);
        qsys::fds::close_from(7)
    };
    if closed { 0 } else { libc::EBADF }
}

/// Wait for `pid` and take its wait status.
pub fn reap(pid: libc::pid_t) -> io::Result<libc::c_int> {
    let mut status = 0;
    loop {
        // SAFETY: waitpid on our own child with a valid status pointer.
        if unsafe { libc::waitpid(pid, &mut status, 0) } >= 0 {
            return Ok(status);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// The child: set up, exec; on failure record errno and exit 127.
extern "C" fn child(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the parent's Plan, alive and unchanged until we exec or exit.
    let plan = unsafe { &*(arg as *const Plan) };
    // SAFETY: system calls only, on this process (module doc).
    let errno = unsafe { set_up_and_exec(plan) };
    plan.error.store(errno.max(1), Ordering::SeqCst);
    // SAFETY: leaving without running anything of the parent's (no atexit, no flush).
    unsafe { libc::_exit(127) }
}

fn last_errno() -> libc::c_int {
    io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

/// [`set_up`], default signals, exec. Returns the errno of what failed.
///
/// # Safety
/// Only in the child of [`Plan::spawn`].
unsafe fn set_up_and_exec(plan: &Plan) -> libc::c_int {
    // SAFETY: system calls on this process's own state.
    unsafe {
        let errno = set_up(plan);
        if errno != 0 {
            return errno;
        }
        default_signals();
        let mut errno = libc::ENOENT;
        for path in &plan.paths {
            libc::execve(path.as_ptr(), plan.argv.as_ptr(), plan.envp.as_ptr());
            errno = last_errno();
            if errno != libc::ENOENT && errno != libc::ENOTDIR {
                break;
            }
        }
        errno
    }
}

/// SIGPIPE and SIGCHLD to their default (qmail-qfilter ignores SIGPIPE, and an ignored
/// signal stays ignored across exec) and no signal blocked: what a filter starts with.
/// Raw system calls only (the vfork child shares our memory).
fn default_signals() {
    // SAFETY: dispositions and the mask of this process only.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        libc::signal(libc::SIGCHLD, libc::SIG_DFL);
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
    }
}

/// Own session and process group, descriptors, working directory, limits, identity:
/// what the filter's process is before its code runs. Returns 0 or the errno of what
/// failed.
///
/// # Safety
/// Only in the child of [`Plan::spawn`] or [`Plan::fork`].
unsafe fn set_up(plan: &Plan) -> libc::c_int {
    // SAFETY: system calls on this process's own state.
    unsafe {
        if libc::setsid() < 0 {
            return last_errno();
        }
        for (fd, target) in plan.fds.iter().zip(TARGETS) {
            // dup2 clears close-on-exec on the target; the sources (>= 10) stay closed
            if libc::dup2(*fd, target) < 0 {
                return last_errno();
            }
        }
        if libc::chdir(c"/".as_ptr()) < 0 {
            return last_errno();
        }
        for (resource, value) in plan.rlimits {
            let l = libc::rlimit {
                rlim_cur: value,
                rlim_max: value,
            };
            if libc::setrlimit(resource, &l) < 0 {
                return last_errno();
            }
        }
        if let Some(id) = plan.identity
            && !become_identity(id)
        {
            return libc::EPERM;
        }
        0
    }
}

/// Become `id` for good, with exactly its group. A process whose real or effective uid
/// is root (root ran qmail-qfilter) first takes back root to clear its groups; otherwise
/// the set-user-id (and set-group-id) bits gave us the filter user's uid (and group) as
/// effective ids, and real and saved ids follow them. The result is checked: a filter
/// never runs with a way back to the caller's ids. Raw system calls (module doc).
///
/// # Safety
/// Only in the child of [`Plan::spawn`].
unsafe fn become_identity(id: Identity) -> bool {
    let (uid, gid) = (id.uid as libc::c_long, id.gid as libc::c_long);
    let keep = -1 as libc::c_long;
    // SAFETY: plain system calls on this process's credentials.
    unsafe {
        let call = |n: libc::c_long, a: libc::c_long, b: libc::c_long, c: libc::c_long| {
            libc::syscall(n, a, b, c) >= 0
        };
        if (libc::getuid() == 0 || libc::geteuid() == 0)
            && !(call(libc::SYS_setresuid, keep, 0, keep)
                && libc::syscall(libc::SYS_setgroups, 1 as libc::c_long, &id.gid) >= 0)
        {
            return false;
        }
        if !call(libc::SYS_setresgid, gid, gid, gid) || !call(libc::SYS_setresuid, uid, uid, uid) {
            return false;
        }
        let (mut r, mut e, mut s): (libc::uid_t, libc::uid_t, libc::uid_t) = (0, 0, 0);
        let ids = |n, r: &mut u32, e: &mut u32, s: &mut u32| {
            libc::syscall(n, r as *mut u32, e as *mut u32, s as *mut u32) >= 0
        };
        ids(libc::SYS_getresuid, &mut r, &mut e, &mut s)
            && [r, e, s] == [id.uid; 3]
            && ids(libc::SYS_getresgid, &mut r, &mut e, &mut s)
            && [r, e, s] == [id.gid; 3]
    }
}
