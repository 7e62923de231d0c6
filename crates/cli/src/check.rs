//! `subnetlock check` and `subnetlock explain`.

use std::path::Path;

use miette::{miette, Result};
use subnetlock_access::EngineOptions;
use subnetlock_emulator::Bindings;
use subnetlock_model::{Severity, Topology};
use subnetlock_reach::{analyze, output, sort_findings, Analysis, Reachability};

use crate::args::{CheckArgs, ExplainArgs, Format};
use crate::expect::{self, ExpectationFile};
use crate::function_apps::function_app_findings;
use crate::inputs::resolve_inputs;
use crate::{EXIT_FINDINGS, EXIT_OK};

pub fn check(args: CheckArgs) -> Result<i32> {
    let read = resolve_inputs(&args.input).and_then(|inputs| {
        let topology = inputs.topology()?;
        Ok((inputs, topology))
    });
    let (inputs, topology) = match read {
        Ok(read) => read,
        Err(error) => {
            let template = args
                .input
                .template
                .clone()
                .unwrap_or_else(|| args.input.input.clone());
            return fail(&args, error, &template, &template);
        }
    };
    let expectations = match &args.expect {
        Some(path) => match ExpectationFile::read(path) {
            Ok(file) => Some(file),
            Err(error) => return fail(&args, error.into(), &inputs.template, path),
        },
        None => None,
    };

    let mut analysis = analyze_deployment(topology, &inputs.bindings, &inputs.engine);
    let outcomes = match &expectations {
        Some(file) => match expect::evaluate(file, &analysis, &inputs) {
            Ok(outcomes) => Some((file, outcomes)),
            Err(error) => return fail(&args, error.into(), &inputs.template, &file.path),
        },
        None => None,
    };

    let has_errors = analysis
        .findings
        .iter()
        .any(|finding| finding.severity == Severity::Error);
    let text = render(
        args.format,
        &mut analysis,
        &inputs.template,
        outcomes.as_ref(),
    );
    out!("{}", text.trim_end());
    let unmet = outcomes.as_ref().is_some_and(|(_, outcomes)| {
        outcomes
            .iter()
            .any(|outcome| outcome.status != expect::Status::Pass)
    });
    Ok(if has_errors || unmet {
        EXIT_FINDINGS
    } else {
        EXIT_OK
    })
}

/// Runs the analysis whose findings `check` reports: the reachability analysis of `topology`
/// and the SL025 findings of the function apps that `bindings` binds to its sites. `up` serves
/// the same findings, so both call this.
pub fn analyze_deployment(
    topology: Topology,
    bindings: &Bindings,
    engine: &EngineOptions,
) -> Analysis {
    let mut analysis = analyze(topology, engine);
    let function_findings = function_app_findings(bindings, &analysis.topology);
    analysis.findings.extend(function_findings);
    sort_findings(&mut analysis.findings);
    analysis
}

