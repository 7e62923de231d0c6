//! `subnetlock check` and `subnetlock explain`.

use miette::{miette, Result};
use subnetlock_model::Severity;
use subnetlock_reach::{analyze, output};

use crate::args::{CheckArgs, ExplainArgs, Format};
use crate::inputs::resolve_inputs;
use crate::{EXIT_FINDINGS, EXIT_OK};

pub fn check(args: CheckArgs) -> Result<i32> {
    let inputs = resolve_inputs(&args.input)?;
    let topology = inputs.topology()?;
    let analysis = analyze(topology, &inputs.engine);
    let template = inputs.template.display().to_string();
    let text = match args.format {
        Format::Human => output::render_human(&analysis, &template),
        Format::Json => output::render_json(&analysis, &template),
        Format::Sarif => output::render_sarif(&analysis, &template),
    };
    out!("{}", text.trim_end());
    let has_errors = analysis
        .findings
        .iter()
        .any(|finding| finding.severity == Severity::Error);
    Ok(if has_errors { EXIT_FINDINGS } else { EXIT_OK })
}

pub fn explain(args: ExplainArgs) -> Result<i32> {
    let inputs = resolve_inputs(&args.input)?;
    let topology = inputs.topology()?;
    let analysis = analyze(topology, &inputs.engine);

    let from = normalize_caller(&args.from);
    let target = args.to.trim().to_ascii_lowercase();
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
    if rows.is_empty() {
        let callers: Vec<&str> = {
            let mut labels: Vec<&str> = analysis
                .rows
                .iter()
                .map(|r| r.from.label.as_str())
                .collect();
            labels.sort();
            labels.dedup();
            labels
        };
        return Err(miette!(
            help = format!("callers in this deployment: {}", callers.join(", ")),
            "no caller `{}` with target `{}` in this deployment",
            args.from,
            args.to
        ));
    }
    for row in rows {
        out_raw!("{}", output::render_explanation(row));
    }
    Ok(EXIT_OK)
}

/// `internet` alone means the analysis' sample internet address.
fn normalize_caller(text: &str) -> String {
    if text.trim().eq_ignore_ascii_case("internet") {
        format!("internet:{}", subnetlock_model::egress::INTERNET_SAMPLE)
    } else {
        text.trim().to_owned()
    }
}
