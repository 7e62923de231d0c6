//! Starting and stopping one emulated deployment.
//!
//! [`Emulator::start`] deploys a template the way Azure would (evaluating it with the
//! simulated resource provider, or taking a topology built from a Terraform plan, and refusing
//! it when Azure's validation would fail it), then starts
//! the front end, one Functions host and one egress proxy per bound app, and the control API.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use serde::Serialize;
use subnetlock_access::{CompiledSiteAccess, EngineOptions, Source};
use subnetlock_arm::{EvalOptions, Parameters, Scope, Value};
use subnetlock_model::{
    build_topology, Finding, KeyMode, ScaleUnit, SimulatedProvider, SiteKeys, Topology,
};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::bindings::Bindings;
use crate::caller::{Caller, CallerError};
use crate::decisions::{DecisionLog, DecisionRecord};
use crate::egress::{start_egress_proxy, EgressContext, EgressProxy, Handoff, UnparsedHandoff};
use crate::frontend::{self, FrontEnd, RequestBody};
use crate::functions_host::{load_function_app, FunctionKeys, FunctionsHost, HostConfig};
use crate::tls::LocalCa;
use crate::{pages, reaper, EmulatorError};

/// Largest accepted [`EmulatorConfig::front_end_threads`]. Each front-end thread has its own
/// runtime and opens six file descriptors: `up` had 20 open with one thread and 68 with nine
/// (counted in `/proc/<pid>/fd` on Linux). A mistyped count such as 100000 would exhaust the
/// open-file limit part way through the start.
// NOTE: no Azure fact sets this bound. A count below it can still fail to start under a low
// open-file limit, which `EmulatorError::FrontEndThreads` reports.
pub const MAX_FRONT_END_THREADS: usize = 1024;

/// Returns the default front-end thread count: one per CPU core, as
/// `std::thread::available_parallelism` reports them, and at most [`MAX_FRONT_END_THREADS`].
fn default_front_end_threads() -> NonZeroUsize {
    let cores = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
    NonZeroUsize::new(cores.min(MAX_FRONT_END_THREADS)).unwrap_or(NonZeroUsize::MIN)
}

/// How long shutdown waits for the front-end threads to end.
const FRONT_END_STOP: Duration = Duration::from_secs(5);

/// Configuration of one emulated deployment: what to deploy and where to listen.
#[derive(Clone, Debug)]
pub struct EmulatorConfig {
    /// The ARM template to deploy; its path also names the deployment when `topology` is set.
    pub template: PathBuf,
    /// A topology another input format already built (a Terraform plan); when set it is
    /// deployed instead of evaluating `template`, and the parameters are not read.
    pub topology: Option<Topology>,
    /// The deployment already in place, when this one redeploys over it; transitions Azure
    /// rejects (such as a plan SKU that drops regional VNet integration) stop the start.
    pub previous: Option<Topology>,
    /// The scale unit the plans land on; on an older one, regional VNet integration on Basic
    /// and Standard plans fails the deployment.
    pub scale_unit: ScaleUnit,
    pub parameters: Option<PathBuf>,
    /// Inline parameter values; they win over the parameters file.
    pub parameter_values: Vec<(String, Value)>,
    pub bindings: Bindings,
    pub scope: Scope,
    /// Address of every listener; must be a loopback address.
    pub listen: IpAddr,
    /// Port of the plain HTTP front end; 0 picks a free one.
    pub http_port: u16,
    /// Port of the TLS front end; 0 picks a free one.
    pub https_port: u16,
    /// Threads that serve both front-end listeners, each with a single-threaded runtime of its
    /// own, at most [`MAX_FRONT_END_THREADS`]. [`EmulatorConfig::new`] sets one per CPU core.
    pub front_end_threads: NonZeroUsize,
    /// Directory for the state file, the local CA and the decision log.
    pub state_dir: PathBuf,
    /// Run the binding file's `build` commands before starting.
    pub run_builds: bool,
    /// Replaces handler executables by site pattern, ahead of the binding file.
    pub executable_overrides: Vec<(String, PathBuf)>,
    pub engine: EngineOptions,
    pub startup_timeout: Duration,
    /// How long a function may take to respond before the caller gets 502: App Service's
    /// 230 seconds unless a test shortens it.
    pub invocation_timeout: Duration,
    /// How long a write to a caller of the front end may wait without progress, for a caller
    /// that does not read its responses, before the connection is closed:
    /// [`crate::frontend::WRITE_TIMEOUT`] unless a test shortens it.
    pub write_timeout: Duration,
    /// Computes the findings the control API serves from the deployed topology and `bindings`,
    /// once per start. The CLI passes `check`'s analysis, so that they equal what `check`
    /// reports. Without it they are the deployment's own findings.
    pub findings_of: Option<FindingsOf>,
}

/// A function that computes a deployment's findings from its topology, its bindings and the
/// engine options.
#[derive(Clone)]
pub struct FindingsOf(Arc<FindingsFn>);

type FindingsFn = dyn Fn(Topology, &Bindings, &EngineOptions) -> Vec<Finding> + Send + Sync;

impl FindingsOf {
    pub fn new(
        compute: impl Fn(Topology, &Bindings, &EngineOptions) -> Vec<Finding> + Send + Sync + 'static,
    ) -> Self {
        FindingsOf(Arc::new(compute))
    }
}

impl std::fmt::Debug for FindingsOf {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("FindingsOf(..)")
    }
}

impl EmulatorConfig {
    pub fn new(template: PathBuf, state_dir: PathBuf) -> Self {
        EmulatorConfig {
            template,
            topology: None,
            previous: None,
            scale_unit: ScaleUnit::default(),
            parameters: None,
            parameter_values: Vec::new(),
            bindings: Bindings::default(),
            scope: Scope::default(),
            listen: IpAddr::V4(Ipv4Addr::LOCALHOST),
            http_port: 0,
            https_port: 0,
            front_end_threads: default_front_end_threads(),
            state_dir,
            run_builds: true,
            executable_overrides: Vec::new(),
            engine: EngineOptions::default(),
            startup_timeout: Duration::from_secs(60),
            invocation_timeout: crate::functions_host::INVOCATION_TIMEOUT,
            write_timeout: crate::frontend::WRITE_TIMEOUT,
            findings_of: None,
        }
    }
}

/// One function of a running app, with its invoke URL and key.
#[derive(Clone, Debug, Serialize)]
pub struct FunctionInfo {
    pub name: String,
    pub auth_level: String,
    /// The route template from function.json, or the function name when it sets no route.
    pub route: String,
    /// `https://<host>/<route prefix>/<route>` without the key. The route may contain
    /// parameters such as `{id}`, so see `example` for a URL to send.
    pub url: String,
    pub key: String,
    /// Set by the app setting `AzureWebJobs.<name>.Disabled`: the function keeps its route, and
    /// a request to it gets 404 unless it carries the master key.
    pub disabled: bool,
    /// Allowed HTTP methods in upper case, or `None` for all methods.
    pub methods: Option<Vec<String>>,
    /// A request that the Functions host routes to this function.
    pub example: ExampleRequest,
}

