//! The controls qmail-send uses, and qmail's recipient rewriting (`rewrite()`).
//!
//! Rewriting order (qmail.md 2.4): an address without `@` gets `@envnoathost`; while the
//! domain is in `percenthack` and the local part has a `%`, the last `%` becomes the
//! `@`; a domain in `locals` is local; otherwise `virtualdomains` is tried for the whole
//! address, the domain, its `.suffix`es and the empty key: a non-empty prepend P makes
//! the address local as `P-address`, an empty one means "not virtual"; else remote.
//! Numbers go through control's typed reader: a malformed `queuelifetime`,
//! `concurrencylocal` or `concurrencyremote` is logged and its default kept.

use control::{ConstMap, Controls};
use queue::layout::Channel;
use std::io;

#[derive(Clone, Debug)]
pub struct Config {
    pub me: String,
    pub locals: ConstMap,
    pub virtualdomains: ConstMap,
    pub percenthack: ConstMap,
    pub envnoathost: String,
    pub bouncefrom: String,
    pub bouncehost: String,
    pub doublebouncehost: String,
    pub doublebounceto: String,
    pub queuelifetime: u64,
    pub concurrency: [u64; 2],
}

/// A number control through the typed reader: a malformed value is logged and its
/// default used; one out of range (concurrency above 120) the nearest allowed.
fn number(ctl: &Controls, name: &str) -> io::Result<u64> {
    let c = ctl.number(name)?;
    if let Some(i) = &c.invalid {
        log_warning(&i.to_string());
    }
    Ok(c.value)
}

/// One `warning: ...` line in qmail-send's log, which is descriptor 0 (qmail's layout;
/// descriptor 2 is a spawn pipe, so never stderr). One write, as the engine's own lines.
fn log_warning(msg: &str) {
    use std::io::Write;
    use std::os::fd::AsFd;
    if let Ok(fd) = std::io::stdin().as_fd().try_clone_to_owned() {
        let _ = std::fs::File::from(fd).write_all(format!("warning: {msg}\n").as_bytes());
    }
}

impl Config {
    /// Read every control; a missing `me` with a missing `locals` is fatal, as in qmail.
    pub fn load(ctl: &Controls) -> io::Result<Config> {
        let me = ctl.line("me")?;
        let locals = match ctl.list("locals")? {
            Some(l) => l,
            None => vec![
                me.clone()
                    .ok_or_else(|| io::Error::other("control/me and control/locals are missing"))?,
            ],
        };
        Ok(Config {
            me: me.clone().unwrap_or_else(|| "me".into()),
            locals: ConstMap::from_keys(&locals),
            virtualdomains: ConstMap::from_pairs(&ctl.list_or_empty("virtualdomains")?),
            percenthack: ConstMap::from_keys(&ctl.list_or_empty("percenthack")?),
            envnoathost: ctl.line_or_me("envnoathost", "envnoathost")?,
            bouncefrom: ctl
                .line("bouncefrom")?
                .unwrap_or_else(|| "MAILER-DAEMON".into()),
            bouncehost: ctl.line_or_me("bouncehost", "bouncehost")?,
            doublebouncehost: ctl.line_or_me("doublebouncehost", "doublebouncehost")?,
            doublebounceto: ctl
                .line("doublebounceto")?
                .unwrap_or_else(|| "postmaster".into()),
            queuelifetime: number(ctl, "queuelifetime")?,
            concurrency: [
                number(ctl, "concurrencylocal")?,
                number(ctl, "concurrencyremote")?,
            ],
        })
    }

    /// Which channel `addr` goes to, and the address as it is recorded there.
    pub fn rewrite(&self, addr: &str) -> (Channel, String) {
        let mut a = if addr.contains('@') {
            addr.to_string()
        } else {
            format!("{addr}@{}", self.envnoathost)
        };
        loop {
            let at = a.rfind('@').unwrap_or(0);
            if !self.percenthack.contains(&a[at + 1..]) {
                break;
            }
            match a[..at].rfind('%') {
                Some(p) => a = format!("{}@{}", &a[..p], &a[p + 1..at]),
                None => break,
            }
        }
        let at = a.rfind('@').unwrap_or(0);
        let domain = &a[at + 1..];
        if self.locals.contains(domain) {
            return (Channel::Local, a);
        }
        let prepend = self
            .virtualdomains
            .get(&a)
            .or_else(|| self.virtualdomains.lookup_domain(domain, true));
        match prepend {
            Some(p) if !p.is_empty() => (Channel::Local, format!("{p}-{a}")),
            _ => (Channel::Remote, a),
        }
    }

