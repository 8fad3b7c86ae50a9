//! Randomised fault schedules from a printed seed.
//!
//! [`seed_from_env`] reads `CATGA_FAULT_SEED` or draws a seed, and prints
//! `CATGA_FAULT_SEED=<n>` on stderr either way, so a failing run is
//! replayed with that one variable; [`Profile::from_env`] reads
//! `CATGA_FAULT_PROFILE` (`quick`, the default: eight faults, each held
//! about a second; `long`: 120 faults). [`Schedule::generate`] draws the
//! steps from the seed; [`run_schedule`] applies them to a
//! [`Harness`], one after the other, healing each
//! before the next (restarting crashed nodes, restoring removed members)
//! and everything at the end, and records when each fault was injected.
//! [`unavailability_table`] turns those instants and the instants of the
//! acknowledged writes into the time from each fault to the first write
//! acknowledged after it, per kind.
//!
//! The seed fixes the schedule and the fault rules' random draws; the
//! interleaving of the nodes' tasks and the OS is not fixed, so a replay
//! runs the same faults, not the same execution.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use catga_cluster_core::NodeId;
use catga_cluster_raft::network::faults::LinkRule;
use tokio::time::Instant;

use crate::harness::{Harness, DEADLINE};

/// The environment variable that replays a seed.
pub const SEED_VAR: &str = "CATGA_FAULT_SEED";

/// The environment variable that selects a [`Profile`].
pub const PROFILE_VAR: &str = "CATGA_FAULT_PROFILE";

/// The seed from `CATGA_FAULT_SEED`, or a random one; printed on stderr
/// as `CATGA_FAULT_SEED=<n>` either way.
pub fn seed_from_env() -> u64 {
    let seed = std::env::var(SEED_VAR)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    eprintln!("{SEED_VAR}={seed}");
    seed
}

/// How many faults a schedule has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// A few faults, well under a minute in all (the default).
    Quick,
    /// At least a hundred faults.
    Long,
}

impl Profile {
    /// From `CATGA_FAULT_PROFILE` (`long`, or anything else for quick).
    pub fn from_env() -> Profile {
        match std::env::var(PROFILE_VAR).as_deref().map(str::trim) {
            Ok("long") => Profile::Long,
            _ => Profile::Quick,
        }
    }

    fn steps(self) -> usize {
        match self {
            Profile::Quick => 8,
            Profile::Long => 120,
        }
    }
}

/// The kinds of fault a schedule injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FaultKind {
    /// The leader crashes, a successor is elected, the old leader restarts;
    /// two or three times over.
    LeaderCrashLoop,
    /// A minority of the nodes (with the leader half of the time) is cut
    /// off from the rest.
    MinorityPartition,
    /// The nodes are split so that no group holds a majority: no write may
    /// be acknowledged, none acknowledged before may be lost.
    MajorityPartition,
    /// The link between the leader and a follower goes down and up every
    /// 100 to 300 ms.
    FlappingLink,
    /// Every message to and from one follower waits 20 to 80 ms.
    SlowFollower,
    /// The leader is paused (see [`Harness::pause`]).
    PausedLeader,
    /// Every node crashes, then all restart from disk.
    ClusterRestart,
    /// On lossy links, a follower is removed and added back (learner, then
    /// voter) through the admin API.
    MembershipChange,
    /// On slow, reordering links, leadership is handed to a follower
    /// through the admin API.
    LeadershipTransfer,
    /// Every link drops 10 %, duplicates 10 % and reorders 20 % of the
    /// messages.
    LossyLinks,
    /// The leader cannot send to one follower, which still reaches it.
    OneWayCut,
}

impl FaultKind {
    /// Every kind.
    pub const ALL: [FaultKind; 11] = [
        FaultKind::LeaderCrashLoop,
        FaultKind::MinorityPartition,
        FaultKind::MajorityPartition,
        FaultKind::FlappingLink,
        FaultKind::SlowFollower,
        FaultKind::PausedLeader,
        FaultKind::ClusterRestart,
        FaultKind::MembershipChange,
        FaultKind::LeadershipTransfer,
        FaultKind::LossyLinks,
        FaultKind::OneWayCut,
    ];
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// One step of a schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// How long to wait after the previous step healed.
    pub gap: Duration,
    /// The fault.
    pub kind: FaultKind,
    /// How long the fault is held before it heals.
    pub hold: Duration,
    /// The seed of the step's own choices (which nodes, which links).
    pub pick: u64,
}

