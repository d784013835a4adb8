//! tcpserver: accept TCP connections and run a program for each (ucspi-tcp 0.88 with the
//! IPv6 options of ucspi-tcp6; reference/daemontools-ucspi.md section 5).
//!
//! The parent binds (as root if it must), listens, drops to `-u`/`-g`, then accepts,
//! counts and reaps: at `-c` running children it stops accepting, so further clients wait
//! in the kernel's backlog and nothing is refused. Everything that can be slow or that
//! reads client data (banner, PTR and ident lookups, the rules cdb, the environment)
//! happens in the forked child, so a slow DNS server never holds up `accept`.
//!
//! With nothing slow to do (`-H -R -l NAME`, no banner; the usual qmail run script) the
//! parent reads the addresses and rules itself and starts the program with a clone that
//! shares its memory and runs beside it until the exec ([`crate::spawn`]): no page
//! tables to copy, no copy-on-write faults in a forked child, no wait for the exec, and
//! only what ucspi-tcp's child does before its exec. A program that cannot be run is
//! logged when its child is reaped, as ucspi-tcp's child logs it before exiting 111.
//! Denied clients, banners, DNS and ident still go through the fork.
//!
//! With `-a` on that path, the next connection's program is started before the
//! connection arrives and waits for it ([`crate::ahead`], [`qsys::ahead`]): the parent
//! hands it the connection and the environment changes at `accept`, and starts the next
//! one. The start of a program (exec and the C library's start) is then off the time a
//! client waits for its greeting. One process per connection as before; the spare does
//! not count against `-c`. With `-A N` the program started ahead forks each
//! connection's process from itself, N per exec ([`qsys::zygote`]); tcpserver counts
//! and logs those processes as its own children from the zygote's reports, and reaps
//! them itself (as their subreaper) once their zygote has gone.
//!
//! Per-client limits (`-C`, `-N` per `-W`, the rule variables of [`crate::perclient`])
//! are decided by the parent right after `accept`, from the rule matching the client's
//! address alone (a host-name or ident rule, known only in the child, cannot set them).
//! A refused client is closed at once, after `421` when `-s` says the service speaks
//! SMTP, with one log line; it never takes a child slot.
//!
//! Signals reach the parent through a signalfd polled beside the listening socket:
//! SIGCHLD reaps every finished child (`end PID status S`, the raw wait status), SIGTERM
//! ends the parent at once (running children go on).

use std::ffi::{CString, OsString};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::time::Duration;

use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::socket::{self, sockopt};

use crate::ahead::{Ahead, Event, HandOver, Reaped};
use crate::env::{self, Conn};
use crate::log::{self, Endpoints};

pub const PROG: &str = "tcpserver";

pub const USAGE: &str = "tcpserver [ -461UXpPhHrRoOdDqQsva ] [ -A connections ] [ -c limit ] [ -C perclient ] [ -N newperclient ] [ -W window ] [ -x rules.cdb ] [ -B banner ] [ -g gid ] [ -u uid ] [ -b backlog ] [ -l localname ] [ -t timeout ] host port program";

/// tcpserver's options (defaults as ucspi-tcp 0.88).
#[derive(Debug, Clone)]
pub struct Options {
    pub limit: usize,
    /// `-C` and `-N`: the limits per client address unless a rule sets them.
    pub per_client: crate::perclient::Limits,
    /// `-W`: the window of `-N`.
    pub rate_window: Duration,
    /// `-s`: the service speaks SMTP (a refused client gets a 421 reply).
    pub smtp: bool,
    /// `-a` (1) and `-A N` (N): start the next connection's program ahead of it
    /// (`-H -R -l NAME`, no `-B`); with N above 1 it forks a process for each of N
    /// connections. 0 without either.
    pub ahead: u32,
    pub rules: Option<PathBuf>,
    pub rules_missing_ok: bool,
    pub banner: Option<Vec<u8>>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// 0 silent, 1 errors only (default), 2 every connection.
    pub verbosity: u8,
    pub remote_host: bool,
    pub paranoid: bool,
    pub remote_info: bool,
    pub ident_timeout: Duration,
    pub local_name: Option<String>,
    /// The listen backlog: `-b`, else [`default_backlog`] of `-c`.
    pub backlog: i32,
    pub keep_ip_options: bool,
    pub nodelay: bool,
    pub print_port: bool,
    pub v4only: bool,
    pub host: String,
    pub port: String,
    pub program: Vec<OsString>,
}

