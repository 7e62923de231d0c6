//! The Functions host runs a real Python custom handler on loopback.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use indexmap::IndexMap;
use serde_json::{json, Value};
use subnetlock_arm::testing::line_column_of;
use subnetlock_emulator::functions_host::{
    load_function_app, AuthLevel, FunctionError, FunctionKeys, FunctionsHost, HostConfig, HostError,
};
use tempfile::TempDir;

/// Handler that echoes forwarded requests, implements the JSON invoke contract on
/// `POST /<function>`, and exits with status 3 on `/api/die`.
const HANDLER: &str = r#"
import json, os, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def reply(self, status, payload, headers=None):
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def handle_any(self):
        if self.path.startswith("/api/die"):
            os._exit(3)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        if self.command == "POST" and not self.path.startswith("/api/"):
            request = json.loads(body)["Data"]["req"]
            echo = {"function": self.path, "params": request["Params"], "query": request["Query"],
                    "method": request["Method"], "url": request["Url"], "body": request["Body"],
                    "headers": request["Headers"]}
            self.reply(200, {"Outputs": {"res": {"statusCode": "201", "body": json.dumps(echo),
                                                  "headers": {"X-Handler": "json"}}},
                             "Logs": ["invoked " + self.path]})
            return
        self.reply(200, {"method": self.command, "path": self.path, "body": body,
                         "invocation_id": self.headers.get("X-Azure-Functions-InvocationId"),
                         "host_version": self.headers.get("X-Azure-Functions-HostVersion"),
                         "user_agent": self.headers.get("User-Agent"),
                         "site": os.environ.get("WEBSITE_SITE_NAME"),
                         "worker_id": os.environ.get("FUNCTIONS_CUSTOMHANDLER_WORKER_ID"),
                         "args": sys.argv[1:]})

    do_GET = do_POST = do_PUT = do_DELETE = handle_any

port = int(os.environ["FUNCTIONS_CUSTOMHANDLER_PORT"])
ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
"#;

fn write(path: &Path, text: &str) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("create dir");
    }
    std::fs::write(path, text).expect("write file");
}

fn function_json(auth_level: &str, methods: Option<&[&str]>, route: Option<&str>) -> String {
    let mut trigger =
        json!({"type": "httpTrigger", "direction": "in", "name": "req", "authLevel": auth_level});
    if let Some(methods) = methods {
        trigger["methods"] = json!(methods);
    }
    if let Some(route) = route {
        trigger["route"] = json!(route);
    }
    json!({"bindings": [trigger, {"type": "http", "direction": "out", "name": "res"}]}).to_string()
}

/// Writes an app with a forwarding Python handler and five functions.
fn write_app(forwarding: bool) -> TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    write(&root.join("handler.py"), HANDLER);
    let host = json!({
        "version": "2.0",
        "customHandler": {
            "description": {"defaultExecutablePath": "python3", "arguments": ["handler.py", "%GREETING%"]},
            "enableForwardingHttpRequest": forwarding
        }
    });
    write(&root.join("host.json"), &host.to_string());
    write(
        &root.join("hello/function.json"),
        &function_json("anonymous", Some(&["get", "post"]), None),
    );
    write(
        &root.join("secure/function.json"),
        &function_json("function", None, Some("items/{id:int}")),
    );
    // Not `adminonly`: the host rejects a route starting with `admin`, and a function without
    // `route` is routed by its name.
    write(
        &root.join("masteronly/function.json"),
        &function_json("admin", None, None),
    );
    write(
        &root.join("die/function.json"),
        &function_json("anonymous", None, None),
    );
    write(
        &root.join("order/function.json"),
        &function_json(
            "anonymous",
            Some(&["post"]),
            Some("orders/{id:int}/{kind?}"),
        ),
    );
    dir
}

fn keys() -> FunctionKeys {
    let mut host = IndexMap::new();
    host.insert("default".to_string(), "host-key-1".to_string());
    let mut secure = IndexMap::new();
    secure.insert("default".to_string(), "secure-key-1".to_string());
    let mut order = IndexMap::new();
    order.insert("default".to_string(), "order-key-1".to_string());
    FunctionKeys {
        master: "master-key-1".to_string(),
        host,
        functions: [("secure".to_string(), secure), ("order".to_string(), order)]
            .into_iter()
            .collect(),
    }
}

fn config(root: &Path, startup_timeout: Duration) -> HostConfig {
    HostConfig {
        site_name: "app-a".to_string(),
        app: load_function_app(root, None).expect("load app"),
        env: vec![("GREETING".to_string(), "hello-arg".to_string())],
        keys: keys(),
        startup_timeout,
        invocation_timeout: Duration::from_secs(230),
    }
}