/// A list of timed steps drawn from a seed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// The seed it was drawn from.
    pub seed: u64,
    /// The steps, in order.
    pub steps: Vec<Step>,
}

impl Schedule {
    /// Draws a schedule of the `profile`'s length from `seed`: every kind
    /// in turn in a shuffled order (so a quick schedule has eight
    /// different kinds), each held 0.5 to 1.5 s after a gap of 0.2 to
    /// 0.6 s.
    pub fn generate(seed: u64, profile: Profile) -> Schedule {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut steps = Vec::new();
        let mut kinds = Vec::new();
        while steps.len() < profile.steps() {
            if kinds.is_empty() {
                kinds = FaultKind::ALL.to_vec();
                rng.shuffle(&mut kinds);
            }
            let kind = kinds.pop().expect("refilled");
            steps.push(Step {
                gap: Duration::from_millis(rng.u64(200..=600)),
                kind,
                hold: Duration::from_millis(rng.u64(500..=1500)),
                pick: rng.u64(..),
            });
        }
        Schedule { seed, steps }
    }
}

/// One fault as it was applied.
#[derive(Debug, Clone)]
pub struct Injection {
    /// Its kind.
    pub kind: FaultKind,
    /// When it was injected.
    pub at: Instant,
    /// When it was healed.
    pub healed: Instant,
    /// What was done, for the log.
    pub detail: String,
}

/// Applies `schedule` to `harness`, step by step, healing after each and
/// at the end; the injections, in order.
pub async fn run_schedule(harness: &mut Harness, schedule: &Schedule) -> Vec<Injection> {
    let mut injections = Vec::new();
    for (n, step) in schedule.steps.iter().enumerate() {
        tokio::time::sleep(step.gap).await;
        let at = Instant::now();
        let detail = inject(harness, step).await;
        let healed = Instant::now();
        eprintln!(
            "fault {n:>3}: {:<18} {detail} ({:?})",
            step.kind.to_string(),
            healed - at
        );
        injections.push(Injection {
            kind: step.kind,
            at,
            healed,
            detail,
        });
        heal(harness).await;
    }
    heal(harness).await;
    injections
}

/// Heals everything: network faults, crashed nodes, removed members.
pub async fn heal(harness: &mut Harness) {
    harness.heal().await;
    // A member removed by a step whose re-adding failed is added back.
    let deadline = Instant::now() + DEADLINE;
    while Instant::now() < deadline {
        let leader = harness.wait_for_leader().await;
        let Ok(members) = harness.members(leader).await else {
            continue;
        };
        let missing: Vec<usize> = (0..harness.len())
            .filter(|&i| members.get(&harness.id(i)) != Some(&true))
            .collect();
        if missing.is_empty() {
            return;
        }
        for i in missing {
            let _ = harness.add_member(leader, i).await;
        }
    }
    panic!("the members could not be restored: {}", harness.describe());
}

async fn leader(harness: &Harness) -> usize {
    harness.wait_for_leader().await
}

fn others(harness: &Harness, of: usize) -> Vec<usize> {
    (0..harness.len()).filter(|&i| i != of).collect()
}

fn all_links(harness: &Harness, rule: &LinkRule) {
    let ids = harness.ids();
    for &a in &ids {
        for &b in &ids {
            if a != b {
                harness.faults().set_link(a, b, rule.clone());
            }
        }
    }
}

fn ids_of(harness: &Harness, nodes: &[usize]) -> Vec<NodeId> {
    nodes.iter().map(|&i| harness.id(i)).collect()
}

