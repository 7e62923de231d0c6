//! Runtime shared by the two Azure Functions custom handlers of the reference system
//! (`function-app-a` calls `function-app-b`, which returns `42`).
//!
//! It reads the port that the Functions host assigns, sets up logging to stderr and runs an
//! axum router on `127.0.0.1` until SIGTERM or ctrl-c. It is not a Functions host: key checks,
//! access restrictions and routing by `function.json` belong to the host or to the emulator.

use std::ffi::OsString;
use std::io::IsTerminal;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use axum::Router;
use tracing_subscriber::EnvFilter;

/// Environment variable through which the Functions host passes the handler's port.
///
/// The host picks an unused port, starts the handler with this variable set and polls
/// `http://127.0.0.1:<port>/` until any response arrives
/// (<https://learn.microsoft.com/en-us/azure/azure-functions/functions-custom-handlers>).
pub const PORT_VARIABLE: &str = "FUNCTIONS_CUSTOMHANDLER_PORT";

/// Header in which the Functions host sends the invocation id of a forwarded request.
pub const INVOCATION_ID_HEADER: &str = "x-azure-functions-invocationid";

/// Exit code for a handler that could not start (missing port, bind failure).
pub const EXIT_START_FAILED: u8 = 2;

/// Failure to start or run a handler's HTTP server.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The port variable is not set.
    #[error("missing environment variable `{PORT_VARIABLE}`")]
    MissingPort,

    /// The port variable is set but is not a TCP port from 1 to 65535.
    #[error("invalid port `{value}` in environment variable `{PORT_VARIABLE}`")]
    InvalidPort {
        /// The raw value, lossily converted to UTF-8.
        value: String,
    },

    /// The tokio runtime could not be created.
    #[error("failed to start the tokio runtime")]
    Runtime(#[source] std::io::Error),

    /// The listener could not bind the loopback address.
    #[error("failed to listen on `{address}`")]
    Bind {
        /// The address the handler tried to bind.
        address: SocketAddr,
        /// The bind error.
        #[source]
        source: std::io::Error,
    },

    /// The server stopped with an I/O error.
    #[error("server on `{address}` failed")]
    Serve {
        /// The address the handler listened on.
        address: SocketAddr,
        /// The accept or connection error.
        #[source]
        source: std::io::Error,
    },
}

impl StartError {
    /// Returns what the operator can do about this error.
    pub fn help(&self) -> String {
        match self {
            Self::MissingPort | Self::InvalidPort { .. } => format!(
                "the Functions host sets `{PORT_VARIABLE}`; to run the handler alone, set it to a \
                 free TCP port, for example `{PORT_VARIABLE}=7071`"
            ),
            Self::Runtime(_) => "check the process limits for threads and file descriptors".into(),
            Self::Bind { .. } => format!(
                "another process may use this port; choose a free port in `{PORT_VARIABLE}`"
            ),
            Self::Serve { .. } => "restart the handler; the error above names the cause".into(),
        }
    }
}

/// Parses the value of [`PORT_VARIABLE`] (`None` when unset).
///
/// Port 0 is rejected: it would bind an ephemeral port that the host never learns about.
pub fn parse_port(raw: Option<OsString>) -> Result<u16, StartError> {
    let raw = raw.ok_or(StartError::MissingPort)?;
    let text = raw.to_string_lossy();

    match text.trim().parse::<u16>() {
        Ok(port) if port != 0 => Ok(port),
        _ => Err(StartError::InvalidPort {
            value: text.into_owned(),
        }),
    }
}

/// Installs a `tracing` subscriber that writes to stderr.
///
/// The filter comes from `RUST_LOG` and defaults to `info`. Calling it twice is harmless.
/// Colours are used only when stderr is a terminal and `NO_COLOR` is unset.
pub fn init_logging() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));

    // `try_init` fails only when a subscriber is already installed, which is fine here.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(use_color())
        .with_target(false)
        .try_init();
}

/// Adds the readiness route `GET /` that the Functions host polls before it forwards requests.
pub fn with_readiness(routes: Router) -> Router {
    routes.route("/", get(|| async { StatusCode::OK }))
}

