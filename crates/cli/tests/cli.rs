//! The `subnetlock` binary as a user runs it: output formats, exit codes and errors.

// Tests fail loudly on broken fixtures.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{stderr, stdout, subnetlock, workspace_root};
use subnetlock_arm::testing::utf16_with_mark;

fn example() -> PathBuf {
    workspace_root().join("examples/lock-in-subnet")
}

/// Writes `text` as a template in a fresh temporary directory.
fn template(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("azuredeploy.json");
    std::fs::write(&path, text).expect("write template");
    (dir, path)
}

/// A site on a Standard plan whose main site has the given rules.
fn site_with_rules(rules: &str) -> String {
    format!(
        r#"{{
  "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
  "contentVersion": "1.0.0.0",
  "resources": [
    {{ "type": "Microsoft.Web/serverfarms", "apiVersion": "2022-03-01", "name": "plan",
       "location": "westeurope", "sku": {{ "name": "S1", "tier": "Standard" }} }},
    {{ "type": "Microsoft.Web/sites", "apiVersion": "2022-03-01", "name": "app",
       "location": "westeurope", "kind": "app",
       "properties": {{
         "serverFarmId": "[resourceId('Microsoft.Web/serverfarms', 'plan')]",
         "siteConfig": {{ "ipSecurityRestrictions": {rules} }}
       }} }}
  ]
}}"#
    )
}

#[test]
fn check_reads_utf16_inputs() {
    let text = site_with_rules("[]");
    let (_utf8_dir, utf8_path) = template(&text);
    let expected = subnetlock(&[
        "check",
        "--format",
        "json",
        utf8_path.to_str().expect("path"),
    ]);
    assert_eq!(expected.status.code(), Some(0), "{}", stderr(&expected));
    let plan = std::fs::read_to_string(
        workspace_root().join("crates/terraform/tests/fixtures/ip_restriction_default_action.json"),
    )
    .expect("plan fixture");

    for little_endian in [true, false] {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("azuredeploy.json");
        std::fs::write(&path, utf16_with_mark(&text, little_endian)).expect("template");
        let output = subnetlock(&["check", "--format", "json", path.to_str().expect("path")]);
        assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
        let findings = |stdout: &str| {
            let value: serde_json::Value = serde_json::from_str(stdout).expect("json");
            value["findings"].as_array().expect("findings").len()
        };
        assert_eq!(
            findings(&stdout(&output)),
            findings(&stdout(&expected)),
            "{little_endian}"
        );

        let plan_path = dir.path().join("plan.json");
        std::fs::write(&plan_path, utf16_with_mark(&plan, little_endian)).expect("plan");
        let output = subnetlock(&["check", plan_path.to_str().expect("path")]);
        assert_ne!(output.status.code(), Some(2), "{}", stderr(&output));
        assert!(
            stdout(&output).contains("acctestWA-240311031305920692"),
            "{little_endian}: {}{}",
            stdout(&output),
            stderr(&output)
        );
    }
}

#[test]
fn check_rejects_utf16_without_mark() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("azuredeploy.json");
    let bytes: Vec<u8> = site_with_rules("[]")
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    std::fs::write(&path, bytes).expect("template");

    let output = subnetlock(&["check", path.to_str().expect("path")]);

    assert_ne!(output.status.code(), Some(0));
    let error = stderr(&output);
    assert!(
        error.contains(&format!(
            "`{}` is UTF-16LE text without a byte order mark",
            path.display()
        )),
        "{error}"
    );
    assert!(error.contains("save the file as UTF-8"), "{error}");
    assert!(!error.contains("panicked"), "{error}");
}

/// Writes into `dir` a template with site `app` and no rules, and a binding file that serves it
/// with function app folder `app/`: one anonymous HTTP function `hello` and the given
/// `customHandler` section.
fn write_bound_app(dir: &Path, custom_handler: serde_json::Value) {
    let app = dir.join("app");
    std::fs::create_dir_all(app.join("hello")).expect("function dir");
    let host = serde_json::json!({"version": "2.0", "customHandler": custom_handler});
    std::fs::write(app.join("host.json"), host.to_string()).expect("host.json");
    let function = serde_json::json!({"bindings": [
        {"type": "httpTrigger", "direction": "in", "name": "req", "authLevel": "anonymous"},
        {"type": "http", "direction": "out", "name": "res"}
    ]});
    std::fs::write(app.join("hello/function.json"), function.to_string()).expect("function");
    std::fs::write(dir.join("azuredeploy.json"), site_with_rules("[]")).expect("template");
    let binding = serde_json::json!({
        "template": "azuredeploy.json",
        "apps": [{"site": "app", "functionApp": "app"}]
    });
    std::fs::write(dir.join("subnetlock.json"), binding.to_string()).expect("binding");
}

/// A `customHandler` section that runs `python3 handler.py` and forwards HTTP requests to it.
fn python_custom_handler() -> serde_json::Value {
    serde_json::json!({
        "description": {"defaultExecutablePath": "python3", "arguments": ["handler.py"]},
        "enableForwardingHttpRequest": true
    })
}

/// Writes a bound app as `write_bound_app` does, served by `handler` as `app/handler.py`.
fn write_python_app(dir: &Path, handler: &str) {
    write_bound_app(dir, python_custom_handler());
    std::fs::write(dir.join("app/handler.py"), handler).expect("handler");
}

/// Template text of `site_with_rules("[]")` with `hello` disabled by its app setting.
fn site_with_hello_disabled() -> String {
    site_with_rules("[]").replace(
        r#""ipSecurityRestrictions": []"#,
        r#""appSettings": [{"name": "AzureWebJobs.hello.Disabled", "value": "true"}],
           "ipSecurityRestrictions": []"#,
    )
}

#[test]
fn check_example_human() {
    let output = subnetlock(&["check", example().to_str().expect("path")]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(text.contains("function-app-b-yobmxbvmtplck.azurewebsites.net"));
    assert!(text.contains("ALLOW app:function-app-a-yobmxbvmtplck"));
    assert!(text.contains("DENY  internet:203.0.113.10"));
    assert!(text.contains("main rule 0 `lock-to-subnet` (priority 100, Allow) matched"));
    assert!(text.contains("SL012"), "scm site open while main locked");
}

#[test]
fn check_example_json() {
    let output = subnetlock(&[
        "check",
        "--format",
        "json",
        example().to_str().expect("path"),
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let value: serde_json::Value = serde_json::from_str(&stdout(&output)).expect("json");
    let rows = value["reachability"].as_array().expect("rows");
    let a_to_b = rows
        .iter()
        .find(|row| {
            row["from"]["label"] == "app:function-app-a-yobmxbvmtplck"
                && row["to"]["site"] == "function-app-b-yobmxbvmtplck"
                && row["to"]["kind"] == "Main"
        })
        .expect("A -> B row");
    assert_eq!(a_to_b["verdict"], "Allow");
    assert_eq!(a_to_b["reason"]["kind"], "rule");
    assert_eq!(a_to_b["reason"]["name"], "lock-to-subnet");
    assert_eq!(a_to_b["egress"]["path"]["kind"], "service_endpoint");
    let calls = value["calls"].as_array().expect("calls");
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0]["setting"], "target-url");
}

#[test]
fn check_json_is_byte_stable() {
    let first = subnetlock(&[
        "check",
        "--format",
        "json",
        example().to_str().expect("path"),
    ]);
    let second = subnetlock(&[
        "check",
        "--format",
        "json",
        example().to_str().expect("path"),
    ]);
    assert_eq!(first.stdout, second.stdout);
}

#[test]
fn check_sarif_has_rules_and_locations() {
    let output = subnetlock(&[
        "check",
        "--format",
        "sarif",
        example().to_str().expect("path"),
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let value: serde_json::Value = serde_json::from_str(&stdout(&output)).expect("json");
    assert_eq!(value["version"], "2.1.0");
    assert_eq!(value["runs"][0]["columnKind"], "unicodeCodePoints");
    let results = value["runs"][0]["results"].as_array().expect("results");
    let scm = results
        .iter()
        .find(|result| result["ruleId"] == "SL012")
        .expect("SL012 result");
    let region = &scm["locations"][0]["physicalLocation"]["region"];
    assert!(region["startLine"].as_u64().expect("line") > 1);
    // The example is under the current directory, so its URI is relative to `%SRCROOT%`.
    let artifact = &scm["locations"][0]["physicalLocation"]["artifactLocation"];
    assert_eq!(artifact["uri"], "examples/lock-in-subnet/azuredeploy.json");
    assert_eq!(artifact["uriBaseId"], "%SRCROOT%");
    let root = value["runs"][0]["originalUriBaseIds"]["%SRCROOT%"]["uri"]
        .as_str()
        .expect("base URI");
    assert!(
        root.starts_with("file:///") && root.ends_with('/'),
        "{root}"
    );
    let rules = value["runs"][0]["tool"]["driver"]["rules"]
        .as_array()
        .expect("rules");
    let rule = rules
        .iter()
        .find(|rule| rule["name"] == "scm-site-open-while-main-site-locked")
        .expect("SL012 rule");
    assert_eq!(
        rule["helpUri"],
        "https://github.com/subnetlock/subnetlock/blob/main/docs/rules.md#sl012-scm-site-open-while-main-site-locked"
    );
}

#[test]
fn check_bare_ip_rule_fails_with_azure_text() {
    let (_dir, path) = template(&site_with_rules(
        r#"[{ "ipAddress": "123.123.123.123", "action": "Allow", "priority": 100 }]"#,
    ));
    let output = subnetlock(&["check", path.to_str().expect("path")]);
    assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
    let text = stdout(&output);
    assert!(text.contains("SL001"), "{text}");
    assert!(text.contains("is an invalid CIDR!"), "{text}");
    assert!(text.contains("azuredeploy.json:"), "{text}");
}

#[test]
fn up_refuses_what_azure_rejects() {
    let (dir, path) = template(&site_with_rules(
        r#"[{ "ipAddress": "123.123.123.123", "action": "Allow", "priority": 100 }]"#,
    ));
    let state = dir.path().join("state");
    let output = subnetlock(&[
        "up",
        path.to_str().expect("path"),
        "--state-dir",
        state.to_str().expect("path"),
    ]);
    assert_eq!(output.status.code(), Some(2));
    let text = stderr(&output);
    assert!(text.contains("would be rejected"), "{text}");
    assert!(text.contains("SL001"), "{text}");
    assert!(!text.contains("panicked"), "{text}");
    // A rejected deployment leaves nothing behind.
    assert!(!state.exists(), "{}", state.display());
}

#[test]
fn site_deployed_twice_reads_the_later() {
    let (_dir, path) = template(
        r#"{
  "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
  "contentVersion": "1.0.0.0",
  "resources": [
    { "type": "Microsoft.Resources/deployments", "apiVersion": "2022-09-01", "name": "[concat('d', copyIndex())]",
      "copy": { "name": "loop", "count": 2, "mode": "serial", "batchSize": 1 },
      "properties": { "mode": "Incremental", "expressionEvaluationOptions": { "scope": "inner" },
        "parameters": { "i": { "value": "[copyIndex()]" } },
        "template": { "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#", "contentVersion": "1.0.0.0",
          "parameters": { "i": { "type": "int" } },
          "resources": [ { "type": "Microsoft.Web/sites", "apiVersion": "2022-09-01", "name": "same", "location": "westeurope",
            "properties": { "siteConfig": { "ipSecurityRestrictions": [ { "ipAddress": "[concat('203.0.113.', parameters('i'), '/32')]", "action": "Allow", "priority": 100 } ] } } } ] } } }
  ]
}"#,
    );
    let output = subnetlock(&[
        "explain",
        path.to_str().expect("path"),
        "--from",
        "internet:203.0.113.1",
        "--to",
        "same",
    ]);
    let text = stdout(&output);
    // The second deployment (index 1) allows 203.0.113.1/32 and replaces the first.
    assert!(text.contains("allowed: main rule 0"), "{text}");
    assert_eq!(text.matches("decision:").count(), 1, "{text}");
}

#[test]
fn unknown_settings_mark_verdicts() {
    let unknown = "[reference(resourceId('Microsoft.Network/ipGroups', 'x'), '2023-09-01').flag]";
    let site = site_with_rules(
        r#"[{ "ipAddress": "203.0.113.0/24", "action": "Allow", "priority": 100 }]"#,
    )
    .replace(
        r#""siteConfig": {"#,
        &format!(
            r#""siteConfig": {{ "scmIpSecurityRestrictionsUseMain": "{unknown}",
               "ipSecurityRestrictionsDefaultAction": "{unknown}","#
        ),
    );
    let (_dir, path) = template(&site);
    let output = subnetlock(&["check", "--format", "json", path.to_str().expect("path")]);
    let value: serde_json::Value = serde_json::from_str(&stdout(&output)).expect("json");
    let rows = value["reachability"].as_array().expect("rows");
    assert!(!rows.is_empty());
    for row in rows {
        let marks = row["depends_on_unknown"].as_array().expect("marks");
        let text = serde_json::to_string(marks).unwrap_or_default();
        match row["to"]["kind"].as_str() {
            // UseMain decides which list the scm site reads.
            Some("Scm") => assert!(text.contains("scmIpSecurityRestrictionsUseMain"), "{row}"),
            _ => assert!(
                text.contains("ipSecurityRestrictionsDefaultAction"),
                "{row}"
            ),
        }
    }
    let findings = serde_json::to_string(&value["findings"]).unwrap_or_default();
    assert_eq!(findings.matches("SL010").count(), 2, "{findings}");
}

#[test]
fn unknown_rule_name_decides_nothing() {
    let (_dir, path) = template(&site_with_rules(
        r#"[{ "name": "[reference(resourceId('Microsoft.Network/ipGroups', 'x'), '2023-09-01').label]",
              "ipAddress": "203.0.113.0/24", "action": "Allow", "priority": 100 }]"#,
    ));
    let output = subnetlock(&["check", path.to_str().expect("path")]);
    let text = stdout(&output);
    assert!(!text.contains("SL010"), "{text}");
    assert!(!text.contains("[depends on unknown"), "{text}");
    assert!(text.contains("ALLOW internet:203.0.113.10"), "{text}");
}

#[test]
fn unknown_rule_list_marks_verdicts() {
    let (_dir, path) = template(&site_with_rules(
        r#""[reference(resourceId('Microsoft.Network/ipGroups', 'x'), '2023-09-01').ipAddresses]""#,
    ));
    let output = subnetlock(&["check", path.to_str().expect("path")]);
    let text = stdout(&output);
    assert!(text.contains("SL010"), "{text}");
    assert!(text.contains("the main rule list of `app`"), "{text}");
    // Unknown is not empty: no verdict of the main site may read "allow all" unmarked.
    assert!(!text.contains("the main list has no rules"), "{text}");
    assert!(text.contains("[depends on unknown"), "{text}");
}

#[test]
fn duplicate_key_is_reported_with_both_places() {
    let (_dir, path) = template(&site_with_rules(
        r#"[{ "ipAddress": "203.0.113.0/24", "action": "Allow", "priority": 100 }],
          "ipSecurityRestrictions": []"#,
    ));
    let output = subnetlock(&["check", path.to_str().expect("path")]);
    let text = stdout(&output);
    assert!(text.contains("SL023 duplicate-json-key"), "{text}");
    assert!(text.contains("reads the later one"), "{text}");
    assert!(text.contains("see also "), "{text}");
    // The later, empty list is the one read, so the main site has no rules.
    assert!(text.contains("main 0 rule(s)"), "{text}");
    assert!(!text.contains("panicked"), "{text}");

    // SARIF names the first copy as a related location.
    let sarif = subnetlock(&["check", "--format", "sarif", path.to_str().expect("path")]);
    let value: serde_json::Value = serde_json::from_str(&stdout(&sarif)).expect("sarif");
    let result = value["runs"][0]["results"]
        .as_array()
        .expect("results")
        .iter()
        .find(|result| result["ruleId"] == "SL023")
        .expect("SL023");
    let related = &result["relatedLocations"][0]["physicalLocation"]["region"];
    assert!(related["startLine"].as_u64().expect("line") > 1);
}

#[test]
fn failed_check_still_writes_sarif_and_json() {
    let (_dir, path) = template("{\n  \"resources\": [ { \"type\": \"x\", }\n");
    let sarif = subnetlock(&["check", "--format", "sarif", path.to_str().expect("path")]);
    assert_eq!(sarif.status.code(), Some(2));
    let value: serde_json::Value = serde_json::from_str(&stdout(&sarif)).expect("sarif");
    let invocation = &value["runs"][0]["invocations"][0];
    assert_eq!(invocation["executionSuccessful"], false);
    let message = invocation["toolExecutionNotifications"][0]["message"]["text"]
        .as_str()
        .expect("message");
    assert!(message.contains("azuredeploy.json:2:"), "{message}");
    // The next step follows the message, as in the JSON document.
    assert!(message.contains("\nhelp: "), "{message}");
    assert!(stderr(&sarif).contains("azuredeploy.json"));

    let json = subnetlock(&["check", "--format", "json", path.to_str().expect("path")]);
    assert_eq!(json.status.code(), Some(2));
    let value: serde_json::Value = serde_json::from_str(&stdout(&json)).expect("json");
    assert!(value["error"]
        .as_str()
        .expect("error")
        .contains("azuredeploy.json"));
}

