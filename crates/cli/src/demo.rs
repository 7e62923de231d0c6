//! `subnetlock demo`: check, run, probe, and compare prediction with live results.

use std::collections::HashMap;

use miette::{IntoDiagnostic, Result};
use serde::Serialize;
use subnetlock_access::{Action, EngineOptions, SiteKind};
use subnetlock_emulator::{AppErrorInfo, Caller, Emulator, ExampleRequest, SiteInfo};
use subnetlock_reach::{predict, Analysis, AppCall, Prediction, Probe};

use crate::args::DemoArgs;
use crate::call::client_through;
use crate::inputs::resolve_inputs;
use crate::up::{emulator_config, start};
use crate::{EXIT_ERROR, EXIT_FINDINGS, EXIT_OK};

/// One probe: what `check` predicted and what the running emulator answered.
#[derive(Clone, Debug, Serialize)]
pub struct ProbeResult {
    /// Short description, for example
    /// `internet -> GET function-app-b-x/api/function-b (with key)`.
    pub label: String,
    pub prediction: Prediction,
    /// Status the caller got; `None` when the call never happened.
    pub live_status: Option<u16>,
    /// Body the caller got (bodies of 403 pages are shortened).
    pub live_body: String,
}

impl ProbeResult {
    pub fn matches(&self) -> bool {
        self.live_status == Some(self.prediction.status)
    }
}

pub async fn demo(args: DemoArgs) -> Result<i32> {
    let inputs = resolve_inputs(&args.input)?;
    let topology = inputs.topology()?;
    let auth_levels = inputs.auth_levels(&topology);
    let analysis = crate::check::analyze_deployment(topology, &inputs.bindings, &inputs.engine);
    let template = inputs.template.display().to_string();
    out!("== check (offline) ==");
    out!(
        "{}",
        subnetlock_reach::output::render_human(&analysis, &template).trim_end()
    );

    let (mut config, _) =
        emulator_config(&inputs, &args.input, args.state_dir.clone(), &args.handler)?;
    config.run_builds = !args.no_build;
    out!("\n== up (live, on loopback) ==");
    let bindings = config.bindings.clone();
    let overrides = config.executable_overrides.clone();
    crate::up::announce_builds(&config);
    let stop = crate::up::stop_signal();
    tokio::pin!(stop);
    let emulator = tokio::select! {
        started = start(config) => started?,
        // An interrupted demo did not compare anything, so it does not report success.
        () = &mut stop => {
            crate::up::abandon_start().await;
            return Ok(EXIT_ERROR);
        }
    };
    // The emulator stops when the probes are done, so no commands to try are printed.
    crate::up::print_summary(&emulator, &bindings, &overrides, None, &inputs.engine);

    // Probes may be skipped for a reason other than missing code. The error that names the
    // reason is built from the emulator's sites, which are gone after it stops.
    let nothing_to_compare = nothing_to_compare(emulator.sites());

    // A stop signal during the probes still shuts the emulator down, handlers included.
    let results = tokio::select! {
        results = run_probes(&emulator, &analysis, &auth_levels, &inputs.engine) => Some(results),
        () = &mut stop => None,
    };
    emulator.shutdown().await;
    let Some(results) = results else {
        err!("stopped before the probes finished");
        return Ok(EXIT_ERROR);
    };
    let results = results?;
    if results.is_empty() {
        // A demo that compared nothing must not pass a CI job as if it had compared everything.
        return Err(nothing_to_compare);
    }

    out!("\n== check versus live ==");
    // The probe column is as wide as the longest label, plus the mark column before it.
    let width = results
        .iter()
        .map(|result| result.label.chars().count())
        .max()
        .unwrap_or(0)
        .max("probe".len());
    out!(
        "{:<w$} {:>5} {:>5}  live body",
        "probe",
        "check",
        "live",
        w = width + 1
    );
    for result in &results {
        let live = result
            .live_status
            .map(|status| status.to_string())
            .unwrap_or_else(|| "none".to_owned());
        let mark = if result.matches() { " " } else { "!" };
        out!(
            "{mark}{:<width$} {:>5} {:>5}  {}",
            result.label,
            result.prediction.status,
            live,
            result.live_body
        );
    }
    let mismatches = results.iter().filter(|r| !r.matches()).count();
    if mismatches == 0 && results.len() == 1 {
        out!("\nthe only probe: live result equals check's prediction");
        Ok(EXIT_OK)
    } else if mismatches == 0 {
        out!(
            "\nall {} probes: live result equals check's prediction",
            results.len()
        );
        Ok(EXIT_OK)
    } else {
        out!(
            "\n{mismatches} of {} probes differ from check's prediction (marked !)",
            results.len()
        );
        Ok(EXIT_FINDINGS)
    }
}

