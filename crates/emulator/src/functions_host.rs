//! Functions host for custom handlers.
//!
//! This module plays the part of the Azure Functions host for an app whose `host.json` has a
//! `customHandler` section. It reads `host.json` and every `function.json`, starts the handler
//! process on a free loopback port and restarts it when it exits. It routes HTTP-triggered
//! invocations to the handler after checking function keys. It does not run language workers,
//! non-HTTP triggers or the `/admin` runtime APIs.
//!
//! The handler contract follows
//! <https://learn.microsoft.com/azure/azure-functions/functions-custom-handlers> and the host's
//! `HttpWorker` implementation in `Azure/azure-functions-host`.

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use indexmap::IndexMap;
use serde_json::{json, Map, Value};
use smallvec::SmallVec;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::handler_client::{EncodedKind, HandlerClient, OutboundRequest, Reply, SendError};

mod fields;
mod percent;
mod route;
mod route_pattern;
mod validate;

use fields::{Expected, FieldPath, JsonFile};
use route::RouteTemplate;
pub use validate::FunctionError;

/// Version reported to handlers in `X-Azure-Functions-HostVersion` and `User-Agent`.
pub const HOST_VERSION: &str = "4.x-subnetlock";

/// `User-Agent` of requests to the handler.
const HOST_USER_AGENT: &str = "Azure-Functions-Host/4.x-subnetlock";

/// Time a handler gets to respond to its first HTTP request. The Functions docs give handlers
/// 60 seconds to start.
pub const DEFAULT_STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// Maximum handler response body that is buffered. Larger bodies become 502.
pub const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

/// A function app laid out on disk: `host.json` plus one folder per function.
#[derive(Clone, Debug)]
pub struct FunctionApp {
    pub root: PathBuf,
    /// Program to start: a resolved path, or a bare command name looked up in `PATH`.
    pub executable: PathBuf,
    /// Arguments before `%NAME%` expansion, which happens when the process starts.
    pub arguments: Vec<String>,
    pub working_dir: PathBuf,
    /// `customHandler.enableForwardingHttpRequest` (or `enableProxyingHttpRequest`).
    pub forwarding: bool,
    /// Route prefix without slashes, or empty when the app disables the prefix.
    pub route_prefix: String,
    /// HTTP functions in the order the host maps their routes: by name, ignoring case.
    pub functions: Vec<FunctionDef>,
    /// Functions the host loads in error and leaves out, in the same order.
    pub function_errors: Vec<FunctionError>,
}

/// One HTTP-triggered function read from `<name>/function.json`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FunctionDef {
    /// Folder name, which is the function name.
    pub name: String,
    pub auth_level: AuthLevel,
    /// Allowed methods, or `None` for all methods.
    pub methods: Option<Vec<Method>>,
    /// Route template, or `None` to route by the function name, as for an empty or blank
    /// `route` in function.json.
    pub route: Option<String>,
    /// Name of the `httpTrigger` binding, the key of the request in the invoke payload.
    pub request_binding: String,
    /// Name of the `http` output binding (`res`, `$return`, ...), if the function has one.
    pub response_binding: Option<String>,
    /// True when the bindings are exactly one HTTP trigger and one HTTP output, the only case
    /// in which the host forwards the raw request.
    pub http_only: bool,
}

/// `authLevel` of an HTTP trigger.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthLevel {
    Anonymous,
    Function,
    Admin,
}

/// Function keys, host keys and the master key of one app.
#[derive(Clone)]
pub struct FunctionKeys {
    /// The `_master` key.
    pub master: String,
    /// Host keys by name (`default`, ...).
    pub host: IndexMap<String, String>,
    /// Function keys by function name, then by key name.
    pub functions: HashMap<String, IndexMap<String, String>>,
}

impl FunctionKeys {
    /// Generates a master key, a `default` host key and a `default` key for every function.
    ///
    /// Keys are 32 random bytes in URL-safe base64, like the keys the Functions host creates,
    /// without its checksum suffix.
    pub fn generate(app: &FunctionApp) -> FunctionKeys {
        let mut host = IndexMap::new();
        host.insert("default".to_string(), random_key());

        let functions = app
            .functions
            .iter()
            .map(|function| {
                let mut keys = IndexMap::new();
                keys.insert("default".to_string(), random_key());
                (function.name.clone(), keys)
            })
            .collect();

        FunctionKeys {
            master: random_key(),
            host,
            functions,
        }
    }
}

impl fmt::Debug for FunctionKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Key values are secrets, so only names are shown.
        f.debug_struct("FunctionKeys")
            .field("host", &self.host.keys().collect::<Vec<_>>())
            .field("functions", &self.functions.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// Everything needed to run one app's handler.
pub struct HostConfig {
    pub site_name: String,
    pub app: FunctionApp,
    /// App settings and other variables for the handler process (proxy, `SSL_CERT_FILE`).
    pub env: Vec<(String, String)>,
    pub keys: FunctionKeys,
    pub startup_timeout: Duration,
    /// How long the handler may take to respond: App Service's 230 seconds unless a test
    /// shortens it.
    pub invocation_timeout: Duration,
}

/// Errors from loading a function app or starting its handler.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum HostError {
    #[error("failed to read `{}`", path.display())]
    #[diagnostic(help("check that the function app folder exists and is readable"))]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("invalid JSON in `{}`", path.display())]
    #[diagnostic(help("fix the JSON syntax at the reported line and column"))]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },

    #[error("missing `customHandler` section in `{}`", path.display())]
    #[diagnostic(help(
        "add `\"customHandler\": {{\"description\": {{\"defaultExecutablePath\": \"<program>\"}}}}`; only custom handlers can run in the emulator"
    ))]
    MissingCustomHandler { path: PathBuf },

    #[error("invalid `{field}` in `{}`: {reason}", path.display())]
    #[diagnostic(help("see https://learn.microsoft.com/azure/azure-functions/functions-custom-handlers for the expected shape"))]
    InvalidValue {
        path: PathBuf,
        field: String,
        reason: String,
    },

    #[error(
        "invalid `{field}` in `{}` at line {}, column {}: expected {expected}, found {found}",
        path.display(), location.line, location.column
    )]
    InvalidType {
        path: PathBuf,
        /// Path of the value from the top of the file, such as
        /// `customHandler.description.defaultExecutablePath`.
        field: String,
        expected: &'static str,
        found: String,
        location: Box<subnetlock_arm::SourceLocation>,
        #[help]
        help: String,
    },

    /// The Functions host stops when ASP.NET Core rejects a route, so this error stops every
    /// function of the app, not only the one that declares the route.
    #[error("invalid route `{route}` of function `{function}` in `{}`: {reason}", path.display())]
    #[diagnostic(help(
        "change `route` in `{}` to a template ASP.NET Core accepts, such as `items/{{id:int}}` or `files/{{*rest}}`, or remove it to use the function name. The Functions host serves no function of this app until then",
        path.display()
    ))]
    InvalidRoute {
        function: String,
        /// The function.json that declares the route.
        path: PathBuf,
        route: String,
        reason: String,
    },

    #[error("failed to pick a free loopback port for site `{site}`")]
    #[diagnostic(help("check that 127.0.0.1 is configured and ports are available"))]
    Port {
        site: String,
        #[source]
        source: std::io::Error,
    },

    #[error("failed to start custom handler `{}` for site `{site}`", executable.display())]
    #[diagnostic(help(
        "check the handler: the path given with `--handler` or in host.json's `customHandler.description.defaultExecutablePath`, that it is built (`--no-build` skips the binding file's build commands), and that it is executable"
    ))]
    Spawn {
        site: String,
        executable: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("custom handler `{}` for site `{site}` exited with {status} before it responded to HTTP; last stderr lines: {stderr}", executable.display())]
    #[diagnostic(help(
        "the handler must listen on 127.0.0.1:$FUNCTIONS_CUSTOMHANDLER_PORT and keep running"
    ))]
    Exited {
        site: String,
        executable: PathBuf,
        status: String,
        stderr: String,
    },

    #[error("custom handler `{}` for site `{site}` timed out after {}s without an HTTP response on port {port} (still running); last stderr lines: {stderr}", executable.display(), timeout.as_secs_f64())]
    #[diagnostic(help(
        "the handler must listen on 127.0.0.1:$FUNCTIONS_CUSTOMHANDLER_PORT and answer GET / within the startup timeout"
    ))]
    TimedOut {
        site: String,
        executable: PathBuf,
        port: u16,
        timeout: Duration,
        stderr: String,
    },
}

/// Reads `host.json` (`customHandler`, legacy `httpWorker`, `extensions.http.routePrefix`) and
/// every `<dir>/function.json` with an `httpTrigger` binding.
///
/// `executable_override` replaces the program that `defaultExecutablePath` names, which
/// host.json must still give.
pub fn load_function_app(
    root: &Path,
    executable_override: Option<&Path>,
) -> Result<FunctionApp, HostError> {
    let host_path = root.join("host.json");
    let host_file = JsonFile::read(&host_path)?;
    let host = &host_file.value;
    let top = FieldPath::default();

    // The host accepts the legacy `httpWorker` section, but `customHandler` wins when both exist.
    let (section_name, section) = ["customHandler", "httpWorker"]
        .into_iter()
        .find_map(|name| host.get(name).map(|section| (name, section)))
        .ok_or_else(|| HostError::MissingCustomHandler {
            path: host_path.clone(),
        })?;
    let section_field = top.key(section_name);
    if !section.is_object() {
        return Err(host_file.type_error(&section_field, section, Expected::Object));
    }
    let description_field = section_field.key("description");
    let description = section
        .get("description")
        .ok_or_else(|| invalid(&host_path, &description_field.to_string(), "missing"))?;
    if !description.is_object() {
        return Err(host_file.type_error(&description_field, description, Expected::Object));
    }

    let working_dir =
        match host_file.optional_str(description, &description_field.key("workingDirectory"))? {
            Some(dir) if !dir.is_empty() => root.join(dir),
            _ => root.to_path_buf(),
        };

    // The host stops when `defaultExecutablePath` is missing or empty
    // (`HttpWorkerDescription.ApplyDefaultsAndValidate` throws "WorkerDescription
    // DefaultExecutablePath cannot be empty"), so an override, which exists only locally, does
    // not excuse it.
    let executable_field = description_field.key("defaultExecutablePath");
    let default_executable = host_file
        .optional_str(description, &executable_field)?
        .filter(|path| !path.is_empty())
        .ok_or_else(|| {
            invalid(
                &host_path,
                &executable_field.to_string(),
                "missing or empty, and the Functions host does not start without it, even when \
                 `--handler` or the binding file's `executable` names the program that runs locally",
            )
        })?;
    let executable = match executable_override {
        Some(path) => path.to_path_buf(),
        None => resolve_executable(root, &working_dir, default_executable),
    };

    let mut arguments = host_file.string_array(description, &description_field.key("arguments"))?;
    if let Some(worker_path) =
        host_file.optional_str(description, &description_field.key("defaultWorkerPath"))?
    {
        if !worker_path.is_empty() {
            arguments.push(worker_path.to_string());
        }
    }
    arguments
        .extend(host_file.string_array(description, &description_field.key("workerArguments"))?);

    let forwarding = host_file
        .optional_bool(section, &section_field.key("enableForwardingHttpRequest"))?
        || host_file.optional_bool(section, &section_field.key("enableProxyingHttpRequest"))?;

    // Version 2+ reads `extensions.http.routePrefix`, and version 1 read `http.routePrefix`.
    // The error names the field that was read.
    let prefix = [
        (
            "/extensions/http/routePrefix",
            top.key("extensions").key("http").key("routePrefix"),
        ),
        ("/http/routePrefix", top.key("http").key("routePrefix")),
    ]
    .into_iter()
    .find_map(|(pointer, field)| host.pointer(pointer).map(|value| (field, value)));
    let route_prefix = match prefix {
        None => "api".to_string(),
        Some((_, Value::String(prefix))) => prefix.trim_matches('/').to_string(),
        Some((field, value)) => return Err(host_file.type_error(&field, value, Expected::String)),
    };

    let (functions, function_errors) = load_functions(root, &route_prefix)?;

    Ok(FunctionApp {
        root: root.to_path_buf(),
        executable,
        arguments,
        working_dir,
        forwarding,
        route_prefix,
        functions,
        function_errors,
    })
}

