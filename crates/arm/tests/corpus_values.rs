//! Values of corpus templates, worked out by hand from the template text and the function
//! definitions on Microsoft Learn, then compared with what the evaluator yields.
//!
//! Scope of every deployment: subscription `00000000-0000-0000-0000-000000000000`, resource
//! group `subnetlock`, location `westeurope`, and the template's `.parameters.json` when the
//! corpus ships one. `uniqueString()` values were computed with a separate Python port of the
//! engine's MurmurHash64 and base32 steps, checked against real-engine vectors such as
//! `uniqueString('snap','crackle','pop')` = `byghxckddilkc` (Azure/bicep
//! `FunctionResolverTests.cs`); each comment names the exact input.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use subnetlock_arm::{
    evaluate_file, Deployment, EvalOptions, OfflineProvider, Parameters, Resource, Scope,
    UnknownCause, Value,
};

/// `resourceGroup().id` for the test scope.
const RG: &str = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/subnetlock";

/// `uniqueString('/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/subnetlock')`,
/// the usual `uniqueString(resourceGroup().id)`.
const RG_HASH: &str = "yobmxbvmtplck";

/// Finds `shared/corpus/arm` by walking up from the crate directory.
fn corpus_dir() -> Option<PathBuf> {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|ancestor| ancestor.join("shared/corpus/arm"))
        .find(|candidate| candidate.is_dir())
}

/// Evaluates a corpus template with its parameters file, or returns `None` (with a printed
/// reason) when the corpus is not checked out next to the workspace.
fn evaluate(file_name: &str) -> Option<Deployment> {
    evaluate_with(file_name, &[])
}

/// [`evaluate`] plus parameters the template requires but neither defaults nor gets from a
/// parameters file.
fn evaluate_with(file_name: &str, extra: &[(&str, &str)]) -> Option<Deployment> {
    let Some(dir) = corpus_dir() else {
        eprintln!("skipped: shared/corpus/arm not found above the crate directory");
        return None;
    };
    let template = dir.join(file_name);
    let stem = file_name.trim_end_matches(".json");
    let parameters_path = dir.join(format!("{stem}.parameters.json"));
    let mut parameters = if parameters_path.is_file() {
        Parameters::from_file(&parameters_path).unwrap()
    } else {
        Parameters::new()
    };
    for (name, value) in extra {
        parameters.set(name, Value::String((*value).to_owned()));
    }
    let options = EvalOptions {
        scope: Scope::default(),
        parameters,
    };
    Some(evaluate_file(&template, &options, &OfflineProvider).unwrap())
}

fn find<'d>(deployment: &'d Deployment, resource_type: &str, name: &str) -> &'d Resource {
    deployment
        .resources
        .iter()
        .find(|resource| resource.resource_type == resource_type && resource.name == name)
        .unwrap_or_else(|| {
            let present: Vec<String> = deployment
                .resources
                .iter()
                .map(|resource| format!("{} {}", resource.resource_type, resource.name))
                .collect();
            panic!(
                "no {resource_type} {name}; present:\n{}",
                present.join("\n")
            )
        })
}

/// Returns the value at `path` in the resource body. An array index is written as a number.
fn at<'r>(resource: &'r Resource, path: &[&str]) -> &'r Value {
    path.iter()
        .try_fold(&resource.body, |value, step| match step.parse::<usize>() {
            Ok(index) => value.as_array().and_then(|items| items.get(index)),
            Err(_) => value.get(step),
        })
        .unwrap_or_else(|| panic!("no {path:?} in {}", resource.id))
}

fn text<'r>(resource: &'r Resource, path: &[&str]) -> &'r str {
    at(resource, path)
        .as_str()
        .unwrap_or_else(|| panic!("{path:?} of {} is not a string", resource.id))
}

fn flag(resource: &Resource, path: &[&str]) -> bool {
    at(resource, path)
        .as_bool()
        .unwrap_or_else(|| panic!("{path:?} of {} is not a bool", resource.id))
}

/// Builds what `resourceId()` returns in the test resource group for `Namespace/type/name`.
fn id(provider_path: &str) -> String {
    format!("{RG}/providers/{provider_path}")
}

/// Returns the value of the app setting `name` in `properties.siteConfig.appSettings`.
fn app_setting<'r>(site: &'r Resource, name: &str) -> &'r Value {
    at(site, &["properties", "siteConfig", "appSettings"])
        .as_array()
        .unwrap()
        .iter()
        .find(|setting| setting.get("name").and_then(Value::as_str) == Some(name))
        .and_then(|setting| setting.get("value"))
        .unwrap_or_else(|| panic!("no app setting {name} on {}", site.id))
}

/// Returns the cause and the secret flag of an unknown value, or `None` for a known one.
fn unknown_cause(value: &Value) -> Option<(UnknownCause, bool)> {
    match value {
        Value::Unknown(unknown) => Some((unknown.cause.clone(), unknown.secret)),
        _ => None,
    }
}

