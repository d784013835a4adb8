//! Server-side TLS shared by qmail-smtpd (STARTTLS, RFC 3207; implicit TLS on 465, RFC
//! 8314) and qmail-popup (STLS, RFC 2595; POP3S on 995).
//!
//! - [`server_config`] builds a rustls configuration from the control directory each time
//!   it is called, so a renewed certificate takes effect on the next connection without a
//!   restart (the programs are spawned per connection anyway).
//! - [`FdIo`] (from qsys, re-exported) is the plaintext transport under both protocols: reads from fd 0 and writes
//!   to fd 1, as tcpserver hands a connection to its child, with an optional timeout on
//!   every wait.
//!
//! Files (in the control directory):
//! - `servercert.pem`: the certificate chain, leaf first, in PEM. It may also hold the
//!   private key, as qmail's TLS patches expect.
//! - `serverkey.pem`: the private key (PKCS#8, PKCS#1 or SEC1 PEM), when it is kept apart
//!   from the chain. When present it wins over a key inside `servercert.pem`.
//!
//! The key must be readable by the uid that speaks TLS, and only by it: qmaild (both
//! qmail-smtpd and qmail-popup's network child run as qmaild), so the installer's advice
//! is `chown qmaild servercert.pem serverkey.pem; chmod 400` on them. A key file readable
//! by everyone (mode & 0o004), or by a group other than the reading process's, is used
//! anyway, with a warning on stderr each time it is loaded (the programs' log):
//! `PROG: warning: PATH holds the private key and is readable by everyone (mode 0644):
//! chmod 400 PATH (it is used anyway)`.
//!
//! Policy: TLS 1.2 and 1.3 only, with rustls' ring cipher suites (AEAD only, forward
//! secret key exchange); no client certificates; no session tickets (a per-process
//! ticketer would be useless across per-connection processes).

use std::io;
use std::path::Path;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The name of the certificate chain file in the control directory.
pub const CERT_FILE: &str = "servercert.pem";
/// The name of the optional separate private key file in the control directory.
pub const KEY_FILE: &str = "serverkey.pem";

/// The TLS configuration from `control_dir`, or `None` when no certificate is installed
/// (the caller then does not offer STARTTLS/STLS). A certificate without a usable key, or
/// a key that does not match, is an error: the administrator asked for TLS and must hear
/// that it does not work.
pub fn server_config(control_dir: &Path) -> io::Result<Option<Arc<ServerConfig>>> {
    let cert_path = control_dir.join(CERT_FILE);
    let pem = match std::fs::read(&cert_path) {
        Ok(p) => p,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(unreadable(&cert_path, &e)),
    };
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(&cert_path, &e.to_string()))?;
    if chain.is_empty() {
        return Err(bad(&cert_path, "no certificate in file"));
    }
    let key_path = control_dir.join(KEY_FILE);
    let (key, key_file) = match std::fs::read(&key_path) {
        Ok(k) => (
            PrivateKeyDer::from_pem_slice(&k).map_err(|e| bad(&key_path, &e.to_string()))?,
            key_path,
        ),
        Err(e) if e.kind() == io::ErrorKind::NotFound => (
            PrivateKeyDer::from_pem_slice(&pem)
                .map_err(|_| bad(&cert_path, "no private key here and no serverkey.pem"))?,
            cert_path,
        ),
        Err(e) => return Err(unreadable(&key_path, &e)),
    };
    warn_if_exposed(&key_file);
    config_from(chain, key).map(Some)
}

/// Whether this process can read the certificate (and the separate key, when there is
/// one): cheap (two opens, nothing parsed), for deciding whether to offer STARTTLS or
/// STLS at all. `Ok(false)`: no certificate installed; `Err`: installed but unreadable,
/// with the message [`server_config`] would give.
pub fn readable(control_dir: &Path) -> io::Result<bool> {
    let cert_path = control_dir.join(CERT_FILE);
    match std::fs::File::open(&cert_path) {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(unreadable(&cert_path, &e)),
    }
    let key_path = control_dir.join(KEY_FILE);
    match std::fs::File::open(&key_path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(unreadable(&key_path, &e)),
    }
}

/// An open or read error on a TLS file, naming the file, the user that must read it and,
/// for a permission error, the fix.
fn unreadable(path: &Path, e: &io::Error) -> io::Error {
    let user = qsys::ids::name_of_uid(nix::unistd::geteuid());
    let p = path.display();
    let fix = if e.kind() == io::ErrorKind::PermissionDenied {
        format!(": it must be readable by {user} (chown {user} {p}; chmod 400 {p})")
    } else {
        String::new()
    };
    io::Error::new(
        e.kind(),
        format!("unable to read {p} as {user}: {}{fix}", qsys::errstr::io(e)),
    )
}

/// Warn (on stderr, the program's log) when the key file is readable by others.
fn warn_if_exposed(key_file: &Path) {
    if let Ok(m) = std::fs::metadata(key_file) {
        use std::os::unix::fs::MetadataExt;
        let own_gid = nix::unistd::getegid().as_raw();
        if let Some(why) = key_exposure(m.mode(), m.gid(), own_gid) {
            let msg = format!(
                "{} holds the private key and is readable by {why} (mode {:04o}): chmod 400 {} \
                 (it is used anyway)",
                key_file.display(),
                m.mode() & 0o7777,
                key_file.display()
            );
            qsys::die::warn(&program_name(), "warning", &msg);
        }
    }
}

