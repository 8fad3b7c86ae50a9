//! The leadership claim behind `is_leader()`: the published snapshot's
//! claim and lease deadline in one atomic word (see the
//! [lease rule](crate::node#lease-rule)).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use catga_cluster_core::Leadership;
use tokio::time::Instant;

/// The leadership claim in a single atomic word: 0 when this node does not
/// lead under a valid lease, otherwise one plus the lease deadline in
/// nanoseconds since `base` (`u64::MAX`: no deadline). One word, so a reader
/// never combines a claim with another snapshot's deadline.
pub(super) struct LeaseWord {
    base: Instant,
    word: AtomicU64,
}

impl LeaseWord {
    pub(super) fn new() -> Self {
        LeaseWord {
            base: Instant::now(),
            word: AtomicU64::new(0),
        }
    }

    /// Stores the claim of `snapshot`.
    pub(super) fn store(&self, snapshot: &Leadership) {
        let claims = snapshot.claims_leadership();
        let word = match (claims, snapshot.lease_deadline) {
            (false, _) => 0,
            (true, None) => u64::MAX,
            (true, Some(deadline)) => {
                let nanos = deadline.saturating_duration_since(self.base).as_nanos();
                u64::try_from(nanos).unwrap_or(u64::MAX).min(u64::MAX - 2) + 1
            }
        };
        self.word.store(word, Ordering::Release);
    }

    /// Withdraws the claim, until the next [`store`](Self::store).
    pub(super) fn withdraw(&self) {
        self.word.store(0, Ordering::Release);
    }

    /// Whether the stored claim holds now.
    pub(super) fn is_leader(&self) -> bool {
        match self.word.load(Ordering::Acquire) {
            0 => false,
            u64::MAX => true,
            word => Instant::now() < self.base + Duration::from_nanos(word - 1),
        }
    }
}
