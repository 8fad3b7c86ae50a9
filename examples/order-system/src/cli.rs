//! Command line and configuration of the example.
//!
//! Settings come from flags, `appsettings.json` (or `--config`) and
//! `Cluster__*` environment variables (which override the file), combined by
//! [`resolve`] under these rules:
//!
//! * **Topology** is `LocalNodeEndpoint` plus `Members`. When no source sets
//!   either, the flags give it: with `--cluster`, the local cluster
//!   (`node0`..`node{N-1}` on `http://localhost:{base-port + i}`), else a
//!   single node on `http://localhost:{port}`.
//! * **Every other setting** (`Secret`, the timings, `PersistentStatePath`,
//!   `ClusterName`) applies on top of whichever topology is in force, so
//!   `Cluster__Secret=s3cret order-system --cluster --port 5000 --node-id
//!   node0` runs the local cluster with a secret.
//! * An **explicit topology** replaces the flags' one. With `--cluster` it
//!   needs both keys (without, `LocalNodeEndpoint` alone is a single node,
//!   `Members` alone is an error), and `--nodes`/`--base-port` do not apply
//!   to it.
//! * `--node-id` and `LocalNodeId` both name this node's id: either may be
//!   given, both only if they agree.
//! * **Ids must describe one cluster**: every node computes the ids of all
//!   nodes, and they must agree. Members given as plain URLs get ids derived
//!   from the URL ([`NodeId::from_endpoint`]), so the peers derive this
//!   node's id from its `LocalNodeEndpoint` too: giving this node an explicit
//!   id then is refused, as is the mirror case (members with ids, this node
//!   without), a member that is this node (also `localhost` vs `127.0.0.1`
//!   on the same port), and two members that are one node.
//! * A loopback `LocalNodeEndpoint` must name the port this node listens on
//!   (`--port`), unless `--bind` is given.
//!
//! Every refusal is a [`CliError`]; the binary prints it and exits with
//! code 2, like a bad flag.

use std::ffi::OsString;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use catga_cluster_core::config::{ClusterConfig, ConfigError, ConfigLoader, TopologySources};
use catga_cluster_core::{Endpoint, NodeId, NodeInfo};
use clap::{Args, Parser, Subcommand};

use crate::{certs, probe};

/// The local cluster's size when `--nodes` is not given.
pub const DEFAULT_NODES: u16 = 3;
/// The local cluster's first port when `--base-port` is not given.
pub const DEFAULT_BASE_PORT: u16 = 5000;

const CONFIGURATION_HELP: &str = "\
Configuration:
  Settings come from appsettings.json (or --config) and Cluster__* environment
  variables, which override the file, as in the seed.

  The topology is LocalNodeEndpoint plus Members. When neither is set, the
  flags give it: --cluster runs the local cluster (node0..node{N-1} on
  http://localhost:{base-port + i}); without --cluster the node runs alone on
  http://localhost:{port}. Every other setting (Secret, ElectionTimeout,
  HeartbeatInterval, PersistentStatePath, ClusterName) applies on top:

    Cluster__Secret=s3cret order-system --cluster --port 5000 --node-id node0

  An explicit topology replaces the local one. With --cluster it needs both
  LocalNodeEndpoint and Members, and --nodes/--base-port do not apply to it.

  --node-id and LocalNodeId both name this node's id; give one, or both with
  the same value. Every node must compute the same id for the same node:
  members given as plain URLs get ids derived from their URL, so the other
  nodes derive this node's id from its LocalNodeEndpoint; do not give it an id
  then (drop --node-id). Members given with ids ({\"Id\": \"node1\",
  \"Endpoint\": ...} or Cluster__Members__0__Id / __Endpoint) need this node's
  id too.

  A loopback LocalNodeEndpoint must use the port given by --port (unless
  --bind is given).

  A configuration that cannot form one cluster is refused at start with exit
  code 2 and a message that names what disagrees.";

/// The seed's OrderSystem on catga-cluster.
#[derive(Debug, Parser)]
#[command(
    name = "order-system",
    version,
    about,
    after_help = "See --help for how flags, appsettings.json and Cluster__* variables combine.",
    after_long_help = CONFIGURATION_HELP
)]
pub struct Cli {
    /// Run as one node of a cluster. When neither `appsettings.json` nor
    /// `Cluster__*` variables set the topology (`LocalNodeEndpoint`,
    /// `Members`), nodes `node0`.. `node{N-1}` on `localhost:{base-port + i}`
    /// form the cluster, with the other settings (`Secret`, timings, …)
    /// applied on top.
    #[arg(long)]
    pub cluster: bool,

