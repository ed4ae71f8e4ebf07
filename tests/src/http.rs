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
    let mut response = call(address, path, query, headers)?;
    let status = response.status().as_u16();
    let content_type = header(&response, "content-type");
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
        let mut response = call(address, path, &[], headers)?;
        let encoding = header(&response, "content-encoding");
        let body = response
            .body_mut()
            .with_config()
            .limit(256 << 20)
            .read_to_vec()
            .ok()?;
        Some((response.status().as_u16(), encoding, body))
    })
}

/// Sends the request from the calling thread's namespace; `None` when nothing answers.
fn call(
    address: &str,
    path: &str,
    query: &[(&str, &str)],
    headers: &[(&str, &str)],
) -> Option<ureq::http::Response<ureq::Body>> {
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
    request.call().ok()
}

fn header(response: &ureq::http::Response<ureq::Body>, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}
