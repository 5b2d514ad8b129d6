//! The accept loop: one task per connection, a cap on connections, and a shutdown signal
//! passed in by the caller.

use crate::connection::{serve_connection, ConnectionLimits};
use crate::targets::Targets;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// Limits of one portal.
#[derive(Debug, Clone)]
pub struct Server {
    /// Connections served at once; more wait in the listen backlog.
    pub max_connections: usize,
    /// How long shutdown waits for open connections to finish their commands.
    pub drain_timeout: Duration,
    /// Limits every connection gets.
    pub connection: ConnectionLimits,
}

impl Default for Server {
    fn default() -> Self {
        Server {
            max_connections: 256,
            drain_timeout: Duration::from_secs(10),
            connection: ConnectionLimits::default(),
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
    let permits = Arc::new(Semaphore::new(server.max_connections));
    let mut connections = JoinSet::new();
    let mut backoff = Duration::from_millis(10);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            permit = permits.clone().acquire_owned() => permit.expect("semaphore never closed"),
        };
        let accepted = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                backoff = Duration::from_millis(10);
                let targets = targets.clone();
                let limits = server.connection;
                connections.spawn(async move {
                    if let Err(err) = serve_connection(stream, peer, targets, limits).await {
                        tracing::debug!(%peer, %err, "connection ended with an I/O error");
                    }
                    drop(permit);
                });
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
