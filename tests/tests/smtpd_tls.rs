//! qmail-smtpd with TLS and AUTH: STARTTLS (and the plaintext-injection defence),
//! implicit TLS on the SMTPS service, AUTH PLAIN/LOGIN/CRAM-MD5 through the
//! checkpassword interface, the submission policy (AUTH required, sender map, From:
//! check, rate limit) and the AUTH failure lockout. Clients: Python smtplib and raw
//! sockets, openssl s_client, swaks.

mod smtpd_common;

use e2e::*;
use smtpd_common::*;
use std::io::Write;
use std::process::{Command, Stdio};

const INSECURE_CTX: &str = "import ssl\nctx = ssl.create_default_context()\nctx.check_hostname = False\nctx.verify_mode = ssl.CERT_NONE\n";

#[test]
fn starttls_discards_plaintext_pipelined_with_it() {
    let sys = system();
    install_cert(&sys);
    let srv = SmtpServer::start(&sys, &[], &[]);
    let script = format!(
        r#"{INSECURE_CTX}
import socket, sys
s = socket.create_connection(('127.0.0.1', int(sys.argv[1])), timeout=60)
f = s.makefile('rb')
def reply(f):
    out = []
    while True:
        l = f.readline()
        if not l:
            break
        out.append(l.decode().rstrip())
        if l[3:4] != b'-':
            break
    return out
print('GREETING', reply(f))
s.sendall(b'EHLO c.test\r\n'); print('EHLO', reply(f))
s.sendall(b'STARTTLS\r\nMAIL FROM:<inject@elsewhere.test>\r\nRCPT TO:<postmaster@example.test>\r\n')
print('STARTTLS', reply(f))
t = ctx.wrap_socket(s, server_hostname='mx.example.test')
g = t.makefile('rb')
t.sendall(b'NOOP\r\n'); print('NOOP', reply(g))
t.sendall(b'RCPT TO:<postmaster@example.test>\r\n'); print('RCPT', reply(g))
t.sendall(b'EHLO c.test\r\n'); print('EHLO2', reply(g))
print('VERSION', t.version())
"#
    );
    let (ok, out) = python(&script, &[&srv.port.to_string()]);
    assert!(ok, "{out}");
    assert!(out.contains("'250 STARTTLS'"), "{out}");
    assert!(
        out.contains("STARTTLS ['220 2.0.0 ready for tls']"),
        "{out}"
    );
    // the first reply inside TLS answers NOOP: the injected MAIL/RCPT were never run
    assert!(out.contains("NOOP ['250 2.0.0 ok']"), "{out}");
    assert!(
        out.contains("RCPT ['503 5.5.1 MAIL first (#5.5.1)']"),
        "{out}"
    );
    let ehlo2 = out.lines().find(|l| l.starts_with("EHLO2")).unwrap_or("");
    assert!(ehlo2.contains("250-mx.example.test"), "{out}");
    assert!(!ehlo2.contains("STARTTLS"), "no STARTTLS inside TLS: {out}");
    assert!(out.contains("VERSION TLSv1."), "{out}");
    assert!(
        srv.log_text().contains("bytes pipelined after STARTTLS"),
        "{}",
        srv.log_text()
    );
    assert_eq!(queued(&sys), 0);
}

