//! Names of queue files (qmail's `fmtqfn`): split directories hold `N % 23`.

use std::path::{Path, PathBuf};

/// qmail's conf-split.
pub const SPLIT: u64 = 23;

/// Directories that are split into `0..SPLIT` subdirectories.
pub const SPLIT_DIRS: [&str; 4] = ["mess", "info", "local", "remote"];
/// Directories that are not split.
pub const FLAT_DIRS: [&str; 5] = ["pid", "intd", "todo", "bounce", "lock"];

/// Oldest age of a stray pid/ or mess/ file before it is removed (qmail's OSSIFIED).
pub const OSSIFIED: u64 = 129_600;

/// The queue directory of one installation.
#[derive(Clone, Debug)]
pub struct Layout {
    pub dir: PathBuf,
}

/// The two delivery channels, in qmail's order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Channel {
    Local = 0,
    Remote = 1,
}

impl Channel {
    pub const ALL: [Channel; 2] = [Channel::Local, Channel::Remote];

    pub fn dir(self) -> &'static str {
        match self {
            Channel::Local => "local",
            Channel::Remote => "remote",
        }
    }

    pub fn name(self) -> &'static str {
        self.dir()
    }
}

impl Layout {
    /// The queue of the installation rooted at `home`.
    pub fn new(home: &Path) -> Layout {
        Layout {
            dir: home.join("queue"),
        }
    }

    pub fn split(id: u64) -> u64 {
        id % SPLIT
    }

    fn split_path(&self, base: &str, id: u64) -> PathBuf {
        self.dir.join(format!("{base}/{}/{id}", id % SPLIT))
    }

    pub fn mess(&self, id: u64) -> PathBuf {
        self.split_path("mess", id)
    }
    pub fn info(&self, id: u64) -> PathBuf {
        self.split_path("info", id)
    }
    pub fn chan(&self, c: Channel, id: u64) -> PathBuf {
        self.split_path(c.dir(), id)
    }
    pub fn todo(&self, id: u64) -> PathBuf {
        self.dir.join(format!("todo/{id}"))
    }
    pub fn intd(&self, id: u64) -> PathBuf {
        self.dir.join(format!("intd/{id}"))
    }
    pub fn bounce(&self, id: u64) -> PathBuf {
        self.dir.join(format!("bounce/{id}"))
    }
    pub fn lock(&self, name: &str) -> PathBuf {
        self.dir.join("lock").join(name)
    }
    /// The message id as the spawn protocol names it: `S/N`, relative to `mess/`.
    pub fn messid(id: u64) -> String {
        format!("{}/{id}", id % SPLIT)
    }
}

/// Parse a decimal queue id from a directory entry name.
pub fn parse_id(name: &std::ffi::OsStr) -> Option<u64> {
    let s = name.to_str()?;
    if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}
