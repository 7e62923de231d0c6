//! Compiled engine against the reference scan at 1, 64 and 512 rules.
//!
//! Each rule allows or denies one IPv6 /48 and filters on `X-Azure-FDID` and on
//! `X-Forwarded-Host` (`*.contoso.com`). Priorities are scrambled so that array order and
//! evaluation order differ. The request comes from the /48 of the rule evaluated last, the worst case for a
//! scan, and carries the matching `X-Azure-FDID` among a few other headers.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::net::{IpAddr, Ipv6Addr};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use subnetlock_access::{
    decide_reference, Action, CompiledSiteAccess, EngineOptions, HeaderFilters, IpNet, Request,
    Rule, RuleList, SiteAccess, SiteKind, Source, SourceCondition,
};

fn fdid(i: usize) -> String {
    format!("a1b2c3d4-0000-4000-8000-{i:012x}")
}

fn network(i: usize) -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 0x0db8, i as u16, 0, 0, 0, 0, 0)
}

/// `count` rules and the array index of the rule evaluated last.
fn site(count: usize) -> (SiteAccess, usize) {
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
                    IpNet::new(IpAddr::V6(network(i)), 48).unwrap()
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

fn bench_decide(c: &mut Criterion) {
    let mut group = c.benchmark_group("decide");
    let options = EngineOptions::default();

    for count in [1usize, 64, 512] {
        let (site, last) = site(count);
        let compiled = CompiledSiteAccess::compile(&site, &options);

        let mut address = network(last).segments();
        address[7] = 5;
        let source = Source::internet(IpAddr::V6(Ipv6Addr::from(address)));
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
        let request = Request {
            source: &source,
            site: SiteKind::Main,
            headers: &headers,
        };

        let expected = decide_reference(&site, &options, &request);
        assert_eq!(compiled.decide(&request), expected);
        assert!(
            matches!(expected.reason, subnetlock_access::Reason::Rule { index, .. } if index == last)
        );

        group.bench_with_input(
            BenchmarkId::new("compiled", count),
            &request,
            |b, request| b.iter(|| compiled.decide(black_box(request))),
        );
        group.bench_with_input(
            BenchmarkId::new("reference", count),
            &request,
            |b, request| b.iter(|| decide_reference(&site, &options, black_box(request))),
        );
    }

    group.finish();
}

criterion_group!(benches, bench_decide);
criterion_main!(benches);
