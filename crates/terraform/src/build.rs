//! Turns the azurerm resources of a plan into a [`Topology`].
//!
//! Attribute names follow the azurerm provider documentation
//! (<https://registry.terraform.io/providers/hashicorp/azurerm/latest/docs>). Each resource
//! becomes the ARM resource the provider would PUT, so the rest of subnetlock works on the
//! same model as for an ARM template.

use serde_json::{Map, Value as Json};
use subnetlock_access::{PublicNetworkAccess, SiteKind, SubnetId};
use subnetlock_arm::Value;
use subnetlock_model::{
    AppSetting, IntegrationSource, Plan as ServicePlan, PlanFamily, PrivateDnsZone,
    PrivateEndpoint, Site, Subnet, Topology, VirtualNetwork, VnetIntegration,
};

use crate::plan::{Plan, PlanResource, Resolved, Step};
use crate::rules;

/// Returns the attribute of a slot resource that contains its parent app's id.
pub(crate) fn slot_parent_key(resource_type: &str) -> &'static str {
    if resource_type.contains("function_app") {
        "function_app_id"
    } else {
        "app_service_id"
    }
}

/// Builds the topology of every resource in `plan`; findings go into `topology.findings`.
pub(crate) fn build(plan: &Plan) -> Topology {
    let mut topology = Topology::default();
    let by_type = |types: &'static [&'static str]| {
        plan.resources
            .iter()
            .filter(move |resource| types.contains(&resource.resource_type.as_str()))
    };

    for resource in by_type(&["azurerm_virtual_network"]) {
        add_vnet(plan, resource, &mut topology);
    }
    for resource in by_type(&["azurerm_subnet"]) {
        add_subnet(plan, resource, &mut topology);
    }
    for resource in by_type(&["azurerm_service_plan", "azurerm_app_service_plan"]) {
        add_plan(plan, resource, &mut topology);
    }
    for resource in by_type(&[
        "azurerm_linux_web_app",
        "azurerm_windows_web_app",
        "azurerm_linux_function_app",
        "azurerm_windows_function_app",
        "azurerm_linux_web_app_slot",
        "azurerm_windows_web_app_slot",
        "azurerm_linux_function_app_slot",
        "azurerm_windows_function_app_slot",
    ]) {
        add_site(plan, resource, &mut topology);
    }
    for resource in by_type(&["azurerm_app_service_virtual_network_swift_connection"]) {
        add_swift_connection(plan, resource, &mut topology);
    }
    for resource in by_type(&["azurerm_private_dns_zone"]) {
        add_private_dns_zone(plan, resource, &mut topology);
    }
    for resource in by_type(&[
        "azurerm_private_dns_zone_virtual_network_link",
        "azurerm_private_dns_a_record",
    ]) {
        add_private_dns_child(plan, resource, &mut topology);
    }
    for resource in by_type(&["azurerm_private_endpoint"]) {
        add_private_endpoint(plan, resource, &mut topology);
    }
    topology
}

fn add_vnet(plan: &Plan, resource: &PlanResource, topology: &mut Topology) {
    let Some(id) = plan.id_of(resource) else {
        return;
    };
    let name = known(plan, resource, "name").unwrap_or_else(|| resource.label.clone());

    // Inline `subnet` blocks; `address_prefix` is the azurerm 3.x spelling, `address_prefixes`
    // the 4.x one.
    let mut subnets = Vec::new();
    for (index, block) in blocks(resource.values, "subnet").iter().enumerate() {
        let Some(subnet_name) = block.get("name").and_then(Json::as_str) else {
            continue;
        };
        let mut address_prefixes = strings(block.get("address_prefixes"));
        if let Some(prefix) = block.get("address_prefix").and_then(Json::as_str) {
            address_prefixes.insert(0, prefix.to_owned());
        }
        subnets.push(Subnet {
            id: SubnetId::new(format!("{id}/subnets/{subnet_name}")),
            name: subnet_name.to_owned(),
            address_prefixes,
            service_endpoints: strings(block.get("service_endpoints")),
            delegations: delegations(block),
            nat_gateway: None,
            route_table: None,
            network_security_group: block
                .get("security_group")
                .and_then(Json::as_str)
                .filter(|text| !text.is_empty())
                .map(str::to_owned),
            declared_at: plan.locate(resource, &format!("subnet[{index}]")),
        });
    }

    if let Some(existing) = vnet_mut(topology, &id) {
        existing.address_prefixes = strings(resource.values.get("address_space"));
        existing.location = location(resource);
        existing.subnets.extend(subnets);
        return;
    }
    topology.vnets.push(VirtualNetwork {
        id,
        name,
        location: location(resource),
        address_prefixes: strings(resource.values.get("address_space")),
        subnets,
        declared_at: plan.locate(resource, ""),
    });
}

