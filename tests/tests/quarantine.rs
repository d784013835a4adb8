//! End-to-end tests of the quarantine (issue 14): a message stored with
//! `quarantine::store` into an installation's HOME/quarantine, then the administrator's
//! `qmail-quarantine list`, `show`, `release` (delivered by the running qmail-send to the
//! original local recipient, bypassing `$QMAILQUEUE`) and `delete`, and links planted in
//! the quarantine refused.
//!
//! Needs root (a local user, qmail-send); skips otherwise.

use e2e::*;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const ME: &str = "mx.example.test";
const DOMAIN: &str = "example.test";

/// HOME/quarantine as the installer makes it (a Maildir, mode 0700), made here while
/// the installer does not, and HOME/bin/qmail-quarantine likewise.
fn quarantine_dir(sys: &System) -> PathBuf {
    let q = quarantine::dir(&sys.root);
    for sub in ["", "tmp", "new", "cur"] {
        let d = q.join(sub);
        if !d.is_dir() {
            std::fs::create_dir(&d).unwrap();
            std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700)).unwrap();
        }
    }
    let prog = sys.bin("qmail-quarantine");
    if !prog.exists() {
        std::fs::copy(build_dir().join("qmail-quarantine"), &prog).unwrap();
        std::fs::set_permissions(&prog, std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    q
}

/// Run `qmail-quarantine ARGS` of the installation with `QMAILQUEUE` pointing at a
/// program that refuses everything (a release must not use it).
fn qq(sys: &System, args: &[&str]) -> Output {
    Command::new(sys.bin("qmail-quarantine"))
        .args(args)
        .env("QMAILQUEUE", "/bin/false")
        .output()
        .expect("run qmail-quarantine")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn id_of(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

fn reason(rcpt: &str) -> quarantine::Reason {
    quarantine::Reason {
        rule: "Virus-Subject: .*invoice.*".into(),
        remark: "invoice lure".into(),
        sender: "sender@example.org".into(),
        recipients: vec![rcpt.into()],
        client_ip: "192.0.2.7".into(),
        helo: "mx.example.org\r\nX-Forged: 1".into(),
    }
}

#[test]
fn list_show_release_delete() {
    need_root!();
    let (_, home) = local_user("qtquar");
    let mut sys = System::install(ME, &[DOMAIN]);
    let q = quarantine_dir(&sys);
    sys.start();
    let rcpt = "qtquar@example.test";
    let msg = b"From: sender@example.org\nTo: qtquar@example.test\nSubject: your invoice\n\nopen the attachment\n";
    let stored = quarantine::store(&q, msg, &reason(rcpt)).unwrap();
    let id = id_of(&stored);

    let out = qq(&sys, &["list"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let list = text(&out.stdout);
    assert!(list.starts_with(&format!("{id}  ")), "{list}");
    let size = format!("  {} bytes\n", msg.len());
    for want in [
        size.as_str(),
        "  rule: Virus-Subject: .*invoice.* (invoice lure)\n",
        "  from: <sender@example.org>  client: 192.0.2.7  helo: mx.example.org\\x0d\\x0aX-Forged: 1\n",
        "  to: <qtquar@example.test>\n",
    ] {
        assert!(list.contains(want), "{want:?} in\n{list}");
    }

    let out = qq(&sys, &["show", &id]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    assert!(
        shown.starts_with("X-Quarantine-Rule: Virus-Subject: .*invoice.*\n"),
        "{shown}"
    );
    assert!(
        shown.contains("X-Quarantine-Remark: invoice lure\n"),
        "{shown}"
    );
    assert!(
        shown.ends_with("Subject: your invoice\n\nopen the attachment\n"),
        "{shown}"
    );

    // release: delivered to the original recipient, although $QMAILQUEUE refuses all
    let out = qq(&sys, &["release", &id]);
    assert!(out.status.success(), "release: {}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        format!("{id}: queued for 1 recipient(s)\n")
    );
    let got = wait_maildir(&home.join("Maildir"), 1, 30);
    assert!(
        got[0].contains("Return-Path: <sender@example.org>\n"),
        "{}",
        got[0]
    );
    assert!(
        got[0].contains("Delivered-To: qtquar@example.test\n"),
        "{}",
        got[0]
    );
    assert!(
        got[0].ends_with("Subject: your invoice\n\nopen the attachment\n"),
        "{}",
        got[0]
    );
    assert!(!got[0].contains("X-Quarantine-"), "{}", got[0]);
    assert!(!got[0].contains("X-Forged"), "{}", got[0]);
    assert!(!stored.exists(), "the copy is removed after queueing");
    let out = qq(&sys, &["release", &id]);
    assert_eq!(
        out.status.code(),
        Some(100),
        "a second release finds nothing"
    );
    assert!(text(&out.stderr).starts_with("qmail-quarantine: fatal: no message "));

    // delete
    let other = quarantine::store(&q, msg, &reason(rcpt)).unwrap();
    let out = qq(&sys, &["delete", &id_of(&other)]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!other.exists());
    let out = qq(&sys, &["list"]);
    assert!(
        out.status.success() && out.stdout.is_empty(),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(wait_maildir(&home.join("Maildir"), 1, 1).len(), 1);
}

#[test]
fn planted_links_and_bad_ids_are_refused() {
    need_root!();
    let sys = System::install(ME, &[DOMAIN]);
    let q = quarantine_dir(&sys);
    let secret = sys.root.join("control/secret");
    std::fs::write(&secret, "the root's secret\n").unwrap();
    std::os::unix::fs::symlink(&secret, q.join("new/planted")).unwrap();
    // a quarantined message that names the link's target would make no difference
    let good = quarantine::store(&q, b"Subject: x\n\n", &reason("a@example.test")).unwrap();

    for cmd in ["show", "release", "delete"] {
        let out = qq(&sys, &[cmd, "planted"]);
        assert_eq!(out.status.code(), Some(100), "{cmd}: {}", text(&out.stderr));
        assert!(out.stdout.is_empty(), "{cmd} printed {}", text(&out.stdout));
        let err = text(&out.stderr);
        assert!(
            err.contains("refusing") && err.contains("symbolic link"),
            "{cmd}: {err}"
        );
    }
    assert!(q.join("new/planted").symlink_metadata().is_ok());
    assert_eq!(std::fs::read(&secret).unwrap(), b"the root's secret\n");

    let out = qq(&sys, &["list"]);
    assert!(out.status.success());
    assert!(
        text(&out.stdout).starts_with(&id_of(&good)),
        "{}",
        text(&out.stdout)
    );
    assert!(!text(&out.stdout).contains("planted"));
    assert!(
        text(&out.stderr).contains("planted"),
        "{}",
        text(&out.stderr)
    );

    for bad in ["../control/secret", ".planted", "new/planted", ""] {
        let out = qq(&sys, &["show", bad]);
        assert_eq!(out.status.code(), Some(100), "{bad}");
        assert!(
            text(&out.stderr).contains("not a quarantine ID"),
            "{bad}: {}",
            text(&out.stderr)
        );
    }
    for usage in [
        &[][..],
        &["list", "x"][..],
        &["show"][..],
        &["purge", "x"][..],
    ] {
        let out = qq(&sys, usage);
        assert_eq!(out.status.code(), Some(100), "{usage:?}");
        assert!(text(&out.stderr).contains("usage:"), "{usage:?}");
    }

    // new/ itself replaced by a link
    std::fs::rename(q.join("new"), q.join("new.old")).unwrap();
    std::os::unix::fs::symlink(sys.root.join("control"), q.join("new")).unwrap();
    let out = qq(&sys, &["list"]);
    assert_eq!(out.status.code(), Some(100), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("refusing"),
        "{}",
        text(&out.stderr)
    );
}
