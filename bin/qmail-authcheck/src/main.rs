//! qmail-authcheck - SPF, DKIM and DMARC checks of incoming mail, a qmail-qfilter filter
//!
//! SYNOPSIS
//!     qmail-authcheck
//!
//! DESCRIPTION
//!     A filter of the chain in DESIGN section 10 (named in HOME/control/filters, run by
//!     qmail-qfilter as qmailf): reads the message on descriptor 0 and its envelope on
//!     descriptor 3, and writes the message to descriptor 1 with two fields on top:
//!
//!         Authentication-Results: ME;
//!             spf=pass smtp.mailfrom=joe@example.org;
//!             dkim=pass header.d=example.org header.s=sel header.a=rsa-sha256 header.b=AbCdEfGh;
//!             dmarc=pass header.from=example.org policy.dmarc=reject
//!         X-Qmail-Authcheck: MARK (by ME)
//!
//!     ME is control/me (the authserv-id, RFC 8601). SPF (RFC 7208) checks the envelope
//!     sender, or the HELO name (SMTPHELO) for the null sender, against the client
//!     address TCPREMOTEIP; DKIM (RFC 6376, RSA and Ed25519) every signature, up to 8;
//!     DMARC (RFC 7489) the From: domain's policy with alignment, p=, sp= and pct=.
//!     Every Authentication-Results field naming ME and every X-Qmail-Authcheck field
//!     that came with the message is removed first.
//!
//!     MARK and what happens (control/README, "Sender authentication"):
//!     DMARC fails under p=reject: refused, `550 5.7.1 message rejected per the DMARC
//!     policy of DOMAIN`, nothing queued (control/dmarcreject refuse, the default), or
//!     delivered marked `reject` (mark). DMARC fails under p=quarantine: delivered marked
//!     `quarantine` (control/dmarcquarantine mark, the default), or kept in
//!     HOME/quarantine (quarantine; exit 99, the client hears 250). SPF fail without a
//!     passing DKIM signature: marked `spf-fail` (control/spfpolicy mark, the default) or
//!     refused with 550 5.7.23 (refuse). A DNS failure defers (451 4.4.3) only where the
//!     DMARC policy would refuse; otherwise the message is delivered marked `temperror`.
//!     Else MARK is `pass` (SPF or DKIM passed) or `none`.
//!
//!     DNS goes to control/nameservers (else /etc/resolv.conf), at most
//!     control/authchecktimeout seconds per lookup (5), control/authchecklookups
//!     lookups (40) and 30 seconds for each of SPF, DKIM and DMARC.
//!
//!     Not checked, only cleaned of forged fields: mail from clients with RELAYCLIENT
//!     set, from authenticated users (SMTPAUTHUSER) and without TCPREMOTEIP (local
//!     injection).
//!
//!     One log line per message on descriptor 2:
//!         qmail-authcheck: VERDICT mark=MARK spf=R dkim=R.. dmarc=R policy=P
//!             header.from=D from=S helo=H ip=IP lookups=N removed=N ms=N
//!     with VERDICT deliver, refuse, defer or quarantine; client text is escaped.
//!
//! USER
//!     qmailf (the filter user), as qmail-qfilter runs it; it writes only the
//!     quarantine.
//!
//! EXIT CODES
//!     0 pass (message written to descriptor 1); 99 kept in the quarantine; 82 refused
//!     with `D<text>` (permanent) or `Z<text>` (temporary) on descriptor 6; 31 and 71
//!     when descriptor 6 is not open; 111 internal error (temporary).

use authcheck::policy::{Config, Disposition};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::FromRawFd;

const PROG: &str = "qmail-authcheck";

fn fd_open(fd: i32) -> bool {
    // SAFETY: F_GETFD only queries the descriptor flags.
    unsafe { libc::fcntl(fd, libc::F_GETFD) != -1 }
}

/// Tell the caller why, with `kind` `D` (permanent) or `Z` (temporary), and exit.
fn reply(kind: char, text: &str) -> ! {
    if fd_open(6) {
        // SAFETY: descriptor 6 is open (checked above) and owned by this process now.
        let mut f = unsafe { File::from_raw_fd(6) };
        if f.write_all(format!("{kind}{text}").as_bytes()).is_ok() {
            std::process::exit(82);
        }
    }
    std::process::exit(if kind == 'D' { 31 } else { 71 })
}

