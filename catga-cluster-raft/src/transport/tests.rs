//! The transport's log lines for a peer that stops answering and comes
//! back: one warning, debug lines while openraft retries, one info line.

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use catga_cluster_core::protocol::RaftRpc;
use catga_cluster_core::NodeId;
use openraft::error::RaftError;
use openraft::network::{RPCOption, RaftNetwork};
use openraft::raft::{VoteRequest, VoteResponse};
use openraft::Vote;
use tracing::Level;

use super::*;
use crate::log::capture::{Capture, Record};
use crate::network::memory::{MemoryNetwork, Serve};
use crate::network::wire::encode;

/// A peer that grants every vote.
struct Granting;

impl Serve for Granting {
    fn serve<'a>(
        &'a self,
        _rpc: RaftRpc,
        _body: &'a [u8],
    ) -> Pin<Box<dyn Future<Output = Result<Bytes, String>> + Send + 'a>> {
        Box::pin(async {
            let answer: Result<VoteResponse<NodeId>, RaftError<NodeId>> =
                Ok(VoteResponse::new(Vote::new(1, NodeId::new(1)), None, true));
            encode(&answer).map_err(|e| e.to_string())
        })
    }

    fn watch(&self) -> Result<crate::network::wire::LeaderWatch, String> {
        Err("this peer leads nothing".into())
    }
}

async fn vote(peer: &mut Peer) -> bool {
    let request = VoteRequest::new(Vote::new(1, NodeId::new(1)), None);
    let option = RPCOption::new(Duration::from_secs(5));
    peer.vote(request, option).await.is_ok()
}

fn ours(records: Vec<Record>) -> Vec<Record> {
    records.into_iter().filter(|r| r.target == TARGET).collect()
}

#[tokio::test]
async fn a_peer_going_away_and_back_is_reported_once_each_way() {
    let (_guard, capture) = Capture::install("catga_cluster::raft::network=debug");
    let net = MemoryNetwork::new();
    let (local, target) = (NodeId::new(1), NodeId::new(2));
    // The answer travels back to a running node.
    net.register(local, Granting);
    let factory = NetworkFactory::memory(net.factory(local), PeerContacts::new());
    // Each RPC may use a new client, as openraft's do: the count is the
    // node's, not the client's.
    let mut first = factory.peer(target, "node2");
    let mut second = factory.peer(target, "node2");

    assert!(!vote(&mut first).await);
    assert!(!vote(&mut second).await);
    assert!(!vote(&mut first).await);
    let records = ours(capture.take());
    let levels: Vec<_> = records.iter().map(|r| r.level).collect();
    assert_eq!(levels, [Level::WARN, Level::DEBUG, Level::DEBUG]);
    assert_eq!(
        records[0].message.split(';').next(),
        Some("peer not answering")
    );
    let counts: Vec<_> = records
        .iter()
        .map(|r| r.fields["failures"].clone())
        .collect();
    assert_eq!(counts, ["1", "2", "3"]);
    assert!(records.iter().all(|r| r.fields["peer"] == "2"));
    assert!(
        records[0].fields["error"].contains("not running"),
        "{:?}",
        records[0]
    );

    // Back: one info line with the count, then silence while it answers.
    net.register(target, Granting);
    assert!(vote(&mut second).await);
    assert!(vote(&mut first).await);
    let records = ours(capture.take());
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0].level, Level::INFO);
    assert_eq!(records[0].message, "peer answers again");
    assert_eq!(records[0].fields["failures"], "3");

    // Gone again: a new run starts with a new warning.
    net.unregister(target);
    assert!(!vote(&mut first).await);
    let records = ours(capture.take());
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].level, Level::WARN);
    assert_eq!(records[0].fields["failures"], "1");
}

#[tokio::test]
async fn other_peers_are_counted_apart() {
    let (_guard, capture) = Capture::install("catga_cluster::raft::network=debug");
    let net = MemoryNetwork::new();
    let factory = NetworkFactory::memory(net.factory(NodeId::new(1)), PeerContacts::new());
    let mut two = factory.peer(NodeId::new(2), "node2");
    let mut three = factory.peer(NodeId::new(3), "node3");
    assert!(!vote(&mut two).await);
    assert!(!vote(&mut three).await);
    let levels: Vec<_> = ours(capture.take()).iter().map(|r| r.level).collect();
    assert_eq!(levels, [Level::WARN, Level::WARN]);
}
