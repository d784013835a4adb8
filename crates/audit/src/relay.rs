//! The open-relay self-test: from a loopback alias the rules in `control/tcp.smtp.cdb`
//! do not grant `RELAYCLIENT` (127.0.0.2 first), connect to our qmail-smtpd listener and
//! try the classic battery of relay tricks at RCPT (plain foreign domain, percent hack,
//! bang path, quoted local part, source route, IP literal, `@@`). Each must be refused
//! (any reply but 2xx); the session ends with QUIT, never DATA, so nothing is queued.
//!
//! When the only rule that matches the probe address is the default (`:allow,...`) and it
//! grants RELAYCLIENT, the probe runs anyway: that rule makes everyone a relay client.

use crate::net::{self, Listener};
use crate::services::{self, Service};
use crate::{Audit, Finding, Severity};
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::Duration;

const CHECK: &str = "relay";

/// The probe's source addresses, in order of preference.
const PROBES: [Ipv4Addr; 4] = [
    Ipv4Addr::new(127, 0, 0, 2),
    Ipv4Addr::new(127, 0, 0, 3),
    Ipv4Addr::new(127, 1, 2, 3),
    Ipv4Addr::new(127, 255, 255, 254),
];

/// A domain that is nobody's (RFC 2606).
const FOREIGN: &str = "relay-test.invalid";

/// The battery: (trick, RCPT address) with `local` one of our rcpthosts.
pub fn tricks(local: &str) -> Vec<(&'static str, String)> {
    vec![
        ("plain foreign domain", format!("<audit@{FOREIGN}>")),
        ("percent hack", format!("<audit%{FOREIGN}@{local}>")),
        ("bang path", format!("<{FOREIGN}!audit@{local}>")),
        (
            "quoted local part",
            format!("<\"audit@{FOREIGN}\"@{local}>"),
        ),
        ("source route", format!("<@{local}:audit@{FOREIGN}>")),
        ("IP literal", "<audit@[192.0.2.1]>".to_string()),
        ("@@", format!("<audit@{FOREIGN}@{local}>")),
        (
            "percent hack to an IP literal",
            format!("<audit%{FOREIGN}@[127.0.0.1]>"),
        ),
    ]
}

/// Choose the probe address: the first whose matching rule does not grant RELAYCLIENT,
/// or whose only match is the default rule (everyone). `None`: every candidate is a
/// deliberate relay client.
pub fn probe_address(rules: Option<&Path>) -> Option<(Ipv4Addr, bool)> {
    let db = rules.and_then(|p| control::cdbfile::Cdb::open(p).ok().flatten());
    for ip in PROBES {
        let Some(db) = &db else {
            return Some((ip, false));
        };
        let Ok(d) = ucspi::rules::lookup(db, &ip.to_string(), None, None) else {
            continue;
        };
        if d.deny {
            continue;
        }
        let relay = d.env.iter().any(|(k, _)| k == b"RELAYCLIENT");
        let default = d.rule.as_deref().is_none_or(|r| r.is_empty());
        if !relay || default {
            return Some((ip, relay));
        }
    }
    None
}

fn connect_from(src: Ipv4Addr, dst: SocketAddr) -> std::io::Result<TcpStream> {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, SockaddrIn, bind, connect, socket};
    let fd = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    bind(
        fd.as_raw_fd(),
        &SockaddrIn::from(std::net::SocketAddrV4::new(src, 0)),
    )?;
    let SocketAddr::V4(d) = dst else {
        return Err(std::io::Error::other("not an IPv4 listener"));
    };
    connect(fd.as_raw_fd(), &SockaddrIn::from(d))?;
    let s = TcpStream::from(fd);
    s.set_read_timeout(Some(Duration::from_secs(20)))?;
    s.set_write_timeout(Some(Duration::from_secs(20)))?;
    Ok(s)
}

/// One SMTP reply: its code and last line.
fn reply(r: &mut impl BufRead) -> std::io::Result<(u16, String)> {
    for _ in 0..100 {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Err(std::io::Error::other("connection closed"));
        }
        let code = line.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0);
        if line.as_bytes().get(3) != Some(&b'-') {
            return Ok((code, line.trim_end().to_string()));
        }
    }
    Err(std::io::Error::other("reply too long"))
}

fn command(s: &mut TcpStream, r: &mut impl BufRead, line: &str) -> std::io::Result<(u16, String)> {
    s.write_all(format!("{line}\r\n").as_bytes())?;
    reply(r)
}