    /// The address as the sender knew it: a virtual-domain prepend removed (bounces).
    pub fn strip_prepend(&self, recorded: &str) -> String {
        let Some(dash) = recorded.find('-') else {
            return recorded.to_string();
        };
        let original = &recorded[dash + 1..];
        let Some(at) = original.rfind('@') else {
            return recorded.to_string();
        };
        let domain = &original[at + 1..];
        if self.locals.contains(domain) {
            return recorded.to_string();
        }
        let prepend = self
            .virtualdomains
            .get(original)
            .or_else(|| self.virtualdomains.lookup_domain(domain, true));
        match prepend {
            Some(p)
                if !p.is_empty()
                    && recorded.len() > p.len()
                    && &recorded[..p.len()] == p
                    && recorded.as_bytes()[p.len()] == b'-' =>
            {
                original.to_string()
            }
            _ => recorded.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> Config {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("me"), "mx.example.test\n").unwrap();
        std::fs::write(d.path().join("locals"), "example.test\nmx.example.test\n").unwrap();
        std::fs::write(
            d.path().join("virtualdomains"),
            "virt.test:vuser\nsales@shop.test:bob\n.sub.test:subu\nexcept.sub.test:\n",
        )
        .unwrap();
        std::fs::write(d.path().join("percenthack"), "example.test\n").unwrap();
        Config::load(&Controls::in_dir(d.path())).unwrap()
    }

    #[test]
    fn malformed_numbers_keep_the_defaults() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("me"), "mx.example.test\n").unwrap();
        std::fs::write(d.path().join("concurrencyremote"), "-5\n").unwrap();
        std::fs::write(d.path().join("concurrencylocal"), "abc\n").unwrap();
        std::fs::write(d.path().join("queuelifetime"), "2d\n").unwrap();
        let c = Config::load(&Controls::in_dir(d.path())).unwrap();
        assert_eq!(c.concurrency, [10, 20]);
        assert_eq!(c.queuelifetime, 604_800);
        std::fs::write(d.path().join("concurrencyremote"), "500\n").unwrap();
        let c = Config::load(&Controls::in_dir(d.path())).unwrap();
        assert_eq!(c.concurrency[1], 120);
    }

    #[test]
    fn rewriting() {
        let c = cfg();
        assert_eq!(
            c.rewrite("joe"),
            (Channel::Local, "joe@mx.example.test".into())
        );
        assert_eq!(
            c.rewrite("joe@Example.TEST"),
            (Channel::Local, "joe@Example.TEST".into())
        );
        assert_eq!(
            c.rewrite("joe@remote.test"),
            (Channel::Remote, "joe@remote.test".into())
        );
        assert_eq!(
            c.rewrite("info@virt.test"),
            (Channel::Local, "vuser-info@virt.test".into())
        );
        assert_eq!(
            c.rewrite("sales@shop.test"),
            (Channel::Local, "bob-sales@shop.test".into())
        );
        assert_eq!(
            c.rewrite("x@a.sub.test"),
            (Channel::Local, "subu-x@a.sub.test".into())
        );
        assert_eq!(
            c.rewrite("x@except.sub.test"),
            (Channel::Remote, "x@except.sub.test".into())
        );
        assert_eq!(
            c.rewrite("u%far.test@example.test"),
            (Channel::Remote, "u@far.test".into())
        );
        assert_eq!(c.strip_prepend("vuser-info@virt.test"), "info@virt.test");
        assert_eq!(c.strip_prepend("joe-x@example.test"), "joe-x@example.test");
    }
}
