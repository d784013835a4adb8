//! qmail-smtpd - receive mail via SMTP
//!
//! SYNOPSIS
//!     qmail-smtpd                                          (port 25, MX)
//!     qmail-smtpd --submission checkpassword [args...]     (port 587)
//!     qmail-smtpd --smtps checkpassword [args...]          (port 465, implicit TLS)
//!
//! DESCRIPTION
//!     Speaks SMTP (RFC 5321 with PIPELINING, 8BITMIME, SIZE, ENHANCEDSTATUSCODES,
//!     SMTPUTF8, CHUNKING, STARTTLS, AUTH) with one client, reading fd 0 and writing fd 1, as run
//!     by tcpserver per connection (the run scripts use tcpserver -A: each session's process
//!     is forked from a qmail-smtpd exec'ed ahead, which has read nothing yet, 100 sessions
//!     per exec, control/sessionsperexec; doc/sessions.md). Each message goes to qmail-queue (HOME/bin/qmail-queue,
//!     or $QMAILQUEUE, or HOME/bin/qmail-qfilter when control/filters names a filter)
//!     with a Received line; the client hears 250 only after qmail-queue exited 0, i.e.
//!     the message is on disk (after the whole filter chain). A filter's own reason
//!     (exit 82 with `D`/`Z` text on fd 6) is the reply text: `554 5.7.1 text (#5.7.1)`
//!     (the status code from the text's `(#x.y.z)`; 5.3.0 / 4.3.0 without one; a text
//!     starting with its own reply code, `550 text (#5.7.1)`, gets that code). The
//!     authenticated user, if any, is passed to the chain as SMTPAUTHUSER, the HELO
//!     argument (escaped as for the log) as SMTPHELO. Without $QMAILQUEUE (or with it
//!     naming HOME/bin/qmail-queue), a message is first offered to qmail-queued on
//!     HOME/queued/socket; when the queue program is HOME/bin/qmail-qfilter, the whole
//!     message is read into a sealed memory file and offered to qmail-qfilterd on
//!     HOME/qfilterd/socket, which runs the chain and hands back the file to queue. Either
//!     server that is down, refuses or does not greet within 5 seconds means the program
//!     runs as before.
//!
//!     With --submission or --smtps, AUTH PLAIN/LOGIN (and CRAM-MD5 when
//!     control/authcrammd5 is 1) is offered and required before MAIL (unless tcprules
//!     set RELAYCLIENT for the client). The credentials
//!     go to `checkpassword [args...]` on fd 3 as `user\0password\0timestamp\0` (exit 0
//!     = accepted); typically `qmail-smtpd --submission HOME/bin/checkpassword /bin/true`.
//!     PLAIN and LOGIN are offered only under TLS, or when $AUTHPLAINTEXT is set.
//!     An authenticated user sends only as the addresses control/sendermap allows
//!     (user@locals, or the virtual user's own address, plus the map's lines): the
//!     envelope sender (the null sender <> only with `user:*`) and every mailbox of
//!     every From:, Sender:, Resent-From: and Resent-Sender: field (553 5.7.1). A
//!     message without a From: mailbox gets 554 5.6.0 (nothing is added for it); a
//!     display name with a word holding an @ other than the mailbox's own address
//!     (`From: boss@ours <joe@ours>`, also as an encoded word) and a field that is not
//!     a readable address list get 553 5.7.1.
//!     CRAM-MD5 sends `user\0hexdigest\0challenge\0`; our checkpassword verifies it for
//!     virtual users that keep a clear secret (qmail-vuser add --apop).
//!
//!     DATA ends at CR LF . CR LF only; a bare LF or bare CR in DATA gets 451 and the
//!     connection is closed with nothing queued (no SMTP smuggling). BDAT chunks
//!     (RFC 3030) are taken as they are, CR LF and a bare LF both ending a line (so
//!     clients that send bare LF have a way in), a bare CR refused with 554. Input
//!     pipelined after STARTTLS is discarded before the handshake.
//!
//! DESCRIPTORS
//!     0 client input, 1 client output, 2 log (one line per message, AUTH, TLS event).
//!     checkpassword gets fd 3; qmail-queue fd 0 (message) and fd 1 (envelope).
//!
//! LOG (fd 2, one line each, `qmail-smtpd: pid P: ...`)
//!     `message accepted qp Q from IP <sender> to N recipients [auth USER] [helo H]`;
//!     every refusal of MAIL, RCPT, DATA or BDAT, one line:
//!     `refused CMD [<addr>] from IP [user U]: CODE X.Y.Z text [(detail)]`, e.g.
//!     `refused RCPT <x@example.org> from 192.0.2.1: 550 5.1.1 sorry, no mailbox here by
//!     that name (#5.1.1)`; the codes: 550 unknown user (recipients.cdb, virtual users),
//!     552 too big (MAIL SIZE or DATA over databytes; the header too big to check), 553
//!     relay, rcpthosts, badmailfrom, badrcptto or a sender not the user's (detail
//!     `sendermap`, or the forged header field), 554 looping, bare CR, no From:, 5xx/4xx
//!     from a filter (detail `filter`) or qmail-queue (detail `qmail-queue`), 451 queue
//!     failure (`unable to run qmail-queue`), ratelimit or a bare LF/CR (the connection is
//!     closed), 452 maxrcpt, 530 tlsrequired or AUTH first;
//!     `AUTH MECH user U from IP`;
//!     `auth failed ip=IP mech=MECH user=U` (user= last, for log-driven blockers);
//!     `AUTH refused: too many AUTH commands ip=IP (clientauthrate: N per W s)`;
//!     `AUTH refused: N failures in the last hour ip=IP` and `AUTH refused: too many
//!     failures for the address|account in the last hour ip=IP user=U`;
//!     `discarded N bytes pipelined after STARTTLS`;
//!     `TLS handshake failed [sni NAME]: ...` (STARTTLS; on port 465 `TLS on connect
//!     failed [sni NAME]: ...`, as a warning);
//!     `client went away during DATA; nothing queued`;
//!     `warning: control/NAME line 1: VALUE is not allowed (allowed: ...); using ...`
//!     (a malformed number or flag; see control/README), and `alert: unable to read
//!     controls: ...` with 421 to the client (a malformed databytes, among others).
//!     Whatever the client sent (addresses, user names, HELO, SNI) is written as one
//!     field: printable ASCII except space, backslash and `=` as is, any other byte as
//!     `\ooo` (octal), cut after 256 bytes with `...` (qsys::logsafe::text).
//!
//! CONTROL FILES (HOME/control; see control/README)
//!     me, smtpgreeting, localiphost, timeoutsmtpd, rcpthosts, morercpthosts.cdb,
//!     badmailfrom, badrcptto, databytes (as qmail; a missing rcpthosts accepts no
//!     domain); maxrcpt (1000), tlsrequired (0), authcrammd5 (0), authfaildelay (5),
//!     authfaillimit (10 per hour per IPv4 address or IPv6 /64), authfailaccountlimit
//!     (20 per hour per account), sendermap (none), ratelimit (0 = none; recipients per
//!     account per hour), recipients.cdb (none: no recipient check; see qmail-recipients),
//!     servercert.pem / serverkey.pem (no TLS without them; a key readable by everyone
//!     is used with a warning); clientmessagerate, clientrcptrate, clientauthrate (0 =
//!     none; MAIL, RCPT, AUTH commands per client address per clientratewindow, 60 s,
//!     across sessions, as Postfix's smtpd_client_*_rate_limit: `450 4.7.1 Error: too
//!     much mail from IP`, `... too many recipients from IP`, `... too many AUTH
//!     commands from IP`). A malformed number or flag is logged and its default
//!     used (tlsrequired: 1); a malformed databytes refuses every session with 421
//!     (control/README).
//!
//! FILES
//!     HOME/smtpd/{rate,authfail,authfailaccount,authok,clientmessage,clientrcpt,
//!     clientauth}/  counters (the limits crate);
//!     HOME/smtpd must be writable by qmaild.
//!
//! ENVIRONMENT
//!     TCPREMOTEIP, TCPREMOTEHOST, TCPREMOTEINFO, TCPLOCALIP, TCPLOCALHOST (tcpserver);
//!     RELAYCLIENT (may relay; appended to each recipient), DATABYTES (overrides
//!     control/databytes), QMAILQUEUE; AUTHPLAINTEXT (allow PLAIN/LOGIN without TLS,
//!     e.g. from tcprules for 127.0.0.1), TLSREQUIRED (overrides control/tlsrequired),
//!     CLIENTMESSAGERATE, CLIENTRCPTRATE, CLIENTAUTHRATE (override the client rates;
//!     "0" exempts; a RELAYCLIENT client without them is not limited).
//!
//! USER
//!     qmaild:nofiles (tcpserver -u -g). Started as root, it becomes qmaild first.
//!
//! EXIT CODES
//!     0 after QUIT; 1 on EOF, timeout, network error or a refused connection;
//!     100 usage; 111 unable to find its home or to drop privileges.

#![cfg_attr(not(test), no_main)]

qsys::lean_main!(run);

fn run() {
    qsys::help!();
    qsys::die::install_panic_hook("qmail-smtpd");
    // An inherited SIGCHLD=ignore would make the kernel reap qmail-queue before we
    // read its exit code; the default disposition is needed.
    // SAFETY: installs the default disposition, no handler.
    unsafe {
        let _ = nix::sys::signal::signal(
            nix::sys::signal::Signal::SIGCHLD,
            nix::sys::signal::SigHandler::SigDfl,
        );
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (mode, checkpassword) = match smtpd::parse_args(&args) {
        Ok(x) => x,
        Err(e) => qsys::die::fatal("qmail-smtpd", &e, 100),
    };
    let home = qsys::home()
        .unwrap_or_else(|_| qsys::die::fatal("qmail-smtpd", "unable to find my home", 111));
    if qsys::is_root() && qsys::prot::become_user("qmaild").is_err() {
        qsys::die::fatal("qmail-smtpd", "unable to become qmaild", 111);
    }
    if std::env::set_current_dir(&home).is_err() {
        qsys::die::fatal("qmail-smtpd", "unable to switch to my home", 111);
    }
    std::process::exit(smtpd::serve(&home, mode, checkpassword));
}
