//! The client side of a service directory: `svc`, `svstat`, `svok`.
//!
//! All three find a running supervise by opening `supervise/ok` or `supervise/control`
//! for writing without blocking: supervise keeps a reader on both fifos, so the open
//! succeeds exactly while it runs, and fails with ENXIO ("supervise not running")
//! otherwise. This is how daemontools' tools and ours interoperate both ways.

use crate::status::{self, ReadError};
use qsys::errstr::io as io_str;
use std::fs::OpenOptions;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// The control letters `svc` accepts, in daemontools' getopt order.
pub const SVC_LETTERS: &str = "udopchaitkx";

/// `svc`'s usage text (exit 100).
pub const SVC_USAGE: &str = "svc options: u up, d down, o once, x exit, p pause, c continue, h hup, a alarm, i interrupt, t term, k kill";

/// Open `path` for writing without blocking (daemontools' `open_write`).
pub fn open_write(path: &Path) -> io::Result<std::fs::File> {
    OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
}

/// Parse svc's argv (without the program name) into the command letters (deduplicated,
/// first occurrence order, at most 20) and the directories. Err(c) names a bad option.
pub fn parse_svc_args(args: &[String]) -> Result<(String, Vec<String>), char> {
    let mut letters = String::new();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        if a == "--" {
            i += 1;
            break;
        }
        if !a.starts_with('-') || a == "-" {
            break;
        }
        for c in a[1..].chars() {
            if !SVC_LETTERS.contains(c) {
                return Err(c);
            }
            if !letters.contains(c) && letters.len() < 20 {
                letters.push(c);
            }
        }
        i += 1;
    }
    Ok((letters, args[i..].to_vec()))
}

/// Send `letters` to the supervise of `dir` in one write. Err is svc's warning text.
pub fn svc_send(dir: &str, letters: &str) -> Result<(), String> {
    let d = Path::new(dir);
    if let Err(e) = std::fs::read_dir(d) {
        return Err(format!("unable to chdir to {dir}: {}", io_str(&e)));
    }
    let mut f = match open_write(&d.join("supervise/control")) {
        Ok(f) => f,
        Err(e) if e.raw_os_error() == Some(libc::ENXIO) => {
            return Err(format!("unable to control {dir}: supervise not running"));
        }
        Err(e) => return Err(format!("unable to control {dir}: {}", io_str(&e))),
    };
    if letters.is_empty() {
        return Ok(());
    }
    f.write_all(letters.as_bytes())
        .map_err(|e| format!("error writing commands to {dir}: {}", io_str(&e)))
}

/// svok: 0 when a supervise runs for `dir`, 100 when none does, Err(text) (exit 111) on
/// other errors.
pub fn svok(dir: &str) -> Result<i32, String> {
    let d = Path::new(dir);
    if let Err(e) = std::fs::read_dir(d) {
        return Err(format!("unable to chdir to {dir}: {}", io_str(&e)));
    }
    match open_write(&d.join("supervise/ok")) {
        Ok(_) => Ok(0),
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENXIO)) => Ok(100),
        Err(e) => Err(format!("unable to open {dir}/supervise/ok: {}", io_str(&e))),
    }
}

/// True when a supervise runs for `dir` (svok's answer 0).
pub fn running(dir: &Path) -> bool {
    open_write(&dir.join("supervise/ok")).is_ok()
}

/// One svstat line (without the newline): `DIR: up (pid P) S seconds...`.
pub fn svstat_line(dir: &str) -> String {
    format!("{dir}: {}", svstat_text(Path::new(dir)))
}

fn svstat_text(d: &Path) -> String {
    if let Err(e) = std::fs::read_dir(d) {
        return format!("unable to chdir: {}", io_str(&e));
    }
    let normallyup = match std::fs::metadata(d.join("down")) {
        Ok(_) => false,
        Err(e) if e.kind() == io::ErrorKind::NotFound => true,
        Err(e) => return format!("unable to stat down: {}", io_str(&e)),
    };
    match open_write(&d.join("supervise/ok")) {
        Ok(_) => {}
        Err(e) if e.raw_os_error() == Some(libc::ENXIO) => {
            return "supervise not running".into();
        }
        Err(e) => return format!("unable to open supervise/ok: {}", io_str(&e)),
    }
    let st = match status::read(&d.join("supervise/status")) {
        Ok(s) => s,
        Err(ReadError::Open(e)) => {
            return format!("unable to open supervise/status: {}", io_str(&e));
        }
        Err(ReadError::Read(e)) => {
            return format!("unable to read supervise/status: {}", io_str(&e));
        }
        Err(ReadError::BadFormat) => return "unable to read supervise/status: bad format".into(),
    };
    let now = tai64::Tai64n::now().secs;
    let secs = now.saturating_sub(st.stamp.secs);
    let mut s = if st.pid != 0 {
        format!("up (pid {}) {secs} seconds", st.pid)
    } else {
        format!("down {secs} seconds")
    };
    if st.pid != 0 && !normallyup {
        s.push_str(", normally down");
    }
    if st.pid == 0 && normallyup {
        s.push_str(", normally up");
    }
    if st.pid != 0 && st.paused {
        s.push_str(", paused");
    }
    if st.pid == 0 && st.want == b'u' {
        s.push_str(", want up");
    }
    if st.pid != 0 && st.want == b'd' {
        s.push_str(", want down");
    }
    s
}

/// DJB's text for an errno value ([`qsys::errstr::errno`]), for the programs' messages.
pub fn errstr(errno: i32) -> &'static str {
    qsys::errstr::errno(errno)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn svc_args() {
        assert_eq!(
            parse_svc_args(&v(&["-dx", "-d", "-u", "a", "b"])).unwrap(),
            ("dxu".to_string(), v(&["a", "b"]))
        );
        assert_eq!(parse_svc_args(&v(&["-z", "a"])), Err('z'));
        assert_eq!(
            parse_svc_args(&v(&["--", "-a"])).unwrap(),
            (String::new(), v(&["-a"]))
        );
    }

    #[test]
    fn svstat_without_supervise() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().to_str().unwrap();
        assert!(svstat_line(p).ends_with(": unable to open supervise/ok: file does not exist"));
        assert!(svstat_line("/nonexistent/x").ends_with("unable to chdir: file does not exist"));
        assert_eq!(svok(p), Ok(100));
        assert!(svok("/nonexistent/x").is_err());
    }
}
