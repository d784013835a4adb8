//! The whole of qmail-local (qmail.md section 4): given a recipient already mapped to a
//! user, home and extension by qmail-lspawn, deliver one message.
//!
//! Order: home checks; the `.qmail` file (or the default delivery); a first pass that
//! validates every line (forward-only mode forbids file and program lines); the
//! Delivered-To loop check; file, Maildir and program deliveries in file order, each
//! failure ending the run at once; finally all forwards in one qmail-queue injection.
//! A program exiting 99 stops the remaining lines. Success prints `did F+W+P` (and
//! `qp N` when forwarded) for qmail-lspawn's report.

use crate::dotqmail::{self, Line};
use crate::{Fail, maildir, mbox};
use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// qmail-local's arguments: `user homedir local dash ext domain sender defaultdelivery`.
#[derive(Debug, Clone)]
pub struct Recipient {
    pub user: String,
    pub home: PathBuf,
    pub local: String,
    pub dash: String,
    pub ext: String,
    pub domain: String,
    pub sender: String,
    pub default_delivery: String,
}

/// The result of a run: what to print and how to exit.
#[derive(Debug)]
pub struct Outcome {
    pub code: i32,
    pub text: String,
}

/// Where the queue program lives (forwards go through it).
pub struct Env {
    pub qmail_queue: PathBuf,
}

/// `Return-Path: <sender>` with qmail's quoting of the local part.
pub fn rpline(sender: &str) -> String {
    format!("Return-Path: <{}>\n", quote_addr(sender))
}

/// Quote the local part of an address when it holds characters that need it.
pub fn quote_addr(addr: &str) -> String {
    let (local, domain) = match addr.rfind('@') {
        Some(i) => (&addr[..i], Some(&addr[i + 1..])),
        None => (addr, None),
    };
    let plain = !local.is_empty()
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local.bytes().all(|b| {
            b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~.".contains(&b) || b >= 0x80
        });
    let l = if plain || local.is_empty() {
        local.to_string()
    } else {
        format!("\"{}\"", local.replace('\\', "\\\\").replace('"', "\\\""))
    };
    match domain {
        Some(d) => format!("{l}@{d}"),
        None => l,
    }
}

impl Recipient {
    pub fn address(&self) -> String {
        format!("{}@{}", self.local, self.domain)
    }

    /// `Delivered-To: local@domain` (newlines turned into `_`).
    pub fn dtline(&self) -> String {
        format!("Delivered-To: {}\n", self.address().replace('\n', "_"))
    }

    /// The mbox `From ` line.
    pub fn ufline(&self, now: u64) -> String {
        let s = if self.sender.is_empty() {
            "MAILER-DAEMON".to_string()
        } else {
            self.sender.replace([' ', '\t', '\n'], "-")
        };
        format!("From {s} {}\n", qsys::date::ctime(now))
    }

    /// The environment qmail-local gives programs (qmail-command(8)).
    pub fn environment(&self, default: Option<&str>, newsender: &str) -> Vec<(String, String)> {
        let mut v = vec![
            ("USER".into(), self.user.clone()),
            ("HOME".into(), self.home.display().to_string()),
            ("LOCAL".into(), self.local.clone()),
            ("HOST".into(), self.domain.clone()),
            ("RECIPIENT".into(), self.address()),
            ("DTLINE".into(), self.dtline()),
            ("SENDER".into(), self.sender.clone()),
            ("NEWSENDER".into(), newsender.to_string()),
            ("RPLINE".into(), rpline(&self.sender)),
            ("UFLINE".into(), self.ufline(qsys::now())),
            ("EXT".into(), self.ext.clone()),
        ];
        let mut rest = self.ext.as_str();
        for n in 2..=4 {
            rest = rest.split_once('-').map(|(_, r)| r).unwrap_or("");
            v.push((format!("EXT{n}"), rest.to_string()));
        }
        let mut host = self.domain.as_str();
        for n in 2..=4 {
            host = host.rsplit_once('.').map(|(h, _)| h).unwrap_or("");
            v.push((format!("HOST{n}"), host.to_string()));
        }
        if let Some(d) = default {
            v.push(("DEFAULT".into(), d.to_string()));
        }
        v
    }
}

