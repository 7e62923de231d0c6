//! The resources of a deployment that decide who can reach whom.

use serde::Serialize;
use subnetlock_access::{SiteAccess, SubnetId};
use subnetlock_arm::{SourceLocation, Value};

/// DNS suffix of App Service host names in Azure's public cloud.
pub const HOST_SUFFIX: &str = "azurewebsites.net";

/// Everything a deployment creates that matters for access, with the findings Azure would raise.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Topology {
    pub vnets: Vec<VirtualNetwork>,
    pub plans: Vec<Plan>,
    pub sites: Vec<Site>,
    pub private_endpoints: Vec<PrivateEndpoint>,
    pub private_dns_zones: Vec<PrivateDnsZone>,
    pub network_security_groups: Vec<NetworkSecurityGroup>,
    pub hosting_environments: Vec<HostingEnvironment>,
    pub findings: Vec<crate::Finding>,
    /// The scale unit the findings assume, once [`crate::validate_scale_unit`] has run.
    pub scale_unit: Option<crate::ScaleUnit>,
}

impl Topology {
    pub fn site(&self, name: &str) -> Option<&Site> {
        self.sites
            .iter()
            .find(|site| site.name.eq_ignore_ascii_case(name))
    }

    pub fn plan(&self, id: &str) -> Option<&Plan> {
        self.plans
            .iter()
            .find(|plan| plan.id.eq_ignore_ascii_case(id))
    }

    pub fn subnet(&self, id: &SubnetId) -> Option<(&VirtualNetwork, &Subnet)> {
        self.vnets.iter().find_map(|vnet| {
            vnet.subnets
                .iter()
                .find(|subnet| &subnet.id == id)
                .map(|subnet| (vnet, subnet))
        })
    }

    pub fn network_security_group(&self, id: &str) -> Option<&NetworkSecurityGroup> {
        self.network_security_groups
            .iter()
            .find(|nsg| nsg.id.eq_ignore_ascii_case(id))
    }

    /// Finds the App Service Environment that hosts `site`, named by the site's own
    /// `hostingEnvironmentProfile` or by its plan's.
    pub fn hosting_environment_of(&self, site: &Site) -> Option<&HostingEnvironment> {
        let plan_environment = site
            .plan_id
            .as_deref()
            .and_then(|id| self.plan(id))
            .and_then(|plan| plan.hosting_environment.as_deref());
        let id = site.hosting_environment.as_deref().or(plan_environment)?;
        self.hosting_environments
            .iter()
            .find(|environment| environment.id.eq_ignore_ascii_case(id))
    }

    /// Finds a subnet by id, by `vnet/subnet` or by its bare name when that is unique.
    pub fn find_subnet(&self, text: &str) -> Option<&Subnet> {
        let all = || self.vnets.iter().flat_map(|vnet| vnet.subnets.iter());
        if text.starts_with('/') {
            let id = SubnetId::new(text);
            return all().find(|subnet| subnet.id == id);
        }
        if let Some((vnet_name, subnet_name)) = text.split_once('/') {
            return self
                .vnets
                .iter()
                .filter(|vnet| vnet.name.eq_ignore_ascii_case(vnet_name))
                .flat_map(|vnet| vnet.subnets.iter())
                .find(|subnet| subnet.name.eq_ignore_ascii_case(subnet_name));
        }
        let mut matches = all().filter(|subnet| subnet.name.eq_ignore_ascii_case(text));
        let first = matches.next()?;
        match matches.next() {
            Some(_) => None,
            None => Some(first),
        }
    }

    /// The site that serves `host` (`<name>.azurewebsites.net` or `<name>.scm.azurewebsites.net`),
    /// and which of its two sites the host name addresses.
    pub fn site_for_host(&self, host: &str) -> Option<(&Site, subnetlock_access::SiteKind)> {
        let (index, kind) = self.site_index_for_host(host)?;
        Some((self.sites.get(index)?, kind))
    }

