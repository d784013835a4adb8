//! tcprulescheck - show which rule tcpserver would apply to a client
//!
//! SYNOPSIS
//!     TCPREMOTEIP=1.2.3.4 [TCPREMOTEHOST=name] [TCPREMOTEINFO=user] tcprulescheck rules.cdb
//!
//! DESCRIPTION
//!     Looks the client described by the environment up in rules.cdb in tcpserver's order
//!     (`info@ip`, `info@=host`, `ip`, `=host`, ip prefixes, `=.domain` suffixes, `=`, the
//!     default) and prints `rule KEY:`, then `set environment variable VAR=value` for each
//!     setting, then `deny connection` or `allow connection`; `default:` when no rule
//!     matches. TCPREMOTEIP defaults to 0.0.0.0.
//!
//! EXIT CODES
//!     0 printed; 100 usage; 111 the cdb could not be read.

use std::io::Write;

const PROG: &str = "tcprulescheck";

fn main() {
    qsys::help!();
    qsys::die::install_panic_hook(PROG);
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let [path] = args.as_slice() else {
        qsys::die::warn(PROG, "usage", "tcprulescheck rules.cdb");
        std::process::exit(100);
    };
    let path = std::path::Path::new(path);
    let unreadable = |e: std::io::Error| -> ! {
        qsys::die::fatal(
            PROG,
            &format!(
                "unable to read {}: {}",
                path.display(),
                qsys::die::errstr(&e)
            ),
            111,
        )
    };
    let db = match control::cdbfile::Cdb::open(path) {
        Ok(Some(db)) => db,
        Ok(None) => unreadable(std::io::ErrorKind::NotFound.into()),
        Err(e) => unreadable(e),
    };
    let var = |n: &str| std::env::var(n).ok();
    let ip = var("TCPREMOTEIP").unwrap_or_else(|| "0.0.0.0".into());
    let (host, info) = (var("TCPREMOTEHOST"), var("TCPREMOTEINFO"));
    let d = ucspi::rules::lookup(&db, &ip, host.as_deref(), info.as_deref())
        .unwrap_or_else(|e| unreadable(e));
    let mut out = Vec::new();
    match &d.rule {
        Some(k) => {
            out.extend_from_slice(b"rule ");
            out.extend_from_slice(k);
            out.extend_from_slice(b":\n");
        }
        None => out.extend_from_slice(b"default:\n"),
    }
    // the rule's entries in their stored order: a deny ends the listing, as in tcprulescheck
    let raw = match &d.rule {
        Some(k) => db
            .get(k)
            .unwrap_or_else(|e| unreadable(e))
            .unwrap_or_default(),
        None => Vec::new(),
    };
    let mut deny = false;
    for entry in raw.split(|&b| b == 0) {
        match entry.first() {
            Some(b'D') => {
                deny = true;
                break;
            }
            Some(b'+') => {
                if let Some(eq) = entry.iter().position(|&b| b == b'=') {
                    out.extend_from_slice(b"set environment variable ");
                    out.extend_from_slice(&entry[1..eq]);
                    out.push(b'=');
                    out.extend_from_slice(&entry[eq + 1..]);
                    out.push(b'\n');
                }
            }
            _ => {}
        }
    }
    out.extend_from_slice(if deny {
        b"deny connection\n"
    } else {
        b"allow connection\n"
    });
    let _ = std::io::stdout().lock().write_all(&out);
}
