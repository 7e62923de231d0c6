//! A request in an app's egress tunnel gets one decision record, whether hyper parses it or
//! not, as the destination site's front end would read it in Azure.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::path::Path;

use subnetlock_access::Action;
use subnetlock_emulator::{AppBinding, Bindings, Caller, DecisionRecord, Emulator, EmulatorConfig};
use tempfile::TempDir;

/// `app-a` is integrated into subnet `vnet/apps`. `app-b` has a private endpoint in `vnet/pe`
/// that the linked `privatelink.azurewebsites.net` zone resolves, so `app-a` reaches it through
/// the endpoint, and its rule allows only a documentation range on the public endpoint.
const TEMPLATE: &str = r#"{
  "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
  "contentVersion": "1.0.0.0",
  "resources": [
    { "type": "Microsoft.Network/virtualNetworks", "apiVersion": "2023-09-01", "name": "vnet",
      "location": "westeurope",
      "properties": { "addressSpace": { "addressPrefixes": ["10.0.0.0/16"] },
        "subnets": [
          { "name": "apps", "properties": { "addressPrefix": "10.0.0.0/24",
            "serviceEndpoints": [ { "service": "Microsoft.Web", "locations": ["*"] } ],
            "delegations": [ { "name": "delegation",
              "properties": { "serviceName": "Microsoft.Web/serverFarms" } } ] } },
          { "name": "pe", "properties": { "addressPrefix": "10.0.1.0/24" } } ] } },
    { "type": "Microsoft.Web/serverfarms", "apiVersion": "2022-09-01", "name": "plan-a",
      "location": "westeurope", "sku": { "name": "S1", "tier": "Standard" }, "properties": {} },
    { "type": "Microsoft.Web/serverfarms", "apiVersion": "2022-09-01", "name": "plan-b",
      "location": "westeurope", "sku": { "name": "EP1", "tier": "ElasticPremium" },
      "properties": {} },
    { "type": "Microsoft.Web/sites", "apiVersion": "2022-09-01", "name": "app-a",
      "location": "westeurope", "kind": "functionapp",
      "properties": {
        "serverFarmId": "[resourceId('Microsoft.Web/serverfarms', 'plan-a')]",
        "virtualNetworkSubnetId": "[resourceId('Microsoft.Network/virtualNetworks/subnets', 'vnet', 'apps')]"
      } },
    { "type": "Microsoft.Web/sites", "apiVersion": "2022-09-01", "name": "app-b",
      "location": "westeurope", "kind": "functionapp",
      "properties": {
        "serverFarmId": "[resourceId('Microsoft.Web/serverfarms', 'plan-b')]",
        "siteConfig": { "ipSecurityRestrictions": [ { "name": "docs", "action": "Allow",
          "priority": 100, "ipAddress": "203.0.113.0/24" } ] }
      } },
    { "type": "Microsoft.Network/privateEndpoints", "apiVersion": "2023-09-01",
      "name": "pe-app-b", "location": "westeurope",
      "properties": {
        "subnet": { "id": "[resourceId('Microsoft.Network/virtualNetworks/subnets', 'vnet', 'pe')]" },
        "privateLinkServiceConnections": [ { "name": "sites", "properties": {
          "privateLinkServiceId": "[resourceId('Microsoft.Web/sites', 'app-b')]",
          "groupIds": ["sites"] } } ] } },
    { "type": "Microsoft.Network/privateDnsZones", "apiVersion": "2020-06-01",
      "name": "privatelink.azurewebsites.net", "location": "global", "properties": {} },
    { "type": "Microsoft.Network/privateDnsZones/virtualNetworkLinks", "apiVersion": "2020-06-01",
      "name": "privatelink.azurewebsites.net/vnet-link", "location": "global",
      "properties": { "registrationEnabled": false,
        "virtualNetwork": { "id": "[resourceId('Microsoft.Network/virtualNetworks', 'vnet')]" } } },
    { "type": "Microsoft.Network/privateEndpoints/privateDnsZoneGroups", "apiVersion": "2023-09-01",
      "name": "pe-app-b/default",
      "properties": { "privateDnsZoneConfigs": [ { "name": "privatelink-azurewebsites-net",
        "properties": { "privateDnsZoneId": "[resourceId('Microsoft.Network/privateDnsZones', 'privatelink.azurewebsites.net')]" } } ] } }
  ]
}"#;

