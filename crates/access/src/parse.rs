//! Turns the raw fields of an `IpSecurityRestriction` into checked rule parts, with the
//! checks Azure and its tooling apply.
//!
//! The rule kind follows the ARM object: `vnetSubnetResourceId` makes a service-endpoint
//! rule, else `tag: ServiceTag` makes a service-tag rule, else `ipAddress` (with an optional
//! legacy `subnetMask`) makes an IP rule. Field reference:
//! <https://learn.microsoft.com/azure/templates/microsoft.web/sites/config-web>.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};

use crate::net::{mask_to_prefix, parse_cidr};
use crate::{
    HeaderFilters, IpNet, RuleError, RuleList, ServiceTagTable, SourceCondition, SubnetId,
};

/// Maximum number of ranges or service tags in one multi-source rule
/// (<https://learn.microsoft.com/azure/app-service/app-service-ip-restrictions>).
pub const MAX_SOURCES_PER_RULE: usize = 8;

/// Maximum number of values per header filter of one rule.
pub const MAX_HEADER_VALUES: usize = 8;

/// Maximum length of an `X-Forwarded-Host`, `X-Azure-FDID` or `X-FD-HealthProbe` filter
/// value, in characters.
pub const MAX_HEADER_VALUE_CHARS: usize = 64;

/// Maximum number of rules in the main or the scm list of one site.
pub const MAX_RULES: usize = 512;

/// Priority of the rule the platform synthesises for the unmatched case (`Int32.MaxValue`).
pub const SYNTHETIC_RULE_PRIORITY: i64 = 2_147_483_647;

/// Parses one `IpSecurityRestriction`'s source fields into a [`SourceCondition`], with Azure's
/// checks.
///
/// Empty strings count as absent. Warnings (host bits set, `XffProxy`) are dropped here;
/// [`parse_source_with_warnings`] returns them.
pub fn parse_source(
    ip_address: Option<&str>,
    subnet_mask: Option<&str>,
    vnet_subnet_resource_id: Option<&str>,
    tag: Option<&str>,
) -> Result<SourceCondition, RuleError> {
    parse_source_with_warnings(ip_address, subnet_mask, vnet_subnet_resource_id, tag)
        .map(|(source, _warnings)| source)
}

/// Parses like [`parse_source`] and also returns the warnings, errors whose
/// [`RuleError::outcome`] is [`crate::Outcome::Silent`] and which leave a usable source.
pub fn parse_source_with_warnings(
    ip_address: Option<&str>,
    subnet_mask: Option<&str>,
    vnet_subnet_resource_id: Option<&str>,
    tag: Option<&str>,
) -> Result<(SourceCondition, Vec<RuleError>), RuleError> {
    let ip_address = present(ip_address);
    let subnet_mask = present(subnet_mask);
    let subnet = present(vnet_subnet_resource_id);
    let kind = parse_tag(present(tag))?;

    if let Some(subnet) = subnet {
        if let Some(ip_address) = ip_address {
            return Err(RuleError::IpAddressAndSubnet {
                ip_address: ip_address.to_owned(),
                vnet_subnet_resource_id: subnet.to_owned(),
            });
        }
        if let Some(mask) = subnet_mask {
            return Err(mask_not_applicable(subnet, mask));
        }
        check_subnet_id(subnet)?;
        return Ok((SourceCondition::Subnet(SubnetId::new(subnet)), Vec::new()));
    }

    let Some(ip_address) = ip_address else {
        return Err(RuleError::MissingSource);
    };

    match kind {
        RuleTag::ServiceTag => {
            if let Some(mask) = subnet_mask {
                return Err(mask_not_applicable(ip_address, mask));
            }
            parse_service_tags(ip_address).map(|tags| (tags, Vec::new()))
        }
        RuleTag::Default => parse_ip_source(ip_address, subnet_mask, false),
        RuleTag::XffProxy => {
            let (source, mut warnings) = parse_ip_source(ip_address, subnet_mask, true)?;
            warnings.push(RuleError::XffProxyTag {
                ip_address: ip_address.to_owned(),
            });
            Ok((source, warnings))
        }
    }
}