    /// Returns the index in `sites` of the site that serves `host`, and which of its two sites
    /// the host name addresses, as [`Self::site_for_host`] does.
    pub fn site_index_for_host(&self, host: &str) -> Option<(usize, subnetlock_access::SiteKind)> {
        // A fully qualified name may end in one dot (RFC 1034, section 3.1), but two dots do
        // not name the same host.
        let host = host.split(':').next().unwrap_or(host);
        let host = host.strip_suffix('.').unwrap_or(host);
        self.sites.iter().enumerate().find_map(|(index, site)| {
            if host.eq_ignore_ascii_case(&site.default_host_name) {
                Some((index, subnetlock_access::SiteKind::Main))
            } else if host.eq_ignore_ascii_case(&site.scm_host_name) {
                Some((index, subnetlock_access::SiteKind::Scm))
            } else {
                None
            }
        })
    }
}

/// A `Microsoft.Network/virtualNetworks` resource with its subnets, inline or separate.
#[derive(Clone, Debug, Serialize)]
pub struct VirtualNetwork {
    pub id: String,
    pub name: String,
    pub location: Option<String>,
    pub address_prefixes: Vec<String>,
    pub subnets: Vec<Subnet>,
    pub declared_at: SourceLocation,
}

/// A subnet and the settings that change how its traffic reaches App Service.
#[derive(Clone, Debug, Serialize)]
pub struct Subnet {
    pub id: SubnetId,
    pub name: String,
    pub address_prefixes: Vec<String>,
    /// Service names of the subnet's service endpoints, for example `Microsoft.Web`.
    pub service_endpoints: Vec<String>,
    /// Service names the subnet is delegated to, for example `Microsoft.Web/serverFarms`.
    pub delegations: Vec<String>,
    pub nat_gateway: Option<String>,
    pub route_table: Option<String>,
    pub network_security_group: Option<String>,
    pub declared_at: SourceLocation,
}

impl Subnet {
    /// Returns whether traffic from this subnet to App Service carries the subnet identity.
    pub fn has_web_service_endpoint(&self) -> bool {
        self.service_endpoints
            .iter()
            .any(|service| service.eq_ignore_ascii_case("Microsoft.Web"))
    }

    pub fn is_delegated_to(&self, service: &str) -> bool {
        self.delegations
            .iter()
            .any(|name| name.eq_ignore_ascii_case(service))
    }

    /// Returns the IPv4 prefix length of the first address prefix, when it is IPv4.
    pub fn ipv4_prefix_length(&self) -> Option<u8> {
        self.address_prefixes.iter().find_map(|prefix| {
            let (address, length) = prefix.split_once('/')?;
            address.parse::<std::net::Ipv4Addr>().ok()?;
            length.parse().ok()
        })
    }
}

/// The pricing family of an App Service plan, from its SKU.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum PlanFamily {
    Free,
    Shared,
    Basic,
    Standard,
    Premium,
    PremiumV2,
    PremiumV3,
    ElasticPremium,
    Consumption,
    FlexConsumption,
    Isolated,
    Unknown,
}

impl PlanFamily {
    /// Reads the family from `sku.tier`, or from `sku.name` when the tier is absent or unknown.
    pub fn from_sku(name: Option<&str>, tier: Option<&str>) -> PlanFamily {
        if let Some(family) = tier.and_then(family_from_tier) {
            return family;
        }
        name.map(family_from_sku_name)
            .unwrap_or(PlanFamily::Unknown)
    }

    /// Whether regional VNet integration is available: Basic and above, Elastic Premium and
    /// Flex Consumption; never Free, Shared, classic Consumption or Isolated (already in a
    /// VNet). Source: <https://learn.microsoft.com/azure/app-service/overview-vnet-integration>
    /// and <https://learn.microsoft.com/azure/azure-functions/functions-networking-options>.
    pub fn supports_vnet_integration(self) -> bool {
        matches!(
            self,
            PlanFamily::Basic
                | PlanFamily::Standard
                | PlanFamily::Premium
                | PlanFamily::PremiumV2
                | PlanFamily::PremiumV3
                | PlanFamily::ElasticPremium
                | PlanFamily::FlexConsumption
        )
    }
}

