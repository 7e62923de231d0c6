//! Template structure: parameters, variables, copy loops, conditions, child resources,
//! dependsOn, symbolic names, nested deployments, and located errors.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use subnetlock_arm::testing::{line_column_of, utf16_with_mark};
use subnetlock_arm::{
    evaluate_str, Deployment, Error, EvalOptions, OfflineProvider, Parameters, Scope, UnknownCause,
    Value,
};

const SCHEMA: &str =
    "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#";

fn run_with(text: &str, parameters: Parameters) -> Result<Deployment, Error> {
    let options = EvalOptions {
        scope: Scope::default(),
        parameters,
    };
    evaluate_str("main.json", text, &options, &OfflineProvider)
}

fn run(text: &str) -> Deployment {
    run_with(text, Parameters::new()).unwrap_or_else(|error| panic!("{error}"))
}

fn run_err(text: &str) -> Error {
    match run_with(text, Parameters::new()) {
        Ok(_) => panic!("evaluated without error"),
        Err(error) => error,
    }
}

fn names(deployment: &Deployment) -> Vec<&str> {
    deployment
        .resources
        .iter()
        .map(|r| r.name.as_str())
        .collect()
}

fn text(value: &str) -> Value {
    Value::String(value.to_owned())
}

#[test]
fn parameters_defaults_and_overrides() {
    let template = format!(
        r#"{{"$schema": "{SCHEMA}", "contentVersion": "1.0.0.0",
  "parameters": {{
    "prefix": {{"type": "string", "defaultValue": "app"}},
    "name": {{"type": "string", "defaultValue": "[concat(parameters('prefix'), '-', resourceGroup().name)]"}},
    "count": {{"type": "int", "defaultValue": 2, "minValue": 1, "maxValue": 3}}
  }},
  "resources": [],
  "outputs": {{"name": {{"type": "string", "value": "[parameters('NAME')]"}},
              "count": {{"type": "int", "value": "[parameters('count')]"}}}} }}"#
    );
    let deployment = run(&template);
    assert_eq!(deployment.outputs["name"], text("app-subnetlock"));

    let mut parameters = Parameters::new();
    parameters.set("prefix", text("web"));
    parameters.set("count", Value::Int(3));
    let deployment = run_with(&template, parameters).unwrap();
    assert_eq!(deployment.outputs["name"], text("web-subnetlock"));
    assert_eq!(deployment.outputs["count"], Value::Int(3));
}

#[test]
fn parameter_validation_errors() {
    let template = format!(
        r#"{{"$schema": "{SCHEMA}", "contentVersion": "1.0.0.0",
  "parameters": {{
    "sku": {{"type": "string", "allowedValues": ["F1", "S1"]}}
  }},
  "resources": []}}"#
    );
    let cases = [
        (
            text("P1"),
            "parameter `sku` value `'P1'` is not one of the allowed values 'F1', 'S1'",
        ),
        (
            Value::Int(1),
            "parameter `sku` must be of type `string`, found int `1`",
        ),
    ];
    for (value, message) in cases {
        let mut parameters = Parameters::new();
        parameters.set("sku", value);
        let error = run_with(&template, parameters).unwrap_err();
        assert!(matches!(error, Error::Inline { .. }), "{error:?}");
        assert_eq!(error.message(), format!("{message}, given as `-p sku=...`"));
    }
}

#[test]
fn invalid_file_value_points_at_value() {
    let template = format!(
        r#"{{"$schema": "{SCHEMA}", "contentVersion": "1.0.0.0",
  "parameters": {{ "sku": {{"type": "string"}} }},
  "resources": []}}"#
    );
    let parameters = Parameters::parse(
        "main.parameters.json",
        "{\"parameters\": {\n  \"Sku\": {\"value\": 5}}}",
    )
    .unwrap();
    let error = run_with(&template, parameters).unwrap_err();
    assert!(matches!(error, Error::Parameter(_)));
    assert_eq!(
        error.message(),
        "parameter `sku` must be of type `string`, found int `5`"
    );
    let location = error.location().unwrap();
    assert!(location.file.ends_with("main.parameters.json"));
    assert_eq!((location.line, location.column), (2, 20));
    assert_eq!(location.json_path, "$.parameters.Sku.value");
}

#[test]
fn undeclared_parameter_is_rejected() {
    // ARM fails such a deployment: the parameters file names a parameter the template lacks.
    let template = format!(
        r#"{{"$schema": "{SCHEMA}", "contentVersion": "1.0.0.0",
  "parameters": {{ "sku": {{"type": "string", "defaultValue": "S1"}} }},
  "resources": []}}"#
    );
    let mut parameters = Parameters::new();
    parameters.set("frontDoorId", text("S1"));
    let error = run_with(&template, parameters).unwrap_err();
    assert!(matches!(error, Error::Inline { .. }), "{error:?}");
    assert_eq!(
        error.message(),
        "parameter `frontDoorId` is given as `-p frontDoorId=...` but the template does not declare it"
    );
    assert!(error.help_text().unwrap().contains("declares: sku"));

    let parameters = Parameters::parse(
        "main.parameters.json",
        "{\"parameters\": {\n  \"sku\": {\"value\": \"S1\"},\n  \"frontDoorId\": {\"value\": \"x\"}}}",
    )
    .unwrap();
    let error = run_with(&template, parameters).unwrap_err();
    assert!(matches!(error, Error::Parameter(_)));
    assert_eq!(
        error.message(),
        "parameter `frontDoorId` is in the parameters file but the template does not declare it"
    );
    let location = error.location().unwrap();
    assert!(location.file.ends_with("main.parameters.json"));
    assert_eq!((location.line, location.column), (3, 3));
    assert_eq!(location.json_path, "$.parameters.frontDoorId");
}

#[test]
fn missing_parameter_is_located() {
    let template = format!(
        "{{\"$schema\": \"{SCHEMA}\",\n  \"parameters\": {{\n    \"siteName\": {{\"type\": \"string\"}}\n  }},\n  \"resources\": []\n}}"
    );
    let error = run_err(&template);
    assert!(matches!(error, Error::Parameter(_)));
    assert_eq!(error.message(), "missing value for parameter `siteName`");
    let location = error.location().unwrap();
    assert_eq!((location.line, location.column), (3, 17));
    assert_eq!(location.json_path, "$.parameters.siteName");
    assert!(error.help_text().unwrap().contains("parameters file"));
    assert!(error.help_text().unwrap().contains("-p siteName=VALUE"));
}