fn add_subnet(plan: &Plan, resource: &PlanResource, topology: &mut Topology) {
    let Some(id) = plan.id_of(resource) else {
        tracing::debug!(address = %resource.address, "subnet without a resolvable virtual network name");
        return;
    };
    let id = SubnetId::new(id);
    let vnet_id = id.vnet_id().to_owned();
    let vnet_name = known(plan, resource, "virtual_network_name").unwrap_or_default();
    let name = known(plan, resource, "name").unwrap_or_else(|| resource.label.clone());
    let subnet = Subnet {
        id: id.clone(),
        name,
        address_prefixes: strings(resource.values.get("address_prefixes")),
        service_endpoints: strings(resource.values.get("service_endpoints")),
        delegations: delegations(resource.values),
        nat_gateway: None,
        route_table: None,
        network_security_group: None,
        declared_at: plan.locate(resource, ""),
    };

    if vnet_mut(topology, &vnet_id).is_none() {
        topology.vnets.push(VirtualNetwork {
            id: vnet_id.clone(),
            name: vnet_name,
            location: None,
            address_prefixes: Vec::new(),
            subnets: Vec::new(),
            declared_at: plan.locate(resource, ""),
        });
    }
    if let Some(vnet) = vnet_mut(topology, &vnet_id) {
        vnet.subnets.retain(|known| known.id != id);
        vnet.subnets.push(subnet);
    }
}

fn add_plan(plan: &Plan, resource: &PlanResource, topology: &mut Topology) {
    let Some(id) = plan.id_of(resource) else {
        return;
    };
    let values = resource.values;
    let text = |key: &str| values.get(key).and_then(Json::as_str).map(str::to_owned);

    let (sku_name, sku_tier, is_linux) = if resource.resource_type == "azurerm_service_plan" {
        let os_type = text("os_type").unwrap_or_default();
        (
            text("sku_name"),
            None,
            os_type.eq_ignore_ascii_case("Linux"),
        )
    } else {
        // Legacy `azurerm_app_service_plan`: `sku { tier, size }`, and `kind = "Linux"` or
        // `reserved = true` for Linux.
        let sku = blocks(values, "sku").first().copied();
        let sku_text = |key: &str| {
            sku.and_then(|sku| sku.get(key))
                .and_then(Json::as_str)
                .map(str::to_owned)
        };
        let kind = text("kind").unwrap_or_default();
        let reserved = values.get("reserved").and_then(Json::as_bool) == Some(true);
        (
            sku_text("size"),
            sku_text("tier"),
            reserved || kind.eq_ignore_ascii_case("linux"),
        )
    };

    topology.plans.push(ServicePlan {
        id,
        name: known(plan, resource, "name").unwrap_or_else(|| resource.label.clone()),
        location: location(resource),
        family: PlanFamily::from_sku(sku_name.as_deref(), sku_tier.as_deref()),
        sku_name,
        sku_tier,
        is_linux,
        hosting_environment: match plan.string(resource, &[Step::Key("app_service_environment_id")])
        {
            Resolved::Known(id) => Some(id),
            _ => None,
        },
        declared_at: plan.locate(resource, ""),
    });
}

