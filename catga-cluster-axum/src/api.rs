//! The JSON bodies of the cluster routes, with their JSON Schemas.
//!
//! Each type's schema is written next to it and checked against serde by
//! the tests (every serialised field is in the schema and every required
//! property is serialised), so the OpenAPI document cannot drift from the
//! wire format.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// A body type with a JSON Schema, named in `#/components/schemas`.
pub(crate) trait ApiSchema {
    /// The schema's name in `components/schemas`.
    const NAME: &'static str;
    /// The JSON Schema (2020-12, as OpenAPI 3.1 uses).
    fn schema() -> Value;
}

/// `{"type": "object", ...}` with the given required and optional
/// properties; no others allowed.
fn object(required: &[&str], properties: Vec<(&str, Value)>) -> Value {
    let props: serde_json::Map<String, Value> = properties
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    json!({
        "type": "object",
        "required": required,
        "properties": props,
        "additionalProperties": false,
    })
}

fn reference(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn nullable_ref(name: &str) -> Value {
    json!({ "oneOf": [reference(name), { "type": "null" }] })
}

fn uint(description: &str) -> Value {
    json!({ "type": "integer", "minimum": 0, "format": "int64", "description": description })
}

fn string(description: &str) -> Value {
    json!({ "type": "string", "description": description })
}

/// The longest lock lease, in milliseconds (the state machine's limit).
pub(crate) const MAX_TTL_MS: u64 = 24 * 60 * 60 * 1000;
/// The longest lock owner, in characters (the state machine's limit).
pub(crate) const MAX_OWNER_CHARS: usize = 256;

/// A lock owner: 1 to 256 characters.
fn owner(description: &str) -> Value {
    json!({ "type": "string", "minLength": 1, "maxLength": MAX_OWNER_CHARS,
            "description": description })
}

/// A lease in milliseconds, 1 ms to one day, or absent.
fn ttl(description: &str) -> Value {
    json!({ "type": ["integer", "null"], "minimum": 1, "maximum": MAX_TTL_MS,
            "description": description })
}

fn role() -> Value {
    json!({
        "type": "string",
        "enum": ["leader", "follower", "candidate", "learner", "shutdown"],
        "description": "the node's Raft role",
    })
}

// ---------------------------------------------------------------------------
// Shared pieces
// ---------------------------------------------------------------------------

/// A node: id and advertised endpoint.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct NodeDto {
    pub(crate) id: u64,
    pub(crate) endpoint: String,
}

impl ApiSchema for NodeDto {
    const NAME: &'static str = "Node";
    fn schema() -> Value {
        object(
            &["id", "endpoint"],
            vec![
                ("id", uint("the node id")),
                ("endpoint", string("the node's advertised URL")),
            ],
        )
    }
}

impl From<&catga_cluster_core::NodeInfo> for NodeDto {
    fn from(n: &catga_cluster_core::NodeInfo) -> Self {
        NodeDto {
            id: n.id.get(),
            endpoint: n.endpoint.as_str().to_owned(),
        }
    }
}

/// The known leader; its endpoint may be unknown.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct LeaderDto {
    pub(crate) id: u64,
    pub(crate) endpoint: Option<String>,
}

impl ApiSchema for LeaderDto {
    const NAME: &'static str = "Leader";
    fn schema() -> Value {
        object(
            &["id", "endpoint"],
            vec![
                ("id", uint("the leader's id")),
                (
                    "endpoint",
                    json!({ "type": ["string", "null"], "description": "the leader's advertised URL, where known" }),
                ),
            ],
        )
    }
}

impl From<&catga_cluster_core::LeaderInfo> for LeaderDto {
    fn from(l: &catga_cluster_core::LeaderInfo) -> Self {
        LeaderDto {
            id: l.id.get(),
            endpoint: l.endpoint.as_ref().map(|e| e.as_str().to_owned()),
        }
    }
}

/// A member of the cluster.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct MemberDto {
    pub(crate) id: u64,
    pub(crate) endpoint: String,
    pub(crate) voter: bool,
}

