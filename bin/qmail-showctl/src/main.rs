//! qmail-showctl - analyze the mail system's configuration
//!
//! SYNOPSIS
//!     qmail-showctl
//!
//! DESCRIPTION
//!     Prints the installation's home, the users it runs as, and every control file the
//!     mail core reads, with its value (list files one item per line) or the default in
//!     force when the file is missing; then any other file found in HOME/control.
//!
//! EXIT CODES
//!     0; 111 when a control file exists but cannot be read.

use control::Controls;

/// (file, kind, default) for every control the core reads; kind: l line, n number, s list.
const KNOWN: &[(&str, char, &str)] = &[
    (
        "me",
        'l',
        "(none: qmail-send refuses to start without me or locals)",
    ),
    ("locals", 's', "me"),
    ("rcpthosts", 's', "(none)"),
    ("virtualdomains", 's', "(none)"),
    ("percenthack", 's', "(none)"),
    ("envnoathost", 'l', "me"),
    ("queuelifetime", 'n', "604800"),
    ("concurrencylocal", 'n', "10"),
    ("concurrencyremote", 'n', "20"),
    ("bouncefrom", 'l', "MAILER-DAEMON"),
    ("bouncehost", 'l', "me"),
    ("doublebounceto", 'l', "postmaster"),
    ("doublebouncehost", 'l', "me"),
    ("helohost", 'l', "me"),
    ("smtproutes", 's', "(none: MX lookups)"),
    ("nameservers", 's', "/etc/resolv.conf"),
    ("timeoutconnect", 'n', "60"),
    ("timeoutremote", 'n', "1200"),
    ("defaultdomain", 'l', "me"),
    ("defaulthost", 'l', "me"),
    ("plusdomain", 'l', "me"),
    ("idhost", 'l', "me"),
];

fn main() {
    qsys::die::install_panic_hook("qmail-showctl");
    qsys::die::default_sigpipe();
    let fatal = |m: String| -> ! { qsys::die::fatal("qmail-showctl", &m, 111) };
    let home = qsys::home().unwrap_or_else(|_| fatal("unable to find my home directory".into()));
    let ctl = Controls::new(&home);
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
    out.push_str("\n\n");
    for (name, kind, default) in KNOWN {
        let line = match kind {
            's' => match ctl.list(name) {
                Ok(Some(items)) if items.is_empty() => format!("{name}: (empty)\n"),
                Ok(Some(items)) => format!(
                    "{name}:\n{}",
                    items.iter().map(|i| format!("  {i}\n")).collect::<String>()
                ),
                Ok(None) => format!("{name}: (default) {default}\n"),
                Err(e) => fatal(format!("unable to read control/{name}: {e}")),
            },
            _ => match ctl.line(name) {
                Ok(Some(v)) => format!("{name}: {v}\n"),
                Ok(None) => format!("{name}: (default) {default}\n"),
                Err(e) => fatal(format!("unable to read control/{name}: {e}")),
            },
        };
        out.push_str(&line);
    }
    if let Ok(rd) = std::fs::read_dir(ctl.dir()) {
        let mut others: Vec<String> = rd
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !KNOWN.iter().any(|(k, _, _)| k == n))
            .collect();
        others.sort();
        for n in others {
            out.push_str(&format!("{n}: (not read by the mail core)\n"));
        }
    }
    print!("{out}");
}
