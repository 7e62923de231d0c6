//! The reference template: two function apps, B locked to a subnet that A integrates with.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use subnetlock_arm::{
    evaluate_file, unique_string, Deployment, EvalOptions, OfflineProvider, Parameters, Resource,
    Scope, UnknownCause, Value,
};

const RG_ID: &str = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/subnetlock";

/// `uniqueString(resourceGroup().id)` for the test scope, computed once with an independent
/// Python port of the engine's hash.
const SUFFIX: &str = "yobmxbvmtplck";

fn template_path() -> Option<PathBuf> {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|ancestor| ancestor.join("shared/corpus/arm/vplauzon-lock-in-subnet.json"))
        .find(|candidate| candidate.is_file())
}

fn evaluate() -> Option<Deployment> {
    let Some(path) = template_path() else {
        eprintln!("skipped: shared/corpus/arm/vplauzon-lock-in-subnet.json not found");
        return None;
    };
    let options = EvalOptions {
        scope: Scope {
            subscription_id: "00000000-0000-0000-0000-000000000000".to_owned(),
            resource_group: "subnetlock".to_owned(),
            ..Scope::default()
        },
        parameters: Parameters::new(),
    };
    Some(evaluate_file(&path, &options, &OfflineProvider).unwrap())
}

fn find<'d>(deployment: &'d Deployment, resource_type: &str, name: &str) -> &'d Resource {
    deployment
        .resources
        .iter()
        .find(|resource| resource.resource_type == resource_type && resource.name == name)
        .unwrap_or_else(|| panic!("no {resource_type} {name}"))
}

fn position(deployment: &Deployment, name: &str) -> usize {
    deployment
        .resources
        .iter()
        .position(|resource| resource.name == name)
        .unwrap()
}

#[test]
fn suffix_matches_unique_string() {
    assert_eq!(unique_string(&[RG_ID]), SUFFIX);
}

#[test]
fn vplauzon_resource_names() {
    let Some(deployment) = evaluate() else { return };
    let names: Vec<&str> = deployment
        .resources
        .iter()
        .map(|r| r.name.as_str())
        .collect();
    assert!(
        names.contains(&format!("function-app-a-{SUFFIX}").as_str()),
        "{names:?}"
    );
    assert!(
        names.contains(&format!("function-app-b-{SUFFIX}").as_str()),
        "{names:?}"
    );
    assert!(
        names.contains(&format!("funcsto{SUFFIX}").as_str()),
        "{names:?}"
    );
    assert_eq!(deployment.resources.len(), 10);
}

#[test]
fn vplauzon_b_web_config_has_subnet_rule() {
    let Some(deployment) = evaluate() else { return };
    let web = find(
        &deployment,
        "Microsoft.Web/sites/config",
        &format!("function-app-b-{SUFFIX}/web"),
    );
    assert_eq!(
        web.id,
        format!("{RG_ID}/providers/Microsoft.Web/sites/function-app-b-{SUFFIX}/config/web")
    );
    let rule = web
        .body
        .get_path(&["properties", "ipSecurityRestrictions"])
        .unwrap();
    let first = &rule.as_array().unwrap()[0];
    let subnet =
        format!("{RG_ID}/providers/Microsoft.Network/virtualNetworks/vnet/subnets/default");
    assert_eq!(
        first.get("vnetSubnetResourceId"),
        Some(&Value::String(subnet))
    );
    assert_eq!(
        first.get("action"),
        Some(&Value::String("Allow".to_owned()))
    );
    assert_eq!(first.get("priority"), Some(&Value::Int(100)));
}

#[test]
fn vplauzon_a_virtual_network_config() {
    let Some(deployment) = evaluate() else { return };
    let name = format!("function-app-a-{SUFFIX}/virtualNetwork");
    let config = find(&deployment, "Microsoft.Web/sites/config", &name);
    let subnet =
        format!("{RG_ID}/providers/Microsoft.Network/virtualNetworks/vnet/subnets/default");
    let properties = config.properties().unwrap();
    assert_eq!(
        properties.get("subnetResourceId"),
        Some(&Value::String(subnet))
    );
    assert_eq!(properties.get("swiftSupported"), Some(&Value::Bool(true)));
    assert_eq!(config.api_version, "2018-02-01");
    let vnet_id = format!("{RG_ID}/providers/Microsoft.Network/virtualNetworks/vnet");
    assert!(
        config.depends_on.contains(&vnet_id),
        "{:?}",
        config.depends_on
    );
}

#[test]
fn vplauzon_order_respects_depends_on() {
    let Some(deployment) = evaluate() else { return };
    let app_a = position(&deployment, &format!("function-app-a-{SUFFIX}"));
    let app_b = position(&deployment, &format!("function-app-b-{SUFFIX}"));
    let function_b = position(&deployment, &format!("function-app-b-{SUFFIX}/function-b"));
    let storage = position(&deployment, &format!("funcsto{SUFFIX}"));
    let plan_a = position(&deployment, "app-plan-a");
    assert!(function_b > app_b);
    assert!(app_a > function_b);
    assert!(app_a > storage);
    assert!(app_a > plan_a);
}

#[test]
fn vplauzon_list_secrets_is_unknown_secret() {
    let Some(deployment) = evaluate() else { return };
    let app_a = find(
        &deployment,
        "Microsoft.Web/sites",
        &format!("function-app-a-{SUFFIX}"),
    );
    let settings = app_a
        .body
        .get_path(&["properties", "siteConfig", "appSettings"])
        .unwrap();
    let target = settings
        .as_array()
        .unwrap()
        .iter()
        .find(|setting| setting.get("name") == Some(&Value::String("target-url".to_owned())))
        .unwrap();
    let Some(Value::Unknown(unknown)) = target.get("value") else {
        panic!("target-url is known: {target:?}");
    };
    assert_eq!(unknown.cause, UnknownCause::List);
    assert!(unknown.secret);
    assert!(
        unknown.expression.starts_with("listSecrets('"),
        "{}",
        unknown.expression
    );
    assert!(
        unknown.expression.ends_with(".trigger_url"),
        "{}",
        unknown.expression
    );
    let function_b = format!(
        "{RG_ID}/providers/Microsoft.Web/sites/function-app-b-{SUFFIX}/functions/function-b"
    );
    assert!(app_a.depends_on.contains(&function_b));
}

#[test]
fn vplauzon_locate_subnet_rule() {
    let Some(deployment) = evaluate() else { return };
    let web = find(
        &deployment,
        "Microsoft.Web/sites/config",
        &format!("function-app-b-{SUFFIX}/web"),
    );
    let path = [
        "properties",
        "ipSecurityRestrictions",
        "0",
        "vnetSubnetResourceId",
    ];
    let location = deployment.locate(web, &path);
    assert_eq!((location.line, location.column), (293, 57));
    assert_eq!(
        location.json_path,
        "$.resources[5].resources[1].properties.ipSecurityRestrictions[0].vnetSubnetResourceId"
    );
}

#[test]
fn vplauzon_locate_falls_back_to_ancestor() {
    let Some(deployment) = evaluate() else { return };
    let web = find(
        &deployment,
        "Microsoft.Web/sites/config",
        &format!("function-app-b-{SUFFIX}/web"),
    );
    let location = deployment.locate(web, &["properties", "missing", "deeper"]);
    assert_eq!(location.json_path, "$.resources[5].resources[1].properties");
    assert_eq!(web.declared_at.json_path, "$.resources[5].resources[1]");
}