    /// The port this node serves HTTP on.
    #[arg(long, default_value_t = 5000)]
    pub port: u16,

    /// This node's name (`node0`, `node1`, …) or numeric id. Same setting as
    /// `Cluster.LocalNodeId`.
    #[arg(long = "node-id")]
    pub node_id: Option<String>,

    /// How many nodes the local cluster of `--cluster` has (default 3).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    pub nodes: Option<u16>,

    /// The port of `node0` in the local cluster of `--cluster` (default
    /// 5000).
    #[arg(long)]
    pub base_port: Option<u16>,

    /// A configuration file (JSON like the seed's `appsettings.json`, or
    /// TOML). Default: `./appsettings.json` when it exists.
    #[arg(long)]
    pub config: Option<PathBuf>,

    /// Where the node keeps its Raft state. Default: `PersistentStatePath`
    /// from the configuration, else `./data`; each node uses its own
    /// `node-{id}` directory below it.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,

    /// The address to listen on. Default: loopback for a loopback endpoint
    /// (`localhost`, `127.0.0.1`, `[::1]`), all interfaces otherwise.
    #[arg(long)]
    pub bind: Option<IpAddr>,

    /// What to run instead of a node.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Sub-commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start a 3-node cluster in this process over loopback HTTP and narrate
    /// an election, a forwarded order, a crash fail-over, the outbox and a
    /// graceful hand-over.
    Demo,
    /// Write a development PKI for TLS between the nodes: a CA (ca.pem,
    /// ca-key.pem) and a certificate and key per node (node{i}.pem,
    /// node{i}-key.pem) for server and client authentication, valid for
    /// localhost, 127.0.0.1, ::1, node{i} and every --host.
    Certs(CertsArgs),
    /// GET a URL and exit with code 0 on a 2xx answer, 1 otherwise: a health
    /// check for a container without an HTTP client.
    Probe(ProbeArgs),
}

/// The flags of `order-system certs`; see [`crate::certs`].
#[derive(Debug, Args)]
pub struct CertsArgs {
    /// The directory to write to (created when missing).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,

    /// How many nodes get a certificate: node0 to node{N-1}, 1 to 99.
    #[arg(long, value_name = "N")]
    pub nodes: u16,

    /// One more name for every node's certificate: a DNS name or an IP
    /// address, where `{i}` becomes the node's number (repeatable), e.g.
    /// `--host order-system-{i}.order-system.default.svc.cluster.local`.
    #[arg(long = "host", value_name = "NAME")]
    pub hosts: Vec<String>,

    /// How many days the certificates are valid (1 to 3650).
    #[arg(long, value_name = "D", default_value_t = certs::DEFAULT_DAYS)]
    pub days: u32,

    /// Replace existing files (a new CA and new certificates for all).
    #[arg(long, conflicts_with = "if_missing")]
    pub force: bool,

    /// Write nothing and succeed when all the files exist already (for a
    /// start-up step that runs every time); fail when only some do.
    #[arg(long)]
    pub if_missing: bool,
}

impl CertsArgs {
    /// The PKI these flags describe.
    pub fn options(&self) -> certs::Options {
        let existing = match (self.force, self.if_missing) {
            (true, _) => certs::Existing::Overwrite,
            (false, true) => certs::Existing::KeepComplete,
            (false, false) => certs::Existing::Refuse,
        };
        certs::Options {
            out: self.out.clone(),
            nodes: self.nodes,
            hosts: self.hosts.clone(),
            days: self.days,
            existing,
        }
    }
}

