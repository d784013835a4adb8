//! qmail-recipients - build the recipient table qmail-smtpd checks at RCPT
//!
//! SYNOPSIS
//!     qmail-recipients
//!
//! DESCRIPTION
//!     Writes HOME/control/recipients.cdb, the local parts qmail-lspawn would deliver:
//!     entries of HOME/users/assign (`=local` exact, `+prefix` every address below it),
//!     passwd users with uid != 0 owning their home directory (the user, `user-EXT` for
//!     each ~user/.qmail-EXT, `user-PRE-*` for each ~user/.qmail-PRE-default, `user-*`
//!     for ~user/.qmail-default), the alias user's HOME/alias/.qmail-* files (an
//!     HOME/alias/.qmail-default accepts everything), and the lines of
//!     HOME/control/recipients (`local`, or `prefix*` for every local part starting with
//!     prefix). Once the file exists, qmail-smtpd answers `550 5.1.1` for a recipient in
//!     a `locals` or `virtualdomains` domain whose local part (after the virtualdomains
//!     prepend) is not listed; postmaster is always accepted. Delete the file to turn
//!     the check off. Run it again after adding users, .qmail files or assign entries.
//!
//! USER
//!     root (it reads every user's home directory).
//!
//! EXIT CODES
//!     0 done (prints the number of entries); 111 read or write failure.

fn main() {
    qsys::help!();
    qsys::die::install_panic_hook("qmail-recipients");
    qsys::die::default_sigpipe();
    let fatal = |m: String| -> ! { qsys::die::fatal("qmail-recipients", &m, 111) };
    let home = qsys::home().unwrap_or_else(|_| fatal("unable to find my home directory".into()));
    match smtpd::rcptcheck::write_cdb(&home) {
        Ok(n) => println!("qmail-recipients: {n} entries in control/recipients.cdb"),
        Err(e) => fatal(format!("unable to write control/recipients.cdb: {e}")),
    }
}
