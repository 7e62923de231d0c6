//! Review of the fast path's per-connection memos and literal routes against hyper's path:
//! several sites on one kept-alive connection, routes of literal segments only, and handler
//! responses with hop-by-hop and repeated headers.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod python_app;

use python_app::records_since;

use std::time::Duration;

use subnetlock_emulator::Emulator;
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// `app-one` and `App-Two`, whose name has capitals, are open. `app-shut` allows only
/// 10.0.0.0/8, and `app-tls` has `httpsOnly`.
const TEMPLATE: &str = r#"{
  "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
  "contentVersion": "1.0.0.0",
  "resources": [
    { "type": "Microsoft.Web/serverfarms", "apiVersion": "2022-09-01", "name": "plan",
      "location": "westeurope", "sku": { "name": "S1", "tier": "Standard" }, "properties": {} },
    { "type": "Microsoft.Web/sites", "apiVersion": "2022-09-01", "name": "app-one",
      "location": "westeurope", "kind": "functionapp",
      "properties": { "serverFarmId": "[resourceId('Microsoft.Web/serverfarms', 'plan')]" } },
    { "type": "Microsoft.Web/sites", "apiVersion": "2022-09-01", "name": "App-Two",
      "location": "westeurope", "kind": "functionapp",
      "properties": { "serverFarmId": "[resourceId('Microsoft.Web/serverfarms', 'plan')]" } },
    { "type": "Microsoft.Web/sites", "apiVersion": "2022-09-01", "name": "app-shut",
      "location": "westeurope", "kind": "functionapp",
      "properties": { "serverFarmId": "[resourceId('Microsoft.Web/serverfarms', 'plan')]",
        "siteConfig": { "ipSecurityRestrictions": [ { "name": "ten", "action": "Allow",
          "priority": 100, "ipAddress": "10.0.0.0/8" } ] } } },
    { "type": "Microsoft.Web/sites", "apiVersion": "2022-09-01", "name": "app-tls",
      "location": "westeurope", "kind": "functionapp",
      "properties": { "serverFarmId": "[resourceId('Microsoft.Web/serverfarms', 'plan')]",
        "httpsOnly": true } }
  ]
}"#;

/// Echoes the request line and headers, or writes one of the canned responses in `RAW` for
/// `/api/raw?case=…`.
const HANDLER: &str = r#"
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit, parse_qs

RAW = {
    "listed-date": b"HTTP/1.1 200 OK\r\nConnection: Date, x-foo\r\nDate: Mon, 01 Jan 2024 00:00:00 GMT\r\nX-FOO: 1\r\nX-Bar: 2\r\nContent-Length: 0\r\n\r\n",
    "hop-mix": b"HTTP/1.1 200 OK\r\nTE: trailers\r\nPROXY-CONNECTION: keep-alive\r\nkeep-ALIVE: timeout=5, max=10\r\nTrailer: X-T\r\nUpgrade: h2c\r\nX-Kept: yes\r\nContent-Length: 2\r\n\r\nok",
    "two-dates": b"HTTP/1.1 200 OK\r\nDate: Mon, 01 Jan 2024 00:00:00 GMT\r\ndate: Tue, 02 Jan 2024 00:00:00 GMT\r\nContent-Length: 0\r\n\r\n",
    "mixed-case": b"HTTP/1.1 200 OK\r\nX-MiXeD: 1\r\nCONTENT-TYPE: text/plain\r\nx-mixed: 2\r\nContent-Length: 0\r\n\r\n",
    "conn-spaces": b"HTTP/1.1 200 OK\r\nConnection:  ,X-A ,, x-b\r\nConnection: X-C\r\nX-A: 1\r\nX-B: 2\r\nX-C: 3\r\nX-D: 4\r\nContent-Length: 0\r\n\r\n",
    "conn-te": b"HTTP/1.1 200 OK\r\nConnection: transfer-encoding, content-length\r\nContent-Length: 3\r\n\r\nabc",
    "long-names": b"HTTP/1.1 200 OK\r\nX-Transfer-Encoding: a\r\nContent-Lengths: b\r\nKeep-Alive-X: c\r\nConnectionX: d\r\nDATE: Mon, 01 Jan 2024 00:00:00 GMT\r\nContent-Length: 0\r\n\r\n",
}

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def handle_any(self):
        target = urlsplit(self.path)
        if target.path.lower().startswith("/api/raw"):
            self.wfile.write(RAW[parse_qs(target.query)["case"][0]])
            self.wfile.flush()
            return
        lines = [self.requestline] + [f"{name}: {value}" for name, value in self.headers.items()]
        data = ("\n".join(lines) + "\n\n").encode("latin-1", "replace")
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def __getattr__(self, name):
        if name.startswith("do_"):
            return self.handle_any
        raise AttributeError(name)

    def log_message(self, *args):
        pass