#[test]
fn starttls_with_smtplib_and_openssl_into_the_maildir() {
    need_tool!("openssl", "openssl");
    let mut sys = system();
    install_cert(&sys);
    sys.control("tlsrequired", "1\n");
    sys.start();
    let srv = SmtpServer::start(&sys, &[], &[]);
    // tlsrequired: no mail before STARTTLS
    let mut c = srv.client();
    c.reply();
    c.cmd("EHLO c.test");
    assert_eq!(
        c.cmd("MAIL FROM:<a@elsewhere.test>"),
        "530 5.7.0 Must issue a STARTTLS command first (#5.7.0)"
    );
    let script = format!(
        r#"{INSECURE_CTX}
import smtplib, sys
s = smtplib.SMTP('127.0.0.1', int(sys.argv[1]), local_hostname='tls.client.test', timeout=60)
s.starttls(context=ctx)
s.ehlo()
assert not s.has_extn('starttls')
s.sendmail('a@elsewhere.test', ['postmaster@example.test'], 'Subject: over tls\r\n\r\nsecret stuff\r\n')
print(s.sock.version(), s.sock.cipher())
s.quit()
"#
    );
    let (ok, out) = python(&script, &[&srv.port.to_string()]);
    assert!(ok, "{out}");
    let msgs = wait_maildir(&sys.root.join("alias/Maildir"), 1, 60);
    assert!(msgs[0].contains("Subject: over tls"), "{}", msgs[0]);
    assert!(
        msgs[0].contains(
            "(HELO tls.client.test) (127.0.0.1)\n  by mx.example.test with ESMTPS (TLS1."
        ),
        "{}",
        msgs[0]
    );

    // openssl s_client -starttls smtp
    let mut child = Command::new("openssl")
        .args([
            "s_client",
            "-starttls",
            "smtp",
            "-crlf",
            "-brief",
            "-ign_eof",
        ])
        .args(["-connect", &format!("127.0.0.1:{}", srv.port)])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"EHLO openssl.test\nMAIL FROM:<a@elsewhere.test>\nQUIT\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Protocol version: TLSv1."), "{stderr}");
    assert!(stdout.contains("250-mx.example.test"), "{stdout}");
    assert!(
        stdout.contains("250 2.1.0 ok"),
        "mail allowed under TLS: {stdout}"
    );
    assert!(stdout.contains("221 2.0.0 mx.example.test"), "{stdout}");
}

#[test]
fn smtps_auth_plain_login_cram_md5_into_the_maildir() {
    need_tool!("openssl", "openssl");
    let mut sys = system();
    install_cert(&sys);
    sys.control("authcrammd5", "1\n");
    sys.start();
    let cp = test_checkpassword(&sys);
    let srv = SmtpServer::start(&sys, &["--smtps", path_str(&cp), "/bin/true"], &[]);
    for mech in ["PLAIN", "LOGIN", "CRAM-MD5"] {
        let script = format!(
            r#"{INSECURE_CTX}
import smtplib, sys
s = smtplib.SMTP_SSL('127.0.0.1', int(sys.argv[1]), local_hostname='laptop.test', context=ctx, timeout=60)
s.ehlo()
print('AUTH', s.esmtp_features.get('auth', '').strip())
print('REFUSED', s.mail('joe@example.test')[0])
s.rset()
s.user, s.password = 'joe', 'secret'
meth = {{'PLAIN': s.auth_plain, 'LOGIN': s.auth_login, 'CRAM-MD5': s.auth_cram_md5}}[sys.argv[2]]
print('AUTHRESULT', s.auth(sys.argv[2], meth))
s.sendmail('joe@example.test', ['postmaster@example.test'], 'From: Joe <joe@example.test>\r\nSubject: via %s\r\n\r\nhi\r\n' % sys.argv[2])
s.quit()
"#
        );
        let (ok, out) = python(&script, &[&srv.port.to_string(), mech]);
        assert!(ok, "{mech}: {out}");
        assert!(out.contains("AUTH PLAIN LOGIN CRAM-MD5"), "{out}");
        assert!(out.contains("REFUSED 530"), "{out}");
        assert!(out.contains("AUTHRESULT (235"), "{out}");
    }
    let msgs = wait_maildir(&sys.root.join("alias/Maildir"), 3, 60);
    for mech in ["PLAIN", "LOGIN", "CRAM-MD5"] {
        let m = msgs
            .iter()
            .find(|m| m.contains(&format!("Subject: via {mech}\n")))
            .unwrap_or_else(|| panic!("{mech} message delivered: {msgs:?}"));
        assert!(
            m.contains(
                "(HELO laptop.test) (joe@127.0.0.1)\n  by mx.example.test with ESMTPSA (TLS1."
            ),
            "{m}"
        );
    }
    // a wrong password over SMTPS
    let script = format!(
        r#"{INSECURE_CTX}
import smtplib, sys
s = smtplib.SMTP_SSL('127.0.0.1', int(sys.argv[1]), context=ctx, timeout=60)
try:
    s.login('joe', 'wrong')
except smtplib.SMTPAuthenticationError as e:
    print('FAILED', e.smtp_code)
"#
    );
    let (_, out) = python(&script, &[&srv.port.to_string()]);
    assert!(out.contains("FAILED 535"), "{out}");
    assert!(
        srv.log_text()
            .contains("auth failed ip=127.0.0.1 mech=PLAIN user=joe"),
        "{}",
        srv.log_text()
    );
}