/// Parse the arguments after argv[0]. `Err` carries the fatal text (usage or a bad value).
pub fn parse_args(args: &[OsString]) -> Result<Options, String> {
    let (opts, rest) = qsys::getopt::getopt(args, "461UXpPhHrRoOdDqQsvaA:c:C:N:W:x:B:g:u:b:l:t:I:")
        .map_err(|c| format!("illegal option -- {}", c as char))?;
    let mut o = Options {
        limit: 40,
        per_client: crate::perclient::Limits::default(),
        rate_window: Duration::from_secs(60),
        smtp: false,
        ahead: 0,
        rules: None,
        rules_missing_ok: false,
        banner: None,
        uid: None,
        gid: None,
        verbosity: 1,
        remote_host: true,
        paranoid: false,
        remote_info: true,
        ident_timeout: Duration::from_secs(26),
        local_name: None,
        backlog: 0,
        keep_ip_options: false,
        nodelay: false,
        print_port: false,
        v4only: false,
        host: String::new(),
        port: String::new(),
        program: Vec::new(),
    };
    let mut backlog = None;
    for opt in opts {
        let arg = opt.arg.unwrap_or_default();
        let text = arg.to_string_lossy().into_owned();
        let num = |what: &str| -> Result<u64, String> {
            text.parse::<u64>()
                .map_err(|_| format!("{what} must be a number: {text}"))
        };
        match opt.letter {
            b'4' => o.v4only = true,
            b'6' => o.v4only = false,
            b'1' => o.print_port = true,
            b'U' => {
                o.uid = env_id("UID")?;
                o.gid = env_id("GID")?;
            }
            b'X' => o.rules_missing_ok = true,
            b'p' => o.paranoid = true,
            b'P' => o.paranoid = false,
            b'h' => o.remote_host = true,
            b'H' => o.remote_host = false,
            b'r' => o.remote_info = true,
            b'R' => o.remote_info = false,
            b'o' => o.keep_ip_options = true,
            b'O' => o.keep_ip_options = false,
            b'd' => o.nodelay = false,
            b'D' => o.nodelay = true,
            b'q' => o.verbosity = 0,
            b'Q' => o.verbosity = 1,
            b'v' => o.verbosity = 2,
            b'c' => o.limit = (num("limit")?).clamp(1, 1 << 20) as usize,
            b'C' => o.per_client.concurrent = num("perclient")?,
            b'N' => o.per_client.rate = num("newperclient")?,
            b'W' => o.rate_window = Duration::from_secs((num("window")?).clamp(1, 86_400 * 365)),
            b's' => o.smtp = true,
            b'a' => o.ahead = o.ahead.max(1),
            b'A' => o.ahead = (num("connections")?).clamp(1, 1_000_000) as u32,
            b'x' => o.rules = Some(PathBuf::from(arg)),
            b'B' => o.banner = Some(arg.as_bytes().to_vec()),
            b'g' => o.gid = id_arg(&text, false)?,
            b'u' => o.uid = id_arg(&text, true)?,
            b'b' => backlog = Some((num("backlog")?).clamp(1, i32::MAX as u64) as i32),
            b'l' => o.local_name = Some(text),
            b't' => o.ident_timeout = Duration::from_secs(num("timeout")?),
            _ => {} // -I interface: scoped addresses take their scope from the host
        }
    }
    let [host, port, program @ ..] = rest.as_slice() else {
        return Err(String::new());
    };
    if program.is_empty() {
        return Err(String::new());
    }
    o.backlog = backlog.unwrap_or_else(|| default_backlog(o.limit));
    o.host = host.to_string_lossy().into_owned();
    o.port = port.to_string_lossy().into_owned();
    o.program = program.to_vec();
    Ok(o)
}

/// The listen backlog without `-b`: four times the concurrency limit, at least 256.
/// ucspi-tcp's 20 made the kernel drop SYNs when 50 clients connected at once while
/// `-c` children were busy; the kernel caps the value at `net.core.somaxconn`.
pub fn default_backlog(limit: usize) -> i32 {
    limit.saturating_mul(4).clamp(256, i32::MAX as usize) as i32
}

/// `-u`/`-g`: a number (0 means "leave as is", as in ucspi-tcp) or, as an extension, a
/// user or group name.
fn id_arg(text: &str, user: bool) -> Result<Option<u32>, String> {
    if let Ok(n) = text.parse::<u32>() {
        return Ok((n != 0).then_some(n));
    }
    let found = if user {
        nix::unistd::User::from_name(text)
            .ok()
            .flatten()
            .map(|u| u.uid.as_raw())
    } else {
        nix::unistd::Group::from_name(text)
            .ok()
            .flatten()
            .map(|g| g.gid.as_raw())
    };
    found
        .map(Some)
        .ok_or_else(|| format!("unknown {}: {text}", if user { "user" } else { "group" }))
}

