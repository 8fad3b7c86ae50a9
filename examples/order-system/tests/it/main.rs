//! The example's integration tests, in one test binary: the binary as OS
//! processes (`e2e`, `tls`) and the HTTP edge over real sockets (`edge`).

mod e2e;
mod edge;
mod failover;
mod processes;
mod tls;

/// One cluster at a time: on a small machine, two clusters' elections and
/// hand-overs compete for the CPU and turn bounded waits into spurious
/// failures.
static ONE_CLUSTER_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