#[test]
fn qs_appsvc_regional_vnet_integration() {
    let Some(deployment) = evaluate("qs-appsvc-regional-vnet-integration.json") else {
        return;
    };
    assert_eq!(deployment.resources.len(), 3);

    // appName = uniqueString(resourceGroup().id); plan = appName +
    // uniqueString('00000000-0000-0000-0000-000000000000') = `qhib2c2cutqra`.
    let plan = find(
        &deployment,
        "Microsoft.Web/serverfarms",
        "yobmxbvmtplckqhib2c2cutqra",
    );
    assert_eq!(
        plan.id,
        id("Microsoft.Web/serverfarms/yobmxbvmtplckqhib2c2cutqra")
    );

    // vnetName = format('{0}vnet', appName), subnetName = format('{0}sn', appName).
    let vnet = find(
        &deployment,
        "Microsoft.Network/virtualNetworks",
        "yobmxbvmtplckvnet",
    );
    assert_eq!(
        vnet.id,
        id("Microsoft.Network/virtualNetworks/yobmxbvmtplckvnet")
    );
    let subnet = ["properties", "subnets", "0"];
    assert_eq!(
        text(vnet, &[&subnet[..], &["name"]].concat()),
        "yobmxbvmtplcksn"
    );
    assert_eq!(
        text(
            vnet,
            &[&subnet[..], &["properties", "addressPrefix"]].concat()
        ),
        "10.0.0.0/24"
    );
    assert_eq!(
        text(
            vnet,
            &[
                &subnet[..],
                &[
                    "properties",
                    "delegations",
                    "0",
                    "properties",
                    "serviceName"
                ]
            ]
            .concat()
        ),
        "Microsoft.Web/serverFarms"
    );

    let site = find(&deployment, "Microsoft.Web/sites", RG_HASH);
    assert_eq!(site.id, id("Microsoft.Web/sites/yobmxbvmtplck"));
    assert_eq!(
        text(site, &["properties", "serverFarmId"]),
        id("Microsoft.Web/serverfarms/yobmxbvmtplckqhib2c2cutqra")
    );
    assert!(flag(
        site,
        &["properties", "siteConfig", "vnetRouteAllEnabled"]
    ));
    assert_eq!(text(site, &["location"]), "westeurope");

    // `reference(vnet).subnets[0].id`: the declared subnet has no `id` (ARM adds it at
    // deployment), so the offline value is a reference unknown that keeps the expression.
    let subnet_id = at(site, &["properties", "virtualNetworkSubnetId"]);
    assert_eq!(
        unknown_cause(subnet_id),
        Some((UnknownCause::Reference, false))
    );
    let Value::Unknown(unknown) = subnet_id else {
        unreachable!()
    };
    assert_eq!(
        unknown.expression,
        format!(
            "reference('{}').subnets[0].id",
            id("Microsoft.Network/virtualNetworks/yobmxbvmtplckvnet")
        )
    );
}

#[test]
fn qs_func_vnet_integration() {
    let Some(deployment) = evaluate("qs-func-vnet-integration.json") else {
        return;
    };
    assert_eq!(deployment.resources.len(), 6);

    // functionAppName = format('func-{0}', uniqueString(resourceGroup().id)); vnetName and
    // subnetName use the same hash with `vnet-` and `subnet-`.
    let vnet = find(
        &deployment,
        "Microsoft.Network/virtualNetworks",
        "vnet-yobmxbvmtplck",
    );
    assert_eq!(
        text(vnet, &["properties", "subnets", "0", "name"]),
        "subnet-yobmxbvmtplck"
    );
    assert_eq!(
        text(
            vnet,
            &["properties", "subnets", "0", "properties", "addressPrefix"]
        ),
        "10.0.0.0/24"
    );
    assert_eq!(
        text(
            vnet,
            &[
                "properties",
                "subnets",
                "0",
                "properties",
                "delegations",
                "0",
                "properties",
                "serviceName"
            ]
        ),
        "Microsoft.Web/serverFarms"
    );

    // storageAccountName = format('{0}azfunctions', uniqueString(resourceGroup().id)).
    let storage = find(
        &deployment,
        "Microsoft.Storage/storageAccounts",
        "yobmxbvmtplckazfunctions",
    );
    assert_eq!(text(storage, &["sku", "name"]), "Standard_LRS");

    // functionPlanOS defaults to Windows, so isReserved = equals('Windows', 'Linux') = false:
    // kind is `functionapp` and linuxFxVersion is json('null').
    let site = find(&deployment, "Microsoft.Web/sites", "func-yobmxbvmtplck");
    assert_eq!(site.id, id("Microsoft.Web/sites/func-yobmxbvmtplck"));
    assert_eq!(text(site, &["kind"]), "functionapp");
    assert_eq!(at(site, &["properties", "reserved"]), &Value::Bool(false));
    assert_eq!(
        at(site, &["properties", "siteConfig", "linuxFxVersion"]),
        &Value::Null
    );
    assert_eq!(
        app_setting(site, "WEBSITE_CONTENTSHARE"),
        &Value::String("func-yobmxbvmtplck".to_owned())
    );
    // listKeys() has no offline value, so the connection string is a secret unknown.
    assert_eq!(
        unknown_cause(app_setting(site, "AzureWebJobsStorage")),
        Some((UnknownCause::List, true))
    );

    // name = format('{0}/{1}', functionAppName, 'virtualNetwork'); the subnet id is
    // resourceId('Microsoft.Network/virtualNetworks/subnets', vnetName, subnetName).
    let network = find(
        &deployment,
        "Microsoft.Web/sites/networkConfig",
        "func-yobmxbvmtplck/virtualNetwork",
    );
    assert_eq!(
        network.id,
        id("Microsoft.Web/sites/func-yobmxbvmtplck/networkConfig/virtualNetwork")
    );
    assert_eq!(
        text(network, &["properties", "subnetResourceId"]),
        id("Microsoft.Network/virtualNetworks/vnet-yobmxbvmtplck/subnets/subnet-yobmxbvmtplck")
    );
    assert!(flag(network, &["properties", "swiftSupported"]));
}

