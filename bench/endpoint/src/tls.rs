//! `--tls`: HTTPS as on AWS, so the benchmark can see what TLS costs the
//! client. At start a throwaway CA and a server certificate it signs (for
//! `localhost` and `127.0.0.1`) are generated; the driver gets the CA as PEM
//! and hands it to the clients, which then verify the server for real.
//!
//! RSA-2048 keys, like the certificates SQS and DynamoDB present, so the
//! handshake's signature costs are AWS's. Unlike AWS, the chain is one
//! certificate long (no intermediate), so clients verify one signature less.

use std::io;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    RsaKeySize,
};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::crypto::aws_lc_rs;
use tokio_rustls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

/// A generated CA and the server configuration it vouches for.
#[derive(Clone)]
pub struct Tls {
    ca_pem: String,
    acceptor: TlsAcceptor,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").finish_non_exhaustive()
    }
}

impl Tls {
    /// A fresh CA and server certificate; serves TLS 1.2 and 1.3 with ALPN `http/1.1`.
    ///
    /// # Errors
    /// When key generation, signing or the rustls configuration fails.
    pub fn generate() -> io::Result<Self> {
        let rsa = || KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, RsaKeySize::_2048);
        let ca_key = rsa().map_err(io::Error::other)?;
        let mut ca = CertificateParams::default();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name.push(DnType::CommonName, "bench-endpoint throwaway CA");
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca.self_signed(&ca_key).map_err(io::Error::other)?;
        let issuer = Issuer::new(ca, ca_key);

        let server_key = rsa().map_err(io::Error::other)?;
        let mut server =
            CertificateParams::new(["localhost".to_owned(), "127.0.0.1".to_owned()]).map_err(io::Error::other)?;
        server.distinguished_name.push(DnType::CommonName, "localhost");
        // What strict verifiers (Python 3.13's default, OpenSSL's X509_STRICT) insist on.
        server.use_authority_key_identifier_extension = true;
        server.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_cert = server.signed_by(&server_key, &issuer).map_err(io::Error::other)?;

        // An explicit provider: the process-wide default is ambiguous when
        // both of rustls's crypto backends are compiled in.
        let mut config = ServerConfig::builder_with_provider(Arc::new(aws_lc_rs::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(io::Error::other)?
            .with_no_client_auth()
            .with_single_cert(
                vec![server_cert.der().clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der())),
            )
            .map_err(io::Error::other)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self { ca_pem: ca_cert.pem(), acceptor: TlsAcceptor::from(Arc::new(config)) })
    }

    /// The CA certificate, PEM: what clients must trust.
    #[must_use]
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    pub(crate) fn acceptor(&self) -> &TlsAcceptor {
        &self.acceptor
    }
}
