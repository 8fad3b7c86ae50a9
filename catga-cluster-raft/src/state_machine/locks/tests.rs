//! The lock table on its own: arrival order, hand-over in the releasing
//! entry, waiters whose wait ran out, cancellation, and a property test
//! against a plain model.

use proptest::prelude::*;

use super::*;
use crate::types::CommandResponse::{
    LockCancelled, LockGranted, LockHeld, LockLost, LockQueued, LockReleased,
};

const T0: u64 = 1_000_000;

fn token(r: &CommandResponse) -> u64 {
    match r {
        LockGranted { token, .. } => *token,
        other => panic!("not granted: {other:?}"),
    }
}

fn holder(l: &Lock) -> (String, u64) {
    let h = l.holder.as_ref().expect("a holder");
    (h.owner.clone(), h.token)
}

#[test]
fn waiters_are_granted_in_arrival_order_each_by_the_releasing_entry() {
    let mut l = Lock::default();
    assert_eq!(token(&l.wait(1, T0, "a", 1, 1000, 5000).0), 1);
    for (i, who) in ["b", "c", "d"].into_iter().enumerate() {
        let i = i as u64;
        let (r, _) = l.wait(2 + i, T0 + 1, who, 7, 1000, 5000);
        assert_eq!(
            r,
            LockQueued {
                ahead: i,
                expires_at_ms: T0 + 1000,
                remaining_ms: 999,
                index: 2 + i,
            }
        );
    }
    // a releases in entry 10: b holds from that entry on, with its index as
    // the token; nobody has to ask.
    let (r, changed) = l.release(10, T0 + 5, "a", 1);
    assert_eq!(r, LockReleased);
    assert!(changed);
    assert_eq!(l.view("b", 7), WaiterView::Holder { token: 10 });
    assert_eq!(
        l.state(),
        Some(LockState {
            owner: "b".into(),
            token: 10,
            expires_at_ms: T0 + 5 + 1000,
        })
    );
    assert_eq!(
        l.view("d", 7),
        WaiterView::Queued {
            ahead: 1,
            holder_expires_at_ms: Some(T0 + 1005)
        }
    );
    assert_eq!(l.release(11, T0 + 6, "b", 10).0, LockReleased);
    assert_eq!(holder(&l), ("c".into(), 11));
    assert_eq!(l.release(12, T0 + 7, "c", 11).0, LockReleased);
    assert_eq!(holder(&l), ("d".into(), 12));
    assert_eq!(l.release(13, T0 + 8, "d", 12).0, LockReleased);
    assert!(l.is_empty());
}

#[test]
fn a_waiter_whose_wait_ran_out_is_skipped() {
    let mut l = Lock::default();
    l.wait(1, T0, "a", 1, 10_000, 0);
    l.wait(2, T0, "gone", 1, 10_000, 100);
    l.wait(3, T0, "c", 1, 10_000, 5000);
    // Released after the first waiter's wait ran out (by the leader's
    // clock): it is dropped, and the next one gets the lock.
    let (r, changed) = l.release(4, T0 + 100, "a", 1);
    assert_eq!(r, LockReleased);
    assert!(changed);
    assert_eq!(holder(&l), ("c".into(), 4));
    assert_eq!(l.view("gone", 1), WaiterView::Absent);
    assert!(l.waiters.is_empty());
}

#[test]
fn a_waiter_whose_wait_ran_out_is_dropped_when_another_queues() {
    let mut l = Lock::default();
    l.wait(1, T0, "a", 1, 10_000, 0);
    l.wait(2, T0, "gone", 1, 10_000, 100);
    l.wait(3, T0, "b", 1, 10_000, 5000);
    let (r, changed) = l.wait(4, T0 + 200, "c", 1, 10_000, 5000);
    assert!(changed, "a waiter left the queue");
    assert!(matches!(r, LockQueued { ahead: 1, .. }), "{r:?}");
    let owners: Vec<_> = l.waiters.iter().map(|w| w.owner.as_str()).collect();
    assert_eq!(owners, ["b", "c"]);
}