#[test]
fn qs_func_premium_vnet_integration() {
    let Some(deployment) = evaluate("qs-func-premium-vnet-integration.json") else {
        return;
    };

    // resourceBaseName = uniqueString(resourceGroup().id); subnetName is the literal `default`.
    let vnet = find(
        &deployment,
        "Microsoft.Network/virtualNetworks",
        "vnet-yobmxbvmtplck",
    );
    assert_eq!(
        text(vnet, &["properties", "subnets", "0", "name"]),
        "default"
    );
    assert_eq!(
        text(
            vnet,
            &["properties", "subnets", "0", "properties", "addressPrefix"]
        ),
        "10.0.0.0/24"
    );

    let site = find(&deployment, "Microsoft.Web/sites", "func-yobmxbvmtplck");
    assert_eq!(
        text(site, &["properties", "virtualNetworkSubnetId"]),
        id("Microsoft.Network/virtualNetworks/vnet-yobmxbvmtplck/subnets/default")
    );
    assert_eq!(
        text(site, &["properties", "serverFarmId"]),
        id("Microsoft.Web/serverfarms/asp-yobmxbvmtplck")
    );
    assert!(flag(site, &["properties", "httpsOnly"]));

    // The `web` config is a top-level resource named format('{0}/{1}', 'func-<hash>', 'web').
    let config = find(
        &deployment,
        "Microsoft.Web/sites/config",
        "func-yobmxbvmtplck/web",
    );
    assert_eq!(
        config.id,
        id("Microsoft.Web/sites/func-yobmxbvmtplck/config/web")
    );
    assert_eq!(text(config, &["properties", "ftpsState"]), "Disabled");

    find(
        &deployment,
        "Microsoft.Storage/storageAccounts",
        "styobmxbvmtplck",
    );
}

#[test]
fn qs2021_func_premium_vnet_integration() {
    let Some(deployment) = evaluate("qs2021-func-premium-vnet-integration.json") else {
        return;
    };

    // vnetName, subnetName and appInsightsLocation come from the parameters file.
    let vnet = find(
        &deployment,
        "Microsoft.Network/virtualNetworks",
        "GEN-VNET-NAME",
    );
    assert_eq!(
        text(vnet, &["properties", "subnets", "0", "name"]),
        "GEN-VNET-SUBNET1-NAME"
    );
    assert_eq!(
        at(
            vnet,
            &[
                "properties",
                "subnets",
                "0",
                "properties",
                "delegations",
                "0",
                "properties",
                "actions"
            ]
        ),
        &Value::Array(vec![Value::String(
            "Microsoft.Network/virtualNetworks/subnets/action".to_owned()
        )])
    );

    // appName = concat('fnapp', uniqueString(resourceGroup().id)).
    let insights = find(
        &deployment,
        "Microsoft.Insights/components",
        "fnappyobmxbvmtplck",
    );
    assert_eq!(text(insights, &["location"]), "eastus");

    // storageAccountName = concat(uniquestring(resourceGroup().id), 'azfunctions'); the
    // lower-case function name resolves because function names ignore case.
    find(
        &deployment,
        "Microsoft.Storage/storageAccounts",
        "yobmxbvmtplckazfunctions",
    );

    // A child resource of the site: type `networkConfig` joins the parent type and the name
    // `virtualNetwork` joins the parent name.
    let network = find(
        &deployment,
        "Microsoft.Web/sites/networkConfig",
        "fnappyobmxbvmtplck/virtualNetwork",
    );
    assert_eq!(
        network.id,
        id("Microsoft.Web/sites/fnappyobmxbvmtplck/networkConfig/virtualNetwork")
    );
    assert_eq!(
        text(network, &["properties", "subnetResourceId"]),
        id("Microsoft.Network/virtualNetworks/GEN-VNET-NAME/subnets/GEN-VNET-SUBNET1-NAME")
    );
    assert!(flag(network, &["properties", "isSwift"]));
}

/// Replaces every unknown by its cause, so that two templates that read the same runtime
/// value through differently written expressions compare equal.
fn without_expressions(value: &Value) -> Value {
    match value {
        Value::Unknown(unknown) => Value::String(format!("unknown {:?}", unknown.cause)),
        Value::Array(items) => Value::Array(items.iter().map(without_expressions).collect()),
        Value::Object(object) => {
            let mut copy = subnetlock_arm::Object::new();
            for (key, item) in object.iter() {
                copy.insert(key.clone(), without_expressions(item));
            }
            Value::Object(copy)
        }
        other => other.clone(),
    }
}

const WORKSPACE: &str = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/subnetlock/providers/Microsoft.OperationalInsights/workspaces/log";

#[test]
fn bicep_func_create() {
    // workspaceResourceId has no default and the corpus ships no parameters file.
    let Some(deployment) = evaluate_with(
        "bicep-func-create.json",
        &[("workspaceResourceId", WORKSPACE)],
    ) else {
        return;
    };
    assert_eq!(deployment.resources.len(), 7);

    // appNamePrefix = uniqueString(resourceGroup().id); functionAppName =
    // format('{0}-functionapp', prefix); storage = format('{0}sta', replace(prefix, '-', '')).
    let site = find(
        &deployment,
        "Microsoft.Web/sites",
        "yobmxbvmtplck-functionapp",
    );
    assert_eq!(site.id, id("Microsoft.Web/sites/yobmxbvmtplck-functionapp"));
    assert_eq!(
        text(site, &["properties", "hostNameSslStates", "1", "name"]),
        "yobmxbvmtplck-functionapp.scm.azurewebsites.net"
    );
    assert_eq!(
        text(site, &["properties", "serverFarmId"]),
        id("Microsoft.Web/serverfarms/yobmxbvmtplck-appservice")
    );
    assert_eq!(text(site, &["tags", "AppID"]), "myfunc");
    find(
        &deployment,
        "Microsoft.Storage/storageAccounts",
        "yobmxbvmtplcksta",
    );
    let insights = find(
        &deployment,
        "Microsoft.Insights/components",
        "yobmxbvmtplck-appinsights",
    );
    assert_eq!(
        text(insights, &["properties", "WorkspaceResourceId"]),
        WORKSPACE
    );

    // The web config allows `Any` at priority 1 on the main site and, separately, on the scm
    // site (scmIpSecurityRestrictionsUseMain is false).
    let config = find(
        &deployment,
        "Microsoft.Web/sites/config",
        "yobmxbvmtplck-functionapp/web",
    );
    assert_eq!(
        config.id,
        id("Microsoft.Web/sites/yobmxbvmtplck-functionapp/config/web")
    );
    for list in ["ipSecurityRestrictions", "scmIpSecurityRestrictions"] {
        let rule = ["properties", list, "0"];
        assert_eq!(
            text(config, &[&rule[..], &["ipAddress"]].concat()),
            "Any",
            "{list}"
        );
        assert_eq!(
            text(config, &[&rule[..], &["action"]].concat()),
            "Allow",
            "{list}"
        );
        assert_eq!(
            at(config, &[&rule[..], &["priority"]].concat()),
            &Value::Int(1),
            "{list}"
        );
        assert_eq!(
            text(config, &[&rule[..], &["name"]].concat()),
            "Allow all",
            "{list}"
        );
        assert_eq!(
            at(config, &["properties", list]).as_array().unwrap().len(),
            1,
            "{list}"
        );
    }
    assert!(!flag(
        config,
        &["properties", "scmIpSecurityRestrictionsUseMain"]
    ));
    // format('${0}', functionAppName): `$` is plain text in a format string.
    assert_eq!(
        text(config, &["properties", "publishingUsername"]),
        "$yobmxbvmtplck-functionapp"
    );

    // name = format('{0}/{1}', functionAppName, format('{0}.azurewebsites.net', ...)).
    let binding = find(
        &deployment,
        "Microsoft.Web/sites/hostNameBindings",
        "yobmxbvmtplck-functionapp/yobmxbvmtplck-functionapp.azurewebsites.net",
    );
    assert_eq!(
        binding.id,
        id("Microsoft.Web/sites/yobmxbvmtplck-functionapp/hostNameBindings/yobmxbvmtplck-functionapp.azurewebsites.net")
    );
}

