//! Compiled engine against the reference scan at 1, 64 and 512 rules, on the workload that
//! `support/workload.rs` describes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/workload.rs"]
mod workload;

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use subnetlock_access::{decide_reference, CompiledSiteAccess, EngineOptions};

fn bench_decide(c: &mut Criterion) {
    let mut group = c.benchmark_group("decide");
    let options = EngineOptions::default();

    for count in [1usize, 64, 512] {
        let (site, last) = workload::site(count);
        let compiled = CompiledSiteAccess::compile(&site, &options);

        let case = workload::Case::for_rule(last);
        let request = case.request();

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
