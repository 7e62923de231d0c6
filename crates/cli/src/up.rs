//! `subnetlock up`: run a template's apps locally until Ctrl-C.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use miette::{miette, Result};
use subnetlock_access::EngineOptions;
use subnetlock_emulator::{
    Emulator, EmulatorConfig, EmulatorError, ExampleRequest, FindingsOf, FunctionInfo, Shutdown,
    SiteInfo,
};
use subnetlock_reach::{reachability_of, Analysis, Reachability};

use crate::args::{InputArgs, UpArgs};
use crate::check::analyze_deployment;
use crate::inputs::{resolve_inputs, Inputs};
use crate::EXIT_OK;

pub async fn up(args: UpArgs) -> Result<i32> {
    let inputs = resolve_inputs(&args.input)?;
    let (mut config, analysis) =
        emulator_config(&inputs, &args.input, args.state_dir.clone(), &args.handler)?;
    config.http_port = args.http_port;
    config.https_port = args.https_port;
    if let Some(threads) = args.front_end_threads {
        config.front_end_threads = threads;
    }
    config.run_builds = !args.no_build;

    let bindings = config.bindings.clone();
    let overrides = config.executable_overrides.clone();
    announce_builds(&config);
    let stop = stop_signal();
    tokio::pin!(stop);
    let emulator = tokio::select! {
        started = start(config) => started?,
        () = &mut stop => return Ok(abandon_start().await),
    };
    // The emulator runs `check`'s analysis while it starts, so it is set by now.
    print_summary(
        &emulator,
        &bindings,
        &overrides,
        analysis.get(),
        &inputs.engine,
    );
    if let Some(note) = findings_note(emulator.findings()) {
        err!("{note}");
    }
    err!("running; press Ctrl-C to stop (SIGTERM and SIGHUP stop it too)");
    emulator.wait(&mut stop).await;
    let stopped = emulator.shutdown().await;
    for line in closing_lines(&stopped) {
        err!("{line}");
    }
    Ok(EXIT_OK)
}

/// Returns the lines `up` prints after it stopped: what it ended, and which files of its state
/// directory remain for the user to read.
fn closing_lines(stopped: &Shutdown) -> Vec<String> {
    let plural = |count: usize, word: &str| {
        if count == 1 {
            format!("{count} {word}")
        } else {
            format!("{count} {word}s")
        }
    };
    let mut ended = format!(
        "stopped: front end and egress proxies closed, {} ended",
        plural(stopped.handlers, "custom handler")
    );
    if stopped.other_processes > 0 {
        ended.push_str(&format!(
            ", and {} that handlers started",
            plural(stopped.other_processes, "process")
        ));
    }
    let state_file = if stopped.state_file_removed {
        "state.json removed"
    } else {
        "state.json left in place, because the directory was replaced while `up` ran"
    };
    let kept = match &stopped.decision_log {
        Some(log) => format!(
            "decision log: {}; state directory: {} ({state_file})",
            log.display(),
            stopped.state_dir.display()
        ),
        None => format!(
            "no decision log was written; state directory: {} ({state_file})",
            stopped.state_dir.display()
        ),
    };
    vec![ended, kept]
}

/// Returns one line that counts the errors and warnings `check` reports for the running
/// deployment, with their codes, or `None` when there are none. `up` prints no findings itself.
fn findings_note(findings: &[subnetlock_model::Finding]) -> Option<String> {
    use subnetlock_model::Severity;
    let mut parts = Vec::new();
    for (severity, name) in [(Severity::Error, "error"), (Severity::Warning, "warning")] {
        let mut codes: Vec<String> = findings
            .iter()
            .filter(|finding| finding.severity == severity)
            .map(|finding| finding.code.to_string())
            .collect();
        let count = codes.len();
        if count == 0 {
            continue;
        }
        codes.dedup();
        let plural = if count == 1 { "" } else { "s" };
        parts.push(format!("{count} {name}{plural} ({})", codes.join(", ")));
    }
    if parts.is_empty() {
        return None;
    }
    Some(format!(
        "note: `subnetlock check` reports {} for this deployment; run it with the same options for details",
        parts.join(" and ")
    ))
}

/// Says that handlers are built before the emulator starts, because the first build takes
/// minutes and nothing else is printed meanwhile.
pub fn announce_builds(config: &EmulatorConfig) {
    if !config.run_builds {
        return;
    }
    let mut commands: Vec<String> = Vec::new();
    for app in &config.bindings.apps {
        if let Some(command) = &app.build {
            let command = command.join(" ");
            if !commands.contains(&command) {
                commands.push(command);
            }
        }
    }
    for command in commands {
        err!(
            "building handlers: {command} (a first build takes a few minutes; --no-build skips it)"
        );
    }
}

