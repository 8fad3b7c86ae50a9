//! The JSON bodies of the cluster routes, with their JSON Schemas.
//!
//! The schemas are derived from the types with `schemars` (JSON Schema
//! 2020-12, as OpenAPI 3.1 uses): requests as serde reads them, answers as
//! serde writes them. What only the server knows (lengths, ranges, the
//! strings a field can hold) is stated in `#[schemars(...)]` attributes, and
//! the tests check the schemas against serde (every serialised field is in
//! the schema, every required property is serialised, unknown fields are
//! refused), so the OpenAPI document cannot drift from the wire format.

use schemars::generate::{SchemaGenerator, SchemaSettings};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Where the generators put the named schemas, and so where their `$ref`s
/// point: the OpenAPI document's `components/schemas`.
const DEFINITIONS_PATH: &str = "/components/schemas";

fn settings() -> SchemaSettings {
    SchemaSettings::draft2020_12().with(|s| {
        s.definitions_path = DEFINITIONS_PATH.into();
        s.meta_schema = None;
    })
}

/// A generator for request bodies: fields with a default may be absent.
pub(crate) fn request_schemas() -> SchemaGenerator {
    settings().for_deserialize().into_generator()
}

/// A generator for answers: every field is written, `null` included.
pub(crate) fn response_schemas() -> SchemaGenerator {
    settings().for_serialize().into_generator()
}

/// The longest lock lease, in milliseconds (the state machine's limit).
pub(crate) const MAX_TTL_MS: u64 = 24 * 60 * 60 * 1000;
/// The longest lock owner, in characters (the state machine's limit).
pub(crate) const MAX_OWNER_CHARS: usize = 256;

/// A node's Raft roles, as `Role::as_str` writes them.
const ROLES: [&str; 5] = ["leader", "follower", "candidate", "learner", "shutdown"];

// ---------------------------------------------------------------------------
// Shared pieces
// ---------------------------------------------------------------------------

/// A node: its id and advertised endpoint.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[schemars(rename = "Node", deny_unknown_fields)]
pub(crate) struct NodeDto {
    /// the node id
    pub(crate) id: u64,
    /// the node's advertised URL
    pub(crate) endpoint: String,
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
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[schemars(rename = "Leader", deny_unknown_fields)]
pub(crate) struct LeaderDto {
    /// the leader's id
    pub(crate) id: u64,
    /// the leader's advertised URL, where known
    pub(crate) endpoint: Option<String>,
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
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[schemars(rename = "Member", deny_unknown_fields)]
pub(crate) struct MemberDto {
    /// the member's id
    pub(crate) id: u64,
    /// the member's advertised URL
    pub(crate) endpoint: String,
    /// false for a learner
    pub(crate) voter: bool,
}

// ---------------------------------------------------------------------------
// Health and status
// ---------------------------------------------------------------------------

/// The answer of `GET /health/live`.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[schemars(rename = "Liveness", deny_unknown_fields)]
pub(crate) struct LiveDto {
    #[schemars(extend("enum" = ["healthy", "unhealthy"]))]
    pub(crate) status: &'static str,
    pub(crate) reason: Option<&'static str>,
    pub(crate) detail: Option<String>,
}

/// The answer of `GET /health/ready`.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[schemars(rename = "Readiness", deny_unknown_fields)]
pub(crate) struct ReadyDto {
    #[schemars(extend("enum" = ["healthy", "degraded", "unhealthy"]))]
    pub(crate) status: &'static str,
    /// the node's Raft role
    #[schemars(extend("enum" = ROLES))]
    pub(crate) role: &'static str,
    pub(crate) leader: Option<LeaderDto>,
    /// why the node is not healthy; null when it is
    #[schemars(extend("enum" = [
        null, "raft-failed", "raft-stopped", "draining", "no-leader", "no-quorum",
        "lease-expired", "transferring", "voter-unreachable", "lagging", "elections-flapping",
    ]))]
    pub(crate) reason: Option<&'static str>,
    pub(crate) detail: Option<String>,
}

/// The answer of `GET /health/leader`.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[schemars(rename = "LeaderCheck", deny_unknown_fields)]
pub(crate) struct LeaderCheckDto {
    pub(crate) is_leader: bool,
    pub(crate) node: NodeDto,
    /// the node's Raft role
    #[schemars(extend("enum" = ROLES))]
    pub(crate) role: &'static str,
    pub(crate) leader: Option<LeaderDto>,
}

