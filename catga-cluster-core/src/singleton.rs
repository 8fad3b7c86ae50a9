//! Singleton tasks: background work that runs on the leader only.
//!
//! A [`SingletonTask`] is started by a [`SingletonRunner`] when this node
//! gains leadership and cancelled when it loses it. The runner is driven by
//! the coordinator's leadership channel (no polling loop) and guarantees that
//! at most one run of a task exists in this process at any time: after a
//! loss it cancels the run and waits (bounded by
//! [`SingletonConfig::stop_timeout`]) for it to finish; a run that ignores
//! cancellation is reported, and no new run starts until it has finished.
//!
//! Each run receives a [`LeaderFence`]: pass it to the resources the task
//! writes to, so that a run on a deposed leader cannot overwrite its
//! successor's work even across processes.
//!
//! A run that returns (successfully or not) while the node still leads is
//! restarted after an exponential [`Backoff`] with jitter; the backoff resets
//! when leadership is gained anew or after a run that lasted
//! [`SingletonConfig::reset_after`].
//!
//! # Keep the handle
//!
//! [`SingletonRunner::spawn`] returns a [`SingletonHandle`], and **dropping
//! the handle stops the runner at once**: the current run is cancelled and
//! no new run starts. `SingletonRunner::new(coord, task).spawn();` on its
//! own line therefore runs the task zero times (the compiler warns: the
//! handle is `#[must_use]`). Keep the handle for as long as the task should
//! run — in your application state, next to the server — and call
//! [`SingletonHandle::shutdown`] to stop it and wait for the run to finish.
//!
//! For a health route or a metric, [`SingletonHandle::watch`] gives a
//! [`SingletonStatus`]: a cheap, cloneable view of the runner's
//! [`SingletonState`] that does not keep the runner alive.
//!
//! ```
//! # #[cfg(feature = "test-util")] {
//! use catga_cluster_core::testing::ManualCoordinator;
//! use catga_cluster_core::{singleton_fn, SingletonRunner, SingletonState};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
//! let coord = ManualCoordinator::new_follower();
//! let task = singleton_fn("outbox", |ctx| async move {
//!     // Work until leadership is lost, tagging writes with ctx.fence().
//!     ctx.cancelled().await;
//!     Ok(())
//! });
//! let handle = SingletonRunner::new(coord.clone(), task).spawn();
//! let mut status = handle.watch(); // clone it into a health route
//! assert_eq!(status.state(), SingletonState::Idle);
//!
//! coord.set_leader();
//! status.wait_for(|s| matches!(s, SingletonState::Running { .. })).await;
//! handle.shutdown().await;
//! assert_eq!(status.state(), SingletonState::Stopped);
//! # });
//! # }
//! ```

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::coordinator::leadership_lost;
use crate::{BoxError, ClusterCoordinator, LeaderFence, Leadership};

const TARGET: &str = "catga_cluster::singleton";

/// Background work that must run on exactly one node: the leader.
pub trait SingletonTask: Send + Sync + 'static {
    /// A stable name, used in logs.
    fn name(&self) -> &str;

    /// Runs until the work is done or `ctx` is cancelled. Return promptly
    /// after cancellation.
    fn run(&self, ctx: TaskContext) -> impl Future<Output = Result<(), BoxError>> + Send;
}

/// What a run of a [`SingletonTask`] receives.
#[derive(Debug, Clone)]
pub struct TaskContext {
    fence: LeaderFence,
    cancel: CancellationToken,
    attempt: u64,
}

impl TaskContext {
    /// The fence of the leadership this run belongs to.
    pub fn fence(&self) -> LeaderFence {
        self.fence
    }

    /// The token cancelled the moment leadership is lost or the runner stops.
    pub fn cancellation(&self) -> &CancellationToken {
        &self.cancel
    }

    /// Resolves when the run must stop.
    pub async fn cancelled(&self) {
        self.cancel.cancelled().await
    }

