//! `check --expect`: who may reach whom, checked against the reachability `check` computes.
//!
//! Each expectation names callers and targets by pattern and the verdict every pair of them
//! must get. The verdicts are the matrix rows of [`subnetlock_reach::analyze`], or for a
//! caller the matrix does not list (an internet address that no rule names, a service tag no
//! rule names) the row [`subnetlock_reach::reachability_of`] builds the same way. No rule is
//! evaluated here.

mod file;
mod internet;
mod render;

pub use file::{ExpectationFile, ExpectationsError};
pub use render::{add_to_json, render_human, sarif_findings};

use std::net::IpAddr;

use subnetlock_access::{Ambiguity, SiteKind};
use subnetlock_emulator::bindings::pattern_matches;
use subnetlock_model::egress;
use subnetlock_reach::{Analysis, CallerKind, Reachability};

use crate::inputs::Inputs;
use file::{CallerPattern, Expectation, ExpectedVerdict, NamedCaller, Position, TargetPattern};

/// The result of one expectation, or of one caller-target pair of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    Pass,
    /// The verdict depends on a value known only at deployment time, so neither `allow` nor
    /// `deny` is proven offline.
    NotProven,
    /// The verdict is known and is not the expected one.
    Fail,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::NotProven => "not_proven",
            Status::Fail => "fail",
        }
    }
}

/// The result of one expectation: every caller-target pair its patterns match.
pub struct Outcome<'a> {
    pub expectation: &'a Expectation,
    pub status: Status,
    /// Each pair's row and status, in matrix order.
    pub pairs: Vec<(Reachability, Status)>,
}

impl Outcome<'_> {
    /// Returns the pair that decided the status: the first failing pair, else the first one
    /// not proven, else the first pair.
    pub fn deciding_pair(&self) -> Option<&(Reachability, Status)> {
        self.pairs
            .iter()
            .find(|(_, status)| *status == self.status)
            .or_else(|| self.pairs.first())
    }
}

/// Checks every expectation of `file` against `analysis`. Fails when a pattern matches no
/// caller or no site of the deployment, so a misspelt name cannot pass unnoticed.
pub fn evaluate<'a>(
    file: &'a ExpectationFile,
    analysis: &Analysis,
    inputs: &Inputs,
) -> Result<Vec<Outcome<'a>>, ExpectationsError> {
    let mut outcomes = Vec::new();
    for expectation in &file.expectations {
        let resolver = Resolver {
            file,
            analysis,
            inputs,
        };
        let targets = resolver.targets(expectation)?;
        let callers = resolver.callers(expectation)?;
        let mut pairs = Vec::new();
        for caller in &callers {
            for target in &targets {
                let row = resolver.row(expectation, caller, target)?;
                let status = pair_status(&row, expectation.verdict);
                pairs.push((row, status));
            }
        }
        let status = pairs
            .iter()
            .map(|(_, status)| *status)
            .max()
            .unwrap_or(Status::Pass);
        outcomes.push(Outcome {
            expectation,
            status,
            pairs,
        });
    }
    Ok(outcomes)
}

/// Compares one row with the expected verdict. A row that depends on an unknown value is not
/// proven either way. Offline, an unknown rule list is replaced by a placeholder that matches
/// nothing, so its verdict holds only if the value turns out harmless.
fn pair_status(row: &Reachability, expected: ExpectedVerdict) -> Status {
    if !row.depends_on_unknown.is_empty() || !unresolved_tags(row).is_empty() {
        return Status::NotProven;
    }
    let reached = row.allowed();
    match (expected, reached) {
        (ExpectedVerdict::Allow, true) | (ExpectedVerdict::Deny, false) => Status::Pass,
        _ => Status::Fail,
    }
}

/// Returns the service tags of rules without prefixes (no `--service-tags` table, or a tag
/// the table lacks) that come before the deciding rule and could match the caller's address.
/// Their prefixes are unknown, like values known only at deployment time, so the verdict is
/// not proven. A caller over a service endpoint is seen by its subnet, which no tag contains.
pub(crate) fn unresolved_tags(row: &Reachability) -> Vec<&str> {
    if row.egress.source.service_endpoint.is_some() {
        return Vec::new();
    }
    row.decision
        .ambiguities
        .iter()
        .filter_map(|ambiguity| match ambiguity {
            Ambiguity::ServiceTagUnresolved { tag } => Some(tag.as_str()),
            _ => None,
        })
        .collect()
}

