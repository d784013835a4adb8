//! qmail-scan - attachment, header and virus policy filter for the qmail-qfilter chain
//!
//! SYNOPSIS
//!     qmail-scan
//!
//! DESCRIPTION
//!     A filter of the chain in DESIGN section 10 (run by qmail-qfilter from
//!     control/filters): reads the message on descriptor 0 and its envelope on
//!     descriptor 3 (`F<sender>\0`, `T<recipient>\0` ..., `\0`), and writes the message
//!     with one header line prepended to descriptor 1 when it passes:
//!
//!         X-Qmail-Scanned: by qmail-scan on ME; clean (policy, clamd)
//!
//!     The policy is HOME/control/scanrules (its format is described at the top of the
//!     default file shipped in the source tree's control/scanrules): attachment names
//!     and extensions at any depth, header and envelope regexes, MIME types, and the
//!     built-in checks: executable content whatever the name (PE, ELF, MSI, CAB, LNK),
//!     double extensions, zip/gzip/tar archives opened member by member to depth 8 with
//!     at most 1000 members and 100 times the message size (1 to 50 MiB) of expanded
//!     data, encrypted or unreadable archives, undecodable names. Text parts are typed
//!     by their bytes, and files uuencoded in them are checked like attachments. Header
//!     rules see each field unfolded and, for text fields, also RFC 2047-decoded. A
//!     missing scanrules means the built-in checks only; a line that does not parse
//!     defers all mail (451) and logs the line number.
//!
//!     Then, when HOME/control/clamd names clamd's socket (a path starting with `/`,
//!     or host:port), the whole message is streamed to it (INSTREAM). A virus is refused
//!     with its name. A message over clamd's StreamMaxLength is refused for good
//!     (`message too large for the virus scanner (#5.3.4)`: keep control/databytes
//!     below it). No answer from clamd (down, timeout after control/clamdtimeout
//!     seconds, default 30, or an error reply) defers the message (451), unless
//!     control/clamdfailopen is 1: then it passes unscanned, saying so in its header and
//!     the log. That is a risk: a sender who can make clamd fail (for example with a
//!     message over its StreamMaxLength) gets mail through unscanned.
//!
//!     A rule's action is `quarantine` (default) or `refuse` (4th column of
//!     scanrules; `@virus` defaults to refuse). Quarantine: the message is stored in
//!     the Maildir HOME/quarantine with the reason and envelope, a notice with the
//!     message's header goes to control/scanadmin (default postmaster; `@me` added to
//!     a bare name) through HOME/bin/qmail-queue directly (not through the filters),
//!     and qmail-scan exits 99: the client hears 250 and nothing else is queued.
//!
//!     The HELO name for `Virus-HELO:` rules is read from the Received line
//!     qmail-smtpd put on top of the message (only when TCPREMOTEIP is set).
//!     TCPREMOTEIP feeds `Virus-TCPREMOTEIP:`.
//!
//!     One log line per message on descriptor 2:
//!         qmail-scan: VERDICT rule=.. line=N remark=.. place=.. virus=.. from=..
//!             rcpts=N ip=.. helo=.. bytes=N parts=N members=N expanded=N ms=N
//!     with VERDICT clean, quarantine, refuse or defer; client text is escaped.
//!
//!     qmail-qfilter links this program's code and, for a filter line that is
//!     `qmail-scan` or HOME/bin/qmail-scan alone, runs it in a forked child set up as
//!     this program would be, without starting it (qmail-qfilter's LINKED-IN FILTER).
//!
//! EXIT CODES
//!     0 pass (message written to descriptor 1); 99 accepted and quarantined;
//!     82 refused with `D<text>` (permanent, 554) or `Z<text>` (temporary, 451) written
//!     to descriptor 6; 31 permanent and 71 temporary refusal when descriptor 6 is not
//!     open; 111 internal error (temporary).

#![cfg_attr(not(test), no_main)]

use std::path::Path;

fn run() {
    qsys::help!();
    let home = qsys::home().unwrap_or_else(|e| {
        scan::program::defer(
            "policy filter cannot find its home (#4.3.0)",
            &format!("unable to find home: {e}"),
        )
    });
    scan::program::run(Path::new(&home))
}

qsys::lean_main!(run);
