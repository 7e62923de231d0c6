//! `subnetlock call`: one request into a running emulator, as a chosen caller.

use std::path::Path;

use miette::{miette, IntoDiagnostic, Result, WrapErr};

use crate::args::CallArgs;
use crate::{EXIT_FINDINGS, EXIT_OK};

/// The fields of the state file `call` reads.
#[derive(serde::Deserialize)]
struct State {
    control_url: String,
    token: String,
    ca_file: std::path::PathBuf,
}

pub async fn call(args: CallArgs) -> Result<i32> {
    let state = read_state(&args.state_dir)?;
    let url = reqwest::Url::parse(&args.url).map_err(|error| {
        miette!(
            help = "write a full URL such as https://<site>.azurewebsites.net/api/<function>?code=<key>",
            "invalid URL `{}`: {error}",
            args.url
        )
    })?;
    let source = source_proxy(&state, &args.from).await?;
    let sample = format!("internet:{}", subnetlock_model::egress::INTERNET_SAMPLE);
    if let Some(caller) = &source.caller {
        if args.from.trim().eq_ignore_ascii_case("internet") && *caller != sample {
            err!(
                "note: caller `internet` is `{caller}` in this deployment, because a rule's range or service tag contains {}",
                subnetlock_model::egress::INTERNET_SAMPLE
            );
        }
    }
    let proxy = source.proxy;
    let ca = std::fs::read(&state.ca_file)
        .into_diagnostic()
        .wrap_err_with(|| format!("cannot read the emulator CA `{}`", state.ca_file.display()))?;

    let client = client_through(&proxy, &ca)?;
    let method_text = match (&args.method, &args.data) {
        (Some(method), _) => method.as_str(),
        (None, Some(_)) => "POST",
        (None, None) => "GET",
    };
    let method =
        reqwest::Method::from_bytes(method_text.to_ascii_uppercase().as_bytes()).map_err(|_| {
            miette!(
                help = "use GET, POST, PUT, DELETE, ...",
                "invalid method `{method_text}`"
            )
        })?;
    let mut request = client.request(method, url);
    for header in &args.header {
        let (name, value) = header.split_once(':').ok_or_else(|| {
            miette!(
                help = "write headers as `Name: value`",
                "invalid header `{header}`"
            )
        })?;
        request = request.header(name.trim(), value.trim());
    }
    if let Some(data) = &args.data {
        request = request.body(data.clone());
    }

    let response = request
        .send()
        .await
        .map_err(|error| miette!("request failed: {}", request_error_text(error)))?;
    let status = response.status();
    let from_site = !response
        .headers()
        .contains_key(subnetlock_emulator::ORIGIN_HEADER);
    // The reason phrase as received: App Service's denial reads `403 Ip Forbidden`, which is
    // not the standard text for 403.
    let reason = response
        .extensions()
        .get::<hyper::ext::ReasonPhrase>()
        .map(|reason| String::from_utf8_lossy(reason.as_bytes()).into_owned())
        .or_else(|| status.canonical_reason().map(str::to_owned))
        .unwrap_or_default();
    if !args.include && !status.is_success() {
        // Without `-i` the body alone does not show a denial or a missing key.
        err!("status {} {reason}", status.as_u16());
    }
    if args.include {
        out!("{:?} {} {reason}", response.version(), status.as_u16());
        for (name, value) in response.headers() {
            out!("{}: {}", name, value.to_str().unwrap_or("<binary>"));
        }
        out!();
    }
    let body = response.text().await.into_diagnostic()?;
    out!("{body}");
    // A site's response succeeds whatever its status, as curl's does. A response the emulator
    // made itself stands for a request that reached no site, which curl would report as a
    // failed connection.
    match args.expect_status {
        Some(expected) if expected != status.as_u16() => {
            err!("expected status {expected}, got {}", status.as_u16());
            Ok(EXIT_FINDINGS)
        }
        Some(_) => Ok(EXIT_OK),
        None if !from_site => Err(miette!(
            help = format!(
                "the response body gives the reason; pass --expect-status {} when this is the expected outcome",
                status.as_u16()
            ),
            "no site sent this response: the emulator returned {} {reason} itself, because the host is not a site of the deployment or the request stopped before the front end",
            status.as_u16()
        )),
        None => Ok(EXIT_OK),
    }
}

