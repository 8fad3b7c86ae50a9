//! The strict decoder, for every RPC's request type: what postcard already
//! refuses, what the strict rules add, and properties over arbitrary bytes
//! and valid encodings (proptest prints a failing case, shrunk, and saves
//! its seed under `proptest-regressions/` to replay it).

use std::collections::{BTreeMap, BTreeSet};

use catga_cluster_core::NodeId;
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use openraft::{
    BasicNode, CommittedLeaderId, EntryPayload, LogId, Membership, SnapshotMeta, StoredMembership,
    Vote,
};
use proptest::prelude::*;
use proptest::sample::Index;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{decode, decode_canonical, encode, BodyError};
use crate::network::wire::{ElectRequest, GoneRequest, ProposeRequest, ReadRequest};
use crate::types::{Command, Entry, Operation, TypeConfig};

type Append = AppendEntriesRequest<TypeConfig>;
type Snapshot = InstallSnapshotRequest<TypeConfig>;
type VoteReq = VoteRequest<NodeId>;

fn malformed<T: Serialize + DeserializeOwned + std::fmt::Debug>(bytes: &[u8]) -> String {
    match decode_canonical::<T>(bytes) {
        Err(BodyError::Malformed(reason)) => reason,
        other => panic!("{bytes:?}: expected a malformed body, got {other:?}"),
    }
}

fn elect(from: u64, term: u64) -> ElectRequest {
    ElectRequest {
        from: NodeId::new(from),
        term,
    }
}

#[test]
fn an_empty_body_is_refused_by_every_rpc() {
    assert_eq!(
        decode_canonical::<Append>(b"").unwrap_err(),
        BodyError::Empty
    );
    assert_eq!(
        decode_canonical::<VoteReq>(b"").unwrap_err(),
        BodyError::Empty
    );
    assert_eq!(
        decode_canonical::<Snapshot>(b"").unwrap_err(),
        BodyError::Empty
    );
    assert_eq!(
        decode_canonical::<ElectRequest>(b"").unwrap_err(),
        BodyError::Empty
    );
    assert_eq!(
        decode_canonical::<ProposeRequest>(b"").unwrap_err(),
        BodyError::Empty
    );
    assert_eq!(
        decode_canonical::<ReadRequest>(b"").unwrap_err(),
        BodyError::Empty
    );
    // Also a type that would decode from nothing.
    assert_eq!(decode::<()>(b"").unwrap_err(), BodyError::Empty);
}

#[test]
fn trailing_bytes_are_refused() {
    let mut body = encode(&elect(1, 5)).unwrap().to_vec();
    assert_eq!(body, [1, 5]);
    assert_eq!(
        decode_canonical::<ElectRequest>(&body).unwrap(),
        elect(1, 5)
    );
    body.extend_from_slice(&[0, 7, 7]);
    // postcard alone ignores them.
    assert!(postcard::from_bytes::<ElectRequest>(&body).is_ok());
    assert_eq!(
        decode_canonical::<ElectRequest>(&body).unwrap_err(),
        BodyError::TrailingBytes { extra: 3 }
    );
    assert_eq!(
        decode::<ElectRequest>(&body).unwrap_err(),
        BodyError::TrailingBytes { extra: 3 }
    );
}

#[test]
fn unknown_enum_variants_are_refused() {
    // ReadRequest has four variants: index 4 is unknown.
    malformed::<ReadRequest>(&[4, 1, b'k']);
    // Operation has ten (in a ProposeRequest: no request id, then the op).
    malformed::<ProposeRequest>(&[0, 10]);
    malformed::<ProposeRequest>(&[0, 0xff, 0xff, 0xff, 0xff, 0x0f]);
    // An entry payload is Blank, Normal or Membership: index 3 is unknown.
    // vote (term 1, node 1, committed), no prev log id, one entry: log id
    // (term 1, node 1, index 1), payload 3.
    malformed::<Append>(&[1, 1, 1, 0, 1, 1, 1, 1, 3]);
    // A `bool` other than 0 or 1 (the vote's `committed`).
    malformed::<VoteReq>(&[1, 1, 2, 0]);
    // An `Option` tag other than 0 or 1 (the request id).
    malformed::<ProposeRequest>(&[2, 0]);
}

