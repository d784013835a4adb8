//! The lookup cap: a per-message cache handed to mail-auth for every record type, which
//! counts the lookups that miss it. mail-auth asks the cache before each DNS query, so
//! past the cap the cache answers instead of the DNS: a TXT query gets a resolver error
//! (mail-auth turns it into `temperror`), an address, MX or PTR query an empty answer
//! and the meter remembers that it ran dry (the caller then reports `temperror` for the
//! check). Answers within the cap are kept for the rest of the message, so the DMARC
//! walk does not ask again what SPF or DKIM already asked.

use mail_auth::{DnsError, Error, RecordSet, ResolverCache, Txt};
use std::borrow::Borrow;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;

/// The lookups one check may make, shared by its caches.
#[derive(Debug)]
pub struct Budget {
    left: Cell<u32>,
    used: Cell<u32>,
    ran_dry: Cell<bool>,
}

impl Budget {
    pub fn new(lookups: u32) -> Budget {
        Budget {
            left: Cell::new(lookups),
            used: Cell::new(0),
            ran_dry: Cell::new(false),
        }
    }

    /// Take one lookup; false when none is left.
    pub fn take(&self) -> bool {
        match self.left.get() {
            0 => {
                self.ran_dry.set(true);
                false
            }
            n => {
                self.left.set(n - 1);
                self.used.set(self.used.get() + 1);
                true
            }
        }
    }

    pub fn used(&self) -> u32 {
        self.used.get()
    }

    /// Whether a lookup was refused for the cap.
    pub fn ran_dry(&self) -> bool {
        self.ran_dry.get()
    }

    /// Give a new check its own allowance (the cap is per check).
    pub fn refill(&self, lookups: u32) {
        self.left.set(lookups);
        self.ran_dry.set(false);
    }
}

/// What a cache answers past the cap.
pub trait OverCap: Clone {
    fn over_cap() -> Self;
}

impl OverCap for Txt {
    fn over_cap() -> Txt {
        Txt::Error(Error::Dns(DnsError::Resolver(
            "lookup limit reached".into(),
        )))
    }
}

impl<T: Clone> OverCap for RecordSet<T> {
    fn over_cap() -> RecordSet<T> {
        RecordSet {
            rrset: Arc::from(Vec::new()),
            dnssec_status: Default::default(),
        }
    }
}

/// One record type's cache, drawing on a shared [`Budget`].
pub struct Meter<'b, K, V> {
    budget: &'b Budget,
    kept: RefCell<HashMap<K, V>>,
}

impl<'b, K, V> Meter<'b, K, V> {
    pub fn new(budget: &'b Budget) -> Self {
        Meter {
            budget,
            kept: RefCell::new(HashMap::new()),
        }
    }
}

impl<K: Hash + Eq, V: OverCap> ResolverCache<K, V> for Meter<'_, K, V> {
    fn get<Q>(&self, name: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        if let Some(v) = self.kept.borrow().get(name) {
            return Some(v.clone());
        }
        if self.budget.take() {
            None
        } else {
            Some(V::over_cap())
        }
    }

    fn remove<Q>(&self, name: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.kept.borrow_mut().remove(name)
    }

    fn insert(&self, key: K, value: V, _valid_until: std::time::Instant) {
        self.kept.borrow_mut().insert(key, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_past_the_cap_are_answered_by_the_meter() {
        let b = Budget::new(2);
        let m: Meter<Box<str>, RecordSet<u8>> = Meter::new(&b);
        assert!(m.get("a").is_none());
        m.insert("a".into(), RecordSet::over_cap(), std::time::Instant::now());
        assert!(m.get("a").is_some(), "kept answers cost nothing");
        assert!(m.get("b").is_none());
        assert_eq!((b.used(), b.ran_dry()), (2, false));
        let over = m.get("c").unwrap();
        assert!(over.rrset.is_empty());
        assert!(b.ran_dry());
        let t: Meter<Box<str>, Txt> = Meter::new(&b);
        assert!(matches!(
            t.get("x"),
            Some(Txt::Error(Error::Dns(DnsError::Resolver(_))))
        ));
        b.refill(1);
        assert!(!b.ran_dry());
        assert!(t.get("y").is_none());
        assert_eq!(b.used(), 3);
    }
}
