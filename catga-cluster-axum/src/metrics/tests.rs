//! The exposition of `/metrics`, checked by a parser of both text formats
//! (Prometheus 0.0.4 and OpenMetrics 1.0) and, where it is installed, by
//! `promtool check metrics`; and the documented families against a fresh
//! registry.

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Stdio};

use catga_cluster_core::testing::ManualCoordinator;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Unit;

use super::ForwardOutcome;
use crate::health::ProbeFacts;
use crate::ClusterRoutes;

// ---------------------------------------------------------------------------
// A checker of the text formats
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    /// Prometheus text format 0.0.4.
    Prometheus,
    /// OpenMetrics text 1.0.
    OpenMetrics,
}

#[derive(Debug, Default)]
struct Family {
    name: String,
    help: Option<String>,
    kind: Option<String>,
    unit: Option<String>,
    samples: Vec<Sample>,
}

#[derive(Debug)]
struct Sample {
    name: String,
    labels: Labels,
    value: f64,
}

/// Base units (OpenMetrics and the Prometheus naming conventions); a name
/// ending in one of them must declare it.
const BASE_UNITS: [&str; 9] = [
    "seconds", "bytes", "meters", "grams", "joules", "volts", "amperes", "celsius", "ratio",
];

fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with("__")
}

fn parse_value(text: &str) -> Result<f64, String> {
    match text {
        "+Inf" | "Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => text
            .parse::<f64>()
            .map_err(|_| format!("`{text}` is not a sample value")),
    }
}

/// A sample's labels, in order.
type Labels = Vec<(String, String)>;

/// `{a="x",b="y"}` at the start of `text`; the labels and the rest.
fn parse_labels(text: &str) -> Result<(Labels, &str), String> {
    let Some(mut rest) = text.strip_prefix('{') else {
        return Ok((Vec::new(), text));
    };
    let mut labels = Vec::new();
    loop {
        if let Some(after) = rest.strip_prefix('}') {
            return Ok((labels, after));
        }
        let (name, after) = rest
            .split_once("=\"")
            .ok_or_else(|| format!("a label without `=\"` in `{text}`"))?;
        if !is_label_name(name) {
            return Err(format!("`{name}` is not a label name"));
        }
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, 'n')) => value.push('\n'),
                    other => return Err(format!("bad escape {other:?} in `{text}`")),
                },
                Some((i, '"')) => break i,
                Some((_, '\n')) | None => return Err(format!("unterminated label in `{text}`")),
                Some((_, c)) => value.push(c),
            }
        };
        if labels.iter().any(|(n, _)| n == name) {
            return Err(format!("label `{name}` twice in `{text}`"));
        }
        labels.push((name.to_owned(), value));
        rest = &after[end + 1..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
}

/// The sample names a family of `kind` may have.
fn sample_names(format: Format, family: &str, kind: &str) -> Vec<String> {
    let with = |suffixes: &[&str]| {
        suffixes
            .iter()
            .map(|s| format!("{family}{s}"))
            .collect::<Vec<_>>()
    };
    match (format, kind) {
        (Format::Prometheus, "histogram") => with(&["_bucket", "_sum", "_count"]),
        (Format::Prometheus, "summary") => with(&["", "_sum", "_count"]),
        (Format::Prometheus, _) => with(&[""]),
        (Format::OpenMetrics, "counter") => with(&["_total", "_created"]),
        (Format::OpenMetrics, "histogram") => with(&["_bucket", "_sum", "_count", "_created"]),
        (Format::OpenMetrics, "summary") => with(&["", "_sum", "_count", "_created"]),
        (Format::OpenMetrics, "info") => with(&["_info"]),
        (Format::OpenMetrics, _) => with(&[""]),
    }
}

