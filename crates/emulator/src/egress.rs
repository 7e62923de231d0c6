//! Per-caller forward proxy that gives a handler process its network identity.
//!
//! Each emulated app gets its own proxy listener, and the handler process is pointed at it
//! through `HTTP_PROXY`/`HTTPS_PROXY`. Because the listener belongs to one app, the caller
//! identity is fixed when the proxy starts and nothing a client sends can change it. The proxy
//! does not open outbound connections. Every request goes to the [`Handoff`], which decides
//! how the emulated network responds to it. A request in a CONNECT tunnel that hyper cannot
//! parse gets hyper's response, and the [`UnparsedHandoff`] receives its destination and status.

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::tls::LocalCa;

/// Callback that returns the response to one proxied request on behalf of the emulated network.
/// It is called as soon as the request's head is read, with the body still on the connection,
/// so that it can decide from the head before the caller may go away.
pub type Handoff = Arc<
    dyn Fn(
            Request<Incoming>,
            EgressContext,
        ) -> Pin<Box<dyn Future<Output = Response<Bytes>> + Send>>
        + Send
        + Sync,
>;

/// Callback for a request in a CONNECT tunnel that hyper could not parse and responded to
/// itself. It receives the tunnel's destination and the status hyper sent (400, 414 or 431).
/// The [`Handoff`] is not called for such a request.
pub type UnparsedHandoff = Arc<dyn Fn(EgressContext, u16) + Send + Sync>;

/// URI scheme the client used for the destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scheme::Http => f.write_str("http"),
            Scheme::Https => f.write_str("https"),
        }
    }
}

/// Destination of a proxied request and the app that sent it.
#[derive(Clone, Debug)]
pub struct EgressContext {
    /// Identity fixed when the proxy started, never taken from the request.
    pub caller: String,
    pub scheme: Scheme,
    /// Destination host, lowercased, without IPv6 brackets.
    pub host: String,
    pub port: u16,
}

/// A running proxy listener. Dropping it stops the listener and every open connection.
pub struct EgressProxy {
    addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    accept_task: JoinHandle<()>,
}

impl EgressProxy {
    /// Returns the bound address, e.g. for `HTTP_PROXY=http://<addr>`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting connections and closes the open ones.
    pub fn shutdown(&self) {
        self.shutdown.send_replace(true);
        self.accept_task.abort();
    }
}