#[test]
fn lengths_past_the_end_are_refused() {
    // A key of 100 bytes with three present.
    malformed::<ReadRequest>(&[0, 100, b'a', b'b', b'c']);
    // A length of u64::MAX: refused without allocating for it.
    let huge = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
    let mut body = vec![0];
    body.extend_from_slice(&huge);
    malformed::<ReadRequest>(&body);
    // As many entries, in an append.
    let mut body = vec![1, 1, 1, 0];
    body.extend_from_slice(&huge);
    malformed::<Append>(&body);
    // A varint longer than any u64.
    malformed::<ElectRequest>(&[0xff; 11]);
    // A body cut short.
    let full = encode(&ReadRequest::Get { key: "key".into() }).unwrap();
    for cut in 1..full.len() {
        malformed::<ReadRequest>(&full[..cut]);
    }
}

#[test]
fn non_canonical_encodings_are_refused() {
    // 1 padded with a continuation byte: postcard reads it as 1.
    assert_eq!(
        postcard::from_bytes::<ElectRequest>(&[0x81, 0x00, 5]).unwrap(),
        elect(1, 5)
    );
    assert_eq!(
        decode_canonical::<ElectRequest>(&[0x81, 0x00, 5]).unwrap_err(),
        BodyError::NonCanonical
    );
    // A set (membership configs are sets) out of order, or repeated.
    assert_eq!(
        decode_canonical::<BTreeSet<u64>>(&[2, 1, 2]).unwrap(),
        BTreeSet::from([1, 2])
    );
    for bad in [[2, 2, 1], [2, 1, 1]] {
        assert_eq!(
            decode_canonical::<BTreeSet<u64>>(&bad).unwrap_err(),
            BodyError::NonCanonical
        );
    }
}

// ---------------------------------------------------------------------------
// Strategies: valid values of every RPC's request type.
// ---------------------------------------------------------------------------

fn node_id() -> impl Strategy<Value = NodeId> {
    prop_oneof![0u64..8, any::<u64>()].prop_map(NodeId::new)
}

fn number() -> impl Strategy<Value = u64> {
    prop_oneof![0u64..300, any::<u64>()]
}

fn text() -> impl Strategy<Value = String> {
    "\\PC{0,12}"
}

fn vote() -> impl Strategy<Value = Vote<NodeId>> {
    (number(), node_id(), any::<bool>()).prop_map(|(term, node, committed)| {
        if committed {
            Vote::new_committed(term, node)
        } else {
            Vote::new(term, node)
        }
    })
}

fn log_id() -> impl Strategy<Value = LogId<NodeId>> {
    (number(), node_id(), number())
        .prop_map(|(term, node, index)| LogId::new(CommittedLeaderId::new(term, node), index))
}

fn membership() -> impl Strategy<Value = Membership<NodeId, BasicNode>> {
    (
        proptest::collection::vec(proptest::collection::btree_set(node_id(), 0..4), 1..3),
        proptest::collection::btree_map(node_id(), text(), 0..4),
    )
        .prop_map(|(configs, nodes)| {
            let nodes: BTreeMap<NodeId, BasicNode> = nodes
                .into_iter()
                .map(|(id, addr)| (id, BasicNode::new(addr)))
                .collect();
            Membership::new(configs, nodes)
        })
}

