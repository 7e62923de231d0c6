//! Properties of the rule parsers on arbitrary input.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;
use subnetlock_access::{parse_header_filters, parse_source, IpNet, SourceCondition};

fn any_net() -> impl Strategy<Value = IpNet> {
    prop_oneof![
        (any::<u32>(), 0u8..=32).prop_map(|(bits, prefix)| IpNet::new(
            IpAddr::V4(Ipv4Addr::from(bits)),
            prefix
        )
        .unwrap()),
        (any::<u128>(), 0u8..=128).prop_map(|(bits, prefix)| IpNet::new(
            IpAddr::V6(Ipv6Addr::from(bits)),
            prefix
        )
        .unwrap()),
    ]
}

proptest! {
    #[test]
    fn cidr_display_round_trips(net in any_net()) {
        prop_assert_eq!(IpNet::parse(&net.to_string()), Ok(net));
    }

    #[test]
    fn network_contains_itself(net in any_net()) {
        // Sources in IPv4-mapped form count as IPv4, so a network written that way is empty.
        let mapped = matches!(net.network, IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some());
        prop_assume!(!mapped);
        prop_assert!(net.contains(net.network));
    }

    #[test]
    fn parsed_ranges_list_round_trips(nets in prop::collection::vec(any_net(), 1..=8)) {
        let text = nets.iter().map(IpNet::to_string).collect::<Vec<_>>().join(",");
        prop_assert_eq!(
            parse_source(Some(&text), None, None, None),
            Ok(SourceCondition::Ranges(nets))
        );
    }

    #[test]
    fn parse_source_total(
        ip in proptest::option::of(".{0,40}"),
        mask in proptest::option::of(".{0,16}"),
        subnet in proptest::option::of(".{0,40}"),
        tag in proptest::option::of(".{0,12}"),
    ) {
        // Every input gives a source or a typed error; an accepted range list stays within
        // the eight-source limit.
        if let Ok(SourceCondition::Ranges(nets)) =
            parse_source(ip.as_deref(), mask.as_deref(), subnet.as_deref(), tag.as_deref())
        {
            prop_assert!(!nets.is_empty() && nets.len() <= 8);
        }
    }

    #[test]
    fn header_filters_total(name in ".{0,20}", values in prop::collection::vec(".{0,70}", 0..10)) {
        if let Ok(filters) = parse_header_filters(&[(name, values)]) {
            prop_assert!(filters.x_forwarded_host.iter().all(|host| host.is_ascii()));
            prop_assert!(filters.x_azure_fdid.len() <= 8);
        }
    }
}
