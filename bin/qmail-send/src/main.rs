//! qmail-send - deliver mail messages from the queue
//!
//! SYNOPSIS
//!     qmail-send   (started by qmail-start, never by hand)
//!
//! DESCRIPTION
//!     Preprocesses new messages in HOME/queue/todo (rewriting recipients through
//!     control/locals, virtualdomains, percenthack and envnoathost), hands each local
//!     recipient to qmail-lspawn and each remote one to qmail-rspawn, records every
//!     finished recipient in place, retries temporary failures on qmail's schedule
//!     for control/queuelifetime seconds (default 604800), sends one bounce per
//!     message (RFC 3464 with qmail's text; double bounces to control/doublebounceto
//!     at doublebouncehost), and has qmail-clean remove finished messages.
//!     A new message is delivered at once; its todo/N stays until the message is done
//!     or, after 100 ms, its info, local and remote files are written and fsynced
//!     (doc/todo-commit.md): a crash in that window repeats its deliveries. A
//!     message done within those 100 ms never has those files.
//!     Message files that a killed qmail-queue left in the queue (unread for 36
//!     hours, with no todo or info entry) are removed at start and about daily.
//!     Concurrency: control/concurrencylocal (10) and concurrencyremote (20), at most
//!     120 each.
//!
//! DESCRIPTORS
//!     0 log (qmail's line formats: `new msg N`, `info msg N: bytes ...`, `starting
//!     delivery D: msg N to local|remote ADDR`, `delivery D: success|deferral|failure:
//!     TEXT`, `bounce msg N qp P`, `end msg N`, `status: ...`); 1/2 qmail-lspawn;
//!     3/4 qmail-rspawn; 5/6 qmail-clean. Wakes on writes to HOME/queue/lock/trigger.
//!
//! SIGNALS
//!     TERM: finish deliveries in progress, commit what is not done, then exit 0.
//!     ALRM: retry every queued message now. HUP: reread the control files.
//!
//! USER
//!     qmails (set by qmail-start); holds HOME/queue/lock/sendmutex.
//!
//! EXIT CODES
//!     0 after TERM; 111 cannot start (another qmail-send runs, unreadable controls,
//!     no spawners) or a spawner or qmail-clean died.

fn main() {
    qsys::help!();
    qsys::die::install_panic_hook("qmail-send");
    qsys::block_control_signals();
    // The log is descriptor 0 (descriptor 1 is the pipe to qmail-lspawn).
    let alert = |m: &str| -> ! {
        let _ = nix::unistd::write(
            std::io::stdin(),
            format!("alert: cannot start: {m}\n").as_bytes(),
        );
        std::process::exit(111)
    };
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    let home = qsys::home().unwrap_or_else(|_| alert("unable to find my home directory"));
    let lock = std::fs::OpenOptions::new()
        .write(true)
        .open(home.join("queue/lock/sendmutex"))
        .unwrap_or_else(|e| alert(&format!("unable to open mutex: {e}")));
    let _lock = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusiveNonblock)
        .unwrap_or_else(|_| alert("qmail-send is already running"));
    let mut engine = send::engine::Engine::new(&home).unwrap_or_else(|e| alert(&e.to_string()));
    if let Err(e) = engine.scan_queue() {
        alert(&format!("unable to read the queue: {e}"));
    }
    match engine.run() {
        Ok(()) => std::process::exit(0),
        Err(_) => std::process::exit(111),
    }
}
