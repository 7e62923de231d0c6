//! The reachability matrix of a topology.

use std::collections::BTreeSet;
use std::net::IpAddr;

use serde::Serialize;
use subnetlock_access::{
    Action, Ambiguity, CompiledSiteAccess, Decision, EngineOptions, HeaderLookup, Reason, Request,
    ServiceTagTable, SiteKind, SourceCondition,
};
use subnetlock_arm::Value;
use subnetlock_model::egress::{self, Egress};
use subnetlock_model::internet::{
    named_ranges, singles_out, unnamed_internet, unnamed_internet_v4,
};
use subnetlock_model::{Finding, FindingCode, Severity, Site, Topology};

/// The kind of caller a row is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CallerKind {
    Internet,
    Subnet,
    App,
    ServiceTag,
}

/// A caller the analysis tries, with the text `up`'s `--from` accepts for it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CallerSpec {
    pub kind: CallerKind,
    /// `internet:<address>`, `subnet:<vnet>/<subnet>`, `app:<site>` or `servicetag:<tag>`.
    pub label: String,
    /// The reason this caller is in the matrix, for example the rule whose range it samples.
    pub note: Option<String>,
}

/// A site and which of its two host names.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Target {
    pub site: String,
    pub kind: SiteKind,
    pub host: String,
}

/// One cell of the matrix: what the front end does with this caller's request to this target.
#[derive(Clone, Debug, Serialize)]
pub struct Reachability {
    pub from: CallerSpec,
    pub to: Target,
    pub egress: Egress,
    pub decision: Decision,
    /// Rules that could change this verdict but depend on values unknown offline.
    pub depends_on_unknown: Vec<String>,
    /// The target's invalid `publicNetworkAccess` value, which reads as `Disabled`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invalid_public_network_access: Option<String>,
}

impl Reachability {
    /// Whether the request reaches the front end and the front end lets it through.
    pub fn allowed(&self) -> bool {
        self.egress.reaches_front_end() && self.decision.verdict == Action::Allow
    }
}

/// An app that calls another site of the deployment, found from an app setting whose value
/// names that site's host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AppCall {
    pub from_site: String,
    pub to_site: String,
    pub to_kind: SiteKind,
    /// The app setting that contains the URL.
    pub setting: String,
    /// The URL path, without the query string.
    pub path: String,
    /// Whether the URL carries a function key (`code=`).
    pub with_key: bool,
}

/// Everything `check` reports about a deployment.
#[derive(Clone, Debug, Serialize)]
pub struct Analysis {
    pub topology: Topology,
    pub rows: Vec<Reachability>,
    pub calls: Vec<AppCall>,
    /// Model findings followed by reachability findings, sorted by severity then code.
    pub findings: Vec<Finding>,
}

/// No request headers: the matrix is about plain requests.
struct NoHeaders;

impl HeaderLookup for NoHeaders {
    fn values(&self, _lower_case_name: &str) -> Vec<&str> {
        Vec::new()
    }
}

/// Builds the reachability matrix and its findings.
pub fn analyze(topology: Topology, options: &EngineOptions) -> Analysis {
    let callers = callers(&topology, options.service_tags.as_deref());
    let mut rows = Vec::new();
    for site in &topology.sites {
        let compiled = CompiledSiteAccess::compile(&site.access, options);
        for kind in [SiteKind::Main, SiteKind::Scm] {
            let host = match kind {
                SiteKind::Main => site.default_host_name.clone(),
                SiteKind::Scm => site.scm_host_name.clone(),
            };
            let target = Target {
                site: site.name.clone(),
                kind,
                host,
            };
            for caller in &callers {
                if let Some(row) =
                    reachability(&topology, site, &compiled, caller, &target, options)
                {
                    rows.push(row);
                }
            }
        }
    }

    let calls = app_calls(&topology);
    let mut findings = topology.findings.clone();
    findings.extend(reach_findings(&topology, &rows, options));
    sort_findings(&mut findings);
    Analysis {
        topology,
        rows,
        calls,
        findings,
    }
}

