//! The example application's binary (`order-system`) as OS processes, for
//! the faults only a real process has: `SIGKILL` (the kernel closes its
//! sockets, unsynced writes are gone), `SIGSTOP`/`SIGCONT` (frozen with its
//! sockets open, its clock-driven work frozen too), `SIGTERM` (the graceful
//! hand-over), and a kill in the middle of a membership change.
//!
//! A [`ProcessCluster`] configures every member as an operator would,
//! through `Cluster__*` environment variables (explicit numeric ids, the
//! other members' endpoints, a cluster secret) and `--port`/`--data-dir`;
//! its members listen on `127.0.0.1` or, for the network-namespace suite
//! ([`crate::netns`]), on addresses inside namespaces, started through
//! `ip netns exec`. Each member's output goes to a log file, whose tail is
//! printed when a test panics.
//!
//! [`Writers`] is a small recording client: unique keys written with
//! `PUT /cluster/kv/{key}`, every acknowledgement kept with its time, so a
//! test can check that every acknowledged write is on every node
//! ([`ProcessCluster::verify_on_every_node`]) and measure the windows
//! without acknowledgements.
//!
//! # The binary
//!
//! [`order_system_binary`] runs `cargo build -p order-system` (with
//! `--release` when the tests were built so) once per test process and
//! uses the binary in the same target directory as the test executable: a
//! no-op when it is up to date, and never a stale binary after a change to
//! a library crate. `CATGA_ORDER_SYSTEM_BIN=<path>` uses that binary
//! instead and builds nothing.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;
use rustix::process::Signal;
use serde_json::Value;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// How long a cluster may take to start or to agree on a leader again.
pub const SETTLE: Duration = Duration::from_secs(30);
/// The deadline of a control request (status, admin calls, reads).
pub const CONTROL_DEADLINE: Duration = Duration::from_secs(10);

/// A pooled keep-alive HTTP/1.1 client.
pub type Client = HyperClient<HttpConnector, Full<Bytes>>;

/// A client that keeps up to `idle` connections per host open.
pub fn client(idle: usize) -> Client {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(Duration::from_secs(2)));
    HyperClient::builder(TokioExecutor::new())
        .pool_max_idle_per_host(idle)
        .pool_idle_timeout(Duration::from_secs(30))
        .build(connector)
}

/// How one request ended.
#[derive(Debug)]
pub enum Outcome {
    /// An answer with this status, these headers and this body.
    Answer(StatusCode, HeaderMap, Bytes),
    /// The connection could not be made (refused, no route): the request
    /// was never sent, so a client may send it elsewhere.
    NotSent,
    /// The request may have been sent but no answer came: a broken or
    /// reset connection, or the deadline passed.
    Lost(String),
}

impl Outcome {
    /// Whether this is a 2xx answer.
    pub fn is_success(&self) -> bool {
        matches!(self, Outcome::Answer(status, _, _) if status.is_success())
    }

    /// The status of an answer.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Outcome::Answer(status, _, _) => Some(*status),
            _ => None,
        }
    }

    /// The body of a 2xx answer, or what went wrong.
    pub fn ok(self) -> Result<Bytes, String> {
        match self {
            Outcome::Answer(status, _, body) if status.is_success() => Ok(body),
            Outcome::Answer(status, _, body) => Err(format!(
                "{status}: {}",
                String::from_utf8_lossy(&body[..body.len().min(300)])
            )),
            Outcome::NotSent => Err("connection refused (not sent)".into()),
            Outcome::Lost(reason) => Err(reason),
        }
    }

    /// The `x-catga-served-by` node id of an answer.
    pub fn served_by(&self) -> Option<u64> {
        match self {
            Outcome::Answer(_, headers, _) => headers
                .get("x-catga-served-by")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok()),
            _ => None,
        }
    }
}