/// A concrete request for one function, or why none could be built.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ExampleRequest {
    /// Send `method` to `path` on the site's host to reach the function.
    Available { method: String, path: String },
    /// No request reaches the function, or no simple one could be built, for `reason`.
    Unavailable { reason: String },
}

/// A function that the Functions host loads in error: it gets no route, so a request to it
/// gets 404, while the other functions of the app run.
#[derive(Clone, Debug, Serialize)]
pub struct FunctionErrorInfo {
    pub name: String,
    /// The error message, which names the file or value at fault.
    pub error: String,
    /// The next step that fixes the function, when the error has one.
    pub help: Option<String>,
}

/// A bound function app whose Functions host does not start: the app fails to load as a whole,
/// such as one with an invalid host.json, or its custom handler fails to spawn, exits or does
/// not respond in time. Every request to the main site that the access restrictions allow gets
/// 503, while the other sites run.
#[derive(Clone, Debug, Serialize)]
pub struct AppErrorInfo {
    /// The app folder the binding file names.
    pub function_app: PathBuf,
    /// The error message with its causes, which names the file, value or handler executable at
    /// fault, and for a handler that exited its exit status and last stderr lines.
    pub error: String,
    /// The next step that fixes the app, when the error has one.
    pub help: Option<String>,
}

impl AppErrorInfo {
    fn new(function_app: &Path, error: &crate::functions_host::HostError) -> AppErrorInfo {
        AppErrorInfo {
            function_app: function_app.to_path_buf(),
            error: crate::with_causes(error),
            help: miette::Diagnostic::help(error).map(|help| help.to_string()),
        }
    }

    fn log(&self, site: &str) {
        tracing::error!(
            site,
            function_app = %self.function_app.display(),
            error = %self.error,
            "the Functions host of the site does not start, so requests that the access restrictions allow get 503 while the other sites run"
        );
    }
}

/// One site of a running deployment.
#[derive(Clone, Debug, Serialize)]
pub struct SiteInfo {
    pub name: String,
    pub host: String,
    pub scm_host: String,
    /// Whether local code serves the main site.
    pub bound: bool,
    pub functions: Vec<FunctionInfo>,
    /// Functions of the bound app that are in error, in the order the host loads them.
    pub function_errors: Vec<FunctionErrorInfo>,
    /// The reason the Functions host of the bound app does not start, when it does not. Such a
    /// site has no functions.
    pub app_error: Option<AppErrorInfo>,
    pub master_key: String,
    pub host_key: String,
    /// scm-site publishing credentials.
    pub publishing_user: String,
    pub publishing_password: String,
    /// The egress proxy the app's handler uses, when bound.
    pub egress_proxy: Option<SocketAddr>,
}

/// The state file `subnetlock call` and other tools read.
#[derive(Clone, Debug, Serialize)]
pub struct StateFile {
    pub pid: u32,
    pub control_url: String,
    pub token: String,
    pub http: SocketAddr,
    pub https: SocketAddr,
    pub ca_file: PathBuf,
    pub decision_log: Option<PathBuf>,
    pub sites: Vec<SiteInfo>,
}

/// The result of [`Emulator::shutdown`]: the processes it stopped and the files it left in the
/// state directory.
#[derive(Clone, Debug)]
pub struct Shutdown {
    /// Functions hosts whose custom handler was stopped, one per bound site that ran.
    pub handlers: usize,
    /// Processes that carried the emulator's marker after the handlers stopped, such as
    /// background children of a handler, stopped by signal.
    pub other_processes: usize,
    /// The decision log, which stays in the state directory after the stop.
    pub decision_log: Option<PathBuf>,
    /// The state directory, which keeps `ca.pem`, the decision log and the `lock` file.
    pub state_dir: PathBuf,
    /// Whether `state.json` was removed. It stays when the state directory was replaced while
    /// the emulator ran, because the file there is not this emulator's.
    pub state_file_removed: bool,
}

/// A running emulated deployment.
pub struct Emulator {
    shared: Arc<Shared>,
    http: SocketAddr,
    https: SocketAddr,
    control: SocketAddr,
    shutdown: watch::Sender<bool>,
    /// The front end's threads, joined at shutdown so that no decision record comes after the
    /// last flush.
    front_end_threads: Vec<std::thread::JoinHandle<()>>,
    state_file: PathBuf,
    /// Held while the emulator runs; dropping it releases the state directory.
    lock: StateLock,
    /// The `SUBNETLOCK_EMULATOR` value its handlers and builds carry.
    marker: String,
}

/// State shared by the listeners and the egress handoffs.
pub(crate) struct Shared {
    /// Set once every Functions host has started; egress before that gets 503.
    pub(crate) front_end: std::sync::OnceLock<Arc<FrontEnd>>,
    pub(crate) topology: Arc<Topology>,
    pub(crate) decisions: Arc<DecisionLog>,
    pub(crate) ca: Arc<LocalCa>,
    pub(crate) listen: IpAddr,
    pub(crate) sites: std::sync::OnceLock<Vec<SiteInfo>>,
    pub(crate) token: String,
    /// Proxies of callers created on request, by caller text.
    pub(crate) source_proxies: tokio::sync::Mutex<HashMap<String, EgressProxy>>,
    pub(crate) app_proxies: Mutex<Vec<EgressProxy>>,
    pub(crate) findings: Vec<Finding>,
    /// The engine's service-tag table; `servicetag:` callers take their address from it.
    pub(crate) service_tags: Option<Arc<subnetlock_access::ServiceTagTable>>,
}

impl Emulator {
    /// Deploys the template and starts everything.
    pub async fn start(mut config: EmulatorConfig) -> Result<Emulator, EmulatorError> {
        // Handlers run in their own app folder, so every path handed to them must be absolute.
        config.state_dir =
            std::path::absolute(&config.state_dir).map_err(|source| EmulatorError::StateDir {
                path: config.state_dir.clone(),
                source,
            })?;
        if !config.listen.is_loopback() {
            return Err(EmulatorError::NotLoopback(config.listen));
        }
        if config.front_end_threads.get() > MAX_FRONT_END_THREADS {
            return Err(EmulatorError::TooManyFrontEndThreads {
                threads: config.front_end_threads.get(),
                max: MAX_FRONT_END_THREADS,
            });
        }
        // The template is evaluated and validated first, so that a deployment Azure would
        // reject leaves no state directory behind.
        let provider = SimulatedProvider::new(KeyMode::Random);
        let topology = deploy(&config, &provider)?;
        // Dropped on every way out but success, a failed or abandoned start included, it
        // removes the directories this start made and the files it put in them.
        let mut created = CreatedStateDir {
            directories: create_state_dir(&config.state_dir)?,
            state_dir: config.state_dir.clone(),
        };
        // From here on the directory is named by its canonical path, which a symbolic link
        // re-pointed while the emulator runs cannot change.
        config.state_dir =
            std::fs::canonicalize(&config.state_dir).map_err(|source| EmulatorError::StateDir {
                path: config.state_dir.clone(),
                source,
            })?;
        let (lock, earlier_owners) = match StateLock::acquire(&config.state_dir) {
            Ok(acquired) => acquired,
            Err(error) => {
                // Another emulator took the directory this start made, so its files are that
                // emulator's.
                if matches!(error, EmulatorError::StateDirInUse { .. }) {
                    created.directories.clear();
                }
                return Err(error);
            }
        };
        // An owner that released the lock normally stopped its processes itself, so this
        // finds only what a killed one left running.
        let mut left_over = 0;
        for token in &earlier_owners {
            left_over += reaper::stop_marked_processes(token).await;
        }
        if left_over > 0 {
            tracing::warn!(
                count = left_over,
                state_dir = %config.state_dir.display(),
                "stopped handler processes left over from an earlier emulator of this state directory"
            );
        }
        lock.write_owners(&[])?;

        // A start that fails after handlers ran stops what they started in the background;
        // the handlers themselves end with their hosts.
        let marker = reaper::marker_value(&config.state_dir, &lock.token);
        let started = Self::start_locked(config, lock, provider, topology).await;
        match started {
            Ok(_) => created.directories.clear(),
            Err(_) => {
                reaper::stop_processes_of(&marker).await;
            }
        }
        started
    }

