//! A lighter process start for the programs started per message (issue 13;
//! bench/README.md, "Process start").
//!
//! Rust's own start (`lang_start`) reads `/proc/self/maps` through `pthread_getattr_np`
//! to place a guard for the main thread's stack and maps an alternate signal stack for
//! its stack-overflow message: half of the instructions a static program runs before
//! its `main`. [`lean_main!`] replaces it with a C `main` that keeps the two things of
//! std's start our programs rely on, in [`init`]: descriptors 0, 1 and 2 are open (on
//! /dev/null if they were closed, which matters to a set-id program) and SIGPIPE is
//! ignored (a write to a closed pipe is an EPIPE error, not a death; `Command` still
//! restores SIGPIPE for the programs it starts). Arguments and the environment work as
//! before: on glibc, std reads them in an `.init_array` function, which glibc calls with
//! argc, argv and envp before `main` in a static program as in a dynamic one. What is
//! lost: a stack overflow is a plain SIGSEGV instead of a message and SIGABRT (a crash
//! either way), and the main thread has no name (`thread::current().name()` is None).

/// std's start minus the stack guard: fds 0-2 open, SIGPIPE ignored; then, for a program
/// started ahead of its connection by `tcpserver -a`, the wait for that connection
/// ([`crate::ahead::take_connection`]).
pub fn init() {
    for fd in 0..3 {
        // SAFETY: fcntl(F_GETFD) only queries the descriptor.
        let closed = unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1
            && std::io::Error::last_os_error().raw_os_error() == Some(libc::EBADF);
        // SAFETY: open of a constant path; the lowest free descriptor is `fd` itself,
        // since 0..fd are open by now.
        if closed && unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR) } != fd {
            std::process::abort();
        }
    }
    // SAFETY: setting a signal's disposition to SIG_IGN has no other effect.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    crate::ahead::take_connection();
}

/// `qsys::lean_main!(run);` after `#![cfg_attr(not(test), no_main)]` at the top of a
/// program's main.rs makes `run` its main, started through [`init`] instead of std's
/// start. `run` returns `()` and leaves through `std::process::exit` or by returning
/// (exit 0); both flush stdout, as std's start does. A panic that unwinds out of `run`
/// (a program without a panic hook that exits, in a build that unwinds) ends in exit
/// 101 as under std's start, not in an abort at the `extern "C"` boundary.
#[macro_export]
macro_rules! lean_main {
    ($run:path) => {
        #[cfg(not(test))]
        #[unsafe(no_mangle)]
        extern "C" fn main(
            _argc: ::core::ffi::c_int,
            _argv: *const *const ::core::ffi::c_char,
        ) -> ::core::ffi::c_int {
            $crate::start::init();
            match ::std::panic::catch_unwind($run) {
                Ok(()) => ::std::process::exit(0),
                Err(_) => ::std::process::exit(101),
            }
        }
        // The unit tests of a program have their own main: keep `run` used there.
        #[cfg(test)]
        const _: fn() = $run;
    };
}

#[cfg(test)]
mod tests {
    use nix::sys::wait::{WaitStatus, waitpid};
    use nix::unistd::{ForkResult, fork};

    #[test]
    fn init_reopens_closed_standard_fds_and_ignores_sigpipe() {
        // SAFETY: the child makes only system calls (no allocation, no locks) and _exits.
        match unsafe { fork() }.expect("fork") {
            ForkResult::Child => unsafe {
                libc::close(0);
                libc::close(2);
                libc::signal(libc::SIGPIPE, libc::SIG_DFL);
                super::init();
                let ok = libc::fcntl(0, libc::F_GETFD) != -1
                    && libc::fcntl(2, libc::F_GETFD) != -1
                    && libc::signal(libc::SIGPIPE, libc::SIG_DFL) == libc::SIG_IGN;
                libc::_exit(if ok { 0 } else { 1 });
            },
            ForkResult::Parent { child } => {
                assert_eq!(
                    waitpid(child, None).expect("waitpid"),
                    WaitStatus::Exited(child, 0)
                );
            }
        }
    }
}