impl Drop for EgressProxy {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl fmt::Debug for EgressProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EgressProxy")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

/// Binds `bind` and serves HTTP/1.1 proxy requests from `caller` until shut down.
pub async fn start_egress_proxy(
    bind: SocketAddr,
    caller: String,
    ca: Arc<LocalCa>,
    handoff: Handoff,
    unparsed_handoff: UnparsedHandoff,
) -> std::io::Result<EgressProxy> {
    let listener = TcpListener::bind(bind).await?;
    let addr = listener.local_addr()?;
    let (shutdown, shutdown_rx) = watch::channel(false);

    let shared = Arc::new(ProxyShared {
        caller,
        ca,
        handoff,
        unparsed_handoff,
        shutdown: shutdown_rx,
    });
    tracing::debug!(caller = %shared.caller, %addr, "egress proxy listening");
    let accept_task = tokio::spawn(accept_loop(listener, shared));

    Ok(EgressProxy {
        addr,
        shutdown,
        accept_task,
    })
}

/// Headers that describe one hop and must not reach the destination.
const HOP_BY_HOP: [&str; 9] = [
    "proxy-authorization",
    "proxy-authenticate",
    "proxy-connection",
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Time allowed for the client's TLS handshake inside a CONNECT tunnel.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

struct ProxyShared {
    caller: String,
    ca: Arc<LocalCa>,
    handoff: Handoff,
    unparsed_handoff: UnparsedHandoff,
    shutdown: watch::Receiver<bool>,
}

impl ProxyShared {
    fn context_for(&self, destination: &Destination) -> EgressContext {
        EgressContext {
            caller: self.caller.clone(),
            scheme: destination.scheme,
            host: destination.host.clone(),
            port: destination.port,
        }
    }
}

/// A destination parsed from a request target.
struct Destination {
    scheme: Scheme,
    host: String,
    port: u16,
}

async fn accept_loop(listener: TcpListener, shared: Arc<ProxyShared>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // Accept errors such as EMFILE are transient, so back off instead of spinning.
                tracing::warn!(caller = %shared.caller, %error, "egress proxy accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };

        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let mut shutdown = shared.shutdown.clone();
            let service_shared = Arc::clone(&shared);
            let service = service_fn(move |request| {
                let proxied = proxy_request(Arc::clone(&service_shared), request);
                async move { Ok::<_, Infallible>(proxied.await) }
            });
            let connection = http1::Builder::new()
                .keep_alive(true)
                .timer(TokioTimer::new())
                .header_read_timeout(crate::frontend::HEAD_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            tokio::select! {
                result = connection => {
                    // A request that hyper cannot parse here names no destination, so no
                    // front end would read it, and the handoffs are not called.
                    if let Err(error) = result {
                        tracing::debug!(
                            caller = %shared.caller,
                            %peer,
                            %error,
                            "egress connection ended with an error",
                        );
                    }
                }
                _ = wait_for_shutdown(&mut shutdown) => {}
            }
        });
    }
}

/// A response the proxy is working out.
type Proxied = Pin<Box<dyn Future<Output = Response<Full<Bytes>>> + Send>>;

/// Handles one request on the proxy listener: CONNECT or an absolute-form request. The
/// handoff is called before this returns.
fn proxy_request(shared: Arc<ProxyShared>, request: Request<Incoming>) -> Proxied {
    if request.method() == Method::CONNECT {
        let response = open_tunnel(shared, request);
        return Box::pin(async move { response });
    }

    let destination = match absolute_destination(request.uri()) {
        Ok(destination) => destination,
        Err(rejection) => {
            let response = rejection.into_response();
            return Box::pin(async move { response });
        }
    };
    tracing::debug!(
        caller = %shared.caller,
        host = %destination.host,
        port = destination.port,
        method = %request.method(),
        path = request.uri().path(),
        "egress request"
    );
    hand_off(&shared, request, &destination)
}

/// Accepts a CONNECT request and serves HTTP/1.1 inside the upgraded tunnel.
fn open_tunnel(shared: Arc<ProxyShared>, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let destination = match connect_destination(request.uri()) {
        Ok(destination) => destination,
        Err(rejection) => return rejection.into_response(),
    };

    let tls_config = match destination.scheme {
        Scheme::Https => match shared.ca.server_config_for(&destination.host) {
            Ok(config) => Some(config),
            Err(error) => {
                return text_response(
                    StatusCode::BAD_REQUEST,
                    &format!("{}\n", crate::with_causes(&error)),
                );
            }
        },
        Scheme::Http => None,
    };

    tracing::debug!(
        caller = %shared.caller,
        host = %destination.host,
        port = destination.port,
        "egress tunnel opened"
    );

    tokio::spawn(async move {
        let upgraded = match hyper::upgrade::on(request).await {
            Ok(upgraded) => upgraded,
            Err(error) => {
                tracing::debug!(
                    caller = %shared.caller,
                    host = %destination.host,
                    %error,
                    "CONNECT upgrade failed",
                );
                return;
            }
        };
        let mut shutdown = shared.shutdown.clone();
        let destination = Arc::new(destination);

        tokio::select! {
            _ = serve_tunnel(Arc::clone(&shared), upgraded, destination, tls_config) => {}
            _ = wait_for_shutdown(&mut shutdown) => {}
        }
    });

    Response::new(Full::new(Bytes::new()))
}

async fn serve_tunnel(
    shared: Arc<ProxyShared>,
    upgraded: hyper::upgrade::Upgraded,
    destination: Arc<Destination>,
    tls_config: Option<Arc<rustls::ServerConfig>>,
) {
    let service_shared = Arc::clone(&shared);
    let service_destination = Arc::clone(&destination);
    let service = service_fn(move |request| {
        let proxied = hand_off(&service_shared, request, &service_destination);
        async move { Ok::<_, Infallible>(proxied.await) }
    });

    let builder = {
        let mut builder = http1::Builder::new();
        builder
            .keep_alive(true)
            .timer(TokioTimer::new())
            .header_read_timeout(crate::frontend::HEAD_TIMEOUT);
        builder
    };

    let result = match tls_config {
        Some(config) => {
            let acceptor = tokio_rustls::TlsAcceptor::from(config);
            let handshake = tokio::time::timeout(
                TLS_HANDSHAKE_TIMEOUT,
                acceptor.accept(TokioIo::new(upgraded)),
            )
            .await;
            let tls = match handshake {
                Ok(Ok(tls)) => tls,
                Ok(Err(error)) => {
                    tracing::debug!(
                        caller = %shared.caller,
                        host = %destination.host,
                        %error,
                        "TLS handshake in tunnel failed",
                    );
                    return;
                }
                Err(_) => {
                    tracing::debug!(
                        caller = %shared.caller,
                        host = %destination.host,
                        "TLS handshake in tunnel timed out",
                    );
                    return;
                }
            };
            builder.serve_connection(TokioIo::new(tls), service).await
        }
        None => builder.serve_connection(upgraded, service).await,
    };

    if let Err(error) = result {
        // hyper responds to a request it cannot parse without calling the service, so the
        // unparsed-request handoff is called here.
        if let Some(status) = crate::frontend::unparsed_request_status(&error) {
            (shared.unparsed_handoff)(shared.context_for(&destination), status);
        }
        tracing::debug!(
            caller = %shared.caller,
            host = %destination.host,
            %error,
            "egress tunnel ended with an error",
        );
    }
}

/// Rewrites the request for the destination and passes it to the handoff, body unread: the
/// front end reads it only for a request it allows.
fn hand_off(
    shared: &ProxyShared,
    request: Request<Incoming>,
    destination: &Destination,
) -> Proxied {
    let (parts, body) = request.into_parts();
    let mut outbound = Request::new(body);
    *outbound.method_mut() = parts.method;
    *outbound.uri_mut() = origin_form(&parts.uri);
    *outbound.version_mut() = parts.version;
    *outbound.headers_mut() = strip_hop_by_hop(parts.headers);
    match HeaderValue::from_str(&host_header(destination)) {
        Ok(host) => {
            outbound.headers_mut().insert(header::HOST, host);
        }
        Err(_) => {
            let response = text_response(StatusCode::BAD_REQUEST, "invalid destination host\n");
            return Box::pin(async move { response });
        }
    }

    let handed_off = (shared.handoff)(outbound, shared.context_for(destination));
    Box::pin(async move {
        let (mut parts, body) = handed_off.await.into_parts();
        parts.headers = strip_hop_by_hop(parts.headers);
        Response::from_parts(parts, Full::new(body))
    })
}

/// Parses `CONNECT host:port`. Only ports 443 (TLS) and 80 (plain) are proxied.
fn connect_destination(uri: &Uri) -> Result<Destination, Rejection> {
    let authority = match uri.authority() {
        Some(authority) if uri.scheme().is_none() => authority,
        _ => {
            return Err(Rejection::new(
                StatusCode::BAD_REQUEST,
                "CONNECT target must be host:port\n",
            ))
        }
    };
    let Some(port) = authority.port_u16() else {
        return Err(Rejection::new(
            StatusCode::BAD_REQUEST,
            "CONNECT target must be host:port\n",
        ));
    };
    let scheme = scheme_for_port(port)?;
    Ok(Destination {
        scheme,
        host: normalize_host(authority.host())?,
        port,
    })
}

/// Parses an absolute-form target such as `http://host/path`.
fn absolute_destination(uri: &Uri) -> Result<Destination, Rejection> {
    let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
        return Err(Rejection::new(
            StatusCode::BAD_REQUEST,
            "proxy requests must use an absolute URI such as http://host/path\n",
        ));
    };
    let scheme = if scheme.eq_ignore_ascii_case("http") {
        Scheme::Http
    } else if scheme.eq_ignore_ascii_case("https") {
        Scheme::Https
    } else {
        return Err(Rejection::new(
            StatusCode::BAD_REQUEST,
            "only http and https URIs are proxied\n",
        ));
    };
    let default_port = match scheme {
        Scheme::Http => 80,
        Scheme::Https => 443,
    };
    let port = authority.port_u16().unwrap_or(default_port);
    scheme_for_port(port)?;
    Ok(Destination {
        scheme,
        host: normalize_host(authority.host())?,
        port,
    })
}

