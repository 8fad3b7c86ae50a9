//! Checks of the Raft RPC wire decoders on arbitrary bytes, for the fuzz
//! targets in `fuzz/` and the seed-corpus test below. Not part of the API:
//! compiled for this crate's tests and with the `fuzzing` feature only.
//!
//! [`check`] decodes `bytes` as one [`Message`] the way the node does
//! (requests strictly, as the server reads them; answers as the client reads
//! them; watch frames through the frame reader) and panics if a rule breaks:
//!
//! * a request body is accepted only if re-encoding the value gives the very
//!   same bytes (the codec is canonical), and the strict and the lenient
//!   decoder agree on everything but the canonical check;
//! * an answer that decodes re-encodes to a body the strict decoder accepts,
//!   that decodes to a value encoding to the same bytes again, and that is
//!   no longer than what was read;
//! * watch frames read the same however the body is split into chunks, and
//!   every frame read re-encodes to a frame that reads back the same.

use catga_cluster_core::NodeId;
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::network::wire::{
    decode, decode_canonical, encode, AppendResult, BodyError, ElectRequest, ElectResult,
    FrameReader, GoneAnswer, GoneRequest, ProposeRequest, ProposeResult, ReadRequest, ReadResult,
    SnapshotResult, VoteResult, WatchFrame,
};
use crate::types::TypeConfig;

/// One message of the Raft RPCs, as the node decodes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Message {
    /// The body of an append-entries RPC.
    AppendRequest,
    /// The answer to an append-entries RPC.
    AppendAnswer,
    /// The body of a vote RPC.
    VoteRequest,
    /// The answer to a vote RPC.
    VoteAnswer,
    /// The body of a snapshot-chunk RPC.
    SnapshotRequest,
    /// The answer to a snapshot-chunk RPC.
    SnapshotAnswer,
    /// The body of an elect RPC.
    ElectRequest,
    /// The answer to an elect RPC.
    ElectAnswer,
    /// The body of a gone RPC.
    GoneRequest,
    /// The answer to a gone RPC.
    GoneAnswer,
    /// The body of a propose RPC.
    ProposeRequest,
    /// The answer to a propose RPC.
    ProposeAnswer,
    /// The body of a read RPC.
    ReadRequest,
    /// The answer to a read RPC.
    ReadAnswer,
    /// The body of a leader watch: length-prefixed frames.
    WatchFrames,
}

impl Message {
    /// Every message.
    pub const ALL: [Message; 15] = [
        Message::AppendRequest,
        Message::AppendAnswer,
        Message::VoteRequest,
        Message::VoteAnswer,
        Message::SnapshotRequest,
        Message::SnapshotAnswer,
        Message::ElectRequest,
        Message::ElectAnswer,
        Message::GoneRequest,
        Message::GoneAnswer,
        Message::ProposeRequest,
        Message::ProposeAnswer,
        Message::ReadRequest,
        Message::ReadAnswer,
        Message::WatchFrames,
    ];

    /// The name of the fuzz target (and of its corpus directory).
    pub fn target(self) -> &'static str {
        match self {
            Message::AppendRequest => "raft_append_request",
            Message::AppendAnswer => "raft_append_answer",
            Message::VoteRequest => "raft_vote_request",
            Message::VoteAnswer => "raft_vote_answer",
            Message::SnapshotRequest => "raft_snapshot_request",
            Message::SnapshotAnswer => "raft_snapshot_answer",
            Message::ElectRequest => "raft_elect_request",
            Message::ElectAnswer => "raft_elect_answer",
            Message::GoneRequest => "raft_gone_request",
            Message::GoneAnswer => "raft_gone_answer",
            Message::ProposeRequest => "raft_propose_request",
            Message::ProposeAnswer => "raft_propose_answer",
            Message::ReadRequest => "raft_read_request",
            Message::ReadAnswer => "raft_read_answer",
            Message::WatchFrames => "raft_watch_frames",
        }
    }
}

