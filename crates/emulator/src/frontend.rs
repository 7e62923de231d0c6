//! The emulated App Service front end.
//!
//! One front end serves every site of the deployment, on a plain HTTP and a TLS listener on
//! loopback, and routes by host name (`Host`, or the host of an absolute-form target). It
//! enforces app access and access restrictions before anything else, as Azure's front-end roles
//! do upstream of the workers: a denied request never reaches the Functions host, so function
//! keys are not consulted. Allowed requests go to the site's Functions host, to a minimal scm
//! (Kudu) site, or to a default page for sites without local code.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use http::{header, HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Body as _;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioTimer;
use subnetlock_access::{Action, CompiledSiteAccess, HeaderLookup, SiteKind, Source};
use subnetlock_model::Topology;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::accept_failures::{self, AcceptFailures};
use crate::decisions::{self, push_ip, DecisionLog, DecisionRecord, RequestPart, SitePart};
use crate::functions_host::{Direct, FunctionsHost};
use crate::handler_client::HOP_BY_HOP;
use crate::pages;
use write_timeout::{is_write_timeout, WriteTimeout};

/// Largest request body the front end buffers: Azure Functions limits an HTTP request to
/// 100 MB, 104,857,600 bytes (Microsoft Learn, "Azure Functions HTTP trigger", Limits).
// NOTE: Learn does not say which status a longer request gets; 413 is the HTTP status for it
// (RFC 9110, section 15.5.14). See docs/fidelity.md.
const MAX_BODY_BYTES: usize = 104_857_600;

mod fast_path;
mod threads;
mod write_timeout;

pub(crate) use threads::spawn_threads;
pub use write_timeout::WRITE_TIMEOUT;

/// A map keyed by lower-case site name. Its hasher is foldhash: SipHash, the standard one,
/// took a few percent of the front end's time per request, and site names are not chosen by
/// callers, so resistance to collision attacks is not needed.
pub type SiteMap<V> = HashMap<String, V, foldhash::fast::RandomState>;

/// Everything the front end needs to handle a request.
pub struct FrontEnd {
    pub topology: Arc<Topology>,
    /// Compiled access per site, keyed by lower-case site name.
    pub access: SiteMap<CompiledSiteAccess>,
    /// Functions hosts per site, keyed by lower-case site name.
    pub hosts: SiteMap<Arc<FunctionsHost>>,
    /// Lower-case names of the sites whose bound app fails to load, so that no Functions host
    /// runs for them.
    pub hosts_not_running: std::collections::HashSet<String>,
    /// scm-site publishing credentials (user, password) per site.
    pub publishing: HashMap<String, (String, String)>,
    pub decisions: Arc<DecisionLog>,
    /// Maximum time a write to a caller may wait without progress before the connection is
    /// closed: [`WRITE_TIMEOUT`] unless a test shortens it.
    pub write_timeout: Duration,
}

/// The request headers as the engine reads them.
struct Headers<'a>(&'a http::HeaderMap);

impl HeaderLookup for Headers<'_> {
    fn values(&self, lower_case_name: &str) -> Vec<&str> {
        self.0
            .get_all(lower_case_name)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .collect()
    }

    fn visit_values(&self, lower_case_name: &str, visit: &mut dyn FnMut(&str) -> bool) -> bool {
        let mut present = false;
        for value in self.0.get_all(lower_case_name) {
            // A value that is not visible ASCII cannot match a filter, but it still counts
            // as the header being present.
            present = true;
            if let Ok(text) = value.to_str() {
                if visit(text) {
                    break;
                }
            }
        }
        present
    }
}

/// Status recorded for a request whose caller went away before the response was sent, as
/// nginx logs it. No response carries it.
pub const CALLER_CLOSED: u16 = 499;

/// Maximum time the front end reads an unwanted body before it sends its response. A client
/// that sends its body at once finishes well within it, and a slow one delays the response by
/// no more than this.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// Maximum time the front end waits for an allowed request's body, Azure's request timeout.
/// A body that takes longer gets 408.
const BODY_TIMEOUT: Duration = Duration::from_secs(230);

/// The decision record of one request, written to the log once: by [`Self::finish`] with the
/// status sent, or on drop with [`CALLER_CLOSED`] when the server drops the request because
/// the caller closed the connection. `finish` takes the record out, so drop finds none.
pub(crate) struct PendingRecord {
    decisions: Arc<DecisionLog>,
    record: Option<DecisionRecord>,
}

/// The parts of a request that [`FrontEnd::admit_direct`] reads.
pub(crate) struct DirectRequest<'a> {
    /// The host name the request addresses, as [`request_host`] returns it.
    pub host: std::borrow::Cow<'a, str>,
    pub method: &'a http::Method,
    /// The origin-form target, path and query.
    pub target: &'a str,
    /// The path of `target`, without the query.
    pub path: &'a str,
    pub headers: &'a dyn HeaderLookup,
    /// The function key the request presents (`functions_host::key_from`).
    pub key: &'a str,
}

impl PendingRecord {
    fn record(&mut self) -> Option<&mut DecisionRecord> {
        self.record.as_mut()
    }

    /// Pairs the record with the front end's own response, to be finished by
    /// [`FrontEnd::complete`].
    fn respond(self, response: Response<Bytes>) -> Responded {
        Responded {
            record: self,
            response,
        }
    }

    /// Logs the record with the status of `response`, and returns the response.
    pub(crate) fn finish(self, response: Response<Bytes>) -> Response<Bytes> {
        self.finish_with_status(response.status().as_u16());
        response
    }

    /// Logs the record with `status`, the status of the response about to be sent.
    pub(crate) fn finish_with_status(mut self, status: u16) {
        if let Some(mut record) = self.record.take() {
            record.status = status;
            log_record(&self.decisions, record);
        }
    }
}

/// The decision record of a request on the fast path, which [`FrontEnd::admit_direct`] writes
/// as its line up to the status. Like [`PendingRecord`], it is logged once: by
/// [`Self::finish_with_status`], or on drop with [`CALLER_CLOSED`].
pub(crate) struct PendingLine<'f> {
    decisions: &'f DecisionLog,
    /// The record as `decisions::write_json_tail` writes it, without the status. Empty once
    /// logged.
    tail: Vec<u8>,
    /// Positions of the caller's name and the host name in `tail`, for the log event.
    caller: Option<std::ops::Range<usize>>,
    host: Option<std::ops::Range<usize>>,
    address: IpAddr,
}

/// The state the fast path keeps per connection for its records. A connection mostly carries
/// one kind of request to one site, so what its requests share is written or looked up once
/// per change.
pub(crate) struct ConnectionPart<'f> {
    /// The `caller` and `source` members, the same for every record of the connection.
    bytes: Vec<u8>,
    /// Position of the caller's name in `bytes`, for the log event.
    caller: Option<std::ops::Range<usize>>,
    address: IpAddr,
    /// The last decision, with its members from `verdict` to `ambiguities`.
    last_decision: Option<(subnetlock_access::Decision, Vec<u8>)>,
    last_site: Option<LastSite<'f>>,
}