/// Parses the `headers` map (name -> values) of one rule.
///
/// Names compare ignoring case, and a name given twice in different case is merged.
/// `x-forwarded-host` values are stored lower-case, with Unicode labels converted to
/// Punycode, because the front end compares them that way. Warnings are dropped here;
/// [`parse_header_filters_with_warnings`] returns them.
pub fn parse_header_filters(headers: &[(String, Vec<String>)]) -> Result<HeaderFilters, RuleError> {
    parse_header_filters_with_warnings(headers).map(|(filters, _warnings)| filters)
}

/// Parses like [`parse_header_filters`] and also returns the warnings (host bits set in an
/// `x-forwarded-for` range).
pub fn parse_header_filters_with_warnings(
    headers: &[(String, Vec<String>)],
) -> Result<(HeaderFilters, Vec<RuleError>), RuleError> {
    let mut filters = HeaderFilters::default();
    let mut warnings = Vec::new();

    for (name, values) in headers {
        let header = FilterHeader::from_name(name)
            .ok_or_else(|| RuleError::UnsupportedHeader { name: name.clone() })?;

        for value in values {
            let value = value.trim();
            if header != FilterHeader::ForwardedFor
                && value.chars().count() > MAX_HEADER_VALUE_CHARS
            {
                return Err(RuleError::HeaderValueTooLong {
                    name: header.name().to_owned(),
                    value: value.to_owned(),
                });
            }

            match header {
                FilterHeader::ForwardedFor => {
                    let (net, warning) = parse_forwarded_for_filter(value)?;
                    warnings.extend(warning);
                    filters.x_forwarded_for.push(net);
                }
                FilterHeader::ForwardedHost => {
                    filters.x_forwarded_host.push(normalize_host_filter(value)?)
                }
                FilterHeader::AzureFdid => filters.x_azure_fdid.push(value.to_owned()),
                FilterHeader::FdHealthProbe => filters.x_fd_health_probe.push(value.to_owned()),
            }
        }
    }

    for (header, count) in header_value_counts(&filters) {
        if count > MAX_HEADER_VALUES {
            return Err(RuleError::TooManyHeaderValues {
                name: header.name().to_owned(),
                count,
            });
        }
    }

    Ok((filters, warnings))
}

/// Checks the limits of a whole rule list: at most 512 rules, at most 8 sources and 8 values
/// per header in each rule, no hand-written copy of the synthetic implicit rule and no
/// repeated service-endpoint rule.
pub fn validate_list(list: &RuleList) -> Vec<RuleError> {
    let mut errors = Vec::new();

    if list.rules.len() > MAX_RULES {
        errors.push(RuleError::TooManyRules {
            count: list.rules.len(),
        });
    }

    for rule in &list.rules {
        if let Some(count) =
            source_count(&rule.source).filter(|count| *count > MAX_SOURCES_PER_RULE)
        {
            errors.push(RuleError::TooManySources {
                value: source_text(&rule.source),
                count,
            });
        }

        for (header, count) in header_value_counts(&rule.headers) {
            if count > MAX_HEADER_VALUES {
                errors.push(RuleError::TooManyHeaderValues {
                    name: header.name().to_owned(),
                    count,
                });
            }
        }

        // The platform reports the implicit rule as `Any` at Int32.MaxValue and drops a
        // hand-written rule in that slot, so the unmatched action stays as it was
        // (https://github.com/Azure/azure-dev/issues/1112).
        if rule.source == SourceCondition::Any && rule.priority == SYNTHETIC_RULE_PRIORITY {
            errors.push(RuleError::SyntheticRuleWritten {
                index: rule.index,
                action: rule.action,
            });
        }
    }

    // Azure CLI refuses a second service-endpoint rule for the same subnet with the same
    // header filters.
    let mut seen: HashMap<&SubnetId, Vec<&HeaderFilters>> = HashMap::new();
    for rule in &list.rules {
        if let SourceCondition::Subnet(subnet) = &rule.source {
            let earlier = seen.entry(subnet).or_default();
            if earlier.contains(&&rule.headers) {
                errors.push(RuleError::DuplicateSubnetRule {
                    index: rule.index,
                    subnet: subnet.to_string(),
                });
            }
            earlier.push(&rule.headers);
        }
    }

    errors
}

