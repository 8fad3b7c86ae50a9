//! `catga-bench`: catga-cluster next to etcd (and nginx as a forwarding
//! proxy) in one run, each as separate processes on loopback, driven over
//! their HTTP APIs by a load generator on tokio + hyper.
//!
//! The figures alternate system by system (load levels, fail-over rounds)
//! so that drift on the machine hits both. `bench/run.sh` installs etcd and
//! nginx, builds the release binaries and runs the full profile; `--profile
//! quick` runs every section for a moment, as a smoke test.
//!
//! See `docs/benchmarks.md` for the method and the latest figures.

#![allow(clippy::print_stdout)]

mod faults;
mod http;
mod load;
mod nginx;
mod procstat;
mod report;
mod systems;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use serde::Serialize;
use serde_json::json;

use crate::faults::{Drain, Fault};
use crate::load::{Latency, LoadResult, MemorySampler, Work};
use crate::nginx::Nginx;
use crate::report::{Better, Table, Target};
use crate::systems::{Cluster, Kind};

/// How much to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Profile {
    /// Every section for a moment: a smoke test of the tool (seconds).
    Quick,
    /// The published figures: 10 s per load level, 30 rounds per fault.
    Full,
}

/// The parts of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
enum Section {
    /// A write through a follower vs straight to the leader vs nginx.
    Forwarding,
    /// Key-value puts at each client count, spread and on the leader.
    Puts,
    /// Lock acquire+release cycles, each client on its own lock.
    Locks,
    /// 16 clients contending for one lock.
    Contended,
    /// Leadership transfer → first write at the new leader.
    Transfer,
    /// SIGTERM of the leader under spread write load.
    Sigterm,
    /// SIGKILL of the leader → a write at a survivor is accepted.
    Crash,
    /// SIGSTOP of the leader (timer path) → a write at a survivor.
    Pause,
}