#[test]
fn bicep_func_create_symbolic_names_agree() {
    let extra = [("workspaceResourceId", WORKSPACE)];
    let Some(plain) = evaluate_with("bicep-func-create.json", &extra) else {
        return;
    };
    let Some(symbolic) = evaluate_with("bicep-func-create.symbolicnames.json", &extra) else {
        return;
    };

    // Same resources in the same dependency order, with the same dependencies (symbolic
    // names in `dependsOn` resolve to the ids that resourceId() builds in the other file).
    let ids = |deployment: &Deployment| -> Vec<String> {
        deployment.resources.iter().map(|r| r.id.clone()).collect()
    };
    assert_eq!(ids(&plain), ids(&symbolic));
    for (left, right) in plain.resources.iter().zip(&symbolic.resources) {
        assert_eq!(left.resource_type, right.resource_type, "{}", left.id);
        assert_eq!(left.name, right.name, "{}", left.id);
        let mut left_depends = left.depends_on.clone();
        let mut right_depends = right.depends_on.clone();
        left_depends.sort();
        right_depends.sort();
        assert_eq!(left_depends, right_depends, "{}", left.id);
        assert_eq!(
            without_expressions(&left.body),
            without_expressions(&right.body),
            "{}",
            left.id
        );
    }
    let config = find(
        &symbolic,
        "Microsoft.Web/sites/config",
        "yobmxbvmtplck-functionapp/web",
    );
    assert_eq!(config.symbolic_name.as_deref(), Some("functionAppConfig"));
}

#[test]
fn bicep_appsvc_regional_vnet_symbolic_names() {
    let Some(deployment) = evaluate("bicep-appsvc-regional-vnet.symbolicnames.json") else {
        return;
    };
    assert_eq!(deployment.resources.len(), 4);

    // Same names as the JSON quickstart: appName = uniqueString(resourceGroup().id), plan
    // adds uniqueString('00000000-0000-0000-0000-000000000000') = `qhib2c2cutqra`.
    let plan = find(
        &deployment,
        "Microsoft.Web/serverfarms",
        "yobmxbvmtplckqhib2c2cutqra",
    );
    assert_eq!(plan.symbolic_name.as_deref(), Some("appServicePlan"));
    let vnet = find(
        &deployment,
        "Microsoft.Network/virtualNetworks",
        "yobmxbvmtplckvnet",
    );
    assert_eq!(
        text(vnet, &["properties", "subnets", "0", "name"]),
        "yobmxbvmtplcksn"
    );
    assert_eq!(
        text(
            vnet,
            &[
                "properties",
                "subnets",
                "0",
                "properties",
                "networkSecurityGroup",
                "properties",
                "securityRules",
                "0",
                "properties",
                "access"
            ]
        ),
        "Allow"
    );

    let network = find(
        &deployment,
        "Microsoft.Web/sites/networkConfig",
        "yobmxbvmtplck/virtualNetwork",
    );
    assert_eq!(network.symbolic_name.as_deref(), Some("webappVnet"));
    assert_eq!(
        network.id,
        id("Microsoft.Web/sites/yobmxbvmtplck/networkConfig/virtualNetwork")
    );
    assert!(flag(network, &["properties", "swiftSupported"]));
    // dependsOn ['vnet', 'webApp'] names symbols; the evaluator stores their resource ids.
    let mut depends = network.depends_on.clone();
    depends.sort();
    assert_eq!(
        depends,
        vec![
            id("Microsoft.Network/virtualNetworks/yobmxbvmtplckvnet"),
            id("Microsoft.Web/sites/yobmxbvmtplck"),
        ]
    );
    // reference('vnet') by symbolic name reads the declared properties, whose subnet has no
    // runtime `id`, so the subnet id stays a reference unknown.
    assert_eq!(
        unknown_cause(at(network, &["properties", "subnetResourceId"])),
        Some((UnknownCause::Reference, false))
    );
}