#[test]
fn missing_nested_parameter_points_at_deployment() {
    let template = format!(
        r#"{{"$schema": "{SCHEMA}",
  "resources": [{{
    "type": "Microsoft.Resources/deployments", "apiVersion": "2022-09-01", "name": "inner",
    "properties": {{
      "mode": "Incremental",
      "expressionEvaluationOptions": {{ "scope": "inner" }},
      "template": {{
        "parameters": {{ "siteName": {{ "type": "string" }} }},
        "resources": []
      }}
    }}
  }}]
}}"#
    );
    let error = run_err(&template);
    assert_eq!(error.message(), "missing value for parameter `siteName`");
    let help = error.help_text().unwrap();
    assert!(help.contains("nested deployment's `parameters`"), "{help}");
    assert!(!help.contains("-p "), "{help}");
}

#[test]
fn variables_resolve_all_and_copy() {
    let template = format!(
        r#"{{"$schema": "{SCHEMA}",
  "variables": {{
    "unused": "[length('abc')]",
    "base": "[toUpper('x')]",
    "derived": "[concat(variables('base'), '-y')]",
    "copy": [{{"name": "disks", "count": 3, "input": {{"name": "[concat('d', copyIndex('disks'))]"}}}}]
  }},
  "resources": [],
  "outputs": {{"derived": {{"type": "string", "value": "[variables('derived')]"}},
              "disks": {{"type": "array", "value": "[variables('disks')]"}}}} }}"#
    );
    let deployment = run(&template);
    assert_eq!(deployment.outputs["derived"], text("X-y"));
    let disks = deployment.outputs["disks"].as_array().unwrap();
    assert_eq!(disks.len(), 3);
    assert_eq!(disks[2].get("name"), Some(&text("d2")));

    // Every variable is resolved before deployment, so one nothing reads still fails it.
    let broken = template.replace("[length('abc')]", "[div(1, 0)]");
    let error = run_err(&broken);
    assert_eq!(error.location().unwrap().json_path, "$.variables.unused");
    let broken_copy = template.replace("copyIndex('disks')", "copyIndex('nothing')");
    let error = run_err(&broken_copy);
    assert!(
        error
            .location()
            .unwrap()
            .json_path
            .starts_with("$.variables.copy"),
        "{error}"
    );
    let time = template.replace("[length('abc')]", "[utcNow()]");
    assert!(run_err(&time).to_string().contains("defaultValue"));
}

#[test]
fn variable_cycle_is_an_error() {
    let template = format!(
        r#"{{"$schema": "{SCHEMA}",
  "variables": {{"a": "[variables('b')]", "b": "[variables('a')]"}},
  "resources": [],
  "outputs": {{"a": {{"type": "string", "value": "[variables('a')]"}}}} }}"#
    );
    let error = run_err(&template);
    assert!(matches!(error, Error::Cycle(_)));
    assert_eq!(
        error.message(),
        "variable `a` depends on itself: `a` -> `b` -> `a`"
    );
    assert_eq!(error.location().unwrap().json_path, "$.variables.b");
}

#[test]
fn resource_copy_condition_and_children() {
    let template = format!(
        r#"{{"$schema": "{SCHEMA}",
  "resources": [
    {{"type": "Microsoft.Web/sites", "apiVersion": "2022-03-01",
      "name": "[concat('app', copyIndex(1))]",
      "copy": {{"name": "apps", "count": 3}},
      "condition": "[not(equals(copyIndex(), 1))]",
      "properties": {{"index": "[copyIndex()]"}},
      "resources": [
        {{"type": "config", "apiVersion": "2022-03-01", "name": "web",
          "dependsOn": ["[resourceId('Microsoft.Web/sites', concat('app', copyIndex(1)))]"],
          "properties": {{"ftpsState": "Disabled"}}}}
      ]}},
    {{"type": "Microsoft.Web/sites/config", "apiVersion": "2022-03-01", "name": "app1/appsettings",
      "dependsOn": ["apps"], "properties": {{}}}}
  ]}}"#
    );
    let deployment = run(&template);
    assert_eq!(
        names(&deployment),
        ["app1", "app1/web", "app3", "app3/web", "app1/appsettings"]
    );
    let child = &deployment.resources[1];
    assert_eq!(child.resource_type, "Microsoft.Web/sites/config");
    assert_eq!(
        child.id,
        "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/subnetlock/providers/Microsoft.Web/sites/app1/config/web"
    );
    assert_eq!(
        deployment.resources[2]
            .body
            .get_path(&["properties", "index"]),
        Some(&Value::Int(2))
    );
    assert!(deployment.resources[0].body.get("copy").is_none());
    assert!(deployment.resources[0].body.get("condition").is_none());
    let settings = &deployment.resources[4];
    assert_eq!(settings.depends_on.len(), 2, "{:?}", settings.depends_on);
}

#[test]
fn serial_copy_waits_for_previous_batch() {
    let template = format!(
        r#"{{"$schema": "{SCHEMA}",
  "resources": [
    {{"type": "Microsoft.Web/sites", "apiVersion": "2022-03-01",
      "name": "[concat('app', copyIndex())]",
      "copy": {{"name": "apps", "count": 4, "mode": "serial", "batchSize": 2}}}}
  ]}}"#
    );
    let deployment = run(&template);
    let ids: Vec<&str> = deployment.resources.iter().map(|r| r.id.as_str()).collect();
    assert!(deployment.resources[0].depends_on.is_empty());
    assert!(deployment.resources[1].depends_on.is_empty());
    assert_eq!(deployment.resources[2].depends_on, [ids[0], ids[1]]);
    assert_eq!(deployment.resources[3].depends_on, [ids[0], ids[1]]);
}

