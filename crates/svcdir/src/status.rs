//! `supervise/status`: daemontools 0.76's 18-byte layout.
//!
//! | bytes | content |
//! |---|---|
//! | 0..12 | TAI64N of the last pid change (start, exit, supervise start) |
//! | 12..16 | pid, little-endian (0 = down) |
//! | 16 | 1 when paused (only while up) |
//! | 17 | `u` want up, `d` want down, 0 after `svc -o` |
//!
//! Written as `status.new` and renamed, so readers never see a torn file. Readers take
//! the first 18 bytes and tolerate more (runit's 20-byte file reads fine).

use std::io::{self, Read};
use std::path::Path;
use tai64::Tai64n;

/// Size of the status file.
pub const LEN: usize = 18;

/// The decoded status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Status {
    pub stamp: Tai64n,
    pub pid: u32,
    pub paused: bool,
    /// `b'u'`, `b'd'` or 0.
    pub want: u8,
}

impl Status {
    pub fn encode(&self) -> [u8; LEN] {
        let mut b = [0u8; LEN];
        b[..12].copy_from_slice(&self.stamp.to_bytes());
        b[12..16].copy_from_slice(&self.pid.to_le_bytes());
        b[16] = u8::from(self.pid != 0 && self.paused);
        b[17] = self.want;
        b
    }

    /// Decode the first 18 bytes; None when shorter.
    pub fn decode(b: &[u8]) -> Option<Status> {
        if b.len() < LEN {
            return None;
        }
        let mut stamp = [0u8; 12];
        stamp.copy_from_slice(&b[..12]);
        let mut pid = [0u8; 4];
        pid.copy_from_slice(&b[12..16]);
        Some(Status {
            stamp: Tai64n::from_bytes(&stamp),
            pid: u32::from_le_bytes(pid),
            paused: b[16] != 0,
            want: b[17],
        })
    }
}

/// Why a status file could not be read (svstat's wording).
#[derive(Debug)]
pub enum ReadError {
    Open(io::Error),
    Read(io::Error),
    BadFormat,
}

/// Read `path` (a `supervise/status`).
pub fn read(path: &Path) -> Result<Status, ReadError> {
    let mut f = std::fs::File::open(path).map_err(ReadError::Open)?;
    let mut buf = [0u8; LEN];
    let mut got = 0;
    while got < LEN {
        match f.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(ReadError::Read(e)),
        }
    }
    Status::decode(&buf[..got]).ok_or(ReadError::BadFormat)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_bytes() {
        // "up: 4000 0000 6b03 41c7 18a7 458c 1a2e 0000 0075" = pid 11802, want up
        let b = [
            0x40, 0, 0, 0, 0x6b, 0x03, 0x41, 0xc7, 0x18, 0xa7, 0x45, 0x8c, 0x1a, 0x2e, 0, 0, 0,
            0x75,
        ];
        let s = Status::decode(&b).unwrap();
        assert_eq!(s.pid, 11802);
        assert_eq!(s.want, b'u');
        assert!(!s.paused);
        assert_eq!(s.encode(), b);
        assert!(Status::decode(&b[..17]).is_none());
        let down = Status {
            pid: 0,
            paused: true,
            ..s
        };
        assert_eq!(down.encode()[16], 0, "paused only while up");
    }
}

#[cfg(test)]
mod robustness {
    use super::*;

    #[test]
    fn any_18_bytes_round_trip() {
        let mut seed: u64 = 3;
        for _ in 0..10000 {
            let mut b = [0u8; LEN];
            for x in &mut b {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                *x = (seed >> 56) as u8;
            }
            b[16] &= 1;
            if b[12..16] == [0, 0, 0, 0] {
                b[16] = 0;
            }
            let s = Status::decode(&b).unwrap();
            assert_eq!(s.encode(), b);
        }
    }
}
