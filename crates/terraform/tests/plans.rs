//! Plan JSON fixtures written by hand from azurerm acceptance-test configurations, read into
//! the topology.
//!
//! `fixtures/ip_restriction_default_action.json` mirrors the azurerm acceptance test
//! `TestAccLinuxWebApp_withIPRestrictionsDefaultAction` (step 0): a resource group, a B1 Linux
//! `azurerm_service_plan` and an `azurerm_linux_web_app` with one `ip_restriction` and
//! `ip_restriction_default_action = "Deny"`. The values were worked out as `terraform plan`
//! writes them for a first apply with azurerm 3.95:
//! - `location` is normalised from `"West Europe"` to `westeurope`.
//! - `service_plan_id` is unknown because the plan is created in the same apply, so it is left
//!   out of `planned_values`, marked in `after_unknown` and kept in `configuration` as the
//!   reference `azurerm_service_plan.test.id`.
//! - Unset optional strings of the rule (`service_tag`, `virtual_network_subnet_id`) are `""`.
//! - The scm defaults (`scm_ip_restriction_default_action = "Allow"`, no scm rules) are
//!   materialised.
//!
//! `fixtures/vnet_integration.json` mirrors `TestAccLinuxWebApp_vNetIntegration` (step 0) as
//! azurerm 3.53 plans it (April 2023, before `ip_restriction_default_action` existed): a
//! 10.0.0.0/16 virtual network with subnets `subnet1` (10.0.1.0/24) and `subnet2`
//! (10.0.2.0/24), both delegated to `Microsoft.Web/serverFarms`, and a web app whose
//! `virtual_network_subnet_id = azurerm_subnet.test1.id` is unknown at plan time and resolves
//! only through the configuration reference.
//!
//! Terraform 1.11.4 wrote the plans that create nothing subnetlock reads, with
//! `terraform show -json` of a saved plan: `empty_configuration.json` for an empty `main.tf`,
//! `terraform_data_create.json` for one `terraform_data` resource, and
//! `terraform_data_destroy.json` for `terraform plan -destroy` after that resource was applied.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use miette::SourceCode;
use serde_json::json;
use subnetlock_access::{Action, PublicNetworkAccess, SourceCondition, SubnetId};
use subnetlock_arm::testing::utf16_with_mark;
use subnetlock_model::{FindingCode, IntegrationSource, PlanFamily, Topology};
use subnetlock_terraform::{from_str, topology_from_plan, Error};

/// Subscription and resource group of synthetic ids in the default-action fixture.
const RG_DEFAULT_ACTION: &str =
    "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/acctestRG-240311031305920692";
const RG_VNET: &str =
    "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/acctestRG-230421021641585581";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn has(topology: &Topology, code: FindingCode) -> bool {
    topology.findings.iter().any(|finding| finding.code == code)
}

#[test]
fn default_action_fixture_rules() {
    let topology = topology_from_plan(&fixture("ip_restriction_default_action.json")).unwrap();
    let site = topology.site("acctestWA-240311031305920692").expect("site");

    assert_eq!(site.kind.as_deref(), Some("app,linux"));
    assert_eq!(
        site.plan_id.as_deref(),
        Some(format!("{RG_DEFAULT_ACTION}/providers/Microsoft.Web/serverFarms/acctestASP-240311031305920692").as_str())
    );
    assert_eq!(
        site.access.public_network_access,
        PublicNetworkAccess::Enabled
    );
    assert_eq!(site.access.main.default_action, Some(Action::Deny));
    assert_eq!(site.access.main.rules.len(), 1);

    let rule = &site.access.main.rules[0];
    assert_eq!(rule.priority, 123);
    assert_eq!(rule.action, Action::Allow);
    assert_eq!(rule.name.as_deref(), Some("test-restriction"));
    let SourceCondition::Ranges(ranges) = &rule.source else {
        panic!("expected an IP rule, got {:?}", rule.source);
    };
    assert_eq!(ranges.len(), 1);
    assert_eq!(ranges[0].network.to_string(), "10.10.10.10");
    assert_eq!(ranges[0].prefix, 32);
}

