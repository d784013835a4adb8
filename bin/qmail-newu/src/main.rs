//! qmail-newu - prepare the users/assign table for qmail-lspawn
//!
//! SYNOPSIS
//!     qmail-newu
//!
//! DESCRIPTION
//!     Reads HOME/users/assign and writes HOME/users/cdb in qmail's format (through
//!     users/cdb.tmp, fsync, rename: qmail-lspawn never sees a partial file). Changes
//!     to assign take effect only after qmail-newu.
//!
//! USER
//!     root (or the installation's owner).
//!
//! EXIT CODES
//!     0 done; 111 unreadable assign, syntax error or write failure.

fn main() {
    qsys::help!();
    qsys::die::install_panic_hook("qmail-newu");
    let fatal = |m: String| -> ! { qsys::die::fatal("qmail-newu", &m, 111) };
    let home = qsys::home().unwrap_or_else(|_| fatal("unable to find my home directory".into()));
    let users = home.join("users");
    let text = std::fs::read(users.join("assign"))
        .unwrap_or_else(|e| fatal(format!("unable to read users/assign: {e}")));
    let records =
        control::assign::compile(&text).unwrap_or_else(|e| fatal(format!("users/assign: {e}")));
    let refs = records.iter().map(|(k, v)| (k.as_slice(), v.as_slice()));
    if let Err(e) = control::cdbfile::write(&users.join("cdb"), refs, 0o644) {
        fatal(format!("unable to write users/cdb: {e}"));
    }
}
