//! The state every cluster route shares.

use std::sync::Arc;

use bytes::Bytes;

use crate::commands::CommandRegistry;
use crate::health::ClusterView;
use crate::limits::Limits;
use crate::metrics::ClusterMetrics;

/// The state every cluster route shares.
#[derive(Clone)]
pub(crate) struct AppState(pub(super) Arc<Shared>);

pub(crate) struct Shared {
    pub(crate) view: Arc<ClusterView>,
    pub(crate) metrics: ClusterMetrics,
    pub(crate) commands: CommandRegistry,
    #[cfg_attr(not(feature = "raft"), allow(dead_code))]
    pub(crate) limits: Limits,
    /// The OpenAPI document, encoded once.
    pub(crate) openapi: Bytes,
    #[cfg(feature = "raft")]
    pub(crate) raft: Option<catga_cluster_raft::RaftNode>,
}

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}
