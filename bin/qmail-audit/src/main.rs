//! qmail-audit - check an installation and its host the way an auditor would
//!
//! SYNOPSIS
//!     qmail-audit [--json] [--all] [--service DIR] [--address IP ...] [--expect PORT ...]
//!                 [--local]
//!     qmail-audit --baseline
//!
//! DESCRIPTION
//!     Runs every check and prints each finding with its severity (info, warning,
//!     error), what was expected, what was found and how to fix it; by default the
//!     warnings and errors, with --all the notes too; --json prints every finding as
//!     one JSON object ({"findings": [{"check", "severity", "subject", "expected",
//!     "found", "fix"}], "summary": {...}}).
//!
//!     Checks: installation (owner, group and mode of every installed file against
//!     qmail-install's table, set-id bits, control/ writable by others, secrets:
//!     TLS key, control/dkim keys, users/ password stores); queue (orphans and
//!     misplaced or mis-owned files as queue_repair checks, the oldest message, free
//!     space and inodes of the queue's and logs' file systems); sendmail
//!     (/usr/sbin/sendmail and /usr/lib/sendmail lead to HOME/bin/sendmail, no other
//!     MTA installed or running, only ours on the SMTP ports); services (each of our
//!     services linked in the service directory up and logging through multilog,
//!     log/main owned by qmaill; every TCP/UDP listener ours or reported as
//!     unexpected); relay (an open-relay self-test from a loopback alias tcp.smtp
//!     does not grant RELAYCLIENT: the classic tricks must be refused at RCPT, no
//!     DATA is ever sent); tls (certificate and key match, key owner, days to
//!     expiry: warning under 30, error under 7, the name matches control/me, TLS 1.1
//!     refused, tried with openssl s_client); dns (through control/nameservers: MX,
//!     PTR, SPF, DMARC, DKIM keys of control/dkim/DOMAIN/SELECTOR.key; skipped with a
//!     note when no resolver answers); accounts (qmail users without login shells,
//!     /etc/shadow without empty or weak hashes, the virtual users' password
//!     policy); integrity (changes since the baseline, a tampered manifest).
//!
//! OPTIONS
//!     --baseline     record the manifest of bin/, control/ and boot/ in
//!                    HOME/audit/manifest, authenticated by HMAC-SHA256 with the key
//!                    HOME/audit/hmac.key (made on first use, mode 0400; HOME/audit
//!                    is 0700). Run it after installing, upgrading or changing control
//!                    files on purpose.
//!     --json         the report as JSON.
//!     --all          include the info notes in the text report.
//!     --service DIR  the service directory svscan watches (default /service).
//!     --address IP   consider only listeners bound to IP (repeatable): for a host
//!                    with other installations or daemons, and for tests.
//!     --expect PORT  a listener of another program expected on PORT (repeatable;
//!                    e.g. 22 for sshd): a note, not a warning.
//!     --local        skip the checks about the host rather than this installation:
//!                    the sendmail links, other MTA packages and processes, and the
//!                    system accounts of /etc/shadow.
//!
//! FILES
//!     Reads HOME (found from this program's path, HOME/bin/qmail-audit), /proc,
//!     /etc/shadow, the service directory; connects to our own qmail-smtpd on
//!     loopback; writes only HOME/audit with --baseline.
//!
//! USER
//!     root (the key, the queue, secrets and /etc/shadow are root's to read).
//!
//! EXIT CODES
//!     0 nothing at warning or above; 1 warnings; 2 errors; 100 bad usage; 111 the
//!     audit could not run (no home, --baseline failed).

use clap::Parser;
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "qmail-audit", disable_help_flag = true)]
struct Args {
    #[arg(long)]
    baseline: bool,
    #[arg(long)]
    json: bool,
    #[arg(long)]
    all: bool,
    #[arg(long, default_value = "/service")]
    service: PathBuf,
    #[arg(long)]
    address: Vec<std::net::IpAddr>,
    #[arg(long)]
    local: bool,
    #[arg(long)]
    expect: Vec<u16>,
}

fn main() {
    qsys::help!();
    qsys::die::install_panic_hook("qmail-audit");
    qsys::die::default_sigpipe();
    let args = Args::try_parse().unwrap_or_else(|e| {
        qsys::die::fatal(
            "qmail-audit",
            &format!("usage: {}", e.to_string().lines().next().unwrap_or("")),
            100,
        )
    });
    let home = qsys::home().unwrap_or_else(|_| {
        qsys::die::fatal("qmail-audit", "unable to find my home directory", 111)
    });
    if args.baseline {
        match audit::integrity::baseline(&home) {
            Ok(n) => {
                println!(
                    "qmail-audit: baseline of {n} entries recorded in {}",
                    home.join(audit::integrity::MANIFEST).display()
                );
                return;
            }
            Err(e) => qsys::die::fatal(
                "qmail-audit",
                &format!("unable to record the baseline: {e}"),
                111,
            ),
        }
    }
    let a = audit::Audit {
        home,
        service_dir: args.service,
        addresses: (!args.address.is_empty()).then_some(args.address),
        local_only: args.local,
        expected_ports: args.expect,
        now: qsys::now(),
    };
    let findings = audit::run_all(&a);
    if args.json {
        print!("{}", audit::report::json(&findings));
    } else {
        let min = if args.all {
            audit::Severity::Info
        } else {
            audit::Severity::Warning
        };
        print!("{}", audit::report::text(&findings, min));
    }
    std::process::exit(audit::exit_status(&findings));
}
