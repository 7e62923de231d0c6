//! The local CA's certificates are accepted by a client that trusts only the CA.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use subnetlock_emulator::tls::LocalCa;
use tokio::net::TcpListener;

/// Serves `hello from <sni>` over TLS on 127.0.0.1 until the test ends.
async fn serve_tls(config: Arc<rustls::ServerConfig>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let acceptor = tokio_rustls::TlsAcceptor::from(config);

    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let sni = tls.get_ref().1.server_name().unwrap_or("none").to_string();
                let service = service_fn(move |_request| {
                    let body = format!("hello from {sni}");
                    async move {
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                            Bytes::from(body),
                        )))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    addr
}

fn client_trusting(ca_pem: &str, host: &str, addr: SocketAddr) -> reqwest::Client {
    let root = reqwest::Certificate::from_pem(ca_pem.as_bytes()).expect("ca pem");
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(root)
        .resolve(host, addr)
        .no_proxy()
        .build()
        .expect("client")
}

#[tokio::test]
async fn leaf_trusted_by_ca() {
    let ca = LocalCa::generate().expect("generate");
    let config = ca.server_config_for("x.azurewebsites.net").expect("config");
    let addr = serve_tls(config).await;

    let client = client_trusting(ca.ca_pem(), "x.azurewebsites.net", addr);
    let url = format!("https://x.azurewebsites.net:{}/", addr.port());
    let response = client.get(url).send().await.expect("request");

    assert_eq!(response.status(), reqwest::StatusCode::OK);
    assert_eq!(
        response.text().await.expect("body"),
        "hello from x.azurewebsites.net"
    );
}

#[tokio::test]
async fn leaf_rejected_for_other_name() {
    let ca = LocalCa::generate().expect("generate");
    let config = ca.server_config_for("x.azurewebsites.net").expect("config");
    let addr = serve_tls(config).await;

    let client = client_trusting(ca.ca_pem(), "y.azurewebsites.net", addr);
    let url = format!("https://y.azurewebsites.net:{}/", addr.port());
    assert!(client.get(url).send().await.is_err());
}

#[tokio::test]
async fn leaf_rejected_by_other_ca() {
    let ca = LocalCa::generate().expect("generate");
    let other = LocalCa::generate().expect("generate other");
    let config = ca.server_config_for("x.azurewebsites.net").expect("config");
    let addr = serve_tls(config).await;

    let client = client_trusting(other.ca_pem(), "x.azurewebsites.net", addr);
    let url = format!("https://x.azurewebsites.net:{}/", addr.port());
    assert!(client.get(url).send().await.is_err());
}

#[tokio::test]
async fn sni_config_issues_per_name() {
    let ca = Arc::new(LocalCa::generate().expect("generate"));
    let addr = serve_tls(ca.sni_server_config()).await;

    for host in ["a.azurewebsites.net", "b.scm.azurewebsites.net"] {
        let client = client_trusting(ca.ca_pem(), host, addr);
        let url = format!("https://{host}:{}/", addr.port());
        let response = client.get(url).send().await.expect("request");
        assert_eq!(
            response.text().await.expect("body"),
            format!("hello from {host}")
        );
    }
}