    /// Starts everything once the state directory is locked.
    async fn start_locked(
        config: EmulatorConfig,
        lock: StateLock,
        provider: SimulatedProvider,
        topology: Topology,
    ) -> Result<Emulator, EmulatorError> {
        let marker = reaper::marker_value(&config.state_dir, &lock.token);
        if config.run_builds {
            run_builds(&config.bindings, &marker).await?;
        }

        let topology = Arc::new(topology);

        let ca = Arc::new(LocalCa::generate().map_err(EmulatorError::Tls)?);
        let ca_file = config.state_dir.join("ca.pem");
        // Written under a fresh name and renamed into place, so that a symbolic link named
        // `ca.pem` is replaced instead of followed.
        let ca_temporary = config
            .state_dir
            .join(format!("ca.pem.{}.tmp", std::process::id()));
        let _ = std::fs::remove_file(&ca_temporary);
        ca.write_bundle(&ca_temporary).map_err(EmulatorError::Tls)?;
        std::fs::rename(&ca_temporary, &ca_file).map_err(|source| EmulatorError::StateDir {
            path: ca_file.clone(),
            source,
        })?;

        let mut access = crate::frontend::SiteMap::default();
        for site in &topology.sites {
            access.insert(
                site.name.to_ascii_lowercase(),
                CompiledSiteAccess::compile(&site.access, &config.engine),
            );
        }

        let decision_path = config.state_dir.join("decisions.jsonl");
        let decisions = Arc::new(DecisionLog::new(Some(decision_path.clone())).map_err(
            |source| EmulatorError::StateDir {
                path: decision_path.clone(),
                source,
            },
        )?);

        let (shutdown, shutdown_signal) = watch::channel(false);
        let http_listener = bind(config.listen, config.http_port).await?;
        let https_listener = bind(config.listen, config.https_port).await?;
        let http = local_addr(&http_listener)?;
        let https = local_addr(&https_listener)?;

        // Sites first get keys and publishing credentials, so hosts and state agree.
        let mut sites = Vec::new();
        let mut publishing = HashMap::new();
        let mut plans = Vec::new();
        let mut hosts_not_running = std::collections::HashSet::new();
        for site in &topology.sites {
            let binding = config.bindings.for_site(&site.name);
            let override_path = config
                .executable_overrides
                .iter()
                .find(|(pattern, _)| crate::bindings::pattern_matches(pattern, &site.name))
                .map(|(_, path)| path.clone());
            let (app, app_error) = match binding {
                Some(binding) => {
                    let executable = override_path.or_else(|| binding.executable.clone());
                    match load_function_app(&binding.function_app, executable.as_deref()) {
                        Ok(app) => (Some(app), None),
                        // Azure would run such an app with a language worker, which the
                        // emulator does not have, so no reading of Azure applies to it.
                        Err(
                            source @ crate::functions_host::HostError::MissingCustomHandler {
                                ..
                            },
                        ) => {
                            return Err(EmulatorError::FunctionApp {
                                site: site.name.clone(),
                                source,
                            });
                        }
                        // Each function app is its own site, so one whose host cannot start
                        // leaves the other sites running, as on Azure.
                        Err(error) => {
                            let info = AppErrorInfo::new(&binding.function_app, &error);
                            info.log(&site.name);
                            (None, Some(info))
                        }
                    }
                }
                None => (None, None),
            };
            let function_names: Vec<String> = match &app {
                Some(app) => app.functions.iter().map(|f| f.name.clone()).collect(),
                None => site.functions.iter().map(|f| f.name.clone()).collect(),
            };
            let keys = provider.site_keys(&site.name, &function_names);
            let password = random_token();
            let user = format!("${}", site.name);
            publishing.insert(
                site.name.to_ascii_lowercase(),
                (user.clone(), password.clone()),
            );
            // A host that does not start serves none of the functions the template declares.
            let functions = if app_error.is_some() {
                Vec::new()
            } else {
                function_infos(site, app.as_ref(), &keys)
            };
            let function_errors = app.as_ref().map(function_error_infos).unwrap_or_default();
            if app_error.is_some() {
                hosts_not_running.insert(site.name.to_ascii_lowercase());
            }
            sites.push(SiteInfo {
                name: site.name.clone(),
                host: site.default_host_name.clone(),
                scm_host: site.scm_host_name.clone(),
                bound: binding.is_some(),
                functions,
                function_errors,
                app_error,
                master_key: keys.master.clone(),
                host_key: keys.host.get("default").cloned().unwrap_or_default(),
                publishing_user: user,
                publishing_password: password,
                egress_proxy: None,
            });
            plans.push((site.clone(), app, keys));
        }

        let shared = Arc::new(Shared {
            front_end: std::sync::OnceLock::new(),
            topology: topology.clone(),
            decisions: decisions.clone(),
            ca: ca.clone(),
            listen: config.listen,
            sites: std::sync::OnceLock::new(),
            token: random_token(),
            source_proxies: tokio::sync::Mutex::new(HashMap::new()),
            app_proxies: Mutex::new(Vec::new()),
            findings: match &config.findings_of {
                Some(FindingsOf(compute)) => {
                    compute(Topology::clone(&topology), &config.bindings, &config.engine)
                }
                None => topology.findings.clone(),
            },
            service_tags: config.engine.service_tags.clone(),
        });

        // Egress proxies and Functions hosts of bound apps.
        let mut hosts = crate::frontend::SiteMap::default();
        for ((site, app, keys), info) in plans.into_iter().zip(sites.iter_mut()) {
            let Some(app) = app else {
                continue;
            };
            let caller = Caller::App(site.name.clone());
            let proxy = start_egress_proxy(
                SocketAddr::new(config.listen, 0),
                caller.to_string(),
                ca.clone(),
                handoff(Arc::downgrade(&shared)),
                unparsed_handoff(Arc::downgrade(&shared)),
            )
            .await
            .map_err(|source| EmulatorError::Listen {
                address: SocketAddr::new(config.listen, 0),
                source,
            })?;
            info.egress_proxy = Some(proxy.addr());
            let env = handler_environment(&site, &ca_file, proxy.addr(), &marker);
            let host_config = HostConfig {
                site_name: site.name.clone(),
                app,
                env,
                keys: FunctionKeys {
                    master: keys.master.clone(),
                    host: keys.host.clone(),
                    functions: keys.functions.clone(),
                },
                startup_timeout: config.startup_timeout,
                invocation_timeout: config.invocation_timeout,
            };
            let function_app = host_config.app.root.clone();
            let host = match FunctionsHost::start(host_config).await {
                Ok(host) => host,
                // A handler that cannot be spawned, exits or never responds takes down only its
                // own site, as an app that fails to load does.
                Err(error) => {
                    let app_error = AppErrorInfo::new(&function_app, &error);
                    app_error.log(&site.name);
                    info.app_error = Some(app_error);
                    info.functions.clear();
                    info.egress_proxy = None;
                    hosts_not_running.insert(site.name.to_ascii_lowercase());
                    // Dropping the proxy closes it: no handler of this site runs to use it.
                    continue;
                }
            };
            hosts.insert(site.name.to_ascii_lowercase(), host);
            shared
                .app_proxies
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(proxy);
        }

        let front_end = Arc::new(FrontEnd {
            topology: topology.clone(),
            access,
            hosts,
            hosts_not_running,
            publishing,
            decisions: decisions.clone(),
            write_timeout: config.write_timeout,
        });
        let _ = shared.front_end.set(front_end.clone());
        let _ = shared.sites.set(sites.clone());

        let tls = tokio_rustls::TlsAcceptor::from(ca.sni_server_config());
        let listeners = vec![(http_listener, None), (https_listener, Some(tls))];
        let front_end_threads = config.front_end_threads;
        let (_, threads) = frontend::spawn_threads(
            front_end_threads,
            listeners,
            front_end.clone(),
            shutdown_signal.clone(),
        )
        .map_err(|source| EmulatorError::FrontEndThreads {
            threads: front_end_threads.get(),
            source,
        })?;

        // Buffered decisions reach the file within one flush interval even when traffic stops.
        let flushing = decisions.clone();
        let mut flush_stop = shutdown_signal.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(crate::decisions::FLUSH_INTERVAL);
            loop {
                tokio::select! {
                    _ = ticker.tick() => flushing.flush(),
                    _ = flush_stop.changed() => {
                        flushing.flush();
                        return;
                    }
                }
            }
        });

        let control_listener = bind(config.listen, 0).await?;
        let control = local_addr(&control_listener)?;
        tokio::spawn(crate::control::serve(
            control_listener,
            shared.clone(),
            shutdown.clone(),
            shutdown_signal.clone(),
        ));

        let state = StateFile {
            pid: std::process::id(),
            control_url: format!("http://{control}"),
            token: shared.token.clone(),
            http,
            https,
            ca_file,
            decision_log: Some(decision_path),
            sites,
        };
        let state_file = config.state_dir.join("state.json");
        write_state(&state_file, &state)?;
        tracing::info!(%http, %https, %control, front_end_threads, state = %state_file.display(), "emulator started");

        Ok(Emulator {
            shared,
            http,
            https,
            control,
            shutdown,
            front_end_threads: threads,
            state_file,
            lock,
            marker,
        })
    }

    pub fn topology(&self) -> &Topology {
        &self.shared.topology
    }

    /// Returns the findings of this deployment that the control API serves (see
    /// [`EmulatorConfig::findings_of`]).
    pub fn findings(&self) -> &[Finding] {
        &self.shared.findings
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http
    }

    pub fn https_addr(&self) -> SocketAddr {
        self.https
    }

    pub fn control_addr(&self) -> SocketAddr {
        self.control
    }

    pub fn state_file(&self) -> &Path {
        &self.state_file
    }

    pub fn ca_pem(&self) -> &str {
        self.shared.ca.ca_pem()
    }

    pub fn sites(&self) -> &[SiteInfo] {
        self.shared
            .sites
            .get()
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    pub fn site(&self, pattern: &str) -> Option<&SiteInfo> {
        self.sites()
            .iter()
            .find(|site| crate::bindings::pattern_matches(pattern, &site.name))
    }

    pub fn decisions(&self) -> Vec<DecisionRecord> {
        self.shared.decisions.all()
    }

    /// Returns a proxy whose requests carry `caller`'s source identity, creating it on first use.
    pub async fn source_proxy(&self, caller: &Caller) -> Result<SocketAddr, CallerError> {
        source_proxy(&self.shared, caller).await
    }

    /// Waits until the control API requests a stop (`POST /v1/shutdown`) or `signal` resolves.
    pub async fn wait(&self, signal: impl std::future::Future<Output = ()>) {
        let mut stopped = self.shutdown.subscribe();
        tokio::select! {
            _ = signal => {}
            _ = stopped.changed() => {}
        }
    }

    /// Stops listeners, proxies and handler processes, and removes the state file. Returns what
    /// was stopped and which files remain, for the closing message.
    pub async fn shutdown(mut self) -> Shutdown {
        let _ = self.shutdown.send(true);
        // A connection that a front-end thread drops now records its request as 499, so the
        // log is flushed after the threads end. A thread ends as soon as its runtime has
        // dropped its tasks; the bound only keeps a stuck one from holding up the exit.
        let threads = std::mem::take(&mut self.front_end_threads);
        let joined = tokio::task::spawn_blocking(move || {
            for thread in threads {
                if thread.join().is_err() {
                    tracing::error!("a front-end thread panicked");
                }
            }
        });
        if tokio::time::timeout(FRONT_END_STOP, joined).await.is_err() {
            tracing::warn!(
                timeout_ms = FRONT_END_STOP.as_millis(),
                "front-end threads did not stop in time; later decision records may be lost"
            );
        }
        self.shared.decisions.flush();
        let mut handlers = 0;
        if let Some(front_end) = self.shared.front_end.get() {
            for host in front_end.hosts.values() {
                host.shutdown().await;
                handlers += 1;
            }
        }
        let proxies: Vec<EgressProxy> = std::mem::take(
            &mut *self
                .shared
                .app_proxies
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        );
        drop(proxies);
        self.shared.source_proxies.lock().await.clear();
        // Handlers are stopped by their hosts above; this catches what they started in the
        // background. Only this emulator's marker counts: another emulator in this process
        // shares the token, and its processes are not this one's to stop.
        let other_processes = reaper::stop_processes_of(&self.marker).await;
        // The directory may have been removed and made again for another emulator meanwhile;
        // its state file is not this one's to remove.
        let state_file_removed = self.lock.still_locked_directory(&self.state_file)
            && std::fs::remove_file(&self.state_file).is_ok();
        tracing::info!(handlers, other_processes, "emulator stopped");
        Shutdown {
            handlers,
            other_processes,
            decision_log: self
                .shared
                .decisions
                .path()
                .filter(|path| path.is_file())
                .cloned(),
            state_dir: self
                .state_file
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default(),
            state_file_removed,
        }
    }
}

