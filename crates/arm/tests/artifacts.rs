//! Linked templates behind `templateLink.uri`, read from artifacts folders.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use subnetlock_arm::{
    evaluate_file, ArtifactPrefix, Artifacts, Deployment, Error, EvalOptions, OfflineProvider,
    Parameters, Scope, UnknownCause, Value, LOCAL_ARTIFACTS_BASE,
};

const SCHEMA: &str =
    "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#";

/// Returns a main template in the quickstart convention, linking `linked`: `_artifactsLocation`
/// defaults to the template's own link, and the link carries a SAS token from a `securestring`
/// parameter.
fn quickstart_main(linked: &str) -> String {
    format!(
        r#"{{"$schema": "{SCHEMA}",
  "parameters": {{
    "_artifactsLocation": {{"type": "string", "defaultValue": "[deployment().properties.templateLink.uri]"}},
    "_artifactsLocationSasToken": {{"type": "securestring", "defaultValue": ""}}
  }},
  "variables": {{"name": "from-main"}},
  "resources": [
    {{"type": "Microsoft.Resources/deployments", "apiVersion": "2022-09-01", "name": "linked",
      "properties": {{"mode": "Incremental",
        "templateLink": {{
          "uri": "[uri(parameters('_artifactsLocation'), concat('{linked}', parameters('_artifactsLocationSasToken')))]"
        }},
        "parameters": {{"site": {{"value": "app-linked"}}}}}}}}
  ],
  "outputs": {{
    "own": {{"type": "string", "value": "[parameters('_artifactsLocation')]"}},
    "host": {{"type": "string", "value": "[reference('linked').outputs.host.value]"}},
    "childLink": {{"type": "string", "value": "[reference('linked').outputs.link.value]"}},
    "childName": {{"type": "string", "value": "[reference('linked').outputs.name.value]"}}
  }}}}"#
    )
}

/// Returns a linked template that deploys one site and reads its own variables and
/// `deployment()`.
fn site_template() -> String {
    format!(
        r#"{{"$schema": "{SCHEMA}",
  "parameters": {{"site": {{"type": "string"}}}},
  "variables": {{"name": "from-linked"}},
  "resources": [
    {{"type": "Microsoft.Web/sites", "apiVersion": "2022-03-01", "name": "[parameters('site')]",
      "properties": {{"enabled": true}}}}
  ],
  "outputs": {{
    "host": {{"type": "string", "value": "[concat(parameters('site'), '.azurewebsites.net')]"}},
    "link": {{"type": "string", "value": "[deployment().properties.templateLink.uri]"}},
    "name": {{"type": "string", "value": "[variables('name')]"}}
  }}}}"#
    )
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn evaluate(main: &Path, artifacts: Artifacts) -> Result<Deployment, Error> {
    let options = EvalOptions {
        scope: Scope {
            artifacts,
            ..Scope::default()
        },
        parameters: Parameters::new(),
    };
    evaluate_file(main, &options, &OfflineProvider)
}

fn own_location(directory: &Path) -> Artifacts {
    let mut artifacts = Artifacts::default();
    artifacts.map_own_location(directory).unwrap();
    artifacts
}

fn text(value: &str) -> Value {
    Value::String(value.to_owned())
}

#[test]
fn own_location_reads_linked_template() {
    let directory = tempfile::tempdir().unwrap();
    let main = directory.path().join("main.json");
    write(&main, &quickstart_main("nested/site.json"));
    write(&directory.path().join("nested/site.json"), &site_template());

    let deployment = evaluate(&main, own_location(directory.path())).unwrap();
    let names: Vec<&str> = deployment
        .resources
        .iter()
        .map(|r| r.name.as_str())
        .collect();
    assert_eq!(names, ["linked", "app-linked"]);
    assert!(deployment.unresolved_templates.is_empty());
    assert_eq!(
        deployment.outputs["own"],
        text("https://artifacts.subnetlock.invalid/main.json")
    );
    assert_eq!(
        deployment.outputs["host"],
        text("app-linked.azurewebsites.net")
    );
    // The linked template's `deployment()` returns its own link, and its variables are its
    // own even where the parent declares one of the same name.
    assert_eq!(
        deployment.outputs["childLink"],
        text("https://artifacts.subnetlock.invalid/nested/site.json")
    );
    assert_eq!(deployment.outputs["childName"], text("from-linked"));
    let site = &deployment.resources[1];
    assert!(site.declared_at.file.ends_with("nested/site.json"));
    assert_eq!(site.deployment_path, ["linked"]);
}

