//! End-to-end test of qmail-stats (issue 18): known traffic through a real installation,
//! logged the way the services log (multilog `t ./main` under HOME/supervise/S/log),
//! then counted by the installed qmail-stats as text, as JSON (read with Python's json)
//! and as an HTML page opened in Debian's headless Chromium.
//!
//! The traffic: qmail-send started with its output through multilog; one message over
//! SMTP delivered locally (its sender a hostile `"a<b>&c"@far.test`), one queued to an
//! unknown local user (bounced, and the bounce delivered locally), one to a `.qmail`
//! program exiting 111 (deferred once), one remote through smtproutes to Postfix's
//! smtp-sink; qmail-smtpd under our tcpserver refusing two relay attempts, an unknown
//! recipient (recipients.cdb), a badmailfrom sender and a virus (a filter of the chain);
//! qmail-smtpd --submission refusing MAIL before AUTH, a wrong password and a MAIL over
//! its client message rate.

mod smtpd_common;

use e2e::*;
use smtpd_common::*;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

const HOSTILE_SENDER: &str = "\"a<b>&c\"@far.test";
/// How qmail-send logs it (the quotes are gone once the address is parsed).
const HOSTILE_LOGGED: &str = "a<b>&c@far.test";

/// A filter refusing messages that hold `EICAR-TEST` with a virus scanner's words.
const VIRUS_FILTER: &str = r#"#!/bin/sh
t=$(mktemp) || exit 71
cat > "$t"
if grep -q EICAR-TEST "$t"; then rm -f "$t"; echo 'Dvirus found: Eicar-Test-Signature (#5.7.1)' >&6; exit 82; fi
cat "$t"
rm -f "$t"
"#;

/// multilog `t ./main` in HOME/supervise/SERVICE/log, as the log run scripts start it;
/// its stdin is what the service writes to.
fn multilog(sys: &System, service: &str) -> (Child, PathBuf) {
    let dir = sys.root.join("supervise").join(service).join("log");
    std::fs::create_dir_all(&dir).unwrap();
    let child = Command::new(sys.bin("multilog"))
        .args(["t", "./main"])
        .current_dir(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("start multilog");
    (child, dir.join("main"))
}

fn pipe_in(log: &mut Child) -> (Stdio, Stdio) {
    let stdin: ChildStdin = log.stdin.take().unwrap();
    let fd: std::os::fd::OwnedFd = stdin.into();
    (Stdio::from(fd.try_clone().unwrap()), Stdio::from(fd))
}

fn current(main: &Path) -> String {
    std::fs::read_to_string(main.join("current")).unwrap_or_default()
}

/// The rotated files of a log directory.
fn rotated(main: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(main)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with('@'))
        .collect();
    v.sort();
    v
}

/// Every line of a log directory: the rotated files, then current.
fn all_lines(main: &Path) -> String {
    let mut text = String::new();
    for f in rotated(main) {
        text.push_str(&std::fs::read_to_string(f).unwrap());
    }
    text + &current(main)
}

fn wait_count(main: &Path, needle: &str, n: usize) {
    wait_until(&format!("{n} log lines with {needle:?}"), 60, || {
        (current(main).matches(needle).count() >= n).then_some(())
    });
}

/// Wait for `child` to exit by itself, killing it after `secs`.
fn wait_exit(child: &mut Child, secs: u64) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    false
}

/// Our tcpserver running qmail-smtpd ARGS as qmaild, its stderr (the log) into `log`.
fn smtp_service(
    sys: &System,
    log: &mut Child,
    args: &[&str],
    env: &[(&str, &str)],
) -> (Server, u16) {
    let (_, err) = pipe_in(log);
    let (u, g) = qmaild();
    let mut child = Command::new(sys.bin("tcpserver"))
        .args(["-1", "-q", "-H", "-R", "-l", ME, "-c", "100"])
        .args(["-u", &u.to_string(), "-g", &g.to_string()])
        .args(["127.0.0.1", "0"])
        .arg(sys.bin("qmail-smtpd"))
        .args(args)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(err)
        .spawn()
        .expect("start tcpserver");
    let port = printed_port(&mut child);
    (Server(child), port)
}

fn plain(user: &str, pass: &str) -> String {
    format!("AUTH PLAIN {}", b64(format!("\0{user}\0{pass}").as_bytes()))
}