/// Sorts findings as [`Analysis::findings`] keeps them: by severity, most serious first, then
/// by code and message.
pub fn sort_findings(findings: &mut [Finding]) {
    findings.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then(a.code.cmp(&b.code))
            .then(a.message.cmp(&b.message))
    });
}

/// Builds the row of one caller to one host name, for a caller the matrix may not list, such as
/// an internet address that no rule names. `caller` is written as `--from` accepts it. Returns
/// `None` when no site serves `host` or when `caller` names no caller of this deployment.
pub fn reachability_of(
    topology: &Topology,
    caller: &str,
    host: &str,
    options: &EngineOptions,
) -> Option<Reachability> {
    let (site, kind) = topology.site_for_host(host)?;
    let kind_of_caller = match caller.split_once(':')?.0 {
        "internet" => CallerKind::Internet,
        "subnet" => CallerKind::Subnet,
        "app" => CallerKind::App,
        "servicetag" => CallerKind::ServiceTag,
        _ => return None,
    };
    let note = match kind_of_caller {
        CallerKind::Internet => {
            internet_caller_note(topology, caller, options.service_tags.as_deref())
        }
        _ => None,
    };
    let caller = CallerSpec {
        kind: kind_of_caller,
        label: caller.to_owned(),
        note,
    };
    let target = Target {
        site: site.name.clone(),
        kind,
        host: match kind {
            SiteKind::Main => site.default_host_name.clone(),
            SiteKind::Scm => site.scm_host_name.clone(),
        },
    };
    let compiled = CompiledSiteAccess::compile(&site.access, options);
    reachability(topology, site, &compiled, &caller, &target, options)
}

/// Says how `caller` (`internet:<address>`) relates to the rules: inside the first IP range a
/// rule names, else inside a prefix in `service_tags` of a tag a rule names, or named by none,
/// as the matrix notes its own internet callers.
fn internet_caller_note(
    topology: &Topology,
    caller: &str,
    service_tags: Option<&ServiceTagTable>,
) -> Option<String> {
    let address: IpAddr = caller
        .split_once(':')?
        .1
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()?;
    let rules = || {
        topology
            .sites
            .iter()
            .flat_map(|site| [&site.access.main, &site.access.scm])
            .flat_map(|list| &list.rules)
    };
    let range = rules()
        .filter_map(|rule| match &rule.source {
            SourceCondition::Ranges(ranges) => Some(ranges),
            _ => None,
        })
        .flatten()
        .find(|range| range.contains(address));
    if let Some(range) = range {
        return Some(format!("inside {}/{}", range.network, range.prefix));
    }

    let tag = rules()
        .filter_map(|rule| match &rule.source {
            SourceCondition::ServiceTags(tags) => Some(tags),
            _ => None,
        })
        .flatten()
        .find(|tag| {
            service_tags
                .and_then(|table| table.prefixes(tag))
                .is_some_and(|prefixes| prefixes.iter().any(|range| range.contains(address)))
        });
    Some(match tag {
        Some(tag) => format!("inside a prefix of service tag `{tag}`"),
        None => "an address that no rule names".to_owned(),
    })
}

/// Asks the engine what the front end of `target` does with `caller`'s request. Returns `None`
/// when `caller` names no caller of this deployment.
fn reachability(
    topology: &Topology,
    site: &Site,
    compiled: &CompiledSiteAccess,
    caller: &CallerSpec,
    target: &Target,
    options: &EngineOptions,
) -> Option<Reachability> {
    let destination = egress::Destination {
        site,
        kind: target.kind,
    };
    let egress = egress_of(topology, caller, Some(destination), options)?;
    let mut decision = compiled.decide(&Request {
        source: &egress.source,
        site: target.kind,
        headers: &NoHeaders,
    });
    subnetlock_model::note_rule_defaults(site, &mut decision);
    // A request that a network security group drops never meets the site's rules, so rules
    // unknown offline cannot change its row.
    let mut depends_on_unknown = if egress.reaches_front_end() {
        unknown_dependencies(site, target.kind, &decision)
    } else {
        Vec::new()
    };
    if let Some(routed) = routed_caller(topology, caller) {
        let offline = outcome(&egress, &decision);
        depends_on_unknown.extend(route_all_dependencies(
            topology,
            &routed,
            destination,
            compiled,
            offline,
        ));
    }
    Some(Reachability {
        from: caller.clone(),
        to: target.clone(),
        egress,
        decision,
        depends_on_unknown,
        invalid_public_network_access: site.invalid_public_network_access.clone(),
    })
}