    /// `true` once the run must stop.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// How many runs of this task the runner has started, this one included.
    pub fn attempt(&self) -> u64 {
        self.attempt
    }
}

/// A [`SingletonTask`] made of a name and a closure; see [`singleton_fn`].
pub struct FnTask<F> {
    name: String,
    f: F,
}

impl<F> fmt::Debug for FnTask<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FnTask").field("name", &self.name).finish()
    }
}

/// A singleton task from a closure that returns the run's future.
pub fn singleton_fn<F, Fut>(name: impl Into<String>, f: F) -> FnTask<F>
where
    F: Fn(TaskContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), BoxError>> + Send,
{
    FnTask {
        name: name.into(),
        f,
    }
}

impl<F, Fut> SingletonTask for FnTask<F>
where
    F: Fn(TaskContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), BoxError>> + Send,
{
    fn name(&self) -> &str {
        &self.name
    }

    fn run(&self, ctx: TaskContext) -> impl Future<Output = Result<(), BoxError>> + Send {
        (self.f)(ctx)
    }
}

/// Exponential backoff settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BackoffConfig {
    /// The first delay.
    pub initial: Duration,
    /// The largest delay.
    pub max: Duration,
    /// The factor between two delays (at least 1).
    pub multiplier: f64,
    /// The share of each delay that is random, from 0 (none) to 1: a delay
    /// `d` becomes a uniform draw from `[d × (1 − jitter), d]`.
    pub jitter: f64,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        BackoffConfig {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(30),
            multiplier: 2.0,
            jitter: 0.5,
        }
    }
}

/// Exponential backoff with jitter.
#[derive(Debug, Clone)]
pub struct Backoff {
    config: BackoffConfig,
    failures: u32,
    rng: fastrand::Rng,
}

impl Backoff {
    /// A backoff with a random jitter seed.
    pub fn new(config: BackoffConfig) -> Self {
        Backoff::with_seed(config, fastrand::u64(..))
    }

    /// A backoff whose jitter is reproducible from `seed`.
    pub fn with_seed(config: BackoffConfig, seed: u64) -> Self {
        Backoff {
            config,
            failures: 0,
            rng: fastrand::Rng::with_seed(seed),
        }
    }

    /// The delay before the next attempt; each call grows the next one.
    pub fn next_delay(&mut self) -> Duration {
        let base = self.ceiling();
        self.failures = self.failures.saturating_add(1);
        let jitter = self.config.jitter.clamp(0.0, 1.0);
        let factor = 1.0 - jitter * self.rng.f64();
        base.mul_f64(factor)
    }

    /// The delay before jitter that the next call to
    /// [`next_delay`](Backoff::next_delay) starts from.
    pub fn ceiling(&self) -> Duration {
        let multiplier = self.config.multiplier.max(1.0);
        let exponent = i32::try_from(self.failures).unwrap_or(i32::MAX);
        let secs = self.config.initial.as_secs_f64() * multiplier.powi(exponent);
        if !secs.is_finite() || secs >= self.config.max.as_secs_f64() {
            self.config.max
        } else {
            Duration::from_secs_f64(secs)
        }
    }

    /// Starts over from the initial delay.
    pub fn reset(&mut self) {
        self.failures = 0;
    }

    /// How many delays were handed out since the last reset.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

/// Settings of a [`SingletonRunner`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SingletonConfig {
    /// How long to wait for a cancelled run to finish before reporting it as
    /// stuck. No new run starts until it has finished anyway.
    pub stop_timeout: Duration,
    /// Deadline of the leadership check before each run.
    pub ensure_timeout: Duration,
    /// Restart delays for runs that return while the node leads.
    pub backoff: BackoffConfig,
    /// A run that lasted at least this long resets the backoff.
    pub reset_after: Duration,
}

