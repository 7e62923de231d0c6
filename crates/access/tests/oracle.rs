//! Property: the compiled engine decides exactly like the reference scan (verdict, reason and
//! ambiguities) on random rule lists, sources and header sets.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use proptest::prelude::*;
use subnetlock_access::{
    decide_reference, Action, CompiledSiteAccess, EngineOptions, Entry, HeaderFilters,
    HeaderLookup, IpNet, PublicNetworkAccess, Request, Rule, RuleList, ServiceTagTable, SiteAccess,
    SiteKind, Source, SourceCondition, SubnetId,
};

const SUBNETS: [&str; 3] = [
    "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/vnet/subnets/a",
    "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/vnet/subnets/b",
    "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/VNET/subnets/A",
];

const NETS: [&str; 10] = [
    "10.0.0.0/8",
    "10.1.0.0/16",
    "10.1.2.0/24",
    "10.1.2.3/32",
    "192.168.0.0/16",
    "0.0.0.0/0",
    "2001:db8::/32",
    "2001:db8:1::/48",
    "::/0",
    "203.0.113.0/25",
];

const ADDRESSES: [&str; 9] = [
    "10.1.2.3",
    "10.9.9.9",
    "192.168.1.1",
    "203.0.113.1",
    "203.0.113.200",
    "2001:db8:1::5",
    "2001:db9::1",
    "::ffff:10.1.2.3",
    "fd00::1002:fc01:3000:2000:1000",
];

const TAGS: [&str; 5] = ["TagA", "taga", "TagB", "TagC", "Unknown"];
const HOSTS: [&str; 4] = [
    "contoso.com",
    "*.contoso.com",
    "fabrikam.com",
    "bücher.example",
];
const REQUEST_HOSTS: [&str; 12] = [
    "contoso.com",
    "www.contoso.com:443",
    "a.b.contoso.com",
    "FABRIKAM.com",
    "xn--bcher-kva.example",
    "other.net",
    "WWW.Contoso.COM.",
    " www.contoso.com ",
    "other.net, www.contoso.com",
    "[2001:db8::1]:443",
    "BÜCHER.example",
    "fabrikam.com:8443",
];
const TOKENS: [&str; 5] = ["abc", "ABC", "def", " Abc ", "1"];

fn net_strategy() -> impl Strategy<Value = IpNet> {
    prop_oneof![
        3 => prop::sample::select(NETS.to_vec()).prop_map(|text| IpNet::parse(text).unwrap()),
        1 => (any::<u32>(), 0u8..=32).prop_map(|(bits, prefix)| IpNet::new(IpAddr::V4(Ipv4Addr::from(bits)), prefix).unwrap()),
        1 => (any::<u128>(), 0u8..=128).prop_map(|(bits, prefix)| IpNet::new(IpAddr::V6(Ipv6Addr::from(bits)), prefix).unwrap()),
    ]
}

fn address_strategy() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        4 => prop::sample::select(ADDRESSES.to_vec()).prop_map(|text| text.parse().unwrap()),
        1 => any::<u32>().prop_map(|bits| IpAddr::V4(Ipv4Addr::from(bits))),
        1 => any::<u128>().prop_map(|bits| IpAddr::V6(Ipv6Addr::from(bits))),
    ]
}

fn source_condition_strategy() -> impl Strategy<Value = SourceCondition> {
    prop_oneof![
        1 => Just(SourceCondition::Any),
        4 => prop::collection::vec(net_strategy(), 0..4).prop_map(SourceCondition::Ranges),
        1 => Just(SourceCondition::AnyVnets),
        2 => prop::sample::select(SUBNETS.to_vec()).prop_map(|id| SourceCondition::Subnet(SubnetId::new(id))),
        2 => prop::collection::vec(prop::sample::select(TAGS.to_vec()), 0..3)
            .prop_map(|tags| SourceCondition::ServiceTags(tags.into_iter().map(String::from).collect())),
        1 => prop::collection::vec(net_strategy(), 0..3).prop_map(SourceCondition::XffProxy),
    ]
}

fn header_filters_strategy() -> impl Strategy<Value = HeaderFilters> {
    let strings = |pool: &'static [&'static str]| {
        prop::collection::vec(prop::sample::select(pool.to_vec()), 0..3)
    };
    prop_oneof![
        2 => Just(HeaderFilters::default()),
        3 => (
            prop::collection::vec(net_strategy(), 0..2),
            strings(&HOSTS),
            strings(&TOKENS),
            strings(&TOKENS[4..]),
        )
            .prop_map(|(xff, hosts, fdid, probe)| HeaderFilters {
                x_forwarded_for: xff,
                x_forwarded_host: hosts.into_iter().map(String::from).collect(),
                x_azure_fdid: fdid.into_iter().map(String::from).collect(),
                x_fd_health_probe: probe.into_iter().map(String::from).collect(),
            }),
    ]
}

fn rule_strategy() -> impl Strategy<Value = (i64, Action, SourceCondition, HeaderFilters, bool)> {
    (
        prop_oneof![3 => 0i64..6, 1 => any::<i64>()],
        prop_oneof![Just(Action::Allow), Just(Action::Deny)],
        source_condition_strategy(),
        header_filters_strategy(),
        any::<bool>(),
    )
}

