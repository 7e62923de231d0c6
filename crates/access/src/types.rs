//! The data the engine reads and returns: rules, sources, requests and decisions.

use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::ascii::eq_ignore_case;

/// The effect of a rule, a default action or a decision on a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Action {
    Allow,
    Deny,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Allow => f.write_str("Allow"),
            Action::Deny => f.write_str("Deny"),
        }
    }
}

/// ARM resource id of a subnet.
///
/// ARM ids are case-insensitive, so equality and hashing ignore ASCII case while the original
/// spelling is kept for display.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SubnetId(String);

impl SubnetId {
    pub fn new(id: impl Into<String>) -> Self {
        SubnetId(id.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Returns the id of the virtual network that contains this subnet: everything before
    /// `/subnets/`.
    pub fn vnet_id(&self) -> &str {
        match self.0.to_ascii_lowercase().rfind("/subnets/") {
            Some(at) => &self.0[..at],
            None => &self.0,
        }
    }

    /// Returns the subnet's own name, the last segment of the id.
    pub fn name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or(&self.0)
    }
}

impl PartialEq for SubnetId {
    fn eq(&self, other: &Self) -> bool {
        self.0.eq_ignore_ascii_case(&other.0)
    }
}

impl Eq for SubnetId {}

impl std::hash::Hash for SubnetId {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        for byte in self.0.bytes() {
            state.write_u8(byte.to_ascii_lowercase());
        }
    }
}

impl fmt::Display for SubnetId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An IPv4 or IPv6 network in CIDR form. Host bits below the prefix are cleared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct IpNet {
    pub network: IpAddr,
    pub prefix: u8,
}

/// The source condition of one access-restriction rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SourceCondition {
    /// `ipAddress: "Any"`: every IPv4 and IPv6 source, service-endpoint traffic included.
    Any,
    /// One to eight CIDR ranges (or a legacy address plus `subnetMask`); matches when the
    /// source address is inside any of them. Never matches service-endpoint traffic, because
    /// in the multitenant service IP rules do not see VNet addresses.
    Ranges(Vec<IpNet>),
    /// `ipAddress: "AnyVnets"`: traffic from any subnet with the `Microsoft.Web` service
    /// endpoint.
    AnyVnets,
    /// `vnetSubnetResourceId`: traffic that arrives over the `Microsoft.Web` service endpoint
    /// from exactly this subnet.
    Subnet(SubnetId),
    /// `tag: ServiceTag`: one to eight service tag names, kept as written.
    ServiceTags(Vec<String>),
    /// `tag: XffProxy`: semantics undocumented by Microsoft; see [`EngineOptions`].
    XffProxy(Vec<IpNet>),
}

/// HTTP header filters of one rule. An empty list means no filter on that header.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeaderFilters {
    pub x_forwarded_for: Vec<IpNet>,
    pub x_forwarded_host: Vec<String>,
    pub x_azure_fdid: Vec<String>,
    pub x_fd_health_probe: Vec<String>,
}

impl HeaderFilters {
    pub fn is_empty(&self) -> bool {
        self.x_forwarded_for.is_empty()
            && self.x_forwarded_host.is_empty()
            && self.x_azure_fdid.is_empty()
            && self.x_fd_health_probe.is_empty()
    }
}

/// One access-restriction rule, already parsed and checked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    /// `name` as written; informational only.
    pub name: Option<String>,
    pub priority: i64,
    pub action: Action,
    pub source: SourceCondition,
    pub headers: HeaderFilters,
    /// Position of the rule in the list as written, used to keep ties in array order and to
    /// point reports at the rule.
    pub index: usize,
}

/// The rules of the main site or of the scm site, with its default action.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleList {
    pub rules: Vec<Rule>,
    /// `ipSecurityRestrictionsDefaultAction` or `scmIpSecurityRestrictionsDefaultAction`;
    /// `None` means unset, which selects the implicit rule.
    pub default_action: Option<Action>,
}

/// The site's `publicNetworkAccess` setting.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum PublicNetworkAccess {
    Enabled,
    Disabled,
    /// Unset or empty: enabled unless the site has a private endpoint.
    #[default]
    Unset,
}