ThreadingHTTPServer(("127.0.0.1", int(os.environ["FUNCTIONS_CUSTOMHANDLER_PORT"])), Handler).serve_forever()
"#;

/// Routes of literal segments only, under the `api` prefix, one function each.
const LITERAL_ROUTES: [(&str, &str); 5] = [
    ("items", "Items/List"),
    ("marks", "a.b/c-d_e~f"),
    ("subs", "sub(1)/it's!$&*+,;=:@"),
    ("long", "LongSegmentName/AnotherLongOne"),
    ("braces", "x/{{braces}}"),
];

async fn start(dir: &std::path::Path) -> Emulator {
    for (name, route) in LITERAL_ROUTES {
        let folder = dir.join("app").join(name);
        std::fs::create_dir_all(&folder).expect("create function folder");
        let definition = serde_json::json!({"bindings": [
            {"type": "httpTrigger", "direction": "in", "name": "req",
             "authLevel": "anonymous", "route": route},
            {"type": "http", "direction": "out", "name": "res"}
        ]});
        std::fs::write(folder.join("function.json"), definition.to_string())
            .expect("write function.json");
    }
    let functions = [
        python_app::Function {
            name: "echo",
            auth_level: "anonymous",
            methods: None,
        },
        python_app::Function {
            name: "raw",
            auth_level: "anonymous",
            methods: None,
        },
    ];
    python_app::start(dir, TEMPLATE, HANDLER, &functions, |_| {}).await
}

/// Inserts `Connection: keep-alive` before the blank line of a head without a body, which
/// sends the request to hyper's path.
fn forced(head: &str) -> String {
    let head = head
        .strip_suffix("\r\n\r\n")
        .expect("a head without a body");
    format!("{head}\r\nConnection: keep-alive\r\n\r\n")
}

/// Reads one response with a `Content-Length` body, or none for 204 and 304, from `stream`.
async fn read_response(stream: &mut TcpStream) -> Vec<u8> {
    let mut received = Vec::new();
    let mut buffer = vec![0u8; 16 * 1024];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let mut slots = [httparse::EMPTY_HEADER; 64];
        let mut parsed = httparse::Response::new(&mut slots);
        if let Ok(httparse::Status::Complete(head)) = parsed.parse(&received) {
            let length = parsed
                .headers
                .iter()
                .find(|field| field.name.eq_ignore_ascii_case("content-length"))
                .map_or(0, |field| {
                    std::str::from_utf8(field.value)
                        .unwrap()
                        .parse::<usize>()
                        .unwrap()
                });
            if received.len() >= head + length {
                return received;
            }
        }
        match tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return received,
            Ok(Ok(count)) => received.extend_from_slice(&buffer[..count]),
        }
    }
}