/// Decodes `bytes` as `message` and panics if a rule of the codec breaks
/// (see the [module docs](self)).
pub fn check(message: Message, bytes: &[u8]) {
    match message {
        Message::AppendRequest => request::<AppendEntriesRequest<TypeConfig>>(bytes),
        Message::AppendAnswer => answer::<AppendResult>(bytes),
        Message::VoteRequest => request::<VoteRequest<NodeId>>(bytes),
        Message::VoteAnswer => answer::<VoteResult>(bytes),
        Message::SnapshotRequest => request::<InstallSnapshotRequest<TypeConfig>>(bytes),
        Message::SnapshotAnswer => answer::<SnapshotResult>(bytes),
        Message::ElectRequest => request::<ElectRequest>(bytes),
        Message::ElectAnswer => answer::<ElectResult>(bytes),
        Message::GoneRequest => request::<GoneRequest>(bytes),
        Message::GoneAnswer => answer::<GoneAnswer>(bytes),
        Message::ProposeRequest => request::<ProposeRequest>(bytes),
        Message::ProposeAnswer => answer::<ProposeResult>(bytes),
        Message::ReadRequest => request::<ReadRequest>(bytes),
        Message::ReadAnswer => answer::<ReadResult>(bytes),
        Message::WatchFrames => watch_frames(bytes),
    }
}

/// A request body, read as the server reads it.
fn request<T: Serialize + DeserializeOwned>(bytes: &[u8]) {
    let strict = decode_canonical::<T>(bytes);
    let lenient = decode::<T>(bytes);
    match &strict {
        Ok(value) => {
            let encoded = encode(value).expect("an accepted request re-encodes");
            assert_eq!(
                &encoded[..],
                bytes,
                "an accepted request body is not the encoding of its value"
            );
            assert!(lenient.is_ok(), "accepted strictly but not leniently");
        }
        Err(BodyError::NonCanonical) => {
            let value = lenient.expect("refused as non-canonical, so it decodes");
            let encoded = encode(&value).expect("a decoded value re-encodes");
            assert_ne!(&encoded[..], bytes, "refused its own canonical encoding");
        }
        Err(refused) => match lenient {
            Ok(_) => panic!("refused strictly ({refused}) but decodes leniently"),
            Err(lenient) => assert_eq!(&lenient, refused, "the decoders disagree"),
        },
    }
}

/// An answer, read as the client reads it.
fn answer<T: Serialize + DeserializeOwned>(bytes: &[u8]) {
    let Ok(value) = decode::<T>(bytes) else {
        return;
    };
    let encoded = encode(&value).expect("a decoded answer re-encodes");
    assert!(
        encoded.len() <= bytes.len(),
        "the re-encoding ({} bytes) is longer than what was read ({} bytes)",
        encoded.len(),
        bytes.len()
    );
    let again: T = decode_canonical(&encoded).expect("a re-encoded answer reads strictly");
    let twice = encode(&again).expect("a decoded answer re-encodes");
    assert_eq!(encoded, twice, "re-encoding is not a fixed point");
}

/// A leader watch body: frames, split into chunks at the points the first
/// byte picks.
fn watch_frames(bytes: &[u8]) {
    let Some((&split, body)) = bytes.split_first() else {
        return;
    };
    let whole = read_frames(&[body]);
    let step = usize::from(split % 7) + 1;
    let chunks: Vec<&[u8]> = body.chunks(step).collect();
    assert_eq!(
        read_frames(&chunks),
        whole,
        "the frames depend on how the body is split"
    );
    for frame in whole.iter().flatten() {
        let framed = frame.to_bytes();
        let read = read_frames(&[&framed[..]]);
        assert_eq!(read, [Ok(frame.clone())], "a frame does not read back");
    }
}

/// The frames read from `chunks`, up to and including the first error.
fn read_frames(chunks: &[&[u8]]) -> Vec<Result<WatchFrame, BodyError>> {
    let mut reader = FrameReader::default();
    let mut frames = Vec::new();
    for chunk in chunks {
        reader.push(chunk);
        while let Some(frame) = reader.next_frame() {
            let failed = frame.is_err();
            frames.push(frame);
            if failed {
                return frames;
            }
        }
    }
    frames
}

