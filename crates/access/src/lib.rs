//! The App Service access-restriction engine.
//!
//! This crate decides whether the App Service front end lets one request through to a site,
//! and why. It knows rules, sources and decisions; it does not know ARM templates, networks or
//! HTTP servers. `subnetlock-model` turns templates into [`SiteAccess`] values, and both the
//! static checker and the emulator's front end call [`CompiledSiteAccess::decide`], so what
//! `check` predicts is what `up` enforces.
//!
//! The engine is pure: no I/O, no clock, no logging. A [`Decision`] carries the verdict, the
//! rule that decided (or the step of the algorithm that did) and the ambiguities in Azure's
//! documentation that the verdict depends on.
//!
//! The order of checks follows "How it works" in
//! <https://learn.microsoft.com/azure/app-service/overview-access-restrictions>:
//! private-endpoint traffic skips access restrictions; then app access (`publicNetworkAccess`);
//! then the main or scm rule list sorted by priority with ties kept in array order; the first
//! rule whose source and header filters match decides; then the default action, and without
//! one the implicit rule (allow with no rules, deny with any).

// Tests use `unwrap` on literals they control; library code stays under the workspace lint.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

mod ascii;
mod compiled;
mod error;
mod headers;
mod interval;
mod net;
mod parse;
mod reference;
mod service_tags;
mod types;

/// Header-name comparison ignoring ASCII case, eight bytes at a time, as the engine compares
/// names. The emulator's front end uses it for the names it reads on every request.
pub use ascii::{eq_ignore_case, eq_lower_case};
pub use compiled::CompiledSiteAccess;
pub use error::{Outcome, RuleError};
pub use parse::{
    parse_header_filters, parse_header_filters_with_warnings, parse_source,
    parse_source_with_warnings, validate_list, validate_service_tags, MAX_HEADER_VALUES,
    MAX_HEADER_VALUE_CHARS, MAX_RULES, MAX_SOURCES_PER_RULE, SYNTHETIC_RULE_PRIORITY,
};
pub use reference::decide_reference;
pub use service_tags::{ServiceTagError, ServiceTagTable};
pub use types::*;

#[cfg(test)]
mod scenarios;