#[test]
fn non_template_input_is_rejected() {
    let dir = tempfile::tempdir().expect("temp dir");
    let parameters = dir.path().join("azuredeploy.parameters.json");
    std::fs::write(
        &parameters,
        r#"{"$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentParameters.json#",
  "contentVersion": "1.0.0.0", "parameters": {"siteName": {"value": "app"}}}"#,
    )
    .expect("write parameters");
    let package = dir.path().join("package.json");
    std::fs::write(&package, r#"{"name": "app", "version": "1.0.0"}"#).expect("write package");

    let output = subnetlock(&["check", parameters.to_str().expect("path")]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let text = stderr(&output);
    assert!(
        text.contains(
            "azuredeploy.parameters.json` is a parameters file, not a deployment template"
        ),
        "{text}"
    );
    assert!(text.contains("azuredeploy.parameters.json:1:13"), "{text}");
    assert!(text.contains("with `--parameters "), "{text}");

    let output = subnetlock(&["check", "--format", "json", package.to_str().expect("path")]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let value: serde_json::Value = serde_json::from_str(&stdout(&output)).expect("json");
    let error = value["error"].as_str().expect("error");
    assert!(
        error.contains("package.json` is not an ARM deployment template: it has no `resources`"),
        "{error}"
    );
    let help = value["help"].as_str().expect("help");
    assert!(help.contains("point at the deployment template"), "{help}");
    assert!(help.contains("`--parameters FILE`"), "{help}");
}

#[test]
fn empty_resources_is_valid_deployment() {
    // Resource Manager runs a deployment without resources, and it succeeds with nothing
    // deployed, so `check` reports that there is no site and exits as for no findings.
    let (_dir, path) = template(
        r#"{"$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
  "contentVersion": "1.0.0.0", "resources": []}"#,
    );
    let path = path.to_str().expect("path");

    let output = subnetlock(&["check", path]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(
        text.contains("none: the deployment has no web app or function app"),
        "{text}"
    );
    assert!(stderr(&output).is_empty(), "{}", stderr(&output));

    let output = subnetlock(&["check", "--format", "json", path]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let value: serde_json::Value = serde_json::from_str(&stdout(&output)).expect("json");
    assert!(value.get("error").is_none(), "{value}");
    assert_eq!(value["sites"], serde_json::json!([]), "{value}");
    assert_eq!(value["reachability"], serde_json::json!([]), "{value}");
    assert_eq!(value["findings"], serde_json::json!([]), "{value}");

    let output = subnetlock(&["check", "--format", "sarif", path]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let log: serde_json::Value = serde_json::from_str(&stdout(&output)).expect("sarif");
    let run = &log["runs"][0];
    assert_eq!(run["results"], serde_json::json!([]), "{log}");
    assert!(run.get("invocations").is_none(), "{log}");

    let output = subnetlock(&["explain", path, "--from", "internet", "--to", "app"]);
    assert_eq!(output.status.code(), Some(2), "{}", stdout(&output));
    let text = stderr(&output);
    assert!(text.contains("no site `app` in this deployment"), "{text}");
    assert!(text.contains("this deployment has no sites"), "{text}");
}

#[test]
fn plan_without_sites_is_valid_deployment() {
    // Plans that Terraform 1.11.4 wrote for an empty configuration and for destroying the only
    // resource. Applying either leaves no site, so `check` reports them as it does a template
    // with an empty `resources`.
    let fixtures = workspace_root().join("crates/terraform/tests/fixtures");
    for name in ["empty_configuration.json", "terraform_data_destroy.json"] {
        let path = fixtures.join(name);
        let path = path.to_str().expect("path");

        let output = subnetlock(&["check", path]);
        assert_eq!(output.status.code(), Some(0), "{name}: {}", stderr(&output));
        let text = stdout(&output);
        assert!(
            text.contains("none: the deployment has no web app or function app"),
            "{name}: {text}"
        );
        assert!(
            text.contains("none: there is no site to reach"),
            "{name}: {text}"
        );
        assert!(stderr(&output).is_empty(), "{name}: {}", stderr(&output));

        let output = subnetlock(&["check", "--format", "json", path]);
        assert_eq!(output.status.code(), Some(0), "{name}: {}", stderr(&output));
        let value: serde_json::Value = serde_json::from_str(&stdout(&output)).expect("json");
        assert!(value.get("error").is_none(), "{name}: {value}");
        assert_eq!(value["sites"], serde_json::json!([]), "{name}: {value}");
        assert_eq!(
            value["reachability"],
            serde_json::json!([]),
            "{name}: {value}"
        );
        assert_eq!(value["findings"], serde_json::json!([]), "{name}: {value}");

        let output = subnetlock(&["check", "--format", "sarif", path]);
        assert_eq!(output.status.code(), Some(0), "{name}: {}", stderr(&output));
        let log: serde_json::Value = serde_json::from_str(&stdout(&output)).expect("sarif");
        assert_eq!(
            log["runs"][0]["results"],
            serde_json::json!([]),
            "{name}: {log}"
        );

        let output = subnetlock(&["explain", path, "--from", "internet", "--to", "app"]);
        assert_eq!(output.status.code(), Some(2), "{name}: {}", stdout(&output));
        let text = stderr(&output);
        assert!(
            text.contains("this deployment has no sites"),
            "{name}: {text}"
        );
    }
}

#[test]
fn terraform_state_is_not_a_plan() {
    // `terraform show -json` without a plan file prints state (here as Terraform 1.11.4 prints
    // it for an empty and for an applied workspace), which is an input error, not an empty
    // plan.
    let states = [
        r#"{"format_version":"1.0"}"#,
        r#"{"format_version":"1.0","terraform_version":"1.11.4","values":{"root_module":{}}}"#,
    ];
    for state in states {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("state.json");
        std::fs::write(&path, state).expect("write state");
        let path = path.to_str().expect("path");

        let output = subnetlock(&["check", path]);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{state}: {}",
            stdout(&output)
        );
        let text = stderr(&output);
        assert!(
            text.contains("state.json` is not a Terraform plan: it has no `planned_values`"),
            "{state}: {text}"
        );
        assert!(
            text.contains("`terraform show -json <planfile>`"),
            "{state}: {text}"
        );

        let output = subnetlock(&["check", "--format", "json", path]);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{state}: {}",
            stderr(&output)
        );
        let value: serde_json::Value = serde_json::from_str(&stdout(&output)).expect("json");
        let error = value["error"].as_str().expect("error");
        assert!(
            error.contains("is not a Terraform plan"),
            "{state}: {error}"
        );
    }
}

#[test]
fn byte_order_mark_plan_checks() {
    // The same plan with and without a UTF-8 byte order mark gives the same report. Only the
    // byte offsets of the JSON report differ, because they count the mark.
    let fixture =
        workspace_root().join("crates/terraform/tests/fixtures/ip_restriction_default_action.json");
    let plain = std::fs::read_to_string(fixture).expect("read fixture");
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("plan.json");
    let path_text = path.to_str().expect("path");

    let mut reports = Vec::new();
    for prefix in ["", "\u{feff}"] {
        std::fs::write(&path, format!("{prefix}{plain}")).expect("write plan");
        let output = subnetlock(&["check", "--format", "json", path_text]);
        let value: serde_json::Value = serde_json::from_str(&stdout(&output)).expect("json");
        assert!(value.get("error").is_none(), "{prefix:?}: {value}");
        assert_ne!(value["sites"], serde_json::json!([]), "{prefix:?}: {value}");

        let output = subnetlock(&["check", path_text]);
        reports.push((output.status.code(), stdout(&output), stderr(&output)));
    }
    assert_eq!(reports[0], reports[1]);

    // State output with a mark is still recognised as Terraform JSON, so the plan reader
    // names what it lacks.
    std::fs::write(&path, "\u{feff}{\"format_version\":\"1.0\"}").expect("write state");
    let output = subnetlock(&["check", path_text]);
    assert_eq!(output.status.code(), Some(2), "{}", stdout(&output));
    let text = stderr(&output);
    assert!(
        text.contains("plan.json` is not a Terraform plan: it has no `planned_values`"),
        "{text}"
    );
}

#[test]
fn byte_order_mark_keeps_columns() {
    // The stray `}` is at column 32 of line 1, as an editor shows it, with or without a UTF-8
    // byte order mark before the first `{`.
    let text = "{\"resources\": [ { \"type\": \"x\", } ]}\n";
    for prefix in ["", "\u{feff}"] {
        let (_dir, path) = template(&format!("{prefix}{text}"));
        let output = subnetlock(&["check", path.to_str().expect("path")]);
        assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
        let report = stderr(&output);
        assert!(
            report.contains("azuredeploy.json:1:32 ($)"),
            "{prefix:?}: {report}"
        );
        assert!(
            report.contains("azuredeploy.json:1:32]"),
            "{prefix:?}: {report}"
        );
        assert!(!report.contains('\u{feff}'), "{prefix:?}: {report}");
    }
}

#[test]
fn malformed_json_is_located() {
    let (_dir, path) = template("{\n  \"resources\": [\n    { \"type\": \"x\", }\n  ,\n");
    let output = subnetlock(&["check", path.to_str().expect("path")]);
    assert_eq!(output.status.code(), Some(2));
    let text = stderr(&output);
    assert!(!text.contains("panicked"), "{text}");
    assert!(text.contains("azuredeploy.json"), "{text}");
    assert!(
        text.contains(":3:") || text.contains(":4:") || text.contains(":5:"),
        "{text}"
    );
}

#[test]
fn unknown_function_is_located() {
    let (_dir, path) = template(
        r#"{
  "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
  "contentVersion": "1.0.0.0",
  "variables": { "name": "[noSuchFunction('x')]" },
  "resources": [
    { "type": "Microsoft.Web/serverfarms", "apiVersion": "2022-03-01",
      "name": "[variables('name')]", "location": "westeurope" }
  ]
}"#,
    );
    let output = subnetlock(&["check", path.to_str().expect("path")]);
    assert_eq!(output.status.code(), Some(2));
    let text = stderr(&output);
    assert!(text.contains("noSuchFunction"), "{text}");
    assert!(text.contains("azuredeploy.json:4"), "{text}");
    assert!(!text.contains("panicked"), "{text}");
}

#[test]
fn missing_input_names_the_path() {
    let output = subnetlock(&["check", "no/such/template.json"]);
    assert_eq!(output.status.code(), Some(2));
    let text = stderr(&output);
    assert!(text.contains("no/such/template.json"), "{text}");
    assert!(text.contains("does not exist"), "{text}");
}

#[test]
fn unwritable_stderr_keeps_exit_code() {
    // Writing the report to a full device fails, and the exit code is still 2 for invalid input.
    let Ok(full) = std::fs::OpenOptions::new().write(true).open("/dev/full") else {
        println!("skipped: /dev/full is absent");
        return;
    };
    let output = Command::new(env!("CARGO_BIN_EXE_subnetlock"))
        .args(["check", "no/such/template.json"])
        .current_dir(workspace_root())
        .stderr(full)
        .output()
        .expect("subnetlock runs");
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn invalid_parameter_flag() {
    let output = subnetlock(&["check", example().to_str().expect("path"), "-p", "novalue"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("invalid parameter `novalue`"));

    let output = subnetlock(&["check", example().to_str().expect("path"), "-p", "=x"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("invalid parameter `=x`"));
    assert!(stderr(&output).contains("NAME=VALUE"));
}

#[test]
fn parameter_errors_point_at_the_value() {
    let dir = tempfile::tempdir().expect("temp dir");
    let parameters = dir.path().join("p.json");
    std::fs::write(
        &parameters,
        "{\"parameters\": {\n  \"packageUriA\": {\"value\": 5},\n  \"packageUriB\": {\"value\": \"b\"}}}",
    )
    .expect("parameters");
    let template = example().join("azuredeploy.json");
    let output = subnetlock(&[
        "check",
        template.to_str().expect("path"),
        "--parameters",
        parameters.to_str().expect("path"),
    ]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("p.json:2:28 ($.parameters.packageUriA.value)"),
        "{}",
        stderr(&output)
    );

    let output = subnetlock(&[
        "check",
        template.to_str().expect("path"),
        "-p",
        "packageUriA=a",
        "-p",
        "packageUriB=b",
        "-p",
        "frontDoorId=abc",
    ]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("parameter `frontDoorId` is given as `-p frontDoorId=...`"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn explain_names_route_and_rule() {
    let output = subnetlock(&[
        "explain",
        example().to_str().expect("path"),
        "--from",
        "app:function-app-a-yobmxbvmtplck",
        "--to",
        "function-app-b-yobmxbvmtplck",
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(text.contains("`Microsoft.Web` service endpoint"), "{text}");
    assert!(text.contains("lock-to-subnet"), "{text}");
}

#[test]
fn explain_caller_errors_name_the_problem() {
    let cases = [
        (
            "subnet:vnet/nope",
            "no subnet `vnet/nope` in this deployment",
            "subnet:vnet/default",
        ),
        (
            "internet:notanip",
            "invalid address `notanip`",
            "`internet` alone",
        ),
        (
            "app:zzz",
            "no site `zzz` in this deployment",
            "app:function-app-a",
        ),
        ("bogus:1", "invalid caller `bogus:1`", "write `internet`,"),
    ];
    for (from, message, help) in cases {
        let output = subnetlock(&[
            "explain",
            example().to_str().expect("path"),
            "--from",
            from,
            "--to",
            "function-app-b-yobmxbvmtplck",
        ]);
        assert_eq!(output.status.code(), Some(2), "{from}");
        let text = stderr(&output);
        assert!(text.contains(message), "{from}: {text}");
        assert!(text.contains(help), "{from}: {text}");
    }
}

#[test]
fn explain_unlisted_caller_uses_row_layout() {
    let explain = |from: &str, to: &str| {
        let output = subnetlock(&[
            "explain",
            example().to_str().expect("path"),
            "--from",
            from,
            "--to",
            to,
        ]);
        assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
        stdout(&output)
    };
    let site = "function-app-b-yobmxbvmtplck";
    let scm = "function-app-b-yobmxbvmtplck.scm.azurewebsites.net";

    // `internet` is a row of the matrix, but 198.51.100.7 and the service tag are not. Each
    // explanation states how its address relates to the rules.
    let listed = explain("internet", site);
    let unlisted = explain("internet:198.51.100.7", site);
    assert_eq!(
        listed.replace("203.0.113.10", "198.51.100.7").replace(
            "is a sample of the addresses that no rule names",
            "is an address that no rule names"
        ),
        unlisted,
        "{listed}\n{unlisted}"
    );
    assert!(
        listed
            .ends_with("  caller: 203.0.113.10 is a sample of the addresses that no rule names\n"),
        "{listed}"
    );
    assert!(
        unlisted.starts_with(
            "internet:198.51.100.7 -> function-app-b-yobmxbvmtplck.azurewebsites.net (main site)\n"
        ),
        "{unlisted}"
    );

    let tag = explain("servicetag:AzureCloud", site);
    assert!(tag.contains("(main site)\n  route: "), "{tag}");
    assert!(tag.contains("\n  source seen by the front end: "), "{tag}");
    assert!(
        tag.contains("\n  decision: denied: no main rule matched"),
        "{tag}"
    );

    let listed_scm = explain("internet", scm);
    let unlisted_scm = explain("internet:198.51.100.7", scm);
    let credentials = "  then: the scm site asks for publishing credentials\n";
    assert!(listed_scm.ends_with(credentials), "{listed_scm}");
    assert!(unlisted_scm.ends_with(credentials), "{unlisted_scm}");
    assert!(unlisted_scm.contains("(scm site)\n"), "{unlisted_scm}");
}

/// A VNet with subnet `pe` (no service endpoint), site `app` on a Premium plan with a private
/// endpoint in `pe` and no private DNS zone, and the given `publicNetworkAccess` and main rules.
fn private_endpoint_without_zone(public_network_access: &str, rules: &str) -> String {
    format!(
        r#"{{
  "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
  "contentVersion": "1.0.0.0",
  "resources": [
    {{ "type": "Microsoft.Network/virtualNetworks", "apiVersion": "2022-07-01", "name": "vnet",
       "location": "westeurope",
       "properties": {{ "addressSpace": {{ "addressPrefixes": ["10.0.0.0/16"] }},
         "subnets": [ {{ "name": "pe", "properties": {{ "addressPrefix": "10.0.2.0/24" }} }} ] }} }},
    {{ "type": "Microsoft.Web/serverfarms", "apiVersion": "2022-03-01", "name": "plan",
       "location": "westeurope", "sku": {{ "name": "P1v3", "tier": "PremiumV3" }} }},
    {{ "type": "Microsoft.Web/sites", "apiVersion": "2022-03-01", "name": "app",
       "location": "westeurope", "kind": "app", "dependsOn": ["plan"],
       "properties": {{
         "serverFarmId": "[resourceId('Microsoft.Web/serverfarms', 'plan')]",
         "publicNetworkAccess": {public_network_access},
         "siteConfig": {{ "ipSecurityRestrictions": {rules} }}
       }} }},
    {{ "type": "Microsoft.Network/privateEndpoints", "apiVersion": "2022-07-01", "name": "pe1",
       "location": "westeurope", "dependsOn": ["app", "vnet"],
       "properties": {{
         "subnet": {{ "id": "[resourceId('Microsoft.Network/virtualNetworks/subnets', 'vnet', 'pe')]" }},
         "privateLinkServiceConnections": [ {{ "name": "c", "properties": {{
           "privateLinkServiceId": "[resourceId('Microsoft.Web/sites', 'app')]", "groupIds": ["sites"] }} }} ] }} }}
  ]
}}"#
    )
}

#[test]
fn explain_subnet_caller_route() {
    let (_dir, path) = template(&private_endpoint_without_zone(r#""Enabled""#, "[]"));
    let output = subnetlock(&[
        "explain",
        path.to_str().expect("path"),
        "--from",
        "subnet:vnet/pe",
        "--to",
        "app",
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let text = stdout(&output);
    // A VM's call starts in its subnet; route-all is a setting of apps.
    assert!(!text.contains("route-all"), "{text}");
    assert!(
        text.contains("  route: subnet `pe` has no `Microsoft.Web` service endpoint, so the call leaves through the default internet route\n"),
        "{text}"
    );
    assert!(
        text.contains("`app` has private endpoint `pe1`, but no `privatelink.azurewebsites.net` private DNS zone linked to the caller's VNet resolves `app.azurewebsites.net` to it"),
        "{text}"
    );
    assert_eq!(
        text.matches("the caller sits in subnet `pe`").count(),
        1,
        "{text}"
    );
}

#[test]
fn check_rows_invalid_setting_wide_range() {
    let (_dir, path) = template(&private_endpoint_without_zone(
        r#""Enabled ""#,
        r#"[{ "ipAddress": "0.0.0.0/0", "action": "Allow", "priority": 100, "name": "all" }]"#,
    ));
    let output = subnetlock(&["check", path.to_str().expect("path")]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(
        text.contains("denied: publicNetworkAccess is \"Enabled \", which is not a valid value (SL020) and reads as Disabled"),
        "{text}"
    );
    assert!(!text.contains("publicNetworkAccess is Disabled"), "{text}");
    // The wide range is sampled with a documentation address, not 0.0.0.1.
    assert!(text.contains("internet:198.51.100.1 "), "{text}");
    assert!(!text.contains("internet:0.0.0.1"), "{text}");
}

#[test]
fn check_without_sites_says_none() {
    let (_dir, path) = template(
        r#"{
  "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
  "contentVersion": "1.0.0.0",
  "resources": [
    { "type": "Microsoft.Web/serverfarms", "apiVersion": "2022-03-01", "name": "plan",
      "location": "westeurope", "sku": { "name": "S1", "tier": "Standard" } }
  ]
}"#,
    );
    let output = subnetlock(&["check", path.to_str().expect("path")]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(
        text.contains("\nsites\n  none: the deployment has no web app or function app"),
        "{text}"
    );
    for kind in ["main", "scm"] {
        assert!(
            text.contains(&format!(
                "\nreachability, {kind} sites\n  none: there is no site to reach\n"
            )),
            "{text}"
        );
    }
}

#[test]
fn explain_unknown_caller_lists_callers() {
    let output = subnetlock(&[
        "explain",
        example().to_str().expect("path"),
        "--from",
        "app:nope",
        "--to",
        "function-app-b-yobmxbvmtplck",
    ]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("internet:203.0.113.10"));
}

#[test]
fn explain_unknown_service_tag_fails() {
    let dir = tempfile::tempdir().expect("temp dir");
    let tags = dir.path().join("ServiceTags_Public.json");
    std::fs::write(
        &tags,
        r#"{"values": [{"name": "AzureFrontDoor.Backend", "properties": {"addressPrefixes": ["147.243.0.0/16"]}}]}"#,
    )
    .expect("tags");
    let explain = |from: &str| {
        subnetlock(&[
            "explain",
            example().to_str().expect("path"),
            "--from",
            from,
            "--to",
            "function-app-b-yobmxbvmtplck",
            "--service-tags",
            tags.to_str().expect("path"),
        ])
    };
    let unknown = explain("servicetag:Nope");
    assert_eq!(unknown.status.code(), Some(2));
    let text = stderr(&unknown);
    assert!(text.contains("no service tag `Nope` in `"), "{text}");
    assert!(text.contains("ServiceTags_Public.json"), "{text}");

    let misspelt = explain("servicetag:frontdoor");
    assert_eq!(misspelt.status.code(), Some(2));
    assert!(
        stderr(&misspelt).contains("tags with a similar name: AzureFrontDoor.Backend"),
        "{}",
        stderr(&misspelt)
    );

    let known = explain("servicetag:AzureFrontDoor.Backend");
    assert_eq!(known.status.code(), Some(0), "{}", stderr(&known));
    assert!(stdout(&known).contains("147.243.0.0"), "{}", stdout(&known));
}

#[test]
fn internet_row_avoids_service_tag_prefixes() {
    // The only rule allows a service tag whose prefix contains 203.0.113.10, the address
    // `check` samples first. Every other internet address meets the implicit deny, and the
    // row for the internet at large must show that.
    let (dir, path) = template(&site_with_rules(
        r#"[{ "ipAddress": "DocTag", "tag": "ServiceTag", "action": "Allow", "priority": 100,
              "name": "allow-doc-tag" }]"#,
    ));
    let tags = dir.path().join("ServiceTags_Public_test.json");
    std::fs::write(
        &tags,
        r#"{
  "changeNumber": 1,
  "cloud": "Public",
  "values": [
    { "name": "DocTag", "id": "DocTag",
      "properties": { "changeNumber": 1, "region": "", "regionId": 0, "platform": "Azure",
                      "systemService": "", "addressPrefixes": ["203.0.113.0/24"],
                      "networkFeatures": ["API"] } }
  ]
}"#,
    )
    .expect("write service tags");
    let path = path.to_str().expect("path");
    let tags = tags.to_str().expect("path");

    let output = subnetlock(&["check", path, "--format", "json", "--service-tags", tags]);
    let report: serde_json::Value = serde_json::from_str(&stdout(&output)).expect("json");
    let rows = report["reachability"].as_array().expect("rows");
    let main_row = |label: &str| {
        rows.iter()
            .find(|row| row["from"]["label"] == label && row["to"]["kind"] == "Main")
            .unwrap_or_else(|| panic!("no main row from {label}: {report}"))
    };

    let rest = main_row("internet:198.51.100.10");
    assert_eq!(rest["verdict"], "Deny", "{rest}");
    assert_ne!(rest["reason"]["name"], "allow-doc-tag", "{rest}");
    assert_eq!(
        rest["from"]["note"], "a sample of the addresses that no rule names",
        "{rest}"
    );

    let sample = main_row("internet:203.0.113.10");
    assert_eq!(sample["verdict"], "Allow", "{sample}");
    assert_eq!(sample["reason"]["name"], "allow-doc-tag", "{sample}");
    assert_eq!(
        sample["from"]["note"],
        "a documentation address that a prefix of a rule's service tag contains",
        "{sample}"
    );

    // The scm site has no rules, so it is open while the main site denies the internet.
    let codes: Vec<_> = report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .map(|finding| finding["code"].as_str().expect("code"))
        .collect();
    assert!(codes.contains(&"SL012"), "{codes:?}");

    let explain = subnetlock(&[
        "explain",
        path,
        "--from",
        "internet",
        "--to",
        "app",
        "--service-tags",
        tags,
    ]);
    assert_eq!(explain.status.code(), Some(0), "{}", stderr(&explain));
    let text = stdout(&explain);
    assert!(
        text.starts_with("internet:198.51.100.10 -> "),
        "explain must judge the address check's matrix uses: {text}"
    );
    assert!(text.contains("\n  decision: denied"), "{text}");
}

#[test]
fn caller_help_lists_every_form() {
    for command in ["explain", "call"] {
        let output = subnetlock(&[command, "--help"]);
        assert_eq!(output.status.code(), Some(0));
        let text = stdout(&output);
        for form in [
            "internet[:<address>]",
            "subnet:<vnet>/<subnet>",
            "app:<site>",
            "servicetag:<tag>",
        ] {
            assert!(text.contains(form), "{command} --help lacks {form}: {text}");
        }
    }
}

#[test]
fn call_without_emulator_says_how() {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = subnetlock(&[
        "call",
        "--from",
        "internet",
        "--state-dir",
        dir.path().to_str().expect("path"),
        "https://x.azurewebsites.net/",
    ]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("subnetlock up"));
}

#[test]
fn check_corpus_templates_without_panic() {
    let corpus = workspace_root().join("../shared/corpus/arm");
    if !corpus.is_dir() {
        println!("skipped: {} is absent", corpus.display());
        return;
    }
    let mut checked = 0;
    for entry in std::fs::read_dir(&corpus).expect("corpus") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        if !name.ends_with(".json") || name.contains(".parameters.") {
            continue;
        }
        let output = subnetlock(&["check", "--format", "json", path.to_str().expect("path")]);
        let text = stderr(&output);
        assert!(!text.contains("panicked"), "{name}: {text}");
        assert!(
            matches!(output.status.code(), Some(0..=2)),
            "{name}: {:?}",
            output.status
        );
        checked += 1;
    }
    assert!(checked >= 20, "checked {checked} templates");
}

#[test]
fn check_previous_reports_sku_change() {
    let scenario: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios/58.json"),
        )
        .expect("scenario 58"),
    )
    .expect("json");
    let dir = tempfile::tempdir().expect("temp dir");
    let previous = dir.path().join("previous.json");
    let next = dir.path().join("next.json");
    std::fs::write(&previous, scenario["previous_template"].to_string()).expect("write");
    std::fs::write(&next, scenario["template"].to_string()).expect("write");

    let with_previous = subnetlock(&[
        "check",
        next.to_str().expect("path"),
        "--previous",
        previous.to_str().expect("path"),
    ]);
    assert_eq!(with_previous.status.code(), Some(1));
    assert!(
        stdout(&with_previous).contains("SL021"),
        "{}",
        stdout(&with_previous)
    );

    let without = subnetlock(&["check", next.to_str().expect("path")]);
    assert!(!stdout(&without).contains("SL021"));
}

#[test]
fn check_scale_unit_older_fails() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/lock-in-subnet");
    let example = example.to_str().expect("path");

    let older = subnetlock(&[
        "check",
        example,
        "--scale-unit",
        "older",
        "--format",
        "json",
    ]);
    assert_eq!(older.status.code(), Some(1), "{}", stdout(&older));
    let report: serde_json::Value = serde_json::from_str(&stdout(&older)).expect("json");
    let sl022: Vec<&serde_json::Value> = report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter(|finding| finding["code"] == "SL022")
        .collect();
    assert_eq!(sl022.len(), 1, "{report}");
    assert_eq!(sl022[0]["severity"], "error");
    assert_eq!(report["assumptions"]["scale_unit"], "older");
    assert_eq!(report["deployment_fails"], true);

    let explain = subnetlock(&[
        "explain",
        example,
        "--scale-unit",
        "older",
        "--from",
        "app:function-app-a-yobmxbvmtplck",
        "--to",
        "function-app-b-yobmxbvmtplck",
    ]);
    assert!(
        stdout(&explain).starts_with("Azure fails this deployment (SL022"),
        "{}",
        stdout(&explain)
    );

    let newer = subnetlock(&["check", example, "--format", "json"]);
    assert_eq!(newer.status.code(), Some(0), "{}", stdout(&newer));
    let report: serde_json::Value = serde_json::from_str(&stdout(&newer)).expect("json");
    let severities: Vec<&serde_json::Value> = report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter(|finding| finding["code"] == "SL022")
        .map(|finding| &finding["severity"])
        .collect();
    assert_eq!(severities, vec!["info"], "{report}");
    assert_eq!(report["assumptions"]["scale_unit"], "newer");
    assert_eq!(report["deployment_fails"], false);

    let invalid = subnetlock(&["check", example, "--scale-unit", "oldest"]);
    assert_eq!(invalid.status.code(), Some(2));
}

/// A handler that starts a long `sleep` in the background, as handlers that spawn helpers do,
/// and then serves as `OK_HANDLER` does.
fn background_handler() -> String {
    format!("import subprocess\nsubprocess.Popen([\"sleep\", \"300\"])\n{OK_HANDLER}")
}

/// Process ids whose environment marks them as started by an emulator on `state_dir`:
/// `SUBNETLOCK_EMULATOR=<state_dir>#<pid>:<start time>`.
fn marked_processes(state_dir: &Path) -> Vec<u32> {
    let canonical = std::fs::canonicalize(state_dir).unwrap_or_else(|_| state_dir.to_owned());
    let marker = format!("SUBNETLOCK_EMULATOR={}#", canonical.display());
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc") {
        let Some(pid) = entry
            .ok()
            .and_then(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        else {
            continue;
        };
        if let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) {
            if environ
                .split(|&byte| byte == 0)
                .any(|entry| entry.starts_with(marker.as_bytes()))
            {
                pids.push(pid);
            }
        }
    }
    pids
}

/// A child process that is killed, with everything marked for its state directory, when the
/// test ends, so that a failing assertion leaves nothing running.
struct Reaped {
    child: std::process::Child,
    state_dir: PathBuf,
}

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for pid in marked_processes(&self.state_dir) {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
    }
}

fn wait_for(condition: impl Fn() -> bool, what: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !condition() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn up_stops_left_over_handlers() {
    if !Path::new("/proc/self/environ").exists() {
        println!("skipped: needs /proc (Linux)");
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    write_python_app(dir.path(), &background_handler());
    let state = dir.path().join("state");

    let start = || start_up(dir.path(), &state, &[]);

    // The handler and its background `sleep` both carry the marker.
    let mut first = start();
    wait_for(|| state.join("state.json").is_file(), "the first up");
    wait_for(
        || marked_processes(&state).len() >= 2,
        "the handler's background child",
    );
    let left_over = marked_processes(&state);

    // SIGKILL gives `up` no chance to stop its handlers.
    first.child.kill().expect("SIGKILL");
    first.child.wait().expect("wait");
    assert!(
        left_over
            .iter()
            .all(|pid| Path::new(&format!("/proc/{pid}")).exists()),
        "the handlers should outlive a killed up"
    );

    let _ = std::fs::remove_file(state.join("state.json"));
    let mut second = start();
    wait_for(|| state.join("state.json").is_file(), "the second up");
    let now = marked_processes(&state);
    for pid in &left_over {
        assert!(
            !now.contains(pid),
            "left-over process {pid} still runs: {now:?}"
        );
    }

    // A clean stop leaves nothing behind, the background child included.
    let stopped = Command::new("kill")
        .args(["-TERM", &second.child.id().to_string()])
        .status()
        .expect("kill");
    assert!(stopped.success());
    second.child.wait().expect("wait");
    wait_for(
        || marked_processes(&state).is_empty(),
        "every marked process to exit",
    );
}

#[test]
fn xff_proxy_range_moves_internet_sample() {
    // The `XffProxy` range contains the usual sample, so the matrix adds another internet
    // caller and notes why the usual one is no sample of the addresses no rule names.
    let (_dir, path) = template(&site_with_rules(
        r#"[{"ipAddress": "203.0.113.0/24", "tag": "XffProxy", "action": "Deny", "priority": 100, "name": "proxy"}]"#,
    ));
    let output = subnetlock(&["check", path.to_str().expect("path"), "--format", "json"]);
    let report: serde_json::Value = serde_json::from_str(&stdout(&output)).expect("json");
    let rows = report["reachability"].as_array().expect("rows");
    let note_of = |label: &str| {
        rows.iter()
            .find(|row| row["from"]["label"] == label)
            .map(|row| row["from"]["note"].clone())
    };

    assert_eq!(
        note_of("internet:203.0.113.10"),
        Some(serde_json::json!(
            "a documentation address that the range of an `XffProxy` rule contains"
        ))
    );
    assert_eq!(
        note_of("internet:198.51.100.10"),
        Some(serde_json::json!(
            "a sample of the addresses that no rule names"
        ))
    );
}

#[test]
fn rule_defaults_mark_verdicts() {
    // 203.0.113.10 is the internet caller `check` samples, so rule 0 decides its verdict.
    let (_dir, path) = template(&site_with_rules(r#"[{ "ipAddress": "203.0.113.0/24" }]"#));
    let output = subnetlock(&["check", path.to_str().expect("path"), "--format", "json"]);
    let report: serde_json::Value = serde_json::from_str(&stdout(&output)).expect("json");

    let row = report["reachability"]
        .as_array()
        .expect("rows")
        .iter()
        .find(|row| row["from"]["label"] == "internet:203.0.113.10" && row["to"]["kind"] == "Main")
        .expect("internet row");
    assert_eq!(row["verdict"], "Allow", "{row}");
    assert_eq!(row["reason"]["index"], 0, "{row}");
    assert_eq!(
        row["from"]["note"], "a documentation address that a rule's range contains",
        "the sample is not one that no rule names here: {row}"
    );
    let ambiguities = row["ambiguities"].as_array().expect("ambiguities");
    assert!(
        ambiguities
            .iter()
            .any(|a| a.to_string().contains("rule_defaults")),
        "{row}"
    );

    let human = subnetlock(&["check", path.to_str().expect("path")]);
    assert!(
        stdout(&human).contains("without `action` reads as Allow"),
        "{}",
        stdout(&human)
    );
}

/// Starts `up` on `input` with `state_dir`, output discarded, killed when the test ends.
fn start_up(input: &Path, state_dir: &Path, extra: &[&str]) -> Reaped {
    spawn_up(
        input,
        state_dir,
        extra,
        std::process::Stdio::null(),
        std::process::Stdio::null(),
    )
}

/// Starts `up` on `input` with `state_dir`, `extra` arguments and colour off, killed when the
/// test ends.
fn spawn_up(
    input: &Path,
    state_dir: &Path,
    extra: &[&str],
    stdout: std::process::Stdio,
    stderr: std::process::Stdio,
) -> Reaped {
    Reaped {
        child: Command::new(env!("CARGO_BIN_EXE_subnetlock"))
            .arg("up")
            .arg(input)
            .arg("--state-dir")
            .arg(state_dir)
            .args(extra)
            .env("NO_COLOR", "1")
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .expect("start up"),
        state_dir: state_dir.to_owned(),
    }
}

/// Files that receive the stdout and stderr of an `up` started by `start_up_logged`.
struct UpLog {
    stdout: PathBuf,
    stderr: PathBuf,
}

impl UpLog {
    /// Waits until `up` prints its `running;` summary to stderr, then returns its stdout.
    fn wait_for_summary(&self) -> String {
        wait_for(
            || {
                std::fs::read_to_string(&self.stderr)
                    .unwrap_or_default()
                    .contains("running;")
            },
            "up to print its summary",
        );
        std::fs::read_to_string(&self.stdout).expect("stdout")
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).expect("stderr")
    }
}

/// Starts `up` as `spawn_up` does, with its stdout in `up.out` and its stderr in `up.err` in
/// `log_dir`.
fn start_up_logged(
    input: &Path,
    state_dir: &Path,
    extra: &[&str],
    log_dir: &Path,
) -> (Reaped, UpLog) {
    let log = UpLog {
        stdout: log_dir.join("up.out"),
        stderr: log_dir.join("up.err"),
    };
    let up = spawn_up(
        input,
        state_dir,
        extra,
        std::fs::File::create(&log.stdout)
            .expect("stdout file")
            .into(),
        std::fs::File::create(&log.stderr)
            .expect("stderr file")
            .into(),
    );
    (up, log)
}

/// Counts the threads of process `pid` that the front end named `front-end-<index>`.
fn front_end_threads_of(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("task directory")
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with("front-end-"))
        .count()
}

#[test]
fn up_serves_on_chosen_front_end_threads() {
    if !Path::new("/proc/self/task").exists() {
        println!("skipped: counting threads needs /proc (Linux)");
        return;
    }
    // Two counts, so that at least one differs from the default of one per CPU core.
    for threads in [1, 3] {
        let (dir, path) = template(&site_with_rules("[]"));
        let state = dir.path().join("state");
        let count = threads.to_string();
        let up = start_up(&path, &state, &["--front-end-threads", &count]);
        wait_for(|| state.join("state.json").is_file(), "up to start");

        assert_eq!(front_end_threads_of(up.child.id()), threads);
        for request in 0..4 {
            let output = subnetlock(&[
                "call",
                "--state-dir",
                state.to_str().expect("path"),
                "--from",
                "internet",
                "--expect-status",
                "200",
                "https://app.azurewebsites.net/",
            ]);
            assert_eq!(
                output.status.code(),
                Some(0),
                "{threads} thread(s), request {request}: {}{}",
                stdout(&output),
                stderr(&output)
            );
        }
    }
}

/// Runs `command`, an `up` expected to stop with an error, and returns its output. It fails the
/// test, after killing the process, when the process still runs after 60 seconds, which is how
/// an `up` that starts instead of rejecting its options would behave.
fn output_of_failing_up(mut command: Command) -> std::process::Output {
    let dir = tempfile::tempdir().expect("temp dir");
    let (out, err) = (dir.path().join("out"), dir.path().join("err"));
    let mut child = command
        .stdout(std::fs::File::create(&out).expect("stdout file"))
        .stderr(std::fs::File::create(&err).expect("stderr file"))
        .spawn()
        .expect("up starts");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for up") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "up still runs after 60 seconds: {}",
                std::fs::read_to_string(&err).unwrap_or_default()
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    std::process::Output {
        status,
        stdout: std::fs::read(&out).expect("stdout"),
        stderr: std::fs::read(&err).expect("stderr"),
    }
}

#[test]
fn up_rejects_invalid_front_end_threads() {
    let (dir, path) = template(&site_with_rules("[]"));
    let state = dir.path().join("state");
    let max = subnetlock_emulator::MAX_FRONT_END_THREADS;
    let above_max = (max + 1).to_string();
    let above_max_reason = format!("the maximum is {max} threads.");
    let cases = [
        ("0", "the front end needs at least one thread."),
        (above_max.as_str(), above_max_reason.as_str()),
        ("-3", "expected a whole number of threads."),
        ("many", "expected a whole number of threads."),
        ("", "expected a whole number of threads."),
    ];
    for (value, reason) in cases {
        let mut up = Command::new(env!("CARGO_BIN_EXE_subnetlock"));
        up.arg("up")
            .arg(&path)
            .arg("--state-dir")
            .arg(&state)
            .arg(format!("--front-end-threads={value}"))
            .env("NO_COLOR", "1");
        let output = output_of_failing_up(up);

        assert_eq!(
            output.status.code(),
            Some(2),
            "{value}: {}",
            stdout(&output)
        );
        let text = stderr(&output);
        assert!(
            text.contains(&format!(
                "invalid value '{value}' for '--front-end-threads <N>'"
            )),
            "{value}: {text}"
        );
        assert!(text.contains(reason), "{value}: {text}");
        assert!(
            text.contains(&format!("Choose a count from 1 to {max}")),
            "{value}: {text}"
        );
        assert!(!state.exists(), "{value}: up created its state directory");
    }

    let help = stdout(&subnetlock(&["up", "--help"]));
    assert!(help.contains(&format!("1 to {max}")), "{help}");
}

#[test]
fn up_names_front_end_thread_failure() {
    // Each front-end thread opens file descriptors, so 100 threads exceed an open-file limit of
    // 64 part way through the start.
    let (dir, path) = template(&site_with_rules("[]"));
    let state = dir.path().join("state");
    let mut up = Command::new("sh");
    up.args(["-c", "ulimit -n 64 && exec \"$0\" \"$@\""])
        .arg(env!("CARGO_BIN_EXE_subnetlock"))
        .arg("up")
        .arg(&path)
        .arg("--state-dir")
        .arg(&state)
        .args(["--front-end-threads", "100"])
        .env("NO_COLOR", "1");
    let output = output_of_failing_up(up);

    assert_eq!(output.status.code(), Some(2), "{}", stdout(&output));
    let text = stderr(&output);
    assert!(
        text.contains("cannot start 100 front-end threads"),
        "{text}"
    );
    assert!(text.contains("Too many open files"), "{text}");
    assert!(text.contains("`ulimit -n`"), "{text}");
    assert!(!text.contains("cannot listen on"), "{text}");
}

#[test]
fn call_shows_redirect_and_posts_data() {
    // One open site with `httpsOnly` and no local code.
    let (dir, path) = template(
        r#"{
  "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
  "contentVersion": "1.0.0.0",
  "resources": [
    { "type": "Microsoft.Web/serverfarms", "apiVersion": "2022-09-01", "name": "plan",
      "location": "westeurope", "sku": { "name": "S1" }, "properties": {} },
    { "type": "Microsoft.Web/sites", "apiVersion": "2022-09-01", "name": "app-h",
      "location": "westeurope",
      "properties": { "httpsOnly": true,
        "serverFarmId": "[resourceId('Microsoft.Web/serverfarms', 'plan')]" } }
  ]
}"#,
    );
    let state = dir.path().join("state");
    let _up = start_up(&path, &state, &[]);
    wait_for(|| state.join("state.json").is_file(), "up to start");
    let call = |extra: &[&str], url: &str| {
        let mut args = vec![
            "call",
            "--state-dir",
            state.to_str().expect("path"),
            "--from",
            "internet",
            "-i",
        ];
        args.extend_from_slice(extra);
        args.push(url);
        subnetlock(&args)
    };

    // The redirect of `httpsOnly` is the response, as curl shows it without `-L`.
    let redirected = call(
        &["--expect-status", "301"],
        "http://app-h.azurewebsites.net/a?b=1",
    );
    assert_eq!(redirected.status.code(), Some(0), "{}", stderr(&redirected));
    assert!(
        stdout(&redirected)
            .to_ascii_lowercase()
            .contains("location: https://app-h.azurewebsites.net/a?b=1"),
        "{}",
        stdout(&redirected)
    );

    // `-d` without `-X` sends POST, as curl does.
    let posted = call(&["-d", "x=1"], "https://app-h.azurewebsites.net/");
    assert_eq!(posted.status.code(), Some(0), "{}", stderr(&posted));
    let log = state.join("decisions.jsonl");
    wait_for(
        || {
            std::fs::read_to_string(&log)
                .map(|text| text.lines().count() >= 2)
                .unwrap_or(false)
        },
        "two decision records",
    );
    let text = std::fs::read_to_string(&log).expect("decision log");
    let methods: Vec<String> = text
        .lines()
        .map(|line| {
            let record: serde_json::Value = serde_json::from_str(line).expect("record");
            record["method"].as_str().unwrap_or_default().to_owned()
        })
        .collect();
    assert_eq!(methods, ["GET", "POST"]);
}

#[test]
fn call_exit_code_tells_site_from_emulator() {
    // Scenario 1010: an NSG on subnet `default` drops outbound 443 to App Service, and app-b
    // allows only that subnet.
    let scenario: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(workspace_root().join("crates/cli/tests/scenarios/1010.json"))
            .expect("scenario 1010"),
    )
    .expect("scenario JSON");
    let (dir, path) = template(&scenario["template"].to_string());
    let state = dir.path().join("state");
    let _up = start_up(&path, &state, &[]);
    wait_for(|| state.join("state.json").is_file(), "up to start");

    let host = "app-b.azurewebsites.net";
    let call = |from: &str, url: &str, extra: &[&str]| {
        let mut args = vec![
            "call",
            "--state-dir",
            state.to_str().expect("path"),
            "--from",
            from,
        ];
        args.extend_from_slice(extra);
        args.push(url);
        subnetlock(&args)
    };
    let site_url = format!("https://{host}/");

    // A denial is the site's own response, like any status a site sends.
    let denied = call("internet:198.51.100.20", &site_url, &[]);
    assert_eq!(denied.status.code(), Some(0), "{}", stderr(&denied));
    assert!(stderr(&denied).contains("status 403 Ip Forbidden"));

    // The NSG drops the request before the front end, so no site sent the response.
    let dropped = call("subnet:vnet/default", &site_url, &[]);
    assert_eq!(dropped.status.code(), Some(2), "{}", stderr(&dropped));
    assert!(
        stderr(&dropped).contains("no site sent this response"),
        "{}",
        stderr(&dropped)
    );
    assert!(
        stdout(&dropped).contains("deny-app-service"),
        "{}",
        stdout(&dropped)
    );

    // A host that is not a site gets the egress proxy's 502.
    let elsewhere = call("internet", "https://example.com/", &[]);
    assert_eq!(elsewhere.status.code(), Some(2), "{}", stderr(&elsewhere));
    assert!(
        stdout(&elsewhere).contains("is not a site of this deployment"),
        "{}",
        stdout(&elsewhere)
    );

    // `--expect-status` decides whenever it is given.
    let expected = call(
        "subnet:vnet/default",
        &site_url,
        &["--expect-status", "502"],
    );
    assert_eq!(expected.status.code(), Some(0), "{}", stderr(&expected));
    let unexpected = call(
        "internet:198.51.100.20",
        &site_url,
        &["--expect-status", "200"],
    );
    assert_eq!(unexpected.status.code(), Some(1), "{}", stderr(&unexpected));

    // The control API's rejection names the caller once, and lists the deployment's callers.
    let invalid = call("nonsense", &site_url, &[]);
    assert_eq!(invalid.status.code(), Some(2));
    assert_eq!(
        stderr(&invalid).matches("nonsense").count(),
        1,
        "{}",
        stderr(&invalid)
    );
    let unknown_site = call("app:nope", &site_url, &[]);
    assert_eq!(unknown_site.status.code(), Some(2));
    let text = stderr(&unknown_site);
    assert!(text.contains("no site named `nope`"), "{text}");
    assert!(
        text.contains("callers in this deployment: internet"),
        "{text}"
    );
    assert!(text.contains("subnet:vnet/default"), "{text}");
    assert!(text.contains("app:app-b"), "{text}");
}

#[test]
fn call_internet_uses_explain_address() {
    // A rule denies the range of 203.0.113.10, the usual internet sample, and the rest of the
    // internet is allowed: `internet` must stand for an address of the rest, in `call` as in
    // `explain`.
    let (dir, path) = template(&site_with_rules(
        r#"[{"ipAddress": "203.0.113.0/24", "action": "Deny", "priority": 100, "name": "deny-doc"},
            {"ipAddress": "0.0.0.0/0", "action": "Allow", "priority": 200, "name": "allow-rest"}]"#,
    ));
    let explained = subnetlock(&[
        "explain",
        "--from",
        "internet",
        "--to",
        "app",
        path.to_str().expect("path"),
    ]);
    let explanation = stdout(&explained);
    let explained_caller = explanation
        .split_whitespace()
        .next()
        .expect("explain names the caller first")
        .to_owned();
    assert_ne!(explained_caller, "internet:203.0.113.10", "{explanation}");
    assert!(explanation.contains("allowed"), "{explanation}");

    let state = dir.path().join("state");
    let _up = start_up(&path, &state, &[]);
    wait_for(|| state.join("state.json").is_file(), "up to start");
    let call = |from: &str| {
        subnetlock(&[
            "call",
            "--state-dir",
            state.to_str().expect("path"),
            "--from",
            from,
            "https://app.azurewebsites.net/",
        ])
    };

    let internet = call("internet");
    assert_eq!(internet.status.code(), Some(0), "{}", stderr(&internet));
    assert!(
        stdout(&internet).contains("is running"),
        "{}",
        stdout(&internet)
    );
    assert!(
        stderr(&internet).contains(&format!("caller `internet` is `{explained_caller}`")),
        "{}",
        stderr(&internet)
    );
    let decisions: serde_json::Value =
        serde_json::from_str(&control_get(&state, "/v1/decisions")).expect("decisions JSON");
    let last = decisions
        .as_array()
        .and_then(|records| records.last())
        .expect("a decision");
    assert_eq!(last["caller"], explained_caller.as_str(), "{last}");
    assert_eq!(last["verdict"], "Allow", "{last}");

    // The sample itself is still denied: the rule is in force.
    let sample = call("internet:203.0.113.10");
    assert!(
        stderr(&sample).contains("status 403 Ip Forbidden"),
        "{}",
        stderr(&sample)
    );
}

/// Runs `demo --no-build` on `dir` with the state directory `dir/state`.
fn run_demo(dir: &Path) -> std::process::Output {
    let state = dir.join("state");
    subnetlock(&[
        "demo",
        dir.to_str().expect("path"),
        "--no-build",
        "--state-dir",
        state.to_str().expect("path"),
    ])
}

#[test]
fn demo_without_probes_fails() {
    // A site without bound code and no calls between apps leaves nothing to compare.
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("azuredeploy.json"), site_with_rules("[]")).expect("template");
    let output = run_demo(dir.path());
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("nothing to compare"),
        "{}",
        stderr(&output)
    );
    assert!(
        !stdout(&output).contains("live result equals"),
        "{}",
        stdout(&output)
    );
}