/// The flags of `order-system probe`; see [`crate::probe`].
#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// The URL, e.g. https://localhost:5000/health/ready.
    pub url: String,

    /// The CA certificate (PEM) the server's certificate must chain to;
    /// needed for https:// URLs.
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,

    /// A client certificate (PEM) to present, for a server that requires
    /// one; with --key.
    #[arg(long, value_name = "FILE")]
    pub cert: Option<PathBuf>,

    /// The private key (PEM) of --cert.
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,

    /// How long the whole exchange may take (e.g. 3s, 500ms).
    #[arg(long, value_name = "DURATION", default_value = "3s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

impl ProbeArgs {
    /// The request these flags describe.
    pub fn options(&self) -> probe::Options {
        probe::Options {
            url: self.url.clone(),
            ca: self.ca.clone(),
            cert: self.cert.clone(),
            key: self.key.clone(),
            timeout: self.timeout,
        }
    }
}

/// Why the configuration could not be built. All of these are bad input:
/// the binary exits with code 2.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A file or environment value is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A flag is invalid.
    #[error("{0}")]
    Flag(String),
    /// Settings contradict each other, or only part of a topology is given.
    #[error("{0}")]
    Conflict(String),
    /// The node ids (or endpoints) cannot describe one cluster: the nodes
    /// would never agree on a leader.
    #[error("{0}")]
    Ids(String),
}

/// A node's configuration, resolved from flags, files and environment.
#[derive(Debug)]
pub struct NodeSetup {
    /// The cluster configuration (persistent path resolved per node).
    pub config: ClusterConfig,
    /// The address to listen on.
    pub listen: SocketAddr,
}

/// The process's `Cluster__*` environment variables (any case), for
/// [`resolve`]. A variable whose name or value is not valid Unicode is an
/// error naming it; other variables are not read.
pub fn cluster_env() -> Result<Vec<(String, String)>, CliError> {
    cluster_vars(std::env::vars_os())
}

fn cluster_vars(
    vars: impl IntoIterator<Item = (OsString, OsString)>,
) -> Result<Vec<(String, String)>, CliError> {
    let is_cluster = |name: &[u8]| {
        name.get(..9)
            .is_some_and(|prefix| prefix.eq_ignore_ascii_case(b"cluster__"))
    };
    let mut out = Vec::new();
    for (name, value) in vars {
        if !is_cluster(name.as_encoded_bytes()) {
            continue;
        }
        let name = name.into_string().map_err(|name| {
            CliError::Flag(format!(
                "environment variable {}: the name is not valid Unicode",
                name.to_string_lossy()
            ))
        })?;
        let value = value.into_string().map_err(|_| {
            CliError::Flag(format!(
                "environment variable {name}: the value is not valid Unicode"
            ))
        })?;
        out.push((name, value));
    }
    Ok(out)
}

fn parse_node_id(name: &str) -> Result<NodeId, CliError> {
    NodeId::from_name(name).map_err(|e| CliError::Flag(format!("--node-id: {e}")))
}

fn localhost(port: u16) -> Result<Endpoint, CliError> {
    Endpoint::parse(&format!("http://localhost:{port}")).map_err(|e| CliError::Flag(e.to_string()))
}

/// The same endpoint over `https://`.
fn over_https(endpoint: &Endpoint) -> Result<Endpoint, CliError> {
    Endpoint::parse(&format!("https://{}", endpoint.authority()))
        .map_err(|e| CliError::Flag(e.to_string()))
}

