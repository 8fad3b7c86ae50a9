//! The network a node uses, HTTP or the in-process test network, behind one
//! type: openraft's network traits are implemented once, here, and every
//! Raft RPC (append, vote, snapshot) a running peer answered is recorded in
//! the node's [`PeerContacts`], whichever network carried it.

use std::time::Duration;

use catga_cluster_core::protocol::RaftRpc;
use catga_cluster_core::NodeId;
use openraft::error::{InstallSnapshotError, RPCError, RaftError, RemoteError};
use openraft::network::{Backoff, RPCOption, RPCTypes, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::network::contacts::PeerContacts;
use crate::network::failure::Failure;
use crate::network::http_client::{peer_backoff, HttpNetwork, HttpNetworkFactory, HttpWatch};
use crate::network::liveness::{Probe, WatchEvent};
use crate::types::TypeConfig;

/// The target of the transport's own log lines.
const TARGET: &str = "catga_cluster::raft::network";

/// The network of one node: the clients of its transport, and the contact
/// times every answered RPC updates (see [`PeerContacts`]).
#[derive(Debug, Clone)]
pub(crate) struct NetworkFactory {
    clients: Clients,
    contacts: PeerContacts,
}

#[derive(Debug, Clone)]
enum Clients {
    Http(Box<HttpNetworkFactory>),
    #[cfg(feature = "test-util")]
    Memory(crate::network::memory::MemoryNetworkFactory),
}

impl NetworkFactory {
    /// Raft RPCs over HTTP.
    pub(crate) fn http(clients: HttpNetworkFactory, contacts: PeerContacts) -> Self {
        NetworkFactory {
            clients: Clients::Http(Box::new(clients)),
            contacts,
        }
    }

    /// Raft RPCs over the in-process test network.
    #[cfg(feature = "test-util")]
    pub(crate) fn memory(
        clients: crate::network::memory::MemoryNetworkFactory,
        contacts: PeerContacts,
    ) -> Self {
        NetworkFactory {
            clients: Clients::Memory(clients),
            contacts,
        }
    }

    /// When each peer last answered or was heard from.
    pub(crate) fn contacts(&self) -> &PeerContacts {
        &self.contacts
    }

    pub(crate) fn peer(&self, target: NodeId, addr: &str) -> Peer {
        let client = match &self.clients {
            Clients::Http(f) => PeerClient::Http(Box::new(f.peer(target, addr))),
            #[cfg(feature = "test-util")]
            Clients::Memory(f) => {
                let _ = addr;
                PeerClient::Memory(f.peer(target))
            }
        };
        Peer {
            client,
            contacts: self.contacts.clone(),
        }
    }

    /// Sends one RPC to `target` at `addr` and decodes the answer.
    pub(crate) async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        target: NodeId,
        addr: &str,
        rpc: RaftRpc,
        request: &Req,
        ttl: Duration,
    ) -> Result<Resp, Failure> {
        self.peer(target, addr).call(rpc, request, ttl).await
    }

    /// Opens the leader watch on `target` at `addr`; the answer's head
    /// within `ttl`.
    pub(crate) async fn watch(
        &self,
        target: NodeId,
        addr: &str,
        ttl: Duration,
    ) -> Result<LeaderStream, Failure> {
        match self.peer(target, addr).client {
            PeerClient::Http(p) => p.watch(ttl).await.map(|w| LeaderStream::Http(Box::new(w))),
            #[cfg(feature = "test-util")]
            PeerClient::Memory(p) => p.watch().map(LeaderStream::Memory),
        }
    }

    /// Connects afresh to `target` at `addr`, each address within
    /// `timeout` (see [`crate::network::liveness`]).
    pub(crate) async fn probe(&self, target: NodeId, addr: &str, timeout: Duration) -> Probe {
        match self.peer(target, addr).client {
            PeerClient::Http(p) => p.probe(timeout).await,
            #[cfg(feature = "test-util")]
            PeerClient::Memory(p) => p.probe(),
        }
    }
}

/// The leader watch on one peer, whichever network carries it.
#[derive(Debug)]
pub(crate) enum LeaderStream {
    Http(Box<HttpWatch>),
    #[cfg(feature = "test-util")]
    Memory(crate::network::memory::MemoryWatch),
}

impl LeaderStream {
    /// The next frame, or how the watch ended.
    pub(crate) async fn next(&mut self) -> WatchEvent {
        match self {
            LeaderStream::Http(w) => w.next().await,
            #[cfg(feature = "test-util")]
            LeaderStream::Memory(w) => w.next().await,
        }
    }
}