/// A running custom handler with its supervisor.
pub struct FunctionsHost {
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    supervisor: Mutex<Option<JoinHandle<()>>>,
}

impl FunctionsHost {
    /// Starts the handler and waits until it responds to HTTP.
    pub async fn start(config: HostConfig) -> Result<Arc<FunctionsHost>, HostError> {
        let mut routes = compile_routes(&config.app, &config.env)?;
        for route in &mut routes {
            route.accepted_keys = Shared::accepted_keys(&config.keys, &route.def);
        }
        // Connections to the handler are kept alive and reused: opening one per request costs
        // most of the front end's throughput. A restarted handler listens on a new port, so
        // no connection to a dead process is reused.
        let client = HandlerClient::new(MAX_BODY_BYTES);
        let (state, _) = watch::channel(WorkerState::Starting);

        let shared = Arc::new(Shared {
            site: config.site_name,
            app: config.app,
            routes,
            env: config.env,
            keys: config.keys,
            startup_timeout: config.startup_timeout,
            invocation_timeout: config.invocation_timeout,
            state,
            restarts: AtomicU32::new(0),
            client,
        });

        let worker = start_worker(&shared).await?;
        tracing::info!(site = %shared.site, port = worker.port, "custom handler ready");
        shared
            .state
            .send_replace(WorkerState::Ready { port: worker.port });

        let (stop, stop_rx) = watch::channel(false);
        let supervisor = tokio::spawn(supervise(Arc::clone(&shared), worker, stop_rx));

        Ok(Arc::new(FunctionsHost {
            shared,
            stop,
            supervisor: Mutex::new(Some(supervisor)),
        }))
    }

    /// Routes, authorizes and invokes one request, returning the response for the caller.
    pub async fn handle(&self, mut request: Request<Bytes>) -> Response<Bytes> {
        let shared = &self.shared;
        let url_length = request
            .uri()
            .path_and_query()
            .map_or(0, |target| target.as_str().len());
        if url_length > MAX_URL_BYTES {
            tracing::debug!(site = %shared.site, url_length, "URL longer than the Functions host accepts");
            return empty_response(StatusCode::URI_TOO_LONG);
        }
        normalise_path(&mut request);

        let path = request.uri().path();
        let Some(function) = shared.route(path, request.method()) else {
            tracing::debug!(site = %shared.site, method = %request.method(), path = %path, "no function route matches");
            return empty_response(StatusCode::NOT_FOUND);
        };

        let def = function.def;
        tracing::debug!(
            site = %shared.site,
            function = %def.name,
            method = %request.method(),
            path = %path,
            "function request",
        );

        // Keys are checked before the handler is contacted, as the Functions host does.
        let key = request_key(&request);
        if !Shared::authorize(def, function.accepted_keys, &key) {
            tracing::debug!(site = %shared.site, function = %def.name, "missing or invalid function key");
            return empty_response(StatusCode::UNAUTHORIZED);
        }

        // The host's `FunctionInvocationMiddleware` responds to a disabled function with 404
        // after the key check, unless the key has the admin level, which only the master key has
        // ("Using any other type of key in the request returns an HTTP 404 response", Microsoft
        // Learn, "How to disable functions in Azure Functions").
        if function.disabled && !shared.has_master_key(&key) {
            tracing::debug!(site = %shared.site, function = %def.name, "function disabled by app setting");
            return empty_response(StatusCode::NOT_FOUND);
        }

        let request = &request;
        if shared.app.forwarding && def.http_only {
            shared.invoke(|port| shared.forward(port, request)).await
        } else {
            let params = &function.params;
            shared
                .invoke(|port| shared.invoke_json(port, def, params, request))
                .await
        }
    }

    /// Returns whether [`Self::handle`] would send this request (`target`, whose path is
    /// `path`) to a running handler as it is, with only the forwarding headers added. That
    /// holds when the URL is within the host's limit, the path has no dot segments, a route
    /// matches and `key` passes the function's `authLevel`. The function must also be enabled
    /// and forwarded (`enableForwardingHttpRequest`), and the handler up.
    ///
    /// The front end then encodes and sends the request itself. For `None` it calls
    /// [`Self::handle`], which responds as the host does. Deciding has no side effects, so
    /// either way the request is handled once.
    pub(crate) fn direct(
        &self,
        method: &Method,
        target: &str,
        path: &str,
        key: &str,
    ) -> Option<Direct<'_>> {
        let shared = &*self.shared;
        if target.len() > MAX_URL_BYTES || may_have_dot_segments(path) {
            return None;
        }
        let function = shared.route(path, method)?;
        let def = function.def;
        let forwarded = shared.app.forwarding && def.http_only;
        if function.disabled || !forwarded || !Shared::authorize(def, function.accepted_keys, key) {
            return None;
        }
        if !matches!(*shared.state.borrow(), WorkerState::Ready { .. }) {
            return None;
        }
        tracing::debug!(site = %shared.site, function = %def.name, %method, path, "function request");
        Some(Direct { shared })
    }

    /// Returns how many times the handler was restarted after it exited.
    pub fn restarts(&self) -> u32 {
        self.shared.restarts.load(Ordering::Relaxed)
    }

    /// Stops the supervisor and kills the handler process.
    pub async fn shutdown(&self) {
        self.stop.send_replace(true);
        let handle = lock(&self.supervisor).take();
        if let Some(handle) = handle {
            if let Err(error) = handle.await {
                tracing::warn!(
                    site = %self.shared.site,
                    %error,
                    "custom handler supervisor failed",
                );
            }
        }
        self.shared.state.send_replace(WorkerState::Stopped);
    }
}

impl Drop for FunctionsHost {
    fn drop(&mut self) {
        // Aborting drops the supervisor's `Child`, and `kill_on_drop` kills the process.
        if let Some(handle) = lock(&self.supervisor).take() {
            handle.abort();
        }
    }
}

impl fmt::Debug for FunctionsHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FunctionsHost")
            .field("site", &self.shared.site)
            .finish_non_exhaustive()
    }
}

// ---------------------------------------------------------------------------------------------
// Loading host.json and function.json
// ---------------------------------------------------------------------------------------------

fn invalid(path: &Path, field: &str, reason: &str) -> HostError {
    HostError::InvalidValue {
        path: path.to_path_buf(),
        field: field.to_string(),
        reason: reason.to_string(),
    }
}

/// Resolves `defaultExecutablePath` the way the host does: a relative path names a file under
/// the app, and a bare name that is not a file there (such as `node`) is looked up in `PATH`.
fn resolve_executable(root: &Path, working_dir: &Path, path: &str) -> PathBuf {
    let candidate = Path::new(path);
    if candidate.is_absolute() {
        return candidate.to_path_buf();
    }
    for base in [working_dir, root] {
        let full = base.join(candidate);
        if full.is_file() {
            return full;
        }
    }
    if candidate.components().count() == 1 {
        candidate.to_path_buf()
    } else {
        root.join(candidate)
    }
}

/// Reads every function folder in the order the host maps routes, returning the functions
/// and those in error. A route that ASP.NET Core cannot parse fails the whole app, as it stops
/// the host when the routes are mapped.
fn load_functions(
    root: &Path,
    route_prefix: &str,
) -> Result<(Vec<FunctionDef>, Vec<FunctionError>), HostError> {
    let read_error = |source| HostError::Read {
        path: root.to_path_buf(),
        source,
    };

    let mut folders = Vec::new();
    for entry in std::fs::read_dir(root).map_err(read_error)? {
        let entry = entry.map_err(read_error)?;
        let path = entry.path();
        if !path.join("function.json").is_file() {
            continue;
        }
        let Some(name) = path.file_name().and_then(|name| name.to_str()) else {
            continue;
        };
        folders.push((name.to_string(), path));
    }
    folders.sort_by(|(a, _), (b, _)| validate::compare_function_names(a, b));

    let mut functions = Vec::new();
    let mut errors = Vec::new();
    for (name, folder) in folders {
        let checked = read_function(&name, &folder).and_then(|function| match function {
            Some(function) => {
                validate::validate_http_function(&function, &functions).map(|()| Some(function))
            }
            None => Ok(None),
        });
        let function = match checked {
            Ok(Some(function)) => function,
            Ok(None) => continue,
            Err(error) => {
                tracing::error!(function = %name, %error, "function left out: the Functions host loads it in error");
                errors.push(error);
                continue;
            }
        };
        RouteTemplate::parse(
            &function.name,
            &folder.join("function.json"),
            route_prefix,
            validate::effective_route(&function),
        )?;
        functions.push(function);
    }
    Ok((functions, errors))
}

/// Reads one function folder in the order `HostFunctionMetadataProvider.ReadFunctionMetadata`
/// checks it: the folder name, then the JSON, then the bindings. Returns `None` for a function
/// without an HTTP trigger.
fn read_function(name: &str, folder: &Path) -> Result<Option<FunctionDef>, FunctionError> {
    if !validate::is_valid_function_name(name) {
        return Err(FunctionError::InvalidName {
            function: name.to_string(),
        });
    }
    let path = folder.join("function.json");
    let file = JsonFile::read(&path).map_err(|error| function_error(name, &path, error))?;
    parse_function(name, &file).map_err(|error| function_error(name, &path, error))
}

/// Turns an error from reading or parsing the function's `path` into an error of that function
/// only.
fn function_error(name: &str, path: &Path, error: HostError) -> FunctionError {
    let function = name.to_string();
    match error {
        HostError::Read { path, source } => FunctionError::Read {
            function,
            path,
            reason: source.to_string(),
        },
        HostError::Json { path, source } => FunctionError::InvalidJson {
            function,
            path,
            reason: source.to_string(),
            line: source.line(),
            column: source.column(),
        },
        HostError::InvalidValue {
            path,
            field,
            reason,
        } => FunctionError::InvalidValue {
            function,
            path,
            field,
            reason,
        },
        HostError::InvalidType {
            path,
            field,
            expected,
            found,
            location,
            ..
        } => FunctionError::InvalidValue {
            function,
            path,
            field,
            reason: format!(
                "expected {expected}, found {found} at line {}, column {}",
                location.line, location.column
            ),
        },
        // Reading and parsing function.json fail only in the ways above.
        other => FunctionError::InvalidValue {
            function,
            path: path.to_path_buf(),
            field: "function.json".to_string(),
            reason: other.to_string(),
        },
    }
}

