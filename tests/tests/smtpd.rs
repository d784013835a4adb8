//! End-to-end tests of qmail-smtpd: an installed system in a temporary root, qmail-smtpd
//! run per connection (as qmaild when root) by a tcpserver stand-in or Debian's
//! tcpserver, real clients (Python smtplib, swaks, openssl s_client, raw sockets), the
//! real qmail-queue, and qmail-send delivering into the alias user's Maildir.
//!
//! Tests that only look at the queue leave qmail-send stopped, so that every accepted
//! message stays countable in queue/mess and queue/todo.

mod smtpd_common;

use e2e::*;
use smtpd_common::*;
use std::process::Command;

const RELAY_TRICKS: &[&str] = &[
    "victim%elsewhere.test@example.test",
    "elsewhere.test!victim@example.test",
    "victim@elsewhere.test@example.test",
    "\"victim@elsewhere.test\"@example.test",
    "\"victim%elsewhere.test\"@example.test",
    "victim\\@elsewhere.test@example.test",
    "@example.test:victim@elsewhere.test",
    "@example.test,@mx.example.test:victim@elsewhere.test",
    "victim%elsewhere.test",
    "elsewhere.test!victim",
    "victim@elsewhere.test",
    "victim@elsewhere.test.",
    "victim@example.test.elsewhere.test",
    "victim@[192.0.2.1]",
];

#[test]
fn smtplib_message_reaches_the_maildir_with_qmail_received_line() {
    let mut sys = system();
    sys.start();
    let srv = SmtpServer::start(&sys, &[], &[]);
    // While a session is open, the running qmail-smtpd is qmaild's.
    let mut c = srv.client();
    assert!(c.reply().starts_with("220 mx.example.test ESMTP"));
    if is_root() {
        let (uid, _) = qmaild();
        let pids = pids_of(&sys.bin("qmail-smtpd"));
        assert_eq!(pids.len(), 1);
        assert_eq!(uid_of(pids[0]), Some(uid), "qmail-smtpd runs as qmaild");
    }
    assert!(c.cmd("QUIT").starts_with("221 2.0.0 mx.example.test"));
    let script = r#"
import smtplib, sys
s = smtplib.SMTP('127.0.0.1', int(sys.argv[1]), local_hostname='client.test', timeout=60)
print(s.ehlo())
assert s.has_extn('pipelining') and s.has_extn('8bitmime') and s.has_extn('enhancedstatuscodes')
assert not s.has_extn('auth'), 'no AUTH on port 25'
r = s.sendmail('sender@elsewhere.test', ['postmaster@example.test'],
  b'From: sender@elsewhere.test\r\nSubject: hello smtpd\r\n\r\nline one\r\n.leading dot\r\n\xc3\xa9t\xc3\xa9\r\n')
print('refused', r)
s.quit()
"#;
    let (ok, out) = python(script, &[&srv.port.to_string()]);
    assert!(ok, "{out}");
    let msgs = wait_maildir(&sys.root.join("alias/Maildir"), 1, 60);
    let m = &msgs[0];
    assert!(m.contains("Subject: hello smtpd\n"), "{m}");
    assert!(m.contains("\n.leading dot\n"), "dot-stuffing undone: {m}");
    assert!(m.contains("été"), "8-bit kept: {m}");
    assert!(
        m.contains("Received: from unknown (HELO client.test) (127.0.0.1)\n  by mx.example.test with ESMTP; "),
        "{m}"
    );
    if is_root() {
        assert!(m.contains("invoked from network"), "{m}");
    }
    assert!(
        srv.log_text().contains("message accepted qp"),
        "{}",
        srv.log_text()
    );
}

