//! Extra trusted CA certificates from `AWS_CA_BUNDLE`, as the AWS CLI and
//! the other SDKs honour it: a PEM file of CAs trusted beside the system's
//! roots, for TLS-inspecting proxies and private endpoints. The Rust SDK does
//! not read the variable itself, so every subcommand's SDK configuration is
//! loaded through [`load_defaults`].
//!
//! The bundle is read and checked once, at start-up: the SDK's TLS layer
//! panics on a certificate it cannot parse, so nothing unchecked reaches it,
//! and a wrong bundle stops the process naming the variable, never a call.

use std::path::{Path, PathBuf};

use aws_config::{BehaviorVersion, SdkConfig};
use aws_smithy_http_client::proxy::ProxyConfig;
use aws_smithy_http_client::tls::rustls_provider::CryptoMode;
use aws_smithy_http_client::tls::{self, TlsContext, TrustStore};
use aws_smithy_http_client::{Builder, ConnectorBuilder};
use aws_smithy_runtime_api::client::http::SharedHttpClient;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use crate::config::ConfigError;

/// The variable naming the PEM file of extra trusted CA certificates.
pub const CA_BUNDLE_VARIABLE: &str = "AWS_CA_BUNDLE";

/// The SDK's default chain (region, credentials, endpoints), with the
/// certificates of `AWS_CA_BUNDLE` trusted when it is set.
pub async fn load_defaults() -> Result<SdkConfig, ConfigError> {
    let loader = aws_config::defaults(BehaviorVersion::latest());
    let loader = match http_client_from_env()? {
        Some(client) => loader.http_client(client),
        None => loader,
    };
    Ok(loader.load().await)
}

/// The HTTPS client trusting `AWS_CA_BUNDLE`'s certificates, or `None`
/// when the variable is unset or blank (the SDK's own default client).
pub fn http_client_from_env() -> Result<Option<SharedHttpClient>, ConfigError> {
    bundle_path().map(|path| https_client(&read_bundle(&path)?)).transpose()
}

/// The path `AWS_CA_BUNDLE` names; `None` when it is unset or blank, which
/// means the system's roots alone.
pub fn bundle_path() -> Option<PathBuf> {
    std::env::var_os(CA_BUNDLE_VARIABLE).filter(|path| !path.is_empty()).map(PathBuf::from)
}

/// The bundle at `path`, read and checked.
pub fn read_bundle(path: &Path) -> Result<Vec<u8>, ConfigError> {
    let shown = path.display().to_string();
    let pem = std::fs::read(path).map_err(|e| bundle_error(format!("is \"{shown}\", which cannot be read: {e}")))?;
    check_bundle(&pem, &shown)?;
    Ok(pem)
}

/// Every certificate of the bundle, each checked as a trust anchor the way
/// the TLS layer will load it.
fn check_bundle(pem: &[u8], shown: &str) -> Result<(), ConfigError> {
    let certificates = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bundle_error(format!("is \"{shown}\", not a PEM file of certificates: {e}")))?;
    if certificates.is_empty() {
        return Err(bundle_error(format!(
            "is \"{shown}\", which holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
        )));
    }
    let mut roots = rustls::RootCertStore::empty();
    for (n, certificate) in certificates.into_iter().enumerate() {
        roots.add(certificate).map_err(|e| {
            bundle_error(format!("is \"{shown}\", whose certificate {} is not a usable CA certificate: {e}", n + 1))
        })?;
    }
    Ok(())
}

fn bundle_error(problem: String) -> ConfigError {
    ConfigError {
        variable: CA_BUNDLE_VARIABLE,
        flag: "",
        problem,
        fix: format!(
            "point {CA_BUNDLE_VARIABLE} at a readable PEM file of the CA certificates to trust \
             (the system's roots stay trusted), or unset it"
        ),
    }
}

/// The SDK's default HTTPS client (rustls with aws-lc, proxies from the
/// environment), with the bundle's certificates added to the system roots.
fn https_client(pem: &[u8]) -> Result<SharedHttpClient, ConfigError> {
    let trust = TrustStore::default().with_native_roots(true).with_pem_certificate(pem);
    let context = TlsContext::builder()
        .with_trust_store(trust)
        .build()
        .map_err(|e| bundle_error(format!("cannot be used: {e}")))?;
    Ok(Builder::new().build_with_connector_fn(move |settings, components| {
        let mut connector = ConnectorBuilder::default()
            .tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc))
            .tls_context(context.clone());
        connector.set_connector_settings(settings.cloned());
        if let Some(components) = components {
            connector.set_sleep_impl(components.sleep_impl());
        }
        connector.set_proxy_config(Some(ProxyConfig::from_env()));
        connector.build()
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_file_names_the_variable_and_the_path() {
        let e = read_bundle(Path::new("/nonexistent/ca.pem")).expect_err("missing file");
        assert_eq!(e.variable, "AWS_CA_BUNDLE");
        assert!(e.problem.contains("is \"/nonexistent/ca.pem\", which cannot be read"), "{}", e.problem);
    }

    #[test]
    fn a_file_without_certificates_is_refused() {
        let e = check_bundle(b"just some text\n", "ca.pem").expect_err("no certificate");
        assert!(e.problem.contains("is \"ca.pem\", which holds no PEM certificate"), "{}", e.problem);
    }

    #[test]
    fn a_certificate_that_is_not_der_is_refused_before_the_sdk_sees_it() {
        let pem = b"-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n";
        let e = check_bundle(pem, "ca.pem").expect_err("not a certificate");
        assert!(e.problem.contains("certificate 1 is not a usable CA certificate"), "{}", e.problem);
    }

    #[test]
    fn broken_base64_is_refused() {
        let pem = b"-----BEGIN CERTIFICATE-----\n%%%%\n-----END CERTIFICATE-----\n";
        let e = check_bundle(pem, "ca.pem").expect_err("bad base64");
        assert!(e.problem.contains("not a PEM file of certificates"), "{}", e.problem);
    }
}
