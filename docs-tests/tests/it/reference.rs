//! The documented shapes and lists against the code.

use std::collections::BTreeSet;

use catga_cluster_axum::ClusterRoutes;
use catga_cluster_axum::health::ProbeFacts;
use catga_cluster_core::testing::ManualCoordinator;
use serde_json::{Map, Value};

use crate::markdown::{code, json_blocks, quoted, read, section, table};

/// Where each document describes a route's bodies.
const STATUS: [(&str, &str); 2] = [
    ("README.md", "### `GET /cluster/status`"),
    ("docs/http.md", "## Status"),
];
const HEALTH: [(&str, &str); 2] = [("README.md", "### Health"), ("docs/http.md", "## Health")];
const METRICS: [(&str, &str); 2] = [("README.md", "### Metrics"), ("docs/http.md", "## Metrics")];

fn components() -> Map<String, Value> {
    let routes = ClusterRoutes::new(ManualCoordinator::new_leader());
    let doc = routes.openapi();
    doc["components"]["schemas"].as_object().unwrap().clone()
}

fn resolve<'a>(schema: &'a Value, components: &'a Map<String, Value>) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(reference) => {
            let name = reference.strip_prefix("#/components/schemas/").unwrap();
            &components[name]
        }
        None => schema,
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_u64() || n.is_i64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Whether `value` has the shape `schema` describes: its types, enums, and
/// objects with exactly the schema's properties (answers write them all).
fn conforms(
    value: &Value,
    schema: &Value,
    components: &Map<String, Value>,
    at: &str,
) -> Result<(), String> {
    let schema = resolve(schema, components);
    if let Some(any) = schema.get("anyOf").and_then(Value::as_array) {
        return any
            .iter()
            .find_map(|s| conforms(value, s, components, at).ok())
            .ok_or_else(|| format!("{at}: {value} matches none of {schema}"));
    }
    if let Some(types) = schema.get("type") {
        let allowed: Vec<&str> = match types {
            Value::Array(t) => t.iter().filter_map(Value::as_str).collect(),
            t => vec![t.as_str().unwrap()],
        };
        if !allowed.contains(&type_name(value)) {
            return Err(format!("{at}: {value} is not {allowed:?}"));
        }
    }
    if let Some(values) = schema.get("enum").and_then(Value::as_array)
        && !values.contains(value)
    {
        return Err(format!("{at}: {value} is not one of {values:?}"));
    }
    if let (Value::Object(fields), Some(properties)) = (value, schema.get("properties")) {
        let properties = properties.as_object().unwrap();
        let documented: BTreeSet<&String> = fields.keys().collect();
        let served: BTreeSet<&String> = properties.keys().collect();
        if documented != served {
            return Err(format!("{at}: fields {documented:?}, served {served:?}"));
        }
        for (name, field) in fields {
            conforms(
                field,
                &properties[name],
                components,
                &format!("{at}.{name}"),
            )?;
        }
    }
    if let (Value::Array(items), Some(item)) = (value, schema.get("items")) {
        for (i, element) in items.iter().enumerate() {
            conforms(element, item, components, &format!("{at}[{i}]"))?;
        }
    }
    Ok(())
}

fn property_names(schema: &Value) -> BTreeSet<String> {
    schema["properties"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect()
}

#[test]
fn status_documents_and_fields_are_the_served_ones() {
    let components = components();
    let schema = &components["Status"];
    for (file, heading) in STATUS {
        let section = section(&read(file), heading);
        let examples = json_blocks(&section);
        assert_eq!(examples.len(), 1, "{file}: one example status document");
        if let Err(e) = conforms(&examples[0], schema, &components, "status") {
            panic!("{file}: {e}");
        }
        let fields: BTreeSet<String> = table(&section, "field")
            .iter()
            .map(|row| code(&row[0]).to_owned())
            .collect();
        assert_eq!(fields, property_names(schema), "{file}: the field table");
    }
}

#[test]
fn health_bodies_and_reasons_are_the_served_ones() {
    let components = components();
    let readiness = &components["Readiness"];
    let reasons: BTreeSet<String> = readiness["properties"]["reason"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r.as_str().map(str::to_owned))
        .collect();
    for (file, heading) in HEALTH {
        let section = section(&read(file), heading);
        for example in json_blocks(&section) {
            if let Err(e) = conforms(&example, readiness, &components, "ready") {
                panic!("{file}: {e}");
            }
        }
        let documented: BTreeSet<String> = table(&section, "`reason`")
            .iter()
            .map(|row| code(&row[0]).to_owned())
            .collect();
        assert_eq!(documented, reasons, "{file}: the reasons");
        for row in table(&section, "route") {
            let name = match code(&row[0]) {
                "GET /health/live" => "Liveness",
                "GET /health/ready" => "Readiness",
                "GET /health/leader" => "LeaderCheck",
                other => panic!("{file}: unknown route {other}"),
            };
            let body: BTreeSet<String> = quoted(&row[2]).into_iter().map(str::to_owned).collect();
            assert_eq!(
                body,
                property_names(&components[name]),
                "{file}: {}",
                row[0]
            );
        }
    }
}

#[test]
fn metrics_tables_list_every_metric_served() {
    let routes = ClusterRoutes::new(ManualCoordinator::new_leader())
        // A backend that reports its log, as the Raft routes do.
        .health_probe(|| ProbeFacts::running().log(5, 5));
    let scrape = routes.metrics().encode_prometheus();
    let served: BTreeSet<String> = scrape
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .map(str::to_owned)
        .collect();
    for (file, heading) in METRICS {
        let section = section(&read(file), heading);
        let mut documented = BTreeSet::new();
        for row in table(&section, "metric") {
            let metric = code(&row[0]);
            let (name, label) = match metric.split_once('{') {
                Some((name, label)) => (name, Some(label.trim_end_matches('}'))),
                None => (metric, None),
            };
            if let Some(label) = label {
                let sample = format!("{name}{{{label}=\"");
                assert!(
                    scrape.contains(&sample),
                    "{file}: {metric} has no label {label}"
                );
            }
            documented.insert(name.to_owned());
        }
        assert_eq!(documented, served, "{file}: the metrics table");
    }
}
