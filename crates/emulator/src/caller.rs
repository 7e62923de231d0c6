//! Who sends a request through the emulated network, and the source Azure would see.
//!
//! A caller is fixed when its proxy listener starts (`app:<site>` for each bound app,
//! `internet:<address>`, `subnet:<name>` or `servicetag:<tag>` on request through the control
//! API); the front end never reads it from the request.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use subnetlock_access::{ServiceTagTable, Source};
use subnetlock_model::egress::{self, Destination, Egress, EgressPath};
use subnetlock_model::Topology;

/// A sender of requests.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Caller {
    /// An app of the deployment, by site name; its regional VNet integration decides the source.
    App(String),
    /// A machine on the internet at this address.
    Internet(IpAddr),
    /// A machine (VM, API Management, Application Gateway) in this subnet: id, `vnet/subnet`
    /// or a unique subnet name.
    Subnet(String),
    /// A service on the Azure backbone that belongs to this service tag, for example an
    /// Azure Front Door profile in `AzureFrontDoor.Backend`.
    ServiceTag(String),
}

/// Why a caller text cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, miette::Diagnostic)]
pub enum CallerError {
    #[error("invalid caller `{0}`")]
    #[diagnostic(help(
        "write `internet`, `internet:<address>` (for example internet:203.0.113.7 or internet:2001:db8::5), `app:<site name>`, `subnet:<name, vnet/name or id>` or `servicetag:<tag>`"
    ))]
    Syntax(String),
    #[error("invalid address `{address}` in caller `{caller}`")]
    #[diagnostic(help("give an IPv4 or IPv6 address, for example 203.0.113.7"))]
    Address { caller: String, address: String },
    #[error("no site named `{0}` in this deployment")]
    #[diagnostic(help("`subnetlock up` prints the site names; patterns are not accepted here"))]
    UnknownSite(String),
    #[error("no subnet `{0}` in this deployment, or the name is not unique")]
    #[diagnostic(help("name the subnet as `vnet/subnet` or by its full id"))]
    UnknownSubnet(String),
    #[error(
        "no service tag `{tag}` in the service-tag file `up` loaded{}",
        similar_hint(similar)
    )]
    #[diagnostic(help(
        "write the tag as the file's `values[].name` spells it, for example `AzureFrontDoor.Backend`"
    ))]
    UnknownServiceTag {
        tag: String,
        /// Tags of the file with a similar name, comma-separated; empty when none.
        similar: String,
    },
    #[error("outbound rule `{rule}` of network security group `{network_security_group}` on the subnet of caller `{caller}` drops the request")]
    #[diagnostic(help(
        "allow outbound TCP 443 to the `AppService` service tag (or `VirtualNetwork` for private endpoints) in the network security group"
    ))]
    BlockedByNsg {
        caller: String,
        network_security_group: String,
        rule: String,
    },
}

fn similar_hint(similar: &str) -> String {
    if similar.is_empty() {
        String::new()
    } else {
        format!(" (tags with a similar name: {similar})")
    }
}

impl FromStr for Caller {
    type Err = CallerError;

    /// Parses a caller text. `internet` alone is [`egress::INTERNET_SAMPLE`], because no
    /// topology is at hand; [`Caller::parse_in`] picks the address for a deployment.
    fn from_str(text: &str) -> Result<Caller, CallerError> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("internet") {
            return Ok(Caller::Internet(egress::INTERNET_SAMPLE));
        }
        let (kind, value) = text
            .split_once(':')
            .ok_or_else(|| CallerError::Syntax(text.to_owned()))?;
        if value.is_empty() {
            return Err(CallerError::Syntax(text.to_owned()));
        }
        match kind.to_ascii_lowercase().as_str() {
            "internet" => {
                let trimmed = value.trim_start_matches('[').trim_end_matches(']');
                let address = trimmed.parse().map_err(|_| CallerError::Address {
                    caller: text.to_owned(),
                    address: value.to_owned(),
                })?;
                // An IPv4-mapped IPv6 address is an IPv4 caller, as for a direct TCP peer.
                Ok(Caller::Internet(crate::frontend::canonical_peer(address)))
            }
            "app" => Ok(Caller::App(value.to_owned())),
            "subnet" => Ok(Caller::Subnet(value.to_owned())),
            "servicetag" => Ok(Caller::ServiceTag(value.to_owned())),
            _ => Err(CallerError::Syntax(text.to_owned())),
        }
    }
}

