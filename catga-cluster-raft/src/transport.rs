//! The network factory a node uses: HTTP, or the in-process test network.

use std::time::Duration;

use catga_cluster_core::NodeId;
use openraft::error::{InstallSnapshotError, RPCError, RaftError};
use openraft::network::{Backoff, RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;

use crate::network::http_client::{HttpNetwork, HttpNetworkFactory};
use crate::types::TypeConfig;

#[derive(Debug, Clone)]
pub(crate) enum NetworkFactory {
    Http(Box<HttpNetworkFactory>),
    #[cfg(feature = "test-util")]
    Memory(crate::network::memory::MemoryNetworkFactory),
}

impl NetworkFactory {
    /// Asks `target` to start an election (graceful hand-over).
    pub(crate) async fn send_elect(
        &self,
        target: NodeId,
        addr: &str,
        term: u64,
        timeout: Duration,
    ) -> Result<(), String> {
        match self {
            NetworkFactory::Http(f) => f.send_elect(target, addr, term, timeout).await,
            #[cfg(feature = "test-util")]
            NetworkFactory::Memory(f) => {
                let _ = addr;
                f.send_elect(target, term, timeout).await
            }
        }
    }
}

#[derive(Debug)]
pub(crate) enum Peer {
    Http(Box<HttpNetwork>),
    #[cfg(feature = "test-util")]
    Memory(crate::network::memory::MemoryPeer),
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = Peer;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Peer {
        match self {
            NetworkFactory::Http(f) => Peer::Http(Box::new(f.peer(target, &node.addr))),
            #[cfg(feature = "test-util")]
            NetworkFactory::Memory(f) => Peer::Memory(f.peer(target)),
        }
    }
}

type RpcResult<T, E = openraft::error::Infallible> =
    Result<T, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>;

impl RaftNetwork<TypeConfig> for Peer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>> {
        match self {
            Peer::Http(p) => p.append_entries(rpc, option).await,
            #[cfg(feature = "test-util")]
            Peer::Memory(p) => p.append_entries(rpc, option).await,
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        match self {
            Peer::Http(p) => p.install_snapshot(rpc, option).await,
            #[cfg(feature = "test-util")]
            Peer::Memory(p) => p.install_snapshot(rpc, option).await,
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>> {
        match self {
            Peer::Http(p) => p.vote(rpc, option).await,
            #[cfg(feature = "test-util")]
            Peer::Memory(p) => p.vote(rpc, option).await,
        }
    }

    fn backoff(&self) -> Backoff {
        match self {
            Peer::Http(p) => p.backoff(),
            #[cfg(feature = "test-util")]
            Peer::Memory(p) => p.backoff(),
        }
    }
}