async fn start(forwarding: bool) -> (Arc<FunctionsHost>, TempDir) {
    let dir = write_app(forwarding);
    let host = FunctionsHost::start(config(dir.path(), Duration::from_secs(20)))
        .await
        .expect("start host");
    (host, dir)
}

fn request(method: Method, uri: &str) -> Request<Bytes> {
    Request::builder()
        .method(method)
        .uri(uri)
        .header("host", "app-a.azurewebsites.net")
        .body(Bytes::new())
        .expect("request")
}

fn json_body(response: &http::Response<Bytes>) -> Value {
    serde_json::from_slice(response.body()).expect("json body")
}

#[test]
fn load_reads_functions() {
    let dir = write_app(true);
    let app = load_function_app(dir.path(), None).expect("load");

    let names: Vec<&str> = app.functions.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, vec!["die", "hello", "masteronly", "order", "secure"]);
    assert!(app.function_errors.is_empty(), "{:?}", app.function_errors);
    assert_eq!(app.route_prefix, "api");
    assert!(app.forwarding);
    assert_eq!(app.executable, Path::new("python3"));
    assert_eq!(app.arguments, vec!["handler.py", "%GREETING%"]);
    assert_eq!(app.functions[2].auth_level, AuthLevel::Admin);
    assert_eq!(app.functions[3].methods, Some(vec![Method::POST]));
}

#[test]
fn load_reads_route_prefix() {
    let dir = write_app(true);
    let host = json!({
        "version": "2.0",
        "httpWorker": {"description": {"defaultExecutablePath": "python3"}},
        "extensions": {"http": {"routePrefix": "/v1/"}}
    });
    write(&dir.path().join("host.json"), &host.to_string());
    let app = load_function_app(dir.path(), Some(Path::new("/usr/bin/env"))).expect("load");

    assert_eq!(app.route_prefix, "v1");
    assert_eq!(app.executable, Path::new("/usr/bin/env"));
}

#[test]
fn load_error_names_field_read() {
    let cases = [
        (
            json!({"http": {"routePrefix": 5},
                   "customHandler": {"description": {"defaultExecutablePath": "python3"}}}),
            "http.routePrefix",
        ),
        (
            json!({"extensions": {"http": {"routePrefix": 5}},
                   "customHandler": {"description": {"defaultExecutablePath": "python3"}}}),
            "extensions.http.routePrefix",
        ),
        (json!({"httpWorker": {}}), "httpWorker.description"),
        (
            json!({"httpWorker": {"description": {}}}),
            "httpWorker.description.defaultExecutablePath",
        ),
        (json!({"customHandler": {}}), "customHandler.description"),
    ];
    for (host, expected) in cases {
        let dir = tempfile::tempdir().expect("tempdir");
        write(&dir.path().join("host.json"), &host.to_string());

        let error = load_function_app(dir.path(), None).expect_err("invalid host.json");

        match error {
            HostError::InvalidValue { field, .. } | HostError::InvalidType { field, .. } => {
                assert_eq!(field, expected, "{host}")
            }
            other => panic!("{host}: {other}"),
        }
    }
}

#[test]
fn load_type_error_names_path_and_place() {
    // Each case: host.json, the full path of the value at fault, the text it starts with, the
    // type expected and the type found.
    let cases = [
        (
            "{\n  \"version\": \"2.0\",\n  \"customHandler\": {\n    \"description\": {\"defaultExecutablePath\": 5}\n  }\n}\n",
            "customHandler.description.defaultExecutablePath",
            "5}",
            "a string",
            "the number 5",
        ),
        (
            "{\n  \"customHandler\": {\n    \"description\": {\"defaultExecutablePath\": \"python3\"},\n    \"enableForwardingHttpRequest\": \"yes\"\n  }\n}\n",
            "customHandler.enableForwardingHttpRequest",
            "\"yes\"",
            "a boolean",
            "the string \"yes\"",
        ),
        (
            "{\n  \"extensions\": {\"http\": {\"routePrefix\": 3}},\n  \"customHandler\": {\"description\": {\"defaultExecutablePath\": \"python3\"}}\n}\n",
            "extensions.http.routePrefix",
            "3}",
            "a string",
            "the number 3",
        ),
        (
            "{\n  \"httpWorker\": {\n    \"description\": {\"defaultExecutablePath\": \"python3\", \"arguments\": [\"a.py\", 7]}\n  }\n}\n",
            "httpWorker.description.arguments[1]",
            "7]",
            "a string",
            "the number 7",
        ),
        (
            "{\n  \"customHandler\": {\"description\": \"python3\"}\n}\n",
            "customHandler.description",
            "\"python3\"",
            "an object",
            "the string \"python3\"",
        ),
    ];
    for (text, expected_field, at, expected_type, found_type) in cases {
        let dir = tempfile::tempdir().expect("tempdir");
        let host = dir.path().join("host.json");
        write(&host, text);
        let (line, column) = line_column_of(text, at);

        let error = load_function_app(dir.path(), None).expect_err("invalid host.json");

        let message = error.to_string();
        let help = miette::Diagnostic::help(&error)
            .map(|help| help.to_string())
            .unwrap_or_default();
        let HostError::InvalidType {
            path,
            field,
            expected,
            found,
            location,
            ..
        } = error
        else {
            panic!("{expected_field}: {message}");
        };
        assert_eq!(field, expected_field);
        assert_eq!(path, host, "{field}");
        assert_eq!(expected, expected_type, "{field}");
        assert_eq!(found, found_type, "{field}");
        assert_eq!((location.line, location.column), (line, column), "{field}");
        assert_eq!(location.file, host, "{field}");
        assert!(
            message.contains(&format!(
                "invalid `{expected_field}` in `{}` at line {line}, column {column}: expected {expected_type}, found {found_type}",
                host.display()
            )),
            "{message}"
        );
        assert!(
            help.contains(&format!("write `{expected_field}` as ")),
            "{field}: {help}"
        );
    }
}

