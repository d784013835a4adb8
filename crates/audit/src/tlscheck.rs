//! The TLS check: `control/servercert.pem` (and `serverkey.pem` when the key is apart)
//! present, parseable and matching (the tls crate's own loader, as qmail-smtpd loads
//! them), the key owned by qmaild, days to expiry of the leaf (warning under 30, error
//! under 7), the leaf's names covering `control/me`, and TLS below 1.2 refused by our
//! qmail-smtpd (a TLS 1.1 handshake with `openssl s_client`, when installed; rustls
//! cannot speak 1.1).

use crate::net::{self, Listener};
use crate::services::{self, Service};
use crate::{Audit, Finding, Severity};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CHECK: &str = "tls";

/// Days to expiry below which a warning, and an error, is reported.
pub const WARN_DAYS: i64 = 30;
pub const ERROR_DAYS: i64 = 7;

/// The leaf's expiry (unix time) and DNS names (subject alternative names, else the
/// common name).
pub fn leaf_facts(der: &[u8]) -> Option<(i64, Vec<String>)> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let not_after = cert.validity().not_after.timestamp();
    let mut names: Vec<String> = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(d) = n {
                names.push(d.to_ascii_lowercase());
            }
        }
    }
    if names.is_empty() {
        names.extend(
            cert.subject()
                .iter_common_name()
                .filter_map(|c| c.as_str().ok())
                .map(str::to_ascii_lowercase),
        );
    }
    Some((not_after, names))
}

/// Whether a certificate name (maybe `*.domain`) covers `host`.
pub fn name_matches(pattern: &str, host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    match pattern.strip_prefix("*.") {
        Some(rest) => host
            .split_once('.')
            .is_some_and(|(first, tail)| !first.is_empty() && tail == rest),
        None => pattern == host,
    }
}

/// The expiry finding for `days` left.
pub fn expiry(days: i64, subject: &str) -> Finding {
    let sev = if days < ERROR_DAYS {
        Severity::Error
    } else if days < WARN_DAYS {
        Severity::Warning
    } else {
        Severity::Info
    };
    Finding::new(
        CHECK,
        sev,
        subject,
        format!("valid for at least {WARN_DAYS} more days"),
        if days < 0 {
            format!("expired {} days ago", -days)
        } else {
            format!("expires in {days} days")
        },
        if sev == Severity::Info {
            "".to_string()
        } else {
            "renew it (certbot/acme.sh with HOME/boot/cert-deploy as deploy hook)".to_string()
        },
    )
}