fn env_id(name: &str) -> Result<Option<u32>, String> {
    match std::env::var(name) {
        Ok(v) => v
            .parse::<u32>()
            .map(|n| (n != 0).then_some(n))
            .map_err(|_| format!("${name} is not a number")),
        Err(_) => Err(format!("${name} is not set")),
    }
}

/// Bind and listen as the options say; the first address of the host that binds wins.
pub fn listen(o: &Options) -> Result<TcpListener, String> {
    let port = crate::addr::system_port(&o.port)
        .ok_or_else(|| format!("unable to figure out port number for {}", o.port))?;
    let ips = crate::addr::host_addrs(&o.host, o.v4only)?;
    let mut last = String::from("no address");
    for ip in ips {
        match bind_one(SocketAddr::new(ip, port), o.backlog) {
            Ok(l) => return Ok(l),
            Err(e) if ip.is_unspecified() && ip.is_ipv6() => {
                // no IPv6 on this host: fall back to IPv4 "any"
                let any4 = SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), port);
                match bind_one(any4, o.backlog) {
                    Ok(l) => return Ok(l),
                    Err(_) => last = format!("unable to bind: {}", qsys::die::errstr(&e)),
                }
            }
            Err(e) => last = format!("unable to bind: {}", qsys::die::errstr(&e)),
        }
    }
    Err(last)
}