#[test]
fn a_lapsed_lease_goes_to_the_head_at_the_next_entry_on_the_lock() {
    let mut l = Lock::default();
    l.wait(1, T0, "a", 1, 100, 0);
    l.wait(2, T0, "b", 1, 500, 5000);
    l.wait(3, T0, "c", 1, 500, 5000);
    // Nothing happens by itself when a's lease lapses; c's next proposal
    // ends it, and b (the head) gets the lock in that entry.
    let (r, changed) = l.wait(9, T0 + 100, "c", 1, 500, 4900);
    assert!(changed);
    assert_eq!(holder(&l), ("b".into(), 9));
    assert_eq!(
        r,
        LockQueued {
            ahead: 0,
            expires_at_ms: T0 + 600,
            remaining_ms: 500,
            index: 9,
        }
    );
    // b asking again is told it holds the lock.
    assert_eq!(token(&l.wait(10, T0 + 101, "b", 1, 500, 4899).0), 9);
}

#[test]
fn asking_again_keeps_the_place_and_never_shortens_the_wait() {
    let mut l = Lock::default();
    l.wait(1, T0, "a", 1, 10_000, 0);
    l.wait(2, T0, "b", 1, 1000, 5000);
    l.wait(3, T0, "c", 1, 1000, 5000);
    let (r, changed) = l.wait(4, T0 + 10, "b", 1, 2000, 100);
    assert!(!changed);
    assert!(matches!(r, LockQueued { ahead: 0, .. }), "{r:?}");
    assert_eq!(l.waiters[0].deadline_ms, T0 + 5000);
    assert_eq!(l.waiters[0].ttl_ms, 2000);
    l.wait(5, T0 + 10, "b", 1, 2000, 9000);
    assert_eq!(l.waiters[0].deadline_ms, T0 + 9010);
    assert_eq!(l.waiters.len(), 2);
}

#[test]
fn two_calls_of_one_owner_wait_for_each_other() {
    let mut l = Lock::default();
    assert_eq!(token(&l.wait(1, T0, "a", 1, 1000, 0).0), 1);
    // The same owner, another call: it waits like anyone else.
    let (r, _) = l.wait(2, T0, "a", 2, 1000, 5000);
    assert!(matches!(r, LockQueued { ahead: 0, .. }), "{r:?}");
    assert_eq!(
        l.view("a", 2),
        WaiterView::Queued {
            ahead: 0,
            holder_expires_at_ms: Some(T0 + 1000)
        }
    );
    assert_eq!(l.release(3, T0 + 1, "a", 1).0, LockReleased);
    assert_eq!(l.view("a", 2), WaiterView::Holder { token: 3 });
    assert_eq!(l.view("a", 1), WaiterView::Absent);
}

#[test]
fn a_plain_acquire_never_jumps_the_queue() {
    let mut l = Lock::default();
    l.acquire(1, T0, "a", 100);
    l.wait(2, T0, "b", 1, 1000, 5000);
    // a's lease lapsed: the acquire's entry grants b, the head, and the
    // acquire finds the lock held.
    let (r, changed) = l.acquire(3, T0 + 100, "x", 1000);
    assert!(changed);
    assert_eq!(
        r,
        LockHeld {
            expires_at_ms: T0 + 1100,
            remaining_ms: 1000
        }
    );
    assert_eq!(holder(&l), ("b".into(), 3));
    // A plain acquire on a free lock with nobody waiting is granted.
    assert_eq!(l.release(4, T0 + 101, "b", 3).0, LockReleased);
    assert_eq!(token(&l.acquire(5, T0 + 102, "x", 1000).0), 5);
}

#[test]
fn wait_zero_never_queues() {
    let mut l = Lock::default();
    l.wait(1, T0, "a", 1, 1000, 0);
    let (r, changed) = l.wait(2, T0 + 1, "b", 1, 1000, 0);
    assert!(
        matches!(
            r,
            LockHeld {
                remaining_ms: 999,
                ..
            }
        ),
        "{r:?}"
    );
    assert!(!changed);
    assert!(l.waiters.is_empty());
}

