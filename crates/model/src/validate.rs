//! Deployment-time checks on regional VNet integration and subnet rules.
//!
//! Sources: "Integrate your app with an Azure virtual network"
//! (<https://learn.microsoft.com/azure/app-service/overview-vnet-integration>) for plan tiers,
//! subnet size, delegation, region and the per-plan limit, and the GitHub reports quoted with
//! each error text.

use std::collections::{BTreeMap, BTreeSet};

use subnetlock_access::{Outcome, SourceCondition, SubnetId};

use crate::findings::{Finding, FindingCode, Severity};
use crate::topology::{PlanFamily, Site, Topology};

/// Smallest integration subnet Azure accepts: an IPv4 /28.
const MIN_INTEGRATION_PREFIX_LENGTH: u8 = 28;

/// Adds the findings Azure's deployment-time validation would raise to `topology.findings`.
///
/// Every input format runs it once on the topology it built.
pub fn validate(topology: &mut Topology) {
    let mut findings = Vec::new();
    for site in &topology.sites {
        check_integration(topology, site, &mut findings);
        check_subnet_rules(topology, site, &mut findings);
        check_unsupported_subnet_rules(topology, site, &mut findings);
        check_private_endpoint_plan(topology, site, &mut findings);
    }
    check_plan_limits(topology, &mut findings);
    topology.findings.extend(findings);
}

fn check_integration(topology: &Topology, site: &Site, findings: &mut Vec<Finding>) {
    let Some(integration) = &site.integration else {
        return;
    };
    let at = |finding: Finding| finding.at(&site.id, integration.declared_at.clone());
    let plan = site.plan_id.as_deref().and_then(|id| topology.plan(id));

    if let Some(plan) = plan {
        match plan.family {
            PlanFamily::Consumption => findings.push(at(Finding::new(
                FindingCode::SL004,
                Severity::Error,
                format!(
                    "site `{}` uses regional VNet integration on Consumption plan `{}`, which does not support it; its outbound traffic leaves from shared addresses",
                    site.name, plan.name
                ),
            )
            .outcome(Outcome::ToolingRejects)
            .help("move the app to an Elastic Premium, Flex Consumption or Basic-or-higher plan (the Azure CLI says `Virtual network integration is not allowed for consumption plans`)"))),
            PlanFamily::Free | PlanFamily::Shared | PlanFamily::Isolated => {
                findings.push(at(Finding::new(
                    FindingCode::SL004,
                    Severity::Error,
                    format!(
                        "site `{}` uses regional VNet integration on plan `{}` ({:?}), which does not support it",
                        site.name, plan.name, plan.family
                    ),
                )
                .outcome(Outcome::DeployFails)
                .help("use a Basic, Standard, Premium v2/v3, Elastic Premium or Flex Consumption plan")))
            }
            _ => {}
        }
    }

    let Some((vnet, subnet)) = topology.subnet(&integration.subnet_id) else {
        findings.push(at(Finding::new(
            FindingCode::SL005,
            Severity::Info,
            format!(
                "integration subnet `{}` of site `{}` is not declared in this template, so its service endpoints and size are not checked",
                integration.subnet_id, site.name
            ),
        )
        .help("include the virtual network in the template, or check the subnet by hand")));
        return;
    };

    match subnet.ipv4_prefix_length() {
        Some(length) if length > MIN_INTEGRATION_PREFIX_LENGTH => findings.push(at(Finding::new(
            FindingCode::SL005,
            Severity::Error,
            format!(
                "integration subnet `{}` of site `{}` is a /{length}; regional VNet integration needs an IPv4 /28 or larger",
                subnet.name, site.name
            ),
        )
        .outcome(Outcome::DeployFails)
        .help("give the subnet a /28 or larger prefix (/26 is recommended)"))),
        None if !subnet.address_prefixes.is_empty() => findings.push(at(Finding::new(
            FindingCode::SL005,
            Severity::Error,
            format!(
                "integration subnet `{}` of site `{}` has no IPv4 prefix; regional VNet integration is IPv4 only",
                subnet.name, site.name
            ),
        )
        .outcome(Outcome::DeployFails)
        .help("give the subnet an IPv4 prefix of /28 or larger"))),
        _ => {}
    }
    if vnet
        .address_prefixes
        .iter()
        .any(|prefix| prefix.contains(':'))
    {
        findings.push(at(Finding::new(
            FindingCode::SL005,
            Severity::Error,
            format!(
                "virtual network `{}` has an IPv6 address space, which regional VNet integration does not support",
                vnet.name
            ),
        )
        .outcome(Outcome::DeployFails)
        .help("integrate with a virtual network that has only IPv4 address space")));
    }

    // Regional VNet integration needs an unused subnet: the platform cannot delegate a subnet
    // that already contains a private endpoint's NIC
    // (https://github.com/MicrosoftDocs/azure-docs/issues/88108).
    if let Some(endpoint) = topology
        .private_endpoints
        .iter()
        .find(|endpoint| endpoint.subnet_id.as_ref() == Some(&integration.subnet_id))
    {
        findings.push(at(Finding::new(
            FindingCode::SL005,
            Severity::Error,
            format!(
                "integration subnet `{}` of site `{}` also holds private endpoint `{}`; Azure answers `Delegations of subnet cannot be changed from [] to [Microsoft.Web/serverFarms] because it is being used by the resource ...`",
                subnet.name, site.name, endpoint.name
            ),
        )
        .outcome(Outcome::DeployFails)
        .help("put private endpoints in their own subnet and keep the integration subnet empty")));
    }

    let is_flex = plan.is_some_and(|plan| plan.family == PlanFamily::FlexConsumption);
    let expected = if is_flex {
        "Microsoft.App/environments"
    } else {
        "Microsoft.Web/serverFarms"
    };
    let other_delegation = subnet
        .delegations
        .iter()
        .find(|service| !service.eq_ignore_ascii_case(expected));
    if let Some(other) = other_delegation {
        findings.push(at(Finding::new(
            FindingCode::SL006,
            Severity::Error,
            format!(
                "integration subnet `{}` of site `{}` is delegated to `{other}`; regional VNet integration needs a subnet delegated to `{expected}` or not delegated at all",
                subnet.name, site.name
            ),
        )
        .outcome(Outcome::DeployFails)
        .help(format!("use a dedicated subnet delegated to `{expected}`"))));
    }

    if let (Some(site_location), Some(vnet_location)) = (&site.location, &vnet.location) {
        if normalize_region(site_location) != normalize_region(vnet_location) {
            findings.push(at(Finding::new(
                FindingCode::SL009,
                Severity::Error,
                format!(
                    "site `{}` in `{site_location}` integrates with virtual network `{}` in `{vnet_location}`; the app and the virtual network must be in the same region",
                    site.name, vnet.name
                ),
            )
            .outcome(Outcome::DeployFails)
            .help("deploy the virtual network in the app's region, or peer a VNet in that region")));
        }
    }
}

