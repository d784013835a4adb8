//! Envelope records (qmail's INTERNALS and `qmail-queue.8`).
//!
//! - qmail-queue input on fd 1: `F<sender>\0` then `T<rcpt>\0`... then one more `\0`.
//! - todo/N and intd/N: `u<uid>\0p<pid>\0F<sender>\0T<rcpt>\0`... (no final `\0`).
//! - info/N: `F<sender>\0`; local/N and remote/N: `T<addr>\0` records, where a delivered
//!   recipient's `T` byte is overwritten in place by `D`.

/// Longest address qmail-queue accepts (qmail's `ADDR`, type byte included).
pub const ADDR_MAX: usize = 1003;

/// One record of a queue file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Byte offset of the type byte in the file.
    pub offset: usize,
    pub kind: u8,
    pub value: Vec<u8>,
}

/// Split queue-file bytes into records. A trailing fragment without its NUL is
/// returned as `Err(offset)` of the fragment (a file truncated by a crash).
pub fn records(data: &[u8]) -> Result<Vec<Record>, usize> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < data.len() {
        match data[pos..].iter().position(|&b| b == 0) {
            Some(n) if n > 0 => {
                out.push(Record {
                    offset: pos,
                    kind: data[pos],
                    value: data[pos + 1..pos + n].to_vec(),
                });
                pos += n + 1;
            }
            Some(_) => pos += 1, // stray NUL: the end-of-envelope marker in qq input
            None => return Err(pos),
        }
    }
    Ok(out)
}

/// The bytes qmail-queue reads on fd 1 for `sender` and `recipients`.
pub fn qq_envelope(sender: &[u8], recipients: &[impl AsRef<[u8]>]) -> Vec<u8> {
    let mut v = Vec::with_capacity(
        sender.len()
            + 3
            + recipients
                .iter()
                .map(|r| r.as_ref().len() + 2)
                .sum::<usize>(),
    );
    v.push(b'F');
    v.extend_from_slice(sender);
    v.push(0);
    for r in recipients {
        v.push(b'T');
        v.extend_from_slice(r.as_ref());
        v.push(0);
    }
    v.push(0);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_todo_records() {
        let r = records(b"u1000\0p42\0Fa@x\0Tb@y\0Dc@z\0").unwrap();
        assert_eq!(r.len(), 5);
        assert_eq!(r[2].kind, b'F');
        assert_eq!(r[2].value, b"a@x");
        assert_eq!(r[4].kind, b'D');
        assert_eq!(r[4].offset, 20);
    }

    #[test]
    fn truncated_file_is_reported() {
        assert_eq!(records(b"Ta@b\0Tc@"), Err(5));
    }

    #[test]
    fn builds_qq_input() {
        assert_eq!(qq_envelope(b"a@x", &["b@y"]), b"Fa@x\0Tb@y\0\0");
    }
}
