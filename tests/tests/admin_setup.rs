//! An administrator's first steps on a Debian host (issue 12, "broken as documented"
//! items 3 and 4): replacing the system's sendmail the Debian way (dpkg-divert) and
//! undoing it, and the installer naming the other packages' tools a bare command would
//! run instead of ours.

use e2e::*;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

/// A tree that looks like a Debian root with an MTA's sendmail: usr/sbin/sendmail a
/// program, usr/lib/sendmail a link to it, dpkg's database directory.
fn debian_tree(root: &Path) {
    std::fs::create_dir_all(root.join("var/lib/dpkg")).unwrap();
    std::fs::write(root.join("var/lib/dpkg/diversions"), "").unwrap();
    std::fs::create_dir_all(root.join("usr/sbin")).unwrap();
    std::fs::create_dir_all(root.join("usr/lib")).unwrap();
    std::fs::write(
        root.join("usr/sbin/sendmail"),
        "#!/bin/sh\necho the old MTA\n",
    )
    .unwrap();
    std::os::unix::fs::symlink("../sbin/sendmail", root.join("usr/lib/sendmail")).unwrap();
}

fn run(cmd: &mut Command) -> String {
    let o = cmd.output().unwrap();
    assert!(o.status.success(), "{o:?}");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn replace_sendmail_diverts_the_originals_and_undo_restores_them() {
    need_tool!("dpkg-divert", "dpkg");
    let mut sys = System::install("mx.example.test", &["mx.example.test"]);
    sys.start();
    let tree = sys.root.parent().unwrap().join("debian");
    debian_tree(&tree);
    let script = sys.root.join("boot/replace-sendmail");
    let ours = sys.root.join("bin/sendmail");
    run(Command::new(&script).arg("--root").arg(&tree));
    for name in ["usr/sbin/sendmail", "usr/lib/sendmail"] {
        assert_eq!(std::fs::read_link(tree.join(name)).unwrap(), ours, "{name}");
    }
    let list = run(Command::new("dpkg-divert")
        .arg("--root")
        .arg(&tree)
        .arg("--list"));
    assert!(
        list.contains("local diversion of /usr/sbin/sendmail to /usr/sbin/sendmail.before-qmail"),
        "{list}"
    );
    assert!(
        std::fs::read_to_string(tree.join("usr/sbin/sendmail.before-qmail"))
            .unwrap()
            .contains("the old MTA")
    );
    // twice is harmless
    let again = run(Command::new(&script).arg("--root").arg(&tree));
    assert!(again.contains("already leads to"), "{again}");

    // mail injected through the replaced name reaches the queue and is delivered
    let o = output_with_input(
        Command::new(tree.join("usr/lib/sendmail")).args(["-i", "postmaster@mx.example.test"]),
        "Subject: through /usr/lib/sendmail\n\nhello\n",
    );
    assert!(o.status.success(), "{o:?}");
    let got = wait_maildir(&sys.root.join("alias/Maildir"), 1, 60);
    assert!(got.iter().any(|m| m.contains("through /usr/lib/sendmail")));

    run(Command::new(&script).arg("--root").arg(&tree).arg("--undo"));
    assert!(
        std::fs::read_to_string(tree.join("usr/sbin/sendmail"))
            .unwrap()
            .contains("the old MTA")
    );
    assert_eq!(
        std::fs::read_link(tree.join("usr/lib/sendmail")).unwrap(),
        Path::new("../sbin/sendmail")
    );
    let list = run(Command::new("dpkg-divert")
        .arg("--root")
        .arg(&tree)
        .arg("--list"));
    assert!(list.trim().is_empty(), "{list}");
}

#[test]
fn the_installer_names_tools_a_bare_name_would_take_from_another_package() {
    let sys = System::install("mx.example.test", &[]);
    let theirs = sys.root.parent().unwrap().join("usr-bin");
    std::fs::create_dir_all(&theirs).unwrap();
    for n in ["svc", "tcprules"] {
        let p = theirs.join(n);
        std::fs::write(&p, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let install = |path: &std::ffi::OsStr| {
        let o = Command::new(sys.bin("qmail-install"))
            .arg("--root")
            .arg(&sys.root)
            .env("PATH", path)
            .output()
            .unwrap();
        assert!(o.status.success(), "{o:?}");
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    let bin = sys.root.join("bin");
    let err = install(&std::env::join_paths([&theirs, &bin]).unwrap());
    assert!(
        err.contains(&theirs.join("svc").display().to_string()),
        "{err}"
    );
    assert!(
        err.contains(&theirs.join("tcprules").display().to_string()),
        "{err}"
    );
    assert!(
        err.contains(&format!("export PATH={}:$PATH", bin.display())),
        "{err}"
    );
    let err = install(&std::env::join_paths([&bin, &theirs]).unwrap());
    assert!(!err.contains("note:"), "{err}");
}

/// init/quickstart with `dir` and `env`, to its end (it must stop by itself: these are
/// its failures); returns (exit code, stderr).
fn quickstart_failing(dir: &Path, env: &[(&str, &str)]) -> (Option<i32>, String) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../init/quickstart");
    let err = tempfile::NamedTempFile::new().unwrap();
    let mut child = Command::new("sh")
        .arg(&script)
        .arg(dir)
        .env("QUICKSTART_BIN", build_dir())
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(err.reopen().unwrap())
        .spawn()
        .unwrap();
    let st = wait_until("the quick start to give up", 120, || {
        child.try_wait().ok().flatten()
    });
    (st.code(), std::fs::read_to_string(err.path()).unwrap())
}

fn open_tmp() -> tempfile::TempDir {
    let t = tempfile::Builder::new()
        .prefix("qs-e2e")
        .tempdir_in("/tmp")
        .unwrap();
    std::fs::set_permissions(t.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    t
}

#[test]
fn the_quick_start_names_a_port_in_use_and_starts_nothing() {
    need_tool!("ss", "iproute2");
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port().to_string();
    let t = open_tmp();
    let (code, err) = quickstart_failing(&t.path().join("run"), &[("SUBMISSION_PORT", &port)]);
    assert_eq!(code, Some(100), "{err}");
    assert!(
        err.contains(&format!("port {port} on 127.0.0.1 is in use")),
        "{err}"
    );
    assert!(!t.path().join("run/service").exists());
}

#[test]
fn the_quick_start_says_which_service_did_not_come_up() {
    // one port for two services: the check before finds it free, the second bind fails
    let port = free_port().to_string();
    let t = open_tmp();
    let (code, err) = quickstart_failing(
        &t.path().join("run"),
        &[
            ("SMTP_PORT", &port),
            ("SUBMISSION_PORT", &port),
            ("POP3_PORT", "0"),
            ("SMTPS_PORT", "0"),
            ("POP3S_PORT", "0"),
        ],
    );
    assert_eq!(code, Some(111), "{err}");
    assert!(
        err.contains("did not come up: tcpserver: fatal: unable to bind"),
        "{err}"
    );
    assert!(err.contains("quickstart: fatal: stopping"), "{err}");
    assert!(!err.contains("Ctrl-C stops everything"), "{err}");
}

#[test]
fn as_root_the_quick_start_refuses_a_directory_the_qmail_users_cannot_reach() {
    need_root!();
    let t = open_tmp();
    let private = t.path().join("root-home");
    std::fs::create_dir(&private).unwrap();
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
    let (code, err) = quickstart_failing(
        &private.join("checkout/run"),
        &[
            ("SMTP_PORT", "0"),
            ("SUBMISSION_PORT", "0"),
            ("POP3_PORT", "0"),
        ],
    );
    assert_eq!(code, Some(100), "{err}");
    assert!(
        err.contains(&format!(
            "the qmail users cannot reach {}: {} is mode drwx------",
            private.join("checkout/run").display(),
            private.display()
        )) && err.contains("/var/tmp/quickstart"),
        "{err}"
    );
}