fn bind_one(sa: SocketAddr, backlog: i32) -> std::io::Result<TcpListener> {
    let family = if sa.is_ipv4() {
        socket::AddressFamily::Inet
    } else {
        socket::AddressFamily::Inet6
    };
    let fd = socket::socket(
        family,
        socket::SockType::Stream,
        socket::SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    socket::setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    if sa.is_ipv6() {
        // `::` takes IPv4 clients too (dual stack), as ucspi-tcp6 binds host 0
        socket::setsockopt(&fd, sockopt::Ipv6V6Only, &false)?;
    }
    socket::bind(fd.as_raw_fd(), &socket::SockaddrStorage::from(sa))?;
    let backlog = socket::Backlog::new(backlog).unwrap_or(socket::Backlog::MAXCONN);
    socket::listen(&fd, backlog)?;
    Ok(TcpListener::from(fd))
}

/// Drop to `-g` then `-u` through qsys::prot's verified drop: `-g` alone keeps the uid
/// and sets exactly that one group; `-u` alone also sets the supplementary groups to the
/// current gid only (stricter than ucspi-tcp, which kept root's other groups).
pub fn drop_privileges(o: &Options) -> Result<(), String> {
    use nix::unistd::{Gid, Uid};
    if o.uid.is_none() && o.gid.is_none() {
        return Ok(());
    }
    let gid = o.gid.map(Gid::from_raw).unwrap_or_else(nix::unistd::getgid);
    let uid = o.uid.map(Uid::from_raw).unwrap_or_else(nix::unistd::getuid);
    qsys::prot::drop_verified(uid, gid).map_err(|e| match e {
        qsys::prot::DropError::NotHeld => "unable to set uid: still privileged".to_string(),
        e => format!("unable to drop privileges: {e}"),
    })
}

fn status_line(o: &Options, n: usize) {
    if o.verbosity >= 2 {
        log::line(PROG, &format!("status: {n}/{}", o.limit));
    }
}

/// The connections the parent counts: `-c`'s count, the children serving them, and the
/// programs started ahead.
struct Running {
    /// Connections admitted and not ended: children, and hand-overs to a zygote no
    /// process reported taken yet.
    count: usize,
    /// The pids serving connections (a reaped pid not among them is a spare or, under
    /// `-A`, an orphan that tcpserver reaps as their subreaper).
    children: std::collections::HashSet<u32>,
    clients: crate::perclient::Table,
    ahead: Ahead<Accepted>,
    /// The direct way's program, when connections take it ([`direct`]).
    launcher: Option<crate::spawn::Launcher>,
}

/// A connection handed to a zygote, as noted until a process reports it took it.
#[derive(Debug, Clone)]
struct Accepted {
    key: String,
    local: SocketAddr,
    remote: SocketAddr,
}

/// Serve forever (until SIGTERM). Returns only on a fatal error.
pub fn serve(o: &Options, listener: TcpListener) -> String {
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGCHLD);
    mask.add(Signal::SIGTERM);
    if let Err(e) = mask.thread_block() {
        return format!("unable to block signals: {e}");
    }
    // blocked, SIGTERM still reaches the signalfd; its default disposition is for the
    // programs, which ucspi-tcp's child also gives SIGTERM back (`sig_uncatch`): a
    // tcpserver started with SIGTERM ignored must not hand that on (every way of
    // starting one: forked, the direct way's clone, the program started ahead)
    // SAFETY: installs the default disposition, no handler.
    unsafe {
        let _ = nix::sys::signal::signal(Signal::SIGTERM, nix::sys::signal::SigHandler::SigDfl);
    }
    let sfd = match SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC) {
        Ok(s) => s,
        Err(e) => return format!("unable to create signalfd: {e}"),
    };
    let mut r = Running {
        count: 0,
        children: std::collections::HashSet::new(),
        clients: crate::perclient::Table::new(o.rate_window),
        ahead: Ahead::new(if direct(o) { o.ahead } else { 0 }),
        launcher: if direct(o) {
            crate::spawn::Launcher::new(&o.program)
        } else {
            None
        },
    };
    // a zygote's processes outlive it: they become ours to reap
    // SAFETY: prctl with an integer argument.
    if r.ahead.forking() && unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1) } != 0 {
        return format!(
            "unable to become a subreaper: {}",
            qsys::die::errstr(&std::io::Error::last_os_error())
        );
    }
    refill(o, &mut r.ahead);
    status_line(o, r.count);
    loop {
        let accepting = r.count < o.limit;
        let mut fds = vec![nix::poll::PollFd::new(
            sfd.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        if accepting {
            fds.push(nix::poll::PollFd::new(
                listener.as_fd(),
                nix::poll::PollFlags::POLLIN,
            ));
        }
        let watched = fds.len();
        fds.extend(
            r.ahead
                .sockets()
                .into_iter()
                .map(|fd| nix::poll::PollFd::new(fd, nix::poll::PollFlags::POLLIN)),
        );
        match nix::poll::poll(&mut fds, nix::poll::PollTimeout::NONE) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return format!("unable to poll: {e}"),
        }
        let sig_ready = fds[0].any().unwrap_or(false);
        let conn_ready = accepting && fds.get(1).and_then(|f| f.any()).unwrap_or(false);
        let reports = fds[watched..].iter().any(|f| f.any().unwrap_or(false));
        drop(fds);
        if reports {
            read_reports(o, &mut r);
        }
        if sig_ready {
            while let Ok(Some(info)) = sfd.read_signal() {
                if info.ssi_signo == Signal::SIGTERM as u32 {
                    std::process::exit(0);
                }
            }
            reap(o, &mut r);
            if r.ahead.renew() {
                refill(o, &mut r.ahead);
            }
        }
        if conn_ready {
            let Ok((stream, peer)) = listener.accept() else {
                continue;
            };
            let remote = crate::addr::unmap(peer);
            let ip_rule = rule_for(o, remote.ip(), None, None);
            let key = limits::ip_key(&remote.ip().to_string());
            if !admit(o, &mut r.clients, &key, &stream, remote, &ip_rule) {
                continue;
            }
            r.count += 1;
            status_line(o, r.count);
            match spawn_direct(
                o,
                &stream,
                remote,
                ip_rule,
                &key,
                &mut r.ahead,
                &mut r.launcher,
            ) {
                Some(Ok(HandOver::Served(pid))) => {
                    r.children.insert(pid);
                    r.clients.attach(pid, &key);
                    drop(stream);
                    refill(o, &mut r.ahead);
                    continue;
                }
                Some(Ok(_)) => {
                    drop(stream);
                    refill(o, &mut r.ahead);
                    continue;
                }
                Some(Err(why)) => {
                    r.count -= 1;
                    r.clients.release(&key);
                    if o.verbosity >= 1 {
                        log::line(PROG, &format!("warning: dropping connection, {why}"));
                    }
                    status_line(o, r.count);
                    continue;
                }
                None => {}
            }
            // SAFETY: the parent is single-threaded; the child only execs or exits.
            match unsafe { nix::unistd::fork() } {
                Ok(nix::unistd::ForkResult::Child) => {
                    drop(listener);
                    drop(sfd);
                    let code = child(o, stream);
                    std::process::exit(code);
                }
                Ok(nix::unistd::ForkResult::Parent { child }) => {
                    r.children.insert(child.as_raw() as u32);
                    r.clients.attach(child.as_raw() as u32, &key);
                    drop(stream)
                }
                Err(e) => {
                    r.count -= 1;
                    r.clients.release(&key);
                    if o.verbosity >= 1 {
                        log::line(
                            PROG,
                            &format!("warning: dropping connection, unable to fork: {e}"),
                        );
                    }
                    status_line(o, r.count);
                }
            }
        }
    }
}

