//! End to end: the reference system deployed by `up` from real templates, with the real
//! handler processes behind the emulated front end, held to what `check` predicts.
//!
//! Every request here is real HTTP over loopback: HTTPS through per-caller egress proxies
//! into the front end, then to the Functions host and the handler process.

// Tests fail loudly on broken fixtures.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use subnetlock_access::{Action, EngineOptions, Reason, SiteKind};
use subnetlock_arm::{EvalOptions, Parameters, Scope};
use subnetlock_emulator::{Bindings, Caller, Emulator, EmulatorConfig};
use subnetlock_model::{build_topology, FindingCode, KeyMode, SimulatedProvider};
use subnetlock_reach::{analyze, Analysis};

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("functions/ has a parent")
        .to_owned()
}

fn example_dir() -> PathBuf {
    workspace_root().join("examples/lock-in-subnet")
}

/// The original 2020 template, read from the shared corpus beside the workspace.
fn corpus_template() -> Option<PathBuf> {
    let path = workspace_root().join("../shared/corpus/arm/vplauzon-lock-in-subnet.json");
    if path.is_file() {
        Some(path)
    } else {
        println!("skipped: {} is absent", path.display());
        None
    }
}

/// The resource group id every test deploys into, and the suffix Azure derives from it.
const RESOURCE_GROUP_ID: &str =
    "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/subnetlock";

fn suffix() -> String {
    subnetlock_arm::unique_string(&[RESOURCE_GROUP_ID])
}

fn parameters_for(template: &Path) -> Option<PathBuf> {
    let candidate = example_dir().join("azuredeploy.parameters.json");
    let is_example = template
        .file_name()
        .is_some_and(|name| name == "azuredeploy.json");
    is_example.then_some(candidate)
}

/// What `check` says about `template`, with the auth levels of the bound function folders.
fn check(template: &Path) -> (Analysis, HashMap<(String, String), String>) {
    let provider = SimulatedProvider::new(KeyMode::Placeholder);
    let parameters = match parameters_for(template) {
        Some(path) => Parameters::from_file(&path).expect("parameters file"),
        None => Parameters::new(),
    };
    let options = EvalOptions {
        scope: Scope::default(),
        parameters,
    };
    let deployment =
        subnetlock_arm::evaluate_file(template, &options, &provider).expect("template evaluates");
    let topology = build_topology(&deployment);
    let suffix = suffix();
    let mut levels = HashMap::new();
    levels.insert(
        (format!("function-app-a-{suffix}"), "function-a".to_owned()),
        "function".to_owned(),
    );
    levels.insert(
        (format!("function-app-b-{suffix}"), "function-b".to_owned()),
        "function".to_owned(),
    );
    (analyze(topology, &EngineOptions::default()), levels)
}

struct Running {
    emulator: Emulator,
    _state: tempfile::TempDir,
}

async fn up(template: &Path) -> Running {
    let state = tempfile::tempdir().expect("temp dir");
    let mut config = EmulatorConfig::new(template.to_owned(), state.path().join("state"));
    config.bindings = Bindings::load(&example_dir().join("subnetlock.json")).expect("bindings");
    config.parameters = parameters_for(template);
    config.run_builds = false;
    config.executable_overrides = vec![
        (
            "function-app-a-*".to_owned(),
            PathBuf::from(env!("CARGO_BIN_EXE_function-app-a")),
        ),
        (
            "function-app-b-*".to_owned(),
            PathBuf::from(env!("CARGO_BIN_EXE_function-app-b")),
        ),
    ];
    let emulator = Emulator::start(config).await.expect("emulator starts");
    Running {
        emulator,
        _state: state,
    }
}

/// An HTTPS client whose requests carry `caller`'s source identity.
async fn client_as(emulator: &Emulator, caller: &str) -> reqwest::Client {
    let caller: Caller = caller.parse().expect("caller");
    let proxy = emulator.source_proxy(&caller).await.expect("source proxy");
    reqwest::Client::builder()
        .proxy(reqwest::Proxy::all(format!("http://{proxy}")).expect("proxy url"))
        .tls_built_in_root_certs(false)
        .add_root_certificate(
            reqwest::Certificate::from_pem(emulator.ca_pem().as_bytes()).expect("ca"),
        )
        .build()
        .expect("client")
}

