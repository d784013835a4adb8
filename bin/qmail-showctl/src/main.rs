//! qmail-showctl - analyze the mail system's configuration
//!
//! SYNOPSIS
//!     qmail-showctl
//!     qmail-showctl -v NAME
//!
//! DESCRIPTION
//!     Prints the installation's home, the users it runs as, and every control file of
//!     every program (the mail core, qmail-smtpd, qmail-popup, checkpassword, the content
//!     filters, qmail-vuser, the run scripts), grouped by the programs that read it, each
//!     with the value in force: its value (list files one item per line), or the default
//!     when the file is missing. A number, 0/1 flag or choice that is malformed or out of
//!     range is flagged on its line as `INVALID:` with the file, the line, what is allowed
//!     and the value the programs use instead (the same table and reader the programs use:
//!     control::known). Then every other file found in HOME/control, as unknown.
//!
//!     With -v NAME (a number, flag or choice control), prints only the value in force,
//!     for run scripts: a malformed value is reported on stderr and the value the programs
//!     would use is printed.
//!
//! EXIT CODES
//!     0 every value is valid; 1 at least one is invalid (all are still printed);
//!     100 usage, or -v with a control that is not a number, flag or choice;
//!     111 when a control file exists but cannot be read.

use control::Controls;
use control::known::{self, KNOWN, Kind};
use std::os::unix::fs::MetadataExt;

const PROG: &str = "qmail-showctl";

fn fatal(msg: &str, code: i32) -> ! {
    qsys::die::fatal(PROG, msg, code)
}

/// One control's lines of the report, and whether its value is invalid.
fn describe(ctl: &Controls, spec: &known::Known) -> std::io::Result<(String, bool)> {
    let name = spec.name;
    match spec.kind {
        Kind::List => Ok(match ctl.list(name)? {
            Some(items) if items.is_empty() => (format!("{name}: (empty)\n"), false),
            Some(items) => (
                format!(
                    "{name}:\n{}",
                    items.iter().map(|i| format!("  {i}\n")).collect::<String>()
                ),
                false,
            ),
            None => (format!("{name}: (default) {}\n", spec.default), false),
        }),
        Kind::Line => Ok(match ctl.line(name)? {
            Some(v) => (format!("{name}: {v}\n"), false),
            None => (format!("{name}: (default) {}\n", spec.default), false),
        }),
        Kind::File => Ok(match std::fs::metadata(ctl.path(name)) {
            Ok(m) if name.ends_with(".pem") && m.mode() & 0o004 != 0 => (
                format!(
                    "{name}: present ({} bytes), WARNING: readable by everyone (mode {:04o}); \
                     chmod 400 it if it holds the private key\n",
                    m.len(),
                    m.mode() & 0o7777
                ),
                false,
            ),
            Ok(m) => (format!("{name}: present ({} bytes)\n", m.len()), false),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                (format!("{name}: (default) {}\n", spec.default), false)
            }
            Err(e) => return Err(e),
        }),
        Kind::Number { .. } | Kind::Flag | Kind::Choice(_) => {
            let raw = ctl.line(name)?;
            let Some(v) = raw.as_deref().map(str::trim).filter(|v| !v.is_empty()) else {
                return Ok((format!("{name}: (default) {}\n", spec.default), false));
            };
            let default = known::numeric_default(spec).unwrap_or(0);
            match known::check(spec, Some(v), default).invalid {
                None => Ok((format!("{name}: {v}\n"), false)),
                Some(i) => Ok((format!("{name}: INVALID: {i}\n"), true)),
            }
        }
    }
}

/// `-v NAME`: the value in force, as the programs compute it.
fn value_in_force(ctl: &Controls, name: &str) -> ! {
    let Some(spec) = known::known(name) else {
        fatal(&format!("control/{name} is not a known control file"), 100)
    };
    let (Kind::Choice(_) | Kind::Number { .. } | Kind::Flag) = spec.kind else {
        fatal(
            &format!("control/{name} is not a number, flag or choice"),
            100,
        )
    };
    let checked = match ctl.number(name) {
        Ok(c) => c,
        Err(e) => fatal(&format!("unable to read control/{name}: {e}"), 111),
    };
    checked.warn(PROG);
    match spec.kind {
        Kind::Choice(words) => println!("{}", words.get(checked.value as usize).unwrap_or(&"")),
        _ => println!("{}", checked.value),
    }
    std::process::exit(0)
}

fn main() {
    qsys::help!();
    qsys::die::install_panic_hook(PROG);
    qsys::die::default_sigpipe();
    let home = qsys::home().unwrap_or_else(|_| fatal("unable to find my home directory", 111));
    let ctl = Controls::new(&home);
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [] => {}
        [v, name] if v == "-v" => value_in_force(&ctl, name),
        _ => fatal("usage: qmail-showctl [-v NAME]", 100),
    }
    let mut out = format!(
        "qmail home directory: {}.\nuser-ext delimiter: -.\nsplit: {}.\n\n",
        home.display(),
        23
    );
    out.push_str("user ids:");
    for u in qsys::ids::USERS {
        match qsys::ids::uid(u) {
            Some(id) => out.push_str(&format!(" {u}={id}")),
            None => out.push_str(&format!(" {u}=(missing)")),
        }
    }
    out.push('\n');
    let mut invalid = 0;
    let mut groups: Vec<&str> = Vec::new();
    for spec in KNOWN {
        if !groups.contains(&spec.readers) {
            groups.push(spec.readers);
        }
    }
    for (readers, spec) in groups.iter().flat_map(|r| {
        KNOWN
            .iter()
            .filter(move |s| s.readers == *r)
            .map(move |s| (r, s))
    }) {
        if KNOWN.iter().find(|s| s.readers == *readers).map(|s| s.name) == Some(spec.name) {
            out.push_str(&format!("\nread by {readers}:\n"));
        }
        match describe(&ctl, spec) {
            Ok((text, bad)) => {
                out.push_str(&text);
                invalid += usize::from(bad);
            }
            Err(e) => fatal(&format!("unable to read control/{}: {e}", spec.name), 111),
        }
    }
    if let Ok(rd) = std::fs::read_dir(ctl.dir()) {
        let mut others: Vec<String> = rd
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| known::known(n).is_none())
            .collect();
        others.sort();
        if !others.is_empty() {
            out.push_str("\nnot read by any program:\n");
        }
        for n in others {
            out.push_str(&format!("{n}: (unknown control file)\n"));
        }
    }
    if invalid > 0 {
        out.push_str(&format!(
            "\n{invalid} invalid value(s): the programs log them and use the value shown.\n"
        ));
    }
    print!("{out}");
    std::process::exit(if invalid > 0 { 1 } else { 0 })
}
