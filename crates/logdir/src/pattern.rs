//! multilog's pattern language (`match.c`): literal bytes match themselves; `*`
//! followed by a byte `c` skips up to (not including) the first `c`, without
//! backtracking; a final `*` matches the rest. The whole line must be consumed.

/// True when `pattern` matches all of `line`.
pub fn matches(pattern: &[u8], line: &[u8]) -> bool {
    let mut p = 0;
    let mut b = 0;
    loop {
        let Some(&ch) = pattern.get(p) else {
            return b == line.len();
        };
        p += 1;
        if ch == b'*' {
            let Some(&next) = pattern.get(p) else {
                return true;
            };
            loop {
                match line.get(b) {
                    None => return false,
                    Some(&c) if c == next => break,
                    Some(_) => b += 1,
                }
            }
            continue;
        }
        match line.get(b) {
            Some(&c) if c == ch => b += 1,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn djb_semantics() {
        assert!(matches(b"hello", b"hello"));
        assert!(!matches(b"hello", b"hello world"));
        assert!(matches(b"hello*", b"hello world"));
        assert!(matches(b"a*d", b"ab:c d"));
        assert!(matches(b"*", b""));
        assert!(!matches(b"a*b", b"axxx"));
        assert!(matches(
            b"named[*]: Cleaned cache *",
            b"named[12]: Cleaned cache of 3"
        ));
        // no backtracking: the first ' ' ends the star
        assert!(!matches(b"* error*", b"@4000 x error y"));
        assert!(matches(b"* error*", b"@4000 error y"));
    }
}

#[cfg(test)]
mod robustness {
    use super::matches;

    /// A plain backtracking reference for patterns without `*`, and no panics on
    /// random patterns and lines.
    #[test]
    fn random_patterns() {
        let alphabet = b"ab*";
        let mut seed: u64 = 7;
        for _ in 0..50000 {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let pl = (seed >> 60) as usize;
            let ll = ((seed >> 56) & 15) as usize;
            let mut s = seed;
            let mut draw = |n: usize, abc: &[u8]| -> Vec<u8> {
                (0..n)
                    .map(|_| {
                        s = s.rotate_left(5) ^ 0x2545f4914f6cdd1d;
                        abc[(s % abc.len() as u64) as usize]
                    })
                    .collect()
            };
            let p = draw(pl, alphabet);
            let l = draw(ll, b"ab");
            let m = matches(&p, &l);
            if !p.contains(&b'*') {
                assert_eq!(m, p == l);
            }
            if p.last() == Some(&b'*') && p.iter().filter(|&&c| c == b'*').count() == 1 {
                assert_eq!(m, l.starts_with(&p[..p.len() - 1]));
            }
        }
    }
}
