//! The plain first-match scan: the engine's specification in code.
//!
//! [`decide_reference`] sorts the rules on every call and walks them one by one. It is slow
//! on purpose and serves as the oracle that [`crate::CompiledSiteAccess`] is tested and
//! benchmarked against.

use std::net::IpAddr;

use crate::headers::{forwarded_chain_matches, HeaderMatcher, Presence};
use crate::net::canonical;
use crate::{
    Action, Ambiguity, Decision, EngineOptions, Entry, PublicNetworkAccess, Reason, Request, Rule,
    RuleList, SiteAccess, SiteKind, Source, SourceCondition,
};

/// Plain, obviously-correct first-match scan used as the oracle in tests and benchmarks.
///
/// The steps follow "How it works" in
/// <https://learn.microsoft.com/azure/app-service/overview-access-restrictions>:
///
/// 1. Traffic through a private endpoint skips access restrictions.
/// 2. App access: `publicNetworkAccess: Disabled`, or unset on a site with a private
///    endpoint, denies everything else.
/// 3. The scm site uses its own list unless `scmIpSecurityRestrictionsUseMain` is set.
/// 4. Rules sort by priority, lowest first, keeping array order among equal priorities.
/// 5. The first rule whose source condition and header filters all match decides.
/// 6. Otherwise the default action applies, and without one the implicit rule: allow when
///    the list is empty, deny when it has rules.
///
/// Ambiguities come from every rule evaluated up to and including the deciding one, without
/// duplicates, in a fixed order.
pub fn decide_reference(
    site: &SiteAccess,
    options: &EngineOptions,
    request: &Request<'_>,
) -> Decision {
    let source = request.source;

    if source.entry == Entry::PrivateEndpoint {
        return Decision {
            verdict: Action::Allow,
            reason: Reason::PrivateEndpoint,
            ambiguities: Vec::new(),
        };
    }

    if let Some(explicit) = public_access_disabled(site) {
        return public_access_denial(explicit, source);
    }

    let (list_kind, list) = select_list(site, request.site);

    let mut ordered: Vec<&Rule> = list.rules.iter().collect();
    ordered.sort_by_key(|rule| (rule.priority, rule.index));

    let address = canonical(source.address);
    let mut ambiguities = Vec::new();

    for rule in ordered {
        let source_match = source_matches(
            rule,
            source,
            address,
            site.has_private_endpoint,
            options,
            request,
        );
        ambiguities.extend(source_match.ambiguities);
        if !source_match.matched {
            continue;
        }

        let check = HeaderMatcher::new(&rule.headers).check(request.headers);
        if check.missing_header {
            ambiguities.push(Ambiguity::MissingHeader);
        }
        if !check.matched {
            continue;
        }
        if check.value_case {
            ambiguities.push(Ambiguity::HeaderValueCase);
        }

        sort_ambiguities(&mut ambiguities);
        return Decision {
            verdict: rule.action,
            reason: Reason::Rule {
                list: list_kind,
                index: rule.index,
                name: rule.name.as_deref().map(std::sync::Arc::from),
                priority: rule.priority,
                action: rule.action,
            },
            ambiguities,
        };
    }

    sort_ambiguities(&mut ambiguities);
    unmatched(
        list_kind,
        list.default_action,
        list.rules.is_empty(),
        ambiguities,
    )
}

/// `Some(explicit)` when app access is off: `Disabled` (explicit), or unset on a site with a
/// private endpoint.
pub(crate) fn public_access_disabled(site: &SiteAccess) -> Option<bool> {
    match site.public_network_access {
        PublicNetworkAccess::Disabled => Some(true),
        PublicNetworkAccess::Unset if site.has_private_endpoint => Some(false),
        PublicNetworkAccess::Unset | PublicNetworkAccess::Enabled => None,
    }
}

/// The denial for app access off.
///
/// Microsoft's model treats service-endpoint traffic as public traffic, so it is denied too,
/// but a user reported it still reaching an app with public access disabled
/// (<https://github.com/MicrosoftDocs/azure-docs/issues/112891>), so the decision carries an
/// ambiguity.
pub(crate) fn public_access_denial(explicit: bool, source: &Source) -> Decision {
    let mut ambiguities = Vec::new();
    if source.service_endpoint.is_some() {
        ambiguities.push(Ambiguity::ServiceEndpointWithPublicAccessDisabled);
    }
    Decision {
        verdict: Action::Deny,
        reason: Reason::PublicNetworkAccessDisabled { explicit },
        ambiguities,
    }
}

