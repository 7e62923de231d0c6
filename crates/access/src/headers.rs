//! Matching a request's headers against one rule's header filters.
//!
//! The front end evaluates the header filters after the rule's source condition, and both
//! must match for the rule to apply. Every filtered header must match, and within one header
//! any one value suffices
//! (<https://learn.microsoft.com/azure/app-service/overview-access-restrictions>). The
//! per-header comparisons follow the `IpSecurityRestriction.headers` description in the
//! REST specification (<https://learn.microsoft.com/azure/templates/microsoft.web/sites/config-web>):
//!
//! - `X-Forwarded-For`: any address of the comma-separated chain (port stripped) inside any
//!   filter range.
//! - `X-Forwarded-Host`: ordinal ignore-case, port excluded, `*.` matches exactly one label,
//!   Unicode host names compared as Punycode.
//! - `X-Azure-FDID`, `X-FD-HealthProbe`: the specification requires an exact match, while
//!   the feature's author states that header values are case-insensitive
//!   (<https://github.com/madsd/articles/wiki/Access-restriction-HttpHeaders>). The engine
//!   compares ignoring case and reports when only that reading matched.
//!
//! A request that lacks a filtered header fails that filter. Microsoft documents only the
//! opposite case (an unset filter allows any value or none), so the engine reports it.

use std::net::IpAddr;

use crate::ascii::{eq_ignore_case, eq_lower_case, has_non_ascii_or_any};
use crate::net::parse_forwarded_address;
use crate::parse::normalize_host_filter;
use crate::{HeaderFilters, HeaderLookup, IpNet};

/// The headers that rules can filter on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FilteredHeader {
    ForwardedFor,
    ForwardedHost,
    AzureFdid,
    HealthProbe,
}

const FORWARDED_FOR: &str = "x-forwarded-for";
const FORWARDED_HOST: &str = "x-forwarded-host";
const AZURE_FDID: &str = "x-azure-fdid";
const HEALTH_PROBE: &str = "x-fd-healthprobe";

impl FilteredHeader {
    const ALL: [FilteredHeader; 4] = [
        FilteredHeader::ForwardedFor,
        FilteredHeader::ForwardedHost,
        FilteredHeader::AzureFdid,
        FilteredHeader::HealthProbe,
    ];

    /// Returns the lower-case name, as [`HeaderLookup`] expects it.
    fn name(self) -> &'static str {
        match self {
            FilteredHeader::ForwardedFor => FORWARDED_FOR,
            FilteredHeader::ForwardedHost => FORWARDED_HOST,
            FilteredHeader::AzureFdid => AZURE_FDID,
            FilteredHeader::HealthProbe => HEALTH_PROBE,
        }
    }

    /// Returns the only filtered header that `name` can be, judged by its length and, for the
    /// two names of 16 bytes, by its fourth byte, or `None` when it can be none of them.
    fn candidate(name: &str) -> Option<FilteredHeader> {
        match (name.len(), name.as_bytes().get(3)) {
            (12, _) => Some(FilteredHeader::AzureFdid),
            (15, _) => Some(FilteredHeader::ForwardedFor),
            (16, Some(b'o' | b'O')) => Some(FilteredHeader::ForwardedHost),
            (16, _) => Some(FilteredHeader::HealthProbe),
            _ => None,
        }
    }

    /// Checks whether `name` is this header's name in any case.
    fn is_named(self, name: &str) -> bool {
        // One literal per arm, so that the compiler folds the name into the comparison.
        match self {
            FilteredHeader::ForwardedFor => eq_lower_case(name, FORWARDED_FOR),
            FilteredHeader::ForwardedHost => eq_lower_case(name, FORWARDED_HOST),
            FilteredHeader::AzureFdid => eq_lower_case(name, AZURE_FDID),
            FilteredHeader::HealthProbe => eq_lower_case(name, HEALTH_PROBE),
        }
    }

    fn bit(self) -> u8 {
        match self {
            FilteredHeader::ForwardedFor => 1,
            FilteredHeader::ForwardedHost => 2,
            FilteredHeader::AzureFdid => 4,
            FilteredHeader::HealthProbe => 8,
        }
    }
}