#[test]
fn cancel_leaves_the_queue_but_a_granted_waiter_keeps_the_lock() {
    let mut l = Lock::default();
    l.wait(1, T0, "a", 1, 1000, 0);
    l.wait(2, T0, "b", 1, 1000, 5000);
    l.wait(3, T0, "c", 1, 1000, 5000);
    l.wait(4, T0, "d", 1, 1000, 5000);
    // c gives up: it leaves, and the others keep their order.
    let (r, changed) = l.cancel(5, T0 + 10, "c", 1);
    assert_eq!(r, LockCancelled { remaining_ms: 990 });
    assert!(changed);
    assert_eq!(l.view("c", 1), WaiterView::Absent);
    // b's wait ran out on its side just as a released: the release granted
    // it the lock first, so its cancel is told it holds the lock, and
    // keeps it.
    assert_eq!(l.release(6, T0 + 20, "a", 1).0, LockReleased);
    let (r, changed) = l.cancel(7, T0 + 21, "b", 1);
    assert_eq!(
        r,
        LockGranted {
            token: 6,
            expires_at_ms: T0 + 1020
        }
    );
    assert!(!changed);
    assert_eq!(holder(&l), ("b".into(), 6));
    // Cancelling a waiter that is not there changes nothing.
    assert_eq!(
        l.cancel(8, T0 + 22, "nobody", 9),
        (LockCancelled { remaining_ms: 998 }, false)
    );
    // Then d is next.
    assert_eq!(l.release(9, T0 + 23, "b", 6).0, LockReleased);
    assert_eq!(holder(&l), ("d".into(), 9));
}

#[test]
fn a_stale_token_or_another_owner_loses() {
    let mut l = Lock::default();
    l.wait(1, T0, "a", 1, 100, 0);
    assert_eq!(l.release(2, T0 + 1, "b", 1).0, LockLost);
    assert_eq!(l.release(3, T0 + 1, "a", 2).0, LockLost);
    assert_eq!(l.renew(4, T0 + 1, "a", 2, 100).0, LockLost);
    assert_eq!(token(&l.renew(5, T0 + 50, "a", 1, 100).0), 1);
    assert_eq!(l.holder.as_ref().unwrap().expires_at_ms, T0 + 150);
    // Lapsed: lost, and the lock is free.
    assert_eq!(l.renew(6, T0 + 150, "a", 1, 100), (LockLost, true));
    assert!(l.is_empty());
}

#[test]
fn a_release_naming_its_own_entry_is_refused() {
    let mut l = Lock::default();
    l.wait(1, T0, "a", 1, 100, 0);
    l.wait(2, T0, "b", 1, 1000, 5000);
    l.wait(3, T0, "c", 1, 1000, 5000);
    // Entry 7 ends a's lease and grants b token 7; a release of token 7 in
    // the same entry would let c have token 7 too.
    assert_eq!(l.release(7, T0 + 100, "b", 7), (LockLost, true));
    assert_eq!(holder(&l), ("b".into(), 7));
    assert_eq!(l.release(8, T0 + 101, "b", 7).0, LockReleased);
    assert_eq!(holder(&l), ("c".into(), 8));
}

#[test]
fn a_full_queue_answers_held() {
    let mut l = Lock::default();
    l.wait(1, T0, "a", 1, 1000, 0);
    for i in 0..limits::MAX_LOCK_WAITERS as u64 {
        let (r, _) = l.wait(2 + i, T0, "w", 1 + i, 1000, 5000);
        assert!(matches!(r, LockQueued { .. }));
    }
    let (r, _) = l.wait(10_000, T0, "late", 1, 1000, 5000);
    assert!(matches!(r, LockHeld { .. }), "{r:?}");
    assert_eq!(l.view("late", 1), WaiterView::Absent);
}

#[test]
fn a_new_term_keeps_what_was_left_of_leases_and_waits() {
    let mut l = Lock::default();
    l.wait(1, T0, "a", 1, 1000, 0);
    l.wait(2, T0, "b", 1, 1000, 3000);
    l.rebase(T0 + 400, 50 * T0);
    assert_eq!(l.holder.as_ref().unwrap().expires_at_ms, 50 * T0 + 600);
    assert_eq!(l.waiters[0].deadline_ms, 50 * T0 + 2600);
}

// The property test: random operations on one lock, against a model kept
// as plainly as possible, with the rules checked on their own as well:
// tokens grow strictly, a lock is granted only when its holder released it
// or its lease lapsed, waiters are granted in arrival order (skipping only
// those that left or whose wait ran out), and never after their wait.

#[derive(Debug, Clone)]
pub(in crate::state_machine) enum Op {
    Wait { who: u8, ttl: u64, wait: u64 },
    Cancel { who: u8 },
    Release { who: u8, right: bool },
    Renew { who: u8, right: bool, ttl: u64 },
    Acquire { who: u8, ttl: u64 },
    NewTerm { jump: u64 },
}

