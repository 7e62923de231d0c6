//! The source identity a caller's request carries when it reaches App Service.
//!
//! An app with regional VNet integration sends a request into its VNet when route-all is on,
//! when the destination is an RFC 1918 address, or when the destination belongs to a service
//! for which the integration subnet has a service endpoint. A request to App Service that enters
//! the VNet from a subnet with the `Microsoft.Web` service endpoint reaches the front end with
//! the subnet's identity; every other request leaves from the plan's shared outbound addresses.
//! Sources: <https://learn.microsoft.com/azure/app-service/overview-vnet-integration> (routing),
//! <https://learn.microsoft.com/azure/virtual-network/virtual-network-service-endpoints-overview>
//! (service endpoint routes bypass NAT gateways and forced tunnelling).
//!
//! When the target is known, two more paths exist. A caller whose VNet is linked to the
//! `privatelink.azurewebsites.net` private DNS zone resolves a target with a private endpoint
//! to that endpoint, and the front end skips access restrictions for it
//! (<https://learn.microsoft.com/azure/app-service/overview-private-endpoint>). A caller inside
//! the VNet of the App Service Environment that hosts the target reaches it on its private
//! address, which IP rules do match there
//! (<https://learn.microsoft.com/azure/app-service/overview-access-restrictions>). Outbound
//! rules of the network security group on the caller's subnet apply to everything that enters
//! the VNet (<https://learn.microsoft.com/azure/app-service/overview-vnet-integration>).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::Serialize;
use subnetlock_access::{Entry, ServiceTagTable, SiteKind, Source, SubnetId};

use crate::topology::{Site, Subnet, Topology, PRIVATE_LINK_ZONE};

/// The route a request took from its caller to an App Service front end.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EgressPath {
    /// Into the VNet and over the subnet's `Microsoft.Web` service endpoint.
    ServiceEndpoint { subnet: SubnetId },
    /// Into the VNet (route-all), then out through the subnet's NAT gateway.
    NatGateway {
        subnet: SubnetId,
        nat_gateway: String,
    },
    /// Into the VNet (route-all), then out through the default internet route.
    VnetInternet { subnet: SubnetId },
    /// Not into the VNet: from the plan's shared outbound addresses.
    SharedOutbound { plan: Option<String> },
    /// A caller outside Azure, from the given address.
    Internet,
    /// Into the VNet to the target's private endpoint, found through a private DNS zone
    /// linked to the caller's VNet.
    PrivateEndpoint { endpoint: String, zone: String },
    /// Inside the VNet of the App Service Environment that hosts the target, from the
    /// caller's private address.
    EnvironmentVnet { subnet: SubnetId },
    /// A service on the Azure backbone that belongs to a service tag.
    ServiceTag { tag: String },
    /// An outbound rule of the network security group on the caller's subnet drops the
    /// request before it reaches the front end.
    BlockedByNsg {
        subnet: SubnetId,
        network_security_group: String,
        rule: String,
    },
}

/// The source a request arrives with, the path it took, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Egress {
    pub source: Source,
    pub path: EgressPath,
    /// Plain sentences that explain each routing step, for `explain` and the decision log.
    pub steps: Vec<String>,
}

impl Egress {
    /// Whether the request reaches the front end at all. A request a network security group
    /// drops never does; the caller sees a connection failure.
    pub fn reaches_front_end(&self) -> bool {
        !matches!(self.path, EgressPath::BlockedByNsg { .. })
    }
}

/// The site and host name a request addresses, when the caller knows it.
#[derive(Clone, Copy, Debug)]
pub struct Destination<'a> {
    pub site: &'a Site,
    pub kind: SiteKind,
}

/// Computes the source identity of a request from `caller` to `target`: private endpoint,
/// App Service Environment VNet, or the public path of [`from_site_to_app_service`], after the
/// outbound rules of the caller's network security group.
pub fn from_site_to_site(
    topology: &Topology,
    caller: &Site,
    target: Option<Destination<'_>>,
) -> Egress {
    let integrated = caller.integration.as_ref().and_then(|integration| {
        let plan_supports = caller
            .plan_id
            .as_deref()
            .and_then(|id| topology.plan(id))
            .is_none_or(|plan| plan.family.supports_vnet_integration());
        plan_supports
            .then(|| topology.subnet(&integration.subnet_id))
            .flatten()
            .map(|(_, subnet)| subnet)
    });
    let Some(subnet) = integrated else {
        return from_site_to_app_service(topology, caller);
    };
    let intro = format!(
        "`{}` sends through its regional VNet integration subnet `{}`",
        caller.name, subnet.name
    );
    let public = || from_site_to_app_service(topology, caller);
    through_vnet(topology, subnet, target, intro, public)
}

