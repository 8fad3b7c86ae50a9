#![no_main]
//! `Cluster__*` environment variables, one `NAME=VALUE` a line: see `catga_cluster_core::fuzzing::config_env` for what is checked.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| catga_cluster_core::fuzzing::config_env(data));
