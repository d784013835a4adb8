//! The DNS records a signing domain publishes, and `qmail-dkim show`'s comparison of
//! what is published with what should be.
//!
//! - DKIM key record (RFC 6376 section 3.6.1; `k=ed25519` RFC 8463 section 4.2) at
//!   `SELECTOR._domainkey.DOMAIN`: `v=DKIM1; k=rsa; p=BASE64`, written in zone-file
//!   form (RFC 1035 section 5.1) as character strings of at most 255 bytes each
//!   (RFC 1035 section 3.3.14; RFC 6376 section 3.6.2.2 joins them without spaces).
//! - SPF (RFC 7208) at `DOMAIN`, suggested as `v=spf1 mx a:ME ~all`; exactly one record
//!   beginning `v=spf1` may exist (section 4.5: more is a permerror).
//! - DMARC (RFC 7489 section 6.1) at `_dmarc.DOMAIN`, suggested as `p=none` with
//!   aggregate reports to postmaster (tighten to quarantine, then reject, once the
//!   reports show every legitimate source passing).

use base64::Engine;

use crate::keys::Algorithm;

/// Longest character string of a TXT record (RFC 1035 section 3.3).
pub const TXT_STRING_MAX: usize = 255;

/// The DNS name of a key record: `SELECTOR._domainkey.DOMAIN`.
pub fn dkim_name(selector: &str, domain: &str) -> String {
    format!("{selector}._domainkey.{domain}")
}

/// The DMARC record's name: `_dmarc.DOMAIN`.
pub fn dmarc_name(domain: &str) -> String {
    format!("_dmarc.{domain}")
}

/// The key record's text: `v=DKIM1; k=ALG; p=BASE64(public)`.
pub fn dkim_text(algorithm: Algorithm, public: &[u8]) -> String {
    format!(
        "v=DKIM1; k={}; p={}",
        algorithm.ext(),
        base64::engine::general_purpose::STANDARD.encode(public)
    )
}

/// The SPF record suggested for a domain whose mail leaves from host `me`.
pub fn spf_text(me: &str) -> String {
    format!("v=spf1 mx a:{me} ~all")
}

/// The DMARC record suggested to start with.
pub fn dmarc_text(domain: &str) -> String {
    format!("v=DMARC1; p=none; rua=mailto:postmaster@{domain}")
}

/// `text` as zone-file character strings, each at most [`TXT_STRING_MAX`] bytes of
/// data, quoted, `"` and `\` escaped, other bytes outside printable ASCII as `\DDD`.
pub fn zone_strings(text: &[u8]) -> String {
    text.chunks(TXT_STRING_MAX)
        .map(quoted)
        .collect::<Vec<_>>()
        .join(" ")
}

fn quoted(s: &[u8]) -> String {
    let mut q = String::with_capacity(s.len() + 2);
    q.push('"');
    for &b in s {
        match b {
            b'"' | b'\\' => {
                q.push('\\');
                q.push(b as char);
            }
            b' '..=b'~' => q.push(b as char),
            _ => q.push_str(&format!("\\{b:03}")),
        }
    }
    q.push('"');
    q
}

/// One zone-file line: `NAME. IN TXT "..." "..."`.
pub fn zone_line(name: &str, text: &str) -> String {
    format!("{name}. IN TXT {}", zone_strings(text.as_bytes()))
}

/// The tags of a DKIM key record (RFC 6376 section 3.2 tag-list): names and values
/// with surrounding white space removed; `p=` with all white space removed (base64 may
/// be folded).
pub fn tags(text: &str) -> Vec<(String, String)> {
    text.split(';')
        .filter_map(|t| t.split_once('='))
        .map(|(k, v)| {
            let k = k.trim().to_string();
            let v = if k == "p" {
                v.chars().filter(|c| !c.is_whitespace()).collect()
            } else {
                v.trim().to_string()
            };
            (k, v)
        })
        .collect()
}

/// How a published record compares with what should be there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    /// Published as it should be.
    Ok,
    /// Nothing published.
    Missing,
    /// Published, but not as it should be (why).
    Differs(String),
    /// The lookup failed (why); try again.
    Unknown(String),
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Status::Ok => f.write_str("ok"),
            Status::Missing => f.write_str("missing: publish the record above"),
            Status::Differs(w) => write!(f, "differs: {w}"),
            Status::Unknown(w) => write!(f, "unknown: {w}"),
        }
    }
}

