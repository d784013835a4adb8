//! Closing every descriptor above a point: what a forked child that does not exec does
//! after placing the descriptors of its protocol (qmail-lspawn's delivery child,
//! qmail-qfilter's linked-in filter), where an exec would have dropped the
//! close-on-exec ones; and marking them close-on-exec, what a program that starts others
//! does first (qmail-qfilter, qmail-qfilterd).

/// Close every descriptor from `first` on (close_range(2), or a loop up to the
/// descriptor limit where the kernel lacks it). False if neither could run.
///
/// # Safety
/// No live `File` or `OwnedFd` of this process may own a descriptor from `first` on.
pub unsafe fn close_from(first: u32) -> bool {
    // SAFETY: close_range only closes descriptors (the caller owns none of them).
    if unsafe { libc::close_range(first, u32::MAX, 0) } == 0 {
        return true;
    }
    let Ok(Some(max)) = nix::unistd::sysconf(nix::unistd::SysconfVar::OPEN_MAX) else {
        return false;
    };
    for fd in i64::from(first)..max {
        // SAFETY: as above; closing a number that is not open is harmless.
        unsafe { libc::close(fd as i32) };
    }
    true
}

/// Mark every descriptor from `first` on close-on-exec: whatever a program's caller left
/// open (a connection, a log, a supervisor's pipe) never reaches a program it starts.
/// Where the kernel lacks `CLOSE_RANGE_CLOEXEC` (before Linux 5.11), each open
/// descriptor in /proc/self/fd is marked instead.
pub fn close_on_exec_from(first: u32) {
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets descriptor flags.
    let done = unsafe {
        libc::close_range(first, u32::MAX, libc::CLOSE_RANGE_CLOEXEC as libc::c_int) == 0
    };
    if done {
        return;
    }
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    let open: Vec<i32> = dir
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|&fd: &i32| fd >= first as i32)
        .collect();
    for fd in open {
        // SAFETY: F_SETFD only sets the flags of a descriptor number (the directory's
        // own, already closed, fails harmlessly).
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
}