#[test]
fn default_action_fixture_headers() {
    let topology = topology_from_plan(&fixture("ip_restriction_default_action.json")).unwrap();
    let site = topology.site("acctestWA-240311031305920692").expect("site");
    let headers = &site.access.main.rules[0].headers;

    assert_eq!(
        headers.x_azure_fdid,
        vec!["55ce4ed1-4b06-4bf1-b40e-4638452104da"]
    );
    assert_eq!(headers.x_fd_health_probe, vec!["1"]);
    assert_eq!(headers.x_forwarded_host, vec!["example.com"]);
    let forwarded: Vec<String> = headers
        .x_forwarded_for
        .iter()
        .map(|net| format!("{}/{}", net.network, net.prefix))
        .collect();
    // `2002::1234:abcd:ffff:c0a8:101` is 2002:0:0:1234:abcd:ffff:c0a8:101, so the /64 filter
    // has host bits set and matches the network 2002:0:0:1234::/64.
    assert_eq!(forwarded, vec!["9.9.9.9/32", "2002:0:0:1234::/64"]);
    assert!(has(&topology, FindingCode::SL001), "host bits warning");
}

#[test]
fn default_action_fixture_scm_and_findings() {
    let topology = topology_from_plan(&fixture("ip_restriction_default_action.json")).unwrap();
    let site = topology.site("acctestWA-240311031305920692").expect("site");

    assert!(site.access.scm.rules.is_empty());
    assert_eq!(site.access.scm.default_action, Some(Action::Allow));
    assert!(!site.access.scm_uses_main);
    // Default Deny on main, no scm rules: nothing for SL019 to report.
    assert!(!has(&topology, FindingCode::SL019));
    let plan = topology.plans.first().expect("plan");
    assert_eq!(plan.family, PlanFamily::Basic);
    assert!(plan.is_linux);
}

#[test]
fn default_action_fixture_location() {
    let path = fixture("ip_restriction_default_action.json");
    let topology = topology_from_plan(&path).unwrap();
    let site = topology.site("acctestWA-240311031305920692").expect("site");

    assert_eq!(site.declared_at.file, path);
    assert_eq!(site.declared_at.json_path, "azurerm_linux_web_app.test");
    // The first `"address": "azurerm_linux_web_app.test"` is on line 8 of the fixture.
    assert_eq!(site.declared_at.line, 8);
    assert_eq!(site.declared_at.column, 11);
}

#[test]
fn vnet_fixture_integration_subnet() {
    let topology = topology_from_plan(&fixture("vnet_integration.json")).unwrap();
    let site = topology.site("acctestWA-230421021641585581").expect("site");
    let integration = site.integration.as_ref().expect("integration");

    let expected = SubnetId::new(format!(
        "{RG_VNET}/providers/Microsoft.Network/virtualNetworks/vnet-230421021641585581/subnets/subnet1"
    ));
    assert_eq!(integration.subnet_id, expected);
    assert_eq!(
        integration.source,
        IntegrationSource::VirtualNetworkSubnetId
    );
    let (vnet, subnet) = topology
        .subnet(&integration.subnet_id)
        .expect("subnet in topology");
    assert_eq!(vnet.address_prefixes, vec!["10.0.0.0/16"]);
    assert_eq!(subnet.address_prefixes, vec!["10.0.1.0/24"]);
    assert!(subnet.is_delegated_to("Microsoft.Web/serverFarms"));
    assert!(!subnet.has_web_service_endpoint());
}