/// Subnet rules whose subnet is in the template but lacks the `Microsoft.Web` service
/// endpoint: ARM accepts them, and they never match, because traffic from that subnet then
/// arrives with a public address (portal and CLI add the endpoint themselves; a template does
/// not). Source: <https://learn.microsoft.com/azure/app-service/app-service-ip-restrictions>.
fn check_subnet_rules(topology: &Topology, site: &Site, findings: &mut Vec<Finding>) {
    let lists = [("main", &site.access.main), ("scm", &site.access.scm)];
    for (list_name, list) in lists {
        for rule in &list.rules {
            let SourceCondition::Subnet(subnet_id) = &rule.source else {
                continue;
            };
            let Some((_, subnet)) = topology.subnet(subnet_id) else {
                continue;
            };
            if subnet.has_web_service_endpoint() {
                continue;
            }
            findings.push(
                Finding::new(
                    FindingCode::SL003,
                    Severity::Error,
                    format!(
                        "rule {} of the {list_name} site of `{}` allows subnet `{}`, which has no `Microsoft.Web` service endpoint, so the rule never matches",
                        rule.index, site.name, subnet.name
                    ),
                )
                .outcome(Outcome::Silent)
                .help(format!(
                    "add `{{\"service\": \"Microsoft.Web\"}}` to `serviceEndpoints` of subnet `{}`",
                    subnet.name
                ))
                .at(&site.id, subnet.declared_at.clone()),
            );
        }
    }
}

