//! Values of the template language after evaluation.

use indexmap::IndexMap;
use serde::Serialize;

/// A JSON value as the ARM engine sees it, plus [`Value::Unknown`] for what cannot be known
/// offline.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    String(String),
    Array(Vec<Value>),
    Object(Object),
    Unknown(Unknown),
}

/// A JSON object that keeps key order and looks keys up exact-case first, then ignoring case,
/// as the ARM engine does.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(transparent)]
pub struct Object(pub IndexMap<String, Value>);

impl Object {
    pub fn new() -> Self {
        Object(IndexMap::new())
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        if let Some(value) = self.0.get(key) {
            return Some(value);
        }
        self.0
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(key))
            .map(|(_, value)| value)
    }

    pub fn insert(&mut self, key: impl Into<String>, value: Value) {
        self.0.insert(key.into(), value);
    }

    /// Inserts a key written in a template object. A key written earlier in another case is
    /// removed first, so that the later copy wins as it does for a key written twice alike.
    pub(crate) fn insert_written(&mut self, key: String, value: Value) {
        let earlier = self
            .0
            .keys()
            .position(|name| name != &key && name.eq_ignore_ascii_case(&key));
        if let Some(index) = earlier {
            self.0.shift_remove_index(index);
        }
        self.0.insert(key, value);
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &Value)> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A value that only exists at deployment time or outside the template.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Unknown {
    /// The residual expression, for example `reference('vnet').subnets[0].id`.
    pub expression: String,
    pub cause: UnknownCause,
    /// Derived from a secure parameter, a Key Vault reference or a `list*` call: never print.
    pub secret: bool,
}

/// Why a value is unknown offline.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UnknownCause {
    /// `reference()` of a resource outside the template, or a runtime-only property.
    Reference,
    /// A `list*` call the provider did not answer.
    List,
    /// A Key Vault reference in a parameter value.
    KeyVaultSecret,
    /// `utcNow()`, `newGuid()` and other values that differ per deployment.
    Nondeterministic,
    /// A linked template or parameter file behind a URI that is not fetched offline.
    RemoteTemplate,
    /// Deployment metadata the engine computes server-side, such as `templateHash`.
    DeploymentMetadata,
}

impl Value {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(text) => Some(text),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(flag) => Some(*flag),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(number) => Some(*number),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(items) => Some(items),
            _ => None,
        }
    }

    pub fn as_object(&self) -> Option<&Object> {
        match self {
            Value::Object(object) => Some(object),
            _ => None,
        }
    }

    pub fn is_unknown(&self) -> bool {
        matches!(self, Value::Unknown(_))
    }

    /// Looks up `key` when this is an object (exact case first, then ignoring case).
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.as_object().and_then(|object| object.get(key))
    }

    /// Follows a path of object keys, for example `["properties", "siteConfig"]`.
    pub fn get_path(&self, path: &[&str]) -> Option<&Value> {
        path.iter().try_fold(self, |value, key| value.get(key))
    }

    /// The JSON type name used in error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
            Value::Unknown(_) => "unknown",
        }
    }
}
