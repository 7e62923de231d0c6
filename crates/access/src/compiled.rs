//! The compiled engine: rule lists turned into indexes so that a decision costs about the same
//! with one rule or 512.
//!
//! Each list is sorted once (priority, then array order) and every rule gets its position in
//! that order. The source of a request then selects candidate positions from a few indexes.
//! IP ranges and resolved service-tag prefixes go into an interval partition per address
//! family. Subnet rules go into a map from subnet to positions, and tags without prefixes into
//! a map from tag name to positions. `AnyVnets` and `Any` rules form two plain lists. The
//! smallest candidate whose header filters pass decides, which is the first match of the
//! sorted list. The headers that the list filters on are read from the request in one pass,
//! the first time a candidate has header filters.
//!
//! [`crate::decide_reference`] states the same semantics as a plain scan; tests compare the
//! two on random lists.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use crate::headers::{
    forwarded_chain_matches, FilteredHeader, HeaderMatcher, HeaderSet, Presence, RequestHeaders,
};
use crate::interval::{Interval, IntervalIndex};
use crate::net::{canonical, v4_mask, v6_mask};
use crate::reference::{
    public_access_denial, public_access_disabled, select_list, sort_ambiguities, unmatched,
};
use crate::{
    Action, Ambiguity, Decision, EngineOptions, Entry, IpNet, Reason, Request, Rule, RuleList,
    SiteAccess, SiteKind, SourceCondition, SubnetId,
};

/// A site's access restrictions compiled for fast decisions. Cloning is cheap.
#[derive(Clone, Debug)]
pub struct CompiledSiteAccess {
    inner: Arc<CompiledSite>,
}

impl CompiledSiteAccess {
    /// Sorts and indexes both rule lists of `site`.
    ///
    /// Service tags resolve against `options.service_tags` now; a later change to the table
    /// needs a new compile.
    pub fn compile(site: &SiteAccess, options: &EngineOptions) -> CompiledSiteAccess {
        let (_, main) = select_list(site, SiteKind::Main);
        let (scm_kind, scm) = select_list(site, SiteKind::Scm);

        let main = CompiledList::compile(SiteKind::Main, main, options);
        let scm =
            (scm_kind == SiteKind::Scm).then(|| CompiledList::compile(SiteKind::Scm, scm, options));

        CompiledSiteAccess {
            inner: Arc::new(CompiledSite {
                main,
                scm,
                public_access_disabled: public_access_disabled(site),
                has_private_endpoint: site.has_private_endpoint,
                xff_proxy_matches_forwarded_for: options.xff_proxy_matches_forwarded_for,
            }),
        }
    }

    /// Decides one request, returning the same decision as [`crate::decide_reference`].
    ///
    /// Allocates only for ambiguities and for a Unicode `X-Forwarded-Host` value compared
    /// against a host filter, besides what `request.headers` allocates itself.
    pub fn decide(&self, request: &Request<'_>) -> Decision {
        let site = &self.inner;
        let source = request.source;

        if source.entry == Entry::PrivateEndpoint {
            return Decision {
                verdict: Action::Allow,
                reason: Reason::PrivateEndpoint,
                ambiguities: Vec::new(),
            };
        }

        if let Some(explicit) = site.public_access_disabled {
            return public_access_denial(explicit, source);
        }

        let list = match (request.site, &site.scm) {
            (SiteKind::Scm, Some(scm)) => scm,
            _ => &site.main,
        };
        list.decide(site, request)
    }
}

#[derive(Debug)]
struct CompiledSite {
    main: CompiledList,
    /// `None` when the scm site uses the main list.
    scm: Option<CompiledList>,
    public_access_disabled: Option<bool>,
    has_private_endpoint: bool,
    xff_proxy_matches_forwarded_for: bool,
}

/// One rule list, sorted and indexed.
#[derive(Debug)]
struct CompiledList {
    kind: SiteKind,
    default_action: Option<Action>,
    /// Rules in evaluation order; a rule's position is its index here.
    rules: Vec<CompiledRule>,
    v4: IntervalIndex<u32>,
    v6: IntervalIndex<u128>,
    any: Vec<u32>,
    any_vnets: Vec<u32>,
    subnets: HashMap<SubnetId, Vec<u32>>,
    /// Service tags without prefixes, keyed by [`caseless_hash`] of the name.
    tag_names: HashMap<u64, Vec<(String, Vec<u32>)>>,
    /// Rules with at least one tag without prefixes, for reporting them.
    unresolved: Vec<UnresolvedRule>,
    xff_proxy: Vec<u32>,
    /// The headers that any rule of the list reads, collected once per decision.
    filtered: HeaderSet,
}

