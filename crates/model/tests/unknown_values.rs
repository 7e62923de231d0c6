//! Site settings and rule lists known only at deployment time: how the topology records them.

// Tests fail loudly on broken fixtures.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use serde_json::{json, Value as Json};
use subnetlock_access::SiteKind;
use subnetlock_model::{
    build_topology, Finding, FindingCode, KeyMode, SimulatedProvider, Site, Topology,
};

/// An expression `check` cannot evaluate: a `reference()` to a resource outside the template.
const UNKNOWN: &str =
    "[reference(resourceId('Microsoft.Network/ipGroups', 'x'), '2023-09-01').flag]";

/// Builds the topology of a template with plan `plan`, site `app` with `site_properties`, and
/// `extra` resources deployed after it.
fn topology(site_properties: Json, extra: &[Json]) -> Topology {
    let mut properties = site_properties;
    properties["serverFarmId"] = "[resourceId('Microsoft.Web/serverfarms', 'plan')]".into();
    let mut resources = vec![
        json!({ "type": "Microsoft.Web/serverfarms", "apiVersion": "2022-09-01",
                "name": "plan", "sku": { "name": "S1" } }),
        json!({ "type": "Microsoft.Web/sites", "apiVersion": "2022-09-01",
                "name": "app", "properties": properties }),
    ];
    resources.extend(extra.iter().cloned());
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
    build_topology(&deployment)
}

fn site(topology: &Topology) -> &Site {
    topology.site("app").expect("site `app`")
}

/// Returns the JSON paths of the SL010 findings.
fn unknown_value_paths(topology: &Topology) -> Vec<String> {
    topology
        .findings
        .iter()
        .filter(|finding| finding.code == FindingCode::SL010)
        .map(|finding| {
            finding
                .location
                .as_ref()
                .map(|location| location.json_path.clone())
                .unwrap_or_default()
        })
        .collect()
}

/// Builds a `config/appsettings` resource of `app` with the given settings.
fn config_appsettings(settings: Json) -> Json {
    json!({ "type": "Microsoft.Web/sites/config", "apiVersion": "2022-09-01",
            "name": "app/appsettings", "dependsOn": ["[resourceId('Microsoft.Web/sites', 'app')]"],
            "properties": settings })
}

#[test]
fn unknown_route_all_settings_are_noted() {
    let route_all_setting =
        |value: &str| json!([{ "name": "WEBSITE_VNET_ROUTE_ALL", "value": value }]);
    // (site properties, resources after the site, noted setting, JSON path of the SL010 finding)
    let cases = [
        (
            json!({ "vnetRouteAllEnabled": UNKNOWN }),
            vec![],
            "properties.vnetRouteAllEnabled",
            "$.resources[1].properties.vnetRouteAllEnabled",
        ),
        (
            json!({ "siteConfig": { "vnetRouteAllEnabled": UNKNOWN } }),
            vec![],
            "properties.siteConfig.vnetRouteAllEnabled",
            "$.resources[1].properties.siteConfig.vnetRouteAllEnabled",
        ),
        (
            json!({ "outboundVnetRouting": { "allTraffic": UNKNOWN } }),
            vec![],
            "properties.outboundVnetRouting.allTraffic",
            "$.resources[1].properties.outboundVnetRouting.allTraffic",
        ),
        (
            json!({ "outboundVnetRouting": UNKNOWN }),
            vec![],
            "properties.outboundVnetRouting",
            "$.resources[1].properties.outboundVnetRouting",
        ),
        (
            json!({ "siteConfig": { "appSettings": route_all_setting(UNKNOWN) } }),
            vec![],
            "app setting WEBSITE_VNET_ROUTE_ALL",
            "$.resources[1].properties.siteConfig.appSettings[0].value",
        ),
        (
            json!({}),
            vec![config_appsettings(
                json!({ "WEBSITE_VNET_ROUTE_ALL": UNKNOWN }),
            )],
            "app setting WEBSITE_VNET_ROUTE_ALL",
            "$.resources[2].properties.WEBSITE_VNET_ROUTE_ALL",
        ),
    ];
    for (properties, extra, setting, path) in cases {
        let topology = topology(properties.clone(), &extra);
        let route_all = &site(&topology).route_all;
        assert!(!route_all.enabled, "{properties}");
        assert!(route_all.depends_on_unknown(), "{properties}");
        let noted: Vec<&str> = route_all
            .unknown_settings
            .iter()
            .map(|unknown| unknown.setting.as_str())
            .collect();
        assert_eq!(noted, [setting], "{properties}");
        assert_eq!(unknown_value_paths(&topology), [path], "{properties}");
        // Route-all changes outbound calls only, so no inbound verdict is marked.
        assert!(site(&topology).unknown_settings.is_empty(), "{properties}");
    }
}

