//! softlimit - run a program with soft resource limits
//!
//! SYNOPSIS
//!     softlimit [-a allbytes] [-c corebytes] [-d databytes] [-f filebytes]
//!               [-l lockbytes] [-m membytes] [-o openfiles] [-p processes]
//!               [-r residentbytes] [-s stackbytes] [-t cpusecs] CHILD...
//!
//! DESCRIPTION
//!     Sets each named soft limit (never above the hard limit; `=` means "as high as
//!     the hard limit") and execs CHILD (searched in $PATH). -m sets the data, stack,
//!     locked-memory and address-space limits at once.
//!
//! EXIT CODES
//!     100 usage (including a non-numeric value); 111 setrlimit or exec failure.

const USAGE: &str = "[-a allbytes] [-c corebytes] [-d databytes] [-f filebytes] [-l lockbytes] [-m membytes] [-o openfiles] [-p processes] [-r residentbytes] [-s stackbytes] [-t cpusecs] child";

fn main() {
    qsys::help!();
    qsys::die::install_panic_hook("softlimit");
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let usage = || -> ! { runtools::usage("softlimit", USAGE, 100) };
    let mut i = 1;
    while i < args.len() {
        let a = args[i].to_string_lossy().into_owned();
        if a == "--" {
            i += 1;
            break;
        }
        if !a.starts_with('-') || a.len() < 2 {
            break;
        }
        let mut chars = a[1..].chars();
        let Some(opt) = chars.next() else { usage() };
        let Some(res) = runtools::softlimit_resources(opt) else {
            eprintln!("softlimit: illegal option -- {opt}");
            usage()
        };
        let inline: String = chars.collect();
        let val = if !inline.is_empty() {
            inline
        } else {
            i += 1;
            match args.get(i) {
                Some(v) => v.to_string_lossy().into_owned(),
                None => usage(),
            }
        };
        let value = if val == "=" {
            None
        } else {
            match val.parse::<u64>() {
                Ok(v) => Some(v),
                Err(_) => usage(),
            }
        };
        for &r in res {
            if let Err(e) = runtools::set_soft(r, value) {
                runtools::fatal(
                    "softlimit",
                    &format!("unable to setrlimit: {}", svcdir_err(&e)),
                );
            }
        }
        i += 1;
    }
    if i >= args.len() {
        usage();
    }
    runtools::exec("softlimit", &args[i..]);
}

fn svcdir_err(e: &std::io::Error) -> String {
    runtools::errstr(e)
}
