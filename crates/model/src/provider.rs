//! Answers to `reference()` and `list*()` as Azure's resource providers give them.
//!
//! Both `check` and `up` evaluate templates with this provider, so a function app's
//! `target-url` built from `listSecrets(...).trigger_url` or from `defaultHostName` plus
//! `listKeys(...)` names the same host in both. Only the key material differs: `up` draws real
//! random keys and hands the same keys to its Functions hosts; `check` uses placeholders,
//! because keys never change who can reach whom.

use std::collections::HashMap;
use std::sync::Mutex;

use base64::Engine;
use indexmap::IndexMap;
use rand::RngCore;
use subnetlock_arm::{ListRequest, Object, Provider, ReferenceRequest, Resource, Value};

use crate::topology::host_names;

/// Where key material comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyMode {
    /// Random keys, as the Functions runtime creates them: 32 random bytes, URL-safe base64.
    Random,
    /// Fixed, readable placeholders for offline analysis.
    Placeholder,
}

/// The keys of one function app: master key, host keys and per-function keys.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SiteKeys {
    pub master: String,
    pub host: IndexMap<String, String>,
    pub functions: HashMap<String, IndexMap<String, String>>,
}

/// A resource provider that answers from the template itself plus what Azure adds at runtime.
pub struct SimulatedProvider {
    mode: KeyMode,
    /// The time `utcNow()` reads in a deployment: when the provider was created. `None` for
    /// offline analysis, where the value stays unknown.
    deployment_time: Option<chrono::DateTime<chrono::Utc>>,
    keys: Mutex<HashMap<String, SiteKeys>>,
    storage_keys: Mutex<HashMap<String, String>>,
}

impl SimulatedProvider {
    pub fn new(mode: KeyMode) -> Self {
        SimulatedProvider {
            mode,
            deployment_time: (mode == KeyMode::Random).then(chrono::Utc::now),
            keys: Mutex::new(HashMap::new()),
            storage_keys: Mutex::new(HashMap::new()),
        }
    }

    /// The keys of the site named `site_name`, created on first use. Function keys are created
    /// for each name in `functions`.
    pub fn site_keys(&self, site_name: &str, functions: &[String]) -> SiteKeys {
        let mut all = self
            .keys
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let keys = all
            .entry(site_name.to_ascii_lowercase())
            .or_insert_with(|| self.new_site_keys(site_name));
        for function in functions {
            self.ensure_function_key(keys, site_name, function);
        }
        keys.clone()
    }

    fn new_site_keys(&self, site_name: &str) -> SiteKeys {
        let mut host = IndexMap::new();
        host.insert(
            "default".to_owned(),
            self.new_key(site_name, "host-default"),
        );
        SiteKeys {
            master: self.new_key(site_name, "master"),
            host,
            functions: HashMap::new(),
        }
    }

    fn ensure_function_key(&self, keys: &mut SiteKeys, site_name: &str, function: &str) -> String {
        let function_keys = keys
            .functions
            .entry(function.to_ascii_lowercase())
            .or_default();
        if let Some(key) = function_keys.get("default") {
            return key.clone();
        }
        let key = self.new_key(site_name, &format!("function-{function}"));
        function_keys.insert("default".to_owned(), key.clone());
        key
    }

    fn new_key(&self, site_name: &str, purpose: &str) -> String {
        match self.mode {
            KeyMode::Random => {
                let mut bytes = [0u8; 32];
                rand::thread_rng().fill_bytes(&mut bytes);
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
            }
            KeyMode::Placeholder => {
                format!("placeholder-{}-{purpose}", site_name.to_ascii_lowercase())
            }
        }
    }

    fn function_key(&self, site_name: &str, function: &str) -> String {
        let mut all = self
            .keys
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let keys = all
            .entry(site_name.to_ascii_lowercase())
            .or_insert_with(|| self.new_site_keys(site_name));
        self.ensure_function_key(keys, site_name, function)
    }

    fn storage_key(&self, account: &str) -> String {
        let mut all = self
            .storage_keys
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        all.entry(account.to_ascii_lowercase())
            .or_insert_with(|| self.new_key(account, "storage"))
            .clone()
    }
}

