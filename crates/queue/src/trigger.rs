//! `lock/trigger`: a FIFO qmail-send reads; writing one byte wakes it (qmail's
//! `triggerpull`). Errors are ignored: without a reader the message waits for the next
//! periodic todo scan.

use std::path::Path;

pub fn pull(queue_dir: &Path) {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(queue_dir.join("lock/trigger"))
    {
        let _ = f.write(&[0]);
    }
}
