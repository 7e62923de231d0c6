//! Builds a [`Topology`] from the resources an ARM deployment creates.
//!
//! Resources are read in deployment order, so a later `Microsoft.Web/sites/config` resource
//! named `web` replaces the site configuration an earlier inline `siteConfig` set, as the later
//! PUT does in Azure.

use subnetlock_access::RuleError;
use subnetlock_access::{
    parse_header_filters_with_warnings, parse_source_with_warnings, Action, PublicNetworkAccess,
    Rule, RuleList, SiteKind, SourceCondition, SubnetId,
};
use subnetlock_arm::{
    shown_link, Deployment, Object, Resource, UnresolvedTemplate, Value, LOCAL_ARTIFACTS_BASE,
};

use crate::findings::{Finding, FindingCode, Severity};
use crate::topology::*;
use crate::validate;

/// Reads every resource that matters for access and returns the topology with its findings.
///
/// A deployment without resources (an empty `resources`, or a false `condition` on every
/// resource) gives an empty topology. Resource Manager runs such a deployment, and it succeeds
/// with nothing deployed.
pub fn build_topology(deployment: &Deployment) -> Topology {
    let mut builder = Builder {
        deployment,
        topology: Topology::default(),
        defaults_findings: Vec::new(),
    };

    for resource in &deployment.resources {
        builder.add_top_level(resource);
    }
    for resource in &deployment.resources {
        builder.add_child(resource);
    }
    for resource in &deployment.resources {
        builder.add_private_endpoint(resource);
    }
    for resource in &deployment.resources {
        builder.add_network_child(resource);
    }

    let mut topology = builder.topology;
    // Rule-default warnings wait until every resource is read, because a later `config/web`
    // can replace the list or set `scmIpSecurityRestrictionsUseMain`. Azure ignores the scm
    // list then, so its rules' defaults decide nothing.
    for (site_name, list, index, finding) in builder.defaults_findings {
        let Some(site) = topology.sites.iter().find(|site| site.name == site_name) else {
            continue;
        };
        let ignored = list == SiteKind::Scm && site.access.scm_uses_main;
        if !ignored && site.rules_with_defaults.contains(&(list, index)) {
            topology.findings.push(finding);
        }
    }
    for site in &topology.sites {
        default_allow_findings(site, &mut topology.findings);
    }
    for duplicate in &deployment.duplicate_keys {
        let first = &duplicate.first;
        let mut finding = Finding::new(
                FindingCode::SL023,
                Severity::Warning,
                format!(
                    "key `{}` is written twice in one object (first at {}:{}:{}); ARM accepts this without documenting which copy it uses, and subnetlock reads the later one",
                    duplicate.key,
                    first.file.display(),
                    first.line,
                    first.column
                ),
            )
        .help("remove one of the two copies, so that the template says one thing");
        finding.location = Some(duplicate.duplicate.clone());
        finding.related.push(duplicate.first.clone());
        topology.findings.push(finding);
    }
    for unresolved in &deployment.unresolved_templates {
        let link = describe_link(&unresolved.link);
        let message = if template_spec_id(&unresolved.link).is_some() {
            format!(
                "nested deployment `{}` links its template {link}, a template spec version; subnetlock does not read template specs, which are stored in Azure, so the resources it deploys are not analysed",
                unresolved.deployment
            )
        } else {
            format!(
                "nested deployment `{}` links its template {link}; subnetlock does not fetch linked templates, so the resources it deploys are not analysed",
                unresolved.deployment
            )
        };
        topology.findings.push(
            Finding::new(FindingCode::SL010, Severity::Warning, message)
                .help(unresolved_help(unresolved))
                .at(&unresolved.deployment, unresolved.declared_at.clone()),
        );
    }
    validate::validate(&mut topology);
    topology
}

/// Returns the next step for a linked template that was not read. When artifacts folders
/// were mapped and the link's URI is known, suggesting `--artifacts` again would not help, so
/// the help names the URI and the prefixes that do not cover it. A template spec link gets
/// [`template_spec_help`] instead.
fn unresolved_help(unresolved: &UnresolvedTemplate) -> String {
    if let Some(id) = template_spec_id(&unresolved.link) {
        return template_spec_help(id);
    }
    let generic = "to have it analysed, pass a local copy of the linked templates with `--artifacts DIR` (or `--artifacts URI=DIR`), point `templateLink.relativePath` at it, or inline the template";
    let Some(uri) = unresolved.looked_up_uri.as_deref() else {
        return generic.to_owned();
    };
    if unresolved.artifact_prefixes.is_empty() {
        return generic.to_owned();
    }

    let prefixes: Vec<String> = unresolved
        .artifact_prefixes
        .iter()
        .map(|prefix| {
            let own = if prefix.uri == LOCAL_ARTIFACTS_BASE {
                ", the template's own location"
            } else {
                ""
            };
            format!(
                "`{}` (folder `{}`{own})",
                prefix.uri,
                prefix.directory.display()
            )
        })
        .collect();
    format!(
        "none of the `--artifacts` prefixes covers the link `{uri}`: {}. To have it analysed, add a prefix for the link's folder with `--artifacts URI=DIR`, for example `--artifacts {}=DIR`, where DIR holds a copy of the linked templates",
        prefixes.join(", "),
        link_folder(uri)
    )
}

/// Returns the `templateLink.id` of a link that names a template spec version. A link that
/// also has a `uri` or a `relativePath` is read by those, so it gets no template spec help.
fn template_spec_id(link: &Value) -> Option<&Value> {
    if link.get("uri").is_some() || link.get("relativePath").is_some() {
        return None;
    }
    link.get("id")
}

/// Returns the next step for a nested deployment linked to the template spec version `id`.
/// `--artifacts` maps only URIs, so the help suggests exporting the version's main template
/// and linking the file in its place.
fn template_spec_help(id: &Value) -> String {
    // `az ts export --template-spec` takes the version's resource ID and writes the main
    // template to `<output folder>/<spec name>.JSON`, with the linked templates beside it at
    // their relative paths (`export_template_spec` in custom.py and `unpack` in
    // _packing_engine.py, src/azure-cli/azure/cli/command_modules/resource in Azure/azure-cli).
    let (export, main_file) = match id {
        Value::String(id) => {
            let file = template_spec_name(id).map_or_else(
                || "DIR/<spec name>.JSON".to_owned(),
                |name| format!("DIR/{name}.JSON"),
            );
            (
                format!(
                    "export the main template of the spec version, for example with `az ts export --template-spec {id} --output-folder DIR`"
                ),
                file,
            )
        }
        other => (
            format!(
                "export the main template of the template spec version {}, for example with `az ts export --template-spec ID --output-folder DIR`, where ID is the version's resource ID",
                shown_value(other)
            ),
            "DIR/<spec name>.JSON".to_owned(),
        ),
    };
    format!(
        "subnetlock does not read template specs offline, and `--artifacts` maps only `templateLink.uri` links. To have the deployment analysed, {export}, which writes it as `{main_file}`. Then, in a copy of this template used only for the check, link `{main_file}` by `templateLink.relativePath` or by a `uri` that `--artifacts URI=DIR` maps to DIR, or inline it as `properties.template`. Or accept the gap: the resources the spec deploys stay out of the analysis and the deployment's outputs stay unknown"
    )
}

