//! The integration tests of catga-cluster-core, in one binary.

#[cfg(feature = "config")]
mod config;
#[cfg(feature = "tls")]
mod tls;
