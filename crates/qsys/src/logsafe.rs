//! Text that came from a client, made safe for one log line.
//!
//! A log line is trusted by whoever reads it (an administrator, fail2ban-style blockers,
//! our own log-driven tools): a CR or LF inside a user name, a HELO argument or a TLS SNI
//! name would otherwise start a forged line, and a space would forge fields inside one.
//! [`text`] is the one escaping every program uses for anything a client sent: printable
//! ASCII other than space, backslash and `=` stays, every other byte becomes `\ooo`
//! (three octal digits, as qmail-popup always wrote it), and input past [`MAX`] bytes is
//! cut and marked with `...`. The result never holds a space, a control byte, a non-ASCII
//! byte or an `=`, so it stays one field of one line and cannot pose as another
//! `key=value` field (a login `ip=192.0.2.9` must not give a blocker the address to ban).
//!
//! Two log formats that existing tools parse keep their own historic escaping and live
//! here too, so there is still one owner: [`qmail_send`] (qmail's `logsafe`) and
//! [`ucspi`] (ucspi-tcp's `safecats`).

/// Longest input [`text`] keeps; longer input is cut and ends in `...`.
pub const MAX: usize = 256;

/// `b` as one log field: printable ASCII except space, `\` and `=` kept, the rest `\ooo`.
pub fn text(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len().min(MAX) + 3);
    for &c in b.iter().take(MAX) {
        if c.is_ascii_graphic() && c != b'\\' && c != b'=' {
            s.push(c as char);
        } else {
            s.push_str(&format!("\\{c:03o}"));
        }
    }
    if b.len() > MAX {
        s.push_str("...");
    }
    s
}

/// qmail-send's `logsafe` (qmail-send.c): a newline becomes `/`; `%`, space and every
/// other byte outside 33..=126 become `_` (`did_0+0+1/`, `Remote_host_said:_...`), so the
/// classic log readers keep working.
pub fn qmail_send(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'\n' => '/',
            33..=126 if b != b'%' => b as char,
            _ => '_',
        })
        .collect()
}

/// ucspi-tcp's `safecats` for tcpserver's `ok`/`deny` fields: bytes outside 33..=126,
/// `%` and `:` become `?`; a field longer than 100 bytes is cut and ends in `...`.
pub fn ucspi(field: &[u8]) -> String {
    let mut s: String = field
        .iter()
        .take(100)
        .map(|&b| {
            if !(33..=126).contains(&b) || b == b'%' || b == b':' {
                '?'
            } else {
                b as char
            }
        })
        .collect();
    if field.len() > 100 {
        s.push_str("...");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_breaks_spaces_and_backslashes_are_escaped() {
        let forged = b"joe\r\nqmail-smtpd: pid 1: AUTH PLAIN user root from 10.9.9.9";
        let t = text(forged);
        assert!(!t.contains('\n') && !t.contains('\r') && !t.contains(' '));
        assert!(t.starts_with("joe\\015\\012qmail-smtpd:\\040pid"));
        assert_eq!(text(b"a\\b"), "a\\134b");
        assert_eq!(text("é".as_bytes()), "\\303\\251");
        assert_eq!(text(b"\0"), "\\000");
        assert_eq!(text(b"ok@example.org"), "ok@example.org");
        assert_eq!(text(b"ip=192.0.2.9"), "ip\\075192.0.2.9");
    }

    #[test]
    fn long_input_is_cut_and_marked() {
        let t = text(&[b'a'; MAX + 10]);
        assert_eq!(t.len(), MAX + 3);
        assert!(t.ends_with("..."));
        assert_eq!(text(&[b'a'; MAX]).len(), MAX);
    }

    #[test]
    fn historic_formats() {
        assert_eq!(qmail_send("a b\nc%d\x01"), "a_b/c_d_");
        assert_eq!(ucspi(b"a:b%c d"), "a?b?c?d");
        assert!(ucspi(&[b'x'; 120]).ends_with("..."));
    }
}