/// Returns the template spec name in a version ID such as
/// `/subscriptions/…/providers/Microsoft.Resources/templateSpecs/<name>/versions/<version>`.
fn template_spec_name(id: &str) -> Option<&str> {
    let segments: Vec<&str> = id.trim_matches('/').split('/').collect();
    segments
        .windows(4)
        .find(|window| {
            window[0].eq_ignore_ascii_case("templateSpecs")
                && window[2].eq_ignore_ascii_case("versions")
        })
        .map(|window| window[1])
        .filter(|name| !name.is_empty())
}

/// Returns the folder of a link for an example prefix: the URI up to and including the last
/// `/` of its path, without the credentials, the query and the fragment.
fn link_folder(uri: &str) -> String {
    let without_query = uri.split(['?', '#']).next().unwrap_or(uri);
    let path_start = without_query.find("://").map_or(0, |index| index + 3);
    let (scheme, rest) = without_query.split_at(path_start);
    // A prefix matches without the credentials that `shown_link` hides as `…@`.
    let rest = rest.strip_prefix("…@").unwrap_or(rest);
    match rest.rfind('/') {
        Some(index) => format!("{scheme}{}", &rest[..=index]),
        None => format!("{scheme}{rest}/"),
    }
}

/// Describes a `templateLink` for a message: by `uri` or `id` with its value, or the whole
/// link. A value built from a secure parameter or a Key Vault secret is not shown, and the
/// query of a `uri` (usually a SAS token) is shown as `?…`, as [`shown_link`] shows it.
fn describe_link(link: &Value) -> String {
    ["uri", "id"]
        .iter()
        .find_map(|key| {
            link.get(key)
                .map(|value| format!("by `{key}` {}", shown_value(value)))
        })
        .unwrap_or_else(|| format!("with `templateLink` {}", shown_value(link)))
}

/// Returns a link value as messages show it: in backticks, with a URI's query, fragment and
/// credentials hidden as [`shown_link`] hides them, or a note in place of a value built from a
/// secret.
fn shown_value(value: &Value) -> String {
    match value {
        Value::Unknown(unknown) if unknown.secret => {
            "(its value is built from a secure parameter or a secret, so it is not shown)"
                .to_owned()
        }
        Value::Unknown(unknown) => format!("`[{}]`", unknown.expression),
        Value::String(text) => format!("`{}`", shown_link(text)),
        other => format!("`{}`", serde_json::to_string(other).unwrap_or_default()),
    }
}

/// Adds SL019 for each rule list of Allow rules whose default action is Allow. The Terraform
/// reader adds its own, worded for the azurerm arguments.
fn default_allow_findings(site: &Site, findings: &mut Vec<Finding>) {
    for kind in site.allow_lists_with_default_allow() {
        let default_key = match kind {
            SiteKind::Main => "ipSecurityRestrictionsDefaultAction",
            SiteKind::Scm => "scmIpSecurityRestrictionsDefaultAction",
        };
        let rules = site.access.list(kind).rules.len();
        let finding = Finding::new(
            FindingCode::SL019,
            Severity::Warning,
            format!(
                "the {kind} site of `{}` has {rules} Allow rule(s) and `{default_key}: Allow`, so unmatched traffic is allowed and the rules restrict nothing",
                site.name
            ),
        )
        .outcome(subnetlock_access::Outcome::Silent)
        .help(format!(
            "set `{default_key}` to `Deny` to admit only what the rules allow"
        ))
        .at(&site.id, site.declared_at.clone());
        findings.push(finding);
    }
}

/// The app setting that turns route-all on with `1` or `true`.
const ROUTE_ALL_APP_SETTING: &str = "WEBSITE_VNET_ROUTE_ALL";

/// The verdicts a site setting can change, which an unknown value of it marks.
#[derive(Clone, Copy, Debug)]
enum Affects {
    /// Inbound verdicts, as [`UnknownSetting::affects`] narrows them.
    Inbound {
        list: Option<SiteKind>,
        site_kind: Option<SiteKind>,
    },
    /// Whether the site's own outbound calls enter its VNet, and so the verdicts on them.
    RouteAll,
}

/// Notes on `site` that setting `base.key` is known only at deployment time. A later write of
/// the same setting replaces an earlier note.
fn note_unknown_setting(
    site: &mut Site,
    base: &[&str],
    key: &str,
    expression: String,
    affects: Affects,
) {
    match affects {
        Affects::Inbound { list, site_kind } => {
            site.unknown_settings.retain(|known| known.setting != key);
            site.unknown_settings.push(UnknownSetting {
                setting: key.to_owned(),
                expression,
                list,
                site_kind,
            });
        }
        Affects::RouteAll => {
            let setting = setting_path(base, key);
            site.route_all
                .unknown_settings
                .retain(|known| known.setting != setting);
            site.route_all
                .unknown_settings
                .push(UnknownRouteAllSetting {
                    setting,
                    expression,
                });
        }
    }
}

/// Joins a setting's path for reports: `properties.siteConfig.vnetRouteAllEnabled`.
fn setting_path(base: &[&str], key: &str) -> String {
    let mut path = base.join(".");
    if !path.is_empty() {
        path.push('.');
    }
    path.push_str(key);
    path
}

struct Builder<'a> {
    deployment: &'a Deployment,
    topology: Topology,
    /// SL011 findings for rules without `action` or `priority`: site name, list, rule index.
    defaults_findings: Vec<(String, SiteKind, usize, Finding)>,
}

