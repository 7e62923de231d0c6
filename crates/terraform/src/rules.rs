//! Reads `site_config[0].ip_restriction` and `scm_ip_restriction` blocks into rule lists.
//!
//! Each block maps onto the ARM `IpSecurityRestriction` the provider sends: `ip_address`,
//! `service_tag` (with `tag: ServiceTag`) or `virtual_network_subnet_id`, plus `action`,
//! `priority`, `name` and one `headers` block. Sources and header filters go through the same
//! parser as ARM templates, so both inputs get the same checks.

use serde_json::{Map, Value as Json};
use subnetlock_access::{
    parse_header_filters_with_warnings, parse_source_with_warnings, Action, Outcome, Rule,
    RuleError, RuleList, SiteKind, SourceCondition,
};
use subnetlock_model::{
    is_synthetic_rule, parse_action, rule_finding, Finding, FindingCode, Severity, Site,
    UnknownRule,
};

use crate::build::{blocks, strings};
use crate::plan::{Plan, PlanResource, Resolved, Step};

/// Priority azurerm gives a rule without `priority`.
const DEFAULT_PRIORITY: i64 = 65_000;

/// Terraform header attribute and the HTTP header it filters.
const HEADER_ATTRIBUTES: [(&str, &str); 4] = [
    ("x_azure_fdid", "X-Azure-FDID"),
    ("x_fd_health_probe", "X-FD-HealthProbe"),
    ("x_forwarded_for", "X-Forwarded-For"),
    ("x_forwarded_host", "X-Forwarded-Host"),
];

/// Reads the main or scm rule list of `config` (the site's `site_config[0]`), adding findings
/// for rules Azure rejects or reads differently.
pub(crate) fn read_list(
    plan: &Plan,
    resource: &PlanResource,
    config: &Map<String, Json>,
    kind: SiteKind,
    site: &mut Site,
    findings: &mut Vec<Finding>,
) -> RuleList {
    let (block, default_key) = match kind {
        SiteKind::Main => ("ip_restriction", "ip_restriction_default_action"),
        SiteKind::Scm => ("scm_ip_restriction", "scm_ip_restriction_default_action"),
    };
    // Absent before azurerm 3.95.0: then the implicit rule applies. Any value other than Allow
    // or Deny is reported and read as Deny, so that a failing plan is never shown as open.
    let default_action = match config.get(default_key) {
        None | Some(Json::Null) => None,
        Some(Json::String(text)) if parse_action(text).is_some() => parse_action(text),
        Some(other) => {
            findings.push(
                Finding::new(
                    FindingCode::SL020,
                    Severity::Error,
                    format!(
                        "`site_config[0].{default_key}` of `{}` is {other}, which is neither `Allow` nor `Deny`",
                        site.name
                    ),
                )
                .outcome(Outcome::DeployFails)
                .help("write `Allow` or `Deny`")
                .at(&site.id, plan.locate(resource, &format!("site_config[0].{default_key}"))),
            );
            Some(Action::Deny)
        }
    };
    let mut list = RuleList {
        rules: Vec::new(),
        default_action,
    };

    let entries = blocks(config, block);
    if entries.is_empty() && note_unknown_list(plan, resource, block, kind, site, findings) {
        // A list left unknown until apply is taken to hold rules, as the ARM reader takes
        // it: one placeholder that matches nothing keeps unmatched traffic on the implicit
        // deny all. Every verdict on this list is marked as depending on it.
        list.rules.push(placeholder(&Map::new(), 0));
    }
    for (index, entry) in entries.into_iter().enumerate() {
        let detail = format!("site_config[0].{block}[{index}]");
        let location = plan.locate(resource, &detail);
        let path = [
            Step::Key("site_config"),
            Step::Index(0),
            Step::Key(block),
            Step::Index(index),
        ];
        match read_rule(plan, resource, &path, entry, index) {
            Ok(ReadRule::Rule(rule, warnings)) => {
                for warning in &warnings {
                    findings.push(
                        rule_finding(warning, index, kind, &site.name)
                            .at(&site.id, location.clone()),
                    );
                }
                if is_synthetic_rule(&rule) {
                    findings.push(
                        Finding::new(
                            FindingCode::SL014,
                            Severity::Warning,
                            format!(
                                "rule {index} of the {kind} site of `{}` (`Any`, priority 2147483647) is dropped by Azure as its own synthetic entry",
                                site.name
                            ),
                        )
                        .outcome(Outcome::Silent)
                        .help(format!("set `{default_key}` to choose what happens to unmatched traffic"))
                        .at(&site.id, location),
                    );
                    continue;
                }
                list.rules.push(rule);
            }
            Ok(ReadRule::Unknown(expression)) => {
                findings.push(
                    Finding::new(
                        FindingCode::SL010,
                        Severity::Warning,
                        format!(
                            "rule {index} of the {kind} site of `{}` depends on `{expression}`, which is known only after apply",
                            site.name
                        ),
                    )
                    .help("verdicts that this rule could change are reported as depending on it")
                    .at(&site.id, location),
                );
                site.unknown_rules.push(UnknownRule {
                    list: kind,
                    index: Some(index),
                    expression,
                });
                // The rule exists even though its source is unknown: it keeps the list
                // non-empty, so unmatched traffic still meets the implicit deny all. Offline
                // it matches nothing.
                list.rules.push(placeholder(entry, index));
            }
            Err(error) => {
                findings.push(rule_finding(&error, index, kind, &site.name).at(&site.id, location));
                // A rejected rule must not open the site: it still counts for the implicit
                // deny all, and offline it matches nothing.
                list.rules.push(placeholder(entry, index));
            }
        }
    }
    list
}

