//! The ARM template language, evaluated offline.
//!
//! This crate reads Azure Resource Manager templates (JSON with comments) and parameter files,
//! evaluates their expressions, parameters, variables, copy loops, conditions, child resources
//! and nested deployments, and returns the resources a deployment would create, in an order
//! that respects `dependsOn`. It knows the template language, not Azure resources: what a
//! `Microsoft.Web/sites` body means is `subnetlock-model`'s job.
//!
//! Runtime values (`reference()`, `list*()`) come from a [`Provider`]; what no provider can
//! answer stays a typed [`Unknown`] that propagates instead of a guess. Every error carries the
//! file, line and column, and the JSON path of the value at fault.
//!
//! ```
//! use subnetlock_arm::{evaluate_str, EvalOptions, OfflineProvider, Value};
//!
//! let template = r#"{
//!   "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
//!   "resources": [{
//!     "type": "Microsoft.Web/sites", "apiVersion": "2022-03-01",
//!     "name": "[concat('app-', uniqueString(resourceGroup().id))]",
//!     "resources": [{ "type": "config", "apiVersion": "2022-03-01", "name": "web",
//!                     "properties": { "ftpsState": "Disabled" } }]
//!   }]
//! }"#;
//! let deployment =
//!     evaluate_str("main.json", template, &EvalOptions::default(), &OfflineProvider).unwrap();
//! let config = &deployment.resources[1];
//! assert_eq!(config.resource_type, "Microsoft.Web/sites/config");
//! assert_eq!(config.name, "app-yobmxbvmtplck/web");
//! let ftps = config.properties().and_then(|properties| properties.get("ftpsState"));
//! assert_eq!(ftps, Some(&Value::String("Disabled".to_owned())));
//! ```
//!
//! Deployment-time values (`utcNow()`, `newGuid()`) come from the [`Provider`], which leaves
//! them unknown unless it deploys.
//!
//! Linked templates are read from disk: a `templateLink.relativePath` beside the template, and
//! a `templateLink.uri` whose prefix [`Artifacts`] maps to a local folder. Not in scope:
//! fetching linked templates over the network (the others are listed in
//! [`Deployment::unresolved_templates`]), and resource semantics.

// Tests may unwrap: a panic there is a test failure with its message.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

mod artifacts;
mod call;
mod cidr;
mod dates;
mod encoding;
mod error;
mod eval;
mod expr;
mod format;
mod functions;
mod hash;
mod linked;
mod params;
mod placement;
mod provider;
mod resources;
mod run;
mod source;
mod spanned;
mod template_kind;
#[cfg(any(test, feature = "test-support"))]
pub mod testing;
mod value;

pub use artifacts::{shown_link, ArtifactPrefix, Artifacts, ArtifactsError, LOCAL_ARTIFACTS_BASE};
pub use encoding::{decode_text, EncodingError};
pub use error::{Error, Located, SourceText};
pub use eval::{
    evaluate_file, evaluate_str, Deployment, DuplicateKey, EvalOptions, Resource,
    UnresolvedTemplate,
};
pub use hash::{guid, unique_string};
pub use params::Parameters;
pub use provider::{full_envelope, ListRequest, OfflineProvider, Provider, ReferenceRequest};
pub use spanned::{JsonStep, SpannedJson};
pub use value::{Object, Unknown, UnknownCause, Value};

use std::path::PathBuf;

/// Entry points for the fuzz targets in `crates/arm/fuzz`. Not a stable API.
#[doc(hidden)]
pub mod fuzzing {
    use crate::expr::{self, Accessor, Expr};

    /// Parses `text` as the inside of an expression and checks the parser's invariants.
    ///
    /// Returns `Ok(true)` when the text parses and its printed form parses to the same tree
    /// (byte offsets aside, because printing normalises whitespace), `Ok(false)` when the text
    /// is rejected with an error offset on a character boundary inside the text, and `Err`
    /// describing the broken invariant otherwise.
    pub fn check_expression(text: &str) -> Result<bool, String> {
        let parsed = match expr::parse(text) {
            Ok(parsed) => parsed,
            Err(error) if error.offset <= text.len() && text.is_char_boundary(error.offset) => {
                return Ok(false);
            }
            Err(error) => {
                return Err(format!("error offset {} is outside `{text}`", error.offset));
            }
        };

        let printed = parsed.to_string();
        match expr::parse(&printed) {
            Ok(reparsed) if same_tree(&parsed, &reparsed) => Ok(true),
            Ok(reparsed) => Err(format!(
                "`{text}` printed as `{printed}` re-parses to a different tree: {reparsed:?}"
            )),
            Err(error) => Err(format!(
                "`{text}` printed as `{printed}` does not re-parse: {}",
                error.message
            )),
        }
    }

    fn same_tree(left: &Expr, right: &Expr) -> bool {
        match (left, right) {
            (Expr::String(a), Expr::String(b)) => a == b,
            (Expr::Int(a), Expr::Int(b)) => a == b,
            (Expr::Call(a), Expr::Call(b)) => {
                a.name == b.name
                    && a.args.len() == b.args.len()
                    && a.args.iter().zip(&b.args).all(|(x, y)| same_tree(x, y))
                    && a.accessors.len() == b.accessors.len()
                    && a.accessors.iter().zip(&b.accessors).all(|pair| match pair {
                        (Accessor::Property(x), Accessor::Property(y)) => x == y,
                        (Accessor::Index(x), Accessor::Index(y)) => same_tree(x, y),
                        _ => false,
                    })
            }
            _ => false,
        }
    }
}

/// The deployment's target scope and the values of `subscription()`, `resourceGroup()` and
/// `deployment()`.
#[derive(Clone, Debug)]
pub struct Scope {
    pub subscription_id: String,
    pub resource_group: String,
    pub location: String,
    pub tenant_id: String,
    pub deployment_name: String,
    /// Local folders for linked-template URIs, and the template's own `templateLink.uri`.
    pub artifacts: Artifacts,
}

impl Default for Scope {
    fn default() -> Self {
        Scope {
            subscription_id: "00000000-0000-0000-0000-000000000000".to_owned(),
            resource_group: "subnetlock".to_owned(),
            location: "westeurope".to_owned(),
            tenant_id: "00000000-0000-0000-0000-000000000000".to_owned(),
            deployment_name: "subnetlock".to_owned(),
            artifacts: Artifacts::default(),
        }
    }
}

/// Where a value is written: file, 1-based line and column, and JSON path such as
/// `$.resources[4].properties.siteConfig`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct SourceLocation {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    pub json_path: String,
    /// Byte offset and length in the file's text as UTF-8, for diagnostics that underline the
    /// value. They are the file's own offsets unless the file is UTF-16.
    pub offset: usize,
    pub length: usize,
}

impl std::fmt::Display for SourceLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}:{} ({})",
            self.file.display(),
            self.line,
            self.column,
            self.json_path
        )
    }
}