/// Computes the source identity of a request from a machine in `subnet` to `target`, like
/// [`from_site_to_site`]; such callers always send through their VNet.
pub fn from_subnet_to_site(
    topology: &Topology,
    subnet: &Subnet,
    target: Option<Destination<'_>>,
) -> Egress {
    let intro = format!("the caller sits in subnet `{}`", subnet.name);
    through_vnet(topology, subnet, target, intro, || {
        from_subnet_to_app_service(subnet)
    })
}

/// A caller on the Azure backbone that belongs to service tag `tag`, for example an Azure
/// Front Door profile (`AzureFrontDoor.Backend`). With a prefix table the address is the first
/// address of the tag's first prefix; without one it is a synthetic address in 192.0.2.0/24
/// (TEST-NET-1, RFC 5737) and the source names the tag, which the engine then matches by name.
pub fn from_service_tag(tag: &str, table: Option<&ServiceTagTable>) -> Egress {
    let from_table = table
        .and_then(|table| table.prefixes(tag))
        .and_then(|prefixes| prefixes.first())
        .map(|prefix| prefix.network);
    let address = from_table.unwrap_or_else(|| {
        let hash = fnv1a(tag.to_ascii_lowercase().as_bytes());
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, (hash as u8).max(1)))
    });
    let mut steps = vec![format!(
        "the caller is a service on the Azure backbone in service tag `{tag}`"
    )];
    if from_table.is_some() {
        steps.push(format!(
            "its address {address} is the first address of the tag's first prefix"
        ));
    }
    Egress {
        source: Source {
            address,
            service_endpoint: None,
            entry: Entry::PublicEndpoint,
            service_tags: vec![tag.to_owned()],
        },
        path: EgressPath::ServiceTag {
            tag: tag.to_owned(),
        },
        steps,
    }
}

/// The path of a request that leaves from `subnet`: to a private endpoint or an App Service
/// Environment inside the VNet, else the public path `public` computes; then the subnet's
/// network security group.
fn through_vnet(
    topology: &Topology,
    subnet: &Subnet,
    target: Option<Destination<'_>>,
    intro: String,
    public: impl FnOnce() -> Egress,
) -> Egress {
    let mut steps = vec![intro];
    let private_address = first_host(subnet);
    if let Some(target) = target {
        if let Some((endpoint, zone)) = private_endpoint_seen_from(topology, subnet, target) {
            steps.push(format!(
                "private DNS zone `{zone}` is linked to the caller's VNet and resolves `{}` to private endpoint `{endpoint}`",
                host_of(target)
            ));
            steps.push(
                "the request enters through the private endpoint, where access restrictions do not apply"
                    .to_owned(),
            );
            let egress = Egress {
                source: Source {
                    address: private_address,
                    service_endpoint: None,
                    entry: Entry::PrivateEndpoint,
                    service_tags: Vec::new(),
                },
                path: EgressPath::PrivateEndpoint { endpoint, zone },
                steps,
            };
            return apply_nsg(topology, subnet, NsgDestination::Vnet(None), egress);
        }
        if let Some(endpoint) = unresolved_private_endpoint(topology, target) {
            steps.push(format!(
                "`{}` has private endpoint `{endpoint}`, but no `{PRIVATE_LINK_ZONE}` private DNS zone linked to the caller's VNet resolves `{}` to it, so the call goes to the public address",
                target.site.name,
                host_of(target)
            ));
        }
        if let Some(environment) = environment_seen_from(topology, subnet, target) {
            steps.push(format!(
                "`{}` runs in App Service Environment `{environment}` in the caller's VNet, so the request stays in the VNet and arrives from the caller's private address {private_address}",
                target.site.name
            ));
            let egress = Egress {
                source: Source::internet(private_address),
                path: EgressPath::EnvironmentVnet {
                    subnet: subnet.id.clone(),
                },
                steps,
            };
            return apply_nsg(topology, subnet, NsgDestination::Vnet(None), egress);
        }
    }
    let mut egress = public();
    // The public path may open with the same sentence (subnet callers do), which appears once.
    if egress.steps.first() == steps.first() {
        egress.steps.remove(0);
    }
    steps.append(&mut egress.steps);
    egress.steps = steps;
    // Only a request that entered the VNet meets the subnet's network security group.
    let enters_vnet = matches!(
        egress.path,
        EgressPath::ServiceEndpoint { .. }
            | EgressPath::NatGateway { .. }
            | EgressPath::VnetInternet { .. }
    );
    if enters_vnet {
        apply_nsg(topology, subnet, NsgDestination::AppServicePublic, egress)
    } else {
        egress
    }
}

