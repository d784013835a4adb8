//! A daemon of an installed system started the way its run script starts it, for the
//! tests of the servers that stay up (qmail-queued, qmail-qfilterd): as `user` through
//! our setuidgid when the tests run as root and a user is named (a daemon that changes
//! its user itself gets none), else as the test's own user; stderr
//! appended to `NAME.log` beside the root. [`Daemon::start`] returns once the daemon's
//! socket is new and its log says it serves.

use crate::{System, is_root, wait_until};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

pub struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Daemon {
    /// Start HOME/bin/`program` as `user`, waiting for HOME/`socket` and its
    /// "status: serving" log line.
    pub fn start(sys: &System, program: &str, user: Option<&str>, socket: &str) -> Daemon {
        let log = sys.root.parent().unwrap().join(format!("{program}.log"));
        let socket = sys.root.join(socket);
        let before = std::fs::metadata(&socket).ok().map(|m| m.ino());
        // the log is appended to across restarts: only a line this instance wrote counts
        let serving = |text: &str| text.matches("status: serving").count();
        let served_before = serving(&std::fs::read_to_string(&log).unwrap_or_default());
        let err = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let mut cmd = match user.filter(|_| is_root()) {
            Some(user) => {
                let mut c = Command::new(sys.bin("setuidgid"));
                c.arg(user).arg(sys.bin(program));
                c
            }
            None => Command::new(sys.bin(program)),
        };
        let child = cmd
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .current_dir("/")
            .stdin(Stdio::null())
            .stderr(Stdio::from(err))
            .spawn()
            .unwrap_or_else(|e| panic!("start {program}: {e}"));
        let mut d = Daemon { child, log };
        wait_until(&format!("{program}'s socket"), 20, || {
            let now = std::fs::metadata(&socket).ok().map(|m| m.ino());
            (now.is_some() && now != before && serving(&d.log_text()) > served_before).then_some(())
        });
        assert!(d.child.try_wait().unwrap().is_none(), "{}", d.log_text());
        d
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether it has exited, reaping it if so.
    pub fn exited(&mut self) -> bool {
        self.child.try_wait().ok().flatten().is_some()
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}
