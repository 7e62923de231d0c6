//! Ground-truth scenarios: documented Azure behaviour, each checked on both engines.
//!
//! Every test names the public source of the behaviour it encodes. [`decide`] runs the
//! compiled engine and the reference scan and requires identical decisions.

use std::net::IpAddr;
use std::sync::Arc;

use crate::{
    decide_reference, parse_header_filters, parse_source, Action, Ambiguity, CompiledSiteAccess,
    Decision, EngineOptions, Entry, HeaderFilters, IpNet, PublicNetworkAccess, Reason, Request,
    Rule, RuleList, ServiceTagTable, SiteAccess, SiteKind, Source, SubnetId,
};

const SUBNET_S: &str = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/vnet/subnets/default";
const FDID_1: &str = "a1b2c3d4-0000-4000-8000-000000000001";
const FDID_2: &str = "a1b2c3d4-0000-4000-8000-000000000002";

fn addr(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn rule(index: usize, priority: i64, action: Action, ip_address: &str, tag: Option<&str>) -> Rule {
    Rule {
        name: Some(format!("rule-{index}")),
        priority,
        action,
        source: parse_source(Some(ip_address), None, None, tag).unwrap(),
        headers: HeaderFilters::default(),
        index,
    }
}

fn subnet_rule(index: usize, priority: i64, action: Action, subnet: &str) -> Rule {
    Rule {
        source: parse_source(None, None, Some(subnet), None).unwrap(),
        ..rule(index, priority, action, "Any", None)
    }
}

fn with_headers(mut rule: Rule, headers: &[(&str, &[&str])]) -> Rule {
    let raw: Vec<(String, Vec<String>)> = headers
        .iter()
        .map(|(name, values)| {
            (
                name.to_string(),
                values.iter().map(|v| v.to_string()).collect(),
            )
        })
        .collect();
    rule.headers = parse_header_filters(&raw).unwrap();
    rule
}

fn list(rules: Vec<Rule>, default_action: Option<Action>) -> RuleList {
    RuleList {
        rules,
        default_action,
    }
}

fn main_only(rules: Vec<Rule>, default_action: Option<Action>) -> SiteAccess {
    SiteAccess {
        main: list(rules, default_action),
        ..SiteAccess::default()
    }
}

fn service_endpoint_source(subnet: &str) -> Source {
    Source {
        address: addr("fd00::1002:fc01:3000:2000:1000"),
        service_endpoint: Some(SubnetId::new(subnet)),
        entry: Entry::PublicEndpoint,
        service_tags: Vec::new(),
    }
}

/// Decides with both engines, requires them to agree, and returns the decision.
fn decide(
    site: &SiteAccess,
    options: &EngineOptions,
    source: &Source,
    kind: SiteKind,
    headers: &[(&str, &str)],
) -> Decision {
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    let request = Request {
        source,
        site: kind,
        headers: &headers,
    };
    let compiled = CompiledSiteAccess::compile(site, options).decide(&request);
    let reference = decide_reference(site, options, &request);
    assert_eq!(
        compiled, reference,
        "compiled and reference engines disagree"
    );
    compiled
}

fn decide_main(site: &SiteAccess, source: &Source) -> Decision {
    decide(site, &EngineOptions::default(), source, SiteKind::Main, &[])
}

fn internet(text: &str) -> Source {
    Source::internet(addr(text))
}

fn rule_reason(decision: &Decision) -> Option<usize> {
    match &decision.reason {
        Reason::Rule { index, .. } => Some(*index),
        _ => None,
    }
}

// Reference topology: one Allow rule for subnet `default`, priority 100, no default action.
// https://vincentlauzon.com/2020/02/03/locking-down-web-app-to-functions-communications-using-subnets
#[test]
fn scenario_01_reference_subnet_caller() {
    let site = main_only(vec![subnet_rule(0, 100, Action::Allow, SUBNET_S)], None);
    let decision = decide_main(&site, &service_endpoint_source(SUBNET_S));
    assert_eq!(decision.verdict, Action::Allow);
    assert_eq!(rule_reason(&decision), Some(0));
}

// https://vincentlauzon.com/2020/02/03/locking-down-web-app-to-functions-communications-using-subnets
#[test]
fn scenario_02_reference_internet_caller() {
    let site = main_only(vec![subnet_rule(0, 100, Action::Allow, SUBNET_S)], None);
    let decision = decide_main(&site, &internet("203.0.113.50"));
    assert_eq!(decision.verdict, Action::Deny);
    assert_eq!(
        decision.reason,
        Reason::ImplicitDeny {
            list: SiteKind::Main
        }
    );
}

// A Deny rule for the subnet at priority 50 comes first.
// https://learn.microsoft.com/azure/app-service/app-service-ip-restrictions
#[test]
fn scenario_15_deny_before_allow() {
    let site = main_only(
        vec![
            subnet_rule(0, 100, Action::Allow, SUBNET_S),
            subnet_rule(1, 50, Action::Deny, SUBNET_S),
        ],
        None,
    );
    let decision = decide_main(&site, &service_endpoint_source(SUBNET_S));
    assert_eq!(decision.verdict, Action::Deny);
    assert_eq!(rule_reason(&decision), Some(1));
}

// "If there are no rules ... allow all".
// https://learn.microsoft.com/azure/app-service/overview-access-restrictions
#[test]
fn scenario_18_no_rules_allows() {
    let decision = decide_main(&SiteAccess::default(), &internet("198.51.100.1"));
    assert_eq!(decision.verdict, Action::Allow);
    assert_eq!(
        decision.reason,
        Reason::ImplicitAllowNoRules {
            list: SiteKind::Main
        }
    );
}

// https://learn.microsoft.com/azure/app-service/app-service-ip-restrictions
#[test]
fn scenario_19_no_rules_default_deny() {
    let site = main_only(Vec::new(), Some(Action::Deny));
    let decision = decide_main(&site, &internet("198.51.100.1"));
    assert_eq!(decision.verdict, Action::Deny);
    assert_eq!(
        decision.reason,
        Reason::DefaultAction {
            list: SiteKind::Main,
            action: Action::Deny
        }
    );
}

// "Block a single IP address".
// https://learn.microsoft.com/azure/app-service/app-service-ip-restrictions
#[test]
fn scenario_20_block_one_ip() {
    let site = main_only(
        vec![rule(0, 100, Action::Deny, "203.0.113.7/32", None)],
        Some(Action::Allow),
    );

    let blocked = decide_main(&site, &internet("203.0.113.7"));
    assert_eq!(blocked.verdict, Action::Deny);
    assert_eq!(rule_reason(&blocked), Some(0));

    let other = decide_main(&site, &internet("198.51.100.1"));
    assert_eq!(other.verdict, Action::Allow);
    assert_eq!(
        other.reason,
        Reason::DefaultAction {
            list: SiteKind::Main,
            action: Action::Allow
        }
    );
}

// One Deny rule and no default action denies everyone else too.
// https://github.com/MicrosoftDocs/azure-docs/issues/24619
#[test]
fn scenario_21_deny_rule_implicit_deny() {
    let site = main_only(
        vec![rule(0, 100, Action::Deny, "203.0.113.7/32", None)],
        None,
    );
    let decision = decide_main(&site, &internet("198.51.100.1"));
    assert_eq!(decision.verdict, Action::Deny);
    assert_eq!(
        decision.reason,
        Reason::ImplicitDeny {
            list: SiteKind::Main
        }
    );
}

// Equal priorities keep the order of the array: the Deny listed first wins, and with the two
// rules swapped the Allow wins.
// https://learn.microsoft.com/azure/app-service/overview-access-restrictions
#[test]
fn scenario_22_23_priority_tie_keeps_order() {
    let deny_first = main_only(
        vec![
            rule(0, 100, Action::Deny, "203.0.113.7/32", None),
            rule(1, 100, Action::Allow, "203.0.113.0/24", None),
        ],
        None,
    );
    let decision = decide_main(&deny_first, &internet("203.0.113.7"));
    assert_eq!(decision.verdict, Action::Deny);
    assert_eq!(rule_reason(&decision), Some(0));

    let allow_first = main_only(
        vec![
            rule(0, 100, Action::Allow, "203.0.113.0/24", None),
            rule(1, 100, Action::Deny, "203.0.113.7/32", None),
        ],
        None,
    );
    let decision = decide_main(&allow_first, &internet("203.0.113.7"));
    assert_eq!(decision.verdict, Action::Allow);
    assert_eq!(rule_reason(&decision), Some(0));
}

// "Rules are enforced in priority order, from the lowest number".
// https://learn.microsoft.com/azure/app-service/app-service-ip-restrictions
#[test]
fn scenario_24_lower_priority_wins() {
    let site = main_only(
        vec![
            rule(0, 300, Action::Allow, "0.0.0.0/0", None),
            rule(1, 1, Action::Deny, "203.0.113.7/32", None),
        ],
        None,
    );
    let decision = decide_main(&site, &internet("203.0.113.7"));
    assert_eq!(decision.verdict, Action::Deny);
    assert_eq!(rule_reason(&decision), Some(1));
}

// Any address of the X-Forwarded-For chain inside the filter range matches, so a client can
// forge it. https://learn.microsoft.com/azure/templates/microsoft.web/sites/config-web
#[test]
fn scenario_25_forwarded_for_is_spoofable() {
    let site = main_only(
        vec![with_headers(
            rule(0, 100, Action::Allow, "0.0.0.0/0", None),
            &[("x-forwarded-for", &["10.0.0.0/8"])],
        )],
        None,
    );
    let attacker = internet("203.0.113.66");
    let options = EngineOptions::default();

    let forged = decide(
        &site,
        &options,
        &attacker,
        SiteKind::Main,
        &[("X-Forwarded-For", "10.1.2.3")],
    );
    assert_eq!(forged.verdict, Action::Allow);

    let plain = decide(&site, &options, &attacker, SiteKind::Main, &[]);
    assert_eq!(plain.verdict, Action::Deny);
    assert_eq!(plain.ambiguities, vec![Ambiguity::MissingHeader]);
}

fn front_door_site() -> SiteAccess {
    main_only(
        vec![with_headers(
            rule(
                0,
                100,
                Action::Allow,
                "AzureFrontDoor.Backend",
                Some("ServiceTag"),
            ),
            &[("x-azure-fdid", &[FDID_1])],
        )],
        None,
    )
}

// Service tag plus X-Azure-FDID: only the named Front Door profile gets through.
// https://learn.microsoft.com/azure/app-service/app-service-ip-restrictions
#[test]
fn scenario_27_front_door_profile_with_table() {
    let table = ServiceTagTable::from_prefixes([(
        "AzureFrontDoor.Backend",
        vec![
            IpNet::parse("147.243.0.0/16").unwrap(),
            IpNet::parse("2a01:111:2050::/44").unwrap(),
        ],
    )]);
    let options = EngineOptions {
        service_tags: Some(Arc::new(table)),
        ..EngineOptions::default()
    };
    let front_door = internet("147.243.10.20");
    let site = front_door_site();

    let other_profile = decide(
        &site,
        &options,
        &front_door,
        SiteKind::Main,
        &[("X-Azure-FDID", FDID_2)],
    );
    assert_eq!(other_profile.verdict, Action::Deny);

    let own_profile = decide(
        &site,
        &options,
        &front_door,
        SiteKind::Main,
        &[("X-Azure-FDID", FDID_1)],
    );
    assert_eq!(own_profile.verdict, Action::Allow);

    let direct = decide(
        &site,
        &options,
        &internet("198.51.100.1"),
        SiteKind::Main,
        &[("X-Azure-FDID", FDID_1)],
    );
    assert_eq!(direct.verdict, Action::Deny);
}

// Without a prefix table the source's declared tags decide.
// https://learn.microsoft.com/azure/app-service/app-service-ip-restrictions
#[test]
fn scenario_27_front_door_profile_by_tag_name() {
    let options = EngineOptions::default();
    let mut front_door = internet("192.0.2.10");
    front_door.service_tags = vec!["azurefrontdoor.backend".into()];
    let site = front_door_site();

    let other_profile = decide(
        &site,
        &options,
        &front_door,
        SiteKind::Main,
        &[("X-Azure-FDID", FDID_2)],
    );
    assert_eq!(other_profile.verdict, Action::Deny);

    let own_profile = decide(
        &site,
        &options,
        &front_door,
        SiteKind::Main,
        &[("X-Azure-FDID", FDID_1)],
    );
    assert_eq!(own_profile.verdict, Action::Allow);
    assert_eq!(own_profile.ambiguities, Vec::new());

    let direct = decide(
        &site,
        &options,
        &internet("198.51.100.1"),
        SiteKind::Main,
        &[],
    );
    assert_eq!(direct.verdict, Action::Deny);
    assert_eq!(
        direct.ambiguities,
        vec![Ambiguity::ServiceTagUnresolved {
            tag: "AzureFrontDoor.Backend".into()
        }]
    );
}

// A multi-source rule matches when any of its ranges does.
// https://learn.microsoft.com/azure/app-service/app-service-ip-restrictions
#[test]
fn scenario_30_multi_source_rule() {
    let site = main_only(
        vec![rule(
            0,
            100,
            Action::Allow,
            "192.168.1.0/24,192.168.10.0/24,192.168.100.0/24",
            None,
        )],
        None,
    );
    assert_eq!(
        decide_main(&site, &internet("192.168.10.5")).verdict,
        Action::Allow
    );
    assert_eq!(
        decide_main(&site, &internet("192.168.11.5")).verdict,
        Action::Deny
    );
}

// "IP-based access restriction rules only handle virtual network address ranges when your app
// is in an App Service Environment": service-endpoint traffic never matches an IP rule.
// https://learn.microsoft.com/azure/app-service/app-service-ip-restrictions
#[test]
fn scenario_31_private_range_rule_multitenant() {
    let site = main_only(vec![rule(0, 100, Action::Allow, "10.0.0.0/24", None)], None);
    let mut caller = service_endpoint_source(SUBNET_S);
    caller.address = addr("10.0.0.4");
    assert_eq!(decide_main(&site, &caller).verdict, Action::Deny);
}

// In an App Service Environment the front end sees the caller's VNet address as a plain
// source, which the emulator models as a source without a service endpoint.
// https://learn.microsoft.com/azure/app-service/app-service-ip-restrictions
#[test]
fn scenario_32_private_range_rule_ase() {
    let site = main_only(vec![rule(0, 100, Action::Allow, "10.0.0.0/24", None)], None);
    assert_eq!(
        decide_main(&site, &internet("10.0.0.4")).verdict,
        Action::Allow
    );
}

// IPv4 rules do not match IPv6 clients.
// https://learn.microsoft.com/azure/app-service/overview-access-restrictions
#[test]
fn scenario_34_ipv6_client() {
    let v4_only = main_only(
        vec![rule(0, 100, Action::Allow, "198.51.100.0/24", None)],
        None,
    );
    assert_eq!(
        decide_main(&v4_only, &internet("2001:db8::5")).verdict,
        Action::Deny
    );

    let both = main_only(
        vec![
            rule(0, 100, Action::Allow, "198.51.100.0/24", None),
            rule(1, 200, Action::Allow, "2001:db8::/32", None),
        ],
        None,
    );
    let decision = decide_main(&both, &internet("2001:db8::5"));
    assert_eq!(decision.verdict, Action::Allow);
    assert_eq!(rule_reason(&decision), Some(1));
}

// A caller seen at an internal `fd00:` address is not in AzureCloud.
// https://github.com/Azure/static-web-apps/issues/1666
#[test]
fn scenario_35_service_tag_misses_internal_ipv6() {
    let table = ServiceTagTable::from_prefixes([(
        "AzureCloud",
        vec![
            IpNet::parse("20.0.0.0/11").unwrap(),
            IpNet::parse("2603:1000::/24").unwrap(),
        ],
    )]);
    let options = EngineOptions {
        service_tags: Some(Arc::new(table)),
        ..EngineOptions::default()
    };
    let site = main_only(
        vec![rule(
            0,
            100,
            Action::Allow,
            "AzureCloud",
            Some("ServiceTag"),
        )],
        None,
    );

    let internal = decide(
        &site,
        &options,
        &internet("fd00:0:1200::5"),
        SiteKind::Main,
        &[],
    );
    assert_eq!(internal.verdict, Action::Deny);

    let public = decide(&site, &options, &internet("20.1.2.3"), SiteKind::Main, &[]);
    assert_eq!(public.verdict, Action::Allow);
}

// The scm site has its own list; an empty one with no default allows all.
// https://learn.microsoft.com/azure/app-service/app-service-ip-restrictions
#[test]
fn scenario_37_scm_open_main_locked() {
    let site = main_only(
        vec![rule(0, 100, Action::Allow, "198.51.100.0/24", None)],
        None,
    );
    let caller = internet("203.0.113.9");
    let options = EngineOptions::default();

    let scm = decide(&site, &options, &caller, SiteKind::Scm, &[]);
    assert_eq!(scm.verdict, Action::Allow);
    assert_eq!(
        scm.reason,
        Reason::ImplicitAllowNoRules {
            list: SiteKind::Scm
        }
    );

    let main = decide(&site, &options, &caller, SiteKind::Main, &[]);
    assert_eq!(main.verdict, Action::Deny);
}

// `scmIpSecurityRestrictionsUseMain` makes the scm site use the main list.
// https://learn.microsoft.com/azure/app-service/app-service-ip-restrictions
#[test]
fn scm_uses_main_list() {
    let mut site = main_only(
        vec![rule(0, 100, Action::Allow, "198.51.100.0/24", None)],
        None,
    );
    site.scm_uses_main = true;
    let decision = decide(
        &site,
        &EngineOptions::default(),
        &internet("203.0.113.9"),
        SiteKind::Scm,
        &[],
    );
    assert_eq!(decision.verdict, Action::Deny);
    assert_eq!(
        decision.reason,
        Reason::ImplicitDeny {
            list: SiteKind::Main
        }
    );
}

// https://learn.microsoft.com/azure/app-service/app-service-ip-restrictions
#[test]
fn scenario_39_scm_default_deny() {
    let site = SiteAccess {
        scm: list(Vec::new(), Some(Action::Deny)),
        ..SiteAccess::default()
    };
    let decision = decide(
        &site,
        &EngineOptions::default(),
        &internet("198.51.100.1"),
        SiteKind::Scm,
        &[],
    );
    assert_eq!(decision.verdict, Action::Deny);
    assert_eq!(
        decision.reason,
        Reason::DefaultAction {
            list: SiteKind::Scm,
            action: Action::Deny
        }
    );
}

// "Deploy through a private endpoint": public main site, scm reachable only through the
// private endpoint. https://learn.microsoft.com/azure/app-service/overview-access-restrictions
#[test]
fn scenario_40_deploy_through_private_endpoint() {
    let site = SiteAccess {
        scm: list(Vec::new(), Some(Action::Deny)),
        public_network_access: PublicNetworkAccess::Enabled,
        has_private_endpoint: true,
        ..SiteAccess::default()
    };
    let options = EngineOptions::default();
    let caller = internet("198.51.100.1");

    assert_eq!(
        decide(&site, &options, &caller, SiteKind::Main, &[]).verdict,
        Action::Allow
    );
    assert_eq!(
        decide(&site, &options, &caller, SiteKind::Scm, &[]).verdict,
        Action::Deny
    );

    let mut agent = internet("10.0.1.4");
    agent.entry = Entry::PrivateEndpoint;
    let through_endpoint = decide(&site, &options, &agent, SiteKind::Scm, &[]);
    assert_eq!(through_endpoint.verdict, Action::Allow);
    assert_eq!(through_endpoint.reason, Reason::PrivateEndpoint);
}

// App access disabled without a private endpoint leaves no way in.
// https://github.com/MicrosoftDocs/azure-docs/issues/112891
#[test]
fn scenario_41_public_access_disabled() {
    let site = SiteAccess {
        public_network_access: PublicNetworkAccess::Disabled,
        ..SiteAccess::default()
    };
    let options = EngineOptions::default();
    for kind in [SiteKind::Main, SiteKind::Scm] {
        let decision = decide(&site, &options, &internet("198.51.100.1"), kind, &[]);
        assert_eq!(decision.verdict, Action::Deny, "{kind}");
        assert_eq!(
            decision.reason,
            Reason::PublicNetworkAccessDisabled { explicit: true },
            "{kind}"
        );
    }
}

// With a private endpoint and `publicNetworkAccess` unset, the public address returns 403.
// https://learn.microsoft.com/azure/app-service/overview-private-endpoint
#[test]
fn scenario_43_private_endpoint_implicitly_disables_public() {
    let site = SiteAccess {
        has_private_endpoint: true,
        ..SiteAccess::default()
    };
    let decision = decide_main(&site, &internet("198.51.100.1"));
    assert_eq!(decision.verdict, Action::Deny);
    assert_eq!(
        decision.reason,
        Reason::PublicNetworkAccessDisabled { explicit: false }
    );
}

// A 2023 user report says service-endpoint traffic still got in with public access disabled.
// https://github.com/MicrosoftDocs/azure-docs/issues/112891
#[test]
fn service_endpoint_with_public_access_disabled() {
    let site = SiteAccess {
        public_network_access: PublicNetworkAccess::Disabled,
        ..SiteAccess::default()
    };
    let decision = decide_main(&site, &service_endpoint_source(SUBNET_S));
    assert_eq!(decision.verdict, Action::Deny);
    assert_eq!(
        decision.ambiguities,
        vec![Ambiguity::ServiceEndpointWithPublicAccessDisabled]
    );
}

// "Access restriction rules based on service endpoints are not supported on apps that have
// private endpoint configured". https://learn.microsoft.com/azure/app-service/overview-access-restrictions
#[test]
fn subnet_rule_with_private_endpoint() {
    let site = SiteAccess {
        main: list(vec![subnet_rule(0, 100, Action::Allow, SUBNET_S)], None),
        public_network_access: PublicNetworkAccess::Enabled,
        has_private_endpoint: true,
        ..SiteAccess::default()
    };
    let decision = decide_main(&site, &service_endpoint_source(SUBNET_S));
    assert_eq!(decision.verdict, Action::Deny);
    assert_eq!(
        decision.ambiguities,
        vec![Ambiguity::SubnetRuleWithPrivateEndpoint]
    );
}

// `AnyVnets` matches service-endpoint traffic from any subnet and nothing else.
// https://learn.microsoft.com/azure/app-service/overview-access-restrictions
#[test]
fn any_vnets_rule() {
    let site = main_only(vec![rule(0, 100, Action::Allow, "AnyVnets", None)], None);
    let other_subnet = SUBNET_S.replace("/default", "/other");
    assert_eq!(
        decide_main(&site, &service_endpoint_source(&other_subnet)).verdict,
        Action::Allow
    );
    assert_eq!(
        decide_main(&site, &internet("198.51.100.1")).verdict,
        Action::Deny
    );
}

// A subnet rule matches only its own subnet, whatever the case of the resource id.
// https://learn.microsoft.com/azure/app-service/app-service-ip-restrictions
#[test]
fn subnet_rule_exact_subnet() {
    let site = main_only(vec![subnet_rule(0, 100, Action::Allow, SUBNET_S)], None);
    let other_subnet = SUBNET_S.replace("/default", "/other");
    let upper = SUBNET_S.to_ascii_uppercase();
    assert_eq!(
        decide_main(&site, &service_endpoint_source(&other_subnet)).verdict,
        Action::Deny
    );
    assert_eq!(
        decide_main(&site, &service_endpoint_source(&upper)).verdict,
        Action::Allow
    );
}

// `Any` also matches service-endpoint traffic.
#[test]
fn any_rule_matches_service_endpoint() {
    let site = main_only(
        vec![rule(0, 100, Action::Deny, "Any", None)],
        Some(Action::Allow),
    );
    assert_eq!(
        decide_main(&site, &service_endpoint_source(SUBNET_S)).verdict,
        Action::Deny
    );
    assert_eq!(
        decide_main(&site, &internet("2001:db8::1")).verdict,
        Action::Deny
    );
}

// A dual-stack listener reports IPv4 peers as `::ffff:a.b.c.d`; they still match IPv4 rules.
#[test]
fn mapped_ipv4_source() {
    let site = main_only(
        vec![rule(0, 100, Action::Allow, "198.51.100.0/24", None)],
        None,
    );
    assert_eq!(
        decide_main(&site, &internet("::ffff:198.51.100.7")).verdict,
        Action::Allow
    );
}

#[test]
fn xff_proxy_default_never_matches() {
    let site = main_only(
        vec![rule(0, 100, Action::Allow, "10.0.0.0/8", Some("XffProxy"))],
        None,
    );
    let decision = decide(
        &site,
        &EngineOptions::default(),
        &internet("198.51.100.1"),
        SiteKind::Main,
        &[("x-forwarded-for", "10.1.1.1")],
    );
    assert_eq!(decision.verdict, Action::Deny);
    assert_eq!(decision.ambiguities, vec![Ambiguity::XffProxyUndocumented]);
}

#[test]
fn xff_proxy_optional_reading() {
    let site = main_only(
        vec![rule(0, 100, Action::Allow, "10.0.0.0/8", Some("XffProxy"))],
        None,
    );
    let options = EngineOptions {
        xff_proxy_matches_forwarded_for: true,
        ..EngineOptions::default()
    };
    let caller = internet("198.51.100.1");

    let forwarded = decide(
        &site,
        &options,
        &caller,
        SiteKind::Main,
        &[("x-forwarded-for", "10.1.1.1")],
    );
    assert_eq!(forwarded.verdict, Action::Allow);
    assert_eq!(forwarded.ambiguities, vec![Ambiguity::XffProxyUndocumented]);

    let other = decide(
        &site,
        &options,
        &caller,
        SiteKind::Main,
        &[("x-forwarded-for", "192.0.2.1")],
    );
    assert_eq!(other.verdict, Action::Deny);
}

#[test]
fn fdid_case_only_match() {
    let site = front_door_site();
    let mut front_door = internet("192.0.2.10");
    front_door.service_tags = vec!["AzureFrontDoor.Backend".into()];
    let upper = FDID_1.to_ascii_uppercase();
    let decision = decide(
        &site,
        &EngineOptions::default(),
        &front_door,
        SiteKind::Main,
        &[("x-azure-fdid", upper.as_str())],
    );
    assert_eq!(decision.verdict, Action::Allow);
    assert_eq!(decision.ambiguities, vec![Ambiguity::HeaderValueCase]);
}

// A header filter that fails skips the rule; evaluation goes on to the next one.
// https://learn.microsoft.com/azure/app-service/app-service-ip-restrictions
#[test]
fn failed_header_filter_continues() {
    let site = main_only(
        vec![
            with_headers(
                rule(0, 100, Action::Deny, "0.0.0.0/0", None),
                &[("x-forwarded-host", &["*.contoso.com"])],
            ),
            rule(1, 200, Action::Allow, "198.51.100.0/24", None),
        ],
        None,
    );
    let options = EngineOptions::default();
    let caller = internet("198.51.100.1");

    let other_host = decide(
        &site,
        &options,
        &caller,
        SiteKind::Main,
        &[("x-forwarded-host", "fabrikam.com")],
    );
    assert_eq!(rule_reason(&other_host), Some(1));

    let contoso = decide(
        &site,
        &options,
        &caller,
        SiteKind::Main,
        &[("x-forwarded-host", "www.contoso.com")],
    );
    assert_eq!(rule_reason(&contoso), Some(0));
}
