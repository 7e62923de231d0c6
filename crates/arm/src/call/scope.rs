//! Functions that read the deployment scope: `copyIndex`, `resourceGroup`, `subscription`,
//! `tenant`, `deployment`, `environment` and the `*resourceId` family.

use super::*;

impl Ctx<'_> {
    pub(super) fn fn_copy_index(&self, arguments: &Args<'_>) -> Result<Value, FnError> {
        arguments.between(0, 2)?;
        let (loop_name, offset) = match arguments.args {
            [] => (None, 0),
            [Value::Int(offset)] => (None, *offset),
            [Value::String(name)] => (Some(name.as_str()), 0),
            [Value::String(name), Value::Int(offset)] => (Some(name.as_str()), *offset),
            [first, ..] if !matches!(first, Value::String(_) | Value::Int(_)) => {
                return Err(arguments.type_error(0, "a loop name or an offset", first))
            }
            [_, second] => return Err(arguments.type_error(1, "an int offset", second)),
            _ => return Err(arguments.type_error(0, "a loop name or an offset", &Value::Null)),
        };
        let frame = match loop_name {
            Some(name) => {
                let name = name.to_ascii_lowercase();
                self.copy
                    .iter()
                    .rev()
                    .find(|frame| frame.name.as_deref() == Some(name.as_str()))
            }
            None => self
                .copy
                .iter()
                .rev()
                .find(|frame| frame.unnamed_target)
                .or_else(|| self.copy.last()),
        };
        match frame {
            Some(frame) => frame
                .index
                .checked_add(offset)
                .map(Value::Int)
                .ok_or_else(|| {
                    FnError::new("`copyIndex` offset overflows", "use a smaller offset")
                }),
            None => Err(FnError::new(
                match loop_name {
                    Some(name) => {
                        format!("there is no copy loop named `{name}` around this `copyIndex`")
                    }
                    None => "`copyIndex()` is only valid inside a copy loop".to_owned(),
                },
                "use `copyIndex()` inside a resource, property, variable or output `copy`",
            )),
        }
    }

    pub(super) fn resource_group(&self) -> Value {
        let scope = &self.tpl.scope;
        let mut properties = Object::new();
        properties.insert("provisioningState", Value::String("Succeeded".to_owned()));
        let mut group = Object::new();
        group.insert(
            "id",
            Value::String(format!(
                "/subscriptions/{}/resourceGroups/{}",
                scope.subscription_id, scope.resource_group
            )),
        );
        group.insert("name", Value::String(scope.resource_group.clone()));
        group.insert(
            "type",
            Value::String("Microsoft.Resources/resourceGroups".to_owned()),
        );
        group.insert("location", Value::String(scope.location.clone()));
        group.insert("properties", Value::Object(properties));
        Value::Object(group)
    }

    pub(super) fn subscription(&self) -> Value {
        let scope = &self.tpl.scope;
        let mut subscription = Object::new();
        subscription.insert(
            "id",
            Value::String(format!("/subscriptions/{}", scope.subscription_id)),
        );
        subscription.insert(
            "subscriptionId",
            Value::String(scope.subscription_id.clone()),
        );
        subscription.insert("tenantId", Value::String(scope.tenant_id.clone()));
        subscription.insert(
            "displayName",
            unknown(
                "subscription().displayName".to_owned(),
                UnknownCause::DeploymentMetadata,
            ),
        );
        Value::Object(subscription)
    }

    pub(super) fn tenant(&self) -> Value {
        let scope = &self.tpl.scope;
        let mut tenant = Object::new();
        tenant.insert("id", Value::String(format!("/tenants/{}", scope.tenant_id)));
        tenant.insert("tenantId", Value::String(scope.tenant_id.clone()));
        tenant.insert(
            "countryCode",
            unknown(
                "tenant().countryCode".to_owned(),
                UnknownCause::DeploymentMetadata,
            ),
        );
        tenant.insert(
            "displayName",
            unknown(
                "tenant().displayName".to_owned(),
                UnknownCause::DeploymentMetadata,
            ),
        );
        Value::Object(tenant)
    }

    pub(super) fn deployment(&self) -> Value {
        self.tpl
            .deployment_value
            .get_or_init(|| {
                // NOTE: the engine returns the whole template here; this copies only the
                // header sections, which is what templates read in practice.
                let mut template = Object::new();
                for key in ["$schema", "contentVersion", "languageVersion", "metadata"] {
                    if let Some(node) = self.tpl.root.get(key) {
                        template.insert(key, literal_value(node));
                    }
                }
                let mut properties = Object::new();
                // A template deployed from a URI has `templateLink: {uri}`, one deployed from
                // a local file has none ("Deployment functions for ARM templates", Microsoft
                // Learn). Offline the origin is not known, so the link stays unknown rather
                // than missing, unless an artifacts folder stands for it.
                let template_link = match &self.tpl.template_link {
                    Some(uri) => {
                        let mut link = Object::new();
                        link.insert("uri", Value::String(uri.clone()));
                        Value::Object(link)
                    }
                    None => unknown(
                        "deployment().properties.templateLink".to_owned(),
                        UnknownCause::DeploymentMetadata,
                    ),
                };
                properties.insert("templateLink", template_link);
                properties.insert("template", Value::Object(template));
                properties.insert(
                    "templateHash",
                    unknown(
                        "deployment().properties.templateHash".to_owned(),
                        UnknownCause::DeploymentMetadata,
                    ),
                );
                properties.insert("parameters", Value::Object(Object::new()));
                properties.insert("mode", Value::String("Incremental".to_owned()));
                properties.insert("provisioningState", Value::String("Accepted".to_owned()));
                let mut deployment = Object::new();
                deployment.insert(
                    "name",
                    Value::String(self.tpl.scope.deployment_name.clone()),
                );
                deployment.insert("properties", Value::Object(properties));
                if self.tpl.level != crate::eval::ScopeLevel::ResourceGroup {
                    deployment.insert("location", Value::String(self.tpl.scope.location.clone()));
                }
                Value::Object(deployment)
            })
            .clone()
    }

    pub(super) fn fn_resource_id(
        &self,
        name: &str,
        arguments: &Args<'_>,
    ) -> Result<Value, FnError> {
        let strings: Vec<&str> = (0..arguments.args.len())
            .map(|index| arguments.str(index))
            .collect::<Result<_, _>>()?;
        let scope = &self.tpl.scope;
        let (prefix, rest) = match name {
            "extensionresourceid" => {
                arguments.between(3, usize::MAX)?;
                (strings[0].trim_end_matches('/').to_owned(), &strings[1..])
            }
            "tenantresourceid" => (String::new(), &strings[..]),
            _ => {
                let type_position = strings
                    .iter()
                    .position(|text| text.contains('/'))
                    .ok_or_else(|| {
                        FnError::new(
                            format!(
                                "`{}` needs a resource type such as `Microsoft.Web/sites`",
                                arguments.name
                            ),
                            "pass the resource type, then one name per type segment",
                        )
                    })?;
                let leading = &strings[..type_position];
                let prefix = match (name, leading) {
                    ("resourceid", []) => scope_prefix(self.tpl, None, None),
                    ("resourceid", [group]) => scope_prefix(self.tpl, None, Some(group)),
                    ("resourceid", [subscription, group]) => {
                        scope_prefix(self.tpl, Some(subscription), Some(group))
                    }
                    ("subscriptionresourceid", []) => {
                        format!("/subscriptions/{}", scope.subscription_id)
                    }
                    ("subscriptionresourceid", [subscription]) => {
                        format!("/subscriptions/{subscription}")
                    }
                    // NOTE: the root management group's name equals the tenant id; other
                    // management groups must be named explicitly.
                    ("managementgroupresourceid", []) => format!(
                        "/providers/Microsoft.Management/managementGroups/{}",
                        scope.tenant_id
                    ),
                    ("managementgroupresourceid", [group]) => {
                        format!("/providers/Microsoft.Management/managementGroups/{group}")
                    }
                    _ => return Err(FnError::new(
                        format!(
                            "`{}` got too many arguments before the resource type",
                            arguments.name
                        ),
                        "pass at most the subscription id and resource group name before the type",
                    )),
                };
                (prefix, &strings[type_position..])
            }
        };
        let Some((resource_type, names)) = rest.split_first() else {
            return Err(FnError::new(
                format!("`{}` needs a resource type and names", arguments.name),
                "pass the resource type, then one name per type segment",
            ));
        };
        let type_segments = resource_type
            .split('/')
            .filter(|segment| !segment.is_empty())
            .count();
        let name_segments: Vec<&str> = names
            .iter()
            .flat_map(|name| name.split('/'))
            .filter(|segment| !segment.is_empty())
            .collect();
        if type_segments < 2 || name_segments.len() != type_segments - 1 {
            return Err(FnError::new(
                format!(
                    "resource type `{resource_type}` needs {} name(s), but {} were given",
                    type_segments.saturating_sub(1),
                    name_segments.len()
                ),
                "pass one name for each type segment after the namespace",
            ));
        }
        Ok(Value::String(build_resource_id(
            &prefix,
            resource_type,
            &name_segments.join("/"),
        )))
    }
}

