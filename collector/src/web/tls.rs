//! A rustls server configuration (ring provider, no OpenSSL) from [`TlsSettings`]: the
//! certificate and key, the client certificate policy, versions, cipher suites and curves.

use std::{path::Path, sync::Arc};

use rustls::{
    DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme,
    SupportedCipherSuite,
    client::danger::HandshakeSignatureValid,
    crypto::{CryptoProvider, SupportedKxGroup, ring},
    pki_types::{CertificateDer, PrivateKeyDer, UnixTime, pem::PemObject},
    server::{
        WebPkiClientVerifier,
        danger::{ClientCertVerified, ClientCertVerifier},
    },
    version::{TLS12, TLS13},
};
use tracing::warn;

use super::config::{ClientAuth, TlsSettings, TlsVersion};

/// Why TLS cannot be set up from the configuration.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TlsError {
    /// A PEM file cannot be read or holds nothing usable.
    #[error("{what} {path}")]
    Pem {
        /// What the file was to hold.
        what: &'static str,
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    /// A name in `cipher_suites` or `curve_preferences` is not one rustls serves.
    #[error("tls_server_config.{key}: {name:?} is not supported; supported: {supported}")]
    Unsupported {
        /// The key.
        key: &'static str,
        /// The name as written.
        name: String,
        /// What would be accepted.
        supported: String,
    },
    /// rustls refused the combination (e.g. the key does not match the certificate).
    #[error("TLS setup")]
    Rustls(#[source] rustls::Error),
    /// The client CA file holds no usable certificate, or the verifier cannot be built.
    #[error("client_ca_file: {0}")]
    ClientCa(String),
}

/// Builds the server configuration, reading the files `settings` names.
///
/// # Errors
///
/// [`TlsError`] naming the file or key at fault.
pub(crate) fn server_config(settings: &TlsSettings) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = Arc::new(provider(settings)?);
    let certs = read_certs(&settings.cert_file, "cert_file")?;
    let key = PrivateKeyDer::from_pem_file(&settings.key_file).map_err(|source| TlsError::Pem {
        what: "key_file",
        path: settings.key_file.clone(),
        source,
    })?;
    if settings.min_version < TlsVersion::Tls12 {
        warn!(
            min_version = ?settings.min_version,
            "TLS 1.0 and 1.1 are not served (rustls): the lowest version served is TLS 1.2"
        );
    }
    let versions: Vec<_> = [(TlsVersion::Tls12, &TLS12), (TlsVersion::Tls13, &TLS13)]
        .into_iter()
        .filter(|(v, _)| (settings.min_version..=settings.max_version).contains(v))
        .map(|(_, v)| v)
        .collect();
    let verifier = client_verifier(settings, &provider)?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&versions)
        .map_err(TlsError::Rustls)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(TlsError::Rustls)?;
    config.ignore_client_order = settings.prefer_server_cipher_suites;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn read_certs(path: &Path, what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = |source| TlsError::Pem {
        what,
        path: path.to_owned(),
        source,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(pem)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem)?;
    if certs.is_empty() {
        return Err(pem(rustls::pki_types::pem::Error::NoItemsFound));
    }
    Ok(certs)
}

/// The ring provider narrowed to the configured TLS 1.2 cipher suites and curves.
fn provider(settings: &TlsSettings) -> Result<CryptoProvider, TlsError> {
    let mut provider = ring::default_provider();
    if !settings.cipher_suites.is_empty() {
        let tls12: Vec<SupportedCipherSuite> = provider
            .cipher_suites
            .iter()
            .copied()
            .filter(|s| s.tls13().is_none())
            .collect();
        let mut chosen: Vec<SupportedCipherSuite> = provider
            .cipher_suites
            .iter()
            .copied()
            .filter(|s| s.tls13().is_some())
            .collect();
        for name in &settings.cipher_suites {
            // Go also names the ChaCha20 suites without their `_SHA256`.
            let suite = tls12.iter().find(|s| {
                let own = s.suite().as_str().unwrap_or_default();
                own == name || own.strip_suffix("_SHA256") == Some(name.as_str())
            });
            let suite = suite.ok_or_else(|| TlsError::Unsupported {
                key: "cipher_suites",
                name: name.clone(),
                supported: tls12
                    .iter()
                    .filter_map(|s| s.suite().as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })?;
            chosen.push(*suite);
        }
        provider.cipher_suites = chosen;
    }
    if !settings.curve_preferences.is_empty() {
        let known: [(&str, &'static dyn SupportedKxGroup); 3] = [
            ("X25519", ring::kx_group::X25519),
            ("CurveP256", ring::kx_group::SECP256R1),
            ("CurveP384", ring::kx_group::SECP384R1),
        ];
        provider.kx_groups = settings
            .curve_preferences
            .iter()
            .map(|name| {
                known
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, g)| *g)
                    .ok_or_else(|| TlsError::Unsupported {
                        key: "curve_preferences",
                        name: name.clone(),
                        supported: "X25519, CurveP256, CurveP384".to_owned(),
                    })
            })
            .collect::<Result<_, _>>()?;
    }
    Ok(provider)
}

fn client_verifier(
    settings: &TlsSettings,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    let verified = |optional: bool| -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
        let path = settings
            .client_ca_file
            .as_deref()
            .ok_or_else(|| TlsError::ClientCa("not set".to_owned()))?;
        let mut roots = RootCertStore::empty();
        for cert in read_certs(path, "client_ca_file")? {
            roots
                .add(cert)
                .map_err(|e| TlsError::ClientCa(format!("{}: {e}", path.display())))?;
        }
        let builder =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(provider));
        let builder = if optional {
            builder.allow_unauthenticated()
        } else {
            builder
        };
        builder
            .build()
            .map_err(|e| TlsError::ClientCa(format!("{}: {e}", path.display())))
    };
    Ok(match settings.client_auth {
        ClientAuth::None => WebPkiClientVerifier::no_client_auth(),
        ClientAuth::Request => Arc::new(AnyClientCert {
            mandatory: false,
            provider: Arc::clone(provider),
        }),
        ClientAuth::RequireAny => Arc::new(AnyClientCert {
            mandatory: true,
            provider: Arc::clone(provider),
        }),
        ClientAuth::VerifyIfGiven => verified(true)?,
        ClientAuth::RequireAndVerify => verified(false)?,
    })
}

/// `RequestClientCert` / `RequireAnyClientCert`: any certificate is taken without a CA, but the
/// client must still prove it holds the certificate's key (the handshake signature).
#[derive(Debug)]
struct AnyClientCert {
    mandatory: bool,
    provider: Arc<CryptoProvider>,
}

impl ClientCertVerifier for AnyClientCert {
    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
