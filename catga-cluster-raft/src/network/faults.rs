//! Fault injection over the real HTTP transport (feature `test-util`).
//!
//! [`NetFaults`] is a shared handle, one per test process, that the HTTP
//! client of every node started with
//! [`Transport::FaultyHttp`](crate::Transport::FaultyHttp) consults before
//! it sends a request and when the answer comes back. Each ordered pair of
//! nodes (`from → to`) has a [`LinkRule`]: a drop probability, a delay
//! range, a duplicate probability, a reorder probability (an extra delay so
//! that later messages overtake) and a one-way cut. On top of the links:
//! partitions, isolation, a paused node and a silenced one (whose process
//! is gone). Every Raft RPC, forwarded write and read, elect and gone
//! request, the leader watch and the probe of the crash fast path go
//! through it; the bytes still travel over real sockets.
//!
//! What a fault looks like to the sender is what a real network gives,
//! never an error of its own:
//!
//! | fault | the request | the answer |
//! |---|---|---|
//! | drop, cut, partition | not sent; the caller waits until its deadline (a timeout, as a silent peer gives) | lost on the way back: the request took effect, the caller still times out |
//! | delay, reorder | sent late (within the caller's deadline) | as sent |
//! | duplicate | sent twice; the second copy's answer is thrown away | the first copy's |
//! | paused target | held, as a kernel buffers for a stopped process, and delivered on [resume](NetFaults::resume) even if the caller gave up | after the resume |
//! | paused sender | held until the resume, or dropped at the caller's deadline | |
//! | silenced sender | never sent | |
//!
//! A probe over a blocked link gets no answer within its timeout (not a
//! refusal: a partition is not a death); a probe of a paused node is
//! accepted (its kernel still accepts). A leader watch over a blocked link
//! delivers nothing, and how it ended arrives only once the link carries
//! again.
//!
//! Randomness comes from one generator seeded by the test, so a schedule
//! of faults is replayable (the interleaving of real tasks is not).
//!
//! ```
//! use std::time::Duration;
//! use catga_cluster_core::NodeId;
//! use catga_cluster_raft::network::faults::{LinkRule, NetFaults};
//!
//! let faults = NetFaults::new(42);
//! let (a, b, c) = (NodeId::new(1), NodeId::new(2), NodeId::new(3));
//! faults.partition(&[&[a], &[b, c]]);
//! assert!(faults.is_blocked(a, b));
//! assert!(!faults.is_blocked(b, c));
//! faults.heal();
//! faults.set_link(a, b, LinkRule::default().delay(Duration::from_millis(5), Duration::from_millis(20)));
//! assert!(!faults.is_blocked(a, b));
//! ```

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use catga_cluster_core::NodeId;
use tokio::sync::watch;

/// The longest a message held for a paused node waits for its resume.
const MAX_HOLD: Duration = Duration::from_secs(60);

/// The faults on one ordered link `from → to`.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct LinkRule {
    /// The probability (0 to 1) that a message is lost.
    pub drop: f64,
    /// Every message waits a uniformly drawn time in this range first.
    pub delay: Option<(Duration, Duration)>,
    /// The probability that a request is sent twice.
    pub duplicate: f64,
    /// The probability that a message waits an extra random time up to
    /// [`reorder_delay`](LinkRule::reorder_delay), so that later ones overtake it.
    pub reorder: f64,
    /// The longest extra time of a reordered message.
    pub reorder_delay: Duration,
    /// Nothing goes through.
    pub cut: bool,
}

impl LinkRule {
    /// Sets [`drop`](LinkRule::drop).
    pub fn drop_rate(mut self, p: f64) -> Self {
        self.drop = p.clamp(0.0, 1.0);
        self
    }

    /// Sets [`delay`](LinkRule::delay).
    pub fn delay(mut self, min: Duration, max: Duration) -> Self {
        self.delay = Some((min, max.max(min)));
        self
    }

    /// Sets [`duplicate`](LinkRule::duplicate).
    pub fn duplicate(mut self, p: f64) -> Self {
        self.duplicate = p.clamp(0.0, 1.0);
        self
    }