fn defer(log: &str) -> ! {
    qsys::die::warn(PROG, "warning", log);
    reply(
        'Z',
        "sender authentication failed, try again later (#4.3.0)",
    )
}

fn read_fd(fd: i32) -> std::io::Result<Vec<u8>> {
    if !fd_open(fd) {
        return Err(std::io::Error::from_raw_os_error(libc::EBADF));
    }
    // SAFETY: the descriptor is open and nothing else in this process uses it.
    let mut f = unsafe { File::from_raw_fd(fd) };
    let mut buf = Vec::new();
    f.read_to_end(&mut buf)?;
    Ok(buf)
}

fn main() {
    qsys::help!();
    qsys::die::install_panic_hook(PROG);
    let home = qsys::home().unwrap_or_else(|e| defer(&format!("unable to find home: {e}")));
    let controls = control::Controls::new(&home);
    let unreadable = |e: std::io::Error| -> ! {
        defer(&format!(
            "unable to read control files: {}",
            qsys::die::errstr(&e)
        ))
    };
    let cfg = Config::read(&controls).unwrap_or_else(|e| unreadable(e));
    let me = controls
        .line("me")
        .unwrap_or_else(|e| unreadable(e))
        .filter(|m| !m.is_empty())
        .unwrap_or_else(qsys::hostname);
    let servers = match controls
        .list("nameservers")
        .unwrap_or_else(|e| unreadable(e))
    {
        Some(lines) if !lines.is_empty() => dns::parse_nameservers(&lines)
            .unwrap_or_else(|e| defer(&format!("control/nameservers: {e}"))),
        _ => dns::system_servers(),
    };
    let message = read_fd(0).unwrap_or_else(|e| defer(&format!("unable to read the message: {e}")));
    let envelope =
        read_fd(3).unwrap_or_else(|e| defer(&format!("unable to read the envelope on fd 3: {e}")));
    let Ok(env) = qfilter::envelope::read(&mut &envelope[..]) else {
        defer("the envelope on fd 3 is not F..\\0T..\\0\\0");
    };
    let var = |name: &str| std::env::var(name).ok();
    let sender = String::from_utf8_lossy(&env.sender).into_owned();
    let helo = var("SMTPHELO").unwrap_or_default();
    let remote_ip = var("TCPREMOTEIP").filter(|v| !v.is_empty());
    let req = authcheck::Request {
        message: &message,
        sender: &sender,
        helo: &helo,
        remote_ip: remote_ip.as_deref(),
        relay_client: var("RELAYCLIENT").is_some(),
        authenticated: var("SMTPAUTHUSER").is_some_and(|u| !u.is_empty()),
        me: &me,
    };
    let verdict = authcheck::run(&req, &cfg, &servers);
    let _ = std::io::stderr()
        .lock()
        .write_all(format!("{PROG}: {} {}\n", verdict.word(), verdict.log).as_bytes());
    match verdict.disposition {
        Disposition::Deliver(_) => {
            let mut out = std::io::stdout().lock();
            if out
                .write_all(&verdict.message)
                .and_then(|_| out.flush())
                .is_err()
            {
                defer("unable to write the message");
            }
        }
        Disposition::Refuse(text) => reply('D', &text),
        Disposition::Defer(text) => reply('Z', &text),
        Disposition::Quarantine(why) => {
            let rcpts = env
                .recipients
                .iter()
                .map(|r| String::from_utf8_lossy(r).into_owned())
                .collect();
            let dir = home.join("quarantine");
            match authcheck::quarantine(&dir, &verdict.message, &why, &req, rcpts) {
                Ok(p) => {
                    let p = qsys::logsafe::text(p.to_string_lossy().as_bytes());
                    qsys::die::warn(PROG, "info", &format!("quarantined as {p}"));
                    std::process::exit(99)
                }
                Err(e) => defer(&format!("unable to quarantine: {e}")),
            }
        }
    }
}
