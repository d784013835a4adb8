//! Sender authentication on the way in (issue 15, inbound half): qmail-authcheck in the
//! qmail-qfilter chain (control/filters), qmail-smtpd under our tcpserver as qmaild,
//! Python's smtplib as the client (EHLO name and envelope sender chosen per case),
//! messages signed by Python's dkim module (Debian's python3-dkim) with an RSA and an
//! Ed25519 key, and a dnsmasq started here serving the SPF, DKIM and DMARC records on
//! 127.0.0.1 (control/nameservers points at it; nothing leaves the machine).
//!
//! Each case checks what the client heard, and for accepted mail the
//! Authentication-Results and X-Qmail-Authcheck fields of the queued message (qmail-send
//! is not started: the message stays in queue/mess), parsed by Python's email module.
//! Needs root (qmail-qfilter runs filters as qmailf), dnsmasq and python3-dkim.

mod smtpd_common;

use e2e::*;
use smtpd_common::*;
use std::path::PathBuf;

const PY: &str = "/usr/bin/python3";
const RCPT: &str = "postmaster@example.test";

/// keys DIR: make an RSA (openssl) and an Ed25519 (nacl) key in DIR, print the two
/// DKIM p= values. send PORT HELO SENDER MSG [TAMPER] [d:s:KEYFILE:ALG ...]: sign the
/// message (CR LF) with each key, change one body byte after signing when TAMPER is 1,
/// send it over SMTP, print `250` or `CODE TEXT`. parse FILE: the Authentication-Results
/// field as Python's email module reads it, and its defects.
const HELPER: &str = r#"
import sys, subprocess, base64, os
mode = sys.argv[1]
if mode == 'keys':
    d = sys.argv[2]
    rsa = os.path.join(d, 'rsa.pem')
    subprocess.run(['openssl', 'genrsa', '-out', rsa, '2048'], check=True, capture_output=True)
    der = subprocess.run(['openssl', 'rsa', '-in', rsa, '-pubout', '-outform', 'DER'], check=True, capture_output=True).stdout
    import nacl.signing
    sk = nacl.signing.SigningKey.generate()
    open(os.path.join(d, 'ed.key'), 'wb').write(base64.b64encode(bytes(sk)))
    print(base64.b64encode(der).decode())
    print(base64.b64encode(bytes(sk.verify_key)).decode())
elif mode == 'send':
    import dkim, smtplib
    port, helo, sender, path, tamper = sys.argv[2:7]
    msg = open(path, 'rb').read().replace(b'\r\n', b'\n').replace(b'\n', b'\r\n')
    for spec in sys.argv[7:]:
        dom, sel, keyfile, alg = spec.split(':')
        key = open(keyfile, 'rb').read()
        sig = dkim.sign(msg, sel.encode(), dom.encode(), key,
                        include_headers=[b'from', b'to', b'subject'],
                        signature_algorithm=alg.encode())
        msg = sig + msg
    if tamper == '1':
        i = msg.rindex(b'body')
        msg = msg[:i] + b'Body' + msg[i + 4:]
    s = smtplib.SMTP('127.0.0.1', int(port), local_hostname=helo, timeout=120)
    try:
        s.sendmail(sender, ['postmaster@example.test'], msg)
        print('250')
    except smtplib.SMTPDataError as e:
        print(e.smtp_code, e.smtp_error.decode())
    s.quit()
elif mode == 'parse':
    import email, email.policy
    m = email.message_from_bytes(open(sys.argv[2], 'rb').read(), policy=email.policy.default)
    h = m['Authentication-Results']
    print('AR:', ' '.join(str(h).split()))
    print('DEFECTS:', len(h.defects) if h is not None else -1, len(m.defects))
    print('COUNT:', len(m.get_all('Authentication-Results') or []))
"#;

fn helper(args: &[&str]) -> String {
    let out = std::process::Command::new(PY)
        .arg("-c")
        .arg(HELPER)
        .args(args)
        .output()
        .expect("python3");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "python helper {args:?}: {text}");
    text
}