#[derive(Debug)]
struct CompiledRule {
    action: Action,
    index: usize,
    name: Option<std::sync::Arc<str>>,
    priority: i64,
    headers: HeaderMatcher,
    /// The `XffProxy` ranges, empty for other kinds.
    xff_proxy_nets: Vec<IpNet>,
}

#[derive(Debug)]
struct UnresolvedRule {
    position: u32,
    /// Tags as written that have no prefixes.
    tags: Vec<String>,
    /// Prefixes of the rule's other tags.
    resolved: Vec<IpNet>,
}

/// Ambiguities seen while walking candidates, with the position of the rule they came from.
/// Stays unallocated unless an ambiguity occurs.
type Noted = Vec<(u32, Ambiguity)>;

impl CompiledList {
    fn compile(kind: SiteKind, list: &RuleList, options: &EngineOptions) -> CompiledList {
        let mut ordered: Vec<&Rule> = list.rules.iter().collect();
        ordered.sort_by_key(|rule| (rule.priority, rule.index));

        let rules: Vec<CompiledRule> = ordered
            .iter()
            .map(|rule| CompiledRule {
                action: rule.action,
                index: rule.index,
                name: rule.name.as_deref().map(std::sync::Arc::from),
                priority: rule.priority,
                headers: HeaderMatcher::new(&rule.headers),
                xff_proxy_nets: match &rule.source {
                    SourceCondition::XffProxy(nets) => nets.clone(),
                    _ => Vec::new(),
                },
            })
            .collect();
        let always_applies = |position: u32| {
            rules
                .get(position as usize)
                .is_some_and(|rule| rule.headers.is_empty())
        };

        let mut v4_intervals = Vec::new();
        let mut v6_intervals = Vec::new();
        let mut any = Vec::new();
        let mut any_vnets = Vec::new();
        let mut subnets: HashMap<SubnetId, Vec<u32>> = HashMap::new();
        let mut tag_names: HashMap<u64, Vec<(String, Vec<u32>)>> = HashMap::new();
        let mut unresolved = Vec::new();
        let mut xff_proxy = Vec::new();

        for (position, rule) in (0u32..).zip(&ordered) {
            match &rule.source {
                SourceCondition::Any => any.push(position),
                SourceCondition::AnyVnets => any_vnets.push(position),
                SourceCondition::Subnet(subnet) => {
                    subnets.entry(subnet.clone()).or_default().push(position)
                }
                SourceCondition::XffProxy(_) => xff_proxy.push(position),
                SourceCondition::Ranges(nets) => {
                    add_intervals(nets, position, &mut v4_intervals, &mut v6_intervals);
                }
                SourceCondition::ServiceTags(tags) => {
                    let mut missing = Vec::new();
                    let mut resolved = Vec::new();
                    for tag in tags {
                        match options
                            .service_tags
                            .as_ref()
                            .and_then(|table| table.prefixes(tag))
                        {
                            Some(prefixes) => {
                                add_intervals(
                                    prefixes,
                                    position,
                                    &mut v4_intervals,
                                    &mut v6_intervals,
                                );
                                resolved.extend_from_slice(prefixes);
                            }
                            None => {
                                add_tag_name(&mut tag_names, tag, position);
                                missing.push(tag.clone());
                            }
                        }
                    }
                    if !missing.is_empty() {
                        unresolved.push(UnresolvedRule {
                            position,
                            tags: missing,
                            resolved,
                        });
                    }
                }
            }
        }

        truncate_after_headerless(&mut any, &always_applies);
        truncate_after_headerless(&mut any_vnets, &always_applies);
        for positions in subnets.values_mut() {
            truncate_after_headerless(positions, &always_applies);
        }
        for entries in tag_names.values_mut() {
            for (_, positions) in entries.iter_mut() {
                truncate_after_headerless(positions, &always_applies);
            }
        }

        let mut filtered = rules.iter().fold(HeaderSet::default(), |set, rule| {
            set.union(rule.headers.filtered())
        });
        if !xff_proxy.is_empty() {
            filtered.insert(FilteredHeader::ForwardedFor);
        }

        CompiledList {
            kind,
            default_action: list.default_action,
            v4: IntervalIndex::build(&v4_intervals, always_applies),
            v6: IntervalIndex::build(&v6_intervals, always_applies),
            rules,
            any,
            any_vnets,
            subnets,
            tag_names,
            unresolved,
            xff_proxy,
            filtered,
        }
    }

