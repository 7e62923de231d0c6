//! `subnetlock check --expect`: expectations about who may reach whom, run through the binary.

// Tests fail loudly on broken fixtures.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::path::Path;

use common::{stderr, stdout, subnetlock, workspace_root};

fn example() -> String {
    workspace_root()
        .join("examples/lock-in-subnet")
        .to_str()
        .expect("path")
        .to_owned()
}

/// Writes `text` as `expect.json` in `dir` and returns its path as a string.
fn write_expectations(dir: &Path, text: &str) -> String {
    let path = dir.join("expect.json");
    std::fs::write(&path, text).expect("write expectations");
    path.to_str().expect("path").to_owned()
}

/// The lockdown of the example: A reaches B, the internet does not, and B's scm site stays
/// open (SL012), with comments as templates may have them.
const EXAMPLE_LOCKDOWN: &str = r#"{
  // Function app B takes calls only from A's integration subnet.
  "expect": [
    { "from": "app:function-app-a-*", "to": "function-app-b-*", "verdict": "allow" },
    { "from": "internet", "to": "function-app-b-*", "verdict": "deny" },
    /* The scm site has no rules of its own. */
    { "from": "internet", "to": "function-app-b-*.scm", "verdict": "allow" },
    { "from": "internet:198.51.100.7", "to": "https://function-app-b-yobmxbvmtplck.azurewebsites.net/api/function-b", "verdict": "deny" },
    { "from": "subnet:vnet/default", "to": "function-app-b-*.azurewebsites.net", "verdict": "allow" }
  ]
}"#;

/// Expectations the example does not meet: its scm site is open, and app B cannot call itself.
const EXAMPLE_VIOLATED: &str = r#"{
  "expect": [
    { "from": "app:function-app-a-*", "to": "function-app-b-*", "verdict": "allow" },
    { "from": "internet", "to": "function-app-b-*.scm.azurewebsites.net", "verdict": "deny" },
    { "from": "app:*", "to": "function-app-b-*", "verdict": "allow" }
  ]
}"#;

/// A site whose main rule list is a `reference()` to a resource outside the template, which
/// `check` cannot evaluate offline.
const UNKNOWN_RULES_TEMPLATE: &str = r#"{
  "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
  "contentVersion": "1.0.0.0",
  "resources": [
    { "type": "Microsoft.Web/serverfarms", "apiVersion": "2022-03-01", "name": "plan",
      "location": "westeurope", "sku": { "name": "S1", "tier": "Standard" } },
    { "type": "Microsoft.Web/sites", "apiVersion": "2022-03-01", "name": "app",
      "location": "westeurope", "kind": "app",
      "properties": {
        "serverFarmId": "[resourceId('Microsoft.Web/serverfarms', 'plan')]",
        "siteConfig": {
          "ipSecurityRestrictions": "[reference(resourceId('Microsoft.Network/ipGroups', 'x'), '2023-09-01').rules]"
        }
      } }
  ]
}"#;

#[test]
fn expect_example_lockdown_passes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = write_expectations(dir.path(), EXAMPLE_LOCKDOWN);
    let output = subnetlock(&["check", &example(), "--expect", &file]);
    assert_eq!(output.status.code(), Some(0), "{}", stdout(&output));

    let text = stdout(&output);
    let section = text
        .split_once("\nexpectations (")
        .expect("expectations section")
        .1;
    let lines: Vec<&str> = section.lines().skip(1).collect();
    assert_eq!(lines.len(), 6, "{section}");

    for line in &lines[..5] {
        assert!(line.starts_with("  PASS "), "{line}");
    }
    assert!(lines[0].contains(
        "4:5 expected allow for app:function-app-a-* -> function-app-b-*; app:function-app-a-yobmxbvmtplck -> function-app-b-yobmxbvmtplck.azurewebsites.net: allowed: main rule 0 `lock-to-subnet` (priority 100, Allow) matched"
    ), "{}", lines[0]);
    assert!(
        lines[1].contains("denied: no main rule matched (implicit deny all)"),
        "{}",
        lines[1]
    );
    assert!(
        lines[2].contains(
            "function-app-b-yobmxbvmtplck.scm.azurewebsites.net: allowed: the scm list has no rules (allow all)"
        ),
        "{}",
        lines[2]
    );
    assert!(
        lines[3].contains("internet:198.51.100.7 -> "),
        "{}",
        lines[3]
    );
    assert!(lines[4].contains("subnet:vnet/default -> "), "{}", lines[4]);
    assert_eq!(
        lines[5],
        "  5 expectation(s): 5 passed, 0 failed, 0 not proven"
    );
}