#[test]
fn replies_keep_qmail_wording() {
    let sys = system();
    let srv = SmtpServer::start(&sys, &[], &[]);
    let mut c = srv.client();
    assert_eq!(c.reply(), "220 mx.example.test ESMTP");
    let ehlo = c.cmd("EHLO client.test");
    for cap in [
        "250-mx.example.test",
        "250-PIPELINING",
        "250-8BITMIME",
        "250-SIZE",
        "250-ENHANCEDSTATUSCODES",
        "250-CHUNKING",
        "250 SMTPUTF8",
    ] {
        assert!(ehlo.contains(cap), "{cap} in {ehlo}");
    }
    assert!(
        !ehlo.contains("STARTTLS"),
        "no certificate, no STARTTLS: {ehlo}"
    );
    assert_eq!(c.cmd("HELO client.test"), "250 mx.example.test");
    assert_eq!(c.cmd("NOOP"), "250 2.0.0 ok");
    assert_eq!(
        c.cmd("VRFY joe"),
        "252 2.1.5 send some mail, i'll try my best"
    );
    assert!(c.cmd("HELP").starts_with("214"));
    assert_eq!(
        c.cmd("RCPT TO:<postmaster@example.test>"),
        "503 5.5.1 MAIL first (#5.5.1)"
    );
    assert_eq!(c.cmd("DATA"), "503 5.5.1 MAIL first (#5.5.1)");
    assert_eq!(c.cmd("MAIL FROM:<a@elsewhere.test>"), "250 2.1.0 ok");
    assert_eq!(c.cmd("DATA"), "503 5.5.1 RCPT first (#5.5.1)");
    assert_eq!(
        c.cmd("MAIL FROM:<b@elsewhere.test>"),
        "503 5.5.1 nested MAIL command (#5.5.1)"
    );
    assert_eq!(c.cmd("RSET"), "250 2.0.0 flushed");
    assert_eq!(c.cmd("MAIL FROM:a@elsewhere.test"), "250 2.1.0 ok");
    assert_eq!(c.cmd("RCPT TO:<>"), "555 5.5.4 syntax error (#5.5.4)");
    assert_eq!(
        c.cmd("RCPT TO:<x@example.test> NOTIFY=NEVER"),
        "555 5.5.4 syntax error in parameters (#5.5.4)"
    );
    assert_eq!(
        c.cmd("RCPT TO:<x\u{1}y@example.test>"),
        "553 5.1.3 sorry, I can't accept addresses like that (#5.1.3)"
    );
    assert_eq!(c.cmd("RCPT TO:<Postmaster@EXAMPLE.TEST>"), "250 2.1.5 ok");
    // SMTPUTF8: UTF-8 addresses pass through to the envelope
    assert_eq!(c.cmd("RCPT TO:<josé@example.test>"), "250 2.1.5 ok");
    assert_eq!(c.cmd("EXPN staff"), "502 5.5.1 unimplemented (#5.5.1)");
    assert_eq!(c.cmd("TURN"), "502 5.5.1 unimplemented (#5.5.1)");
    assert_eq!(c.cmd("STARTTLS"), "454 4.7.0 TLS not available (#4.7.0)");
    assert_eq!(c.cmd("AUTH PLAIN"), "503 5.3.3 auth not available (#5.3.3)");
    assert!(c.cmd("DATA").starts_with("354"));
    c.raw(b"Subject: utf8\r\n\r\n.\r\n");
    assert!(c.reply().starts_with("250 2.0.0 ok"));
    assert_eq!(
        c.cmd("MAIL FROM:<jörg@elsewhere.test> SMTPUTF8 BODY=8BITMIME"),
        "250 2.1.0 ok"
    );
    assert_eq!(c.cmd("QUIT"), "221 2.0.0 mx.example.test");
    assert!(c.closed());
    assert_eq!(
        todo_recipients(&sys),
        vec![vec![
            "Postmaster@EXAMPLE.TEST".to_string(),
            "josé@example.test".to_string()
        ]]
    );
    // smtpgreeting replaces me in the greeting
    sys.control("smtpgreeting", "gateway.example.test welcome\n");
    let mut c = srv.client();
    assert_eq!(c.reply(), "220 gateway.example.test welcome ESMTP");
}