    fn decide(&self, site: &CompiledSite, request: &Request<'_>) -> Decision {
        let source = request.source;
        let address = canonical(source.address);
        let mut walk = Walk {
            rules: &self.rules,
            headers: RequestHeaders::new(request.headers, self.filtered),
            best: u32::MAX,
            noted: Vec::new(),
        };

        match &source.service_endpoint {
            None => match address {
                IpAddr::V4(v4) => walk.candidates(self.v4.lookup(u32::from(v4))),
                IpAddr::V6(v6) => walk.candidates(self.v6.lookup(u128::from(v6))),
            },
            Some(subnet) => {
                walk.candidates(&self.any_vnets);
                if !site.has_private_endpoint {
                    if let Some(positions) = self.subnets.get(subnet) {
                        walk.candidates(positions);
                    }
                }
            }
        }

        walk.candidates(&self.any);

        for tag in &source.service_tags {
            if let Some(entries) = self.tag_names.get(&caseless_hash(tag)) {
                for (name, positions) in entries {
                    if name.eq_ignore_ascii_case(tag) {
                        walk.candidates(positions);
                    }
                }
            }
        }

        if site.xff_proxy_matches_forwarded_for {
            walk.xff_proxy_candidates(&self.xff_proxy);
        }

        let decided = walk.best;
        let nothing_to_report = walk.noted.is_empty()
            && self.xff_proxy.is_empty()
            && self.unresolved.is_empty()
            && !site.has_private_endpoint;
        // The common case builds the decision in place with an empty list. Building it on the
        // stack and copying it out made the benchmark slower, because the copy reads as one
        // unit words that were just stored one by one, which store-to-load forwarding cannot
        // serve.
        if nothing_to_report {
            return self.decision(decided, Vec::new());
        }

        let mut ambiguities = self.ambiguities(site, request, address, decided, walk.noted);
        sort_ambiguities(&mut ambiguities);
        self.decision(decided, ambiguities)
    }

    /// Builds the decision of the rule at position `decided`, or the list's default decision
    /// when no rule decided.
    fn decision(&self, decided: u32, ambiguities: Vec<Ambiguity>) -> Decision {
        match self.rules.get(decided as usize) {
            Some(rule) => Decision {
                verdict: rule.action,
                reason: Reason::Rule {
                    list: self.kind,
                    index: rule.index,
                    name: rule.name.clone(),
                    priority: rule.priority,
                    action: rule.action,
                },
                ambiguities,
            },
            None => unmatched(
                self.kind,
                self.default_action,
                self.rules.is_empty(),
                ambiguities,
            ),
        }
    }

    /// Ambiguities of the rules evaluated up to and including position `decided`, the same
    /// set the reference scan collects.
    fn ambiguities(
        &self,
        site: &CompiledSite,
        request: &Request<'_>,
        address: IpAddr,
        decided: u32,
        noted: Noted,
    ) -> Vec<Ambiguity> {
        let source = request.source;
        let mut ambiguities: Vec<Ambiguity> = noted
            .into_iter()
            .filter(|(position, _)| *position <= decided)
            .map(|(_, ambiguity)| ambiguity)
            .collect();

        if self
            .xff_proxy
            .first()
            .is_some_and(|&position| position <= decided)
        {
            ambiguities.push(Ambiguity::XffProxyUndocumented);
        }

        if site.has_private_endpoint {
            let first_subnet_rule = source
                .service_endpoint
                .as_ref()
                .and_then(|subnet| self.subnets.get(subnet))
                .and_then(|positions| positions.first());
            if first_subnet_rule.is_some_and(|&position| position < decided) {
                ambiguities.push(Ambiguity::SubnetRuleWithPrivateEndpoint);
            }
        }

        for rule in self
            .unresolved
            .iter()
            .take_while(|rule| rule.position < decided)
        {
            let by_prefix = source.service_endpoint.is_none()
                && rule.resolved.iter().any(|net| net.contains(address));
            let by_name = rule.tags.iter().any(|tag| {
                source
                    .service_tags
                    .iter()
                    .any(|known| known.eq_ignore_ascii_case(tag))
            });
            if !by_prefix && !by_name {
                ambiguities.extend(
                    rule.tags
                        .iter()
                        .map(|tag| Ambiguity::ServiceTagUnresolved { tag: tag.clone() }),
                );
            }
        }

        ambiguities
    }
}