#[test]
fn property_copy() {
    let template = format!(
        r#"{{"$schema": "{SCHEMA}",
  "resources": [
    {{"type": "Microsoft.Web/sites/config", "apiVersion": "2022-03-01", "name": "app/web",
      "properties": {{
        "keep": true,
        "copy": [{{"name": "ipSecurityRestrictions", "count": 2,
                   "input": {{"ipAddress": "[format('10.0.{{0}}.0/24', copyIndex('ipSecurityRestrictions'))]",
                              "priority": "[add(100, copyIndex('ipSecurityRestrictions'))]"}}}}]
      }}}}
  ]}}"#
    );
    let deployment = run(&template);
    let properties = deployment.resources[0].properties().unwrap();
    assert_eq!(properties.get("keep"), Some(&Value::Bool(true)));
    let rules = properties
        .get("ipSecurityRestrictions")
        .unwrap()
        .as_array()
        .unwrap();
    assert_eq!(rules[1].get("ipAddress"), Some(&text("10.0.1.0/24")));
    assert_eq!(rules[1].get("priority"), Some(&Value::Int(101)));
    assert!(properties.get("copy").is_none());
}

#[test]
fn depends_on_cycle_names_the_cycle() {
    let template = format!(
        "{{\"$schema\": \"{SCHEMA}\",\n  \"resources\": [\n    {{\"type\": \"Microsoft.Web/sites\", \"apiVersion\": \"2022-03-01\", \"name\": \"a\", \"dependsOn\": [\"b\"]}},\n    {{\"type\": \"Microsoft.Web/sites\", \"apiVersion\": \"2022-03-01\", \"name\": \"b\", \"dependsOn\": [\"[resourceId('Microsoft.Web/sites', 'a')]\"]}}\n  ]}}"
    );
    let error = run_err(&template);
    assert!(matches!(error, Error::Cycle(_)));
    assert_eq!(
        error.message(),
        "resources depend on each other in a cycle: `a` -> `b` -> `a`"
    );
    let location = error.location().unwrap();
    // The entry of `a` that names `b`, the next resource of the cycle.
    assert_eq!(location.json_path, "$.resources[0].dependsOn[0]");
    assert_eq!((location.line, location.column), (3, 92));
    assert!(
        error.help_text().unwrap().contains("circular dependency"),
        "{error}"
    );
}

#[test]
fn depends_on_itself_is_an_error() {
    // Each case: the `dependsOn` entry of `a`, and whether `a` is in a copy loop `loop`.
    let cases = [
        ("a", false),
        ("Microsoft.Web/sites/a", false),
        ("[resourceId('Microsoft.Web/sites', 'a')]", false),
        ("loop", true),
    ];
    for (entry, in_loop) in cases {
        let (name, copy) = if in_loop {
            (
                "[concat('a', copyIndex())]",
                ", \"copy\": {\"name\": \"loop\", \"count\": 2}",
            )
        } else {
            ("a", "")
        };
        let template = format!(
            "{{\"$schema\": \"{SCHEMA}\",\n  \"resources\": [\n    {{\"type\": \"Microsoft.Web/serverfarms\", \"apiVersion\": \"2022-03-01\", \"name\": \"plan\"}},\n    {{\"type\": \"Microsoft.Web/sites\", \"apiVersion\": \"2022-03-01\", \"name\": \"{name}\"{copy},\n     \"dependsOn\": [\"plan\", \"{entry}\"]}}\n  ]}}"
        );

        let error = run_err(&template);

        assert!(matches!(error, Error::Cycle(_)), "{entry}: {error:?}");
        assert!(
            error.message().contains("names the resource itself (`"),
            "{entry}: {error}"
        );
        assert!(
            error.message().contains("circular dependency detected"),
            "{entry}: {error}"
        );
        let location = error.location().unwrap();
        assert_eq!(location.json_path, "$.resources[1].dependsOn[1]", "{entry}");
        let line = template.lines().nth(4).unwrap();
        let column = line[..line.find(&format!("\"{entry}\"")).unwrap()]
            .chars()
            .count()
            + 1;
        assert_eq!((location.line, location.column), (5, column), "{entry}");
        assert!(
            error.help_text().unwrap().starts_with("remove `"),
            "{entry}: {error}"
        );
    }
}

#[test]
fn reference_of_declared_resource_orders_and_reads_properties() {
    let template = format!(
        r#"{{"$schema": "{SCHEMA}",
  "resources": [
    {{"type": "Microsoft.Web/sites", "apiVersion": "2022-03-01", "name": "front",
      "properties": {{"backend": "[reference(resourceId('Microsoft.Web/sites', 'back')).serverFarmId]",
                      "host": "[reference('back').defaultHostName]"}}}},
    {{"type": "Microsoft.Web/sites", "apiVersion": "2022-03-01", "name": "back",
      "properties": {{"serverFarmId": "plan-1"}}}}
  ]}}"#
    );
    let deployment = run(&template);
    assert_eq!(names(&deployment), ["back", "front"]);
    let front = deployment.resources[1].properties().unwrap();
    assert_eq!(front.get("backend"), Some(&text("plan-1")));
    let Some(Value::Unknown(host)) = front.get("host") else {
        panic!("host is known");
    };
    assert_eq!(host.cause, UnknownCause::Reference);
    assert_eq!(host.expression, "reference('back').defaultHostName");
}

#[test]
fn reference_cycle_is_an_error() {
    let template = format!(
        r#"{{"$schema": "{SCHEMA}",
  "resources": [
    {{"type": "Microsoft.Web/sites", "apiVersion": "2022-03-01", "name": "a",
      "properties": {{"peer": "[reference('b').x]"}}}},
    {{"type": "Microsoft.Web/sites", "apiVersion": "2022-03-01", "name": "b",
      "properties": {{"peer": "[reference('a').x]"}}}}
  ]}}"#
    );
    let error = run_err(&template);
    assert!(matches!(error, Error::Cycle(_)));
    assert_eq!(
        error.message(),
        "resources refer to each other in a cycle: `a` -> `b` -> `a`"
    );
    assert_eq!(
        error.location().unwrap().json_path,
        "$.resources[1].properties.peer"
    );
}

