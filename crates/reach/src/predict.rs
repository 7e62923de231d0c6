//! The HTTP status a concrete call should get, front end and Functions host together.

use std::collections::HashMap;

use serde::Serialize;
use subnetlock_access::{Action, CompiledSiteAccess, Decision, EngineOptions, Request, SiteKind};
use subnetlock_model::egress;

use crate::analysis::{egress_of, Analysis, CallerKind, CallerSpec};

/// One call to predict.
#[derive(Clone, Debug, Serialize)]
pub struct Probe {
    /// Caller as `internet:<address>`, `subnet:<name>`, `app:<site>` or `servicetag:<tag>`.
    pub from: String,
    /// Host name the call addresses.
    pub host: String,
    /// Request path, for example `/api/function-b`.
    pub path: String,
    /// Function the host routes `path` to, when the caller knows it from the function's route.
    /// Without it, the first segment after `/api/` names the function.
    pub function: Option<String>,
    /// Whether the call carries a valid function key.
    pub with_key: bool,
    /// Whether the app setting `AzureWebJobs.<function>.Disabled` disables the function. The
    /// template does not show it, so only a caller that loaded the app can set it.
    pub function_disabled: bool,
}

/// The status a caller should receive, with the reasons.
#[derive(Clone, Debug, Serialize)]
pub struct Prediction {
    /// 403 (front end), 401 (Functions host or scm site without credentials), 404 (no site or
    /// function), 502 (a network security group drops the request before the front end; the
    /// emulator's egress proxy returns 502), or 200 when the request reaches the app's code,
    /// which may answer otherwise.
    pub status: u16,
    pub reaches_code: bool,
    pub decision: Option<Decision>,
    pub why: Vec<String>,
}

/// Errors that stop a probe from being predicted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, miette::Diagnostic)]
pub enum PredictError {
    #[error("invalid caller `{0}`")]
    #[diagnostic(help(
        "write `internet:<address>`, `subnet:<name>`, `app:<site>` or `servicetag:<tag>`"
    ))]
    Caller(String),
}

/// Predicts `probe`. `auth_levels` maps lower-case `(site, function)` to the function's
/// `authLevel` where the template does not declare the function (for example from the
/// function.json files of a binding); template declarations are used otherwise.
pub fn predict(
    analysis: &Analysis,
    auth_levels: &HashMap<(String, String), String>,
    options: &EngineOptions,
    probe: &Probe,
) -> Result<Prediction, PredictError> {
    predict_with_headers(analysis, auth_levels, options, probe, &[])
}

/// Predicts `probe` sent with request `headers` (name, value), which header filters of the
/// rules read, for example `x-azure-fdid` or `x-forwarded-for`.
pub fn predict_with_headers(
    analysis: &Analysis,
    auth_levels: &HashMap<(String, String), String>,
    options: &EngineOptions,
    probe: &Probe,
    headers: &[(String, String)],
) -> Result<Prediction, PredictError> {
    let topology = &analysis.topology;
    let Some((site, kind)) = topology.site_for_host(&probe.host) else {
        return Ok(Prediction {
            status: 404,
            reaches_code: false,
            decision: None,
            why: vec![format!("no site of the deployment serves `{}`", probe.host)],
        });
    };

    let caller = CallerSpec {
        kind: CallerKind::Internet,
        label: probe.from.clone(),
        note: None,
    };
    let target = egress::Destination { site, kind };
    let egress = egress_of(topology, &caller, Some(target), options)
        .ok_or_else(|| PredictError::Caller(probe.from.clone()))?;
    if !egress.reaches_front_end() {
        return Ok(Prediction {
            status: 502,
            reaches_code: false,
            decision: None,
            why: egress.steps,
        });
    }

    let compiled = CompiledSiteAccess::compile(&site.access, options);
    let headers = headers.to_vec();
    let mut decision = compiled.decide(&Request {
        source: &egress.source,
        site: kind,
        headers: &headers,
    });
    subnetlock_model::note_rule_defaults(site, &mut decision);
    let mut why = egress.steps.clone();
    why.push(crate::output::describe_decision(&decision));

    if decision.verdict == Action::Deny {
        return Ok(Prediction {
            status: 403,
            reaches_code: false,
            decision: Some(decision),
            why,
        });
    }
    if kind == SiteKind::Scm {
        why.push("the scm site asks for publishing credentials".to_owned());
        return Ok(Prediction {
            status: 401,
            reaches_code: false,
            decision: Some(decision),
            why,
        });
    }

    let function = match &probe.function {
        Some(name) => Some(name.to_ascii_lowercase()),
        None => probe
            .path
            .trim_start_matches('/')
            .strip_prefix("api/")
            .map(|rest| rest.split('/').next().unwrap_or(rest).to_ascii_lowercase()),
    };
    let auth_level = function.as_ref().and_then(|name| {
        auth_levels
            .get(&(site.name.to_ascii_lowercase(), name.clone()))
            .cloned()
            .or_else(|| {
                site.functions
                    .iter()
                    .find(|f| f.name.eq_ignore_ascii_case(name))
                    .map(|f| f.auth_level.clone())
            })
    });
    match auth_level.as_deref() {
        Some("function") | Some("admin") if !probe.with_key => {
            why.push(format!(
                "function `{}` has authLevel {}; without a key the Functions host answers 401",
                function.unwrap_or_default(),
                auth_level.unwrap_or_default()
            ));
            Ok(Prediction {
                status: 401,
                reaches_code: false,
                decision: Some(decision),
                why,
            })
        }
        // The host checks the key first, so only a request that passes it reaches the disabled
        // function, which responds with 404.
        _ if probe.function_disabled => {
            why.push(format!(
                "the app setting `AzureWebJobs.{}.Disabled` disables the function",
                function.unwrap_or_default()
            ));
            Ok(Prediction {
                status: 404,
                reaches_code: false,
                decision: Some(decision),
                why,
            })
        }
        _ => {
            why.push("the request reaches the app's code".to_owned());
            Ok(Prediction {
                status: 200,
                reaches_code: true,
                decision: Some(decision),
                why,
            })
        }
    }
}
