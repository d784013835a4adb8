//! DKIM signing of outgoing mail end to end (issue 15, the outbound half): keys made by
//! `qmail-dkim keygen`, mail from sendmail and from SMTP through the queue and
//! qmail-remote (as qmailr) to aiosmtpd on 127.0.0.1 (keeping the bytes it received), verified by Debian's python3-dkim
//! (`dkim.DKIM.verify` with a DNS function answering the record keygen printed), for
//! RSA, Ed25519 and both at once; a changed body fails; an unreadable or missing key
//! sends unsigned and says so in qmail-send's log; `qmail-dkim show` against dnsmasq.
//!
//! Needs `cargo build --workspace --bins` first; the whole-path tests need root (the
//! key belongs to qmailr, qmail-remote runs as qmailr).

use std::path::Path;
use std::process::{Command, Stdio};

use e2e::*;

const ME: &str = "mx.example.test";

/// An aiosmtpd handler that keeps each message's DATA exactly as received (CRLF,
/// dot-stuffing undone, nothing added or refolded) as a file in DIR/new.
const RAW_SINK: &str = r#"
import os
class Raw:
    def __init__(self, d):
        self.d, self.n = d, 0
        for sub in ('tmp', 'new'):
            os.makedirs(os.path.join(d, sub), exist_ok=True)
    @classmethod
    def from_cli(cls, parser, *args):
        return cls(args[0])
    async def handle_DATA(self, server, session, envelope):
        self.n += 1
        name = '%d.%d' % (os.getpid(), self.n)
        tmp = os.path.join(self.d, 'tmp', name)
        with open(tmp, 'wb') as f:
            f.write(envelope.original_content)
        os.rename(tmp, os.path.join(self.d, 'new', name))
        return '250 OK'
"#;

/// aiosmtpd on 127.0.0.1 keeping what it receives, byte for byte, in `mailbox`/new.
fn sink(mailbox: &Path) -> (Server, u16) {
    let module = mailbox.with_extension("py.d");
    std::fs::create_dir_all(&module).unwrap();
    std::fs::write(module.join("rawsink.py"), RAW_SINK).unwrap();
    let mut child = Command::new("/usr/bin/python3")
        .args(["-m", "aiosmtpd", "-n", "-l", "127.0.0.1:0"])
        .args(["-c", "rawsink.Raw"])
        .arg(mailbox)
        .env("PYTHONPATH", &module)
        .stdout(Stdio::null())
        .spawn()
        .expect("python3 -m aiosmtpd");
    let port = wait_listen_port(&mut child);
    (Server(child), port)
}

/// Skip unless the tools of the whole-path tests are here.
fn tools() -> bool {
    have_python_module("aiosmtpd", "python3-aiosmtpd")
        && have_python_module("dkim", "python3-dkim")
        && have_python_module("nacl", "python3-nacl")
}