fn family_from_tier(tier: &str) -> Option<PlanFamily> {
    let family = match tier.to_ascii_lowercase().as_str() {
        "free" => PlanFamily::Free,
        "shared" => PlanFamily::Shared,
        "basic" => PlanFamily::Basic,
        "standard" => PlanFamily::Standard,
        "premium" => PlanFamily::Premium,
        "premiumv2" => PlanFamily::PremiumV2,
        "premiumv3" | "premium0v3" | "premiummv3" => PlanFamily::PremiumV3,
        "elasticpremium" => PlanFamily::ElasticPremium,
        "dynamic" => PlanFamily::Consumption,
        "flexconsumption" => PlanFamily::FlexConsumption,
        "isolated" | "isolatedv2" => PlanFamily::Isolated,
        _ => return None,
    };
    Some(family)
}

fn family_from_sku_name(name: &str) -> PlanFamily {
    let upper = name.to_ascii_uppercase();
    if upper == "Y1" {
        return PlanFamily::Consumption;
    }
    if upper.starts_with("FC") {
        return PlanFamily::FlexConsumption;
    }
    if upper.starts_with("EP") || upper.starts_with("WS") {
        return PlanFamily::ElasticPremium;
    }
    if upper.starts_with('I') {
        return PlanFamily::Isolated;
    }
    if upper.ends_with("V3") {
        return PlanFamily::PremiumV3;
    }
    if upper.ends_with("V2") {
        return PlanFamily::PremiumV2;
    }
    match upper.chars().next() {
        Some('F') => PlanFamily::Free,
        Some('D') => PlanFamily::Shared,
        Some('B') => PlanFamily::Basic,
        Some('S') => PlanFamily::Standard,
        Some('P') => PlanFamily::Premium,
        _ => PlanFamily::Unknown,
    }
}

/// A `Microsoft.Web/serverfarms` resource.
#[derive(Clone, Debug, Serialize)]
pub struct Plan {
    pub id: String,
    pub name: String,
    pub location: Option<String>,
    pub sku_name: Option<String>,
    pub sku_tier: Option<String>,
    pub family: PlanFamily,
    /// `kind` contains `linux` or `properties.reserved` is true.
    pub is_linux: bool,
    /// `properties.hostingEnvironmentProfile.id`: the App Service Environment of the plan.
    pub hosting_environment: Option<String>,
    pub declared_at: SourceLocation,
}

/// The property that set up a site's regional VNet integration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum IntegrationSource {
    /// `properties.virtualNetworkSubnetId` on the site.
    VirtualNetworkSubnetId,
    /// A `Microsoft.Web/sites/config` child named `virtualNetwork` (`subnetResourceId`).
    ConfigVirtualNetwork,
    /// A `Microsoft.Web/sites/networkConfig` child named `virtualNetwork`.
    NetworkConfigVirtualNetwork,
}

/// A site's regional VNet integration.
#[derive(Clone, Debug, Serialize)]
pub struct VnetIntegration {
    pub subnet_id: SubnetId,
    pub source: IntegrationSource,
    pub declared_at: SourceLocation,
}

/// Whether all outbound traffic of a site enters its VNet, and the settings that turned it on.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RouteAll {
    pub enabled: bool,
    /// The settings that turned it on: `vnetRouteAllEnabled`, `WEBSITE_VNET_ROUTE_ALL`,
    /// `outboundVnetRouting.allTraffic` or `outboundVnetRouting.applicationTraffic`.
    pub set_by: Vec<String>,
    /// Route-all settings whose value is known only at deployment time, read as off offline.
    /// Any one of them could turn route-all on.
    pub unknown_settings: Vec<UnknownRouteAllSetting>,
}

impl RouteAll {
    /// Returns whether route-all is off offline but a setting known only at deployment time
    /// could turn it on.
    pub fn depends_on_unknown(&self) -> bool {
        !self.enabled && !self.unknown_settings.is_empty()
    }
}

