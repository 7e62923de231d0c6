//! Findings: what Azure would reject, ignore or leave open in a deployment.
//!
//! Every finding has a stable code and a name that describes the flagged pattern. The catalogue
//! with a failing example and the fix for each code is docs/rules.md.

use serde::Serialize;
use subnetlock_access::Outcome;
use subnetlock_arm::SourceLocation;

/// The seriousness of a finding for the person who wrote the template.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Error,
}

/// Stable finding codes. The numbers never change meaning; retired codes are not reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum FindingCode {
    /// An access-restriction rule Azure rejects or reads differently than written.
    SL001,
    /// `ipSecurityRestrictions` written under `properties` instead of `properties.siteConfig`.
    SL002,
    /// A subnet rule whose subnet lacks the `Microsoft.Web` service endpoint: it never matches.
    SL003,
    /// Regional VNet integration on a plan that does not support it.
    SL004,
    /// Integration subnet smaller than /28, IPv6-only, or not found.
    SL005,
    /// Integration subnet delegated to another service.
    SL006,
    /// A Linux plan whose apps integrate with more than one subnet.
    SL007,
    /// One subnet used for regional VNet integration by more than one plan.
    SL008,
    /// Integration VNet in another region than the app.
    SL009,
    /// A conclusion that depends on a value unknown offline.
    SL010,
    /// A reading of ambiguous Azure documentation decided a verdict.
    SL011,
    /// An app reachable from the internet on its scm site while its main site is locked.
    SL012,
    /// A rule list that ends in the implicit deny-all: everything not allowed is denied.
    SL013,
    /// A rule with priority 2147483647 and `ipAddress: Any`, which Azure drops as its own
    /// synthetic entry.
    SL014,
    /// `publicNetworkAccess` set only in `siteConfig`, or set differently in `properties` and
    /// `siteConfig`: Azure rejects the site with HTTP 400.
    SL015,
    /// A subnet (service-endpoint) rule on a site where Azure does not support it: a site with
    /// a private endpoint, or a site in an App Service Environment.
    SL016,
    /// A private endpoint on a site whose plan does not support inbound private endpoints
    /// (classic Consumption, Free, Shared).
    SL017,
    /// An Allow rule open to every address whose only gate is a header filter, which any
    /// client can send.
    SL018,
    /// A site setting with a value of the wrong type or outside its enum.
    SL020,
    /// A redeploy that moves a plan with integrated apps to a SKU without regional VNet
    /// integration.
    SL021,
    /// Regional VNet integration on a Basic or Standard plan, which only newer scale units
    /// support.
    SL022,
    /// A rule list of Allow rules whose default action is Allow, so the rules restrict nothing.
    SL019,
    /// An object key written twice in one object (or in two spellings that differ in case).
    SL023,
    /// A reachability expectation (`check --expect`) that the template does not meet, or whose
    /// verdict depends on a value known only at deployment time.
    SL024,
    /// A function the Azure Functions host loads in error, so it gets no route, or a bound
    /// function app that fails to load as a whole.
    SL025,
}

impl FindingCode {
    /// Every code, in number order.
    pub const ALL: [FindingCode; 25] = [
        FindingCode::SL001,
        FindingCode::SL002,
        FindingCode::SL003,
        FindingCode::SL004,
        FindingCode::SL005,
        FindingCode::SL006,
        FindingCode::SL007,
        FindingCode::SL008,
        FindingCode::SL009,
        FindingCode::SL010,
        FindingCode::SL011,
        FindingCode::SL012,
        FindingCode::SL013,
        FindingCode::SL014,
        FindingCode::SL015,
        FindingCode::SL016,
        FindingCode::SL017,
        FindingCode::SL018,
        FindingCode::SL019,
        FindingCode::SL020,
        FindingCode::SL021,
        FindingCode::SL022,
        FindingCode::SL023,
        FindingCode::SL024,
        FindingCode::SL025,
    ];

    /// Kebab-case name that describes the flagged pattern.
    pub fn name(self) -> &'static str {
        match self {
            FindingCode::SL001 => "invalid-access-restriction-rule",
            FindingCode::SL002 => "restrictions-outside-site-config",
            FindingCode::SL003 => "subnet-rule-without-service-endpoint",
            FindingCode::SL004 => "vnet-integration-on-unsupported-plan",
            FindingCode::SL005 => "unusable-integration-subnet",
            FindingCode::SL006 => "integration-subnet-delegated-elsewhere",
            FindingCode::SL007 => "plan-vnet-limit-exceeded",
            FindingCode::SL008 => "integration-subnet-shared-by-plans",
            FindingCode::SL009 => "integration-vnet-in-other-region",
            FindingCode::SL010 => "verdict-depends-on-unknown-value",
            FindingCode::SL011 => "verdict-depends-on-ambiguous-azure-behaviour",
            FindingCode::SL012 => "scm-site-open-while-main-site-locked",
            FindingCode::SL013 => "implicit-deny-all",
            FindingCode::SL014 => "synthetic-any-rule-dropped",
            FindingCode::SL015 => "public-network-access-copies-disagree",
            FindingCode::SL016 => "subnet-rule-not-supported-on-site",
            FindingCode::SL017 => "private-endpoint-on-unsupported-plan",
            FindingCode::SL018 => "spoofable-header-only-rule",
            FindingCode::SL020 => "invalid-site-setting",
            FindingCode::SL021 => "sku-change-breaks-vnet-integration",
            FindingCode::SL022 => "vnet-integration-needs-newer-scale-unit",
            FindingCode::SL019 => "allow-list-with-default-allow",
            FindingCode::SL023 => "duplicate-json-key",
            FindingCode::SL024 => "reachability-expectation-not-met",
            FindingCode::SL025 => "function-loaded-in-error",
        }
    }
}

impl std::fmt::Display for FindingCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

/// One thing worth telling the template's author.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub code: FindingCode,
    pub severity: Severity,
    /// What Azure does with the template: fail the deployment, reject it only in the portal or
    /// CLI, or accept it with no effect. `None` for findings about reachability.
    pub outcome: Option<Outcome>,
    pub message: String,
    pub help: Option<String>,
    /// The resource the finding is about, by ARM id.
    pub resource: Option<String>,
    pub location: Option<SourceLocation>,
    /// Other places the finding is about, such as the first copy of a duplicate key.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub related: Vec<SourceLocation>,
}

impl Finding {
    pub fn new(code: FindingCode, severity: Severity, message: impl Into<String>) -> Self {
        Finding {
            code,
            severity,
            outcome: None,
            message: message.into(),
            help: None,
            resource: None,
            location: None,
            related: Vec::new(),
        }
    }

    pub fn outcome(mut self, outcome: Outcome) -> Self {
        self.outcome = Some(outcome);
        self
    }

    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub fn at(mut self, resource: &str, location: SourceLocation) -> Self {
        self.resource = Some(resource.to_owned());
        self.location = Some(location);
        self
    }

    /// Returns whether Azure would fail the deployment because of this finding.
    pub fn fails_deployment(&self) -> bool {
        self.outcome == Some(Outcome::DeployFails)
    }

    /// Returns whether `up` rejects the deployment because of this finding: Azure fails the deployment, or
    /// the finding is an access-restriction rule that Azure's tooling rejects. The server's
    /// handling of such rules (a ninth range, an unsupported header) is undocumented, so the
    /// emulator rejects them rather than guess what they match.
    pub fn blocks_local_deployment(&self) -> bool {
        self.fails_deployment()
            || (self.code == FindingCode::SL001 && self.outcome == Some(Outcome::ToolingRejects))
    }
}