/// Valid encodings of `message`, to seed a corpus.
pub fn seeds(message: Message) -> Vec<Vec<u8>> {
    seeds::of(message)
}

mod seeds {
    use std::collections::BTreeMap;

    use catga_cluster_core::{NodeId, NotLeader, NotLeaderReason};
    use openraft::error::{Fatal, RaftError};
    use openraft::raft::{
        AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest,
        InstallSnapshotResponse, VoteRequest, VoteResponse,
    };
    use openraft::{BasicNode, CommittedLeaderId, EntryPayload, Membership, Vote};
    use serde::Serialize;

    use super::Message;
    use crate::network::wire::{
        encode, AppendResult, ElectRequest, ElectResult, GoneAnswer, GoneRequest, ProposeRequest,
        ProposeResult, ReadAnswer, ReadRequest, ReadResult, SnapshotResult, VoteResult, WatchEnd,
        WatchFrame, WireError,
    };
    use crate::types::{
        Command, CommandResponse, Entry, KvValue, LockState, LogId, Operation, SnapshotMeta,
        StoredMembership, TypeConfig,
    };

    fn bytes<T: Serialize>(values: &[T]) -> Vec<Vec<u8>> {
        values
            .iter()
            .map(|v| encode(v).map(|b| b.to_vec()).unwrap_or_default())
            .collect()
    }

    fn log_id(term: u64, index: u64) -> LogId {
        LogId::new(CommittedLeaderId::new(term, NodeId::new(1)), index)
    }

    fn membership() -> Membership<NodeId, BasicNode> {
        let nodes: BTreeMap<NodeId, BasicNode> = (1..=3)
            .map(|i| (NodeId::new(i), BasicNode::new(format!("http://n{i}:5000"))))
            .collect();
        Membership::new(vec![nodes.keys().copied().collect()], nodes)
    }

    fn operations() -> Vec<Operation> {
        vec![
            Operation::Noop,
            Operation::Put {
                key: "orders/1".into(),
                value: b"{\"total\":3}".to_vec(),
                expected_revision: Some(7),
            },
            Operation::Delete {
                key: "k".into(),
                expected_revision: None,
            },
            Operation::LockAcquire {
                name: "jobs".into(),
                owner: "a".into(),
                ttl_ms: 30_000,
            },
            Operation::LockWait {
                name: "jobs".into(),
                owner: "b".into(),
                waiter: 2,
                ttl_ms: 1000,
                wait_ms: 5000,
            },
            Operation::LockRenew {
                name: "jobs".into(),
                owner: "a".into(),
                token: 4,
                ttl_ms: 1000,
            },
            Operation::LockRelease {
                name: "jobs".into(),
                owner: "a".into(),
                token: 4,
            },
            Operation::LockCancel {
                name: "jobs".into(),
                owner: "b".into(),
                waiter: 2,
            },
            Operation::Batch(vec![Command {
                request_id: Some("r-1".into()),
                leader_time_ms: 1_700_000_000_000,
                op: Operation::Noop,
            }]),
        ]
    }

    fn entries() -> Vec<Entry> {
        let mut entries = vec![
            Entry {
                log_id: log_id(2, 10),
                payload: EntryPayload::Blank,
            },
            Entry {
                log_id: log_id(2, 11),
                payload: EntryPayload::Membership(membership()),
            },
        ];
        for (i, op) in operations().into_iter().enumerate() {
            entries.push(Entry {
                log_id: log_id(2, 12 + i as u64),
                payload: EntryPayload::Normal(Command {
                    request_id: (i % 2 == 0).then(|| format!("req-{i}")),
                    leader_time_ms: 1_700_000_000_000 + i as u64,
                    op,
                }),
            });
        }
        entries
    }

    fn responses() -> Vec<CommandResponse> {
        vec![
            CommandResponse::Empty,
            CommandResponse::Written { revision: 12 },
            CommandResponse::Deleted { existed: true },
            CommandResponse::RevisionMismatch { current: 3 },
            CommandResponse::LockGranted {
                token: 9,
                expires_at_ms: 1_700_000_030_000,
            },
            CommandResponse::LockHeld {
                expires_at_ms: 1_700_000_030_000,
                remaining_ms: 200,
            },
            CommandResponse::LockLost,
            CommandResponse::Rejected {
                reason: "the key is empty".into(),
            },
            CommandResponse::Batch(vec![CommandResponse::Empty, CommandResponse::LockReleased]),
        ]
    }