#[test]
fn without_artifacts_link_stays_unresolved() {
    let directory = tempfile::tempdir().unwrap();
    let main = directory.path().join("main.json");
    write(&main, &quickstart_main("nested/site.json"));
    write(&directory.path().join("nested/site.json"), &site_template());

    let deployment = evaluate(&main, Artifacts::default()).unwrap();
    assert_eq!(deployment.resources.len(), 1);
    assert_eq!(deployment.unresolved_templates.len(), 1);
    let Value::Unknown(own) = &deployment.outputs["own"] else {
        panic!("own link is known: {:?}", deployment.outputs["own"]);
    };
    assert_eq!(own.cause, UnknownCause::DeploymentMetadata);
    let Value::Unknown(host) = &deployment.outputs["host"] else {
        panic!("output is known");
    };
    assert_eq!(host.cause, UnknownCause::RemoteTemplate);
}

#[test]
fn uri_prefix_maps_supplied_location() {
    let directory = tempfile::tempdir().unwrap();
    let main = directory.path().join("main.json");
    write(&main, &quickstart_main("site.json"));
    let folder = directory.path().join("copy");
    write(&folder.join("site.json"), &site_template());

    let mut artifacts = Artifacts::default();
    artifacts
        .map("https://raw.example.com/org/repo/main/", &folder)
        .unwrap();
    let mut parameters = Parameters::new();
    parameters.set(
        "_artifactsLocation",
        text("https://RAW.example.com/org/repo/main/azuredeploy.json"),
    );
    parameters.set("_artifactsLocationSasToken", text("?sv=2022-11-02&sig=x"));
    let options = EvalOptions {
        scope: Scope {
            artifacts,
            ..Scope::default()
        },
        parameters,
    };
    let deployment = evaluate_file(&main, &options, &OfflineProvider).unwrap();
    assert_eq!(
        deployment.outputs["host"],
        text("app-linked.azurewebsites.net")
    );
}

#[test]
fn unmapped_uri_stays_unresolved() {
    let directory = tempfile::tempdir().unwrap();
    let main = directory.path().join("main.json");
    write(
        &main,
        &format!(
            r#"{{"$schema": "{SCHEMA}", "resources": [
  {{"type": "Microsoft.Resources/deployments", "apiVersion": "2022-09-01", "name": "other",
    "properties": {{"mode": "Incremental", "templateLink": {{"uri": "https://example.com/t.json"}}}}}}
]}}"#
        ),
    );
    let deployment = evaluate(&main, own_location(directory.path())).unwrap();
    assert_eq!(deployment.unresolved_templates.len(), 1);
    let unresolved = &deployment.unresolved_templates[0];
    assert_eq!(unresolved.deployment, "other");
    assert_eq!(
        unresolved.looked_up_uri.as_deref(),
        Some("https://example.com/t.json")
    );
    assert_eq!(
        unresolved.artifact_prefixes,
        [ArtifactPrefix {
            uri: LOCAL_ARTIFACTS_BASE.to_owned(),
            directory: directory.path().to_path_buf(),
        }]
    );
}

#[test]
fn unresolved_link_without_artifacts_has_no_prefixes() {
    let directory = tempfile::tempdir().unwrap();
    let main = directory.path().join("main.json");
    write(&main, &quickstart_main("nested/site.json"));

    let deployment = evaluate(&main, Artifacts::default()).unwrap();
    let unresolved = &deployment.unresolved_templates[0];
    // `_artifactsLocation` is unknown without a folder for the template's own location.
    assert_eq!(unresolved.looked_up_uri, None);
    assert!(unresolved.artifact_prefixes.is_empty());
}