/// The fast path, when nothing slow is asked for (`-H`, `-R`, `-l NAME`, no banner): the
/// parent itself reads the addresses and the rules and hands the connection to the
/// program started ahead (`-a`, `-A`) or starts the program with a clone that runs
/// beside tcpserver ([`crate::spawn`]), which spares copying the parent's page tables
/// and the child's copy-on-write faults of a fork. `None` hands the connection to the
/// forked child instead: lookups to do, a banner to write, a client to deny, or rules
/// that cannot be read (the child logs and answers those exactly as ucspi-tcp does).
/// [`HandOver::Queued`] means a zygote's process will report it took it
/// ([`Event::Took`]), which logs it then.
fn spawn_direct(
    o: &Options,
    stream: &TcpStream,
    remote: SocketAddr,
    ip_rule: Result<Option<crate::rules::Decision>, String>,
    key: &str,
    ahead: &mut Ahead<Accepted>,
    launcher: &mut Option<crate::spawn::Launcher>,
) -> Option<Result<HandOver, String>> {
    if !direct(o) {
        return None;
    }
    let launcher = launcher.as_mut()?;
    let local_host = o.local_name.clone()?;
    let local = crate::addr::unmap(stream.local_addr().ok()?);
    let conn = Conn {
        local,
        remote,
        local_host: Some(local_host),
        remote_host: None,
        remote_info: None,
    };
    let mut changes = env::changes(&conn);
    if let Some(d) = ip_rule.ok()? {
        if d.deny {
            return None;
        }
        changes.extend(d.env.into_iter().map(|(k, v)| (k, Some(v))));
    }
    kill_ip_options(o, stream, remote);
    let accepted = Accepted {
        key: key.to_string(),
        local,
        remote,
    };
    let handed = match ahead.hand_over(stream, &changes, &accepted) {
        Ok(h) => h,
        Err(warning) => {
            log::line(PROG, &format!("warning: {warning}"));
            HandOver::No
        }
    };
    let pid = match handed {
        HandOver::Queued => return Some(Ok(HandOver::Queued)),
        HandOver::Served(pid) => pid,
        HandOver::No => match launcher.spawn(stream.as_raw_fd(), &changes) {
            Ok(pid) => pid,
            Err(e) => {
                return Some(Err(format!("unable to fork: {}", qsys::die::errstr(&e))));
            }
        },
    };
    log_start(o, pid, &accepted);
    Some(Ok(HandOver::Served(pid)))
}

/// `pid from IP` and the `ok` line for a connection served on the direct way.
fn log_start(o: &Options, pid: u32, a: &Accepted) {
    if o.verbosity >= 2 {
        log::line(PROG, &format!("pid {pid} from {}", a.remote.ip()));
        let (lip, rip) = (a.local.ip().to_string(), a.remote.ip().to_string());
        let e = Endpoints {
            local_host: o.local_name.as_deref(),
            local_ip: &lip,
            local_port: a.local.port(),
            remote_host: None,
            remote_ip: &rip,
            remote_info: None,
            remote_port: a.remote.port(),
        };
        log::line(PROG, &log::verdict("ok", pid, &e));
    }
}

/// Read the spare's and the zygotes' reports, and count what they say.
fn read_reports(o: &Options, r: &mut Running) {
    let (events, warning) = r.ahead.reports();
    if let Some(w) = warning
        && o.verbosity >= 1
    {
        log::line(PROG, &format!("warning: {w}"));
    }
    for e in events {
        on_event(o, r, e);
    }
}

/// Count one zygote's event as if its process were our child.
fn on_event(o: &Options, r: &mut Running, e: Event<Accepted>) {
    match e {
        Event::Took(pid, a) => {
            r.children.insert(pid);
            r.clients.attach(pid, &a.key);
            log_start(o, pid, &a);
        }
        Event::Ended(pid, status) => ended(o, r, pid, status),
        Event::Lost(a) => {
            r.count = r.count.saturating_sub(1);
            r.clients.release(&a.key);
            if o.verbosity >= 1 {
                log::line(
                    PROG,
                    &format!(
                        "warning: dropping connection from {}, the program serving it ended",
                        a.remote.ip()
                    ),
                );
            }
            status_line(o, r.count);
        }
    }
}

/// A connection's process ended: one less running, `end PID status S`.
fn ended(o: &Options, r: &mut Running, pid: u32, status: i32) {
    if !r.children.remove(&pid) {
        return;
    }
    r.count = r.count.saturating_sub(1);
    r.clients.finished(pid);
    if o.verbosity >= 2 {
        log::line(PROG, &format!("end {pid} status {status}"));
    }
    status_line(o, r.count);
}

/// Whether connections take the direct way ([`spawn_direct`]): nothing slow asked for.
fn direct(o: &Options) -> bool {
    !(o.remote_host || o.remote_info || o.banner.is_some()) && o.local_name.is_some()
}

