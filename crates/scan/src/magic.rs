//! Type by content (wave2.md 1.5): what a decoded attachment or archive member really is,
//! whatever its name says.
//!
//! Executables are recognised by structure, not by two bytes: a PE file is `MZ` whose
//! `e_lfanew` (u32 LE at 0x3C) points at `PE\0\0`; an MSI/MSP/MST is an OLE compound file
//! whose root storage has the Windows Installer CLSID (a Word .doc is OLE too and is not
//! an executable); ELF, CAB and LNK by their magic. Archives we open ourselves are zip,
//! gzip and tar (the `infer` crate's matchers); other archive formats are left to clamd.

/// What a byte string is, as far as the policy cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Runnable code; the name says which (`pe`, `elf`, `msi`, `cab`, `lnk`).
    Executable(&'static str),
    Zip,
    Gzip,
    Tar,
    /// Anything else (including archive formats we do not open).
    Other,
}

/// Classify `data` by its content.
pub fn kind(data: &[u8]) -> Kind {
    if is_pe(data) {
        Kind::Executable("pe")
    } else if data.starts_with(b"\x7fELF") {
        Kind::Executable("elf")
    } else if is_msi(data) {
        Kind::Executable("msi")
    } else if data.starts_with(b"MSCF\0\0\0\0") {
        Kind::Executable("cab")
    } else if data.starts_with(&[0x4C, 0, 0, 0, 0x01, 0x14, 0x02, 0x00]) {
        Kind::Executable("lnk")
    } else if infer::archive::is_zip(data) {
        Kind::Zip
    } else if infer::archive::is_gz(data) {
        Kind::Gzip
    } else if infer::archive::is_tar(data) {
        Kind::Tar
    } else {
        Kind::Other
    }
}

/// A zip end-of-central-directory record that ends exactly at the end of `data` (its
/// comment length says so): a zip, whatever precedes it.
pub fn has_zip_directory(data: &[u8]) -> bool {
    const EOCD: usize = 22;
    let window = data.len().saturating_sub(EOCD + usize::from(u16::MAX));
    (window..data.len().saturating_sub(EOCD - 1))
        .rev()
        .any(|at| {
            data.get(at..at + 4) == Some(b"PK\x05\x06")
                && u16_le(data, at + 20).is_some_and(|c| at + EOCD + usize::from(c) == data.len())
        })
}

