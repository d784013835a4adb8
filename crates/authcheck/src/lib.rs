//! Sender authentication of incoming mail for `qmail-authcheck`, a filter of the
//! qmail-qfilter chain (DESIGN section 10): SPF (RFC 7208), DKIM (RFC 6376, 8463) and
//! DMARC (RFC 7489) through the mail-auth crate, the `Authentication-Results:` field of
//! RFC 8601 with `me` as authserv-id, and the site's policy from control files.
//!
//! - [`policy`]: control files and the rule from results to a disposition.
//! - [`header`]: the fields written, and the removal of forged ones.
//! - [`check`]: the checks, with a lookup cap and time limit for each.
//! - [`meter`]: the per-message DNS cache that counts lookups.
//!
//! [`run`] is the whole filter for one message, minus reading and writing descriptors.
//! Mail from relay clients (`RELAYCLIENT`), authenticated users (`SMTPAUTHUSER`) and
//! local injection (no `TCPREMOTEIP`) is not checked: it is our users' own, and its
//! SPF/DKIM are the receiving side's business. Forged fields are removed from all mail.
//!
//! mail-auth is async: [`run`] builds one current-thread tokio runtime for its lookups
//! (crates.md 1b, 2b); nothing else in the suite links it.

pub mod check;
pub mod header;
pub mod meter;
pub mod policy;

use policy::{Config, Disposition};
use std::hash::{BuildHasher, RandomState};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// One message and what the chain's environment says about it.
pub struct Request<'a> {
    pub message: &'a [u8],
    /// The envelope sender (empty: the null sender).
    pub sender: &'a str,
    /// `SMTPHELO`.
    pub helo: &'a str,
    /// `TCPREMOTEIP` (None: not from the network).
    pub remote_ip: Option<&'a str>,
    /// `RELAYCLIENT` is set.
    pub relay_client: bool,
    /// `SMTPAUTHUSER` is set and not empty.
    pub authenticated: bool,
    /// Our host name: the authserv-id.
    pub me: &'a str,
}

/// What to do with the message.
#[derive(Debug)]
pub struct Verdict {
    pub disposition: Disposition,
    /// The message to pass on (our fields added, forged ones removed).
    pub message: Vec<u8>,
    /// The log line's fields after the verdict word.
    pub log: String,
}

impl Verdict {
    /// The first word of the log line.
    pub fn word(&self) -> &'static str {
        match &self.disposition {
            Disposition::Deliver(_) => "deliver",
            Disposition::Refuse(_) => "refuse",
            Disposition::Defer(_) => "defer",
            Disposition::Quarantine(_) => "quarantine",
        }
    }
}

/// The resolver mail-auth uses: `servers` (control/nameservers, else resolv.conf), one
/// attempt of `cfg.timeout_secs` seconds per lookup.
pub fn authenticator(
    servers: &[SocketAddr],
    cfg: &Config,
) -> std::io::Result<mail_auth::MessageAuthenticator> {
    let timeout = Duration::from_secs(cfg.timeout_secs.max(1));
    Ok(mail_auth::MessageAuthenticator(dns::resolver(
        servers, timeout, 1,
    )?))
}

/// Check `req` under `cfg`, resolving through `servers`.
pub fn run(req: &Request, cfg: &Config, servers: &[SocketAddr]) -> Verdict {
    let start = Instant::now();
    let (stripped, removed) = header::strip(req.message, req.me);
    let t = qsys::logsafe::text;
    let who = format!(
        "from={} helo={} ip={}",
        t(req.sender.as_bytes()),
        t(req.helo.as_bytes()),
        t(req.remote_ip.unwrap_or("local").as_bytes())
    );
    let skip = |why: &str| Verdict {
        disposition: Disposition::Deliver("skipped"),
        message: stripped.clone(),
        log: format!("skipped={why} {who} removed={removed}"),
    };
    if req.relay_client {
        return skip("relayclient");
    }
    if req.authenticated {
        return skip("authenticated");
    }
    let Some(ip_text) = req.remote_ip else {
        return skip("local");
    };
    let Ok(ip) = ip_text.trim().parse::<IpAddr>() else {
        return skip("no-client-address");
    };
    let ip = ip.to_canonical();

    let outcome = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .and_then(|rt| {
            let auth = authenticator(servers, cfg)?;
            let input = check::Input {
                message: &stripped,
                sender: req.sender,
                helo: req.helo,
                ip,
                me: req.me,
            };
            let random = RandomState::new().hash_one(start);
            Ok(rt.block_on(check::check(&auth, &input, cfg, random)))
        });
    let outcome = match outcome {
        Ok(o) => o,
        Err(e) => {
            return Verdict {
                disposition: Disposition::Defer(
                    "451 sender authentication is not available (#4.3.0)".into(),
                ),
                message: stripped,
                log: format!(
                    "error=unable_to_start_the_resolver:{} {who}",
                    t(e.to_string().as_bytes())
                ),
            };
        }
    };
    let disposition = policy::decide(&outcome.findings, cfg);
    let eol = header::line_ending(&stripped);
    let mut message = header::authentication_results(req.me, &outcome.results, eol).into_bytes();
    let mark = match &disposition {
        Disposition::Deliver(m) => m,
        Disposition::Quarantine(_) => &"quarantine",
        _ => &"refused",
    };
    message.extend_from_slice(header::verdict(mark, req.me, eol).as_bytes());
    message.extend_from_slice(&stripped);
    let results: Vec<String> = outcome
        .results
        .iter()
        .map(|r| format!("{}={}", r.method, r.result))
        .collect();
    let f = &outcome.findings;
    let log = format!(
        "mark={mark} {} policy={} header.from={} {who} lookups={} removed={removed} ms={}",
        results.join(" "),
        f.dmarc_policy.as_str(),
        t(f.dmarc_domain.as_bytes()),
        outcome.lookups,
        start.elapsed().as_millis()
    );
    Verdict {
        disposition,
        message,
        log,
    }
}

