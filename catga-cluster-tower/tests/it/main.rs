//! The integration tests of catga-cluster-tower, in one test binary (one
//! link step instead of seven): a module per middleware or forwarder.
#![allow(missing_docs)]

mod boxed_forwarder;
mod builder;
mod forward;
mod http_forwarder;
mod json_forwarder;
mod leader_only;
mod problem;
