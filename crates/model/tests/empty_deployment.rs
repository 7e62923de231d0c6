//! Deployments that create no resources. Resource Manager accepts them, so their topology is
//! empty, and building it is no error.

// Tests fail loudly on broken fixtures.
#![allow(clippy::expect_used)]

use serde_json::json;
use subnetlock_model::{build_topology, KeyMode, SimulatedProvider, Topology};

fn topology_of(resources: serde_json::Value) -> Topology {
    let template = json!({
        "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
        "contentVersion": "1.0.0.0",
        "resources": resources
    });
    let provider = SimulatedProvider::new(KeyMode::Placeholder);
    let deployment = subnetlock_arm::evaluate_str(
        "empty.json",
        &template.to_string(),
        &subnetlock_arm::EvalOptions::default(),
        &provider,
    )
    .expect("template evaluates");
    assert!(
        deployment.resources.is_empty(),
        "{:?}",
        deployment.resources
    );
    build_topology(&deployment)
}

#[test]
fn empty_resources_builds_empty_topology() {
    let topology = topology_of(json!([]));

    assert!(topology.sites.is_empty());
    assert!(topology.plans.is_empty());
    assert!(topology.vnets.is_empty());
    assert!(topology.findings.is_empty(), "{:?}", topology.findings);
}

#[test]
fn all_conditions_false_builds_empty_topology() {
    let topology = topology_of(json!([
        { "condition": false, "type": "Microsoft.Web/serverfarms", "apiVersion": "2022-09-01",
          "name": "plan", "sku": { "name": "S1" } },
        { "condition": "[equals(1, 2)]", "type": "Microsoft.Web/sites",
          "apiVersion": "2022-09-01", "name": "app",
          "properties": { "serverFarmId": "[resourceId('Microsoft.Web/serverfarms', 'plan')]" } }
    ]));

    assert!(topology.sites.is_empty());
    assert!(topology.plans.is_empty());
    assert!(topology.findings.is_empty(), "{:?}", topology.findings);
}