    /// Sets [`reorder`](LinkRule::reorder) and
    /// [`reorder_delay`](LinkRule::reorder_delay).
    pub fn reorder(mut self, p: f64, up_to: Duration) -> Self {
        self.reorder = p.clamp(0.0, 1.0);
        self.reorder_delay = up_to;
        self
    }

    /// Sets [`cut`](LinkRule::cut).
    pub fn cut(mut self, cut: bool) -> Self {
        self.cut = cut;
        self
    }
}

/// What happens to one request, drawn by [`NetFaults::plan`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Plan {
    /// Sent after `delay`; with `duplicate`, a second copy after that
    /// further delay.
    Send {
        /// How long the request waits before it is sent.
        delay: Duration,
        /// A second copy, sent this long after the first.
        duplicate: Option<Duration>,
    },
    /// Lost: the sender hears nothing.
    Lost,
    /// The sender is paused: held until it resumes.
    SenderPaused,
    /// The target is paused: held for it until it resumes.
    TargetPaused,
}

/// Shared fault rules for the HTTP transport of every node of a test; see
/// the [module docs](self). Clones share the rules.
#[derive(Clone)]
pub struct NetFaults {
    inner: Arc<Mutex<State>>,
    /// Bumped on every change of the rules.
    changed: Arc<watch::Sender<u64>>,
}

struct State {
    rng: fastrand::Rng,
    links: HashMap<(NodeId, NodeId), LinkRule>,
    groups: Option<Vec<HashSet<NodeId>>>,
    isolated: HashSet<NodeId>,
    paused: HashSet<NodeId>,
    silenced: HashSet<NodeId>,
}

impl std::fmt::Debug for NetFaults {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.state();
        f.debug_struct("NetFaults")
            .field("links", &state.links)
            .field("groups", &state.groups)
            .field("isolated", &state.isolated)
            .field("paused", &state.paused)
            .field("silenced", &state.silenced)
            .finish()
    }
}