/// Everything the front end reads to decide inbound access to one app (or slot).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SiteAccess {
    pub main: RuleList,
    pub scm: RuleList,
    /// `scmIpSecurityRestrictionsUseMain`.
    pub scm_uses_main: bool,
    pub public_network_access: PublicNetworkAccess,
    /// Whether at least one private endpoint (group id `sites`) points at the site.
    pub has_private_endpoint: bool,
}

impl SiteAccess {
    /// Returns whether app access is off: `publicNetworkAccess` is `Disabled`, or it is unset
    /// and the site has a private endpoint. No public request then reaches the rules.
    pub fn app_access_off(&self) -> bool {
        crate::reference::public_access_disabled(self).is_some()
    }

    /// Returns the rule list written for the main or the scm site.
    pub fn list(&self, kind: SiteKind) -> &RuleList {
        match kind {
            SiteKind::Main => &self.main,
            SiteKind::Scm => &self.scm,
        }
    }
}

/// The one of the app's two host names that a request addressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SiteKind {
    /// `<app>.azurewebsites.net` and custom domains.
    Main,
    /// `<app>.scm.azurewebsites.net`, the advanced tools (Kudu) site.
    Scm,
}

impl fmt::Display for SiteKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SiteKind::Main => f.write_str("main"),
            SiteKind::Scm => f.write_str("scm"),
        }
    }
}

/// The entry through which the request reached the front end.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Entry {
    /// The public `*.azurewebsites.net` address.
    #[default]
    PublicEndpoint,
    /// One of the site's private endpoints.
    PrivateEndpoint,
}

/// The source of a request as the front end sees it.
///
/// The emulator builds this from the listener a connection arrived on and from the model, never
/// from anything the client sends.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    /// The address shown in `x-ms-forbidden-ip`: the TCP peer for internet traffic, a synthetic
    /// `fd00::` address for service-endpoint traffic.
    pub address: IpAddr,
    /// The subnet whose `Microsoft.Web` service endpoint carried the request, if any.
    pub service_endpoint: Option<SubnetId>,
    pub entry: Entry,
    /// Service tags the source is known to belong to when no prefix table is loaded, for
    /// example `AzureFrontDoor.Backend` for an emulated Front Door.
    pub service_tags: Vec<String>,
}

impl Source {
    /// Builds the source of a caller on the internet (or any public address) with no VNet
    /// identity.
    pub fn internet(address: IpAddr) -> Self {
        Source {
            address,
            service_endpoint: None,
            entry: Entry::PublicEndpoint,
            service_tags: Vec::new(),
        }
    }
}

/// Read access to request headers, by lower-case name.
pub trait HeaderLookup {
    /// Every value of the header, in order, each as sent (a comma-separated value stays one
    /// string).
    fn values(&self, lower_case_name: &str) -> Vec<&str>;

    /// Calls `visit` with each value of the header, in order, until it returns `true`.
    ///
    /// Returns whether the header is present at all. The compiled engine calls this on its
    /// hot path unless [`HeaderLookup::visit_headers`] lists the headers. The provided body
    /// collects [`HeaderLookup::values`] into a `Vec`, so implementations that can walk their
    /// values in place should override it to avoid that allocation.
    fn visit_values(&self, lower_case_name: &str, visit: &mut dyn FnMut(&str) -> bool) -> bool {
        let values = self.values(lower_case_name);
        for value in &values {
            if visit(value) {
                break;
            }
        }
        !values.is_empty()
    }

    /// Calls `visit` with the name (in any case) and value of every header, in order, and
    /// returns `true`. The provided body calls nothing and returns `false`.
    ///
    /// The compiled engine calls this at most once per decision, to collect the headers that
    /// its rules filter on in one pass. When it returns `false`, the engine reads each
    /// filtered header with [`HeaderLookup::visit_values`] instead. An override must visit
    /// the same values that `visit_values` visits for each name.
    fn visit_headers<'s>(&'s self, _visit: &mut dyn FnMut(&'s str, &'s str)) -> bool {
        false
    }
}

impl HeaderLookup for [(String, String)] {
    fn values(&self, lower_case_name: &str) -> Vec<&str> {
        self.iter()
            .filter(|(name, _)| name.eq_ignore_ascii_case(lower_case_name))
            .map(|(_, value)| value.as_str())
            .collect()
    }

