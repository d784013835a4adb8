//! tcpserver's log lines on stderr (ucspi-tcp 0.88, reference section 5.3):
//!
//! ```text
//! tcpserver: status: 1/40
//! tcpserver: pid 16120 from 127.0.0.1
//! tcpserver: ok 16120 LOCALHOST:LOCALIP:LOCALPORT REMOTEHOST:REMOTEIP:REMOTEINFO:REMOTEPORT
//! tcpserver: deny 16126 ...
//! tcpserver: end 16126 status 25600
//! ```
//!
//! Each field of `ok`/`deny` passes ucspi-tcp's `safecats`: bytes outside 33..=126, `%`
//! and `:` become `?`, and a field longer than 100 bytes is cut and ends in `...`, so a
//! client cannot forge log lines through its host name or ident answer. The escaping
//! is [`qsys::logsafe::ucspi`]'s.

use qsys::logsafe::ucspi as safe;
use std::io::Write;

/// Write one line to stderr in a single write, `prog: text`.
pub fn line(prog: &str, text: &str) {
    let l = format!("{prog}: {text}\n");
    let _ = std::io::stderr().lock().write_all(l.as_bytes());
}

/// The `ok`/`deny` line's endpoint fields.
pub struct Endpoints<'a> {
    pub local_host: Option<&'a str>,
    pub local_ip: &'a str,
    pub local_port: u16,
    pub remote_host: Option<&'a str>,
    pub remote_ip: &'a str,
    pub remote_info: Option<&'a str>,
    pub remote_port: u16,
}

/// `ok PID ...` or `deny PID ...`.
pub fn verdict(word: &str, pid: u32, e: &Endpoints<'_>) -> String {
    let o = |v: Option<&str>| safe(v.unwrap_or("").as_bytes());
    format!(
        "{word} {pid} {}:{}:{} {}:{}:{}:{}",
        o(e.local_host),
        safe(e.local_ip.as_bytes()),
        e.local_port,
        o(e.remote_host),
        safe(e.remote_ip.as_bytes()),
        o(e.remote_info),
        e.remote_port
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_sanitised() {
        assert_eq!(safe(b"a:b%c d\n"), "a?b?c?d?");
        let long = vec![b'x'; 150];
        let s = safe(&long);
        assert_eq!(s.len(), 103);
        assert!(s.ends_with("x..."));
        // an ident answer or a reverse name holding a line break stays on the line
        let e = Endpoints {
            local_host: Some("h\nost"),
            local_ip: "127.0.0.1",
            local_port: 25,
            remote_host: Some("evil\r\ntcpserver: ok 1"),
            remote_ip: "127.0.0.1",
            remote_info: Some("root\n"),
            remote_port: 1,
        };
        assert!(!verdict("ok", 1, &e).contains(['\n', '\r']));
    }

    #[test]
    fn ok_line_layout() {
        let e = Endpoints {
            local_host: Some("0"),
            local_ip: "127.0.0.1",
            local_port: 25025,
            remote_host: None,
            remote_ip: "127.0.0.1",
            remote_info: Some("alice"),
            remote_port: 49329,
        };
        assert_eq!(
            verdict("ok", 16153, &e),
            "ok 16153 0:127.0.0.1:25025 :127.0.0.1:alice:49329"
        );
    }
}