/// A route-all setting whose value is known only at deployment time.
#[derive(Clone, Debug, Serialize)]
pub struct UnknownRouteAllSetting {
    /// The setting's path, in the form `set_by` uses, for example
    /// `properties.siteConfig.vnetRouteAllEnabled`.
    pub setting: String,
    /// The residual expression, or `<secret value>`.
    pub expression: String,
}

/// One HTTP-triggered function declared in the template (`Microsoft.Web/sites/functions`).
#[derive(Clone, Debug, Serialize)]
pub struct Function {
    pub name: String,
    /// `authLevel` of the HTTP trigger; `function` when omitted.
    pub auth_level: String,
}

/// One app setting; the value may be unknown offline (for example a `listKeys` result).
#[derive(Clone, Debug, Serialize)]
pub struct AppSetting {
    pub name: String,
    /// Never serialized: app settings carry connection strings and keys, often from secure
    /// parameters, and reports must not print them.
    #[serde(serialize_with = "redact")]
    pub value: Value,
}

fn redact<S: serde::Serializer>(value: &Value, serializer: S) -> Result<S::Ok, S::Error> {
    match value {
        Value::Null => serializer.serialize_none(),
        _ => serializer.serialize_str("<redacted>"),
    }
}

/// A `Microsoft.Web/sites` resource (web app or function app) or a deployment slot.
#[derive(Clone, Debug, Serialize)]
pub struct Site {
    pub id: String,
    pub name: String,
    pub kind: Option<String>,
    pub location: Option<String>,
    pub plan_id: Option<String>,
    /// `properties.hostingEnvironmentProfile.id`: the App Service Environment of the site.
    pub hosting_environment: Option<String>,
    /// `properties.ipMode` (`IPv4`, `IPv6` or `IPv4AndIPv6`) as written.
    pub ip_mode: Option<String>,
    pub default_host_name: String,
    pub scm_host_name: String,
    pub integration: Option<VnetIntegration>,
    pub route_all: RouteAll,
    pub access: SiteAccess,
    pub app_settings: Vec<AppSetting>,
    pub functions: Vec<Function>,
    /// Rules, or whole rule lists, that depend on values unknown offline. `access` contains a
    /// placeholder that matches nothing for each of them; a whole unknown list has one.
    pub unknown_rules: Vec<UnknownRule>,
    /// Access settings whose value is known only at deployment time, read as unset offline.
    pub unknown_settings: Vec<UnknownSetting>,
    /// Rules of `access` written without `action` or `priority`, by list and array index.
    pub rules_with_defaults: Vec<(subnetlock_access::SiteKind, usize)>,
    /// `httpsOnly`: plain HTTP requests get a redirect to HTTPS. Read only when known.
    pub https_only: bool,
    /// An invalid `publicNetworkAccess` value as JSON text, which `access` reads as `Disabled`
    /// (finding SL020).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invalid_public_network_access: Option<String>,
    pub declared_at: SourceLocation,
}

impl Site {
    /// Returns the rule lists that Azure reads whose rules are all Allow while their default
    /// action is also Allow: traffic no rule matches is allowed anyway, so the rules restrict
    /// nothing (SL019). The scm list does not count when the scm site uses the main list, and
    /// no list counts when app access is off.
    pub fn allow_lists_with_default_allow(&self) -> Vec<subnetlock_access::SiteKind> {
        use subnetlock_access::{Action, SiteKind};
        // With app access off, no public request reaches the rules.
        if self.access.app_access_off() {
            return Vec::new();
        }
        [SiteKind::Main, SiteKind::Scm]
            .into_iter()
            .filter(|kind| !(*kind == SiteKind::Scm && self.access.scm_uses_main))
            // Whether an unknown list contains only Allow rules is not known offline.
            .filter(|kind| self.unknown_list(*kind).is_none())
            .filter(|kind| {
                let list = self.access.list(*kind);
                !list.rules.is_empty()
                    && list.rules.iter().all(|rule| rule.action == Action::Allow)
                    && list.default_action == Some(Action::Allow)
            })
            .collect()
    }

