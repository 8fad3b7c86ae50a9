#![no_main]
//! The JSON bodies of the lock and membership routes: see `catga_cluster_axum::fuzzing::json_bodies` for what is checked.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| catga_cluster_axum::fuzzing::json_bodies(data));