/// Parses an exposition and checks it against its format and the naming
/// conventions; the families in order, or every problem found.
fn check(text: &str, format: Format) -> Result<Vec<Family>, Vec<String>> {
    let mut problems = Vec::new();
    let mut families: Vec<Family> = Vec::new();
    let mut body = text;
    if !text.ends_with('\n') {
        problems.push("the exposition does not end with a newline".to_owned());
    }
    if format == Format::OpenMetrics {
        match text.strip_suffix("# EOF\n") {
            Some(before) => body = before,
            None => problems.push("OpenMetrics does not end with `# EOF`".to_owned()),
        }
    }
    for line in body.lines() {
        if line.is_empty() {
            if format == Format::OpenMetrics {
                problems.push("an empty line in OpenMetrics".to_owned());
            }
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            let mut parts = comment.trim_start().splitn(3, ' ');
            let keyword = parts.next().unwrap_or_default();
            let (Some(name), rest) = (parts.next(), parts.next()) else {
                if format == Format::OpenMetrics {
                    problems.push(format!("a bare comment in OpenMetrics: `{line}`"));
                }
                continue;
            };
            if !matches!(keyword, "HELP" | "TYPE" | "UNIT") {
                if format == Format::OpenMetrics {
                    problems.push(format!("an unknown comment in OpenMetrics: `{line}`"));
                }
                continue;
            }
            if keyword == "UNIT" && format == Format::Prometheus {
                problems.push(format!("`# UNIT` in the Prometheus text format: `{line}`"));
            }
            if families.last().is_none_or(|f| f.name != name) {
                if families.iter().any(|f| f.name == name) {
                    problems.push(format!("family `{name}` is split or given twice"));
                }
                if !is_metric_name(name) {
                    problems.push(format!("`{name}` is not a metric name"));
                }
                families.push(Family {
                    name: name.to_owned(),
                    ..Family::default()
                });
            }
            let Some(family) = families.last_mut() else {
                continue;
            };
            if format == Format::OpenMetrics && !family.samples.is_empty() {
                problems.push(format!("`{line}` comes after the samples of `{name}`"));
            }
            let slot = match keyword {
                "HELP" => &mut family.help,
                "TYPE" => &mut family.kind,
                _ => &mut family.unit,
            };
            if slot.replace(rest.unwrap_or_default().to_owned()).is_some() {
                problems.push(format!("`# {keyword} {name}` given twice"));
            }
            continue;
        }
        let name_end = line.find(['{', ' ']).unwrap_or(line.len());
        let (name, rest) = line.split_at(name_end);
        let (labels, rest) = match parse_labels(rest) {
            Ok(parsed) => parsed,
            Err(problem) => {
                problems.push(problem);
                continue;
            }
        };
        let mut fields = rest.split_whitespace();
        let value = match fields.next().map(parse_value) {
            Some(Ok(value)) => value,
            Some(Err(problem)) => {
                problems.push(format!("{problem} in `{line}`"));
                continue;
            }
            None => {
                problems.push(format!("a sample without a value: `{line}`"));
                continue;
            }
        };
        let Some(family) = families.last_mut() else {
            problems.push(format!("`{line}` comes before any `# TYPE`"));
            continue;
        };
        let kind = family.kind.clone().unwrap_or_else(|| "unknown".to_owned());
        if !sample_names(format, &family.name, &kind)
            .iter()
            .any(|n| n == name)
        {
            problems.push(format!(
                "sample `{name}` does not belong to the {kind} family `{}` it follows",
                family.name
            ));
        }
        family.samples.push(Sample {
            name: name.to_owned(),
            labels,
            value,
        });
    }

    let kinds: &[&str] = match format {
        Format::Prometheus => &["counter", "gauge", "histogram", "summary", "untyped"],
        Format::OpenMetrics => &[
            "counter",
            "gauge",
            "histogram",
            "gaugehistogram",
            "stateset",
            "info",
            "summary",
            "unknown",
        ],
    };
    for family in &families {
        let name = &family.name;
        if family.help.as_deref().is_none_or(str::is_empty) {
            problems.push(format!("`{name}` has no HELP text"));
        }
        let kind = family.kind.as_deref().unwrap_or_default();
        if !kinds.contains(&kind) {
            problems.push(format!("`{name}` has no valid TYPE (`{kind}`)"));
        }
        if family.samples.is_empty() {
            problems.push(format!("`{name}` has no sample"));
        }
        let base = match (format, kind) {
            (Format::Prometheus, "counter") => match name.strip_suffix("_total") {
                Some(base) => base,
                None => {
                    problems.push(format!("counter `{name}` does not end in `_total`"));
                    name
                }
            },
            (Format::OpenMetrics, "counter") if name.ends_with("_total") => {
                problems.push(format!(
                    "OpenMetrics counter family `{name}` must not end in `_total` (its samples do)"
                ));
                name
            }
            (_, "counter") => name,
            _ => {
                if name.ends_with("_total") {
                    problems.push(format!(
                        "{kind} `{name}` ends in `_total`, kept for counters"
                    ));
                }
                name
            }
        };
        if let Some(unit) = &family.unit {
            if unit.is_empty() || !base.ends_with(&format!("_{unit}")) {
                problems.push(format!(
                    "`{name}` declares unit `{unit}` but its name does not end in `_{unit}`"
                ));
            }
        }
        if format == Format::OpenMetrics {
            if let Some(unit) = BASE_UNITS.iter().find(|u| base.ends_with(&format!("_{u}"))) {
                if family.unit.as_deref() != Some(unit) {
                    problems.push(format!(
                        "`{name}` ends in `_{unit}` but has no `# UNIT {name} {unit}`"
                    ));
                }
            }
        }
        let mut series = BTreeSet::new();
        for sample in &family.samples {
            let mut labels = sample.labels.clone();
            labels.sort();
            if !series.insert((sample.name.clone(), labels)) {
                problems.push(format!(
                    "series `{}` {:?} given twice",
                    sample.name, sample.labels
                ));
            }
            if kind == "counter" && (sample.value.is_nan() || sample.value < 0.0) {
                problems.push(format!(
                    "counter `{}` has the value {}",
                    sample.name, sample.value
                ));
            }
        }
    }
    if problems.is_empty() {
        Ok(families)
    } else {
        Err(problems)
    }
}

