//! Relay and address policy: rcpthosts (qmail's `rcpthosts.c`), badmailfrom,
//! badrcptto, domain literals (`localiphost`), and the submission sender map.
//!
//! Deviation from qmail, on purpose (DESIGN: "no open relay, ever"): a missing
//! `rcpthosts` accepts no domain at all instead of every domain.

use crate::config::Config;
use control::ConstMap;
use std::io;

/// Is `domain` (lowercased by the caller or not) one we accept mail for?
/// Exact line or `.suffix` line in rcpthosts, then the same keys in morercpthosts.cdb.
pub fn rcpthosts_ok(cfg: &Config, domain: &str) -> io::Result<bool> {
    let d = domain.to_ascii_lowercase();
    if cfg.rcpthosts.lookup_domain(&d, false).is_some() {
        return Ok(true);
    }
    if let Some(p) = &cfg.morercpthosts
        && let Some(db) = control::cdbfile::Cdb::open(p)?
    {
        if db.get(d.as_bytes())?.is_some() {
            return Ok(true);
        }
        for (i, c) in d.char_indices() {
            if c == '.' && db.get(&d.as_bytes()[i..])?.is_some() {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// badmailfrom/badrcptto matching: the whole address, or `@domain`, case-insensitive.
pub fn listed(list: &ConstMap, addr: &str) -> bool {
    if list.is_empty() {
        return false;
    }
    if list.contains(addr) {
        return true;
    }
    match addr.rsplit_once('@') {
        Some((_, d)) => list.contains(&format!("@{d}")),
        None => false,
    }
}

/// A domain literal naming one of this host's addresses becomes `localiphost`
/// (`user@[192.0.2.1]` -> `user@mx.example.org`), as in qmail.
pub fn rewrite_literal(addr: &str, cfg: &Config) -> Option<String> {
    let (local, dom) = addr.rsplit_once('@')?;
    let ip = dom.strip_prefix('[')?.strip_suffix(']')?;
    let ip = ip.strip_prefix("IPv6:").unwrap_or(ip);
    let ip: std::net::IpAddr = ip.parse().ok()?;
    let mine = ip.to_string() == cfg.local_ip || local_ips().contains(&ip);
    mine.then(|| format!("{local}@{}", cfg.localiphost))
}

fn local_ips() -> Vec<std::net::IpAddr> {
    let mut v = Vec::new();
    if let Ok(addrs) = nix::ifaddrs::getifaddrs() {
        for a in addrs {
            if let Some(s) = a.address {
                if let Some(x) = s.as_sockaddr_in() {
                    v.push(std::net::IpAddr::V4(x.ip()));
                } else if let Some(x) = s.as_sockaddr_in6() {
                    v.push(std::net::IpAddr::V6(x.ip()));
                }
            }
        }
    }
    v
}

/// May authenticated `user` use `addr` (envelope sender or From:)?
///
/// Allowed: the user's own address: `user` itself when it holds an `@` (a virtual
/// user), else `user@D` for every D in `locals` (and `me`); plus what the lines of
/// `control/sendermap` for the user allow (`user:addr`, `user:@domain`, `user:*` for
/// anything; user `*` applies to everyone). The null sender (`MAIL FROM:<>`, a
/// bounce) only with `user:*`: a user could otherwise send mail no one answers for.
pub fn sender_allowed(cfg: &Config, user: &str, addr: &str) -> bool {
    let user = user.to_ascii_lowercase();
    if addr.is_empty() {
        return cfg
            .sendermap
            .iter()
            .any(|(u, pat)| (*u == user || u == "*") && pat == "*");
    }
    let addr = addr.to_ascii_lowercase();
    let domain = addr.rsplit_once('@').map(|(_, d)| d).unwrap_or("");
    for (u, pat) in &cfg.sendermap {
        if *u != user && u != "*" {
            continue;
        }
        let pat = pat.as_str();
        if pat == "*" || pat == addr || pat.strip_prefix('@').is_some_and(|d| d == domain) {
            return true;
        }
    }
    if user.contains('@') {
        return addr == user;
    }
    let Some((local, _)) = addr.rsplit_once('@') else {
        return false;
    };
    if local != user {
        return false;
    }
    let c = &cfg.controls;
    let mut locals = c.list_or_empty("locals").unwrap_or_default();
    if let Ok(Some(me)) = c.line("me") {
        locals.push(me);
    }
    locals.iter().any(|d| d.eq_ignore_ascii_case(domain))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(sendermap: &str) -> (tempfile::TempDir, Config) {
        let home = tempfile::tempdir().unwrap();
        let c = home.path().join("control");
        std::fs::create_dir(&c).unwrap();
        std::fs::write(c.join("me"), "mx.ours.test\n").unwrap();
        std::fs::write(c.join("locals"), "ours.test\n").unwrap();
        std::fs::write(c.join("sendermap"), sendermap).unwrap();
        let cfg = Config::load(home.path(), crate::Mode::Submission, vec!["cp".into()]).unwrap();
        (home, cfg)
    }

    #[test]
    fn the_null_sender_needs_a_star_in_the_sender_map() {
        let (_h, cfg) = config("ann:@other.test\n");
        assert!(sender_allowed(&cfg, "joe", "joe@ours.test"));
        assert!(sender_allowed(&cfg, "JOE", "Joe@mx.ours.test"));
        assert!(!sender_allowed(&cfg, "joe", "boss@ours.test"));
        assert!(!sender_allowed(&cfg, "joe", ""));
        assert!(!sender_allowed(&cfg, "ann", ""));
        assert!(sender_allowed(&cfg, "ann", "x@other.test"));
        let (_h, cfg) = config("joe:*\n");
        assert!(sender_allowed(&cfg, "joe", ""));
        assert!(!sender_allowed(&cfg, "ann", ""));
        let (_h, cfg) = config("*:*\n");
        assert!(sender_allowed(&cfg, "ann", ""));
    }
}
