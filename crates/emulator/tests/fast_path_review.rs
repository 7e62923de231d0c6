//! Review of the front end's fast path against hyper's path, over real TCP on loopback with a
//! real custom handler. Each request is sent twice on new connections: as it is, which the
//! fast path takes, and with `Connection: keep-alive` added, which sends it to hyper. The full
//! path strips that header before forwarding, so the handler, the caller and the decision log
//! must see the same in both cases, apart from the invocation id and the date.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod python_app;

use python_app::records_since;

use std::net::SocketAddr;
use std::time::Duration;

use subnetlock_emulator::Emulator;
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One open function app, `app-open`, with no access restriction.
const TEMPLATE: &str = r#"{
  "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
  "contentVersion": "1.0.0.0",
  "resources": [
    { "type": "Microsoft.Web/serverfarms", "apiVersion": "2022-09-01", "name": "plan",
      "location": "westeurope", "sku": { "name": "S1", "tier": "Standard" }, "properties": {} },
    { "type": "Microsoft.Web/sites", "apiVersion": "2022-09-01", "name": "app-open",
      "location": "westeurope", "kind": "functionapp",
      "properties": { "serverFarmId": "[resourceId('Microsoft.Web/serverfarms', 'plan')]" } }
  ]
}"#;

/// The custom handler. `/api/echo` and `/api/secure` respond with the request line, the header
/// lines as received and the body. `/api/slow` does the same after one second. `/api/big`
/// responds with `size` bytes. `/api/raw` writes one of the canned responses in `RAW`.
const HANDLER: &str = r#"
import os, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit, parse_qs

