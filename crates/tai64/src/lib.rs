//! TAI64N labels the way daemontools 0.76 writes them.
//!
//! A label is 12 bytes: 8 bytes big-endian seconds `2^62 + 10 + unix_seconds` (the fixed
//! 10-second TAI-UTC offset of 1970, no leap seconds, exactly as `tai_unix` in
//! daemontools; the `tai64` crate adds real leap seconds and is 27 s off), then 4 bytes
//! big-endian nanoseconds, `1000 * usec + 500` as `taia_now` makes them. Its external
//! form is `@` followed by 24 lowercase hex digits (multilog `t`, `tai64n`, rotated log
//! names, and bytes 0..12 of `supervise/status`).

use std::time::{SystemTime, UNIX_EPOCH};

/// `2^62 + 10`: the TAI64 label of the unix epoch in daemontools' arithmetic.
pub const EPOCH: u64 = 4_611_686_018_427_387_914;

/// A TAI64N time stamp.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Tai64n {
    /// TAI64 seconds (already offset by [`EPOCH`]).
    pub secs: u64,
    /// Nanoseconds, 0..1_000_000_000.
    pub nanos: u32,
}

impl Tai64n {
    /// Now, with microsecond resolution and nanoseconds ending in 500 like `taia_now`.
    pub fn now() -> Tai64n {
        Self::from_system(SystemTime::now())
    }

    /// The label of a system time.
    pub fn from_system(t: SystemTime) -> Tai64n {
        let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
        Tai64n {
            secs: EPOCH + d.as_secs(),
            nanos: d.subsec_micros() * 1000 + 500,
        }
    }

    /// Unix seconds of this label (negative before 1970).
    pub fn unix_secs(&self) -> i64 {
        self.secs.wrapping_sub(EPOCH) as i64
    }

    /// The 12 bytes of the label.
    pub fn to_bytes(&self) -> [u8; 12] {
        let mut b = [0u8; 12];
        b[..8].copy_from_slice(&self.secs.to_be_bytes());
        b[8..].copy_from_slice(&self.nanos.to_be_bytes());
        b
    }

    /// The label from its 12 bytes.
    pub fn from_bytes(b: &[u8; 12]) -> Tai64n {
        let mut s = [0u8; 8];
        s.copy_from_slice(&b[..8]);
        let mut n = [0u8; 4];
        n.copy_from_slice(&b[8..]);
        Tai64n {
            secs: u64::from_be_bytes(s),
            nanos: u32::from_be_bytes(n),
        }
    }

    /// External form: `@` + 24 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        let mut s = String::with_capacity(25);
        s.push('@');
        for b in self.to_bytes() {
            s.push_str(&format!("{b:02x}"));
        }
        s
    }

    /// Parse exactly 24 hex digits (without the `@`).
    pub fn from_hex(hex: &[u8]) -> Option<Tai64n> {
        if hex.len() != 24 {
            return None;
        }
        let mut b = [0u8; 12];
        for (i, pair) in hex.chunks(2).enumerate() {
            let hi = (pair[0] as char).to_digit(16)?;
            let lo = (pair[1] as char).to_digit(16)?;
            b[i] = (hi * 16 + lo) as u8;
        }
        Some(Tai64n::from_bytes(&b))
    }

    /// `YYYY-MM-DD HH:MM:SS.NNNNNNNNN` in the local time zone (as `tai64nlocal` prints),
    /// or None when the time cannot be represented.
    pub fn to_local(&self) -> Option<String> {
        let unix = self.unix_secs();
        let t: libc::time_t = unix;
        // SAFETY: localtime_r writes into the zeroed struct we pass and reads only `t`.
        let mut tm: libc::tm = unsafe { std::mem::zeroed() };
        let r = unsafe { libc::localtime_r(&t, &mut tm) };
        if r.is_null() {
            return None;
        }
        Some(format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:09}",
            tm.tm_year as i64 + 1900,
            tm.tm_mon + 1,
            tm.tm_mday,
            tm.tm_hour,
            tm.tm_min,
            tm.tm_sec,
            self.nanos
        ))
    }
}

/// `tai64nlocal` on one line (without its newline): a line starting with `@` and 24 hex
/// digits gets the stamp replaced by local time; every other line passes unchanged
/// (the original crashes on short stamps; we pass them through).
pub fn localize_line(line: &[u8]) -> Vec<u8> {
    if line.first() != Some(&b'@') {
        return line.to_vec();
    }
    let digits = line[1..]
        .iter()
        .take_while(|c| c.is_ascii_hexdigit())
        .count();
    if digits != 24 {
        return line.to_vec();
    }
    match Tai64n::from_hex(&line[1..25]).and_then(|t| t.to_local()) {
        Some(s) => {
            let mut out = s.into_bytes();
            out.extend_from_slice(&line[25..]);
            out
        }
        None => line.to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_label() {
        // from the reference: @400000006b0341c718a7458c is unix 1795375549.413615500
        let t = Tai64n::from_hex(b"400000006b0341c718a7458c").unwrap();
        assert_eq!(t.unix_secs(), 1795375549);
        assert_eq!(t.nanos, 413615500);
        assert_eq!(t.to_hex(), "@400000006b0341c718a7458c");
    }

    #[test]
    fn now_ends_in_500() {
        let t = Tai64n::now();
        assert_eq!(t.nanos % 1000, 500);
        assert!(t.secs > EPOCH);
    }

    #[test]
    fn bad_stamps_pass_through() {
        assert_eq!(
            localize_line(b"@4000000000000000 x"),
            b"@4000000000000000 x"
        );
        assert_eq!(localize_line(b"plain"), b"plain");
        assert_eq!(localize_line(b"@zz"), b"@zz");
        let l = localize_line(b"@400000006b0341c718a7458c rest");
        assert!(
            l.ends_with(b".413615500 rest"),
            "{}",
            String::from_utf8_lossy(&l)
        );
    }
}

#[cfg(test)]
mod robustness {
    use super::*;

    /// Random lines never panic and lines that are not stamps pass unchanged.
    #[test]
    fn random_lines() {
        let mut seed: u64 = 0x9e3779b97f4a7c15;
        for _ in 0..20000 {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let len = (seed >> 58) as usize;
            let mut line = Vec::with_capacity(len + 1);
            line.push(if seed & 1 == 0 { b'@' } else { b'x' });
            let mut s = seed;
            for _ in 0..len {
                s = s.rotate_left(7) ^ 0x5bd1e995;
                line.push(b"0123456789abcdefABCDEF@ \xff"[(s % 25) as usize]);
            }
            let out = localize_line(&line);
            if line[0] != b'@' {
                assert_eq!(out, line);
            }
        }
    }
}