#[test]
fn missing_mapped_file_is_located() {
    let directory = tempfile::tempdir().unwrap();
    let main = directory.path().join("main.json");
    write(&main, &quickstart_main("nested/missing.json"));

    let error = evaluate(&main, own_location(directory.path())).unwrap_err();
    assert!(matches!(error, Error::Template(_)));
    let expected = directory.path().join("nested/missing.json");
    assert!(
        error.message().starts_with(&format!(
            "linked template `https://artifacts.subnetlock.invalid/nested/missing.json` maps to `{}`, which cannot be read",
            expected.display()
        )),
        "{}",
        error.message()
    );
    assert!(error
        .help_text()
        .unwrap()
        .contains("copy the linked template"));
    let location = error.location().unwrap();
    assert_eq!(location.file, main);
    assert_eq!(
        location.json_path,
        "$.resources[0].properties.templateLink.uri"
    );
    assert_eq!(location.line, 11);
}

#[test]
fn escaping_link_is_rejected() {
    let directory = tempfile::tempdir().unwrap();
    let folder = directory.path().join("artifacts");
    let main = folder.join("main.json");
    write(&main, &quickstart_main("..%2Fsecret.json"));
    write(&directory.path().join("secret.json"), &site_template());

    let error = evaluate(&main, own_location(&folder)).unwrap_err();
    assert!(
        error.message().contains("outside the artifacts folder"),
        "{}",
        error.message()
    );
    assert_eq!(
        error.location().unwrap().json_path,
        "$.resources[0].properties.templateLink.uri"
    );
}

#[test]
fn linked_syntax_error_points_into_linked_file() {
    let directory = tempfile::tempdir().unwrap();
    let main = directory.path().join("main.json");
    write(&main, &quickstart_main("site.json"));
    write(
        &directory.path().join("site.json"),
        "{\n  \"resources\": [\n    oops\n  ]\n}\n",
    );

    let error = evaluate(&main, own_location(directory.path())).unwrap_err();
    assert!(matches!(error, Error::Syntax(_)), "{error}");
    let location = error.location().unwrap();
    assert!(location.file.ends_with("site.json"));
    assert_eq!((location.line, location.column), (3, 5));
}

#[test]
fn linked_duplicate_keys_are_reported() {
    let directory = tempfile::tempdir().unwrap();
    let main = directory.path().join("main.json");
    write(&main, &quickstart_main("site.json"));
    let duplicated = site_template().replacen(
        r#""properties": {"enabled": true}"#,
        r#""properties": {"enabled": true, "enabled": false}"#,
        1,
    );
    write(&directory.path().join("site.json"), &duplicated);

    let deployment = evaluate(&main, own_location(directory.path())).unwrap();
    assert_eq!(deployment.duplicate_keys.len(), 1);
    assert!(deployment.duplicate_keys[0]
        .duplicate
        .file
        .ends_with("site.json"));
}

#[test]
fn self_linking_template_is_an_error() {
    let directory = tempfile::tempdir().unwrap();
    let main = directory.path().join("main.json");
    write(&main, &quickstart_main("loop.json"));
    write(
        &directory.path().join("loop.json"),
        &format!(
            r#"{{"$schema": "{SCHEMA}", "parameters": {{"site": {{"type": "string"}}}}, "resources": [
  {{"type": "Microsoft.Resources/deployments", "apiVersion": "2022-09-01", "name": "again",
    "properties": {{"mode": "Incremental",
      "templateLink": {{"uri": "[uri(deployment().properties.templateLink.uri, 'loop.json')]"}},
      "parameters": {{"site": {{"value": "x"}}}}}}}}
]}}"#
        ),
    );

    let error = evaluate(&main, own_location(directory.path())).unwrap_err();
    assert!(
        error
            .message()
            .starts_with("nested deployments are more than"),
        "{}",
        error.message()
    );
    assert!(error.location().unwrap().file.ends_with("loop.json"));
}