impl Default for SingletonConfig {
    fn default() -> Self {
        SingletonConfig {
            stop_timeout: Duration::from_secs(10),
            ensure_timeout: Duration::from_secs(5),
            backoff: BackoffConfig::default(),
            reset_after: Duration::from_secs(60),
        }
    }
}

impl SingletonConfig {
    /// Sets [`stop_timeout`](SingletonConfig::stop_timeout).
    pub fn stop_timeout(mut self, timeout: Duration) -> Self {
        self.stop_timeout = timeout;
        self
    }

    /// Sets [`ensure_timeout`](SingletonConfig::ensure_timeout).
    pub fn ensure_timeout(mut self, timeout: Duration) -> Self {
        self.ensure_timeout = timeout;
        self
    }

    /// Sets [`backoff`](SingletonConfig::backoff).
    pub fn backoff(mut self, backoff: BackoffConfig) -> Self {
        self.backoff = backoff;
        self
    }

    /// Sets [`reset_after`](SingletonConfig::reset_after).
    pub fn reset_after(mut self, after: Duration) -> Self {
        self.reset_after = after;
        self
    }
}

/// What a runner is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SingletonState {
    /// Waiting for this node to lead.
    Idle,
    /// A run is under way.
    Running {
        /// The run's fence.
        fence: LeaderFence,
        /// The run's number.
        attempt: u64,
    },
    /// The last run returned while the node leads; the next starts after
    /// `delay`.
    Backoff {
        /// How many restarts in a row, this one included.
        failures: u32,
        /// The delay before the restart.
        delay: Duration,
    },
    /// The run was cancelled and the runner waits for it to finish.
    Stopping {
        /// The cancelled run's fence.
        fence: LeaderFence,
    },
    /// The cancelled run did not finish within the stop timeout. No new run
    /// starts until it does.
    Stuck {
        /// The stuck run's fence.
        fence: LeaderFence,
    },
    /// The runner has shut down.
    Stopped,
}

/// Runs a [`SingletonTask`] on the leader.
///
/// Build it with [`new`](SingletonRunner::new), adjust it with
/// [`config`](SingletonRunner::config), start it with
/// [`spawn`](SingletonRunner::spawn) and keep the [`SingletonHandle`] for as
/// long as the task should run: dropping it stops the runner.
///
/// ```
/// use std::time::Duration;
/// use catga_cluster_core::{
///     singleton_fn, ClusterCoordinator, SingletonConfig, SingletonHandle, SingletonRunner,
/// };
///
/// /// Starts the outbox on whichever node leads; the caller keeps the handle
/// /// (in its application state) and shuts it down on exit.
/// fn start_outbox<C: ClusterCoordinator>(coordinator: C) -> SingletonHandle {
///     let task = singleton_fn("outbox", |ctx| async move {
///         while !ctx.is_cancelled() {
///             // Process a batch, tagging writes with ctx.fence().
///             tokio::select! {
///                 () = ctx.cancelled() => break,
///                 () = tokio::time::sleep(Duration::from_secs(1)) => {}
///             }
///         }
///         Ok(())
///     });
///     SingletonRunner::new(coordinator, task)
///         .config(SingletonConfig::default().stop_timeout(Duration::from_secs(5)))
///         .spawn()
/// }
/// ```
#[derive(Debug)]
pub struct SingletonRunner<C, T> {
    coordinator: C,
    task: Arc<T>,
    config: SingletonConfig,
    seed: Option<u64>,
}

