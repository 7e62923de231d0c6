//! The resources of a plan with their planned values, their configuration expressions and the
//! attributes that are known only after apply, and how a reference between them resolves.
//!
//! Format reference: "JSON Output Format"
//! (<https://developer.hashicorp.com/terraform/internals/json-format>). `planned_values` leaves
//! out attributes that are unknown until apply; `resource_changes[].change.after_unknown` marks
//! them `true`, and `configuration` keeps the expression's `references`, such as
//! `azurerm_subnet.test1.id`.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value as Json};
use subnetlock_arm::SourceLocation;

/// Subscription used in synthetic ids when no id in the plan names one.
const DEFAULT_SUBSCRIPTION: &str = "00000000-0000-0000-0000-000000000000";

/// Maximum chain of references followed from one attribute, which also stops cycles.
const MAX_REFERENCE_DEPTH: usize = 6;

/// One step of a path into a resource's values: an attribute or a block index.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

/// The value of one attribute after resolution.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Resolved {
    Known(String),
    /// Known only after apply. The text is the reference, or `(known after apply)`.
    Unknown(String),
    Absent,
}

/// One resource instance of `planned_values`.
pub(crate) struct PlanResource<'a> {
    /// Full address, for example `module.web.azurerm_linux_web_app.this[0]`.
    pub address: String,
    /// Address prefix of the module that contains it, for example `module.web.`; empty in
    /// the root module.
    pub module_prefix: String,
    pub resource_type: String,
    /// The resource's name label in the configuration.
    pub label: String,
    pub values: &'a Map<String, Json>,
    /// `expressions` of the matching `configuration` resource.
    pub expressions: Option<&'a Map<String, Json>>,
    /// `change.after_unknown` of the matching `resource_changes` entry.
    pub after_unknown: Option<&'a Json>,
}

/// The parsed plan with its resources.
pub(crate) struct Plan<'a> {
    pub file: PathBuf,
    text: &'a str,
    pub resources: Vec<PlanResource<'a>>,
    subscription_id: String,
}