fn scheme_for_port(port: u16) -> Result<Scheme, Rejection> {
    match port {
        443 => Ok(Scheme::Https),
        80 => Ok(Scheme::Http),
        _ => Err(Rejection::new(
            StatusCode::FORBIDDEN,
            format!(
                "port {port} is not proxied: the egress proxy only forwards ports 80 and 443\n"
            ),
        )),
    }
}

fn normalize_host(host: &str) -> Result<String, Rejection> {
    let unbracketed = host
        .strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
        .unwrap_or(host);
    if unbracketed.is_empty() {
        return Err(Rejection::new(
            StatusCode::BAD_REQUEST,
            "missing destination host\n",
        ));
    }
    Ok(unbracketed.trim_end_matches('.').to_ascii_lowercase())
}

/// Returns the Host header value: the host alone on the scheme's default port.
fn host_header(destination: &Destination) -> String {
    let host = if destination.host.contains(':') {
        format!("[{}]", destination.host)
    } else {
        destination.host.clone()
    };
    let default_port = match destination.scheme {
        Scheme::Http => 80,
        Scheme::Https => 443,
    };
    if destination.port == default_port {
        host
    } else {
        format!("{host}:{}", destination.port)
    }
}

fn origin_form(uri: &Uri) -> Uri {
    let path_and_query = uri
        .path_and_query()
        .map(|pq| pq.as_str())
        .filter(|pq| pq.starts_with('/'))
        .unwrap_or("/");
    path_and_query
        .parse()
        .unwrap_or_else(|_| Uri::from_static("/"))
}