impl<C, T> SingletonRunner<C, T>
where
    C: ClusterCoordinator,
    T: SingletonTask,
{
    /// A runner with the default [`SingletonConfig`].
    pub fn new(coordinator: C, task: T) -> Self {
        SingletonRunner {
            coordinator,
            task: Arc::new(task),
            config: SingletonConfig::default(),
            seed: None,
        }
    }

    /// Replaces the settings.
    pub fn config(mut self, config: SingletonConfig) -> Self {
        self.config = config;
        self
    }

    /// Makes the backoff jitter reproducible.
    pub fn jitter_seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Starts the runner on the current tokio runtime.
    ///
    /// The runner lives as long as the returned handle: dropping it stops
    /// the runner at once (see [Keep the handle](self#keep-the-handle)).
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime, as `tokio::spawn` does.
    #[must_use = "the runner stops as soon as the SingletonHandle is dropped; keep the handle for as long as the task should run"]
    pub fn spawn(self) -> SingletonHandle {
        let (state_tx, state_rx) = watch::channel(SingletonState::Idle);
        let shutdown = CancellationToken::new();
        let span = tracing::info_span!(
            target: TARGET,
            "singleton",
            task = self.task.name(),
            node_id = %self.coordinator.node().id,
        );
        let driver = Driver {
            backoff: match self.seed {
                Some(seed) => Backoff::with_seed(self.config.backoff, seed),
                None => Backoff::new(self.config.backoff),
            },
            coordinator: self.coordinator,
            task: self.task,
            config: self.config,
            state: state_tx,
            shutdown: shutdown.clone(),
            attempts: 0,
        };
        let join = tokio::spawn(driver.drive().instrument(span));
        SingletonHandle {
            state: state_rx,
            shutdown,
            join: Some(join),
        }
    }
}

/// Controls a spawned [`SingletonRunner`].
///
/// **Dropping the handle stops the runner** at once: the current run is
/// cancelled (without waiting for it) and no new run starts. Keep the handle
/// for as long as the task should run, and stop it with
/// [`shutdown`](SingletonHandle::shutdown), which waits for the run to
/// finish. [`watch`](SingletonHandle::watch) gives a view of the state that
/// can be cloned into health routes without keeping the runner alive.
#[derive(Debug)]
#[must_use = "dropping a SingletonHandle stops the runner at once; keep it for as long as the task should run"]
pub struct SingletonHandle {
    state: watch::Receiver<SingletonState>,
    shutdown: CancellationToken,
    join: Option<JoinHandle<()>>,
}

impl SingletonHandle {
    /// The runner's current state.
    pub fn state(&self) -> SingletonState {
        self.state.borrow().clone()
    }

    /// A receiver of state changes.
    pub fn subscribe(&self) -> watch::Receiver<SingletonState> {
        self.state.clone()
    }

    /// A cheap, cloneable view of the runner's state, for health routes and
    /// metrics. It does not keep the runner alive: once the runner stops,
    /// the view shows [`SingletonState::Stopped`].
    pub fn watch(&self) -> SingletonStatus {
        let mut state = self.state.clone();
        state.mark_unchanged();
        SingletonStatus { state }
    }

    /// Cancels the current run, waits for it (bounded by the stop timeout)
    /// and stops the runner.
    pub async fn shutdown(mut self) {
        self.shutdown.cancel();
        if let Some(join) = self.join.take() {
            if let Err(e) = join.await {
                tracing::error!(target: TARGET, error = %e, "singleton runner failed");
            }
        }
    }
}

/// A view of a [`SingletonRunner`]'s state, from [`SingletonHandle::watch`].
///
/// Cheap to clone (a `watch` receiver); each clone follows the state on
/// its own. It observes only: dropping it, or every clone, changes nothing,
/// and it does not keep the runner alive.
///
/// ```
/// # #[cfg(feature = "test-util")] {
/// use catga_cluster_core::testing::ManualCoordinator;
/// use catga_cluster_core::{singleton_fn, SingletonRunner, SingletonState, SingletonStatus};
///
/// /// What a readiness route might answer.
/// fn outbox_health(status: &SingletonStatus) -> &'static str {
///     match status.state() {
///         SingletonState::Stuck { .. } => "degraded",
///         SingletonState::Stopped => "stopped",
///         _ => "ok",
///     }
/// }
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// let coord = ManualCoordinator::new_leader();
/// let task = singleton_fn("outbox", |ctx| async move {
///     ctx.cancelled().await;
///     Ok(())
/// });
/// let handle = SingletonRunner::new(coord, task).spawn();
/// let status = handle.watch();
/// assert_eq!(outbox_health(&status), "ok");
/// handle.shutdown().await;
/// assert_eq!(outbox_health(&status), "stopped");
/// # });
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct SingletonStatus {
    state: watch::Receiver<SingletonState>,
}

