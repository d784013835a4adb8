//! A child that shares our memory until it execs, in two forms, for the places that
//! must do more in the child than posix_spawn can (tcpserver's direct way,
//! `ucspi::spawn`; qmail-qfilter's filters, `qfilter::spawn`). A fork would copy the
//! page tables and then take copy-on-write faults in both processes, only for the
//! child to exec.
//!
//! - [`clone_vfork`]: `clone(CLONE_VM | CLONE_VFORK)`, the way glibc's `posix_spawn`
//!   starts a program: the calling thread is suspended until the child has exec'ed or
//!   exited, so the child may use glibc's wrappers and the caller's memory is its own
//!   again when the call returns.
//! - [`clone_beside`]: `clone(CLONE_VM)` alone: the call returns at once and the child
//!   runs beside us until it execs. A server that starts a program per connection
//!   accepts the next connection meanwhile instead of waiting for each exec. The price
//!   is on the child: it shares our thread's errno (thread-local storage is found
//!   through the thread pointer, which the clone keeps), so it may make only the errno-free
//!   system calls of [`raw`], and the caller keeps what the child reads unchanged until
//!   it has reaped the child.
//!
//! This module owns the mechanics; the caller owns the child. Both block every signal
//! (glibc's two internal ones too, which its `sigfillset` leaves out) across the clone,
//! so no handler of ours can run on the child's stack, and restore the caller's mask
//! after it. The child starts with every signal blocked and must set its own mask
//! before it execs.

use std::ffi::{c_int, c_void};
use std::io;

/// The kernel's signal set: 64 signals, 8 bytes on every Linux architecture we build for.
type KernelSigset = u64;

/// Set this thread's signal mask to `set` with the system call itself; the old mask.
fn set_mask(set: KernelSigset) -> KernelSigset {
    let mut old: KernelSigset = 0;
    // SAFETY: rt_sigprocmask reads `set` and writes `old`, both the kernel's 8 bytes.
    unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            &set as *const KernelSigset,
            &mut old as *mut KernelSigset,
            std::mem::size_of::<KernelSigset>(),
        );
    }
    old
}

/// Run `child(arg)` in a new process that shares our memory, on `stack`, and return
/// its pid once it has exec'ed or exited (CLONE_VFORK); SIGCHLD tells its end.
///
/// # Safety
/// `child` must make only async-signal-safe calls and no allocation, must not return
/// (it execs or `_exit`s), and may read only what `arg` points to, which must stay
/// valid and unchanged until this returns; with more than one thread, no other thread
/// may touch that memory meanwhile. Raw system calls for credentials: glibc's wrappers
/// would change the ids of every thread of the process whose memory the child shares.
pub unsafe fn clone_vfork(
    child: extern "C" fn(*mut c_void) -> c_int,
    arg: *mut c_void,
    stack: &mut [u8],
) -> io::Result<libc::pid_t> {
    // SAFETY: the caller's contract above; we continue only once the child has
    // exec'ed or exited, so `stack` outlives its use.
    unsafe { clone_with(libc::CLONE_VM | libc::CLONE_VFORK, child, arg, stack) }
}

/// Run `child(arg)` in a new process that shares our memory, on `stack`, and return
/// its pid at once: the child runs beside us until it execs or exits; SIGCHLD tells its
/// end.
///
/// # Safety
/// `child` must make no call but the system calls of [`raw`] (no glibc function: they
/// write errno, which is ours), allocate nothing, touch no thread-local and not return
/// (it execs or [`raw::exit`]s). It may read only what `arg` points to and write only
/// `stack` and what `arg` points to; all of it must stay valid, and unchanged by us,
/// until the child has been reaped: without waiting we cannot know when it has exec'ed.
pub unsafe fn clone_beside(
    child: extern "C" fn(*mut c_void) -> c_int,
    arg: *mut c_void,
    stack: &mut [u8],
) -> io::Result<libc::pid_t> {
    // SAFETY: the caller's contract above.
    unsafe { clone_with(libc::CLONE_VM, child, arg, stack) }
}

