//! The systems under test, each as three OS processes on loopback: the
//! example application (`order-system`) and etcd. Both are driven over
//! their HTTP APIs only: ours directly, etcd's through its JSON gateway
//! (`/v3/...`), the API a non-Go client uses without gRPC.

use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use bytes::Bytes;
use http::Method;
use rustix::process::Signal;
use serde_json::Value;
use tokio::time::Instant;

use crate::http::{send, Client, Outcome};

/// Which system a cluster runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// catga-cluster, as the example application's binary.
    Catga,
    /// etcd 3.4 through its JSON gateway.
    Etcd,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Catga => "catga-cluster",
            Kind::Etcd => "etcd",
        })
    }
}

/// The deadline of a request that is not part of a measurement.
const CONTROL_DEADLINE: Duration = Duration::from_secs(5);
/// The lease of an etcd lock session, and the TTL of our locks.
const LOCK_TTL: Duration = Duration::from_secs(30);
/// How long a lock acquire may wait for a contended lock on our side; etcd's
/// lock call waits without a bound.
const LOCK_WAIT: Duration = Duration::from_secs(20);

/// One member process.
#[derive(Debug)]
struct Node {
    /// Its id in the cluster: ours is the index, etcd's a generated `u64`.
    id: u64,
    client_port: u16,
    /// etcd's peer port; ours serves Raft on its client port.
    peer_port: u16,
    child: Option<Child>,
}

/// A running three-member cluster.
#[derive(Debug)]
pub(crate) struct Cluster {
    pub(crate) kind: Kind,
    nodes: Vec<Node>,
    dir: PathBuf,
    program: PathBuf,
    control: Client,
}

/// A lock session of one client: our owner name, or etcd's lease.
#[derive(Debug, Clone)]
pub(crate) enum Session {
    /// Our owner name.
    Owner(String),
    /// An etcd lease id.
    Lease(String),
}

impl Cluster {
    /// Starts the three members of `kind` with their data and logs under
    /// `dir`, and waits until they agree on a leader.
    pub(crate) async fn start(kind: Kind, program: &Path, dir: &Path) -> Result<Cluster, String> {
        let dir = dir.join(match kind {
            Kind::Catga => "catga",
            Kind::Etcd => "etcd",
        });
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let mut ports = free_ports(6)?.into_iter();
        let nodes = (0..3u64)
            .map(|i| Node {
                id: i,
                client_port: ports.next().unwrap_or_default(),
                peer_port: ports.next().unwrap_or_default(),
                child: None,
            })
            .collect();
        let mut cluster = Cluster {
            kind,
            nodes,
            dir,
            program: program.to_owned(),
            control: crate::http::client(4),
        };
        for i in 0..3 {
            cluster.spawn(i)?;
        }
        if kind == Kind::Etcd {
            // etcd generates its member ids: learn them before asking who
            // leads.
            let until = Instant::now() + Duration::from_secs(30);
            while let Err(e) = cluster.learn_etcd_ids().await {
                if Instant::now() > until {
                    return Err(format!("etcd did not start: {e}"));
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        cluster.settle(Duration::from_secs(30)).await?;
        Ok(cluster)
    }

    /// The member indexes.
    pub(crate) fn members(&self) -> std::ops::Range<usize> {
        0..self.nodes.len()
    }

    /// `127.0.0.1:{port}` of member `i`'s client API.
    pub(crate) fn authority(&self, i: usize) -> String {
        format!("127.0.0.1:{}", self.nodes[i].client_port)
    }

    /// The client port of member `i`.
    pub(crate) fn port(&self, i: usize) -> u16 {
        self.nodes[i].client_port
    }

    /// The process ids of the running members.
    pub(crate) fn pids(&self) -> Vec<u32> {
        self.nodes
            .iter()
            .filter_map(|n| n.child.as_ref().map(Child::id))
            .collect()
    }

    /// The process id of member `i`, if it runs.
    pub(crate) fn pid(&self, i: usize) -> Option<u32> {
        self.nodes[i].child.as_ref().map(Child::id)
    }

    /// Starts member `i` (again), on its ports and data directory.
    pub(crate) fn spawn(&mut self, i: usize) -> Result<(), String> {
        let log_path = self.dir.join(format!("node{i}.log"));
        let log = File::options()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| format!("{}: {e}", log_path.display()))?;
        let err = log
            .try_clone()
            .map_err(|e| format!("{}: {e}", log_path.display()))?;
        let mut command = Command::new(&self.program);
        match self.kind {
            Kind::Catga => self.catga_command(&mut command, i),
            Kind::Etcd => self.etcd_command(&mut command, i),
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.program.display()))?;
        self.nodes[i].child = Some(child);
        Ok(())
    }

    fn catga_command(&self, command: &mut Command, i: usize) {
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("Cluster__") {
                command.env_remove(key);
            }
        }
        let endpoint = |j: usize| format!("http://127.0.0.1:{}", self.nodes[j].client_port);
        command
            .env("Cluster__LocalNodeEndpoint", endpoint(i))
            .env("Cluster__LocalNodeId", i.to_string());
        for (k, j) in self.members().filter(|j| *j != i).enumerate() {
            command
                .env(format!("Cluster__Members__{k}__Id"), j.to_string())
                .env(format!("Cluster__Members__{k}__Endpoint"), endpoint(j));
        }
        command
            .arg("--port")
            .arg(self.nodes[i].client_port.to_string())
            .arg("--data-dir")
            .arg(self.dir.join("data"))
            .current_dir(&self.dir);
    }

