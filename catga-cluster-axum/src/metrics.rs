//! Prometheus metrics of the cluster, served on `GET /metrics`.
//!
//! Built on [`prometheus_client`], the Prometheus project's own Rust client
//! (maintained, no global registry, no protobuf by default). `/metrics`
//! answers the Prometheus text format 0.0.4, or OpenMetrics when the
//! scraper's `Accept` header asks for `application/openmetrics-text`.
//!
//! | metric | type | meaning |
//! |---|---|---|
//! | `catga_cluster_role{role}` | gauge | 1 for this node's Raft role (`leader`, `follower`, `candidate`, `learner`, `shutdown`), 0 for the others |
//! | `catga_cluster_is_leader` | gauge | 1 while this node leads under a valid lease, else 0 |
//! | `catga_cluster_term` | gauge | the current Raft term |
//! | `catga_cluster_health_status{status}` | gauge | 1 for this node's health (`healthy`, `degraded`, `unhealthy`, as on `/health/ready`), 0 for the others |
//! | `catga_cluster_leader_changes_total` | counter | leader changes seen since the routes started |
//! | `catga_cluster_leaderless_seconds_total` | counter (unit `seconds`) | time without a known leader since the routes started |
//! | `catga_cluster_forwards_total{outcome}` | counter | requests passed on to the leader, by outcome: `ok`, `failed` (unreachable or broken connection), `timeout` (no answer in time, outcome unknown), `no_leader` (none known) |
//! | `catga_cluster_hop_limit_rejects_total` | counter | requests refused with `hop-limit` |
//! | `catga_cluster_lock_grants_total` | counter | locks granted through the lock routes |
//! | `catga_cluster_lock_waits_total` | counter | lock acquires that found the lock held and waited |
//! | `catga_cluster_lock_refusals_total` | counter | lock acquires refused with `lock-held`: the lock stayed held for the whole wait |
//! | `catga_cluster_raft_last_log_index` | gauge | the last Raft log index (with a backend that reports it, such as the Raft routes) |
//! | `catga_cluster_raft_last_applied_index` | gauge | the last applied Raft log index (likewise) |
//! | `catga_cluster_raft_apply_lag` | gauge | log entries this node has not applied yet |
//! | `catga_cluster_failovers_total{path}` | counter | fail-overs that elected this node, by the path that elected it: `fast` (the previous leader's process died and the survivors elected at once), `timer` (the election timers, after a whole leader lease without word from the leader), `handover` (the previous leader handed over) |
//! | `catga_cluster_failover_seconds_total{path}` | counter (unit `seconds`) | how long those fail-overs took in all, by path (`fast`, `timer`, `handover`), on this node's clock: from the moment the previous leader's watch broke, from its last word, or from the hand-over request, until this node led; divided by the count above, the mean |
//!
//! Every family is present from the first scrape: labelled families carry
//! all their label values (counters at 0), so a rate or an alert never sees
//! a series appear from nothing. The two index gauges are the exception
//! when the backend does not report the log (a test double, another
//! consensus); `ClusterRoutes::raft` does.
//! Names follow the Prometheus conventions: counters end in `_total`, and a
//! value with a unit carries it as a suffix and, in OpenMetrics, a `# UNIT`
//! line.
//!
//! Register your own metrics with [`ClusterMetrics::register`]; they are
//! served on the same route.
//!
//! ```
//! use catga_cluster_axum::ClusterRoutes;
//! use catga_cluster_core::testing::ManualCoordinator;
//! use prometheus_client::metrics::counter::Counter;
//!
//! let routes = ClusterRoutes::new(ManualCoordinator::new_leader());
//! let orders: Counter = Counter::default();
//! routes.metrics().register("orders_created", "Orders created", orders.clone());
//! orders.inc();
//! let text = routes.metrics().encode_prometheus();
//! assert!(text.contains("orders_created_total 1"));
//! assert!(text.contains("catga_cluster_is_leader 1"));
//! ```

use std::fmt;
use std::sync::{Arc, Mutex, Weak};

use axum::response::Response;
use catga_cluster_core::protocol::SERVED_BY_HEADER;
use catga_cluster_core::{FailoverPath, NodeId, Role};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Metric, Registry, Unit};

use crate::health::{ClusterView, HealthStatus};
use crate::problem::{response_slug, slug};

/// The content type of the Prometheus text format.
pub const PROMETHEUS_CONTENT_TYPE: &str =
    prometheus_client::encoding::prometheus_text::CONTENT_TYPE;
/// The content type of OpenMetrics text.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

type Outcome = [(&'static str, &'static str); 1];

/// How a forward to the leader ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ForwardOutcome {
    /// The leader answered.
    Ok,
    /// The leader could not be reached or broke the connection.
    Failed,
    /// The leader did not answer in time.
    Timeout,
    /// No leader was known.
    NoLeader,
}

impl ForwardOutcome {
    /// Every outcome, for the labels present from the start.
    const ALL: [ForwardOutcome; 4] = [
        ForwardOutcome::Ok,
        ForwardOutcome::Failed,
        ForwardOutcome::Timeout,
        ForwardOutcome::NoLeader,
    ];

