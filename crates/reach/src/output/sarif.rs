//! SARIF 2.1.0 output, for GitHub code scanning and similar tools.
//!
//! A file under the base directory (the current directory of `check`) is written relative to
//! the base id [`SOURCE_ROOT`], and `originalUriBaseIds` maps that id to the base. Code
//! scanning can then match the file to one of the repository (SARIF 2.1.0, sections 3.4.4 and
//! 3.14.14). A file outside the base keeps an absolute `file://` URI.

use std::path::{Component, Path, PathBuf};

use serde_json::json;
use subnetlock_model::{Finding, FindingCode, Severity};

use crate::analysis::Analysis;

/// The base id of artifact URIs relative to the base directory; GitHub code scanning resolves
/// `%SRCROOT%` to the repository root.
const SOURCE_ROOT: &str = "%SRCROOT%";

/// The repository that hosts the finding catalogue, from the workspace's Cargo.toml.
const REPOSITORY: &str = env!("CARGO_PKG_REPOSITORY");

/// SARIF 2.1.0 with one result per finding. `base` is the directory that relative artifact
/// URIs start from, normally the current directory; `None` writes every path as given.
pub fn render_sarif(analysis: &Analysis, template: &Path, base: Option<&Path>) -> String {
    let mut codes: Vec<FindingCode> = analysis.findings.iter().map(|f| f.code).collect();
    codes.sort();
    codes.dedup();
    let rules: Vec<serde_json::Value> = codes
        .iter()
        .map(|code| {
            json!({
                "id": code.to_string(),
                "name": code.name(),
                "shortDescription": { "text": code.name().replace('-', " ") },
                "helpUri": rule_help_uri(*code),
            })
        })
        .collect();
    let results: Vec<serde_json::Value> = analysis
        .findings
        .iter()
        .map(|finding| sarif_result(finding, template, base))
        .collect();
    let run = json!({
        "tool": sarif_tool(Some(rules)),
        // Columns count characters (Unicode code points), not the UTF-16 code units SARIF
        // assumes by default (SARIF 2.1.0, section 3.14.17).
        "columnKind": "unicodeCodePoints",
        "properties": { "scaleUnit": analysis.topology.scale_unit },
        "results": results,
    });
    sarif_log(run, base)
}

/// Renders a SARIF log for a run that could not analyse the template, so that a CI job that
/// uploads the file gets the reason instead of an empty file. The run has no results, and its
/// invocation failed with `message` (SARIF 2.1.0, section 3.20). `help`, the next step, follows
/// the message in the same text, because a notification has no field of its own for it.
pub fn render_sarif_failure(
    message: &str,
    help: Option<&str>,
    template: &Path,
    base: Option<&Path>,
) -> String {
    let text = match help {
        Some(help) => format!("{message}\nhelp: {help}"),
        None => message.to_owned(),
    };
    let run = json!({
        "tool": sarif_tool(None),
        "invocations": [{
            "executionSuccessful": false,
            "toolExecutionNotifications": [{
                "level": "error",
                "message": { "text": text },
                "locations": [{
                    "physicalLocation": { "artifactLocation": artifact_location(template, base) },
                }],
            }],
        }],
        "results": [],
    });
    sarif_log(run, base)
}

/// Wraps one run, with the base directory its relative URIs use, in a SARIF 2.1.0 log.
fn sarif_log(mut run: serde_json::Value, base: Option<&Path>) -> String {
    add_base(&mut run, base);
    let value = json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [run],
    });
    serde_json::to_string_pretty(&value).unwrap_or_default()
}

/// Returns the catalogue entry of `code`. The fragment is the anchor GitHub gives the heading
/// `## SL001 invalid-access-restriction-rule`: lower case, the space replaced by a hyphen.
pub fn rule_help_uri(code: FindingCode) -> String {
    format!(
        "{REPOSITORY}/blob/main/docs/rules.md#{}-{}",
        code.to_string().to_ascii_lowercase(),
        code.name()
    )
}

/// Builds the SARIF `tool` object, with the rule catalogue when there are results to refer to
/// it.
fn sarif_tool(rules: Option<Vec<serde_json::Value>>) -> serde_json::Value {
    let mut driver = json!({
        "name": "subnetlock",
        "version": env!("CARGO_PKG_VERSION"),
        "informationUri": REPOSITORY,
    });
    if let Some(rules) = rules {
        driver["rules"] = serde_json::Value::Array(rules);
    }
    json!({ "driver": driver })
}

/// Maps [`SOURCE_ROOT`] to `base` in `run`, when there is a base.
fn add_base(run: &mut serde_json::Value, base: Option<&Path>) {
    let Some(base) = base else {
        return;
    };
    // The base URI must end with a slash, or a relative reference replaces its last segment
    // (RFC 3986, section 5.2.3).
    if let Ok(url) = url::Url::from_directory_path(base) {
        run["originalUriBaseIds"] = json!({ SOURCE_ROOT: { "uri": url.to_string() } });
    }
}

