//! Command line and configuration of the example.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use catga_cluster_core::config::{ClusterConfig, ConfigError};
use catga_cluster_core::{Endpoint, NodeId, NodeInfo};
use clap::{Parser, Subcommand};

/// The seed's OrderSystem on catga-cluster.
#[derive(Debug, Parser)]
#[command(name = "order-system", version, about)]
pub struct Cli {
    /// Run as one node of a cluster. Without `appsettings.json` or
    /// `Cluster__*` variables, nodes `node0`.. `node{N-1}` on
    /// `localhost:{base-port + i}` form the cluster.
    #[arg(long)]
    pub cluster: bool,

    /// The port this node serves HTTP on.
    #[arg(long, default_value_t = 5000)]
    pub port: u16,

    /// This node's name (`node0`, `node1`, …) or numeric id.
    #[arg(long = "node-id")]
    pub node_id: Option<String>,

    /// How many nodes the local cluster has (without other configuration).
    #[arg(long, default_value_t = 3)]
    pub nodes: u16,

    /// The port of `node0` in the local cluster (without other
    /// configuration).
    #[arg(long, default_value_t = 5000)]
    pub base_port: u16,

    /// A configuration file (JSON like the seed's `appsettings.json`, or
    /// TOML). Default: `./appsettings.json` when it exists.
    #[arg(long)]
    pub config: Option<PathBuf>,

    /// Where the node keeps its Raft state. Default: `PersistentStatePath`
    /// from the configuration, else `./data`; each node uses its own
    /// `node-{id}` directory below it.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,

    /// The address to listen on. Default: loopback for a localhost
    /// endpoint, all interfaces otherwise.
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
}

/// Why the configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A flag is invalid.
    #[error("{0}")]
    Flag(String),
}

/// A node's configuration, resolved from flags, files and environment.
#[derive(Debug)]
pub struct NodeSetup {
    /// The cluster configuration (persistent path resolved per node).
    pub config: ClusterConfig,
    /// The address to listen on.
    pub listen: SocketAddr,
}

fn has_cluster_env(vars: &[(String, String)]) -> bool {
    vars.iter()
        .any(|(k, _)| k.to_ascii_lowercase().starts_with("cluster__"))
}

/// The local cluster the seed's README runs: `node{i}` on
/// `http://localhost:{base + i}`.
fn local_cluster(cli: &Cli) -> Result<ClusterConfig, CliError> {
    let name = cli
        .node_id
        .as_deref()
        .ok_or_else(|| CliError::Flag("--cluster needs --node-id (node0, node1, …)".into()))?;
    let id = NodeId::from_name(name).map_err(|e| CliError::Flag(format!("--node-id: {e}")))?;
    if id.get() >= u64::from(cli.nodes) {
        return Err(CliError::Flag(format!(
            "--node-id {name} is outside the {}-node local cluster (node0 to node{})",
            cli.nodes,
            cli.nodes.saturating_sub(1)
        )));
    }
    let port_of = |i: u64| -> Result<u16, CliError> {
        u16::try_from(u64::from(cli.base_port) + i)
            .map_err(|_| CliError::Flag("--base-port is too high for this many nodes".into()))
    };
    if port_of(id.get())? != cli.port {
        return Err(CliError::Flag(format!(
            "--port {} does not match {name}'s port {} in the local cluster (--base-port {})",
            cli.port,
            port_of(id.get())?,
            cli.base_port
        )));
    }
    let info = |i: u64| -> Result<NodeInfo, CliError> {
        let endpoint = Endpoint::parse(&format!("http://localhost:{}", port_of(i)?))
            .map_err(|e| CliError::Flag(e.to_string()))?;
        Ok(NodeInfo::new(NodeId::new(i), endpoint))
    };
    let members = (0..u64::from(cli.nodes))
        .filter(|i| *i != id.get())
        .map(info)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ClusterConfig::new(info(id.get())?, members)?)
}

