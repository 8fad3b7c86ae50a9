#![no_main]
//! JSON configuration text (`appsettings.json`): see `catga_cluster_core::fuzzing::config_json` for what is checked.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| catga_cluster_core::fuzzing::config_json(data));
