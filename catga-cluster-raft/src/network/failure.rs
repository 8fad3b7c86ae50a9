//! Why an RPC to a peer failed before the peer answered, as every client
//! (HTTP or in-process) reports it, and what openraft is told.

use std::time::Duration;

use catga_cluster_core::NodeId;
use openraft::error::{NetworkError, PayloadTooLarge, RPCError, Timeout, Unreachable};
use openraft::network::RPCTypes;
use openraft::{AnyError, BasicNode};

/// Why an RPC failed before the other side answered.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Failure {
    /// Not delivered: the request cannot have taken effect.
    #[error("node {target} is unreachable: {reason}")]
    Unreachable { target: NodeId, reason: String },
    #[error("no answer from node {target} within {after:?}")]
    Timeout { target: NodeId, after: Duration },
    #[error("node {target} refused the RPC as too large")]
    TooLarge { target: NodeId },
    #[error("RPC to node {target} failed: {reason}")]
    Network { target: NodeId, reason: String },
}

impl Failure {
    /// Whether the request surely did not reach the other side.
    pub(crate) fn undelivered(&self) -> bool {
        matches!(self, Failure::Unreachable { .. })
    }

    pub(crate) fn into_rpc_error<E: std::error::Error>(
        self,
        action: RPCTypes,
        local: NodeId,
        entries: usize,
    ) -> RPCError<NodeId, BasicNode, E> {
        match self {
            Failure::Unreachable { .. } => {
                RPCError::Unreachable(Unreachable::new(&AnyError::error(self.to_string())))
            }
            Failure::Timeout { target, after } => RPCError::Timeout(Timeout {
                action,
                id: local,
                target,
                timeout: after,
            }),
            Failure::TooLarge { .. } if entries > 1 => {
                RPCError::PayloadTooLarge(PayloadTooLarge::new_entries_hint((entries / 2) as u64))
            }
            Failure::TooLarge { .. } | Failure::Network { .. } => {
                RPCError::Network(NetworkError::new(&AnyError::error(self.to_string())))
            }
        }
    }
}
