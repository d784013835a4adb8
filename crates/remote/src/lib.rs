//! qmail-remote: deliver one message to one remote host by SMTP (qmail.md section 6;
//! `q103:qmail-remote.c`, `qmail-remote(8)`), plus the `queue/lock/tcpto` file that
//! qmail-tcpok and qmail-tcpto manage.
//!
//! [`run`] is the whole program minus its descriptors: it reads the controls, the
//! message, resolves the host (smtproutes, address literal or MX), applies the prefme
//! rule, connects to the first reachable address (consulting and updating tcpto), and
//! speaks SMTP. The result is a [`report::Report`], written to descriptor 1 by `main`.
//!
//! Differences from qmail 1.03, all deliberate: EHLO with PIPELINING, 8BITMIME and
//! opportunistic STARTTLS; IPv6 (AAAA records and literals); no CNAME rewriting of
//! recipients (as notqmail 1.08, RFC 5321 5.1); NXDOMAIN on the MX query is a permanent
//! failure at once; a partial final line is refused before connecting; addresses with
//! CR or LF are refused instead of being written into an SMTP command; the nameservers
//! come from `control/nameservers` (else `/etc/resolv.conf`).

pub use dns;
pub mod dkim;
pub mod ipme;
pub mod message;
pub mod mx;
pub mod reply;
pub mod report;
pub mod routes;
pub mod smtp;
pub mod tcpto;
pub mod tls;

use std::fs::File;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use mx::{Candidate, PREFME_ROUTE};
use report::{Report, text};
use routes::{Relay, Route};

type Failure = (u8, String);

fn fail(letter: u8, t: &str) -> Failure {
    (letter, t.to_string())
}

/// Controls qmail-remote reads.
struct Settings {
    helohost: String,
    timeout_remote: u64,
    timeout_connect: u64,
    routes: Vec<String>,
    nameservers: Option<Vec<String>>,
}

fn settings(home: &Path) -> std::io::Result<Option<Settings>> {
    let c = control::Controls::new(home);
    let Some(helohost) = c.line("helohost")?.or(c.line("me")?) else {
        return Ok(None);
    };
    Ok(Some(Settings {
        helohost,
        timeout_remote: c.int("timeoutremote", 1200)?,
        timeout_connect: c.int("timeoutconnect", 60)?,
        routes: c.list_or_empty("smtproutes")?,
        nameservers: c.list("nameservers")?,
    }))
}

fn nameservers(lines: &Option<Vec<String>>) -> Result<Vec<SocketAddr>, Failure> {
    let mut v = match lines {
        Some(l) => dns::parse_nameservers(l).map_err(|_| fail(b'Z', text::CONTROLS))?,
        None => Vec::new(),
    };
    if v.is_empty() {
        v = std::fs::read_to_string("/etc/resolv.conf")
            .map(|t| dns::parse_resolv_conf(&t))
            .unwrap_or_default();
    }
    if v.is_empty() {
        v.push(SocketAddr::from(([127, 0, 0, 1], 53)));
    }
    Ok(v)
}

fn resolver(s: &Settings) -> Result<dns::Dns, Failure> {
    let ns = nameservers(&s.nameservers)?;
    dns::Dns::new(&ns).map_err(|_| fail(b'Z', text::DNS_SOFT))
}

/// Addresses of one host name (a routed relay: A/AAAA, no MX), qmail's `dns_ip`.
fn relay_addrs(s: &Settings, name: &str) -> Result<Vec<Candidate>, Failure> {
    host_addrs(&resolver(s)?, name)
}

/// The A/AAAA addresses of `name` as preference-0 candidates (a relay, or a host
/// without MX records: RFC 5321 5.1 implicit MX).
fn host_addrs(d: &dns::Dns, name: &str) -> Result<Vec<Candidate>, Failure> {
    match d.ips(name) {
        Ok(v) if v.is_empty() => Err(fail(b'D', text::NO_MX)),
        Ok(v) => Ok(v
            .into_iter()
            .map(|ip| Candidate {
                ip,
                pref: 0,
                name: Some(name.to_string()),
            })
            .collect()),
        Err(dns::DnsError::Hard) => Err((b'D', text::no_host(name))),
        Err(dns::DnsError::Soft) => Err(fail(b'Z', text::DNS_SOFT)),
    }
}

/// MX lookup and the addresses of each exchanger, qmail's `dns_mxip`.
fn mx_addrs(s: &Settings, host: &str) -> Result<Vec<Candidate>, Failure> {
    let d = resolver(s)?;
    let records = match d.mx(host) {
        Ok(r) => r,
        Err(dns::DnsError::Hard) => return Err((b'D', text::no_host(host))),
        Err(dns::DnsError::Soft) => return Err(fail(b'Z', text::DNS_SOFT)),
    };
    if records.is_empty() {
        // No MX: the host itself, preference 0 (RFC 5321 5.1 implicit MX).
        return host_addrs(&d, host);
    }
    let mut rng = mx::Rng::from_env();
    let mut out = Vec::new();
    let mut soft = false;
    for (pref, name) in mx::order_mx(records, &mut rng) {
        // RFC 7505 null MX ("."): the domain accepts no mail.
        if name.is_empty() {
            continue;
        }
        match d.ips(&name) {
            Ok(v) => out.extend(v.into_iter().map(|ip| Candidate {
                ip,
                pref: u32::from(pref),
                name: Some(name.clone()),
            })),
            Err(dns::DnsError::Soft) => soft = true,
            Err(dns::DnsError::Hard) => {}
        }
    }
    if out.is_empty() {
        return Err(if soft {
            fail(b'Z', text::DNS_SOFT)
        } else {
            fail(b'D', text::NO_MX)
        });
    }
    Ok(out)
}