#[test]
fn open_relay_battery() {
    let sys = system();
    let srv = SmtpServer::start(&sys, &[], &[]);
    let mut c = srv.client();
    c.reply();
    c.cmd("EHLO prober.test");
    assert_eq!(c.cmd("MAIL FROM:<probe@elsewhere.test>"), "250 2.1.0 ok");
    for t in RELAY_TRICKS {
        let r = c.cmd(&format!("RCPT TO:<{t}>"));
        assert!(
            r == "553 5.7.1 we don't relay (#5.7.1)"
                || r == "553 5.7.1 sorry, that domain isn't in my list of allowed rcpthosts (#5.7.1)",
            "{t}: {r}"
        );
    }
    assert_eq!(
        c.cmd("RCPT TO:<victim%elsewhere.test@example.test>"),
        "553 5.7.1 we don't relay (#5.7.1)"
    );
    assert!(
        srv.log_text().contains(
            "refused RCPT <victim%elsewhere.test@example.test> from 127.0.0.1: 553 5.7.1 we don't relay"
        ),
        "{}",
        srv.log_text()
    );
    assert!(
        c.cmd("RCPT TO:<victim@elsewhere.test>")
            .contains("isn't in my list of allowed rcpthosts")
    );
    // what is ours is accepted, the domain literal of this host included
    for ok in [
        "postmaster@example.test",
        "POSTMASTER@Mx.Example.Test",
        "postmaster@[127.0.0.1]",
        "postmaster",
    ] {
        assert_eq!(c.cmd(&format!("RCPT TO:<{ok}>")), "250 2.1.5 ok", "{ok}");
    }
    assert!(c.cmd("DATA").starts_with("354"));
    c.raw(b"Subject: probe\r\n\r\nx\r\n.\r\n");
    assert!(c.reply().starts_with("250 2.0.0 ok"));
    let r = todo_recipients(&sys);
    assert_eq!(r.len(), 1);
    assert_eq!(
        r[0],
        vec![
            "postmaster@example.test",
            "POSTMASTER@Mx.Example.Test",
            "postmaster@mx.example.test",
            "postmaster"
        ]
    );
    drop(c);

    // RELAYCLIENT (tcprules for trusted hosts) relays everything, suffix appended
    let relay = SmtpServer::start(&sys, &[], &[("RELAYCLIENT", "")]);
    let mut c = relay.client();
    c.reply();
    c.cmd("EHLO trusted.test");
    assert_eq!(c.cmd("MAIL FROM:<a@example.test>"), "250 2.1.0 ok");
    for t in RELAY_TRICKS {
        assert_eq!(c.cmd(&format!("RCPT TO:<{t}>")), "250 2.1.5 ok", "{t}");
    }

    // a missing rcpthosts accepts nothing (qmail would be an open relay)
    std::fs::remove_file(sys.root.join("control/rcpthosts")).unwrap();
    let mut c = srv.client();
    c.reply();
    c.cmd("MAIL FROM:<a@elsewhere.test>");
    assert!(
        c.cmd("RCPT TO:<postmaster@example.test>")
            .starts_with("553 5.7.1")
    );
}

#[test]
fn smuggling_attempts_queue_nothing() {
    let sys = system();
    let srv = SmtpServer::start(&sys, &[], &[]);
    let smuggled: &[u8] = b"MAIL FROM:<evil@elsewhere.test>\r\nRCPT TO:<postmaster@example.test>\r\nDATA\r\nSubject: smuggled\r\n\r\nsmuggled\r\n.\r\n";
    let endings: &[&[u8]] = &[
        b"\n.\n",
        b"\n.\r\n",
        b"\r\n.\n",
        b"\r.\r\n",
        b"\r\n.\r",
        b"\r.\r",
        b"\n\r.\r\n",
        b"\r\n\n.\r\n",
        b"\r\r\n.\r\n",
        b"\r\n.\r\r\n",
        b"\r\n.\n\r\n",
    ];
    for end in endings {
        let mut c = srv.client();
        c.reply();
        c.cmd("EHLO smuggler.test");
        c.cmd("MAIL FROM:<a@elsewhere.test>");
        c.cmd("RCPT TO:<postmaster@example.test>");
        assert!(c.cmd("DATA").starts_with("354"));
        let mut data = b"Subject: first\r\n\r\nbody".to_vec();
        data.extend_from_slice(end);
        data.extend_from_slice(smuggled);
        c.raw(&data);
        let r = c.reply();
        assert!(
            r.starts_with("451 4.5.0 See https://cr.yp.to/docs/smtplf.html."),
            "{end:?}: {r}"
        );
        assert!(
            c.closed(),
            "{end:?}: connection closed after the bare CR/LF"
        );
    }
    assert_eq!(queued(&sys), 0, "nothing queued from any variant");
    assert!(srv.log_text().contains("bare LF in DATA"));
    assert!(srv.log_text().contains("bare CR in DATA"));

    // NUL next to the dot is data: one message, the "smuggled" one is its body
    for end in [&b"\r\n\0.\r\n"[..], b"\r\n.\0\r\n"] {
        let mut c = srv.client();
        c.reply();
        c.cmd("MAIL FROM:<a@elsewhere.test>");
        c.cmd("RCPT TO:<postmaster@example.test>");
        c.cmd("DATA");
        let mut data = b"Subject: first\r\n\r\nbody".to_vec();
        data.extend_from_slice(end);
        data.extend_from_slice(smuggled);
        c.raw(&data);
        assert!(c.reply().starts_with("250 2.0.0 ok"));
        // the next command proves the session stayed in sync
        assert_eq!(c.cmd("NOOP"), "250 2.0.0 ok");
    }
    let msgs = queued_messages(&sys);
    assert_eq!(msgs.len(), 2);
    for m in msgs {
        assert!(m.contains("Subject: first\n"), "{m}");
        assert!(m.contains("\nMAIL FROM:<evil@elsewhere.test>\n"), "{m}");
    }
}

