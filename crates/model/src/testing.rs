//! Fixtures for the tests of this crate and of the crates built on it. Other crates get them
//! with the `test-support` feature.

// A fixture that does not build is a broken test, so it panics with the reason.
#![allow(clippy::expect_used)]

use crate::{build_topology, KeyMode, SimulatedProvider, Topology};

/// Builds the topology of a template with one Standard (S1) plan `plan` and one site `app` on
/// it, whose `siteConfig` is `site_config`.
///
/// # Panics
///
/// When the template does not evaluate.
pub fn one_site_topology(site_config: serde_json::Value) -> Topology {
    let template = serde_json::json!({
        "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
        "contentVersion": "1.0.0.0",
        "resources": [
            { "type": "Microsoft.Web/serverfarms", "apiVersion": "2022-09-01", "name": "plan",
              "sku": { "name": "S1" } },
            { "type": "Microsoft.Web/sites", "apiVersion": "2022-09-01", "name": "app",
              "properties": {
                  "serverFarmId": "[resourceId('Microsoft.Web/serverfarms', 'plan')]",
                  "siteConfig": site_config
              } }
        ]
    });
    let provider = SimulatedProvider::new(KeyMode::Placeholder);
    let deployment = subnetlock_arm::evaluate_str(
        "one-site.json",
        &template.to_string(),
        &subnetlock_arm::EvalOptions::default(),
        &provider,
    )
    .expect("template evaluates");
    build_topology(&deployment)
}
