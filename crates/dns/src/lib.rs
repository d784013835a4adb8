//! DNS for the programs that resolve: MX, A and AAAA for qmail-remote (RFC 5321 section
//! 5.1; qmail.md 6.4, `q103:dns.c`), TXT and A for rblsmtpd's DNSBL queries (RFC 5782),
//! PTR and forward confirmation for tcpserver's `TCPREMOTEHOST`; and [`resolver`], the
//! same resolver set up for qmail-authcheck, which hands it to mail-auth.
//!
//! Nameservers are given by the caller: qmail-remote reads `control/nameservers` (one per
//! line: `IP`, `IP:PORT`, a bare IPv6 address or `[IPv6]:PORT`); the ucspi programs use
//! [`servers_for_ucspi`] (`$DNSCACHEIP`, then the installation's `control/nameservers`);
//! all fall back to the `nameserver` lines of `/etc/resolv.conf` (port 53). No search
//! list, no hosts file, no cache: names are queried fully qualified. One current-thread
//! tokio runtime is built for the lookups only; callers drop it before forking.
//!
//! Errors map to qmail's classes: NXDOMAIN is hard (permanent), "no records" (NODATA)
//! is an empty answer, everything else (timeout, SERVFAIL, refused, I/O) is soft.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
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

/// Nameservers for tcpserver and rblsmtpd: `$DNSCACHEIP` (djbdns' variable; here a list
/// of `IP` or `IP:PORT` separated by commas or spaces), else `control/nameservers` of the
/// installation `home` when it has one, else `/etc/resolv.conf`.
pub fn servers_for_ucspi(dnscacheip: Option<&str>, home: Option<&Path>) -> Vec<SocketAddr> {
    if let Some(v) = dnscacheip {
        let lines: Vec<String> = v
            .split([',', ' '])
            .filter(|w| !w.is_empty())
            .map(str::to_string)
            .collect();
        if let Ok(s) = parse_nameservers(&lines)
            && !s.is_empty()
        {
            return s;
        }
    }
    if let Some(h) = home
        && let Ok(text) = std::fs::read_to_string(h.join("control/nameservers"))
    {
        let lines: Vec<String> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::to_string)
            .collect();
        if let Ok(s) = parse_nameservers(&lines)
            && !s.is_empty()
        {
            return s;
        }
    }
    system_servers()
}

/// The nameservers of `/etc/resolv.conf` (127.0.0.1 when it names none, as resolvers do).
pub fn system_servers() -> Vec<SocketAddr> {
    let v = std::fs::read_to_string("/etc/resolv.conf")
        .map(|t| parse_resolv_conf(&t))
        .unwrap_or_default();
    if v.is_empty() {
        vec![SocketAddr::from(([127, 0, 0, 1], 53))]
    } else {
        v
    }
}

/// The DNSBL query name of `ip` under `base` (RFC 5782 section 2.1 and 2.4): the octets
/// of an IPv4 address reversed, or the 32 nibbles of an IPv6 address reversed.
pub fn reversed_name(ip: IpAddr, base: &str) -> String {
    let base = base.trim_end_matches('.');
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.{}.{base}", o[3], o[2], o[1], o[0])
        }
        IpAddr::V6(v6) => {
            let mut s = String::with_capacity(64 + base.len());
            for b in v6.octets().iter().rev() {
                s.push_str(&format!("{:x}.{:x}.", b & 0xf, b >> 4));
            }
            s.push_str(base);
            s
        }
    }
}

/// The resolver behind [`Dns`]: `servers` over UDP and TCP, `timeout` per attempt,
/// `attempts` per server, no cache, no hosts file, no search list. For programs that
/// drive it from their own runtime (qmail-authcheck hands it to mail-auth).
pub fn resolver(
    servers: &[SocketAddr],
    timeout: Duration,
    attempts: usize,
) -> std::io::Result<TokioResolver> {
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
    opts.timeout = timeout;
    opts.attempts = attempts;
    opts.cache_size = 0;
    opts.use_hosts_file = ResolveHosts::Never;
    opts.ndots = 0;
    let mut b = Resolver::builder_with_config(cfg, TokioRuntimeProvider::default());
    *b.options_mut() = opts;
    b.build().map_err(std::io::Error::other)
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
        Dns::with_timeout(servers, Duration::from_secs(5), 2)
    }

    /// A resolver that waits `timeout` per attempt, `attempts` times per server.
    pub fn with_timeout(
        servers: &[SocketAddr],
        timeout: Duration,
        attempts: usize,
    ) -> std::io::Result<Dns> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()?;
        let resolver = resolver(servers, timeout, attempts)?;
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

impl Dns {
    /// A records of `name` only (DNSBL answers, `rblsmtpd -a`).
    pub fn ipv4(&self, name: &str) -> Result<Vec<std::net::Ipv4Addr>, DnsError> {
        match self.rt.block_on(self.resolver.ipv4_lookup(fqdn(name))) {
            Ok(l) => Ok(l
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    RData::A(a) => Some(a.0),
                    _ => None,
                })
                .collect()),
            Err(e) => classify(&e).map(|()| Vec::new()),
        }
    }

    /// TXT records of `name`, each one's strings joined.
    pub fn txt(&self, name: &str) -> Result<Vec<Vec<u8>>, DnsError> {
        match self.rt.block_on(self.resolver.txt_lookup(fqdn(name))) {
            Ok(l) => Ok(l
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    RData::TXT(t) => {
                        Some(t.txt_data.iter().flat_map(|s| s.iter().copied()).collect())
                    }
                    _ => None,
                })
                .collect()),
            Err(e) => classify(&e).map(|()| Vec::new()),
        }
    }

    /// PTR names of `ip`, without the trailing dot.
    pub fn ptr(&self, ip: IpAddr) -> Result<Vec<String>, DnsError> {
        match self.rt.block_on(self.resolver.reverse_lookup(ip)) {
            Ok(l) => Ok(l
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    RData::PTR(p) => Some(p.0.to_ascii().trim_end_matches('.').to_string()),
                    _ => None,
                })
                .collect()),
            Err(e) => classify(&e).map(|()| Vec::new()),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn dnsbl_names() {
        assert_eq!(
            reversed_name("192.0.2.99".parse().unwrap(), "bl.example."),
            "99.2.0.192.bl.example"
        );
        let six = reversed_name("2001:db8::1".parse().unwrap(), "bl.example");
        assert_eq!(
            six,
            "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.bl.example"
        );
    }

    #[test]
    fn dnscacheip_wins() {
        let v = servers_for_ucspi(Some("127.0.0.1:5353, 10.0.0.1"), None);
        assert_eq!(
            v,
            vec![
                "127.0.0.1:5353".parse().unwrap(),
                "10.0.0.1:53".parse().unwrap()
            ]
        );
        let d = std::env::temp_dir().join(format!("dns-test-{}", std::process::id()));
        std::fs::create_dir_all(d.join("control")).unwrap();
        std::fs::write(d.join("control/nameservers"), "# c\n127.0.0.9:99\n").unwrap();
        assert_eq!(
            servers_for_ucspi(None, Some(&d)),
            vec!["127.0.0.9:99".parse().unwrap()]
        );
        std::fs::remove_dir_all(&d).unwrap();
    }

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
