//! This host's own addresses (qmail's `ipme.c`).
//!
//! Every address of every interface (IPv4 and IPv6, from `getifaddrs(3)`), plus
//! `0.0.0.0` and `127.0.0.1` as netqmail adds them, plus `::` and `::1`. An MX or A
//! record pointing at one of these means "this host" for the prefme rule (qmail.md 6.4).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The addresses that are this host. Never fails: if `getifaddrs` does, only the fixed
/// addresses are returned.
pub fn ipme() -> Vec<IpAddr> {
    let mut v = vec![
        IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        IpAddr::V6(Ipv6Addr::LOCALHOST),
    ];
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list we free below with freeifaddrs; we only
    // read through pointers it returned, checking each for NULL and its family first.
    unsafe {
        if libc::getifaddrs(&mut head) != 0 {
            return v;
        }
        let mut cur = head;
        while !cur.is_null() {
            let sa = (*cur).ifa_addr;
            if !sa.is_null() {
                match i32::from((*sa).sa_family) {
                    libc::AF_INET => {
                        let sin = &*(sa as *const libc::sockaddr_in);
                        v.push(IpAddr::V4(Ipv4Addr::from(u32::from_be(
                            sin.sin_addr.s_addr,
                        ))));
                    }
                    libc::AF_INET6 => {
                        let sin6 = &*(sa as *const libc::sockaddr_in6);
                        v.push(IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr)));
                    }
                    _ => {}
                }
            }
            cur = (*cur).ifa_next;
        }
        libc::freeifaddrs(head);
    }
    v.sort();
    v.dedup();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn includes_loopback_and_any() {
        let me = ipme();
        assert!(me.contains(&"127.0.0.1".parse().unwrap()));
        assert!(me.contains(&"0.0.0.0".parse().unwrap()));
        assert!(!me.contains(&"127.0.0.2".parse().unwrap()));
        assert!(!me.contains(&"192.0.2.1".parse().unwrap()));
    }
}
