//! The one HTTP client of the tests (and of the benchmark and demo): a GET from inside a
//! network namespace. Connections are opened by the calling thread, so they start in the
//! namespace the thread is in.

use std::time::Duration;

use crate::netns::NetNs;

/// An HTTP response.
#[derive(Clone, Debug)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// `Content-Type`, if any.
    pub content_type: Option<String>,
    /// Body, as text.
    pub body: String,
}

/// `GET http://{address}{path}` from inside `ns`, with `query` parameters and `headers`;
/// `None` when nothing answers (yet).
pub fn get(
    ns: &NetNs,
    address: &str,
    path: &str,
    query: &[(&str, &str)],
    headers: &[(&str, &str)],
) -> Option<Response> {
    ns.within(|| get_here(address, path, query, headers))
}

/// As [`get`], from the calling thread's namespace.
pub fn get_here(
    address: &str,
    path: &str,
    query: &[(&str, &str)],
    headers: &[(&str, &str)],
) -> Option<Response> {
    // A fresh agent per request: pooled connections would outlive the namespace switch.
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    let mut request = agent.get(format!("http://{address}{path}"));
    for (key, value) in query {
        request = request.query(*key, *value);
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let mut response = request.call().ok()?;
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = response
        .body_mut()
        .with_config()
        .limit(256 << 20)
        .read_to_string()
        .ok()?;
    Some(Response {
        status,
        content_type,
        body,
    })
}

/// `GET http://<address><path>` inside `ns` with `headers`, the body as raw bytes (a compressed
/// body stays compressed); (status, `Content-Encoding`, body).
pub fn get_bytes(
    ns: &NetNs,
    address: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Option<(u16, Option<String>, Vec<u8>)> {
    ns.within(|| {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        let mut request = agent.get(format!("http://{address}{path}"));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let mut response = request.call().ok()?;
        let encoding = response
            .headers()
            .get("content-encoding")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = response
            .body_mut()
            .with_config()
            .limit(256 << 20)
            .read_to_vec()
            .ok()?;
        Some((response.status().as_u16(), encoding, body))
    })
}