/// The client for one peer.
#[derive(Debug)]
pub(crate) struct Peer {
    client: PeerClient,
    contacts: PeerContacts,
}

#[derive(Debug)]
enum PeerClient {
    Http(Box<HttpNetwork>),
    #[cfg(feature = "test-util")]
    Memory(crate::network::memory::MemoryPeer),
}

impl Peer {
    async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        rpc: RaftRpc,
        request: &Req,
        ttl: Duration,
    ) -> Result<Resp, Failure> {
        match &self.client {
            PeerClient::Http(p) => p.call(rpc, request, ttl).await,
            #[cfg(feature = "test-util")]
            PeerClient::Memory(p) => p.call(rpc, request, ttl).await,
        }
    }

    fn target(&self) -> NodeId {
        match &self.client {
            PeerClient::Http(p) => p.target(),
            #[cfg(feature = "test-util")]
            PeerClient::Memory(p) => p.target(),
        }
    }

    fn local(&self) -> NodeId {
        match &self.client {
            PeerClient::Http(p) => p.local(),
            #[cfg(feature = "test-util")]
            PeerClient::Memory(p) => p.local(),
        }
    }

    async fn raft_call<Req, Resp, E>(
        &self,
        rpc: RaftRpc,
        action: RPCTypes,
        request: &Req,
        entries: usize,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        match self
            .call::<Req, Result<Resp, RaftError<NodeId, E>>>(rpc, request, option.hard_ttl())
            .await
        {
            Ok(Ok(answer)) => {
                self.answered(rpc);
                Ok(answer)
            }
            Ok(Err(remote)) => {
                // Raft's refusals come from a running peer; a peer whose
                // Raft stopped answers `Fatal` and cannot vote.
                if !matches!(remote, RaftError::Fatal(_)) {
                    self.answered(rpc);
                }
                Err(RPCError::RemoteError(RemoteError::new(
                    self.target(),
                    remote,
                )))
            }
            Err(failure) => {
                self.failed(rpc, &failure);
                Err(failure.into_rpc_error(action, self.local(), entries))
            }
        }
    }

    /// Records an answer of the peer, and reports the end of an outage.
    fn answered(&self, rpc: RaftRpc) {
        if let Some(outage) = self.contacts.record_answer(self.target()) {
            tracing::info!(
                target: TARGET,
                peer = %self.target(),
                ?rpc,
                failures = outage.failures,
                after = ?outage.since.elapsed(),
                "peer answers again"
            );
        }
    }

    /// Records an RPC that failed before the peer answered.
    ///
    /// A peer that is down or restarting is an expected condition, and
    /// openraft retries on its own (with [`peer_backoff`]): the first
    /// failure of a run is a warning, the retries are debug lines with the
    /// running count, and the peer's next answer ends the run with one info
    /// line (see [`crate::log`]).
    fn failed(&self, rpc: RaftRpc, failure: &Failure) {
        if let Failure::TooLarge { .. } = failure {
            // The peer answered: openraft resends smaller.
            tracing::debug!(target: TARGET, peer = %self.target(), ?rpc, %failure, "RPC too large");
            return;
        }
        let failures = self.contacts.record_failure(self.target());
        if failures == 1 {
            tracing::warn!(
                target: TARGET,
                peer = %self.target(),
                ?rpc,
                failures,
                error = %failure,
                "peer not answering; retrying, further failures are logged at debug until it answers"
            );
        } else {
            tracing::debug!(
                target: TARGET,
                peer = %self.target(),
                ?rpc,
                failures,
                error = %failure,
                "peer still not answering"
            );
        }
    }
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = Peer;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Peer {
        self.peer(target, &node.addr)
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
        let entries = rpc.entries.len();
        self.raft_call(
            RaftRpc::Append,
            RPCTypes::AppendEntries,
            &rpc,
            entries,
            &option,
        )
        .await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        self.raft_call(
            RaftRpc::Snapshot,
            RPCTypes::InstallSnapshot,
            &rpc,
            0,
            &option,
        )
        .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>> {
        self.raft_call(RaftRpc::Vote, RPCTypes::Vote, &rpc, 0, &option)
            .await
    }

    fn backoff(&self) -> Backoff {
        Backoff::new(peer_backoff())
    }
}

#[cfg(all(test, feature = "test-util"))]
mod tests;
