//! Every template of the shared corpus evaluates offline without an error.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use subnetlock_arm::{evaluate_file, EvalOptions, OfflineProvider, Parameters, Scope, Value};

/// Finds `shared/corpus/arm` by walking up from the crate directory.
fn corpus_dir() -> Option<PathBuf> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .map(|ancestor| ancestor.join("shared/corpus/arm"))
        .find(|candidate| candidate.is_dir())
}

/// Parameters a corpus template requires but neither defaults nor ships a file for.
fn synthetic_parameters(file_name: &str, parameters: &mut Parameters) {
    let text = |value: &str| Value::String(value.to_owned());
    match file_name {
        "avm-res-web-site.json" => {
            parameters.set("name", text("site-synthetic"));
            parameters.set("kind", text("functionapp"));
            parameters.set(
                "serverFarmResourceId",
                text("/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/subnetlock/providers/Microsoft.Web/serverfarms/plan"),
            );
        }
        "avm-ptn-appsvc-lza-hosting-env.json" => {
            parameters.set(
                "logAnalyticsWorkspaceResourceId",
                text("/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/subnetlock/providers/Microsoft.OperationalInsights/workspaces/log"),
            );
        }
        "bicep-func-create.json" | "bicep-func-create.symbolicnames.json" => {
            parameters.set(
                "workspaceResourceId",
                text("/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/subnetlock/providers/Microsoft.OperationalInsights/workspaces/log"),
            );
        }
        _ => {}
    }
}

fn parameters_file(template: &Path) -> Option<PathBuf> {
    let stem = template.file_stem()?.to_str()?;
    ["parameters.json", "parameters.jsonc"]
        .iter()
        .map(|extension| template.with_file_name(format!("{stem}.{extension}")))
        .find(|candidate| candidate.is_file())
}

#[test]
fn corpus_templates_evaluate_offline() {
    let Some(dir) = corpus_dir() else {
        eprintln!("skipped: shared/corpus/arm not found above the crate directory");
        return;
    };
    let mut templates: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            let name = path
                .file_name()
                .and_then(|name| name.to_str())
                .unwrap_or("");
            name.ends_with(".json") && !name.contains(".parameters.")
        })
        .collect();
    templates.sort();
    assert!(
        templates.len() >= 30,
        "corpus has {} templates",
        templates.len()
    );

    let mut failures = Vec::new();
    for template in templates {
        let name = template.file_name().unwrap().to_str().unwrap().to_owned();
        let mut parameters = match parameters_file(&template) {
            Some(file) => Parameters::from_file(&file).unwrap(),
            None => Parameters::new(),
        };
        synthetic_parameters(&name, &mut parameters);
        let options = EvalOptions {
            scope: Scope::default(),
            parameters,
        };
        let result = evaluate_file(&template, &options, &OfflineProvider)
            .map(|deployment| deployment.resources.len());
        match result {
            Ok(0) => failures.push(format!("{name}: no resources")),
            Ok(count) => eprintln!("{name}: {count} resources"),
            Err(error) => failures.push(format!("{name}: {error}")),
        }
    }
    assert!(failures.is_empty(), "failures:\n{}", failures.join("\n"));
}

#[test]
fn corpus_linked_template_is_unresolved() {
    // This quickstart links `fetchIpAddress.json` through `_artifactsLocation`, a URI.
    let Some(dir) = corpus_dir() else {
        eprintln!("skipped: shared/corpus/arm not found above the crate directory");
        return;
    };
    let template = dir.join("qs-appgw-webapp-iprestriction.json");
    let parameters = Parameters::from_file(&parameters_file(&template).unwrap()).unwrap();
    let options = EvalOptions {
        scope: Scope::default(),
        parameters,
    };
    let deployment = evaluate_file(&template, &options, &OfflineProvider).unwrap();
    assert_eq!(deployment.unresolved_templates.len(), 1);
    assert!(deployment.unresolved_templates[0]
        .link
        .get("uri")
        .unwrap()
        .is_unknown());
}

#[test]
fn corpus_linked_template_reads_artifacts() {
    // The same quickstart with its folder of linked templates standing for the template's own
    // location, so that `_artifactsLocation` and the `uri()` built from it point into it.
    let Some(dir) = corpus_dir() else {
        eprintln!("skipped: shared/corpus/arm not found above the crate directory");
        return;
    };
    let template = dir.join("qs-appgw-webapp-iprestriction.json");
    let nested = dir.join("qs-appgw-webapp-iprestriction.nestedtemplates");
    let parameters = Parameters::from_file(&parameters_file(&template).unwrap()).unwrap();
    let mut artifacts = subnetlock_arm::Artifacts::default();
    artifacts.map_own_location(&nested).unwrap();
    let options = EvalOptions {
        scope: Scope {
            artifacts,
            ..Scope::default()
        },
        parameters,
    };
    let deployment = evaluate_file(&template, &options, &OfflineProvider).unwrap();
    assert!(deployment.unresolved_templates.is_empty());

    let fetch = deployment
        .resources
        .iter()
        .find(|resource| resource.name == "fetchIpAddress")
        .unwrap();
    assert_eq!(
        fetch.body.get_path(&["properties", "templateLink", "uri"]),
        Some(&Value::String(
            "https://artifacts.subnetlock.invalid/fetchIpAddress.json".to_owned()
        ))
    );

    // The linked template reads the gateway's public IP address, which exists only once it
    // is deployed: the rule built from it is unknown for that reason, not because the
    // template was not read.
    let config = deployment
        .resources
        .iter()
        .find(|resource| resource.name == "GEN-UNIQUE/web")
        .unwrap();
    let address = config
        .body
        .get_path(&["properties", "ipSecurityRestrictions"])
        .and_then(|rules| rules.as_array())
        .and_then(|rules| rules.first())
        .and_then(|rule| rule.get("ipAddress"))
        .unwrap();
    let Value::Unknown(unknown) = address else {
        panic!("the gateway address is known offline: {address:?}");
    };
    assert_eq!(unknown.cause, subnetlock_arm::UnknownCause::Reference);
    assert!(
        unknown.expression.contains("GEN-UNIQUE-pip"),
        "{}",
        unknown.expression
    );
}
