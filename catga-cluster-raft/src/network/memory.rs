//! An in-process network between nodes, with fault injection (feature
//! `test-util`).
//!
//! RPCs go through the same encoding and the same server handler as over
//! HTTP, just without sockets. Tests isolate a node, partition the cluster,
//! drop a share of messages, and heal.
//!
//! The leader watch and the probe of the crash fail-over behave as they do
//! over TCP: a node that is [unregistered](MemoryNetwork::unregister) (its
//! process died) breaks the watches open on it and refuses probes; a cut
//! link neither ends a watch nor refuses a probe (no word crosses it).
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
use tokio_util::sync::CancellationToken;

use crate::network::failure::Failure;
use crate::network::liveness::{Probe, WatchEvent};
use crate::network::wire::{decode, encode, FrameReader, LeaderWatch};

/// The server side a node registers on the network.
pub(crate) trait Serve: Send + Sync + 'static {
    /// Serves one RPC (the network carries no headers to check) and answers
    /// the encoded reply, or why the RPC was refused.
    fn serve<'a>(
        &'a self,
        rpc: RaftRpc,
        body: &'a [u8],
    ) -> Pin<Box<dyn Future<Output = Result<Bytes, String>> + Send + 'a>>;

    /// Opens the leader watch on this node, or says why it refused.
    fn watch(&self) -> Result<LeaderWatch, String>;
}

/// An in-process network. Clones share it.
#[derive(Clone, Default)]
pub struct MemoryNetwork {
    inner: Arc<Mutex<NetState>>,
}

#[derive(Default)]
struct NetState {
    handlers: HashMap<NodeId, Arc<dyn Serve>>,
    /// Cancelled when the node's registration ends: its process died.
    alive: HashMap<NodeId, CancellationToken>,
    /// Nodes whose listener is closed: new connections to them are
    /// refused, those already open go on.
    closed: HashSet<NodeId>,
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
        let mut state = self.state();
        state.handlers.insert(id, Arc::new(server));
        state.closed.remove(&id);
        if let Some(old) = state.alive.insert(id, CancellationToken::new()) {
            old.cancel();
        }
    }

    /// Removes a node, as if its process died: RPCs to it are unreachable,
    /// the watches open on it break and probes are refused.
    pub fn unregister(&self, id: NodeId) {
        let mut state = self.state();
        state.handlers.remove(&id);
        if let Some(alive) = state.alive.remove(&id) {
            alive.cancel();
        }
    }

    /// Closes the listener of `id` while it runs on: new connections to it
    /// are refused (RPCs to it fail, probes are refused, watches cannot
    /// be opened), those already open go on (the answers of its own RPCs,
    /// the watches open on it).
    pub fn close_listener(&self, id: NodeId) {
        self.state().closed.insert(id);
    }

    /// Breaks the leader watches open on `id` as a reset connection does,
    /// while `id` keeps running (and so keeps accepting connections).
    pub fn break_watches(&self, id: NodeId) {
        let mut state = self.state();
        if let Some(alive) = state.alive.get_mut(&id) {
            std::mem::take(alive).cancel();
        }
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

    /// Why nothing gets from `from` to `to` now (isolation, a cut link, a
    /// partition), if so.
    fn blocked(state: &NetState, from: NodeId, to: NodeId) -> Option<String> {
        if state.isolated.contains(&from) || state.isolated.contains(&to) {
            return Some(format!("node {from} cannot reach node {to}: isolated"));
        }
        if state.cut.contains(&(from, to)) {
            return Some(format!("the link {from} - {to} is cut"));
        }
        if let Some(groups) = &state.groups {
            if !groups.iter().any(|g| g.contains(&from) && g.contains(&to)) {
                return Some(format!("node {from} cannot reach node {to}: partitioned"));
            }
        }
        None
    }

    /// Whether `id` accepts new connections (its listener is open).
    fn listening(&self, id: NodeId) -> Result<(), String> {
        if self.state().closed.contains(&id) {
            Err(format!(
                "node {id} refuses connections: its listener is closed"
            ))
        } else {
            Ok(())
        }
    }

    /// Whether the link from `from` to `to` carries nothing now.
    fn link_blocked(&self, from: NodeId, to: NodeId) -> bool {
        Self::blocked(&self.state(), from, to).is_some()
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
        if let Some(reason) = Self::blocked(&state, from, to) {
            return Err(reason);
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
        self.net.listening(target).map_err(unreachable)?;
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

    /// Opens the leader watch on the peer.
    pub(crate) fn watch(&self) -> Result<MemoryWatch, Failure> {
        let target = self.target;
        let handler = self
            .net
            .listening(target)
            .and_then(|()| self.net.route(self.local, target))
            .map_err(|reason| Failure::Unreachable { target, reason })?;
        let alive = self
            .net
            .state()
            .alive
            .get(&target)
            .cloned()
            .ok_or_else(|| Failure::Unreachable {
                target,
                reason: format!("node {target} is not running"),
            })?;
        let watch = handler
            .watch()
            .map_err(|reason| Failure::Network { target, reason })?;
        Ok(MemoryWatch {
            net: self.net.clone(),
            local: self.local,
            target,
            watch,
            alive,
            reader: FrameReader::default(),
        })
    }

    /// A fresh connection to the peer: refused if its process is gone,
    /// nothing if the link carries nothing.
    pub(crate) fn probe(&self) -> Probe {
        let state = self.net.state();
        if let Some(reason) = MemoryNetwork::blocked(&state, self.local, self.target) {
            return Probe::Unknown(reason);
        }
        if state.handlers.contains_key(&self.target) && !state.closed.contains(&self.target) {
            Probe::Accepted
        } else {
            Probe::Refused
        }
    }
}

/// The leader watch on one peer, over the in-process network.
pub(crate) struct MemoryWatch {
    net: MemoryNetwork,
    local: NodeId,
    target: NodeId,
    watch: LeaderWatch,
    alive: CancellationToken,
    reader: FrameReader,
}

impl std::fmt::Debug for MemoryWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryWatch")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl MemoryWatch {
    /// The next frame, or how the watch ended. What happens while the link
    /// is cut never arrives, as over TCP: not the frames, not the end.
    pub(crate) async fn next(&mut self) -> WatchEvent {
        loop {
            if let Some(frame) = self.reader.next_frame() {
                return match frame {
                    Ok(frame) => WatchEvent::Frame(frame),
                    Err(_) => WatchEvent::Ended,
                };
            }
            // A connection that breaks loses what it had not delivered,
            // as a reset one does (and a dead node sends nothing more).
            tokio::select! {
                biased;
                () = self.alive.cancelled() => {
                    if self.net.link_blocked(self.target, self.local) {
                        std::future::pending::<()>().await;
                    }
                    return WatchEvent::Broken(format!("the connection to node {} broke", self.target));
                }
                chunk = self.watch.next_chunk() => match chunk {
                    Some(bytes) => {
                        if !self.net.link_blocked(self.target, self.local) {
                            self.reader.push(&bytes);
                        }
                    }
                    None => {
                        if self.net.link_blocked(self.target, self.local) {
                            std::future::pending::<()>().await;
                        }
                        return WatchEvent::Ended;
                    }
                },
            }
        }
    }
}
