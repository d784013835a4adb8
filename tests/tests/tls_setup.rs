//! Setting TLS up as an administrator does (issue 12, "broken as documented" item 5): a
//! certificate qmaild cannot read is named in the log with the user and the fix and is
//! not advertised; qmail-install gives an existing certificate and key to qmaild, mode
//! 0400; the deploy hook for certbot and acme.sh installs a renewed pair; the services
//! that need a certificate are linked only once one exists.

mod smtpd_common;

use e2e::*;
use smtpd_common::*;
use std::os::unix::fs::MetadataExt;
use std::process::Command;

fn ehlo(srv: &SmtpServer) -> String {
    let mut c = srv.client();
    let greeting = c.reply();
    assert!(greeting.starts_with("220"), "{greeting}");
    c.cmd("EHLO client.test")
}

fn reinstall(sys: &System) {
    let o = Command::new(sys.bin("qmail-install"))
        .arg("--root")
        .arg(&sys.root)
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
}

#[test]
fn a_key_qmaild_cannot_read_is_named_not_offered_and_repaired_by_the_installer() {
    need_root!();
    let sys = system();
    install_cert(&sys);
    let key = sys.root.join("control/serverkey.pem");
    nix::unistd::chown(&key, Some(0.into()), Some(0.into())).unwrap();
    let srv = SmtpServer::start(&sys, &[], &[]);
    let reply = ehlo(&srv);
    assert!(reply.starts_with("250"), "{reply}");
    assert!(!reply.contains("STARTTLS"), "{reply}");
    let log = srv.log_text();
    let expected = format!(
        "TLS not offered: unable to read {} as qmaild: access denied: it must be \
         readable by qmaild (chown qmaild {k}; chmod 400 {k})",
        key.display(),
        k = key.display()
    );
    assert!(
        log.to_lowercase().contains(&expected.to_lowercase()),
        "{log}"
    );

    reinstall(&sys);
    let md = std::fs::metadata(&key).unwrap();
    assert_eq!(md.uid(), qmaild().0);
    assert_eq!(md.mode() & 0o7777, 0o400);
    let reply = ehlo(&srv);
    assert!(reply.contains("STARTTLS"), "{reply}");
}

/// A pair in certbot's layout (RENEWED_LINEAGE) and as two named files (acme.sh).
fn write_pair(dir: &std::path::Path) {
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec![ME.into()]).unwrap();
    let cert = params.self_signed(&key).unwrap();
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("fullchain.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("privkey.pem"), key.serialize_pem()).unwrap();
}

#[test]
fn the_deploy_hook_installs_a_renewed_certificate() {
    let sys = system();
    install_cert(&sys);
    let lineage = sys.root.parent().unwrap().join("live/mx.example.test");
    write_pair(&lineage);
    let hook = sys.root.join("boot/cert-deploy");
    let o = Command::new(&hook)
        .env("RENEWED_LINEAGE", &lineage)
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    let cert = sys.root.join("control/servercert.pem");
    let md = std::fs::metadata(&cert).unwrap();
    assert_eq!(md.mode() & 0o7777, 0o400);
    if is_root() {
        assert_eq!(md.uid(), qmaild().0);
    }
    assert!(!sys.root.join("control/serverkey.pem").exists());
    let text = std::fs::read_to_string(&cert).unwrap();
    assert!(text.contains(&std::fs::read_to_string(lineage.join("fullchain.pem")).unwrap()));

    // the new pair is served: STARTTLS with smtplib
    let srv = SmtpServer::start(&sys, &[], &[]);
    let script = "import smtplib, ssl, sys\n\
        ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE\n\
        s = smtplib.SMTP('127.0.0.1', int(sys.argv[1]), timeout=60)\n\
        print(s.starttls(context=ctx)[0]); print(s.sock.version()); s.quit()\n";
    let (ok, out) = python(script, &[&srv.port.to_string()]);
    assert!(ok && out.starts_with("220"), "{out}");

    // the acme.sh form; a file that is no key is refused and nothing changes
    let o = Command::new(&hook)
        .arg(lineage.join("fullchain.pem"))
        .arg(lineage.join("fullchain.pem"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(100), "{o:?}");
    assert_eq!(std::fs::read_to_string(&cert).unwrap(), text);
    let o = Command::new(&hook)
        .arg(lineage.join("fullchain.pem"))
        .arg(lineage.join("privkey.pem"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
}

#[test]
fn services_that_need_a_certificate_wait_for_one() {
    let sys = system();
    let sv = sys.root.parent().unwrap().join("service");
    let link = |extra: &[&str]| {
        Command::new(sys.bin("qmail-install"))
            .arg("--root")
            .arg(&sys.root)
            .arg("--link-services")
            .arg(&sv)
            .args(extra)
            .output()
            .unwrap()
    };
    let o = link(&[]);
    assert!(o.status.success(), "{o:?}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("not linking qmail-smtps"), "{err}");
    assert!(sv.join("qmail-smtpd").exists());
    assert!(!sv.join("qmail-smtps").exists());
    assert!(!sv.join("qmail-pop3ds").exists());
    let o = link(&["--service", "qmail-pop3ds"]);
    assert_eq!(o.status.code(), Some(111), "{o:?}");
    install_cert(&sys);
    let o = link(&[]);
    assert!(o.status.success(), "{o:?}");
    assert!(sv.join("qmail-smtps").exists());
    assert!(sv.join("qmail-pop3ds").exists());
}
