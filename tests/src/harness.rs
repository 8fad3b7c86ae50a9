//! N real nodes in one process, over loopback HTTP, behind a
//! fault-injecting transport.
//!
//! Each node of a [`Harness`] is what the example application runs: a Raft
//! node with durable storage in a temporary directory (every append
//! fsynced before it is acknowledged), the order system's router with every
//! cluster route, served on `127.0.0.1` (an ephemeral port, kept across
//! restarts), with the cluster secret. Raft RPCs, forwarded writes and
//! reads, the leader watch and the probe of the crash fast path go through
//! one shared [`NetFaults`]
//! ([`Transport::FaultyHttp`]), so a test drops, delays, duplicates,
//! reorders and cuts messages between any pair of nodes.
//!
//! Every node also runs a [singleton task](crate::singleton) that records
//! its fenced runs, and the admin calls of the harness
//! ([`add_member`](Harness::add_member),
//! [`remove_member`](Harness::remove_member),
//! [`transfer_leadership`](Harness::transfer_leadership)) go through the
//! HTTP API and are recorded with their answers for
//! [`check_admin_quorum`](crate::singleton::check_admin_quorum).
//!
//! # Crash, pause, restart
//!
//! - [`crash`](Harness::crash) is a process death as the other nodes see
//!   it: the node is silenced at once (nothing it sends leaves), its
//!   listener closes (new connections are refused, so the crash fast path
//!   sees a death) and every open connection is reset, then Raft stops
//!   without a hand-over and without the courtesy a graceful listener close
//!   gives. On disk stays what was written; every acknowledged append was
//!   fsynced first. In one process the page cache survives, so a write that
//!   was issued but not yet fsynced may still land (the restarted node
//!   waits for the old store's lock to be released, so the two never
//!   write at once): that is a crash a moment later, never data that a
//!   real crash would have kept and this one lost. Losing unsynced bytes
//!   is for the process-level suites (`SIGKILL`).
//! - [`restart`](Harness::restart) starts the node again from its data
//!   directory on the same port.
//! - [`pause`](Harness::pause) approximates `SIGSTOP` in one process: its
//!   links are held both ways ([`NetFaults::pause`]: nothing it sends
//!   leaves, what is sent to it is delivered on resume, a probe of it is
//!   accepted as a stopped process's kernel accepts), while its own timers
//!   run on. What that misses is that a stopped process's clock-driven work
//!   stops too: its lease runs out on its own clock instead of being frozen.
//!
//! Waits are on events (leadership changes of every node) with deadlines,
//! or bounded polling of the HTTP API where only the API can say.

use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use catga_cluster_core::config::{ClusterConfig, ClusterSecret};
use catga_cluster_core::singleton::{SingletonHandle, SingletonRunner};
use catga_cluster_core::{ClusterCoordinator, Endpoint, NodeId, NodeInfo};
use catga_cluster_raft::network::faults::NetFaults;
use catga_cluster_raft::{NodeOptions, RaftNode, Storage, Transport};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use crate::singleton::{AdminCall, RecordingTask, SingletonLog};

/// How long a harness wait lasts before it gives up.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// The deadline of each HTTP request the harness makes.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// What a harness is built with.
#[derive(Debug, Clone)]
pub struct HarnessOptions {
    /// How many nodes (3 or 5 make sense).
    pub nodes: usize,
    /// The seed of the fault rules' random draws.
    pub seed: u64,
    /// The cluster secret every node requires.
    pub secret: String,
}

impl HarnessOptions {
    /// `nodes` nodes, faults drawn from `seed`.
    pub fn new(nodes: usize, seed: u64) -> Self {
        HarnessOptions {
            nodes,
            seed,
            secret: format!("fault-suite-secret-{seed}"),
        }
    }
}

/// One node of the harness, running or not.
#[derive(Debug)]
struct Slot {
    info: NodeInfo,
    port: u16,
    data: PathBuf,
    /// How many times this node was started; runs record it.
    incarnation: u64,
    running: Option<Running>,
}

#[derive(Debug)]
struct Running {
    node: RaftNode,
    server: JoinHandle<()>,
    kill: CancellationToken,
    runner: SingletonHandle,
    events: JoinHandle<()>,
}

