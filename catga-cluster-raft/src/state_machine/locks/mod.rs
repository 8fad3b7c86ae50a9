//! The lock table: each lock's holder and its queue of waiters, and what the
//! lock operations do to them (see the [module docs](super#fair-locks)).
//!
//! Every operation on a lock first *settles* it at the entry's index and
//! time: a lease that has lapsed by the state machine's clock ends, and a
//! free lock goes to the first queued waiter whose wait has not run out
//! (waiters whose wait ran out are dropped on the way). A release hands the
//! lock over the same way. Each grant's token is the index of the entry that
//! made it, and one entry makes at most one grant of a lock, so tokens grow
//! strictly.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::limits;
use crate::types::{CommandResponse, LockState};

/// A lock's holder and the waiters queued behind it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Lock {
    /// The holder. Its lease may have lapsed by the state machine's clock:
    /// the next entry that touches the lock ends it.
    pub(super) holder: Option<Holder>,
    /// The waiters, in arrival order.
    pub(super) waiters: VecDeque<Waiter>,
}

/// The holder of a lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Holder {
    pub(super) owner: String,
    /// The fencing token: the index of the granting entry.
    pub(super) token: u64,
    /// When the lease ends, on the state machine's clock.
    pub(super) expires_at_ms: u64,
    /// The waiter id of the call it was granted to; `None` for a grant to
    /// [`Operation::LockAcquire`](crate::types::Operation::LockAcquire).
    pub(super) waiter: Option<u64>,
}

/// A queued waiter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Waiter {
    pub(super) owner: String,
    pub(super) waiter: u64,
    /// The lease it asked for.
    pub(super) ttl_ms: u64,
    /// When its wait runs out, on the state machine's clock.
    pub(super) deadline_ms: u64,
}

/// Where one waiter stands, as a node has applied it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WaiterView {
    /// It holds the lock.
    Holder {
        /// The fencing token of its grant.
        token: u64,
    },
    /// It is queued.
    Queued {
        /// How many waiters are ahead of it.
        ahead: u64,
        /// When the holder's lease ends (`None`: no holder).
        holder_expires_at_ms: Option<u64>,
    },
    /// It is neither queued nor holding the lock.
    Absent,
}

/// What an operation did: its answer, and whether the holder or the queue
/// lost or changed anyone (waiters are woken on that).
pub(super) type Outcome = (CommandResponse, bool);

impl Holder {
    fn is(&self, owner: &str, waiter: u64) -> bool {
        self.owner == owner && self.waiter == Some(waiter)
    }

    fn granted(&self) -> CommandResponse {
        CommandResponse::LockGranted {
            token: self.token,
            expires_at_ms: self.expires_at_ms,
        }
    }

    fn held(&self, now: u64) -> CommandResponse {
        CommandResponse::LockHeld {
            expires_at_ms: self.expires_at_ms,
            remaining_ms: self.expires_at_ms.saturating_sub(now),
        }
    }
}

impl Lock {
    /// Whether nothing is left to keep.
    pub(super) fn is_empty(&self) -> bool {
        self.holder.is_none() && self.waiters.is_empty()
    }

    /// The holder as the public type.
    pub(super) fn state(&self) -> Option<LockState> {
        self.holder.as_ref().map(|h| LockState {
            owner: h.owner.clone(),
            token: h.token,
            expires_at_ms: h.expires_at_ms,
        })
    }

    /// Where the waiter `(owner, waiter)` stands.
    pub(super) fn view(&self, owner: &str, waiter: u64) -> WaiterView {
        if let Some(h) = self.holder.as_ref().filter(|h| h.is(owner, waiter)) {
            return WaiterView::Holder { token: h.token };
        }
        match self.position(owner, waiter) {
            Some(ahead) => WaiterView::Queued {
                ahead: ahead as u64,
                holder_expires_at_ms: self.holder.as_ref().map(|h| h.expires_at_ms),
            },
            None => WaiterView::Absent,
        }
    }

    fn position(&self, owner: &str, waiter: u64) -> Option<usize> {
        self.waiters
            .iter()
            .position(|w| w.owner == owner && w.waiter == waiter)
    }

    /// Moves every deadline and lease to a new term's clock, keeping what
    /// was left of each (see [`super::apply::advance_clock`]).
    pub(super) fn rebase(&mut self, old_now: u64, new_now: u64) {
        let shift = |at: &mut u64| *at = new_now.saturating_add(at.saturating_sub(old_now));
        if let Some(h) = &mut self.holder {
            shift(&mut h.expires_at_ms);
        }
        for w in &mut self.waiters {
            shift(&mut w.deadline_ms);
        }
    }

    /// Ends a lapsed lease, then hands a free lock to the first waiter still
    /// waiting. Returns whether anything changed.
    fn settle(&mut self, index: u64, now: u64) -> bool {
        let mut changed = false;
        if self.holder.as_ref().is_some_and(|h| h.expires_at_ms <= now) {
            self.holder = None;
            changed = true;
        }
        if self.holder.is_none() {
            changed |= self.hand_over(index, now);
        }
        changed
    }