#[test]
fn depends_on_by_type_and_name() {
    let template = format!(
        r#"{{"$schema": "{SCHEMA}",
  "resources": [
    {{"type": "Microsoft.Web/sites", "apiVersion": "2022-03-01", "name": "late",
      "dependsOn": ["Microsoft.Web/serverfarms/plan"]}},
    {{"type": "Microsoft.Web/serverfarms", "apiVersion": "2022-03-01", "name": "plan"}}
  ]}}"#
    );
    let deployment = run(&template);
    assert_eq!(names(&deployment), ["plan", "late"]);
    let plan_id = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/subnetlock/providers/Microsoft.Web/serverfarms/plan";
    assert_eq!(deployment.resources[1].depends_on, [plan_id]);
}

#[test]
fn symbolic_names_and_existing() {
    let template = r#"{"$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
  "languageVersion": "2.0",
  "resources": {
    "plan": {"existing": true, "type": "Microsoft.Web/serverfarms", "apiVersion": "2022-03-01", "name": "shared-plan"},
    "site": {"type": "Microsoft.Web/sites", "apiVersion": "2022-03-01", "name": "app",
             "dependsOn": ["plan"],
             "properties": {"serverFarmId": "[resourceId('Microsoft.Web/serverfarms', 'shared-plan')]",
                            "planState": "[reference('plan').status]"}}
  },
  "outputs": {"id": {"type": "string", "value": "[reference('site', '2022-03-01', 'Full').resourceId]"}}}"#;
    let deployment = run(template);
    assert_eq!(names(&deployment), ["shared-plan", "app"]);
    assert!(deployment.resources[0].existing);
    assert_eq!(
        deployment.resources[1].symbolic_name.as_deref(),
        Some("site")
    );
    let state = deployment.resources[1]
        .properties()
        .unwrap()
        .get("planState")
        .unwrap();
    assert!(state.is_unknown());
    assert_eq!(
        deployment.outputs["id"],
        text("/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/subnetlock/providers/Microsoft.Web/sites/app")
    );
}

#[test]
fn nested_inner_deployment_outputs() {
    let template = format!(
        r#"{{"$schema": "{SCHEMA}",
  "parameters": {{"outerName": {{"type": "string", "defaultValue": "outer-value"}}}},
  "resources": [
    {{"type": "Microsoft.Resources/deployments", "apiVersion": "2022-09-01", "name": "module",
      "properties": {{
        "mode": "Incremental",
        "expressionEvaluationOptions": {{"scope": "inner"}},
        "parameters": {{"siteName": {{"value": "[parameters('outerName')]"}}}},
        "template": {{
          "$schema": "{SCHEMA}",
          "parameters": {{"siteName": {{"type": "string"}}}},
          "resources": [
            {{"type": "Microsoft.Web/sites", "apiVersion": "2022-03-01", "name": "[parameters('siteName')]", "properties": {{}}}}
          ],
          "outputs": {{"siteId": {{"type": "string", "value": "[resourceId('Microsoft.Web/sites', parameters('siteName'))]"}},
                      "deploymentName": {{"type": "string", "value": "[deployment().name]"}}}}
        }}
      }}}}
  ],
  "outputs": {{"fromModule": {{"type": "string", "value": "[reference('module').outputs.siteId.value]"}},
              "name": {{"type": "string", "value": "[reference('module').outputs.deploymentName.value]"}}}}}}"#
    );
    let deployment = run(&template);
    assert_eq!(names(&deployment), ["module", "outer-value"]);
    assert_eq!(deployment.resources[1].deployment_path, ["module"]);
    assert!(deployment.resources[0]
        .properties()
        .unwrap()
        .get("template")
        .is_some());
    assert_eq!(
        deployment.outputs["fromModule"],
        text("/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/subnetlock/providers/Microsoft.Web/sites/outer-value")
    );
    assert_eq!(deployment.outputs["name"], text("module"));
}

#[test]
fn nested_outer_deployment_uses_parent_context() {
    let template = format!(
        r#"{{"$schema": "{SCHEMA}",
  "variables": {{"site": "from-parent"}},
  "resources": [
    {{"type": "Microsoft.Resources/deployments", "apiVersion": "2022-09-01", "name": "outer",
      "properties": {{
        "mode": "Incremental",
        "template": {{
          "$schema": "{SCHEMA}",
          "resources": [
            {{"type": "Microsoft.Web/sites", "apiVersion": "2022-03-01", "name": "[variables('site')]"}}
          ]
        }}
      }}}}
  ]}}"#
    );
    let deployment = run(&template);
    assert_eq!(names(&deployment), ["outer", "from-parent"]);
}

#[test]
fn nested_outer_deployment_reads_parent_resources() {
    let template = format!(
        r#"{{"$schema": "{SCHEMA}",
  "resources": [
    {{"type": "Microsoft.Resources/deployments", "apiVersion": "2022-09-01", "name": "outer",
      "properties": {{
        "mode": "Incremental",
        "template": {{
          "$schema": "{SCHEMA}",
          "resources": [
            {{"type": "Microsoft.Web/sites/config", "apiVersion": "2022-03-01", "name": "app/web",
              "properties": {{"plan": "[reference('app').serverFarmId]"}}}}
          ]
        }}
      }}}},
    {{"type": "Microsoft.Web/sites", "apiVersion": "2022-03-01", "name": "app",
      "properties": {{"serverFarmId": "plan-7"}}}}
  ]}}"#
    );
    let deployment = run(&template);
    assert_eq!(names(&deployment), ["app", "outer", "app/web"]);
    let config = deployment.resources[2].properties().unwrap();
    assert_eq!(config.get("plan"), Some(&text("plan-7")));
}

#[test]
fn remote_template_is_reported_not_guessed() {
    let template = format!(
        r#"{{"$schema": "{SCHEMA}",
  "resources": [
    {{"type": "Microsoft.Resources/deployments", "apiVersion": "2022-09-01", "name": "linked",
      "properties": {{"mode": "Incremental",
        "templateLink": {{"uri": "https://example.com/t.json"}}}}}}
  ],
  "outputs": {{"ip": {{"type": "string", "value": "[reference('linked').outputs.ip.value]"}}}}}}"#
    );
    let deployment = run(&template);
    assert_eq!(deployment.unresolved_templates.len(), 1);
    assert_eq!(deployment.unresolved_templates[0].deployment, "linked");
    let Value::Unknown(unknown) = &deployment.outputs["ip"] else {
        panic!("output is known");
    };
    assert_eq!(unknown.cause, UnknownCause::RemoteTemplate);
}

