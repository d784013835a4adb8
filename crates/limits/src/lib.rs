//! Sliding-window counters shared by every qmail-smtpd and qmail-popup process: failed
//! logins per client address ([`Kind::AuthFailIp`], `control/authfaillimit`), failed
//! logins per account ([`Kind::AuthFailAccount`], `control/authfailaccountlimit`) and
//! recipients per hour per authenticated user ([`Kind::Rate`], `control/ratelimit`).
//!
//! Layout: one file per key in `HOME/smtpd/<kind>/<name>`, holding the events of the
//! last [`WINDOW`], a line each: `unixtime` (one event) or `unixtime count` (several
//! at once, such as a message's recipients), rewritten under an exclusive `flock`. The directory must be writable by qmaild (the installer
//! creates `HOME/smtpd` as qmaild, mode 0700). A key of at most [`MAX_PLAIN_KEY`]
//! bytes is named by its hex (readable with `xxd -r -p`); a longer one by `md5-` and the
//! hex MD5 of the key, so no login makes a name past NAME_MAX. Client addresses are
//! keyed by [`ip_key`]: IPv4 as is, IPv6 by its /64 (one customer's network).
//!
//! Fail closed: every function returns an error when the directory or a file cannot be
//! used (missing and not creatable, not writable by us, unreadable); callers answer a
//! temporary failure rather than skip the limit.
//!
//! [`reserve`] checks and counts in one step under the lock, so concurrent sessions
//! cannot all pass a check made before any of them counted.
//!
//! Stale files (no event in the window) are removed at most once per [`PRUNE_EVERY`]
//! seconds per kind, by whichever process records an event then (`.pruned-<kind>` next
//! to the kinds' directories holds the time of the last sweep). A file is removed only under its lock, and every open
//! checks after locking that the file it holds is still the one at the path.

use nix::fcntl::{Flock, FlockArg};
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::net::IpAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The window of every counter, in seconds.
pub const WINDOW: u64 = 3600;
/// The default of `control/authfailaccountlimit`: failed logins per hour for one
/// account before further attempts on it are refused.
pub const DEFAULT_ACCOUNT_FAILURES: u64 = 20;
/// The default of `control/authfaillimit`: failed logins per hour from one address.
pub const DEFAULT_IP_FAILURES: u64 = 10;
/// Longest key named by its plain hex.
pub const MAX_PLAIN_KEY: usize = 100;
/// Seconds between sweeps for stale files in one kind's directory.
pub const PRUNE_EVERY: u64 = WINDOW / 4;
/// At most this many events are remembered per key (more are dropped, oldest first).
const KEEP: u64 = 100_000;
/// Longest counter file read.
const MAX_FILE: u64 = 4 * 1024 * 1024;

/// What a counter counts (its directory under `HOME/smtpd`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Failed logins from one client address (SMTP AUTH and POP3 together).
    AuthFailIp,
    /// Failed logins for one account, from anywhere.
    AuthFailAccount,
    /// Recipients accepted for one authenticated user.
    Rate,
}

impl Kind {
    pub fn dir_name(self) -> &'static str {
        match self {
            Kind::AuthFailIp => "authfail",
            Kind::AuthFailAccount => "authfailaccount",
            Kind::Rate => "rate",
        }
    }
}

/// The key of a client address: IPv4 (and IPv4-mapped IPv6) as written, IPv6 as its
/// /64 prefix (`2001:db8:1:2::/64`); anything unparsable as given.
pub fn ip_key(ip: &str) -> String {
    match ip.trim().parse::<IpAddr>() {
        Ok(IpAddr::V4(a)) => a.to_string(),
        Ok(IpAddr::V6(a)) => match a.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = a.segments();
                let net = std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0);
                format!("{net}/64")
            }
        },
        Err(_) => ip.to_string(),
    }
}