/// The clone itself, with every signal blocked across it. glibc's `clone` runs `child`
/// without touching thread-local storage in the new process since glibc 2.25 (before,
/// it reset the pid cached in the caller's thread when `CLONE_VM` was set); Debian 12
/// has 2.36.
///
/// # Safety
/// That of [`clone_vfork`] or [`clone_beside`], for `flags`.
unsafe fn clone_with(
    flags: c_int,
    child: extern "C" fn(*mut c_void) -> c_int,
    arg: *mut c_void,
    stack: &mut [u8],
) -> io::Result<libc::pid_t> {
    // stacks grow down on every Linux architecture we build for; 16-byte aligned top
    let top = (stack.as_mut_ptr_range().end as usize & !15) as *mut c_void;
    let before = set_mask(!0);
    // SAFETY: the caller's contract; `top` is inside `stack`.
    let pid = unsafe { libc::clone(child, top, flags | libc::SIGCHLD, arg) };
    let clone_error = io::Error::last_os_error();
    set_mask(before);
    if pid < 0 { Err(clone_error) } else { Ok(pid) }
}

/// System calls that leave errno alone, for a child of [`clone_beside`]: it shares our
/// thread's errno, and glibc's wrappers (`libc::syscall` too) write it on failure, under
/// a parent that runs on meanwhile. Each is the instruction itself; a failure is
/// returned as the errno value, as the kernel gives it.
pub mod raw {
    use std::ffi::{c_char, c_int, c_long};

    /// A system call with up to four arguments; the kernel's return value (a negated
    /// errno on failure).
    ///
    /// # Safety
    /// As the system call `nr` with those arguments.
    #[cfg(target_arch = "x86_64")]
    unsafe fn syscall4(nr: c_long, a: [usize; 4]) -> isize {
        let ret: isize;
        // SAFETY: the caller's; the x86-64 Linux convention (rcx and r11 clobbered).
        unsafe {
            std::arch::asm!(
                "syscall",
                inlateout("rax") nr as isize => ret,
                in("rdi") a[0],
                in("rsi") a[1],
                in("rdx") a[2],
                in("r10") a[3],
                lateout("rcx") _,
                lateout("r11") _,
                options(nostack),
            );
        }
        ret
    }

    /// See the x86-64 one.
    ///
    /// # Safety
    /// As the system call `nr` with those arguments.
    #[cfg(target_arch = "aarch64")]
    unsafe fn syscall4(nr: c_long, a: [usize; 4]) -> isize {
        let ret: isize;
        // SAFETY: the caller's; the AArch64 Linux convention (number in x8).
        unsafe {
            std::arch::asm!(
                "svc 0",
                in("x8") nr,
                inlateout("x0") a[0] as isize => ret,
                in("x1") a[1],
                in("x2") a[2],
                in("x3") a[3],
                options(nostack),
            );
        }
        ret
    }

    /// 0, or the errno.
    fn errno_of(ret: isize) -> c_int {
        if ret < 0 { (-ret) as c_int } else { 0 }
    }

    /// `dup3(from, to, 0)`: 0 or the errno (EINVAL when they are the same descriptor).
    ///
    /// # Safety
    /// Replaces whatever `to` was.
    pub unsafe fn dup_to(from: c_int, to: c_int) -> c_int {
        // SAFETY: the caller's.
        errno_of(unsafe { syscall4(libc::SYS_dup3, [from as usize, to as usize, 0, 0]) })
    }

    /// Clear close-on-exec on `fd`: 0 or the errno.
    ///
    /// # Safety
    /// `fd` may be any number.
    pub unsafe fn keep_on_exec(fd: c_int) -> c_int {
        // SAFETY: F_SETFD with flags 0 changes only that descriptor's flag.
        errno_of(unsafe { syscall4(libc::SYS_fcntl, [fd as usize, libc::F_SETFD as usize, 0, 0]) })
    }

    /// Put `sig` back to its default action.
    ///
    /// # Safety
    /// Changes this process's disposition of `sig`.
    pub unsafe fn default_action(sig: c_int) {
        // the kernel's struct sigaction, all zero: SIG_DFL, no flags, empty mask (32
        // bytes on x86-64 and AArch64: handler, flags, restorer, mask)
        let dfl = [0usize; 4];
        // SAFETY: the kernel reads `dfl` only; no old action is asked for.
        unsafe {
            syscall4(
                libc::SYS_rt_sigaction,
                [sig as usize, dfl.as_ptr() as usize, 0, 8],
            );
        }
    }