    fn etcd_command(&self, command: &mut Command, i: usize) {
        let peer = |j: usize| format!("http://127.0.0.1:{}", self.nodes[j].peer_port);
        let client = format!("http://127.0.0.1:{}", self.nodes[i].client_port);
        let initial: Vec<String> = self
            .members()
            .map(|j| format!("m{j}={}", peer(j)))
            .collect();
        command
            .arg("--name")
            .arg(format!("m{i}"))
            .arg("--data-dir")
            .arg(self.dir.join(format!("m{i}")))
            .arg("--listen-client-urls")
            .arg(&client)
            .arg("--advertise-client-urls")
            .arg(&client)
            .arg("--listen-peer-urls")
            .arg(peer(i))
            .arg("--initial-advertise-peer-urls")
            .arg(peer(i))
            .arg("--initial-cluster")
            .arg(initial.join(","))
            .arg("--initial-cluster-state")
            .arg("new")
            // etcd refuses the seed's 50/150: the election timeout must be
            // at least five heartbeats. 30/150 is the closest it accepts.
            .arg("--heartbeat-interval")
            .arg("30")
            .arg("--election-timeout")
            .arg("150")
            .arg("--logger")
            .arg("zap")
            .arg("--log-outputs")
            .arg("stderr")
            .arg("--log-level")
            .arg("warn");
    }

    /// Sends `signal` to member `i`.
    pub(crate) fn signal(&self, i: usize, signal: Signal) -> Result<(), String> {
        let pid = self
            .pid(i)
            .ok_or_else(|| format!("member {i} is not running"))?;
        let pid = rustix::process::Pid::from_raw(pid as i32)
            .ok_or_else(|| format!("bad process id {pid}"))?;
        rustix::process::kill_process(pid, signal)
            .map_err(|e| format!("signal {signal:?} to member {i}: {e}"))
    }

