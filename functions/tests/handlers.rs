//! Runs the two handler binaries on loopback ports and calls them over HTTP, with fake
//! function B servers (plain HTTP and HTTPS) and a CONNECT proxy written here.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::net::{Ipv4Addr, SocketAddr, TcpListener as StdTcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

const FUNCTION_A: &str = env!("CARGO_BIN_EXE_function-app-a");
const FUNCTION_B: &str = env!("CARGO_BIN_EXE_function-app-b");

/// Function key used in every target URL; it must never show up in logs or bodies.
const KEY: &str = "k3y-that-must-stay-secret";

#[tokio::test]
async fn function_b_returns_42() {
    let b = Handler::start(FUNCTION_B, &[]).await;

    let response = client().get(b.url("/api/function-b")).send().await.unwrap();

    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    assert_eq!(response.text().await.unwrap(), "42");
}

#[tokio::test]
async fn readiness_root_is_200() {
    for binary in [FUNCTION_A, FUNCTION_B] {
        let handler = Handler::start(binary, &[]).await;
        let response = client().get(handler.url("/")).send().await.unwrap();
        assert_eq!(response.status(), 200, "{binary}");
    }
}

#[tokio::test]
async fn unknown_route_is_404() {
    let b = Handler::start(FUNCTION_B, &[]).await;
    let response = client().get(b.url("/api/function-c")).send().await.unwrap();
    assert_eq!(response.status(), 404);
}

#[test]
fn missing_port_exits_2() {
    for binary in [FUNCTION_A, FUNCTION_B] {
        let output = Command::new(binary).env_clear().output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);

        assert_eq!(output.status.code(), Some(2), "{binary}: {stderr}");
        assert!(stderr.contains("missing environment variable `FUNCTIONS_CUSTOMHANDLER_PORT`"));
        assert!(
            stderr.contains("FUNCTIONS_CUSTOMHANDLER_PORT=7071"),
            "{stderr}"
        );
    }
}

#[test]
fn invalid_port_exits_2() {
    for value in ["seventy", "0", "70000"] {
        let output = Command::new(FUNCTION_B)
            .env_clear()
            .env("FUNCTIONS_CUSTOMHANDLER_PORT", value)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);

        assert_eq!(output.status.code(), Some(2), "{value}: {stderr}");
        assert!(
            stderr.contains(&format!("invalid port `{value}`")),
            "{stderr}"
        );
    }
}

#[cfg(unix)]
#[tokio::test]
async fn sigterm_exits_0() {
    let mut b = Handler::start(FUNCTION_B, &[]).await;

    let sent = Command::new("kill")
        .args(["-TERM", &b.child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());

    let status = b.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0));
    assert!(b.log().contains("SIGTERM received"), "{}", b.log());
}

#[tokio::test]
async fn function_a_reports_b_body() {
    let fake = FakeB::start(200, "7", None).await;
    let target = format!("http://127.0.0.1:{}/api/function-b?code={KEY}", fake.port);
    let a = Handler::start(FUNCTION_A, &[("target-url", &target)]).await;

    let (status, body) = get(&a, "/api/function-a").await;

    assert_eq!(status, 200);
    assert_eq!(body, "Function B returned 7");
    assert_eq!(
        fake.requests(),
        [format!("GET /api/function-b?code={KEY} HTTP/1.1")]
    );
    assert!(a.log().contains("code=***"), "{}", a.log());
    assert!(!a.log().contains(KEY), "{}", a.log());
}

#[tokio::test]
async fn function_a_reads_underscore_name() {
    let fake = FakeB::start(200, "7", None).await;
    let target = format!("http://127.0.0.1:{}/api/function-b?code={KEY}", fake.port);
    let a = Handler::start(FUNCTION_A, &[("target_url", &target)]).await;

    let (status, body) = get(&a, "/api/function-a").await;

    assert_eq!(status, 200);
    assert_eq!(body, "Function B returned 7");
}

#[tokio::test]
async fn function_a_b_forbidden_is_400() {
    let fake = FakeB::start(403, "Ip Forbidden", None).await;
    let target = format!("http://127.0.0.1:{}/api/function-b?code={KEY}", fake.port);
    let a = Handler::start(FUNCTION_A, &[("target-url", &target)]).await;

    let (status, body) = get(&a, "/api/function-a").await;

    assert_eq!(status, 400);
    assert_eq!(body, "Error calling function B: Ip Forbidden");
    assert!(!a.log().contains(KEY), "{}", a.log());
}

#[tokio::test]
async fn function_a_missing_setting_is_500() {
    let a = Handler::start(FUNCTION_A, &[]).await;

    let (status, body) = get(&a, "/api/function-a").await;

    assert_eq!(status, 500);
    assert!(
        body.starts_with("missing app setting `target-url`"),
        "{body}"
    );
    assert!(
        body.contains("az functionapp config appsettings set"),
        "{body}"
    );
}