impl ApiSchema for MemberDto {
    const NAME: &'static str = "Member";
    fn schema() -> Value {
        object(
            &["id", "endpoint", "voter"],
            vec![
                ("id", uint("the member's id")),
                ("endpoint", string("the member's advertised URL")),
                (
                    "voter",
                    json!({ "type": "boolean", "description": "false for a learner" }),
                ),
            ],
        )
    }
}

// ---------------------------------------------------------------------------
// Health and status
// ---------------------------------------------------------------------------

/// `GET /health/live`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct LiveDto {
    pub(crate) status: &'static str,
    pub(crate) reason: Option<&'static str>,
    pub(crate) detail: Option<String>,
}

impl ApiSchema for LiveDto {
    const NAME: &'static str = "Liveness";
    fn schema() -> Value {
        object(
            &["status", "reason", "detail"],
            vec![
                (
                    "status",
                    json!({ "type": "string", "enum": ["healthy", "unhealthy"] }),
                ),
                ("reason", json!({ "type": ["string", "null"] })),
                ("detail", json!({ "type": ["string", "null"] })),
            ],
        )
    }
}

/// `GET /health/ready`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ReadyDto {
    pub(crate) status: &'static str,
    pub(crate) role: &'static str,
    pub(crate) leader: Option<LeaderDto>,
    pub(crate) reason: Option<&'static str>,
    pub(crate) detail: Option<String>,
}

impl ApiSchema for ReadyDto {
    const NAME: &'static str = "Readiness";
    fn schema() -> Value {
        object(
            &["status", "role", "leader", "reason", "detail"],
            vec![
                (
                    "status",
                    json!({ "type": "string", "enum": ["healthy", "degraded", "unhealthy"] }),
                ),
                ("role", role()),
                ("leader", nullable_ref(LeaderDto::NAME)),
                (
                    "reason",
                    json!({
                        "type": ["string", "null"],
                        "enum": [null, "raft-failed", "raft-stopped", "draining", "no-leader",
                                 "no-quorum", "lease-expired", "transferring",
                                 "voter-unreachable", "lagging", "elections-flapping"],
                        "description": "why the node is not healthy; null when it is",
                    }),
                ),
                ("detail", json!({ "type": ["string", "null"] })),
            ],
        )
    }
}

/// `GET /health/leader`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct LeaderCheckDto {
    pub(crate) is_leader: bool,
    pub(crate) node: NodeDto,
    pub(crate) role: &'static str,
    pub(crate) leader: Option<LeaderDto>,
}

impl ApiSchema for LeaderCheckDto {
    const NAME: &'static str = "LeaderCheck";
    fn schema() -> Value {
        object(
            &["is_leader", "node", "role", "leader"],
            vec![
                ("is_leader", json!({ "type": "boolean" })),
                ("node", reference(NodeDto::NAME)),
                ("role", role()),
                ("leader", nullable_ref(LeaderDto::NAME)),
            ],
        )
    }
}

/// `GET /cluster/status`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct StatusDto {
    pub(crate) node: NodeDto,
    pub(crate) role: &'static str,
    pub(crate) term: u64,
    pub(crate) leader: Option<LeaderDto>,
    pub(crate) lease_valid: bool,
    pub(crate) transferring: bool,
    pub(crate) members: Vec<MemberDto>,
    pub(crate) last_log_index: u64,
    pub(crate) last_applied: u64,
}

impl ApiSchema for StatusDto {
    const NAME: &'static str = "Status";
    fn schema() -> Value {
        object(
            &[
                "node",
                "role",
                "term",
                "leader",
                "lease_valid",
                "transferring",
                "members",
                "last_log_index",
                "last_applied",
            ],
            vec![
                ("node", reference(NodeDto::NAME)),
                ("role", role()),
                ("term", uint("the current Raft term")),
                ("leader", nullable_ref(LeaderDto::NAME)),
                (
                    "lease_valid",
                    json!({ "type": "boolean", "description": "this node leads and its leader lease holds" }),
                ),
                (
                    "transferring",
                    json!({ "type": "boolean", "description": "this node is handing leadership over" }),
                ),
                (
                    "members",
                    json!({ "type": "array", "items": reference(MemberDto::NAME) }),
                ),
                ("last_log_index", uint("the last log index")),
                ("last_applied", uint("the last applied log index")),
            ],
        )
    }
}

