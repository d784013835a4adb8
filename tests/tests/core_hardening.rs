//! End-to-end checks of issue 11's core hardening, through the real qmail-start,
//! qmail-send, qmail-lspawn and qmail-local processes of a temporary installation:
//! a `.qmail` line starting with a multibyte character is delivered (it used to make
//! qmail-local panic, deferring the mail until queuelifetime), and qmail-lspawn running
//! as root refuses a users/assign entry that maps an address to uid 0; a second
//! qmail-send is refused by the queue mutex.

use e2e::*;

const ME: &str = "mx.example.test";
const DOMAIN: &str = "example.test";

#[test]
fn multibyte_dot_qmail_line_does_not_crash_qmail_local() {
    need_root!();
    let (uid, home) = local_user("qtmb");
    // The first line forwards to an address starting with `é`; the second delivers.
    write_owned(
        &home.join(".qmail-mb"),
        "\u{e9}t\u{e9}@example.test\n./Maildir/\n",
        uid,
    );
    let mut sys = System::install(ME, &[DOMAIN]);
    sys.start();
    assert_eq!(
        sys.queue(
            "a@remote.test",
            &["qtmb-mb@example.test"],
            b"Subject: multibyte\n\nbody\n"
        ),
        0
    );
    let got = wait_maildir(&home.join("Maildir"), 1, 30);
    assert!(got[0].contains("Subject: multibyte"), "{}", got[0]);
    sys.wait_log("1+1+0", 20);
    assert!(
        !sys.log_text().contains("internal error"),
        "{}",
        sys.log_text()
    );
}

#[test]
fn lspawn_refuses_to_deliver_as_root() {
    need_root!();
    let mut sys = System::install(ME, &[DOMAIN]);
    std::fs::write(
        sys.root.join("users/assign"),
        "=toor:root:0:0:/root:::\n.\n",
    )
    .unwrap();
    let out = sys.run_as(None, "qmail-newu", &[], b"");
    assert!(
        out.status.success(),
        "qmail-newu: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    sys.start();
    assert_eq!(
        sys.queue(
            "a@remote.test",
            &["toor@example.test"],
            b"Subject: root\n\nbody\n"
        ),
        0
    );
    sys.wait_log("deferral: Not_allowed_to_perform_deliveries_as_root.", 20);
}

/// queue/lock/sendmutex (a nix Flock now): a second qmail-send exits 111 at once and the
/// first one keeps running.
#[test]
fn second_qmail_send_is_refused_by_the_mutex() {
    need_root!();
    let mut sys = System::install(ME, &[DOMAIN]);
    sys.start();
    sys.wait_log("status: local", 20);
    let out = sys.run_as(None, "qmail-send", &[], b"");
    assert_eq!(out.status.code(), Some(111));
    assert!(sys.send_alive());
}
