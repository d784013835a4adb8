//! qmail-remote - send mail via SMTP
//!
//! SYNOPSIS
//!     qmail-remote host sender recip [recip ...]
//!
//! DESCRIPTION
//!     Reads a message (a regular file, LF line ends) on descriptor 0 and sends it by
//!     SMTP to `host` for `sender` and each `recip`, in one session. `host` is looked up
//!     in control/smtproutes (`domain:relay[:port]`, `.suffix:relay`, `:default`; an
//!     empty relay means use MX); otherwise `host` is an address literal (`1.2.3.4`,
//!     `[1.2.3.4]`, `[IPv6:...]`) or its MX records are used (A/AAAA of the host when it
//!     has none). Exchangers at or above the best preference that points at this host
//!     are skipped. Each address is tried in order until one connects; addresses that
//!     recently timed out are skipped according to queue/lock/tcpto. The client speaks
//!     EHLO (HELO on a 5xx), PIPELINING, 8BITMIME and opportunistic STARTTLS.
//!
//!     Descriptor 1 receives the results: for each recipient, in argv order, `r` (accepted),
//!     `h` (permanently refused) or `s` (temporarily refused) with text, then one message
//!     report `K` (delivered to the accepted recipients), `Z` (temporary failure) or `D`
//!     (permanent failure); each report is `<letter><text>\0`. Texts are qmail's.
//!
//! FILES (HOME is the parent of the directory holding this program)
//!     control/helohost       name for EHLO/HELO (default control/me; neither: Z)
//!     control/smtproutes     routes, as above (port default 25; IPv6 relays in [])
//!     control/timeoutremote  seconds per SMTP read or write (default 1200)
//!     control/timeoutconnect seconds per connect (default 60)
//!     control/nameservers    DNS servers, one per line: IP, IP:PORT or [IPv6]:PORT
//!                            (default: the nameserver lines of /etc/resolv.conf)
//!     queue/lock/tcpto       connect-timeout history, read and updated (flock)
//!     control/dkim/          DKIM keys: when this directory exists, bin/qmail-dkimsign
//!                            signs each message before it is sent (see qmail-dkim);
//!                            its alerts are added to the report as `DKIM alert: ...`
//!
//! USER
//!     Runs as qmailr, started by qmail-rspawn (one process per delivery).
//!
//! EXIT CODES
//!     Always 0; every outcome is a report on descriptor 1. Called with fewer than three
//!     arguments it reports `DI (qmail-remote) was invoked improperly. (#5.3.5)`.

#![cfg_attr(not(test), no_main)]

use std::io::Write;
use std::os::fd::AsFd;

qsys::lean_main!(run);

fn run() {
    qsys::help!();
    qsys::die::install_panic_hook("qmail-remote");
    let args: Vec<String> = std::env::args_os()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let report = match std::io::stdin().as_fd().try_clone_to_owned() {
        Ok(fd) => remote::run(&args, std::fs::File::from(fd)),
        Err(_) if args.len() < 3 => remote::report::Report::only(b'D', remote::report::text::USAGE),
        Err(_) => remote::report::Report::only(b'Z', remote::report::text::READ_MESSAGE),
    };
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(&report.to_bytes());
    let _ = out.flush();
    std::process::exit(0);
}