/// Custom handler of `app-a`. Only its egress proxy is used here.
const HANDLER: &str = r#"
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(204)
        self.end_headers()

ThreadingHTTPServer(("127.0.0.1", int(os.environ["FUNCTIONS_CUSTOMHANDLER_PORT"])), Handler).serve_forever()
"#;

const DESTINATION: &str = "app-b.azurewebsites.net";

/// Writes the template and a function app for `app-a`, and starts the emulator with `app-a`
/// bound to it.
async fn start(dir: &Path) -> Emulator {
    let template = dir.join("azuredeploy.json");
    std::fs::write(&template, TEMPLATE).expect("write template");

    let app = dir.join("app-a");
    std::fs::create_dir_all(app.join("ping")).expect("create function app");
    std::fs::write(app.join("handler.py"), HANDLER).expect("write handler");
    let host = serde_json::json!({
        "version": "2.0",
        "customHandler": {
            "description": {"defaultExecutablePath": "python3", "arguments": ["handler.py"]},
            "enableForwardingHttpRequest": true
        }
    });
    std::fs::write(app.join("host.json"), host.to_string()).expect("write host.json");
    let function = serde_json::json!({"bindings": [
        {"type": "httpTrigger", "direction": "in", "name": "req", "authLevel": "anonymous"},
        {"type": "http", "direction": "out", "name": "res"}
    ]});
    std::fs::write(app.join("ping/function.json"), function.to_string())
        .expect("write function.json");

    let mut config = EmulatorConfig::new(template, dir.join("state"));
    config.run_builds = false;
    config.bindings = Bindings {
        apps: vec![AppBinding {
            site_pattern: "app-a".to_owned(),
            function_app: app,
            executable: None,
            build: None,
        }],
        ..Bindings::default()
    };
    Emulator::start(config).await.expect("emulator starts")
}

/// Starts the emulator as `start` does in a new temporary directory, and returns it with
/// `app-a`'s egress proxy. The directory is deleted when the returned `TempDir` is dropped.
async fn start_in_temp_dir() -> (TempDir, Emulator, SocketAddr) {
    let dir = TempDir::new().expect("temp dir");
    let emulator = start(dir.path()).await;
    let proxy = egress_proxy_of(&emulator, "app-a");
    (dir, emulator, proxy)
}

fn egress_proxy_of(emulator: &Emulator, site: &str) -> SocketAddr {
    emulator
        .site(site)
        .and_then(|site| site.egress_proxy)
        .expect("bound app has an egress proxy")
}

/// Opens a tunnel to `host` through `proxy`, plain on port 80 or TLS on 443, sends `request`
/// in it and returns the response.
async fn send_in_tunnel(
    emulator: &Emulator,
    proxy: SocketAddr,
    host: &str,
    tls: bool,
    request: &[u8],
) -> String {
    if tls {
        let tunnel = common::open_tunnel(proxy, &format!("{host}:443")).await;
        let stream = common::start_tls(tunnel, host, emulator.ca_pem()).await;
        common::exchange(stream, request).await
    } else {
        let tunnel = common::open_tunnel(proxy, &format!("{host}:80")).await;
        common::exchange(tunnel, request).await
    }
}