/// Start the next spare for `-a`, logging why not when that fails.
fn refill(o: &Options, ahead: &mut Ahead<Accepted>) {
    if let Err(warning) = ahead.refill(&o.program)
        && o.verbosity >= 1
    {
        log::line(PROG, &format!("warning: {warning}"));
    }
}

/// Check the client against its per-client limits (`-C`, `-N`, or its address rule's
/// variables); true when it may be served. A refused client is told so (421 with `-s`),
/// closed, and logged in one line.
fn admit(
    o: &Options,
    clients: &mut crate::perclient::Table,
    key: &str,
    stream: &TcpStream,
    remote: SocketAddr,
    ip_rule: &Result<Option<crate::rules::Decision>, String>,
) -> bool {
    let mut limits = o.per_client;
    if let Ok(Some(d)) = ip_rule {
        let (ruled, bad) = limits.with_rule(&d.env);
        limits = ruled;
        if let Some(why) = bad
            && o.verbosity >= 1
        {
            log::line(PROG, &format!("warning: rule for {}: {why}", remote.ip()));
        }
    }
    let verdict = clients.admit(key, limits, std::time::Instant::now());
    if verdict == crate::perclient::Verdict::Admit {
        return true;
    }
    if o.smtp {
        let host = match o.local_name.as_deref() {
            Some(n) if !n.is_empty() && n != "0" => n.to_string(),
            _ => stream
                .local_addr()
                .map(|a| crate::addr::unmap(a).ip().to_string())
                .unwrap_or_else(|_| "localhost".into()),
        };
        let text = crate::perclient::smtp_refusal(&host);
        // a new socket's send buffer takes a line; never wait for a client here
        let _ = socket::send(
            stream.as_raw_fd(),
            text.as_bytes(),
            socket::MsgFlags::MSG_DONTWAIT | socket::MsgFlags::MSG_NOSIGNAL,
        );
        let _ = stream.shutdown(std::net::Shutdown::Write);
    }
    if o.verbosity >= 1 {
        log::line(
            PROG,
            &crate::perclient::refusal_log(
                &remote.ip().to_string(),
                remote.port(),
                verdict,
                o.rate_window,
            ),
        );
    }
    false
}

/// The rule of `-x` that matches the client: `Ok(None)` without rules, or when the file is
/// missing under `-X`; the error says what could not be read, in ucspi-tcp's words. The
/// file is opened for every connection, so `tcprules` can replace it while we run.
fn rule_for(
    o: &Options,
    ip: IpAddr,
    host: Option<&str>,
    info: Option<&str>,
) -> Result<Option<crate::rules::Decision>, String> {
    let Some(path) = &o.rules else {
        return Ok(None);
    };
    let unreadable = |e: &std::io::Error| {
        format!(
            "unable to read {}: {}",
            path.display(),
            qsys::die::errstr(e)
        )
    };
    match control::cdbfile::Cdb::open(path) {
        Ok(Some(db)) => crate::rules::lookup(&db, &ip.to_string(), host, info)
            .map(Some)
            .map_err(|e| unreadable(&e)),
        Ok(None) if o.rules_missing_ok => Ok(None),
        Ok(None) => Err(unreadable(&std::io::ErrorKind::NotFound.into())),
        Err(e) => Err(unreadable(&e)),
    }
}

/// `-O` (the default): clear IP options such as a source route; `-D`: TCP_NODELAY.
fn kill_ip_options(o: &Options, stream: &TcpStream, remote: SocketAddr) {
    if !o.keep_ip_options && remote.is_ipv4() {
        // SAFETY: IP_OPTIONS with a null buffer of length 0 clears any source route.
        unsafe {
            libc::setsockopt(
                stream.as_raw_fd(),
                libc::IPPROTO_IP,
                libc::IP_OPTIONS,
                std::ptr::null(),
                0,
            );
        }
    }
    if o.nodelay {
        let _ = stream.set_nodelay(true);
    }
}

/// Reap every finished child, logging `end PID status S` (the raw wait status) and the
/// new count after each.
fn reap(o: &Options, r: &mut Running) {
    loop {
        let mut status: libc::c_int = 0;
        // SAFETY: plain waitpid on any child with a valid status pointer.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid <= 0 {
            return;
        }
        let pid = pid as u32;
        let (what, events) = r.ahead.reaped(pid);
        for e in events {
            on_event(o, r, e);
        }
        match what {
            Reaped::Other => {}
            Reaped::Spare => continue,
            Reaped::SpareNeverReady(warning) => {
                if o.verbosity >= 1 {
                    log::line(PROG, &format!("warning: {warning}"));
                }
                continue;
            }
        }
        if !r.children.contains(&pid) {
            // an orphan of a zygote that said it took a connection just before it ended
            read_reports(o, r);
        }
        if let Some(e) = r.launcher.as_mut().and_then(|l| l.reaped(pid))
            && o.verbosity >= 1
        {
            // what ucspi-tcp's forked child logs before it exits 111
            log::line(
                PROG,
                &format!(
                    "warning: dropping connection, unable to run {}: {}",
                    o.program[0].to_string_lossy(),
                    qsys::die::errstr(&e)
                ),
            );
        }
        ended(o, r, pid, status);
    }
}