/// Adds SL019 for each rule list of Allow rules whose default action is Allow: nothing the
/// rules leave out is denied, so they restrict nothing. azurerm 3.95.0 and later send
/// `ip_restriction_default_action = "Allow"` when the configuration does not set it
/// (<https://github.com/hashicorp/terraform-provider-azurerm/pull/25131>,
/// <https://github.com/hashicorp/terraform-provider-azurerm/issues/25244>).
pub(crate) fn check_default_allow(
    plan: &Plan,
    resource: &PlanResource,
    site: &Site,
    findings: &mut Vec<Finding>,
) {
    for kind in site.allow_lists_with_default_allow() {
        let default_key = match kind {
            SiteKind::Main => "ip_restriction_default_action",
            SiteKind::Scm => "scm_ip_restriction_default_action",
        };
        let finding = Finding::new(
            FindingCode::SL019,
            Severity::Warning,
            format!(
                "the {kind} site of `{}` has {} Allow rule(s) and `{default_key} = \"Allow\"`, so unmatched traffic is allowed and the rules restrict nothing",
                site.name,
                site.access.list(kind).rules.len()
            ),
        )
        .outcome(Outcome::Silent)
        .help(format!(
            "set `{default_key} = \"Deny\"` to admit only what the rules allow; azurerm 3.95.0 and later send \"Allow\" when it is not set"
        ))
        .at(
            &site.id,
            plan.locate(resource, &format!("site_config[0].{default_key}")),
        );
        findings.push(finding);
    }
}

/// The result of reading one `ip_restriction` block.
enum ReadRule {
    /// A rule and the warning-class problems Azure accepts silently.
    Rule(Rule, Vec<RuleError>),
    /// The rule's source is known only after apply; the text names the reference.
    Unknown(String),
}

