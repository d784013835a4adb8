//! qmail-stats' logic: read the multilog directories of qmail-send and the SMTP services
//! ([`files`]), turn each line into an event ([`event`]), count a period's events in
//! bounded memory ([`tally`], [`topn`]) and report them as text, JSON ([`report`]) or a
//! self-contained HTML page with SVG plots ([`html`]). Times are UTC ([`time`]).

pub mod cli;
pub mod event;
pub mod files;
pub mod html;
pub mod report;
pub mod tally;
pub mod time;
pub mod topn;

pub use tally::Stats;
