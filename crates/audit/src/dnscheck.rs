//! The DNS check, through the resolvers of `control/nameservers` (else
//! `/etc/resolv.conf`), as qmail-remote resolves: the MX of each local domain
//! (`control/locals`) points at us (`me`, or a host with one of `me`'s addresses); the
//! PTR of each of `me`'s addresses names the host we greet with (`helohost`, else
//! `me`); each local domain publishes one SPF record (RFC 7208 section 4.5) and a DMARC
//! record (RFC 7489 section 6.3) that parse; and for every DKIM key we hold
//! (`control/dkim/DOMAIN/SELECTOR.rsa` or `.ed25519`, as qmail-dkim writes them) the key published at
//! `SELECTOR._domainkey.DOMAIN` (RFC 6376 section 3.6.1) is its public half. When no
//! resolver answers, everything is skipped with one note.

use crate::{Audit, Finding, Severity};
use dns::{Dns, DnsError};
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

const CHECK: &str = "dns";

/// Problems of an SPF record's text, empty when it parses (RFC 7208 section 12 terms).
pub fn spf_problems(rec: &str) -> Vec<String> {
    let mut words = rec.split_ascii_whitespace();
    if words.next().map(str::to_ascii_lowercase).as_deref() != Some("v=spf1") {
        return vec!["does not start with v=spf1".into()];
    }
    let mut bad = Vec::new();
    for w in words {
        let lw = w.to_ascii_lowercase();
        if let Some((name, _)) = lw.split_once('=')
            && !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            continue; // a modifier (redirect=, exp=, or unknown: ignored)
        }
        let m = lw.trim_start_matches(['+', '-', '~', '?']);
        let mech = m.split([':', '/']).next().unwrap_or("");
        let arg_ok = match mech {
            "all" => m == "all",
            "a" | "mx" | "ptr" => true,
            "include" | "exists" => m.len() > mech.len() + 1 && m.as_bytes()[mech.len()] == b':',
            "ip4" => m.get(4..).is_some_and(|a| {
                a.split('/')
                    .next()
                    .is_some_and(|ip| ip.parse::<std::net::Ipv4Addr>().is_ok())
            }),
            "ip6" => m.get(4..).is_some_and(|a| {
                a.split('/')
                    .next()
                    .is_some_and(|ip| ip.parse::<std::net::Ipv6Addr>().is_ok())
            }),
            _ => false,
        };
        if !arg_ok {
            bad.push(format!("bad term {w}"));
        }
    }
    bad
}

/// Problems of a DMARC record's text, empty when it parses.
pub fn dmarc_problems(rec: &str) -> Vec<String> {
    let tags: Vec<(String, String)> = rec
        .split(';')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| match t.split_once('=') {
            Some((k, v)) => (k.trim().to_ascii_lowercase(), v.trim().to_string()),
            None => (t.to_ascii_lowercase(), String::new()),
        })
        .collect();
    let mut bad = Vec::new();
    if tags.first().map(|(k, v)| (k.as_str(), v.as_str())) != Some(("v", "DMARC1")) {
        bad.push("does not start with v=DMARC1".into());
    }
    match tags.iter().find(|(k, _)| k == "p") {
        Some((_, p))
            if ["none", "quarantine", "reject"].contains(&p.to_ascii_lowercase().as_str()) => {}
        Some((_, p)) => bad.push(format!("bad policy p={p}")),
        None => bad.push("no p= tag".into()),
    }
    bad
}

fn lower(s: &str) -> String {
    s.trim_end_matches('.').to_ascii_lowercase()
}

