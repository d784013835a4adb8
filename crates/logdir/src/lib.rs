//! multilog (daemontools 0.76): read lines on stdin, act on them with a script of
//! actions, append the selected ones to automatically rotated log directories.
//!
//! Actions, left to right for every line (each line starts selected):
//! `t` (first argument only) prefix `@TAI64N ` · `sSIZE` max size of `current` for the
//! directories that follow (default 99999, within 4096..16777215) · `nNUM` files kept
//! (default 10, at least 2) · `!PROCESSOR` run over each rotated file · `+PATTERN`
//! select if it matches · `-PATTERN` deselect if it matches · `e` copy the line to
//! stderr (200 bytes) · `=FILE` overwrite FILE with the line padded to 1001 bytes ·
//! `./dir` or `/dir` append to that log directory. Anything else is ignored.
//!
//! A log directory holds `lock` (flock'ed), `current` (0644 while written, 0744 after a
//! clean exit), `state`, and rotated files `@TAI64N.s` (complete, 0744) or `.u`
//! (salvaged after a crash). A file is rotated on a line boundary once it holds
//! SIZE-2000 bytes, before it would exceed SIZE; at most NUM-1 old files are kept.
//! A processor runs as `sh -c PROCESSOR` with the old file on stdin, its output becoming
//! the rotated file, fd 4 reading `state` and fd 5 writing `newstate`.
//!
//! Every file system operation after start-up is retried every 5 seconds until it works
//! (`multilog: warning: unable to ..., pausing: ...`), so a full disk delays lines, never
//! drops them. TERM finishes the current line and exits; ALRM rotates every non-empty
//! `current`; end of input finishes and exits 0. Start-up errors exit 111.

pub mod pattern;

use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use qsys::errstr::io as io_str;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tai64::Tai64n;

const PROG: &str = "multilog";
/// Output buffer per directory, and the largest write past it (djb's buffer.h).
const BUFSIZE: usize = 512;
const OUTSIZE: usize = 8192;
/// Bytes read from stdin at a time (multilog's `inbuf`); buffers are flushed before
/// every read.
const INSIZE: usize = 1024;
/// Bytes of a line kept for matching, `e` and `=`.
pub const LINE_MAX: usize = 1000;

fn fatal(msg: String) -> ! {
    qsys::die::fatal(PROG, &msg, 111)
}

fn warn(msg: &str) {
    qsys::die::warn(PROG, "warning", msg);
}

/// Retry `op` every 5 seconds until it succeeds, warning `unable to WHAT, pausing: ERR`.
fn retry<T>(what: impl Fn() -> String, mut op: impl FnMut() -> io::Result<T>) -> T {
    loop {
        match op() {
            Ok(v) => return v,
            Err(e) => {
                warn(&format!("unable to {}, pausing: {}", what(), io_str(&e)));
                std::thread::sleep(Duration::from_secs(5));
            }
        }
    }
}

/// The number made of the leading digits (djb's `scan_ulong`: `s100k` is 100).
fn scan_ulong(s: &[u8]) -> u64 {
    s.iter()
        .take_while(|c| c.is_ascii_digit())
        .fold(0u64, |n, &c| {
            n.saturating_mul(10).saturating_add(u64::from(c - b'0'))
        })
}

/// One action of the script.
#[derive(Clone, Debug, PartialEq)]
enum Action {
    Plus(Vec<u8>),
    Minus(Vec<u8>),
    Stderr,
    File(usize),
    Dir(usize),
}

/// An automatically rotated log directory.
pub struct LogDir {
    path: PathBuf,
    size: u64,
    num: usize,
    processor: Option<String>,
    current: Option<File>,
    bytes: u64,
    buf: Vec<u8>,
    _lock: nix::fcntl::Flock<File>,
}

fn open_append(p: &Path, mode: u32) -> io::Result<File> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(mode)
        .custom_flags(libc::O_NONBLOCK)
        .open(p)
}

fn open_trunc(p: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .custom_flags(libc::O_NONBLOCK)
        .open(p)
}

