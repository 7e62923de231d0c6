//! The front end runs as many threads as `EmulatorConfig::front_end_threads` sets, and a start
//! with more than `MAX_FRONT_END_THREADS` is rejected before anything runs.
//!
//! The threads are counted by name (`front-end-<index>`) in `/proc/self/task`, so this file
//! keeps a single emulator per process at a time and skips where `/proc` is missing.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::num::NonZeroUsize;
use std::path::Path;
use std::time::{Duration, Instant};

use subnetlock_emulator::{Emulator, EmulatorConfig, EmulatorError, MAX_FRONT_END_THREADS};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One site without access restrictions and without bound code, so it responds with its
/// default page.
const TEMPLATE: &str = r#"{
  "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
  "contentVersion": "1.0.0.0",
  "resources": [
    { "type": "Microsoft.Web/serverfarms", "apiVersion": "2022-09-01", "name": "plan",
      "location": "westeurope", "sku": { "name": "S1", "tier": "Standard" }, "properties": {} },
    { "type": "Microsoft.Web/sites", "apiVersion": "2022-09-01", "name": "app",
      "location": "westeurope", "kind": "app",
      "properties": { "serverFarmId": "[resourceId('Microsoft.Web/serverfarms', 'plan')]" } }
  ]
}"#;

fn config(dir: &Path, threads: usize) -> EmulatorConfig {
    let template = dir.join("azuredeploy.json");
    std::fs::write(&template, TEMPLATE).expect("write template");
    let mut config = EmulatorConfig::new(template, dir.join("state"));
    config.run_builds = false;
    config.front_end_threads = NonZeroUsize::new(threads).expect("non-zero count");
    config
}

/// Counts the threads of this process that the front end named `front-end-<index>`.
fn front_end_thread_count() -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with("front-end-"))
        .count()
}

fn wait_for_thread_count(expected: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while front_end_thread_count() != expected {
        assert!(
            Instant::now() < deadline,
            "expected {expected} front-end threads, found {}",
            front_end_thread_count()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends a GET for `app` on a connection of its own and returns the status line.
async fn status_line(emulator: &Emulator) -> String {
    let mut stream = TcpStream::connect(emulator.http_addr())
        .await
        .expect("connect");
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: app.azurewebsites.net\r\nConnection: close\r\n\r\n")
        .await
        .expect("send request");
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .await
        .expect("read response");
    let text = String::from_utf8_lossy(&response);
    text.lines().next().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_thread_count_serves() {
    if !Path::new("/proc/self/task").exists() {
        println!("skipped: counting threads needs /proc (Linux)");
        return;
    }
    // Two counts, so that at least one differs from the default of one per CPU core.
    for threads in [1, 3] {
        let dir = tempfile::tempdir().expect("temp dir");
        let emulator = Emulator::start(config(dir.path(), threads))
            .await
            .expect("emulator starts");

        assert_eq!(front_end_thread_count(), threads);
        for request in 0..8 {
            let status = status_line(&emulator).await;
            assert_eq!(
                status, "HTTP/1.1 200 OK",
                "{threads} thread(s), request {request}"
            );
        }

        emulator.shutdown().await;
        wait_for_thread_count(0);
    }
}

#[tokio::test]
async fn too_many_threads_rejected() {
    let dir = tempfile::tempdir().expect("temp dir");
    let threads = MAX_FRONT_END_THREADS + 1;

    let error = Emulator::start(config(dir.path(), threads))
        .await
        .err()
        .expect("start is rejected");

    assert!(
        matches!(
            error,
            EmulatorError::TooManyFrontEndThreads { threads: t, max } if t == threads && max == MAX_FRONT_END_THREADS
        ),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        format!("front-end thread count {threads} is above the maximum of {MAX_FRONT_END_THREADS}")
    );
    assert!(!dir.path().join("state").exists());
}
