//! An in-process network between nodes, with fault injection (feature
//! `test-util`).
//!
//! RPCs go through the same encoding and the same server handler as over
//! HTTP, just without sockets. Tests isolate a node, partition the cluster,
//! drop a share of messages, and heal.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use catga_cluster_core::protocol::RaftRpc;
use catga_cluster_core::NodeId;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Timeout, Unreachable,
};
use openraft::network::{Backoff, RPCOption, RPCTypes, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{AnyError, BasicNode};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{decode, encode, ElectRequest, ElectResult, RaftRpcHandler};
use crate::types::TypeConfig;

/// An in-process network. Clones share it.
#[derive(Clone, Default)]
pub struct MemoryNetwork {
    inner: Arc<Mutex<NetState>>,
}

#[derive(Default)]
struct NetState {
    handlers: HashMap<NodeId, RaftRpcHandler>,
    isolated: HashSet<NodeId>,
    groups: Option<Vec<HashSet<NodeId>>>,
    cut: HashSet<(NodeId, NodeId)>,
    drop_rate: f64,
    rng: Option<fastrand::Rng>,
}

impl std::fmt::Debug for MemoryNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.state();
        f.debug_struct("MemoryNetwork")
            .field("nodes", &state.handlers.keys().collect::<Vec<_>>())
            .field("isolated", &state.isolated)
            .field("drop_rate", &state.drop_rate)
            .finish()
    }
}

impl MemoryNetwork {
    /// A network with no nodes and no faults.
    pub fn new() -> Self {
        MemoryNetwork::default()
    }

    fn state(&self) -> MutexGuard<'_, NetState> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn register(&self, id: NodeId, handler: RaftRpcHandler) {
        self.state().handlers.insert(id, handler);
    }

    /// Removes a node, as if its process died: RPCs to it are unreachable.
    pub fn unregister(&self, id: NodeId) {
        self.state().handlers.remove(&id);
    }

    /// Cuts `id` off from every other node, both ways.
    pub fn isolate(&self, id: NodeId) {
        self.state().isolated.insert(id);
    }

    /// Cuts the link between `a` and `b`, both ways.
    pub fn cut(&self, a: NodeId, b: NodeId) {
        let mut state = self.state();
        state.cut.insert((a, b));
        state.cut.insert((b, a));
    }

    /// Splits the network into groups that only reach their own members.
    /// Nodes in no group reach nobody.
    pub fn partition(&self, groups: &[&[NodeId]]) {
        self.state().groups = Some(groups.iter().map(|g| g.iter().copied().collect()).collect());
    }

    /// Drops each RPC with probability `rate` (0 to 1), using `seed` so a
    /// failing run can be replayed.
    pub fn set_drop_rate(&self, rate: f64, seed: u64) {
        let mut state = self.state();
        state.drop_rate = rate.clamp(0.0, 1.0);
        state.rng = Some(fastrand::Rng::with_seed(seed));
    }

    /// Removes every fault: isolation, partitions, cuts and drops.
    pub fn heal(&self) {
        let mut state = self.state();
        state.isolated.clear();
        state.groups = None;
        state.cut.clear();
        state.drop_rate = 0.0;
    }

    /// Whether an RPC from `from` to `to` gets through now; `None` if `to`
    /// is not running.
    fn route(&self, from: NodeId, to: NodeId) -> Result<RaftRpcHandler, String> {
        let mut state = self.state();
        let handler = state
            .handlers
            .get(&to)
            .cloned()
            .ok_or_else(|| format!("node {to} is not running"))?;
        if state.isolated.contains(&from) || state.isolated.contains(&to) {
            return Err(format!("node {from} cannot reach node {to}: isolated"));
        }
        if state.cut.contains(&(from, to)) {
            return Err(format!("the link {from} - {to} is cut"));
        }
        if let Some(groups) = &state.groups {
            if !groups.iter().any(|g| g.contains(&from) && g.contains(&to)) {
                return Err(format!("node {from} cannot reach node {to}: partitioned"));
            }
        }
        if state.drop_rate > 0.0 {
            let rate = state.drop_rate;
            let draw = state.rng.get_or_insert_with(fastrand::Rng::new).f64();
            if draw < rate {
                return Err(format!("message {from} -> {to} dropped"));
            }
        }
        Ok(handler)
    }

    pub(crate) fn factory(&self, local: NodeId) -> MemoryNetworkFactory {
        MemoryNetworkFactory {
            net: self.clone(),
            local,
        }
    }
}

/// Builds [`MemoryPeer`]s for one node.
#[derive(Debug, Clone)]
pub struct MemoryNetworkFactory {
    net: MemoryNetwork,
    local: NodeId,
}

impl MemoryNetworkFactory {
    pub(crate) fn peer(&self, target: NodeId) -> MemoryPeer {
        MemoryPeer {
            net: self.net.clone(),
            local: self.local,
            target,
        }
    }

    pub(crate) async fn send_elect(
        &self,
        target: NodeId,
        term: u64,
        timeout: Duration,
    ) -> Result<(), String> {
        let request = ElectRequest {
            from: self.local,
            term,
        };
        match self
            .peer(target)
            .call::<_, ElectResult>(RaftRpc::Elect, &request, timeout)
            .await
        {
            Ok(answer) => answer,
            Err(e) => Err(e),
        }
    }
}

impl RaftNetworkFactory<TypeConfig> for MemoryNetworkFactory {
    type Network = MemoryPeer;

    async fn new_client(&mut self, target: NodeId, _node: &BasicNode) -> MemoryPeer {
        self.peer(target)
    }
}

/// The in-process client for one peer.
#[derive(Debug)]
pub struct MemoryPeer {
    net: MemoryNetwork,
    local: NodeId,
    target: NodeId,
}

impl MemoryPeer {
    async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        rpc: RaftRpc,
        request: &Req,
        ttl: Duration,
    ) -> Result<Resp, String> {
        let handler = self.net.route(self.local, self.target)?;
        let body = encode(request).map_err(|e| e.to_string())?;
        let answer = tokio::time::timeout(ttl, handler.dispatch(rpc, &body))
            .await
            .map_err(|_| "timeout".to_owned())?
            .map_err(|e| e.to_string())?;
        // The answer travels back over the same link.
        self.net.route(self.target, self.local)?;
        decode(&answer).map_err(|e| e.to_string())
    }

    async fn raft_call<Req, Resp, E>(
        &self,
        rpc: RaftRpc,
        action: RPCTypes,
        request: &Req,
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
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(remote)) => Err(RPCError::RemoteError(RemoteError::new(self.target, remote))),
            Err(reason) if reason == "timeout" => Err(RPCError::Timeout(Timeout {
                action,
                id: self.local,
                target: self.target,
                timeout: option.hard_ttl(),
            })),
            Err(reason) if reason.contains("decode") => Err(RPCError::Network(NetworkError::new(
                &AnyError::error(reason),
            ))),
            Err(reason) => Err(RPCError::Unreachable(Unreachable::new(&AnyError::error(
                reason,
            )))),
        }
    }
}

impl RaftNetwork<TypeConfig> for MemoryPeer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.raft_call(RaftRpc::Append, RPCTypes::AppendEntries, &rpc, &option)
            .await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        self.raft_call(RaftRpc::Snapshot, RPCTypes::InstallSnapshot, &rpc, &option)
            .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.raft_call(RaftRpc::Vote, RPCTypes::Vote, &rpc, &option)
            .await
    }

    fn backoff(&self) -> Backoff {
        Backoff::new(super::http_client::peer_backoff())
    }
}
