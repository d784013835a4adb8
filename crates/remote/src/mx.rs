//! Ordering mail exchangers and qmail's prefme rule (RFC 5321 section 5.1;
//! `q103:dns.c:dns_mxip`, `q103:qmail-remote.c`).
//!
//! MX hosts are tried by ascending preference, equal preferences in random order (qmail
//! shuffles ties with an LCG seeded from the time and pid; we use a xorshift seeded the
//! same way). Each exchanger contributes all of its addresses, IPv4 first, then IPv6.
//! prefme is the lowest preference at which one of this host's own addresses appears;
//! only addresses with a preference below it are tried, and if that leaves none the
//! message bounces (we would otherwise deliver to ourselves in a loop). A route from
//! smtproutes sets prefme to 300000, above any real preference, so routes may point here.

use std::net::IpAddr;

/// A preference above every real one (qmail's value for routed mail).
pub const PREFME_ROUTE: u32 = 300_000;

/// One address to try, with the preference and host name it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub ip: IpAddr,
    pub pref: u32,
    /// The host name the address belongs to (for TLS SNI), if it came from DNS.
    pub name: Option<String>,
}

/// A small xorshift generator: enough to shuffle ties, seeded from time and pid.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    pub fn from_env() -> Rng {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        Rng::new(nanos ^ (u64::from(std::process::id()) << 16))
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

/// Sort MX records by preference, shuffling hosts of equal preference.
pub fn order_mx(mut mx: Vec<(u16, String)>, rng: &mut Rng) -> Vec<(u16, String)> {
    // Fisher-Yates first, then a stable sort by preference: ties keep the random order.
    for i in (1..mx.len()).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        mx.swap(i, j);
    }
    mx.sort_by_key(|(p, _)| *p);
    mx
}

/// Apply the prefme rule. `None` means every usable exchanger is this host.
pub fn filter_prefme(
    cands: Vec<Candidate>,
    prefme: Option<u32>,
    ipme: &[IpAddr],
) -> Option<Vec<Candidate>> {
    let prefme = prefme.unwrap_or_else(|| {
        cands
            .iter()
            .filter(|c| ipme.contains(&c.ip))
            .map(|c| c.pref)
            .min()
            .unwrap_or(PREFME_ROUTE)
    });
    let kept: Vec<Candidate> = cands.into_iter().filter(|c| c.pref < prefme).collect();
    if kept.is_empty() { None } else { Some(kept) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(ip: &str, pref: u32) -> Candidate {
        Candidate {
            ip: ip.parse().unwrap(),
            pref,
            name: None,
        }
    }

    #[test]
    fn sorted_by_preference() {
        let mut rng = Rng::new(42);
        let mx = vec![
            (20, "b".to_string()),
            (10, "a".to_string()),
            (30, "c".to_string()),
        ];
        let o = order_mx(mx, &mut rng);
        assert_eq!(
            o.iter().map(|x| x.1.as_str()).collect::<Vec<_>>(),
            ["a", "b", "c"]
        );
    }

    #[test]
    fn ties_are_shuffled_but_stay_in_their_group() {
        let mx: Vec<(u16, String)> = vec![
            (10, "a".into()),
            (10, "b".into()),
            (10, "c".into()),
            (5, "first".into()),
            (50, "last".into()),
        ];
        let mut firsts = std::collections::HashSet::new();
        let mut rng = Rng::new(7);
        for _ in 0..200 {
            let o = order_mx(mx.clone(), &mut rng);
            assert_eq!(o[0].1, "first");
            assert_eq!(o[4].1, "last");
            assert!(o[1..4].iter().all(|x| x.0 == 10));
            firsts.insert(o[1].1.clone());
        }
        assert_eq!(
            firsts.len(),
            3,
            "every tied host should come first sometimes"
        );
    }

    #[test]
    fn prefme_drops_self_and_worse() {
        let me: Vec<IpAddr> = vec!["127.0.0.1".parse().unwrap(), "192.0.2.9".parse().unwrap()];
        let cands = vec![
            c("192.0.2.1", 5),
            c("192.0.2.9", 10),
            c("192.0.2.2", 10),
            c("192.0.2.3", 20),
        ];
        let kept = filter_prefme(cands, None, &me).unwrap();
        assert_eq!(kept, vec![c("192.0.2.1", 5)]);
    }

    #[test]
    fn prefme_best_is_self_is_an_error() {
        let me: Vec<IpAddr> = vec!["127.0.0.1".parse().unwrap()];
        assert!(filter_prefme(vec![c("127.0.0.1", 10), c("192.0.2.2", 20)], None, &me).is_none());
        assert!(filter_prefme(vec![c("127.0.0.1", 0)], None, &me).is_none());
    }

    #[test]
    fn no_self_keeps_everything_and_route_allows_self() {
        let me: Vec<IpAddr> = vec!["127.0.0.1".parse().unwrap()];
        let cands = vec![c("192.0.2.1", 10), c("192.0.2.2", 20)];
        assert_eq!(filter_prefme(cands.clone(), None, &me).unwrap(), cands);
        let own = vec![c("127.0.0.1", 0)];
        assert_eq!(
            filter_prefme(own.clone(), Some(PREFME_ROUTE), &me).unwrap(),
            own
        );
    }
}
