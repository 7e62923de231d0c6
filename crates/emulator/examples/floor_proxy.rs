//! A lower bound for the front end's cost per request, for `bench/frontend.sh`.
//!
//! It forwards each request to the handler with the headers the front end and the Functions
//! host add (`X-Forwarded-For`, `X-Forwarded-Proto`, invocation id, host version, user agent).
//! It does nothing else: no access restriction, no key check, no decision record, no body,
//! and one handler connection per caller connection. So it measures what tokio, the kernel and
//! the added headers cost on a given machine. The rest of the front end's cost is its own work.
//!
//! It is a measuring instrument, not a proxy to use: requests with a body, chunked responses
//! and anything beyond `Content-Length` framing close the connection.
//!
//! Usage: `floor_proxy <listen address> <handler port>`

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const BUFFER_BYTES: usize = 16 * 1024;
const MAX_HEADERS: usize = 64;

#[tokio::main]
async fn main() -> ExitCode {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    let (listen, handler_port) = match arguments.as_slice() {
        [listen, port] => match (listen.parse::<SocketAddr>(), port.parse::<u16>()) {
            (Ok(listen), Ok(port)) => (listen, port),
            _ => return usage(&format!("invalid address or port: {listen} {port}")),
        },
        _ => return usage("expected two arguments"),
    };
    let listener = match TcpListener::bind(listen).await {
        Ok(listener) => listener,
        Err(error) => return usage(&format!("cannot listen on {listen}: {error}")),
    };
    loop {
        let Ok((caller, peer)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            // The connection ends on the first error; an instrument has nothing to report.
            let _ = serve(caller, peer, handler_port).await;
        });
    }
}

fn usage(problem: &str) -> ExitCode {
    eprintln!("floor_proxy: {problem}\nusage: floor_proxy <listen address> <handler port>");
    ExitCode::from(2)
}

/// The reason a connection ended.
#[derive(Debug)]
enum End {
    Io,
    Unsupported,
}

impl From<std::io::Error> for End {
    fn from(_: std::io::Error) -> End {
        End::Io
    }
}

async fn serve(mut caller: TcpStream, peer: SocketAddr, handler_port: u16) -> Result<(), End> {
    caller.set_nodelay(true)?;
    let mut handler = TcpStream::connect(("127.0.0.1", handler_port)).await?;
    handler.set_nodelay(true)?;

    let mut request = vec![0u8; BUFFER_BYTES];
    let mut response = vec![0u8; BUFFER_BYTES];
    let mut outbound = Vec::with_capacity(1024);
    let mut filled = 0;
    loop {
        // Read until one whole request head is in the buffer.
        let head_length = loop {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut parsed = httparse::Request::new(&mut headers);
            match parsed.parse(&request[..filled]) {
                Ok(httparse::Status::Complete(length)) => {
                    let has_body = parsed.headers.iter().any(|header| {
                        header.name.eq_ignore_ascii_case("transfer-encoding")
                            || (header.name.eq_ignore_ascii_case("content-length")
                                && header.value != b"0")
                    });
                    if has_body {
                        return Err(End::Unsupported);
                    }
                    write_outbound(&mut outbound, &parsed, peer);
                    break length;
                }
                Ok(httparse::Status::Partial) if filled < request.len() => {}
                _ => return Err(End::Unsupported),
            }
            let count = caller.read(&mut request[filled..]).await?;
            if count == 0 {
                return Ok(());
            }
            filled += count;
        };
        request.copy_within(head_length..filled, 0);
        filled -= head_length;

        handler.write_all(&outbound).await?;
        let length = read_response(&mut handler, &mut response).await?;
        caller.write_all(&response[..length]).await?;
    }
}

/// Writes the request for the handler: the caller's head, then the added headers.
fn write_outbound(out: &mut Vec<u8>, request: &httparse::Request<'_, '_>, peer: SocketAddr) {
    out.clear();
    out.extend_from_slice(request.method.unwrap_or("GET").as_bytes());
    out.push(b' ');
    out.extend_from_slice(request.path.unwrap_or("/").as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for header in request.headers.iter() {
        out.extend_from_slice(header.name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(header.value);
        out.extend_from_slice(b"\r\n");
    }
    // `io::Write` for `Vec<u8>` never returns an error.
    let _ = write!(out, "x-forwarded-for: {}\r\n", peer.ip());
    out.extend_from_slice(b"x-forwarded-proto: http\r\nx-azure-functions-invocationid: ");
    let id: [u8; 16] = rand::random();
    for byte in id {
        let _ = write!(out, "{byte:02x}");
    }
    out.extend_from_slice(
        b"\r\nx-azure-functions-hostversion: 4.x-subnetlock\r\n\
          user-agent: Azure-Functions-Host/4.x-subnetlock\r\n\r\n",
    );
}

/// Reads one response with a `Content-Length` body into `buffer`; returns its length.
async fn read_response(handler: &mut TcpStream, buffer: &mut [u8]) -> Result<usize, End> {
    let mut filled = 0;
    loop {
        let count = handler.read(&mut buffer[filled..]).await?;
        if count == 0 {
            return Err(End::Io);
        }
        filled += count;
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut parsed = httparse::Response::new(&mut headers);
        match parsed.parse(&buffer[..filled]) {
            Ok(httparse::Status::Complete(head_length)) => {
                let body_length = parsed
                    .headers
                    .iter()
                    .find(|header| header.name.eq_ignore_ascii_case("content-length"))
                    .and_then(|header| std::str::from_utf8(header.value).ok())
                    .and_then(|value| value.trim().parse::<usize>().ok())
                    .ok_or(End::Unsupported)?;
                let total = head_length + body_length;
                if total > buffer.len() {
                    return Err(End::Unsupported);
                }
                if filled >= total {
                    return Ok(total);
                }
            }
            Ok(httparse::Status::Partial) if filled < buffer.len() => {}
            _ => return Err(End::Unsupported),
        }
    }
}
