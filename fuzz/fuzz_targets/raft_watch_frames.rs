#![no_main]
//! The body of a leader watch, read frame by frame as the follower reads it: see `catga_cluster_raft::fuzzing` for what is checked.

use catga_cluster_raft::fuzzing::{check, Message};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| check(Message::WatchFrames, data));