/// Lists the callers worth trying: the internet from a documentation address, one address inside
/// each IP range a rule names, each subnet, and each app. `service_tags` is the table the engine
/// resolves service-tag rules with.
fn callers(topology: &Topology, service_tags: Option<&ServiceTagTable>) -> Vec<CallerSpec> {
    let mut callers = vec![CallerSpec {
        kind: CallerKind::Internet,
        label: format!("internet:{}", egress::INTERNET_SAMPLE),
        note: Some("a sample of the addresses that no rule names".to_owned()),
    }];

    // A site that accepts IPv6 clients gets an IPv6 internet caller from the documentation
    // range 2001:db8::/32 (RFC 3849), so rules written only for IPv4 show what they do to it.
    let accepts_ipv6 = topology.sites.iter().any(|site| {
        site.ip_mode
            .as_deref()
            .is_some_and(|mode| mode.to_ascii_lowercase().contains("ipv6"))
    });
    if accepts_ipv6 {
        callers.push(CallerSpec {
            kind: CallerKind::Internet,
            label: format!("internet:{}", egress::INTERNET_SAMPLE_V6),
            note: Some("a sample of the IPv6 addresses that no rule names".to_owned()),
        });
    }

    // The internet samples count as sampled, so that a range that contains only one of them
    // (a `/32` rule for 203.0.113.10) does not repeat its row.
    let mut sampled: BTreeSet<IpAddr> = callers
        .iter()
        .filter_map(|caller| caller.label.strip_prefix("internet:")?.parse().ok())
        .collect();
    let mut tags = BTreeSet::new();
    let mut rule_ranges = Vec::new();
    let mut xff_proxy_ranges: Vec<subnetlock_access::IpNet> = Vec::new();
    for site in &topology.sites {
        for list in [&site.access.main, &site.access.scm] {
            for rule in &list.rules {
                match &rule.source {
                    SourceCondition::ServiceTags(names) => tags.extend(names.iter().cloned()),
                    SourceCondition::XffProxy(ranges) => xff_proxy_ranges.extend(ranges),
                    _ => {}
                }
                let SourceCondition::Ranges(ranges) = &rule.source else {
                    continue;
                };
                for range in ranges {
                    rule_ranges.push(*range);
                    let address = sample_address(range.network, range.prefix, &sampled);
                    if sampled.insert(address) {
                        callers.push(CallerSpec {
                            kind: CallerKind::Internet,
                            label: format!("internet:{address}"),
                            note: Some(format!("inside {}/{}", range.network, range.prefix)),
                        });
                    }
                }
            }
        }
    }

    // The internet samples stand for addresses no rule names, unless a rule names them too,
    // by an IP range or by a service tag whose prefixes contain them. Then another address
    // stands for those, when one exists: with a `Deny` rule for the sample's range and the
    // default action `Allow`, the rest of the internet is allowed, and the matrix must show it.
    let named = named_ranges(topology, service_tags);
    for sample in [egress::INTERNET_SAMPLE, egress::INTERNET_SAMPLE_V6] {
        let label = format!("internet:{sample}");
        let Some(caller) = callers.iter_mut().find(|caller| caller.label == label) else {
            continue;
        };
        let note = if rule_ranges.iter().any(|range| range.contains(sample)) {
            "a documentation address that a rule's range contains"
        } else if xff_proxy_ranges.iter().any(|range| range.contains(sample)) {
            "a documentation address that the range of an `XffProxy` rule contains"
        } else if named.iter().any(|range| range.contains(sample)) {
            "a documentation address that a prefix of a rule's service tag contains"
        } else {
            continue;
        };
        caller.note = Some(note.to_owned());
        let address = unnamed_internet(topology, service_tags, sample);
        if address == sample || sampled.contains(&address) {
            continue;
        }
        let whole_family_named = named
            .iter()
            .any(|range| !singles_out(range) && range.network.is_ipv4() == sample.is_ipv4());
        let note = if whole_family_named {
            "a sample of the addresses that no rule names, except rules for every address"
        } else {
            "a sample of the addresses that no rule names"
        };
        callers.push(CallerSpec {
            kind: CallerKind::Internet,
            label: format!("internet:{address}"),
            note: Some(note.to_owned()),
        });
    }

    for tag in tags {
        callers.push(CallerSpec {
            kind: CallerKind::ServiceTag,
            label: format!("servicetag:{tag}"),
            note: Some("a service in the tag a rule names".to_owned()),
        });
    }

    for vnet in &topology.vnets {
        for subnet in &vnet.subnets {
            callers.push(CallerSpec {
                kind: CallerKind::Subnet,
                label: format!("subnet:{}/{}", vnet.name, subnet.name),
                note: Some("a VM or gateway in the subnet".to_owned()),
            });
        }
    }
    for site in &topology.sites {
        callers.push(CallerSpec {
            kind: CallerKind::App,
            label: format!("app:{}", site.name),
            note: None,
        });
    }
    callers
}

