//! The front end's fast path: its own HTTP/1.1 handling for the request that most traffic
//! is, an allowed call of a function that the Functions host forwards to a running handler.
//!
//! On the full path, hyper's server, a header map per request and the buffered request cost
//! more CPU than the decision, routing and key check together (docs/benchmarks.md). Here the
//! request head is parsed with httparse into slices of the read buffer. It is decided by the
//! same engine and the same Functions host checks as on the full path
//! ([`FrontEnd::admit_direct`]), the handler's request is encoded straight from those slices,
//! and the response is written as hyper writes it.
//!
//! Every other request goes to hyper, for the rest of the connection. The bytes read so far
//! are handed over unconsumed, so hyper parses that request from its first byte, and nothing
//! about it was recorded or sent before.
//!
//! These requests go to hyper: a body or a framing header, `Expect`, `Connection` or
//! `Upgrade`, HTTP/1.0, `HEAD`, a target other than a plain origin-form path, a header given
//! twice, and a head over 16 KiB or 32 header lines. So do a denied caller, the scm site, a 401
//! or 404 from the Functions host, and any request hyper would reject.

use std::borrow::Cow;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::SystemTime;

use bytes::{Buf, Bytes, BytesMut};
use http::{header, Method, Response, StatusCode};
use hyper_util::rt::TokioIo;
use subnetlock_access::{eq_ignore_case, eq_lower_case, HeaderLookup, Source};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::Instant;

use super::write_timeout::is_write_timeout;
use super::{
    canonical_peer, push_forwarded_chain, serve_connection, ConnectionPart, DirectRequest,
    FrontEnd, PendingLine, HEAD_TIMEOUT,
};
use crate::functions_host::{
    invocation_timed_out, key_from, write_host_headers, HOST_HEADER_NAMES, INVOCATION_TIMEOUT,
};
use crate::handler_client::{EncodedKind, Reply, HOP_BY_HOP};

/// Maximum size of a request head on this path. A longer one goes to hyper, whose limits then
/// apply.
const MAX_HEAD_BYTES: usize = 16 * 1024;

/// Maximum number of header lines on this path. A request with more goes to hyper.
const MAX_HEADERS: usize = 32;

/// hyper's limits for a request head on the full path: header lines (its default
/// `max_headers`), and bytes buffered while the head is incomplete (its default read buffer,
/// 8,192 bytes and 4,096 per header line).
const HYPER_MAX_HEADERS: usize = 100;
const HYPER_MAX_BUFFER: usize = 8_192 + 4_096 * 100;

/// Bytes requested from the caller's connection per read.
const READ_CHUNK: usize = 8 * 1024;

/// Capacity above which the response buffer is not kept for the connection's next response,
/// so that an idle connection does not keep the copy of a large body.
const MAX_KEPT_OUTPUT: usize = 64 * 1024;

/// Request headers that send the request to hyper: framing, `Expect`, and the hop-by-hop
/// headers, which the full path removes along with the headers `Connection` lists.
const FULL_PATH_HEADERS: [&str; 3] = ["content-length", "expect", "http2-settings"];