/// Reports every service tag in `list` that `table` does not contain.
///
/// The portal, Azure CLI and PowerShell check tag names against the published list; whether
/// Azure Resource Manager does is not documented.
pub fn validate_service_tags(list: &RuleList, table: &ServiceTagTable) -> Vec<RuleError> {
    let mut errors = Vec::new();
    for rule in &list.rules {
        if let SourceCondition::ServiceTags(tags) = &rule.source {
            for tag in tags {
                if table.prefixes(tag).is_none() {
                    errors.push(RuleError::UnknownServiceTag {
                        index: rule.index,
                        tag: tag.clone(),
                    });
                }
            }
        }
    }
    errors
}

/// The four headers a rule can filter on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FilterHeader {
    ForwardedFor,
    ForwardedHost,
    AzureFdid,
    FdHealthProbe,
}

impl FilterHeader {
    fn from_name(name: &str) -> Option<FilterHeader> {
        let name = name.trim();
        [
            FilterHeader::ForwardedFor,
            FilterHeader::ForwardedHost,
            FilterHeader::AzureFdid,
            FilterHeader::FdHealthProbe,
        ]
        .into_iter()
        .find(|header| header.name().eq_ignore_ascii_case(name))
    }

    fn name(self) -> &'static str {
        match self {
            FilterHeader::ForwardedFor => "x-forwarded-for",
            FilterHeader::ForwardedHost => "x-forwarded-host",
            FilterHeader::AzureFdid => "x-azure-fdid",
            FilterHeader::FdHealthProbe => "x-fd-healthprobe",
        }
    }
}

/// The `tag` field of `IpSecurityRestriction`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RuleTag {
    Default,
    ServiceTag,
    XffProxy,
}

fn parse_tag(tag: Option<&str>) -> Result<RuleTag, RuleError> {
    let Some(tag) = tag else {
        return Ok(RuleTag::Default);
    };
    if tag.eq_ignore_ascii_case("Default") {
        Ok(RuleTag::Default)
    } else if tag.eq_ignore_ascii_case("ServiceTag") {
        Ok(RuleTag::ServiceTag)
    } else if tag.eq_ignore_ascii_case("XffProxy") {
        Ok(RuleTag::XffProxy)
    } else {
        Err(RuleError::UnknownTag {
            tag: tag.to_owned(),
        })
    }
}

/// An IP rule (`tag: Default`) or, with `xff_proxy`, the ranges of an `XffProxy` rule.
fn parse_ip_source(
    ip_address: &str,
    subnet_mask: Option<&str>,
    xff_proxy: bool,
) -> Result<(SourceCondition, Vec<RuleError>), RuleError> {
    if ip_address.eq_ignore_ascii_case("Any") {
        if let Some(mask) = subnet_mask {
            return Err(mask_not_applicable(ip_address, mask));
        }
        let source = if xff_proxy {
            SourceCondition::XffProxy(vec![all_v4(), all_v6()])
        } else {
            SourceCondition::Any
        };
        return Ok((source, Vec::new()));
    }

    if ip_address.eq_ignore_ascii_case("AnyVnets") && !xff_proxy {
        if let Some(mask) = subnet_mask {
            return Err(mask_not_applicable(ip_address, mask));
        }
        return Ok((SourceCondition::AnyVnets, Vec::new()));
    }

    let mut warnings = Vec::new();
    let nets = match subnet_mask {
        Some(mask) => vec![parse_masked_address(ip_address, mask, &mut warnings)?],
        None => parse_ranges(ip_address, &mut warnings)?,
    };

    let source = if xff_proxy {
        SourceCondition::XffProxy(nets)
    } else {
        SourceCondition::Ranges(nets)
    };
    Ok((source, warnings))
}