/// A set of filtered headers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct HeaderSet(u8);

impl HeaderSet {
    pub fn insert(&mut self, header: FilteredHeader) {
        self.0 |= header.bit();
    }

    pub fn union(self, other: HeaderSet) -> HeaderSet {
        HeaderSet(self.0 | other.0)
    }

    pub fn contains(self, header: FilteredHeader) -> bool {
        self.0 & header.bit() != 0
    }
}

/// Read access to the values of the filtered headers of one request.
pub(crate) trait HeaderValues {
    /// Calls `visit` with each value of `header`, in order, until it returns `true`.
    /// Returns whether the request has the header at all.
    fn visit(&self, header: FilteredHeader, visit: impl FnMut(&str) -> bool) -> bool;
}

/// Asks the lookup once per call, as the reference scan does.
impl<T: HeaderLookup + ?Sized> HeaderValues for T {
    fn visit(&self, header: FilteredHeader, mut visit: impl FnMut(&str) -> bool) -> bool {
        self.visit_values(header.name(), &mut visit)
    }
}

/// One request's headers as the compiled engine reads them.
///
/// [`RequestHeaders::collect`] reads the headers in `filtered` in one pass over the request,
/// and every later filter reads them from there instead of searching the request again.
pub(crate) struct RequestHeaders<'r> {
    lookup: &'r dyn HeaderLookup,
    /// The headers that the rules filter on.
    filtered: HeaderSet,
    /// Whether the pass over the request has happened.
    read: bool,
    collected: Collected<'r>,
}

/// The result of the pass over the request for each filtered header.
#[derive(Clone, Copy, Debug)]
struct Collected<'r> {
    forwarded_for: Found<'r>,
    forwarded_host: Found<'r>,
    azure_fdid: Found<'r>,
    health_probe: Found<'r>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Found<'r> {
    Absent,
    One(&'r str),
    /// Several values, a header outside the filtered set, a lookup that cannot list its
    /// headers, or no pass yet. The values are then read with [`HeaderLookup::visit_values`], which
    /// is rare enough not to need storage of its own.
    AskLookup,
}

impl<'r> Collected<'r> {
    fn all(found: Found<'r>) -> Collected<'r> {
        Collected {
            forwarded_for: found,
            forwarded_host: found,
            azure_fdid: found,
            health_probe: found,
        }
    }

    fn get(&self, header: FilteredHeader) -> Found<'r> {
        match header {
            FilteredHeader::ForwardedFor => self.forwarded_for,
            FilteredHeader::ForwardedHost => self.forwarded_host,
            FilteredHeader::AzureFdid => self.azure_fdid,
            FilteredHeader::HealthProbe => self.health_probe,
        }
    }

    fn get_mut(&mut self, header: FilteredHeader) -> &mut Found<'r> {
        match header {
            FilteredHeader::ForwardedFor => &mut self.forwarded_for,
            FilteredHeader::ForwardedHost => &mut self.forwarded_host,
            FilteredHeader::AzureFdid => &mut self.azure_fdid,
            FilteredHeader::HealthProbe => &mut self.health_probe,
        }
    }
}

