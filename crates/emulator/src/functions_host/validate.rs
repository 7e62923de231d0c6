//! Checks the Functions host makes on each function before it maps the routes, and the order in
//! which it maps them.
//!
//! The host 4.x reads each folder with a `function.json` on its own
//! (`HostFunctionMetadataProvider.ReadFunctionMetadata`). It records an invalid folder name,
//! JSON that does not parse, or a `function.json` without bindings as an error of that
//! function, and goes on with the next folder. An invalid binding, such as an unknown
//! `authLevel`, fails when the host creates the function's descriptor, and
//! `ScriptHost.GetFunctionDescriptorsAsync` also records that as a function error.
//!
//! The host 4.x orders function metadata by name (`FunctionMetadataManager.LoadFunctionMetadata`
//! sorts with `StringComparer.OrdinalIgnoreCase`) and validates each function in that order
//! (`ScriptHost.ValidateFunction`). A function that fails validation is recorded as a function
//! error and left out, and the host starts with the others. The functions that pass become
//! routes in the same order (`WebScriptHostHttpRoutesManager`), and ASP.NET Core's
//! `RouteCollection` tries them in that order, so the first match wins.

use std::cmp::Ordering;
use std::path::PathBuf;

use super::FunctionDef;

/// Route prefixes the host keeps for its own APIs. `ScriptHost.ValidateHttpFunction` rejects a
/// route whose text, trimmed of `/` and lower-cased, starts with one of them, so `administer`
/// and `runtimes/x` are rejected too.
const RESERVED_ROUTE_PREFIXES: [&str; 2] = ["admin", "runtime"];

/// Maximum length of a function name that `Utility.IsValidFunctionName` accepts: a letter and
/// 127 more characters.
const MAX_FUNCTION_NAME_CHARS: usize = 128;

/// Maximum length of a binding name that `Utility.ValidateBinding` accepts, `$return` aside.
const MAX_BINDING_NAME_CHARS: usize = 128;

/// A function the Functions host loads in error: it is left out, and the other functions still
/// run.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, miette::Diagnostic)]
pub enum FunctionError {
    #[error("function `{function}` is in error and gets no route: `{function}` is not a valid function name")]
    #[diagnostic(help(
        "rename the folder: a function name is an ASCII letter followed by up to 127 ASCII \
         letters, digits, `_` or `-`, and `host` is reserved"
    ))]
    InvalidName { function: String },

    #[error("function `{function}` is in error and gets no route: failed to read `{}`: {reason}", path.display())]
    #[diagnostic(help("check that the function folder and its function.json are readable"))]
    Read {
        function: String,
        path: PathBuf,
        reason: String,
    },

    #[error("function `{function}` is in error and gets no route: invalid JSON in `{}`: {reason}", path.display())]
    #[diagnostic(help("fix the JSON syntax at the reported line and column"))]
    InvalidJson {
        function: String,
        path: PathBuf,
        reason: String,
        /// Line of the syntax error, counted from 1.
        line: usize,
        /// Column of the syntax error in bytes from the start of the line, counted from 1 as
        /// `serde_json` counts it, and 0 when the error is at a line break.
        column: usize,
    },

    #[error("function `{function}` is in error and gets no route: invalid `{field}` in `{}`: {reason}", path.display())]
    #[diagnostic(help(
        "see https://learn.microsoft.com/azure/azure-functions/functions-bindings-http-webhook-trigger for the fields of an HTTP trigger"
    ))]
    InvalidValue {
        function: String,
        path: PathBuf,
        field: String,
        reason: String,
    },

    #[error(
        "function `{function}` is in error and gets no route: its route `{route}` starts with \
         `{reserved}`, which the Functions host reserves for its built-in routes"
    )]
    #[diagnostic(help(
        "set `route` in function.json to a path that does not start with `admin` or `runtime`, \
         such as `manage/{{name}}`; the check ignores case and leading `/`, and a function \
         without `route` is checked under its own name"
    ))]
    ReservedRoute {
        function: String,
        route: String,
        reserved: &'static str,
    },

    #[error(
        "function `{function}` is in error and gets no route: its route `{route}` is the route \
         of function `{other}` and their methods overlap"
    )]
    #[diagnostic(help(
        "give one of the two functions another route, or `methods` that the other does not list"
    ))]
    ConflictingRoute {
        function: String,
        route: String,
        other: String,
    },
}