/// catga-cluster next to etcd and nginx, in one run.
#[derive(Debug, Parser)]
#[command(name = "catga-bench", version)]
struct Args {
    /// How much to run.
    #[arg(long, value_enum, default_value = "full")]
    profile: Profile,
    /// Seconds per load level (default: 10 full, 0.3 quick).
    #[arg(long)]
    seconds: Option<f64>,
    /// Rounds per fail-over kind and for transfers (default: 30 full, 1
    /// quick); SIGTERM rounds are a sixth of it, at least 1.
    #[arg(long)]
    rounds: Option<usize>,
    /// Client counts of the put and lock loads.
    #[arg(long, value_delimiter = ',', default_values_t = [1, 16, 64])]
    clients: Vec<usize>,
    /// Run only these sections (default: all).
    #[arg(long, value_enum, value_delimiter = ',')]
    sections: Vec<Section>,
    /// The example application's binary (default: `order-system` next to
    /// this binary).
    #[arg(long)]
    order_system: Option<PathBuf>,
    /// etcd's server binary.
    #[arg(long, default_value = "etcd")]
    etcd: PathBuf,
    /// nginx's binary.
    #[arg(long, default_value = "/usr/sbin/nginx")]
    nginx: PathBuf,
    /// Where to write the JSON report.
    #[arg(long, default_value = "target/bench/results.json")]
    json: PathBuf,
    /// Where the members keep their data and logs (default: a temporary
    /// directory, removed at the end).
    #[arg(long)]
    dir: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("catga-bench: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("catga-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The settings of a run, after the profile's defaults.
#[derive(Debug, Serialize)]
struct Plan {
    profile: &'static str,
    seconds_per_level: f64,
    rounds: usize,
    sigterm_rounds: usize,
    clients: Vec<usize>,
    sections: Vec<Section>,
}

/// Everything measured, for the JSON report.
#[derive(Debug, Default, Serialize)]
struct Details {
    loads: Vec<serde_json::Value>,
    failovers: BTreeMap<String, serde_json::Value>,
    memory_mib: BTreeMap<String, serde_json::Value>,
    generator_cores_max: f64,
}

async fn run(args: Args) -> Result<(), String> {
    let quick = args.profile == Profile::Quick;
    let seconds = args.seconds.unwrap_or(if quick { 0.3 } else { 10.0 });
    let rounds = args.rounds.unwrap_or(if quick { 1 } else { 30 });
    let mut sections = args.sections.clone();
    if sections.is_empty() {
        sections = Section::value_variants().to_vec();
    }
    sections.sort();
    let plan = Plan {
        profile: if quick { "quick" } else { "full" },
        seconds_per_level: seconds,
        rounds,
        sigterm_rounds: (rounds / 6).max(1),
        clients: args.clients.clone(),
        sections: sections.clone(),
    };
    let level = Duration::from_secs_f64(seconds);
    let order_system = match &args.order_system {
        Some(path) => path.clone(),
        None => std::env::current_exe()
            .map_err(|e| format!("where is this binary: {e}"))?
            .with_file_name("order-system"),
    };
    if !order_system.exists() {
        return Err(format!(
            "{} does not exist: build it (cargo build --release -p order-system) or pass --order-system",
            order_system.display()
        ));
    }
    let temp;
    let dir = match &args.dir {
        Some(dir) => dir.clone(),
        None => {
            temp = tempfile::tempdir().map_err(|e| format!("temporary directory: {e}"))?;
            temp.path().to_owned()
        }
    };
    let versions = json!({
        "etcd": version_of(&args.etcd, "--version"),
        "nginx": version_of(&args.nginx, "-v"),
    });
    eprintln!("catga-bench: {plan:?}");
    eprintln!(
        "catga-bench: starting 3 catga-cluster members and 3 etcd members under {}",
        dir.display()
    );
    let mut us = Cluster::start(Kind::Catga, &order_system, &dir).await?;
    let mut etcd = Cluster::start(Kind::Etcd, &args.etcd, &dir)
        .await
        .map_err(|e| format!("{e} (is etcd installed? bench/run.sh installs it)"))?;
    let mut table = Table::default();
    let mut details = Details::default();

    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle_us = mean_rss_mib(&us.pids());
    let idle_etcd = mean_rss_mib(&etcd.pids());
    let sampler = MemorySampler::start(us.pids().into_iter().chain(etcd.pids()).collect());

    let run_id = format!("r{}", std::process::id());
    let mut turn = 0usize;

    if sections.contains(&Section::Forwarding) {
        let nginx = Nginx::start(&args.nginx, &dir, us.port(us.settle(SETTLE).await?)).await?;
        forwarding(&us, &nginx, level, &run_id, &mut table, &mut details).await?;
    }
    for (section, work, name) in [
        (Section::Puts, Work::Put, "puts"),
        (Section::Locks, Work::OwnLock, "lock cycles"),
    ] {
        if !sections.contains(&section) {
            continue;
        }
        for &clients in &args.clients {
            for spread in [true, false] {
                let placement = if spread { "spread" } else { "on the leader" };
                turn += 1;
                let (ours, theirs) = alternate(turn, &us, &etcd, |cluster| {
                    let run_id = format!("{run_id}-{turn}");
                    async move {
                        let targets = targets(cluster, spread).await?;
                        Ok(load::run(cluster, &[], &targets, work, clients, level, &run_id).await)
                    }
                })
                .await?;
                record_load(&mut details, name, placement, &ours, &theirs);
                let big = clients >= 64;
                let label = format!("{name}, {clients} clients, {placement}");
                table.add(
                    section_name(section),
                    format!("{label}: throughput"),
                    "ops/s",
                    Better::Higher,
                    ours.per_second,
                    "etcd",
                    Some(theirs.per_second),
                    if big {
                        &[Target::RatioAtLeast(3.0)]
                    } else {
                        &[]
                    },
                );
                let p50_target: &[Target] = if clients == 1 && work == Work::Put {
                    &[Target::RatioAtMost(1.0)]
                } else {
                    &[]
                };
                table.add(
                    section_name(section),
                    format!("{label}: p50"),
                    "ms",
                    Better::Lower,
                    ours.latency.p50_ms,
                    "etcd",
                    Some(theirs.latency.p50_ms),
                    p50_target,
                );
                table.add(
                    section_name(section),
                    format!("{label}: p99"),
                    "ms",
                    Better::Lower,
                    ours.latency.p99_ms,
                    "etcd",
                    Some(theirs.latency.p99_ms),
                    if big {
                        &[Target::RatioAtMost(1.0)]
                    } else {
                        &[]
                    },
                );
                if big {
                    table.add(
                        section_name(section),
                        format!("{label}: server CPU per op"),
                        "ms",
                        Better::Lower,
                        ours.server_cpu_ms_per_op,
                        "etcd",
                        Some(theirs.server_cpu_ms_per_op),
                        &[],
                    );
                }
                details.generator_cores_max = details
                    .generator_cores_max
                    .max(ours.generator_cores)
                    .max(theirs.generator_cores);
            }
        }
    }
    if sections.contains(&Section::Contended) {
        for spread in [true, false] {
            let placement = if spread { "spread" } else { "on the leader" };
            turn += 1;
            let (ours, theirs) = alternate(turn, &us, &etcd, |cluster| {
                let run_id = format!("{run_id}-{turn}");
                async move {
                    let targets = targets(cluster, spread).await?;
                    Ok(
                        load::run(cluster, &[], &targets, Work::SharedLock, 16, level, &run_id)
                            .await,
                    )
                }
            })
            .await?;
            record_load(&mut details, "contended lock", placement, &ours, &theirs);
            let label = format!("one lock, 16 clients, {placement}");
            let s = section_name(Section::Contended);
            table.add(
                s,
                format!("{label}: cycles"),
                "ops/s",
                Better::Higher,
                ours.per_second,
                "etcd",
                Some(theirs.per_second),
                &[Target::RatioAtLeast(1.0)],
            );
            table.add(
                s,
                format!("{label}: p99"),
                "ms",
                Better::Lower,
                ours.latency.p99_ms,
                "etcd",
                Some(theirs.latency.p99_ms),
                &[Target::RatioAtMost(1.0)],
            );
            table.add(
                s,
                format!("{label}: fairness (fewest ÷ most grants)"),
                "",
                Better::Higher,
                ours.fairness,
                "etcd",
                Some(theirs.fairness),
                &[Target::AtLeast(0.8)],
            );
        }
    }

    let peaks = sampler.finish();
    let peak = |pids: &[u32]| {
        pids.iter()
            .filter_map(|p| peaks.get(p))
            .map(|b| *b as f64 / MIB)
            .fold(0.0, f64::max)
    };
    let (peak_us, peak_etcd) = (peak(&us.pids()), peak(&etcd.pids()));
    let m = "memory";
    table.add(
        m,
        "resident per member, fresh and idle",
        "MiB",
        Better::Lower,
        idle_us,
        "etcd",
        Some(idle_etcd),
        &[Target::RatioAtMost(0.5)],
    );
    let loads_ran = sections.iter().any(|s| {
        matches!(
            s,
            Section::Forwarding | Section::Puts | Section::Locks | Section::Contended
        )
    });
    let (mut after_us, mut after_etcd) = (idle_us, idle_etcd);
    if loads_ran {
        tokio::time::sleep(Duration::from_secs(2)).await;
        after_us = mean_rss_mib(&us.pids());
        after_etcd = mean_rss_mib(&etcd.pids());
        table.add(
            m,
            "resident per member, peak under the loads above",
            "MiB",
            Better::Lower,
            peak_us,
            "etcd",
            Some(peak_etcd),
            &[Target::RatioAtMost(0.5)],
        );
        table.add(
            m,
            "resident per member, idle after the loads",
            "MiB",
            Better::Lower,
            after_us,
            "etcd",
            Some(after_etcd),
            &[],
        );
    }
    details
        .memory_mib
        .insert("fresh".into(), json!({"ours": idle_us, "etcd": idle_etcd}));
    details
        .memory_mib
        .insert("peak".into(), json!({"ours": peak_us, "etcd": peak_etcd}));
    details.memory_mib.insert(
        "after".into(),
        json!({"ours": after_us, "etcd": after_etcd}),
    );

    if sections.contains(&Section::Transfer) {
        let (ours, theirs) = rounds_of(rounds, &mut us, &mut etcd, |c| {
            Box::pin(async move { faults::transfer(c).await })
        })
        .await;
        let (o, t) = (Latency::of(&ours.0), Latency::of(&theirs.0));
        let s = section_name(Section::Transfer);
        table.add(
            s,
            "transfer → first write at the new leader: p50",
            "ms",
            Better::Lower,
            o.p50_ms,
            "etcd",
            Some(t.p50_ms),
            &[Target::RatioAtMost(1.0)],
        );
        table.add(
            s,
            "transfer → first write at the new leader: p99",
            "ms",
            Better::Lower,
            o.p99_ms,
            "etcd",
            Some(t.p99_ms),
            &[],
        );
        details
            .failovers
            .insert("transfer".into(), rounds_json(&ours, &theirs));
    }
    if sections.contains(&Section::Sigterm) {
        let mut drains: [Vec<Drain>; 2] = [Vec::new(), Vec::new()];
        let mut errors: [Vec<String>; 2] = [Vec::new(), Vec::new()];
        for round in 0..plan.sigterm_rounds {
            for k in order(round) {
                let cluster = if k == 0 { &mut us } else { &mut etcd };
                match faults::sigterm_under_load(cluster, 16).await {
                    Ok(drain) => drains[k].push(drain),
                    Err(e) => errors[k].push(e),
                }
            }
        }
        let sum = |d: &[Drain], f: fn(&Drain) -> f64| d.iter().map(f).sum::<f64>();
        let max = |d: &[Drain], f: fn(&Drain) -> f64| d.iter().map(f).fold(0.0, f64::max);
        let s = section_name(Section::Sigterm);
        table.add(
            s,
            format!(
                "SIGTERM of the leader, 16 writers spread, {} rounds: failed requests",
                drains[0].len()
            ),
            "requests",
            Better::Lower,
            sum(&drains[0], |d| d.failed as f64),
            "etcd",
            Some(sum(&drains[1], |d| d.failed as f64)),
            &[Target::AtMost(0.0)],
        );
        table.add(
            s,
            "SIGTERM: longest gap between acknowledgements (worst round)",
            "ms",
            Better::Lower,
            max(&drains[0], |d| d.longest_gap_ms),
            "etcd",
            Some(max(&drains[1], |d| d.longest_gap_ms)),
            &[Target::RatioAtMost(1.0)],
        );
        table.add(
            s,
            "SIGTERM: until the process exited (worst round)",
            "ms",
            Better::Lower,
            max(&drains[0], |d| d.exit_ms),
            "etcd",
            Some(max(&drains[1], |d| d.exit_ms)),
            &[Target::AtMost(1000.0)],
        );
        details.failovers.insert(
            "sigterm".into(),
            json!({
                "ours": drains[0], "etcd": drains[1],
                "ours_errors": errors[0], "etcd_errors": errors[1],
            }),
        );
    }
    for (section, fault, name) in [
        (Section::Crash, Fault::Kill, "crash (SIGKILL)"),
        (Section::Pause, Fault::Stop, "pause (SIGSTOP, timer path)"),
    ] {
        if !sections.contains(&section) {
            continue;
        }
        let (ours, theirs) = rounds_of(rounds, &mut us, &mut etcd, move |c| {
            Box::pin(async move { faults::fail_over(c, fault).await })
        })
        .await;
        let (o, t) = (Latency::of(&ours.0), Latency::of(&theirs.0));
        let s = section_name(section);
        let label = format!(
            "{name} of the leader → write accepted at a survivor, {} rounds",
            ours.0.len()
        );
        let p50_targets: &[Target] = if fault == Fault::Kill {
            &[Target::AtMost(50.0), Target::RatioAtMost(0.3)]
        } else {
            &[]
        };
        let p99_targets: &[Target] = if fault == Fault::Kill {
            &[Target::AtMost(150.0)]
        } else {
            &[]
        };
        table.add(
            s,
            format!("{label}: p50"),
            "ms",
            Better::Lower,
            o.p50_ms,
            "etcd",
            Some(t.p50_ms),
            p50_targets,
        );
        table.add(
            s,
            format!("{label}: p99"),
            "ms",
            Better::Lower,
            o.p99_ms,
            "etcd",
            Some(t.p99_ms),
            p99_targets,
        );
        details
            .failovers
            .insert(section_name(section).into(), rounds_json(&ours, &theirs));
    }
    if details.generator_cores_max > 0.0 {
        table.add(
            "generator",
            "load generator CPU, busiest level",
            "cores",
            Better::Lower,
            details.generator_cores_max,
            "etcd",
            None,
            &[],
        );
    }

    us.stop().await;
    etcd.stop().await;

    let markdown = table.markdown();
    println!("{markdown}");
    let report = json!({
        "plan": plan,
        "machine": machine(),
        "versions": versions,
        "rows": table.rows,
        "details": details,
    });
    if let Some(parent) = args.json.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    }
    let text = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
    std::fs::write(&args.json, text).map_err(|e| format!("{}: {e}", args.json.display()))?;
    eprintln!("catga-bench: wrote {}", args.json.display());
    Ok(())
}

const SETTLE: Duration = Duration::from_secs(30);
const MIB: f64 = 1024.0 * 1024.0;

fn section_name(section: Section) -> &'static str {
    match section {
        Section::Forwarding => "forwarding",
        Section::Puts => "puts",
        Section::Locks => "locks",
        Section::Contended => "contended lock",
        Section::Transfer => "hand-over",
        Section::Sigterm => "hand-over",
        Section::Crash => "crash fail-over",
        Section::Pause => "paused leader",
    }
}