/// The rule list that applies to `site`, and whose list it is.
pub(crate) fn select_list(site: &SiteAccess, kind: SiteKind) -> (SiteKind, &RuleList) {
    match kind {
        SiteKind::Scm if !site.scm_uses_main => (SiteKind::Scm, &site.scm),
        SiteKind::Scm | SiteKind::Main => (SiteKind::Main, &site.main),
    }
}

/// The decision when no rule matched.
pub(crate) fn unmatched(
    list: SiteKind,
    default_action: Option<Action>,
    no_rules: bool,
    ambiguities: Vec<Ambiguity>,
) -> Decision {
    let (verdict, reason) = match default_action {
        Some(action) => (action, Reason::DefaultAction { list, action }),
        None if no_rules => (Action::Allow, Reason::ImplicitAllowNoRules { list }),
        None => (Action::Deny, Reason::ImplicitDeny { list }),
    };
    Decision {
        verdict,
        reason,
        ambiguities,
    }
}

/// Sorts ambiguities into a fixed order and drops repeats, so that decisions compare equal
/// whatever order the rules were evaluated in.
pub(crate) fn sort_ambiguities(ambiguities: &mut Vec<Ambiguity>) {
    if ambiguities.len() < 2 {
        return;
    }
    ambiguities.sort_by(|a, b| ambiguity_key(a).cmp(&ambiguity_key(b)));
    ambiguities.dedup();
}

fn ambiguity_key(ambiguity: &Ambiguity) -> (u8, &str) {
    match ambiguity {
        Ambiguity::ServiceEndpointWithPublicAccessDisabled => (0, ""),
        Ambiguity::SubnetRuleWithPrivateEndpoint => (1, ""),
        Ambiguity::ServiceTagUnresolved { tag } => (2, tag.as_str()),
        Ambiguity::XffProxyUndocumented => (3, ""),
        Ambiguity::MissingHeader => (4, ""),
        Ambiguity::HeaderValueCase => (5, ""),
        Ambiguity::RuleDefaults => (6, ""),
    }
}

struct SourceMatch {
    matched: bool,
    ambiguities: Vec<Ambiguity>,
}

impl SourceMatch {
    fn plain(matched: bool) -> SourceMatch {
        SourceMatch {
            matched,
            ambiguities: Vec::new(),
        }
    }
}

/// Whether the rule's source condition matches the request.
fn source_matches(
    rule: &Rule,
    source: &Source,
    address: IpAddr,
    has_private_endpoint: bool,
    options: &EngineOptions,
    request: &Request<'_>,
) -> SourceMatch {
    let via_service_endpoint = source.service_endpoint.is_some();

    match &rule.source {
        SourceCondition::Any => SourceMatch::plain(true),

        // In the multitenant service IP rules do not see VNet addresses, so service-endpoint
        // traffic never matches them.
        SourceCondition::Ranges(nets) => SourceMatch::plain(
            !via_service_endpoint && nets.iter().any(|net| net.contains(address)),
        ),

        SourceCondition::AnyVnets => SourceMatch::plain(via_service_endpoint),

        SourceCondition::Subnet(subnet) => {
            let same_subnet = source.service_endpoint.as_ref() == Some(subnet);
            if same_subnet && has_private_endpoint {
                SourceMatch {
                    matched: false,
                    ambiguities: vec![Ambiguity::SubnetRuleWithPrivateEndpoint],
                }
            } else {
                SourceMatch::plain(same_subnet)
            }
        }

        SourceCondition::ServiceTags(tags) => {
            let mut unresolved = Vec::new();
            for tag in tags {
                let prefixes = options
                    .service_tags
                    .as_ref()
                    .and_then(|table| table.prefixes(tag));
                let matched = match prefixes {
                    Some(prefixes) => {
                        !via_service_endpoint && prefixes.iter().any(|net| net.contains(address))
                    }
                    None => {
                        unresolved.push(tag.clone());
                        source
                            .service_tags
                            .iter()
                            .any(|known| known.eq_ignore_ascii_case(tag))
                    }
                };
                if matched {
                    return SourceMatch::plain(true);
                }
            }
            SourceMatch {
                matched: false,
                ambiguities: unresolved
                    .into_iter()
                    .map(|tag| Ambiguity::ServiceTagUnresolved { tag })
                    .collect(),
            }
        }

        SourceCondition::XffProxy(nets) => {
            let matched = options.xff_proxy_matches_forwarded_for
                && forwarded_chain_matches(request.headers, nets) == Presence::Present(true);
            SourceMatch {
                matched,
                ambiguities: vec![Ambiguity::XffProxyUndocumented],
            }
        }
    }
}
