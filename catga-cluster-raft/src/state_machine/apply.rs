//! Applying commands: the state machine's clock, the checks every command
//! passes ([`validate_command`]), what each operation does and the
//! de-duplication table (see the [module docs](super)).

use std::sync::Arc;

use openraft::EntryPayload;

use super::locks::Outcome;
use super::{limits, Data, DedupEntry, Lock, StateMachineConfig, StateMachineStore};
use crate::types::{Command, CommandResponse, Entry, Operation, StoredMembership};
use crate::watch::KeyEvent;

impl StateMachineStore {
    /// Applies one log entry to `data` and answers it.
    pub(super) fn apply_one(
        &self,
        data: &mut Data,
        entry: &Entry,
        lock_changed: &mut bool,
        events: &mut Vec<KeyEvent>,
    ) -> CommandResponse {
        data.last_applied = Some(entry.log_id);
        match &entry.payload {
            EntryPayload::Blank => CommandResponse::Empty,
            EntryPayload::Membership(m) => {
                data.membership = StoredMembership::new(Some(entry.log_id), m.clone());
                CommandResponse::Empty
            }
            EntryPayload::Normal(cmd) => match &cmd.op {
                Operation::Batch(commands) => CommandResponse::Batch(
                    commands
                        .iter()
                        .map(|c| self.apply_command(data, entry, c, lock_changed, events))
                        .collect(),
                ),
                _ => self.apply_command(data, entry, cmd, lock_changed, events),
            },
        }
    }

    /// Applies one command of `entry` (the entry's own, or one of its
    /// batch) and answers it.
    fn apply_command(
        &self,
        data: &mut Data,
        entry: &Entry,
        cmd: &Command,
        lock_changed: &mut bool,
        events: &mut Vec<KeyEvent>,
    ) -> CommandResponse {
        advance_clock(data, entry.log_id.leader_id.term, cmd.leader_time_ms);
        expire_keys(data, entry.log_id.index, events);
        if let Some(id) = &cmd.request_id {
            if let Some(seen) = data.dedup.get(id.as_str()) {
                return seen.response.clone();
            }
        }
        let response = execute(data, entry.log_id.index, cmd, lock_changed, events);
        if let Some(id) = &cmd.request_id {
            remember(data, id, &response, &self.shared.config);
        }
        response
    }
}

/// Moves the state machine's clock to a command's time, rebasing every lease
/// and every waiter's deadline when a new term starts (see the module
/// documentation).
pub(super) fn advance_clock(data: &mut Data, term: u64, time_ms: u64) {
    if term > data.clock_term {
        if data.clock_term != 0 {
            let old_now = data.clock_ms;
            for lock in data.locks.values_mut() {
                lock.rebase(old_now, time_ms);
            }
        }
        if data.clock_term != 0 {
            data.rebase_expiries(data.clock_ms, time_ms);
        }
        data.clock_term = term;
        data.clock_ms = time_ms;
    } else {
        data.clock_ms = data.clock_ms.max(time_ms);
    }
}

/// Deletes the keys whose time to live ran out by the state machine's
/// clock, as of log index `index` (see [`Operation::PutTtl`]).
fn expire_keys(data: &mut Data, index: u64, events: &mut Vec<KeyEvent>) {
    while let Some((at, key)) = data.expiring.get_min().cloned() {
        if at > data.clock_ms {
            break;
        }
        data.set_expiry(&key, None);
        if data.kv.remove(&key) {
            events.push(KeyEvent::Delete {
                key,
                revision: index,
            });
        }
    }
}

fn validate(cmd: &Command) -> Result<(), String> {
    use limits::*;
    fn check_len(what: &str, s: &str, max: usize) -> Result<(), String> {
        if s.is_empty() {
            return Err(format!("the {what} is empty"));
        }
        // Characters, not bytes: the HTTP API documents these limits as
        // JSON Schema `maxLength`, which counts characters.
        let chars = s.chars().count();
        if chars > max {
            return Err(format!(
                "the {what} is {chars} characters long; at most {max} are allowed"
            ));
        }
        Ok(())
    }
    fn check_ttl(ttl_ms: u64) -> Result<(), String> {
        if ttl_ms == 0 || ttl_ms > MAX_TTL_MS {
            return Err(format!(
                "the lease must be 1 to {MAX_TTL_MS} ms, not {ttl_ms}"
            ));
        }
        Ok(())
    }
    fn check_lock(name: &str, owner: &str) -> Result<(), String> {
        check_len("lock name", name, MAX_LOCK_NAME_LEN)?;
        check_len("owner", owner, MAX_OWNER_LEN)
    }
    if let Some(id) = &cmd.request_id {
        check_len("request id", id, MAX_REQUEST_ID_LEN)?;
    }
    match &cmd.op {
        Operation::Noop => Ok(()),
        Operation::Batch(_) => Err(
            "a batch is formed by the node from the commands it is given; it cannot be submitted, \
             nor nested"
                .to_string(),
        ),
        Operation::Put { key, value, .. } | Operation::PutTtl { key, value, .. } => {
            if let Operation::PutTtl { ttl_ms, .. } = &cmd.op {
                if *ttl_ms == 0 || *ttl_ms > MAX_TTL_MS {
                    return Err(format!(
                        "the key's time to live must be 1 to {MAX_TTL_MS} ms, not {ttl_ms}"
                    ));
                }
            }
            check_len("key", key, MAX_KEY_LEN)?;
            if value.len() > MAX_VALUE_LEN {
                return Err(format!(
                    "the value is {} bytes; at most {MAX_VALUE_LEN} are allowed",
                    value.len()
                ));
            }
            Ok(())
        }
        Operation::Delete { key, .. } => check_len("key", key, MAX_KEY_LEN),
        Operation::LockAcquire {
            name,
            owner,
            ttl_ms,
        }
        | Operation::LockRenew {
            name,
            owner,
            ttl_ms,
            ..
        } => {
            check_lock(name, owner)?;
            check_ttl(*ttl_ms)
        }
        Operation::LockWait {
            name,
            owner,
            ttl_ms,
            wait_ms,
            ..
        } => {
            check_lock(name, owner)?;
            check_ttl(*ttl_ms)?;
            if *wait_ms > MAX_WAIT_MS {
                return Err(format!(
                    "the wait must be at most {MAX_WAIT_MS} ms, not {wait_ms}"
                ));
            }
            Ok(())
        }
        Operation::LockRelease { name, owner, .. } | Operation::LockCancel { name, owner, .. } => {
            check_lock(name, owner)
        }
    }
}