/// The legacy form: a bare IPv4 address plus a dotted `subnetMask`.
fn parse_masked_address(
    ip_address: &str,
    subnet_mask: &str,
    warnings: &mut Vec<RuleError>,
) -> Result<IpNet, RuleError> {
    let Ok(address) = ip_address.parse::<Ipv4Addr>() else {
        let is_other_source =
            ip_address.contains(['/', ',']) || ip_address.parse::<IpAddr>().is_ok();
        return Err(if is_other_source {
            mask_not_applicable(ip_address, subnet_mask)
        } else {
            RuleError::InvalidCidr {
                value: ip_address.to_owned(),
            }
        });
    };

    let prefix = mask_to_prefix(subnet_mask).ok_or_else(|| RuleError::InvalidSubnetMask {
        subnet_mask: subnet_mask.to_owned(),
    })?;
    let net =
        IpNet::new(IpAddr::V4(address), prefix).ok_or_else(|| RuleError::InvalidSubnetMask {
            subnet_mask: subnet_mask.to_owned(),
        })?;

    if net.network != IpAddr::V4(address) {
        warnings.push(RuleError::HostBitsSet {
            value: format!("{ip_address} mask {subnet_mask}"),
            network: net,
        });
    }
    Ok(net)
}

/// One to eight comma-separated CIDR ranges.
fn parse_ranges(ip_address: &str, warnings: &mut Vec<RuleError>) -> Result<Vec<IpNet>, RuleError> {
    let entries: Vec<&str> = ip_address.split(',').map(str::trim).collect();
    if entries.len() > MAX_SOURCES_PER_RULE {
        return Err(RuleError::TooManySources {
            value: ip_address.to_owned(),
            count: entries.len(),
        });
    }

    let mut nets = Vec::with_capacity(entries.len());
    for entry in entries {
        let parsed = parse_cidr(entry)?;
        if parsed.host_bits_set {
            warnings.push(RuleError::HostBitsSet {
                value: entry.to_owned(),
                network: parsed.net,
            });
        }
        nets.push(parsed.net);
    }
    Ok(nets)
}

/// One to eight comma-separated service tag names, kept as written.
fn parse_service_tags(ip_address: &str) -> Result<SourceCondition, RuleError> {
    let entries: Vec<&str> = ip_address.split(',').map(str::trim).collect();
    if entries.len() > MAX_SOURCES_PER_RULE {
        return Err(RuleError::TooManySources {
            value: ip_address.to_owned(),
            count: entries.len(),
        });
    }

    let mut tags = Vec::with_capacity(entries.len());
    for entry in entries {
        if parse_cidr(entry).is_ok() || entry.parse::<IpAddr>().is_ok() {
            return Err(RuleError::MixedTagsAndRanges {
                value: ip_address.to_owned(),
            });
        }
        let well_formed = !entry.is_empty()
            && entry
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_');
        if !well_formed {
            return Err(RuleError::InvalidServiceTagName {
                value: entry.to_owned(),
            });
        }
        tags.push(entry.to_owned());
    }
    Ok(SourceCondition::ServiceTags(tags))
}

/// Checks the shape `/subscriptions/<id>/resourceGroups/<group>/providers/
/// Microsoft.Network/virtualNetworks/<vnet>/subnets/<subnet>`, ignoring case.
fn check_subnet_id(id: &str) -> Result<(), RuleError> {
    let segments: Vec<&str> = id.split('/').collect();
    let fixed = [
        (1, "subscriptions"),
        (3, "resourceGroups"),
        (5, "providers"),
        (6, "Microsoft.Network"),
        (7, "virtualNetworks"),
        (9, "subnets"),
    ];

    let shape_ok = segments.len() == 11
        && segments.first() == Some(&"")
        && fixed.iter().all(|(at, word)| {
            segments
                .get(*at)
                .is_some_and(|segment| segment.eq_ignore_ascii_case(word))
        })
        && [2, 4, 8, 10]
            .iter()
            .all(|at| segments.get(*at).is_some_and(|name| !name.is_empty()));

    if shape_ok {
        Ok(())
    } else {
        Err(RuleError::InvalidSubnetId {
            value: id.to_owned(),
        })
    }
}

/// An `x-forwarded-for` filter value: a CIDR range or, as the current documentation allows,
/// a single address (taken as `/32` or `/128`).
fn parse_forwarded_for_filter(value: &str) -> Result<(IpNet, Option<RuleError>), RuleError> {
    if let Ok(address) = value.parse::<IpAddr>() {
        return Ok((IpNet::host(address), None));
    }

    let parsed = parse_cidr(value).map_err(|_| RuleError::InvalidCidr {
        value: value.to_owned(),
    })?;
    let warning = parsed.host_bits_set.then(|| RuleError::HostBitsSet {
        value: value.to_owned(),
        network: parsed.net,
    });
    Ok((parsed.net, warning))
}

