//! A real clamd (Debian's clamav-daemon) for the antivirus tests, offline: started in the
//! foreground on a unix socket in a temporary directory, with its own database of
//! one-line EICAR signatures (wave2.md 2.2; no freshclam, no network, nothing of the
//! system's /etc/clamav or /var/lib/clamav is used). Killed when dropped.
//!
//! Filters run as qmailf, so the directory is mode 0755 and the socket 0666
//! (`LocalSocketMode`). ClamAV appends `.UNOFFICIAL` to names from a database of one's
//! own: match verdicts on the prefix ([`EICAR_NAME`]).
//!
//! ```ignore
//! let Some(mut clamd) = e2e::clamd::Clamd::start_or_skip() else { return };
//! // control/clamd = clamd.socket(); ... clamd.stop(); ... clamd.start_again();
//! ```

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The EICAR test file (68 bytes), which every scanner reports.
pub const EICAR: &[u8] = br"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";

/// The start of the name clamd reports for [`EICAR`] with this database (the `.ndb`
/// signature wins over the `.hdb` one; both start so).
pub const EICAR_NAME: &str = "Test.EICAR-";

/// The Debian package that provides clamd.
const PACKAGE: &str = "clamav-daemon";

/// A running clamd of our own.
pub struct Clamd {
    dir: tempfile::TempDir,
    socket: PathBuf,
    child: Option<Child>,
}

/// Whether clamd is installed; if not, [`crate::skip`] naming its package.
pub fn have_clamd() -> bool {
    crate::have_tool("clamd", PACKAGE)
}

impl Clamd {
    /// Start clamd and wait until it answers PING. Panics when clamd is missing: call
    /// [`have_clamd`] first, or use [`Clamd::start_or_skip`].
    pub fn start() -> Clamd {
        let dir = tempfile::Builder::new()
            .prefix("qmail-clamd")
            .tempdir_in("/tmp")
            .expect("tempdir");
        // qmailf (the filters' user) must reach the socket
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let d = dir.path();
        for sub in ["db", "tmp"] {
            std::fs::create_dir(d.join(sub)).unwrap();
        }
        // MD5:size:name of the 68-byte EICAR file, and its text as a body signature
        std::fs::write(
            d.join("db/test.hdb"),
            "44d88612fea8a8f36de82e1278abb02f:68:Test.EICAR-HDB\n",
        )
        .unwrap();
        let hex: String = b"EICAR-STANDARD-ANTIVIRUS-TEST-FILE"
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        std::fs::write(d.join("db/test.ndb"), format!("Test.EICAR-NDB:0:*:{hex}\n")).unwrap();
        let conf = format!(
            "LocalSocket {0}/clamd.sock\n\
             LocalSocketMode 666\n\
             FixStaleSocket yes\n\
             Foreground yes\n\
             DatabaseDirectory {0}/db\n\
             TemporaryDirectory {0}/tmp\n\
             LogFile {0}/clamd.log\n\
             LogTime yes\n\
             PidFile {0}/clamd.pid\n\
             StreamMaxLength 10M\n\
             MaxThreads 2\n\
             SelfCheck 0\n\
             Bytecode no\n",
            d.display()
        );
        std::fs::write(d.join("clamd.conf"), conf).unwrap();
        let socket = d.join("clamd.sock");
        let mut c = Clamd {
            dir,
            socket,
            child: None,
        };
        c.start_again();
        c
    }

    /// [`Clamd::start`], or `None` after [`crate::skip`] when clamd is not installed.
    pub fn start_or_skip() -> Option<Clamd> {
        have_clamd().then(Clamd::start)
    }

    /// The unix socket clamd listens on (the same across [`Clamd::stop`] and
    /// [`Clamd::start_again`]).
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// clamd's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("clamd.log")).unwrap_or_default()
    }

    /// Stop clamd (TERM, then wait); its socket is gone afterwards.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        // a killed clamd leaves its socket; connecting must fail, not hang
        let _ = std::fs::remove_file(&self.socket);
    }

    /// Start clamd (again) on the same socket and wait until it answers PING.
    pub fn start_again(&mut self) {
        self.stop();
        let clamd = crate::find_tool("clamd")
            .unwrap_or_else(|| panic!("clamd is missing (apt-get install {PACKAGE})"));
        let child = Command::new(clamd)
            .arg("-c")
            .arg(self.dir.path().join("clamd.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start clamd");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if self.ping() {
                return;
            }
            if let Some(Ok(Some(st))) = self.child.as_mut().map(Child::try_wait) {
                panic!("clamd exited ({st}) before answering; log:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "clamd did not answer within 60 s; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// True when clamd answers `zPING` with `PONG`.
    pub fn ping(&self) -> bool {
        request(&self.socket, b"zPING\0").is_some_and(|r| r == "PONG")
    }

    /// clamd's verdict on `data` (`zINSTREAM`), e.g. `stream: OK` or
    /// `stream: Test.EICAR-NDB.UNOFFICIAL FOUND`; `None` when it cannot be reached.
    pub fn scan(&self, data: &[u8]) -> Option<String> {
        let mut req = b"zINSTREAM\0".to_vec();
        for chunk in data.chunks(64 * 1024) {
            req.extend_from_slice(&(chunk.len() as u32).to_be_bytes());
            req.extend_from_slice(chunk);
        }
        req.extend_from_slice(&[0, 0, 0, 0]);
        request(&self.socket, &req)
    }
}

impl Drop for Clamd {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Send `req` to the socket and read the NUL-terminated reply.
fn request(socket: &Path, req: &[u8]) -> Option<String> {
    let mut s = UnixStream::connect(socket).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    s.set_write_timeout(Some(Duration::from_secs(30))).ok()?;
    s.write_all(req).ok()?;
    let mut reply = Vec::new();
    s.take(4096).read_to_end(&mut reply).ok()?;
    let text = String::from_utf8_lossy(&reply);
    Some(text.trim_end_matches(['\0', '\n']).to_string())
}