fn add_site(plan: &Plan, resource: &PlanResource, topology: &mut Topology) {
    let Some(id) = plan.id_of(resource) else {
        tracing::debug!(address = %resource.address, "site without a resolvable id");
        return;
    };
    let resource_type = resource.resource_type.as_str();
    let own_name = known(plan, resource, "name").unwrap_or_else(|| resource.label.clone());
    let is_slot = resource_type.ends_with("_slot");

    // A slot is named `<app>/<slot>` and served at `<app>-<slot>.azurewebsites.net`, as ARM
    // names `Microsoft.Web/sites/slots`.
    let name = if is_slot {
        let parent = id
            .split("/slots/")
            .next()
            .and_then(|parent| parent.rsplit('/').next())
            .unwrap_or_default();
        format!("{parent}/{own_name}")
    } else {
        own_name
    };
    let kind = match (
        resource_type.contains("function_app"),
        resource_type.contains("linux"),
    ) {
        (true, true) => "functionapp,linux",
        (true, false) => "functionapp",
        (false, true) => "app,linux",
        (false, false) => "app",
    };
    // A slot without `service_plan_id` runs on its app's plan.
    let plan_id = match plan.string(resource, &[Step::Key("service_plan_id")]) {
        Resolved::Known(plan_id) => Some(plan_id),
        _ if is_slot => topology
            .sites
            .iter()
            .find(|site| {
                id.to_ascii_lowercase()
                    .starts_with(&format!("{}/", site.id.to_ascii_lowercase()))
            })
            .and_then(|parent| parent.plan_id.clone()),
        _ => None,
    };

    let mut site = Site::new(id, name, plan.locate(resource, ""));
    site.kind = Some(kind.to_owned());
    site.location = location(resource);
    site.plan_id = plan_id;

    if let Resolved::Known(subnet_id) =
        plan.string(resource, &[Step::Key("virtual_network_subnet_id")])
    {
        site.integration = Some(VnetIntegration {
            subnet_id: SubnetId::new(subnet_id),
            source: IntegrationSource::VirtualNetworkSubnetId,
            declared_at: plan.locate(resource, "virtual_network_subnet_id"),
        });
    }
    site.access.public_network_access =
        match flag(resource.values.get("public_network_access_enabled")) {
            Some(true) => PublicNetworkAccess::Enabled,
            Some(false) => PublicNetworkAccess::Disabled,
            None => PublicNetworkAccess::Unset,
        };

    site.https_only = flag(resource.values.get("https_only")) == Some(true);

    read_app_settings(resource, &mut site);
    read_site_config(plan, resource, &mut site, &mut topology.findings);
    topology.sites.push(site);
}

fn read_app_settings(resource: &PlanResource, site: &mut Site) {
    let Some(settings) = resource
        .values
        .get("app_settings")
        .and_then(Json::as_object)
    else {
        return;
    };
    site.app_settings = settings
        .iter()
        .map(|(name, value)| AppSetting {
            name: name.clone(),
            value: match value {
                Json::String(text) => Value::String(text.clone()),
                Json::Bool(flag) => Value::Bool(*flag),
                Json::Number(number) => Value::String(number.to_string()),
                _ => Value::Null,
            },
        })
        .collect();
    let route_all = site
        .app_setting("WEBSITE_VNET_ROUTE_ALL")
        .and_then(Value::as_str)
        .is_some_and(|text| text.trim() == "1" || text.eq_ignore_ascii_case("true"));
    if route_all {
        site.route_all.enabled = true;
        site.route_all
            .set_by
            .push("app setting WEBSITE_VNET_ROUTE_ALL".to_owned());
    }
}

