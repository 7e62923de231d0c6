//! Decision records as `Emulator::decisions`, the control API and the file return them. The
//! requests change the deciding rule on one kept-alive connection, carry hosts and paths that
//! need JSON escapes or that the parser rejects, and arrive on many connections at once.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod python_app;

use std::time::Duration;

use subnetlock_access::{Action, Reason};
use subnetlock_emulator::{DecisionRecord, Emulator};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// `app-one` allows loopback with a rule whose name needs JSON escapes. `app-two` allows
/// loopback with `X-Forwarded-For` from 198.51.100.0/24 by one rule and without it by another.
const TEMPLATE: &str = r#"{
  "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
  "contentVersion": "1.0.0.0",
  "resources": [
    { "type": "Microsoft.Web/serverfarms", "apiVersion": "2022-09-01", "name": "plan",
      "location": "westeurope", "sku": { "name": "S1", "tier": "Standard" }, "properties": {} },
    { "type": "Microsoft.Web/sites", "apiVersion": "2022-09-01", "name": "app-one",
      "location": "westeurope", "kind": "functionapp",
      "properties": {
        "serverFarmId": "[resourceId('Microsoft.Web/serverfarms', 'plan')]",
        "siteConfig": { "ipSecurityRestrictions": [ { "name": "loop \"one\" \\ ü ☃",
          "action": "Allow", "priority": 100, "ipAddress": "127.0.0.0/8" } ] }
      } },
    { "type": "Microsoft.Web/sites", "apiVersion": "2022-09-01", "name": "app-two",
      "location": "westeurope", "kind": "functionapp",
      "properties": {
        "serverFarmId": "[resourceId('Microsoft.Web/serverfarms', 'plan')]",
        "siteConfig": { "ipSecurityRestrictions": [
          { "name": "proxied", "action": "Allow", "priority": 100, "ipAddress": "127.0.0.0/8",
            "headers": { "x-forwarded-for": [ "198.51.100.0/24" ] } },
          { "name": "plain", "action": "Allow", "priority": 200, "ipAddress": "127.0.0.0/8" } ] }
      } }
  ]
}"#;

const HANDLER: &str = r#"
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        data = b"ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass

ThreadingHTTPServer(("127.0.0.1", int(os.environ["FUNCTIONS_CUSTOMHANDLER_PORT"])), Handler).serve_forever()
"#;

async fn start(dir: &std::path::Path) -> Emulator {
    let methods: &[&str] = &["get"];
    let functions = [python_app::Function {
        name: "echo",
        auth_level: "anonymous",
        methods: Some(methods),
    }];
    python_app::start(dir, TEMPLATE, HANDLER, &functions, |_| {}).await
}

/// Sends `request` on `stream` and returns the status of the response, whose body is short.
async fn exchange(stream: &mut TcpStream, request: &str) -> u16 {
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut received = Vec::new();
    loop {
        let mut slots = [httparse::EMPTY_HEADER; 32];
        let mut parsed = httparse::Response::new(&mut slots);
        if let Ok(httparse::Status::Complete(head)) = parsed.parse(&received) {
            let length: usize = parsed
                .headers
                .iter()
                .find(|field| field.name.eq_ignore_ascii_case("content-length"))
                .map_or(0, |field| {
                    std::str::from_utf8(field.value).unwrap().parse().unwrap()
                });
            if received.len() >= head + length {
                return parsed.code.expect("status");
            }
        }
        let mut buffer = [0u8; 4096];
        let count = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buffer))
            .await
            .expect("a response within 10 seconds")
            .expect("read");
        assert_ne!(count, 0, "the front end closed the connection");
        received.extend_from_slice(&buffer[..count]);
    }
}

fn rule_name(record: &DecisionRecord) -> Option<String> {
    match &record.reason {
        Some(Reason::Rule { name, .. }) => name.as_deref().map(str::to_owned),
        _ => None,
    }
}

