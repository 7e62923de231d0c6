//! Renders an analysis as text for people, JSON for programs, or SARIF for code scanning.
//!
//! Every format is byte-stable for the same input: rows and findings are sorted, and no time
//! or path of the machine is included beyond the template paths the caller passed in.

use std::path::Path;

use serde_json::json;
use subnetlock_access::{Action, Decision, Reason, SiteKind};
use subnetlock_model::{Finding, FindingCode, Severity, Site};

use crate::analysis::{describe_ambiguity, Analysis, CallerKind, Reachability};

/// Appends one line of human output. Control characters inside it (a newline or an escape
/// sequence in a name written in a template) are shown escaped, so a template cannot forge
/// output lines or drive the terminal.
fn push_line(out: &mut String, line: String) {
    for character in line.chars() {
        if character.is_control() {
            out.extend(character.escape_default());
        } else {
            out.push(character);
        }
    }
    out.push('\n');
}

/// Describes the deciding step in one line.
pub fn describe_decision(decision: &Decision) -> String {
    let verdict = match decision.verdict {
        Action::Allow => "allowed",
        Action::Deny => "denied",
    };
    let reason = match &decision.reason {
        Reason::PrivateEndpoint => {
            "the request came through a private endpoint, where access restrictions do not apply"
                .to_owned()
        }
        Reason::PublicNetworkAccessDisabled { explicit: true } => {
            "publicNetworkAccess is Disabled".to_owned()
        }
        Reason::PublicNetworkAccessDisabled { explicit: false } => {
            "publicNetworkAccess is unset and the site has a private endpoint".to_owned()
        }
        Reason::Rule {
            list,
            index,
            name,
            priority,
            action,
        } => {
            let name = name
                .as_deref()
                .map(|name| format!(" `{name}`"))
                .unwrap_or_default();
            format!("{list} rule {index}{name} (priority {priority}, {action}) matched")
        }
        Reason::DefaultAction { list, action } => {
            format!("no {list} rule matched; the default action is {action}")
        }
        Reason::ImplicitAllowNoRules { list } => {
            format!("the {list} list has no rules (allow all)")
        }
        Reason::ImplicitDeny { list } => {
            format!("no {list} rule matched (implicit deny all)")
        }
    };
    format!("{verdict}: {reason}")
}

/// Describes what happens to a matrix row's request: the front end's decision, or that the
/// request never reached the front end.
pub fn describe_row(row: &Reachability) -> String {
    if row.egress.reaches_front_end() {
        describe_decision(&row.decision)
    } else {
        "blocked before the front end: an outbound rule of the network security group on the caller's subnet drops the request".to_owned()
    }
}