#[test]
fn limits_lines_size_recipients_hops_and_queue_failures() {
    let sys = system();
    sys.control("databytes", "2000\n");
    let srv = SmtpServer::start(&sys, &[], &[]);
    let mut c = srv.client();
    c.reply();
    assert!(c.cmd("EHLO c.test").contains("250-SIZE 2000"));
    let long = format!("NOOP {}", "x".repeat(10_000));
    assert_eq!(c.cmd(&long), "500 5.5.2 line too long (#5.5.2)");
    assert_eq!(c.cmd("NOOP"), "250 2.0.0 ok");
    assert!(
        c.cmd("MAIL FROM:<a@elsewhere.test> SIZE=5000")
            .starts_with("552 5.3.4")
    );
    let big = format!("Subject: big\r\n\r\n{}", "0123456789\r\n".repeat(500));
    let r = send_message(
        &mut c,
        "a@elsewhere.test",
        &["postmaster@example.test"],
        &big,
    );
    assert_eq!(
        r,
        "552 5.3.4 sorry, that message size exceeds my databytes limit (#5.3.4)"
    );
    assert_eq!(queued(&sys), 0);
    let mut hops = String::new();
    for i in 0..100 {
        hops.push_str(&format!("Received: from hop{i}\r\n"));
    }
    hops.push_str("\r\nloop\r\n");
    sys.control("databytes", "0\n");
    let mut c = srv.client();
    c.reply();
    let r = send_message(
        &mut c,
        "a@elsewhere.test",
        &["postmaster@example.test"],
        &hops,
    );
    assert_eq!(
        r,
        "554 5.4.6 too many hops, this message is looping (#5.4.6)"
    );
    assert_eq!(queued(&sys), 0);

    // 1001 recipients pipelined in one write: 1000 accepted (maxrcpt), then 452
    let mut batch = String::from("MAIL FROM:<a@elsewhere.test>\r\n");
    for i in 0..1001 {
        batch.push_str(&format!("RCPT TO:<postmaster-{i}@example.test>\r\n"));
    }
    c.raw(batch.as_bytes());
    assert_eq!(c.reply(), "250 2.1.0 ok");
    let mut ok = 0;
    for _ in 0..1000 {
        if c.reply() == "250 2.1.5 ok" {
            ok += 1;
        }
    }
    assert_eq!(ok, 1000);
    assert_eq!(c.reply(), "452 4.5.3 sorry, too many recipients (#4.5.3)");
    assert!(c.cmd("DATA").starts_with("354"));
    c.raw(b"Subject: many\r\n\r\nhi\r\n.\r\n");
    assert!(c.reply().starts_with("250 2.0.0 ok"));
    let todo = todo_recipients(&sys);
    assert_eq!(todo.len(), 1);
    assert_eq!(todo[0].len(), 1000);
    assert_eq!(todo[0][999], "postmaster-999@example.test");

    // qmail-queue's exit codes become qmail's replies ($QMAILQUEUE)
    let dir = sys.root.parent().unwrap();
    for (code, want) in [
        (
            31,
            "554 5.3.0 mail server permanently rejected message (#5.3.0)",
        ),
        (53, "451 4.3.0 qq write error or disk full (#4.3.0)"),
    ] {
        let qq = dir.join(format!("qq{code}"));
        std::fs::write(&qq, format!("#!/bin/sh\ncat >/dev/null\nexit {code}\n")).unwrap();
        std::fs::set_permissions(&qq, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let s = SmtpServer::start(&sys, &[], &[("QMAILQUEUE", path_str(&qq))]);
        let mut c = s.client();
        c.reply();
        let r = send_message(
            &mut c,
            "a@elsewhere.test",
            &["postmaster@example.test"],
            "Subject: x\r\n\r\ny",
        );
        assert_eq!(r, want);
    }
    assert_eq!(queued(&sys), 1);
}

#[test]
fn timeouts_garbage_and_vanishing_clients() {
    let sys = system();
    sys.control("timeoutsmtpd", "1\n");
    let srv = SmtpServer::start(&sys, &[], &[]);
    // a client that stops talking
    let mut c = srv.client();
    c.reply();
    assert_eq!(c.reply(), "451 4.4.2 timeout (#4.4.2)");
    assert!(c.closed());
    // ... also in the middle of DATA: nothing queued
    let mut c = srv.client();
    c.reply();
    c.cmd("MAIL FROM:<a@elsewhere.test>");
    c.cmd("RCPT TO:<postmaster@example.test>");
    c.cmd("DATA");
    c.raw(b"Subject: slow\r\n\r\nhalf a mess");
    assert_eq!(c.reply(), "451 4.4.2 timeout (#4.4.2)");
    assert!(c.closed());
    sys.control("timeoutsmtpd", "60\n");

    // garbage and binary: error replies, then the door
    let mut c = srv.client();
    c.reply();
    assert_eq!(
        c.cmd("\u{0}\u{1}\u{2}binary"),
        "502 5.5.1 unimplemented (#5.5.1)"
    );
    c.raw(b"\xff\xfe\x80 bad utf8\r\n");
    assert_eq!(
        c.reply(),
        "500 5.5.2 invalid characters in command (#5.5.2)"
    );
    let mut batch = Vec::new();
    for i in 0..30 {
        batch.extend_from_slice(format!("GARBAGE{i} %%%\r\n").as_bytes());
    }
    c.raw(&batch);
    let mut replies = Vec::new();
    loop {
        let r = c.reply();
        if r.is_empty() {
            break;
        }
        replies.push(r);
    }
    assert_eq!(
        replies.last().map(String::as_str),
        Some("421 4.7.0 too many errors, closing connection (#4.7.0)")
    );
    assert!(replies.len() < 30, "closed before reading everything");

    // syntax errors count as well
    let mut c = srv.client();
    c.reply();
    c.raw("MAIL FROM:<unterminated\r\n".repeat(25).as_bytes());
    let mut replies = Vec::new();
    loop {
        let r = c.reply();
        if r.is_empty() {
            break;
        }
        replies.push(r);
    }
    assert_eq!(replies.len(), 21, "{replies:?}");
    assert_eq!(replies[19], "555 5.5.4 syntax error (#5.5.4)");
    assert_eq!(
        replies[20],
        "421 4.7.0 too many errors, closing connection (#4.7.0)"
    );

    // a client that disconnects in the middle of DATA
    let mut c = srv.client();
    c.reply();
    c.cmd("MAIL FROM:<a@elsewhere.test>");
    c.cmd("RCPT TO:<postmaster@example.test>");
    c.cmd("DATA");
    c.raw(b"Subject: cut\r\n\r\nhalf a message\r\n");
    c.sock.shutdown(std::net::Shutdown::Both).unwrap();
    assert!(eventually(30, || srv
        .log_text()
        .contains("client went away during DATA")));
    assert_eq!(queued(&sys), 0);
    // and the service still works
    let mut c = srv.client();
    c.reply();
    let r = send_message(
        &mut c,
        "a@elsewhere.test",
        &["postmaster@example.test"],
        "Subject: ok\r\n\r\nok",
    );
    assert!(r.starts_with("250 2.0.0 ok"), "{r}");
    assert_eq!(queued(&sys), 1);
}

#[test]
fn swaks_pipelining() {
    need_tool!("swaks", "swaks");
    let sys = system();
    let srv = SmtpServer::start(&sys, &[], &[]);
    let out = Command::new("swaks")
        .args(["--server", &format!("127.0.0.1:{}", srv.port)])
        .args([
            "--pipeline",
            "--from",
            "a@elsewhere.test",
            "--to",
            "postmaster@example.test",
        ])
        .args(["--header", "Subject: pipelined", "--timeout", "60"])
        .output()
        .expect("swaks");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("250 2.0.0 ok"), "{text}");
    let msgs = queued_messages(&sys);
    assert_eq!(msgs.len(), 1);
    assert!(msgs[0].contains("Subject: pipelined"));
}

