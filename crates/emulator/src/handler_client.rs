//! HTTP/1.1 client for the custom handler process.
//!
//! Every invocation goes to one process on loopback, so the client keeps a list of idle
//! keep-alive connections and does each exchange in the calling task: one write for the
//! request and, for a small response, one read. A general pooled client (hyper-util's legacy
//! client) runs each connection in a task of its own and passes requests and responses across
//! channels. On the front end's hot path that hand-off cost more CPU than parsing HTTP did
//! (measured with `bench/frontend.sh`, recorded in docs/benchmarks.md).
//!
//! It implements the client side of RFC 9112 that a handler can use: `Content-Length`,
//! `chunked` and close-delimited bodies, interim 1xx responses, `HEAD`, keep-alive with the
//! handler's `Keep-Alive: timeout`, and a response that arrives before the request was written
//! whole. Transfer codings other than `chunked` are rejected, because the client cannot undo
//! them.

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Response, StatusCode};
use subnetlock_access::{eq_ignore_case, eq_lower_case};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// Largest response head (status line and headers) the client reads.
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Largest number of response headers.
const MAX_HEADERS: usize = 128;

/// Largest chunk-size line or trailer line in a chunked body.
const MAX_CHUNK_LINE_BYTES: usize = 4 * 1024;

/// Idle connections kept open for reuse, per slot.
const MAX_IDLE: usize = 256;

/// An idle connection older than this is closed rather than reused, unless the handler's
/// `Keep-Alive: timeout` is shorter.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Bytes requested from the socket per read.
const READ_CHUNK: usize = 8 * 1024;

/// Request headers the client always writes itself, so copies from the caller are skipped.
const FRAMING_HEADERS: [HeaderName; 2] = [header::CONTENT_LENGTH, header::TRANSFER_ENCODING];

/// Hop-by-hop headers (RFC 9110, section 7.6.1), which a proxy does not forward.
pub(crate) const HOP_BY_HOP: [&str; 7] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// The handling a response header gets from the client, by its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    ContentLength,
    TransferEncoding,
    Connection,
    KeepAlive,
    /// A hop-by-hop header other than the three above.
    OtherHopByHop,
    Date,
    /// Any other header, passed on unless `Connection` lists it.
    Other,
}

/// Returns the role of a header name with at most two comparisons: the names in
/// [`HOP_BY_HOP`], `content-length` and `date` differ in length, but for two pairs.
fn role_of(name: &str) -> Role {
    let is = |lower: &str| eq_lower_case(name, lower);
    match name.len() {
        2 if is("te") => Role::OtherHopByHop,
        4 if is("date") => Role::Date,
        7 if is("trailer") || is("upgrade") => Role::OtherHopByHop,
        10 if is("connection") => Role::Connection,
        10 if is("keep-alive") => Role::KeepAlive,
        14 if is("content-length") => Role::ContentLength,
        16 if is("proxy-connection") => Role::OtherHopByHop,
        17 if is("transfer-encoding") => Role::TransferEncoding,
        _ => Role::Other,
    }
}

/// Failure of an exchange with the handler.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SendError {
    /// Nothing was sent, so the caller may wait for a restarted handler and try again.
    #[error("cannot connect to the custom handler on 127.0.0.1:{port}")]
    Connect { port: u16, source: io::Error },

    #[error("connection to the custom handler failed")]
    Io(#[from] io::Error),

    #[error("the custom handler closed the connection before it sent a complete response")]
    Closed,

    #[error("invalid response from the custom handler: {0}")]
    Invalid(String),

    #[error("the custom handler's response body is larger than {limit} bytes")]
    TooLarge { limit: usize },
}

/// One request for the handler. The client adds the framing headers (`Host` when missing,
/// `Content-Length`) and leaves out hop-by-hop headers.
pub(crate) struct OutboundRequest<'a> {
    pub method: &'a Method,
    /// Origin-form target, such as `/api/function-b?code=…`.
    pub target: &'a str,
    pub headers: &'a HeaderMap,
    /// Headers written after `headers`, replacing any of the same name there.
    pub extra_headers: &'a [(HeaderName, HeaderValue)],
    pub body: &'a [u8],
}

/// The facts about an encoded request that [`HandlerClient::send_encoded`] needs.
#[derive(Clone, Copy, Debug)]
pub(crate) struct EncodedKind {
    /// The method is `HEAD`, so the response has no body whatever its framing declares.
    pub head_request: bool,
    /// The request may be sent again after a reused connection closed without a response:
    /// see [`HandlerClient::send`].
    pub replayable: bool,
    /// The caller wants the response's headers as lines ([`Reply::Lines`]) where they can be.
    pub header_lines: bool,
}

/// A handler's response, buffered.
pub(crate) enum Reply {
    /// The response with its headers in a map. It is boxed because the usual reply is
    /// [`Reply::Lines`], and a reply moves through several futures: at 144 bytes each move
    /// was a `memcpy` call.
    Built(Box<Response<Bytes>>),
    /// The response with its headers as lines, for a request that asked for them.
    Lines(ResponseLines),
}

/// A response whose headers are kept as the lines the front end writes to its caller.
///
/// Building a header map for a response that is only written out again took about a tenth of
/// the front end's time per request. The lines are what hyper would write for the map the
/// client would build: lower-case names in the handler's order, without the headers the
/// client removes. Each name occurs once, because hyper groups the values of a name.
pub(crate) struct ResponseLines {
    pub status: StatusCode,
    /// The reason phrase, when it differs from the standard one for `status`.
    pub reason: Option<hyper::ext::ReasonPhrase>,
    /// `name: value\r\n` for each header.
    pub lines: Vec<u8>,
    /// Whether one of the lines is `date`.
    pub has_date: bool,
    pub body: Bytes,
}

impl Reply {
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Reply::Built(response) => response.status(),
            Reply::Lines(lines) => lines.status,
        }
    }

    /// Returns the response with its headers in a map.
    pub(crate) fn into_response(self) -> Response<Bytes> {
        let lines = match self {
            Reply::Built(response) => return *response,
            Reply::Lines(lines) => lines,
        };
        let mut headers = HeaderMap::new();
        // The lines were written from valid names and values, so each one parses back.
        for line in lines.lines.split(|&byte| byte == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let Some(colon) = line.iter().position(|&byte| byte == b':') else {
                continue;
            };
            let name = HeaderName::from_bytes(&line[..colon]);
            let value = HeaderValue::from_bytes(line[colon + 1..].trim_ascii_start());
            if let (Ok(name), Ok(value)) = (name, value) {
                headers.append(name, value);
            }
        }
        let mut response = Response::new(lines.body);
        *response.status_mut() = lines.status;
        *response.headers_mut() = headers;
        if let Some(reason) = lines.reason {
            response.extensions_mut().insert(reason);
        }
        response
    }
}

impl From<Response<Bytes>> for Reply {
    fn from(response: Response<Bytes>) -> Reply {
        Reply::Built(Box::new(response))
    }
}

/// A client for handlers on loopback, shared by every request of one Functions host.
pub(crate) struct HandlerClient {
    idle: Box<[IdleSlot]>,
    max_body: usize,
}

/// The idle connections that the threads of one slot checked in.
///
/// Each of the front end's threads checks connections out and in for every request. With one
/// list for all threads, the lock and the list moved between the processor cores on almost
/// every request. A thread has a slot of its own unless more than [`IDLE_SLOTS`] threads use
/// the client, and each slot fills cache lines of its own (128 bytes covers the pairs of lines
/// that some processors fetch together).
#[repr(align(128))]
struct IdleSlot(Mutex<Vec<IdleConnection>>);