    fn label(self) -> Outcome {
        [(
            "outcome",
            match self {
                ForwardOutcome::Ok => "ok",
                ForwardOutcome::Failed => "failed",
                ForwardOutcome::Timeout => "timeout",
                ForwardOutcome::NoLeader => "no_leader",
            },
        )]
    }
}

/// The metrics registry of the cluster routes; cheap to clone (shared).
#[derive(Clone)]
pub struct ClusterMetrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Mutex<Registry>,
    forwards: Family<Outcome, Counter>,
    hop_limit_rejects: Counter,
    lock_grants: Counter,
    lock_waits: Counter,
    lock_refusals: Counter,
}

impl fmt::Debug for ClusterMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterMetrics").finish_non_exhaustive()
    }
}

impl Default for ClusterMetrics {
    fn default() -> Self {
        ClusterMetrics::new()
    }
}

impl ClusterMetrics {
    /// A registry with the cluster's counters and no leadership gauges.
    pub fn new() -> Self {
        let forwards = Family::<Outcome, Counter>::default();
        // Every outcome from the start, at 0.
        for outcome in ForwardOutcome::ALL {
            drop(forwards.get_or_create(&outcome.label()));
        }
        let hop_limit_rejects = Counter::default();
        let lock_grants = Counter::default();
        let lock_waits = Counter::default();
        let lock_refusals = Counter::default();
        let mut registry = Registry::default();
        registry.register(
            "catga_cluster_forwards",
            "Requests passed on to the leader, by outcome: ok, failed (unreachable or broken connection), timeout (no answer in time), no_leader (none known)",
            forwards.clone(),
        );
        registry.register(
            "catga_cluster_hop_limit_rejects",
            "Requests refused with hop-limit because they were already forwarded as often as allowed",
            hop_limit_rejects.clone(),
        );
        registry.register(
            "catga_cluster_lock_grants",
            "Locks granted through the lock routes",
            lock_grants.clone(),
        );
        registry.register(
            "catga_cluster_lock_waits",
            "Lock acquires that found the lock held and waited",
            lock_waits.clone(),
        );
        registry.register(
            "catga_cluster_lock_refusals",
            "Lock acquires refused with lock-held because the lock stayed held for the whole wait",
            lock_refusals.clone(),
        );
        ClusterMetrics {
            inner: Arc::new(Inner {
                registry: Mutex::new(registry),
                forwards,
                hop_limit_rejects,
                lock_grants,
                lock_waits,
                lock_refusals,
            }),
        }
    }

    /// Adds the leadership gauges computed from `view` at every scrape.
    pub(crate) fn with_view(self, view: &Arc<ClusterView>) -> Self {
        self.registry()
            .register_collector(Box::new(LeadershipCollector {
                view: Arc::downgrade(view),
            }));
        self
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.inner
            .registry
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a metric of yours, served on `/metrics` with the
    /// cluster's. Counter names must not end in `_total` (the encoder adds
    /// it).
    pub fn register(&self, name: &str, help: &str, metric: impl Metric) {
        self.registry().register(name, help, metric);
    }

    /// Registers a metric of yours that has a unit: the encoder appends it
    /// to `name` (`request` with [`Unit::Seconds`] is served as
    /// `request_seconds`, `request_seconds_total` for a counter) and
    /// OpenMetrics carries a `# UNIT` line.
    pub fn register_with_unit(&self, name: &str, help: &str, unit: Unit, metric: impl Metric) {
        self.registry().register_with_unit(name, help, unit, metric);
    }

    /// Counts a forward to the leader.
    pub fn record_forward(&self, outcome: ForwardOutcome) {
        self.inner.forwards.get_or_create(&outcome.label()).inc();
    }

    /// Counts a `hop-limit` refusal.
    pub fn record_hop_limit(&self) {
        self.inner.hop_limit_rejects.inc();
    }

    /// Counts a granted lock.
    pub fn record_lock_grant(&self) {
        self.inner.lock_grants.inc();
    }

    /// Counts an acquire that found the lock held and waited.
    pub fn record_lock_wait(&self) {
        self.inner.lock_waits.inc();
    }

    /// Counts an acquire refused with `lock-held`: the lock stayed held for
    /// the whole wait.
    pub fn record_lock_refusal(&self) {
        self.inner.lock_refusals.inc();
    }

    /// Counts what a response says about forwarding (see
    /// [`EdgeLayer`](crate::edge::EdgeLayer)).
    pub(crate) fn observe_response(&self, response: &Response, local: NodeId) {
        match response_slug(response).as_deref() {
            Some(slug::FORWARD_FAILED) => self.record_forward(ForwardOutcome::Failed),
            Some(slug::FORWARD_TIMEOUT) => self.record_forward(ForwardOutcome::Timeout),
            Some(slug::HOP_LIMIT) => self.record_hop_limit(),
            _ => {
                let served_by = response
                    .headers()
                    .get(SERVED_BY_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok());
                if served_by.is_some_and(|id| id != local.get()) {
                    self.record_forward(ForwardOutcome::Ok);
                }
            }
        }
    }

    /// The metrics in the Prometheus text format 0.0.4.
    pub fn encode_prometheus(&self) -> String {
        let mut out = String::new();
        if let Err(e) =
            prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry())
        {
            tracing::warn!(target: "catga_cluster::axum::metrics", error = %e, "cannot encode metrics");
        }
        out
    }