/// Serves a caller's connection: on the fast path while requests qualify, then with hyper.
pub(crate) async fn serve<I>(
    mut io: I,
    peer: SocketAddr,
    front_end: Arc<FrontEnd>,
    scheme: &'static str,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let source = Source::internet(canonical_peer(peer.ip()));
    // The connection's record parts refer into the front end, which outlives the loop.
    let front_end_ref: &FrontEnd = &front_end;
    let mut connection = ConnectionPart::new(&format!("direct:{}", source.address), &source);
    // The buffer of the connection's last record, emptied, for its next record.
    let mut spare = None;
    let mut input = BytesMut::with_capacity(READ_CHUNK);
    let mut outbound = Vec::with_capacity(1024);
    let mut output = Vec::with_capacity(1024);
    // The head must arrive within the head timeout, which also bounds the idle time between
    // requests, as on the full path. The timer is armed once and moved only when it fires
    // early, because arming a timer per request showed in instruction counts.
    let mut waiting_since = Instant::now();
    let head_timer = tokio::time::sleep(HEAD_TIMEOUT);
    tokio::pin!(head_timer);
    // The same for the Functions host's invocation timeout, which bounds the whole invocation
    // here, retry included. The full path bounds each attempt, and attempts after the first
    // follow only a refused connection, so the two differ by at most a restart's wait.
    let invocation_timer = tokio::time::sleep(INVOCATION_TIMEOUT);
    tokio::pin!(invocation_timer);

    loop {
        // Parsing borrows the buffer only until the request is encoded, so the buffer can
        // take more bytes while the handler works.
        let step = prepare(
            front_end_ref,
            &input,
            (&source, &mut connection),
            scheme,
            &mut outbound,
            &mut spare,
        );
        let (head_length, record, direct, kind) = match step {
            Step::Ready {
                head_length,
                record,
                direct,
                kind,
            } => (head_length, record, direct, kind),
            Step::FullPath => break,
            Step::NeedMore => {
                let read = tokio::select! {
                    biased;
                    read = read_more(&mut io, &mut input) => read,
                    () = &mut head_timer => {
                        let deadline = waiting_since + HEAD_TIMEOUT;
                        if Instant::now() >= deadline {
                            tracing::debug!(%peer, "front-end connection idle past the head timeout");
                            return;
                        }
                        head_timer.as_mut().reset(deadline);
                        continue;
                    }
                };
                match read {
                    Ok(0) if input.is_empty() => return,
                    // hyper decides what a partial head followed by the end of the stream gets.
                    Ok(0) => break,
                    Ok(_) => continue,
                    Err(error) => {
                        tracing::debug!(%error, %peer, "front-end connection ended with an error");
                        return;
                    }
                }
            }
        };
        input.advance(head_length);

        let invoked = Instant::now();
        let limit = direct.invocation_timeout();
        // The timer must not fire after this request's deadline. It fires early when an
        // earlier request armed it, and is then moved.
        if invocation_timer.deadline() > invoked + limit {
            invocation_timer.as_mut().reset(invoked + limit);
        }
        let response = {
            let send = direct.send(&outbound, kind);
            tokio::pin!(send);
            loop {
                tokio::select! {
                    biased;
                    response = &mut send => break Some(response),
                    () = &mut invocation_timer => {
                        let deadline = invoked + limit;
                        if Instant::now() >= deadline {
                            tracing::warn!(%peer, "custom handler did not respond within the invocation timeout");
                            break Some(Reply::from(invocation_timed_out(limit)));
                        }
                        invocation_timer.as_mut().reset(deadline);
                    }
                    // hyper drops a request whose caller closes the connection, and so
                    // does this path: the record then shows that the caller left. Like
                    // hyper, it reads only while no byte of a later request is buffered.
                    // A caller that sends several requests and then shuts down its sending
                    // side therefore still gets the responses to all but the last.
                    read = read_more(&mut io, &mut input), if input.is_empty() => {
                        match read {
                            Ok(0) | Err(_) => break None,
                            Ok(_) => {}
                        }
                    }
                }
            }
        };
        let Some(response) = response else {
            drop(record);
            return;
        };
        spare = record.finish_with_status(response.status().as_u16());

        encode_reply(&response, &mut output);
        let written = async {
            io.write_all(&output).await?;
            io.flush().await
        };
        if let Err(error) = written.await {
            // The write timeout logged its own line.
            if !is_write_timeout(&error) {
                tracing::debug!(%error, %peer, "front-end connection ended with an error");
            }
            return;
        }
        if output.capacity() > MAX_KEPT_OUTPUT {
            output = Vec::with_capacity(1024);
        }
        waiting_since = Instant::now();
    }

    let io = Rewind {
        unread: input.freeze(),
        io,
    };
    serve_connection(TokioIo::new(io), peer, front_end, scheme).await;
}

/// The next step for the bytes read so far.
// `Ready` is the common variant, so boxing it would add an allocation to most requests.
#[allow(clippy::large_enum_variant)]
enum Step<'f> {
    /// A complete head that this path handles: its length, its record and its way to the
    /// handler. The handler's request is in the `outbound` buffer.
    Ready {
        head_length: usize,
        record: PendingLine<'f>,
        direct: crate::functions_host::Direct<'f>,
        kind: EncodedKind,
    },
    /// The head is not complete yet.
    NeedMore,
    /// hyper handles the connection from this request on.
    FullPath,
}

/// Parses the request head at the start of `input` and, when the fast path takes it, admits
/// it and encodes the handler's request into `outbound`.
fn prepare<'f>(
    front_end: &'f FrontEnd,
    input: &[u8],
    (source, connection): (&Source, &mut ConnectionPart<'f>),
    scheme: &str,
    outbound: &mut Vec<u8>,
    spare: &mut Option<Vec<u8>>,
) -> Step<'f> {
    if input.is_empty() {
        return Step::NeedMore;
    }
    // Uninitialised slots, as in the handler client: filling them costs more than parsing.
    let mut slots =
        [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut []);
    let config = httparse::ParserConfig::default();
    let head_length = match config.parse_request_with_uninit_headers(&mut parsed, input, &mut slots)
    {
        Ok(httparse::Status::Complete(length)) => length,
        Ok(httparse::Status::Partial) if input.len() < MAX_HEAD_BYTES => return Step::NeedMore,
        Ok(httparse::Status::Partial) | Err(httparse::Error::TooManyHeaders) => {
            return head_for_hyper(input)
        }
        Err(_) => return Step::FullPath,
    };
    let Some(request) = qualify(&parsed) else {
        return Step::FullPath;
    };
    let Some(host) = single_host(request.headers) else {
        return Step::FullPath;
    };
    let key_header = request
        .headers
        .iter()
        .find(|field| eq_lower_case(field.name, "x-functions-key"))
        .map(|field| field.value);
    let key = key_from(key_header, request.query);
    let direct_request = DirectRequest {
        host,
        method: &request.method,
        target: request.target,
        path: request.path,
        headers: &Fields(request.headers),
        key: &key,
    };
    let admitted = front_end.admit_direct(direct_request, source, connection, scheme, spare.take());
    let Some((record, direct)) = admitted else {
        return Step::FullPath;
    };

    encode_request(&request, source, scheme, outbound);
    let kind = EncodedKind {
        head_request: false,
        header_lines: true,
        replayable: matches!(
            request.method,
            Method::GET | Method::OPTIONS | Method::TRACE
        ),
    };
    Step::Ready {
        head_length,
        record,
        direct,
        kind,
    }
}

