//! The front end's threads: by default one per CPU core, each with a single-threaded runtime
//! that serves its connections to the end, and a count of live connections per thread that
//! decides which thread serves a new connection.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

use super::{accept, serve_accepted, FrontEnd};

/// A connection on its way to the thread that will serve it.
struct Handoff {
    stream: std::net::TcpStream,
    peer: SocketAddr,
    tls: Option<tokio_rustls::TlsAcceptor>,
    live: Live,
}

/// Shared state of the front-end threads: live connections per thread, and each thread's inbox
/// of connections handed to it.
pub(crate) struct Balance {
    live: Box<[AtomicUsize]>,
    inboxes: Vec<mpsc::UnboundedSender<Handoff>>,
}

impl Balance {
    /// Live connections per thread, in thread order.
    #[cfg(test)]
    fn live(&self) -> Vec<usize> {
        self.live
            .iter()
            .map(|count| count.load(Ordering::Relaxed))
            .collect()
    }

    /// Counts a new connection for the thread that serves the fewest, `this_thread` when it is
    /// among them.
    ///
    /// Every thread is woken for a connection in the listening socket, and the one that runs
    /// first accepts every connection queued there. wrk opens its 64 connections at once, and
    /// one thread took all of them in some runs, so that the other core served none. Counting
    /// at the pick, not when the connection starts, keeps a burst from going to one thread.
    fn pick(self: &Arc<Self>, this_thread: usize) -> Live {
        let mut index = this_thread;
        let mut least = self.live[this_thread].load(Ordering::Relaxed);
        for (other, count) in self.live.iter().enumerate() {
            let count = count.load(Ordering::Relaxed);
            if count < least {
                (index, least) = (other, count);
            }
        }
        self.live[index].fetch_add(1, Ordering::Relaxed);
        Live {
            balance: self.clone(),
            index,
        }
    }
}

/// One live connection of thread `index`, counted until dropped.
struct Live {
    balance: Arc<Balance>,
    index: usize,
}

impl Drop for Live {
    fn drop(&mut self) {
        self.balance.live[self.index].fetch_sub(1, Ordering::Relaxed);
    }
}

/// Serves `listeners` on `threads` threads until `shutdown` changes or its sender is dropped,
/// and returns what the threads share.
///
/// Each thread runs a single-threaded runtime that accepts connections on every listener and
/// serves each connection to the end, as nginx's worker processes do. A new connection goes to
/// the thread with the fewest live connections (see [`Balance::pick`]). A request is never
/// handed between threads, and the handler connections a thread opens stay with it
/// (`HandlerClient` keeps idle connections per thread). On the multi-threaded runtime the
/// front end reached 82 % of nginx's requests per second; on one thread per core, 98 %. With
/// connections spread by [`Balance::pick`], runs gave 93 to 103 % (docs/benchmarks.md).
///
/// Returns the threads' shared state and their handles: a thread ends once its runtime has
/// dropped its connections, and with them pushed their last records. When a thread fails to
/// start, the threads started before it stop once `shutdown`'s sender is dropped.
pub(crate) fn spawn_threads(
    threads: NonZeroUsize,
    listeners: Vec<(TcpListener, Option<tokio_rustls::TlsAcceptor>)>,
    front_end: Arc<FrontEnd>,
    shutdown: watch::Receiver<bool>,
) -> std::io::Result<(Arc<Balance>, Vec<std::thread::JoinHandle<()>>)> {
    let listeners = listeners
        .into_iter()
        .map(|(listener, tls)| Ok((listener.into_std()?, tls)))
        .collect::<std::io::Result<Vec<_>>>()?;
    let (inboxes, receivers): (Vec<_>, Vec<_>) = (0..threads.get())
        .map(|_| mpsc::unbounded_channel())
        .unzip();
    let balance = Arc::new(Balance {
        live: (0..threads.get()).map(|_| AtomicUsize::new(0)).collect(),
        inboxes,
    });

    let mut handles = Vec::with_capacity(threads.get());
    for (index, mut inbox) in receivers.into_iter().enumerate() {
        let own = listeners
            .iter()
            .map(|(listener, tls)| Ok((listener.try_clone()?, tls.clone())))
            .collect::<std::io::Result<Vec<_>>>()?;
        let (front_end, balance, mut shutdown) =
            (front_end.clone(), balance.clone(), shutdown.clone());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handle = std::thread::Builder::new()
            .name(format!("front-end-{index}"))
            .spawn(move || {
                runtime.block_on(async move {
                    for (listener, tls) in own {
                        match TcpListener::from_std(listener) {
                            Ok(listener) => {
                                tokio::spawn(accept_loop(
                                    listener,
                                    tls,
                                    index,
                                    balance.clone(),
                                    front_end.clone(),
                                    shutdown.clone(),
                                ));
                            }
                            Err(error) => {
                                tracing::error!(%error, "front-end thread failed to register a listener with its runtime")
                            }
                        }
                    }
                    // Dropping the runtime when this returns ends the thread's connections.
                    loop {
                        let handoff = tokio::select! {
                            handoff = inbox.recv() => handoff,
                            _ = shutdown.changed() => None,
                        };
                        let Some(handoff) = handoff else { return };
                        match TcpStream::from_std(handoff.stream) {
                            Ok(stream) => start(stream, handoff.peer, handoff.tls, handoff.live, &front_end),
                            Err(error) => {
                                tracing::debug!(%error, peer = %handoff.peer, "front-end thread failed to register a connection")
                            }
                        }
                    }
                });
            })?;
        handles.push(handle);
    }
    Ok((balance, handles))
}