impl fmt::Display for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Caller::App(site) => write!(f, "app:{site}"),
            Caller::Internet(address) => write!(f, "internet:{address}"),
            Caller::Subnet(subnet) => write!(f, "subnet:{subnet}"),
            Caller::ServiceTag(tag) => write!(f, "servicetag:{tag}"),
        }
    }
}

impl Caller {
    /// Parses `text` as [`FromStr`] does, except that `internet` alone means the address that
    /// represents the internet at large in `topology`, as `check` and `explain` choose it with
    /// the same `service_tags`: not [`egress::INTERNET_SAMPLE`] when a rule's range, or a
    /// prefix of a service tag that a rule names, contains that address.
    pub fn parse_in(
        text: &str,
        topology: &Topology,
        service_tags: Option<&ServiceTagTable>,
    ) -> Result<Caller, CallerError> {
        if text.trim().eq_ignore_ascii_case("internet") {
            return Ok(Caller::Internet(
                subnetlock_model::internet::unnamed_internet_v4(topology, service_tags),
            ));
        }
        text.parse()
    }

    /// Checks that the caller names something in the topology, or a tag of `service_tags`
    /// when a service-tag table was loaded.
    pub fn validate(
        &self,
        topology: &Topology,
        service_tags: Option<&ServiceTagTable>,
    ) -> Result<(), CallerError> {
        match self {
            Caller::ServiceTag(tag) => match service_tags {
                Some(table) if table.prefixes(tag).is_none() => {
                    Err(CallerError::UnknownServiceTag {
                        tag: tag.clone(),
                        similar: table.similar_names(tag, 5).join(", "),
                    })
                }
                _ => Ok(()),
            },
            Caller::App(site) if topology.site(site).is_none() => {
                Err(CallerError::UnknownSite(site.clone()))
            }
            Caller::Subnet(subnet) if topology.find_subnet(subnet).is_none() => {
                Err(CallerError::UnknownSubnet(subnet.clone()))
            }
            _ => Ok(()),
        }
    }

    /// Returns the source and routing steps of a request from this caller to the public address
    /// of an App Service host when the target is not known.
    pub fn egress(&self, topology: &Topology) -> Result<Egress, CallerError> {
        self.egress_to(topology, None, None)
    }

    /// Returns the source and routing steps of a request from this caller to `host`. The host
    /// selects the private-endpoint and App Service Environment paths. A `servicetag:` caller
    /// takes its address from `service_tags`, the table the front end uses.
    pub fn egress_to(
        &self,
        topology: &Topology,
        host: Option<&str>,
        service_tags: Option<&ServiceTagTable>,
    ) -> Result<Egress, CallerError> {
        let target = host
            .and_then(|host| topology.site_for_host(host))
            .map(|(site, kind)| Destination { site, kind });
        match self {
            Caller::Internet(address) => Ok(egress::from_internet(*address)),
            Caller::App(name) => {
                let site = topology
                    .site(name)
                    .ok_or_else(|| CallerError::UnknownSite(name.clone()))?;
                Ok(egress::from_site_to_site(topology, site, target))
            }
            Caller::Subnet(text) => {
                let subnet = topology
                    .find_subnet(text)
                    .ok_or_else(|| CallerError::UnknownSubnet(text.clone()))?;
                Ok(egress::from_subnet_to_site(topology, subnet, target))
            }
            Caller::ServiceTag(tag) => {
                self.validate(topology, service_tags)?;
                Ok(egress::from_service_tag(tag, service_tags))
            }
        }
    }

    /// Returns the source of a request from this caller to the public address of an App
    /// Service host. Fails with [`CallerError::BlockedByNsg`] when the request never reaches the
    /// front end.
    pub fn source(&self, topology: &Topology) -> Result<Source, CallerError> {
        self.source_to(topology, None, None)
    }

    /// Returns the source of a request from this caller to `host`, as [`Caller::egress_to`]
    /// computes it. Fails
    /// with [`CallerError::BlockedByNsg`] when the request never reaches the front end.
    pub fn source_to(
        &self,
        topology: &Topology,
        host: Option<&str>,
        service_tags: Option<&ServiceTagTable>,
    ) -> Result<Source, CallerError> {
        let egress = self.egress_to(topology, host, service_tags)?;
        match egress.path {
            EgressPath::BlockedByNsg {
                network_security_group,
                rule,
                ..
            } => Err(CallerError::BlockedByNsg {
                caller: self.to_string(),
                network_security_group,
                rule,
            }),
            _ => Ok(egress.source),
        }
    }
}

