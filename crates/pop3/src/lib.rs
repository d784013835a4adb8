//! POP3 (RFC 1939, 2449 CAPA, 2595 STLS, 5034 SASL PLAIN) the qmail way.
//!
//! - [`maildir`]: the message list of a Maildir as qmail-pop3d sees it.
//! - [`pop3d`]: qmail-pop3d's transaction state (after login).
//! - [`line`]: bounded line reading.
//! - [`popup`]: qmail-popup's authorization state (before login).

pub mod line;
pub mod maildir;
pub mod pop3d;
pub mod popup;
