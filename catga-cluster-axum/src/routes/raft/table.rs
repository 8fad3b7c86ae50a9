//! The Raft-backed routes of the route table, each handler paired with its
//! description.

use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::routing::{delete, get, post, put, MethodRouter};
use catga_cluster_core::protocol::{
    raft_rpc_path, RaftRpc, FORWARDED_HEADER, RAFT_WATCH_PATH, REVISION_HEADER, TARGET_NODE_HEADER,
};
use http::{HeaderMap, Method};

use super::kv::{kv_delete, kv_get, kv_put};
use super::locks::{acquire_lock, release_lock, renew_lock};
use super::membership::{add_member, remove_member, transfer_leadership};
use super::rpc::{raft_rpc, raft_watch};
use super::watch::kv_prefix;
use crate::api::{
    AcquireRequest, AddMemberRequest, KvDeletedDto, KvEntryDto, KvListDto, KvWrittenDto,
    LockGrantDto, MembersDto, ReleaseRequest, ReleasedDto, RenewRequest, TransferDto,
    TransferRequest,
};
use crate::limits::Limits;
use crate::openapi::{resp, BodyDoc, ContentDoc, ResponseDoc, RouteDoc};
use crate::routes::paths;
use crate::routes::state::AppState;
use crate::routes::table::Route;

