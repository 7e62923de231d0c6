//! Resource declarations of one template: copy loops expanded, child resources flattened
//! with composed types and names, and resource ids.

use std::sync::Arc;

use crate::call::Ctx;
use crate::error::{Error, ErrorKind};
use crate::eval::{node_site, CopyFrame, ScopeLevel, Template};
use crate::source::{path_index, path_key, Node, NodeKind};
use crate::value::Value;

/// Maximum number of instances one copy loop may create
/// (<https://learn.microsoft.com/azure/azure-resource-manager/templates/copy-resources>).
pub(crate) const MAX_COPY_COUNT: i64 = 800;

/// A resource instance as declared: identity known, body not yet evaluated.
#[derive(Debug)]
pub(crate) struct Decl {
    pub node: Arc<Node>,
    pub path: String,
    pub symbolic: Option<String>,
    pub copy_name: Option<String>,
    pub copy: Vec<CopyFrame>,
    pub resource_type: String,
    pub name: String,
    pub id: String,
    pub api_version: String,
    pub existing: bool,
    pub parent: Option<usize>,
    /// Instances of the previous batch of a serial copy loop, which this one waits for.
    pub serial_after: Vec<usize>,
}

impl Decl {
    pub fn is_deployment(&self) -> bool {
        self.resource_type
            .eq_ignore_ascii_case("Microsoft.Resources/deployments")
    }

    pub fn display_name(&self) -> String {
        self.symbolic.clone().unwrap_or_else(|| self.name.clone())
    }
}

/// Lists the resource instances of a template: copy loops expanded, child resources
/// flattened with composed types and names.
pub(crate) fn enumerate(ctx: &Ctx<'_>) -> Result<Vec<Decl>, Error> {
    let tpl = ctx.tpl;
    let mut decls = Vec::new();
    let Some(member) = tpl.root.member("resources") else {
        return Ok(decls);
    };
    let path = path_key(&tpl.path, &member.key.text);
    match &member.value.kind {
        NodeKind::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                declare(ctx, item, path_index(&path, index), None, None, &mut decls)?;
            }
        }
        NodeKind::Object(members) => {
            for entry in members {
                let entry_path = path_key(&path, &entry.key.text);
                let symbolic = Some(entry.key.text.clone());
                declare(ctx, &entry.value, entry_path, symbolic, None, &mut decls)?;
            }
        }
        _ => {
            let site = node_site(&tpl.source, &member.value, &path);
            return Err(site.error(
                ErrorKind::Template,
                "`resources` must be an array (or an object in languageVersion 2.0)".to_owned(),
                "write `\"resources\": [ ... ]`".to_owned(),
            ));
        }
    }
    Ok(decls)
}

fn declare(
    ctx: &Ctx<'_>,
    node: &Arc<Node>,
    path: String,
    symbolic: Option<String>,
    parent: Option<usize>,
    decls: &mut Vec<Decl>,
) -> Result<(), Error> {
    let source = &ctx.tpl.source;
    if node.as_object().is_none() {
        let site = node_site(source, node, &path);
        return Err(site.error(
            ErrorKind::Template,
            "a resource must be a JSON object".to_owned(),
            "write the resource as `{\"type\": ..., \"name\": ..., \"apiVersion\": ...}`"
                .to_owned(),
        ));
    }
    let Some(copy) = node.member("copy") else {
        return declare_instance(ctx, node, &path, symbolic, None, parent, decls);
    };

    let copy_path = path_key(&path, &copy.key.text);
    let name = match copy.value.get("name") {
        Some(name_node) => {
            let name_path = path_key(&copy_path, "name");
            text_of(ctx.eval_node(name_node, &name_path)?)
        }
        None => symbolic.clone().unwrap_or_default(),
    };
    let count = copy_count(ctx, &copy.value, &copy_path)?;
    let batch_size = serial_batch_size(ctx, &copy.value, &copy_path)?;

    // Declaration index of each instance; `None` when its condition is false.
    let mut instances: Vec<Option<usize>> = Vec::new();
    for index in 0..count {
        let first_declared = decls.len();
        let mut instance = ctx.clone();
        instance.copy.push(CopyFrame {
            name: Some(name.to_ascii_lowercase()),
            index,
            unnamed_target: true,
        });
        declare_instance(
            &instance,
            node,
            &path,
            symbolic.clone(),
            Some(name.clone()),
            parent,
            decls,
        )?;
        let declared = (decls.len() > first_declared).then_some(first_declared);
        instances.push(declared);

        // In serial mode each batch of `batchSize` instances waits for the batch before it
        // (https://learn.microsoft.com/azure/azure-resource-manager/templates/copy-resources#serial-or-parallel).
        if let (Some(batch), Some(current)) = (batch_size, declared) {
            let position = instances.len() - 1;
            let batch_start = (position / batch) * batch;
            let previous = batch_start.saturating_sub(batch)..batch_start;
            let waits_for: Vec<usize> = instances[previous].iter().flatten().copied().collect();
            decls[current].serial_after = waits_for;
        }
    }
    Ok(())
}

