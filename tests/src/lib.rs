//! The cross-crate suites of catga-cluster, where its guarantees are proven
//! under faults, Jepsen-style.
//!
//! Per-crate unit and integration tests stay in their crates; what needs
//! several crates at once, real sockets and real processes lives here:
//!
//! - [`harness`]: N nodes over real loopback HTTP in one process, behind a
//!   fault-injecting transport; abrupt stop and restart from disk.
//! - [`singleton`]: every node's singleton task recording its fenced
//!   runs, the fence-checking resource, and the checks over runs and admin
//!   calls.
//! - [`schedule`]: randomised fault schedules from a printed seed, replayed
//!   with `CATGA_FAULT_SEED`; `CATGA_FAULT_PROFILE=long` selects the long
//!   profile.
//! - [`workload`]: clients on every node (locks, a fence-checking resource,
//!   singleton runs, idempotent forwarded writes, compare-and-set counters,
//!   linearizable reads) recording a [`history`].
//! - [`checker`]: linearizability of the key-value and lock histories
//!   against sequential models of their semantics; [`invariants`]: the
//!   rules checked over every history.
//! - [`process`]: the example binary as OS processes, for signals
//!   (SIGKILL, SIGSTOP/SIGCONT, SIGTERM); [`netns`]: three virtual hosts in
//!   Linux network namespaces with `tc netem`.

pub mod checker;
pub mod harness;
pub mod history;
pub mod invariants;
pub mod netns;
pub mod process;
pub mod schedule;
pub mod singleton;
pub mod workload;
