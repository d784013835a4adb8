//! DKIM signing of outgoing mail (RFC 6376; Ed25519 keys RFC 8463; key sizes RFC 8301)
//! and the key management behind `qmail-dkim` (issue 15, the outbound half).
//!
//! - [`keys`]: where the private keys live (`control/dkim/DOMAIN/SELECTOR.rsa` and
//!   `SELECTOR.ed25519`, PEM, readable only by qmailr), names, loading, installing.
//! - [`sign`]: what qmail-dkimsign does for qmail-remote: find the keys of the message's
//!   From: domain and return the `DKIM-Signature:` fields to put before the message, plus
//!   alerts. (A separate program, so qmail-remote, started per delivery, links none of
//!   this: tests/tests/deps.rs.)
//! - [`keygen`]: new RSA (2048 bits by default) and Ed25519 key pairs.
//! - [`records`]: the DNS TXT records to publish (zone-file form), the suggested SPF
//!   and DMARC records, and the comparison `qmail-dkim show` prints.
//!
//! Signing uses mail-auth's synchronous signer (relaxed/relaxed, `rsa-sha256` and
//! `ed25519-sha256`); no DNS and no async runtime are involved.

pub mod admin;
pub mod keygen;
pub mod keys;
pub mod records;
pub mod sign;

pub use keys::Algorithm;
pub use sign::{Signed, sign_message};
