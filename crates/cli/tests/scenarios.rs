//! The numbered ground-truth scenarios of App Service access restrictions, each run through
//! `check` (static analysis and prediction) and `up` (the emulator, real HTTPS on loopback),
//! with both answers held to the outcome Azure gives.
//!
//! One JSON file per scenario in `tests/scenarios/`: an ARM template (`template`) or a
//! Terraform plan in `terraform show -json` form (`terraform_plan`), the calls to make and
//! the expected outcome of each (an HTTP status, a deployment failure with its finding code,
//! or a silently accepted template with its finding code and the status that follows). The
//! emulator runs with no bindings, so an allowed main site answers its default page (200) and
//! an allowed scm site asks for publishing credentials (401). A scenario that needs the
//! Functions host (function keys) names its functions in `functions`; the runner then binds
//! those sites to a small Python custom handler that answers 200 to every forwarded request.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use subnetlock_access::{EngineOptions, IpNet, Outcome, ServiceTagTable};
use subnetlock_arm::{EvalOptions, Parameters, Scope};
use subnetlock_emulator::{AppBinding, Bindings, Caller, Emulator, EmulatorConfig, EmulatorError};
use subnetlock_model::{build_topology, Finding, KeyMode, ScaleUnit, SimulatedProvider, Topology};
use subnetlock_reach::{analyze, predict_with_headers, Probe};

/// Scenarios that need something this machine cannot emulate, with the reason. Every other
/// scenario file runs.
const KNOWN_GAPS: &[(u32, &str)] = &[];

#[derive(Clone, Debug, Deserialize)]
struct Scenario {
    id: u32,
    title: String,
    #[allow(dead_code)]
    sources: Vec<String>,
    /// An ARM template; exactly one of `template` and `terraform_plan` is set.
    #[serde(default)]
    template: Option<serde_json::Value>,
    /// Terraform plan JSON, read by `subnetlock-terraform` on both sides.
    #[serde(default)]
    terraform_plan: Option<serde_json::Value>,
    /// An ARM template deployed before `template`, for redeploy scenarios.
    #[serde(default)]
    previous_template: Option<serde_json::Value>,
    /// `older` deploys onto a scale unit without Premium v2; unset means a newer one.
    #[serde(default)]
    scale_unit: Option<String>,
    /// Service tag name to CIDR prefixes, loaded as the engine's service-tag table.
    #[serde(default)]
    service_tags: BTreeMap<String, Vec<String>>,
    /// Site name to function name to `authLevel`: these sites get a bound custom handler.
    #[serde(default)]
    functions: BTreeMap<String, BTreeMap<String, String>>,
    #[serde(default)]
    request: Option<Call>,
    #[serde(default)]
    requests: Vec<Call>,
    /// Expected outcome of `request`, or of the deployment when there is no call.
    #[serde(default)]
    expect: Option<Expect>,
}

#[derive(Clone, Debug, Deserialize)]
struct Call {
    from: String,
    to: String,
    #[serde(default = "main_site")]
    site: String,
    #[serde(default = "root_path")]
    path: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    /// Send the function's key as `code=`.
    #[serde(default)]
    key: bool,
    #[serde(default)]
    expect: Option<Expect>,
}

#[derive(Clone, Debug, Deserialize)]
struct Expect {
    #[serde(default)]
    status: Option<u16>,
    /// `fails`, `silent` or `tooling`.
    #[serde(default)]
    deployment: Option<String>,
    #[serde(default)]
    code: Option<String>,
}

fn main_site() -> String {
    "main".to_owned()
}

fn root_path() -> String {
    "/".to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scenario_check_and_up() {
    let files = scenario_files();
    assert!(!files.is_empty(), "no scenario files in tests/scenarios");
    for (id, reason) in KNOWN_GAPS {
        println!("known gap: scenario {id}: {reason}");
    }

    let mut seen = Vec::new();
    let mut failed = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read scenario file");
        let scenario: Scenario = serde_json::from_str(&text)
            .unwrap_or_else(|error| panic!("{}: {error}", file.display()));
        assert!(
            !KNOWN_GAPS.iter().any(|(id, _)| *id == scenario.id),
            "scenario {} is listed as a known gap but has a file",
            scenario.id
        );
        assert!(
            !seen.contains(&scenario.id),
            "scenario {} has two files",
            scenario.id
        );
        seen.push(scenario.id);
        println!("scenario {}: {}", scenario.id, scenario.title);
        // Each scenario runs in its own task, so one failure does not hide the others.
        let id = scenario.id;
        if let Err(error) = tokio::spawn(async move { run(&scenario).await }).await {
            failed.push((id, error.to_string()));
        }
    }
    assert!(
        failed.is_empty(),
        "{} scenario(s) failed (messages above): {:?}",
        failed.len(),
        failed.iter().map(|(id, _)| id).collect::<Vec<_>>()
    );
}

