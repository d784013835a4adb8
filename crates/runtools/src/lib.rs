//! The small tools of daemontools 0.76 that change a process's state and exec a child:
//! `setuidgid`, `envuidgid`, `envdir`, `softlimit`. Messages and exit codes are the
//! originals' (usage 100, except envdir's 111; every failure 111).

use qsys::errstr::{errno as errno_str, io as io_str};
use std::ffi::{CString, OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;

/// Print `prog: fatal: msg` and exit 111.
pub fn fatal(prog: &str, msg: &str) -> ! {
    qsys::die::fatal(prog, msg, 111)
}

/// Print `prog: usage: prog text` and exit with `code`.
pub fn usage(prog: &str, text: &str, code: i32) -> ! {
    eprintln!("{prog}: usage: {prog} {text}");
    std::process::exit(code)
}

/// Exec `argv` searching `$PATH` (`pathexec_run`); on failure print
/// `prog: fatal: unable to run CHILD: ERR` and exit 111.
pub fn exec(prog: &str, argv: &[OsString]) -> ! {
    qsys::reset_signals_for_exec();
    let cargs: Vec<CString> = argv
        .iter()
        .filter_map(|a| CString::new(a.as_bytes()).ok())
        .collect();
    if cargs.len() != argv.len() || cargs.is_empty() {
        fatal(prog, "unable to run child: invalid argument");
    }
    let err = match nix::unistd::execvp(&cargs[0], &cargs) {
        Err(e) => e,
        Ok(never) => match never {},
    };
    fatal(
        prog,
        &format!(
            "unable to run {}: {}",
            argv[0].to_string_lossy(),
            errno_str(err as i32)
        ),
    )
}

/// Look up `account`: (uid, gid) or exit 111 `unknown account`.
pub fn account(prog: &str, account: &str) -> (u32, u32) {
    match nix::unistd::User::from_name(account) {
        Ok(Some(u)) => (u.uid.as_raw(), u.gid.as_raw()),
        _ => fatal(prog, &format!("unknown account {account}")),
    }
}

/// setuidgid: exactly one group (the account's), then its gid, then its uid.
pub fn setuidgid(prog: &str, name: &str) {
    use nix::unistd::{Gid, Uid};
    use qsys::prot::DropError;
    let (uid, gid) = account(prog, name);
    match qsys::prot::drop_verified(Uid::from_raw(uid), Gid::from_raw(gid)) {
        Ok(()) => {}
        Err(DropError::Call("setuid", e)) => {
            fatal(prog, &format!("unable to setuid: {}", errno_str(e as i32)))
        }
        Err(DropError::Call(_, e)) => {
            fatal(prog, &format!("unable to setgid: {}", errno_str(e as i32)))
        }
        Err(DropError::NotHeld) => fatal(prog, "unable to setuid: the drop did not hold"),
    }
}

/// envdir: the environment changes DIR describes: (name, Some(value)) to set, (name,
/// None) to unset. Each file not starting with `.` names a variable; its first line,
/// trailing spaces and tabs removed and NUL bytes turned into newlines, is the value;
/// an empty file removes the variable.
pub fn envdir_changes(dir: &Path) -> Result<Vec<(OsString, Option<OsString>)>, String> {
    let rd = std::fs::read_dir(dir).map_err(|e| {
        format!(
            "unable to switch to directory {}: {}",
            dir.display(),
            io_str(&e)
        )
    })?;
    let mut names: Vec<OsString> = rd
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("unable to read directory {}: {}", dir.display(), io_str(&e)))?;
    names.retain(|n| n.as_bytes().first() != Some(&b'.'));
    names.sort();
    let mut out = Vec::new();
    for n in names {
        let p = dir.join(&n);
        let data = std::fs::read(&p)
            .map_err(|e| format!("unable to read {}: {}", p.display(), io_str(&e)))?;
        if n.as_bytes().contains(&b'=') {
            return Err(format!("unable to read {}: invalid argument", p.display()));
        }
        if data.is_empty() {
            out.push((n, None));
            continue;
        }
        let mut line: Vec<u8> = data.split(|&c| c == b'\n').next().unwrap_or(&[]).to_vec();
        while matches!(line.last(), Some(b' ') | Some(b'\t')) {
            line.pop();
        }
        for c in &mut line {
            if *c == 0 {
                *c = b'\n';
            }
        }
        out.push((n, Some(OsString::from_vec(line))));
    }
    Ok(out)
}

/// softlimit's options: letter, resources it sets.
pub fn softlimit_resources(opt: char) -> Option<&'static [libc::__rlimit_resource_t]> {
    const M: &[libc::__rlimit_resource_t] = &[
        libc::RLIMIT_DATA,
        libc::RLIMIT_STACK,
        libc::RLIMIT_MEMLOCK,
        libc::RLIMIT_AS,
    ];
    Some(match opt {
        'm' => M,
        'a' => &[libc::RLIMIT_AS],
        'c' => &[libc::RLIMIT_CORE],
        'd' => &[libc::RLIMIT_DATA],
        'f' => &[libc::RLIMIT_FSIZE],
        'l' => &[libc::RLIMIT_MEMLOCK],
        'o' => &[libc::RLIMIT_NOFILE],
        'p' => &[libc::RLIMIT_NPROC],
        'r' => &[libc::RLIMIT_RSS],
        's' => &[libc::RLIMIT_STACK],
        't' => &[libc::RLIMIT_CPU],
        _ => return None,
    })
}

/// Set the soft limit of `res` to `value` (None: `=`, up to the hard limit), never
/// above the hard limit.
pub fn set_soft(res: libc::__rlimit_resource_t, value: Option<u64>) -> std::io::Result<()> {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write the struct we own.
    if unsafe { libc::getrlimit(res, &mut r) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    r.rlim_cur = match value {
        None => r.rlim_max,
        Some(v) => {
            if r.rlim_max != libc::RLIM_INFINITY && v > r.rlim_max {
                r.rlim_max
            } else {
                v
            }
        }
    };
    if unsafe { libc::setrlimit(res, &r) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// `OsStr` of a `&str`, for building argv.
pub fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

/// daemontools' wording of an I/O error ([`qsys::errstr::io`]).
pub fn errstr(e: &std::io::Error) -> String {
    io_str(e).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envdir_rules() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("A"), "one  \t\nsecond line\n").unwrap();
        std::fs::write(d.path().join("B"), "").unwrap();
        std::fs::write(d.path().join("C"), b"x\0y").unwrap();
        std::fs::write(d.path().join(".hidden"), "no").unwrap();
        let got = envdir_changes(d.path()).unwrap();
        assert_eq!(
            got,
            vec![
                ("A".into(), Some("one".into())),
                ("B".into(), None),
                ("C".into(), Some("x\ny".into())),
            ]
        );
        std::fs::create_dir(d.path().join("D")).unwrap();
        assert!(
            envdir_changes(d.path())
                .unwrap_err()
                .contains("is a directory")
        );
    }
}