#[test]
fn qs_private_endpoint_webapp() {
    let Some(deployment) = evaluate("qs-private-endpoint-webapp.json") else {
        return;
    };
    assert_eq!(deployment.resources.len(), 10);

    // The parameters file names the site, plan and endpoint `GEN-UNIQUE`.
    let subnet = find(
        &deployment,
        "Microsoft.Network/virtualNetworks/subnets",
        "GEN-VNET-NAME/GEN-VNET-SUBNET1-NAME",
    );
    let subnet_id =
        id("Microsoft.Network/virtualNetworks/GEN-VNET-NAME/subnets/GEN-VNET-SUBNET1-NAME");
    assert_eq!(subnet.id, subnet_id);
    // subnet1_CIDR defaults to 10.200.1.0/24.
    assert_eq!(
        text(subnet, &["properties", "addressPrefix"]),
        "10.200.1.0/24"
    );
    assert_eq!(
        text(subnet, &["properties", "privateEndpointNetworkPolicies"]),
        "Disabled"
    );

    let site = find(&deployment, "Microsoft.Web/sites", "GEN-UNIQUE");
    // concat(site_name, '.scm', webapp_dns_name) with webapp_dns_name = '.azurewebsites.net'.
    assert_eq!(
        text(site, &["properties", "hostNameSslStates", "1", "name"]),
        "GEN-UNIQUE.scm.azurewebsites.net"
    );

    let endpoint = find(
        &deployment,
        "Microsoft.Network/privateEndpoints",
        "GEN-UNIQUE",
    );
    assert_eq!(
        endpoint.id,
        id("Microsoft.Network/privateEndpoints/GEN-UNIQUE")
    );
    assert_eq!(text(endpoint, &["properties", "subnet", "id"]), subnet_id);
    let connection = [
        "properties",
        "privateLinkServiceConnections",
        "0",
        "properties",
    ];
    assert_eq!(
        text(
            endpoint,
            &[&connection[..], &["privateLinkServiceId"]].concat()
        ),
        id("Microsoft.Web/sites/GEN-UNIQUE")
    );
    assert_eq!(
        at(endpoint, &[&connection[..], &["groupIds"]].concat()),
        &Value::Array(vec![Value::String("sites".to_owned())])
    );

    // concat(privateDNSZone_name, '/', privateDNSZone_name, '-link').
    find(
        &deployment,
        "Microsoft.Network/privateDnsZones/virtualNetworkLinks",
        "privatelink.azurewebsites.net/privatelink.azurewebsites.net-link",
    );
    let group = find(
        &deployment,
        "Microsoft.Network/privateEndpoints/privateDnsZoneGroups",
        "GEN-UNIQUE/dnsgroupname",
    );
    assert_eq!(
        text(
            group,
            &[
                "properties",
                "privateDnsZoneConfigs",
                "0",
                "properties",
                "privateDnsZoneId"
            ]
        ),
        id("Microsoft.Network/privateDnsZones/privatelink.azurewebsites.net")
    );
}

#[test]
fn qs_webapp_pe_vnet_injection() {
    let Some(deployment) = evaluate("qs-webapp-pe-vnet-injection.json") else {
        return;
    };

    let vnet = find(&deployment, "Microsoft.Network/virtualNetworks", "vnet1");
    let subnets = ["properties", "subnets"];
    assert_eq!(
        text(vnet, &[&subnets[..], &["0", "name"]].concat()),
        "Subnet1"
    );
    assert_eq!(
        text(
            vnet,
            &[&subnets[..], &["0", "properties", "addressPrefix"]].concat()
        ),
        "10.200.1.0/24"
    );
    assert_eq!(
        text(vnet, &[&subnets[..], &["1", "name"]].concat()),
        "Subnet2"
    );
    assert_eq!(
        text(
            vnet,
            &[&subnets[..], &["1", "properties", "addressPrefix"]].concat()
        ),
        "10.200.2.0/24"
    );
    assert_eq!(
        text(
            vnet,
            &[
                &subnets[..],
                &[
                    "1",
                    "properties",
                    "delegations",
                    "0",
                    "properties",
                    "serviceName"
                ]
            ]
            .concat()
        ),
        "Microsoft.Web/serverfarms"
    );

    // site1_Name = format('webapp1-{0}', uniqueString(resourceGroup().id)); site1 has no
    // networking of its own and is reached through the private endpoint.
    let site1 = find(&deployment, "Microsoft.Web/sites", "webapp1-yobmxbvmtplck");
    assert_eq!(
        site1
            .body
            .get_path(&["properties", "virtualNetworkSubnetId"]),
        None
    );

    // site2 integrates with Subnet2 and routes all outbound traffic through it.
    let site2 = find(&deployment, "Microsoft.Web/sites", "webapp2-yobmxbvmtplck");
    assert_eq!(
        text(site2, &["properties", "virtualNetworkSubnetId"]),
        id("Microsoft.Network/virtualNetworks/vnet1/subnets/Subnet2")
    );
    assert!(flag(site2, &["properties", "vnetRouteAllEnabled"]));

    let endpoint = find(
        &deployment,
        "Microsoft.Network/privateEndpoints",
        "PrivateEndpoint1",
    );
    assert_eq!(
        text(endpoint, &["properties", "subnet", "id"]),
        id("Microsoft.Network/virtualNetworks/vnet1/subnets/Subnet1")
    );
    let connection = ["properties", "privateLinkServiceConnections", "0"];
    assert_eq!(
        text(endpoint, &[&connection[..], &["name"]].concat()),
        "PrivateEndpointLink1"
    );
    assert_eq!(
        text(
            endpoint,
            &[&connection[..], &["properties", "privateLinkServiceId"]].concat()
        ),
        id("Microsoft.Web/sites/webapp1-yobmxbvmtplck")
    );
    assert_eq!(
        at(
            endpoint,
            &[&connection[..], &["properties", "groupIds"]].concat()
        ),
        &Value::Array(vec![Value::String("sites".to_owned())])
    );
}

