#![no_main]
//! The `If-Match` revision of the key-value routes: see `catga_cluster_axum::fuzzing::if_match` for what is checked.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| catga_cluster_axum::fuzzing::if_match(data));
