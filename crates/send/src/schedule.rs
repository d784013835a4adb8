//! qmail's retry schedule (`nextretry`): attempts at ages (k*10)^2 s locally and
//! (k*20)^2 s remotely, i.e. `birth + (isqrt(age) + skip)^2`.

/// Seconds added per step, local then remote (qmail's `chanskip`).
pub const CHANSKIP: [u64; 2] = [10, 20];

pub fn isqrt(n: u64) -> u64 {
    if n < 2 {
        return n;
    }
    let mut x = (n as f64).sqrt() as u64;
    while x * x > n {
        x -= 1;
    }
    while (x + 1) * (x + 1) <= n {
        x += 1;
    }
    x
}

/// The next attempt after one made at `now` for a message born at `birth`.
pub fn next_retry(birth: u64, now: u64, channel: usize) -> u64 {
    let n = if birth > now { 0 } else { isqrt(now - birth) } + CHANSKIP[channel];
    birth + n * n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_matches_qmail() {
        assert_eq!(next_retry(1000, 1000, 0), 1100);
        assert_eq!(next_retry(1000, 1100, 0), 1400);
        assert_eq!(next_retry(1000, 1000, 1), 1400);
        assert_eq!(next_retry(1000, 1400, 1), 2600);
        assert_eq!(isqrt(99), 9);
        assert_eq!(isqrt(100), 10);
    }
}
