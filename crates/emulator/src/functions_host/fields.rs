//! Typed reads of host.json and function.json values. A value of the wrong type is reported
//! with its full path in the file, its line and column, and the type found, so that the user
//! can find it without knowing which section the loader was reading.

use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::Value;
use subnetlock_arm::{JsonStep, SourceLocation, SpannedJson};

use super::HostError;

/// A JSON file of the function app, parsed, with its text kept to locate values in it.
pub(super) struct JsonFile {
    pub path: PathBuf,
    pub value: Value,
    text: String,
}

/// One step of a [`FieldPath`].
#[derive(Clone, Debug)]
enum FieldStep {
    Key(String),
    Index(usize),
}

/// Path of a value from the top of its file, written as the loader names it in errors:
/// `customHandler.description.arguments[1]`.
#[derive(Clone, Debug, Default)]
pub(super) struct FieldPath(Vec<FieldStep>);

/// A JSON type the loader expects for a field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Expected {
    String,
    Boolean,
    StringArray,
    Object,
}

impl JsonFile {
    /// Reads and parses `path`. The Functions host reads function.json with .NET's
    /// `File.ReadAllText` (`HostFunctionMetadataProvider`), which skips a UTF-8 byte order mark
    /// (`File.cs` in dotnet/runtime). host.json is read the same way here.
    pub fn read(path: &Path) -> Result<JsonFile, HostError> {
        let text = std::fs::read_to_string(path).map_err(|source| HostError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let body = text.strip_prefix('\u{feff}').unwrap_or(&text);
        let value = serde_json::from_str(body).map_err(|source| HostError::Json {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(JsonFile {
            path: path.to_path_buf(),
            value,
            text,
        })
    }

    /// Wraps a value built in a test, with its compact JSON as the text.
    #[cfg(test)]
    pub fn from_value(path: &str, value: Value) -> JsonFile {
        JsonFile {
            path: PathBuf::from(path),
            text: value.to_string(),
            value,
        }
    }

    /// Returns the error for `value`, written at `field`, which is not of the `expected` type.
    pub fn type_error(&self, field: &FieldPath, value: &Value, expected: Expected) -> HostError {
        HostError::InvalidType {
            path: self.path.clone(),
            field: field.to_string(),
            expected: expected.description(),
            found: describe_value(value),
            location: Box::new(self.locate(field)),
            help: format!(
                "write `{field}` as {}; see https://learn.microsoft.com/azure/azure-functions/functions-custom-handlers for the fields of host.json",
                expected.written_form()
            ),
        }
    }

    /// Returns where `field` is written, or the start of the file when it cannot be found.
    fn locate(&self, field: &FieldPath) -> SourceLocation {
        let steps: Vec<JsonStep<'_>> = field
            .0
            .iter()
            .map(|step| match step {
                FieldStep::Key(key) => JsonStep::Key(key),
                FieldStep::Index(index) => JsonStep::Index(*index),
            })
            .collect();
        // serde_json has parsed the text, so the spanned reader, which also accepts comments,
        // parses it too. A failure only loses the position.
        SpannedJson::parse(&self.path, self.text.clone())
            .ok()
            .and_then(|document| document.locate(&steps))
            .unwrap_or_else(|| SourceLocation {
                file: self.path.clone(),
                line: 1,
                column: 1,
                json_path: "$".to_owned(),
                offset: 0,
                length: 0,
            })
    }

    /// Returns the string at `field` of `object`, or `None` when it is missing or null.
    pub fn optional_str<'a>(
        &self,
        object: &'a Value,
        field: &FieldPath,
    ) -> Result<Option<&'a str>, HostError> {
        match member(object, field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(text)) => Ok(Some(text)),
            Some(other) => Err(self.type_error(field, other, Expected::String)),
        }
    }