/// Runs one scenario: static side first, then the emulator.
async fn run(scenario: &Scenario) {
    let dir = tempfile::tempdir().expect("temp dir");
    let (file_name, document) = match (&scenario.template, &scenario.terraform_plan) {
        (Some(template), None) => ("azuredeploy.json", template),
        (None, Some(plan)) => ("plan.json", plan),
        _ => panic!(
            "scenario {}: set exactly one of `template` and `terraform_plan`",
            scenario.id
        ),
    };
    let template = dir.path().join(file_name);
    std::fs::write(
        &template,
        serde_json::to_string_pretty(document).expect("template json"),
    )
    .expect("write template");
    let engine = engine_options(scenario);
    let calls = calls(scenario);
    let deployment_expect = scenario
        .expect
        .as_ref()
        .filter(|_| scenario.request.is_none());

    let previous = scenario.previous_template.as_ref().map(|previous| {
        let path = dir.path().join("previous.json");
        std::fs::write(
            &path,
            serde_json::to_string_pretty(previous).expect("previous json"),
        )
        .expect("write previous template");
        arm_topology(scenario.id, &path)
    });

    check_side(
        scenario,
        &template,
        &engine,
        &calls,
        deployment_expect,
        previous.as_ref(),
    );
    up_side(
        scenario,
        &template,
        &engine,
        &calls,
        deployment_expect,
        dir.path(),
        previous,
    )
    .await;
}

fn scale_unit(scenario: &Scenario) -> ScaleUnit {
    match scenario.scale_unit.as_deref() {
        None | Some("newer") => ScaleUnit::Newer,
        Some("older") => ScaleUnit::Older,
        Some(other) => panic!(
            "scenario {}: scale_unit `{other}` is not `newer` or `older`",
            scenario.id
        ),
    }
}

/// Evaluates an ARM template offline, as `check` does.
fn arm_topology(id: u32, template: &Path) -> Topology {
    let provider = SimulatedProvider::new(KeyMode::Placeholder);
    let options = EvalOptions {
        scope: Scope::default(),
        parameters: Parameters::new(),
    };
    let deployment =
        subnetlock_arm::evaluate_file(template, &options, &provider).unwrap_or_else(|error| {
            panic!("scenario {id} (check): template does not evaluate: {error}")
        });
    build_topology(&deployment)
}

fn check_side(
    scenario: &Scenario,
    template: &Path,
    engine: &EngineOptions,
    calls: &[(Call, Expect)],
    deployment_expect: Option<&Expect>,
    previous: Option<&Topology>,
) {
    let id = scenario.id;
    let mut topology = match plan_topology(scenario, template) {
        Some(topology) => topology,
        None => arm_topology(id, template),
    };
    if let Some(previous) = previous {
        subnetlock_model::validate_redeploy(previous, &mut topology);
    }
    subnetlock_model::validate_scale_unit(&mut topology, scale_unit(scenario));
    let analysis = analyze(topology, engine);

    for expect in deployment_expect
        .into_iter()
        .chain(calls.iter().map(|(_, expect)| expect))
    {
        assert_finding(id, "check", &analysis.findings, expect);
    }
    let fails =
        deployment_expect.is_some_and(|expect| expect.deployment.as_deref() == Some("fails"));
    if !fails {
        let failing: Vec<&Finding> = analysis
            .findings
            .iter()
            .filter(|finding| finding.blocks_local_deployment())
            .collect();
        assert!(
            failing.is_empty(),
            "scenario {id} (check): unexpected deployment failure: {failing:?}"
        );
    }

    for (call, expect) in calls {
        let Some(status) = expect.status else {
            continue;
        };
        let site = analysis
            .topology
            .site(&call.to)
            .unwrap_or_else(|| panic!("scenario {id} (check): no site `{}`", call.to));
        let host = host_of(site, &call.site);
        let probe = Probe {
            from: call.from.clone(),
            host,
            path: call.path.clone(),
            function: None,
            with_key: call.key,
            function_disabled: false,
        };
        let headers: Vec<(String, String)> = call
            .headers
            .iter()
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect();
        let prediction =
            predict_with_headers(&analysis, &auth_levels(scenario), engine, &probe, &headers)
                .unwrap_or_else(|error| panic!("scenario {id} (check): {error}"));
        assert_eq!(
            prediction.status, status,
            "scenario {id} (check): {} -> {} {} {}: why: {:?}",
            call.from, call.to, call.site, call.path, prediction.why
        );
    }
}

