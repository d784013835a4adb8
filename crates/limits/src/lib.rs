//! Sliding-window counters shared by every qmail-smtpd and qmail-popup process: failed
//! logins per client address ([`Kind::AuthFailIp`], `control/authfaillimit`), failed
//! logins per account ([`Kind::AuthFailAccount`], `control/authfailaccountlimit`),
//! successful logins per account and address ([`Kind::AuthOk`], which lets an address
//! that logged in recently past a locked account) and recipients per hour per
//! authenticated user ([`Kind::Rate`], `control/ratelimit`), and Postfix anvil's
//! per-client rates: MAIL commands, RCPT commands and AUTH commands per client address
//! per minute ([`ClientEvent`], `control/clientmessagerate`, `clientrcptrate`,
//! `clientauthrate`; see [`Counters::client_event`]).
//!
//! Layout: one file per key in `HOME/smtpd/<kind>/<name>`, holding the events of the
//! kind's window (an hour; for the client rates [`CLIENT_WINDOW`] unless the caller
//! sets another, see [`Counters::with_client_window`]) as lines
//! `unixtime count`, at most one line per second (events of one second are merged),
//! so a file never holds more than the window + 60 lines
//! whatever the counts; it is rewritten under an exclusive `flock`. Counts add up
//! saturating, so every limit is enforced however large. The directory must be
//! writable by qmaild (the installer creates `HOME/smtpd` as qmaild, mode 0700). A key
//! of at most [`MAX_PLAIN_KEY`] bytes is named `k` and its hex (readable with
//! `xxd -r -p`); a longer one `md5-` and the hex MD5 of the key, so no login makes a
//! name past NAME_MAX; an empty key is the key `unknown`. Client addresses are keyed
//! by [`ip_key`]: IPv4 as is, IPv6 by its /64 (one customer's network).
//!
//! Fail closed: every function returns an error when the directory or a file cannot be
//! used (missing and not creatable, not writable by us, unreadable); callers answer a
//! temporary failure rather than skip the limit.
//!
//! [`Counters::reserve`] checks and counts in one step under the lock, so concurrent
//! sessions cannot all pass a check made before any of them counted; a reservation
//! that turns out not to be needed (a login that succeeded, a message not queued) is
//! given back with [`Counters::release`]. [`Counters::reserve_all`] does this for
//! several counters at once (a failed login counts per address and per account).
//!
//! Stale files (no event in the window) are removed at most once per quarter window
//! ([`PRUNE_EVERY`] for the hourly kinds) per kind, by whichever process records an event then (`.pruned-<kind>` next
//! to the kinds' directories holds the time of the last sweep). A file is removed only
//! under its lock and only when it holds no event of the window: writers check after
//! locking that the file they hold is still the one at the path (and retry), while
//! [`Counters::count`], which only reads, needs no such check (a removed file held
//! nothing to count).

use nix::fcntl::{Flock, FlockArg};
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::net::IpAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The window of the hourly counters (logins, the AUTH user's recipients), in seconds.
pub const WINDOW: u64 = 3600;
/// The default window of the per-client rates ([`ClientEvent`]), in seconds: Postfix's
/// `anvil_rate_time_unit` (`control/clientratewindow`).
pub const CLIENT_WINDOW: u64 = 60;
/// The default of `control/authfailaccountlimit`: failed logins per hour for one
/// account before further attempts on it are refused.
pub const DEFAULT_ACCOUNT_FAILURES: u64 = 20;
/// The default of `control/authfaillimit`: failed logins per hour from one address.
pub const DEFAULT_IP_FAILURES: u64 = 10;
/// Longest key named by its plain hex.
pub const MAX_PLAIN_KEY: usize = 100;
/// Seconds between sweeps for stale files in the directory of an hourly kind (a
/// quarter of its window, as for every kind).
pub const PRUNE_EVERY: u64 = WINDOW / 4;
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
    /// Successful logins for one account from one address ([`ok_key`]).
    AuthOk,
    /// MAIL commands from one client address ([`ClientEvent::Message`]).
    ClientMessage,
    /// RCPT commands from one client address ([`ClientEvent::Recipient`]).
    ClientRecipient,
    /// AUTH commands from one client address ([`ClientEvent::Auth`]).
    ClientAuth,
}

