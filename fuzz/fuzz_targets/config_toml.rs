#![no_main]
//! TOML configuration text: see `catga_cluster_core::fuzzing::config_toml` for what is checked.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| catga_cluster_core::fuzzing::config_toml(data));