/// Addresses from the documentation ranges (RFC 5737, RFC 3849) that a range's sample prefers,
/// so that a wide range such as `0.0.0.0/0` is shown with an address a reader recognises as an
/// internet client. The internet samples themselves are left out, so a range's sample never
/// repeats their row.
const DOCUMENTATION_SAMPLES: [IpAddr; 5] = [
    IpAddr::V4(std::net::Ipv4Addr::new(198, 51, 100, 1)),
    IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1)),
    IpAddr::V4(std::net::Ipv4Addr::new(203, 0, 113, 1)),
    IpAddr::V6(std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
    // 3fff::/20 is the second IPv6 documentation prefix (RFC 9637). Without it, `::/0` beside
    // a 2001:db8:: range would be sampled at `::1`, the loopback address.
    IpAddr::V6(std::net::Ipv6Addr::new(0x3fff, 0, 0, 0, 0, 0, 0, 1)),
];

/// Returns an address inside a range: a documentation address that the range contains and no
/// other range's sample (in `taken`) uses, else the first host address where the range has
/// one. A first host in `0.0.0.0/8` ("this network", RFC 1122), which no client has, moves to
/// `1.0.0.1` when the range contains it.
fn sample_address(network: IpAddr, prefix: u8, taken: &BTreeSet<IpAddr>) -> IpAddr {
    let range = subnetlock_access::IpNet::new(network, prefix);
    let documented = DOCUMENTATION_SAMPLES.into_iter().find(|address| {
        !taken.contains(address) && range.is_some_and(|range| range.contains(*address))
    });
    if let Some(address) = documented {
        return address;
    }
    match network {
        IpAddr::V4(v4) if prefix < 31 => {
            let first = std::net::Ipv4Addr::from(u32::from(v4) + 1);
            let usable = std::net::Ipv4Addr::new(1, 0, 0, 1);
            if first.octets()[0] == 0 && range.is_some_and(|range| range.contains(usable.into())) {
                IpAddr::V4(usable)
            } else {
                IpAddr::V4(first)
            }
        }
        IpAddr::V6(v6) if prefix < 127 => IpAddr::V6(std::net::Ipv6Addr::from(u128::from(v6) + 1)),
        other => other,
    }
}

pub(crate) fn egress_of(
    topology: &Topology,
    caller: &CallerSpec,
    target: Option<egress::Destination<'_>>,
    options: &EngineOptions,
) -> Option<Egress> {
    let (kind, value) = caller.label.split_once(':')?;
    match kind {
        "internet" => value
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .ok()
            .map(egress::from_internet),
        "subnet" => topology
            .find_subnet(value)
            .map(|subnet| egress::from_subnet_to_site(topology, subnet, target)),
        "app" => topology
            .site(value)
            .map(|site| egress::from_site_to_site(topology, site, target)),
        "servicetag" if !value.is_empty() => Some(egress::from_service_tag(
            value,
            options.service_tags.as_deref(),
        )),
        _ => None,
    }
}