RAW = {
    "dup": (b"HTTP/1.1 200 OK\r\nX-A: 1\r\nSet-Cookie: a=1\r\nX-B: 2\r\n"
            b"Set-Cookie: b=2\r\nContent-Length: 2\r\n\r\nok", False),
    "reason": (b"HTTP/1.1 201 Made It\r\nContent-Length: 0\r\n\r\n", False),
    "empty-reason": (b"HTTP/1.1 200 \r\nContent-Length: 1\r\n\r\nx", False),
    "no-content": (b"HTTP/1.1 204 No Content\r\nX-Empty: yes\r\n\r\n", False),
    "not-modified": (b"HTTP/1.1 304 Not Modified\r\nETag: \"1\"\r\nContent-Length: 7\r\n\r\n", False),
    "chunked": (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-T: 1\r\n\r\n"
                b"3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\nX-Trailer: t\r\n\r\n", False),
    "close": (b"HTTP/1.1 200 OK\r\nConnection: close\r\nX-C: 1\r\n\r\nuntil close", True),
    "http10": (b"HTTP/1.0 200 OK\r\nX-Old: 1\r\n\r\nold body", True),
    "obs-text": (b"HTTP/1.1 200 OK\r\nX-Latin: caf\xe9\r\nContent-Length: 0\r\n\r\n", False),
    "date": (b"HTTP/1.1 200 OK\r\nDATE: Mon, 01 Jan 2024 00:00:00 GMT\r\nContent-Length: 0\r\n\r\n", False),
    "listed": (b"HTTP/1.1 200 OK\r\nConnection: X-Hop\r\nX-Hop: 1\r\nX-Keep: 2\r\n"
               b"Keep-Alive: timeout=5\r\nContent-Length: 0\r\n\r\n", False),
    "unknown-status": (b"HTTP/1.1 299 \r\nContent-Length: 0\r\n\r\n", False),
    "bad-name": (b"HTTP/1.1 200 OK\r\nX{A}: 1\r\nContent-Length: 0\r\n\r\n", False),
    "die": (None, True),
}

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def handle_any(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        target = urlsplit(self.path)
        query = parse_qs(target.query)

        if target.path.startswith("/api/slow"):
            time.sleep(1)

        if target.path.startswith("/api/big"):
            size = int(query["size"][0])
            self.send_response(200)
            self.send_header("Content-Length", str(size))
            self.end_headers()
            block = b"x" * 65536
            while size > 0:
                self.wfile.write(block[:size])
                size -= len(block)
            return

        if target.path.startswith("/api/raw"):
            raw, close = RAW[query["case"][0]]
            if raw is None:
                os._exit(3)
            self.wfile.write(raw)
            self.wfile.flush()
            self.close_connection = close
            return

        lines = [self.requestline] + [f"{name}: {value}" for name, value in self.headers.items()]
        data = ("\n".join(lines) + "\n\n").encode("latin-1", "replace") + body
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
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

/// Starts the emulator in a new temporary folder with the handler's functions, which every
/// method reaches. Returns the folder, the emulator and the host name of `app-open`. The
/// folder must outlive the emulator.
async fn start_open_app() -> (TempDir, Emulator, String) {
    let dir = TempDir::new().expect("temp dir");
    let function = |name, auth_level| python_app::Function {
        name,
        auth_level,
        methods: None,
    };
    let functions = [
        function("echo", "anonymous"),
        function("slow", "anonymous"),
        function("big", "anonymous"),
        function("raw", "anonymous"),
        function("secure", "function"),
    ];
    let emulator = python_app::start(dir.path(), TEMPLATE, HANDLER, &functions, |_| {}).await;
    let open = emulator.site("app-open").expect("site").host.clone();
    (dir, emulator, open)
}

/// Adds `Connection: keep-alive` as the last header line of the first request in `request`,
/// or at the end of a head cut short, which sends it to hyper's path. The full path removes
/// the header from its map, and a header map removes by moving its last entry into the gap,
/// so only a last line keeps the order of the others.
fn forced_to_full_path(request: &[u8]) -> Vec<u8> {
    let start = request
        .iter()
        .position(|&byte| byte != b'\r' && byte != b'\n')
        .expect("a request line");
    // The blank line ends the head: it follows the `\n` of the last header line.
    let mut index = start;
    let blank_line = loop {
        let line_end = index
            + request[index..]
                .iter()
                .position(|&byte| byte == b'\n')
                .expect("a complete head")
            + 1;
        let rest = &request[line_end..];
        if rest.is_empty() || rest.starts_with(b"\r\n") || rest.starts_with(b"\n") {
            break line_end;
        }
        index = line_end;
    };
    let mut forced = request[..blank_line].to_vec();
    forced.extend_from_slice(b"Connection: keep-alive\r\n");
    forced.extend_from_slice(&request[blank_line..]);
    forced
}

/// Reads one response from `stream`: its head, then the body its `Content-Length` gives, or
/// none for 204 and 304. Returns what was read when the stream ends first or `limit` passes.
async fn read_one_response(stream: &mut TcpStream, limit: Duration) -> Vec<u8> {
    let mut received = Vec::new();
    let mut buffer = vec![0u8; 64 * 1024];
    let deadline = tokio::time::Instant::now() + limit;
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

/// Reads from `stream` until the front end closes it or `limit` passes. Returns what was
/// read.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> Vec<u8> {
    let mut received = Vec::new();
    let mut buffer = vec![0u8; 64 * 1024];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return received,
            Ok(Ok(count)) => received.extend_from_slice(&buffer[..count]),
        }
    }
}

