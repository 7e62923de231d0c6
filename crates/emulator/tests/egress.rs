//! The egress proxy hands absolute-form and CONNECT requests to the handoff with a fixed caller.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::{json, Value};
use subnetlock_emulator::egress::{
    start_egress_proxy, EgressContext, EgressProxy, Handoff, Scheme, UnparsedHandoff,
};
use subnetlock_emulator::tls::LocalCa;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Handoff that returns the context and the rewritten request as JSON.
fn echo_handoff() -> Handoff {
    Arc::new(|request: http::Request<Incoming>, context: EgressContext| {
        Box::pin(async move {
            let (head, body) = request.into_parts();
            let body = body.collect().await.expect("body").to_bytes();
            let request = http::Request::from_parts(head, body);
            let header = |name: &str| {
                request
                    .headers()
                    .get(name)
                    .and_then(|value| value.to_str().ok())
                    .map(str::to_string)
            };
            let scheme = match context.scheme {
                Scheme::Http => "http",
                Scheme::Https => "https",
            };
            let echo = json!({
                "caller": context.caller,
                "scheme": scheme,
                "host": context.host,
                "port": context.port,
                "method": request.method().as_str(),
                "uri": request.uri().to_string(),
                "host_header": header("host"),
                "proxy_authorization": header("proxy-authorization"),
                "proxy_connection": header("proxy-connection"),
                "x_caller": header("x-caller"),
                "body": String::from_utf8_lossy(request.body()),
            });
            http::Response::new(Bytes::from(echo.to_string()))
        })
    })
}

/// Requests in tunnels that hyper could not parse, as the unparsed-request handoff got them.
type UnparsedCalls = Arc<Mutex<Vec<(EgressContext, u16)>>>;

async fn start(caller: &str) -> (EgressProxy, Arc<LocalCa>) {
    let (proxy, ca, _) = start_recording_unparsed(caller).await;
    (proxy, ca)
}

/// Starts a proxy with the echo handoff and an unparsed-request handoff that collects its calls.
async fn start_recording_unparsed(caller: &str) -> (EgressProxy, Arc<LocalCa>, UnparsedCalls) {
    let ca = Arc::new(LocalCa::generate().expect("generate"));
    let bind: SocketAddr = "127.0.0.1:0".parse().expect("bind addr");
    let calls = UnparsedCalls::default();
    let unparsed_handoff: UnparsedHandoff = {
        let calls = Arc::clone(&calls);
        Arc::new(move |context, status| calls.lock().unwrap().push((context, status)))
    };
    let proxy = start_egress_proxy(
        bind,
        caller.to_string(),
        Arc::clone(&ca),
        echo_handoff(),
        unparsed_handoff,
    )
    .await
    .expect("start proxy");
    (proxy, ca, calls)
}

fn proxied_client(proxy: &EgressProxy, ca: &LocalCa) -> reqwest::Client {
    let proxy_url = format!("http://{}", proxy.addr());
    let root = reqwest::Certificate::from_pem(ca.ca_pem().as_bytes()).expect("ca pem");
    reqwest::Client::builder()
        .proxy(
            reqwest::Proxy::all(proxy_url)
                .expect("proxy url")
                .basic_auth("user", "secret"),
        )
        .tls_built_in_root_certs(false)
        .add_root_certificate(root)
        .build()
        .expect("client")
}

async fn echo_of(response: reqwest::Response) -> Value {
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    let text = response.text().await.expect("body");
    serde_json::from_str(&text).expect("json echo")
}

/// Sends raw bytes to the proxy and returns the whole response as text.
async fn raw_exchange(addr: SocketAddr, request: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut buffer = vec![0u8; 4096];
    let read = stream.read(&mut buffer).await.expect("read");
    String::from_utf8_lossy(&buffer[..read]).into_owned()
}

#[tokio::test]
async fn http_request_reaches_handoff() {
    let (proxy, ca) = start("app-a").await;
    let client = proxied_client(&proxy, &ca);

    let response = client
        .post("http://b.azurewebsites.net/api/x?code=k1")
        .header("Proxy-Connection", "keep-alive")
        .body("payload")
        .send()
        .await
        .expect("request");
    let echo = echo_of(response).await;

    assert_eq!(echo["caller"], "app-a");
    assert_eq!(echo["scheme"], "http");
    assert_eq!(echo["host"], "b.azurewebsites.net");
    assert_eq!(echo["port"], 80);
    assert_eq!(echo["method"], "POST");
    assert_eq!(echo["uri"], "/api/x?code=k1");
    assert_eq!(echo["host_header"], "b.azurewebsites.net");
    assert_eq!(echo["proxy_authorization"], Value::Null);
    assert_eq!(echo["proxy_connection"], Value::Null);
    assert_eq!(echo["body"], "payload");
}