#[test]
fn submission_requires_auth_and_limits_what_users_send() {
    let sys = system();
    let cp = test_checkpassword(&sys);
    let args = ["--submission", path_str(&cp), "/bin/true"];
    // no TLS and no AUTHPLAINTEXT: no plaintext passwords
    let strict = SmtpServer::start(&sys, &args, &[]);
    let mut c = strict.client();
    c.reply();
    let ehlo = c.cmd("EHLO c.test");
    assert!(!ehlo.contains("AUTH"), "{ehlo}");
    assert_eq!(
        c.cmd(&format!("AUTH PLAIN {}", b64(b"\0joe\0secret"))),
        "538 5.7.11 encryption required for requested authentication mechanism (#5.7.11)"
    );
    assert_eq!(
        c.cmd("MAIL FROM:<joe@example.test>"),
        "530 5.7.0 authentication required (#5.7.0)"
    );

    let srv = SmtpServer::start(&sys, &args, &[("AUTHPLAINTEXT", "")]);
    let mut c = srv.client();
    c.reply();
    assert!(c.cmd("EHLO c.test").contains("250 AUTH PLAIN LOGIN"));
    assert!(
        c.cmd("MAIL FROM:<joe@example.test>")
            .starts_with("530 5.7.0")
    );
    assert_eq!(
        c.cmd(&format!("AUTH PLAIN {}", b64(b"\0joe\0wrong"))),
        "535 5.7.8 authentication failed (#5.7.8)"
    );
    assert_eq!(
        c.cmd("AUTH PLAIN !!notbase64"),
        "501 5.5.4 malformed auth input (#5.5.4)"
    );
    assert_eq!(c.cmd("AUTH PLAIN"), "334");
    assert_eq!(c.cmd("*"), "501 5.0.0 auth exchange canceled (#5.0.0)");
    assert_eq!(c.cmd("AUTH PLAIN"), "334");
    assert_eq!(
        c.cmd(&b64(b"\0joe\0secret")),
        "235 2.7.0 ok, go ahead (#2.0.0)"
    );
    assert!(c.cmd("AUTH PLAIN x").starts_with("503 5.5.0"));
    // someone else's envelope sender
    assert_eq!(
        c.cmd("MAIL FROM:<boss@example.test>"),
        "553 5.7.1 sorry, that envelope sender is not one of your addresses (#5.7.1)"
    );
    // own sender, relaying allowed, but someone else's From:
    let r = send_message(
        &mut c,
        "joe@example.test",
        &["friend@elsewhere.test"],
        "From: The Boss <boss@example.test>\r\nSubject: fake\r\n\r\npay now",
    );
    assert_eq!(
        r,
        "553 5.7.1 sorry, that From: address is not one of your addresses (#5.7.1)"
    );
    assert_eq!(queued(&sys), 0);
    // mapped addresses (control/sendermap) and the rate limit
    sys.control("sendermap", "joe:@joe.test\njoe:alias@example.test\n");
    sys.control("ratelimit", "2\n");
    let mut c = srv.client();
    c.reply();
    c.cmd("EHLO c.test");
    assert!(c.cmd("AUTH LOGIN").starts_with("334 VXNlcm5hbWU6"));
    assert!(c.cmd(&b64(b"joe")).starts_with("334 UGFzc3dvcmQ6"));
    assert!(c.cmd(&b64(b"secret")).starts_with("235"));
    for (from, hdr) in [
        ("anything@joe.test", "Joe <joe@example.test>"),
        ("alias@example.test", "alias@example.test, any@JOE.test"),
    ] {
        let r = send_message(
            &mut c,
            from,
            &["friend@elsewhere.test"],
            &format!("From: {hdr}\r\nSubject: ok\r\n\r\nhi"),
        );
        assert!(r.starts_with("250 2.0.0 ok"), "{from}: {r}");
    }
    assert_eq!(
        c.cmd("MAIL FROM:<joe@example.test>"),
        "451 4.7.1 sorry, you have sent to too many recipients this hour (#4.7.1)"
    );
    assert_eq!(queued(&sys), 2);
    let msgs = queued_messages(&sys);
    assert!(
        msgs.iter()
            .all(|m| m.contains("(HELO c.test) (joe@127.0.0.1)\n  by mx.example.test with ESMTPA;")),
        "{msgs:?}"
    );
    assert_eq!(todo_recipients(&sys).len(), 2);
    // a client trusted by tcprules (RELAYCLIENT, e.g. a webmail host) needs no AUTH
    let trusted = SmtpServer::start(&sys, &args, &[("RELAYCLIENT", "")]);
    let mut c = trusted.client();
    c.reply();
    assert_eq!(c.cmd("MAIL FROM:<webmail@example.test>"), "250 2.1.0 ok");
    assert_eq!(c.cmd("RCPT TO:<friend@elsewhere.test>"), "250 2.1.5 ok");
    // port 25 still takes mail from the world for local domains and never relays for it
    let mx = SmtpServer::start(&sys, &[], &[]);
    let mut c = mx.client();
    c.reply();
    assert!(c.cmd("AUTH PLAIN x").starts_with("503 5.3.3"));
    c.cmd("MAIL FROM:<joe@example.test>");
    assert!(c.cmd("RCPT TO:<friend@elsewhere.test>").starts_with("553"));
}

