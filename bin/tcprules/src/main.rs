//! tcprules - compile tcpserver access rules into a cdb
//!
//! SYNOPSIS
//!     tcprules rules.cdb rules.tmp < rules
//!
//! DESCRIPTION
//!     Reads rules text on stdin (ucspi-tcp 0.88's format: `ADDRESS:allow` or
//!     `ADDRESS:deny`, then `,VAR="value"` settings; `1.2.3.` prefixes, `1.2.3.4-7`
//!     ranges, `=host`, `=.domain`, `info@ADDRESS`, an empty default; `#` comments), writes
//!     the cdb to rules.tmp (mode 0644), fsyncs it and renames it over rules.cdb, so a
//!     running tcpserver sees either the old rules or the new ones. The cdb is the one
//!     Debian's tcprules writes, byte for byte.
//!
//!     Stricter than ucspi-tcp 0.88 (and Debian's tcprules): a line without a colon, such
//!     as `192.0.2.66 deny`, is refused with its line number instead of being ignored (it
//!     would deny nothing). Blank lines and `#` comments, also after leading white space,
//!     are still ignored; every text Debian's tcprules accepts otherwise gives the same
//!     cdb.
//!
//! USER
//!     Anyone who may write the directory (the administrator; `qmailctl cdb`).
//!
//! EXIT CODES
//!     0 written; 100 usage or a line that cannot be parsed (`tcprules: fatal: unable to
//!     parse this line: LINE (line N: WHAT IS WRONG)`; rules.cdb is left alone); 111 read
//!     or write failure.

use std::io::Read;
use std::path::Path;

const PROG: &str = "tcprules";

fn main() {
    qsys::help!();
    qsys::die::install_panic_hook(PROG);
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let [cdb, tmp] = args.as_slice() else {
        qsys::die::warn(PROG, "usage", "tcprules rules.cdb rules.tmp");
        std::process::exit(100);
    };
    let mut text = Vec::new();
    if let Err(e) = std::io::stdin().lock().read_to_end(&mut text) {
        qsys::die::fatal(
            PROG,
            &format!("unable to read input: {}", qsys::die::errstr(&e)),
            111,
        );
    }
    let records = match ucspi::rules::compile(&text) {
        Ok(r) => r,
        Err(bad) => qsys::die::fatal(
            PROG,
            &format!(
                "unable to parse this line: {} (line {}: {})",
                String::from_utf8_lossy(&bad.text),
                bad.number,
                bad.reason
            ),
            100,
        ),
    };
    let (cdb, tmp) = (Path::new(cdb), Path::new(tmp));
    let pairs = records.iter().map(|(k, v)| (&k[..], &v[..]));
    if let Err(e) = control::cdbfile::write_via(cdb, tmp, pairs, 0o644) {
        qsys::die::fatal(
            PROG,
            &format!(
                "unable to create {}: {}",
                cdb.display(),
                qsys::die::errstr(&e)
            ),
            111,
        );
    }
}
