//! The binding file: which local function folder serves which site of a template.
//!
//! Site names usually come from `uniqueString()`, so sites are matched by pattern (`*` matches
//! any run of characters, case-insensitively). A binding file is JSON:
//!
//! ```json
//! {
//!   "template": "azuredeploy.json",
//!   "parameters": "azuredeploy.parameters.json",
//!   "apps": [
//!     { "site": "function-app-a-*", "functionApp": "../../functions/function-app-a",
//!       "executable": "../../target/release/function-app-a",
//!       "build": ["cargo", "build", "--release", "-p", "subnetlock-functions"] }
//!   ]
//! }
//! ```
//!
//! Paths are relative to the binding file. `executable` replaces host.json's
//! `defaultExecutablePath` for local runs; `build`, when given, runs once before the apps
//! start, the way Core Tools builds compiled functions before `func start`.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The file name `up` looks for in a directory or beside a template.
pub const BINDING_FILE_NAME: &str = "subnetlock.json";

/// A parsed binding file with its paths made absolute.
#[derive(Clone, Debug, Default)]
pub struct Bindings {
    pub file: Option<PathBuf>,
    pub template: Option<PathBuf>,
    pub parameters: Option<PathBuf>,
    pub apps: Vec<AppBinding>,
}

/// One site pattern and the local code that serves it.
#[derive(Clone, Debug)]
pub struct AppBinding {
    pub site_pattern: String,
    pub function_app: PathBuf,
    pub executable: Option<PathBuf>,
    pub build: Option<Vec<String>>,
}

