//! The one errno-text table: DJB's own wording (`error_str.c` of daemontools and
//! ucspi-tcp), not strerror(3), so that messages match the originals byte for byte
//! (`supervise: fatal: unable to acquire s/supervise/lock: temporary failure`,
//! `tcprules: fatal: unable to read rules.cdb: file does not exist`). Every program
//! prints errno values through [`errno()`], [`io()`] or [`nix()`].

/// DJB's text for an errno value; `unknown error` for values his table lacks.
pub fn errno(n: i32) -> &'static str {
    match n {
        libc::EINTR => "interrupted system call",
        libc::ENOMEM => "out of memory",
        libc::ENOENT => "file does not exist",
        libc::ETXTBSY => "text busy",
        libc::EIO => "input/output error",
        libc::EEXIST => "file already exists",
        libc::ETIMEDOUT => "timed out",
        libc::EINPROGRESS => "operation in progress",
        // EWOULDBLOCK is EAGAIN on Linux; DJB tests EAGAIN first.
        libc::EAGAIN => "temporary failure",
        libc::EPIPE => "broken pipe",
        libc::EPERM => "permission denied",
        libc::EACCES => "access denied",
        libc::ENXIO => "device not configured",
        libc::EPROTO => "protocol error",
        libc::EISDIR => "is a directory",
        libc::ECONNREFUSED => "connection refused",
        libc::ENOTDIR => "not a directory",
        libc::ESRCH => "no such process",
        libc::E2BIG => "argument list too long",
        libc::ENOEXEC => "exec format error",
        libc::EBADF => "file descriptor not open",
        libc::ECHILD => "no child processes",
        libc::EDEADLK => "operation would cause deadlock",
        libc::EFAULT => "bad address",
        libc::ENOTBLK => "not a block device",
        libc::EBUSY => "device busy",
        libc::EXDEV => "cross-device link",
        libc::ENODEV => "device does not support operation",
        libc::EINVAL => "invalid argument",
        libc::ENFILE => "system cannot open more files",
        libc::EMFILE => "process cannot open more files",
        libc::ENOTTY => "not a tty",
        libc::EFBIG => "file too big",
        libc::ENOSPC => "out of disk space",
        libc::ESPIPE => "unseekable descriptor",
        libc::EROFS => "read-only file system",
        libc::EMLINK => "too many links",
        libc::EDOM => "input out of range",
        libc::ERANGE => "output out of range",
        libc::EALREADY => "operation already in progress",
        libc::ENOTSOCK => "not a socket",
        libc::EDESTADDRREQ => "destination address required",
        libc::EMSGSIZE => "message too long",
        libc::EPROTOTYPE => "incorrect protocol type",
        libc::ENOPROTOOPT => "protocol not available",
        libc::EPROTONOSUPPORT => "protocol not supported",
        libc::ESOCKTNOSUPPORT => "socket type not supported",
        libc::EOPNOTSUPP => "operation not supported",
        libc::EPFNOSUPPORT => "protocol family not supported",
        libc::EAFNOSUPPORT => "address family not supported",
        libc::EADDRINUSE => "address already used",
        libc::EADDRNOTAVAIL => "address not available",
        libc::ENETDOWN => "network down",
        libc::ENETUNREACH => "network unreachable",
        libc::ENETRESET => "network reset",
        libc::ECONNABORTED => "connection aborted",
        libc::ECONNRESET => "connection reset",
        libc::ENOBUFS => "out of buffer space",
        libc::EISCONN => "already connected",
        libc::ENOTCONN => "not connected",
        libc::ESHUTDOWN => "socket shut down",
        libc::ETOOMANYREFS => "too many references",
        libc::ELOOP => "symbolic link loop",
        libc::ENAMETOOLONG => "file name too long",
        libc::EHOSTDOWN => "host down",
        libc::EHOSTUNREACH => "host unreachable",
        libc::ENOTEMPTY => "directory not empty",
        libc::EUSERS => "too many users",
        libc::EDQUOT => "disk quota exceeded",
        libc::ESTALE => "stale NFS file handle",
        libc::EREMOTE => "too many levels of remote in path",
        libc::ENOLCK => "no locks available",
        libc::ENOSYS => "system call not available",
        _ => "unknown error",
    }
}

/// The text for an I/O error: its errno's, or for an error made without one (a timeout
/// of our own, a short read, bad data) the nearest DJB wording.
pub fn io(e: &std::io::Error) -> &'static str {
    if let Some(n) = e.raw_os_error() {
        return errno(n);
    }
    match e.kind() {
        std::io::ErrorKind::TimedOut => "timed out",
        std::io::ErrorKind::NotFound => "file does not exist",
        std::io::ErrorKind::InvalidData => "format error",
        std::io::ErrorKind::UnexpectedEof => "end of file",
        std::io::ErrorKind::OutOfMemory => "out of memory",
        _ => "unknown error",
    }
}

/// The text for a nix error.
pub fn nix(e: nix::Error) -> &'static str {
    errno(e as i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The texts the daemontools/ucspi-tcp interop tests compare byte for byte.
    #[test]
    fn djb_wording() {
        assert_eq!(errno(libc::ENOENT), "file does not exist");
        assert_eq!(errno(libc::EWOULDBLOCK), "temporary failure");
        assert_eq!(errno(libc::ENXIO), "device not configured");
        assert_eq!(errno(libc::EACCES), "access denied");
        assert_eq!(errno(libc::EPERM), "permission denied");
        assert_eq!(errno(libc::EADDRINUSE), "address already used");
        assert_eq!(errno(libc::ECONNRESET), "connection reset");
        assert_eq!(errno(libc::ELOOP), "symbolic link loop");
        assert_eq!(errno(9999), "unknown error");
        assert_eq!(nix(nix::Error::ENOTDIR), "not a directory");
    }

    #[test]
    fn io_errors_with_and_without_errno() {
        assert_eq!(
            io(&std::io::Error::from_raw_os_error(libc::ENOSPC)),
            "out of disk space"
        );
        let timeout = std::io::Error::new(std::io::ErrorKind::TimedOut, "timeout");
        assert_eq!(io(&timeout), "timed out");
        assert_eq!(io(&std::io::Error::other("x")), "unknown error");
    }
}
