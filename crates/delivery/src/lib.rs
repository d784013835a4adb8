//! Local delivery, as qmail-local does it (qmail.md section 4).
//!
//! - [`maildir`]: one message into a Maildir (`tmp/`, fsync, link to `new/`, fsync of
//!   `new/` so a reported success survives a crash).
//! - [`mbox`]: append to an mbox under `flock`, `>From ` quoting, truncate back on error.
//! - [`dotqmail`]: which `.qmail` file applies and what its lines mean.
//! - [`local`]: the whole of qmail-local: checks, environment, loop detection, the
//!   deliveries in order, forwards in one injection, the `did F+W+P` report.

pub mod dotqmail;
pub mod local;
pub mod maildir;
pub mod mbox;

/// A failed delivery: permanent (exit 100, bounce) or temporary (exit 111, retry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fail {
    pub permanent: bool,
    pub text: String,
}

impl Fail {
    pub fn temp(text: impl Into<String>) -> Fail {
        Fail {
            permanent: false,
            text: text.into(),
        }
    }
    pub fn perm(text: impl Into<String>) -> Fail {
        Fail {
            permanent: true,
            text: text.into(),
        }
    }
}
