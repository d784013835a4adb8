//! fastforward - deliver mail to the aliases of /etc/aliases
//!
//! SYNOPSIS
//!     | fastforward [-p] CDB          (a line of ~alias/.qmail-default)
//!
//! DESCRIPTION
//!     Run by qmail-local for a local address that no user and no .qmail file claimed:
//!     looks the address up in CDB (written by newaliases, normally
//!     /etc/aliases.cdb), first as `local@domain`, then as `local`, in lower case, from
//!     qmail-local's $DEFAULT and $HOST. Names are followed through the table (at most
//!     20 deep; a loop ends at the user of that name). Forwards are queued in one
//!     qmail-queue run with qmail-local's Delivered-To line on top, from $NEWSENDER, or
//!     from owner-NAME@domain when the alias owner-NAME exists. Programs run under
//!     /bin/sh -c in alias's home with the message on their input; files get the
//!     message appended in mbox format. All of it runs as the user alias.
//!
//!     An address that is no alias bounces: "Sorry, no mailbox here by that name.
//!     (#5.1.1)". With -p it is passed on instead (exit 0), for a .qmail-default with
//!     more lines after this one.
//!
//!     To turn it on (as root):
//!         newaliases
//!         echo '| /var/qmail/bin/fastforward /etc/aliases.cdb' > /var/qmail/alias/.qmail-default
//!
//! USER
//!     alias (started by qmail-local).
//!
//! EXIT CODES
//!     0 delivered (or passed on with -p); 100 no such alias, or a permanent failure;
//!     111 temporary failure (unreadable table, queue or program trouble): retried.

use aliases::deliver::{Context, deliver};
use aliases::expand::expand;
use aliases::table::Table;
use std::path::PathBuf;

const PROG: &str = "fastforward";

fn main() {
    qsys::help!();
    qsys::die::install_panic_hook(PROG);
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let pass = args.first().is_some_and(|a| a == "-p");
    if pass {
        args.remove(0);
    }
    let [cdb] = args.as_slice() else {
        qsys::die::fatal(PROG, "usage: fastforward [-p] CDB", 100)
    };
    let env = |name: &str| std::env::var(name).unwrap_or_default();
    let (local, domain) = (
        env("DEFAULT").to_ascii_lowercase(),
        env("HOST").to_ascii_lowercase(),
    );
    if local.is_empty() {
        qsys::die::fatal(PROG, "no $DEFAULT: run me from a .qmail-default file", 100);
    }
    let table = Table::open(std::path::Path::new(cdb)).unwrap_or_else(|e| {
        qsys::die::fatal(
            PROG,
            &format!("unable to read {cdb}: {}", qsys::errstr::io(&e)),
            111,
        )
    });
    let temp = |e: String| -> ! { qsys::die::fatal(PROG, &e, 111) };
    let full = format!("{local}@{domain}");
    let (name, deliveries) = match expand(&table, &full, &domain).unwrap_or_else(|e| temp(e)) {
        Some(d) => (full, d),
        None => match expand(&table, &local, &domain).unwrap_or_else(|e| temp(e)) {
            Some(d) => (local, d),
            None if pass => std::process::exit(0),
            None => {
                // the bounce's text, as qmail-local reports a program's output
                eprintln!("Sorry, no mailbox here by that name. (#5.1.1)");
                std::process::exit(100)
            }
        },
    };
    let bare = name.split('@').next().unwrap_or(&name);
    let owner = format!("owner-{bare}");
    let sender = match table.get(&owner) {
        Ok(t) if !t.is_empty() => format!("{owner}@{domain}"),
        _ => env("NEWSENDER"),
    };
    let home = qsys::home().unwrap_or_else(|_| temp("unable to find my home directory".into()));
    let ctx = Context {
        dtline: env("DTLINE"),
        rpline: env("RPLINE"),
        ufline: env("UFLINE"),
        sender,
        qmail_queue: home.join("bin/qmail-queue"),
        home: std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/")),
    };
    // SAFETY: descriptor 0 is the message, as qmail-local runs every program.
    let mut message = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(0) };
    match deliver(&mut message, &deliveries, &ctx) {
        Ok(text) => println!("{text}"),
        Err(f) => {
            let code = if f.permanent { 100 } else { 111 };
            qsys::die::fatal(PROG, &f.text, code)
        }
    }
}