/// Subnet rules are not supported on apps with a private endpoint
/// (<https://learn.microsoft.com/azure/app-service/overview-access-restrictions>) nor on apps
/// in an App Service Environment, which see VNet traffic by its private address
/// (<https://learn.microsoft.com/azure/app-service/app-service-ip-restrictions>). Whether Azure
/// rejects such a rule is not documented; reports show it simply never admits the traffic
/// (<https://github.com/MicrosoftDocs/azure-docs/issues/99623>).
fn check_unsupported_subnet_rules(topology: &Topology, site: &Site, findings: &mut Vec<Finding>) {
    let why = if site.access.has_private_endpoint {
        "has a private endpoint"
    } else if topology.hosting_environment_of(site).is_some() {
        "runs in an App Service Environment"
    } else {
        return;
    };
    let lists = [("main", &site.access.main), ("scm", &site.access.scm)];
    for (list_name, list) in lists {
        for rule in &list.rules {
            if !matches!(
                rule.source,
                SourceCondition::Subnet(_) | SourceCondition::AnyVnets
            ) {
                continue;
            }
            findings.push(
                Finding::new(
                    FindingCode::SL016,
                    Severity::Warning,
                    format!(
                        "rule {} of the {list_name} site of `{}` is a service-endpoint rule, which Azure does not support on a site that {why}; it never matches",
                        rule.index, site.name
                    ),
                )
                .outcome(Outcome::Silent)
                .help(if site.access.has_private_endpoint {
                    "reach the site through its private endpoint, and filter that traffic with a network security group on the endpoint's subnet"
                } else {
                    "write an IP rule for the caller's private address range instead"
                })
                .at(&site.id, site.declared_at.clone()),
            );
        }
    }
}

/// Inbound private endpoints need a Basic, Standard, Premium v2/v3, Isolated v2, Elastic
/// Premium or Flex Consumption plan; classic Consumption, Free and Shared have none.
/// Source: <https://learn.microsoft.com/azure/app-service/overview-private-endpoint> and
/// <https://learn.microsoft.com/azure/azure-functions/functions-networking-options>.
fn check_private_endpoint_plan(topology: &Topology, site: &Site, findings: &mut Vec<Finding>) {
    if !site.access.has_private_endpoint {
        return;
    }
    let Some(plan) = site.plan_id.as_deref().and_then(|id| topology.plan(id)) else {
        return;
    };
    if !matches!(
        plan.family,
        PlanFamily::Consumption | PlanFamily::Free | PlanFamily::Shared
    ) {
        return;
    }
    // NOTE: the error text Azure returns here is not documented.
    findings.push(
        Finding::new(
            FindingCode::SL017,
            Severity::Error,
            format!(
                "site `{}` has a private endpoint, but its plan `{}` ({:?}) does not support inbound private endpoints",
                site.name, plan.name, plan.family
            ),
        )
        .outcome(Outcome::DeployFails)
        .help("move the app to a Basic-or-higher, Elastic Premium or Flex Consumption plan")
        .at(&site.id, site.declared_at.clone()),
    );
}

/// One plan integrates with at most one subnet on Linux and two on Windows, and one subnet
/// serves one plan (without multi-plan subnet join).
fn check_plan_limits(topology: &Topology, findings: &mut Vec<Finding>) {
    let mut subnets_by_plan: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut plans_by_subnet: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for site in &topology.sites {
        let (Some(plan_id), Some(integration)) = (&site.plan_id, &site.integration) else {
            continue;
        };
        let subnet_key = normalize_id(&integration.subnet_id);
        subnets_by_plan
            .entry(plan_id.to_ascii_lowercase())
            .or_default()
            .insert(subnet_key.clone());
        plans_by_subnet
            .entry(subnet_key)
            .or_default()
            .insert(plan_id.to_ascii_lowercase());
    }

    for (plan_id, subnets) in &subnets_by_plan {
        let Some(plan) = topology.plan(plan_id) else {
            continue;
        };
        let limit = if plan.is_linux { 1 } else { 2 };
        if subnets.len() > limit {
            findings.push(
                Finding::new(
                    FindingCode::SL007,
                    Severity::Error,
                    format!(
                        "apps on plan `{}` integrate with {} subnets; Azure answers `Adding this VNET would exceed the App Service Plan VNET limit of {limit}.`",
                        plan.name,
                        subnets.len()
                    ),
                )
                .outcome(Outcome::DeployFails)
                .help("integrate every app of the plan with the same subnet")
                .at(&plan.id, plan.declared_at.clone()),
            );
        }
    }

    // NOTE: multi-plan subnet join lets several plans of one subscription share a subnet of
    // /26 or larger; templates do not show whether it is in use, so sharing is reported.
    for (subnet, plans) in &plans_by_subnet {
        if plans.len() > 1 {
            let names: Vec<&str> = plans
                .iter()
                .filter_map(|id| topology.plan(id).map(|plan| plan.name.as_str()))
                .collect();
            findings.push(Finding::new(
                FindingCode::SL008,
                Severity::Warning,
                format!(
                    "subnet `{subnet}` is used for regional VNet integration by plans {}; without multi-plan subnet join Azure answers `Subnet ... is already occupied by service ...`",
                    names.join(", ")
                ),
            )
            .outcome(Outcome::DeployFails)
            .help("give each plan its own integration subnet, or use multi-plan subnet join with a /26 or larger subnet"));
        }
    }
}