/// Builds the egress handoff: a request from a caller's proxy becomes a front-end request with
/// the source Azure would see for that caller.
fn handoff(shared: std::sync::Weak<Shared>) -> Handoff {
    Arc::new(move |request: Request<Incoming>, context: EgressContext| {
        let Some(shared) = shared.upgrade() else {
            let response = pages::emulator_text(
                StatusCode::SERVICE_UNAVAILABLE,
                "subnetlock: emulator stopped",
            );
            return Box::pin(async move { response });
        };
        egress_request(&shared, request, context)
    })
}

/// Hands a request from an egress proxy to the front end. The front end decides at once, from
/// the head, and the returned future reads the body and forwards the request when it is
/// allowed.
pub(crate) fn egress_request(
    shared: &Shared,
    request: Request<Incoming>,
    context: EgressContext,
) -> Pin<Box<dyn Future<Output = Response<Bytes>> + Send>> {
    let ready =
        |response: Response<Bytes>| -> Pin<Box<dyn Future<Output = Response<Bytes>> + Send>> {
            Box::pin(async move { response })
        };
    let Some(front_end) = shared.front_end.get().cloned() else {
        return ready(pages::emulator_text(
            StatusCode::SERVICE_UNAVAILABLE,
            "subnetlock: the deployment is still starting",
        ));
    };
    let source = match egress_source(shared, &context) {
        Ok(source) => source,
        Err(error) => {
            return ready(pages::emulator_text(
                StatusCode::BAD_GATEWAY,
                error.to_string(),
            ))
        }
    };
    let scheme = context.scheme.to_string();
    let (head, body) = request.into_parts();
    let admission = front_end.admit(&head, &source, &context.caller, &scheme);
    Box::pin(async move {
        let mut response = front_end
            .complete(
                admission,
                head,
                RequestBody::Incoming(body),
                &source,
                &scheme,
            )
            .await;
        // The host is a site's, so the response is that site's, and a marker in it can only
        // come from the app's own code.
        response.headers_mut().remove(pages::ORIGIN_HEADER);
        response
    })
}