fn check_ok(text: &str, format: Format) -> Vec<Family> {
    check(text, format).unwrap_or_else(|problems| {
        panic!(
            "{format:?} exposition is invalid:\n  {}\n{text}",
            problems.join("\n  ")
        )
    })
}

// ---------------------------------------------------------------------------
// The cluster's exposition
// ---------------------------------------------------------------------------

/// Routes as a fresh node has them: nothing recorded yet, a backend that
/// reports its log.
fn fresh_routes() -> ClusterRoutes {
    ClusterRoutes::new(ManualCoordinator::new_follower())
        .health_probe(|| ProbeFacts::running().log(0, 0))
}

/// Routes that recorded some of everything, with user metrics.
fn busy_routes() -> ClusterRoutes {
    let routes = ClusterRoutes::new(ManualCoordinator::new_leader())
        .health_probe(|| ProbeFacts::running().log(12, 10).apply_lag(2));
    let metrics = routes.metrics();
    for outcome in ForwardOutcome::ALL {
        metrics.record_forward(outcome);
    }
    metrics.record_hop_limit();
    metrics.record_lock_grant();
    metrics.record_lock_wait();
    metrics.record_lock_refusal();
    let orders: Counter = Counter::default();
    orders.inc_by(3);
    metrics.register("orders_created", "Orders created", orders);
    let backlog: Gauge = Gauge::default();
    backlog.set(4);
    metrics.register_with_unit(
        "outbox_oldest_pending_age",
        "Age of the oldest order the outbox has not processed",
        Unit::Seconds,
        backlog,
    );
    routes
}

