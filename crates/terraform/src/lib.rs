//! Reads a Terraform plan in JSON form (`terraform show -json <planfile>`) into the same
//! [`Topology`] an ARM template produces, so `check`, `explain` and `up` work on azurerm
//! configurations.
//!
//! It reads `planned_values` (root module and child modules) for virtual networks, subnets,
//! service plans, web and function apps with their slots, regional VNet integration and
//! private endpoints. Values that are known only after apply, such as the id of a subnet the
//! same plan creates, are resolved through the `references` of the plan's `configuration`
//! and ARM-style ids built from names and resource groups.
//!
//! It does not read HCL (`.tf` files), state files or the azapi provider, and it does not run
//! Terraform.

mod build;
mod error;
mod plan;
mod rules;

use std::path::Path;

use miette::{NamedSource, SourceSpan};
use serde_json::Value as Json;
use subnetlock_model::Topology;

pub use error::{Error, SyntaxError};

/// Reads the plan JSON file at `path` and builds its topology, with findings.
pub fn topology_from_plan(path: &Path) -> Result<Topology, Error> {
    let bytes = std::fs::read(path).map_err(|source| Error::Read {
        path: path.to_owned(),
        source,
    })?;
    // Windows PowerShell 5.1 saves `terraform show -json plan > plan.json` as UTF-16LE.
    let text = subnetlock_arm::decode_text(path, bytes)?;
    from_str(path, &text)
}

/// Builds the topology of plan JSON `text`; `name` is the file name used in locations.
///
/// A plan that creates none of the resources subnetlock reads (an empty configuration, a
/// destroy plan, or only resources of other types) gives an empty topology. Applying it leaves
/// no site to reach, as deploying an ARM template with an empty `resources` does.
pub fn from_str(name: impl AsRef<Path>, text: &str) -> Result<Topology, Error> {
    let name = name.as_ref();
    let body = without_byte_order_mark(text);
    let root: Json =
        serde_json::from_str(body).map_err(|error| syntax_error(name, body, &error))?;
    if let Some(reason) = not_a_plan(&root) {
        return Err(Error::NotAPlan {
            file: name.to_owned(),
            reason,
        });
    }

    let plan = plan::Plan::new(name, text, &root);
    let mut topology = build::build(&plan);
    subnetlock_model::validate(&mut topology);
    Ok(topology)
}

/// Returns whether `text` is Terraform plan JSON: an object with `format_version` and
/// `planned_values` or `terraform_version`. ARM templates have neither.
pub fn is_plan_text(text: &str) -> bool {
    match serde_json::from_str::<Json>(without_byte_order_mark(text)) {
        Ok(root) => looks_like_plan(&root),
        Err(_) => false,
    }
}

/// Returns `text` without the UTF-8 byte order mark it may start with, which serde_json rejects.
///
/// Windows PowerShell 5.1 writes the mark with every Unicode encoding except UTF-7, so
/// `terraform show -json plan | Out-File -Encoding utf8 plan.json` starts with one
/// (Microsoft Learn, "about_Character_Encoding").
pub(crate) fn without_byte_order_mark(text: &str) -> &str {
    text.strip_prefix('\u{feff}').unwrap_or(text)
}

/// Returns whether a parsed JSON document is Terraform plan JSON (see [`is_plan_text`]).
pub fn looks_like_plan(root: &Json) -> bool {
    root.get("format_version").is_some()
        && (root.get("planned_values").is_some() || root.get("terraform_version").is_some())
}

/// Returns the reason a JSON document cannot be read as a plan, if there is one.
///
/// Terraform writes `planned_values.root_module` in every plan, as `{}` when the plan creates
/// nothing (checked with Terraform 1.11.4), so a document without it is not a plan. Without this
/// check such a document would read as a plan that creates nothing.
fn not_a_plan(root: &Json) -> Option<String> {
    if !root.is_object() {
        return Some("the top level is not a JSON object".to_owned());
    }
    if root.get("format_version").is_none() {
        return Some("it has no `format_version`".to_owned());
    }
    let Some(planned_values) = root.get("planned_values") else {
        return Some(
            "it has no `planned_values`, so it is state output or another Terraform JSON document"
                .to_owned(),
        );
    };
    if !planned_values.is_object() {
        return Some("its `planned_values` is not a JSON object".to_owned());
    }
    match planned_values.get("root_module") {
        None => Some("its `planned_values` has no `root_module`".to_owned()),
        Some(module) => invalid_module(module, "planned_values.root_module"),
    }
}