    /// Returns the entry for `list` when the whole list is known only at deployment time.
    pub fn unknown_list(&self, list: subnetlock_access::SiteKind) -> Option<&UnknownRule> {
        self.unknown_rules
            .iter()
            .find(|rule| rule.list == list && rule.index.is_none())
    }

    /// Returns the entry for the default action of `list` when its value is known only at
    /// deployment time.
    pub fn unknown_default_action(
        &self,
        list: subnetlock_access::SiteKind,
    ) -> Option<&UnknownSetting> {
        let setting = match list {
            subnetlock_access::SiteKind::Main => "ipSecurityRestrictionsDefaultAction",
            subnetlock_access::SiteKind::Scm => "scmIpSecurityRestrictionsDefaultAction",
        };
        self.unknown_settings
            .iter()
            .find(|unknown| unknown.setting == setting)
    }

    /// Creates a site as declared, before its settings, rules and functions are read. A slot
    /// is named `<app>/<slot>` and served at `<app>-<slot>.azurewebsites.net`.
    pub fn new(id: String, name: String, declared_at: SourceLocation) -> Site {
        let (default_host_name, scm_host_name) = host_names(&name.replace('/', "-"));
        Site {
            id,
            name,
            kind: None,
            location: None,
            plan_id: None,
            hosting_environment: None,
            ip_mode: None,
            default_host_name,
            scm_host_name,
            integration: None,
            route_all: RouteAll::default(),
            access: SiteAccess::default(),
            app_settings: Vec::new(),
            functions: Vec::new(),
            unknown_rules: Vec::new(),
            unknown_settings: Vec::new(),
            rules_with_defaults: Vec::new(),
            https_only: false,
            invalid_public_network_access: None,
            declared_at,
        }
    }
}

/// An access setting (`publicNetworkAccess`, a default action, `scmIpSecurityRestrictionsUseMain`)
/// whose value is known only at deployment time.
#[derive(Clone, Debug, Serialize)]
pub struct UnknownSetting {
    /// The setting's name as Azure spells it.
    pub setting: String,
    /// The residual expression, or `<secret value>`.
    pub expression: String,
    /// The rule list whose verdicts it can change, or `None` for a setting of no list.
    pub list: Option<subnetlock_access::SiteKind>,
    /// The site (main or scm) whose verdicts it can change; `None` for both.
    pub site_kind: Option<subnetlock_access::SiteKind>,
}

impl UnknownSetting {
    /// Returns whether a verdict for `site_kind`, decided on `list`, can depend on it.
    pub fn affects(
        &self,
        site_kind: subnetlock_access::SiteKind,
        list: subnetlock_access::SiteKind,
    ) -> bool {
        match (self.list, self.site_kind) {
            (Some(own), _) => own == list,
            (None, Some(own)) => own == site_kind,
            (None, None) => true,
        }
    }
}

/// An access-restriction rule, or a whole rule list, that could not be read offline.
#[derive(Clone, Debug, Serialize)]
pub struct UnknownRule {
    pub list: subnetlock_access::SiteKind,
    /// Position in the list as written, or `None` when the whole list is unknown.
    pub index: Option<usize>,
    /// The residual expression that made it unknown.
    pub expression: String,
}

impl UnknownRule {
    /// Names the rule or list, with its expression, for the marks on verdicts it could change.
    pub fn describe(&self) -> String {
        match self.index {
            Some(index) => format!("rule {index}: {}", self.expression),
            None => format!("{} rule list: {}", self.list, self.expression),
        }
    }
}