/// Why a binding file could not be used.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum BindingError {
    #[error("cannot read binding file `{path}`")]
    #[diagnostic(help(
        "check the path; `up` looks for `subnetlock.json` in the directory you name"
    ))]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid binding file `{path}` at line {line}, column {column}: {message}")]
    #[diagnostic(help(
        "a binding file is a JSON object with `apps`: [{{\"site\": \"pattern-*\", \"functionApp\": \"dir\"}}]"
    ))]
    Invalid {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("binding `{pattern}` in `{path}` has an empty site pattern")]
    #[diagnostic(help("write the site name, with `*` where the name has a generated part"))]
    EmptyPattern { path: PathBuf, pattern: String },
    #[error("build command of `{pattern}` is empty")]
    #[diagnostic(help("give the command as an array, for example [\"cargo\", \"build\"]"))]
    EmptyBuild { pattern: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawBindings {
    template: Option<String>,
    parameters: Option<String>,
    #[serde(default)]
    apps: Vec<RawApp>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawApp {
    site: String,
    function_app: String,
    executable: Option<String>,
    build: Option<Vec<String>>,
}

impl Bindings {
    /// Reads and checks a binding file.
    pub fn load(path: &Path) -> Result<Bindings, BindingError> {
        let text = std::fs::read_to_string(path).map_err(|source| BindingError::Read {
            path: path.to_owned(),
            source,
        })?;
        // Editors on Windows may save a UTF-8 byte order mark, which serde_json rejects. Dropping
        // it keeps serde_json's line and column where an editor shows them, because editors
        // do not display the mark.
        let json = text.strip_prefix('\u{feff}').unwrap_or(&text);
        let raw: RawBindings = serde_json::from_str(json).map_err(|error| {
            // serde_json ends its message with the position, which the error names itself.
            let position = format!(" at line {} column {}", error.line(), error.column());
            let message = error.to_string();
            BindingError::Invalid {
                path: path.to_owned(),
                line: error.line(),
                column: error.column(),
                message: message
                    .strip_suffix(&position)
                    .unwrap_or(&message)
                    .to_owned(),
            }
        })?;
        // Handlers run in their app folder, so every path is made absolute here.
        let absolute = std::path::absolute(path).map_err(|source| BindingError::Read {
            path: path.to_owned(),
            source,
        })?;
        let base = absolute.parent().unwrap_or(Path::new("/")).to_owned();
        let resolve = |relative: &str| base.join(relative);

        let mut apps = Vec::new();
        for app in raw.apps {
            if app.site.trim().is_empty() {
                return Err(BindingError::EmptyPattern {
                    path: path.to_owned(),
                    pattern: app.site,
                });
            }
            if app.build.as_ref().is_some_and(Vec::is_empty) {
                return Err(BindingError::EmptyBuild { pattern: app.site });
            }
            apps.push(AppBinding {
                function_app: resolve(&app.function_app),
                executable: app.executable.as_deref().map(resolve),
                build: app.build,
                site_pattern: app.site,
            });
        }
        Ok(Bindings {
            file: Some(absolute.clone()),
            template: raw.template.as_deref().map(resolve),
            parameters: raw.parameters.as_deref().map(resolve),
            apps,
        })
    }

    /// The binding whose pattern matches `site_name`; the first one wins.
    pub fn for_site(&self, site_name: &str) -> Option<&AppBinding> {
        self.apps
            .iter()
            .find(|app| pattern_matches(&app.site_pattern, site_name))
    }
}

/// Matches `name` against `pattern`, where `*` stands for any run of characters; ASCII case
/// is ignored, as Azure ignores it in site names.
pub fn pattern_matches(pattern: &str, name: &str) -> bool {
    let pattern: Vec<char> = pattern.to_ascii_lowercase().chars().collect();
    let name: Vec<char> = name.to_ascii_lowercase().chars().collect();
    // Greedy matching with backtracking to the last `*`: linear in practice.
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        if p < pattern.len() && pattern[p] == '*' {
            star = Some((p, n));
            p += 1;
        } else if p < pattern.len() && pattern[p] == name[n] {
            p += 1;
            n += 1;
        } else if let Some((star_p, star_n)) = star {
            p = star_p + 1;
            n = star_n + 1;
            star = Some((star_p, star_n + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_cases() {
        let cases = [
            ("function-app-a-*", "function-app-a-x7abc", true),
            ("function-app-a-*", "FUNCTION-APP-A-x", true),
            ("function-app-a-*", "function-app-b-x", false),
            ("*", "anything", true),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxbyy", false),
            ("exact", "exact", true),
            ("exact", "exactly", false),
        ];
        for (pattern, name, expected) in cases {
            assert_eq!(
                pattern_matches(pattern, name),
                expected,
                "{pattern} ~ {name}"
            );
        }
    }

    #[test]
    fn load_makes_paths_absolute() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("subnetlock.json");
        std::fs::write(
            &path,
            r#"{"apps": [{"site": "a-*", "functionApp": "app", "executable": "bin/handler"}]}"#,
        )
        .expect("write");
        let bindings = Bindings::load(&path).expect("valid binding file");
        let app = bindings.for_site("a-1").expect("pattern matches");
        assert!(app.function_app.is_absolute());
        assert!(app.executable.as_ref().is_some_and(|p| p.is_absolute()));
    }

    #[test]
    fn load_accepts_byte_order_mark() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("subnetlock.json");
        std::fs::write(
            &path,
            "\u{feff}{\"apps\": [{\"site\": \"a\", \"functionApp\": \"app\"}]}",
        )
        .expect("write");
        let bindings = Bindings::load(&path).expect("valid binding file with a byte order mark");
        assert!(bindings.for_site("a").is_some());
    }

    #[test]
    fn load_rejects_unknown_field() {
        let dir = std::env::temp_dir().join(format!("subnetlock-binding-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("subnetlock.json");
        std::fs::write(
            &path,
            r#"{"apps": [{"site": "a", "functionApp": "b", "exe": "c"}]}"#,
        )
        .expect("write");
        let error = Bindings::load(&path).expect_err("unknown field");
        assert!(error.to_string().contains("exe"), "{error}");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn load_errors_name_position_and_cause_once() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("subnetlock.json");
        std::fs::write(&path, "{\"apps\": [").expect("write");
        let error = Bindings::load(&path).expect_err("invalid JSON");
        let message = error.to_string();
        assert!(
            message.ends_with("at line 1, column 10: EOF while parsing a list"),
            "{message}"
        );

        // A byte order mark is accepted and does not shift the reported column.
        std::fs::write(&path, "\u{feff}{\"apps\": [").expect("write");
        let error = Bindings::load(&path).expect_err("invalid JSON after the mark");
        let message = error.to_string();
        assert!(
            message.ends_with("at line 1, column 10: EOF while parsing a list"),
            "{message}"
        );

        let missing = dir.path().join("missing.json");
        let error = Bindings::load(&missing).expect_err("missing file");
        let cause = std::error::Error::source(&error).expect("the I/O error is the source");
        assert!(!error.to_string().contains(&cause.to_string()), "{error}");
    }
}
