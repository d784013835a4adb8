//! `queue/lock/tcpto`: remembering hosts whose connect timed out (`q103:tcpto.c`,
//! qmail.md 6.4), plus what qmail-tcpok and qmail-tcpto do with the file.
//!
//! 1024 bytes = 64 records of 16 bytes: bytes 0-3 an IPv4 address, byte 4 the number of
//! recent timeouts (at most 10), bytes 8-11 the time of the last one (little-endian).
//! An address is skipped when its count is >= 2 and its last timeout is less than
//! `(60 + (pid & 31)) << 6` seconds (3840-5824 s) ago. Only connect timeouts count; a
//! second timeout within 120 s of the previous is not counted; a completed connect or a
//! refused one (the host is up) clears the count. A new address takes the first free
//! slot (count 0) or evicts the record with the smallest `when + count * 1024`. The file
//! is flock'ed while being updated and read without a lock, as qmail does.
//!
//! IPv6 addresses are not recorded (the 16-byte record has room for only 4 address
//! bytes and the format is fixed for compatibility with the original qmail-tcpto).

use nix::fcntl::{Flock, FlockArg};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

pub const SIZE: usize = 1024;
pub const RECORD: usize = 16;

fn when_of(r: &[u8]) -> u64 {
    u64::from(u32::from_le_bytes([r[8], r[9], r[10], r[11]]))
}

fn set_when(r: &mut [u8], when: u64) {
    r[8..12].copy_from_slice(&(when as u32).to_le_bytes());
}

/// The skip rule on a file image: `(skip, was_there)`.
pub fn check(buf: &[u8], ip: Ipv4Addr, now: u64, pid: u32) -> (bool, bool) {
    for r in buf.chunks_exact(RECORD) {
        if r[..4] == ip.octets() {
            if r[4] >= 2 {
                let window = (60 + u64::from(pid & 31)) << 6;
                return (now.saturating_sub(when_of(r)) < window, true);
            }
            return (false, true);
        }
    }
    (false, false)
}

/// The update rule on a file image: which record to rewrite and its new bytes, or
/// `None` when nothing changes. `timeout` is true for a connect timeout.
pub fn update(buf: &[u8], ip: Ipv4Addr, timeout: bool, now: u64) -> Option<(usize, [u8; RECORD])> {
    let n = buf.len() / RECORD;
    for i in 0..n {
        let r = &buf[i * RECORD..(i + 1) * RECORD];
        if r[..4] == ip.octets() {
            let mut rec = [0u8; RECORD];
            rec.copy_from_slice(r);
            if !timeout {
                if rec[4] == 0 {
                    return None;
                }
                rec[4] = 0;
            } else {
                if rec[4] != 0 && now < 120 + when_of(&rec) {
                    return None;
                }
                rec[4] = rec[4].saturating_add(1).min(10);
                set_when(&mut rec, now);
            }
            return Some((i, rec));
        }
    }
    if !timeout {
        return None;
    }
    let mut pos = None;
    let mut best = 0u64;
    for i in 0..n {
        let r = &buf[i * RECORD..(i + 1) * RECORD];
        if r[4] == 0 {
            pos = Some(i);
            break;
        }
        let score = when_of(r) + (u64::from(r[4]) << 10);
        if pos.is_none() || score < best {
            pos = Some(i);
            best = score;
        }
    }
    let i = pos?;
    let mut rec = [0u8; RECORD];
    rec[..4].copy_from_slice(&ip.octets());
    rec[4] = 1;
    set_when(&mut rec, now);
    Some((i, rec))
}

/// One `qmail-tcpto` output line per record with a nonzero count.
pub fn describe(buf: &[u8], now: u64) -> String {
    let mut out = String::new();
    for r in buf.chunks_exact(RECORD) {
        if r[4] != 0 {
            let ip = Ipv4Addr::new(r[0], r[1], r[2], r[3]);
            out.push_str(&format!(
                "{ip} timed out {} seconds ago; # recent timeouts: {}\n",
                now.saturating_sub(when_of(r)),
                r[4]
            ));
        }
    }
    out
}

fn read_image(f: &mut File) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(SIZE);
    f.take(SIZE as u64).read_to_end(&mut buf)?;
    buf.truncate(buf.len() / RECORD * RECORD);
    Ok(buf)
}

/// qmail-remote's view of the file. Every error is ignored, as in qmail: the file is
/// an optimisation, never a reason to fail a delivery.
pub struct Tcpto {
    path: PathBuf,
    was_there: Vec<Ipv4Addr>,
}

impl Tcpto {
    pub fn new(path: &Path) -> Tcpto {
        Tcpto {
            path: path.to_path_buf(),
            was_there: Vec::new(),
        }
    }

    /// Should this address be skipped now?
    pub fn skip(&mut self, ip: IpAddr) -> bool {
        let IpAddr::V4(ip) = ip else { return false };
        let Ok(mut f) = File::open(&self.path) else {
            return false;
        };
        let Ok(buf) = read_image(&mut f) else {
            return false;
        };
        let (skip, there) = check(&buf, ip, qsys::now(), std::process::id());
        if there {
            self.was_there.push(ip);
        }
        skip
    }