async fn up_side(
    scenario: &Scenario,
    template: &Path,
    engine: &EngineOptions,
    calls: &[(Call, Expect)],
    deployment_expect: Option<&Expect>,
    dir: &Path,
    previous: Option<Topology>,
) {
    let id = scenario.id;
    let mut config = EmulatorConfig::new(template.to_owned(), dir.join("state"));
    config.previous = previous;
    config.scale_unit = scale_unit(scenario);
    config.run_builds = false;
    config.engine = engine.clone();
    config.bindings = bind_handlers(scenario, dir);
    config.topology = plan_topology(scenario, template);
    let started = Emulator::start(config).await;

    if let Some(expect) =
        deployment_expect.filter(|expect| expect.deployment.as_deref() == Some("fails"))
    {
        match started {
            Err(EmulatorError::DeploymentRejected { findings }) => {
                assert_finding(id, "up", &findings, expect);
            }
            Err(error) => panic!("scenario {id} (up): rejected for another reason: {error}"),
            Ok(emulator) => {
                emulator.shutdown().await;
                panic!("scenario {id} (up): the emulator deployed a template Azure rejects");
            }
        }
        return;
    }
    let emulator = started
        .unwrap_or_else(|error| panic!("scenario {id} (up): emulator did not start: {error}"));
    for expect in calls.iter().map(|(_, expect)| expect) {
        if expect.deployment.is_some() {
            assert_finding(id, "up", emulator.findings(), expect);
        }
    }

    for (call, expect) in calls {
        let Some(status) = expect.status else {
            continue;
        };
        let host = {
            let site = emulator
                .topology()
                .site(&call.to)
                .unwrap_or_else(|| panic!("scenario {id} (up): no site `{}`", call.to));
            host_of(site, &call.site)
        };
        let key = if call.key {
            function_key(&emulator, call)
                .unwrap_or_else(|| panic!("scenario {id} (up): no key for {}", call.path))
        } else {
            String::new()
        };
        let live = send(&emulator, call, &host, &key).await;
        assert_eq!(
            live,
            Some(status),
            "scenario {id} (up): {} -> {} {} {} (live status; None means no response came)",
            call.from,
            call.to,
            call.site,
            call.path
        );
    }
    emulator.shutdown().await;
}

/// Sends `call` through the caller's source proxy over HTTPS; `None` when no response came.
async fn send(emulator: &Emulator, call: &Call, host: &str, key: &str) -> Option<u16> {
    let caller: Caller = call.from.parse().expect("caller text");
    let proxy = emulator
        .source_proxy(&caller)
        .await
        .expect("source proxy starts");
    let client = reqwest::Client::builder()
        .proxy(reqwest::Proxy::all(format!("http://{proxy}")).expect("proxy url"))
        .tls_built_in_root_certs(false)
        .add_root_certificate(
            reqwest::Certificate::from_pem(emulator.ca_pem().as_bytes()).expect("ca"),
        )
        .build()
        .expect("client");
    let mut request = client.get(format!("https://{host}{}", call.path));
    if !key.is_empty() {
        request = request.query(&[("code", key)]);
    }
    for (name, value) in &call.headers {
        request = request.header(name, value);
    }
    match request.send().await {
        Ok(response) => Some(response.status().as_u16()),
        Err(error) => {
            println!("request failed: {error}");
            None
        }
    }
}

/// Handler that answers 200 to every request the Functions host forwards to it.
const HANDLER: &str = r#"
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        body = b"handler reached"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

ThreadingHTTPServer(("127.0.0.1", int(os.environ["FUNCTIONS_CUSTOMHANDLER_PORT"])), Handler).serve_forever()
"#;