#[test]
fn vnet_fixture_defaults() {
    let topology = topology_from_plan(&fixture("vnet_integration.json")).unwrap();
    let site = topology.site("acctestWA-230421021641585581").expect("site");

    assert_eq!(topology.vnets.len(), 1);
    assert_eq!(topology.vnets[0].subnets.len(), 2);
    // azurerm 3.53 has no `ip_restriction_default_action`: the implicit rule applies.
    assert_eq!(site.access.main.default_action, None);
    assert!(site.access.main.rules.is_empty());
    assert!(!site.route_all.enabled);
    let errors: Vec<_> = topology
        .findings
        .iter()
        .filter(|finding| finding.fails_deployment())
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
}

/// Builds a plan whose app and subnet live in child module `module.web`. The subnet rule's
/// `virtual_network_subnet_id` is unknown and resolves through the module's configuration.
fn module_plan(default_action: &str, rule_subnet_reference: &str) -> serde_json::Value {
    let group = "rg";
    json!({
        "format_version": "1.2",
        "terraform_version": "1.7.4",
        "planned_values": { "root_module": { "child_modules": [{
            "address": "module.web",
            "resources": [
                { "address": "module.web.azurerm_subnet.this", "mode": "managed",
                  "type": "azurerm_subnet", "name": "this",
                  "values": { "name": "apps", "resource_group_name": group,
                              "virtual_network_name": "vnet",
                              "address_prefixes": ["10.0.0.0/24"],
                              "service_endpoints": ["Microsoft.Web"] } },
                { "address": "module.web.azurerm_windows_function_app.this[0]", "mode": "managed",
                  "type": "azurerm_windows_function_app", "name": "this", "index": 0,
                  "values": { "name": "func-b", "resource_group_name": group,
                              "location": "westeurope",
                              "site_config": [{
                                  "ip_restriction": [{ "action": "Allow", "priority": 100,
                                                       "name": "apps", "headers": [] }],
                                  "ip_restriction_default_action": default_action,
                                  "scm_ip_restriction": [],
                                  "scm_ip_restriction_default_action": "Allow" }] } }
            ]
        }]}},
        "resource_changes": [
            { "address": "module.web.azurerm_windows_function_app.this[0]",
              "change": { "actions": ["create"], "after_unknown": {
                  "id": true,
                  "site_config": [{ "ip_restriction": [{ "virtual_network_subnet_id": true }] }] } } }
        ],
        "configuration": { "root_module": { "module_calls": { "web": { "module": { "resources": [
            { "address": "azurerm_subnet.this", "type": "azurerm_subnet", "name": "this",
              "expressions": {} },
            { "address": "azurerm_windows_function_app.this", "type": "azurerm_windows_function_app",
              "name": "this",
              "expressions": { "site_config": [{ "ip_restriction": [{
                  "virtual_network_subnet_id": { "references": [rule_subnet_reference] } }] }] } }
        ]}}}}}
    })
}

#[test]
fn module_rule_subnet_resolved() {
    let plan = module_plan("Deny", "azurerm_subnet.this.id");
    let topology = from_str("plan.json", &plan.to_string()).unwrap();
    let site = topology.site("func-b").expect("site");

    assert_eq!(site.kind.as_deref(), Some("functionapp"));
    let rule = &site.access.main.rules[0];
    let expected = SubnetId::new(
        "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/vnet/subnets/apps",
    );
    assert_eq!(rule.source, SourceCondition::Subnet(expected));
    assert!(site.unknown_rules.is_empty());
    assert!(
        !has(&topology, FindingCode::SL003),
        "the subnet has the service endpoint"
    );
}

#[test]
fn module_allow_list_default_allow() {
    let plan = module_plan("Allow", "azurerm_subnet.this.id");
    let topology = from_str("plan.json", &plan.to_string()).unwrap();
    let finding = topology
        .findings
        .iter()
        .find(|finding| finding.code == FindingCode::SL019)
        .expect("SL019");

    assert_eq!(finding.outcome, Some(subnetlock_access::Outcome::Silent));
    let location = finding.location.as_ref().expect("location");
    assert_eq!(
        location.json_path,
        "module.web.azurerm_windows_function_app.this[0].site_config[0].ip_restriction_default_action"
    );
}

