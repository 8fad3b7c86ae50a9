//! The workload run during the faults: clients on every node driving the
//! real HTTP API, recording a [`History`].
//!
//! - **Key-value clients** read, write, compare-and-set (on the revision
//!   they last saw, on 0 for "only if absent", on a stale one) and delete
//!   a few keys shared by a small group of clients.
//! - **Counter clients** make idempotent increments: an increment has a
//!   request id, and adds it to a counter key's [`CounterValue`] with a
//!   read followed by a compare-and-set on the revision read. On an unknown
//!   outcome, or a revision mismatch, it reads again: if the id is there it
//!   was applied, else it tries again with the same id. The HTTP API has no
//!   request id on key-value writes, so this is the client's idempotence
//!   over linearizable reads and compare-and-set; an increment applied
//!   twice shows as its id twice or a count off from the ids.
//! - **Lock clients** acquire a contended lock (shared by every lock
//!   client) or an uncontended one (their own), with or without waiting in
//!   line, use the [`FencedResource`] under the fencing token while they
//!   believe their lease valid, sometimes renew, sometimes let the lease
//!   lapse, and release.
//! - **Order clients** create orders with `POST /orders` and an
//!   `Idempotency-Key` (forwarded to the leader from any node), retry an
//!   unknown outcome with the same key, and sometimes repeat an
//!   acknowledged one: the answer must be the same order.
//!
//! Every call has a deadline. A refused connection (nothing sent) is a
//! clean failure; a timeout, a broken connection or a `5xx` that does not
//! say the call was refused is an unknown outcome, after which the client
//! continues as a new process (see [`Op::process`]). Keys and locks change
//! every [`WorkloadConfig::rotation`], so that each checked object has a
//! bounded history.
//!
//! ```no_run
//! # async fn run() {
//! use catga_cluster_tests::workload::{read_back, Workload, WorkloadConfig};
//! use catga_cluster_tests::{checker, invariants};
//!
//! let config = WorkloadConfig::new(vec![
//!     "http://127.0.0.1:5000".into(),
//!     "http://127.0.0.1:5001".into(),
//!     "http://127.0.0.1:5002".into(),
//! ]);
//! let running = Workload::start(config.clone());
//! tokio::time::sleep(std::time::Duration::from_secs(5)).await;
//! let history = running.stop().await;
//! // ... heal the cluster ...
//! let finals = read_back(&config, &history).await;
//! let report = checker::check_with(&history, Some(&finals), &Default::default());
//! assert!(report.passed(), "{}", report.summary());
//! assert!(invariants::check_all(&history, Some(&finals)).is_empty());
//! # }
//! ```

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use catga_cluster_core::protocol::{paths, problem as slug, REVISION_HEADER};
use futures_util::StreamExt;
use http::{HeaderMap, Method, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::history::{
    Call, CounterValue, FenceRecord, FinalOrder, FinalRead, FinalReads, History, Increment, Micros,
    Op, OrderCommand, OrderSnapshot, Outcome, Reply, Resolution,
};

/// What the workload does.
#[derive(Debug, Clone)]
pub struct WorkloadConfig {
    /// The nodes' base URLs (`http://127.0.0.1:PORT`), one per node. They
    /// may change between runs, not during one.
    pub endpoints: Vec<String>,
    /// The cluster secret, sent as `Authorization: Bearer`.
    pub secret: Option<String>,
    /// The seed of every client's choices.
    pub seed: u64,
    /// A prefix for every key, lock and idempotency key, so runs against
    /// one cluster do not meet. `None`: one made from the seed and a fresh
    /// random number.
    pub run: Option<String>,
    /// Key-value clients on each node.
    pub kv_clients_per_node: usize,
    /// Counter clients on each node.
    pub counter_clients_per_node: usize,
    /// Lock clients on each node.
    pub lock_clients_per_node: usize,
    /// Order clients on each node (0 against an application without
    /// `POST /orders`).
    pub order_clients_per_node: usize,
    /// Clients sharing one group of keys (and of counters): the
    /// concurrency on a key the checker's search has to untangle.
    pub clients_per_key: usize,
    /// Keys (and counters) per group.
    pub keys_per_group: usize,
    /// Every this long, the clients move to new keys and locks.
    pub rotation: Duration,
    /// The deadline of one call (a lock acquire's wait comes on top).
    pub request_timeout: Duration,
    /// A client's pause between calls is drawn from this range.
    pub think: (Duration, Duration),
    /// The pause after a failed or unknown call.
    pub backoff: Duration,
    /// How long an idempotent command is retried before it is given up.
    pub patience: Duration,
    /// The leases lock clients ask for, drawn from this range (ms).
    pub lock_ttl_ms: (u64, u64),
    /// The longest wait in line a lock client asks for (ms); half the
    /// acquires do not wait.
    pub lock_wait_ms: u64,
}

impl Default for WorkloadConfig {
    fn default() -> Self {
        WorkloadConfig {
            endpoints: Vec::new(),
            secret: None,
            seed: 0,
            run: None,
            kv_clients_per_node: 2,
            counter_clients_per_node: 1,
            lock_clients_per_node: 2,
            order_clients_per_node: 1,
            clients_per_key: 3,
            keys_per_group: 2,
            rotation: Duration::from_secs(1),
            request_timeout: Duration::from_secs(2),
            think: (Duration::from_millis(1), Duration::from_millis(6)),
            backoff: Duration::from_millis(50),
            patience: Duration::from_secs(10),
            lock_ttl_ms: (150, 600),
            lock_wait_ms: 300,
        }
    }
}

impl WorkloadConfig {
    /// The default workload against `endpoints`.
    pub fn new(endpoints: Vec<String>) -> Self {
        WorkloadConfig {
            endpoints,
            ..WorkloadConfig::default()
        }
    }
}

/// The fence-checking resource: accepts a use under a lock's fencing token
/// only if no higher token of that lock was accepted before, and records
/// every request (see [`FenceRecord`]).
#[derive(Debug)]
pub struct FencedResource {
    started: Instant,
    state: Mutex<ResourceState>,
}

#[derive(Debug, Default)]
struct ResourceState {
    highest: HashMap<String, u64>,
    records: Vec<FenceRecord>,
}

impl FencedResource {
    /// A resource whose clock starts at `started`.
    pub fn new(started: Instant) -> Self {
        FencedResource {
            started,
            state: Mutex::new(ResourceState::default()),
        }
    }

    fn now(&self) -> Micros {
        micros(self.started.elapsed())
    }

    /// A holder of `lock` with `token`, believing its lease valid until
    /// `valid_until_us`, asks to use the resource. Returns whether it was
    /// accepted.
    pub fn try_use(
        &self,
        lock: &str,
        client: u32,
        owner: &str,
        token: u64,
        valid_until_us: Micros,
    ) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let at_us = self.now();
        let highest = state.highest.entry(lock.to_owned()).or_insert(0);
        let accepted = token >= *highest;
        if accepted {
            *highest = token;
        }
        state.records.push(FenceRecord {
            lock: lock.to_owned(),
            client,
            owner: owner.to_owned(),
            token,
            at_us,
            valid_until_us,
            accepted,
        });
        accepted
    }

    /// The holder of `token` is about to release `lock`: its uses are
    /// valid no longer than now.
    pub fn release(&self, lock: &str, token: u64) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = self.now();
        for r in state.records.iter_mut().rev() {
            if r.lock == lock && r.token == token {
                r.valid_until_us = r.valid_until_us.min(now);
            }
        }
    }

    /// Every request so far.
    pub fn records(&self) -> Vec<FenceRecord> {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .records
            .clone()
    }
}