    /// The metrics as OpenMetrics text.
    pub fn encode_openmetrics(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry()) {
            tracing::warn!(target: "catga_cluster::axum::metrics", error = %e, "cannot encode metrics");
        }
        out
    }
}

/// The gauges read from the cluster view at scrape time.
struct LeadershipCollector {
    view: Weak<ClusterView>,
}

impl fmt::Debug for LeadershipCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LeadershipCollector")
            .finish_non_exhaustive()
    }
}

fn gauge<N: prometheus_client::encoding::EncodeGaugeValue>(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    value: N,
) -> fmt::Result {
    let metric = ConstGauge::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

/// A counter; with a unit, the encoder appends it to `name`.
fn counter<N: prometheus_client::encoding::EncodeCounterValue>(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    value: N,
) -> fmt::Result {
    let metric = ConstCounter::new(value);
    metric.encode(encoder.encode_descriptor(name, help, unit, metric.metric_type())?)
}

/// A gauge family with one series per label value: 1 for `current`, 0 for
/// the others.
fn one_hot(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    label: &'static str,
    values: &[&'static str],
    current: &str,
) -> fmt::Result {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for value in values {
        let labels = [(label, *value)];
        family
            .encode_family(&labels)?
            .encode_gauge(&i64::from(*value == current))?;
    }
    Ok(())
}

impl Collector for LeadershipCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let Some(view) = self.view.upgrade() else {
            return Ok(());
        };
        let report = view.report();
        let snapshot = view.coord.leadership();
        let facts = view.facts();

        let roles = [
            Role::Leader,
            Role::Follower,
            Role::Candidate,
            Role::Learner,
            Role::Shutdown,
        ]
        .map(Role::as_str);
        one_hot(
            &mut encoder,
            "catga_cluster_role",
            "This node's Raft role: 1 for the current one, 0 for the others.",
            "role",
            &roles,
            snapshot.role.as_str(),
        )?;
        gauge(
            &mut encoder,
            "catga_cluster_is_leader",
            "1 while this node leads under a valid lease, else 0.",
            i64::from(report.is_leader),
        )?;
        gauge(
            &mut encoder,
            "catga_cluster_term",
            "The current Raft term.",
            snapshot.term,
        )?;
        let statuses = [
            HealthStatus::Healthy,
            HealthStatus::Degraded,
            HealthStatus::Unhealthy,
        ]
        .map(HealthStatus::as_str);
        one_hot(
            &mut encoder,
            "catga_cluster_health_status",
            "This node's health as on /health/ready: 1 for the current status, 0 for the others.",
            "status",
            &statuses,
            report.status.as_str(),
        )?;
        counter(
            &mut encoder,
            "catga_cluster_leader_changes",
            "Leader changes seen since the routes started.",
            None,
            view.tracker.total_changes(),
        )?;
        counter(
            &mut encoder,
            "catga_cluster_leaderless",
            "Time without a known leader since the routes started.",
            Some(&Unit::Seconds),
            view.tracker.leaderless().as_secs_f64(),
        )?;
        if let Some(index) = facts.last_log_index {
            gauge(
                &mut encoder,
                "catga_cluster_raft_last_log_index",
                "The last Raft log index.",
                index,
            )?;
        }
        if let Some(index) = facts.last_applied {
            gauge(
                &mut encoder,
                "catga_cluster_raft_last_applied_index",
                "The last applied Raft log index.",
                index,
            )?;
        }
        gauge(
            &mut encoder,
            "catga_cluster_raft_apply_lag",
            "Log entries this node has not applied yet.",
            facts.apply_lag,
        )?;
        let counts = &facts.failovers;
        let mut family = encoder.encode_descriptor(
            "catga_cluster_failovers",
            "Fail-overs that elected this node, by the path that elected it: fast, timer or handover.",
            None,
            MetricType::Counter,
        )?;
        for path in FailoverPath::ALL {
            family
                .encode_family(&[("path", path.as_str())])?
                .encode_counter::<Vec<(String, String)>, _, u64>(&counts.count(path), None)?;
        }
        let seconds = Unit::Seconds;
        let mut family = encoder.encode_descriptor(
            "catga_cluster_failover",
            "How long the fail-overs that elected this node took in all, by path, on this node's clock.",
            Some(&seconds),
            MetricType::Counter,
        )?;
        for path in FailoverPath::ALL {
            family
                .encode_family(&[("path", path.as_str())])?
                .encode_counter::<Vec<(String, String)>, _, u64>(
                    &counts.total(path).as_secs_f64(),
                    None,
                )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