/// The destination of a request from a subnet, as network security group rules see it.
#[derive(Clone, Copy, Debug)]
enum NsgDestination {
    /// The public address of an App Service front end (service tags `AppService`, `Internet`).
    AppServicePublic,
    /// An address inside the virtual network (service tag `VirtualNetwork`).
    Vnet(Option<IpAddr>),
}

/// Destination port that network security group rules are matched against.
// NOTE: every call is taken to be HTTPS; a plain HTTP call to port 80 is judged as if it were
// sent to 443.
const HTTPS_PORT: u32 = 443;

/// Applies the outbound rules of the subnet's network security group: the lowest priority
/// number that matches decides; without a match Azure's default rules `AllowVnetOutBound` and
/// `AllowInternetOutBound` let the request through.
/// Source: <https://learn.microsoft.com/azure/virtual-network/network-security-groups-overview>.
fn apply_nsg(
    topology: &Topology,
    subnet: &Subnet,
    destination: NsgDestination,
    mut egress: Egress,
) -> Egress {
    let Some(nsg) = subnet
        .network_security_group
        .as_deref()
        .and_then(|id| topology.network_security_group(id))
    else {
        return egress;
    };
    let mut rules: Vec<_> = nsg.outbound_rules.iter().collect();
    rules.sort_by_key(|rule| rule.priority);
    let deciding = rules.into_iter().find(|rule| {
        protocol_matches(&rule.protocol)
            && rule
                .destination_ports
                .iter()
                .any(|ports| port_matches(ports))
            && rule
                .destination_prefixes
                .iter()
                .any(|prefix| prefix_matches(prefix, destination))
    });
    match deciding {
        Some(rule) if !rule.allow => {
            egress.steps.push(format!(
                "outbound rule `{}` (priority {}) of network security group `{}` on subnet `{}` denies it, so the request never reaches the front end",
                rule.name, rule.priority, nsg.name, subnet.name
            ));
            egress.path = EgressPath::BlockedByNsg {
                subnet: subnet.id.clone(),
                network_security_group: nsg.name.clone(),
                rule: rule.name.clone(),
            };
            egress
        }
        Some(rule) => {
            egress.steps.push(format!(
                "outbound rule `{}` of network security group `{}` allows it",
                rule.name, nsg.name
            ));
            egress
        }
        None => egress,
    }
}

fn protocol_matches(protocol: &str) -> bool {
    protocol == "*" || protocol.eq_ignore_ascii_case("tcp")
}

fn port_matches(ports: &str) -> bool {
    let ports = ports.trim();
    if ports == "*" {
        return true;
    }
    match ports.split_once('-') {
        Some((low, high)) => match (low.trim().parse::<u32>(), high.trim().parse::<u32>()) {
            (Ok(low), Ok(high)) => (low..=high).contains(&HTTPS_PORT),
            _ => false,
        },
        None => ports.parse::<u32>() == Ok(HTTPS_PORT),
    }
}

fn prefix_matches(prefix: &str, destination: NsgDestination) -> bool {
    let prefix = prefix.trim();
    if prefix == "*" || prefix == "0.0.0.0/0" {
        return true;
    }
    let tag = prefix.split('.').next().unwrap_or(prefix);
    match destination {
        // NOTE: the emulated front-end address is synthetic, so a CIDR other than 0.0.0.0/0
        // is taken as not covering it.
        NsgDestination::AppServicePublic => ["Internet", "AppService", "AzureCloud"]
            .iter()
            .any(|known| tag.eq_ignore_ascii_case(known)),
        NsgDestination::Vnet(address) => {
            prefix.eq_ignore_ascii_case("VirtualNetwork")
                || address.is_some_and(|address| cidr_contains(prefix, address))
        }
    }
}

fn cidr_contains(prefix: &str, address: IpAddr) -> bool {
    let Some((network, length)) = prefix.split_once('/') else {
        return prefix.parse::<IpAddr>() == Ok(address);
    };
    let (Ok(network), Ok(length)) = (network.parse::<IpAddr>(), length.parse::<u32>()) else {
        return false;
    };
    match (network, address) {
        (IpAddr::V4(network), IpAddr::V4(address)) if length <= 32 => {
            let mask = u32::MAX.checked_shl(32 - length).unwrap_or(0);
            u32::from(network) & mask == u32::from(address) & mask
        }
        (IpAddr::V6(network), IpAddr::V6(address)) if length <= 128 => {
            let mask = u128::MAX.checked_shl(128 - length).unwrap_or(0);
            u128::from(network) & mask == u128::from(address) & mask
        }
        _ => false,
    }
}

