//! POP3 (RFC 1939, 2449 CAPA, 2595 STLS, 5034 SASL PLAIN) the qmail way.
//!
//! - [`maildir`]: the message list of a Maildir as qmail-pop3d sees it.
//! - [`pop3d`]: qmail-pop3d's transaction state (after login).
//! - [`line`]: bounded line reading.
//! - `popup` (feature `popup`, on by default): qmail-popup's authorization state
//!   (before login), with the TLS and authentication crates it needs.

pub mod line;
pub mod maildir;
pub mod pop3d;
#[cfg(feature = "popup")]
pub mod popup;

/// Turn off Nagle's algorithm on descriptor `fd` when it is a TCP socket (errors, such
/// as a pipe or a Unix socket, are ignored): every reply is written in one piece, and a
/// last partial segment must not wait for the client's delayed ACK (ucspi-tcp's
/// tcpserver leaves Nagle on; see reference/anchors.md).
pub fn set_nodelay(fd: i32) {
    let one: libc::c_int = 1;
    // SAFETY: setsockopt reads sizeof(int) bytes from a valid pointer; a bad or
    // non-socket descriptor only yields an error we ignore.
    unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}