/// The addresses to try, in order, after the prefme rule, and the port.
fn candidates(s: &Settings, host: &str) -> Result<(Vec<Candidate>, u16), Failure> {
    let route: Option<Route> =
        routes::lookup(&s.routes, host).map_err(|_| fail(b'Z', text::BAD_ROUTE))?;
    let (cands, prefme, port) = match route {
        Some(Route {
            relay: Relay::Ip(ip),
            port,
        }) => (
            vec![Candidate {
                ip,
                pref: 0,
                name: None,
            }],
            Some(PREFME_ROUTE),
            port,
        ),
        Some(Route {
            relay: Relay::Name(n),
            port,
        }) => (relay_addrs(s, &n)?, Some(PREFME_ROUTE), port),
        None => match routes::literal_ip(host) {
            Some(ip) => (
                vec![Candidate {
                    ip,
                    pref: 0,
                    name: None,
                }],
                None,
                routes::PORT_SMTP,
            ),
            None => (mx_addrs(s, host)?, None, routes::PORT_SMTP),
        },
    };
    let kept =
        mx::filter_prefme(cands, prefme, &ipme::ipme()).ok_or_else(|| fail(b'D', text::PREFME))?;
    Ok((kept, port))
}

/// The whole of qmail-remote: `args` are `host sender recip...` (argv without argv[0]),
/// `message` is descriptor 0. Never panics on input; every outcome is a report.
pub fn run(args: &[String], message: File) -> Report {
    if args.len() < 3 {
        return Report::only(b'D', text::USAGE);
    }
    let (host, sender, recips) = (&args[0], &args[1], &args[2..]);
    let home = match qsys::home() {
        Ok(h) => h,
        Err(_) => return Report::only(b'Z', text::HOME),
    };
    let s = match settings(&home) {
        Ok(Some(s)) => s,
        _ => return Report::only(b'Z', text::CONTROLS),
    };
    if std::iter::once(sender)
        .chain(recips)
        .any(|a| a.contains(['\r', '\n']))
    {
        return Report::only(b'D', text::BAD_ADDRESS);
    }
    let (mut msg, scan) = match message::Message::open(message) {
        Ok(m) => m,
        Err(_) => return Report::only(b'Z', text::READ_MESSAGE),
    };
    if scan.partial_final_line {
        return Report::only(b'D', text::PARTIAL_LINE);
    }
    let (cands, port) = match candidates(&s, host) {
        Ok(c) => c,
        Err((l, t)) => return Report::only(l, &t),
    };
    // DKIM: signed once the destination is known, before connecting.
    let signed = dkim::sign(&home, &mut msg);
    let mut tcpto = tcpto::Tcpto::new(&queue::Layout::new(&home).lock("tcpto"));
    let connect_timeout = Duration::from_secs(s.timeout_connect.max(1));
    let tls = tls::client_config();
    for c in &cands {
        if tcpto.skip(c.ip) {
            continue;
        }
        match TcpStream::connect_timeout(&SocketAddr::new(c.ip, port), connect_timeout) {
            Ok(sock) => {
                tcpto.record(c.ip, false);
                let p = smtp::Params {
                    helohost: &s.helohost,
                    sender,
                    recipients: recips,
                    timeout: Duration::from_secs(s.timeout_remote.max(1)),
                    tls,
                    server_name: c.name.as_deref(),
                    header: &signed.header,
                };
                let mut report = Report::new();
                smtp::deliver(sock, c.ip, &p, &mut msg, scan, &mut report);
                return with_alerts(report, &signed);
            }
            Err(e) => tcpto.record(c.ip, e.kind() == std::io::ErrorKind::TimedOut),
        }
    }
    with_alerts(Report::only(b'Z', text::NO_CONNECT), &signed)
}

/// Signing problems go into the message report's text, which qmail-send logs on the
/// delivery line (qmail-remote's stderr is that same pipe, so it cannot log apart).
fn with_alerts(mut report: Report, signed: &dkim::Signing) -> Report {
    let outcome = if signed.header.is_empty() {
        "sent unsigned"
    } else {
        "signed with the other keys"
    };
    if let Some((_, text)) = report.message.as_mut() {
        for a in &signed.alerts {
            text.push_str(&format!("DKIM alert: {a}; {outcome}.\n"));
        }
    }
    report
}
