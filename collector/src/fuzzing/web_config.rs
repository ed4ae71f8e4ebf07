//! The fuzz target `web_config`: the exporter-toolkit web configuration file.

use std::path::Path;

/// The web configuration file (exporter-toolkit YAML), as `--web-config-file` reads it: errors,
/// never panics; an accepted configuration has its paths under the file's directory (or as
/// written when absolute), users without `:`, bcrypt hashes that parse, and only the toolkit's
/// five headers.
pub fn web_config(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let dir = Path::new("/etc/linkmeter/web");
    let Ok(config) = crate::web::WebConfig::parse(&text, dir) else {
        return;
    };
    if let Some(tls) = &config.tls {
        for file in tls.files() {
            assert!(file.is_absolute(), "{file:?} not resolved against {dir:?}");
        }
        assert!(tls.min_version <= tls.max_version);
    }
    for (user, hash) in &config.users {
        assert!(!user.is_empty() && !user.contains(':'), "{user:?}");
        assert!(hash.parse::<bcrypt::HashParts>().is_ok(), "{hash:?}");
    }
    for (name, _) in &config.headers {
        assert!(
            [
                "strict-transport-security",
                "x-content-type-options",
                "x-frame-options",
                "x-xss-protection",
                "content-security-policy",
            ]
            .contains(&name.as_str()),
            "{name}"
        );
    }
}