impl FunctionError {
    /// Returns the name of the function in error.
    pub fn function(&self) -> &str {
        match self {
            FunctionError::InvalidName { function }
            | FunctionError::Read { function, .. }
            | FunctionError::InvalidJson { function, .. }
            | FunctionError::InvalidValue { function, .. }
            | FunctionError::ReservedRoute { function, .. }
            | FunctionError::ConflictingRoute { function, .. } => function,
        }
    }
}

/// Returns whether `name` is a valid function name, as `Utility.IsValidFunctionName` in the
/// Functions host decides with `^[a-z][a-z0-9_\-]{0,127}$(?<!^host$)`, ignoring case.
///
/// NOTE: .NET 7 and later also match `K` (U+212A, Kelvin sign) and `ſ` (U+017F) to `[a-z]`
/// when they ignore case, so the host may accept names with them, which this rejects.
pub(super) fn is_valid_function_name(name: &str) -> bool {
    // .NET's `$` also matches before a final `\n`, so the host accepts one trailing newline.
    let name = name.strip_suffix('\n').unwrap_or(name);

    let mut chars = name.chars();
    let starts_with_letter = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
    let rest_valid = chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    starts_with_letter
        && rest_valid
        && name.len() <= MAX_FUNCTION_NAME_CHARS
        && !name.eq_ignore_ascii_case("host")
}

/// Returns whether `name` is a valid binding name, as `Utility.ValidateBinding` in the Functions
/// host decides with `^([a-zA-Z][a-zA-Z0-9]{0,127}|\$return)$`, which does not ignore case.
pub(super) fn is_valid_binding_name(name: &str) -> bool {
    // As for function names, .NET's `$` also matches before a final `\n`.
    let name = name.strip_suffix('\n').unwrap_or(name);
    if name == "$return" {
        return true;
    }
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric())
        && name.len() <= MAX_BINDING_NAME_CHARS
}

/// Orders function names as .NET's `StringComparer.OrdinalIgnoreCase` does for ASCII: both
/// names upper-cased, then compared byte by byte, so `_` sorts after the letters.
///
/// Names outside ASCII are compared by their bytes after ASCII upper-casing. They only order
/// function errors, because [`is_valid_function_name`] rejects them.
pub(super) fn compare_function_names(a: &str, b: &str) -> Ordering {
    let upper_a = a.bytes().map(|byte| byte.to_ascii_uppercase());
    let upper_b = b.bytes().map(|byte| byte.to_ascii_uppercase());
    // Names equal but for case get a fixed order. The host's stable sort keeps them in folder
    // enumeration order, which the file system decides.
    upper_a.cmp(upper_b).then_with(|| a.cmp(b))
}

/// Validates `function` against the functions already accepted, in load order, as
/// `ScriptHost.ValidateFunction` does.
pub(super) fn validate_http_function(
    function: &FunctionDef,
    accepted: &[FunctionDef],
) -> Result<(), FunctionError> {
    let route = effective_route(function);

    let trimmed = route.trim_matches('/');
    if let Some(reserved) = RESERVED_ROUTE_PREFIXES
        .into_iter()
        .find(|prefix| starts_with_lowercase(trimmed, prefix))
    {
        return Err(FunctionError::ReservedRoute {
            function: function.name.clone(),
            route: route.to_string(),
            reserved,
        });
    }

    // `ScriptHost.HttpRoutesConflict`: the same route, trimmed of `/` and compared ignoring
    // case, where either function takes every method or the two lists share one.
    let conflict = accepted.iter().find(|other| {
        let same_route = eq_ordinal_ignore_case(trimmed, effective_route(other).trim_matches('/'));
        same_route && methods_overlap(function, other)
    });
    if let Some(other) = conflict {
        return Err(FunctionError::ConflictingRoute {
            function: function.name.clone(),
            route: route.to_string(),
            other: other.name.clone(),
        });
    }
    Ok(())
}