/// Resolves the node's configuration: an explicit `--config`, else
/// `./appsettings.json` or `Cluster__*` variables, else the local cluster of
/// `--cluster`, else a single node on `--port`.
pub fn resolve(cli: &Cli, env: Vec<(String, String)>) -> Result<NodeSetup, CliError> {
    let default_file = Path::new("appsettings.json");
    let file = match &cli.config {
        Some(path) => Some(path.clone()),
        None if default_file.exists() => Some(default_file.to_path_buf()),
        None => None,
    };
    let mut config = if file.is_some() || has_cluster_env(&env) {
        let mut loader = ClusterConfig::loader();
        if let Some(file) = &file {
            loader = loader.file(file);
        }
        let mut overrides = env;
        if let Some(name) = &cli.node_id {
            overrides.push(("Cluster__LocalNodeId".into(), name.clone()));
        }
        loader.env_vars(overrides).build()?
    } else if cli.cluster {
        local_cluster(cli)?
    } else {
        let endpoint = Endpoint::parse(&format!("http://localhost:{}", cli.port))
            .map_err(|e| CliError::Flag(e.to_string()))?;
        let id = match &cli.node_id {
            Some(name) => {
                NodeId::from_name(name).map_err(|e| CliError::Flag(format!("--node-id: {e}")))?
            }
            None => NodeId::new(0),
        };
        ClusterConfig::single_node(NodeInfo::new(id, endpoint))
    };
    let base = cli
        .data_dir
        .clone()
        .or_else(|| config.persistent_state_path.clone())
        .unwrap_or_else(|| PathBuf::from("data"));
    config.persistent_state_path = Some(base.join(format!("node-{}", config.node.id)));
    let host = config
        .node
        .endpoint
        .authority()
        .split(':')
        .next()
        .unwrap_or("");
    let loopback = matches!(host, "localhost" | "127.0.0.1" | "[::1]");
    let ip = cli.bind.unwrap_or(if loopback {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    });
    Ok(NodeSetup {
        config,
        listen: SocketAddr::new(ip, cli.port),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("order-system").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn the_seeds_local_cluster_needs_no_configuration() {
        let setup = resolve(
            &cli(&["--cluster", "--port", "5001", "--node-id", "node1"]),
            vec![],
        )
        .unwrap();
        assert_eq!(setup.config.node.id, NodeId::new(1));
        assert_eq!(setup.config.node.endpoint.as_str(), "http://localhost:5001");
        let others: Vec<_> = setup
            .config
            .members
            .iter()
            .map(|m| m.endpoint.as_str())
            .collect();
        assert_eq!(others, ["http://localhost:5000", "http://localhost:5002"]);
        assert_eq!(setup.listen.to_string(), "127.0.0.1:5001");
        assert!(setup
            .config
            .persistent_state_path
            .unwrap()
            .ends_with("node-1"));
    }

    #[test]
    fn bad_flags_are_refused_clearly() {
        let err = resolve(&cli(&["--cluster", "--port", "5000"]), vec![]).unwrap_err();
        assert!(err.to_string().contains("--node-id"), "{err}");
        let err = resolve(
            &cli(&["--cluster", "--port", "5000", "--node-id", "node7"]),
            vec![],
        )
        .unwrap_err();
        assert!(err.to_string().contains("outside"), "{err}");
        let err = resolve(
            &cli(&["--cluster", "--port", "6000", "--node-id", "node0"]),
            vec![],
        )
        .unwrap_err();
        assert!(err.to_string().contains("does not match"), "{err}");
        let err = resolve(
            &cli(&["--cluster", "--port", "5000", "--node-id", "banana"]),
            vec![],
        )
        .unwrap_err();
        assert!(err.to_string().contains("node name"), "{err}");
        assert!(Cli::try_parse_from(["order-system", "--port", "x"]).is_err());
    }

    /// The environment of the seed's (and our) docker-compose.yml.
    #[test]
    fn compose_environment_parses_into_the_expected_cluster() {
        let compose = include_str!("../docker-compose.yml");
        let mut per_service: Vec<Vec<(String, String)>> = Vec::new();
        for line in compose.lines() {
            let line = line.trim();
            if line.starts_with("environment:") {
                per_service.push(Vec::new());
            } else if let Some(var) = line.strip_prefix("- ") {
                if let (Some(current), Some((k, v))) = (per_service.last_mut(), var.split_once('='))
                {
                    if k.starts_with("Cluster__") {
                        current.push((k.to_owned(), v.to_owned()));
                    }
                }
            }
        }
        assert_eq!(per_service.len(), 3, "three services with an environment");
        let mut ids = Vec::new();
        for (i, env) in per_service.into_iter().enumerate() {
            let setup = resolve(&cli(&["--port", "5000"]), env).unwrap();
            assert_eq!(
                setup.config.node.endpoint.as_str(),
                format!("http://node{i}:5000")
            );
            assert_eq!(setup.config.members.len(), 2);
            assert!(
                setup.config.secret.is_some(),
                "the compose file sets a secret"
            );
            assert_eq!(setup.listen.ip(), IpAddr::V4(Ipv4Addr::UNSPECIFIED));
            ids.push(setup.config.node.id);
        }
        ids.dedup();
        assert_eq!(ids.len(), 3);
    }
}