/// Which system goes first in round `n`: 0 is us, 1 is etcd.
fn order(n: usize) -> [usize; 2] {
    if n.is_multiple_of(2) {
        [0, 1]
    } else {
        [1, 0]
    }
}

/// Runs `f` on both clusters, the first one by [`order`], and returns
/// (ours, etcd's).
async fn alternate<'a, F, Fut, T>(
    turn: usize,
    us: &'a Cluster,
    etcd: &'a Cluster,
    f: F,
) -> Result<(T, T), String>
where
    F: Fn(&'a Cluster) -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let mut results: [Option<T>; 2] = [None, None];
    for k in order(turn) {
        let cluster = if k == 0 { us } else { etcd };
        eprintln!("catga-bench: turn {turn}: {}", cluster.kind);
        results[k] = Some(f(cluster).await?);
    }
    let [ours, theirs] = results;
    Ok((ours.ok_or("not run")?, theirs.ok_or("not run")?))
}

type RoundFuture<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Duration, String>> + 'a>>;

/// Measured durations and failed rounds of one system.
type Rounds = (Vec<Duration>, Vec<String>);

/// `rounds` rounds of `f` on both clusters, alternating which goes first.
async fn rounds_of<F>(rounds: usize, us: &mut Cluster, etcd: &mut Cluster, f: F) -> (Rounds, Rounds)
where
    F: for<'a> Fn(&'a mut Cluster) -> RoundFuture<'a>,
{
    let mut results: [Rounds; 2] = [(Vec::new(), Vec::new()), (Vec::new(), Vec::new())];
    for round in 0..rounds {
        for k in order(round) {
            let cluster = if k == 0 { &mut *us } else { &mut *etcd };
            match f(cluster).await {
                Ok(took) => results[k].0.push(took),
                Err(e) => {
                    eprintln!("catga-bench: round {round}: {e}");
                    results[k].1.push(e);
                }
            }
        }
    }
    let [ours, theirs] = results;
    (ours, theirs)
}