#[test]
fn unknown_rule_list_keeps_the_implicit_deny() {
    // A `dynamic "ip_restriction"` over a collection known only after apply: the planned
    // values leave the list out and `after_unknown` marks it.
    let mut plan = module_plan("Deny", "var.subnet_id");
    let module = &mut plan["planned_values"]["root_module"]["child_modules"][0];
    let config = &mut module["resources"][1]["values"]["site_config"][0];
    config.as_object_mut().unwrap().remove("ip_restriction");
    config
        .as_object_mut()
        .unwrap()
        .remove("ip_restriction_default_action");
    plan["resource_changes"][0]["change"]["after_unknown"]["site_config"] =
        json!([{ "ip_restriction": true }]);
    let topology = from_str("plan.json", &plan.to_string()).unwrap();
    let site = topology.site("func-b").expect("site");

    assert!(site
        .unknown_list(subnetlock_access::SiteKind::Main)
        .is_some());
    assert!(has(&topology, FindingCode::SL010));
    // As in the ARM reader, one rule that matches nothing stands for the list, so an internet
    // caller meets the implicit deny all.
    assert_eq!(site.access.main.rules.len(), 1);
    assert_eq!(
        site.access.main.rules[0].source,
        SourceCondition::Ranges(Vec::new())
    );
}

#[test]
fn module_rule_unresolved_reference() {
    let plan = module_plan("Deny", "var.subnet_id");
    let topology = from_str("plan.json", &plan.to_string()).unwrap();
    let site = topology.site("func-b").expect("site");

    assert_eq!(site.unknown_rules.len(), 1);
    assert_eq!(site.unknown_rules[0].expression, "var.subnet_id");
    assert!(has(&topology, FindingCode::SL010));
    // The placeholder keeps the list non-empty, so unmatched traffic still meets the deny.
    assert_eq!(site.access.main.rules.len(), 1);
}

/// Builds a root-module plan from `(address, values, expressions)` entries of resources that
/// the plan creates, so every `id` is known only after apply.
fn root_plan(resources: &[(&str, serde_json::Value, serde_json::Value)]) -> String {
    let planned: Vec<_> = resources
        .iter()
        .map(|(address, values, _)| {
            let (resource_type, name) = address.split_once('.').unwrap();
            json!({ "address": address, "mode": "managed", "type": resource_type,
                    "name": name, "values": values })
        })
        .collect();
    let configured: Vec<_> = resources
        .iter()
        .map(|(address, _, expressions)| json!({ "address": address, "expressions": expressions }))
        .collect();
    let changes: Vec<_> = resources
        .iter()
        .map(|(address, _, _)| {
            json!({ "address": address, "change": { "actions": ["create"],
                    "after_unknown": { "id": true } } })
        })
        .collect();
    json!({
        "format_version": "1.2",
        "planned_values": { "root_module": { "resources": planned } },
        "resource_changes": changes,
        "configuration": { "root_module": { "resources": configured } }
    })
    .to_string()
}

fn reference(target: &str) -> serde_json::Value {
    json!({ "references": [target, target.trim_end_matches(".id")] })
}