fn operation() -> impl Strategy<Value = Operation> {
    let revision = || proptest::option::of(number());
    prop_oneof![
        Just(Operation::Noop),
        (
            text(),
            proptest::collection::vec(any::<u8>(), 0..16),
            revision()
        )
            .prop_map(|(key, value, expected_revision)| Operation::Put {
                key,
                value,
                expected_revision
            }),
        (text(), revision()).prop_map(|(key, expected_revision)| Operation::Delete {
            key,
            expected_revision
        }),
        (text(), text(), number()).prop_map(|(name, owner, ttl_ms)| Operation::LockAcquire {
            name,
            owner,
            ttl_ms
        }),
        (text(), text(), number(), number()).prop_map(|(name, owner, token, ttl_ms)| {
            Operation::LockRenew {
                name,
                owner,
                token,
                ttl_ms,
            }
        }),
        (text(), text(), number()).prop_map(|(name, owner, token)| Operation::LockRelease {
            name,
            owner,
            token
        }),
        (text(), text(), number(), number(), number()).prop_map(
            |(name, owner, waiter, ttl_ms, wait_ms)| Operation::LockWait {
                name,
                owner,
                waiter,
                ttl_ms,
                wait_ms,
            }
        ),
        (text(), text(), number()).prop_map(|(name, owner, waiter)| Operation::LockCancel {
            name,
            owner,
            waiter
        }),
        (
            text(),
            proptest::collection::vec(any::<u8>(), 0..16),
            revision(),
            number()
        )
            .prop_map(
                |(key, value, expected_revision, ttl_ms)| Operation::PutTtl {
                    key,
                    value,
                    expected_revision,
                    ttl_ms
                }
            ),
        proptest::collection::vec((proptest::option::of(text()), number(), text()), 0..4).prop_map(
            |commands| Operation::Batch(
                commands
                    .into_iter()
                    .map(|(request_id, leader_time_ms, key)| Command {
                        request_id,
                        leader_time_ms,
                        op: Operation::Delete {
                            key,
                            expected_revision: None,
                        },
                    })
                    .collect()
            )
        ),
    ]
}

fn entry() -> impl Strategy<Value = Entry> {
    let payload = prop_oneof![
        Just(EntryPayload::Blank),
        (proptest::option::of(text()), number(), operation()).prop_map(
            |(request_id, leader_time_ms, op)| {
                EntryPayload::Normal(Command {
                    request_id,
                    leader_time_ms,
                    op,
                })
            }
        ),
        membership().prop_map(EntryPayload::Membership),
    ];
    (log_id(), payload).prop_map(|(log_id, payload)| Entry { log_id, payload })
}

fn append() -> impl Strategy<Value = Append> {
    (
        vote(),
        proptest::option::of(log_id()),
        proptest::collection::vec(entry(), 0..4),
        proptest::option::of(log_id()),
    )
        .prop_map(|(vote, prev_log_id, entries, leader_commit)| Append {
            vote,
            prev_log_id,
            entries,
            leader_commit,
        })
}

fn vote_request() -> impl Strategy<Value = VoteReq> {
    (vote(), proptest::option::of(log_id()))
        .prop_map(|(vote, last_log_id)| VoteRequest { vote, last_log_id })
}

fn snapshot() -> impl Strategy<Value = Snapshot> {
    (
        vote(),
        proptest::option::of(log_id()),
        proptest::option::of(log_id()),
        membership(),
        text(),
        number(),
        proptest::collection::vec(any::<u8>(), 0..64),
        any::<bool>(),
    )
        .prop_map(
            |(
                vote,
                last_log_id,
                membership_log_id,
                membership,
                snapshot_id,
                offset,
                data,
                done,
            )| {
                Snapshot {
                    vote,
                    meta: SnapshotMeta {
                        last_log_id,
                        last_membership: StoredMembership::new(membership_log_id, membership),
                        snapshot_id,
                    },
                    offset,
                    data,
                    done,
                }
            },
        )
}

fn elect_request() -> impl Strategy<Value = ElectRequest> {
    (node_id(), number()).prop_map(|(from, term)| ElectRequest { from, term })
}

fn gone_request() -> impl Strategy<Value = GoneRequest> {
    (node_id(), node_id(), number()).prop_map(|(from, leader, term)| GoneRequest {
        from,
        leader,
        term,
    })
}

fn propose() -> impl Strategy<Value = ProposeRequest> {
    (proptest::option::of(text()), operation())
        .prop_map(|(request_id, op)| ProposeRequest { request_id, op })
}

fn read() -> impl Strategy<Value = ReadRequest> {
    prop_oneof![
        text().prop_map(|key| ReadRequest::Get { key }),
        (text(), any::<usize>()).prop_map(|(prefix, limit)| ReadRequest::List { prefix, limit }),
        text().prop_map(|name| ReadRequest::Lock { name }),
    ]
}

// ---------------------------------------------------------------------------
// Properties, the same for every RPC.
// ---------------------------------------------------------------------------

/// Whatever `bytes` are, decoding does not panic, and what it accepts
/// re-encodes to exactly `bytes`.
fn fails_or_is_canonical<T: Serialize + DeserializeOwned>(
    bytes: &[u8],
) -> Result<(), TestCaseError> {
    if let Ok(value) = decode_canonical::<T>(bytes) {
        let again = encode(&value).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(again.as_ref(), bytes);
    }
    Ok(())
}

