//! The internet address that represents every internet caller no rule names.
//!
//! `check` samples the internet at [`INTERNET_SAMPLE`], a documentation address. A rule whose
//! range contains that address, or whose service tag has a prefix that contains it, makes it a
//! poor stand-in for the rest of the internet, so another address takes its place. `check`,
//! `explain`, finding SL012 and the emulator's `internet` caller all take the address from
//! [`unnamed_internet`], so they judge the same caller.
//!
//! The search works on addresses as numbers ([`Family`], [`span`]) and on the [`segments`] that
//! rule ranges cut an address family into. `check --expect` samples the same segments, so
//! that `internet` covers every set of addresses that the same ranges contain.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use subnetlock_access::{IpNet, ServiceTagTable, SourceCondition};

use crate::egress::INTERNET_SAMPLE;
use crate::Topology;

/// Returns the IPv4 address that represents the internet callers no rule names, in `check`'s
/// matrix and as `up`'s `internet` caller: [`unnamed_internet`] for [`INTERNET_SAMPLE`].
pub fn unnamed_internet_v4(topology: &Topology, service_tags: Option<&ServiceTagTable>) -> IpAddr {
    unnamed_internet(topology, service_tags, INTERNET_SAMPLE)
}

/// Returns the address of `sample`'s family that represents the internet callers no rule
/// names: `sample`, unless a range of [`named_ranges`] other than the whole family contains it.
/// `service_tags` is the table the engine resolves service-tag rules with.
pub fn unnamed_internet(
    topology: &Topology,
    service_tags: Option<&ServiceTagTable>,
    sample: IpAddr,
) -> IpAddr {
    replacement_sample(sample, &named_ranges(topology, service_tags)).unwrap_or(sample)
}

/// Lists the ranges that the rules of every site's main and scm list name as sources: IP
/// ranges, `XffProxy` ranges, and the prefixes in `service_tags` of the tags that service-tag
/// rules name. A tag that `service_tags` lacks, or every tag when there is no table, adds no
/// range, because the engine then matches no internet address with it. `XffProxy` ranges
/// count although the default reading never matches them, because `check --expect` samples
/// them as sets of their own, and the engine option `xff_proxy_matches_forwarded_for` matches
/// them.
pub fn named_ranges(topology: &Topology, service_tags: Option<&ServiceTagTable>) -> Vec<IpNet> {
    let mut ranges = Vec::new();
    let rules = topology
        .sites
        .iter()
        .flat_map(|site| [&site.access.main, &site.access.scm])
        .flat_map(|list| &list.rules);
    for rule in rules {
        match &rule.source {
            SourceCondition::Ranges(nets) | SourceCondition::XffProxy(nets) => {
                ranges.extend(nets.iter().copied());
            }
            SourceCondition::ServiceTags(tags) => {
                let prefixes = tags
                    .iter()
                    .filter_map(|tag| service_tags?.prefixes(tag))
                    .flatten();
                ranges.extend(prefixes.copied());
            }
            _ => {}
        }
    }
    ranges
}

/// Returns the address that stands for the internet callers no rule names in place of
/// `sample`, when a range narrower than its whole family contains `sample` and some address
/// of the family is outside every such range.
pub fn replacement_sample(sample: IpAddr, ranges: &[IpNet]) -> Option<IpAddr> {
    let singled_out = ranges
        .iter()
        .any(|range| singles_out(range) && range.contains(sample));
    if !singled_out {
        return None;
    }
    unnamed_address(ranges, sample.is_ipv4())
}

/// Returns whether `range` is narrower than its whole address family, so that it sets some
/// addresses apart from the rest of the internet.
pub fn singles_out(range: &IpNet) -> bool {
    range.prefix > 0
}

/// Returns an address of the family (IPv4 when `v4`) that none of `ranges` contains, or `None`
/// when they cover the whole space. Ranges of the whole family (`0.0.0.0/0`, `::/0`) are left
/// out, because every address gets the same from them. A documentation address comes first;
/// otherwise the first address of the lowest gap, outside `0.0.0.0/8` ("this network",
/// RFC 1122) and `::/8`.
fn unnamed_address(ranges: &[IpNet], v4: bool) -> Option<IpAddr> {
    let ranges: Vec<_> = ranges.iter().copied().filter(singles_out).collect();
    let ranges = ranges.as_slice();
    let uncovered = |address: &IpAddr| !ranges.iter().any(|range| range.contains(*address));
    let documented = [
        IpAddr::V4(std::net::Ipv4Addr::new(198, 51, 100, 10)),
        IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 10)),
        IpAddr::V6(std::net::Ipv6Addr::new(0x3fff, 0, 0, 0, 0, 0, 0, 0x10)),
    ];
    if let Some(address) = documented
        .into_iter()
        .find(|address| address.is_ipv4() == v4 && uncovered(address))
    {
        return Some(address);
    }

    // The first address at or after the reserved block that no range contains.
    let family = if v4 { Family::V4 } else { Family::V6 };
    let first_usable: u128 = if v4 { 1 << 24 } else { 1 << 120 };
    let spans: Vec<(u128, u128, usize)> = ranges
        .iter()
        .filter_map(span)
        .filter(|(_, _, of)| *of == family)
        .map(|(first, last, _)| (first, last, 0))
        .collect();
    segments(&spans, family)
        .into_iter()
        .find(|segment| segment.owners.is_empty() && segment.last >= first_usable)
        .map(|segment| family.address(segment.first.max(first_usable)))
}