/// Plain text for a terminal; `template` is shown in the header.
pub fn render_human(analysis: &Analysis, template: &str) -> String {
    let mut out = String::new();
    push_line(&mut out, format!("subnetlock check: {template}"));
    if let Some(note) = deployment_failure_note(analysis, "the findings below say why") {
        push_line(&mut out, note);
    }

    push_line(&mut out, String::new());
    push_line(&mut out, "sites".to_owned());
    for site in &analysis.topology.sites {
        let plan = site
            .plan_id
            .as_deref()
            .and_then(|id| analysis.topology.plan(id));
        let plan_text = match plan {
            Some(plan) => format!(
                "plan `{}` {} ({:?})",
                plan.name,
                plan.sku_name.as_deref().unwrap_or("?"),
                plan.family
            ),
            None => "plan not in template".to_owned(),
        };
        push_line(
            &mut out,
            format!(
                "  {}  [{}]  {plan_text}",
                site.name,
                site.kind.as_deref().unwrap_or("app")
            ),
        );
        match &site.integration {
            Some(integration) => {
                push_line(
                    &mut out,
                    format!(
                        "    regional VNet integration: {}{}",
                        integration.subnet_id.name(),
                        route_all_text(site)
                    ),
                );
            }
            None => {
                push_line(&mut out, "    no regional VNet integration".to_owned());
            }
        }
        push_line(
            &mut out,
            format!(
                "    access restrictions: main {}; scm {}",
                list_text(site, SiteKind::Main),
                if site.access.scm_uses_main {
                    "uses main".to_owned()
                } else {
                    list_text(site, SiteKind::Scm)
                }
            ),
        );
    }

    if !analysis.calls.is_empty() {
        push_line(&mut out, String::new());
        push_line(
            &mut out,
            "calls between apps (from app settings)".to_owned(),
        );
        for call in &analysis.calls {
            let verdict = analysis
                .rows
                .iter()
                .find(|row| {
                    row.from.label == format!("app:{}", call.from_site)
                        && row.to.site == call.to_site
                        && row.to.kind == call.to_kind
                })
                .map(describe_row)
                .unwrap_or_default();
            push_line(
                &mut out,
                format!(
                    "  {} -> {}{} (setting `{}`{}): {verdict}",
                    call.from_site,
                    call.to_site,
                    call.path,
                    call.setting,
                    if call.with_key { ", with key" } else { "" }
                ),
            );
        }
    }

    for kind in [SiteKind::Main, SiteKind::Scm] {
        push_line(&mut out, String::new());
        push_line(&mut out, format!("reachability, {kind} sites"));
        for site in &analysis.topology.sites {
            let host = match kind {
                SiteKind::Main => &site.default_host_name,
                SiteKind::Scm => &site.scm_host_name,
            };
            push_line(&mut out, format!("  {host}"));
            let mut rows: Vec<&Reachability> = analysis
                .rows
                .iter()
                .filter(|row| row.to.site == site.name && row.to.kind == kind)
                .collect();
            rows.sort_by(|a, b| {
                a.from
                    .kind
                    .cmp(&b.from.kind)
                    .then(a.from.label.cmp(&b.from.label))
            });
            for row in rows {
                let mark = match (row.egress.reaches_front_end(), row.allowed()) {
                    (false, _) => "BLOCK",
                    (true, true) => "ALLOW",
                    (true, false) => "DENY ",
                };
                let unknown = if row.depends_on_unknown.is_empty() {
                    String::new()
                } else {
                    format!(
                        " [depends on unknown: {}]",
                        row.depends_on_unknown.join("; ")
                    )
                };
                let ambiguous = if row.decision.ambiguities.is_empty() {
                    String::new()
                } else {
                    let readings: Vec<String> = row
                        .decision
                        .ambiguities
                        .iter()
                        .map(describe_ambiguity)
                        .collect();
                    format!(" [depends on a reading: {}]", readings.join("; "))
                };
                push_line(
                    &mut out,
                    format!(
                        "    {mark} {:<48} {}{unknown}{ambiguous}",
                        row.from.label,
                        describe_row(row)
                    ),
                );
            }
        }
    }

    push_line(&mut out, String::new());
    push_line(&mut out, "findings".to_owned());
    if analysis.findings.is_empty() {
        push_line(&mut out, "  none".to_owned());
    }
    for finding in &analysis.findings {
        push_line(
            &mut out,
            format!(
                "  {} {} {}: {}",
                severity_text(finding.severity),
                finding.code,
                finding.code.name(),
                finding.message
            ),
        );
        if let Some(location) = &finding.location {
            push_line(&mut out, format!("    --> {location}"));
        }
        for related in &finding.related {
            push_line(&mut out, format!("    see also {related}"));
        }
        if let Some(help) = &finding.help {
            push_line(&mut out, format!("    help: {help}"));
        }
    }
    out
}

/// Describes one rule list of `site` for the site summary. A list or default action known only
/// at deployment time is shown as unknown, not as the placeholder or unset value that stands
/// for it offline.
fn list_text(site: &Site, kind: SiteKind) -> String {
    let list = site.access.list(kind);
    let unknown_list = site.unknown_list(kind).is_some();
    let rules = if unknown_list {
        "rule list unknown offline".to_owned()
    } else {
        format!("{} rule(s)", list.rules.len())
    };
    let default = match list.default_action {
        Some(action) => action.to_string(),
        None if site.unknown_default_action(kind).is_some() => "unknown offline".to_owned(),
        None if unknown_list => "unset (implicit deny all if the list has rules)".to_owned(),
        None if list.rules.is_empty() => "unset (allow all)".to_owned(),
        None => "unset (implicit deny all)".to_owned(),
    };
    format!("{rules}, default {default}")
}

/// Describes the route-all setting of an integrated site, or returns an empty string when it
/// is off.
fn route_all_text(site: &Site) -> String {
    let route_all = &site.route_all;
    if route_all.enabled {
        return format!(" (route-all by {})", route_all.set_by.join(", "));
    }
    if route_all.unknown_settings.is_empty() {
        return String::new();
    }
    let settings: Vec<&str> = route_all
        .unknown_settings
        .iter()
        .map(|unknown| unknown.setting.as_str())
        .collect();
    format!(" (route-all unknown offline: {})", settings.join(", "))
}

fn severity_text(severity: Severity) -> &'static str {
    match severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
        Severity::Info => "info",
    }
}

/// JSON with the topology summary, every matrix row, calls and findings.
/// Returns a line stating that Azure fails this deployment, with the codes of the findings
/// that make it fail and `pointer` to where they are shown, or `None` when none does.
pub fn deployment_failure_note(analysis: &Analysis, pointer: &str) -> Option<String> {
    let mut codes: Vec<String> = analysis
        .findings
        .iter()
        .filter(|finding| finding.fails_deployment())
        .map(|finding| finding.code.to_string())
        .collect();
    codes.sort();
    codes.dedup();
    if codes.is_empty() {
        return None;
    }
    Some(format!(
        "Azure fails this deployment ({}; {pointer}); every verdict below is what the template would give if it deployed",
        codes.join(", ")
    ))
}

