//! qmail-spamlearn - teach spamd the spam and ham users report
//!
//! SYNOPSIS
//!     qmail-spamlearn deliver spam|ham
//!     qmail-spamlearn spam|ham MAILDIR...
//!     qmail-spamlearn junk [USER...]
//!
//! DESCRIPTION
//!     Teaches the spamd at HOME/control/spamd (unix socket path or IP:port) with the
//!     spamc protocol's TELL (`Message-class: spam|ham`, `Set: local`; spamd runs with
//!     --allow-tell, as the qmail-spamd service starts it), so its Bayes filter learns.
//!
//!     deliver CLASS: the delivery program of the learning addresses. qmail-install
//!     writes ~alias/.qmail-learn-spam and ~alias/.qmail-learn-ham, each one line
//!     `|HOME/bin/qmail-spamlearn deliver spam` (or ham), so mail to learn-spam@ or
//!     learn-ham@ a local domain comes here on descriptor 0. A report is believed only
//!     when its header holds exactly one X-Qmail-Spam-Reporter field: qmail-spamc
//!     (which must be in control/filters) removes that field from every incoming
//!     message and adds it only to mail from a local sender (injected on this host), a
//!     relay client or an authenticated user. Anything else is dropped with a line in
//!     the delivery log and no answer to anyone. The reported messages are the
//!     message/rfc822 attachments (a message forwarded as attachment; at most 50), or,
//!     without one, the report itself (a message bounced or redirected as is) minus
//!     Return-Path, Delivered-To, X-Qmail-Spam-Reporter and X-Spam-* fields.
//!
//!     spam|ham MAILDIR...: learns every message in the cur/ and new/ of each Maildir
//!     folder (e.g. a shared folder of ham). Files are opened without following links;
//!     messages over 10 MB are skipped.
//!
//!     junk [USER...]: learns as spam each user's ~/Maildir/.Junk (the folder IMAP
//!     clients move spam to): the named users, or every account of /etc/passwd with a
//!     uid other than 0 that has one. Run by root, each user's folder is read by a
//!     child process running as that user, which hands the messages to its parent
//!     over a pipe (root opens nothing in a user's folder; only root talks to spamd).
//!     Meant for cron; spamd remembers what it learnt, so a message learnt before is
//!     not counted twice.
//!
//!     One line per run or delivery on standard output: `learnt N of M as CLASS ...`
//!     (for deliver: `from REPORTER`), or `ignored: ...`.
//!
//! CONTROL FILES
//!     spamd         where spamd listens; missing: learning is off (deliver: 100).
//!     spamtimeout   seconds per exchange with spamd (30).
//!
//! USER
//!     deliver: alias (qmail-local runs ~alias's programs as alias), which must reach
//!     spamd's socket (group nofiles: the qmail-spamd service makes it so).
//!     spam|ham|junk: root or anyone who may read the folders.
//!
//! EXIT CODES
//!     0 done (deliver: also a report that is not believed); 100 usage, or learning
//!     is off (deliver: the reporter gets a bounce); 111 spamd unreachable or an error
//!     (deliver: qmail-send tries again later).

use std::io::Read;
use std::path::PathBuf;

use spamc::learn;
use spamc::policy::Config;
use spamc::protocol::{self, Class};

const PROG: &str = "qmail-spamlearn";

/// Messages larger than this are not learnt.
const MAX_MESSAGE: u64 = 10 * 1024 * 1024;

fn usage() -> ! {
    qsys::die::fatal(
        PROG,
        "usage: qmail-spamlearn deliver spam|ham | spam|ham MAILDIR... | junk [USER...]",
        100,
    )
}

fn config() -> (String, std::time::Duration) {
    let home = qsys::home()
        .unwrap_or_else(|e| qsys::die::fatal(PROG, &format!("unable to find home: {e}"), 111));
    let cfg = Config::load(&control::Controls::new(&home))
        .unwrap_or_else(|e| qsys::die::fatal(PROG, &e, 111));
    match cfg.spamd {
        Some(a) => (a, cfg.timeout),
        None => {
            println!("{PROG}: learning is off here: no control/spamd (#5.3.0)");
            std::process::exit(100)
        }
    }
}

/// Teach every message in `messages`; the count learnt now, or spamd's error.
fn teach(
    spamd: &str,
    timeout: std::time::Duration,
    class: Class,
    messages: &[Vec<u8>],
) -> Result<usize, protocol::Error> {
    let mut learnt = 0;
    for m in messages {
        if protocol::tell(spamd, m, class, timeout)? {
            learnt += 1;
        }
    }
    Ok(learnt)
}

fn deliver(class: Class) -> ! {
    let mut report = Vec::new();
    if let Err(e) = std::io::stdin()
        .take(MAX_MESSAGE + 1)
        .read_to_end(&mut report)
    {
        println!(
            "{PROG}: unable to read the message: {}",
            qsys::die::errstr(&e)
        );
        std::process::exit(111);
    }
    let Some(reporter) = learn::reporter(&report) else {
        let sender = std::env::var("SENDER").unwrap_or_default();
        println!(
            "{PROG}: ignored: not from a local or authenticated sender (sender {})",
            qsys::logsafe::text(sender.as_bytes())
        );
        std::process::exit(0);
    };
    if report.len() as u64 > MAX_MESSAGE {
        println!("{PROG}: ignored: report over {MAX_MESSAGE} bytes");
        std::process::exit(0);
    }
    let (spamd, timeout) = config();
    let messages = learn::reported(&report);
    match teach(&spamd, timeout, class, &messages) {
        Ok(n) => {
            println!(
                "{PROG}: learnt {n} of {} as {} from {}",
                messages.len(),
                class.word(),
                qsys::logsafe::text(reporter.as_bytes())
            );
            std::process::exit(0)
        }
        Err(e) => {
            println!("{PROG}: {} (#4.3.0)", qsys::logsafe::text(e.0.as_bytes()));
            std::process::exit(111)
        }
    }
}

