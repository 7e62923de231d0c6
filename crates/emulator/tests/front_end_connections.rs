//! Requests on one kept-alive connection to the front end, over real TCP on loopback, with
//! a real custom handler. The front end takes plain requests on its fast path and hands the
//! connection to hyper at the first request that path does not take. These tests check that
//! responses and records are the same whichever path a request takes.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod python_app;

use std::path::Path;
use std::time::Duration;

use subnetlock_emulator::Emulator;
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Two sites bound to the same code: `app-open` has no access restriction, and `app-closed`
/// allows only a documentation range, so a loopback caller gets 403.
const TEMPLATE: &str = r#"{
  "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
  "contentVersion": "1.0.0.0",
  "resources": [
    { "type": "Microsoft.Web/serverfarms", "apiVersion": "2022-09-01", "name": "plan",
      "location": "westeurope", "sku": { "name": "S1", "tier": "Standard" }, "properties": {} },
    { "type": "Microsoft.Web/sites", "apiVersion": "2022-09-01", "name": "app-open",
      "location": "westeurope", "kind": "functionapp",
      "properties": { "serverFarmId": "[resourceId('Microsoft.Web/serverfarms', 'plan')]" } },
    { "type": "Microsoft.Web/sites", "apiVersion": "2022-09-01", "name": "app-closed",
      "location": "westeurope", "kind": "functionapp",
      "properties": {
        "serverFarmId": "[resourceId('Microsoft.Web/serverfarms', 'plan')]",
        "siteConfig": { "ipSecurityRestrictions": [ { "name": "docs", "action": "Allow",
          "priority": 100, "ipAddress": "203.0.113.0/24" } ] }
      } }
  ]
}"#;

/// `/api/echo` responds with the method, path and body it received, and `/api/slow` responds
/// after two seconds.
const HANDLER: &str = r#"
import os, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def handle_any(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        if self.path.startswith("/api/slow"):
            time.sleep(2)
        data = f"{self.command} {self.path} [{body}]".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass

    do_GET = do_POST = handle_any

ThreadingHTTPServer(("127.0.0.1", int(os.environ["FUNCTIONS_CUSTOMHANDLER_PORT"])), Handler).serve_forever()
"#;

async fn start(dir: &Path) -> Emulator {
    start_with_timeout(dir, Duration::from_secs(230)).await
}

/// Starts the emulator with `timeout` as the time a function may take to respond.
async fn start_with_timeout(dir: &Path, timeout: Duration) -> Emulator {
    let methods: &[&str] = &["get", "post"];
    let functions = ["echo", "slow"].map(|name| python_app::Function {
        name,
        auth_level: "anonymous",
        methods: Some(methods),
    });
    python_app::start(dir, TEMPLATE, HANDLER, &functions, |config| {
        config.invocation_timeout = timeout;
    })
    .await
}

/// Reads one response with a `Content-Length` body from `stream`, keeping bytes of a later
/// response in `pending`. Returns the status and the body.
async fn read_response(stream: &mut TcpStream, pending: &mut Vec<u8>) -> (u16, String) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let mut slots = [httparse::EMPTY_HEADER; 32];
        let mut parsed = httparse::Response::new(&mut slots);
        if let Ok(httparse::Status::Complete(head)) = parsed.parse(pending) {
            let length = parsed
                .headers
                .iter()
                .find(|field| field.name.eq_ignore_ascii_case("content-length"))
                .map(|field| {
                    std::str::from_utf8(field.value)
                        .unwrap()
                        .parse::<usize>()
                        .unwrap()
                })
                .expect("responses carry Content-Length");
            if pending.len() >= head + length {
                let status = parsed.code.expect("status");
                let body = String::from_utf8_lossy(&pending[head..head + length]).into_owned();
                pending.drain(..head + length);
                return (status, body);
            }
        }
        let mut buffer = [0u8; 4096];
        let count = tokio::time::timeout_at(deadline, stream.read(&mut buffer))
            .await
            .expect("a response within 10 seconds")
            .expect("read");
        assert_ne!(count, 0, "the front end closed the connection");
        pending.extend_from_slice(&buffer[..count]);
    }
}