fn ignore_missing(r: io::Result<()>) -> io::Result<()> {
    match r {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

impl LogDir {
    fn p(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    fn name(&self, name: &str) -> String {
        format!("{}/{name}", self.path.display())
    }

    /// Open (and recover) the directory at start-up; failures here are fatal.
    fn open(path: &Path, size: u64, num: usize, processor: Option<String>) -> LogDir {
        use std::os::unix::fs::DirBuilderExt;
        let _ = std::fs::DirBuilder::new().mode(0o700).create(path);
        let lock =
            match open_append(&path.join("lock"), 0o600).and_then(svcdir::supervise::lock_exnb) {
                Ok(f) => f,
                Err(e) => fatal(format!(
                    "unable to lock directory {}: {}",
                    path.display(),
                    io_str(&e)
                )),
            };
        let mut d = LogDir {
            path: path.to_path_buf(),
            size,
            num,
            processor,
            current: None,
            bytes: 0,
            buf: Vec::new(),
            _lock: lock,
        };
        d.restart();
        d
    }

    fn restart(&mut self) {
        let cur = self.p("current");
        match std::fs::metadata(&cur) {
            Ok(m) if m.mode() & 0o100 != 0 => {
                let f = retry(
                    || format!("write to {}", self.name("current")),
                    || open_append(&cur, 0o644),
                );
                retry(
                    || format!("set mode of {}", self.name("current")),
                    || f.set_permissions(std::fs::Permissions::from_mode(0o644)),
                );
                self.bytes = m.len();
                self.current = Some(f);
                return;
            }
            _ => {}
        }
        for f in ["state", "newstate"] {
            let p = self.p(f);
            retry(
                || format!("remove {}", self.name(f)),
                || ignore_missing(std::fs::remove_file(&p)),
            );
        }
        let processed_done = std::fs::metadata(self.p("processed"))
            .map(|m| m.mode() & 0o100 != 0)
            .unwrap_or(false);
        if processed_done {
            let p = self.p("previous");
            retry(
                || format!("remove {}", self.name("previous")),
                || ignore_missing(std::fs::remove_file(&p)),
            );
            self.finish("processed", 's');
        } else {
            let p = self.p("processed");
            retry(
                || format!("remove {}", self.name("processed")),
                || ignore_missing(std::fs::remove_file(&p)),
            );
            self.finish("previous", 'u');
        }
        self.finish("current", 'u');
        let st = self.p("state");
        retry(
            || format!("write to {}", self.name("state")),
            || open_trunc(&st),
        );
        let f = retry(
            || format!("write to {}", self.name("current")),
            || open_append(&cur, 0o644),
        );
        retry(
            || format!("set mode of {}", self.name("current")),
            || f.set_permissions(std::fs::Permissions::from_mode(0o644)),
        );
        self.bytes = 0;
        self.current = Some(f);
    }

    /// Give `file` its final name `@TAI64N.code` and prune old files down to NUM-1.
    fn finish(&self, file: &str, code: char) {
        let p = self.p(file);
        let m = loop {
            match std::fs::metadata(&p) {
                Ok(m) => break m,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return,
                Err(e) => {
                    warn(&format!(
                        "unable to stat {}, pausing: {}",
                        self.name(file),
                        io_str(&e)
                    ));
                    std::thread::sleep(Duration::from_secs(5));
                }
            }
        };
        if m.nlink() == 1 {
            loop {
                let target = self.p(&format!("{}.{code}", Tai64n::now().to_hex()));
                match std::fs::hard_link(&p, &target) {
                    Ok(()) => break,
                    Err(e) => {
                        warn(&format!(
                            "unable to link to {}, pausing: {}",
                            target.display(),
                            io_str(&e)
                        ));
                        std::thread::sleep(Duration::from_secs(5));
                    }
                }
            }
        }
        retry(
            || format!("remove {}", self.name(file)),
            || ignore_missing(std::fs::remove_file(&p)),
        );
        loop {
            let olds: Vec<std::ffi::OsString> = retry(
                || format!("read {}", self.path.display()),
                || {
                    use std::os::unix::ffi::OsStrExt;
                    Ok(std::fs::read_dir(&self.path)?
                        .flatten()
                        .map(|e| e.file_name())
                        .filter(|n| n.as_bytes().first() == Some(&b'@') && n.len() >= 25)
                        .collect())
                },
            );
            if olds.len() < self.num {
                break;
            }
            let first25 = |n: &std::ffi::OsString| {
                use std::os::unix::ffi::OsStrExt;
                n.as_bytes()[..25].to_vec()
            };
            if let Some(oldest) = olds.iter().min_by_key(|n| first25(n)) {
                let p = self.path.join(oldest);
                retry(
                    || format!("remove {}", p.display()),
                    || ignore_missing(std::fs::remove_file(&p)),
                );
            }
        }
    }

    /// Rotate `current` (fsync, rename to `previous`, new `current`, process, finish).
    fn rotate(&mut self) {
        if let Some(f) = self.current.take() {
            retry(
                || format!("write {} to disk", self.name("current")),
                || f.sync_all(),
            );
        }
        let (cur, prev) = (self.p("current"), self.p("previous"));
        retry(
            || {
                format!(
                    "rename current to previous in directory {}",
                    self.path.display()
                )
            },
            || std::fs::rename(&cur, &prev),
        );
        let f = retry(
            || format!("create {}", self.name("current")),
            || open_append(&cur, 0o644),
        );
        retry(
            || format!("set mode of {}", self.name("current")),
            || f.set_permissions(std::fs::Permissions::from_mode(0o644)),
        );
        self.current = Some(f);
        self.bytes = 0;
        retry(
            || format!("set mode of {}", self.name("previous")),
            || std::fs::set_permissions(&prev, std::fs::Permissions::from_mode(0o744)),
        );
        match self.processor.clone() {
            None => self.finish("previous", 's'),
            Some(proc_) => {
                self.process(&proc_);
                self.finish("processed", 's');
            }
        }
    }

    /// Run the processor over `previous` until it succeeds.
    fn process(&self, processor: &str) {
        loop {
            match self.run_processor(processor) {
                Ok(st) if st.success() => break,
                Ok(st) => {
                    use std::os::unix::process::ExitStatusExt;
                    if let Some(sig) = st.signal() {
                        warn(&format!(
                            "processor crashed in {}, pausing: signal {sig}",
                            self.path.display()
                        ));
                    } else {
                        warn(&format!(
                            "processor failed in {}, pausing",
                            self.path.display()
                        ));
                    }
                }
                Err(e) => warn(&format!(
                    "unable to run processor in {}, pausing: {}",
                    self.path.display(),
                    io_str(&e)
                )),
            }
            std::thread::sleep(Duration::from_secs(5));
        }
        let processed = self.p("processed");
        retry(
            || format!("write {} to disk", self.name("processed")),
            || File::open(&processed)?.sync_all(),
        );
        retry(
            || format!("set mode of {}", self.name("processed")),
            || std::fs::set_permissions(&processed, std::fs::Permissions::from_mode(0o744)),
        );
        let newstate = self.p("newstate");
        retry(
            || format!("write {} to disk", self.name("newstate")),
            || File::open(&newstate)?.sync_all(),
        );
        let prev = self.p("previous");
        retry(
            || format!("remove {}", self.name("previous")),
            || ignore_missing(std::fs::remove_file(&prev)),
        );
        let state = self.p("state");
        retry(
            || {
                format!(
                    "rename newstate to state in directory {}",
                    self.path.display()
                )
            },
            || std::fs::rename(&newstate, &state),
        );
    }

    fn run_processor(&self, processor: &str) -> io::Result<std::process::ExitStatus> {
        let input = File::open(self.p("previous"))?;
        let output = open_trunc(&self.p("processed"))?;
        let state = match File::open(self.p("state")) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                open_trunc(&self.p("state")).and_then(|_| File::open(self.p("state")))?
            }
            Err(e) => return Err(e),
        };
        let newstate = open_trunc(&self.p("newstate"))?;
        let (sfd, nfd) = (state.as_raw_fd(), newstate.as_raw_fd());
        let mut cmd = std::process::Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(processor)
            .current_dir(&self.path)
            .stdin(input)
            .stdout(output);
        // SAFETY: dup2 and signal resets are async-signal-safe.
        unsafe {
            cmd.pre_exec(move || {
                qsys::reset_signals_for_exec();
                // move both out of the way first: either may already be 4 or 5
                let s = libc::fcntl(sfd, libc::F_DUPFD, 10);
                let n = libc::fcntl(nfd, libc::F_DUPFD, 10);
                if s < 0 || n < 0 || libc::dup2(s, 4) < 0 || libc::dup2(n, 5) < 0 {
                    return Err(io::Error::last_os_error());
                }
                libc::close(s);
                libc::close(n);
                Ok(())
            });
        }
        let st = cmd.status();
        drop(state);
        drop(newstate);
        st
    }

    /// One write to `current` (daemontools' `c_write`): rotate first when full, write
    /// at most what fits, and near the limit only up to the last newline; rotate once
    /// the file has reached SIZE-2000 bytes at a line end. Returns the bytes written.
    fn c_write(&mut self, data: &[u8]) -> usize {
        if self.bytes >= self.size {
            self.rotate();
        }
        let mut len = data.len().min((self.size - self.bytes) as usize);
        if self.bytes + len as u64 >= self.size.saturating_sub(2000)
            && let Some(p) = data[..len].iter().rposition(|&c| c == b'\n')
        {
            len = p + 1;
        }
        let w = loop {
            let cur = self.p("current");
            let name = self.name("current");
            let f = self.current.get_or_insert_with(|| {
                retry(|| format!("create {name}"), || open_append(&cur, 0o644))
            });
            match f.write(&data[..len]) {
                Ok(n) if n > 0 => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => {
                    let e = r
                        .err()
                        .unwrap_or_else(|| io::Error::from_raw_os_error(libc::ENOSPC));
                    warn(&format!(
                        "unable to write to {}, pausing: {}",
                        self.name("current"),
                        io_str(&e)
                    ));
                    std::thread::sleep(Duration::from_secs(5));
                }
            }
        };
        self.bytes += w as u64;
        if self.bytes >= self.size.saturating_sub(2000) && data[w - 1] == b'\n' {
            self.rotate();
        }
        w
    }

    fn allwrite(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let w = self.c_write(data);
            data = &data[w..];
        }
    }

    /// Write out the 512-byte buffer.
    fn flush(&mut self) {
        let b = std::mem::take(&mut self.buf);
        self.allwrite(&b);
        self.buf = b;
        self.buf.clear();
    }

    /// `buffer_put`: what does not fit goes out after a flush, in writes of up to
    /// 8192 bytes, until the rest fits the buffer (this fixes where files are cut,
    /// so sizes match daemontools').
    fn bput(&mut self, mut data: &[u8]) {
        if data.len() > BUFSIZE - self.buf.len() {
            self.flush();
            while data.len() > BUFSIZE {
                let n = data.len().min(OUTSIZE);
                self.allwrite(&data[..n]);
                data = &data[n..];
            }
        }
        self.buf.extend_from_slice(data);
    }

    /// `buffer_PUTC` for each byte: fill the buffer, flush when full.
    fn bputc(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            if self.buf.len() == BUFSIZE {
                self.flush();
            }
            let k = (BUFSIZE - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..k]);
            data = &data[k..];
        }
    }

    /// Clean shutdown: flush, fsync, mark `current` complete with the owner-x bit.
    fn close(&mut self) {
        self.flush();
        if let Some(f) = self.current.take() {
            retry(
                || format!("write {} to disk", self.name("current")),
                || f.sync_all(),
            );
            retry(
                || format!("set mode of {}", self.name("current")),
                || f.set_permissions(std::fs::Permissions::from_mode(0o744)),
            );
        }
    }
}