/// Run `qmail-dkim args` of `sys`; returns (exit code, stdout, stderr).
fn qmail_dkim(sys: &System, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(sys.bin("qmail-dkim"))
        .args(args)
        .output()
        .expect("run qmail-dkim");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The DKIM record line keygen printed: (name without the dot, text of the strings
/// joined, the strings).
fn printed_record(printed: &str) -> (String, String, Vec<String>) {
    let line = printed
        .lines()
        .find(|l| l.contains("._domainkey."))
        .unwrap_or_else(|| panic!("no key record in {printed}"));
    let (name, strings) = line.split_once(". IN TXT ").expect("zone-file line");
    let parts: Vec<String> = strings
        .trim()
        .trim_matches('"')
        .split("\" \"")
        .map(str::to_string)
        .collect();
    (name.to_string(), parts.concat(), parts)
}

/// `qmail-dkim keygen DOMAIN SELECTOR [--ed25519]`, which must succeed; its record.
fn keygen(sys: &System, domain: &str, selector: &str, ed25519: bool) -> (String, String) {
    let mut args = vec!["keygen", domain, selector];
    if ed25519 {
        args.push("--ed25519");
    }
    let (code, out, err) = qmail_dkim(sys, &args);
    assert_eq!(code, 0, "keygen: {err}");
    let (name, text, _) = printed_record(&out);
    (name, text)
}

/// python3-dkim's verdict on each DKIM-Signature of `message`, top first, with
/// `records` (name -> TXT text) as the whole DNS.
const VERIFY: &str = r#"
import dkim, json, sys
records = json.loads(sys.argv[1])
def dnsfunc(name, timeout=5):
    n = name.decode() if isinstance(name, bytes) else name
    t = records.get(n.rstrip('.').lower())
    return t.encode() if t is not None else None
msg = sys.stdin.buffer.read()
d = dkim.DKIM(msg)
count = sum(1 for l in msg.split(b'\n') if l.lower().startswith(b'dkim-signature:'))
def ok(i):
    try:
        return bool(d.verify(idx=i, dnsfunc=dnsfunc))
    except dkim.DKIMException as e:
        print(e, file=sys.stderr)
        return False
print(json.dumps([ok(i) for i in range(count)]))
"#;

fn verify(message: &[u8], records: &[(String, String)]) -> Vec<bool> {
    let map: std::collections::BTreeMap<&str, &str> = records
        .iter()
        .map(|(n, t)| (n.as_str(), t.as_str()))
        .collect();
    let json = format!(
        "{{{}}}",
        map.iter()
            .map(|(n, t)| format!("{n:?}: {t:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let out = output_with_input(
        Command::new("/usr/bin/python3").args(["-c", VERIFY, &json]),
        message,
    );
    assert!(
        out.status.success(),
        "python3 dkim: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim()
        .trim_matches(['[', ']'])
        .split(", ")
        .filter(|w| !w.is_empty())
        .map(|w| w == "true")
        .collect()
}

/// The message received by the sink whose text contains `marker`.
fn received(mailbox: &Path, n: usize, marker: &str) -> Vec<u8> {
    wait_maildir(mailbox, n, 30);
    maildir_new(mailbox)
        .into_iter()
        .map(|p| std::fs::read(p).unwrap())
        .find(|m| String::from_utf8_lossy(m).contains(marker))
        .unwrap_or_else(|| panic!("no message with {marker} in {}", mailbox.display()))
}

fn signatures(m: &[u8]) -> usize {
    String::from_utf8_lossy(m)
        .lines()
        .filter(|l| l.starts_with("DKIM-Signature:"))
        .count()
}

/// An installation routing remote.test to a sink, qmail-send started.
fn system(port: u16) -> System {
    let mut sys = System::install(ME, &["example.test"]);
    sys.control("smtproutes", &format!("remote.test:127.0.0.1:{port}\n"));
    sys.start();
    sys
}

#[test]
fn keygen_gives_the_key_to_qmailr_mode_0400_and_refuses_to_replace_it() {
    need_root!();
    let sys = System::install(ME, &[]);
    let (code, out, err) = qmail_dkim(&sys, &["keygen", "Example.TEST", "s2026"]);
    assert_eq!(code, 0, "{err}");
    let key = sys.root.join("control/dkim/example.test/s2026.rsa");
    let meta = std::fs::metadata(&key).unwrap();
    use std::os::unix::fs::MetadataExt;
    let qmailr = nix::unistd::User::from_name("qmailr").unwrap().unwrap();
    assert_eq!(meta.uid(), qmailr.uid.as_raw());
    assert_eq!(meta.mode() & 0o7777, 0o400);
    assert!(
        std::fs::read_to_string(&key)
            .unwrap()
            .starts_with("-----BEGIN PRIVATE KEY-----")
    );
    // zone-file form, split into strings of at most 255 bytes
    let (name, text, parts) = printed_record(&out);
    assert_eq!(name, "s2026._domainkey.example.test");
    assert!(text.starts_with("v=DKIM1; k=rsa; p=MIIBIjAN"), "{text}");
    assert!(parts.len() == 2 && parts[0].len() == 255, "{parts:?}");
    assert!(
        out.contains("example.test. IN TXT \"v=spf1 mx a:mx.example.test ~all\""),
        "{out}"
    );
    assert!(
        out.contains("_dmarc.example.test. IN TXT \"v=DMARC1; p=none;"),
        "{out}"
    );
    // the same selector again, or with the other algorithm: refused, key unchanged
    let before = std::fs::read(&key).unwrap();
    let (code, _, err) = qmail_dkim(&sys, &["keygen", "example.test", "s2026"]);
    assert_eq!(code, 100, "{err}");
    let (code, _, err) = qmail_dkim(&sys, &["keygen", "example.test", "s2026", "--ed25519"]);
    assert_eq!(code, 100, "{err}");
    assert_eq!(std::fs::read(&key).unwrap(), before);
    // hostile names never become paths
    let (code, _, _) = qmail_dkim(&sys, &["keygen", "../../etc", "x"]);
    assert_eq!(code, 100);
    let (code, _, _) = qmail_dkim(&sys, &["keygen", "example.test", "a/b"]);
    assert_eq!(code, 100);
    let (code, out, _) = qmail_dkim(&sys, &["--help"]);
    assert!(code == 0 && out.contains("EXIT CODES"), "{out}");
    let (code, _, _) = qmail_dkim(&sys, &["frobnicate"]);
    assert_eq!(code, 100);
}

#[test]
fn sendmail_mail_is_signed_rsa_ed25519_and_both_and_verifies() {
    need_root!();
    if !tools() {
        return;
    }
    let (_, _) = local_user("qdk");
    let mailbox = tempfile::tempdir().unwrap();
    let mb = mailbox.path().join("sink");
    let (_sink, port) = sink(&mb);
    let sys = system(port);
    let mut records = vec![keygen(&sys, "rsa.test", "r1", false)];
    records.push(keygen(&sys, "ed.test", "e1", true));
    records.push(keygen(&sys, "both.test", "r2", false));
    records.push(keygen(&sys, "both.test", "e2", true));
    for (from, marker) in [
        ("cron@rsa.test", "m-rsa"),
        ("Cron Daemon <cron@ed.test>", "m-ed"),
        ("cron@mail.both.test", "m-both"),
    ] {
        let msg = format!(
            "From: {from}\nTo: far@remote.test\nSubject: {marker}\n\n.leading dot\nbody of {marker}\n"
        );
        let out = sys.run_as(Some("qdk"), "sendmail", &["-t", "-i"], msg.as_bytes());
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    sys.wait_log_count(": success:", 3, 30);
    for (marker, want) in [("m-rsa", 1), ("m-ed", 1), ("m-both", 2)] {
        let m = received(&mb, 3, marker);
        assert_eq!(signatures(&m), want, "{}", String::from_utf8_lossy(&m));
        let verdicts = verify(&m, &records);
        assert_eq!(
            verdicts,
            vec![true; want],
            "{marker}: {}",
            String::from_utf8_lossy(&m)
        );
        // one changed body byte: every signature fails
        let text = String::from_utf8_lossy(&m).replace("body of", "body 0f");
        assert_eq!(verify(text.as_bytes(), &records), vec![false; want]);
    }
    let both = String::from_utf8_lossy(&received(&mb, 3, "m-both")).into_owned();
    assert!(both.contains("a=rsa-sha256; s=r2; d=both.test"), "{both}");
    assert!(
        both.contains("a=ed25519-sha256; s=e2; d=both.test"),
        "{both}"
    );
    assert!(!sys.log_text().contains("DKIM"), "{}", sys.log_text());
}

/// qmail-smtpd (as qmaild under our tcpserver) for a relay client: mail submitted by
/// SMTP goes through the queue and is signed on the way out.
#[test]
fn smtp_submission_is_signed() {
    need_root!();
    if !tools() {
        return;
    }
    let mailbox = tempfile::tempdir().unwrap();
    let mb = mailbox.path().join("sink");
    let (_sink, port) = sink(&mb);
    let sys = system(port);
    sys.control("rcpthosts", &format!("{ME}\nexample.test\n"));
    let records = vec![keygen(&sys, "example.test", "sub", true)];
    let u = nix::unistd::User::from_name("qmaild").unwrap().unwrap();
    let g = nix::unistd::Group::from_name("nofiles").unwrap().unwrap();
    let mut child = Command::new(sys.bin("tcpserver"))
        .args(["-1", "-q", "-H", "-R", "-l", ME])
        .args(["-u", &u.uid.to_string(), "-g", &g.gid.to_string()])
        .args(["127.0.0.1", "0"])
        .arg(sys.bin("qmail-smtpd"))
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("RELAYCLIENT", "")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("tcpserver");
    let smtp_port = printed_port(&mut child);
    let _smtpd = Server(child);
    let script = r#"
import smtplib, sys
s = smtplib.SMTP('127.0.0.1', int(sys.argv[1]), timeout=60)
s.sendmail('ann@example.test', ['far@remote.test'],
    b'From: Ann <ann@example.test>\r\nTo: far@remote.test\r\nSubject: by smtp\r\n\r\nsubmitted body\r\n')
s.quit()
"#;
    let st = Command::new("/usr/bin/python3")
        .args(["-c", script, &smtp_port.to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    sys.wait_log(": success:", 30);
    let m = received(&mb, 1, "submitted body");
    assert_eq!(signatures(&m), 1);
    assert_eq!(
        verify(&m, &records),
        [true],
        "{}",
        String::from_utf8_lossy(&m)
    );
}

#[test]
fn unreadable_or_missing_key_sends_unsigned_and_logs_an_alert() {
    need_root!();
    if !tools() {
        return;
    }
    let mailbox = tempfile::tempdir().unwrap();
    let mb = mailbox.path().join("sink");
    let (_sink, port) = sink(&mb);
    let sys = system(port);
    keygen(&sys, "example.test", "k1", false);
    // a key root owns, mode 0400: qmailr (qmail-remote) cannot read it
    let key = sys.root.join("control/dkim/example.test/k1.rsa");
    nix::unistd::chown(&key, Some(nix::unistd::Uid::from_raw(0)), None).unwrap();
    // and a domain directory with no key at all
    std::fs::create_dir_all(sys.root.join("control/dkim/empty.test")).unwrap();
    for (from, marker) in [
        ("a@example.test", "m-unreadable"),
        ("b@empty.test", "m-nokey"),
    ] {
        let msg = format!("From: {from}\nTo: far@remote.test\nSubject: {marker}\n\n{marker}\n");
        assert_eq!(sys.queue(from, &["far@remote.test"], msg.as_bytes()), 0);
    }
    sys.wait_log_count(": success:", 2, 30);
    for marker in ["m-unreadable", "m-nokey"] {
        let m = received(&mb, 2, marker);
        assert_eq!(signatures(&m), 0, "{}", String::from_utf8_lossy(&m));
    }
    let log = sys.log_text();
    assert!(
        log.contains("DKIM_alert:_unable_to_read_control/dkim/example.test/k1.rsa:_access_denied;_sent_unsigned./"),
        "{log}"
    );
    assert!(
        log.contains("DKIM_alert:_no_key_in_control/dkim/empty.test;_sent_unsigned./"),
        "{log}"
    );
}

/// qmail-remote alone, as the calling user (no root needed): the signature fields go
/// before the message, the message itself is sent unchanged, dot-stuffing intact.
#[test]
fn qmail_remote_puts_the_signature_before_the_message() {
    if !tools() {
        return;
    }
    let mailbox = tempfile::tempdir().unwrap();
    let mb = mailbox.path().join("sink");
    let (_sink, port) = sink(&mb);
    let sys = System::install(ME, &[]);
    sys.control("smtproutes", &format!(":127.0.0.1:{port}\n"));
    let h = sys.root.clone();
    let (code, out, err) = qmail_dkim(&sys, &["keygen", "example.test", "solo", "--bits", "1024"]);
    assert_eq!(code, 0, "{err}");
    let (name, text, _) = printed_record(&out);
    let message = b"From: x@example.test\nSubject: solo\n\n..two dots\n.\nlast\n";
    let msg_file = h.join("message");
    std::fs::write(&msg_file, message).unwrap();
    let out = Command::new(h.join("bin/qmail-remote"))
        .args(["remote.test", "x@example.test", "y@remote.test"])
        .stdin(std::fs::File::open(&msg_file).unwrap())
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("accepted message"),
        "{out:?}"
    );
    let m = received(&mb, 1, "solo");
    let text_m = String::from_utf8_lossy(&m).replace("\r\n", "\n");
    assert!(
        text_m.starts_with("DKIM-Signature: v=1; a=rsa-sha256; s=solo; d=example.test;"),
        "{text_m}"
    );
    assert!(
        text_m.ends_with("From: x@example.test\nSubject: solo\n\n..two dots\n.\nlast\n"),
        "{text_m}"
    );
    assert_eq!(verify(&m, &[(name, text)]), [true]);
}

#[test]
fn show_compares_published_records_served_by_dnsmasq() {
    need_tool!(DNSMASQ, "dnsmasq-base");
    let sys = System::install("mx.show.test", &[]);
    let h = sys.root.clone();
    let (code, out, err) = qmail_dkim(&sys, &["keygen", "show.test", "s1"]);
    assert_eq!(code, 0, "{err}");
    let (name, _, parts) = printed_record(&out);
    // dnsmasq: each comma-separated text is one string of the record
    let dkim = format!("--txt-record={name},{}", parts.join(","));
    let spf = "--txt-record=show.test,v=spf1 mx -all".to_string();
    // published: the key (in two strings) and SPF, no DMARC: exit 1, key ok
    let (_dns, port) = dnsmasq(&[&dkim, &spf]);
    std::fs::write(h.join("control/nameservers"), format!("127.0.0.1:{port}\n")).unwrap();
    let (code, out, _) = qmail_dkim(&sys, &["show", "show.test"]);
    assert_eq!(code, 1, "{out}");
    let key_part = out.split("SPF show.test").next().unwrap();
    assert!(key_part.contains("status:    ok"), "{out}");
    assert!(
        out.contains("DMARC _dmarc.show.test\n  suggested: _dmarc.show.test. IN TXT"),
        "{out}"
    );
    drop(_dns);
    // everything published: exit 0
    let dmarc = "--txt-record=_dmarc.show.test,v=DMARC1; p=reject".to_string();
    let (_dns, port) = dnsmasq(&[&dkim, &spf, &dmarc]);
    std::fs::write(h.join("control/nameservers"), format!("127.0.0.1:{port}\n")).unwrap();
    let (code, out, _) = qmail_dkim(&sys, &["show", "show.test"]);
    assert_eq!(code, 0, "{out}");
    drop(_dns);
    // another key published: differs
    let other = "--txt-record=s1._domainkey.show.test,v=DKIM1; k=rsa; p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAv9XYXG3uK95115mB4nJ37nGeNe2CrARm".to_string();
    let (_dns, port) = dnsmasq(&[&other, &spf, &dmarc]);
    std::fs::write(h.join("control/nameservers"), format!("127.0.0.1:{port}\n")).unwrap();
    let (code, out, _) = qmail_dkim(&sys, &["show", "show.test"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("differs: the published p= is another key"),
        "{out}"
    );
    // DNS down: temporary
    let (_held, dead) = refusing_udp_port();
    std::fs::write(h.join("control/nameservers"), format!("127.0.0.1:{dead}\n")).unwrap();
    let (code, out, _) = qmail_dkim(&sys, &["show", "show.test"]);
    assert_eq!(code, 111, "{out}");
}