/// Returns the batch size of a `mode: serial` copy loop (default 1), or `None` when the loop
/// runs in parallel.
fn serial_batch_size(
    ctx: &Ctx<'_>,
    copy: &Arc<Node>,
    copy_path: &str,
) -> Result<Option<usize>, Error> {
    let mode = match copy.get("mode") {
        Some(mode) => ctx.eval_node(mode, &path_key(copy_path, "mode"))?,
        None => return Ok(None),
    };
    if !mode
        .as_str()
        .is_some_and(|mode| mode.eq_ignore_ascii_case("serial"))
    {
        return Ok(None);
    }
    let batch = match copy.get("batchSize") {
        Some(batch) => ctx.eval_node(batch, &path_key(copy_path, "batchSize"))?,
        None => Value::Int(1),
    };
    let size = batch
        .as_i64()
        .and_then(|size| usize::try_from(size).ok())
        .filter(|size| *size >= 1)
        .unwrap_or(1);
    Ok(Some(size))
}

/// Evaluates `count` of a copy object; it must be known before deployment.
pub(crate) fn copy_count(ctx: &Ctx<'_>, copy: &Arc<Node>, copy_path: &str) -> Result<i64, Error> {
    let source = &ctx.tpl.source;
    let Some(count_node) = copy.get("count") else {
        let site = node_site(source, copy, copy_path);
        return Err(site.error(
            ErrorKind::Template,
            "copy loop has no `count`".to_owned(),
            "add `\"count\": <number of instances>`".to_owned(),
        ));
    };
    let count_path = path_key(copy_path, "count");
    let site = node_site(source, count_node, &count_path);
    match ctx.eval_node(count_node, &count_path)? {
        Value::Int(count) if (0..=MAX_COPY_COUNT).contains(&count) => Ok(count),
        Value::Int(count) => Err(site.error(
            ErrorKind::Template,
            format!("copy count `{count}` is outside 0 to {MAX_COPY_COUNT}"),
            format!("use a count between 0 and {MAX_COPY_COUNT}"),
        )),
        Value::Unknown(unknown) => Err(site.error(
            ErrorKind::Template,
            format!(
                "copy count `{}` cannot be known before deployment",
                unknown.expression
            ),
            "compute the count from parameters and variables only".to_owned(),
        )),
        other => Err(site.error(
            ErrorKind::Template,
            format!("copy count must be an int, found {}", other.type_name()),
            "use an int such as `3` or `[length(parameters('names'))]`".to_owned(),
        )),
    }
}

fn text_of(value: Value) -> String {
    match value {
        Value::String(text) => text,
        Value::Unknown(unknown) => format!("[{}]", unknown.expression),
        other => crate::format::to_text(&other),
    }
}

fn optional_text(
    ctx: &Ctx<'_>,
    node: &Node,
    path: &str,
    key: &str,
) -> Result<Option<String>, Error> {
    match node.member(key) {
        Some(member) => {
            let member_path = path_key(path, &member.key.text);
            let value = ctx.eval_node(&member.value, &member_path)?;
            Ok(match value {
                Value::Null => None,
                other => Some(text_of(other)),
            })
        }
        None => Ok(None),
    }
}

