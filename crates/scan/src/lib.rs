//! qmail-scan's logic: the content policy filter of DESIGN section 10 (issue 14).
//!
//! - [`rules`]: `control/scanrules` (qmail-scanner's format, wave2.md 1.2-1.3).
//! - [`magic`]: what a part really is (PE, ELF, MSI, CAB, LNK, zip, gzip, tar).
//! - [`walk`]: header and envelope rules, the MIME walk and the archive walk with bomb
//!   limits; the first hit.
//! - [`clamd`]: our INSTREAM client with timeouts (wave2.md 2.3).
//! - [`filter`]: the verdict for one message (pass with a header, quarantine, refuse,
//!   temporary failure).
//! - [`program`]: one whole run as a filter of the chain (qmail-scan's, and qmail-qfilter's
//!   forked child's).

pub mod clamd;
pub mod filter;
pub mod magic;
pub mod program;
pub mod rules;
pub mod walk;