fn micros(d: Duration) -> Micros {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

// ------------------------------------------------------------------- HTTP

type ReqBody = BoxBody<Bytes, Infallible>;

/// An HTTP answer.
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Answer {
    fn slug(&self) -> String {
        serde_json::from_slice::<serde_json::Value>(&self.body)
            .ok()
            .and_then(|v| v.get("type").and_then(|t| t.as_str()).map(str::to_owned))
            .unwrap_or_default()
    }

    fn revision(&self) -> Option<u64> {
        self.headers
            .get(REVISION_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
    }

    fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// Why a call has no answer.
#[derive(Debug)]
enum NoAnswer {
    /// Nothing was sent.
    NotSent(String),
    /// Sent, and then the deadline passed or the connection broke.
    Unknown(String),
}

/// A pooled keep-alive client of every node.
#[derive(Debug, Clone)]
struct Http {
    client: Client<HttpConnector, ReqBody>,
    endpoints: Arc<Vec<String>>,
    secret: Option<String>,
}

impl Http {
    fn new(config: &WorkloadConfig) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(config.request_timeout));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(10))
            .build(connector);
        Http {
            client,
            endpoints: Arc::new(
                config
                    .endpoints
                    .iter()
                    .map(|e| e.trim_end_matches('/').to_owned())
                    .collect(),
            ),
            secret: config.secret.clone(),
        }
    }

    async fn send(
        &self,
        node: usize,
        method: Method,
        path: &str,
        headers: &[(&str, String)],
        body: Option<(&'static str, Bytes)>,
        deadline: Duration,
    ) -> Result<Answer, NoAnswer> {
        let mut request = http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.endpoints[node]));
        if let Some(secret) = &self.secret {
            request = request.header(http::header::AUTHORIZATION, format!("Bearer {secret}"));
        }
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let body = match body {
            Some((content_type, bytes)) => {
                request = request.header(http::header::CONTENT_TYPE, content_type);
                Full::new(bytes).boxed()
            }
            None => Full::new(Bytes::new()).boxed(),
        };
        let request = request
            .body(body)
            .map_err(|e| NoAnswer::NotSent(format!("bad request: {e}")))?;
        let exchange = async {
            let response = self.client.request(request).await.map_err(|e| {
                if e.is_connect() {
                    NoAnswer::NotSent(format!("connect: {e}"))
                } else {
                    NoAnswer::Unknown(format!("request: {e}"))
                }
            })?;
            let (parts, body) = response.into_parts();
            let body = body
                .collect()
                .await
                .map_err(|e| NoAnswer::Unknown(format!("body: {e}")))?
                .to_bytes();
            Ok(Answer {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        };
        match tokio::time::timeout(deadline, exchange).await {
            Ok(answer) => answer,
            Err(_) => Err(NoAnswer::Unknown(format!("no answer within {deadline:?}"))),
        }
    }
}

/// What an answer that is not the call's success means.
fn classify_error(answer: &Answer) -> Outcome {
    let status = answer.status.as_u16();
    let slug = answer.slug();
    let refused = matches!(
        (status, slug.as_str()),
        (
            503,
            slug::NOT_LEADER | slug::NO_LEADER | slug::SHUTTING_DOWN
        ) | (504, slug::TIMEOUT)
            | (508, slug::HOP_LIMIT)
    );
    if refused {
        Outcome::Refused { status, slug }
    } else if answer.status.is_server_error() {
        Outcome::Unknown {
            reason: format!("{status} {slug}"),
        }
    } else {
        Outcome::Failed {
            status: Some(status),
            reason: format!(
                "{status} {slug}: {}",
                String::from_utf8_lossy(&answer.body)
                    .chars()
                    .take(300)
                    .collect::<String>()
            ),
        }
    }
}

/// Sends `call` to `node` and reads its outcome.
async fn perform(http: &Http, node: usize, call: &Call, timeout: Duration) -> Outcome {
    let (method, path, headers, body, deadline) = match call {
        Call::KvRead { key } => (
            Method::GET,
            paths::KV.replace("{*key}", key),
            vec![],
            None,
            timeout,
        ),
        Call::KvPut { key, value } => (
            Method::PUT,
            paths::KV.replace("{*key}", key),
            vec![],
            Some((
                "application/octet-stream",
                Bytes::from(value.clone().into_bytes()),
            )),
            timeout,
        ),
        Call::KvCas {
            key,
            expected,
            value,
        } => (
            Method::PUT,
            paths::KV.replace("{*key}", key),
            vec![("if-match", expected.to_string())],
            Some((
                "application/octet-stream",
                Bytes::from(value.clone().into_bytes()),
            )),
            timeout,
        ),
        Call::KvDelete { key } => (
            Method::DELETE,
            paths::KV.replace("{*key}", key),
            vec![],
            None,
            timeout,
        ),
        Call::LockAcquire {
            lock,
            owner,
            ttl_ms,
            wait_ms,
        } => (
            Method::POST,
            paths::LOCK_ACQUIRE.replace("{name}", lock),
            vec![],
            Some(json_body(
                &json!({"owner": owner, "ttl_ms": ttl_ms, "wait_ms": wait_ms}),
            )),
            timeout + Duration::from_millis(*wait_ms),
        ),
        Call::LockRenew {
            lock,
            owner,
            token,
            ttl_ms,
        } => (
            Method::POST,
            paths::LOCK_RENEW.replace("{name}", lock),
            vec![],
            Some(json_body(
                &json!({"owner": owner, "token": token, "ttl_ms": ttl_ms}),
            )),
            timeout,
        ),
        Call::LockRelease { lock, owner, token } => (
            Method::POST,
            paths::LOCK_RELEASE.replace("{name}", lock),
            vec![],
            Some(json_body(&json!({"owner": owner, "token": token}))),
            timeout,
        ),
        Call::OrderCreate { idempotency_key } => (
            Method::POST,
            "/orders".to_owned(),
            vec![("idempotency-key", idempotency_key.clone())],
            Some(json_body(&json!({
                "customer": idempotency_key,
                "items": [{"sku": "sku-1", "quantity": 1}],
            }))),
            timeout,
        ),
    };
    let answer = match http
        .send(node, method, &path, &headers, body, deadline)
        .await
    {
        Ok(answer) => answer,
        Err(NoAnswer::NotSent(reason)) => {
            return Outcome::Failed {
                status: None,
                reason,
            }
        }
        Err(NoAnswer::Unknown(reason)) => return Outcome::Unknown { reason },
    };
    let status = answer.status;
    let reply = match (call, status.as_u16()) {
        (Call::KvRead { .. }, 200) => answer.revision().map(|revision| Reply::Value {
            value: String::from_utf8_lossy(&answer.body).into_owned(),
            revision,
        }),
        (Call::KvRead { .. } | Call::KvDelete { .. }, 404) => Some(Reply::NotFound),
        (Call::KvPut { .. } | Call::KvCas { .. }, 200) => answer
            .revision()
            .map(|revision| Reply::Written { revision }),
        (Call::KvCas { .. }, 412) => answer.revision().map(|current| Reply::Mismatch { current }),
        (Call::KvDelete { .. }, 200) => Some(Reply::Deleted),
        (Call::LockAcquire { .. } | Call::LockRenew { .. }, 200) => answer.json().and_then(|v| {
            Some(Reply::Granted {
                token: v.get("token")?.as_u64()?,
                ttl_ms: v.get("ttl_ms")?.as_u64()?,
            })
        }),
        (Call::LockAcquire { .. }, 409) if answer.slug() == slug::LOCK_HELD => Some(Reply::Held),
        (Call::LockRenew { .. } | Call::LockRelease { .. }, 409)
            if answer.slug() == slug::LOCK_LOST =>
        {
            Some(Reply::Lost)
        }
        (Call::LockRelease { .. }, 200) => Some(Reply::Released),
        (Call::OrderCreate { .. }, 200 | 201) => answer.json().and_then(|v| {
            Some(Reply::Order {
                created: status == StatusCode::CREATED,
                order: order_snapshot(&v)?,
            })
        }),
        _ => return classify_error(&answer),
    };
    match reply {
        Some(reply) => Outcome::Ok(reply),
        // A success we cannot read: it took effect, but we do not know
        // what it said.
        None => Outcome::Unknown {
            reason: format!(
                "an answer {status} that does not parse: {}",
                String::from_utf8_lossy(&answer.body)
                    .chars()
                    .take(300)
                    .collect::<String>()
            ),
        },
    }
}

fn json_body(value: &serde_json::Value) -> (&'static str, Bytes) {
    ("application/json", Bytes::from(value.to_string()))
}

fn order_snapshot(v: &serde_json::Value) -> Option<OrderSnapshot> {
    Some(OrderSnapshot {
        id: v.get("id")?.as_str()?.to_owned(),
        created_at_ms: v.get("created_at_ms")?.as_u64()?,
        accepted_by: v.get("accepted_by")?.as_u64()?,
        customer: v.get("customer")?.as_str()?.to_owned(),
    })
}

// ---------------------------------------------------------------- clients

struct Shared {
    http: Http,
    config: WorkloadConfig,
    run: String,
    started: Instant,
    next_process: AtomicU64,
    resource: FencedResource,
}

impl Shared {
    fn now(&self) -> Micros {
        micros(self.started.elapsed())
    }

    fn generation(&self) -> u128 {
        self.started.elapsed().as_millis() / self.config.rotation.as_millis().max(1)
    }
}

#[derive(Debug, Default)]
struct ClientLog {
    ops: Vec<Op>,
    increments: Vec<Increment>,
    orders: Vec<OrderCommand>,
}

#[derive(Debug, Clone, Copy)]
enum Role {
    Kv,
    Counter,
    Lock,
    Order,
}

struct Worker {
    id: u32,
    /// The client's index among the clients of its role.
    index: usize,
    node: usize,
    process: u64,
    seq: u64,
    rng: fastrand::Rng,
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
    log: ClientLog,
    /// The revision last seen of each key.
    revisions: HashMap<String, u64>,
}

impl Worker {
    fn stopped(&self) -> bool {
        *self.stop.borrow()
    }

    /// Sleeps, waking early when the run stops.
    async fn pause(&mut self, d: Duration) {
        let mut stop = self.stop.clone();
        tokio::select! {
            _ = tokio::time::sleep(d) => {}
            _ = stop.wait_for(|s| *s) => {}
        }
    }

    async fn think(&mut self) {
        let (lo, hi) = self.shared.config.think;
        let (lo, hi) = (micros(lo), micros(hi).max(micros(lo)));
        let d = Duration::from_micros(self.rng.u64(lo..=hi));
        self.pause(d).await;
    }

    fn unique(&mut self, what: &str) -> String {
        self.seq += 1;
        format!("{}.c{}.{what}{}", self.shared.run, self.id, self.seq)
    }

    /// Makes one call and records it; a new process after an unknown
    /// outcome.
    async fn call(&mut self, call: Call) -> Outcome {
        let invoked_us = self.shared.now();
        let outcome = perform(
            &self.shared.http,
            self.node,
            &call,
            self.shared.config.request_timeout,
        )
        .await;
        let completed_us = self.shared.now();
        tracing::trace!(target: "catga_cluster_tests::workload", client = self.id, ?call, ?outcome);
        self.log.ops.push(Op {
            process: self.process,
            client: self.id,
            node: self.node,
            invoked_us,
            completed_us,
            call,
            outcome: outcome.clone(),
        });
        if outcome.is_unknown() {
            self.process = self.shared.next_process.fetch_add(1, Ordering::Relaxed);
        }
        outcome
    }

    async fn run(mut self, role: Role) -> ClientLog {
        while !self.stopped() {
            match role {
                Role::Kv => self.kv_step().await,
                Role::Counter => self.increment().await,
                Role::Lock => self.lock_cycle().await,
                Role::Order => self.order().await,
            }
            self.think().await;
        }
        self.log
    }

    fn group_key(&mut self, what: &str) -> String {
        let group = self.index / self.shared.config.clients_per_key.max(1);
        let k = self.rng.usize(0..self.shared.config.keys_per_group.max(1));
        format!(
            "{}/{what}/g{group}/r{}/k{k}",
            self.shared.run,
            self.shared.generation()
        )
    }

    async fn kv_step(&mut self) {
        let key = self.group_key("kv");
        let value = self.unique("v");
        let roll = self.rng.u32(0..100);
        let call = if roll < 40 {
            Call::KvRead { key: key.clone() }
        } else if roll < 55 {
            Call::KvPut {
                key: key.clone(),
                value,
            }
        } else if roll < 95 {
            let expected = match roll {
                55..=59 => 0,
                60..=64 => self.rng.u64(1..1000),
                _ => self.last_revision(&key),
            };
            Call::KvCas {
                key: key.clone(),
                expected,
                value,
            }
        } else {
            Call::KvDelete { key: key.clone() }
        };
        let outcome = self.call(call).await;
        match outcome {
            Outcome::Ok(Reply::Value { revision, .. } | Reply::Written { revision })
            | Outcome::Ok(Reply::Mismatch { current: revision }) => {
                self.remember(key, revision);
            }
            Outcome::Ok(Reply::NotFound | Reply::Deleted) => self.remember(key, 0),
            Outcome::Ok(_) => {}
            _ => {
                let backoff = self.shared.config.backoff;
                self.pause(backoff).await;
            }
        }
    }

    fn remember(&mut self, key: String, revision: u64) {
        if self.revisions.len() > 1000 {
            self.revisions.clear();
        }
        self.revisions.insert(key, revision);
    }

    fn last_revision(&self, key: &str) -> u64 {
        self.revisions.get(key).copied().unwrap_or(0)
    }
}

impl Worker {
    /// One idempotent increment, retried with its request id until it is
    /// acknowledged or the patience runs out.
    async fn increment(&mut self) {
        let counter = self.group_key("ctr");
        let request_id = self.unique("i");
        let invoked_us = self.shared.now();
        let give_up = Instant::now() + self.shared.config.patience;
        let mut writes = 0;
        let mut maybe = false;
        let resolution = loop {
            if self.stopped() || Instant::now() >= give_up {
                break if maybe {
                    Resolution::Unknown
                } else {
                    Resolution::NotApplied
                };
            }
            let (current, revision) = match self
                .call(Call::KvRead {
                    key: counter.clone(),
                })
                .await
            {
                Outcome::Ok(Reply::Value { value, revision }) => {
                    match serde_json::from_str::<CounterValue>(&value) {
                        Ok(current) => (current, revision),
                        Err(e) => {
                            tracing::error!(%counter, %value, error = %e, "a counter that does not parse");
                            break if maybe {
                                Resolution::Unknown
                            } else {
                                Resolution::NotApplied
                            };
                        }
                    }
                }
                Outcome::Ok(Reply::NotFound) => (CounterValue::default(), 0),
                _ => {
                    let backoff = self.shared.config.backoff;
                    self.pause(backoff).await;
                    continue;
                }
            };
            if current.ids.contains(&request_id) {
                break Resolution::Acknowledged;
            }
            let mut next = current;
            next.count += 1;
            next.ids.push(request_id.clone());
            writes += 1;
            let outcome = self
                .call(Call::KvCas {
                    key: counter.clone(),
                    expected: revision,
                    value: serde_json::to_string(&next).unwrap_or_default(),
                })
                .await;
            match outcome {
                Outcome::Ok(Reply::Written { .. }) => break Resolution::Acknowledged,
                Outcome::Ok(_) => {}
                Outcome::Failed { status: None, .. } => {
                    let backoff = self.shared.config.backoff;
                    self.pause(backoff).await;
                }
                Outcome::Failed { .. } => {
                    // Refused by validation: a bug of the workload; it
                    // will not get better.
                    tracing::error!(?outcome, "an increment was refused");
                    break if maybe {
                        Resolution::Unknown
                    } else {
                        Resolution::NotApplied
                    };
                }
                Outcome::Refused { .. } | Outcome::Unknown { .. } => {
                    // A refusal is taken at its word by the checker of the
                    // key's calls; here it may have been applied.
                    maybe = true;
                    let backoff = self.shared.config.backoff;
                    self.pause(backoff).await;
                }
            }
        };
        self.log.increments.push(Increment {
            client: self.id,
            counter,
            request_id,
            invoked_us,
            completed_us: self.shared.now(),
            writes,
            resolution,
        });
    }

    /// Acquire, use the resource under the token, maybe renew, maybe let
    /// the lease lapse, release.
    async fn lock_cycle(&mut self) {
        let lock = if self.rng.u32(0..100) < 60 {
            format!(
                "{}.lock.shared.r{}",
                self.shared.run,
                self.shared.generation()
            )
        } else {
            format!(
                "{}.lock.own{}.r{}",
                self.shared.run,
                self.id,
                self.shared.generation()
            )
        };
        let owner = format!("{}.c{}.p{}", self.shared.run, self.id, self.process);
        let (lo, hi) = self.shared.config.lock_ttl_ms;
        let ttl_ms = self.rng.u64(lo.max(1)..=hi.max(lo.max(1)));
        let wait_ms = if self.rng.bool() {
            0
        } else {
            self.rng.u64(0..=self.shared.config.lock_wait_ms)
        };
        let invoked = self.shared.now();
        let outcome = self
            .call(Call::LockAcquire {
                lock: lock.clone(),
                owner: owner.clone(),
                ttl_ms,
                wait_ms,
            })
            .await;
        let token = match outcome {
            Outcome::Ok(Reply::Granted { token, .. }) => token,
            Outcome::Ok(_) => return,
            _ => {
                let backoff = self.shared.config.backoff;
                self.pause(backoff).await;
                return;
            }
        };
        // The lease as the holder sees it: from before it asked.
        let mut valid_until = invoked + ttl_ms * 1000;
        let margin = 2_000;
        let uses = self.rng.u32(1..=3);
        let mut refused = false;
        for _ in 0..uses {
            if self.shared.now() + margin >= valid_until {
                break;
            }
            if !self
                .shared
                .resource
                .try_use(&lock, self.id, &owner, token, valid_until)
            {
                refused = true;
                break;
            }
            self.think().await;
        }
        let mut lost = false;
        if !refused && !self.stopped() && self.rng.u32(0..100) < 30 {
            let invoked = self.shared.now();
            match self
                .call(Call::LockRenew {
                    lock: lock.clone(),
                    owner: owner.clone(),
                    token,
                    ttl_ms,
                })
                .await
            {
                Outcome::Ok(Reply::Granted { .. }) => {
                    valid_until = invoked + ttl_ms * 1000;
                    if self.shared.now() + margin < valid_until {
                        self.shared
                            .resource
                            .try_use(&lock, self.id, &owner, token, valid_until);
                    }
                }
                Outcome::Ok(_) => lost = true,
                // The process changed: the lock is left to lapse.
                Outcome::Unknown { .. } => return,
                _ => {}
            }
        }
        if lost {
            return;
        }
        if !self.stopped() && self.rng.u32(0..100) < 10 {
            // Let the lease lapse, then release late.
            let past = Duration::from_micros(valid_until.saturating_sub(self.shared.now()))
                + Duration::from_millis(20);
            self.pause(past).await;
        }
        self.shared.resource.release(&lock, token);
        self.call(Call::LockRelease { lock, owner, token }).await;
    }

    /// One idempotent order creation, retried with its key.
    async fn order(&mut self) {
        self.seq += 1;
        // Idempotency keys: letters, digits, `-`, `_`, `.`.
        let key = format!("{}-c{}-o{}", self.shared.run, self.id, self.seq);
        let give_up = Instant::now() + self.shared.config.patience;
        let mut attempts = 0;
        let mut maybe = false;
        let mut acknowledged = None;
        let resolution = loop {
            if self.stopped() || Instant::now() >= give_up {
                break if maybe {
                    Resolution::Unknown
                } else {
                    Resolution::NotApplied
                };
            }
            attempts += 1;
            match self
                .call(Call::OrderCreate {
                    idempotency_key: key.clone(),
                })
                .await
            {
                Outcome::Ok(Reply::Order { order, .. }) => {
                    acknowledged = Some(order);
                    break Resolution::Acknowledged;
                }
                Outcome::Failed {
                    status: Some(_), ..
                }
                | Outcome::Ok(_) => {
                    break if maybe {
                        Resolution::Unknown
                    } else {
                        Resolution::NotApplied
                    };
                }
                Outcome::Failed { status: None, .. } => {}
                Outcome::Refused { .. } | Outcome::Unknown { .. } => maybe = true,
            }
            let backoff = self.shared.config.backoff;
            self.pause(backoff).await;
        };
        if acknowledged.is_some() && self.rng.u32(0..100) < 25 {
            // A client that repeats a request it got an answer to: the
            // same order again, not a new one.
            attempts += 1;
            self.call(Call::OrderCreate {
                idempotency_key: key.clone(),
            })
            .await;
        }
        self.log.orders.push(OrderCommand {
            client: self.id,
            order_id: format!("idem-{key}"),
            idempotency_key: key,
            attempts,
            acknowledged,
            resolution,
        });
    }
}

/// Starts workloads.
#[derive(Debug)]
pub struct Workload;

impl Workload {
    /// Starts the clients (on the current Tokio runtime). The run lasts
    /// until [`RunningWorkload::stop`].
    pub fn start(config: WorkloadConfig) -> RunningWorkload {
        assert!(!config.endpoints.is_empty(), "a workload needs endpoints");
        let started = Instant::now();
        let run = config.run.clone().unwrap_or_else(|| {
            format!(
                "wl{:x}-{:06x}",
                config.seed & 0xffff_ffff,
                fastrand::u32(..0x100_0000)
            )
        });
        let shared = Arc::new(Shared {
            http: Http::new(&config),
            config: config.clone(),
            run: run.clone(),
            started,
            next_process: AtomicU64::new(1),
            resource: FencedResource::new(started),
        });
        let (stop, stopped) = watch::channel(false);
        let nodes = config.endpoints.len();
        let mut tasks = Vec::new();
        let mut id = 0u32;
        for (role, per_node) in [
            (Role::Kv, config.kv_clients_per_node),
            (Role::Counter, config.counter_clients_per_node),
            (Role::Lock, config.lock_clients_per_node),
            (Role::Order, config.order_clients_per_node),
        ] {
            for index in 0..per_node * nodes {
                let worker = Worker {
                    id,
                    index,
                    // Neighbours in a key group sit on different nodes.
                    node: index % nodes,
                    process: shared.next_process.fetch_add(1, Ordering::Relaxed),
                    seq: 0,
                    rng: fastrand::Rng::with_seed(
                        config.seed ^ u64::from(id).wrapping_mul(0x9e37_79b9_7f4a_7c15),
                    ),
                    shared: shared.clone(),
                    stop: stopped.clone(),
                    log: ClientLog::default(),
                    revisions: HashMap::new(),
                };
                tasks.push(tokio::spawn(worker.run(role)));
                id += 1;
            }
        }
        tracing::info!(target: "catga_cluster_tests::workload", %run, seed = config.seed, clients = id, "workload started");
        RunningWorkload {
            shared,
            stop,
            tasks,
        }
    }
}

/// A workload that runs.
#[derive(Debug)]
pub struct RunningWorkload {
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<ClientLog>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("run", &self.run)
            .field("endpoints", &self.config.endpoints)
            .finish_non_exhaustive()
    }
}

