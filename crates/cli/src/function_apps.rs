//! SL025 findings for the function apps that the binding file binds to sites: functions the
//! Azure Functions host would load in error, and apps that fail to load as a whole.
//!
//! The apps are loaded by the emulator's Functions host, which leaves out each function the
//! real host records as a function error (`ScriptHost.ValidateFunction`,
//! `HostFunctionMetadataProvider`) and fails the whole app for a route template that ASP.NET
//! Core cannot parse.

use std::path::{Path, PathBuf};

use subnetlock_access::Outcome;
use subnetlock_arm::{JsonStep, SourceLocation, SpannedJson};
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
        // `check` starts no handler, so a placeholder executable keeps the loader from looking
        // up `defaultExecutablePath` on disk. The loader still rejects a host.json without it,
        // as `up` does. It logs each function error, which the findings already report, so its
        // events are dropped.
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
        FunctionError::InvalidValue { field, .. } => function_field_location(path, field),
        // The route the host compares is `route`, or the folder name when `route` is blank,
        // and then no field is at fault.
        FunctionError::ReservedRoute { .. } | FunctionError::ConflictingRoute { .. } => {
            function_field_location(path, "route")
        }
        FunctionError::InvalidName { .. } | FunctionError::Read { .. } => file_start(path),
    };
    let message = format!("site `{}`: {error}", site.name);
    finding(Severity::Warning, message, miette::Diagnostic::help(error)).at(&site.id, location)
}

/// Builds the error for an app that fails to load, located in the file that makes it fail.
fn app_finding(site: &Site, root: &Path, error: &HostError) -> Finding {
    let location = match error {
        HostError::InvalidRoute { function, .. } => {
            function_field_location(function_json(root, function), "route")
        }
        HostError::Json { path, source } => {
            json_error_location(path.clone(), source.line(), source.column())
        }
        HostError::InvalidValue { path, field, .. } => host_field_location(path.clone(), field),
        HostError::InvalidType { location, .. } => (**location).clone(),
        HostError::Read { path, .. } | HostError::MissingCustomHandler { path } => {
            file_start(path.clone())
        }
        // Only starting the handler fails in the remaining ways, and `check` does not start it.
        HostError::Port { .. }
        | HostError::Spawn { .. }
        | HostError::Exited { .. }
        | HostError::TimedOut { .. } => file_start(root.join("host.json")),
    };
    let message = format!(
        "site `{}`: function app `{}` fails to load, so its Functions host does not start and every request that the access restrictions allow gets 503: {}",
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

/// Locates `field` of a function.json as the loader names it: a field of the HTTP trigger
/// (`route`, `authLevel`, `methods`, `name`), `bindings`, or `bindings[<index>].<key>`. A field
/// the file does not contain, such as a missing `bindings`, falls back to the file's start.
fn function_field_location(file: PathBuf, field: &str) -> SourceLocation {
    let Some(document) = read_spanned(&file) else {
        return file_start(file);
    };
    let located = match parse_binding_field(field) {
        Some((index, key)) => document.locate(&binding_steps(index, key)),
        None if field == "bindings" => document.locate(&[JsonStep::Key("bindings")]),
        None => http_trigger_index(&file)
            .and_then(|index| document.locate(&binding_steps(index, Some(field)))),
    };
    located.unwrap_or_else(|| file_start(file))
}

/// Locates `field` of host.json as the loader names it. The loader names a field either by its
/// dotted path from the top, such as `extensions.http.routePrefix`, or by its key alone inside
/// the custom handler section (`customHandler`, or `httpWorker` before it) or that section's
/// `description`. A missing field, such as `customHandler.description`, is located at the
/// nearest object on its dotted path that the file contains, and at the file's start when
/// there is none.
fn host_field_location(file: PathBuf, field: &str) -> SourceLocation {
    let Some(document) = read_spanned(&file) else {
        return file_start(file);
    };
    let dotted: Vec<JsonStep<'_>> = field.split('.').map(JsonStep::Key).collect();
    let mut candidates = vec![dotted.clone()];
    for section in ["customHandler", "httpWorker"] {
        let section = JsonStep::Key(section);
        candidates.push(vec![
            section,
            JsonStep::Key("description"),
            JsonStep::Key(field),
        ]);
        candidates.push(vec![section, JsonStep::Key(field)]);
    }
    let enclosing = (1..dotted.len())
        .rev()
        .map(|length| dotted[..length].to_vec());
    candidates
        .into_iter()
        .chain(enclosing)
        .find_map(|steps| document.locate(&steps))
        .unwrap_or_else(|| file_start(file))
}

/// Reads `file` with spans. The loader has read it already, so a failure here only loses the
/// position.
fn read_spanned(file: &Path) -> Option<SpannedJson> {
    match SpannedJson::read(file) {
        Ok(document) => Some(document),
        Err(error) => {
            tracing::debug!(file = %file.display(), %error, "cannot locate the field at fault, so the finding points at the file's start");
            None
        }
    }
}

/// Splits `bindings[<index>]` or `bindings[<index>].<key>` into the index and the key.
fn parse_binding_field(field: &str) -> Option<(usize, Option<&str>)> {
    let rest = field.strip_prefix("bindings[")?;
    let (index, rest) = rest.split_once(']')?;
    let index = index.parse().ok()?;
    match rest {
        "" => Some((index, None)),
        _ => Some((index, Some(rest.strip_prefix('.')?))),
    }
}

fn binding_steps(index: usize, key: Option<&str>) -> Vec<JsonStep<'_>> {
    let mut steps = vec![JsonStep::Key("bindings"), JsonStep::Index(index)];
    steps.extend(key.map(JsonStep::Key));
    steps
}

/// Returns the index of the binding the loader reads as the HTTP trigger: the first whose
/// `type` is `httpTrigger`, ignoring case.
fn http_trigger_index(file: &Path) -> Option<usize> {
    // The loader has parsed the file as plain JSON, so serde_json reads it too.
    let text = std::fs::read_to_string(file).ok()?;
    let json: serde_json::Value =
        serde_json::from_str(text.strip_prefix('\u{feff}').unwrap_or(&text)).ok()?;
    json.get("bindings")?
        .as_array()?
        .iter()
        .position(|binding| {
            binding
                .get("type")
                .and_then(serde_json::Value::as_str)
                .is_some_and(|kind| kind.eq_ignore_ascii_case("httpTrigger"))
        })
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