/// Accepts connections on `listener` for thread `this_thread`, and serves each one here or
/// hands it to the thread with the fewest live connections.
async fn accept_loop(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    this_thread: usize,
    balance: Arc<Balance>,
    front_end: Arc<FrontEnd>,
    mut shutdown: watch::Receiver<bool>,
) {
    while let Some((stream, peer)) = accept(&listener, &mut shutdown).await {
        let live = balance.pick(this_thread);
        if live.index == this_thread {
            start(stream, peer, tls.clone(), live, &front_end);
            continue;
        }
        // The stream leaves this thread's reactor and joins the other thread's.
        match stream.into_std() {
            Ok(stream) => {
                let target = live.index;
                let handoff = Handoff {
                    stream,
                    peer,
                    tls: tls.clone(),
                    live,
                };
                // Only a thread that has stopped drops its inbox, and then the front end is
                // shutting down: the connection is closed.
                let _ = balance.inboxes[target].send(handoff);
            }
            Err(error) => {
                tracing::debug!(%error, %peer, "front end failed to hand a connection over")
            }
        }
    }
}

/// Serves a connection on the current thread, counted in `live` until it ends.
fn start(
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<tokio_rustls::TlsAcceptor>,
    live: Live,
    front_end: &Arc<FrontEnd>,
) {
    let front_end = front_end.clone();
    tokio::spawn(async move {
        serve_accepted(stream, peer, tls, front_end).await;
        drop(live);
    });
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use super::*;

    fn empty_front_end() -> Arc<FrontEnd> {
        Arc::new(crate::frontend::tests::empty_front_end())
    }

    /// Binds a listener and opens `count` connections that wait in its queue before any
    /// thread runs, as wrk's do when it opens them all at once.
    fn queued_connections(count: usize) -> (std::net::TcpListener, Vec<std::net::TcpStream>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let address = listener.local_addr().unwrap();
        let streams = (0..count)
            .map(|_| std::net::TcpStream::connect(address).unwrap())
            .collect();
        (listener, streams)
    }

    /// Sends one request on `stream` and reads the response head, so that the connection is
    /// known to be served.
    fn round_trip(stream: &mut impl ReadWrite) -> String {
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: unknown.azurewebsites.net\r\n\r\n")
            .unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            assert_eq!(
                stream.read(&mut byte).unwrap(),
                1,
                "connection closed early"
            );
            head.push(byte[0]);
        }
        String::from_utf8_lossy(&head).into_owned()
    }

    trait ReadWrite: Read + Write {}
    impl<T: Read + Write> ReadWrite for T {}

    /// Waits until the threads of `balance` count `expected` live connections in all.
    fn wait_for_live(balance: &Balance, expected: usize) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while balance.live().iter().sum::<usize>() != expected {
            assert!(std::time::Instant::now() < deadline, "{:?}", balance.live());
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    /// Returns a TLS client configuration that trusts only `ca`.
    fn client_trusting(ca: &crate::tls::LocalCa) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        for certificate in rustls_pemfile::certs(&mut ca.ca_pem().as_bytes()) {
            roots.add(certificate.unwrap()).unwrap();
        }
        let provider = Arc::new(crate::tls::ring_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        Arc::new(config)
    }

    #[test]
    fn tls_handshake_follows_handoff() {
        // As in the burst below, one thread may accept every queued connection, and the
        // connections it hands over reach the other thread before their TLS handshake.
        let ca = Arc::new(crate::tls::LocalCa::generate().unwrap());
        let (listener, mut streams) = queued_connections(8);
        let address = listener.local_addr().unwrap();
        // Two connections that never complete a handshake.
        let mut plain = std::net::TcpStream::connect(address).unwrap();
        let silent = std::net::TcpStream::connect(address).unwrap();

        let (stop, shutdown) = watch::channel(false);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime.block_on(async { TcpListener::from_std(listener).unwrap() });
        let acceptor = tokio_rustls::TlsAcceptor::from(ca.sni_server_config());
        let (balance, _threads) = spawn_threads(
            NonZeroUsize::new(2).unwrap(),
            vec![(listener, Some(acceptor))],
            empty_front_end(),
            shutdown,
        )
        .unwrap();

        let config = client_trusting(&ca);
        let mut sessions = Vec::new();
        for stream in streams.drain(..) {
            let name = rustls::pki_types::ServerName::try_from("unknown.azurewebsites.net")
                .unwrap()
                .to_owned();
            let connection = rustls::ClientConnection::new(config.clone(), name).unwrap();
            let mut session = rustls::StreamOwned::new(connection, stream);
            let head = round_trip(&mut session);
            assert!(head.starts_with("HTTP/1.1 404"), "{head}");
            sessions.push(session);
        }
        let live = balance.live();
        assert_eq!(live.iter().sum::<usize>(), 10, "{live:?}");
        assert!(live.iter().all(|&count| count >= 4), "{live:?}");

        // A failed handshake and closed connections leave their threads' counts.
        plain.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        let mut rest = Vec::new();
        let _ = plain.read_to_end(&mut rest);
        wait_for_live(&balance, 9);
        drop(silent);
        drop(sessions);
        wait_for_live(&balance, 0);
        stop.send(true).unwrap();
    }

    #[test]
    fn balance_spreads_connection_burst() {
        let (listener, mut streams) = queued_connections(16);

        let (stop, shutdown) = watch::channel(false);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime.block_on(async { TcpListener::from_std(listener).unwrap() });
        let (balance, _threads) = spawn_threads(
            NonZeroUsize::new(2).unwrap(),
            vec![(listener, None)],
            empty_front_end(),
            shutdown,
        )
        .unwrap();

        for stream in &mut streams {
            let head = round_trip(stream);
            assert!(head.starts_with("HTTP/1.1 404"), "{head}");
        }
        let live = balance.live();
        assert_eq!(live.iter().sum::<usize>(), 16, "{live:?}");
        assert!(live.iter().all(|&count| count >= 7), "{live:?}");

        // A closed connection leaves its thread's count.
        drop(streams.pop());
        drop(streams.pop());
        wait_for_live(&balance, 14);
        stop.send(true).unwrap();
    }
}
