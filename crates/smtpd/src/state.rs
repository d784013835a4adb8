//! Sliding-window counters shared by all qmail-smtpd processes: messages per hour per
//! authenticated user (`control/ratelimit`) and failed AUTHs per hour per client IP
//! (`control/authfaillimit`).
//!
//! One file per key in `HOME/smtpd/<kind>/<hex of key>`, holding the unix times of the
//! events of the last window, one per line, updated under `flock`. The directory must
//! be writable by qmaild (the installer creates `HOME/smtpd` as qmaild, mode 0700).

use std::fs::OpenOptions;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::path::Path;

/// The window of both counters.
pub const WINDOW: u64 = 3600;
/// At most this many events are remembered per key.
const KEEP: usize = 100_000;

fn file_name(key: &str) -> String {
    key.bytes().map(|b| format!("{b:02x}")).collect::<String>()
}

/// Count the events for `key` within the window ending `now`; if `add`, record one
/// more first. Returns the count (including the added one).
pub fn count(dir: &Path, kind: &str, key: &str, now: u64, add: bool) -> io::Result<u64> {
    let dir = dir.join(kind);
    if add && !dir.is_dir() {
        std::fs::create_dir(&dir).or_else(|e| {
            if e.kind() == io::ErrorKind::AlreadyExists {
                Ok(())
            } else {
                Err(e)
            }
        })?;
    }
    let path = dir.join(file_name(key));
    let mut f = match OpenOptions::new()
        .read(true)
        .write(add)
        .create(add)
        .truncate(false)
        .open(&path)
    {
        Ok(f) => f,
        Err(e) if !add && e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let op = if add { libc::LOCK_EX } else { libc::LOCK_SH };
    // SAFETY: flock on a descriptor we own; the lock ends when `f` is closed.
    if unsafe { libc::flock(f.as_raw_fd(), op) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut text = String::new();
    (&mut f).take(16 * 1024 * 1024).read_to_string(&mut text)?;
    let since = now.saturating_sub(WINDOW);
    let mut times: Vec<u64> = text
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .filter(|&t| t > since && t <= now + 60)
        .collect();
    if add {
        times.push(now);
        if times.len() > KEEP {
            times.drain(..times.len() - KEEP);
        }
        let mut out = String::with_capacity(times.len() * 11);
        for t in &times {
            out.push_str(&t.to_string());
            out.push('\n');
        }
        f.seek(SeekFrom::Start(0))?;
        f.set_len(0)?;
        f.write_all(out.as_bytes())?;
    }
    Ok(times.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_slides() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(count(d.path(), "rate", "joe", 1000, false).unwrap(), 0);
        assert_eq!(count(d.path(), "rate", "joe", 1000, true).unwrap(), 1);
        assert_eq!(count(d.path(), "rate", "joe", 1001, true).unwrap(), 2);
        assert_eq!(count(d.path(), "rate", "ann", 1001, true).unwrap(), 1);
        assert_eq!(count(d.path(), "rate", "joe", 1002, false).unwrap(), 2);
        assert_eq!(
            count(d.path(), "rate", "joe", 1000 + WINDOW, false).unwrap(),
            1
        );
        assert_eq!(
            count(d.path(), "rate", "joe", 1001 + WINDOW, true).unwrap(),
            1
        );
        assert_eq!(file_name("a/b"), "612f62");
    }
}
