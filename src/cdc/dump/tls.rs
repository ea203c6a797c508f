//! TLS for the replication connection, with the meaning `mysql.tls.mode`
//! has everywhere (the pool's connections get it from mysql_async):
//!
//! | mode | certificate chain | host name |
//! |---|---|---|
//! | `require` | not checked | not checked |
//! | `verify-ca` | must chain to `ca_file` (or the system's roots) | not checked (MySQL's `VERIFY_CA`) |
//! | `verify-identity` | must chain | must name the URL's host |
//!
//! Read from the connection options [`crate::mysql::connect::mysql_opts`]
//! builds, so both kinds of connection follow one configuration.

use std::sync::Arc;

use mysql_async::SslOpts;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// How much of the server's certificate is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Encryption only (`require`).
    Nothing,
    /// The chain (`verify-ca`).
    Chain,
    /// The chain and the host name (`verify-identity`).
    ChainAndName,
}

impl Check {
    /// The check `ssl` asks for (as `connect::mysql_opts` sets it per mode).
    pub fn of(ssl: &SslOpts) -> Self {
        if ssl.accept_invalid_certs() {
            Check::Nothing
        } else if ssl.skip_domain_validation() {
            Check::Chain
        } else {
            Check::ChainAndName
        }
    }
}

/// A TLS connector for `ssl`'s CAs and check.
pub async fn connector(ssl: &SslOpts) -> Result<tokio_rustls::TlsConnector, String> {
    let mut roots = RootCertStore::empty();
    for source in ssl.root_certs() {
        let pem = source.read().await.map_err(|e| format!("reading mysql.tls.ca_file: {e}"))?;
        let mut found = false;
        for cert in rustls::pki_types::pem::PemObject::pem_slice_iter(&pem) {
            let cert: CertificateDer<'static> = cert.map_err(|e| format!("mysql.tls.ca_file: {e}"))?;
            roots.add(cert).map_err(|e| format!("mysql.tls.ca_file: {e}"))?;
            found = true;
        }
        if !found {
            return Err("mysql.tls.ca_file holds no PEM certificate".into());
        }
    }
    if !ssl.disable_built_in_roots() {
        for cert in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(cert);
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let webpki = if roots.is_empty() {
        None
    } else {
        Some(WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone()).build().map_err(|e| e.to_string())?)
    };
    let verifier = Arc::new(Verifier { check: Check::of(ssl), webpki, provider: provider.clone() });
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// The server name a TLS connection to `host` presents and checks.
pub fn server_name(host: &str) -> Result<ServerName<'static>, String> {
    ServerName::try_from(host.to_owned()).map_err(|e| format!("{host:?} is not a host name TLS can check: {e}"))
}

#[derive(Debug)]
struct Verifier {
    check: Check,
    webpki: Option<Arc<WebPkiServerVerifier>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if self.check == Check::Nothing {
            return Ok(ServerCertVerified::assertion());
        }
        let Some(webpki) = &self.webpki else {
            return Err(rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer));
        };
        match webpki.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            // rustls checks the chain first and the name last: a name error
            // means the chain verified.
            Err(rustls::Error::InvalidCertificate(CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }))
                if self.check == Check::Chain =>
            {
                Ok(ServerCertVerified::assertion())
            }
            other => other,
        }
    }

    // The handshake's signatures are always checked: they prove the server
    // holds the key of the certificate it showed.
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::test_pki::{issuer, server_cert};

    fn verifier(check: Check, ca: &rcgen::CertifiedIssuer<'static, rcgen::KeyPair>) -> Verifier {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut roots = RootCertStore::empty();
        roots.add(ca.der().clone()).unwrap();
        let webpki = Some(WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone()).build().unwrap());
        Verifier { check, webpki, provider }
    }

    fn verdict(verifier: &Verifier, cert: &CertificateDer<'static>, host: &str) -> bool {
        verifier.verify_server_cert(cert, &[], &server_name(host).unwrap(), &[], UnixTime::now()).is_ok()
    }

    #[test]
    fn each_mode_checks_what_its_name_says() {
        let ca = issuer("drugsync test CA");
        let stranger = issuer("someone else's CA");
        let nameless = server_cert(&ca, &[]);
        let localhost = server_cert(&ca, &["localhost"]);
        let foreign = server_cert(&stranger, &["127.0.0.1"]);
        let (nothing, chain, identity) = (verifier(Check::Nothing, &ca), verifier(Check::Chain, &ca), verifier(Check::ChainAndName, &ca));
        assert!(verdict(&nothing, &foreign, "127.0.0.1"), "require: anything");
        assert!(verdict(&chain, &nameless, "127.0.0.1") && verdict(&chain, &localhost, "127.0.0.1"), "verify-ca: the chain");
        assert!(!verdict(&chain, &foreign, "127.0.0.1"), "verify-ca: another CA's certificate");
        assert!(verdict(&identity, &localhost, "localhost"));
        assert!(!verdict(&identity, &localhost, "127.0.0.1") && !verdict(&identity, &nameless, "localhost"), "verify-identity: the name");
        assert!(!verdict(&identity, &foreign, "127.0.0.1"));
    }
}