pub fn check(a: &Audit) -> Vec<Finding> {
    let ctl = a.control();
    let servers = match ctl.list("nameservers") {
        Ok(Some(lines)) if !lines.is_empty() => dns::parse_nameservers(&lines).unwrap_or_default(),
        _ => dns::system_servers(),
    };
    let me = ctl.line("me").ok().flatten().unwrap_or_default();
    let helo = ctl
        .line("helohost")
        .ok()
        .flatten()
        .unwrap_or_else(|| me.clone());
    let Ok(d) = Dns::with_timeout(&servers, Duration::from_secs(3), 1) else {
        return vec![Finding::info(
            CHECK,
            "resolver",
            "cannot set up a resolver: DNS not checked",
        )];
    };
    let mut domains = ctl.list_or_empty("locals").unwrap_or_default();
    if domains.is_empty() {
        domains.push(me.clone());
    }
    // one probe decides whether any resolver answers
    if matches!(d.mx(&domains[0]), Err(DnsError::Soft)) {
        let shown: Vec<String> = servers.iter().map(|s| s.to_string()).collect();
        return vec![Finding::info(
            CHECK,
            "resolver",
            format!(
                "no resolver answers ({}): DNS records not checked",
                shown.join(" ")
            ),
        )];
    }
    let mut v = Vec::new();
    let our_ips: Vec<IpAddr> = d.ips(&me).unwrap_or_default();
    for dom in &domains {
        v.extend(mx(&d, dom, &me, &our_ips));
        v.extend(txt_record(
            &d,
            dom,
            dom,
            "SPF",
            "v=spf1",
            spf_problems,
            "v=spf1 mx -all",
        ));
        v.extend(txt_record(
            &d,
            dom,
            &format!("_dmarc.{dom}"),
            "DMARC",
            "v=DMARC1",
            dmarc_problems,
            "v=DMARC1; p=quarantine; rua=mailto:postmaster@DOMAIN",
        ));
    }
    if our_ips.is_empty() {
        v.push(Finding::new(
            CHECK,
            Severity::Warning,
            me.clone(),
            "an A or AAAA record for control/me",
            "none",
            "publish one",
        ));
    }
    for ip in &our_ips {
        let names = d.ptr(*ip).unwrap_or_default();
        if !names.iter().any(|n| lower(n) == lower(&helo)) {
            v.push(Finding::new(
                CHECK,
                Severity::Warning,
                format!("PTR of {ip}"),
                format!("{helo} (the name we greet with)"),
                if names.is_empty() {
                    "none".into()
                } else {
                    names.join(", ")
                },
                "ask whoever runs the address's reverse zone to set it",
            ));
        }
    }
    v.extend(dkim(&d, &a.home.join("control/dkim")));
    v
}

fn mx(d: &Dns, dom: &str, me: &str, our_ips: &[IpAddr]) -> Vec<Finding> {
    let hosts = d.mx(dom).unwrap_or_default();
    let ours = hosts.iter().any(|(_, h)| {
        lower(h) == lower(me)
            || d.ips(h)
                .unwrap_or_default()
                .iter()
                .any(|ip| our_ips.contains(ip))
    });
    if ours {
        return vec![];
    }
    let shown: Vec<String> = hosts.iter().map(|(p, h)| format!("{p} {h}")).collect();
    vec![Finding::new(
        CHECK,
        Severity::Warning,
        format!("MX of {dom}"),
        format!("{me} (or a host with its address)"),
        if shown.is_empty() {
            "no MX".into()
        } else {
            shown.join(", ")
        },
        format!("publish {dom}. MX 10 {me}."),
    )]
}