/// A site and which of its two host names an expectation targets.
struct TargetSite {
    site: String,
    kind: SiteKind,
    host: String,
}

/// Matches an expectation's patterns against one deployment.
struct Resolver<'a> {
    file: &'a ExpectationFile,
    analysis: &'a Analysis,
    inputs: &'a Inputs,
}

impl Resolver<'_> {
    fn targets(&self, expectation: &Expectation) -> Result<Vec<TargetSite>, ExpectationsError> {
        let mut targets = Vec::new();
        for site in &self.analysis.topology.sites {
            for (kind, host) in [
                (SiteKind::Main, &site.default_host_name),
                (SiteKind::Scm, &site.scm_host_name),
            ] {
                let matches = match &expectation.target {
                    TargetPattern::Site {
                        pattern,
                        kind: wanted,
                    } => *wanted == kind && name_matches(pattern, &site.name),
                    TargetPattern::Host(pattern) => name_matches(pattern, host),
                };
                if matches {
                    targets.push(TargetSite {
                        site: site.name.clone(),
                        kind,
                        host: host.clone(),
                    });
                }
            }
        }
        if targets.is_empty() {
            let mut sites: Vec<&str> = self
                .analysis
                .topology
                .sites
                .iter()
                .map(|site| site.name.as_str())
                .collect();
            sites.sort();
            let help = if sites.is_empty() {
                "the deployment has no web app or function app".to_owned()
            } else {
                format!(
                    "sites in this deployment: {}; write `<site>.scm` for a scm site",
                    sites.join(", ")
                )
            };
            return Err(self.no_match(expectation.to_at, &expectation.to, "site", help));
        }
        Ok(targets)
    }

    /// Returns the caller labels (`internet:<address>`, `app:<site>` …) that `from` matches.
    fn callers(&self, expectation: &Expectation) -> Result<Vec<String>, ExpectationsError> {
        match &expectation.caller {
            CallerPattern::AnyInternet => Ok(self.internet_callers()),
            CallerPattern::Internet(address) => Ok(vec![format!("internet:{address}")]),
            CallerPattern::Named { kind, pattern } => {
                let matrix_kind = match kind {
                    NamedCaller::Subnet => CallerKind::Subnet,
                    NamedCaller::App => CallerKind::App,
                    NamedCaller::ServiceTag => CallerKind::ServiceTag,
                };
                let prefix = format!("{}:", kind.prefix());
                let listed = self.matrix_callers(matrix_kind, |label| {
                    label
                        .strip_prefix(&prefix)
                        .is_some_and(|name| pattern_matches(pattern, name))
                });
                if !listed.is_empty() {
                    return Ok(listed);
                }
                if !pattern.contains('*') {
                    if let Some(label) = self.unlisted_caller(*kind, pattern) {
                        return Ok(vec![label]);
                    }
                }
                let tag_missing_from_file = *kind == NamedCaller::ServiceTag
                    && !pattern.contains('*')
                    && self.inputs.engine.service_tags.is_some();
                let help = if tag_missing_from_file {
                    format!(
                        "the --service-tags file has no tag `{pattern}`; write the tag as the file's `values[].name` spells it"
                    )
                } else {
                    self.callers_help(matrix_kind)
                };
                Err(self.no_match(
                    expectation.from_at,
                    &expectation.from,
                    match kind {
                        NamedCaller::Subnet => "subnet",
                        NamedCaller::App => "app",
                        NamedCaller::ServiceTag => "service tag",
                    },
                    help,
                ))
            }
        }
    }

    /// Returns the labels of the matrix callers of `kind` that `keep` accepts, in matrix
    /// order and without repeats.
    fn matrix_callers(&self, kind: CallerKind, keep: impl Fn(&str) -> bool) -> Vec<String> {
        let mut labels: Vec<String> = Vec::new();
        for row in &self.analysis.rows {
            if row.from.kind == kind && keep(&row.from.label) && !labels.contains(&row.from.label) {
                labels.push(row.from.label.clone());
            }
        }
        labels
    }

    /// Returns the matrix's internet callers followed by one address of each set of addresses
    /// that the rules treat alike and that the matrix does not sample, so that `internet`
    /// covers every internet caller and not only the matrix's samples.
    fn internet_callers(&self) -> Vec<String> {
        let mut labels = self.matrix_callers(CallerKind::Internet, |_| true);
        let listed: Vec<IpAddr> = labels
            .iter()
            .filter_map(|label| label.strip_prefix("internet:")?.parse().ok())
            .collect();
        let ipv6_unnamed = listed.contains(&egress::INTERNET_SAMPLE_V6);
        let samples = internet::internet_samples(
            &self.analysis.topology,
            &self.inputs.engine,
            &listed,
            ipv6_unnamed,
        );
        for address in samples {
            if !listed.contains(&address) {
                labels.push(format!("internet:{address}"));
            }
        }
        labels
    }

    /// Returns the label of a caller the matrix does not list under this name: a subnet named
    /// by id or by a unique subnet name, or a service tag that no rule names. With
    /// `--service-tags`, the tag must be in that file.
    fn unlisted_caller(&self, kind: NamedCaller, name: &str) -> Option<String> {
        let topology = &self.analysis.topology;
        match kind {
            NamedCaller::Subnet => topology.find_subnet(name).map(|_| format!("subnet:{name}")),
            NamedCaller::App => None,
            NamedCaller::ServiceTag => {
                let known = match &self.inputs.engine.service_tags {
                    Some(table) => table.prefixes(name).is_some(),
                    None => true,
                };
                known.then(|| format!("servicetag:{name}"))
            }
        }
    }

    fn callers_help(&self, kind: CallerKind) -> String {
        let labels = self.matrix_callers(kind, |_| true);
        if labels.is_empty() {
            return format!("this deployment has no such caller; {}", file::CALLER_FORMS);
        }
        format!(
            "callers of this kind in this deployment: {}",
            labels.join(", ")
        )
    }

    /// Returns the matrix row of `caller` to `target`, or builds it as `explain` does for a
    /// caller the matrix does not list.
    fn row(
        &self,
        expectation: &Expectation,
        caller: &str,
        target: &TargetSite,
    ) -> Result<Reachability, ExpectationsError> {
        let listed = self.analysis.rows.iter().find(|row| {
            row.from.label.eq_ignore_ascii_case(caller)
                && row.to.site == target.site
                && row.to.kind == target.kind
        });
        if let Some(row) = listed {
            return Ok(row.clone());
        }
        subnetlock_reach::reachability_of(
            &self.analysis.topology,
            caller,
            &target.host,
            &self.inputs.engine,
        )
        .ok_or_else(|| {
            self.no_match(
                expectation.from_at,
                &expectation.from,
                "caller",
                file::CALLER_FORMS.to_owned(),
            )
        })
    }

    fn no_match(
        &self,
        at: Position,
        value: &str,
        kind: &'static str,
        help: String,
    ) -> ExpectationsError {
        ExpectationsError::NoMatch {
            path: self.file.path.clone(),
            line: at.line,
            column: at.column,
            value: value.to_owned(),
            kind,
            help,
        }
    }
}