/// Cleans up after a stop signal that arrived while the emulator was starting: the handlers
/// and build commands that had started end with the dropped start, and this stops what they
/// started.
pub async fn abandon_start() -> i32 {
    let stopped = subnetlock_emulator::stop_own_processes().await;
    err!("stopped while starting ({stopped} left-over process(es) stopped)");
    EXIT_OK
}

/// Resolves on Ctrl-C (SIGINT), SIGTERM or SIGHUP, so that `kill` and a closed terminal stop the
/// handler processes too. SIGKILL cannot be caught; the next `up` on the same state directory
/// stops what a killed one left running.
pub async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let terminate = signal(SignalKind::terminate());
        let hangup = signal(SignalKind::hangup());
        if let (Ok(mut terminate), Ok(mut hangup)) = (terminate, hangup) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate.recv() => {}
                _ = hangup.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// Builds the emulator configuration shared by `up` and `demo`, and the cell in which the start
/// keeps `check`'s analysis of the deployment it makes.
pub fn emulator_config(
    inputs: &Inputs,
    _args: &InputArgs,
    state_dir: PathBuf,
    handlers: &[String],
) -> Result<(EmulatorConfig, Arc<OnceLock<Analysis>>)> {
    let mut config = EmulatorConfig::new(inputs.template.clone(), state_dir);
    config.topology = inputs.prebuilt_topology()?;
    config.previous = inputs.previous_topology()?;
    config.scale_unit = inputs.scale_unit;
    config.parameters = inputs.parameters.clone();
    config.parameter_values = inputs.parameter_values.clone();
    config.bindings = inputs.bindings.clone();
    config.scope = inputs.scope.clone();
    config.engine = inputs.engine.clone();
    // The control API serves the findings `check` reports, SL025 included. The start keeps the
    // analysis, so `up` picks the caller of its try line without running it again.
    let analysis = Arc::new(OnceLock::new());
    let cell = analysis.clone();
    config.findings_of = Some(FindingsOf::new(move |topology, bindings, engine| {
        let deployed = analyze_deployment(topology, bindings, engine);
        let findings = deployed.findings.clone();
        // `up` and `demo` start a configuration once. A second start would keep the first
        // start's analysis.
        let _ = cell.set(deployed);
        findings
    }));
    for entry in handlers {
        let (pattern, path) = entry.split_once('=').ok_or_else(|| {
            miette!(
                help = "write it as PATTERN=PATH, for example --handler 'function-app-a-*=target/debug/function-app-a'",
                "invalid handler `{entry}`"
            )
        })?;
        // The Functions host starts handlers in their app folder, so relative paths are made
        // absolute against the current directory here.
        let path = std::path::absolute(path)
            .map_err(|error| miette!("invalid handler path `{path}`: {error}"))?;
        config.executable_overrides.push((pattern.to_owned(), path));
    }
    Ok((config, analysis))
}

/// Starts the emulator; a deployment Azure would reject is shown with every finding.
pub async fn start(config: EmulatorConfig) -> Result<Emulator> {
    match Emulator::start(config).await {
        Ok(emulator) => Ok(emulator),
        Err(EmulatorError::DeploymentRejected { findings }) => {
            for finding in &findings {
                err!(
                    "error {} {}: {}",
                    finding.code,
                    finding.code.name(),
                    finding.message
                );
                if let Some(location) = &finding.location {
                    err!("  --> {location}");
                }
                if let Some(help) = &finding.help {
                    err!("  help: {help}");
                }
            }
            Err(miette!(
                help = "fix the findings above; `subnetlock check` with the same options (such as `--previous` and `--scale-unit`) shows them all",
                "this deployment would be rejected, so `up` does not start it"
            ))
        }
        Err(error) => Err(error.into()),
    }
}

