//! tcpclient - connect to a TCP server and run a program on the connection
//!
//! SYNOPSIS
//!     tcpclient [ -hHrRdDqQv ] [ -i localip ] [ -p localport ] [ -T timeoutconn ]
//!               [ -l localname ] [ -t timeoutinfo ] host port program [ arg ... ]
//!
//! DESCRIPTION
//!     Our ucspi-tcp 0.88 tcpclient, enough for scripts and tests: connects to host:port
//!     (host `0` is 127.0.0.1; a literal IPv4/IPv6 address or a name), trying each address
//!     within the `-T` timeout (default 60 s in total), then runs program with fd 6
//!     reading from the server and fd 7 writing to it, and the same PROTO/TCP* environment
//!     tcpserver sets (local and remote sides seen from this end). `-H` (default here:
//!     no PTR lookups unless -h) and `-R` (no ident, the default here) are accepted for
//!     compatibility; `-v` prints `tcpclient: connected to IP port PORT` on stderr.
//!
//! EXIT CODES
//!     100 usage; 111 unable to connect or to run program.

use std::ffi::OsString;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

const PROG: &str = "tcpclient";
const USAGE: &str = "tcpclient [ -hHrRdDqQv ] [ -i localip ] [ -p localport ] [ -T timeoutconn ] [ -l localname ] [ -t timeoutinfo ] host port program";

fn usage(why: &str) -> ! {
    if !why.is_empty() {
        ucspi::log::line(PROG, why);
    }
    ucspi::log::line(PROG, &format!("usage: {USAGE}"));
    std::process::exit(100)
}

fn fatal(msg: &str) -> ! {
    ucspi::log::line(PROG, &format!("fatal: {msg}"));
    std::process::exit(111)
}

fn main() {
    qsys::help!();
    qsys::die::install_panic_hook(PROG);
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let (opts, rest) = qsys::getopt::getopt(&args, "hHrRdDqQvi:p:T:l:t:")
        .unwrap_or_else(|c| usage(&format!("illegal option -- {}", c as char)));
    let (mut verbose, mut nodelay, mut timeout) = (false, false, Duration::from_secs(60));
    let mut local_name = None;
    for o in opts {
        let arg = o
            .arg
            .map(|a| a.to_string_lossy().into_owned())
            .unwrap_or_default();
        match o.letter {
            b'v' => verbose = true,
            b'q' | b'Q' => verbose = false,
            b'D' => nodelay = true,
            b'd' => nodelay = false,
            b'T' => {
                // `x+y`: first address / the others; we use their sum as the whole budget
                let total: u64 = arg.split('+').filter_map(|p| p.parse::<u64>().ok()).sum();
                timeout = Duration::from_secs(total.max(1));
            }
            b'l' => local_name = Some(arg),
            _ => {} // -i/-p (local binding), -h/-r lookups: not needed by our uses
        }
    }
    let [host, port, program @ ..] = rest.as_slice() else {
        usage("")
    };
    if program.is_empty() {
        usage("");
    }
    let host = host.to_string_lossy();
    let host = if host.is_empty() || host == "0" {
        "127.0.0.1".into()
    } else {
        host
    };
    let port_text = port.to_string_lossy();
    let Some(port) = ucspi::addr::system_port(&port_text) else {
        fatal(&format!("unable to figure out port number for {port_text}"))
    };
    let ips = ucspi::addr::host_addrs(&host, false).unwrap_or_else(|e| fatal(&e));
    let deadline = Instant::now() + timeout;
    let mut stream = None;
    let mut last = String::from("no address");
    for ip in ips {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match TcpStream::connect_timeout(&SocketAddr::new(ip, port), left) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => {
                last = format!(
                    "unable to connect to {ip} port {port}: {}",
                    qsys::die::errstr(&e)
                )
            }
        }
    }
    let Some(stream) = stream else { fatal(&last) };
    if nodelay {
        let _ = stream.set_nodelay(true);
    }
    let (local, remote) = match (stream.local_addr(), stream.peer_addr()) {
        (Ok(l), Ok(r)) => (ucspi::addr::unmap(l), ucspi::addr::unmap(r)),
        _ => fatal("unable to get socket addresses"),
    };
    if verbose {
        ucspi::log::line(
            PROG,
            &format!("connected to {} port {}", remote.ip(), remote.port()),
        );
    }
    let conn = ucspi::env::Conn {
        local,
        remote,
        local_host: local_name,
        remote_host: None,
        remote_info: None,
    };
    let changes = ucspi::env::changes(&conn);
    let e = ucspi::server::exec_with_socket(OwnedFd::from(stream), Some((6, 7)), program, &changes);
    if let Err(e) = e {
        fatal(&format!(
            "unable to run {}: {}",
            program[0].to_string_lossy(),
            qsys::die::errstr(&e)
        ));
    }
}