/// The parsed script with its open directories and files.
pub struct Multilog {
    stamp: bool,
    actions: Vec<Action>,
    dirs: Vec<LogDir>,
    files: Vec<(String, File)>,
    // state of the line being read
    in_line: bool,
    decided: bool,
    head: Vec<u8>,
    selected: Vec<bool>,
}

impl Multilog {
    /// Parse the script and open everything (exits 111 on start-up errors).
    pub fn new(args: &[String]) -> Multilog {
        let mut size: u64 = 99999;
        let mut num: usize = 10;
        let mut processor: Option<String> = None;
        let mut m = Multilog {
            stamp: args.first().map(|a| a == "t").unwrap_or(false),
            actions: Vec::new(),
            dirs: Vec::new(),
            files: Vec::new(),
            in_line: false,
            decided: false,
            head: Vec::new(),
            selected: Vec::new(),
        };
        for a in args {
            let b = a.as_bytes();
            match b.first() {
                Some(b's') => {
                    size = scan_ulong(&b[1..]).clamp(4096, 16_777_215);
                }
                Some(b'n') => num = (scan_ulong(&b[1..]) as usize).max(2),
                Some(b'!') => processor = Some(a[1..].to_string()),
                Some(b'+') => m.actions.push(Action::Plus(b[1..].to_vec())),
                Some(b'-') => m.actions.push(Action::Minus(b[1..].to_vec())),
                Some(b'e') => m.actions.push(Action::Stderr),
                Some(b'=') => {
                    let f = match OpenOptions::new()
                        .write(true)
                        .create(true)
                        .mode(0o600)
                        .custom_flags(libc::O_NONBLOCK)
                        .open(&a[1..])
                    {
                        Ok(f) => f,
                        Err(e) => fatal(format!("unable to create {}: {}", &a[1..], io_str(&e))),
                    };
                    m.files.push((a[1..].to_string(), f));
                    m.actions.push(Action::File(m.files.len() - 1));
                }
                Some(b'.') | Some(b'/') => {
                    m.dirs
                        .push(LogDir::open(Path::new(a), size, num, processor.clone()));
                    m.actions.push(Action::Dir(m.dirs.len() - 1));
                }
                _ => {}
            }
        }
        m.selected = vec![false; m.dirs.len()];
        m
    }

