//! The example binary as three OS processes on free loopback ports, for
//! the end-to-end tests: starting, signalling and stopping them, and
//! talking to them over HTTP. Processes are observed over HTTP, so waiting
//! means polling with a deadline.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

pub(crate) const DEADLINE: Duration = Duration::from_secs(30);

pub(crate) struct Node {
    pub(crate) port: u16,
    pub(crate) child: Option<Child>,
    pub(crate) log: PathBuf,
}

pub(crate) struct Cluster {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) nodes: BTreeMap<u64, Node>,
    pub(crate) http: Client<HttpConnector, Full<Bytes>>,
}

pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) served_by: Option<u64>,
    pub(crate) body: Value,
}

pub(crate) fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<_> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

/// `n` consecutive free loopback ports, for the local cluster of
/// `--cluster` (`node{i}` on `--base-port + i`).
pub(crate) fn free_consecutive_ports(n: u16) -> Vec<u16> {
    for _ in 0..100 {
        let first = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = first.local_addr().unwrap().port();
        let Some(last) = base.checked_add(n - 1) else {
            continue;
        };
        let rest: Result<Vec<_>, _> = (base + 1..=last)
            .map(|port| std::net::TcpListener::bind(("127.0.0.1", port)))
            .collect();
        if rest.is_ok() {
            return (base..=last).collect();
        }
    }
    panic!("no {n} consecutive free ports on 127.0.0.1");
}

impl Cluster {
    pub(crate) fn new() -> Cluster {
        Cluster::on_ports(free_ports(3))
    }