#[test]
fn cram_md5_without_tls_and_auth_failure_lockout() {
    need_tool!("openssl", "openssl");
    let sys = system();
    sys.control("authcrammd5", "1\n");
    sys.control("authfaillimit", "3\n");
    let cp = test_checkpassword(&sys);
    let srv = SmtpServer::start(&sys, &["--submission", path_str(&cp), "/bin/true"], &[]);
    let script = r#"
import smtplib, sys
s = smtplib.SMTP('127.0.0.1', int(sys.argv[1]), timeout=60)
s.ehlo()
print('AUTH', s.esmtp_features.get('auth', '').strip())
print('LOGIN', s.login('joe', 'secret'))
s.sendmail('joe@example.test', ['friend@elsewhere.test'], 'From: joe@example.test\r\nSubject: cram\r\n\r\nhi\r\n')
s.quit()
"#;
    let (ok, out) = python(script, &[&srv.port.to_string()]);
    assert!(ok, "{out}");
    assert!(
        out.contains("AUTH CRAM-MD5\n"),
        "only CRAM-MD5 without TLS: {out}"
    );
    assert_eq!(queued(&sys), 1);

    let mut c = srv.client();
    c.reply();
    for _ in 0..3 {
        assert!(c.cmd("AUTH CRAM-MD5").starts_with("334 "));
        assert_eq!(
            c.cmd(&b64(b"joe 00000000000000000000000000000000")),
            "535 5.7.8 authentication failed (#5.7.8)"
        );
    }
    assert_eq!(
        c.cmd("AUTH CRAM-MD5"),
        "421 4.7.0 too many authentication failures, try again later (#4.7.0)"
    );
    assert!(c.closed());
    // locked out by address, even with the right password
    let (ok, out) = python(script, &[&srv.port.to_string()]);
    assert!(!ok && out.contains("421"), "{out}");
    assert!(
        std::fs::read_dir(sys.root.join("smtpd/authfail"))
            .unwrap()
            .count()
            == 1
    );
}

