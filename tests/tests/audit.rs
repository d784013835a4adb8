//! qmail-audit on a test installation with its services under our svscan (smtpd,
//! submission, pop3d on a loopback address of this test's own, so the listener checks
//! can be scoped with `--address` and other tests' servers never count): a fresh
//! install reports nothing above info; then, one at a time, a world-writable control
//! file, qmail-queue without its setuid bit, a stray control file and a changed program
//! after the baseline (and a forged manifest), an open relay from a bad tcp.smtp rule, a
//! certificate expiring in 3 days, a listener on an unexpected port and a queue orphan
//! are each reported with their severity and exit status. Every report is read as JSON
//! by Python's json module.

use e2e::*;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use e2e::svscan::Scan;

fn up_pid(sys: &System, dir: &Path) -> Option<u32> {
    let o = Command::new(sys.bin("svstat")).arg(dir).output().ok()?;
    let s = String::from_utf8_lossy(&o.stdout).into_owned();
    s.split("up (pid ").nth(1)?.split(')').next()?.parse().ok()
}

/// One finding as the JSON report gives it.
#[derive(Debug)]
struct Found {
    check: String,
    severity: String,
    subject: String,
    found: String,
}

/// Run qmail-audit --json with the test's scope; the report is parsed by Python's json
/// module, which prints one tab-separated line per finding and the summary's exit.
fn audit(sys: &System, scan: &Scan, addr: &str) -> (i32, Vec<Found>) {
    audit_with(sys, scan, addr, &[])
}

