//! tcpserver - accept TCP connections and run a program for each
//!
//! SYNOPSIS
//!     tcpserver [ -461UXpPhHrRoOdDqQsva ] [ -A connections ] [ -c limit ] [ -C perclient ]
//!               [ -N newperclient ] [ -W window ] [ -x rules.cdb ] [ -B banner ]
//!               [ -g gid ] [ -u uid ] [ -b backlog ] [ -l localname ] [ -t timeout ]
//!               host port program [ arg ... ]
//!
//! DESCRIPTION
//!     Our ucspi-tcp 0.88 tcpserver (with ucspi-tcp6's IPv6). Binds host:port (host `0`:
//!     every IPv4 and IPv6 address; a literal address; a name from /etc/hosts or DNS; port
//!     by number or /etc/services name, `0` for any), listens, then drops to `-g`/`-u`.
//!     For each connection it forks a child that writes the `-B` banner, looks up the
//!     names it was asked to, consults the `-x` rules (reopened per connection, so
//!     `tcprules` can replace them live), sets the environment and runs program with the
//!     connection on fds 0 and 1. At `-c` running children (default 40) it stops
//!     accepting; new clients wait in the listen backlog (`-b`; default four times `-c`,
//!     at least 256, where ucspi-tcp has 20; the kernel caps it at net.core.somaxconn).
//!
//! STARTING AHEAD (-a)
//!     With -a, and only with -H, -R, -l NAME and no -B (the usual qmail run script),
//!     tcpserver starts the program for the next connection before that connection
//!     arrives, with TCPSERVER_AHEAD set and a socket to tcpserver on fds 0 and 1. At the
//!     next connection it sends that program the connection and the environment above
//!     (rules included); the program puts the connection on fds 0 and 1, sets the
//!     environment, removes TCPSERVER_AHEAD and goes on; tcpserver then starts the next
//!     one. Still one process per connection, each exec'ed fresh; the exec and the C
//!     library's start are only moved off the time a client waits for its greeting. The
//!     waiting program does not count against -c. Our programs started by tcpserver
//!     know this (qmail-smtpd, qmail-popup, rblsmtpd: the wait is in their common
//!     start); another program never says it is waiting: tcpserver then logs `warning:
//!     the program did not wait for its connection ...` once and starts it at each
//!     connection as without -a. A connection that arrives before the waiting program is
//!     ready gets a program started for it. The waiting program exits 0 when tcpserver
//!     ends.
//!
//! FORKING AHEAD (-A N)
//!     As -a, but the program started ahead (TCPSERVER_AHEAD=N) becomes a zygote in its
//!     start, before any of its own code has run or read anything: it forks a process
//!     that waits for the next connection, then another once that one has taken its
//!     connection, N times; then it exits (tcpserver starts the next one when it hands
//!     over the N-th connection). Each
//!     connection still has a process of its own, set up exactly as after an exec (it
//!     reads the control files, keys and rules after the hand-over), but an exec and
//!     the C library's start are paid once per N connections instead of once each. The
//!     zygote tells tcpserver which process took each connection and how each ended;
//!     the log and -c count them as tcpserver's own children (tcpserver is their
//!     subreaper, so those still running when their zygote exits stay counted). The
//!     processes of one zygote share its address-space layout (ASLR) where an exec
//!     would give each a new one: a process that crashes (SIGSEGV, SIGBUS, SIGILL,
//!     SIGFPE, SIGABRT, SIGSYS, SIGTRAP) ends its zygote at once, so no session starts
//!     on that layout after a crash (those running go on), and N bounds the sessions
//!     that share it (Postfix's smtpd serves 100 sessions in one process). When the
//!     zygote's queue is full a connection gets a program exec'ed for it. A connection
//!     queued for a
//!     zygote that ends before one of its processes took it is closed (logged as
//!     `warning: dropping connection from IP, the program serving it ended`). A program
//!     that knows -a but not -A serves one connection per exec, as with -a.
//!
//! PER-CLIENT LIMITS
//!     A client is its IPv4 address, or the /64 of its IPv6 address. `-C N`: at most N
//!     simultaneous connections per client (s6-tcpserver's -C). `-N N`: at most N new
//!     connections per client in each window of `-W SECS` seconds (default 60; the
//!     window starts at a client's first connection, as Postfix's anvil counts
//!     smtpd_client_connection_rate_limit). 0 or no option: no limit. A client over a
//!     limit is closed at once without running program and without taking one of
//!     the `-c` slots; with `-s` (the service speaks SMTP) it first gets
//!     `421 4.7.0 LOCALNAME Error: too many connections from your address`, LOCALNAME
//!     being `-l`'s name (else the local address). Other services are just closed.
//!     The rule of `-x` matching the client's address (its address, address
//!     prefixes, the default rule: not host-name or ident rules) may set either limit
//!     for its clients with MAXCONNIP="N" and MAXCONNRATEIP="N"; "0" exempts them, as
//!     Postfix's smtpd_client_event_limit_exceptions do (a trusted relay, a webmail
//!     host). Unlike the tcpserver-limits patch, MAXCONNIP="0" means no limit, not
//!     "refuse all" (that is `deny`). The counts live in this process's memory: exact,
//!     and lost on restart.
//!
//! OPTIONS
//!     -c N  concurrency limit.  -x FILE  rules cdb (-X: a missing FILE means allow).
//!     -B S  banner.  -u UID, -g GID  numeric ids (names accepted too; 0 = unchanged);
//!     -U  ids from $UID and $GID.  -v verbose, -Q errors only (default), -q silent.
//!     -h (default) / -H  look up TCPREMOTEHOST or not; -p / -P (default) paranoid check
//!     that the name maps back to the address.  -r (default) / -R  ident lookup of
//!     TCPREMOTEINFO or not; -t N its timeout (26 s).  -l NAME  TCPLOCALHOST without a
//!     lookup.  -o / -O (default) keep or kill IP options.  -d (default) / -D  Nagle or
//!     TCP_NODELAY.  -1  print the local port on stdout once listening.  -4  IPv4 only;
//!     -6  IPv6 semantics (the default for host 0 here).  -C N, -N N, -W SECS, -s:
//!     per-client limits, above.  -a  start the next program ahead, above.
//!     -A N  fork each connection's process from a program started ahead, N per exec,
//!     above.
//!
//! ENVIRONMENT
//!     Sets PROTO (TCP or TCP6), TCPLOCALIP, TCPLOCALPORT, TCPLOCALHOST, TCPREMOTEIP,
//!     TCPREMOTEPORT, TCPREMOTEHOST, TCPREMOTEINFO (and TCP6... for IPv6 peers), removing
//!     those whose value is unknown, then the variables of the matching rule. PTR
//!     lookups use $DNSCACHEIP, HOME/control/nameservers or /etc/resolv.conf.
//!
//! LOG (stderr, -v)
//!     `status: N/LIMIT`, `pid P from IP`, `ok P LHOST:LIP:LPORT RHOST:RIP:RINFO:RPORT`,
//!     `deny P ...`, `end P status S` (S the raw wait status), as ucspi-tcp writes them.
//!     With -v or -Q, each client refused by a per-client limit, one line:
//!     `refused IP port P: too many connections from this address (N open, limit L)` or
//!     `refused IP port P: too many new connections from this address (N in W s, limit
//!     L)`; a limit variable that is not a number: `warning: rule for IP: MAXCONNIP=...
//!     is not a number` (the option's limit applies).
//!
//! USER
//!     Started as root when it must bind a low port or drop to `-u`/`-g`; the children
//!     run as `-u`/`-g`.
//!
//! EXIT CODES
//!     100 usage; 111 unable to bind, listen or drop privileges. SIGTERM ends it with 0
//!     (running children go on). A denied child exits 100, a dropped one 111.

use ucspi::server::{self, PROG, USAGE};

fn main() {
    qsys::help!();
    qsys::die::install_panic_hook(PROG);
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let opts = match server::parse_args(&args) {
        Ok(o) => o,
        Err(why) => {
            if !why.is_empty() {
                ucspi::log::line(PROG, &why);
            }
            ucspi::log::line(PROG, &format!("usage: {USAGE}"));
            std::process::exit(100);
        }
    };
    let fatal = |msg: &str| -> ! {
        if opts.verbosity >= 1 {
            ucspi::log::line(PROG, &format!("fatal: {msg}"));
        }
        std::process::exit(111)
    };
    let listener = server::listen(&opts).unwrap_or_else(|e| fatal(&e));
    if opts.print_port {
        let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{port}");
        let _ = out.flush();
    }
    server::close_stdio();
    if let Err(e) = server::drop_privileges(&opts) {
        fatal(&e);
    }
    let e = server::serve(&opts, listener);
    fatal(&e);
}