// ---------------------------------------------------------------------------
// Membership and leadership
// ---------------------------------------------------------------------------

/// `POST /cluster/members`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AddMemberRequest {
    pub(crate) id: u64,
    pub(crate) endpoint: String,
}

impl ApiSchema for AddMemberRequest {
    const NAME: &'static str = "AddMember";
    fn schema() -> Value {
        object(
            &["id", "endpoint"],
            vec![
                ("id", uint("the new node's id")),
                (
                    "endpoint",
                    string("the new node's advertised URL, such as http://10.0.0.4:5000"),
                ),
            ],
        )
    }
}

/// The members after a change.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct MembersDto {
    pub(crate) members: Vec<MemberDto>,
}

impl ApiSchema for MembersDto {
    const NAME: &'static str = "Members";
    fn schema() -> Value {
        object(
            &["members"],
            vec![(
                "members",
                json!({ "type": "array", "items": reference(MemberDto::NAME) }),
            )],
        )
    }
}

/// `POST /cluster/leadership/transfer`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TransferRequest {
    #[serde(default)]
    pub(crate) to: Option<u64>,
}

impl ApiSchema for TransferRequest {
    const NAME: &'static str = "TransferLeadership";
    fn schema() -> Value {
        object(
            &[],
            vec![(
                "to",
                json!({ "type": ["integer", "null"], "minimum": 0,
                        "description": "the successor; absent: the most up-to-date voter" }),
            )],
        )
    }
}

/// The leader after a transfer.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct TransferDto {
    pub(crate) leader: LeaderDto,
}

impl ApiSchema for TransferDto {
    const NAME: &'static str = "Transferred";
    fn schema() -> Value {
        object(&["leader"], vec![("leader", reference(LeaderDto::NAME))])
    }
}

// ---------------------------------------------------------------------------
// Locks
// ---------------------------------------------------------------------------

/// `POST /cluster/locks/{name}/acquire`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AcquireRequest {
    pub(crate) owner: String,
    #[serde(default)]
    pub(crate) ttl_ms: Option<u64>,
    #[serde(default)]
    pub(crate) wait_ms: Option<u64>,
}

impl ApiSchema for AcquireRequest {
    const NAME: &'static str = "AcquireLock";
    fn schema() -> Value {
        object(
            &["owner"],
            vec![
                ("owner", owner("who takes the lock")),
                (
                    "ttl_ms",
                    ttl("the lease in milliseconds; absent: the routes' default"),
                ),
                (
                    "wait_ms",
                    json!({ "type": ["integer", "null"], "minimum": 0,
                            "description": "how long to wait while another owner holds the lock (default 0)" }),
                ),
            ],
        )
    }
}

/// `POST /cluster/locks/{name}/renew`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RenewRequest {
    pub(crate) owner: String,
    pub(crate) token: u64,
    #[serde(default)]
    pub(crate) ttl_ms: Option<u64>,
}

impl ApiSchema for RenewRequest {
    const NAME: &'static str = "RenewLock";
    fn schema() -> Value {
        object(
            &["owner", "token"],
            vec![
                ("owner", owner("the holder")),
                ("token", uint("the fencing token of the grant")),
                (
                    "ttl_ms",
                    ttl("the new lease from now; absent: the routes' default"),
                ),
            ],
        )
    }
}

/// `POST /cluster/locks/{name}/release`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReleaseRequest {
    pub(crate) owner: String,
    pub(crate) token: u64,
}

impl ApiSchema for ReleaseRequest {
    const NAME: &'static str = "ReleaseLock";
    fn schema() -> Value {
        object(
            &["owner", "token"],
            vec![
                ("owner", owner("the holder")),
                ("token", uint("the fencing token of the grant")),
            ],
        )
    }
}