/// The per-connection work in the forked child; returns the exit code when it does not
/// exec (100 denied, 111 dropped).
fn child(o: &Options, stream: TcpStream) -> i32 {
    let pid = std::process::id();
    let drop_conn = |what: &str| -> i32 {
        if o.verbosity >= 1 {
            log::line(PROG, &format!("warning: dropping connection, {what}"));
        }
        111
    };
    let remote = match stream.peer_addr() {
        Ok(r) => crate::addr::unmap(r),
        Err(e) => {
            return drop_conn(&format!(
                "unable to get remote address: {}",
                qsys::die::errstr(&e)
            ));
        }
    };
    if o.verbosity >= 2 {
        log::line(PROG, &format!("pid {pid} from {}", remote.ip()));
    }
    kill_ip_options(o, &stream, remote);
    if let Some(b) = &o.banner {
        use std::io::Write;
        if let Err(e) = (&stream).write_all(b) {
            return drop_conn(&format!(
                "unable to print banner: {}",
                qsys::die::errstr(&e)
            ));
        }
    }
    let local = match stream.local_addr() {
        Ok(l) => crate::addr::unmap(l),
        Err(e) => {
            return drop_conn(&format!(
                "unable to get local address: {}",
                qsys::die::errstr(&e)
            ));
        }
    };
    let needs_dns = o.local_name.is_none() || o.remote_host;
    let resolver = if needs_dns {
        let dnscache = std::env::var("DNSCACHEIP").ok();
        let home = qsys::home().ok();
        let servers = dns::servers_for_ucspi(dnscache.as_deref(), home.as_deref());
        dns::Dns::with_timeout(&servers, Duration::from_secs(5), 2).ok()
    } else {
        None
    };
    let first_name = |ip: IpAddr| -> Option<String> {
        let r = resolver.as_ref()?;
        r.ptr(ip)
            .ok()?
            .into_iter()
            .next()
            .map(|n| n.to_ascii_lowercase())
    };
    let local_host = match &o.local_name {
        Some(n) => Some(n.clone()),
        None => first_name(local.ip()),
    };
    let mut remote_host = if o.remote_host {
        first_name(remote.ip())
    } else {
        None
    };
    if o.paranoid
        && let (Some(name), Some(r)) = (&remote_host, resolver.as_ref())
    {
        let confirmed = r
            .ips(name)
            .map(|v| v.contains(&remote.ip()))
            .unwrap_or(false);
        if !confirmed {
            remote_host = None;
        }
    }
    drop(resolver);
    let remote_info = if o.remote_info {
        crate::ident::lookup(local, remote, o.ident_timeout)
    } else {
        None
    };
    let conn = Conn {
        local,
        remote,
        local_host,
        remote_host,
        remote_info,
    };
    let mut changes = env::changes(&conn);
    let mut deny = false;
    match rule_for(
        o,
        remote.ip(),
        conn.remote_host.as_deref(),
        conn.remote_info.as_deref(),
    ) {
        Ok(Some(d)) => {
            deny = d.deny;
            changes.extend(d.env.into_iter().map(|(k, v)| (k, Some(v))));
        }
        Ok(None) => {}
        Err(why) => return drop_conn(&why),
    }
    if o.verbosity >= 2 {
        let lip = local.ip().to_string();
        let rip = remote.ip().to_string();
        let e = Endpoints {
            local_host: conn.local_host.as_deref(),
            local_ip: &lip,
            local_port: local.port(),
            remote_host: conn.remote_host.as_deref(),
            remote_ip: &rip,
            remote_info: conn.remote_info.as_deref(),
            remote_port: remote.port(),
        };
        log::line(
            PROG,
            &log::verdict(if deny { "deny" } else { "ok" }, pid, &e),
        );
    }
    if deny {
        return 100;
    }
    exec_with_socket(OwnedFd::from(stream), None, &o.program, &changes)
        .map(|()| 0)
        .unwrap_or_else(|e| {
            drop_conn(&format!(
                "unable to run {}: {}",
                o.program[0].to_string_lossy(),
                qsys::die::errstr(&e)
            ))
        })
}