/// A web app with a slot, a private endpoint and a swift connection, all created by the plan.
fn network_plan() -> String {
    root_plan(&[
        (
            "azurerm_virtual_network.vnet",
            json!({ "name": "vnet", "resource_group_name": "rg", "address_space": ["10.1.0.0/16"],
                    "location": "westeurope" }),
            json!({}),
        ),
        (
            "azurerm_subnet.apps",
            json!({ "name": "apps", "resource_group_name": "rg", "virtual_network_name": "vnet",
                    "address_prefixes": ["10.1.0.0/26"] }),
            json!({}),
        ),
        (
            "azurerm_subnet.endpoints",
            json!({ "name": "endpoints", "resource_group_name": "rg",
                    "virtual_network_name": "vnet", "address_prefixes": ["10.1.1.0/26"] }),
            json!({}),
        ),
        (
            "azurerm_service_plan.plan",
            json!({ "name": "plan", "resource_group_name": "rg", "os_type": "Windows",
                    "sku_name": "P1v3" }),
            json!({}),
        ),
        (
            "azurerm_windows_web_app.app",
            json!({ "name": "app", "resource_group_name": "rg", "location": "westeurope",
                    "public_network_access_enabled": false,
                    "site_config": [{ "vnet_route_all_enabled": true }] }),
            json!({ "service_plan_id": reference("azurerm_service_plan.plan.id") }),
        ),
        (
            "azurerm_windows_web_app_slot.staging",
            json!({ "name": "staging" }),
            json!({ "app_service_id": reference("azurerm_windows_web_app.app.id") }),
        ),
        (
            "azurerm_app_service_virtual_network_swift_connection.app",
            json!({}),
            json!({ "app_service_id": reference("azurerm_windows_web_app.app.id"),
                    "subnet_id": reference("azurerm_subnet.apps.id") }),
        ),
        (
            "azurerm_private_endpoint.app",
            json!({ "name": "pe-app", "resource_group_name": "rg",
                    "private_service_connection": [{ "name": "app",
                        "is_manual_connection": false, "subresource_names": ["sites"] }] }),
            json!({ "subnet_id": reference("azurerm_subnet.endpoints.id"),
                    "private_service_connection": [{
                        "private_connection_resource_id": reference("azurerm_windows_web_app.app.id") }] }),
        ),
    ])
}

#[test]
fn slot_named_after_app() {
    let topology = from_str("plan.json", &network_plan()).unwrap();
    let app = topology.site("app").expect("app");
    let slot = topology.site("app/staging").expect("slot");

    assert_eq!(slot.id, format!("{}/slots/staging", app.id));
    assert_eq!(slot.default_host_name, "app-staging.azurewebsites.net");
    assert_eq!(slot.plan_id, app.plan_id, "a slot runs on its app's plan");
    assert_eq!(slot.kind.as_deref(), Some("app"));
}

#[test]
fn swift_connection_integration() {
    let topology = from_str("plan.json", &network_plan()).unwrap();
    let app = topology.site("app").expect("app");
    let integration = app.integration.as_ref().expect("integration");

    assert_eq!(integration.subnet_id.name(), "apps");
    assert_eq!(
        integration.source,
        IntegrationSource::NetworkConfigVirtualNetwork
    );
    assert!(app.route_all.enabled);
    assert_eq!(
        app.access.public_network_access,
        PublicNetworkAccess::Disabled
    );
}

#[test]
fn private_endpoint_targets_app() {
    let topology = from_str("plan.json", &network_plan()).unwrap();
    let app = topology.site("app").expect("app");
    let endpoint = topology.private_endpoints.first().expect("endpoint");

    assert!(app.access.has_private_endpoint);
    assert_eq!(endpoint.target_id, app.id);
    assert_eq!(endpoint.group_ids, vec!["sites"]);
    assert_eq!(
        endpoint.subnet_id.as_ref().map(SubnetId::name),
        Some("endpoints")
    );
}

#[test]
fn malformed_json_located() {
    let text = "{\n  \"format_version\": \"1.2\",\n  \"planned_values\": {,}\n}\n";
    let error = from_str("broken.json", text).unwrap_err();
    let Error::Syntax(syntax) = &error else {
        panic!("expected a syntax error, got {error:?}");
    };

    assert_eq!(syntax.line, 3);
    assert_eq!(syntax.column, 22);
    assert_eq!(syntax.file, Path::new("broken.json"));
    assert!(error
        .to_string()
        .starts_with("invalid JSON in Terraform plan `broken.json` at line 3"));
    assert_eq!(syntax.span.offset(), text.find(",}").unwrap());
}