impl SingletonStatus {
    /// The runner's current state.
    pub fn state(&self) -> SingletonState {
        self.state.borrow().clone()
    }

    /// Waits for a newer state than the last one this call returned (or,
    /// on the first call, than the state when the view was made) and
    /// returns it; `None` once the runner is gone and its last state
    /// ([`SingletonState::Stopped`]) has been returned.
    ///
    /// States that follow each other quickly may be skipped: the view holds
    /// the newest state only. A clone continues from where its original
    /// was.
    pub async fn changed(&mut self) -> Option<SingletonState> {
        self.state.changed().await.ok()?;
        Some(self.state.borrow_and_update().clone())
    }

    /// Waits until the state satisfies `pred` (checked on the current state
    /// first) and returns it; `None` if the runner stopped without reaching
    /// such a state.
    pub async fn wait_for(
        &mut self,
        pred: impl FnMut(&SingletonState) -> bool,
    ) -> Option<SingletonState> {
        self.state.wait_for(pred).await.ok().map(|s| s.clone())
    }
}

impl Drop for SingletonHandle {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

struct Driver<C, T> {
    coordinator: C,
    task: Arc<T>,
    config: SingletonConfig,
    backoff: Backoff,
    state: watch::Sender<SingletonState>,
    shutdown: CancellationToken,
    attempts: u64,
}

/// Why a run ended, as the driver sees it.
enum RunEnd {
    Returned(Result<Result<(), BoxError>, tokio::task::JoinError>),
    LeadershipLost,
    Shutdown,
}

impl<C: ClusterCoordinator, T: SingletonTask> Driver<C, T> {
    async fn drive(mut self) {
        let mut rx = self.coordinator.subscribe();
        let mut last_term = None;
        'outer: loop {
            self.set_state(SingletonState::Idle);
            tokio::select! {
                () = self.shutdown.cancelled() => break,
                led = rx.wait_for(Leadership::is_leader) => if led.is_err() { break },
            }
            let check =
                tokio::time::timeout(self.config.ensure_timeout, self.coordinator.ensure_leader());
            let fence = tokio::select! {
                () = self.shutdown.cancelled() => break,
                checked = check => match checked {
                    Ok(Ok(fence)) => fence,
                    Ok(Err(not_leader)) => {
                        tracing::debug!(target: TARGET, %not_leader, "leadership not confirmed");
                        if !self.next_change(&mut rx).await { break }
                        continue;
                    }
                    Err(_) => {
                        tracing::warn!(target: TARGET, "leadership check timed out");
                        if !self.next_change(&mut rx).await { break }
                        continue;
                    }
                },
            };
            if last_term != Some(fence.term) {
                last_term = Some(fence.term);
                self.backoff.reset();
            }

            loop {
                let started = Instant::now();
                let (end, mut run) = self.run_once(fence, &mut rx).await;
                match end {
                    RunEnd::Returned(result) => {
                        match result {
                            Ok(Ok(())) => {
                                tracing::info!(target: TARGET, %fence, "run returned")
                            }
                            Ok(Err(error)) => {
                                tracing::warn!(target: TARGET, %fence, %error, "run failed")
                            }
                            Err(error) => {
                                tracing::error!(target: TARGET, %fence, %error, "run panicked")
                            }
                        }
                        if started.elapsed() >= self.config.reset_after {
                            self.backoff.reset();
                        }
                        let delay = self.backoff.next_delay();
                        self.set_state(SingletonState::Backoff {
                            failures: self.backoff.failures(),
                            delay,
                        });
                        tracing::info!(target: TARGET, ?delay, "restarting after backoff");
                        tokio::select! {
                            () = self.shutdown.cancelled() => break 'outer,
                            () = leadership_lost(&mut rx, fence.term) => continue 'outer,
                            () = tokio::time::sleep(delay) => continue,
                        }
                    }
                    RunEnd::LeadershipLost => {
                        tracing::info!(target: TARGET, %fence, "leadership lost; stopping the run");
                        if !self.stop(fence, &mut run).await {
                            break 'outer;
                        }
                        continue 'outer;
                    }
                    RunEnd::Shutdown => {
                        self.stop(fence, &mut run).await;
                        break 'outer;
                    }
                }
            }
        }
        self.set_state(SingletonState::Stopped);
        tracing::info!(target: TARGET, "singleton runner stopped");
    }