fn by_name(families: Vec<Family>) -> BTreeMap<String, Family> {
    families.into_iter().map(|f| (f.name.clone(), f)).collect()
}

#[test]
fn both_formats_are_valid_fresh_and_after_use() {
    for routes in [fresh_routes(), busy_routes()] {
        let metrics = routes.metrics();
        let prometheus = by_name(check_ok(&metrics.encode_prometheus(), Format::Prometheus));
        let openmetrics = by_name(check_ok(&metrics.encode_openmetrics(), Format::OpenMetrics));
        // One family set in both formats (a Prometheus counter family
        // carries `_total`, an OpenMetrics one does not).
        let from_openmetrics: BTreeSet<String> = openmetrics
            .values()
            .map(|f| match f.kind.as_deref() {
                Some("counter") => format!("{}_total", f.name),
                _ => f.name.clone(),
            })
            .collect();
        let from_prometheus: BTreeSet<String> = prometheus.keys().cloned().collect();
        assert_eq!(from_prometheus, from_openmetrics);
    }
}

#[test]
fn units_are_declared_and_end_the_name() {
    let routes = busy_routes();
    let metrics = routes.metrics();
    let openmetrics = by_name(check_ok(&metrics.encode_openmetrics(), Format::OpenMetrics));
    let units: BTreeMap<&str, &str> = openmetrics
        .values()
        .filter_map(|f| Some((f.name.as_str(), f.unit.as_deref()?)))
        .collect();
    assert_eq!(
        units,
        BTreeMap::from([
            ("catga_cluster_failover_seconds", "seconds"),
            ("catga_cluster_leaderless_seconds", "seconds"),
            ("outbox_oldest_pending_age_seconds", "seconds"),
        ])
    );
    let text = metrics.encode_openmetrics();
    assert!(
        text.contains("# UNIT catga_cluster_leaderless_seconds seconds\n"),
        "{text}"
    );
    assert!(
        text.contains("\ncatga_cluster_leaderless_seconds_total "),
        "{text}"
    );
    let prometheus = by_name(check_ok(&metrics.encode_prometheus(), Format::Prometheus));
    assert!(prometheus.contains_key("catga_cluster_leaderless_seconds_total"));
}

#[test]
fn labelled_families_carry_every_label_value_from_the_start() {
    let text = fresh_routes().metrics().encode_prometheus();
    for line in [
        "catga_cluster_forwards_total{outcome=\"ok\"} 0",
        "catga_cluster_forwards_total{outcome=\"failed\"} 0",
        "catga_cluster_forwards_total{outcome=\"timeout\"} 0",
        "catga_cluster_forwards_total{outcome=\"no_leader\"} 0",
        "catga_cluster_failovers_total{path=\"fast\"} 0",
        "catga_cluster_failovers_total{path=\"timer\"} 0",
        "catga_cluster_failovers_total{path=\"handover\"} 0",
        "catga_cluster_failover_seconds_total{path=\"fast\"} 0.0",
        "catga_cluster_role{role=\"follower\"} 1",
        "catga_cluster_role{role=\"leader\"} 0",
        "catga_cluster_health_status{status=\"unhealthy\"} 1",
        "catga_cluster_health_status{status=\"healthy\"} 0",
        "catga_cluster_health_status{status=\"degraded\"} 0",
        "catga_cluster_lock_refusals_total 0",
    ] {
        assert!(
            text.contains(&format!("{line}\n")),
            "{line} missing from\n{text}"
        );
    }
}

#[test]
fn lock_refusals_count_refusals() {
    let routes = fresh_routes();
    routes.metrics().record_lock_refusal();
    let text = routes.metrics().encode_prometheus();
    assert!(
        text.contains("catga_cluster_lock_refusals_total 1\n"),
        "{text}"
    );
    assert!(!text.contains("lock_held"), "{text}");
}