    /// Decide the fate of the line whose head (first 1000 bytes) is complete.
    fn decide(&mut self) {
        let line: &[u8] = match self.head.last() {
            Some(b'\n') => &self.head[..self.head.len() - 1],
            _ => &self.head,
        };
        let mut sel = true;
        for a in &self.actions {
            match a {
                Action::Plus(p) => {
                    if !sel && pattern::matches(p, line) {
                        sel = true;
                    }
                }
                Action::Minus(p) => {
                    if sel && pattern::matches(p, line) {
                        sel = false;
                    }
                }
                Action::Stderr => {
                    if sel {
                        let mut out = line[..line.len().min(200)].to_vec();
                        if line.len() > 200 {
                            out.extend_from_slice(b"...");
                        }
                        out.push(b'\n');
                        let _ = io::stderr().write_all(&out);
                    }
                }
                Action::File(i) => {
                    if sel {
                        let mut out = line.to_vec();
                        out.resize(LINE_MAX + 1, b'\n');
                        let (name, f) = &mut self.files[*i];
                        retry(
                            || format!("write to {name}"),
                            || {
                                use std::io::{Seek, SeekFrom};
                                f.seek(SeekFrom::Start(0))?;
                                f.write_all(&out)
                            },
                        );
                    }
                }
                Action::Dir(i) => self.selected[*i] = sel,
            }
        }
        self.decided = true;
        let head = std::mem::take(&mut self.head);
        let (body, nl) = match head.split_last() {
            Some((b'\n', body)) => (body, true),
            _ => (&head[..], false),
        };
        for (d, sel) in self.dirs.iter_mut().zip(&self.selected) {
            if *sel {
                d.bput(body);
                if nl {
                    d.bputc(b"\n");
                }
            }
        }
        self.head = head;
        self.head.clear();
    }

