//! Opportunistic STARTTLS for the client (RFC 3207; Postfix's security level "may").
//!
//! rustls with the ring provider, TLS 1.2 and 1.3. The peer's certificate is not
//! verified against any trust anchor, because an MX host's name comes from unauthenticated
//! DNS and refusing unverifiable certificates would only push mail back to plaintext.
//! The handshake signatures are still checked with the provider's algorithms, so the
//! session is encrypted to whoever holds the key of the certificate shown. This gives
//! protection against passive eavesdropping only, which is the stated goal.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};

#[derive(Debug)]
struct AnyCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The client configuration, or `None` if rustls refuses to build one (then no TLS).
pub fn client_config() -> Option<Arc<ClientConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .ok()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
        .with_no_client_auth();
    Some(Arc::new(cfg))
}

/// The name to present (SNI) for a host name, or the address itself.
pub fn server_name(name: Option<&str>, ip: std::net::IpAddr) -> ServerName<'static> {
    name.and_then(|n| ServerName::try_from(n.to_string()).ok())
        .unwrap_or_else(|| ServerName::IpAddress(ip.into()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn config_builds() {
        assert!(super::client_config().is_some());
        let n = super::server_name(Some("mx.example.test"), "127.0.0.1".parse().unwrap());
        assert!(matches!(n, rustls::pki_types::ServerName::DnsName(_)));
        let n = super::server_name(Some("bad name!"), "127.0.0.1".parse().unwrap());
        assert!(matches!(n, rustls::pki_types::ServerName::IpAddress(_)));
    }
}
