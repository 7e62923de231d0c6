//! Function app A of the reference system: `GET /api/function-a` calls function B at the URL in
//! app setting `target-url` and reports what B returned.
//!
//! A 200 from B becomes `200 Function B returned <body>`. Any other status, or a failure to
//! reach B at all (such as a 403 from B's access restrictions), becomes
//! `400 Error calling function B: <detail>`. A missing or invalid app setting becomes a 500.

use std::process::ExitCode;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use reqwest::Url;
use subnetlock_functions::{error_chain, InvocationId};

/// Name of the app setting that contains function B's URL, including `?code=<function key>`.
const TARGET_URL_SETTING: &str = "target-url";

/// Environment variables that may carry [`TARGET_URL_SETTING`], in lookup order.
///
/// App Service passes app settings to the code as environment variables. Windows workers keep
/// the name as written. App Service on Linux accepts only letters, digits, periods and
/// underscores in app setting names
/// (<https://learn.microsoft.com/en-us/azure/app-service/configure-common#configure-app-settings>)
/// and replaces `.` with `_` in the variable name
/// (<https://learn.microsoft.com/en-us/training/modules/configure-web-app-settings/2-configure-application-settings>).
/// A Linux container was also reported to drop the `-` from names
/// (<https://github.com/dotnet/extensions/issues/1659>), hence `targeturl`.
/// NOTE: the `APPSETTING_` prefixed form is kept for older workers; Microsoft Learn does not
/// document it for Linux.
const TARGET_URL_VARIABLES: [&str; 5] = [
    "target-url",
    "target_url",
    "targeturl",
    "APPSETTING_target-url",
    "APPSETTING_target_url",
];

/// Time allowed to open the TCP (and proxy) connection to function B.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Time allowed for the whole call to function B, body included.
const TOTAL_TIMEOUT: Duration = Duration::from_secs(30);

/// Query parameters whose values are keys and must never reach a log or a response.
const SECRET_QUERY_PARAMETERS: [&str; 1] = ["code"];

fn main() -> ExitCode {
    subnetlock_functions::run("function-app-a", || {
        Router::new()
            .route("/api/function-a", get(function_a))
            .with_state(Caller::new())
    })
}

/// Outgoing side of function A: one HTTP client, built on the first request.
///
/// The client is built lazily so that a bad `SSL_CERT_FILE` produces a 500 that names the
/// problem instead of a handler that never starts.
#[derive(Clone)]
struct Caller {
    client: std::sync::Arc<tokio::sync::OnceCell<reqwest::Client>>,
}

impl Caller {
    fn new() -> Self {
        Self {
            client: std::sync::Arc::new(tokio::sync::OnceCell::new()),
        }
    }

    /// Returns the shared client, building it on first use.
    ///
    /// reqwest 0.12 reads `HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY` and `NO_PROXY` (and their
    /// lowercase forms) when the client is built. With the `rustls-tls-native-roots` feature it
    /// loads trust anchors through rustls-native-certs 0.8, which reads only `SSL_CERT_FILE`
    /// and `SSL_CERT_DIR` when either is set and the system store otherwise.
    async fn client(&self) -> Result<&reqwest::Client, reqwest::Error> {
        self.client
            .get_or_try_init(|| async {
                reqwest::Client::builder()
                    .connect_timeout(CONNECT_TIMEOUT)
                    .timeout(TOTAL_TIMEOUT)
                    .build()
            })
            .await
    }
}

/// Calls function B and maps its response to function A's response.
async fn function_a(
    State(caller): State<Caller>,
    InvocationId(invocation): InvocationId,
) -> (StatusCode, String) {
    let invocation = invocation.as_str();
    let target = match target_url(|name| std::env::var(name).ok()) {
        Ok(target) => target,
        Err(message) => {
            tracing::error!(invocation, %message, "function-a is not configured");
            return (StatusCode::INTERNAL_SERVER_ERROR, message);
        }
    };
    let redacted_target = redact(target.as_str());

    let client = match caller.client().await {
        Ok(client) => client,
        Err(err) => {
            let detail = error_chain(&err.without_url());
            tracing::error!(invocation, error = %detail, "cannot build the HTTP client");
            let message = format!(
                "failed to build the HTTP client: {detail}; check `SSL_CERT_FILE`, \
                 `SSL_CERT_DIR` and the proxy variables"
            );
            return (StatusCode::INTERNAL_SERVER_ERROR, message);
        }
    };

    tracing::info!(invocation, target = %redacted_target, "calling function B");
    let (status, body) = call_function_b(client, target, invocation).await;
    tracing::info!(
        invocation,
        target = %redacted_target,
        status = status.as_u16(),
        "function-a responded",
    );
    (status, body)
}

/// Sends `GET target` and turns the outcome into function A's status and body.
async fn call_function_b(
    client: &reqwest::Client,
    target: Url,
    invocation: &str,
) -> (StatusCode, String) {
    let redacted_target = redact(target.as_str());

    let response = match client.get(target).send().await {
        Ok(response) => response,
        Err(err) => return transport_failure(&redacted_target, err, invocation),
    };

    let status = response.status();
    let body = match response.text().await {
        Ok(body) => body,
        Err(err) => return transport_failure(&redacted_target, err, invocation),
    };

    if status == reqwest::StatusCode::OK {
        (StatusCode::OK, format!("Function B returned {body}"))
    } else {
        tracing::warn!(
            invocation,
            target = %redacted_target,
            status = status.as_u16(),
            "function B returned an error status",
        );
        (
            StatusCode::BAD_REQUEST,
            format!("Error calling function B: {body}"),
        )
    }
}