/// Reads `/v1/decisions?since=N` from the control API named in the state file.
async fn control_decisions(emulator: &Emulator, since: u64) -> Vec<DecisionRecord> {
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(emulator.state_file()).expect("state file"))
            .expect("state JSON");
    let token = state["token"].as_str().expect("token");
    let mut stream = TcpStream::connect(emulator.control_addr())
        .await
        .expect("connect to the control API");
    let request = format!(
        "GET /v1/decisions?since={since} HTTP/1.1\r\nHost: control\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.expect("read");
    let text = String::from_utf8(response).expect("UTF-8 response");
    let (head, body) = text.split_once("\r\n\r\n").expect("response head");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    serde_json::from_str(body).expect("decisions JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_changes_on_one_connection() {
    let dir = TempDir::new().expect("temp dir");
    let emulator = start(dir.path()).await;
    let host_one = emulator.site("app-one").expect("site").host.clone();
    let host_two = emulator.site("app-two").expect("site").host.clone();
    let mut stream = TcpStream::connect(emulator.http_addr())
        .await
        .expect("connect");

    let get =
        |host: &str, extra: &str| format!("GET /api/echo HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n");
    let proxied = "X-Forwarded-For: 198.51.100.7\r\n";
    let requests = [
        (get(&host_one, ""), "loop \"one\" \\ ü ☃"),
        (get(&host_two, proxied), "proxied"),
        (get(&host_two, ""), "plain"),
        (get(&host_two, proxied), "proxied"),
        (get(&host_one, ""), "loop \"one\" \\ ü ☃"),
    ];
    for (request, _) in &requests {
        assert_eq!(exchange(&mut stream, request).await, 200, "{request:?}");
    }

    let records = emulator.decisions();
    assert_eq!(records.len(), requests.len());
    for ((record, (request, rule)), sequence) in records.iter().zip(&requests).zip(1..) {
        assert_eq!(record.sequence, sequence);
        assert_eq!(record.verdict, Some(Action::Allow), "{request:?}");
        assert_eq!(rule_name(record).as_deref(), Some(*rule), "{request:?}");
    }

    let from_api = control_decisions(&emulator, 0).await;
    assert_eq!(from_api, records);
    let after_two = control_decisions(&emulator, 2).await;
    assert_eq!(after_two, records[2..]);

    assert_eq!(file_records(dir.path()).await, records);
}

/// Reads the decision file of the emulator whose state is under `dir`, after the runtime's
/// flush, which runs every half second.
async fn file_records(dir: &std::path::Path) -> Vec<DecisionRecord> {
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let file = std::fs::read_to_string(dir.join("state/decisions.jsonl")).expect("file");
    file.lines()
        .map(|line| serde_json::from_str(line).expect("record line"))
        .collect()
}

/// Sends raw `bytes` on a new connection, closes its sending side, and reads until the front
/// end closes the connection or two seconds pass.
async fn send_raw(emulator: &Emulator, bytes: &[u8]) {
    let mut stream = TcpStream::connect(emulator.http_addr())
        .await
        .expect("connect");
    stream.write_all(bytes).await.expect("write");
    let _ = stream.shutdown().await;
    let mut response = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(2), stream.read_to_end(&mut response)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_requests_all_recorded() {
    let dir = TempDir::new().expect("temp dir");
    let emulator = start(dir.path()).await;
    let host_one = emulator.site("app-one").expect("site").host.clone();

    let requests: Vec<Vec<u8>> = vec![
        format!("GET /api/e\"cho\\x HTTP/1.1\r\nHost: {host_one}\r\n\r\n").into_bytes(),
        format!("GET /api/{{x}}|^`y HTTP/1.1\r\nHost: {host_one}\r\n\r\n").into_bytes(),
        [
            b"GET /api/\xc3\xbc\xe2\x98\x83 HTTP/1.1\r\nHost: ".as_slice(),
            host_one.as_bytes(),
            b"\r\n\r\n",
        ]
        .concat(),
        b"GET /api/echo HTTP/1.1\r\nHost: we\"ird\\host\r\n\r\n".to_vec(),
        b"GET /api/echo HTTP/1.1\r\nHost: h\xc3\xa9.example\r\n\r\n".to_vec(),
        b"GET /api/echo HTTP/1.1\r\nHost: unknown.example\r\n\r\n".to_vec(),
        format!(
            "GET /api/%22%5C%00 HTTP/1.1\r\nHost: {}\r\n\r\n",
            host_one.to_uppercase()
        )
        .into_bytes(),
        b"\x01\x02\x03 nonsense\r\n\r\n".to_vec(),
        format!("GET /api/echo HTTP/1.1\r\nHost: {host_one}\r\nX-Forwarded-For: \"\\\r\n\r\n")
            .into_bytes(),
    ];
    for request in &requests {
        send_raw(&emulator, request).await;
    }

    // The file is flushed every half second.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let records = emulator.decisions();
    let sequences: Vec<u64> = records.iter().map(|record| record.sequence).collect();
    let expected: Vec<u64> = (1..=requests.len() as u64).collect();
    assert_eq!(sequences, expected);
    assert_eq!(control_decisions(&emulator, 0).await, records);

    assert_eq!(file_records(dir.path()).await, records);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_connections_lose_nothing() {
    let dir = TempDir::new().expect("temp dir");
    let emulator = start(dir.path()).await;
    let host_one = emulator.site("app-one").expect("site").host.clone();
    let host_two = emulator.site("app-two").expect("site").host.clone();
    let address = emulator.http_addr();

    let mut tasks = Vec::new();
    for task in 0..8 {
        let (host_one, host_two) = (host_one.clone(), host_two.clone());
        tasks.push(tokio::spawn(async move {
            let mut stream = TcpStream::connect(address).await.expect("connect");
            for index in 0..40 {
                let request = match (task + index) % 4 {
                    0 => format!("GET /api/echo HTTP/1.1\r\nHost: {host_one}\r\n\r\n"),
                    1 => format!("GET /api/echo HTTP/1.1\r\nHost: {host_two}\r\nX-Forwarded-For: 198.51.100.7\r\n\r\n"),
                    2 => format!("GET /api/echo HTTP/1.1\r\nHost: {host_two}\r\n\r\n"),
                    _ => format!("GET /api/missing HTTP/1.1\r\nHost: {host_one}\r\n\r\n"),
                };
                exchange(&mut stream, &request).await;
            }
        }));
    }
    for task in tasks {
        task.await.expect("task");
    }

    let records = emulator.decisions();
    assert_eq!(records.len(), 8 * 40);
    let sequences: Vec<u64> = records.iter().map(|record| record.sequence).collect();
    assert_eq!(sequences, (1..=320).collect::<Vec<u64>>());
    for record in &records {
        let rule = rule_name(record);
        if record.host.starts_with("app-two") {
            assert!(
                matches!(rule.as_deref(), Some("plain" | "proxied")),
                "{record:?}"
            );
        } else {
            assert_eq!(rule.as_deref(), Some("loop \"one\" \\ ü ☃"), "{record:?}");
        }
    }
    assert_eq!(control_decisions(&emulator, 0).await, records);
    assert_eq!(file_records(dir.path()).await, records);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_times_follow_clock_on_both_paths() {
    // The fast path reads the clock with `SystemTime` and formats the record itself, and
    // hyper's path stamps a `DecisionRecord` with chrono. Both records carry the time of
    // their request as RFC 3339 in UTC with milliseconds.
    let dir = TempDir::new().expect("temp dir");
    let emulator = start(dir.path()).await;
    let host = emulator.site("app-one").expect("site").host.clone();
    let mut stream = TcpStream::connect(emulator.http_addr())
        .await
        .expect("connect");

    let before = chrono::Utc::now().timestamp_millis();
    let fast = format!("GET /api/echo HTTP/1.1\r\nHost: {host}\r\n\r\n");
    assert_eq!(exchange(&mut stream, &fast).await, 200);
    // `Connection` sends this request, and the rest of the connection, to hyper.
    let full = format!("GET /api/echo HTTP/1.1\r\nHost: {host}\r\nConnection: keep-alive\r\n\r\n");
    assert_eq!(exchange(&mut stream, &full).await, 200);
    let after = chrono::Utc::now().timestamp_millis();

    let records = emulator.decisions();
    assert_eq!(records.len(), 2);
    for record in &records {
        let time = &record.time;
        assert_eq!(time.len(), "2026-12-05T01:02:03.004Z".len(), "{time}");
        assert!(time.ends_with('Z'), "{time}");
        let parsed = chrono::DateTime::parse_from_rfc3339(time).expect("RFC 3339 time");
        let millis = parsed.timestamp_millis();
        assert!(before <= millis, "{time} is before the request");
        assert!(millis <= after, "{time} is after the response");
    }
    assert_eq!(file_records(dir.path()).await, records);
}