    /// Waits (up to `deadline`) until member `i`'s process has exited, and
    /// forgets it.
    pub(crate) async fn wait_exit(&mut self, i: usize, deadline: Duration) -> Result<(), String> {
        let until = Instant::now() + deadline;
        loop {
            let Some(child) = self.nodes[i].child.as_mut() else {
                return Ok(());
            };
            if child
                .try_wait()
                .map_err(|e| format!("member {i}: {e}"))?
                .is_some()
            {
                self.nodes[i].child = None;
                return Ok(());
            }
            if Instant::now() > until {
                return Err(format!("member {i} did not exit within {deadline:?}"));
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Kills member `i` (SIGKILL) and reaps it.
    pub(crate) async fn kill(&mut self, i: usize) -> Result<(), String> {
        if self.nodes[i].child.is_some() {
            self.signal(i, Signal::KILL)?;
            self.wait_exit(i, Duration::from_secs(5)).await?;
        }
        Ok(())
    }

    /// Stops every member.
    pub(crate) async fn stop(&mut self) {
        for i in self.members() {
            let _ = self.kill(i).await;
        }
    }

    /// Waits until every running member names the same leader (ours: with
    /// a valid lease) and returns its index.
    pub(crate) async fn settle(&self, deadline: Duration) -> Result<usize, String> {
        let until = Instant::now() + deadline;
        loop {
            let last = match self.agreed_leader().await {
                Ok(leader) => return Ok(leader),
                Err(why) => why,
            };
            if Instant::now() > until {
                return Err(format!(
                    "{} did not settle within {deadline:?}: {last}",
                    self.kind
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn agreed_leader(&self) -> Result<usize, String> {
        let mut agreed: Option<u64> = None;
        for i in self.members().filter(|i| self.nodes[*i].child.is_some()) {
            let leader = self.leader_seen_by(i).await?;
            if agreed.is_some_and(|a| a != leader) {
                return Err("members name different leaders".into());
            }
            agreed = Some(leader);
        }
        let leader = agreed.ok_or("no member runs")?;
        let index = self
            .members()
            .find(|i| self.nodes[*i].id == leader)
            .ok_or_else(|| format!("leader id {leader} is not a member"))?;
        if self.nodes[index].child.is_none() {
            return Err("the named leader is not running".into());
        }
        Ok(index)
    }

    /// Member `i`'s own status: ours `GET /cluster/status`, etcd's
    /// `POST /v3/maintenance/status`.
    async fn status(&self, i: usize, deadline: Duration) -> Result<Value, String> {
        let (method, path, body) = match self.kind {
            Kind::Catga => (Method::GET, "/cluster/status", Bytes::new()),
            Kind::Etcd => (
                Method::POST,
                "/v3/maintenance/status",
                Bytes::from_static(b"{}"),
            ),
        };
        let answer = send(
            &self.control,
            method,
            &self.authority(i),
            path,
            None,
            body,
            deadline,
        )
        .await
        .ok()
        .map_err(|e| format!("status of member {i}: {e}"))?;
        serde_json::from_slice(&answer).map_err(|e| format!("status of member {i}: {e}"))
    }

    /// The id of the leader member `i` knows of.
    async fn leader_seen_by(&self, i: usize) -> Result<u64, String> {
        let status = self.status(i, Duration::from_secs(1)).await?;
        match self.kind {
            Kind::Catga => {
                let leader = status["leader"]["id"]
                    .as_u64()
                    .ok_or_else(|| format!("member {i} knows no leader"))?;
                let me = status["node"]["id"].as_u64();
                if me == Some(leader) && status["lease_valid"] != Value::Bool(true) {
                    return Err(format!("member {i} leads without a valid lease"));
                }
                Ok(leader)
            }
            Kind::Etcd => {
                let leader = status["leader"]
                    .as_str()
                    .and_then(|s| s.parse().ok())
                    .filter(|l| *l != 0)
                    .ok_or_else(|| format!("member {i} knows no leader"))?;
                Ok(leader)
            }
        }
    }

    async fn learn_etcd_ids(&mut self) -> Result<(), String> {
        for i in self.members() {
            let status = self.status(i, CONTROL_DEADLINE).await?;
            self.nodes[i].id = status["header"]["member_id"]
                .as_str()
                .and_then(|s| s.parse().ok())
                .ok_or("etcd status without member_id")?;
        }
        Ok(())
    }

    /// Writes `value` under `key` through `authority` (a member, or a proxy
    /// in front of one).
    pub(crate) async fn put(
        &self,
        client: &Client,
        authority: &str,
        key: &str,
        value: &Bytes,
        deadline: Duration,
    ) -> Outcome {
        match self.kind {
            Kind::Catga => {
                send(
                    client,
                    Method::PUT,
                    authority,
                    &format!("/cluster/kv/{key}"),
                    None,
                    value.clone(),
                    deadline,
                )
                .await
            }
            Kind::Etcd => {
                let body = format!(
                    r#"{{"key":"{}","value":"{}"}}"#,
                    BASE64.encode(key),
                    BASE64.encode(value)
                );
                send(
                    client,
                    Method::POST,
                    authority,
                    "/v3/kv/put",
                    None,
                    body.into(),
                    deadline,
                )
                .await
            }
        }
    }

    /// Opens a lock session for a client: our owner name, etcd's lease.
    pub(crate) async fn session(
        &self,
        client: &Client,
        authority: &str,
        owner: &str,
    ) -> Result<Session, String> {
        match self.kind {
            Kind::Catga => Ok(Session::Owner(owner.to_owned())),
            Kind::Etcd => {
                let body = format!(r#"{{"TTL":{}}}"#, LOCK_TTL.as_secs());
                let answer = send(
                    client,
                    Method::POST,
                    authority,
                    "/v3/lease/grant",
                    None,
                    body.into(),
                    CONTROL_DEADLINE,
                )
                .await
                .ok()?;
                let lease: Value = serde_json::from_slice(&answer).map_err(|e| e.to_string())?;
                let id = lease["ID"].as_str().ok_or("lease grant without ID")?;
                Ok(Session::Lease(id.to_owned()))
            }
        }
    }

    /// One lock cycle through `authority`: acquire `name` (waiting while it
    /// is held) and release it.
    pub(crate) async fn lock_cycle(
        &self,
        client: &Client,
        authority: &str,
        name: &str,
        session: &Session,
    ) -> Result<(), String> {
        let deadline = LOCK_WAIT + Duration::from_secs(5);
        match session {
            Session::Owner(owner) => {
                let body = format!(
                    r#"{{"owner":"{owner}","ttl_ms":{},"wait_ms":{}}}"#,
                    LOCK_TTL.as_millis(),
                    LOCK_WAIT.as_millis()
                );
                let path = format!("/cluster/locks/{name}/acquire");
                let answer = send(
                    client,
                    Method::POST,
                    authority,
                    &path,
                    Some("application/json"),
                    body.into(),
                    deadline,
                )
                .await
                .ok()?;
                let grant: Value = serde_json::from_slice(&answer).map_err(|e| e.to_string())?;
                let token = grant["token"].as_u64().ok_or("grant without token")?;
                let body = format!(r#"{{"owner":"{owner}","token":{token}}}"#);
                let path = format!("/cluster/locks/{name}/release");
                send(
                    client,
                    Method::POST,
                    authority,
                    &path,
                    Some("application/json"),
                    body.into(),
                    deadline,
                )
                .await
                .ok()?;
                Ok(())
            }
            Session::Lease(lease) => {
                let body = format!(r#"{{"name":"{}","lease":"{lease}"}}"#, BASE64.encode(name));
                let answer = send(
                    client,
                    Method::POST,
                    authority,
                    "/v3/lock/lock",
                    None,
                    body.into(),
                    deadline,
                )
                .await
                .ok()?;
                let grant: Value = serde_json::from_slice(&answer).map_err(|e| e.to_string())?;
                let key = grant["key"].as_str().ok_or("lock without key")?;
                let body = format!(r#"{{"key":"{key}"}}"#);
                send(
                    client,
                    Method::POST,
                    authority,
                    "/v3/lock/unlock",
                    None,
                    body.into(),
                    deadline,
                )
                .await
                .ok()?;
                Ok(())
            }
        }
    }

    /// Asks `leader` to hand leadership to `target`; returns once the call
    /// answered.
    pub(crate) async fn transfer(&self, leader: usize, target: usize) -> Result<(), String> {
        let (path, body) = match self.kind {
            Kind::Catga => (
                "/cluster/leadership/transfer",
                format!(r#"{{"to":{}}}"#, self.nodes[target].id),
            ),
            Kind::Etcd => (
                "/v3/maintenance/transfer-leadership",
                format!(r#"{{"targetID":"{}"}}"#, self.nodes[target].id),
            ),
        };
        send(
            &self.control,
            Method::POST,
            &self.authority(leader),
            path,
            Some("application/json"),
            body.into(),
            CONTROL_DEADLINE,
        )
        .await
        .ok()
        .map(drop)
        .map_err(|e| format!("{} transfer {leader} → {target}: {e}", self.kind))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// `n` ports that were free on 127.0.0.1 a moment ago.
pub(crate) fn free_ports(n: usize) -> Result<Vec<u16>, String> {
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