/// The site of a connection's last request, by its index in the topology: its `site` and
/// `site_kind` members, and its access restrictions and Functions host, which would otherwise
/// be looked up by name for every request.
struct LastSite<'f> {
    index: usize,
    /// The host name that request addressed, which names the site's main host name: a scan of
    /// the sites' host names took about 350 instructions per request.
    host_name: Box<str>,
    members: Vec<u8>,
    access: &'f CompiledSiteAccess,
    host: &'f FunctionsHost,
}

impl ConnectionPart<'_> {
    pub(crate) fn new(caller: &str, source: &Source) -> Self {
        let mut bytes = Vec::with_capacity(256);
        let caller = decisions::write_caller_and_source(&mut bytes, caller, source);
        ConnectionPart {
            bytes,
            caller,
            address: source.address,
            last_decision: None,
            last_site: None,
        }
    }
}

impl PendingLine<'_> {
    /// Logs the record with `status`, the status of the response about to be sent. Returns the
    /// record's buffer, emptied, for the connection's next record.
    pub(crate) fn finish_with_status(mut self, status: u16) -> Option<Vec<u8>> {
        self.log(status)
    }

    fn log(&mut self, status: u16) -> Option<Vec<u8>> {
        if self.tail.is_empty() {
            return None;
        }
        let mut tail = std::mem::take(&mut self.tail);
        // Reading the names back from the line costs more than the rest of a disabled event.
        if tracing::enabled!(target: "subnetlock::frontend", tracing::Level::INFO) {
            let text = |range: &Option<std::ops::Range<usize>>| {
                range
                    .clone()
                    .and_then(|range| tail.get(range))
                    .and_then(|bytes| std::str::from_utf8(bytes).ok())
                    .unwrap_or("")
            };
            log_event(
                text(&self.caller),
                self.address,
                text(&self.host),
                Some(Action::Allow),
                status,
            );
        }
        decisions::write_status(&mut tail, status);
        let (_, spare) = self.decisions.push_tail(tail);
        spare
    }
}

impl Drop for PendingLine<'_> {
    fn drop(&mut self) {
        self.log(CALLER_CLOSED);
    }
}

impl Drop for PendingRecord {
    fn drop(&mut self) {
        if let Some(mut record) = self.record.take() {
            record.status = CALLER_CLOSED;
            log_record(&self.decisions, record);
        }
    }
}

/// Starts the record of a request from `caller`, stamped now, with nothing yet known about
/// its site or decision.
fn new_record(caller: &str, source: Source) -> DecisionRecord {
    DecisionRecord {
        sequence: 0,
        time: record_time(chrono::Utc::now()),
        caller: caller.to_owned(),
        source,
        host: String::new(),
        site: None,
        site_kind: None,
        method: String::new(),
        path: String::new(),
        verdict: None,
        reason: None,
        ambiguities: Vec::new(),
        status: 0,
    }
}

/// Formats `now` as RFC 3339 with milliseconds, as `to_rfc3339_opts(Millis, true)` does.
fn record_time(now: chrono::DateTime<chrono::Utc>) -> String {
    let mut text = Vec::with_capacity(24);
    write_record_time(&mut text, now.timestamp(), now.timestamp_subsec_millis());
    // Every byte written is ASCII.
    String::from_utf8(text).unwrap_or_default()
}

/// Returns the current time as seconds since the Unix epoch and milliseconds, for
/// [`write_record_time`]. `chrono::Utc::now` took about 200 instructions per request, most of
/// them for a calendar date that the record needs only once a second.
fn now_for_record() -> (i64, u32) {
    match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        Ok(since) => (
            i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
            since.subsec_millis(),
        ),
        Err(_) => {
            let now = chrono::Utc::now();
            (now.timestamp(), now.timestamp_subsec_millis())
        }
    }
}

/// Appends the time `second` (since the Unix epoch) and `millis` as [`record_time`] formats
/// it. The text up to the seconds is kept per thread and reused within the same second,
/// because formatting the whole date for every request showed in instruction counts.
fn write_record_time(out: &mut Vec<u8>, second: i64, millis: u32) {
    thread_local! {
        static SECOND: std::cell::RefCell<(i64, String)> =
            const { std::cell::RefCell::new((i64::MIN, String::new())) };
    }
    // A leap second shows as 1,000 milliseconds or more in chrono.
    let millis = millis.min(999);
    SECOND.with_borrow_mut(|(cached_second, prefix)| {
        if *cached_second != second {
            // Only a time after chrono's last year, 262,143, has no date, and then the epoch is written.
            let date = chrono::DateTime::from_timestamp(second, 0).unwrap_or_default();
            *prefix = date.format("%Y-%m-%dT%H:%M:%S").to_string();
            *cached_second = second;
        }
        out.extend_from_slice(prefix.as_bytes());
    });
    // `millis` is below 1,000, so each digit fits in a byte.
    let digit = |value: u32| b'0' + (value % 10) as u8;
    out.extend_from_slice(&[
        b'.',
        digit(millis / 100),
        digit(millis / 10),
        digit(millis),
        b'Z',
    ]);
}

fn log_record(decisions: &DecisionLog, record: DecisionRecord) {
    log_event(
        &record.caller,
        record.source.address,
        &record.host,
        record.verdict,
        record.status,
    );
    decisions.push(&record);
}

fn log_event(caller: &str, address: IpAddr, host: &str, verdict: Option<Action>, status: u16) {
    tracing::info!(
        target: "subnetlock::frontend",
        caller,
        source = %address,
        host,
        verdict = verdict.map_or("none", |verdict| match verdict {
            Action::Allow => "Allow",
            Action::Deny => "Deny",
        }),
        status,
        "front-end decision"
    );
}

/// The front end's decision on a request's head. It owns the request's pending record, so it
/// is made before the server may drop the request, and a caller that goes away at once is
/// still recorded.
pub(crate) enum Admission {
    /// A response from the front end itself: for a malformed Host, a host no site serves, a
    /// denial, or the redirect of `httpsOnly`. Its record is written when the response is
    /// ready to go, after any unwanted body is drained.
    Responded(Responded),
    /// Access restrictions allow the request; its body may now be read.
    Allowed(Allowed),
}

/// The front end's own response to a request, and the request's record.
pub(crate) struct Responded {
    record: PendingRecord,
    response: Response<Bytes>,
}

/// An allowed request, with what forwarding it needs.
pub(crate) struct Allowed {
    record: PendingRecord,
    /// Index of the site in the topology.
    site: usize,
    site_key: String,
    kind: SiteKind,
}