impl Provider for SimulatedProvider {
    fn deployment_time(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        self.deployment_time
    }

    /// A random version 4 GUID in lower case, as `newGuid()` returns, when deploying.
    fn new_guid(&self) -> Option<String> {
        if self.mode != KeyMode::Random {
            return None;
        }
        let mut bytes = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut bytes);
        bytes[6] = (bytes[6] & 0x0f) | 0x40;
        bytes[8] = (bytes[8] & 0x3f) | 0x80;
        let hex: String = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
        Some(format!(
            "{}-{}-{}-{}-{}",
            &hex[..8],
            &hex[8..12],
            &hex[12..16],
            &hex[16..20],
            &hex[20..]
        ))
    }

    fn reference(&self, request: &ReferenceRequest<'_>) -> Option<Value> {
        let declared = request.declared?;
        let mut properties = declared.properties().cloned().unwrap_or_default();
        add_runtime_properties(declared, &mut properties);
        if !request.full {
            return Some(Value::Object(properties));
        }
        let mut envelope = match &declared.body {
            Value::Object(body) => body.clone(),
            _ => Object::new(),
        };
        envelope.insert("properties", Value::Object(properties));
        envelope.insert("resourceId", Value::String(declared.id.clone()));
        if let Some(version) = request.api_version {
            envelope.insert("apiVersion", Value::String(version.to_owned()));
        }
        Some(Value::Object(envelope))
    }

    fn list(&self, request: &ListRequest<'_>) -> Option<Value> {
        let path = ResourcePath::parse(request.id)?;
        let function = request.function.to_ascii_lowercase();
        match (path.resource_type().as_str(), function.as_str()) {
            ("microsoft.web/sites/functions", "listsecrets") => {
                let (site, function_name) = (path.name(0)?, path.name(1)?);
                let key = self.function_key(site, function_name);
                let (host, _) = host_names(site);
                let mut answer = Object::new();
                answer.insert("key", Value::String(key.clone()));
                answer.insert(
                    "trigger_url",
                    Value::String(format!("https://{host}/api/{function_name}?code={key}")),
                );
                Some(Value::Object(answer))
            }
            ("microsoft.web/sites/functions", "listkeys") => {
                let key = self.function_key(path.name(0)?, path.name(1)?);
                let mut answer = Object::new();
                answer.insert("default", Value::String(key));
                Some(Value::Object(answer))
            }
            ("microsoft.web/sites/host", "listkeys") => {
                let keys = self.site_keys(path.name(0)?, &[]);
                let mut function_keys = Object::new();
                for (name, key) in &keys.host {
                    function_keys.insert(name.clone(), Value::String(key.clone()));
                }
                let mut answer = Object::new();
                answer.insert("masterKey", Value::String(keys.master));
                answer.insert("functionKeys", Value::Object(function_keys));
                answer.insert("systemKeys", Value::Object(Object::new()));
                Some(Value::Object(answer))
            }
            ("microsoft.storage/storageaccounts", "listkeys") => {
                let key = self.storage_key(path.name(0)?);
                let mut entry = Object::new();
                entry.insert("keyName", Value::String("key1".to_owned()));
                entry.insert("value", Value::String(key));
                entry.insert("permissions", Value::String("FULL".to_owned()));
                let mut answer = Object::new();
                answer.insert("keys", Value::Array(vec![Value::Object(entry)]));
                Some(Value::Object(answer))
            }
            _ => None,
        }
    }
}