/// Writes one function app folder per site in `functions` and binds the site to it.
fn bind_handlers(scenario: &Scenario, dir: &Path) -> Bindings {
    let mut bindings = Bindings::default();
    for (site, functions) in &scenario.functions {
        let root = dir.join("apps").join(site);
        std::fs::create_dir_all(&root).expect("app dir");
        std::fs::write(root.join("handler.py"), HANDLER).expect("handler");
        let host = serde_json::json!({
            "version": "2.0",
            "customHandler": {
                "description": {"defaultExecutablePath": "python3", "arguments": ["handler.py"]},
                "enableForwardingHttpRequest": true
            }
        });
        std::fs::write(root.join("host.json"), host.to_string()).expect("host.json");
        for (function, auth_level) in functions {
            let folder = root.join(function);
            std::fs::create_dir_all(&folder).expect("function dir");
            let binding = serde_json::json!({"bindings": [
                {"type": "httpTrigger", "direction": "in", "name": "req", "authLevel": auth_level, "methods": ["get"]},
                {"type": "http", "direction": "out", "name": "res"}
            ]});
            std::fs::write(folder.join("function.json"), binding.to_string())
                .expect("function.json");
        }
        bindings.apps.push(AppBinding {
            site_pattern: site.clone(),
            function_app: root,
            executable: None,
            build: None,
        });
    }
    bindings
}

/// `authLevel` by lower-case (site, function), as `check` reads it from bound folders.
fn auth_levels(scenario: &Scenario) -> HashMap<(String, String), String> {
    let mut levels = HashMap::new();
    for (site, functions) in &scenario.functions {
        for (function, level) in functions {
            levels.insert(
                (site.to_ascii_lowercase(), function.to_ascii_lowercase()),
                level.to_ascii_lowercase(),
            );
        }
    }
    levels
}

/// The key of the function `call.path` names, from the running emulator.
fn function_key(emulator: &Emulator, call: &Call) -> Option<String> {
    let name = call.path.trim_start_matches("/api/");
    emulator
        .site(&call.to)?
        .functions
        .iter()
        .find(|function| function.name.eq_ignore_ascii_case(name))
        .map(|function| function.key.clone())
}

/// Reads the topology of a `terraform_plan` scenario from the plan file, as `check` and `up`
/// do. Returns `None` for ARM scenarios.
fn plan_topology(scenario: &Scenario, plan: &Path) -> Option<Topology> {
    scenario.terraform_plan.as_ref()?;
    let topology = subnetlock_terraform::topology_from_plan(plan)
        .unwrap_or_else(|error| panic!("scenario {}: plan does not read: {error}", scenario.id));
    Some(topology)
}

fn assert_finding(id: u32, side: &str, findings: &[Finding], expect: &Expect) {
    let (Some(deployment), Some(code)) = (&expect.deployment, &expect.code) else {
        return;
    };
    let outcome = match deployment.as_str() {
        "fails" => Outcome::DeployFails,
        "silent" => Outcome::Silent,
        "tooling" => Outcome::ToolingRejects,
        other => panic!("scenario {id}: unknown deployment outcome `{other}`"),
    };
    let found = findings
        .iter()
        .any(|finding| finding.code.to_string() == *code && finding.outcome == Some(outcome));
    let codes: Vec<String> = findings
        .iter()
        .map(|finding| format!("{} {:?}", finding.code, finding.outcome))
        .collect();
    assert!(
        found,
        "scenario {id} ({side}): expected finding {code} ({deployment}), got {codes:?}"
    );
}

fn host_of(site: &subnetlock_model::Site, kind: &str) -> String {
    match kind {
        "scm" => site.scm_host_name.clone(),
        _ => site.default_host_name.clone(),
    }
}

/// The scenario's calls, each with its expectation.
fn calls(scenario: &Scenario) -> Vec<(Call, Expect)> {
    let mut calls = Vec::new();
    if let Some(call) = &scenario.request {
        let expect = call
            .expect
            .clone()
            .or_else(|| scenario.expect.clone())
            .unwrap_or_else(|| panic!("scenario {}: request without expect", scenario.id));
        calls.push((call.clone(), expect));
    }
    for call in &scenario.requests {
        let expect = call
            .expect
            .clone()
            .unwrap_or_else(|| panic!("scenario {}: request without expect", scenario.id));
        calls.push((call.clone(), expect));
    }
    calls
}

fn engine_options(scenario: &Scenario) -> EngineOptions {
    let mut options = EngineOptions::default();
    if !scenario.service_tags.is_empty() {
        let entries = scenario.service_tags.iter().map(|(tag, prefixes)| {
            let prefixes: Vec<IpNet> = prefixes
                .iter()
                .map(|prefix| IpNet::parse(prefix).expect("service tag prefix"))
                .collect();
            (tag.clone(), prefixes)
        });
        options.service_tags = Some(Arc::new(ServiceTagTable::from_prefixes(entries)));
    }
    options
}

fn scenario_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/scenarios exists")
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    files.sort();
    files
}