impl<'a> Plan<'a> {
    /// Indexes the resources of `planned_values.root_module` and its child modules.
    pub fn new(file: &Path, text: &'a str, root: &'a Json) -> Plan<'a> {
        let mut resources = Vec::new();
        if let Some(module) = root.pointer("/planned_values/root_module") {
            collect_module(module, "", root, &mut resources);
        }
        let subscription_id = resources
            .iter()
            .find_map(|resource| {
                let id = resource.values.get("id")?.as_str()?;
                let rest = id.strip_prefix("/subscriptions/")?;
                rest.split('/').next().map(str::to_owned)
            })
            .unwrap_or_else(|| DEFAULT_SUBSCRIPTION.to_owned());
        Plan {
            file: file.to_owned(),
            text,
            resources,
            subscription_id,
        }
    }

    /// Resolves a string attribute: its planned value, else the resource its configuration
    /// expression refers to, else unknown when Terraform marks it known after apply.
    pub fn string(&self, resource: &PlanResource, path: &[Step]) -> Resolved {
        self.string_at_depth(resource, path, 0)
    }

    /// Returns the ARM id of a resource: its planned `id`, or, when the resource is not created
    /// yet, an id built from its name and resource group the way Azure builds it.
    pub fn id_of(&self, resource: &PlanResource) -> Option<String> {
        self.id_at_depth(resource, 0)
    }

    /// Locates the resource in the plan file at the `"address"` key of its first entry, with
    /// `detail` appended to the address as the JSON path.
    pub fn locate(&self, resource: &PlanResource, detail: &str) -> SourceLocation {
        let offset = find_address(self.text, &resource.address).unwrap_or(0);
        let (line, column) = line_column(self.text, offset);
        let json_path = if detail.is_empty() {
            resource.address.clone()
        } else {
            format!("{}.{detail}", resource.address)
        };
        SourceLocation {
            file: self.file.clone(),
            line,
            column,
            json_path,
            offset,
            length: "\"address\"".len(),
        }
    }

    fn string_at_depth(&self, resource: &PlanResource, path: &[Step], depth: usize) -> Resolved {
        if let Some(text) = walk(resource.values, path).and_then(Json::as_str) {
            if !text.is_empty() {
                return Resolved::Known(text.to_owned());
            }
        }

        let references = references_at(resource, path);
        if depth < MAX_REFERENCE_DEPTH {
            if let Some(value) = references
                .iter()
                .find_map(|reference| self.reference_value(resource, reference, depth))
            {
                return Resolved::Known(value);
            }
        }
        let first_reference = references.first().copied();

        let unknown = resource
            .after_unknown
            .and_then(|marks| walk_json(marks, path))
            .and_then(Json::as_bool)
            == Some(true);
        match (unknown, first_reference) {
            (true, Some(reference)) => Resolved::Unknown(reference.to_owned()),
            (true, None) => Resolved::Unknown("(known after apply)".to_owned()),
            (false, _) => Resolved::Absent,
        }
    }

    /// Resolves every reference of the expression at `path`, for a list attribute such as `private_dns_zone_ids = [azurerm_private_dns_zone.web.id]`.
    pub fn referenced_values(&self, resource: &PlanResource, path: &[Step]) -> Vec<String> {
        let mut values = Vec::new();
        for reference in references_at(resource, path) {
            if let Some(value) = self.reference_value(resource, reference, 0) {
                if !values.contains(&value) {
                    values.push(value);
                }
            }
        }
        values
    }

    /// Resolves one reference to the target's id or to another string attribute of it.
    fn reference_value(
        &self,
        from: &PlanResource,
        reference: &str,
        depth: usize,
    ) -> Option<String> {
        let (target, attribute) = self.resolve_reference(from, reference)?;
        if attribute == "id" {
            return self.id_at_depth(target, depth + 1);
        }
        match self.string_at_depth(target, &[Step::Key(&attribute)], depth + 1) {
            Resolved::Known(text) => Some(text),
            _ => None,
        }
    }

    fn id_at_depth(&self, resource: &PlanResource, depth: usize) -> Option<String> {
        if let Some(id) = resource.values.get("id").and_then(Json::as_str) {
            if !id.is_empty() {
                return Some(id.to_owned());
            }
        }
        let known = |key: &str| match self.string_at_depth(resource, &[Step::Key(key)], depth) {
            Resolved::Known(text) => Some(text),
            _ => None,
        };
        let name = known("name").unwrap_or_else(|| resource.label.clone());
        let subscription = format!("/subscriptions/{}", self.subscription_id);
        if resource.resource_type == "azurerm_resource_group" {
            return Some(format!("{subscription}/resourceGroups/{name}"));
        }
        // NOTE: a resource group known only after apply gets a fixed placeholder name; ids
        // stay consistent inside the plan, which is all reference matching needs.
        let group = known("resource_group_name").unwrap_or_else(|| "unknown".to_owned());
        let base = format!("{subscription}/resourceGroups/{group}/providers");
        let id = match resource.resource_type.as_str() {
            "azurerm_virtual_network" => {
                format!("{base}/Microsoft.Network/virtualNetworks/{name}")
            }
            "azurerm_subnet" => {
                let vnet = known("virtual_network_name")?;
                format!("{base}/Microsoft.Network/virtualNetworks/{vnet}/subnets/{name}")
            }
            "azurerm_service_plan" | "azurerm_app_service_plan" => {
                format!("{base}/Microsoft.Web/serverFarms/{name}")
            }
            "azurerm_linux_web_app"
            | "azurerm_windows_web_app"
            | "azurerm_linux_function_app"
            | "azurerm_windows_function_app" => format!("{base}/Microsoft.Web/sites/{name}"),
            "azurerm_linux_web_app_slot"
            | "azurerm_windows_web_app_slot"
            | "azurerm_linux_function_app_slot"
            | "azurerm_windows_function_app_slot" => {
                let parent_key = crate::build::slot_parent_key(&resource.resource_type);
                let parent = match self.string_at_depth(resource, &[Step::Key(parent_key)], depth) {
                    Resolved::Known(parent) => parent,
                    _ => return None,
                };
                format!("{parent}/slots/{name}")
            }
            "azurerm_private_endpoint" => {
                format!("{base}/Microsoft.Network/privateEndpoints/{name}")
            }
            "azurerm_private_dns_zone" => {
                format!("{base}/Microsoft.Network/privateDnsZones/{name}")
            }
            _ => return None,
        };
        Some(id)
    }

    /// Finds the resource a reference such as `azurerm_subnet.test1.id` names, in the module
    /// of `from`, and the attribute it reads.
    fn resolve_reference(
        &self,
        from: &PlanResource,
        reference: &str,
    ) -> Option<(&PlanResource<'a>, String)> {
        let segments = split_reference(reference);
        let (base_length, rest) = match segments.first().map(String::as_str) {
            Some("data") => (3, segments.get(3..)?),
            Some("var" | "local" | "module" | "each" | "count" | "path" | "terraform" | "self") => {
                return None
            }
            Some(_) => (2, segments.get(2..)?),
            None => return None,
        };
        let attribute = rest.first()?.clone();
        let base = segments.get(..base_length)?.join(".");
        let address = format!("{}{base}", from.module_prefix);

        if let Some(found) = self.resources.iter().find(|r| r.address == address) {
            return Some((found, attribute));
        }
        // `azurerm_subnet.x.id` with `count` or `for_each` on `x`: usable only when one
        // instance is planned.
        let mut instances = self
            .resources
            .iter()
            .filter(|r| strip_instance_key(&r.address) == address);
        let first = instances.next()?;
        match instances.next() {
            Some(_) => None,
            None => Some((first, attribute)),
        }
    }
}

