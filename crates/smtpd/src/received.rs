//! The `Received:` line qmail-smtpd writes above the message (qmail's `received.c`):
//!
//! ```text
//! Received: from relay.example.org (HELO relay) (joe@192.0.2.1)
//!   by mx.example.test with ESMTPSA (TLS1.3 TLS13_AES_256_GCM_SHA384); 26 Sep 1995 04:46:54 -0000
//! ```
//! `from TCPREMOTEHOST`, ` (HELO helo)` when the HELO differs from the remote host name,
//! ` (info@TCPREMOTEIP)` where info is the authenticated user, else TCPREMOTEINFO (else
//! `(IP)` alone); `by TCPLOCALHOST` (when unset or `0`, the greeting's host name);
//! protocol `SMTP`, `ESMTP`, with `S` under TLS and `A` after AUTH (RFC 3848), the TLS
//! version and cipher in a comment. Client-supplied text is reduced to
//! `[A-Za-z0-9.@%+/=:_\[\]-]`, anything else becoming `?`, at most 200 bytes.

/// What the line says.
pub struct Received<'a> {
    pub remote_host: &'a str,
    pub helo: Option<&'a str>,
    pub info: Option<&'a str>,
    pub remote_ip: &'a str,
    pub local_host: &'a str,
    pub esmtp: bool,
    pub tls: Option<&'a str>,
    pub auth: bool,
    pub date: u64,
}

fn safe(s: &str) -> String {
    s.chars()
        .take(200)
        .map(|c| {
            if c.is_ascii_alphanumeric() || ".@%+/=:_[]-".contains(c) {
                c
            } else {
                '?'
            }
        })
        .collect()
}

impl Received<'_> {
    pub fn line(&self) -> String {
        let mut s = format!("Received: from {}", safe(self.remote_host));
        if let Some(h) = self.helo
            && !h.eq_ignore_ascii_case(self.remote_host)
        {
            s.push_str(&format!(" (HELO {})", safe(h)));
        }
        match self.info {
            Some(i) => s.push_str(&format!(" ({}@{})", safe(i), safe(self.remote_ip))),
            None => s.push_str(&format!(" ({})", safe(self.remote_ip))),
        }
        let mut proto = String::from(if self.esmtp { "ESMTP" } else { "SMTP" });
        if self.esmtp {
            if self.tls.is_some() {
                proto.push('S');
            }
            if self.auth {
                proto.push('A');
            }
        }
        s.push_str(&format!("\n  by {} with {proto}", safe(self.local_host)));
        if let Some(t) = self.tls {
            s.push_str(&format!(" ({})", safe(&t.replace(' ', "_"))));
        }
        s.push_str(&format!("; {}\n", qsys::date::date822(self.date)));
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qmail_form() {
        let r = Received {
            remote_host: "relay1.uu.net",
            helo: Some("uunet.uu.net"),
            info: Some("7"),
            remote_ip: "192.48.96.5",
            local_host: "silverton.berkeley.edu",
            esmtp: false,
            tls: None,
            auth: false,
            date: 811_485_614,
        };
        assert_eq!(
            r.line(),
            "Received: from relay1.uu.net (HELO uunet.uu.net) (7@192.48.96.5)\n  by silverton.berkeley.edu with SMTP; 19 Sep 1995 04:40:14 -0000\n"
        );
        let r = Received {
            helo: Some("evil\nX-Injected: yes"),
            info: None,
            esmtp: true,
            tls: Some("TLS1.3 X"),
            auth: true,
            ..r
        };
        let l = r.line();
        assert!(
            l.contains("(HELO evil?X-Injected:?yes) (192.48.96.5)"),
            "{l}"
        );
        assert!(l.contains("with ESMTPSA (TLS1.3_X);"), "{l}");
    }
}
