//! Leadership changes: a crashed (SIGKILL) or paused (SIGSTOP) leader, a
//! leadership transfer, and a SIGTERM of the leader under write load.

use std::cell::Cell;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::join_all;
use futures_util::stream::{FuturesUnordered, StreamExt};
use rustix::process::Signal;
use serde::Serialize;
use tokio::time::Instant;

use crate::http::{client, Outcome};
use crate::procstat;
use crate::systems::Cluster;

/// How long a cluster may take to agree on a leader again after a round.
const SETTLE: Duration = Duration::from_secs(30);
/// How long a fail-over may take before the round counts as failed.
const GIVE_UP: Duration = Duration::from_secs(15);

/// How long a transfer round waits after the cluster settled.
const TRANSFER_AFTER_ELECTION: Duration = Duration::from_millis(500);

/// How the leader is taken away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// SIGKILL: the process dies, the kernel closes its sockets.
    Kill,
    /// SIGSTOP: the process is frozen with its sockets open (a hung
    /// process, a long pause); SIGCONT after the fail-over.
    Stop,
}

/// One fail-over round: takes the leader away at t0 and returns the time
/// until a write sent to a survivor is acknowledged; then brings the old
/// leader back and waits until the cluster agrees on a leader again.
pub(crate) async fn fail_over(cluster: &mut Cluster, fault: Fault) -> Result<Duration, String> {
    let leader = cluster.settle(SETTLE).await?;
    // Let the restarted member of the previous round catch up.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let survivors: Vec<String> = cluster
        .members()
        .filter(|i| *i != leader)
        .map(|i| cluster.authority(i))
        .collect();
    let t0 = Instant::now();
    cluster.signal(
        leader,
        match fault {
            Fault::Kill => Signal::KILL,
            Fault::Stop => Signal::STOP,
        },
    )?;
    let took = first_acknowledged_write(cluster, &survivors, t0).await;
    match fault {
        Fault::Kill => {
            cluster.wait_exit(leader, Duration::from_secs(5)).await?;
            cluster.spawn(leader)?;
        }
        Fault::Stop => cluster.signal(leader, Signal::CONT)?,
    }
    let took = took?;
    cluster.settle(SETTLE).await?;
    Ok(took)
}

/// One transfer round: asks the leader to hand over to the next member and
/// returns the time from the request until a write sent to the new leader
/// is acknowledged.
pub(crate) async fn transfer(cluster: &Cluster) -> Result<Duration, String> {
    let leader = cluster.settle(SETTLE).await?;
    // A leader elected less than its lease ago (300 ms at the seed
    // timings; the previous round's transfer elected it) has to wait that
    // lease out before a successor can win its vote (openraft 0.9 grants no
    // vote while its own vote is younger than the lease, and has no
    // TimeoutNow). Transfers are measured on a leader that has led for a
    // while, as in a rolling restart; both systems get the same pause.
    tokio::time::sleep(TRANSFER_AFTER_ELECTION).await;
    let target = (leader + 1) % cluster.members().len();
    let t0 = Instant::now();
    cluster.transfer(leader, target).await?;
    first_acknowledged_write(cluster, &[cluster.authority(target)], t0).await
}

/// At most this many probe writes in flight: a write sent while there is
/// no leader may wait for one (ours up to the forward hold time, etcd's up
/// to its request timeout), and the probes must keep coming meanwhile.
const PROBES_IN_FLIGHT: usize = 2500;

/// Sends a write every 2 ms (alternating over `targets`, up to
/// [`PROBES_IN_FLIGHT`] in flight, one connection each) until one is
/// acknowledged; returns when that happened, counted from `since`.
async fn first_acknowledged_write(
    cluster: &Cluster,
    targets: &[String],
    since: Instant,
) -> Result<Duration, String> {
    let http = client(64);
    let value = Bytes::from_static(b"probe");
    let mut in_flight = FuturesUnordered::new();
    let mut tick = tokio::time::interval(Duration::from_millis(2));
    let give_up = tokio::time::sleep_until(since + GIVE_UP);
    tokio::pin!(give_up);
    let mut sent = 0usize;
    let mut last_error = String::from("no write answered");
    loop {
        tokio::select! {
            _ = tick.tick(), if in_flight.len() < PROBES_IN_FLIGHT => {
                let authority = &targets[sent % targets.len()];
                let key = format!("probe-{sent}");
                let (http, value) = (&http, &value);
                in_flight.push(async move {
                    cluster.put(http, authority, &key, value, GIVE_UP).await
                });
                sent += 1;
            }
            Some(outcome) = in_flight.next(), if !in_flight.is_empty() => {
                match outcome.ok() {
                    Ok(_) => return Ok(since.elapsed()),
                    Err(e) => last_error = e,
                }
            }
            () = &mut give_up => {
                return Err(format!(
                    "{}: no write acknowledged within {GIVE_UP:?} ({sent} sent; last: {last_error})",
                    cluster.kind
                ));
            }
        }
    }
}

