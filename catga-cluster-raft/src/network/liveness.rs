//! What a follower learns about its leader's process: how the leader watch
//! went on ([`WatchEvent`]) and what a fresh connection to the leader's
//! endpoint met ([`Probe`]).
//!
//! The probe is a bare TCP connect to every address the endpoint's host
//! resolves to. It says [`Probe::Refused`] only when every address refused
//! the connection at once: then no process listens on that port there any
//! more. An accepted connection, a timeout, an unreachable host or a name
//! that does not resolve say nothing of the sort, and are
//! [`Probe::Accepted`] or [`Probe::Unknown`].

use std::io::ErrorKind;
use std::time::Duration;

use catga_cluster_core::Endpoint;
use tokio::net::TcpStream;

use crate::network::wire::WatchFrame;

/// What the leader watch yielded next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum WatchEvent {
    /// A frame.
    Frame(WatchFrame),
    /// The body ended properly: the leader's process wrote its end.
    Ended,
    /// The connection ended in the middle of the body (closed or reset):
    /// the leader's process may be gone, or only the connection.
    Broken(String),
}

/// What a fresh connection to an endpoint met.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Probe {
    /// Every address refused the connection: nothing listens there.
    Refused,
    /// An address accepted the connection: something listens there.
    Accepted,
    /// Neither: a timeout, an unreachable host, a name that does not
    /// resolve, or addresses that disagree.
    Unknown(String),
}

/// Connects to every address of `endpoint`, each within `timeout`, and
/// closes what it opened; see the [module docs](self).
pub(crate) async fn probe_endpoint(endpoint: &Endpoint, timeout: Duration) -> Probe {
    let host = endpoint.host();
    let port = endpoint.port();
    let addrs: Vec<_> =
        match tokio::time::timeout(timeout, tokio::net::lookup_host((host, port))).await {
            Ok(Ok(addrs)) => addrs.collect(),
            Ok(Err(e)) => return Probe::Unknown(format!("cannot resolve {host}: {e}")),
            Err(_) => return Probe::Unknown(format!("resolving {host} took over {timeout:?}")),
        };
    if addrs.is_empty() {
        return Probe::Unknown(format!("{host} resolves to no address"));
    }
    let mut unknown = None;
    for addr in addrs {
        match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(_)) => return Probe::Accepted,
            Ok(Err(e)) if e.kind() == ErrorKind::ConnectionRefused => {}
            Ok(Err(e)) => {
                unknown.get_or_insert_with(|| format!("connecting to {addr}: {e}"));
            }
            Err(_) => {
                unknown.get_or_insert_with(|| format!("no answer from {addr} within {timeout:?}"));
            }
        }
    }
    match unknown {
        None => Probe::Refused,
        Some(reason) => Probe::Unknown(reason),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_listener_accepts_and_a_closed_port_refuses() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let endpoint = Endpoint::parse(&format!("http://127.0.0.1:{port}")).unwrap();
        let timeout = Duration::from_secs(2);
        assert_eq!(probe_endpoint(&endpoint, timeout).await, Probe::Accepted);
        drop(listener);
        assert_eq!(probe_endpoint(&endpoint, timeout).await, Probe::Refused);
    }

    #[tokio::test]
    async fn a_name_that_does_not_resolve_is_unknown() {
        let endpoint = Endpoint::parse("http://no-such-host.invalid:5000").unwrap();
        let probe = probe_endpoint(&endpoint, Duration::from_secs(2)).await;
        assert!(matches!(probe, Probe::Unknown(_)), "{probe:?}");
    }
}
