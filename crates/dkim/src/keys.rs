//! The private keys: layout, names, loading and installing.
//!
//! Layout (under the installation's home):
//!
//! ```text
//! control/dkim/                    root 0755
//! control/dkim/DOMAIN/             root 0755, DOMAIN in lower case ASCII (IDN: A-labels)
//! control/dkim/DOMAIN/SELECTOR.rsa      qmailr 0400, PEM (PKCS#8, or PKCS#1 from opendkim)
//! control/dkim/DOMAIN/SELECTOR.ed25519  qmailr 0400, PEM (PKCS#8)
//! ```
//!
//! Every key file of the domain signs (two for RSA plus Ed25519, RFC 8463; two
//! selectors of one algorithm during a key rollover), at most [`MAX_KEYS`]. A message
//! whose From: domain has no directory is looked up under its parent domains
//! (`mail.example.com` uses `example.com`'s keys, which DMARC's relaxed alignment
//! accepts); the top-level label alone never is. Other file names (`*.old`, editor
//! backups) are ignored, so a key is retired by renaming it.
//!
//! The key is readable only by the user that signs: qmail-remote runs as qmailr.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use nix::unistd::{Gid, Uid};
use qsys::safefs::Dir;

/// The directory of the keys, relative to the home.
pub const DIR: &str = "control/dkim";
/// Keys used per message at most (more are reported and skipped).
pub const MAX_KEYS: usize = 4;
/// A key file larger than this is not a key (an RSA-4096 PEM is about 3.3 kB).
const MAX_KEY_BYTES: u64 = 16 * 1024;
/// RFC 8301 section 3.2: signers MUST use RSA keys of at least 1024 bits.
pub const MIN_RSA_BITS: usize = 1024;
/// Keys above this size make signing slow for no gain; keygen refuses them.
pub const MAX_RSA_BITS: usize = 4096;

/// A signing algorithm and the file name extension of its keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Algorithm {
    Rsa,
    Ed25519,
}

impl Algorithm {
    pub const ALL: [Algorithm; 2] = [Algorithm::Rsa, Algorithm::Ed25519];

    /// The file name extension (and the `k=` tag of the DNS record).
    pub fn ext(self) -> &'static str {
        match self {
            Algorithm::Rsa => "rsa",
            Algorithm::Ed25519 => "ed25519",
        }
    }

    pub fn other(self) -> Algorithm {
        match self {
            Algorithm::Rsa => Algorithm::Ed25519,
            Algorithm::Ed25519 => Algorithm::Rsa,
        }
    }
}

/// A domain name as the key directory names it: ASCII lower case (an internationalized
/// name in A-labels), no trailing dot, labels of letters, digits, `-` and `_`; `None`
/// for anything else (so a hostile From: domain can never name a path).
pub fn domain_name(s: &str) -> Option<String> {
    let s = s.trim().trim_end_matches('.');
    let ascii = if s.is_ascii() {
        s.to_ascii_lowercase()
    } else {
        idna::domain_to_ascii(s).ok()?
    };
    dns_name(&ascii).then_some(ascii)
}

/// A selector (RFC 6376 section 3.1: dot-separated labels), lower case.
pub fn selector_name(s: &str) -> Option<String> {
    let s = s.to_ascii_lowercase();
    dns_name(&s).then_some(s)
}

fn dns_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        })
}

/// One key file of a domain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyFile {
    /// The signing domain (`d=`).
    pub domain: String,
    /// The selector (`s=`).
    pub selector: String,
    pub algorithm: Algorithm,
    pub path: PathBuf,
}

/// The signing domain and its key files for `domain` (already a [`domain_name`]): the
/// domain's own directory, else its nearest parent's that has one. `Ok(None)` when none
/// has a directory (the domain does not sign); `Err` when a directory exists but cannot
/// be listed. An existing directory without keys gives an empty list.
pub fn key_files(home: &Path, domain: &str) -> Result<Option<(String, Vec<KeyFile>)>, String> {
    let base = home.join(DIR);
    let mut name = domain;
    loop {
        let dir = base.join(name);
        match std::fs::read_dir(&dir) {
            Ok(rd) => {
                let mut v: Vec<KeyFile> = rd
                    .flatten()
                    .filter_map(|e| key_file(name, &e.file_name().to_string_lossy(), &dir))
                    .collect();
                v.sort_by(|a, b| (a.algorithm, &a.selector).cmp(&(b.algorithm, &b.selector)));
                return Ok(Some((name.to_string(), v)));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) if e.raw_os_error() == Some(libc_enotdir()) => {}
            Err(e) => {
                return Err(format!(
                    "unable to read {DIR}/{name}: {}",
                    qsys::errstr::io(&e)
                ));
            }
        }
        match name.split_once('.') {
            Some((_, parent)) if parent.contains('.') => name = parent,
            _ => return Ok(None),
        }
    }
}