/// N nodes over loopback HTTP behind a fault-injecting transport; see the
/// [module docs](self).
#[derive(Debug)]
pub struct Harness {
    slots: Vec<Slot>,
    faults: NetFaults,
    secret: String,
    client: Client<HttpConnector, Full<Bytes>>,
    changed: Arc<Notify>,
    singletons: SingletonLog,
    admin: Arc<Mutex<Vec<AdminCall>>>,
    _dir: tempfile::TempDir,
}

impl Harness {
    /// Starts `options.nodes` nodes that bootstrap one cluster, and waits
    /// for a leader.
    pub async fn start(options: HarnessOptions) -> Harness {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut listeners = Vec::new();
        let mut slots = Vec::new();
        for i in 0..options.nodes {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let port = listener.local_addr().expect("local address").port();
            let id = NodeId::new(i as u64 + 1);
            let endpoint = Endpoint::parse(&format!("http://127.0.0.1:{port}")).expect("endpoint");
            slots.push(Slot {
                info: NodeInfo::new(id, endpoint),
                port,
                data: dir.path().join(format!("node{}", id.get())),
                incarnation: 0,
                running: None,
            });
            listeners.push(listener);
        }
        let mut harness = Harness {
            slots,
            faults: NetFaults::new(options.seed),
            secret: options.secret,
            client: Client::builder(TokioExecutor::new()).build_http(),
            changed: Arc::new(Notify::new()),
            singletons: SingletonLog::default(),
            admin: Arc::new(Mutex::new(Vec::new())),
            _dir: dir,
        };
        for (i, listener) in listeners.into_iter().enumerate() {
            harness.start_on(i, listener).await;
        }
        harness.wait_for_leader().await;
        harness
    }

    /// How many nodes the harness has (running or not).
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether the harness has no nodes.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The id of node `i`.
    pub fn id(&self, i: usize) -> NodeId {
        self.slots[i].info.id
    }

    /// The ids of every node.
    pub fn ids(&self) -> Vec<NodeId> {
        self.slots.iter().map(|s| s.info.id).collect()
    }

    /// The index of the node with id `id`.
    pub fn index_of(&self, id: NodeId) -> Option<usize> {
        self.slots.iter().position(|s| s.info.id == id)
    }

    /// Every node's base URL (`http://127.0.0.1:<port>`), by index.
    pub fn endpoints(&self) -> Vec<String> {
        self.slots
            .iter()
            .map(|s| s.info.endpoint.as_str().to_owned())
            .collect()
    }

    /// The cluster secret (send it as `Authorization: Bearer <secret>`).
    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// The shared fault rules.
    pub fn faults(&self) -> &NetFaults {
        &self.faults
    }

    /// The record of singleton runs and fence submissions.
    pub fn singletons(&self) -> &SingletonLog {
        &self.singletons
    }

