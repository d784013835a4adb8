//! rblsmtpd - refuse SMTP from clients listed in DNS block lists
//!
//! SYNOPSIS
//!     rblsmtpd [ -b ] [ -B ] [ -c ] [ -C ] [ -t timeout ] [ -r base[:text] ]...
//!              [ -a base ]... smtpd [ arg ... ]
//!
//! DESCRIPTION
//!     Run by tcpserver in front of qmail-smtpd. Decides for $TCPREMOTEIP (see the
//!     `ucspi::rbl` module for the full rule): $RBLSMTPD set and empty accepts, starting
//!     with `-` refuses permanently with the rest as text, any other value refuses
//!     temporarily; otherwise each `-r base` list is asked for a TXT record of the
//!     reversed address (IPv6: reversed nibbles), `-r base:text` for an A record, and
//!     `-a base` allow lists for an A record, in order, first answer wins. `-b` makes
//!     later listings 553 (default `-B`: 451); `-c` refuses with 451 when a lookup fails
//!     (default `-C`: ignore the failure). When accepted it execs smtpd with no trace.
//!     When refused it logs `rblsmtpd: IP pid PID: 451 text` on stderr and answers SMTP
//!     until QUIT: 250 to HELO/EHLO/MAIL/RSET/NOOP, the refusal to the rest (`-t` seconds
//!     of silence end it, default 60; `-t 0` prints the refusal once and exits).
//!
//! ENVIRONMENT
//!     TCPREMOTEIP, RBLSMTPD; DNS servers from $DNSCACHEIP (`IP` or `IP:PORT`, comma
//!     separated), else HOME/control/nameservers, else /etc/resolv.conf.
//!
//! USER
//!     Whatever tcpserver runs it as (qmaild).
//!
//! EXIT CODES
//!     0 after a refusing session; 100 usage; 111 unable to run smtpd. When it accepts,
//!     smtpd's exit code.

#![cfg_attr(not(test), no_main)]

use std::ffi::OsString;
use std::net::IpAddr;
use std::time::Duration;

use ucspi::rbl::{self, LookupFailed, Lookups, Verdict};

const PROG: &str = "rblsmtpd";

/// DNS through hickory, built on first use (no lookups, no resolver).
struct Dns {
    resolver: Option<dns::Dns>,
}

impl Dns {
    fn get(&mut self) -> Result<&dns::Dns, LookupFailed> {
        if self.resolver.is_none() {
            let cache = std::env::var("DNSCACHEIP").ok();
            let home = qsys::home().ok();
            let servers = dns::servers_for_ucspi(cache.as_deref(), home.as_deref());
            self.resolver = Some(
                dns::Dns::with_timeout(&servers, Duration::from_secs(5), 1)
                    .map_err(|_| LookupFailed)?,
            );
        }
        self.resolver.as_ref().ok_or(LookupFailed)
    }
}

impl Lookups for Dns {
    fn txt(&mut self, name: &str) -> Result<Option<Vec<u8>>, LookupFailed> {
        match self.get()?.txt(name) {
            Ok(v) => Ok(v.into_iter().reduce(|mut a, b| {
                a.push(b' ');
                a.extend_from_slice(&b);
                a
            })),
            Err(dns::DnsError::Hard) => Ok(None),
            Err(dns::DnsError::Soft) => Err(LookupFailed),
        }
    }

    fn a(&mut self, name: &str) -> Result<bool, LookupFailed> {
        match self.get()?.ipv4(name) {
            Ok(v) => Ok(!v.is_empty()),
            Err(dns::DnsError::Hard) => Ok(false),
            Err(dns::DnsError::Soft) => Err(LookupFailed),
        }
    }
}

qsys::lean_main!(run);

fn run() {
    qsys::help!();
    qsys::die::install_panic_hook(PROG);
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let ip: Option<IpAddr> = std::env::var("TCPREMOTEIP")
        .ok()
        .and_then(|s| s.parse().ok());
    let env = std::env::var_os("RBLSMTPD");
    let env = env
        .as_ref()
        .map(|v| std::os::unix::ffi::OsStrExt::as_bytes(v.as_os_str()));
    let mut lookups = Dns { resolver: None };
    let d = match rbl::decide(env, &args, ip, &mut lookups) {
        Ok(d) => d,
        Err(why) => {
            if !why.is_empty() {
                ucspi::log::line(PROG, &why);
            }
            ucspi::log::line(PROG, &format!("usage: {}", rbl::USAGE));
            std::process::exit(100);
        }
    };
    drop(lookups);
    match d.verdict {
        Verdict::Accept => {
            let e = ucspi::server::exec_program(&d.program, &[]);
            ucspi::log::line(
                PROG,
                &format!(
                    "fatal: unable to run {}: {}",
                    rbl::show(&d.program[0]),
                    qsys::die::errstr(&e)
                ),
            );
            std::process::exit(111);
        }
        Verdict::Refuse(reply) => {
            let who = ip
                .map(|i| i.to_string())
                .unwrap_or_else(|| "unknown".into());
            ucspi::log::line(
                PROG,
                &format!(
                    "{who} pid {}: {}",
                    std::process::id(),
                    String::from_utf8_lossy(&reply)
                ),
            );
            let io = qsys::fdio::FdIo::new(Some(d.timeout));
            let mut input = std::io::BufReader::new(io);
            let mut output = io;
            rbl::refuse(&reply, d.timeout, &mut input, &mut output);
        }
    }
}