/// Builds the handoff for requests in egress tunnels that hyper could not parse, which records
/// them as the destination site's front end would.
fn unparsed_handoff(shared: std::sync::Weak<Shared>) -> UnparsedHandoff {
    Arc::new(move |context: EgressContext, status: u16| {
        if let Some(shared) = shared.upgrade() {
            egress_unparsed_request(&shared, &context, status);
        }
    })
}

/// Records a request in an egress tunnel that hyper could not parse and responded to with
/// `status`. In Azure no proxy sits between the app and the destination's front end, so
/// that front end reads the request and records it. A request that [`egress_request`] would
/// not hand to the front end gets no record.
fn egress_unparsed_request(shared: &Shared, context: &EgressContext, status: u16) {
    let Some(front_end) = shared.front_end.get() else {
        return;
    };
    let source = match egress_source(shared, context) {
        Ok(source) => source,
        Err(error) => {
            tracing::debug!(
                caller = %context.caller,
                host = %context.host,
                %error,
                "unparsed egress request not recorded",
            );
            return;
        }
    };
    front_end.record_unparsed_request(&context.caller, source, &context.host, status);
}

/// The reason a request from an egress proxy does not reach the front end.
#[derive(Debug, thiserror::Error)]
enum EgressError {
    #[error("subnetlock egress: `{0}` is not a site of this deployment; the emulator sends no traffic outside loopback")]
    NotASite(String),
    #[error(transparent)]
    Caller(#[from] CallerError),
}

/// Returns the source of a request from `context`'s caller as the destination's front end
/// receives it.
fn egress_source(shared: &Shared, context: &EgressContext) -> Result<Source, EgressError> {
    let topology = &shared.topology;
    if topology.site_for_host(&context.host).is_none() {
        return Err(EgressError::NotASite(context.host.clone()));
    }
    let caller: Caller = context.caller.parse()?;
    // The destination decides the private-endpoint and App Service Environment paths.
    let source = caller.source_to(
        topology,
        Some(&context.host),
        shared.service_tags.as_deref(),
    )?;
    Ok(source)
}

pub(crate) async fn source_proxy(
    shared: &Arc<Shared>,
    caller: &Caller,
) -> Result<SocketAddr, CallerError> {
    caller.validate(&shared.topology, shared.service_tags.as_deref())?;
    let key = caller.to_string();
    let mut proxies = shared.source_proxies.lock().await;
    if let Some(proxy) = proxies.get(&key) {
        return Ok(proxy.addr());
    }
    let proxy = start_egress_proxy(
        SocketAddr::new(shared.listen, 0),
        key.clone(),
        shared.ca.clone(),
        handoff(Arc::downgrade(shared)),
        unparsed_handoff(Arc::downgrade(shared)),
    )
    .await
    .map_err(|error| CallerError::Syntax(format!("{key}: cannot start its proxy: {error}")))?;
    let address = proxy.addr();
    proxies.insert(key, proxy);
    Ok(address)
}

/// Evaluates the template with the simulated provider and builds the topology, or takes the
/// prebuilt one; refuses the deployment when Azure's validation would fail it.
fn deploy(
    config: &EmulatorConfig,
    provider: &SimulatedProvider,
) -> Result<Topology, EmulatorError> {
    let mut topology = match &config.topology {
        Some(topology) => topology.clone(),
        None => evaluate_template(config, provider)?,
    };
    if let Some(previous) = &config.previous {
        subnetlock_model::validate_redeploy(previous, &mut topology);
    }
    subnetlock_model::validate_scale_unit(&mut topology, config.scale_unit);
    let failures: Vec<Finding> = topology
        .findings
        .iter()
        .filter(|finding| finding.blocks_local_deployment())
        .cloned()
        .collect();
    if !failures.is_empty() {
        return Err(EmulatorError::DeploymentRejected { findings: failures });
    }
    Ok(topology)
}

fn evaluate_template(
    config: &EmulatorConfig,
    provider: &SimulatedProvider,
) -> Result<Topology, EmulatorError> {
    let mut parameters = match &config.parameters {
        Some(path) => Parameters::from_file(path).map_err(EmulatorError::Template)?,
        None => Parameters::new(),
    };
    for (name, value) in &config.parameter_values {
        parameters.set(name, value.clone());
    }
    let options = EvalOptions {
        scope: config.scope.clone(),
        parameters,
    };
    let deployment = subnetlock_arm::evaluate_file(&config.template, &options, provider)
        .map_err(EmulatorError::Template)?;
    Ok(build_topology(&deployment))
}

/// Runs the binding file's build commands. They carry the marker and end with a dropped start,
/// so that a stop during the build leaves no compiler running.
async fn run_builds(bindings: &Bindings, marker: &str) -> Result<(), EmulatorError> {
    let base = bindings
        .file
        .as_deref()
        .and_then(Path::parent)
        .unwrap_or(Path::new("."))
        .to_owned();
    let mut done: Vec<Vec<String>> = Vec::new();
    for app in &bindings.apps {
        let Some(command) = &app.build else {
            continue;
        };
        if done.contains(command) {
            continue;
        }
        let (program, arguments) = command.split_first().ok_or_else(|| EmulatorError::Build {
            command: String::new(),
            detail: "empty command".to_owned(),
        })?;
        tracing::info!(command = %command.join(" "), "building handlers");
        let mut build = tokio::process::Command::new(program);
        // Under `cargo run`, cargo sets variables that describe the running package. Passed on
        // to a nested `cargo build`, they make each cargo see changed build-script inputs and
        // rebuild crates such as ring every time.
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy();
            let set_by_cargo_run = name == "CARGO"
                || name.starts_with("CARGO_PKG_")
                || matches!(
                    name.as_ref(),
                    "CARGO_MANIFEST_DIR"
                        | "CARGO_MANIFEST_PATH"
                        | "CARGO_CRATE_NAME"
                        | "CARGO_BIN_NAME"
                        | "CARGO_PRIMARY_PACKAGE"
                );
            if set_by_cargo_run {
                build.env_remove(name.as_ref());
            }
        }
        let status = build
            .args(arguments)
            .current_dir(&base)
            .env(reaper::MARKER_VARIABLE, marker)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .status()
            .await
            .map_err(|error| EmulatorError::Build {
                command: command.join(" "),
                detail: error.to_string(),
            })?;
        if !status.success() {
            return Err(EmulatorError::Build {
                command: command.join(" "),
                detail: format!("exited with {status}"),
            });
        }
        done.push(command.clone());
    }
    Ok(())
}