/// Matches `name` against `pattern`, ignoring ASCII case as Azure does in names. `*` matches
/// any run of characters within one dot-separated label, so `b-*.azurewebsites.net`
/// does not also match `b-1.scm.azurewebsites.net`.
fn name_matches(pattern: &str, name: &str) -> bool {
    let patterns: Vec<&str> = pattern.split('.').collect();
    let names: Vec<&str> = name.split('.').collect();
    patterns.len() == names.len()
        && patterns
            .iter()
            .zip(&names)
            .all(|(pattern, name)| pattern_matches(pattern, name))
}

#[cfg(test)]
mod tests {
    use super::name_matches;

    #[test]
    fn name_matches_within_labels() {
        let cases = [
            ("function-app-b-*", "function-app-b-yobmxbvmtplck", true),
            ("FUNCTION-app-b-*", "function-app-b-x", true),
            ("function-app-b-*", "function-app-a-x", false),
            ("b-*.azurewebsites.net", "b-1.azurewebsites.net", true),
            ("b-*.azurewebsites.net", "b-1.scm.azurewebsites.net", false),
            (
                "b-*.scm.azurewebsites.net",
                "b-1.scm.azurewebsites.net",
                true,
            ),
            ("vnet/*", "vnet/default", true),
            ("*", "anything", true),
        ];
        for (pattern, name, expected) in cases {
            assert_eq!(name_matches(pattern, name), expected, "{pattern} vs {name}");
        }
    }
}
