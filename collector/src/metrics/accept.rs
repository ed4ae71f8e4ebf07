//! The lists of preferences HTTP clients send (`Accept`, `Accept-Encoding`): items with quality
//! values (RFC 9110, section 12.4.2).

/// The items of `header`, each with its quality: the item's first token, lowercased (a media
/// type or a coding, without its parameters), and its `q` (1 when absent, clamped to 0..=1;
/// an unreadable one counts as absent). Empty items are skipped.
pub(super) fn weighted(header: &str) -> impl Iterator<Item = (String, f32)> + '_ {
    header.split(',').filter_map(|item| {
        let mut parts = item.split(';');
        let token = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        if token.is_empty() {
            return None;
        }
        let q = parts
            .filter_map(|p| p.trim().strip_prefix("q="))
            .find_map(|v| v.trim().parse::<f32>().ok())
            .filter(|q| q.is_finite())
            .map_or(1.0, |q| q.clamp(0.0, 1.0));
        Some((token, q))
    })
}