fn libc_enotdir() -> i32 {
    nix::errno::Errno::ENOTDIR as i32
}

/// The key file `file` in `dir` of `domain`, when its name is `SELECTOR.rsa` or
/// `SELECTOR.ed25519` with a valid selector.
fn key_file(domain: &str, file: &str, dir: &Path) -> Option<KeyFile> {
    let (selector, ext) = file.rsplit_once('.')?;
    let algorithm = Algorithm::ALL.into_iter().find(|a| a.ext() == ext)?;
    let selector = selector_name(selector).filter(|s| s == selector)?;
    Some(KeyFile {
        domain: domain.to_string(),
        selector,
        algorithm,
        path: dir.join(file),
    })
}

/// A private key, ready to sign.
pub enum PrivateKey {
    Rsa(Box<rsa::RsaPrivateKey>),
    Ed25519(Box<ed25519_dalek::SigningKey>),
}

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PrivateKey::Rsa(_) => "PrivateKey::Rsa(..)",
            PrivateKey::Ed25519(_) => "PrivateKey::Ed25519(..)",
        })
    }
}

impl PrivateKey {
    pub fn algorithm(&self) -> Algorithm {
        match self {
            PrivateKey::Rsa(_) => Algorithm::Rsa,
            PrivateKey::Ed25519(_) => Algorithm::Ed25519,
        }
    }

    /// The public key as the DNS record's `p=` carries it, before base64: the
    /// SubjectPublicKeyInfo DER for RSA (what opendkim publishes), the 32 raw bytes for
    /// Ed25519 (RFC 8463 section 4.2).
    pub fn public_key(&self) -> Result<Vec<u8>, String> {
        match self {
            PrivateKey::Rsa(k) => {
                use rsa::pkcs8::EncodePublicKey;
                k.to_public_key()
                    .to_public_key_der()
                    .map(|d| d.as_bytes().to_vec())
                    .map_err(|e| format!("unable to encode the public key: {e}"))
            }
            PrivateKey::Ed25519(k) => Ok(k.verifying_key().to_bytes().to_vec()),
        }
    }

    /// The key in PEM (PKCS#8), as [`parse_pem`] reads it.
    pub fn to_pem(&self) -> Result<String, String> {
        let pem = match self {
            PrivateKey::Rsa(k) => {
                use rsa::pkcs8::EncodePrivateKey;
                k.to_pkcs8_pem(rsa::pkcs8::LineEnding::LF)
                    .map(|z| z.to_string())
                    .map_err(|e| e.to_string())
            }
            PrivateKey::Ed25519(k) => {
                use ed25519_dalek::pkcs8::EncodePrivateKey;
                k.to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
                    .map(|z| z.to_string())
                    .map_err(|e| e.to_string())
            }
        };
        pem.map_err(|e| format!("unable to encode the key: {e}"))
    }
}

/// Parse a PEM key of `algorithm`: PKCS#8 (`BEGIN PRIVATE KEY`) for both, and PKCS#1
/// (`BEGIN RSA PRIVATE KEY`, what opendkim-genkey and older openssl write) for RSA.
/// RSA keys below [`MIN_RSA_BITS`] are refused.
pub fn parse_pem(text: &str, algorithm: Algorithm) -> Result<PrivateKey, String> {
    match algorithm {
        Algorithm::Rsa => {
            use rsa::pkcs1::DecodeRsaPrivateKey;
            use rsa::pkcs8::DecodePrivateKey;
            use rsa::traits::PublicKeyParts;
            let key = rsa::RsaPrivateKey::from_pkcs8_pem(text)
                .or_else(|_| rsa::RsaPrivateKey::from_pkcs1_pem(text))
                .map_err(|_| "not an RSA private key in PEM".to_string())?;
            let bits = key.size() * 8;
            if bits < MIN_RSA_BITS {
                return Err(format!(
                    "RSA key of {bits} bits is too short (RFC 8301: at least {MIN_RSA_BITS})"
                ));
            }
            Ok(PrivateKey::Rsa(Box::new(key)))
        }
        Algorithm::Ed25519 => {
            use ed25519_dalek::pkcs8::DecodePrivateKey;
            ed25519_dalek::SigningKey::from_pkcs8_pem(text)
                .map(|k| PrivateKey::Ed25519(Box::new(k)))
                .map_err(|_| "not an Ed25519 private key in PEM (PKCS#8)".to_string())
        }
    }
}