#[tokio::test]
async fn function_a_unreachable_is_400() {
    let closed_port = free_port();
    let target = format!("http://127.0.0.1:{closed_port}/api/function-b?code={KEY}");
    let a = Handler::start(FUNCTION_A, &[("target-url", &target)]).await;

    let (status, body) = get(&a, "/api/function-a").await;

    assert_eq!(status, 400);
    assert!(
        body.starts_with("Error calling function B: connection failed for `http://127.0.0.1:"),
        "{body}"
    );
    assert!(body.contains("code=***"), "{body}");
    assert!(!body.contains(KEY), "{body}");
    assert!(!a.log().contains(KEY), "{}", a.log());
}

#[tokio::test]
async fn function_a_https_through_proxy() {
    let pki = TestPki::new();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = pki.write_ca(dir.path());

    let fake = FakeB::start(200, "7", Some(pki.acceptor())).await;
    let proxy = ConnectProxy::start().await;
    let target = format!("https://localhost:{}/api/function-b?code={KEY}", fake.port);
    let proxy_url = format!("http://127.0.0.1:{}", proxy.port);

    let a = Handler::start(
        FUNCTION_A,
        &[
            ("target-url", &target),
            ("HTTPS_PROXY", &proxy_url),
            ("SSL_CERT_FILE", ca_file.to_str().unwrap()),
        ],
    )
    .await;

    let (status, body) = get(&a, "/api/function-a").await;

    assert_eq!(status, 200, "{body}\n{}", a.log());
    assert_eq!(body, "Function B returned 7");
    assert_eq!(
        proxy.requests(),
        [format!("CONNECT localhost:{} HTTP/1.1", fake.port)]
    );
    assert_eq!(
        fake.requests(),
        [format!("GET /api/function-b?code={KEY} HTTP/1.1")]
    );
}

#[tokio::test]
async fn function_a_https_unknown_ca_is_400() {
    let pki = TestPki::new();
    let other = TestPki::new();
    let dir = tempfile::tempdir().unwrap();
    let other_ca_file = other.write_ca(dir.path());

    let fake = FakeB::start(200, "7", Some(pki.acceptor())).await;
    let target = format!("https://localhost:{}/api/function-b?code={KEY}", fake.port);
    let a = Handler::start(
        FUNCTION_A,
        &[
            ("target-url", &target),
            ("SSL_CERT_FILE", other_ca_file.to_str().unwrap()),
        ],
    )
    .await;

    let (status, body) = get(&a, "/api/function-a").await;

    assert_eq!(status, 400);
    assert!(body.starts_with("Error calling function B: "), "{body}");
    assert!(body.to_lowercase().contains("certificate"), "{body}");
    assert!(fake.requests().is_empty());
}

#[tokio::test]
async fn function_a_no_proxy_bypasses_proxy() {
    let pki = TestPki::new();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = pki.write_ca(dir.path());

    let fake = FakeB::start(200, "7", Some(pki.acceptor())).await;
    let proxy = ConnectProxy::start().await;
    let target = format!("https://localhost:{}/api/function-b?code={KEY}", fake.port);
    let proxy_url = format!("http://127.0.0.1:{}", proxy.port);

    let a = Handler::start(
        FUNCTION_A,
        &[
            ("target-url", &target),
            ("HTTPS_PROXY", &proxy_url),
            ("NO_PROXY", "localhost"),
            ("SSL_CERT_FILE", ca_file.to_str().unwrap()),
        ],
    )
    .await;

    let (status, body) = get(&a, "/api/function-a").await;

    assert_eq!(status, 200, "{body}");
    assert!(proxy.requests().is_empty());
    assert_eq!(fake.requests().len(), 1);
}

// ---------------------------------------------------------------------------------------------
// Helpers

/// A running handler binary; killed when dropped.
struct Handler {
    child: Child,
    port: u16,
    log_path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Handler {
    /// Starts `binary` with a clean environment plus `env`, and waits until `GET /` returns 200.
    async fn start(binary: &str, env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let log_path = dir.path().join("stderr.log");
        let port = free_port();

        let child = Command::new(binary)
            .env_clear()
            .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log_path).unwrap())
            .spawn()
            .unwrap();

        let mut handler = Self {
            child,
            port,
            log_path,
            _dir: dir,
        };
        handler.wait_ready().await;
        handler
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);

        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("handler exited early with {status}:\n{}", self.log());
            }
            if let Ok(response) = client().get(self.url("/")).send().await {
                if response.status() == 200 {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("handler not ready after 20 s:\n{}", self.log());
    }

    fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;

        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("handler still running after {limit:?}:\n{}", self.log());
    }
}

