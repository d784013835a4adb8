//! The DATA reader: SMTP transparency (RFC 5321 4.5.2) as a byte-at-a-time state
//! machine over whatever the client sends, in the spirit of qmail's `blast()`.
//!
//! The rule, stated once and tested (no SMTP smuggling):
//! - a line ends with CR LF, and only CR LF; the stored message uses LF line ends;
//! - the data end only at `CR LF . CR LF` (the first line counts as following a CR LF);
//! - a `.` at the start of a line is removed (dot-unstuffing), wherever the line goes;
//! - **a bare LF (LF not preceded by CR) or a bare CR (CR not followed by LF) anywhere
//!   in the data is an error**: the caller answers `451` and closes the connection, the
//!   message is not queued, and nothing the client sent afterwards is interpreted.
//!   qmail already refused bare LF; refusing bare CR as well means no downstream
//!   server can ever see a `<CR>.<CR>` or `<LF>.<LF>` end-of-data from a message we
//!   accepted and relay.
//!
//! [`Dot::push`] consumes input up to the end of data or the first error and appends
//! the unstuffed, LF-converted message bytes to `out`.

/// Where the reader is within a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At the start of a line (after CR LF, or at the start of the data).
    LineStart,
    /// Saw `.` at the start of a line.
    Dot,
    /// Saw `CR` after a line-start `.`.
    DotCr,
    /// Inside a line.
    Mid,
    /// Saw `CR` inside a line.
    Cr,
}

/// Why the data were refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bare {
    /// An LF not preceded by CR.
    Lf,
    /// A CR not followed by LF.
    Cr,
}

/// The result of one [`Dot::push`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// All input consumed; more data expected.
    More,
    /// `CR LF . CR LF` seen; `usize` bytes of the input were consumed (the rest is the
    /// next command, pipelined).
    End(usize),
    /// A bare LF or CR at the given input offset; stop reading.
    Error(Bare),
}

/// The DATA state machine.
#[derive(Debug, Clone)]
pub struct Dot {
    state: State,
}

impl Default for Dot {
    fn default() -> Self {
        Dot::new()
    }
}

impl Dot {
    pub fn new() -> Dot {
        Dot {
            state: State::LineStart,
        }
    }

    /// True at the start of a line (used for header tracking by callers).
    pub fn at_line_start(&self) -> bool {
        self.state == State::LineStart
    }