/// Read and parse the key file `k`. The error text names the file relative to the
/// home and says why, for the alert.
pub fn load(k: &KeyFile) -> Result<PrivateKey, String> {
    let name = format!("{DIR}/{}/{}.{}", k.domain, k.selector, k.algorithm.ext());
    let text = read_small(&k.path).map_err(|e| format!("unable to read {name}: {e}"))?;
    parse_pem(&text, k.algorithm).map_err(|e| format!("unusable key {name}: {e}"))
}

fn read_small(path: &Path) -> Result<String, String> {
    let f = File::open(path).map_err(|e| qsys::errstr::io(&e).to_string())?;
    let mut text = String::new();
    f.take(MAX_KEY_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| qsys::errstr::io(&e).to_string())?;
    if text.len() as u64 > MAX_KEY_BYTES {
        return Err("file too large for a key".to_string());
    }
    Ok(text)
}

/// Who owns a key file: the signing user (qmailr) when run as root, else the caller.
#[derive(Clone, Copy, Debug)]
pub struct Owner {
    pub uid: Option<Uid>,
    pub gid: Option<Gid>,
}

/// Why a key could not be installed.
#[derive(Debug)]
pub enum InstallError {
    /// The key (or the selector with the other algorithm) exists already.
    Exists(String),
    Io(io::Error),
}

impl std::fmt::Display for InstallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InstallError::Exists(s) => f.write_str(s),
            InstallError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl From<io::Error> for InstallError {
    fn from(e: io::Error) -> Self {
        InstallError::Io(e)
    }
}

