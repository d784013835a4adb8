//! qmail-popup - read a POP username and password
//!
//! SYNOPSIS
//!     qmail-popup [--pop3s] hostname subprogram [arg ...]
//!
//! DESCRIPTION
//!     Speaks the POP3 authorization state (RFC 1939, CAPA RFC 2449, STLS RFC 2595,
//!     AUTH PLAIN RFC 5034) on descriptors 0 and 1, greeting with `+OK <pid.time@
//!     hostname>` (the APOP timestamp). For each USER/PASS, APOP or AUTH PLAIN login it
//!     runs `subprogram` (checkpassword) with `user\0password\0timestamp\0` on
//!     descriptor 3; when that succeeds, its child (qmail-pop3d) owns the session.
//!     Failures are answered `-ERR authorization failed` after control/pop3authdelay
//!     seconds; after control/pop3authmax failures the connection is closed.
//!
//!     With --pop3s the connection is TLS from the first byte (port 995); otherwise
//!     STLS is offered when control/servercert.pem exists. Commands pipelined after
//!     STLS are discarded. With TLS, checkpassword and qmail-pop3d talk through a
//!     socketpair and the network child relays to the TLS session.
//!
//!     Two processes: the parent keeps the invoking uid (root under tcpserver) only to
//!     run checkpassword; the child that talks to the client runs as qmaild:nofiles and
//!     hands the parent one length-prefixed record of at most 512 bytes per attempt;
//!     the parent replaces the record's timestamp by the one it generated (a child
//!     cannot make it accept a replayed APOP digest).
//!     The TLS key is read by the parent before the child is forked.
//!
//! DESCRIPTORS
//!     0, 1: the client; 2: log.
//!
//! LOG (fd 2, one line each, `qmail-popup: pid N: ...`; NAME escaped and last)
//!     `auth failed ip=IP mech=USER|APOP|PLAIN user=NAME` (a failed login);
//!     `login ok ip=IP user=NAME` (a login that worked, written by the parent when the
//!     mailbox session ends: checkpassword execs qmail-pop3d, so its exit 0 comes then);
//!     `login refused: too many failures for the address|account ...`;
//!     `warning: control/NAME line 1: VALUE is not allowed (allowed: ...); using ...`
//!     (a malformed number or flag: the default applies; pop3plaintext: 0);
//!     `warning: PATH holds the private key and is readable by everyone ...`.
//!
//! CONTROL FILES
//!     servercert.pem, serverkey.pem: TLS certificate chain and key (see crates/tls).
//!     pop3plaintext: 1 allows USER/PASS and AUTH PLAIN without TLS, 0 refuses them;
//!         default: refused when servercert.pem exists, allowed when it does not.
//!     pop3authdelay: seconds to pause before a failure answer (default 2).
//!     pop3authmax: failed logins before disconnecting (default 3).
//!     timeoutpop3d: seconds to wait for the client (default 1200).
//!     authfaillimit: failed logins per hour from one IPv4 address or IPv6 /64,
//!         counted together with qmail-smtpd's failed AUTHs in HOME/smtpd/authfail/
//!         (default 10, 0 = none); beyond it logins from that address are refused for
//!         the rest of the hour.
//!     authfailaccountlimit: failed logins per hour for one account, from anywhere
//!         (HOME/smtpd/authfailaccount/, default 20, 0 = none); beyond it logins to
//!         that account are refused, except from an address that logged in to it
//!         within the hour. Each login counts as a failure before checkpassword runs
//!         (given back when it works), so parallel connections get exactly the limit.
//!         A counter that cannot be read or written refuses the login.
//!
//! ENVIRONMENT
//!     POP3PLAINTEXT (from tcprules): overrides control/pop3plaintext (0 refuses,
//!     anything else allows). TCPREMOTEIP: for the log and the counters (missing or
//!     empty: `unknown`). The environment is passed on
//!     to checkpassword.
//!
//! USER
//!     Started as root without -u by tcpserver; the network child becomes qmaild.
//!     Started by another user, everything runs as that user.
//!
//! EXIT CODES
//!     0 after QUIT or a finished session; 1 on errors, timeouts, too many failures;
//!     111 when the controls cannot be read or privileges cannot be dropped.

#![cfg_attr(not(test), no_main)]

use std::ffi::OsString;
use std::io::Write;

const PROG: &str = "qmail-popup";

fn die(msg: &str, code: i32) -> ! {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(format!("-ERR {msg}\r\n").as_bytes());
    let _ = out.flush();
    qsys::die::fatal(PROG, msg, code)
}

qsys::lean_main!(run);

fn run() {
    qsys::help!();
    qsys::die::install_panic_hook(PROG);
    let mut args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let pop3s = args.first().is_some_and(|a| a == "--pop3s");
    if pop3s {
        args.remove(0);
    }
    if args.len() < 2 {
        die("usage: qmail-popup [--pop3s] hostname subprogram", 1);
    }
    let hostname = args.remove(0).to_string_lossy().into_owned();
    let subprogram = args;
    pop3::set_nodelay(1);
    let home = qsys::home().unwrap_or_else(|e| die(&format!("unable to find my home: {e}"), 111));
    let policy = pop3::popup::Policy::load(&home, &hostname, pop3s)
        .unwrap_or_else(|e| die(&format!("unable to read controls: {e}"), 111));
    if pop3s && policy.tls.is_none() {
        die("--pop3s needs control/servercert.pem", 111);
    }
    let timestamp = format!("<{}.{}@{}>", std::process::id(), qsys::now(), hostname);
    let cloexec = nix::fcntl::OFlag::O_CLOEXEC;
    let (cred_r, cred_w) =
        nix::unistd::pipe2(cloexec).unwrap_or_else(|e| die(&format!("pipe: {e}"), 111));
    let (verd_r, verd_w) =
        nix::unistd::pipe2(cloexec).unwrap_or_else(|e| die(&format!("pipe: {e}"), 111));
    let (relay_c, relay_p) = std::os::unix::net::UnixStream::pair()
        .unwrap_or_else(|e| die(&format!("socketpair: {e}"), 111));
    // SAFETY: the program is single-threaded here.
    match unsafe { nix::unistd::fork() } {
        Err(e) => die(&format!("fork: {e}"), 111),
        Ok(nix::unistd::ForkResult::Child) => {
            drop((cred_r, verd_w, relay_p));
            if let Err(e) = qsys::prot::become_user("qmaild") {
                die(&format!("unable to become qmaild: {e}"), 111);
            }
            let link = pop3::popup::Link {
                creds: cred_w,
                verdict: verd_r,
                relay: relay_c,
            };
            std::process::exit(pop3::popup::Child::new(policy, link, timestamp).run());
        }
        Ok(nix::unistd::ForkResult::Parent { child }) => {
            drop((cred_w, verd_r, relay_c));
            let attempts = policy.max_failures;
            drop(policy);
            pop3::popup::parent(
                cred_r,
                verd_w,
                relay_p.into(),
                &subprogram,
                attempts,
                timestamp.as_bytes(),
            );
            let code = match nix::sys::wait::waitpid(child, None) {
                Ok(nix::sys::wait::WaitStatus::Exited(_, c)) => c,
                _ => 1,
            };
            std::process::exit(code);
        }
    }
}