/// Parses one function.json, returning `None` for a function without an HTTP trigger.
fn parse_function(name: &str, file: &JsonFile) -> Result<Option<FunctionDef>, HostError> {
    let (json, path) = (&file.value, file.path.as_path());
    // The host 2.x and later ignores `disabled` in function.json: a host maintainer states so,
    // and the 4.x `HostFunctionMetadataProvider` does not read it. Only the app setting
    // `AzureWebJobs.<name>.Disabled` disables a function, which keeps its route.
    if json
        .get("disabled")
        .is_some_and(|value| !matches!(value, Value::Null | Value::Bool(false)))
    {
        tracing::warn!(
            function = name,
            "`disabled` in function.json is ignored, as by the Functions host 2.x and later; set the app setting `AzureWebJobs.{name}.Disabled` to `true` instead"
        );
    }

    // `HostFunctionMetadataProvider.ParseFunctionMetadata`: "At least one binding must be
    // declared."
    let bindings = match json.get("bindings") {
        Some(Value::Array(bindings)) if !bindings.is_empty() => bindings.as_slice(),
        None | Some(Value::Array(_)) => {
            return Err(invalid(
                path,
                "bindings",
                "at least one binding must be declared",
            ))
        }
        Some(_) => return Err(invalid(path, "bindings", "expected an array")),
    };
    check_bindings(bindings, path)?;

    let binding_type = |binding: &Value| {
        binding
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_ascii_lowercase()
    };
    let direction = |binding: &Value| {
        binding
            .get("direction")
            .and_then(Value::as_str)
            .unwrap_or("in")
            .to_ascii_lowercase()
    };

    let Some((trigger_index, trigger)) = bindings
        .iter()
        .enumerate()
        .find(|(_, binding)| binding_type(binding) == "httptrigger")
    else {
        tracing::debug!(
            function = name,
            "skipping function without an httpTrigger binding"
        );
        return Ok(None);
    };

    // `authLevel` defaults to `function` because `HttpTriggerAttribute()` sets it.
    let trigger_field = FieldPath::default().key("bindings").index(trigger_index);
    let auth_level = match file.optional_str(trigger, &trigger_field.key("authLevel"))? {
        None => AuthLevel::Function,
        Some(level) => match level.to_ascii_lowercase().as_str() {
            "anonymous" => AuthLevel::Anonymous,
            "function" => AuthLevel::Function,
            "admin" => AuthLevel::Admin,
            // `system` and `user` exist in the SDK enum but are not valid for HTTP triggers.
            _ => {
                return Err(invalid(
                    path,
                    "authLevel",
                    &format!("`{level}` is not anonymous, function or admin"),
                ))
            }
        },
    };

    let methods = match trigger.get("methods") {
        None | Some(Value::Null) => None,
        Some(Value::Array(items)) => {
            let mut methods = Vec::new();
            for item in items {
                let method = item
                    .as_str()
                    .and_then(|text| Method::from_bytes(text.to_ascii_uppercase().as_bytes()).ok())
                    .ok_or_else(|| invalid(path, "methods", "expected HTTP method names"))?;
                methods.push(method);
            }
            Some(methods)
        }
        Some(_) => return Err(invalid(path, "methods", "expected an array of strings")),
    };

    // The host replaces an empty or blank route with the function name
    // (`ScriptHost.ValidateHttpFunction` tests `string.IsNullOrWhiteSpace`).
    let route = file
        .optional_str(trigger, &trigger_field.key("route"))?
        .filter(|route| !route.trim().is_empty())
        .map(str::to_string);

    let request_binding = file
        .optional_str(trigger, &trigger_field.key("name"))?
        .unwrap_or("req")
        .to_string();
    let response_binding = bindings
        .iter()
        .find(|binding| binding_type(binding) == "http" && direction(binding) == "out")
        .and_then(|binding| binding.get("name").and_then(Value::as_str))
        .map(str::to_string);
    let http_only = bindings.len() == 2 && response_binding.is_some();

    Ok(Some(FunctionDef {
        name: name.to_string(),
        auth_level,
        methods,
        route,
        request_binding,
        response_binding,
        http_only,
    }))
}

/// Checks the bindings as `FunctionDescriptorProvider.ValidateFunction` does when the host
/// creates the function. Each binding is an object with a valid name and a `type`, and a
/// `$return` binding is an output. No two names are equal ignoring case. Exactly one binding
/// that is not an output has a type ending in `trigger`, ignoring case.
fn check_bindings(bindings: &[Value], path: &Path) -> Result<(), HostError> {
    let mut names: Vec<&str> = Vec::new();
    let mut triggers = 0;
    for (index, binding) in bindings.iter().enumerate() {
        // The field names the binding by its index, so that `check` can point at it.
        let field = |name: &str| format!("bindings[{index}].{name}");
        let Value::Object(fields) = binding else {
            return Err(invalid(
                path,
                &format!("bindings[{index}]"),
                "expected an object",
            ));
        };

        let name = fields.get("name").and_then(Value::as_str);
        let Some(name) = name.filter(|name| validate::is_valid_binding_name(name)) else {
            let written_name = fields
                .get("name")
                .map_or("(none)".to_string(), Value::to_string);
            return Err(invalid(
                path,
                &field("name"),
                &format!(
                    "{written_name} is not a valid binding name: use an ASCII letter followed by up to 127 ASCII letters or digits, or `$return`"
                ),
            ));
        };
        let output = fields
            .get("direction")
            .and_then(Value::as_str)
            .is_some_and(|direction| direction.eq_ignore_ascii_case("out"));
        if name == "$return" && !output {
            return Err(invalid(
                path,
                &field("direction"),
                "a `$return` binding must have the direction `out`",
            ));
        }
        let Some(binding_type) = fields.get("type").and_then(Value::as_str) else {
            return Err(invalid(
                path,
                &field("type"),
                &format!("binding `{name}` has no `type`"),
            ));
        };

        if names.iter().any(|seen| seen.eq_ignore_ascii_case(name)) {
            return Err(invalid(
                path,
                &field("name"),
                &format!("two bindings are named `{name}`, and binding names must be unique ignoring case"),
            ));
        }
        names.push(name);

        let trigger_suffix = binding_type
            .len()
            .checked_sub("trigger".len())
            .and_then(|start| binding_type.get(start..))
            .is_some_and(|suffix| suffix.eq_ignore_ascii_case("trigger"));
        if trigger_suffix && !output {
            triggers += 1;
        }
    }

    match triggers {
        1 => Ok(()),
        0 => Err(invalid(
            path,
            "bindings",
            "no trigger binding: a function needs exactly one input binding whose type ends in `Trigger`",
        )),
        _ => Err(invalid(
            path,
            "bindings",
            "several trigger bindings: a function can have only one",
        )),
    }
}

/// Parses every function's route, in `app.functions` order, and marks the functions that the
/// app settings in `env` disable.
fn compile_routes(
    app: &FunctionApp,
    env: &[(String, String)],
) -> Result<Vec<CompiledRoute>, HostError> {
    app.functions
        .iter()
        .map(|function| {
            let route = validate::effective_route(function);
            let function_json = app.root.join(&function.name).join("function.json");
            let template =
                RouteTemplate::parse(&function.name, &function_json, &app.route_prefix, route)?;
            let disabled = disabled_by_setting(&function.name, env);
            if disabled {
                tracing::info!(function = %function.name, "function disabled by app setting: requests to it get 404 unless they carry the master key");
            }
            Ok(CompiledRoute {
                def: function.clone(),
                template,
                disabled,
                accepted_keys: Vec::new(),
            })
        })
        .collect()
}

/// Builds a request for each function of `app`, in `app.functions` order, that the host routes
/// to that function. Its path comes from [`RouteTemplate::example_path`]. Its method is GET
/// when the function's `methods` allow it, else the first allowed method, and when an earlier
/// route takes that request, the function's other methods are tried in order. A function gets
/// the reason instead when `methods` is empty, no sample path fits its route, or earlier routes
/// take the sample request for every method.
pub(crate) fn example_requests(app: &FunctionApp) -> Vec<Result<(Method, String), String>> {
    // The routes were parsed when the app was loaded, so this parse does not fail.
    let routes = match compile_routes(app, &[]) {
        Ok(routes) => routes,
        Err(error) => {
            let reason = error.to_string();
            return app.functions.iter().map(|_| Err(reason.clone())).collect();
        }
    };
    routes
        .iter()
        .enumerate()
        .map(|(index, route)| example_request(&routes, index, route))
        .collect()
}

fn example_request(
    routes: &[CompiledRoute],
    index: usize,
    route: &CompiledRoute,
) -> Result<(Method, String), String> {
    let methods = match &route.def.methods {
        None => vec![Method::GET],
        Some(methods) if methods.is_empty() => {
            return Err(
                "its `methods` list is empty, so no request method matches its route".to_owned(),
            )
        }
        Some(methods) => {
            let mut ordered: Vec<Method> = methods
                .iter()
                .filter(|method| **method == Method::GET)
                .cloned()
                .collect();
            ordered.extend(
                methods
                    .iter()
                    .filter(|method| **method != Method::GET)
                    .cloned(),
            );
            ordered
        }
    };
    let path = route.template.example_path().map_err(|reason| {
        format!(
            "no sample path for the route `{}`: {reason}",
            validate::effective_route(&route.def)
        )
    })?;

    let segments: Vec<Cow<'_, str>> = path
        .trim_start_matches('/')
        .split('/')
        .map(Cow::Borrowed)
        .collect();
    let mut first_reason = None;
    for method in methods {
        let found = routes.iter().position(|candidate| {
            candidate.accepts_method(&method) && candidate.template.matches(&segments).is_some()
        });
        let reason = match found {
            Some(found) if found == index => return Ok((method, path)),
            Some(found) => format!(
                "the host routes the sample request {method} {path} to the function `{}`, which comes first in name order",
                routes[found].def.name
            ),
            None => format!("no route matches the sample request {method} {path}"),
        };
        first_reason.get_or_insert(reason);
    }
    Err(first_reason.unwrap_or_default())
}

/// Returns whether an app setting disables the function, as the WebJobs SDK's
/// `FunctionIndexer.IsDisabled` decides: `AzureWebJobs.<name>.Disabled` or
/// `AzureWebJobs_<name>_Disabled` set to `true` or `1`, ignoring case. Setting names ignore case,
/// as .NET configuration keys do, and a later setting replaces an earlier one of the same name.
pub(crate) fn disabled_by_setting(name: &str, env: &[(String, String)]) -> bool {
    let enabled = |setting: String| {
        env.iter()
            .rev()
            .find(|(key, _)| key.eq_ignore_ascii_case(&setting))
            .is_some_and(|(_, value)| value == "1" || value.eq_ignore_ascii_case("true"))
    };
    enabled(format!("AzureWebJobs.{name}.Disabled"))
        || enabled(format!("AzureWebJobs_{name}_Disabled"))
}

// ---------------------------------------------------------------------------------------------
// Request routing, authorization and invocation
// ---------------------------------------------------------------------------------------------

/// Backoff before the first restart. It doubles up to [`MAX_BACKOFF`].
const INITIAL_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// A handler that stayed up this long is healthy again, so the next restart starts from
/// [`INITIAL_BACKOFF`].
const STABLE_UPTIME: Duration = Duration::from_secs(30);

/// Interval between readiness probes.
const PROBE_INTERVAL: Duration = Duration::from_millis(100);

/// How long a request that found the handler port closed waits for the supervisor to notice
/// the exit before it gives up with 502.
const EXIT_NOTICE_WAIT: Duration = Duration::from_secs(2);

/// App Service front ends end requests after 230 seconds, so a handler gets no longer.
pub(crate) const INVOCATION_TIMEOUT: Duration = Duration::from_secs(230);