impl Drop for Handler {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A fake function B that responds to every request with one status and body.
struct FakeB {
    port: u16,
    requests: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeB {
    async fn start(status: u16, body: &'static str, tls: Option<TlsAcceptor>) -> Self {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));

        let seen = Arc::clone(&requests);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let seen = Arc::clone(&seen);
                let tls = tls.clone();

                tokio::spawn(async move {
                    match tls {
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(stream).await {
                                respond(stream, status, body, &seen).await;
                            }
                        }
                        None => respond(stream, status, body, &seen).await,
                    }
                });
            }
        });

        Self {
            port,
            requests,
            task,
        }
    }

    /// Request lines received so far.
    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for FakeB {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads one request head, records its request line and writes a `Connection: close` response.
async fn respond<S>(mut stream: S, status: u16, body: &str, seen: &Mutex<Vec<String>>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let Some(request_line) = read_head(&mut stream).await else {
        return;
    };
    seen.lock().unwrap().push(request_line);

    let response = format!(
        "HTTP/1.1 {status} Fake\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\
         connection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// A minimal HTTP CONNECT proxy that only tunnels to loopback addresses.
struct ConnectProxy {
    port: u16,
    requests: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl ConnectProxy {
    async fn start() -> Self {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));

        let seen = Arc::clone(&requests);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(tunnel(stream, Arc::clone(&seen)));
            }
        });

        Self {
            port,
            requests,
            task,
        }
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for ConnectProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn tunnel(mut client: TcpStream, seen: Arc<Mutex<Vec<String>>>) {
    let Some(request_line) = read_head(&mut client).await else {
        return;
    };
    seen.lock().unwrap().push(request_line.clone());

    let Some(upstream) = loopback_target(&request_line) else {
        let _ = client
            .write_all(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n")
            .await;
        return;
    };
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        let _ = client
            .write_all(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n")
            .await;
        return;
    };

    if client
        .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
        .await
        .is_err()
    {
        return;
    }
    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
}

/// Maps `CONNECT localhost:<port> HTTP/1.1` (or a 127.0.0.1 target) to a loopback address,
/// so the proxy never opens a connection off the machine.
fn loopback_target(request_line: &str) -> Option<SocketAddr> {
    let mut parts = request_line.split(' ');
    if parts.next()? != "CONNECT" {
        return None;
    }
    let (host, port) = parts.next()?.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;

    match host {
        "localhost" | "127.0.0.1" => Some(SocketAddr::from((Ipv4Addr::LOCALHOST, port))),
        _ => None,
    }
}

/// Reads until the blank line that ends an HTTP head and returns the request line.
async fn read_head<S: AsyncRead + Unpin>(stream: &mut S) -> Option<String> {
    let mut head = Vec::new();
    let mut buffer = [0_u8; 1024];

    while !head.windows(4).any(|window| window == b"\r\n\r\n") {
        let read = stream.read(&mut buffer).await.ok()?;
        if read == 0 || head.len() > 16 * 1024 {
            return None;
        }
        head.extend_from_slice(&buffer[..read]);
    }

    let text = String::from_utf8_lossy(&head);
    text.lines().next().map(str::to_owned)
}

/// A throwaway CA and a `localhost` server certificate signed by it.
struct TestPki {
    ca_pem: String,
    chain: Vec<rustls::pki_types::CertificateDer<'static>>,
    key_der: Vec<u8>,
}

impl TestPki {
    fn new() -> Self {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "subnetlock test CA");
        let ca = ca_params.self_signed(&ca_key).unwrap();

        let leaf_key = KeyPair::generate().unwrap();
        let mut leaf_params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        leaf_params
            .distinguished_name
            .push(DnType::CommonName, "fake function B");
        let leaf = leaf_params.signed_by(&leaf_key, &ca, &ca_key).unwrap();

        Self {
            ca_pem: ca.pem(),
            chain: vec![leaf.der().clone(), ca.der().clone()],
            key_der: leaf_key.serialize_der(),
        }
    }

    fn write_ca(&self, dir: &Path) -> PathBuf {
        let path = dir.join("ca.pem");
        fs::write(&path, &self.ca_pem).unwrap();
        path
    }

    fn acceptor(&self) -> TlsAcceptor {
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()));
        // The workspace enables only rustls' `ring` feature, so `builder()` picks ring.
        let config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(self.chain.clone(), key)
            .unwrap();
        TlsAcceptor::from(Arc::new(config))
    }
}

/// Test-side HTTP client; never uses a proxy from the test's own environment.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(45))
        .build()
        .unwrap()
}

async fn get(handler: &Handler, path: &str) -> (u16, String) {
    let response = client().get(handler.url(path)).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

/// Returns a loopback port that was free a moment ago, below Linux's default ephemeral range
/// (32768 to 60999). The mock servers of parallel tests bind port 0 and so get ephemeral
/// ports: a port taken from that range here could be handed to one of them before the handler
/// binds it, and the handler would then fail to start while its readiness probe reached the
/// mock. Each call of this process takes a different port.
fn free_port() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    // A base that differs between runs of the test binary, so that a port left in TIME_WAIT
    // by an earlier run is rarely tried first.
    let base = 20_000 + (std::process::id() % 5_000) as u16;
    for _ in 0..10_000 {
        let offset = NEXT.fetch_add(1, Ordering::Relaxed) % 10_000;
        let port = 20_000 + (base - 20_000 + offset) % 10_000;
        if StdTcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port between 20000 and 29999");
}
