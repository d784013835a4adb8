//! qmail-inject and the sendmail wrapper, as a library (the programs in `bin/` only call
//! [`cli`]).
//!
//! - [`token`]: RFC 822 tokens (qmail's token822).
//! - [`addrlist`]: address lists and qualification (qmail-inject(8), qmail-header(5)).
//! - [`header`]: reading the header and classifying fields (qmail's headerbody/hfield).
//! - [`inject`]: options, environment, header rewriting, the envelope.
//! - [`sendmail`]: sendmail command lines translated to qmail-inject's.
//! - [`cli`]: the two programs' mains.

pub mod addrlist;
pub mod cli;
pub mod header;
pub mod inject;
pub mod sendmail;
pub mod token;