#[test]
fn demo_skips_site_whose_handler_exits() {
    // `other` gets no probes but a line with the reason, and the probes of `app` still pass.
    let dir = tempfile::tempdir().expect("temp dir");
    write_site_with_failing_handler(dir.path());
    let output = run_demo(dir.path());
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(0), "{text}{}", stderr(&output));
    assert!(
        text.contains("skipped: internet -> GET other/ (no key): the access restrictions allow the request, but the Functions host of the site's function app does not start, so it gets 503 where check predicts 200: custom handler `sh` for site `other` exited with exit code 3"),
        "{text}"
    );
    assert!(text.contains("all 2 probes: live result equals"), "{text}");
    // Rows of compared probes start with a space, or with `!` when they differ.
    assert!(
        !text.lines().any(|line| line
            .trim_start_matches([' ', '!'])
            .starts_with("internet -> GET other/")),
        "{text}"
    );
}

#[test]
fn demo_compares_denied_probe_to_failed_app() {
    // The handler of `other` exits, and its rules allow only 192.0.2.1. The front end applies
    // them before it consults the Functions host, so the internet probe of `other` gets the
    // 403 that check predicts and is compared, which shows the lockdown of the failed site.
    let dir = tempfile::tempdir().expect("temp dir");
    write_site_with_failing_handler(dir.path());
    let path = dir.path().join("azuredeploy.json");
    let text = std::fs::read_to_string(&path).expect("template");
    let mut template: serde_json::Value = serde_json::from_str(&text).expect("template JSON");
    let other = template["resources"]
        .as_array_mut()
        .expect("resources")
        .iter_mut()
        .find(|resource| resource["name"] == "other")
        .expect("site `other`");
    other["properties"]["siteConfig"] = serde_json::json!({"ipSecurityRestrictions": [
        {"ipAddress": "192.0.2.1/32", "action": "Allow", "priority": 100, "name": "one"}
    ]});
    std::fs::write(&path, template.to_string()).expect("template");

    let output = run_demo(dir.path());
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(0), "{text}{}", stderr(&output));
    assert!(!text.contains("skipped: internet -> "), "{text}");
    let probe = text
        .lines()
        .find(|line| line.starts_with(" internet -> GET other/ (no key)"))
        .unwrap_or_else(|| panic!("no line for the probe of `other`: {text}"));
    let columns: Vec<&str> = probe.split_whitespace().collect();
    assert_eq!(columns.get(6..8), Some(&["403", "403"][..]), "{probe}");
    assert!(probe.ends_with("Error 403 - Forbidden page"), "{probe}");
    assert!(text.contains("all 3 probes: live result equals"), "{text}");
}

