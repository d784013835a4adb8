//! qmail-clean - clean up the queue directory
//!
//! SYNOPSIS
//!     qmail-clean   (started by qmail-start)
//!
//! DESCRIPTION
//!     Reads NUL-terminated commands from qmail-send on descriptor 0 and answers each
//!     with one byte on descriptor 1: `todo/N` removes HOME/queue/intd/N and todo/N
//!     (after preprocessing); `foop/N` removes intd/N and mess/S/N (after the last
//!     delivery). `+` done, `!` a removal failed, `x` malformed command. At start and
//!     every 30 commands, files in queue/pid older than 36 hours (left by a killed
//!     qmail-queue) are removed.
//!
//! USER
//!     qmailq (set by qmail-start).
//!
//! EXIT CODES
//!     0 at end of input; 111 unable to switch to the queue.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

fn unlink(p: &Path) -> bool {
    match std::fs::remove_file(p) {
        Ok(()) => true,
        Err(e) => e.kind() == std::io::ErrorKind::NotFound,
    }
}

fn clean_pid_dir(layout: &queue::Layout) {
    let now = qsys::now() as i64;
    let Ok(rd) = std::fs::read_dir(layout.dir.join("pid")) else {
        return;
    };
    for e in rd.flatten() {
        if let Ok(m) = e.metadata()
            && m.atime() + (queue::layout::OSSIFIED as i64) < now
        {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

fn main() {
    qsys::help!();
    qsys::die::install_panic_hook("qmail-clean");
    let home = qsys::home().unwrap_or_else(|_| {
        qsys::die::fatal("qmail-clean", "unable to find my home directory", 111)
    });
    let layout = queue::Layout::new(&home);
    clean_pid_dir(&layout);
    let mut input = BufReader::new(std::io::stdin().lock());
    let mut out = std::io::stdout().lock();
    let mut cmd = Vec::new();
    let mut count = 0u32;
    loop {
        cmd.clear();
        match input.read_until(0, &mut cmd) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        count += 1;
        if count.is_multiple_of(30) {
            clean_pid_dir(&layout);
        }
        let text = String::from_utf8_lossy(cmd.strip_suffix(b"\0").unwrap_or(&cmd)).into_owned();
        let reply = match text.split_once('/') {
            Some((kind, id)) if text.len() <= 100 && (kind == "foop" || kind == "todo") => {
                match queue::layout::parse_id(std::ffi::OsStr::new(id)) {
                    Some(id) => {
                        let second = if kind == "foop" {
                            layout.mess(id)
                        } else {
                            layout.todo(id)
                        };
                        if unlink(&layout.intd(id)) && unlink(&second) {
                            b'+'
                        } else {
                            b'!'
                        }
                    }
                    None => b'x',
                }
            }
            _ => b'x',
        };
        if out.write_all(&[reply]).and_then(|_| out.flush()).is_err() {
            return;
        }
    }
}