    pub(crate) fn on_ports(ports: Vec<u16>) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let nodes = (0..3u64)
            .map(|i| {
                let log = dir.path().join(format!("node{i}.log"));
                (
                    i,
                    Node {
                        port: ports[i as usize],
                        child: None,
                        log,
                    },
                )
            })
            .collect();
        Cluster {
            dir,
            nodes,
            http: Client::builder(TokioExecutor::new()).build(HttpConnector::new()),
        }
    }

    pub(crate) fn url(&self, i: u64, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.nodes[&i].port)
    }

    /// Starts node `i` with the explicit topology in `Cluster__*` variables.
    pub(crate) fn spawn(&mut self, i: u64) {
        self.spawn_setting(i, &[]);
    }

    /// [`spawn`](Self::spawn), with `settings` (`Cluster__*` variables)
    /// besides the topology.
    pub(crate) fn spawn_setting(&mut self, i: u64, settings: &[(&str, &str)]) {
        let endpoint = |j: u64| format!("http://127.0.0.1:{}", self.nodes[&j].port);
        let mut vars = vec![
            ("Cluster__LocalNodeEndpoint".to_owned(), endpoint(i)),
            ("Cluster__LocalNodeId".to_owned(), i.to_string()),
        ];
        vars.extend(
            settings
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        for (k, j) in (0..3u64).filter(|j| *j != i).enumerate() {
            vars.push((format!("Cluster__Members__{k}__Id"), j.to_string()));
            vars.push((format!("Cluster__Members__{k}__Endpoint"), endpoint(j)));
        }
        let port = self.nodes[&i].port.to_string();
        self.spawn_with(i, &["--port", &port], &vars);
    }

    /// Starts node `i` with `args` and `vars` (no other `Cluster__*`
    /// variable), its own data directory and its log in the test directory.
    pub(crate) fn spawn_with(&mut self, i: u64, args: &[&str], vars: &[(String, String)]) {
        let mut cmd = command(self.dir.path(), args, vars);
        cmd.arg("--data-dir").arg(self.dir.path().join("data"));
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.nodes[&i].log)
            .unwrap();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("the example binary starts");
        self.nodes.get_mut(&i).unwrap().child = Some(child);
    }

    pub(crate) fn signal(&mut self, i: u64, signal: &str) {
        let child = self.nodes.get_mut(&i).unwrap().child.as_mut().unwrap();
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    pub(crate) fn wait_exit(&mut self, i: u64) -> std::process::ExitStatus {
        let mut child = self.nodes.get_mut(&i).unwrap().child.take().unwrap();
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "node {i} did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub(crate) async fn send(
        &self,
        method: &str,
        url: &str,
        body: Option<Value>,
    ) -> Option<Answer> {
        self.send_as(None, method, url, body).await
    }

    /// Sends with `authorization: Bearer {bearer}` when given.
    pub(crate) async fn send_as(
        &self,
        bearer: Option<&str>,
        method: &str,
        url: &str,
        body: Option<Value>,
    ) -> Option<Answer> {
        let mut request = http::Request::builder()
            .method(method)
            .uri(url)
            .header("content-type", "application/json");
        if let Some(secret) = bearer {
            request = request.header("authorization", format!("Bearer {secret}"));
        }
        let request = request
            .body(Full::new(Bytes::from(
                body.map(|b| b.to_string()).unwrap_or_default(),
            )))
            .unwrap();
        let response = tokio::time::timeout(Duration::from_secs(10), self.http.request(request))
            .await
            .ok()?
            .ok()?;
        let status = response.status().as_u16();
        let served_by = response
            .headers()
            .get("x-catga-served-by")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let bytes = response.into_body().collect().await.ok()?.to_bytes();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Some(Answer {
            status,
            served_by,
            body,
        })
    }

    /// Polls until every running node names the same leader; returns it.
    pub(crate) async fn wait_leader(&self) -> u64 {
        let running: Vec<u64> = self
            .nodes
            .iter()
            .filter(|(_, n)| n.child.is_some())
            .map(|(i, _)| *i)
            .collect();
        self.wait_leader_among(&running).await
    }

    /// Polls until the nodes `among` all name the same leader; returns it.
    /// (A paused node would hold each request to it until its deadline.)
    pub(crate) async fn wait_leader_among(&self, among: &[u64]) -> u64 {
        self.wait_new_leader(among, None).await
    }

    /// Polls until the nodes `among` all name the same leader, other than
    /// `old`; returns it.
    pub(crate) async fn wait_new_leader(&self, among: &[u64], old: Option<u64>) -> u64 {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let mut seen = Vec::new();
            for i in among {
                let leader = self
                    .send("GET", &self.url(*i, "/cluster/status"), None)
                    .await
                    .and_then(|a| a.body["leader"]["id"].as_u64());
                seen.push(leader);
            }
            if let Some(Some(first)) = seen.first() {
                if Some(*first) != old && seen.iter().all(|l| *l == Some(*first)) {
                    return *first;
                }
            }
            assert!(Instant::now() < deadline, "no agreed leader: {seen:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub(crate) async fn post_order(&self, via: u64, customer: &str) -> Option<Answer> {
        let order = serde_json::json!({ "customer": customer, "items": [{ "sku": "SKU-1", "quantity": 1 }] });
        self.send("POST", &self.url(via, "/orders"), Some(order))
            .await
    }

    pub(crate) fn logs(&self) -> String {
        self.nodes
            .values()
            .map(|n| std::fs::read_to_string(&n.log).unwrap_or_default())
            .collect()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            dump_logs(self.dir.path());
        }
        for node in self.nodes.values_mut() {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// The example binary with `args` and `vars`, run in `dir`, with no
/// `Cluster__*` variable inherited from the test's environment.
pub(crate) fn command(dir: &Path, args: &[&str], vars: &[(String, String)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_order-system"));
    for (name, _) in std::env::vars_os() {
        if name
            .to_str()
            .is_some_and(|n| n.to_ascii_lowercase().starts_with("cluster__"))
        {
            cmd.env_remove(name);
        }
    }
    cmd.current_dir(dir)
        .args(args)
        .env("RUST_LOG", "info")
        .envs(vars.iter().map(|(k, v)| (k, v)));
    cmd
}

/// Runs `cmd` to its end, within a deadline: its exit code, stdout and
/// stderr.
pub(crate) fn run_to_end(mut cmd: Command, what: &str) -> (Option<i32>, String, String) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the example binary starts");
    let deadline = Instant::now() + DEADLINE;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: still running after {DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let (mut stdout, mut stderr) = (String::new(), String::new());
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut stdout).unwrap();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    (status.code(), stdout, stderr)
}

pub(crate) fn count(haystack: &str, needle: &str) -> usize {
    haystack.matches(needle).count()
}

pub(crate) fn dump_logs(dir: &Path) {
    for i in 0..3 {
        let log = std::fs::read_to_string(dir.join(format!("node{i}.log"))).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        eprintln!("--- node {i} (last lines) ---");
        for line in tail.into_iter().rev() {
            eprintln!("{line}");
        }
    }
}
