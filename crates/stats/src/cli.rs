//! qmail-stats' command line, its default log directories, and writing the HTML page.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// The services whose logs are read when no LOGDIR is named: qmail-send and the SMTP
/// services (the content filters log through the SMTP services' logs).
pub const SERVICES: [&str; 4] = [
    "qmail-send",
    "qmail-smtpd",
    "qmail-submission",
    "qmail-smtps",
];

/// Top lists are this long unless `--top` says otherwise.
pub const DEFAULT_TOP: usize = 10;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
    /// The page goes to this file (`-`: standard output).
    Html(PathBuf),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    pub since: Option<String>,
    pub format: Format,
    pub top: usize,
    pub dirs: Vec<PathBuf>,
}

/// `[--since TIME] [--top N] [--json | --html FILE] [LOGDIR ...]`; the error is the
/// usage complaint.
pub fn parse_args(args: &[String]) -> Result<Args, String> {
    let mut a = Args {
        since: None,
        format: Format::Text,
        top: DEFAULT_TOP,
        dirs: Vec::new(),
    };
    let mut it = args.iter();
    let mut options = true;
    while let Some(arg) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match arg.as_str() {
            "--" if options => options = false,
            "--since" if options => a.since = Some(value("--since")?),
            "--top" if options => {
                let v = value("--top")?;
                a.top = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=1000).contains(n))
                    .ok_or_else(|| format!("--top takes 1 to 1000, not {v}"))?;
            }
            "--json" if options => {
                if a.format != Format::Text {
                    return Err("--json and --html exclude each other".into());
                }
                a.format = Format::Json;
            }
            "--html" if options => {
                if a.format != Format::Text {
                    return Err("--json and --html exclude each other".into());
                }
                a.format = Format::Html(PathBuf::from(value("--html")?));
            }
            o if options && o.starts_with('-') => return Err(format!("unknown option {o}")),
            dir => a.dirs.push(PathBuf::from(dir)),
        }
    }
    Ok(a)
}

/// `HOME/supervise/SERVICE/log/main` of each of [`SERVICES`] that exists.
pub fn default_dirs(home: &Path) -> Vec<PathBuf> {
    SERVICES
        .iter()
        .map(|s| home.join("supervise").join(s).join("log/main"))
        .filter(|d| d.is_dir())
        .collect()
}

/// Write `page` to `path` whole or not at all: into a new file beside it (created
/// exclusively, so a planted link is not followed), then renamed over it. Readable by
/// all (0644): the page is meant for publishing.
pub fn write_page(path: &Path, page: &str) -> io::Result<()> {
    if path == Path::new("-") {
        let mut out = io::stdout().lock();
        out.write_all(page.as_bytes())?;
        return out.flush();
    }
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::other("not a file name"))?;
    let mut tmp_name = name.to_os_string();
    tmp_name.push(format!(".tmp{}", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    let written = (|| {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&tmp)?;
        f.write_all(page.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Result<Args, String> {
        parse_args(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn options() {
        let a = args(&["--since", "1d", "--html", "/tmp/x.html", "a", "b"]).unwrap();
        assert_eq!(a.since.as_deref(), Some("1d"));
        assert_eq!(a.format, Format::Html("/tmp/x.html".into()));
        assert_eq!(a.dirs, vec![PathBuf::from("a"), PathBuf::from("b")]);
        assert_eq!(args(&["--json"]).unwrap().format, Format::Json);
        assert_eq!(args(&["--top", "3"]).unwrap().top, 3);
        assert_eq!(
            args(&["--", "--json"]).unwrap().dirs,
            vec![PathBuf::from("--json")]
        );
        for bad in [
            &["--json", "--html", "x"][..],
            &["--since"],
            &["--top", "0"],
            &["--top", "x"],
            &["-x"],
        ] {
            assert!(args(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn page_replaces_the_file_not_a_link() {
        let d = tempfile::tempdir().unwrap();
        let target = d.path().join("victim");
        std::fs::write(&target, "keep").unwrap();
        let page = d.path().join("stats.html");
        std::os::unix::fs::symlink(&target, &page).unwrap();
        write_page(&page, "<p>x</p>").unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
        assert_eq!(std::fs::read_to_string(&page).unwrap(), "<p>x</p>");
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 2);
    }
}
