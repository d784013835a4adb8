//! Our svscan over a temporary service directory holding links to an installation's
//! services, stopped with SIGTERM (svscan then stops every supervise, service and
//! logger in order) when the test drops it.

use crate::System;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub struct Scan {
    child: Option<Child>,
    /// The service directory svscan watches.
    pub dir: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Scan {
    /// svscan with `services` of `sys` linked into a fresh service directory.
    pub fn start(sys: &System, services: &[&str]) -> Scan {
        let tmp = tempfile::Builder::new()
            .prefix("svscan-e2e")
            .tempdir_in("/tmp")
            .unwrap();
        let dir = tmp.path().join("service");
        std::fs::create_dir(&dir).unwrap();
        for s in services {
            std::os::unix::fs::symlink(sys.root.join("supervise").join(s), dir.join(s)).unwrap();
        }
        let child = Command::new(sys.bin("svscan"))
            .arg(&dir)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .stdin(Stdio::null())
            .spawn()
            .expect("svscan");
        Scan {
            child: Some(child),
            dir,
            _tmp: tmp,
        }
    }

    /// The entry of service `name` in the service directory.
    pub fn svc(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Stop svscan (SIGTERM) and wait for it; `None` when already stopped.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        stop(self.child.take()?, nix::sys::signal::Signal::SIGTERM)
    }
}

impl Drop for Scan {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Send `sig` to `c` (svscan, or a quick start that became it) and wait for its exit;
/// SIGKILL after 60 s.
pub fn stop(mut c: Child, sig: nix::sys::signal::Signal) -> Option<ExitStatus> {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(c.id() as i32), sig);
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(Some(st)) = c.try_wait() {
            return Some(st);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!(
        "process {} did not exit within 60 s of {sig}: killed",
        c.id()
    );
    let _ = c.kill();
    c.wait().ok()
}