#[test]
fn relative_path_child_of_mapped_link() {
    // A `relativePath` link below a linked template combines with that template's URI.
    let directory = tempfile::tempdir().unwrap();
    let main = directory.path().join("main.json");
    write(&main, &quickstart_main("nested/outer.json"));
    write(
        &directory.path().join("nested/outer.json"),
        &format!(
            r#"{{"$schema": "{SCHEMA}", "parameters": {{"site": {{"type": "string"}}}},
  "variables": {{"name": "from-outer"}},
  "resources": [
  {{"type": "Microsoft.Resources/deployments", "apiVersion": "2022-09-01", "name": "inner",
    "properties": {{"mode": "Incremental", "templateLink": {{"relativePath": "modules/site.json"}},
      "parameters": {{"site": {{"value": "[parameters('site')]"}}}}}}}}
  ],
  "outputs": {{
    "host": {{"type": "string", "value": "[reference('inner').outputs.host.value]"}},
    "link": {{"type": "string", "value": "[reference('inner').outputs.link.value]"}},
    "name": {{"type": "string", "value": "[reference('inner').outputs.name.value]"}}
  }}}}"#
        ),
    );
    write(
        &directory.path().join("nested/modules/site.json"),
        &site_template(),
    );

    let deployment = evaluate(&main, own_location(directory.path())).unwrap();
    assert_eq!(
        deployment.outputs["childLink"],
        text("https://artifacts.subnetlock.invalid/nested/modules/site.json")
    );
    // Without `expressionEvaluationOptions`, a linked file still reads its own variables.
    assert_eq!(deployment.outputs["childName"], text("from-linked"));
    assert_eq!(
        deployment.outputs["host"],
        text("app-linked.azurewebsites.net")
    );
}

/// Returns a linked template, `nested/outer.json`, whose deployment `inner` links `relative`.
fn outer_with_relative_link(relative: &str) -> String {
    format!(
        r#"{{"$schema": "{SCHEMA}", "parameters": {{"site": {{"type": "string"}}}},
  "resources": [
  {{"type": "Microsoft.Resources/deployments", "apiVersion": "2022-09-01", "name": "inner",
    "properties": {{"mode": "Incremental", "templateLink": {{"relativePath": "{relative}"}},
      "parameters": {{"site": {{"value": "[parameters('site')]"}}}}}}}}
  ]}}"#
    )
}

#[test]
fn relative_path_stays_in_mapped_folder() {
    // Azure fetches the parent's URI combined with `relativePath`. Once that address leaves
    // every mapped prefix, no local folder stands for it, so the file beside the folder is
    // not read.
    let directory = tempfile::tempdir().unwrap();
    let main = directory.path().join("main.json");
    write(&main, &quickstart_main("nested/outer.json"));
    let folder = directory.path().join("artifacts");
    write(
        &folder.join("nested/outer.json"),
        &outer_with_relative_link("../../secret.json"),
    );
    write(&directory.path().join("secret.json"), &site_template());

    let mut artifacts = Artifacts::default();
    artifacts.map("https://example.com/repo/", &folder).unwrap();
    let mut parameters = Parameters::new();
    parameters.set(
        "_artifactsLocation",
        text("https://example.com/repo/main.json"),
    );
    let options = EvalOptions {
        scope: Scope {
            artifacts,
            ..Scope::default()
        },
        parameters,
    };
    let deployment = evaluate_file(&main, &options, &OfflineProvider).unwrap();
    let names: Vec<&str> = deployment
        .resources
        .iter()
        .map(|r| r.name.as_str())
        .collect();
    assert_eq!(names, ["linked", "inner"]);
    assert_eq!(deployment.unresolved_templates.len(), 1);
    let unresolved = &deployment.unresolved_templates[0];
    assert_eq!(unresolved.deployment, "inner");
    // The combined address is the one that matched no prefix.
    assert_eq!(
        unresolved.looked_up_uri.as_deref(),
        Some("https://example.com/secret.json")
    );
    assert_eq!(unresolved.artifact_prefixes.len(), 1);
    assert_eq!(
        unresolved.artifact_prefixes[0].uri,
        "https://example.com/repo/"
    );
}