/// A valid encoding decodes and re-encodes to itself; with any non-empty
/// suffix it is refused for exactly those bytes.
fn valid_and_suffixed<T: Serialize + DeserializeOwned>(
    value: &T,
    suffix: &[u8],
) -> Result<(), TestCaseError> {
    let body = encode(value).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let decoded = decode_canonical::<T>(&body);
    prop_assert!(decoded.is_ok(), "{:?}", decoded.err());
    fails_or_is_canonical::<T>(&body)?;
    let mut longer = body.to_vec();
    longer.extend_from_slice(suffix);
    prop_assert_eq!(
        decode_canonical::<T>(&longer).err(),
        Some(BodyError::TrailingBytes {
            extra: suffix.len()
        })
    );
    Ok(())
}

/// One edit of a byte string.
#[derive(Debug, Clone)]
enum Edit {
    Set(Index, u8),
    Insert(Index, u8),
    Remove(Index),
    Truncate(Index),
    /// Pads the byte with a continuation byte (`b` becomes `b | 0x80, 0`):
    /// an overlong varint where `b` ends one.
    Pad(Index),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Edit::Set(i, b)),
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Edit::Insert(i, b)),
        any::<Index>().prop_map(Edit::Remove),
        any::<Index>().prop_map(Edit::Truncate),
        any::<Index>().prop_map(Edit::Pad),
    ]
}

fn apply(bytes: &mut Vec<u8>, edits: &[Edit]) {
    for edit in edits {
        match edit {
            Edit::Insert(i, b) => {
                let at = i.index(bytes.len() + 1);
                bytes.insert(at, *b);
            }
            _ if bytes.is_empty() => {}
            Edit::Set(i, b) => {
                let at = i.index(bytes.len());
                bytes[at] = *b;
            }
            Edit::Remove(i) => {
                let at = i.index(bytes.len());
                bytes.remove(at);
            }
            Edit::Truncate(i) => {
                let at = i.index(bytes.len());
                bytes.truncate(at);
            }
            Edit::Pad(i) => {
                let at = i.index(bytes.len());
                bytes[at] |= 0x80;
                bytes.insert(at + 1, 0);
            }
        }
    }
}

/// A valid encoding with a few bytes changed, inserted or removed: most
/// such bodies get far into the decoder, unlike random bytes.
fn edited<T: Serialize + DeserializeOwned>(value: &T, edits: &[Edit]) -> Result<(), TestCaseError> {
    let mut body = encode(value)
        .map_err(|e| TestCaseError::fail(e.to_string()))?
        .to_vec();
    apply(&mut body, edits);
    fails_or_is_canonical::<T>(&body)
}

macro_rules! rpc_decoder_properties {
    ($module:ident, $ty:ty, $strategy:expr) => {
        mod $module {
            use super::*;

            proptest! {
                #[test]
                fn arbitrary_bytes_fail_or_decode_canonically(
                    bytes in proptest::collection::vec(any::<u8>(), 0..256),
                ) {
                    fails_or_is_canonical::<$ty>(&bytes)?;
                }

                #[test]
                fn valid_encodings_decode_and_refuse_any_suffix(
                    value in $strategy,
                    suffix in proptest::collection::vec(any::<u8>(), 1..16),
                ) {
                    valid_and_suffixed::<$ty>(&value, &suffix)?;
                }

                #[test]
                fn edited_encodings_fail_or_decode_canonically(
                    value in $strategy,
                    edits in proptest::collection::vec(edit(), 1..4),
                ) {
                    edited::<$ty>(&value, &edits)?;
                }
            }
        }
    };
}

rpc_decoder_properties!(append_rpc, Append, append());
rpc_decoder_properties!(vote_rpc, VoteReq, vote_request());
rpc_decoder_properties!(snapshot_rpc, Snapshot, snapshot());
rpc_decoder_properties!(elect_rpc, ElectRequest, elect_request());
rpc_decoder_properties!(propose_rpc, ProposeRequest, propose());
rpc_decoder_properties!(read_rpc, ReadRequest, read());
rpc_decoder_properties!(gone_rpc, GoneRequest, gone_request());
