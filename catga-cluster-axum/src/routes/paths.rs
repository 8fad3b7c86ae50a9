//! The paths of the routes this crate serves besides the Raft RPCs, from
//! [`catga_cluster_core::protocol::paths`], where clients find them too.

pub use catga_cluster_core::protocol::paths::*;
