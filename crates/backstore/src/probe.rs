//! Volfile servers that answer go first.
//!
//! gfapi fetches the volume file from the servers of `vol@h1,h2` in the order given and
//! moves to the next one only when a connection attempt *fails*. A first server that is
//! gone without saying so (its SYNs go unanswered: a host or container that vanished while
//! its address still resolves to a cached link-layer address, a firewall dropping packets)
//! holds `glfs_init` until TCP gives up on the connect, about two minutes: far past an
//! initiator's login time limit, although the second server answers at once.
//!
//! So before every mount (first open and each reconnect) the servers are probed in
//! parallel with a TCP connect of at most [`PROBE_TIMEOUT`], and those that accept are
//! listed first, in their given order, then the others (gfapi still falls back to them).
//! When all or none answer the order is left as given. Transports other than TCP are not
//! probed. One server alone is never probed.

use gfapi::Server;
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Longest a probe of one volfile server may take.
pub(crate) const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// glusterd's port, used when a server's port is 0.
const GLUSTERD_PORT: u16 = 24007;

/// `servers` with those that accept a TCP connection within `timeout` first.
pub(crate) fn reachable_first(servers: &[Server], timeout: Duration) -> Vec<Server> {
    reachable_first_with(servers, timeout, move |server| tcp_answers(server, timeout))
}

/// Whether `server` accepts a TCP connection within `timeout` (on any of its addresses).
fn tcp_answers(server: &Server, timeout: Duration) -> bool {
    let port = if server.port == 0 {
        GLUSTERD_PORT
    } else {
        server.port
    };
    match (server.host.as_str(), port).to_socket_addrs() {
        Ok(mut addrs) => addrs.any(|a| TcpStream::connect_timeout(&a, timeout).is_ok()),
        Err(_) => false,
    }
}

/// [`reachable_first`] with the probe given: each server is probed on a thread of its own,
/// and a probe not answered by `timeout` (plus a little slack) counts as not answering.
pub(crate) fn reachable_first_with<F>(
    servers: &[Server],
    timeout: Duration,
    probe: F,
) -> Vec<Server>
where
    F: Fn(&Server) -> bool + Clone + Send + 'static,
{
    if servers.len() < 2 {
        return servers.to_vec();
    }
    let (tx, rx) = mpsc::channel();
    let mut answered = vec![false; servers.len()];
    let mut pending = 0;
    for (i, server) in servers.iter().enumerate() {
        if server.transport != "tcp" {
            answered[i] = true;
            continue;
        }
        let (tx, probe, server) = (tx.clone(), probe.clone(), server.clone());
        let spawned = std::thread::Builder::new()
            .name("glfs-probe".into())
            .spawn(move || {
                let _ = tx.send((i, probe(&server)));
            });
        match spawned {
            Ok(_) => pending += 1,
            // Cannot tell: leave it where it was given.
            Err(_) => answered[i] = true,
        }
    }
    drop(tx);
    let deadline = Instant::now() + timeout + Duration::from_millis(500);
    while pending > 0 {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok((i, ok)) => {
                answered[i] = ok;
                pending -= 1;
            }
            // Probes still running are left to finish on their own threads.
            Err(_) => break,
        }
    }
    if answered.iter().all(|a| *a) || answered.iter().all(|a| !*a) {
        return servers.to_vec();
    }
    let silent: Vec<&str> = servers
        .iter()
        .zip(&answered)
        .filter(|(_, ok)| !**ok)
        .map(|(s, _)| s.host.as_str())
        .collect();
    tracing::warn!(
        servers = ?silent,
        "volfile servers did not answer within {timeout:?}; trying them last"
    );
    let (first, last): (Vec<_>, Vec<_>) = servers
        .iter()
        .cloned()
        .zip(answered)
        .partition(|(_, ok)| *ok);
    first.into_iter().chain(last).map(|(s, _)| s).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn hosts(servers: &[Server]) -> Vec<&str> {
        servers.iter().map(|s| s.host.as_str()).collect()
    }

    #[test]
    fn a_silent_first_server_goes_last_and_the_rest_keep_their_order() {
        let servers: Vec<Server> = ["h1", "h2", "h3", "h4"].map(Server::tcp).into();
        // h1 hangs far past the timeout, h3 refuses; h2 and h4 answer.
        let probe = |s: &Server| match s.host.as_str() {
            "h1" => {
                std::thread::sleep(Duration::from_secs(5));
                true
            }
            "h3" => false,
            _ => true,
        };
        let ordered = reachable_first_with(&servers, Duration::from_millis(200), probe);
        assert_eq!(hosts(&ordered), ["h2", "h4", "h1", "h3"]);
    }

    #[test]
    fn order_is_kept_when_all_or_none_answer_or_for_one_server() {
        let servers: Vec<Server> = ["a", "b"].map(Server::tcp).into();
        let all = reachable_first_with(&servers, Duration::from_millis(200), |_| true);
        assert_eq!(hosts(&all), ["a", "b"]);
        let none = reachable_first_with(&servers, Duration::from_millis(200), |_| false);
        assert_eq!(hosts(&none), ["a", "b"]);
        let one = reachable_first_with(&servers[..1], Duration::from_millis(200), |_| {
            panic!("one server is not probed")
        });
        assert_eq!(hosts(&one), ["a"]);
    }

    #[test]
    fn only_tcp_servers_are_probed() {
        let mut servers: Vec<Server> = ["/run/glusterd.socket", "h2"].map(Server::tcp).into();
        servers[0].transport = "unix".into();
        let ordered = reachable_first_with(&servers, Duration::from_millis(200), |s| {
            assert_eq!(s.transport, "tcp", "probed {s:?}");
            true
        });
        assert_eq!(hosts(&ordered), ["/run/glusterd.socket", "h2"]);
    }

    #[test]
    fn a_real_probe_puts_a_listening_server_before_a_refusing_one() {
        let listening = TcpListener::bind("127.0.0.1:0").unwrap();
        // A port that was free a moment ago: connecting is refused.
        let refused = TcpListener::bind("127.0.0.1:0").unwrap();
        let refused_port = refused.local_addr().unwrap().port();
        drop(refused);
        let server = |port| Server {
            transport: "tcp".into(),
            host: "127.0.0.1".into(),
            port,
        };
        let servers = vec![
            server(refused_port),
            server(listening.local_addr().unwrap().port()),
        ];
        let ordered = reachable_first(&servers, PROBE_TIMEOUT);
        assert_eq!(ordered, [servers[1].clone(), servers[0].clone()]);
    }
}