pub fn render_json(analysis: &Analysis, template: &str) -> String {
    let rows: Vec<serde_json::Value> = analysis
        .rows
        .iter()
        .map(|row| {
            json!({
                "from": row.from,
                "to": row.to,
                "verdict": row.decision.verdict,
                "reason": row.decision.reason,
                "reaches_front_end": row.egress.reaches_front_end(),
                "explanation": describe_row(row),
                "ambiguities": row.decision.ambiguities,
                "egress": row.egress,
                "depends_on_unknown": row.depends_on_unknown,
            })
        })
        .collect();
    let value = json!({
        "template": template,
        "assumptions": { "scale_unit": analysis.topology.scale_unit },
        "deployment_fails": analysis.findings.iter().any(Finding::fails_deployment),
        "sites": analysis.topology.sites,
        "plans": analysis.topology.plans,
        "vnets": analysis.topology.vnets,
        "calls": analysis.calls,
        "reachability": rows,
        "findings": analysis.findings,
    });
    serde_json::to_string_pretty(&value).unwrap_or_default()
}

/// SARIF 2.1.0 with one result per finding, for GitHub code scanning and similar tools.
pub fn render_sarif(analysis: &Analysis, template: &Path) -> String {
    let mut codes: Vec<FindingCode> = analysis.findings.iter().map(|f| f.code).collect();
    codes.sort();
    codes.dedup();
    let rules: Vec<serde_json::Value> = codes
        .iter()
        .map(|code| {
            json!({
                "id": code.to_string(),
                "name": code.name(),
                "shortDescription": { "text": code.name().replace('-', " ") },
                "helpUri": format!("https://github.com/subnetlock/subnetlock/blob/main/docs/rules.md#{}", code.to_string().to_ascii_lowercase()),
            })
        })
        .collect();
    let results: Vec<serde_json::Value> = analysis
        .findings
        .iter()
        .map(|finding| sarif_result(finding, template))
        .collect();
    let value = json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": sarif_tool(Some(rules)),
            // Columns count characters (Unicode code points), not the UTF-16 code units SARIF
            // assumes by default (SARIF 2.1.0, section 3.14.17).
            "columnKind": "unicodeCodePoints",
            "properties": { "scaleUnit": analysis.topology.scale_unit },
            "results": results,
        }],
    });
    serde_json::to_string_pretty(&value).unwrap_or_default()
}

/// Builds the SARIF `tool` object, with the rule catalogue when there are results to refer to
/// it.
fn sarif_tool(rules: Option<Vec<serde_json::Value>>) -> serde_json::Value {
    let mut driver = json!({
        "name": "subnetlock",
        "version": env!("CARGO_PKG_VERSION"),
        "informationUri": "https://github.com/subnetlock/subnetlock",
    });
    if let Some(rules) = rules {
        driver["rules"] = serde_json::Value::Array(rules);
    }
    json!({ "driver": driver })
}

/// Renders a SARIF log for a run that could not analyse the template, so that a CI job that
/// uploads the file gets the reason instead of an empty file. The run has no results, and its
/// invocation failed with `message` (SARIF 2.1.0, section 3.20).
pub fn render_sarif_failure(message: &str, template: &Path) -> String {
    let value = json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": sarif_tool(None),
            "invocations": [{
                "executionSuccessful": false,
                "toolExecutionNotifications": [{
                    "level": "error",
                    "message": { "text": message },
                    "locations": [{
                        "physicalLocation": { "artifactLocation": { "uri": sarif_uri(template) } },
                    }],
                }],
            }],
            "results": [],
        }],
    });
    serde_json::to_string_pretty(&value).unwrap_or_default()
}

/// Renders the JSON document of a run that could not analyse the template.
pub fn render_json_failure(message: &str, template: &str) -> String {
    serde_json::to_string_pretty(&json!({
        "template": template,
        "error": message,
    }))
    .unwrap_or_default()
}