/// The body of a request the front end handles: buffered already, or still on the connection.
pub(crate) enum RequestBody {
    Buffered(Bytes),
    Incoming(Incoming),
}

/// The reason a request body could not be read.
enum BodyError {
    TooLarge,
    Malformed(String),
    /// The caller closed or reset the connection before the body was complete.
    CallerGone,
    TimedOut,
}

impl FrontEnd {
    /// Handles one request, body included, that arrived from `source`. `caller` names the
    /// sender for the decision log; `scheme` is `http` or `https`.
    pub async fn dispatch(
        &self,
        request: Request<Bytes>,
        source: Source,
        caller: &str,
        scheme: &str,
    ) -> Response<Bytes> {
        let (head, body) = request.into_parts();
        let admission = self.admit(&head, &source, caller, scheme);
        self.complete(
            admission,
            head,
            RequestBody::Buffered(body),
            &source,
            scheme,
        )
        .await
    }

    /// Finishes a request after [`Self::admit`]. The decision needs only the head, so the body
    /// is read only when the request is allowed: a denied caller gets its 403 at once, with no
    /// `100 Continue` (RFC 9110, section 10.1.1), and its body is never buffered.
    pub(crate) async fn complete(
        &self,
        admission: Admission,
        head: http::request::Parts,
        body: RequestBody,
        source: &Source,
        scheme: &str,
    ) -> Response<Bytes> {
        let allowed = match admission {
            Admission::Responded(Responded { record, response }) => {
                if let RequestBody::Incoming(body) = body {
                    if discard_unexpected_body(&head, body).await == Drain::CallerGone {
                        // The caller left before the response could go out, so dropping the
                        // record logs it as closed by the caller.
                        // NOTE: a caller that only shut down its sending side (a half close)
                        // also ends the stream. hyper still writes it the response, so its
                        // record shows 499 for a delivered response.
                        drop(record);
                        return response;
                    }
                }
                return record.finish(response);
            }
            Admission::Allowed(allowed) => allowed,
        };
        let body = match body {
            RequestBody::Buffered(bytes) => bytes,
            RequestBody::Incoming(body) => match read_incoming(body).await {
                Ok(bytes) => bytes,
                Err(BodyError::CallerGone) => {
                    // The caller is gone, so dropping the record logs it as closed by the
                    // caller.
                    drop(allowed);
                    return pages::text(StatusCode::BAD_REQUEST, "");
                }
                Err(error) => return allowed.record.finish(body_error_response(error)),
            },
        };
        self.forward(allowed, Request::from_parts(head, body), source, scheme)
            .await
    }

    /// Routes a request by host and decides it from its head alone: by the site's access
    /// restrictions, then by `httpsOnly`. Synchronous, so that it runs as soon as the server
    /// hands the request over.
    pub(crate) fn admit(
        &self,
        head: &http::request::Parts,
        source: &Source,
        caller: &str,
        scheme: &str,
    ) -> Admission {
        let (host, bad_host) = match request_host(head) {
            Ok(host) => (host, None),
            Err(problem) => (String::new(), Some(problem)),
        };
        let mut pending = PendingRecord {
            decisions: Arc::clone(&self.decisions),
            record: Some(DecisionRecord {
                host: host.clone(),
                method: head.method.as_str().to_owned(),
                path: head.uri.path().to_owned(),
                ..new_record(caller, source.clone())
            }),
        };

        if let Some(problem) = bad_host {
            let response = pages::emulator_text(StatusCode::BAD_REQUEST, problem);
            return Admission::Responded(pending.respond(response));
        }
        let found = self
            .topology
            .site_index_for_host(&host)
            .and_then(|(index, kind)| Some((index, self.topology.sites.get(index)?, kind)));
        let Some((index, site, kind)) = found else {
            return Admission::Responded(pending.respond(pages::site_not_found(&host)));
        };
        let site_key = site.name.to_ascii_lowercase();
        let Some(access) = self.access.get(&site_key) else {
            let response = pages::emulator_text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "subnetlock: no compiled access restrictions for this site",
            );
            return Admission::Responded(pending.respond(response));
        };
        let mut decision = access.decide(&subnetlock_access::Request {
            source,
            site: kind,
            headers: &Headers(&head.headers),
        });
        subnetlock_model::note_rule_defaults(site, &mut decision);
        let verdict = decision.verdict;
        if let Some(record) = pending.record() {
            record.site = Some(site.name.clone());
            record.site_kind = Some(kind);
            record.verdict = Some(decision.verdict);
            record.reason = Some(decision.reason);
            record.ambiguities = decision.ambiguities;
        }

