//! The environment of a connection's program, as ucspi-tcp sets it: `PROTO`, then
//! `TCPLOCALIP`, `TCPLOCALPORT`, `TCPLOCALHOST`, `TCPREMOTEIP`, `TCPREMOTEPORT`,
//! `TCPREMOTEHOST`, `TCPREMOTEINFO`. A value that is unknown (no PTR name, no ident
//! answer, lookups not asked for) is *removed*, so a stale inherited value never leaks.
//! A real IPv6 peer gets `PROTO=TCP6` and the same values again under `TCP6...` names, as
//! ucspi-tcp6 does; an IPv4 peer (also one reaching a dual-stack socket) gets `PROTO=TCP`.
//! The variables of the matching rule are applied last, so a rule can override anything.

use std::ffi::{CString, OsString};
use std::net::SocketAddr;
use std::os::unix::ffi::OsStrExt;

/// What is known about one connection.
pub struct Conn {
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub local_host: Option<String>,
    pub remote_host: Option<String>,
    pub remote_info: Option<String>,
}

const FIELDS: [&str; 7] = [
    "LOCALIP",
    "LOCALPORT",
    "LOCALHOST",
    "REMOTEIP",
    "REMOTEPORT",
    "REMOTEHOST",
    "REMOTEINFO",
];

/// Every variable to set (`Some`) or remove (`None`), in ucspi-tcp's order.
pub fn vars(c: &Conn) -> Vec<(String, Option<Vec<u8>>)> {
    let six = c.remote.is_ipv6();
    let values: [Option<String>; 7] = [
        Some(c.local.ip().to_string()),
        Some(c.local.port().to_string()),
        c.local_host.clone(),
        Some(c.remote.ip().to_string()),
        Some(c.remote.port().to_string()),
        c.remote_host.clone(),
        c.remote_info.clone(),
    ];
    let mut out = vec![(
        "PROTO".to_string(),
        Some(if six {
            b"TCP6".to_vec()
        } else {
            b"TCP".to_vec()
        }),
    )];
    for (f, v) in FIELDS.iter().zip(values.iter()) {
        out.push((format!("TCP{f}"), v.clone().map(String::into_bytes)));
    }
    for (f, v) in FIELDS.iter().zip(values.iter()) {
        let v = if six {
            v.clone().map(String::into_bytes)
        } else {
            None
        };
        out.push((format!("TCP6{f}"), v));
    }
    out
}

/// The environment for exec: `base` (the inherited one) with `changes` applied in order
/// (later changes win; `None` removes).
pub fn build(
    base: impl IntoIterator<Item = (OsString, OsString)>,
    changes: &[(Vec<u8>, Option<Vec<u8>>)],
) -> Vec<CString> {
    let mut env: Vec<(Vec<u8>, Vec<u8>)> = base
        .into_iter()
        .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
        .collect();
    for (name, value) in changes {
        env.retain(|(k, _)| k != name);
        if let Some(v) = value {
            env.push((name.clone(), v.clone()));
        }
    }
    env.into_iter()
        .filter_map(|(k, v)| {
            let mut kv = k;
            kv.push(b'=');
            kv.extend_from_slice(&v);
            CString::new(kv).ok()
        })
        .collect()
}

/// [`vars`] in the byte form [`build`] takes.
pub fn changes(c: &Conn) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
    vars(c)
        .into_iter()
        .map(|(k, v)| (k.into_bytes(), v))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(remote: &str) -> Conn {
        Conn {
            local: "127.0.0.1:25".parse().unwrap(),
            remote: remote.parse().unwrap(),
            local_host: Some("0".into()),
            remote_host: None,
            remote_info: None,
        }
    }

    #[test]
    fn unknown_values_are_removed_and_rules_win() {
        let base = vec![
            (OsString::from("TCPREMOTEHOST"), OsString::from("stale")),
            (OsString::from("PATH"), OsString::from("/bin")),
        ];
        let mut ch = changes(&conn("127.0.0.2:4000"));
        ch.push((b"RELAYCLIENT".to_vec(), Some(Vec::new())));
        ch.push((b"TCPLOCALHOST".to_vec(), Some(b"ruled".to_vec())));
        let env: Vec<String> = build(base, &ch)
            .into_iter()
            .map(|c| c.into_string().unwrap())
            .collect();
        assert!(env.contains(&"PATH=/bin".to_string()));
        assert!(env.contains(&"PROTO=TCP".to_string()));
        assert!(env.contains(&"TCPREMOTEIP=127.0.0.2".to_string()));
        assert!(env.contains(&"TCPREMOTEPORT=4000".to_string()));
        assert!(env.contains(&"RELAYCLIENT=".to_string()));
        assert!(env.contains(&"TCPLOCALHOST=ruled".to_string()));
        assert!(!env.iter().any(|e| e.starts_with("TCPREMOTEHOST=")));
        assert!(!env.iter().any(|e| e.starts_with("TCP6")));
    }

    #[test]
    fn ipv6_peer() {
        let mut c = conn("[::1]:4000");
        c.local = "[::1]:25".parse().unwrap();
        let env: Vec<String> = build(Vec::new(), &changes(&c))
            .into_iter()
            .map(|c| c.into_string().unwrap())
            .collect();
        assert!(env.contains(&"PROTO=TCP6".to_string()));
        assert!(env.contains(&"TCPREMOTEIP=::1".to_string()));
        assert!(env.contains(&"TCP6REMOTEIP=::1".to_string()));
    }
}