/// `environment()` for the public Azure cloud
/// (<https://learn.microsoft.com/azure/azure-resource-manager/templates/template-functions-deployment#environment>).
pub(super) fn environment() -> Value {
    let text = |value: &str| Value::String(value.to_owned());
    let mut authentication = Object::new();
    authentication.insert("loginEndpoint", text("https://login.microsoftonline.com/"));
    authentication.insert(
        "audiences",
        Value::Array(vec![
            text("https://management.core.windows.net/"),
            text("https://management.azure.com/"),
        ]),
    );
    authentication.insert("tenant", text("common"));
    authentication.insert("identityProvider", text("AAD"));
    let mut suffixes = Object::new();
    for (key, value) in [
        ("acrLoginServer", ".azurecr.io"),
        (
            "azureDatalakeAnalyticsCatalogAndJob",
            "azuredatalakeanalytics.net",
        ),
        ("azureDatalakeStoreFileSystem", "azuredatalakestore.net"),
        ("azureFrontDoorEndpointSuffix", "azurefd.net"),
        ("keyvaultDns", ".vault.azure.net"),
        ("sqlServerHostname", ".database.windows.net"),
        ("storage", "core.windows.net"),
    ] {
        suffixes.insert(key, text(value));
    }
    let mut environment = Object::new();
    for (key, value) in [
        ("name", "AzureCloud"),
        ("gallery", "https://gallery.azure.com/"),
        ("graph", "https://graph.windows.net/"),
        ("portal", "https://portal.azure.com"),
        ("graphAudience", "https://graph.windows.net/"),
        ("activeDirectoryDataLake", "https://datalake.azure.net/"),
        ("batch", "https://batch.core.windows.net/"),
        ("media", "https://rest.media.azure.net"),
        ("sqlManagement", "https://management.core.windows.net:8443/"),
        (
            "vmImageAliasDoc",
            "https://raw.githubusercontent.com/Azure/azure-rest-api-specs/master/arm-compute/quickstart-templates/aliases.json",
        ),
        ("resourceManager", "https://management.azure.com/"),
    ] {
        environment.insert(key, text(value));
    }
    environment.insert("authentication", Value::Object(authentication));
    environment.insert("suffixes", Value::Object(suffixes));
    Value::Object(environment)
}