#[test]
fn expect_violated_names_deciding_rule() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = write_expectations(dir.path(), EXAMPLE_VIOLATED);
    let output = subnetlock(&["check", &example(), "--expect", &file]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(text.contains("  PASS       3:5 expected allow"), "{text}");
    assert!(
        text.contains(
            "  FAIL       4:5 expected deny for internet -> function-app-b-*.scm.azurewebsites.net; internet:203.0.113.10 -> function-app-b-yobmxbvmtplck.scm.azurewebsites.net: allowed: the scm list has no rules (allow all)"
        ),
        "{text}"
    );
    // `app:*` matches both apps, and only B's call to itself is denied.
    assert!(
        text.contains(
            "  FAIL       5:5 expected allow for app:* -> function-app-b-*; app:function-app-b-yobmxbvmtplck -> function-app-b-yobmxbvmtplck.azurewebsites.net: denied: no main rule matched (implicit deny all) (1 of 2 pairs fail)"
        ),
        "{text}"
    );
    assert!(
        text.contains("3 expectation(s): 1 passed, 2 failed, 0 not proven"),
        "{text}"
    );
}

#[test]
fn expect_unknown_rule_list_not_proven() {
    let dir = tempfile::tempdir().expect("temp dir");
    let template = dir.path().join("azuredeploy.json");
    std::fs::write(&template, UNKNOWN_RULES_TEMPLATE).expect("template");
    let template = template.to_str().expect("path");
    let expect = |verdict: &str| {
        let file = write_expectations(
            dir.path(),
            &format!(
                r#"{{"expect": [{{"from": "internet", "to": "app", "verdict": "{verdict}"}}]}}"#
            ),
        );
        subnetlock(&["check", template, "--expect", &file])
    };

    // Offline, the unknown list is replaced by a placeholder that matches nothing, so the row
    // reads "denied". Neither verdict is proven.
    for verdict in ["deny", "allow"] {
        let output = expect(verdict);
        assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
        let text = stdout(&output);
        assert!(text.contains("  NOT PROVEN 1:13 expected"), "{text}");
        assert!(
            text.contains(
                "depending on values known only at deployment time: main rule list: reference("
            ),
            "{text}"
        );
        assert!(
            text.contains("Microsoft.Network/ipGroups/x', '2023-09-01').rules"),
            "{text}"
        );
        assert!(text.contains("0 passed, 0 failed, 1 not proven"), "{text}");
    }
}