    /// Starts one run and waits for it to end, for leadership to be lost or
    /// for shutdown. Returns the run's handle and cancellation token for
    /// [`Driver::stop`].
    async fn run_once(
        &mut self,
        fence: LeaderFence,
        rx: &mut watch::Receiver<Leadership>,
    ) -> (RunEnd, Run) {
        self.attempts += 1;
        let cancel = self.shutdown.child_token();
        let ctx = TaskContext {
            fence,
            cancel: cancel.clone(),
            attempt: self.attempts,
        };
        let task = self.task.clone();
        let span = tracing::info_span!(target: TARGET, "run", term = fence.term, index = fence.index, attempt = self.attempts);
        let mut join = tokio::spawn(async move { task.run(ctx).await }.instrument(span));
        self.set_state(SingletonState::Running {
            fence,
            attempt: self.attempts,
        });
        tracing::info!(target: TARGET, %fence, attempt = self.attempts, "run started");
        let end = tokio::select! {
            biased;
            () = self.shutdown.cancelled() => RunEnd::Shutdown,
            () = leadership_lost(rx, fence.term) => RunEnd::LeadershipLost,
            result = &mut join => RunEnd::Returned(result),
        };
        (end, Run { join, cancel })
    }

    /// Cancels a run and waits for it to finish: bounded, then reported as
    /// stuck, then unbounded (no second run may start while it exists) unless
    /// the runner shuts down. Returns `false` on shutdown.
    async fn stop(&mut self, fence: LeaderFence, run: &mut Run) -> bool {
        if run.join.is_finished() {
            return !self.shutdown.is_cancelled();
        }
        run.cancel.cancel();
        self.set_state(SingletonState::Stopping { fence });
        let bounded = tokio::time::timeout(self.config.stop_timeout, &mut run.join).await;
        if bounded.is_ok() {
            return !self.shutdown.is_cancelled();
        }
        tracing::error!(
            target: TARGET,
            %fence,
            stop_timeout = ?self.config.stop_timeout,
            "the run ignored cancellation; no new run starts until it finishes"
        );
        self.set_state(SingletonState::Stuck { fence });
        if self.shutdown.is_cancelled() {
            run.join.abort();
            return false;
        }
        tokio::select! {
            _ = &mut run.join => {
                tracing::info!(target: TARGET, %fence, "the stuck run finished");
                true
            }
            () = self.shutdown.cancelled() => {
                run.join.abort();
                false
            }
        }
    }

    /// Waits for the next leadership change; `false` on shutdown.
    async fn next_change(&self, rx: &mut watch::Receiver<Leadership>) -> bool {
        tokio::select! {
            () = self.shutdown.cancelled() => false,
            changed = rx.changed() => changed.is_ok(),
        }
    }

    fn set_state(&self, state: SingletonState) {
        self.state.send_replace(state);
    }
}

struct Run {
    join: JoinHandle<Result<(), BoxError>>,
    cancel: CancellationToken,
}

#[cfg(test)]
mod tests;
