//! TLS 1.3 with pinned keys, both ways. The agent accepts only the hub certificate whose
//! fingerprint its join token names (names and dates are not what is trusted: the key is). The
//! hub asks every client for its certificate and checks, like any TLS server, that the client
//! holds its key; whether that key is a host's is the hub's next question ([`crate::Hub`]).

use std::sync::Arc;

use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::crypto::{CryptoProvider, verify_tls13_signature};
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use tokio_rustls::rustls::{
    ClientConfig, DigitallySignedStruct, DistinguishedName, Error, ServerConfig, SignatureScheme,
    version::TLS13,
};

use crate::identity::{Identity, fingerprint};

fn provider() -> Arc<CryptoProvider> {
    Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider())
}

/// HTTP/2 only, over TLS 1.3 only.
const ALPN: &[u8] = b"h2";

/// Both sides speak TLS 1.3 only.
fn tls12_refused() -> Result<HandshakeSignatureValid, Error> {
    Err(Error::General("the fleet speaks TLS 1.3 only".into()))
}

/// Whether the peer holds the key of `cert`: its handshake signature checks out.
fn holds_key(
    provider: &CryptoProvider,
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
) -> Result<HandshakeSignatureValid, Error> {
    verify_tls13_signature(
        message,
        cert,
        dss,
        &provider.signature_verification_algorithms,
    )
}

/// The signature schemes the provider checks.
fn schemes(provider: &CryptoProvider) -> Vec<SignatureScheme> {
    provider
        .signature_verification_algorithms
        .supported_schemes()
}

/// The hub's certificate must be the one the token pins.
#[derive(Debug)]
struct PinnedHub {
    fingerprint: String,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedHub {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let seen = fingerprint(end_entity);
        if seen == self.fingerprint {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(Error::General(format!(
                "the hub presents key {seen}, not {} that the join token pins",
                self.fingerprint
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        tls12_refused()
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        holds_key(&self.provider, message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        schemes(&self.provider)
    }
}

/// Every client must show a certificate and prove it holds its key; the hub then looks the
/// key up among its hosts.
#[derive(Debug)]
struct AnyHostKey {
    provider: Arc<CryptoProvider>,
}

impl ClientCertVerifier for AnyHostKey {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        tls12_refused()
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        holds_key(&self.provider, message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        schemes(&self.provider)
    }
}

/// The hub's listener: its identity, a client certificate required.
pub(crate) fn hub_config(identity: &Identity) -> Result<ServerConfig, String> {
    let provider = provider();
    let verifier = Arc::new(AnyHostKey {
        provider: Arc::clone(&provider),
    });
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&TLS13])
        .map_err(|e| format!("fleet tls: {e}"))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![identity.cert.clone()], identity.key())
        .map_err(|e| format!("fleet tls: the hub's key: {e}"))?;
    config.alpn_protocols = vec![ALPN.to_vec()];
    Ok(config)
}

/// The agent's connection: the hub's key pinned, the agent's own certificate shown.
pub(crate) fn agent_config(identity: &Identity, hub: &str) -> Result<ClientConfig, String> {
    let provider = provider();
    let verifier = Arc::new(PinnedHub {
        fingerprint: hub.to_owned(),
        provider: Arc::clone(&provider),
    });
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&TLS13])
        .map_err(|e| format!("fleet tls: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_auth_cert(vec![identity.cert.clone()], identity.key())
        .map_err(|e| format!("fleet tls: the host's key: {e}"))?;
    config.alpn_protocols = vec![ALPN.to_vec()];
    Ok(config)
}
