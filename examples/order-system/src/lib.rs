//! The seed's OrderSystem on catga-cluster, as a library so that its parts
//! (and the README's examples) are tested; `main.rs` is the binary.

pub mod app;
pub mod certs;
pub mod cli;
pub mod demo;
#[cfg(test)]
mod deployment;
pub mod orders;
pub mod outbox;
pub mod probe;

/// The README's code, compiled and run as documentation tests.
#[doc = include_str!("../../../README.md")]
#[doc(hidden)]
pub mod readme {}