/// A granted or renewed lock.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct LockGrantDto {
    pub(crate) token: u64,
    pub(crate) ttl_ms: u64,
}

impl ApiSchema for LockGrantDto {
    const NAME: &'static str = "LockGrant";
    fn schema() -> Value {
        object(
            &["token", "ttl_ms"],
            vec![
                (
                    "token",
                    uint("the fencing token: strictly increasing per lock; hand it to the protected resource"),
                ),
                ("ttl_ms", uint("the lease, in milliseconds")),
            ],
        )
    }
}

/// A released lock.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ReleasedDto {
    pub(crate) released: bool,
    pub(crate) token: u64,
}

impl ApiSchema for ReleasedDto {
    const NAME: &'static str = "LockReleased";
    fn schema() -> Value {
        object(
            &["released", "token"],
            vec![
                ("released", json!({ "type": "boolean", "const": true })),
                ("token", uint("the fencing token that was released")),
            ],
        )
    }
}

// ---------------------------------------------------------------------------
// Key-value store
// ---------------------------------------------------------------------------

/// A written key.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct KvWrittenDto {
    pub(crate) key: String,
    pub(crate) revision: u64,
}

impl ApiSchema for KvWrittenDto {
    const NAME: &'static str = "KvWritten";
    fn schema() -> Value {
        object(
            &["key", "revision"],
            vec![
                ("key", string("the key")),
                (
                    "revision",
                    uint("the key's new revision (also in x-catga-revision)"),
                ),
            ],
        )
    }
}

/// A deleted key.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct KvDeletedDto {
    pub(crate) key: String,
    pub(crate) deleted: bool,
}

impl ApiSchema for KvDeletedDto {
    const NAME: &'static str = "KvDeleted";
    fn schema() -> Value {
        object(
            &["key", "deleted"],
            vec![
                ("key", string("the key")),
                ("deleted", json!({ "type": "boolean", "const": true })),
            ],
        )
    }
}

// ---------------------------------------------------------------------------
// Problems
// ---------------------------------------------------------------------------

/// The problem document (RFC 9457) every error answers.
pub(crate) struct ProblemDoc;

impl ApiSchema for ProblemDoc {
    const NAME: &'static str = "Problem";
    fn schema() -> Value {
        json!({
            "type": "object",
            "required": ["type", "title", "status", "detail"],
            "properties": {
                "type": { "type": "string", "description": "a slug: not-leader, no-leader, forward-failed, forward-timeout, hop-limit, unauthorized, bad-request, payload-too-large, lock-held, lock-lost, not-found, revision-mismatch, method-not-allowed, misdirected, timeout, unknown-outcome, shutting-down, internal" },
                "title": { "type": "string" },
                "status": { "type": "integer" },
                "detail": { "type": "string" },
            },
            "additionalProperties": true,
        })
    }
}

