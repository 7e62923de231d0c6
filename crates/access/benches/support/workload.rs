//! The decision workload shared by the criterion benchmark (`benches/decide.rs`) and the
//! Callgrind driver (`examples/decide_loop.rs`).
//!
//! Each rule allows or denies one IPv6 /48 and filters on `X-Azure-FDID` and on
//! `X-Forwarded-Host` (`*.contoso.com`). Priorities are scrambled so that array order and
//! evaluation order differ. The request comes from the /48 of the rule evaluated last, the
//! worst case for a scan, and carries the matching `X-Azure-FDID` among a few other headers.

use std::net::{IpAddr, Ipv6Addr};

use subnetlock_access::{
    Action, HeaderFilters, IpNet, Request, Rule, RuleList, SiteAccess, SiteKind, Source,
    SourceCondition,
};

fn fdid(i: usize) -> String {
    format!("a1b2c3d4-0000-4000-8000-{i:012x}")
}

fn network(i: usize) -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 0x0db8, i as u16, 0, 0, 0, 0, 0)
}

/// Builds a site with `count` rules and returns it with the array index of the rule evaluated
/// last.
pub fn site(count: usize) -> (SiteAccess, usize) {
    let rules: Vec<Rule> = (0..count)
        .map(|i| {
            let headers = HeaderFilters {
                x_azure_fdid: vec![fdid(i)],
                x_forwarded_host: vec!["*.contoso.com".into()],
                ..HeaderFilters::default()
            };
            Rule {
                name: Some(format!("front-door-{i}")),
                // A permutation of 0..count when count is not a multiple of 7919.
                priority: ((i * 7919) % count) as i64,
                action: if i % 3 == 0 {
                    Action::Deny
                } else {
                    Action::Allow
                },
                source: SourceCondition::Ranges(vec![
                    IpNet::new(IpAddr::V6(network(i)), 48).expect("valid /48")
                ]),
                headers,
                index: i,
            }
        })
        .collect();

    let last = rules
        .iter()
        .max_by_key(|rule| (rule.priority, rule.index))
        .map_or(0, |rule| rule.index);

    let site = SiteAccess {
        main: RuleList {
            rules,
            default_action: None,
        },
        ..SiteAccess::default()
    };
    (site, last)
}

/// The request that rule `last` matches: its source and headers, which [`Case::request`]
/// borrows.
pub struct Case {
    source: Source,
    headers: Vec<(String, String)>,
}

impl Case {
    /// Builds the request for rule `last`: from inside its /48, with its `X-Azure-FDID`.
    pub fn for_rule(last: usize) -> Case {
        let mut address = network(last).segments();
        address[7] = 5;
        let headers = vec![
            ("host".to_string(), "app.azurewebsites.net".to_string()),
            (
                "x-forwarded-for".to_string(),
                "203.0.113.9, 198.51.100.4".to_string(),
            ),
            (
                "x-forwarded-host".to_string(),
                "www.contoso.com".to_string(),
            ),
            ("x-azure-fdid".to_string(), fdid(last)),
            ("user-agent".to_string(), "bench".to_string()),
        ];
        Case {
            source: Source::internet(IpAddr::V6(Ipv6Addr::from(address))),
            headers,
        }
    }

    /// Returns the request to the main site.
    pub fn request(&self) -> Request<'_> {
        Request {
            source: &self.source,
            site: SiteKind::Main,
            headers: &self.headers,
        }
    }
}