/// An address family whose addresses are handled as numbers: `u32` values for IPv4 and
/// `u128` values for IPv6, both widened to `u128`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    /// Returns the last address of the family as a number.
    pub fn last(self) -> u128 {
        match self {
            Family::V4 => u128::from(u32::MAX),
            Family::V6 => u128::MAX,
        }
    }

    /// Returns the address of number `value`.
    pub fn address(self, value: u128) -> IpAddr {
        match self {
            // Values of the IPv4 family never exceed `u32::MAX`.
            Family::V4 => IpAddr::V4(Ipv4Addr::from(u32::try_from(value).unwrap_or(u32::MAX))),
            Family::V6 => IpAddr::V6(Ipv6Addr::from(value)),
        }
    }

    /// Returns the number of `address` in this family, or `None` when it belongs to the other
    /// one. An IPv4-mapped IPv6 address belongs to IPv4, as the front end treats it.
    pub fn value(self, address: IpAddr) -> Option<u128> {
        match (self, address) {
            (Family::V4, IpAddr::V4(v4)) => Some(u128::from(u32::from(v4))),
            (Family::V6, IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
                Some(_) => None,
                None => Some(u128::from(v6)),
            },
            (Family::V4, IpAddr::V6(v6)) => v6.to_ipv4_mapped().map(|v4| u128::from(u32::from(v4))),
            (Family::V6, IpAddr::V4(_)) => None,
        }
    }
}

/// Returns the first and last address of a range as numbers, with its family. A network
/// written in IPv4-mapped form (`::ffff:0:0/96`) gives `None`, because it contains no address.
pub fn span(range: &IpNet) -> Option<(u128, u128, Family)> {
    let net = IpNet::new(range.network, range.prefix)?;
    let (family, bits) = match net.network {
        IpAddr::V4(_) => (Family::V4, 32),
        IpAddr::V6(_) => (Family::V6, 128),
    };
    let first = family.value(net.network)?;
    let host_bits = bits - u32::from(net.prefix.min(bits as u8));
    let size_minus_one = if host_bits >= 128 {
        u128::MAX
    } else {
        (1u128 << host_bits) - 1
    };
    Some((first, first.saturating_add(size_minus_one), family))
}

/// A run of consecutive addresses of one family that the same ranges contain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    pub first: u128,
    pub last: u128,
    /// The owners of the ranges that contain the run, in ascending order, and empty where no
    /// range contains it.
    pub owners: Vec<usize>,
}

/// Cuts one family's space at every boundary of `ranges`, given as `(first, last, owner)`,
/// and returns every segment in address order. Several ranges may share an owner.
pub fn segments(ranges: &[(u128, u128, usize)], family: Family) -> Vec<Segment> {
    // Owners that start or stop covering the space at each boundary.
    let mut changes: BTreeMap<u128, Vec<(usize, i32)>> = BTreeMap::new();
    changes.entry(0).or_default();
    for &(first, last, owner) in ranges {
        changes.entry(first).or_default().push((owner, 1));
        if last < family.last() {
            changes.entry(last + 1).or_default().push((owner, -1));
        }
    }

    let boundaries: Vec<(u128, Vec<(usize, i32)>)> = changes.into_iter().collect();
    let mut covering: HashMap<usize, i32> = HashMap::new();
    let mut segments = Vec::with_capacity(boundaries.len());
    for (index, (first, deltas)) in boundaries.iter().enumerate() {
        for &(owner, delta) in deltas {
            let count = covering.entry(owner).or_insert(0);
            *count += delta;
            if *count == 0 {
                covering.remove(&owner);
            }
        }
        let last = boundaries
            .get(index + 1)
            .map_or(family.last(), |(next, _)| next - 1);
        let mut owners: Vec<usize> = covering.keys().copied().collect();
        owners.sort_unstable();
        segments.push(Segment {
            first: *first,
            last,
            owners,
        });
    }
    segments
}