    /// Record the outcome of a connect: `timeout` true for a connect timeout, false for
    /// a success or any other error.
    pub fn record(&mut self, ip: IpAddr, timeout: bool) {
        let IpAddr::V4(ip) = ip else { return };
        if !timeout && !self.was_there.contains(&ip) {
            return;
        }
        let Ok(f) = OpenOptions::new().read(true).write(true).open(&self.path) else {
            return;
        };
        let Ok(mut f) = Flock::lock(f, FlockArg::LockExclusive) else {
            return;
        };
        let Ok(buf) = read_image(&mut f) else { return };
        if let Some((i, rec)) = update(&buf, ip, timeout, qsys::now())
            && f.seek(SeekFrom::Start((i * RECORD) as u64)).is_ok()
        {
            let _ = f.write_all(&rec);
        }
    }
}

/// qmail-tcpok: zero the file (1024 NUL bytes) under an exclusive lock.
pub fn zero(path: &Path) -> std::io::Result<()> {
    let f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    let mut f =
        Flock::lock(f, FlockArg::LockExclusive).map_err(|(_, e)| std::io::Error::from(e))?;
    f.write_all(&[0u8; SIZE])?;
    f.flush()
}

/// qmail-tcpto: the listing of the file at `path`.
pub fn list(path: &Path) -> std::io::Result<String> {
    let mut f = File::open(path)?;
    let buf = read_image(&mut f)?;
    Ok(describe(&buf, qsys::now()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);

    fn apply(buf: &mut [u8], ip: Ipv4Addr, timeout: bool, now: u64) {
        if let Some((i, rec)) = update(buf, ip, timeout, now) {
            buf[i * RECORD..(i + 1) * RECORD].copy_from_slice(&rec);
        }
    }

    #[test]
    fn two_timeouts_skip_for_a_while() {
        let mut b = vec![0u8; SIZE];
        apply(&mut b, IP, true, 1000);
        assert_eq!(check(&b, IP, 1001, 0), (false, true));
        // within 120 s: not counted
        apply(&mut b, IP, true, 1100);
        assert_eq!(b[4], 1);
        apply(&mut b, IP, true, 1200);
        assert_eq!(b[4], 2);
        assert_eq!(when_of(&b[..16]), 1200);
        assert_eq!(check(&b, IP, 1200 + 3839, 0), (true, true));
        assert_eq!(check(&b, IP, 1200 + 3840, 0), (false, true));
        assert_eq!(check(&b, IP, 1200 + 5823, 31), (true, true));
        assert_eq!(
            check(&b, Ipv4Addr::new(192, 0, 2, 2), 1201, 0),
            (false, false)
        );
    }

    #[test]
    fn success_clears_and_count_caps_at_ten() {
        let mut b = vec![0u8; SIZE];
        for k in 0..20 {
            apply(&mut b, IP, true, 10_000 + k * 200);
        }
        assert_eq!(b[4], 10);
        apply(&mut b, IP, false, 20_000);
        assert_eq!(b[4], 0);
        assert_eq!(&b[..4], &IP.octets());
        assert_eq!(update(&b, Ipv4Addr::new(10, 0, 0, 1), false, 1), None);
    }

    #[test]
    fn eviction_takes_free_slot_then_smallest_score() {
        let mut b = vec![0u8; SIZE];
        for i in 0..64u8 {
            apply(
                &mut b,
                Ipv4Addr::new(10, 0, 0, i),
                true,
                100_000 + u64::from(i),
            );
        }
        // all slots taken; the oldest (10.0.0.0 at 100000) has the smallest score
        apply(&mut b, IP, true, 200_000);
        assert_eq!(&b[..4], &IP.octets());
        // a freed slot (count 0) is taken first
        apply(&mut b, Ipv4Addr::new(10, 0, 0, 9), false, 200_001);
        let other = Ipv4Addr::new(10, 9, 9, 9);
        apply(&mut b, other, true, 200_002);
        assert_eq!(&b[9 * 16..9 * 16 + 4], &other.octets());
    }

    #[test]
    fn listing_and_file_ops() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("tcpto");
        zero(&p).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), vec![0u8; SIZE]);
        let mut t = Tcpto::new(&p);
        assert!(!t.skip(IpAddr::V4(IP)));
        t.record(IpAddr::V4(IP), true);
        t.record("::1".parse().unwrap(), true);
        let s = list(&p).unwrap();
        assert!(s.starts_with("192.0.2.1 timed out "), "{s}");
        assert!(s.ends_with(" seconds ago; # recent timeouts: 1\n"), "{s}");
        assert_eq!(s.lines().count(), 1);
        zero(&p).unwrap();
        assert_eq!(list(&p).unwrap(), "");
        assert_eq!(describe(&[1, 2, 3], 0), "");
    }
}