/// The route the host maps: `route`, or the function name when `route` is empty or blank.
pub(super) fn effective_route(function: &FunctionDef) -> &str {
    function.route.as_deref().unwrap_or(&function.name)
}

/// Returns whether the two functions accept a common method. A function without `methods`,
/// or with an empty list, takes every method.
// NOTE: the host intersects the method strings as written in function.json, with case, and
// this compares `http::Method` values parsed upper-case, so `GET` and `get` overlap here.
fn methods_overlap(a: &FunctionDef, b: &FunctionDef) -> bool {
    match (a.methods.as_deref(), b.methods.as_deref()) {
        (Some(a), Some(b)) if !a.is_empty() && !b.is_empty() => {
            a.iter().any(|method| b.contains(method))
        }
        _ => true,
    }
}

/// Returns whether `text`, lower-cased character by character as .NET's `ToLowerInvariant`
/// does, starts with the lower-case ASCII `prefix`.
fn starts_with_lowercase(text: &str, prefix: &str) -> bool {
    // The first character of `to_lowercase` is the simple mapping, which `ToLowerInvariant`
    // uses: `İ` gives `i`, where the full mapping adds a combining dot.
    let mut lowered = text.chars().map(|c| c.to_lowercase().next().unwrap_or(c));
    prefix
        .chars()
        .all(|expected| lowered.next() == Some(expected))
}

/// Compares two strings as .NET's `OrdinalIgnoreCase` does: each character mapped to its
/// simple upper case.
fn eq_ordinal_ignore_case(a: &str, b: &str) -> bool {
    let simple_upper = |c: char| {
        let mut upper = c.to_uppercase();
        match (upper.next(), upper.next()) {
            (Some(single), None) => single,
            // A character whose upper case is several characters, such as `ß`, has no simple
            // upper-case mapping and stays as it is.
            _ => c,
        }
    };
    a.chars().map(simple_upper).eq(b.chars().map(simple_upper))
}

#[cfg(test)]
mod tests {
    use http::Method;

    use super::*;
    use crate::functions_host::AuthLevel;

    fn function(name: &str, route: Option<&str>, methods: Option<&[Method]>) -> FunctionDef {
        FunctionDef {
            name: name.to_string(),
            auth_level: AuthLevel::Anonymous,
            methods: methods.map(<[Method]>::to_vec),
            route: route.map(str::to_string),
            request_binding: "req".to_string(),
            response_binding: Some("res".to_string()),
            http_only: true,
        }
    }

    #[test]
    fn function_names_sort_like_ordinal_ignore_case() {
        let mut names = vec!["beta", "Zeta", "a_b", "ab", "a-b", "A1", "alpha"];
        names.sort_by(|a, b| compare_function_names(a, b));

        // Upper-cased, `-` (0x2D) < digits < letters < `_` (0x5F).
        assert_eq!(
            names,
            vec!["a-b", "A1", "ab", "alpha", "a_b", "beta", "Zeta"]
        );
    }