#[cfg(test)]
mod tests {
    use subnetlock_access::{IpNet, ServiceTagTable};

    use super::{unnamed_address, unnamed_internet_v4};
    use crate::testing::one_site_topology;
    use crate::Topology;

    /// Builds the topology of site `app` whose main rules are `rules`, with the default
    /// action `Allow`.
    fn site_with_rules(rules: serde_json::Value) -> Topology {
        one_site_topology(serde_json::json!({
            "ipSecurityRestrictionsDefaultAction": "Allow",
            "ipSecurityRestrictions": rules
        }))
    }

    fn nets(ranges: &[&str]) -> Vec<IpNet> {
        ranges
            .iter()
            .map(|range| {
                let (network, prefix) = range.split_once('/').expect("range");
                IpNet::new(
                    network.parse().expect("network"),
                    prefix.parse().expect("prefix"),
                )
                .expect("valid range")
            })
            .collect()
    }

    #[test]
    fn unnamed_address_avoids_every_range() {
        let unnamed = |ranges: &[&str], v4: bool| {
            unnamed_address(&nets(ranges), v4).map(|address| address.to_string())
        };
        assert_eq!(
            unnamed(&["203.0.113.0/24"], true).as_deref(),
            Some("198.51.100.10")
        );
        assert_eq!(
            unnamed(&["203.0.113.0/24", "198.51.100.0/24"], true).as_deref(),
            Some("192.0.2.10")
        );
        // Every documentation address is named: the lowest gap after 0.0.0.0/8.
        assert_eq!(
            unnamed(
                &["192.0.0.0/8", "198.0.0.0/8", "203.0.0.0/8", "1.0.0.0/8"],
                true
            )
            .as_deref(),
            Some("2.0.0.0")
        );
        assert_eq!(unnamed(&["0.0.0.0/1", "128.0.0.0/1"], true), None);
        assert_eq!(
            unnamed(&["2001:db8::/32"], false).as_deref(),
            Some("3fff::10")
        );
        // A range of the whole family sets no address apart from the rest.
        assert_eq!(
            unnamed(&["0.0.0.0/0", "203.0.113.0/24"], true).as_deref(),
            Some("198.51.100.10")
        );
        assert_eq!(
            unnamed(&["::/0", "2001:db8::/32"], false).as_deref(),
            Some("3fff::10")
        );
    }

    #[test]
    fn unnamed_internet_avoids_service_tag_prefixes() {
        let topology = site_with_rules(serde_json::json!([
            { "ipAddress": "DocTag", "tag": "ServiceTag", "action": "Deny", "priority": 100,
              "name": "deny-tag" }
        ]));
        let table = |entries: &[(&str, &[&str])]| {
            ServiceTagTable::from_prefixes(
                entries
                    .iter()
                    .map(|(tag, prefixes)| (*tag, nets(prefixes)))
                    .collect::<Vec<_>>(),
            )
        };
        let pick =
            |table: Option<&ServiceTagTable>| unnamed_internet_v4(&topology, table).to_string();

        // The rule's tag contains the default sample, so the first free documentation address
        // is picked.
        let covering = table(&[("DocTag", &["203.0.113.0/24"])]);
        assert_eq!(pick(Some(&covering)), "198.51.100.10");

        // Tag names are compared ignoring case, as the engine compares them.
        let other_case = table(&[("doctag", &["203.0.113.0/24", "198.51.100.0/24"])]);
        assert_eq!(pick(Some(&other_case)), "192.0.2.10");

        // Without a table, or when the table lacks the tag, the rule matches no internet
        // address, and the sample stays.
        assert_eq!(pick(None), "203.0.113.10");
        let unused = table(&[("OtherTag", &["203.0.113.0/24"])]);
        assert_eq!(pick(Some(&unused)), "203.0.113.10");

        // A tag prefix for the whole family contains every address alike.
        let everything = table(&[("DocTag", &["0.0.0.0/0"])]);
        assert_eq!(pick(Some(&everything)), "203.0.113.10");
    }

    #[test]
    fn unnamed_internet_avoids_xff_proxy_ranges() {
        let topology = site_with_rules(serde_json::json!([
            { "ipAddress": "203.0.113.0/24", "tag": "XffProxy", "action": "Deny",
              "priority": 100, "name": "proxy" },
            { "ipAddress": "198.51.100.0/24", "tag": "XffProxy", "action": "Deny",
              "priority": 200, "name": "other-proxy" }
        ]));

        assert_eq!(
            unnamed_internet_v4(&topology, None).to_string(),
            "192.0.2.10"
        );
    }
}