impl RunningWorkload {
    /// The prefix of this run's keys, locks and idempotency keys.
    pub fn run(&self) -> &str {
        &self.shared.run
    }

    /// Time since the start, on the history's clock.
    pub fn elapsed(&self) -> Duration {
        self.shared.started.elapsed()
    }

    /// Stops the clients (each finishes its call in flight, bounded by the
    /// call's deadline) and returns the history.
    pub async fn stop(self) -> History {
        let _ = self.stop.send(true);
        let mut history = History {
            seed: self.shared.config.seed,
            endpoints: self.shared.config.endpoints.clone(),
            run: self.shared.run.clone(),
            ..History::default()
        };
        for task in self.tasks {
            match task.await {
                Ok(log) => {
                    history.ops.extend(log.ops);
                    history.increments.extend(log.increments);
                    history.orders.extend(log.orders);
                }
                Err(e) => tracing::error!(error = %e, "a workload client failed"),
            }
        }
        history.duration_us = self.shared.now();
        history.fences = self.shared.resource.records();
        history
            .ops
            .sort_by_key(|op| (op.invoked_us, op.completed_us, op.process));
        history
    }
}

/// After the run and healing: every key and order of `history`, read on
/// every node with linearizable reads, each retried until a definite
/// answer or [`WorkloadConfig::patience`].
pub async fn read_back(config: &WorkloadConfig, history: &History) -> FinalReads {
    let http = Http::new(config);
    let nodes = config.endpoints.len();
    let timeout = config.request_timeout;
    let patience = config.patience;
    let backoff = config.backoff;
    let kv_reads = history
        .kv_keys()
        .into_iter()
        .flat_map(|key| (0..nodes).map(move |node| (node, key.to_owned())))
        .map(|(node, key)| {
            let http = http.clone();
            async move {
                let give_up = Instant::now() + patience;
                let call = Call::KvRead { key: key.clone() };
                loop {
                    let outcome = perform(&http, node, &call, timeout).await;
                    match outcome {
                        Outcome::Ok(reply) => {
                            return FinalRead {
                                node,
                                key,
                                reply: Some(reply),
                                error: None,
                            }
                        }
                        other if Instant::now() >= give_up => {
                            return FinalRead {
                                node,
                                key,
                                reply: None,
                                error: Some(format!("{other:?}")),
                            }
                        }
                        _ => tokio::time::sleep(backoff).await,
                    }
                }
            }
        });
    let kv = futures_util::stream::iter(kv_reads)
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    let order_reads = history
        .orders
        .iter()
        .flat_map(|o| (0..nodes).map(move |node| (node, o)))
        .map(|(node, order)| {
            let http = http.clone();
            async move {
                let give_up = Instant::now() + patience;
                let path = format!("/orders/{}", order.order_id);
                loop {
                    let answer = http
                        .send(node, Method::GET, &path, &[], None, timeout)
                        .await;
                    let (found, error) = match &answer {
                        Ok(a) if a.status == StatusCode::OK => {
                            match a.json().as_ref().and_then(order_snapshot) {
                                Some(o) => (Some(Some(o)), None),
                                None => (None, Some("an order that does not parse".to_owned())),
                            }
                        }
                        Ok(a) if a.status == StatusCode::NOT_FOUND => (Some(None), None),
                        Ok(a) => (None, Some(format!("{:?}", classify_error(a)))),
                        Err(e) => (None, Some(format!("{e:?}"))),
                    };
                    if let Some(order_found) = found {
                        return FinalOrder {
                            node,
                            idempotency_key: order.idempotency_key.clone(),
                            order: order_found,
                            error: None,
                        };
                    }
                    if Instant::now() >= give_up {
                        return FinalOrder {
                            node,
                            idempotency_key: order.idempotency_key.clone(),
                            order: None,
                            error,
                        };
                    }
                    tokio::time::sleep(backoff).await;
                }
            }
        });
    let orders = futures_util::stream::iter(order_reads)
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    FinalReads { kv, orders }
}
