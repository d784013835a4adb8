//! qmail-newmrh - prepare morercpthosts for qmail-smtpd
//!
//! SYNOPSIS
//!     qmail-newmrh
//!
//! DESCRIPTION
//!     Reads HOME/control/morercpthosts (one domain or `.suffix` per line, `#` comments
//!     and blank lines ignored) and writes HOME/control/morercpthosts.cdb, each line
//!     lowercased as a key with an empty value, in DJB's cdb format (through
//!     morercpthosts.cdb.tmp, fsync, rename: qmail-smtpd never sees a partial file).
//!     qmail-smtpd consults the cdb after rcpthosts, for the domain and each of its
//!     `.suffix` forms. Keep big domain lists there; rcpthosts is read per connection.
//!
//! USER
//!     root (or the installation's owner).
//!
//! EXIT CODES
//!     0 done; 111 unreadable morercpthosts or write failure.

fn main() {
    qsys::help!();
    qsys::die::install_panic_hook("qmail-newmrh");
    let fatal = |m: String| -> ! { qsys::die::fatal("qmail-newmrh", &m, 111) };
    let home = qsys::home().unwrap_or_else(|_| fatal("unable to find my home directory".into()));
    let c = control::Controls::new(&home);
    let lines = match c.list("morercpthosts") {
        Ok(Some(l)) => l,
        Ok(None) => Vec::new(),
        Err(e) => fatal(format!("unable to read control/morercpthosts: {e}")),
    };
    let keys: Vec<String> = lines
        .iter()
        .map(|l| l.trim().to_ascii_lowercase())
        .filter(|l| !l.is_empty())
        .collect();
    let recs = keys.iter().map(|k| (k.as_bytes(), &b""[..]));
    if let Err(e) = control::cdbfile::write(&c.path("morercpthosts.cdb"), recs, 0o644) {
        fatal(format!("unable to write control/morercpthosts.cdb: {e}"));
    }
}
