//! qmail-stats - mail statistics from the logs, as text, JSON or an HTML page with plots
//!
//! SYNOPSIS
//!     qmail-stats [--since TIME] [--top N] [--json | --html FILE] [LOGDIR ...]
//!
//! DESCRIPTION
//!     Reads multilog directories (the rotated @TAI64N.s and .u files, oldest first, then
//!     current) and counts, for the lines stamped at or after TIME (default: all):
//!     messages received (qmail-send's `new msg`) and their bytes (`info msg`),
//!     deliveries (local and remote `delivery N: success`), bounced recipients
//!     (`failure`) and deferrals, each by reason, bounce messages, the delivery delay
//!     (from `info msg` to the end of the message's last delivery: p50, p90, p99, max),
//!     the top senders, recipients and remote domains, messages accepted by qmail-smtpd,
//!     SMTP refusals by reason (relay, badmailfrom, badrcptto, unknown recipient, virus,
//!     spam, dmarc, policy, auth failure, auth required, rate limit, size, sender not
//!     yours, protocol, queue failure, other) and by client, the content filter
//!     qmail-scan's verdicts (clean, quarantined, refused, deferred) and the viruses it
//!     named, and per-hour counts (received, delivered, bounced, deferred, refused).
//!     Times are UTC.
//!
//!     Without LOGDIR it reads HOME/supervise/S/log/main for S in qmail-send,
//!     qmail-smtpd, qmail-submission and qmail-smtps, those that exist (the content
//!     filters log through the SMTP services).
//!
//!     TIME is NUMBER followed by s, m, h, d or w (that long ago), unix seconds, a TAI64N
//!     label @XXXXXXXXXXXXXXXXXXXXXXXX, or YYYY-MM-DD[THH:MM[:SS]] in UTC.
//!
//!     --top N      top lists are N long (default 10, at most 1000).
//!     --json       one JSON document on standard output: period {since, first, last},
//!                  lines, received, bytes, delivered {total, local, remote}, bounced,
//!                  deferred, bounce_messages, triple_bounces, smtp_accepted,
//!                  delay_seconds {count, p50, p90, p99, max}, deferrals_by_reason and
//!                  bounces_by_reason [{reason, count}], top_senders and top_recipients
//!                  [{address, count}], top_remote_domains [{domain, count}], refusals
//!                  {total, by_reason {NAME: count}, by_client [{client, count}]},
//!                  content_filter {verdicts {clean, quarantined, refused, deferred},
//!                  viruses [{virus, count}]},
//!                  hours [{hour, received, delivered, bounced, deferred, refused}],
//!                  untracked_lines.
//!     --html FILE  one self-contained HTML page (tables, and plots as inline SVG; no
//!                  script, nothing loaded from elsewhere) written to FILE through a new
//!                  file renamed over it, mode 0644; FILE `-` is standard output.
//!
//!     Log lines are client text: the report shows control characters as `?`, JSON and
//!     HTML are escaped, and memory stays bounded (lines are cut at 4096 bytes, each top
//!     list keeps at most 4096 keys; once full, its counts are lower bounds).
//!
//! USER
//!     root, or any user who can read the log directories (qmaill owns them).
//!
//! EXIT CODES
//!     0; 100 for a usage error; 111 when a log directory cannot be read or the page
//!     cannot be written.

use stats::cli::{self, Format};

const PROG: &str = "qmail-stats";

fn main() {
    qsys::help!();
    qsys::die::install_panic_hook(PROG);
    qsys::die::default_sigpipe();
    let fatal = |m: String| -> ! { qsys::die::fatal(PROG, &m, qsys::die::TEMP) };
    let usage = |m: String| -> ! {
        qsys::die::fatal(
            PROG,
            &format!(
                "{m}; usage: qmail-stats [--since TIME] [--top N] [--json | --html FILE] [LOGDIR ...]"
            ),
            qsys::die::PERM,
        )
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let args = cli::parse_args(&argv).unwrap_or_else(|e| usage(e));
    let now = tai64::Tai64n::now();
    let now_ms = now
        .unix_secs()
        .saturating_mul(1000)
        .saturating_add(i64::from(now.nanos / 1_000_000));
    let since = args.since.as_deref().map(|t| {
        stats::time::parse_since(t, now_ms).unwrap_or_else(|| usage(format!("bad TIME {t}")))
    });
    let dirs = if args.dirs.is_empty() {
        let home =
            qsys::home().unwrap_or_else(|_| fatal("unable to find my home directory".into()));
        cli::default_dirs(&home)
    } else {
        args.dirs.clone()
    };
    let mut s = stats::Stats::new(since);
    for d in &dirs {
        stats::files::read_dir_into(d, &mut s)
            .unwrap_or_else(|e| fatal(format!("unable to read {}: {e}", d.display())));
    }
    match &args.format {
        Format::Text => print!("{}", stats::report::text(&s, args.top)),
        Format::Json => println!("{}", stats::report::json(&s, args.top)),
        Format::Html(path) => cli::write_page(path, &stats::html::page(&s, args.top))
            .unwrap_or_else(|e| fatal(format!("unable to write {}: {e}", path.display()))),
    }
}