/// Builds the error of a demo whose probes are all skipped or that has none, which names the
/// reason. Calls between apps are skipped only when a Functions host does not start, so in
/// every other case the deployment has no such call.
fn nothing_to_compare(sites: &[SiteInfo]) -> miette::Report {
    let functions: Vec<_> = sites.iter().flat_map(|site| &site.functions).collect();
    if sites.iter().any(|site| site.app_error.is_some()) {
        miette::miette!(
            help = "fix the function apps that the `skipped:` lines name, then run the demo again",
            "nothing to compare: every probe was skipped, because the Functions host of a site does not start"
        )
    } else if sites.is_empty() {
        miette::miette!(
            help = "run the demo on a template that deploys a web app or function app (`Microsoft.Web/sites`)",
            "nothing to compare: the deployment has no sites"
        )
    } else if !functions.is_empty() {
        miette::miette!(
            help = "change the `route` or `methods` in the function.json of the functions that the `skipped:` lines name, so that a request can reach them, then run the demo again",
            "nothing to compare: every probe was skipped, because no request that the demo can build reaches any of the {} function(s), and no app calls another from its app settings",
            functions.len()
        )
    } else if sites.iter().any(|site| site.bound) {
        miette::miette!(
            help = "add a function whose function.json has an `httpTrigger` binding to a bound function app folder; `subnetlock check` reports the functions that load in error (SL025)",
            "nothing to compare: no function app bound to a site has an HTTP function that loads, and no app calls another from its app settings"
        )
    } else {
        miette::miette!(
            help = format!(
                "add a binding file (`{}`) that maps a site to a function app folder, as examples/lock-in-subnet does",
                subnetlock_emulator::BINDING_FILE_NAME
            ),
            "nothing to compare: no site of this deployment has bound code with an HTTP function, and no app calls another from its app settings"
        )
    }
}