/// A TXT record option for dnsmasq, the text split into 255-byte strings (on the
/// command line dnsmasq splits at commas and keeps quotes as text).
fn txt(name: &str, text: &str) -> String {
    let parts: Vec<String> = text
        .as_bytes()
        .chunks(255)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect();
    format!("--txt-record={name},{}", parts.join(","))
}

struct Lab {
    sys: System,
    smtpd: SmtpServer,
    scratch: PathBuf,
    rsa: String,
    ed: String,
}

impl Lab {
    /// Send `message` (Subject: `subject`) from `sender` after EHLO `helo`, signed with
    /// `sigs` (`d:s:KEYFILE:ALG`); what the client heard.
    fn send_on(
        &self,
        port: u16,
        helo: &str,
        sender: &str,
        message: &str,
        tamper: bool,
        sigs: &[String],
    ) -> String {
        let path = self.scratch.join("message");
        std::fs::write(&path, message).unwrap();
        let port = port.to_string();
        let mut args = vec![
            "send",
            port.as_str(),
            helo,
            sender,
            path_str(&path),
            if tamper { "1" } else { "0" },
        ];
        args.extend(sigs.iter().map(String::as_str));
        helper(&args).trim().to_string()
    }

    fn send(&self, helo: &str, sender: &str, message: &str, sigs: &[String]) -> String {
        self.send_on(self.smtpd.port, helo, sender, message, false, sigs)
    }

    fn rsa_sig(&self, d: &str, s: &str) -> String {
        format!("{d}:{s}:{}:rsa-sha256", self.rsa)
    }

    fn ed_sig(&self, d: &str, s: &str) -> String {
        format!("{d}:{s}:{}:ed25519-sha256", self.ed)
    }

    /// The header of the queued message with `subject` as Python parsed it (`AR: ...`),
    /// and the message.
    fn queued(&self, subject: &str) -> (String, String) {
        let m = queued_messages(&self.sys)
            .into_iter()
            .find(|m| m.contains(&format!("Subject: {subject}\n")))
            .unwrap_or_else(|| {
                panic!(
                    "no queued message {subject}; log:\n{}",
                    self.smtpd.log_text()
                )
            });
        let p = self.scratch.join("queued");
        std::fs::write(&p, &m).unwrap();
        (helper(&["parse", path_str(&p)]), m)
    }

    /// Send, expect 250, return the parsed Authentication-Results and the message.
    fn accepted(
        &self,
        helo: &str,
        sender: &str,
        from: &str,
        subject: &str,
        sigs: &[String],
    ) -> (String, String) {
        let got = self.send(helo, sender, &mail(from, subject), sigs);
        assert_eq!(got, "250", "{subject}: {}", self.smtpd.log_text());
        let (parsed, m) = self.queued(subject);
        assert!(parsed.contains("DEFECTS: 0 0"), "{subject}: {parsed}");
        assert!(parsed.contains("COUNT: 1"), "{subject}: {parsed}");
        (parsed, m)
    }
}

fn mail(from: &str, subject: &str) -> String {
    format!(
        "From: {from}\nTo: {RCPT}\nSubject: {subject}\nDate: Sun, 6 Dec 2026 08:00:00 +0000\n\
         Message-ID: <{subject}@example.test>\n\nthe body of {subject}\n"
    )
}

