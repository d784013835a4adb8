//! Reading a multilog directory incrementally, across rotations
//! (reference/daemontools-ucspi.md section 3: `current`, rotated `@TAI64N.s` and
//! salvaged `@TAI64N.u` files, whose names sort in time order).
//!
//! A [`Cursor`] remembers the file qmail-guard stopped in by its identity (device and
//! inode: multilog rotates by renaming `current` and linking it to `@....s`, so the
//! inode stays), the offset after the last whole line read there, and that line's stamp.
//! The next read lists the directory, finds the file with that identity (current or
//! rotated meanwhile) and goes on from the offset, then through every newer file; when
//! the file is gone (pruned), it reads every file and skips lines stamped at or before
//! the remembered stamp. A rotation during the read is seen when `current` is no longer
//! the file being read: the rest of that file is read and the listing starts again. So
//! no line is lost or read twice. A line without its newline at the end of `current` is
//! left for the next read (multilog may be writing it); at the end of a rotated file it
//! is read (the file is finished). Lines longer than [`MAX_LINE`] are cut to it.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use tai64::Tai64n;

/// Bytes of a line passed on (multilog keeps 1000 for its own matching).
pub const MAX_LINE: usize = 4096;

/// Where reading a log directory stopped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cursor {
    pub dev: u64,
    pub ino: u64,
    pub offset: u64,
    /// The stamp of the last line read, if it had one.
    pub stamp: Option<Tai64n>,
}

/// One file of the directory, in reading order.
struct Entry {
    name: String,
    dev: u64,
    ino: u64,
}

