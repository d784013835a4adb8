//! qmail-qstat - summarize status of the mail queue
//!
//! SYNOPSIS
//!     qmail-qstat
//!
//! DESCRIPTION
//!     Prints the number of messages in HOME/queue (files in mess/) and how many of
//!     them are not yet preprocessed (files in todo/), in qmail's wording.
//!
//! USER
//!     root or qmailq (the queue is not readable by others).
//!
//! EXIT CODES
//!     0; 111 when the queue cannot be read.

fn count(dir: &std::path::Path) -> std::io::Result<usize> {
    Ok(std::fs::read_dir(dir)?.count())
}

fn main() {
    qsys::help!();
    qsys::die::install_panic_hook("qmail-qstat");
    qsys::die::default_sigpipe();
    let fatal = |m: String| -> ! { qsys::die::fatal("qmail-qstat", &m, 111) };
    let home = qsys::home().unwrap_or_else(|_| fatal("unable to find my home directory".into()));
    let q = queue::Layout::new(&home).dir;
    let mut messages = 0;
    for split in 0..queue::SPLIT {
        messages += count(&q.join(format!("mess/{split}")))
            .unwrap_or_else(|e| fatal(format!("unable to read queue/mess: {e}")));
    }
    let todo =
        count(&q.join("todo")).unwrap_or_else(|e| fatal(format!("unable to read queue/todo: {e}")));
    println!("messages in queue: {messages}");
    println!("messages in queue but not yet preprocessed: {todo}");
}
