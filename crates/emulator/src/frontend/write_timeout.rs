//! A bound on how long the front end waits to write to a caller that does not read.
//!
//! A caller that sends requests and never reads the responses fills the socket's send buffer,
//! and every later write waits. Without a bound, the connection, its buffers and its thread's
//! connection count would stay until the caller left. hyper's HTTP/1 server (1.x) bounds only
//! the read of a request head (`header_read_timeout`), so the bound sits in the IO that both
//! of the front end's paths write through.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// Maximum time a write to a caller may wait without progress before the front end closes
/// the connection. Azure documents no such limit for its front end. Microsoft Learn
/// ("Azure Functions HTTP trigger", Limits) documents 230 seconds as the time a function may
/// take to respond, because of the default idle timeout of Azure Load Balancer, and a write
/// that makes no progress leaves the connection just as idle.
// NOTE: applying the 230 seconds to writes is the emulator's reading, not a documented
// behaviour of Azure's front ends.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(230);

/// The error of a write to a caller that made no progress within the write timeout.
#[derive(Debug, thiserror::Error)]
#[error("write to the caller timed out after {} ms without progress, because the caller does not read", .0.as_millis())]
pub(crate) struct WriteTimedOut(Duration);

/// Returns whether `error`, or an error it was caused by, is a [`WriteTimedOut`].
pub(crate) fn is_write_timeout(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(current) = cause {
        let inner = current
            .downcast_ref::<io::Error>()
            .and_then(io::Error::get_ref);
        if current.is::<WriteTimedOut>() || inner.is_some_and(|inner| inner.is::<WriteTimedOut>()) {
            return true;
        }
        cause = current.source();
    }
    false
}

/// A caller's connection whose writes fail with [`WriteTimedOut`] once one waits without
/// progress for longer than `limit`. Reads pass through unbounded: the head timeout bounds
/// them above this layer.
pub(crate) struct WriteTimeout<I> {
    io: I,
    peer: SocketAddr,
    limit: Duration,
    /// The deadline of the pending write, allocated at the first write that waits, so that a
    /// connection whose writes never wait costs no timer.
    timer: Option<Pin<Box<Sleep>>>,
    /// Whether `timer` runs for the write now pending.
    armed: bool,
    /// Set once the limit passed. Every later write fails at once, so the connection cannot
    /// send the rest of a response after a gap.
    timed_out: bool,
}

impl<I> WriteTimeout<I> {
    pub(crate) fn new(io: I, peer: SocketAddr, limit: Duration) -> Self {
        WriteTimeout {
            io,
            peer,
            limit,
            timer: None,
            armed: false,
            timed_out: false,
        }
    }

    /// Passes on the outcome of one write operation on `io`. A ready outcome is progress and
    /// disarms the timer. A pending one arms it, unless an earlier pending write of the same
    /// wait armed it, and fails with [`WriteTimedOut`] once the timer fires.
    fn bound<T>(
        &mut self,
        context: &mut Context<'_>,
        outcome: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if outcome.is_ready() {
            self.armed = false;
            return outcome;
        }
        // The clock is read only when a wait starts, not on every poll while it lasts.
        let timer = match &mut self.timer {
            Some(timer) => {
                if !self.armed {
                    timer.as_mut().reset(Instant::now() + self.limit);
                }
                timer
            }
            None => self.timer.insert(Box::pin(tokio::time::sleep_until(
                Instant::now() + self.limit,
            ))),
        };
        self.armed = true;
        if timer.as_mut().poll(context).is_pending() {
            return Poll::Pending;
        }
        self.armed = false;
        self.timed_out = true;
        tracing::debug!(
            peer = %self.peer,
            limit_ms = self.limit.as_millis(),
            "write to the caller timed out because it does not read the response, so the front end closes the connection"
        );
        Poll::Ready(Err(self.timed_out_error()))
    }

    fn timed_out_error(&self) -> io::Error {
        io::Error::new(io::ErrorKind::TimedOut, WriteTimedOut(self.limit))
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for WriteTimeout<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffer: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(context, buffer)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for WriteTimeout<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffer: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.timed_out {
            return Poll::Ready(Err(self.timed_out_error()));
        }
        let outcome = Pin::new(&mut self.io).poll_write(context, buffer);
        self.bound(context, outcome)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffers: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.timed_out {
            return Poll::Ready(Err(self.timed_out_error()));
        }
        let outcome = Pin::new(&mut self.io).poll_write_vectored(context, buffers);
        self.bound(context, outcome)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.timed_out {
            return Poll::Ready(Err(self.timed_out_error()));
        }
        let outcome = Pin::new(&mut self.io).poll_flush(context);
        self.bound(context, outcome)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.timed_out {
            return Poll::Ready(Err(self.timed_out_error()));
        }
        let outcome = Pin::new(&mut self.io).poll_shutdown(context);
        self.bound(context, outcome)
    }
}
