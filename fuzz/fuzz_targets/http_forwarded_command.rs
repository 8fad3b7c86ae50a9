#![no_main]
//! A forwarded command's JSON body: see `catga_cluster_axum::fuzzing::forwarded_command` for what is checked.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| catga_cluster_axum::fuzzing::forwarded_command(data));