/// Keep `message` in the quarantine Maildir `dir` with `why`; the stored file's path.
pub fn quarantine(
    dir: &std::path::Path,
    message: &[u8],
    why: &str,
    req: &Request,
    recipients: Vec<String>,
) -> std::io::Result<std::path::PathBuf> {
    let reason = quarantine::Reason {
        rule: "dmarc".into(),
        remark: why.to_string(),
        sender: req.sender.to_string(),
        recipients,
        client_ip: req.remote_ip.unwrap_or("local").to_string(),
        helo: req.helo.to_string(),
    };
    quarantine::store(dir, message, &reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req<'a>(message: &'a [u8]) -> Request<'a> {
        Request {
            message,
            sender: "a@b.test",
            helo: "h.test",
            remote_ip: Some("192.0.2.1"),
            relay_client: false,
            authenticated: false,
            me: "mx.test",
        }
    }

    #[test]
    fn relay_authenticated_and_local_mail_is_not_checked_but_cleaned() {
        let m = b"Authentication-Results: mx.test; dkim=pass\nSubject: x\n\nbody\n";
        for (relay, auth, ip) in [
            (true, false, Some("192.0.2.1")),
            (false, true, Some("192.0.2.1")),
            (false, false, None),
        ] {
            let r = Request {
                relay_client: relay,
                authenticated: auth,
                remote_ip: ip,
                ..req(m)
            };
            // no nameserver at all: a check would fail
            let v = run(&r, &Config::default(), &[]);
            assert_eq!(v.disposition, Disposition::Deliver("skipped"));
            assert_eq!(v.message, b"Subject: x\n\nbody\n");
            assert!(v.log.starts_with("skipped="), "{}", v.log);
        }
    }

    #[test]
    fn a_flood_of_signatures_is_cut_at_the_limit() {
        let mut m = String::new();
        for i in 0..200 {
            m.push_str(&format!(
                "DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=d{i}.test; s=s;\n \
                 h=from; bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=; b=AAAA\n"
            ));
        }
        m.push_str("From: x@b.test\nSubject: x\n\nbody\n");
        let (udp, servers) = dead_dns();
        let cfg = Config {
            timeout_secs: 1,
            ..Config::default()
        };
        let v = run(&req(m.as_bytes()), &cfg, &servers);
        drop(udp);
        let text = String::from_utf8_lossy(&v.message);
        let header = text.split("\nDKIM-Signature").next().unwrap_or("");
        let n = header.matches("dkim=").count();
        assert!((1..=check::MAX_SIGNATURES).contains(&n), "{n}: {header}");
        assert_eq!(
            text.matches("DKIM-Signature:").count(),
            200,
            "passed on unchanged"
        );
    }

    /// A nameserver that answers nothing: a UDP port connected elsewhere (the kernel
    /// says "unreachable" at once).
    fn dead_dns() -> (std::net::UdpSocket, [SocketAddr; 1]) {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        udp.connect("127.0.0.1:9").unwrap();
        let port = udp.local_addr().unwrap().port();
        (udp, [SocketAddr::from(([127, 0, 0, 1], port))])
    }

    #[test]
    fn an_unreachable_dns_delivers_marked_temperror() {
        let (_udp, servers) = dead_dns();
        let cfg = Config {
            timeout_secs: 1,
            ..Config::default()
        };
        let m = b"From: x@b.test\nSubject: x\n\nbody\n";
        let v = run(&req(m), &cfg, &servers);
        assert_eq!(v.disposition, Disposition::Deliver("temperror"), "{v:?}");
        let text = String::from_utf8(v.message).unwrap();
        assert!(
            text.starts_with("Authentication-Results: mx.test;\n\tspf=temperror"),
            "{text}"
        );
        assert!(text.contains("X-Qmail-Authcheck: temperror (by mx.test)\n"));
        assert!(text.ends_with("Subject: x\n\nbody\n"));
    }
}