/// qmail's home-directory checks.
fn check_home(home: &Path) -> Result<(), Fail> {
    let meta = std::fs::metadata(home)
        .map_err(|_| Fail::temp("Unable to switch to home directory. (#4.3.0)"))?;
    if meta.mode() & 0o002 != 0 {
        return Err(Fail::temp("Uh-oh: home directory is writable. (#4.7.0)"));
    }
    if meta.mode() & 0o1000 != 0 {
        return Err(Fail::temp(
            "Home directory is sticky: user is editing his .qmail file. (#4.2.1)",
        ));
    }
    Ok(())
}

/// Refuse a message that already carries our Delivered-To line (exact line match in the
/// header, as qmail's `bouncexf`).
fn check_loop(message: &mut File, dtline: &str) -> Result<(), Fail> {
    let io_fail = |_| Fail::temp("Unable to read message. (#4.3.0)");
    message.seek(SeekFrom::Start(0)).map_err(io_fail)?;
    let mut r = BufReader::with_capacity(16 * 1024, &mut *message);
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = r.read_until(b'\n', &mut line).map_err(io_fail)?;
        if n == 0 || line == b"\n" {
            return Ok(());
        }
        if line == dtline.as_bytes() {
            return Err(Fail::perm(
                "This message is looping: it already has my Delivered-To line. (#5.4.6)",
            ));
        }
    }
}

/// The forwarding envelope sender (qmail.md 4.4).
fn new_sender(r: &Recipient) -> String {
    if r.sender.is_empty() || r.sender == "#@[]" {
        return r.sender.clone();
    }
    let safe = dotqmail::safe_ext(&r.ext);
    let owner = r.home.join(format!(".qmail{}{}-owner", r.dash, safe));
    if !owner.is_file() {
        return r.sender.clone();
    }
    let owner_default = r
        .home
        .join(format!(".qmail{}{}-owner-default", r.dash, safe));
    if owner_default.is_file() {
        format!("{}-owner-@{}-@[]", r.local, r.domain)
    } else {
        format!("{}-owner@{}", r.local, r.domain)
    }
}

/// Program exit codes that mean "bounce" (qmail-command(8)).
pub fn program_permanent(code: i32) -> bool {
    matches!(code, 64 | 65 | 70 | 76 | 77 | 78 | 100 | 112)
}

/// Run one `|program` line through `/bin/sh -c`. Returns true if it exited 99.
fn run_program(
    r: &Recipient,
    cmd: &str,
    message: &mut File,
    env: &[(String, String)],
) -> Result<bool, Fail> {
    message
        .seek(SeekFrom::Start(0))
        .map_err(|_| Fail::temp("Unable to rewind message. (#4.3.0)"))?;
    let stdin = message
        .try_clone()
        .map_err(|_| Fail::temp("Unable to duplicate message. (#4.3.0)"))?;
    let status = Command::new("/bin/sh")
        .arg("-c")
        .arg(cmd)
        .current_dir(&r.home)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::from(stdin))
        .status()
        .map_err(|_| Fail::temp("Unable to run /bin/sh: fork failed. (#4.3.0)"))?;
    match status.code() {
        Some(0) => Ok(false),
        Some(99) => Ok(true),
        Some(c) if program_permanent(c) => Err(Fail::perm("")),
        Some(_) => Err(Fail::temp("")),
        None => Err(Fail::temp("Aack, child crashed. (#4.3.0)")),
    }
}

/// Deliver per the recipient's `.qmail` (or `default_delivery`). `dry_run` (`-n`) only
/// reports what would be done.
pub fn deliver(r: &Recipient, message: &mut File, env: &Env, dry_run: bool) -> Outcome {
    match run(r, message, env, dry_run) {
        Ok(text) => Outcome { code: 0, text },
        Err(f) => Outcome {
            code: if f.permanent { 100 } else { 111 },
            text: f.text,
        },
    }
}