    fn visit_values(&self, lower_case_name: &str, visit: &mut dyn FnMut(&str) -> bool) -> bool {
        let mut present = false;
        for (name, value) in self {
            if eq_ignore_case(name, lower_case_name) {
                present = true;
                if visit(value) {
                    break;
                }
            }
        }
        present
    }

    fn visit_headers<'s>(&'s self, visit: &mut dyn FnMut(&'s str, &'s str)) -> bool {
        for (name, value) in self {
            visit(name, value);
        }
        true
    }
}

impl HeaderLookup for Vec<(String, String)> {
    fn values(&self, lower_case_name: &str) -> Vec<&str> {
        self.as_slice().values(lower_case_name)
    }

    fn visit_values(&self, lower_case_name: &str, visit: &mut dyn FnMut(&str) -> bool) -> bool {
        self.as_slice().visit_values(lower_case_name, visit)
    }

    fn visit_headers<'s>(&'s self, visit: &mut dyn FnMut(&'s str, &'s str)) -> bool {
        self.as_slice().visit_headers(visit)
    }
}

/// One request to decide.
pub struct Request<'a> {
    pub source: &'a Source,
    pub site: SiteKind,
    pub headers: &'a dyn HeaderLookup,
}

/// The engine's decision for one request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub verdict: Action,
    pub reason: Reason,
    /// Readings of ambiguous Azure documentation that this verdict depends on.
    pub ambiguities: Vec<Ambiguity>,
}

/// The step of the front-end algorithm that decided.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Reason {
    /// The request came through a private endpoint, where access restrictions do not apply.
    PrivateEndpoint,
    /// App access is off: `publicNetworkAccess` is `Disabled` (`explicit`), or it is unset and
    /// the site has a private endpoint.
    PublicNetworkAccessDisabled { explicit: bool },
    /// A rule matched; `list` says whose list it came from (scm uses main when configured so).
    Rule {
        list: SiteKind,
        index: usize,
        /// Shared with the compiled rule, so that a decision allocates nothing for it.
        name: Option<std::sync::Arc<str>>,
        priority: i64,
        action: Action,
    },
    /// No rule matched and the list's default action is set.
    DefaultAction { list: SiteKind, action: Action },
    /// The list has no rules and no default action: allow all.
    ImplicitAllowNoRules { list: SiteKind },
    /// The list has rules, none matched, and no default action is set: implicit deny all.
    ImplicitDeny { list: SiteKind },
}

/// A point where Microsoft's documentation is ambiguous and the engine picked a reading.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Ambiguity {
    /// Service-endpoint traffic blocked because app access is disabled.
    ServiceEndpointWithPublicAccessDisabled,
    /// A rule tagged `XffProxy` was skipped or matched by the optional reading.
    XffProxyUndocumented,
    /// An `X-Azure-FDID` or `X-FD-HealthProbe` value matched only when compared ignoring case.
    HeaderValueCase,
    /// A rule was skipped because the request lacked a header that the rule filters on.
    MissingHeader,
    /// A subnet rule on a site that has a private endpoint was treated as never matching.
    SubnetRuleWithPrivateEndpoint,
    /// A service-tag rule could not be resolved: no prefix table, or the tag is not in it.
    ServiceTagUnresolved { tag: String },
    /// The deciding rule has no `action` or no `priority`, whose defaults Azure does not
    /// document. The engine never adds this itself: the rule list carries no trace of how a
    /// rule was written, so the model adds it (`subnetlock_model::note_rule_defaults`).
    RuleDefaults,
}

/// Options that select readings of undocumented behaviour.
#[derive(Clone, Debug, Default)]
pub struct EngineOptions {
    /// Match `XffProxy` rules against `X-Forwarded-For` addresses instead of never matching.
    pub xff_proxy_matches_forwarded_for: bool,
    /// Prefixes of the Azure service tags. Without a table, a service-tag rule matches only
    /// sources whose [`Source::service_tags`] name the tag.
    pub service_tags: Option<std::sync::Arc<crate::ServiceTagTable>>,
}
