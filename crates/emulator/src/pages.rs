//! The fixed responses of the App Service front end.

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use std::net::IpAddr;

/// Builds the denial App Service sends when access restrictions or app access block a request:
/// status 403 with reason phrase `Ip Forbidden`, header `x-ms-forbidden-ip` with the source
/// address as the front end saw it (IPv6 in brackets), and the static "Error 403 - Forbidden"
/// page. The wire details are third-party captures, not Microsoft documentation:
/// <https://github.com/microsoft/clarity/issues/1133> and
/// <https://milkyware.github.io/azure/routing-azure-app-service-traffic-between-tenants-with-service-endpoints>.
pub fn forbidden(source: IpAddr) -> Response<Bytes> {
    let shown = match source {
        IpAddr::V4(address) => address.to_string(),
        IpAddr::V6(address) => format!("[{address}]"),
    };
    let mut response = html(StatusCode::FORBIDDEN, FORBIDDEN_PAGE);
    response
        .extensions_mut()
        .insert(hyper::ext::ReasonPhrase::from_static(b"Ip Forbidden"));
    if let Ok(value) = HeaderValue::from_str(&shown) {
        response.headers_mut().insert("x-ms-forbidden-ip", value);
    }
    response
}

/// Response header, with the value [`EMULATOR_ORIGIN`], that marks a response no site produced.
/// The front end sets it on its page for a host that no site serves, and on its 400 for an
/// invalid or missing Host. The egress proxy sets it
/// on its own responses, such as its 502 for a destination that is not a site or a request
/// that a network security group drops. Azure sends no such header, and `subnetlock call`
/// reads it to distinguish these responses from a site's.
pub const ORIGIN_HEADER: &str = "x-subnetlock-origin";

/// The value of [`ORIGIN_HEADER`].
pub const EMULATOR_ORIGIN: &str = "emulator";

/// Adds [`ORIGIN_HEADER`] to a response that no site produced.
pub fn mark_emulator_origin(headers: &mut http::HeaderMap) {
    headers.insert(ORIGIN_HEADER, HeaderValue::from_static(EMULATOR_ORIGIN));
}

/// Builds a plain-text response that no site produced, marked with [`ORIGIN_HEADER`].
pub fn emulator_text(status: StatusCode, body: impl Into<String>) -> Response<Bytes> {
    let mut response = text(status, body);
    mark_emulator_origin(response.headers_mut());
    response
}

/// Builds the answer for a host name that no emulated site serves.
pub fn site_not_found(host: &str) -> Response<Bytes> {
    let body = format!(
        "<!DOCTYPE html><html><head><title>404 Web Site not found.</title></head><body>\
<h1>404 Web Site not found.</h1><p>No site of this deployment serves <code>{}</code>.</p>\
<p>Send requests with the Host header of a site, for example \
<code>&lt;app&gt;.azurewebsites.net</code>.</p></body></html>",
        escape(host)
    );
    let mut response = html(StatusCode::NOT_FOUND, &body);
    mark_emulator_origin(response.headers_mut());
    response
}

/// Builds the page a site without bound code serves, like App Service's default page.
pub fn default_site_page(site: &str) -> Response<Bytes> {
    let body = format!(
        "<!DOCTYPE html><html><head><title>{0}</title></head><body><h1>Your app <code>{0}</code> is running</h1>\
<p>subnetlock has no local code bound to this site; add it to the binding file to serve it.</p></body></html>",
        escape(site)
    );
    html(StatusCode::OK, &body)
}

/// Builds the response of a Functions host that is not running: 503 with the body that the
/// host's `HostAvailabilityCheckMiddleware` (Azure/azure-functions-host) writes. The site sends
/// it on Azure, so it carries no emulator-origin header.
// NOTE: the real host first waits for the host to become ready (`DelayUntilHostReady`). The
// emulator's host for such a site never starts, so it responds at once.
pub fn host_not_running() -> Response<Bytes> {
    text(
        StatusCode::SERVICE_UNAVAILABLE,
        "Function host is not running.",
    )
}

pub fn text(status: StatusCode, body: impl Into<String>) -> Response<Bytes> {
    let mut response = Response::new(Bytes::from(body.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

pub fn json(status: StatusCode, value: &serde_json::Value) -> Response<Bytes> {
    let mut response = Response::new(Bytes::from(value.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    response
}

fn html(status: StatusCode, body: &str) -> Response<Bytes> {
    let mut response = Response::new(Bytes::from(body.to_owned()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
    response
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The static page App Service returns with an access-restriction denial. Title and sentence
/// as captured in <https://github.com/microsoft/clarity/issues/1133>; the styling of the real
/// page is left out.
const FORBIDDEN_PAGE: &str = "<!DOCTYPE html>
<html>
<head>
<title>Error 403 - Forbidden</title>
<meta http-equiv=\"Content-Type\" content=\"text/html; charset=utf-8\" />
</head>
<body>
<div id=\"content\">
<h1>Error 403 - Forbidden</h1>
<p>The web app you have attempted to reach has blocked your access.</p>
</div>
</body>
</html>
";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forbidden_shows_ipv6_in_brackets() {
        let response = forbidden("fd00::1".parse().expect("address"));
        let shown = response.headers().get("x-ms-forbidden-ip");
        assert_eq!(shown.and_then(|v| v.to_str().ok()), Some("[fd00::1]"));
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
    }

    #[test]
    fn forbidden_page_title() {
        let response = forbidden("203.0.113.7".parse().expect("address"));
        let body = String::from_utf8_lossy(response.body());
        assert!(body.contains("Error 403 - Forbidden"));
        assert!(body.contains("has blocked your access"));
    }

    #[test]
    fn site_not_found_escapes_host() {
        let response = site_not_found("<x>");
        let body = String::from_utf8_lossy(response.body());
        assert!(body.contains("&lt;x&gt;"));
    }

    #[test]
    fn emulator_origin_marks_only_pages_of_no_site() {
        let origin = |response: &Response<Bytes>| {
            response
                .headers()
                .get(ORIGIN_HEADER)
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned)
        };
        assert_eq!(
            origin(&site_not_found("x")).as_deref(),
            Some(EMULATOR_ORIGIN)
        );
        assert_eq!(
            origin(&emulator_text(StatusCode::BAD_GATEWAY, "x")).as_deref(),
            Some(EMULATOR_ORIGIN)
        );
        assert_eq!(
            origin(&forbidden("203.0.113.7".parse().expect("address"))),
            None
        );
        assert_eq!(origin(&default_site_page("x")), None);
        assert_eq!(origin(&text(StatusCode::UNAUTHORIZED, "")), None);
    }
}