/// The local cluster the seed's README runs: `node{i}` on
/// `http://localhost:{base + i}`.
fn local_cluster(cli: &Cli, id: Option<NodeId>) -> Result<ClusterConfig, CliError> {
    let (Some(name), Some(id)) = (cli.node_id.as_deref(), id) else {
        return Err(CliError::Flag(
            "--cluster needs --node-id (node0, node1, …) to pick this node of the local cluster"
                .into(),
        ));
    };
    let nodes = cli.nodes.unwrap_or(DEFAULT_NODES);
    let base_port = cli.base_port.unwrap_or(DEFAULT_BASE_PORT);
    if id.get() >= u64::from(nodes) {
        return Err(CliError::Flag(format!(
            "--node-id {name} is outside the {nodes}-node local cluster (node0 to node{})",
            nodes.saturating_sub(1)
        )));
    }
    let port_of = |i: u64| -> Result<u16, CliError> {
        u16::try_from(u64::from(base_port) + i).map_err(|_| {
            CliError::Flag(format!(
                "--base-port {base_port} is too high for {nodes} nodes (the last port would be above 65535)"
            ))
        })
    };
    let last = u64::from(nodes) - 1;
    port_of(last)?;
    if port_of(id.get())? != cli.port {
        return Err(CliError::Flag(format!(
            "--port {} does not match {name}'s port {} in the local cluster (--base-port {base_port})",
            cli.port,
            port_of(id.get())?,
        )));
    }
    let info = |i: u64| -> Result<NodeInfo, CliError> {
        Ok(NodeInfo::new(NodeId::new(i), localhost(port_of(i)?)?))
    };
    let members = (0..=last)
        .filter(|i| *i != id.get())
        .map(info)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ClusterConfig::new(info(id.get())?, members)?)
}

/// The topology of `defaults` as a configuration source, laid under the
/// file and the environment so that their other settings apply on top.
fn topology_source(defaults: &ClusterConfig) -> String {
    let members: Vec<_> = defaults
        .members
        .iter()
        .map(|m| serde_json::json!({ "Id": m.id.get(), "Endpoint": m.endpoint.as_str() }))
        .collect();
    serde_json::json!({
        "Cluster": {
            "LocalNodeEndpoint": defaults.node.endpoint.as_str(),
            "LocalNodeId": defaults.node.id.get(),
            "Members": members,
        }
    })
    .to_string()
}

/// Refuses a partial topology and flags that cannot apply to an explicit one.
fn check_explicit_topology(cli: &Cli, topology: &TopologySources) -> Result<(), CliError> {
    let local_alternative = |what: &str| {
        if cli.cluster {
            format!(", or unset {what} to run the local cluster of --cluster")
        } else {
            String::new()
        }
    };
    match (&topology.local_node_endpoint, &topology.members) {
        (None, Some(members)) => {
            return Err(CliError::Conflict(format!(
                "Cluster.Members is set (by {members}) but Cluster.LocalNodeEndpoint is not: a \
                 node that lists the other nodes needs its own advertised URL too; set \
                 Cluster__LocalNodeEndpoint (or LocalNodeEndpoint in the file){}",
                local_alternative("the members")
            )))
        }
        (Some(endpoint), None) if cli.cluster => {
            return Err(CliError::Conflict(format!(
                "--cluster: Cluster.LocalNodeEndpoint is set (by {endpoint}) but Cluster.Members \
                 is not: an explicit topology replaces the local cluster and needs both; set \
                 Cluster__Members__0, Cluster__Members__1, … to the other nodes{}",
                local_alternative("LocalNodeEndpoint")
            )))
        }
        _ => {}
    }
    let local_flags: Vec<&str> = [
        ("--nodes", cli.nodes.is_some()),
        ("--base-port", cli.base_port.is_some()),
    ]
    .into_iter()
    .filter_map(|(flag, given)| given.then_some(flag))
    .collect();
    if !local_flags.is_empty() {
        let from = [
            topology
                .local_node_endpoint
                .as_ref()
                .map(|o| format!("Cluster.LocalNodeEndpoint from {o}")),
            topology
                .members
                .as_ref()
                .map(|o| format!("Cluster.Members from {o}")),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" and ");
        let flags = local_flags.join(" and ");
        let verb = if local_flags.len() == 1 {
            "sizes"
        } else {
            "size"
        };
        return Err(CliError::Conflict(format!(
            "{flags} {verb} the local cluster, but the topology is given explicitly ({from}); drop {flags} or the explicit topology"
        )));
    }
    Ok(())
}

/// Whether an endpoint names this machine's loopback interface.
fn is_loopback(endpoint: &Endpoint) -> bool {
    matches!(
        endpoint.to_uri().host(),
        Some("localhost" | "127.0.0.1" | "[::1]")
    )
}

