//! Static reachability: who can reach whom in a deployment, which rule decided, and why.
//!
//! This crate takes a [`Topology`](subnetlock_model::Topology) from `subnetlock-model` and
//! queries the access-restriction engine, for every site (main and scm) and every caller the
//! deployment implies (the internet, each subnet, each app), what the App Service front end
//! would do. The callers'
//! source identities come from [`subnetlock_model::egress`], the same code the emulator's
//! egress proxies use, and the verdicts from [`subnetlock_access`], the same engine the
//! emulator's front end runs: what `check` predicts is what `up` does.
//!
//! It also predicts the HTTP status of a concrete call ([`predict`]), which `demo` and the
//! tests hold the emulator to, and renders results as text, JSON or SARIF ([`output`]). It
//! reads no files and prints nothing.

mod analysis;
pub mod output;
mod predict;

pub use analysis::{
    analyze, describe_ambiguity, reachability_of, sort_findings, Analysis, AppCall, CallerKind,
    CallerSpec, Reachability, Target,
};
pub use predict::{predict, predict_with_headers, Prediction, Probe};
pub use subnetlock_model::internet::unnamed_internet_v4;
