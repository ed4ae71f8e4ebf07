//! `tls_server_config` of the web configuration: the files, client authentication, versions and
//! cipher suites, checked into [`TlsSettings`].

use std::path::{Path, PathBuf};

use super::{ClientAuth, TlsFile, TlsSettings, TlsVersion, WebConfigError, invalid};

/// Validates `tls_server_config`; `None` when it configures nothing (TLS off, as in the
/// toolkit).
pub(super) fn tls_settings(
    tls: TlsFile,
    dir: &Path,
) -> Result<Option<TlsSettings>, WebConfigError> {
    const KEY: &str = "tls_server_config";
    let unset = |p: &Option<PathBuf>| p.as_ref().is_none_or(|p| p.as_os_str().is_empty());
    if unset(&tls.cert_file)
        && unset(&tls.key_file)
        && unset(&tls.client_ca_file)
        && tls.client_auth_type.as_deref().unwrap_or("").is_empty()
    {
        return Ok(None);
    }
    let resolve = |p: PathBuf| if p.is_absolute() { p } else { dir.join(p) };
    let cert_file = tls
        .cert_file
        .filter(|p| !p.as_os_str().is_empty())
        .map(resolve)
        .ok_or_else(|| invalid(KEY, "missing cert_file"))?;
    let key_file = tls
        .key_file
        .filter(|p| !p.as_os_str().is_empty())
        .map(resolve)
        .ok_or_else(|| invalid(KEY, "missing key_file"))?;
    let auth_text = tls.client_auth_type.unwrap_or_default();
    let client_auth = ClientAuth::parse(&auth_text).ok_or_else(|| {
        invalid(
            KEY,
            format!(
                "client_auth_type {auth_text:?}: must be NoClientCert, RequestClientCert, \
                 RequireAnyClientCert, VerifyClientCertIfGiven or RequireAndVerifyClientCert"
            ),
        )
    })?;
    let client_ca_file = tls
        .client_ca_file
        .filter(|p| !p.as_os_str().is_empty())
        .map(resolve);
    if client_auth.verifies() && client_ca_file.is_none() {
        return Err(invalid(
            KEY,
            format!("client_auth_type {auth_text} needs client_ca_file"),
        ));
    }
    if client_auth == ClientAuth::None && client_ca_file.is_some() {
        // As the toolkit: CAs without a policy asking for certificates are a mistake.
        return Err(invalid(
            KEY,
            "client_ca_file is set but client_auth_type is NoClientCert",
        ));
    }
    if tls.client_allowed_sans.is_some_and(|s| !s.is_empty()) {
        return Err(invalid(
            KEY,
            "client_allowed_sans is not supported by linkmeter; restrict clients with the CA of \
             client_ca_file",
        ));
    }
    let version = |key: &'static str, text: Option<String>, default| {
        text.filter(|t| !t.is_empty()).map_or(Ok(default), |t| {
            TlsVersion::parse(&t)
                .ok_or_else(|| invalid(key, format!("{t:?}: must be TLS10, TLS11, TLS12 or TLS13")))
        })
    };
    let min_version = version(
        "tls_server_config.min_version",
        tls.min_version,
        TlsVersion::Tls12,
    )?;
    let max_version = version(
        "tls_server_config.max_version",
        tls.max_version,
        TlsVersion::Tls13,
    )?;
    if max_version < TlsVersion::Tls12 {
        return Err(invalid(
            "tls_server_config.max_version",
            "TLS 1.0 and 1.1 are not served (rustls); use TLS12 or TLS13",
        ));
    }
    if min_version > max_version {
        return Err(invalid(
            "tls_server_config.min_version",
            "is above max_version",
        ));
    }
    Ok(Some(TlsSettings {
        cert_file,
        key_file,
        client_auth,
        client_ca_file,
        min_version,
        max_version,
        cipher_suites: tls.cipher_suites.unwrap_or_default(),
        curve_preferences: tls.curve_preferences.unwrap_or_default(),
        // The toolkit's default.
        prefer_server_cipher_suites: tls.prefer_server_cipher_suites.unwrap_or(true),
    }))
}