#[test]
fn function_type_error_names_binding_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        &dir.path().join("host.json"),
        r#"{"customHandler": {"description": {"defaultExecutablePath": "python3"}}}"#,
    );
    let function = "{\"bindings\": [\n  {\"type\": \"http\", \"direction\": \"out\", \"name\": \"res\"},\n  {\"type\": \"httpTrigger\", \"name\": \"req\", \"route\": 12}\n]}";
    write(&dir.path().join("numbered/function.json"), function);

    let app = load_function_app(dir.path(), None).expect("app");

    assert_eq!(app.function_errors.len(), 1, "{:?}", app.function_errors);
    let FunctionError::InvalidValue { field, reason, .. } = &app.function_errors[0] else {
        panic!("{:?}", app.function_errors);
    };
    assert_eq!(field, "bindings[1].route");
    assert_eq!(
        reason,
        "expected a string, found the number 12 at line 3, column 51"
    );
}

#[test]
fn load_requires_default_executable_with_override() {
    // The host does not start without `defaultExecutablePath`, so a local executable that
    // replaces it does not make the app load.
    for description in [json!({}), json!({"defaultExecutablePath": ""})] {
        let dir = tempfile::tempdir().expect("tempdir");
        let host = json!({"customHandler": {"description": description}});
        write(&dir.path().join("host.json"), &host.to_string());

        let error = load_function_app(dir.path(), Some(Path::new("python3")))
            .expect_err("no defaultExecutablePath");

        match error {
            HostError::InvalidValue { field, reason, .. } => {
                assert_eq!(
                    field, "customHandler.description.defaultExecutablePath",
                    "{host}"
                );
                // The reason explains why the local executable does not help.
                assert!(reason.starts_with("missing or empty"), "{host}: {reason}");
                assert!(reason.contains("`--handler`"), "{host}: {reason}");
            }
            other => panic!("{host}: {other}"),
        }
    }
}

#[test]
fn load_rejects_missing_custom_handler() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(&dir.path().join("host.json"), r#"{"version": "2.0"}"#);
    let error = load_function_app(dir.path(), None).expect_err("no customHandler");

    assert!(
        matches!(error, HostError::MissingCustomHandler { .. }),
        "{error}"
    );
}

#[tokio::test]
async fn forwarding_routes_to_handler() {
    let (host, _dir) = start(true).await;

    let response = host.handle(request(Method::GET, "/api/hello?x=1")).await;
    assert_eq!(response.status(), StatusCode::OK);
    let echo = json_body(&response);
    assert_eq!(echo["method"], "GET");
    assert_eq!(echo["path"], "/api/hello?x=1");
    assert_eq!(echo["invocation_id"].as_str().map(str::len), Some(36));
    assert_eq!(echo["host_version"], "4.x-subnetlock");
    assert_eq!(echo["user_agent"], "Azure-Functions-Host/4.x-subnetlock");
    assert_eq!(echo["site"], "app-a");
    assert_eq!(echo["worker_id"].as_str().map(str::len), Some(36));
    assert_eq!(echo["args"], json!(["hello-arg"]));

    let response = host.handle(request(Method::GET, "/API/Hello")).await;
    assert_eq!(response.status(), StatusCode::OK);

    let mut post = request(Method::POST, "/api/hello");
    *post.body_mut() = Bytes::from_static(b"posted");
    let response = host.handle(post).await;
    assert_eq!(json_body(&response)["body"], "posted");

    host.shutdown().await;
}