/// The metric names a document lists: backticked `catga_cluster_…` names
/// with the label values written as `{label=a|b}`.
fn documented(doc: &str) -> BTreeMap<String, Vec<(String, String)>> {
    let mut names = BTreeMap::new();
    for piece in doc.split('`').skip(1).step_by(2) {
        let Some(rest) = piece.strip_prefix("catga_cluster_") else {
            continue;
        };
        let name_len = rest
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(rest.len());
        let name = format!("catga_cluster_{}", &rest[..name_len]);
        let mut labels = Vec::new();
        if let Some(spec) = rest[name_len..]
            .strip_prefix('{')
            .and_then(|s| s.strip_suffix('}'))
        {
            if let Some((label, values)) = spec.split_once('=') {
                for value in values.split('|') {
                    labels.push((label.to_owned(), value.to_owned()));
                }
            }
        }
        names.insert(name, labels);
    }
    names
}

#[test]
fn every_documented_family_is_present_from_the_start_and_every_family_documented() {
    // docs/http.md: the table of the Metrics section; a labelled family's
    // label values are the backticked words of its meaning column.
    let http_md = include_str!("../../../docs/http.md");
    let section = http_md
        .split("## Metrics")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("docs/http.md has a Metrics section");
    let rows: Vec<&str> = section
        .lines()
        .filter(|l| l.starts_with("| `catga_cluster_"))
        .collect();
    assert!(
        !rows.is_empty(),
        "docs/http.md lists the metrics in a table"
    );
    let mut in_http_md = BTreeMap::new();
    for row in rows {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let (first, meaning) = (cells[1], cells[3]);
        let mut family = documented(first);
        let (name, labels) = family.pop_first().expect("a metric name");
        let label = first
            .split_once('{')
            .and_then(|(_, rest)| rest.split_once('}'))
            .map(|(label, _)| label.to_owned());
        let mut labels = labels;
        if let Some(label) = label {
            for value in meaning.split('`').skip(1).step_by(2) {
                if value
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                {
                    labels.push((label.clone(), value.to_owned()));
                }
            }
        }
        in_http_md.insert(name, labels);
    }
    // The module docs: the first column of the table.
    let table: String = include_str!("../metrics.rs")
        .lines()
        .filter_map(|l| l.strip_prefix("//! | `"))
        .filter_map(|l| l.split('`').next())
        .map(|name| format!("`{name}`"))
        .collect();
    let in_module_doc = documented(&table);
    assert_eq!(
        in_http_md.keys().collect::<Vec<_>>(),
        in_module_doc.keys().collect::<Vec<_>>(),
        "docs/http.md and the metrics module list different metrics"
    );

    let families = by_name(check_ok(
        &fresh_routes().metrics().encode_prometheus(),
        Format::Prometheus,
    ));
    let exposed: BTreeSet<&String> = families
        .keys()
        .filter(|name| name.starts_with("catga_cluster_"))
        .collect();
    assert_eq!(
        in_http_md.keys().collect::<BTreeSet<_>>(),
        exposed,
        "documented (left) and exposed (right) families differ"
    );
    for (name, labels) in &in_http_md {
        let family = &families[name];
        for label in labels {
            assert!(
                family.samples.iter().any(|s| s.labels.contains(label)),
                "{name} has no series {label:?} on a fresh registry"
            );
        }
    }
}

/// `promtool` from `PATH`, if any.
fn promtool() -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("promtool"))
        .find(|candidate| candidate.is_file())
}

