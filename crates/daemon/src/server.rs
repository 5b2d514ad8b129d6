//! The accept loop: one task per connection, a cap on connections, and a shutdown signal
//! passed in by the caller.
//!
//! Connections run on a pool of I/O threads, each a single-threaded tokio runtime: a
//! connection stays on one thread for its life, so the wake-ups of its task (socket
//! readiness, store completions) never bounce between worker threads.

use crate::connection::{serve_connection, ConnectionLimits};
use crate::targets::Targets;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// Limits of one portal.
#[derive(Debug, Clone)]
pub struct Server {
    /// Connections served at once; more wait in the listen backlog.
    pub max_connections: usize,
    /// How long shutdown waits for open connections to log out (each session is asked to
    /// with an Asynchronous Message) before closing them.
    pub drain_timeout: Duration,
    /// Limits every connection gets.
    pub connection: ConnectionLimits,
    /// Threads serving connections, each running its own event loop; a new connection
    /// goes to the thread with the fewest. 0: connections run on the runtime that calls
    /// [`serve`].
    pub io_threads: usize,
    /// Digests every normal session must use (`--require-header-digest`,
    /// `--require-data-digest`; `iscsi::Limits::require_digests`).
    pub require_digests: iscsi::Digests,
}

/// The default number of I/O threads: one per CPU.
pub fn default_io_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

impl Default for Server {
    fn default() -> Self {
        Server {
            max_connections: 256,
            drain_timeout: Duration::from_secs(10),
            connection: ConnectionLimits::default(),
            io_threads: default_io_threads(),
            require_digests: iscsi::Digests::default(),
        }
    }
}

/// Serves `listener` until `shutdown` completes, then stops accepting and gives open
/// connections `drain_timeout` to finish.
pub async fn serve(
    server: &Server,
    listener: TcpListener,
    targets: Arc<Targets>,
    shutdown: impl Future<Output = ()>,
) {
    let (_none, added) = tokio::sync::mpsc::unbounded_channel();
    serve_portals(server, Some(listener), targets, added, shutdown).await
}

/// [`serve`] on `listener` if given, and the connections the portals of
/// [`crate::portals`] accept (`added`; the daemon's main portal is one of them, so that a
/// changed `portal` moves it live).
pub async fn serve_portals(
    server: &Server,
    listener: Option<TcpListener>,
    targets: Arc<Targets>,
    mut added: tokio::sync::mpsc::UnboundedReceiver<crate::portals::Accepted>,
    shutdown: impl Future<Output = ()>,
) {
    let pool = match IoThreads::start(server.io_threads) {
        Ok(pool) => pool,
        Err(err) => {
            tracing::error!(%err, "cannot start the I/O threads; serving on the caller's runtime");
            IoThreads::start(0).expect("no threads to start")
        }
    };
    let permits = Arc::new(Semaphore::new(server.max_connections));
    let mut connections = JoinSet::new();
    let mut backoff = Duration::from_millis(10);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            permit = permits.clone().acquire_owned() => permit.expect("semaphore never closed"),
        };
        let on_listener = async {
            match &listener {
                Some(listener) => listener.accept().await,
                None => std::future::pending().await,
            }
        };
        let accepted = tokio::select! {
            _ = &mut shutdown => break,
            accepted = on_listener => accepted,
            Some(a) = added.recv() => Ok((a.stream, a.peer)),
        };
        match accepted {
            Ok((stream, peer)) => {
                backoff = Duration::from_millis(10);
                let targets = targets.clone();
                // Settings changed live apply to the connections from now on.
                let limits = targets.connection_limits().unwrap_or(server.connection);
                let Some((handle, load)) = pool.pick() else {
                    connections.spawn(async move {
                        if let Err(err) = serve_connection(stream, peer, targets, limits).await {
                            tracing::debug!(%peer, %err, "connection ended with an I/O error");
                        }
                        drop(permit);
                    });
                    while connections.try_join_next().is_some() {}
                    continue;
                };
                let load = LoadGuard(load);
                // Move the socket to the I/O thread's reactor.
                let stream = match stream.into_std() {
                    Ok(stream) => stream,
                    Err(err) => {
                        tracing::warn!(%peer, %err, "cannot hand the connection over");
                        continue;
                    }
                };
                connections.spawn_on(
                    async move {
                        let _load = load;
                        let served = match TcpStream::from_std(stream) {
                            Ok(stream) => serve_connection(stream, peer, targets, limits).await,
                            Err(err) => Err(err),
                        };
                        if let Err(err) = served {
                            tracing::debug!(%peer, %err, "connection ended with an I/O error");
                        }
                        drop(permit);
                    },
                    &handle,
                );
            }
            Err(err) => {
                // Out of file descriptors and the like: wait and retry rather than exit.
                tracing::warn!(%err, ?backoff, "accept failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
        // Reap finished connection tasks so the set does not grow.
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    // Orderly shutdown: every session is asked to log out within the grace time; the wait
    // below ends as soon as they all have.
    let grace = u16::try_from(server.drain_timeout.as_secs()).unwrap_or(u16::MAX);
    targets.sessions.request_logout_all(grace);
    if !connections.is_empty() {
        tracing::info!(count = connections.len(), "waiting for open connections");
        let drained = tokio::time::timeout(server.drain_timeout, async {
            while connections.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                "connections still open after {:?}; closing them",
                server.drain_timeout
            );
            connections.shutdown().await;
        }
    }
}

/// The threads connections run on.
struct IoThreads {
    threads: Vec<IoThread>,
}

struct IoThread {
    handle: tokio::runtime::Handle,
    /// Connections on this thread.
    load: Arc<AtomicUsize>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Counts a connection on its thread while it lives.
struct LoadGuard(Arc<AtomicUsize>);

impl Drop for LoadGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl IoThreads {
    fn start(count: usize) -> std::io::Result<IoThreads> {
        let mut threads = Vec::with_capacity(count);
        for i in 0..count {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let handle = runtime.handle().clone();
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let thread = std::thread::Builder::new()
                .name(format!("io-{i}"))
                .spawn(move || {
                    runtime.block_on(async {
                        let _ = stopped.await;
                    });
                })?;
            threads.push(IoThread {
                handle,
                load: Arc::new(AtomicUsize::new(0)),
                stop: Some(stop),
                thread: Some(thread),
            });
        }
        Ok(IoThreads { threads })
    }

    /// The least loaded thread, with its load counted up for a new connection; `None`
    /// without threads.
    fn pick(&self) -> Option<(tokio::runtime::Handle, Arc<AtomicUsize>)> {
        let thread = self
            .threads
            .iter()
            .min_by_key(|t| t.load.load(Ordering::Relaxed))?;
        thread.load.fetch_add(1, Ordering::Relaxed);
        Some((thread.handle.clone(), thread.load.clone()))
    }
}

impl Drop for IoThreads {
    fn drop(&mut self) {
        for t in &mut self.threads {
            if let Some(stop) = t.stop.take() {
                let _ = stop.send(());
            }
        }
        for t in &mut self.threads {
            if let Some(thread) = t.thread.take() {
                let _ = thread.join();
            }
        }
    }
}