/// The SMTP traffic; each reply checked, so the counts below are known.
fn smtp_traffic(mx: u16, submission: u16) {
    let mut c = Client::connect(mx);
    c.reply();
    assert!(c.cmd("EHLO client.test").starts_with("250"));
    assert_eq!(
        c.cmd(&format!("MAIL FROM:<{HOSTILE_SENDER}>")),
        "250 2.1.0 ok"
    );
    // not in rcpthosts: relaying refused
    for rcpt in ["x@far.test", "\"<script>\"@far.test"] {
        let r = c.cmd(&format!("RCPT TO:<{rcpt}>"));
        assert!(r.contains("rcpthosts") || r.contains("relay"), "{r}");
    }
    assert_eq!(
        c.cmd("RCPT TO:<ghost@example.test>"),
        "550 5.1.1 sorry, no mailbox here by that name (#5.1.1)"
    );
    assert_eq!(c.cmd("RCPT TO:<sales@example.test>"), "250 2.1.5 ok");
    assert!(c.cmd("DATA").starts_with("354"));
    c.raw(b"Subject: one\r\n\r\nhello\r\n.\r\n");
    assert!(c.reply().starts_with("250 "));
    c.cmd("QUIT");

    let mut c = Client::connect(mx);
    c.reply();
    let r = send_message(
        &mut c,
        "alice@far.test",
        &["sales@example.test"],
        "Subject: two\r\n\r\nEICAR-TEST",
    );
    assert!(r.starts_with("554 5.7.1 virus found"), "{r}");
    c.cmd("QUIT");

    let mut c = Client::connect(mx);
    c.reply();
    c.cmd("MAIL FROM:<spammer@bad.test>");
    assert!(
        c.cmd("RCPT TO:<sales@example.test>")
            .contains("badmailfrom")
    );
    c.cmd("QUIT");

    let mut c = Client::connect(submission);
    c.reply();
    c.cmd("EHLO client.test");
    assert!(c.cmd("MAIL FROM:<joe@example.test>").starts_with("530 "));
    assert!(c.cmd(&plain("joe", "wrong")).starts_with("535 "));
    c.cmd("QUIT");

    let mut c = Client::connect(submission);
    c.reply();
    c.cmd("EHLO client.test");
    assert!(c.cmd(&plain("joe", "secret")).starts_with("235 "));
    assert_eq!(c.cmd("MAIL FROM:<joe@example.test>"), "250 2.1.0 ok");
    c.cmd("RSET");
    assert_eq!(
        c.cmd("MAIL FROM:<joe@example.test>"),
        "450 4.7.1 Error: too much mail from 127.0.0.1"
    );
    c.cmd("QUIT");
}

/// Run Chromium headless on `page` with `args`, no network (a proxy nothing listens on),
/// a fresh profile; (stdout, stderr). Killed after 120 s.
fn chromium(tmp: &Path, page: &Path, args: &[&str]) -> (String, String) {
    let profile = tempfile::tempdir_in(tmp).unwrap();
    let out = tmp.join("chromium.out");
    let err = tmp.join("chromium.err");
    let mut child = Command::new("/usr/bin/chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--proxy-server=127.0.0.1:1",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .expect("start chromium");
    assert!(wait_exit(&mut child, 120), "chromium did not finish");
    (
        std::fs::read_to_string(&out).unwrap_or_default(),
        std::fs::read_to_string(&err).unwrap_or_default(),
    )
}

fn section<'a>(dom: &'a str, id: &str) -> &'a str {
    let start = dom
        .find(&format!("<figure id=\"{id}\">"))
        .unwrap_or_else(|| panic!("no figure {id}"));
    let end = dom[start..].find("</figure>").unwrap() + start;
    &dom[start..end]
}