/// Number of idle lists per client.
const IDLE_SLOTS: usize = 16;

/// Returns the slot of the calling thread. Threads take slots in turn, on first use.
fn slot_index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SLOT: usize = NEXT.fetch_add(1, Ordering::Relaxed) % IDLE_SLOTS;
    }
    SLOT.with(|slot| *slot)
}

struct IdleConnection {
    connection: Connection,
    /// The thread that used it last. A connection is registered with the runtime of the thread
    /// that opened it, and each of the front end's threads runs a runtime of its own, so a
    /// connection goes back only to its thread (see `frontend::spawn_threads`).
    thread: std::thread::ThreadId,
    since: Instant,
}

struct Connection {
    port: u16,
    stream: TcpStream,
    /// Bytes read from the socket and not yet consumed.
    buffer: BytesMut,
    /// Bytes read from the socket during the current exchange.
    received: usize,
    /// How long the connection may stay idle before it is closed instead of reused.
    idle_limit: Duration,
}

/// A response read from a connection, and whether the connection can carry another request.
struct Exchange {
    response: Reply,
    reusable: bool,
}

/// How an exchange failed, which decides whether the request may be sent again.
enum Failure {
    /// The first write failed, so no byte of the request reached the handler.
    NotSent(SendError),
    /// The request went out, and the connection failed before any byte of a response came
    /// back. A handler that closed the idle connection while the request was on its way does
    /// this, and so does a handler that exits while it handles the request.
    NothingReceived(SendError),
    /// Part of a response arrived before the exchange failed.
    AfterSending(SendError),
}

/// The end of writing a request.
enum WriteOutcome {
    Complete,
    /// The handler sent bytes, or closed the connection, before it read the whole request.
    ResponseStarted,
    Failed(io::Error),
}

impl HandlerClient {
    /// Creates a client that buffers response bodies up to `max_body` bytes.
    pub(crate) fn new(max_body: usize) -> HandlerClient {
        HandlerClient {
            idle: (0..IDLE_SLOTS)
                .map(|_| IdleSlot(Mutex::new(Vec::new())))
                .collect(),
            max_body,
        }
    }

    /// Sends `request` to the handler on `port` and reads the whole response.
    ///
    /// A request that failed on a reused connection goes out once more, on a new connection,
    /// when none of it was written, or when no byte of a response came back and the request
    /// is replayable: GET, HEAD, OPTIONS or TRACE without a body (RFC 9110, section 9.2.2;
    /// RFC 9112, section 9.3.1). That retry covers a handler that closes idle connections
    /// just as one is reused. It also means that a replayable request which makes the
    /// handler exit reaches it twice when the restarted handler is up in time.
    pub(crate) async fn send(
        &self,
        port: u16,
        request: &OutboundRequest<'_>,
    ) -> Result<Response<Bytes>, SendError> {
        let encoded = encode_request(port, request);
        let kind = EncodedKind {
            head_request: request.method == Method::HEAD,
            replayable: is_replayable(request),
            header_lines: false,
        };
        let reply = self.send_encoded(port, &encoded, kind).await?;
        Ok(reply.into_response())
    }

    /// Sends a request already encoded as HTTP/1.1 bytes, as [`Self::send`] does. `kind`
    /// gives what the client cannot read from the bytes without parsing them again.
    pub(crate) async fn send_encoded(
        &self,
        port: u16,
        encoded: &[u8],
        kind: EncodedKind,
    ) -> Result<Reply, SendError> {
        let mut delivered_error = None;

        if let Some(mut connection) = self.checkout(port) {
            match connection.exchange(encoded, kind, self.max_body).await {
                Ok(exchange) => return Ok(self.finish(connection, exchange)),
                Err(Failure::NotSent(error)) => {
                    tracing::debug!(port, error = %crate::with_causes(&error), "reused handler connection failed before the request went out, retrying on a new one");
                }
                Err(Failure::NothingReceived(error)) if kind.replayable => {
                    tracing::debug!(port, error = %crate::with_causes(&error), "reused handler connection closed without a response, retrying on a new one");
                    delivered_error = Some(error);
                }
                Err(Failure::NothingReceived(error) | Failure::AfterSending(error)) => {
                    return Err(error)
                }
            }
        }

        let mut connection = match Connection::open(port).await {
            Ok(connection) => connection,
            // The request may have reached the handler already. A refused connection must not
            // then read as "never sent", which would send it again once the handler restarts.
            Err(error) => return Err(delivered_error.unwrap_or(error)),
        };
        match connection.exchange(encoded, kind, self.max_body).await {
            Ok(exchange) => Ok(self.finish(connection, exchange)),
            Err(
                Failure::NotSent(error)
                | Failure::NothingReceived(error)
                | Failure::AfterSending(error),
            ) => Err(error),
        }
    }

    fn finish(&self, connection: Connection, exchange: Exchange) -> Reply {
        if exchange.reusable {
            self.checkin(connection);
        }
        exchange.response
    }

    /// Takes the most recently used idle connection to `port` that this thread checked in and
    /// that is still open.
    fn checkout(&self, port: u16) -> Option<Connection> {
        let mut idle = self.lock_idle();
        let thread = std::thread::current().id();
        while let Some(position) = idle.iter().rposition(|idle| idle.thread == thread) {
            let candidate = idle.remove(position);
            // Connections that idled too long, or that go to an earlier handler process, are
            // closed on the way.
            let fresh = candidate.since.elapsed() <= candidate.connection.idle_limit;
            if fresh && candidate.connection.port == port && candidate.connection.is_open() {
                return Some(candidate.connection);
            }
        }
        None
    }

    fn checkin(&self, connection: Connection) {
        let mut idle = self.lock_idle();
        if idle.len() < MAX_IDLE {
            idle.push(IdleConnection {
                connection,
                thread: std::thread::current().id(),
                since: Instant::now(),
            });
        }
    }

    fn lock_idle(&self) -> std::sync::MutexGuard<'_, Vec<IdleConnection>> {
        self.idle[slot_index()]
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Connection {
    async fn open(port: u16) -> Result<Connection, SendError> {
        let stream = TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(|source| SendError::Connect { port, source })?;
        // Nagle's algorithm would hold back the small writes of a keep-alive exchange.
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(port, %error, "cannot set TCP_NODELAY on a handler connection");
        }
        Ok(Connection {
            port,
            stream,
            buffer: BytesMut::with_capacity(READ_CHUNK),
            received: 0,
            idle_limit: IDLE_TIMEOUT,
        })
    }

    /// Checks without blocking that the handler has not closed the idle connection.
    ///
    /// The runtime marks the socket readable when a FIN or stray bytes arrive, so an open,
    /// quiet connection costs no system call here. A close that arrives after this check
    /// is handled by the retry in [`HandlerClient::send`].
    fn is_open(&self) -> bool {
        if !self.buffer.is_empty() {
            return false;
        }
        let mut context = Context::from_waker(Waker::noop());
        match self.stream.poll_read_ready(&mut context) {
            Poll::Pending => true,
            Poll::Ready(Err(_)) => false,
            Poll::Ready(Ok(())) => {
                let mut probe = [0u8; 1];
                matches!(self.stream.try_read(&mut probe), Err(error) if error.kind() == io::ErrorKind::WouldBlock)
            }
        }
    }