/// Write `pem` as the key `SELECTOR.EXT` of `domain` (names already checked): created
/// mode 0400 under a temporary name, written, synced, given to `owner`, then renamed
/// into place, never through a symbolic link. Refuses to replace a key unless `force`,
/// and refuses a selector that the other algorithm uses (both would need one DNS name).
pub fn install(
    home: &Path,
    domain: &str,
    selector: &str,
    algorithm: Algorithm,
    pem: &str,
    owner: Owner,
    force: bool,
) -> Result<PathBuf, InstallError> {
    let control = Dir::open_trusted(&home.join("control"))?;
    let dkim = control.make_dir("dkim", 0o755)?;
    let dir = dkim.make_dir(domain, 0o755)?;
    let name = format!("{selector}.{}", algorithm.ext());
    let other = format!("{selector}.{}", algorithm.other().ext());
    if dir.open_entry(&other, qsys::safefs::Kind::File)?.is_some() {
        return Err(InstallError::Exists(format!(
            "selector {selector} of {domain} is used by {}; choose another selector",
            dir.join(&other).display()
        )));
    }
    if !force && dir.open_entry(&name, qsys::safefs::Kind::File)?.is_some() {
        return Err(InstallError::Exists(format!(
            "{} exists (mail already verifies against it); use another selector, or --force",
            dir.join(&name).display()
        )));
    }
    let tmp = format!(".{name}.new");
    dir.remove_file(&tmp)?;
    let mut f = dir
        .create_new(&tmp, 0o400)?
        .ok_or_else(|| io::Error::other(format!("{} exists", dir.join(&tmp).display())))?;
    let written = f
        .write_all(pem.as_bytes())
        .and_then(|()| f.sync_all())
        .and_then(|()| {
            qsys::safefs::set_owner_mode(&f, &dir.join(&tmp), owner.uid, owner.gid, 0o400)
        });
    if let Err(e) = written {
        let _ = dir.remove_file(&tmp);
        return Err(e.into());
    }
    dir.rename(&tmp, &name)?;
    dir.sync()?;
    Ok(dir.join(&name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn domain_names_never_name_a_path() {
        assert_eq!(domain_name("Example.COM.").as_deref(), Some("example.com"));
        assert_eq!(
            domain_name("bücher.example").as_deref(),
            Some("xn--bcher-kva.example")
        );
        for bad in [
            "",
            ".",
            "..",
            "../etc",
            "a/b",
            "a..b",
            ".a",
            "a b",
            "a\0b",
            "dkim/../x",
        ] {
            assert_eq!(domain_name(bad), None, "{bad:?}");
        }
        assert_eq!(domain_name(&"a.".repeat(200)), None);
        assert_eq!(selector_name("Sel-2026").as_deref(), Some("sel-2026"));
        assert_eq!(selector_name("s/x"), None);
        assert_eq!(selector_name(""), None);
    }

    #[test]
    fn key_files_walk_up_to_the_parent_and_ignore_other_names() {
        let home = tempfile::tempdir().unwrap();
        let d = home.path().join(DIR).join("example.test");
        std::fs::create_dir_all(&d).unwrap();
        for f in [
            "b.rsa",
            "a.ed25519",
            "old.rsa.old",
            "UPPER.rsa",
            ".x.rsa.new",
            "x",
        ] {
            std::fs::write(d.join(f), "k").unwrap();
        }
        let (domain, found) = key_files(home.path(), "mail.sub.example.test")
            .unwrap()
            .unwrap();
        assert_eq!(domain, "example.test");
        let names: Vec<(String, Algorithm)> = found
            .iter()
            .map(|k| (k.selector.clone(), k.algorithm))
            .collect();
        assert_eq!(
            names,
            [
                ("b".to_string(), Algorithm::Rsa),
                ("a".to_string(), Algorithm::Ed25519)
            ]
        );
        assert!(found.iter().all(|k| k.domain == "example.test"));
        // the top-level label alone is never used, and no directory means no signing
        std::fs::create_dir_all(home.path().join(DIR).join("test")).unwrap();
        assert_eq!(key_files(home.path(), "other.test").unwrap(), None);
        assert_eq!(
            key_files(home.path(), "test").unwrap(),
            Some(("test".to_string(), vec![]))
        );
    }

    #[test]
    fn unreadable_directory_is_an_error() {
        if nix::unistd::geteuid().is_root() {
            return; // root reads anything; the e2e test covers qmailr
        }
        let home = tempfile::tempdir().unwrap();
        let d = home.path().join(DIR).join("example.test");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o000)).unwrap();
        let e = key_files(home.path(), "example.test").unwrap_err();
        assert!(
            e.contains("unable to read control/dkim/example.test"),
            "{e}"
        );
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn pem_round_trip_and_refusals() {
        let k = crate::keygen::generate(Algorithm::Ed25519, 0).unwrap();
        let pem = k.to_pem().unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        let back = parse_pem(&pem, Algorithm::Ed25519).unwrap();
        assert_eq!(back.public_key().unwrap(), k.public_key().unwrap());
        assert!(parse_pem(&pem, Algorithm::Rsa).is_err());
        assert!(parse_pem("garbage", Algorithm::Ed25519).is_err());
        assert!(parse_pem("", Algorithm::Rsa).is_err());
    }

    #[test]
    fn install_writes_0400_and_refuses_to_replace() {
        let home = tempfile::tempdir().unwrap();
        std::fs::create_dir(home.path().join("control")).unwrap();
        let me = Owner {
            uid: None,
            gid: None,
        };
        let p = install(
            home.path(),
            "example.test",
            "s1",
            Algorithm::Rsa,
            "PEM1",
            me,
            false,
        )
        .unwrap();
        assert_eq!(p, home.path().join("control/dkim/example.test/s1.rsa"));
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o400);
        assert!(matches!(
            install(
                home.path(),
                "example.test",
                "s1",
                Algorithm::Rsa,
                "PEM2",
                me,
                false
            ),
            Err(InstallError::Exists(_))
        ));
        assert!(matches!(
            install(
                home.path(),
                "example.test",
                "s1",
                Algorithm::Ed25519,
                "PEM2",
                me,
                true
            ),
            Err(InstallError::Exists(_))
        ));
        install(
            home.path(),
            "example.test",
            "s1",
            Algorithm::Rsa,
            "PEM3",
            me,
            true,
        )
        .unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "PEM3");
        let left: Vec<_> = std::fs::read_dir(p.parent().unwrap())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(left.len(), 1, "{left:?}");
    }
}