fn normalize_region(region: &str) -> String {
    region
        .chars()
        .filter(|c| !c.is_whitespace())
        .flat_map(char::to_lowercase)
        .collect()
}

fn normalize_id(id: &SubnetId) -> String {
    id.as_str().to_ascii_lowercase()
}

/// Adds the findings of deploying `next` over `previous`, the deployment already in place.
///
/// A plan whose apps use regional VNet integration cannot move to a SKU without it: the plan is
/// updated while its apps are still integrated, and Azure answers `The new SKU does not support
/// Regional VNET integration which some apps are still using. Please disconnect apps from
/// Regional VNET integration and try again` (<https://github.com/Azure/bicep/issues/6725>).
pub fn validate_redeploy(previous: &Topology, next: &mut Topology) {
    let mut findings = Vec::new();
    for plan in &next.plans {
        if plan.family.supports_vnet_integration() {
            continue;
        }
        let Some(before) = previous.plan(&plan.id) else {
            continue;
        };
        let integrated: Vec<&str> = previous
            .sites
            .iter()
            .filter(|site| {
                site.integration.is_some()
                    && site
                        .plan_id
                        .as_deref()
                        .is_some_and(|id| id.eq_ignore_ascii_case(&plan.id))
            })
            .map(|site| site.name.as_str())
            .collect();
        if integrated.is_empty() || !before.family.supports_vnet_integration() {
            continue;
        }
        findings.push(
            Finding::new(
                FindingCode::SL021,
                Severity::Error,
                format!(
                    "plan `{}` moves from {} to {}, which has no regional VNet integration, while apps {} still use it; Azure answers `The new SKU does not support Regional VNET integration which some apps are still using.`",
                    plan.name,
                    before.sku_name.as_deref().unwrap_or("its SKU"),
                    plan.sku_name.as_deref().unwrap_or("a new SKU"),
                    integrated.join(", ")
                ),
            )
            .outcome(Outcome::DeployFails)
            .help("disconnect the apps from regional VNet integration first, or keep a SKU that supports it")
            .at(&plan.id, plan.declared_at.clone()),
        );
    }
    next.findings.extend(findings);
}

/// The App Service scale unit (stamp) that a deployment's plans land on. No template states
/// it, so the caller chooses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ScaleUnit {
    /// A scale unit that offers Premium v2 plans, where Basic and Standard plans support
    /// regional VNet integration.
    #[default]
    Newer,
    /// An older scale unit without Premium v2, where Basic and Standard plans have no regional
    /// VNet integration.
    Older,
}

