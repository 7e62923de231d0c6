//! Runs `CompiledSiteAccess::decide` in a loop on the workload of `benches/decide.rs`, to count
//! instructions under Callgrind when the machine is too busy for wall-clock benchmarks.
//!
//! Usage: `decide_loop [RULES [DECISIONS]]`, 512 rules and one million decisions by default.
//! The instructions of one decision are the difference between two runs with different
//! decision counts, divided by the difference in count:
//!
//! ```text
//! cargo build --release -p subnetlock-access --example decide_loop
//! cd target/release/examples
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null ./decide_loop 512 1000
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null ./decide_loop 512 11000
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../benches/support/workload.rs"]
mod workload;

use std::hint::black_box;

use subnetlock_access::{CompiledSiteAccess, EngineOptions};

fn main() {
    let mut args = std::env::args().skip(1);
    let count: usize = args
        .next()
        .map_or(512, |a| a.parse().expect("RULES must be a whole number"));
    let decisions: u64 = args.next().map_or(1_000_000, |a| {
        a.parse().expect("DECISIONS must be a whole number")
    });

    let (site, last) = workload::site(count);
    let compiled = CompiledSiteAccess::compile(&site, &EngineOptions::default());
    let case = workload::Case::for_rule(last);
    let request = case.request();

    for _ in 0..decisions {
        black_box(compiled.decide(black_box(&request)));
    }
}