/// Gives site `other` of the template in `dir` an app setting `TARGET_URL` that calls
/// `hello` on site `app`.
fn add_call_from_other_to_app(dir: &Path) {
    let path = dir.join("azuredeploy.json");
    let text = std::fs::read_to_string(&path).expect("template");
    let mut template: serde_json::Value = serde_json::from_str(&text).expect("template JSON");
    let other = template["resources"]
        .as_array_mut()
        .expect("resources")
        .iter_mut()
        .find(|resource| resource["name"] == "other")
        .expect("site `other`");
    other["properties"]["siteConfig"] = serde_json::json!({"appSettings": [
        {"name": "TARGET_URL", "value": "https://app.azurewebsites.net/api/hello"}
    ]});
    std::fs::write(&path, template.to_string()).expect("template");
}

#[test]
fn demo_skips_calls_from_failed_app() {
    // `other` calls `app` from its app settings, but its handler exits, so the call is never
    // sent. The call gets a line with the reason instead of a mismatch.
    let dir = tempfile::tempdir().expect("temp dir");
    write_site_with_failing_handler(dir.path());
    add_call_from_other_to_app(dir.path());

    let output = run_demo(dir.path());
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(0), "{text}{}", stderr(&output));
    assert!(
        text.contains("skipped: app other -> app/api/hello (setting `TARGET_URL`): the Functions host of the calling function app does not start, so it never sends the call: custom handler `sh` for site `other` exited with exit code 3"),
        "{text}"
    );
    assert!(text.contains("all 2 probes: live result equals"), "{text}");
    assert!(!text.contains("!app other"), "{text}");
}

/// A forwarding handler that responds to GET on a function with 200 and the status of its own GET
/// to the URL in app setting `TARGET_URL`, sent through the egress proxy that `up` sets in
/// `HTTPS_PROXY`.
const CALLING_HANDLER: &str = r#"
import http.server, os, urllib.error, urllib.request
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        status = 0
        if self.path.startswith("/api/"):
            try:
                with urllib.request.urlopen(os.environ["TARGET_URL"], timeout=20) as response:
                    status = response.status
            except urllib.error.HTTPError as error:
                status = error.code
        body = ("target answered %d" % status).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
port = int(os.environ["FUNCTIONS_CUSTOMHANDLER_PORT"])
http.server.HTTPServer(("127.0.0.1", port), Handler).serve_forever()
"#;

#[test]
fn demo_skips_allowed_calls_to_failed_app() {
    // `app` calls `hello` on `other`, whose handler exits. With no rules on `other` the front
    // end lets the call through to a host that is not running, so it gets 503, which check
    // does not predict, and the call is skipped. When `other` denies everyone, the front end
    // responds with 403 before the host, so the call is compared.
    let deny_all =
        r#"[{"ipAddress": "192.0.2.1/32", "action": "Allow", "priority": 100, "name": "one"}]"#;
    for rules in [None, Some(deny_all)] {
        let dir = tempfile::tempdir().expect("temp dir");
        write_site_with_failing_handler(dir.path());
        std::fs::write(dir.path().join("app/handler.py"), CALLING_HANDLER).expect("handler");
        let path = dir.path().join("azuredeploy.json");
        let text = std::fs::read_to_string(&path).expect("template");
        let mut template: serde_json::Value = serde_json::from_str(&text).expect("template JSON");
        for resource in template["resources"].as_array_mut().expect("resources") {
            if resource["name"] == "app" {
                resource["properties"]["siteConfig"] = serde_json::json!({"appSettings": [
                    {"name": "TARGET_URL", "value": "https://other.azurewebsites.net/api/hello"}
                ]});
            }
            if let (true, Some(rules)) = (resource["name"] == "other", rules) {
                resource["properties"]["siteConfig"] = serde_json::json!({
                    "ipSecurityRestrictions": serde_json::from_str::<serde_json::Value>(rules).expect("rules")
                });
            }
        }
        std::fs::write(&path, template.to_string()).expect("template");

        let output = run_demo(dir.path());
        let text = stdout(&output);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{rules:?}: {text}{}",
            stderr(&output)
        );
        let call = "app app -> other/api/hello (setting `TARGET_URL`)";
        let skipped = format!(
            "skipped: {call}: the access restrictions allow the call, but the Functions host of the target function app does not start, so it gets 503 where check predicts 200: custom handler `sh` for site `other` exited with exit code 3"
        );
        match rules {
            None => {
                assert!(text.contains(&skipped), "{text}");
                assert!(text.contains("target answered 503"), "{text}");
                assert!(text.contains("all 2 probes: live result equals"), "{text}");
            }
            Some(_) => {
                assert!(!text.contains("skipped: app app"), "{text}");
                assert!(text.contains(&format!(" {call}")), "{text}");
                // The internet probe of `other` is denied too, so it is compared as well.
                assert!(text.contains(" internet -> GET other/ (no key)"), "{text}");
                assert!(text.contains("all 4 probes: live result equals"), "{text}");
            }
        }
    }
}