/// Injects one step's fault, holds it, and undoes what only the step
/// knows; [`heal`] does the rest.
async fn inject(harness: &mut Harness, step: &Step) -> String {
    let mut rng = fastrand::Rng::with_seed(step.pick);
    let n = harness.len();
    let faults = harness.faults().clone();
    match step.kind {
        FaultKind::LeaderCrashLoop => {
            let rounds = rng.usize(2..=3);
            let mut crashed = Vec::new();
            for _ in 0..rounds {
                let l = leader(harness).await;
                harness.crash(l).await;
                crashed.push(harness.id(l).get());
                harness.wait_for_new_leader(Some(l), step.hold * 4).await;
                harness.restart(l).await;
            }
            format!("crashed leaders {crashed:?}")
        }
        FaultKind::MinorityPartition => {
            let l = leader(harness).await;
            let mut rest = others(harness, l);
            rng.shuffle(&mut rest);
            let size = (n - 1) / 2;
            let mut minority: Vec<usize> = if rng.bool() {
                let mut m = vec![l];
                m.extend(rest.iter().take(size - 1));
                m
            } else {
                rest.iter().take(size).copied().collect()
            };
            minority.sort_unstable();
            let majority: Vec<usize> = (0..n).filter(|i| !minority.contains(i)).collect();
            let (a, b) = (ids_of(harness, &minority), ids_of(harness, &majority));
            faults.partition(&[&a, &b]);
            tokio::time::sleep(step.hold).await;
            format!("minority {a:?} | majority {b:?} (leader {})", harness.id(l))
        }
        FaultKind::MajorityPartition => {
            // Groups of at most n/2 (rounded down): none is a majority.
            let mut nodes: Vec<usize> = (0..n).collect();
            rng.shuffle(&mut nodes);
            let size = (n / 2).max(1);
            let groups: Vec<Vec<NodeId>> = nodes.chunks(size).map(|c| ids_of(harness, c)).collect();
            let refs: Vec<&[NodeId]> = groups.iter().map(Vec::as_slice).collect();
            faults.partition(&refs);
            tokio::time::sleep(step.hold).await;
            format!("groups {groups:?}")
        }
        FaultKind::FlappingLink => {
            let l = leader(harness).await;
            let others = others(harness, l);
            let f = others[rng.usize(..others.len())];
            let (a, b) = (harness.id(l), harness.id(f));
            let until = Instant::now() + step.hold;
            let mut flips = 0;
            while Instant::now() < until {
                if flips % 2 == 0 {
                    faults.cut(a, b);
                } else {
                    faults.heal();
                }
                flips += 1;
                tokio::time::sleep(Duration::from_millis(rng.u64(100..=300))).await;
            }
            faults.heal();
            format!("link {a} - {b} flipped {flips} times")
        }
        FaultKind::SlowFollower => {
            let l = leader(harness).await;
            let others = others(harness, l);
            let f = harness.id(others[rng.usize(..others.len())]);
            faults.slow(
                f,
                &harness.ids(),
                Duration::from_millis(20),
                Duration::from_millis(80),
            );
            tokio::time::sleep(step.hold).await;
            format!("node {f} slowed by 20-80 ms")
        }
        FaultKind::PausedLeader => {
            let l = leader(harness).await;
            harness.pause(l);
            tokio::time::sleep(step.hold).await;
            harness.resume(l);
            format!("leader {} paused", harness.id(l))
        }
        FaultKind::ClusterRestart => {
            for i in 0..n {
                harness.crash(i).await;
            }
            for i in 0..n {
                harness.restart(i).await;
            }
            "all nodes crashed and restarted".to_owned()
        }
        FaultKind::MembershipChange => {
            all_links(
                harness,
                &LinkRule::default()
                    .drop_rate(0.05)
                    .delay(Duration::from_millis(1), Duration::from_millis(10)),
            );
            let l = leader(harness).await;
            let others = others(harness, l);
            let f = others[rng.usize(..others.len())];
            let removed = harness.remove_member(l, f).await;
            let l = leader(harness).await;
            let added = harness.add_member(l, f).await;
            format!(
                "remove node {}: {removed:?}, add it back: {added:?}",
                harness.id(f)
            )
        }
        FaultKind::LeadershipTransfer => {
            all_links(
                harness,
                &LinkRule::default()
                    .delay(Duration::from_millis(5), Duration::from_millis(30))
                    .reorder(0.2, Duration::from_millis(40)),
            );
            let l = leader(harness).await;
            let others = others(harness, l);
            let to = others[rng.usize(..others.len())];
            let answer = harness.transfer_leadership(l, Some(to)).await;
            format!(
                "transfer {} -> {}: {answer:?}",
                harness.id(l),
                harness.id(to)
            )
        }
        FaultKind::LossyLinks => {
            all_links(
                harness,
                &LinkRule::default()
                    .drop_rate(0.1)
                    .duplicate(0.1)
                    .reorder(0.2, Duration::from_millis(50)),
            );
            tokio::time::sleep(step.hold).await;
            "every link lossy".to_owned()
        }
        FaultKind::OneWayCut => {
            let l = leader(harness).await;
            let others = others(harness, l);
            let f = others[rng.usize(..others.len())];
            let (a, b) = (harness.id(l), harness.id(f));
            faults.cut_one_way(a, b);
            tokio::time::sleep(step.hold).await;
            format!("{a} -> {b} cut")
        }
    }
}

