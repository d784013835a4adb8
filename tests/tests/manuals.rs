//! Every installed program prints its manual for `--help` (exit 0, nothing else done),
//! and qmail-install installs the same text as a man page `man` finds and in `HOME/doc`
//! (issue 12: "`man qmail-smtpd` and `qmail-smtpd --help` work after install").

use e2e::*;
use std::process::{Command, Stdio};

#[test]
fn every_program_prints_its_manual_for_help_and_the_man_page_is_installed() {
    let sys = System::install("mx.example.test", &[]);
    let mut checked = 0;
    for entry in std::fs::read_dir(sys.root.join("bin")).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        let o = Command::new(sys.bin(&name))
            .arg("--help")
            .stdin(Stdio::null())
            .env_clear()
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&o.stdout);
        assert_eq!(o.status.code(), Some(0), "{name} --help: {o:?}");
        assert!(
            out.contains(&format!("{name} - ")),
            "{name} --help printed {out}"
        );
        let doc = std::fs::read_to_string(sys.root.join("doc").join(format!("{name}.txt")))
            .unwrap_or_else(|e| panic!("{name}: doc: {e}"));
        assert_eq!(out, doc, "{name}");
        assert!(
            sys.root
                .join("man/man8")
                .join(format!("{name}.8"))
                .is_file(),
            "{name}"
        );
        checked += 1;
    }
    assert!(checked > 40, "{checked}");

    need_tool!("man", "man-db");
    // man-db maps a PATH entry DIR/bin to DIR/man by itself
    let o = Command::new("man")
        .args(["-P", "cat", "qmail-smtpd"])
        .env(
            "PATH",
            format!("{}:/usr/bin:/bin", sys.root.join("bin").display()),
        )
        .env("MANWIDTH", "100")
        .env_remove("MANPATH")
        .output()
        .unwrap();
    let page = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{o:?}");
    assert!(
        page.contains("qmail-smtpd - receive mail via SMTP"),
        "{page}"
    );
    assert!(
        page.contains("SYNOPSIS") && page.contains("qmail-smtpd --submission"),
        "{page}"
    );
}