impl NetFaults {
    /// No faults yet; random draws from `seed`.
    pub fn new(seed: u64) -> Self {
        NetFaults {
            inner: Arc::new(Mutex::new(State {
                rng: fastrand::Rng::with_seed(seed),
                links: HashMap::new(),
                groups: None,
                isolated: HashSet::new(),
                paused: HashSet::new(),
                silenced: HashSet::new(),
            })),
            changed: Arc::new(watch::channel(0).0),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn change(&self, f: impl FnOnce(&mut State)) {
        f(&mut self.state());
        self.changed.send_modify(|n| *n += 1);
    }

    /// Replaces the rule of the link `from → to`.
    pub fn set_link(&self, from: NodeId, to: NodeId, rule: LinkRule) {
        self.change(|s| {
            s.links.insert((from, to), rule);
        });
    }

    /// Changes the rule of the link `from → to` in place.
    pub fn update_link(&self, from: NodeId, to: NodeId, f: impl FnOnce(&mut LinkRule)) {
        self.change(|s| f(s.links.entry((from, to)).or_default()));
    }

    /// The rule of the link `from → to`.
    pub fn link(&self, from: NodeId, to: NodeId) -> LinkRule {
        self.state()
            .links
            .get(&(from, to))
            .cloned()
            .unwrap_or_default()
    }

    /// Cuts the link `from → to` only: `to` still reaches `from`.
    pub fn cut_one_way(&self, from: NodeId, to: NodeId) {
        self.update_link(from, to, |r| r.cut = true);
    }

    /// Cuts the link between `a` and `b`, both ways.
    pub fn cut(&self, a: NodeId, b: NodeId) {
        self.change(|s| {
            s.links.entry((a, b)).or_default().cut = true;
            s.links.entry((b, a)).or_default().cut = true;
        });
    }

    /// Splits the nodes into groups that reach only their own members;
    /// nodes in no group reach nobody. Replaces an earlier partition.
    pub fn partition(&self, groups: &[&[NodeId]]) {
        let groups = groups.iter().map(|g| g.iter().copied().collect()).collect();
        self.change(|s| s.groups = Some(groups));
    }

    /// Cuts `id` off from every other node, both ways.
    pub fn isolate(&self, id: NodeId) {
        self.change(|s| {
            s.isolated.insert(id);
        });
    }

    /// Pauses `id` as a stopped process is paused: it sends nothing, what
    /// is sent to it is held and delivered on [`resume`](Self::resume),
    /// and its kernel still accepts connections (a probe is accepted).
    pub fn pause(&self, id: NodeId) {
        self.change(|s| {
            s.paused.insert(id);
        });
    }

    /// Ends a [`pause`](Self::pause): held messages go on their way.
    pub fn resume(&self, id: NodeId) {
        self.change(|s| {
            s.paused.remove(&id);
        });
    }

    /// Silences `id`, whose process is gone: nothing it sends leaves. (What
    /// is sent to it meets its closed listener and sockets, which the test
    /// closes itself.)
    pub fn silence(&self, id: NodeId) {
        self.change(|s| {
            s.silenced.insert(id);
        });
    }

    /// Ends a [`silence`](Self::silence): the node was started again.
    pub fn unsilence(&self, id: NodeId) {
        self.change(|s| {
            s.silenced.remove(&id);
        });
    }

    /// Delays every message to and from `id` by a time drawn in
    /// `min..=max`, on top of the other rules: a slow node.
    pub fn slow(&self, id: NodeId, peers: &[NodeId], min: Duration, max: Duration) {
        self.change(|s| {
            for &peer in peers.iter().filter(|p| **p != id) {
                for link in [(id, peer), (peer, id)] {
                    s.links.entry(link).or_default().delay = Some((min, max.max(min)));
                }
            }
        });
    }

    /// Removes every fault: link rules, partitions, isolation and pauses.
    /// Silenced nodes stay silenced (their processes are still gone).
    pub fn heal(&self) {
        self.change(|s| {
            s.links.clear();
            s.groups = None;
            s.isolated.clear();
            s.paused.clear();
        });
    }

    /// Whether `id` is paused.
    pub fn is_paused(&self, id: NodeId) -> bool {
        self.state().paused.contains(&id)
    }

    /// Whether nothing gets from `from` to `to` now: a cut link, a
    /// partition, isolation, a paused or silenced sender or a paused
    /// target. (Drops are by chance: see [`plan`](Self::plan).)
    pub fn is_blocked(&self, from: NodeId, to: NodeId) -> bool {
        blocked(&self.state(), from, to)
    }

    /// Draws what happens to a request from `from` to `to` now.
    pub fn plan(&self, from: NodeId, to: NodeId) -> Plan {
        let mut state = self.state();
        let s = &mut *state;
        if s.silenced.contains(&from) {
            return Plan::Lost;
        }
        if s.paused.contains(&from) {
            return Plan::SenderPaused;
        }
        if s.paused.contains(&to) {
            return Plan::TargetPaused;
        }
        if blocked(s, from, to) {
            return Plan::Lost;
        }
        let Some(rule) = s.links.get(&(from, to)) else {
            return Plan::Send {
                delay: Duration::ZERO,
                duplicate: None,
            };
        };
        let rng = &mut s.rng;
        if rule.drop > 0.0 && rng.f64() < rule.drop {
            return Plan::Lost;
        }
        let mut delay = rule
            .delay
            .map_or(Duration::ZERO, |(lo, hi)| draw(rng, lo, hi));
        if rule.reorder > 0.0 && rng.f64() < rule.reorder {
            delay += draw(rng, Duration::ZERO, rule.reorder_delay);
        }
        let duplicate = (rule.duplicate > 0.0 && rng.f64() < rule.duplicate)
            .then(|| draw(rng, Duration::ZERO, Duration::from_millis(10)));
        Plan::Send { delay, duplicate }
    }

    /// Whether the answer to a request `from → to` is lost on its way back
    /// (`to → from`): the link back is blocked, or a drop is drawn. A paused
    /// party is not a loss: see [`wait_runs`](Self::wait_runs).
    pub fn answer_lost(&self, from: NodeId, to: NodeId) -> bool {
        let mut state = self.state();
        let s = &mut *state;
        if s.silenced.contains(&to) || (blocked(s, to, from) && !paused_either(s, to, from)) {
            return true;
        }
        match s.links.get(&(to, from)) {
            Some(rule) if rule.drop > 0.0 => s.rng.f64() < rule.drop,
            _ => false,
        }
    }

    /// Waits until `id` is not paused (at most a minute, then returns
    /// anyway).
    pub async fn wait_runs(&self, id: NodeId) {
        self.wait_until(MAX_HOLD, |s| !s.paused.contains(&id)).await;
    }

    /// Waits until the link `from → to` carries again (at most `bound`).
    pub async fn wait_unblocked(&self, from: NodeId, to: NodeId, bound: Duration) {
        self.wait_until(bound, |s| !blocked(s, from, to)).await;
    }

    async fn wait_until(&self, bound: Duration, mut cond: impl FnMut(&State) -> bool) {
        let mut changed = self.changed.subscribe();
        let wait = async {
            loop {
                changed.borrow_and_update();
                if cond(&self.state()) {
                    return;
                }
                if changed.changed().await.is_err() {
                    return;
                }
            }
        };
        let _ = tokio::time::timeout(bound, wait).await;
    }
}

fn paused_either(s: &State, a: NodeId, b: NodeId) -> bool {
    s.paused.contains(&a) || s.paused.contains(&b)
}

fn blocked(s: &State, from: NodeId, to: NodeId) -> bool {
    if s.silenced.contains(&from) || paused_either(s, from, to) {
        return true;
    }
    if s.isolated.contains(&from) || s.isolated.contains(&to) {
        return true;
    }
    if s.links.get(&(from, to)).is_some_and(|r| r.cut) {
        return true;
    }
    if let Some(groups) = &s.groups {
        if !groups.iter().any(|g| g.contains(&from) && g.contains(&to)) {
            return true;
        }
    }
    false
}

fn draw(rng: &mut fastrand::Rng, lo: Duration, hi: Duration) -> Duration {
    if hi <= lo {
        return lo;
    }
    let span = u64::try_from((hi - lo).as_micros()).unwrap_or(u64::MAX);
    lo + Duration::from_micros(rng.u64(0..=span))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> (NodeId, NodeId, NodeId) {
        (NodeId::new(1), NodeId::new(2), NodeId::new(3))
    }

    fn sends(plan: &Plan) -> bool {
        matches!(plan, Plan::Send { .. })
    }

    #[test]
    fn no_rule_sends_at_once() {
        let (a, b, _) = ids();
        let f = NetFaults::new(1);
        assert_eq!(
            f.plan(a, b),
            Plan::Send {
                delay: Duration::ZERO,
                duplicate: None
            }
        );
        assert!(!f.answer_lost(a, b));
    }

    #[test]
    fn a_one_way_cut_blocks_one_direction_only() {
        let (a, b, _) = ids();
        let f = NetFaults::new(1);
        f.cut_one_way(a, b);
        assert_eq!(f.plan(a, b), Plan::Lost);
        assert!(sends(&f.plan(b, a)));
        // b's requests reach a, and a's answers are lost on the way back.
        assert!(f.answer_lost(b, a));
        assert!(!f.answer_lost(a, b));
        f.heal();
        assert!(sends(&f.plan(a, b)));
    }

    #[test]
    fn partitions_and_isolation_block_across_groups_only() {
        let (a, b, c) = ids();
        let f = NetFaults::new(1);
        f.partition(&[&[a], &[b, c]]);
        assert!(f.is_blocked(a, b) && f.is_blocked(c, a));
        assert!(!f.is_blocked(b, c) && !f.is_blocked(c, b));
        f.heal();
        f.isolate(c);
        assert!(f.is_blocked(a, c) && f.is_blocked(c, b));
        assert!(!f.is_blocked(a, b));
        f.heal();
        assert!(!f.is_blocked(a, c));
    }

    #[test]
    fn drops_follow_the_rate_and_the_seed() {
        let (a, b, _) = ids();
        let draws = |seed| {
            let f = NetFaults::new(seed);
            f.set_link(a, b, LinkRule::default().drop_rate(0.3));
            (0..2000).map(|_| sends(&f.plan(a, b))).collect::<Vec<_>>()
        };
        let first = draws(7);
        assert_eq!(first, draws(7), "the same seed draws the same drops");
        assert_ne!(first, draws(8));
        let lost = first.iter().filter(|s| !**s).count();
        assert!((450..750).contains(&lost), "{lost} of 2000 lost at 30 %");
    }

    #[test]
    fn delays_stay_in_range_and_reorders_add_to_them() {
        let (a, b, _) = ids();
        let f = NetFaults::new(3);
        let (lo, hi) = (Duration::from_millis(5), Duration::from_millis(20));
        f.set_link(a, b, LinkRule::default().delay(lo, hi));
        for _ in 0..500 {
            let Plan::Send { delay, duplicate } = f.plan(a, b) else {
                panic!("nothing is dropped")
            };
            assert!(delay >= lo && delay <= hi, "{delay:?}");
            assert_eq!(duplicate, None);
        }
        f.set_link(
            a,
            b,
            LinkRule::default().reorder(1.0, Duration::from_millis(100)),
        );
        let late = (0..200)
            .filter(|_| matches!(f.plan(a, b), Plan::Send { delay, .. } if delay > Duration::from_millis(1)))
            .count();
        assert!(late > 150, "{late} of 200 reordered messages held back");
    }

    #[test]
    fn duplicates_follow_the_rate() {
        let (a, b, _) = ids();
        let f = NetFaults::new(5);
        f.set_link(a, b, LinkRule::default().duplicate(0.5));
        let twice = (0..1000)
            .filter(|_| {
                matches!(
                    f.plan(a, b),
                    Plan::Send {
                        duplicate: Some(_),
                        ..
                    }
                )
            })
            .count();
        assert!(
            (400..600).contains(&twice),
            "{twice} of 1000 duplicated at 50 %"
        );
    }

    #[test]
    fn a_paused_node_holds_and_a_silenced_one_sends_nothing() {
        let (a, b, _) = ids();
        let f = NetFaults::new(1);
        f.pause(b);
        assert_eq!(f.plan(a, b), Plan::TargetPaused);
        assert_eq!(f.plan(b, a), Plan::SenderPaused);
        assert!(f.is_blocked(a, b));
        // A paused party holds the answer instead of losing it.
        assert!(!f.answer_lost(a, b));
        f.resume(b);
        assert!(sends(&f.plan(a, b)));
        f.silence(a);
        assert_eq!(f.plan(a, b), Plan::Lost);
        f.heal();
        assert_eq!(
            f.plan(a, b),
            Plan::Lost,
            "healing does not revive a process"
        );
        f.unsilence(a);
        assert!(sends(&f.plan(a, b)));
    }

    #[test]
    fn slow_delays_every_link_of_a_node() {
        let (a, b, c) = ids();
        let f = NetFaults::new(1);
        let d = Duration::from_millis(30);
        f.slow(c, &[a, b, c], d, d);
        for (from, to) in [(a, c), (c, a), (b, c), (c, b)] {
            assert_eq!(
                f.plan(from, to),
                Plan::Send {
                    delay: d,
                    duplicate: None
                }
            );
        }
        assert_eq!(
            f.plan(a, b),
            Plan::Send {
                delay: Duration::ZERO,
                duplicate: None
            }
        );
    }

    #[tokio::test]
    async fn waits_end_on_resume_and_heal() {
        let (a, b, _) = ids();
        let f = NetFaults::new(1);
        f.pause(b);
        f.cut(a, b);
        let waiter = {
            let f = f.clone();
            tokio::spawn(async move {
                f.wait_runs(b).await;
                f.wait_unblocked(a, b, Duration::from_secs(30)).await;
            })
        };
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        f.resume(b);
        f.heal();
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("the waiter wakes on the change")
            .unwrap();
    }
}
