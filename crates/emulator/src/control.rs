//! The control API of a running emulator, on loopback, for `subnetlock call` and scripts.
//!
//! Every request needs `Authorization: Bearer <token>`, with the token from the state file
//! (readable by its owner only). Endpoints:
//! - `GET /v1/state`: sites, host names, function URLs and keys;
//! - `GET /v1/decisions?since=N`: front-end decisions after sequence number N, as JSON, from
//!   at most the newest [`crate::decisions::MAX_RECORDS_PER_READ`], read back from the
//!   decision file, which has them all;
//! - `GET /v1/findings`: every finding `subnetlock check` reports for the deployment, as the
//!   `findings` array of `check --format json`, which the CLI computes through
//!   [`crate::EmulatorConfig::findings_of`];
//! - `POST /v1/sources` with `{"from": "internet:203.0.113.7"}`: a proxy address whose requests
//!   carry that caller's source identity, and the caller with its address (`"from"`), which
//!   for `internet` alone is the address `explain --from internet` uses. An invalid caller
//!   gets 400 with a text body: the error on the first line, then
//!   `callers in this deployment: ...`;
//! - `POST /v1/shutdown`: stops the emulator.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::accept_failures::{self, AcceptFailures};
use crate::caller::Caller;
use crate::frontend::{read_body, ACCEPT_RETRY};
use crate::pages;
use crate::runtime::{source_proxy, Shared};

pub(crate) async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut failures = AcceptFailures::default();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    let line = failures.record_failure(Instant::now());
                    accept_failures::log_failure("control API", line, &error, ACCEPT_RETRY);
                    tokio::time::sleep(ACCEPT_RETRY).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        if let Some(recovery) = failures.record_success(Instant::now()) {
            accept_failures::log_recovery("control API", recovery);
        }
        let shared = shared.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request: Request<Incoming>| {
                let shared = shared.clone();
                let stop = stop.clone();
                async move {
                    let response = match read_body(request).await {
                        Ok(request) => handle(&shared, &stop, request).await,
                        Err(response) => response,
                    };
                    Ok::<_, std::convert::Infallible>(response.map(Full::new))
                }
            });
            if let Err(error) = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(crate::frontend::HEAD_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%error, %peer, "control connection ended with an error");
            }
        });
    }
}

async fn handle(
    shared: &Arc<Shared>,
    stop: &watch::Sender<bool>,
    request: Request<Bytes>,
) -> Response<Bytes> {
    // The scheme name is case-insensitive (RFC 9110, section 11.1); the token is not.
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim_start());
    if !given.is_some_and(|given| constant_time_eq(given.as_bytes(), shared.token.as_bytes())) {
        return pages::text(
            StatusCode::UNAUTHORIZED,
            "missing or wrong bearer token; read `token` from the emulator's state.json",
        );
    }

    match (request.method(), request.uri().path()) {
        (&Method::GET, "/v1/state") => pages::json(
            StatusCode::OK,
            &serde_json::json!({ "sites": shared.sites.get() }),
        ),
        (&Method::GET, "/v1/findings") => pages::json(
            StatusCode::OK,
            &serde_json::to_value(&shared.findings).unwrap_or_default(),
        ),
        (&Method::GET, "/v1/decisions") => {
            let requested = request.uri().query().and_then(|query| {
                query
                    .split('&')
                    .find_map(|pair| pair.strip_prefix("since="))
            });
            let since = match requested.map(str::parse::<u64>) {
                None => 0,
                Some(Ok(since)) => since,
                Some(Err(_)) => {
                    let value = requested.unwrap_or_default();
                    tracing::info!(value, "control API request with an invalid `since`");
                    return pages::text(
                        StatusCode::BAD_REQUEST,
                        format!(
                        "invalid `since` value `{value}`: pass a sequence number, 0 for all decisions\n"
                    ),
                    );
                }
            };
            pages::json(
                StatusCode::OK,
                &serde_json::to_value(shared.decisions.since(since)).unwrap_or_default(),
            )
        }
        (&Method::POST, "/v1/sources") => create_source(shared, request.body()).await,
        (&Method::POST, "/v1/shutdown") => {
            let _ = stop.send(true);
            pages::json(StatusCode::OK, &serde_json::json!({ "stopping": true }))
        }
        (_, path) => pages::text(
            StatusCode::NOT_FOUND,
            format!("no control endpoint `{path}`; see GET /v1/state"),
        ),
    }
}

async fn create_source(shared: &Arc<Shared>, body: &Bytes) -> Response<Bytes> {
    let parsed: Result<serde_json::Value, _> = serde_json::from_slice(body);
    let Some(from) = parsed.ok().and_then(|value| {
        value
            .get("from")
            .and_then(|v| v.as_str())
            .map(str::to_owned)
    }) else {
        return pages::text(
            StatusCode::BAD_REQUEST,
            "expected a JSON body {\"from\": \"internet:203.0.113.7\"}",
        );
    };
    let caller = match Caller::parse_in(&from, &shared.topology, shared.service_tags.as_deref()) {
        Ok(caller) => caller,
        Err(error) => return invalid_caller(shared, &error),
    };
    match source_proxy(shared, &caller).await {
        Ok(proxy) => {
            let source = caller.egress(&shared.topology).ok();
            pages::json(
                StatusCode::OK,
                &serde_json::json!({ "from": caller.to_string(), "proxy": proxy, "egress": source }),
            )
        }
        Err(error) => invalid_caller(shared, &error),
    }
}

/// Builds the 400 response for a caller the deployment does not have, which lists the callers
/// it has, as `explain` does.
fn invalid_caller(shared: &Shared, error: &crate::caller::CallerError) -> Response<Bytes> {
    let topology = &shared.topology;
    let mut callers = vec!["internet".to_owned(), "internet:<address>".to_owned()];
    for vnet in &topology.vnets {
        for subnet in &vnet.subnets {
            callers.push(format!("subnet:{}/{}", vnet.name, subnet.name));
        }
    }
    for site in &topology.sites {
        callers.push(format!("app:{}", site.name));
    }
    callers.push("servicetag:<tag>".to_owned());
    pages::text(
        StatusCode::BAD_REQUEST,
        format!(
            "{error}\ncallers in this deployment: {}\n",
            callers.join(", ")
        ),
    )
}

fn constant_time_eq(left: &[u8], right: &[u8]) -> bool {
    if left.len() != right.len() {
        return false;
    }
    left.iter()
        .zip(right)
        .fold(0u8, |difference, (a, b)| difference | (a ^ b))
        == 0
}