/// Longest URL (path and query) the Functions host accepts: "the URL length is limited to
/// 4 KB (4,096 bytes)" (Microsoft Learn, "Azure Functions HTTP trigger", Limits).
// NOTE: Learn gives the limit, not the status of a longer URL; 414 is the HTTP status for it
// (RFC 9110, section 15.5.15). See docs/fidelity.md.
const MAX_URL_BYTES: usize = 4096;

/// Number of stderr lines kept for startup error messages.
const STDERR_TAIL_LINES: usize = 20;

/// Maximum length in bytes of an output line forwarded to tracing in one event.
const MAX_LINE_BYTES: usize = 16 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum WorkerState {
    Starting,
    Ready { port: u16 },
    Stopped,
}

struct CompiledRoute {
    def: FunctionDef,
    template: RouteTemplate,
    /// Set by the app setting `AzureWebJobs.<name>.Disabled`. The host still maps a disabled
    /// function's route, so it hides later routes that match the same requests.
    disabled: bool,
    /// The keys that pass the function's `authLevel`, from [`Shared::accepted_keys`].
    accepted_keys: Vec<String>,
}

/// A request that [`FunctionsHost::direct`] found the host would forward unchanged.
pub(crate) struct Direct<'h> {
    shared: &'h Shared,
}

impl Direct<'_> {
    /// Returns how long the handler may take to respond.
    pub(crate) fn invocation_timeout(&self) -> Duration {
        self.shared.invocation_timeout
    }

    /// Sends the encoded request to the handler, with the host's retry and error responses,
    /// and returns the response for the caller.
    ///
    /// The caller bounds the time it waits, by [`Self::invocation_timeout`] with
    /// [`invocation_timed_out`] as the response. A timer of its own can live as long as its
    /// connection, where one per request took a few percent of the front end's time.
    pub(crate) async fn send(&self, encoded: &[u8], kind: EncodedKind) -> Reply {
        let shared = self.shared;
        shared
            .invoke(|port| async move {
                let result = shared.client.send_encoded(port, encoded, kind).await;
                match shared.outcome(result) {
                    Ok(response) => Attempt::Done(response),
                    Err(attempt) => attempt,
                }
            })
            .await
    }
}

impl CompiledRoute {
    /// Checks the request method as the route's `HttpMethodRouteConstraint` does: against
    /// the function's `methods`, ignoring case.
    fn accepts_method(&self, method: &Method) -> bool {
        self.def.methods.as_ref().is_none_or(|methods| {
            methods
                .iter()
                .any(|allowed| allowed.as_str().eq_ignore_ascii_case(method.as_str()))
        })
    }
}

struct Shared {
    site: String,
    app: FunctionApp,
    /// Routes in the order the host registers them, which is `app.functions` order.
    routes: Vec<CompiledRoute>,
    env: Vec<(String, String)>,
    keys: FunctionKeys,
    startup_timeout: Duration,
    invocation_timeout: Duration,
    state: watch::Sender<WorkerState>,
    restarts: AtomicU32,
    client: HandlerClient,
}

struct RouteMatch<'a> {
    def: &'a FunctionDef,
    disabled: bool,
    accepted_keys: &'a [String],
    params: IndexMap<String, String>,
}

/// Outcome of one attempt to reach the handler.
///
/// NOTE: a request already sent when the handler exits fails with 502 and is not retried,
/// because the handler may have acted on it. Only refused connections are retried.
enum Attempt<R = Response<Bytes>> {
    /// The response: the handler's, or the host's own.
    Done(R),
    /// The connection was refused, so the request was never sent and may be retried.
    Unreachable(String),
}

impl Shared {
    /// Finds the function for a request as the host's `RouteCollection` does: the first route,
    /// in registration order, whose method constraint and template both match. A request that
    /// matches a route only by path gets no function, so the host responds with 404, not 405.
    fn route(&self, path: &str, method: &Method) -> Option<RouteMatch<'_>> {
        let trimmed = path.trim_start_matches('/');
        let escaped = trimmed.contains('%');
        // Split only when a template needs the segments (see `RouteTemplate::matches_literal`).
        let mut segments = None;

        // Each template starts with the route prefix, so it matches the whole path. The method
        // is checked first because it costs less than the template.
        self.routes
            .iter()
            .filter(|route| route.accepts_method(method))
            .find_map(|route| {
                let literal = match escaped {
                    false => route.template.matches_literal(trimmed),
                    true => None,
                };
                let params = match literal {
                    Some(true) => IndexMap::new(),
                    Some(false) => return None,
                    None => {
                        let segments = segments.get_or_insert_with(|| path_segments(trimmed));
                        route.template.matches(segments)?
                    }
                };
                Some(RouteMatch {
                    def: &route.def,
                    disabled: route.disabled,
                    accepted_keys: &route.accepted_keys,
                    params,
                })
            })
    }

    /// Checks the request's key (from [`request_key`]) against the keys that
    /// [`Self::accepted_keys`] found for the function.
    fn authorize(def: &FunctionDef, accepted: &[String], key: &str) -> bool {
        if def.auth_level == AuthLevel::Anonymous {
            return true;
        }
        if key.is_empty() {
            return false;
        }

        // Every candidate is compared so the time taken does not reveal which key matched.
        let mut matched = false;
        for candidate in accepted {
            matched |= constant_time_eq(candidate.as_bytes(), key.as_bytes());
        }
        matched
    }

    /// Returns the keys that pass a function's `authLevel`: the master key, and for `function`
    /// also the host keys and the function's own keys. They are found once, at start, because
    /// looking them up took a tenth of the Functions host's time per request.
    fn accepted_keys(keys: &FunctionKeys, def: &FunctionDef) -> Vec<String> {
        let function_keys = if def.auth_level == AuthLevel::Function {
            keys.functions.get(&def.name).or_else(|| {
                keys.functions
                    .iter()
                    .find(|(name, _)| name.eq_ignore_ascii_case(&def.name))
                    .map(|(_, keys)| keys)
            })
        } else {
            None
        };
        let host_keys = (def.auth_level == AuthLevel::Function).then_some(&keys.host);
        std::iter::once(keys.master.as_str())
            .chain(
                host_keys
                    .into_iter()
                    .flat_map(|keys| keys.values())
                    .map(String::as_str),
            )
            .chain(
                function_keys
                    .into_iter()
                    .flat_map(|keys| keys.values())
                    .map(String::as_str),
            )
            .filter(|candidate| !candidate.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// Returns whether the request's key is the master key, the only key with the admin level.
    fn has_master_key(&self, key: &str) -> bool {
        !key.is_empty() && constant_time_eq(self.keys.master.as_bytes(), key.as_bytes())
    }

    /// Runs `attempt` against the handler's port until it is done, waiting for the handler to
    /// start or restart. Each way of sending a request has its own `attempt`, so the future
    /// of one way does not carry the state of the others.
    async fn invoke<F, A, R>(&self, mut attempt: F) -> R
    where
        F: FnMut(u16) -> A,
        A: std::future::Future<Output = Attempt<R>>,
        R: From<Response<Bytes>>,
    {
        let mut retried = false;
        loop {
            let Some(port) = self.wait_for_worker().await else {
                return text_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &format!(
                        "the custom handler for site `{}` is not running\n",
                        self.site
                    ),
                )
                .into();
            };

            match attempt(port).await {
                Attempt::Done(response) => return response,
                Attempt::Unreachable(reason) if !retried => {
                    // The handler may have just exited. The supervisor gets a moment to notice,
                    // and then the request waits for the restart instead of failing.
                    retried = true;
                    tracing::debug!(
                        site = %self.site,
                        port,
                        %reason,
                        "custom handler unreachable, waiting for restart",
                    );
                    let mut state = self.state.subscribe();
                    let changed = tokio::time::timeout(
                        EXIT_NOTICE_WAIT,
                        state.wait_for(|state| *state != WorkerState::Ready { port }),
                    )
                    .await;
                    if changed.is_err() {
                        return bad_gateway(&self.site, &reason).into();
                    }
                }
                Attempt::Unreachable(reason) => return bad_gateway(&self.site, &reason).into(),
            }
        }
    }

    /// Waits until the handler is ready, up to the startup timeout. `None` means 503.
    async fn wait_for_worker(&self) -> Option<u16> {
        // The common case needs no timer: the handler is already up.
        if let WorkerState::Ready { port } = *self.state.borrow() {
            return Some(port);
        }
        let mut state = self.state.subscribe();
        let ready = tokio::time::timeout(
            self.startup_timeout,
            state.wait_for(|state| *state != WorkerState::Starting),
        )
        .await;
        match ready {
            Ok(Ok(state)) => match *state {
                WorkerState::Ready { port } => Some(port),
                _ => None,
            },
            _ => None,
        }
    }

    /// Sends the original request to the handler at the original path.
    async fn forward(&self, port: u16, request: &Request<Bytes>) -> Attempt {
        let target = request
            .uri()
            .path_and_query()
            .map_or("/", |path_and_query| path_and_query.as_str());
        let extra_headers = host_headers();
        let outbound = OutboundRequest {
            method: request.method(),
            target,
            headers: request.headers(),
            extra_headers: &extra_headers,
            body: request.body(),
        };
        match self.send(port, &outbound).await {
            Ok(response) => Attempt::Done(response),
            Err(attempt) => attempt,
        }
    }

    /// Invokes the function through the JSON contract: POST `/<functionName>` with the
    /// request under `Data.<trigger name>`, then reads the `http` output.
    async fn invoke_json(
        &self,
        port: u16,
        def: &FunctionDef,
        params: &IndexMap<String, String>,
        request: &Request<Bytes>,
    ) -> Attempt {
        let payload = invoke_payload(def, params, request);
        let body = match serde_json::to_vec(&payload) {
            Ok(body) => body,
            Err(error) => {
                tracing::error!(
                    site = %self.site,
                    function = %def.name,
                    %error,
                    "failed to encode the invoke payload",
                );
                return Attempt::Done(empty_response(StatusCode::INTERNAL_SERVER_ERROR));
            }
        };

        let function_path: String =
            percent_encoding::utf8_percent_encode(&def.name, percent_encoding::NON_ALPHANUMERIC)
                .collect();
        let target = format!("/{function_path}");
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        let extra_headers = host_headers();
        let outbound = OutboundRequest {
            method: &Method::POST,
            target: &target,
            headers: &headers,
            extra_headers: &extra_headers,
            body: &body,
        };

        let response = match self.send(port, &outbound).await {
            Ok(response) => response,
            Err(attempt) => return attempt,
        };

        // A non-2xx response fails the invocation, which the host reports as 500.
        if !response.status().is_success() {
            tracing::warn!(
                site = %self.site,
                function = %def.name,
                status = %response.status(),
                "custom handler failed the invocation",
            );
            return Attempt::Done(empty_response(StatusCode::INTERNAL_SERVER_ERROR));
        }
        let result: Value = match serde_json::from_slice(response.body()) {
            Ok(result) => result,
            Err(error) => {
                tracing::warn!(
                    site = %self.site,
                    function = %def.name,
                    %error,
                    "custom handler returned invalid JSON",
                );
                return Attempt::Done(empty_response(StatusCode::INTERNAL_SERVER_ERROR));
            }
        };

        if let Some(Value::Array(logs)) = get_ignore_case(&result, "Logs") {
            for line in logs {
                let line = line
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| line.to_string());
                tracing::info!(
                    target: "subnetlock::handler",
                    site = %self.site,
                    function = %def.name,
                    "{line}",
                );
            }
        }

        Attempt::Done(invocation_response(&self.site, def, &result))
    }

    /// Sends a request to the handler and buffers the response body.
    async fn send(
        &self,
        port: u16,
        request: &OutboundRequest<'_>,
    ) -> Result<Response<Bytes>, Attempt> {
        self.bounded(self.client.send(port, request)).await
    }

    /// Waits for an exchange with the handler up to the invocation timeout, and turns its
    /// failure into the host's response or into a retry.
    async fn bounded<R: From<Response<Bytes>>>(
        &self,
        exchange: impl std::future::Future<Output = Result<R, SendError>>,
    ) -> Result<R, Attempt<R>> {
        match tokio::time::timeout(self.invocation_timeout, exchange).await {
            Ok(result) => self.outcome(result),
            Err(_) => Err(Attempt::Done(
                invocation_timed_out(self.invocation_timeout).into(),
            )),
        }
    }

    /// Turns the result of an exchange with the handler into the response, the host's own
    /// response for a failure, or a retry.
    fn outcome<R: From<Response<Bytes>>>(
        &self,
        result: Result<R, SendError>,
    ) -> Result<R, Attempt<R>> {
        match result {
            Ok(response) => Ok(response),
            Err(error @ SendError::Connect { .. }) => {
                Err(Attempt::Unreachable(crate::with_causes(&error)))
            }
            Err(error) => Err(Attempt::Done(
                bad_gateway(&self.site, &crate::with_causes(&error)).into(),
            )),
        }
    }
}

