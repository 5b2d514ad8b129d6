//! The daemon's listening portals: the main one (`--portal`, or `portal` in the config
//! file, moved live by a changed `portal`) and those added while it runs (`portals = [...]`
//! in the config file, `admin portal add/remove`): one accept task each, handing what it
//! accepts to the server's accept loop ([`crate::server::serve_portals`]) over a channel,
//! so that every connection is served the same way whichever portal it came through.
//!
//! Binding is a separate step from starting ([`Portals::bind`], then [`Portals::start`]):
//! [`crate::State::apply`] binds every new portal before it changes anything, so an address
//! in use fails the change whole; stopping a portal closes its listening socket before
//! [`Portals::stop`] returns, so no connection is accepted on it afterwards.

use anyhow::{bail, Result};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

/// A connection accepted on one of the added portals.
pub struct Accepted {
    pub stream: TcpStream,
    pub peer: SocketAddr,
}

/// The added portals' listeners.
pub struct Portals {
    runtime: tokio::runtime::Handle,
    accepted: mpsc::UnboundedSender<Accepted>,
    listening: Mutex<BTreeMap<SocketAddr, Listening>>,
}

struct Listening {
    stop: oneshot::Sender<()>,
    /// Closed by the accept task once its socket is closed.
    closed: std::sync::mpsc::Receiver<()>,
}

/// A portal's socket, bound and listening but not yet accepted on.
pub struct Bound {
    addr: SocketAddr,
    listener: std::net::TcpListener,
}

impl Portals {
    /// Portals whose accept tasks run on `runtime`; the connections arrive on the
    /// receiver, which the server's accept loop reads.
    pub fn new(runtime: tokio::runtime::Handle) -> (Portals, mpsc::UnboundedReceiver<Accepted>) {
        let (accepted, receiver) = mpsc::unbounded_channel();
        let portals = Portals {
            runtime,
            accepted,
            listening: Mutex::new(BTreeMap::new()),
        };
        (portals, receiver)
    }

    /// Binds `addr` and listens (connections wait in the backlog until [`Portals::start`]).
    /// The error is one line naming the address.
    pub fn bind(addr: SocketAddr) -> Result<Bound> {
        let listener = std::net::TcpListener::bind(addr)
            .map_err(|e| anyhow::anyhow!("portal {addr}: cannot listen: {e}"))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| anyhow::anyhow!("portal {addr}: {e}"))?;
        Ok(Bound { addr, listener })
    }

    /// A socket the caller bound and listens on already (the main portal at start-up,
    /// which listens only once the LUNs are open), to be accepted on by [`Portals::start`].
    pub fn adopt(listener: std::net::TcpListener) -> std::io::Result<Bound> {
        let addr = listener.local_addr()?;
        listener.set_nonblocking(true)?;
        Ok(Bound { addr, listener })
    }

    /// Accepts connections on `bound` from now on.
    pub fn start(&self, bound: Bound) -> Result<()> {
        let Bound { addr, listener } = bound;
        let listener = {
            let _runtime = self.runtime.enter();
            TcpListener::from_std(listener).map_err(|e| anyhow::anyhow!("portal {addr}: {e}"))?
        };
        let (stop, mut stopped) = oneshot::channel();
        let (closed_tx, closed) = std::sync::mpsc::channel::<()>();
        let accepted = self.accepted.clone();
        self.runtime.spawn(async move {
            let mut backoff = Duration::from_millis(10);
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    result = listener.accept() => match result {
                        Ok((stream, peer)) => {
                            backoff = Duration::from_millis(10);
                            if accepted.send(Accepted { stream, peer }).is_err() {
                                break;
                            }
                        }
                        Err(err) => {
                            tracing::warn!(portal = %addr, %err, ?backoff, "accept failed");
                            tokio::time::sleep(backoff).await;
                            backoff = (backoff * 2).min(Duration::from_secs(5));
                        }
                    },
                }
            }
            drop(listener);
            drop(closed_tx);
        });
        tracing::info!(portal = %addr, "listening");
        self.listening
            .lock()
            .expect("portals lock")
            .insert(addr, Listening { stop, closed });
        Ok(())
    }

    /// Stops listening on `addr`: once this returns, connecting to it is refused.
    /// Connections already accepted through it are not touched here.
    pub fn stop(&self, addr: SocketAddr) -> Result<()> {
        let Some(listening) = self.listening.lock().expect("portals lock").remove(&addr) else {
            bail!("portal {addr}: not listening");
        };
        let _ = listening.stop.send(());
        // The accept task drops its socket and then this channel's sender. It runs on
        // another thread than the callers of `stop` (the control socket's and SIGHUP's
        // blocking threads), so waiting here cannot stall it.
        let _ = listening.closed.recv();
        tracing::info!(portal = %addr, "no longer listening");
        Ok(())
    }

    /// Stops listening everywhere without waiting for the sockets to close (at shutdown,
    /// from the runtime the accept tasks run on: they close them at their next turn).
    pub fn close_all(&self) {
        let listening = std::mem::take(&mut *self.listening.lock().expect("portals lock"));
        for (_, listening) in listening {
            let _ = listening.stop.send(());
        }
    }

    /// The addresses listened on now, sorted.
    pub fn listening(&self) -> Vec<SocketAddr> {
        self.listening
            .lock()
            .expect("portals lock")
            .keys()
            .copied()
            .collect()
    }
}