#[tokio::test]
async fn https_request_tunnels_through_connect() {
    let (proxy, ca) = start("app-a").await;
    let client = proxied_client(&proxy, &ca);

    // Two requests on one client also exercise keep-alive inside the tunnel.
    for path in ["/api/one?code=k", "/api/two"] {
        let url = format!("https://b.azurewebsites.net{path}");
        let response = client
            .get(url)
            .header("Proxy-Authorization", "Basic Zm9yZ2Vk")
            .send()
            .await
            .expect("request");
        let echo = echo_of(response).await;

        assert_eq!(echo["caller"], "app-a");
        assert_eq!(echo["scheme"], "https");
        assert_eq!(echo["host"], "b.azurewebsites.net");
        assert_eq!(echo["port"], 443);
        assert_eq!(echo["uri"], path);
        assert_eq!(echo["host_header"], "b.azurewebsites.net");
        assert_eq!(echo["proxy_authorization"], Value::Null);
    }
}

#[tokio::test]
async fn forged_caller_header_ignored() {
    let (proxy, ca) = start("app-a").await;
    let client = proxied_client(&proxy, &ca);

    for url in [
        "http://b.azurewebsites.net/",
        "https://b.azurewebsites.net/",
    ] {
        let response = client
            .get(url)
            .header("X-Caller", "app-b")
            .send()
            .await
            .expect("request");
        let echo = echo_of(response).await;
        assert_eq!(echo["caller"], "app-a", "url {url}");
        assert_eq!(echo["x_caller"], "app-b", "url {url}");
    }
}

#[tokio::test]
async fn connect_other_port_forbidden() {
    let (proxy, _ca) = start("app-a").await;
    let response = raw_exchange(
        proxy.addr(),
        "CONNECT db.example:5432 HTTP/1.1\r\nHost: db.example:5432\r\n\r\n",
    )
    .await;

    assert!(response.starts_with("HTTP/1.1 403"), "response: {response}");
    assert!(
        response.contains("only forwards ports 80 and 443"),
        "response: {response}"
    );
}

#[tokio::test]
async fn origin_form_request_rejected() {
    let (proxy, _ca) = start("app-a").await;
    let response = raw_exchange(
        proxy.addr(),
        "GET /api/x HTTP/1.1\r\nHost: b.example\r\n\r\n",
    )
    .await;

    assert!(response.starts_with("HTTP/1.1 400"), "response: {response}");
    assert!(response.contains("absolute URI"), "response: {response}");
}

#[tokio::test]
async fn connect_without_port_rejected() {
    let (proxy, _ca) = start("app-a").await;
    let response = raw_exchange(
        proxy.addr(),
        "CONNECT b.example HTTP/1.1\r\nHost: b.example\r\n\r\n",
    )
    .await;

    assert!(response.starts_with("HTTP/1.1 400"), "response: {response}");
}

#[tokio::test]
async fn shutdown_closes_listener() {
    let (proxy, _ca) = start("app-a").await;
    let addr = proxy.addr();
    proxy.shutdown();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;

    assert!(TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn unparsed_request_in_tunnel_is_handed_off() {
    let (proxy, ca, calls) = start_recording_unparsed("app-a").await;
    let host = "b.azurewebsites.net";

    for (scheme, port) in [(Scheme::Http, 80), (Scheme::Https, 443)] {
        for (case, request, status) in common::unparsed_requests(host) {
            let before = calls.lock().unwrap().len();
            let tunnel = common::open_tunnel(proxy.addr(), &format!("{host}:{port}")).await;
            let response = match scheme {
                Scheme::Http => common::exchange(tunnel, &request).await,
                Scheme::Https => {
                    let tls = common::start_tls(tunnel, host, ca.ca_pem()).await;
                    common::exchange(tls, &request).await
                }
            };
            assert!(
                response.starts_with(&format!("HTTP/1.1 {status} ")),
                "{scheme} {case}: {response}"
            );

            let count = common::wait_for_count(|| calls.lock().unwrap().len(), before + 1).await;
            assert_eq!(count, before + 1, "{scheme} {case}: calls");
            let (context, told_status) = calls.lock().unwrap()[before].clone();
            assert_eq!(context.caller, "app-a", "{scheme} {case}");
            assert_eq!(context.scheme, scheme, "{scheme} {case}");
            assert_eq!(context.host, host, "{scheme} {case}");
            assert_eq!(context.port, port, "{scheme} {case}");
            assert_eq!(told_status, status, "{scheme} {case}");
        }
    }
}

#[tokio::test]
async fn unparsed_request_outside_tunnel_not_handed_off() {
    let (proxy, _ca, calls) = start_recording_unparsed("app-a").await;

    // On the proxy's own connection the request names no destination.
    let response = raw_exchange(
        proxy.addr(),
        "GET http://b.azurewebsites.net/a b HTTP/1.1\r\nHost: b.azurewebsites.net\r\n\r\n",
    )
    .await;
    assert!(
        response.starts_with("HTTP/1.1 400 "),
        "response: {response}"
    );

    // A request in a tunnel afterwards is handed off, and it is the only call.
    let tunnel = common::open_tunnel(proxy.addr(), "b.azurewebsites.net:80").await;
    let response = common::exchange(tunnel, b"GET /a b HTTP/1.1\r\nHost: b\r\n\r\n").await;
    assert!(
        response.starts_with("HTTP/1.1 400 "),
        "response: {response}"
    );
    common::wait_for_count(|| calls.lock().unwrap().len(), 1).await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let calls = calls.lock().unwrap();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0].0.host, "b.azurewebsites.net");
}
