//! The two files qmail-guard changes: `control/badmailfrom` (blocked senders) and the
//! SMTP tcprules text `control/tcp.smtp` with its cdb `control/tcp.smtp.cdb` (blocked
//! clients).
//!
//! Every line qmail-guard adds is preceded by a comment line of its own,
//! `# qmail-guard: DATE: WHY`, and only such pairs are ever removed: a line an
//! administrator wrote (the same address included) is kept as it is, in its place.
//! Senders are appended to badmailfrom; client rules `IP:deny` go to the top of the
//! rules text, so they win over an administrator's broader rule for the same key (the
//! first record of a key wins at lookup).
//!
//! Each file is replaced whole: written beside the file it names (following a link from
//! `control/` into qmail-guard's own directory, which is how the unprivileged qmailg may
//! replace them: see INSTALL.md), fsynced and renamed over it, so qmail-smtpd and
//! tcpserver read either the old or the new file. The cdb is compiled from the new text
//! first (`ucspi::rules`, as tcprules does); a text that does not compile is left
//! alone, and so is its cdb.

use std::io;
use std::path::{Path, PathBuf};

/// The comment that marks the line after it as qmail-guard's.
pub const MARK: &str = "# qmail-guard: ";

/// One addition: the line and the comment's text after [`MARK`].
#[derive(Clone, Debug)]
pub struct Added {
    pub line: String,
    pub why: String,
}

/// Split into lines (without their newlines); a final newline gives no empty last line.
fn lines(text: &str) -> Vec<&str> {
    let mut v: Vec<&str> = text.split('\n').collect();
    if v.last() == Some(&"") {
        v.pop();
    }
    v
}

/// qmail-guard's own lines (those right after a [`MARK`] comment), lower case.
pub fn ours(text: &str) -> Vec<String> {
    let l = lines(text);
    l.windows(2)
        .filter(|w| w[0].starts_with(MARK))
        .map(|w| w[1].trim().to_ascii_lowercase())
        .collect()
}

/// `text` without qmail-guard's pairs whose line (case-insensitively) is in `remove`.
pub fn without(text: &str, remove: &[String]) -> String {
    let l = lines(text);
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < l.len() {
        if l[i].starts_with(MARK)
            && let Some(next) = l.get(i + 1)
            && remove.contains(&next.trim().to_ascii_lowercase())
        {
            i += 2;
            continue;
        }
        out.push_str(l[i]);
        out.push('\n');
        i += 1;
    }
    out
}

fn pair(a: &Added) -> String {
    let why: String = a
        .why
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    format!("{MARK}{why}\n{}\n", a.line)
}

/// `text` with `add` appended (an addition already among qmail-guard's lines is not
/// repeated).
pub fn appended(text: &str, add: &[Added]) -> String {
    let have = ours(text);
    let mut out = text.to_string();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    for a in add {
        if !have.contains(&a.line.to_ascii_lowercase()) {
            out.push_str(&pair(a));
        }
    }
    out
}

/// `text` with `add` put first (see [`appended`]).
pub fn prepended(text: &str, add: &[Added]) -> String {
    let have = ours(text);
    let mut out = String::new();
    for a in add {
        if !have.contains(&a.line.to_ascii_lowercase()) {
            out.push_str(&pair(a));
        }
    }
    out.push_str(text);
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    out
}

/// Whether an administrator's line of badmailfrom already refuses `sender` (the whole
/// address or its `@domain`, case-insensitively, as qmail-smtpd matches).
pub fn admin_lists_sender(text: &str, sender: &str) -> bool {
    let mine = ours(text);
    let domain = sender.rsplit_once('@').map(|(_, d)| format!("@{d}"));
    control::parse_list(text).iter().any(|l| {
        let l = l.trim().to_ascii_lowercase();
        !mine.contains(&l) && (l == sender || Some(&l) == domain.as_ref())
    })
}

