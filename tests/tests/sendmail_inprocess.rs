//! End to end: `sendmail` does qmail-inject's work itself (issue 13) instead of exec'ing
//! HOME/bin/qmail-inject. An installation without qmail-inject still queues through
//! sendmail; the queue program ($QMAILQUEUE here) is started by sendmail itself and sees
//! the environment an exec'ed qmail-inject passed on (`-f` and `-F`'s changes), and the
//! header is rewritten as qmail-inject does it.
//! Needs `cargo build --bins -p sendmail` first.

use e2e::{build_dir, output_with_input};
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

#[test]
fn sendmail_queues_without_a_qmail_inject_program() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    std::fs::create_dir_all(h.join("bin")).unwrap();
    std::fs::create_dir_all(h.join("control")).unwrap();
    let src = build_dir().join("sendmail");
    assert!(src.is_file(), "run `cargo build --bins -p sendmail` first");
    std::fs::copy(&src, h.join("bin/sendmail")).unwrap();
    for (f, v) in [("me", "mx.example.org"), ("defaultdomain", "example.org")] {
        std::fs::write(h.join("control").join(f), format!("{v}\n")).unwrap();
    }
    // The queue program records who started it, its environment, message and envelope.
    let qq = h.join("qq");
    std::fs::write(
        &qq,
        format!(
            "#!/bin/sh\nd={}\nreadlink /proc/$PPID/exe > $d/parent\nenv > $d/env\ncat > $d/message\ncat <&1 > $d/envelope\nexit 0\n",
            h.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&qq, std::fs::Permissions::from_mode(0o755)).unwrap();

    let out = output_with_input(
        Command::new(h.join("bin/sendmail"))
            .args(["-t", "-i", "-f", "me@x.org", "-F", "Joe Q"])
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("USER", "tester")
            .env("NAME", "Someone Else")
            .env("QMAILQUEUE", &qq),
        b"To: a@example.org\nBcc: b\nSubject: s\n\nbody\n",
    );
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    let read = |n: &str| std::fs::read_to_string(h.join(n)).unwrap();
    assert_eq!(
        read("parent").trim(),
        h.join("bin/sendmail").to_str().unwrap()
    );
    let env = read("env");
    for want in [
        "QMAILUSER=me",
        "QMAILHOST=x.org",
        "MAILNAME=Joe Q",
        "USER=tester",
    ] {
        assert!(env.lines().any(|l| l == want), "{want} missing:\n{env}");
    }
    assert!(!env.lines().any(|l| l.starts_with("NAME=")), "{env}");
    let message = read("message");
    assert!(
        message.contains("From: \"Joe Q\" <me@x.org>\n"),
        "{message}"
    );
    assert!(!message.contains("Bcc:"), "{message}");
    assert!(message.ends_with("\n\nbody\n"), "{message}");
    assert_eq!(
        read("envelope"),
        "Fme@x.org\0Ta@example.org\0Tb@mx.example.org\0\0"
    );
}