/// Returns the response to an invocation that took longer than `timeout`,
/// [`INVOCATION_TIMEOUT`] outside tests.
///
/// "If a function that uses the HTTP trigger doesn't complete within 230 seconds, the Azure
/// Load Balancer will time out and return an HTTP 502 error" (Microsoft Learn, "Azure
/// Functions HTTP trigger", Limits).
pub(crate) fn invocation_timed_out(timeout: Duration) -> Response<Bytes> {
    text_response(
        StatusCode::BAD_GATEWAY,
        &format!(
            "the custom handler did not respond within {} seconds\n",
            timeout.as_secs_f64()
        ),
    )
}

/// Removes `.` and `..` segments from the request path (RFC 3986, section 5.2.4). Kestrel, the
/// server under the Functions host, does this before routing (its `PathNormalizer`), after
/// decoding, so an escaped dot (`%2E`) counts as a dot. So `/api/x/../f` and
/// `/api/x/%2e%2e/f` reach `f`, and the handler gets the path the host routed by.
fn normalise_path(request: &mut Request<Bytes>) {
    let path = request.uri().path();
    if !may_have_dot_segments(path) {
        return;
    }

    let mut output: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    for (index, segment) in segments.iter().enumerate() {
        let last = index + 1 == segments.len();
        match dot_segment(segment) {
            Some(1) if last => output.push(""),
            Some(1) => {}
            Some(_) => {
                output.pop();
                if last {
                    output.push("");
                }
            }
            None => output.push(segment),
        }
    }

    let mut normalised = String::with_capacity(path.len());
    for segment in &output {
        normalised.push('/');
        normalised.push_str(segment);
    }
    if normalised.is_empty() {
        normalised.push('/');
    }
    if let Some(query) = request.uri().query() {
        normalised.push('?');
        normalised.push_str(query);
    }

    let mut parts = request.uri().clone().into_parts();
    match normalised.parse() {
        Ok(path_and_query) => parts.path_and_query = Some(path_and_query),
        Err(_) => return,
    }
    if let Ok(uri) = http::Uri::from_parts(parts) {
        *request.uri_mut() = uri;
    }
}

/// Splits a path, without its leading slashes, into segments as the host routes them. They
/// borrow from the path unless they hold a percent sign, and are decoded as Kestrel decodes
/// the path, which keeps `%2F`: `a%2Fb` is one segment, and a route value gets `a%2Fb`. One
/// empty last segment, from a trailing `/`, is dropped.
fn path_segments(trimmed: &str) -> SmallVec<[Cow<'_, str>; 8]> {
    // Paths are short, so one plain pass costs less than a vectorised search per separator.
    let mut segments: SmallVec<[Cow<'_, str>; 8]> = SmallVec::new();
    let mut escaped = false;
    let mut start = 0;
    for (index, &byte) in trimmed.as_bytes().iter().enumerate() {
        escaped |= byte == b'%';
        if byte == b'/' {
            segments.push(Cow::Borrowed(&trimmed[start..index]));
            start = index + 1;
        }
    }
    segments.push(Cow::Borrowed(&trimmed[start..]));
    if escaped {
        for segment in &mut segments {
            if let Cow::Borrowed(text) = *segment {
                *segment = percent::decode_segment(text);
            }
        }
    }
    if segments.last().is_some_and(|segment| segment.is_empty()) {
        segments.pop();
    }
    segments
}

/// Returns whether `path` may hold a `.` or `..` segment. Every dot segment starts with `/.`
/// or `/%2`, and most paths have neither.
fn may_have_dot_segments(path: &str) -> bool {
    let bytes = path.as_bytes();
    (0..bytes.len()).any(|index| {
        bytes[index] == b'/' && {
            let after = &bytes[index + 1..];
            after.starts_with(b".") || after.starts_with(b"%2")
        }
    })
}

/// Returns 1 for a `.` segment and 2 for a `..` segment, each dot written as `.` or as `%2E` in
/// either case, and `None` for any other segment.
fn dot_segment(segment: &str) -> Option<usize> {
    let mut rest = segment;
    let mut dots = 0;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('.') {
            rest = after;
        } else if rest
            .get(..3)
            .is_some_and(|escape| escape.eq_ignore_ascii_case("%2e"))
        {
            rest = &rest[3..];
        } else {
            return None;
        }
        dots += 1;
    }
    (1..=2).contains(&dots).then_some(dots)
}

/// Builds the invoke payload for one HTTP-triggered invocation.
fn invoke_payload(
    def: &FunctionDef,
    params: &IndexMap<String, String>,
    request: &Request<Bytes>,
) -> Value {
    let headers = request.headers();

    let scheme = headers
        .get("x-forwarded-proto")
        .and_then(|value| value.to_str().ok())
        .or_else(|| request.uri().scheme_str())
        .unwrap_or("http");
    let host = headers
        .get(header::HOST)
        .and_then(|value| value.to_str().ok())
        .or_else(|| {
            request
                .uri()
                .authority()
                .map(|authority| authority.as_str())
        })
        .unwrap_or("localhost");
    let path_and_query = request
        .uri()
        .path_and_query()
        .map(|pq| pq.as_str())
        .unwrap_or("/");

    let mut query = Map::new();
    for (name, value) in query_pairs(request.uri().query()) {
        query.entry(name).or_insert(Value::String(value));
    }

    let mut header_map = Map::new();
    for (name, value) in headers {
        let value = Value::String(String::from_utf8_lossy(value.as_bytes()).into_owned());
        match header_map
            .entry(name.as_str())
            .or_insert_with(|| Value::Array(Vec::new()))
        {
            Value::Array(values) => values.push(value),
            other => *other = Value::Array(vec![value]),
        }
    }

    let params_json: Map<String, Value> = params
        .iter()
        .map(|(name, value)| (name.clone(), Value::String(value.clone())))
        .collect();

    let http_request = json!({
        "Url": format!("{scheme}://{host}{path_and_query}"),
        "Method": request.method().as_str(),
        "Query": query,
        "Headers": header_map,
        "Params": params_json,
        "Identities": [],
        "Body": body_value(headers, request.body()),
    });

    // Trigger metadata repeats the query, headers and route values, but not the request.
    let mut metadata = Map::new();
    metadata.insert("Query".to_string(), http_request["Query"].clone());
    metadata.insert("Headers".to_string(), http_request["Headers"].clone());
    for (name, value) in params_json {
        metadata.insert(name, value);
    }
    metadata.insert(
        "sys".to_string(),
        json!({
            "MethodName": def.name,
            "UtcNow": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "RandGuid": new_uuid_v4(),
        }),
    );

    let mut data = Map::new();
    data.insert(def.request_binding.clone(), http_request);
    json!({ "Data": data, "Metadata": metadata })
}

/// Encodes the body as text, or as base64 for binary content types and non-UTF-8 bytes, which
/// is how the host serializes a byte array.
fn body_value(headers: &HeaderMap, body: &Bytes) -> Value {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let binary = content_type.starts_with("application/octet-stream")
        || content_type.starts_with("multipart/");
    match std::str::from_utf8(body) {
        Ok(text) if !binary => Value::String(text.to_string()),
        _ => Value::String(base64::engine::general_purpose::STANDARD.encode(body)),
    }
}

/// Turns the handler's invocation result into the caller's response.
fn invocation_response(site: &str, def: &FunctionDef, result: &Value) -> Response<Bytes> {
    let output = match def.response_binding.as_deref() {
        Some("$return") => get_ignore_case(result, "ReturnValue").map(|value| match value {
            // A string return value that contains a JSON object is the response object.
            Value::String(text) => serde_json::from_str::<Value>(text)
                .ok()
                .filter(Value::is_object)
                .unwrap_or_else(|| value.clone()),
            other => other.clone(),
        }),
        Some(name) => get_ignore_case(result, "Outputs")
            .and_then(|outputs| get_ignore_case(outputs, name))
            .cloned(),
        None => None,
    };

    // NOTE: the status for a function without an http output is not verified against the
    // Functions host. 204 means that the invocation succeeded with nothing to return.
    let Some(output) = output.filter(|value| !value.is_null()) else {
        return empty_response(StatusCode::NO_CONTENT);
    };

    let Value::Object(_) = output else {
        return body_response(StatusCode::OK, &output, None);
    };

    let status = match get_ignore_case(&output, "statusCode")
        .or_else(|| get_ignore_case(&output, "status"))
    {
        None | Some(Value::Null) => Some(StatusCode::OK),
        Some(Value::Number(number)) => number
            .as_u64()
            .and_then(|code| u16::try_from(code).ok())
            .and_then(|code| StatusCode::from_u16(code).ok()),
        Some(Value::String(text)) => text
            .trim()
            .parse::<u16>()
            .ok()
            .and_then(|code| StatusCode::from_u16(code).ok()),
        Some(_) => None,
    };
    let Some(status) = status else {
        tracing::warn!(
            site,
            function = %def.name,
            "custom handler returned an invalid status code",
        );
        return empty_response(StatusCode::INTERNAL_SERVER_ERROR);
    };

    let body = get_ignore_case(&output, "body")
        .cloned()
        .unwrap_or(Value::Null);
    body_response(status, &body, get_ignore_case(&output, "headers"))
}

fn body_response(status: StatusCode, body: &Value, headers: Option<&Value>) -> Response<Bytes> {
    let (bytes, json_body) = match body {
        Value::Null => (Bytes::new(), false),
        Value::String(text) => (Bytes::from(text.clone()), false),
        other => (Bytes::from(other.to_string()), true),
    };

    let mut response = Response::new(bytes);
    *response.status_mut() = status;

    if let Some(Value::Object(headers)) = headers {
        for (name, value) in headers {
            let Ok(name) = HeaderName::from_bytes(name.as_bytes()) else {
                continue;
            };
            let values: Vec<String> = match value {
                Value::Array(items) => items.iter().map(json_scalar_text).collect(),
                other => vec![json_scalar_text(other)],
            };
            for value in values {
                if let Ok(value) = HeaderValue::from_str(&value) {
                    response.headers_mut().append(name.clone(), value);
                }
            }
        }
    }

    if json_body && !response.headers().contains_key(header::CONTENT_TYPE) {
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
    }
    response
}