/// The answer of `GET /cluster/status`.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[schemars(rename = "Status", deny_unknown_fields)]
pub(crate) struct StatusDto {
    pub(crate) node: NodeDto,
    /// the node's Raft role
    #[schemars(extend("enum" = ROLES))]
    pub(crate) role: &'static str,
    /// the current Raft term
    pub(crate) term: u64,
    pub(crate) leader: Option<LeaderDto>,
    /// this node leads and its leader lease holds
    pub(crate) lease_valid: bool,
    /// this node is handing leadership over
    pub(crate) transferring: bool,
    pub(crate) members: Vec<MemberDto>,
    /// the last log index
    pub(crate) last_log_index: u64,
    /// the last applied log index
    pub(crate) last_applied: u64,
    /// how this node replaces a lost leader (null without a Raft node)
    pub(crate) failover: Option<FailoverDto>,
}

/// How a Raft node replaces a lost leader.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[schemars(rename = "Failover", deny_unknown_fields)]
pub(crate) struct FailoverDto {
    /// whether the crash fast path runs on this node
    pub(crate) fast_path: bool,
    /// the leader whose process this node watches now (its leader watch is
    /// open), or null
    pub(crate) watching: Option<u64>,
    /// the last fail-over that elected this node, or null
    pub(crate) last: Option<LastFailoverDto>,
}

/// A fail-over that elected this node.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[schemars(rename = "LastFailover", deny_unknown_fields)]
pub(crate) struct LastFailoverDto {
    /// what elected this node
    #[schemars(extend("enum" = ["fast", "timer", "handover"]))]
    pub(crate) path: &'static str,
    /// the term this node leads since
    pub(crate) term: u64,
    /// the leader this node knew before, if any
    pub(crate) previous_leader: Option<u64>,
    /// how long it took, in milliseconds on this node's clock
    pub(crate) took_ms: u64,
}

// ---------------------------------------------------------------------------
// Membership and leadership
// ---------------------------------------------------------------------------

/// The body of `POST /cluster/members`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "AddMember")]
pub(crate) struct AddMemberRequest {
    /// the new node's id
    pub(crate) id: u64,
    /// the new node's advertised URL, such as http://10.0.0.4:5000
    pub(crate) endpoint: String,
}

/// The members after a change.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[schemars(rename = "Members", deny_unknown_fields)]
pub(crate) struct MembersDto {
    pub(crate) members: Vec<MemberDto>,
}

/// The body of `POST /cluster/leadership/transfer` (optional).
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "TransferLeadership")]
pub(crate) struct TransferRequest {
    /// the successor; absent: the most up-to-date voter
    #[serde(default)]
    pub(crate) to: Option<u64>,
}

/// The leader after a transfer.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[schemars(rename = "Transferred", deny_unknown_fields)]
pub(crate) struct TransferDto {
    pub(crate) leader: LeaderDto,
}

// ---------------------------------------------------------------------------
// Locks
// ---------------------------------------------------------------------------

/// The body of `POST /cluster/locks/{name}/acquire`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "AcquireLock")]
pub(crate) struct AcquireRequest {
    /// who takes the lock
    #[schemars(length(min = 1, max = MAX_OWNER_CHARS))]
    pub(crate) owner: String,
    /// the lease in milliseconds; absent: the routes' default
    #[serde(default)]
    #[schemars(range(min = 1, max = MAX_TTL_MS))]
    pub(crate) ttl_ms: Option<u64>,
    /// how long to wait while another owner holds the lock (default 0)
    #[serde(default)]
    pub(crate) wait_ms: Option<u64>,
}

/// The body of `POST /cluster/locks/{name}/renew`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "RenewLock")]
pub(crate) struct RenewRequest {
    /// the holder
    #[schemars(length(min = 1, max = MAX_OWNER_CHARS))]
    pub(crate) owner: String,
    /// the fencing token of the grant
    pub(crate) token: u64,
    /// the new lease from now; absent: the routes' default
    #[serde(default)]
    #[schemars(range(min = 1, max = MAX_TTL_MS))]
    pub(crate) ttl_ms: Option<u64>,
}

/// The body of `POST /cluster/locks/{name}/release`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "ReleaseLock")]
pub(crate) struct ReleaseRequest {
    /// the holder
    #[schemars(length(min = 1, max = MAX_OWNER_CHARS))]
    pub(crate) owner: String,
    /// the fencing token of the grant
    pub(crate) token: u64,
}

/// A granted or renewed lock.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[schemars(rename = "LockGrant", deny_unknown_fields)]
pub(crate) struct LockGrantDto {
    /// the fencing token: strictly increasing per lock; hand it to the protected resource
    pub(crate) token: u64,
    /// the lease, in milliseconds
    pub(crate) ttl_ms: u64,
}