#[tokio::test]
async fn unknown_path_is_404() {
    let (host, _dir) = start(true).await;

    for uri in ["/api/nope", "/hello", "/api/items/abc", "/api/hello/extra"] {
        let response = host.handle(request(Method::GET, uri)).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "uri {uri}");
    }
    host.shutdown().await;
}

#[tokio::test]
async fn url_longer_than_4096_bytes_is_414() {
    let (host, _dir) = start(true).await;

    // Path and query of exactly 4,096 bytes still reach the handler; one byte more does not.
    let base = "/api/hello?pad=";
    let at_limit = format!("{base}{}", "x".repeat(4096 - base.len()));
    let response = host.handle(request(Method::GET, &at_limit)).await;
    assert_eq!(response.status(), StatusCode::OK);

    let over = format!("{at_limit}x");
    let response = host.handle(request(Method::GET, &over)).await;
    assert_eq!(response.status(), StatusCode::URI_TOO_LONG);
    host.shutdown().await;
}

#[tokio::test]
async fn wrong_method_is_404() {
    let (host, _dir) = start_with(&[]).await;

    // The method is a constraint of the route, so a path whose functions all reject the
    // method matches no route at all.
    let response = host.handle(request(Method::DELETE, "/api/hello")).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert!(response.headers().get("allow").is_none());
    assert!(response.body().is_empty());

    // `HttpMethodRouteConstraint` compares methods ignoring case.
    let lower_case = Method::from_bytes(b"get").expect("method");
    let function = invoked(&host, lower_case, "/api/hello").await;
    assert_eq!(function, Ok("/hello".to_string()));
    host.shutdown().await;
}

/// An extra anonymous function of the test app: name, `methods` and `route`.
type ExtraFunction<'a> = (&'a str, Option<&'a [&'a str]>, Option<&'a str>);