#[test]
fn expect_invalid_files_exit_2() {
    // (file text, expected start of the message after `expect.json:`, expected help)
    let cases = [
        (
            r#"{"expect": [{"from": "internet", "to": "function-app-b-*", "verdict": "deny", "why": "x"}]}"#,
            "1:83: invalid expectations file: unknown field `why`, expected one of `from`, `to`, `verdict`",
            r#"an expectations file is {"expect": [{"from": "<caller>""#,
        ),
        (
            r#"{"expect": [{"from": "internet", "from": "internet", "to": "b", "verdict": "deny"}]}"#,
            "1:39: invalid expectations file: duplicate field `from`",
            "an expectations file is",
        ),
        (
            r#"{"expects": []}"#,
            "1:10: invalid expectations file: unknown field `expects`, expected `expect`",
            "an expectations file is",
        ),
        (
            "{\"expect\": [\n  {\"from\": \"internet\", \"to\": \"function-app-b-*\"}\n]}",
            "2:48: invalid expectations file: missing field `verdict`",
            "an expectations file is",
        ),
        (
            r#"{"expect": [{"from": "internet", "to": "function-app-b-*", "verdict": "deny"},]}"#,
            "1:79: invalid expectations file: trailing comma",
            "an expectations file is",
        ),
        (
            r#"{"expect": ["internet"]}"#,
            "1:22: invalid expectations file: invalid type: string \"internet\", expected an object with `from`, `to` and `verdict`",
            "an expectations file is",
        ),
        (
            r#"{"expect": []}"#,
            " the expectations file has no expectations",
            "an expectations file is",
        ),
        (
            "{\"expect\": [\n  {\"from\": \"internet\", \"to\": \"function-app-b-*\", \"verdict\": \"block\"}\n]}",
            "2:61: invalid verdict \"block\"",
            "write \"allow\" or \"deny\"",
        ),
        (
            r#"{"expect": [{"from": "vm:x", "to": "function-app-b-*", "verdict": "deny"}]}"#,
            "1:22: invalid caller \"vm:x\"",
            "write `internet`, `internet:<address>`, `subnet:<vnet>/<subnet>`, `app:<site>` or `servicetag:<tag>`",
        ),
        (
            r#"{"expect": [{"from": "internet:1.2.3", "to": "function-app-b-*", "verdict": "deny"}]}"#,
            "1:22: invalid caller \"internet:1.2.3\"",
            "give one IPv4 or IPv6 address",
        ),
        (
            r#"{"expect": [{"from": "internet", "to": "", "verdict": "deny"}]}"#,
            "1:40: invalid target \"\"",
            "write a site name such as `function-app-b-*`, `<site>.scm` for its scm site",
        ),
        (
            r#"{"expect": [{"from": "internet", "to": "function-app-c-*", "verdict": "deny"}]}"#,
            "1:40: `function-app-c-*` matches no site in this deployment",
            "sites in this deployment: function-app-a-yobmxbvmtplck, function-app-b-yobmxbvmtplck",
        ),
        (
            r#"{"expect": [{"from": "app:function-app-c-*", "to": "function-app-b-*", "verdict": "deny"}]}"#,
            "1:22: `app:function-app-c-*` matches no app in this deployment",
            "callers of this kind in this deployment: app:function-app-b-yobmxbvmtplck, app:function-app-a-yobmxbvmtplck",
        ),
        (
            r#"{"expect": [{"from": "subnet:vnet/nope", "to": "function-app-b-*", "verdict": "deny"}]}"#,
            "1:22: `subnet:vnet/nope` matches no subnet in this deployment",
            "callers of this kind in this deployment: subnet:vnet/default",
        ),
    ];
    let dir = tempfile::tempdir().expect("temp dir");
    for (text, message, help) in cases {
        let file = write_expectations(dir.path(), text);
        let output = subnetlock(&["check", &example(), "--expect", &file]);
        assert_eq!(output.status.code(), Some(2), "{text}: {}", stdout(&output));
        let report = stderr(&output);
        assert!(
            report.contains(&format!("expect.json:{message}")),
            "{text}: {report}"
        );
        assert!(report.contains(help), "{text}: {report}");
    }
}

#[test]
fn expect_missing_file_exit_2() {
    let output = subnetlock(&["check", &example(), "--expect", "/nonexistent/expect.json"]);
    assert_eq!(output.status.code(), Some(2));
    let report = stderr(&output);
    assert!(
        report.contains("cannot read expectations file `/nonexistent/expect.json`"),
        "{report}"
    );
}

#[test]
fn expect_json_shape() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = write_expectations(dir.path(), EXAMPLE_VIOLATED);
    let output = subnetlock(&["check", "--format", "json", &example(), "--expect", &file]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let value: serde_json::Value = serde_json::from_str(&stdout(&output)).expect("json");
    let expectations = value["expectations"].as_array().expect("expectations");
    assert_eq!(expectations.len(), 3);

    let scm = &expectations[1];
    assert_eq!(scm["from"], "internet");
    assert_eq!(scm["to"], "function-app-b-*.scm.azurewebsites.net");
    assert_eq!(scm["verdict"], "deny");
    assert_eq!(scm["status"], "fail");
    assert_eq!(scm["location"]["file"], file.as_str());
    assert_eq!(scm["location"]["line"], 4);
    assert_eq!(scm["location"]["column"], 5);
    let pairs = scm["pairs"].as_array().expect("pairs");
    assert_eq!(pairs.len(), 1);
    assert_eq!(pairs[0]["from"], "internet:203.0.113.10");
    assert_eq!(
        pairs[0]["to"],
        "function-app-b-yobmxbvmtplck.scm.azurewebsites.net"
    );
    assert_eq!(pairs[0]["site"], "function-app-b-yobmxbvmtplck");
    assert_eq!(pairs[0]["kind"], "Scm");
    assert_eq!(pairs[0]["reachable"], true);
    assert_eq!(
        pairs[0]["explanation"],
        "allowed: the scm list has no rules (allow all)"
    );
    assert_eq!(pairs[0]["depends_on_unknown"], serde_json::json!([]));
    assert_eq!(pairs[0]["status"], "fail");

    assert_eq!(expectations[0]["status"], "pass");
    let self_call = &expectations[2];
    assert_eq!(self_call["status"], "fail");
    let statuses: Vec<&str> = self_call["pairs"]
        .as_array()
        .expect("pairs")
        .iter()
        .map(|pair| pair["status"].as_str().expect("status"))
        .collect();
    assert_eq!(statuses.len(), 2);
    assert!(statuses.contains(&"pass"));
    assert!(statuses.contains(&"fail"));
}