/// The private endpoint of `target` that a caller in `subnet` resolves to, with the zone that
/// resolves it: the caller's VNet is linked to a `privatelink.azurewebsites.net` zone that
/// holds the target's record, written by the endpoint's DNS zone group (which registers both
/// the main and the scm name) or as a separate `A` record.
fn private_endpoint_seen_from(
    topology: &Topology,
    subnet: &Subnet,
    target: Destination<'_>,
) -> Option<(String, String)> {
    // NOTE: VNet peering and custom DNS servers are not modelled: only a zone linked to the
    // caller's own VNet resolves the target.
    let vnet_id = subnet.id.vnet_id();
    let endpoints: Vec<_> = topology
        .private_endpoints
        .iter()
        .filter(|endpoint| endpoint.target_id.eq_ignore_ascii_case(&target.site.id))
        .filter(|endpoint| {
            endpoint
                .group_ids
                .iter()
                .any(|group| group.to_ascii_lowercase().starts_with("sites"))
        })
        .collect();
    let record = match target.kind {
        SiteKind::Main => target.site.name.to_ascii_lowercase(),
        SiteKind::Scm => format!("{}.scm", target.site.name.to_ascii_lowercase()),
    };
    topology
        .private_dns_zones
        .iter()
        .filter(|zone| zone.name.eq_ignore_ascii_case(PRIVATE_LINK_ZONE))
        .filter(|zone| zone.is_linked_to(vnet_id))
        .find_map(|zone| {
            let by_group = endpoints.iter().find(|endpoint| {
                endpoint
                    .dns_zone_ids
                    .iter()
                    .any(|id| id.eq_ignore_ascii_case(&zone.id))
            });
            let by_record = zone
                .a_records
                .iter()
                .any(|name| name == &record)
                .then(|| endpoints.first())
                .flatten();
            by_group
                .or(by_record)
                .map(|endpoint| (endpoint.name.clone(), zone.name.clone()))
        })
}

/// Returns the name of a private endpoint of `target` (group `sites`), for a caller that
/// [`private_endpoint_seen_from`] found no zone for.
fn unresolved_private_endpoint(topology: &Topology, target: Destination<'_>) -> Option<String> {
    topology
        .private_endpoints
        .iter()
        .filter(|endpoint| endpoint.target_id.eq_ignore_ascii_case(&target.site.id))
        .find(|endpoint| {
            endpoint
                .group_ids
                .iter()
                .any(|group| group.to_ascii_lowercase().starts_with("sites"))
        })
        .map(|endpoint| endpoint.name.clone())
}

/// Finds the App Service Environment hosting `target` when it sits in the caller's VNet.
fn environment_seen_from(
    topology: &Topology,
    subnet: &Subnet,
    target: Destination<'_>,
) -> Option<String> {
    let environment = topology.hosting_environment_of(target.site)?;
    let environment_subnet = environment.subnet_id.as_ref()?;
    environment_subnet
        .vnet_id()
        .eq_ignore_ascii_case(subnet.id.vnet_id())
        .then(|| environment.name.clone())
}

fn host_of(target: Destination<'_>) -> &str {
    match target.kind {
        SiteKind::Main => &target.site.default_host_name,
        SiteKind::Scm => &target.site.scm_host_name,
    }
}

/// The caller's private address inside `subnet`: the first host address of its first IPv4
/// prefix (10.0.0.1 for 10.0.0.0/24). Azure hands out the fourth address first, but any
/// address of the subnet stands for the caller; the first host is easy to predict.
pub fn first_host(subnet: &Subnet) -> IpAddr {
    subnet
        .address_prefixes
        .iter()
        .find_map(|prefix| {
            let (network, _) = prefix.split_once('/')?;
            let network: Ipv4Addr = network.parse().ok()?;
            Some(IpAddr::V4(Ipv4Addr::from(
                u32::from(network).saturating_add(1),
            )))
        })
        .unwrap_or(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)))
}

