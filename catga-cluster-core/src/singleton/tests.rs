use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use super::*;
use crate::testing::ManualCoordinator;
use crate::{Endpoint, NodeId, NodeInfo};

fn other() -> NodeInfo {
    NodeInfo::new(
        NodeId::new(2),
        Endpoint::parse("http://127.0.0.1:2").unwrap(),
    )
}

async fn wait_state(
    rx: &mut watch::Receiver<SingletonState>,
    what: &str,
    pred: impl FnMut(&SingletonState) -> bool,
) -> SingletonState {
    tokio::time::timeout(Duration::from_secs(30), rx.wait_for(pred))
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
        .expect("runner alive")
        .clone()
}

fn is_running(s: &SingletonState) -> bool {
    matches!(s, SingletonState::Running { .. })
}

#[test]
fn backoff_grows_caps_and_resets() {
    let config = BackoffConfig {
        initial: Duration::from_millis(100),
        max: Duration::from_secs(1),
        multiplier: 2.0,
        jitter: 0.5,
    };
    // Replay a failure with CATGA_TEST_SEED=<seed>.
    let seed = std::env::var("CATGA_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    eprintln!("backoff jitter seed {seed} (replay with CATGA_TEST_SEED={seed})");
    let mut backoff = Backoff::with_seed(config, seed);
    let ceilings: Vec<_> = (0..6)
        .map(|_| {
            let ceiling = backoff.ceiling();
            let delay = backoff.next_delay();
            assert!(
                delay <= ceiling && delay >= ceiling / 2,
                "{delay:?} vs {ceiling:?}"
            );
            ceiling
        })
        .collect();
    assert_eq!(
        ceilings,
        [100, 200, 400, 800, 1000, 1000].map(Duration::from_millis)
    );
    backoff.reset();
    assert_eq!(backoff.ceiling(), Duration::from_millis(100));
    assert_eq!(backoff.failures(), 0);

    // Without jitter the delays are exact.
    let mut exact = Backoff::with_seed(
        BackoffConfig {
            jitter: 0.0,
            ..config
        },
        seed,
    );
    assert_eq!(exact.next_delay(), Duration::from_millis(100));
    assert_eq!(exact.next_delay(), Duration::from_millis(200));
}

#[tokio::test]
async fn starts_on_leadership_and_stops_on_loss() {
    let coord = ManualCoordinator::new_follower();
    let runs = Arc::new(AtomicUsize::new(0));
    let task = {
        let runs = runs.clone();
        singleton_fn("t", move |ctx| {
            let runs = runs.clone();
            async move {
                runs.fetch_add(1, Ordering::SeqCst);
                ctx.cancelled().await;
                Ok(())
            }
        })
    };
    let handle = SingletonRunner::new(coord.clone(), task).spawn();
    let mut states = handle.subscribe();
    assert_eq!(handle.state(), SingletonState::Idle);

    coord.set_leader();
    let state = wait_state(&mut states, "running", is_running).await;
    assert!(matches!(state, SingletonState::Running { fence, .. } if fence.term == 1));

    coord.set_follower(Some(other()));
    wait_state(&mut states, "idle", |s| *s == SingletonState::Idle).await;
    assert_eq!(runs.load(Ordering::SeqCst), 1);

    handle.shutdown().await;
}

#[tokio::test]
async fn never_two_runs_under_rapid_flips() {
    let coord = ManualCoordinator::new_follower();
    let active = Arc::new(AtomicUsize::new(0));
    let max_active = Arc::new(AtomicUsize::new(0));
    let fences = Arc::new(Mutex::new(Vec::<LeaderFence>::new()));
    let task = {
        let (active, max_active, fences) = (active.clone(), max_active.clone(), fences.clone());
        singleton_fn("flips", move |ctx| {
            let (active, max_active, fences) = (active.clone(), max_active.clone(), fences.clone());
            async move {
                let now = active.fetch_add(1, Ordering::SeqCst) + 1;
                max_active.fetch_max(now, Ordering::SeqCst);
                fences.lock().unwrap().push(ctx.fence());
                // Linger after cancellation to widen any overlap window.
                ctx.cancelled().await;
                tokio::task::yield_now().await;
                tokio::time::sleep(Duration::from_micros(200)).await;
                active.fetch_sub(1, Ordering::SeqCst);
                Ok(())
            }
        })
    };
    let handle = SingletonRunner::new(coord.clone(), task).spawn();
    let mut states = handle.subscribe();
    for round in 0..100 {
        coord.set_leader();
        if round % 3 == 0 {
            wait_state(&mut states, "running", is_running).await;
        } else {
            tokio::task::yield_now().await;
        }
        coord.set_follower(if round % 2 == 0 { Some(other()) } else { None });
        if round % 5 == 0 {
            tokio::task::yield_now().await;
        }
    }
    coord.set_leader();
    wait_state(
        &mut states,
        "final run",
        |s| matches!(s, SingletonState::Running { fence, .. } if fence.term == 101),
    )
    .await;
    handle.shutdown().await;

    assert_eq!(max_active.load(Ordering::SeqCst), 1, "two runs overlapped");
    assert_eq!(active.load(Ordering::SeqCst), 0);
    let fences = fences.lock().unwrap();
    assert!(fences.len() >= 34, "only {} runs", fences.len());
    for pair in fences.windows(2) {
        assert!(pair[1] > pair[0], "fences not increasing: {pair:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn stuck_run_is_reported_and_blocks_a_second_copy() {
    let coord = ManualCoordinator::new_follower();
    let starts = Arc::new(AtomicU64::new(0));
    let release = Arc::new(AtomicBool::new(false));
    let task = {
        let (starts, release) = (starts.clone(), release.clone());
        singleton_fn("stubborn", move |ctx| {
            let (starts, release) = (starts.clone(), release.clone());
            async move {
                let n = starts.fetch_add(1, Ordering::SeqCst);
                if n == 0 {
                    // Ignores cancellation until the test lets it go.
                    while !release.load(Ordering::SeqCst) {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                } else {
                    ctx.cancelled().await;
                }
                Ok(())
            }
        })
    };
    let config = SingletonConfig::default().stop_timeout(Duration::from_millis(500));
    let handle = SingletonRunner::new(coord.clone(), task)
        .config(config)
        .spawn();
    let mut states = handle.subscribe();

    coord.set_leader();
    wait_state(&mut states, "running", is_running).await;
    coord.set_follower(None);
    wait_state(&mut states, "stuck", |s| {
        matches!(s, SingletonState::Stuck { .. })
    })
    .await;

    // Leadership comes back while the old run still runs: no second copy.
    coord.set_leader();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(starts.load(Ordering::SeqCst), 1);
    assert!(matches!(handle.state(), SingletonState::Stuck { .. }));

    // Once it finishes, a new run starts under the new term.
    release.store(true, Ordering::SeqCst);
    let state = wait_state(&mut states, "second run", is_running).await;
    assert!(matches!(state, SingletonState::Running { fence, attempt: 2 } if fence.term == 2));
    assert_eq!(starts.load(Ordering::SeqCst), 2);
    handle.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn failing_task_restarts_with_growing_backoff() {
    let coord = ManualCoordinator::new_leader();
    let task = singleton_fn("fails", |_ctx| async { Err::<(), BoxError>("boom".into()) });
    let config = SingletonConfig::default().backoff(BackoffConfig {
        initial: Duration::from_millis(100),
        max: Duration::from_secs(10),
        multiplier: 2.0,
        jitter: 0.0,
    });
    let handle = SingletonRunner::new(coord.clone(), task)
        .config(config)
        .spawn();
    let mut states = handle.subscribe();
    let mut delays = Vec::new();
    for n in 1..=4u32 {
        let state = wait_state(
            &mut states,
            "backoff",
            |s| matches!(s, SingletonState::Backoff { failures, .. } if *failures == n),
        )
        .await;
        if let SingletonState::Backoff { delay, .. } = state {
            delays.push(delay);
        }
    }
    assert_eq!(delays, [100, 200, 400, 800].map(Duration::from_millis));

    // A new leadership term resets the backoff.
    coord.set_follower(None);
    wait_state(&mut states, "idle", |s| *s == SingletonState::Idle).await;
    coord.set_leader();
    let state = wait_state(&mut states, "backoff after reset", |s| {
        matches!(s, SingletonState::Backoff { .. })
    })
    .await;
    assert_eq!(
        state,
        SingletonState::Backoff {
            failures: 1,
            delay: Duration::from_millis(100)
        }
    );
    handle.shutdown().await;
}

#[tokio::test]
async fn shutdown_cancels_the_run_and_stops() {
    let coord = ManualCoordinator::new_leader();
    let cancelled = Arc::new(AtomicBool::new(false));
    let task = {
        let cancelled = cancelled.clone();
        singleton_fn("t", move |ctx| {
            let cancelled = cancelled.clone();
            async move {
                ctx.cancelled().await;
                cancelled.store(true, Ordering::SeqCst);
                Ok(())
            }
        })
    };
    let handle = SingletonRunner::new(coord, task).spawn();
    let mut states = handle.subscribe();
    wait_state(&mut states, "running", is_running).await;
    handle.shutdown().await;
    assert!(cancelled.load(Ordering::SeqCst));
    assert_eq!(*states.borrow(), SingletonState::Stopped);
}

#[tokio::test]
async fn the_status_view_follows_the_runner_to_its_end() {
    let coord = ManualCoordinator::new_follower();
    let task = singleton_fn("t", |ctx| async move {
        ctx.cancelled().await;
        Ok(())
    });
    let handle = SingletonRunner::new(coord.clone(), task).spawn();
    let mut status = handle.watch();
    assert_eq!(status.state(), SingletonState::Idle);

    coord.set_leader();
    let running = tokio::time::timeout(Duration::from_secs(30), status.wait_for(is_running))
        .await
        .expect("running in time")
        .expect("runner alive");
    assert!(matches!(
        running,
        SingletonState::Running { attempt: 1, .. }
    ));
    assert_eq!(status.state(), running);

    // A clone follows on its own; the original is unaffected by it.
    let mut clone = status.clone();
    coord.set_follower(None);
    let idle = wait_view(&mut clone, |s| *s == SingletonState::Idle).await;
    assert_eq!(idle, SingletonState::Idle);

    handle.shutdown().await;
    // Every state up to the last is returned, then the end of the runner.
    let mut last = None;
    while let Some(state) = tokio::time::timeout(Duration::from_secs(30), status.changed())
        .await
        .expect("the view ends in time")
    {
        last = Some(state);
    }
    assert_eq!(last, Some(SingletonState::Stopped));
    assert_eq!(status.state(), SingletonState::Stopped);
    assert_eq!(clone.changed().await, Some(SingletonState::Stopped));
    assert_eq!(clone.changed().await, None);
    assert_eq!(clone.wait_for(is_running).await, None);
}

#[tokio::test]
async fn a_new_view_waits_for_the_next_change() {
    let coord = ManualCoordinator::new_follower();
    let task = singleton_fn("t", |ctx| async move {
        ctx.cancelled().await;
        Ok(())
    });
    let handle = SingletonRunner::new(coord.clone(), task).spawn();
    coord.set_leader();
    wait_state(&mut handle.subscribe(), "running", is_running).await;

    // Made after the runner reached Running: that state is not news to it.
    let mut status = handle.watch();
    let mut next = next_change(status.clone());
    tokio::task::yield_now().await;
    assert!(!next.is_finished(), "a new view reported an old change");
    coord.set_follower(None);
    let changed = tokio::time::timeout(Duration::from_secs(30), &mut next)
        .await
        .expect("a change in time")
        .unwrap();
    assert!(
        matches!(
            changed,
            Some(SingletonState::Stopping { .. } | SingletonState::Idle)
        ),
        "{changed:?}"
    );
    handle.shutdown().await;
    assert_eq!(
        wait_view(&mut status, |s| *s == SingletonState::Stopped).await,
        SingletonState::Stopped
    );
}

#[tokio::test]
async fn dropping_the_handle_stops_the_runner_and_the_view_does_not_keep_it() {
    let coord = ManualCoordinator::new_leader();
    let cancelled = Arc::new(AtomicBool::new(false));
    let task = {
        let cancelled = cancelled.clone();
        singleton_fn("t", move |ctx| {
            let cancelled = cancelled.clone();
            async move {
                ctx.cancelled().await;
                cancelled.store(true, Ordering::SeqCst);
                Ok(())
            }
        })
    };
    let handle = SingletonRunner::new(coord, task).spawn();
    let mut status = handle.watch();
    wait_view(&mut status, is_running).await;

    drop(handle);
    let end = wait_view(&mut status, |s| *s == SingletonState::Stopped).await;
    assert_eq!(end, SingletonState::Stopped);
    assert!(
        cancelled.load(Ordering::SeqCst),
        "the run was not cancelled"
    );
}

async fn wait_view(
    status: &mut SingletonStatus,
    pred: impl FnMut(&SingletonState) -> bool,
) -> SingletonState {
    tokio::time::timeout(Duration::from_secs(30), status.wait_for(pred))
        .await
        .expect("the state in time")
        .expect("runner alive")
}

/// The view's next change, on a task of its own.
fn next_change(mut status: SingletonStatus) -> JoinHandle<Option<SingletonState>> {
    tokio::spawn(async move { status.changed().await })
}
