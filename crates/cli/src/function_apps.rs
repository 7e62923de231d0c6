//! SL025 findings for the function apps that the binding file binds to sites: functions the
//! Azure Functions host would load in error, and apps that fail to load as a whole.
//!
//! The apps are loaded by the emulator's Functions host, which leaves out each function the
//! real host records as a function error (`ScriptHost.ValidateFunction`,
//! `HostFunctionMetadataProvider`) and fails the whole app for a route template that ASP.NET
//! Core cannot parse.

use std::path::{Path, PathBuf};

use subnetlock_access::Outcome;
use subnetlock_arm::SourceLocation;
use subnetlock_emulator::functions_host::{load_function_app, FunctionError, HostError};
use subnetlock_emulator::Bindings;
use subnetlock_model::{Finding, FindingCode, Severity, Site, Topology};
use tracing::subscriber::NoSubscriber;

/// Loads the function app bound to each site of `topology` and returns a warning for each
/// function in error and an error for each app that fails to load.
pub fn function_app_findings(bindings: &Bindings, topology: &Topology) -> Vec<Finding> {
    let mut findings = Vec::new();
    for site in &topology.sites {
        let Some(binding) = bindings.for_site(&site.name) else {
            continue;
        };
        let root = &binding.function_app;
        // `check` starts no handler, so a placeholder executable keeps the loader from
        // resolving `defaultExecutablePath`. The loader logs each function error, which the
        // findings already report, so its events are dropped.
        let loaded = tracing::subscriber::with_default(NoSubscriber::default(), || {
            load_function_app(root, Some(Path::new("handler")))
        });
        match loaded {
            Ok(app) => findings.extend(
                app.function_errors
                    .iter()
                    .map(|error| function_finding(site, root, error)),
            ),
            // The emulator cannot run an app without `customHandler`, but Azure runs it with a
            // language worker, whose functions `check` does not read.
            Err(HostError::MissingCustomHandler { path }) => {
                tracing::debug!(site = %site.name, path = %path.display(), "function app has no custom handler, so its functions are not checked");
            }
            Err(error) => findings.push(app_finding(site, root, &error)),
        }
    }
    findings
}

/// Builds the warning for one function the host leaves out, located in its function.json.
fn function_finding(site: &Site, root: &Path, error: &FunctionError) -> Finding {
    let path = function_json(root, error.function());
    let location = match error {
        FunctionError::InvalidJson { line, column, .. } => {
            json_error_location(path, *line, *column)
        }
        _ => file_start(path),
    };
    let message = format!("site `{}`: {error}", site.name);
    finding(Severity::Warning, message, miette::Diagnostic::help(error)).at(&site.id, location)
}

/// Builds the error for an app that fails to load, located in the file that makes it fail.
fn app_finding(site: &Site, root: &Path, error: &HostError) -> Finding {
    let location = match error {
        HostError::InvalidRoute { function, .. } => file_start(function_json(root, function)),
        HostError::Json { path, source } => {
            json_error_location(path.clone(), source.line(), source.column())
        }
        HostError::Read { path, .. }
        | HostError::InvalidValue { path, .. }
        | HostError::MissingCustomHandler { path } => file_start(path.clone()),
        // Only starting the handler fails in the remaining ways, and `check` does not start it.
        HostError::Port { .. }
        | HostError::Spawn { .. }
        | HostError::Exited { .. }
        | HostError::TimedOut { .. } => file_start(root.join("host.json")),
    };
    let message = format!(
        "site `{}`: function app `{}` fails to load, so its Functions host does not start and every request to the site gets 503: {}",
        site.name,
        root.display(),
        error_chain(error)
    );
    finding(Severity::Error, message, miette::Diagnostic::help(error)).at(&site.id, location)
}

fn finding(
    severity: Severity,
    message: String,
    help: Option<Box<dyn std::fmt::Display + '_>>,
) -> Finding {
    let finding = Finding::new(FindingCode::SL025, severity, message).outcome(Outcome::Silent);
    match help {
        Some(help) => finding.help(help.to_string()),
        None => finding,
    }
}

/// The function.json of function `name`: the loader reads functions from `<root>/<name>/`.
fn function_json(root: &Path, name: &str) -> PathBuf {
    root.join(name).join("function.json")
}

/// Joins the error's message and its causes with `: `, because a finding has one message.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn file_start(file: PathBuf) -> SourceLocation {
    SourceLocation {
        file,
        line: 1,
        column: 1,
        json_path: "$".to_owned(),
        offset: 0,
        length: 0,
    }
}

/// Locates a JSON syntax error that `serde_json` reports at `line` and byte `column`, with the
/// column converted to characters as SARIF output declares (`unicodeCodePoints`).
fn json_error_location(file: PathBuf, line: usize, column: usize) -> SourceLocation {
    let Ok(text) = std::fs::read_to_string(&file) else {
        return file_start(file);
    };
    // The loader strips a UTF-8 byte order mark before parsing, so its columns start after it.
    let bom = if text.starts_with('\u{feff}') { 3 } else { 0 };
    let body = &text[bom..];

    let mut line_start = 0;
    for _ in 1..line {
        match body[line_start..].find('\n') {
            Some(newline) => line_start += newline + 1,
            None => return file_start(file),
        }
    }
    let line_text = body[line_start..].split('\n').next().unwrap_or_default();
    let mut end = column.min(line_text.len());
    while !line_text.is_char_boundary(end) {
        end += 1;
    }
    let characters = line_text[..end].chars().count();
    SourceLocation {
        file,
        line: line.max(1),
        column: characters.max(1),
        json_path: "$".to_owned(),
        offset: bom + line_start + end.saturating_sub(1),
        length: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::json_error_location;

    #[test]
    fn json_error_column_counts_characters() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("function.json");
        // `é` is two bytes, so the byte column of the stray comma is one more than its
        // character column.
        std::fs::write(&path, "\u{feff}{\n  \"é\": ,\n}").expect("write");
        let error = serde_json::from_str::<serde_json::Value>("{\n  \"é\": ,\n}")
            .expect_err("invalid JSON");

        let location = json_error_location(path, error.line(), error.column());

        assert_eq!(location.line, 2);
        assert_eq!(location.column, 8);
    }
}
