//! Run with `cargo run -p order-system -- demo` (a narrated 3-node demo), or
//! `cargo run -p order-system -- --cluster --port 5000 --node-id node0` (and
//! node1/5001, node2/5002 in two more terminals) for the seed's local
//! cluster. `order-system certs` writes a development PKI for TLS between
//! the nodes; `order-system probe` is a health check for containers.
//!
//! The seed's OrderSystem on catga-cluster: `POST /orders` is forwarded to
//! the leader from any node and stored in the replicated key-value store;
//! `GET /orders` and `GET /orders/{id}` are linearizable on any node; an
//! outbox singleton on the leader processes each order exactly once; all the
//! cluster routes are mounted.

use std::process::ExitCode;

use clap::Parser;
use order_system::cli::{self, Cli, Command, NodeSetup};
use order_system::{app, certs, demo, probe};
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;

/// How long the process waits at exit for work left on the runtime's
/// blocking pool after the node stopped.
const EXIT_GRACE: std::time::Duration = std::time::Duration::from_millis(100);

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutdown requested");
}

async fn run_node(
    setup: NodeSetup,
    tls: Option<catga_cluster_core::tls::ClusterTls>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    tracing::info!(
        node = %setup.config.node,
        members = setup.config.members.len(),
        data = ?setup.config.persistent_state_path,
        "starting"
    );
    let listener = TcpListener::bind(setup.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", setup.listen))?;
    let node = app::RunningNode::start_with_tls(setup.config, listener, tls).await?;
    shutdown_signal().await;
    node.shutdown().await;
    Ok(())
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match &cli.command {
        Some(Command::Certs(args)) => return certs::run(&args.options()),
        Some(Command::Probe(args)) => return probe::run(&args.options()),
        Some(Command::Demo) | None => {}
    }
    let demo = matches!(cli.command, Some(Command::Demo));
    let default_filter = if demo {
        "error,openraft=off"
    } else {
        catga_cluster_raft::log::recommended_filter()
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    // A configuration that cannot work is bad input, like a bad flag: exit
    // code 2, before anything starts.
    let setup = if demo {
        None
    } else {
        match cli::cluster_env().and_then(|env| cli::resolve(&cli, env)) {
            Ok(setup) => Some(setup),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        }
    };
    // Certificate files that cannot serve are bad input too: say which key
    // and file, and exit 2.
    let tls = match setup.as_ref().map(|s| app::load_tls(&s.config)).transpose() {
        Ok(tls) => tls.flatten(),
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match setup {
            Some(setup) => run_node(setup, tls).await,
            None => demo::run().await,
        }
    });
    // Dropping a runtime waits for every task on its blocking pool. Once
    // the node has stopped, the only long one left can be a snapshot being
    // encoded, which a restart does again (its temporary file is ignored):
    // the process does not wait more than a moment for it.
    runtime.shutdown_timeout(EXIT_GRACE);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