/// A released lock.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[schemars(rename = "LockReleased", deny_unknown_fields)]
pub(crate) struct ReleasedDto {
    #[schemars(extend("const" = true))]
    pub(crate) released: bool,
    /// the fencing token that was released
    pub(crate) token: u64,
}

// ---------------------------------------------------------------------------
// Key-value store
// ---------------------------------------------------------------------------

/// A written key.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[schemars(rename = "KvWritten", deny_unknown_fields)]
pub(crate) struct KvWrittenDto {
    /// the key
    pub(crate) key: String,
    /// the key's new revision (also in x-catga-revision)
    pub(crate) revision: u64,
}

/// A deleted key.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[schemars(rename = "KvDeleted", deny_unknown_fields)]
pub(crate) struct KvDeletedDto {
    /// the key
    pub(crate) key: String,
    #[schemars(extend("const" = true))]
    pub(crate) deleted: bool,
}

/// A key with its value: an entry of a listing, or a key event of a watch
/// (a delete carries no value). A value that is UTF-8 travels as `value`;
/// any other as `value_base64` (standard alphabet, padded).
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[schemars(rename = "KvEntry", deny_unknown_fields)]
pub(crate) struct KvEntryDto {
    /// the key
    pub(crate) key: String,
    /// the value, when it is UTF-8
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) value: Option<String>,
    /// the value in base64, when it is not UTF-8
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) value_base64: Option<String>,
    /// the key's revision: the log index of the write (or delete)
    pub(crate) revision: u64,
}

impl KvEntryDto {
    pub(crate) fn new(key: String, value: Option<&[u8]>, revision: u64) -> Self {
        let (value, value_base64) = match value.map(std::str::from_utf8) {
            None => (None, None),
            Some(Ok(text)) => (Some(text.to_owned()), None),
            Some(Err(_)) => (None, value.map(base64)),
        };
        KvEntryDto {
            key,
            value,
            value_base64,
            revision,
        }
    }
}

/// Standard base64 with padding.
pub(crate) fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The answer of `GET /cluster/kv?prefix=P`.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[schemars(rename = "KvList", deny_unknown_fields)]
pub(crate) struct KvListDto {
    /// the prefix asked for
    pub(crate) prefix: String,
    /// the revision the listing was read at (the last log index applied); a
    /// watch from `revision + 1` continues it without a gap
    pub(crate) revision: u64,
    /// the keys under the prefix, in key order
    pub(crate) keys: Vec<KvEntryDto>,
    /// more keys than `limit` are under the prefix
    pub(crate) truncated: bool,
}

/// A leadership snapshot, one event of `GET /cluster/leadership/events`.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[schemars(rename = "LeadershipEvent", deny_unknown_fields)]
pub(crate) struct LeadershipEventDto {
    /// the node's Raft role
    #[schemars(extend("enum" = ROLES))]
    pub(crate) role: &'static str,
    /// the Raft term
    pub(crate) term: u64,
    pub(crate) leader: Option<LeaderDto>,
    /// this node leads and its leader lease holds
    pub(crate) lease_valid: bool,
}

// ---------------------------------------------------------------------------
// Problems
// ---------------------------------------------------------------------------

/// The problem document (RFC 9457) every error answers; extension members
/// may follow.
#[derive(JsonSchema)]
#[schemars(rename = "Problem")]
#[allow(
    dead_code,
    reason = "a description only: `Problem` writes these documents itself"
)]
pub(crate) struct ProblemDoc {
    /// a slug: not-leader, no-leader, forward-failed, forward-timeout,
    /// hop-limit, unauthorized, bad-request, payload-too-large, lock-held,
    /// lock-lost, not-found, revision-mismatch, method-not-allowed,
    /// misdirected, timeout, unknown-outcome, shutting-down, internal
    #[schemars(rename = "type")]
    slug: String,
    title: String,
    status: u16,
    detail: String,
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::{json, Value};

    use super::*;

    fn keys(v: &Value) -> BTreeSet<String> {
        v.as_object().unwrap().keys().cloned().collect()
    }

    /// `T`'s named schema, from `generator`.
    fn schema<T: JsonSchema>(mut generator: SchemaGenerator) -> Value {
        let reference = generator.subschema_for::<T>();
        let name = T::schema_name();
        assert_eq!(
            reference.get("$ref"),
            Some(&json!(format!("#{DEFINITIONS_PATH}/{name}"))),
            "{name} is referenced where the document keeps it"
        );
        generator
            .take_definitions(true)
            .remove(name.as_ref())
            .unwrap()
    }

