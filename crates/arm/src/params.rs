//! Supplied parameter values: a `deploymentParameters.json` file and inline overrides.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use indexmap::IndexMap;

use crate::error::{Error, ErrorKind};
use crate::eval::literal_value;
use crate::functions::deep_equals;
use crate::source::NodeKind;
use crate::source::{path_key, Node, Source};
use crate::value::{Unknown, UnknownCause, Value};
use crate::DuplicateKey;

/// Parameter values supplied to a deployment. Names match case-insensitively.
#[derive(Clone, Debug, Default)]
pub struct Parameters {
    values: IndexMap<String, Value>,
    /// The origin of each value, keyed by lower-case name, so that an error about a value
    /// points at it rather than at the template's declaration.
    origins: HashMap<String, Origin>,
    /// Keys written twice in one object of the parameters file; the later copy is read.
    duplicate_keys: Vec<DuplicateKey>,
}

impl Parameters {
    pub fn new() -> Self {
        Parameters::default()
    }

    /// Reads a parameters file: the `deploymentParameters.json` wrapper (`{"parameters":
    /// {"name": {"value": ...}}}`) or the bare `{"name": {"value": ...}}` map, with comments.
    ///
    /// Values are data: `"[...]"` strings stay literal. A Key Vault `reference` becomes an
    /// unknown secret, because only Azure can read the vault.
    pub fn from_file(path: &Path) -> Result<Self, Error> {
        let source = Arc::new(Source::read(path)?);
        Parameters::from_source(&source)
    }

    /// Like [`Parameters::from_file`], for text already in memory.
    pub fn parse(file_name: &str, text: &str) -> Result<Self, Error> {
        let source = Arc::new(Source::new(file_name, text.to_owned()));
        Parameters::from_source(&source)
    }

    /// Sets a value given inline (`-p NAME=VALUE`); it replaces a value of the same name
    /// from a file.
    pub fn set(&mut self, name: &str, value: Value) {
        self.insert(name, value, Origin::Inline);
    }

    fn insert(&mut self, name: &str, value: Value, origin: Origin) {
        if let Some(existing) = self
            .values
            .keys()
            .find(|key| key.eq_ignore_ascii_case(name))
            .cloned()
        {
            self.values.shift_remove(&existing);
        }
        self.values.insert(name.to_owned(), value);
        self.origins.insert(name.to_ascii_lowercase(), origin);
    }

    /// Returns each supplied name as written, with where it was written, keyed by lower-case
    /// name.
    pub(crate) fn supplied(&self) -> HashMap<String, Supplied> {
        self.values
            .keys()
            .map(|name| {
                let key = name.to_ascii_lowercase();
                let origin = self.origins.get(&key).cloned().unwrap_or(Origin::Inline);
                (
                    key,
                    Supplied {
                        name: name.clone(),
                        origin,
                    },
                )
            })
            .collect()
    }

    /// Looks a value up, ignoring case.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.values
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &Value)> {
        self.values.iter()
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Returns the keys written twice in one object of the parameters file.
    pub fn duplicate_keys(&self) -> &[DuplicateKey] {
        &self.duplicate_keys
    }

    fn from_source(source: &Arc<Source>) -> Result<Self, Error> {
        let root = source.parse()?;
        let wrapped = root.get("$schema").is_some() || root.get("contentVersion").is_some();
        let (map, map_path) = match root.get("parameters") {
            Some(parameters) if wrapped || parameters.get("value").is_none() => {
                (Arc::clone(parameters), "$.parameters".to_owned())
            }
            _ => (Arc::clone(&root), "$".to_owned()),
        };
        let Some(members) = map.as_object() else {
            return Err(file_error(
                source,
                &map,
                &map_path,
                "`parameters` must be an object",
            ));
        };

        let mut parameters = Parameters::new();
        crate::source::find_duplicate_keys(source, &root, &mut parameters.duplicate_keys);
        for member in members {
            let name = &member.key.text;
            let path = path_key(&map_path, name);
            let value = entry_value(source, &member.value, &path, name)?;
            // A type or range error underlines the `value`; a Key Vault reference is never
            // checked, because its value is unknown offline.
            let (value_span, value_path) = match member.value.get("value") {
                Some(node) => ((node.start, node.end), path_key(&path, "value")),
                None => ((member.value.start, member.value.end), path.clone()),
            };
            let origin = Origin::File(Box::new(FileOrigin {
                source: Arc::clone(source),
                key_span: (member.key_start, member.key_end),
                key_path: path,
                value_span,
                value_path,
            }));
            parameters.insert(name, value, origin);
        }
        Ok(parameters)
    }
}

/// The place a supplied parameter value was written.
#[derive(Clone, Debug)]
pub(crate) enum Origin {
    File(Box<FileOrigin>),
    /// An inline override, which the command line takes as `-p NAME=VALUE`.
    Inline,
}