#[test]
fn byte_order_mark_plan_reads() {
    // `network_plan` is one line, so every location is on the line that contains the mark.
    let plain = network_plan();
    let marked = format!("\u{feff}{plain}");
    let mark = '\u{feff}'.len_utf8();

    let expected = from_str("plan.json", &plain).unwrap();
    let topology = from_str("plan.json", &marked).unwrap();

    let names = |topology: &Topology| -> Vec<String> {
        topology
            .sites
            .iter()
            .map(|site| site.name.clone())
            .collect()
    };
    assert!(!expected.sites.is_empty());
    assert_eq!(names(&topology), names(&expected));
    assert_eq!(topology.findings.len(), expected.findings.len());
    for (site, plain_site) in topology.sites.iter().zip(&expected.sites) {
        let (location, plain_location) = (&site.declared_at, &plain_site.declared_at);
        assert_eq!(location.line, 1, "{}", site.name);
        assert_eq!(location.column, plain_location.column, "{}", site.name);
        assert_eq!(
            location.offset,
            plain_location.offset + mark,
            "{}",
            site.name
        );
        assert_eq!(
            marked.get(location.offset..location.offset + location.length),
            Some("\"address\""),
            "{}",
            site.name
        );
    }
}

#[test]
fn byte_order_mark_plan_file_reads() {
    let plain = std::fs::read_to_string(fixture("ip_restriction_default_action.json")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plan.json");
    std::fs::write(&path, format!("\u{feff}{plain}")).unwrap();

    let topology = topology_from_plan(&path).unwrap();
    let site = topology.site("acctestWA-240311031305920692").expect("site");

    // The mark is on line 1, so the site's line and column are those of the plain fixture.
    assert_eq!(site.declared_at.line, 8);
    assert_eq!(site.declared_at.column, 11);
}

#[test]
fn byte_order_mark_syntax_error_column() {
    let text = "\u{feff}{\"format_version\": ,}";
    let error = from_str("broken.json", text).unwrap_err();
    let Error::Syntax(syntax) = &error else {
        panic!("expected a syntax error, got {error:?}");
    };

    // The stray `,` is column 20 of line 1 as an editor shows it, without the mark.
    assert_eq!(syntax.line, 1);
    assert_eq!(syntax.column, 20);
    let span_text = syntax.source_code.read_span(&syntax.span, 0, 0).unwrap();
    assert_eq!(span_text.data(), b",");
}

#[test]
fn utf16_plan_file_reads() {
    let plain = std::fs::read_to_string(fixture("ip_restriction_default_action.json")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let utf8_path = dir.path().join("plan-utf8.json");
    std::fs::write(&utf8_path, &plain).unwrap();
    let expected = topology_from_plan(&utf8_path).unwrap();
    let expected_site = expected.site("acctestWA-240311031305920692").expect("site");

    for (little_endian, encoding) in [(true, "UTF-16LE"), (false, "UTF-16BE")] {
        let path = dir.path().join("plan.json");
        let bytes = utf16_with_mark(&plain, little_endian);
        let mark = if little_endian {
            [0xFF, 0xFE]
        } else {
            [0xFE, 0xFF]
        };
        assert_eq!(bytes[..2], mark, "{encoding}");
        std::fs::write(&path, bytes).unwrap();

        let topology = topology_from_plan(&path).unwrap();

        let site = topology.site("acctestWA-240311031305920692").expect("site");
        assert_eq!(site.declared_at.line, 8, "{encoding}");
        assert_eq!(site.declared_at.column, 11, "{encoding}");
        assert_eq!(
            site.declared_at.line, expected_site.declared_at.line,
            "{encoding}"
        );
        assert_eq!(topology.sites.len(), expected.sites.len(), "{encoding}");
        assert_eq!(
            topology.findings.len(),
            expected.findings.len(),
            "{encoding}"
        );
    }
}

#[test]
fn utf16_syntax_error_counts_characters() {
    // `é` and `😀` are one character each, but two and four bytes in UTF-8 and one and two
    // code units in UTF-16, so only a count in characters puts the stray `,` at column 13.
    let text = "{\"format_version\": \"1.2\",\n \"é😀\": \"x\", ,}";
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.json");
    std::fs::write(&path, utf16_with_mark(text, true)).unwrap();

    let error = topology_from_plan(&path).unwrap_err();

    let Error::Syntax(syntax) = &error else {
        panic!("expected a syntax error, got {error:?}");
    };
    assert_eq!((syntax.line, syntax.column), (2, 13));
    let span_text = syntax.source_code.read_span(&syntax.span, 0, 0).unwrap();
    assert_eq!(span_text.data(), b",");
}

#[test]
fn utf16_without_mark_rejected() {
    let text = r#"{"format_version": "1.2", "planned_values": {"root_module": {}}}"#;
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            text.encode_utf16()
                .flat_map(u16::to_le_bytes)
                .collect::<Vec<u8>>(),
            "UTF-16LE text without a byte order mark",
        ),
        (
            text.encode_utf16().flat_map(u16::to_be_bytes).collect(),
            "UTF-16BE text without a byte order mark",
        ),
        (
            // A high surrogate followed by `}` instead of a low surrogate.
            vec![0xFF, 0xFE, b'{', 0, 0x00, 0xD8, b'}', 0],
            "UTF-16LE text with an unpaired surrogate 0xD800 at byte 4",
        ),
    ];
    for (bytes, expected) in cases {
        let path = dir.path().join("plan.json");
        std::fs::write(&path, bytes).unwrap();

        let error = topology_from_plan(&path).unwrap_err();

        assert!(matches!(error, Error::Encoding(_)), "{error:?}");
        let message = error.to_string();
        assert!(
            message.contains(&format!("`{}` is {expected}", path.display())),
            "{message}"
        );
        let help = miette::Diagnostic::help(&error).unwrap().to_string();
        assert!(help.contains("as UTF-8"), "{help}");
    }
}

