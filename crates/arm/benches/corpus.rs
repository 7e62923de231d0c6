//! Loads and evaluates every template of the corpus, with its parameters file, several times
//! and prints the median wall time of one whole pass.
//!
//! Run with `cargo bench -p subnetlock-arm --bench corpus -- [passes] [corpus dir]`. Passes
//! default to 20; the directory defaults to `shared/corpus/arm` found above the crate
//! directory. The output's last line is machine-readable: `median_ms=<float> templates=<n>`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use subnetlock_arm::{evaluate_file, EvalOptions, OfflineProvider, Parameters, Scope, Value};

fn main() -> ExitCode {
    // `cargo bench` appends `--bench`, so flags are skipped and only positional arguments count.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|arg| !arg.starts_with("--"))
        .collect();
    let passes = match args.first().map(|text| text.parse::<usize>()) {
        None => 20,
        Some(Ok(passes)) if passes > 0 => passes,
        Some(_) => {
            eprintln!("invalid pass count `{}`: give a positive integer", args[0]);
            return ExitCode::FAILURE;
        }
    };
    let dir = match args.get(1) {
        Some(dir) => PathBuf::from(dir),
        None => match default_corpus_dir() {
            Some(dir) => dir,
            None => {
                eprintln!("skipped: shared/corpus/arm not found above the crate directory");
                return ExitCode::SUCCESS;
            }
        },
    };

    let templates = match list_templates(&dir) {
        Ok(templates) => templates,
        Err(error) => {
            eprintln!("cannot list `{}`: {error}", dir.display());
            return ExitCode::FAILURE;
        }
    };

    // One untimed pass checks that every template evaluates, and warms the page cache.
    let mut resources = 0;
    for template in &templates {
        match evaluate(template) {
            Ok(count) => resources += count,
            Err(message) => {
                eprintln!("{}: {message}", template.display());
                return ExitCode::FAILURE;
            }
        }
    }

    let mut times: Vec<Duration> = Vec::with_capacity(passes);
    for _ in 0..passes {
        let start = Instant::now();
        for template in &templates {
            // Errors were ruled out by the first pass; the result only has to be used.
            std::hint::black_box(evaluate(template).ok());
        }
        times.push(start.elapsed());
    }
    times.sort();
    let median = times[times.len() / 2];
    let min = times[0];
    let max = times[times.len() - 1];
    println!(
        "{} templates, {resources} resources, {passes} passes: min {:.1} ms, median {:.1} ms, max {:.1} ms",
        templates.len(),
        ms(min),
        ms(median),
        ms(max)
    );
    println!("median_ms={:.3} templates={}", ms(median), templates.len());
    ExitCode::SUCCESS
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

fn default_corpus_dir() -> Option<PathBuf> {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|ancestor| ancestor.join("shared/corpus/arm"))
        .find(|candidate| candidate.is_dir())
}

/// Template files of the directory: `*.json` that are not `*.parameters.json`. Linked
/// templates in subdirectories are left out, as a deployment reaches them only by URI.
fn list_templates(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut templates = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path
            .file_name()
            .and_then(|name| name.to_str())
            .unwrap_or("");
        if path.is_file() && name.ends_with(".json") && !name.contains(".parameters.") {
            templates.push(path);
        }
    }
    templates.sort();
    Ok(templates)
}

/// Reads the parameters file (when present), evaluates the template and returns its number
/// of resources.
fn evaluate(template: &Path) -> Result<usize, String> {
    let mut parameters = match parameters_file(template) {
        Some(file) => Parameters::from_file(&file).map_err(|error| error.to_string())?,
        None => Parameters::new(),
    };
    let name = template
        .file_name()
        .and_then(|name| name.to_str())
        .unwrap_or("");
    required_parameters(name, &mut parameters);
    let options = EvalOptions {
        scope: Scope::default(),
        parameters,
    };
    evaluate_file(template, &options, &OfflineProvider)
        .map(|deployment| deployment.resources.len())
        .map_err(|error| error.to_string())
}

fn parameters_file(template: &Path) -> Option<PathBuf> {
    let stem = template.file_stem()?.to_str()?;
    ["parameters.json", "parameters.jsonc"]
        .iter()
        .map(|extension| template.with_file_name(format!("{stem}.{extension}")))
        .find(|candidate| candidate.is_file())
}

/// Sets parameters that a corpus template requires but neither defaults nor gets from a
/// parameters file. Without them the evaluator rejects the template.
fn required_parameters(file_name: &str, parameters: &mut Parameters) {
    const RG: &str =
        "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/subnetlock/providers";
    let text = |value: String| Value::String(value);
    match file_name {
        "avm-res-web-site.json" => {
            parameters.set("name", text("site-bench".to_owned()));
            parameters.set("kind", text("functionapp".to_owned()));
            parameters.set(
                "serverFarmResourceId",
                text(format!("{RG}/Microsoft.Web/serverfarms/plan")),
            );
        }
        "avm-ptn-appsvc-lza-hosting-env.json" => {
            parameters.set(
                "logAnalyticsWorkspaceResourceId",
                text(format!("{RG}/Microsoft.OperationalInsights/workspaces/log")),
            );
        }
        "bicep-func-create.json" | "bicep-func-create.symbolicnames.json" => {
            parameters.set(
                "workspaceResourceId",
                text(format!("{RG}/Microsoft.OperationalInsights/workspaces/log")),
            );
        }
        _ => {}
    }
}