/// An entry of a parameters file: the spans and JSON paths of its key and of its value.
#[derive(Clone, Debug)]
pub(crate) struct FileOrigin {
    source: Arc<Source>,
    key_span: (usize, usize),
    key_path: String,
    value_span: (usize, usize),
    value_path: String,
}

/// A supplied parameter: its name as the user wrote it and where.
#[derive(Clone, Debug)]
pub(crate) struct Supplied {
    pub name: String,
    pub origin: Origin,
}

impl Supplied {
    /// Builds an error about the supplied value, located at the value in the parameters file,
    /// or naming the inline override.
    pub(crate) fn value_error(&self, message: String, help: String) -> Error {
        match &self.origin {
            Origin::File(file) => {
                let (start, end) = file.value_span;
                let location = file.source.location(start, end, &file.value_path);
                Error::located(ErrorKind::Parameter, message, help, &file.source, location)
            }
            Origin::Inline => Error::Inline {
                message: format!("{message}, given as `-p {}=...`", self.name),
                help,
            },
        }
    }

    /// Builds the error for a supplied parameter that the template does not declare.
    /// `declared` lists the template's parameter names.
    pub(crate) fn undeclared_error(&self, declared: &[&str]) -> Error {
        let name = &self.name;
        let declared = if declared.is_empty() {
            "the template declares no parameters".to_owned()
        } else {
            format!("the template declares: {}", declared.join(", "))
        };
        match &self.origin {
            Origin::File(file) => {
                let (start, end) = file.key_span;
                let location = file.source.location(start, end, &file.key_path);
                Error::located(
                    ErrorKind::Parameter,
                    format!("parameter `{name}` is in the parameters file but the template does not declare it"),
                    format!("remove it from the parameters file or fix its name; {declared}"),
                    &file.source,
                    location,
                )
            }
            Origin::Inline => Error::Inline {
                message: format!(
                    "parameter `{name}` is given as `-p {name}=...` but the template does not declare it"
                ),
                help: format!("remove the `-p` flag or fix the name; {declared}"),
            },
        }
    }
}

/// Reads one `{"value": ...}` or `{"reference": {"keyVault": ...}}` entry.
pub(crate) fn entry_value(
    source: &Source,
    entry: &Node,
    path: &str,
    name: &str,
) -> Result<Value, Error> {
    if let Some(value) = entry.get("value") {
        return Ok(literal_value(value));
    }
    if let Some(reference) = entry.get("reference") {
        let vault = reference
            .get("keyVault")
            .and_then(|vault| vault.get("id"))
            .and_then(|id| id.as_str())
            .unwrap_or("");
        let secret = reference
            .get("secretName")
            .and_then(|secret| secret.as_str())
            .unwrap_or("");
        return Ok(key_vault_unknown(vault, secret));
    }
    Err(file_error(
        source,
        entry,
        path,
        &format!("parameter `{name}` has neither `value` nor `reference`"),
    ))
}

pub(crate) fn key_vault_unknown(vault: &str, secret: &str) -> Value {
    Value::Unknown(Unknown {
        expression: format!("keyVaultSecret('{vault}', '{secret}')"),
        cause: UnknownCause::KeyVaultSecret,
        secret: true,
    })
}

fn file_error(source: &Source, node: &Node, path: &str, message: &str) -> Error {
    Error::located(
        ErrorKind::Parameter,
        message.to_owned(),
        "write each parameter as `\"name\": {\"value\": ...}`".to_owned(),
        source,
        source.location(node.start, node.end, path),
    )
}

