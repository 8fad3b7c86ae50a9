//! Closed-loop load: N clients, each with its own keep-alive connection,
//! each sending its next request as soon as the previous one is answered.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::join_all;
use serde::Serialize;
use tokio::time::Instant;

use crate::http::client;
use crate::procstat;
use crate::systems::Cluster;

/// What each client does in a loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Work {
    /// Put a new key (128-byte value).
    Put,
    /// Acquire and release a lock of its own.
    OwnLock,
    /// Acquire and release the one lock all clients share.
    SharedLock,
}

/// Latency percentiles, in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub(crate) struct Latency {
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) max_ms: f64,
}

impl Latency {
    /// The percentiles of `micros` (sorted in place).
    pub(crate) fn of_micros(micros: &mut [u32]) -> Latency {
        if micros.is_empty() {
            return Latency::default();
        }
        micros.sort_unstable();
        let at = |q: f64| {
            let i = ((micros.len() as f64 * q).ceil() as usize).clamp(1, micros.len()) - 1;
            f64::from(micros[i]) / 1000.0
        };
        Latency {
            p50_ms: at(0.50),
            p99_ms: at(0.99),
            max_ms: at(1.0),
        }
    }

    /// The percentiles of a few durations (rounds of a fail-over).
    pub(crate) fn of(durations: &[Duration]) -> Latency {
        let mut micros: Vec<u32> = durations
            .iter()
            .map(|d| u32::try_from(d.as_micros()).unwrap_or(u32::MAX))
            .collect();
        Latency::of_micros(&mut micros)
    }
}

/// What one load level measured.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct LoadResult {
    pub(crate) clients: usize,
    pub(crate) ops: u64,
    pub(crate) errors: u64,
    pub(crate) first_error: Option<String>,
    pub(crate) seconds: f64,
    pub(crate) per_second: f64,
    pub(crate) latency: Latency,
    /// Fewest ÷ most operations completed by one client.
    pub(crate) fairness: f64,
    /// CPU time of the cluster's processes per operation, in milliseconds.
    pub(crate) server_cpu_ms_per_op: f64,
    /// Cores the cluster's processes kept busy on average.
    pub(crate) server_cores: f64,
    /// Cores the load generator itself kept busy on average.
    pub(crate) generator_cores: f64,
}