/// Whether a connection whose local address is `local` came through `portal` (for a
/// wildcard portal: any address of its family at its port).
pub fn came_through(local: SocketAddr, portal: SocketAddr) -> bool {
    if local.port() != portal.port() {
        return false;
    }
    let local_ip = local.ip().to_canonical();
    let portal_ip = portal.ip().to_canonical();
    if portal.ip().is_unspecified() {
        // A `[::]` socket also takes IPv4 connections (mapped) unless v6-only.
        return portal.is_ipv6() || local_ip.is_ipv4();
    }
    local_ip == portal_ip
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_belongs_to_the_portal_it_came_through() {
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert!(came_through(a("127.0.0.2:3261"), a("127.0.0.2:3261")));
        assert!(!came_through(a("127.0.0.1:3261"), a("127.0.0.2:3261")));
        assert!(!came_through(a("127.0.0.2:3260"), a("127.0.0.2:3261")));
        assert!(came_through(a("192.0.2.7:3260"), a("0.0.0.0:3260")));
        assert!(!came_through(a("[2001:db8::1]:3260"), a("0.0.0.0:3260")));
        assert!(came_through(a("[::ffff:192.0.2.7]:3260"), a("[::]:3260")));
        assert!(came_through(
            a("[::ffff:192.0.2.7]:3260"),
            a("192.0.2.7:3260")
        ));
    }

    #[test]
    fn a_stopped_portal_refuses_connections_and_an_address_in_use_is_named() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let (portals, mut accepted) = Portals::new(runtime.handle().clone());
        let bound = Portals::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = bound.listener.local_addr().unwrap();
        let err = Portals::bind(addr).err().unwrap().to_string();
        assert!(
            err.starts_with(&format!("portal {addr}: cannot listen")),
            "{err}"
        );
        let bound = Bound { addr, ..bound };
        portals.start(bound).unwrap();
        assert_eq!(portals.listening(), [addr]);
        let client = std::net::TcpStream::connect(addr).unwrap();
        let got = runtime.block_on(accepted.recv()).unwrap();
        assert_eq!(got.peer, client.local_addr().unwrap());
        portals.stop(addr).unwrap();
        assert!(portals.listening().is_empty());
        let refused = std::net::TcpStream::connect(addr).unwrap_err();
        assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
        assert!(portals.stop(addr).is_err());
    }
}