    pub(super) fn of(message: Message) -> Vec<Vec<u8>> {
        let vote = Vote::new_committed(3, NodeId::new(2));
        match message {
            Message::AppendRequest => {
                let all = entries();
                bytes(&[
                    AppendEntriesRequest::<TypeConfig> {
                        vote,
                        prev_log_id: None,
                        entries: Vec::new(),
                        leader_commit: None,
                    },
                    AppendEntriesRequest {
                        vote,
                        prev_log_id: Some(log_id(2, 9)),
                        entries: all,
                        leader_commit: Some(log_id(2, 9)),
                    },
                ])
            }
            Message::AppendAnswer => bytes::<AppendResult>(&[
                Ok(AppendEntriesResponse::Success),
                Ok(AppendEntriesResponse::PartialSuccess(Some(log_id(2, 4)))),
                Ok(AppendEntriesResponse::Conflict),
                Ok(AppendEntriesResponse::HigherVote(vote)),
                Err(RaftError::Fatal(Fatal::Stopped)),
            ]),
            Message::VoteRequest => bytes(&[
                VoteRequest::<NodeId> {
                    vote: Vote::new(4, NodeId::new(3)),
                    last_log_id: Some(log_id(3, 40)),
                },
                VoteRequest {
                    vote: Vote::new(1, NodeId::new(1)),
                    last_log_id: None,
                },
            ]),
            Message::VoteAnswer => bytes::<VoteResult>(&[
                Ok(VoteResponse {
                    vote,
                    vote_granted: true,
                    last_log_id: Some(log_id(3, 40)),
                }),
                Err(RaftError::Fatal(Fatal::Panicked)),
            ]),
            Message::SnapshotRequest => bytes(&[InstallSnapshotRequest::<TypeConfig> {
                vote,
                meta: SnapshotMeta {
                    last_log_id: Some(log_id(3, 100)),
                    last_membership: StoredMembership::new(Some(log_id(1, 1)), membership()),
                    snapshot_id: "3-100-12345".into(),
                },
                offset: 0,
                data: vec![0xca, 2, 1, 3, 1, 100],
                done: true,
            }]),
            Message::SnapshotAnswer => bytes::<SnapshotResult>(&[
                Ok(InstallSnapshotResponse { vote }),
                Err(RaftError::Fatal(Fatal::Stopped)),
            ]),
            Message::ElectRequest => bytes(&[ElectRequest {
                from: NodeId::new(1),
                term: 5,
            }]),
            Message::ElectAnswer => bytes::<ElectResult>(&[Ok(()), Err("not a voter".into())]),
            Message::GoneRequest => bytes(&[GoneRequest {
                from: NodeId::new(2),
                leader: NodeId::new(1),
                term: 5,
            }]),
            Message::GoneAnswer => bytes(&[
                GoneAnswer {
                    confirmed: true,
                    last_log: Some(log_id(5, 77)),
                },
                GoneAnswer {
                    confirmed: false,
                    last_log: None,
                },
            ]),
            Message::ProposeRequest => {
                let requests: Vec<ProposeRequest> = operations()
                    .into_iter()
                    .enumerate()
                    .map(|(i, op)| ProposeRequest {
                        request_id: (i % 2 == 1).then(|| format!("req-{i}")),
                        op,
                    })
                    .collect();
                bytes(&requests)
            }
            Message::ProposeAnswer => {
                let mut answers: Vec<ProposeResult> = responses().into_iter().map(Ok).collect();
                answers.extend([
                    Err(WireError::NotLeader(
                        NotLeader::new(NotLeaderReason::NotLeader).with_leader_id(NodeId::new(2)),
                    )),
                    Err(WireError::UnknownOutcome),
                    Err(WireError::Timeout),
                    Err(WireError::Invalid("bad".into())),
                    Err(WireError::Shutdown),
                    Err(WireError::Storage("disk".into())),
                    Err(WireError::Other("other".into())),
                ]);
                bytes(&answers)
            }
            Message::ReadRequest => bytes(&[
                ReadRequest::Get { key: "k".into() },
                ReadRequest::List {
                    prefix: "orders/".into(),
                    limit: 100,
                },
                ReadRequest::Lock {
                    name: "jobs".into(),
                },
            ]),
            Message::ReadAnswer => {
                let value = KvValue {
                    value: b"v".to_vec(),
                    revision: 4,
                };
                bytes::<ReadResult>(&[
                    Ok(ReadAnswer::Value(Some(value.clone()))),
                    Ok(ReadAnswer::Value(None)),
                    Ok(ReadAnswer::Entries(vec![("a".into(), value)])),
                    Ok(ReadAnswer::Lock {
                        state: Some(LockState {
                            owner: "a".into(),
                            token: 9,
                            expires_at_ms: 1_700_000_030_000,
                        }),
                        clock_ms: 1_700_000_000_000,
                    }),
                    Err(WireError::Timeout),
                ])
            }
            Message::WatchFrames => {
                let frames = [
                    WatchFrame::Leading {
                        leader: NodeId::new(1),
                        term: 5,
                    },
                    WatchFrame::Alive,
                    WatchFrame::Ending(WatchEnd::NotLeading),
                    WatchFrame::Ending(WatchEnd::SteppingDown),
                ];
                let body: Vec<u8> = frames.iter().flat_map(|f| f.to_bytes().to_vec()).collect();
                // The first byte picks how the body is split.
                vec![
                    [&[3u8][..], &body].concat(),
                    [&[0u8][..], &body[..4]].concat(),
                ]
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Seeds, the files of `fuzz/seeds/<target>/` (committed seeds and
    /// inputs of fixed crashes) when there are any, and
    /// random edits of them: a short run of every fuzz target as a test.
    #[test]
    fn every_fuzz_target_holds_on_its_seeds_corpus_and_edits() {
        let seeds_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds");
        let mut rng = fastrand::Rng::with_seed(17);
        for message in Message::ALL {
            let mut inputs = seeds(message);
            assert!(!inputs.is_empty(), "{message:?} has no seeds");
            assert!(
                inputs.iter().all(|i| !i.is_empty()),
                "{message:?}: a seed is empty"
            );
            if let Ok(dir) = std::fs::read_dir(seeds_dir.join(message.target())) {
                for file in dir.flatten() {
                    inputs.push(std::fs::read(file.path()).unwrap_or_default());
                }
            }
            for input in inputs.clone() {
                check(message, &input);
                for _ in 0..500 {
                    let mut edited = input.clone();
                    for _ in 0..rng.usize(1..4) {
                        edit(&mut rng, &mut edited);
                    }
                    check(message, &edited);
                }
            }
            for _ in 0..200 {
                let random: Vec<u8> = (0..rng.usize(0..64)).map(|_| rng.u8(..)).collect();
                check(message, &random);
            }
        }
    }

    /// Writes the seeds to `fuzz/seeds/<target>/`: `cargo test -p
    /// catga-cluster-raft --lib write_fuzz_seeds -- --ignored`.
    #[test]
    #[ignore = "writes fuzz/seeds/"]
    fn write_fuzz_seeds() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds");
        for message in Message::ALL {
            let dir = root.join(message.target());
            std::fs::create_dir_all(&dir).unwrap();
            for (i, seed) in seeds(message).iter().enumerate() {
                std::fs::write(dir.join(format!("seed-{i}")), seed).unwrap();
            }
        }
    }

    fn edit(rng: &mut fastrand::Rng, bytes: &mut Vec<u8>) {
        let at = rng.usize(..=bytes.len());
        match rng.u8(..5) {
            0 if at < bytes.len() => bytes[at] = rng.u8(..),
            1 if at < bytes.len() => {
                bytes.remove(at);
            }
            2 => bytes.insert(at, rng.u8(..)),
            3 if at < bytes.len() => bytes[at] ^= 0x80,
            _ => bytes.truncate(at),
        }
    }
}