/// The time from each fault's injection to the first write acknowledged
/// after it (`acks`: the instants of the acknowledged writes), per kind:
/// a table with the count, the median and the largest window, and how
/// many faults saw no acknowledged write until the end.
pub fn unavailability_table(injections: &[Injection], acks: &[Instant]) -> String {
    let mut acks = acks.to_vec();
    acks.sort_unstable();
    let mut per_kind: BTreeMap<FaultKind, (Vec<Duration>, usize)> = BTreeMap::new();
    for injection in injections {
        let entry = per_kind.entry(injection.kind).or_default();
        let first = acks.partition_point(|a| *a < injection.at);
        match acks.get(first) {
            Some(ack) => entry.0.push(*ack - injection.at),
            None => entry.1 += 1,
        }
    }
    let mut out = format!(
        "{:<20} {:>6} {:>12} {:>12} {:>8}\n",
        "fault", "count", "median", "max", "no ack"
    );
    for (kind, (mut windows, none)) in per_kind {
        windows.sort_unstable();
        let median = windows.get(windows.len() / 2).copied();
        let max = windows.last().copied();
        let ms =
            |d: Option<Duration>| d.map_or("-".to_owned(), |d| format!("{} ms", d.as_millis()));
        out.push_str(&format!(
            "{:<20} {:>6} {:>12} {:>12} {:>8}\n",
            kind.to_string(),
            windows.len() + none,
            ms(median),
            ms(max),
            none
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_gives_the_same_schedule() {
        let a = Schedule::generate(11, Profile::Quick);
        assert_eq!(a, Schedule::generate(11, Profile::Quick));
        assert_ne!(a, Schedule::generate(12, Profile::Quick));
        assert_eq!(a.steps.len(), 8);
        let kinds: std::collections::HashSet<_> = a.steps.iter().map(|s| s.kind).collect();
        assert_eq!(kinds.len(), 8, "a quick schedule has eight different kinds");
        let long = Schedule::generate(11, Profile::Long);
        assert!(long.steps.len() >= 100);
        for kind in FaultKind::ALL {
            assert!(long.steps.iter().any(|s| s.kind == kind), "{kind} missing");
        }
    }

    #[tokio::test]
    async fn the_table_measures_up_to_the_first_ack_after_each_fault() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let injections = vec![
            Injection {
                kind: FaultKind::PausedLeader,
                at: at(100),
                healed: at(200),
                detail: String::new(),
            },
            Injection {
                kind: FaultKind::OneWayCut,
                at: at(1000),
                healed: at(1100),
                detail: String::new(),
            },
        ];
        let table = unavailability_table(&injections, &[at(50), at(400), at(500)]);
        assert!(table.contains("PausedLeader"), "{table}");
        assert!(table.contains("300 ms"), "{table}");
        let cut = table.lines().find(|l| l.starts_with("OneWayCut")).unwrap();
        assert!(
            cut.trim_end().ends_with('1'),
            "no ack after the cut: {table}"
        );
    }
}