#[cfg(test)]
#[allow(clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn unknown_service_tag_is_rejected_with_a_table() {
        let table = ServiceTagTable::from_prefixes([(
            "AzureFrontDoor.Backend",
            vec![
                subnetlock_access::IpNet::new("147.243.0.0".parse().expect("ip"), 16)
                    .expect("prefix"),
            ],
        )]);
        let topology = Topology::default();
        let unknown = Caller::ServiceTag("Nope".to_owned());
        assert_eq!(
            unknown.validate(&topology, Some(&table)),
            Err(CallerError::UnknownServiceTag {
                tag: "Nope".to_owned(),
                similar: String::new(),
            })
        );
        assert!(unknown.source_to(&topology, None, Some(&table)).is_err());
        // Without a file every name is accepted, as the analysis does.
        assert_eq!(unknown.validate(&topology, None), Ok(()));

        let misspelt = Caller::ServiceTag("frontdoor".to_owned());
        let message = misspelt
            .validate(&topology, Some(&table))
            .expect_err("unknown")
            .to_string();
        assert!(
            message.ends_with("(tags with a similar name: AzureFrontDoor.Backend)"),
            "{message}"
        );
        let known = Caller::ServiceTag("azurefrontdoor.backend".to_owned());
        assert_eq!(known.validate(&topology, Some(&table)), Ok(()));
    }

    #[test]
    fn parse_callers() {
        assert_eq!(
            "internet:203.0.113.7".parse::<Caller>(),
            Ok(Caller::Internet("203.0.113.7".parse().expect("ip")))
        );
        assert_eq!(
            "internet:[2001:db8::5]".parse::<Caller>(),
            Ok(Caller::Internet("2001:db8::5".parse().expect("ip")))
        );
        assert_eq!(
            "internet".parse::<Caller>(),
            Ok(Caller::Internet(egress::INTERNET_SAMPLE))
        );
        assert_eq!(
            "internet:::ffff:1.2.3.4".parse::<Caller>(),
            Ok(Caller::Internet("1.2.3.4".parse().expect("ip")))
        );
        assert_eq!("app:x".parse::<Caller>(), Ok(Caller::App("x".to_owned())));
        assert_eq!(
            "subnet:vnet/default".parse::<Caller>(),
            Ok(Caller::Subnet("vnet/default".to_owned()))
        );
        assert_eq!(
            "servicetag:AzureFrontDoor.Backend".parse::<Caller>(),
            Ok(Caller::ServiceTag("AzureFrontDoor.Backend".to_owned()))
        );
    }

    #[test]
    fn parse_in_internet_avoids_named_sample() {
        // A rule denies the range of the usual sample; the rest of the internet is allowed.
        let topology = subnetlock_model::testing::one_site_topology(serde_json::json!({
            "ipSecurityRestrictionsDefaultAction": "Allow",
            "ipSecurityRestrictions": [{ "ipAddress": "203.0.113.0/24",
                "action": "Deny", "priority": 100, "name": "deny-doc" }]
        }));

        let internet = Caller::parse_in(" Internet ", &topology, None).expect("caller");
        assert_eq!(
            internet,
            Caller::Internet("198.51.100.10".parse().expect("ip"))
        );
        // A written address stays as written, even inside the rule's range.
        assert_eq!(
            Caller::parse_in("internet:203.0.113.10", &topology, None),
            Ok(Caller::Internet(egress::INTERNET_SAMPLE))
        );
        // Without rules, `internet` is the sample.
        assert_eq!(
            Caller::parse_in("internet", &Topology::default(), None),
            Ok(Caller::Internet(egress::INTERNET_SAMPLE))
        );
    }

    #[test]
    fn parse_rejects_bad_callers() {
        assert!(matches!(
            "vm:x".parse::<Caller>(),
            Err(CallerError::Syntax(_))
        ));
        assert!(matches!(
            "app:".parse::<Caller>(),
            Err(CallerError::Syntax(_))
        ));
        assert!(matches!(
            "internet:300.1.1.1".parse::<Caller>(),
            Err(CallerError::Address { .. })
        ));
    }
}