/// Returns the records after the first `before`, once there are `before + 1` or 5 seconds
/// have passed.
async fn new_records(emulator: &Emulator, before: usize) -> Vec<DecisionRecord> {
    common::wait_for_count(|| emulator.decisions().len(), before + 1).await;
    emulator.decisions().split_off(before)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unparsed_request_in_tunnel_recorded_once() {
    let (_dir, emulator, proxy) = start_in_temp_dir().await;
    let caller = Caller::App("app-a".to_owned());
    let expected_source = caller
        .source_to(emulator.topology(), Some(DESTINATION), None)
        .expect("source of app-a");
    // The destination decides the source: without it the request would take the service
    // endpoint instead of the private endpoint.
    let source_without_destination = caller.source(emulator.topology()).expect("source");
    assert_ne!(expected_source, source_without_destination);

    for tls in [false, true] {
        for (case, request, status) in common::unparsed_requests(DESTINATION) {
            let label = format!("{} {case}", if tls { "TLS" } else { "plain" });
            let before = emulator.decisions().len();

            let response = send_in_tunnel(&emulator, proxy, DESTINATION, tls, &request).await;
            assert!(
                response.starts_with(&format!("HTTP/1.1 {status} ")),
                "{label}: {response}"
            );

            let records = new_records(&emulator, before).await;
            assert_eq!(records.len(), 1, "{label}: {records:?}");
            let record = &records[0];
            assert_eq!(record.caller, "app:app-a", "{label}");
            assert_eq!(record.source, expected_source, "{label}");
            assert_eq!(record.host, DESTINATION, "{label}");
            assert_eq!(record.site, None, "{label}");
            assert_eq!(record.verdict, None, "{label}");
            assert_eq!(record.status, status, "{label}");
        }
    }

    // A record written twice would show up after the last case.
    let count = emulator.decisions().len();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(emulator.decisions().len(), count);
    emulator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parsed_request_in_tunnel_recorded_once() {
    let (_dir, emulator, proxy) = start_in_temp_dir().await;
    let request = format!("GET /x HTTP/1.1\r\nHost: {DESTINATION}\r\nConnection: close\r\n\r\n");

    let mut sources = Vec::new();
    for tls in [false, true] {
        let label = if tls { "TLS" } else { "plain" };
        let before = emulator.decisions().len();

        let response = send_in_tunnel(&emulator, proxy, DESTINATION, tls, request.as_bytes()).await;
        assert!(response.starts_with("HTTP/1.1 200 "), "{label}: {response}");

        let records = new_records(&emulator, before).await;
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        assert_eq!(
            emulator.decisions().len(),
            before + 1,
            "{label}: {records:?}"
        );
        let record = &records[0];
        assert_eq!(record.caller, "app:app-a", "{label}");
        assert_eq!(record.host, DESTINATION, "{label}");
        assert_eq!(record.site.as_deref(), Some("app-b"), "{label}");
        assert_eq!(record.verdict, Some(Action::Allow), "{label}");
        assert_eq!(record.path, "/x", "{label}");
        assert_eq!(record.status, 200, "{label}");
        sources.push(record.source.clone());
    }

    // Unparsed requests are checked against this source.
    let expected_source = Caller::App("app-a".to_owned())
        .source_to(emulator.topology(), Some(DESTINATION), None)
        .expect("source of app-a");
    assert_eq!(sources, [expected_source.clone(), expected_source]);
    emulator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unparsed_request_to_other_host_not_recorded() {
    let (_dir, emulator, proxy) = start_in_temp_dir().await;
    let host = "elsewhere.example";

    for tls in [false, true] {
        let label = if tls { "TLS" } else { "plain" };
        let request = format!("GET /a b HTTP/1.1\r\nHost: {host}\r\n\r\n");
        let response = send_in_tunnel(&emulator, proxy, host, tls, request.as_bytes()).await;
        assert!(response.starts_with("HTTP/1.1 400 "), "{label}: {response}");
    }

    // A request to a site afterwards is recorded, and it is the only record.
    let request = format!("GET /a b HTTP/1.1\r\nHost: {DESTINATION}\r\n\r\n");
    send_in_tunnel(&emulator, proxy, DESTINATION, false, request.as_bytes()).await;
    let records = new_records(&emulator, 0).await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(emulator.decisions().len(), 1, "{records:?}");
    assert_eq!(records[0].host, DESTINATION);
    emulator.shutdown().await;
}
