//! qmail-scan run as a filter of the chain (DESIGN section 10): message on fd 0, envelope
//! on fd 3, the reason on fd 6, the message out on fd 1, in a HOME of its own (the
//! program is copied to HOME/bin, since it finds HOME from its own path). The antivirus
//! cases use a real clamd started here with a one-line EICAR database (wave2.md 2.2).
//!
//! Archives are built with python3's zipfile (the e2e crate has no zip dependency).

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

// Until the QUARANTINE branch's harness (tests/src/clamd.rs, `e2e::clamd`) is merged, a
// local copy with the same names: switch with `use e2e::clamd::{Clamd, EICAR, EICAR_NAME};`.
use e2e::clamd::{Clamd, EICAR, EICAR_NAME};

/// What one run of the filter gave.
struct Run {
    code: i32,
    out: Vec<u8>,
    reason: String,
    log: String,
}

struct Home {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

impl Home {
    fn new() -> Home {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        for d in [
            "bin",
            "control",
            "quarantine/tmp",
            "quarantine/new",
            "quarantine/cur",
        ] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        std::fs::copy(
            e2e::build_dir().join("qmail-scan"),
            root.join("bin/qmail-scan"),
        )
        .unwrap();
        let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("../control/scanrules");
        std::fs::copy(rules, root.join("control/scanrules")).unwrap();
        std::fs::write(root.join("control/me"), "mx.example.test\n").unwrap();
        Home { _dir: dir, root }
    }

    fn control(&self, name: &str, value: &str) {
        std::fs::write(self.root.join("control").join(name), value).unwrap();
    }

    fn quarantined(&self) -> Vec<PathBuf> {
        e2e::maildir_new(&self.root.join("quarantine"))
    }