fn rounds_json(ours: &Rounds, theirs: &Rounds) -> serde_json::Value {
    let ms = |d: &[Duration]| {
        d.iter()
            .map(|d| d.as_secs_f64() * 1000.0)
            .collect::<Vec<_>>()
    };
    json!({
        "ours_ms": ms(&ours.0), "ours_failed_rounds": ours.1,
        "etcd_ms": ms(&theirs.0), "etcd_failed_rounds": theirs.1,
    })
}

/// The authorities a load goes to: every member, or the leader only.
async fn targets(cluster: &Cluster, spread: bool) -> Result<Vec<String>, String> {
    if spread {
        Ok(cluster.members().map(|i| cluster.authority(i)).collect())
    } else {
        Ok(vec![cluster.authority(cluster.settle(SETTLE).await?)])
    }
}

fn record_load(
    details: &mut Details,
    name: &str,
    placement: &str,
    ours: &LoadResult,
    theirs: &LoadResult,
) {
    details.loads.push(json!({
        "load": name, "placement": placement, "ours": ours, "etcd": theirs,
    }));
}

/// A write through a follower (which forwards it) vs straight to the leader
/// vs through nginx to the leader, at 1 and 16 clients.
async fn forwarding(
    us: &Cluster,
    nginx: &Nginx,
    level: Duration,
    run_id: &str,
    table: &mut Table,
    details: &mut Details,
) -> Result<(), String> {
    let leader = us.settle(SETTLE).await?;
    let follower = (leader + 1) % us.members().len();
    let s = section_name(Section::Forwarding);
    for (turn, clients) in [1usize, 16].into_iter().enumerate() {
        let paths = [
            ("leader", vec![us.authority(leader)], Vec::new()),
            ("follower", vec![us.authority(follower)], Vec::new()),
            ("nginx", vec![nginx.authority()], nginx.pids()),
        ];
        let mut results = BTreeMap::new();
        let mut sequence: Vec<usize> = vec![0, 1, 2];
        if !turn.is_multiple_of(2) {
            sequence.reverse();
        }
        for k in sequence {
            let (name, targets, extra) = &paths[k];
            eprintln!("catga-bench: forwarding, {clients} clients, via {name}");
            let run_id = format!("{run_id}-fwd{clients}-{name}");
            let result = load::run(us, extra, targets, Work::Put, clients, level, &run_id).await;
            results.insert(*name, result);
        }
        let (direct, follower, proxy) =
            (&results["leader"], &results["follower"], &results["nginx"]);
        let label = format!(
            "put, {clients} client{}",
            if clients == 1 { "" } else { "s" }
        );
        table.add(
            s,
            format!("{label}: added p50, follower hop vs nginx hop"),
            "ms",
            Better::Lower,
            follower.latency.p50_ms - direct.latency.p50_ms,
            "nginx",
            Some(proxy.latency.p50_ms - direct.latency.p50_ms),
            &[Target::RatioAtMost(1.0)],
        );
        table.add(
            s,
            format!("{label}: p99 via follower vs via nginx"),
            "ms",
            Better::Lower,
            follower.latency.p99_ms,
            "nginx",
            Some(proxy.latency.p99_ms),
            &[],
        );
        table.add(
            s,
            format!("{label}: throughput via follower vs via nginx"),
            "ops/s",
            Better::Higher,
            follower.per_second,
            "nginx",
            Some(proxy.per_second),
            &[],
        );
        table.add(
            s,
            format!("{label}: throughput straight to the leader (reference)"),
            "ops/s",
            Better::Higher,
            direct.per_second,
            "nginx",
            None,
            &[],
        );
        // The CPU the hop adds per request, over all processes involved
        // (the 3 members, and nginx's master and worker): steadier than
        // the latency difference, which is a fraction of the fsync.
        table.add(
            s,
            format!("{label}: CPU per request added, follower hop vs nginx hop"),
            "ms",
            Better::Lower,
            follower.server_cpu_ms_per_op - direct.server_cpu_ms_per_op,
            "nginx",
            Some(proxy.server_cpu_ms_per_op - direct.server_cpu_ms_per_op),
            &[],
        );
        details.loads.push(json!({
            "load": "forwarding", "clients": clients,
            "leader": direct, "follower": follower, "nginx": proxy,
        }));
    }
    Ok(())
}

fn mean_rss_mib(pids: &[u32]) -> f64 {
    let values: Vec<f64> = pids
        .iter()
        .filter_map(|p| procstat::resident_bytes(*p))
        .map(|b| b as f64 / MIB)
        .collect();
    if values.is_empty() {
        0.0
    } else {
        values.iter().sum::<f64>() / values.len() as f64
    }
}

fn version_of(program: &Path, flag: &str) -> String {
    std::process::Command::new(program)
        .arg(flag)
        .output()
        .map(|o| {
            let text = [o.stdout, o.stderr].concat();
            String::from_utf8_lossy(&text)
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_owned()
        })
        .unwrap_or_else(|e| format!("unknown ({e})"))
}

fn machine() -> serde_json::Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .unwrap_or("unknown")
        .trim()
        .to_owned();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    json!({
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpu_model": model,
        "kernel": kernel.trim(),
        "memory_kib": std::fs::read_to_string("/proc/meminfo").ok()
            .and_then(|m| m.lines().next().and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse::<u64>().ok())),
    })
}