#[test]
fn relative_path_uses_longest_mapping() {
    // The combined URI is mapped like any link, so a `..` that stays below a mapped prefix
    // reads the file that prefix's folder holds.
    let directory = tempfile::tempdir().unwrap();
    let main = directory.path().join("main.json");
    write(&main, &quickstart_main("nested/outer.json"));
    let outer_folder = directory.path().join("outer");
    write(
        &outer_folder.join("nested/outer.json"),
        &outer_with_relative_link("../shared/site.json"),
    );
    let shared_folder = directory.path().join("shared");
    write(&shared_folder.join("site.json"), &site_template());

    let mut artifacts = Artifacts::default();
    artifacts
        .map("https://example.com/repo/", &outer_folder)
        .unwrap();
    artifacts
        .map("https://example.com/repo/shared/", &shared_folder)
        .unwrap();
    let mut parameters = Parameters::new();
    parameters.set(
        "_artifactsLocation",
        text("https://example.com/repo/main.json"),
    );
    let options = EvalOptions {
        scope: Scope {
            artifacts,
            ..Scope::default()
        },
        parameters,
    };
    let deployment = evaluate_file(&main, &options, &OfflineProvider).unwrap();
    let site = deployment
        .resources
        .iter()
        .find(|r| r.name == "app-linked")
        .expect("the shared site is deployed");
    assert!(site.declared_at.file.starts_with(&shared_folder));
}

#[test]
fn mapped_link_error_hides_sas_token() {
    let directory = tempfile::tempdir().unwrap();
    let main = directory.path().join("main.json");
    write(&main, &quickstart_main("nested/missing.json"));
    let mut parameters = Parameters::new();
    parameters.set(
        "_artifactsLocationSasToken",
        text("?sv=2022-11-02&sig=SECRET"),
    );
    let options = EvalOptions {
        scope: Scope {
            artifacts: own_location(directory.path()),
            ..Scope::default()
        },
        parameters,
    };

    let error = evaluate_file(&main, &options, &OfflineProvider).unwrap_err();
    assert!(!error.message().contains("SECRET"), "{}", error.message());
    assert!(
        error.message().contains("nested/missing.json?…"),
        "{}",
        error.message()
    );
}

#[test]
fn relative_path_in_inner_nested_of_mapped_link() {
    // An inner-scope nested template in a mapped file has no link to combine `relativePath`
    // with, so the file beside the artifacts folder is not read.
    let directory = tempfile::tempdir().unwrap();
    let folder = directory.path().join("artifacts");
    let main = folder.join("main.json");
    write(&main, &quickstart_main("nested/outer.json"));
    write(
        &folder.join("nested/outer.json"),
        &format!(
            r#"{{"$schema": "{SCHEMA}", "parameters": {{"site": {{"type": "string"}}}},
  "resources": [
  {{"type": "Microsoft.Resources/deployments", "apiVersion": "2022-09-01", "name": "inline",
    "properties": {{"mode": "Incremental", "expressionEvaluationOptions": {{"scope": "inner"}},
      "template": {{"$schema": "{SCHEMA}", "resources": [
        {{"type": "Microsoft.Resources/deployments", "apiVersion": "2022-09-01", "name": "inner",
          "properties": {{"mode": "Incremental",
            "templateLink": {{"relativePath": "../../secret.json"}},
            "parameters": {{"site": {{"value": "app-secret"}}}}}}}}
      ]}}}}}}
  ]}}"#
        ),
    );
    write(&directory.path().join("secret.json"), &site_template());

    let deployment = evaluate(&main, own_location(&folder)).unwrap();
    assert!(
        deployment.resources.iter().all(|r| r.name != "app-secret"),
        "{:?}",
        deployment.resources
    );
    assert_eq!(deployment.unresolved_templates.len(), 1);
    assert_eq!(deployment.unresolved_templates[0].deployment, "inner");
}