    /// Run qmail-scan with `message` on fd 0, the envelope on fd 3 and a pipe on fd 6.
    fn run(&self, message: &[u8], env: &[(&str, &str)]) -> Run {
        let mut msg = tempfile::tempfile().unwrap();
        msg.write_all(message).unwrap();
        let mut envelope = tempfile::tempfile().unwrap();
        envelope
            .write_all(b"Fsender@example.org\0Trcpt@example.net\0\0")
            .unwrap();
        for f in [&mut msg, &mut envelope] {
            use std::io::Seek;
            f.rewind().unwrap();
        }
        let (reason_r, reason_w) = nix::unistd::pipe().unwrap();
        let env_fd = envelope.as_raw_fd();
        let reason_fd = reason_w.as_raw_fd();
        let mut cmd = Command::new(self.root.join("bin/qmail-scan"));
        cmd.stdin(Stdio::from(msg))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env_remove("TCPREMOTEIP");
        for (k, v) in env {
            cmd.env(k, v);
        }
        // SAFETY: only fcntl and dup2 between fork and exec. Both are first copied above
        // 6: the test runner's threads leave low numbers free, and the envelope (opened
        // close-on-exec) may be 3 itself, where dup2(3, 3) would leave it to be closed at
        // the exec; the reason pipe may be 3 and be overwritten by the envelope.
        unsafe {
            cmd.pre_exec(move || {
                let env_high = libc::fcntl(env_fd, libc::F_DUPFD, 10);
                let reason_high = libc::fcntl(reason_fd, libc::F_DUPFD, 10);
                if env_high < 0
                    || reason_high < 0
                    || libc::dup2(env_high, 3) < 0
                    || libc::dup2(reason_high, 6) < 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                libc::close(env_high);
                libc::close(reason_high);
                Ok(())
            });
        }
        let child = cmd.spawn().unwrap();
        drop(reason_w);
        drop(envelope);
        let out = child.wait_with_output().unwrap();
        let mut reason = String::new();
        std::fs::File::from(reason_r)
            .read_to_string(&mut reason)
            .unwrap();
        Run {
            code: out.status.code().unwrap_or(-1),
            out: out.stdout,
            reason,
            log: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

fn b64_lines(data: &[u8]) -> String {
    use base64::Engine;
    let b = base64::engine::general_purpose::STANDARD.encode(data);
    b.as_bytes()
        .chunks(76)
        .map(|c| format!("{}\n", String::from_utf8_lossy(c)))
        .collect()
}

/// A multipart message with one text part and base64 attachments.
fn mail(attachments: &[(&str, &str, &[u8])]) -> Vec<u8> {
    let mut m = String::from(
        "From: sender@example.org\nTo: rcpt@example.net\nSubject: files\n\
         Date: Sun, 6 Dec 2026 05:00:00 +0000\nMessage-ID: <1@example.org>\nMIME-Version: 1.0\n\
         Content-Type: multipart/mixed; boundary=\"=_b\"\n\n--=_b\nContent-Type: text/plain\n\nhello\n",
    );
    for (name, ctype, data) in attachments {
        m.push_str(&format!(
            "--=_b\nContent-Type: {ctype}; name=\"{name}\"\nContent-Transfer-Encoding: base64\n\
             Content-Disposition: attachment; filename=\"{name}\"\n\n{}",
            b64_lines(data)
        ));
    }
    m.push_str("--=_b--\n");
    m.into_bytes()
}

/// A zip (deflated) of `members`, written by python3's zipfile.
fn zip_of(members: &[(&str, &[u8])]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let mut script = String::from(
        "import sys, zipfile\nz = zipfile.ZipFile(sys.argv[1], 'w', zipfile.ZIP_DEFLATED)\n",
    );
    for (i, (name, data)) in members.iter().enumerate() {
        let p = dir.path().join(format!("m{i}"));
        std::fs::write(&p, data).unwrap();
        script.push_str(&format!("z.write({:?}, {:?})\n", p.to_str().unwrap(), name));
    }
    script.push_str("z.close()\n");
    let out = dir.path().join("out.zip");
    let st = Command::new("/usr/bin/python3")
        .arg("-c")
        .arg(&script)
        .arg(&out)
        .status()
        .unwrap();
    assert!(st.success());
    std::fs::read(out).unwrap()
}

fn have_python() -> bool {
    e2e::have_tool("/usr/bin/python3", "python3")
}

fn refused_with_virus(r: &Run) {
    assert_eq!(r.code, 82, "log: {}", r.log);
    assert!(
        r.reason.starts_with(&format!("Dvirus found: {EICAR_NAME}")),
        "{:?}",
        r.reason
    );
    assert!(r.reason.ends_with("(#5.7.1)"), "{:?}", r.reason);
    assert!(r.out.is_empty(), "nothing passed on");
    assert!(r.log.contains("qmail-scan: refuse virus="), "{}", r.log);
}

#[test]
fn eicar_attached_zipped_and_double_zipped_is_refused_with_its_name() {
    if !have_python() {
        return;
    }
    let Some(clamd) = Clamd::start_or_skip() else {
        return;
    };
    let home = Home::new();
    home.control("clamd", &format!("{}\n", clamd.socket().display()));

    let r = home.run(&mail(&[("eicar.com.txt", "text/plain", EICAR)]), &[]);
    refused_with_virus(&r);

    let z = zip_of(&[("eicar.txt", EICAR)]);
    let r = home.run(&mail(&[("eicar.zip", "application/zip", &z)]), &[]);
    refused_with_virus(&r);

    let zz = zip_of(&[("inner.zip", &z)]);
    let r = home.run(&mail(&[("outer.zip", "application/zip", &zz)]), &[]);
    refused_with_virus(&r);

    // A clean message passes, scanned by clamd, byte for byte after the added header.
    let clean = mail(&[(
        "notes.zip",
        "application/zip",
        &zip_of(&[("a.txt", b"notes")]),
    )]);
    let r = home.run(&clean, &[]);
    assert_eq!(r.code, 0, "{}", r.log);
    let header = "X-Qmail-Scanned: by qmail-scan on mx.example.test; clean (policy, clamd)\n";
    assert_eq!(r.out, [header.as_bytes(), &clean].concat());
    assert!(home.quarantined().is_empty());
}

#[test]
fn clamd_stopped_is_a_temporary_failure_and_started_again_passes() {
    let Some(mut clamd) = Clamd::start_or_skip() else {
        return;
    };
    let home = Home::new();
    home.control("clamd", &format!("{}\n", clamd.socket().display()));
    let clean = b"From: a@example.org\nSubject: hi\n\nhello\n";
    clamd.stop();
    let r = home.run(clean, &[]);
    assert_eq!(r.code, 82, "{}", r.log);
    assert!(r.reason.starts_with('Z'), "{:?}", r.reason);
    assert!(r.out.is_empty());
    assert!(r.log.contains("qmail-scan: defer clamd="), "{}", r.log);
    // An explicit fail-open passes it, marked unscanned.
    home.control("clamdfailopen", "1\n");
    let r = home.run(clean, &[]);
    assert_eq!(r.code, 0, "{}", r.log);
    assert!(String::from_utf8_lossy(&r.out).starts_with("X-Qmail-Scanned: by qmail-scan on mx.example.test; clean (policy; clamd unavailable, not virus-scanned)\n"));
    home.control("clamdfailopen", "0\n");
    clamd.start_again();
    let r = home.run(clean, &[]);
    assert_eq!(r.code, 0, "{}", r.log);
}

#[test]
fn policy_hits_are_quarantined_and_clean_mail_passes_byte_for_byte() {
    if !have_python() {
        return;
    }
    let home = Home::new();
    let pe = {
        let mut v = vec![0u8; 0x100];
        v[..2].copy_from_slice(b"MZ");
        v[0x3C] = 0x80;
        v[0x80..0x84].copy_from_slice(b"PE\0\0");
        v
    };
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (mail(&[("setup.exe", "application/octet-stream", b"x")]), "rule=.exe"),
        (mail(&[("file.pdf.exe", "application/pdf", b"x")]), "rule=.exe"),
        (mail(&[("notes.txt", "text/plain", &pe)]), "rule=@executable"),
        (
            mail(&[("a.zip", "application/zip", &zip_of(&[("b.zip", &zip_of(&[("c.scr", b"x")]))]))]),
            "rule=.scr",
        ),
        (
            b"Subject: x\nMIME-Version: 1.0\nContent-Type: message/partial; id=\"a\"; number=1; total=2\n\nx\n".to_vec(),
            "rule=message/partial",
        ),
        (
            format!("Date: {}\nSubject: x\n\nx\n", "1".repeat(200)).into_bytes(),
            "rule=.{100,}",
        ),
    ];
    for (i, (m, rule)) in cases.iter().enumerate() {
        let r = home.run(m, &[("TCPREMOTEIP", "192.0.2.7")]);
        assert_eq!(r.code, 99, "case {i}: {}", r.log);
        assert!(r.out.is_empty(), "case {i}");
        assert!(
            r.log.contains(&format!("qmail-scan: quarantine {rule} ")),
            "case {i}: {}",
            r.log
        );
        assert!(r.log.contains("ip=192.0.2.7"), "{}", r.log);
        assert_eq!(home.quarantined().len(), i + 1);
    }
    // A 100 MiB zip bomb (zeros) is stopped by the limits, quickly.
    let bomb = zip_of(&[("zeros.bin", &vec![0u8; 100 << 20])]);
    let start = std::time::Instant::now();
    let r = home.run(&mail(&[("bomb.zip", "application/zip", &bomb)]), &[]);
    assert_eq!(r.code, 99, "{}", r.log);
    assert!(r.log.contains("rule=@limits"), "{}", r.log);
    assert!(start.elapsed() < std::time::Duration::from_secs(10));

    // A clean multipart message with a PDF and a plain zip: only the header is added.
    let pdf =
        b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog >>\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n";
    let clean = mail(&[
        ("report.pdf", "application/pdf", pdf),
        (
            "data.zip",
            "application/zip",
            &zip_of(&[("data.csv", b"1,2,3\n")]),
        ),
    ]);
    let r = home.run(&clean, &[]);
    assert_eq!(r.code, 0, "{}", r.log);
    let header = "X-Qmail-Scanned: by qmail-scan on mx.example.test; clean (policy)\n";
    assert_eq!(r.out, [header.as_bytes(), &clean].concat());
    assert!(
        r.log
            .contains("qmail-scan: clean from=sender@example.org rcpts=1"),
        "{}",
        r.log
    );
}

#[test]
fn refuse_action_and_a_bad_rules_file() {
    let home = Home::new();
    home.control(
        "scanrules",
        "# site rules\nPickles.*Breakfast\tVirus-Subject:\tno pickles for breakfast\trefuse\n\
         bad\\.example\tVirus-HELO:\tno bad HELO\trefuse\n",
    );
    // The HELO comes from qmail-smtpd's Received line, only for a network client.
    let from_smtpd = b"Received: from unknown (HELO bad.example) (192.0.2.9)\n  by mx.example.test with SMTP; 6 Dec 2026 05:00:00 -0000\nSubject: x\n\nx\n";
    let r = home.run(from_smtpd, &[("TCPREMOTEIP", "192.0.2.9")]);
    assert_eq!(
        (r.code, r.reason.as_str()),
        (82, "Dno bad HELO (#5.7.1)"),
        "{}",
        r.log
    );
    assert!(r.log.contains("helo=bad.example"), "{}", r.log);
    let r = home.run(from_smtpd, &[]);
    assert_eq!(
        r.code, 0,
        "a local injector's Received line is not believed: {}",
        r.log
    );
    let r = home.run(b"Subject: Pickles for Breakfast\n\nx\n", &[]);
    assert_eq!(
        (r.code, r.reason.as_str()),
        (82, "Dno pickles for breakfast (#5.7.1)"),
        "{}",
        r.log
    );
    let r = home.run(b"Subject: Pickles - where did you go?\n\nx\n", &[]);
    assert_eq!(r.code, 0, "{}", r.log);

    home.control(
        "scanrules",
        "# site rules\n.exe\t0\tno exe\n(broken\tVirus-Subject:\tx\n",
    );
    let r = home.run(b"Subject: x\n\nx\n", &[]);
    assert_eq!(r.code, 82);
    assert!(r.reason.starts_with('Z'), "{:?}", r.reason);
    assert!(
        r.log.contains("control/scanrules line 3: bad regex"),
        "{}",
        r.log
    );
    assert!(r.out.is_empty());
}