#[test]
fn relative_path_template_is_read_from_disk() {
    let directory = std::env::temp_dir().join(format!("subnetlock-arm-{}", std::process::id()));
    std::fs::create_dir_all(directory.join("modules")).unwrap();
    let child = format!(
        r#"{{"$schema": "{SCHEMA}", "parameters": {{"n": {{"type": "string"}}}},
  "resources": [{{"type": "Microsoft.Web/sites", "apiVersion": "2022-03-01", "apiVersion": "2022-09-01", "name": "[parameters('n')]"}}]}}"#
    );
    std::fs::write(directory.join("modules/site.json"), child).unwrap();
    let main = format!(
        r#"{{"$schema": "{SCHEMA}",
  "resources": [
    {{"type": "Microsoft.Resources/deployments", "apiVersion": "2022-09-01", "name": "site",
      "properties": {{"mode": "Incremental", "expressionEvaluationOptions": {{"scope": "inner"}},
        "templateLink": {{"relativePath": "modules/site.json"}},
        "parameters": {{"n": {{"value": "from-disk"}}}}}}}},
    {{"type": "Microsoft.Resources/deployments", "apiVersion": "2022-09-01", "name": "again",
      "properties": {{"mode": "Incremental", "expressionEvaluationOptions": {{"scope": "inner"}},
        "templateLink": {{"relativePath": "./modules/../modules/site.json"}},
        "parameters": {{"n": {{"value": "second"}}}}}}}}
  ]}}"#
    );
    std::fs::write(directory.join("main.json"), main).unwrap();
    let options = EvalOptions::default();
    let deployment =
        subnetlock_arm::evaluate_file(&directory.join("main.json"), &options, &OfflineProvider)
            .unwrap();
    assert_eq!(names(&deployment), ["site", "from-disk", "again", "second"]);
    // A duplicate key in the linked template is reported in that file, once, however the
    // file is linked.
    assert_eq!(deployment.duplicate_keys.len(), 1);
    assert!(deployment.duplicate_keys[0]
        .duplicate
        .file
        .ends_with("modules/site.json"));
    std::fs::remove_dir_all(&directory).unwrap();
}

#[test]
fn later_case_variant_wins_everywhere() {
    let deployment = run(&format!(
        r#"{{"$schema": "{SCHEMA}",
  "parameters": {{"n": {{"type": "string", "defaultValue": "first"}},
                  "N": {{"type": "string", "defaultValue": "second"}}}},
  "variables": {{
    "copy": [{{"name": "a", "count": 1, "input": "[parameters('n')]"}}],
    "copy": [{{"name": "b", "count": 2, "input": "[copyIndex('b')]"}}]
  }},
  "resources": [
    {{"type": "Microsoft.Web/sites", "apiVersion": "2022-03-01", "name": "app",
      "properties": {{"httpsOnly": false}},
      "Properties": {{"httpsOnly": true}}}}
  ],
  "outputs": {{
    "a": {{"type": "array", "value": "[variables('a')]"}},
    "b": {{"type": "array", "value": "[variables('b')]"}}
  }}}}"#
    ));
    let site = &deployment.resources[0];
    assert_eq!(
        site.body.get_path(&["properties", "httpsOnly"]),
        Some(&Value::Bool(true))
    );
    // Both sibling variable copies expand, and the later parameter declaration is read.
    assert_eq!(deployment.outputs["a"], Value::Array(vec![text("second")]));
    assert_eq!(
        deployment.outputs["b"],
        Value::Array(vec![Value::Int(0), Value::Int(1)])
    );
}

#[test]
fn duplicate_parameter_values_are_reported() {
    let parameters = Parameters::parse(
        "main.parameters.json",
        r#"{"parameters": {"n": {"value": "first"},
  "N": {"value": "second"}}}"#,
    )
    .unwrap();
    let deployment = run_with(
        &format!(
            r#"{{"$schema": "{SCHEMA}", "parameters": {{"n": {{"type": "string"}}}},
  "resources": [], "outputs": {{"n": {{"type": "string", "value": "[parameters('n')]"}}}}}}"#
        ),
        parameters,
    )
    .unwrap();
    assert_eq!(deployment.outputs["n"], text("second"));
    assert_eq!(deployment.duplicate_keys.len(), 1);
    let duplicate = &deployment.duplicate_keys[0];
    assert_eq!(duplicate.key, "N");
    assert!(duplicate.duplicate.file.ends_with("main.parameters.json"));
    assert_eq!(duplicate.duplicate.line, 2);
}

#[test]
fn duplicate_keys_are_reported_and_later_wins() {
    let deployment = run(&format!(
        r#"{{"$schema": "{SCHEMA}",
  "resources": [
    {{"type": "Microsoft.Web/sites", "apiVersion": "2022-03-01", "name": "app",
      "properties": {{
        "httpsOnly": false,
        "httpsOnly": true,
        "clientCertEnabled": true,
        "ClientCertEnabled": false,
        "copy": [{{"name": "first", "count": 1, "input": 1}}],
        "copy": [{{"name": "second", "count": 1, "input": 2}}]
      }}}}
  ]}}"#
    ));
    let properties = deployment.resources[0].body.get("properties").unwrap();
    assert_eq!(properties.get("httpsOnly"), Some(&Value::Bool(true)));
    assert_eq!(
        properties.get("clientCertEnabled"),
        Some(&Value::Bool(false))
    );
    // ARM expands every sibling property copy, so two `copy` arrays are not a duplicate.
    assert!(properties.get("first").is_some());
    assert!(properties.get("second").is_some());

    let reported: Vec<(&str, usize, usize)> = deployment
        .duplicate_keys
        .iter()
        .map(|duplicate| {
            (
                duplicate.key.as_str(),
                duplicate.first.line,
                duplicate.duplicate.line,
            )
        })
        .collect();
    assert_eq!(reported, [("httpsOnly", 5, 6), ("ClientCertEnabled", 7, 8)]);
    assert_eq!(
        deployment.duplicate_keys[1].duplicate.json_path,
        "$.resources[0].properties.ClientCertEnabled"
    );
}