    /// The admin calls made so far, with their answers.
    pub fn admin_calls(&self) -> Vec<AdminCall> {
        self.admin.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The Raft node `i`, if it runs.
    pub fn node(&self, i: usize) -> Option<&RaftNode> {
        self.slots[i].running.as_ref().map(|r| &r.node)
    }

    /// Whether node `i` runs.
    pub fn is_running(&self, i: usize) -> bool {
        self.slots[i].running.is_some()
    }

    /// The indexes of the running nodes.
    pub fn running(&self) -> Vec<usize> {
        (0..self.slots.len())
            .filter(|&i| self.is_running(i))
            .collect()
    }

    fn config(&self, i: usize) -> ClusterConfig {
        let slot = &self.slots[i];
        let others = self
            .slots
            .iter()
            .filter(|s| s.info.id != slot.info.id)
            .map(|s| s.info.clone())
            .collect();
        let mut config =
            ClusterConfig::new(slot.info.clone(), others).expect("a valid configuration");
        config.secret = Some(ClusterSecret::new(self.secret.clone()));
        config.persistent_state_path = Some(slot.data.clone());
        config
    }

    async fn start_on(&mut self, i: usize, listener: TcpListener) {
        let config = self.config(i);
        let id = self.slots[i].info.id;
        let data = self.slots[i].data.clone();
        self.faults.unsilence(id);
        // The previous incarnation's store may still be closing (a write
        // it had started finishes first): wait for its lock.
        let deadline = Instant::now() + DEADLINE;
        let node = loop {
            let started = RaftNode::builder(config.clone())
                .transport(Transport::FaultyHttp(self.faults.clone()))
                .storage(Storage::Disk(data.clone()))
                .options(NodeOptions::default().write_timeout(Duration::from_secs(3)))
                .start()
                .await;
            match started {
                Ok(node) => break node,
                Err(e) if e.to_string().contains("in use") && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("node {id} failed to start: {e}"),
            }
        };
        self.slots[i].incarnation += 1;
        let incarnation = self.slots[i].incarnation;
        let kill = CancellationToken::new();
        let (app, hook) = order_system::app::router_with_tls(node.clone(), None);
        let server = {
            let listener = KillableListener::new(listener, kill.clone());
            tokio::spawn(async move {
                let shutdown = std::future::pending::<()>();
                if let Err(e) = catga_cluster_axum::serve(listener, app, hook, shutdown).await {
                    tracing::error!(error = %e, "a harness node's server failed");
                }
            })
        };
        let task = RecordingTask::new(id, incarnation, self.singletons.clone());
        let runner = SingletonRunner::new(node.clone(), task).spawn();
        let events = {
            let mut leadership = node.subscribe();
            let changed = self.changed.clone();
            tokio::spawn(async move {
                while leadership.changed().await.is_ok() {
                    changed.notify_waiters();
                }
            })
        };
        self.slots[i].running = Some(Running {
            node,
            server,
            kill,
            runner,
            events,
        });
        self.changed.notify_waiters();
    }

    /// Crashes node `i`; see the [module docs](self#crash-pause-restart).
    /// A node that does not run is left as it is.
    pub async fn crash(&mut self, i: usize) {
        let Some(running) = self.slots[i].running.take() else {
            return;
        };
        let id = self.slots[i].info.id;
        // From this instant the process is gone: its singleton run can no
        // longer reach anything, nothing it sends leaves.
        self.singletons.process_died(id, self.slots[i].incarnation);
        self.faults.silence(id);
        running.kill.cancel();
        running.node.stop_now().await;
        running.server.abort();
        running.events.abort();
        drop(running.runner);
        self.changed.notify_waiters();
    }

    /// Restarts node `i` from its data directory on its port. A running
    /// node is left as it is.
    pub async fn restart(&mut self, i: usize) {
        if self.is_running(i) {
            return;
        }
        let addr = SocketAddr::from(([127, 0, 0, 1], self.slots[i].port));
        let deadline = Instant::now() + DEADLINE;
        let listener = loop {
            match TcpListener::bind(addr).await {
                Ok(listener) => break listener,
                Err(e) if Instant::now() < deadline => {
                    tracing::debug!(error = %e, %addr, "port not free yet");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("cannot bind {addr} again: {e}"),
            }
        };
        self.start_on(i, listener).await;
    }

    /// Pauses node `i`; see the [module docs](self#crash-pause-restart).
    pub fn pause(&self, i: usize) {
        self.faults.pause(self.slots[i].info.id);
    }

    /// Resumes node `i` after [`pause`](Self::pause).
    pub fn resume(&self, i: usize) {
        self.faults.resume(self.slots[i].info.id);
    }

    /// Removes every network fault and resumes paused nodes, restarts every
    /// crashed node, and waits for a leader.
    pub async fn heal(&mut self) {
        self.faults.heal();
        for i in 0..self.slots.len() {
            self.restart(i).await;
        }
        self.wait_for_leader().await;
    }

    /// Waits until `cond` holds, re-checked on every leadership change of
    /// any node and at least every 50 ms, up to `deadline`. `false` if it
    /// never did.
    pub async fn wait_until(
        &self,
        deadline: Duration,
        mut cond: impl FnMut(&Harness) -> bool,
    ) -> bool {
        let until = Instant::now() + deadline;
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if cond(self) {
                return true;
            }
            let next = (Instant::now() + Duration::from_millis(50)).min(until);
            if Instant::now() >= until {
                return false;
            }
            let _ = tokio::time::timeout_at(next, notified).await;
        }
    }

    /// The running node whose `is_leader()` holds and that a majority of
    /// all nodes follow, if any.
    pub fn leader(&self) -> Option<usize> {
        let majority = self.slots.len() / 2 + 1;
        self.running().into_iter().find(|&i| {
            let node = self.node(i).expect("running");
            if !node.is_leader() || self.faults.is_paused(self.slots[i].info.id) {
                return false;
            }
            let id = self.slots[i].info.id;
            let followers = self
                .running()
                .into_iter()
                .filter(|&j| {
                    self.node(j)
                        .is_some_and(|n| n.leadership().leader_id() == Some(id))
                })
                .count();
            followers >= majority
        })
    }

    /// Waits for [`leader`](Self::leader), up to [`DEADLINE`]; panics
    /// without one.
    pub async fn wait_for_leader(&self) -> usize {
        if !self.wait_until(DEADLINE, |h| h.leader().is_some()).await {
            panic!("no leader within {DEADLINE:?}: {}", self.describe());
        }
        self.leader().expect("a leader")
    }

    /// Waits for a leader other than `old`, up to `deadline`.
    pub async fn wait_for_new_leader(
        &self,
        old: Option<usize>,
        deadline: Duration,
    ) -> Option<usize> {
        self.wait_until(deadline, |h| h.leader().is_some_and(|l| Some(l) != old))
            .await;
        self.leader().filter(|l| Some(*l) != old)
    }

    /// Every node's role, term and leader, for failure messages.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        for (i, slot) in self.slots.iter().enumerate() {
            let state = match self.node(i) {
                Some(node) => {
                    let l = node.leadership();
                    format!(
                        "{:?} term {} leader {:?} lease {}",
                        l.role,
                        l.term,
                        l.leader_id().map(|id| id.get()),
                        node.is_leader()
                    )
                }
                None => "down".to_owned(),
            };
            out.push_str(&format!(
                "\n  node {} ({}): {state}",
                slot.info.id, slot.info.endpoint
            ));
        }
        out
    }

    /// Sends a request to node `i` with the secret, within
    /// [`REQUEST_TIMEOUT`]: the status and the body, or why it failed.
    pub async fn request(
        &self,
        i: usize,
        method: Method,
        path: &str,
        body: Option<Bytes>,
        json: bool,
    ) -> Result<(StatusCode, Bytes), String> {
        let uri = format!("{}{path}", self.slots[i].info.endpoint);
        send(&self.client, &self.secret, method, &uri, body, json).await
    }

    /// The members and their voter flags as node `i` sees them
    /// (`GET /cluster/status`).
    pub async fn members(&self, i: usize) -> Result<BTreeMap<NodeId, bool>, String> {
        let (status, body) = self
            .request(i, Method::GET, "/cluster/status", None, false)
            .await?;
        if status != StatusCode::OK {
            return Err(format!("status answered {status}"));
        }
        let v: serde_json::Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
        let members = v["members"].as_array().ok_or("no members")?;
        Ok(members
            .iter()
            .filter_map(|m| {
                Some((
                    NodeId::new(m["id"].as_u64()?),
                    m["voter"].as_bool().unwrap_or(false),
                ))
            })
            .collect())
    }

    /// What the harness knows is down or cut off now: crashed, paused or
    /// isolated from the majority of the others.
    fn unreachable_now(&self) -> Vec<NodeId> {
        let ids = self.ids();
        ids.iter()
            .copied()
            .filter(|&id| {
                let i = self.index_of(id).expect("a node");
                if !self.is_running(i) || self.faults.is_paused(id) {
                    return true;
                }
                let reached = ids
                    .iter()
                    .filter(|&&o| {
                        o != id && !self.faults.is_blocked(id, o) && !self.faults.is_blocked(o, id)
                    })
                    .count();
                reached + 1 < ids.len() / 2 + 1
            })
            .collect()
    }

    /// Runs one admin call on node `via` and records it.
    async fn admin_call(
        &self,
        via: usize,
        kind: &str,
        target: Option<NodeId>,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<StatusCode, String> {
        let voters_before = self.members(via).await.ok();
        let unreachable_before = self.unreachable_now();
        let started = Instant::now();
        let body = body.map(|b| Bytes::from(b.to_string()));
        let answer = self.request(via, method, path, body, true).await;
        let unreachable_after = self.unreachable_now();
        let voters_after = match self.leader() {
            Some(l) => self.members(l).await.ok(),
            None => self.members(via).await.ok(),
        };
        let call = AdminCall {
            kind: kind.to_owned(),
            target,
            via: self.slots[via].info.id,
            started,
            answered: Instant::now(),
            status: answer.as_ref().ok().map(|(s, _)| s.as_u16()),
            answer: match &answer {
                Ok((_, body)) => String::from_utf8_lossy(body).into_owned(),
                Err(e) => e.clone(),
            },
            voters_before,
            voters_after,
            unreachable_before,
            unreachable_after,
        };
        tracing::info!(?call, "admin call");
        self.admin
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(call);
        answer.map(|(s, _)| s)
    }

    /// `POST /cluster/members` on node `via`: adds node `i` (as a learner,
    /// then a voter). Recorded.
    pub async fn add_member(&self, via: usize, i: usize) -> Result<StatusCode, String> {
        let info = &self.slots[i].info;
        let body = serde_json::json!({ "id": info.id.get(), "endpoint": info.endpoint.as_str() });
        self.admin_call(
            via,
            "add",
            Some(info.id),
            Method::POST,
            "/cluster/members",
            Some(body),
        )
        .await
    }

    /// `DELETE /cluster/members/{id}` on node `via`: removes node `i`.
    /// Recorded.
    pub async fn remove_member(&self, via: usize, i: usize) -> Result<StatusCode, String> {
        let id = self.slots[i].info.id;
        self.admin_call(
            via,
            "remove",
            Some(id),
            Method::DELETE,
            &format!("/cluster/members/{}", id.get()),
            None,
        )
        .await
    }

    /// `POST /cluster/leadership/transfer` on node `via`, to node `to` or
    /// the most up-to-date voter. Recorded.
    pub async fn transfer_leadership(
        &self,
        via: usize,
        to: Option<usize>,
    ) -> Result<StatusCode, String> {
        let to = to.map(|i| self.slots[i].info.id);
        let body = match to {
            Some(id) => serde_json::json!({ "to": id.get() }),
            None => serde_json::json!({}),
        };
        self.admin_call(
            via,
            "transfer",
            to,
            Method::POST,
            "/cluster/leadership/transfer",
            Some(body),
        )
        .await
    }

    /// Stops every node abruptly (the data directories go with the harness).
    pub async fn stop(mut self) {
        for i in 0..self.slots.len() {
            self.crash(i).await;
        }
    }
}