/// Returns the `references` of the configuration expression at `path`.
fn references_at<'r>(resource: &PlanResource<'r>, path: &[Step]) -> Vec<&'r str> {
    resource
        .expressions
        .and_then(|expressions| walk(expressions, path))
        .and_then(|expression| expression.get("references"))
        .and_then(Json::as_array)
        .map(|references| references.iter().filter_map(Json::as_str).collect())
        .unwrap_or_default()
}

/// Finds the configuration module that a planned module's resources come from.
fn config_module<'j>(root: &'j Json, module_prefix: &str) -> Option<&'j Json> {
    let mut module = root.pointer("/configuration/root_module")?;
    for segment in split_reference(module_prefix.trim_end_matches('.')) {
        if segment == "module" || segment.is_empty() {
            continue;
        }
        let call = strip_instance_key(&segment);
        module = module.get("module_calls")?.get(call)?.get("module")?;
    }
    Some(module)
}

fn collect_module<'j>(
    module: &'j Json,
    module_prefix: &str,
    root: &'j Json,
    out: &mut Vec<PlanResource<'j>>,
) {
    let configuration = config_module(root, module_prefix);
    let resources = module
        .get("resources")
        .and_then(Json::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    for resource in resources {
        let Some(resource) = read_resource(resource, module_prefix, configuration, root) else {
            continue;
        };
        out.push(resource);
    }

    let children = module
        .get("child_modules")
        .and_then(Json::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    for child in children {
        let Some(address) = child.get("address").and_then(Json::as_str) else {
            continue;
        };
        collect_module(child, &format!("{address}."), root, out);
    }
}

fn read_resource<'j>(
    resource: &'j Json,
    module_prefix: &str,
    configuration: Option<&'j Json>,
    root: &'j Json,
) -> Option<PlanResource<'j>> {
    let address = resource.get("address")?.as_str()?.to_owned();
    let resource_type = resource.get("type")?.as_str()?.to_owned();
    let label = resource.get("name")?.as_str()?.to_owned();
    let values = resource.get("values")?.as_object()?;

    // Configuration addresses are relative to their module and carry no instance key.
    let local_address = strip_instance_key(address.strip_prefix(module_prefix).unwrap_or(&address));
    let expressions = configuration
        .and_then(|module| module.get("resources"))
        .and_then(Json::as_array)
        .and_then(|resources| {
            resources.iter().find(|candidate| {
                candidate.get("address").and_then(Json::as_str) == Some(local_address)
            })
        })
        .and_then(|candidate| candidate.get("expressions"))
        .and_then(Json::as_object);
    let after_unknown = root
        .get("resource_changes")
        .and_then(Json::as_array)
        .and_then(|changes| {
            changes.iter().find(|change| {
                change.get("address").and_then(Json::as_str) == Some(address.as_str())
            })
        })
        .and_then(|change| change.pointer("/change/after_unknown"));

    Some(PlanResource {
        address,
        module_prefix: module_prefix.to_owned(),
        resource_type,
        label,
        values,
        expressions,
        after_unknown,
    })
}