/// The Raft-backed routes of the table.
pub(in crate::routes) fn routes(l: &Limits, admin_timeout: Duration) -> Vec<Route> {
    let lock_timeout = l.max_lock_wait + l.request_timeout;
    let forwarded: &'static [(&'static str, &'static str)] = &[(
        FORWARDED_HEADER,
        "how often the request was forwarded already",
    )];
    let mut table = Vec::new();
    for rpc in RaftRpc::ALL {
        let path = raft_rpc_path(rpc);
        let name = path.rsplit('/').next().unwrap_or("rpc");
        table.push(Route {
            doc: RouteDoc {
                method: Method::POST,
                path: path.into(),
                operation_id: format!("raft_{name}").into(),
                summary: "An internal Raft RPC (binary body); the target node travels in x-catga-target-node",
                tag: "raft",
                protected: true,
                forwarded: false,
                body: BodyDoc::Octets,
                request_headers: &[(TARGET_NODE_HEADER, "the node id the RPC is addressed to")],
                responses: {
                    let mut responses = vec![
                        resp(200, "Raft's answer (binary)", ContentDoc::Octets),
                        resp(
                            400,
                            "missing target, or a body that is empty, does not decode, has trailing bytes or is not in canonical form",
                            ContentDoc::Problem,
                        ),
                        resp(421, "addressed to another node", ContentDoc::Problem),
                    ];
                    if rpc == RaftRpc::Elect {
                        responses.push(resp(
                            409,
                            "rpc-refused: the sender is not the leader this node follows in its current term, or this node cannot stand; nothing was started",
                            ContentDoc::Problem,
                        ));
                    }
                    responses
                },
            },
            limit: l.raft_body,
            timeout: l.raft_timeout,
            handler: post(move |s: State<AppState>, h: HeaderMap, b: Body| raft_rpc(s, rpc, h, b)),
        });
    }
    table.push(Route {
        doc: RouteDoc {
            method: Method::GET,
            path: RAFT_WATCH_PATH.into(),
            operation_id: "raft_watch".into(),
            summary: "The leader watch: a follower's long-lived request to its leader, answered with a binary stream that lasts as long as the node leads; its abrupt end tells the follower the leader's process may be gone",
            tag: "raft",
            protected: true,
            forwarded: false,
            body: BodyDoc::None,
            request_headers: &[(TARGET_NODE_HEADER, "the node id the watch is addressed to")],
            responses: vec![
                resp(
                    200,
                    "a stream of watch frames (binary) until this node stops leading",
                    ContentDoc::Octets,
                ),
                resp(400, "missing target", ContentDoc::Problem),
                resp(421, "addressed to another node", ContentDoc::Problem),
                resp(
                    409,
                    "rpc-refused: this node does not lead, or no longer claims leadership",
                    ContentDoc::Problem,
                ),
            ],
        },
        limit: l.json_body,
        timeout: l.raft_timeout,
        handler: get(raft_watch),
    });
    table.push(Route {
        doc: RouteDoc {
            method: Method::POST,
            path: paths::MEMBERS.into(),
            operation_id: "addMember".into(),
            summary: "Adds a node as a learner, waits for it to catch up, promotes it to voter",
            tag: "cluster",
            protected: true,
            forwarded: true,
            body: BodyDoc::json::<AddMemberRequest>(),
            request_headers: forwarded,
            responses: vec![
                resp(
                    200,
                    "the members after the change",
                    ContentDoc::json::<MembersDto>(),
                ),
                resp(
                    400,
                    "bad-request: an invalid id or endpoint, or the id is a member at another endpoint",
                    ContentDoc::Problem,
                ),
                ResponseDoc {
                    status: 409,
                    description: "membership-change-in-progress (with Retry-After), or quorum-at-risk: too few voters are reachable to promote the node safely",
                    content: ContentDoc::Problem,
                    headers: &["Retry-After"],
                },
                resp(503, "no-leader", ContentDoc::Problem),
                resp(
                    504,
                    "member-unreachable: the node did not catch up as a learner in time and was removed again (the voters are unchanged); or timeout / unknown-outcome",
                    ContentDoc::Problem,
                ),
            ],
        },
        limit: l.json_body,
        timeout: admin_timeout,
        handler: post(add_member),
    });
    table.push(Route {
        doc: RouteDoc {
            method: Method::DELETE,
            path: paths::MEMBER.into(),
            operation_id: "removeMember".into(),
            summary: "Removes a node from the voters and the cluster",
            tag: "cluster",
            protected: true,
            forwarded: true,
            body: BodyDoc::None,
            request_headers: forwarded,
            responses: vec![
                resp(
                    200,
                    "the members after the change",
                    ContentDoc::json::<MembersDto>(),
                ),
                resp(404, "no such member", ContentDoc::Problem),
                ResponseDoc {
                    status: 409,
                    description: "membership-change-in-progress (with Retry-After), or quorum-at-risk: the reachable voters would not be a majority of the voters left, no voter would be left, or the node is the leader (transfer leadership first)",
                    content: ContentDoc::Problem,
                    headers: &["Retry-After"],
                },
                resp(503, "no-leader", ContentDoc::Problem),
                resp(504, "timeout or unknown-outcome", ContentDoc::Problem),
            ],
        },
        limit: l.json_body,
        timeout: admin_timeout,
        handler: delete(remove_member),
    });
    table.push(Route {
        doc: RouteDoc {
            method: Method::POST,
            path: paths::LEADERSHIP_TRANSFER.into(),
            operation_id: "transferLeadership".into(),
            summary: "Hands leadership to a node (or the most up-to-date voter); answers once the new leader is known",
            tag: "cluster",
            protected: true,
            forwarded: true,
            body: BodyDoc::optional_json::<TransferRequest>(),
            request_headers: forwarded,
            responses: vec![
                resp(200, "the new leader", ContentDoc::json::<TransferDto>()),
                resp(
                    400,
                    "bad-request: the node named is not a voter, or there is no other voter",
                    ContentDoc::Problem,
                ),
                resp(503, "no-leader", ContentDoc::Problem),
                resp(
                    504,
                    "timeout: no successor took over in time (this node leads on)",
                    ContentDoc::Problem,
                ),
            ],
        },
        limit: l.json_body,
        timeout: admin_timeout,
        handler: post(transfer_leadership),
    });
    type LockRoute = (
        &'static str,
        &'static str,
        &'static str,
        BodyDoc,
        MethodRouter<AppState>,
        Vec<ResponseDoc>,
    );
    let lock_routes: [LockRoute; 3] = [
        (
            paths::LOCK_ACQUIRE,
            "acquireLock",
            "Takes a lock, waiting up to wait_ms while another owner holds it; works on any node",
            BodyDoc::json::<AcquireRequest>(),
            post(acquire_lock),
            vec![
                resp(200, "granted", ContentDoc::json::<LockGrantDto>()),
                ResponseDoc {
                    status: 409,
                    description: "lock-held: still held after the wait",
                    content: ContentDoc::Problem,
                    headers: &["Retry-After"],
                },
            ],
        ),
        (
            paths::LOCK_RENEW,
            "renewLock",
            "Extends the lease of a held lock",
            BodyDoc::json::<RenewRequest>(),
            post(renew_lock),
            vec![
                resp(200, "renewed", ContentDoc::json::<LockGrantDto>()),
                resp(409, "lock-lost", ContentDoc::Problem),
            ],
        ),
        (
            paths::LOCK_RELEASE,
            "releaseLock",
            "Releases a held lock",
            BodyDoc::json::<ReleaseRequest>(),
            post(release_lock),
            vec![
                resp(200, "released", ContentDoc::json::<ReleasedDto>()),
                resp(409, "lock-lost", ContentDoc::Problem),
            ],
        ),
    ];
    for (path, id, summary, body, handler, responses) in lock_routes {
        table.push(Route {
            doc: RouteDoc {
                method: Method::POST,
                path: path.into(),
                operation_id: id.into(),
                summary,
                tag: "locks",
                protected: true,
                forwarded: false,
                body,
                request_headers: &[],
                responses,
            },
            limit: l.json_body,
            timeout: lock_timeout,
            handler,
        });
    }
    let revision: &'static [&'static str] = &[REVISION_HEADER];
    table.push(Route {
        doc: RouteDoc {
            method: Method::GET,
            path: paths::KV.into(),
            operation_id: "kvGet".into(),
            summary: "A linearizable read of a key; the value is the raw body",
            tag: "kv",
            protected: true,
            forwarded: false,
            body: BodyDoc::None,
            request_headers: &[],
            responses: vec![
                ResponseDoc {
                    status: 200,
                    description: "the value",
                    content: ContentDoc::Octets,
                    headers: revision,
                },
                ResponseDoc {
                    status: 404,
                    description: "no such key",
                    content: ContentDoc::Problem,
                    headers: revision,
                },
            ],
        },
        limit: l.json_body,
        timeout: l.request_timeout,
        handler: get(kv_get),
    });
    table.push(Route {
        doc: RouteDoc {
            method: Method::GET,
            path: paths::KV_PREFIX.into(),
            operation_id: "kvList".into(),
            summary: "The keys under `prefix` (query), linearizable, with the revision read at; with `watch=true`, Server-Sent Events of their changes (`put`, `delete`) in revision order from `from_revision` (or now), resumed by `Last-Event-ID`",
            tag: "kv",
            protected: true,
            forwarded: false,
            body: BodyDoc::None,
            request_headers: &[(
                "Last-Event-ID",
                "with watch=true: the id of the last event received; the stream resumes right after it",
            )],
            responses: vec![
                resp(
                    200,
                    "the keys (JSON), or with watch=true an event stream whose data are KvEntry (a delete has no value)",
                    ContentDoc::json_or_events::<KvListDto, KvEntryDto>(),
                ),
                resp(
                    400,
                    "bad-request: a malformed query or Last-Event-ID",
                    ContentDoc::Problem,
                ),
                resp(
                    410,
                    "compacted: the start is older than the history this node keeps; oldest_revision says where a watch can start",
                    ContentDoc::Problem,
                ),
                resp(503, "no-leader", ContentDoc::Problem),
            ],
        },
        limit: l.json_body,
        timeout: l.request_timeout,
        handler: get(kv_prefix),
    });
    table.push(Route {
        doc: RouteDoc {
            method: Method::PUT,
            path: paths::KV.into(),
            operation_id: "kvPut".into(),
            summary: "Writes a key (the raw body is the value); If-Match: <revision> makes it a compare-and-set (0: only if absent); `?ttl_ms=N` (1 ms to one day) makes it expire N ms later by the leader's clock (a delete; a later write sets its expiry again, a write without ttl_ms makes it permanent)",
            tag: "kv",
            protected: true,
            forwarded: false,
            body: BodyDoc::Octets,
            request_headers: &[("If-Match", "the revision the key must have (0: absent)")],
            responses: vec![
                ResponseDoc {
                    status: 200,
                    description: "written",
                    content: ContentDoc::json::<KvWrittenDto>(),
                    headers: revision,
                },
                ResponseDoc {
                    status: 412,
                    description: "revision-mismatch",
                    content: ContentDoc::Problem,
                    headers: revision,
                },
            ],
        },
        limit: l.kv_body,
        timeout: l.request_timeout,
        handler: put(kv_put),
    });
    table.push(Route {
        doc: RouteDoc {
            method: Method::DELETE,
            path: paths::KV.into(),
            operation_id: "kvDelete".into(),
            summary: "Deletes a key; If-Match: <revision> makes it conditional",
            tag: "kv",
            protected: true,
            forwarded: false,
            body: BodyDoc::None,
            request_headers: &[("If-Match", "the revision the key must have")],
            responses: vec![
                ResponseDoc {
                    status: 200,
                    description: "deleted",
                    content: ContentDoc::json::<KvDeletedDto>(),
                    headers: revision,
                },
                resp(404, "no such key", ContentDoc::Problem),
                resp(412, "revision-mismatch", ContentDoc::Problem),
            ],
        },
        limit: l.json_body,
        timeout: l.request_timeout,
        handler: delete(kv_delete),
    });
    table
}