#[test]
fn not_a_plan_rejected() {
    let cases = [
        // `terraform show -json` without a plan file, on an empty and on an applied workspace
        // (Terraform 1.11.4).
        (r#"{"format_version":"1.0"}"#, "no `planned_values`"),
        (
            r#"{"format_version":"1.0","terraform_version":"1.11.4","values":{"root_module":{}}}"#,
            "no `planned_values`",
        ),
        (r#"{"planned_values": {}}"#, "format_version"),
        ("[]", "not a JSON object"),
        (
            r#"{"format_version": "1.2", "planned_values": []}"#,
            "`planned_values` is not a JSON object",
        ),
        (
            r#"{"format_version": "1.2", "planned_values": {}}"#,
            "`planned_values` has no `root_module`",
        ),
        (
            r#"{"format_version": "1.2", "planned_values": {"root_module": null}}"#,
            "`planned_values.root_module` is not a JSON object",
        ),
        (
            r#"{"format_version": "1.2", "planned_values": {"root_module": {"resources": {}}}}"#,
            "`planned_values.root_module.resources` is not an array",
        ),
        (
            r#"{"format_version": "1.2", "planned_values": {"root_module": {"child_modules": {}}}}"#,
            "`planned_values.root_module.child_modules` is not an array",
        ),
        (
            r#"{"format_version": "1.2", "planned_values": {"root_module": {"child_modules": [
                {"address": "module.a", "resources": []},
                {"address": "module.b", "resources": "none"}]}}}"#,
            "`planned_values.root_module.child_modules[1].resources` is not an array",
        ),
    ];
    for (text, reason) in cases {
        let error = from_str("state.json", text).unwrap_err();
        assert!(matches!(error, Error::NotAPlan { .. }), "{text}: {error:?}");
        assert!(error.to_string().contains(reason), "{text}: {error}");
    }
}

