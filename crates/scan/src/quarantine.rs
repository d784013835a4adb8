//! STUB of the `quarantine` crate's two functions (wave2 split: the QUARANTINE helper
//! writes crates/quarantine with exactly these signatures). When that crate is merged,
//! delete this file, drop `mod quarantine;` from lib.rs and add
//! `quarantine = { path = "../quarantine" }` to Cargo.toml: callers use
//! `crate::quarantine::{Reason, store, notice}` and then `quarantine::...` unchanged.
//!
//! This stand-in keeps the message in the Maildir `dir` (tmp, then new) with the reason
//! prepended as `X-Quarantine-*` fields, and builds a plain notice.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

pub struct Reason {
    pub rule: String,
    pub remark: String,
    pub sender: String,
    pub recipients: Vec<String>,
    pub client_ip: String,
    pub helo: String,
}

fn field(b: &str) -> String {
    qsys::logsafe::text(b.as_bytes())
}

pub fn store(dir: &Path, message: &[u8], reason: &Reason) -> io::Result<PathBuf> {
    let name = format!(
        "{}.P{}.{}",
        qsys::now(),
        std::process::id(),
        qsys::hostname().replace(['/', ':'], "_")
    );
    let tmp = dir.join("tmp").join(&name);
    let new = dir.join("new").join(&name);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)?;
    let mut head = format!(
        "X-Quarantine-Rule: {}\nX-Quarantine-Remark: {}\nX-Quarantine-Client: {} HELO {}\nX-Envelope-From: {}\n",
        field(&reason.rule),
        field(&reason.remark),
        field(&reason.client_ip),
        field(&reason.helo),
        field(&reason.sender)
    );
    for r in &reason.recipients {
        head.push_str(&format!("X-Envelope-To: {}\n", field(r)));
    }
    f.write_all(head.as_bytes())?;
    f.write_all(message)?;
    f.sync_all()?;
    std::fs::rename(&tmp, &new)?;
    Ok(new)
}

pub fn notice(me: &str, admin: &str, reason: &Reason, header: &[u8], stored: &Path) -> Vec<u8> {
    let mut m = format!(
        "From: MAILER-DAEMON@{me}\nTo: {admin}\nSubject: quarantined: {}\n\nrule: {}\nremark: {}\nsender: {}\nrecipients: {}\nclient: {} HELO {}\nstored: {}\n\n",
        field(&reason.rule),
        field(&reason.rule),
        field(&reason.remark),
        field(&reason.sender),
        field(&reason.recipients.join(", ")),
        field(&reason.client_ip),
        field(&reason.helo),
        stored.display()
    )
    .into_bytes();
    m.extend_from_slice(header);
    m
}
