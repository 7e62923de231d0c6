//! The internet addresses that `internet` alone means in an expectation.
//!
//! The reachability matrix samples one address per range a rule names, which can miss a whole
//! class of callers. With a `Deny` rule for `203.0.113.0/24` and the default action `Allow`,
//! every sample lies in the denied range, while the rest of the internet is allowed. For a plain
//! request (no filtered headers), the front end decides an internet caller only by which rule
//! ranges contain its address. Addresses contained in the same ranges therefore get the same
//! verdict from every site, and one address per such set covers every internet caller.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use subnetlock_access::{EngineOptions, IpNet, SourceCondition};
use subnetlock_model::egress::{INTERNET_SAMPLE, INTERNET_SAMPLE_V6};
use subnetlock_model::internet::{segments, span, Family};
use subnetlock_model::Topology;

/// Addresses preferred as a class's sample after the matrix's own, because a reader
/// recognises the documentation ranges (RFC 5737, RFC 3849) as internet clients.
const DOCUMENTATION_ADDRESSES: [IpAddr; 5] = [
    INTERNET_SAMPLE,
    IpAddr::V4(Ipv4Addr::new(198, 51, 100, 10)),
    IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)),
    INTERNET_SAMPLE_V6,
    IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
];

/// Returns one internet address for each set of rule ranges that contains some address. The
/// IPv4 space is always covered, the IPv6 space inside the ranges that rules name too. The IPv6
/// addresses that no rule names count only with `ipv6_unnamed`, because the matrix lists them
/// only for sites that accept IPv6. Where an address of `matrix`, the matrix's own internet
/// callers, belongs to a set, it is chosen, so the rows the matrix shows are reused.
pub fn internet_samples(
    topology: &Topology,
    options: &EngineOptions,
    matrix: &[IpAddr],
    ipv6_unnamed: bool,
) -> Vec<IpAddr> {
    let mut v4 = Vec::new();
    let mut v6 = Vec::new();
    for (owner, ranges) in rule_ranges(topology, options).into_iter().enumerate() {
        for range in ranges {
            match span(&range) {
                Some((first, last, Family::V4)) => v4.push((first, last, owner)),
                Some((first, last, Family::V6)) => v6.push((first, last, owner)),
                None => {}
            }
        }
    }

    let mut samples = classes(&v4, Family::V4, matrix, true);
    samples.extend(classes(&v6, Family::V6, matrix, ipv6_unnamed));
    samples
}

/// Lists, for each rule of every site's main and scm list, the ranges its source names: IP
/// ranges, the prefixes of service tags that `--service-tags` resolves, and `XffProxy`
/// ranges. A rule's index in the result identifies it.
fn rule_ranges(topology: &Topology, options: &EngineOptions) -> Vec<Vec<IpNet>> {
    let mut owners = Vec::new();
    for site in &topology.sites {
        for list in [&site.access.main, &site.access.scm] {
            for rule in &list.rules {
                let ranges = match &rule.source {
                    SourceCondition::Ranges(nets) | SourceCondition::XffProxy(nets) => nets.clone(),
                    SourceCondition::ServiceTags(tags) => tags
                        .iter()
                        .filter_map(|tag| options.service_tags.as_ref()?.prefixes(tag))
                        .flatten()
                        .copied()
                        .collect(),
                    SourceCondition::Any
                    | SourceCondition::AnyVnets
                    | SourceCondition::Subnet(_) => Vec::new(),
                };
                if !ranges.is_empty() {
                    owners.push(ranges);
                }
            }
        }
    }
    owners
}

/// Cuts one family's space at every range boundary and returns one address per set of
/// containing rules. The set of no rule is left out unless `include_unnamed` is set.
fn classes(
    ranges: &[(u128, u128, usize)],
    family: Family,
    matrix: &[IpAddr],
    include_unnamed: bool,
) -> Vec<IpAddr> {
    // Best sample per set of owners: (preference, address), lower preference first.
    let mut best: BTreeMap<Vec<usize>, (u8, u128)> = BTreeMap::new();
    for segment in segments(ranges, family) {
        if segment.owners.is_empty() && !include_unnamed {
            continue;
        }
        let candidate = sample_in(segment.first, segment.last, family, matrix);
        let entry = best.entry(segment.owners).or_insert(candidate);
        if candidate.0 < entry.0 {
            *entry = candidate;
        }
    }

    let mut samples: Vec<(u8, u128)> = best.into_values().collect();
    samples.sort_unstable();
    samples
        .into_iter()
        .map(|(_, value)| family.address(value))
        .collect()
}