#[test]
fn qmail_stats_counts_known_traffic_and_the_page_renders() {
    need_root!();
    need_tool!("/usr/sbin/smtp-sink", "postfix");
    need_tool!("/usr/bin/chromium", "chromium");
    need_tool!("/usr/bin/python3", "python3");
    let sys = system();
    let tmp = sys.root.parent().unwrap().to_path_buf();
    let mut sink = Command::new("/usr/sbin/smtp-sink")
        .args(["-u", "nobody", "127.0.0.1:0", "10"])
        .spawn()
        .expect("smtp-sink");
    let sink_port = wait_listen_port(&mut sink);
    let _sink = Server(sink);

    sys.control("badmailfrom", "spammer@bad.test\n");
    sys.control("smtproutes", &format!("far.test:127.0.0.1:{sink_port}\n"));
    sys.control("clientratewindow", "3600\n");
    let filter = tmp.join("virus-filter");
    std::fs::write(&filter, VIRUS_FILTER).unwrap();
    std::fs::set_permissions(&filter, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    sys.control("filters", &format!("{}\n", filter.display()));
    alias_file(&sys, ".qmail-sales", "|cat > /dev/null\n");
    alias_file(&sys, ".qmail-slow", "|exit 111\n");
    let tool = sys.bin("qmail-recipients");
    if !tool.exists() {
        std::fs::copy(build_dir().join("qmail-recipients"), &tool).unwrap();
    }
    assert!(Command::new(&tool).status().unwrap().success());
    let checkpw = test_checkpassword(&sys);

    let (mut send_log, send_main) = multilog(&sys, "qmail-send");
    let (mut smtpd_log, smtpd_main) = multilog(&sys, "qmail-smtpd");
    let (mut sub_log, sub_main) = multilog(&sys, "qmail-submission");
    let (out, err) = pipe_in(&mut send_log);
    let send = Command::new(sys.bin("qmail-start"))
        .arg("./Maildir/")
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .current_dir("/")
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("start qmail-start");
    let mut send = Server(send);
    wait_count(&send_main, "status: local", 1);
    let (mx, mx_port) = smtp_service(&sys, &mut smtpd_log, &[], &[]);
    let cp = checkpw.to_str().unwrap();
    let (sub, sub_port) = smtp_service(
        &sys,
        &mut sub_log,
        &["--submission", cp, "/bin/true"],
        &[("AUTHPLAINTEXT", ""), ("CLIENTMESSAGERATE", "1")],
    );

    smtp_traffic(mx_port, sub_port);
    // the SMTP message's delivery goes to a rotated file (multilog rotates on ALRM)
    wait_count(&send_main, "end msg ", 1);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(send_log.id() as i32),
        nix::sys::signal::Signal::SIGALRM,
    )
    .unwrap();
    wait_until("a rotated qmail-send log", 30, || {
        (!rotated(&send_main).is_empty()).then_some(())
    });
    let msg = b"Subject: queued\n\nbody\n";
    assert_eq!(
        sys.queue("sales@example.test", &["nosuchuser@example.test"], msg),
        0
    );
    assert_eq!(
        sys.queue("sales@example.test", &["slow@example.test"], msg),
        0
    );
    assert_eq!(sys.queue("sales@example.test", &["bob@far.test"], msg), 0);
    // the SMTP message, the bounced one, its bounce and the remote one end; the deferred
    // one waits for its retry (100 s after its first try): stop before that
    wait_count(&send_main, "end msg ", 3);
    wait_count(&send_main, ": deferral: ", 1);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(send.0.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert!(wait_exit(&mut send.0, 60), "qmail-send did not stop");
    drop(mx);
    drop(sub);
    for log in [&mut send_log, &mut smtpd_log, &mut sub_log] {
        assert!(
            wait_exit(log, 30),
            "multilog did not finish at end of input"
        );
    }
    let send_text = all_lines(&send_main);
    assert_eq!(send_text.matches(": deferral: ").count(), 1, "{send_text}");
    let bytes: u64 = send_text
        .lines()
        .filter_map(|l| {
            l.split_once(": bytes ")?
                .1
                .split(' ')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum();
    let smtpd_text = current(&smtpd_main) + &current(&sub_main);

    // text, from the default log directories
    let run = |args: &[&str]| {
        let o = Command::new(sys.bin("qmail-stats"))
            .args(args)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout).unwrap()
    };
    let text = run(&[]);
    for line in [
        "messages received: 5\n".to_string(),
        format!("bytes received: {bytes}\n"),
        "deliveries: 3 (local 2, remote 1)\n".into(),
        "bounced recipients: 1\n".into(),
        "deferrals: 1\n".into(),
        "bounce messages: 1\n".into(),
        "messages accepted by SMTP: 1\n".into(),
        "SMTP refusals: 8\n".into(),
        "(4 messages)\n".into(),
    ] {
        assert!(
            text.contains(&line),
            "{line:?} missing in:\n{text}\n{send_text}\n{smtpd_text}"
        );
    }

    // nothing since now
    let none = run(&["--since", "0s"]);
    assert!(
        none.contains("messages received: 0\n") && none.contains("SMTP refusals: 0\n"),
        "{none}"
    );

    // JSON, from the directories named, read by Python
    let dirs: Vec<String> = [&send_main, &smtpd_main, &sub_main]
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    let mut args = vec!["--json", "--since", "1d"];
    args.extend(dirs.iter().map(String::as_str));
    let json = run(&args);
    let script = r#"
import json, sys
d = json.load(sys.stdin)
r = d["refusals"]["by_reason"]
dom = {x["domain"]: x["count"] for x in d["top_remote_domains"]}
snd = {x["address"]: x["count"] for x in d["top_senders"]}
rcp = {x["address"]: x["count"] for x in d["top_recipients"]}
cli = {x["client"]: x["count"] for x in d["refusals"]["by_client"]}
print(d["received"], d["bytes"], d["delivered"]["local"], d["delivered"]["remote"],
      d["bounced"], d["deferred"], d["bounce_messages"], d["smtp_accepted"],
      d["delay_seconds"]["count"], d["refusals"]["total"])
print(r["relay"], r["unknown recipient"], r["badmailfrom"], r["virus"],
      r["auth failure"], r["auth required"], r["rate limit"], r["spam"], r["dmarc"])
print(dom.get("far.test"), snd.get(sys.argv[1]), snd.get("sales@example.test"),
      rcp.get("sales@example.test"), cli.get("127.0.0.1"))
print(len(d["deferrals_by_reason"]), len(d["bounces_by_reason"]), len(d["hours"]),
      sum(h["received"] for h in d["hours"]), sum(h["refused"] for h in d["hours"]),
      sum(d["content_filter"]["verdicts"].values()))
"#;
    let (ok, out) = python_stdin(script, &[HOSTILE_LOGGED], &json);
    assert!(ok, "{out}\n{json}");
    let hours: usize = out
        .lines()
        .nth(3)
        .unwrap()
        .split(' ')
        .nth(2)
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        out,
        format!("5 {bytes} 2 1 1 1 1 1 4 8\n2 1 1 1 1 1 1 0 0\n1 1 3 2 8\n1 1 {hours} 5 8 0\n"),
        "{json}"
    );

    // the page, opened in Chromium
    let page = tmp.join("stats.html");
    let page_s = page.display().to_string();
    run(&["--html", &page_s]);
    let html = std::fs::read_to_string(&page).unwrap();
    for banned in ["<script", "src=", "href=", "url(", "@import", "<b>"] {
        assert!(!html.contains(banned), "{banned} in the page");
    }
    let (dom, log) = chromium(&tmp, &page, &["--dump-dom"]);
    let console: Vec<&str> = log.lines().filter(|l| l.contains(":CONSOLE")).collect();
    assert!(console.is_empty(), "console messages: {console:?}");
    assert!(dom.contains("<h1>Mail statistics</h1>"), "{dom}");
    assert!(!dom.contains("<b>") && !dom.contains("<script"), "{dom}");
    assert!(dom.contains("<td>a&lt;b&gt;&amp;c@far.test</td>"), "{dom}");
    let hourly = section(&dom, "hourly");
    assert!(hourly.contains("<svg"), "{hourly}");
    assert_eq!(hourly.matches("<circle").count(), 5 * hours, "{hourly}");
    let refusals = section(&dom, "refusals");
    for label in [
        "relay",
        "badmailfrom",
        "unknown recipient",
        "virus",
        "auth failure",
        "auth required",
        "rate limit",
    ] {
        assert!(
            refusals.contains(&format!("\n{label}\n</text>")),
            "{label}: {refusals}"
        );
    }
    // the background and one bar per reason seen: relay's twice as high as the others
    let heights: Vec<f64> = refusals
        .split("<rect")
        .skip(2)
        .map(|r| {
            let h = r
                .split("height=\"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap();
            h.parse().unwrap()
        })
        .collect();
    assert_eq!(heights.len(), 7, "{refusals}");
    let low = heights.iter().copied().fold(f64::MAX, f64::min);
    assert!(low > 0.0, "{heights:?}");
    assert_eq!(
        heights.iter().filter(|h| (*h - low).abs() < 1.5).count(),
        6,
        "{heights:?}"
    );
    assert_eq!(
        heights
            .iter()
            .filter(|h| (*h - 2.0 * low).abs() < 3.0)
            .count(),
        1,
        "{heights:?}"
    );
    let outcomes = section(&dom, "outcomes");
    for label in ["local", "remote", "bounced", "deferred"] {
        assert!(
            outcomes.contains(&format!("\n{label}\n</text>")),
            "{label}: {outcomes}"
        );
    }
    let shot = tmp.join("stats.png");
    let (_, log) = chromium(
        &tmp,
        &page,
        &[
            "--window-size=1000,2400",
            &format!("--screenshot={}", shot.display()),
        ],
    );
    let console: Vec<&str> = log.lines().filter(|l| l.contains(":CONSOLE")).collect();
    assert!(console.is_empty(), "console messages: {console:?}");
    let png = std::fs::read(&shot).expect("a screenshot");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{} bytes",
        png.len()
    );
}

/// Python `script` with `args`, `input` on stdin: (success, stdout + stderr).
fn python_stdin(script: &str, args: &[&str], input: &str) -> (bool, String) {
    let o = output_with_input(
        Command::new("/usr/bin/python3")
            .arg("-c")
            .arg(script)
            .args(args),
        input,
    );
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr),
    )
}