fn run(r: &Recipient, message: &mut File, env: &Env, dry_run: bool) -> Result<String, Fail> {
    if !r.home.is_absolute() {
        return Err(Fail::perm(
            "Internal error: home directory is not absolute. (#5.3.5)",
        ));
    }
    check_home(&r.home)?;
    let found = dotqmail::find(&r.home, &r.dash, &r.ext)?;
    if found.is_none() && !r.dash.is_empty() {
        return Err(Fail::perm("Sorry, no mailbox here by that name. (#5.1.1)"));
    }
    let (content, mut forward_only, default) = match &found {
        Some(f) if !f.content.is_empty() => (f.content.clone(), f.forward_only, f.default.clone()),
        Some(f) => (
            r.default_delivery.clone().into_bytes(),
            false,
            f.default.clone(),
        ),
        None => (r.default_delivery.clone().into_bytes(), false, None),
    };
    let lines = dotqmail::parse(&content)?;
    if lines.contains(&Line::ForwardOnly) {
        forward_only = true;
    }
    if forward_only {
        for l in &lines {
            match l {
                Line::Mbox(_) | Line::Maildir(_) => {
                    return Err(Fail::temp(
                        "Uh-oh: .qmail has file delivery but has x bit set. (#4.7.0)",
                    ));
                }
                Line::Program(_) => {
                    return Err(Fail::temp(
                        "Uh-oh: .qmail has prog delivery but has x bit set. (#4.7.0)",
                    ));
                }
                _ => {}
            }
        }
    }
    let newsender = new_sender(r);
    if dry_run {
        let mut text = String::new();
        for l in &lines {
            match l {
                Line::Mbox(p) => text.push_str(&format!("mbox {p}\n")),
                Line::Maildir(p) => text.push_str(&format!("maildir {p}\n")),
                Line::Program(p) => text.push_str(&format!("program {p}\n")),
                Line::Forward(a) => text.push_str(&format!("forward {a}\n")),
                Line::ForwardOnly => {}
            }
        }
        return Ok(text);
    }
    let dtline = r.dtline();
    check_loop(message, &dtline)?;
    let env_vars = r.environment(default.as_deref(), &newsender);
    let (mut files, mut programs) = (0, 0);
    let mut forwards = Vec::new();
    for l in &lines {
        match l {
            Line::Maildir(p) => {
                maildir::deliver(
                    &r.home.join(p),
                    format!("{}{}", rpline(&r.sender), dtline).as_bytes(),
                    message,
                )?;
                files += 1;
            }
            Line::Mbox(p) => {
                let prefix = format!("{}{}{}", r.ufline(qsys::now()), rpline(&r.sender), dtline);
                mbox::deliver(&r.home.join(p), prefix.as_bytes(), message)?;
                files += 1;
            }
            Line::Program(cmd) => {
                programs += 1;
                if run_program(r, cmd, message, &env_vars)? {
                    break;
                }
            }
            Line::Forward(a) => forwards.push(a.clone()),
            Line::ForwardOnly => {}
        }
    }
    let mut text = format!("did {files}+{}+{programs}\n", forwards.len());
    if !forwards.is_empty() {
        let qp = forward(message, &dtline, &newsender, &forwards, &env.qmail_queue)?;
        text.push_str(&format!("qp {qp}\n"));
    }
    Ok(text)
}