#[test]
fn swaks_auth_over_starttls_on_submission() {
    need_tool!("swaks", "swaks");
    let sys = system();
    install_cert(&sys);
    let cp = test_checkpassword(&sys);
    let srv = SmtpServer::start(&sys, &["--submission", path_str(&cp), "/bin/true"], &[]);
    for mech in ["PLAIN", "LOGIN"] {
        let out = Command::new("swaks")
            .args(["--server", &format!("127.0.0.1:{}", srv.port)])
            .args([
                "--tls",
                "-a",
                mech,
                "--auth-user",
                "joe",
                "--auth-password",
                "secret",
            ])
            .args([
                "--from",
                "joe@example.test",
                "--to",
                "friend@elsewhere.test",
            ])
            .args(["--timeout", "60"])
            .output()
            .expect("swaks");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{mech}: {text}");
        assert!(text.contains("235 2.7.0"), "{text}");
    }
    let out = Command::new("swaks")
        .args(["--server", &format!("127.0.0.1:{}", srv.port)])
        .args([
            "--tls",
            "-a",
            "PLAIN",
            "--auth-user",
            "joe",
            "--auth-password",
            "nope",
        ])
        .args([
            "--from",
            "joe@example.test",
            "--to",
            "friend@elsewhere.test",
        ])
        .output()
        .expect("swaks");
    assert!(!out.status.success());
    assert_eq!(queued(&sys), 2);
    assert_eq!(
        todo_recipients(&sys),
        vec![vec!["friend@elsewhere.test".to_string()]; 2]
    );
}

#[test]
fn auth_through_the_real_checkpassword() {
    need_root!(); // a system account, setgid shadow
    let sys = system();
    install_cert(&sys);
    local_user("qsmtpauth");
    let mut chpasswd = Command::new("chpasswd")
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    chpasswd
        .stdin
        .take()
        .unwrap()
        .write_all(b"qsmtpauth:Pw-1234\n")
        .unwrap();
    assert!(chpasswd.wait().unwrap().success());
    // as the installer is to install it: root:shadow 2711, so that qmaild may verify
    let cp = sys.bin("checkpassword");
    assert!(cp.exists(), "checkpassword installed");
    let shadow = nix::unistd::Group::from_name("shadow").unwrap().unwrap();
    nix::unistd::chown(&cp, Some(0.into()), Some(shadow.gid)).unwrap();
    std::fs::set_permissions(&cp, std::os::unix::fs::PermissionsExt::from_mode(0o2711)).unwrap();
    let srv = SmtpServer::start(&sys, &["--submission", path_str(&cp), "/bin/true"], &[]);
    let script = format!(
        r#"{INSECURE_CTX}
import smtplib, sys
s = smtplib.SMTP('127.0.0.1', int(sys.argv[1]), timeout=60)
s.starttls(context=ctx)
try:
    s.login('qsmtpauth', 'wrong')
except smtplib.SMTPAuthenticationError as e:
    print('WRONG', e.smtp_code)
print('LOGIN', s.login('qsmtpauth', 'Pw-1234')[0])
s.sendmail('qsmtpauth@example.test', ['friend@elsewhere.test'], 'From: qsmtpauth@example.test\r\nSubject: real\r\n\r\nhi\r\n')
s.quit()
"#
    );
    let (ok, out) = python(&script, &[&srv.port.to_string()]);
    assert!(ok, "{out}\n{}", srv.log_text());
    assert!(out.contains("WRONG 535"), "{out}");
    assert!(out.contains("LOGIN 235"), "{out}");
    assert_eq!(queued(&sys), 1);
}

#[test]
fn certificates_are_read_per_connection_and_auth_failures_wait() {
    let sys = system();
    install_cert(&sys);
    sys.control("authfaildelay", "1\n");
    let cp = test_checkpassword(&sys);
    let srv = SmtpServer::start(&sys, &["--smtps", path_str(&cp), "/bin/true"], &[]);
    let script = format!(
        r#"{INSECURE_CTX}
import hashlib, smtplib, sys, time
s = smtplib.SMTP_SSL('127.0.0.1', int(sys.argv[1]), context=ctx, timeout=60)
print('CERT', hashlib.sha256(s.sock.getpeercert(binary_form=True)).hexdigest())
if len(sys.argv) > 2:
    t = time.monotonic()
    try:
        s.login('joe', 'wrong')
    except smtplib.SMTPAuthenticationError as e:
        print('FAILED', e.smtp_code, 'AFTER', time.monotonic() - t)
s.quit()
"#
    );
    let cert_of = |out: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix("CERT "))
            .unwrap_or_default()
            .to_string()
    };
    let (ok, first) = python(&script, &[&srv.port.to_string(), "fail"]);
    assert!(ok, "{first}");
    // the failed AUTH was answered after authfaildelay (a lower bound only)
    let waited: f64 = first
        .split("AFTER ")
        .nth(1)
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| panic!("{first}"));
    assert!(first.contains("FAILED 535") && waited >= 0.9, "{first}");
    let (_, again) = python(&script, &[&srv.port.to_string()]);
    assert_eq!(cert_of(&first), cert_of(&again));
    // a renewed certificate is served from the next connection on, no restart
    install_cert(&sys);
    let (ok, renewed) = python(&script, &[&srv.port.to_string()]);
    assert!(ok, "{renewed}");
    assert_ne!(cert_of(&first), cert_of(&renewed));
    assert!(!cert_of(&renewed).is_empty());
}