/// Reads `site_config[0]`: routing, and the main and scm access-restriction lists.
fn read_site_config(
    plan: &Plan,
    resource: &PlanResource,
    site: &mut Site,
    findings: &mut Vec<subnetlock_model::Finding>,
) {
    let Some(config) = blocks(resource.values, "site_config").first().copied() else {
        return;
    };
    if flag(config.get("vnet_route_all_enabled")) == Some(true) {
        site.route_all.enabled = true;
        site.route_all
            .set_by
            .push("site_config.vnet_route_all_enabled".to_owned());
    }
    if let Some(use_main) = flag(config.get("scm_use_main_ip_restriction")) {
        site.access.scm_uses_main = use_main;
    }
    for kind in [SiteKind::Main, SiteKind::Scm] {
        let list = rules::read_list(plan, resource, config, kind, site, findings);
        match kind {
            SiteKind::Main => site.access.main = list,
            SiteKind::Scm => site.access.scm = list,
        }
    }
    rules::check_default_allow(plan, resource, site, findings);
}

/// `azurerm_app_service_virtual_network_swift_connection` PUTs the site's
/// `networkConfig/virtualNetwork` (REST "Create Or Update Swift Virtual Network Connection With
/// Check").
fn add_swift_connection(plan: &Plan, resource: &PlanResource, topology: &mut Topology) {
    let (Resolved::Known(site_id), Resolved::Known(subnet_id)) = (
        plan.string(resource, &[Step::Key("app_service_id")]),
        plan.string(resource, &[Step::Key("subnet_id")]),
    ) else {
        tracing::debug!(address = %resource.address, "swift connection with unresolved app or subnet");
        return;
    };
    if let Some(site) = topology
        .sites
        .iter_mut()
        .find(|site| site.id.eq_ignore_ascii_case(&site_id))
    {
        site.integration = Some(VnetIntegration {
            subnet_id: SubnetId::new(subnet_id),
            source: IntegrationSource::NetworkConfigVirtualNetwork,
            declared_at: plan.locate(resource, "subnet_id"),
        });
    }
}

fn add_private_endpoint(plan: &Plan, resource: &PlanResource, topology: &mut Topology) {
    let Some(id) = plan.id_of(resource) else {
        return;
    };
    let subnet_id = match plan.string(resource, &[Step::Key("subnet_id")]) {
        Resolved::Known(subnet) => Some(SubnetId::new(subnet)),
        _ => None,
    };
    let mut dns_zone_ids = Vec::new();
    for (index, _) in blocks(resource.values, "private_dns_zone_group")
        .iter()
        .enumerate()
    {
        let zones = walk_strings(
            plan,
            resource,
            &[
                Step::Key("private_dns_zone_group"),
                Step::Index(index),
                Step::Key("private_dns_zone_ids"),
            ],
        );
        dns_zone_ids.extend(zones);
    }

    for (index, connection) in blocks(resource.values, "private_service_connection")
        .iter()
        .enumerate()
    {
        let target = plan.string(
            resource,
            &[
                Step::Key("private_service_connection"),
                Step::Index(index),
                Step::Key("private_connection_resource_id"),
            ],
        );
        let Resolved::Known(target) = target else {
            continue;
        };
        let group_ids = strings(connection.get("subresource_names"));
        let is_sites = group_ids
            .iter()
            .any(|group| group.to_ascii_lowercase().starts_with("sites"));
        if is_sites {
            if let Some(site) = topology
                .sites
                .iter_mut()
                .find(|site| site.id.eq_ignore_ascii_case(&target))
            {
                site.access.has_private_endpoint = true;
            }
        }
        topology.private_endpoints.push(PrivateEndpoint {
            id: id.clone(),
            name: known(plan, resource, "name").unwrap_or_else(|| resource.label.clone()),
            subnet_id: subnet_id.clone(),
            target_id: target,
            group_ids,
            dns_zone_ids: dns_zone_ids.clone(),
        });
    }
}