/// Queue the message again for `forwards`, with our Delivered-To line on top.
fn forward(
    message: &mut File,
    dtline: &str,
    sender: &str,
    forwards: &[String],
    qq: &Path,
) -> Result<u32, Fail> {
    message
        .seek(SeekFrom::Start(0))
        .map_err(|_| Fail::temp("Unable to rewind message. (#4.3.0)"))?;
    queue::client::inject(qq, sender.as_bytes(), forwards, |w| {
        w.write_all(dtline.as_bytes())?;
        std::io::copy(message, w)?;
        Ok(())
    })
    .map_err(|e| Fail {
        permanent: e.permanent,
        text: format!("Unable to forward message: {}.", e.text),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;

    fn setup(dotqmail: Option<(&str, &str)>) -> (tempfile::TempDir, Recipient, File) {
        let d = tempfile::tempdir().unwrap();
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        maildir::make(&d.path().join("Maildir")).unwrap();
        if let Some((name, text)) = dotqmail {
            std::fs::write(d.path().join(name), text).unwrap();
            std::fs::set_permissions(d.path().join(name), std::fs::Permissions::from_mode(0o644))
                .unwrap();
        }
        let r = Recipient {
            user: "joe".into(),
            home: d.path().to_path_buf(),
            local: "joe".into(),
            dash: "".into(),
            ext: "".into(),
            domain: "example.test".into(),
            sender: "a@b.test".into(),
            default_delivery: "./Maildir/\n".into(),
        };
        let mut m = tempfile::tempfile().unwrap();
        m.write_all(b"Subject: t\n\nbody\n").unwrap();
        (d, r, m)
    }

    fn env() -> Env {
        Env {
            qmail_queue: PathBuf::from("/nonexistent/qmail-queue"),
        }
    }

    #[test]
    fn default_delivery_to_maildir() {
        let (d, r, mut m) = setup(None);
        let o = deliver(&r, &mut m, &env(), false);
        assert_eq!((o.code, o.text.as_str()), (0, "did 1+0+0\n"));
        let entries: Vec<_> = std::fs::read_dir(d.path().join("Maildir/new"))
            .unwrap()
            .collect();
        assert_eq!(entries.len(), 1);
        let got = std::fs::read_to_string(entries[0].as_ref().unwrap().path()).unwrap();
        assert_eq!(
            got,
            "Return-Path: <a@b.test>\nDelivered-To: joe@example.test\nSubject: t\n\nbody\n"
        );
    }

    #[test]
    fn looping_message_bounces() {
        let (_d, r, _) = setup(None);
        let mut m = tempfile::tempfile().unwrap();
        m.write_all(b"Delivered-To: joe@example.test\nSubject: t\n\nbody\n")
            .unwrap();
        let o = deliver(&r, &mut m, &env(), false);
        assert_eq!(o.code, 100);
        assert!(o.text.contains("looping"));
    }

    #[test]
    fn extension_without_qmail_file_bounces() {
        let (_d, mut r, mut m) = setup(None);
        r.dash = "-".into();
        r.ext = "nothere".into();
        let o = deliver(&r, &mut m, &env(), false);
        assert_eq!(o.code, 100);
        assert_eq!(o.text, "Sorry, no mailbox here by that name. (#5.1.1)");
    }

    #[test]
    fn programs_get_environment_and_exit_codes_map() {
        let (d, mut r, mut m) = setup(Some((
            ".qmail-p",
            "|cat > out; echo \"$RECIPIENT $EXT $EXT2 $HOST2\" > env\n",
        )));
        r.dash = "-".into();
        r.ext = "p".into();
        r.domain = "mx.example.test".into();
        let o = deliver(&r, &mut m, &env(), false);
        assert_eq!((o.code, o.text.as_str()), (0, "did 0+0+1\n"));
        assert_eq!(
            std::fs::read_to_string(d.path().join("out")).unwrap(),
            "Subject: t\n\nbody\n"
        );
        assert_eq!(
            std::fs::read_to_string(d.path().join("env")).unwrap(),
            "joe@mx.example.test p  mx.example\n"
        );
        std::fs::write(
            d.path().join(".qmail-p"),
            "|echo no such user; exit 100\n./Maildir/\n",
        )
        .unwrap();
        let o = deliver(&r, &mut m, &env(), false);
        assert_eq!((o.code, o.text.as_str()), (100, ""));
        std::fs::write(d.path().join(".qmail-p"), "|exit 99\n./Maildir/\n").unwrap();
        let o = deliver(&r, &mut m, &env(), false);
        assert_eq!((o.code, o.text.as_str()), (0, "did 0+0+1\n"));
        std::fs::write(d.path().join(".qmail-p"), "|exit 75\n").unwrap();
        assert_eq!(deliver(&r, &mut m, &env(), false).code, 111);
    }

    #[test]
    fn forward_only_refuses_files() {
        let (d, mut r, mut m) = setup(Some((".qmail-f", "./Maildir/\n")));
        std::fs::set_permissions(
            d.path().join(".qmail-f"),
            std::fs::Permissions::from_mode(0o744),
        )
        .unwrap();
        r.dash = "-".into();
        r.ext = "f".into();
        let o = deliver(&r, &mut m, &env(), false);
        assert_eq!(o.code, 111);
        assert!(o.text.contains("x bit"));
    }

    #[test]
    fn dry_run_lists_lines() {
        let (_d, r, mut m) = setup(Some((".qmail", "./Maildir/\n|prog\nbob@x\n")));
        let o = deliver(&r, &mut m, &env(), true);
        assert_eq!(o.text, "maildir ./Maildir/\nprogram prog\nforward bob@x\n");
    }

    #[test]
    fn quoting_of_senders() {
        assert_eq!(quote_addr("a@b"), "a@b");
        assert_eq!(quote_addr("a b@c"), "\"a b\"@c");
        assert_eq!(quote_addr(""), "");
        assert_eq!(quote_addr("#@[]"), "#@[]");
    }
}
