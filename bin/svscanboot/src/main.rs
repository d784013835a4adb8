//! svscanboot - start svscan at boot with a clean environment
//!
//! SYNOPSIS
//!     svscanboot [DIR]
//!
//! DESCRIPTION
//!     The boot entry point used by the systemd unit and the init script (the
//!     equivalent of daemontools' svscanboot, without readproctitle: errors go to
//!     stdout/stderr, i.e. the journal or the console). DIR defaults to /service.
//!     First tells any supervise left over from a previous svscan to exit
//!     (`svc -dx DIR/* DIR/*/log`, as Debian's svscanboot does), then execs
//!     `svscan DIR` from the same directory as svscanboot, with the environment
//!     reduced to PATH=HOME/bin:/usr/local/bin:/usr/local/sbin:/usr/bin:/usr/sbin:/bin:/sbin
//!     (HOME = the installation holding this program).
//!
//! USER
//!     root.
//!
//! EXIT CODES
//!     111 unable to run svscan; otherwise svscan's.

use std::ffi::OsString;
use std::path::PathBuf;

fn main() {
    qsys::help!();
    qsys::die::install_panic_hook("svscanboot");
    let dir = std::env::args().nth(1).unwrap_or_else(|| "/service".into());
    let bindir: PathBuf = match qsys::own_path() {
        Ok(p) => p.parent().map(PathBuf::from).unwrap_or_default(),
        Err(e) => runtools::fatal(
            "svscanboot",
            &format!("unable to find my own directory: {}", runtools::errstr(&e)),
        ),
    };
    if let Ok(rd) = std::fs::read_dir(&dir) {
        for e in rd.flatten() {
            if e.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            let p = e.path();
            for d in [p.clone(), p.join("log")] {
                if d.join("supervise").exists() {
                    let _ = svcdir::ctl::svc_send(&d.to_string_lossy(), "dx");
                }
            }
        }
    }
    let path = format!(
        "{}:/usr/local/bin:/usr/local/sbin:/usr/bin:/usr/sbin:/bin:/sbin",
        bindir.display()
    );
    for (k, _) in std::env::vars_os() {
        // SAFETY: single-threaded program about to exec.
        unsafe { std::env::remove_var(k) };
    }
    // SAFETY: as above.
    unsafe { std::env::set_var("PATH", &path) };
    let svscan = bindir.join("svscan");
    let prog: OsString = if svscan.is_file() {
        svscan.into_os_string()
    } else {
        "svscan".into()
    };
    runtools::exec("svscanboot", &[prog, OsString::from(dir)]);
}
