//! The web configuration of the tests: a PKI's certificates published like a Kubernetes Secret,
//! TLS with client certificates and basic auth, and connections from a chosen source address.

use std::net::TcpStream;

use crate::tls::Pki;

/// The basic auth user of the test configurations.
pub const USER: &str = "prometheus";
/// Its password.
pub const PASSWORD: &str = "s3cret-pass";

/// Mounts the PKI's `<name>.crt`/`<name>.key` as a Kubernetes Secret volume does, under
/// `secret/`: `server.crt` → `..data/server.crt`, `..data` → `..<version>`; a later version
/// swaps `..data` atomically.
pub fn publish_secret(pki: &Pki, name: &str, version: &str) {
    let secret = pki.path("secret");
    let dir = secret.join(format!("..{version}"));
    std::fs::create_dir_all(&dir).expect("secret version dir");
    for ext in ["crt", "key"] {
        std::fs::copy(
            pki.path(&format!("{name}.{ext}")),
            dir.join(format!("server.{ext}")),
        )
        .expect("copy into the secret");
        let link = secret.join(format!("server.{ext}"));
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(format!("..data/server.{ext}"), &link).expect("link");
        }
    }
    let staged = secret.join("..data_tmp");
    std::os::unix::fs::symlink(format!("..{version}"), &staged).expect("stage ..data");
    std::fs::rename(&staged, secret.join("..data")).expect("swap ..data");
}

/// Writes the web configuration: TLS requiring a client certificate of the PKI's CA, one user;
/// the server certificate comes from a Secret-like directory.
pub fn write_web_config(pki: &Pki) -> std::path::PathBuf {
    publish_secret(pki, "server", "v1");
    let hash = bcrypt::hash(PASSWORD, 4).expect("bcrypt");
    let path = pki.path("web.yml");
    std::fs::write(
        &path,
        format!(
            "tls_server_config:\n  cert_file: secret/server.crt\n  key_file: secret/server.key\n  \
             client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n  \
             min_version: TLS12\nhttp_server_config:\n  headers:\n    \
             X-Content-Type-Options: nosniff\nbasic_auth_users:\n  {USER}: '{hash}'\n"
        ),
    )
    .expect("write web.yml");
    path
}

/// A TCP connection to `to` from the local address `from` (loopback answers any 127/8).
pub fn connect_from(from: std::net::Ipv4Addr, to: &str) -> TcpStream {
    use std::os::fd::AsRawFd as _;

    use nix::sys::socket::{AddressFamily, SockFlag, SockType, SockaddrIn, bind, connect, socket};
    let to: std::net::SocketAddrV4 = to.parse().expect("IPv4 address");
    let fd = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .expect("socket");
    bind(
        fd.as_raw_fd(),
        &SockaddrIn::from(std::net::SocketAddrV4::new(from, 0)),
    )
    .expect("bind");
    connect(fd.as_raw_fd(), &SockaddrIn::from(to)).expect("connect");
    TcpStream::from(fd)
}
