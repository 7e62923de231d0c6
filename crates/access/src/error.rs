//! Errors in access-restriction rules, each classed by what Azure does with it.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{Action, IpNet};

/// A problem with one access-restriction rule or rule list.
///
/// Every variant keeps the offending value. [`RuleError::outcome`] tells whether Azure rejects
/// the deployment, only its portal and command-line tools reject it, or it deploys and then
/// behaves unexpectedly.
#[derive(Debug, Clone, PartialEq, thiserror::Error, miette::Diagnostic)]
pub enum RuleError {
    /// An `action` other than `Allow` or `Deny`.
    #[error("`action` value `{value}` is neither `Allow` nor `Deny`")]
    #[diagnostic(
        code(access::invalid_action),
        help("write `Allow` or `Deny`, without spaces")
    )]
    InvalidAction { value: String },

    /// A `priority` that is not a 32-bit integer.
    #[error("`priority` value `{value}` is not a 32-bit integer")]
    #[diagnostic(
        code(access::invalid_priority),
        help("write a whole number from -2147483648 to 2147483647; lower numbers are evaluated first")
    )]
    InvalidPriority { value: String },

    /// A single address with neither `/n` nor `subnetMask`.
    #[error("`ipAddress` value `{ip_address}` is a single address without a prefix length")]
    #[diagnostic(
        code(access::bare_ip_without_mask),
        help("write it in CIDR form, for example `{ip_address}/32` (or `/128` for IPv6)")
    )]
    BareIpWithoutMask { ip_address: String },

    /// An `ipAddress` entry (or an `X-Forwarded-For` filter value) that is not CIDR.
    #[error("`{value}` is not a valid CIDR range")]
    #[diagnostic(
        code(access::invalid_cidr),
        help("write `a.b.c.d/n` or `x:y::/n`; service tags need `tag: ServiceTag`")
    )]
    InvalidCidr { value: String },

    /// A CIDR with bits set below the prefix, for example `10.0.0.5/24`.
    #[error("`{value}` has host bits set; it is treated as `{network}`")]
    #[diagnostic(
        code(access::host_bits_set),
        severity(Warning),
        help("write the network address `{network}` to say what the rule matches")
    )]
    HostBitsSet { value: String, network: IpNet },

    /// `subnetMask` that is not a dotted IPv4 mask with contiguous one bits.
    #[error("`subnetMask` value `{subnet_mask}` is not a valid IPv4 subnet mask")]
    #[diagnostic(
        code(access::invalid_subnet_mask),
        help("use a dotted mask such as `255.255.255.0`, or drop `subnetMask` and write the address in CIDR form")
    )]
    InvalidSubnetMask { subnet_mask: String },

    /// `subnetMask` given with something other than one bare IPv4 address.
    #[error("`subnetMask` `{subnet_mask}` cannot be combined with `{source_value}`")]
    #[diagnostic(
        code(access::subnet_mask_not_applicable),
        help("`subnetMask` only goes with a single bare IPv4 `ipAddress`; remove it")
    )]
    SubnetMaskNotApplicable {
        source_value: String,
        subnet_mask: String,
    },

    /// Both `ipAddress` and `vnetSubnetResourceId` in one rule.
    #[error("rule sets both `ipAddress` `{ip_address}` and `vnetSubnetResourceId` `{vnet_subnet_resource_id}`")]
    #[diagnostic(
        code(access::ip_address_and_subnet),
        help("split it into one IP rule and one service-endpoint rule")
    )]
    IpAddressAndSubnet {
        ip_address: String,
        vnet_subnet_resource_id: String,
    },

    /// Neither `ipAddress` nor `vnetSubnetResourceId`.
    #[error("rule has neither `ipAddress` nor `vnetSubnetResourceId`")]
    #[diagnostic(
        code(access::missing_source),
        help(
            "set `ipAddress` (CIDR, `Any`, `AnyVnets` or service tags) or `vnetSubnetResourceId`"
        )
    )]
    MissingSource,

    /// `vnetSubnetResourceId` that is not an ARM subnet id.
    #[error("`vnetSubnetResourceId` `{value}` is not a subnet resource id")]
    #[diagnostic(
        code(access::invalid_subnet_id),
        help("use `/subscriptions/<id>/resourceGroups/<group>/providers/Microsoft.Network/virtualNetworks/<vnet>/subnets/<subnet>`")
    )]
    InvalidSubnetId { value: String },

    /// More than eight comma-separated ranges or service tags in one rule.
    #[error("`ipAddress` `{value}` lists {count} sources; the maximum is 8")]
    #[diagnostic(
        code(access::too_many_sources),
        help("split the sources over several rules")
    )]
    TooManySources { value: String, count: usize },

    /// A `ServiceTag` rule whose list also contains an IP range.
    #[error("`ipAddress` `{value}` mixes service tags and IP ranges")]
    #[diagnostic(
        code(access::mixed_tags_and_ranges),
        help("put the IP ranges in a separate rule with `tag: Default`")
    )]
    MixedTagsAndRanges { value: String },

    /// An empty or malformed entry in a `ServiceTag` rule's list.
    #[error("`{value}` is not a valid service tag name")]
    #[diagnostic(
        code(access::invalid_service_tag_name),
        help("use names such as `AzureFrontDoor.Backend`, separated by single commas")
    )]
    InvalidServiceTagName { value: String },

    /// A service tag that the loaded service-tag table does not know.
    #[error("service tag `{tag}` in rule {index} is not in the service-tag table")]
    #[diagnostic(
        code(access::unknown_service_tag),
        help(
            "check the spelling against the published service tags; tooling rejects unknown tags"
        )
    )]
    UnknownServiceTag { index: usize, tag: String },

    /// A `tag` value other than `Default`, `ServiceTag` and `XffProxy`.
    #[error("`tag` value `{tag}` is not one of `Default`, `ServiceTag`, `XffProxy`")]
    #[diagnostic(
        code(access::unknown_tag),
        help("use `Default` for IP and subnet rules")
    )]
    UnknownTag { tag: String },

    /// A rule with `tag: XffProxy`, whose behaviour Microsoft does not document.
    #[error("rule `{ip_address}` uses `tag: XffProxy`, whose behaviour is undocumented")]
    #[diagnostic(
        code(access::xff_proxy_tag),
        severity(Warning),
        help("use an IP rule with an `x-forwarded-for` header filter instead")
    )]
    XffProxyTag { ip_address: String },

    /// A header filter on a header other than the four supported ones.
    #[error("header filter `{name}` is not supported")]
    #[diagnostic(
        code(access::unsupported_header),
        help("use `x-forwarded-for`, `x-forwarded-host`, `x-azure-fdid` or `x-fd-healthprobe`")
    )]
    UnsupportedHeader { name: String },

    /// More than eight values for one header filter.
    #[error("header filter `{name}` lists {count} values; the maximum is 8")]
    #[diagnostic(
        code(access::too_many_header_values),
        help("split the values over several rules")
    )]
    TooManyHeaderValues { name: String, count: usize },

    /// A header filter value longer than 64 characters.
    #[error("header filter `{name}` value `{value}` is longer than 64 characters")]
    #[diagnostic(
        code(access::header_value_too_long),
        help("shorten the value to 64 characters or fewer")
    )]
    HeaderValueTooLong { name: String, value: String },

    /// An `x-forwarded-host` filter value that is not a host name or a `*.` wildcard.
    #[error("`x-forwarded-host` filter value `{value}` is not a host name")]
    #[diagnostic(
        code(access::invalid_forwarded_host),
        help("write a host name such as `contoso.com` or `*.contoso.com`, without scheme or port")
    )]
    InvalidForwardedHost { value: String },

    /// More than 512 rules in one list.
    #[error("rule list has {count} rules; the maximum is 512")]
    #[diagnostic(
        code(access::too_many_rules),
        help("merge ranges into multi-source rules")
    )]
    TooManyRules { count: usize },

    /// A hand-written `Any` rule at priority 2147483647, the slot of the synthetic rule.
    ///
    /// The engine still evaluates such a rule when it is in a [`crate::RuleList`]; code that
    /// builds lists from templates should leave it out to match Azure.
    #[error("rule {index} (`{action}` `Any` at priority 2147483647) takes the place of the implicit rule and is dropped")]
    #[diagnostic(
        code(access::synthetic_rule_written),
        severity(Warning),
        help("set `ipSecurityRestrictionsDefaultAction` (or the scm one) to `{action}` instead")
    )]
    SyntheticRuleWritten { index: usize, action: Action },

    /// Two service-endpoint rules for the same subnet with the same header filters.
    #[error("rule {index} repeats the service-endpoint rule for subnet `{subnet}` with the same header filters")]
    #[diagnostic(
        code(access::duplicate_subnet_rule),
        help("remove one of the two rules")
    )]
    DuplicateSubnetRule { index: usize, subnet: String },
}