/// Adds what Azure computes when it creates a resource and returns from a GET: ids of inline
/// subnets, host names of sites.
fn add_runtime_properties(declared: &Resource, properties: &mut Object) {
    let resource_type = declared.resource_type.to_ascii_lowercase();
    match resource_type.as_str() {
        "microsoft.web/sites" | "microsoft.web/sites/slots" => {
            let site_name = declared.name.replace('/', "-");
            let (host, scm_host) = host_names(&site_name);
            properties.insert("defaultHostName", Value::String(host.clone()));
            properties.insert("hostNames", Value::Array(vec![Value::String(host.clone())]));
            properties.insert(
                "enabledHostNames",
                Value::Array(vec![Value::String(host), Value::String(scm_host)]),
            );
            properties.insert("state", Value::String("Running".to_owned()));
        }
        "microsoft.network/virtualnetworks" => {
            if let Some(Value::Array(subnets)) = properties.0.get_mut("subnets") {
                for subnet in subnets.iter_mut() {
                    if let Value::Object(subnet) = subnet {
                        let name = subnet
                            .get("name")
                            .and_then(Value::as_str)
                            .map(str::to_owned);
                        if let (Some(name), None) = (name, subnet.get("id")) {
                            subnet.insert(
                                "id",
                                Value::String(format!("{}/subnets/{name}", declared.id)),
                            );
                        }
                    }
                }
            }
        }
        "microsoft.storage/storageaccounts" => {
            let account = declared.name.to_ascii_lowercase();
            let mut endpoints = Object::new();
            for service in ["blob", "file", "queue", "table"] {
                endpoints.insert(
                    service,
                    Value::String(format!("https://{account}.{service}.core.windows.net/")),
                );
            }
            properties.insert("primaryEndpoints", Value::Object(endpoints));
        }
        _ => {}
    }
    properties.insert("provisioningState", Value::String("Succeeded".to_owned()));
}

/// The `providers/<namespace>/<type>/<name>/...` part of an ARM id.
struct ResourcePath {
    namespace: String,
    types: Vec<String>,
    names: Vec<String>,
}

impl ResourcePath {
    fn parse(id: &str) -> Option<ResourcePath> {
        let lower = id.to_ascii_lowercase();
        let at = lower.rfind("/providers/")?;
        let rest = &id[at + "/providers/".len()..];
        let mut segments = rest.split('/').filter(|segment| !segment.is_empty());
        let namespace = segments.next()?.to_owned();
        let mut types = Vec::new();
        let mut names = Vec::new();
        while let Some(resource_type) = segments.next() {
            types.push(resource_type.to_owned());
            names.push(segments.next()?.to_owned());
        }
        Some(ResourcePath {
            namespace,
            types,
            names,
        })
    }

    fn resource_type(&self) -> String {
        let mut full = self.namespace.clone();
        for resource_type in &self.types {
            full.push('/');
            full.push_str(resource_type);
        }
        full.to_ascii_lowercase()
    }

    fn name(&self, index: usize) -> Option<&str> {
        self.names.get(index).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_path_of_function() {
        let path = ResourcePath::parse(
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Web/sites/app/functions/fn",
        );
        let path = path.expect("id parses");
        assert_eq!(path.resource_type(), "microsoft.web/sites/functions");
        assert_eq!(path.name(0), Some("app"));
        assert_eq!(path.name(1), Some("fn"));
    }

    #[test]
    fn site_keys_stable_across_calls() {
        let provider = SimulatedProvider::new(KeyMode::Random);
        let first = provider.function_key("App", "fn");
        let keys = provider.site_keys("app", &["FN".to_owned()]);
        assert_eq!(
            keys.functions.get("fn").and_then(|k| k.get("default")),
            Some(&first)
        );
        assert_eq!(first.len(), 43);
    }

    #[test]
    fn deployment_values_only_when_deploying() {
        let offline = SimulatedProvider::new(KeyMode::Placeholder);
        assert!(offline.deployment_time().is_none());
        assert!(offline.new_guid().is_none());

        let deploying = SimulatedProvider::new(KeyMode::Random);
        assert!(deploying.deployment_time().is_some());
        let first = deploying.new_guid().expect("guid");
        let parsed = uuid_parts(&first);
        assert_eq!(parsed, [8, 4, 4, 4, 12], "{first}");
        assert_eq!(&first[14..15], "4", "{first}");
        assert!("89ab".contains(&first[19..20]), "{first}");
        assert_ne!(deploying.new_guid().expect("guid"), first);
    }

    fn uuid_parts(text: &str) -> Vec<usize> {
        text.split('-')
            .map(|part| {
                assert!(part
                    .bytes()
                    .all(|byte| matches!(byte, b'0'..=b'9' | b'a'..=b'f')));
                part.len()
            })
            .collect()
    }
}
