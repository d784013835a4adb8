//! Which of our administration tools a bare command name would not reach: Debian's
//! daemontools and ucspi-tcp install `svc`, `svstat`, `tcprules`, ... in /usr/bin, and a
//! bare `svc` then silently runs theirs (issue 12). The installer names them and says
//! how to put the installation's `bin/` first.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

/// The tools administrators type by their bare names that other packages also ship.
pub const SHARED_NAMES: &[&str] = &[
    "svc",
    "svstat",
    "svok",
    "svscan",
    "svscanboot",
    "supervise",
    "multilog",
    "tai64n",
    "tai64nlocal",
    "setuidgid",
    "envuidgid",
    "envdir",
    "softlimit",
    "tcpserver",
    "tcprules",
    "tcprulescheck",
    "tcpclient",
    "rblsmtpd",
];

/// For each name of [`SHARED_NAMES`], the program a search of `path` (a `$PATH` value)
/// finds first when that is not the one in `bin` (ours): what a bare name would run
/// instead of ours.
pub fn shadowing(bin: &Path, path: &OsStr) -> Vec<PathBuf> {
    SHARED_NAMES
        .iter()
        .filter_map(|name| {
            let found = std::env::split_paths(path)
                .filter(|d| d.is_absolute())
                .map(|d| d.join(name))
                .find(|p| is_executable(p))?;
            let ours = bin.join(name);
            let same = match (std::fs::canonicalize(&found), std::fs::canonicalize(&ours)) {
                (Ok(a), Ok(b)) => a == b,
                _ => false,
            };
            (!same).then_some(found)
        })
        .collect()
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn exe(p: &Path) {
        std::fs::write(p, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn a_foreign_tool_before_ours_is_named_and_ours_first_is_not() {
        let d = tempfile::tempdir().unwrap();
        let (ours, theirs) = (d.path().join("ours"), d.path().join("theirs"));
        std::fs::create_dir_all(&ours).unwrap();
        std::fs::create_dir_all(&theirs).unwrap();
        for n in ["svc", "tcprules", "multilog"] {
            exe(&ours.join(n));
        }
        exe(&theirs.join("svc"));
        exe(&theirs.join("tcprules"));
        let theirs_first = std::env::join_paths([&theirs, &ours]).unwrap();
        assert_eq!(
            shadowing(&ours, &theirs_first),
            vec![theirs.join("svc"), theirs.join("tcprules")]
        );
        let ours_first = std::env::join_paths([&ours, &theirs]).unwrap();
        assert!(shadowing(&ours, &ours_first).is_empty());
        // a relative PATH entry is never searched
        assert!(shadowing(&ours, OsStr::new("theirs")).is_empty());
    }
}