/// A forwarding handler that passes on the outcome of its GET to the URL in app setting
/// `TARGET_URL`, as function A of the example does: 200 `target answered 200`, or 502 with
/// the target's status when that is another one.
const RELAYING_HANDLER: &str = r#"
import http.server, os, urllib.error, urllib.request
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        try:
            with urllib.request.urlopen(os.environ["TARGET_URL"], timeout=20) as response:
                status = response.status
        except urllib.error.HTTPError as error:
            status = error.code
        body = ("target answered %d" % status).encode()
        self.send_response(200 if status == 200 else 502)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
port = int(os.environ["FUNCTIONS_CUSTOMHANDLER_PORT"])
http.server.HTTPServer(("127.0.0.1", port), Handler).serve_forever()
"#;

#[test]
fn demo_skips_probes_calling_failed_app() {
    // `app` calls `other`, whose handler exits, and passes the failure on. The front end lets
    // the call through, so what `app` returns depends on a 503 that check does not predict,
    // from a Functions host that did not start. The probe that runs `app`'s code differs from
    // the prediction and is skipped with the reason. The probe without key gets 401 before
    // that code, so it is compared. With a handler that ignores the failure, as in
    // `demo_skips_allowed_calls_to_failed_app`, both probes are compared.
    let dir = tempfile::tempdir().expect("temp dir");
    write_site_with_failing_handler(dir.path());
    std::fs::write(dir.path().join("app/handler.py"), RELAYING_HANDLER).expect("handler");
    let function = dir.path().join("app/hello/function.json");
    let text = std::fs::read_to_string(&function).expect("function.json");
    std::fs::write(&function, text.replace("anonymous", "function")).expect("function.json");
    set_target_url(dir.path(), "https://other.azurewebsites.net/api/hello");

    let output = run_demo(dir.path());
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(0), "{text}{}", stderr(&output));
    assert!(
        text.contains("skipped: internet -> GET app/api/hello (with key): live status 502 where check predicts 200, but the app's code calls `other` (setting `TARGET_URL`), whose Functions host does not start, and the access restrictions allow the call, so the response may depend on a 503 that check does not predict: custom handler `sh` for site `other` exited with exit code 3"),
        "{text}"
    );
    assert!(!text.contains("!internet -> GET app/api/hello"), "{text}");
    assert!(
        text.contains(" internet -> GET app/api/hello (no key)"),
        "{text}"
    );
    assert!(
        text.contains("the only probe: live result equals"),
        "{text}"
    );
}

/// Gives site `app` of the template in `dir` the app setting `TARGET_URL` with `url`.
fn set_target_url(dir: &Path, url: &str) {
    let path = dir.join("azuredeploy.json");
    let text = std::fs::read_to_string(&path).expect("template");
    let mut template: serde_json::Value = serde_json::from_str(&text).expect("template JSON");
    let app = template["resources"]
        .as_array_mut()
        .expect("resources")
        .iter_mut()
        .find(|resource| resource["name"] == "app")
        .expect("site `app`");
    app["properties"]["siteConfig"] = serde_json::json!({"appSettings": [
        {"name": "TARGET_URL", "value": url}
    ]});
    std::fs::write(&path, template.to_string()).expect("template");
}

#[test]
fn demo_compares_call_to_failed_apps_scm_site() {
    // `app` calls the scm site of `other`, whose handler exits. The scm site does not depend
    // on the Functions host: it requires publishing credentials, so the call gets the 401
    // that check predicts for it and is compared.
    let dir = tempfile::tempdir().expect("temp dir");
    write_site_with_failing_handler(dir.path());
    std::fs::write(dir.path().join("app/handler.py"), CALLING_HANDLER).expect("handler");
    set_target_url(dir.path(), "https://other.scm.azurewebsites.net/api/hello");

    let output = run_demo(dir.path());
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(0), "{text}{}", stderr(&output));
    assert!(!text.contains("skipped: app app"), "{text}");
    let call = text
        .lines()
        .find(|line| line.contains("app app -> other.scm/api/hello (setting `TARGET_URL`)"))
        .unwrap_or_else(|| panic!("no line for the call: {text}"));
    let columns: Vec<&str> = call.split_whitespace().collect();
    assert_eq!(columns.get(6..8), Some(&["401", "401"][..]), "{call}");
    assert!(text.contains("target answered 401"), "{text}");
    assert!(text.contains("all 3 probes: live result equals"), "{text}");
}

#[test]
fn demo_names_functions_without_example() {
    // The only function takes no method, so no request reaches it and both of its probes are
    // skipped. The error names that reason, not missing code.
    let dir = tempfile::tempdir().expect("temp dir");
    write_python_app(dir.path(), OK_HANDLER);
    write_function(
        dir.path(),
        "hello",
        &HTTP_FUNCTION.replace(r#""name": "req","#, r#""name": "req", "methods": [],"#),
    );

    let output = run_demo(dir.path());
    let text = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{}{text}", stdout(&output));
    assert!(
        stdout(&output).contains("skipped: internet -> app, function `hello`: "),
        "{}",
        stdout(&output)
    );
    assert!(
        text.contains("nothing to compare: every probe was skipped, because no request that the demo can build reaches any of the 1 function(s)"),
        "{text}"
    );
    assert!(
        !text.contains("no site of this deployment has bound code"),
        "{text}"
    );
}

#[test]
fn demo_fails_when_every_probe_skipped() {
    // Only `other` is bound, and its handler exits, so both its internet probes and its call
    // to `app` are skipped. The error names the skips, not missing code or calls.
    let dir = tempfile::tempdir().expect("temp dir");
    write_site_with_failing_handler(dir.path());
    add_call_from_other_to_app(dir.path());
    let binding = serde_json::json!({
        "template": "azuredeploy.json",
        "apps": [{"site": "other", "functionApp": "failing"}]
    });
    std::fs::write(dir.path().join("subnetlock.json"), binding.to_string()).expect("binding");

    let output = run_demo(dir.path());
    let text = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{}{text}", stdout(&output));
    assert!(
        text.contains("nothing to compare: every probe was skipped, because the Functions host of a site does not start"),
        "{text}"
    );
    assert!(
        stdout(&output).contains("skipped: app other -> app/api/hello"),
        "{}",
        stdout(&output)
    );
}

#[test]
fn demo_predicts_disabled_function() {
    // `hello` is disabled by its app setting: with its key it gets 404, without one 401.
    let dir = tempfile::tempdir().expect("temp dir");
    write_python_app(dir.path(), OK_HANDLER);
    std::fs::write(
        dir.path().join("azuredeploy.json"),
        site_with_hello_disabled(),
    )
    .expect("template");

    let output = run_demo(dir.path());
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(0), "{text}{}", stderr(&output));
    assert!(text.contains("all 2 probes: live result equals"), "{text}");
    let with_key = text
        .lines()
        .find(|line| line.contains("/api/hello (with key)"))
        .expect("probe with key");
    assert!(with_key.contains("404   404"), "{text}");
}

#[test]
fn demo_probes_custom_routes_and_methods() {
    // `items` takes only POST at a route with a parameter under the prefix `v1`, and `closed`
    // takes no method at all, so it is skipped rather than compared.
    let dir = tempfile::tempdir().expect("temp dir");
    let custom_handler = python_custom_handler();
    write_python_app(dir.path(), ANY_METHOD_HANDLER);
    let app = dir.path().join("app");
    let host = serde_json::json!({
        "version": "2.0",
        "customHandler": custom_handler,
        "extensions": {"http": {"routePrefix": "v1"}}
    });
    std::fs::write(app.join("host.json"), host.to_string()).expect("host.json");
    let function = |methods: serde_json::Value, route: &str, auth_level: &str| {
        serde_json::json!({"bindings": [
            {"type": "httpTrigger", "direction": "in", "name": "req", "authLevel": auth_level,
             "methods": methods, "route": route},
            {"type": "http", "direction": "out", "name": "res"}
        ]})
        .to_string()
    };
    for (name, json) in [
        (
            "items",
            function(serde_json::json!(["post"]), "items/{id:int}", "function"),
        ),
        ("closed", function(serde_json::json!([]), "", "anonymous")),
    ] {
        std::fs::create_dir_all(app.join(name)).expect("function dir");
        std::fs::write(app.join(name).join("function.json"), json).expect("function.json");
    }

    let output = run_demo(dir.path());
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(0), "{text}{}", stderr(&output));
    assert!(text.contains("all 4 probes: live result equals"), "{text}");
    let line = |label: &str| {
        text.lines()
            .find(|line| line.contains(label))
            .unwrap_or_else(|| panic!("no line with `{label}`:\n{text}"))
            .to_owned()
    };
    assert!(
        line("GET app/v1/hello (with key)").contains("200   200"),
        "{text}"
    );
    assert!(
        line("POST app/v1/items/1 (with key)").contains("200   200"),
        "{text}"
    );
    assert!(
        line("POST app/v1/items/1 (no key)").contains("401   401"),
        "{text}"
    );
    assert!(
        line("function `closed`").contains("`methods` list is empty"),
        "{text}"
    );
    assert!(!text.contains("/api/"), "{text}");
}

#[test]
fn up_invalid_route_names_file_and_fix() {
    let dir = tempfile::tempdir().expect("temp dir");
    write_bound_app(
        dir.path(),
        serde_json::json!({"description": {"defaultExecutablePath": "python3"}}),
    );
    let function_json = dir.path().join("app/hello/function.json");
    let function = serde_json::json!({"bindings": [
        {"type": "httpTrigger", "direction": "in", "name": "req", "route": "{a}/{a}"},
        {"type": "http", "direction": "out", "name": "res"}
    ]});
    std::fs::write(&function_json, function.to_string()).expect("function.json");

    // The app fails to load as a whole, so `up` runs the deployment and lists the app's error.
    let state = dir.path().join("state");
    let (_up, log) = start_up_logged(dir.path(), &state, &["--no-build"], dir.path());
    let text = log.wait_for_summary();
    assert!(
        text.contains("invalid route `{a}/{a}` of function `hello`"),
        "{text}"
    );
    assert!(
        text.contains(&format!("`{}`", function_json.display())),
        "{text}"
    );
    assert!(text.contains("help: change `route` in"), "{text}");
}

#[test]
fn up_try_line_uses_allowed_caller() {
    // The site allows only 198.51.100.0/24, so the usual example caller would get 403.
    let dir = tempfile::tempdir().expect("temp dir");
    write_python_app(dir.path(), OK_HANDLER);
    let rules = r#"[{"ipAddress": "198.51.100.0/24", "action": "Allow", "priority": 100, "name": "partner"}]"#;
    std::fs::write(dir.path().join("azuredeploy.json"), site_with_rules(rules)).expect("template");

    let state = dir.path().join("state");
    let mut up = spawn_up(
        dir.path(),
        &state,
        &["--no-build"],
        std::process::Stdio::piped(),
        std::process::Stdio::null(),
    );
    let output = up.child.stdout.take().expect("stdout");
    let call_line = std::io::BufRead::lines(std::io::BufReader::new(output))
        .map(|line| line.expect("stdout line"))
        .find(|line| line.trim_start().starts_with("subnetlock call"))
        .expect("a `subnetlock call` line to try");

    let words: Vec<&str> = call_line.split_whitespace().collect();
    let from_at = words
        .iter()
        .position(|word| *word == "--from")
        .expect("--from");
    let caller = words[from_at + 1].trim_matches('\'');
    let url = words.last().expect("URL").trim_matches('\'');
    assert_ne!(caller, "internet:203.0.113.7", "{call_line}");

    let called = subnetlock(&[
        "call",
        "--state-dir",
        state.to_str().expect("path"),
        "--from",
        caller,
        "--expect-status",
        "200",
        url,
    ]);
    assert_eq!(
        called.status.code(),
        Some(0),
        "{call_line}\n{}",
        stderr(&called)
    );
}