pub(in crate::state_machine) fn op() -> impl Strategy<Value = Op> {
    let who = 0u8..6;
    prop_oneof![
        4 => (who.clone(), 1u64..400, 0u64..900).prop_map(|(who, ttl, wait)| Op::Wait { who, ttl, wait }),
        1 => who.clone().prop_map(|who| Op::Cancel { who }),
        3 => (who.clone(), prop::bool::weighted(0.8)).prop_map(|(who, right)| Op::Release { who, right }),
        1 => (who.clone(), any::<bool>(), 1u64..400).prop_map(|(who, right, ttl)| Op::Renew { who, right, ttl }),
        1 => (who, 1u64..400).prop_map(|(who, ttl)| Op::Acquire { who, ttl }),
        1 => (0u64..5000).prop_map(|jump| Op::NewTerm { jump }),
    ]
}

/// Caller `who`: owners `o0`..`o2`, each with two waiter ids.
pub(in crate::state_machine) fn caller(who: u8) -> (String, u64) {
    (format!("o{}", who % 3), u64::from(who) + 1)
}

#[derive(Debug, Clone, PartialEq)]
struct ModelHolder {
    owner: String,
    waiter: Option<u64>,
    token: u64,
    expires: u64,
}

#[derive(Debug, Clone, PartialEq)]
struct ModelWaiter {
    owner: String,
    waiter: u64,
    ttl: u64,
    deadline: u64,
}

#[derive(Debug, Default)]
pub(in crate::state_machine) struct Model {
    holder: Option<ModelHolder>,
    queue: Vec<ModelWaiter>,
}

impl Model {
    fn settle(&mut self, index: u64, now: u64) {
        if self.holder.as_ref().is_some_and(|h| h.expires <= now) {
            self.holder = None;
        }
        if self.holder.is_none() {
            self.next(index, now);
        }
    }

    fn next(&mut self, index: u64, now: u64) {
        while !self.queue.is_empty() {
            let w = self.queue.remove(0);
            if w.deadline > now {
                self.holder = Some(ModelHolder {
                    owner: w.owner,
                    waiter: Some(w.waiter),
                    token: index,
                    expires: now + w.ttl,
                });
                return;
            }
        }
    }

    fn granted(&self) -> CommandResponse {
        let h = self.holder.as_ref().unwrap();
        LockGranted {
            token: h.token,
            expires_at_ms: h.expires,
        }
    }

    fn take(&mut self, owner: &str, waiter: Option<u64>, ttl: u64, index: u64, now: u64) {
        self.holder = Some(ModelHolder {
            owner: owner.into(),
            waiter,
            token: index,
            expires: now + ttl,
        });
    }

    /// The holder, as [`Lock::state`] shows it.
    pub(in crate::state_machine) fn state(&self) -> Option<LockState> {
        self.holder.as_ref().map(|h| LockState {
            owner: h.owner.clone(),
            token: h.token,
            expires_at_ms: h.expires,
        })
    }

    /// The owners queued, in order.
    pub(in crate::state_machine) fn queue(&self) -> Vec<String> {
        self.queue.iter().map(|w| w.owner.clone()).collect()
    }

    /// A new term: what was left of the lease and of every wait at
    /// `old_now` counts again from `new_now`.
    pub(in crate::state_machine) fn rebase(&mut self, old_now: u64, new_now: u64) {
        let h = self.holder.iter_mut().map(|h| &mut h.expires);
        for at in h.chain(self.queue.iter_mut().map(|w| &mut w.deadline)) {
            *at = new_now.saturating_add(at.saturating_sub(old_now));
        }
    }