/// Checks the Front Door service tag rule that the Front Door quickstarts put on a site: an
/// `Allow` for `AzureFrontDoor.Backend` at priority 100 with an `x-azure-fdid` header whose
/// value, `reference(profile).frontDoorId`, only exists after deployment.
fn assert_front_door_rule(site: &Resource, path: &[&str]) {
    let rules = at(site, path).as_array().unwrap();
    assert_eq!(rules.len(), 1, "{}", site.id);
    let rule = &rules[0];
    let field = |key: &str| rule.get(key).unwrap();
    assert_eq!(field("tag"), &Value::String("ServiceTag".to_owned()));
    assert_eq!(
        field("ipAddress"),
        &Value::String("AzureFrontDoor.Backend".to_owned())
    );
    assert_eq!(field("action"), &Value::String("Allow".to_owned()));
    assert_eq!(field("priority"), &Value::Int(100));
    assert_eq!(
        field("name"),
        &Value::String("Allow traffic from Front Door".to_owned())
    );
    let ids = rule
        .get_path(&["headers", "x-azure-fdid"])
        .and_then(Value::as_array)
        .unwrap();
    assert_eq!(ids.len(), 1);
    assert_eq!(
        unknown_cause(&ids[0]),
        Some((UnknownCause::Reference, false))
    );
}

#[test]
fn qs_afd_std_func_public() {
    let Some(deployment) = evaluate("qs-afd-std-func-public.json") else {
        return;
    };
    // Six resources in the outer template (counting the nested deployment) and five inside.
    assert_eq!(deployment.resources.len(), 11);

    // frontDoorEndpointName = format('afd-{0}', uniqueString(resourceGroup().id)).
    let endpoint = find(
        &deployment,
        "Microsoft.Cdn/profiles/afdEndpoints",
        "MyFrontDoor/afd-yobmxbvmtplck",
    );
    assert_eq!(
        endpoint.id,
        id("Microsoft.Cdn/profiles/MyFrontDoor/afdEndpoints/afd-yobmxbvmtplck")
    );
    let route = find(
        &deployment,
        "Microsoft.Cdn/profiles/afdEndpoints/routes",
        "MyFrontDoor/afd-yobmxbvmtplck/MyRoute",
    );
    assert_eq!(
        text(route, &["properties", "originGroup", "id"]),
        id("Microsoft.Cdn/profiles/MyFrontDoor/originGroups/MyOriginGroup")
    );

    // The inner deployment `functionapp` gets appName = format('fn-{0}', uniqueString(rg id))
    // and names its storage format('fnstor{0}', uniqueString(resourceGroup().id, appName)):
    // uniqueString('/subscriptions/0000...0000/resourceGroups/subnetlock', 'fn-yobmxbvmtplck')
    // = `7enff2jdgtbzs`.
    let storage = find(
        &deployment,
        "Microsoft.Storage/storageAccounts",
        "fnstor7enff2jdgtbzs",
    );
    assert_eq!(storage.deployment_path, vec!["functionapp".to_owned()]);

    let site = find(&deployment, "Microsoft.Web/sites", "fn-yobmxbvmtplck");
    assert_eq!(site.id, id("Microsoft.Web/sites/fn-yobmxbvmtplck"));
    assert_eq!(site.deployment_path, vec!["functionapp".to_owned()]);
    // functionPlanSkuName is EP1, so the plan kind is if(equals('EP1', 'Y1'), ...) = elastic.
    let plan = find(&deployment, "Microsoft.Web/serverfarms", "FunctionPlan");
    assert_eq!(text(plan, &["kind"]), "elastic");
    assert_front_door_rule(
        site,
        &["properties", "siteConfig", "ipSecurityRestrictions"],
    );
    assert!(flag(site, &["properties", "httpsOnly"]));

    // The origin host name is the inner deployment's output, itself
    // reference(site).defaultHostName: a runtime value.
    let origin = find(
        &deployment,
        "Microsoft.Cdn/profiles/originGroups/origins",
        "MyFrontDoor/MyOriginGroup/MyAppServiceOrigin",
    );
    assert_eq!(
        unknown_cause(at(origin, &["properties", "hostName"])),
        Some((UnknownCause::Reference, false))
    );
}

#[test]
fn qs_webapp_multiregion_frontdoor() {
    let Some(deployment) = evaluate("qs-webapp-multiregion-frontdoor.json") else {
        return;
    };

    // webAppName = format('myApp-{0}', uniqueString(resourceGroup().id)).
    let site = find(&deployment, "Microsoft.Web/sites", "myApp-yobmxbvmtplck");
    assert_eq!(text(site, &["location"]), "westeurope");
    assert_front_door_rule(
        site,
        &["properties", "siteConfig", "ipSecurityRestrictions"],
    );
    assert_eq!(
        text(
            site,
            &[
                "properties",
                "siteConfig",
                "scmIpSecurityRestrictionsDefaultAction"
            ]
        ),
        "Deny"
    );

    // The slot is named format('{0}/stage', webAppName); it repeats the Front Door rule but
    // sets no scm default action.
    let slot = find(
        &deployment,
        "Microsoft.Web/sites/slots",
        "myApp-yobmxbvmtplck/stage",
    );
    assert_eq!(
        slot.id,
        id("Microsoft.Web/sites/myApp-yobmxbvmtplck/slots/stage")
    );
    assert_front_door_rule(
        slot,
        &["properties", "siteConfig", "ipSecurityRestrictions"],
    );
    assert_eq!(
        slot.body.get_path(&[
            "properties",
            "siteConfig",
            "scmIpSecurityRestrictionsDefaultAction"
        ]),
        None
    );

    // format('{0}/{1}/{2}', split(slotName, '/')[0], split(slotName, '/')[1], 'ftp').
    let policy = find(
        &deployment,
        "Microsoft.Web/sites/slots/basicPublishingCredentialsPolicies",
        "myApp-yobmxbvmtplck/stage/ftp",
    );
    assert_eq!(
        policy.id,
        id("Microsoft.Web/sites/myApp-yobmxbvmtplck/slots/stage/basicPublishingCredentialsPolicies/ftp")
    );
    assert!(!flag(policy, &["properties", "allow"]));

    // The secondary region: secondaryLocation defaults to eastus.
    let secondary = find(
        &deployment,
        "Microsoft.Web/sites",
        "mySecondaryApp-yobmxbvmtplck",
    );
    assert_eq!(text(secondary, &["location"]), "eastus");
    assert_eq!(
        text(secondary, &["properties", "serverFarmId"]),
        id("Microsoft.Web/serverfarms/SecondaryAppServicePlan")
    );
    assert_front_door_rule(
        secondary,
        &["properties", "siteConfig", "ipSecurityRestrictions"],
    );
}