#[test]
fn up_function_lines_give_sendable_urls() {
    // `items` has a route parameter, so its template URL cannot be sent as it is. `manage` has
    // authLevel admin, so it accepts only the master key. No sample value meets the constraint
    // of `odd`.
    let dir = tempfile::tempdir().expect("temp dir");
    write_python_app(dir.path(), OK_HANDLER);
    let function = |fields: &str| {
        format!(
            r#"{{"bindings": [
                {{"type": "httpTrigger", "direction": "in", "name": "req", {fields}}},
                {{"type": "http", "direction": "out", "name": "res"}}
            ]}}"#
        )
    };
    write_function(
        dir.path(),
        "items",
        &function(r#""authLevel": "function", "route": "items/{id:int}""#),
    );
    write_function(dir.path(), "manage", &function(r#""authLevel": "admin""#));
    write_function(
        dir.path(),
        "odd",
        &function(r#""authLevel": "function", "route": "odd/{id:regex(^x\\d$)}""#),
    );
    write_function(
        dir.path(),
        "spaced",
        &function(r#""authLevel": "function", "route": "spaced/{id:regex(^x y$)}""#),
    );

    let state = dir.path().join("state");
    let (_up, log) = start_up_logged(dir.path(), &state, &[], dir.path());
    let listing = log.wait_for_summary();
    let line = |name: &str| {
        listing
            .lines()
            .find(|line| line.contains(&format!("function {name} (")))
            .unwrap_or_else(|| panic!("no line for `{name}`:\n{listing}"))
    };
    let last_word = |text: &str| text.split_whitespace().last().expect("URL").to_owned();

    let items = line("items");
    assert!(
        items.contains(": route items/{id:int}  e.g. https://"),
        "{listing}"
    );
    let items_url = last_word(items);
    assert!(items_url.contains("/api/items/1?code="), "{listing}");

    // `hello` is anonymous, so its URL carries no key.
    let hello = line("hello");
    assert!(hello.ends_with(".azurewebsites.net/api/hello"), "{listing}");
    assert!(!hello.contains("route "), "{listing}");
    let hello_url = last_word(hello);

    // A sample value is derived from the pattern of `odd`'s regex constraint.
    let odd = line("odd");
    assert!(
        odd.contains(r": route odd/{id:regex(^x\d$)}  e.g. https://"),
        "{listing}"
    );
    let odd_url = last_word(odd);
    assert!(odd_url.contains("/api/odd/x0?code="), "{listing}");

    // A value of `spaced` needs a space, which a URL path must percent-encode.
    let spaced = line("spaced");
    assert!(
        spaced.ends_with(r": route spaced/{id:regex(^x y$)}"),
        "{listing}"
    );
    let spaced_note = listing
        .lines()
        .skip_while(|line| !line.contains("function spaced ("))
        .nth(1)
        .expect("line after `spaced`");
    assert!(
        spaced_note.starts_with("    no example URL: no sample path for the route"),
        "{listing}"
    );
    assert!(
        spaced_note.contains("the parameter `id` has the constraint `regex(^x y$)`"),
        "{listing}"
    );

    let manage_url = last_word(line("manage"));
    assert!(manage_url.contains("/api/manage?code="), "{listing}");
    for url in [&items_url, &manage_url, &hello_url, &odd_url] {
        let called = subnetlock(&[
            "call",
            "--state-dir",
            state.to_str().expect("path"),
            "--from",
            "internet:203.0.113.7",
            "--expect-status",
            "200",
            url,
        ]);
        assert_eq!(called.status.code(), Some(0), "{url}\n{}", stderr(&called));
    }
}

/// A forwarding handler that responds with 200 `ok` to GET and POST.
const ANY_METHOD_HANDLER: &str = r#"
import http.server, os
class Handler(http.server.BaseHTTPRequestHandler):
    def answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")
    do_GET = answer
    do_POST = answer
    def log_message(self, *args):
        pass
port = int(os.environ["FUNCTIONS_CUSTOMHANDLER_PORT"])
http.server.HTTPServer(("127.0.0.1", port), Handler).serve_forever()
"#;

/// Sends `GET path` with the bearer token of the `up` whose state is in `state_dir` to its
/// control API and returns the response body.
fn control_get(state_dir: &Path, path: &str) -> String {
    control_request(state_dir, "GET", path, "")
}

/// Sends `method path` with `body` and the bearer token of the `up` whose state is in
/// `state_dir` to its control API, and returns the body of its 200 response.
fn control_request(state_dir: &Path, method: &str, path: &str, body: &str) -> String {
    use std::io::{Read, Write};
    let state: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(state_dir.join("state.json")).expect("state file"),
    )
    .expect("state JSON");
    let url = state["control_url"].as_str().expect("control_url");
    let address = url.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = std::net::TcpStream::connect(address).expect("connect");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        state["token"].as_str().expect("token"),
        body.len()
    )
    .expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    let (head, body) = response.split_once("\r\n\r\n").expect("response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    body.to_owned()
}

#[test]
fn up_internet_source_avoids_tag_prefixes() {
    // The tag's prefix contains the usual internet sample, so `internet` must get another
    // address, which only the service tags table passed to `up` reveals.
    let (dir, path) = template(&site_with_rules(
        r#"[{"ipAddress": "AzureFrontDoor.Backend", "tag": "ServiceTag", "action": "Deny", "priority": 100, "name": "deny-tag"}]"#,
    ));
    let tags = dir.path().join("ServiceTags_Public.json");
    std::fs::write(
        &tags,
        r#"{"values": [{"name": "AzureFrontDoor.Backend", "properties": {"addressPrefixes": ["203.0.113.0/24"]}}]}"#,
    )
    .expect("write service tags");

    let state = dir.path().join("state");
    let _up = start_up(
        &path,
        &state,
        &["--service-tags", tags.to_str().expect("path")],
    );
    wait_for(|| state.join("state.json").is_file(), "up to start");
    let source: serde_json::Value = serde_json::from_str(&control_request(
        &state,
        "POST",
        "/v1/sources",
        r#"{"from": "internet"}"#,
    ))
    .expect("source JSON");

    assert_eq!(source["from"], "internet:198.51.100.10", "{source}");
}

#[test]
fn up_serves_and_notes_every_finding() {
    // One allowed range locks the main site and leaves the scm site open (SL012, a warning
    // that only the reachability analysis finds).
    let (dir, path) = template(&site_with_rules(
        r#"[{"ipAddress": "198.51.100.0/24", "action": "Allow", "priority": 100, "name": "one"}]"#,
    ));
    let check = subnetlock(&["check", "--format", "json", path.to_str().expect("path")]);
    let expected: serde_json::Value = serde_json::from_str(&stdout(&check)).expect("check JSON");
    let codes = |findings: &serde_json::Value| -> Vec<String> {
        findings
            .as_array()
            .expect("findings")
            .iter()
            .map(|finding| finding["code"].as_str().expect("code").to_owned())
            .collect()
    };
    let expected = codes(&expected["findings"]);
    assert!(expected.contains(&"SL012".to_owned()), "{expected:?}");

    let state = dir.path().join("state");
    let (_up, log) = start_up_logged(&path, &state, &[], dir.path());
    wait_for(|| state.join("state.json").is_file(), "up to start");
    let served: serde_json::Value =
        serde_json::from_str(&control_get(&state, "/v1/findings")).expect("findings JSON");
    assert_eq!(codes(&served), expected);

    log.wait_for_summary();
    let text = log.stderr();
    assert!(
        text.contains("note: `subnetlock check` reports 1 warning (SL012) for this deployment"),
        "{text}"
    );
}

#[test]
fn up_shows_broken_and_disabled_functions() {
    // `hello` is disabled by its app setting and `broken` has invalid JSON. Both get 404, so
    // `up` must name them in its listing, its state file and its control API. `world` runs.
    let dir = tempfile::tempdir().expect("temp dir");
    write_python_app(dir.path(), OK_HANDLER);
    std::fs::create_dir_all(dir.path().join("app/broken")).expect("function dir");
    std::fs::write(
        dir.path().join("app/broken/function.json"),
        "{\"bindings\": [,]}",
    )
    .expect("function");
    std::fs::create_dir_all(dir.path().join("app/world")).expect("function dir");
    std::fs::copy(
        dir.path().join("app/hello/function.json"),
        dir.path().join("app/world/function.json"),
    )
    .expect("function");
    std::fs::write(
        dir.path().join("azuredeploy.json"),
        site_with_hello_disabled(),
    )
    .expect("template");

    let state = dir.path().join("state");
    let (_up, log) = start_up_logged(dir.path(), &state, &[], dir.path());
    let listing = log.wait_for_summary();
    assert!(
        listing.contains("function `broken` is in error and gets no route: invalid JSON in"),
        "{listing}"
    );
    assert!(
        listing.contains("help: fix the JSON syntax at the reported line and column"),
        "{listing}"
    );
    assert!(
        listing.contains("disabled by the app setting `AzureWebJobs.hello.Disabled`"),
        "{listing}"
    );
    // The example call goes to a function that runs.
    let try_call = listing
        .lines()
        .find(|line| line.contains("subnetlock call"))
        .expect("try line");
    assert!(try_call.contains("/api/world"), "{listing}");
    // `world` is anonymous, so it needs no key.
    assert!(!try_call.contains("code="), "{listing}");

    let from_file: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(state.join("state.json")).expect("state file"),
    )
    .expect("state JSON");
    let from_api: serde_json::Value =
        serde_json::from_str(&control_get(&state, "/v1/state")).expect("state JSON");
    for site_state in [&from_file["sites"][0], &from_api["sites"][0]] {
        let errors = &site_state["function_errors"];
        assert_eq!(errors[0]["name"], "broken", "{site_state}");
        let error = errors[0]["error"].as_str().expect("error");
        assert!(error.contains("broken/function.json"), "{error}");
        assert!(errors[0]["help"].is_string(), "{site_state}");
        assert_eq!(site_state["functions"][0]["name"], "hello", "{site_state}");
        assert_eq!(site_state["functions"][0]["disabled"], true, "{site_state}");
    }
}

#[test]
fn up_serves_function_in_error_finding() {
    // `broken` has invalid JSON, so the host leaves it out and `check` reports SL025 for it.
    let dir = tempfile::tempdir().expect("temp dir");
    write_python_app(dir.path(), OK_HANDLER);
    write_function(dir.path(), "broken", "{\n  \"bindings\": [,]\n}");
    let check = subnetlock(&[
        "check",
        "--format",
        "json",
        dir.path().to_str().expect("path"),
    ]);
    assert_eq!(check.status.code(), Some(0), "{}", stderr(&check));
    let expected: serde_json::Value = serde_json::from_str(&stdout(&check)).expect("check JSON");
    let expected = &expected["findings"];
    let function_findings = expected
        .as_array()
        .expect("findings")
        .iter()
        .filter(|finding| finding["code"] == "SL025")
        .count();
    assert_eq!(function_findings, 1, "{expected}");

    let state = dir.path().join("state");
    let (_up, log) = start_up_logged(dir.path(), &state, &[], dir.path());
    log.wait_for_summary();
    let served: serde_json::Value =
        serde_json::from_str(&control_get(&state, "/v1/findings")).expect("findings JSON");
    assert_eq!(&served, expected);

    let text = log.stderr();
    assert!(
        text.contains("note: `subnetlock check` reports 1 warning (SL025) for this deployment"),
        "{text}"
    );
}

/// A custom handler that responds to every GET with 200 `ok`.
const OK_HANDLER: &str = r#"
import http.server, os
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")
    def log_message(self, *args):
        pass
port = int(os.environ["FUNCTIONS_CUSTOMHANDLER_PORT"])
http.server.HTTPServer(("127.0.0.1", port), Handler).serve_forever()
"#;

#[test]
fn failed_up_removes_state_dir_it_made() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("azuredeploy.json"), site_with_rules("[]")).expect("template");
    let busy = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = busy.local_addr().expect("address").port().to_string();
    let up = |state: &Path| {
        Command::new(env!("CARGO_BIN_EXE_subnetlock"))
            .arg("up")
            .arg(dir.path())
            .arg("--state-dir")
            .arg(state)
            .args(["--https-port", &port])
            .output()
            .expect("up runs")
    };

    // A directory and its parent that `up` made go with the failed start.
    let made = dir.path().join("new/state");
    let output = up(&made);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("cannot listen on"),
        "{}",
        stderr(&output)
    );
    assert!(!made.exists(), "the state directory is left");
    assert!(!dir.path().join("new").exists(), "its parent is left");

    // A directory that existed keeps everything in it.
    let existing = dir.path().join("existing");
    std::fs::create_dir(&existing).expect("existing dir");
    std::fs::write(existing.join("notes.txt"), "keep").expect("notes");
    let output = up(&existing);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert_eq!(
        std::fs::read_to_string(existing.join("notes.txt")).expect("notes kept"),
        "keep"
    );
    assert!(existing.join("lock").is_file());
}

#[test]
fn missing_handler_stops_only_its_site() {
    // The handler executable does not exist, so `up` cannot spawn it. `up` still runs and
    // lists the site's error with the executable and the next step.
    let dir = tempfile::tempdir().expect("temp dir");
    write_bound_app(
        dir.path(),
        serde_json::json!({"description": {"defaultExecutablePath": "handler"}}),
    );
    let state = dir.path().join("state");
    let missing = dir.path().join("no-such-handler");
    let handler = format!("app={}", missing.display());
    let (_up, log) = start_up_logged(
        dir.path(),
        &state,
        &["--no-build", "--handler", &handler],
        dir.path(),
    );
    let listing = log.wait_for_summary();
    assert!(
        listing.contains(&format!(
            "  error: the Functions host of function app `{}` does not start: failed to start custom handler `{}` for site `app`: ",
            dir.path().join("app").display(),
            missing.display()
        )),
        "{listing}"
    );
    assert!(listing.contains("    help: check the handler"), "{listing}");
    assert!(!listing.contains("function hello"), "{listing}");
}

/// Writes the two sites of `TWO_SITES`: `app` with `OK_HANDLER`, and `other` bound to the
/// folder `failing`, whose handler writes two lines to stderr and exits with code 3. Returns
/// that folder.
fn write_site_with_failing_handler(dir: &Path) -> PathBuf {
    write_python_app(dir, OK_HANDLER);
    std::fs::write(dir.join("azuredeploy.json"), TWO_SITES).expect("template");
    let failing = dir.join("failing");
    std::fs::create_dir_all(failing.join("hello")).expect("function dir");
    let host = serde_json::json!({"version": "2.0", "customHandler": {
        "description": {"defaultExecutablePath": "sh", "arguments": ["exit.sh"]}
    }});
    std::fs::write(failing.join("host.json"), host.to_string()).expect("host.json");
    std::fs::write(
        failing.join("exit.sh"),
        "echo 'reading settings' >&2\necho 'missing setting DB_URL' >&2\nexit 3\n",
    )
    .expect("handler");
    std::fs::copy(
        dir.join("app/hello/function.json"),
        failing.join("hello/function.json"),
    )
    .expect("function");
    let binding = serde_json::json!({
        "template": "azuredeploy.json",
        "apps": [
            {"site": "app", "functionApp": "app"},
            {"site": "other", "functionApp": "failing"}
        ]
    });
    std::fs::write(dir.join("subnetlock.json"), binding.to_string()).expect("binding");
    failing
}

#[test]
fn up_runs_other_sites_when_handler_exits() {
    // The handler of `other` writes to stderr and exits at once, so its Functions host does
    // not start. `app` runs, and `other` responds as a Functions host that is not running.
    let dir = tempfile::tempdir().expect("temp dir");
    let failing = write_site_with_failing_handler(dir.path());

    let state = dir.path().join("state");
    let (_up, log) = start_up_logged(dir.path(), &state, &[], dir.path());
    let listing = log.wait_for_summary();
    let other = listing
        .split("\nsite ")
        .find(|section| section.starts_with("other"))
        .unwrap_or_else(|| panic!("no section for `other`:\n{listing}"));
    let exited = "custom handler `sh` for site `other` exited with exit code 3 before it responded to HTTP; last stderr lines: reading settings | missing setting DB_URL";
    assert!(
        other.contains(&format!(
            "  error: the Functions host of function app `{}` does not start: {exited}",
            failing.display()
        )),
        "{listing}"
    );
    assert!(
        other.contains(
            "every request the access restrictions allow gets 503 `Function host is not running.`"
        ),
        "{listing}"
    );
    assert!(
        other.contains("    help: the handler must listen on"),
        "{listing}"
    );
    assert!(!other.contains("function hello"), "{listing}");
    assert!(log.stderr().contains(exited), "{}", log.stderr());

    let from_file: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(state.join("state.json")).expect("state file"),
    )
    .expect("state JSON");
    let from_api: serde_json::Value =
        serde_json::from_str(&control_get(&state, "/v1/state")).expect("state JSON");
    for sites in [&from_file["sites"], &from_api["sites"]] {
        assert!(sites[0]["app_error"].is_null(), "{sites}");
        assert!(sites[0]["egress_proxy"].is_string(), "{sites}");
        let app_error = &sites[1]["app_error"];
        assert_eq!(
            app_error["function_app"].as_str(),
            failing.to_str(),
            "{app_error}"
        );
        assert_eq!(app_error["error"].as_str(), Some(exited), "{app_error}");
        assert!(app_error["help"].is_string(), "{app_error}");
        assert_eq!(sites[1]["functions"], serde_json::json!([]), "{sites}");
        assert!(sites[1]["egress_proxy"].is_null(), "{sites}");
    }

    let call = |url: &str, status: &str| {
        subnetlock(&[
            "call",
            "--state-dir",
            state.to_str().expect("path"),
            "--from",
            "internet",
            "-i",
            "--expect-status",
            status,
            url,
        ])
    };
    let running = call("https://app.azurewebsites.net/api/hello", "200");
    assert_eq!(running.status.code(), Some(0), "{}", stderr(&running));
    let stopped = call("https://other.azurewebsites.net/api/hello", "503");
    assert_eq!(stopped.status.code(), Some(0), "{}", stderr(&stopped));
    let response = stdout(&stopped);
    assert!(
        response
            .trim_end()
            .ends_with("Function host is not running."),
        "{response}"
    );
    assert!(
        !response
            .to_ascii_lowercase()
            .contains("x-subnetlock-origin"),
        "the site sends this response on Azure: {response}"
    );
}

#[test]
fn input_errors_have_help() {
    // A directory with neither a binding file nor the default template.
    let empty = tempfile::tempdir().expect("temp dir");
    let output = subnetlock(&["check", empty.path().to_str().expect("path")]);
    assert_eq!(output.status.code(), Some(2));
    let text = stderr(&output);
    assert!(
        text.contains(
            "has neither a `subnetlock.json` binding file nor an `azuredeploy.json` template"
        ),
        "{text}"
    );

    let output = subnetlock(&[
        "check",
        example().to_str().expect("path"),
        "--service-tags",
        "no/such/tags.json",
    ]);
    assert_eq!(output.status.code(), Some(2));
    let text = stderr(&output);
    assert!(
        text.contains("cannot read service tags file `no/such/tags.json`"),
        "{text}"
    );
    assert!(text.contains("help: download"), "{text}");

    // The JSON failure document carries the help too.
    let output = subnetlock(&["check", "--format", "json", "no/such/template.json"]);
    assert_eq!(output.status.code(), Some(2));
    let value: serde_json::Value = serde_json::from_str(&stdout(&output)).expect("json");
    assert!(
        value["help"]
            .as_str()
            .expect("help")
            .contains("ARM template"),
        "{value}"
    );
}

#[test]
fn explain_accepts_url_as_target() {
    let output = subnetlock(&[
        "explain",
        example().to_str().expect("path"),
        "--from",
        "internet",
        "--to",
        "https://function-app-b-yobmxbvmtplck.azurewebsites.net/api/function-b?code=x",
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(
        stdout(&output).starts_with(
            "internet:203.0.113.10 -> function-app-b-yobmxbvmtplck.azurewebsites.net (main site)"
        ),
        "{}",
        stdout(&output)
    );
}

#[test]
fn explain_accepts_expect_forms() {
    // `<site>.scm` and a caller kind in capitals, as an expectations file may write them.
    let cases = [
        (
            "internet",
            "function-app-b-yobmxbvmtplck.scm",
            "internet:203.0.113.10 -> function-app-b-yobmxbvmtplck.scm.azurewebsites.net (scm site)",
        ),
        (
            "Internet:198.51.100.7",
            "function-app-b-yobmxbvmtplck",
            "internet:198.51.100.7 -> function-app-b-yobmxbvmtplck.azurewebsites.net (main site)",
        ),
        (
            "internet:198.51.100.7",
            "FUNCTION-APP-B-yobmxbvmtplck.SCM",
            "internet:198.51.100.7 -> function-app-b-yobmxbvmtplck.scm.azurewebsites.net (scm site)",
        ),
    ];
    for (from, to, first_line) in cases {
        let output = subnetlock(&[
            "explain",
            example().to_str().expect("path"),
            "--from",
            from,
            "--to",
            to,
        ]);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{from} {to}: {}",
            stderr(&output)
        );
        let text = stdout(&output);
        assert!(text.contains(first_line), "{from} {to}: {text}");
    }
}

#[test]
fn error_causes_are_printed_once() {
    let missing = "No such file or directory";
    let dir = tempfile::tempdir().expect("temp dir");
    let example = example();
    let template = example.join("azuredeploy.json");
    let nowhere = dir.path().join("nowhere.json");

    let parameters = subnetlock(&[
        "check",
        template.to_str().expect("path"),
        "--parameters",
        nowhere.to_str().expect("path"),
    ]);
    assert_eq!(parameters.status.code(), Some(2));
    assert_eq!(
        stderr(&parameters).matches(missing).count(),
        1,
        "{}",
        stderr(&parameters)
    );

    let bindings = subnetlock(&[
        "check",
        example.to_str().expect("path"),
        "--bindings",
        nowhere.to_str().expect("path"),
    ]);
    assert_eq!(bindings.status.code(), Some(2));
    assert_eq!(
        stderr(&bindings).matches(missing).count(),
        1,
        "{}",
        stderr(&bindings)
    );

    let invalid = dir.path().join("subnetlock.json");
    std::fs::write(&invalid, "{\"apps\": [").expect("binding file");
    let bindings = subnetlock(&[
        "check",
        example.to_str().expect("path"),
        "--bindings",
        invalid.to_str().expect("path"),
    ]);
    assert_eq!(bindings.status.code(), Some(2));
    let text = stderr(&bindings);
    assert!(text.contains("at line 1, column 10"), "{text}");
    assert!(!text.contains("at line 1 column 10"), "{text}");

    // A document has no cause list, so the cause joins the message there.
    let json = subnetlock(&[
        "check",
        "--format",
        "json",
        template.to_str().expect("path"),
        "--parameters",
        nowhere.to_str().expect("path"),
    ]);
    let value: serde_json::Value = serde_json::from_str(&stdout(&json)).expect("json");
    let error = value["error"].as_str().expect("error");
    assert_eq!(error.matches(missing).count(), 1, "{error}");
}

/// Writes the quickstart layout into `dir`: `azuredeploy.json` with a plan and a nested
/// deployment whose `templateLink.uri` is built from `_artifactsLocation`, and
/// `nested/site.json` with a site that allows one address.
fn write_linked_quickstart(dir: &Path) {
    let main = r#"{
  "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
  "contentVersion": "1.0.0.0",
  "parameters": {
    "_artifactsLocation": { "type": "string", "defaultValue": "[deployment().properties.templateLink.uri]" },
    "_artifactsLocationSasToken": { "type": "securestring", "defaultValue": "" }
  },
  "resources": [
    { "type": "Microsoft.Web/serverfarms", "apiVersion": "2022-03-01", "name": "plan",
      "location": "westeurope", "sku": { "name": "S1", "tier": "Standard" } },
    { "type": "Microsoft.Resources/deployments", "apiVersion": "2022-09-01", "name": "site",
      "properties": { "mode": "Incremental",
        "templateLink": {
          "uri": "[uri(parameters('_artifactsLocation'), concat('nested/site.json', parameters('_artifactsLocationSasToken')))]"
        } } }
  ]
}"#;
    let site = r#"{
  "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
  "contentVersion": "1.0.0.0",
  "resources": [
    { "type": "Microsoft.Web/sites", "apiVersion": "2022-03-01", "name": "linked-app",
      "location": "westeurope", "kind": "app",
      "properties": {
        "serverFarmId": "[resourceId('Microsoft.Web/serverfarms', 'plan')]",
        "siteConfig": { "ipSecurityRestrictions": [
          { "ipAddress": "198.51.100.7/32", "action": "Allow", "priority": 100, "name": "office" }
        ] }
      } }
  ]
}"#;
    std::fs::create_dir_all(dir.join("nested")).expect("nested dir");
    std::fs::write(dir.join("azuredeploy.json"), main).expect("main template");
    std::fs::write(dir.join("nested/site.json"), site).expect("linked template");
}