/// Removes hop-by-hop and proxy headers, including any listed in `Connection`.
fn strip_hop_by_hop(mut headers: HeaderMap) -> HeaderMap {
    let listed: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in listed {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
    headers
}

/// A proxy request rejected before the handoff, returned to the client as a plain-text reason.
struct Rejection {
    status: StatusCode,
    reason: String,
}

impl Rejection {
    fn new(status: StatusCode, reason: impl Into<String>) -> Rejection {
        Rejection {
            status,
            reason: reason.into(),
        }
    }

    fn into_response(self) -> Response<Full<Bytes>> {
        text_response(self.status, &self.reason)
    }
}

fn text_response(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::copy_from_slice(body.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    // Every response this file builds is the proxy's own, never a site's.
    crate::pages::mark_emulator_origin(response.headers_mut());
    response
}

/// Resolves when the proxy is shut down or dropped.
async fn wait_for_shutdown(shutdown: &mut watch::Receiver<bool>) {
    // An error means the sender was dropped, which also ends the proxy.
    let _ = shutdown.wait_for(|stopped| *stopped).await;
}

#[cfg(test)]
#[allow(clippy::expect_used)]
mod tests {
    use super::*;

    fn parse(uri: &str) -> Uri {
        uri.parse().expect("uri")
    }

    #[test]
    fn connect_destination_cases() {
        let cases = [
            (
                "app.azurewebsites.net:443",
                Some((Scheme::Https, "app.azurewebsites.net", 443)),
            ),
            ("App.Example:80", Some((Scheme::Http, "app.example", 80))),
            ("[::1]:443", Some((Scheme::Https, "::1", 443))),
        ];
        for (target, expected) in cases {
            let actual = connect_destination(&parse(target))
                .ok()
                .map(|d| (d.scheme, d.host, d.port));
            let expected = expected.map(|(s, h, p)| (s, h.to_string(), p));
            assert_eq!(actual, expected, "target `{target}`");
        }
    }

    #[test]
    fn connect_destination_rejects_other_port() {
        let rejection = connect_destination(&parse("db.example:5432")).err();
        assert_eq!(rejection.map(|r| r.status), Some(StatusCode::FORBIDDEN));
    }

    #[test]
    fn absolute_destination_cases() {
        let cases = [
            (
                "http://b.azurewebsites.net/api/x?code=1",
                Some((Scheme::Http, 80)),
            ),
            ("https://b.azurewebsites.net/", Some((Scheme::Https, 443))),
            ("http://b.azurewebsites.net:8080/", None),
            ("/relative", None),
            ("ftp://b.example/", None),
        ];
        for (target, expected) in cases {
            let actual = absolute_destination(&parse(target))
                .ok()
                .map(|d| (d.scheme, d.port));
            assert_eq!(actual, expected, "target `{target}`");
        }
    }

    #[test]
    fn strip_hop_by_hop_removes_listed() {
        let mut headers = HeaderMap::new();
        headers.insert("connection", HeaderValue::from_static("close, x-secret"));
        headers.insert("x-secret", HeaderValue::from_static("1"));
        headers.insert(
            "proxy-authorization",
            HeaderValue::from_static("Basic eA=="),
        );
        headers.insert("x-kept", HeaderValue::from_static("1"));
        let stripped = strip_hop_by_hop(headers);
        let names: Vec<&str> = stripped.keys().map(|name| name.as_str()).collect();
        assert_eq!(names, vec!["x-kept"]);
    }

    #[test]
    fn origin_form_keeps_query() {
        let uri = origin_form(&parse("http://b.example/api/x?code=k"));
        assert_eq!(uri.to_string(), "/api/x?code=k");
    }

    #[test]
    fn host_header_adds_nondefault_port() {
        let destination = Destination {
            scheme: Scheme::Http,
            host: "b.example".to_string(),
            port: 443,
        };
        assert_eq!(host_header(&destination), "b.example:443");
    }
}
