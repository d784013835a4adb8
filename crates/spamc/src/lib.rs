//! Spam scoring with SpamAssassin's spamd (issue 16; DESIGN section 10, wave2.md 3):
//! the logic of `qmail-spamc` (a filter of the qmail-qfilter chain) and
//! `qmail-spamlearn` (teaching spamd what users report).
//!
//! - [`protocol`]: our spamc-protocol client (`SYMBOLS`, `TELL`, `PING` over a unix
//!   socket or IP:port), with a deadline on connect, every write and every read.
//! - [`header`]: the message's header block: one parser for where it ends and what
//!   its fields are (the filter and the learner must agree), removing forged fields,
//!   and the `X-Spam-*` fields we add.
//! - [`policy`]: `control/spamd`, `spamreject`, `spamsizelimit`, `spamtimeout`,
//!   `spamchecktrusted`; who the client is (local, relay client, authenticated) and
//!   what the filter does with a message.
//! - [`learn`]: the reported message inside a report (a `message/rfc822` attachment,
//!   or the message itself when bounced as is), and the messages of a Maildir folder.

pub mod header;
pub mod learn;
pub mod policy;
pub mod protocol;