#[test]
fn missing_relative_path_template_is_located() {
    let template = format!(
        r#"{{"$schema": "{SCHEMA}",
  "resources": [
    {{"type": "Microsoft.Resources/deployments", "apiVersion": "2022-09-01", "name": "site",
      "properties": {{"mode": "Incremental",
        "templateLink": {{"relativePath": "does-not-exist/site.json"}}}}}}
  ]}}"#
    );
    let error = run_err(&template);
    assert!(matches!(error, Error::Template(_)));
    assert!(
        error
            .message()
            .starts_with("cannot read the linked template `does-not-exist/site.json`"),
        "{}",
        error.message()
    );
    assert_eq!(error.location().unwrap().json_path, "$.resources[0]");
}

#[test]
fn user_defined_functions() {
    let template = format!(
        r#"{{"$schema": "{SCHEMA}",
  "functions": [{{"namespace": "contoso", "members": {{
    "uniqueName": {{"parameters": [{{"name": "namePrefix", "type": "string"}}],
                    "output": {{"type": "string", "value": "[concat(toLower(parameters('namePrefix')), uniqueString(resourceGroup().id))]"}}}}}}}}],
  "resources": [],
  "outputs": {{"name": {{"type": "string", "value": "[contoso.uniqueName('ABC')]"}}}}}}"#
    );
    let deployment = run(&template);
    assert_eq!(deployment.outputs["name"], text("abcyobmxbvmtplck"));
}

#[test]
fn output_copy_and_condition() {
    let template = format!(
        r#"{{"$schema": "{SCHEMA}",
  "resources": [],
  "outputs": {{
    "list": {{"type": "array", "copy": {{"count": 2, "input": "[concat('n', copyIndex())]"}}}},
    "hidden": {{"type": "string", "condition": "[false()]", "value": "x"}}
  }}}}"#
    );
    let deployment = run(&template);
    assert_eq!(
        deployment.outputs["list"],
        Value::Array(vec![text("n0"), text("n1")])
    );
    assert!(!deployment.outputs.contains_key("hidden"));
}

#[test]
fn expression_keys_are_evaluated() {
    let template = format!(
        r#"{{"$schema": "{SCHEMA}", "resources": [],
  "outputs": {{"o": {{"type": "object", "value": {{"[string('copy')]": [1], "[concat('k', '1')]": 2}}}}}}}}"#
    );
    let deployment = run(&template);
    let object = deployment.outputs["o"].as_object().unwrap();
    assert_eq!(object.get("copy"), Some(&Value::Array(vec![Value::Int(1)])));
    assert_eq!(object.get("k1"), Some(&Value::Int(2)));
}

#[test]
fn bad_json_is_located() {
    let error = run_err("{\n  \"a\": 1\n  \"b\": 2\n}");
    assert!(matches!(error, Error::Syntax(_)));
    assert_eq!(
        error.message(),
        "expected `,` or `}` after the property value"
    );
    let location = error.location().unwrap();
    assert_eq!((location.line, location.column), (3, 3));
    assert_eq!(location.json_path, "$");
}

#[test]
fn unterminated_expression_string_is_located() {
    let template = format!(
        "{{\"$schema\": \"{SCHEMA}\",\n  \"resources\": [],\n  \"outputs\": {{\"o\": {{\"type\": \"string\",\n    \"value\": \"[concat('a, 'b')]\"}}}}}}"
    );
    let error = run_err(&template);
    assert!(matches!(error, Error::Expression(_)));
    assert!(
        error.message().starts_with("expected `,` or `)`")
            || error.message().contains("unterminated"),
        "{}",
        error.message()
    );
    let location = error.location().unwrap();
    assert_eq!((location.line, location.column), (4, 14));
    assert_eq!(location.json_path, "$.outputs.o.value");
}

#[test]
fn unterminated_string_literal_message() {
    let template = format!(
        r#"{{"$schema": "{SCHEMA}", "resources": [], "outputs": {{"o": {{"type": "string", "value": "[concat('abc)]"}}}}}}"#
    );
    let error = run_err(&template);
    assert_eq!(
        error.message(),
        "unterminated string literal in expression in `[concat('abc)]`"
    );
}

#[test]
fn unknown_function_is_located() {
    let template = format!(
        "{{\"$schema\": \"{SCHEMA}\",\n  \"resources\": [\n    {{\"type\": \"Microsoft.Web/sites\", \"apiVersion\": \"2022-03-01\",\n     \"name\": \"[fooBar(1)]\"}}]}}"
    );
    let error = run_err(&template);
    assert!(matches!(error, Error::Function(_)));
    assert_eq!(error.message(), "unknown function `fooBar`");
    let location = error.location().unwrap();
    assert_eq!((location.line, location.column), (4, 14));
    assert_eq!(location.json_path, "$.resources[0].name");
}

#[test]
fn wrong_argument_type_is_located() {
    let template = format!(
        r#"{{"$schema": "{SCHEMA}", "resources": [], "outputs": {{"o": {{"type": "int", "value": "[add(1, 'x')]"}}}}}}"#
    );
    let error = run_err(&template);
    assert!(matches!(error, Error::Function(_)));
    assert_eq!(
        error.message(),
        "argument 2 of `add` must be an int, found string `'x'`"
    );
    assert_eq!(error.location().unwrap().json_path, "$.outputs.o.value");
}

#[test]
fn missing_property_is_an_error() {
    let template = format!(
        r#"{{"$schema": "{SCHEMA}", "resources": [], "outputs": {{"o": {{"type": "string", "value": "[resourceGroup().nope]"}}}}}}"#
    );
    let error = run_err(&template);
    assert!(
        error
            .message()
            .starts_with("property `nope` does not exist"),
        "{}",
        error.message()
    );
}

#[test]
fn reference_in_variables_is_rejected() {
    let template = format!(
        r#"{{"$schema": "{SCHEMA}", "variables": {{"v": "[reference('x').y]"}}, "resources": [],
  "outputs": {{"o": {{"type": "string", "value": "[variables('v')]"}}}}}}"#
    );
    let error = run_err(&template);
    assert_eq!(error.message(), "`reference` is not allowed in variables");
}