/// Normalises an `x-forwarded-host` filter value to lower-case ASCII (Punycode), keeping a
/// leading `*.` wildcard.
pub(crate) fn normalize_host_filter(value: &str) -> Result<String, RuleError> {
    let invalid = || RuleError::InvalidForwardedHost {
        value: value.to_owned(),
    };

    let (wildcard, host) = match value.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, value),
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.is_empty() || host.contains('*') {
        return Err(invalid());
    }

    let ascii = idna::domain_to_ascii(host)
        .map_err(|_| invalid())?
        .to_ascii_lowercase();
    let labels_ok = ascii.split('.').all(|label| {
        !label.is_empty()
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    });
    if !labels_ok {
        return Err(invalid());
    }

    Ok(if wildcard {
        format!("*.{ascii}")
    } else {
        ascii
    })
}

fn header_value_counts(filters: &HeaderFilters) -> [(FilterHeader, usize); 4] {
    [
        (FilterHeader::ForwardedFor, filters.x_forwarded_for.len()),
        (FilterHeader::ForwardedHost, filters.x_forwarded_host.len()),
        (FilterHeader::AzureFdid, filters.x_azure_fdid.len()),
        (FilterHeader::FdHealthProbe, filters.x_fd_health_probe.len()),
    ]
}

fn source_count(source: &SourceCondition) -> Option<usize> {
    match source {
        SourceCondition::Ranges(nets) | SourceCondition::XffProxy(nets) => Some(nets.len()),
        SourceCondition::ServiceTags(tags) => Some(tags.len()),
        SourceCondition::Any | SourceCondition::AnyVnets | SourceCondition::Subnet(_) => None,
    }
}

/// The source written back as `ipAddress` text, for messages.
fn source_text(source: &SourceCondition) -> String {
    match source {
        SourceCondition::Ranges(nets) | SourceCondition::XffProxy(nets) => nets
            .iter()
            .map(IpNet::to_string)
            .collect::<Vec<_>>()
            .join(","),
        SourceCondition::ServiceTags(tags) => tags.join(","),
        SourceCondition::Any => "Any".to_owned(),
        SourceCondition::AnyVnets => "AnyVnets".to_owned(),
        SourceCondition::Subnet(subnet) => subnet.to_string(),
    }
}

fn mask_not_applicable(source: &str, subnet_mask: &str) -> RuleError {
    RuleError::SubnetMaskNotApplicable {
        source_value: source.to_owned(),
        subnet_mask: subnet_mask.to_owned(),
    }
}

/// The trimmed value, or `None` when absent or blank.
fn present(value: Option<&str>) -> Option<&str> {
    value.map(str::trim).filter(|value| !value.is_empty())
}

fn all_v4() -> IpNet {
    IpNet {
        network: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        prefix: 0,
    }
}