/// Azure's response to a rule error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Outcome {
    /// Azure Resource Manager rejects the deployment.
    DeployFails,
    /// Only the portal, Azure CLI or PowerShell reject it; an ARM template deploys.
    ToolingRejects,
    /// It deploys, then has no effect or an unexpected one at run time.
    Silent,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::DeployFails => f.write_str("deployment fails"),
            Outcome::ToolingRejects => f.write_str("tooling rejects"),
            Outcome::Silent => f.write_str("silent"),
        }
    }
}

impl RuleError {
    /// Azure's outcome class for this error.
    ///
    /// NOTE: only the bare-address case and the `ipAddress` plus `vnetSubnetResourceId` case
    /// were observed failing deployments. Malformed CIDR, bad `subnetMask`, unreadable subnet
    /// ids, unknown `tag` values, an `action` other than Allow or Deny, a priority outside
    /// Int32 and more than 512 rules are presumed to fail the same way.
    /// Limits that only the CLI and PowerShell are known to enforce (8 sources, 8 header
    /// values, header names, service-tag names) are classed as tooling-only.
    pub fn outcome(&self) -> Outcome {
        match self {
            RuleError::BareIpWithoutMask { .. }
            | RuleError::InvalidAction { .. }
            | RuleError::InvalidPriority { .. }
            | RuleError::InvalidCidr { .. }
            | RuleError::InvalidSubnetMask { .. }
            | RuleError::SubnetMaskNotApplicable { .. }
            | RuleError::IpAddressAndSubnet { .. }
            | RuleError::MissingSource
            | RuleError::InvalidSubnetId { .. }
            | RuleError::UnknownTag { .. }
            | RuleError::TooManyRules { .. } => Outcome::DeployFails,

            RuleError::TooManySources { .. }
            | RuleError::MixedTagsAndRanges { .. }
            | RuleError::InvalidServiceTagName { .. }
            | RuleError::UnknownServiceTag { .. }
            | RuleError::UnsupportedHeader { .. }
            | RuleError::TooManyHeaderValues { .. }
            | RuleError::HeaderValueTooLong { .. }
            | RuleError::InvalidForwardedHost { .. }
            | RuleError::DuplicateSubnetRule { .. } => Outcome::ToolingRejects,

            RuleError::HostBitsSet { .. }
            | RuleError::XffProxyTag { .. }
            | RuleError::SyntheticRuleWritten { .. } => Outcome::Silent,
        }
    }