/// Decides when to hand hyper a head longer than this path reads. Until hyper would reject
/// the head, it is read on here, so that the head timeout runs once: handed over unfinished,
/// hyper would start its own timer for the same head.
fn head_for_hyper<'f>(input: &[u8]) -> Step<'f> {
    let mut slots =
        [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; HYPER_MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut []);
    let config = httparse::ParserConfig::default();
    match config.parse_request_with_uninit_headers(&mut parsed, input, &mut slots) {
        Ok(httparse::Status::Partial) if input.len() < HYPER_MAX_BUFFER => Step::NeedMore,
        // A complete head, or one hyper rejects already.
        _ => Step::FullPath,
    }
}

/// A request head that the fast path may take, pending the decision.
struct Qualified<'b, 'h> {
    method: Method,
    target: &'b str,
    path: &'b str,
    query: &'b str,
    headers: &'h [httparse::Header<'b>],
}

/// Returns the head when only its decision can still send it to hyper. It must be HTTP/1.1,
/// with a method other than `HEAD` and `CONNECT`, an origin-form target of plain characters
/// and no body. Each header name occurs once, and none is one the full path treats specially.
fn qualify<'b, 'h>(parsed: &'h httparse::Request<'h, 'b>) -> Option<Qualified<'b, 'h>> {
    if parsed.version != Some(1) {
        return None;
    }
    let method = Method::from_bytes(parsed.method?.as_bytes()).ok()?;
    if method == Method::HEAD || method == Method::CONNECT {
        return None;
    }
    let target = parsed.path?;
    // Characters that `http::Uri` keeps as they are, so the full path would see the same
    // target: unreserved, sub-delimiters, `:`, `@`, `/`, `?` and percent escapes. A fragment
    // (`#`) or anything else goes to hyper.
    let plain = all_bytes(target.as_bytes(), is_plain_target_byte);
    if !plain || !target.starts_with('/') {
        return None;
    }
    // Two simple passes cost less than one that also tracks the first `?`.
    let (path, query) = match memchr::memchr(b'?', target.as_bytes()) {
        Some(index) => (&target[..index], &target[index + 1..]),
        None => (target, ""),
    };

    let headers: &'h [httparse::Header<'b>] = parsed.headers;
    for (index, field) in headers.iter().enumerate() {
        let name = field.name;
        let repeated = headers[..index]
            .iter()
            .any(|earlier| eq_ignore_case(earlier.name, name));
        if is_full_path_header(name) || repeated {
            return None;
        }
    }
    Some(Qualified {
        method,
        target,
        path,
        query,
        headers,
    })
}

/// Returns whether every byte of `bytes` passes `accept`. It tests every byte, with no early
/// exit, so that the compiler tests many at once: a table lookup per byte, with a branch, took
/// a fortieth of this path's instructions for a target and a host name.
#[inline(always)]
fn all_bytes(bytes: &[u8], accept: impl Fn(u8) -> bool) -> bool {
    bytes.iter().fold(true, |all, &byte| all & accept(byte))
}

fn in_range(byte: u8, low: u8, high: u8) -> bool {
    byte.wrapping_sub(low) <= high - low
}

/// Returns whether `byte` belongs in a registered name, as [`REG_NAME`](super::REG_NAME) lists
/// them, with comparisons that the compiler can test on many bytes at once.
fn is_reg_name_byte(byte: u8) -> bool {
    (byte == b'!')
        | in_range(byte, b'$', b'.')
        | in_range(byte, b'0', b'9')
        | (byte == b';')
        | (byte == b'=')
        | in_range(byte, b'A', b'Z')
        | (byte == b'_')
        | in_range(byte, b'a', b'z')
        | (byte == b'~')
}

/// Returns whether `byte` belongs in a target this path takes, by [`qualify`]'s rule: a byte of
/// a registered name, `:`, `@`, `/` or `?`.
fn is_plain_target_byte(byte: u8) -> bool {
    is_reg_name_byte(byte) | (byte == b':') | (byte == b'@') | (byte == b'/') | (byte == b'?')
}

/// The lengths of the names [`is_full_path_header`] looks for, one bit per length.
const FULL_PATH_HEADER_LENGTHS: u64 = {
    let mut bits = 0u64;
    let mut index = 0;
    while index < HOP_BY_HOP.len() {
        bits |= 1 << HOP_BY_HOP[index].len();
        index += 1;
    }
    let mut index = 0;
    while index < FULL_PATH_HEADERS.len() {
        bits |= 1 << FULL_PATH_HEADERS[index].len();
        index += 1;
    }
    bits
};