        if verdict == Action::Deny {
            return Admission::Responded(pending.respond(pages::forbidden(source.address)));
        }
        if site.https_only && scheme == "http" {
            return Admission::Responded(pending.respond(https_redirect(&host, &head.uri)));
        }
        Admission::Allowed(Allowed {
            record: pending,
            site: index,
            site_key,
            kind,
        })
    }

    /// Admits a request for the fast path (see `fast_path`): the request must be allowed to
    /// a site's main host name, over a scheme `httpsOnly` accepts, and its Functions host must
    /// forward it to the handler unchanged ([`FunctionsHost::direct`]). Then the request's
    /// record is started and returned with the way to the handler.
    ///
    /// `None` means that [`Self::admit`] and [`Self::complete`] must handle the request. Until
    /// this returns a record, nothing is recorded or sent, so the request is handled once
    /// either way.
    pub(crate) fn admit_direct<'f>(
        &'f self,
        request: DirectRequest<'_>,
        source: &Source,
        connection: &mut ConnectionPart<'f>,
        scheme: &str,
        spare: Option<Vec<u8>>,
    ) -> Option<(PendingLine<'f>, Direct<'f>)> {
        let last = match &mut connection.last_site {
            Some(last) if *last.host_name == *request.host => last,
            slot => {
                let (index, kind) = self.topology.site_index_for_host(&request.host)?;
                if kind != SiteKind::Main {
                    return None;
                }
                let site = self.topology.sites.get(index)?;
                let site_key = site.name.to_ascii_lowercase();
                let access = self.access.get(&site_key)?;
                let host = self.hosts.get(&site_key)?;
                let mut members = Vec::with_capacity(128);
                decisions::write_site(&mut members, Some(&site.name), Some(kind));
                slot.insert(LastSite {
                    index,
                    host_name: request.host.as_ref().into(),
                    members,
                    access,
                    host,
                })
            }
        };
        let site = self.topology.sites.get(last.index)?;
        if site.https_only && scheme == "http" {
            return None;
        }
        let mut decision = last.access.decide(&subnetlock_access::Request {
            source,
            site: SiteKind::Main,
            headers: request.headers,
        });
        subnetlock_model::note_rule_defaults(site, &mut decision);
        if decision.verdict != Action::Allow {
            return None;
        }
        let direct = last
            .host
            .direct(request.method, request.target, request.path, request.key)?;

        // The record's members in `DecisionRecord`'s order, as `write_json_tail` writes them.
        let mut tail = spare.unwrap_or_else(|| Vec::with_capacity(decisions::LINE_CAPACITY));
        tail.clear();
        tail.extend_from_slice(b",\"time\":\"");
        let (second, millis) = now_for_record();
        write_record_time(&mut tail, second, millis);
        tail.push(b'"');
        let offset = tail.len();
        tail.extend_from_slice(&connection.bytes);
        let caller = connection
            .caller
            .clone()
            .map(|range| range.start + offset..range.end + offset);
        let host = decisions::write_request(
            &mut tail,
            RequestPart {
                host: &request.host,
                site: SitePart::Written(&last.members),
                method: request.method.as_str(),
                path: request.path,
                // The fast path takes only a registered name and a target of plain
                // characters, neither with a byte that JSON escapes.
                plain: true,
            },
        );
        let members = match &mut connection.last_decision {
            Some((last, members)) if *last == decision => members,
            last => {
                let mut members = Vec::with_capacity(256);
                decisions::write_decision(
                    &mut members,
                    Some(decision.verdict),
                    Some(&decision.reason),
                    &decision.ambiguities,
                );
                &mut last.insert((decision, members)).1
            }
        };
        tail.extend_from_slice(members);
        let pending = PendingLine {
            decisions: &self.decisions,
            tail,
            caller,
            host,
            address: connection.address,
        };
        Some((pending, direct))
    }

    /// Records a request from `caller` that hyper could not parse and responded to with
    /// `status`.
    /// `host` is the destination of the egress tunnel the request came through, or empty when
    /// nothing names it. The record has no site or verdict, as no access check ran.
    pub(crate) fn record_unparsed_request(
        &self,
        caller: &str,
        source: Source,
        host: &str,
        status: u16,
    ) {
        let record = DecisionRecord {
            host: host.to_owned(),
            status,
            ..new_record(caller, source)
        };
        log_record(&self.decisions, record);
    }

    /// Sends an allowed request on to the site's Functions host or scm site.
    async fn forward(
        &self,
        allowed: Allowed,
        mut request: Request<Bytes>,
        source: &Source,
        scheme: &str,
    ) -> Response<Bytes> {
        let Allowed {
            record,
            site,
            site_key,
            kind,
        } = allowed;
        let site_name = self
            .topology
            .sites
            .get(site)
            .map_or("", |site| site.name.as_str());
        prepare_for_worker(&mut request, source, scheme);
        let response = match kind {
            SiteKind::Main => match self.hosts.get(&site_key) {
                Some(host) => host.handle(request).await,
                None if self.hosts_not_running.contains(site_key.as_str()) => {
                    pages::host_not_running()
                }
                None => pages::default_site_page(site_name),
            },
            SiteKind::Scm => self.kudu(&site_key, site_name, &request),
        };
        record.finish(response)
    }

    /// Serves a minimal scm (Kudu) site: it requests the publishing credentials with HTTP Basic,
    /// as the real one does, and returns 200 once they are given.
    fn kudu(&self, site_key: &str, site_name: &str, request: &Request<Bytes>) -> Response<Bytes> {
        let Some((user, password)) = self.publishing.get(site_key) else {
            return pages::text(StatusCode::NOT_FOUND, "no scm site");
        };
        let expected = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        );
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok());
        if given != Some(expected.as_str()) {
            let mut response = pages::text(StatusCode::UNAUTHORIZED, "");
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"site\""),
            );
            return response;
        }
        pages::json(
            StatusCode::OK,
            &serde_json::json!({
                "site": site_name,
                "kudu": "subnetlock emulation of the scm site: only authentication is emulated",
            }),
        )
    }
}

/// Returns the host name a request addresses, lower-case and without port. An empty name means
/// the request names no host.
///
/// RFC 9112, section 3.2: a server responds with 400 to an HTTP/1.1 request without Host, and
/// to any request with more than one Host line or an invalid one. An absolute-form target names
/// the host, and a Host line beside it is ignored (section 3.2.2). The error is the text of
/// the 400 response.
fn request_host(head: &http::request::Parts) -> Result<String, &'static str> {
    let mut lines = head.headers.get_all(header::HOST).iter();
    let header = lines.next();
    if lines.next().is_some() {
        return Err("more than one Host header");
    }
    // An empty Host is allowed when the target has no authority (section 3.2).
    let from_header = match header.map(HeaderValue::to_str) {
        Some(Ok(text)) if text.trim().is_empty() => Some(""),
        Some(Ok(text)) => Some(host_without_port(text.trim()).ok_or("invalid Host header")?),
        Some(Err(_)) => return Err("invalid Host header"),
        None => None,
    };

    let host = match (head.uri.authority(), from_header) {
        (Some(authority), _) => authority.host(),
        (None, Some(host)) => host,
        (None, None) if head.version == http::Version::HTTP_11 => {
            return Err("missing Host header")
        }
        (None, None) => "",
    };
    Ok(normalise_host(host))
}

/// Returns the host of a Host value, `uri-host [ ":" port ]` (RFC 9110, section 7.2, with the
/// grammar of RFC 3986, section 3.2.2), or `None` when the value does not match it. A
/// bracketed IPv6 literal keeps its brackets, as a site's host name never matches one.
fn host_without_port(text: &str) -> Option<&str> {
    let (host, port) = if text.starts_with('[') {
        let end = text.find(']')?;
        let literal = &text[1..end];
        if !literal
            .bytes()
            .all(|byte| byte.is_ascii_hexdigit() || byte == b':' || byte == b'.')
        {
            return None;
        }
        let rest = &text[end + 1..];
        let port = match rest.strip_prefix(':') {
            Some(port) => port,
            None if rest.is_empty() => "",
            None => return None,
        };
        (&text[..=end], port)
    } else {
        let (name, port) = text.rsplit_once(':').unwrap_or((text, ""));
        // A registered name: unreserved characters, percent escapes and sub-delimiters.
        let valid = name.bytes().all(|byte| REG_NAME[usize::from(byte)]);
        if name.is_empty() || !valid {
            return None;
        }
        (name, port)
    };
    port.bytes()
        .all(|byte| byte.is_ascii_digit())
        .then_some(host)
}

/// The bytes of a registered name in a host (RFC 3986, section 3.2.2), as a table: this runs
/// for every request.
const REG_NAME: [bool; 256] = byte_table(b"-._~%!$&'()*+,;=");

/// Returns a table that is true for ASCII letters and digits and for the bytes of `others`.
const fn byte_table(others: &[u8]) -> [bool; 256] {
    let mut table = [false; 256];
    let mut byte = 0;
    while byte < 256 {
        table[byte] = (byte as u8).is_ascii_alphanumeric();
        byte += 1;
    }
    let mut index = 0;
    while index < others.len() {
        table[others[index] as usize] = true;
        index += 1;
    }
    table
}

