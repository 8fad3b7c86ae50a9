//! Expiring keys with a time to live on time: the state machine deletes an
//! expired key when an entry's time reaches its expiry
//! ([`Operation::PutTtl`]), so when no write comes the leader proposes an
//! empty command once the earliest expiry has passed by its clock.

use std::sync::Weak;
use std::time::Duration;

use catga_cluster_core::ClusterCoordinator;

use super::{wall_clock_ms, Inner, RaftNode};
use crate::types::Operation;

/// The longest pause between two looks at the earliest expiry: a key
/// written meanwhile is noticed by then.
const POLL: Duration = Duration::from_millis(100);

pub(in crate::node) async fn expire_keys(weak: Weak<Inner>) {
    let Some(inner) = weak.upgrade() else { return };
    let shutdown = inner.shutdown.clone();
    drop(inner);
    loop {
        let Some(inner) = weak.upgrade() else { return };
        let node = RaftNode { inner };
        let (next, _) = node.state_machine().next_expiry();
        let now = wall_clock_ms();
        let pause = match next {
            Some(at) if at <= now && node.is_leader() => {
                if let Err(e) = node.write(Operation::Noop, None).await {
                    tracing::debug!(target: "catga_cluster::raft", error = %e, "expiry tick failed");
                }
                Duration::from_millis(10)
            }
            Some(at) if at > now => Duration::from_millis(at - now).min(POLL),
            _ => POLL,
        };
        drop(node);
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(pause) => {}
        }
    }
}