/// App settings as environment variables, plus what the handler needs to call out through
/// its egress proxy and trust the local CA.
fn handler_environment(
    site: &subnetlock_model::Site,
    ca_file: &Path,
    proxy: SocketAddr,
    marker: &str,
) -> Vec<(String, String)> {
    let mut env = Vec::new();
    for setting in &site.app_settings {
        let Some(value) = setting_text(&setting.value) else {
            tracing::warn!(
                site = %site.name,
                setting = %setting.name,
                kind = setting.value.type_name(),
                "app setting has no local value and is left out of the handler environment"
            );
            continue;
        };
        env.push((setting.name.clone(), value));
    }
    let proxy_url = format!("http://{proxy}");
    for name in [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "http_proxy",
        "https_proxy",
        "ALL_PROXY",
    ] {
        env.push((name.to_owned(), proxy_url.clone()));
    }
    // Loopback stays direct; every other destination goes to the egress proxy, which never
    // leaves the machine.
    for name in ["NO_PROXY", "no_proxy"] {
        env.push((name.to_owned(), "localhost,127.0.0.1,::1".to_owned()));
    }
    env.push(("SSL_CERT_FILE".to_owned(), ca_file.display().to_string()));
    // Marks the handler and everything it starts, so that no process outlives the emulator.
    env.push((reaper::MARKER_VARIABLE.to_owned(), marker.to_owned()));
    env.push((
        "WEBSITE_HOSTNAME".to_owned(),
        site.default_host_name.clone(),
    ));
    env
}

/// Returns an app setting's value as the handler's environment gets it, or `None` for a value
/// known only at deployment time.
fn setting_text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Int(number) => Some(number.to_string()),
        Value::Bool(flag) => Some(if *flag { "true" } else { "false" }.to_owned()),
        Value::Null => Some(String::new()),
        _ => None,
    }
}

fn function_error_infos(app: &crate::functions_host::FunctionApp) -> Vec<FunctionErrorInfo> {
    app.function_errors
        .iter()
        .map(|error| FunctionErrorInfo {
            name: error.function().to_owned(),
            error: error.to_string(),
            help: miette::Diagnostic::help(error).map(|help| help.to_string()),
        })
        .collect()
}

fn function_infos(
    site: &subnetlock_model::Site,
    app: Option<&crate::functions_host::FunctionApp>,
    keys: &SiteKeys,
) -> Vec<FunctionInfo> {
    let mut infos = Vec::new();
    let settings: Vec<(String, String)> = site
        .app_settings
        .iter()
        .filter_map(|setting| Some((setting.name.clone(), setting_text(&setting.value)?)))
        .collect();
    let key_of = |name: &str| {
        keys.functions
            .get(&name.to_ascii_lowercase())
            .and_then(|k| k.get("default"))
            .cloned()
            .unwrap_or_default()
    };
    match app {
        Some(app) => {
            let examples = crate::functions_host::example_requests(app);
            for (function, example) in app.functions.iter().zip(examples) {
                let route = function
                    .route
                    .clone()
                    .unwrap_or_else(|| function.name.clone());
                let prefix = if app.route_prefix.is_empty() {
                    String::new()
                } else {
                    format!("/{}", app.route_prefix)
                };
                infos.push(FunctionInfo {
                    name: function.name.clone(),
                    auth_level: format!("{:?}", function.auth_level).to_ascii_lowercase(),
                    route: route.clone(),
                    url: format!("https://{}{prefix}/{route}", site.default_host_name),
                    key: key_of(&function.name),
                    disabled: crate::functions_host::disabled_by_setting(&function.name, &settings),
                    methods: function.methods.as_ref().map(|methods| {
                        methods
                            .iter()
                            .map(|method| method.as_str().to_owned())
                            .collect()
                    }),
                    example: match example {
                        Ok((method, path)) => ExampleRequest::Available {
                            method: method.as_str().to_owned(),
                            path,
                        },
                        Err(reason) => ExampleRequest::Unavailable { reason },
                    },
                });
            }
        }
        None => {
            for function in &site.functions {
                infos.push(FunctionInfo {
                    name: function.name.clone(),
                    auth_level: function.auth_level.clone(),
                    route: function.name.clone(),
                    url: format!("https://{}/api/{}", site.default_host_name, function.name),
                    key: key_of(&function.name),
                    disabled: false,
                    // The template declares no route or methods, so the function is taken to
                    // use the defaults: its name under `api` and every method.
                    methods: None,
                    example: ExampleRequest::Available {
                        method: "GET".to_owned(),
                        path: format!("/api/{}", function.name),
                    },
                });
            }
        }
    }
    infos
}

async fn bind(address: IpAddr, port: u16) -> Result<TcpListener, EmulatorError> {
    let address = SocketAddr::new(address, port);
    TcpListener::bind(address)
        .await
        .map_err(|source| EmulatorError::Listen { address, source })
}

fn local_addr(listener: &TcpListener) -> Result<SocketAddr, EmulatorError> {
    listener
        .local_addr()
        .map_err(|source| EmulatorError::Listen {
            address: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
            source,
        })
}

