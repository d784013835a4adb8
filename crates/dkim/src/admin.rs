//! `qmail-dkim keygen` and `qmail-dkim show`: the administrator's side of signing.
//!
//! `keygen` makes a key pair, installs the private key where signing finds it
//! ([`crate::keys::install`]: owned by qmailr, mode 0400, when run as root) and prints
//! the records to publish. `show` prints, for each key of a domain and for its SPF and
//! DMARC records, what should be published next to what DNS answers; the lookups go
//! through the caller (qmail-dkim uses the `dns` crate with `control/nameservers`).

use std::fmt::Write as _;
use std::path::Path;

use crate::keys::{self, Algorithm, Owner};
use crate::records::{self, Status};

/// What `keygen` was asked to make.
#[derive(Clone, Debug)]
pub struct Keygen {
    pub domain: String,
    pub selector: String,
    pub algorithm: Algorithm,
    /// RSA size; 0 for the default.
    pub bits: usize,
    pub force: bool,
}

/// Why keygen or show stopped.
#[derive(Debug)]
pub enum AdminError {
    /// Bad arguments or a key in the way: a permanent refusal (exit 100).
    Refused(String),
    /// Something to retry (exit 111).
    Temporary(String),
}

impl std::fmt::Display for AdminError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AdminError::Refused(s) | AdminError::Temporary(s) => f.write_str(s),
        }
    }
}

/// The installation's host name (control/me), for the SPF suggestion.
fn me(home: &Path) -> String {
    control::Controls::new(home)
        .line("me")
        .ok()
        .flatten()
        .unwrap_or_else(|| "YOUR-MAIL-HOST".to_string())
}

/// Check the names, make the key, install it; returns the text to print.
pub fn keygen(home: &Path, k: &Keygen, owner: Owner) -> Result<String, AdminError> {
    let domain = keys::domain_name(&k.domain)
        .ok_or_else(|| AdminError::Refused(format!("{} is not a domain name", k.domain)))?;
    let selector = keys::selector_name(&k.selector)
        .ok_or_else(|| AdminError::Refused(format!("{} is not a selector", k.selector)))?;
    let key = crate::keygen::generate(k.algorithm, k.bits).map_err(AdminError::Refused)?;
    let public = key.public_key().map_err(AdminError::Temporary)?;
    let pem = key.to_pem().map_err(AdminError::Temporary)?;
    let path = keys::install(home, &domain, &selector, k.algorithm, &pem, owner, k.force).map_err(
        |e| match e {
            keys::InstallError::Exists(s) => AdminError::Refused(s),
            keys::InstallError::Io(e) => AdminError::Temporary(e.to_string()),
        },
    )?;
    let mut out = String::new();
    let _ = writeln!(out, "; private key: {}", path.display());
    let _ = writeln!(
        out,
        "; qmail-remote signs mail From: {domain} (and its subdomains) with it from now on."
    );
    let _ = writeln!(out, "; Publish in the zone of {domain}:");
    out.push_str(&publish_text(
        home,
        &domain,
        &selector,
        k.algorithm,
        &public,
    ));
    Ok(out)
}

/// The records to publish for one key, with the SPF and DMARC suggestions.
pub fn publish_text(
    home: &Path,
    domain: &str,
    selector: &str,
    algorithm: Algorithm,
    public: &[u8],
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}",
        records::zone_line(
            &records::dkim_name(selector, domain),
            &records::dkim_text(algorithm, public)
        )
    );
    let _ = writeln!(
        out,
        "; suggested SPF (once every host sending as {domain} is listed, ~all may become -all):"
    );
    let _ = writeln!(
        out,
        "{}",
        records::zone_line(domain, &records::spf_text(&me(home)))
    );
    let _ = writeln!(
        out,
        "; suggested DMARC (p=none while the reports come in; then p=quarantine, p=reject):"
    );
    let _ = writeln!(
        out,
        "{}",
        records::zone_line(&records::dmarc_name(domain), &records::dmarc_text(domain))
    );
    out
}