#[test]
fn qs_webapp_appgw_v2() {
    let Some(deployment) = evaluate("qs-webapp-appgw-v2.json") else {
        return;
    };
    assert_eq!(deployment.resources.len(), 5);

    // virtualNetworkName = concat('myVirtualNetwork', '-', uniqueString(resourceGroup().id)).
    let vnet = find(
        &deployment,
        "Microsoft.Network/virtualNetworks",
        "myVirtualNetwork-yobmxbvmtplck",
    );
    let subnet = ["properties", "subnets", "0"];
    assert_eq!(
        text(vnet, &[&subnet[..], &["name"]].concat()),
        "myAppGatewaySubnet"
    );
    assert_eq!(
        text(
            vnet,
            &[&subnet[..], &["properties", "addressPrefix"]].concat()
        ),
        "10.0.0.0/24"
    );
    let endpoint = [&subnet[..], &["properties", "serviceEndpoints", "0"]].concat();
    assert_eq!(
        text(vnet, &[&endpoint[..], &["service"]].concat()),
        "Microsoft.Web"
    );
    assert_eq!(
        at(vnet, &[&endpoint[..], &["locations"]].concat()),
        &Value::Array(vec![Value::String("*".to_owned())])
    );

    // The subnet id comes from resourceId('Microsoft.Network/virtualNetworks/subnets/', ...):
    // the trailing `/` of the type adds no empty segment.
    let subnet_id = id("Microsoft.Network/virtualNetworks/myVirtualNetwork-yobmxbvmtplck/subnets/myAppGatewaySubnet");
    let site = find(&deployment, "Microsoft.Web/sites", "myWebApp-yobmxbvmtplck");
    let rule = ["properties", "siteConfig", "ipSecurityRestrictions", "0"];
    assert_eq!(
        text(site, &[&rule[..], &["vnetSubnetResourceId"]].concat()),
        subnet_id
    );
    assert_eq!(text(site, &[&rule[..], &["action"]].concat()), "Allow");
    assert_eq!(text(site, &[&rule[..], &["tag"]].concat()), "Default");
    assert_eq!(
        at(site, &[&rule[..], &["priority"]].concat()),
        &Value::Int(200)
    );
    assert_eq!(
        text(site, &[&rule[..], &["name"]].concat()),
        "appGatewaySubnet"
    );
    // The template writes httpsOnly as the string "false"; the evaluator keeps JSON types.
    assert_eq!(text(site, &["properties", "httpsOnly"]), "false");
    // dependsOn [variables('virtualNetworkId')] built with the type 'Microsoft.Network/virtualNetworks/'.
    assert!(site.depends_on.contains(&id(
        "Microsoft.Network/virtualNetworks/myVirtualNetwork-yobmxbvmtplck"
    )));

    let gateway = find(
        &deployment,
        "Microsoft.Network/applicationGateways",
        "myAppGateway-yobmxbvmtplck",
    );
    assert_eq!(
        text(
            gateway,
            &[
                "properties",
                "gatewayIPConfigurations",
                "0",
                "properties",
                "subnet",
                "id"
            ]
        ),
        subnet_id
    );
    // The backend pool name is concat('appGateway', webAppName, 'BackendPool'); its address is
    // reference(webAppName).hostNames[0], known only after deployment.
    let pool = ["properties", "backendAddressPools", "0"];
    assert_eq!(
        text(gateway, &[&pool[..], &["name"]].concat()),
        "appGatewaymyWebApp-yobmxbvmtplckBackendPool"
    );
    assert_eq!(
        unknown_cause(at(
            gateway,
            &[&pool[..], &["properties", "backendAddresses", "0", "fqdn"]].concat()
        )),
        Some((UnknownCause::Reference, false))
    );
    // toLower(webAppName) for the public IP's DNS label.
    let address = find(
        &deployment,
        "Microsoft.Network/publicIPAddresses",
        "myAppGatewayPublicIp-yobmxbvmtplck",
    );
    assert_eq!(
        text(address, &["properties", "dnsSettings", "domainNameLabel"]),
        "mywebapp-yobmxbvmtplck"
    );
}