    /// Consume `input`, appending message bytes to `out`.
    pub fn push(&mut self, input: &[u8], out: &mut Vec<u8>) -> Step {
        for (i, &b) in input.iter().enumerate() {
            self.state = match (self.state, b) {
                (State::LineStart, b'.') => State::Dot,
                (State::LineStart | State::Mid | State::Dot, b'\r') => {
                    if self.state == State::Dot {
                        State::DotCr
                    } else {
                        State::Cr
                    }
                }
                (State::LineStart | State::Mid | State::Dot, b'\n') => {
                    return Step::Error(Bare::Lf);
                }
                (State::LineStart | State::Mid | State::Dot, _) => {
                    out.push(b);
                    State::Mid
                }
                (State::DotCr, b'\n') => return Step::End(i + 1),
                (State::Cr, b'\n') => {
                    out.push(b'\n');
                    State::LineStart
                }
                (State::DotCr | State::Cr, _) => return Step::Error(Bare::Cr),
            };
        }
        Step::More
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(input: &[u8]) -> (Vec<u8>, Step) {
        let mut d = Dot::new();
        let mut out = Vec::new();
        let s = d.push(input, &mut out);
        (out, s)
    }

    #[test]
    fn plain_message_and_unstuffing() {
        let (out, s) = run(b"Subject: x\r\n\r\n..dot\r\n.\r\nQUIT\r\n");
        assert_eq!(out, b"Subject: x\n\n.dot\n");
        assert_eq!(s, Step::End(b"Subject: x\r\n\r\n..dot\r\n.\r\n".len()));
    }

    #[test]
    fn empty_message() {
        let (out, s) = run(b".\r\n");
        assert!(out.is_empty());
        assert_eq!(s, Step::End(3));
    }

    #[test]
    fn split_anywhere_gives_the_same_result() {
        let input = b"a\r\n..b\r\n.c\r\n\r\n.\r\nrest";
        let (want, ws) = run(input);
        for cut in 0..input.len() {
            let mut d = Dot::new();
            let mut out = Vec::new();
            let s1 = d.push(&input[..cut], &mut out);
            let s = match s1 {
                Step::More => match d.push(&input[cut..], &mut out) {
                    Step::End(n) => Step::End(n + cut),
                    o => o,
                },
                o => o,
            };
            assert_eq!((out.clone(), s), (want.clone(), ws), "cut {cut}");
        }
    }

    /// The rule written the obvious way, line by line, to check the state machine.
    fn reference(input: &[u8]) -> (Vec<u8>, Step) {
        let first_bad = |line: &[u8], partial: bool| {
            for (i, &b) in line.iter().enumerate() {
                if b == b'\n' {
                    return Some(Bare::Lf);
                }
                // a CR at the very end of incomplete input may still get its LF
                if b == b'\r' && !(partial && i + 1 == line.len()) {
                    return Some(Bare::Cr);
                }
            }
            None
        };
        let mut out = Vec::new();
        let mut pos = 0;
        loop {
            let rest = &input[pos..];
            match rest.windows(2).position(|w| w == b"\r\n") {
                None => {
                    return match first_bad(rest, true) {
                        Some(b) => (out, Step::Error(b)),
                        None => (out, Step::More),
                    };
                }
                Some(k) => {
                    let line = &rest[..k];
                    if let Some(b) = first_bad(line, false) {
                        return (out, Step::Error(b));
                    }
                    if line == b"." {
                        return (out, Step::End(pos + k + 2));
                    }
                    out.extend_from_slice(line.strip_prefix(b".").unwrap_or(line));
                    out.push(b'\n');
                    pos += k + 2;
                }
            }
        }
    }

    #[test]
    fn agrees_with_the_line_by_line_rule_on_random_input() {
        let alphabet = b"\r\n.a\0";
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = (x % 12) as usize;
            let input: Vec<u8> = (0..len)
                .map(|i| alphabet[((x >> (5 + 3 * i)) % 5) as usize])
                .collect();
            let (got_out, got) = run(&input);
            let (want_out, want) = reference(&input);
            assert_eq!(got, want, "{input:?}");
            if let Step::End(_) = want {
                assert_eq!(got_out, want_out, "{input:?}");
            }
        }
    }

    #[test]
    fn every_smuggling_variant_is_an_error_or_data() {
        // The end-of-data variants of the 2023 smuggling research: none ends the data.
        for (seq, bare) in [
            (&b"x\n.\nMAIL"[..], Bare::Lf),
            (b"x\n.\r\nMAIL", Bare::Lf),
            (b"x\r\n.\nMAIL", Bare::Lf),
            (b"x\r.\r\nMAIL", Bare::Cr),
            (b"x\r\n.\rMAIL", Bare::Cr),
            (b"x\r.\rMAIL", Bare::Cr),
            (b"x\n\r.\r\nMAIL", Bare::Lf),
            (b"x\r\n\n.\r\nMAIL", Bare::Lf),
            (b"x\r\r\n.\r\nMAIL", Bare::Cr),
            (b"x\r\n.\r\r\nMAIL", Bare::Cr),
        ] {
            let (_, s) = run(seq);
            assert_eq!(s, Step::Error(bare), "{:?}", String::from_utf8_lossy(seq));
        }
        // NUL around the dot is data.
        let (_, s) = run(b"x\r\n\0.\r\nMAIL");
        assert_eq!(s, Step::More);
        let (out, s) = run(b"x\r\n.\0\r\nMAIL");
        assert_eq!(s, Step::More);
        assert_eq!(out, b"x\n\0\nMAIL");
    }
}
