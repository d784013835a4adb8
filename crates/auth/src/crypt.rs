//! crypt(3) through the system's libxcrypt (`crypt_rn`, `crypt_gensalt_rn`): the code
//! PAM uses, so every hash `/etc/shadow` can hold verifies here (yescrypt `$y$`,
//! gost-yescrypt, sha512 `$6$`, sha256 `$5$`, md5 `$1$`, bcrypt, DES). This module is
//! the one place the project binds C for passwords (DESIGN section 7).

use std::ffi::{CStr, CString, c_char, c_int, c_ulong};

/// `struct crypt_data` is exactly 32768 bytes (`<crypt.h>`).
#[repr(C)]
struct CryptData {
    bytes: [u8; 32768],
}

const CRYPT_GENSALT_OUTPUT_SIZE: usize = 192;

#[link(name = "crypt")]
unsafe extern "C" {
    fn crypt_rn(
        phrase: *const c_char,
        setting: *const c_char,
        data: *mut CryptData,
        size: c_int,
    ) -> *mut c_char;
    fn crypt_gensalt_rn(
        prefix: *const c_char,
        count: c_ulong,
        rbytes: *const c_char,
        nrbytes: c_int,
        output: *mut c_char,
        output_size: c_int,
    ) -> *mut c_char;
}

/// A yescrypt hash of the phrase `dummy-password-for-timing`, at Debian's default cost: checked
/// against when the user is unknown or cannot log in, so that such answers take as long
/// as a real check.
pub const DUMMY_HASH: &str =
    "$y$j9T$k2E4meikqjpN8fZmKSHF4/$wgWA6KcEW7NPrSXg2uIcMVYI.j29FV/MwoW5oDLFE69";

/// Compare in time that depends only on the lengths.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut d = 0u8;
    for (x, y) in a.iter().zip(b) {
        d |= x ^ y;
    }
    // keep the optimiser from short-circuiting the loop
    std::hint::black_box(d) == 0
}

/// Overwrite a buffer with zeros in a way the optimiser keeps.
pub fn wipe(b: &mut [u8]) {
    for x in b.iter_mut() {
        // SAFETY: x is a valid, aligned, exclusive reference.
        unsafe { std::ptr::write_volatile(x, 0) };
    }
    std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
}

thread_local! {
    /// Hash computations made by this thread (tests check that every answer costs one).
    static CALLS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// How many yescrypt computations (the costly kind every answer includes) this
/// thread has run.
pub fn calls() -> usize {
    CALLS.with(|c| c.get())
}

/// crypt(phrase, setting), or `None` when the setting is unknown or invalid.
pub fn crypt(phrase: &[u8], setting: &str) -> Option<String> {
    if setting.starts_with("$y$") {
        CALLS.with(|c| c.set(c.get() + 1));
    }
    let p = CString::new(phrase).ok()?;
    let s = CString::new(setting).ok()?;
    let mut data: Box<CryptData> = Box::new(CryptData { bytes: [0; 32768] });
    // SAFETY: both strings are NUL-terminated; data is a zeroed crypt_data of the size
    // we pass; the result points into data (or is NULL) and is copied before data drops.
    let out = unsafe { crypt_rn(p.as_ptr(), s.as_ptr(), &mut *data, 32768) };
    let r = if out.is_null() {
        None
    } else {
        // SAFETY: crypt_rn returns a NUL-terminated string inside data.
        let h = unsafe { CStr::from_ptr(out) }.to_bytes();
        if h.first() == Some(&b'*') {
            None
        } else {
            Some(String::from_utf8_lossy(h).into_owned())
        }
    };
    wipe(&mut data.bytes);
    let mut pb = p.into_bytes();
    wipe(&mut pb);
    r
}

/// True when `phrase` hashes to `hash`. An empty phrase, a locked or empty hash and an
/// unknown hash type never match (the work is still done against [`DUMMY_HASH`]). Every
/// call includes one yescrypt computation at the dummy's cost or more.
pub fn verify(phrase: &[u8], hash: &str) -> bool {
    let usable = !phrase.is_empty() && !hash.is_empty() && !hash.starts_with(['!', '*']);
    let setting = if usable { hash } else { DUMMY_HASH };
    if usable && !hash.starts_with("$y$") {
        // A cheaper hash (sha512 takes 2 ms, md5 0.2 ms, yescrypt 20 ms) must not tell
        // that the name exists: do the dummy's work too.
        burn(phrase);
    }
    match crypt(phrase, setting) {
        Some(h) => usable & ct_eq(h.as_bytes(), hash.as_bytes()),
        None => false,
    }
}

/// Do the work of one yescrypt check and fail (unknown user, locked account).
pub fn burn(phrase: &[u8]) {
    let _ = crypt(phrase, DUMMY_HASH);
}

/// A new hash of `phrase` with `prefix` (`$y$` yescrypt, `$6$` sha512, ...) at the
/// library's default cost and with a random salt from the system.
pub fn hash(phrase: &[u8], prefix: &str) -> Option<String> {
    let pre = CString::new(prefix).ok()?;
    let mut out = [0 as c_char; CRYPT_GENSALT_OUTPUT_SIZE];
    // SAFETY: prefix is NUL-terminated; rbytes NULL asks libxcrypt for OS randomness;
    // out is writable for the size passed.
    let r = unsafe {
        crypt_gensalt_rn(
            pre.as_ptr(),
            0,
            std::ptr::null(),
            0,
            out.as_mut_ptr(),
            out.len() as c_int,
        )
    };
    if r.is_null() {
        return None;
    }
    // SAFETY: on success the output is a NUL-terminated setting string in out.
    let setting = unsafe { CStr::from_ptr(out.as_ptr()) }
        .to_str()
        .ok()?
        .to_string();
    if setting.starts_with('*') {
        return None;
    }
    crypt(phrase, &setting)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_hashes_verify() {
        // made with mkpasswd / openssl passwd for "tanstaaf"
        let md5 = crypt(b"tanstaaf", "$1$abcdefgh$").unwrap();
        assert!(verify(b"tanstaaf", &md5));
        assert!(!verify(b"tanstaa", &md5));
        assert!(verify(b"dummy-password-for-timing", DUMMY_HASH));
        assert!(!verify(b"", DUMMY_HASH));
        assert!(!verify(b"x", "!$1$abcdefgh$x"));
        assert!(!verify(b"x", ""));
        assert!(!verify(b"x", "nonsense"));
    }

    #[test]
    fn new_hashes_of_each_kind() {
        for p in ["$y$", "$6$", "$5$", "$1$"] {
            let h = hash(b"s3cret pass", p).unwrap();
            assert!(h.starts_with(p), "{h}");
            assert!(verify(b"s3cret pass", &h));
            assert!(!verify(b"s3cret pasS", &h));
        }
        assert!(hash(b"x", "$nope$").is_none());
    }

    #[test]
    fn constant_time_eq() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
    }
}
