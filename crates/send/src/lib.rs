//! qmail-send, the queue manager (qmail.md sections 2.4-2.8).
//!
//! - [`config`]: the control files qmail-send reads (rereads on HUP) and qmail's address
//!   rewriting (envnoathost, percenthack, locals, virtualdomains).
//! - [`bounce`]: the bounce message: RFC 3464 `multipart/report` whose first part keeps
//!   qmail's QSBMF text, so both modern and qmail-era bounce parsers understand it.
//! - [`commit`]: a todo batch's fsyncs, issued concurrently so the journal joins them.
//! - [`engine`]: the event loop: todo preprocessing in batches, per-channel delivery
//!   through the spawners, per-recipient completion marks, retries on qmail's schedule,
//!   bounces, and removal through qmail-clean.
//! - [`schedule`]: qmail's retry schedule.

pub mod bounce;
pub mod commit;
pub mod config;
pub mod engine;
pub mod schedule;