fn get(host: &str, path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_requests_on_one_connection() {
    let dir = TempDir::new().expect("temp dir");
    let emulator = start(dir.path()).await;
    let open = &emulator.site("app-open").expect("site").host;
    let closed = &emulator.site("app-closed").expect("site").host;
    let mut stream = TcpStream::connect(emulator.http_addr())
        .await
        .expect("connect");
    let mut pending = Vec::new();

    // A request the fast path takes, one with a body that it leaves to hyper, a denied one,
    // and plain ones again, now served by hyper, all on one connection.
    let requests = [
        (
            get(open, "/api/echo?n=1"),
            200,
            "GET /api/echo?n=1 []".to_owned(),
        ),
        (
            format!("POST /api/echo HTTP/1.1\r\nHost: {open}\r\nContent-Length: 5\r\n\r\nhello"),
            200,
            "POST /api/echo [hello]".to_owned(),
        ),
        (get(closed, "/api/echo"), 403, String::new()),
        (
            get(open, "/api/echo?n=2"),
            200,
            "GET /api/echo?n=2 []".to_owned(),
        ),
    ];
    for (request, status, body) in &requests {
        stream.write_all(request.as_bytes()).await.expect("write");
        let (got_status, got_body) = read_response(&mut stream, &mut pending).await;
        assert_eq!(got_status, *status, "{request:?}");
        if *status == 200 {
            assert_eq!(&got_body, body);
        }
    }

    let statuses: Vec<u16> = emulator
        .decisions()
        .iter()
        .map(|record| record.status)
        .collect();
    assert_eq!(statuses, [200, 200, 403, 200]);
    let paths: Vec<String> = emulator
        .decisions()
        .iter()
        .map(|record| record.path.clone())
        .collect();
    assert_eq!(paths, ["/api/echo", "/api/echo", "/api/echo", "/api/echo"]);

    // The first request took the fast path and the last went through hyper: their records
    // differ only in sequence number and time.
    let records = emulator.decisions();
    let comparable = |index: usize| {
        let mut record = records[index].clone();
        record.sequence = 0;
        record.time.clear();
        record
    };
    assert_eq!(comparable(0), comparable(3));
    assert_eq!(records[0].verdict, Some(subnetlock_access::Action::Allow));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_in_order() {
    let dir = TempDir::new().expect("temp dir");
    let emulator = start(dir.path()).await;
    let open = &emulator.site("app-open").expect("site").host;
    let mut stream = TcpStream::connect(emulator.http_addr())
        .await
        .expect("connect");

    // Three requests in one write, the second one slow, so the third arrives long before the
    // response to the second.
    let burst = [
        get(open, "/api/echo?n=1"),
        get(open, "/api/slow?n=2"),
        get(open, "/api/echo?n=3"),
    ]
    .concat();
    stream.write_all(burst.as_bytes()).await.expect("write");
    let mut pending = Vec::new();
    for expected in [
        "GET /api/echo?n=1 []",
        "GET /api/slow?n=2 []",
        "GET /api/echo?n=3 []",
    ] {
        let (status, body) = read_response(&mut stream, &mut pending).await;
        assert_eq!((status, body.as_str()), (200, expected));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaving_caller_recorded_once() {
    let dir = TempDir::new().expect("temp dir");
    let emulator = start(dir.path()).await;
    let open = &emulator.site("app-open").expect("site").host;
    let mut stream = TcpStream::connect(emulator.http_addr())
        .await
        .expect("connect");

    stream
        .write_all(get(open, "/api/slow").as_bytes())
        .await
        .expect("write");
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(stream);

    // The handler responds after two seconds, and the record must not change when it does.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let statuses: Vec<u16> = emulator
        .decisions()
        .iter()
        .map(|record| record.status)
        .collect();
    assert_eq!(statuses, [subnetlock_emulator::frontend::CALLER_CLOSED]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_function_gets_502_on_both_paths() {
    let dir = TempDir::new().expect("temp dir");
    // `/api/slow` takes two seconds, longer than this limit.
    let emulator = start_with_timeout(dir.path(), Duration::from_millis(1500)).await;
    let open = &emulator.site("app-open").expect("site").host;

    // The first request is plain, so the fast path serves it. `Connection` sends the second
    // to hyper's path.
    let requests = [
        get(open, "/api/slow"),
        format!("GET /api/slow HTTP/1.1\r\nHost: {open}\r\nConnection: keep-alive\r\n\r\n"),
    ];
    for request in requests {
        let mut stream = TcpStream::connect(emulator.http_addr())
            .await
            .expect("connect");
        stream.write_all(request.as_bytes()).await.expect("write");
        let mut pending = Vec::new();
        let (status, body) = read_response(&mut stream, &mut pending).await;
        assert_eq!(status, 502, "{request:?}");
        assert_eq!(
            body, "the custom handler did not respond within 1.5 seconds\n",
            "{request:?}"
        );
    }

    let statuses: Vec<u16> = emulator
        .decisions()
        .iter()
        .map(|record| record.status)
        .collect();
    assert_eq!(statuses, [502, 502]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_writes_in_flight_record() {
    let dir = TempDir::new().expect("temp dir");
    let emulator = start(dir.path()).await;
    let open = emulator.site("app-open").expect("site").host.clone();
    let mut stream = TcpStream::connect(emulator.http_addr())
        .await
        .expect("connect");
    stream
        .write_all(get(&open, "/api/slow").as_bytes())
        .await
        .expect("write");
    tokio::time::sleep(Duration::from_millis(300)).await;

    // The request is at the handler when the emulator stops: its record, written when the
    // front end drops the connection, must be in the file once `shutdown` returns.
    let stopped = emulator.shutdown().await;
    let log = stopped.decision_log.expect("decision log file");
    let text = std::fs::read_to_string(&log).expect("read decision log");
    let statuses: Vec<u64> = text
        .lines()
        .map(|line| {
            let record: serde_json::Value = serde_json::from_str(line).expect("JSON line");
            record["status"].as_u64().expect("status")
        })
        .collect();
    assert_eq!(
        statuses,
        [u64::from(subnetlock_emulator::frontend::CALLER_CLOSED)]
    );
    drop(stream);
}

/// `/api/big` responds with a body of [`BIG_BODY_BYTES`] bytes.
const BIG_HANDLER: &str = r#"
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BODY = b"x" * 1048576

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)

    def log_message(self, *args):
        pass

ThreadingHTTPServer(("127.0.0.1", int(os.environ["FUNCTIONS_CUSTOMHANDLER_PORT"])), Handler).serve_forever()
"#;

const BIG_BODY_BYTES: usize = 1_048_576;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caller_that_never_reads_is_closed() {
    // A caller pipelines requests for 1 MiB each and reads nothing, so the front end's writes
    // wait once the socket buffers are full. With a write timeout of one second, the front
    // end must close the connection, on its fast path and on hyper's path alike.
    let write_timeout = Duration::from_secs(1);
    let requests = 64;
    let dir = TempDir::new().expect("temp dir");
    let function = python_app::Function {
        name: "big",
        auth_level: "anonymous",
        methods: Some(&["get"]),
    };
    let emulator = python_app::start(dir.path(), TEMPLATE, BIG_HANDLER, &[function], |config| {
        config.write_timeout = write_timeout;
    })
    .await;
    let open = emulator.site("app-open").expect("site").host.clone();

    // A plain GET takes the fast path, and a `Connection` header sends it to hyper.
    for (path, extra_header) in [("fast path", ""), ("hyper", "Connection: keep-alive\r\n")] {
        let before = emulator.decisions().len();
        let mut stream = TcpStream::connect(emulator.http_addr())
            .await
            .expect("connect");
        let request = format!("GET /api/big HTTP/1.1\r\nHost: {open}\r\n{extra_header}\r\n");
        stream
            .write_all(request.repeat(requests).as_bytes())
            .await
            .expect("write");

        // The front end fills the buffers within a few hundred milliseconds, then waits for
        // the write timeout.
        tokio::time::sleep(write_timeout + Duration::from_secs(3)).await;

        // What the buffers hold arrives at once. Without the timeout, the front end would go on
        // writing the other responses and then wait 30 seconds for another request.
        let mut received = 0;
        let mut buffer = vec![0u8; 64 * 1024];
        let ended = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match stream.read(&mut buffer).await {
                    Ok(0) | Err(_) => return,
                    Ok(count) => received += count,
                }
            }
        })
        .await;
        assert!(
            ended.is_ok(),
            "{path}: the connection is still open after {received} bytes"
        );
        assert!(
            received < requests * BIG_BODY_BYTES,
            "{path}: every response arrived, {received} bytes"
        );

        // Each request the front end read has one record, and none follows the close.
        let records = emulator.decisions()[before..].to_vec();
        assert!(!records.is_empty(), "{path}: no record");
        assert!(
            records.len() < requests,
            "{path}: {} records",
            records.len()
        );
        let mut sequences: Vec<u64> = records.iter().map(|record| record.sequence).collect();
        sequences.dedup();
        assert_eq!(sequences.len(), records.len(), "{path}: {records:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(
            emulator.decisions().len(),
            before + records.len(),
            "{path}: a record after the close"
        );
    }
}
