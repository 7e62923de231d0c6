//! `subnetlock check` and `subnetlock explain`.

use miette::{miette, Result};
use subnetlock_model::Severity;
use subnetlock_reach::{analyze, output, Reachability};

use crate::args::{CheckArgs, ExplainArgs, Format};
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
            // Data formats still get a document on stdout, which names the failure; the
            // located report goes to stderr as for any error.
            let template = args
                .input
                .template
                .clone()
                .unwrap_or_else(|| args.input.input.clone());
            // A document has no place for the causes a report prints below its message, so
            // they follow it on the same line.
            let message = error
                .chain()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(": ");
            match args.format {
                Format::Human => {}
                Format::Json => {
                    let help = error.help().map(|help| help.to_string());
                    out!(
                        "{}",
                        output::render_json_failure(
                            &message,
                            help.as_deref(),
                            &template.display().to_string()
                        )
                    )
                }
                Format::Sarif => out!(
                    "{}",
                    output::render_sarif_failure(&message, &template, sarif_base().as_deref())
                ),
            }
            return Err(error);
        }
    };
    let analysis = analyze(topology, &inputs.engine);
    let template = inputs.template.display().to_string();
    let text = match args.format {
        Format::Human => output::render_human(&analysis, &template),
        Format::Json => output::render_json(&analysis, &template),
        Format::Sarif => output::render_sarif(&analysis, &inputs.template, sarif_base().as_deref()),
    };
    out!("{}", text.trim_end());
    let has_errors = analysis
        .findings
        .iter()
        .any(|finding| finding.severity == Severity::Error);
    Ok(if has_errors { EXIT_FINDINGS } else { EXIT_OK })
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

    let from = normalize_caller(&args.from);
    let target = target_host(&args.to);
    let rows: Vec<_> = analysis
        .rows
        .iter()
        .filter(|row| row.from.label.eq_ignore_ascii_case(&from))
        .filter(|row| {
            row.to.host == target
                || (row.to.site.eq_ignore_ascii_case(&target)
                    && row.to.kind == subnetlock_access::SiteKind::Main)
        })
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
    let host = match topology.site(target) {
        Some(site) => site.default_host_name.clone(),
        None => target.to_owned(),
    };
    if topology.site_for_host(&host).is_none() {
        let mut sites: Vec<&str> = topology.sites.iter().map(|s| s.name.as_str()).collect();
        sites.sort();
        return Err(miette!(
            help = format!("sites in this deployment: {}", sites.join(", ")),
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
        miette!(
            help = format!(
                "write `internet:<address>`, `subnet:<vnet>/<subnet>`, `app:<site>` or `servicetag:<tag>`; callers in this deployment: {}",
                labels.join(", ")
            ),
            "invalid caller `{}`",
            args.from
        )
    })
}

/// Returns the site name or host name `--to` names: the host of an `http` or `https` URL such
/// as `https://<site>.azurewebsites.net/api/f`, else the text itself, in lower case.
fn target_host(text: &str) -> String {
    let text = text.trim();
    match reqwest::Url::parse(text) {
        Ok(url) if matches!(url.scheme(), "http" | "https") => match url.host_str() {
            Some(host) => host.to_ascii_lowercase(),
            None => text.to_ascii_lowercase(),
        },
        _ => text.to_ascii_lowercase(),
    }
}

/// `internet` alone means the analysis' sample internet address.
fn normalize_caller(text: &str) -> String {
    if text.trim().eq_ignore_ascii_case("internet") {
        format!("internet:{}", subnetlock_model::egress::INTERNET_SAMPLE)
    } else {
        text.trim().to_owned()
    }
}