/// Adds the findings that depend on the scale unit the plans land on.
///
/// Regional VNet integration on Basic and Standard plans is "available only from newer Azure
/// App Service scale units that support PremiumV2 App Service plans", in the words of the App
/// Service VNet integration article of 2020. On an older one Azure fails the deployment with
/// `Regional VNET Integration is unsupported in this scale unit.`
/// (<https://github.com/MicrosoftDocs/azure-docs/issues/56945> quotes both). With
/// [`ScaleUnit::Newer`] each such integration gets an informational finding that names the
/// assumption; with [`ScaleUnit::Older`] it is the deployment failure.
pub fn validate_scale_unit(topology: &mut Topology, scale_unit: ScaleUnit) {
    topology.scale_unit = Some(scale_unit);
    let mut findings = Vec::new();
    for site in &topology.sites {
        let Some(integration) = &site.integration else {
            continue;
        };
        let Some(plan) = site.plan_id.as_deref().and_then(|id| topology.plan(id)) else {
            continue;
        };
        if !matches!(plan.family, PlanFamily::Basic | PlanFamily::Standard) {
            continue;
        }
        let finding = match scale_unit {
            ScaleUnit::Newer => Finding::new(
                FindingCode::SL022,
                Severity::Info,
                format!(
                    "site `{}` uses regional VNet integration on {:?} plan `{}`, which works only on a newer scale unit; no template states the scale unit, so subnetlock assumes a newer one",
                    site.name, plan.family, plan.name
                ),
            )
            .help("pass `--scale-unit older` to see the deployment fail as it does on an older scale unit; Premium v2 and higher plans do not depend on it"),
            ScaleUnit::Older => Finding::new(
                FindingCode::SL022,
                Severity::Error,
                format!(
                    "site `{}` uses regional VNet integration on {:?} plan `{}`, and this older scale unit does not support it for Basic and Standard plans; Azure answers `Regional VNET Integration is unsupported in this scale unit.`",
                    site.name, plan.family, plan.name
                ),
            )
            .outcome(Outcome::DeployFails)
            .help("create the plan on a newer scale unit, one that offers Premium v2 plans; for an existing app, `swiftSupported` in GET `.../networkConfig/virtualNetwork` tells whether its scale unit supports regional VNet integration"),
        };
        findings.push(finding.at(&site.id, integration.declared_at.clone()));
    }
    topology.findings.extend(findings);
}

#[cfg(test)]
#[allow(clippy::expect_used)]
mod tests {
    use crate::{build_topology, FindingCode, KeyMode, SimulatedProvider, Topology};

    /// A template with plan `plan` of SKU `sku` and site `app` with `site_properties`, plus
    /// `extra` resources.
    fn topology(
        sku: &str,
        site_properties: serde_json::Value,
        extra: &[serde_json::Value],
    ) -> Topology {
        let mut properties = site_properties;
        properties["serverFarmId"] = "[resourceId('Microsoft.Web/serverfarms', 'plan')]".into();
        let mut resources = vec![
            serde_json::json!({ "type": "Microsoft.Web/serverfarms", "apiVersion": "2022-09-01",
                                "name": "plan", "sku": { "name": sku } }),
            serde_json::json!({ "type": "Microsoft.Web/sites", "apiVersion": "2022-09-01",
                                "name": "app", "properties": properties }),
        ];
        resources.extend(extra.iter().cloned());
        let template = serde_json::json!({
            "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
            "contentVersion": "1.0.0.0",
            "resources": resources
        });
        let provider = SimulatedProvider::new(KeyMode::Placeholder);
        let deployment = subnetlock_arm::evaluate_str(
            "validate.json",
            &template.to_string(),
            &subnetlock_arm::EvalOptions::default(),
            &provider,
        )
        .expect("template evaluates");
        build_topology(&deployment)
    }

    fn has(topology: &Topology, code: FindingCode) -> bool {
        topology.findings.iter().any(|finding| finding.code == code)
    }

    #[test]
    fn public_network_access_copies() {
        let cases = [
            (
                serde_json::json!({ "siteConfig": { "publicNetworkAccess": "Disabled" } }),
                true,
            ),
            (
                serde_json::json!({ "publicNetworkAccess": "Enabled",
                                    "siteConfig": { "publicNetworkAccess": "Disabled" } }),
                true,
            ),
            (
                serde_json::json!({ "publicNetworkAccess": "Disabled",
                                    "siteConfig": { "publicNetworkAccess": "disabled" } }),
                false,
            ),
            (
                serde_json::json!({ "publicNetworkAccess": "Disabled" }),
                false,
            ),
        ];
        for (properties, expected) in cases {
            let topology = topology("S1", properties.clone(), &[]);
            assert_eq!(has(&topology, FindingCode::SL015), expected, "{properties}");
        }
    }