/// A TXT lookup: the records at a name (each one's strings joined), or why it failed.
pub type Lookup<'a> = dyn FnMut(&str) -> Result<Vec<Vec<u8>>, String> + 'a;

/// The overall result of `show`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Everything is published as it should be.
    Ok,
    /// Something is missing or different.
    Differs,
    /// A lookup or a key could not be read.
    Unknown,
}

/// `show DOMAIN`: the report and its verdict.
pub fn show(
    home: &Path,
    domain: &str,
    lookup: &mut Lookup<'_>,
) -> Result<(String, Verdict), AdminError> {
    let domain = keys::domain_name(domain)
        .ok_or_else(|| AdminError::Refused(format!("{domain} is not a domain name")))?;
    let mut out = String::new();
    let mut verdict = Verdict::Ok;
    let mut note = |s: &Status| {
        verdict = match (verdict, s) {
            (_, Status::Unknown(_)) | (Verdict::Unknown, _) => Verdict::Unknown,
            (_, Status::Differs(_) | Status::Missing) | (Verdict::Differs, _) => Verdict::Differs,
            _ => verdict,
        };
    };
    let found = keys::key_files(home, &domain).map_err(AdminError::Temporary)?;
    match &found {
        None => {
            let _ = writeln!(
                out,
                "DKIM: no keys for {domain} in {} (make one: qmail-dkim keygen {domain} SELECTOR)",
                keys::DIR
            );
            note(&Status::Missing);
        }
        Some((dir, files)) if dir != &domain || files.is_empty() => {
            let _ = writeln!(
                out,
                "DKIM: {domain} is signed with the keys of {dir} ({} key files)",
                files.len()
            );
            if files.is_empty() {
                note(&Status::Missing);
            }
        }
        Some(_) => {}
    }
    for k in found.iter().flat_map(|(_, f)| f) {
        let name = records::dkim_name(&k.selector, &k.domain);
        let _ = writeln!(
            out,
            "DKIM {name} ({}/{}/{}.{})",
            keys::DIR,
            k.domain,
            k.selector,
            k.algorithm.ext()
        );
        let status = match keys::load(k).and_then(|key| key.public_key()) {
            Ok(public) => {
                let want = records::dkim_text(k.algorithm, &public);
                let _ = writeln!(out, "  should be: {}", records::zone_line(&name, &want));
                match lookup(&name) {
                    Ok(recs) => {
                        published(&mut out, &recs);
                        records::check_dkim(&want, &recs)
                    }
                    Err(e) => Status::Unknown(format!("DNS: {e}")),
                }
            }
            Err(e) => Status::Unknown(e),
        };
        let _ = writeln!(out, "  status:    {status}");
        note(&status);
    }
    for (what, name, version, suggested) in [
        (
            "SPF",
            domain.clone(),
            "v=spf1",
            records::spf_text(&me(home)),
        ),
        (
            "DMARC",
            records::dmarc_name(&domain),
            "v=DMARC1",
            records::dmarc_text(&domain),
        ),
    ] {
        let _ = writeln!(out, "{what} {name}");
        let status = match lookup(&name) {
            Ok(recs) => {
                let (found, status) = records::check_policy(version, &recs);
                if status == Status::Missing {
                    let _ = writeln!(
                        out,
                        "  suggested: {}",
                        records::zone_line(&name, &suggested)
                    );
                }
                published(&mut out, &found);
                status
            }
            Err(e) => Status::Unknown(format!("DNS: {e}")),
        };
        let _ = writeln!(out, "  status:    {status}");
        note(&status);
    }
    Ok((out, verdict))
}

