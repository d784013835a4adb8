//! DNS for qmail-remote: MX, A and AAAA through hickory-resolver (RFC 5321 section 5.1;
//! qmail.md 6.4, `q103:dns.c`).
//!
//! Nameservers come from `control/nameservers` (one per line: `IP`, `IP:PORT`, a bare
//! IPv6 address or `[IPv6]:PORT`), else from the `nameserver` lines of
//! `/etc/resolv.conf` (port 53). No search list, no hosts file, no cache: names are
//! queried fully qualified. One current-thread tokio runtime is built for the lookups
//! only and dropped before any SMTP traffic.
//!
//! Errors map to qmail's classes: NXDOMAIN is hard (permanent), "no records" (NODATA)
//! is an empty answer, everything else (timeout, SERVFAIL, refused, I/O) is soft.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::net::NetError;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;
use hickory_resolver::{Resolver, TokioResolver};

/// A failed lookup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DnsError {
    /// NXDOMAIN: the name does not exist.
    Hard,
    /// Anything else: try again later.
    Soft,
}

/// Parse `control/nameservers` lines.
pub fn parse_nameservers(lines: &[String]) -> Result<Vec<SocketAddr>, String> {
    lines
        .iter()
        .map(|l| parse_nameserver(l.trim()).ok_or_else(|| format!("bad nameserver {l}")))
        .collect()
}

fn parse_nameserver(s: &str) -> Option<SocketAddr> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(SocketAddr::new(ip, 53));
    }
    // `1.2.3.4:5353` and `[::1]:5353`
    s.parse::<SocketAddr>().ok()
}

/// The `nameserver` lines of a resolv.conf text (port 53); unparsable entries (e.g.
/// link-local addresses with a `%scope`) are skipped.
pub fn parse_resolv_conf(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|l| {
            let mut w = l.split_ascii_whitespace();
            if w.next() != Some("nameserver") {
                return None;
            }
            w.next()?
                .parse::<IpAddr>()
                .ok()
                .map(|ip| SocketAddr::new(ip, 53))
        })
        .collect()
}

/// A resolver with its own current-thread runtime.
pub struct Dns {
    rt: tokio::runtime::Runtime,
    resolver: TokioResolver,
}

fn fqdn(name: &str) -> String {
    if name.ends_with('.') {
        name.to_string()
    } else {
        format!("{name}.")
    }
}

fn classify(e: &NetError) -> Result<(), DnsError> {
    if e.is_nx_domain() {
        Err(DnsError::Hard)
    } else if e.is_no_records_found() {
        Ok(())
    } else {
        Err(DnsError::Soft)
    }
}

impl Dns {
    pub fn new(servers: &[SocketAddr]) -> std::io::Result<Dns> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()?;
        let ns = servers
            .iter()
            .map(|sa| {
                let (mut udp, mut tcp) = (ConnectionConfig::udp(), ConnectionConfig::tcp());
                udp.port = sa.port();
                tcp.port = sa.port();
                NameServerConfig::new(sa.ip(), true, vec![udp, tcp])
            })
            .collect();
        let cfg = ResolverConfig::from_name_servers(ns);
        let mut opts = ResolverOpts::default();
        opts.timeout = Duration::from_secs(5);
        opts.attempts = 2;
        opts.cache_size = 0;
        opts.use_hosts_file = ResolveHosts::Never;
        opts.ndots = 0;
        let mut b = Resolver::builder_with_config(cfg, TokioRuntimeProvider::default());
        *b.options_mut() = opts;
        let resolver = b.build().map_err(std::io::Error::other)?;
        Ok(Dns { rt, resolver })
    }

    /// MX records of `host`: `Ok(empty)` when the name exists but has no MX.
    pub fn mx(&self, host: &str) -> Result<Vec<(u16, String)>, DnsError> {
        match self.rt.block_on(self.resolver.mx_lookup(fqdn(host))) {
            Ok(l) => Ok(l
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    RData::MX(m) => {
                        let name = m.exchange.to_ascii();
                        Some((m.preference, name.trim_end_matches('.').to_string()))
                    }
                    _ => None,
                })
                .collect()),
            Err(e) => classify(&e).map(|()| Vec::new()),
        }
    }

    /// A then AAAA records of `host`. Hard only if the name does not exist.
    pub fn ips(&self, host: &str) -> Result<Vec<IpAddr>, DnsError> {
        let name = fqdn(host);
        let mut out = Vec::new();
        let mut soft = false;
        match self.rt.block_on(self.resolver.ipv4_lookup(name.as_str())) {
            Ok(l) => out.extend(l.answers().iter().filter_map(|r| match &r.data {
                RData::A(a) => Some(IpAddr::V4(a.0)),
                _ => None,
            })),
            Err(e) => match classify(&e) {
                Ok(()) => {}
                Err(DnsError::Hard) => return Err(DnsError::Hard),
                Err(DnsError::Soft) => soft = true,
            },
        }
        match self.rt.block_on(self.resolver.ipv6_lookup(name.as_str())) {
            Ok(l) => out.extend(l.answers().iter().filter_map(|r| match &r.data {
                RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                _ => None,
            })),
            Err(e) => match classify(&e) {
                Ok(()) => {}
                Err(DnsError::Hard) if out.is_empty() => return Err(DnsError::Hard),
                Err(_) => soft = true,
            },
        }
        if out.is_empty() && soft {
            Err(DnsError::Soft)
        } else {
            Ok(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nameserver_lines() {
        let l: Vec<String> = ["127.0.0.1", "127.0.0.1:5353", "[::1]:5353", "::1"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let v = parse_nameservers(&l).unwrap();
        assert_eq!(v[0], "127.0.0.1:53".parse().unwrap());
        assert_eq!(v[1], "127.0.0.1:5353".parse().unwrap());
        assert_eq!(v[2], "[::1]:5353".parse().unwrap());
        assert_eq!(v[3], "[::1]:53".parse().unwrap());
        assert!(parse_nameservers(&["dns.example".to_string()]).is_err());
        assert!(parse_nameservers(&["1.2.3.4:x".to_string()]).is_err());
    }

    #[test]
    fn resolv_conf() {
        let t = "# c\nsearch example.org\nnameserver 10.0.0.53\nnameserver fe80::1%eth0\nnameserver ::1\noptions ndots:2\n";
        assert_eq!(
            parse_resolv_conf(t),
            vec!["10.0.0.53:53".parse().unwrap(), "[::1]:53".parse().unwrap()]
        );
    }

    #[test]
    fn fqdn_adds_one_dot() {
        assert_eq!(fqdn("a.test"), "a.test.");
        assert_eq!(fqdn("a.test."), "a.test.");
    }
}
