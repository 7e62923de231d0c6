//! Opening CONNECT tunnels through an egress proxy and sending raw bytes inside them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// Maximum time one exchange in a tunnel may take.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(10);

/// Requests that hyper cannot parse, each with the status hyper responds with.
pub fn unparsed_requests(host: &str) -> Vec<(&'static str, Vec<u8>, u16)> {
    // hyper accepts a target of at most 65,534 bytes (its `MAX_URI_LEN`).
    let long_target = format!(
        "GET /{} HTTP/1.1\r\nHost: {host}\r\n\r\n",
        "a".repeat(70_000)
    );
    // More than hyper's limit of 100 header lines.
    let mut many_headers = format!("GET / HTTP/1.1\r\nHost: {host}\r\n");
    for index in 0..120 {
        many_headers.push_str(&format!("x-header-{index}: {index}\r\n"));
    }
    many_headers.push_str("\r\n");
    // A head longer than hyper's read buffer of 417,792 bytes (8,192 + 100 × 4,096).
    let long_header = format!(
        "GET / HTTP/1.1\r\nHost: {host}\r\nx-long: {}\r\n\r\n",
        "b".repeat(500 * 1024)
    );
    vec![
        (
            "space in the request target",
            format!("GET /a b HTTP/1.1\r\nHost: {host}\r\n\r\n").into_bytes(),
            400,
        ),
        ("target over 64 KiB", long_target.into_bytes(), 414),
        ("more than 100 header lines", many_headers.into_bytes(), 431),
        ("head over 400 KiB", long_header.into_bytes(), 431),
    ]
}

/// Connects to the proxy at `proxy` and opens a CONNECT tunnel to `authority` (`host:port`).
pub async fn open_tunnel(proxy: SocketAddr, authority: &str) -> TcpStream {
    let mut stream = TcpStream::connect(proxy).await.expect("connect to proxy");
    let connect = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n");
    stream
        .write_all(connect.as_bytes())
        .await
        .expect("write CONNECT");

    // The proxy sends nothing after its response head until the client speaks, so reading
    // byte by byte up to the blank line leaves the tunnel untouched.
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let byte = stream.read_u8().await.expect("read CONNECT response");
        head.push(byte);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 200"), "CONNECT response: {head}");
    stream
}

/// Starts TLS for `host` inside an open tunnel, trusting only the CA in `ca_pem`.
// The workspace enables only the *ring* provider for rustls, which rustls 0.23.48 deprecates
// for its lack of post-quantum key exchange. Loopback tests do not need it.
#[allow(deprecated)]
pub async fn start_tls(tunnel: TcpStream, host: &str, ca_pem: &str) -> TlsStream<TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    for certificate in rustls_pemfile::certs(&mut ca_pem.as_bytes()) {
        roots
            .add(certificate.expect("CA certificate"))
            .expect("add CA certificate");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = rustls::pki_types::ServerName::try_from(host.to_owned()).expect("server name");
    connector
        .connect(name, tunnel)
        .await
        .expect("TLS handshake in the tunnel")
}

/// Sends `request` and returns everything the server sends until it closes the connection.
///
/// Writing and reading run together, because the server may respond and close before it has
/// read all of a long request. Errors after the server closed (a reset, a write to a closed
/// connection) end the exchange, and what was read until then is returned.
pub async fn exchange<S>(stream: S, request: &[u8]) -> String
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mut reader, mut writer) = tokio::io::split(stream);
    let write = async {
        // An error means the server closed the connection, and the response shows why.
        let _ = writer.write_all(request).await;
    };
    let read = async {
        let mut response = Vec::new();
        let mut buffer = [0u8; 8192];
        loop {
            match reader.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(read) => response.extend_from_slice(&buffer[..read]),
            }
        }
        response
    };
    let (_, response) = tokio::time::timeout(EXCHANGE_TIMEOUT, async { tokio::join!(write, read) })
        .await
        .expect("the server closes the connection within 10 seconds");
    String::from_utf8_lossy(&response).into_owned()
}

/// Waits until `count` returns at least `expected`, for 5 seconds at most, and returns the
/// last count.
pub async fn wait_for_count(count: impl Fn() -> usize, expected: usize) -> usize {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let current = count();
        if current >= expected || tokio::time::Instant::now() >= deadline {
            return current;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