    fn required(schema: &Value) -> BTreeSet<String> {
        schema
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().map(|r| r.as_str().unwrap().to_owned()).collect())
            .unwrap_or_default()
    }

    /// A response type's serialised fields are exactly its schema's
    /// properties, and every one is required (answers write every field).
    fn check_response<T: JsonSchema + Serialize>(example: T) {
        let name = T::schema_name();
        let schema = schema::<T>(response_schemas());
        let json = serde_json::to_value(&example).unwrap();
        let props = keys(&schema["properties"]);
        assert_eq!(keys(&json), props, "{name}");
        assert_eq!(required(&schema), props, "{name}");
        assert_eq!(schema["additionalProperties"], false, "{name}");
    }

    #[cfg(feature = "raft")]
    #[test]
    fn documented_limits_are_the_state_machine_limits() {
        use catga_cluster_raft::state_machine::limits;
        assert_eq!(MAX_TTL_MS, limits::MAX_TTL_MS);
        assert_eq!(MAX_OWNER_CHARS, limits::MAX_OWNER_LEN);
    }

    /// A request type accepts a document with every schema property, and
    /// one with the required properties only; unknown fields are refused,
    /// and the schema says so.
    fn check_request<T: JsonSchema + serde::de::DeserializeOwned>(full: Value) {
        let name = T::schema_name();
        let schema = schema::<T>(request_schemas());
        assert_eq!(keys(&full), keys(&schema["properties"]), "{name}");
        serde_json::from_value::<T>(full.clone()).unwrap();
        let required = required(&schema);
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
        assert!(serde_json::from_value::<T>(extra).is_err(), "{name}");
        assert_eq!(schema["additionalProperties"], false, "{name}");
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
            failover: Some(FailoverDto {
                fast_path: true,
                watching: None,
                last: Some(LastFailoverDto {
                    path: "fast",
                    term: 2,
                    previous_leader: Some(1),
                    took_ms: 4,
                }),
            }),
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
        check_response(KvListDto {
            prefix: "k".into(),
            revision: 3,
            keys: vec![KvEntryDto::new("k1".into(), Some(b"v"), 2)],
            truncated: false,
        });
        check_response(LeadershipEventDto {
            role: "leader",
            term: 2,
            leader: Some(LeaderDto {
                id: 1,
                endpoint: Some("http://a:1".into()),
            }),
            lease_valid: true,
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

    /// The constraints the server enforces, and the fields that may be
    /// `null` or absent, survive the derive.
    #[test]
    fn constraints_and_nullable_fields() {
        let acquire = schema::<AcquireRequest>(request_schemas());
        let owner = &acquire["properties"]["owner"];
        assert_eq!(
            (&owner["minLength"], &owner["maxLength"]),
            (&json!(1), &json!(256))
        );
        let ttl = &acquire["properties"]["ttl_ms"];
        assert_eq!(ttl["type"], json!(["integer", "null"]));
        assert_eq!(
            (&ttl["minimum"], &ttl["maximum"]),
            (&json!(1), &json!(86_400_000))
        );
        assert_eq!(acquire["properties"]["wait_ms"]["minimum"], 0);
        assert_eq!(required(&acquire), BTreeSet::from(["owner".to_owned()]));
        for renewal in [
            schema::<RenewRequest>(request_schemas()),
            schema::<ReleaseRequest>(request_schemas()),
        ] {
            assert_eq!(renewal["properties"]["owner"]["maxLength"], 256);
        }
        assert_eq!(
            schema::<RenewRequest>(request_schemas())["properties"]["ttl_ms"]["maximum"],
            MAX_TTL_MS
        );
        let transfer = schema::<TransferRequest>(request_schemas());
        assert_eq!(
            transfer["properties"]["to"]["type"],
            json!(["integer", "null"])
        );
        assert!(required(&transfer).is_empty());

        let leader = schema::<LeaderDto>(response_schemas());
        assert_eq!(
            leader["properties"]["endpoint"]["type"],
            json!(["string", "null"])
        );
        let ready = schema::<ReadyDto>(response_schemas());
        assert_eq!(
            ready["properties"]["leader"],
            json!({ "anyOf": [{ "$ref": "#/components/schemas/Leader" }, { "type": "null" }] })
        );
        assert_eq!(ready["properties"]["role"]["enum"], json!(ROLES));
        assert!(ready["properties"]["reason"]["enum"]
            .as_array()
            .unwrap()
            .contains(&Value::Null));
        let released = schema::<ReleasedDto>(response_schemas());
        assert_eq!(released["properties"]["released"]["const"], true);
    }

    #[test]
    fn every_role_is_in_the_schemas() {
        use catga_cluster_core::Role;
        for role in [
            Role::Leader,
            Role::Follower,
            Role::Candidate,
            Role::Learner,
            Role::Shutdown,
        ] {
            assert!(ROLES.contains(&role.as_str()), "{}", role.as_str());
        }
    }
}