#[test]
fn badmailfrom_badrcptto_and_morercpthosts() {
    let sys = system();
    sys.control("badmailfrom", "spammer@elsewhere.test\n@spam.test\n");
    sys.control("badrcptto", "blocked@example.test\n");
    sys.control("morercpthosts", "# more\nmore.test\n.sub.more2.test\n");
    let newmrh = sys.bin("qmail-newmrh");
    assert!(newmrh.exists(), "qmail-newmrh installed");
    assert!(Command::new(&newmrh).status().unwrap().success());
    assert!(sys.root.join("control/morercpthosts.cdb").exists());
    let srv = SmtpServer::start(&sys, &[], &[]);
    let mut c = srv.client();
    c.reply();
    for bad in ["spammer@elsewhere.test", "anyone@SPAM.test"] {
        assert_eq!(c.cmd(&format!("MAIL FROM:<{bad}>")), "250 2.1.0 ok");
        assert_eq!(
            c.cmd("RCPT TO:<postmaster@example.test>"),
            "553 5.7.1 sorry, your envelope sender is in my badmailfrom list (#5.7.1)"
        );
        c.cmd("RSET");
    }
    c.cmd("MAIL FROM:<fine@elsewhere.test>");
    assert_eq!(
        c.cmd("RCPT TO:<Blocked@example.test>"),
        "553 5.7.1 sorry, your envelope recipient is in my badrcptto list (#5.7.1)"
    );
    for ok in ["x@more.test", "x@a.sub.more2.test"] {
        assert_eq!(c.cmd(&format!("RCPT TO:<{ok}>")), "250 2.1.5 ok", "{ok}");
    }
    for no in ["x@other.more.test", "x@sub.more2.test"] {
        assert!(c.cmd(&format!("RCPT TO:<{no}>")).starts_with("553"), "{no}");
    }
}

