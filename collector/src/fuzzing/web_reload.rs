//! The fuzz target `web_reload`: a reload of the web configuration from one file to another.

use std::path::Path;

use crate::web::{WebConfig, weakened};

/// Two web configuration files (exporter-toolkit YAML) split at `0xFF`, the one in force and
/// its replacement: the reload decision never panics, refuses exactly the replacements that
/// take away TLS, the client certificate requirement, their verification or basic auth, or —
/// TLS staying on — lower `min_version` or change the client CA file or the cipher suites, and
/// accepts the others (a file cut off while being rewritten is one such replacement).
pub fn web_reload(data: &[u8]) {
    let parts = super::fields(data);
    let dir = Path::new("/etc/linkmeter/web");
    let parse = |text: Option<&String>| WebConfig::parse(text?, dir).ok();
    let (Some(old), Some(new)) = (parse(parts.first()), parse(parts.get(1))) else {
        return;
    };
    let (old, new) = (old.protection(), new.protection());
    let both_tls = old.tls && new.tls;
    let lost = (old.tls && !new.tls)
        || (old.certificate_required && !new.certificate_required)
        || (old.certificate_verified && !new.certificate_verified)
        || (old.users && !new.users)
        || (both_tls
            && (new.min_version < old.min_version
                || new.client_ca != old.client_ca
                || new.cipher_suites != old.cipher_suites));
    assert_eq!(
        weakened(old, new).is_some(),
        lost,
        "{old:?} -> {new:?}: {:?}",
        weakened(old, new)
    );
    // Reloading a configuration onto itself never weakens it.
    assert!(weakened(new, new).is_none());
}
