//! A local App Service runtime for one ARM template: `subnetlock up`.
//!
//! The emulator deploys a template on one machine the way Azure would, refusing what Azure's
//! validation would fail, and runs it behind an emulated App Service front end on loopback:
//!
//! - the resource provider returns `reference()` and `list*()` results with real host names and fresh
//!   random function keys ([`subnetlock_model::SimulatedProvider`]);
//! - the [`frontend`] routes by host name and enforces app access and access restrictions with
//!   the same engine `check` uses, answering denials as App Service does;
//! - a [`functions_host`] per bound function app spawns its custom handler, routes
//!   `/api/<function>` and checks function keys;
//! - an [`egress`] proxy per app carries the handler's outbound HTTP and HTTPS (through a local
//!   CA the handler trusts) back to the front end, with the source identity Azure would give
//!   the request: the integration subnet on the service-endpoint path, otherwise the plan's
//!   shared outbound address;
//! - every front-end decision becomes a [`decisions::DecisionRecord`].
//!
//! The emulator never opens a connection off the machine. It is not a Functions runtime for
//! other languages, not Kudu, and not a DNS server.

// `EmulatorError` carries a located template error by value; it is returned once per start,
// so its size costs nothing worth boxing for.
#![allow(clippy::result_large_err)]

mod accept_failures;
pub mod bindings;
pub mod caller;
mod control;
pub mod decisions;
pub mod egress;
pub mod frontend;
pub mod functions_host;
mod handler_client;
mod pages;
mod reaper;
mod runtime;
pub mod tls;

pub use bindings::{AppBinding, Bindings, BINDING_FILE_NAME};
pub use caller::{Caller, CallerError};
pub use decisions::DecisionRecord;
pub use pages::{EMULATOR_ORIGIN, ORIGIN_HEADER};
pub use reaper::stop_own_processes;
pub use runtime::{
    AppErrorInfo, Emulator, EmulatorConfig, ExampleRequest, FindingsOf, FunctionErrorInfo,
    FunctionInfo, Shutdown, SiteInfo, StateFile, MAX_FRONT_END_THREADS,
};

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

/// Formats `error` followed by its causes, joined by `: `, for a log line or a response body,
/// where no report prints the causes below the message.
pub fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(current) = cause {
        text.push_str(": ");
        text.push_str(&current.to_string());
        cause = current.source();
    }
    text
}

/// Errors that stop the emulator from starting.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum EmulatorError {
    #[error(transparent)]
    #[diagnostic(transparent)]
    Template(subnetlock_arm::Error),
    #[error("Azure or its tooling would reject this deployment ({} finding(s))", findings.len())]
    #[diagnostic(help("`subnetlock check` lists the findings with their locations and fixes"))]
    DeploymentRejected {
        findings: Vec<subnetlock_model::Finding>,
    },
    #[error(
        "state directory `{path}` is in use by another emulator{}",
        pid.map(|pid| format!(" (process {pid})")).unwrap_or_default()
    )]
    #[diagnostic(help("stop that emulator, or pass another directory with --state-dir"))]
    StateDirInUse { path: PathBuf, pid: Option<u32> },
    #[error("listen address `{0}` is not a loopback address")]
    #[diagnostic(help("the emulator serves only 127.0.0.0/8 or ::1"))]
    NotLoopback(IpAddr),
    #[error("front-end thread count {threads} is above the maximum of {max}")]
    #[diagnostic(help(
        "choose at most {max} front-end threads, or keep the default of one per CPU core"
    ))]
    TooManyFrontEndThreads { threads: usize, max: usize },
    #[error("cannot start {threads} front-end threads")]
    #[diagnostic(help(
        "choose fewer front-end threads (`--front-end-threads` of `up`), or raise the open-file limit (`ulimit -n`) when the cause is too many open files"
    ))]
    FrontEndThreads {
        threads: usize,
        source: std::io::Error,
    },
    #[error("cannot listen on `{address}`")]
    #[diagnostic(help("pick another port, or 0 for any free port"))]
    Listen {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot use state directory `{path}`")]
    #[diagnostic(help("pass a writable directory with --state-dir"))]
    StateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot create the local certificate authority")]
    Tls(#[source] tls::TlsError),
    #[error("build command `{command}` failed: {detail}")]
    #[diagnostic(help(
        "run the command yourself to see its output, or remove `build` from the binding file"
    ))]
    Build { command: String, detail: String },
    #[error("cannot run the function app bound to site `{site}`, so `up` starts none of the deployment's sites")]
    FunctionApp {
        site: String,
        // The report shows the help of the function app's error, which names the next step.
        #[source]
        #[diagnostic_source]
        source: functions_host::HostError,
    },
}
