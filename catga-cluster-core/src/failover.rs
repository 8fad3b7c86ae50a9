//! How a lost leader was replaced: the [`FailoverPath`] that elected the
//! new leader, the [`Failover`] record a new leader keeps, and
//! [`FailoverCounts`] by path, as a coordinator reports them (the `path`
//! label of `catga_cluster_failovers_total`, the `failover` object of
//! `/cluster/status`).
//!
//! ```
//! use std::time::Duration;
//! use catga_cluster_core::{FailoverCounts, FailoverPath};
//!
//! let mut counts = FailoverCounts::default();
//! counts.record(FailoverPath::Fast, Duration::from_millis(4));
//! assert_eq!(counts.count(FailoverPath::Fast), 1);
//! assert_eq!(counts.count(FailoverPath::Timer), 0);
//! assert_eq!(FailoverPath::Handover.as_str(), "handover");
//! ```

use std::fmt;
use std::time::Duration;

use crate::NodeId;

/// What elected a new leader after the previous one was lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "lowercase"))]
#[non_exhaustive]
pub enum FailoverPath {
    /// The crash fast path: the previous leader's process was seen to die
    /// (its connection ended abruptly and its endpoint refused a fresh
    /// connection) and the survivors elected at once, without waiting for
    /// the leader lease.
    Fast,
    /// The election timers: the followers heard nothing from the previous
    /// leader for a whole leader lease (a paused, partitioned or slow
    /// leader, or a crash the fast path could not confirm).
    Timer,
    /// A graceful hand-over: the previous leader asked this node to stand.
    Handover,
}

impl FailoverPath {
    /// Every path, for metrics that show all their label values.
    pub const ALL: [FailoverPath; 3] = [
        FailoverPath::Fast,
        FailoverPath::Timer,
        FailoverPath::Handover,
    ];

    /// The lower-case name used in logs, metrics labels and the HTTP API.
    pub fn as_str(self) -> &'static str {
        match self {
            FailoverPath::Fast => "fast",
            FailoverPath::Timer => "timer",
            FailoverPath::Handover => "handover",
        }
    }

    fn index(self) -> usize {
        match self {
            FailoverPath::Fast => 0,
            FailoverPath::Timer => 1,
            FailoverPath::Handover => 2,
        }
    }
}

impl fmt::Display for FailoverPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One fail-over, as the node that it elected saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Failover {
    /// What elected this node.
    pub path: FailoverPath,
    /// The term this node leads.
    pub term: u64,
    /// The leader this node knew before, if it knew one.
    pub previous_leader: Option<NodeId>,
    /// How long it took, on this node's clock: from the moment the previous
    /// leader's connection broke (fast path), from the last word of the
    /// previous leader (timers), or from the hand-over request
    /// (hand-over), until this node led.
    pub took: Duration,
}

impl Failover {
    /// A fail-over record.
    pub fn new(
        path: FailoverPath,
        term: u64,
        previous_leader: Option<NodeId>,
        took: Duration,
    ) -> Self {
        Failover {
            path,
            term,
            previous_leader,
            took,
        }
    }
}

/// How many fail-overs elected this node, and how long they took in all,
/// by path.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FailoverCounts {
    counts: [u64; 3],
    total: [Duration; 3],
}

impl FailoverCounts {
    /// Counts one fail-over.
    pub fn record(&mut self, path: FailoverPath, took: Duration) {
        let i = path.index();
        self.counts[i] = self.counts[i].saturating_add(1);
        self.total[i] = self.total[i].saturating_add(took);
    }

    /// How many fail-overs took `path`.
    pub fn count(&self, path: FailoverPath) -> u64 {
        self.counts[path.index()]
    }

    /// How long the fail-overs that took `path` took, added up.
    pub fn total(&self, path: FailoverPath) -> Duration {
        self.total[path.index()]
    }
}
