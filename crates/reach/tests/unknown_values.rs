//! Verdicts and findings that depend on values known only at deployment time.

// Tests fail loudly on broken fixtures.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use serde_json::{json, Value as Json};
use subnetlock_access::{EngineOptions, SiteKind};
use subnetlock_model::{build_topology, Finding, FindingCode, KeyMode, SimulatedProvider};
use subnetlock_reach::{analyze, output, Analysis, Reachability};

/// An expression `check` cannot evaluate: a `reference()` to a resource outside the template.
const UNKNOWN: &str =
    "[reference(resourceId('Microsoft.Network/ipGroups', 'x'), '2023-09-01').flag]";

/// The expression `check` shows for [`UNKNOWN`].
const SHOWN: &str = "Microsoft.Network/ipGroups/x', '2023-09-01').flag";

fn analysis(resources: Json) -> Analysis {
    let template = json!({
        "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
        "contentVersion": "1.0.0.0",
        "resources": resources
    });
    let provider = SimulatedProvider::new(KeyMode::Placeholder);
    let deployment = subnetlock_arm::evaluate_str(
        "unknown.json",
        &template.to_string(),
        &subnetlock_arm::EvalOptions::default(),
        &provider,
    )
    .expect("template evaluates");
    let topology = build_topology(&deployment);
    analyze(topology, &EngineOptions::default())
}

/// Plan `plan` and site `app` whose `siteConfig` is `site_config`.
fn one_site(site_config: Json) -> Analysis {
    analysis(json!([
        { "type": "Microsoft.Web/serverfarms", "apiVersion": "2022-09-01", "name": "plan",
          "sku": { "name": "S1" } },
        { "type": "Microsoft.Web/sites", "apiVersion": "2022-09-01", "name": "app",
          "properties": { "serverFarmId": "[resourceId('Microsoft.Web/serverfarms', 'plan')]",
                          "siteConfig": site_config } }
    ]))
}

fn findings(analysis: &Analysis, code: FindingCode) -> Vec<&Finding> {
    analysis
        .findings
        .iter()
        .filter(|finding| finding.code == code)
        .collect()
}

fn row<'a>(analysis: &'a Analysis, from: &str, to: &str, kind: SiteKind) -> &'a Reachability {
    analysis
        .rows
        .iter()
        .find(|row| row.from.label == from && row.to.site == to && row.to.kind == kind)
        .expect("row")
}

#[test]
fn unknown_list_is_not_counted_as_rule() {
    let analysis = one_site(json!({ "ipSecurityRestrictions": UNKNOWN }));

    let implicit_deny = findings(&analysis, FindingCode::SL013);
    assert_eq!(implicit_deny.len(), 1);
    let message = &implicit_deny[0].message;
    assert!(
        message.contains("main rule list of `app` is known only at deployment time"),
        "{message}"
    );
    assert!(!message.contains("rule(s)"), "{message}");

    let internet = row(&analysis, "internet:203.0.113.10", "app", SiteKind::Main);
    assert_eq!(internet.depends_on_unknown.len(), 1);
    assert!(
        internet.depends_on_unknown[0].starts_with("main rule list: "),
        "{:?}",
        internet.depends_on_unknown
    );

    let human = output::render_human(&analysis, "unknown.json");
    assert!(human.contains("main rule list unknown offline"), "{human}");
    assert!(!human.contains("main 1 rule(s)"), "{human}");
}

#[test]
fn unknown_list_locks_main_site_only_possibly() {
    let analysis = one_site(json!({ "ipSecurityRestrictions": UNKNOWN }));
    let scm_open = findings(&analysis, FindingCode::SL012);
    assert_eq!(scm_open.len(), 1);
    let message = &scm_open[0].message;
    assert!(
        message.contains("is open to the internet while its main site may be locked"),
        "{message}"
    );
    assert!(message.contains("main rule list: "), "{message}");
    assert!(message.contains(SHOWN), "{message}");
}

#[test]
fn known_list_locks_main_site() {
    let analysis = one_site(json!({
        "ipSecurityRestrictions": [{ "ipAddress": "198.51.100.0/24", "action": "Allow", "priority": 100 }]
    }));
    let scm_open = findings(&analysis, FindingCode::SL012);
    assert_eq!(scm_open.len(), 1);
    assert_eq!(
        scm_open[0].message,
        "the scm site of `app` is open to the internet while its main site is locked"
    );
    let implicit_deny = findings(&analysis, FindingCode::SL013);
    assert_eq!(implicit_deny.len(), 1);
    assert!(implicit_deny[0]
        .message
        .contains("has 1 rule(s) and no default action"));
}

#[test]
fn unknown_default_action_is_not_missing() {
    let analysis = one_site(json!({
        "ipSecurityRestrictions": [{ "ipAddress": "198.51.100.0/24", "action": "Allow", "priority": 100 }],
        "ipSecurityRestrictionsDefaultAction": UNKNOWN
    }));
    assert!(findings(&analysis, FindingCode::SL013).is_empty());
    let human = output::render_human(&analysis, "unknown.json");
    assert!(
        human.contains("main 1 rule(s), default unknown offline"),
        "{human}"
    );
}

