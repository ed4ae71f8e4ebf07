//! TLS for the web configuration tests: a throwaway PKI (a CA, server and client certificates
//! written as PEM files) and a minimal HTTPS/1.1 client over rustls that can present a client
//! certificate, send basic auth and report the server certificate it was given.

use std::{
    io::{Read as _, Write as _},
    net::TcpStream,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa, KeyPair,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject as _};

/// A CA with a server certificate (for `127.0.0.1` and `localhost`) and a client certificate,
/// as PEM files in a directory.
pub struct Pki {
    ca: CertifiedIssuer<'static, KeyPair>,
    /// The directory of the files.
    pub dir: PathBuf,
}

impl std::fmt::Debug for Pki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pki").field("dir", &self.dir).finish()
    }
}

impl Pki {
    /// Creates `dir` with `ca.crt`, `server.crt`/`server.key` and `client.crt`/`client.key`.
    pub fn new(dir: &Path) -> Self {
        std::fs::create_dir_all(dir).expect("pki dir");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "linkmeter test CA");
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("ca key"))
            .expect("self-signed CA");
        std::fs::write(dir.join("ca.crt"), ca.pem()).expect("write ca.crt");
        let pki = Self {
            ca,
            dir: dir.to_owned(),
        };
        pki.issue_server("server", "first");
        pki.issue(
            "client",
            &["prometheus"],
            ExtendedKeyUsagePurpose::ClientAuth,
            "client",
        );
        pki
    }

    /// Issues a server certificate for `127.0.0.1` and `localhost` with common name `cn` as
    /// `<name>.crt`/`<name>.key`; returns the certificate (DER).
    pub fn issue_server(&self, name: &str, cn: &str) -> Vec<u8> {
        self.issue(
            name,
            &["127.0.0.1", "localhost"],
            ExtendedKeyUsagePurpose::ServerAuth,
            cn,
        )
    }

    fn issue(
        &self,
        name: &str,
        sans: &[&str],
        usage: ExtendedKeyUsagePurpose,
        cn: &str,
    ) -> Vec<u8> {
        let sans: Vec<String> = sans.iter().map(|s| (*s).to_owned()).collect();
        let mut params = CertificateParams::new(sans).expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.ca).expect("sign");
        std::fs::write(self.dir.join(format!("{name}.crt")), cert.pem()).expect("write crt");
        std::fs::write(self.dir.join(format!("{name}.key")), key.serialize_pem())
            .expect("write key");
        cert.der().to_vec()
    }

    /// `dir/<name>`.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// What an HTTPS request got.
#[derive(Debug)]
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// Response headers, names in lower case.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
    /// The server's certificate (DER).
    pub server_cert: Vec<u8>,
}

/// How an HTTPS request is made.
#[derive(Debug, Default)]
pub struct Request<'a> {
    /// Present `client.crt`/`client.key` of the PKI.
    pub client_cert: bool,
    /// Basic auth user and password.
    pub basic_auth: Option<(&'a str, &'a str)>,
    /// Extra request headers.
    pub headers: &'a [(&'a str, &'a str)],
}

/// `GET https://{address}{path}` from the calling thread's namespace, trusting the PKI's CA;
/// an error text when the connection, the handshake or the HTTP exchange fails.
pub fn get(pki: &Pki, address: &str, path: &str, request: &Request<'_>) -> Result<Answer, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    let ca = CertificateDer::from_pem_file(pki.path("ca.crt")).map_err(|e| e.to_string())?;
    roots.add(ca).map_err(|e| e.to_string())?;
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    let config = if request.client_cert {
        let cert =
            CertificateDer::from_pem_file(pki.path("client.crt")).map_err(|e| e.to_string())?;
        let key =
            PrivateKeyDer::from_pem_file(pki.path("client.key")).map_err(|e| e.to_string())?;
        builder
            .with_client_auth_cert(vec![cert], key)
            .map_err(|e| e.to_string())?
    } else {
        builder.with_no_client_auth()
    };
    let host = address
        .rsplit_once(':')
        .map_or(address, |(h, _)| h)
        .to_owned();
    let name = ServerName::try_from(host.clone()).map_err(|e| e.to_string())?;
    let conn = rustls::ClientConnection::new(Arc::new(config), name).map_err(|e| e.to_string())?;
    let tcp = TcpStream::connect(address).map_err(|e| format!("connect: {e}"))?;
    tcp.set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let mut head = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    if let Some((user, password)) = request.basic_auth {
        use base64::Engine as _;
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        head.push_str(&format!("Authorization: Basic {token}\r\n"));
    }
    for (name, value) in request.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    tls.write_all(head.as_bytes())
        .map_err(|e| format!("send: {e}"))?;
    let mut raw = Vec::new();
    match tls.read_to_end(&mut raw) {
        Ok(_) => {}
        // Servers may close without close_notify after `Connection: close`.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => {}
        Err(e) => return Err(format!("receive: {e}")),
    }
    let server_cert = tls
        .conn
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.to_vec())
        .unwrap_or_default();
    let mut answer = parse(&raw).ok_or_else(|| format!("not an HTTP response: {raw:?}"))?;
    answer.server_cert = server_cert;
    Ok(answer)
}

/// Parses an HTTP/1.1 response read to the end.
fn parse(raw: &[u8]) -> Option<Answer> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Some(Answer {
        status,
        headers,
        body: raw[end + 4..].to_vec(),
        server_cert: Vec::new(),
    })
}

impl Answer {
    /// A response header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}
