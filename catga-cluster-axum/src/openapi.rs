//! The OpenAPI 3.1 document of the cluster routes.
//!
//! A [`RouteDoc`] describes one route for the document only — method,
//! path, operation, body, answers, headers, and whether it is protected or
//! forwarded; [`document`] turns a list of them into the document. The
//! route table pairs each handler with its description, so what is served
//! and what is documented come from one place. The body and answer schemas
//! are derived from the wire types (see `api`) into `components/schemas`.

use std::collections::BTreeMap;
use std::time::Duration;

use catga_cluster_core::NodeInfo;
use http::Method;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde_json::{json, Map, Value};

use crate::api::{self, AcquireRequest, ProblemDoc};

/// No control characters (what `char::is_control` refuses in lock names).
const NO_CONTROL_CHARACTERS: &str = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$";

/// The longest key, in characters (the state machine's limit).
const MAX_KEY_CHARS: usize = 1024;

/// Writes the schema of a wire type into a generator's definitions and
/// answers a `$ref` to it.
pub(crate) type SchemaFn = fn(&mut SchemaGenerator) -> Schema;

fn schema_of<T: JsonSchema>(generator: &mut SchemaGenerator) -> Schema {
    generator.subschema_for::<T>()
}

/// What a route expects in its request body.
#[derive(Debug, Clone, Copy)]
#[cfg_attr(not(feature = "raft"), allow(dead_code))]
pub(crate) enum BodyDoc {
    None,
    Json(SchemaFn),
    OptionalJson(SchemaFn),
    AnyJson,
    Octets,
}

#[cfg_attr(not(feature = "raft"), allow(dead_code))]
impl BodyDoc {
    /// A JSON body of type `T`.
    pub(crate) fn json<T: JsonSchema>() -> Self {
        BodyDoc::Json(schema_of::<T>)
    }

    /// A JSON body of type `T`, or none at all.
    pub(crate) fn optional_json<T: JsonSchema>() -> Self {
        BodyDoc::OptionalJson(schema_of::<T>)
    }
}

/// What an answer carries.
#[derive(Debug, Clone, Copy)]
#[cfg_attr(not(feature = "raft"), allow(dead_code))]
pub(crate) enum ContentDoc {
    Json(SchemaFn),
    AnyJson,
    Problem,
    Octets,
    Metrics,
    /// Server-Sent Events whose `data` are JSON of type `T`.
    EventStream(SchemaFn),
    /// JSON, or on request Server-Sent Events (two schemas).
    JsonOrEvents(SchemaFn, SchemaFn),
}

impl ContentDoc {
    /// A JSON answer of type `T`.
    pub(crate) fn json<T: JsonSchema>() -> Self {
        ContentDoc::Json(schema_of::<T>)
    }

    /// JSON of type `J`, or Server-Sent Events whose `data` are JSON of
    /// type `E`.
    pub(crate) fn json_or_events<J: JsonSchema, E: JsonSchema>() -> Self {
        ContentDoc::JsonOrEvents(schema_of::<J>, schema_of::<E>)
    }

    /// Server-Sent Events whose `data` are JSON of type `T`.
    pub(crate) fn events<T: JsonSchema>() -> Self {
        ContentDoc::EventStream(schema_of::<T>)
    }
}

/// One documented answer of a route.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ResponseDoc {
    pub(crate) status: u16,
    pub(crate) description: &'static str,
    pub(crate) content: ContentDoc,
    pub(crate) headers: &'static [&'static str],
}

/// An answer without documented headers.
pub(crate) const fn resp(
    status: u16,
    description: &'static str,
    content: ContentDoc,
) -> ResponseDoc {
    ResponseDoc {
        status,
        description,
        content,
        headers: &[],
    }
}