/// Returns whether a request header sends the request to hyper: a hop-by-hop header, or one
/// of [`FULL_PATH_HEADERS`]. The length is checked first, since most names match none.
fn is_full_path_header(name: &str) -> bool {
    name.len() < 64
        && FULL_PATH_HEADER_LENGTHS & (1 << name.len()) != 0
        && HOP_BY_HOP
            .iter()
            .chain(FULL_PATH_HEADERS.iter())
            .any(|special| eq_lower_case(name, special))
}

/// Returns the host name of the request's only `Host` header, as the full path's
/// `request_host` does. Returns `None` for a missing, empty or invalid one, to which the full
/// path responds with 400.
///
/// Only a registered name with an optional port is read here, in one pass, because the
/// full path's reading took a twentieth of this path's time. Anything else, such as an IPv6
/// literal, returns `None`, so the full path reads it.
fn single_host<'b>(headers: &[httparse::Header<'b>]) -> Option<Cow<'b, str>> {
    let field = headers
        .iter()
        .find(|field| field.name.eq_ignore_ascii_case("host"))?;
    // httparse admits no control character other than a tab, so only spaces and tabs are
    // trimmed, as `str::trim` trims them on the full path.
    let value = field.value.trim_ascii();
    // `:` is not a byte of a registered name, so the first one starts the port.
    let (name, port) = match memchr::memchr(b':', value) {
        Some(colon) => (&value[..colon], &value[colon + 1..]),
        None => (value, &[][..]),
    };
    let valid = all_bytes(name, is_reg_name_byte) && all_bytes(port, |byte| byte.is_ascii_digit());
    if name.is_empty() || !valid {
        return None;
    }
    // Every byte of a registered name is ASCII. Most names are lower-case already.
    let host = std::str::from_utf8(name).ok()?;
    let upper = name
        .iter()
        .fold(false, |upper, byte| upper | byte.is_ascii_uppercase());
    if upper {
        Some(Cow::Owned(host.to_ascii_lowercase()))
    } else {
        Some(Cow::Borrowed(host))
    }
}

/// Returns `value` as text when it is visible ASCII, spaces and tabs only, as
/// `HeaderValue::to_str` requires.
fn visible_ascii(value: &[u8]) -> Option<&str> {
    let visible = value
        .iter()
        .all(|&byte| byte == b'\t' || (b' '..=b'~').contains(&byte));
    if visible {
        std::str::from_utf8(value).ok()
    } else {
        None
    }
}

/// The request's header lines as the access-restriction engine reads them. Each name occurs
/// once (see [`qualify`]).
struct Fields<'h, 'b>(&'h [httparse::Header<'b>]);

impl HeaderLookup for Fields<'_, '_> {
    fn values(&self, lower_case_name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|field| eq_lower_case(field.name, lower_case_name))
            .filter_map(|field| visible_ascii(field.value))
            .collect()
    }

    fn visit_values(&self, lower_case_name: &str, visit: &mut dyn FnMut(&str) -> bool) -> bool {
        let mut present = false;
        for field in self.0 {
            if eq_lower_case(field.name, lower_case_name) {
                // As on the full path, a value that is not visible ASCII matches no filter
                // but still counts as the header being present.
                present = true;
                if visible_ascii(field.value).is_some_and(&mut *visit) {
                    break;
                }
            }
        }
        present
    }
}

