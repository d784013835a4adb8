//! qmail-remote's DKIM hook (issue 15): the message's signatures come from
//! HOME/bin/qmail-dkimsign, run as this same user (qmailr, the only one who can read the
//! keys) with the message on its descriptor 0. The signer, its crypto and mail-auth stay
//! out of qmail-remote, which is started for every delivery (tests/tests/deps.rs): an
//! installation without `control/dkim` pays one stat per delivery and nothing else.
//!
//! The signer writes the `DKIM-Signature:` fields on descriptor 1 and one alert per line
//! on descriptor 2. Signing never holds up a delivery: a signer that cannot be run, fails,
//! or writes anything but whole header fields gives a message without signatures and an
//! alert, which qmail-remote appends to its report (qmail-send logs it).

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use crate::message::Message;

/// The signer, relative to the home.
pub const SIGNER: &str = "bin/qmail-dkimsign";
/// The keys' directory; without it nothing is signed and the signer is not run.
pub const KEYS: &str = "control/dkim";
/// More output than this from the signer is not signatures.
const MAX_HEADER: u64 = 64 * 1024;
const MAX_ALERTS: u64 = 8 * 1024;

/// The signatures to send before the message, and why some are missing.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Signing {
    /// Whole `DKIM-Signature:` fields, LF line ends; empty when unsigned.
    pub header: Vec<u8>,
    pub alerts: Vec<String>,
}

/// Sign `msg` when this installation has keys; `msg` is left at its start.
pub fn sign(home: &Path, msg: &mut Message) -> Signing {
    if !home.join(KEYS).is_dir() {
        return Signing::default();
    }
    let mut out = run_signer(home, msg);
    if let Message::File(f) = msg
        && f.seek(SeekFrom::Start(0)).is_err()
    {
        out.header.clear();
    }
    if !whole_fields(&out.header) {
        out.header.clear();
        out.alerts
            .push("qmail-dkimsign wrote something other than header fields".to_string());
    }
    out
}

fn run_signer(home: &Path, msg: &mut Message) -> Signing {
    let mut cmd = Command::new(home.join(SIGNER));
    cmd.env_clear()
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let input = match msg {
        Message::File(f) => {
            // The child shares this descriptor's offset: rewound here, and by `sign` after.
            match f.seek(SeekFrom::Start(0)).and_then(|_| f.try_clone()) {
                Ok(dup) => {
                    cmd.stdin(Stdio::from(dup));
                    None
                }
                Err(e) => return alert(format!("unable to read the message: {e}")),
            }
        }
        Message::Mem(v) => {
            cmd.stdin(Stdio::piped());
            Some(v.clone())
        }
    };
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return alert(format!("unable to run {SIGNER}: {}", qsys::errstr::io(&e)));
        }
    };
    let writer = match (input, child.stdin.take()) {
        (Some(bytes), Some(mut stdin)) => Some(std::thread::spawn(move || {
            let _ = stdin.write_all(&bytes);
        })),
        _ => None,
    };
    let mut header = Vec::new();
    let mut alerts = Vec::new();
    if let Some(o) = child.stdout.take() {
        let _ = o.take(MAX_HEADER).read_to_end(&mut header);
    }
    if let Some(e) = child.stderr.take() {
        let _ = e.take(MAX_ALERTS).read_to_end(&mut alerts);
    }
    let status = child.wait();
    if let Some(w) = writer {
        let _ = w.join();
    }
    let mut out = Signing {
        header,
        alerts: String::from_utf8_lossy(&alerts)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| l.trim().to_string())
            .collect(),
    };
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => {
            out.header.clear();
            out.alerts.push(format!("qmail-dkimsign failed ({s})"));
        }
        Err(e) => {
            out.header.clear();
            out.alerts
                .push(format!("qmail-dkimsign lost: {}", qsys::errstr::io(&e)));
        }
    }
    out
}

fn alert(text: String) -> Signing {
    Signing {
        header: Vec::new(),
        alerts: vec![text],
    }
}

/// Whether `h` is nothing or whole `DKIM-Signature:` fields: LF-terminated, every line a
/// field start or a continuation, no empty line (which would end the message's header).
pub fn whole_fields(h: &[u8]) -> bool {
    if h.is_empty() {
        return true;
    }
    h.ends_with(b"\n")
        && h[..h.len() - 1].split(|&b| b == b'\n').all(|l| {
            let l = l.strip_suffix(b"\r").unwrap_or(l);
            !l.is_empty()
                && (l.starts_with(b" ")
                    || l.starts_with(b"\t")
                    || l.len() >= 15 && l[..15].eq_ignore_ascii_case(b"DKIM-Signature:"))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_whole_signature_fields_pass() {
        assert!(whole_fields(b""));
        assert!(whole_fields(b"DKIM-Signature: v=1;\n\th=from;\n b=x\n"));
        assert!(!whole_fields(b"DKIM-Signature: v=1;"));
        assert!(!whole_fields(b"DKIM-Signature: v=1;\n\nbody\n"));
        assert!(!whole_fields(b"Subject: injected\n"));
        assert!(!whole_fields(b"\n"));
    }

    #[test]
    fn no_keys_directory_means_no_signer() {
        let home = tempfile::tempdir().unwrap();
        let mut m = Message::Mem(b"From: a@b\n\nx\n".to_vec());
        assert_eq!(sign(home.path(), &mut m), Signing::default());
        std::fs::create_dir_all(home.path().join(KEYS)).unwrap();
        let s = sign(home.path(), &mut m);
        assert!(s.header.is_empty());
        assert_eq!(
            s.alerts,
            ["unable to run bin/qmail-dkimsign: file does not exist"]
        );
    }

    #[test]
    fn signer_output_is_used_and_the_file_rewound() {
        use std::os::unix::fs::PermissionsExt;
        let home = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(home.path().join(KEYS)).unwrap();
        std::fs::create_dir_all(home.path().join("bin")).unwrap();
        let signer = home.path().join(SIGNER);
        std::fs::write(
            &signer,
            "#!/bin/sh\nwc -c >/dev/null\nprintf 'DKIM-Signature: v=1;\\n\\tb=x\\n'\necho 'a key alert' >&2\n",
        )
        .unwrap();
        std::fs::set_permissions(&signer, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(b"From: a@b\n\nx\n").unwrap();
        let (mut m, _) = Message::open(f).unwrap();
        let s = sign(home.path(), &mut m);
        assert_eq!(s.header, b"DKIM-Signature: v=1;\n\tb=x\n");
        assert_eq!(s.alerts, ["a key alert"]);
        let mut out = Vec::new();
        m.send_after(&s.header, &mut out).unwrap();
        assert_eq!(
            out,
            b"DKIM-Signature: v=1;\r\n\tb=x\r\nFrom: a@b\r\n\r\nx\r\n.\r\n"
        );
        std::fs::write(&signer, "#!/bin/sh\necho 'Subject: forged'\n").unwrap();
        let s = sign(home.path(), &mut m);
        assert!(s.header.is_empty());
        std::fs::write(&signer, "#!/bin/sh\nexit 111\n").unwrap();
        let s = sign(home.path(), &mut Message::Mem(b"x\n".to_vec()));
        assert!(s.header.is_empty() && s.alerts[0].starts_with("qmail-dkimsign failed"));
    }
}