#[test]
fn linked_template_reads_enclosing_resource_by_id() {
    // A linked template has a scope of its own, and Azure reads a resource by its ID from what
    // is deployed when the call runs. A resource of the parent template is deployed by then
    // when the deployment depends on it: by `dependsOn`, through another resource, or by a
    // `reference()` in the deployment's own properties.
    let directory = tempfile::tempdir().unwrap();
    let main = directory.path().join("main.json");
    let deployment = |name: &str, extra: &str| {
        format!(
            r#"{{"type": "Microsoft.Resources/deployments", "apiVersion": "2022-09-01", "name": "{name}", {extra}
      "properties": {{"mode": "Incremental",
        "templateLink": {{"uri": "[uri(deployment().properties.templateLink.uri, 'child.json')]"}}}}}}"#
        )
    };
    let implicit = r#"{"type": "Microsoft.Resources/deployments", "apiVersion": "2022-09-01", "name": "implicit",
      "properties": {"mode": "Incremental",
        "templateLink": {"uri": "[uri(deployment().properties.templateLink.uri, 'child.json')]"},
        "parameters": {"unused": {"value": "[reference('app').httpsOnly]"}}}}"#;
    write(
        &main,
        &format!(
            r#"{{"$schema": "{SCHEMA}", "resources": [
    {},
    {},
    {},
    {implicit},
    {{"type": "Microsoft.Web/sites", "apiVersion": "2022-03-01", "name": "app",
      "properties": {{"httpsOnly": true}}}},
    {{"type": "Microsoft.Web/sites/config", "apiVersion": "2022-03-01", "name": "app/web",
      "dependsOn": ["app"], "properties": {{"http20Enabled": true}}}}
  ],
  "outputs": {{
    "direct": {{"type": "bool", "value": "[reference('direct').outputs.https.value]"}},
    "transitive": {{"type": "bool", "value": "[reference('transitive').outputs.https.value]"}},
    "implicit": {{"type": "bool", "value": "[reference('implicit').outputs.https.value]"}},
    "racing": {{"type": "bool", "value": "[reference('racing').outputs.https.value]"}},
    "byName": {{"type": "bool", "value": "[reference('direct').outputs.byName.value]"}}
  }}}}"#,
            deployment(
                "direct",
                r#""dependsOn": ["[resourceId('Microsoft.Web/sites', 'app')]"],"#
            ),
            deployment("transitive", r#""dependsOn": ["app/web"],"#),
            deployment("racing", ""),
        ),
    );
    write(
        &directory.path().join("child.json"),
        &format!(
            r#"{{"$schema": "{SCHEMA}",
  "parameters": {{"unused": {{"type": "bool", "defaultValue": false}}}},
  "resources": [],
  "outputs": {{
    "https": {{"type": "bool",
      "value": "[reference(resourceId('Microsoft.Web/sites', 'app'), '2022-03-01').httpsOnly]"}},
    "byName": {{"type": "bool", "value": "[reference('app', '2022-03-01').httpsOnly]"}}
  }}}}"#
        ),
    );

    let deployment = evaluate(&main, own_location(directory.path())).unwrap();
    for name in ["direct", "transitive", "implicit"] {
        assert_eq!(deployment.outputs[name], Value::Bool(true), "{name}");
    }
    // Without a dependency the deployment may start before the site exists.
    let Value::Unknown(racing) = &deployment.outputs["racing"] else {
        panic!("racing is known: {:?}", deployment.outputs["racing"]);
    };
    assert_eq!(racing.cause, UnknownCause::Reference);
    // A bare name looks in the linked template's own resources only.
    assert!(
        deployment.outputs["byName"].is_unknown(),
        "{:?}",
        deployment.outputs["byName"]
    );
    // The parent's resources keep their own order: the site before the deployments that
    // depend on it.
    let position = |name: &str| {
        deployment
            .resources
            .iter()
            .position(|resource| resource.name == name)
            .unwrap()
    };
    assert!(position("app") < position("direct"));
    assert!(position("app/web") < position("transitive"));
}