fn audit_with(sys: &System, scan: &Scan, addr: &str, extra: &[&str]) -> (i32, Vec<Found>) {
    let out = Command::new(sys.bin("qmail-audit"))
        .args(["--json", "--local", "--address", addr, "--service"])
        .arg(&scan.dir)
        .args(extra)
        .output()
        .unwrap();
    let code = out.status.code().unwrap_or(-1);
    let py = "import json,sys\nd=json.load(sys.stdin)\nfor f in d['findings']:\n  print('\\t'.join(f[k].replace('\\t',' ').replace('\\n',' ') for k in ('check','severity','subject','found')))\nprint(d['summary']['exit'])\n";
    let parsed = output_with_input(Command::new("python3").args(["-c", py]), &out.stdout);
    assert!(
        parsed.status.success(),
        "python3 could not read the JSON report: {}\n{}",
        String::from_utf8_lossy(&parsed.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    let text = String::from_utf8_lossy(&parsed.stdout).into_owned();
    let mut lines: Vec<&str> = text.lines().collect();
    let exit: i32 = lines
        .pop()
        .and_then(|l| l.parse().ok())
        .expect("summary exit");
    assert_eq!(exit, code, "the summary's exit is the exit status");
    let found = lines
        .iter()
        .map(|l| {
            let f: Vec<&str> = l.splitn(4, '\t').collect();
            Found {
                check: f[0].into(),
                severity: f[1].into(),
                subject: f[2].into(),
                found: f.get(3).unwrap_or(&"").to_string(),
            }
        })
        .collect();
    (code, found)
}

fn serious(found: &[Found]) -> Vec<&Found> {
    found.iter().filter(|f| f.severity != "info").collect()
}

/// The single finding above info, which must be of `check`, `severity`, and name `subject`.
#[track_caller]
fn only(found: &[Found], check: &str, severity: &str, subject: &str) {
    let s = serious(found);
    assert!(
        s.iter()
            .any(|f| f.check == check && f.severity == severity && f.subject.contains(subject)),
        "no {severity} of {check} about {subject}: {s:#?}"
    );
    assert!(
        s.iter().all(|f| f.check == check),
        "findings of other checks: {s:#?}"
    );
}

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A certificate for `name` whose last valid day is `days` from now.
fn certificate(name: &str, days: u64) -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut p = rcgen::CertificateParams::new(vec![name.into()]).unwrap();
    let (y, m, d) = civil(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            / 86_400
            + days,
    );
    p.not_after = rcgen::date_time_ymd(y, m, d);
    let cert = p.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// The calendar date of a day number since 1970-01-01 (H. Hinnant's civil_from_days).
fn civil(days: u64) -> (i32, u8, u8) {
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y as i32, m as u8, d as u8)
}

#[test]
fn civil_dates() {
    assert_eq!(civil(0), (1970, 1, 1));
    assert_eq!(civil(19_723), (2024, 1, 1));
    assert_eq!(civil(19_782), (2024, 2, 29));
}

#[test]
fn audit_finds_each_planted_fault() {
    need_root!();
    need_tool!("python3", "python3");
    // a loopback address of this test's own: only our services listen there
    let addr = format!(
        "127.91.{}.{}",
        std::process::id() % 250 + 1,
        std::process::id() / 250 % 250 + 1
    );
    let sys = System::install("mx.audit.test", &[]);
    sys.control("listenaddress", &format!("{addr}\n"));
    for p in ["smtpdport", "submissionport", "pop3dport"] {
        sys.control(p, "0\n");
    }
    // a harmless rule, so tcpserver runs with -x and reads the rules at each connection
    sys.control("tcp.smtp", "127.0.0.1:allow\n");
    let services = [
        "qmail-send",
        "qmail-smtpd",
        "qmail-submission",
        "qmail-pop3d",
    ];
    let scan = Scan::start(&sys, &services);
    for s in services {
        let dir = scan.dir.join(s);
        wait_until(&format!("{s} up"), 30, || up_pid(&sys, &dir));
        wait_until(&format!("{s}/log up"), 30, || {
            up_pid(&sys, &dir.join("log"))
        });
        wait_until(&format!("{s}/log/main"), 30, || {
            dir.join("log/main").is_dir().then_some(())
        });
        if s != "qmail-send" {
            wait_until(&format!("{s} listening"), 30, || {
                up_pid(&sys, &dir).and_then(listen_port)
            });
        }
    }

    // a fresh install: nothing above info, exit 0
    let (code, found) = audit(&sys, &scan, &addr);
    assert_eq!(serious(&found).len(), 0, "{:#?}", serious(&found));
    assert_eq!(code, 0);
    // the checks ran: our listeners seen, the relay test refused every trick
    assert!(
        found
            .iter()
            .any(|f| f.check == "relay" && f.found.contains("relay tricks refused")),
        "{found:#?}"
    );
    assert_eq!(
        found
            .iter()
            .filter(|f| f.check == "services" && f.found.starts_with("listener of"))
            .count(),
        3,
        "{found:#?}"
    );
    assert!(
        found
            .iter()
            .any(|f| f.check == "dns" && f.found.contains("no resolver answers")),
        "{found:#?}"
    );

    // a control file writable by everyone
    let me = sys.root.join("control/me");
    chmod(&me, 0o666);
    let (code, found) = audit(&sys, &scan, &addr);
    only(&found, "installation", "error", "control/me");
    assert_eq!(code, 2);
    chmod(&me, 0o644);

    // qmail-queue without its setuid bit
    let qq = sys.bin("qmail-queue");
    chmod(&qq, 0o711);
    let (code, found) = audit(&sys, &scan, &addr);
    only(&found, "installation", "error", "bin/qmail-queue");
    assert_eq!(code, 2);
    chmod(&qq, 0o4711);
    assert_eq!(audit(&sys, &scan, &addr).0, 0);

    // the baseline; then a stray control file and a changed program
    let o = Command::new(sys.bin("qmail-audit"))
        .arg("--baseline")
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    let key = sys.root.join("audit/hmac.key");
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o7777,
        0o400
    );
    let (code, found) = audit(&sys, &scan, &addr);
    assert_eq!(code, 0, "{:#?}", serious(&found));
    std::fs::write(sys.root.join("control/stray"), "planted\n").unwrap();
    let tcpok = sys.bin("qmail-tcpok");
    let mut bytes = std::fs::read(&tcpok).unwrap();
    bytes.push(0);
    std::fs::write(&tcpok, &bytes).unwrap();
    let (code, found) = audit(&sys, &scan, &addr);
    only(&found, "integrity", "warning", "control/stray");
    only(&found, "integrity", "error", "bin/qmail-tcpok");
    assert_eq!(code, 2);
    // a manifest edited to hide the change is reported as tampered
    let manifest = sys.root.join("audit/manifest");
    let text = std::fs::read_to_string(&manifest).unwrap();
    let forged: String = text
        .lines()
        .filter(|l| !l.ends_with(" control/me"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&manifest, forged).unwrap();
    let (code, found) = audit(&sys, &scan, &addr);
    only(&found, "integrity", "error", "audit/manifest");
    assert!(
        found.iter().any(|f| f.found.contains("tampered")),
        "{found:#?}"
    );
    assert_eq!(code, 2);
    std::fs::remove_file(sys.root.join("control/stray")).unwrap();
    assert!(
        Command::new(sys.bin("qmail-audit"))
            .arg("--baseline")
            .status()
            .unwrap()
            .success()
    );

    // an open relay: the default rule grants RELAYCLIENT to everyone
    // where the rules live: control/tcp.smtp* are links into HOME/guard (qmail-guard's),
    // and the service reads the cdb there; rebuild it in place as qmailctl cdb does
    let rules = std::fs::canonicalize(sys.root.join("control/tcp.smtp"))
        .unwrap_or_else(|_| sys.root.join("control/tcp.smtp"));
    let rebuild = |text: &str| {
        std::fs::write(&rules, text).unwrap();
        let st = Command::new(sys.bin("tcprules"))
            .arg(rules.with_extension("smtp.cdb"))
            .arg(rules.with_extension("smtp.tmp"))
            .stdin(std::fs::File::open(&rules).unwrap())
            .status()
            .unwrap();
        assert!(st.success());
    };
    rebuild("127.0.0.1:allow\n:allow,RELAYCLIENT=\"\"\n");
    let (code, found) = audit(&sys, &scan, &addr);
    // the rules files changed since the baseline too: look at the relay finding
    let relay: Vec<&Found> = serious(&found)
        .into_iter()
        .filter(|f| f.check == "relay")
        .collect();
    assert_eq!(relay.len(), 1, "{found:#?}");
    assert_eq!(relay[0].severity, "error");
    assert!(
        relay[0].found.contains("plain foreign domain"),
        "{relay:#?}"
    );
    assert_eq!(code, 2);
    rebuild("127.0.0.1:allow\n");
    assert!(
        Command::new(sys.bin("qmail-audit"))
            .arg("--baseline")
            .status()
            .unwrap()
            .success()
    );
    assert_eq!(audit(&sys, &scan, &addr).0, 0);

    // a certificate that expires in 3 days
    let (cert, key_pem) = certificate("mx.audit.test", 3);
    let qmaild = nix::unistd::User::from_name("qmaild").unwrap().unwrap().uid;
    for (name, text) in [("servercert.pem", cert), ("serverkey.pem", key_pem)] {
        let p = sys.root.join("control").join(name);
        std::fs::write(&p, text).unwrap();
        chmod(&p, 0o400);
        std::os::unix::fs::chown(&p, Some(qmaild.as_raw()), None).unwrap();
    }
    assert!(
        Command::new(sys.bin("qmail-audit"))
            .arg("--baseline")
            .status()
            .unwrap()
            .success()
    );
    let (code, found) = audit(&sys, &scan, &addr);
    only(&found, "tls", "error", "servercert.pem");
    assert!(
        found
            .iter()
            .any(|f| f.check == "tls" && f.found.contains("expires in")),
        "{found:#?}"
    );
    assert!(
        found
            .iter()
            .any(|f| f.check == "tls" && f.found.contains("load and match")),
        "{found:#?}"
    );
    assert_eq!(code, 2);
    for name in ["servercert.pem", "serverkey.pem"] {
        std::fs::remove_file(sys.root.join("control").join(name)).unwrap();
    }
    assert!(
        Command::new(sys.bin("qmail-audit"))
            .arg("--baseline")
            .status()
            .unwrap()
            .success()
    );

    // a listener on an unexpected port (this test's own)
    let stray = std::net::TcpListener::bind((addr.as_str(), 0)).unwrap();
    let port = stray.local_addr().unwrap().port();
    let (code, found) = audit(&sys, &scan, &addr);
    only(&found, "services", "warning", &format!("{addr}:{port}"));
    assert_eq!(code, 1);
    // one the administrator expects is a note
    let (code, found) = audit_with(&sys, &scan, &addr, &["--expect", &port.to_string()]);
    assert_eq!(code, 0, "{:#?}", serious(&found));
    drop(stray);

    // a queue orphan: a message file with neither todo/ entry nor info/ file, hours old
    let orphan = sys.root.join("queue/mess/3/26");
    std::fs::write(&orphan, "Subject: lost\n\nx\n").unwrap();
    let qmailq = nix::unistd::User::from_name("qmailq").unwrap().unwrap().uid;
    std::os::unix::fs::chown(&orphan, Some(qmailq.as_raw()), None).unwrap();
    let st = Command::new("touch")
        .args(["-d", "3 hours ago"])
        .arg(&orphan)
        .status()
        .unwrap();
    assert!(st.success());
    let (code, found) = audit(&sys, &scan, &addr);
    only(&found, "queue", "warning", "queue/mess/3/26");
    assert_eq!(code, 1);
    std::fs::remove_file(&orphan).unwrap();
    assert_eq!(audit(&sys, &scan, &addr).0, 0);

    // the text report names the fix; --help prints the manual
    let o = Command::new(sys.bin("qmail-audit"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("qmail-audit - "));
}

/// The DNS check against a dnsmasq of this test (nothing leaves the machine): MX, PTR,
/// SPF, DMARC and a DKIM key that match give notes only; a foreign MX, a PTR naming
/// another host, an SPF record that does not parse, no DMARC record and another DKIM
/// key published are each a warning. Without a resolver that answers, one note.
#[test]
fn audit_checks_dns_records_through_control_nameservers() {
    need_root!();
    need_tool!(DNSMASQ, "dnsmasq-base");
    need_tool!("python3", "python3");
    use base64::Engine;
    let sys = System::install("mx.dns.test", &[]);
    sys.control("locals", "dns.test\n");
    let dkim = sys.root.join("control/dkim/dns.test");
    std::fs::create_dir_all(&dkim).unwrap();
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    // qmail-dkim's layout: SELECTOR.ed25519 (PKCS#8 PEM)
    std::fs::write(dkim.join("sel.ed25519"), key.serialize_pem()).unwrap();
    chmod(&dkim.join("sel.ed25519"), 0o600);
    let published = |k: &rcgen::KeyPair| {
        format!(
            "--txt-record=sel._domainkey.dns.test,v=DKIM1; k=ed25519; p={}",
            // RFC 8463: the raw 32-byte key, the end of its SubjectPublicKeyInfo
            base64::engine::general_purpose::STANDARD
                .encode(&rcgen::PublicKeyData::subject_public_key_info(k)[12..])
        )
    };
    let run = |records: &[&str]| {
        let (_dns, port) = dnsmasq(records);
        sys.control("nameservers", &format!("127.0.0.1:{port}\n"));
        let out = Command::new(sys.bin("qmail-audit"))
            .args([
                "--json",
                "--local",
                "--address",
                "127.0.0.254",
                "--service",
                "/nonexistent",
            ])
            .output()
            .unwrap();
        let py = "import json,sys\nd=json.load(sys.stdin)\nfor f in d['findings']:\n  if f['check']=='dns': print(f['severity']+'\\t'+f['subject']+'\\t'+f['found'])\n";
        let parsed = output_with_input(Command::new("python3").args(["-c", py]), &out.stdout);
        assert!(
            parsed.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        (
            out.status.code(),
            String::from_utf8_lossy(&parsed.stdout).into_owned(),
        )
    };
    let good_key = published(&key);
    let (code, dns) = run(&[
        "--mx-host=dns.test,mx.dns.test,10",
        "--address=/mx.dns.test/192.0.2.25",
        "--ptr-record=25.2.0.192.in-addr.arpa,mx.dns.test",
        "--txt-record=dns.test,v=spf1 mx -all",
        "--txt-record=_dmarc.dns.test,v=DMARC1; p=reject",
        &good_key,
    ]);
    assert!(!dns.contains("warning") && !dns.contains("error"), "{dns}");
    assert!(
        dns.contains("info\tSPF of dns.test\tv=spf1 mx -all"),
        "{dns}"
    );
    assert!(dns.contains("info\tDMARC of dns.test"), "{dns}");
    assert_eq!(code, Some(0), "{dns}");

    let other = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let bad_key = published(&other);
    let (code, dns) = run(&[
        "--mx-host=dns.test,mx.elsewhere.test,10",
        "--address=/mx.elsewhere.test/192.0.2.99",
        "--address=/mx.dns.test/192.0.2.25",
        "--ptr-record=25.2.0.192.in-addr.arpa,other.dns.test",
        "--txt-record=dns.test,v=spf1 ip4:300.1.1.1 -all",
        &bad_key,
    ]);
    for what in [
        "MX of dns.test",
        "PTR of 192.0.2.25",
        "SPF of dns.test",
        "DMARC of dns.test",
        "DKIM key sel._domainkey.dns.test",
    ] {
        assert!(
            dns.contains(&format!("warning\t{what}")),
            "no warning for {what}: {dns}"
        );
    }
    assert_eq!(code, Some(1), "{dns}");

    // no resolver answers: one note, nothing else
    let (_sock, port) = refusing_udp_port();
    sys.control("nameservers", &format!("127.0.0.1:{port}\n"));
    let out = Command::new(sys.bin("qmail-audit"))
        .args([
            "--local",
            "--all",
            "--service",
            "/nonexistent",
            "--address",
            "127.0.0.254",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("no resolver answers"), "{text}");
    assert_eq!(out.status.code(), Some(0), "{text}");
}
