//! Core traits and types of catga-cluster.
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod node;

#[cfg(feature = "config")]
pub mod config;

pub use node::{Endpoint, EndpointError, NodeId, NodeInfo, NodeNameError};