/// `promtool check metrics` (Prometheus's own linter) accepts the
/// exposition. Runs where promtool is installed (Debian: the `prometheus`
/// package); `CATGA_CLUSTER_REQUIRE_PROMTOOL=1` makes its absence a
/// failure, for CI that installs it.
#[test]
fn promtool_check_metrics_accepts_the_exposition() {
    let Some(promtool) = promtool() else {
        assert!(
            std::env::var_os("CATGA_CLUSTER_REQUIRE_PROMTOOL").is_none(),
            "CATGA_CLUSTER_REQUIRE_PROMTOOL is set but promtool is not on PATH"
        );
        eprintln!("promtool is not on PATH: skipped (the parser checks still ran)");
        return;
    };
    for routes in [fresh_routes(), busy_routes()] {
        let text = routes.metrics().encode_prometheus();
        let mut child = Command::new(&promtool)
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("promtool runs");
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().expect("piped stdin");
            stdin.write_all(text.as_bytes()).expect("promtool reads");
        }
        let output = child.wait_with_output().expect("promtool finishes");
        let report = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            output.status.success() && report.trim().is_empty(),
            "promtool check metrics: {:?}\n{report}\n{text}",
            output.status
        );
    }
}

// ---------------------------------------------------------------------------
// The checker catches what it is for
// ---------------------------------------------------------------------------

fn problems(text: &str, format: Format) -> String {
    match check(text, format) {
        Ok(families) => panic!("accepted: {families:?}\n{text}"),
        Err(problems) => problems.join("\n"),
    }
}

#[test]
fn the_checker_refuses_broken_expositions() {
    let cases = [
        (
            Format::Prometheus,
            "# HELP a_total A.\n# TYPE a_total counter\na_total 1\n# TYPE b gauge\nb 1\n",
            "`b` has no HELP text",
        ),
        (
            Format::Prometheus,
            "# HELP a A.\n# TYPE a counter\na 1\n",
            "counter `a` does not end in `_total`",
        ),
        (
            Format::Prometheus,
            "# HELP a_total A.\n# TYPE a_total gauge\na_total 1\n",
            "ends in `_total`, kept for counters",
        ),
        (
            Format::OpenMetrics,
            "# HELP a A.\n# TYPE a counter\na_total 1\n",
            "does not end with `# EOF`",
        ),
        (
            Format::OpenMetrics,
            "# HELP a_seconds A.\n# TYPE a_seconds gauge\na_seconds 1\n# EOF\n",
            "no `# UNIT a_seconds seconds`",
        ),
        (
            Format::OpenMetrics,
            "# HELP a A.\n# TYPE a gauge\n# UNIT a seconds\na 1\n# EOF\n",
            "declares unit `seconds` but its name does not end in `_seconds`",
        ),
        (
            Format::Prometheus,
            "# HELP a A.\n# TYPE a gauge\na{x=\"1\"} 1\n# HELP b B.\n# TYPE b gauge\nb 1\n# HELP a A.\n",
            "family `a` is split",
        ),
        (
            Format::Prometheus,
            "# HELP a A.\n# TYPE a gauge\nb 1\n",
            "sample `b` does not belong",
        ),
        (
            Format::Prometheus,
            "# HELP a A.\n# TYPE a gauge\na{x=\"1\"} 1\na{x=\"1\"} 2\n",
            "given twice",
        ),
        (
            Format::Prometheus,
            "# HELP a_total A.\n# TYPE a_total counter\na_total -1\n",
            "has the value -1",
        ),
        (
            Format::Prometheus,
            "# HELP a A.\n# TYPE a gauge\na{x=\"\\q\"} 1\n",
            "bad escape",
        ),
        (
            Format::Prometheus,
            "# HELP a A.\n# TYPE a gauge\n",
            "`a` has no sample",
        ),
    ];
    for (format, text, expected) in cases {
        let found = problems(text, format);
        assert!(
            found.contains(expected),
            "{expected:?} not in:\n{found}\nfor\n{text}"
        );
    }
    // And accepts what the formats allow.
    check_ok(
        "# HELP a_seconds A.\n# TYPE a_seconds gauge\n# UNIT a_seconds seconds\na_seconds{l=\"x\\\"y\"} 1.5\n# EOF\n",
        Format::OpenMetrics,
    );
}