/// The port an endpoint reaches, explicit or the scheme's.
fn port_of(endpoint: &Endpoint) -> u16 {
    endpoint
        .to_uri()
        .port_u16()
        .unwrap_or(if endpoint.scheme() == "https" {
            443
        } else {
            80
        })
}

/// Whether two different endpoints reach one listener: both on loopback,
/// same port (`http://localhost:5000` and `http://127.0.0.1:5000`).
fn same_loopback_listener(a: &Endpoint, b: &Endpoint) -> bool {
    is_loopback(a) && is_loopback(b) && port_of(a) == port_of(b)
}

/// Where this node's id comes from, for messages.
enum IdSource {
    /// `--node-id`, as given.
    Flag(String),
    /// `Cluster.LocalNodeId`, from this source.
    Config(String),
    /// Neither: derived from the endpoint, or the single node's default.
    Implicit,
}

impl IdSource {
    fn describe(&self) -> String {
        match self {
            IdSource::Flag(name) => format!("--node-id {name}"),
            IdSource::Config(origin) => format!("Cluster.LocalNodeId (from {origin})"),
            IdSource::Implicit => "the default".to_owned(),
        }
    }

    fn drop_hint(&self) -> String {
        match self {
            IdSource::Flag(_) => "drop --node-id".to_owned(),
            IdSource::Config(origin) => format!("remove Cluster.LocalNodeId (from {origin})"),
            IdSource::Implicit => "give this node no id".to_owned(),
        }
    }
}

/// Refuses ids and endpoints that cannot describe one cluster (beyond what
/// [`ClusterConfig::validate`] checks).
fn check_one_cluster(
    config: &ClusterConfig,
    id_source: &IdSource,
    members_origin: &str,
) -> Result<(), CliError> {
    if config.members.is_empty() {
        return Ok(());
    }
    let local = &config.node;
    for (i, member) in config.members.iter().enumerate() {
        if same_loopback_listener(&member.endpoint, &local.endpoint) {
            return Err(CliError::Ids(format!(
                "Cluster.Members[{i}] `{}` is this node: like Cluster.LocalNodeEndpoint `{}` it \
                 is port {} on this machine's loopback; Members must list only the other nodes",
                member.endpoint,
                local.endpoint,
                port_of(&member.endpoint)
            )));
        }
        if let Some((j, first)) = config.members[..i]
            .iter()
            .enumerate()
            .find(|(_, first)| same_loopback_listener(&first.endpoint, &member.endpoint))
        {
            return Err(CliError::Ids(format!(
                "Cluster.Members[{i}] `{}` and Cluster.Members[{j}] `{}` are one node (port {} \
                 on this machine's loopback); list each node once",
                member.endpoint,
                first.endpoint,
                port_of(&member.endpoint)
            )));
        }
    }

    let derived = |node: &NodeInfo| node.id == NodeId::from_endpoint(&node.endpoint);
    let plain_members = config.members.iter().all(derived);
    let named_members = !config.members.iter().any(derived);
    if plain_members && !derived(local) {
        let peers_view = NodeId::from_endpoint(&local.endpoint);
        return Err(CliError::Ids(format!(
            "{} makes this node's id {}, but the members (from {members_origin}) are plain URLs, \
             whose ids every node derives from the URL: the other nodes know this node ({}) as \
             id {peers_view}, not {}, so no leader would ever be elected. Either {} so that this \
             node's id is derived from its endpoint too, or name every node by id in every \
             node's configuration (members as {{\"Id\": \"node1\", \"Endpoint\": \"…\"}}, or \
             Cluster__Members__0__Id=node1 with Cluster__Members__0__Endpoint=…)",
            id_source.describe(),
            local.id,
            local.endpoint,
            local.id,
            id_source.drop_hint(),
        )));
    }
    if named_members && derived(local) {
        let named = config
            .members
            .iter()
            .map(|m| format!("{} for {}", m.id, m.endpoint))
            .collect::<Vec<_>>()
            .join(", ");
        return Err(CliError::Ids(format!(
            "the members (from {members_origin}) are given with ids ({named}), but this node is \
             not: its id {} is derived from its endpoint {}, while the other nodes, configured \
             like this one, know it by an explicit id. Give this node the id they use, with \
             --node-id or Cluster__LocalNodeId, or list the members as plain URLs on every node",
            local.id, local.endpoint,
        )));
    }
    Ok(())
}