/// Replaces the values of `date` response headers and of the invocation id the handler echoes,
/// which differ between any two requests.
fn masked(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .split("\r\n")
        .flat_map(|line| line.split('\n'))
        .map(|line| {
            let lower = line.to_ascii_lowercase();
            if lower.starts_with("date: ") {
                "date: <date>".to_owned()
            } else if lower.starts_with("x-azure-functions-invocationid: ") {
                "x-azure-functions-invocationid: <id>".to_owned()
            } else {
                line.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("|")
}

/// What one connection produced: the bytes the caller received and the new records.
#[derive(Debug)]
struct Outcome {
    received: String,
    records: Vec<serde_json::Value>,
}

/// Sends `request` on a new connection. With `half_close`, it then shuts down the sending side
/// and reads until the front end closes or `limit` passes. Otherwise it reads one response.
async fn run(
    emulator: &Emulator,
    addr: SocketAddr,
    request: &[u8],
    half_close: bool,
    limit: Duration,
) -> Outcome {
    let before = emulator.decisions().len();
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request).await.expect("write");
    let received = if half_close {
        stream.shutdown().await.expect("shut down the sending side");
        read_until_closed(&mut stream, limit).await
    } else {
        read_one_response(&mut stream, limit).await
    };
    drop(stream);
    // The record of a response is written before the response, but the record of a request
    // dropped at the half close is written when the front end notices the close.
    if half_close {
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    Outcome {
        received: masked(&received),
        records: records_since(emulator, before),
    }
}

/// Runs `request` on the fast path and forced to hyper's, and checks that the caller and the
/// decision log see the same.
async fn assert_same_on_both_paths(
    emulator: &Emulator,
    request: &[u8],
    half_close: bool,
    limit: Duration,
) {
    let addr = emulator.http_addr();
    let fast = run(emulator, addr, request, half_close, limit).await;
    let full = run(
        emulator,
        addr,
        &forced_to_full_path(request),
        half_close,
        limit,
    )
    .await;
    let request_text = String::from_utf8_lossy(request);
    assert_eq!(
        fast.received, full.received,
        "received for {request_text:?}"
    );
    assert_eq!(fast.records, full.records, "records for {request_text:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_heads_match_full_path() {
    let (_dir, emulator, open) = start_open_app().await;
    let site = emulator.site("app-open").expect("site");
    let host_key = site.host_key.clone();
    let master_key = site.master_key.clone();

    let heads = [
        format!("GET /api/echo HTTP/1.1\r\nHost: {open}\r\n\r\n"),
        format!("get /api/echo HTTP/1.1\r\nHost: {open}\r\n\r\n"),
        format!("PURGE /api/echo HTTP/1.1\r\nHost: {open}\r\n\r\n"),
        format!("OPTIONS /api/echo HTTP/1.1\r\nHost: {open}\r\n\r\n"),
        format!("POST /api/echo HTTP/1.1\r\nHost: {open}\r\n\r\n"),
        format!("post /api/echo HTTP/1.1\r\nHost: {open}\r\n\r\n"),
        format!("DELETE /api/echo HTTP/1.1\r\nHost: {open}\r\n\r\n"),
        format!("GET /api/echo HTTP/1.1\r\nHost: {}\r\n\r\n", open.to_uppercase()),
        format!("GET /api/echo HTTP/1.1\r\nHost: {open}.\r\n\r\n"),
        format!("GET /api/echo HTTP/1.1\r\nHost: {open}:8080\r\n\r\n"),
        format!("GET /api/echo HTTP/1.1\r\nHost: \t{open}:\t\r\n\r\n"),
        "GET /api/echo HTTP/1.1\r\nHost: [::1]\r\n\r\n".to_owned(),
        "GET /api/echo HTTP/1.1\r\n\r\n".to_owned(),
        format!("GET /api/echo HTTP/1.1\r\nHost: {open}\r\nX-Empty:\r\nX-Latin: caf\u{e9}\r\n\r\n"),
        format!("GET /api/echo HTTP/1.1\r\nHost: {open}\r\nX-Forwarded-For: 10.0.0.1, 10.0.0.2\r\n\r\n"),
        format!("GET /api/echo HTTP/1.1\r\nHost: {open}\r\nx-forwarded-for:  \r\n\r\n"),
        format!("GET /api/echo HTTP/1.1\r\nHost: {open}\r\nX-FORWARDED-PROTO: https\r\nUser-Agent: me\r\n\r\n"),
        format!("GET /api/echo HTTP/1.1\r\nHost: {open}\r\nX-Azure-Functions-InvocationId: forged\r\n\r\n"),
        format!("GET /api/echo HTTP/1.1\r\nHost: {open}\r\nX-Long: {}\r\n\r\n", "v".repeat(12_000)),
        format!("GET /api/echo HTTP/1.1\r\nHost: {open}\r\n{}: v\r\n\r\n", "N".repeat(3000)),
        format!(
            "GET /api/echo HTTP/1.1\r\nHost: {open}\r\n{}\r\n",
            (0..31).map(|index| format!("X-H{index}: {index}\r\n")).collect::<String>()
        ),
        format!(
            "GET /api/echo HTTP/1.1\r\nHost: {open}\r\n{}\r\n",
            (0..40).map(|index| format!("X-H{index}: {index}\r\n")).collect::<String>()
        ),
        format!("GET /api/echo?a%2Fb=%zz&&=x HTTP/1.1\r\nHost: {open}\r\n\r\n"),
        format!("GET /api/echo? HTTP/1.1\r\nHost: {open}\r\n\r\n"),
        format!("GET /api/echo?? HTTP/1.1\r\nHost: {open}\r\n\r\n"),
        format!("GET /api/ech%6F HTTP/1.1\r\nHost: {open}\r\n\r\n"),
        format!("GET /api/echo/ HTTP/1.1\r\nHost: {open}\r\n\r\n"),
        format!("GET //api/echo HTTP/1.1\r\nHost: {open}\r\n\r\n"),
        format!("GET /API/ECHO HTTP/1.1\r\nHost: {open}\r\n\r\n"),
        format!("GET /api/x/../echo HTTP/1.1\r\nHost: {open}\r\n\r\n"),
        format!("GET /api/%2e%2e/api/echo HTTP/1.1\r\nHost: {open}\r\n\r\n"),
        format!("GET /api/echo%2F HTTP/1.1\r\nHost: {open}\r\n\r\n"),
        format!("GET /api/echo;p=1 HTTP/1.1\r\nHost: {open}\r\n\r\n"),
        format!("GET /api/echo?x={} HTTP/1.1\r\nHost: {open}\r\n\r\n", "a".repeat(4084)),
        format!("GET /api/echo?x={} HTTP/1.1\r\nHost: {open}\r\n\r\n", "a".repeat(4085)),
        format!("GET /api/secure HTTP/1.1\r\nHost: {open}\r\n\r\n"),
        format!("GET /api/secure?code={host_key} HTTP/1.1\r\nHost: {open}\r\n\r\n"),
        format!("GET /api/secure?CODE={host_key} HTTP/1.1\r\nHost: {open}\r\n\r\n"),
        format!("GET /api/secure?c%6Fde={host_key} HTTP/1.1\r\nHost: {open}\r\n\r\n"),
        format!("GET /api/secure?code=wrong&code={host_key} HTTP/1.1\r\nHost: {open}\r\n\r\n"),
        format!("GET /api/secure?code={host_key} HTTP/1.1\r\nHost: {open}\r\nx-functions-key:\r\n\r\n"),
        format!("GET /api/secure HTTP/1.1\r\nHost: {open}\r\nX-Functions-Key: {master_key}\r\n\r\n"),
        format!("GET /api/secure HTTP/1.1\r\nHost: {open}\r\nx-functions-key: {master_key}\r\nx-functions-key: wrong\r\n\r\n"),
        format!("GET /api/secure HTTP/1.1\r\nHost: {open}\r\nx-functions-key: wrong\r\nX-FUNCTIONS-KEY: {master_key}\r\n\r\n"),
        format!("GET /api/echo HTTP/1.1\r\nHost: {open}\r\nKEEP-ALIVE: 5\r\n\r\n"),
        format!("GET /api/echo HTTP/1.1\r\nHost: {open}\r\nProxy-Connection: x\r\n\r\n"),
        format!("GET /api/echo HTTP/1.1\r\nHost: {open}\r\nHTTP2-Settings: x\r\n\r\n"),
        format!("GET /api/nothing HTTP/1.1\r\nHost: {open}\r\n\r\n"),
        "GET /api/echo HTTP/1.1\r\nHost: nobody.example\r\n\r\n".to_owned(),
        format!("\r\nGET /api/echo HTTP/1.1\nHost: {open}\n\n"),
    ];
    for head in &heads {
        assert_same_on_both_paths(&emulator, head.as_bytes(), false, Duration::from_secs(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_responses_match_full_path() {
    let (_dir, emulator, open) = start_open_app().await;

    for case in [
        "dup",
        "reason",
        "empty-reason",
        "no-content",
        "not-modified",
        "chunked",
        "close",
        "http10",
        "obs-text",
        "date",
        "listed",
        "unknown-status",
        "bad-name",
    ] {
        let head = format!("GET /api/raw?case={case} HTTP/1.1\r\nHost: {open}\r\n\r\n");
        assert_same_on_both_paths(&emulator, head.as_bytes(), false, Duration::from_secs(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dying_handler_matches_full_path() {
    let (_dir, emulator, open) = start_open_app().await;

    // The handler exits while it handles the request. GET may be sent again once it restarts,
    // so POST, which is never sent again, is used.
    let head = format!("POST /api/raw?case=die HTTP/1.1\r\nHost: {open}\r\n\r\n");
    assert_same_on_both_paths(&emulator, head.as_bytes(), false, Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_closed_single_request_matches_full_path() {
    let (_dir, emulator, open) = start_open_app().await;

    // A whole head, and a head cut short.
    let head = format!("GET /api/echo HTTP/1.1\r\nHost: {open}\r\n\r\n");
    let partial = format!("GET /api/echo HTTP/1.1\r\nHost: {open}\r\nX-A: 1\r\n");
    for request in [head, partial] {
        assert_same_on_both_paths(&emulator, request.as_bytes(), true, Duration::from_secs(3))
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_closed_pipeline_matches_full_path() {
    let (_dir, emulator, open) = start_open_app().await;

    // Two requests in one write, then the end of the caller's stream, as `nc -N` or a script
    // that writes a file of requests sends them. hyper serves the first while the second is
    // still in its buffer, and notices the end of the stream only after it.
    let first = format!("GET /api/slow?n=1 HTTP/1.1\r\nHost: {open}\r\n\r\n");
    let second = format!("GET /api/echo?n=2 HTTP/1.1\r\nHost: {open}\r\n\r\n");
    let fast = [first.as_bytes(), second.as_bytes()].concat();
    let full = [
        forced_to_full_path(first.as_bytes()),
        forced_to_full_path(second.as_bytes()),
    ]
    .concat();

    let addr = emulator.http_addr();
    let on_fast_path = run(&emulator, addr, &fast, true, Duration::from_secs(4)).await;
    let on_full_path = run(&emulator, addr, &full, true, Duration::from_secs(4)).await;
    assert!(
        on_full_path.received.starts_with("HTTP/1.1 200 OK"),
        "hyper responds to the first request: {on_full_path:?}"
    );
    assert_eq!(on_fast_path.received, on_full_path.received);
    assert_eq!(on_fast_path.records, on_full_path.records);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_split_at_every_byte() {
    let (_dir, emulator, open) = start_open_app().await;
    let addr = emulator.http_addr();

    let head = format!("GET /api/echo?n=1 HTTP/1.1\r\nHost: {open}\r\nX-A: 1\r\n\r\n");
    let expected = run(
        &emulator,
        addr,
        head.as_bytes(),
        false,
        Duration::from_secs(5),
    )
    .await;
    assert!(
        expected.received.starts_with("HTTP/1.1 200 OK"),
        "{expected:?}"
    );

    for split in 1..head.len() {
        let before = emulator.decisions().len();
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        stream
            .write_all(&head.as_bytes()[..split])
            .await
            .expect("write the first part");
        tokio::time::sleep(Duration::from_millis(5)).await;
        stream
            .write_all(&head.as_bytes()[split..])
            .await
            .expect("write the rest");
        let received = read_one_response(&mut stream, Duration::from_secs(5)).await;
        assert_eq!(masked(&received), expected.received, "split at {split}");
        assert_eq!(
            records_since(&emulator, before),
            expected.records,
            "split at {split}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_mix_matches_full_path() {
    let (_dir, emulator, open) = start_open_app().await;
    let addr = emulator.http_addr();

    // A request the fast path takes, one with a body that goes to hyper, and a plain one that
    // hyper then serves, all in one write.
    let requests = [
        format!("GET /api/slow?n=1 HTTP/1.1\r\nHost: {open}\r\n\r\n"),
        format!("POST /api/echo?n=2 HTTP/1.1\r\nHost: {open}\r\nContent-Length: 5\r\n\r\nhello"),
        format!("GET /api/echo?n=3 HTTP/1.1\r\nHost: {open}\r\n\r\n"),
    ];
    let fast = requests.concat();
    let full: Vec<u8> = requests
        .iter()
        .flat_map(|request| forced_to_full_path(request.as_bytes()))
        .collect();

    let mut received = Vec::new();
    for burst in [fast.as_bytes(), full.as_slice()] {
        let before = emulator.decisions().len();
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        stream.write_all(burst).await.expect("write");
        let mut responses = Vec::new();
        for _ in &requests {
            responses.push(masked(
                &read_one_response(&mut stream, Duration::from_secs(5)).await,
            ));
        }
        received.push((responses, records_since(&emulator, before)));
    }
    assert_eq!(received[0].0, received[1].0);
    assert_eq!(received[0].1, received[1].1);
}

/// Returns the resident set size of this process, which runs the emulator, in bytes.
fn resident_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("read /proc/self/statm");
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .expect("resident field")
        .parse()
        .expect("page count");
    pages * 4096
}

/// Fetches a large response on each of `count` connections, then returns how many heap bytes
/// closing the idle connections frees.
async fn memory_held_by_idle_connections(
    emulator: &Emulator,
    head: &[u8],
    count: usize,
    size: usize,
) -> usize {
    let mut streams = Vec::new();
    for _ in 0..count {
        let mut stream = TcpStream::connect(emulator.http_addr())
            .await
            .expect("connect");
        stream.write_all(head).await.expect("write");
        let received = read_one_response(&mut stream, Duration::from_secs(30)).await;
        assert!(
            received.len() > size,
            "whole response read: {:?}",
            String::from_utf8_lossy(&received[..received.len().min(300)])
        );
        streams.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let open = resident_bytes();
    drop(streams);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    open.saturating_sub(resident_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connection_holds_no_response_buffer() {
    let (_dir, emulator, open) = start_open_app().await;

    // Just below the 32 MiB the Functions host buffers of a handler's response.
    let size = 30 * 1024 * 1024;
    let head = format!("GET /api/big?size={size} HTTP/1.1\r\nHost: {open}\r\n\r\n");
    let full =
        memory_held_by_idle_connections(&emulator, &forced_to_full_path(head.as_bytes()), 3, size)
            .await;
    let fast = memory_held_by_idle_connections(&emulator, head.as_bytes(), 3, size).await;
    let limit = 16 * 1024 * 1024;
    assert!(full < limit, "hyper's idle connections hold {full} bytes");
    assert!(
        fast < limit,
        "fast path's idle connections hold {fast} bytes"
    );
}

/// Opens a TLS connection to the front end's https listener for `host`, trusting only the
/// emulator's CA.
async fn connect_tls(
    emulator: &Emulator,
    host: &str,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    for certificate in rustls_pemfile::certs(&mut emulator.ca_pem().as_bytes()) {
        roots
            .add(certificate.expect("CA certificate"))
            .expect("add CA");
    }
    // The workspace enables only the ring provider, which rustls deprecates for its lack of
    // post-quantum key exchange. That does not matter on loopback.
    #[allow(deprecated)]
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = TcpStream::connect(emulator.https_addr())
        .await
        .expect("connect");
    let name = rustls::pki_types::ServerName::try_from(host.to_owned()).expect("server name");
    connector.connect(name, tcp).await.expect("TLS handshake")
}

/// Reads from a TLS stream until it ends or `limit` passes.
async fn read_tls_until_closed(
    stream: &mut tokio_rustls::client::TlsStream<TcpStream>,
    limit: Duration,
) -> Vec<u8> {
    let mut received = Vec::new();
    let mut buffer = vec![0u8; 64 * 1024];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return received,
            Ok(Ok(count)) => received.extend_from_slice(&buffer[..count]),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_pipeline_matches_full_path() {
    let (_dir, emulator, open) = start_open_app().await;

    // A fast request, one that hyper takes, and a fast one again, and then the caller's
    // `close_notify` and the end of its stream.
    let requests = [
        format!("GET /api/slow?n=1 HTTP/1.1\r\nHost: {open}\r\n\r\n"),
        format!("POST /api/echo?n=2 HTTP/1.1\r\nHost: {open}\r\nContent-Length: 2\r\n\r\nhi"),
        format!("GET /api/echo?n=3 HTTP/1.1\r\nHost: {open}\r\nX-A: 1\r\n\r\n"),
    ];
    let fast = requests.concat().into_bytes();
    let full: Vec<u8> = requests
        .iter()
        .flat_map(|request| forced_to_full_path(request.as_bytes()))
        .collect();

    let mut outcomes = Vec::new();
    for burst in [&fast, &full] {
        let before = emulator.decisions().len();
        let mut stream = connect_tls(&emulator, &open).await;
        stream.write_all(burst).await.expect("write");
        stream.shutdown().await.expect("close the sending side");
        let received = read_tls_until_closed(&mut stream, Duration::from_secs(5)).await;
        drop(stream);
        tokio::time::sleep(Duration::from_millis(300)).await;
        outcomes.push((masked(&received), records_since(&emulator, before)));
    }
    assert!(
        outcomes[1].0.contains("GET /api/slow?n=1"),
        "hyper responds to the first request: {:?}",
        outcomes[1]
    );
    assert_eq!(outcomes[0].0, outcomes[1].0);
    assert_eq!(outcomes[0].1, outcomes[1].1);
}
