//! Runtime values: what `reference()` and `list*()` return.

use crate::eval::Resource;
use crate::value::{Object, Value};

/// Supplies runtime state that a template reads with `reference()` and `list*()`.
pub trait Provider {
    /// Returns the runtime state for `reference(id, apiVersion, 'Full'?)`; `None` makes the
    /// value unknown.
    fn reference(&self, request: &ReferenceRequest<'_>) -> Option<Value>;

    /// Returns the response of a `list*` function (`listKeys`, `listSecrets`, ...); `None`
    /// makes the value unknown and secret.
    fn list(&self, request: &ListRequest<'_>) -> Option<Value>;

    /// Returns the time `utcNow()` reads, the same for the whole deployment. `None`, the
    /// default, leaves it unknown, as it is for a template checked before it is deployed.
    fn deployment_time(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        None
    }

    /// Returns a fresh GUID for one `newGuid()` call; `None`, the default, leaves it unknown.
    fn new_guid(&self) -> Option<String> {
        None
    }
}

/// One `reference()` call.
#[derive(Clone, Copy, Debug)]
pub struct ReferenceRequest<'a> {
    /// The full resource id, or the text passed to `reference()` when it names no resource
    /// of the template.
    pub id: &'a str,
    pub api_version: Option<&'a str>,
    /// `true` for `reference(..., 'Full')`, which returns the whole resource envelope.
    pub full: bool,
    /// The resource when the template declares it, already evaluated.
    pub declared: Option<&'a Resource>,
}

/// One `list*()` call.
#[derive(Clone, Copy, Debug)]
pub struct ListRequest<'a> {
    /// The function name as written, for example `listSecrets`.
    pub function: &'a str,
    pub id: &'a str,
    pub api_version: &'a str,
    /// The optional request body (third argument).
    pub body: Option<&'a Value>,
    pub declared: Option<&'a Resource>,
}

/// Provider without a cloud. `reference()` of a resource the template declares returns its
/// evaluated `properties`, or the `'Full'` envelope built from its body. Everything else,
/// including every `list*()` call, stays unknown.
#[derive(Clone, Copy, Debug, Default)]
pub struct OfflineProvider;

impl Provider for OfflineProvider {
    fn reference(&self, request: &ReferenceRequest<'_>) -> Option<Value> {
        let resource = request.declared?;
        // An `existing` resource is only a pointer to something deployed elsewhere.
        if resource.existing {
            return None;
        }
        let properties = resource
            .body
            .get("properties")
            .cloned()
            .unwrap_or_else(|| Value::Object(Object::new()));
        if !request.full {
            return Some(properties);
        }
        Some(Value::Object(full_envelope(
            resource,
            request.api_version,
            properties,
        )))
    }

    fn list(&self, _request: &ListRequest<'_>) -> Option<Value> {
        None
    }
}

/// Builds the envelope `reference(id, apiVersion, 'Full')` returns
/// (<https://learn.microsoft.com/azure/azure-resource-manager/templates/template-functions-resource#reference>).
pub fn full_envelope(resource: &Resource, api_version: Option<&str>, properties: Value) -> Object {
    let mut envelope = Object::new();
    let api_version = api_version.unwrap_or(&resource.api_version);
    envelope.insert("apiVersion", Value::String(api_version.to_owned()));
    for key in [
        "location", "sku", "tags", "kind", "identity", "zones", "plan",
    ] {
        if let Some(value) = resource.body.get(key) {
            envelope.insert(key, value.clone());
        }
    }
    envelope.insert("properties", properties);
    envelope.insert("resourceId", Value::String(resource.id.clone()));
    envelope.insert("referenceApiVersion", Value::String(api_version.to_owned()));
    envelope.insert("condition", Value::Bool(true));
    envelope.insert("isConditionTrue", Value::Bool(true));
    envelope.insert("isTemplateResource", Value::Bool(true));
    envelope.insert("isAction", Value::Bool(false));
    envelope.insert("provisioningOperation", Value::String("Create".to_owned()));
    envelope
}