/// Builds the 400 for a call that never got an HTTP answer (DNS, TCP, TLS, proxy, timeout).
///
/// reqwest puts the full URL, key included, into its error text, so it is removed first.
fn transport_failure(
    redacted_target: &str,
    err: reqwest::Error,
    invocation: &str,
) -> (StatusCode, String) {
    let kind = if err.is_timeout() {
        "timed out"
    } else if err.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };

    let detail = format!(
        "{kind} for `{redacted_target}`: {}",
        error_chain(&err.without_url())
    );
    tracing::warn!(invocation, error = %detail, "cannot reach function B");
    (
        StatusCode::BAD_REQUEST,
        format!("Error calling function B: {detail}"),
    )
}

/// Reads and parses function B's URL through `lookup` (the process environment in production).
///
/// Returns the message for the 500 response when the setting is missing, empty or invalid.
fn target_url(lookup: impl Fn(&str) -> Option<String>) -> Result<Url, String> {
    let found = TARGET_URL_VARIABLES
        .iter()
        .find_map(|name| lookup(name).map(|value| (*name, value)));

    let Some((variable, raw)) = found else {
        return Err(format!(
            "missing app setting `{TARGET_URL_SETTING}`: set it to function B's URL with its \
             function key, for example `az functionapp config appsettings set --name \
             <function-app-a> --resource-group <group> --settings \
             {TARGET_URL_SETTING}=https://<function-app-b>.azurewebsites.net/api/function-b?code=<key>`, \
             or export `target_url` when running the handler locally"
        ));
    };

    let raw = raw.trim();
    if raw.is_empty() {
        return Err(format!(
            "app setting `{TARGET_URL_SETTING}` (environment variable `{variable}`) is empty: \
             set it to function B's URL with `?code=<function key>`"
        ));
    }

    match Url::parse(raw) {
        Ok(url) if matches!(url.scheme(), "http" | "https") => Ok(url),
        Ok(_) | Err(_) => Err(format!(
            "invalid URL `{}` in app setting `{TARGET_URL_SETTING}` (environment variable \
             `{variable}`): use an absolute http or https URL such as \
             `https://<function-app-b>.azurewebsites.net/api/function-b?code=<key>`",
            redact(raw)
        )),
    }
}

/// Replaces the value of each key-bearing query parameter (`code=`) with `***`.
///
/// Works on the raw text, so it also covers values that are not valid URLs.
fn redact(url: &str) -> String {
    let Some((before, after)) = url.split_once('?') else {
        return url.to_owned();
    };
    let (query, fragment) = match after.split_once('#') {
        Some((query, fragment)) => (query, Some(fragment)),
        None => (after, None),
    };

    let pairs: Vec<String> = query
        .split('&')
        .map(|pair| {
            let name = pair.split_once('=').map_or(pair, |(name, _)| name);
            let secret = SECRET_QUERY_PARAMETERS
                .iter()
                .any(|secret| name.eq_ignore_ascii_case(secret));
            if secret {
                format!("{name}=***")
            } else {
                pair.to_owned()
            }
        })
        .collect();

    let mut redacted = format!("{before}?{}", pairs.join("&"));
    if let Some(fragment) = fragment {
        redacted.push('#');
        redacted.push_str(fragment);
    }
    redacted
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn redact_cases() {
        let cases = [
            (
                "https://b.azurewebsites.net/api/function-b?code=s3cret",
                "https://b.azurewebsites.net/api/function-b?code=***",
            ),
            ("http://h/p?x=1&CODE=k&y=2", "http://h/p?x=1&CODE=***&y=2"),
            ("http://h/p?code=k#frag", "http://h/p?code=***#frag"),
            ("http://h/p?code", "http://h/p?code=***"),
            ("http://h/p?codex=1", "http://h/p?codex=1"),
            ("http://h/p", "http://h/p"),
            ("not a url?code=k", "not a url?code=***"),
        ];

        for (input, expected) in cases {
            assert_eq!(redact(input), expected, "input {input}");
        }
    }

    #[test]
    fn target_url_lookup_order() {
        let cases = [
            (vec![("target-url", "http://a/")], "http://a/"),
            (vec![("target_url", "http://b/")], "http://b/"),
            (vec![("targeturl", "http://c/")], "http://c/"),
            (vec![("APPSETTING_target-url", "http://d/")], "http://d/"),
            (
                vec![("target_url", "http://b/"), ("target-url", "http://a/")],
                "http://a/",
            ),
        ];

        for (environment, expected) in cases {
            let lookup = |name: &str| {
                environment
                    .iter()
                    .find(|(key, _)| *key == name)
                    .map(|(_, value)| (*value).to_owned())
            };
            let url = target_url(lookup).unwrap();
            assert_eq!(url.as_str(), expected, "environment {environment:?}");
        }
    }

    #[test]
    fn target_url_missing() {
        let message = target_url(|_| None).unwrap_err();
        assert!(message.starts_with("missing app setting `target-url`"));
        assert!(message.contains("az functionapp config appsettings set"));
    }

    #[test]
    fn target_url_empty() {
        let message = target_url(|_| Some("  ".into())).unwrap_err();
        assert!(message.contains("is empty"));
    }

    #[test]
    fn target_url_invalid_hides_key() {
        let message = target_url(|_| Some("ftp://b/api?code=s3cret".into())).unwrap_err();
        assert!(message.starts_with("invalid URL `ftp://b/api?code=***`"));
        assert!(!message.contains("s3cret"));
    }
}
