//! The seed's OrderSystem on catga-cluster, as a library so that its parts
//! are tested; `main.rs` is the binary. (The README's code is compiled by
//! the `docs-tests` crate.)

pub mod app;
pub mod certs;
pub mod cli;
pub mod demo;
#[cfg(test)]
mod deployment;
pub mod orders;
pub mod outbox;
pub mod probe;