    /// The error text Azure returns for this case, where it is known.
    ///
    /// Only the bare-address case has a recorded message, quoted from a 2023 deployment
    /// failure in <https://github.com/Azure/arm-template-whatif/issues/296> (two spaces after
    /// the first full stop, as Azure writes it).
    pub fn azure_message(&self) -> Option<String> {
        match self {
            RuleError::BareIpWithoutMask { ip_address } => Some(format!(
                "IpSecurityRestriction.IpAddress is invalid.  '{ip_address}' is an invalid CIDR!"
            )),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use miette::Diagnostic;

    #[test]
    fn bare_ip_message_and_help() {
        let error = RuleError::BareIpWithoutMask {
            ip_address: "123.123.123.123".into(),
        };
        assert_eq!(
            error.to_string(),
            "`ipAddress` value `123.123.123.123` is a single address without a prefix length"
        );
        assert_eq!(
            error.help().map(|h| h.to_string()).as_deref(),
            Some("write it in CIDR form, for example `123.123.123.123/32` (or `/128` for IPv6)")
        );
        assert_eq!(error.outcome(), Outcome::DeployFails);
    }

    #[test]
    fn bare_ip_azure_message() {
        let error = RuleError::BareIpWithoutMask {
            ip_address: "123.123.123.123".into(),
        };
        assert_eq!(
            error.azure_message().as_deref(),
            Some("IpSecurityRestriction.IpAddress is invalid.  '123.123.123.123' is an invalid CIDR!")
        );
    }

    #[test]
    fn outcome_classes() {
        let cases = [
            (RuleError::MissingSource, Outcome::DeployFails),
            (
                RuleError::UnsupportedHeader {
                    name: "x-client-ip".into(),
                },
                Outcome::ToolingRejects,
            ),
            (
                RuleError::HostBitsSet {
                    value: "10.0.0.5/24".into(),
                    network: IpNet::parse("10.0.0.0/24").unwrap(),
                },
                Outcome::Silent,
            ),
        ];
        for (error, outcome) in cases {
            assert_eq!(error.outcome(), outcome, "{error}");
        }
    }

    #[test]
    fn other_errors_have_no_azure_message() {
        assert_eq!(RuleError::MissingSource.azure_message(), None);
    }
}