/// The configuration file: `--config`, else `./appsettings.json` when it
/// exists.
fn config_file(cli: &Cli) -> Option<PathBuf> {
    let default_file = Path::new("appsettings.json");
    match &cli.config {
        Some(path) => Some(path.clone()),
        None if default_file.exists() => Some(default_file.to_path_buf()),
        None => None,
    }
}

/// The configuration file and the `Cluster__*` variables.
struct Sources {
    file: Option<PathBuf>,
    env: Vec<(String, String)>,
}

impl Sources {
    /// `loader`'s sources, then the file, then the environment (later ones
    /// override earlier ones key by key).
    fn over(&self, mut loader: ConfigLoader) -> ConfigLoader {
        if let Some(file) = &self.file {
            loader = loader.file(file);
        }
        loader.env_vars(self.env.clone())
    }

    /// The configuration with `defaults`' topology laid under the sources.
    fn over_topology(&self, defaults: &ClusterConfig) -> Result<ClusterConfig, CliError> {
        Ok(self
            .over(ClusterConfig::loader().json_str(&topology_source(defaults)))
            .build()?)
    }

    /// The `LocalNodeId` the sources set, on its own: laid under a default
    /// topology, a different id could collide with a default member and be
    /// reported as that instead of as a disagreement with `--node-id`.
    fn configured_id(&self, endpoint: &Endpoint) -> Result<NodeId, CliError> {
        let endpoint = serde_json::json!({ "Cluster": { "LocalNodeEndpoint": endpoint.as_str() } });
        Ok(self
            .over(ClusterConfig::loader().json_str(&endpoint.to_string()))
            .build()?
            .node
            .id)
    }
}

fn id_conflict(name: &str, flag: NodeId, configured: NodeId, origin: &str) -> CliError {
    CliError::Conflict(format!(
        "--node-id {name} (id {flag}) and Cluster.LocalNodeId = {configured} (from {origin}) \
         disagree about this node's id; give one of them"
    ))
}

/// `--nodes` and `--base-port` only shape the local cluster of `--cluster`.
fn check_local_cluster_flags(cli: &Cli) -> Result<(), CliError> {
    if cli.cluster {
        return Ok(());
    }
    for (flag, given) in [
        ("--nodes", cli.nodes.is_some()),
        ("--base-port", cli.base_port.is_some()),
    ] {
        if given {
            return Err(CliError::Flag(format!(
                "{flag} sizes the local cluster of --cluster; add --cluster or drop {flag}"
            )));
        }
    }
    Ok(())
}

/// The merged configuration and where this node's id comes from.
fn configure(
    cli: &Cli,
    sources: &Sources,
    topology: &TopologySources,
) -> Result<(ClusterConfig, IdSource), CliError> {
    let flag = match cli.node_id.as_deref() {
        Some(name) => Some((name, parse_node_id(name)?)),
        None => None,
    };
    let explicit = topology.local_node_endpoint.is_some() || topology.members.is_some();
    let mut config = if explicit {
        check_explicit_topology(cli, topology)?;
        sources.over(ClusterConfig::loader()).build()?
    } else {
        let mut defaults = if cli.cluster {
            local_cluster(cli, flag.map(|(_, id)| id))?
        } else {
            let id = flag.map(|(_, id)| id).unwrap_or_default();
            ClusterConfig::single_node(NodeInfo::new(id, localhost(cli.port)?))
        };
        // With a `Tls` section the flags' topology speaks https.
        if topology.tls.is_some() {
            defaults.node.endpoint = over_https(&defaults.node.endpoint)?;
            for member in &mut defaults.members {
                member.endpoint = over_https(&member.endpoint)?;
            }
        }
        if let (Some((name, id)), Some(origin)) = (flag, &topology.local_node_id) {
            let configured = sources.configured_id(&defaults.node.endpoint)?;
            if configured != id {
                return Err(id_conflict(name, id, configured, origin));
            }
        }
        sources.over_topology(&defaults)?
    };
    let Some((name, id)) = flag else {
        let source = topology
            .local_node_id
            .clone()
            .map_or(IdSource::Implicit, IdSource::Config);
        return Ok((config, source));
    };
    if let Some(origin) = &topology.local_node_id {
        if config.node.id != id {
            return Err(id_conflict(name, id, config.node.id, origin));
        }
    } else if config.node.id != id {
        // An explicit topology without `LocalNodeId`: the flag names it.
        config.node.id = id;
        config.validate().map_err(|e| {
            CliError::Conflict(format!(
                "{e} (this node's id {id} comes from --node-id {name})"
            ))
        })?;
    }
    Ok((config, IdSource::Flag(name.to_owned())))
}