#[test]
fn expect_sarif_result_in_expectations_file() {
    // Under the workspace root, the current directory of the run, so the URI is relative.
    // `CARGO_TARGET_TMPDIR` is not under it when `CARGO_TARGET_DIR` points elsewhere, so the
    // file goes to the workspace's own `target`, which git ignores.
    let parent = workspace_root().join("target").join("test-tmp");
    std::fs::create_dir_all(&parent).expect("test-tmp dir");
    let dir = tempfile::tempdir_in(&parent).expect("temp dir");
    let file = write_expectations(dir.path(), EXAMPLE_VIOLATED);
    let output = subnetlock(&["check", "--format", "sarif", &example(), "--expect", &file]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let value: serde_json::Value = serde_json::from_str(&stdout(&output)).expect("sarif");
    let run = &value["runs"][0];
    let results: Vec<&serde_json::Value> = run["results"]
        .as_array()
        .expect("results")
        .iter()
        .filter(|result| result["ruleId"] == "SL024")
        .collect();
    assert_eq!(results.len(), 2, "one per violated expectation");

    let scm = results[0];
    assert_eq!(scm["level"], "error");
    let text = scm["message"]["text"].as_str().expect("message");
    assert!(
        text.starts_with("expected deny for `internet` -> `function-app-b-*.scm.azurewebsites.net`, but internet:203.0.113.10 -> function-app-b-yobmxbvmtplck.scm.azurewebsites.net: allowed: the scm list has no rules (allow all)"),
        "{text}"
    );
    let location = &scm["locations"][0];
    let artifact = &location["physicalLocation"]["artifactLocation"];
    let relative = Path::new(&file)
        .strip_prefix(workspace_root())
        .expect("under the workspace root");
    assert_eq!(artifact["uri"], relative.to_str().expect("path"));
    assert_eq!(artifact["uriBaseId"], "%SRCROOT%");
    assert_eq!(location["physicalLocation"]["region"]["startLine"], 4);
    assert_eq!(location["physicalLocation"]["region"]["startColumn"], 5);
    assert_eq!(
        location["logicalLocations"][0]["fullyQualifiedName"],
        "$.expect[1]"
    );
    assert_eq!(
        results[1]["locations"][0]["physicalLocation"]["region"]["startLine"],
        5
    );

    let rules = run["tool"]["driver"]["rules"].as_array().expect("rules");
    let rule = rules
        .iter()
        .find(|rule| rule["id"] == "SL024")
        .expect("SL024 rule");
    assert_eq!(rule["name"], "reachability-expectation-not-met");
    assert_eq!(
        rule["helpUri"],
        "https://github.com/subnetlock/subnetlock/blob/main/docs/rules.md#sl024-reachability-expectation-not-met"
    );
}

#[test]
fn expect_invalid_file_failure_documents() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = write_expectations(
        dir.path(),
        r#"{"expect": [{"from": "internet", "to": "b", "verdict": "block"}]}"#,
    );

    let json = subnetlock(&["check", "--format", "json", &example(), "--expect", &file]);
    assert_eq!(json.status.code(), Some(2));
    let value: serde_json::Value = serde_json::from_str(&stdout(&json)).expect("json");
    let error = value["error"].as_str().expect("error");
    assert!(
        error.ends_with("expect.json:1:56: invalid verdict \"block\""),
        "{error}"
    );
    assert_eq!(value["help"], "write \"allow\" or \"deny\"");

    let sarif = subnetlock(&["check", "--format", "sarif", &example(), "--expect", &file]);
    assert_eq!(sarif.status.code(), Some(2));
    let value: serde_json::Value = serde_json::from_str(&stdout(&sarif)).expect("sarif");
    let invocation = &value["runs"][0]["invocations"][0];
    assert_eq!(invocation["executionSuccessful"], false);
    let notification = &invocation["toolExecutionNotifications"][0];
    let uri = notification["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
        .as_str()
        .expect("uri");
    assert!(uri.ends_with("/expect.json"), "{uri}");
}

/// `--expect` only adds to the output: the human text gains a section at the end, the JSON
/// document an `expectations` key, and SARIF nothing when every expectation passes.
#[test]
fn expect_only_adds_to_outputs() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = write_expectations(dir.path(), EXAMPLE_LOCKDOWN);
    let example = example();
    let run = |format: &str, expect: bool| {
        let mut args = vec!["check", "--format", format, example.as_str()];
        if expect {
            args.extend(["--expect", file.as_str()]);
        }
        let output = subnetlock(&args);
        assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
        stdout(&output)
    };

    let plain = run("human", false);
    let with = run("human", true);
    let (before, _) = with.split_once("\nexpectations (").expect("section");
    assert_eq!(before, plain);

    let plain: serde_json::Value = serde_json::from_str(&run("json", false)).expect("json");
    let mut with: serde_json::Value = serde_json::from_str(&run("json", true)).expect("json");
    with.as_object_mut()
        .expect("object")
        .remove("expectations")
        .expect("expectations key");
    assert_eq!(with, plain);

    assert_eq!(run("sarif", true), run("sarif", false));
}