impl Kind {
    pub fn dir_name(self) -> &'static str {
        match self {
            Kind::AuthFailIp => "authfail",
            Kind::AuthFailAccount => "authfailaccount",
            Kind::Rate => "rate",
            Kind::AuthOk => "authok",
            Kind::ClientMessage => "clientmessage",
            Kind::ClientRecipient => "clientrcpt",
            Kind::ClientAuth => "clientauth",
        }
    }

    /// True for the per-client rates, whose window is the counters' client window
    /// ([`Counters::with_client_window`]); the others count over [`WINDOW`].
    pub fn is_client_rate(self) -> bool {
        match self {
            Kind::ClientMessage | Kind::ClientRecipient | Kind::ClientAuth => true,
            Kind::AuthFailIp | Kind::AuthFailAccount | Kind::Rate | Kind::AuthOk => false,
        }
    }
}

/// What Postfix's anvil counts per client address and time unit
/// (`smtpd_client_message_rate_limit`, `_recipient_`, `_auth_`): commands a client
/// sent, whether or not they were then accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientEvent {
    /// A MAIL command (a message delivery request).
    Message,
    /// A RCPT command.
    Recipient,
    /// An AUTH command.
    Auth,
}

impl ClientEvent {
    pub fn kind(self) -> Kind {
        match self {
            ClientEvent::Message => Kind::ClientMessage,
            ClientEvent::Recipient => Kind::ClientRecipient,
            ClientEvent::Auth => Kind::ClientAuth,
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

/// The key of [`Kind::AuthOk`]: `account` logged in from the address keyed `ip_key`.
pub fn ok_key(account: &str, ip_key: &str) -> String {
    format!("{account} {ip_key}")
}

/// The file name of `key` (see the module doc).
pub fn file_name(key: &str) -> String {
    let key = if key.is_empty() { "unknown" } else { key };
    if key.len() <= MAX_PLAIN_KEY {
        format!("k{}", hex(key.as_bytes()))
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
    client_window: u64,
}

/// A counter file, locked, with the events of the window read from it.
struct Locked {
    file: Flock<File>,
    events: Vec<(u64, u64)>,
}

impl Locked {
    fn total(&self) -> u64 {
        sum(&self.events)
    }

    /// Add `n` events at `now`, merged into the line of that second.
    fn add(&mut self, now: u64, n: u64) {
        match self.events.iter_mut().find(|e| e.0 == now) {
            Some(e) => e.1 = e.1.saturating_add(n),
            None => {
                self.events.push((now, n));
                self.events.sort_unstable();
            }
        }
    }

    /// Take back up to `n` events, the newest first.
    fn remove(&mut self, mut n: u64) {
        while n > 0 {
            let Some(last) = self.events.last_mut() else {
                return;
            };
            let take = last.1.min(n);
            last.1 -= take;
            n -= take;
            if last.1 == 0 {
                self.events.pop();
            }
        }
    }

    fn write(&mut self) -> io::Result<()> {
        let mut out = String::with_capacity(self.events.len() * 16);
        for (t, n) in &self.events {
            out.push_str(&format!("{t} {n}\n"));
        }
        let f: &mut File = &mut self.file;
        f.seek(SeekFrom::Start(0))?;
        f.set_len(0)?;
        f.write_all(out.as_bytes())
    }
}

fn sum(events: &[(u64, u64)]) -> u64 {
    events.iter().fold(0u64, |a, e| a.saturating_add(e.1))
}

/// The events of the `window` seconds ending `now` in a counter file (lines
/// `unixtime` or `unixtime count`), one per second, oldest first.
fn parse_events(text: &str, now: u64, window: u64) -> Vec<(u64, u64)> {
    let since = now.saturating_sub(window);
    let mut events: Vec<(u64, u64)> = text
        .lines()
        .filter_map(|l| {
            let mut it = l.split_ascii_whitespace();
            let t: u64 = it.next()?.parse().ok()?;
            let n: u64 = match it.next() {
                Some(n) => n.parse().ok()?,
                None => 1,
            };
            Some((t, n))
        })
        .filter(|&(t, n)| t > since && t <= now.saturating_add(60) && n > 0)
        .collect();
    events.sort_unstable();
    events.dedup_by(|later, first| {
        if later.0 == first.0 {
            first.1 = first.1.saturating_add(later.1);
            true
        } else {
            false
        }
    });
    events
}

impl Counters {
    /// The counters under `dir` (normally `HOME/smtpd`).
    pub fn new(dir: &Path) -> Counters {
        Counters {
            dir: dir.to_path_buf(),
            client_window: CLIENT_WINDOW,
        }
    }

    /// The same counters with the per-client rates counted over `secs` seconds (at
    /// least 1) instead of [`CLIENT_WINDOW`].
    pub fn with_client_window(mut self, secs: u64) -> Counters {
        self.client_window = secs.max(1);
        self
    }

    /// The window `kind` counts over, in seconds.
    pub fn window(&self, kind: Kind) -> u64 {
        if kind.is_client_rate() {
            self.client_window
        } else {
            WINDOW
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
            let events = parse_events(&text, now, self.window(kind));
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
        Ok(sum(&parse_events(&text, now, self.window(kind))))
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

    /// Give back `n` events of `key` (the newest), as taken by [`Counters::reserve`]
    /// for something that did not happen after all.
    pub fn release(&self, kind: Kind, key: &str, now: u64, n: u64) -> io::Result<()> {
        let mut l = self.lock(kind, key, now)?;
        l.remove(n);
        l.write()
    }

    /// [`Counters::reserve`] one event on each counter `(kind, key, limit)` with a
    /// limit (0 = none), all or nothing: `Ok(None)` when all fit (a [`Hold`] to give
    /// back with [`Hold::release`] when not needed); `Ok(Some(kind))` names the first
    /// counter that was full, and nothing is held then.
    pub fn reserve_all(
        &self,
        counters: &[(Kind, &str, u64)],
        now: u64,
    ) -> io::Result<Result<Hold, Kind>> {
        let mut hold = Hold {
            counters: self.clone(),
            now,
            held: Vec::new(),
        };
        for &(kind, key, limit) in counters {
            if limit == 0 {
                continue;
            }
            match self.reserve(kind, key, now, 1, limit) {
                Ok(true) => hold.held.push((kind, key.to_string())),
                Ok(false) => {
                    hold.release()?;
                    return Ok(Err(kind));
                }
                Err(e) => {
                    let _ = hold.release();
                    return Err(e);
                }
            }
        }
        Ok(Ok(hold))
    }

    /// Reserve one failed login of `account` from `remote_ip` before its password is
    /// checked (SMTP AUTH and POP3 share this), under the counters' locks, so parallel
    /// sessions cannot check more than the limits allow: the [`Hold`] is given back
    /// when the login was not a failure. An address that logged in to the account within
    /// the window (see [`Counters::record_login`]) is counted but not refused by the
    /// account's limit, so guessing cannot lock the owner out from where they log in.
    /// `Ok(Err(kind))` names the full counter.
    pub fn reserve_login(
        &self,
        remote_ip: &str,
        account: &str,
        limits: LoginLimits,
        now: u64,
    ) -> io::Result<Result<Hold, Kind>> {
        let ip = ip_key(remote_ip);
        let mut per_account = limits.per_account;
        if per_account > 0
            && self
                .count(Kind::AuthOk, &ok_key(account, &ip), now)
                .is_ok_and(|n| n > 0)
        {
            per_account = u64::MAX;
        }
        self.reserve_all(
            &[
                (Kind::AuthFailIp, ip.as_str(), limits.per_address),
                (Kind::AuthFailAccount, account, per_account),
            ],
            now,
        )
    }

    /// Remember that `account` logged in from `remote_ip` (for [`Counters::reserve_login`]).
    pub fn record_login(&self, remote_ip: &str, account: &str, now: u64) -> io::Result<()> {
        self.record(Kind::AuthOk, &ok_key(account, &ip_key(remote_ip)), now, 1)
            .map(|_| ())
    }

    /// Count one `event` of the client at `remote_ip` (keyed by [`ip_key`]: an IPv4
    /// address, an IPv6 /64) against `limit` per client window (0 = no limit:
    /// nothing is counted): `Ok(true)` when it fits and was counted, `Ok(false)` when
    /// the client already made `limit` such requests in the window. Checked and
    /// counted in one step under the counter's lock, so concurrent sessions from one
    /// address share the limit exactly. Refused requests are not counted, so a client
    /// that waits gets through again once its oldest events leave the window.
    pub fn client_event(
        &self,
        event: ClientEvent,
        remote_ip: &str,
        limit: u64,
        now: u64,
    ) -> io::Result<bool> {
        if limit == 0 {
            return Ok(true);
        }
        self.reserve(event.kind(), &ip_key(remote_ip), now, 1, limit)
    }

    /// Sweep `kind`'s directory when the last sweep is a quarter window old (at least
    /// 15 seconds); errors only postpone the sweep.
    fn prune_if_due(&self, kind: Kind, now: u64) {
        let stamp = self.dir.join(format!(".pruned-{}", kind.dir_name()));
        let last = std::fs::read_to_string(&stamp)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .unwrap_or(0);
        if now.saturating_sub(last) < (self.window(kind) / 4).max(15) && last <= now {
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
        let since = now.saturating_sub(self.window(kind));
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
            if same
                && parse_events(&text, now, self.window(kind)).is_empty()
                && std::fs::remove_file(&path).is_ok()
            {
                removed += 1;
            }
        }
        Ok(removed)
    }
}

/// The limits on failed logins per hour: per client address (an IPv4 address or an
/// IPv6 /64) and per account; 0 = none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoginLimits {
    pub per_address: u64,
    pub per_account: u64,
}

/// Events reserved by [`Counters::reserve_all`]. Dropped, they stay counted (a failed
/// login); [`Hold::release`] gives them back (a login that succeeded or could not be
/// checked).
#[derive(Debug)]
pub struct Hold {
    counters: Counters,
    now: u64,
    held: Vec<(Kind, String)>,
}

impl Hold {
    /// Give back every event held; the first error, after trying them all.
    pub fn release(mut self) -> io::Result<()> {
        let mut result = Ok(());
        for (kind, key) in std::mem::take(&mut self.held) {
            if let Err(e) = self.counters.release(kind, &key, self.now, 1)
                && result.is_ok()
            {
                result = Err(e);
            }
        }
        result
    }
}

/// Events reserved on one counter for something still under way (the recipients of an
/// open SMTP transaction): given back when dropped, kept only by [`Refund::keep`] once
/// the thing happened (the message was queued).
#[derive(Debug)]
pub struct Refund {
    counters: Counters,
    kind: Kind,
    key: String,
    n: u64,
}

impl Refund {
    /// Nothing reserved yet on `key` of `kind`.
    pub fn new(counters: Counters, kind: Kind, key: &str) -> Refund {
        Refund {
            counters,
            kind,
            key: key.to_string(),
            n: 0,
        }
    }

    /// One more event reserved (already counted by [`Counters::reserve`]).
    pub fn add(&mut self, n: u64) {
        self.n = self.n.saturating_add(n);
    }

    /// The events happened: keep them counted.
    pub fn keep(mut self) {
        self.n = 0;
    }
}

/// Errors are ignored: the events then stay counted, the safe side.
impl Drop for Refund {
    fn drop(&mut self) {
        if self.n > 0 {
            let _ = self
                .counters
                .release(self.kind, &self.key, qsys::now(), self.n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_login_reservation_spares_an_address_that_logged_in() {
        let (_d, c) = counters();
        let limits = LoginLimits {
            per_address: 10,
            per_account: 1,
        };
        let held = c.reserve_login("192.0.2.1", "joe", limits, 1000).unwrap();
        drop(held.unwrap()); // a failure: stays counted
        assert_eq!(
            c.reserve_login("192.0.2.1", "joe", limits, 1001)
                .unwrap()
                .err(),
            Some(Kind::AuthFailAccount)
        );
        c.record_login("192.0.2.2", "joe", 1002).unwrap();
        let held = c.reserve_login("192.0.2.2", "joe", limits, 1003).unwrap();
        held.unwrap().release().unwrap();
        assert_eq!(
            c.count(Kind::AuthFailIp, &ip_key("192.0.2.2"), 1004)
                .unwrap(),
            0
        );
    }

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
        assert_eq!(file_name("a/b"), "k612f62");
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
            2 * MAX_PLAIN_KEY + 1
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

    /// How many of 8 x 10 parallel `attempt`s, each on its own [`Counters`] of one
    /// directory (as separate processes have), were granted.
    fn granted_in_parallel(dir: &Path, attempt: impl Fn(&Counters) -> bool + Sync) -> u64 {
        let granted = std::sync::atomic::AtomicU64::new(0);
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    let c = Counters::new(dir);
                    for _ in 0..10 {
                        if attempt(&c) {
                            granted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        }
                    }
                });
            }
        });
        granted.into_inner()
    }

    /// Many processes reserving at once never get more than the limit between them.
    #[test]
    fn concurrent_reservations_respect_the_limit() {
        let (d, _c) = counters();
        let granted = granted_in_parallel(d.path(), |c| {
            c.reserve(Kind::Rate, "joe", 5000, 1, 25).unwrap()
        });
        assert_eq!(granted, 25);
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

    /// A limit above any fixed cap is still enforced.
    #[test]
    fn large_limits_are_enforced() {
        let (_d, c) = counters();
        assert!(
            c.reserve(Kind::Rate, "joe", 1000, 150_000, 200_000)
                .unwrap()
        );
        assert!(!c.reserve(Kind::Rate, "joe", 1001, 60_000, 200_000).unwrap());
        assert!(c.reserve(Kind::Rate, "joe", 1001, 50_000, 200_000).unwrap());
        assert!(!c.reserve(Kind::Rate, "joe", 1002, 1, 200_000).unwrap());
        assert_eq!(c.count(Kind::Rate, "joe", 1002).unwrap(), 200_000);
        // sums saturate instead of wrapping round to a small number
        let big = u64::MAX - 1;
        assert!(c.reserve(Kind::Rate, "ann", 1000, big, big).unwrap());
        assert!(!c.reserve(Kind::Rate, "ann", 1000, 2, big).unwrap());
        c.record(Kind::Rate, "ann", 1001, u64::MAX).unwrap();
        assert_eq!(c.count(Kind::Rate, "ann", 1001).unwrap(), u64::MAX);
    }

    /// Events of one second share one line, so a file stays small however many.
    #[test]
    fn same_second_events_share_a_line() {
        let (d, c) = counters();
        for _ in 0..500 {
            assert!(c.reserve(Kind::Rate, "joe", 1000, 1, 1000).unwrap());
        }
        c.record(Kind::Rate, "joe", 1001, 3).unwrap();
        let text = std::fs::read_to_string(d.path().join("rate").join(file_name("joe"))).unwrap();
        assert_eq!(text, "1000 500\n1001 3\n");
        // old files with one line per event are merged when rewritten
        std::fs::write(
            d.path().join("rate").join(file_name("ann")),
            "990\n990\n995 2\n990\n",
        )
        .unwrap();
        c.record(Kind::Rate, "ann", 1000, 1).unwrap();
        let text = std::fs::read_to_string(d.path().join("rate").join(file_name("ann"))).unwrap();
        assert_eq!(text, "990 3\n995 2\n1000 1\n");
    }

    #[test]
    fn released_events_no_longer_count() {
        let (_d, c) = counters();
        assert!(c.reserve(Kind::Rate, "joe", 1000, 3, 5).unwrap());
        assert!(c.reserve(Kind::Rate, "joe", 1001, 2, 5).unwrap());
        c.release(Kind::Rate, "joe", 1002, 3).unwrap();
        assert_eq!(c.count(Kind::Rate, "joe", 1002).unwrap(), 2);
        c.release(Kind::Rate, "joe", 1002, 10).unwrap();
        assert_eq!(c.count(Kind::Rate, "joe", 1002).unwrap(), 0);
    }

    #[test]
    fn reserve_all_holds_all_or_nothing() {
        let (_d, c) = counters();
        let set = [
            (Kind::AuthFailIp, "1.2.3.4", 3),
            (Kind::AuthFailAccount, "joe", 1),
            (Kind::Rate, "unused", 0),
        ];
        let hold = c.reserve_all(&set, 1000).unwrap().unwrap();
        assert_eq!(c.count(Kind::AuthFailIp, "1.2.3.4", 1000).unwrap(), 1);
        assert_eq!(c.count(Kind::AuthFailAccount, "joe", 1000).unwrap(), 1);
        // the account is full: nothing more is held for the address either
        assert_eq!(
            c.reserve_all(&set, 1000).unwrap().err(),
            Some(Kind::AuthFailAccount)
        );
        assert_eq!(c.count(Kind::AuthFailIp, "1.2.3.4", 1000).unwrap(), 1);
        assert_eq!(c.count(Kind::Rate, "unused", 1000).unwrap(), 0);
        hold.release().unwrap();
        assert_eq!(c.count(Kind::AuthFailIp, "1.2.3.4", 1000).unwrap(), 0);
        assert_eq!(c.count(Kind::AuthFailAccount, "joe", 1000).unwrap(), 0);
        // a dropped hold stays counted
        drop(c.reserve_all(&set, 1000).unwrap().unwrap());
        assert_eq!(c.count(Kind::AuthFailAccount, "joe", 1000).unwrap(), 1);
    }

    #[test]
    fn refunds_give_back_unless_kept() {
        let (_d, c) = counters();
        let now = qnow();
        let mut r = Refund::new(c.clone(), Kind::Rate, "joe");
        for _ in 0..3 {
            assert!(c.reserve(Kind::Rate, "joe", now, 1, 10).unwrap());
            r.add(1);
        }
        drop(r);
        assert_eq!(c.count(Kind::Rate, "joe", now).unwrap(), 0);
        let mut r = Refund::new(c.clone(), Kind::Rate, "joe");
        assert!(c.reserve(Kind::Rate, "joe", now, 2, 10).unwrap());
        r.add(2);
        r.keep();
        assert_eq!(c.count(Kind::Rate, "joe", now).unwrap(), 2);
    }

    /// An empty key (no client address known) is a counter like any other.
    #[test]
    fn an_empty_key_is_counted_as_unknown() {
        let (_d, c) = counters();
        assert!(c.reserve(Kind::AuthFailIp, "", 1000, 1, 5).unwrap());
        assert_eq!(c.record(Kind::AuthFailIp, "", 1000, 1).unwrap(), 2);
        assert_eq!(c.count(Kind::AuthFailIp, "unknown", 1000).unwrap(), 2);
        assert!(file_name("").starts_with('k'));
        assert!(file_name(&"x".repeat(300)).starts_with("md5-"));
    }

    #[test]
    fn client_events_are_counted_per_address_over_the_client_window() {
        let (_d, c) = counters();
        let ev = ClientEvent::Message;
        // 0 = no limit: nothing counted
        assert!(c.client_event(ev, "192.0.2.1", 0, 1000).unwrap());
        assert_eq!(c.count(Kind::ClientMessage, "192.0.2.1", 1000).unwrap(), 0);
        for _ in 0..3 {
            assert!(c.client_event(ev, "192.0.2.1", 3, 1000).unwrap());
        }
        assert!(!c.client_event(ev, "192.0.2.1", 3, 1001).unwrap());
        // other events and other addresses have their own counters
        assert!(
            c.client_event(ClientEvent::Recipient, "192.0.2.1", 3, 1001)
                .unwrap()
        );
        assert!(c.client_event(ev, "192.0.2.2", 3, 1001).unwrap());
        // an IPv6 /64 is one client
        assert!(
            c.client_event(ClientEvent::Auth, "2001:db8::1", 1, 1001)
                .unwrap()
        );
        assert!(
            !c.client_event(ClientEvent::Auth, "2001:db8::2", 1, 1001)
                .unwrap()
        );
        // refusals were not counted: a minute after the first events, all fit again
        assert!(
            !c.client_event(ev, "192.0.2.1", 3, 1000 + CLIENT_WINDOW - 1)
                .unwrap()
        );
        assert!(
            c.client_event(ev, "192.0.2.1", 3, 1000 + CLIENT_WINDOW)
                .unwrap()
        );
        // the hourly kinds keep their hour
        assert_eq!(c.window(Kind::Rate), WINDOW);
        let short = c.clone().with_client_window(2);
        assert_eq!(short.window(Kind::ClientAuth), 2);
        assert_eq!(short.window(Kind::AuthFailIp), WINDOW);
        assert_eq!(
            c.clone()
                .with_client_window(0)
                .window(Kind::ClientRecipient),
            1
        );
        assert!(short.client_event(ev, "192.0.2.9", 1, 5000).unwrap());
        assert!(!short.client_event(ev, "192.0.2.9", 1, 5001).unwrap());
        assert!(short.client_event(ev, "192.0.2.9", 1, 5002).unwrap());
    }

    /// Parallel sessions from one address get exactly the limit between them.
    #[test]
    fn concurrent_client_events_respect_the_limit() {
        let (d, _c) = counters();
        let granted = granted_in_parallel(d.path(), |c| {
            c.client_event(ClientEvent::Recipient, "10.1.1.1", 33, 7000)
                .unwrap()
        });
        assert_eq!(granted, 33);
    }

    fn qnow() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }
}
