//! The OpenAPI 3.1 document of the cluster routes.
//!
//! A [`RouteDoc`] describes one route for the document only — method,
//! path, operation, body, answers, headers, and whether it is protected or
//! forwarded; [`document`] turns a list of them into the document. The
//! route table pairs each handler with its description, so what is served
//! and what is documented come from one place.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::time::Duration;

use catga_cluster_core::NodeInfo;
use http::Method;
use serde_json::{json, Map, Value};

use crate::api::{all_schemas, AcquireRequest, ApiSchema, ProblemDoc};

/// No control characters (what `char::is_control` refuses in lock names).
const NO_CONTROL_CHARACTERS: &str = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$";

/// The longest key, in characters (the state machine's limit).
const MAX_KEY_CHARS: usize = 1024;

/// What a route expects in its request body; `Json` names its schema in
/// `components/schemas`.
#[derive(Debug, Clone, Copy)]
#[cfg_attr(not(feature = "raft"), allow(dead_code))]
pub(crate) enum BodyDoc {
    None,
    Json(&'static str),
    OptionalJson(&'static str),
    AnyJson,
    Octets,
}

/// What an answer carries.
#[derive(Debug, Clone, Copy)]
#[cfg_attr(not(feature = "raft"), allow(dead_code))]
pub(crate) enum ContentDoc {
    Json(&'static str),
    AnyJson,
    Problem,
    Octets,
    Metrics,
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
    pub(crate) path: Cow<'static, str>,
    pub(crate) operation_id: Cow<'static, str>,
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

fn schema_ref(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn content(doc: ContentDoc) -> Value {
    match doc {
        ContentDoc::Json(name) => json!({ "application/json": { "schema": schema_ref(name) } }),
        ContentDoc::AnyJson => json!({ "application/json": { "schema": {} } }),
        ContentDoc::Problem => {
            json!({ "application/problem+json": { "schema": schema_ref(ProblemDoc::NAME) } })
        }
        ContentDoc::Octets => json!({
            "application/octet-stream": { "schema": { "type": "string", "contentMediaType": "application/octet-stream" } }
        }),
        ContentDoc::Metrics => json!({ "text/plain": { "schema": { "type": "string" } } }),
    }
}

fn response(doc: &ResponseDoc) -> Value {
    let mut out = Map::new();
    out.insert("description".into(), doc.description.into());
    out.insert("content".into(), content(doc.content));
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

fn operation(def: &RouteDoc, commands: &[&str]) -> Value {
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
        BodyDoc::Json(name) => Some((
            true,
            json!({ "application/json": { "schema": schema_ref(name) } }),
        )),
        BodyDoc::OptionalJson(name) => Some((
            false,
            json!({ "application/json": { "schema": schema_ref(name) } }),
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
        .map(|r| (r.status.to_string(), response(r)))
        .collect();
    let mut add = |status: u16, description: &'static str| {
        responses
            .entry(status.to_string())
            .or_insert_with(|| response(&resp(status, description, ContentDoc::Problem)));
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
    let mut paths: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    for def in routes {
        let (path, _) = template(&def.path);
        paths.entry(path).or_default().insert(
            def.method.as_str().to_ascii_lowercase(),
            operation(def, commands),
        );
    }
    let mut schemas: Map<String, Value> = all_schemas()
        .into_iter()
        .map(|(name, schema)| (name.to_owned(), schema))
        .collect();
    // The longest wait is this router's setting.
    if let Some(wait) = schemas
        .get_mut(AcquireRequest::NAME)
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
            "schemas": schemas,
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
    use super::*;

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
}