/// Lower-cases a host name. A trailing dot stays: the record shows the name as sent, and
/// [`Topology::site_for_host`] accepts one.
fn normalise_host(host: &str) -> String {
    host.to_ascii_lowercase()
}

/// Builds the redirect a site with `httpsOnly` sends for a plain HTTP request: 301 to the same
/// host and target over HTTPS (Microsoft Learn, `SiteConfig`/`Site.httpsOnly`: "Issues
/// redirect for http requests"). The redirect comes after access restrictions, so a denied
/// caller gets 403 over either scheme.
// NOTE: the order of the redirect and the access check, and the 301 status, are not
// documented; see docs/fidelity.md.
fn https_redirect(host: &str, target: &http::Uri) -> Response<Bytes> {
    // The asterisk form of `OPTIONS *` names no resource, so the redirect names the root.
    let path_and_query = target
        .path_and_query()
        .map(|value| value.as_str())
        .filter(|value| value.starts_with('/'))
        .unwrap_or("/");
    let location = format!("https://{}{path_and_query}", host.trim_end_matches('.'));
    let mut response = pages::text(StatusCode::MOVED_PERMANENTLY, "");
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

/// Turns the caller's request head into the one the worker gets: hop-by-hop headers go, the
/// Host of an absolute-form request becomes the target's authority, and the forwarding headers
/// are added.
fn prepare_for_worker(request: &mut Request<Bytes>, source: &Source, scheme: &str) {
    let absolute_authority = request.uri().authority().cloned();
    let headers = request.headers_mut();
    strip_hop_by_hop(headers);
    // A proxy replaces the Host of an absolute-form request with the target's authority
    // (RFC 9112, section 3.2.2), so the worker gets the host the request was routed by.
    // Only `uri-host [":" port]` (RFC 9110, section 7.2): user information in the target
    // stays out of Host.
    if let Some(authority) = absolute_authority {
        let host = match authority.port() {
            Some(port) => format!("{}:{port}", authority.host()),
            None => authority.host().to_owned(),
        };
        if let Ok(value) = HeaderValue::from_str(&host) {
            headers.insert(header::HOST, value);
        }
    }
    add_forwarding_headers(headers, source, scheme);
}

/// Removes the hop-by-hop headers of the caller's request, and the headers its `Connection`
/// header lists (RFC 9110, section 7.6.1), before the front end adds its own. Otherwise a
/// caller could list `X-Forwarded-For` in `Connection` and so remove the one the front end
/// adds. `Host` stays, because the request is routed by it.
fn strip_hop_by_hop(headers: &mut http::HeaderMap) {
    // Most requests carry none of these, and one pass over the few headers a request has is
    // cheaper than a lookup per hop-by-hop name.
    let any_hop_by_hop = headers
        .keys()
        .any(|name| HOP_BY_HOP.contains(&name.as_str()));
    if !any_hop_by_hop {
        return;
    }
    let listed: Vec<http::HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|name| http::HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .filter(|name| name != header::HOST)
        .collect();
    for name in listed {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

/// `X-Forwarded-For`, named once: a header name given as `&str` is parsed on every use.
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// Adds the headers App Service's front end is commonly observed to add for the worker.
// NOTE: not verified against Microsoft documentation; see docs/fidelity.md.
fn add_forwarding_headers(headers: &mut http::HeaderMap, source: &Source, scheme: &str) {
    let mut chain = Vec::with_capacity(48);
    let lines = headers
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .map(HeaderValue::as_bytes);
    push_forwarded_chain(&mut chain, lines, source);
    // Every byte came from a valid header value or is part of an address, so the chain is a
    // valid header value too.
    if let Ok(value) = HeaderValue::from_maybe_shared(Bytes::from(chain)) {
        headers.insert(X_FORWARDED_FOR, value);
    }
    let proto = if scheme == "https" {
        HeaderValue::from_static("https")
    } else {
        HeaderValue::from_static("http")
    };
    headers.insert(X_FORWARDED_PROTO, proto);
}

/// Appends the value of `X-Forwarded-For` for a request from `source` whose caller sent the
/// X-Forwarded-For `lines`. Every line stays in the chain, in order (RFC 9110, section 5.3:
/// several lines of a list header are one comma-separated list), and its bytes are copied as
/// sent, including bytes outside ASCII. The caller's address comes last.
fn push_forwarded_chain<'v>(
    out: &mut Vec<u8>,
    lines: impl Iterator<Item = &'v [u8]>,
    source: &Source,
) {
    for line in lines {
        let text = line.trim_ascii();
        if !text.is_empty() {
            out.extend_from_slice(text);
            out.extend_from_slice(b", ");
        }
    }
    push_ip(out, source.address);
}

/// Maps an IPv4-mapped IPv6 peer (`::ffff:a.b.c.d`) to its IPv4 address, as the peer is an
/// IPv4 client.
pub fn canonical_peer(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

/// Maximum time a caller may take to send a request head, or stay idle between requests on a
/// kept-alive connection, before the connection is closed.
pub(crate) const HEAD_TIMEOUT: Duration = Duration::from_secs(30);

/// Maximum time a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Pause after a failed `accept`, so that running out of file descriptors does not turn the
/// accept loop into a busy loop that floods the log.
pub(crate) const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// Accepts the next connection, with `TCP_NODELAY` set; `None` once `shutdown` changes.
///
/// A failed `accept` is retried after [`ACCEPT_RETRY`]. The first failure is logged, then at
/// most one summary per [`accept_failures::SUMMARY_INTERVAL`] and one line on recovery.
async fn accept(
    listener: &TcpListener,
    shutdown: &mut watch::Receiver<bool>,
) -> Option<(TcpStream, SocketAddr)> {
    // A run of failures cannot outlive this call, which returns only on a success or shutdown.
    let mut failures = AcceptFailures::default();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    let line = failures.record_failure(Instant::now());
                    accept_failures::log_failure("front end", line, &error, ACCEPT_RETRY);
                    tokio::time::sleep(ACCEPT_RETRY).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return None,
        };
        if let Some(recovery) = failures.record_success(Instant::now()) {
            accept_failures::log_recovery("front end", recovery);
        }
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, %peer, "cannot set TCP_NODELAY");
        }
        return Some((stream, peer));
    }
}