/// Renders the analysis, with the expectation results when there are some. Without them
/// every format is what it was before `--expect` existed, byte for byte.
fn render(
    format: Format,
    analysis: &mut Analysis,
    template: &Path,
    outcomes: Option<&(&ExpectationFile, Vec<expect::Outcome<'_>>)>,
) -> String {
    let name = template.display().to_string();
    match (format, outcomes) {
        (Format::Human, None) => output::render_human(analysis, &name),
        (Format::Human, Some((file, outcomes))) => {
            output::render_human(analysis, &name) + &expect::render_human(file, outcomes)
        }
        (Format::Json, None) => output::render_json(analysis, &name),
        (Format::Json, Some((file, outcomes))) => {
            let mut document = output::json_document(analysis, &name);
            expect::add_to_json(&mut document, file, outcomes);
            serde_json::to_string_pretty(&document).unwrap_or_default()
        }
        (Format::Sarif, outcomes) => {
            // A violated expectation is a result like a finding, located in the expectations
            // file, so the SARIF log carries it without a second run.
            if let Some((_, outcomes)) = outcomes {
                analysis.findings.extend(expect::sarif_findings(outcomes));
            }
            output::render_sarif(analysis, template, sarif_base().as_deref())
        }
    }
}

/// Prints the document of a failed run in the data formats, which names the failure, and
/// returns `error`, which the caller reports on stderr as for any error. `template` goes into
/// the JSON document, and `artifact` is the file the SARIF log names as the cause.
fn fail(args: &CheckArgs, error: miette::Report, template: &Path, artifact: &Path) -> Result<i32> {
    // A document has no place for the causes a report prints below its message, so they
    // follow it on the same line.
    let message = error
        .chain()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(": ");
    let help = error.help().map(|help| help.to_string());
    match args.format {
        Format::Human => {}
        Format::Json => out!(
            "{}",
            output::render_json_failure(&message, help.as_deref(), &template.display().to_string())
        ),
        Format::Sarif => out!(
            "{}",
            output::render_sarif_failure(
                &message,
                help.as_deref(),
                artifact,
                sarif_base().as_deref()
            )
        ),
    }
    Err(error)
}

/// Returns the base directory of SARIF artifact URIs: the current directory, which in CI is
/// the repository root that code scanning resolves `%SRCROOT%` to.
fn sarif_base() -> Option<std::path::PathBuf> {
    std::env::current_dir().ok()
}

pub fn explain(args: ExplainArgs) -> Result<i32> {
    let inputs = resolve_inputs(&args.input)?;
    inputs.check_service_tag_caller(&args.from)?;
    let topology = inputs.topology()?;
    let analysis = analyze(topology, &inputs.engine);

    let from = normalize_caller(
        &args.from,
        &analysis.topology,
        inputs.engine.service_tags.as_deref(),
    );
    let target = target_host(&args.to);
    let rows: Vec<_> = analysis
        .rows
        .iter()
        .filter(|row| row.from.label.eq_ignore_ascii_case(&from))
        .filter(|row| row.to.host == target || names_site(row, &target))
        .collect();
    if let Some(note) = output::deployment_failure_note(
        &analysis,
        "`subnetlock check` with the same options says why",
    ) {
        out_raw!("{note}\n\n");
    }
    if rows.is_empty() {
        let row = explain_any_caller(&analysis, &inputs, &from, &target, &args)?;
        out_raw!("{}", output::render_explanation(&row));
        return Ok(EXIT_OK);
    }
    for row in rows {
        out_raw!("{}", output::render_explanation(row));
    }
    Ok(EXIT_OK)
}

/// Builds the row of a caller that the matrix does not list, such as an internet address that
/// no rule names, so that it prints in the same layout as the matrix rows.
fn explain_any_caller(
    analysis: &subnetlock_reach::Analysis,
    inputs: &crate::inputs::Inputs,
    from: &str,
    target: &str,
    args: &ExplainArgs,
) -> Result<Reachability> {
    let topology = &analysis.topology;
    let scm_site = target
        .strip_suffix(".scm")
        .and_then(|name| topology.site(name));
    let host = match (topology.site(target), scm_site) {
        (Some(site), _) => site.default_host_name.clone(),
        (None, Some(site)) => site.scm_host_name.clone(),
        (None, None) => target.to_owned(),
    };
    if topology.site_for_host(&host).is_none() {
        let mut sites: Vec<&str> = topology.sites.iter().map(|s| s.name.as_str()).collect();
        sites.sort();
        let help = if sites.is_empty() {
            "this deployment has no sites, so there is nothing to explain".to_owned()
        } else {
            format!("sites in this deployment: {}", sites.join(", "))
        };
        return Err(miette!(
            help = help,
            "no site `{}` in this deployment",
            args.to
        ));
    }
    subnetlock_reach::reachability_of(topology, from, &host, &inputs.engine).ok_or_else(|| {
        let mut labels: Vec<&str> = analysis
            .rows
            .iter()
            .map(|r| r.from.label.as_str())
            .collect();
        labels.sort();
        labels.dedup();
        let listed = format!("callers in this deployment: {}", labels.join(", "));
        let (kind, value) = from.split_once(':').unwrap_or((from, ""));
        match kind {
            "internet" if value.parse::<std::net::IpAddr>().is_err() => miette!(
                help = "write an IPv4 or IPv6 address, such as `internet:198.51.100.7`, or `internet` alone",
                "invalid address `{value}` in caller `{}`",
                args.from
            ),
            "subnet" => {
                let subnets: Vec<String> = topology
                    .vnets
                    .iter()
                    .flat_map(|vnet| {
                        vnet.subnets
                            .iter()
                            .map(move |subnet| format!("subnet:{}/{}", vnet.name, subnet.name))
                    })
                    .collect();
                let help = if subnets.is_empty() {
                    "this deployment has no subnets".to_owned()
                } else {
                    format!("subnets in this deployment: {}", subnets.join(", "))
                };
                miette!(help = help, "no subnet `{value}` in this deployment")
            }
            "app" => miette!(help = listed, "no site `{value}` in this deployment"),
            _ => miette!(
                help = format!(
                    "write `internet`, `internet:<address>`, `subnet:<vnet>/<subnet>`, `app:<site>` or `servicetag:<tag>`; {listed}"
                ),
                "invalid caller `{}`",
                args.from
            ),
        }
    })
}

/// Returns the site name or host name `--to` names: the host of an `http` or `https` URL such
/// as `https://<site>.azurewebsites.net/api/f`, else the text itself, in lower case.
pub(crate) fn target_host(text: &str) -> String {
    let text = text.trim();
    match reqwest::Url::parse(text) {
        Ok(url) if matches!(url.scheme(), "http" | "https") => match url.host_str() {
            Some(host) => host.to_ascii_lowercase(),
            None => text.to_ascii_lowercase(),
        },
        _ => text.to_ascii_lowercase(),
    }
}

/// Returns whether `target`, a site name or `<site>.scm` as `check --expect` accepts them,
/// names the row's main or scm site.
fn names_site(row: &Reachability, target: &str) -> bool {
    match target.strip_suffix(".scm") {
        Some(name) if row.to.kind == subnetlock_access::SiteKind::Scm => {
            row.to.site.eq_ignore_ascii_case(name)
        }
        _ => {
            row.to.kind == subnetlock_access::SiteKind::Main
                && row.to.site.eq_ignore_ascii_case(target)
        }
    }
}

/// `internet` alone means the matrix's internet caller for the addresses that no rule names,
/// with `service_tags` the table the matrix was built with. The caller kind is matched ignoring
/// case, as in `check --expect`.
fn normalize_caller(
    text: &str,
    topology: &subnetlock_model::Topology,
    service_tags: Option<&subnetlock_access::ServiceTagTable>,
) -> String {
    let text = text.trim();
    if text.eq_ignore_ascii_case("internet") {
        return format!(
            "internet:{}",
            subnetlock_reach::unnamed_internet_v4(topology, service_tags)
        );
    }
    match text.split_once(':') {
        Some((kind, value)) => format!("{}:{value}", kind.to_ascii_lowercase()),
        None => text.to_owned(),
    }
}