    async fn exchange(
        &mut self,
        encoded: &[u8],
        kind: EncodedKind,
        max_body: usize,
    ) -> Result<Exchange, Failure> {
        self.received = 0;
        let (written, outcome) = self.write_request(encoded).await;
        let written_whole = match outcome {
            WriteOutcome::Complete => true,
            WriteOutcome::ResponseStarted => false,
            WriteOutcome::Failed(error) if written == 0 => {
                return Err(Failure::NotSent(error.into()))
            }
            // The handler may have answered before it closed the connection, for example with
            // 413 for a body it did not read, so whatever arrived is still read.
            WriteOutcome::Failed(error) => {
                tracing::debug!(port = self.port, written, %error, "writing to the custom handler failed");
                false
            }
        };

        match self.read_response(kind, max_body).await {
            Ok(mut exchange) => {
                // The unwritten rest of the request would be read as the start of the next.
                exchange.reusable &= written_whole;
                Ok(exchange)
            }
            Err(error) if self.received == 0 => Err(Failure::NothingReceived(error)),
            Err(error) => Err(Failure::AfterSending(error)),
        }
    }

    /// Writes the request, returning how many bytes went out and how the write ended.
    ///
    /// A request larger than the socket buffer is written as the buffer drains. Meanwhile the
    /// handler may reply without reading the rest (413 for a body it rejects), and then the
    /// write stops, because a handler that reads no more would leave it blocked.
    async fn write_request(&mut self, encoded: &[u8]) -> (usize, WriteOutcome) {
        let mut written = 0;
        while written < encoded.len() {
            let rest = encoded.get(written..).unwrap_or_default();
            match self.stream.try_write(rest) {
                Ok(count) => {
                    written += count;
                    continue;
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                Err(error) => return (written, WriteOutcome::Failed(error)),
            }

            let readable = tokio::select! {
                biased;
                ready = self.stream.readable() => ready.map(|()| true),
                ready = self.stream.writable() => ready.map(|()| false),
            };
            match readable {
                Err(error) => return (written, WriteOutcome::Failed(error)),
                Ok(false) => {}
                // Readiness can be left over from the previous response, so only bytes or the
                // end of the stream count as the handler replying.
                Ok(true) => {
                    self.buffer.reserve(READ_CHUNK);
                    match self.stream.try_read_buf(&mut self.buffer) {
                        Ok(0) => return (written, WriteOutcome::ResponseStarted),
                        Ok(count) => {
                            self.received += count;
                            // An interim response invites the rest of the request, or only
                            // informs (RFC 9110, section 15.2), so writing goes on after it.
                            if !self.skip_interim_responses() {
                                return (written, WriteOutcome::ResponseStarted);
                            }
                        }
                        Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                        Err(error) => return (written, WriteOutcome::Failed(error)),
                    }
                }
            }
        }
        (written, WriteOutcome::Complete)
    }

    /// Consumes the complete interim (1xx) responses at the start of the buffer. Returns
    /// whether what is left may still be one: nothing, or the start of a head whose status
    /// line reads `HTTP/1.x 1`. 101 counts as final, because it would end the exchange.
    fn skip_interim_responses(&mut self) -> bool {
        loop {
            match parse_head(&self.buffer, false) {
                Ok(Some((length, head)))
                    if head.status.is_informational()
                        && head.status != StatusCode::SWITCHING_PROTOCOLS =>
                {
                    self.buffer.advance(length);
                }
                Ok(Some(_)) | Err(_) => return false,
                Ok(None) => {
                    // The start is at most as long as the prefixes it is compared with.
                    let start = self.buffer.get(..10).unwrap_or(&self.buffer[..]);
                    return b"HTTP/1.1 1".starts_with(start) || b"HTTP/1.0 1".starts_with(start);
                }
            }
        }
    }

    /// Reads more bytes into the buffer, returning how many arrived (0 at end of stream).
    async fn fill(&mut self) -> io::Result<usize> {
        self.buffer.reserve(READ_CHUNK);
        let count = self.stream.read_buf(&mut self.buffer).await?;
        self.received += count;
        Ok(count)
    }

    async fn fill_or_closed(&mut self) -> Result<(), SendError> {
        match self.fill().await? {
            0 => Err(SendError::Closed),
            _ => Ok(()),
        }
    }

    async fn read_response(
        &mut self,
        kind: EncodedKind,
        max_body: usize,
    ) -> Result<Exchange, SendError> {
        let head_request = kind.head_request;
        // A response to HEAD gets its Content-Length back in the map, so it is never lines.
        let header_lines = kind.header_lines && !head_request;
        let head = loop {
            let head = self.read_head(header_lines).await?;
            match head.status.as_u16() {
                // 101 would hand the connection over to another protocol.
                101 => {
                    return Err(SendError::Invalid(
                        "101 Switching Protocols is not supported".into(),
                    ))
                }
                // Interim responses such as 100 Continue and 103 Early Hints precede the
                // final one (RFC 9110, section 15.2).
                100..=199 => continue,
                _ => break head,
            }
        };

        let framing = body_framing(&head, head_request)?;
        let body = match framing {
            Framing::Empty => Bytes::new(),
            Framing::Length(length) => {
                if length > max_body as u64 {
                    return Err(SendError::TooLarge { limit: max_body });
                }
                self.read_exact_body(length as usize).await?
            }
            Framing::Chunked => self.read_chunked_body(max_body).await?,
            Framing::UntilClose => self.read_until_close(max_body).await?,
        };

        // A connection is reused only when the message ended where its framing puts the end
        // and nothing else was sent after it.
        let reusable =
            head.keep_alive && !matches!(framing, Framing::UntilClose) && self.buffer.is_empty();
        if let Some(timeout) = head.keep_alive_timeout {
            self.idle_limit = idle_limit_for(timeout);
        }

        let mut headers = match head.headers {
            HeadFields::Map(headers) => *headers,
            HeadFields::Lines { lines, has_date } => {
                let response = Reply::Lines(ResponseLines {
                    status: head.status,
                    reason: head.reason,
                    lines,
                    has_date,
                    body,
                });
                return Ok(Exchange { response, reusable });
            }
        };
        // A response to HEAD keeps the length of the body it describes (RFC 9110, section
        // 8.6). Every other Content-Length is set again from the buffered body.
        if let (true, Some(length)) = (head_request, head.content_length) {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
        }
        let mut response = Response::new(body);
        *response.status_mut() = head.status;
        *response.headers_mut() = headers;
        if let Some(reason) = head.reason {
            response.extensions_mut().insert(reason);
        }
        Ok(Exchange {
            response: Reply::Built(Box::new(response)),
            reusable,
        })
    }

    async fn read_head(&mut self, header_lines: bool) -> Result<ResponseHead, SendError> {
        loop {
            // After a reused connection's last response the buffer is empty, and there is
            // nothing to parse until the first read.
            if self.buffer.is_empty() {
                self.fill_or_closed().await?;
            }
            if let Some((length, head)) = parse_head(&self.buffer, header_lines)? {
                self.buffer.advance(length);
                return Ok(head);
            }
            if self.buffer.len() >= MAX_HEAD_BYTES {
                return Err(SendError::Invalid(format!(
                    "response head longer than {MAX_HEAD_BYTES} bytes"
                )));
            }
            self.fill_or_closed().await?;
        }
    }

    async fn read_exact_body(&mut self, length: usize) -> Result<Bytes, SendError> {
        while self.buffer.len() < length {
            self.buffer.reserve(length - self.buffer.len());
            if self.fill().await? == 0 {
                return Err(SendError::Closed);
            }
        }
        Ok(self.buffer.split_to(length).freeze())
    }

    async fn read_chunked_body(&mut self, max_body: usize) -> Result<Bytes, SendError> {
        let mut body = BytesMut::new();
        loop {
            let line = self.read_line().await?;
            let size = parse_chunk_size(&line)?;
            if size == 0 {
                break;
            }
            if body.len() as u64 + size > max_body as u64 {
                return Err(SendError::TooLarge { limit: max_body });
            }
            let size = size as usize;
            while self.buffer.len() < size {
                self.fill_or_closed().await?;
            }
            body.extend_from_slice(&self.buffer[..size]);
            self.buffer.advance(size);
            if !self.read_line().await?.is_empty() {
                return Err(SendError::Invalid(
                    "chunk data not followed by a line break".into(),
                ));
            }
        }
        // Trailer fields are read and dropped: a handler's response trailers have no place
        // in the buffered response.
        while !self.read_line().await?.is_empty() {}
        Ok(body.freeze())
    }

    async fn read_until_close(&mut self, max_body: usize) -> Result<Bytes, SendError> {
        loop {
            if self.buffer.len() > max_body {
                return Err(SendError::TooLarge { limit: max_body });
            }
            if self.fill().await? == 0 {
                return Ok(self.buffer.split().freeze());
            }
        }
    }

    /// Reads one line of a chunked body without its line break. A bare LF ends a line as
    /// CRLF does, as in the response head (RFC 9112, section 2.2).
    async fn read_line(&mut self) -> Result<Bytes, SendError> {
        loop {
            if let Some(end) = self.buffer.iter().position(|&byte| byte == b'\n') {
                let mut line = self.buffer.split_to(end).freeze();
                self.buffer.advance(1);
                if line.last() == Some(&b'\r') {
                    line.truncate(line.len() - 1);
                }
                return Ok(line);
            }
            if self.buffer.len() > MAX_CHUNK_LINE_BYTES {
                return Err(SendError::Invalid(format!(
                    "chunk-size or trailer line longer than {MAX_CHUNK_LINE_BYTES} bytes"
                )));
            }
            self.fill_or_closed().await?;
        }
    }
}

struct ResponseHead {
    status: StatusCode,
    /// The reason phrase, when it differs from the standard one for `status`.
    reason: Option<hyper::ext::ReasonPhrase>,
    headers: HeadFields,
    /// HTTP/1.1 without `Connection: close`.
    keep_alive: bool,
    /// The `timeout` parameter of `Keep-Alive`: how long the handler keeps an idle connection.
    keep_alive_timeout: Option<Duration>,
    content_length: Option<u64>,
    /// Whether the response has `Transfer-Encoding: chunked`. Any other transfer coding is
    /// rejected while the head is parsed.
    chunked: bool,
}

/// The headers of a response head that the front end passes on.
enum HeadFields {
    /// Boxed, so that the head of the usual response, with lines, is small enough to move
    /// without a `memcpy` call.
    Map(Box<HeaderMap>),
    /// The lines of [`ResponseLines`].
    Lines { lines: Vec<u8>, has_date: bool },
}

enum Framing {
    Empty,
    Length(u64),
    Chunked,
    UntilClose,
}

/// Parses a complete response head at the start of `buffer`, returning its length and the
/// head with hop-by-hop headers removed. `None` means more bytes are needed. With
/// `header_lines`, the headers come as lines when no name occurs twice.
fn parse_head(
    buffer: &[u8],
    header_lines: bool,
) -> Result<Option<(usize, ResponseHead)>, SendError> {
    // Uninitialised slots: filling 128 empty headers on every response showed in profiles.
    let mut slots =
        [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut parsed = httparse::Response::new(&mut []);
    let config = httparse::ParserConfig::default();
    let length = match config.parse_response_with_uninit_headers(&mut parsed, buffer, &mut slots) {
        Ok(httparse::Status::Complete(length)) => length,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(error) => return Err(SendError::Invalid(error.to_string())),
    };

    let code = parsed.code.unwrap_or_default();
    // Status codes are three digits from 100 to 599 (RFC 9110, section 15).
    let status = StatusCode::from_u16(code)
        .ok()
        .filter(|_| code < 600)
        .ok_or_else(|| SendError::Invalid(format!("status code {code}")))?;
    // A reason phrase other than the standard one is kept, so that the front end sends it on
    // as the handler wrote it.
    let reason = parsed
        .reason
        .filter(|reason| status.canonical_reason() != Some(*reason))
        .and_then(|reason| hyper::ext::ReasonPhrase::try_from(reason.as_bytes()).ok());
    let http_1_1 = parsed.version == Some(1);
    let mut keep_alive = http_1_1;
    let mut keep_alive_timeout = None;
    let mut content_length: Option<u64> = None;
    let mut codings: Vec<&str> = Vec::new();
    let mut listed_in_connection: Vec<&str> = Vec::new();

    // Each header's role is found once, as the loops below and the lines read it.
    let mut roles = [Role::Other; MAX_HEADERS];
    for (field, role) in parsed.headers.iter().zip(roles.iter_mut()) {
        *role = role_of(field.name);
        if *role == Role::ContentLength {
            let value = parse_content_length(field.value)?;
            if content_length.is_some_and(|known| known != value) {
                return Err(SendError::Invalid(
                    "conflicting Content-Length values".into(),
                ));
            }
            content_length = Some(value);
        } else if *role == Role::TransferEncoding {
            let text = std::str::from_utf8(field.value)
                .map_err(|_| SendError::Invalid("Transfer-Encoding is not ASCII".into()))?;
            // A later header field continues the list of an earlier one.
            codings.extend(text.split(',').map(str::trim).filter(|c| !c.is_empty()));
        } else if *role == Role::Connection {
            let text = std::str::from_utf8(field.value).unwrap_or_default();
            for token in text.split(',').map(str::trim) {
                if token.eq_ignore_ascii_case("close") {
                    keep_alive = false;
                }
                listed_in_connection.push(token);
            }
        } else if *role == Role::KeepAlive {
            keep_alive_timeout = parse_keep_alive_timeout(field.value);
        }
    }

    // The client decodes `chunked` and nothing else, so any other coding, or `chunked`
    // applied twice (RFC 9112, section 6.1), cannot be passed on as a body. An HTTP/1.0
    // message with Transfer-Encoding has faulty framing by the same section.
    let chunked = match codings.as_slice() {
        [] => false,
        [only] if only.eq_ignore_ascii_case("chunked") && http_1_1 => true,
        _ => {
            return Err(SendError::Invalid(format!(
                "unsupported Transfer-Encoding `{}` in an HTTP/1.{} response",
                codings.join(", "),
                parsed.version.unwrap_or_default()
            )))
        }
    };
    // A message with both framings may be an attempt at request smuggling. It is read by its
    // Transfer-Encoding, and the connection is closed after it (RFC 9112, section 6.3).
    if chunked && content_length.is_some() {
        keep_alive = false;
    }

    // The headers the front end passes on to its caller, with their roles: neither framing
    // nor hop-by-hop, nor listed in `Connection`.
    let passed_on = |(field, role): &(&httparse::Header<'_>, &Role)| {
        matches!(role, Role::Other | Role::Date)
            && !listed_in_connection
                .iter()
                .any(|listed| eq_ignore_case(field.name, listed))
    };
    let fields = parsed.headers.iter().zip(roles.iter()).filter(passed_on);
    let headers = match header_lines {
        true => header_lines_of(fields.clone()),
        false => None,
    };
    let headers = match headers {
        Some(headers) => headers,
        None => {
            let fields = fields.map(|(field, _)| field);
            HeadFields::Map(Box::new(header_map_of(fields, parsed.headers.len())?))
        }
    };

    Ok(Some((
        length,
        ResponseHead {
            status,
            reason,
            headers,
            keep_alive,
            keep_alive_timeout,
            content_length,
            chunked,
        },
    )))
}

/// Writes the headers as the lines hyper would write for their map, or returns `None` when a
/// name occurs twice, because the map groups its values.
fn header_lines_of<'h, 'b: 'h>(
    fields: impl Iterator<Item = (&'h httparse::Header<'b>, &'h Role)> + Clone,
) -> Option<HeadFields> {
    let mut lines = Vec::with_capacity(256);
    let mut has_date = false;
    for (index, (field, role)) in fields.clone().enumerate() {
        let repeated = fields
            .clone()
            .take(index)
            .any(|(earlier, _)| eq_ignore_case(earlier.name, field.name));
        if repeated {
            return None;
        }
        has_date |= *role == Role::Date;
        let start = lines.len();
        lines.extend_from_slice(field.name.as_bytes());
        lines[start..].make_ascii_lowercase();
        lines.extend_from_slice(b": ");
        lines.extend_from_slice(field.value);
        lines.extend_from_slice(b"\r\n");
    }
    Some(HeadFields::Lines { lines, has_date })
}

/// Collects the headers into a map with room for `capacity` of them.
fn header_map_of<'h, 'b: 'h>(
    fields: impl Iterator<Item = &'h httparse::Header<'b>>,
    capacity: usize,
) -> Result<HeaderMap, SendError> {
    let mut headers = HeaderMap::with_capacity(capacity);
    for field in fields {
        let name = HeaderName::from_bytes(field.name.as_bytes())
            .map_err(|_| SendError::Invalid(format!("header name `{}`", field.name)))?;
        let value = HeaderValue::from_bytes(field.value)
            .map_err(|_| SendError::Invalid(format!("value of header `{}`", field.name)))?;
        headers.append(name, value);
    }
    Ok(headers)
}

/// Chooses how the response body is delimited (RFC 9112, section 6.3).
fn body_framing(head: &ResponseHead, head_request: bool) -> Result<Framing, SendError> {
    let status = head.status.as_u16();
    if head_request || status == 204 || status == 304 {
        return Ok(Framing::Empty);
    }
    // Transfer-Encoding overrides Content-Length.
    Ok(match (head.chunked, head.content_length) {
        (true, _) => Framing::Chunked,
        (false, Some(0)) => Framing::Empty,
        (false, Some(length)) => Framing::Length(length),
        (false, None) => Framing::UntilClose,
    })
}

fn parse_content_length(value: &[u8]) -> Result<u64, SendError> {
    // A list of identical values is allowed (RFC 9110, section 8.6).
    let mut result: Option<u64> = None;
    for item in value.split(|&byte| byte == b',') {
        let item = item.trim_ascii();
        let valid = !item.is_empty() && item.iter().all(u8::is_ascii_digit);
        let parsed = std::str::from_utf8(item)
            .ok()
            .filter(|_| valid)
            .and_then(|text| text.parse::<u64>().ok())
            .ok_or_else(|| {
                SendError::Invalid(format!(
                    "Content-Length `{}`",
                    String::from_utf8_lossy(value)
                ))
            })?;
        if result.is_some_and(|known| known != parsed) {
            return Err(SendError::Invalid(
                "conflicting Content-Length values".into(),
            ));
        }
        result = Some(parsed);
    }
    result.ok_or_else(|| SendError::Invalid("empty Content-Length".into()))
}

/// Reads the `timeout` parameter, in seconds, of a `Keep-Alive` header value such as
/// `timeout=5, max=1000`.
fn parse_keep_alive_timeout(value: &[u8]) -> Option<Duration> {
    let text = std::str::from_utf8(value).ok()?;
    text.split(',').find_map(|parameter| {
        let (name, seconds) = parameter.split_once('=')?;
        if !name.trim().eq_ignore_ascii_case("timeout") {
            return None;
        }
        seconds.trim().parse::<u64>().ok().map(Duration::from_secs)
    })
}

/// Returns how long a connection may idle when the handler closes idle connections after
/// `timeout`: a margin below it, so that reuse does not race the handler's close.
fn idle_limit_for(timeout: Duration) -> Duration {
    timeout
        .saturating_sub(Duration::from_secs(1))
        .max(timeout / 2)
        .min(IDLE_TIMEOUT)
}

/// Parses the hexadecimal size at the start of a chunk-size line, ignoring extensions.
fn parse_chunk_size(line: &[u8]) -> Result<u64, SendError> {
    let digits = line
        .split(|&byte| byte == b';')
        .next()
        .unwrap_or_default()
        .trim_ascii();
    let invalid = || SendError::Invalid(format!("chunk size `{}`", String::from_utf8_lossy(line)));
    // `from_str_radix` would also take a sign, which a chunk size never has.
    if digits.is_empty() || digits.len() > 15 || !digits.iter().all(u8::is_ascii_hexdigit) {
        return Err(invalid());
    }
    let text = std::str::from_utf8(digits).map_err(|_| invalid())?;
    u64::from_str_radix(text, 16).map_err(|_| invalid())
}

/// Writes the request line, headers and body into one buffer, so that a small request goes
/// out in one system call.
pub(crate) fn encode_request(port: u16, request: &OutboundRequest<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(512 + request.body.len());
    out.extend_from_slice(request.method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(request.target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");

    let listed_in_connection: Vec<&str> = request
        .headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .collect();

    let mut has_host = false;
    for (name, value) in request.headers {
        let name_text = name.as_str();
        // `Host` stays even when `Connection` lists it: without it the handler would see
        // another site's name.
        let listed = name != header::HOST
            && listed_in_connection
                .iter()
                .any(|listed| listed.eq_ignore_ascii_case(name_text));
        // `Expect` is dropped because the whole body goes out at once, so the client waits for
        // no `100 Continue`.
        let skip = FRAMING_HEADERS.contains(name)
            || name == header::EXPECT
            || HOP_BY_HOP.contains(&name_text)
            || listed
            || request.extra_headers.iter().any(|(extra, _)| extra == name);
        if skip {
            continue;
        }
        has_host |= name == header::HOST;
        write_header(&mut out, name, value);
    }
    for (name, value) in request.extra_headers {
        has_host |= name == header::HOST;
        write_header(&mut out, name, value);
    }
    if !has_host {
        out.extend_from_slice(format!("host: 127.0.0.1:{port}\r\n").as_bytes());
    }

    let has_payload_semantics =
        matches!(*request.method, Method::POST | Method::PUT | Method::PATCH);
    if !request.body.is_empty() || has_payload_semantics {
        out.extend_from_slice(format!("content-length: {}\r\n", request.body.len()).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(request.body);
    out
}

pub(crate) fn write_header(out: &mut Vec<u8>, name: &HeaderName, value: &HeaderValue) {
    out.extend_from_slice(name.as_str().as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Whether a request may be sent again after it may have reached the handler: a safe method
/// with no body, so that it carries no content a retry could duplicate.
fn is_replayable(request: &OutboundRequest<'_>) -> bool {
    request.body.is_empty()
        && matches!(
            *request.method,
            Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
        )
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// A raw HTTP/1.1 peer on loopback: for each accepted connection it reads one request head
    /// (and a `Content-Length` body), records it, and writes the next scripted reply. A reply
    /// of `None` closes the connection instead.
    struct Peer {
        port: u16,
        accepted: Arc<AtomicUsize>,
        requests: Arc<Mutex<Vec<String>>>,
    }

    async fn peer(replies: Vec<Option<&'static [u8]>>, close_after_each: bool) -> Peer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (accepted_in, requests_in) = (accepted.clone(), requests.clone());
        tokio::spawn(async move {
            let mut replies = replies.into_iter();
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                accepted_in.fetch_add(1, Ordering::SeqCst);
                loop {
                    let Some(request) = read_request(&mut stream).await else {
                        break;
                    };
                    requests_in.lock().unwrap().push(request);
                    match replies.next() {
                        Some(Some(reply)) => {
                            if stream.write_all(reply).await.is_err() {
                                break;
                            }
                        }
                        Some(None) | None => break,
                    }
                    if close_after_each {
                        break;
                    }
                }
            }
        });
        Peer {
            port,
            accepted,
            requests,
        }
    }

    async fn read_request(stream: &mut TcpStream) -> Option<String> {
        let mut data = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&data[..end]).to_string();
                let length = head
                    .lines()
                    .find_map(|line| line.strip_prefix("content-length: "))
                    .and_then(|value| value.parse::<usize>().ok())
                    .unwrap_or(0);
                while data.len() < end + 4 + length {
                    let read = stream.read(&mut chunk).await.ok()?;
                    if read == 0 {
                        return None;
                    }
                    data.extend_from_slice(&chunk[..read]);
                }
                return Some(String::from_utf8_lossy(&data[..end + 4 + length]).to_string());
            }
            let read = stream.read(&mut chunk).await.ok()?;
            if read == 0 {
                return None;
            }
            data.extend_from_slice(&chunk[..read]);
        }
    }

    fn get<'a>(
        headers: &'a HeaderMap,
        extra: &'a [(HeaderName, HeaderValue)],
    ) -> OutboundRequest<'a> {
        OutboundRequest {
            method: &Method::GET,
            target: "/api/function-b?code=k",
            headers,
            extra_headers: extra,
            body: b"",
        }
    }

    async fn send_get(client: &HandlerClient, port: u16) -> Result<Response<Bytes>, SendError> {
        let headers = HeaderMap::new();
        client.send(port, &get(&headers, &[])).await
    }

    /// Sends two GETs to a peer that replies `reply` to each, and checks both bodies and how
    /// many connections the peer accepted.
    async fn two_exchanges(
        reply: &'static [u8],
        close_after_each: bool,
        body: &[u8],
        accepted: usize,
    ) {
        let peer = peer(vec![Some(reply), Some(reply)], close_after_each).await;
        let client = HandlerClient::new(1024);

        for _ in 0..2 {
            let response = send_get(&client, peer.port).await.unwrap();
            assert_eq!(response.body().as_ref(), body);
            assert!(response.headers().get("transfer-encoding").is_none());
        }
        assert_eq!(peer.accepted.load(Ordering::SeqCst), accepted);
    }

    #[test]
    fn header_lines_equal_the_map() {
        let heads: [&[u8]; 5] = [
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nDate: x\r\n\r\n",
            b"HTTP/1.1 404 Nope\r\nX-A: 1\r\nConnection: x-a, close\r\nKeep-Alive: timeout=5\r\nX-B: caf\xc3\xa9\r\n\r\n",
            b"HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\nTrailer: x\r\nX-Empty:\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nX-Other: 2\r\nset-cookie: b=2\r\n\r\n",
            b"HTTP/1.1 200 OK\r\n\r\n",
        ];
        for head in heads {
            let (_, map_head) = parse_head(head, false).unwrap().unwrap();
            let (_, lines_head) = parse_head(head, true).unwrap().unwrap();
            let HeadFields::Map(map) = map_head.headers else {
                panic!("a map was asked for");
            };
            let map = *map;
            let mut expected = Vec::new();
            for (name, value) in &map {
                write_header(&mut expected, name, value);
            }
            match lines_head.headers {
                HeadFields::Lines { lines, has_date } => {
                    assert_eq!(
                        String::from_utf8_lossy(&lines),
                        String::from_utf8_lossy(&expected)
                    );
                    assert_eq!(has_date, map.contains_key(header::DATE));

                    let reply = Reply::Lines(ResponseLines {
                        status: StatusCode::OK,
                        reason: None,
                        lines,
                        has_date,
                        body: Bytes::new(),
                    });
                    assert_eq!(reply.into_response().headers(), &map);
                }
                // A name given twice keeps the map, which groups its values.
                HeadFields::Map(lines_map) => {
                    assert_eq!(*lines_map, map);
                    assert!(head
                        .windows(10)
                        .any(|window| window.eq_ignore_ascii_case(b"set-cookie")));
                }
            }
        }
    }

    #[tokio::test]
    async fn content_length_body_and_reuse() {
        let reply: &[u8] =
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-type: text/plain\r\n\r\n42";
        let peer = peer(vec![Some(reply), Some(reply)], false).await;
        let client = HandlerClient::new(1024);

        for _ in 0..2 {
            let response = send_get(&client, peer.port).await.unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            assert_eq!(response.body().as_ref(), b"42");
            assert_eq!(response.headers()["content-type"], "text/plain");
            assert!(response.headers().get("content-length").is_none());
        }
        assert_eq!(peer.accepted.load(Ordering::SeqCst), 1);
        let requests = peer.requests.lock().unwrap();
        assert!(requests[0].starts_with("GET /api/function-b?code=k HTTP/1.1\r\n"));
    }

    #[tokio::test]
    async fn response_in_single_bytes_is_read_whole() {
        // A handler may write its response in any number of pieces, on a fresh connection and
        // on a reused one whose buffer is empty.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let reply = b"HTTP/1.1 200 OK\r\nx-piece: 1\r\ncontent-length: 5\r\n\r\nhello";
            for _ in 0..2 {
                read_request(&mut stream).await.unwrap();
                for byte in reply {
                    stream.write_all(&[*byte]).await.unwrap();
                    stream.flush().await.unwrap();
                    tokio::task::yield_now().await;
                }
            }
        });
        let client = HandlerClient::new(1024);