/// Every schema, for `components/schemas`.
pub(crate) fn all_schemas() -> Vec<(&'static str, Value)> {
    vec![
        (NodeDto::NAME, NodeDto::schema()),
        (LeaderDto::NAME, LeaderDto::schema()),
        (MemberDto::NAME, MemberDto::schema()),
        (LiveDto::NAME, LiveDto::schema()),
        (ReadyDto::NAME, ReadyDto::schema()),
        (LeaderCheckDto::NAME, LeaderCheckDto::schema()),
        (StatusDto::NAME, StatusDto::schema()),
        (AddMemberRequest::NAME, AddMemberRequest::schema()),
        (MembersDto::NAME, MembersDto::schema()),
        (TransferRequest::NAME, TransferRequest::schema()),
        (TransferDto::NAME, TransferDto::schema()),
        (AcquireRequest::NAME, AcquireRequest::schema()),
        (RenewRequest::NAME, RenewRequest::schema()),
        (ReleaseRequest::NAME, ReleaseRequest::schema()),
        (LockGrantDto::NAME, LockGrantDto::schema()),
        (ReleasedDto::NAME, ReleasedDto::schema()),
        (KvWrittenDto::NAME, KvWrittenDto::schema()),
        (KvDeletedDto::NAME, KvDeletedDto::schema()),
        (ProblemDoc::NAME, ProblemDoc::schema()),
    ]
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn keys(v: &Value) -> BTreeSet<String> {
        v.as_object().unwrap().keys().cloned().collect()
    }

    /// A response type's serialised fields are exactly its schema's
    /// properties, and every required property is there.
    fn check_response<T: ApiSchema + Serialize>(example: T) {
        let schema = T::schema();
        let json = serde_json::to_value(&example).unwrap();
        let props = keys(&schema["properties"]);
        assert_eq!(keys(&json), props, "{}", T::NAME);
        for required in schema["required"].as_array().unwrap() {
            assert!(
                json.get(required.as_str().unwrap()).is_some(),
                "{}",
                T::NAME
            );
        }
    }

    #[cfg(feature = "raft")]
    #[test]
    fn documented_limits_are_the_state_machine_limits() {
        use catga_cluster_raft::state_machine::limits;
        assert_eq!(MAX_TTL_MS, limits::MAX_TTL_MS);
        assert_eq!(MAX_OWNER_CHARS, limits::MAX_OWNER_LEN);
    }

    /// A request type accepts a document with every schema property, and
    /// one with the required properties only; unknown fields are refused.
    fn check_request<T: ApiSchema + serde::de::DeserializeOwned>(full: Value) {
        let schema = T::schema();
        assert_eq!(keys(&full), keys(&schema["properties"]), "{}", T::NAME);
        serde_json::from_value::<T>(full.clone()).unwrap();
        let required: BTreeSet<String> = schema["required"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_str().unwrap().to_owned())
            .collect();
        let minimal: serde_json::Map<String, Value> = full
            .as_object()
            .unwrap()
            .iter()
            .filter(|(k, _)| required.contains(*k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        serde_json::from_value::<T>(Value::Object(minimal)).unwrap();
        let mut extra = full;
        extra["unexpected"] = json!(1);
        assert!(serde_json::from_value::<T>(extra).is_err(), "{}", T::NAME);
    }

    #[test]
    fn schemas_match_serde() {
        let node = NodeDto {
            id: 1,
            endpoint: "http://a:1".into(),
        };
        let leader = LeaderDto {
            id: 1,
            endpoint: None,
        };
        let member = MemberDto {
            id: 1,
            endpoint: "http://a:1".into(),
            voter: true,
        };
        check_response(node.clone());
        check_response(leader.clone());
        check_response(member.clone());
        check_response(LiveDto {
            status: "healthy",
            reason: None,
            detail: None,
        });
        check_response(ReadyDto {
            status: "healthy",
            role: "leader",
            leader: Some(leader.clone()),
            reason: None,
            detail: None,
        });
        check_response(LeaderCheckDto {
            is_leader: true,
            node: node.clone(),
            role: "leader",
            leader: None,
        });
        check_response(StatusDto {
            node,
            role: "leader",
            term: 1,
            leader: Some(leader.clone()),
            lease_valid: true,
            transferring: false,
            members: vec![member.clone()],
            last_log_index: 1,
            last_applied: 1,
        });
        check_response(MembersDto {
            members: vec![member],
        });
        check_response(TransferDto { leader });
        check_response(LockGrantDto {
            token: 1,
            ttl_ms: 1,
        });
        check_response(ReleasedDto {
            released: true,
            token: 1,
        });
        check_response(KvWrittenDto {
            key: "k".into(),
            revision: 1,
        });
        check_response(KvDeletedDto {
            key: "k".into(),
            deleted: true,
        });

        check_request::<AddMemberRequest>(json!({"id": 4, "endpoint": "http://d:1"}));
        check_request::<TransferRequest>(json!({"to": 2}));
        check_request::<AcquireRequest>(json!({"owner": "o", "ttl_ms": 10, "wait_ms": 0}));
        check_request::<RenewRequest>(json!({"owner": "o", "token": 3, "ttl_ms": 10}));
        check_request::<ReleaseRequest>(json!({"owner": "o", "token": 3}));
    }
}
