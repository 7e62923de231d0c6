//! Expectation results as text, as the `expectations` key of the JSON document, and as SARIF
//! findings of codes SL024 and SL011 located in the expectations file.

use serde_json::json;
use subnetlock_model::{Finding, FindingCode, Severity};
use subnetlock_reach::output::{describe_row, push_line};
use subnetlock_reach::{describe_ambiguity, Reachability};

use super::{ExpectationFile, Outcome, Status};

/// Renders the `expectations` section that follows the findings of `check`'s text output.
pub fn render_human(file: &ExpectationFile, outcomes: &[Outcome<'_>]) -> String {
    let mut out = String::new();
    push_line(&mut out, String::new());
    push_line(&mut out, format!("expectations ({})", file.path.display()));
    for outcome in outcomes {
        let mark = match outcome.status {
            Status::Pass => "PASS      ",
            Status::Fail => "FAIL      ",
            Status::NotProven => "NOT PROVEN",
        };
        let expectation = outcome.expectation;
        push_line(
            &mut out,
            format!(
                "  {mark} {}:{} expected {} for {} -> {}; {}",
                expectation.location.line,
                expectation.location.column,
                expectation.verdict.as_str(),
                expectation.from,
                expectation.to,
                summary(outcome)
            ),
        );
    }
    let count = |status: Status| {
        outcomes
            .iter()
            .filter(|outcome| outcome.status == status)
            .count()
    };
    push_line(
        &mut out,
        format!(
            "  {} expectation(s): {} passed, {} failed, {} not proven",
            outcomes.len(),
            count(Status::Pass),
            count(Status::Fail),
            count(Status::NotProven)
        ),
    );
    out
}

/// Adds the `expectations` array to the JSON document of `check`.
pub fn add_to_json(
    document: &mut serde_json::Value,
    file: &ExpectationFile,
    outcomes: &[Outcome<'_>],
) {
    let expectations: Vec<serde_json::Value> = outcomes
        .iter()
        .map(|outcome| {
            let expectation = outcome.expectation;
            let pairs: Vec<serde_json::Value> = outcome
                .pairs
                .iter()
                .map(|(row, status)| {
                    json!({
                        "from": row.from.label,
                        "to": row.to.host,
                        "site": row.to.site,
                        "kind": row.to.kind,
                        "reachable": row.allowed(),
                        "explanation": describe_row(row),
                        "depends_on_unknown": row.depends_on_unknown,
                        "ambiguities": row.decision.ambiguities,
                        "status": status.as_str(),
                    })
                })
                .collect();
            json!({
                "from": expectation.from,
                "to": expectation.to,
                "verdict": expectation.verdict.as_str(),
                "location": {
                    "file": file.path,
                    "line": expectation.location.line,
                    "column": expectation.location.column,
                },
                "status": outcome.status.as_str(),
                "explanation": summary(outcome),
                "depends_on_readings": readings(outcome),
                "pairs": pairs,
            })
        })
        .collect();
    document["expectations"] = serde_json::Value::Array(expectations);
}

/// Returns one SL024 finding per expectation that failed or is not proven, and one SL011
/// finding per expectation that passes only under a reading of ambiguous Azure behaviour.
/// Each is located at the expectation in its file, so that code scanning shows it there. The
/// SL024 message names the readings as well.
pub fn sarif_findings(outcomes: &[Outcome<'_>]) -> Vec<Finding> {
    let mut findings = Vec::new();
    for outcome in outcomes {
        let expectation = outcome.expectation;
        let (state, help) = match outcome.status {
            Status::Pass => {
                findings.extend(passed_on_reading(outcome));
                continue;
            }
            Status::Fail => (
                "but",
                "change the template's access restrictions so the path is as expected, or change the expectation when the new path is intended",
            ),
            Status::NotProven => (
                "which is not proven:",
                "pass the value known only at deployment time as a parameter, or the service tags file with `--service-tags`, so that `check` can evaluate the verdict offline",
            ),
        };
        let message = format!(
            "expected {} for `{}` -> `{}`, {state} {}",
            expectation.verdict.as_str(),
            expectation.from,
            expectation.to,
            summary(outcome)
        );
        let mut finding = Finding::new(FindingCode::SL024, Severity::Error, message).help(help);
        finding.location = Some(expectation.location.clone());
        findings.push(finding);
    }
    findings
}

/// Describes the pair that decided an outcome, with the rule as `explain` words it, and how
/// many pairs there were when the patterns matched several.
fn summary(outcome: &Outcome<'_>) -> String {
    let Some((row, _)) = outcome.deciding_pair() else {
        return String::new();
    };
    let mut text = format!(
        "{} -> {}: {}",
        row.from.label,
        row.to.host,
        describe_row(row)
    );
    if outcome.status == Status::NotProven {
        text.push_str(&unknown_text(row));
    }
    let total = outcome.pairs.len();
    if total > 1 {
        let same = outcome
            .pairs
            .iter()
            .filter(|(_, status)| *status == outcome.status)
            .count();
        let status = match outcome.status {
            Status::Pass => "pass",
            Status::Fail => "fail",
            Status::NotProven => "not proven",
        };
        text.push_str(&format!(" ({same} of {total} pairs {status})"));
    }
    let readings = readings(outcome);
    if !readings.is_empty() {
        text.push_str(&format!(" [depends on a reading: {}]", readings.join("; ")));
    }
    text
}

/// Describes each reading of ambiguous Azure behaviour that a verdict of the outcome's pairs
/// rests on, once, in the words of SL011. The status counts such a verdict as decided, so
/// every output names the readings beside it.
fn readings(outcome: &Outcome<'_>) -> Vec<String> {
    let mut readings: Vec<String> = Vec::new();
    for (row, _) in &outcome.pairs {
        for ambiguity in &row.decision.ambiguities {
            let reading = describe_ambiguity(ambiguity);
            if !readings.contains(&reading) {
                readings.push(reading);
            }
        }
    }
    readings
}

/// Returns an SL011 finding located at a passed expectation whose verdicts rest on a reading
/// of ambiguous Azure behaviour, or `None` when none does.
fn passed_on_reading(outcome: &Outcome<'_>) -> Option<Finding> {
    let readings = readings(outcome);
    if readings.is_empty() {
        return None;
    }
    let expectation = outcome.expectation;
    let message = format!(
        "the expectation of {} for `{}` -> `{}` passes only under a reading of ambiguous Azure behaviour: {}",
        expectation.verdict.as_str(),
        expectation.from,
        expectation.to,
        readings.join("; ")
    );
    let mut finding = Finding::new(FindingCode::SL011, Severity::Info, message)
        .help("docs/fidelity.md explains the reading subnetlock chose and its source");
    finding.location = Some(expectation.location.clone());
    Some(finding)
}

fn unknown_text(row: &Reachability) -> String {
    let mut parts = Vec::new();
    if !row.depends_on_unknown.is_empty() {
        parts.push(format!(
            "values known only at deployment time: {}",
            row.depends_on_unknown.join("; ")
        ));
    }
    for tag in super::unresolved_tags(row) {
        parts.push(format!(
            "the prefixes of service tag `{tag}`, which only a --service-tags file gives"
        ));
    }
    format!(", depending on {}", parts.join("; "))
}