/// `internet` covers an address inside each range a rule names, not only the sample address
/// that no rule names.
#[test]
fn expect_internet_covers_rule_ranges() {
    let dir = tempfile::tempdir().expect("temp dir");
    let template = dir.path().join("azuredeploy.json");
    std::fs::write(
        &template,
        r#"{
  "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
  "contentVersion": "1.0.0.0",
  "resources": [
    { "type": "Microsoft.Web/serverfarms", "apiVersion": "2022-03-01", "name": "plan",
      "location": "westeurope", "sku": { "name": "S1", "tier": "Standard" } },
    { "type": "Microsoft.Web/sites", "apiVersion": "2022-03-01", "name": "app",
      "location": "westeurope", "kind": "app",
      "properties": {
        "serverFarmId": "[resourceId('Microsoft.Web/serverfarms', 'plan')]",
        "siteConfig": { "ipSecurityRestrictions": [
          { "ipAddress": "20.0.0.0/8", "action": "Allow", "priority": 100, "name": "partner" }
        ] }
      } }
  ]
}"#,
    )
    .expect("template");
    let file = write_expectations(
        dir.path(),
        r#"{"expect": [
  {"from": "internet", "to": "app", "verdict": "deny"},
  {"from": "internet:203.0.113.10", "to": "app", "verdict": "deny"}
]}"#,
    );
    let output = subnetlock(&["check", template.to_str().expect("path"), "--expect", &file]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));

    let text = stdout(&output);
    assert!(
        text.contains(
            "  FAIL       2:3 expected deny for internet -> app; internet:20.0.0.1 -> app.azurewebsites.net: allowed: main rule 0 `partner` (priority 100, Allow) matched (1 of 2 pairs fail)"
        ),
        "{text}"
    );
    assert!(text.contains("  PASS       3:3 expected deny"), "{text}");
}

/// A site that denies one range and allows every other address by default: all of the
/// matrix's internet samples fall in the denied range.
const DENY_RANGE_TEMPLATE: &str = r#"{
  "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
  "contentVersion": "1.0.0.0",
  "resources": [
    { "type": "Microsoft.Web/serverfarms", "apiVersion": "2022-03-01", "name": "plan",
      "location": "westeurope", "sku": { "name": "S1", "tier": "Standard" } },
    { "type": "Microsoft.Web/sites", "apiVersion": "2022-03-01", "name": "app",
      "location": "westeurope", "kind": "app",
      "properties": {
        "serverFarmId": "[resourceId('Microsoft.Web/serverfarms', 'plan')]",
        "siteConfig": {
          "ipSecurityRestrictionsDefaultAction": "Allow",
          "ipSecurityRestrictions": [
            { "ipAddress": "203.0.113.0/24", "action": "Deny", "priority": 100, "name": "deny-doc" }
          ]
        }
      } }
  ]
}"#;

#[test]
fn expect_internet_covers_unsampled_addresses() {
    let dir = tempfile::tempdir().expect("temp dir");
    let template = dir.path().join("azuredeploy.json");
    std::fs::write(&template, DENY_RANGE_TEMPLATE).expect("template");
    let file = write_expectations(
        dir.path(),
        r#"{"expect": [{"from": "internet", "to": "app", "verdict": "deny"}]}"#,
    );
    let output = subnetlock(&["check", template.to_str().expect("path"), "--expect", &file]);
    assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));

    // The matrix samples 203.0.113.1 and 203.0.113.10, which are both denied. 198.51.100.10
    // is the sample of the addresses no rule names, which the default action allows.
    let text = stdout(&output);
    assert!(
        text.contains(
            "  FAIL       1:13 expected deny for internet -> app; internet:198.51.100.10 -> app.azurewebsites.net: allowed: no main rule matched; the default action is Allow (1 of 3 pairs fail)"
        ),
        "{text}"
    );
}