    #[test]
    fn function_name_cases() {
        let long = format!("a{}", "b".repeat(MAX_FUNCTION_NAME_CHARS - 1));
        let valid = [
            "a",
            "Hello",
            "get-items_2",
            "hosts",
            "myhost",
            long.as_str(),
            "trailing\n",
        ];
        for name in valid {
            assert!(is_valid_function_name(name), "{name:?}");
        }

        let too_long = format!("{long}c");
        let invalid = [
            "",
            "host",
            "HOST",
            "host\n",
            "1st",
            "_private",
            "-dash",
            "my.func",
            "my func",
            "caf\u{e9}",
            "two\n\n",
            too_long.as_str(),
        ];
        for name in invalid {
            assert!(!is_valid_function_name(name), "{name:?}");
        }
    }

    #[test]
    fn binding_name_cases() {
        let long = format!("a{}", "1".repeat(MAX_BINDING_NAME_CHARS - 1));
        for name in ["req", "Res2", "$return", long.as_str(), "req\n"] {
            assert!(is_valid_binding_name(name), "{name:?}");
        }

        let too_long = format!("{long}x");
        let invalid = [
            "",
            "my-req",
            "my_req",
            "2req",
            "$Return",
            "$return2",
            too_long.as_str(),
        ];
        for name in invalid {
            assert!(!is_valid_binding_name(name), "{name:?}");
        }
    }

    #[test]
    fn reserved_route_cases() {
        let rejected = [
            ("admin", None),
            ("administer", None),
            ("f", Some("admin/foo/bar")),
            ("f", Some("/Admin")),
            ("f", Some("//RUNTIME/x")),
            ("f", Some("runtimes")),
            ("f", Some("admİn/x")),
        ];
        for (name, route) in rejected {
            let error = validate_http_function(&function(name, route, None), &[]);
            assert!(
                matches!(error, Err(FunctionError::ReservedRoute { .. })),
                "{name} {route:?}: {error:?}"
            );
        }

        let accepted = [
            ("masteronly", None),
            ("f", Some("api/admin")),
            ("f", Some("my-admin")),
            ("f", Some("run/time")),
            ("f", Some("{admin}")),
        ];
        for (name, route) in accepted {
            let result = validate_http_function(&function(name, route, None), &[]);
            assert_eq!(result, Ok(()), "{name} {route:?}");
        }
    }

    #[test]
    fn reserved_route_error_names_function() {
        let error = validate_http_function(&function("probe", Some("Runtime/x"), None), &[])
            .expect_err("reserved");

        let message = error.to_string();
        assert!(message.contains("`probe`"), "{message}");
        assert!(message.contains("`Runtime/x`"), "{message}");
        assert!(message.contains("`runtime`"), "{message}");
    }

    #[test]
    fn conflicting_route_cases() {
        let get = [Method::GET];
        let post = [Method::POST];
        let get_post = [Method::GET, Method::POST];
        let accepted = [function("hello", None, Some(&get_post))];

        let conflicts = [
            function("x", Some("HELLO"), Some(&get)),
            function("x", Some("/hello/"), Some(&post)),
            function("x", Some("hello"), None),
            function("x", Some("hello"), Some(&[])),
        ];
        for candidate in conflicts {
            let error = validate_http_function(&candidate, &accepted);
            assert_eq!(
                error,
                Err(FunctionError::ConflictingRoute {
                    function: "x".to_string(),
                    route: candidate.route.clone().unwrap_or_default(),
                    other: "hello".to_string(),
                }),
                "{candidate:?}"
            );
        }

        let distinct = [
            function("x", Some("hello"), Some(&[Method::DELETE])),
            function("x", Some("hello/{id}"), None),
            function("x", Some("hellö"), None),
        ];
        for candidate in distinct {
            let result = validate_http_function(&candidate, &accepted);
            assert_eq!(result, Ok(()), "{candidate:?}");
        }
    }

    #[test]
    fn route_comparison_ignores_non_ascii_case() {
        assert!(eq_ordinal_ignore_case("straße/Ärger", "STRAßE/ärger"));
        assert!(!eq_ordinal_ignore_case("straße", "STRASSE"));
        assert!(!eq_ordinal_ignore_case("a", "ab"));
    }
}
