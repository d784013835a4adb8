//! A child that shares our memory until it execs: `clone(CLONE_VM | CLONE_VFORK)`, the
//! way glibc's `posix_spawn` starts a program, for the two places that must do more in
//! the child than posix_spawn can (tcpserver's direct way, `ucspi::spawn`; qmail-qfilter's
//! filters, `qfilter::spawn`). A fork would copy the page tables and then take
//! copy-on-write faults in both processes, only for the child to exec.
//!
//! This module owns the mechanics; the caller owns the child. [`clone_vfork`] blocks
//! every signal (glibc's two internal ones too, which its `sigfillset` leaves out), so
//! no handler of ours can run on the child's borrowed stack, clones, and restores the
//! caller's mask once the child has exec'ed or exited: the calling thread is suspended
//! until then. The child starts with every signal blocked and must set its own mask
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
    // stacks grow down on every Linux architecture we build for; 16-byte aligned top
    let top = (stack.as_mut_ptr_range().end as usize & !15) as *mut c_void;
    let before = set_mask(!0);
    // SAFETY: the caller's contract above; `top` is inside `stack`, which outlives the
    // child's use of it (we continue only once it has exec'ed or exited).
    let pid = unsafe {
        libc::clone(
            child,
            top,
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            arg,
        )
    };
    let clone_error = io::Error::last_os_error();
    set_mask(before);
    if pid < 0 { Err(clone_error) } else { Ok(pid) }
}

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
}
