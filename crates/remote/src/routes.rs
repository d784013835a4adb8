//! `control/smtproutes` and address literals (qmail.md 6.2; `qmail-control(5)`).
//!
//! A line is `domain:relay[:port]`; the domain is looked up as qmail does (the host,
//! then each `.suffix`, then the empty key for a default smarthost; first match wins,
//! see [`control::ConstMap::lookup_domain`]). An empty relay means "use MX as usual".
//! The relay is a host name (resolved by A/AAAA, never MX, as qmail's `dns_ip`), a
//! dotted quad, or a bracketed literal: `[1.2.3.4]`, `[::1]` or `[IPv6:::1]` (IPv6 must
//! be bracketed, because `:` separates the port). The port defaults to 25; a port that
//! is not a number in 1..=65535 makes the line unusable (a temporary failure, so a typo
//! in the file defers mail instead of sending it somewhere else).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The SMTP port (qmail's PORT_SMTP).
pub const PORT_SMTP: u16 = 25;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Relay {
    Ip(IpAddr),
    Name(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub relay: Relay,
    pub port: u16,
}

/// Parse the value of an smtproutes line. `Ok(None)` is the empty relay (use MX).
pub fn parse_route(value: &str) -> Result<Option<Route>, String> {
    let value = value.trim();
    if value.is_empty() {
        return Ok(None);
    }
    let (relay, port) = if value.starts_with('[') {
        let close = value
            .find(']')
            .ok_or_else(|| format!("unclosed [ in {value}"))?;
        let ip = literal_ip(&value[..=close])
            .ok_or_else(|| format!("bad address literal in {value}"))?;
        let rest = &value[close + 1..];
        let port = match rest.strip_prefix(':') {
            Some(p) => p,
            None if rest.is_empty() => "",
            None => return Err(format!("junk after ] in {value}")),
        };
        (Relay::Ip(ip), port)
    } else {
        let (h, p) = value.split_once(':').unwrap_or((value, ""));
        if h.is_empty() {
            return Err(format!("empty relay host in {value}"));
        }
        let relay = match h.parse::<Ipv4Addr>() {
            Ok(ip) => Relay::Ip(IpAddr::V4(ip)),
            Err(_) => Relay::Name(h.to_string()),
        };
        (relay, p)
    };
    let port = if port.is_empty() {
        PORT_SMTP
    } else {
        match port.parse::<u16>() {
            Ok(p) if p > 0 => p,
            _ => return Err(format!("bad port in {value}")),
        }
    };
    Ok(Some(Route { relay, port }))
}

/// A host that is an address: `1.2.3.4`, `[1.2.3.4]`, `[IPv6:2001:db8::1]`, `[::1]`.
pub fn literal_ip(host: &str) -> Option<IpAddr> {
    if let Ok(ip) = host.parse::<Ipv4Addr>() {
        return Some(IpAddr::V4(ip));
    }
    let inner = host.strip_prefix('[')?.strip_suffix(']')?;
    if let Ok(ip) = inner.parse::<Ipv4Addr>() {
        return Some(IpAddr::V4(ip));
    }
    // `get`: a multibyte character across byte 5 (a recipient's domain is anything a
    // sender wrote) is simply not the prefix, never a slice panic.
    let v6 = match inner.get(..5) {
        Some(p) if p.eq_ignore_ascii_case("ipv6:") => &inner[5..],
        _ => inner,
    };
    v6.parse::<Ipv6Addr>().ok().map(IpAddr::V6)
}

/// Look `host` up in the smtproutes lines. `Ok(None)`: no route or an empty relay.
pub fn lookup(lines: &[String], host: &str) -> Result<Option<Route>, String> {
    let map = control::ConstMap::from_pairs(lines);
    match map.lookup_domain(host, true) {
        Some(v) => parse_route(v),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(s: &str) -> Relay {
        Relay::Ip(s.parse().unwrap())
    }

    #[test]
    fn route_values() {
        assert_eq!(parse_route("").unwrap(), None);
        assert_eq!(
            parse_route("relay.example").unwrap(),
            Some(Route {
                relay: Relay::Name("relay.example".into()),
                port: 25
            })
        );
        assert_eq!(
            parse_route("relay.example:2525").unwrap(),
            Some(Route {
                relay: Relay::Name("relay.example".into()),
                port: 2525
            })
        );
        assert_eq!(
            parse_route("[1.2.3.4]").unwrap(),
            Some(Route {
                relay: v4("1.2.3.4"),
                port: 25
            })
        );
        assert_eq!(
            parse_route("[127.0.0.1]:2526").unwrap(),
            Some(Route {
                relay: v4("127.0.0.1"),
                port: 2526
            })
        );
        assert_eq!(
            parse_route("127.0.0.1:26").unwrap(),
            Some(Route {
                relay: v4("127.0.0.1"),
                port: 26
            })
        );
        assert_eq!(
            parse_route("[::1]:587").unwrap(),
            Some(Route {
                relay: v4_6("::1"),
                port: 587
            })
        );
        assert_eq!(
            parse_route("[IPv6:2001:db8::1]").unwrap(),
            Some(Route {
                relay: v4_6("2001:db8::1"),
                port: 25
            })
        );
    }

    fn v4_6(s: &str) -> Relay {
        Relay::Ip(s.parse().unwrap())
    }

    #[test]
    fn bad_route_values() {
        for bad in [
            "relay:x",
            "relay:0",
            "relay:70000",
            "[1.2.3.4",
            "[nonsense]:25",
            "[::1]x",
            ":25",
        ] {
            assert!(parse_route(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn lookup_order_and_empty_relay() {
        let lines: Vec<String> = [
            "# comment lines are dropped by the control reader",
            "example.test:[127.0.0.1]:2525",
            ".sub.test:relay.sub.test",
            "direct.sub.test:",
            ":smart.example:587",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(lookup(&lines, "EXAMPLE.test").unwrap().unwrap().port, 2525);
        assert_eq!(
            lookup(&lines, "a.sub.test").unwrap().unwrap().relay,
            Relay::Name("relay.sub.test".into())
        );
        assert_eq!(lookup(&lines, "direct.sub.test").unwrap(), None);
        assert_eq!(
            lookup(&lines, "other.org").unwrap().unwrap(),
            Route {
                relay: Relay::Name("smart.example".into()),
                port: 587
            }
        );
        assert_eq!(lookup(&[], "other.org").unwrap(), None);
    }

    #[test]
    fn literals() {
        assert_eq!(literal_ip("1.2.3.4"), Some("1.2.3.4".parse().unwrap()));
        assert_eq!(literal_ip("[1.2.3.4]"), Some("1.2.3.4".parse().unwrap()));
        assert_eq!(literal_ip("[IPv6:::1]"), Some("::1".parse().unwrap()));
        assert_eq!(
            literal_ip("[ipv6:2001:db8::2]"),
            Some("2001:db8::2".parse().unwrap())
        );
        assert_eq!(literal_ip("example.test"), None);
        assert_eq!(literal_ip("[example.test]"), None);
        assert_eq!(literal_ip("1.2.3"), None);
    }

    /// A recipient domain such as `[abcdé]` (any bytes a sender wrote) used to panic
    /// on `inner[..5]` inside the `é`, killing qmail-remote.
    #[test]
    fn multibyte_literal_is_no_panic() {
        assert_eq!(literal_ip("[abcd\u{e9}]"), None);
        assert_eq!(literal_ip("[\u{e9}\u{e9}\u{e9}]"), None);
        assert_eq!(literal_ip("[\u{fffd}]"), None);
        assert!(parse_route("[abcd\u{e9}]:25").is_err());
    }
}