/// Returns the reason the module at JSON path `path` is malformed, if there is one. The
/// reader skips what it cannot read, so a `resources` that is not an array would otherwise hide
/// every resource of the module.
fn invalid_module(module: &Json, path: &str) -> Option<String> {
    if !module.is_object() {
        return Some(format!("its `{path}` is not a JSON object"));
    }
    if let Some(resources) = module.get("resources") {
        if !resources.is_array() {
            return Some(format!("its `{path}.resources` is not an array"));
        }
    }
    let children = module.get("child_modules")?;
    let Some(children) = children.as_array() else {
        return Some(format!("its `{path}.child_modules` is not an array"));
    };
    children
        .iter()
        .enumerate()
        .find_map(|(index, child)| invalid_module(child, &format!("{path}.child_modules[{index}]")))
}

fn syntax_error(name: &Path, text: &str, error: &serde_json::Error) -> Error {
    let line = error.line();
    let mut offset = offset_of(text, line, error.column());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    // serde_json counts the column in bytes, and the message counts characters, as an editor
    // does, also for a plan decoded from UTF-16.
    let line_start = text[..offset].rfind('\n').map_or(0, |newline| newline + 1);
    let column = text[line_start..offset].chars().count() + 1;
    let message = error.to_string();
    // serde_json appends " at line L column C"; the error names the place itself.
    let message = match message.rfind(" at line ") {
        Some(at) => message[..at].to_owned(),
        None => message,
    };
    Error::Syntax(Box::new(SyntaxError {
        file: name.to_owned(),
        line,
        column,
        message,
        source_code: NamedSource::new(name.display().to_string(), text.to_owned()),
        span: SourceSpan::from((offset, 1usize.min(text.len().saturating_sub(offset)))),
    }))
}

/// Byte offset of 1-based `line` and `column` (serde_json counts columns in bytes).
fn offset_of(text: &str, line: usize, column: usize) -> usize {
    let line_start: usize = text
        .split_inclusive('\n')
        .take(line.saturating_sub(1))
        .map(str::len)
        .sum();
    (line_start + column.saturating_sub(1)).min(text.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_detection_cases() {
        let cases = [
            (
                r#"{"format_version":"1.2","terraform_version":"1.7.5","planned_values":{}}"#,
                true,
            ),
            (r#"{"format_version":"1.2","planned_values":{}}"#, true),
            (
                "\u{feff}{\"format_version\":\"1.2\",\"planned_values\":{}}",
                true,
            ),
            (
                r#"{"format_version":"1.0","terraform_version":"1.7.5","values":{}}"#,
                true,
            ),
            (
                r#"{"$schema":"x","contentVersion":"1.0.0.0","resources":[]}"#,
                false,
            ),
            ("[1, 2]", false),
            ("not json", false),
        ];
        for (text, expected) in cases {
            assert_eq!(is_plan_text(text), expected, "{text}");
        }
    }

    #[test]
    fn syntax_error_column_counts_characters() {
        // `é` is two bytes, so the byte column of the stray comma is one more than its
        // character column.
        let text = "{\n  \"é\": ,\n}";
        let error = serde_json::from_str::<Json>(text).expect_err("invalid JSON");

        let Error::Syntax(syntax) = syntax_error(Path::new("plan.json"), text, &error) else {
            panic!("not a syntax error");
        };

        assert_eq!((syntax.line, syntax.column), (2, 8));
        assert_eq!(&text[syntax.span.offset()..syntax.span.offset() + 1], ",");
    }

    #[test]
    fn offset_of_cases() {
        let text = "ab\ncd\n";
        assert_eq!(offset_of(text, 1, 1), 0);
        assert_eq!(offset_of(text, 2, 2), 4);
        assert_eq!(offset_of(text, 9, 9), text.len());
    }
}