/// Sends one request to `http://{authority}{path}` (with the secret as a
/// bearer token when given) and reads the whole answer within `deadline`.
pub async fn send(
    client: &Client,
    secret: Option<&str>,
    method: Method,
    authority: &str,
    path: &str,
    body: Option<(&'static str, Bytes)>,
    deadline: Duration,
) -> Outcome {
    let mut request = Request::builder()
        .method(method)
        .uri(format!("http://{authority}{path}"));
    if let Some(secret) = secret {
        request = request.header(http::header::AUTHORIZATION, format!("Bearer {secret}"));
    }
    let body = match body {
        Some((content_type, body)) => {
            request = request.header(http::header::CONTENT_TYPE, content_type);
            body
        }
        None => Bytes::new(),
    };
    let request = match request.body(Full::new(body)) {
        Ok(request) => request,
        Err(e) => return Outcome::Lost(format!("bad request: {e}")),
    };
    let exchange = async {
        let response = match client.request(request).await {
            Ok(response) => response,
            Err(e) if e.is_connect() => return Outcome::NotSent,
            Err(e) => return Outcome::Lost(format!("request failed: {e:?}")),
        };
        let (parts, body) = response.into_parts();
        match body.collect().await {
            Ok(body) => Outcome::Answer(parts.status, parts.headers, body.to_bytes()),
            Err(e) => Outcome::Lost(format!("answer broken: {e}")),
        }
    };
    match tokio::time::timeout(deadline, exchange).await {
        Ok(outcome) => outcome,
        Err(_) => Outcome::Lost(format!("no answer within {deadline:?}")),
    }
}

/// The `order-system` binary, built if needed; see the
/// [module docs](self#the-binary).
pub fn order_system_binary() -> Result<PathBuf, String> {
    static BINARY: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BINARY.get_or_init(locate_and_build).clone()
}

fn locate_and_build() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("CATGA_ORDER_SYSTEM_BIN") {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!(
                "CATGA_ORDER_SYSTEM_BIN={} is not a file",
                path.display()
            ))
        };
    }
    // The test executable is `<target>/<profile>/deps/<name>-<hash>`; the
    // binary goes to `<target>/<profile>/order-system`.
    let exe = std::env::current_exe().map_err(|e| format!("no current executable: {e}"))?;
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or_else(|| format!("unexpected test executable path {}", exe.display()))?;
    let release = profile_dir.file_name().is_some_and(|n| n == "release");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = Command::new(cargo);
    // Built together with this crate, so that the shared dependencies get
    // the features they have in the test build: `-p order-system` alone
    // would resolve other features, and the two builds would rebuild the
    // libraries in turn. The binary then has this crate's features on the
    // shared crates (`test-util` of the Raft crate, which adds only test
    // transports it does not use).
    build
        .args([
            "build",
            "-p",
            "order-system",
            "-p",
            "catga-cluster-tests",
            "--bin",
            "order-system",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    if release {
        build.arg("--release");
    }
    if let Some(target) = profile_dir.parent() {
        build.env("CARGO_TARGET_DIR", target);
    }
    let status = build
        .status()
        .map_err(|e| format!("cannot run cargo to build order-system: {e}"))?;
    if !status.success() {
        return Err(format!("cargo build -p order-system failed: {status}"));
    }
    let binary = profile_dir.join(format!("order-system{}", std::env::consts::EXE_SUFFIX));
    if binary.is_file() {
        Ok(binary)
    } else {
        Err(format!("{} missing after the build", binary.display()))
    }
}

/// Where one member listens, and how it is started.
#[derive(Debug, Clone)]
pub struct MemberSpec {
    /// Its node id (what `Cluster__LocalNodeId` says).
    pub id: u64,
    /// The address it listens on and its endpoint names.
    pub host: String,
    /// Its HTTP port.
    pub port: u16,
    /// The network namespace it runs in (`ip netns exec`), if any.
    pub netns: Option<String>,
}

impl MemberSpec {
    /// `host:port`.
    pub fn authority(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// `http://host:port`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.authority())
    }
}

#[derive(Debug)]
struct Member {
    spec: MemberSpec,
    /// The ids and endpoints of the members it is configured with
    /// (itself excluded).
    peers: Vec<(u64, String)>,
    child: Option<Child>,
    log: PathBuf,
    starts: u32,
    /// Added at run time: it joins the running cluster
    /// (`Cluster__ColdStart=false`) instead of founding one.
    joins: bool,
}

/// The example's binary as N member processes; see the
/// [module docs](self).
#[derive(Debug)]
pub struct ProcessCluster {
    members: Vec<Member>,
    program: PathBuf,
    secret: String,
    http: Client,
    dir: tempfile::TempDir,
}

impl ProcessCluster {
    /// A cluster of `n` members on `127.0.0.1` (free ports), ids `1..=n`,
    /// with a cluster secret; nothing started yet.
    pub fn loopback(n: usize) -> Result<ProcessCluster, String> {
        let ports = free_ports(n)?;
        let specs = ports
            .into_iter()
            .enumerate()
            .map(|(i, port)| MemberSpec {
                id: i as u64 + 1,
                host: "127.0.0.1".into(),
                port,
                netns: None,
            })
            .collect();
        ProcessCluster::new(specs)
    }

    /// A cluster of these members, each configured with all the others;
    /// nothing started yet.
    pub fn new(specs: Vec<MemberSpec>) -> Result<ProcessCluster, String> {
        let program = order_system_binary()?;
        let dir = tempfile::Builder::new()
            .prefix("catga-process-")
            .tempdir()
            .map_err(|e| format!("no temporary directory: {e}"))?;
        let members = specs
            .iter()
            .map(|spec| Member {
                peers: specs
                    .iter()
                    .filter(|s| s.id != spec.id)
                    .map(|s| (s.id, s.endpoint()))
                    .collect(),
                log: dir.path().join(format!("node{}.log", spec.id)),
                spec: spec.clone(),
                child: None,
                starts: 0,
                joins: false,
            })
            .collect();
        Ok(ProcessCluster {
            members,
            program,
            secret: format!("process-suite-{}-{}", std::process::id(), fastrand::u64(..)),
            http: client(8),
            dir,
        })
    }

    /// Adds a member on a free loopback port, configured with every
    /// current member (which are not told about it: it joins through
    /// `POST /cluster/members`); not started. Returns its index.
    pub fn add_spare(&mut self) -> Result<usize, String> {
        let port = free_ports(1)?[0];
        let id = self.members.iter().map(|m| m.spec.id).max().unwrap_or(0) + 1;
        let spec = MemberSpec {
            id,
            host: "127.0.0.1".into(),
            port,
            netns: None,
        };
        self.members.push(Member {
            peers: self
                .members
                .iter()
                .map(|m| (m.spec.id, m.spec.endpoint()))
                .collect(),
            log: self.dir.path().join(format!("node{id}.log")),
            spec,
            child: None,
            starts: 0,
            joins: true,
        });
        Ok(self.members.len() - 1)
    }

    /// How many members (running or not).
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether there are no members.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The cluster secret.
    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// Member `i`'s node id.
    pub fn id(&self, i: usize) -> u64 {
        self.members[i].spec.id
    }

    /// The index of the member with node id `id`.
    pub fn index_of(&self, id: u64) -> Option<usize> {
        self.members.iter().position(|m| m.spec.id == id)
    }

    /// Member `i`'s `host:port`.
    pub fn authority(&self, i: usize) -> String {
        self.members[i].spec.authority()
    }

    /// Every member's `host:port`, by index.
    pub fn authorities(&self) -> Vec<String> {
        self.members.iter().map(|m| m.spec.authority()).collect()
    }

    /// Whether member `i`'s process runs (was started and not reaped).
    pub fn is_running(&self, i: usize) -> bool {
        self.members[i].child.is_some()
    }

    /// The indexes of the running members.
    pub fn running(&self) -> Vec<usize> {
        (0..self.members.len())
            .filter(|&i| self.is_running(i))
            .collect()
    }

    /// Member `i`'s process id, if it runs.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.members[i].child.as_ref().map(Child::id)
    }

    /// Starts every member that does not run, then waits until all agree
    /// on a leader; returns its index.
    pub async fn start_all(&mut self) -> Result<usize, String> {
        for i in 0..self.members.len() {
            if !self.is_running(i) {
                self.spawn(i)?;
            }
        }
        self.settle(SETTLE).await
    }

    /// Starts member `i` (again) on its port and data directory.
    pub fn spawn(&mut self, i: usize) -> Result<(), String> {
        if self.is_running(i) {
            return Err(format!("member {i} runs already"));
        }
        let member = &self.members[i];
        let log = File::options()
            .create(true)
            .append(true)
            .open(&member.log)
            .map_err(|e| format!("{}: {e}", member.log.display()))?;
        let err = log.try_clone().map_err(|e| e.to_string())?;
        let mut command = match &member.spec.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(&self.program);
                c
            }
            None => Command::new(&self.program),
        };
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("Cluster__") {
                command.env_remove(key);
            }
        }
        let spec = &member.spec;
        command
            .env("Cluster__LocalNodeEndpoint", spec.endpoint())
            .env("Cluster__LocalNodeId", spec.id.to_string())
            .env("Cluster__Secret", &self.secret)
            .env("RUST_LOG", "info,openraft=warn");
        if member.joins {
            command.env("Cluster__ColdStart", "false");
        }
        if spec.host != "127.0.0.1" {
            // A secret over plain HTTP to another host is refused unless
            // allowed: these hosts are namespaces on one machine.
            command.env("Cluster__AllowInsecureTransport", "true");
        }
        for (k, (id, endpoint)) in member.peers.iter().enumerate() {
            command
                .env(format!("Cluster__Members__{k}__Id"), id.to_string())
                .env(format!("Cluster__Members__{k}__Endpoint"), endpoint);
        }
        command
            .arg("--port")
            .arg(spec.port.to_string())
            .arg("--data-dir")
            .arg(self.dir.path().join("data"))
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err);
        let child = command
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.program.display()))?;
        let member = &mut self.members[i];
        member.child = Some(child);
        member.starts += 1;
        Ok(())
    }

    /// Sends `signal` to member `i`'s process.
    pub fn signal(&self, i: usize, signal: Signal) -> Result<(), String> {
        let pid = self
            .pid(i)
            .ok_or_else(|| format!("member {i} does not run"))?;
        let pid = rustix::process::Pid::from_raw(pid as i32)
            .ok_or_else(|| format!("bad process id {pid}"))?;
        rustix::process::kill_process(pid, signal)
            .map_err(|e| format!("signal {signal:?} to member {i}: {e}"))
    }

    /// Waits (up to `deadline`) until member `i`'s process has exited,
    /// reaps it and returns its exit status.
    pub async fn wait_exit(
        &mut self,
        i: usize,
        deadline: Duration,
    ) -> Result<std::process::ExitStatus, String> {
        let until = Instant::now() + deadline;
        loop {
            let child = self.members[i]
                .child
                .as_mut()
                .ok_or_else(|| format!("member {i} does not run"))?;
            if let Some(status) = child.try_wait().map_err(|e| format!("member {i}: {e}"))? {
                self.members[i].child = None;
                return Ok(status);
            }
            if Instant::now() > until {
                return Err(format!("member {i} did not exit within {deadline:?}"));
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// `SIGKILL`s member `i` and reaps it; nothing if it does not run.
    pub async fn kill(&mut self, i: usize) -> Result<(), String> {
        if self.is_running(i) {
            // A stopped process dies of SIGKILL too.
            self.signal(i, Signal::KILL)?;
            self.wait_exit(i, Duration::from_secs(10)).await?;
        }
        Ok(())
    }

    /// One request to member `i` with the secret, within `deadline`.
    pub async fn request(
        &self,
        i: usize,
        method: Method,
        path: &str,
        body: Option<(&'static str, Bytes)>,
        deadline: Duration,
    ) -> Outcome {
        send(
            &self.http,
            Some(&self.secret),
            method,
            &self.authority(i),
            path,
            body,
            deadline,
        )
        .await
    }

    /// Member `i`'s `GET /cluster/status`.
    pub async fn status(&self, i: usize) -> Result<Value, String> {
        let body = self
            .request(
                i,
                Method::GET,
                "/cluster/status",
                None,
                Duration::from_secs(2),
            )
            .await
            .ok()
            .map_err(|e| format!("status of member {i}: {e}"))?;
        serde_json::from_slice(&body).map_err(|e| format!("status of member {i}: {e}"))
    }

    /// Waits until every running member names the same running leader
    /// (which holds a valid lease) and is ready; returns its index.
    pub async fn settle(&self, deadline: Duration) -> Result<usize, String> {
        let until = Instant::now() + deadline;
        loop {
            let last = match self.agreed_leader().await {
                Ok(leader) => return Ok(leader),
                Err(why) => why,
            };
            if Instant::now() > until {
                return Err(format!(
                    "the cluster did not settle within {deadline:?}: {last}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    async fn agreed_leader(&self) -> Result<usize, String> {
        let mut agreed: Option<u64> = None;
        for i in self.running() {
            let status = self.status(i).await?;
            let leader = status["leader"]["id"]
                .as_u64()
                .ok_or_else(|| format!("member {i} knows no leader"))?;
            if status["node"]["id"].as_u64() == Some(leader) && status["lease_valid"] != true {
                return Err(format!("member {i} leads without a valid lease"));
            }
            if agreed.is_some_and(|a| a != leader) {
                return Err("members name different leaders".into());
            }
            agreed = Some(leader);
            let ready = self
                .request(
                    i,
                    Method::GET,
                    "/health/ready",
                    None,
                    Duration::from_secs(2),
                )
                .await;
            if ready.status() != Some(StatusCode::OK) {
                return Err(format!("member {i} is not ready: {:?}", ready.ok()));
            }
        }
        let leader = agreed.ok_or("no member runs")?;
        let index = self
            .index_of(leader)
            .ok_or_else(|| format!("leader id {leader} is not a member"))?;
        if !self.is_running(index) {
            return Err(format!("the named leader {leader} does not run"));
        }
        Ok(index)
    }

    /// The voters as member `i` sees them (sorted ids), with its
    /// `last_applied`.
    pub async fn voters_seen_by(&self, i: usize) -> Result<(Vec<u64>, u64), String> {
        let status = self.status(i).await?;
        let mut voters: Vec<u64> = status["members"]
            .as_array()
            .ok_or_else(|| format!("member {i}: status without members"))?
            .iter()
            .filter(|m| m["voter"] == true)
            .filter_map(|m| m["id"].as_u64())
            .collect();
        voters.sort_unstable();
        Ok((voters, status["last_applied"].as_u64().unwrap_or(0)))
    }

    /// `POST /cluster/members` on member `via`, adding member `i`.
    pub async fn add_member(&self, via: usize, i: usize, deadline: Duration) -> Outcome {
        let body =
            serde_json::json!({ "id": self.id(i), "endpoint": self.members[i].spec.endpoint() });
        self.request(
            via,
            Method::POST,
            "/cluster/members",
            Some(("application/json", Bytes::from(body.to_string()))),
            deadline,
        )
        .await
    }

    /// `DELETE /cluster/members/{id}` on member `via`, removing member `i`.
    pub async fn remove_member(&self, via: usize, i: usize, deadline: Duration) -> Outcome {
        self.request(
            via,
            Method::DELETE,
            &format!("/cluster/members/{}", self.id(i)),
            None,
            deadline,
        )
        .await
    }

    /// Makes member `i` the leader (`POST /cluster/leadership/transfer`,
    /// retried while refused) and waits until it leads with a valid lease.
    pub async fn make_leader(&self, i: usize, deadline: Duration) -> Result<(), String> {
        let until = Instant::now() + deadline;
        let body = Bytes::from(serde_json::json!({ "to": self.id(i) }).to_string());
        let mut last = String::new();
        loop {
            if let Ok(status) = self.status(i).await {
                if status["role"] == "leader" && status["lease_valid"] == true {
                    return Ok(());
                }
            }
            if Instant::now() > until {
                return Err(format!(
                    "member {i} did not become leader within {deadline:?}: {last}"
                ));
            }
            let via = self.running().into_iter().find(|&j| j != i).unwrap_or(i);
            let answer = self
                .request(
                    via,
                    Method::POST,
                    "/cluster/leadership/transfer",
                    Some(("application/json", body.clone())),
                    CONTROL_DEADLINE,
                )
                .await;
            if let Err(e) = answer.ok() {
                last = e;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Checks that every acknowledged write is on every member in
    /// `members`: each is made the leader in turn and reads every key
    /// itself (a linearizable read on the leader is served from its own
    /// state machine; `x-catga-served-by` proves who served it).
    pub async fn verify_on_every_node(
        &self,
        acks: &[Ack],
        members: &[usize],
    ) -> Result<(), String> {
        for &i in members {
            let id = self.id(i);
            let mut attempt = 0;
            'member: loop {
                attempt += 1;
                if attempt > 5 {
                    return Err(format!(
                        "member {i} (id {id}) lost its leadership during every read-back"
                    ));
                }
                self.make_leader(i, SETTLE).await?;
                for ack in acks {
                    let answer = self
                        .request(
                            i,
                            Method::GET,
                            &format!("/cluster/kv/{}", ack.key),
                            None,
                            CONTROL_DEADLINE,
                        )
                        .await;
                    let served_by = answer.served_by();
                    match answer {
                        Outcome::Answer(status, _, body)
                            if status.is_success() && served_by == Some(id) =>
                        {
                            if body != ack.value.as_bytes() {
                                return Err(format!(
                                    "member {i} (id {id}): key {} holds {:?}, acknowledged {:?}",
                                    ack.key,
                                    String::from_utf8_lossy(&body),
                                    ack.value
                                ));
                            }
                        }
                        Outcome::Answer(StatusCode::NOT_FOUND, _, _) if served_by == Some(id) => {
                            return Err(format!(
                                "member {i} (id {id}): acknowledged write {} (at {:?} via member {}) is missing",
                                ack.key, ack.at, ack.via
                            ));
                        }
                        // Served elsewhere, or no answer: the member lost its
                        // leadership meanwhile; start over on it.
                        _ => continue 'member,
                    }
                }
                break;
            }
        }
        Ok(())
    }

    /// Checks that the running members in `members` agree on the voter set
    /// (polling until they do, up to `deadline`) and returns it.
    pub async fn agreed_voters(
        &self,
        members: &[usize],
        deadline: Duration,
    ) -> Result<Vec<u64>, String> {
        let until = Instant::now() + deadline;
        loop {
            let mut seen = Vec::new();
            for &i in members {
                seen.push(self.voters_seen_by(i).await.map(|(v, _)| v));
            }
            let first = seen.first().cloned().unwrap_or(Ok(Vec::new()));
            if let Ok(voters) = &first {
                if seen.iter().all(|s| s.as_ref() == Ok(voters)) {
                    return Ok(voters.clone());
                }
            }
            if Instant::now() > until {
                return Err(format!(
                    "members {members:?} disagree on the voters: {seen:?}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the members in `members` report the same
    /// `last_applied` (up to `deadline`) and returns it.
    pub async fn applied_converged(
        &self,
        members: &[usize],
        deadline: Duration,
    ) -> Result<u64, String> {
        let until = Instant::now() + deadline;
        loop {
            let mut seen = Vec::new();
            for &i in members {
                seen.push(self.voters_seen_by(i).await.map(|(_, applied)| applied));
            }
            if let Some(Ok(first)) = seen.first() {
                if seen.iter().all(|s| s.as_ref() == Ok(first)) {
                    return Ok(*first);
                }
            }
            if Instant::now() > until {
                return Err(format!(
                    "members {members:?} did not converge on one applied index: {seen:?}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The last `lines` lines of member `i`'s log.
    pub fn log_tail(&self, i: usize, lines: usize) -> String {
        let Ok(file) = File::open(&self.members[i].log) else {
            return String::new();
        };
        let all: Vec<String> = BufReader::new(file).lines().map_while(Result::ok).collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Kills every member.
    pub async fn stop(&mut self) {
        for i in 0..self.members.len() {
            let _ = self.kill(i).await;
        }
    }
}

impl Drop for ProcessCluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for i in 0..self.members.len() {
                eprintln!(
                    "--- member {i} (id {}) log tail ---\n{}",
                    self.id(i),
                    self.log_tail(i, 40)
                );
            }
        }
        for member in &mut self.members {
            if let Some(mut child) = member.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// `n` ports that were free on `127.0.0.1` a moment ago.
pub fn free_ports(n: usize) -> Result<Vec<u16>, String> {
    let listeners = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("no free port on 127.0.0.1: {e}"))?;
    listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())
}

/// One acknowledged write.
#[derive(Debug, Clone)]
pub struct Ack {
    /// The key.
    pub key: String,
    /// The value written.
    pub value: String,
    /// When the acknowledgement arrived.
    pub at: Instant,
    /// The member index it was sent to.
    pub via: usize,
}

/// What the writers saw.
#[derive(Debug, Clone, Default)]
pub struct WriteReport {
    /// Every acknowledged write, in acknowledgement order.
    pub acks: Vec<Ack>,
    /// Writes answered with an error, or sent and never answered.
    pub failed: Vec<String>,
    /// Connects refused: nothing was sent; the client moved on.
    pub refused: u64,
}

impl WriteReport {
    /// The acknowledgements at or after `t`.
    pub fn acks_after(&self, t: Instant) -> usize {
        self.acks.iter().filter(|a| a.at >= t).count()
    }

    /// The first acknowledgement at or after `t`, counted from `t`.
    pub fn first_ack_after(&self, t: Instant) -> Option<Duration> {
        self.acks
            .iter()
            .filter(|a| a.at >= t)
            .map(|a| a.at - t)
            .min()
    }

    /// The longest time without any acknowledgement between `from` and
    /// `to`.
    pub fn longest_gap(&self, from: Instant, to: Instant) -> Duration {
        let mut times: Vec<Instant> = self
            .acks
            .iter()
            .map(|a| a.at)
            .filter(|t| *t >= from && *t <= to)
            .collect();
        times.sort_unstable();
        let mut longest = Duration::ZERO;
        let mut previous = from;
        for t in times {
            longest = longest.max(t - previous);
            previous = t;
        }
        longest.max(to.saturating_duration_since(previous))
    }
}

/// Writers of unique keys (`PUT /cluster/kv/{prefix}-{writer}-{seq}`),
/// each on its own keep-alive connection, spread over the members; after
/// an error or a refused connect a writer moves to the next member. Every
/// acknowledgement is recorded.
#[derive(Debug)]
pub struct Writers {
    stop: Arc<AtomicBool>,
    report: Arc<Mutex<WriteReport>>,
    sent: Arc<AtomicU64>,
    tasks: Vec<JoinHandle<()>>,
}

impl Writers {
    /// Starts `n` writers over `authorities` (member `i` is
    /// `authorities[i]`; `None` entries are skipped), each request within
    /// `deadline`.
    pub fn start(
        n: usize,
        prefix: &str,
        authorities: Vec<Option<String>>,
        secret: &str,
        deadline: Duration,
    ) -> Writers {
        let stop = Arc::new(AtomicBool::new(false));
        let report = Arc::new(Mutex::new(WriteReport::default()));
        let sent = Arc::new(AtomicU64::new(0));
        let targets: Arc<Vec<(usize, String)>> = Arc::new(
            authorities
                .into_iter()
                .enumerate()
                .filter_map(|(i, a)| a.map(|a| (i, a)))
                .collect(),
        );
        let tasks = (0..n)
            .map(|w| {
                let (stop, report, sent, targets) =
                    (stop.clone(), report.clone(), sent.clone(), targets.clone());
                let (prefix, secret) = (prefix.to_owned(), secret.to_owned());
                tokio::spawn(async move {
                    let http = client(1);
                    let mut target = w % targets.len();
                    let mut seq = 0u64;
                    while !stop.load(Ordering::SeqCst) {
                        seq += 1;
                        let key = format!("{prefix}-{w}-{seq}");
                        let value = format!("{prefix} writer {w} write {seq}");
                        let (via, authority) = &targets[target];
                        sent.fetch_add(1, Ordering::Relaxed);
                        let outcome = send(
                            &http,
                            Some(&secret),
                            Method::PUT,
                            authority,
                            &format!("/cluster/kv/{key}"),
                            Some(("application/octet-stream", Bytes::from(value.clone()))),
                            deadline,
                        )
                        .await;
                        let acked = {
                            let mut report = report.lock().unwrap_or_else(|e| e.into_inner());
                            match outcome {
                                Outcome::Answer(status, _, _) if status.is_success() => {
                                    report.acks.push(Ack {
                                        key,
                                        value,
                                        at: Instant::now(),
                                        via: *via,
                                    });
                                    true
                                }
                                Outcome::NotSent => {
                                    report.refused += 1;
                                    false
                                }
                                other => {
                                    report.failed.push(format!(
                                        "{key} via member {via}: {:?}",
                                        other.ok().err()
                                    ));
                                    false
                                }
                            }
                        };
                        if acked {
                            continue;
                        }
                        target = (target + 1) % targets.len();
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                })
            })
            .collect();
        Writers {
            stop,
            report,
            sent,
            tasks,
        }
    }

    /// How many acknowledgements so far.
    pub fn acked(&self) -> usize {
        self.report
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .acks
            .len()
    }

    /// A copy of what was recorded so far.
    pub fn snapshot(&self) -> WriteReport {
        self.report
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// How many writes were sent (or tried) so far.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Waits until at least `n` acknowledgements at or after `since`
    /// arrived, up to `deadline`; returns whether they did.
    pub async fn wait_acks_after(&self, since: Instant, n: usize, deadline: Duration) -> bool {
        let until = Instant::now() + deadline;
        loop {
            if self.snapshot().acks_after(since) >= n {
                return true;
            }
            if Instant::now() > until {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Stops the writers (each finishes its request in flight) and
    /// returns the report.
    pub async fn stop(mut self) -> WriteReport {
        self.stop.store(true, Ordering::SeqCst);
        for task in std::mem::take(&mut self.tasks) {
            let _ = task.await;
        }
        let report = self.report.lock().unwrap_or_else(|e| e.into_inner());
        report.clone()
    }
}

impl Drop for Writers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}