#[test]
fn expect_internet_inside_service_tag() {
    // Anyone can get an address in `AzureCloud`, so an internet caller there matches the tag
    // rule once `--service-tags` gives the tag's prefixes.
    let dir = tempfile::tempdir().expect("temp dir");
    let template = dir.path().join("azuredeploy.json");
    let with_tag_rule = DENY_RANGE_TEMPLATE
        .replace(
            r#""ipSecurityRestrictionsDefaultAction": "Allow","#,
            "",
        )
        .replace(
            r#"{ "ipAddress": "203.0.113.0/24", "action": "Deny", "priority": 100, "name": "deny-doc" }"#,
            r#"{ "ipAddress": "AzureCloud", "tag": "ServiceTag", "action": "Allow", "priority": 100, "name": "azure" }"#,
        );
    std::fs::write(&template, with_tag_rule).expect("template");

    let tags = dir.path().join("ServiceTags_Public.json");
    std::fs::write(
        &tags,
        r#"{"values": [{"name": "AzureCloud", "properties": {"addressPrefixes": ["4.144.0.0/16"]}}]}"#,
    )
    .expect("tags");
    let file = write_expectations(
        dir.path(),
        r#"{"expect": [{"from": "internet", "to": "app", "verdict": "deny"}]}"#,
    );

    let output = subnetlock(&[
        "check",
        template.to_str().expect("path"),
        "--service-tags",
        tags.to_str().expect("path"),
        "--expect",
        &file,
    ]);
    assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
    let text = stdout(&output);
    assert!(
        text.contains(
            "  FAIL       1:13 expected deny for internet -> app; internet:4.144.0.0 -> app.azurewebsites.net: allowed: main rule 0 `azure` (priority 100, Allow) matched (1 of 2 pairs fail)"
        ),
        "{text}"
    );

    // Without the table the tag's prefixes are unknown, so some internet callers may match
    // the allow rule: the denial is not proven, though the row reads "denied".
    let output = subnetlock(&["check", template.to_str().expect("path"), "--expect", &file]);
    assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
    let text = stdout(&output);
    assert!(text.contains("  NOT PROVEN 1:13 expected deny"), "{text}");
    assert!(
        text.contains(
            "depending on the prefixes of service tag `AzureCloud`, which only a --service-tags file gives"
        ),
        "{text}"
    );
    assert!(text.contains("0 passed, 0 failed, 1 not proven"), "{text}");
}

/// A subnet whose network security group drops traffic to App Service, and a site whose rule
/// list is known only at deployment time.
const BLOCKED_SUBNET_TEMPLATE: &str = r#"{
  "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
  "contentVersion": "1.0.0.0",
  "resources": [
    { "type": "Microsoft.Network/networkSecurityGroups", "apiVersion": "2023-09-01", "name": "nsg",
      "location": "westeurope",
      "properties": { "securityRules": [
        { "name": "block-app-service", "properties": { "priority": 100, "direction": "Outbound",
          "access": "Deny", "protocol": "*", "sourceAddressPrefix": "*", "sourcePortRange": "*",
          "destinationAddressPrefix": "AppService", "destinationPortRange": "*" } } ] } },
    { "type": "Microsoft.Network/virtualNetworks", "apiVersion": "2023-09-01", "name": "vnet",
      "location": "westeurope",
      "dependsOn": ["[resourceId('Microsoft.Network/networkSecurityGroups', 'nsg')]"],
      "properties": { "addressSpace": { "addressPrefixes": ["10.0.0.0/16"] },
        "subnets": [ { "name": "blocked", "properties": { "addressPrefix": "10.0.1.0/24",
          "networkSecurityGroup": { "id": "[resourceId('Microsoft.Network/networkSecurityGroups', 'nsg')]" } } } ] } },
    { "type": "Microsoft.Web/serverfarms", "apiVersion": "2022-03-01", "name": "plan",
      "location": "westeurope", "sku": { "name": "S1", "tier": "Standard" } },
    { "type": "Microsoft.Web/sites", "apiVersion": "2022-03-01", "name": "app",
      "location": "westeurope", "kind": "app",
      "properties": {
        "serverFarmId": "[resourceId('Microsoft.Web/serverfarms', 'plan')]",
        "siteConfig": {
          "ipSecurityRestrictions": "[reference(resourceId('Microsoft.Network/ipGroups', 'x'), '2023-09-01').rules]"
        }
      } }
  ]
}"#;

