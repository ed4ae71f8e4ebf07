use super::*;

const HASH: &str = "$2b$04$F5zgCyaH9r0Z6/n0PQ86quUHZIVvLDxxuZTrTD8uxmz/AkVRC7XyS";

fn parse(text: &str) -> Result<WebConfig, WebConfigError> {
    WebConfig::parse(text, Path::new("/etc/linkmeter"))
}

fn error(text: &str) -> String {
    parse(text).expect_err("invalid").to_string()
}

#[test]
fn a_full_toolkit_file_is_read_with_paths_relative_to_it() {
    let config = parse(&format!(
        "tls_server_config:
  cert_file: tls/server.crt
  key_file: /abs/server.key
  client_auth_type: RequireAndVerifyClientCert
  client_ca_file: ca.crt
  min_version: TLS13
  cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256]
  curve_preferences: [X25519]
  prefer_server_cipher_suites: true
http_server_config:
  http2: true
  headers:
    Strict-Transport-Security: max-age=31536000
    X-Frame-Options: deny
basic_auth_users:
  prometheus: '{HASH}'
"
    ))
    .expect("valid");
    let tls = config.tls.expect("TLS");
    assert_eq!(tls.cert_file, Path::new("/etc/linkmeter/tls/server.crt"));
    assert_eq!(tls.key_file, Path::new("/abs/server.key"));
    assert_eq!(
        tls.client_ca_file.as_deref(),
        Some(Path::new("/etc/linkmeter/ca.crt"))
    );
    assert_eq!(tls.client_auth, ClientAuth::RequireAndVerify);
    assert_eq!(
        (tls.min_version, tls.max_version),
        (TlsVersion::Tls13, TlsVersion::Tls13)
    );
    assert!(tls.prefer_server_cipher_suites);
    assert_eq!(tls.files().count(), 3);
    assert_eq!(config.headers.len(), 2);
    assert_eq!(config.headers[0].0, "strict-transport-security");
    assert_eq!(config.users.len(), 1);
}

#[test]
fn empty_files_and_empty_tls_sections_mean_plain_http() {
    for text in [
        "",
        "\n",
        "---\n",
        "tls_server_config: {}\n",
        "tls_server_config:\n  cert_file: ''\n",
    ] {
        let config = parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
        assert!(config.tls.is_none(), "{text:?}");
        assert!(config.users.is_empty());
    }
}

#[test]
fn mistakes_are_named() {
    let cases: &[(&str, &str)] = &[
        ("tls_server_config:\n  cert_file: a\n", "missing key_file"),
        ("tls_server_config:\n  key_file: a\n", "missing cert_file"),
        (
            "tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: Always\n",
            "client_auth_type \"Always\"",
        ),
        (
            "tls_server_config:\n  cert_file: a\n  key_file: b\n  client_ca_file: c\n",
            "is NoClientCert",
        ),
        (
            "tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: RequireAndVerifyClientCert\n",
            "needs client_ca_file",
        ),
        (
            "tls_server_config:\n  cert_file: a\n  key_file: b\n  max_version: TLS11\n",
            "not served",
        ),
        (
            "tls_server_config:\n  cert_file: a\n  key_file: b\n  min_version: TLS13\n  max_version: TLS12\n",
            "above max_version",
        ),
        (
            "tls_server_config:\n  cert_file: a\n  key_file: b\n  min_version: SSL3\n",
            "must be TLS10",
        ),
        (
            "tls_server_config:\n  cert_file: a\n  key_file: b\n  client_allowed_sans: [x]\n",
            "client_allowed_sans",
        ),
        (
            "http_server_config:\n  headers:\n    Server: linkmeter\n",
            "cannot be set",
        ),
        (
            "http_server_config:\n  headers:\n    X-Content-Type-Options: sniff\n",
            "must be nosniff",
        ),
        (
            "http_server_config:\n  headers:\n    X-Frame-Options: allow\n",
            "deny or sameorigin",
        ),
        (
            "http_server_config:\n  headers:\n    Content-Security-Policy: \"a\\nb\"\n",
            "not a header value",
        ),
        (
            "basic_auth_users:\n  prometheus: plaintext\n",
            "not a bcrypt hash",
        ),
        ("basic_auth_users:\n  'a:b': x\n", "without ':'"),
        (
            "tls_config:\n  cert_file: a\n",
            "not a valid web configuration",
        ),
        ("tls_server_config: [\n", "not a valid web configuration"),
    ];
    for (text, expected) in cases {
        let message = crate::Report(&parse(text).expect_err(text)).to_string();
        assert!(message.contains(expected), "{text:?}: {message}");
    }
    assert!(error("basic_auth_users: 3\n").contains("not a valid"));
    let inline = crate::Report(
        &parse("tls_server_config:\n  cert_file: a\n  key_file: b\n  cert: inline\n")
            .expect_err("inline"),
    )
    .to_string();
    assert!(inline.contains("unknown field `cert`"), "{inline}");
}

#[test]
fn old_minimum_versions_are_accepted_and_served_as_tls12() {
    let tls = parse("tls_server_config:\n  cert_file: a\n  key_file: b\n  min_version: TLS10\n")
        .expect("valid")
        .tls
        .expect("TLS");
    assert_eq!(tls.min_version, TlsVersion::Tls10);
    assert!(tls.prefer_server_cipher_suites, "the toolkit's default");
}

#[test]
fn the_old_name_of_require_any_client_cert_is_accepted() {
    let tls = parse("tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: RequireClientCert\n  client_ca_file: ca\n")
        .expect("valid")
        .tls
        .expect("TLS");
    assert_eq!(tls.client_auth, ClientAuth::RequireAny);
}

#[test]
fn the_tls_overlay_web_config_is_accepted_once_its_hash_is_set() {
    let shipped = include_str!("../../../../deploy/overlays/tls/web.yml");
    let message = crate::Report(&parse(shipped).expect_err("placeholder")).to_string();
    assert!(message.contains("not a bcrypt hash"), "{message}");
    let config = parse(&shipped.replace("REPLACE_WITH_BCRYPT_HASH", HASH)).expect("valid");
    let tls = config.tls.expect("TLS");
    assert_eq!(tls.cert_file, Path::new("/etc/linkmeter/tls/tls.crt"));
    assert_eq!(tls.key_file, Path::new("/etc/linkmeter/tls/tls.key"));
    assert_eq!(config.users.len(), 1);
}