#[test]
fn smtps_without_a_certificate_closes_and_logs() {
    let sys = system();
    let cp = test_checkpassword(&sys);
    let srv = SmtpServer::start(&sys, &["--smtps", path_str(&cp), "/bin/true"], &[]);
    let mut c = srv.client();
    assert_eq!(c.reply(), "", "no plaintext greeting on the SMTPS port");
    assert!(eventually(30, || srv
        .log_text()
        .contains("TLS on connect failed")));
    // port 587 without a certificate: no STARTTLS, and no AUTH in plaintext
    let sub = SmtpServer::start(&sys, &["--submission", path_str(&cp), "/bin/true"], &[]);
    let mut c = sub.client();
    c.reply();
    let ehlo = c.cmd("EHLO c.test");
    assert!(
        !ehlo.contains("STARTTLS") && !ehlo.contains("AUTH"),
        "{ehlo}"
    );
}

#[test]
fn virtual_user_with_cram_md5_through_the_real_checkpassword() {
    let sys = system();
    let vuser = sys.bin("qmail-vuser");
    assert!(vuser.exists(), "qmail-vuser installed");
    let run = |args: &[&str], input: &str| {
        let out = output_with_input(Command::new(&vuser).args(args), input.as_bytes());
        assert!(
            out.status.success(),
            "qmail-vuser {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let owner = if is_root() {
        local_user("qsmtpvdom");
        vec!["--owner", "qsmtpvdom"]
    } else {
        Vec::new()
    };
    let mut add = vec!["adddomain", "virt.test"];
    add.extend(owner);
    run(&add, "");
    run(&["add", "ann@virt.test", "--apop"], "Correct-Horse-9\n");
    sys.control("authcrammd5", "1\n");
    let cp = sys.bin("checkpassword");
    let srv = SmtpServer::start(&sys, &["--submission", path_str(&cp), "/bin/true"], &[]);
    let script = r#"
import smtplib, sys
s = smtplib.SMTP('127.0.0.1', int(sys.argv[1]), timeout=60)
s.ehlo()
print('AUTH', s.esmtp_features.get('auth', '').strip())
print('LOGIN', s.login('ann@virt.test', 'Correct-Horse-9')[0])
print('OTHER', s.mail('joe@virt.test')[0])
s.rset()
s.sendmail('ann@virt.test', ['friend@elsewhere.test'], 'From: ann@virt.test\r\nSubject: v\r\n\r\nhi\r\n')
s.quit()
"#;
    let (ok, out) = python(script, &[&srv.port.to_string()]);
    assert!(ok, "{out}\n{}", srv.log_text());
    assert!(out.contains("AUTH CRAM-MD5\n"), "{out}");
    assert!(out.contains("LOGIN 235"), "{out}");
    assert!(out.contains("OTHER 553"), "{out}");
    assert_eq!(queued(&sys), 1);
    // port 25: the virtual domain's users are known, others refused at RCPT
    let mx = SmtpServer::start(&sys, &[], &[]);
    let mut c = mx.client();
    c.reply();
    c.cmd("MAIL FROM:<a@elsewhere.test>");
    assert_eq!(c.cmd("RCPT TO:<Ann@virt.test>"), "250 2.1.5 ok");
    assert_eq!(c.cmd("RCPT TO:<postmaster@virt.test>"), "250 2.1.5 ok");
    assert_eq!(
        c.cmd("RCPT TO:<nobody@virt.test>"),
        "550 5.1.1 sorry, no mailbox here by that name (#5.1.1)"
    );
}
