//! Tells a deployment template from other JSON passed in its place, such as a parameters file
//! or a `package.json`, so that the error names what the file is and where it belongs.

use crate::error::{Error, ErrorKind};
use crate::eval::node_site;
use crate::source::{path_key, Node, NodeKind, Source};

/// The `$schema` file name of a parameters file, the same in the `2015-01-01` and
/// `2019-04-01` schema versions.
const PARAMETERS_SCHEMA: &str = "deploymentparameters.json";

/// Rejects a top-level file that is not a deployment template. Azure requires `resources` in
/// every template ("Template format" on Microsoft Learn lists it as required), and an empty
/// `resources` array is a valid template.
pub(crate) fn check_deployment_template(source: &Source, root: &Node) -> Result<(), Error> {
    let file = source.name.display();
    let template_help = "point at the deployment template instead: a JSON object with `$schema`, `contentVersion` and `resources` (an empty `resources` array is valid). A parameters file goes to `--parameters FILE`".to_owned();

    let Some(members) = root.as_object() else {
        let kind = match root.kind {
            NodeKind::Array(_) => "an array",
            NodeKind::String(_) => "a string",
            NodeKind::Null => "null",
            NodeKind::Bool(_) => "a boolean",
            NodeKind::Int(_) | NodeKind::Float(_) => "a number",
            NodeKind::Object(_) => "an object",
        };
        return Err(node_site(source, root, "$").error(
            ErrorKind::Template,
            format!("`{file}` is not an ARM deployment template: its top level is {kind}, not a JSON object"),
            template_help,
        ));
    };

    let parameters_help = format!(
        "pass the deployment template as the input and this file with `--parameters {file}`"
    );
    if let Some(schema) = root.member("$schema") {
        let is_parameters_schema = schema.value.as_str().is_some_and(|text| {
            let without_fragment = text.split('#').next().unwrap_or(text);
            without_fragment
                .to_ascii_lowercase()
                .ends_with(PARAMETERS_SCHEMA)
        });
        if is_parameters_schema {
            let path = path_key("$", &schema.key.text);
            return Err(node_site(source, &schema.value, &path).error(
                ErrorKind::Template,
                format!("`{file}` is a parameters file, not a deployment template: its `$schema` is the schema of parameters files"),
                parameters_help,
            ));
        }
    }

    if root.member("resources").is_some() {
        return Ok(());
    }
    if let Some(parameters) = root.member("parameters") {
        if holds_parameter_values(&parameters.value) {
            let path = path_key("$", &parameters.key.text);
            return Err(node_site(source, &parameters.value, &path).error(
                ErrorKind::Template,
                format!("`{file}` is a parameters file, not a deployment template: it has no `resources`, and its `parameters` give values rather than declare types"),
                parameters_help,
            ));
        }
    }
    // `--parameters` also reads values without the wrapper, as `{"<name>": {"value": ...}}`
    // (see `Parameters::from_file`).
    if !members.is_empty() && holds_parameter_values(root) {
        return Err(node_site(source, root, "$").error(
            ErrorKind::Template,
            format!("`{file}` is a parameters file, not a deployment template: it has no `resources`, and each of its members gives a parameter value"),
            parameters_help,
        ));
    }
    Err(node_site(source, root, "$").error(
        ErrorKind::Template,
        format!("`{file}` is not an ARM deployment template: it has no `resources`"),
        template_help,
    ))
}

/// Returns whether `node` is a non-empty object whose every member gives a parameter value:
/// an object with `value`, or with `reference` for a Key Vault secret, and no `type`, which a
/// template's parameter declaration has.
fn holds_parameter_values(node: &Node) -> bool {
    let Some(members) = node.as_object() else {
        return false;
    };
    !members.is_empty()
        && members.iter().all(|member| {
            let entry = &member.value;
            entry.as_object().is_some()
                && (entry.member("value").is_some() || entry.member("reference").is_some())
                && entry.member("type").is_none()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> Result<(), Error> {
        let source = Source::new("input.json", text.to_owned());
        let root = source.parse().unwrap();
        check_deployment_template(&source, &root)
    }

    fn message(text: &str) -> String {
        check(text).unwrap_err().message()
    }

    #[test]
    fn empty_resources_is_template() {
        check(r#"{"$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#", "resources": []}"#).unwrap();
        // A languageVersion 2.0 template keeps `resources` in an object.
        check(r#"{"languageVersion": "2.0", "Resources": {}}"#).unwrap();
    }

    #[test]
    fn template_parameters_are_declarations() {
        // Declarations with `type` and `defaultValue` are a template's, not a parameters file's.
        let text = r#"{"parameters": {"a": {"type": "int", "defaultValue": 1}}}"#;
        assert_eq!(
            message(text),
            "`input.json` is not an ARM deployment template: it has no `resources`"
        );
    }

    #[test]
    fn other_json_is_rejected() {
        assert_eq!(
            message("{}"),
            "`input.json` is not an ARM deployment template: it has no `resources`"
        );
        assert_eq!(
            message(r#"{"name": "app", "version": "1.0.0"}"#),
            "`input.json` is not an ARM deployment template: it has no `resources`"
        );
        assert_eq!(
            message("[1, 2]"),
            "`input.json` is not an ARM deployment template: its top level is an array, not a JSON object"
        );
        let error = check("{}").unwrap_err();
        assert!(
            error.help_text().unwrap().contains("`--parameters FILE`"),
            "{error:?}"
        );
    }

    #[test]
    fn parameters_file_by_schema() {
        let text = "{\n  \"$schema\": \"https://schema.management.azure.com/schemas/2015-01-01/deploymentParameters.json#\",\n  \"parameters\": {}\n}";
        let error = check(text).unwrap_err();

        assert_eq!(
            error.message(),
            "`input.json` is a parameters file, not a deployment template: its `$schema` is the schema of parameters files"
        );
        let location = error.location().unwrap();
        assert_eq!((location.line, location.column), (2, 14));
        assert_eq!(location.json_path, "$.$schema");
        assert_eq!(
            error.help_text(),
            Some("pass the deployment template as the input and this file with `--parameters input.json`")
        );
    }

    #[test]
    fn parameters_file_by_values() {
        let wrapped = r#"{"contentVersion": "1.0.0.0", "parameters": {"a": {"value": 1}, "b": {"reference": {"keyVault": {"id": "x"}, "secretName": "s"}}}}"#;
        let error = check(wrapped).unwrap_err();
        assert_eq!(
            error.message(),
            "`input.json` is a parameters file, not a deployment template: it has no `resources`, and its `parameters` give values rather than declare types"
        );
        assert_eq!(error.location().unwrap().json_path, "$.parameters");

        let bare = r#"{"a": {"value": 1}}"#;
        assert_eq!(
            message(bare),
            "`input.json` is a parameters file, not a deployment template: it has no `resources`, and each of its members gives a parameter value"
        );
    }
}