struct Urls {
    a_with_key: String,
    a_without_key: String,
    b_with_key: String,
}

fn urls(emulator: &Emulator) -> Urls {
    let a = emulator.site("function-app-a-*").expect("site A");
    let b = emulator.site("function-app-b-*").expect("site B");
    let function_a = a.functions.first().expect("function-a");
    let function_b = b.functions.first().expect("function-b");
    Urls {
        a_with_key: format!("{}?code={}", function_a.url, function_a.key),
        a_without_key: function_a.url.clone(),
        b_with_key: format!("{}?code={}", function_b.url, function_b.key),
    }
}

async fn get(client: &reqwest::Client, url: &str) -> (u16, String, reqwest::header::HeaderMap) {
    let response = client.get(url).send().await.expect("response");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.text().await.expect("body");
    (status, body, headers)
}

/// Runs the reference results for `template` and asserts them one by one.
async fn assert_reference_results(template: &Path) {
    let (analysis, levels) = check(template);
    let running = up(template).await;
    let emulator = &running.emulator;
    let urls = urls(emulator);
    let internet = client_as(emulator, "internet:203.0.113.7").await;

    let (status, body, _) = get(&internet, &urls.a_with_key).await;
    assert_eq!(status, 200, "internet -> A with key: {body}");
    assert_eq!(body, "Function B returned 42");

    let (status, body, headers) = get(&internet, &urls.b_with_key).await;
    assert_eq!(status, 403, "internet -> B: {body}");
    assert!(body.contains("Error 403 - Forbidden"));
    assert_eq!(
        headers
            .get("x-ms-forbidden-ip")
            .and_then(|v| v.to_str().ok()),
        Some("203.0.113.7")
    );

    let (status, _, _) = get(&internet, &urls.a_without_key).await;
    assert_eq!(status, 401, "internet -> A without key");

    // A's call to B went through the service endpoint of subnet `default`.
    let decisions = emulator.decisions();
    let a_to_b = decisions
        .iter()
        .find(|record| record.caller.starts_with("app:function-app-a-"))
        .expect("A called B");
    assert_eq!(a_to_b.verdict, Some(Action::Allow));
    assert_eq!(a_to_b.status, 200);
    let subnet = a_to_b
        .source
        .service_endpoint
        .as_ref()
        .expect("subnet identity");
    assert_eq!(subnet.name(), "default");
    assert!(matches!(
        &a_to_b.reason,
        Some(Reason::Rule {
            list: SiteKind::Main,
            priority: 100,
            action: Action::Allow,
            ..
        })
    ));

    // `check` predicted every one of these, and `up` did each of them.
    let results = subnetlock::run_probes(emulator, &analysis, &levels, &EngineOptions::default())
        .await
        .expect("probes");
    assert!(results.len() >= 5, "{results:?}");
    for result in &results {
        assert!(result.matches(), "check and up differ: {result:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn example_template_reference_results() {
    assert_reference_results(&example_dir().join("azuredeploy.json")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn control_api_serves_decisions_and_rejects_bad_since() {
    let running = up(&example_dir().join("azuredeploy.json")).await;
    let emulator = &running.emulator;
    let client = client_as(emulator, "internet:203.0.113.7").await;
    let (status, _, _) = get(&client, &urls(emulator).b_with_key).await;
    assert_eq!(status, 403);

    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(emulator.state_file()).expect("state file"))
            .expect("state json");
    let control = state["control_url"].as_str().expect("control url");
    let token = state["token"].as_str().expect("token");
    let plain = reqwest::Client::new();
    let fetch = |since: &str| {
        plain
            .get(format!("{control}/v1/decisions?since={since}"))
            .bearer_auth(token)
            .send()
    };

    let all = fetch("0").await.expect("decisions");
    assert_eq!(all.status(), 200);
    let decisions: serde_json::Value =
        serde_json::from_str(&all.text().await.expect("body")).expect("json");
    let denied = decisions
        .as_array()
        .expect("array")
        .iter()
        .find(|record| record["status"] == 403)
        .expect("the 403 is recorded");
    assert_eq!(denied["source"]["address"], "203.0.113.7");

    for invalid in ["abc", "-1"] {
        let response = fetch(invalid).await.expect("decisions");
        assert_eq!(response.status(), 400, "since={invalid}");
    }

    // The scheme name ignores case; the token does not.
    let with_authorization = |value: String| {
        plain
            .get(format!("{control}/v1/state"))
            .header("authorization", value)
            .send()
    };
    let lower = with_authorization(format!("bearer {token}"))
        .await
        .expect("state");
    assert_eq!(lower.status(), 200);
    let wrong = with_authorization(format!("Bearer {}", token.to_uppercase()))
        .await
        .expect("state");
    assert_eq!(wrong.status(), 401);
    running.emulator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn original_2020_template_reference_results() {
    let Some(template) = corpus_template() else {
        return;
    };
    assert_reference_results(&template).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn original_2020_template_site_names_match_azure() {
    let Some(template) = corpus_template() else {
        return;
    };
    let running = up(&template).await;
    // uniqueString of the resource group id, checked against a separate Python port of
    // Azure's algorithm.
    assert_eq!(suffix(), "yobmxbvmtplck");
    let names: Vec<&str> = running
        .emulator
        .sites()
        .iter()
        .map(|site| site.name.as_str())
        .collect();
    assert!(names.contains(&"function-app-a-yobmxbvmtplck"), "{names:?}");
    assert!(names.contains(&"function-app-b-yobmxbvmtplck"), "{names:?}");
}

/// Writes a copy of the example template changed by `edit` into `dir`.
fn edited_example(dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) -> PathBuf {
    let text = std::fs::read_to_string(example_dir().join("azuredeploy.json")).expect("template");
    let mut template: serde_json::Value = serde_json::from_str(&text).expect("json");
    edit(&mut template);
    let path = dir.join("azuredeploy.json");
    std::fs::write(
        &path,
        serde_json::to_string_pretty(&template).expect("json"),
    )
    .expect("write");
    path
}

fn resources(template: &mut serde_json::Value) -> &mut Vec<serde_json::Value> {
    template["resources"]
        .as_array_mut()
        .expect("resources array")
}

fn site_a(template: &mut serde_json::Value) -> &mut serde_json::Value {
    resources(template)
        .iter_mut()
        .find(|resource| {
            resource["type"] == "Microsoft.Web/sites"
                && resource["name"]
                    .as_str()
                    .is_some_and(|name| name.contains("functionAppAName"))
        })
        .expect("site A")
}

#[tokio::test(flavor = "multi_thread")]
async fn app_not_integrated_gets_403_from_b() {
    let dir = tempfile::tempdir().expect("temp dir");
    let template = edited_example(dir.path(), |template| {
        let properties = site_a(template)["properties"]
            .as_object_mut()
            .expect("properties");
        properties.remove("virtualNetworkSubnetId");
    });
    std::fs::copy(
        example_dir().join("azuredeploy.parameters.json"),
        dir.path().join("azuredeploy.parameters.json"),
    )
    .expect("parameters");
    let (analysis, _) = check(&template);
    let a_to_b = analysis
        .rows
        .iter()
        .find(|row| {
            row.from.label.starts_with("app:function-app-a-")
                && row.to.site.starts_with("function-app-b-")
                && row.to.kind == SiteKind::Main
        })
        .expect("row A -> B");
    assert_eq!(a_to_b.decision.verdict, Action::Deny);

    let running = up(&template).await;
    let internet = client_as(&running.emulator, "internet").await;
    let (status, body, _) = get(&internet, &urls(&running.emulator).a_with_key).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.starts_with("Error calling function B:"), "{body}");
    let record = running
        .emulator
        .decisions()
        .into_iter()
        .find(|record| record.caller.starts_with("app:function-app-a-"))
        .expect("A called B");
    assert_eq!(record.status, 403);
    assert_eq!(record.source.service_endpoint, None);
}

#[tokio::test(flavor = "multi_thread")]
async fn subnet_without_service_endpoint_denies_and_check_says_why() {
    let dir = tempfile::tempdir().expect("temp dir");
    let template = edited_example(dir.path(), |template| {
        let vnet = resources(template)
            .iter_mut()
            .find(|resource| resource["type"] == "Microsoft.Network/virtualNetworks")
            .expect("vnet");
        let subnet = vnet["properties"]["subnets"][0]["properties"]
            .as_object_mut()
            .expect("subnet properties");
        subnet.remove("serviceEndpoints");
    });
    std::fs::copy(
        example_dir().join("azuredeploy.parameters.json"),
        dir.path().join("azuredeploy.parameters.json"),
    )
    .expect("parameters");

    let (analysis, _) = check(&template);
    let finding = analysis
        .findings
        .iter()
        .find(|finding| finding.code == FindingCode::SL003)
        .expect("SL003 finding");
    assert!(
        finding
            .message
            .contains("no `Microsoft.Web` service endpoint"),
        "{}",
        finding.message
    );
    let location = finding.location.as_ref().expect("located");
    assert!(location.line > 1);

    let running = up(&template).await;
    let internet = client_as(&running.emulator, "internet").await;
    let (status, body, _) = get(&internet, &urls(&running.emulator).a_with_key).await;
    assert_eq!(status, 400, "{body}");
    let record = running
        .emulator
        .decisions()
        .into_iter()
        .find(|record| record.caller.starts_with("app:function-app-a-"))
        .expect("A called B");
    assert_eq!(record.status, 403);
}

#[tokio::test(flavor = "multi_thread")]
async fn forged_identity_headers_from_internet_get_403() {
    let running = up(&example_dir().join("azuredeploy.json")).await;
    let emulator = &running.emulator;
    let urls = urls(emulator);
    let forged = [
        ("x-forwarded-for", "10.0.0.4"),
        ("x-client-ip", "10.0.0.4"),
        ("x-azure-clientip", "10.0.0.4"),
        ("x-ms-forwarded-client-ip", "fd00::1002:fc01:3000:2000:1000"),
        ("x-azure-socketip", "10.0.0.4"),
        ("x-subnetlock-caller", "app:function-app-a-x"),
        ("x-ms-client-subnet", "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/subnetlock/providers/Microsoft.Network/virtualNetworks/vnet/subnets/default"),
    ];

    // Through the internet caller's proxy.
    let internet = client_as(emulator, "internet:198.51.100.9").await;
    let mut request = internet.get(&urls.b_with_key);
    for (name, value) in forged {
        request = request.header(name, value);
    }
    let response = request.send().await.expect("response");
    assert_eq!(response.status().as_u16(), 403);

    // Straight to the front end's TLS listener, as a plain loopback client.
    let https = emulator.https_addr();
    let host = emulator.site("function-app-b-*").expect("B").host.clone();
    let direct = reqwest::Client::builder()
        .no_proxy()
        .resolve(&host, https)
        .tls_built_in_root_certs(false)
        .add_root_certificate(
            reqwest::Certificate::from_pem(emulator.ca_pem().as_bytes()).expect("ca"),
        )
        .build()
        .expect("client");
    // reqwest ignores the port of a `resolve` override, so the URL carries it.
    let direct_url = urls
        .b_with_key
        .replacen(&host, &format!("{host}:{}", https.port()), 1);
    let mut request = direct.get(&direct_url);
    for (name, value) in forged {
        request = request.header(name, value);
    }
    let response = request.send().await.expect("response");
    assert_eq!(response.status().as_u16(), 403);
    assert_eq!(
        response
            .headers()
            .get("x-ms-forbidden-ip")
            .and_then(|v| v.to_str().ok()),
        Some("127.0.0.1")
    );
}

/// Sends raw bytes to `addr` and returns what comes back until the server closes or goes
/// quiet for a second.
async fn raw_exchange(addr: std::net::SocketAddr, request: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request).await.expect("write");
    let mut received = Vec::new();
    let mut chunk = [0u8; 4096];
    while let Ok(Ok(count)) =
        tokio::time::timeout(Duration::from_secs(1), stream.read(&mut chunk)).await
    {
        if count == 0 {
            break;
        }
        received.extend_from_slice(&chunk[..count]);
    }
    String::from_utf8_lossy(&received).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn egress_proxy_decides_on_the_head() {
    let running = up(&example_dir().join("azuredeploy.json")).await;
    let emulator = &running.emulator;
    let b = emulator.site("function-app-b-*").expect("B").host.clone();
    let caller: Caller = "internet:198.51.100.9".parse().expect("caller");
    let proxy = emulator.source_proxy(&caller).await.expect("source proxy");

    // A denied request through a proxy gets its 403 from the head too, with no
    // `100 Continue`.
    let denied = format!(
        "POST http://{b}/api/function-b HTTP/1.1\r\nHost: {b}\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
    );
    let answer = raw_exchange(proxy, denied.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    assert!(!answer.contains("100 Continue"), "{answer}");
    let statuses: Vec<u16> = emulator.decisions().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [403]);
}

#[tokio::test(flavor = "multi_thread")]
async fn front_end_decides_on_head() {
    let running = up(&example_dir().join("azuredeploy.json")).await;
    let emulator = &running.emulator;
    let http = emulator.http_addr();
    let b = emulator.site("function-app-b-*").expect("B").host.clone();

    // A denied request gets its 403 from the head at once, with no `100 Continue` that would
    // request the body.
    let denied = format!(
        "POST /api/function-b HTTP/1.1\r\nHost: {b}\r\nContent-Length: 10000000\r\nExpect: 100-continue\r\n\r\n"
    );
    let answer = raw_exchange(http, denied.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 403 Ip Forbidden"), "{answer}");
    assert!(!answer.contains("100 Continue"), "{answer}");

    // Two trailing dots do not name B.
    let dots = format!("GET /api/function-b HTTP/1.1\r\nHost: {b}..\r\n\r\n");
    let answer = raw_exchange(http, dots.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");

    // A is open and has `httpsOnly`, so plain HTTP is redirected; B denies first.
    let a = emulator.site("function-app-a-*").expect("A").host.clone();
    let plain = format!("GET /api/function-a?code=x HTTP/1.1\r\nHost: {a}\r\n\r\n");
    let answer = raw_exchange(http, plain.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 301"), "{answer}");
    let location = format!("location: https://{a}/api/function-a?code=x\r\n");
    assert!(
        answer
            .to_ascii_lowercase()
            .contains(&location.to_ascii_lowercase()),
        "{answer}"
    );

    // The redirect is decided from the head too, so `Expect` gets no `100 Continue`, and the
    // asterisk form of OPTIONS is sent to the root.
    let expecting = format!(
        "POST /api/function-a HTTP/1.1\r\nHost: {a}\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
    );
    let answer = raw_exchange(http, expecting.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 301"), "{answer}");
    let options = format!("OPTIONS * HTTP/1.1\r\nHost: {a}\r\n\r\n");
    let answer = raw_exchange(http, options.as_bytes()).await;
    let location = format!("location: https://{a}/\r\n");
    assert!(
        answer
            .to_ascii_lowercase()
            .contains(&location.to_ascii_lowercase()),
        "{answer}"
    );

    // A client that sends a large body without waiting still reads its 403: the front end
    // reads the unwanted body instead of resetting the connection under it.
    let blind =
        format!("POST /api/function-b HTTP/1.1\r\nHost: {b}\r\nContent-Length: 5000000\r\n\r\n");
    let mut blind = blind.into_bytes();
    blind.resize(blind.len() + 5_000_000, b'x');
    let answer = raw_exchange(http, &blind).await;
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");

    // A request the HTTP parser rejects still gets a record.
    let malformed = format!("GET / HTTP/1.1\r\nHost: {b}\r\nContent-Length: +3\r\n\r\n");
    let answer = raw_exchange(http, malformed.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");

    // hyper closes the connection before the front end records the request it could not
    // parse, so the caller may see the close before the record exists.
    let mut statuses: Vec<(String, u16)> = Vec::new();
    for _ in 0..200 {
        statuses = emulator
            .decisions()
            .iter()
            .map(|record| (record.host.clone(), record.status))
            .collect();
        if statuses.len() >= 7 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        statuses,
        [
            (b.to_ascii_lowercase(), 403),
            (format!("{}..", b.to_ascii_lowercase()), 404),
            (a.to_ascii_lowercase(), 301),
            (a.to_ascii_lowercase(), 301),
            (a.to_ascii_lowercase(), 301),
            (b.to_ascii_lowercase(), 403),
            (String::new(), 400),
        ]
    );
}