#[test]
fn known_route_all_outweighs_unknown_one() {
    let topology = topology(
        json!({ "vnetRouteAllEnabled": true,
                "siteConfig": { "vnetRouteAllEnabled": UNKNOWN } }),
        &[],
    );
    let route_all = &site(&topology).route_all;
    assert!(route_all.enabled);
    assert!(!route_all.depends_on_unknown());
    assert_eq!(route_all.unknown_settings.len(), 1);
}

#[test]
fn replaced_app_settings_forget_route_all() {
    let in_site_config = |value: &str| json!({ "siteConfig": { "appSettings": [{ "name": "WEBSITE_VNET_ROUTE_ALL", "value": value }] } });
    let other_settings = config_appsettings(json!({ "OTHER": "1" }));

    let known = topology(in_site_config("1"), &[]);
    assert!(site(&known).route_all.enabled);
    let replaced = topology(in_site_config("1"), std::slice::from_ref(&other_settings));
    assert!(!site(&replaced).route_all.enabled);
    assert!(site(&replaced).route_all.set_by.is_empty());

    let unknown = topology(
        in_site_config(UNKNOWN),
        std::slice::from_ref(&other_settings),
    );
    assert!(!site(&unknown).route_all.depends_on_unknown());
}

#[test]
fn unknown_rule_list_is_told_from_unknown_rule() {
    let topology = topology(
        json!({ "siteConfig": {
            "ipSecurityRestrictions": UNKNOWN,
            "ipSecurityRestrictionsDefaultAction": "Allow",
            "scmIpSecurityRestrictions": [{ "ipAddress": UNKNOWN, "action": "Allow", "priority": 100 }]
        } }),
        &[],
    );
    let site = site(&topology);
    let main = site
        .unknown_list(SiteKind::Main)
        .expect("unknown main list");
    assert_eq!(main.index, None);
    assert!(
        main.describe().starts_with("main rule list: "),
        "{}",
        main.describe()
    );
    assert!(site.unknown_list(SiteKind::Scm).is_none());
    let rule = site
        .unknown_rules
        .iter()
        .find(|rule| rule.list == SiteKind::Scm)
        .expect("unknown scm rule");
    assert_eq!(rule.index, Some(0));
    assert!(
        rule.describe().starts_with("rule 0: "),
        "{}",
        rule.describe()
    );
}

#[test]
fn unknown_rule_list_is_not_allow_list() {
    // The placeholder of an unknown list reads as an Allow rule. The list may contain Deny
    // rules, so SL019 must not call it an allow-list.
    let topology = topology(
        json!({ "siteConfig": {
            "ipSecurityRestrictions": UNKNOWN,
            "ipSecurityRestrictionsDefaultAction": "Allow"
        } }),
        &[],
    );
    assert!(site(&topology).allow_lists_with_default_allow().is_empty());
    assert!(!topology
        .findings
        .iter()
        .any(|finding| finding.code == FindingCode::SL019));
}

#[test]
fn outbound_vnet_routing_flags_are_booleans() {
    // ARM's JSON reader takes the strings "true" and "false" for a boolean.
    let as_string = topology(
        json!({ "outboundVnetRouting": { "applicationTraffic": "true" } }),
        &[],
    );
    assert_eq!(
        site(&as_string).route_all.set_by,
        ["properties.outboundVnetRouting.applicationTraffic"]
    );

    let invalid = topology(
        json!({ "outboundVnetRouting": { "allTraffic": "yes" } }),
        &[],
    );
    assert!(!site(&invalid).route_all.enabled);
    assert!(invalid
        .findings
        .iter()
        .any(|finding| finding.code == FindingCode::SL020));
}

