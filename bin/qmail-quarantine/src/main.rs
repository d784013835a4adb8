//! qmail-quarantine - list, read, release or delete quarantined messages
//!
//! SYNOPSIS
//!     qmail-quarantine list
//!     qmail-quarantine show ID
//!     qmail-quarantine release ID
//!     qmail-quarantine delete ID
//!
//! DESCRIPTION
//!     A content filter (qmail-scan) that stops a message by a quarantine rule keeps it in
//!     the Maildir HOME/quarantine (owned by qmailf, mode 0700; HOME is the parent of the
//!     directory holding this program), with the rule, its remark, the envelope, the
//!     client and the date as X-Quarantine-* fields at its top, and mails a notice naming
//!     its ID to the administrator. An ID is the message's file name in quarantine/new
//!     (or quarantine/cur, where a mail reader's flags `:2,...` may follow it).
//!
//!     list     one entry per message, oldest first: ID, date, size of the message,
//!              then the rule and remark, the sender, client and HELO, and each
//!              recipient on lines of their own; values are escaped (a control byte
//!              shows as \xHH, a backslash as \\). A file that is not a quarantined
//!              message (or not a plain file) is reported on stderr and skipped.
//!     show     the stored file: its X-Quarantine-* fields, then the message; on a
//!              terminal, control bytes other than newline and tab show as \xHH (an
//!              escape sequence in a hostile message cannot drive the terminal).
//!     release  queue the message, without the X-Quarantine-* fields, to its original
//!              sender and recipients through HOME/bin/qmail-queue itself (never
//!              $QMAILQUEUE, so the filter that stopped it does not see it again), then
//!              remove the copy; prints `ID: queued for N recipient(s)`. The copy is
//!              kept when qmail-queue fails.
//!     delete   remove the message.
//!
//!     An ID with a `/` or a leading `.` is refused. Nothing in the quarantine is
//!     opened through a symbolic link or as anything but a regular file with one link:
//!     the directory belongs to the filter user, and this program runs as root.
//!
//! USER
//!     root (the installer makes it mode 0700).
//!
//! EXIT CODES
//!     0 done; 100 usage, bad or unknown ID, an entry refused (a link, not a regular
//!     file) or damaged, or qmail-queue refused the message permanently; 111 temporary
//!     failure (the quarantine cannot be read, qmail-queue failed temporarily, the copy
//!     could not be removed after queueing). Errors are `qmail-quarantine: fatal: ...`
//!     on stderr.

use quarantine::admin::{Failure, Quarantine};
use quarantine::record::escape;
use std::io::Write;

const PROG: &str = "qmail-quarantine";
const USAGE: &str = "usage: qmail-quarantine list | show ID | release ID | delete ID";

fn main() {
    qsys::help!();
    qsys::die::install_panic_hook(PROG);
    qsys::die::default_sigpipe();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let home = qsys::home().unwrap_or_else(|e| {
        qsys::die::fatal(PROG, &format!("unable to find home directory: {e}"), 111)
    });
    if let Err(f) = run(&home, &args) {
        qsys::die::fatal(PROG, &f.text, f.exit_code());
    }
}

fn run(home: &std::path::Path, args: &[&str]) -> Result<(), Failure> {
    let usage = || Failure {
        permanent: true,
        text: USAGE.to_string(),
    };
    let (cmd, id) = match args {
        ["list"] => ("list", ""),
        [cmd @ ("show" | "release" | "delete"), id] => (*cmd, *id),
        _ => return Err(usage()),
    };
    if cmd != "list" {
        quarantine::admin::check_id(id)?;
    }
    let q = Quarantine::open(home)?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let write_failed = |e: std::io::Error| Failure {
        permanent: false,
        text: format!("unable to write output: {e}"),
    };
    match cmd {
        "list" => {
            let (entries, problems) = q.list()?;
            for p in problems {
                qsys::die::warn(PROG, "warning", &p);
            }
            for e in entries {
                out.write_all(entry_text(&e).as_bytes())
                    .map_err(write_failed)?;
            }
            out.flush().map_err(write_failed)
        }
        "show" if std::io::IsTerminal::is_terminal(&std::io::stdout()) => {
            q.show(id, &mut quarantine::terminal::TerminalSafe(&mut out))
        }
        "show" => q.show(id, &mut out),
        "release" => {
            let rec = q.release(id, &home.join("bin/qmail-queue"))?;
            let n = rec.reason.recipients.len();
            writeln!(out, "{}: queued for {n} recipient(s)", escape(id)).map_err(write_failed)
        }
        _ => q.delete(id),
    }
}

/// The lines `list` prints for one message.
fn entry_text(e: &quarantine::admin::Entry) -> String {
    let r = &e.record.reason;
    let mut s = format!(
        "{}  {}  {} bytes\n  rule: {} ({})\n  from: <{}>  client: {}  helo: {}\n",
        escape(&e.id),
        escape(&e.record.date),
        e.record.size,
        escape(&r.rule),
        escape(&r.remark),
        escape(&r.sender),
        escape(&r.client_ip),
        escape(&r.helo)
    );
    for rcpt in &r.recipients {
        s.push_str(&format!("  to: <{}>\n", escape(rcpt)));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_errors_are_permanent() {
        let home = std::path::Path::new("/nonexistent");
        for args in [
            &[][..],
            &["list", "x"],
            &["show"],
            &["drop", "x"],
            &["show", "a", "b"],
        ] {
            let e = run(home, args).unwrap_err();
            assert!(e.permanent && e.text == USAGE, "{args:?}: {e}");
        }
        let e = run(home, &["release", "../x"]).unwrap_err();
        assert!(
            e.permanent && e.text.starts_with("not a quarantine ID"),
            "{e}"
        );
        let e = run(home, &["list"]).unwrap_err();
        assert!(!e.permanent, "a missing quarantine is temporary: {e}");
    }

    #[test]
    fn a_listed_entry_cannot_forge_lines() {
        let e = quarantine::admin::Entry {
            id: "1.M2P3Q4.host".into(),
            record: quarantine::record::Record {
                reason: quarantine::Reason {
                    rule: ".exe".into(),
                    remark: "x\n  to: <forged@example.com>".into(),
                    sender: "s\r@x".into(),
                    recipients: vec!["a@x".into(), "b\n@x".into()],
                    client_ip: "local".into(),
                    helo: "\x1b[2J".into(),
                },
                date: "Sun, 6 Dec 2026 05:40:00 +0000".into(),
                size: 12,
            },
        };
        let t = entry_text(&e);
        assert_eq!(t.lines().count(), 5, "{t}");
        assert!(t.starts_with("1.M2P3Q4.host  Sun, 6 Dec 2026 05:40:00 +0000  12 bytes\n"));
        assert!(t.contains("  to: <a@x>\n  to: <b\\x0a@x>\n"), "{t}");
        assert!(!t.contains('\r') && !t.contains('\x1b'));
    }
}