/// Validates a command before it is proposed: the same checks the state
/// machine applies, so a bad command is refused without a log entry.
pub fn validate_command(cmd: &Command) -> Result<(), String> {
    validate(cmd)
}

fn execute(
    data: &mut Data,
    index: u64,
    cmd: &Command,
    lock_changed: &mut bool,
    events: &mut Vec<KeyEvent>,
) -> CommandResponse {
    if let Err(reason) = validate(cmd) {
        return CommandResponse::Rejected { reason };
    }
    let now = data.clock_ms;
    match &cmd.op {
        // Refused by `validate` above; a batch is unpacked by `apply_one`.
        Operation::Noop | Operation::Batch(_) => CommandResponse::Empty,
        Operation::Put {
            key,
            value,
            expected_revision,
        } => {
            if let Some(mismatch) = check_revision(data, key, *expected_revision) {
                return mismatch;
            }
            data.kv.insert(key, value, index);
            data.set_expiry(key, None);
            events.push(KeyEvent::Put {
                key: key.clone(),
                value: bytes::Bytes::copy_from_slice(value),
                revision: index,
            });
            CommandResponse::Written { revision: index }
        }
        Operation::PutTtl {
            key,
            value,
            expected_revision,
            ttl_ms,
        } => {
            if let Some(mismatch) = check_revision(data, key, *expected_revision) {
                return mismatch;
            }
            data.kv.insert(key, value, index);
            data.set_expiry(key, Some(now.saturating_add(*ttl_ms)));
            events.push(KeyEvent::Put {
                key: key.clone(),
                value: bytes::Bytes::copy_from_slice(value),
                revision: index,
            });
            CommandResponse::Written { revision: index }
        }
        Operation::Delete {
            key,
            expected_revision,
        } => {
            if let Some(mismatch) = check_revision(data, key, *expected_revision) {
                return mismatch;
            }
            let existed = data.kv.remove(key);
            data.set_expiry(key, None);
            if existed {
                events.push(KeyEvent::Delete {
                    key: key.clone(),
                    revision: index,
                });
            }
            CommandResponse::Deleted { existed }
        }
        Operation::LockAcquire {
            name,
            owner,
            ttl_ms,
        } => on_lock(data, name, lock_changed, |l| {
            l.acquire(index, now, owner, *ttl_ms)
        }),
        Operation::LockWait {
            name,
            owner,
            waiter,
            ttl_ms,
            wait_ms,
        } => on_lock(data, name, lock_changed, |l| {
            l.wait(index, now, owner, *waiter, *ttl_ms, *wait_ms)
        }),
        Operation::LockCancel {
            name,
            owner,
            waiter,
        } => on_lock(data, name, lock_changed, |l| {
            l.cancel(index, now, owner, *waiter)
        }),
        Operation::LockRenew {
            name,
            owner,
            token,
            ttl_ms,
        } => on_lock(data, name, lock_changed, |l| {
            l.renew(index, now, owner, *token, *ttl_ms)
        }),
        Operation::LockRelease { name, owner, token } => on_lock(data, name, lock_changed, |l| {
            l.release(index, now, owner, *token)
        }),
    }
}

/// The answer to a compare-and-set on `key` whose expected revision does
/// not match, if it does not. A plain write does not look the key up.
fn check_revision(data: &Data, key: &str, expected: Option<u64>) -> Option<CommandResponse> {
    let expected = expected?;
    let current = data.kv.revision(key);
    (expected != current).then_some(CommandResponse::RevisionMismatch { current })
}

/// Runs `op` on lock `name`, and drops the lock from the table once it has
/// neither a holder nor waiters.
fn on_lock(
    data: &mut Data,
    name: &str,
    lock_changed: &mut bool,
    op: impl FnOnce(&mut Lock) -> Outcome,
) -> CommandResponse {
    let lock = data.locks.entry(name.to_owned()).or_default();
    let (response, changed) = op(lock);
    if lock.is_empty() {
        data.locks.remove(name);
    }
    *lock_changed |= changed;
    response
}

fn remember(data: &mut Data, id: &str, response: &CommandResponse, config: &StateMachineConfig) {
    let now = data.clock_ms;
    let id: Arc<str> = Arc::from(id);
    data.dedup.insert(
        Arc::clone(&id),
        DedupEntry {
            response: response.clone(),
            at_ms: now,
        },
    );
    data.dedup_order.push_back(id);
    let horizon = u64::try_from(config.dedup_horizon.as_millis()).unwrap_or(u64::MAX);
    while let Some(oldest) = data.dedup_order.front() {
        let expired = data
            .dedup
            .get(oldest)
            .is_none_or(|e| now.saturating_sub(e.at_ms) > horizon);
        if expired || data.dedup.len() > config.dedup_max_entries {
            if let Some(oldest) = data.dedup_order.pop_front() {
                data.dedup.remove(&oldest);
            }
        } else {
            break;
        }
    }
}
