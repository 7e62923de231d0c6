//! Function app B of the reference system: `GET /api/function-b` returns `42`.
//!
//! Runs as an Azure Functions custom handler with `enableForwardingHttpRequest`, so the host
//! forwards the caller's request at its original path once the function key is accepted.

use std::process::ExitCode;

use axum::routing::get;
use axum::Router;
use subnetlock_functions::InvocationId;

/// The body that function B returns; function A reports it as `Function B returned 42`.
const RESPONSE_BODY: &str = "42";

fn main() -> ExitCode {
    subnetlock_functions::run("function-app-b", || {
        Router::new().route("/api/function-b", get(function_b))
    })
}

/// Returns `42` as `text/plain`.
async fn function_b(InvocationId(invocation): InvocationId) -> &'static str {
    tracing::info!(invocation, "function-b invoked");
    RESPONSE_BODY
}