#[test]
fn recipient_check_refuses_unknown_local_users() {
    let sys = system();
    alias_file(&sys, ".qmail-sales", "&postmaster\n");
    alias_file(&sys, ".qmail-list-default", "&postmaster\n");
    sys.control("recipients", "robot\n");
    // the tool is installed by the installer once it lists it; copy it meanwhile
    let tool = sys.bin("qmail-recipients");
    if !tool.exists() {
        std::fs::copy(build_dir().join("qmail-recipients"), &tool).unwrap();
    }
    let out = Command::new(&tool).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let srv = SmtpServer::start(&sys, &[], &[]);
    let mut c = srv.client();
    c.reply();
    c.cmd("MAIL FROM:<a@elsewhere.test>");
    for ok in [
        "postmaster",
        "sales",
        "Sales",
        "list-one",
        "robot",
        "mailer-daemon",
    ] {
        assert_eq!(
            c.cmd(&format!("RCPT TO:<{ok}@example.test>")),
            "250 2.1.5 ok",
            "{ok}"
        );
    }
    for no in ["nosuch", "list", "sales-x"] {
        assert_eq!(
            c.cmd(&format!("RCPT TO:<{no}@example.test>")),
            "550 5.1.1 sorry, no mailbox here by that name (#5.1.1)",
            "{no}"
        );
    }
    if is_root() {
        let (uid, home) = local_user("qsmtpd1");
        write_owned(&home.join(".qmail-ext"), "./Maildir/\n", uid);
        assert!(Command::new(&tool).status().unwrap().success());
        let mut c = srv.client();
        c.reply();
        c.cmd("MAIL FROM:<a@elsewhere.test>");
        for ok in ["qsmtpd1", "qsmtpd1-ext"] {
            assert_eq!(
                c.cmd(&format!("RCPT TO:<{ok}@example.test>")),
                "250 2.1.5 ok",
                "{ok}"
            );
        }
        assert!(
            c.cmd("RCPT TO:<qsmtpd1-other@example.test>")
                .starts_with("550 5.1.1")
        );
    } else {
        skip("the system users' part needs root (the rest runs)");
    }
    // without the cdb, no check
    std::fs::remove_file(sys.root.join("control/recipients.cdb")).unwrap();
    let mut c = srv.client();
    c.reply();
    c.cmd("MAIL FROM:<a@elsewhere.test>");
    assert_eq!(c.cmd("RCPT TO:<nosuch@example.test>"), "250 2.1.5 ok");
}

#[test]
fn runs_under_debian_tcpserver() {
    need_tool!("/usr/bin/tcpserver", "ucspi-tcp");
    let sys = system();
    let mut cmd = Command::new("/usr/bin/tcpserver");
    cmd.args(["-1", "-q", "-H", "-R", "-l", ME]);
    if is_root() {
        let (u, g) = qmaild();
        cmd.args(["-u", &u.to_string(), "-g", &g.to_string()]);
    }
    let mut child = cmd
        .args(["127.0.0.1", "0"])
        .arg(sys.bin("qmail-smtpd"))
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("RELAYCLIENT", "")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let port = printed_port(&mut child);
    let mut child = Server(child);
    let mut c = Client::connect(port);
    assert_eq!(c.reply(), "220 mx.example.test ESMTP");
    c.cmd("EHLO client.test");
    let r = send_message(
        &mut c,
        "a@elsewhere.test",
        &["someone@elsewhere.test"],
        "Subject: via tcpserver\r\n\r\nhi",
    );
    assert!(r.starts_with("250 2.0.0 ok"), "{r}");
    c.cmd("QUIT");
    let _ = child.0.kill();
    let _ = child.0.wait();
    let msgs = queued_messages(&sys);
    assert_eq!(msgs.len(), 1);
    assert!(
        msgs[0].contains("Received: from unknown (HELO client.test) (127.0.0.1)\n  by mx.example.test with ESMTP;"),
        "{}",
        msgs[0]
    );
    assert_eq!(
        todo_recipients(&sys),
        vec![vec!["someone@elsewhere.test".to_string()]]
    );
}

