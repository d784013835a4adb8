//! The clamd harness (tests/src/clamd.rs) itself: a real clamd with our own EICAR
//! database answers PING, finds EICAR (raw and in a message) and passes clean data,
//! and comes back on the same socket after a stop. Skips when clamd is not installed.

use e2e::clamd::{Clamd, EICAR, EICAR_NAME};
use std::os::unix::fs::PermissionsExt;

#[test]
fn clamd_answers_ping_finds_eicar_and_comes_back() {
    let Some(mut clamd) = Clamd::start_or_skip() else {
        return;
    };
    let mode = std::fs::metadata(clamd.socket())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o666, "qmailf must be able to connect");
    if e2e::is_root() && e2e::find_tool("runuser").is_some() {
        // an unprivileged user (the filters run as qmailf) reaches the socket
        let ping = "import socket,sys; s=socket.socket(socket.AF_UNIX); \
                    s.connect(sys.argv[1]); s.sendall(b'zPING\\0'); print(s.recv(16))";
        let out = std::process::Command::new("runuser")
            .args(["-u", "nobody", "--", "/usr/bin/python3", "-c", ping])
            .arg(clamd.socket())
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "b'PONG\\x00'\n",
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let v = clamd.scan(EICAR).unwrap();
    assert!(v.starts_with(&format!("stream: {EICAR_NAME}")), "{v}");
    assert!(v.ends_with(" FOUND"), "{v}");
    let mail = format!(
        "Subject: x\nContent-Type: text/plain\n\n{}\n",
        String::from_utf8_lossy(EICAR)
    );
    assert!(clamd.scan(mail.as_bytes()).unwrap().ends_with(" FOUND"));
    assert_eq!(clamd.scan(b"hello\n").as_deref(), Some("stream: OK"));
    clamd.stop();
    assert!(!clamd.ping());
    assert_eq!(clamd.scan(b"hello\n"), None);
    clamd.start_again();
    assert!(clamd.ping());
    assert!(clamd.scan(EICAR).unwrap().ends_with(" FOUND"));
}