    /// A private endpoint (group id `sites`) that targets site `app`.
    fn site_private_endpoint() -> serde_json::Value {
        serde_json::json!({
            "type": "Microsoft.Network/privateEndpoints", "apiVersion": "2023-09-01", "name": "pe",
            "properties": { "privateLinkServiceConnections": [{ "name": "sites", "properties": {
                "groupIds": ["sites"], "privateLinkServiceId": "[resourceId('Microsoft.Web/sites', 'app')]" } }] }
        })
    }

    #[test]
    fn private_endpoint_plan_support() {
        let endpoint = site_private_endpoint();
        for (sku, expected) in [("Y1", true), ("F1", true), ("S1", false), ("EP1", false)] {
            let topology = topology(sku, serde_json::json!({}), std::slice::from_ref(&endpoint));
            assert_eq!(has(&topology, FindingCode::SL017), expected, "{sku}");
        }
    }

    #[test]
    fn subnet_rule_with_private_endpoint() {
        let endpoint = site_private_endpoint();
        let rules = serde_json::json!({ "siteConfig": { "ipSecurityRestrictions": [
            { "ipAddress": "AnyVnets", "action": "Allow", "priority": 100 } ] } });
        let with_endpoint = topology("S1", rules.clone(), std::slice::from_ref(&endpoint));
        assert!(has(&with_endpoint, FindingCode::SL016));
        let without_endpoint = topology("S1", rules, &[]);
        assert!(!has(&without_endpoint, FindingCode::SL016));
    }

    fn integrated(sku: &str) -> Topology {
        let subnet = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/vnet/subnets/default";
        topology(
            sku,
            serde_json::json!({ "virtualNetworkSubnetId": subnet }),
            &[],
        )
    }

    /// Returns the SL022 finding for an integrated site on a plan of `sku`.
    fn scale_unit_finding(sku: &str, scale_unit: super::ScaleUnit) -> crate::Finding {
        let mut topology = integrated(sku);
        super::validate_scale_unit(&mut topology, scale_unit);
        topology
            .findings
            .into_iter()
            .find(|finding| finding.code == FindingCode::SL022)
            .expect("SL022")
    }

    #[test]
    fn scale_unit_newer_is_info() {
        for sku in ["B1", "S1"] {
            let finding = scale_unit_finding(sku, super::ScaleUnit::Newer);
            assert_eq!(finding.severity, crate::Severity::Info, "{sku}");
            assert!(!finding.blocks_local_deployment(), "{sku}");
        }
    }

    #[test]
    fn scale_unit_older_fails_basic_standard() {
        for sku in ["B1", "S1"] {
            let finding = scale_unit_finding(sku, super::ScaleUnit::Older);
            assert_eq!(finding.severity, crate::Severity::Error, "{sku}");
            assert!(finding.blocks_local_deployment(), "{sku}");
            assert!(
                finding.message.contains("unsupported in this scale unit"),
                "{}",
                finding.message
            );
        }
    }

    #[test]
    fn scale_unit_ignores_premium_and_unintegrated() {
        let mut premium = integrated("P1v3");
        super::validate_scale_unit(&mut premium, super::ScaleUnit::Older);
        assert!(!has(&premium, FindingCode::SL022));

        let mut unintegrated = topology("S1", serde_json::json!({}), &[]);
        super::validate_scale_unit(&mut unintegrated, super::ScaleUnit::Older);
        assert!(!has(&unintegrated, FindingCode::SL022));
    }

    fn rule_findings(rule: serde_json::Value) -> Vec<String> {
        let topology = topology(
            "S1",
            serde_json::json!({ "siteConfig": { "ipSecurityRestrictions": [rule] } }),
            &[],
        );
        topology
            .findings
            .iter()
            .filter(|finding| finding.code == FindingCode::SL011)
            .map(|finding| finding.message.clone())
            .collect()
    }