impl<'r> RequestHeaders<'r> {
    /// Wraps `lookup` without reading it yet.
    pub fn new(lookup: &'r dyn HeaderLookup, filtered: HeaderSet) -> RequestHeaders<'r> {
        RequestHeaders {
            lookup,
            filtered,
            read: false,
            collected: Collected::all(Found::AskLookup),
        }
    }

    /// Reads the filtered headers in one pass over the request, unless that happened before.
    /// Until then, and for headers outside `filtered`, [`HeaderValues::visit`] reads through
    /// the lookup.
    pub fn collect(&mut self) {
        if self.read {
            return;
        }
        self.read = true;

        // The pass writes into `self.collected` in place. Building the table apart and moving
        // it in made the benchmark slower, because the move reads as one unit words that were
        // just stored one by one, which store-to-load forwarding cannot serve.
        let filtered = self.filtered;
        let collected = &mut self.collected;
        for header in FilteredHeader::ALL {
            if filtered.contains(header) {
                *collected.get_mut(header) = Found::Absent;
            }
        }
        let listed = self.lookup.visit_headers(&mut |name, value| {
            let Some(header) = FilteredHeader::candidate(name) else {
                return;
            };
            let slot = collected.get_mut(header);
            // A header outside the filtered set, or already seen twice, needs no name
            // comparison. Requests often carry one, such as `X-Forwarded-For` when no rule
            // filters on it.
            if *slot == Found::AskLookup || !header.is_named(name) {
                return;
            }
            *slot = match *slot {
                Found::Absent => Found::One(value),
                Found::One(_) | Found::AskLookup => Found::AskLookup,
            };
        });
        if !listed {
            self.collected = Collected::all(Found::AskLookup);
        }
    }
}

impl HeaderValues for RequestHeaders<'_> {
    fn visit(&self, header: FilteredHeader, mut visit: impl FnMut(&str) -> bool) -> bool {
        match self.collected.get(header) {
            Found::Absent => false,
            Found::One(value) => {
                visit(value);
                true
            }
            Found::AskLookup => self.lookup.visit_values(header.name(), &mut visit),
        }
    }
}

/// One rule's header filters, prepared for matching.
#[derive(Clone, Debug, Default)]
pub(crate) struct HeaderMatcher {
    forwarded_for: Vec<IpNet>,
    forwarded_host: Vec<HostPattern>,
    azure_fdid: Vec<String>,
    health_probe: Vec<String>,
}

/// The result of checking one rule's header filters against one request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct HeaderCheck {
    pub matched: bool,
    /// The first failing filter failed because the request lacked its header.
    pub missing_header: bool,
    /// The filters matched, and one of them only when compared ignoring case.
    pub value_case: bool,
}

impl HeaderMatcher {
    pub fn new(filters: &HeaderFilters) -> HeaderMatcher {
        HeaderMatcher {
            forwarded_for: filters.x_forwarded_for.clone(),
            forwarded_host: filters
                .x_forwarded_host
                .iter()
                .map(|value| HostPattern::new(value))
                .collect(),
            azure_fdid: filters
                .x_azure_fdid
                .iter()
                .map(|value| value.trim().to_owned())
                .collect(),
            health_probe: filters
                .x_fd_health_probe
                .iter()
                .map(|value| value.trim().to_owned())
                .collect(),
        }
    }

    /// Returns the headers these filters read.
    pub fn filtered(&self) -> HeaderSet {
        let mut set = HeaderSet::default();
        for (header, empty) in [
            (FilteredHeader::ForwardedFor, self.forwarded_for.is_empty()),
            (
                FilteredHeader::ForwardedHost,
                self.forwarded_host.is_empty(),
            ),
            (FilteredHeader::AzureFdid, self.azure_fdid.is_empty()),
            (FilteredHeader::HealthProbe, self.health_probe.is_empty()),
        ] {
            if !empty {
                set.insert(header);
            }
        }
        set
    }

    pub fn is_empty(&self) -> bool {
        self.forwarded_for.is_empty()
            && self.forwarded_host.is_empty()
            && self.azure_fdid.is_empty()
            && self.health_probe.is_empty()
    }

    /// Checks the filters in a fixed order (`X-Forwarded-For`, `X-Forwarded-Host`,
    /// `X-Azure-FDID`, `X-FD-HealthProbe`) and stops at the first that fails.
    pub fn check<H: HeaderValues + ?Sized>(&self, headers: &H) -> HeaderCheck {
        let fail = |missing_header| HeaderCheck {
            matched: false,
            missing_header,
            value_case: false,
        };

        if !self.forwarded_for.is_empty() {
            match forwarded_chain_matches(headers, &self.forwarded_for) {
                Presence::Missing => return fail(true),
                Presence::Present(false) => return fail(false),
                Presence::Present(true) => {}
            }
        }

        if !self.forwarded_host.is_empty() {
            let mut hit = false;
            // NOTE: a comma-separated `X-Forwarded-Host` is read as a list of hosts, any of
            // which may match. How the front end treats such a value is not documented.
            let present = headers.visit(FilteredHeader::ForwardedHost, |value| {
                hit = forwarded_host_matches(value, &self.forwarded_host);
                hit
            });
            if !present {
                return fail(true);
            }
            if !hit {
                return fail(false);
            }
        }

        let fdid = check_tokens(headers, FilteredHeader::AzureFdid, &self.azure_fdid);
        if !fdid.matched {
            return fdid;
        }
        let probe = check_tokens(headers, FilteredHeader::HealthProbe, &self.health_probe);
        if !probe.matched {
            return probe;
        }

        HeaderCheck {
            matched: true,
            missing_header: false,
            value_case: fdid.value_case || probe.value_case,
        }
    }
}

