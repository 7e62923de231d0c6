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

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::Serialize;
use subnetlock_access::{Source, SubnetId};

use crate::topology::{Site, Subnet, Topology};

/// How a request travelled from its caller to an App Service front end.
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
}

/// The source a request arrives with, the path it took, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Egress {
    pub source: Source,
    pub path: EgressPath,
    /// Plain sentences that explain each routing step, for `explain` and the decision log.
    pub steps: Vec<String>,
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
        caller.route_all.enabled,
        &caller.name,
        steps,
        || shared_outbound_address(caller.plan_id.as_deref().unwrap_or(&caller.id)),
    )
}

/// Computes the source identity of a request from a machine in `subnet` (a VM, API Management
/// or Application Gateway) to App Service. Such callers always send through their VNet.
pub fn from_subnet_to_app_service(subnet: &Subnet) -> Egress {
    let steps = vec![format!("the caller sits in subnet `{}`", subnet.name)];
    from_subnet(subnet, true, &subnet.name, steps, || {
        public_address_of_subnet(&subnet.id)
    })
}

fn from_subnet(
    subnet: &Subnet,
    route_all: bool,
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
    if !route_all {
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
    if let Some(nat) = &subnet.nat_gateway {
        steps.push(format!(
            "route-all sends the call into subnet `{}`, which leaves through NAT gateway `{nat}`",
            subnet.name
        ));
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
        "route-all sends the call into subnet `{}`, which has no `Microsoft.Web` service endpoint, so it leaves through the default internet route",
        subnet.name
    ));
    Egress {
        source: Source::internet(public_address()),
        path: EgressPath::VnetInternet {
            subnet: subnet.id.clone(),
        },
        steps,
    }
}

/// A caller on the internet.
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

/// The synthetic shared outbound address of a plan, in 198.18.0.0/15 (RFC 2544, never routed).
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

/// The synthetic public address of a subnet's NAT gateway or default route, also in
/// 198.18.0.0/15.
pub fn public_address_of_subnet(subnet: &SubnetId) -> IpAddr {
    shared_outbound_address(&format!("nat:{}", subnet.as_str()))
}

/// The synthetic address the front end shows for service-endpoint traffic: an IPv6 ULA in
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
mod tests {
    use super::*;

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
