//! mbox delivery (qmail's `mailfile`): append under an exclusive `flock` (waiting at most
//! 30 seconds), `From ` line, Return-Path and Delivered-To, the message with `>From `
//! quoting (`^>*From ` gets one more `>`), a final newline if missing, and one blank
//! line; fsync. On any error the file is truncated back to where it ended.

use crate::Fail;
use nix::fcntl::{Flock, FlockArg};
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

const LOCK_WAIT: Duration = Duration::from_secs(30);

/// Take the mbox's exclusive flock, polling for at most [`LOCK_WAIT`]; held until the
/// result is dropped.
fn lock(mut f: File) -> Result<Flock<File>, Fail> {
    let start = Instant::now();
    loop {
        match Flock::lock(f, FlockArg::LockExclusiveNonblock) {
            Ok(locked) => return Ok(locked),
            Err((back, _)) => f = back,
        }
        if start.elapsed() >= LOCK_WAIT {
            return Err(Fail::temp(
                "File has been locked for 30 seconds straight. (#4.3.0)",
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// True for lines that need a `>` in front: `From ` after any number of `>`.
pub fn needs_quote(line: &[u8]) -> bool {
    let rest = &line[line.iter().take_while(|&&b| b == b'>').count()..];
    rest.starts_with(b"From ")
}

/// Append `message` to the mbox at `path` with `prefix` (UFLINE, RPLINE, DTLINE).
pub fn deliver(path: &Path, prefix: &[u8], message: &mut File) -> Result<(), Fail> {
    let file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| Fail::temp(format!("Unable to open {}: {e}. (#4.2.1)", path.display())))?;
    let file = lock(file)?;
    let end = file
        .metadata()
        .map(|m| m.len())
        .map_err(|_| Fail::temp("Unable to stat mbox. (#4.3.0)"))?;
    let result = append(&file, prefix, message);
    if result.is_err() {
        let _ = file.set_len(end);
        return Err(Fail::temp("Unable to write mbox. (#4.3.0)"));
    }
    Ok(())
}

fn append(file: &File, prefix: &[u8], message: &mut File) -> io::Result<()> {
    message.seek(SeekFrom::Start(0))?;
    let mut out = BufWriter::with_capacity(64 * 1024, file);
    out.write_all(prefix)?;
    let mut input = BufReader::with_capacity(64 * 1024, message);
    let mut line = Vec::new();
    let mut last_had_newline = true;
    loop {
        line.clear();
        if input.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        if needs_quote(&line) {
            out.write_all(b">")?;
        }
        out.write_all(&line)?;
        last_had_newline = line.ends_with(b"\n");
    }
    if !last_had_newline {
        out.write_all(b"\n")?;
    }
    out.write_all(b"\n")?;
    out.flush()?;
    drop(out);
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_waits_for_the_holder_and_is_released_after_delivery() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("mbox");
        let held = lock(File::create(&p).unwrap()).unwrap();
        let waiter = std::thread::spawn({
            let p = p.clone();
            move || {
                let mut m = tempfile::tempfile().unwrap();
                m.write_all(b"x\n").unwrap();
                deliver(&p, b"", &mut m).map_err(|f| f.text)
            }
        });
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(std::fs::metadata(&p).unwrap().len(), 0);
        drop(held);
        waiter.join().unwrap().unwrap();
        assert!(lock(File::open(&p).unwrap()).is_ok());
    }

    #[test]
    fn quoting() {
        assert!(needs_quote(b"From x"));
        assert!(needs_quote(b">>From x"));
        assert!(!needs_quote(b"Fromage"));
        assert!(!needs_quote(b" From x"));
    }

    #[test]
    fn appends_two_messages() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("Mailbox");
        let mut m = tempfile::tempfile().unwrap();
        m.write_all(b"Subject: s\n\nFrom me\nlast").unwrap();
        deliver(&p, b"From a@b Thu Jan  1 00:00:00 1970\n", &mut m).unwrap();
        deliver(&p, b"From c@d Thu Jan  1 00:00:00 1970\n", &mut m).unwrap();
        let got = String::from_utf8(std::fs::read(&p).unwrap()).unwrap();
        assert_eq!(
            got,
            "From a@b Thu Jan  1 00:00:00 1970\nSubject: s\n\n>From me\nlast\n\nFrom c@d Thu Jan  1 00:00:00 1970\nSubject: s\n\n>From me\nlast\n\n"
        );
    }
}
