//! Certificates for the TLS unit tests: a private CA and server
//! certificates it signs, with or without host names (MySQL's own
//! auto-generated certificate names none).

use rustls::pki_types::CertificateDer;

/// A certificate authority named `name`.
pub fn issuer(name: &str) -> rcgen::CertifiedIssuer<'static, rcgen::KeyPair> {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(rcgen::DnType::CommonName, name);
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().unwrap()).unwrap()
}

/// A server certificate signed by `issuer`, valid for `names` (none: like MySQL's own).
pub fn server_cert(issuer: &rcgen::CertifiedIssuer<'static, rcgen::KeyPair>, names: &[&str]) -> CertificateDer<'static> {
    let mut params = rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    params.distinguished_name.push(rcgen::DnType::CommonName, "MySQL_Server_Auto_Generated_Server_Certificate");
    params.signed_by(&rcgen::KeyPair::generate().unwrap(), issuer).unwrap().der().clone()
}
