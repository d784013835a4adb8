//! The compiled table: `newaliases FILE` writes `FILE.cdb` (through `FILE.tmp`, fsynced
//! and renamed, so deliveries never read half a table), one record per target under the
//! alias name. `:include:` lists are read here, at compile time.
//!
//! Who may name a program or a file: only the aliases file itself, and only when root
//! owns it and nobody else may write it or its directory's entry for it; an `:include:`
//! list may hold addresses and names only (its owner is often not root).

use crate::Target;
use crate::file::{self, ParseError};
use control::cdbfile::Cdb;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// An include list larger than this is refused (a list of addresses, not a mailbox).
pub const MAX_INCLUDE: u64 = 1024 * 1024;

/// Read and check the aliases file `path`, with its `:include:` lists read in.
pub fn compile(path: &Path) -> Result<Vec<(String, Vec<Target>)>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        format!(
            "unable to read {}: {}",
            path.display(),
            qsys::errstr::io(&e)
        )
    })?;
    let trusted = trusted(path);
    let aliases = file::parse(&text)
        .map_err(|ParseError { line, what }| format!("{} line {line}: {what}", path.display()))?;
    let mut out = Vec::with_capacity(aliases.len());
    for (name, targets) in aliases {
        let mut resolved = Vec::with_capacity(targets.len());
        for t in targets {
            match t {
                Target::Include(list) => resolved.extend(include(Path::new(&list), &name)?),
                Target::Program(_) | Target::File(_) if !trusted => {
                    return Err(format!(
                        "{name}: programs and files are allowed only when {} is root's and \
                         writable by root alone",
                        path.display()
                    ));
                }
                t => resolved.push(t),
            }
        }
        out.push((name, resolved));
    }
    Ok(out)
}

/// Root owns the file and only root may write it.
fn trusted(path: &Path) -> bool {
    std::fs::symlink_metadata(path)
        .is_ok_and(|m| m.is_file() && m.uid() == 0 && m.mode() & 0o022 == 0)
}

/// The addresses and names of an `:include:` list (no programs, files or nested lists).
fn include(list: &Path, alias: &str) -> Result<Vec<Target>, String> {
    let what = |m: String| format!("{alias}: :include:{}: {m}", list.display());
    let meta = std::fs::metadata(list).map_err(|e| what(qsys::errstr::io(&e).into()))?;
    if !meta.is_file() || meta.len() > MAX_INCLUDE {
        return Err(what(format!("not a file of at most {MAX_INCLUDE} bytes")));
    }
    let text = std::fs::read_to_string(list).map_err(|e| what(qsys::errstr::io(&e).into()))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        for t in file::targets(line).map_err(|m| what(format!("line {}: {m}", i + 1)))? {
            match t {
                Target::Address(_) | Target::Name(_) | Target::Literal(_) => out.push(t),
                _ => {
                    return Err(what(format!(
                        "line {}: only addresses and names may be listed here",
                        i + 1
                    )));
                }
            }
        }
    }
    Ok(out)
}

/// Write the compiled `aliases` to `cdb`.
pub fn write(cdb: &Path, aliases: &[(String, Vec<Target>)]) -> std::io::Result<()> {
    let records: Vec<(Vec<u8>, Vec<u8>)> = aliases
        .iter()
        .flat_map(|(name, ts)| {
            ts.iter()
                .map(move |t| (name.as_bytes().to_vec(), t.encode()))
        })
        .collect();
    control::cdbfile::write(
        cdb,
        records.iter().map(|(k, v)| (k.as_slice(), v.as_slice())),
        0o644,
    )
}

/// The compiled table, opened for lookups.
pub struct Table {
    cdb: Option<Cdb>,
}

impl Table {
    /// Open `cdb`; a missing file is an empty table.
    pub fn open(cdb: &Path) -> std::io::Result<Table> {
        Ok(Table {
            cdb: Cdb::open(cdb)?,
        })
    }

    /// The targets of alias `name` (lower case), empty when it is none.
    pub fn get(&self, name: &str) -> std::io::Result<Vec<Target>> {
        let Some(db) = &self.cdb else {
            return Ok(Vec::new());
        };
        Ok(db
            .get_all(name.as_bytes())?
            .iter()
            .filter_map(|r| Target::decode(r))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn includes_are_read_in_and_the_table_round_trips() {
        let d = tempfile::tempdir().unwrap();
        let list = d.path().join("team.list");
        std::fs::write(&list, "# the team\nann@example.org, bob\n\\carol\n").unwrap();
        let aliases = d.path().join("aliases");
        std::fs::write(
            &aliases,
            format!("team: :include:{}, boss@example.org\n", list.display()),
        )
        .unwrap();
        let compiled = compile(&aliases).unwrap();
        assert_eq!(
            compiled[0].1,
            vec![
                Target::Address("ann@example.org".into()),
                Target::Name("bob".into()),
                Target::Literal("carol".into()),
                Target::Address("boss@example.org".into()),
            ]
        );
        let cdb = d.path().join("aliases.cdb");
        write(&cdb, &compiled).unwrap();
        let t = Table::open(&cdb).unwrap();
        assert_eq!(t.get("team").unwrap(), compiled[0].1);
        assert!(t.get("nobody").unwrap().is_empty());
    }

    #[test]
    fn an_include_list_may_not_name_programs_or_files() {
        let d = tempfile::tempdir().unwrap();
        let list = d.path().join("l");
        std::fs::write(&list, "|/bin/sh -c evil\n").unwrap();
        let aliases = d.path().join("aliases");
        std::fs::write(&aliases, format!("x: :include:{}\n", list.display())).unwrap();
        let e = compile(&aliases).unwrap_err();
        assert!(e.contains("only addresses and names"), "{e}");
    }

    #[test]
    fn programs_need_a_file_only_root_can_write() {
        let d = tempfile::tempdir().unwrap();
        let aliases = d.path().join("aliases");
        std::fs::write(&aliases, "x: |/bin/true\n").unwrap();
        std::fs::set_permissions(&aliases, std::fs::Permissions::from_mode(0o666)).unwrap();
        let e = compile(&aliases).unwrap_err();
        assert!(e.contains("allowed only when"), "{e}");
        std::fs::set_permissions(&aliases, std::fs::Permissions::from_mode(0o644)).unwrap();
        let owned_by_root = std::fs::metadata(&aliases).unwrap().uid() == 0;
        assert_eq!(compile(&aliases).is_ok(), owned_by_root);
    }
}