#[test]
fn vplauzon_lock_in_subnet() {
    let Some(deployment) = evaluate("vplauzon-lock-in-subnet.json") else {
        return;
    };

    // Variable names with spaces: 'VNET name' = vnet, 'Subnet name' = default.
    let vnet = find(&deployment, "Microsoft.Network/virtualNetworks", "vnet");
    let subnet = ["properties", "subnets", "0"];
    assert_eq!(text(vnet, &[&subnet[..], &["name"]].concat()), "default");
    assert_eq!(
        text(
            vnet,
            &[
                &subnet[..],
                &["properties", "serviceEndpoints", "0", "service"]
            ]
            .concat()
        ),
        "Microsoft.Web"
    );
    assert_eq!(
        text(
            vnet,
            &[
                &subnet[..],
                &[
                    "properties",
                    "delegations",
                    "0",
                    "properties",
                    "serviceName"
                ]
            ]
            .concat()
        ),
        "Microsoft.Web/serverfarms"
    );
    let subnet_id = id("Microsoft.Network/virtualNetworks/vnet/subnets/default");

    // Function app A: concat('function-app-a-', uniqueString(resourceGroup().id)), with the
    // child `config` named `virtualNetwork` (regional VNet integration, swift).
    let integration = find(
        &deployment,
        "Microsoft.Web/sites/config",
        "function-app-a-yobmxbvmtplck/virtualNetwork",
    );
    assert_eq!(
        integration.id,
        id("Microsoft.Web/sites/function-app-a-yobmxbvmtplck/config/virtualNetwork")
    );
    assert_eq!(
        text(integration, &["properties", "subnetResourceId"]),
        subnet_id
    );
    assert!(flag(integration, &["properties", "swiftSupported"]));
    // dependsOn uses resourceId('Microsoft.Network/virtualNetworks/', ...) with a trailing `/`.
    assert!(integration
        .depends_on
        .contains(&id("Microsoft.Network/virtualNetworks/vnet")));

    // Function app B allows only that subnet.
    let lock = find(
        &deployment,
        "Microsoft.Web/sites/config",
        "function-app-b-yobmxbvmtplck/web",
    );
    let rules = at(lock, &["properties", "ipSecurityRestrictions"])
        .as_array()
        .unwrap();
    assert_eq!(rules.len(), 1);
    let rule = ["properties", "ipSecurityRestrictions", "0"];
    assert_eq!(
        text(lock, &[&rule[..], &["vnetSubnetResourceId"]].concat()),
        subnet_id
    );
    assert_eq!(text(lock, &[&rule[..], &["action"]].concat()), "Allow");
    assert_eq!(
        at(lock, &[&rule[..], &["priority"]].concat()),
        &Value::Int(100)
    );
    assert_eq!(
        text(lock, &[&rule[..], &["name"]].concat()),
        "lock-to-subnet"
    );

    // A calls B through listSecrets(functions id).trigger_url: a secret unknown offline.
    let site_a = find(
        &deployment,
        "Microsoft.Web/sites",
        "function-app-a-yobmxbvmtplck",
    );
    assert_eq!(
        unknown_cause(app_setting(site_a, "target-url")),
        Some((UnknownCause::List, true))
    );
    find(
        &deployment,
        "Microsoft.Storage/storageAccounts",
        "funcstoyobmxbvmtplck",
    );
}

#[test]
fn qs_demo_pe_sql_from_appservice() {
    let Some(deployment) = evaluate("qs-demo-pe-sql-from-appservice.json") else {
        return;
    };
    assert_eq!(deployment.resources.len(), 12);

    // sqlServerName = concat('sqlserver', uniqueString(resourceGroup().id)).
    let server = find(
        &deployment,
        "Microsoft.Sql/servers",
        "sqlserveryobmxbvmtplck",
    );
    assert_eq!(
        text(server, &["properties", "publicNetworkAccess"]),
        "Disabled"
    );
    // databaseName = concat(sqlServerName, '/sample-db').
    let database = find(
        &deployment,
        "Microsoft.Sql/servers/databases",
        "sqlserveryobmxbvmtplck/sample-db",
    );
    assert_eq!(
        database.id,
        id("Microsoft.Sql/servers/sqlserveryobmxbvmtplck/databases/sample-db")
    );

    let endpoint = find(
        &deployment,
        "Microsoft.Network/privateEndpoints",
        "myPrivateEndpoint",
    );
    assert_eq!(
        text(endpoint, &["properties", "subnet", "id"]),
        id("Microsoft.Network/virtualNetworks/myVirtualNetwork/subnets/mySubnet")
    );
    let connection = [
        "properties",
        "privateLinkServiceConnections",
        "0",
        "properties",
    ];
    assert_eq!(
        text(
            endpoint,
            &[&connection[..], &["privateLinkServiceId"]].concat()
        ),
        id("Microsoft.Sql/servers/sqlserveryobmxbvmtplck")
    );
    assert_eq!(
        at(endpoint, &[&connection[..], &["groupIds"]].concat()),
        &Value::Array(vec![Value::String("sqlServer".to_owned())])
    );
    // dependsOn [variables('vnetName'), variables('sqlServerName')] are bare names.
    let mut depends = endpoint.depends_on.clone();
    depends.sort();
    assert_eq!(
        depends,
        vec![
            id("Microsoft.Network/virtualNetworks/myVirtualNetwork"),
            id("Microsoft.Sql/servers/sqlserveryobmxbvmtplck"),
        ]
    );

    let vnet = find(
        &deployment,
        "Microsoft.Network/virtualNetworks",
        "myVirtualNetwork",
    );
    assert_eq!(
        text(
            vnet,
            &["properties", "subnets", "1", "properties", "addressPrefix"]
        ),
        "10.0.1.0/24"
    );

    // websitename = take(concat('webapppvl', uniqueString(resourceGroup().id)), 15): nine
    // letters of prefix and the first six of the hash.
    let site = find(&deployment, "Microsoft.Web/sites", "webapppvlyobmxb");
    assert_eq!(
        text(site, &["properties", "serverFarmId"]),
        id("Microsoft.Web/serverfarms/appSrvPlnyobmxb")
    );
    // The connection string embeds reference(sqlServerName).fullyQualifiedDomainName and the
    // securestring sqlAdministratorLoginPassword, so the unknown is secret.
    let connection_string = at(
        site,
        &[
            "properties",
            "siteConfig",
            "connectionStrings",
            "0",
            "connectionString",
        ],
    );
    assert_eq!(
        unknown_cause(connection_string),
        Some((UnknownCause::Reference, true))
    );

    // Child resources of the site: the `appsettings` config routes all traffic through the
    // VNet, and `networkConfig/virtualNetwork` integrates with subnetAppService.
    let settings = find(
        &deployment,
        "Microsoft.Web/sites/config",
        "webapppvlyobmxb/appsettings",
    );
    assert_eq!(
        text(settings, &["properties", "WEBSITE_VNET_ROUTE_ALL"]),
        "1"
    );
    let network = find(
        &deployment,
        "Microsoft.Web/sites/networkConfig",
        "webapppvlyobmxb/virtualNetwork",
    );
    assert_eq!(
        text(network, &["properties", "subnetResourceId"]),
        id("Microsoft.Network/virtualNetworks/myVirtualNetwork/subnets/subnetAppService")
    );
    assert!(flag(network, &["properties", "swiftSupported"]));
}
