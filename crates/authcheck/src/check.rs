//! The checks of one message, through mail-auth: SPF (RFC 7208) for the envelope
//! sender, or for the HELO name when the sender is null (section 2.3 and 2.4); DKIM
//! (RFC 6376, RSA and Ed25519 per RFC 8463) for the first [`MAX_SIGNATURES`]
//! signatures; DMARC (RFC 7489, with mail-auth's RFC 9989 tree walk) with alignment,
//! `p=`/`sp=`, and `pct=`, which mail-auth no longer reads, from the record itself.
//!
//! Each of SPF, DKIM and DMARC may make [`Config::lookups`] DNS lookups (a
//! [`Budget`]) and take [`PHASE_TIMEOUT`]; a check that runs out of either is a
//! `temperror`, so one slow or sprawling domain cannot push the others out of their
//! time. Every lookup has the resolver's own timeout (`authchecktimeout`).

use crate::header::ResInfo;
use crate::meter::{Budget, Meter};
use crate::policy::{self, Config, DmarcResult, Findings, Policy};
use base64::Engine;
use mail_auth::common::crypto::{Algorithm, CryptoError};
use mail_auth::dkim::DkimError;
use mail_auth::dmarc::verify::DmarcParameters;
use mail_auth::spf::verify::SpfParameters;
use mail_auth::{
    AuthenticatedMessage, DkimOutput, DkimResult, DnsError, Error, MX, MessageAuthenticator,
    Parameters, RecordSet, SpfOutput, SpfResult, Txt,
};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

/// DKIM signatures verified per message; later ones are ignored (RFC 6376 section 6.1
/// lets a verifier limit them).
pub const MAX_SIGNATURES: usize = 8;

/// The most time each of SPF, DKIM and DMARC may take.
pub const PHASE_TIMEOUT: Duration = Duration::from_secs(30);

/// One message as the checks see it.
pub struct Input<'a> {
    /// The message (LF or CR LF line ends).
    pub message: &'a [u8],
    /// The envelope sender; empty for the null sender.
    pub sender: &'a str,
    /// The HELO/EHLO argument.
    pub helo: &'a str,
    /// The client's address.
    pub ip: IpAddr,
    /// Our host name (SPF's `%{r}`).
    pub me: &'a str,
}

/// What the checks found: the header's resinfos and the policy's findings.
#[derive(Debug)]
pub struct Outcome {
    pub results: Vec<ResInfo>,
    pub findings: Findings,
    /// DNS lookups made.
    pub lookups: u32,
}

