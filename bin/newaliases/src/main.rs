//! newaliases - compile the aliases file for fastforward
//!
//! SYNOPSIS
//!     newaliases [FILE]
//!
//! DESCRIPTION
//!     Reads FILE (default /etc/aliases), in the format sendmail and Postfix use
//!     (aliases(5)): `name: target, target, ...`, continuation lines starting with a
//!     space or tab, `#` comments. A target is an address (`user@domain`), a bare
//!     local name (another alias, else the local user), `\name` (the local user, never
//!     an alias), `|command` (or `"|command, with commas"`), `/file` or
//!     `:include:/path` (a list of addresses and names, read now: run newaliases again
//!     after changing it). Writes FILE.cdb through FILE.tmp (fsynced, then renamed),
//!     which fastforward reads for each message; nothing changes when FILE has an error.
//!
//!     Programs and files are accepted only when FILE is owned by root and writable by
//!     root alone, and never from an :include: list. They run, and files are written,
//!     as the user alias (see fastforward).
//!
//!     sendmail invoked as newaliases, or `sendmail -bi`, runs this program.
//!
//! USER
//!     root (the owner of FILE and of the directory FILE.cdb is written in).
//!
//! EXIT CODES
//!     0 written; 100 FILE has an error (the message names the line); 111 unable to
//!     read or write.

fn main() {
    qsys::help!();
    qsys::die::install_panic_hook("newaliases");
    let args: Vec<String> = std::env::args().skip(1).collect();
    let file = match args.as_slice() {
        [] => "/etc/aliases".to_string(),
        [f] if !f.starts_with('-') => f.clone(),
        _ => qsys::die::fatal("newaliases", "usage: newaliases [FILE]", 100),
    };
    let path = std::path::Path::new(&file);
    let compiled = match aliases::table::compile(path) {
        Ok(c) => c,
        Err(e) if e.starts_with("unable to read") => qsys::die::fatal("newaliases", &e, 111),
        Err(e) => qsys::die::fatal("newaliases", &e, 100),
    };
    let cdb = format!("{file}.cdb");
    if let Err(e) = aliases::table::write(std::path::Path::new(&cdb), &compiled) {
        qsys::die::fatal(
            "newaliases",
            &format!("unable to write {cdb}: {}", qsys::errstr::io(&e)),
            111,
        );
    }
    println!("newaliases: {} aliases written to {cdb}", compiled.len());
}
