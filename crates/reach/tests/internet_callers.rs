//! The internet callers of the reachability matrix.

// Tests fail loudly on broken fixtures.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use serde_json::{json, Value as Json};
use subnetlock_access::{EngineOptions, SiteKind};
use subnetlock_model::testing::one_site_topology;
use subnetlock_model::FindingCode;
use subnetlock_reach::{analyze, Analysis};

/// Analyses a plan and site `app` whose `siteConfig` is `site_config`.
fn one_site(site_config: Json) -> Analysis {
    analyze(one_site_topology(site_config), &EngineOptions::default())
}

/// Returns the internet callers of the main site's rows, with whether each is allowed.
fn internet_rows(analysis: &Analysis) -> Vec<(String, bool)> {
    analysis
        .rows
        .iter()
        .filter(|row| row.to.kind == SiteKind::Main && row.from.label.starts_with("internet:"))
        .map(|row| (row.from.label.clone(), row.allowed()))
        .collect()
}

#[test]
fn deny_rule_over_sample_keeps_rest_of_internet() {
    // The sample address lies in the denied range, and the default action allows everyone
    // else: the matrix must show an internet caller that gets in.
    let analysis = one_site(json!({
        "ipSecurityRestrictionsDefaultAction": "Allow",
        "ipSecurityRestrictions": [
            { "ipAddress": "203.0.113.0/24", "action": "Deny", "priority": 100, "name": "deny-doc" }
        ]
    }));
    let rows = internet_rows(&analysis);
    assert!(
        rows.contains(&("internet:203.0.113.10".to_owned(), false)),
        "{rows:?}"
    );
    assert!(
        rows.contains(&("internet:198.51.100.10".to_owned(), true)),
        "{rows:?}"
    );
}

#[test]
fn sample_outside_every_range_adds_no_caller() {
    let analysis = one_site(json!({
        "ipSecurityRestrictions": [
            { "ipAddress": "10.1.0.0/16", "action": "Allow", "priority": 100, "name": "office" }
        ]
    }));
    let labels: Vec<String> = internet_rows(&analysis)
        .into_iter()
        .map(|(label, _)| label)
        .collect();
    assert_eq!(labels, ["internet:203.0.113.10", "internet:10.1.0.1"]);
}

#[test]
fn scm_warning_judges_internet_at_large() {
    // The main site denies only the sample's range, so it is not locked, and an open scm site
    // is no warning.
    let analysis = one_site(json!({
        "ipSecurityRestrictionsDefaultAction": "Allow",
        "ipSecurityRestrictions": [
            { "ipAddress": "203.0.113.0/24", "action": "Deny", "priority": 100, "name": "deny-doc" }
        ]
    }));
    let codes: Vec<_> = analysis
        .findings
        .iter()
        .map(|finding| finding.code)
        .collect();
    assert!(!codes.contains(&FindingCode::SL012), "{codes:?}");

    // With the default action Deny the main site is locked, and the warning stays.
    let analysis = one_site(json!({
        "ipSecurityRestrictionsDefaultAction": "Deny",
        "ipSecurityRestrictions": [
            { "ipAddress": "203.0.113.0/24", "action": "Deny", "priority": 100, "name": "deny-doc" }
        ]
    }));
    assert!(analysis
        .findings
        .iter()
        .any(|finding| finding.code == FindingCode::SL012));
}

#[test]
fn allow_all_rule_keeps_internet_at_large() {
    // Every address lies in `0.0.0.0/0`, but only the sample's range is denied: the internet
    // at large gets in, and `explain --from internet` and SL012 must judge it, not the sample.
    let analysis = one_site(json!({
        "ipSecurityRestrictionsDefaultAction": "Deny",
        "ipSecurityRestrictions": [
            { "ipAddress": "203.0.113.0/24", "action": "Deny", "priority": 100, "name": "deny-doc" },
            { "ipAddress": "0.0.0.0/0", "action": "Allow", "priority": 200, "name": "allow-all" }
        ]
    }));
    let rows = internet_rows(&analysis);
    assert!(
        rows.contains(&("internet:198.51.100.10".to_owned(), true)),
        "{rows:?}"
    );
    assert_eq!(
        subnetlock_reach::unnamed_internet_v4(&analysis.topology, None).to_string(),
        "198.51.100.10"
    );
    let codes: Vec<_> = analysis
        .findings
        .iter()
        .map(|finding| finding.code)
        .collect();
    assert!(!codes.contains(&FindingCode::SL012), "{codes:?}");
}

#[test]
fn deny_all_rule_locks_internet_at_large() {
    // Only the sample's range is allowed before a rule denies every address, so the main site
    // is locked to the internet at large and the open scm site is a warning.
    let analysis = one_site(json!({
        "ipSecurityRestrictionsDefaultAction": "Allow",
        "ipSecurityRestrictions": [
            { "ipAddress": "203.0.113.0/24", "action": "Allow", "priority": 100, "name": "allow-doc" },
            { "ipAddress": "0.0.0.0/0", "action": "Deny", "priority": 200, "name": "deny-all" }
        ]
    }));
    let rows = internet_rows(&analysis);
    assert!(
        rows.contains(&("internet:198.51.100.10".to_owned(), false)),
        "{rows:?}"
    );
    assert!(analysis
        .findings
        .iter()
        .any(|finding| finding.code == FindingCode::SL012));
}

#[test]
fn allow_all_rule_alone_adds_no_caller() {
    // The sample stands for every address when only a range of the whole family names it.
    let analysis = one_site(json!({
        "ipSecurityRestrictionsDefaultAction": "Deny",
        "ipSecurityRestrictions": [
            { "ipAddress": "0.0.0.0/0", "action": "Allow", "priority": 200, "name": "allow-all" }
        ]
    }));
    let labels: Vec<String> = internet_rows(&analysis)
        .into_iter()
        .map(|(label, _)| label)
        .collect();
    assert_eq!(labels, ["internet:203.0.113.10", "internet:198.51.100.1"]);
}

#[test]
fn rule_for_sample_alone_keeps_one_row() {
    let analysis = one_site(json!({
        "ipSecurityRestrictionsDefaultAction": "Deny",
        "ipSecurityRestrictions": [
            { "ipAddress": "203.0.113.10/32", "action": "Allow", "priority": 100, "name": "sample" }
        ]
    }));
    let labels: Vec<String> = internet_rows(&analysis)
        .into_iter()
        .map(|(label, _)| label)
        .collect();
    assert_eq!(labels, ["internet:203.0.113.10", "internet:198.51.100.10"]);
}