fn declare_instance(
    ctx: &Ctx<'_>,
    node: &Arc<Node>,
    path: &str,
    symbolic: Option<String>,
    copy_name: Option<String>,
    parent: Option<usize>,
    decls: &mut Vec<Decl>,
) -> Result<(), Error> {
    let tpl = ctx.tpl;
    let site = node_site(&tpl.source, node, path);

    // A resource whose condition is false is not deployed, and the engine does not evaluate
    // its other properties (a conditional `existing` resource often has a name that only
    // evaluates when the condition holds). A condition that needs `reference()` fails here
    // and is evaluated again with the body.
    if let Some(condition) = node.member("condition") {
        let condition_path = path_key(path, &condition.key.text);
        if let Ok(Value::Bool(false)) = ctx.eval_node(&condition.value, &condition_path) {
            return Ok(());
        }
    }

    let Some(short_type) = optional_text(ctx, node, path, "type")? else {
        return Err(site.error(
            ErrorKind::Template,
            "resource has no `type`".to_owned(),
            "add the resource type, for example `\"type\": \"Microsoft.Web/sites\"`".to_owned(),
        ));
    };
    let Some(short_name) = optional_text(ctx, node, path, "name")? else {
        return Err(site.error(
            ErrorKind::Template,
            format!("resource of type `{short_type}` has no `name`"),
            "add a `name`".to_owned(),
        ));
    };
    let api_version = optional_text(ctx, node, path, "apiVersion")?.unwrap_or_default();

    let parent_decl = parent.and_then(|index| decls.get(index));
    let qualified = short_type.contains('/');
    let (resource_type, name) = match parent_decl {
        Some(parent) if !qualified => (
            format!("{}/{short_type}", parent.resource_type),
            format!("{}/{short_name}", parent.name),
        ),
        _ => (short_type.clone(), short_name.clone()),
    };

    let id = match parent_decl {
        Some(parent) if !qualified => format!("{}/{short_type}/{short_name}", parent.id),
        _ => {
            let subscription = optional_text(ctx, node, path, "subscriptionId")?;
            let resource_group = optional_text(ctx, node, path, "resourceGroup")?;
            let scope = optional_text(ctx, node, path, "scope")?;
            let prefix = scope_prefix(tpl, subscription.as_deref(), resource_group.as_deref());
            let prefix = match scope.filter(|scope| !scope.is_empty()) {
                Some(scope) if scope.starts_with('/') => scope.trim_end_matches('/').to_owned(),
                Some(scope) => format!("{}/providers/{scope}", rg_prefix(tpl)),
                None => prefix,
            };
            build_resource_id(&prefix, &resource_type, &name)
        }
    };

    let existing = matches!(
        node.get("existing").map(|flag| &flag.kind),
        Some(NodeKind::Bool(true))
    );
    decls.push(Decl {
        node: Arc::clone(node),
        path: path.to_owned(),
        symbolic,
        copy_name,
        copy: ctx.copy.clone(),
        resource_type,
        name,
        id,
        api_version,
        existing,
        parent,
        serial_after: Vec::new(),
    });
    let index = decls.len() - 1;

    if let Some(children) = node.member("resources") {
        let children_path = path_key(path, &children.key.text);
        if let Some(items) = children.value.as_array() {
            for (child_index, child) in items.iter().enumerate() {
                let child_path = path_index(&children_path, child_index);
                declare(ctx, child, child_path, None, Some(index), decls)?;
            }
        }
    }
    Ok(())
}

fn rg_prefix(tpl: &Template<'_>) -> String {
    format!(
        "/subscriptions/{}/resourceGroups/{}",
        tpl.scope.subscription_id, tpl.scope.resource_group
    )
}

/// Returns the id prefix of a resource. It is the template's scope, or the `subscriptionId`
/// and `resourceGroup` that a resource (usually a nested deployment) targets.
pub(crate) fn scope_prefix(
    tpl: &Template<'_>,
    subscription: Option<&str>,
    resource_group: Option<&str>,
) -> String {
    let subscription = subscription.unwrap_or(&tpl.scope.subscription_id);
    match (resource_group, tpl.level) {
        (Some(group), _) => format!("/subscriptions/{subscription}/resourceGroups/{group}"),
        (None, ScopeLevel::ResourceGroup) => format!(
            "/subscriptions/{subscription}/resourceGroups/{}",
            tpl.scope.resource_group
        ),
        (None, ScopeLevel::Subscription) => format!("/subscriptions/{subscription}"),
        (None, ScopeLevel::ManagementGroup | ScopeLevel::Tenant) => String::new(),
    }
}

/// Builds `<prefix>/providers/<ns>/<type1>/<name1>/<type2>/<name2>...` by zipping the type
/// segments with the `/`-separated name segments.
pub(crate) fn build_resource_id(prefix: &str, resource_type: &str, name: &str) -> String {
    // A name that is unknown offline is a residual expression in brackets; its slashes are
    // not name separators, so it follows the full type unsplit.
    if name.starts_with('[') && name.ends_with(']') {
        return format!("{prefix}/providers/{resource_type}/{name}");
    }
    let segments: Vec<&str> = resource_type.split('/').filter(|s| !s.is_empty()).collect();
    let names: Vec<&str> = name.split('/').filter(|s| !s.is_empty()).collect();
    let Some((namespace, types)) = segments.split_first() else {
        return format!("{prefix}/providers/{name}");
    };
    let mut id = format!("{prefix}/providers/{namespace}");
    for (index, segment) in types.iter().enumerate() {
        id.push('/');
        id.push_str(segment);
        if let Some(name) = names.get(index) {
            id.push('/');
            id.push_str(name);
        }
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_resource_id_cases() {
        let prefix = "/subscriptions/s/resourceGroups/rg";
        let cases = [
            ("Microsoft.Web/sites", "app", "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Web/sites/app"),
            (
                "Microsoft.Web/sites/config",
                "app/web",
                "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Web/sites/app/config/web",
            ),
            (
                "Microsoft.Network/virtualNetworks/",
                "vnet",
                "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/vnet",
            ),
            (
                "Microsoft.Web/sites/config",
                "[concat('a/', x())]",
                "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Web/sites/config/[concat('a/', x())]",
            ),
        ];
        for (resource_type, name, expected) in cases {
            assert_eq!(
                build_resource_id(prefix, resource_type, name),
                expected,
                "{name}"
            );
        }
    }
}