/// Who besides its owner may read a key file with `mode` and group `file_gid`, when the
/// reading process's group is `own_gid`: `everyone`, `group N`, or nobody (`None`).
pub fn key_exposure(mode: u32, file_gid: u32, own_gid: u32) -> Option<String> {
    if mode & 0o004 != 0 {
        Some("everyone".into())
    } else if mode & 0o040 != 0 && file_gid != own_gid {
        Some(format!("group {file_gid}"))
    } else {
        None
    }
}

/// The name this process was started as, for the warning.
fn program_name() -> String {
    std::env::args_os()
        .next()
        .and_then(|a| {
            Path::new(&a)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "tls".into())
}

/// A configuration from an already loaded chain and key (used by tests and tools).
pub fn config_from(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> io::Result<Arc<ServerConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(io::Error::other)?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    cfg.send_tls13_tickets = 0;
    Ok(Arc::new(cfg))
}

fn bad(path: &Path, why: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("{}: {why}", path.display()),
    )
}

pub use qsys::fdio::FdIo;

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn exposed_keys_are_named() {
        assert_eq!(key_exposure(0o100644, 0, 0).as_deref(), Some("everyone"));
        assert_eq!(key_exposure(0o100604, 5, 5).as_deref(), Some("everyone"));
        assert_eq!(key_exposure(0o100640, 5, 7).as_deref(), Some("group 5"));
        assert_eq!(key_exposure(0o100640, 7, 7), None);
        assert_eq!(key_exposure(0o100400, 5, 7), None);
        assert_eq!(key_exposure(0o100600, 5, 7), None);
    }

    fn write_cert(dir: &Path, split_key: bool) {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["mail.example.test".into()]).unwrap();
        let cert = params.self_signed(&key).unwrap();
        if split_key {
            std::fs::write(dir.join(CERT_FILE), cert.pem()).unwrap();
            std::fs::write(dir.join(KEY_FILE), key.serialize_pem()).unwrap();
        } else {
            std::fs::write(
                dir.join(CERT_FILE),
                format!("{}{}", cert.pem(), key.serialize_pem()),
            )
            .unwrap();
        }
    }

    #[test]
    fn no_certificate_means_no_tls() {
        let d = tempfile::tempdir().unwrap();
        assert!(server_config(d.path()).unwrap().is_none());
    }

    #[test]
    fn certificate_without_key_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        write_cert(d.path(), true);
        std::fs::remove_file(d.path().join(KEY_FILE)).unwrap();
        assert!(server_config(d.path()).is_err());
        std::fs::write(d.path().join(CERT_FILE), "garbage").unwrap();
        assert!(server_config(d.path()).is_err());
    }

    /// A full handshake against the loaded config, key in the chain file and apart.
    #[test]
    fn handshake_with_both_key_layouts() {
        for split in [false, true] {
            let d = tempfile::tempdir().unwrap();
            write_cert(d.path(), split);
            let cfg = server_config(d.path()).unwrap().unwrap();
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = l.local_addr().unwrap();
            let server = std::thread::spawn(move || {
                let (s, _) = l.accept().unwrap();
                let conn = rustls::ServerConnection::new(cfg).unwrap();
                let mut tls = rustls::StreamOwned::new(conn, s);
                let mut line = [0u8; 5];
                tls.read_exact(&mut line).unwrap();
                tls.write_all(b"pong\n").unwrap();
                tls.flush().unwrap();
                line
            });
            let client_cfg = insecure_client();
            let name = rustls::pki_types::ServerName::try_from("mail.example.test").unwrap();
            let conn = rustls::ClientConnection::new(client_cfg, name).unwrap();
            let mut tls = rustls::StreamOwned::new(conn, TcpStream::connect(addr).unwrap());
            tls.write_all(b"ping\n").unwrap();
            let mut reply = [0u8; 5];
            tls.read_exact(&mut reply).unwrap();
            assert_eq!(&reply, b"pong\n");
            assert!(tls.conn.protocol_version().is_some());
            assert_eq!(&server.join().unwrap(), b"ping\n");
        }
    }

    fn insecure_client() -> Arc<rustls::ClientConfig> {
        #[derive(Debug)]
        struct Any;
        impl rustls::client::danger::ServerCertVerifier for Any {
            fn verify_server_cert(
                &self,
                _: &CertificateDer<'_>,
                _: &[CertificateDer<'_>],
                _: &rustls::pki_types::ServerName<'_>,
                _: &[u8],
                _: rustls::pki_types::UnixTime,
            ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
                Ok(rustls::client::danger::ServerCertVerified::assertion())
            }
            fn verify_tls12_signature(
                &self,
                _: &[u8],
                _: &CertificateDer<'_>,
                _: &rustls::DigitallySignedStruct,
            ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error>
            {
                Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
            }
            fn verify_tls13_signature(
                &self,
                _: &[u8],
                _: &CertificateDer<'_>,
                _: &rustls::DigitallySignedStruct,
            ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error>
            {
                Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
            }
            fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
                rustls::crypto::ring::default_provider()
                    .signature_verification_algorithms
                    .supported_schemes()
            }
        }
        let p = Arc::new(rustls::crypto::ring::default_provider());
        Arc::new(
            rustls::ClientConfig::builder_with_provider(p)
                .with_safe_default_protocol_versions()
                .unwrap()
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(Any))
                .with_no_client_auth(),
        )
    }
}
