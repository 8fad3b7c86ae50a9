//! The outbox: a singleton task on the leader that moves each pending order
//! to `processed`, exactly once.
//!
//! Exactly once holds even if two outbox runs overlap in time (a deposed
//! leader that has not noticed yet): every transition is a compare-and-set
//! on the order's revision, so only one run can move a given order, and the
//! run records the leadership fence it held.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use catga_cluster_core::singleton::{SingletonTask, TaskContext};
use catga_cluster_core::{BoxError, ClusterCoordinator};
use catga_cluster_raft::{CasOutcome, RaftNode};

use crate::orders::{load_orders, now_ms, OrderStatus, Processing, ORDER_PREFIX};

/// The outbox task.
#[derive(Debug, Clone)]
pub struct OutboxProcessor {
    node: RaftNode,
    processed: Arc<AtomicU64>,
}

impl OutboxProcessor {
    /// An outbox over `node`'s orders.
    pub fn new(node: RaftNode) -> Self {
        OutboxProcessor {
            node,
            processed: Arc::new(AtomicU64::new(0)),
        }
    }

    /// How many orders this process's outbox moved to `processed`.
    pub fn processed(&self) -> u64 {
        self.processed.load(Ordering::SeqCst)
    }

    /// One pass over the pending orders.
    async fn pass(&self, ctx: &TaskContext) -> Result<(), BoxError> {
        for (mut order, revision) in load_orders(&self.node).await? {
            if ctx.is_cancelled() {
                break;
            }
            if order.status != OrderStatus::Pending {
                continue;
            }
            let fence = ctx.fence();
            order.status = OrderStatus::Processed;
            order.processing = Some(Processing {
                at_ms: now_ms(),
                by_node: self.node.node().id.get(),
                fence_term: fence.term,
                fence_index: fence.index,
            });
            let key = format!("{ORDER_PREFIX}{}", order.id);
            match self
                .node
                .compare_and_set(&key, revision, serde_json::to_vec(&order)?)
                .await?
            {
                CasOutcome::Written(_) => {
                    self.processed.fetch_add(1, Ordering::SeqCst);
                    tracing::info!(order_id = %order.id, %fence, "order processed");
                }
                CasOutcome::Mismatch(_) => {
                    tracing::debug!(order_id = %order.id, "order changed meanwhile; next pass");
                }
            }
        }
        Ok(())
    }
}

impl SingletonTask for OutboxProcessor {
    fn name(&self) -> &str {
        "OutboxProcessor"
    }

    async fn run(&self, ctx: TaskContext) -> Result<(), BoxError> {
        tracing::info!(fence = %ctx.fence(), "outbox started on the leader");
        let mut applied = self.node.state_machine().subscribe();
        while !ctx.is_cancelled() {
            applied.borrow_and_update();
            tokio::select! {
                // Stop mid-pass when leadership goes: each order's move is
                // one compare-and-set, so a pass cut short leaves nothing
                // half done.
                () = ctx.cancelled() => break,
                pass = self.pass(&ctx) => pass?,
            }
            // Wake on new log entries (new orders), or once a second.
            tokio::select! {
                () = ctx.cancelled() => break,
                _ = applied.changed() => {
                    // Let a burst of orders land before the next pass.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
        tracing::info!("outbox stopped");
        Ok(())
    }
}