    /// Grants the free lock to the first waiter whose wait has not run out,
    /// dropping those whose wait has. Returns whether the queue changed.
    fn hand_over(&mut self, index: u64, now: u64) -> bool {
        debug_assert!(self.holder.is_none());
        let mut changed = false;
        while let Some(next) = self.waiters.pop_front() {
            changed = true;
            if next.deadline_ms > now {
                self.holder = Some(Holder {
                    owner: next.owner,
                    token: index,
                    expires_at_ms: now.saturating_add(next.ttl_ms),
                    waiter: Some(next.waiter),
                });
                break;
            }
        }
        changed
    }

    /// Drops every waiter whose wait has run out. Returns whether any was.
    fn prune(&mut self, now: u64) -> bool {
        let before = self.waiters.len();
        self.waiters.retain(|w| w.deadline_ms > now);
        self.waiters.len() != before
    }

    /// Grants the free lock to the caller.
    fn grant(
        &mut self,
        index: u64,
        now: u64,
        owner: &str,
        ttl_ms: u64,
        waiter: Option<u64>,
    ) -> CommandResponse {
        let holder = Holder {
            owner: owner.to_owned(),
            token: index,
            expires_at_ms: now.saturating_add(ttl_ms),
            waiter,
        };
        let answer = holder.granted();
        self.holder = Some(holder);
        answer
    }

    /// [`Operation::LockAcquire`](crate::types::Operation::LockAcquire):
    /// granted only if nobody holds the lock and nobody waits for it.
    pub(super) fn acquire(&mut self, index: u64, now: u64, owner: &str, ttl_ms: u64) -> Outcome {
        let changed = self.settle(index, now);
        match &self.holder {
            Some(h) => (h.held(now), changed),
            None => (self.grant(index, now, owner, ttl_ms, None), true),
        }
    }

    /// [`Operation::LockWait`](crate::types::Operation::LockWait).
    pub(super) fn wait(
        &mut self,
        index: u64,
        now: u64,
        owner: &str,
        waiter: u64,
        ttl_ms: u64,
        wait_ms: u64,
    ) -> Outcome {
        let mut changed = self.settle(index, now);
        let Some(holder) = &self.holder else {
            // Free, so nobody waits (settling hands a free lock over).
            return (self.grant(index, now, owner, ttl_ms, Some(waiter)), true);
        };
        if holder.is(owner, waiter) {
            // Granted before this command was applied (a retry, or the
            // settling above).
            return (holder.granted(), changed);
        }
        let (expires_at_ms, held) = (holder.expires_at_ms, holder.held(now));
        changed |= self.prune(now);
        let queued = |ahead: usize| CommandResponse::LockQueued {
            ahead: ahead as u64,
            expires_at_ms,
            remaining_ms: expires_at_ms.saturating_sub(now),
            index,
        };
        let deadline_ms = now.saturating_add(wait_ms);
        if let Some(ahead) = self.position(owner, waiter) {
            // Asked again: the waiter keeps its place; its wait is never
            // shortened.
            let w = &mut self.waiters[ahead];
            w.ttl_ms = ttl_ms;
            w.deadline_ms = w.deadline_ms.max(deadline_ms);
            return (queued(ahead), changed);
        }
        if wait_ms == 0 || self.waiters.len() >= limits::MAX_LOCK_WAITERS {
            return (held, changed);
        }
        self.waiters.push_back(Waiter {
            owner: owner.to_owned(),
            waiter,
            ttl_ms,
            deadline_ms,
        });
        (queued(self.waiters.len() - 1), changed)
    }

    /// [`Operation::LockCancel`](crate::types::Operation::LockCancel).
    pub(super) fn cancel(&mut self, index: u64, now: u64, owner: &str, waiter: u64) -> Outcome {
        let mut changed = self.settle(index, now);
        if let Some(h) = self.holder.as_ref().filter(|h| h.is(owner, waiter)) {
            return (h.granted(), changed);
        }
        if let Some(at) = self.position(owner, waiter) {
            self.waiters.remove(at);
            changed = true;
        }
        let remaining_ms = self
            .holder
            .as_ref()
            .map_or(0, |h| h.expires_at_ms.saturating_sub(now));
        (CommandResponse::LockCancelled { remaining_ms }, changed)
    }

    /// [`Operation::LockRenew`](crate::types::Operation::LockRenew).
    pub(super) fn renew(
        &mut self,
        index: u64,
        now: u64,
        owner: &str,
        token: u64,
        ttl_ms: u64,
    ) -> Outcome {
        let changed = self.settle(index, now);
        match &mut self.holder {
            Some(h) if h.token == token && h.owner == owner => {
                h.expires_at_ms = now.saturating_add(ttl_ms);
                (h.granted(), true)
            }
            _ => (CommandResponse::LockLost, changed),
        }
    }

    /// [`Operation::LockRelease`](crate::types::Operation::LockRelease):
    /// the lock goes to the next waiter in this entry.
    pub(super) fn release(&mut self, index: u64, now: u64, owner: &str, token: u64) -> Outcome {
        let changed = self.settle(index, now);
        match &self.holder {
            // A token equal to this entry's index was granted by the settling
            // above: no caller can know it yet, and refusing it keeps one
            // grant per entry.
            Some(h) if h.token == token && h.owner == owner && token < index => {
                self.holder = None;
                self.hand_over(index, now);
                (CommandResponse::LockReleased, true)
            }
            _ => (CommandResponse::LockLost, changed),
        }
    }
}

#[cfg(test)]
pub(super) mod tests;