fn list_strategy() -> impl Strategy<Value = RuleList> {
    (
        prop::collection::vec(rule_strategy(), 0..40),
        prop_oneof![
            Just(None),
            Just(Some(Action::Allow)),
            Just(Some(Action::Deny))
        ],
    )
        .prop_map(|(rules, default_action)| RuleList {
            rules: rules
                .into_iter()
                .enumerate()
                .map(|(index, (priority, action, source, headers, named))| Rule {
                    name: named.then(|| format!("rule-{index}")),
                    priority,
                    action,
                    source,
                    headers,
                    index,
                })
                .collect(),
            default_action,
        })
}

fn site_strategy() -> impl Strategy<Value = SiteAccess> {
    (
        list_strategy(),
        list_strategy(),
        any::<bool>(),
        prop_oneof![
            4 => Just(PublicNetworkAccess::Unset),
            2 => Just(PublicNetworkAccess::Enabled),
            1 => Just(PublicNetworkAccess::Disabled),
        ],
        prop::bool::weighted(0.2),
    )
        .prop_map(
            |(main, scm, scm_uses_main, public_network_access, has_private_endpoint)| SiteAccess {
                main,
                scm,
                scm_uses_main,
                public_network_access,
                has_private_endpoint,
            },
        )
}

fn request_source_strategy() -> impl Strategy<Value = Source> {
    (
        address_strategy(),
        prop_oneof![3 => Just(None), 2 => prop::sample::select(SUBNETS.to_vec()).prop_map(Some)],
        prop::bool::weighted(0.1),
        prop::collection::vec(
            prop::sample::select(vec!["taga", "TagB", "TAGC", "Other"]),
            0..3,
        ),
    )
        .prop_map(|(address, subnet, private_endpoint, tags)| Source {
            address,
            service_endpoint: subnet.map(SubnetId::new),
            entry: if private_endpoint {
                Entry::PrivateEndpoint
            } else {
                Entry::PublicEndpoint
            },
            service_tags: tags.into_iter().map(String::from).collect(),
        })
}

fn forwarded_for_value() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            address_strategy().prop_map(|address| address.to_string()),
            address_strategy().prop_map(|address| match address {
                IpAddr::V4(v4) => format!("{v4}:8080"),
                IpAddr::V6(v6) => format!("[{v6}]:443"),
            }),
            Just("unknown".to_string()),
        ],
        1..4,
    )
    .prop_map(|items| items.join(", "))
}

fn request_headers_strategy() -> impl Strategy<Value = Vec<(String, String)>> {
    let header = prop_oneof![
        forwarded_for_value().prop_map(|value| ("X-Forwarded-For".to_string(), value)),
        prop::sample::select(REQUEST_HOSTS.to_vec())
            .prop_map(|host| ("x-forwarded-host".to_string(), host.to_string())),
        prop::sample::select(TOKENS.to_vec())
            .prop_map(|token| ("X-Azure-FDID".to_string(), token.to_string())),
        prop::sample::select(TOKENS.to_vec())
            .prop_map(|token| ("x-fd-healthprobe".to_string(), token.to_string())),
    ];
    prop::collection::vec(header, 0..5)
}

fn options_strategy() -> impl Strategy<Value = EngineOptions> {
    (any::<bool>(), any::<bool>()).prop_map(|(xff, with_table)| {
        let table = ServiceTagTable::from_prefixes([
            (
                "TagA",
                vec![
                    IpNet::parse("10.0.0.0/8").unwrap(),
                    IpNet::parse("2001:db8::/32").unwrap(),
                ],
            ),
            (
                "TagC",
                vec![
                    IpNet::parse("192.168.0.0/16").unwrap(),
                    IpNet::parse("203.0.113.0/24").unwrap(),
                ],
            ),
        ]);
        EngineOptions {
            xff_proxy_matches_forwarded_for: xff,
            service_tags: with_table.then(|| Arc::new(table)),
        }
    })
}

/// Headers behind a lookup that implements only [`HeaderLookup::values`], so that the
/// engine takes the path for lookups that cannot list their headers.
struct ValuesOnly<'a>(&'a [(String, String)]);

impl HeaderLookup for ValuesOnly<'_> {
    fn values(&self, lower_case_name: &str) -> Vec<&str> {
        self.0.values(lower_case_name)
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn compiled_matches_reference(
        site in site_strategy(),
        options in options_strategy(),
        requests in prop::collection::vec(
            (request_source_strategy(), request_headers_strategy(), any::<bool>()),
            1..8,
        ),
    ) {
        let compiled = CompiledSiteAccess::compile(&site, &options);
        for (source, headers, scm) in &requests {
            let request = Request {
                source,
                site: if *scm { SiteKind::Scm } else { SiteKind::Main },
                headers,
            };
            let fast = compiled.decide(&request);
            let slow = decide_reference(&site, &options, &request);
            prop_assert_eq!(&fast, &slow);

            let values_only = ValuesOnly(headers);
            let through_values = compiled.decide(&Request {
                headers: &values_only,
                ..request
            });
            prop_assert_eq!(through_values, slow);
        }
    }
}