/// Compare the TXT records published at a key's name with the record `expected`
/// ([`dkim_text`]): the one with a `p=` must carry the same key and algorithm.
pub fn check_dkim(expected: &str, published: &[Vec<u8>]) -> Status {
    let want = tags(expected);
    let get = |t: &[(String, String)], k: &str| {
        t.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let keys: Vec<Vec<(String, String)>> = published
        .iter()
        .map(|r| tags(&String::from_utf8_lossy(r)))
        .filter(|t| t.iter().any(|(n, _)| n == "p"))
        .collect();
    match keys.as_slice() {
        [] => Status::Missing,
        [one] => {
            let k = |t: &[(String, String)]| {
                let k = get(t, "k");
                if k.is_empty() { "rsa".to_string() } else { k }
            };
            if get(one, "p").is_empty() {
                Status::Differs("the published key is revoked (empty p=)".to_string())
            } else if get(one, "p") != get(&want, "p") {
                Status::Differs("the published p= is another key".to_string())
            } else if k(one) != k(&want) {
                Status::Differs(format!("the published k= is {}", k(one)))
            } else {
                Status::Ok
            }
        }
        more => Status::Differs(format!(
            "{} key records at one name (verifiers may use any)",
            more.len()
        )),
    }
}

/// The records of `published` that begin with `version` (`v=spf1`, `v=DMARC1`), and
/// whether that is right: one is [`Status::Ok`], none is missing, more is an error.
pub fn check_policy(version: &str, published: &[Vec<u8>]) -> (Vec<Vec<u8>>, Status) {
    let found: Vec<Vec<u8>> = published
        .iter()
        .filter(|r| {
            let (t, v) = (r.trim_ascii_start(), version.as_bytes());
            t.len() >= v.len()
                && t[..v.len()].eq_ignore_ascii_case(v)
                && t.get(v.len()).is_none_or(|&c| c == b' ' || c == b';')
        })
        .cloned()
        .collect();
    let status = match found.len() {
        0 => Status::Missing,
        1 => Status::Ok,
        n => Status::Differs(format!("{n} records; receivers treat that as an error")),
    };
    (found, status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zone_strings_split_at_255_bytes() {
        let text = format!("v=DKIM1; k=rsa; p={}", "A".repeat(392));
        let z = zone_strings(text.as_bytes());
        let parts: Vec<&str> = z.split(' ').collect();
        assert_eq!(parts.len(), 4, "{z}"); // "v=DKIM1;" "k=rsa;" "p=AAA..." split by spaces
        let strings: Vec<String> = z
            .split("\" \"")
            .map(|s| s.trim_matches('"').to_string())
            .collect();
        assert_eq!(strings.len(), 2);
        assert_eq!(strings[0].len(), 255);
        assert_eq!(strings.concat(), text);
        assert_eq!(zone_strings(b"a\"b\\c\x01"), "\"a\\\"b\\\\c\\001\"");
        assert_eq!(
            zone_line("s._domainkey.example.com", "v=DKIM1"),
            "s._domainkey.example.com. IN TXT \"v=DKIM1\""
        );
    }

    #[test]
    fn dkim_records_compare_by_key_and_algorithm() {
        let want = dkim_text(Algorithm::Rsa, b"key-one");
        assert_eq!(want, "v=DKIM1; k=rsa; p=a2V5LW9uZQ==");
        let folded = b"v=DKIM1; k=rsa; p=a2V5LW 9uZQ==".to_vec();
        assert_eq!(check_dkim(&want, &[folded]), Status::Ok);
        // k= defaults to rsa
        assert_eq!(check_dkim(&want, &[b"p=a2V5LW9uZQ==".to_vec()]), Status::Ok);
        assert_eq!(check_dkim(&want, &[]), Status::Missing);
        assert_eq!(
            check_dkim(&want, &[b"v=spf1 -all".to_vec()]),
            Status::Missing
        );
        assert!(matches!(
            check_dkim(&want, &[b"v=DKIM1; p=b3RoZXI=".to_vec()]),
            Status::Differs(_)
        ));
        assert!(matches!(
            check_dkim(&want, &[b"v=DKIM1; p=".to_vec()]),
            Status::Differs(_)
        ));
        assert!(matches!(
            check_dkim(&want, &[b"k=ed25519; p=a2V5LW9uZQ==".to_vec()]),
            Status::Differs(_)
        ));
        let two = [b"p=a2V5LW9uZQ==".to_vec(), b"p=a2V5LW9uZQ==".to_vec()];
        assert!(matches!(check_dkim(&want, &two), Status::Differs(_)));
        // hostile bytes do not panic
        assert_ne!(
            check_dkim(&want, &[vec![0xff, b'p', b'=', 0xfe]]),
            Status::Ok
        );
        assert_ne!(check_dkim(&want, &[b"p=\xff".to_vec()]), Status::Ok);
    }

    #[test]
    fn policies_are_counted() {
        let recs = [
            b"v=spf1 mx -all".to_vec(),
            b"google-site-verification=x".to_vec(),
            b"v=spf10".to_vec(),
        ];
        let (found, st) = check_policy("v=spf1", &recs);
        assert_eq!((found.len(), st), (1, Status::Ok));
        assert_eq!(check_policy("v=spf1", &[]).1, Status::Missing);
        let two = [b"v=spf1 -all".to_vec(), b"V=SPF1 mx".to_vec()];
        assert!(matches!(check_policy("v=spf1", &two).1, Status::Differs(_)));
        assert_eq!(
            check_policy("v=DMARC1", &[b"v=DMARC1; p=none".to_vec()]).1,
            Status::Ok
        );
        assert_eq!(
            check_policy("v=DMARC1", &[b"v=DMARC1".to_vec()]).1,
            Status::Ok
        );
        assert_eq!(check_policy("v=spf1", &[vec![0xc3]]).1, Status::Missing);
    }

    #[test]
    fn suggestions() {
        assert_eq!(
            spf_text("mx.example.com"),
            "v=spf1 mx a:mx.example.com ~all"
        );
        assert_eq!(
            dmarc_text("example.com"),
            "v=DMARC1; p=none; rua=mailto:postmaster@example.com"
        );
        assert_eq!(dmarc_name("example.com"), "_dmarc.example.com");
        assert_eq!(dkim_name("s", "example.com"), "s._domainkey.example.com");
    }
}
