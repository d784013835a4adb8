//! DJB's own error strings (`error_str.c`), so messages read exactly like daemontools'
//! (`supervise: fatal: unable to acquire s/supervise/lock: temporary failure`).

use std::io;

/// The daemontools wording of an errno value.
pub fn errno_str(errno: i32) -> &'static str {
    match errno {
        libc::EINTR => "interrupted system call",
        libc::ENOMEM => "out of memory",
        libc::ENOENT => "file does not exist",
        libc::ETXTBSY => "text busy",
        libc::EIO => "input/output error",
        libc::EEXIST => "file already exists",
        libc::ETIMEDOUT => "timed out",
        libc::EINPROGRESS => "operation in progress",
        libc::EAGAIN => "temporary failure",
        libc::EPIPE => "broken pipe",
        libc::EPERM => "permission denied",
        libc::EACCES => "access denied",
        libc::ENXIO => "device not configured",
        libc::ENOTDIR => "not a directory",
        libc::EISDIR => "is a directory",
        libc::ENOSPC => "out of disk space",
        libc::EROFS => "read-only file system",
        libc::EMFILE => "process cannot open more files",
        libc::ENFILE => "system cannot open more files",
        libc::EINVAL => "invalid argument",
        libc::EBADF => "file descriptor not open",
        libc::ECHILD => "no child processes",
        libc::ESRCH => "no such process",
        libc::E2BIG => "argument list too long",
        libc::ENOEXEC => "exec format error",
        libc::EFBIG => "file too big",
        libc::EDQUOT => "disk quota exceeded",
        libc::ELOOP => "symbolic link loop",
        libc::ENAMETOOLONG => "file name too long",
        libc::ENOTEMPTY => "directory not empty",
        libc::EBUSY => "device busy",
        libc::EXDEV => "cross-device link",
        libc::EADDRINUSE => "address already used",
        libc::ECONNREFUSED => "connection refused",
        libc::EMLINK => "too many links",
        _ => "unknown error",
    }
}

/// The daemontools wording of an I/O error (its errno, or the error's own text).
pub fn io_str(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(n) => errno_str(n).to_string(),
        None => e.to_string(),
    }
}

/// The daemontools wording of a nix error.
pub fn nix_str(e: nix::Error) -> &'static str {
    errno_str(e as i32)
}
