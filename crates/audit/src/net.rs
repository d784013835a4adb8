//! The host's listening sockets, from `/proc/net/{tcp,tcp6,udp,udp6}` (TCP state 0A
//! LISTEN; UDP sockets with no remote peer), each with the processes holding it (found
//! through `/proc/PID/fd` links `socket:[INODE]`).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// One listening socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listener {
    /// `tcp` or `udp`.
    pub proto: &'static str,
    pub ip: IpAddr,
    pub port: u16,
    pub inode: u64,
    /// The processes holding it: (pid, command name).
    pub pids: Vec<(u32, String)>,
}

impl Listener {
    pub fn shown(&self) -> String {
        let who: Vec<String> = self.pids.iter().map(|(p, c)| format!("{c}[{p}]")).collect();
        let who = if who.is_empty() {
            "unknown process".to_string()
        } else {
            who.join(", ")
        };
        match self.ip {
            IpAddr::V6(_) => format!("{} [{}]:{} ({who})", self.proto, self.ip, self.port),
            IpAddr::V4(_) => format!("{} {}:{} ({who})", self.proto, self.ip, self.port),
        }
    }
}

/// The kernel's hex address: IPv4 as one little-endian word, IPv6 as four.
fn parse_addr(hex: &str) -> Option<(IpAddr, u16)> {
    let (a, p) = hex.split_once(':')?;
    let port = u16::from_str_radix(p, 16).ok()?;
    let ip = match a.len() {
        8 => IpAddr::V4(Ipv4Addr::from(
            u32::from_str_radix(a, 16).ok()?.to_le_bytes(),
        )),
        32 => {
            let mut b = [0u8; 16];
            for (i, chunk) in b.chunks_mut(4).enumerate() {
                let w = u32::from_str_radix(a.get(i * 8..i * 8 + 8)?, 16).ok()?;
                chunk.copy_from_slice(&w.to_le_bytes());
            }
            IpAddr::V6(Ipv6Addr::from(b))
        }
        _ => return None,
    };
    Some((ip, port))
}

/// The listening sockets in one `/proc/net` table's text.
pub fn parse_table(text: &str, proto: &'static str) -> Vec<Listener> {
    let mut v = Vec::new();
    for line in text.lines().skip(1) {
        // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 10 {
            continue;
        }
        let listening = match proto {
            "tcp" => f[3] == "0A",
            _ => f[3] == "07" && parse_addr(f[2]).is_some_and(|(_, p)| p == 0),
        };
        if !listening {
            continue;
        }
        if let (Some((ip, port)), Ok(inode)) = (parse_addr(f[1]), f[9].parse()) {
            v.push(Listener {
                proto,
                ip,
                port,
                inode,
                pids: vec![],
            });
        }
    }
    v
}

/// socket inode -> holding processes, from /proc/*/fd.
fn socket_owners() -> HashMap<u64, Vec<(u32, String)>> {
    let mut m: HashMap<u64, Vec<(u32, String)>> = HashMap::new();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return m;
    };
    for e in rd.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(e.path().join("fd")) else {
            continue;
        };
        let comm = std::fs::read_to_string(e.path().join("comm"))
            .map(|c| c.trim_end().to_string())
            .unwrap_or_default();
        for fd in fds.flatten() {
            let Ok(l) = std::fs::read_link(fd.path()) else {
                continue;
            };
            let l = l.to_string_lossy();
            if let Some(n) = l.strip_prefix("socket:[").and_then(|r| r.strip_suffix(']'))
                && let Ok(n) = n.parse()
            {
                let list = m.entry(n).or_default();
                if !list.iter().any(|(p, _)| *p == pid) {
                    list.push((pid, comm.clone()));
                }
            }
        }
    }
    m
}

/// Every listening socket of this host (this network namespace).
pub fn listeners() -> Vec<Listener> {
    let owners = socket_owners();
    let mut v = Vec::new();
    for (file, proto) in [
        ("tcp", "tcp"),
        ("tcp6", "tcp"),
        ("udp", "udp"),
        ("udp6", "udp"),
    ] {
        let text = std::fs::read_to_string(format!("/proc/net/{file}")).unwrap_or_default();
        v.extend(parse_table(&text, proto));
    }
    for l in &mut v {
        l.pids = owners.get(&l.inode).cloned().unwrap_or_default();
    }
    v
}

/// The address to connect to for a listener bound to `ip` (a wildcard: loopback).
pub fn connect_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(a) if a.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(a) if a.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_tables() {
        let tcp = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 0100007F:0019 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 12345 1 0 100 0 0 10 0\n\
   1: 0100007F:0019 0100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 999 1\n";
        let l = parse_table(tcp, "tcp");
        assert_eq!(l.len(), 1);
        assert_eq!(l[0].ip, "127.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!((l[0].port, l[0].inode), (25, 12345));
        let tcp6 = "header\n   0: 00000000000000000000000001000000:0050 00000000000000000000000000000000:0000 0A 0:0 0:0 0 0 0 777\n";
        let l = parse_table(tcp6, "tcp");
        assert_eq!(l[0].ip, "::1".parse::<IpAddr>().unwrap());
        assert_eq!(l[0].port, 80);
        let udp = "h\n 1: 00000000:0035 00000000:0000 07 0:0 0:0 0 0 0 55\n 2: 0100007F:9C40 0100007F:0035 01 0:0 0:0 0 0 0 56\n";
        let l = parse_table(udp, "udp");
        assert_eq!(l.len(), 1);
        assert_eq!(l[0].port, 53);
        assert!(parse_table("h\n garbage\n", "tcp").is_empty());
    }

    #[test]
    fn this_process_listener_is_found() {
        let s = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = s.local_addr().unwrap().port();
        let all = listeners();
        let me = std::process::id();
        assert!(
            all.iter()
                .any(|l| l.port == port && l.pids.iter().any(|(p, _)| *p == me)),
            "{all:?}"
        );
    }
}