#[test]
fn our_tcpserver_and_tcprules_grant_relaying() {
    let sys = system();
    assert!(
        sys.bin("tcpserver").exists() && sys.bin("tcprules").exists(),
        "ucspi installed"
    );
    let rules = sys.root.join("control/tcp.smtp");
    let cdb = sys.root.join("control/tcp.smtp.cdb");
    let make_rules = |text: &str| {
        std::fs::write(&rules, text).unwrap();
        let mut child = Command::new(sys.bin("tcprules"))
            .arg(&cdb)
            .arg(sys.root.join("control/tcp.smtp.tmp"))
            .stdin(std::fs::File::open(&rules).unwrap())
            .spawn()
            .unwrap();
        assert!(child.wait().unwrap().success());
    };
    make_rules("127.0.0.1:allow,RELAYCLIENT=\"\"\n:allow\n");
    let mut cmd = Command::new(sys.bin("tcpserver"));
    // as the run scripts start it: -l0 (TCPLOCALHOST=0, no name)
    cmd.args(["-1", "-q", "-H", "-R", "-l0", "-x"]).arg(&cdb);
    if is_root() {
        let (u, g) = qmaild();
        cmd.args(["-u", &u.to_string(), "-g", &g.to_string()]);
    }
    let mut child = cmd
        .args(["127.0.0.1", "0"])
        .arg(sys.bin("qmail-smtpd"))
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let port = printed_port(&mut child);
    let relay = |expect: &str| {
        let mut c = Client::connect(port);
        assert_eq!(c.reply(), "220 mx.example.test ESMTP");
        c.cmd("MAIL FROM:<a@example.test>");
        let r = c.cmd("RCPT TO:<someone@elsewhere.test>");
        assert!(r.starts_with(expect), "{r}");
        c.cmd("QUIT");
    };
    relay("250 2.1.5 ok");
    let mut c = Client::connect(port);
    c.reply();
    let r = send_message(
        &mut c,
        "a@example.test",
        &["postmaster@example.test"],
        "Subject: l0\r\n\r\nx",
    );
    assert!(r.starts_with("250 2.0.0 ok"), "{r}");
    let m = queued_messages(&sys).pop().unwrap();
    assert!(
        m.contains("(127.0.0.1)\n  by mx.example.test with SMTP;"),
        "{m}"
    );
    // rules are reread per connection
    make_rules("127.0.0.1:allow,AUTHPLAINTEXT=\"\"\n:allow\n");
    relay("553 5.7.1");
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn started_as_root_it_becomes_qmaild_and_databytes_env_wins() {
    let sys = system();
    sys.control("databytes", "5000\n");
    // DATABYTES from tcprules overrides control/databytes
    let srv = SmtpServer::start(&sys, &[], &[("DATABYTES", "100")]);
    let mut c = srv.client();
    c.reply();
    assert!(c.cmd("EHLO c.test").contains("250-SIZE 100\n"));
    let r = send_message(
        &mut c,
        "a@elsewhere.test",
        &["postmaster@example.test"],
        &format!("Subject: big\r\n\r\n{}", "x".repeat(200)),
    );
    assert!(r.starts_with("552 5.3.4"), "{r}");
    if !is_root() {
        skip("the run-as-root part needs root");
        return;
    }
    // run directly as root (no tcpserver -u): it drops to qmaild before reading input
    let out = Command::new(sys.bin("qmail-smtpd"))
        .env_clear()
        .env("TCPREMOTEIP", "192.0.2.7")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(
                b"HELO root.test\r\nMAIL FROM:<a@elsewhere.test>\r\nRCPT TO:<postmaster@example.test>\r\nDATA\r\nSubject: as root\r\n\r\nx\r\n.\r\nQUIT\r\n",
            )?;
            child.wait_with_output()
        })
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("250 2.0.0 ok"), "{text}");
    assert_eq!(out.status.code(), Some(0));
    let msgs = queued_messages(&sys);
    assert_eq!(msgs.len(), 1);
    assert!(
        msgs[0].contains("invoked from network"),
        "qmail-queue saw qmaild: {}",
        msgs[0]
    );
    assert!(
        msgs[0].contains("(HELO root.test) (192.0.2.7)"),
        "{}",
        msgs[0]
    );
}

