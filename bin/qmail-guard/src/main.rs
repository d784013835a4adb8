//! qmail-guard - block senders and clients that the logs show flooding or guessing
//!
//! SYNOPSIS
//!     qmail-guard [-1]
//!
//! DESCRIPTION
//!     Reads what the multilog logs of qmail-send and of the SMTP and POP3 services added
//!     since the last pass (HOME/supervise/SERVICE/log/main, or control/guardlogs),
//!     counts messages per envelope sender and failed logins plus permanently refused
//!     recipients per client address within control/guardwindow seconds (timed by the
//!     log lines' TAI64N stamps), and acts at the thresholds control/guardwarn,
//!     guardblock, guardparanoid (senders) and guardclientwarn, guardclientblock,
//!     guardclientparanoid (addresses): a notice to control/guardadmin; a blocked sender
//!     appended to control/badmailfrom, a blocked address put first in control/tcp.smtp
//!     as IP:deny and control/tcp.smtp.cdb rebuilt; each after a `# qmail-guard:`
//!     comment. Blocks are lifted after control/guardexpire seconds (only the lines it
//!     added are removed). control/guardignore patterns (`*`, `?`) are never acted on;
//!     control/guardhigh patterns only at the paranoid thresholds.
//!     Every action is one line on stderr and one notice mail (qmail-inject).
//!
//!     -1   one pass, then exit (from cron). Without it: a pass every
//!          control/guardinterval seconds, for supervise (HOME/supervise/qmail-guard).
//!
//! READS AND WRITES
//!     Reads the log directories and control files; writes HOME/guard/state and
//!     HOME/guard/lock, and replaces the files control/badmailfrom, control/tcp.smtp
//!     and control/tcp.smtp.cdb name (links into HOME/guard/ made by qmail-install).
//!
//! USER
//!     qmailg. Started as root, it becomes qmailg first.
//!
//! EXIT CODES
//!     0 a pass done (-1), or nothing configured (no guardblock nor guardclientblock);
//!     100 usage or contradictory thresholds; 111 a pass failed (unable to read or
//!     write; nothing of it was saved, the next pass tries the same lines again).

use std::time::Duration;

const PROG: &str = "qmail-guard";

fn main() {
    qsys::help!();
    qsys::die::install_panic_hook(PROG);
    let args: Vec<String> = std::env::args().skip(1).collect();
    let once = match args.as_slice() {
        [] => false,
        [a] if a == "-1" => true,
        _ => {
            qsys::die::warn(PROG, "usage", "qmail-guard [-1]");
            std::process::exit(100);
        }
    };
    if let Err(e) = qsys::prot::become_user("qmailg") {
        qsys::die::fatal(PROG, &format!("unable to become qmailg: {e}"), 111);
    }
    let home = match qsys::home() {
        Ok(h) => h,
        Err(e) => qsys::die::fatal(PROG, &format!("unable to find my home: {e}"), 111),
    };
    loop {
        let cfg = match guard::Config::read(&home) {
            Ok(c) => c,
            Err(e) => qsys::die::fatal(PROG, &e, 100),
        };
        if !cfg.enabled() {
            qsys::die::warn(
                PROG,
                "info",
                "neither control/guardblock nor control/guardclientblock is set: nothing to do",
            );
            std::process::exit(0);
        }
        let r = guard::run_pass(&cfg);
        if let Err(e) = &r {
            qsys::die::warn(PROG, "warning", e);
        }
        if once {
            std::process::exit(if r.is_ok() { 0 } else { 111 });
        }
        std::thread::sleep(Duration::from_secs(cfg.interval.max(1)));
    }
}
