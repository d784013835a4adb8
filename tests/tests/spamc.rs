//! Spam scoring of issue 16 ("Proven by tests") through one installed system and a real
//! spamd: Debian's spamd started through the installed qmail-spamd run script (on the
//! unix socket HOME/spamd/spamd.sock, group nofiles, `-L`, Bayes thresholds lowered in
//! the test's control/spamassassin.cf only: wave2.md 3.3), control/filters naming
//! qmail-spamc, qmail-smtpd under our tcpserver as qmaild, Python's smtplib as the
//! client, qmail-send delivering, `sendmail` run by a local user for the reports, and
//! the `~alias/.qmail-learn-*` files the installer wrote running qmail-spamlearn.
//!
//! What is learnt is read from the Bayes database itself (`sa-learn --dump magic`:
//! nspam, nham); scores from the X-Spam-Status field of delivered copies. Needs root,
//! spamd and python3.

mod smtpd_common;

use e2e::*;
use smtpd_common::*;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

const INBOX_RCPT: &str = "postmaster@example.test";
const REPORTER: &str = "spamjoe";

const GTUBE: &str = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X";

/// The test's SpamAssassin site configuration (wave2.md 3.3): Bayes scores after one
/// spam and one ham (defaults 200/200), no auto-learning, no network.
const SA_CONFIG: &str = "required_score 5.0\nreport_safe 0\nuse_bayes 1\nbayes_auto_learn 0\n\
bayes_min_ham_num 1\nbayes_min_spam_num 1\nbayes_file_mode 0666\n";

/// Debian's spamd, started by the installed run script (in its own process group).
struct Spamd {
    child: Option<Child>,
    socket: PathBuf,
    log: PathBuf,
}

impl Spamd {
    fn start(sys: &System) -> Spamd {
        let dir = sys.root.join("supervise/qmail-spamd");
        let log = sys.root.parent().unwrap().join("spamd.log");
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(dir.join("run"))
            .current_dir(&dir)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .stdin(Stdio::null())
            .stdout(Stdio::from(out.try_clone().unwrap()))
            .stderr(Stdio::from(out))
            .process_group(0)
            .spawn()
            .expect("run supervise/qmail-spamd/run");
        let s = Spamd {
            child: Some(child),
            socket: sys.root.join("spamd/spamd.sock"),
            log,
        };
        // start-up takes a second or more (rules are compiled): wait for its answer
        wait_until("spamd answering PING", 180, || s.pong().then_some(()));
        s
    }

    fn pong(&self) -> bool {
        let Ok(mut c) = UnixStream::connect(&self.socket) else {
            return false;
        };
        let _ = c.set_read_timeout(Some(std::time::Duration::from_secs(10)));
        let _ = c.write_all(b"PING SPAMC/1.5\r\n\r\n");
        let mut r = String::new();
        let _ = c.read_to_string(&mut r);
        r.contains("PONG")
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// TERM the whole group (spamd stops its children), then wait.
    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let pg = nix::unistd::Pid::from_raw(c.id() as i32);
            let _ = nix::sys::signal::killpg(pg, nix::sys::signal::Signal::SIGTERM);
            let waited = wait_until_opt(60, || c.try_wait().ok().flatten());
            if waited.is_none() {
                let _ = nix::sys::signal::killpg(pg, nix::sys::signal::Signal::SIGKILL);
                let _ = c.wait();
            }
        }
    }
}

impl Drop for Spamd {
    fn drop(&mut self) {
        self.stop();
    }
}