/// Put `sock` on fds 0 and 1 (tcpserver) or 6 and 7 (tcpclient, `client_fds`), restore
/// default signals, and exec `program` (searched in `$PATH`) with the environment changed
/// by `changes`. Returns only on failure.
pub fn exec_with_socket(
    sock: OwnedFd,
    client_fds: Option<(i32, i32)>,
    program: &[OsString],
    changes: &[(Vec<u8>, Option<Vec<u8>>)],
) -> Result<(), std::io::Error> {
    let (rfd, wfd) = client_fds.unwrap_or((0, 1));
    let raw = sock.as_raw_fd();
    for target in [rfd, wfd] {
        // SAFETY: dup2 onto a descriptor number we own the meaning of in this process.
        if unsafe { libc::dup2(raw, target) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    if raw != rfd && raw != wfd {
        drop(sock);
    } else {
        std::mem::forget(sock);
    }
    Err(exec_program(program, changes))
}

/// Exec `program` (searched in `$PATH` unless it holds a slash) with the environment
/// changed by `changes` and default signal handling. Returns only on failure.
pub fn exec_program(
    program: &[OsString],
    changes: &[(Vec<u8>, Option<Vec<u8>>)],
) -> std::io::Error {
    let argv: Vec<CString> = program
        .iter()
        .filter_map(|a| CString::new(a.as_bytes()).ok())
        .collect();
    if argv.len() != program.len() || argv.is_empty() {
        return std::io::ErrorKind::InvalidInput.into();
    }
    let envp = env::build(std::env::vars_os(), changes);
    qsys::reset_signals_for_exec();
    let path_var = envp
        .iter()
        .find_map(|e| e.to_bytes().strip_prefix(b"PATH=").map(<[u8]>::to_vec));
    exec_path(&argv, &envp, path_var.as_deref())
}

/// execve `argv[0]` at each of its candidate paths ([`crate::spawn::candidates`]: itself
/// when it holds a slash, else each directory of `path`, the exec'ed program's own
/// `PATH`) as ucspi-tcp searches ([`crate::spawn::search_goes_on`]).
fn exec_path(argv: &[CString], envp: &[CString], path: Option<&[u8]>) -> std::io::Error {
    use crate::spawn::{Search, search_goes_on};
    let mut last = std::io::Error::from_raw_os_error(libc::ENOENT);
    for c in crate::spawn::candidates(argv[0].as_bytes(), path) {
        let Err(e) = nix::unistd::execve(&c, argv, envp);
        match search_goes_on(e as i32) {
            Search::Next => {}
            Search::NextRemembering => last = e.into(),
            Search::Stop => return e.into(),
        }
    }
    last
}

/// Fds 0 and 1 become `/dev/null` once listening: the parent must not hold the terminal or
/// a pipe that its supervisor watches.
pub fn close_stdio() {
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        let fd = OwnedFd::from(null);
        // SAFETY: dup2 onto fds 0 and 1, which this process owns.
        unsafe {
            libc::dup2(fd.as_raw_fd(), 0);
            libc::dup2(fd.as_raw_fd(), 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Options {
        let args: Vec<OsString> = args.iter().map(OsString::from).collect();
        parse_args(&args).unwrap()
    }

    #[test]
    fn backlog_defaults_well_above_the_limit() {
        assert_eq!(parse(&["0", "25", "true"]).backlog, 256);
        assert_eq!(parse(&["-c", "100", "0", "25", "true"]).backlog, 400);
        // -b after or before -c wins either way
        assert_eq!(
            parse(&["-b", "5", "-c", "100", "0", "25", "true"]).backlog,
            5
        );
        assert_eq!(
            parse(&["-c", "100", "-b", "7", "0", "25", "true"]).backlog,
            7
        );
        assert_eq!(default_backlog(1 << 20), 1 << 22);
    }

    #[test]
    fn per_client_options() {
        let o = parse(&["0", "25", "true"]);
        assert_eq!(o.per_client, crate::perclient::Limits::default());
        assert_eq!(o.rate_window, Duration::from_secs(60));
        assert!(!o.smtp);
        let o = parse(&["-s", "-C", "3", "-N", "20", "-W", "0", "0", "25", "true"]);
        assert_eq!(o.per_client.concurrent, 3);
        assert_eq!(o.per_client.rate, 20);
        assert_eq!(o.rate_window, Duration::from_secs(1));
        assert!(o.smtp);
        let args: Vec<OsString> = ["-C", "x", "0", "25", "true"]
            .iter()
            .map(OsString::from)
            .collect();
        assert!(parse_args(&args).is_err());
    }
}