fn read_rule(
    plan: &Plan,
    resource: &PlanResource,
    path: &[Step],
    entry: &Map<String, Json>,
    index: usize,
) -> Result<ReadRule, RuleError> {
    let field = |key: &'static str| {
        let mut field_path = path.to_vec();
        field_path.push(Step::Key(key));
        plan.string(resource, &field_path)
    };
    let mut sources = Vec::new();
    for key in ["ip_address", "service_tag", "virtual_network_subnet_id"] {
        match field(key) {
            Resolved::Known(text) => sources.push(Some(text)),
            Resolved::Unknown(expression) => return Ok(ReadRule::Unknown(expression)),
            Resolved::Absent => sources.push(None),
        }
    }
    let [ip_address, service_tag, subnet_id] = [
        sources.first().cloned().flatten(),
        sources.get(1).cloned().flatten(),
        sources.get(2).cloned().flatten(),
    ];

    // `service_tag = "AzureFrontDoor.Backend"` is sent as `ipAddress` with `tag: ServiceTag`.
    let (source, mut warnings) = match (&service_tag, &ip_address) {
        (Some(tag), None) => {
            parse_source_with_warnings(Some(tag), None, subnet_id.as_deref(), Some("ServiceTag"))?
        }
        _ => parse_source_with_warnings(ip_address.as_deref(), None, subnet_id.as_deref(), None)?,
    };

    let mut header_entries = Vec::new();
    if let Some(headers) = blocks(entry, "headers").first() {
        for (attribute, header) in HEADER_ATTRIBUTES {
            let values = strings(headers.get(attribute));
            if !values.is_empty() {
                header_entries.push((header.to_owned(), values));
            }
        }
    }
    let (headers, header_warnings) = parse_header_filters_with_warnings(&header_entries)?;
    warnings.extend(header_warnings);

    let rule = Rule {
        name: text(entry, "name"),
        priority: read_priority(entry.get("priority"))?,
        action: read_rule_action(entry.get("action"))?,
        source,
        headers,
        index,
    };
    Ok(ReadRule::Rule(rule, warnings))
}

/// Adds one SL010 finding when the whole block list is known only after apply, for example a
/// `dynamic` block over an unknown collection, and returns whether it did.
fn note_unknown_list(
    plan: &Plan,
    resource: &PlanResource,
    block: &str,
    kind: SiteKind,
    site: &mut Site,
    findings: &mut Vec<Finding>,
) -> bool {
    let path = [Step::Key("site_config"), Step::Index(0), Step::Key(block)];
    let Resolved::Unknown(expression) = plan.string(resource, &path) else {
        return false;
    };
    findings.push(
        Finding::new(
            FindingCode::SL010,
            Severity::Warning,
            format!(
                "the {kind} rule list of `{}` (`{block}`) is known only after apply",
                site.name
            ),
        )
        .help("verdicts for this site are reported as depending on it; plan with known values to check the rules")
        .at(&site.id, plan.locate(resource, &format!("site_config[0].{block}"))),
    );
    site.unknown_rules.push(UnknownRule {
        list: kind,
        index: None,
        expression,
    });
    true
}

/// Reads a rule's `action`: `Allow` or `Deny`, ignoring case; absent means `Allow`, the
/// provider's default.
fn read_rule_action(value: Option<&Json>) -> Result<Action, RuleError> {
    match value {
        None | Some(Json::Null) => Ok(Action::Allow),
        Some(Json::String(text)) => parse_action(text).ok_or_else(|| RuleError::InvalidAction {
            value: text.clone(),
        }),
        Some(other) => Err(RuleError::InvalidAction {
            value: other.to_string(),
        }),
    }
}

/// Reads a rule's `priority`, an Int32; absent means the provider's default.
fn read_priority(value: Option<&Json>) -> Result<i64, RuleError> {
    let number = match value {
        None | Some(Json::Null) => return Ok(DEFAULT_PRIORITY),
        Some(Json::Number(number)) => number.as_i64(),
        Some(Json::String(text)) => text.trim().parse::<i64>().ok(),
        Some(_) => None,
    };
    match number {
        Some(number) if i32::try_from(number).is_ok() => Ok(number),
        _ => Err(RuleError::InvalidPriority {
            value: value.map(Json::to_string).unwrap_or_default(),
        }),
    }
}

fn placeholder(entry: &Map<String, Json>, index: usize) -> Rule {
    Rule {
        name: text(entry, "name"),
        priority: read_priority(entry.get("priority")).unwrap_or(DEFAULT_PRIORITY),
        action: read_rule_action(entry.get("action")).unwrap_or(Action::Deny),
        source: SourceCondition::Ranges(Vec::new()),
        headers: Default::default(),
        index,
    }
}

fn text(entry: &Map<String, Json>, key: &str) -> Option<String> {
    entry
        .get(key)
        .and_then(Json::as_str)
        .filter(|text| !text.is_empty())
        .map(str::to_owned)
}