/// The messages of the Maildir folder `dir` (unreadable files and those over
/// [`MAX_MESSAGE`] left out).
fn read_folder(dir: &std::path::Path) -> std::io::Result<Vec<Vec<u8>>> {
    Ok(learn::folder_messages(dir)?
        .iter()
        .filter_map(|f| learn::read_message(f, MAX_MESSAGE).ok().flatten())
        .collect())
}

/// Teach the messages of one folder, printing the result; false on a failure.
fn teach_folder(
    spamd: &str,
    timeout: std::time::Duration,
    class: Class,
    dir: &std::path::Path,
    messages: std::io::Result<Vec<Vec<u8>>>,
) -> bool {
    let messages = match messages {
        Ok(m) => m,
        Err(e) => {
            eprintln!(
                "{PROG}: warning: unable to read {}: {}",
                dir.display(),
                qsys::die::errstr(&e)
            );
            return false;
        }
    };
    match teach(spamd, timeout, class, &messages) {
        Ok(n) => {
            println!(
                "{PROG}: learnt {n} of {} as {} from {}",
                messages.len(),
                class.word(),
                dir.display()
            );
            true
        }
        Err(e) => {
            eprintln!("{PROG}: warning: {}: {e}", dir.display());
            false
        }
    }
}

/// Accounts of /etc/passwd: name, uid, gid, home.
fn accounts() -> Vec<(String, u32, u32, PathBuf)> {
    let text = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            let (uid, gid) = (f.get(2)?.parse().ok()?, f.get(3)?.parse().ok()?);
            Some((f.first()?.to_string(), uid, gid, PathBuf::from(f.get(5)?)))
        })
        .collect()
}

/// `junk`: each user's ~/Maildir/.Junk, read as that user when run by root.
fn junk(users: &[String]) -> bool {
    let (spamd, timeout) = config();
    let mut ok = true;
    for (name, uid, gid, home) in accounts() {
        let named = users.is_empty() || users.contains(&name);
        let folder = home.join("Maildir/.Junk");
        if !named || uid == 0 || !folder.is_dir() {
            continue;
        }
        let messages = if qsys::is_root() {
            read_as_user(uid, gid, &folder)
        } else {
            read_folder(&folder)
        };
        ok &= teach_folder(&spamd, timeout, Class::Spam, &folder, messages);
    }
    ok
}

/// The messages of `dir`, read by a child process that has become `uid`:`gid` (no
/// other group) and handed over a pipe: root never opens a file in a user's folder,
/// and only root talks to spamd (whose socket the user may not reach).
fn read_as_user(uid: u32, gid: u32, dir: &std::path::Path) -> std::io::Result<Vec<Vec<u8>>> {
    use nix::sys::wait::{WaitStatus, waitpid};
    use nix::unistd::{ForkResult, Gid, Uid, fork, pipe};
    let (r, w) = pipe()?;
    // SAFETY: this program is single-threaded; the child drops privileges, reads the
    // folder, writes to the pipe and exits.
    match unsafe { fork() }? {
        ForkResult::Child => {
            drop(r);
            let mut out = std::fs::File::from(w);
            let code = match qsys::prot::drop_verified(Uid::from_raw(uid), Gid::from_raw(gid)) {
                Ok(()) => match read_folder(dir).and_then(|m| learn::write_frames(&mut out, &m)) {
                    Ok(()) => 0,
                    Err(_) => 1,
                },
                Err(_) => 2,
            };
            // SAFETY: leave without running the parent's exit handlers twice.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => {
            drop(w);
            let got = learn::read_frames(&mut std::fs::File::from(r), MAX_MESSAGE, 100_000);
            match waitpid(child, None) {
                Ok(WaitStatus::Exited(_, 0)) => got,
                _ => Err(std::io::Error::other("the reading child failed")),
            }
        }
    }
}

fn main() {
    qsys::help!();
    qsys::die::install_panic_hook(PROG);
    let args: Vec<String> = std::env::args().skip(1).collect();
    let class = |w: Option<&String>| {
        w.and_then(|w| Class::from_word(w))
            .unwrap_or_else(|| usage())
    };
    let ok = match args.first().map(String::as_str) {
        Some("deliver") if args.len() == 2 => deliver(class(args.get(1))),
        Some("spam" | "ham") if args.len() >= 2 => {
            let (spamd, timeout) = config();
            let class = class(args.first());
            let mut ok = true;
            for dir in args[1..].iter().map(PathBuf::from) {
                ok &= teach_folder(&spamd, timeout, class, &dir, read_folder(&dir));
            }
            ok
        }
        Some("junk") => junk(&args[1..]),
        _ => usage(),
    };
    std::process::exit(if ok { 0 } else { 111 })
}