/// Run the battery from `src` against `dst`: (trick, address, reply) for each accepted.
pub fn probe(
    src: Ipv4Addr,
    dst: SocketAddr,
    local: &str,
) -> std::io::Result<Vec<(String, String, String)>> {
    let mut s = connect_from(src, dst)?;
    let mut r = BufReader::new(s.try_clone()?);
    let (code, text) = reply(&mut r)?;
    if code != 220 {
        return Err(std::io::Error::other(format!("greeting {text}")));
    }
    command(&mut s, &mut r, "HELO relay-audit.invalid")?;
    let (code, text) = command(&mut s, &mut r, &format!("MAIL FROM:<postmaster@{local}>"))?;
    if !(200..300).contains(&code) {
        let _ = command(&mut s, &mut r, "QUIT");
        return Err(std::io::Error::other(format!("MAIL FROM refused: {text}")));
    }
    let mut accepted = Vec::new();
    for (name, addr) in tricks(local) {
        let (code, text) = command(&mut s, &mut r, &format!("RCPT TO:{addr}"))?;
        if (200..300).contains(&code) {
            accepted.push((name.to_string(), addr, text));
        }
    }
    let _ = command(&mut s, &mut r, "QUIT");
    Ok(accepted)
}

pub fn check(a: &Audit, listeners: &[Listener], ours: &[Service]) -> Vec<Finding> {
    let smtpd: Option<&Listener> = listeners.iter().find(|l| {
        l.proto == "tcp"
            && l.ip.is_ipv4()
            && services::owner(l, ours).is_some_and(|s| s.name == "qmail-smtpd")
    });
    let Some(l) = smtpd else {
        return vec![Finding::info(
            CHECK,
            "qmail-smtpd",
            "no IPv4 listener of our qmail-smtpd: relay test not run",
        )];
    };
    let rules = a.home.join("control/tcp.smtp.cdb");
    let Some((src, everyone)) = probe_address(rules.exists().then_some(rules.as_path())) else {
        return vec![Finding::info(
            CHECK,
            "control/tcp.smtp",
            "every probe address (127.0.0.2, 127.0.0.3, 127.1.2.3, 127.255.255.254) is granted \
             RELAYCLIENT by a rule of its own: relay test not run",
        )];
    };
    let ctl = a.control();
    let me = ctl
        .line("me")
        .ok()
        .flatten()
        .unwrap_or_else(|| "localhost".into());
    let local = ctl
        .list_or_empty("rcpthosts")
        .unwrap_or_default()
        .into_iter()
        .find(|d| !d.starts_with('.') && !d.is_empty())
        .unwrap_or(me);
    let dst = SocketAddr::new(net::connect_ip(l.ip), l.port);
    let subject = format!("qmail-smtpd at {dst}, probed from {src}");
    match probe(src, dst, &local) {
        Ok(acc) if acc.is_empty() => vec![Finding::info(
            CHECK,
            subject,
            format!("all {} relay tricks refused at RCPT", tricks(&local).len()),
        )],
        Ok(acc) => {
            let list: Vec<String> = acc
                .iter()
                .map(|(n, a, t)| format!("{n} {a}: {t}"))
                .collect();
            vec![Finding::new(
                CHECK,
                Severity::Error,
                subject,
                "every relay trick refused at RCPT",
                format!("an open relay: accepted {}", list.join("; ")),
                if everyone {
                    "the default rule of control/tcp.smtp grants RELAYCLIENT to everyone: \
                     grant it only to your own networks (127.:allow,RELAYCLIENT=\"\"), then \
                     rebuild tcp.smtp.cdb (tcprules)"
                        .to_string()
                } else {
                    "check control/rcpthosts and the RELAYCLIENT rules of control/tcp.smtp"
                        .to_string()
                },
            )]
        }
        Err(e) => vec![Finding::new(
            CHECK,
            Severity::Warning,
            subject,
            "an SMTP session to test relaying",
            format!("the test failed: {e}"),
            "check that qmail-smtpd answers (svstat, its log)",
        )],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cdb(text: &str) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        let recs = ucspi::rules::compile(text.as_bytes()).unwrap();
        control::cdbfile::write(
            &d.path().join("r.cdb"),
            recs.iter().map(|(k, v)| (&k[..], &v[..])),
            0o644,
        )
        .unwrap();
        d
    }

    #[test]
    fn the_probe_avoids_granted_addresses_but_not_the_default() {
        assert_eq!(probe_address(None), Some((PROBES[0], false)));
        let d = cdb("127.0.0.2:allow,RELAYCLIENT=\"\"\n");
        assert_eq!(
            probe_address(Some(&d.path().join("r.cdb"))),
            Some((PROBES[1], false))
        );
        let d = cdb("127.:allow,RELAYCLIENT=\"\"\n");
        assert_eq!(probe_address(Some(&d.path().join("r.cdb"))), None);
        let d = cdb(":allow,RELAYCLIENT=\"\"\n");
        assert_eq!(
            probe_address(Some(&d.path().join("r.cdb"))),
            Some((PROBES[0], true))
        );
    }

    #[test]
    fn every_trick_names_a_foreign_destination() {
        for (_, a) in tricks("example.test") {
            assert!(a.contains(FOREIGN) || a.contains('['), "{a}");
        }
    }
}