pub fn check(a: &Audit, listeners: &[Listener], ours: &[Service]) -> Vec<Finding> {
    let control = a.home.join("control");
    let cert = control.join(tls::CERT_FILE);
    let shown = cert.display().to_string();
    let pem = match std::fs::read(&cert) {
        Ok(p) => p,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return vec![Finding::info(
                CHECK,
                shown,
                "no certificate: STARTTLS is not offered, smtps and pop3ds not linked",
            )];
        }
        Err(e) => {
            return vec![Finding::new(
                CHECK,
                Severity::Error,
                shown,
                "readable",
                qsys::errstr::io(&e),
                "",
            )];
        }
    };
    let mut v = Vec::new();
    let leaf = CertificateDer::pem_slice_iter(&pem)
        .next()
        .and_then(Result::ok);
    match leaf.as_ref().and_then(|d| leaf_facts(d)) {
        None => v.push(Finding::new(
            CHECK,
            Severity::Error,
            shown.clone(),
            "a PEM certificate",
            "none that parses",
            "install the certificate chain, leaf first",
        )),
        Some((not_after, names)) => {
            let now = i64::try_from(a.now).unwrap_or(i64::MAX);
            let days = not_after.saturating_sub(now).div_euclid(86_400);
            v.push(expiry(days, &shown));
            let me = a.control().line("me").ok().flatten().unwrap_or_default();
            if !names.iter().any(|n| name_matches(n, &me)) {
                v.push(Finding::new(
                    CHECK,
                    Severity::Warning,
                    shown.clone(),
                    format!("a name matching control/me ({me})"),
                    format!("names {}", names.join(", ")),
                    "get a certificate for the name in control/me (the name we greet with)",
                ));
            }
        }
    }
    match tls::server_config(&control) {
        Ok(_) => v.push(Finding::info(
            CHECK,
            shown.clone(),
            "certificate and key load and match",
        )),
        Err(e) => v.push(Finding::new(
            CHECK,
            Severity::Error,
            shown.clone(),
            "a certificate and its matching key",
            e.to_string(),
            "install the key of this certificate (control/serverkey.pem)",
        )),
    }
    let key = if control.join(tls::KEY_FILE).exists() {
        control.join(tls::KEY_FILE)
    } else {
        cert.clone()
    };
    if let (Ok(m), Some(want), true) = (
        std::fs::metadata(&key),
        qsys::ids::uid("qmaild"),
        qsys::is_root(),
    ) && m.uid() != want.as_raw()
    {
        v.push(Finding::new(
            CHECK,
            Severity::Warning,
            key.display().to_string(),
            "owned by qmaild (the user that speaks TLS)",
            format!("owned by uid {}", m.uid()),
            format!("chown qmaild {0}; chmod 400 {0}", key.display()),
        ));
    }
    let smtpd = listeners.iter().find(|l| {
        l.proto == "tcp" && services::owner(l, ours).is_some_and(|s| s.name == "qmail-smtpd")
    });
    if let Some(l) = smtpd {
        v.push(old_protocols(SocketAddr::new(
            net::connect_ip(l.ip),
            l.port,
        )));
    }
    v
}

/// Try a TLS 1.1 handshake after STARTTLS with `openssl s_client` (security level 0, so
/// the client itself allows 1.1).
fn old_protocols(dst: SocketAddr) -> Finding {
    let subject = format!("qmail-smtpd at {dst}");
    let child = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &dst.to_string(),
            "-starttls",
            "smtp",
            "-tls1_1",
            "-cipher",
            "DEFAULT@SECLEVEL=0",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn();
    let Ok(mut child) = child else {
        return Finding::info(
            CHECK,
            subject,
            "no openssl: refusal of TLS below 1.2 not tested (rustls offers only 1.2 and 1.3)",
        );
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let out = child
        .wait_with_output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    if out.contains("Cipher is ") && !out.contains("Cipher is (NONE)") {
        Finding::new(
            CHECK,
            Severity::Error,
            subject,
            "TLS 1.1 refused",
            "a TLS 1.1 handshake succeeded",
            "qmail-smtpd must use the tls crate (TLS 1.2 and 1.3 only)",
        )
    } else {
        Finding::info(CHECK, subject, "a TLS 1.1 handshake is refused")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_expiry() {
        assert!(name_matches("mx.example.org", "MX.example.org."));
        assert!(name_matches("*.example.org", "mx.example.org"));
        assert!(!name_matches("*.example.org", "a.mx.example.org"));
        assert!(!name_matches("*.example.org", "example.org"));
        assert_eq!(expiry(3, "c").severity, Severity::Error);
        assert_eq!(expiry(-1, "c").severity, Severity::Error);
        assert_eq!(expiry(20, "c").severity, Severity::Warning);
        assert_eq!(expiry(90, "c").severity, Severity::Info);
    }

    #[test]
    fn leaf_of_an_rcgen_certificate() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(vec!["mx.example.test".into()]).unwrap();
        p.not_after = rcgen::date_time_ymd(2031, 1, 2);
        let cert = p.self_signed(&key).unwrap();
        let (t, names) = leaf_facts(cert.der()).unwrap();
        assert_eq!(names, vec!["mx.example.test"]);
        assert_eq!(t, 1_925_078_400);
    }
}
