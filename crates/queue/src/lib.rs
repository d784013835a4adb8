//! The on-disk queue of DESIGN section 5, in qmail's layout.
//!
//! ```text
//! queue/{pid,intd,todo,bounce}/N          unsplit
//! queue/{mess,info,local,remote}/S/N      split: S = N % 23
//! queue/lock/{sendmutex,tcpto,trigger}
//! ```
//! N is the inode number of `mess/S/N`. [`layout`] names the files, [`envelope`] reads
//! and writes the `u p F T D` records, [`qq`] is the body of qmail-queue, [`trigger`]
//! wakes qmail-send, and [`client`] runs qmail-queue (or `$QMAILQUEUE`) for every
//! program that injects mail, or hands qmail-smtpd's messages to qmail-queued
//! ([`writer`], doc/queue-writer.md), falling back to qmail-queue.

pub mod batchsync;
pub mod client;
pub mod envelope;
pub mod layout;
pub mod qq;
pub mod trigger;
pub mod writer;

pub use layout::{Layout, SPLIT};
