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

use crate::net::parse_forwarded_address;
use crate::parse::normalize_host_filter;
use crate::{HeaderFilters, HeaderLookup, IpNet};

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

    pub fn is_empty(&self) -> bool {
        self.forwarded_for.is_empty()
            && self.forwarded_host.is_empty()
            && self.azure_fdid.is_empty()
            && self.health_probe.is_empty()
    }

    /// Checks the filters in a fixed order (`X-Forwarded-For`, `X-Forwarded-Host`,
    /// `X-Azure-FDID`, `X-FD-HealthProbe`) and stops at the first that fails.
    pub fn check(&self, headers: &dyn HeaderLookup) -> HeaderCheck {
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
            let present = headers.visit_values("x-forwarded-host", &mut |value| {
                hit = comma_items(value).any(|host| host_matches(host, &self.forwarded_host));
                hit
            });
            if !present {
                return fail(true);
            }
            if !hit {
                return fail(false);
            }
        }

        let mut value_case = false;
        for (name, filter) in [
            ("x-azure-fdid", &self.azure_fdid),
            ("x-fd-healthprobe", &self.health_probe),
        ] {
            if filter.is_empty() {
                continue;
            }
            match token_matches(headers, name, filter) {
                Presence::Missing => return fail(true),
                Presence::Present(TokenMatch::None) => return fail(false),
                Presence::Present(TokenMatch::IgnoringCase) => value_case = true,
                Presence::Present(TokenMatch::Exact) => {}
            }
        }

        HeaderCheck {
            matched: true,
            missing_header: false,
            value_case,
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
pub(crate) fn forwarded_chain_matches(
    headers: &dyn HeaderLookup,
    nets: &[IpNet],
) -> Presence<bool> {
    let mut hit = false;
    let present = headers.visit_values("x-forwarded-for", &mut |value| {
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

/// An `X-Forwarded-Host` filter value in lower-case ASCII.
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

/// Checks whether one request host (possibly with a port, possibly Unicode) matches any
/// pattern.
fn host_matches(raw: &str, patterns: &[HostPattern]) -> bool {
    let host = strip_port(raw.trim_ascii());
    let host = host.strip_suffix('.').unwrap_or(host);

    // Unicode hosts compare as Punycode. Only this rare path allocates.
    let converted;
    let host = if host.is_ascii() {
        host
    } else {
        match idna::domain_to_ascii(host) {
            Ok(ascii) => {
                converted = ascii;
                converted.as_str()
            }
            Err(_) => return false,
        }
    };

    patterns.iter().any(|pattern| match pattern {
        HostPattern::Exact(expected) => host.eq_ignore_ascii_case(expected),
        HostPattern::Wildcard(suffix) => wildcard_matches(host, suffix),
    })
}

/// `*.suffix` matches `label.suffix` for exactly one non-empty label.
fn wildcard_matches(host: &str, suffix: &str) -> bool {
    let Some(split) = host.len().checked_sub(suffix.len() + 1) else {
        return false;
    };
    let (Some(label), Some(rest)) = (host.get(..split), host.get(split..)) else {
        return false;
    };
    let Some(rest) = rest.strip_prefix('.') else {
        return false;
    };
    !label.is_empty() && !label.contains('.') && rest.eq_ignore_ascii_case(suffix)
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

/// Compares each value of header `name` (trimmed) with each filter value.
fn token_matches(
    headers: &dyn HeaderLookup,
    name: &str,
    filter: &[String],
) -> Presence<TokenMatch> {
    let mut best = TokenMatch::None;
    let present = headers.visit_values(name, &mut |value| {
        let value = value.trim_ascii();
        for expected in filter {
            if value == expected {
                best = TokenMatch::Exact;
                return true;
            }
            if value.eq_ignore_ascii_case(expected) {
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