fn sarif_result(finding: &Finding, template: &Path, base: Option<&Path>) -> serde_json::Value {
    let level = match finding.severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
        Severity::Info => "note",
    };
    let location = match &finding.location {
        Some(location) => json!({
            "physicalLocation": {
                "artifactLocation": artifact_location(&location.file, base),
                "region": { "startLine": location.line, "startColumn": location.column },
            },
            "logicalLocations": [{ "fullyQualifiedName": location.json_path }],
        }),
        None => json!({
            "physicalLocation": { "artifactLocation": artifact_location(template, base) },
        }),
    };
    let mut text = finding.message.clone();
    if let Some(help) = &finding.help {
        if !text.ends_with('.') && !text.ends_with(".`") {
            text.push('.');
        }
        // The help of an informational finding is a suggestion, not a fix.
        text.push_str(match finding.severity {
            Severity::Info => " Note: ",
            Severity::Warning | Severity::Error => " Fix: ",
        });
        text.push_str(help);
    }
    let mut result = json!({
        "ruleId": finding.code.to_string(),
        "level": level,
        "message": { "text": text },
        "locations": [location],
    });
    if !finding.related.is_empty() {
        let related: Vec<serde_json::Value> = finding
            .related
            .iter()
            .enumerate()
            .map(|(index, location)| {
                json!({
                    "id": index,
                    "physicalLocation": {
                        "artifactLocation": artifact_location(&location.file, base),
                        "region": { "startLine": location.line, "startColumn": location.column },
                    },
                    "logicalLocations": [{ "fullyQualifiedName": location.json_path }],
                })
            })
            .collect();
        result["relatedLocations"] = serde_json::Value::Array(related);
    }
    result
}

/// Builds the `artifactLocation` of `path`: relative to [`SOURCE_ROOT`] when the file is under
/// `base`, else its absolute `file://` URI (or the path as given when there is no base).
fn artifact_location(path: &Path, base: Option<&Path>) -> serde_json::Value {
    let Some(base) = base else {
        return json!({ "uri": sarif_uri(path) });
    };
    let absolute = normalize(&base.join(path));
    match absolute.strip_prefix(normalize(base)) {
        Ok(relative) if !relative.as_os_str().is_empty() => {
            json!({ "uri": sarif_uri(relative), "uriBaseId": SOURCE_ROOT })
        }
        _ => json!({ "uri": sarif_uri(&absolute) }),
    }
}

/// Removes `.` and resolves `..` segments by text, without reading the file system, so that
/// `../x.json` counts as outside the base.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// Turns a file path into the URI reference SARIF requires (RFC 3986). An absolute path
/// becomes a `file://` URI. A relative one stays relative, with each segment percent-encoded
/// so that spaces, `#` or `%` in a name do not break the reference.
fn sarif_uri(path: &Path) -> String {
    if path.is_absolute() {
        if let Ok(url) = url::Url::from_file_path(path) {
            return url.to_string();
        }
    }
    /// Everything but RFC 3986 unreserved characters is encoded in a segment.
    const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    // The bytes of the path, not a lossy UTF-8 copy, so that a name that is not UTF-8 still
    // decodes to the real file.
    #[cfg(unix)]
    let bytes = std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str()).to_vec();
    #[cfg(not(unix))]
    let bytes = path.to_string_lossy().replace('\\', "/").into_bytes();
    bytes
        .split(|&byte| byte == b'/')
        .map(|segment| percent_encoding::percent_encode(segment, SEGMENT).to_string())
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use subnetlock_model::FindingCode;

    use super::{artifact_location, rule_help_uri, sarif_uri, SOURCE_ROOT};

    #[test]
    fn artifact_location_relative_under_base() {
        let base = Some(Path::new("/repo"));
        let inside = artifact_location(Path::new("/repo/infra/main.json"), base);
        assert_eq!(inside["uri"], "infra/main.json");
        assert_eq!(inside["uriBaseId"], SOURCE_ROOT);
        let relative = artifact_location(Path::new("./infra/main.json"), base);
        assert_eq!(relative["uri"], "infra/main.json");
        assert_eq!(relative["uriBaseId"], SOURCE_ROOT);

        let outside = artifact_location(Path::new("/elsewhere/main.json"), base);
        assert_eq!(outside["uri"], "file:///elsewhere/main.json");
        assert!(outside.get("uriBaseId").is_none());
        let parent = artifact_location(Path::new("../shared/main.json"), base);
        assert_eq!(parent["uri"], "file:///shared/main.json");
        assert!(parent.get("uriBaseId").is_none());

        let no_base = artifact_location(Path::new("/repo/infra/main.json"), None);
        assert_eq!(no_base["uri"], "file:///repo/infra/main.json");
    }

    /// Every code's help URI ends in the anchor GitHub gives its heading in docs/rules.md:
    /// the heading text in lower case, without punctuation other than `-`, spaces as `-`.
    #[test]
    fn help_uri_anchors_match_catalogue_headings() {
        let catalogue = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/rules.md"),
        )
        .expect("docs/rules.md");
        let anchors: Vec<String> = catalogue
            .lines()
            .filter_map(|line| line.strip_prefix("## "))
            .map(|heading| {
                heading
                    .trim()
                    .to_lowercase()
                    .chars()
                    .filter(|c| c.is_alphanumeric() || *c == '-' || *c == ' ' || *c == '_')
                    .map(|c| if c == ' ' { '-' } else { c })
                    .collect()
            })
            .collect();
        for code in FindingCode::ALL {
            let uri = rule_help_uri(code);
            let (_, anchor) = uri.split_once('#').expect("fragment");
            assert!(
                anchors.iter().any(|known| known == anchor),
                "{code}: no heading with anchor `{anchor}` in docs/rules.md"
            );
        }
    }

    #[test]
    fn sarif_uri_encodes_paths() {
        assert_eq!(
            sarif_uri(Path::new("/work/my templates/a#1.json")),
            "file:///work/my%20templates/a%231.json"
        );
        assert_eq!(
            sarif_uri(Path::new("infra/100% ready/main.json")),
            "infra/100%25%20ready/main.json"
        );
        assert_eq!(sarif_uri(Path::new("azuredeploy.json")), "azuredeploy.json");

        #[cfg(unix)]
        {
            use std::os::unix::ffi::OsStrExt;
            let not_utf8 = Path::new(std::ffi::OsStr::from_bytes(b"bad\xff/t.json"));
            assert_eq!(sarif_uri(not_utf8), "bad%FF/t.json");
        }
    }
}