    /// Applies `op`; a release or renew names `token`.
    pub(in crate::state_machine) fn apply(
        &mut self,
        op: &Op,
        token: u64,
        index: u64,
        now: u64,
    ) -> CommandResponse {
        self.settle(index, now);
        let is = |h: &ModelHolder, o: &str, w: u64| h.owner == o && h.waiter == Some(w);
        let remaining = |m: &Model| m.holder.as_ref().map_or(0, |h| h.expires - now);
        match op {
            Op::Acquire { who, ttl } => {
                let (owner, _) = caller(*who);
                if let Some(h) = &self.holder {
                    return LockHeld {
                        expires_at_ms: h.expires,
                        remaining_ms: h.expires - now,
                    };
                }
                self.take(&owner, None, *ttl, index, now);
                self.granted()
            }
            Op::Wait { who, ttl, wait } => {
                let (owner, waiter) = caller(*who);
                let Some(h) = self.holder.clone() else {
                    self.take(&owner, Some(waiter), *ttl, index, now);
                    return self.granted();
                };
                if is(&h, &owner, waiter) {
                    return self.granted();
                }
                self.queue.retain(|w| w.deadline > now);
                let queued = |ahead: usize| LockQueued {
                    ahead: ahead as u64,
                    expires_at_ms: h.expires,
                    remaining_ms: h.expires - now,
                    index,
                };
                if let Some(at) = self
                    .queue
                    .iter()
                    .position(|w| w.owner == owner && w.waiter == waiter)
                {
                    let w = &mut self.queue[at];
                    w.ttl = *ttl;
                    w.deadline = w.deadline.max(now + wait);
                    return queued(at);
                }
                if *wait == 0 {
                    return LockHeld {
                        expires_at_ms: h.expires,
                        remaining_ms: h.expires - now,
                    };
                }
                self.queue.push(ModelWaiter {
                    owner,
                    waiter,
                    ttl: *ttl,
                    deadline: now + wait,
                });
                queued(self.queue.len() - 1)
            }
            Op::Cancel { who } => {
                let (owner, waiter) = caller(*who);
                if self.holder.as_ref().is_some_and(|h| is(h, &owner, waiter)) {
                    return self.granted();
                }
                self.queue
                    .retain(|w| !(w.owner == owner && w.waiter == waiter));
                LockCancelled {
                    remaining_ms: remaining(self),
                }
            }
            Op::Release { who, .. } | Op::Renew { who, .. } => {
                let (owner, _) = caller(*who);
                let holds = self
                    .holder
                    .as_ref()
                    .is_some_and(|h| h.owner == owner && h.token == token);
                match op {
                    Op::Release { .. } if holds && token < index => {
                        self.holder = None;
                        self.next(index, now);
                        LockReleased
                    }
                    Op::Renew { ttl, .. } if holds => {
                        self.holder.as_mut().unwrap().expires = now + ttl;
                        self.granted()
                    }
                    _ => LockLost,
                }
            }
            Op::NewTerm { .. } => unreachable!("not a command"),
        }
    }
}