    /// Unblock every signal.
    ///
    /// # Safety
    /// Any pending signal is delivered on return.
    pub unsafe fn unblock_all() {
        let none: u64 = 0;
        // SAFETY: the kernel reads the 8 bytes of `none` only.
        unsafe {
            syscall4(
                libc::SYS_rt_sigprocmask,
                [
                    libc::SIG_SETMASK as usize,
                    &none as *const u64 as usize,
                    0,
                    8,
                ],
            );
        }
    }

    /// `execve`; returns only when it failed, with the errno.
    ///
    /// # Safety
    /// `path` is a C string, `argv` and `envp` null-terminated arrays of C strings.
    pub unsafe fn execve(
        path: *const c_char,
        argv: *const *const c_char,
        envp: *const *const c_char,
    ) -> c_int {
        // SAFETY: the caller's.
        errno_of(unsafe {
            syscall4(
                libc::SYS_execve,
                [path as usize, argv as usize, envp as usize, 0],
            )
        })
    }

    /// End this process with `code`.
    pub fn exit(code: c_int) -> ! {
        loop {
            // SAFETY: exit_group takes no memory and does not return.
            unsafe { syscall4(libc::SYS_exit_group, [code as usize, 0, 0, 0]) };
        }
    }
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
compile_error!("qsys::vfork::raw has system calls for x86-64 and AArch64 only");

#[cfg(test)]
mod tests {
    use super::*;

    extern "C" fn exit_with_arg(arg: *mut c_void) -> c_int {
        // SAFETY: `arg` points to the parent's i32, alive while it waits.
        unsafe {
            let code = *arg.cast::<i32>();
            libc::_exit(code)
        }
    }

    #[test]
    fn the_child_runs_and_our_mask_is_restored() {
        let before = set_mask(0);
        set_mask(before);
        let mut stack = vec![0u8; 16 * 1024];
        let mut code: i32 = 7;
        // SAFETY: the child only reads `code` and _exits.
        let pid = unsafe {
            clone_vfork(exit_with_arg, (&mut code as *mut i32).cast(), &mut stack).unwrap()
        };
        let mut status = 0;
        // SAFETY: reaps our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(libc::WIFEXITED(status));
        assert_eq!(libc::WEXITSTATUS(status), 7);
        let after = set_mask(0);
        set_mask(after);
        assert_eq!(after, before);
    }

    /// What a [`clone_beside`] child is given: a path to exec and where to say why not.
    struct Attempt {
        path: *const std::ffi::c_char,
        err: std::sync::atomic::AtomicI32,
    }

    extern "C" fn exec_and_report(arg: *mut c_void) -> c_int {
        // SAFETY: `arg` is the parent's Attempt, kept until the child is reaped.
        let a = unsafe { &*arg.cast::<Attempt>() };
        let argv = [a.path, std::ptr::null()];
        let mut err = 0;
        for _ in 0..3 {
            // SAFETY: a C string and null-terminated arrays.
            err = unsafe { raw::execve(a.path, argv.as_ptr(), [std::ptr::null()].as_ptr()) };
        }
        a.err.store(err, std::sync::atomic::Ordering::Relaxed);
        raw::exit(111)
    }

    #[test]
    fn a_child_beside_us_leaves_our_errno_alone() {
        let path = c"/nonexistent/program";
        let mut attempt = Attempt {
            path: path.as_ptr(),
            err: 0.into(),
        };
        let mut stack = vec![0u8; 16 * 1024];
        // SAFETY: our own thread's errno (neither the clone nor a successful waitpid
        // writes it).
        unsafe { *libc::__errno_location() = 4242 };
        // SAFETY: the child makes raw system calls only and touches `attempt` and
        // `stack`, both kept until it is reaped below.
        let pid = unsafe {
            clone_beside(
                exec_and_report,
                (&mut attempt as *mut Attempt).cast(),
                &mut stack,
            )
            .unwrap()
        };
        let mut status = 0;
        // SAFETY: reaps our own child.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        // SAFETY: as above.
        assert_eq!(
            unsafe { *libc::__errno_location() },
            4242,
            "the child wrote our errno"
        );
        assert!(libc::WIFEXITED(status));
        assert_eq!(libc::WEXITSTATUS(status), 111);
        assert_eq!(
            attempt.err.load(std::sync::atomic::Ordering::Relaxed),
            libc::ENOENT
        );
    }
}