fn all_v6() -> IpNet {
    IpNet {
        network: IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
        prefix: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Action, Outcome, Rule};

    const SUBNET: &str = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/vnet/subnets/default";

    fn net(text: &str) -> IpNet {
        IpNet::parse(text).unwrap()
    }

    fn source(
        ip: Option<&str>,
        mask: Option<&str>,
        subnet: Option<&str>,
        tag: Option<&str>,
    ) -> Result<SourceCondition, RuleError> {
        parse_source(ip, mask, subnet, tag)
    }

    #[test]
    fn source_kinds() {
        let cases = [
            (
                source(Some("10.0.0.0/8"), None, None, None),
                SourceCondition::Ranges(vec![net("10.0.0.0/8")]),
            ),
            (
                source(Some("Any"), None, None, Some("Default")),
                SourceCondition::Any,
            ),
            (
                source(Some("AnyVnets"), None, None, None),
                SourceCondition::AnyVnets,
            ),
            (
                source(None, None, Some(SUBNET), None),
                SourceCondition::Subnet(SubnetId::new(SUBNET)),
            ),
            (
                source(
                    Some("AzureFrontDoor.Backend, AzureCloud.WestEurope"),
                    None,
                    None,
                    Some("ServiceTag"),
                ),
                SourceCondition::ServiceTags(vec![
                    "AzureFrontDoor.Backend".into(),
                    "AzureCloud.WestEurope".into(),
                ]),
            ),
            (
                source(Some("10.0.0.0/8"), None, None, Some("XffProxy")),
                SourceCondition::XffProxy(vec![net("10.0.0.0/8")]),
            ),
            (
                source(Some("192.168.1.0/24, 2001:db8::/32"), None, None, None),
                SourceCondition::Ranges(vec![net("192.168.1.0/24"), net("2001:db8::/32")]),
            ),
            (
                source(Some("10.1.2.3"), Some("255.255.0.0"), None, None),
                SourceCondition::Ranges(vec![net("10.1.0.0/16")]),
            ),
            (
                source(Some(""), None, Some(SUBNET), Some("Default")),
                SourceCondition::Subnet(SubnetId::new(SUBNET)),
            ),
        ];
        for (index, (parsed, expected)) in cases.into_iter().enumerate() {
            assert_eq!(parsed, Ok(expected), "case {index}");
        }
    }

    #[test]
    fn source_errors_and_outcomes() {
        let nine = "1.0.0.0/8,2.0.0.0/8,3.0.0.0/8,4.0.0.0/8,5.0.0.0/8,6.0.0.0/8,7.0.0.0/8,8.0.0.0/8,9.0.0.0/8";
        let cases = [
            (
                source(Some("123.123.123.123"), None, None, None),
                "bare_ip",
                Outcome::DeployFails,
            ),
            (
                source(Some("10.0.0.0/33"), None, None, None),
                "invalid_cidr",
                Outcome::DeployFails,
            ),
            (
                source(Some("AzureCloud"), None, None, None),
                "invalid_cidr",
                Outcome::DeployFails,
            ),
            (
                source(Some("10.0.0.0/8"), None, Some(SUBNET), None),
                "ip_and_subnet",
                Outcome::DeployFails,
            ),
            (
                source(None, None, None, None),
                "missing",
                Outcome::DeployFails,
            ),
            (
                source(Some("  "), None, None, None),
                "missing",
                Outcome::DeployFails,
            ),
            (
                source(Some(nine), None, None, None),
                "too_many",
                Outcome::ToolingRejects,
            ),
            (
                source(
                    Some("AzureCloud,10.0.0.0/8"),
                    None,
                    None,
                    Some("ServiceTag"),
                ),
                "mixed",
                Outcome::ToolingRejects,
            ),
            (
                source(Some("AzureCloud,,Foo"), None, None, Some("ServiceTag")),
                "tag_name",
                Outcome::ToolingRejects,
            ),
            (
                source(Some("10.0.0.0/8"), None, None, Some("Proxy")),
                "unknown_tag",
                Outcome::DeployFails,
            ),
            (
                source(Some("10.1.2.3"), Some("255.0.255.0"), None, None),
                "mask",
                Outcome::DeployFails,
            ),
            (
                source(Some("10.0.0.0/8"), Some("255.0.0.0"), None, None),
                "mask_with_cidr",
                Outcome::DeployFails,
            ),
            (
                source(Some("2001:db8::1"), Some("255.0.0.0"), None, None),
                "mask_with_cidr",
                Outcome::DeployFails,
            ),
            (
                source(Some("Any"), Some("255.0.0.0"), None, None),
                "mask_with_cidr",
                Outcome::DeployFails,
            ),
            (
                source(None, None, Some("/subscriptions/x/subnets/default"), None),
                "subnet_id",
                Outcome::DeployFails,
            ),
        ];
        for (parsed, case, outcome) in cases {
            let error = parsed.expect_err(case);
            assert_eq!(error.outcome(), outcome, "{case}: {error}");
            let kind_ok = match case {
                "bare_ip" => matches!(error, RuleError::BareIpWithoutMask { .. }),
                "invalid_cidr" => matches!(error, RuleError::InvalidCidr { .. }),
                "ip_and_subnet" => matches!(error, RuleError::IpAddressAndSubnet { .. }),
                "missing" => matches!(error, RuleError::MissingSource),
                "too_many" => matches!(error, RuleError::TooManySources { count: 9, .. }),
                "mixed" => matches!(error, RuleError::MixedTagsAndRanges { .. }),
                "tag_name" => matches!(error, RuleError::InvalidServiceTagName { .. }),
                "unknown_tag" => matches!(error, RuleError::UnknownTag { .. }),
                "mask" => matches!(error, RuleError::InvalidSubnetMask { .. }),
                "mask_with_cidr" => matches!(error, RuleError::SubnetMaskNotApplicable { .. }),
                "subnet_id" => matches!(error, RuleError::InvalidSubnetId { .. }),
                _ => false,
            };
            assert!(kind_ok, "{case}: {error:?}");
        }
    }

    #[test]
    fn source_bare_ip_azure_text() {
        let error = source(Some("123.123.123.123"), None, None, None).unwrap_err();
        assert_eq!(
            error.azure_message().as_deref(),
            Some("IpSecurityRestriction.IpAddress is invalid.  '123.123.123.123' is an invalid CIDR!")
        );
    }

    #[test]
    fn source_bare_ip_in_list() {
        let error = source(Some("10.0.0.0/8,10.1.2.3"), None, None, None).unwrap_err();
        assert_eq!(
            error,
            RuleError::BareIpWithoutMask {
                ip_address: "10.1.2.3".into()
            }
        );
    }

    #[test]
    fn source_host_bits_warning() {
        let (parsed, warnings) =
            parse_source_with_warnings(Some("10.0.0.5/24"), None, None, None).unwrap();
        assert_eq!(parsed, SourceCondition::Ranges(vec![net("10.0.0.0/24")]));
        assert_eq!(
            warnings,
            vec![RuleError::HostBitsSet {
                value: "10.0.0.5/24".into(),
                network: net("10.0.0.0/24")
            }]
        );
        assert_eq!(warnings[0].outcome(), Outcome::Silent);
    }

    #[test]
    fn source_xff_proxy_warning() {
        let (_, warnings) =
            parse_source_with_warnings(Some("Any"), None, None, Some("XffProxy")).unwrap();
        assert_eq!(
            warnings,
            vec![RuleError::XffProxyTag {
                ip_address: "Any".into()
            }]
        );
    }

    #[test]
    fn source_eight_ranges_allowed() {
        let eight =
            "1.0.0.0/8,2.0.0.0/8,3.0.0.0/8,4.0.0.0/8,5.0.0.0/8,6.0.0.0/8,7.0.0.0/8,8.0.0.0/8";
        assert!(source(Some(eight), None, None, None).is_ok());
    }

    fn headers(pairs: &[(&str, &[&str])]) -> Vec<(String, Vec<String>)> {
        pairs
            .iter()
            .map(|(name, values)| {
                (
                    name.to_string(),
                    values.iter().map(|v| v.to_string()).collect(),
                )
            })
            .collect()
    }

    #[test]
    fn header_filters_parse() {
        let parsed = parse_header_filters(&headers(&[
            ("X-Forwarded-For", &["10.0.0.0/8", "192.0.2.1"]),
            (
                "x-forwarded-host",
                &["Contoso.COM", "*.fabrikam.com", "bücher.example"],
            ),
            ("X-Azure-FDID", &["a1b2c3d4-0000-4000-8000-000000000001"]),
            ("x-fd-healthprobe", &["1"]),
        ]))
        .unwrap();
        assert_eq!(
            parsed.x_forwarded_for,
            vec![net("10.0.0.0/8"), net("192.0.2.1/32")]
        );
        assert_eq!(
            parsed.x_forwarded_host,
            vec!["contoso.com", "*.fabrikam.com", "xn--bcher-kva.example"]
        );
        assert_eq!(
            parsed.x_azure_fdid,
            vec!["a1b2c3d4-0000-4000-8000-000000000001"]
        );
        assert_eq!(parsed.x_fd_health_probe, vec!["1"]);
    }

    #[test]
    fn header_filters_merge_names() {
        let parsed = parse_header_filters(&headers(&[
            ("x-azure-fdid", &["a"]),
            ("X-Azure-FDID", &["b"]),
        ]))
        .unwrap();
        assert_eq!(parsed.x_azure_fdid, vec!["a", "b"]);
    }

    #[test]
    fn header_filter_errors() {
        let long = "a".repeat(65);
        let nine: Vec<&str> = vec!["1"; 9];
        let cases = [
            (
                headers(&[("x-client-ip", &["1.2.3.4"])]),
                RuleError::UnsupportedHeader {
                    name: "x-client-ip".into(),
                },
            ),
            (
                headers(&[("x-azure-fdid", &nine)]),
                RuleError::TooManyHeaderValues {
                    name: "x-azure-fdid".into(),
                    count: 9,
                },
            ),
            (
                headers(&[("x-azure-fdid", &[long.as_str()])]),
                RuleError::HeaderValueTooLong {
                    name: "x-azure-fdid".into(),
                    value: long.clone(),
                },
            ),
            (
                headers(&[("x-forwarded-for", &["nope"])]),
                RuleError::InvalidCidr {
                    value: "nope".into(),
                },
            ),
            (
                headers(&[("x-forwarded-host", &["foo.*.com"])]),
                RuleError::InvalidForwardedHost {
                    value: "foo.*.com".into(),
                },
            ),
            (
                headers(&[("x-forwarded-host", &["contoso.com:443"])]),
                RuleError::InvalidForwardedHost {
                    value: "contoso.com:443".into(),
                },
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(
                parse_header_filters(&input),
                Err(expected.clone()),
                "{expected}"
            );
        }
    }

    #[test]
    fn header_filter_outcomes() {
        let error = parse_header_filters(&headers(&[("x-client-ip", &["1"])])).unwrap_err();
        assert_eq!(error.outcome(), Outcome::ToolingRejects);
    }

    fn any_rule(index: usize, priority: i64) -> Rule {
        Rule {
            name: None,
            priority,
            action: Action::Deny,
            source: SourceCondition::Any,
            headers: HeaderFilters::default(),
            index,
        }
    }

    #[test]
    fn validate_too_many_rules() {
        let rules = (0..513)
            .map(|index| any_rule(index, index as i64))
            .collect();
        let errors = validate_list(&RuleList {
            rules,
            default_action: None,
        });
        assert_eq!(errors, vec![RuleError::TooManyRules { count: 513 }]);
        assert_eq!(errors[0].outcome(), Outcome::DeployFails);
    }

    #[test]
    fn validate_synthetic_rule() {
        let errors = validate_list(&RuleList {
            rules: vec![any_rule(0, SYNTHETIC_RULE_PRIORITY)],
            default_action: None,
        });
        assert_eq!(
            errors,
            vec![RuleError::SyntheticRuleWritten {
                index: 0,
                action: Action::Deny
            }]
        );
    }

    #[test]
    fn validate_duplicate_subnet_rule() {
        let subnet_rule = |index| Rule {
            source: SourceCondition::Subnet(SubnetId::new(SUBNET)),
            ..any_rule(index, 100)
        };
        let errors = validate_list(&RuleList {
            rules: vec![subnet_rule(0), subnet_rule(1)],
            default_action: None,
        });
        assert_eq!(
            errors,
            vec![RuleError::DuplicateSubnetRule {
                index: 1,
                subnet: SUBNET.into()
            }]
        );
    }

    #[test]
    fn validate_clean_list() {
        let errors = validate_list(&RuleList {
            rules: vec![any_rule(0, 100), any_rule(1, 100)],
            default_action: None,
        });
        assert_eq!(errors, Vec::new());
    }

    #[test]
    fn validate_unknown_service_tag() {
        let table = ServiceTagTable::from_prefixes([("AzureCloud", vec![net("20.0.0.0/8")])]);
        let rule = Rule {
            source: SourceCondition::ServiceTags(vec!["azurecloud".into(), "AzureDevOps".into()]),
            ..any_rule(3, 100)
        };
        let errors = validate_service_tags(
            &RuleList {
                rules: vec![rule],
                default_action: None,
            },
            &table,
        );
        assert_eq!(
            errors,
            vec![RuleError::UnknownServiceTag {
                index: 3,
                tag: "AzureDevOps".into()
            }]
        );
    }
}