impl Builder<'_> {
    fn add_top_level(&mut self, resource: &Resource) {
        match resource.resource_type.to_ascii_lowercase().as_str() {
            "microsoft.network/virtualnetworks" => self.add_vnet(resource),
            "microsoft.network/virtualnetworks/subnets" => self.add_separate_subnet(resource),
            "microsoft.web/serverfarms" => self.add_plan(resource),
            "microsoft.web/sites" | "microsoft.web/sites/slots" => self.add_site(resource),
            "microsoft.network/privatednszones" => self.add_private_dns_zone(resource),
            "microsoft.network/networksecuritygroups" => self.add_network_security_group(resource),
            "microsoft.web/hostingenvironments" => self.add_hosting_environment(resource),
            _ => {}
        }
    }

    fn add_child(&mut self, resource: &Resource) {
        let resource_type = resource.resource_type.to_ascii_lowercase();
        let child_name = resource.name.rsplit('/').next().unwrap_or_default();
        match resource_type.as_str() {
            "microsoft.web/sites/config" | "microsoft.web/sites/slots/config" => {
                match child_name.to_ascii_lowercase().as_str() {
                    "web" => self.apply_config_web(resource),
                    "appsettings" => self.apply_config_appsettings(resource),
                    "virtualnetwork" => self.apply_legacy_integration(
                        resource,
                        IntegrationSource::ConfigVirtualNetwork,
                    ),
                    _ => {}
                }
            }
            "microsoft.web/sites/networkconfig" | "microsoft.web/sites/slots/networkconfig"
                if child_name.eq_ignore_ascii_case("virtualNetwork") =>
            {
                self.apply_legacy_integration(
                    resource,
                    IntegrationSource::NetworkConfigVirtualNetwork,
                )
            }
            "microsoft.web/sites/functions" => self.add_function(resource),
            _ => {}
        }
    }

    fn add_vnet(&mut self, resource: &Resource) {
        let properties = resource.properties();
        let address_prefixes = properties
            .and_then(|p| p.get("addressSpace"))
            .and_then(|space| space.get("addressPrefixes"))
            .map(strings)
            .unwrap_or_default();
        let mut subnets = Vec::new();
        let inline = properties
            .and_then(|p| p.get("subnets"))
            .and_then(Value::as_array)
            .unwrap_or_default();
        for (index, subnet) in inline.iter().enumerate() {
            let Some(name) = subnet.get("name").and_then(Value::as_str) else {
                continue;
            };
            let id = SubnetId::new(format!("{}/subnets/{name}", resource.id));
            let location = self
                .deployment
                .locate(resource, &["properties", "subnets", &index.to_string()]);
            let subnet_properties = subnet.get("properties").and_then(Value::as_object);
            subnets.push(read_subnet(id, name, subnet_properties, location));
        }
        if let Some(existing) = self.vnet_mut(&resource.id) {
            // A separate subnet resource came first: keep its subnets.
            existing.address_prefixes = address_prefixes;
            existing.location = location_of(resource);
            for subnet in subnets {
                if !existing.subnets.iter().any(|known| known.id == subnet.id) {
                    existing.subnets.push(subnet);
                }
            }
            return;
        }
        self.topology.vnets.push(VirtualNetwork {
            id: resource.id.clone(),
            name: resource.name.clone(),
            location: location_of(resource),
            address_prefixes,
            subnets,
            declared_at: resource.declared_at.clone(),
        });
    }

    fn add_separate_subnet(&mut self, resource: &Resource) {
        let Some((vnet_name, subnet_name)) = resource.name.split_once('/') else {
            return;
        };
        let id = SubnetId::new(resource.id.clone());
        let vnet_id = id.vnet_id().to_owned();
        let subnet = read_subnet(
            id,
            subnet_name,
            resource.properties(),
            resource.declared_at.clone(),
        );
        if self.vnet_mut(&vnet_id).is_none() {
            self.topology.vnets.push(VirtualNetwork {
                id: vnet_id.clone(),
                name: vnet_name.to_owned(),
                location: None,
                address_prefixes: Vec::new(),
                subnets: Vec::new(),
                declared_at: resource.declared_at.clone(),
            });
        }
        if let Some(vnet) = self.vnet_mut(&vnet_id) {
            // A later PUT of the subnet replaces the inline definition.
            vnet.subnets.retain(|known| known.id != subnet.id);
            vnet.subnets.push(subnet);
        }
    }

    fn vnet_mut(&mut self, id: &str) -> Option<&mut VirtualNetwork> {
        self.topology
            .vnets
            .iter_mut()
            .find(|vnet| vnet.id.eq_ignore_ascii_case(id))
    }

    fn add_plan(&mut self, resource: &Resource) {
        let sku = resource.body.get("sku");
        let sku_name = sku.and_then(|s| s.get("name")).and_then(Value::as_str);
        let sku_tier = sku.and_then(|s| s.get("tier")).and_then(Value::as_str);
        let kind = resource
            .body
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or("");
        let reserved = resource
            .properties()
            .and_then(|p| p.get("reserved"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        self.topology.plans.push(Plan {
            id: resource.id.clone(),
            name: resource.name.clone(),
            location: location_of(resource),
            sku_name: sku_name.map(str::to_owned),
            sku_tier: sku_tier.map(str::to_owned),
            family: PlanFamily::from_sku(sku_name, sku_tier),
            is_linux: reserved || kind.to_ascii_lowercase().contains("linux"),
            hosting_environment: hosting_environment_of(resource),
            declared_at: resource.declared_at.clone(),
        });
    }

    fn add_site(&mut self, resource: &Resource) {
        let properties = resource.properties();
        let mut site = Site::new(
            resource.id.clone(),
            resource.name.clone(),
            resource.declared_at.clone(),
        );
        site.kind = resource
            .body
            .get("kind")
            .and_then(Value::as_str)
            .map(str::to_owned);
        site.location = location_of(resource);
        site.plan_id = properties
            .and_then(|p| p.get("serverFarmId"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        site.hosting_environment = hosting_environment_of(resource);
        site.ip_mode = properties
            .and_then(|p| p.get("ipMode"))
            .and_then(Value::as_str)
            .map(str::to_owned);

        if let Some(subnet_id) = properties
            .and_then(|p| p.get("virtualNetworkSubnetId"))
            .and_then(Value::as_str)
        {
            site.integration = Some(VnetIntegration {
                subnet_id: SubnetId::new(subnet_id),
                source: IntegrationSource::VirtualNetworkSubnetId,
                declared_at: self
                    .deployment
                    .locate(resource, &["properties", "virtualNetworkSubnetId"]),
            });
        }
        if let Some(properties) = properties {
            self.read_site_properties(resource, properties, &mut site);
        }
        // Two nested deployments may put the same site. The later PUT replaces the earlier
        // one, so the site appears once, as the later deployment wrote it.
        self.topology
            .sites
            .retain(|known| !known.id.eq_ignore_ascii_case(&site.id));
        self.topology.sites.push(site);
    }

    /// Reads the site-level properties that matter: routing, app access, and the restrictions
    /// that Azure ignores when written here instead of under `siteConfig`.
    fn read_site_properties(&mut self, resource: &Resource, properties: &Object, site: &mut Site) {
        let base = ["properties"];
        // NOTE: an `httpsOnly` known only at deployment time reads as off. It decides no
        // access verdict, only whether `up` redirects plain HTTP.
        site.https_only = match properties.get("httpsOnly") {
            Some(Value::Bool(flag)) => *flag,
            Some(Value::String(text)) => text.eq_ignore_ascii_case("true"),
            _ => false,
        };
        self.read_route_all_flag(resource, &base, properties, "vnetRouteAllEnabled", site);
        let routing = self.read_setting(
            resource,
            &base,
            properties,
            ("outboundVnetRouting", Affects::RouteAll),
            site,
        );
        if let Some(routing) = routing.and_then(Value::as_object) {
            let routing_base = ["properties", "outboundVnetRouting"];
            for flag in ["allTraffic", "applicationTraffic"] {
                self.read_route_all_flag(resource, &routing_base, routing, flag, site);
            }
        }
        if let Some(access) = self.setting_public_network_access(resource, &base, properties, site)
        {
            site.access.public_network_access = access;
        }
        self.check_public_network_access_copies(resource, properties, site);

        // Azure accepts restrictions placed directly under `properties` and ignores them
        // (https://github.com/MicrosoftDocs/azure-docs/issues/69188).
        for misplaced in ["ipSecurityRestrictions", "scmIpSecurityRestrictions"] {
            if properties.get(misplaced).is_some() {
                let finding = Finding::new(
                    FindingCode::SL002,
                    Severity::Error,
                    format!(
                        "`{misplaced}` of site `{}` is under `properties`, where Azure accepts and ignores it",
                        site.name
                    ),
                )
                .outcome(subnetlock_access::Outcome::Silent)
                .help(format!("move it to `properties.siteConfig.{misplaced}`"))
                .at(&resource.id, self.deployment.locate(resource, &["properties", misplaced]));
                self.topology.findings.push(finding);
            }
        }

        if let Some(site_config) = properties.get("siteConfig").and_then(Value::as_object) {
            self.apply_site_config(resource, &["properties", "siteConfig"], site_config, site);
        }
    }

    /// Since the 2023-24 resource-provider change the site-level `publicNetworkAccess` is the
    /// authoritative one: a site PUT that sets only the `siteConfig` copy, or sets the two to
    /// different values, is rejected with HTTP 400. Sources:
    /// <https://github.com/hashicorp/terraform-provider-azurerm/issues/25818>,
    /// <https://github.com/Azure/azure-rest-api-specs/issues/29043>.
    fn check_public_network_access_copies(
        &mut self,
        resource: &Resource,
        properties: &Object,
        site: &Site,
    ) {
        let site_level = properties
            .get("publicNetworkAccess")
            .and_then(Value::as_str);
        let in_config = properties
            .get("siteConfig")
            .and_then(|config| config.get("publicNetworkAccess"))
            .and_then(Value::as_str);
        let Some(in_config) = in_config else {
            return;
        };
        let problem = match site_level {
            None => format!(
                "site `{}` sets `publicNetworkAccess` only in `siteConfig` (`{in_config}`); Azure rejects the request with HTTP 400",
                site.name
            ),
            Some(site_level)
                if read_public_network_access(site_level)
                    != read_public_network_access(in_config) =>
            {
                format!(
                    "site `{}` sets `publicNetworkAccess` to `{site_level}` in `properties` and to `{in_config}` in `siteConfig`; Azure rejects the request with HTTP 400",
                    site.name
                )
            }
            Some(_) => return,
        };
        let finding = Finding::new(FindingCode::SL015, Severity::Error, problem)
            .outcome(subnetlock_access::Outcome::DeployFails)
            .help("set `properties.publicNetworkAccess`, and give `siteConfig.publicNetworkAccess` the same value or leave it out")
            .at(
                &resource.id,
                self.deployment
                    .locate(resource, &["properties", "siteConfig", "publicNetworkAccess"]),
            );
        self.topology.findings.push(finding);
    }

    /// Applies a `SiteConfig` object, from inline `siteConfig` or from a `config/web` child.
    fn apply_site_config(
        &mut self,
        resource: &Resource,
        base: &[&str],
        config: &Object,
        site: &mut Site,
    ) {
        self.read_route_all_flag(resource, base, config, "vnetRouteAllEnabled", site);
        if let Some(access) = self.setting_public_network_access(resource, base, config, site) {
            if site.access.public_network_access == PublicNetworkAccess::Unset {
                site.access.public_network_access = access;
            }
        }
        if let Some(settings) = config.get("appSettings").and_then(Value::as_array) {
            site.app_settings = settings
                .iter()
                .filter_map(|entry| {
                    let name = entry.get("name")?.as_str()?.to_owned();
                    let value = entry.get("value").cloned().unwrap_or(Value::Null);
                    Some(AppSetting { name, value })
                })
                .collect();
            let route_all_at = settings.iter().rposition(|entry| {
                entry
                    .get("name")
                    .and_then(Value::as_str)
                    .is_some_and(|name| name.eq_ignore_ascii_case(ROUTE_ALL_APP_SETTING))
            });
            let position = route_all_at.map(|index| index.to_string());
            let mut path: Vec<&str> = base.to_vec();
            path.push("appSettings");
            if let Some(position) = &position {
                path.extend([position.as_str(), "value"]);
            }
            self.read_route_all_app_setting(resource, &path, site);
        }
        let use_main = self.setting_bool(
            resource,
            base,
            config,
            site,
            (
                "scmIpSecurityRestrictionsUseMain",
                Affects::Inbound {
                    list: None,
                    site_kind: Some(SiteKind::Scm),
                },
            ),
        );
        if let Some(use_main) = use_main {
            site.access.scm_uses_main = use_main;
        }
        for (list_kind, rules_key, default_key) in [
            (
                SiteKind::Main,
                "ipSecurityRestrictions",
                "ipSecurityRestrictionsDefaultAction",
            ),
            (
                SiteKind::Scm,
                "scmIpSecurityRestrictions",
                "scmIpSecurityRestrictionsDefaultAction",
            ),
        ] {
            let default_action =
                self.setting_action(resource, base, config, (default_key, list_kind), site);
            let rules = match config.get(rules_key) {
                None | Some(Value::Null) => None,
                Some(unknown @ Value::Unknown(_)) => {
                    // The whole list is known only at deployment time. It replaces what was
                    // written before, and stands for rules that match nothing offline, so
                    // every verdict it could change is marked as depending on it.
                    let subject = format!("the {list_kind} rule list of `{}`", site.name);
                    let expression =
                        self.unknown_value_finding(resource, base, rules_key, unknown, &subject);
                    self.forget_rule_notes(site, list_kind);
                    site.unknown_rules.push(UnknownRule {
                        list: list_kind,
                        index: None,
                        expression,
                    });
                    let target = match list_kind {
                        SiteKind::Main => &mut site.access.main,
                        SiteKind::Scm => &mut site.access.scm,
                    };
                    target.rules = vec![unknown_placeholder(unknown, 0)];
                    if let Some(default_action) = default_action {
                        target.default_action = Some(default_action);
                    }
                    continue;
                }
                Some(Value::Array(items)) => Some(items.as_slice()),
                Some(other) => {
                    // Azure reads the list into an array and fails on anything else. The list
                    // still exists, so unmatched traffic meets the implicit deny all here.
                    self.invalid_setting(resource, base, rules_key, other, "an array of rules");
                    self.forget_rule_notes(site, list_kind);
                    let target = match list_kind {
                        SiteKind::Main => &mut site.access.main,
                        SiteKind::Scm => &mut site.access.scm,
                    };
                    target.rules = vec![unknown_placeholder(other, 0)];
                    continue;
                }
            };
            if rules.is_none() && default_action.is_none() {
                continue;
            }
            let mut path: Vec<&str> = base.to_vec();
            path.push(rules_key);
            // A list written here replaces the earlier one (`siteConfig` first, then a
            // `config/web` resource), and with it what was noted about its rules.
            if rules.is_some() {
                self.forget_rule_notes(site, list_kind);
            }
            let list =
                self.read_rule_list(resource, &path, rules.unwrap_or_default(), list_kind, site);
            let target = match list_kind {
                SiteKind::Main => &mut site.access.main,
                SiteKind::Scm => &mut site.access.scm,
            };
            if rules.is_some() {
                target.rules = list.rules;
            }
            if default_action.is_some() {
                target.default_action = default_action;
            }
        }
    }

    /// Reports with SL010 that `subject`, written at `base.key`, is the unknown `value`, and
    /// returns the expression shown for it.
    fn unknown_value_finding(
        &mut self,
        resource: &Resource,
        base: &[&str],
        key: &str,
        value: &Value,
        subject: &str,
    ) -> String {
        let expression = first_unknown(value).unwrap_or_default();
        let mut path: Vec<&str> = base.to_vec();
        path.push(key);
        let finding = Finding::new(
            FindingCode::SL010,
            Severity::Warning,
            format!("{subject} is `{expression}`, which is known only at deployment time"),
        )
        .help("verdicts that this value could change are reported as depending on it")
        .at(&resource.id, self.deployment.locate(resource, &path));
        self.topology.findings.push(finding);
        expression
    }

    /// Returns the value of the access or routing setting `key` of `config`, or `None` when it
    /// is absent, `null` or known only at deployment time. An unknown value is reported with
    /// SL010 and noted on `site`, so that the verdicts it can change are marked. The typed
    /// readers (`setting_bool` and the others) read only through here, so none of them can
    /// take an unknown value for an unset one.
    fn read_setting<'v>(
        &mut self,
        resource: &Resource,
        base: &[&str],
        config: &'v Object,
        (key, affects): (&str, Affects),
        site: &mut Site,
    ) -> Option<&'v Value> {
        match config.get(key)? {
            Value::Null => None,
            value @ Value::Unknown(_) => {
                let subject = format!("`{key}` of `{}`", site.name);
                let expression = self.unknown_value_finding(resource, base, key, value, &subject);
                note_unknown_setting(site, base, key, expression, affects);
                None
            }
            value => Some(value),
        }
    }

    /// Reads the boolean route-all flag `base.key` and turns route-all on when it is true.
    fn read_route_all_flag(
        &mut self,
        resource: &Resource,
        base: &[&str],
        config: &Object,
        key: &str,
        site: &mut Site,
    ) {
        if self.setting_bool(resource, base, config, site, (key, Affects::RouteAll)) == Some(true) {
            site.route_all.enabled = true;
            site.route_all.set_by.push(setting_path(base, key));
        }
    }

    /// Reads a boolean site setting. ARM's JSON reader also takes the strings `"true"` and
    /// `"false"`; any other value is reported, because Azure rejects it.
    fn setting_bool(
        &mut self,
        resource: &Resource,
        base: &[&str],
        config: &Object,
        site: &mut Site,
        (key, affects): (&str, Affects),
    ) -> Option<bool> {
        match self.read_setting(resource, base, config, (key, affects), site)? {
            Value::Bool(flag) => Some(*flag),
            Value::String(text) if text.eq_ignore_ascii_case("true") => Some(true),
            Value::String(text) if text.eq_ignore_ascii_case("false") => Some(false),
            other => {
                self.invalid_setting(resource, base, key, other, "`true` or `false`");
                None
            }
        }
    }

    /// Reads `publicNetworkAccess`: `Enabled`, `Disabled` or empty. An invalid value is
    /// reported and read as `Disabled`, so that `check` never shows a failing deployment as open.
    fn setting_public_network_access(
        &mut self,
        resource: &Resource,
        base: &[&str],
        config: &Object,
        site: &mut Site,
    ) -> Option<PublicNetworkAccess> {
        let affects = Affects::Inbound {
            list: None,
            site_kind: None,
        };
        let value = self.read_setting(
            resource,
            base,
            config,
            ("publicNetworkAccess", affects),
            site,
        )?;
        match value {
            Value::String(text) if text.is_empty() => Some(PublicNetworkAccess::Unset),
            Value::String(text) if text.eq_ignore_ascii_case("enabled") => {
                Some(PublicNetworkAccess::Enabled)
            }
            Value::String(text) if text.eq_ignore_ascii_case("disabled") => {
                Some(PublicNetworkAccess::Disabled)
            }
            other => {
                self.invalid_setting(
                    resource,
                    base,
                    "publicNetworkAccess",
                    other,
                    "`Enabled`, `Disabled` or an empty string",
                );
                site.invalid_public_network_access = Some(
                    serde_json::to_string(other).unwrap_or_else(|_| other.type_name().to_owned()),
                );
                Some(PublicNetworkAccess::Disabled)
            }
        }
    }

    /// Reads a default action: `Allow` or `Deny`. An invalid value is reported and read as
    /// `Deny`, for the same reason as an invalid `publicNetworkAccess`.
    fn setting_action(
        &mut self,
        resource: &Resource,
        base: &[&str],
        config: &Object,
        (key, list): (&str, SiteKind),
        site: &mut Site,
    ) -> Option<Action> {
        let affects = Affects::Inbound {
            list: Some(list),
            site_kind: None,
        };
        let value = self.read_setting(resource, base, config, (key, affects), site)?;
        match value {
            Value::String(text) => match parse_action(text) {
                Some(action) => Some(action),
                None => {
                    self.invalid_setting(resource, base, key, value, "`Allow` or `Deny`");
                    Some(Action::Deny)
                }
            },
            other => {
                self.invalid_setting(resource, base, key, other, "`Allow` or `Deny`");
                Some(Action::Deny)
            }
        }
    }

    // NOTE: that Azure fails the deployment on these values is presumed from the REST schema's
    // types and enums; no error text was found.
    fn invalid_setting(
        &mut self,
        resource: &Resource,
        base: &[&str],
        key: &str,
        value: &Value,
        expected: &str,
    ) {
        let mut path: Vec<&str> = base.to_vec();
        path.push(key);
        let shown = serde_json::to_string(value).unwrap_or_else(|_| value.type_name().to_owned());
        let finding = Finding::new(
            FindingCode::SL020,
            Severity::Error,
            format!(
                "`{}` of `{}` is {shown}, which is not a valid value",
                path.join("."),
                resource.name
            ),
        )
        .outcome(subnetlock_access::Outcome::DeployFails)
        .help(format!("write {expected}"))
        .at(&resource.id, self.deployment.locate(resource, &path));
        self.topology.findings.push(finding);
    }

    /// Reads app setting `WEBSITE_VNET_ROUTE_ALL` after the app settings were replaced as a
    /// whole, which also drops what the earlier collection set for route-all. `path`
    /// locates the setting's value, for an SL010 finding when it is unknown.
    fn read_route_all_app_setting(&mut self, resource: &Resource, path: &[&str], site: &mut Site) {
        let label = format!("app setting {ROUTE_ALL_APP_SETTING}");
        let route_all = &mut site.route_all;
        route_all.set_by.retain(|setting| *setting != label);
        route_all
            .unknown_settings
            .retain(|unknown| unknown.setting != label);
        route_all.enabled = !route_all.set_by.is_empty();

        let Some(value) = site.app_setting(ROUTE_ALL_APP_SETTING).cloned() else {
            return;
        };
        let enabled = match &value {
            Value::String(text) => text.trim() == "1" || text.eq_ignore_ascii_case("true"),
            Value::Int(number) => *number == 1,
            Value::Bool(flag) => *flag,
            unknown @ Value::Unknown(_) => {
                let subject = format!("app setting `{ROUTE_ALL_APP_SETTING}` of `{}`", site.name);
                let (key, base) = path.split_last().unwrap_or((&"", &[]));
                let expression = self.unknown_value_finding(resource, base, key, unknown, &subject);
                site.route_all
                    .unknown_settings
                    .push(UnknownRouteAllSetting {
                        setting: label,
                        expression,
                    });
                return;
            }
            _ => false,
        };
        if enabled {
            site.route_all.enabled = true;
            site.route_all.set_by.push(label);
        }
    }

    /// Forgets the unknown rules and rule defaults noted for one list of `site`, before a new
    /// list replaces it.
    fn forget_rule_notes(&mut self, site: &mut Site, list_kind: SiteKind) {
        site.unknown_rules.retain(|rule| rule.list != list_kind);
        site.rules_with_defaults
            .retain(|(list, _)| *list != list_kind);
        self.defaults_findings
            .retain(|(name, list, _, _)| !(*name == site.name && *list == list_kind));
    }

    fn read_rule_list(
        &mut self,
        resource: &Resource,
        path: &[&str],
        entries: &[Value],
        list_kind: SiteKind,
        site: &mut Site,
    ) -> RuleList {
        let mut list = RuleList::default();
        for (index, entry) in entries.iter().enumerate() {
            let index_text = index.to_string();
            let mut entry_path = path.to_vec();
            entry_path.push(&index_text);
            let location = self.deployment.locate(resource, &entry_path);

            match read_rule(entry, index) {
                Ok(ReadRule::Rule(rule, warnings)) => {
                    for warning in &warnings {
                        let finding = rule_finding(warning, index, list_kind, &site.name)
                            .at(&resource.id, location.clone());
                        self.topology.findings.push(finding);
                    }
                    if let Some(finding) = defaults_finding(entry, &rule, index, list_kind, site) {
                        self.defaults_findings.push((
                            site.name.clone(),
                            list_kind,
                            index,
                            finding.at(&resource.id, location.clone()),
                        ));
                        site.rules_with_defaults.push((list_kind, index));
                    }
                    if is_synthetic_rule(&rule) {
                        let finding = Finding::new(
                            FindingCode::SL014,
                            Severity::Warning,
                            format!(
                                "rule {index} of the {list_kind} site of `{}` (`Any`, priority 2147483647) is dropped by Azure as its own synthetic entry",
                                site.name
                            ),
                        )
                        .outcome(subnetlock_access::Outcome::Silent)
                        .help("set `ipSecurityRestrictionsDefaultAction` (or the scm one) to choose what happens to unmatched traffic")
                        .at(&resource.id, location);
                        self.topology.findings.push(finding);
                        continue;
                    }
                    list.rules.push(rule);
                }
                Ok(ReadRule::Unknown(expression)) => {
                    let finding = Finding::new(
                        FindingCode::SL010,
                        Severity::Warning,
                        format!(
                            "rule {index} of the {list_kind} site of `{}` depends on `{expression}`, which is known only at deployment time",
                            site.name
                        ),
                    )
                    .help("verdicts that this rule could change are reported as depending on it")
                    .at(&resource.id, location);
                    self.topology.findings.push(finding);
                    site.unknown_rules.push(UnknownRule {
                        list: list_kind,
                        index: Some(index),
                        expression,
                    });
                    // The rule exists even though it cannot be read: it keeps the list
                    // non-empty, so unmatched traffic still meets the implicit deny all. Offline
                    // it matches nothing, and the rows it could change are marked.
                    let placeholder = unknown_placeholder(entry, index);
                    if let Some(finding) =
                        defaults_finding(entry, &placeholder, index, list_kind, site)
                    {
                        self.defaults_findings.push((
                            site.name.clone(),
                            list_kind,
                            index,
                            finding.at(&resource.id, self.deployment.locate(resource, &entry_path)),
                        ));
                        site.rules_with_defaults.push((list_kind, index));
                    }
                    list.rules.push(placeholder);
                }
                Err(error) => {
                    let finding = rule_finding(&error, index, list_kind, &site.name)
                        .at(&resource.id, location);
                    self.topology.findings.push(finding);
                    // A rejected rule must not open the site: it still counts for the
                    // implicit deny all, and offline it matches nothing.
                    list.rules.push(unknown_placeholder(entry, index));
                }
            }
        }
        list
    }

    fn apply_config_web(&mut self, resource: &Resource) {
        let Some(properties) = resource.properties() else {
            return;
        };
        let Some(position) = self.site_position(resource) else {
            return;
        };
        let mut site = self.topology.sites.remove(position);
        self.apply_site_config(resource, &["properties"], properties, &mut site);
        self.topology.sites.insert(position, site);
    }

    fn apply_config_appsettings(&mut self, resource: &Resource) {
        let Some(properties) = resource.properties() else {
            return;
        };
        let Some(position) = self.site_position(resource) else {
            return;
        };
        let site = &mut self.topology.sites[position];
        // A PUT of config/appsettings replaces the whole collection.
        site.app_settings = properties
            .iter()
            .map(|(name, value)| AppSetting {
                name: name.clone(),
                value: value.clone(),
            })
            .collect();
        // The last copy wins, as `Site::app_setting` reads it.
        let route_all_key = properties
            .iter()
            .map(|(name, _)| name)
            .filter(|name| name.eq_ignore_ascii_case(ROUTE_ALL_APP_SETTING))
            .last()
            .map_or(ROUTE_ALL_APP_SETTING, String::as_str);
        let mut site = self.topology.sites.remove(position);
        self.read_route_all_app_setting(resource, &["properties", route_all_key], &mut site);
        self.topology.sites.insert(position, site);
    }

    fn apply_legacy_integration(&mut self, resource: &Resource, source: IntegrationSource) {
        let subnet_id = resource
            .properties()
            .and_then(|p| p.get("subnetResourceId"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        let declared_at = self
            .deployment
            .locate(resource, &["properties", "subnetResourceId"]);
        let Some(position) = self.site_position(resource) else {
            return;
        };
        if let Some(subnet_id) = subnet_id {
            self.topology.sites[position].integration = Some(VnetIntegration {
                subnet_id: SubnetId::new(subnet_id),
                source,
                declared_at,
            });
        }
    }

    fn add_function(&mut self, resource: &Resource) {
        let name = resource
            .name
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_owned();
        let auth_level = resource
            .properties()
            .and_then(|p| p.get("config"))
            .and_then(|config| config.get("bindings"))
            .and_then(Value::as_array)
            .and_then(|bindings| {
                bindings.iter().find(|binding| {
                    binding
                        .get("type")
                        .and_then(Value::as_str)
                        .is_some_and(|kind| kind.eq_ignore_ascii_case("httpTrigger"))
                })
            })
            .and_then(|trigger| trigger.get("authLevel"))
            .and_then(Value::as_str)
            .unwrap_or("function")
            .to_ascii_lowercase();
        if let Some(position) = self.site_position(resource) {
            self.topology.sites[position]
                .functions
                .push(Function { name, auth_level });
        }
    }

    fn add_private_endpoint(&mut self, resource: &Resource) {
        if !resource
            .resource_type
            .eq_ignore_ascii_case("Microsoft.Network/privateEndpoints")
        {
            return;
        }
        let Some(properties) = resource.properties() else {
            return;
        };
        let subnet_id = properties
            .get("subnet")
            .and_then(|subnet| subnet.get("id"))
            .and_then(Value::as_str)
            .map(SubnetId::new);
        for key in [
            "privateLinkServiceConnections",
            "manualPrivateLinkServiceConnections",
        ] {
            let connections = properties
                .get(key)
                .and_then(Value::as_array)
                .unwrap_or_default();
            for connection in connections {
                let Some(connection) = connection.get("properties") else {
                    continue;
                };
                let Some(target) = connection
                    .get("privateLinkServiceId")
                    .and_then(Value::as_str)
                else {
                    continue;
                };
                let group_ids = connection.get("groupIds").map(strings).unwrap_or_default();
                self.topology.private_endpoints.push(PrivateEndpoint {
                    id: resource.id.clone(),
                    name: resource.name.clone(),
                    subnet_id: subnet_id.clone(),
                    target_id: target.to_owned(),
                    group_ids: group_ids.clone(),
                    dns_zone_ids: Vec::new(),
                });
                let is_sites = group_ids
                    .iter()
                    .any(|group| group.to_ascii_lowercase().starts_with("sites"));
                if is_sites {
                    if let Some(site) = self
                        .topology
                        .sites
                        .iter_mut()
                        .find(|site| site.id.eq_ignore_ascii_case(target))
                    {
                        site.access.has_private_endpoint = true;
                    }
                }
            }
        }
    }

    fn add_private_dns_zone(&mut self, resource: &Resource) {
        self.topology.private_dns_zones.push(PrivateDnsZone {
            id: resource.id.clone(),
            name: resource.name.clone(),
            linked_vnets: Vec::new(),
            a_records: Vec::new(),
        });
    }

    fn add_network_security_group(&mut self, resource: &Resource) {
        let rules = resource
            .properties()
            .and_then(|p| p.get("securityRules"))
            .and_then(Value::as_array)
            .unwrap_or_default();
        let outbound_rules = rules
            .iter()
            .filter_map(|rule| {
                let name = rule.get("name").and_then(Value::as_str).unwrap_or_default();
                read_security_rule(name, rule.get("properties")?.as_object()?)
            })
            .collect();
        self.topology
            .network_security_groups
            .push(NetworkSecurityGroup {
                id: resource.id.clone(),
                name: resource.name.clone(),
                outbound_rules,
            });
    }

    fn add_hosting_environment(&mut self, resource: &Resource) {
        let subnet_id = resource
            .properties()
            .and_then(|p| p.get("virtualNetwork"))
            .and_then(|network| network.get("id"))
            .and_then(Value::as_str)
            .map(SubnetId::new);
        self.topology.hosting_environments.push(HostingEnvironment {
            id: resource.id.clone(),
            name: resource.name.clone(),
            subnet_id,
        });
    }

    /// Children of network resources that refer to their parent by id: virtual network links
    /// and `A` records of private DNS zones, DNS zone groups of private endpoints, and security
    /// rules written as separate resources.
    fn add_network_child(&mut self, resource: &Resource) {
        let resource_type = resource.resource_type.to_ascii_lowercase();
        let parent = resource
            .id
            .rsplit_once('/')
            .and_then(|(rest, _)| rest.rsplit_once('/'))
            .map(|(parent, _)| parent.to_owned())
            .unwrap_or_default();
        let child_name = resource.name.rsplit('/').next().unwrap_or_default();
        let properties = resource.properties();
        match resource_type.as_str() {
            "microsoft.network/privatednszones/virtualnetworklinks" => {
                let vnet = properties
                    .and_then(|p| p.get("virtualNetwork"))
                    .and_then(|network| network.get("id"))
                    .and_then(Value::as_str);
                if let (Some(zone), Some(vnet)) = (self.zone_mut(&parent), vnet) {
                    zone.linked_vnets.push(vnet.to_owned());
                }
            }
            "microsoft.network/privatednszones/a" => {
                if let Some(zone) = self.zone_mut(&parent) {
                    zone.a_records.push(child_name.to_ascii_lowercase());
                }
            }
            "microsoft.network/privateendpoints/privatednszonegroups" => {
                let zone_ids: Vec<String> = properties
                    .and_then(|p| p.get("privateDnsZoneConfigs"))
                    .and_then(Value::as_array)
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|config| {
                        config
                            .get_path(&["properties", "privateDnsZoneId"])
                            .and_then(Value::as_str)
                            .map(str::to_owned)
                    })
                    .collect();
                for endpoint in self
                    .topology
                    .private_endpoints
                    .iter_mut()
                    .filter(|endpoint| endpoint.id.eq_ignore_ascii_case(&parent))
                {
                    endpoint.dns_zone_ids.extend(zone_ids.iter().cloned());
                }
            }
            "microsoft.network/networksecuritygroups/securityrules" => {
                let rule = properties.and_then(|p| read_security_rule(child_name, p));
                if let (Some(rule), Some(nsg)) = (
                    rule,
                    self.topology
                        .network_security_groups
                        .iter_mut()
                        .find(|nsg| nsg.id.eq_ignore_ascii_case(&parent)),
                ) {
                    nsg.outbound_rules.push(rule);
                }
            }
            _ => {}
        }
    }

    fn zone_mut(&mut self, id: &str) -> Option<&mut PrivateDnsZone> {
        self.topology
            .private_dns_zones
            .iter_mut()
            .find(|zone| zone.id.eq_ignore_ascii_case(id))
    }

    /// Position of the site (or slot) that a child resource such as `config/web` belongs to:
    /// the site whose id is the longest prefix of the child's id.
    fn site_position(&self, child: &Resource) -> Option<usize> {
        let lower = child.id.to_ascii_lowercase();
        self.topology
            .sites
            .iter()
            .enumerate()
            .filter(|(_, site)| lower.starts_with(&format!("{}/", site.id.to_ascii_lowercase())))
            .max_by_key(|(_, site)| site.id.len())
            .map(|(position, _)| position)
    }
}

/// Builds the SL001 finding for a problem with one rule, with Azure's outcome class and error
/// text where known. Every input format reports rule problems through this one function.
pub fn rule_finding(
    error: &subnetlock_access::RuleError,
    index: usize,
    list_kind: SiteKind,
    site_name: &str,
) -> Finding {
    let outcome = error.outcome();
    // Rules that Azure or its tooling rejects are errors; silent ones are warnings.
    let severity = match outcome {
        subnetlock_access::Outcome::Silent => Severity::Warning,
        _ => Severity::Error,
    };
    let mut message = format!("rule {index} of the {list_kind} site of `{site_name}`: {error}");
    if let Some(azure) = error.azure_message() {
        message.push_str(&format!(" (Azure: {azure})"));
    }
    let help = match miette::Diagnostic::help(error) {
        Some(help) => help.to_string(),
        None => "write the rule as Azure documents it: a CIDR such as `203.0.113.7/32`, a subnet, or service tag names".to_owned(),
    };
    Finding::new(FindingCode::SL001, severity, message)
        .outcome(outcome)
        .help(help)
}

/// The result of reading one entry of a rule list.
enum ReadRule {
    /// A rule and the warning-class problems Azure accepts silently (host bits set, `XffProxy`).
    Rule(Rule, Vec<subnetlock_access::RuleError>),
    /// The rule depends on a value unknown offline; the expression is kept for reports.
    Unknown(String),
}

fn read_rule(entry: &Value, index: usize) -> Result<ReadRule, subnetlock_access::RuleError> {
    // Only the fields that decide what a rule matches and does make it unknown. An unknown
    // `name` or `description` changes no verdict.
    const DECIDING: [&str; 7] = [
        "ipAddress",
        "subnetMask",
        "vnetSubnetResourceId",
        "tag",
        "headers",
        "action",
        "priority",
    ];
    let unknown = match entry {
        Value::Object(_) => DECIDING
            .iter()
            .find_map(|key| entry.get(key).and_then(first_unknown)),
        other => first_unknown(other),
    };
    if let Some(unknown) = unknown {
        return Ok(ReadRule::Unknown(unknown));
    }
    let text = |key: &str| entry.get(key).and_then(Value::as_str);
    let (source, mut warnings) = parse_source_with_warnings(
        text("ipAddress"),
        text("subnetMask"),
        text("vnetSubnetResourceId"),
        text("tag"),
    )?;

    let mut header_entries = Vec::new();
    if let Some(headers) = entry.get("headers").and_then(Value::as_object) {
        for (name, values) in headers.iter() {
            let values = match values {
                Value::Array(_) => strings(values),
                Value::String(single) => vec![single.clone()],
                _ => Vec::new(),
            };
            header_entries.push((name.clone(), values));
        }
    }
    let (headers, header_warnings) = parse_header_filters_with_warnings(&header_entries)?;
    warnings.extend(header_warnings);

    // NOTE: Azure's defaults for a rule without `action` or `priority` are not documented. An
    // App Gateway quickstart template omits both and is meant to allow its address, so a
    // missing action reads as Allow and a missing priority as 0.
    let action = read_rule_action(entry.get("action"))?;
    let priority = read_rule_priority(entry.get("priority"))?;

    let rule = Rule {
        name: text("name").map(str::to_owned),
        priority,
        action,
        source,
        headers,
        index,
    };
    Ok(ReadRule::Rule(rule, warnings))
}

/// Reports a rule without `action` or `priority` (absent, or `null`), whose meaning rests on
/// subnetlock's reading of Azure's undocumented defaults.
fn defaults_finding(
    entry: &Value,
    rule: &Rule,
    index: usize,
    list_kind: SiteKind,
    site: &Site,
) -> Option<Finding> {
    let unset = |field: &str| matches!(entry.get(field), None | Some(Value::Null));
    let mut read_as = Vec::new();
    if unset("action") {
        read_as.push(format!("no `action`, read as {:?}", rule.action));
    }
    if unset("priority") {
        read_as.push(format!("no `priority`, read as {}", rule.priority));
    }
    if read_as.is_empty() {
        return None;
    }
    Some(
        Finding::new(
            FindingCode::SL011,
            Severity::Warning,
            format!(
                "rule {index} of the {list_kind} site of `{}` has {}; Azure does not document these defaults",
                site.name,
                read_as.join(", and ")
            ),
        )
        .help("write `action` and `priority` on every rule"),
    )
}

/// Reads a rule's `action`: `Allow` or `Deny`, ignoring case; missing means `Allow`.
fn read_rule_action(value: Option<&Value>) -> Result<Action, RuleError> {
    match value {
        None | Some(Value::Null) => Ok(Action::Allow),
        Some(Value::String(text)) => parse_action(text).ok_or_else(|| RuleError::InvalidAction {
            value: text.clone(),
        }),
        Some(other) => Err(RuleError::InvalidAction {
            value: serde_json::to_string(other).unwrap_or_default(),
        }),
    }
}

/// Reads a rule's `priority`, an Int32 in the REST schema. ARM's JSON reader also takes a
/// string of digits; anything else fails the deployment (presumed from the schema type).
fn read_rule_priority(value: Option<&Value>) -> Result<i64, RuleError> {
    let number = match value {
        None | Some(Value::Null) => return Ok(0),
        Some(Value::Int(number)) => Some(*number),
        Some(Value::String(text)) => text.trim().parse::<i64>().ok(),
        Some(_) => None,
    };
    match number {
        Some(number) if i32::try_from(number).is_ok() => Ok(number),
        _ => Err(RuleError::InvalidPriority {
            value: value
                .map(|v| serde_json::to_string(v).unwrap_or_default())
                .unwrap_or_default(),
        }),
    }
}

/// Builds a rule that stands for one whose source is unknown offline: it never matches, and it
/// keeps the priority, action and name when those are known.
fn unknown_placeholder(entry: &Value, index: usize) -> Rule {
    Rule {
        name: entry.get("name").and_then(Value::as_str).map(str::to_owned),
        priority: read_rule_priority(entry.get("priority")).unwrap_or(0),
        action: read_rule_action(entry.get("action")).unwrap_or(Action::Deny),
        source: SourceCondition::Ranges(Vec::new()),
        headers: Default::default(),
        index,
    }
}

/// Returns whether `rule` is what Azure treats as its own synthetic "Allow all"/"Deny all" entry
/// (`Any` at priority 2147483647, no header filters), which it drops from a written list.
pub fn is_synthetic_rule(rule: &Rule) -> bool {
    rule.priority == subnetlock_access::SYNTHETIC_RULE_PRIORITY
        && rule.source == SourceCondition::Any
        && rule.headers.is_empty()
}

/// The residual expression of the first unknown part of `value`, for reports. A secret one
/// (from a secure parameter, a Key Vault reference or a `list*` call) is not shown.
fn first_unknown(value: &Value) -> Option<String> {
    match value {
        Value::Unknown(unknown) if unknown.secret => Some("<secret value>".to_owned()),
        Value::Unknown(unknown) => Some(unknown.expression.clone()),
        Value::Array(items) => items.iter().find_map(first_unknown),
        Value::Object(object) => object.iter().find_map(|(_, item)| first_unknown(item)),
        _ => None,
    }
}

/// Reads `Allow` or `Deny`, ignoring case; anything else is `None`.
pub fn parse_action(text: &str) -> Option<Action> {
    if text.eq_ignore_ascii_case("allow") {
        Some(Action::Allow)
    } else if text.eq_ignore_ascii_case("deny") {
        Some(Action::Deny)
    } else {
        None
    }
}

fn read_public_network_access(text: &str) -> PublicNetworkAccess {
    if text.eq_ignore_ascii_case("enabled") {
        PublicNetworkAccess::Enabled
    } else if text.eq_ignore_ascii_case("disabled") {
        PublicNetworkAccess::Disabled
    } else {
        PublicNetworkAccess::Unset
    }
}

fn read_subnet(
    id: SubnetId,
    name: &str,
    properties: Option<&Object>,
    declared_at: subnetlock_arm::SourceLocation,
) -> Subnet {
    let get = |key: &str| properties.and_then(|p| p.get(key));
    let mut address_prefixes = get("addressPrefixes").map(strings).unwrap_or_default();
    if let Some(prefix) = get("addressPrefix").and_then(Value::as_str) {
        address_prefixes.insert(0, prefix.to_owned());
    }
    let service_endpoints = get("serviceEndpoints")
        .and_then(Value::as_array)
        .unwrap_or_default()
        .iter()
        .filter_map(|endpoint| endpoint.get("service").and_then(Value::as_str))
        .map(str::to_owned)
        .collect();
    let delegations = get("delegations")
        .and_then(Value::as_array)
        .unwrap_or_default()
        .iter()
        .filter_map(|delegation| {
            delegation
                .get_path(&["properties", "serviceName"])
                .or_else(|| delegation.get("serviceName"))
                .and_then(Value::as_str)
        })
        .map(str::to_owned)
        .collect();
    let reference_id = |key: &str| {
        get(key)
            .and_then(|reference| reference.get("id"))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    Subnet {
        id,
        name: name.to_owned(),
        address_prefixes,
        service_endpoints,
        delegations,
        nat_gateway: reference_id("natGateway"),
        route_table: reference_id("routeTable"),
        network_security_group: reference_id("networkSecurityGroup"),
        declared_at,
    }
}

/// Reads one security rule; `None` for inbound rules, which do not affect egress.
fn read_security_rule(name: &str, properties: &Object) -> Option<SecurityRule> {
    let text = |key: &str| properties.get(key).and_then(Value::as_str);
    if !text("direction").is_some_and(|direction| direction.eq_ignore_ascii_case("Outbound")) {
        return None;
    }
    let both = |single: &str, plural: &str| {
        let mut values: Vec<String> = text(single).map(str::to_owned).into_iter().collect();
        values.extend(properties.get(plural).map(strings).unwrap_or_default());
        values
    };
    Some(SecurityRule {
        name: name.to_owned(),
        priority: properties
            .get("priority")
            .and_then(Value::as_i64)
            .unwrap_or(i64::MAX),
        allow: text("access").is_some_and(|access| access.eq_ignore_ascii_case("Allow")),
        protocol: text("protocol").unwrap_or("*").to_owned(),
        destination_prefixes: both("destinationAddressPrefix", "destinationAddressPrefixes"),
        destination_ports: both("destinationPortRange", "destinationPortRanges"),
    })
}

fn hosting_environment_of(resource: &Resource) -> Option<String> {
    resource
        .properties()
        .and_then(|p| p.get("hostingEnvironmentProfile"))
        .and_then(|profile| profile.get("id"))
        .and_then(Value::as_str)
        .map(str::to_owned)
}

fn location_of(resource: &Resource) -> Option<String> {
    resource
        .body
        .get("location")
        .and_then(Value::as_str)
        .map(str::to_owned)
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .unwrap_or_default()
        .iter()
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect()
}