/// Run the checks. `random` decides `pct=` sampling.
pub async fn check(
    auth: &MessageAuthenticator,
    input: &Input<'_>,
    cfg: &Config,
    random: u64,
) -> Outcome {
    let budget = Budget::new(cfg.lookups);
    let txt: Meter<Box<str>, Txt> = Meter::new(&budget);
    let mx: Meter<Box<str>, RecordSet<MX>> = Meter::new(&budget);
    let v4: Meter<Box<str>, RecordSet<Ipv4Addr>> = Meter::new(&budget);
    let v6: Meter<Box<str>, RecordSet<Ipv6Addr>> = Meter::new(&budget);
    let ptr: Meter<IpAddr, RecordSet<Box<str>>> = Meter::new(&budget);
    let mut used = 0;

    // SPF
    let helo = input.helo.trim_end_matches('.');
    let spf_params = if input.sender.is_empty() {
        SpfParameters::verify_ehlo(input.ip, helo, input.me)
    } else {
        SpfParameters::verify_mail_from(input.ip, helo, input.me, input.sender)
    };
    let params = Parameters::new(spf_params)
        .with_txt_cache(&txt)
        .with_mx_cache(&mx)
        .with_ipv4_cache(&v4)
        .with_ipv6_cache(&v6)
        .with_ptr_cache(&ptr);
    let spf_domain = if input.sender.is_empty() {
        helo.to_string()
    } else {
        input
            .sender
            .rsplit_once('@')
            .map_or(helo, |(_, d)| d)
            .to_string()
    };
    let mut spf = tokio::time::timeout(PHASE_TIMEOUT, auth.verify_spf(params))
        .await
        .unwrap_or_else(|_| SpfOutput::new(spf_domain.clone()).with_result(SpfResult::TempError));
    if budget.ran_dry() {
        spf = SpfOutput::new(spf_domain.clone()).with_result(SpfResult::TempError);
    }
    used += budget.used();

    // DKIM
    let copy = for_verification(input.message);
    let parsed = AuthenticatedMessage::parse(&copy);
    budget.refill(cfg.lookups);
    let dkim: Vec<DkimOutput> = match &parsed {
        Some(m) => {
            let params = Parameters::new(m).with_txt_cache(&txt);
            tokio::time::timeout(PHASE_TIMEOUT, auth.verify_dkim(params))
                .await
                .unwrap_or_else(|_| {
                    m.dkim_headers
                        .iter()
                        .map(|h| {
                            DkimOutput::temp_err(Error::Dns(DnsError::Resolver("timed out".into())))
                                .with_signature(&h.header)
                        })
                        .collect()
                })
        }
        None => Vec::new(),
    };
    used += budget.used();

    // DMARC
    budget.refill(cfg.lookups);
    let mut findings = Findings {
        spf: spf.result(),
        spf_domain: spf_domain.clone(),
        dkim_pass: dkim.iter().any(|o| *o.result() == DkimResult::Pass),
        dkim_temperror: dkim
            .iter()
            .any(|o| matches!(o.result(), DkimResult::TempError(_))),
        dmarc: DmarcResult::None,
        dmarc_domain: String::new(),
        dmarc_policy: Policy::None,
    };
    let mut dmarc_info = ResInfo {
        method: "dmarc",
        result: "none",
        comment: None,
        props: Vec::new(),
    };
    if let Some(m) = &parsed {
        let params = Parameters::new(DmarcParameters {
            message: m,
            dkim_output: &dkim,
            dkim2_output: None,
            rfc5321_mail_from_domain: &spf_domain,
            spf_output: &spf,
        })
        .with_txt_cache(&txt)
        .with_ipv4_cache(&v4);
        match tokio::time::timeout(PHASE_TIMEOUT, auth.verify_dmarc(params)).await {
            Ok(out) => {
                findings.dmarc_domain = out.domain().to_string();
                findings.dmarc = match out.result() {
                    mail_auth::DmarcResult::Pass => DmarcResult::Pass,
                    mail_auth::DmarcResult::Fail(_) => DmarcResult::Fail,
                    mail_auth::DmarcResult::TempError(_) => DmarcResult::TempError,
                    mail_auth::DmarcResult::PermError(_) => DmarcResult::PermError,
                    mail_auth::DmarcResult::None => DmarcResult::None,
                };
                findings.dmarc_policy = match out.policy() {
                    mail_auth::dmarc::Policy::Reject => Policy::Reject,
                    mail_auth::dmarc::Policy::Quarantine => Policy::Quarantine,
                    _ => Policy::None,
                };
            }
            Err(_) => findings.dmarc = DmarcResult::TempError,
        }
        if budget.ran_dry() && findings.dmarc != DmarcResult::Pass {
            findings.dmarc = DmarcResult::TempError;
        }
        if findings.dmarc == DmarcResult::Fail && findings.dmarc_policy != Policy::None {
            let pct = dmarc_pct(auth, &findings.dmarc_domain, &budget).await;
            if !policy::within_pct(pct, random) {
                findings.dmarc_policy = findings.dmarc_policy.weaker();
                dmarc_info.comment = Some("outside pct, policy lowered");
            }
        }
        if !findings.dmarc_domain.is_empty() {
            dmarc_info.result = dmarc_word(findings.dmarc);
            dmarc_info
                .props
                .push(("header.from", findings.dmarc_domain.clone()));
            dmarc_info
                .props
                .push(("policy.dmarc", findings.dmarc_policy.as_str().to_string()));
        }
    }
    used += budget.used();

    let mut results = vec![spf_info(&spf, input, helo)];
    if dkim.is_empty() {
        results.push(ResInfo {
            method: "dkim",
            result: "none",
            comment: None,
            props: Vec::new(),
        });
    }
    results.extend(dkim.iter().map(dkim_info));
    results.push(dmarc_info);
    Outcome {
        results,
        findings,
        lookups: used,
    }
}