/// The file name of `key` (see the module doc).
pub fn file_name(key: &str) -> String {
    if key.len() <= MAX_PLAIN_KEY {
        hex(key.as_bytes())
    } else {
        use md5::Digest;
        format!("md5-{}", hex(&md5::Md5::digest(key.as_bytes())))
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

/// The counters of one installation (`HOME/smtpd`).
#[derive(Debug, Clone)]
pub struct Counters {
    dir: PathBuf,
}

/// A counter file, locked, with the events of the window read from it.
struct Locked {
    file: Flock<File>,
    events: Vec<(u64, u64)>,
}

impl Locked {
    fn total(&self) -> u64 {
        self.events.iter().map(|e| e.1).sum()
    }

    fn add(&mut self, now: u64, n: u64) {
        self.events.push((now, n));
        let mut excess = self.total().saturating_sub(KEEP);
        while excess > 0 && !self.events.is_empty() {
            let take = self.events[0].1.min(excess);
            self.events[0].1 -= take;
            excess -= take;
            if self.events[0].1 == 0 {
                self.events.remove(0);
            }
        }
    }

    fn write(&mut self) -> io::Result<()> {
        let mut out = String::with_capacity(self.events.len() * 14);
        for (t, n) in &self.events {
            if *n == 1 {
                out.push_str(&format!("{t}\n"));
            } else {
                out.push_str(&format!("{t} {n}\n"));
            }
        }
        let f: &mut File = &mut self.file;
        f.seek(SeekFrom::Start(0))?;
        f.set_len(0)?;
        f.write_all(out.as_bytes())
    }
}

fn parse_events(text: &str, now: u64) -> Vec<(u64, u64)> {
    let since = now.saturating_sub(WINDOW);
    text.lines()
        .filter_map(|l| {
            let mut it = l.split_ascii_whitespace();
            let t: u64 = it.next()?.parse().ok()?;
            let n: u64 = match it.next() {
                Some(n) => n.parse().ok()?,
                None => 1,
            };
            Some((t, n))
        })
        .filter(|&(t, n)| t > since && t <= now + 60 && n > 0)
        .collect()
}

impl Counters {
    /// The counters under `dir` (normally `HOME/smtpd`).
    pub fn new(dir: &Path) -> Counters {
        Counters {
            dir: dir.to_path_buf(),
        }
    }

    /// The directory of `kind`, created when missing; an error unless we may write it.
    fn kind_dir(&self, kind: Kind) -> io::Result<PathBuf> {
        let d = self.dir.join(kind.dir_name());
        match std::fs::create_dir(&d) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        nix::unistd::access(
            &d,
            nix::unistd::AccessFlags::W_OK | nix::unistd::AccessFlags::X_OK,
        )
        .map_err(io::Error::from)?;
        if !std::fs::metadata(&d)?.is_dir() {
            return Err(io::Error::other(format!(
                "{} is not a directory",
                d.display()
            )));
        }
        Ok(d)
    }

    /// Open and lock the file of `key`, retrying when a sweep removed it meanwhile.
    fn lock(&self, kind: Kind, key: &str, now: u64) -> io::Result<Locked> {
        let path = self.kind_dir(kind)?.join(file_name(key));
        for _ in 0..5 {
            let f = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)?;
            let mut file =
                Flock::lock(f, FlockArg::LockExclusive).map_err(|(_, e)| io::Error::from(e))?;
            if file.metadata()?.nlink() == 0 {
                continue;
            }
            let mut text = String::new();
            let f: &mut File = &mut file;
            f.take(MAX_FILE).read_to_string(&mut text)?;
            let events = parse_events(&text, now);
            return Ok(Locked { file, events });
        }
        Err(io::Error::other("counter file keeps disappearing"))
    }

    /// The number of events for `key` in the window ending `now`.
    pub fn count(&self, kind: Kind, key: &str, now: u64) -> io::Result<u64> {
        let path = self.kind_dir(kind)?.join(file_name(key));
        let f = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e),
        };
        let mut f = Flock::lock(f, FlockArg::LockShared).map_err(|(_, e)| io::Error::from(e))?;
        let mut text = String::new();
        let r: &mut File = &mut f;
        r.take(MAX_FILE).read_to_string(&mut text)?;
        Ok(parse_events(&text, now).iter().map(|e| e.1).sum())
    }

    /// Record `n` events for `key` at `now`; returns the count in the window after it.
    pub fn record(&self, kind: Kind, key: &str, now: u64, n: u64) -> io::Result<u64> {
        let mut l = self.lock(kind, key, now)?;
        l.add(now, n);
        l.write()?;
        let total = l.total();
        drop(l);
        self.prune_if_due(kind, now);
        Ok(total)
    }

    /// Check and count in one step: when the window holds at most `limit - n` events,
    /// record `n` and return true; otherwise record nothing and return false.
    pub fn reserve(&self, kind: Kind, key: &str, now: u64, n: u64, limit: u64) -> io::Result<bool> {
        let mut l = self.lock(kind, key, now)?;
        if l.total().saturating_add(n) > limit {
            return Ok(false);
        }
        l.add(now, n);
        l.write()?;
        drop(l);
        self.prune_if_due(kind, now);
        Ok(true)
    }

    /// Sweep `kind`'s directory when the last sweep is [`PRUNE_EVERY`] old; errors only
    /// postpone the sweep.
    fn prune_if_due(&self, kind: Kind, now: u64) {
        let stamp = self.dir.join(format!(".pruned-{}", kind.dir_name()));
        let last = std::fs::read_to_string(&stamp)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .unwrap_or(0);
        if now.saturating_sub(last) < PRUNE_EVERY && last <= now {
            return;
        }
        if std::fs::write(&stamp, format!("{now}\n")).is_err() {
            return;
        }
        let _ = self.prune(kind, now);
    }

    /// Remove the files of `kind` whose keys have no event in the window ending `now`;
    /// returns how many were removed. Files busy in another process are left for later.
    pub fn prune(&self, kind: Kind, now: u64) -> io::Result<usize> {
        let dir = self.kind_dir(kind)?;
        let since = now.saturating_sub(WINDOW);
        let mut removed = 0;
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let name = entry.file_name();
            if name.to_string_lossy().starts_with('.') {
                continue;
            }
            let path = entry.path();
            // a file written within the window may hold live events: skip it unread
            match std::fs::symlink_metadata(&path) {
                Ok(m) if m.is_file() && (m.mtime().max(0) as u64) <= since => {}
                _ => continue,
            }
            let Ok(f) = OpenOptions::new().read(true).open(&path) else {
                continue;
            };
            let Ok(mut f) = Flock::lock(f, FlockArg::LockExclusiveNonblock) else {
                continue;
            };
            let mut text = String::new();
            let r: &mut File = &mut f;
            if r.take(MAX_FILE).read_to_string(&mut text).is_err() {
                continue;
            }
            let same = match (f.metadata(), std::fs::symlink_metadata(&path)) {
                (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
                _ => false,
            };
            if same && parse_events(&text, now).is_empty() && std::fs::remove_file(&path).is_ok() {
                removed += 1;
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counters() -> (tempfile::TempDir, Counters) {
        let d = tempfile::tempdir().unwrap();
        let c = Counters::new(d.path());
        (d, c)
    }

    #[test]
    fn window_slides() {
        let (_d, c) = counters();
        let k = Kind::Rate;
        assert_eq!(c.count(k, "joe", 1000).unwrap(), 0);
        assert_eq!(c.record(k, "joe", 1000, 1).unwrap(), 1);
        assert_eq!(c.record(k, "joe", 1001, 1).unwrap(), 2);
        assert_eq!(c.record(k, "ann", 1001, 1).unwrap(), 1);
        assert_eq!(c.count(k, "joe", 1002).unwrap(), 2);
        assert_eq!(c.count(k, "joe", 1000 + WINDOW).unwrap(), 1);
        assert_eq!(c.record(k, "joe", 1001 + WINDOW, 1).unwrap(), 1);
        assert_eq!(file_name("a/b"), "612f62");
    }

    #[test]
    fn old_single_number_lines_still_count() {
        let (d, c) = counters();
        std::fs::create_dir(d.path().join("authfail")).unwrap();
        std::fs::write(
            d.path().join("authfail").join(file_name("1.2.3.4")),
            "990\n995\n",
        )
        .unwrap();
        assert_eq!(c.count(Kind::AuthFailIp, "1.2.3.4", 1000).unwrap(), 2);
    }

    #[test]
    fn ipv6_is_keyed_by_its_64() {
        assert_eq!(ip_key("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::/64");
        assert_eq!(ip_key("2001:db8:1:2:ffff:1:2:3"), "2001:db8:1:2::/64");
        assert_ne!(ip_key("2001:db8:1:3::1"), "2001:db8:1:2::/64");
        assert_eq!(ip_key("10.9.9.9"), "10.9.9.9");
        assert_eq!(ip_key("::ffff:10.9.9.9"), "10.9.9.9");
        assert_eq!(ip_key("unknown"), "unknown");
        // one /64 rotating through addresses shares one counter
        let (_d, c) = counters();
        for i in 1..=5 {
            c.record(
                Kind::AuthFailIp,
                &ip_key(&format!("2001:db8::{i}")),
                1000,
                1,
            )
            .unwrap();
        }
        assert_eq!(
            c.count(Kind::AuthFailIp, &ip_key("2001:db8::99"), 1000)
                .unwrap(),
            5
        );
    }

    #[test]
    fn long_keys_get_bounded_names() {
        let (_d, c) = counters();
        let long = "j".repeat(300);
        let name = file_name(&long);
        assert!(name.len() < 64, "{name}");
        assert!(name.starts_with("md5-"));
        assert!(c.reserve(Kind::Rate, &long, 1000, 1, 5).unwrap());
        assert_eq!(c.count(Kind::Rate, &long, 1000).unwrap(), 1);
        assert_eq!(
            file_name(&"a".repeat(MAX_PLAIN_KEY)).len(),
            2 * MAX_PLAIN_KEY
        );
    }

    #[test]
    fn reserve_counts_only_what_fits() {
        let (_d, c) = counters();
        assert!(c.reserve(Kind::Rate, "joe", 1000, 3, 5).unwrap());
        assert!(!c.reserve(Kind::Rate, "joe", 1000, 3, 5).unwrap());
        assert_eq!(c.count(Kind::Rate, "joe", 1000).unwrap(), 3);
        assert!(c.reserve(Kind::Rate, "joe", 1001, 2, 5).unwrap());
        assert!(!c.reserve(Kind::Rate, "joe", 1002, 1, 5).unwrap());
        assert_eq!(c.count(Kind::Rate, "joe", 1002).unwrap(), 5);
    }

    /// Many processes reserving at once never get more than the limit between them.
    #[test]
    fn concurrent_reservations_respect_the_limit() {
        let (d, _c) = counters();
        let granted = std::sync::atomic::AtomicU64::new(0);
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    let c = Counters::new(d.path());
                    for _ in 0..10 {
                        if c.reserve(Kind::Rate, "joe", 5000, 1, 25).unwrap() {
                            granted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        }
                    }
                });
            }
        });
        assert_eq!(granted.into_inner(), 25);
        assert_eq!(
            Counters::new(d.path())
                .count(Kind::Rate, "joe", 5000)
                .unwrap(),
            25
        );
    }

    #[test]
    fn unusable_directory_is_an_error_not_zero() {
        let d = tempfile::tempdir().unwrap();
        let c = Counters::new(&d.path().join("missing/deeper"));
        assert!(c.count(Kind::AuthFailIp, "1.2.3.4", 1000).is_err());
        assert!(c.record(Kind::AuthFailIp, "1.2.3.4", 1000, 1).is_err());
        assert!(c.reserve(Kind::Rate, "joe", 1000, 1, 10).is_err());
        // a file where the kind's directory should be
        std::fs::write(d.path().join("authfail"), "").unwrap();
        let c = Counters::new(d.path());
        assert!(c.count(Kind::AuthFailIp, "1.2.3.4", 1000).is_err());
    }

    #[test]
    fn stale_files_are_pruned() {
        let (d, c) = counters();
        let now = qnow();
        c.record(Kind::AuthFailIp, "1.1.1.1", now - 2 * WINDOW, 1)
            .unwrap();
        c.record(Kind::AuthFailIp, "2.2.2.2", now, 1).unwrap();
        let dir = d.path().join("authfail");
        // the first file was last written long ago
        let old = nix::sys::time::TimeSpec::new((now - 2 * WINDOW) as i64, 0);
        nix::sys::stat::utimensat(
            nix::fcntl::AT_FDCWD,
            &dir.join(file_name("1.1.1.1")),
            &old,
            &old,
            nix::sys::stat::UtimensatFlags::NoFollowSymlink,
        )
        .unwrap();
        assert_eq!(c.prune(Kind::AuthFailIp, now).unwrap(), 1);
        assert!(!dir.join(file_name("1.1.1.1")).exists());
        assert_eq!(c.count(Kind::AuthFailIp, "2.2.2.2", now).unwrap(), 1);
        // recording sweeps by itself once the last sweep is old enough
        c.record(Kind::AuthFailIp, "3.3.3.3", now - 2 * WINDOW, 1)
            .unwrap();
        nix::sys::stat::utimensat(
            nix::fcntl::AT_FDCWD,
            &dir.join(file_name("3.3.3.3")),
            &old,
            &old,
            nix::sys::stat::UtimensatFlags::NoFollowSymlink,
        )
        .unwrap();
        std::fs::write(
            d.path().join(".pruned-authfail"),
            format!("{}\n", now - PRUNE_EVERY),
        )
        .unwrap();
        c.record(Kind::AuthFailIp, "2.2.2.2", now, 1).unwrap();
        assert!(!dir.join(file_name("3.3.3.3")).exists());
        assert_eq!(c.count(Kind::AuthFailIp, "2.2.2.2", now).unwrap(), 2);
    }

    fn qnow() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }
}