/// Writes the test app without forwarding, plus `extra` functions.
fn write_app_with(extra: &[ExtraFunction<'_>]) -> TempDir {
    let dir = write_app(false);
    for (name, methods, route) in extra {
        write(
            &dir.path().join(name).join("function.json"),
            &function_json("anonymous", *methods, *route),
        );
    }
    dir
}

/// Starts the test app without forwarding, plus `extra` functions.
async fn start_with(extra: &[ExtraFunction<'_>]) -> (Arc<FunctionsHost>, TempDir) {
    let dir = write_app_with(extra);
    let host = FunctionsHost::start(config(dir.path(), Duration::from_secs(20)))
        .await
        .expect("start host");
    (host, dir)
}

/// Returns the function that the JSON contract invoked, or the status when none was.
async fn invoked(host: &FunctionsHost, method: Method, uri: &str) -> Result<String, StatusCode> {
    let response = host.handle(request(method, uri)).await;
    if response.status() != StatusCode::CREATED {
        return Err(response.status());
    }
    let function = json_body(&response)["function"]
        .as_str()
        .map(str::to_string);
    Ok(function.expect("function in echo"))
}

#[tokio::test]
async fn routes_are_tried_in_name_order() {
    // The host sorts functions by name ignoring case, so `beta` comes before `Zeta` although
    // `Zeta` sorts first by bytes, and the first route that matches wins even where a later
    // one is more specific.
    let (host, _dir) = start_with(&[
        ("Zeta", None, Some("things/special")),
        ("beta", None, Some("things/{name}")),
        ("aaa", Some(&["post"]), Some("hello/{tail?}")),
    ])
    .await;

    let cases = [
        (Method::GET, "/api/things/special", Ok("/beta")),
        (Method::GET, "/api/things/other", Ok("/beta")),
        // `aaa` comes before `hello` and takes POST, and its method constraint passes GET on.
        (Method::POST, "/api/hello", Ok("/aaa")),
        (Method::GET, "/api/hello", Ok("/hello")),
        (Method::DELETE, "/api/hello", Err(StatusCode::NOT_FOUND)),
    ];
    for (method, uri, expected) in cases {
        let function = invoked(&host, method.clone(), uri).await;
        assert_eq!(function, expected.map(str::to_string), "{method} {uri}");
    }
    host.shutdown().await;
}

#[tokio::test]
async fn rejected_route_fails_only_its_function() {
    let dir = write_app_with(&[
        ("administer", None, None),
        ("probe", None, Some("/Runtime/health")),
        // Validated after `hello`, which already takes GET on this route.
        ("zhello", Some(&["get"]), Some("Hello/")),
        ("status", None, Some("status")),
    ]);

    let app = load_function_app(dir.path(), None).expect("load app");
    let failed: Vec<&FunctionError> = app.function_errors.iter().collect();
    assert_eq!(failed.len(), 3, "{failed:?}");
    assert!(
        matches!(failed[0], FunctionError::ReservedRoute { function, reserved: "admin", .. } if function == "administer"),
        "{:?}",
        failed[0]
    );
    assert!(
        matches!(failed[1], FunctionError::ReservedRoute { function, reserved: "runtime", .. } if function == "probe"),
        "{:?}",
        failed[1]
    );
    assert!(
        matches!(failed[2], FunctionError::ConflictingRoute { function, other, .. } if function == "zhello" && other == "hello"),
        "{:?}",
        failed[2]
    );
    let message = failed[0].to_string();
    assert!(message.contains("`administer`"), "{message}");
    assert!(message.contains("`admin`"), "{message}");
    let names: Vec<&str> = app.functions.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        names,
        vec!["die", "hello", "masteronly", "order", "secure", "status"]
    );

    let host = FunctionsHost::start(config(dir.path(), Duration::from_secs(20)))
        .await
        .expect("start host");
    let cases = [
        ("/api/administer", Err(StatusCode::NOT_FOUND)),
        ("/api/Runtime/health", Err(StatusCode::NOT_FOUND)),
        ("/api/hello", Ok("/hello")),
        ("/api/status", Ok("/status")),
    ];
    for (uri, expected) in cases {
        let function = invoked(&host, Method::GET, uri).await;
        assert_eq!(function, expected.map(str::to_string), "{uri}");
    }
    host.shutdown().await;
}

#[tokio::test]
async fn function_level_keys() {
    let (host, _dir) = start(true).await;

    let cases: [(&str, Option<&str>, StatusCode); 9] = [
        ("/api/items/5", None, StatusCode::UNAUTHORIZED),
        ("/api/items/5?code=wrong", None, StatusCode::UNAUTHORIZED),
        (
            "/api/items/5?code=order-key-1",
            None,
            StatusCode::UNAUTHORIZED,
        ),
        ("/api/items/5?code=secure-key-1", None, StatusCode::OK),
        ("/api/items/5", Some("host-key-1"), StatusCode::OK),
        ("/api/items/5", Some("master-key-1"), StatusCode::OK),
        (
            "/api/items/5",
            Some("secure-key-1x"),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "/api/items/5?code=secure-key-1",
            Some("wrong"),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "/api/items/5?code=secure-key-1",
            Some(""),
            StatusCode::UNAUTHORIZED,
        ),
    ];
    for (uri, header_key, expected) in cases {
        let mut request = request(Method::GET, uri);
        if let Some(key) = header_key {
            request
                .headers_mut()
                .insert("x-functions-key", key.parse().expect("header"));
        }
        let response = host.handle(request).await;
        assert_eq!(
            response.status(),
            expected,
            "uri {uri} header {header_key:?}"
        );
        if expected == StatusCode::UNAUTHORIZED {
            assert!(response.body().is_empty(), "uri {uri} body");
        }
    }
    host.shutdown().await;
}

#[tokio::test]
async fn admin_level_needs_master() {
    let (host, _dir) = start(true).await;

    let cases = [
        ("/api/masteronly?code=host-key-1", StatusCode::UNAUTHORIZED),
        (
            "/api/masteronly?code=secure-key-1",
            StatusCode::UNAUTHORIZED,
        ),
        ("/api/masteronly", StatusCode::UNAUTHORIZED),
        ("/api/masteronly?code=master-key-1", StatusCode::OK),
    ];
    for (uri, expected) in cases {
        let response = host.handle(request(Method::GET, uri)).await;
        assert_eq!(response.status(), expected, "uri {uri}");
    }
    host.shutdown().await;
}

#[tokio::test]
async fn handler_restarts_after_exit() {
    let (host, _dir) = start(true).await;
    assert_eq!(host.restarts(), 0);

    let response = host.handle(request(Method::GET, "/api/die")).await;
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);

    // The supervisor counts the restart when it spawns the new handler, which then needs time
    // to start Python, so this request is likely to wait for readiness.
    let deadline = Instant::now() + Duration::from_secs(10);
    while host.restarts() == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let response = host.handle(request(Method::GET, "/api/hello")).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(host.restarts(), 1);

    host.shutdown().await;
    let response = host.handle(request(Method::GET, "/api/hello")).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn json_contract_without_forwarding() {
    let (host, _dir) = start(false).await;

    let mut post = request(Method::POST, "/api/orders/5?x=1&x=2&y=z");
    post.headers_mut()
        .insert("content-type", "application/json".parse().expect("header"));
    *post.body_mut() = Bytes::from_static(br#"{"id":1005}"#);
    let response = host.handle(post).await;

    assert_eq!(response.status(), StatusCode::CREATED);
    let handler = response
        .headers()
        .get("x-handler")
        .and_then(|v| v.to_str().ok());
    assert_eq!(handler, Some("json"));
    let echo = json_body(&response);
    assert_eq!(echo["function"], "/order");
    assert_eq!(echo["method"], "POST");
    assert_eq!(echo["params"], json!({"id": "5"}));
    assert_eq!(echo["query"], json!({"x": "1", "y": "z"}));
    assert_eq!(
        echo["url"],
        "http://app-a.azurewebsites.net/api/orders/5?x=1&x=2&y=z"
    );
    assert_eq!(echo["body"], r#"{"id":1005}"#);
    assert_eq!(echo["headers"]["content-type"], json!(["application/json"]));

    let response = host
        .handle(request(Method::POST, "/api/orders/5/express"))
        .await;
    assert_eq!(
        json_body(&response)["params"],
        json!({"id": "5", "kind": "express"})
    );
    host.shutdown().await;
}

#[tokio::test]
async fn startup_timeout_names_site() {
    let dir = write_app(true);
    write(
        &dir.path().join("handler.py"),
        "import sys, time\nprint('booting slowly', file=sys.stderr, flush=True)\ntime.sleep(30)\n",
    );
    let started = Instant::now();
    let error = FunctionsHost::start(config(dir.path(), Duration::from_secs(1)))
        .await
        .expect_err("timeout");
    let message = error.to_string();

    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(matches!(error, HostError::TimedOut { .. }), "{message}");
    assert!(message.contains("`app-a`"), "{message}");
    assert!(message.contains("`python3`"), "{message}");
    assert!(message.contains("timed out after 1s"), "{message}");
    assert!(message.contains("booting slowly"), "{message}");
}

#[tokio::test]
async fn early_exit_reports_stderr() {
    let dir = write_app(true);
    write(
        &dir.path().join("handler.py"),
        "import sys\nprint('fatal: missing setting', file=sys.stderr)\nsys.exit(7)\n",
    );
    let error = FunctionsHost::start(config(dir.path(), Duration::from_secs(10)))
        .await
        .expect_err("exit");
    let message = error.to_string();

    assert!(matches!(error, HostError::Exited { .. }), "{message}");
    assert!(message.contains("exit code 7"), "{message}");
    assert!(message.contains("fatal: missing setting"), "{message}");
}

#[tokio::test]
async fn missing_executable_fails_spawn() {
    let dir = write_app(true);
    let mut config = config(dir.path(), Duration::from_secs(5));
    config.app.executable = dir.path().join("no-such-handler");
    let error = FunctionsHost::start(config).await.expect_err("spawn");

    assert!(matches!(error, HostError::Spawn { .. }), "{error}");
}

#[tokio::test]
async fn empty_route_prefix_routes_at_root() {
    let dir = write_app(true);
    let host_json = json!({
        "version": "2.0",
        "customHandler": {
            "description": {"defaultExecutablePath": "python3", "arguments": ["handler.py"]},
            "enableForwardingHttpRequest": true
        },
        "extensions": {"http": {"routePrefix": ""}}
    });
    write(&dir.path().join("host.json"), &host_json.to_string());
    let host = FunctionsHost::start(config(dir.path(), Duration::from_secs(20)))
        .await
        .expect("start host");

    let response = host.handle(request(Method::GET, "/hello")).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(json_body(&response)["path"], "/hello");

    let response = host.handle(request(Method::GET, "/api/hello")).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    host.shutdown().await;
}

/// Loads the test app with one more anonymous function whose trigger has `route`, returning
/// the load error.
fn load_error_with_route(route: &str) -> HostError {
    let dir = write_app(true);
    write(
        &dir.path().join("lookup/function.json"),
        &function_json("anonymous", None, Some(route)),
    );
    load_function_app(dir.path(), None).expect_err("invalid route")
}

#[test]
fn load_rejects_colon_after_regex_group() {
    // ASP.NET Core ends the constraint at `)` followed by `:`, leaving an unknown constraint
    // `c$)`, so the Functions host fails to start.
    let route = "codes/{p:regex(^(a|b):c$)}";
    let error = load_error_with_route(route);

    let HostError::InvalidRoute {
        function,
        path,
        route: reported,
        reason,
    } = &error
    else {
        panic!("expected an invalid route, got {error}");
    };
    assert_eq!(function, "lookup");
    assert!(path.ends_with("lookup/function.json"), "{}", path.display());
    assert_eq!(reported, route);
    assert!(
        reason.contains("`c$)` is not a known route constraint"),
        "{reason}"
    );
    assert!(error.to_string().contains("`lookup`"), "{error}");
}

#[test]
fn load_rejects_leading_slash_under_prefix() {
    let error = load_error_with_route("/codes");
    let HostError::InvalidRoute { reason, .. } = &error else {
        panic!("expected an invalid route, got {error}");
    };
    assert!(reason.contains("`api//codes`"), "{reason}");
}

#[tokio::test]
async fn default_value_is_checked_by_constraints() {
    let dir = write_app(false);
    write(
        &dir.path().join("paged/function.json"),
        &function_json("anonymous", None, Some("pages/{n:int=first}")),
    );
    write(
        &dir.path().join("listed/function.json"),
        &function_json("anonymous", None, Some("lists/{n:int=1}")),
    );
    let host = FunctionsHost::start(config(dir.path(), Duration::from_secs(20)))
        .await
        .expect("start host");

    // A default that fails its constraint loads, and only a path with a value matches.
    let response = host.handle(request(Method::GET, "/api/pages")).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let response = host.handle(request(Method::GET, "/api/pages/3")).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(json_body(&response)["params"], json!({"n": "3"}));

    // A default that passes is the route value when the path leaves it out.
    let response = host.handle(request(Method::GET, "/api/lists")).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(json_body(&response)["params"], json!({"n": "1"}));

    // One trailing slash is ignored, but an empty segment does not stand in for the default.
    let response = host.handle(request(Method::GET, "/api/lists/")).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let response = host.handle(request(Method::GET, "/api/lists//")).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    host.shutdown().await;
}

#[tokio::test]
async fn invalid_function_fails_only_itself() {
    let dir = write_app(false);
    let root = dir.path();
    write(&root.join("badjson/function.json"), "{\"bindings\": [");
    write(
        &root.join("badlevel/function.json"),
        &function_json("superuser", None, None),
    );
    write(
        &root.join("nobindings/function.json"),
        r#"{"bindings": []}"#,
    );
    write(
        &root.join("dashed/function.json"),
        &function_json("anonymous", None, None).replace("\"req\"", "\"my-req\""),
    );
    write(
        &root.join("1st/function.json"),
        &function_json("anonymous", None, None),
    );
    write(
        &root.join("Host/function.json"),
        &function_json("anonymous", None, None),
    );
    write(
        &root.join("my.func/function.json"),
        &function_json("anonymous", None, None),
    );

    let app = load_function_app(root, None).expect("load app");
    let names: Vec<&str> = app.functions.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, vec!["die", "hello", "masteronly", "order", "secure"]);

    // Errors come in name order, ignoring case: digits sort before letters.
    let failed: Vec<&FunctionError> = app.function_errors.iter().collect();
    assert_eq!(failed.len(), 7, "{failed:?}");
    assert!(
        matches!(failed[0], FunctionError::InvalidName { function } if function == "1st"),
        "{:?}",
        failed[0]
    );
    assert!(
        matches!(failed[1], FunctionError::InvalidJson { function, .. } if function == "badjson"),
        "{:?}",
        failed[1]
    );
    assert!(
        matches!(failed[2], FunctionError::InvalidValue { function, field, .. } if function == "badlevel" && field == "authLevel"),
        "{:?}",
        failed[2]
    );
    assert!(
        matches!(failed[3], FunctionError::InvalidValue { function, field, .. } if function == "dashed" && field == "bindings[0].name"),
        "{:?}",
        failed[3]
    );
    assert!(
        matches!(failed[4], FunctionError::InvalidName { function } if function == "Host"),
        "{:?}",
        failed[4]
    );
    assert!(
        matches!(failed[5], FunctionError::InvalidName { function } if function == "my.func"),
        "{:?}",
        failed[5]
    );
    assert!(
        matches!(failed[6], FunctionError::InvalidValue { function, field, .. } if function == "nobindings" && field == "bindings"),
        "{:?}",
        failed[6]
    );

    let message = failed[1].to_string();
    assert!(message.contains("`badjson`"), "{message}");
    assert!(message.contains("function.json"), "{message}");
    assert!(message.contains("line 1"), "{message}");
    let message = failed[2].to_string();
    assert!(message.contains("`badlevel`"), "{message}");
    assert!(message.contains("`superuser`"), "{message}");

    let host = FunctionsHost::start(config(root, Duration::from_secs(20)))
        .await
        .expect("start host");
    let cases = [
        ("/api/hello", Ok("/hello")),
        ("/api/badjson", Err(StatusCode::NOT_FOUND)),
        ("/api/badlevel", Err(StatusCode::NOT_FOUND)),
        ("/api/1st", Err(StatusCode::NOT_FOUND)),
        ("/api/dashed", Err(StatusCode::NOT_FOUND)),
        ("/api/Host", Err(StatusCode::NOT_FOUND)),
    ];
    for (uri, expected) in cases {
        let function = invoked(&host, Method::GET, uri).await;
        assert_eq!(function, expected.map(str::to_string), "{uri}");
    }
    host.shutdown().await;
}

#[tokio::test]
async fn disabled_function_keeps_its_route() {
    let dir = write_app_with(&[
        ("aaa", None, Some("things/{name}")),
        ("bbb", None, Some("things/special")),
    ]);
    // The host 2.x and later ignores `disabled` in function.json.
    write(
        &dir.path().join("ignored/function.json"),
        &json!({"disabled": true, "bindings": [
            {"type": "httpTrigger", "direction": "in", "name": "req", "authLevel": "anonymous"},
            {"type": "http", "direction": "out", "name": "res"}
        ]})
        .to_string(),
    );
    let mut config = config(dir.path(), Duration::from_secs(20));
    config
        .env
        .push(("AzureWebJobs.aaa.Disabled".to_string(), "true".to_string()));
    config
        .env
        .push(("AzureWebJobs_secure_Disabled".to_string(), "1".to_string()));
    let host = FunctionsHost::start(config).await.expect("start host");

    let cases = [
        // `aaa` comes first in name order, so its route hides `bbb` even while disabled.
        ("/api/things/special", Err(StatusCode::NOT_FOUND)),
        ("/api/things/other", Err(StatusCode::NOT_FOUND)),
        (
            "/api/things/special?code=host-key-1",
            Err(StatusCode::NOT_FOUND),
        ),
        ("/api/things/special?code=master-key-1", Ok("/aaa")),
        // The key is checked before the disabled state.
        ("/api/items/5", Err(StatusCode::UNAUTHORIZED)),
        ("/api/items/5?code=secure-key-1", Err(StatusCode::NOT_FOUND)),
        ("/api/items/5?code=master-key-1", Ok("/secure")),
        ("/api/ignored", Ok("/ignored")),
        ("/api/hello", Ok("/hello")),
    ];
    for (uri, expected) in cases {
        let function = invoked(&host, Method::GET, uri).await;
        assert_eq!(function, expected.map(str::to_string), "{uri}");
    }
    host.shutdown().await;
}

#[tokio::test]
async fn encoded_slash_stays_in_route_value() {
    let (host, _dir) = start_with(&[
        ("files", None, Some("files/{name}")),
        ("tree", None, Some("tree/{*rest}")),
    ])
    .await;

    // Kestrel decodes the path except `%2F`, and routing does not decode route values.
    let cases = [
        ("/api/files/a%2Fb", Some(json!({"name": "a%2Fb"}))),
        ("/api/files/a%2fb", Some(json!({"name": "a%2fb"}))),
        ("/api/files/a%20b", Some(json!({"name": "a b"}))),
        ("/api/files/a%252Fb", Some(json!({"name": "a%2Fb"}))),
        ("/api/files/%FFx", Some(json!({"name": "%FFx"}))),
        ("/api/files/a/b", None),
        ("/api/tree/x/a%2Fb", Some(json!({"rest": "x/a%2Fb"}))),
    ];
    for (uri, expected) in cases {
        let response = host.handle(request(Method::GET, uri)).await;
        match expected {
            Some(params) => {
                assert_eq!(response.status(), StatusCode::CREATED, "{uri}");
                assert_eq!(json_body(&response)["params"], params, "{uri}");
            }
            None => assert_eq!(response.status(), StatusCode::NOT_FOUND, "{uri}"),
        }
    }
    host.shutdown().await;
}

#[tokio::test]
async fn encoded_slash_reaches_forwarding_handler() {
    let dir = write_app(true);
    write(
        &dir.path().join("files/function.json"),
        &function_json("anonymous", None, Some("files/{name}")),
    );
    let host = FunctionsHost::start(config(dir.path(), Duration::from_secs(20)))
        .await
        .expect("start host");

    let response = host
        .handle(request(Method::GET, "/api/files/a%2Fb?x=1"))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(json_body(&response)["path"], "/api/files/a%2Fb?x=1");
    host.shutdown().await;
}