fn run(ops: Vec<(u64, Op)>) -> Result<(), TestCaseError> {
    let mut lock = Lock::default();
    let mut model = Model::default();
    let (mut index, mut now) = (0u64, T0);
    let mut last_token = 0;
    // Arrivals not yet granted or gone: (owner, waiter, deadline).
    let mut arrivals: Vec<(String, u64, u64)> = Vec::new();
    for (dt, op) in ops {
        index += 1;
        if let Op::NewTerm { jump } = op {
            lock.rebase(now, now + jump);
            for w in &mut arrivals {
                w.2 = now + jump + w.2.saturating_sub(now);
            }
            model.rebase(now, now + jump);
            now += jump;
            continue;
        }
        now += dt;
        let before = lock.holder.clone();
        // A release or renew names the token of the holder as it was, or
        // the next one (which may be this entry's index).
        let token_of = model_token(&op, &before);
        let expected = model.apply(&op, token_of, index, now);
        let (answer, _) = match &op {
            Op::Wait { who, ttl, wait } => {
                let (o, w) = caller(*who);
                lock.wait(index, now, &o, w, *ttl, *wait)
            }
            Op::Cancel { who } => {
                let (o, w) = caller(*who);
                lock.cancel(index, now, &o, w)
            }
            Op::Release { who, .. } => lock.release(index, now, &caller(*who).0, token_of),
            Op::Renew { who, ttl, .. } => lock.renew(index, now, &caller(*who).0, token_of, *ttl),
            Op::Acquire { who, ttl } => lock.acquire(index, now, &caller(*who).0, *ttl),
            Op::NewTerm { .. } => unreachable!(),
        };
        prop_assert_eq!(&answer, &expected, "answer to {:?} at {}", op, index);
        let model_holder = model
            .holder
            .as_ref()
            .map(|h| (h.owner.clone(), h.waiter, h.token, h.expires));
        let holder = lock
            .holder
            .as_ref()
            .map(|h| (h.owner.clone(), h.waiter, h.token, h.expires_at_ms));
        prop_assert_eq!(holder, model_holder);
        let queue: Vec<_> = lock
            .waiters
            .iter()
            .map(|w| (w.owner.clone(), w.waiter, w.ttl_ms, w.deadline_ms))
            .collect();
        let model_queue: Vec<_> = model
            .queue
            .iter()
            .map(|w| (w.owner.clone(), w.waiter, w.ttl, w.deadline))
            .collect();
        prop_assert_eq!(queue, model_queue);

        // The rules, on their own.
        let after = lock.holder.clone();
        let new_grant = after
            .as_ref()
            .filter(|a| before.as_ref().is_none_or(|b| b.token != a.token));
        if let Some(granted) = new_grant {
            prop_assert!(
                granted.token > last_token,
                "token {} after {}",
                granted.token,
                last_token
            );
            prop_assert_eq!(granted.token, index);
            last_token = granted.token;
            // The previous holder released, or its lease lapsed.
            if let Some(b) = &before {
                let released = matches!(answer, LockReleased);
                prop_assert!(
                    released || b.expires_at_ms <= now,
                    "granted over a live lease"
                );
            }
            let at = arrivals
                .iter()
                .position(|a| a.0 == granted.owner && Some(a.1) == granted.waiter);
            match at {
                // From the queue: everyone who arrived earlier has left or
                // run out.
                Some(at) if arrivals[at].2 > now => {
                    for earlier in &arrivals[..at] {
                        prop_assert!(earlier.2 <= now, "{:?} was skipped", earlier);
                    }
                    arrivals.drain(..=at);
                }
                // Not from the queue: only the caller of this entry takes a
                // lock so, and only when everyone queued has run out.
                _ => {
                    let by_caller = match &op {
                        Op::Wait { who, .. } => {
                            let (o, w) = caller(*who);
                            granted.owner == o && granted.waiter == Some(w)
                        }
                        Op::Acquire { who, .. } => {
                            granted.owner == caller(*who).0 && granted.waiter.is_none()
                        }
                        _ => false,
                    };
                    prop_assert!(by_caller, "granted from the queue after its wait");
                    for queued in &arrivals {
                        prop_assert!(queued.2 <= now, "{:?} was skipped", queued);
                    }
                }
            }
        }
        if let Op::Wait { who, wait, .. } = &op {
            let (o, w) = caller(*who);
            if matches!(answer, LockQueued { .. }) {
                // It keeps its place unless its wait had run out.
                match arrivals.iter().position(|a| a.0 == o && a.1 == w) {
                    Some(at) if arrivals[at].2 > now => {
                        arrivals[at].2 = arrivals[at].2.max(now + wait);
                    }
                    Some(at) => {
                        arrivals.remove(at);
                        arrivals.push((o, w, now + wait));
                    }
                    None => arrivals.push((o, w, now + wait)),
                }
            }
        }
        if let Op::Cancel { who } = &op {
            let (o, w) = caller(*who);
            if matches!(answer, LockCancelled { .. }) {
                arrivals.retain(|a| !(a.0 == o && a.1 == w));
            }
        }
        // Whoever is not queued any more is gone from the arrivals.
        arrivals.retain(|a| {
            lock.waiters
                .iter()
                .any(|w| w.owner == a.0 && w.waiter == a.1)
        });
    }
    Ok(())
}

/// The token a release or renew in `op` names, from the holder before it.
fn model_token(op: &Op, before: &Option<Holder>) -> u64 {
    op_token(op, before.as_ref().map_or(0, |h| h.token))
}

/// The token a release or renew in `op` names when the holder's token is
/// `held` (0: none): that one, or the next.
pub(in crate::state_machine) fn op_token(op: &Op, held: u64) -> u64 {
    match op {
        Op::Release { right, .. } | Op::Renew { right, .. } if !*right => held + 1,
        Op::Release { .. } | Op::Renew { .. } => held,
        _ => 0,
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        // PROPTEST_CASES=5000 for a longer run.
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(256),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_operations_match_the_model_and_keep_the_rules(
        ops in proptest::collection::vec((0u64..250, op()), 1..80)
    ) {
        run(ops)?;
    }
}