/// Prints the sites, keys and URLs of a started emulator. Given `try_lines`, `check`'s analysis
/// of the deployment, it also prints commands to try against the emulator, which only make
/// sense while it keeps running. The analysis and `engine` pick their caller.
pub fn print_summary(
    emulator: &Emulator,
    bindings: &subnetlock_emulator::Bindings,
    overrides: &[(String, PathBuf)],
    try_lines: Option<&Analysis>,
    engine: &EngineOptions,
) {
    for (pattern, _) in overrides {
        let used = emulator
            .sites()
            .iter()
            .any(|site| subnetlock_emulator::bindings::pattern_matches(pattern, &site.name));
        if !used {
            err!(
                "warning: --handler pattern `{pattern}` matches no site of this deployment; the sites are {}",
                emulator
                    .sites()
                    .iter()
                    .map(|site| format!("`{}`", site.name))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
    for app in &bindings.apps {
        let used = emulator.sites().iter().any(|site| {
            subnetlock_emulator::bindings::pattern_matches(&app.site_pattern, &site.name)
        });
        if !used {
            err!(
                "warning: binding `{}` matches no site of this deployment; its code is not started",
                app.site_pattern
            );
        }
    }
    let http = emulator.http_addr();
    let https = emulator.https_addr();
    out!("front end: http://{http}  https://{https}");
    out!("state:     {}", emulator.state_file().display());
    for site in emulator.sites() {
        out!();
        out!("site {}", site.name);
        out!(
            "  main: https://{}   scm: https://{}",
            site.host,
            site.scm_host
        );
        out!(
            "  scm publishing credentials: {} / {}",
            site.publishing_user,
            site.publishing_password
        );
        out!(
            "  master key: {}   host key: {}",
            site.master_key,
            site.host_key
        );
        if !site.bound {
            out!("  no local code bound (serves a default page)");
        }
        if let Some(app_error) = &site.app_error {
            out!(
                "  error: the Functions host of function app `{}` does not start: {}",
                app_error.function_app.display(),
                app_error.error
            );
            out!("    every request the access restrictions allow gets 503 `Function host is not running.`, as on Azure; the other sites run");
            if let Some(help) = &app_error.help {
                out!("    help: {help}");
            }
        }
        for function in &site.functions {
            let methods = function
                .methods
                .as_ref()
                .map(|methods| format!(", methods [{}]", methods.join(", ")))
                .unwrap_or_default();
            let (address, no_example) = function_address(site, function);
            out!(
                "  function {} (authLevel {}{methods}): {address}",
                function.name,
                function.auth_level,
            );
            if let Some(reason) = no_example {
                out!("    no example URL: {reason}");
            }
            if function.disabled {
                out!(
                    "    disabled by the app setting `AzureWebJobs.{}.Disabled`: it responds with 404 unless the request carries the master key",
                    function.name
                );
            }
        }
        // The Functions host starts the other functions, so requests to these get 404.
        for error in &site.function_errors {
            out!("  {}", error.error);
            if let Some(help) = &error.help {
                out!("    help: {help}");
            }
        }
    }
    if let Some(analysis) = try_lines {
        print_try_lines(emulator, analysis, engine);
    }
}

/// Returns the text of a function line after the colon, and the reason when no example URL
/// exists. The text is the function's URL with a key it accepts. When the route has parameters,
/// it is the route template and an example URL from the same example request as the try line.
fn function_address(site: &SiteInfo, function: &FunctionInfo) -> (String, Option<String>) {
    let query = key_query(site, function);
    // Route parameters are written in braces, so a URL that contains them cannot be sent as is.
    if !function.route.contains('{') {
        return (format!("{}{query}", function.url), None);
    }
    let route = format!("route {}", function.route);
    match &function.example {
        ExampleRequest::Available { path, .. } => (
            format!("{route}  e.g. https://{}{path}{query}", site.host),
            None,
        ),
        ExampleRequest::Unavailable { reason } => (route, Some(reason.clone())),
    }
}

/// Returns the query that carries a key the function accepts: the master key for an
/// admin-level function, which accepts no other key, nothing for an anonymous one, which needs
/// no key, and the function's default key otherwise.
fn key_query(site: &SiteInfo, function: &FunctionInfo) -> String {
    match function.auth_level.as_str() {
        "anonymous" => String::new(),
        "admin" => format!("?code={}", site.master_key),
        _ => format!("?code={}", function.key),
    }
}

/// Caller of the printed example commands when the site's access restrictions allow it: a
/// documentation address (RFC 5737) that represents any internet client.
const DEFAULT_TRY_CALLER: &str = "internet:203.0.113.7";

/// Prints a `subnetlock call` and a `curl` command that send one function its example request.
/// The function is the first that runs on a site that some caller may reach. The caller is
/// [`DEFAULT_TRY_CALLER`] when `check`'s engine allows it. Otherwise it is the first caller of
/// `check`'s matrix that the site allows without depending on values unknown offline.
fn print_try_lines(emulator: &Emulator, analysis: &Analysis, engine: &EngineOptions) {
    // A disabled function responds with 404, so the example calls one that runs.
    let candidates: Vec<(&SiteInfo, &FunctionInfo, &str, &str)> = emulator
        .sites()
        .iter()
        .flat_map(|site| {
            site.functions
                .iter()
                .filter(|function| !function.disabled)
                .filter_map(move |function| match &function.example {
                    ExampleRequest::Available { method, path } => {
                        Some((site, function, method.as_str(), path.as_str()))
                    }
                    ExampleRequest::Unavailable { .. } => None,
                })
        })
        .collect();
    let Some(&first) = candidates.first() else {
        return;
    };

    let allowed = candidates.iter().find_map(|&candidate| {
        allowed_caller(analysis, engine, &candidate.0.host).map(|caller| (candidate, caller))
    });
    let denied = allowed.is_none();
    let ((site, function, method, path), caller) = match allowed {
        Some(found) => found,
        None => (first, DEFAULT_TRY_CALLER.to_owned()),
    };

    out!();
    out!("try:");
    if denied {
        out!(
            "  (check predicts 403 for this request: the access restrictions of every site with a function deny each caller it tries)"
        );
    }
    let url = format!("https://{}{path}{}", site.host, key_query(site, function));
    let method_flag = if method == "GET" {
        String::new()
    } else {
        format!(" -X {method}")
    };
    // The state directory is absolute by now, so the line works from any folder.
    let state_dir = emulator
        .state_file()
        .parent()
        .map(|dir| format!(" --state-dir {}", shell_quote(&dir.display().to_string())))
        .unwrap_or_default();
    out!(
        "  subnetlock call{state_dir} --from {}{method_flag} {}",
        shell_quote(&caller),
        shell_quote(&url)
    );
    let https = emulator.https_addr();
    out!(
        "  curl{method_flag} --connect-to ::{}:{} --cacert {} {}",
        https.ip(),
        https.port(),
        shell_quote(
            &emulator
                .state_file()
                .with_file_name("ca.pem")
                .display()
                .to_string()
        ),
        shell_quote(&url)
    );
    // The call line's caller was picked above, but curl's source is fixed: the front end treats
    // a direct connection as an internet caller with the client's loopback address.
    if !denied {
        let curl_caller = format!("internet:{}", https.ip());
        let curl_row = reachability_of(&analysis.topology, &curl_caller, &site.host, engine);
        match curl_row {
            Some(row) if row.allowed() && row.depends_on_unknown.is_empty() => {}
            Some(row) if !row.allowed() && row.depends_on_unknown.is_empty() => out!(
                "  (check predicts 403 for this curl command: its source is {}, which the access restrictions of {} deny; the call line above is allowed)",
                https.ip(),
                site.name
            ),
            _ => out!(
                "  (curl's source is {}, and whether the access restrictions of {} allow it depends on values known only at deployment time)",
                https.ip(),
                site.name
            ),
        }
    }
}

/// Returns a caller, written as `--from` accepts it, whose request to `host` the site's access
/// restrictions allow as `check` decides, or `None` when they deny every caller `check` tries.
fn allowed_caller(analysis: &Analysis, engine: &EngineOptions, host: &str) -> Option<String> {
    let certain = |row: &Reachability| row.allowed() && row.depends_on_unknown.is_empty();
    let default = reachability_of(&analysis.topology, DEFAULT_TRY_CALLER, host, engine);
    if default.as_ref().is_some_and(certain) {
        return Some(DEFAULT_TRY_CALLER.to_owned());
    }
    analysis
        .rows
        .iter()
        .filter(|row| row.to.host.eq_ignore_ascii_case(host))
        .find(|row| certain(row))
        .map(|row| row.from.label.clone())
}

/// Quotes `text` for a POSIX shell, so that a printed command line can be pasted as it is.
fn shell_quote(text: &str) -> String {
    let plain = !text.is_empty()
        && text
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b"/._-:@%+=,".contains(&byte));
    if plain {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::shell_quote;

    #[test]
    fn shell_quote_cases() {
        assert_eq!(shell_quote("/tmp/state"), "/tmp/state");
        assert_eq!(shell_quote("/tmp/rs dir"), "'/tmp/rs dir'");
        assert_eq!(shell_quote("/tmp/q'd"), "'/tmp/q'\\''d'");
        assert_eq!(shell_quote(""), "''");
    }
}