/// Formats a failed request with its causes, because reqwest's own message ("error sending
/// request") hides them. The URL is left out, because its query can hold a function key.
fn request_error_text(error: reqwest::Error) -> String {
    subnetlock_emulator::with_causes(&error.without_url())
}

fn read_state(state_dir: &Path) -> Result<State> {
    let path = state_dir.join("state.json");
    let text = std::fs::read_to_string(&path).map_err(|error| {
        miette!(
            help = "start the emulator with `subnetlock up`, or pass its --state-dir",
            "cannot read `{}`: {error}",
            path.display()
        )
    })?;
    serde_json::from_str(&text)
        .into_diagnostic()
        .wrap_err_with(|| format!("invalid state file `{}`", path.display()))
}

/// A source proxy of the running emulator.
struct SourceProxy {
    /// The proxy's address, `host:port`.
    proxy: String,
    /// The caller its requests come from, as the emulator resolved it: `internet` alone
    /// becomes `internet:<address>`. `None` when the response does not name it.
    caller: Option<String>,
}

/// Asks the control API for the proxy of `from`.
async fn source_proxy(state: &State, from: &str) -> Result<SourceProxy> {
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .into_diagnostic()?;
    let response = client
        .post(format!("{}/v1/sources", state.control_url))
        .bearer_auth(&state.token)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(serde_json::json!({ "from": from }).to_string())
        .send()
        .await
        .map_err(|error| {
            miette!(
                help = "is `subnetlock up` still running?",
                "cannot reach the emulator: {}",
                request_error_text(error)
            )
        })?;
    let status = response.status();
    let body = response.text().await.into_diagnostic()?;
    // The control API returns 400 with the caller's problem on the first line, which names the
    // caller itself, and the deployment's callers on the next.
    if status == reqwest::StatusCode::BAD_REQUEST {
        let body = body.trim_end();
        let (message, callers) = body.split_once('\n').unwrap_or((body, ""));
        let mut help = "write `internet`, `internet:<address>`, `subnet:<vnet>/<subnet>`, `app:<site>` or `servicetag:<tag>`".to_owned();
        if let Some(callers) = callers.trim().strip_prefix("callers in this deployment: ") {
            help = format!("{help}; callers in this deployment: {callers}");
        }
        return Err(miette!(help = help, "{message}"));
    }
    if !status.is_success() {
        return Err(miette!(
            "the emulator's control API returned {} for caller `{from}`: {}",
            status.as_u16(),
            body.trim_end()
        ));
    }
    let value: serde_json::Value = serde_json::from_str(&body).into_diagnostic()?;
    let field = |name: &str| {
        value
            .get(name)
            .and_then(|text| text.as_str())
            .map(str::to_owned)
    };
    let proxy = field("proxy")
        .ok_or_else(|| miette!("the emulator answered without a proxy address: {body}"))?;
    Ok(SourceProxy {
        proxy,
        caller: field("from"),
    })
}

/// An HTTP client whose every request goes through `proxy` and trusts only the emulator's CA.
/// It follows no redirect, so the caller sees the response the site sent, such as the 301 of
/// `httpsOnly`, as curl shows it without `-L`.
pub fn client_through(proxy: &str, ca_pem: &[u8]) -> Result<reqwest::Client> {
    let certificate = reqwest::Certificate::from_pem(ca_pem).into_diagnostic()?;
    let proxy = reqwest::Proxy::all(format!("http://{proxy}")).into_diagnostic()?;
    reqwest::Client::builder()
        .proxy(proxy)
        .tls_built_in_root_certs(false)
        .add_root_certificate(certificate)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(std::time::Duration::from_secs(60))
        .build()
        .into_diagnostic()
}