/// One route, as the document describes it.
#[derive(Debug, Clone)]
pub(crate) struct RouteDoc {
    pub(crate) method: Method,
    /// The axum path (`{*rest}` for a catch-all).
    pub(crate) path: std::borrow::Cow<'static, str>,
    pub(crate) operation_id: std::borrow::Cow<'static, str>,
    pub(crate) summary: &'static str,
    pub(crate) tag: &'static str,
    /// Needs the cluster secret (or a loopback peer).
    pub(crate) protected: bool,
    /// Runs on the leader; other nodes forward it there.
    pub(crate) forwarded: bool,
    pub(crate) body: BodyDoc,
    /// Header name and description.
    pub(crate) request_headers: &'static [(&'static str, &'static str)],
    pub(crate) responses: Vec<ResponseDoc>,
}

/// The schemas the document refers to: request bodies as serde reads them,
/// answers as serde writes them.
struct Schemas {
    requests: SchemaGenerator,
    responses: SchemaGenerator,
}

impl Schemas {
    fn new() -> Self {
        Schemas {
            requests: api::request_schemas(),
            responses: api::response_schemas(),
        }
    }

    /// Every named schema, for `components/schemas`.
    fn into_components(mut self) -> Map<String, Value> {
        let mut all = self.responses.take_definitions(true);
        for (name, schema) in self.requests.take_definitions(true) {
            let previous = all.insert(name, schema);
            debug_assert!(
                previous.is_none(),
                "a type is both a request body and an answer"
            );
        }
        all
    }
}

fn content(doc: ContentDoc, schemas: &mut Schemas) -> Value {
    match doc {
        ContentDoc::Json(schema) => {
            json!({ "application/json": { "schema": schema(&mut schemas.responses) } })
        }
        ContentDoc::AnyJson => json!({ "application/json": { "schema": {} } }),
        ContentDoc::Problem => json!({
            "application/problem+json": { "schema": schemas.responses.subschema_for::<ProblemDoc>() }
        }),
        ContentDoc::Octets => json!({
            "application/octet-stream": { "schema": { "type": "string", "contentMediaType": "application/octet-stream" } }
        }),
        ContentDoc::Metrics => json!({ "text/plain": { "schema": { "type": "string" } } }),
        ContentDoc::EventStream(schema) => json!({
            "text/event-stream": {
                "schema": { "type": "string" },
                "itemSchema": schema(&mut schemas.responses),
            }
        }),
        ContentDoc::JsonOrEvents(json, events) => json!({
            "application/json": { "schema": json(&mut schemas.responses) },
            "text/event-stream": {
                "schema": { "type": "string" },
                "itemSchema": events(&mut schemas.responses),
            }
        }),
    }
}

fn response(doc: &ResponseDoc, schemas: &mut Schemas) -> Value {
    let mut out = Map::new();
    out.insert("description".into(), doc.description.into());
    out.insert("content".into(), content(doc.content, schemas));
    if !doc.headers.is_empty() {
        let headers: Map<String, Value> = doc
            .headers
            .iter()
            .map(|h| ((*h).to_owned(), json!({ "schema": { "type": "string" } })))
            .collect();
        out.insert("headers".into(), Value::Object(headers));
    }
    Value::Object(out)
}

/// `/a/{b}/{*c}` → `/a/{b}/{c}` and the parameter names.
fn template(path: &str) -> (String, Vec<String>) {
    let mut params = Vec::new();
    let segments: Vec<String> = path
        .split('/')
        .map(
            |segment| match segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                Some(name) => {
                    let name = name.trim_start_matches('*').to_owned();
                    params.push(name.clone());
                    format!("{{{name}}}")
                }
                None => segment.to_owned(),
            },
        )
        .collect();
    (segments.join("/"), params)
}