/// Checks a parameter value against its declaration: type, `allowedValues`,
/// `minValue`/`maxValue`, `minLength`/`maxLength`. Returns message and help on failure.
pub(crate) fn validate_parameter(
    name: &str,
    value: &Value,
    declaration: &Node,
    definition: &Node,
) -> Result<(), (String, String)> {
    if value.is_unknown() {
        return Ok(());
    }
    let field = |key: &str| {
        declaration
            .get(key)
            .or_else(|| definition.get(key))
            .cloned()
    };
    let nullable = matches!(
        field("nullable").map(|node| matches!(node.kind, NodeKind::Bool(true))),
        Some(true)
    );
    if matches!(value, Value::Null) && nullable {
        return Ok(());
    }

    if let Some(type_name) =
        field("type").and_then(|node| node.as_str().map(str::to_ascii_lowercase))
    {
        let matches_type = match type_name.as_str() {
            "string" | "securestring" => matches!(value, Value::String(_)),
            "int" => matches!(value, Value::Int(_)),
            "bool" => matches!(value, Value::Bool(_)),
            "object" | "secureobject" => matches!(value, Value::Object(_)),
            "array" => matches!(value, Value::Array(_)),
            _ => true,
        };
        if !matches_type {
            return Err((
                format!(
                    "parameter `{name}` must be of type `{type_name}`, found {} `{}`",
                    value.type_name(),
                    short_value(value)
                ),
                format!("supply a {type_name} value for `{name}`"),
            ));
        }
    }

    if let Some(allowed) = field("allowedValues") {
        if let Some(items) = allowed.as_array() {
            let allowed_values: Vec<Value> = items
                .iter()
                .map(|item| crate::eval::literal_value(item))
                .collect();
            let is_allowed = |candidate: &Value| {
                allowed_values
                    .iter()
                    .any(|entry| deep_equals(entry, candidate))
            };
            let ok = match value {
                Value::Array(elements)
                    if !allowed_values
                        .iter()
                        .any(|entry| matches!(entry, Value::Array(_))) =>
                {
                    elements.iter().all(is_allowed)
                }
                other => is_allowed(other),
            };
            if !ok {
                let shown: Vec<String> = allowed_values.iter().map(short_value).collect();
                return Err((
                    format!(
                        "parameter `{name}` value `{}` is not one of the allowed values {}",
                        short_value(value),
                        shown.join(", ")
                    ),
                    format!("use one of the values listed in `allowedValues` of `{name}`"),
                ));
            }
        }
    }

    let bound = |key: &str| match field(key).map(|node| crate::eval::literal_value(&node)) {
        Some(Value::Int(number)) => Some(number),
        _ => None,
    };
    if let Value::Int(number) = value {
        if let Some(min) = bound("minValue").filter(|min| number < min) {
            return Err((
                format!("parameter `{name}` value `{number}` is less than `minValue` {min}"),
                format!("use a value of at least {min}"),
            ));
        }
        if let Some(max) = bound("maxValue").filter(|max| number > max) {
            return Err((
                format!("parameter `{name}` value `{number}` is greater than `maxValue` {max}"),
                format!("use a value of at most {max}"),
            ));
        }
    }
    let length = match value {
        Value::String(text) => Some(text.encode_utf16().count() as i64),
        Value::Array(items) => Some(items.len() as i64),
        _ => None,
    };
    if let Some(length) = length {
        if let Some(min) = bound("minLength").filter(|min| length < *min) {
            return Err((
                format!("parameter `{name}` has length {length}, less than `minLength` {min}"),
                format!("supply at least {min} characters or elements"),
            ));
        }
        if let Some(max) = bound("maxLength").filter(|max| length > *max) {
            return Err((
                format!("parameter `{name}` has length {length}, more than `maxLength` {max}"),
                format!("supply at most {max} characters or elements"),
            ));
        }
    }
    Ok(())
}

fn short_value(value: &Value) -> String {
    let text = match value {
        Value::String(text) => format!("'{text}'"),
        other => crate::format::to_json_text(other),
    };
    if text.chars().count() > 60 {
        let head: String = text.chars().take(57).collect();
        return format!("{head}...");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapper_form() {
        let text = r#"{
  "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentParameters.json#",
  "contentVersion": "1.0.0.0",
  // comment
  "parameters": { "a": { "value": 1 }, "b": { "value": "[not evaluated]" } }
}"#;
        let parameters = Parameters::parse("p.json", text).unwrap();
        assert_eq!(parameters.get("A"), Some(&Value::Int(1)));
        assert_eq!(
            parameters.get("b"),
            Some(&Value::String("[not evaluated]".to_owned()))
        );
    }

    #[test]
    fn bare_form() {
        let parameters = Parameters::parse("p.json", r#"{"x": {"value": true}}"#).unwrap();
        assert_eq!(parameters.get("x"), Some(&Value::Bool(true)));
    }

    #[test]
    fn key_vault_reference_is_secret() {
        let text = r#"{"parameters": {"pw": {"reference": {"keyVault": {"id": "/v"}, "secretName": "s"}}}}"#;
        let parameters = Parameters::parse("p.json", text).unwrap();
        let Some(Value::Unknown(unknown)) = parameters.get("pw") else {
            panic!("not unknown");
        };
        assert!(unknown.secret);
        assert_eq!(unknown.cause, UnknownCause::KeyVaultSecret);
    }

    #[test]
    fn set_overrides_file() {
        let mut parameters = Parameters::parse("p.json", r#"{"x": {"value": 1}}"#).unwrap();
        parameters.set("X", Value::Int(2));
        assert_eq!(parameters.get("x"), Some(&Value::Int(2)));
        assert_eq!(parameters.len(), 1);
    }

    #[test]
    fn entry_without_value_is_located() {
        let error =
            Parameters::parse("p.json", "{\"parameters\": {\n \"x\": {\"v\": 1}}}").unwrap_err();
        let location = error.location().unwrap();
        assert_eq!(
            error.message(),
            "parameter `x` has neither `value` nor `reference`"
        );
        assert_eq!((location.line, location.column), (2, 7));
        assert_eq!(location.json_path, "$.parameters.x");
    }
}