fn json_scalar_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// Looks up an object member ignoring case, as the host's JSON reader does.
fn get_ignore_case<'a>(value: &'a Value, name: &str) -> Option<&'a Value> {
    let object = value.as_object()?;
    object.get(name).or_else(|| {
        object
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value)
    })
}

/// Splits a query into decoded name and value pairs, in order, skipping empty pairs.
fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    query
        .unwrap_or_default()
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (
                percent::decode_query_part(name).into_owned(),
                percent::decode_query_part(value).into_owned(),
            )
        })
        .collect()
}

/// The headers the Functions host sets on every request to the handler, replacing any the
/// caller sent under the same names.
pub(crate) fn host_headers() -> [(HeaderName, HeaderValue); 3] {
    let uuid = uuid_v4_text();
    // A UUID contains only hexadecimal digits and hyphens, which are valid header bytes.
    let invocation_id = HeaderValue::from_bytes(&uuid)
        .unwrap_or_else(|_| HeaderValue::from_static("00000000-0000-4000-8000-000000000000"));
    [
        (X_INVOCATION_ID, invocation_id),
        (X_HOST_VERSION, HeaderValue::from_static(HOST_VERSION)),
        (
            header::USER_AGENT,
            HeaderValue::from_static(HOST_USER_AGENT),
        ),
    ]
}

/// The names of the headers [`host_headers`] sets, in the order it sets them.
pub(crate) const HOST_HEADER_NAMES: [&str; 3] = [
    "x-azure-functions-invocationid",
    "x-azure-functions-hostversion",
    "user-agent",
];

/// Writes the headers [`host_headers`] returns as HTTP/1.1 header lines, for a request the
/// front end encodes itself.
pub(crate) fn write_host_headers(out: &mut Vec<u8>) {
    out.extend_from_slice(HOST_HEADER_NAMES[0].as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(&uuid_v4_text());
    out.extend_from_slice(b"\r\n");
    for (name, value) in [
        (HOST_HEADER_NAMES[1], HOST_VERSION),
        (HOST_HEADER_NAMES[2], HOST_USER_AGENT),
    ] {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

/// The names of the headers [`host_headers`] sets, as constants: `from_static` called at run
/// time validates the name on every request.
const X_INVOCATION_ID: HeaderName = HeaderName::from_static(HOST_HEADER_NAMES[0]);
const X_HOST_VERSION: HeaderName = HeaderName::from_static(HOST_HEADER_NAMES[1]);

/// The header that carries a function key, named once: a `&str` name is parsed on every use.
const X_FUNCTIONS_KEY: HeaderName = HeaderName::from_static("x-functions-key");

/// Returns the key a request presents, or an empty string. A present `x-functions-key` header
/// wins over `code`, even when it is empty, as in the host's `AuthenticationLevelHandler`
/// (Azure/azure-functions-host).
fn request_key(request: &Request<Bytes>) -> Cow<'_, str> {
    key_from(
        request
            .headers()
            .get(&X_FUNCTIONS_KEY)
            .map(HeaderValue::as_bytes),
        request.uri().query().unwrap_or_default(),
    )
}

/// Returns the key given by the first `x-functions-key` header's value, when there is one, or
/// else by the `code` parameter of `query`; see [`request_key`].
pub(crate) fn key_from<'r>(header: Option<&'r [u8]>, query: &'r str) -> Cow<'r, str> {
    match header {
        Some(value) => String::from_utf8_lossy(value),
        None => query_value(query, "code").unwrap_or_default(),
    }
}

/// Returns the value of the first query parameter called `name`, ignoring case, decoded as
/// [`percent::decode_query_part`] does. ASP.NET Core, which the Functions host runs on, compares query names
/// ignoring case, so `?CODE=` carries a key as `?code=` does.
fn query_value<'q>(query: &'q str, name: &str) -> Option<Cow<'q, str>> {
    // Byte positions found with `memchr`, not `str::split`: its searcher cost more than the
    // rest of this on every request. `&` and `=` are ASCII, so every slice starts and ends on a character boundary.
    let bytes = query.as_bytes();
    let mut start = 0;
    while start <= bytes.len() {
        let end =
            memchr::memchr(b'&', &bytes[start..]).map_or(bytes.len(), |offset| start + offset);
        let pair = &query[start..end];
        let (raw_name, raw_value) = match memchr::memchr(b'=', pair.as_bytes()) {
            Some(equals) => (&pair[..equals], &pair[equals + 1..]),
            None => (pair, ""),
        };
        if percent::decode_query_part(raw_name).eq_ignore_ascii_case(name) {
            return Some(percent::decode_query_part(raw_value));
        }
        start = end + 1;
    }
    None
}

fn empty_response(status: StatusCode) -> Response<Bytes> {
    let mut response = Response::new(Bytes::new());
    *response.status_mut() = status;
    response
}

fn text_response(status: StatusCode, body: &str) -> Response<Bytes> {
    let mut response = Response::new(Bytes::copy_from_slice(body.as_bytes()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn bad_gateway(site: &str, reason: &str) -> Response<Bytes> {
    tracing::warn!(site, %reason, "request to the custom handler failed");
    text_response(
        StatusCode::BAD_GATEWAY,
        "the custom handler did not return a response\n",
    )
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    // The length is not secret: every key has the same generated length.
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Formats 16 random bytes as a version 4 UUID.
fn new_uuid_v4() -> String {
    // The text is hexadecimal digits and hyphens only.
    String::from_utf8_lossy(&uuid_v4_text()).into_owned()
}

/// The text of a random version 4 UUID, in lower case, as ASCII bytes.
fn uuid_v4_text() -> [u8; 36] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    // An invocation id must be unique, not secret, so a per-thread generator seeded from the
    // operating system replaces the cryptographic one, which took a few hundred instructions
    // for every request.
    thread_local! {
        static GENERATOR: std::cell::RefCell<rand::rngs::SmallRng> =
            std::cell::RefCell::new(rand::SeedableRng::from_entropy());
    }
    let mut bytes = [0u8; 16];
    GENERATOR.with_borrow_mut(|generator| rand::RngCore::fill_bytes(generator, &mut bytes));
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;

    // Where each byte's two digits go in `8-4-4-4-12`.
    const POSITIONS: [usize; 16] = [0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34];
    let mut text = [b'-'; 36];
    for (byte, at) in bytes.iter().zip(POSITIONS) {
        text[at] = HEX[usize::from(byte >> 4)];
        text[at + 1] = HEX[usize::from(byte & 0x0f)];
    }
    text
}

fn random_key() -> String {
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

// ---------------------------------------------------------------------------------------------
// Handler process: spawn, readiness, output capture, supervision
// ---------------------------------------------------------------------------------------------

/// One running handler process.
struct Worker {
    child: Child,
    port: u16,
    stderr_tail: Arc<Mutex<VecDeque<String>>>,
    output_tasks: Vec<JoinHandle<()>>,
}

impl Worker {
    async fn kill(&mut self) {
        if let Err(error) = self.child.kill().await {
            tracing::debug!(%error, "custom handler already exited");
        }
    }

    fn stderr_tail(&self) -> String {
        let tail = lock(&self.stderr_tail);
        if tail.is_empty() {
            "(none)".to_string()
        } else {
            tail.iter().cloned().collect::<Vec<_>>().join(" | ")
        }
    }

    /// Waits briefly for the output readers so the stderr tail contains the last lines.
    async fn drain_output(&mut self) {
        for task in self.output_tasks.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(1), task).await;
        }
    }
}

/// Spawns a handler and waits until it responds, killing it on failure.
async fn start_worker(shared: &Shared) -> Result<Worker, HostError> {
    let mut worker = spawn_worker(shared)?;
    match wait_ready(shared, &mut worker).await {
        Ok(()) => Ok(worker),
        Err(error) => {
            worker.kill().await;
            Err(error)
        }
    }
}

/// First port of the range handler ports are picked from.
const HANDLER_PORT_BASE: u16 = 20_000;

/// Number of ports in that range.
const HANDLER_PORT_COUNT: u16 = 10_000;

/// Picks a loopback port for a handler that is free at this moment.
///
/// The port is released before the handler binds it, so another process could take it in
/// between. The range lies below Linux's default ephemeral ports (32768 to 60999, in
/// `/proc/sys/net/ipv4/ip_local_port_range`) and below the dynamic ports of RFC 6335 (49152
/// to 65535). So a process that binds port 0 or opens a connection does not get it in that
/// moment, and only one that binds this very port can.
// NOTE: a port taken in between still makes the handler fail to bind, and the readiness probe
// may then reach the process that took it. A system whose ephemeral range includes
// 20000 to 29999 gets no benefit from the range.
fn pick_handler_port() -> std::io::Result<u16> {
    let start: u16 = rand::random::<u16>() % HANDLER_PORT_COUNT;
    let mut last_error = None;
    for attempt in 0..64 {
        let port = HANDLER_PORT_BASE + (start + attempt * 151) % HANDLER_PORT_COUNT;
        match std::net::TcpListener::bind(("127.0.0.1", port)) {
            Ok(_) => return Ok(port),
            Err(error) => last_error = Some(error),
        }
    }
    // Every try was taken: fall back to a port the system picks.
    tracing::debug!(error = ?last_error, "no free handler port in the preferred range");
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
}

fn spawn_worker(shared: &Shared) -> Result<Worker, HostError> {
    let app = &shared.app;

    let port = pick_handler_port().map_err(|source| HostError::Port {
        site: shared.site.clone(),
        source,
    })?;

    let worker_id = new_uuid_v4();
    let arguments: Vec<String> = app
        .arguments
        .iter()
        .map(|argument| expand_variables(argument, &shared.env))
        .collect();

    let mut command = Command::new(&app.executable);
    command
        .args(&arguments)
        .current_dir(&app.working_dir)
        .envs(shared.env.iter().map(|(name, value)| (name, value)))
        .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
        .env("FUNCTIONS_CUSTOMHANDLER_WORKER_ID", &worker_id)
        .env("FUNCTIONS_HTTPWORKER_PORT", port.to_string())
        .env("FUNCTIONS_HTTPWORKER_ID", &worker_id)
        .env("FUNCTIONS_APP_ROOT_PATH", &app.root)
        .env("WEBSITE_SITE_NAME", &shared.site)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);

    let mut child = command.spawn().map_err(|source| HostError::Spawn {
        site: shared.site.clone(),
        executable: app.executable.clone(),
        source,
    })?;
    tracing::info!(
        site = %shared.site,
        executable = %app.executable.display(),
        port,
        pid = child.id(),
        "custom handler started",
    );

    let stderr_tail = Arc::new(Mutex::new(VecDeque::new()));
    let mut output_tasks = Vec::new();
    if let Some(stdout) = child.stdout.take() {
        output_tasks.push(tokio::spawn(pump_lines(
            stdout,
            shared.site.clone(),
            "stdout",
            None,
        )));
    }
    if let Some(stderr) = child.stderr.take() {
        output_tasks.push(tokio::spawn(pump_lines(
            stderr,
            shared.site.clone(),
            "stderr",
            Some(Arc::clone(&stderr_tail)),
        )));
    }

    Ok(Worker {
        child,
        port,
        stderr_tail,
        output_tasks,
    })
}

/// Polls `GET /` until any HTTP response arrives, the process exits, or the timeout passes.
async fn wait_ready(shared: &Shared, worker: &mut Worker) -> Result<(), HostError> {
    let deadline = Instant::now() + shared.startup_timeout;
    let executable = shared.app.executable.clone();

    loop {
        if let Ok(Some(status)) = worker.child.try_wait() {
            worker.drain_output().await;
            return Err(HostError::Exited {
                site: shared.site.clone(),
                executable,
                status: describe_exit(status),
                stderr: worker.stderr_tail(),
            });
        }

        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(HostError::TimedOut {
                site: shared.site.clone(),
                executable,
                port: worker.port,
                timeout: shared.startup_timeout,
                stderr: worker.stderr_tail(),
            });
        }

        if probe(
            &shared.client,
            worker.port,
            remaining.min(Duration::from_secs(2)),
        )
        .await
        {
            return Ok(());
        }
        tokio::time::sleep(PROBE_INTERVAL.min(remaining)).await;
    }
}