/// Serves one accepted connection to its end, after the TLS handshake when `tls` is given.
/// The connection's source is its TCP peer: a direct caller is an internet caller.
async fn serve_accepted(
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<tokio_rustls::TlsAcceptor>,
    front_end: Arc<FrontEnd>,
) {
    // Below TLS, so that the bound also covers the records the TLS layer writes.
    let stream = WriteTimeout::new(stream, peer, front_end.write_timeout);
    match tls {
        Some(acceptor) => {
            let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await;
            match handshake {
                Ok(Ok(stream)) => fast_path::serve(stream, peer, front_end, "https").await,
                Ok(Err(error)) => tracing::debug!(%error, %peer, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        }
        None => fast_path::serve(stream, peer, front_end, "http").await,
    }
}

async fn serve_connection<I>(
    io: I,
    peer: SocketAddr,
    front_end: Arc<FrontEnd>,
    scheme: &'static str,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let source = Source::internet(canonical_peer(peer.ip()));
    let caller: Arc<str> = Arc::from(format!("direct:{}", source.address));
    let service = {
        let (front_end, source, caller) = (front_end.clone(), source.clone(), caller.clone());
        service_fn(move |request: Request<Incoming>| {
            // The decision, and so the request's record, is made before the future: hyper
            // drops a future it never polled when the caller closes right after the request.
            let (head, body) = request.into_parts();
            let admission = front_end.admit(&head, &source, &caller, scheme);
            let front_end = front_end.clone();
            let source = source.clone();
            async move {
                let response = front_end
                    .complete(
                        admission,
                        head,
                        RequestBody::Incoming(body),
                        &source,
                        scheme,
                    )
                    .await;
                Ok::<_, std::convert::Infallible>(response.map(Full::new))
            }
        })
    };
    let served = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEAD_TIMEOUT)
        .serve_connection(io, service)
        .await;
    if let Err(error) = served {
        // hyper responds to a request it cannot parse without calling the service, so the
        // record is written here.
        if let Some(status) = unparsed_request_status(&error) {
            front_end.record_unparsed_request(&caller, source, "", status);
        }
        // The write timeout logged its own line.
        if !is_write_timeout(&error) {
            tracing::debug!(%error, %peer, "front-end connection ended with an error");
        }
    }
}

/// Returns the status hyper's HTTP/1 server sends for a request it could not parse (its
/// `Server::on_error`), or `None` when it sent nothing.
pub(crate) fn unparsed_request_status(error: &hyper::Error) -> Option<u16> {
    if !error.is_parse() || error.is_parse_version_h2() {
        return None;
    }
    if error.is_parse_too_large() {
        // hyper exposes no predicate for its 414, so its message distinguishes 414 from 431.
        return Some(if error.to_string().contains("URI too long") {
            414
        } else {
            431
        });
    }
    Some(400)
}

/// Buffers the body of an incoming request, returning 413 beyond 104,857,600 bytes (the 100 MB
/// Azure Functions allows), 400 for a body that breaks its framing, and 408 when it takes
/// longer than Azure's request timeout.
pub async fn read_body(request: Request<Incoming>) -> Result<Request<Bytes>, Response<Bytes>> {
    let (parts, body) = request.into_parts();
    match read_incoming(body).await {
        Ok(bytes) => Ok(Request::from_parts(parts, bytes)),
        Err(error) => Err(body_error_response(error)),
    }
}

async fn read_incoming(body: Incoming) -> Result<Bytes, BodyError> {
    // A request without a body (most GETs) needs no timer and no collecting.
    if body.is_end_stream() {
        return Ok(Bytes::new());
    }
    let collected =
        tokio::time::timeout(BODY_TIMEOUT, Limited::new(body, MAX_BODY_BYTES).collect());
    match collected.await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(error)) if error.is::<http_body_util::LengthLimitError>() => {
            Err(BodyError::TooLarge)
        }
        Ok(Err(error)) if caller_went_away(error.as_ref()) => Err(BodyError::CallerGone),
        Ok(Err(error)) => Err(BodyError::Malformed(crate::with_causes(error.as_ref()))),
        Err(_) => Err(BodyError::TimedOut),
    }
}

/// Tells whether a body error means the caller closed or reset the connection, rather than
/// that the body broke its framing.
fn caller_went_away(error: &(dyn std::error::Error + 'static)) -> bool {
    if error
        .downcast_ref::<hyper::Error>()
        .is_some_and(hyper::Error::is_incomplete_message)
    {
        return true;
    }
    let mut cause = Some(error);
    while let Some(current) = cause {
        if let Some(io) = current.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                std::io::ErrorKind::UnexpectedEof
                    | std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::BrokenPipe
            );
        }
        cause = current.source();
    }
    false
}

fn body_error_response(error: BodyError) -> Response<Bytes> {
    match error {
        BodyError::TooLarge => pages::text(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body larger than {MAX_BODY_BYTES} bytes"),
        ),
        BodyError::Malformed(reason) => pages::text(
            StatusCode::BAD_REQUEST,
            format!("unreadable request body: {reason}"),
        ),
        BodyError::CallerGone => pages::text(StatusCode::BAD_REQUEST, "request body cut short"),
        BodyError::TimedOut => pages::text(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "request body not complete within {} seconds",
                BODY_TIMEOUT.as_secs()
            ),
        ),
    }
}

/// Reads and discards the body of a request whose response needs no body, up to
/// [`MAX_BODY_BYTES`] and [`DRAIN_TIMEOUT`]. A client that sends its body without waiting
/// reads the response only after it wrote the body, and closing the connection on an unread
/// body resets it, so the client loses the response (RFC 9112, section 9.6).
///
/// A client that sent `Expect: 100-continue` waits instead, and reading would request its
/// body.
async fn discard_unexpected_body(head: &http::request::Parts, body: Incoming) -> Drain {
    if head.headers.contains_key(header::EXPECT) || body.is_end_stream() {
        return Drain::Done;
    }
    let drained = async {
        let mut body = body;
        let mut read = 0usize;
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(frame) => read += frame.data_ref().map_or(0, Bytes::len),
                Err(error) if caller_went_away(&error) => return Drain::CallerGone,
                Err(_) => return Drain::Done,
            }
            if read > MAX_BODY_BYTES {
                break;
            }
        }
        Drain::Done
    };
    tokio::time::timeout(DRAIN_TIMEOUT, drained)
        .await
        .unwrap_or(Drain::Done)
}

/// The outcome of draining an unwanted body.
#[derive(Debug, PartialEq, Eq)]
enum Drain {
    /// Read to its end, cut off at the time or size limit, or broken in its framing: the
    /// response can still be sent.
    Done,
    /// The caller closed or reset the connection before the body was complete.
    CallerGone,
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper_util::rt::TokioIo;