/// Encodes the request for the handler as the full path does. The caller's headers keep their
/// order, with lower-case names. `X-Forwarded-For` and `X-Forwarded-Proto` take the place of
/// the caller's, or else follow its headers. Then come the Functions host's headers, and the
/// length of the empty body for the methods that define one.
fn encode_request(request: &Qualified<'_, '_>, source: &Source, scheme: &str, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(request.method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(request.target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");

    let mut forwarded_for = false;
    let mut forwarded_proto = false;
    for field in request.headers {
        let name = field.name;
        if eq_lower_case(name, "x-forwarded-for") {
            write_forwarded_for(out, Some(field.value), source);
            forwarded_for = true;
        } else if eq_lower_case(name, "x-forwarded-proto") {
            write_forwarded_proto(out, scheme);
            forwarded_proto = true;
        } else if !HOST_HEADER_NAMES
            .iter()
            .any(|host_header| eq_lower_case(name, host_header))
        {
            let start = out.len();
            out.extend_from_slice(name.as_bytes());
            out[start..].make_ascii_lowercase();
            out.extend_from_slice(b": ");
            out.extend_from_slice(field.value);
            out.extend_from_slice(b"\r\n");
        }
    }
    if !forwarded_for {
        write_forwarded_for(out, None, source);
    }
    if !forwarded_proto {
        write_forwarded_proto(out, scheme);
    }
    write_host_headers(out);
    // The full path's handler client gives these methods an explicit length even when the
    // body is empty.
    if matches!(request.method, Method::POST | Method::PUT | Method::PATCH) {
        out.extend_from_slice(b"content-length: 0\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Writes `X-Forwarded-For` as the full path builds it, from the caller's line when it sent
/// one.
fn write_forwarded_for(out: &mut Vec<u8>, line: Option<&[u8]>, source: &Source) {
    out.extend_from_slice(b"x-forwarded-for: ");
    push_forwarded_chain(out, line.into_iter(), source);
    out.extend_from_slice(b"\r\n");
}

fn write_forwarded_proto(out: &mut Vec<u8>, scheme: &str) {
    out.extend_from_slice(b"x-forwarded-proto: ");
    out.extend_from_slice(if scheme == "https" { b"https" } else { b"http" });
    out.extend_from_slice(b"\r\n");
}

/// Encodes a reply to a request that is neither `HEAD` nor `CONNECT`, as [`encode_response`]
/// encodes a response.
// NOTE: the body is copied after the head, so a large response takes twice its size in
// memory while it is written, where hyper writes the body from its own buffer.
fn encode_reply(reply: &Reply, out: &mut Vec<u8>) {
    let lines = match reply {
        Reply::Built(response) => return encode_response(response, out),
        Reply::Lines(lines) => lines,
    };
    out.clear();
    write_status_line(out, lines.status, lines.reason.as_ref());
    out.extend_from_slice(&lines.lines);
    write_framing(out, lines.status, lines.body.len(), lines.has_date);
    if has_body(lines.status) {
        out.extend_from_slice(&lines.body);
    }
}

/// Encodes a response to a request that is neither `HEAD` nor `CONNECT` as hyper's HTTP/1
/// server does: the status line, the headers in map order, then [`write_framing`]'s lines.
///
/// Responses that reach here carry no framing or connection headers: the handler client
/// removes them from the handler's response, and the Functions host's own responses have
/// none.
fn encode_response(response: &Response<Bytes>, out: &mut Vec<u8>) {
    out.clear();
    let status = response.status();
    let reason = response.extensions().get::<hyper::ext::ReasonPhrase>();
    write_status_line(out, status, reason);

    let mut has_date = false;
    for (name, value) in response.headers() {
        has_date |= name == header::DATE;
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    write_framing(out, status, response.body().len(), has_date);
    if has_body(status) {
        out.extend_from_slice(response.body());
    }
}

/// Returns whether a response with `status` has a body (RFC 9110, sections 15.3.5 and
/// 15.4.5).
fn has_body(status: StatusCode) -> bool {
    !matches!(status, StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED)
}

/// Writes the status line as hyper writes it.
fn write_status_line(
    out: &mut Vec<u8>,
    status: StatusCode,
    reason: Option<&hyper::ext::ReasonPhrase>,
) {
    if status == StatusCode::OK && reason.is_none() {
        out.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
    } else {
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(status.as_str().as_bytes());
        out.push(b' ');
        match reason {
            Some(reason) => out.extend_from_slice(reason.as_bytes()),
            // hyper writes a placeholder when a status has no standard reason.
            None => out.extend_from_slice(status.canonical_reason().unwrap_or("<none>").as_bytes()),
        }
        out.extend_from_slice(b"\r\n");
    }
}

/// Writes what hyper writes after the headers: `content-length` when the status has a body,
/// `date` unless the response has one, and the blank line.
fn write_framing(out: &mut Vec<u8>, status: StatusCode, body_length: usize, has_date: bool) {
    if has_body(status) {
        out.extend_from_slice(b"content-length: ");
        out.extend_from_slice(itoa::Buffer::new().format(body_length).as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if !has_date {
        out.extend_from_slice(b"date: ");
        out.extend_from_slice(&http_date());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Returns the current time as an HTTP date (RFC 9110, section 5.6.7). It is formatted once
/// per second per thread, as hyper caches its own.
fn http_date() -> [u8; 29] {
    thread_local! {
        static CACHED: std::cell::Cell<(u64, [u8; 29])> = const { std::cell::Cell::new((u64::MAX, [0; 29])) };
    }
    let now = SystemTime::now();
    let second = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    CACHED.with(|cached| {
        let (cached_second, text) = cached.get();
        if cached_second == second {
            return text;
        }
        let mut fresh = [0u8; 29];
        let formatted = httpdate::fmt_http_date(now);
        // An IMF-fixdate is always 29 ASCII characters.
        if let Some(bytes) = formatted.as_bytes().get(..29) {
            fresh.copy_from_slice(bytes);
        }
        cached.set((second, fresh));
        fresh
    })
}

/// Reads what the caller has sent into `input`; 0 means the caller closed its side.
async fn read_more<I: AsyncRead + Unpin>(io: &mut I, input: &mut BytesMut) -> io::Result<usize> {
    input.reserve(READ_CHUNK);
    io.read_buf(input).await
}

/// A connection whose first bytes were read already: reading yields them before the rest.
struct Rewind<I> {
    unread: Bytes,
    io: I,
}

impl<I: AsyncRead + Unpin> AsyncRead for Rewind<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffer: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.unread.is_empty() {
            let count = self.unread.len().min(buffer.remaining());
            buffer.put_slice(&self.unread[..count]);
            self.unread.advance(count);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_read(context, buffer)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Rewind<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffer: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(context, buffer)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffers: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(context, buffers)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(context)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(context)
    }
}

#[cfg(test)]
mod tests {
    use http::{HeaderName, HeaderValue, Request};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::functions_host::host_headers;
    use crate::handler_client::{encode_request as encode_full, OutboundRequest};

    /// Parses `head` and passes it to `check` with the fast path's reading of it.
    fn with_qualified(head: &str, check: impl FnOnce(Option<&Qualified<'_, '_>>)) {
        let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut parsed = httparse::Request::new(&mut slots);
        let status = parsed.parse(head.as_bytes()).expect("head parses");
        assert!(status.is_complete(), "complete head: {head:?}");
        check(qualify(&parsed).as_ref());
    }

    #[test]
    fn only_plain_requests_qualify() {
        let host = "Host: app.azurewebsites.net\r\n";
        for (head, expected) in [
            (format!("GET /api/f HTTP/1.1\r\n{host}\r\n"), true),
            (
                format!("POST /api/f?code=a%2Bb&x=1 HTTP/1.1\r\n{host}\r\n"),
                true,
            ),
            (
                format!("DELETE /api/f HTTP/1.1\r\n{host}X-Forwarded-For: 1.2.3.4\r\n\r\n"),
                true,
            ),
            (format!("GET /api/f HTTP/1.0\r\n{host}\r\n"), false),
            (format!("HEAD /api/f HTTP/1.1\r\n{host}\r\n"), false),
            (format!("CONNECT app:443 HTTP/1.1\r\n{host}\r\n"), false),
            (
                format!("GET http://app/api/f HTTP/1.1\r\n{host}\r\n"),
                false,
            ),
            (format!("OPTIONS * HTTP/1.1\r\n{host}\r\n"), false),
            (format!("GET /api/f#frag HTTP/1.1\r\n{host}\r\n"), false),
            (format!("GET /api/{{x}} HTTP/1.1\r\n{host}\r\n"), false),
            (
                format!("POST /api/f HTTP/1.1\r\n{host}Content-Length: 0\r\n\r\n"),
                false,
            ),
            (
                format!("POST /api/f HTTP/1.1\r\n{host}Transfer-Encoding: chunked\r\n\r\n"),
                false,
            ),
            (
                format!("GET /api/f HTTP/1.1\r\n{host}Connection: keep-alive\r\n\r\n"),
                false,
            ),
            (
                format!("GET /api/f HTTP/1.1\r\n{host}TE: trailers\r\n\r\n"),
                false,
            ),
            (
                format!("GET /api/f HTTP/1.1\r\n{host}Expect: 100-continue\r\n\r\n"),
                false,
            ),
            (
                format!("GET /api/f HTTP/1.1\r\n{host}Upgrade: websocket\r\n\r\n"),
                false,
            ),
            (
                format!("GET /api/f HTTP/1.1\r\n{host}a: 1\r\nA: 2\r\n\r\n"),
                false,
            ),
            (format!("GET /api/f HTTP/1.1\r\n{host}{host}\r\n"), false),
        ] {
            with_qualified(&head, |qualified| {
                assert_eq!(qualified.is_some(), expected, "{head:?}");
            });
        }
    }

    #[test]
    fn byte_classes_equal_their_tables() {
        let plain_target = crate::frontend::byte_table(b"-._~!$&'()*+,;=:@/?%");
        for byte in 0..=255u8 {
            let index = usize::from(byte);
            assert_eq!(
                is_reg_name_byte(byte),
                super::super::REG_NAME[index],
                "{byte:#x}"
            );
            assert_eq!(is_plain_target_byte(byte), plain_target[index], "{byte:#x}");
        }
    }

    #[test]
    fn host_is_read_as_on_the_full_path() {
        for (value, expected) in [
            ("App.AzureWebsites.net", Some("app.azurewebsites.net")),
            (" app.azurewebsites.net:80 ", Some("app.azurewebsites.net")),
            ("\tapp:\t", Some("app")),
            ("app.azurewebsites.net.", Some("app.azurewebsites.net.")),
            ("app:", Some("app")),
            ("a%41pp!$&'()*+,;=~_-", Some("a%41pp!$&'()*+,;=~_-")),
            ("", None),
            (" ", None),
            (":80", None),
            ("app:8x", None),
            ("a:b:80", None),
            ("[::1]:80", None),
            ("user@app", None),
            ("caf\u{e9}", None),
        ] {
            let field = httparse::Header {
                name: "host",
                value: value.as_bytes(),
            };
            let fast = single_host(&[field]);
            assert_eq!(fast.as_deref(), expected, "{value:?}");

            // Whatever the fast path reads, the full path reads the same.
            if let Some(fast) = fast {
                let mut request = Request::new(Bytes::new());
                request
                    .headers_mut()
                    .insert(header::HOST, HeaderValue::from_str(value).expect("value"));
                let full = super::super::request_host(&request.into_parts().0);
                assert_eq!(full.as_deref(), Ok(fast.as_ref()), "{value:?}");
            }
        }
    }

    /// Replaces the value of the invocation id header, which is random, with zeros.
    fn mask_invocation_id(encoded: &[u8]) -> String {
        let text = String::from_utf8_lossy(encoded).into_owned();
        let name = "x-azure-functions-invocationid: ";
        let start = text.find(name).expect("invocation id") + name.len();
        format!(
            "{}{}{}",
            &text[..start],
            "0".repeat(36),
            &text[start + 36..]
        )
    }

    /// Encodes a qualified head as the full path does: a header map as hyper builds it,
    /// `prepare_for_worker`, then the handler client's encoder with the host's headers.
    fn encode_on_full_path(request: &Qualified<'_, '_>, source: &Source, scheme: &str) -> Vec<u8> {
        let mut full = Request::new(Bytes::new());
        *full.method_mut() = request.method.clone();
        *full.uri_mut() = request.target.parse().expect("target parses as a URI");
        for field in request.headers {
            full.headers_mut().append(
                HeaderName::from_bytes(field.name.as_bytes()).expect("name"),
                HeaderValue::from_bytes(field.value).expect("value"),
            );
        }
        super::super::prepare_for_worker(&mut full, source, scheme);
        let extra = host_headers();
        let target = full
            .uri()
            .path_and_query()
            .expect("target")
            .as_str()
            .to_owned();
        encode_full(
            8080,
            &OutboundRequest {
                method: full.method(),
                target: &target,
                headers: full.headers(),
                extra_headers: &extra,
                body: &[],
            },
        )
    }

    #[test]
    fn handler_request_equals_the_full_paths() {
        let source = Source::internet("198.51.100.7".parse().expect("address"));
        let host = "Host: App.azurewebsites.net:80\r\n";
        for head in [
            format!("GET /api/f HTTP/1.1\r\n{host}\r\n"),
            format!("GET /api/f?code=k&x=%41 HTTP/1.1\r\n{host}Accept: */*\r\n\r\n"),
            format!(
                "PUT /api/f HTTP/1.1\r\nX-Forwarded-Proto: gopher\r\n{host}\
                 X-Forwarded-For:  10.0.0.1, 10.0.0.2 \r\nUser-Agent: curl/8\r\n\
                 X-Azure-Functions-InvocationId: forged\r\nX-Custom: caf\u{e9}\r\n\r\n"
            ),
            format!("POST /api/f HTTP/1.1\r\n{host}X-Forwarded-For:\r\n\r\n"),
            format!("PATCH /api/f HTTP/1.1\r\nx-functions-key: k\r\n{host}\r\n"),
        ] {
            with_qualified(&head, |qualified| {
                let request = qualified.expect("qualifies");
                for scheme in ["http", "https"] {
                    let mut fast = Vec::new();
                    encode_request(request, &source, scheme, &mut fast);
                    let full = encode_on_full_path(request, &source, scheme);
                    assert_eq!(
                        mask_invocation_id(&fast),
                        mask_invocation_id(&full),
                        "{head:?}"
                    );
                }
            });
        }
    }

    /// Replaces the value of each `date` header line with `<date>`.
    fn mask_dates(encoded: &[u8]) -> String {
        String::from_utf8_lossy(encoded)
            .split("\r\n")
            .map(|line| {
                if line.starts_with("date: ") {
                    "date: <date>"
                } else {
                    line
                }
            })
            .collect::<Vec<_>>()
            .join("\r\n")
    }

    /// Serves one GET with hyper's HTTP/1 server, as the full path does, responding with
    /// `response`. Returns the bytes hyper writes.
    async fn written_by_hyper(response: Response<Bytes>) -> Vec<u8> {
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let response = std::sync::Mutex::new(Some(response));
        let service = hyper::service::service_fn(move |_request| {
            let response = response.lock().expect("lock").take().expect("one request");
            async move { Ok::<_, std::convert::Infallible>(response.map(http_body_util::Full::new)) }
        });
        let served = tokio::spawn(
            hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(server), service),
        );
        client
            .write_all(b"GET / HTTP/1.1\r\nHost: app\r\n\r\n")
            .await
            .expect("write request");
        let mut written = Vec::new();
        let mut buffer = [0u8; 4096];
        loop {
            let mut slots = [httparse::EMPTY_HEADER; 16];
            let mut parsed = httparse::Response::new(&mut slots);
            if let Ok(httparse::Status::Complete(head)) = parsed.parse(&written) {
                let length = parsed
                    .headers
                    .iter()
                    .find(|field| field.name == "content-length")
                    .map_or(0, |field| {
                        std::str::from_utf8(field.value)
                            .expect("ASCII")
                            .parse::<usize>()
                            .expect("length")
                    });
                if written.len() >= head + length {
                    break;
                }
            }
            let count = client.read(&mut buffer).await.expect("read response");
            assert_ne!(count, 0, "hyper closed before the whole response");
            written.extend_from_slice(&buffer[..count]);
        }
        drop(client);
        let _ = served.await;
        written
    }

    #[tokio::test]
    async fn response_equals_hypers() {
        let response = |status: u16, headers: &[(&str, &str)], body: &'static str| {
            let mut response = Response::new(Bytes::from_static(body.as_bytes()));
            *response.status_mut() = StatusCode::from_u16(status).expect("status");
            for (name, value) in headers {
                response.headers_mut().append(
                    HeaderName::from_bytes(name.as_bytes()).expect("name"),
                    HeaderValue::from_str(value).expect("value"),
                );
            }
            response
        };
        let mut custom_reason = response(200, &[], "ok");
        custom_reason
            .extensions_mut()
            .insert(hyper::ext::ReasonPhrase::from_static(b"Fine"));
        let cases = vec![
            response(200, &[("content-type", "text/plain")], "42"),
            response(200, &[("x-a", "1"), ("x-b", "2"), ("x-a", "3")], "grouped"),
            response(201, &[("date", "Mon, 01 Jan 2024 00:00:00 GMT")], ""),
            response(204, &[("x-empty", "yes")], ""),
            response(304, &[], ""),
            response(404, &[], ""),
            response(299, &[], "unnamed status"),
            response(
                502,
                &[("content-type", "text/plain; charset=utf-8")],
                "gone\n",
            ),
            custom_reason,
        ];
        for case in cases {
            let mut fast = Vec::new();
            encode_response(&case, &mut fast);

            // The same response with its headers as lines, which the handler client gives
            // when no name occurs twice.
            let mut lines = Vec::new();
            for (name, value) in case.headers() {
                crate::handler_client::write_header(&mut lines, name, value);
            }
            let distinct = case.headers().keys_len() == case.headers().len();
            let as_lines = Reply::Lines(crate::handler_client::ResponseLines {
                status: case.status(),
                reason: case.extensions().get::<hyper::ext::ReasonPhrase>().cloned(),
                lines,
                has_date: case.headers().contains_key(header::DATE),
                body: case.body().clone(),
            });
            let mut from_lines = Vec::new();
            encode_reply(&as_lines, &mut from_lines);

            let hyper = written_by_hyper(case).await;
            assert_eq!(mask_dates(&fast), mask_dates(&hyper));
            if distinct {
                assert_eq!(mask_dates(&from_lines), mask_dates(&hyper));
            }
        }
    }

    /// Serves a connection on which the caller waits `idle`, then sends `head`, which must end
    /// inside a header value, and then one more byte of that value a second. Returns how long
    /// after the connection opened the server closed it. Time is paused, so the test takes
    /// no real time.
    async fn seconds_until_slow_head_closed(
        fast: bool,
        idle: std::time::Duration,
        head: &[u8],
    ) -> u64 {
        let front_end = Arc::new(FrontEnd {
            topology: Arc::new(subnetlock_model::Topology::default()),
            access: super::super::SiteMap::default(),
            hosts: super::super::SiteMap::default(),
            hosts_not_running: Default::default(),
            publishing: std::collections::HashMap::new(),
            decisions: Arc::new(crate::decisions::DecisionLog::new(None).expect("log")),
            write_timeout: super::super::WRITE_TIMEOUT,
        });
        let (mut client, server) = tokio::io::duplex(1024 * 1024);
        let peer: SocketAddr = "127.0.0.1:50000".parse().expect("peer");
        let opened = Instant::now();
        let served = if fast {
            tokio::spawn(serve(server, peer, front_end, "http"))
        } else {
            tokio::spawn(serve_connection(
                TokioIo::new(server),
                peer,
                front_end,
                "http",
            ))
        };

        tokio::time::sleep(idle).await;
        client.write_all(head).await.expect("write the head");
        while !served.is_finished() && opened.elapsed() < std::time::Duration::from_secs(120) {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            if client.write_all(b"a").await.is_err() {
                break;
            }
        }
        served.await.expect("connection task");
        opened.elapsed().as_secs()
    }

    #[tokio::test(start_paused = true)]
    async fn slow_head_gets_one_head_timeout() {
        // A head longer than this path reads, in one long line because hyper rejects more
        // than 100 header lines at once, and a head with more header lines than this path
        // parses.
        let mut long = b"GET / HTTP/1.1\r\nHost: app.azurewebsites.net\r\nX-Filler: ".to_vec();
        long.resize(MAX_HEAD_BYTES + 1, b'a');
        let mut many = b"GET / HTTP/1.1\r\nHost: app.azurewebsites.net\r\n".to_vec();
        for index in 0..MAX_HEADERS {
            many.extend_from_slice(format!("X-H{index}: 1\r\n").as_bytes());
        }
        many.extend_from_slice(b"X-Last: a");

        let idle = std::time::Duration::from_secs(20);
        // The caller notices the close at its next write, up to a second later.
        let limit = HEAD_TIMEOUT.as_secs() + 1;
        for (name, head) in [("many header lines", &many), ("long head", &long)] {
            let on_hyper = seconds_until_slow_head_closed(false, idle, head).await;
            let on_fast_path = seconds_until_slow_head_closed(true, idle, head).await;
            assert!(
                on_hyper <= limit,
                "{name}: hyper alone closed after {on_hyper} s"
            );
            assert!(
                on_fast_path <= limit,
                "{name}: fast path, then hyper, closed after {on_fast_path} s"
            );
        }
    }
}