fn operation(def: &RouteDoc, commands: &[&str], schemas: &mut Schemas) -> Value {
    let (_, params) = template(&def.path);
    let mut parameters: Vec<Value> = params
        .iter()
        .map(|name| {
            let mut schema = json!({ "type": "string" });
            if name == "command" && !commands.is_empty() {
                schema["enum"] = json!(commands);
            }
            match name.as_str() {
                "id" => schema = json!({ "type": "integer", "minimum": 0, "maximum": u64::MAX }),
                "name" => {
                    schema = json!({
                        "type": "string",
                        "minLength": 1,
                        "maxLength": catga_cluster_core::lock::MAX_LOCK_NAME_LEN,
                        "pattern": NO_CONTROL_CHARACTERS,
                    });
                }
                "key" => {
                    schema = json!({ "type": "string", "minLength": 1, "maxLength": MAX_KEY_CHARS })
                }
                _ => {}
            }
            json!({ "name": name, "in": "path", "required": true, "schema": schema })
        })
        .collect();
    for (name, description) in def.request_headers {
        let target = *name == catga_cluster_core::protocol::TARGET_NODE_HEADER;
        let schema = if target {
            json!({ "type": "string", "pattern": "^[0-9]{1,20}$" })
        } else if *name == catga_cluster_core::protocol::FORWARDED_HEADER {
            json!({ "type": "string", "pattern": "^[0-9]{1,10}$" })
        } else {
            json!({ "type": "string" })
        };
        parameters.push(json!({
            "name": name,
            "in": "header",
            "required": target,
            "description": description,
            "schema": schema,
        }));
    }

    let mut op = Map::new();
    op.insert("operationId".into(), def.operation_id.as_ref().into());
    op.insert("summary".into(), def.summary.into());
    op.insert("tags".into(), json!([def.tag]));
    if !parameters.is_empty() {
        op.insert("parameters".into(), Value::Array(parameters));
    }
    let body = match def.body {
        BodyDoc::None => None,
        BodyDoc::Json(schema) => Some((
            true,
            json!({ "application/json": { "schema": schema(&mut schemas.requests) } }),
        )),
        BodyDoc::OptionalJson(schema) => Some((
            false,
            json!({ "application/json": { "schema": schema(&mut schemas.requests) } }),
        )),
        BodyDoc::AnyJson => Some((true, json!({ "application/json": { "schema": {} } }))),
        BodyDoc::Octets => Some((
            true,
            json!({ "application/octet-stream": { "schema": { "type": "string", "contentMediaType": "application/octet-stream" } } }),
        )),
    };
    let mut responses: BTreeMap<String, Value> = def
        .responses
        .iter()
        .map(|r| (r.status.to_string(), response(r, schemas)))
        .collect();
    let mut add = |status: u16, description: &'static str| {
        responses
            .entry(status.to_string())
            .or_insert_with(|| response(&resp(status, description, ContentDoc::Problem), schemas));
    };
    if let Some((required, content)) = body {
        op.insert(
            "requestBody".into(),
            json!({ "required": required, "content": content }),
        );
        add(400, "bad-request: malformed body or invalid values");
        add(413, "payload-too-large");
    }
    if matches!(
        def.body,
        BodyDoc::Json(_) | BodyDoc::OptionalJson(_) | BodyDoc::AnyJson
    ) {
        add(
            415,
            "unsupported-media-type: the body is not application/json",
        );
    }
    if !params.is_empty() || !def.request_headers.is_empty() {
        add(400, "bad-request: a path parameter or header is malformed");
    }
    if def.forwarded {
        add(
            400,
            "bad-request: the x-catga-forwarded header is not a hop count",
        );
        add(502, "forward-failed: the leader could not be reached");
        add(503, "no-leader: no leader known within the hold time");
        add(
            508,
            "hop-limit: the request was forwarded too often already",
        );
    }
    if def.protected {
        op.insert("security".into(), json!([{ "clusterSecret": [] }]));
        add(401, "unauthorized: missing or wrong cluster secret");
        add(
            403,
            "forbidden: a cross-site request (foreign Origin, or a Host that is neither loopback nor a cluster endpoint)",
        );
    }
    add(504, "timeout: the route's deadline passed");
    op.insert("responses".into(), json!(responses));
    Value::Object(op)
}