/// App `a` integrated with subnet `vnet/<subnet>`, whose route-all setting is unknown, and an
/// open app `b`. Subnet `plain` has no service endpoint and a network security group that drops
/// outbound HTTPS to App Service. Subnet `se` has the `Microsoft.Web` service endpoint.
fn route_all_unknown(subnet: &str, site_config: Json) -> Analysis {
    let subnet_id =
        format!("[resourceId('Microsoft.Network/virtualNetworks/subnets', 'vnet', '{subnet}')]");
    let delegation =
        json!([{ "name": "web", "properties": { "serviceName": "Microsoft.Web/serverFarms" } }]);
    analysis(json!([
        { "type": "Microsoft.Network/networkSecurityGroups", "apiVersion": "2023-09-01", "name": "nsg",
          "properties": { "securityRules": [{ "name": "deny-app-service", "properties": {
              "priority": 100, "direction": "Outbound", "access": "Deny", "protocol": "Tcp",
              "destinationAddressPrefix": "AppService", "destinationPortRange": "443" } }] } },
        { "type": "Microsoft.Network/virtualNetworks", "apiVersion": "2023-09-01", "name": "vnet",
          "properties": { "addressSpace": { "addressPrefixes": ["10.0.0.0/16"] }, "subnets": [
              { "name": "plain", "properties": { "addressPrefix": "10.0.1.0/24", "delegations": delegation,
                  "networkSecurityGroup": { "id": "[resourceId('Microsoft.Network/networkSecurityGroups', 'nsg')]" } } },
              { "name": "se", "properties": { "addressPrefix": "10.0.2.0/24", "delegations": delegation,
                  "serviceEndpoints": [{ "service": "Microsoft.Web" }] } } ] } },
        { "type": "Microsoft.Web/serverfarms", "apiVersion": "2022-09-01", "name": "plan",
          "sku": { "name": "P1v3" } },
        { "type": "Microsoft.Web/sites", "apiVersion": "2022-09-01", "name": "a",
          "properties": { "serverFarmId": "[resourceId('Microsoft.Web/serverfarms', 'plan')]",
                          "virtualNetworkSubnetId": subnet_id, "siteConfig": site_config } },
        { "type": "Microsoft.Web/sites", "apiVersion": "2022-09-01", "name": "b",
          "properties": { "serverFarmId": "[resourceId('Microsoft.Web/serverfarms', 'plan')]" } }
    ]))
}

#[test]
fn unknown_route_all_marks_calls_it_changes() {
    let site_configs = [
        (
            json!({ "vnetRouteAllEnabled": UNKNOWN }),
            "properties.siteConfig.vnetRouteAllEnabled",
        ),
        (
            json!({ "appSettings": [{ "name": "WEBSITE_VNET_ROUTE_ALL", "value": UNKNOWN }] }),
            "app setting WEBSITE_VNET_ROUTE_ALL",
        ),
    ];
    for (site_config, setting) in site_configs {
        let analysis = route_all_unknown("plain", site_config.clone());

        // Offline route-all is off, so `a` calls from the plan's shared address and `b` lets it
        // in. With route-all on, the network security group would drop the call.
        let a_to_b = row(&analysis, "app:a", "b", SiteKind::Main);
        assert!(a_to_b.allowed(), "{site_config}");
        assert_eq!(a_to_b.depends_on_unknown.len(), 1, "{site_config}");
        let mark = &a_to_b.depends_on_unknown[0];
        assert!(mark.starts_with(&format!("{setting}: ")), "{mark}");
        assert!(mark.contains(SHOWN), "{mark}");

        // Route-all changes only what `a` sends.
        let internet = row(&analysis, "internet:203.0.113.10", "b", SiteKind::Main);
        assert!(internet.depends_on_unknown.is_empty(), "{site_config}");
        let b_to_a = row(&analysis, "app:b", "a", SiteKind::Main);
        assert!(b_to_a.depends_on_unknown.is_empty(), "{site_config}");

        let unknown_values = findings(&analysis, FindingCode::SL010);
        assert_eq!(unknown_values.len(), 1, "{site_config}");
    }
}

#[test]
fn unknown_route_all_over_service_endpoint_changes_nothing() {
    // The service endpoint carries calls to App Service whether route-all is on or off.
    let analysis = route_all_unknown("se", json!({ "vnetRouteAllEnabled": UNKNOWN }));
    let a_to_b = row(&analysis, "app:a", "b", SiteKind::Main);
    assert!(
        a_to_b.depends_on_unknown.is_empty(),
        "{:?}",
        a_to_b.depends_on_unknown
    );
    let human = output::render_human(&analysis, "unknown.json");
    assert!(
        human.contains("(route-all unknown offline: properties.siteConfig.vnetRouteAllEnabled)"),
        "{human}"
    );
}
