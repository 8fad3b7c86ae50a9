#![no_main]
//! A duration setting (`00:00:00.150`, `150ms`): see `catga_cluster_core::fuzzing::duration` for what is checked.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| catga_cluster_core::fuzzing::duration(data));