fn sarif_result(finding: &Finding, template: &Path) -> serde_json::Value {
    let level = match finding.severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
        Severity::Info => "note",
    };
    let location = match &finding.location {
        Some(location) => json!({
            "physicalLocation": {
                "artifactLocation": { "uri": sarif_uri(&location.file) },
                "region": { "startLine": location.line, "startColumn": location.column },
            },
            "logicalLocations": [{ "fullyQualifiedName": location.json_path }],
        }),
        None => json!({
            "physicalLocation": { "artifactLocation": { "uri": sarif_uri(template) } },
        }),
    };
    let mut text = finding.message.clone();
    if let Some(help) = &finding.help {
        if !text.ends_with('.') && !text.ends_with(".`") {
            text.push('.');
        }
        // The help of an informational finding is a suggestion, not a fix.
        text.push_str(match finding.severity {
            Severity::Info => " Note: ",
            Severity::Warning | Severity::Error => " Fix: ",
        });
        text.push_str(help);
    }
    let mut result = json!({
        "ruleId": finding.code.to_string(),
        "level": level,
        "message": { "text": text },
        "locations": [location],
    });
    if !finding.related.is_empty() {
        let related: Vec<serde_json::Value> = finding
            .related
            .iter()
            .enumerate()
            .map(|(index, location)| {
                json!({
                    "id": index,
                    "physicalLocation": {
                        "artifactLocation": { "uri": sarif_uri(&location.file) },
                        "region": { "startLine": location.line, "startColumn": location.column },
                    },
                    "logicalLocations": [{ "fullyQualifiedName": location.json_path }],
                })
            })
            .collect();
        result["relatedLocations"] = serde_json::Value::Array(related);
    }
    result
}

/// Turns a file path into the URI reference SARIF requires (RFC 3986). An absolute path
/// becomes a `file://` URI. A relative one stays relative, with each segment percent-encoded
/// so that spaces, `#` or `%` in a name do not break the reference.
fn sarif_uri(path: &Path) -> String {
    if path.is_absolute() {
        if let Ok(url) = url::Url::from_file_path(path) {
            return url.to_string();
        }
    }
    /// Everything but RFC 3986 unreserved characters is encoded in a segment.
    const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    // The bytes of the path, not a lossy UTF-8 copy, so that a name that is not UTF-8 still
    // decodes to the real file.
    #[cfg(unix)]
    let bytes = std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str()).to_vec();
    #[cfg(not(unix))]
    let bytes = path.to_string_lossy().replace('\\', "/").into_bytes();
    bytes
        .split(|&byte| byte == b'/')
        .map(|segment| percent_encoding::percent_encode(segment, SEGMENT).to_string())
        .collect::<Vec<_>>()
        .join("/")
}

/// Renders the explanation of one caller-to-target cell: routing steps, then the decision.
pub fn render_explanation(row: &Reachability) -> String {
    let mut out = String::new();
    push_line(
        &mut out,
        format!(
            "{} -> {} ({} site)",
            row.from.label, row.to.host, row.to.kind
        ),
    );
    for step in &row.egress.steps {
        push_line(&mut out, format!("  route: {step}"));
    }
    push_line(
        &mut out,
        format!(
            "  source seen by the front end: {}",
            row.egress.source.address
        ),
    );
    if let Some(subnet) = &row.egress.source.service_endpoint {
        push_line(&mut out, format!("  service endpoint identity: {subnet}"));
    }
    if !row.egress.reaches_front_end() {
        push_line(&mut out, format!("  decision: {}", describe_row(row)));
        return out;
    }
    push_line(
        &mut out,
        format!("  decision: {}", describe_decision(&row.decision)),
    );
    for ambiguity in &row.decision.ambiguities {
        push_line(
            &mut out,
            format!("  depends on a reading: {}", describe_ambiguity(ambiguity)),
        );
    }
    for unknown in &row.depends_on_unknown {
        push_line(
            &mut out,
            format!("  depends on a value unknown offline: {unknown}"),
        );
    }
    if row.from.kind == CallerKind::Internet {
        if let Some(note) = &row.from.note {
            push_line(&mut out, format!("  caller: {note}"));
        }
    }
    // An allowed request still needs the scm site's own authentication: `predict` expects 401
    // for it, and the emulator returns that.
    if row.to.kind == SiteKind::Scm && row.allowed() {
        push_line(
            &mut out,
            "  then: the scm site asks for publishing credentials".to_owned(),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::sarif_uri;

    #[test]
    fn sarif_uri_encodes_paths() {
        assert_eq!(
            sarif_uri(Path::new("/work/my templates/a#1.json")),
            "file:///work/my%20templates/a%231.json"
        );
        assert_eq!(
            sarif_uri(Path::new("infra/100% ready/main.json")),
            "infra/100%25%20ready/main.json"
        );
        assert_eq!(sarif_uri(Path::new("azuredeploy.json")), "azuredeploy.json");

        #[cfg(unix)]
        {
            use std::os::unix::ffi::OsStrExt;
            let not_utf8 = Path::new(std::ffi::OsStr::from_bytes(b"bad\xff/t.json"));
            assert_eq!(sarif_uri(not_utf8), "bad%FF/t.json");
        }
    }
}
