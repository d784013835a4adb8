//! DJB cdb files through the `cdb` crate, with its two traps handled (see
//! `reference/crates.md` 1a): a valid empty cdb (exactly 2048 bytes, what `cdbmake`
//! writes for no records) is accepted as "no records", and writing goes through a
//! temporary file that is fsynced before it is renamed into place (as `tcprules` and
//! `qmail-newu` do), so readers never see a partial file.

use std::fs::File;
use std::io;
use std::path::Path;

/// An open cdb, or an empty one.
pub struct Cdb {
    inner: Option<cdb::CDB>,
}

const EMPTY_CDB_LEN: u64 = 2048;

impl Cdb {
    /// Open `path`; `Ok(None)` if it does not exist.
    pub fn open(path: &Path) -> io::Result<Option<Cdb>> {
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        if meta.len() == EMPTY_CDB_LEN {
            return Ok(Some(Cdb { inner: None }));
        }
        if meta.len() < EMPTY_CDB_LEN {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "truncated cdb"));
        }
        Ok(Some(Cdb {
            inner: Some(cdb::CDB::open(path)?),
        }))
    }

    /// The first record for `key`.
    pub fn get(&self, key: &[u8]) -> io::Result<Option<Vec<u8>>> {
        match &self.inner {
            None => Ok(None),
            Some(db) => db.get(key).transpose(),
        }
    }

    /// All records for `key`, in insertion order.
    pub fn get_all(&self, key: &[u8]) -> io::Result<Vec<Vec<u8>>> {
        match &self.inner {
            None => Ok(Vec::new()),
            Some(db) => db.find(key).collect(),
        }
    }
}

/// Write `records` to `path` as a cdb: `path.tmp`, fsync, rename, fsync of the directory.
pub fn write<'a, I>(path: &Path, records: I, mode: u32) -> io::Result<()>
where
    I: IntoIterator<Item = (&'a [u8], &'a [u8])>,
{
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    write_via(path, Path::new(&tmp), records, mode)
}

/// Write `records` to `tmp`, fsync it, and rename it over `path` (then fsync the
/// directory): `tcprules rules.cdb rules.tmp` names both files itself.
pub fn write_via<'a, I>(path: &Path, tmp: &Path, records: I, mode: u32) -> io::Result<()>
where
    I: IntoIterator<Item = (&'a [u8], &'a [u8])>,
{
    use std::os::unix::fs::PermissionsExt;
    let f = File::create(tmp)?;
    f.set_permissions(std::fs::Permissions::from_mode(mode))?;
    let keep = f.try_clone()?;
    let mut make = cdb::CDBMake::new(f)?;
    for (k, v) in records {
        make.add(k, v)?;
    }
    make.finish()?;
    keep.sync_all()?;
    drop(keep);
    std::fs::rename(tmp, path)?;
    qsys::fsync::sync_parent(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_duplicates_and_empty_key() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("t.cdb");
        let recs: Vec<(&[u8], &[u8])> = vec![(b"a", b"1"), (b"a", b"2"), (b"", b"wild")];
        write(&p, recs, 0o644).unwrap();
        let db = Cdb::open(&p).unwrap().unwrap();
        assert_eq!(db.get(b"a").unwrap().unwrap(), b"1");
        assert_eq!(
            db.get_all(b"a").unwrap(),
            vec![b"1".to_vec(), b"2".to_vec()]
        );
        assert_eq!(db.get(b"").unwrap().unwrap(), b"wild");
        assert_eq!(db.get(b"b").unwrap(), None);
    }

    #[test]
    fn empty_cdb_is_accepted() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("e.cdb");
        write(&p, Vec::<(&[u8], &[u8])>::new(), 0o644).unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().len(), 2048);
        let db = Cdb::open(&p).unwrap().unwrap();
        assert_eq!(db.get(b"x").unwrap(), None);
        assert!(Cdb::open(&d.path().join("none")).unwrap().is_none());
    }
}