    /// Returns the boolean at `field` of `object`, or `false` when it is missing or null.
    pub fn optional_bool(&self, object: &Value, field: &FieldPath) -> Result<bool, HostError> {
        match member(object, field) {
            None | Some(Value::Null) => Ok(false),
            Some(Value::Bool(value)) => Ok(*value),
            Some(other) => Err(self.type_error(field, other, Expected::Boolean)),
        }
    }

    /// Returns the strings at `field` of `object`, or none when it is missing or null.
    pub fn string_array(
        &self,
        object: &Value,
        field: &FieldPath,
    ) -> Result<Vec<String>, HostError> {
        match member(object, field) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(index, item)| match item {
                    Value::String(text) => Ok(text.clone()),
                    other => Err(self.type_error(&field.index(index), other, Expected::String)),
                })
                .collect(),
            Some(other) => Err(self.type_error(field, other, Expected::StringArray)),
        }
    }
}

/// Returns the member of `object` that the last key of `field` names.
fn member<'a>(object: &'a Value, field: &FieldPath) -> Option<&'a Value> {
    match field.0.last() {
        Some(FieldStep::Key(key)) => object.get(key),
        Some(FieldStep::Index(index)) => object.get(index),
        None => Some(object),
    }
}

impl FieldPath {
    /// Returns the path of member `key` of the value at this path.
    pub fn key(&self, key: &str) -> FieldPath {
        let mut steps = self.0.clone();
        steps.push(FieldStep::Key(key.to_owned()));
        FieldPath(steps)
    }

    /// Returns the path of item `index` of the array at this path.
    pub fn index(&self, index: usize) -> FieldPath {
        let mut steps = self.0.clone();
        steps.push(FieldStep::Index(index));
        FieldPath(steps)
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (position, step) in self.0.iter().enumerate() {
            match step {
                FieldStep::Key(key) if position == 0 => write!(f, "{key}")?,
                FieldStep::Key(key) => write!(f, ".{key}")?,
                FieldStep::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

impl Expected {
    /// Returns the type as an error message names it.
    fn description(self) -> &'static str {
        match self {
            Expected::String => "a string",
            Expected::Boolean => "a boolean",
            Expected::StringArray => "an array of strings",
            Expected::Object => "an object",
        }
    }

    /// Returns how a value of the type is written, for the help of an error.
    fn written_form(self) -> &'static str {
        match self {
            Expected::String => "a string, in double quotes",
            Expected::Boolean => "`true` or `false`, without quotes",
            Expected::StringArray => "an array of strings, such as `[\"--verbose\"]`",
            Expected::Object => "an object, `{...}`",
        }
    }
}

/// Describes a JSON value by its type, with the value itself when it is short, for messages
/// such as "found the number 5".
fn describe_value(value: &Value) -> String {
    /// Maximum length of a string value quoted in full in a message, in characters.
    const MAX_QUOTED_CHARS: usize = 40;

    match value {
        Value::Null => "null".to_owned(),
        Value::Bool(flag) => format!("the boolean {flag}"),
        Value::Number(number) => format!("the number {number}"),
        Value::String(text) if text.chars().count() <= MAX_QUOTED_CHARS => {
            format!("the string {}", Value::String(text.clone()))
        }
        Value::String(_) => "a string".to_owned(),
        Value::Array(_) => "an array".to_owned(),
        Value::Object(_) => "an object".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_path_display() {
        let field = FieldPath::default()
            .key("customHandler")
            .key("description")
            .key("arguments")
            .index(1);

        assert_eq!(field.to_string(), "customHandler.description.arguments[1]");
    }

    #[test]
    fn describe_value_cases() {
        let long = "x".repeat(41);
        let cases = [
            (Value::Null, "null"),
            (Value::Bool(true), "the boolean true"),
            (serde_json::json!(5), "the number 5"),
            (serde_json::json!("yes"), "the string \"yes\""),
            (Value::String(long), "a string"),
            (serde_json::json!([1]), "an array"),
            (serde_json::json!({}), "an object"),
        ];
        for (value, expected) in cases {
            assert_eq!(describe_value(&value), expected, "{value}");
        }
    }
}