fn txt_record(
    d: &Dns,
    dom: &str,
    name: &str,
    what: &str,
    prefix: &str,
    problems: fn(&str) -> Vec<String>,
    example: &str,
) -> Vec<Finding> {
    let recs: Vec<String> = d
        .txt(name)
        .unwrap_or_default()
        .into_iter()
        .map(|r| String::from_utf8_lossy(&r).into_owned())
        .filter(|r| {
            r.to_ascii_lowercase()
                .starts_with(&prefix.to_ascii_lowercase())
        })
        .collect();
    let fix = format!("publish {name}. TXT \"{}\"", example.replace("DOMAIN", dom));
    match recs.as_slice() {
        [] => vec![Finding::new(
            CHECK,
            Severity::Warning,
            format!("{what} of {dom}"),
            format!("a {what} record at {name}"),
            "none",
            fix,
        )],
        [one] => {
            let p = problems(one);
            if p.is_empty() {
                vec![Finding::info(
                    CHECK,
                    format!("{what} of {dom}"),
                    one.clone(),
                )]
            } else {
                vec![Finding::new(
                    CHECK,
                    Severity::Warning,
                    format!("{what} of {dom}"),
                    format!("a {what} record that parses"),
                    format!("{one}: {}", p.join(", ")),
                    fix,
                )]
            }
        }
        _ => vec![Finding::new(
            CHECK,
            Severity::Error,
            format!("{what} of {dom}"),
            format!("one {what} record"),
            format!("{} records", recs.len()),
            "remove all but one",
        )],
    }
}

/// Each DKIM key qmail-dkimsign signs with (the dkim crate's layout:
/// `control/dkim/DOMAIN/SELECTOR.rsa|.ed25519`) against what DNS publishes for it, as
/// `qmail-dkim show` compares them.
fn dkim(d: &Dns, dir: &Path) -> Vec<Finding> {
    use dkim::records::{Status, check_dkim, dkim_name, dkim_text};
    let mut v = Vec::new();
    let Some(home) = dir.parent().and_then(Path::parent) else {
        return v;
    };
    let Ok(domains) = std::fs::read_dir(dir) else {
        return v;
    };
    for dom in domains.flatten() {
        let domain = dom.file_name().to_string_lossy().into_owned();
        let Ok(Some((_, keys))) = dkim::keys::key_files(home, &domain) else {
            continue;
        };
        for k in keys.iter().filter(|k| k.domain == domain) {
            let name = dkim_name(&k.selector, &domain);
            let expected = match dkim::keys::load(k).and_then(|key| key.public_key()) {
                Ok(public) => dkim_text(k.algorithm, &public),
                Err(e) => {
                    v.push(Finding::new(
                        CHECK,
                        Severity::Warning,
                        format!("DKIM key {name}"),
                        "a key qmail-dkimsign can use".to_string(),
                        e,
                        format!(
                            "qmail-dkim keygen {domain} NEWSELECTOR, publish it, remove this key"
                        ),
                    ));
                    continue;
                }
            };
            let published = d.txt(&name).unwrap_or_default();
            let found = match check_dkim(&expected, &published) {
                Status::Ok => continue,
                Status::Missing => "no key published".to_string(),
                Status::Differs(why) | Status::Unknown(why) => why,
            };
            v.push(Finding::new(
                CHECK,
                Severity::Warning,
                format!("DKIM key {name}"),
                format!("{name}. TXT \"{expected}\""),
                found,
                format!("publish what `qmail-dkim show {domain}` prints"),
            ));
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spf_and_dmarc_parse() {
        assert!(spf_problems("v=spf1 mx a:mail.example.org ip4:192.0.2.0/24 ip6:2001:db8::/32 include:_spf.example.net ~all").is_empty());
        assert!(spf_problems("v=spf1 redirect=_spf.example.org").is_empty());
        assert_eq!(
            spf_problems("v=spf1 ip4:300.1.1.1 -all"),
            vec!["bad term ip4:300.1.1.1"]
        );
        assert_eq!(
            spf_problems("v=spf1 frobnicate"),
            vec!["bad term frobnicate"]
        );
        assert!(!spf_problems("spf2.0/pra").is_empty());
        assert!(dmarc_problems("v=DMARC1; p=reject; rua=mailto:a@example.org").is_empty());
        assert_eq!(
            dmarc_problems("v=DMARC1; p=maybe"),
            vec!["bad policy p=maybe"]
        );
        assert_eq!(dmarc_problems("p=none; v=DMARC1").len(), 1);
    }
}