/// The file a control path names: the target of a link (so the new file is written
/// beside it), or the path itself.
pub fn target(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

/// The text of `path` (empty when missing).
pub fn read(path: &Path) -> io::Result<String> {
    match std::fs::read(path) {
        Ok(b) => Ok(String::from_utf8_lossy(&b).into_owned()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(e),
    }
}

/// Replace the file `path` names with `text`: a temporary file beside the target
/// (`.NAME.guard`), fsync, rename, fsync of the directory.
pub fn replace(path: &Path, text: &str) -> io::Result<()> {
    let t = target(path);
    let tmp = tmp_beside(&t, "guard");
    let r = write_then_rename(&tmp, &t, text.as_bytes());
    if r.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    r
}

fn tmp_beside(t: &Path, what: &str) -> PathBuf {
    let name = t
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    t.with_file_name(format!(".{name}.{what}"))
}

fn write_then_rename(tmp: &Path, t: &Path, data: &[u8]) -> io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW)
        .open(tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(tmp, t)?;
    qsys::fsync::sync_parent(t)
}

/// Compile `text` (tcprules' grammar) and replace the cdb `cdb` names with it, then the
/// text `rules` names. Nothing is changed when the text does not compile.
pub fn replace_rules(rules: &Path, cdb: &Path, text: &str) -> io::Result<()> {
    let records = ucspi::rules::compile(text.as_bytes()).map_err(|bad| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{} does not compile (line {}: {}): {}",
                rules.display(),
                bad.number,
                bad.reason,
                String::from_utf8_lossy(&bad.text)
            ),
        )
    })?;
    let t = target(cdb);
    let tmp = tmp_beside(&t, "tmp");
    let pairs = records.iter().map(|(k, v)| (&k[..], &v[..]));
    control::cdbfile::write_via(&t, &tmp, pairs, 0o644)?;
    replace(rules, text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add(line: &str) -> Added {
        Added {
            line: line.into(),
            why: "2026-12-06 08:00:00 UTC: 25 messages".into(),
        }
    }

    #[test]
    fn only_our_pairs_are_removed() {
        let admin = "# my list\nspam@x.test\n@bad.test\nnoreply";
        let t = appended(admin, &[add("flood@y.test"), add("spam@x.test")]);
        assert!(t.starts_with("# my list\nspam@x.test\n@bad.test\nnoreply\n# qmail-guard: "));
        assert_eq!(ours(&t), ["flood@y.test", "spam@x.test"]);
        // not repeated
        assert_eq!(appended(&t, &[add("FLOOD@y.test")]), t);
        // lifting removes our two pairs, and the administrator's own line stays
        let back = without(&t, &["flood@y.test".into(), "spam@x.test".into()]);
        assert_eq!(back, format!("{admin}\n"));
        // a marker the administrator edited away leaves the line alone
        let edited = t.replace("# qmail-guard: 2026", "# note 2026");
        assert!(without(&edited, &["flood@y.test".into()]).contains("flood@y.test"));
    }

    #[test]
    fn admin_lines_block_already() {
        let t = appended("@bad.test\nJoe@X.test\n", &[add("ann@y.test")]);
        assert!(admin_lists_sender(&t, "a@bad.test"));
        assert!(admin_lists_sender(&t, "joe@x.test"));
        assert!(!admin_lists_sender(&t, "ann@y.test"));
    }

    #[test]
    fn rules_go_first_and_compile() {
        let d = tempfile::tempdir().unwrap();
        let rules = d.path().join("tcp.smtp");
        let cdb = d.path().join("tcp.smtp.cdb");
        std::fs::write(&rules, "127.:allow,RELAYCLIENT=\"\"\n").unwrap();
        let text = prepended(&read(&rules).unwrap(), &[add("127.0.0.2:deny")]);
        assert!(text.ends_with("127.0.0.2:deny\n127.:allow,RELAYCLIENT=\"\"\n"));
        replace_rules(&rules, &cdb, &text).unwrap();
        assert_eq!(read(&rules).unwrap(), text);
        let db = control::cdbfile::Cdb::open(&cdb).unwrap().unwrap();
        assert_eq!(db.get(b"127.0.0.2").unwrap().unwrap(), b"D\0");
        // an IPv6 client's rule compiles to its own key
        let v6 = prepended(&text, &[add("2001:db8::7:deny")]);
        replace_rules(&rules, &cdb, &v6).unwrap();
        let db = control::cdbfile::Cdb::open(&cdb).unwrap().unwrap();
        assert_eq!(db.get(b"2001:db8::7").unwrap().unwrap(), b"D\0");
        // a broken administrator's text: nothing is changed
        std::fs::write(&rules, "192.0.2.1 deny\n").unwrap();
        let before = std::fs::read(&cdb).unwrap();
        let text = prepended("192.0.2.1 deny\n", &[add("127.0.0.3:deny")]);
        assert!(replace_rules(&rules, &cdb, &text).is_err());
        assert_eq!(std::fs::read(&cdb).unwrap(), before);
        assert_eq!(read(&rules).unwrap(), "192.0.2.1 deny\n");
    }

    #[test]
    fn a_link_is_followed_and_kept() {
        let d = tempfile::tempdir().unwrap();
        let own = d.path().join("guard");
        let ctl = d.path().join("control");
        std::fs::create_dir_all(&own).unwrap();
        std::fs::create_dir_all(&ctl).unwrap();
        std::fs::write(own.join("badmailfrom"), "x@y.test\n").unwrap();
        std::os::unix::fs::symlink("../guard/badmailfrom", ctl.join("badmailfrom")).unwrap();
        replace(&ctl.join("badmailfrom"), "a@b.test\n").unwrap();
        assert!(ctl.join("badmailfrom").is_symlink());
        assert_eq!(read(&own.join("badmailfrom")).unwrap(), "a@b.test\n");
    }
}