/// What a SIGTERM of the leader under write load did.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Drain {
    /// Writes acknowledged during the round.
    pub(crate) acknowledged: u64,
    /// Writes that got an error answer, or were sent and never answered;
    /// after each, the client moved to the next member.
    pub(crate) failed: u64,
    /// Connects refused (nothing was sent): the client moved to the next
    /// member, as a client behind a load balancer would.
    pub(crate) refused: u64,
    /// The first failure, for the report.
    pub(crate) first_failure: Option<String>,
    /// The longest time without any acknowledgement, from the SIGTERM to
    /// the end of the round.
    pub(crate) longest_gap_ms: f64,
    /// From the SIGTERM until the process had exited.
    pub(crate) exit_ms: f64,
}

/// One SIGTERM round: `writers` clients write, spread over all members;
/// after one second the leader gets SIGTERM; the round ends one second
/// after it exited. Then the member is started again.
pub(crate) async fn sigterm_under_load(
    cluster: &mut Cluster,
    writers: usize,
) -> Result<Drain, String> {
    let leader = cluster.settle(SETTLE).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pid = cluster.pid(leader).ok_or("the leader is not running")?;
    let members: Vec<String> = cluster.members().map(|i| cluster.authority(i)).collect();
    let stop = Cell::new(false);
    let term_at: Cell<Option<Instant>> = Cell::new(None);
    let value = Bytes::from(vec![b'v'; 128]);

    let shared = &*cluster;
    let writer_loops = (0..writers).map(|w| {
        let (members, value, stop) = (&members, &value, &stop);
        async move {
            let http = client(1);
            let mut member = w % members.len();
            let (mut acks, mut failed, mut refused, mut first) = (Vec::new(), 0, 0, None);
            let mut seq = 0u64;
            while !stop.get() {
                seq += 1;
                let key = format!("drain-{w}-{seq}");
                let outcome = shared
                    .put(
                        &http,
                        &members[member],
                        &key,
                        value,
                        Duration::from_secs(10),
                    )
                    .await;
                match outcome {
                    Outcome::Answer(status, _) if status.is_success() => acks.push(Instant::now()),
                    Outcome::NotSent => {
                        refused += 1;
                        member = (member + 1) % members.len();
                    }
                    other => {
                        // Counted; then the client tries the next member,
                        // as behind a load balancer.
                        failed += 1;
                        if first.is_none() {
                            first = Some(format!(
                                "member {member}: {}",
                                other.ok().err().unwrap_or_default()
                            ));
                        }
                        member = (member + 1) % members.len();
                    }
                }
            }
            (acks, failed, refused, first)
        }
    });
    let controller = async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let t0 = Instant::now();
        term_at.set(Some(t0));
        let signalled = shared.signal(leader, Signal::TERM);
        let until = t0 + Duration::from_secs(10);
        while !procstat::exited(pid) && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let exit = t0.elapsed();
        tokio::time::sleep(Duration::from_secs(1)).await;
        stop.set(true);
        signalled.map(|()| exit)
    };
    let (results, exit) = tokio::join!(join_all(writer_loops), controller);
    let end = Instant::now();
    let exit = exit?;
    cluster.wait_exit(leader, Duration::from_secs(10)).await?;
    cluster.spawn(leader)?;

    let t0 = term_at.get().ok_or("no SIGTERM was sent")?;
    let mut acks = Vec::new();
    let (mut failed, mut refused, mut first_failure) = (0, 0, None);
    for (a, f, r, first) in results {
        acks.extend(a);
        failed += f;
        refused += r;
        first_failure = first_failure.or(first);
    }
    acks.sort_unstable();
    let mut longest = Duration::ZERO;
    let mut previous = t0;
    for ack in acks.iter().filter(|a| **a >= t0) {
        longest = longest.max(ack.saturating_duration_since(previous));
        previous = *ack;
    }
    longest = longest.max(end.saturating_duration_since(previous));
    cluster.settle(SETTLE).await?;
    Ok(Drain {
        acknowledged: acks.len() as u64,
        failed,
        refused,
        first_failure,
        longest_gap_ms: longest.as_secs_f64() * 1000.0,
        exit_ms: exit.as_secs_f64() * 1000.0,
    })
}