/// Serves `routes` (plus the readiness route) on `127.0.0.1:port` until SIGTERM or ctrl-c.
///
/// In-flight requests finish before the future resolves.
pub async fn serve(routes: Router, port: u16) -> Result<(), StartError> {
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));

    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|source| StartError::Bind { address, source })?;
    tracing::info!(%address, "listening");

    axum::serve(listener, with_readiness(routes))
        .with_graceful_shutdown(shutdown_signal())
        .await
        .map_err(|source| StartError::Serve { address, source })?;

    tracing::info!(%address, "stopped");
    Ok(())
}

/// Runs a handler binary: logging, port from [`PORT_VARIABLE`], runtime, server.
///
/// `routes` builds the router inside the runtime, so it may create clients that need one.
/// Returns exit code 0 after a graceful shutdown and [`EXIT_START_FAILED`] on any
/// [`StartError`], which is logged with its cause chain and help.
pub fn run(app: &'static str, routes: impl FnOnce() -> Router) -> ExitCode {
    init_logging();

    match run_inner(app, routes) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(
                app,
                error = %error_chain(&err),
                help = %err.help(),
                "handler failed to start",
            );
            ExitCode::from(EXIT_START_FAILED)
        }
    }
}

/// Returns the `X-Azure-Functions-InvocationId` header that the host adds to each request,
/// or `-` when the handler is called directly.
pub fn invocation_id(headers: &HeaderMap) -> &str {
    headers
        .get(INVOCATION_ID_HEADER)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("-")
}

/// The invocation id of a request, read as [`invocation_id`] reads it.
///
/// Taking this in a handler in place of a whole `HeaderMap` saves copying every header of
/// every request, of which a function usually reads only this one.
pub struct InvocationId(pub String);

#[axum::async_trait]
impl<S: Send + Sync> FromRequestParts<S> for InvocationId {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(InvocationId(invocation_id(&parts.headers).to_owned()))
    }
}

/// Formats an error and its sources as `outer: inner: innermost`.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();

    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn run_inner(app: &'static str, routes: impl FnOnce() -> Router) -> Result<(), StartError> {
    let port = parse_port(std::env::var_os(PORT_VARIABLE))?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(StartError::Runtime)?;

    runtime.block_on(async {
        tracing::info!(app, port, "starting custom handler");
        serve(routes(), port).await
    })
}

/// Colours only for a terminal without `NO_COLOR`; App Service log streams and files get
/// plain text.
fn use_color() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

/// Resolves on ctrl-c or, on Unix, SIGTERM (the signal a container runtime sends first when it
/// stops a container).
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %err, "cannot listen for ctrl-c");
            std::future::pending::<()>().await;
        }
    };

    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{signal, SignalKind};

        match signal(SignalKind::terminate()) {
            Ok(mut stream) => {
                stream.recv().await;
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };

    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();

    tokio::select! {
        () = ctrl_c => tracing::info!("ctrl-c received, shutting down"),
        () = terminate => tracing::info!("SIGTERM received, shutting down"),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parse_port_cases() {
        let cases: &[(Option<&str>, Option<u16>)] = &[
            (Some("7071"), Some(7071)),
            (Some(" 8080 "), Some(8080)),
            (Some("65535"), Some(65535)),
            (Some("0"), None),
            (Some("65536"), None),
            (Some("-1"), None),
            (Some("port"), None),
            (Some(""), None),
            (None, None),
        ];

        for (raw, expected) in cases {
            let parsed = parse_port(raw.map(OsString::from)).ok();
            assert_eq!(parsed, *expected, "input {raw:?}");
        }
    }

    #[test]
    fn parse_port_missing_message() {
        let err = parse_port(None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "missing environment variable `FUNCTIONS_CUSTOMHANDLER_PORT`"
        );
    }

    #[test]
    fn parse_port_invalid_message() {
        let err = parse_port(Some(OsString::from("abc"))).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid port `abc` in environment variable `FUNCTIONS_CUSTOMHANDLER_PORT`"
        );
        assert!(err.help().contains("FUNCTIONS_CUSTOMHANDLER_PORT=7071"));
    }

    #[test]
    fn error_chain_joins_sources() {
        let err = StartError::Runtime(std::io::Error::other("no threads"));
        assert_eq!(
            error_chain(&err),
            "failed to start the tokio runtime: no threads"
        );
    }
}