fn records(rsa_p: &str, ed_p: &str) -> Vec<String> {
    let rsa = format!("v=DKIM1; k=rsa; p={rsa_p}");
    let ed = format!("v=DKIM1; k=ed25519; p={ed_p}");
    let mut r = vec![
        // SPF results by domain
        txt("pass.test", "v=spf1 ip4:127.0.0.1 -all"),
        txt("fail.test", "v=spf1 ip4:192.0.2.0/24 -all"),
        txt("soft.test", "v=spf1 ip4:192.0.2.0/24 ~all"),
        txt("neutral.test", "v=spf1 ?all"),
        "--host-record=none.test,192.0.2.7".to_string(),
        txt(
            "perm.test",
            "v=spf1 a:a1.test a:a2.test a:a3.test a:a4.test a:a5.test a:a6.test \
             a:a7.test a:a8.test a:a9.test a:a10.test a:a11.test -all",
        ),
        txt("mx1.pass.test", "v=spf1 ip4:127.0.0.1 -all"),
        // DKIM keys, no DMARC
        txt("rsa._domainkey.dk.test", &rsa),
        txt("ed._domainkey.dk.test", &ed),
        // DMARC
        txt("_dmarc.bank.test", "v=DMARC1; p=reject"),
        txt("bank.test", "v=spf1 -all"),
        txt("_dmarc.quar.test", "v=DMARC1; p=quarantine"),
        txt("_dmarc.pct.test", "v=DMARC1; p=reject; pct=0"),
        txt("signed.test", "v=spf1 ip4:192.0.2.0/24 -all"),
        txt("_dmarc.signed.test", "v=DMARC1; p=reject"),
        txt("rsa._domainkey.signed.test", &rsa),
        txt("ed._domainkey.signed.test", &ed),
        txt("_dmarc.tmp.test", "v=DMARC1; p=reject"),
    ];
    r.sort();
    r
}