#[test]
fn chunking_with_bdat() {
    let sys = system();
    let srv = SmtpServer::start(&sys, &[], &[]);
    let mut c = srv.client();
    c.reply();
    assert!(c.cmd("EHLO c.test").contains("250-CHUNKING"));
    // BDAT outside a transaction: the chunk is read and refused, the session stays in step
    c.raw(b"BDAT 5\r\nhelloNOOP\r\n");
    assert_eq!(c.reply(), "503 5.5.1 MAIL first (#5.5.1)");
    assert_eq!(c.reply(), "250 2.0.0 ok");
    // one message in three pipelined chunks, with bare LF line ends (what BDAT is for),
    // a CR LF split across chunks and a lone dot line that is just data
    c.cmd("MAIL FROM:<a@elsewhere.test>");
    c.cmd("RCPT TO:<postmaster@example.test>");
    let parts: [&[u8]; 3] = [
        b"Subject: chunked\r\nX-Bare: lf\n\r\nline one\r",
        b"\n.line two\n",
        b"\r\n.\r\nend\r\n",
    ];
    let mut batch = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        let last = if i == 2 { " LAST" } else { "" };
        batch.extend_from_slice(format!("BDAT {}{last}\r\n", p.len()).as_bytes());
        batch.extend_from_slice(p);
    }
    c.raw(&batch);
    assert_eq!(
        c.reply(),
        format!("250 2.0.0 {} octets received", parts[0].len())
    );
    assert_eq!(
        c.reply(),
        format!("250 2.0.0 {} octets received", parts[1].len())
    );
    let r = c.reply();
    assert!(r.starts_with("250 2.0.0 ok"), "{r}");
    let m = queued_messages(&sys);
    assert_eq!(m.len(), 1);
    assert!(
        m[0].contains("Subject: chunked\nX-Bare: lf\n\nline one\n.line two\n\n.\nend\n"),
        "{}",
        m[0]
    );
    // RSET between chunks aborts the transaction
    c.cmd("MAIL FROM:<a@elsewhere.test>");
    c.cmd("RCPT TO:<postmaster@example.test>");
    c.raw(b"BDAT 3\r\nabcNOOP\r\nRSET\r\n");
    assert_eq!(c.reply(), "250 2.0.0 3 octets received");
    assert_eq!(c.reply(), "250 2.0.0 ok");
    assert_eq!(c.reply(), "250 2.0.0 flushed");
    // a bare CR is refused
    c.cmd("MAIL FROM:<a@elsewhere.test>");
    c.cmd("RCPT TO:<postmaster@example.test>");
    c.raw(b"BDAT 4 LAST\r\na\rb\n");
    assert_eq!(
        c.reply(),
        "554 5.6.0 sorry, a bare CR in the message (#5.6.0)"
    );
    // a size that is not a number ends the session (it cannot stay in step)
    c.cmd("MAIL FROM:<a@elsewhere.test>");
    c.cmd("RCPT TO:<postmaster@example.test>");
    c.raw(b"BDAT x\r\n");
    assert!(c.reply().starts_with("501 5.5.4"));
    assert!(c.closed());
    // databytes, and a client that goes away inside a chunk
    sys.control("databytes", "10\n");
    let mut c = srv.client();
    c.reply();
    c.cmd("MAIL FROM:<a@elsewhere.test>");
    c.cmd("RCPT TO:<postmaster@example.test>");
    assert_eq!(
        c.cmd(&format!("BDAT 20 LAST\r\n{}", "y".repeat(18))),
        "552 5.3.4 sorry, that message size exceeds my databytes limit (#5.3.4)"
    );
    c.cmd("MAIL FROM:<a@elsewhere.test>");
    c.cmd("RCPT TO:<postmaster@example.test>");
    c.raw(b"BDAT 100 LAST\r\nonly part");
    c.sock.shutdown(std::net::Shutdown::Both).unwrap();
    assert!(eventually(30, || srv
        .log_text()
        .contains("client went away during DATA")));
    assert_eq!(queued(&sys), 1);
}