/// Computes the source identity of a request from `caller` to the public host name of an App
/// Service app.
pub fn from_site_to_app_service(topology: &Topology, caller: &Site) -> Egress {
    let mut steps = Vec::new();
    let plan = caller.plan_id.as_deref().and_then(|id| topology.plan(id));
    let shared = |steps: Vec<String>| Egress {
        source: Source::internet(shared_outbound_address(
            caller.plan_id.as_deref().unwrap_or(&caller.id),
        )),
        path: EgressPath::SharedOutbound {
            plan: caller.plan_id.clone(),
        },
        steps,
    };

    let Some(integration) = &caller.integration else {
        steps.push(format!(
            "`{}` has no regional VNet integration, so it calls from its plan's shared outbound addresses",
            caller.name
        ));
        return shared(steps);
    };
    if let Some(plan) = plan {
        if !plan.family.supports_vnet_integration() {
            steps.push(format!(
                "plan `{}` ({:?}) does not support regional VNet integration, so `{}` calls from shared outbound addresses",
                plan.name, plan.family, caller.name
            ));
            return shared(steps);
        }
    }
    let Some((_, subnet)) = topology.subnet(&integration.subnet_id) else {
        steps.push(format!(
            "integration subnet `{}` is not in the template; assuming it has no `Microsoft.Web` service endpoint",
            integration.subnet_id
        ));
        return shared(steps);
    };

    from_subnet(
        subnet,
        Sender::App {
            route_all: caller.route_all.enabled,
        },
        &caller.name,
        steps,
        || shared_outbound_address(caller.plan_id.as_deref().unwrap_or(&caller.id)),
    )
}

/// Computes the source identity of a request from a machine in `subnet` (a VM, API Management
/// or Application Gateway) to App Service. Such callers always send through their VNet.
pub fn from_subnet_to_app_service(subnet: &Subnet) -> Egress {
    let steps = vec![format!("the caller sits in subnet `{}`", subnet.name)];
    from_subnet(subnet, Sender::Machine, &subnet.name, steps, || {
        public_address_of_subnet(&subnet.id)
    })
}

/// Who sends from a subnet, which decides whether a call to a public address enters the VNet.
#[derive(Clone, Copy, Debug)]
enum Sender {
    /// An app with regional VNet integration: only with route-all (or a service endpoint) does
    /// such a call go into the VNet.
    App { route_all: bool },
    /// A machine in the subnet (a VM, API Management, Application Gateway), whose every packet
    /// starts in the VNet.
    Machine,
}

fn from_subnet(
    subnet: &Subnet,
    sender: Sender,
    caller_name: &str,
    mut steps: Vec<String>,
    public_address: impl Fn() -> IpAddr,
) -> Egress {
    if subnet.has_web_service_endpoint() {
        steps.push(format!(
            "subnet `{}` has the `Microsoft.Web` service endpoint, so calls to App Service enter the VNet and use it (route-all is not needed)",
            subnet.name
        ));
        steps.push("the front end sees the subnet identity, not a public address".to_owned());
        return Egress {
            source: Source {
                address: service_endpoint_address(&subnet.id),
                service_endpoint: Some(subnet.id.clone()),
                entry: Default::default(),
                service_tags: Vec::new(),
            },
            path: EgressPath::ServiceEndpoint {
                subnet: subnet.id.clone(),
            },
            steps,
        };
    }
    if let Sender::App { route_all: false } = sender {
        steps.push(format!(
            "subnet `{}` has no `Microsoft.Web` service endpoint and route-all is off for `{caller_name}`, so calls to App Service (a public address) do not enter the VNet",
            subnet.name
        ));
        return Egress {
            source: Source::internet(public_address()),
            path: EgressPath::SharedOutbound { plan: None },
            steps,
        };
    }
    // A machine's call starts in the subnet; an app's is sent there by route-all.
    let into_subnet = match sender {
        Sender::App { .. } => format!(
            "route-all sends the call into subnet `{}`, which",
            subnet.name
        ),
        Sender::Machine => format!("subnet `{}`", subnet.name),
    };
    if let Some(nat) = &subnet.nat_gateway {
        steps.push(format!("{into_subnet} leaves through NAT gateway `{nat}`"));
        return Egress {
            source: Source::internet(public_address_of_subnet(&subnet.id)),
            path: EgressPath::NatGateway {
                subnet: subnet.id.clone(),
                nat_gateway: nat.clone(),
            },
            steps,
        };
    }
    steps.push(format!(
        "{into_subnet} has no `Microsoft.Web` service endpoint, so the call leaves through the default internet route"
    ));
    Egress {
        source: Source::internet(public_address()),
        path: EgressPath::VnetInternet {
            subnet: subnet.id.clone(),
        },
        steps,
    }
}

/// Returns the egress of a caller on the internet.
pub fn from_internet(address: IpAddr) -> Egress {
    Egress {
        source: Source::internet(address),
        path: EgressPath::Internet,
        steps: vec![format!("the caller is on the internet at {address}")],
    }
}