        for _ in 0..2 {
            let response = send_get(&client, port).await.unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            assert_eq!(response.headers()["x-piece"], "1");
            assert_eq!(response.body().as_ref(), b"hello");
        }
    }

    #[tokio::test]
    async fn chunked_body_with_extensions_and_trailers() {
        let reply: &[u8] = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n\
            4;name=value\r\nFunc\r\nb\r\ntion B said\r\n0\r\nx-trailer: 1\r\n\r\n";
        two_exchanges(reply, false, b"Function B said", 1).await;
    }

    #[tokio::test]
    async fn close_delimited_body_is_not_reused() {
        let reply: &[u8] = b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nuntil the end";
        two_exchanges(reply, true, b"until the end", 2).await;
    }

    #[tokio::test]
    async fn interim_response_is_skipped() {
        let reply: &[u8] =
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\n\
            HTTP/1.1 201 Created\r\ncontent-length: 0\r\n\r\n";
        let peer = peer(vec![Some(reply)], false).await;
        let client = HandlerClient::new(1024);

        let response = send_get(&client, peer.port).await.unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        assert!(response.headers().get("link").is_none());
    }

    #[tokio::test]
    async fn body_goes_on_after_100_continue() {
        // The handler responds to the head with 100 Continue before it reads the body, as
        // Node's and Python's servers do for `Expect: 100-continue`. The body is larger than the
        // socket buffers, so the client is still writing when the 100 arrives.
        const BODY: usize = 8 * 1024 * 1024;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let handler = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut received = Vec::new();
            let mut chunk = vec![0u8; 64 * 1024];
            let head_end = loop {
                let count = stream.read(&mut chunk).await.unwrap();
                received.extend_from_slice(&chunk[..count]);
                if let Some(at) = received.windows(4).position(|w| w == b"\r\n\r\n") {
                    break at + 4;
                }
            };
            let head = String::from_utf8_lossy(&received[..head_end]).to_lowercase();
            stream
                .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                .await
                .unwrap();
            let mut body = received.len() - head_end;
            while body < BODY {
                body += stream.read(&mut chunk).await.unwrap();
            }
            stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                .await
                .unwrap();
            head
        });

        let client = HandlerClient::new(1024);
        let body = vec![b'x'; BODY];
        let mut headers = HeaderMap::new();
        headers.insert(header::EXPECT, HeaderValue::from_static("100-continue"));
        let request = OutboundRequest {
            method: &Method::POST,
            target: "/upload",
            headers: &headers,
            extra_headers: &[],
            body: &body,
        };
        let sent = tokio::time::timeout(Duration::from_secs(20), client.send(port, &request));
        let response = sent.await.expect("no hang").expect("response");
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.body().as_ref(), b"ok");
        let head = handler.await.unwrap();
        assert!(!head.contains("expect:"), "{head}");
    }

    #[tokio::test]
    async fn head_and_no_content_have_no_body() {
        let head_reply: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n";
        let no_content: &[u8] = b"HTTP/1.1 204 No Content\r\n\r\n";
        let peer = peer(vec![Some(head_reply), Some(no_content)], false).await;
        let client = HandlerClient::new(1024);
        let headers = HeaderMap::new();

        let head = OutboundRequest {
            method: &Method::HEAD,
            ..get(&headers, &[])
        };
        let response = client.send(peer.port, &head).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert!(response.body().is_empty());
        // A response to HEAD keeps the length of the body it describes.
        assert_eq!(response.headers()["content-length"], "10");

        let response = send_get(&client, peer.port).await.unwrap();
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
        assert_eq!(peer.accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn idle_connection_closed_by_peer_is_replaced() {
        let reply: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\nx";
        // The peer replies once per connection and then closes it, as a handler with a short
        // keep-alive timeout does.
        let peer = peer(vec![Some(reply), Some(reply)], true).await;
        let client = HandlerClient::new(1024);
        let headers = HeaderMap::new();

        send_get(&client, peer.port).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        // This passes only because the closed connection is noticed before the request is
        // written: a written request is never sent twice.
        let post = OutboundRequest {
            method: &Method::POST,
            body: b"payload",
            ..get(&headers, &[])
        };
        let response = client.send(peer.port, &post).await.unwrap();
        assert_eq!(response.body().as_ref(), b"x");
        assert_eq!(peer.accepted.load(Ordering::SeqCst), 2);
        let requests = peer.requests.lock().unwrap();
        assert_eq!(requests.len(), 2, "the POST was sent once");
        assert!(requests[1].starts_with("POST /api/function-b?code=k HTTP/1.1\r\n"));
        assert!(requests[1].ends_with("\r\n\r\npayload"));
    }

    #[tokio::test]
    async fn post_is_not_resent_after_close() {
        let reply: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\nx";
        // The second request reaches the peer, which closes without a reply, as a handler
        // that exits while handling it.
        let peer = peer(vec![Some(reply), None, Some(reply)], false).await;
        let client = HandlerClient::new(1024);
        let headers = HeaderMap::new();

        send_get(&client, peer.port).await.unwrap();
        let post = OutboundRequest {
            method: &Method::POST,
            body: b"payload",
            ..get(&headers, &[])
        };
        let error = client.send(peer.port, &post).await.unwrap_err();
        assert!(matches!(error, SendError::Closed), "{error}");
        assert_eq!(peer.requests.lock().unwrap().len(), 2);
        assert_eq!(peer.accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn get_is_resent_once_after_close() {
        let reply: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\nx";
        let peer = peer(vec![Some(reply), None, Some(reply)], false).await;
        let client = HandlerClient::new(1024);

        send_get(&client, peer.port).await.unwrap();
        let response = send_get(&client, peer.port).await.unwrap();
        assert_eq!(response.body().as_ref(), b"x");
        assert_eq!(peer.requests.lock().unwrap().len(), 3);
        assert_eq!(peer.accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn closed_without_response_fails() {
        let peer = peer(vec![None], false).await;
        let client = HandlerClient::new(1024);

        let error = send_get(&client, peer.port).await.unwrap_err();
        assert!(matches!(error, SendError::Closed), "{error}");
    }

    #[tokio::test]
    async fn refused_connection_is_connect_error() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let client = HandlerClient::new(1024);

        let error = send_get(&client, port).await.unwrap_err();
        assert!(matches!(error, SendError::Connect { .. }), "{error}");
    }

    #[tokio::test]
    async fn oversized_bodies_fail() {
        let by_length: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 11\r\n\r\n01234567890";
        let chunked: &[u8] = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n\
            6\r\n012345\r\n6\r\n678901\r\n0\r\n\r\n";
        let until_close: &[u8] = b"HTTP/1.1 200 OK\r\n\r\n01234567890";
        for reply in [by_length, chunked, until_close] {
            let peer = peer(vec![Some(reply)], true).await;
            let client = HandlerClient::new(10);
            let error = send_get(&client, peer.port).await.unwrap_err();
            assert!(
                matches!(error, SendError::TooLarge { limit: 10 }),
                "{error}"
            );
        }
    }

    #[tokio::test]
    async fn invalid_responses_fail() {
        let cases: [&[u8]; 10] = [
            b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\nxx",
            b"HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
            b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n\r\n",
            b"NOT HTTP\r\n\r\n",
            b"HTTP/1.0 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked, chunked\r\n\r\n0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\nxx",
            b"HTTP/1.1 600 Unknown\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n+2\r\nok\r\n0\r\n\r\n",
        ];
        for reply in cases {
            let peer = peer(vec![Some(reply)], true).await;
            let client = HandlerClient::new(1024);
            let error = send_get(&client, peer.port).await.unwrap_err();
            assert!(
                matches!(error, SendError::Invalid(_)),
                "{}: {error}",
                String::from_utf8_lossy(reply)
            );
        }
    }

    #[tokio::test]
    async fn both_framings_close_the_connection() {
        let reply: &[u8] =
            b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\ntransfer-encoding: chunked\r\n\r\n\
            2\r\nok\r\n0\r\n\r\n";
        let peer = peer(vec![Some(reply), Some(reply)], false).await;
        let client = HandlerClient::new(1024);

        for _ in 0..2 {
            let response = send_get(&client, peer.port).await.unwrap();
            assert_eq!(response.body().as_ref(), b"ok");
        }
        assert_eq!(peer.accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn response_hop_by_hop_headers_are_removed() {
        let reply: &[u8] = b"HTTP/1.1 200 OK\r\nconnection: x-private, keep-alive\r\n\
            keep-alive: timeout=5\r\nx-private: secret\r\nx-public: kept\r\ncontent-length: 0\r\n\r\n";
        let peer = peer(vec![Some(reply)], false).await;
        let client = HandlerClient::new(1024);

        let response = send_get(&client, peer.port).await.unwrap();
        for removed in ["connection", "keep-alive", "x-private"] {
            assert!(response.headers().get(removed).is_none(), "{removed}");
        }
        assert_eq!(response.headers()["x-public"], "kept");
    }

    #[test]
    fn request_encoding_strips_hop_by_hop() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::HOST,
            HeaderValue::from_static("app.azurewebsites.net"),
        );
        headers.insert(header::CONNECTION, HeaderValue::from_static("x-hop"));
        headers.insert("x-hop", HeaderValue::from_static("1"));
        headers.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("999"));
        headers.insert(header::USER_AGENT, HeaderValue::from_static("caller"));
        headers.insert("x-kept", HeaderValue::from_static("yes"));
        let extra = [(header::USER_AGENT, HeaderValue::from_static("host"))];
        let request = OutboundRequest {
            method: &Method::POST,
            target: "/api/f?a=1",
            headers: &headers,
            extra_headers: &extra,
            body: b"abc",
        };

        let text = String::from_utf8(encode_request(7071, &request)).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let lines: Vec<&str> = head.split("\r\n").collect();
        assert_eq!(lines[0], "POST /api/f?a=1 HTTP/1.1");
        assert!(lines.contains(&"host: app.azurewebsites.net"));
        assert!(lines.contains(&"x-kept: yes"));
        assert!(lines.contains(&"user-agent: host"));
        assert!(lines.contains(&"content-length: 3"));
        let absent = [
            "connection",
            "x-hop",
            "transfer-encoding",
            "user-agent: caller",
            "content-length: 999",
        ];
        for prefix in absent {
            assert!(
                !lines.iter().any(|line| line.starts_with(prefix)),
                "{prefix}"
            );
        }
        assert_eq!(body, "abc");
    }

    #[test]
    fn request_encoding_adds_host_when_missing() {
        let headers = HeaderMap::new();
        let text = String::from_utf8(encode_request(7071, &get(&headers, &[]))).unwrap();
        assert!(text.contains("\r\nhost: 127.0.0.1:7071\r\n"));
        assert!(!text.contains("content-length"));
    }

    #[test]
    fn roles_follow_the_header_lists() {
        for name in HOP_BY_HOP {
            for spelled in [name.to_owned(), name.to_ascii_uppercase()] {
                let role = role_of(&spelled);
                assert_ne!(role, Role::Other, "{spelled}");
                assert_ne!(role, Role::Date, "{spelled}");
            }
        }
        assert_eq!(role_of("Content-Length"), Role::ContentLength);
        assert_eq!(role_of("DATE"), Role::Date);
        assert_eq!(role_of("Transfer-Encoding"), Role::TransferEncoding);
        assert_eq!(role_of("Connection"), Role::Connection);
        assert_eq!(role_of("Keep-Alive"), Role::KeepAlive);
        for other in [
            "content-type",
            "dates",
            "tee",
            "upgrades",
            "x-connection",
            "",
        ] {
            assert_eq!(role_of(other), Role::Other, "{other}");
        }
    }

    #[test]
    fn chunk_size_cases() {
        assert_eq!(parse_chunk_size(b"1a").unwrap(), 26);
        assert_eq!(parse_chunk_size(b"0").unwrap(), 0);
        assert_eq!(parse_chunk_size(b"A ; ext=1").unwrap(), 10);
        for invalid in [&b""[..], b"g", b"-1", b"1000000000000000"] {
            assert!(parse_chunk_size(invalid).is_err(), "{invalid:?}");
        }
    }

    /// Accepts one connection, reads only the request head, and replies `reply` without
    /// reading the body. With `close`, it closes the socket right after the reply. Returns
    /// the port and a counter of request heads seen.
    async fn early_replier(reply: &'static [u8], close: bool) -> (u16, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let heads = Arc::new(AtomicUsize::new(0));
        let heads_in = heads.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                let heads_in = heads_in.clone();
                tokio::spawn(async move {
                    let mut data = Vec::new();
                    let mut chunk = [0u8; 4096];
                    while !data.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(read) => data.extend_from_slice(&chunk[..read]),
                        }
                    }
                    heads_in.fetch_add(1, Ordering::SeqCst);
                    let _ = stream.write_all(reply).await;
                    if close {
                        return;
                    }
                    tokio::time::sleep(Duration::from_secs(30)).await;
                });
            }
        });
        (port, heads)
    }

    fn large_post<'a>(headers: &'a HeaderMap, body: &'a [u8]) -> OutboundRequest<'a> {
        OutboundRequest {
            method: &Method::POST,
            body,
            ..get(headers, &[])
        }
    }

    #[tokio::test]
    async fn early_response_stops_the_write() {
        let reply: &[u8] = b"HTTP/1.1 413 Content Too Large\r\ncontent-length: 0\r\n\r\n";
        let (port, heads) = early_replier(reply, false).await;
        let client = HandlerClient::new(1024);
        let headers = HeaderMap::new();
        let body = vec![b'x'; 16 * 1024 * 1024];

        let response = tokio::time::timeout(
            Duration::from_secs(10),
            client.send(port, &large_post(&headers, &body)),
        )
        .await
        .expect("the client must not wait for the handler to read the body")
        .unwrap();
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(heads.load(Ordering::SeqCst), 1);
        assert!(
            client.lock_idle().is_empty(),
            "a half-written connection is not reused"
        );
    }

    #[tokio::test]
    async fn post_is_not_resent_after_early_close() {
        let reply: &[u8] =
            b"HTTP/1.1 413 Content Too Large\r\nconnection: close\r\ncontent-length: 0\r\n\r\n";
        let ok: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
        let (port, heads) = early_replier(reply, true).await;
        let client = HandlerClient::new(1024);
        let headers = HeaderMap::new();
        // An idle connection from an earlier exchange, so that the POST goes out on a reused
        // one, where retries are considered.
        let warm_up = peer(vec![Some(ok)], false).await;
        send_get(&client, warm_up.port).await.unwrap();

        let body = vec![b'x'; 16 * 1024 * 1024];
        for _ in 0..3 {
            let _ = client.send(port, &large_post(&headers, &body)).await;
        }
        assert_eq!(
            heads.load(Ordering::SeqCst),
            3,
            "each POST reached the handler once"
        );
    }

    #[tokio::test]
    async fn get_is_retried_after_racing_close() {
        // Each reply claims keep-alive, and then the peer closes at once: the next request
        // on the pooled connection races the close.
        let reply: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
        let peer = peer(vec![Some(reply); 40], true).await;
        let client = HandlerClient::new(1024);

        for round in 0..20 {
            let response = send_get(&client, peer.port).await;
            assert!(response.is_ok(), "round {round}: {:?}", response.err());
        }
    }

    #[tokio::test]
    async fn chunk_lines_may_end_in_bare_lf() {
        let reply: &[u8] =
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\nok\n3\r\n 42\r\n0\n\n";
        two_exchanges(reply, false, b"ok 42", 1).await;
    }

    #[test]
    fn keep_alive_timeout_cases() {
        assert_eq!(
            parse_keep_alive_timeout(b"timeout=5, max=1000"),
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            parse_keep_alive_timeout(b"max=3, Timeout = 2"),
            Some(Duration::from_secs(2))
        );
        assert_eq!(parse_keep_alive_timeout(b"max=3"), None);
        assert_eq!(parse_keep_alive_timeout(b"timeout=soon"), None);

        assert_eq!(
            idle_limit_for(Duration::from_secs(5)),
            Duration::from_secs(4)
        );
        assert_eq!(
            idle_limit_for(Duration::from_secs(1)),
            Duration::from_millis(500)
        );
        assert_eq!(idle_limit_for(Duration::from_secs(600)), IDLE_TIMEOUT);
    }

    #[tokio::test]
    async fn custom_reason_phrase_is_kept() {
        let custom: &[u8] = b"HTTP/1.1 299 Custom Reason Here\r\ncontent-length: 0\r\n\r\n";
        let standard: &[u8] = b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n";
        let peer = peer(vec![Some(custom), Some(standard)], false).await;
        let client = HandlerClient::new(1024);

        let response = send_get(&client, peer.port).await.unwrap();
        let reason = response
            .extensions()
            .get::<hyper::ext::ReasonPhrase>()
            .expect("reason");
        assert_eq!(reason.as_bytes(), b"Custom Reason Here");

        let response = send_get(&client, peer.port).await.unwrap();
        assert!(response
            .extensions()
            .get::<hyper::ext::ReasonPhrase>()
            .is_none());
    }
}
