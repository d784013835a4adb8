//! Addresses as ucspi-tcp takes them: host `0` or empty for "any", a literal IPv4 or IPv6
//! address, or a name; ports by number or by their `/etc/services` name.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};

/// The addresses `host` stands for. `0` and the empty string mean "every address": `::`
/// (which also accepts IPv4, dual stack) unless `v4only`, then `0.0.0.0`. Names are
/// resolved by the system (`/etc/hosts` first, as an administrator expects of a listening
/// address).
pub fn host_addrs(host: &str, v4only: bool) -> Result<Vec<IpAddr>, String> {
    if host.is_empty() || host == "0" {
        return Ok(vec![if v4only {
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        } else {
            IpAddr::V6(Ipv6Addr::UNSPECIFIED)
        }]);
    }
    if let Ok(ip) = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    {
        return Ok(vec![ip]);
    }
    let found: Vec<IpAddr> = (host, 0)
        .to_socket_addrs()
        .map_err(|_| format!("unable to figure out IP address for {host}"))?
        .map(|sa| sa.ip())
        .filter(|ip| !v4only || ip.is_ipv4())
        .collect();
    if found.is_empty() {
        return Err(format!("no IP address for {host}"));
    }
    Ok(found)
}

/// A port number, or the TCP port of a service named in `services` (`/etc/services`).
pub fn port(spec: &str, services: &str) -> Option<u16> {
    if let Ok(p) = spec.parse::<u16>() {
        return Some(p);
    }
    for line in services.lines() {
        let line = line.split('#').next().unwrap_or("");
        let mut w = line.split_whitespace();
        let (Some(name), Some(pp)) = (w.next(), w.next()) else {
            continue;
        };
        let Some((p, proto)) = pp.split_once('/') else {
            continue;
        };
        if proto == "tcp" && (name == spec || w.any(|alias| alias == spec)) {
            return p.parse().ok();
        }
    }
    None
}

/// [`port`] against the system's `/etc/services`.
pub fn system_port(spec: &str) -> Option<u16> {
    let services = std::fs::read_to_string("/etc/services").unwrap_or_default();
    port(spec, &services)
}

/// An address as the program should see it: IPv4-mapped IPv6 addresses (from a dual-stack
/// socket) become plain IPv4.
pub fn unmap(sa: SocketAddr) -> SocketAddr {
    match sa {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), v6.port()),
            None => sa,
        },
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports() {
        let services = "# x\nsmtp\t\t25/tcp\t\tmail\npop3\t\t110/tcp\t\tpop-3\nsubmission\t587/tcp\nfoo 9/udp\n";
        assert_eq!(port("25", services), Some(25));
        assert_eq!(port("smtp", services), Some(25));
        assert_eq!(port("mail", services), Some(25));
        assert_eq!(port("pop-3", services), Some(110));
        assert_eq!(port("foo", services), None);
        assert_eq!(port("nosuch", services), None);
    }

    #[test]
    fn hosts() {
        assert_eq!(
            host_addrs("0", true).unwrap(),
            vec![IpAddr::V4(Ipv4Addr::UNSPECIFIED)]
        );
        assert_eq!(
            host_addrs("", false).unwrap(),
            vec![IpAddr::V6(Ipv6Addr::UNSPECIFIED)]
        );
        assert_eq!(
            host_addrs("::1", false).unwrap(),
            vec!["::1".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(
            host_addrs("127.0.0.1", false).unwrap(),
            vec!["127.0.0.1".parse::<IpAddr>().unwrap()]
        );
        let m: SocketAddr = "[::ffff:10.1.2.3]:99".parse().unwrap();
        assert_eq!(unmap(m), "10.1.2.3:99".parse().unwrap());
    }
}