fn wait_until_opt<T>(secs: u64, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if std::time::Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// (nspam, nham) of the Bayes database, as spamd's user reads it.
fn bayes_counts(sys: &System) -> (u64, u64) {
    let out = Command::new("runuser")
        .args(["-u", "debian-spamd", "--", "sa-learn"])
        .arg(format!(
            "--siteconfigpath={}",
            sys.root.join("spamd/etc").display()
        ))
        .args(["--dump", "magic"])
        .output()
        .expect("sa-learn");
    let text = String::from_utf8_lossy(&out.stdout);
    let count = |what: &str| {
        text.lines()
            .find(|l| l.ends_with(&format!("non-token data: {what}")))
            .and_then(|l| l.split_whitespace().nth(2))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    (count("nspam"), count("nham"))
}

struct Bench {
    sys: System,
    smtpd: SmtpServer,
    scratch: PathBuf,
    inbox: PathBuf,
}

impl Bench {
    /// What smtplib hears for `message` from `from` to `rcpt`.
    fn send(&self, from: &str, rcpt: &str, message: &str) -> String {
        let path = self.scratch.join("message");
        std::fs::write(&path, message).unwrap();
        let port = self.smtpd.port.to_string();
        let (ok, out) = python(SMTPLIB_SEND, &[&port, from, rcpt, path_str(&path)]);
        assert!(ok, "smtplib: {out}\n{}", self.smtpd.log_text());
        out.trim().to_string()
    }

    /// Send `message` to the inbox and return the delivered copy.
    fn deliver(&self, message: &str) -> String {
        let before = maildir_new(&self.inbox);
        let got = self.send("sender@elsewhere.test", INBOX_RCPT, message);
        assert_eq!(got, "250", "{}", self.smtpd.log_text());
        let path = wait_until("the delivered copy", 60, || {
            maildir_new(&self.inbox)
                .into_iter()
                .find(|p| !before.contains(p))
        });
        std::fs::read_to_string(path).unwrap()
    }

    /// `sendmail RCPT` run by the local reporter with `message` on stdin.
    fn report(&self, rcpt: &str, message: &str) {
        let out = self
            .sys
            .run_as(Some(REPORTER), "sendmail", &[rcpt], message.as_bytes());
        assert!(out.status.success(), "sendmail: {out:?}");
    }
}

/// The score in the first X-Spam-Status field of a delivered message.
fn score_of(delivered: &str) -> f64 {
    let status = delivered
        .lines()
        .find(|l| l.starts_with("X-Spam-Status:"))
        .unwrap_or_else(|| panic!("no X-Spam-Status in\n{delivered}"));
    status
        .split_whitespace()
        .find_map(|w| w.strip_prefix("score="))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no score in {status}"))
}

fn spam(i: usize) -> String {
    format!(
        "From: winner{i}@lottery.test\nTo: {REPORTER}@example.test\nSubject: Cheap pills winner {i}\n\
         Message-ID: <spam{i}@lottery.test>\nDate: Sun, 6 Dec 2026 05:00:0{i} +0000\n\n\
         Congratulations winner! Buy cheap viagra pills now, limited offer, click here to claim\n\
         your lottery prize money {i} today. Casino bonus, free credit, act now. Unsubscribe.\n"
    )
}

fn ham(i: usize) -> String {
    format!(
        "From: colleague{i}@example.test\nTo: {REPORTER}@example.test\nSubject: Project meeting notes {i}\n\
         Message-ID: <ham{i}@example.test>\nDate: Sun, 6 Dec 2026 05:00:0{i} +0000\n\n\
         Hi team, the agenda for the quarterly project review meeting on Tuesday: budget,\n\
         schedule, and the design document draft number {i}. Please read it first. Regards, Anna\n"
    )
}

/// `message` forwarded as an attachment (message/rfc822) by the reporter.
fn forwarded(rcpt: &str, message: &str) -> String {
    format!(
        "From: {REPORTER}@example.test\nTo: {rcpt}\nSubject: Fwd: report\nMIME-Version: 1.0\n\
         Content-Type: multipart/mixed; boundary=\"rep\"\n\n--rep\nContent-Type: text/plain\n\n\
         see the attached message\n--rep\nContent-Type: message/rfc822\n\n{message}\n--rep--\n"
    )
}

const PROBE: &str = "From: prizes@lottery.test\nTo: postmaster@example.test\nSubject: Winner cheap pills offer\n\
Message-ID: <probe@lottery.test>\nDate: Sun, 6 Dec 2026 06:00:00 +0000\n\n\
Congratulations winner! Cheap viagra pills, claim your lottery prize money, click here now.\n\
Limited offer, casino bonus and free credit. Act now.\n";

const NORMAL: &str = "From: sender@elsewhere.test\nTo: postmaster@example.test\nSubject: lunch\n\
Message-ID: <lunch@elsewhere.test>\nDate: Sun, 6 Dec 2026 05:30:00 +0000\n\
X-Spam-Flag: YES\nX-Spam-Status: Yes, score=99.0 forged\n\n\
Shall we have lunch at noon on Thursday? The usual place.\n";

fn wait_learnt(sys: &System, want: (u64, u64)) {
    wait_until(&format!("Bayes counts {want:?}"), 120, || {
        (bayes_counts(sys) == want).then_some(())
    });
}

#[test]
fn spam_scoring_refusal_learning_and_spamd_down() {
    need_root!();
    need_tool!("spamd", "spamd");
    need_tool!("sa-learn", "spamassassin");
    need_tool!("/usr/bin/python3", "python3");
    if nix::unistd::User::from_name("debian-spamd")
        .ok()
        .flatten()
        .is_none()
    {
        skip("no user debian-spamd (apt-get install spamd)");
        return;
    }
    let mut sys = system();
    let (reporter_uid, reporter_home) = local_user(REPORTER);
    let scratch = sys.root.parent().unwrap().join("scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    assert!(
        sys.bin("qmail-spamc").exists() && sys.bin("qmail-spamlearn").exists(),
        "the installer puts qmail-spamc and qmail-spamlearn in HOME/bin"
    );
    let learn_spam = std::fs::read_to_string(sys.root.join("alias/.qmail-learn-spam")).unwrap();
    assert!(
        learn_spam.ends_with("/bin/qmail-spamlearn deliver spam\n"),
        "{learn_spam}"
    );
    sys.control("filters", "qmail-spamc\n");
    let socket = sys.root.join("spamd/spamd.sock");
    sys.control("spamd", &format!("{}\n", socket.display()));
    sys.control("spamreject", "20\n");
    sys.control("spamdnetwork", "0\n");
    sys.control("spamassassin.cf", SA_CONFIG);
    let mut spamd = Spamd::start(&sys);
    assert!(
        spamd.log_text().contains("qmail-spamd: starting spamd on"),
        "{}",
        spamd.log_text()
    );
    sys.start();
    let smtpd = SmtpServer::start(&sys, &[], &[]);
    let b = Bench {
        inbox: sys.root.join("alias/Maildir"),
        sys,
        smtpd,
        scratch,
    };

    // --- GTUBE: 554 with the score, nothing queued ---
    let gtube = format!(
        "From: sender@elsewhere.test\nTo: {INBOX_RCPT}\nSubject: gtube\nMessage-ID: <g@elsewhere.test>\n\n{GTUBE}\n"
    );
    let got = b.send("sender@elsewhere.test", INBOX_RCPT, &gtube);
    // GTUBE is 1000 points, plus whatever else the message hits
    assert!(
        got.starts_with("554 5.7.1 message refused as spam: score 10") && got.contains("limit 20"),
        "{got}\n{}",
        b.smtpd.log_text()
    );
    assert_eq!(queued(&b.sys), 0, "GTUBE was queued");
    let log = b.smtpd.log_text();
    let line = log
        .lines()
        .find(|l| l.starts_with("qmail-spamc: refuse score=10"))
        .unwrap_or_else(|| panic!("no refuse line:\n{log}"));
    assert!(
        line.contains("GTUBE") && line.contains("client=remote"),
        "{line}"
    );

    // --- a normal message: delivered with X-Spam-Status: No; forged fields gone ---
    let normal = b.deliver(NORMAL);
    assert!(normal.contains("\nX-Spam-Status: No, score="), "{normal}");
    assert!(!normal.contains("X-Spam-Flag: YES"), "{normal}");
    assert!(!normal.contains("forged"), "{normal}");
    assert_eq!(normal.matches("X-Spam-Status:").count(), 1, "{normal}");

    // --- the probe's score before any learning ---
    let before = score_of(&b.deliver(PROBE));
    assert_eq!(bayes_counts(&b.sys), (0, 0));

    // --- an outsider's report, with a forged reporter field: nothing learnt ---
    let outsider = forwarded("learn-spam@example.test", &spam(9)).replacen(
        "Subject: Fwd: report\n",
        "Subject: Fwd: report\nX-Qmail-Spam-Reporter: local\n",
        1,
    );
    let outsider = outsider.replacen(
        &format!("From: {REPORTER}@example.test"),
        "From: sender@elsewhere.test",
        1,
    );
    assert_eq!(
        b.send(
            "sender@elsewhere.test",
            "learn-spam@example.test",
            &outsider
        ),
        "250"
    );
    b.sys.wait_log(
        "qmail-spamlearn:_ignored:_not_from_a_local_or_authenticated_sender",
        60,
    );
    assert_eq!(bayes_counts(&b.sys), (0, 0), "the outsider taught spamd");
    // no answer to the outsider: nothing is queued back
    wait_until("queue empty", 30, || (queued(&b.sys) == 0).then_some(()));

    // --- five spam and five ham reported by a local user: forwarded or bounced ---
    for i in 0..5 {
        if i % 2 == 0 {
            b.report(
                "learn-spam@example.test",
                &forwarded("learn-spam@example.test", &spam(i)),
            );
            b.report(
                "learn-ham@example.test",
                &forwarded("learn-ham@example.test", &ham(i)),
            );
        } else {
            // bounced as is: the original message, resent
            let resent = format!("Resent-From: {REPORTER}@example.test\n");
            b.report("learn-spam@example.test", &format!("{resent}{}", spam(i)));
            b.report("learn-ham@example.test", &format!("{resent}{}", ham(i)));
        }
    }
    b.sys
        .wait_log_count("qmail-spamlearn:_learnt_1_of_1_as_spam_from_local", 5, 120);
    b.sys
        .wait_log_count("qmail-spamlearn:_learnt_1_of_1_as_ham_from_local", 5, 120);
    wait_learnt(&b.sys, (5, 5));

    // --- the same probe, the same spamd: a higher score, Bayes says spam ---
    let after_copy = b.deliver(PROBE);
    let after = score_of(&after_copy);
    assert!(
        after > before,
        "score before {before}, after {after}:\n{after_copy}"
    );
    assert!(after_copy.contains("BAYES_"), "{after_copy}");

    // --- the Junk folder command learns (as the user), and a ham folder ---
    let junk = reporter_home.join("Maildir/.Junk");
    for sub in ["", "cur", "new", "tmp"] {
        std::fs::create_dir_all(junk.join(sub)).unwrap();
        nix::unistd::chown(
            &junk.join(sub),
            Some(nix::unistd::Uid::from_raw(reporter_uid)),
            None,
        )
        .unwrap();
    }
    write_owned(&junk.join("new/1.junk.host"), &spam(7), reporter_uid);
    let out = b
        .sys
        .run_as(None, "qmail-spamlearn", &["junk", REPORTER], b"");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(text.contains("learnt 1 of 1 as spam"), "{text}");
    let hamdir = b.scratch.join("hamfolder");
    for sub in ["", "cur", "new", "tmp"] {
        std::fs::create_dir_all(hamdir.join(sub)).unwrap();
    }
    std::fs::write(hamdir.join("cur/1.ham.host:2,S"), ham(7)).unwrap();
    let out = b
        .sys
        .run_as(None, "qmail-spamlearn", &["ham", path_str(&hamdir)], b"");
    assert!(out.status.success(), "{out:?}");
    wait_learnt(&b.sys, (6, 6));

    // --- a report by an authenticated user through submission is believed too ---
    let cp = test_checkpassword(&b.sys);
    let sub = SmtpServer::start(
        &b.sys,
        &["--submission", path_str(&cp), "/bin/true"],
        &[("AUTHPLAINTEXT", "")],
    );
    let report = forwarded("learn-spam@example.test", &spam(8)).replacen(
        &format!("From: {REPORTER}@"),
        "From: joe@",
        1,
    );
    let path = b.scratch.join("auth-report");
    std::fs::write(&path, report).unwrap();
    let port = sub.port.to_string();
    let (ok, out) = python(
        SMTPLIB_SEND,
        &[
            &port,
            "joe@example.test",
            "learn-spam@example.test",
            path_str(&path),
            "joe",
            "secret",
        ],
    );
    assert!(ok && out.trim() == "250", "{out}\n{}", sub.log_text());
    b.sys.wait_log(
        "qmail-spamlearn:_learnt_1_of_1_as_spam_from_auth\\075joe",
        60,
    );
    wait_learnt(&b.sys, (7, 6));

    // --- over spamsizelimit: not scored, copied through whole (a body beyond the 1 MiB
    // qmail-spamc reads), forged fields still removed ---
    b.sys.control("spamsizelimit", "2000\n");
    let line = "The quick brown fox jumps over the lazy dog, again and again and again.\n";
    let body = line.repeat(1_300_000 / line.len());
    let big = NORMAL
        .replacen("Subject: lunch", "Subject: big", 1)
        .replacen(
            "Shall we have lunch at noon on Thursday? The usual place.\n",
            &body,
            1,
        );
    let copy = b.deliver(&big);
    assert!(
        copy.ends_with(&format!("\n\n{body}")),
        "the big body changed"
    );
    assert!(
        !copy.contains("X-Spam-"),
        "{}",
        &copy[..copy.len().min(2000)]
    );
    assert!(
        b.smtpd
            .log_text()
            .contains("qmail-spamc: skip toolarge client=remote"),
        "{}",
        b.smtpd.log_text()
    );
    std::fs::remove_file(b.sys.root.join("control/spamsizelimit")).unwrap();

    // --- a spamd that never answers: unscored after control/spamtimeout ---
    let mute = b.sys.root.parent().unwrap().join("mute.sock");
    let listener = std::os::unix::net::UnixListener::bind(&mute).unwrap();
    std::fs::set_permissions(&mute, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let held = std::thread::spawn(move || {
        // accept and hold the connection, never answering
        let c = listener.accept().map(|(c, _)| c);
        std::thread::sleep(std::time::Duration::from_secs(8));
        drop(c);
    });
    b.sys.control("spamd", &format!("{}\n", mute.display()));
    b.sys.control("spamtimeout", "2\n");
    let slow = b.deliver(NORMAL);
    assert!(!slow.contains("X-Spam-"), "{slow}");
    assert!(
        b.smtpd.log_text().contains("timed\\040out"),
        "{}",
        b.smtpd.log_text()
    );
    held.join().unwrap();
    b.sys.control("spamd", &format!("{}\n", socket.display()));

    // --- spamd stopped: delivered unscored, and the log says so ---
    spamd.stop();
    let unscored = b.deliver(NORMAL);
    assert!(!unscored.contains("X-Spam-Status"), "{unscored}");
    assert!(!unscored.contains("X-Spam-Flag"), "{unscored}");
    assert!(
        b.smtpd.log_text().contains("qmail-spamc: unscored spamd="),
        "{}",
        b.smtpd.log_text()
    );
}

/// The qmail-spamd service is installed but off: linking all services leaves it out,
/// and the one documented command links it; qmailctl then lists it.
#[test]
fn the_spamd_service_is_off_until_linked_by_name() {
    let sys = System::install("mx.example.test", &[]);
    let run = sys.root.join("supervise/qmail-spamd/run");
    let log_run = sys.root.join("supervise/qmail-spamd/log/run");
    assert!(run.is_file() && log_run.is_file());
    let cf = std::fs::read_to_string(sys.root.join("control/spamassassin.cf")).unwrap();
    assert!(cf.contains("use_bayes 1"), "{cf}");
    let svdir = sys.root.parent().unwrap().join("service");
    let link = |extra: &[&str]| {
        let st = Command::new(sys.bin("qmail-install"))
            .arg("--root")
            .arg(&sys.root)
            .arg("--link-services")
            .arg(&svdir)
            .args(extra)
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success());
    };
    link(&[]);
    assert!(svdir.join("qmail-smtpd").exists());
    assert!(
        !svdir.join("qmail-spamd").exists(),
        "spamd linked by default"
    );
    link(&["--service", "qmail-spamd"]);
    assert_eq!(
        std::fs::read_link(svdir.join("qmail-spamd")).unwrap(),
        sys.root.join("supervise/qmail-spamd")
    );
    // qmailctl acts on it now (no svscan here: it says supervise is not running)
    let out = Command::new(sys.bin("qmailctl"))
        .arg("-s")
        .arg(&svdir)
        .arg("stat")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("qmail-spamd"), "{text}");
}