#[test]
fn diagnostic_renders_source_excerpt() {
    let template = format!(
        "{{\"$schema\": \"{SCHEMA}\",\n  \"resources\": [],\n  \"outputs\": {{\"o\": {{\"type\": \"int\", \"value\": \"[add(1, 'x')]\"}}}}}}"
    );
    let error = run_err(&template);
    let mut rendered = String::new();
    miette::NarratableReportHandler::new()
        .render_report(&mut rendered, &error)
        .unwrap();
    assert!(rendered.contains("[add(1, 'x')]"), "{rendered}");
    assert!(rendered.contains("main.json"), "{rendered}");
    assert!(rendered.contains("arm::function"), "{rendered}");
}

#[test]
fn locate_inside_nested_template() {
    let template = format!(
        "{{\"$schema\": \"{SCHEMA}\",\n  \"resources\": [\n    {{\"type\": \"Microsoft.Resources/deployments\", \"apiVersion\": \"2022-09-01\", \"name\": \"m\",\n      \"properties\": {{\"mode\": \"Incremental\", \"expressionEvaluationOptions\": {{\"scope\": \"inner\"}},\n        \"template\": {{\"resources\": [\n          {{\"type\": \"Microsoft.Web/sites/config\", \"apiVersion\": \"2022-03-01\", \"name\": \"a/web\",\n            \"properties\": {{\"ipSecurityRestrictions\": [{{\"ipAddress\": \"10.0.0.0/8\"}}]}}}}]}}}}}}\n  ]}}"
    );
    let deployment = run(&template);
    let config = &deployment.resources[1];
    assert_eq!(config.deployment_path, ["m"]);
    assert_eq!(
        config.declared_at.json_path,
        "$.resources[0].properties.template.resources[0]"
    );
    let location = deployment.locate(
        config,
        &["properties", "ipSecurityRestrictions", "0", "ipAddress"],
    );
    assert_eq!(location.line, 7);
    assert_eq!(
        location.json_path,
        "$.resources[0].properties.template.resources[0].properties.ipSecurityRestrictions[0].ipAddress"
    );
}

/// Returns a template with one plan, named by `name`, whose tag before the name makes a column in
/// characters differ from one in bytes or in UTF-16 code units.
fn plan_template(name: &str) -> String {
    format!(
        "{{\n  \"$schema\": \"{SCHEMA}\",\n  \"parameters\": {{\"name\": {{\"type\": \"string\", \"defaultValue\": \"plan\"}}}},\n  \"resources\": [\n    {{\"type\": \"Microsoft.Web/serverfarms\", \"apiVersion\": \"2022-03-01\", \"tags\": {{\"é😀\": \"x\"}}, \"name\": \"{name}\"}}\n  ]\n}}"
    )
}

#[test]
fn utf16_template_and_parameters_read() {
    let template = plan_template("[parameters('name')]");
    let parameters = "{\"parameters\": {\"name\": {\"value\": \"plan-é😀\"}}}";
    let dir = tempfile::tempdir().unwrap();
    let template_path = dir.path().join("azuredeploy.json");
    let parameters_path = dir.path().join("azuredeploy.parameters.json");
    std::fs::write(&template_path, utf16_with_mark(&template, true)).unwrap();
    std::fs::write(&parameters_path, utf16_with_mark(parameters, false)).unwrap();

    let options = EvalOptions {
        scope: Scope::default(),
        parameters: Parameters::from_file(&parameters_path).unwrap(),
    };
    let deployment =
        subnetlock_arm::evaluate_file(&template_path, &options, &OfflineProvider).unwrap();

    assert_eq!(names(&deployment), ["plan-é😀"]);
    let location = deployment.locate(&deployment.resources[0], &["name"]);
    assert_eq!(
        (location.line, location.column),
        line_column_of(&template, "\"[parameters")
    );
}

#[test]
fn utf16_template_error_counts_characters() {
    let template = plan_template("[concat('a' 'b')]");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("azuredeploy.json");
    std::fs::write(&path, utf16_with_mark(&template, true)).unwrap();

    let error = subnetlock_arm::evaluate_file(&path, &EvalOptions::default(), &OfflineProvider)
        .unwrap_err();

    let location = error.location().unwrap_or_else(|| panic!("{error}"));
    assert_eq!(location.file, path);
    assert_eq!(location.json_path, "$.resources[0].name", "{error}");
    // The error points at the string, whose column in bytes would be 4 more, and in UTF-16
    // code units 1 more.
    let (line, column) = line_column_of(&template, "\"[concat");
    assert_eq!((location.line, location.column), (line, column), "{error}");
}

#[test]
fn utf16_without_mark_is_encoding_error() {
    let template = format!("{{\"$schema\": \"{SCHEMA}\", \"resources\": []}}");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("azuredeploy.json");
    let bytes: Vec<u8> = template.encode_utf16().flat_map(u16::to_le_bytes).collect();
    std::fs::write(&path, bytes).unwrap();

    let error = subnetlock_arm::evaluate_file(&path, &EvalOptions::default(), &OfflineProvider)
        .unwrap_err();

    assert!(matches!(error, Error::Encoding(_)), "{error:?}");
    assert_eq!(
        error.to_string(),
        format!(
            "`{}` is UTF-16LE text without a byte order mark",
            path.display()
        )
    );
    assert!(error.help_text().unwrap_or_default().contains("as UTF-8"));
}

#[test]
fn missing_template_file_is_io_error() {
    let path = std::path::Path::new("/nonexistent/subnetlock/template.json");
    let error =
        subnetlock_arm::evaluate_file(path, &EvalOptions::default(), &OfflineProvider).unwrap_err();
    assert!(matches!(error, Error::Io { .. }));
    assert!(error
        .to_string()
        .starts_with("cannot read `/nonexistent/subnetlock/template.json`"));
}

