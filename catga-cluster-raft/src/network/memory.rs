//! An in-process network between nodes, with fault injection (feature
//! `test-util`).
//!
//! RPCs go through the same encoding and the same server handler as over
//! HTTP, just without sockets. Tests isolate a node, partition the cluster,
//! drop a share of messages, and heal.
//!
//! The network names no node type: a starting node registers its server
//! side, the RPC handler, as a `Serve`.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use catga_cluster_core::protocol::RaftRpc;
use catga_cluster_core::NodeId;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::network::failure::Failure;
use crate::network::wire::{decode, encode};

/// The server side a node registers on the network.
pub(crate) trait Serve: Send + Sync + 'static {
    /// Serves one RPC (the network carries no headers to check) and answers
    /// the encoded reply, or why the RPC was refused.
    fn serve<'a>(
        &'a self,
        rpc: RaftRpc,
        body: &'a [u8],
    ) -> Pin<Box<dyn Future<Output = Result<Bytes, String>> + Send + 'a>>;
}

/// An in-process network. Clones share it.
#[derive(Clone, Default)]
pub struct MemoryNetwork {
    inner: Arc<Mutex<NetState>>,
}

#[derive(Default)]
struct NetState {
    handlers: HashMap<NodeId, Arc<dyn Serve>>,
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

    /// Runs `server` as node `id`, replacing an earlier registration.
    pub(crate) fn register(&self, id: NodeId, server: impl Serve) {
        self.state().handlers.insert(id, Arc::new(server));
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
    fn route(&self, from: NodeId, to: NodeId) -> Result<Arc<dyn Serve>, String> {
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
pub(crate) struct MemoryNetworkFactory {
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
}

/// The in-process client for one peer.
#[derive(Debug)]
pub(crate) struct MemoryPeer {
    net: MemoryNetwork,
    local: NodeId,
    target: NodeId,
}

impl MemoryPeer {
    pub(crate) fn target(&self) -> NodeId {
        self.target
    }

    pub(crate) fn local(&self) -> NodeId {
        self.local
    }

    pub(crate) async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        rpc: RaftRpc,
        request: &Req,
        ttl: Duration,
    ) -> Result<Resp, Failure> {
        let target = self.target;
        let unreachable = |reason| Failure::Unreachable { target, reason };
        let handler = self.net.route(self.local, target).map_err(unreachable)?;
        let body = encode(request).map_err(|e| Failure::Network {
            target,
            reason: e.to_string(),
        })?;
        let answer = tokio::time::timeout(ttl, handler.serve(rpc, &body))
            .await
            .map_err(|_| Failure::Timeout { target, after: ttl })?
            .map_err(|reason| Failure::Network { target, reason })?;
        // The answer travels back over the same link: a cut here means the
        // request may have taken effect.
        self.net
            .route(target, self.local)
            .map_err(|reason| Failure::Network { target, reason })?;
        decode(&answer).map_err(|e| Failure::Network {
            target,
            reason: format!("the answer does not decode: {e}"),
        })
    }
}