    /// The rest of a line longer than 1000 bytes, byte by byte like the original.
    fn put_rest(&mut self, data: &[u8]) {
        for (d, sel) in self.dirs.iter_mut().zip(&self.selected) {
            if *sel {
                d.bputc(data);
            }
        }
    }

    /// Feed input bytes.
    pub fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            if !self.in_line {
                self.in_line = true;
                self.decided = false;
                self.head.clear();
                if self.stamp {
                    self.head
                        .extend_from_slice(Tai64n::now().to_hex().as_bytes());
                    self.head.push(b' ');
                }
            }
            let nl = data.iter().position(|&c| c == b'\n');
            if self.decided {
                let n = nl.map(|p| p + 1).unwrap_or(data.len());
                self.put_rest(&data[..n]);
                if nl.is_some() {
                    self.in_line = false;
                }
                data = &data[n..];
                continue;
            }
            let room = LINE_MAX.saturating_sub(self.head.len());
            let n = match nl {
                Some(p) if p < room => p + 1,
                _ => data.len().min(room),
            };
            self.head.extend_from_slice(&data[..n]);
            data = &data[n..];
            let ended = self.head.last() == Some(&b'\n');
            if ended || self.head.len() >= LINE_MAX {
                self.decide();
                if ended {
                    self.in_line = false;
                }
            }
        }
    }

    /// True while a line is partly read.
    pub fn mid_line(&self) -> bool {
        self.in_line
    }

    /// Write out buffered data.
    pub fn flush(&mut self) {
        for d in &mut self.dirs {
            d.flush();
        }
    }

    /// ALRM: rotate every directory whose `current` is not empty.
    pub fn rotate_all(&mut self) {
        for d in &mut self.dirs {
            d.flush();
            if d.bytes > 0 {
                d.rotate();
            }
        }
    }

    /// End: terminate a partial line, flush, mark `current` complete.
    pub fn finish(&mut self) {
        if self.in_line {
            self.feed(b"\n");
        }
        for d in &mut self.dirs {
            d.close();
        }
    }
}