/// The address `check` uses for "any caller on the internet": 203.0.113.10 from the
/// documentation range TEST-NET-3 (RFC 5737), which no rule in a real template allows by
/// accident.
pub const INTERNET_SAMPLE: IpAddr = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 10));

/// The IPv6 address `check` uses for "any IPv6 client on the internet": 2001:db8::10 from the
/// documentation range (RFC 3849).
pub const INTERNET_SAMPLE_V6: IpAddr =
    IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10));

/// Returns the synthetic shared outbound address of a plan, in 198.18.0.0/15 (RFC 2544, never
/// routed).
///
/// Azure's real addresses are shared by every tenant on the scale unit; the synthetic one is
/// stable per plan so that `check` and `up` agree.
pub fn shared_outbound_address(plan_id: &str) -> IpAddr {
    let hash = fnv1a(plan_id.to_ascii_lowercase().as_bytes());
    IpAddr::V4(Ipv4Addr::new(
        198,
        18 + (hash >> 24) as u8 % 2,
        (hash >> 8) as u8,
        (hash as u8).max(1),
    ))
}

/// Returns the synthetic public address of a subnet's NAT gateway or default route, also in
/// 198.18.0.0/15.
pub fn public_address_of_subnet(subnet: &SubnetId) -> IpAddr {
    shared_outbound_address(&format!("nat:{}", subnet.as_str()))
}

/// Returns the synthetic address the front end shows for service-endpoint traffic: an IPv6 ULA in
/// `fd00::/8`, as App Service shows in `x-ms-forbidden-ip` for such callers (observed
/// `fd00::1002:fc01:3000:2000:1000`, <https://milkyware.github.io/azure/routing-azure-app-service-traffic-between-tenants-with-service-endpoints>).
pub fn service_endpoint_address(subnet: &SubnetId) -> IpAddr {
    let hash = fnv1a(subnet.as_str().to_ascii_lowercase().as_bytes());
    IpAddr::V6(Ipv6Addr::new(
        0xfd00,
        0,
        0,
        0,
        0x1002,
        (hash >> 16) as u16,
        hash as u16,
        0x1000,
    ))
}

/// FNV-1a, 32 bits: a stable hash, so synthetic addresses are the same in every run.
fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5, |hash: u32, byte| {
        (hash ^ u32::from(*byte)).wrapping_mul(0x0100_0193)
    })
}

#[cfg(test)]
#[allow(clippy::expect_used)]
mod tests {
    use super::*;
    use crate::{build_topology, KeyMode, SimulatedProvider};

