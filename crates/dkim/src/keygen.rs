//! New key pairs: RSA (RustCrypto `rsa`, 2048 bits unless asked otherwise; RFC 8301
//! section 3.2 wants at least 1024 and recommends 2048) and Ed25519 (`ed25519-dalek`,
//! RFC 8463). Randomness comes from the operating system (getrandom).

use crate::keys::{Algorithm, MAX_RSA_BITS, MIN_RSA_BITS, PrivateKey};

/// The RSA size used when none is asked for.
pub const DEFAULT_RSA_BITS: usize = 2048;

/// A new key of `algorithm`; `bits` is the RSA size (0: [`DEFAULT_RSA_BITS`]) and is
/// ignored for Ed25519.
pub fn generate(algorithm: Algorithm, bits: usize) -> Result<PrivateKey, String> {
    use rsa::rand_core::{OsRng, RngCore};
    match algorithm {
        Algorithm::Rsa => {
            let bits = if bits == 0 { DEFAULT_RSA_BITS } else { bits };
            if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) || bits % 8 != 0 {
                return Err(format!(
                    "RSA key size {bits} is not a multiple of 8 from {MIN_RSA_BITS} to {MAX_RSA_BITS}"
                ));
            }
            rsa::RsaPrivateKey::new(&mut OsRng, bits)
                .map(|k| PrivateKey::Rsa(Box::new(k)))
                .map_err(|e| format!("unable to generate an RSA key: {e}"))
        }
        Algorithm::Ed25519 => {
            let mut seed = [0u8; ed25519_dalek::SECRET_KEY_LENGTH];
            OsRng
                .try_fill_bytes(&mut seed)
                .map_err(|e| format!("unable to read random bytes: {e}"))?;
            let key = ed25519_dalek::SigningKey::from_bytes(&seed);
            seed.fill(0);
            Ok(PrivateKey::Ed25519(Box::new(key)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_checked() {
        assert!(generate(Algorithm::Rsa, 512).is_err());
        assert!(generate(Algorithm::Rsa, 8192).is_err());
        assert!(generate(Algorithm::Rsa, 2047).is_err());
    }

    #[test]
    fn keys_differ_and_have_the_right_public_size() {
        let a = generate(Algorithm::Ed25519, 0).unwrap();
        let b = generate(Algorithm::Ed25519, 0).unwrap();
        assert_eq!(a.public_key().unwrap().len(), 32);
        assert_ne!(a.public_key().unwrap(), b.public_key().unwrap());
        let r = generate(Algorithm::Rsa, 1024).unwrap();
        assert_eq!(r.algorithm(), Algorithm::Rsa);
        // SubjectPublicKeyInfo of RSA starts with a SEQUENCE and the rsaEncryption OID
        let spki = r.public_key().unwrap();
        assert_eq!(spki[0], 0x30);
        assert!(
            spki.windows(9)
                .any(|w| w == b"\x2a\x86\x48\x86\xf7\x0d\x01\x01\x01")
        );
    }
}