/// Applying a plan that creates none of the resources subnetlock reads leaves no site, as an
/// ARM template with an empty `resources` does, so the topology is empty and has no finding.
#[test]
fn plans_without_sites_are_empty() {
    let fixtures = [
        "empty_configuration.json",
        "terraform_data_create.json",
        "terraform_data_destroy.json",
    ];
    for name in fixtures {
        let topology =
            topology_from_plan(&fixture(name)).unwrap_or_else(|error| panic!("{name}: {error:?}"));

        assert!(topology.sites.is_empty(), "{name}: {:?}", topology.sites);
        assert!(topology.plans.is_empty(), "{name}: {:?}", topology.plans);
        assert!(topology.vnets.is_empty(), "{name}: {:?}", topology.vnets);
        assert!(
            topology.private_endpoints.is_empty(),
            "{name}: {:?}",
            topology.private_endpoints
        );
        assert!(
            topology.findings.is_empty(),
            "{name}: {:?}",
            topology.findings
        );
    }
}

#[test]
fn empty_child_modules_are_empty() {
    let text = r#"{"format_version": "1.2", "planned_values": {"root_module": {"resources": [],
        "child_modules": [{"address": "module.web", "resources": []}]}}}"#;
    let topology = from_str("plan.json", text).unwrap();

    assert!(topology.sites.is_empty(), "{:?}", topology.sites);
    assert!(topology.findings.is_empty(), "{:?}", topology.findings);
}

/// Reads a configuration of the Terraform corpus in `shared/corpus` beside the workspace root,
/// found by walking up.
fn corpus_configuration(folder: &str) -> Option<String> {
    let relative = Path::new("terraform").join(folder).join("step_0.tf");
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|dir| dir.join("shared").join("corpus").join(&relative))
        .find(|path| path.is_file())?;
    std::fs::read_to_string(path).ok()
}

/// Each fixture carries the literal values of the configuration it was written from.
#[test]
fn fixtures_match_corpus_configurations() {
    let cases = [
        (
            "ip_restriction_default_action.json",
            "acctest-linux-web-app-ip-restriction-default-action",
            &[
                "acctestWA-240311031305920692",
                "acctestASP-240311031305920692",
                "acctestRG-240311031305920692",
                "10.10.10.10/32",
                "test-restriction",
                "55ce4ed1-4b06-4bf1-b40e-4638452104da",
                "2002::1234:abcd:ffff:c0a8:101/64",
                "example.com",
            ][..],
        ),
        (
            "vnet_integration.json",
            "acctest-linux-web-app-vnet-integration",
            &[
                "acctestWA-230421021641585581",
                "vnet-230421021641585581",
                "10.0.0.0/16",
                "10.0.1.0/24",
                "10.0.2.0/24",
                "Microsoft.Web/serverFarms",
            ][..],
        ),
    ];
    for (fixture_name, folder, literals) in cases {
        let Some(configuration) = corpus_configuration(folder) else {
            println!(
                "skipped: {folder}/step_0.tf not found in a shared/corpus folder above the crate"
            );
            return;
        };
        let plan = std::fs::read_to_string(fixture(fixture_name)).unwrap();
        for literal in literals {
            assert!(
                configuration.contains(literal),
                "{folder}: `{literal}` not in step_0.tf"
            );
            assert!(
                plan.contains(literal),
                "{fixture_name}: `{literal}` missing"
            );
        }
    }
}

#[test]
fn truncated_plans_no_panic() {
    let text = std::fs::read_to_string(fixture("vnet_integration.json")).unwrap();
    for end in (0..text.len()).step_by(97) {
        let _ = from_str("cut.json", &text[..end]);
    }
}