    /// VNet `vnet` with subnets `se` (service endpoint), `plain` (no service endpoint, NSG
    /// denying 443 to `AppService`), `pe` and `ase`; VNet `other` with subnet `se2`; site `b`
    /// with a private endpoint registered in `privatelink.azurewebsites.net` linked to `vnet`
    /// only; site `c` in an App Service Environment in `vnet`; site `d` with nothing.
    fn topology() -> Topology {
        let subnet_id = |vnet: &str, name: &str| {
            format!("[resourceId('Microsoft.Network/virtualNetworks/subnets', '{vnet}', '{name}')]")
        };
        let web_endpoint = serde_json::json!([{ "service": "Microsoft.Web" }]);
        let template = serde_json::json!({
            "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
            "contentVersion": "1.0.0.0",
            "resources": [
                { "type": "Microsoft.Network/networkSecurityGroups", "apiVersion": "2023-09-01", "name": "nsg",
                  "properties": { "securityRules": [{ "name": "deny-app-service", "properties": {
                      "priority": 100, "direction": "Outbound", "access": "Deny", "protocol": "Tcp",
                      "destinationAddressPrefix": "AppService", "destinationPortRanges": ["80", "443"] } }] } },
                { "type": "Microsoft.Network/virtualNetworks", "apiVersion": "2023-09-01", "name": "vnet",
                  "properties": { "addressSpace": { "addressPrefixes": ["10.0.0.0/16"] }, "subnets": [
                      { "name": "se", "properties": { "addressPrefix": "10.0.0.0/24", "serviceEndpoints": web_endpoint } },
                      { "name": "plain", "properties": { "addressPrefix": "10.0.1.0/24", "networkSecurityGroup": {
                          "id": "[resourceId('Microsoft.Network/networkSecurityGroups', 'nsg')]" } } },
                      { "name": "pe", "properties": { "addressPrefix": "10.0.2.0/24" } },
                      { "name": "nat", "properties": { "addressPrefix": "10.0.4.0/24", "natGateway": {
                          "id": "[resourceId('Microsoft.Network/natGateways', 'nat')]" } } },
                      { "name": "ase", "properties": { "addressPrefix": "10.0.3.0/24" } } ] } },
                { "type": "Microsoft.Network/virtualNetworks", "apiVersion": "2023-09-01", "name": "other",
                  "properties": { "addressSpace": { "addressPrefixes": ["10.1.0.0/16"] }, "subnets": [
                      { "name": "se2", "properties": { "addressPrefix": "10.1.0.0/24", "serviceEndpoints": web_endpoint } } ] } },
                { "type": "Microsoft.Web/hostingEnvironments", "apiVersion": "2022-09-01", "name": "env",
                  "properties": { "virtualNetwork": { "id": subnet_id("vnet", "ase") } } },
                { "type": "Microsoft.Web/serverfarms", "apiVersion": "2022-09-01", "name": "plan",
                  "sku": { "name": "S1", "tier": "Standard" } },
                { "type": "Microsoft.Web/serverfarms", "apiVersion": "2022-09-01", "name": "isolated",
                  "sku": { "name": "I1v2", "tier": "IsolatedV2" }, "properties": { "hostingEnvironmentProfile": {
                      "id": "[resourceId('Microsoft.Web/hostingEnvironments', 'env')]" } } },
                { "type": "Microsoft.Web/sites", "apiVersion": "2022-09-01", "name": "b",
                  "properties": { "serverFarmId": "[resourceId('Microsoft.Web/serverfarms', 'plan')]" } },
                { "type": "Microsoft.Web/sites", "apiVersion": "2022-09-01", "name": "c",
                  "properties": { "serverFarmId": "[resourceId('Microsoft.Web/serverfarms', 'isolated')]" } },
                { "type": "Microsoft.Web/sites", "apiVersion": "2022-09-01", "name": "d",
                  "properties": { "serverFarmId": "[resourceId('Microsoft.Web/serverfarms', 'plan')]" } },
                { "type": "Microsoft.Network/privateEndpoints", "apiVersion": "2023-09-01", "name": "pe-b",
                  "properties": { "subnet": { "id": subnet_id("vnet", "pe") }, "privateLinkServiceConnections": [
                      { "name": "sites", "properties": { "groupIds": ["sites"],
                        "privateLinkServiceId": "[resourceId('Microsoft.Web/sites', 'b')]" } } ] } },
                { "type": "Microsoft.Network/privateDnsZones", "apiVersion": "2020-06-01",
                  "name": "privatelink.azurewebsites.net", "location": "global" },
                { "type": "Microsoft.Network/privateDnsZones/virtualNetworkLinks", "apiVersion": "2020-06-01",
                  "name": "privatelink.azurewebsites.net/link", "location": "global", "properties": {
                      "virtualNetwork": { "id": "[resourceId('Microsoft.Network/virtualNetworks', 'vnet')]" } } },
                { "type": "Microsoft.Network/privateEndpoints/privateDnsZoneGroups", "apiVersion": "2023-09-01",
                  "name": "pe-b/default", "properties": { "privateDnsZoneConfigs": [{ "name": "zone", "properties": {
                      "privateDnsZoneId": "[resourceId('Microsoft.Network/privateDnsZones', 'privatelink.azurewebsites.net')]" } }] } }
            ]
        });
        let provider = SimulatedProvider::new(KeyMode::Placeholder);
        let deployment = subnetlock_arm::evaluate_str(
            "egress.json",
            &template.to_string(),
            &subnetlock_arm::EvalOptions::default(),
            &provider,
        )
        .expect("template evaluates");
        build_topology(&deployment)
    }