/// Run multilog with `args` on stdin until end of input or TERM.
pub fn run(args: &[String]) {
    // SAFETY: umask has no memory effects.
    unsafe {
        libc::umask(0o022);
    }
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGTERM);
    mask.add(Signal::SIGALRM);
    if mask.thread_block().is_err() {
        fatal("unable to block signals".into());
    }
    let sigfd = match SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC) {
        Ok(f) => f,
        Err(e) => fatal(format!(
            "unable to create signalfd: {}",
            qsys::errstr::nix(e)
        )),
    };
    let mut m = Multilog::new(args);
    let stdin = io::stdin();
    let mut input = stdin.lock();
    let mut buf = vec![0u8; INSIZE];
    let mut term = false;
    loop {
        if term {
            if !m.mid_line() {
                break;
            }
            // finish the current line one byte at a time, leaving the rest unread
            let mut one = [0u8; 1];
            match input.read(&mut one) {
                Ok(0) => break,
                Ok(_) => m.feed(&one),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
            continue;
        }
        let readable = {
            use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
            let fd0 = io::stdin();
            let mut fds = [
                PollFd::new(fd0.as_fd(), PollFlags::POLLIN),
                PollFd::new(sigfd.as_fd(), PollFlags::POLLIN),
            ];
            let _ = poll(&mut fds, PollTimeout::NONE);
            fds[0].revents().is_some_and(|r| !r.is_empty())
        };
        while let Ok(Some(si)) = sigfd.read_signal() {
            match si.ssi_signo as i32 {
                libc::SIGTERM => term = true,
                libc::SIGALRM => m.rotate_all(),
                _ => {}
            }
        }
        if term || !readable {
            continue;
        }
        match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                m.feed(&buf[..n]);
                m.flush();
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                warn(&format!("unable to read standard input: {}", io_str(&e)));
                std::thread::sleep(Duration::from_secs(5));
            }
        }
    }
    m.finish();
}

#[cfg(test)]
mod tests {
    use super::scan_ulong;

    #[test]
    fn sizes_parse_like_scan_ulong() {
        assert_eq!(scan_ulong(b"100000x"), 100000);
        assert_eq!(scan_ulong(b"k"), 0);
        assert_eq!(scan_ulong(b"99999999999999999999999"), u64::MAX);
    }
}