/// Creates the state directory and its missing parents, readable by their owner only. An
/// existing directory is left as it is. Returns the directories this call made, parents first.
fn create_state_dir(path: &Path) -> Result<Vec<CreatedDir>, EmulatorError> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};

    let state_error = |path: &Path, source| EmulatorError::StateDir {
        path: path.to_owned(),
        source,
    };
    let mut missing = Vec::new();
    let mut current = Some(path);
    while let Some(directory) = current {
        match std::fs::symlink_metadata(directory) {
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                missing.push(directory);
                current = directory.parent();
            }
            _ => break,
        }
    }

    let mut builder = std::fs::DirBuilder::new();
    builder.mode(0o700);
    let mut created = Vec::new();
    for directory in missing.into_iter().rev() {
        match builder.create(directory) {
            // Only a directory this call's own mkdir made counts as created, so that a
            // spelling such as `new/..` never names an existing directory for removal.
            Ok(()) => {
                let metadata = std::fs::symlink_metadata(directory)
                    .map_err(|source| state_error(directory, source))?;
                created.push(CreatedDir {
                    path: directory.to_owned(),
                    device: metadata.dev(),
                    inode: metadata.ino(),
                });
            }
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(source) => {
                remove_created(&created, path);
                return Err(state_error(directory, source));
            }
        }
    }
    if !path.is_dir() {
        remove_created(&created, path);
        return Err(state_error(
            path,
            std::io::Error::new(std::io::ErrorKind::NotADirectory, "not a directory"),
        ));
    }
    Ok(created)
}

/// A directory that a start made, with the device and inode number it had then, which a
/// directory made later in its place does not share.
struct CreatedDir {
    path: PathBuf,
    device: u64,
    inode: u64,
}

/// The directories a start made for its state, removed with the files the start wrote into
/// them when the start does not succeed.
struct CreatedStateDir {
    /// Parents first. Empty once the start succeeded, or when every directory existed before.
    directories: Vec<CreatedDir>,
    /// The state directory as the start named it before it made it.
    state_dir: PathBuf,
}

impl Drop for CreatedStateDir {
    fn drop(&mut self) {
        remove_created(&self.directories, &self.state_dir);
    }
}

/// Lists the files a start writes into the state directory, with the temporary files that are
/// renamed into place.
fn state_files() -> Vec<String> {
    let pid = std::process::id();
    [
        "state.json".to_owned(),
        format!("state.json.{pid}.tmp"),
        "ca.pem".to_owned(),
        format!("ca.pem.{pid}.tmp"),
        "decisions.jsonl".to_owned(),
        "lock".to_owned(),
        format!("lock.{pid}.tmp"),
    ]
    .into()
}

/// Removes `directories` (parents first), deepest first, and the start's files in
/// `state_dir` when it is one of them. A directory that was replaced since, or that contains
/// anything else, stays as it is, and so do its parents.
fn remove_created(directories: &[CreatedDir], state_dir: &Path) {
    use std::os::unix::fs::MetadataExt;

    for created in directories.iter().rev() {
        let directory = &created.path;
        let same = std::fs::symlink_metadata(directory).is_ok_and(|metadata| {
            metadata.dev() == created.device && metadata.ino() == created.inode
        });
        if !same {
            return;
        }
        if directory == state_dir {
            for name in state_files() {
                let _ = std::fs::remove_file(directory.join(name));
            }
        }
        if let Err(error) = std::fs::remove_dir(directory) {
            tracing::warn!(
                directory = %directory.display(),
                %error,
                "cannot remove a directory that the failed start created"
            );
            return;
        }
    }
}

/// The lock that keeps two emulators from sharing one state directory: an advisory lock
/// (`flock`) on the directory itself, which the kernel releases when the process ends in any
/// way, SIGKILL included, and which deleting a file cannot undo.
///
/// The file `lock` in the directory records owners' tokens (process id and start time), one
/// per line, which mark their handlers. The first line is the current owner. Later lines are
/// earlier owners whose processes may still run, because they were killed before they could
/// stop them. They stay listed until a new owner has stopped those processes.
struct StateLock {
    /// The locked directory, open until the emulator drops the lock.
    _directory: std::fs::File,
    /// The record of owners.
    path: PathBuf,
    /// This emulator's token.
    token: String,
}

/// Maximum size of the record of owners that is read; a token is about 20 bytes.
const MAX_OWNER_RECORD_BYTES: u64 = 64 * 1024;

impl StateLock {
    /// Takes the lock, returning it with the tokens of earlier owners whose processes may
    /// still run.
    fn acquire(state_dir: &Path) -> Result<(StateLock, Vec<String>), EmulatorError> {
        let path = state_dir.join("lock");
        let state_error = |path: &Path, source| EmulatorError::StateDir {
            path: path.to_owned(),
            source,
        };

        let directory =
            std::fs::File::open(state_dir).map_err(|source| state_error(state_dir, source))?;
        if let Err(error) = directory.try_lock() {
            return Err(match error {
                std::fs::TryLockError::WouldBlock => {
                    let pid = read_owners(&path)
                        .ok()
                        .and_then(|owners| owners.into_iter().next())
                        .and_then(|token| token.split(':').next()?.parse::<u32>().ok());
                    EmulatorError::StateDirInUse {
                        path: state_dir.to_owned(),
                        pid,
                    }
                }
                std::fs::TryLockError::Error(source) => state_error(state_dir, source),
            });
        }

        let token = owner_token();
        let mut owners = read_owners(&path).map_err(|source| state_error(&path, source))?;
        owners.retain(|earlier| *earlier != token);
        let lock = StateLock {
            _directory: directory,
            path,
            token,
        };
        // The earlier owners stay listed until the caller has stopped their processes, so
        // that an interrupted start does not forget them.
        lock.write_owners(&owners)?;
        Ok((lock, owners))
    }

    /// Checks whether the directory of `path` is still the directory this lock holds, and not
    /// one made in its place after it was removed or renamed.
    fn still_locked_directory(&self, path: &Path) -> bool {
        use std::os::unix::fs::MetadataExt;

        let (Some(directory), Ok(held)) = (path.parent(), self._directory.metadata()) else {
            return false;
        };
        std::fs::metadata(directory)
            .is_ok_and(|current| current.dev() == held.dev() && current.ino() == held.ino())
    }

    /// Records this owner first, followed by `earlier` owners.
    fn write_owners(&self, earlier: &[String]) -> Result<(), EmulatorError> {
        let mut text = self.token.clone();
        for owner in earlier {
            text.push('\n');
            text.push_str(owner);
        }
        // A fresh file renamed over the old one, so that a symbolic link named `lock` is
        // replaced instead of followed.
        let temporary = self
            .path
            .with_extension(format!("{}.tmp", std::process::id()));
        let write = || -> std::io::Result<()> {
            let _ = std::fs::remove_file(&temporary);
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                options.mode(0o600);
            }
            std::io::Write::write_all(&mut options.open(&temporary)?, text.as_bytes())?;
            std::fs::rename(&temporary, &self.path)
        };
        write().map_err(|source| EmulatorError::StateDir {
            path: self.path.clone(),
            source,
        })
    }
}