/// Sends one request with the secret, within [`REQUEST_TIMEOUT`].
pub async fn send(
    client: &Client<HttpConnector, Full<Bytes>>,
    secret: &str,
    method: Method,
    uri: &str,
    body: Option<Bytes>,
    json: bool,
) -> Result<(StatusCode, Bytes), String> {
    let mut builder = Request::builder()
        .method(method)
        .uri(uri)
        .header(http::header::AUTHORIZATION, format!("Bearer {secret}"));
    if json {
        builder = builder.header(http::header::CONTENT_TYPE, "application/json");
    }
    let request = builder
        .body(Full::new(body.unwrap_or_default()))
        .map_err(|e| e.to_string())?;
    let exchange = async {
        let response = client.request(request).await.map_err(|e| e.to_string())?;
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((status, bytes))
    };
    tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {REQUEST_TIMEOUT:?}")))
}

/// A listener that, once killed, refuses new connections (its socket is
/// closed) and resets every connection it accepted: what the death of a
/// process does to its sockets.
struct KillableListener {
    inner: Option<TcpListener>,
    addr: SocketAddr,
    kill: CancellationToken,
}

impl KillableListener {
    fn new(inner: TcpListener, kill: CancellationToken) -> Self {
        let addr = inner.local_addr().expect("local address");
        KillableListener {
            inner: Some(inner),
            addr,
            kill,
        }
    }
}