fn add_private_dns_zone(plan: &Plan, resource: &PlanResource, topology: &mut Topology) {
    let Some(id) = plan.id_of(resource) else {
        return;
    };
    topology.private_dns_zones.push(PrivateDnsZone {
        id,
        name: known(plan, resource, "name").unwrap_or_else(|| resource.label.clone()),
        linked_vnets: Vec::new(),
        a_records: Vec::new(),
    });
}

/// Virtual network links and `A` records name their zone by name, not by id.
fn add_private_dns_child(plan: &Plan, resource: &PlanResource, topology: &mut Topology) {
    let is_link = resource.resource_type == "azurerm_private_dns_zone_virtual_network_link";
    let zone_key = if is_link {
        "private_dns_zone_name"
    } else {
        "zone_name"
    };
    let Some(zone_name) = known(plan, resource, zone_key) else {
        return;
    };
    let Some(zone) = topology
        .private_dns_zones
        .iter_mut()
        .find(|zone| zone.name.eq_ignore_ascii_case(&zone_name))
    else {
        return;
    };
    if is_link {
        if let Resolved::Known(vnet) = plan.string(resource, &[Step::Key("virtual_network_id")]) {
            zone.linked_vnets.push(vnet);
        }
    } else if let Some(record) = known(plan, resource, "name") {
        zone.a_records.push(record.to_ascii_lowercase());
    }
}

fn vnet_mut<'t>(topology: &'t mut Topology, id: &str) -> Option<&'t mut VirtualNetwork> {
    topology
        .vnets
        .iter_mut()
        .find(|vnet| vnet.id.eq_ignore_ascii_case(id))
}

/// `delegation[].service_delegation[].name`.
fn delegations(values: &Map<String, Json>) -> Vec<String> {
    blocks(values, "delegation")
        .iter()
        .flat_map(|delegation| blocks(delegation, "service_delegation"))
        .filter_map(|service| service.get("name").and_then(Json::as_str))
        .map(str::to_owned)
        .collect()
}

/// Returns the objects of a nested block, which Terraform writes as a list of objects.
pub(crate) fn blocks<'j>(values: &'j Map<String, Json>, key: &str) -> Vec<&'j Map<String, Json>> {
    match values.get(key) {
        Some(Json::Array(items)) => items.iter().filter_map(Json::as_object).collect(),
        // `terraform show -json` writes nested blocks as arrays; a hand-edited plan may hold
        // one block as an object, which reads as that single block rather than as nothing.
        Some(Json::Object(block)) => vec![block],
        _ => Vec::new(),
    }
}

/// Reads a boolean attribute; the strings `"true"` and `"false"` count too, as an edited plan
/// may carry them.
pub(crate) fn flag(value: Option<&Json>) -> Option<bool> {
    match value? {
        Json::Bool(flag) => Some(*flag),
        Json::String(text) if text.eq_ignore_ascii_case("true") => Some(true),
        Json::String(text) if text.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

pub(crate) fn strings(value: Option<&Json>) -> Vec<String> {
    value
        .and_then(Json::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(Json::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// Reads a list of strings: the planned items, or the resolved references when the list is
/// known only after apply.
fn walk_strings(plan: &Plan, resource: &PlanResource, path: &[Step]) -> Vec<String> {
    if let Some(items) = crate::plan::walk(resource.values, path).and_then(Json::as_array) {
        return items
            .iter()
            .filter_map(Json::as_str)
            .map(str::to_owned)
            .collect();
    }
    plan.referenced_values(resource, path)
}

fn known(plan: &Plan, resource: &PlanResource, key: &str) -> Option<String> {
    match plan.string(resource, &[Step::Key(key)]) {
        Resolved::Known(text) => Some(text),
        _ => None,
    }
}

fn location(resource: &PlanResource) -> Option<String> {
    resource
        .values
        .get("location")
        .and_then(Json::as_str)
        .map(str::to_owned)
}