#[test]
fn expect_blocked_request_denied_despite_unknown_rules() {
    let dir = tempfile::tempdir().expect("temp dir");
    let template = dir.path().join("azuredeploy.json");
    std::fs::write(&template, BLOCKED_SUBNET_TEMPLATE).expect("template");
    let file = write_expectations(
        dir.path(),
        r#"{"expect": [
  {"from": "subnet:vnet/blocked", "to": "app", "verdict": "deny"},
  {"from": "internet", "to": "app", "verdict": "deny"}
]}"#,
    );
    let output = subnetlock(&["check", template.to_str().expect("path"), "--expect", &file]);
    let text = stdout(&output);

    // The security group drops the request before the front end, so the unknown rules never
    // see it; the internet's request does reach them.
    assert!(
        text.contains(
            "  PASS       2:3 expected deny for subnet:vnet/blocked -> app; subnet:vnet/blocked -> app.azurewebsites.net: blocked before the front end"
        ),
        "{text}"
    );
    assert!(
        text.contains("  NOT PROVEN 3:3 expected deny for internet -> app"),
        "{text}"
    );
    assert!(text.contains("1 passed, 0 failed, 1 not proven"), "{text}");
    assert_eq!(output.status.code(), Some(1), "{text}");
}

#[test]
fn expect_shows_reading_it_depends_on() {
    // A Terraform plan whose rule filters on headers: a plain request from its range is
    // denied only under the reading that a request without the header does not match.
    let plan =
        workspace_root().join("crates/terraform/tests/fixtures/ip_restriction_default_action.json");
    let dir = tempfile::tempdir().expect("temp dir");
    let file = write_expectations(
        dir.path(),
        r#"{"expect": [{"from": "internet", "to": "acctestwa-*", "verdict": "deny"}]}"#,
    );
    let output = subnetlock(&["check", plan.to_str().expect("path"), "--expect", &file]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(
        text.contains(
            "(2 of 2 pairs pass) [depends on a reading: a request without a filtered header does not match the rule]"
        ),
        "{text}"
    );
}

#[test]
fn expect_reading_in_every_format() {
    // The plan's main rule filters on headers, so a plain request from its range is denied
    // only under the reading that a request without the header does not match. Under that
    // reading `deny` passes and `allow` fails. The reading changes neither status, and every
    // format names it.
    let plan =
        workspace_root().join("crates/terraform/tests/fixtures/ip_restriction_default_action.json");
    let plan = plan.to_str().expect("path");
    let reading = "a request without a filtered header does not match the rule";
    let dir = tempfile::tempdir().expect("temp dir");
    let file = write_expectations(
        dir.path(),
        r#"{"expect": [
  {"from": "internet", "to": "acctestwa-*", "verdict": "deny"},
  {"from": "internet", "to": "acctestwa-*", "verdict": "allow"},
  {"from": "internet:203.0.113.10", "to": "acctestwa-*", "verdict": "deny"}
]}"#,
    );

    let human = subnetlock(&["check", plan, "--expect", &file]);
    assert_eq!(human.status.code(), Some(1), "{}", stderr(&human));
    let text = stdout(&human);
    let line = |prefix: &str| {
        text.lines()
            .find(|line| line.trim_start().starts_with(prefix))
            .unwrap_or_else(|| panic!("no line `{prefix}` in {text}"))
            .to_owned()
    };
    assert!(
        line("PASS       2:3").ends_with(&format!("[depends on a reading: {reading}]")),
        "{text}"
    );
    assert!(
        line("FAIL       3:3").ends_with(&format!("[depends on a reading: {reading}]")),
        "{text}"
    );
    assert!(
        !line("PASS       4:3").contains("depends on a reading"),
        "{text}"
    );
    assert!(text.contains("2 passed, 1 failed, 0 not proven"), "{text}");

    let json = subnetlock(&["check", "--format", "json", plan, "--expect", &file]);
    assert_eq!(json.status.code(), Some(1), "{}", stderr(&json));
    let document: serde_json::Value = serde_json::from_str(&stdout(&json)).expect("json");
    let expectations = document["expectations"].as_array().expect("expectations");
    let statuses: Vec<&str> = expectations
        .iter()
        .map(|expectation| expectation["status"].as_str().expect("status"))
        .collect();
    assert_eq!(statuses, ["pass", "fail", "pass"]);
    assert_eq!(
        expectations[0]["depends_on_readings"],
        serde_json::json!([reading])
    );
    assert_eq!(
        expectations[1]["depends_on_readings"],
        serde_json::json!([reading])
    );
    assert_eq!(
        expectations[2]["depends_on_readings"],
        serde_json::json!([])
    );
    let marked: Vec<&str> = expectations[0]["pairs"]
        .as_array()
        .expect("pairs")
        .iter()
        .filter(|pair| pair["ambiguities"] == serde_json::json!([{"kind": "missing_header"}]))
        .map(|pair| pair["from"].as_str().expect("from"))
        .collect();
    assert_eq!(marked, ["internet:10.10.10.10"]);

    let sarif = subnetlock(&["check", "--format", "sarif", plan, "--expect", &file]);
    assert_eq!(sarif.status.code(), Some(1), "{}", stderr(&sarif));
    let log: serde_json::Value = serde_json::from_str(&stdout(&sarif)).expect("sarif");
    let at_expectation = |rule: &str| -> Vec<(String, String, u64)> {
        log["runs"][0]["results"]
            .as_array()
            .expect("results")
            .iter()
            .filter(|result| result["ruleId"] == rule)
            .filter_map(|result| {
                let region = &result["locations"][0]["physicalLocation"]["region"];
                Some((
                    result["level"].as_str()?.to_owned(),
                    result["message"]["text"].as_str()?.to_owned(),
                    region["startLine"].as_u64()?,
                ))
            })
            .collect()
    };
    let passed = at_expectation("SL011");
    assert_eq!(
        passed.len(),
        1,
        "only the passed expectation on a reading: {passed:?}"
    );
    assert_eq!(passed[0].0, "note");
    assert_eq!(passed[0].2, 2);
    assert!(
        passed[0].1.starts_with(&format!(
            "the expectation of deny for `internet` -> `acctestwa-*` passes only under a reading of ambiguous Azure behaviour: {reading}"
        )),
        "{}",
        passed[0].1
    );
    let failed = at_expectation("SL024");
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0].2, 3);
    assert!(
        failed[0]
            .1
            .contains(&format!("[depends on a reading: {reading}]")),
        "{}",
        failed[0].1
    );
}