#[test]
fn the_issue_15_inbound_battery() {
    need_root!();
    need_tool!(DNSMASQ, "dnsmasq-base");
    if !have_python_module("dkim", "python3-dkim") || !have_python_module("nacl", "python3-nacl") {
        return;
    }
    let sys = system();
    let scratch = sys.root.parent().unwrap().join("scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    let keys = helper(&["keys", path_str(&scratch)]);
    let mut lines = keys.lines();
    let (rsa_p, ed_p) = (lines.next().unwrap(), lines.next().unwrap());
    // the DKIM keys of tmp.test sit behind a server that does not answer
    let (_dead, dead_port) = refusing_udp_port();
    let mut opts = records(rsa_p, ed_p);
    opts.push(format!(
        "--server=/_domainkey.tmp.test/127.0.0.1#{dead_port}"
    ));
    let opt_refs: Vec<&str> = opts.iter().map(String::as_str).collect();
    let (mut dns, dns_port) = dnsmasq(&opt_refs);
    sys.control("nameservers", &format!("127.0.0.1:{dns_port}\n"));
    sys.control("authchecktimeout", "2\n");
    let authcheck = sys.bin("qmail-authcheck");
    assert!(
        authcheck.exists(),
        "the installer puts qmail-authcheck in HOME/bin"
    );
    sys.control("filters", &format!("{}\n", authcheck.display()));
    let smtpd = SmtpServer::start(&sys, &[], &[]);
    let lab = Lab {
        rsa: path_str(&scratch.join("rsa.pem")).to_string(),
        ed: path_str(&scratch.join("ed.key")).to_string(),
        sys,
        smtpd,
        scratch,
    };
    let me = ME;

    // --- DKIM: RSA and Ed25519 signatures by python3-dkim pass; a changed byte fails ---
    let sigs = [lab.rsa_sig("dk.test", "rsa"), lab.ed_sig("dk.test", "ed")];
    let (ar, m) = lab.accepted(
        "client.test",
        "x@none.test",
        "a@dk.test",
        "dkim-good",
        &sigs,
    );
    assert!(ar.contains(&format!("AR: {me};")), "{ar}");
    assert!(
        ar.contains("dkim=pass header.d=dk.test header.s=rsa header.a=rsa-sha256"),
        "{ar}"
    );
    assert!(
        ar.contains("dkim=pass header.d=dk.test header.s=ed header.a=ed25519-sha256"),
        "{ar}"
    );
    assert!(m.contains("X-Qmail-Authcheck: pass"), "{m}");
    let got = lab.send_on(
        lab.smtpd.port,
        "client.test",
        "x@none.test",
        &mail("a@dk.test", "dkim-tampered"),
        true,
        &sigs,
    );
    assert_eq!(got, "250");
    let (ar, _) = lab.queued("dkim-tampered");
    assert_eq!(
        ar.matches("dkim=fail (body hash did not verify)").count(),
        2,
        "{ar}"
    );

    // --- SPF: each result in the header ---
    for (sender, want) in [
        ("x@pass.test", "spf=pass smtp.mailfrom=x@pass.test"),
        ("x@fail.test", "spf=fail smtp.mailfrom=x@fail.test"),
        ("x@soft.test", "spf=softfail smtp.mailfrom=x@soft.test"),
        ("x@neutral.test", "spf=neutral smtp.mailfrom=x@neutral.test"),
        ("x@none.test", "spf=none smtp.mailfrom=x@none.test"),
        ("x@perm.test", "spf=permerror smtp.mailfrom=x@perm.test"),
    ] {
        let subject = format!("spf-{}", sender.trim_start_matches("x@"));
        let (ar, m) = lab.accepted("client.test", sender, "a@none.test", &subject, &[]);
        assert!(ar.contains(want), "{subject}: {ar}");
        if sender == "x@fail.test" {
            // control/spfpolicy mark (the default): delivered and marked
            assert!(m.contains("X-Qmail-Authcheck: spf-fail"), "{m}");
        }
    }
    // the null sender: SPF of the HELO name
    let (ar, _) = lab.accepted("mx1.pass.test", "", "a@none.test", "spf-helo", &[]);
    assert!(ar.contains("spf=pass smtp.helo=mx1.pass.test"), "{ar}");

    // --- DMARC ---
    let before = queued(&lab.sys);
    let got = lab.send(
        "client.test",
        "x@pass.test",
        &mail("ceo@bank.test", "dmarc-reject"),
        &[],
    );
    assert_eq!(
        got,
        "550 5.7.1 message rejected per the DMARC policy of bank.test (#5.7.1)",
        "{}",
        lab.smtpd.log_text()
    );
    assert_eq!(queued(&lab.sys), before, "nothing queued");
    let (ar, m) = lab.accepted(
        "client.test",
        "x@pass.test",
        "a@quar.test",
        "dmarc-quar",
        &[],
    );
    assert!(
        ar.contains("dmarc=fail header.from=quar.test policy.dmarc=quarantine"),
        "{ar}"
    );
    assert!(m.contains("X-Qmail-Authcheck: quarantine"), "{m}");
    // pct=0: outside the percentage, reject becomes quarantine
    let (ar, m) = lab.accepted("client.test", "x@pass.test", "a@pct.test", "dmarc-pct", &[]);
    assert!(ar.contains("policy.dmarc=quarantine"), "{ar}");
    assert!(m.contains("X-Qmail-Authcheck: quarantine"), "{m}");
    // aligned DKIM passes DMARC though SPF fails; without it: refused
    let sigs = [lab.rsa_sig("signed.test", "rsa")];
    let (ar, m) = lab.accepted(
        "client.test",
        "x@signed.test",
        "a@signed.test",
        "dmarc-dkim",
        &sigs,
    );
    assert!(ar.contains("spf=fail"), "{ar}");
    assert!(
        ar.contains("dmarc=pass header.from=signed.test policy.dmarc=reject"),
        "{ar}"
    );
    assert!(m.contains("X-Qmail-Authcheck: pass"), "{m}");
    let got = lab.send(
        "client.test",
        "x@signed.test",
        &mail("a@signed.test", "dmarc-nosig"),
        &[],
    );
    assert!(got.starts_with("550 5.7.1 "), "{got}");
    // p=reject and the DKIM key cannot be fetched: 451, the sender retries
    let sigs = [lab.rsa_sig("tmp.test", "rsa")];
    let got = lab.send(
        "client.test",
        "x@none.test",
        &mail("a@tmp.test", "dmarc-temp"),
        &sigs,
    );
    assert!(
        got.starts_with("451 4.4.3 "),
        "{got}\n{}",
        lab.smtpd.log_text()
    );
    assert_eq!(
        queued(&lab.sys),
        before + 3,
        "the refused and deferred were not queued"
    );

    // --- a forged Authentication-Results naming us is removed, others stay ---
    let forged = format!(
        "Authentication-Results: {}; dkim=pass header.d=bank.test\n\
         Authentication-Results: other.test; spf=pass\n\
         X-Qmail-Authcheck: pass\n{}",
        ME.to_uppercase(),
        mail("a@none.test", "forged")
    );
    assert_eq!(lab.send("client.test", "x@none.test", &forged, &[]), "250");
    let (_, m) = lab.queued("forged");
    assert_eq!(
        m.matches(&format!("Authentication-Results: {ME};")).count(),
        1,
        "{m}"
    );
    assert!(!m.contains("header.d=bank.test"), "{m}");
    assert!(
        m.contains("Authentication-Results: other.test; spf=pass"),
        "{m}"
    );
    assert_eq!(m.matches("X-Qmail-Authcheck:").count(), 1, "{m}");
    assert!(
        lab.smtpd.log_text().contains("removed=2"),
        "{}",
        lab.smtpd.log_text()
    );

    // --- relay clients and authenticated users are not checked ---
    let relay = SmtpServer::start(&lab.sys, &[], &[("RELAYCLIENT", "")]);
    let got = lab.send_on(
        relay.port,
        "client.test",
        "x@pass.test",
        &forged.replace("forged", "relayed"),
        false,
        &[],
    );
    assert_eq!(got, "250", "{}", relay.log_text());
    let (_, m) = lab.queued("relayed");
    assert!(!m.contains("Authentication-Results: mx"), "{m}");
    assert!(
        relay.log_text().contains("skipped=relayclient"),
        "{}",
        relay.log_text()
    );
    let cp = test_checkpassword(&lab.sys);
    let sub = SmtpServer::start(
        &lab.sys,
        &["--submission", path_str(&cp), "/bin/true"],
        &[("AUTHPLAINTEXT", "")],
    );
    let script = format!(
        "import smtplib\ns = smtplib.SMTP('127.0.0.1', {}, timeout=60)\ns.login('joe', 'secret')\n\
         s.sendmail('joe@example.test', ['{RCPT}'], open('{}', 'rb').read())\nprint('250')\n",
        sub.port,
        path_str(&lab.scratch.join("auth-message"))
    );
    std::fs::write(
        lab.scratch.join("auth-message"),
        mail("joe@example.test", "authenticated").replace('\n', "\r\n"),
    )
    .unwrap();
    let out = std::process::Command::new(PY)
        .arg("-c")
        .arg(&script)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}\n{}", sub.log_text());
    let (_, m) = lab.queued("authenticated");
    assert!(!m.contains("Authentication-Results:"), "{m}");
    assert!(
        sub.log_text().contains("skipped=authenticated"),
        "{}",
        sub.log_text()
    );

    // --- the other settings: quarantine, SPF refusal, the lookup cap ---
    lab.sys.control("dmarcquarantine", "quarantine\n");
    let before = queued(&lab.sys);
    let got = lab.send(
        "client.test",
        "x@pass.test",
        &mail("a@quar.test", "kept"),
        &[],
    );
    assert_eq!(got, "250", "{}", lab.smtpd.log_text());
    assert_eq!(queued(&lab.sys), before, "kept aside, not queued");
    assert_eq!(maildir_new(&lab.sys.root.join("quarantine")).len(), 1);
    lab.sys.control("spfpolicy", "refuse\n");
    let got = lab.send(
        "client.test",
        "x@fail.test",
        &mail("a@none.test", "spf-refused"),
        &[],
    );
    assert_eq!(
        got,
        "550 5.7.23 SPF of fail.test does not allow this sender (#5.7.23)"
    );
    lab.sys.control("authchecklookups", "3\n");
    let (ar, _) = lab.accepted("client.test", "x@perm.test", "a@none.test", "capped", &[]);
    assert!(
        ar.contains("spf=temperror smtp.mailfrom=x@perm.test"),
        "{ar}"
    );
    lab.sys.control("authchecklookups", "40\n");

    // --- the DNS server stopped: temperror, delivered and marked ---
    dns.0.kill().unwrap();
    dns.0.wait().unwrap();
    let (ar, m) = lab.accepted(
        "client.test",
        "x@pass.test",
        "a@none.test",
        "spf-temperror",
        &[],
    );
    assert!(
        ar.contains("spf=temperror smtp.mailfrom=x@pass.test"),
        "{ar}"
    );
    assert!(m.contains("X-Qmail-Authcheck: temperror"), "{m}");
}
