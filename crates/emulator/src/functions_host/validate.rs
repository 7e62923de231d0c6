//! Checks the Functions host makes on each HTTP function before it maps the routes, and the
//! order in which it maps them.
//!
//! The host 4.x orders function metadata by name (`FunctionMetadataManager.LoadFunctionMetadata`
//! sorts with `StringComparer.OrdinalIgnoreCase`) and validates each function in that order
//! (`ScriptHost.ValidateFunction`). A function that fails validation is recorded as a function
//! error and left out, and the host starts with the others. The functions that pass become
//! routes in the same order (`WebScriptHostHttpRoutesManager`), and ASP.NET Core's
//! `RouteCollection` tries them in that order, so the first match wins.

use std::cmp::Ordering;

use super::FunctionDef;

/// Route prefixes the host keeps for its own APIs. `ScriptHost.ValidateHttpFunction` rejects a
/// route whose text, trimmed of `/` and lower-cased, starts with one of them, so `administer`
/// and `runtimes/x` are rejected too.
const RESERVED_ROUTE_PREFIXES: [&str; 2] = ["admin", "runtime"];

/// An HTTP function the Functions host loads in error: it is left out, and the other functions
/// still run.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, miette::Diagnostic)]
pub enum FunctionError {
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

/// Orders function names as .NET's `StringComparer.OrdinalIgnoreCase` does for ASCII: both
/// names upper-cased, then compared byte by byte, so `_` sorts after the letters.
///
/// NOTE: names outside ASCII are compared by their bytes after ASCII upper-casing. The host
/// rejects such names (`Utility.IsValidFunctionName` wants an ASCII letter, then up to 127
/// ASCII letters, digits, `_` or `-`), and the emulator does not check names.
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