fn finding_codes(value: &serde_json::Value) -> Vec<String> {
    value["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .map(|finding| finding["code"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[test]
fn check_artifacts_reads_linked_template() {
    let dir = tempfile::tempdir().expect("temp dir");
    write_linked_quickstart(dir.path());
    let template = dir.path().join("azuredeploy.json");
    let template = template.to_str().expect("path");
    let folder = dir.path().to_str().expect("path");

    let output = subnetlock(&["check", "--format", "json", template, "--artifacts", folder]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let value: serde_json::Value = serde_json::from_str(&stdout(&output)).expect("json");
    let sites = value["sites"].as_array().expect("sites");
    assert_eq!(sites.len(), 1);
    assert_eq!(sites[0]["name"], "linked-app");
    assert!(
        !finding_codes(&value).contains(&"SL010".to_owned()),
        "{}",
        stdout(&output)
    );

    // The same with the folder mapped to the address a parameter names.
    let output = subnetlock(&[
        "check",
        "--format",
        "json",
        template,
        "-p",
        "_artifactsLocation=https://raw.example.com/org/repo/main/azuredeploy.json",
        "--artifacts",
        &format!("https://raw.example.com/org/repo/main/={folder}"),
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let value: serde_json::Value = serde_json::from_str(&stdout(&output)).expect("json");
    assert_eq!(value["sites"][0]["name"], "linked-app");
}

#[test]
fn check_without_artifacts_leaves_link_unresolved() {
    let dir = tempfile::tempdir().expect("temp dir");
    write_linked_quickstart(dir.path());
    let template = dir.path().join("azuredeploy.json");

    let output = subnetlock(&[
        "check",
        "--format",
        "json",
        template.to_str().expect("path"),
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let value: serde_json::Value = serde_json::from_str(&stdout(&output)).expect("json");
    assert!(value["sites"].as_array().expect("sites").is_empty());
    assert!(finding_codes(&value).contains(&"SL010".to_owned()));
    let help = value["findings"][0]["help"].as_str().expect("help");
    assert!(help.contains("--artifacts"), "{help}");
}

#[test]
fn template_spec_link_help_in_every_format() {
    let dir = tempfile::tempdir().expect("temp dir");
    let id = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/specs/providers/Microsoft.Resources/templateSpecs/web-app/versions/1.0";
    let template = format!(
        r#"{{"$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
  "contentVersion": "1.0.0.0",
  "resources": [
    {{"type": "Microsoft.Web/serverfarms", "apiVersion": "2022-03-01", "name": "plan",
      "location": "westeurope", "sku": {{"name": "S1", "tier": "Standard"}}}},
    {{"type": "Microsoft.Resources/deployments", "apiVersion": "2022-09-01", "name": "spec",
      "properties": {{"mode": "Incremental", "templateLink": {{"id": "{id}"}}}}}}
  ]}}"#
    );
    let path = dir.path().join("azuredeploy.json");
    std::fs::write(&path, template).expect("write template");
    let folder = dir.path().to_str().expect("path");
    let export = format!("`az ts export --template-spec {id} --output-folder DIR`");

    // With and without `--artifacts`, because no artifacts folder can replace a template spec.
    for artifacts in [None, Some(folder)] {
        for format in ["human", "json", "sarif"] {
            let mut args = vec!["check", "--format", format, path.to_str().expect("path")];
            if let Some(folder) = artifacts {
                args.extend(["--artifacts", folder]);
            }
            let output = subnetlock(&args);
            assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
            let text = stdout(&output);
            let case = format!("{format}, --artifacts {artifacts:?}");
            assert!(
                text.contains(&format!("by `id` `{id}`, a template spec version")),
                "{case}: {text}"
            );
            assert!(
                text.contains("subnetlock does not read template specs offline"),
                "{case}: {text}"
            );
            assert!(text.contains(&export), "{case}: {text}");
            assert!(!text.contains("pass a local copy"), "{case}: {text}");
            assert!(!text.contains("--artifacts DIR"), "{case}: {text}");
            assert!(
                !text.contains("none of the `--artifacts`"),
                "{case}: {text}"
            );
        }
    }
}

#[test]
fn check_artifacts_missing_file_is_located() {
    let dir = tempfile::tempdir().expect("temp dir");
    write_linked_quickstart(dir.path());
    std::fs::remove_file(dir.path().join("nested/site.json")).expect("remove");
    let template = dir.path().join("azuredeploy.json");

    let output = subnetlock(&[
        "check",
        template.to_str().expect("path"),
        "--artifacts",
        dir.path().to_str().expect("path"),
    ]);
    assert_eq!(output.status.code(), Some(2));
    let error = stderr(&output);
    assert!(
        error.contains(
            "linked template `https://artifacts.subnetlock.invalid/nested/site.json` maps to"
        ),
        "{error}"
    );
    assert!(
        error.contains("nested/site.json`, which cannot be read"),
        "{error}"
    );
    assert!(
        error.contains("$.resources[1].properties.templateLink.uri"),
        "{error}"
    );
    assert!(error.contains("copy the linked template to"), "{error}");
}

#[test]
fn invalid_artifacts_flag() {
    let example = example();
    let example = example.to_str().expect("path");
    let cases = [
        ("=examples", "the URI before `=` is missing"),
        ("https://example.com/=", "the folder after `=` is missing"),
        (
            "https://example.com/repo/",
            "the folder after the URI is missing",
        ),
        ("", "the folder is missing"),
        (
            "does-not-exist",
            "artifacts folder `does-not-exist` is not a readable directory",
        ),
        (
            "ftp://example.com/=examples",
            "artifacts URI `ftp://example.com/` is not an absolute `http` or `https` URI",
        ),
    ];
    for (value, expected) in cases {
        let output = subnetlock(&["check", example, "--artifacts", value]);
        assert_eq!(output.status.code(), Some(2), "{value}");
        let error = stderr(&output);
        assert!(
            error.contains(&format!("invalid --artifacts `{value}`: {expected}")),
            "{value}: {error}"
        );
        assert!(error.contains("help:"), "{value}: {error}");
    }

    let output = subnetlock(&[
        "check",
        example,
        "--artifacts",
        "examples",
        "--artifacts",
        "crates",
    ]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("two folders stand for the template's own location"));
}

#[test]
fn check_unmapped_link_help_names_prefixes() {
    let dir = tempfile::tempdir().expect("temp dir");
    write_linked_quickstart(dir.path());
    let template = dir.path().join("azuredeploy.json");
    let folder = dir.path().to_str().expect("path");

    let output = subnetlock(&[
        "check",
        "--format",
        "json",
        template.to_str().expect("path"),
        "-p",
        "_artifactsLocation=https://other.example.com/org/azuredeploy.json",
        "-p",
        "_artifactsLocationSasToken=?sv=2022-11-02&sig=SECRET",
        "--artifacts",
        &format!("https://raw.example.com/org/repo/main/={folder}"),
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(!text.contains("SECRET"), "{text}");
    let value: serde_json::Value = serde_json::from_str(&text).expect("json");
    let finding = value["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .find(|finding| finding["code"] == "SL010")
        .expect("SL010");
    let help = finding["help"].as_str().expect("help");
    assert!(
        help.starts_with(
            "none of the `--artifacts` prefixes covers the link `https://other.example.com/org/nested/site.json?…`: "
        ),
        "{help}"
    );
    assert!(
        help.contains(&format!(
            "`https://raw.example.com/org/repo/main/` (folder `{folder}`)"
        )),
        "{help}"
    );
    assert!(
        help.contains("`--artifacts https://other.example.com/org/nested/=DIR`"),
        "{help}"
    );
    assert!(!help.contains("pass a local copy"), "{help}");
}

#[test]
fn artifacts_flag_errors_hide_sas_token() {
    let example = example();
    let example = example.to_str().expect("path");
    // (value, the message it gets)
    let cases = [
        (
            "https://acct.blob.core.windows.net/c/?sv=2022-11-02&sig=SECRET=examples",
            "invalid --artifacts `https://acct.blob.core.windows.net/c/?…`: artifacts URI `https://acct.blob.core.windows.net/c/?…` has a query or a fragment",
        ),
        (
            "https://acct.blob.core.windows.net/c/#sig=SECRET=examples",
            "invalid --artifacts `https://acct.blob.core.windows.net/c/#…`: artifacts URI `https://acct.blob.core.windows.net/c/#…` has a query or a fragment",
        ),
        (
            "ftp://acct.blob.core.windows.net/c/?sig=SECRET=examples",
            "invalid --artifacts `ftp://acct.blob.core.windows.net/c/?…`: artifacts URI `ftp://acct.blob.core.windows.net/c/?…` is not an absolute `http` or `https` URI",
        ),
    ];
    for (value, expected) in cases {
        let output = subnetlock(&["check", example, "--artifacts", value]);
        assert_eq!(output.status.code(), Some(2), "{value}");
        let error = stderr(&output);
        assert!(!error.contains("SECRET"), "{value}: {error}");
        assert!(error.contains(expected), "{value}: {error}");
    }
}

#[test]
fn unmapped_link_hides_fragment_and_credentials() {
    // A token after `#` or in the user information of a link is as secret as a query.
    let dir = tempfile::tempdir().expect("temp dir");
    let deployment = |name: &str, uri: &str| {
        format!(
            r#"{{"type": "Microsoft.Resources/deployments", "apiVersion": "2022-09-01", "name": "{name}",
      "properties": {{"mode": "Incremental", "templateLink": {{"uri": "{uri}"}}}}}}"#
        )
    };
    let template = format!(
        r#"{{"$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
  "contentVersion": "1.0.0.0",
  "parameters": {{"token": {{"type": "string", "defaultValue": "sv=2022-11-02&sig=SECRET"}}}},
  "resources": [{}, {}]}}"#,
        deployment(
            "fragment",
            "[concat('https://acct.blob.core.windows.net/c/nested/f.json#', parameters('token'))]"
        ),
        deployment(
            "credentials",
            "https://user:SECRET@acct.blob.core.windows.net/c/nested/u.json"
        ),
    );
    let path = dir.path().join("azuredeploy.json");
    std::fs::write(&path, template).expect("write template");
    let folder = dir.path().to_str().expect("path");
    let artifacts = format!("https://other.example.com/={folder}");

    for format in ["human", "json", "sarif"] {
        let output = subnetlock(&[
            "-vv",
            "check",
            "--format",
            format,
            path.to_str().expect("path"),
            "--artifacts",
            &artifacts,
        ]);
        assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
        let text = stdout(&output);
        assert!(!text.contains("SECRET"), "{format}: {text}");
        assert!(!stderr(&output).contains("SECRET"), "{format}");
        assert!(
            text.contains("https://acct.blob.core.windows.net/c/nested/f.json#…"),
            "{format}: {text}"
        );
        assert!(
            text.contains("https://…@acct.blob.core.windows.net/c/nested/u.json"),
            "{format}: {text}"
        );
        // The example prefix leaves the credentials out, since a prefix matches without them.
        assert!(
            text.contains("`--artifacts https://acct.blob.core.windows.net/c/nested/=DIR`"),
            "{format}: {text}"
        );
    }
}

/// Writes function `name` into the bound app folder of [`write_bound_app`], with `text` as its
/// function.json.
fn write_function(dir: &Path, name: &str, text: &str) -> PathBuf {
    let folder = dir.join("app").join(name);
    std::fs::create_dir_all(&folder).expect("function dir");
    let path = folder.join("function.json");
    std::fs::write(&path, text).expect("function.json");
    path
}

/// Returns the SL025 findings of a `check --format json` run.
fn function_findings(dir: &Path) -> Vec<serde_json::Value> {
    let output = subnetlock(&["check", "--format", "json", dir.to_str().expect("path")]);
    let value: serde_json::Value = serde_json::from_str(&stdout(&output)).expect("json");
    value["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter(|finding| finding["code"] == "SL025")
        .cloned()
        .collect()
}

const HTTP_FUNCTION: &str = r#"{"bindings": [
    {"type": "httpTrigger", "direction": "in", "name": "req", "authLevel": "anonymous"},
    {"type": "http", "direction": "out", "name": "res"}
]}"#;

#[test]
fn check_reports_function_in_error() {
    // `broken` has a stray comma at line 2, column 16, and `hello` and `world` load.
    let dir = tempfile::tempdir().expect("temp dir");
    write_bound_app(
        dir.path(),
        serde_json::json!({"description": {"defaultExecutablePath": "python3"}}),
    );
    let broken = write_function(dir.path(), "broken", "{\n  \"bindings\": [,]\n}");
    write_function(dir.path(), "world", HTTP_FUNCTION);
    let input = dir.path().to_str().expect("path");

    let human = subnetlock(&["check", input]);
    assert_eq!(human.status.code(), Some(0), "{}", stderr(&human));
    let text = stdout(&human);
    assert!(
        text.contains("warning SL025 function-loaded-in-error: site `app`: function `broken` is in error and gets no route: invalid JSON in"),
        "{text}"
    );
    assert!(
        text.contains(&format!("--> {}:2:16", broken.display())),
        "{text}"
    );
    assert!(
        text.contains("help: fix the JSON syntax at the reported line and column"),
        "{text}"
    );
    assert_eq!(text.matches("SL025").count(), 1, "{text}");
    // The finding replaces the loader's log line, which would repeat it on stderr.
    assert!(
        !stderr(&human).contains("function left out"),
        "{}",
        stderr(&human)
    );

    let findings = function_findings(dir.path());
    assert_eq!(findings.len(), 1, "{findings:?}");
    let finding = &findings[0];
    assert_eq!(finding["severity"], "warning");
    assert_eq!(finding["outcome"], "Silent");
    let resource = finding["resource"].as_str().expect("resource");
    assert!(
        resource.ends_with("/providers/Microsoft.Web/sites/app"),
        "{resource}"
    );
    assert_eq!(finding["location"]["file"], broken.to_str().expect("path"));
    assert_eq!(finding["location"]["line"], 2);
    assert_eq!(finding["location"]["column"], 16);
    assert!(finding["help"]
        .as_str()
        .expect("help")
        .contains("JSON syntax"));

    let sarif = subnetlock(&["check", "--format", "sarif", input]);
    assert_eq!(sarif.status.code(), Some(0), "{}", stderr(&sarif));
    let log: serde_json::Value = serde_json::from_str(&stdout(&sarif)).expect("sarif");
    let results = log["runs"][0]["results"].as_array().expect("results");
    let result = results
        .iter()
        .find(|result| result["ruleId"] == "SL025")
        .expect("SL025 result");
    assert_eq!(result["level"], "warning");
    let location = &result["locations"][0]["physicalLocation"];
    let uri = location["artifactLocation"]["uri"].as_str().expect("uri");
    assert!(uri.ends_with("/app/broken/function.json"), "{uri}");
    assert_eq!(location["region"]["startLine"], 2);
    assert_eq!(location["region"]["startColumn"], 16);
    let message = result["message"]["text"].as_str().expect("message");
    assert!(message.contains("fix the JSON syntax"), "{message}");
}

#[test]
fn check_fails_on_unparsable_route() {
    // ASP.NET Core cannot parse `items/{id`, so the host fails the whole app.
    let dir = tempfile::tempdir().expect("temp dir");
    write_bound_app(
        dir.path(),
        serde_json::json!({"description": {"defaultExecutablePath": "python3"}}),
    );
    let items_text = HTTP_FUNCTION.replace(
        r#""name": "req","#,
        r#""name": "req", "route": "items/{id","#,
    );
    let items = write_function(dir.path(), "items", &items_text);
    let (line, column) = line_column_of(&items_text, r#""items/{id""#);
    let input = dir.path().to_str().expect("path");

    let human = subnetlock(&["check", input]);
    assert_eq!(human.status.code(), Some(1), "{}", stderr(&human));
    let text = stdout(&human);
    assert!(
        text.contains("error SL025 function-loaded-in-error: site `app`: function app"),
        "{text}"
    );
    assert!(
        text.contains("fails to load, so its Functions host does not start and every request that the access restrictions allow gets 503: invalid route `items/{id` of function `items`"),
        "{text}"
    );
    assert!(
        text.contains(&format!("--> {}:{line}:{column}", items.display())),
        "{text}"
    );
    assert!(text.contains("help: change `route` in"), "{text}");

    let findings = function_findings(dir.path());
    assert_eq!(findings.len(), 1, "{findings:?}");
    assert_eq!(findings[0]["severity"], "error");
    assert_eq!(
        findings[0]["location"]["file"],
        items.to_str().expect("path")
    );

    let sarif = subnetlock(&["check", "--format", "sarif", input]);
    assert_eq!(sarif.status.code(), Some(1), "{}", stderr(&sarif));
    let log: serde_json::Value = serde_json::from_str(&stdout(&sarif)).expect("sarif");
    let result = log["runs"][0]["results"]
        .as_array()
        .expect("results")
        .iter()
        .find(|result| result["ruleId"] == "SL025")
        .cloned()
        .expect("SL025 result");
    assert_eq!(result["level"], "error");
    let uri = result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
        .as_str()
        .expect("uri");
    assert!(uri.ends_with("/app/items/function.json"), "{uri}");
    let region = &result["locations"][0]["physicalLocation"]["region"];
    assert_eq!(region["startLine"], line);
    assert_eq!(region["startColumn"], column);
}

/// Returns the 1-based line and column (in characters) where `needle` first occurs in `text`.
fn line_column_of(text: &str, needle: &str) -> (u64, u64) {
    let offset = text.find(needle).expect("needle in text");
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
    let column = before[line_start..].chars().count() + 1;
    (line as u64, column as u64)
}

#[test]
fn function_errors_point_at_field() {
    let dir = tempfile::tempdir().expect("temp dir");
    write_bound_app(
        dir.path(),
        serde_json::json!({"description": {"defaultExecutablePath": "python3"}}),
    );
    let with_route = |route: &str| {
        HTTP_FUNCTION.replace(
            r#""name": "req","#,
            &format!(r#""name": "req", "route": "{route}","#),
        )
    };
    // Each case: folder, function.json, and the text the finding points at, or `None` for the
    // file's start because no field is at fault.
    let cases: Vec<(&str, String, Option<&str>)> = vec![
        (
            "badlevel",
            HTTP_FUNCTION.replace(r#""anonymous""#, r#""nobody""#),
            Some(r#""nobody""#),
        ),
        ("manage", with_route("admin/x"), Some(r#""admin/x""#)),
        (
            "badname",
            HTTP_FUNCTION.replace(r#""res""#, r#""my-res""#),
            Some(r#""my-res""#),
        ),
        ("alpha", with_route("same"), None),
        // `beta` loads after `alpha` with the same route, so its route is at fault.
        ("beta", with_route("same"), Some(r#""same""#)),
        ("nobindings", "{\n  \"disabled\": false\n}".to_owned(), None),
        ("1st", HTTP_FUNCTION.to_owned(), None),
    ];
    let mut expected = Vec::new();
    for (name, text, at) in &cases {
        let path = write_function(dir.path(), name, text);
        if name == &"alpha" {
            continue;
        }
        let (line, column) = at.map_or((1, 1), |needle| line_column_of(text, needle));
        expected.push((*name, path, line, column));
    }
    let input = dir.path().to_str().expect("path");

    let findings = function_findings(dir.path());
    assert_eq!(findings.len(), expected.len(), "{findings:?}");
    let human = stdout(&subnetlock(&["check", input]));
    let sarif = subnetlock(&["check", "--format", "sarif", input]);
    let log: serde_json::Value = serde_json::from_str(&stdout(&sarif)).expect("sarif");
    let results = log["runs"][0]["results"].as_array().expect("results");

    for (name, path, line, column) in &expected {
        let finding = findings
            .iter()
            .find(|finding| finding["location"]["file"] == path.to_str().expect("path"))
            .unwrap_or_else(|| panic!("{name}: no finding in {findings:?}"));
        assert_eq!(finding["location"]["line"], *line, "{name}: {finding}");
        assert_eq!(finding["location"]["column"], *column, "{name}: {finding}");

        assert!(
            human.contains(&format!("--> {}:{line}:{column}", path.display())),
            "{name}: {human}"
        );

        let suffix = format!("/app/{name}/function.json");
        let region = results
            .iter()
            .map(|result| &result["locations"][0]["physicalLocation"])
            .find(|location| {
                location["artifactLocation"]["uri"]
                    .as_str()
                    .is_some_and(|uri| uri.ends_with(&suffix))
            })
            .map(|location| &location["region"])
            .unwrap_or_else(|| panic!("{name}: no SARIF result"));
        assert_eq!(region["startLine"], *line, "{name}: {region}");
        assert_eq!(region["startColumn"], *column, "{name}: {region}");
    }
}

#[test]
fn host_json_error_points_at_field() {
    let dir = tempfile::tempdir().expect("temp dir");
    write_bound_app(
        dir.path(),
        serde_json::json!({"description": {"defaultExecutablePath": "python3", "arguments": "handler.py"}}),
    );
    let host = dir.path().join("app").join("host.json");
    let text = std::fs::read_to_string(&host).expect("host.json");
    let (line, column) = line_column_of(&text, r#""handler.py""#);

    let findings = function_findings(dir.path());

    assert_eq!(findings.len(), 1, "{findings:?}");
    let finding = &findings[0];
    assert_eq!(finding["severity"], "error");
    assert_eq!(finding["location"]["file"], host.to_str().expect("path"));
    assert_eq!(finding["location"]["line"], line, "{finding}");
    assert_eq!(finding["location"]["column"], column, "{finding}");
}

#[test]
fn host_json_error_names_field_read() {
    // Each host.json has one error, in a field that the loader reads from a place other than
    // `customHandler` and `extensions`: the expected field name and the text it points at.
    let cases = [
        (
            "{\n  \"version\": \"2.0\",\n  \"http\": {\"routePrefix\": 5},\n  \"customHandler\": {\"description\": {\"defaultExecutablePath\": \"python3\"}}\n}\n",
            "`http.routePrefix`",
            "5}",
        ),
        (
            "{\n  \"version\": \"2.0\",\n  \"httpWorker\": {\"enableForwardingHttpRequest\": true}\n}\n",
            "`httpWorker.description`",
            "{\"enableForwardingHttpRequest\"",
        ),
        (
            "{\n  \"version\": \"2.0\",\n  \"customHandler\": {\"enableForwardingHttpRequest\": true}\n}\n",
            "`customHandler.description`",
            "{\"enableForwardingHttpRequest\"",
        ),
    ];
    for (text, field, at) in cases {
        let dir = tempfile::tempdir().expect("temp dir");
        write_bound_app(dir.path(), python_custom_handler());
        let host = dir.path().join("app").join("host.json");
        std::fs::write(&host, text).expect("host.json");
        let (line, column) = line_column_of(text, at);

        let findings = function_findings(dir.path());

        assert_eq!(findings.len(), 1, "{findings:?}");
        let finding = &findings[0];
        let message = finding["message"].as_str().expect("message");
        assert!(message.contains(&format!("invalid {field}")), "{message}");
        assert_eq!(finding["location"]["line"], line, "{field}: {finding}");
        assert_eq!(finding["location"]["column"], column, "{field}: {finding}");
    }
}

#[test]
fn host_json_type_error_points_at_value() {
    // Each host.json has one value of the wrong type: the full path of the value, the text it
    // starts with, and the type found.
    let cases = [
        (
            "{\n  \"version\": \"2.0\",\n  \"customHandler\": {\n    \"description\": {\"defaultExecutablePath\": 5}\n  }\n}\n",
            "customHandler.description.defaultExecutablePath",
            "5}",
            "expected a string, found the number 5",
        ),
        (
            "{\n  \"version\": \"2.0\",\n  \"customHandler\": {\n    \"description\": {\"defaultExecutablePath\": \"python3\"},\n    \"enableForwardingHttpRequest\": \"yes\"\n  }\n}\n",
            "customHandler.enableForwardingHttpRequest",
            "\"yes\"",
            "expected a boolean, found the string \"yes\"",
        ),
        (
            "{\n  \"version\": \"2.0\",\n  \"extensions\": {\"http\": {\"routePrefix\": 3}},\n  \"customHandler\": {\"description\": {\"defaultExecutablePath\": \"python3\"}}\n}\n",
            "extensions.http.routePrefix",
            "3}",
            "expected a string, found the number 3",
        ),
    ];
    for (text, field, at, types) in cases {
        let dir = tempfile::tempdir().expect("temp dir");
        write_bound_app(dir.path(), python_custom_handler());
        let host = dir.path().join("app").join("host.json");
        std::fs::write(&host, text).expect("host.json");
        let (line, column) = line_column_of(text, at);

        let findings = function_findings(dir.path());

        assert_eq!(findings.len(), 1, "{field}: {findings:?}");
        let finding = &findings[0];
        assert_eq!(finding["severity"], "error", "{field}: {finding}");
        let message = finding["message"].as_str().expect("message");
        assert!(
            message.contains(&format!(
                "invalid `{field}` in `{}` at line {line}, column {column}: {types}",
                host.display()
            )),
            "{message}"
        );
        assert_eq!(finding["location"]["file"], host.to_str().expect("path"));
        assert_eq!(finding["location"]["line"], line, "{field}: {finding}");
        assert_eq!(finding["location"]["column"], column, "{field}: {finding}");
        let help = finding["help"].as_str().expect("help");
        assert!(help.contains(&format!("write `{field}` as ")), "{help}");
    }
}

#[test]
fn missing_default_executable_path_agrees() {
    // The Functions host does not start without `defaultExecutablePath`, also when the binding
    // file names a local executable. `check` reports the app at the section that lacks the
    // field, and `up` runs the site as a host that is not running.
    let text = "{\n  \"version\": \"2.0\",\n  \"customHandler\": {\n    \"description\": {\"arguments\": [\"handler.py\"]},\n    \"enableForwardingHttpRequest\": true\n  }\n}\n";
    let (line, column) = line_column_of(text, "{\"arguments\"");
    for executable in [None, Some("python3")] {
        let dir = tempfile::tempdir().expect("temp dir");
        write_python_app(dir.path(), OK_HANDLER);
        let host = dir.path().join("app").join("host.json");
        std::fs::write(&host, text).expect("host.json");
        let mut app = serde_json::json!({"site": "app", "functionApp": "app"});
        if let Some(executable) = executable {
            app["executable"] = executable.into();
        }
        let binding = serde_json::json!({"template": "azuredeploy.json", "apps": [app]});
        std::fs::write(dir.path().join("subnetlock.json"), binding.to_string()).expect("binding");

        let output = subnetlock(&["check", dir.path().to_str().expect("path")]);
        assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
        let findings = function_findings(dir.path());
        assert_eq!(findings.len(), 1, "{executable:?}: {findings:?}");
        let finding = &findings[0];
        assert_eq!(finding["severity"], "error", "{finding}");
        let message = finding["message"].as_str().expect("message");
        assert!(
            message.contains("invalid `customHandler.description.defaultExecutablePath`"),
            "{message}"
        );
        assert_eq!(finding["location"]["file"], host.to_str().expect("path"));
        assert_eq!(finding["location"]["line"], line, "{finding}");
        assert_eq!(finding["location"]["column"], column, "{finding}");

        let state = dir.path().join("state");
        let (_up, log) = start_up_logged(dir.path(), &state, &[], dir.path());
        let listing = log.wait_for_summary();
        assert!(
            listing.contains("error: the Functions host of function app `"),
            "{executable:?}: {listing}"
        );
        assert!(
            listing.contains("invalid `customHandler.description.defaultExecutablePath`"),
            "{executable:?}: {listing}"
        );
    }
}

#[test]
fn check_clean_function_app_has_no_finding() {
    let dir = tempfile::tempdir().expect("temp dir");
    write_bound_app(
        dir.path(),
        serde_json::json!({"description": {"defaultExecutablePath": "python3"}}),
    );
    write_function(dir.path(), "world", HTTP_FUNCTION);
    // A function without an HTTP trigger is no error, only no route.
    write_function(
        dir.path(),
        "nightly",
        r#"{"bindings": [{"type": "timerTrigger", "direction": "in", "name": "timer", "schedule": "0 0 * * * *"}]}"#,
    );

    let output = subnetlock(&["check", dir.path().to_str().expect("path")]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(!stdout(&output).contains("SL025"), "{}", stdout(&output));
    assert_eq!(function_findings(dir.path()).len(), 0);

    // The same app with a reserved route gets one, so the checks above can fail.
    write_function(
        dir.path(),
        "manage",
        &HTTP_FUNCTION.replace(r#""name": "req","#, r#""name": "req", "route": "admin/x","#),
    );
    let findings = function_findings(dir.path());
    assert_eq!(findings.len(), 1, "{findings:?}");
    let message = findings[0]["message"].as_str().expect("message");
    assert!(message.contains("function `manage`"), "{message}");
}

#[test]
fn up_prints_closing_lines_on_signal() {
    for signal in ["-TERM", "-INT"] {
        let dir = tempfile::tempdir().expect("temp dir");
        write_python_app(dir.path(), OK_HANDLER);
        let state = dir.path().join("state");
        let (mut up, log) = start_up_logged(dir.path(), &state, &[], dir.path());
        log.wait_for_summary();

        let sent = Command::new("kill")
            .args([signal, &up.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(sent.success());
        let status = up.child.wait().expect("wait");
        assert_eq!(status.code(), Some(0), "{signal}");

        let text = log.stderr();
        let state = std::fs::canonicalize(&state).expect("state dir");
        assert!(
            text.contains("stopped: front end and egress proxies closed, 1 custom handler ended"),
            "{signal}: {text}"
        );
        assert!(
            text.contains(&format!(
                "decision log: {}; state directory: {} (state.json removed)",
                state.join("decisions.jsonl").display(),
                state.display()
            )),
            "{signal}: {text}"
        );
        assert!(state.join("decisions.jsonl").is_file());
        assert!(!state.join("state.json").exists());
    }
}

/// Two sites on one plan, `app` and `other`, without rules.
const TWO_SITES: &str = r#"{
  "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
  "contentVersion": "1.0.0.0",
  "resources": [
    { "type": "Microsoft.Web/serverfarms", "apiVersion": "2022-03-01", "name": "plan",
      "location": "westeurope", "sku": { "name": "S1", "tier": "Standard" } },
    { "type": "Microsoft.Web/sites", "apiVersion": "2022-03-01", "name": "app",
      "location": "westeurope", "kind": "functionapp",
      "properties": { "serverFarmId": "[resourceId('Microsoft.Web/serverfarms', 'plan')]" } },
    { "type": "Microsoft.Web/sites", "apiVersion": "2022-03-01", "name": "other",
      "location": "westeurope", "kind": "functionapp",
      "properties": { "serverFarmId": "[resourceId('Microsoft.Web/serverfarms', 'plan')]" } }
  ]
}"#;

#[test]
fn up_runs_other_sites_when_app_fails() {
    // `other` is bound to a folder whose host.json is invalid JSON, so its host cannot start.
    // `app` runs, and `other` responds as a Functions host that is not running.
    let dir = tempfile::tempdir().expect("temp dir");
    write_python_app(dir.path(), OK_HANDLER);
    std::fs::write(dir.path().join("azuredeploy.json"), TWO_SITES).expect("template");
    let broken = dir.path().join("broken");
    std::fs::create_dir_all(broken.join("hello")).expect("function dir");
    std::fs::write(broken.join("host.json"), "{\"version\": \"2.0\",}").expect("host.json");
    std::fs::copy(
        dir.path().join("app/hello/function.json"),
        broken.join("hello/function.json"),
    )
    .expect("function");
    let binding = serde_json::json!({
        "template": "azuredeploy.json",
        "apps": [
            {"site": "app", "functionApp": "app"},
            {"site": "other", "functionApp": "broken"}
        ]
    });
    std::fs::write(dir.path().join("subnetlock.json"), binding.to_string()).expect("binding");

    let check = subnetlock(&["check", dir.path().to_str().expect("path")]);
    assert_eq!(check.status.code(), Some(1), "{}", stderr(&check));
    let report = stdout(&check);
    assert!(report.contains("site `other`: function app"), "{report}");
    assert!(
        report.contains("fails to load, so its Functions host does not start and every request that the access restrictions allow gets 503"),
        "{report}"
    );

    let state = dir.path().join("state");
    let (_up, log) = start_up_logged(dir.path(), &state, &[], dir.path());
    let listing = log.wait_for_summary();
    let other = listing
        .split("\nsite ")
        .find(|section| section.starts_with("other"))
        .unwrap_or_else(|| panic!("no section for `other`:\n{listing}"));
    assert!(
        other.contains(&format!(
            "  error: the Functions host of function app `{}` does not start: invalid JSON in `",
            broken.display()
        )),
        "{listing}"
    );
    assert!(
        other.contains(
            "every request the access restrictions allow gets 503 `Function host is not running.`"
        ),
        "{listing}"
    );
    assert!(other.contains("    help: "), "{listing}");
    assert!(!other.contains("function hello"), "{listing}");

    let from_file: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(state.join("state.json")).expect("state file"),
    )
    .expect("state JSON");
    let from_api: serde_json::Value =
        serde_json::from_str(&control_get(&state, "/v1/state")).expect("state JSON");
    for sites in [&from_file["sites"], &from_api["sites"]] {
        assert!(sites[0]["app_error"].is_null(), "{sites}");
        let app_error = &sites[1]["app_error"];
        let error = app_error["error"].as_str().expect("error");
        assert!(error.contains("host.json"), "{error}");
        assert!(app_error["help"].is_string(), "{app_error}");
        assert_eq!(sites[1]["functions"], serde_json::json!([]), "{sites}");
    }

    let call = |url: &str, status: &str| {
        subnetlock(&[
            "call",
            "--state-dir",
            state.to_str().expect("path"),
            "--from",
            "internet",
            "-i",
            "--expect-status",
            status,
            url,
        ])
    };
    let running = call("https://app.azurewebsites.net/api/hello", "200");
    assert_eq!(running.status.code(), Some(0), "{}", stderr(&running));
    let stopped = call("https://other.azurewebsites.net/api/hello", "503");
    assert_eq!(stopped.status.code(), Some(0), "{}", stderr(&stopped));
    let response = stdout(&stopped);
    assert!(
        response
            .trim_end()
            .ends_with("Function host is not running."),
        "{response}"
    );
    assert!(
        !response
            .to_ascii_lowercase()
            .contains("x-subnetlock-origin"),
        "the site sends this response on Azure: {response}"
    );
}

#[test]
fn up_try_line_notes_denied_curl() {
    // The rule allows the call line's caller, 203.0.113.7, but not curl's loopback source.
    let dir = tempfile::tempdir().expect("temp dir");
    write_python_app(dir.path(), OK_HANDLER);
    let rules = r#"[{"ipAddress": "128.0.0.0/1", "action": "Allow", "priority": 100, "name": "upper-half"}]"#;
    std::fs::write(dir.path().join("azuredeploy.json"), site_with_rules(rules)).expect("template");

    let state = dir.path().join("state");
    let (_up, log) = start_up_logged(dir.path(), &state, &[], dir.path());
    let listing = log.wait_for_summary();
    let lines: Vec<&str> = listing.lines().collect();
    let call_at = lines
        .iter()
        .position(|line| line.trim_start().starts_with("subnetlock call"))
        .unwrap_or_else(|| panic!("no call line:\n{listing}"));
    assert!(
        lines[call_at].contains("--from internet:203.0.113.7"),
        "{listing}"
    );
    assert!(
        lines[call_at + 1].trim_start().starts_with("curl"),
        "{listing}"
    );
    assert!(
        lines.get(call_at + 2).is_some_and(|note| note
            .contains("check predicts 403 for this curl command: its source is 127.0.0.1")),
        "{listing}"
    );
}