/// Whether a header was sent, and what checking its values gave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Presence<T> {
    Missing,
    Present(T),
}

/// Checks whether any address of any `X-Forwarded-For` value lies inside any of `nets`.
pub(crate) fn forwarded_chain_matches<H: HeaderValues + ?Sized>(
    headers: &H,
    nets: &[IpNet],
) -> Presence<bool> {
    let mut hit = false;
    let present = headers.visit(FilteredHeader::ForwardedFor, |value| {
        hit = comma_items(value)
            .filter_map(parse_forwarded_address)
            .any(|address: IpAddr| nets.iter().any(|net| net.contains(address)));
        hit
    });
    if present {
        Presence::Present(hit)
    } else {
        Presence::Missing
    }
}

/// An `X-Forwarded-Host` filter value, lower-cased so that matching can use
/// [`eq_lower_case`].
#[derive(Clone, Debug, PartialEq, Eq)]
enum HostPattern {
    Exact(String),
    /// `*.suffix`, storing `suffix`.
    Wildcard(String),
}

impl HostPattern {
    fn new(value: &str) -> HostPattern {
        // Values from `parse_header_filters` are already normalised. A hand-built value that
        // is not a host name is kept lower-cased so that it can still match itself.
        let normalized = normalize_host_filter(value.trim())
            .unwrap_or_else(|_| value.trim().to_ascii_lowercase());
        match normalized.strip_prefix("*.") {
            Some(suffix) => HostPattern::Wildcard(suffix.to_owned()),
            None => HostPattern::Exact(normalized),
        }
    }
}

/// Checks whether any host of one `X-Forwarded-Host` value matches any pattern.
fn forwarded_host_matches(value: &str, patterns: &[HostPattern]) -> bool {
    // Almost every value is one ASCII host name without a port. For such a value the general
    // path below would only trim it and drop a trailing dot, so it can skip the splitting,
    // port stripping and Punycode check.
    if !has_non_ascii_or_any(value, b",:[") {
        let host = value.trim_ascii();
        return matches_any(host.strip_suffix('.').unwrap_or(host), patterns);
    }
    comma_items(value).any(|host| host_matches(host, patterns))
}

/// Checks whether one request host (possibly with a port, possibly Unicode) matches any
/// pattern.
fn host_matches(raw: &str, patterns: &[HostPattern]) -> bool {
    let host = strip_port(raw.trim_ascii());
    let host = host.strip_suffix('.').unwrap_or(host);

    // Unicode hosts compare as Punycode. Only this rare path allocates.
    if host.is_ascii() {
        matches_any(host, patterns)
    } else {
        idna::domain_to_ascii(host).is_ok_and(|ascii| matches_any(&ascii, patterns))
    }
}

/// Checks whether a host without port or trailing dot, in ASCII, matches any pattern.
fn matches_any(host: &str, patterns: &[HostPattern]) -> bool {
    // `*.suffix` matches `label.suffix` for exactly one non-empty label. The label cannot
    // contain a dot, so it ends at the host's first dot and the rest must equal `suffix`.
    let after_label = host
        .bytes()
        .position(|byte| byte == b'.')
        .filter(|&dot| dot > 0)
        .and_then(|dot| host.get(dot + 1..));

    patterns.iter().any(|pattern| match pattern {
        HostPattern::Exact(expected) => eq_lower_case(host, expected),
        HostPattern::Wildcard(suffix) => {
            after_label.is_some_and(|rest| eq_lower_case(rest, suffix))
        }
    })
}