#[test]
fn expect_service_tag_callers() {
    let dir = tempfile::tempdir().expect("temp dir");
    let tags = dir.path().join("ServiceTags_Public.json");
    std::fs::write(
        &tags,
        r#"{"values": [{"name": "AzureFrontDoor.Backend", "properties": {"addressPrefixes": ["147.243.0.0/16"]}}]}"#,
    )
    .expect("tags");
    let tags = tags.to_str().expect("path");
    let check = |from: &str, with_tags: bool| {
        let file = write_expectations(
            dir.path(),
            &format!(
                r#"{{"expect": [{{"from": "{from}", "to": "function-app-b-*", "verdict": "deny"}}]}}"#
            ),
        );
        let mut args = vec!["check", "--expect", &file];
        let example = example();
        args.push(&example);
        if with_tags {
            args.extend(["--service-tags", tags]);
        }
        subnetlock(&args)
    };

    // No rule names the tag, so the matrix has no row for it and one is built as `explain`
    // builds it.
    let unlisted = check("servicetag:AzureFrontDoor.Backend", true);
    assert_eq!(unlisted.status.code(), Some(0), "{}", stderr(&unlisted));
    let text = stdout(&unlisted);
    assert!(
        text.contains("PASS       1:13 expected deny for servicetag:AzureFrontDoor.Backend -> function-app-b-*; servicetag:AzureFrontDoor.Backend -> function-app-b-yobmxbvmtplck.azurewebsites.net: denied"),
        "{text}"
    );

    let missing = check("servicetag:Nope", true);
    assert_eq!(missing.status.code(), Some(2));
    let report = stderr(&missing);
    assert!(
        report.contains(
            "expect.json:1:22: `servicetag:Nope` matches no service tag in this deployment"
        ),
        "{report}"
    );
    assert!(
        report.contains("help: the --service-tags file has no tag `Nope`"),
        "{report}"
    );

    // A pattern matches only the tags the rules name, and the example's rules name none.
    let pattern = check("servicetag:Azure*", false);
    assert_eq!(pattern.status.code(), Some(2));
    assert!(
        stderr(&pattern).contains("`servicetag:Azure*` matches no service tag in this deployment"),
        "{}",
        stderr(&pattern)
    );
}