    fn host_of(
        target: &str,
        hosts: &[&[u8]],
        version: http::Version,
    ) -> Result<String, &'static str> {
        let mut request = Request::new(Bytes::new());
        *request.uri_mut() = target.parse().unwrap();
        *request.version_mut() = version;
        for host in hosts {
            request
                .headers_mut()
                .append(header::HOST, HeaderValue::from_bytes(host).unwrap());
        }
        request_host(&request.into_parts().0)
    }

    #[test]
    fn record_time_matches_rfc_3339_with_milliseconds() {
        use chrono::TimeZone;
        // Two instants in one second (the cached prefix), the next second, and another day.
        for (seconds, nanos) in [
            (1_764_912_600, 0),
            (1_764_912_600, 7_000_000),
            (1_764_912_601, 999_999_999),
            (1_700_000_000, 123_456_789),
        ] {
            let Some(now) = chrono::Utc.timestamp_opt(seconds, nanos).single() else {
                panic!("invalid test instant {seconds}");
            };
            assert_eq!(
                record_time(now),
                now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
            );
        }
    }

    #[test]
    fn record_now_equals_chrono_now() {
        let before = chrono::Utc::now().timestamp();
        let (second, millis) = now_for_record();
        let after = chrono::Utc::now().timestamp();
        assert!(
            (before..=after).contains(&second),
            "{before} {second} {after}"
        );
        assert!(millis < 1000, "{millis}");
    }

    #[test]
    fn request_host_follows_rfc_9112() {
        use http::Version;
        type Case<'a> = (&'a str, &'a [&'a [u8]], Version, Result<&'a str, &'a str>);
        let cases: [Case; 15] = [
            (
                "/",
                &[b"App.AzureWebsites.NET:443"],
                Version::HTTP_11,
                Ok("app.azurewebsites.net"),
            ),
            (
                "/",
                &[b"app.azurewebsites.net."],
                Version::HTTP_11,
                Ok("app.azurewebsites.net."),
            ),
            (
                "/",
                &[b"app.azurewebsites.net.."],
                Version::HTTP_11,
                Ok("app.azurewebsites.net.."),
            ),
            ("/", &[b"[::1]:80"], Version::HTTP_11, Ok("[::1]")),
            ("/", &[b"app:"], Version::HTTP_11, Ok("app")),
            (
                "/",
                &[b"app:8x"],
                Version::HTTP_11,
                Err("invalid Host header"),
            ),
            (
                "/",
                &[b"[::1]x"],
                Version::HTTP_11,
                Err("invalid Host header"),
            ),
            ("/", &[b""], Version::HTTP_11, Ok("")),
            ("/", &[], Version::HTTP_10, Ok("")),
            ("/", &[], Version::HTTP_11, Err("missing Host header")),
            (
                "/",
                &[b"a", b"b"],
                Version::HTTP_11,
                Err("more than one Host header"),
            ),
            (
                "/",
                &[b"caf\xc3\xa9"],
                Version::HTTP_11,
                Err("invalid Host header"),
            ),
            (
                "/",
                &[b"user@app"],
                Version::HTTP_11,
                Err("invalid Host header"),
            ),
            // An absolute-form target wins over Host (section 3.2.2).
            (
                "http://B.azurewebsites.net/x",
                &[b"other.example"],
                Version::HTTP_11,
                Ok("b.azurewebsites.net"),
            ),
            (
                "http://b.azurewebsites.net/x",
                &[b"caf\xc3\xa9"],
                Version::HTTP_11,
                Err("invalid Host header"),
            ),
        ];
        for (target, hosts, version, expected) in cases {
            let expected = expected.map(str::to_owned);
            assert_eq!(
                host_of(target, hosts, version),
                expected,
                "{target} {hosts:?}"
            );
        }
    }

    #[test]
    fn absolute_form_target_names_the_workers_host() {
        let mut request = Request::new(Bytes::new());
        *request.uri_mut() = "http://user:pw@b.azurewebsites.net/api/f?code=k"
            .parse()
            .unwrap();
        request
            .headers_mut()
            .insert(header::HOST, HeaderValue::from_static("evil.example"));
        let source = Source::internet("198.51.100.7".parse().unwrap());
        prepare_for_worker(&mut request, &source, "http");
        assert_eq!(request.headers()[header::HOST], "b.azurewebsites.net");

        // An origin-form request keeps its Host.
        let mut request = Request::new(Bytes::new());
        *request.uri_mut() = "/api/f".parse().unwrap();
        request.headers_mut().insert(
            header::HOST,
            HeaderValue::from_static("a.azurewebsites.net"),
        );
        prepare_for_worker(&mut request, &source, "http");
        assert_eq!(request.headers()[header::HOST], "a.azurewebsites.net");
    }

    /// Builds a front end with no sites and a decision log without a file.
    pub(super) fn empty_front_end() -> FrontEnd {
        FrontEnd {
            topology: Arc::new(Topology::default()),
            access: SiteMap::default(),
            hosts: SiteMap::default(),
            hosts_not_running: Default::default(),
            publishing: HashMap::new(),
            decisions: Arc::new(DecisionLog::new(None).unwrap()),
            write_timeout: WRITE_TIMEOUT,
        }
    }

    #[test]
    fn abandoned_request_is_recorded_once() {
        let front_end = empty_front_end();
        let head = Request::new(()).into_parts().0;
        let source = Source::internet("198.51.100.7".parse().unwrap());

        // An HTTP/1.1 request without Host gets its 400 at once, logged once with its status.
        let Admission::Responded(responded) = front_end.admit(&head, &source, "direct:x", "https")
        else {
            panic!("a request without Host gets a response from the front end");
        };
        let response = responded.record.finish(responded.response);
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            response.headers()[pages::ORIGIN_HEADER],
            pages::EMULATOR_ORIGIN
        );

        // A request dropped before its response is logged once, as closed by the caller.
        let pending = PendingRecord {
            decisions: Arc::clone(&front_end.decisions),
            record: front_end.decisions.all().into_iter().next(),
        };
        drop(pending);
        let statuses: Vec<u16> = front_end
            .decisions
            .all()
            .iter()
            .map(|record| record.status)
            .collect();
        assert_eq!(statuses, [400, CALLER_CLOSED]);
    }

    /// Builds a front end with one open site, `app`, without local code, that logs in memory.
    fn front_end_with_open_site() -> Arc<FrontEnd> {
        let location = subnetlock_arm::SourceLocation {
            file: "t.json".into(),
            line: 1,
            column: 1,
            json_path: "$".to_owned(),
            offset: 0,
            length: 0,
        };
        let site = subnetlock_model::Site::new("/sites/app".to_owned(), "app".to_owned(), location);
        let access =
            CompiledSiteAccess::compile(&site.access, &subnetlock_access::EngineOptions::default());
        let mut topology = Topology::default();
        topology.sites.push(site);
        Arc::new(FrontEnd {
            topology: Arc::new(topology),
            access: SiteMap::from_iter([("app".to_owned(), access)]),
            hosts: SiteMap::default(),
            hosts_not_running: Default::default(),
            publishing: HashMap::new(),
            decisions: Arc::new(DecisionLog::new(None).unwrap()),
            write_timeout: WRITE_TIMEOUT,
        })
    }

    /// Sends `input` on a connection served by `front_end`, closes it at once, and returns the
    /// statuses recorded once the connection ended.
    fn statuses_after_closing(front_end: &Arc<FrontEnd>, input: &[u8]) -> Vec<u16> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let (mut client, server) = tokio::io::duplex(64 * 1024);
            tokio::io::AsyncWriteExt::write_all(&mut client, input)
                .await
                .unwrap();
            drop(client);
            let peer: SocketAddr = "127.0.0.1:50000".parse().unwrap();
            serve_connection(TokioIo::new(server), peer, Arc::clone(front_end), "https").await;
        });
        front_end
            .decisions
            .all()
            .iter()
            .map(|record| record.status)
            .collect()
    }

    #[test]
    fn body_up_to_azure_functions_limit_is_accepted() {
        // 32 MiB and one byte: more than the emulator used to buffer, well under Azure
        // Functions' 100 MB.
        let length = 32 * 1024 * 1024 + 1;
        let front_end = front_end_with_open_site();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let response = runtime.block_on(async {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let (mut client, server) = tokio::io::duplex(64 * 1024);
            let peer: SocketAddr = "127.0.0.1:50000".parse().unwrap();
            let served = tokio::spawn(serve_connection(
                TokioIo::new(server),
                peer,
                Arc::clone(&front_end),
                "https",
            ));
            let head = format!(
                "POST / HTTP/1.1\r\nhost: app.azurewebsites.net\r\nconnection: close\r\n\
                 content-length: {length}\r\n\r\n"
            );
            client.write_all(head.as_bytes()).await.unwrap();
            let chunk = vec![b'x'; 1024 * 1024];
            let mut sent = 0;
            while sent < length {
                let part = chunk.len().min(length - sent);
                client.write_all(&chunk[..part]).await.unwrap();
                sent += part;
            }
            let mut response = Vec::new();
            client.read_to_end(&mut response).await.unwrap();
            served.await.unwrap();
            response
        });
        let status_line = response
            .split(|&byte| byte == b'\r')
            .next()
            .unwrap_or_default();
        assert_eq!(status_line, b"HTTP/1.1 200 OK");
        assert_eq!(
            front_end.decisions.all().last().map(|r| r.status),
            Some(200)
        );
    }

    #[test]
    fn caller_that_leaves_is_recorded_once() {
        // The request is complete, and the caller is gone before any response.
        let front_end = front_end_with_open_site();
        let statuses = statuses_after_closing(
            &front_end,
            b"GET / HTTP/1.1\r\nHost: app.azurewebsites.net\r\n\r\n",
        );
        assert_eq!(statuses.len(), 1, "{statuses:?}");

        // The body is cut short: the caller left, so no response was sent.
        let front_end = front_end_with_open_site();
        let statuses = statuses_after_closing(
            &front_end,
            b"POST / HTTP/1.1\r\nHost: app.azurewebsites.net\r\nContent-Length: 100\r\n\r\n0123456789",
        );
        assert_eq!(statuses, [CALLER_CLOSED]);

        // The front end responds itself (no site has this host), but the caller leaves while
        // the body it sent without waiting is drained, so the response never goes out.
        let front_end = front_end_with_open_site();
        let statuses = statuses_after_closing(
            &front_end,
            b"POST / HTTP/1.1\r\nHost: other.azurewebsites.net\r\nContent-Length: 100\r\n\r\n0123456789",
        );
        assert_eq!(statuses, [CALLER_CLOSED]);
    }

    #[test]
    fn unparsed_request_status_follows_hyper() {
        // hyper's own text is the only way to tell its 414 from its 431; this catches a
        // change of that text.
        let long_target = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(70_000));
        let cases: [(&[u8], Option<u16>); 3] = [
            (
                b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: +3\r\n\r\n",
                Some(400),
            ),
            (long_target.as_bytes(), Some(414)),
            (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", None),
        ];
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        for (input, expected) in cases {
            let error = runtime.block_on(async {
                let (client, server) = tokio::io::duplex(256 * 1024);
                let mut client = client;
                tokio::io::AsyncWriteExt::write_all(&mut client, input)
                    .await
                    .unwrap();
                let service = service_fn(|_request: Request<Incoming>| async {
                    Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::new())))
                });
                http1::Builder::new()
                    .serve_connection(TokioIo::new(server), service)
                    .await
                    .expect_err("parse error")
            });
            assert_eq!(unparsed_request_status(&error), expected, "{error}");
        }
    }

    #[test]
    fn forwarded_chain_keeps_bytes_outside_ascii() {
        let mut request = Request::new(Bytes::new());
        request.headers_mut().append(
            "x-forwarded-for",
            HeaderValue::from_bytes(b" caf\xc3\xa9 ").unwrap(),
        );
        let source = Source::internet("198.51.100.7".parse().unwrap());
        add_forwarding_headers(request.headers_mut(), &source, "http");
        assert_eq!(
            request.headers()["x-forwarded-for"].as_bytes(),
            b"caf\xc3\xa9, 198.51.100.7"
        );
    }

    #[test]
    fn connection_cannot_remove_forwarding_headers() {
        let mut request = Request::new(Bytes::new());
        let headers = request.headers_mut();
        headers.insert(
            header::HOST,
            HeaderValue::from_static("app.azurewebsites.net"),
        );
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("x-forwarded-for, x-forwarded-proto, host, x-private"),
        );
        headers.insert("x-forwarded-for", HeaderValue::from_static("10.0.0.4"));
        headers.insert("x-private", HeaderValue::from_static("secret"));
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
        let source = Source::internet("198.51.100.7".parse().unwrap());

        strip_hop_by_hop(request.headers_mut());
        add_forwarding_headers(request.headers_mut(), &source, "https");

        let headers = request.headers();
        assert_eq!(headers["x-forwarded-for"], "198.51.100.7");

        // Two lines from the caller stay one chain, in order, followed by the source.
        let mut request = Request::new(Bytes::new());
        request
            .headers_mut()
            .append("x-forwarded-for", HeaderValue::from_static("1.2.3.4"));
        request
            .headers_mut()
            .append("x-forwarded-for", HeaderValue::from_static("5.6.7.8"));
        add_forwarding_headers(request.headers_mut(), &source, "http");
        let chain: Vec<&HeaderValue> = request
            .headers()
            .get_all("x-forwarded-for")
            .iter()
            .collect();
        assert_eq!(chain, vec!["1.2.3.4, 5.6.7.8, 198.51.100.7"]);
        assert_eq!(headers["x-forwarded-proto"], "https");
        assert_eq!(headers[header::HOST], "app.azurewebsites.net");
        for removed in ["connection", "x-private", "te"] {
            assert!(headers.get(removed).is_none(), "{removed}");
        }
    }
}