#[test]
fn inner_scope_reads_parent_resource_by_id() {
    // An inner-scope nested template has a scope of its own, like a linked one: it reads a
    // parent resource by ID once its deployment depends on that resource.
    let nested = |name: &str, depends_on: &str| {
        format!(
            r#"{{"type": "Microsoft.Resources/deployments", "apiVersion": "2022-09-01", "name": "{name}",
      "dependsOn": [{depends_on}],
      "properties": {{"mode": "Incremental", "expressionEvaluationOptions": {{"scope": "inner"}},
        "template": {{"$schema": "{SCHEMA}", "resources": [],
          "outputs": {{"ip": {{"type": "string",
            "value": "[reference(resourceId('Microsoft.Network/publicIPAddresses', 'pip'), '2023-04-01').ipAddress]"}}}}}}}}}}"#
        )
    };
    let deployment = run(&format!(
        r#"{{"$schema": "{SCHEMA}", "resources": [
    {},
    {},
    {{"type": "Microsoft.Network/publicIPAddresses", "apiVersion": "2023-04-01", "name": "pip",
      "properties": {{"ipAddress": "203.0.113.9"}}}}
  ],
  "outputs": {{
    "after": {{"type": "string", "value": "[reference('after').outputs.ip.value]"}},
    "racing": {{"type": "string", "value": "[reference('racing').outputs.ip.value]"}}
  }}}}"#,
        nested("after", r#""pip""#),
        nested("racing", ""),
    ));
    assert_eq!(deployment.outputs["after"], text("203.0.113.9"));
    assert!(
        deployment.outputs["racing"].is_unknown(),
        "{:?}",
        deployment.outputs["racing"]
    );
}

/// Builds a template whose resource `first` reads `r{length - 1}`, which reads
/// `r{length - 2}`, and so on down to `r0`: evaluating `first` goes `length + 1` resources deep. Each read is
/// wrapped in `nesting` calls of `if()`.
fn reference_chain(length: usize, nesting: usize) -> String {
    let read = |index: usize| {
        let mut expression = format!("reference('r{index}').ipAddress");
        for _ in 0..nesting {
            expression = format!("if(true(), {expression}, 'x')");
        }
        format!("[{expression}]")
    };
    let pip = |name: &str, address: &str| {
        format!(
            r#"{{"type": "Microsoft.Network/publicIPAddresses", "apiVersion": "2023-04-01", "name": "{name}", "properties": {{"ipAddress": "{address}"}}}}"#
        )
    };
    let mut resources = vec![pip("first", &read(length - 1)), pip("r0", "203.0.113.9")];
    for index in 1..length {
        resources.push(pip(&format!("r{index}"), &read(index - 1)));
    }
    format!(
        r#"{{"$schema": "{SCHEMA}", "resources": [{}],
  "outputs": {{"first": {{"type": "string", "value": "[reference('first').ipAddress]"}}}}}}"#,
        resources.join(",\n")
    )
}

#[test]
fn reference_chain_at_depth_limit() {
    // Evaluation follows a chain of at most 4,000 resources, in a test thread's small stack.
    let deployment = run(&reference_chain(3999, 0));
    assert_eq!(deployment.outputs["first"], text("203.0.113.9"));

    let error = run_err(&reference_chain(4000, 0));
    assert!(matches!(error, Error::Template(_)), "{error:?}");
    let Error::Template(located) = &error else {
        unreachable!()
    };
    assert_eq!(
        located.message,
        "evaluating `r0` needs a longer chain of resources that each read or wait for the next than subnetlock follows: at most 4000"
    );
    // The call that would go one resource deeper: `r1` reads `r0`.
    assert_eq!(
        located.location.json_path,
        "$.resources[2].properties.ipAddress"
    );
}

#[test]
fn nested_expressions_in_chain_do_not_overflow() {
    // Deeply nested expressions make each resource of the chain take more stack, and the
    // chain still evaluates in a test thread's small stack.
    let deployment = run(&reference_chain(200, 240));
    assert_eq!(deployment.outputs["first"], text("203.0.113.9"));
}

#[test]
fn parent_reads_by_id_chain_is_bounded() {
    // Each deployment of a serial loop reads a parent resource by ID, and `first` reads the
    // last deployment. Resolving the read walks what each deployment waits for, evaluating it
    // first, so the chain goes through every deployment of the loops.
    let loops = 6;
    let mut resources = vec![
        format!(
            r#"{{"type": "Microsoft.Network/publicIPAddresses", "apiVersion": "2023-04-01", "name": "first", "properties": {{"ipAddress": "[reference('l{}-799').outputs.x.value]"}}}}"#,
            loops - 1
        ),
        r#"{"type": "Microsoft.Network/publicIPAddresses", "apiVersion": "2023-04-01", "name": "pip", "properties": {"ipAddress": "203.0.113.9"}}"#.to_owned(),
        r#"{"type": "Microsoft.Network/publicIPAddresses", "apiVersion": "2023-04-01", "name": "other", "properties": {"ipAddress": "203.0.113.8"}}"#.to_owned(),
    ];
    for index in 0..loops {
        let previous = match index {
            0 => "'pip'".to_owned(),
            _ => format!("'l{}-799'", index - 1),
        };
        resources.push(format!(
            r#"{{"type": "Microsoft.Resources/deployments", "apiVersion": "2022-09-01", "name": "[concat('l{index}-', copyIndex())]",
  "copy": {{"name": "loop{index}", "count": 800, "mode": "serial", "batchSize": 1}},
  "dependsOn": ["[if(equals(copyIndex(), 0), {previous}, 'other')]"],
  "properties": {{"mode": "Incremental", "expressionEvaluationOptions": {{"scope": "inner"}},
    "template": {{"$schema": "{SCHEMA}", "resources": [],
      "outputs": {{"x": {{"type": "string", "value": "[reference(resourceId('Microsoft.Network/publicIPAddresses', 'pip'), '2023-04-01').ipAddress]"}}}}}}}}}}"#
        ));
    }
    let template = format!(
        r#"{{"$schema": "{SCHEMA}", "resources": [{}]}}"#,
        resources.join(",\n")
    );

    let error = run_err(&template);
    let Error::Template(located) = &error else {
        panic!("{error:?}")
    };
    assert!(
        located
            .message
            .contains("needs a longer chain of resources"),
        "{}",
        located.message
    );
    // `first` and the loops `l5` to `l2` make 3,201 resources, so the 4,001st is in `l1`.
    assert_eq!(
        located.location.json_path,
        "$.resources[4].properties.template.outputs.x.value"
    );
}
