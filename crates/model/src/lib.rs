//! The typed Azure view of one deployment, and the checks Azure makes when it deploys.
//!
//! This crate is the one place that understands Azure resources. It turns the resources an
//! input format produced (today ARM templates through `subnetlock-arm`) into a [`Topology`]:
//! virtual networks and subnets with their service endpoints and delegations, App Service
//! plans, sites with their regional VNet integration, routing settings, app settings and access
//! restrictions. While it builds the topology it records [`Finding`]s for what Azure would
//! reject or silently ignore.
//!
//! It also holds the two pieces of Azure behaviour that both the static checker and the
//! emulator need: [`SimulatedProvider`], which answers `reference()` and `list*()` the way the
//! resource providers would (host names, function keys, trigger URLs), and [`egress`], which
//! decides the source identity a caller's request carries when it reaches a site. [`internet`]
//! picks the address that represents the internet at large, which both need as well.
//!
//! It does not decide access (that is `subnetlock-access`), report reachability
//! (`subnetlock-reach`) or run anything (`subnetlock-emulator`).

mod build;
pub mod egress;
mod findings;
pub mod internet;
mod provider;
#[cfg(any(test, feature = "test-support"))]
pub mod testing;
mod topology;
mod validate;

pub use build::{build_topology, is_synthetic_rule, parse_action, rule_finding};
pub use findings::{Finding, FindingCode, Severity};
pub use provider::{KeyMode, SimulatedProvider, SiteKeys};
pub use topology::*;
pub use validate::{validate, validate_redeploy, validate_scale_unit, ScaleUnit};