fn dmarc_word(r: DmarcResult) -> &'static str {
    match r {
        DmarcResult::Pass => "pass",
        DmarcResult::Fail => "fail",
        DmarcResult::None => "none",
        DmarcResult::TempError => "temperror",
        DmarcResult::PermError => "permerror",
    }
}

/// The `pct=` of the DMARC record that applies to `domain`: the first record found
/// walking up from it (as the tree walk chose), 100 when none is found.
async fn dmarc_pct(auth: &MessageAuthenticator, domain: &str, budget: &Budget) -> u8 {
    use mail_auth::hickory_resolver::proto::rr::RData;
    let labels: Vec<&str> = domain.trim_end_matches('.').split('.').collect();
    for start in 0..labels.len().saturating_sub(1).min(8) {
        if !budget.take() {
            return 100;
        }
        let name = format!("_dmarc.{}.", labels[start..].join("."));
        let Ok(Ok(answer)) =
            tokio::time::timeout(PHASE_TIMEOUT, auth.resolver().txt_lookup(name)).await
        else {
            continue;
        };
        for rec in answer.answers() {
            if let RData::TXT(t) = &rec.data {
                let text: Vec<u8> = t.txt_data.iter().flat_map(|s| s.iter().copied()).collect();
                let text = String::from_utf8_lossy(&text);
                let v = text.trim_start();
                if v.len() >= 8 && v[..8].eq_ignore_ascii_case("v=DMARC1") {
                    return policy::pct_of(&text);
                }
            }
        }
    }
    100
}

fn spf_info(spf: &SpfOutput, input: &Input, helo: &str) -> ResInfo {
    let result = match spf.result() {
        SpfResult::Pass => "pass",
        SpfResult::Fail => "fail",
        SpfResult::SoftFail => "softfail",
        SpfResult::Neutral => "neutral",
        SpfResult::TempError => "temperror",
        SpfResult::PermError => "permerror",
        SpfResult::None => "none",
    };
    let props = if input.sender.is_empty() {
        vec![("smtp.helo", helo.to_string())]
    } else {
        vec![("smtp.mailfrom", input.sender.to_string())]
    };
    ResInfo {
        method: "spf",
        result,
        comment: None,
        props,
    }
}

/// Our fixed words for a DKIM failure.
fn dkim_reason(e: &Error) -> &'static str {
    match e {
        Error::Crypto(CryptoError::FailedVerification | CryptoError::Library(_)) => {
            "signature did not verify"
        }
        Error::Crypto(CryptoError::IncompatibleAlgorithms) => "key does not fit the algorithm",
        Error::Dns(DnsError::Resolver(_)) => "dns error",
        Error::Dns(DnsError::RecordNotFound(_)) => "no key published",
        Error::Dns(DnsError::InvalidRecordType) | Error::ParseError => "key record unusable",
        Error::Dkim(DkimError::FailedBodyHashMatch) => "body hash did not verify",
        Error::Dkim(DkimError::SignatureExpired) => "signature expired",
        Error::Dkim(DkimError::RevokedPublicKey) => "key revoked",
        Error::Dkim(DkimError::FailedAuidMatch) => "i= outside d=",
        Error::Dkim(DkimError::SignatureLength) => "l= not accepted",
        Error::Dkim(_) => "unsupported signature",
        _ => "malformed signature",
    }
}