async fn probe(client: &HandlerClient, port: u16, timeout: Duration) -> bool {
    let extra_headers = host_headers();
    let request = OutboundRequest {
        method: &Method::GET,
        target: "/",
        headers: &HeaderMap::new(),
        extra_headers: &extra_headers,
        body: &[],
    };
    matches!(
        tokio::time::timeout(timeout, client.send(port, &request)).await,
        Ok(Ok(_))
    )
}

/// How long an exited handler waits for the emulator's own stop before it counts as a crash.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(300);

/// Restarts the handler whenever it exits, until `stop` is set.
async fn supervise(shared: Arc<Shared>, mut worker: Worker, mut stop: watch::Receiver<bool>) {
    let mut backoff = INITIAL_BACKOFF;

    loop {
        let ready_at = Instant::now();
        tokio::select! {
            status = worker.child.wait() => {
                let status = match status {
                    Ok(status) => describe_exit(status),
                    Err(error) => format!("unknown status ({error})"),
                };
                shared.state.send_replace(WorkerState::Starting);
                worker.drain_output().await;
                // A terminal's Ctrl-C reaches the handler too, and it may exit just before the
                // emulator begins to stop. A stop that follows at once makes this exit part of
                // the shutdown, not a crash.
                let stopping =
                    tokio::time::timeout(SHUTDOWN_GRACE, wait_for_stop(&mut stop)).await.is_ok();
                if stopping {
                    shared.state.send_replace(WorkerState::Stopped);
                    tracing::info!(site = %shared.site, %status, "custom handler exited as the emulator stops");
                    return;
                }
                tracing::warn!(
                    site = %shared.site,
                    %status,
                    stderr = %worker.stderr_tail(),
                    "custom handler exited; restarting",
                );
            }
            _ = wait_for_stop(&mut stop) => {
                worker.kill().await;
                shared.state.send_replace(WorkerState::Stopped);
                tracing::info!(site = %shared.site, "custom handler stopped");
                return;
            }
        }

        if ready_at.elapsed() >= STABLE_UPTIME {
            backoff = INITIAL_BACKOFF;
        }

        loop {
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = wait_for_stop(&mut stop) => {
                    shared.state.send_replace(WorkerState::Stopped);
                    return;
                }
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
            shared.restarts.fetch_add(1, Ordering::Relaxed);

            let started = tokio::select! {
                started = start_worker(&shared) => started,
                _ = wait_for_stop(&mut stop) => {
                    shared.state.send_replace(WorkerState::Stopped);
                    return;
                }
            };
            match started {
                Ok(new_worker) => {
                    worker = new_worker;
                    tracing::info!(
                        site = %shared.site,
                        port = worker.port,
                        restarts = shared.restarts.load(Ordering::Relaxed),
                        "custom handler ready after restart",
                    );
                    shared
                        .state
                        .send_replace(WorkerState::Ready { port: worker.port });
                    break;
                }
                Err(error) => {
                    tracing::warn!(
                        site = %shared.site,
                        error = %crate::with_causes(&error),
                        retry_in_ms = backoff.as_millis() as u64,
                        "custom handler restart failed",
                    );
                }
            }
        }
    }
}

async fn wait_for_stop(stop: &mut watch::Receiver<bool>) {
    // A dropped sender means the host is gone, which also stops the supervisor.
    let _ = stop.wait_for(|stopped| *stopped).await;
}

fn describe_exit(status: ExitStatus) -> String {
    if let Some(code) = status.code() {
        return format!("exit code {code}");
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(signal) = status.signal() {
            return format!("signal {signal}");
        }
    }
    "an unknown status".to_string()
}

/// Forwards each output line to tracing and keeps the last stderr lines.
async fn pump_lines<R: AsyncRead + Unpin>(
    reader: R,
    site: String,
    stream: &'static str,
    tail: Option<Arc<Mutex<VecDeque<String>>>>,
) {
    let mut reader = BufReader::new(reader);
    let mut line = Vec::new();

    // A read error ends the output like end of file does.
    while let Ok(buffer) = reader.fill_buf().await {
        if buffer.is_empty() {
            break;
        }

        let (consumed, complete) = match buffer.iter().position(|byte| *byte == b'\n') {
            Some(end) => {
                line.extend_from_slice(&buffer[..end]);
                (end + 1, true)
            }
            None => {
                line.extend_from_slice(buffer);
                (buffer.len(), line.len() >= MAX_LINE_BYTES)
            }
        };
        reader.consume(consumed);

        if complete {
            emit_line(&site, stream, &line, tail.as_deref());
            line.clear();
        }
    }

    if !line.is_empty() {
        emit_line(&site, stream, &line, tail.as_deref());
    }
}

fn emit_line(
    site: &str,
    stream: &'static str,
    line: &[u8],
    tail: Option<&Mutex<VecDeque<String>>>,
) {
    let text = String::from_utf8_lossy(line);
    let text = text.trim_end_matches('\r');
    tracing::info!(target: "subnetlock::handler", site, stream, "{text}");

    if let Some(tail) = tail {
        let mut tail = lock(tail);
        if tail.len() >= STDERR_TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(text.to_string());
    }
}

/// Expands `%NAME%` from the handler's environment, then the emulator's. Unknown names stay
/// as written, as .NET `Environment.ExpandEnvironmentVariables` leaves them.
fn expand_variables(text: &str, env: &[(String, String)]) -> String {
    let lookup = |name: &str| {
        env.iter()
            .rev()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
            .or_else(|| std::env::var(name).ok())
    };

    let mut output = String::new();
    let mut rest = text;
    while let Some(start) = rest.find('%') {
        output.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        let expanded = after.find('%').and_then(|end| {
            let name = &after[..end];
            let value = if name.is_empty() { None } else { lookup(name) }?;
            Some((value, &after[end + 1..]))
        });
        match expanded {
            Some((value, remainder)) => {
                output.push_str(&value);
                rest = remainder;
            }
            None => {
                output.push('%');
                rest = after;
            }
        }
    }
    output.push_str(rest);
    output
}