/// Sends the probes through real HTTPS proxies into `emulator` and pairs each with its
/// prediction. For every bound function, an internet caller sends the function's example
/// request with and without its key, and a function without one is skipped with the reason
/// printed. A site whose Functions host does not start lists no functions, so it gets one
/// internet probe at its root instead. Then, for every call between apps found in app
/// settings, the status the front end gave it is paired with its prediction.
///
/// A result that may depend on a Functions host that does not start is skipped with the
/// reason printed, because that host's 503 is not in the prediction. One such result is a
/// call or an internet probe that the access restrictions let through to the main site of such
/// a host. Another is an internet probe that differs from its prediction and runs the code of
/// an app that sends such a call. A call is also skipped when the calling app's Functions host does not
/// start, as it never sends the call.
pub async fn run_probes(
    emulator: &Emulator,
    analysis: &Analysis,
    auth_levels: &HashMap<(String, String), String>,
    engine: &EngineOptions,
) -> Result<Vec<ProbeResult>> {
    // The address `call --from internet` and `explain --from internet` use, which avoids the
    // ranges and service-tag prefixes that rules name.
    let internet = Caller::Internet(subnetlock_reach::unnamed_internet_v4(
        emulator.topology(),
        engine.service_tags.as_deref(),
    ));
    let proxy = emulator.source_proxy(&internet).await?;
    let client = client_through(&proxy.to_string(), emulator.ca_pem().as_bytes())?;
    let calls = predict_calls(emulator, analysis, auth_levels, engine)?;

    // Each internet result is kept with the site it probed, so a call between apps can show
    // the response of its caller app. A result that is not compared is kept for that too.
    let mut internet_results: Vec<(String, ProbeResult, Comparison)> = Vec::new();
    for site in emulator.sites() {
        if let Some(app_error) = &site.app_error {
            let probed = probe_failed_site(
                &client,
                site,
                app_error,
                &internet,
                analysis,
                auth_levels,
                engine,
            )
            .await?;
            if let Some(result) = probed {
                internet_results.push((site.name.clone(), result, Comparison::Compared));
            }
        }
        // Any probe that runs this app's code may make it send its calls, so a call that gets
        // a 503 that check does not predict may change the response of every such probe.
        let call_to_failed_host = calls.iter().find(|predicted| {
            predicted.failed_target.is_some()
                && predicted.call.from_site.eq_ignore_ascii_case(&site.name)
        });
        for function in &site.functions {
            let (method, path) = match &function.example {
                ExampleRequest::Available { method, path } => (method, path),
                ExampleRequest::Unavailable { reason } => {
                    out!(
                        "skipped: internet -> {}, function `{}`: {reason}",
                        site.name,
                        function.name
                    );
                    continue;
                }
            };
            let http_method = reqwest::Method::from_bytes(method.as_bytes()).into_diagnostic()?;
            let base = format!("https://{}{path}", site.host);
            for with_key in [true, false] {
                let url = if with_key {
                    format!("{base}?code={}", function.key)
                } else {
                    base.clone()
                };
                let (status, body) = send(&client, http_method.clone(), &url).await?;
                let prediction = predict(
                    analysis,
                    auth_levels,
                    engine,
                    &Probe {
                        from: internet.to_string(),
                        host: site.host.clone(),
                        path: path.clone(),
                        function: Some(function.name.clone()),
                        with_key,
                        function_disabled: function.disabled,
                    },
                )?;
                let result = ProbeResult {
                    label: format!(
                        "internet -> {method} {}{path} ({})",
                        site.name,
                        if with_key { "with key" } else { "no key" }
                    ),
                    prediction,
                    live_status: Some(status),
                    live_body: shorten(&body),
                };
                // A handler may pass on the failed call or ignore it, so only a result that
                // differs is skipped.
                let comparison = match call_to_failed_host {
                    Some(predicted) if result.prediction.reaches_code && !result.matches() => {
                        out!(
                            "skipped: {}: live status {status} where check predicts {}, but the app's code calls `{}` (setting `{}`), whose Functions host does not start, and the access restrictions allow the call, so the response may depend on a 503 that check does not predict: {}",
                            result.label,
                            result.prediction.status,
                            predicted.call.to_site,
                            predicted.call.setting,
                            predicted.failed_target.unwrap_or_default()
                        );
                        Comparison::Skipped
                    }
                    _ => Comparison::Compared,
                };
                internet_results.push((site.name.clone(), result, comparison));
            }
        }
    }

    let decisions = emulator.decisions();
    let mut call_results = Vec::new();
    for predicted in calls {
        let call = predicted.call;
        let label = call_label(call);
        // An app whose Functions host does not start runs no code, so it never sends the call.
        if let Some(app_error) = app_error_of(emulator, &call.from_site) {
            out!(
                "skipped: {label}: the Functions host of the calling function app does not start, so it never sends the call: {}",
                app_error.error
            );
            continue;
        }
        if let Some(error) = predicted.failed_target {
            out!(
                "skipped: {label}: the access restrictions allow the call, but the Functions host of the target function app does not start, so it gets 503 where check predicts {}: {error}",
                predicted.prediction.status,
            );
            continue;
        }

        let caller = format!("app:{}", call.from_site);
        let live = decisions
            .iter()
            .rev()
            .find(|record| {
                record.caller.eq_ignore_ascii_case(&caller)
                    && record.site_kind == Some(call.to_kind)
                    && record
                        .site
                        .as_deref()
                        .is_some_and(|site| site.eq_ignore_ascii_case(&call.to_site))
            })
            .map(|record| record.status);
        // The caller app's response to the internet probe that made it send the call.
        let answered = internet_results
            .iter()
            .find(|(site, result, _)| {
                site.eq_ignore_ascii_case(&call.from_site) && result.label.ends_with("(with key)")
            })
            .map(|(_, result, _)| format!("{} answered: {}", call.from_site, result.live_body))
            .unwrap_or_default();
        call_results.push(ProbeResult {
            label,
            prediction: predicted.prediction,
            live_status: live,
            live_body: answered,
        });
    }

    call_results.extend(
        internet_results
            .into_iter()
            .filter(|(_, _, comparison)| *comparison == Comparison::Compared)
            .map(|(_, result, _)| result),
    );
    Ok(call_results)
}

/// Probes `site`, whose Functions host does not start, from `internet` at the site root
/// without a key. The front end applies the access restrictions before it consults the
/// Functions host, so a denial is compared: the 403 shows the lockdown of the failed site.
/// A request that the access restrictions let through gets 503 from the host that is not
/// running, which the prediction leaves out, so it is not sent and a line with the reason is
/// printed instead. Returns the result of the probe when it was sent.
async fn probe_failed_site(
    client: &reqwest::Client,
    site: &SiteInfo,
    app_error: &AppErrorInfo,
    internet: &Caller,
    analysis: &Analysis,
    auth_levels: &HashMap<(String, String), String>,
    engine: &EngineOptions,
) -> Result<Option<ProbeResult>> {
    // Access restrictions decide by the caller and the request headers, not by the path, and
    // the failed host lists no functions, so the probe goes to the site root.
    let path = "/";
    let label = format!("internet -> GET {}{path} (no key)", site.name);
    let prediction = predict(
        analysis,
        auth_levels,
        engine,
        &Probe {
            from: internet.to_string(),
            host: site.host.clone(),
            path: path.to_owned(),
            function: None,
            with_key: false,
            function_disabled: false,
        },
    )?;
    if passes_front_end(&prediction) {
        out!(
            "skipped: {label}: the access restrictions allow the request, but the Functions host of the site's function app does not start, so it gets 503 where check predicts {}: {}",
            prediction.status,
            app_error.error
        );
        return Ok(None);
    }

    let url = format!("https://{}{path}", site.host);
    let (status, body) = send(client, reqwest::Method::GET, &url).await?;
    Ok(Some(ProbeResult {
        label,
        prediction,
        live_status: Some(status),
        live_body: shorten(&body),
    }))
}