impl axum::serve::Listener for KillableListener {
    type Io = KillableIo;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (KillableIo, SocketAddr) {
        loop {
            let Some(inner) = &self.inner else {
                return std::future::pending().await;
            };
            tokio::select! {
                () = self.kill.cancelled() => {
                    self.inner = None;
                }
                accepted = inner.accept() => match accepted {
                    Ok((stream, addr)) => {
                        // A reset, not an orderly close, when it goes.
                        let _ = stream.set_zero_linger();
                        let _ = stream.set_nodelay(true);
                        let io = KillableIo {
                            stream,
                            killed: Box::pin(self.kill.clone().cancelled_owned()),
                        };
                        return (io, addr);
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                },
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.addr)
    }
}

/// A connection that fails every read and write once its process is
/// killed.
struct KillableIo {
    stream: TcpStream,
    killed: Pin<Box<WaitForCancellationFutureOwned>>,
}

impl KillableIo {
    fn check(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        if self.killed.as_mut().poll(cx).is_ready() {
            Err(io::Error::from(io::ErrorKind::ConnectionReset))
        } else {
            Ok(())
        }
    }
}

impl AsyncRead for KillableIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.check(cx)?;
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for KillableIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.check(cx)?;
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.check(cx)?;
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.check(cx)?;
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