fn published(out: &mut String, recs: &[Vec<u8>]) {
    if recs.is_empty() {
        let _ = writeln!(out, "  published: (nothing)");
    }
    for r in recs {
        let _ = writeln!(out, "  published: {}", records::zone_strings(r));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn home() -> tempfile::TempDir {
        let h = tempfile::tempdir().unwrap();
        std::fs::create_dir(h.path().join("control")).unwrap();
        std::fs::write(h.path().join("control/me"), "mx.example.test\n").unwrap();
        h
    }

    const ME: Owner = Owner {
        uid: None,
        gid: None,
    };

    fn make_key(h: &Path, sel: &str, alg: Algorithm) -> String {
        let k = Keygen {
            domain: "Example.TEST".into(),
            selector: sel.into(),
            algorithm: alg,
            bits: 1024,
            force: false,
        };
        keygen(h, &k, ME).unwrap()
    }

    /// The key record line keygen printed, as (name, joined text).
    fn record(printed: &str) -> (String, String) {
        let line = printed
            .lines()
            .find(|l| l.contains("._domainkey."))
            .unwrap();
        let (name, strings) = line.split_once(". IN TXT ").unwrap();
        let text: String = strings
            .split("\" \"")
            .map(|s| s.trim_matches('"'))
            .collect();
        (name.to_string(), text)
    }

    #[test]
    fn keygen_prints_records_and_show_compares_them() {
        let h = home();
        let printed = make_key(h.path(), "s1", Algorithm::Ed25519);
        assert!(printed.contains("example.test. IN TXT \"v=spf1 mx a:mx.example.test ~all\""));
        assert!(printed.contains(
            "_dmarc.example.test. IN TXT \"v=DMARC1; p=none; rua=mailto:postmaster@example.test\""
        ));
        let (name, text) = record(&printed);
        assert_eq!(name, "s1._domainkey.example.test");
        assert!(text.starts_with("v=DKIM1; k=ed25519; p="), "{text}");

        let mut dns = |n: &str| -> Result<Vec<Vec<u8>>, String> {
            Ok(match n {
                "s1._domainkey.example.test" => vec![text.clone().into_bytes()],
                "example.test" => vec![b"v=spf1 mx -all".to_vec()],
                _ => vec![],
            })
        };
        let (report, verdict) = show(h.path(), "example.test", &mut dns).unwrap();
        assert_eq!(verdict, Verdict::Differs, "{report}");
        assert!(report.contains("status:    ok"), "{report}");
        assert!(
            report.contains("DMARC _dmarc.example.test\n  suggested:"),
            "{report}"
        );

        let mut all = |n: &str| -> Result<Vec<Vec<u8>>, String> {
            Ok(match n {
                "s1._domainkey.example.test" => vec![text.clone().into_bytes()],
                "example.test" => vec![b"v=spf1 mx -all".to_vec()],
                _ => vec![b"v=DMARC1; p=reject".to_vec()],
            })
        };
        assert_eq!(
            show(h.path(), "example.test", &mut all).unwrap().1,
            Verdict::Ok
        );
        let mut down = |_: &str| -> Result<Vec<Vec<u8>>, String> { Err("timed out".into()) };
        let (report, verdict) = show(h.path(), "example.test", &mut down).unwrap();
        assert_eq!(verdict, Verdict::Unknown);
        assert!(report.contains("unknown: DNS: timed out"), "{report}");
    }

    #[test]
    fn rsa_records_are_split_and_the_selector_is_not_shared() {
        let h = home();
        let mut k = Keygen {
            domain: "example.test".into(),
            selector: "r1".into(),
            algorithm: Algorithm::Rsa,
            bits: 0,
            force: false,
        };
        let printed = keygen(h.path(), &k, ME).unwrap();
        let line = printed
            .lines()
            .find(|l| l.contains("._domainkey."))
            .unwrap();
        assert!(
            line.contains("\" \""),
            "a 2048-bit key needs two strings: {line}"
        );
        k.algorithm = Algorithm::Ed25519;
        k.force = true;
        assert!(matches!(
            keygen(h.path(), &k, ME),
            Err(AdminError::Refused(_))
        ));
        let bad = Keygen {
            domain: "../x".into(),
            ..k
        };
        assert!(matches!(
            keygen(h.path(), &bad, ME),
            Err(AdminError::Refused(_))
        ));
    }
}