/// Rotated files (oldest first), then `current`.
fn listing(dir: &Path) -> io::Result<Vec<Entry>> {
    let mut names: Vec<String> = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let Ok(name) = e.file_name().into_string() else {
            continue;
        };
        if rotated_name(&name) {
            names.push(name);
        }
    }
    names.sort();
    names.push("current".into());
    let mut out = Vec::new();
    for name in names {
        match std::fs::metadata(dir.join(&name)) {
            Ok(m) if m.is_file() => out.push(Entry {
                name,
                dev: m.dev(),
                ino: m.ino(),
            }),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// `@` + 24 hex digits + `.s` or `.u`.
fn rotated_name(n: &str) -> bool {
    let b = n.as_bytes();
    b.len() == 27
        && b[0] == b'@'
        && b[1..25].iter().all(u8::is_ascii_hexdigit)
        && (n.ends_with(".s") || n.ends_with(".u"))
}

/// Read every whole line added to `dir` since `cursor`, calling `line` for each
/// (without its newline), and move the cursor past it. The cursor is updated line by
/// line, so after an error it still says exactly what was read.
pub fn read_new(dir: &Path, cursor: &mut Cursor, mut line: impl FnMut(&[u8])) -> io::Result<()> {
    // each round ends when current was read to its end and is still current; a
    // rotation during the read starts a new round (a few rounds at most in practice)
    for _ in 0..100 {
        if read_round(dir, cursor, &mut line)? {
            return Ok(());
        }
    }
    Ok(())
}

fn read_round(dir: &Path, cursor: &mut Cursor, line: &mut impl FnMut(&[u8])) -> io::Result<bool> {
    let files = listing(dir)?;
    let found = files
        .iter()
        .position(|f| f.dev == cursor.dev && f.ino == cursor.ino)
        .filter(|&i| !recycled(&dir.join(&files[i].name), cursor));
    let (start, mut offset, skip_upto) = match found {
        Some(i) => (i, cursor.offset, None),
        None => (0, 0, cursor.stamp),
    };
    for f in &files[start..] {
        let is_current = f.name == "current";
        let path = dir.join(&f.name);
        let file = match File::open(&path) {
            Ok(file) => file,
            // rotated or pruned between the listing and now
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        let m = file.metadata()?;
        if m.dev() != f.dev || m.ino() != f.ino {
            return Ok(false);
        }
        if m.len() < offset {
            // not multilog's doing (a truncated file): read it again from the start
            offset = 0;
        }
        if (f.dev, f.ino) != (cursor.dev, cursor.ino) {
            *cursor = Cursor {
                dev: f.dev,
                ino: f.ino,
                offset,
                stamp: cursor.stamp,
            };
        }
        cursor.offset = offset;
        read_file(file, offset, !is_current, cursor, skip_upto, line)?;
        offset = 0;
        if is_current {
            // still current? then everything was read
            let still = std::fs::metadata(&path)
                .map(|m| m.dev() == f.dev && m.ino() == f.ino)
                .unwrap_or(false);
            if still {
                return Ok(true);
            }
            // rotated while being read: finish it as a rotated file in the next round
            return Ok(false);
        }
    }
    Ok(true)
}

/// Whether the file with the cursor's identity is another one that got the inode of the
/// cursor's file after that was pruned: its first line is stamped after the last line
/// read.
fn recycled(path: &Path, cursor: &Cursor) -> bool {
    let Some(last) = cursor.stamp else {
        return false;
    };
    let Ok(file) = File::open(path) else {
        return false;
    };
    let mut first = Vec::new();
    match read_line(&mut BufReader::new(file), &mut first) {
        Ok(_) => crate::events::stamp(&first).is_some_and(|(t, _)| t > last),
        Err(_) => false,
    }
}

/// Read lines of `file` from `offset`, updating `cursor` after each. `finished`: the file
/// will not grow, so a last line without a newline is read too.
fn read_file(
    file: File,
    offset: u64,
    finished: bool,
    cursor: &mut Cursor,
    skip_upto: Option<Tai64n>,
    line: &mut impl FnMut(&[u8]),
) -> io::Result<()> {
    let mut r = BufReader::with_capacity(64 * 1024, file);
    r.seek(SeekFrom::Start(offset))?;
    let mut buf: Vec<u8> = Vec::with_capacity(1024);
    loop {
        buf.clear();
        let (n, complete) = read_line(&mut r, &mut buf)?;
        if n == 0 || (!complete && !finished) {
            return Ok(());
        }
        cursor.offset += n as u64;
        let stamp = crate::events::stamp(&buf).map(|(t, _)| t);
        let skip = matches!((skip_upto, stamp), (Some(upto), Some(t)) if t <= upto);
        if let Some(t) = stamp {
            cursor.stamp = Some(t);
        }
        if !skip {
            line(&buf);
        }
    }
}

/// One line into `buf` (at most [`MAX_LINE`] bytes kept, the newline dropped): the bytes
/// consumed and whether the line ended in a newline.
fn read_line(r: &mut impl BufRead, buf: &mut Vec<u8>) -> io::Result<(usize, bool)> {
    let mut n = 0;
    loop {
        let chunk = match r.fill_buf() {
            Ok(c) => c,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if chunk.is_empty() {
            return Ok((n, false));
        }
        let (take, done) = match chunk.iter().position(|&c| c == b'\n') {
            Some(i) => (i + 1, true),
            None => (chunk.len(), false),
        };
        let body = if done {
            &chunk[..take - 1]
        } else {
            &chunk[..take]
        };
        let room = MAX_LINE.saturating_sub(buf.len());
        buf.extend_from_slice(&body[..body.len().min(room)]);
        r.consume(take);
        n += take;
        if done {
            return Ok((n, true));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn line(i: u64) -> String {
        let t = Tai64n {
            secs: tai64::EPOCH + 1_800_000_000 + i,
            nanos: 500,
        };
        format!("{} line {i}\n", t.to_hex())
    }

    fn append(dir: &Path, from: u64, to: u64) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("current"))
            .unwrap();
        for i in from..to {
            f.write_all(line(i).as_bytes()).unwrap();
        }
    }

    /// multilog's rotation: current -> @stamp.s (same inode), new empty current
    fn rotate(dir: &Path, n: u64) {
        let name = format!("@4000000000000000000{n:05}.s");
        std::fs::rename(dir.join("current"), dir.join(name)).unwrap();
        std::fs::write(dir.join("current"), "").unwrap();
    }

    fn read(dir: &Path, c: &mut Cursor) -> Vec<String> {
        let mut got = Vec::new();
        read_new(dir, c, |l| {
            got.push(String::from_utf8_lossy(l).into_owned())
        })
        .unwrap();
        got
    }

    fn numbers(lines: &[String]) -> Vec<u64> {
        lines
            .iter()
            .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
            .collect()
    }

    #[test]
    fn rotation_between_reads_loses_and_doubles_nothing() {
        let d = tempfile::tempdir().unwrap();
        let mut c = Cursor::default();
        append(d.path(), 0, 5);
        assert_eq!(numbers(&read(d.path(), &mut c)), [0, 1, 2, 3, 4]);
        append(d.path(), 5, 8);
        rotate(d.path(), 1);
        append(d.path(), 8, 10);
        rotate(d.path(), 2);
        append(d.path(), 10, 12);
        assert_eq!(numbers(&read(d.path(), &mut c)), [5, 6, 7, 8, 9, 10, 11]);
        assert!(read(d.path(), &mut c).is_empty());
    }

    #[test]
    fn a_partial_line_waits_for_its_newline() {
        let d = tempfile::tempdir().unwrap();
        let mut c = Cursor::default();
        let l = line(1);
        std::fs::write(d.path().join("current"), &l[..10]).unwrap();
        assert!(read(d.path(), &mut c).is_empty());
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(d.path().join("current"))
            .unwrap();
        f.write_all(&l.as_bytes()[10..]).unwrap();
        assert_eq!(numbers(&read(d.path(), &mut c)), [1]);
    }

    #[test]
    fn a_pruned_file_is_recovered_by_stamp() {
        let d = tempfile::tempdir().unwrap();
        let mut c = Cursor::default();
        append(d.path(), 0, 3);
        read(d.path(), &mut c);
        append(d.path(), 3, 5);
        rotate(d.path(), 1);
        // multilog pruned the file we were in
        std::fs::remove_file(d.path().join("@400000000000000000000001.s")).unwrap();
        std::fs::write(
            d.path().join("@400000000000000000000002.s"),
            format!("{}{}", line(5), line(6)),
        )
        .unwrap();
        append(d.path(), 7, 8);
        assert_eq!(numbers(&read(d.path(), &mut c)), [5, 6, 7]);
        // a cursor whose file is gone skips what its stamp says was read
        let e = tempfile::tempdir().unwrap();
        append(e.path(), 0, 5);
        let mut c = Cursor {
            dev: 0,
            ino: 0,
            offset: 99,
            stamp: tai64::Tai64n::from_hex(&line(2).as_bytes()[1..25]),
        };
        assert_eq!(numbers(&read(e.path(), &mut c)), [3, 4]);
    }

    #[test]
    fn rotation_during_a_read_is_followed() {
        let d = tempfile::tempdir().unwrap();
        let mut c = Cursor::default();
        append(d.path(), 0, 4);
        let mut seen = Vec::new();
        let dir = d.path().to_path_buf();
        let mut rotated = false;
        read_new(d.path(), &mut c, |l| {
            seen.push(String::from_utf8_lossy(l).into_owned());
            if !rotated {
                // mid-read: more lines, rotation, more lines in the new current
                append(&dir, 4, 6);
                rotate(&dir, 1);
                append(&dir, 6, 8);
                rotated = true;
            }
        })
        .unwrap();
        assert_eq!(numbers(&seen), [0, 1, 2, 3, 4, 5, 6, 7]);
    }

    #[test]
    fn long_lines_are_cut_and_odd_names_ignored() {
        let d = tempfile::tempdir().unwrap();
        let mut c = Cursor::default();
        let long = format!("{}\n", "x".repeat(MAX_LINE * 3));
        std::fs::write(d.path().join("current"), format!("{long}{}", line(9))).unwrap();
        std::fs::write(d.path().join("@junk.s"), line(100)).unwrap();
        std::fs::write(d.path().join("state"), "").unwrap();
        let got = read(d.path(), &mut c);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].len(), MAX_LINE);
        assert_eq!(numbers(&got[1..]), [9]);
    }
}