    #[test]
    fn subnet_paths_by_target() {
        let topology = topology();
        // (caller subnet, target site, target kind, expected path kind, expected entry)
        let cases = [
            (
                "vnet/se",
                "b",
                SiteKind::Main,
                "private_endpoint",
                Entry::PrivateEndpoint,
            ),
            (
                "vnet/se",
                "b",
                SiteKind::Scm,
                "private_endpoint",
                Entry::PrivateEndpoint,
            ),
            (
                "vnet/plain",
                "b",
                SiteKind::Main,
                "private_endpoint",
                Entry::PrivateEndpoint,
            ),
            (
                "other/se2",
                "b",
                SiteKind::Main,
                "service_endpoint",
                Entry::PublicEndpoint,
            ),
            (
                "vnet/se",
                "d",
                SiteKind::Main,
                "service_endpoint",
                Entry::PublicEndpoint,
            ),
            (
                "vnet/plain",
                "d",
                SiteKind::Main,
                "blocked_by_nsg",
                Entry::PublicEndpoint,
            ),
            (
                "vnet/se",
                "c",
                SiteKind::Main,
                "environment_vnet",
                Entry::PublicEndpoint,
            ),
            (
                "other/se2",
                "c",
                SiteKind::Main,
                "service_endpoint",
                Entry::PublicEndpoint,
            ),
            (
                "vnet/nat",
                "d",
                SiteKind::Main,
                "nat_gateway",
                Entry::PublicEndpoint,
            ),
        ];
        for (subnet, site, kind, path, entry) in cases {
            let subnet_ref = topology.find_subnet(subnet).expect("subnet");
            let site_ref = topology.site(site).expect("site");
            let target = Destination {
                site: site_ref,
                kind,
            };
            let egress = from_subnet_to_site(&topology, subnet_ref, Some(target));
            let json = serde_json::to_value(&egress.path).expect("path json");
            assert_eq!(
                json["kind"], path,
                "{subnet} -> {site} {kind}: {:?}",
                egress.steps
            );
            assert_eq!(egress.source.entry, entry, "{subnet} -> {site} {kind}");
        }
    }

    #[test]
    fn environment_vnet_uses_private_address() {
        let topology = topology();
        let subnet = topology.find_subnet("vnet/se").expect("subnet");
        let target = Destination {
            site: topology.site("c").expect("site"),
            kind: SiteKind::Main,
        };
        let egress = from_subnet_to_site(&topology, subnet, Some(target));
        assert_eq!(
            egress.source.address,
            IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))
        );
        assert_eq!(egress.source.service_endpoint, None);
    }

    #[test]
    fn blocked_never_reaches_front_end() {
        let topology = topology();
        let subnet = topology.find_subnet("vnet/plain").expect("subnet");
        let egress = from_subnet_to_site(&topology, subnet, None);
        assert!(!egress.reaches_front_end());
    }

    #[test]
    fn nsg_port_and_prefix_matching() {
        let public = NsgDestination::AppServicePublic;
        let private = NsgDestination::Vnet(Some(IpAddr::V4(Ipv4Addr::new(10, 0, 2, 4))));
        let cases = [
            ("*", public, true),
            ("AppService", public, true),
            ("AppService.WestEurope", public, true),
            ("Internet", public, true),
            ("VirtualNetwork", public, false),
            ("20.0.0.0/8", public, false),
            ("VirtualNetwork", private, true),
            ("10.0.2.0/24", private, true),
            ("10.0.3.0/24", private, false),
            ("AppService", private, false),
        ];
        for (prefix, destination, expected) in cases {
            assert_eq!(
                prefix_matches(prefix, destination),
                expected,
                "{prefix} {destination:?}"
            );
        }
        for (ports, expected) in [
            ("*", true),
            ("443", true),
            ("80", false),
            ("1-1024", true),
            ("444-500", false),
        ] {
            assert_eq!(port_matches(ports), expected, "{ports}");
        }
    }

    #[test]
    fn service_tag_address() {
        let table = ServiceTagTable::from_prefixes([(
            "AzureCloud",
            vec![subnetlock_access::IpNet::parse("20.33.0.0/16").expect("cidr")],
        )]);
        let with_table = from_service_tag("AzureCloud", Some(&table));
        assert_eq!(
            with_table.source.address,
            IpAddr::V4(Ipv4Addr::new(20, 33, 0, 0))
        );
        let without = from_service_tag("AzureFrontDoor.Backend", None);
        let IpAddr::V4(address) = without.source.address else {
            panic!("expected IPv4");
        };
        assert_eq!(&address.octets()[..3], &[192, 0, 2]);
        assert_eq!(
            without.source.service_tags,
            vec!["AzureFrontDoor.Backend".to_owned()]
        );
    }

    #[test]
    fn shared_address_in_benchmark_range() {
        let IpAddr::V4(address) = shared_outbound_address("/subscriptions/x/plan") else {
            panic!("expected IPv4");
        };
        assert_eq!(address.octets()[0], 198);
        assert!(matches!(address.octets()[1], 18 | 19));
    }

    #[test]
    fn service_endpoint_address_is_ula() {
        let IpAddr::V6(address) = service_endpoint_address(&SubnetId::new("/a/subnets/b")) else {
            panic!("expected IPv6");
        };
        assert_eq!(address.segments()[0], 0xfd00);
    }

    #[test]
    fn synthetic_addresses_stable() {
        let id = SubnetId::new("/x/subnets/Default");
        let same = SubnetId::new("/X/SUBNETS/default");
        assert_eq!(
            service_endpoint_address(&id),
            service_endpoint_address(&same)
        );
    }
}