/// The search for the smallest candidate position whose header filters pass.
struct Walk<'r, 'q> {
    rules: &'r [CompiledRule],
    headers: RequestHeaders<'q>,
    /// Smallest passing position so far, `u32::MAX` for none.
    best: u32,
    noted: Noted,
}

impl Walk<'_, '_> {
    /// Walks one ascending candidate list up to the current best.
    fn candidates(&mut self, positions: &[u32]) {
        for &position in positions {
            if position >= self.best {
                return;
            }
            if self.headers_pass(position) {
                self.best = position;
                return;
            }
        }
    }

    /// Walks the `XffProxy` rules, whose source condition depends on `X-Forwarded-For`.
    fn xff_proxy_candidates(&mut self, positions: &[u32]) {
        for &position in positions {
            if position >= self.best {
                return;
            }
            let Some(rule) = self.rules.get(position as usize) else {
                return;
            };
            self.headers.collect();
            let source_matches = forwarded_chain_matches(&self.headers, &rule.xff_proxy_nets)
                == Presence::Present(true);
            if source_matches && self.headers_pass(position) {
                self.best = position;
                return;
            }
        }
    }

    fn headers_pass(&mut self, position: u32) -> bool {
        let Some(rule) = self.rules.get(position as usize) else {
            return false;
        };
        if rule.headers.is_empty() {
            return true;
        }

        self.headers.collect();
        let check = rule.headers.check(&self.headers);
        if check.missing_header {
            self.noted.push((position, Ambiguity::MissingHeader));
        }
        if check.matched && check.value_case {
            self.noted.push((position, Ambiguity::HeaderValueCase));
        }
        check.matched
    }
}

/// Keeps positions up to and including the first rule without header filters; later ones can
/// never decide.
fn truncate_after_headerless(positions: &mut Vec<u32>, always_applies: &impl Fn(u32) -> bool) {
    if let Some(at) = positions
        .iter()
        .position(|&position| always_applies(position))
    {
        positions.truncate(at + 1);
    }
}

fn add_intervals(
    nets: &[IpNet],
    position: u32,
    v4: &mut Vec<Interval<u32>>,
    v6: &mut Vec<Interval<u128>>,
) {
    for net in nets {
        match net.network {
            IpAddr::V4(network) => {
                let mask = v4_mask(net.prefix);
                let first = u32::from(network) & mask;
                v4.push(Interval {
                    first,
                    last: first | !mask,
                    position,
                });
            }
            IpAddr::V6(network) => {
                let mask = v6_mask(net.prefix);
                let first = u128::from(network) & mask;
                v6.push(Interval {
                    first,
                    last: first | !mask,
                    position,
                });
            }
        }
    }
}

fn add_tag_name(tag_names: &mut HashMap<u64, Vec<(String, Vec<u32>)>>, tag: &str, position: u32) {
    let entries = tag_names.entry(caseless_hash(tag)).or_default();
    match entries
        .iter_mut()
        .find(|(name, _)| name.eq_ignore_ascii_case(tag))
    {
        Some((_, positions)) => {
            if positions.last() != Some(&position) {
                positions.push(position);
            }
        }
        None => entries.push((tag.to_owned(), vec![position])),
    }
}

/// FNV-1a over the ASCII-lower-cased bytes, so a tag can be looked up ignoring case without
/// allocating a lower-case copy.
fn caseless_hash(text: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.bytes() {
        hash ^= u64::from(byte.to_ascii_lowercase());
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compiled_is_send_sync_clone() {
        fn assert_traits<T: Send + Sync + Clone + 'static>() {}
        assert_traits::<CompiledSiteAccess>();
    }

    #[test]
    fn caseless_hash_ignores_case() {
        assert_eq!(
            caseless_hash("AzureFrontDoor.Backend"),
            caseless_hash("azurefrontdoor.BACKEND")
        );
        assert_ne!(
            caseless_hash("AzureCloud"),
            caseless_hash("AzureCloud.WestEurope")
        );
    }

    #[test]
    fn truncate_keeps_first_headerless() {
        let mut positions = vec![1, 4, 6, 9];
        truncate_after_headerless(&mut positions, &|position| position == 4);
        assert_eq!(positions, vec![1, 4]);
    }
}
