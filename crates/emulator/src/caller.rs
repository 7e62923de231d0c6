//! Who sends a request through the emulated network, and the source Azure would see.
//!
//! A caller is fixed when its proxy listener starts (`app:<site>` for each bound app,
//! `internet:<address>` or `subnet:<name>` on request through the control API); the front end
//! never reads it from the request.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use subnetlock_access::Source;
use subnetlock_model::egress::{self, Egress};
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
}

/// Why a caller text cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, miette::Diagnostic)]
pub enum CallerError {
    #[error("invalid caller `{0}`")]
    #[diagnostic(help(
        "write `internet`, `internet:<address>` (for example internet:203.0.113.7 or internet:2001:db8::5), `app:<site name>` or `subnet:<name, vnet/name or id>`"
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
}

impl FromStr for Caller {
    type Err = CallerError;

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
                Ok(Caller::Internet(address))
            }
            "app" => Ok(Caller::App(value.to_owned())),
            "subnet" => Ok(Caller::Subnet(value.to_owned())),
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
        }
    }
}

impl Caller {
    /// Checks that the caller names something in the topology.
    pub fn validate(&self, topology: &Topology) -> Result<(), CallerError> {
        match self {
            Caller::App(site) if topology.site(site).is_none() => {
                Err(CallerError::UnknownSite(site.clone()))
            }
            Caller::Subnet(subnet) if topology.find_subnet(subnet).is_none() => {
                Err(CallerError::UnknownSubnet(subnet.clone()))
            }
            _ => Ok(()),
        }
    }

    /// The source and routing steps of a request from this caller to an App Service host.
    pub fn egress(&self, topology: &Topology) -> Result<Egress, CallerError> {
        match self {
            Caller::Internet(address) => Ok(egress::from_internet(*address)),
            Caller::App(name) => {
                let site = topology
                    .site(name)
                    .ok_or_else(|| CallerError::UnknownSite(name.clone()))?;
                Ok(egress::from_site_to_app_service(topology, site))
            }
            Caller::Subnet(text) => {
                let subnet = topology
                    .find_subnet(text)
                    .ok_or_else(|| CallerError::UnknownSubnet(text.clone()))?;
                Ok(egress::from_subnet_to_app_service(subnet))
            }
        }
    }

    /// The source of a request from this caller to an App Service host.
    pub fn source(&self, topology: &Topology) -> Result<Source, CallerError> {
        self.egress(topology).map(|egress| egress.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!("app:x".parse::<Caller>(), Ok(Caller::App("x".to_owned())));
        assert_eq!(
            "subnet:vnet/default".parse::<Caller>(),
            Ok(Caller::Subnet("vnet/default".to_owned()))
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