/// Picks an address of `[start, end]`: a matrix caller (preference 0), a documentation address
/// (1), else the first address, moved out of `0.0.0.0/8` ("this network", RFC 1122, which no
/// client has) when the segment reaches past it (2).
fn sample_in(start: u128, end: u128, family: Family, matrix: &[IpAddr]) -> (u8, u128) {
    let inside = |address: &IpAddr| {
        family
            .value(*address)
            .filter(|value| (start..=end).contains(value))
    };
    if let Some(value) = matrix.iter().find_map(inside) {
        return (0, value);
    }
    if let Some(value) = DOCUMENTATION_ADDRESSES.iter().find_map(inside) {
        return (1, value);
    }
    let usable = u128::from(u32::from(Ipv4Addr::new(1, 0, 0, 1)));
    if family == Family::V4 && start < usable && usable <= end {
        return (2, usable);
    }
    (2, start)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(text: &str) -> u128 {
        u128::from(u32::from(text.parse::<Ipv4Addr>().unwrap()))
    }

    fn range(text: &str, owner: usize) -> (u128, u128, usize) {
        let (network, prefix) = text.split_once('/').unwrap();
        let net = IpNet::new(network.parse().unwrap(), prefix.parse().unwrap()).unwrap();
        let (first, last, _) = span(&net).unwrap();
        (first, last, owner)
    }

    #[test]
    fn classes_cover_unnamed_addresses() {
        // A deny range that contains the matrix's only sample: the rest of the space is a
        // class of its own and gets a documentation address.
        let matrix = [INTERNET_SAMPLE];
        let samples = classes(&[range("203.0.113.0/24", 0)], Family::V4, &matrix, true);
        assert_eq!(
            samples,
            [
                "203.0.113.10".parse::<IpAddr>().unwrap(),
                "198.51.100.10".parse().unwrap()
            ]
        );
    }

    #[test]
    fn classes_split_nested_ranges() {
        // A /25 inside a /24: inside both, inside the /24 only, and inside neither.
        let ranges = [range("198.51.100.0/25", 0), range("198.51.100.0/24", 1)];
        let samples = classes(&ranges, Family::V4, &[], true);
        assert_eq!(samples.len(), 3, "{samples:?}");
        let upper_half = samples
            .iter()
            .filter(|address| {
                let value = Family::V4.value(**address).unwrap();
                (v4("198.51.100.128")..=v4("198.51.100.255")).contains(&value)
            })
            .count();
        assert_eq!(upper_half, 1, "{samples:?}");
    }

    #[test]
    fn classes_same_owner_disjoint_ranges_share_sample() {
        let ranges = [range("10.0.0.0/8", 0), range("172.16.0.0/12", 0)];
        let samples = classes(&ranges, Family::V4, &[], true);
        assert_eq!(samples.len(), 2, "{samples:?}");
    }

    #[test]
    fn classes_whole_space_and_unnamed_ipv6() {
        let whole = classes(&[range("0.0.0.0/0", 0)], Family::V4, &[], true);
        assert_eq!(whole, [INTERNET_SAMPLE]);
        let low = classes(&[range("0.0.0.0/2", 0)], Family::V4, &[], false);
        assert_eq!(low, ["1.0.0.1".parse::<IpAddr>().unwrap()]);

        let named = [range("2001:db8:1::/48", 0)];
        assert_eq!(classes(&named, Family::V6, &[], false).len(), 1);
        assert_eq!(classes(&named, Family::V6, &[], true).len(), 2);
        assert!(classes(&[], Family::V6, &[], false).is_empty());
    }
}
