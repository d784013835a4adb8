//! The files of a multilog directory in the order their lines were written, read line by
//! line in bounded memory.
//!
//! multilog (crates/logdir) renames `current` to `@TAI64N.s` (or `.u` when salvaged after
//! a crash) at rotation, so the rotated files sorted by name come first, oldest first,
//! and `current` last. A rotated file named before `since` holds only older lines and is
//! not opened. Other names (`lock`, `state`, `newstate`, `processed`, `previous`) are not
//! logs.

use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};

use crate::tally::{LINE_MAX, Stats, split_stamp};

/// The log files of `dir`, oldest first.
pub fn log_files(dir: &Path, since_ms: Option<i64>) -> io::Result<Vec<PathBuf>> {
    let mut rotated = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(stem) = name.strip_suffix(".s").or_else(|| name.strip_suffix(".u")) else {
            continue;
        };
        if stem.len() != 25 || !stem.starts_with('@') {
            continue;
        }
        let Some(ended) = split_stamp(format!("{stem} ").as_bytes()).0 else {
            continue;
        };
        if since_ms.is_some_and(|s| ended < s) {
            continue;
        }
        rotated.push(name.to_string());
    }
    rotated.sort();
    let mut files: Vec<PathBuf> = rotated.into_iter().map(|n| dir.join(n)).collect();
    let current = dir.join("current");
    if current.is_file() {
        files.push(current);
    }
    Ok(files)
}

/// Feed every line of `dir`'s logs to `stats`.
pub fn read_dir_into(dir: &Path, stats: &mut Stats) -> io::Result<()> {
    for f in log_files(dir, stats.since_ms())? {
        let file = match File::open(&f) {
            Ok(file) => file,
            // rotated away (and deleted) between listing and opening
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", f.display()))),
        };
        read_lines(BufReader::new(file), |l| stats.feed_line(l))
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", f.display())))?;
    }
    Ok(())
}

/// Call `each` with every line of `r` (without its newline), cut to [`LINE_MAX`] bytes:
/// memory stays bounded however long a line is. A last line without a newline counts.
pub fn read_lines<R: BufRead>(mut r: R, mut each: impl FnMut(&[u8])) -> io::Result<()> {
    let mut line = Vec::with_capacity(256);
    loop {
        let buf = match r.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buf.is_empty() {
            if !line.is_empty() {
                each(&line);
            }
            return Ok(());
        }
        let (chunk, used, end) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (&buf[..i], i + 1, true),
            None => (buf, buf.len(), false),
        };
        let room = LINE_MAX.saturating_sub(line.len());
        line.extend_from_slice(&chunk[..chunk.len().min(room)]);
        r.consume(used);
        if end {
            each(&line);
            line.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotated_files_first_then_current() {
        let d = tempfile::tempdir().unwrap();
        let old = "@400000000000000a00000000.s";
        let newer = "@400000000000001400000000.u";
        for n in [newer, old, "current", "state", "lock", "@junk.s"] {
            std::fs::write(d.path().join(n), "").unwrap();
        }
        let names = |v: Vec<PathBuf>| -> Vec<String> {
            v.iter()
                .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
                .collect()
        };
        assert_eq!(
            names(log_files(d.path(), None).unwrap()),
            vec![old, newer, "current"]
        );
        // the old file ended at unix 0, the newer at unix 10
        assert_eq!(
            names(log_files(d.path(), Some(5_000)).unwrap()),
            vec![newer, "current"]
        );
    }

    #[test]
    fn long_lines_are_cut_and_the_rest_counts() {
        let mut input = vec![b'a'; LINE_MAX * 3];
        input.extend_from_slice(b"\nshort\nlast");
        let mut got = Vec::new();
        read_lines(&input[..], |l| got.push(l.to_vec())).unwrap();
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].len(), LINE_MAX);
        assert_eq!(got[1], b"short");
        assert_eq!(got[2], b"last");
    }
}