/// Returns the SL010 finding about nested deployment `linked`, linked by `template_link`.
fn linked_template_finding(template_link: Json) -> Finding {
    let nested = json!({
        "type": "Microsoft.Resources/deployments", "apiVersion": "2022-09-01",
        "name": "linked",
        "properties": { "mode": "Incremental", "templateLink": template_link }
    });
    let topology = topology(json!({}), &[nested]);
    topology
        .findings
        .into_iter()
        .find(|finding| finding.code == FindingCode::SL010)
        .expect("SL010 for the linked template")
}

/// Returns the message of the SL010 finding about a linked template.
fn linked_template_message(template_link: Json) -> String {
    linked_template_finding(template_link).message
}

#[test]
fn linked_template_message_names_the_link() {
    let plain = linked_template_message(json!({ "uri": "https://example.com/t.json" }));
    assert_eq!(
        plain,
        "nested deployment `linked` links its template by `uri` `https://example.com/t.json`; subnetlock does not fetch linked templates, so the resources it deploys are not analysed"
    );

    // The quickstart pattern: a base URI known only at deployment time and a SAS token from a
    // `securestring` parameter.
    let template = json!({
        "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
        "contentVersion": "1.0.0.0",
        "parameters": {
            "_artifactsLocation": { "type": "string",
                "defaultValue": "[deployment().properties.templateLink.uri]" },
            "_artifactsLocationSasToken": { "type": "securestring", "defaultValue": "" }
        },
        "resources": [{
            "type": "Microsoft.Resources/deployments", "apiVersion": "2022-09-01",
            "name": "linked",
            "properties": { "mode": "Incremental", "templateLink": {
                "uri": "[uri(parameters('_artifactsLocation'), concat('t.json', parameters('_artifactsLocationSasToken')))]"
            } }
        }]
    });
    let deployment = subnetlock_arm::evaluate_str(
        "linked.json",
        &template.to_string(),
        &subnetlock_arm::EvalOptions::default(),
        &SimulatedProvider::new(KeyMode::Placeholder),
    )
    .expect("template evaluates");
    let topology = build_topology(&deployment);
    let secret = &topology
        .findings
        .iter()
        .find(|finding| finding.code == FindingCode::SL010)
        .expect("SL010")
        .message;
    assert!(
        secret.starts_with("nested deployment `linked` links its template by `uri` (its value is built from a secure parameter or a secret, so it is not shown); "),
        "{secret}"
    );
}

/// Returns the message and the help of the SL010 finding for a template that links
/// `https://example.com/linked/t.json` with a SAS token, evaluated with `artifacts`.
fn unmapped_link_finding(artifacts: subnetlock_arm::Artifacts) -> (String, String) {
    let template = json!({
        "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
        "contentVersion": "1.0.0.0",
        "resources": [{
            "type": "Microsoft.Resources/deployments", "apiVersion": "2022-09-01",
            "name": "linked",
            "properties": { "mode": "Incremental", "templateLink": {
                "uri": "https://example.com/linked/t.json?sv=2022-11-02&sig=SECRET"
            } }
        }]
    });
    let options = subnetlock_arm::EvalOptions {
        scope: subnetlock_arm::Scope {
            artifacts,
            ..subnetlock_arm::Scope::default()
        },
        parameters: subnetlock_arm::Parameters::new(),
    };
    let deployment = subnetlock_arm::evaluate_str(
        "linked.json",
        &template.to_string(),
        &options,
        &SimulatedProvider::new(KeyMode::Placeholder),
    )
    .expect("template evaluates");
    let topology = build_topology(&deployment);
    let finding = topology
        .findings
        .iter()
        .find(|finding| finding.code == FindingCode::SL010)
        .expect("SL010");
    (finding.message.clone(), finding.help.clone().expect("help"))
}