/// Follows `path` into an object of values or expressions.
pub(crate) fn walk<'j>(object: &'j Map<String, Json>, path: &[Step]) -> Option<&'j Json> {
    let (first, rest) = path.split_first()?;
    let Step::Key(key) = first else {
        return None;
    };
    walk_json(object.get(*key)?, rest)
}

fn walk_json<'j>(value: &'j Json, path: &[Step]) -> Option<&'j Json> {
    let mut current = value;
    for step in path {
        current = match step {
            Step::Key(key) => current.get(*key)?,
            Step::Index(index) => current.get(*index)?,
        };
    }
    Some(current)
}

/// Splits a reference or address at dots outside brackets and quotes:
/// `module.a["x.y"].azurerm_subnet.s.id` has five segments.
fn split_reference(reference: &str) -> Vec<String> {
    let mut segments = Vec::new();
    let mut current = String::new();
    let mut depth = 0usize;
    let mut in_quotes = false;
    for character in reference.chars() {
        match character {
            '"' => in_quotes = !in_quotes,
            '[' if !in_quotes => depth += 1,
            ']' if !in_quotes => depth = depth.saturating_sub(1),
            '.' if !in_quotes && depth == 0 => {
                segments.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(character);
    }
    segments.push(current);
    segments
}

/// `azurerm_subnet.x[0]` and `azurerm_subnet.x["a"]` become `azurerm_subnet.x`.
fn strip_instance_key(address: &str) -> &str {
    match address.strip_suffix(']').and_then(|rest| rest.rfind('[')) {
        Some(open) => &address[..open],
        None => address,
    }
}

/// Byte offset of the first `"address": "<address>"` pair in the plan text.
fn find_address(text: &str, address: &str) -> Option<usize> {
    let literal = serde_json::to_string(address).ok()?;
    let key = "\"address\"";
    let mut from = 0;
    while let Some(found) = text.get(from..)?.find(key) {
        let start = from + found;
        let after_key = text.get(start + key.len()..)?.trim_start();
        if let Some(after_colon) = after_key.strip_prefix(':') {
            if after_colon.trim_start().starts_with(&literal) {
                return Some(start);
            }
        }
        from = start + key.len();
    }
    None
}

/// 1-based line and column (in characters) of a byte offset. A leading byte order mark takes
/// no column, because editors do not show it.
pub(crate) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let first_line_start = text.len() - crate::without_byte_order_mark(text).len();
    let line_start = before
        .rfind('\n')
        .map_or(0, |at| at + 1)
        .max(first_line_start);
    let column = before
        .get(line_start..)
        .map(|s| s.chars().count())
        .unwrap_or(0)
        + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_reference_cases() {
        let cases = [
            (
                "azurerm_subnet.test1.id",
                vec!["azurerm_subnet", "test1", "id"],
            ),
            (
                "module.a[\"x.y\"].azurerm_subnet.s",
                vec!["module", "a[\"x.y\"]", "azurerm_subnet", "s"],
            ),
            (
                "data.azurerm_subnet.s[0].id",
                vec!["data", "azurerm_subnet", "s[0]", "id"],
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(split_reference(text), expected, "{text}");
        }
    }

    #[test]
    fn strip_instance_key_cases() {
        let cases = [
            ("azurerm_subnet.x[0]", "azurerm_subnet.x"),
            ("azurerm_subnet.x[\"a\"]", "azurerm_subnet.x"),
            ("azurerm_subnet.x", "azurerm_subnet.x"),
        ];
        for (text, expected) in cases {
            assert_eq!(strip_instance_key(text), expected, "{text}");
        }
    }

    #[test]
    fn find_address_compact_and_pretty() {
        let compact = r#"{"address":"azurerm_subnet.a","x":{"address": "azurerm_subnet.b"}}"#;
        assert_eq!(find_address(compact, "azurerm_subnet.a"), Some(1));
        assert_eq!(find_address(compact, "azurerm_subnet.b"), Some(35));
        assert_eq!(find_address(compact, "azurerm_subnet.c"), None);
    }

    #[test]
    fn line_column_cases() {
        let text = "ab\ncd\nef";
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, 4), (2, 2));
        assert_eq!(line_column(text, 6), (3, 1));
    }
}