/// Runs `clients` clients doing `work` for `duration` (after a warm-up of
/// a tenth of it, not counted); client `c` talks to `targets[c % len]`.
/// The CPU figures count the cluster's processes and `extra_pids` (a proxy).
pub(crate) async fn run(
    cluster: &Cluster,
    extra_pids: &[u32],
    targets: &[String],
    work: Work,
    clients: usize,
    duration: Duration,
    run_id: &str,
) -> LoadResult {
    let warm_up = duration / 10;
    let start = Instant::now() + warm_up;
    let stop = start + duration;
    let value = Bytes::from(vec![b'v'; 128]);
    let mut pids = cluster.pids();
    pids.extend_from_slice(extra_pids);
    let cpu = Arc::new(Mutex::new(None));

    let client_loops = (0..clients).map(|c| {
        let authority = targets[c % targets.len()].clone();
        let value = value.clone();
        let pids = pids.clone();
        let cpu = Arc::clone(&cpu);
        async move {
            let http = client(1);
            let owner = format!("{run_id}-c{c}");
            let lock_name = match work {
                Work::SharedLock => format!("{run_id}-shared"),
                _ => format!("{run_id}-own{c}"),
            };
            let session = match work {
                Work::Put => None,
                _ => match cluster.session(&http, &authority, &owner).await {
                    Ok(session) => Some(session),
                    Err(e) => return (0, 1, Some(e), Vec::new()),
                },
            };
            let mut latencies = Vec::with_capacity(4096);
            let (mut ops, mut errors, mut first_error) = (0u64, 0u64, None);
            let mut seq = 0u64;
            let mut measuring = false;
            loop {
                let begun = Instant::now();
                if begun >= stop {
                    break;
                }
                if !measuring && begun >= start {
                    measuring = true;
                    let mut cpu = cpu.lock().unwrap_or_else(|e| e.into_inner());
                    if cpu.is_none() {
                        *cpu = Some((
                            procstat::cpu_time_of(&pids),
                            procstat::cpu_time(None).unwrap_or_default(),
                        ));
                    }
                }
                seq += 1;
                let result = match (&work, &session) {
                    (Work::Put, _) => cluster
                        .put(
                            &http,
                            &authority,
                            &format!("{owner}-{seq}"),
                            &value,
                            Duration::from_secs(10),
                        )
                        .await
                        .ok()
                        .map(drop),
                    (_, Some(session)) => {
                        cluster
                            .lock_cycle(&http, &authority, &lock_name, session)
                            .await
                    }
                    (_, None) => Err("no session".into()),
                };
                if !measuring {
                    continue;
                }
                match result {
                    Ok(()) => {
                        ops += 1;
                        let micros = begun.elapsed().as_micros();
                        latencies.push(u32::try_from(micros).unwrap_or(u32::MAX));
                    }
                    Err(e) => {
                        errors += 1;
                        first_error.get_or_insert(e);
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                }
            }
            (ops, errors, first_error, latencies)
        }
    });
    let results = join_all(client_loops).await;
    let ended = Instant::now();
    let server_cpu_end = procstat::cpu_time_of(&pids);
    let generator_cpu_end = procstat::cpu_time(None).unwrap_or_default();

    let seconds = ended
        .saturating_duration_since(start)
        .as_secs_f64()
        .max(1e-9);
    let mut latencies = Vec::new();
    let (mut ops, mut errors, mut first_error) = (0, 0, None);
    let mut per_client = Vec::with_capacity(clients);
    for (o, e, f, l) in results {
        ops += o;
        errors += e;
        if first_error.is_none() {
            first_error = f;
        }
        per_client.push(o);
        latencies.extend(l);
    }
    let (server_cpu, generator_cpu) = cpu
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .map(|(s, g)| {
            (
                server_cpu_end.saturating_sub(s),
                generator_cpu_end.saturating_sub(g),
            )
        })
        .unwrap_or_default();
    let most = per_client.iter().copied().max().unwrap_or(0);
    let fewest = per_client.iter().copied().min().unwrap_or(0);
    LoadResult {
        clients,
        ops,
        errors,
        first_error,
        seconds,
        per_second: ops as f64 / seconds,
        latency: Latency::of_micros(&mut latencies),
        fairness: if most == 0 {
            0.0
        } else {
            fewest as f64 / most as f64
        },
        server_cpu_ms_per_op: if ops == 0 {
            0.0
        } else {
            server_cpu.as_secs_f64() * 1000.0 / ops as f64
        },
        server_cores: server_cpu.as_secs_f64() / seconds,
        generator_cores: generator_cpu.as_secs_f64() / seconds,
    }
}

/// Samples the resident memory of processes every 100 ms and keeps each
/// one's peak.
#[derive(Debug)]
pub(crate) struct MemorySampler {
    peaks: Arc<Mutex<HashMap<u32, u64>>>,
    task: tokio::task::JoinHandle<()>,
}

impl MemorySampler {
    /// Starts sampling `pids`.
    pub(crate) fn start(pids: Vec<u32>) -> MemorySampler {
        let peaks = Arc::new(Mutex::new(HashMap::new()));
        let task = tokio::spawn({
            let peaks = Arc::clone(&peaks);
            async move {
                loop {
                    for pid in &pids {
                        if let Some(rss) = procstat::resident_bytes(*pid) {
                            let mut peaks = peaks.lock().unwrap_or_else(|e| e.into_inner());
                            let peak = peaks.entry(*pid).or_insert(0);
                            *peak = (*peak).max(rss);
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        });
        MemorySampler { peaks, task }
    }

    /// Stops sampling and returns the peak of each process.
    pub(crate) fn finish(self) -> HashMap<u32, u64> {
        self.task.abort();
        let peaks = self.peaks.lock().unwrap_or_else(|e| e.into_inner());
        peaks.clone()
    }
}