/// Masks the `date` lines that the front end adds and the invocation id the handler echoes.
fn masked(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .split("\r\n")
        .flat_map(|line| line.split('\n'))
        .map(|line| {
            let lower = line.to_ascii_lowercase();
            if lower.starts_with("date: ") && !lower.contains("2024") {
                "date: <now>".to_owned()
            } else if lower.starts_with("x-azure-functions-invocationid: ") {
                "x-azure-functions-invocationid: <id>".to_owned()
            } else {
                line.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("|")
}

/// Sends `heads` one after the other on one connection, each after the previous response.
/// Returns the responses and the new records.
async fn run_on_one_connection(
    emulator: &Emulator,
    heads: &[String],
) -> (Vec<String>, Vec<serde_json::Value>) {
    let before = emulator.decisions().len();
    let mut stream = TcpStream::connect(emulator.http_addr())
        .await
        .expect("connect");
    let mut responses = Vec::new();
    for head in heads {
        stream.write_all(head.as_bytes()).await.expect("write");
        responses.push(masked(&read_response(&mut stream).await));
    }
    drop(stream);
    (responses, records_since(emulator, before))
}

/// Runs `heads` on one connection as they are and forced to hyper's path, and compares.
async fn assert_same_on_both_paths(emulator: &Emulator, heads: &[String]) {
    let fast = run_on_one_connection(emulator, heads).await;
    let full_heads: Vec<String> = heads.iter().map(|head| forced(head)).collect();
    let full = run_on_one_connection(emulator, &full_heads).await;
    for (index, head) in heads.iter().enumerate() {
        assert_eq!(fast.0[index], full.0[index], "response to {head:?}");
    }
    assert_eq!(fast.1.len(), full.1.len(), "record count for {heads:?}");
    for (index, (fast, full)) in fast.1.iter().zip(&full.1).enumerate() {
        assert_eq!(fast, full, "record {index} for {heads:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sites_alternate_on_one_connection() {
    let dir = TempDir::new().expect("temp dir");
    let emulator = start(dir.path()).await;
    let host = |pattern: &str| emulator.site(pattern).expect("site").host.clone();
    let one = host("app-one");
    let two = host("App-Two");
    let shut = host("app-shut");
    let tls = host("app-tls");
    let scm = emulator.site("app-one").expect("site").scm_host.clone();
    let get = |host: &str, path: &str| format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n");

    // Requests the fast path takes come first, because a request it does not take hands the
    // connection to hyper. Each sequence ends with a different request, which the fast path
    // hands to hyper in all but the last sequence.
    let endings = [
        get(&shut, "/api/echo"),
        get(&tls, "/api/echo"),
        get(&scm, "/"),
        get(&one, "/api/nothing"),
        get(&two, "/api/echo?n=last"),
    ];
    for ending in endings {
        let heads = [
            get(&one, "/api/echo?n=1"),
            get(&two, "/api/echo?n=2"),
            get(&one.to_uppercase(), "/api/echo?n=3"),
            get(&format!("{two}:80"), "/api/echo?n=4"),
            get(&format!("{two}."), "/api/echo?n=5"),
            get(&one, "/api/echo?n=6"),
            ending,
        ];
        assert_same_on_both_paths(&emulator, &heads).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn literal_routes_match_full_path() {
    let dir = TempDir::new().expect("temp dir");
    let emulator = start(dir.path()).await;
    let one = emulator.site("app-one").expect("site").host.clone();

    let mut paths = Vec::new();
    for (_, route) in LITERAL_ROUTES {
        let route = route.replace("{{", "{").replace("}}", "}");
        let path = format!("/api/{route}");
        let mut variants = vec![
            path.clone(),
            path.to_ascii_uppercase(),
            path.to_ascii_lowercase(),
            format!("{path}/"),
            format!("{path}//"),
            format!("/{path}"),
            path.replacen('/', "//", 2),
            format!("{path}x"),
            path[..path.len() - 1].to_owned(),
            format!("{path}/."),
            format!("{path}?q=1"),
        ];
        // The first letter of the last segment, escaped.
        if let Some(at) = path.rfind('/') {
            let letter = path.as_bytes()[at + 1];
            variants.push(format!("{}%{letter:02X}{}", &path[..=at], &path[at + 2..]));
        }
        paths.extend(variants);
    }
    for path in paths {
        let head = format!("GET {path} HTTP/1.1\r\nHost: {one}\r\n\r\n");
        assert_same_on_both_paths(&emulator, &[head]).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_headers_match_full_path() {
    let dir = TempDir::new().expect("temp dir");
    let emulator = start(dir.path()).await;
    let one = emulator.site("app-one").expect("site").host.clone();
    for case in [
        "listed-date",
        "hop-mix",
        "two-dates",
        "mixed-case",
        "conn-spaces",
        "conn-te",
        "long-names",
    ] {
        let head = format!("GET /api/raw?case={case} HTTP/1.1\r\nHost: {one}\r\n\r\n");
        assert_same_on_both_paths(&emulator, &[head.clone(), head]).await;
    }
}