/// Unknown rules that sit before the deciding rule (or anywhere, when no rule decided) could
/// change the verdict.
fn unknown_dependencies(site: &Site, kind: SiteKind, decision: &Decision) -> Vec<String> {
    let list = match kind {
        SiteKind::Scm if !site.access.scm_uses_main => SiteKind::Scm,
        _ => SiteKind::Main,
    };
    let relevant = !matches!(
        decision.reason,
        Reason::PrivateEndpoint | Reason::PublicNetworkAccessDisabled { .. }
    );
    if !relevant {
        return Vec::new();
    }
    let rules = site
        .unknown_rules
        .iter()
        .filter(|rule| rule.list == list)
        .map(|rule| rule.describe());
    let settings = site
        .unknown_settings
        .iter()
        .filter(|setting| setting.affects(kind, list))
        .map(|setting| format!("{}: {}", setting.setting, setting.expression));
    rules.chain(settings).collect()
}

/// Returns app `caller` as it would be with route-all on, when its route-all is off offline but
/// depends on a setting known only at deployment time.
fn routed_caller(topology: &Topology, caller: &CallerSpec) -> Option<Site> {
    if caller.kind != CallerKind::App {
        return None;
    }
    let name = caller.label.strip_prefix("app:")?;
    let site = topology.sites.iter().find(|site| site.name == name)?;
    if !site.route_all.depends_on_unknown() {
        return None;
    }
    let mut routed = site.clone();
    routed.route_all.enabled = true;
    Some(routed)
}

/// Returns what a row shows: `None` when the request never reaches the front end, else the
/// verdict.
fn outcome(egress: &Egress, decision: &Decision) -> Option<Action> {
    egress.reaches_front_end().then_some(decision.verdict)
}

/// Returns the unknown route-all settings of caller `routed` (the app with route-all on) when
/// turning route-all on changes the row's `outcome`, for example because the request then
/// leaves through a NAT gateway or meets the subnet's network security group.
fn route_all_dependencies(
    topology: &Topology,
    routed: &Site,
    target: egress::Destination<'_>,
    compiled: &CompiledSiteAccess,
    offline: Option<Action>,
) -> Vec<String> {
    let egress = egress::from_site_to_site(topology, routed, Some(target));
    let decision = compiled.decide(&Request {
        source: &egress.source,
        site: target.kind,
        headers: &NoHeaders,
    });
    if outcome(&egress, &decision) == offline {
        return Vec::new();
    }
    routed
        .route_all
        .unknown_settings
        .iter()
        .map(|unknown| format!("{}: {}", unknown.setting, unknown.expression))
        .collect()
}

/// Calls between apps, from app settings whose value is a URL on a site of the deployment.
fn app_calls(topology: &Topology) -> Vec<AppCall> {
    let mut calls = Vec::new();
    for site in &topology.sites {
        for setting in &site.app_settings {
            let Value::String(text) = &setting.value else {
                continue;
            };
            let Some(rest) = text
                .strip_prefix("https://")
                .or_else(|| text.strip_prefix("http://"))
            else {
                continue;
            };
            let (authority, path_and_query) = match rest.find('/') {
                Some(at) => (&rest[..at], &rest[at..]),
                None => (rest, "/"),
            };
            let Some((target, kind)) = topology.site_for_host(authority) else {
                continue;
            };
            let (path, query) = path_and_query
                .split_once('?')
                .unwrap_or((path_and_query, ""));
            calls.push(AppCall {
                from_site: site.name.clone(),
                to_site: target.name.clone(),
                to_kind: kind,
                setting: setting.name.clone(),
                path: path.to_owned(),
                with_key: query.split('&').any(|pair| pair.starts_with("code=")),
            });
        }
    }
    calls
}