#[test]
fn unmapped_link_help_lists_prefixes() {
    // Any existing folder will do, because the link is never read.
    let folder = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut artifacts = subnetlock_arm::Artifacts::default();
    artifacts
        .map("https://raw.example.com/org/repo/main", folder)
        .expect("mapping");
    artifacts.map_own_location(folder).expect("own location");

    let (message, help) = unmapped_link_finding(artifacts);
    assert!(
        message.contains("by `uri` `https://example.com/linked/t.json?…`"),
        "{message}"
    );
    assert!(
        help.starts_with(
            "none of the `--artifacts` prefixes covers the link `https://example.com/linked/t.json?…`: "
        ),
        "{help}"
    );
    assert!(
        help.contains(&format!(
            "`https://raw.example.com/org/repo/main/` (folder `{}`)",
            folder.display()
        )),
        "{help}"
    );
    assert!(
        help.contains(&format!(
            "`https://artifacts.subnetlock.invalid/` (folder `{}`, the template's own location)",
            folder.display()
        )),
        "{help}"
    );
    assert!(
        help.contains("`--artifacts https://example.com/linked/=DIR`"),
        "{help}"
    );
    assert!(!help.contains("pass a local copy"), "{help}");
    for text in [&message, &help] {
        assert!(!text.contains("SECRET"), "{text}");
    }
}

#[test]
fn unmapped_link_help_without_artifacts() {
    let (message, help) = unmapped_link_finding(subnetlock_arm::Artifacts::default());
    assert!(!message.contains("SECRET"), "{message}");
    assert!(
        help.starts_with(
            "to have it analysed, pass a local copy of the linked templates with `--artifacts DIR`"
        ),
        "{help}"
    );
}

/// The resource ID of a template spec version, as `templateLink.id` names it.
const SPEC_VERSION_ID: &str = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/specs/providers/Microsoft.Resources/templateSpecs/web-app/versions/1.0";

#[test]
fn template_spec_link_names_the_spec() {
    let finding = linked_template_finding(json!({ "id": SPEC_VERSION_ID }));
    assert_eq!(
        finding.message,
        format!(
            "nested deployment `linked` links its template by `id` `{SPEC_VERSION_ID}`, a template spec version; subnetlock does not read template specs, which are stored in Azure, so the resources it deploys are not analysed"
        )
    );

    let help = finding.help.expect("help");
    assert!(
        help.starts_with("subnetlock does not read template specs offline"),
        "{help}"
    );
    assert!(
        help.contains(&format!(
            "`az ts export --template-spec {SPEC_VERSION_ID} --output-folder DIR`"
        )),
        "{help}"
    );
    assert!(help.contains("`templateLink.relativePath`"), "{help}");
    // `az ts export` names the main template after the spec, with an upper-case extension.
    assert!(
        help.contains("which writes it as `DIR/web-app.JSON`. Then, in a copy of this template used only for the check, link `DIR/web-app.JSON` by"),
        "{help}"
    );
    // `--artifacts` alone cannot read a template spec, so it is not offered as the fix.
    assert!(!help.contains("pass a local copy"), "{help}");
    assert!(!help.contains("--artifacts DIR"), "{help}");
}

#[test]
fn template_spec_link_with_unknown_id() {
    // An ID known only at deployment time is named by its expression, and the example
    // command gets a placeholder in its place.
    let finding = linked_template_finding(json!({
        "id": "[resourceId(reference(resourceId('Microsoft.Network/ipGroups', 'x'), '2023-09-01').group, 'Microsoft.Resources/templateSpecs/versions', 'web-app', '1.0')]"
    }));
    assert!(
        finding.message.contains(", a template spec version; "),
        "{}",
        finding.message
    );

    let help = finding.help.expect("help");
    assert!(
        help.contains("the template spec version `[resourceId(reference("),
        "{help}"
    );
    assert!(
        help.contains("`az ts export --template-spec ID --output-folder DIR`, where ID is"),
        "{help}"
    );
    assert!(help.contains("link `DIR/<spec name>.JSON` by"), "{help}");
    assert!(!help.contains("--artifacts DIR"), "{help}");
}

#[test]
fn uri_link_help_suggests_artifacts() {
    let finding = linked_template_finding(json!({ "uri": "https://example.com/t.json" }));
    let help = finding.help.expect("help");
    assert_eq!(
        help,
        "to have it analysed, pass a local copy of the linked templates with `--artifacts DIR` (or `--artifacts URI=DIR`), point `templateLink.relativePath` at it, or inline the template"
    );
}
