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