fn reach_findings(
    topology: &Topology,
    rows: &[Reachability],
    options: &EngineOptions,
) -> Vec<Finding> {
    let mut findings = Vec::new();
    // SL012 compares what the internet at large gets: the caller that stands for addresses no
    // rule names, which is not the sample when a rule's range or service tag contains it.
    let internet = format!(
        "internet:{}",
        unnamed_internet_v4(topology, options.service_tags.as_deref())
    );
    for site in &topology.sites {
        let cell = |kind: SiteKind| {
            rows.iter().find(|row| {
                row.to.site == site.name && row.to.kind == kind && row.from.label == internet
            })
        };
        if let (Some(main), Some(scm)) = (cell(SiteKind::Main), cell(SiteKind::Scm)) {
            if !main.allowed() && scm.allowed() {
                findings.push(
                    Finding::new(FindingCode::SL012, Severity::Warning, scm_open_message(site, main, scm))
                    .help("set `scmIpSecurityRestrictionsUseMain: true`, or give the scm site its own rules or `scmIpSecurityRestrictionsDefaultAction: Deny`")
                    .at(&site.id, site.declared_at.clone()),
                );
            }
        }

        for kind in [SiteKind::Main, SiteKind::Scm] {
            if let Some(message) = implicit_deny_message(site, kind) {
                findings.push(
                    Finding::new(FindingCode::SL013, Severity::Info, message)
                    .help("this is usually intended; set the default action explicitly to make it visible")
                    .at(&site.id, site.declared_at.clone()),
                );
            }
        }
    }

    for site in &topology.sites {
        findings.extend(spoofable_rules(site));
    }

    let mut seen = BTreeSet::new();
    for row in rows {
        for ambiguity in &row.decision.ambiguities {
            let key = (row.to.site.clone(), format!("{ambiguity:?}"));
            if !seen.insert(key) {
                continue;
            }
            findings.push(
                Finding::new(
                    FindingCode::SL011,
                    Severity::Info,
                    format!(
                        "a verdict on `{}` depends on a reading of ambiguous Azure behaviour: {}",
                        row.to.site,
                        describe_ambiguity(ambiguity)
                    ),
                )
                .help("docs/fidelity.md explains the reading subnetlock chose and its source"),
            );
        }
    }
    findings
}

/// Words SL012 for `site`, whose internet rows show the main site denied and the scm site
/// allowed. A verdict that depends on a value known only at deployment time is stated as
/// possible, with the values it depends on: an unknown rule list, for example, denies offline
/// only because its placeholder matches nothing.
fn scm_open_message(site: &Site, main: &Reachability, scm: &Reachability) -> String {
    let scm_state = if scm.depends_on_unknown.is_empty() {
        "is open"
    } else {
        "may be open"
    };
    let main_state = if main.depends_on_unknown.is_empty() {
        "is locked"
    } else {
        "may be locked"
    };
    let mut message = format!(
        "the scm site of `{}` {scm_state} to the internet while its main site {main_state}",
        site.name
    );
    let mut unknown: Vec<&str> = Vec::new();
    for value in main
        .depends_on_unknown
        .iter()
        .chain(&scm.depends_on_unknown)
    {
        if !unknown.contains(&value.as_str()) {
            unknown.push(value);
        }
    }
    if !unknown.is_empty() {
        message.push_str(&format!(
            ", depending on values known only at deployment time: {}",
            unknown.join("; ")
        ));
    }
    message
}

/// Words SL013 for the `kind` list of `site`, or returns `None` when the list sets a default
/// action (known or not) or has no rules. A list known only at deployment time counts as
/// having rules only if it turns out to have some, so its placeholder is not counted.
fn implicit_deny_message(site: &Site, kind: SiteKind) -> Option<String> {
    let list = site.access.list(kind);
    if list.default_action.is_some() || site.unknown_default_action(kind).is_some() {
        return None;
    }
    if site.unknown_list(kind).is_some() {
        return Some(format!(
            "the {kind} rule list of `{}` is known only at deployment time, and the {kind} site has no default action: if the list has rules, every request no rule matches is denied (implicit deny all)",
            site.name
        ));
    }
    if list.rules.is_empty() {
        return None;
    }
    Some(format!(
        "the {kind} site of `{}` has {} rule(s) and no default action: every request no rule matches is denied (implicit deny all)",
        site.name,
        list.rules.len()
    ))
}