#[cfg(test)]
#[allow(clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn handler_port_is_free_and_below_ephemeral_range() {
        let range = HANDLER_PORT_BASE..HANDLER_PORT_BASE + HANDLER_PORT_COUNT;
        for _ in 0..20 {
            let port = pick_handler_port().expect("port");
            assert!(range.contains(&port), "{port}");
            // Free: a handler can bind it.
            let listener = std::net::TcpListener::bind(("127.0.0.1", port));
            assert!(listener.is_ok(), "{port}: {listener:?}");
        }
    }

    #[test]
    fn handler_port_skips_taken_ports() {
        // Hold many ports of the range; the picked one is never among them.
        let held_listeners: Vec<std::net::TcpListener> = (0..200)
            .filter_map(|offset| {
                std::net::TcpListener::bind(("127.0.0.1", HANDLER_PORT_BASE + offset * 50)).ok()
            })
            .collect();
        let held_ports: Vec<u16> = held_listeners
            .iter()
            .filter_map(|listener| listener.local_addr().ok().map(|address| address.port()))
            .collect();
        for _ in 0..20 {
            let port = pick_handler_port().expect("port");
            assert!(!held_ports.contains(&port), "{port} is held by the test");
        }
    }

    #[test]
    fn load_errors_leave_the_cause_to_the_report() {
        let dir = tempfile::tempdir().expect("temp dir");
        let missing = load_function_app(&dir.path().join("nowhere"), None).expect_err("missing");
        std::fs::write(dir.path().join("host.json"), "{,}").expect("host.json");
        let invalid = load_function_app(dir.path(), None).expect_err("invalid JSON");
        for error in [missing, invalid] {
            let cause = std::error::Error::source(&error)
                .expect("cause")
                .to_string();
            assert!(!error.to_string().contains(&cause), "{error}");
            assert_eq!(crate::with_causes(&error).matches(&cause).count(), 1);
        }
    }

    #[test]
    fn load_skips_byte_order_mark() {
        let dir = tempfile::tempdir().expect("temp dir");
        let host = r#"{"version": "2.0", "customHandler": {"description": {"defaultExecutablePath": "handler"}}}"#;
        std::fs::write(dir.path().join("host.json"), format!("\u{feff}{host}")).expect("host.json");
        std::fs::create_dir(dir.path().join("hello")).expect("function dir");
        let function = r#"{"bindings": [{"type": "httpTrigger", "name": "req"}]}"#;
        std::fs::write(
            dir.path().join("hello/function.json"),
            format!("\u{feff}{function}"),
        )
        .expect("function.json");

        let app = load_function_app(dir.path(), None).expect("app with byte order marks");
        assert!(app.function_errors.is_empty(), "{:?}", app.function_errors);
        assert_eq!(app.functions.len(), 1);
        assert_eq!(app.functions[0].name, "hello");
    }

    #[test]
    fn query_value_decodes_like_a_form() {
        let cases: [(&str, Option<&str>); 11] = [
            ("code=abc", Some("abc")),
            ("CODE=abc", Some("abc")),
            ("Code=a%2Db&code=second", Some("a-b")),
            ("a=1&code=abc&code=second", Some("abc")),
            ("&&code=abc", Some("abc")),
            ("code", Some("")),
            ("c%6Fde=abc", Some("abc")),
            ("code=a%2Bb+c", Some("a+b c")),
            ("codes=abc&xcode=1", None),
            ("", None),
            ("code%=x&code=y", Some("y")),
        ];
        for (query, expected) in cases {
            assert_eq!(query_value(query, "code").as_deref(), expected, "{query}");
            // The first pair of that name in the whole list agrees.
            let decoded = query_pairs(Some(query))
                .into_iter()
                .find(|(name, _)| name.eq_ignore_ascii_case("code"))
                .map(|(_, value)| value);
            assert_eq!(decoded.as_deref(), expected, "{query}");
        }
    }

    #[test]
    fn dot_segments_are_removed_before_routing() {
        let cases = [
            ("/api/x/../f?code=k", "/api/f?code=k"),
            ("/api/./f", "/api/f"),
            ("/api/f/.", "/api/f/"),
            ("/api/f/..", "/api/"),
            ("/../../api/f", "/api/f"),
            ("/api/x/%2E%2E/f", "/api/f"),
            ("/api/x/%2e./f", "/api/f"),
            ("/api/%2e/f", "/api/f"),
            ("/api/%2e%2e%2e/f", "/api/%2e%2e%2e/f"),
            ("/api/%2ex/f", "/api/%2ex/f"),
            ("/api/f..", "/api/f.."),
            (
                "http://b.azurewebsites.net/a/../f",
                "http://b.azurewebsites.net/f",
            ),
        ];
        for (target, expected) in cases {
            let mut request = Request::new(Bytes::new());
            *request.uri_mut() = target.parse().unwrap();
            normalise_path(&mut request);
            assert_eq!(request.uri().to_string(), expected, "{target}");
        }
    }

    #[test]
    fn query_decode_keeps_invalid_escapes() {
        let cases = [
            ("plain", "plain"),
            ("a+b", "a b"),
            ("%41%2b", "A+"),
            ("caf%C3%A9", "caf\u{e9}"),
            ("%FF", "%FF"),
            ("a%ffb", "a%ffb"),
            ("%C3", "%C3"),
            ("%C3%A9%FF%41", "\u{e9}%FFA"),
            ("%E2%82", "%E2%82"),
            ("%", "%"),
            ("%4", "%4"),
            ("%zz+", "%zz "),
            ("\u{e9}%41", "\u{e9}A"),
        ];
        for (text, expected) in cases {
            assert_eq!(percent::decode_query_part(text), expected, "{text}");
        }
    }

    #[test]
    fn expand_variables_cases() {
        let env = vec![("DB".to_string(), "conn".to_string())];
        let cases = [
            ("--db=%DB%", "--db=conn"),
            ("%DB%%DB%", "connconn"),
            ("100%", "100%"),
            ("%SUBNETLOCK_SURELY_UNSET%", "%SUBNETLOCK_SURELY_UNSET%"),
            ("%%DB%", "%conn"),
        ];
        for (input, expected) in cases {
            assert_eq!(expand_variables(input, &env), expected, "input `{input}`");
        }
    }

    #[test]
    fn uuid_v4_format() {
        let id = new_uuid_v4();
        assert_eq!(id.len(), 36);
        assert_eq!(id.as_bytes()[14], b'4');
        assert!(matches!(id.as_bytes()[19], b'8' | b'9' | b'a' | b'b'));
        let hyphens: Vec<usize> = id.match_indices('-').map(|(at, _)| at).collect();
        assert_eq!(hyphens, vec![8, 13, 18, 23]);
        assert!(id.bytes().all(|b| b == b'-' || b.is_ascii_hexdigit()));
    }

    #[test]
    fn constant_time_eq_cases() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }

    #[test]
    fn parse_function_defaults() {
        let json = json!({"bindings": [
            {"type": "httpTrigger", "direction": "in", "name": "req"},
            {"type": "http", "direction": "out", "name": "res"}
        ]});
        let function = parse_function("hello", &JsonFile::from_value("function.json", json))
            .expect("parse")
            .expect("http function");
        assert_eq!(function.auth_level, AuthLevel::Function);
        assert_eq!(function.methods, None);
        assert_eq!(function.response_binding.as_deref(), Some("res"));
        assert!(function.http_only);
    }

    #[test]
    fn parse_function_requires_bindings() {
        for json in [json!({}), json!({"bindings": []})] {
            let error = parse_function("f", &JsonFile::from_value("function.json", json.clone()))
                .expect_err("no bindings");
            assert_eq!(
                error.to_string(),
                "invalid `bindings` in `function.json`: at least one binding must be declared",
                "{json}"
            );
        }
    }

    #[test]
    fn check_bindings_cases() {
        let trigger = json!({"type": "httpTrigger", "direction": "in", "name": "req"});
        let output = json!({"type": "http", "direction": "out", "name": "res"});
        let accepted = [
            vec![trigger.clone()],
            vec![trigger.clone(), output.clone()],
            vec![
                json!({"type": "HTTPTRIGGER", "name": "req"}),
                json!({"type": "http", "direction": "OUT", "name": "$return"}),
            ],
            // An output whose type ends in `Trigger` is not a trigger.
            vec![
                trigger.clone(),
                json!({"type": "fakeTrigger", "direction": "out", "name": "other"}),
            ],
        ];
        for bindings in accepted {
            let result = check_bindings(&bindings, Path::new("function.json"));
            assert!(result.is_ok(), "{bindings:?}: {result:?}");
        }

        let rejected = [
            (
                vec![json!("httpTrigger")],
                "invalid `bindings[0]` in `function.json`: expected an object",
            ),
            (
                vec![json!({"type": "httpTrigger"})],
                "(none) is not a valid binding name",
            ),
            (
                vec![json!({"type": "httpTrigger", "name": "my-req"})],
                "\"my-req\" is not a valid binding name",
            ),
            (
                vec![trigger.clone(), json!({"type": "http", "name": "$return"})],
                "invalid `bindings[1].direction` in `function.json`: a `$return` binding must have the direction `out`",
            ),
            (vec![json!({"name": "req"})], "binding `req` has no `type`"),
            (
                vec![
                    trigger.clone(),
                    json!({"type": "http", "direction": "out", "name": "REQ"}),
                ],
                "two bindings are named `REQ`",
            ),
            (vec![output.clone()], "no trigger binding"),
            (
                vec![
                    trigger.clone(),
                    json!({"type": "queueTrigger", "name": "msg"}),
                ],
                "several trigger bindings",
            ),
        ];
        for (bindings, expected) in rejected {
            let error = check_bindings(&bindings, Path::new("function.json"))
                .expect_err("invalid bindings")
                .to_string();
            assert!(error.contains(expected), "{bindings:?}: {error}");
        }
    }

    #[test]
    fn parse_function_ignores_disabled() {
        let json = json!({"disabled": true, "bindings": [{"type": "httpTrigger", "name": "req"}]});
        let function =
            parse_function("f", &JsonFile::from_value("function.json", json)).expect("parse");
        assert!(function.is_some());
    }

    #[test]
    fn disabled_by_setting_cases() {
        let env = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(key, value)| (key.to_string(), value.to_string()))
                .collect()
        };
        let disabled = [
            env(&[("AzureWebJobs.hello.Disabled", "true")]),
            env(&[("azurewebjobs.HELLO.disabled", "TRUE")]),
            env(&[("AzureWebJobs_hello_Disabled", "1")]),
            env(&[
                ("AzureWebJobs.hello.Disabled", "false"),
                ("AzureWebJobs.hello.Disabled", "True"),
            ]),
        ];
        for settings in disabled {
            assert!(disabled_by_setting("hello", &settings), "{settings:?}");
        }

        let enabled = [
            env(&[]),
            env(&[("AzureWebJobs.hello.Disabled", "yes")]),
            env(&[("AzureWebJobs.hello.Disabled", "0")]),
            env(&[("AzureWebJobs.hello2.Disabled", "true")]),
            env(&[("AzureWebJobs:hello:Disabled", "true")]),
            env(&[
                ("AzureWebJobs.hello.Disabled", "true"),
                ("AzureWebJobs.hello.Disabled", "false"),
            ]),
        ];
        for settings in enabled {
            assert!(!disabled_by_setting("hello", &settings), "{settings:?}");
        }
    }

    #[test]
    fn example_requests_follow_route_order_and_methods() {
        let dir = tempfile::tempdir().expect("temp dir");
        let host = r#"{"version": "2.0", "customHandler": {"description": {"defaultExecutablePath": "handler"}}}"#;
        std::fs::write(dir.path().join("host.json"), host).expect("host.json");
        // `alpha` comes first in name order and takes every GET under `things/`, which hides
        // `beta` for GET but not for PUT, and hides `zeta`, which is probed only with GET.
        let functions = [
            (
                "alpha",
                json!({"route": "things/{name}", "methods": ["get"]}),
            ),
            (
                "beta",
                json!({"route": "things/special", "methods": ["put", "get"]}),
            ),
            (
                "gamma",
                json!({"route": "g/{id:int}", "methods": ["delete", "post"]}),
            ),
            ("delta", json!({"route": "d/{id:int}", "methods": ["get"]})),
            (
                "epsilon",
                json!({"route": "things/{name}/x", "methods": []}),
            ),
            ("zeta", json!({"route": "things/other"})),
        ];
        for (name, trigger) in &functions {
            let mut binding = json!({"type": "httpTrigger", "direction": "in", "name": "req"});
            for (key, value) in trigger.as_object().expect("object") {
                binding[key] = value.clone();
            }
            std::fs::create_dir(dir.path().join(name)).expect("function dir");
            std::fs::write(
                dir.path().join(name).join("function.json"),
                json!({"bindings": [binding]}).to_string(),
            )
            .expect("function.json");
        }
        let app = load_function_app(dir.path(), None).expect("app");
        let examples: IndexMap<&str, Result<(Method, String), String>> = app
            .functions
            .iter()
            .map(|function| function.name.as_str())
            .zip(example_requests(&app))
            .collect();

        assert_eq!(
            examples["alpha"],
            Ok((Method::GET, "/api/things/1".to_owned()))
        );
        assert_eq!(
            examples["beta"],
            Ok((Method::PUT, "/api/things/special".to_owned()))
        );
        let hidden = examples["zeta"].as_ref().expect_err("alpha takes GET");
        assert!(hidden.contains("`alpha`"), "{hidden}");
        assert_eq!(
            examples["gamma"],
            Ok((Method::DELETE, "/api/g/1".to_owned()))
        );
        assert_eq!(examples["delta"], Ok((Method::GET, "/api/d/1".to_owned())));
        let empty = examples["epsilon"].as_ref().expect_err("no method");
        assert!(empty.contains("`methods` list is empty"), "{empty}");
    }

    #[test]
    fn parse_function_skips_queue_trigger() {
        let json =
            json!({"bindings": [{"type": "queueTrigger", "direction": "in", "name": "msg"}]});
        let function =
            parse_function("q", &JsonFile::from_value("function.json", json)).expect("parse");
        assert_eq!(function, None);
    }

    #[test]
    fn parse_function_rejects_auth_level() {
        let json =
            json!({"bindings": [{"type": "httpTrigger", "name": "req", "authLevel": "system"}]});
        let error =
            parse_function("f", &JsonFile::from_value("function.json", json)).expect_err("invalid");
        assert_eq!(
            error.to_string(),
            "invalid `authLevel` in `function.json`: `system` is not anonymous, function or admin"
        );
    }

    #[test]
    fn invocation_response_reads_outputs() {
        let def = FunctionDef {
            name: "order".to_string(),
            auth_level: AuthLevel::Anonymous,
            methods: None,
            route: None,
            request_binding: "req".to_string(),
            response_binding: Some("res".to_string()),
            http_only: true,
        };
        let result = json!({"Outputs": {"res": {"statusCode": "201", "body": "made", "headers": {"X-A": "1"}}}});
        let response = invocation_response("site", &def, &result);
        assert_eq!(response.status(), StatusCode::CREATED);
        assert_eq!(response.body().as_ref(), b"made");
        assert_eq!(
            response.headers().get("x-a").map(|v| v.as_bytes()),
            Some(&b"1"[..])
        );
    }

    #[test]
    fn invocation_response_reads_return_value() {
        let def = FunctionDef {
            name: "order".to_string(),
            auth_level: AuthLevel::Anonymous,
            methods: None,
            route: None,
            request_binding: "req".to_string(),
            response_binding: Some("$return".to_string()),
            http_only: true,
        };
        let result = json!({"ReturnValue": "{\"statusCode\": 202, \"body\": {\"ok\": true}}"});
        let response = invocation_response("site", &def, &result);
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        assert_eq!(response.body().as_ref(), br#"{"ok":true}"#);
    }
}