fn u32_le(data: &[u8], at: usize) -> Option<u32> {
    let b = data.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

fn u16_le(data: &[u8], at: usize) -> Option<u16> {
    let b = data.get(at..at.checked_add(2)?)?;
    Some(u16::from_le_bytes([b[0], b[1]]))
}

/// `MZ`, then `PE\0\0` at the offset stored at 0x3C.
pub fn is_pe(data: &[u8]) -> bool {
    if !data.starts_with(b"MZ") {
        return false;
    }
    let Some(at) = u32_le(data, 0x3C).and_then(|o| usize::try_from(o).ok()) else {
        return false;
    };
    at.checked_add(4)
        .and_then(|end| data.get(at..end))
        .is_some_and(|sig| sig == b"PE\0\0")
}

const OLE_MAGIC: [u8; 8] = [0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1];

/// Windows Installer CLSIDs {000C10xx-0000-0000-C000-000000000046} in their on-disk
/// (little-endian) form: 84 = package (.msi), 86 = patch (.msp), 82 = transform (.mst).
fn is_installer_clsid(c: &[u8]) -> bool {
    c.len() == 16
        && matches!(c[0], 0x82 | 0x84 | 0x86)
        && c[1..] == [0x10, 0x0C, 0, 0, 0, 0, 0, 0xC0, 0, 0, 0, 0, 0, 0, 0x46]
}

/// An OLE compound file whose root directory entry carries an installer CLSID.
pub fn is_msi(data: &[u8]) -> bool {
    if !data.starts_with(&OLE_MAGIC) {
        return false;
    }
    let Some(shift) = u16_le(data, 0x1E) else {
        return false;
    };
    if !(7..=16).contains(&shift) {
        return false;
    }
    let sector = 1usize << shift;
    let Some(first_dir) = u32_le(data, 0x30).and_then(|s| usize::try_from(s).ok()) else {
        return false;
    };
    // Sector n starts at (n + 1) * sector size; the root entry is the first directory
    // entry, its CLSID at offset 0x50 of the 128-byte entry.
    let clsid_at = first_dir
        .checked_add(1)
        .and_then(|n| n.checked_mul(sector))
        .and_then(|o| o.checked_add(0x50));
    clsid_at
        .and_then(|at| data.get(at..at.checked_add(16)?))
        .is_some_and(is_installer_clsid)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A minimal PE image: DOS header with e_lfanew = 0x80, then the PE signature.
    pub fn tiny_pe() -> Vec<u8> {
        let mut v = vec![0u8; 0x100];
        v[0] = b'M';
        v[1] = b'Z';
        v[0x3C] = 0x80;
        v[0x80..0x84].copy_from_slice(b"PE\0\0");
        v
    }

    /// A minimal OLE file whose root entry has the given CLSID first byte.
    pub fn tiny_ole(clsid0: u8) -> Vec<u8> {
        let mut v = vec![0u8; 512 * 3];
        v[..8].copy_from_slice(&OLE_MAGIC);
        v[0x1E] = 9; // 512-byte sectors
        v[0x30] = 0; // directory in sector 0 (file offset 512)
        let at = 512 + 0x50;
        v[at] = clsid0;
        v[at + 1..at + 16]
            .copy_from_slice(&[0x10, 0x0C, 0, 0, 0, 0, 0, 0xC0, 0, 0, 0, 0, 0, 0, 0x46]);
        v
    }

    #[test]
    fn pe_needs_the_pe_signature_not_just_mz() {
        assert_eq!(kind(&tiny_pe()), Kind::Executable("pe"));
        assert_eq!(kind(b"MZ is how this text starts"), Kind::Other);
        let mut bad = tiny_pe();
        bad[0x3C] = 0xFF;
        bad[0x3D] = 0xFF;
        bad[0x3E] = 0xFF;
        bad[0x3F] = 0xFF; // e_lfanew far past the end: no panic, not a PE
        assert_eq!(kind(&bad), Kind::Other);
        assert_eq!(kind(b"MZ"), Kind::Other);
    }

    #[test]
    fn other_executables_and_archives() {
        assert_eq!(
            kind(b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0"),
            Kind::Executable("elf")
        );
        assert_eq!(kind(&tiny_ole(0x84)), Kind::Executable("msi"));
        assert_eq!(
            kind(&tiny_ole(0x00)),
            Kind::Other,
            "an OLE .doc is not an installer"
        );
        assert_eq!(kind(b"MSCF\0\0\0\0rest"), Kind::Executable("cab"));
        assert_eq!(
            kind(&[0x4C, 0, 0, 0, 0x01, 0x14, 0x02, 0, 0, 0]),
            Kind::Executable("lnk")
        );
        assert_eq!(kind(b"PK\x03\x04rest"), Kind::Zip);
        assert_eq!(kind(&[0x1F, 0x8B, 8, 0]), Kind::Gzip);
        assert_eq!(kind(b"%PDF-1.4"), Kind::Other);
        assert_eq!(kind(b""), Kind::Other);
        assert!(!has_zip_directory(b""));
        assert!(!has_zip_directory(b"PK\x05\x06"));
        let mut eocd = b"prefix PK\x05\x06".to_vec();
        eocd.extend_from_slice(&[0; 16]);
        eocd.extend_from_slice(&[2, 0]);
        eocd.extend_from_slice(b"hi");
        assert!(has_zip_directory(&eocd));
        eocd.push(b'!');
        assert!(
            !has_zip_directory(&eocd),
            "comment length no longer matches"
        );
    }

    #[test]
    fn hostile_ole_headers_do_not_panic() {
        let mut v = tiny_ole(0x84);
        v[0x30..0x34].copy_from_slice(&[0xFF; 4]);
        assert_eq!(kind(&v), Kind::Other);
        v[0x1E] = 60;
        assert_eq!(kind(&v), Kind::Other);
        assert_eq!(kind(&OLE_MAGIC), Kind::Other);
    }
}
