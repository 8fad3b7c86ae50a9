#![no_main]
//! `x-catga-forwarded` header lines: see `catga_cluster_tower::fuzzing::hop_header` for what is checked.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| catga_cluster_tower::fuzzing::hop_header(data));