/// Sends one probe and returns the status and body of its response.
async fn send(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
) -> Result<(u16, String)> {
    let response = client.request(method, url).send().await.into_diagnostic()?;
    let status = response.status().as_u16();
    let body = response.text().await.into_diagnostic()?;
    Ok((status, body))
}

/// Returns whether the access restrictions let a predicted request through to the app behind the
/// front end. A request they deny, or one that never reaches the front end, gets its response
/// before any Functions host is consulted.
fn passes_front_end(prediction: &Prediction) -> bool {
    prediction
        .decision
        .as_ref()
        .is_some_and(|decision| decision.verdict == Action::Allow)
}

/// Whether a probe's live result is compared with its prediction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Comparison {
    Compared,
    /// The result may depend on something the prediction leaves out, and a line with the
    /// reason is printed.
    Skipped,
}

/// A call between apps with its prediction.
struct PredictedCall<'a> {
    call: &'a AppCall,
    prediction: Prediction,
    /// The error of the target app when the access restrictions let the call through to a
    /// main site whose Functions host does not start. That host responds with 503, which the
    /// prediction leaves out. A call to the scm site of that app is still compared, because
    /// the scm site runs apart from the Functions host.
    failed_target: Option<&'a str>,
}

/// Predicts every call between apps that `analysis` found in app settings.
fn predict_calls<'a>(
    emulator: &'a Emulator,
    analysis: &'a Analysis,
    auth_levels: &HashMap<(String, String), String>,
    engine: &EngineOptions,
) -> Result<Vec<PredictedCall<'a>>> {
    let mut calls = Vec::with_capacity(analysis.calls.len());
    for call in &analysis.calls {
        let host = analysis
            .topology
            .site(&call.to_site)
            .map(|site| match call.to_kind {
                SiteKind::Main => site.default_host_name.clone(),
                SiteKind::Scm => site.scm_host_name.clone(),
            })
            .unwrap_or_default();
        let prediction = predict(
            analysis,
            auth_levels,
            engine,
            &Probe {
                from: format!("app:{}", call.from_site),
                host,
                path: call.path.clone(),
                function: None,
                with_key: call.with_key,
                function_disabled: false,
            },
        )?;
        // A denied call never reaches the host, so it is still compared.
        let failed_target = match app_error_of(emulator, &call.to_site) {
            Some(app_error) if passes_front_end(&prediction) && call.to_kind == SiteKind::Main => {
                Some(app_error.error.as_str())
            }
            _ => None,
        };
        calls.push(PredictedCall {
            call,
            prediction,
            failed_target,
        });
    }
    Ok(calls)
}

/// Returns the error of the app bound to `site` when its Functions host does not start.
fn app_error_of<'a>(emulator: &'a Emulator, site: &str) -> Option<&'a AppErrorInfo> {
    emulator
        .sites()
        .iter()
        .find(|info| info.name.eq_ignore_ascii_case(site))
        .and_then(|info| info.app_error.as_ref())
}

/// Returns the label of a call between apps, with `.scm` after a target that is an scm site.
fn call_label(call: &AppCall) -> String {
    let scm = if call.to_kind == SiteKind::Scm {
        ".scm"
    } else {
        ""
    };
    format!(
        "app {} -> {}{scm}{} (setting `{}`)",
        call.from_site, call.to_site, call.path, call.setting
    )
}

fn shorten(body: &str) -> String {
    let single_line = body.split_whitespace().collect::<Vec<_>>().join(" ");
    if single_line.contains("Error 403 - Forbidden") {
        return "Error 403 - Forbidden page".to_owned();
    }
    if single_line.chars().count() > 60 {
        let cut: String = single_line.chars().take(57).collect();
        format!("{cut}...")
    } else {
        single_line
    }
}