/// Marks `decision` as depending on Azure's undocumented rule defaults when the rule that
/// decided it was written without `action` or `priority`.
pub fn note_rule_defaults(site: &Site, decision: &mut subnetlock_access::Decision) {
    if let subnetlock_access::Reason::Rule { list, index, .. } = decision.reason {
        let defaulted = site.rules_with_defaults.contains(&(list, index));
        if defaulted
            && !decision
                .ambiguities
                .contains(&subnetlock_access::Ambiguity::RuleDefaults)
        {
            decision
                .ambiguities
                .push(subnetlock_access::Ambiguity::RuleDefaults);
        }
    }
}

impl Site {
    pub fn is_function_app(&self) -> bool {
        self.kind
            .as_deref()
            .is_some_and(|kind| kind.to_ascii_lowercase().contains("functionapp"))
    }

    pub fn app_setting(&self, name: &str) -> Option<&Value> {
        self.app_settings
            .iter()
            .rev()
            .find(|setting| setting.name.eq_ignore_ascii_case(name))
            .map(|setting| &setting.value)
    }
}

/// A `Microsoft.Network/privateEndpoints` resource that targets a site.
#[derive(Clone, Debug, Serialize)]
pub struct PrivateEndpoint {
    pub id: String,
    pub name: String,
    pub subnet_id: Option<SubnetId>,
    /// Id of the site (or other resource) the endpoint connects to.
    pub target_id: String,
    pub group_ids: Vec<String>,
    /// Ids of the private DNS zones the endpoint's DNS zone groups register it in.
    pub dns_zone_ids: Vec<String>,
}

/// Name of the private DNS zone that resolves App Service host names to private endpoints.
/// Source: <https://learn.microsoft.com/azure/app-service/overview-private-endpoint>.
pub const PRIVATE_LINK_ZONE: &str = "privatelink.azurewebsites.net";

/// A `Microsoft.Network/privateDnsZones` resource with its virtual network links and the
/// record names written into it.
#[derive(Clone, Debug, Serialize)]
pub struct PrivateDnsZone {
    pub id: String,
    pub name: String,
    /// Ids of the virtual networks linked to the zone (`virtualNetworkLinks`).
    pub linked_vnets: Vec<String>,
    /// Relative names of `A` records written as separate resources, for example `app` or
    /// `app.scm`.
    pub a_records: Vec<String>,
}

impl PrivateDnsZone {
    pub fn is_linked_to(&self, vnet_id: &str) -> bool {
        self.linked_vnets
            .iter()
            .any(|linked| linked.eq_ignore_ascii_case(vnet_id))
    }
}

/// A `Microsoft.Network/networkSecurityGroups` resource; only its outbound rules matter here.
#[derive(Clone, Debug, Serialize)]
pub struct NetworkSecurityGroup {
    pub id: String,
    pub name: String,
    pub outbound_rules: Vec<SecurityRule>,
}

/// One outbound security rule of a network security group.
#[derive(Clone, Debug, Serialize)]
pub struct SecurityRule {
    pub name: String,
    pub priority: i64,
    /// `true` for `Allow`, `false` for `Deny`.
    pub allow: bool,
    /// `Tcp`, `Udp`, `Icmp` or `*`.
    pub protocol: String,
    /// `destinationAddressPrefix` and `destinationAddressPrefixes` together: CIDRs, service
    /// tags such as `AppService` or `Internet`, or `*`.
    pub destination_prefixes: Vec<String>,
    /// `destinationPortRange` and `destinationPortRanges` together: `*`, `443` or `1-1024`.
    pub destination_ports: Vec<String>,
}

/// A `Microsoft.Web/hostingEnvironments` resource (App Service Environment).
#[derive(Clone, Debug, Serialize)]
pub struct HostingEnvironment {
    pub id: String,
    pub name: String,
    /// The subnet the environment is deployed into (`virtualNetwork.id`).
    pub subnet_id: Option<SubnetId>,
}

/// Builds the default and scm host names of a site in Azure's public cloud.
pub fn host_names(site_name: &str) -> (String, String) {
    let lower = site_name.to_ascii_lowercase();
    (
        format!("{lower}.{HOST_SUFFIX}"),
        format!("{lower}.scm.{HOST_SUFFIX}"),
    )
}