/// On loopback the other nodes reach this node at its endpoint's port, so
/// it must listen there (unless `--bind` says it listens elsewhere on
/// purpose).
fn check_listen_port(
    cli: &Cli,
    config: &ClusterConfig,
    topology: &TopologySources,
) -> Result<(), CliError> {
    let advertised = port_of(&config.node.endpoint);
    if cli.bind.is_some() || !is_loopback(&config.node.endpoint) || advertised == cli.port {
        return Ok(());
    }
    let origin = topology
        .local_node_endpoint
        .as_deref()
        .unwrap_or("the flags");
    Err(CliError::Conflict(format!(
        "--port {} but Cluster.LocalNodeEndpoint is `{}` (from {origin}): the other nodes \
         reach this node on port {advertised}, so it must listen there; use --port \
         {advertised}, or fix the endpoint (give --bind to listen elsewhere on purpose)",
        cli.port, config.node.endpoint,
    )))
}

/// This binary serves and dials HTTPS only from `Cluster.Tls`: an
/// `https://` endpoint without it could never be reached.
fn check_https_has_tls(config: &ClusterConfig) -> Result<(), CliError> {
    if config.tls.is_some() {
        return Ok(());
    }
    match config.all_nodes().find(|n| n.endpoint.scheme() == "https") {
        Some(node) => Err(CliError::Conflict(format!(
            "`{}` is https:// but TLS is not configured; set Cluster.Tls.CertificatePath, \
             Cluster.Tls.KeyPath and Cluster.Tls.CaCertificatePath (environment: \
             Cluster__Tls__CertificatePath, …; `order-system certs` writes a development set)",
            node.endpoint
        ))),
        None => Ok(()),
    }
}

/// Resolves the node's configuration from the flags, the configuration file
/// and `env` (the `Cluster__*` variables, see [`cluster_env`]) under the
/// rules in the [module docs](self).
pub fn resolve(cli: &Cli, env: Vec<(String, String)>) -> Result<NodeSetup, CliError> {
    check_local_cluster_flags(cli)?;
    let sources = Sources {
        file: config_file(cli),
        env,
    };
    let topology = sources.over(ClusterConfig::loader()).topology_sources()?;
    let (mut config, id_source) = configure(cli, &sources, &topology)?;
    let members_origin = topology
        .members
        .as_deref()
        .unwrap_or("the local cluster of --cluster");
    check_one_cluster(&config, &id_source, members_origin)?;
    check_listen_port(cli, &config, &topology)?;
    check_https_has_tls(&config)?;

    let base = cli
        .data_dir
        .clone()
        .or_else(|| config.persistent_state_path.clone())
        .unwrap_or_else(|| PathBuf::from("data"));
    config.persistent_state_path = Some(base.join(format!("node-{}", config.node.id)));
    let ip = cli
        .bind
        .unwrap_or_else(|| match config.node.endpoint.to_uri().host() {
            Some("[::1]") => IpAddr::V6(Ipv6Addr::LOCALHOST),
            _ if is_loopback(&config.node.endpoint) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            _ => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        });
    Ok(NodeSetup {
        config,
        listen: SocketAddr::new(ip, cli.port),
    })
}

#[cfg(test)]
mod tests;