/// Allow rules whose source admits every address and whose only gate is a header filter:
/// headers are set by the client, so anyone can send them. A header filter is meaningful only
/// behind a source condition that guarantees a trusted proxy set the header, such as
/// `AzureFrontDoor.Backend` with `X-Azure-FDID`
/// (<https://learn.microsoft.com/azure/app-service/overview-access-restrictions>).
fn spoofable_rules(site: &Site) -> Vec<Finding> {
    let mut findings = Vec::new();
    let lists = [
        (SiteKind::Main, &site.access.main),
        (SiteKind::Scm, &site.access.scm),
    ];
    for (kind, list) in lists {
        for rule in &list.rules {
            let open_source = match &rule.source {
                SourceCondition::Any => true,
                SourceCondition::Ranges(ranges) => ranges.iter().any(|range| range.prefix == 0),
                _ => false,
            };
            if rule.action != Action::Allow || !open_source || rule.headers.is_empty() {
                continue;
            }
            findings.push(
                Finding::new(
                    FindingCode::SL018,
                    Severity::Warning,
                    format!(
                        "{kind} rule {} of `{}` allows every address and is gated only by header filters, which any client can send",
                        rule.index, site.name
                    ),
                )
                .help("combine the header filter with a source that only a trusted proxy has, for example service tag `AzureFrontDoor.Backend` with `x-azure-fdid`")
                .at(&site.id, site.declared_at.clone()),
            );
        }
    }
    findings
}

/// Describes the reading of an ambiguous Azure behaviour that a decision depends on.
pub fn describe_ambiguity(ambiguity: &Ambiguity) -> String {
    match ambiguity {
        Ambiguity::ServiceEndpointWithPublicAccessDisabled => {
            "service-endpoint traffic is treated as blocked when public network access is disabled"
                .to_owned()
        }
        Ambiguity::XffProxyUndocumented => {
            "rules tagged `XffProxy` have undocumented semantics".to_owned()
        }
        Ambiguity::HeaderValueCase => "header filter values are compared ignoring case".to_owned(),
        Ambiguity::MissingHeader => {
            "a request without a filtered header does not match the rule".to_owned()
        }
        Ambiguity::SubnetRuleWithPrivateEndpoint => {
            "subnet rules are treated as never matching on a site with a private endpoint"
                .to_owned()
        }
        Ambiguity::ServiceTagUnresolved { tag } => {
            format!("service tag `{tag}` has no prefix table; pass --service-tags to resolve it")
        }
        Ambiguity::RuleDefaults => {
            "a rule without `action` reads as Allow and one without `priority` as 0".to_owned()
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::net::IpAddr;

    use super::sample_address;

    fn sample(range: &str, taken: &[&str]) -> String {
        let (network, prefix) = range.split_once('/').expect("range");
        let taken: BTreeSet<IpAddr> = taken.iter().map(|a| a.parse().expect("ip")).collect();
        sample_address(
            network.parse().expect("network"),
            prefix.parse().expect("prefix"),
            &taken,
        )
        .to_string()
    }

    #[test]
    fn sample_address_prefers_documentation_ranges() {
        assert_eq!(sample("0.0.0.0/0", &[]), "198.51.100.1");
        assert_eq!(sample("0.0.0.0/0", &["198.51.100.1"]), "192.0.2.1");
        assert_eq!(sample("::/0", &[]), "2001:db8::1");
        assert_eq!(sample("::/0", &["2001:db8::1"]), "3fff::1");
        assert_eq!(sample("10.0.0.0/8", &[]), "10.0.0.1");
        // No documentation address inside, and the first host is in 0.0.0.0/8.
        assert_eq!(sample("0.0.0.0/1", &[]), "1.0.0.1");
        assert_eq!(sample("0.0.0.0/8", &[]), "0.0.0.1");
        assert_eq!(sample("203.0.113.7/32", &[]), "203.0.113.7");
    }
}
