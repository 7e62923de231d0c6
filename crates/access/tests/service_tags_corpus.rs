//! Reads the published service-tag file from the shared corpus, when present, and decides
//! Front Door and AzureCloud requests against it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::sync::Arc;

use subnetlock_access::{
    decide_reference, parse_header_filters, parse_source, Action, CompiledSiteAccess,
    EngineOptions, Request, Rule, RuleList, ServiceTagTable, SiteAccess, SiteKind, Source,
};

const FILE: &str = "servicetags/ServiceTags_Public_20251028.json";

/// The corpus lives in `shared/corpus` beside the workspace root, found by walking up.
fn corpus_file() -> Option<PathBuf> {
    let start = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    start
        .ancestors()
        .map(|dir| dir.join("shared").join("corpus").join(FILE))
        .find(|path| path.is_file())
}

fn load_table() -> Option<ServiceTagTable> {
    let Some(path) = corpus_file() else {
        println!("skipped: {FILE} not found in a shared/corpus folder above the crate");
        return None;
    };
    let bytes = std::fs::read(&path).unwrap();
    Some(ServiceTagTable::from_json(&bytes).unwrap())
}

#[test]
fn corpus_table_has_front_door_backend() {
    let Some(table) = load_table() else { return };

    assert!(table.len() > 1000, "only {} tags", table.len());
    let prefixes = table.prefixes("AzureFrontDoor.Backend").unwrap();
    assert!(prefixes
        .iter()
        .any(|net| net.to_string() == "2a01:111:2050::/44"));
    assert!(prefixes
        .iter()
        .any(|net| net.to_string() == "4.153.250.0/29"));
}

#[test]
fn corpus_table_decides_front_door() {
    let Some(table) = load_table() else { return };
    let options = EngineOptions {
        service_tags: Some(Arc::new(table)),
        ..EngineOptions::default()
    };

    let headers = parse_header_filters(&[(
        "X-Azure-FDID".to_string(),
        vec!["a1b2c3d4-0000-4000-8000-000000000001".to_string()],
    )])
    .unwrap();
    let front_door_rule = Rule {
        name: Some("front-door".into()),
        priority: 100,
        action: Action::Allow,
        source: parse_source(
            Some("AzureFrontDoor.Backend"),
            None,
            None,
            Some("ServiceTag"),
        )
        .unwrap(),
        headers,
        index: 0,
    };
    let azure_cloud_rule = Rule {
        name: Some("azure-cloud".into()),
        priority: 200,
        action: Action::Allow,
        source: parse_source(Some("AzureCloud"), None, None, Some("ServiceTag")).unwrap(),
        headers: Default::default(),
        index: 1,
    };
    let site = SiteAccess {
        main: RuleList {
            rules: vec![front_door_rule, azure_cloud_rule],
            default_action: None,
        },
        ..SiteAccess::default()
    };
    let compiled = CompiledSiteAccess::compile(&site, &options);

    let cases = [
        (
            "4.153.250.3",
            "a1b2c3d4-0000-4000-8000-000000000001",
            Action::Allow,
        ),
        (
            "2a01:111:2050::9",
            "a1b2c3d4-0000-4000-8000-000000000001",
            Action::Allow,
        ),
        (
            "198.51.100.1",
            "a1b2c3d4-0000-4000-8000-000000000001",
            Action::Deny,
        ),
        // An address inside App Service's internal IPv6 range is in no public tag.
        ("fd00:0:1200::5", "", Action::Deny),
    ];
    for (address, fdid, expected) in cases {
        let source = Source::internet(address.parse().unwrap());
        let headers = vec![("x-azure-fdid".to_string(), fdid.to_string())];
        let request = Request {
            source: &source,
            site: SiteKind::Main,
            headers: &headers,
        };
        let decision = compiled.decide(&request);
        assert_eq!(decision.verdict, expected, "{address}");
        assert_eq!(
            decision,
            decide_reference(&site, &options, &request),
            "{address}"
        );
    }
}

/// Many header-filtered rules over the same large tag must compile and agree with the scan.
#[test]
fn corpus_table_many_azure_cloud_rules() {
    let Some(table) = load_table() else { return };
    let options = EngineOptions {
        service_tags: Some(Arc::new(table)),
        ..EngineOptions::default()
    };

    let rules: Vec<Rule> = (0..64)
        .map(|index| Rule {
            name: None,
            priority: 100,
            action: Action::Allow,
            source: parse_source(
                Some("AzureCloud,AzureFrontDoor.Backend"),
                None,
                None,
                Some("ServiceTag"),
            )
            .unwrap(),
            headers: parse_header_filters(&[(
                "x-azure-fdid".to_string(),
                vec![format!("id-{index}")],
            )])
            .unwrap(),
            index,
        })
        .collect();
    let site = SiteAccess {
        main: RuleList {
            rules,
            default_action: None,
        },
        ..SiteAccess::default()
    };

    let started = std::time::Instant::now();
    let compiled = CompiledSiteAccess::compile(&site, &options);
    println!("compiled 64 AzureCloud rules in {:?}", started.elapsed());

    for (address, fdid, expected) in [
        ("4.153.250.3", "id-63", Some(63)),
        ("4.153.250.3", "id-none", None),
        ("198.51.100.1", "id-3", None),
    ] {
        let source = Source::internet(address.parse().unwrap());
        let headers = vec![("x-azure-fdid".to_string(), fdid.to_string())];
        let request = Request {
            source: &source,
            site: SiteKind::Main,
            headers: &headers,
        };
        let decision = compiled.decide(&request);
        let index = match decision.reason {
            subnetlock_access::Reason::Rule { index, .. } => Some(index),
            _ => None,
        };
        assert_eq!(index, expected, "{address} {fdid}");
        assert_eq!(
            decision,
            decide_reference(&site, &options, &request),
            "{address} {fdid}"
        );
    }
}
