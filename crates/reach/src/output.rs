//! Renders an analysis as text for people, JSON for programs, or SARIF for code scanning.
//!
//! Every format is byte-stable for the same input: rows and findings are sorted, and no time
//! or path of the machine is included beyond the template paths the caller passed in and, in
//! SARIF, the base directory of relative paths.

mod sarif;

pub use sarif::{render_sarif, render_sarif_failure, rule_help_uri};

use serde_json::json;
use subnetlock_access::{Action, Decision, Reason, SiteKind};
use subnetlock_model::{Finding, Severity, Site};

use crate::analysis::{describe_ambiguity, Analysis, CallerKind, Reachability};

/// Appends one line of human output. Control characters inside it (a newline or an escape
/// sequence in a name written in a template) are shown escaped, so a template cannot forge
/// output lines or drive the terminal.
pub fn push_line(out: &mut String, line: String) {
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
    if !row.egress.reaches_front_end() {
        return "blocked before the front end: an outbound rule of the network security group on the caller's subnet drops the request".to_owned();
    }
    match (&row.decision.reason, &row.invalid_public_network_access) {
        (Reason::PublicNetworkAccessDisabled { explicit: true }, Some(value)) => format!(
            "denied: publicNetworkAccess is {value}, which is not a valid value (SL020) and reads as Disabled"
        ),
        _ => describe_decision(&row.decision),
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
    if analysis.topology.sites.is_empty() {
        push_line(
            &mut out,
            "  none: the deployment has no web app or function app (`Microsoft.Web/sites`)"
                .to_owned(),
        );
    }
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
        if analysis.topology.sites.is_empty() {
            push_line(&mut out, "  none: there is no site to reach".to_owned());
        }
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
    serde_json::to_string_pretty(&json_document(analysis, template)).unwrap_or_default()
}

/// Builds the document [`render_json`] prints, for a caller that adds its own keys to it.
pub fn json_document(analysis: &Analysis, template: &str) -> serde_json::Value {
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
    json!({
        "template": template,
        "assumptions": { "scale_unit": analysis.topology.scale_unit },
        "deployment_fails": analysis.findings.iter().any(Finding::fails_deployment),
        "sites": analysis.topology.sites,
        "plans": analysis.topology.plans,
        "vnets": analysis.topology.vnets,
        "calls": analysis.calls,
        "reachability": rows,
        "findings": analysis.findings,
    })
}

/// Renders the JSON document of a run that could not analyse the template.
/// `help`, the next step for the user, is added as `help` when there is one.
pub fn render_json_failure(message: &str, help: Option<&str>, template: &str) -> String {
    let mut value = json!({
        "template": template,
        "error": message,
    });
    if let Some(help) = help {
        value["help"] = json!(help);
    }
    serde_json::to_string_pretty(&value).unwrap_or_default()
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
    push_line(&mut out, format!("  decision: {}", describe_row(row)));
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
            let address = row
                .from
                .label
                .split_once(':')
                .map_or(row.from.label.as_str(), |(_, address)| address);
            push_line(&mut out, format!("  caller: {address} is {note}"));
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