    #[test]
    fn rule_defaults_are_reported() {
        let both = rule_findings(serde_json::json!({ "ipAddress": "192.0.2.1/32" }));
        assert_eq!(both.len(), 1, "{both:?}");
        assert!(
            both[0].contains("no `action`, read as Allow"),
            "{}",
            both[0]
        );
        assert!(both[0].contains("no `priority`, read as 0"), "{}", both[0]);

        let null_action = rule_findings(
            serde_json::json!({ "ipAddress": "192.0.2.1/32", "action": null, "priority": 100 }),
        );
        assert_eq!(null_action.len(), 1, "{null_action:?}");
        assert!(!null_action[0].contains("priority"), "{}", null_action[0]);

        let explicit = rule_findings(
            serde_json::json!({ "ipAddress": "192.0.2.1/32", "action": "Deny", "priority": 100 }),
        );
        assert!(explicit.is_empty(), "{explicit:?}");
    }

    #[test]
    fn replaced_rule_list_forgets_defaults() {
        let config = serde_json::json!({
            "type": "Microsoft.Web/sites/config", "apiVersion": "2022-09-01", "name": "app/web",
            "properties": { "ipSecurityRestrictions": [
                { "ipAddress": "203.0.113.0/24", "action": "Allow", "priority": 100 }
            ] }
        });
        let replaced = topology(
            "S1",
            serde_json::json!({ "siteConfig": { "ipSecurityRestrictions": [
                { "ipAddress": "203.0.113.0/24" }
            ] } }),
            &[config],
        );
        let site = replaced.site("app").expect("site");
        assert!(
            site.rules_with_defaults.is_empty(),
            "{:?}",
            site.rules_with_defaults
        );
        assert_eq!(site.access.main.rules.len(), 1);
        assert_eq!(site.access.main.rules[0].priority, 100);

        let unreplaced = topology(
            "S1",
            serde_json::json!({ "siteConfig": { "ipSecurityRestrictions": [
                { "ipAddress": "203.0.113.0/24" }
            ] } }),
            &[],
        );
        let site = unreplaced.site("app").expect("site");
        assert_eq!(
            site.rules_with_defaults,
            vec![(subnetlock_access::SiteKind::Main, 0)]
        );

        // The replaced list's warning goes with it.
        assert!(!has(&replaced, FindingCode::SL011));
        assert!(has(&unreplaced, FindingCode::SL011));
    }

    #[test]
    fn allow_list_with_default_allow_is_reported() {
        let with_default = |rules: serde_json::Value, default: &str| {
            topology(
                "S1",
                serde_json::json!({ "siteConfig": {
                    "ipSecurityRestrictions": rules,
                    "ipSecurityRestrictionsDefaultAction": default
                } }),
                &[],
            )
        };
        let allow = serde_json::json!([
            { "ipAddress": "203.0.113.0/24", "action": "Allow", "priority": 100 }
        ]);
        let deny = serde_json::json!([
            { "ipAddress": "203.0.113.0/24", "action": "Deny", "priority": 100 }
        ]);

        assert!(has(
            &with_default(allow.clone(), "Allow"),
            FindingCode::SL019
        ));
        assert!(!has(&with_default(allow, "Deny"), FindingCode::SL019));
        // A deny list with default Allow denies what its rules name, so it is not reported.
        assert!(!has(&with_default(deny, "Allow"), FindingCode::SL019));

        // With app access off, the rules decide nothing.
        let closed = topology(
            "S1",
            serde_json::json!({ "publicNetworkAccess": "Disabled", "siteConfig": {
                "ipSecurityRestrictions": [
                    { "ipAddress": "203.0.113.0/24", "action": "Allow", "priority": 100 }
                ],
                "ipSecurityRestrictionsDefaultAction": "Allow"
            } }),
            &[],
        );
        assert!(!has(&closed, FindingCode::SL019));
    }

    #[test]
    fn scm_defaults_ignored_under_use_main() {
        let scm_list = |use_main: bool| {
            let config = serde_json::json!({
                "type": "Microsoft.Web/sites/config", "apiVersion": "2022-09-01",
                "name": "app/web",
                "properties": { "scmIpSecurityRestrictionsUseMain": use_main }
            });
            topology(
                "S1",
                serde_json::json!({ "siteConfig": { "scmIpSecurityRestrictions": [
                    { "ipAddress": "203.0.113.0/24" }
                ] } }),
                &[config],
            )
        };

        // A later `config/web` sets UseMain, so Azure ignores the scm list and its defaults.
        assert!(!has(&scm_list(true), FindingCode::SL011));
        assert!(has(&scm_list(false), FindingCode::SL011));
    }
}