/// Reads the owners' tokens from `path`. A missing file has none. Lines that are not a token
/// are ignored, and so is everything but a regular file. The record only ever leads to
/// processes that carry a matching marker, so a damaged record costs at most a left-over
/// process, never a wrong one.
fn read_owners(path: &Path) -> std::io::Result<Vec<String>> {
    use std::io::Read;

    match std::fs::symlink_metadata(path) {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(error),
        Ok(metadata) if !metadata.file_type().is_file() => {
            tracing::warn!(path = %path.display(), "the record of owners is not a regular file; ignoring it");
            return Ok(Vec::new());
        }
        Ok(_) => {}
    }
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(MAX_OWNER_RECORD_BYTES)
        .read_to_end(&mut bytes)?;
    let text = String::from_utf8_lossy(&bytes);
    let mut owners: Vec<String> = Vec::new();
    for line in text.lines().map(str::trim) {
        let valid = line.split_once(':').is_some_and(|(pid, start)| {
            !pid.is_empty()
                && !start.is_empty()
                && pid.bytes().all(|b| b.is_ascii_digit())
                && start.bytes().all(|b| b.is_ascii_digit())
        });
        if valid && !owners.iter().any(|owner| owner == line) {
            owners.push(line.to_owned());
        }
    }
    Ok(owners)
}

/// Returns this process's token: its id and start time, `pid:start`. The start time
/// distinguishes this process from a later one that gets the same id.
pub(crate) fn owner_token() -> String {
    let pid = std::process::id();
    format!("{pid}:{}", process_start_time(pid).unwrap_or(0))
}

/// Reads a process's start time (clock ticks after boot, the 22nd field of `/proc/<pid>/stat`).
fn process_start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name in parentheses may contain spaces, so fields are counted from the
    // last `)`: the state is the first field after it and the start time the twentieth.
    let after_name = stat.get(stat.rfind(')')? + 1..)?;
    after_name.split_whitespace().nth(19)?.parse().ok()
}

fn write_state(path: &Path, state: &StateFile) -> Result<(), EmulatorError> {
    let text = serde_json::to_string_pretty(state).unwrap_or_default();
    // A fresh file renamed over the old one: an existing state file with a wider mode, or a
    // symbolic link in its place, never receives the keys.
    let temporary = path.with_extension(format!("json.{}.tmp", std::process::id()));
    let write = || -> std::io::Result<()> {
        use std::io::Write;
        let mut options = std::fs::OpenOptions::new();
        options.create_new(true).write(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            // The state file contains keys and the control token, so only its owner may read it.
            options.mode(0o600);
        }
        let mut file = options.open(&temporary)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)
    };
    write().map_err(|source| {
        let _ = std::fs::remove_file(&temporary);
        EmulatorError::StateDir {
            path: path.to_owned(),
            source,
        }
    })
}

fn random_token() -> String {
    use base64::Engine;
    use rand::RngCore;
    let mut bytes = [0u8; 24];
    rand::thread_rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_lists_earlier_owners_until_cleared() {
        let dir = tempfile::tempdir().expect("temp dir");
        // Left by killed owners: the record stays, their flocks went with them.
        std::fs::write(dir.path().join("lock"), "4242:17\ngarbage\n4242:17\n99:1\n")
            .expect("write lock");

        let (lock, earlier) = StateLock::acquire(dir.path()).expect("lock");
        assert_eq!(earlier, vec!["4242:17".to_owned(), "99:1".to_owned()]);
        assert_eq!(lock.token, owner_token());
        let text = std::fs::read_to_string(dir.path().join("lock")).expect("read lock");
        assert_eq!(text, format!("{}\n4242:17\n99:1", lock.token));

        lock.write_owners(&[]).expect("clear");
        let text = std::fs::read_to_string(dir.path().join("lock")).expect("read lock");
        assert_eq!(text, lock.token);

        drop(lock);
        // A process that another test forks at this moment holds a copy of the directory's
        // descriptor, and with it the flock, until it executes its program (the descriptor
        // is close-on-exec). The lock comes free then.
        let (_again, earlier) = (0..200)
            .find_map(|_| match StateLock::acquire(dir.path()) {
                Ok(acquired) => Some(acquired),
                Err(EmulatorError::StateDirInUse { .. }) => {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                    None
                }
                Err(other) => panic!("lock again: {other}"),
            })
            .expect("lock again within 2 s");
        assert!(
            earlier.is_empty(),
            "this process is not an earlier owner: {earlier:?}"
        );
    }

    #[test]
    fn lock_of_running_emulator_is_kept() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (_first_lock, earlier) = StateLock::acquire(dir.path()).expect("first lock");
        assert!(earlier.is_empty());
        std::fs::remove_file(dir.path().join("lock")).expect("delete the record");
        // The lock is on the directory, so deleting the record does not release it.
        match StateLock::acquire(dir.path()) {
            Err(EmulatorError::StateDirInUse { .. }) => {}
            Err(other) => panic!("unexpected error: {other}"),
            Ok(_) => panic!("a held lock was taken over"),
        }
    }

    #[test]
    fn lock_record_symlink_is_replaced() {
        let dir = tempfile::tempdir().expect("temp dir");
        let victim = dir.path().join("victim.txt");
        std::fs::write(&victim, "keep me").expect("victim");
        let state = dir.path().join("state");
        std::fs::create_dir(&state).expect("state dir");
        std::os::unix::fs::symlink(&victim, state.join("lock")).expect("symlink");

        let (_lock, _) = StateLock::acquire(&state).expect("lock");
        assert_eq!(std::fs::read_to_string(&victim).expect("victim"), "keep me");
        let record = std::fs::symlink_metadata(state.join("lock")).expect("record");
        assert!(record.file_type().is_file());
    }

    #[test]
    fn failed_start_removes_created_dirs() {
        let dir = tempfile::tempdir().expect("temp dir");
        let state = dir.path().join("a/b/state");
        let created = create_state_dir(&state).expect("create");
        let names: Vec<&Path> = created.iter().map(|dir| dir.path.as_path()).collect();
        assert_eq!(
            names,
            vec![
                dir.path().join("a").as_path(),
                dir.path().join("a/b").as_path(),
                state.as_path()
            ]
        );
        std::fs::write(state.join("ca.pem"), "ca").expect("ca.pem");
        std::fs::write(state.join("lock"), "1:1").expect("lock");
        remove_created(&created, &state);
        assert!(!dir.path().join("a").exists());

        // A file the start did not write keeps the directory, and so its parents.
        let created = create_state_dir(&state).expect("create again");
        std::fs::write(state.join("lock"), "1:1").expect("lock");
        std::fs::write(state.join("notes.txt"), "keep").expect("notes");
        remove_created(&created, &state);
        assert!(!state.join("lock").exists());
        assert!(state.join("notes.txt").is_file());
    }

    #[test]
    fn dot_dot_path_keeps_existing_dir() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir(dir.path().join("existing")).expect("existing");
        // `new/..` names the temporary directory itself, which existed before.
        let state = dir.path().join("new/../existing");
        let created = create_state_dir(&state).expect("create");
        let names: Vec<&Path> = created.iter().map(|dir| dir.path.as_path()).collect();
        assert_eq!(names, vec![dir.path().join("new").as_path()]);
        remove_created(&created, &state);
        assert!(dir.path().join("existing").is_dir());
        assert!(!dir.path().join("new").exists());

        assert!(create_state_dir(dir.path()).expect("existing").is_empty());
    }

    #[test]
    fn start_time_of_missing_process_is_none() {
        assert!(process_start_time(std::process::id()).is_some());
        assert!(process_start_time(u32::MAX).is_none());
    }
}