/// The document for `routes`, served by `node`, with the typed commands
/// named `commands` and lock waits up to `max_lock_wait`.
pub(crate) fn document<'a>(
    routes: impl IntoIterator<Item = &'a RouteDoc>,
    node: &NodeInfo,
    commands: &[&str],
    max_lock_wait: Duration,
) -> Value {
    let mut schemas = Schemas::new();
    let mut paths: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    for def in routes {
        let (path, _) = template(&def.path);
        let op = operation(def, commands, &mut schemas);
        paths
            .entry(path)
            .or_default()
            .insert(def.method.as_str().to_ascii_lowercase(), op);
    }
    let mut components = schemas.into_components();
    // The longest wait is this router's setting.
    if let Some(wait) = components
        .get_mut(AcquireRequest::schema_name().as_ref())
        .and_then(|s| s.pointer_mut("/properties/wait_ms"))
    {
        wait["maximum"] = json!(u64::try_from(max_lock_wait.as_millis()).unwrap_or(u64::MAX));
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "catga-cluster",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The cluster routes of a catga-cluster node: health, status, administration, Raft RPC, locks, the key-value store, forwarded commands and metrics. Errors are application/problem+json (RFC 9457).",
        },
        "servers": [{ "url": node.endpoint.as_str() }],
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "clusterSecret": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "the cluster secret; without one configured, protected routes answer loopback peers only",
                },
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use catga_cluster_core::{Endpoint, NodeId};

    use super::*;
    use crate::api::{LockGrantDto, TransferRequest};

    #[cfg(feature = "raft")]
    #[test]
    fn documented_key_limit_is_the_state_machine_limit() {
        assert_eq!(
            MAX_KEY_CHARS,
            catga_cluster_raft::state_machine::limits::MAX_KEY_LEN
        );
    }

    #[test]
    fn templates() {
        assert_eq!(
            template("/cluster/kv/{*key}"),
            ("/cluster/kv/{key}".to_owned(), vec!["key".to_owned()])
        );
        assert_eq!(template("/metrics"), ("/metrics".to_owned(), vec![]));
    }

    /// Every `$ref` in `value`.
    fn refs<'v>(value: &'v Value, out: &mut Vec<&'v str>) {
        match value {
            Value::Object(map) => {
                for (key, value) in map {
                    match (key.as_str(), value) {
                        ("$ref", Value::String(r)) => out.push(r),
                        _ => refs(value, out),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }

    #[test]
    fn schemas_are_components_and_every_ref_resolves() {
        let routes = [
            RouteDoc {
                method: Method::POST,
                path: "/locks/{name}/acquire".into(),
                operation_id: "acquire".into(),
                summary: "",
                tag: "locks",
                protected: true,
                forwarded: false,
                body: BodyDoc::json::<AcquireRequest>(),
                request_headers: &[],
                responses: vec![resp(200, "granted", ContentDoc::json::<LockGrantDto>())],
            },
            RouteDoc {
                method: Method::POST,
                path: "/transfer".into(),
                operation_id: "transfer".into(),
                summary: "",
                tag: "cluster",
                protected: true,
                forwarded: true,
                body: BodyDoc::optional_json::<TransferRequest>(),
                request_headers: &[],
                responses: vec![],
            },
        ];
        let node = NodeInfo::new(NodeId::new(1), Endpoint::parse("http://a:1").unwrap());
        let doc = document(&routes, &node, &[], Duration::from_secs(7));
        let text = doc.to_string();
        assert!(!text.contains("$defs"), "{text}");
        let components = doc["components"]["schemas"].as_object().unwrap();
        let mut found = Vec::new();
        refs(&doc, &mut found);
        assert!(!found.is_empty());
        for reference in found {
            let name = reference
                .strip_prefix("#/components/schemas/")
                .unwrap_or_else(|| panic!("{reference}"));
            assert!(components.contains_key(name), "{reference}");
        }
        let names: Vec<&str> = components.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            ["AcquireLock", "LockGrant", "Problem", "TransferLeadership"]
        );
        let acquire = &doc["paths"]["/locks/{name}/acquire"]["post"];
        assert_eq!(acquire["requestBody"]["required"], true);
        assert_eq!(
            components["AcquireLock"]["properties"]["wait_ms"]["maximum"],
            7000
        );
        let transfer = &doc["paths"]["/transfer"]["post"];
        assert_eq!(transfer["requestBody"]["required"], false);
        assert!(transfer["responses"]["508"].is_object());
    }
}
