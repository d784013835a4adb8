//! The filter chain behind `QMAILQUEUE` (DESIGN section 10), with the contract of Bruce
//! Guenter's qmail-qfilter: each filter gets the message on fd 0, writes the message
//! (changed or not) to fd 1, reads the envelope on fd 3; exit 0 passes the message on,
//! 99 accepts it and drops it silently, 82 with a `D`/`Z` line on fd 6 refuses it with
//! that text, anything else is the status to return (qmail-queue's codes).
//!
//! - [`chain`]: the filter command lines, from arguments (`f1 args -- f2 args`) or
//!   from `control/filters`.
//! - [`envelope`]: reading qmail-queue's envelope from fd 1, bounded, and the
//!   `QMAILUSER`/`QMAILHOST`/`QMAILRCPTS` variables it gives.
//! - [`answer`]: the filter's side: its descriptors, and refusing with a reason.
//! - [`run`]: one filter run as the filter user under memory, CPU, file size and
//!   wall-clock limits, and what its end means for the chain ([`run::verdict`]).
//! - [`spawn`]: starting a filter without a fork (a vfork-style clone).
//! - [`spool`]: the memory files the message passes through, sealed once written.

pub mod answer;
pub mod chain;
pub mod envelope;
pub mod run;
pub mod runner;
pub mod served;
pub mod spawn;
pub mod spool;

/// The user the filters run as (group `nofiles`).
pub const FILTER_USER: &str = "qmailf";

/// `control/filtermemory` default: address space per filter, bytes.
pub const DEFAULT_MEMORY: u64 = 512 * 1024 * 1024;

/// `control/filtertimeout` default: seconds for the whole chain (and CPU per filter).
pub const DEFAULT_TIMEOUT: u64 = 300;
