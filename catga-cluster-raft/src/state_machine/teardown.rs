//! Freeing the state when the last handle to a state machine goes.
//!
//! Freeing a large state is slow: each key, value and table node is its own
//! allocation, and 600,000 keys take about a quarter of a second to free on
//! an idle core (more on a busy one). A node that shuts down after a
//! hand-over would make its process wait that long before it exits, so a
//! large state is freed on a thread of its own; a process that exits
//! meanwhile simply ends it, as the memory goes with the process anyway.

use std::sync::PoisonError;

use super::Shared;

/// Up to this many keys and remembered request ids the state is freed in
/// place: a thread would cost more than it saves.
const FREE_IN_PLACE_UP_TO: usize = 10_000;

impl Drop for Shared {
    fn drop(&mut self) {
        let data = std::mem::take(self.data.get_mut().unwrap_or_else(PoisonError::into_inner));
        if data.kv.len() + data.dedup.len() <= FREE_IN_PLACE_UP_TO {
            return;
        }
        // If no thread can be started, the closure and the state it holds
        // are dropped here instead.
        let _ = std::thread::Builder::new()
            .name("catga-free-state".into())
            .spawn(move || drop(data));
    }
}