fn dkim_info(o: &DkimOutput) -> ResInfo {
    let (result, comment) = match o.result() {
        DkimResult::Pass => ("pass", None),
        DkimResult::Fail(e) => ("fail", Some(dkim_reason(e))),
        // RFC 6376 section 6.1.3: a body hash mismatch is a failed signature
        DkimResult::Neutral(e @ Error::Dkim(DkimError::FailedBodyHashMatch)) => {
            ("fail", Some(dkim_reason(e)))
        }
        DkimResult::Neutral(e) => ("neutral", Some(dkim_reason(e))),
        DkimResult::PermError(e) => ("permerror", Some(dkim_reason(e))),
        DkimResult::TempError(e) => ("temperror", Some(dkim_reason(e))),
        DkimResult::None => ("none", None),
    };
    let mut props = Vec::new();
    if let Some(s) = o.signature() {
        props.push(("header.d", s.d.clone()));
        props.push(("header.s", s.s.clone()));
        let a = match s.a {
            Algorithm::RsaSha1 => "rsa-sha1",
            Algorithm::RsaSha256 => "rsa-sha256",
            Algorithm::Ed25519Sha256 => "ed25519-sha256",
        };
        props.push(("header.a", a.to_string()));
        let b = base64::engine::general_purpose::STANDARD.encode(&s.b[..s.b.len().min(6)]);
        if !b.is_empty() {
            props.push(("header.b", b));
        }
    }
    ResInfo {
        method: "dkim",
        result,
        comment,
        props,
    }
}

/// The message as DKIM verifies it: lines ending in CR LF (qmail's queue holds LF), and
/// `DKIM-Signature` fields past [`MAX_SIGNATURES`] renamed so that mail-auth neither
/// hashes the body for them nor looks their keys up.
pub fn for_verification(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + message.len() / 32 + 64);
    let mut in_header = true;
    let mut signatures = 0;
    let mut at_line_start = true;
    for (i, &b) in message.iter().enumerate() {
        if at_line_start && in_header {
            let rest = &message[i..];
            if rest.starts_with(b"\n") || rest.starts_with(b"\r\n") {
                in_header = false;
            } else if rest.len() >= 15 && rest[..15].eq_ignore_ascii_case(b"DKIM-Signature:") {
                signatures += 1;
                if signatures > MAX_SIGNATURES {
                    out.extend_from_slice(b"X-Ignored-");
                }
            }
        }
        if b == b'\n' && out.last() != Some(&b'\r') {
            out.push(b'\r');
        }
        out.push(b);
        at_line_start = b == b'\n';
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lf_becomes_crlf_and_extra_signatures_are_set_aside() {
        assert_eq!(
            for_verification(b"A: 1\n\nb\r\nc\n"),
            b"A: 1\r\n\r\nb\r\nc\r\n"
        );
        let mut m = Vec::new();
        for i in 0..MAX_SIGNATURES + 2 {
            m.extend_from_slice(format!("dkim-signature: v=1; n={i}\n").as_bytes());
        }
        m.extend_from_slice(b"\nDKIM-Signature: in the body\n");
        let v = String::from_utf8(for_verification(&m)).unwrap();
        assert_eq!(v.matches("X-Ignored-dkim-signature:").count(), 2);
        assert!(v.contains("\r\nDKIM-Signature: in the body\r\n"));
        assert_eq!(for_verification(b""), b"");
    }

    #[test]
    fn dkim_words_are_ours() {
        let o = DkimOutput::neutral(Error::Dkim(DkimError::FailedBodyHashMatch));
        let i = dkim_info(&o);
        assert_eq!(
            (i.result, i.comment),
            ("fail", Some("body hash did not verify"))
        );
        let o = DkimOutput::temp_err(Error::Dns(DnsError::Resolver("x\r\ny".into())));
        assert_eq!(dkim_info(&o).comment, Some("dns error"));
    }
}