/// Strips the port from `host:port` or `[ipv6]:port`, returning the host part.
fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split_once(']').map_or(host, |(inside, _)| inside);
    }
    // One colon followed by digits is a port; more colons mean a bare IPv6 literal.
    let bytes = host.as_bytes();
    let Some(colon) = bytes.iter().rposition(|&b| b == b':') else {
        return host;
    };
    let (Some(name), Some(port)) = (bytes.get(..colon), bytes.get(colon + 1..)) else {
        return host;
    };
    if name.contains(&b':') || !port.iter().all(u8::is_ascii_digit) {
        return host;
    }
    host.get(..colon).unwrap_or(host)
}

/// Splits a header value at commas. A byte loop, because `str::split` costs more than the
/// matching itself on values this short.
fn comma_items(value: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(value);
    std::iter::from_fn(move || {
        let current = rest?;
        match current.bytes().position(|b| b == b',') {
            Some(at) => {
                rest = current.get(at + 1..);
                current.get(..at)
            }
            None => {
                rest = None;
                Some(current)
            }
        }
    })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TokenMatch {
    None,
    IgnoringCase,
    Exact,
}

/// Checks one `X-Azure-FDID` or `X-FD-HealthProbe` filter; an empty filter matches.
fn check_tokens<H: HeaderValues + ?Sized>(
    headers: &H,
    header: FilteredHeader,
    filter: &[String],
) -> HeaderCheck {
    let (matched, missing_header, value_case) = if filter.is_empty() {
        (true, false, false)
    } else {
        match token_matches(headers, header, filter) {
            Presence::Missing => (false, true, false),
            Presence::Present(TokenMatch::None) => (false, false, false),
            Presence::Present(TokenMatch::IgnoringCase) => (true, false, true),
            Presence::Present(TokenMatch::Exact) => (true, false, false),
        }
    };
    HeaderCheck {
        matched,
        missing_header,
        value_case,
    }
}

/// Compares each value of `header` (trimmed) with each filter value.
fn token_matches<H: HeaderValues + ?Sized>(
    headers: &H,
    header: FilteredHeader,
    filter: &[String],
) -> Presence<TokenMatch> {
    let mut best = TokenMatch::None;
    let present = headers.visit(header, |value| {
        let value = value.trim_ascii();
        for expected in filter {
            if value == expected {
                best = TokenMatch::Exact;
                return true;
            }
            if eq_ignore_case(value, expected) {
                best = TokenMatch::IgnoringCase;
            }
        }
        false
    });
    if present {
        Presence::Present(best)
    } else {
        Presence::Missing
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    fn matcher(filters: HeaderFilters) -> HeaderMatcher {
        HeaderMatcher::new(&filters)
    }

    fn xff(ranges: &[&str]) -> HeaderMatcher {
        matcher(HeaderFilters {
            x_forwarded_for: ranges.iter().map(|r| IpNet::parse(r).unwrap()).collect(),
            ..HeaderFilters::default()
        })
    }

    fn hosts(values: &[&str]) -> HeaderMatcher {
        matcher(HeaderFilters {
            x_forwarded_host: values.iter().map(|v| v.to_string()).collect(),
            ..HeaderFilters::default()
        })
    }

    fn fdid(values: &[&str]) -> HeaderMatcher {
        matcher(HeaderFilters {
            x_azure_fdid: values.iter().map(|v| v.to_string()).collect(),
            ..HeaderFilters::default()
        })
    }

    #[test]
    fn filtered_header_names() {
        for header in FilteredHeader::ALL {
            let upper = header.name().to_ascii_uppercase();
            for name in [header.name(), upper.as_str()] {
                assert_eq!(FilteredHeader::candidate(name), Some(header), "{name}");
                assert!(header.is_named(name), "{name}");
            }
        }
        for other in [
            "host",
            "x-forwarded-proto",
            "x-forwarded-hosts",
            "x-forwarded-fo",
            "x-azure-fdie",
            "x-fd-healthprobf",
            "x-fo-healthprobe",
        ] {
            let named = matches!(FilteredHeader::candidate(other), Some(h) if h.is_named(other));
            assert!(!named, "{other}");
        }
    }

    /// Values and presence of `header` as `headers` reports them.
    fn visited(
        headers: &(impl HeaderValues + ?Sized),
        header: FilteredHeader,
    ) -> (bool, Vec<String>) {
        let mut values = Vec::new();
        let present = headers.visit(header, |value| {
            values.push(value.to_owned());
            false
        });
        (present, values)
    }

    #[test]
    fn request_headers_agree_with_lookup() {
        let request = headers(&[
            ("X-Forwarded-Host", "www.contoso.com"),
            ("x-azure-fdid", "first"),
            ("host", "app.azurewebsites.net"),
            ("X-AZURE-FDID", "second"),
            ("x-fd-healthprobe", "1"),
        ]);
        // Every subset of filtered headers, since headers outside it are read another way.
        for bits in 0..16 {
            let mut collected = RequestHeaders::new(&request, HeaderSet(bits));
            for pass in ["before", "after"] {
                for header in FilteredHeader::ALL {
                    assert_eq!(
                        visited(&collected, header),
                        visited(request.as_slice(), header),
                        "{header:?} with filtered set {bits:#06b}, {pass} collecting"
                    );
                }
                collected.collect();
            }
        }
    }

    #[test]
    fn empty_filters_match_anything() {
        let check = matcher(HeaderFilters::default()).check(&headers(&[]));
        assert!(check.matched);
    }

    #[test]
    fn forwarded_for_chain() {
        let m = xff(&["10.0.0.0/8", "2001:db8::/32"]);
        let cases = [
            ("10.1.2.3", true),
            ("203.0.113.1, 10.1.2.3", true),
            ("203.0.113.1,10.1.2.3:5678", true),
            ("[2001:db8::7]:443", true),
            ("203.0.113.1", false),
            ("garbage, 203.0.113.1", false),
            ("", false),
        ];
        for (value, expected) in cases {
            let check = m.check(&headers(&[("X-Forwarded-For", value)]));
            assert_eq!(check.matched, expected, "{value:?}");
            assert!(!check.missing_header, "{value:?}");
        }
    }

    #[test]
    fn forwarded_for_second_instance() {
        let m = xff(&["10.0.0.0/8"]);
        let request = headers(&[
            ("x-forwarded-for", "203.0.113.1"),
            ("x-forwarded-for", "10.9.9.9"),
        ]);
        assert!(m.check(&request).matched);
    }

    #[test]
    fn forwarded_for_missing() {
        let check = xff(&["10.0.0.0/8"]).check(&headers(&[("x-other", "10.1.1.1")]));
        assert!(!check.matched);
        assert!(check.missing_header);
    }

    #[test]
    fn forwarded_host_cases() {
        let m = hosts(&["contoso.com", "*.fabrikam.com", "bücher.example"]);
        let cases = [
            ("contoso.com", true),
            ("CONTOSO.com", true),
            ("contoso.com:8443", true),
            ("contoso.com.", true),
            ("www.contoso.com", false),
            ("foo.fabrikam.com", true),
            ("FOO.Fabrikam.COM:443", true),
            ("fabrikam.com", false),
            ("foo.bar.fabrikam.com", false),
            (".fabrikam.com", false),
            ("xn--bcher-kva.example", true),
            ("BÜCHER.example", true),
            ("bucher.example", false),
        ];
        for (value, expected) in cases {
            let check = m.check(&headers(&[("x-forwarded-host", value)]));
            assert_eq!(check.matched, expected, "{value:?}");
        }
    }

    /// `*.suffix` read as in its definition: split off `.suffix` and check that what is
    /// left is one non-empty label.
    fn wildcard_by_split(host: &str, suffix: &str) -> bool {
        let Some(split) = host.len().checked_sub(suffix.len() + 1) else {
            return false;
        };
        let (label, rest) = host.split_at(split);
        rest.strip_prefix('.')
            .is_some_and(|rest| rest.eq_ignore_ascii_case(suffix))
            && !label.is_empty()
            && !label.contains('.')
    }

    #[test]
    fn wildcard_agrees_with_split_reading() {
        let hosts = [
            "www.contoso.com",
            "WWW.Contoso.COM",
            "contoso.com",
            "a.b.contoso.com",
            ".contoso.com",
            "wwwcontoso.com",
            "w.contoso.comm",
            "",
            ".",
            "a.",
            "a..",
            "x.y",
        ];
        let suffixes = ["contoso.com", "com", "", "b.contoso.com", "y"];
        for host in hosts {
            for suffix in suffixes {
                let patterns = [HostPattern::Wildcard(suffix.to_owned())];
                assert_eq!(
                    matches_any(host, &patterns),
                    wildcard_by_split(host, suffix),
                    "{host:?} against *.{suffix}"
                );
            }
        }
    }

    #[test]
    fn forwarded_host_plain_path_agrees() {
        let patterns = [
            vec![HostPattern::new("contoso.com")],
            vec![HostPattern::new("*.contoso.com")],
            vec![
                HostPattern::new("*.fabrikam.com"),
                HostPattern::new("bücher.example"),
            ],
        ];
        let values = [
            "contoso.com",
            "CONTOSO.COM",
            "contoso.com.",
            " contoso.com ",
            "\tcontoso.com",
            "www.contoso.com",
            "WWW.Contoso.Com.",
            "a.b.contoso.com",
            ".contoso.com",
            "contoso.com:443",
            "www.contoso.com:443",
            "[contoso.com]",
            "[::1]:443",
            "other.net, www.contoso.com",
            "www.fabrikam.com",
            "xn--bcher-kva.example",
            "BÜCHER.example",
            "",
            ".",
        ];
        for patterns in &patterns {
            for value in values {
                let general = comma_items(value).any(|host| host_matches(host, patterns));
                assert_eq!(
                    forwarded_host_matches(value, patterns),
                    general,
                    "{value:?} against {patterns:?}"
                );
            }
        }
    }

    #[test]
    fn forwarded_host_missing() {
        let check = hosts(&["contoso.com"]).check(&headers(&[]));
        assert!(check.missing_header);
        assert!(!check.matched);
    }

    #[test]
    fn fdid_exact_and_case() {
        let m = fdid(&["a1b2c3d4-0000-4000-8000-00000000abcd"]);

        let exact = m.check(&headers(&[(
            "X-Azure-FDID",
            "a1b2c3d4-0000-4000-8000-00000000abcd",
        )]));
        assert!(exact.matched);
        assert!(!exact.value_case);

        let upper = m.check(&headers(&[(
            "x-azure-fdid",
            "A1B2C3D4-0000-4000-8000-00000000ABCD",
        )]));
        assert!(upper.matched);
        assert!(upper.value_case);

        let other = m.check(&headers(&[(
            "x-azure-fdid",
            "ffffffff-0000-4000-8000-00000000abcd",
        )]));
        assert!(!other.matched);
        assert!(!other.missing_header);
    }

    #[test]
    fn fdid_exact_beats_case() {
        let m = fdid(&["ABC", "abc"]);
        let check = m.check(&headers(&[("x-azure-fdid", "abc")]));
        assert!(check.matched);
        assert!(!check.value_case);
    }

    #[test]
    fn all_headers_must_match() {
        let m = matcher(HeaderFilters {
            x_forwarded_host: vec!["contoso.com".into()],
            x_fd_health_probe: vec!["1".into()],
            ..HeaderFilters::default()
        });
        let both = headers(&[
            ("x-forwarded-host", "contoso.com"),
            ("x-fd-healthprobe", "1"),
        ]);
        let host_only = headers(&[("x-forwarded-host", "contoso.com")]);
        assert!(m.check(&both).matched);
        assert!(m.check(&host_only).missing_header);
    }

    #[test]
    fn comma_items_split() {
        let items: Vec<&str> = comma_items("a, b,,c").collect();
        assert_eq!(items, vec!["a", " b", "", "c"]);
        assert_eq!(comma_items("").collect::<Vec<_>>(), vec![""]);
    }

    #[test]
    fn strip_port_forms() {
        assert_eq!(strip_port("a.com:80"), "a.com");
        assert_eq!(strip_port("a.com"), "a.com");
        assert_eq!(strip_port("[2001:db8::1]:80"), "2001:db8::1");
        assert_eq!(strip_port("2001:db8::1"), "2001:db8::1");
    }
}
