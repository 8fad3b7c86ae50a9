//! Property test: random append / truncate / purge / reopen against a model.

use super::*;

#[derive(Debug, Clone)]
enum Op {
    Append { count: u64, new_term: bool },
    Truncate(u64),
    Purge(u64),
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1u64..=6, any::<bool>()).prop_map(|(count, new_term)| Op::Append { count, new_term }),
        1 => (0u64..40).prop_map(Op::Truncate),
        1 => (0u64..40).prop_map(Op::Purge),
        1 => Just(Op::Reopen),
    ]
}

#[derive(Default)]
struct Model {
    entries: BTreeMap<u64, Entry>,
    purged: Option<LogId>,
    term: u64,
}

impl Model {
    fn next_index(&self) -> u64 {
        match (self.entries.last_key_value(), self.purged) {
            (Some((i, _)), _) => i + 1,
            (None, Some(p)) => p.index + 1,
            (None, None) => 1,
        }
    }

    fn last_log_id(&self) -> Option<LogId> {
        self.entries
            .values()
            .next_back()
            .map(|e| e.log_id)
            .or(self.purged)
    }
}

async fn check(store: &mut LogStore, model: &Model) -> Result<(), TestCaseError> {
    let got = all(store).await;
    let want: Vec<Entry> = model.entries.values().cloned().collect();
    prop_assert_eq!(got, want);
    let state = store.get_log_state().await.unwrap();
    prop_assert_eq!(state.last_purged_log_id, model.purged);
    prop_assert_eq!(state.last_log_id, model.last_log_id());
    Ok(())
}

async fn run_ops(dir: &Path, ops: Vec<Op>, cache_bytes: usize) -> Result<(), TestCaseError> {
    let options = LogStoreOptions::new()
        .segment_bytes(400)
        .cache_bytes(cache_bytes);
    let reopen = || LogStore::open_with(dir, &identity(), options.clone()).unwrap();
    let mut store = reopen();
    let mut model = Model {
        term: 1,
        ..Model::default()
    };
    for op in ops {
        match op {
            Op::Append { count, new_term } => {
                if new_term {
                    model.term += 1;
                }
                let first = model.next_index();
                let batch = entries(model.term, first..=first + count - 1);
                store.blocking_append(batch.clone()).await.unwrap();
                model
                    .entries
                    .extend(batch.into_iter().map(|e| (e.log_id.index, e)));
            }
            Op::Truncate(back) => {
                let live = model.entries.len() as u64;
                if live > 0 {
                    let index = model.next_index() - 1 - back % live;
                    let log_id = model.entries[&index].log_id;
                    store.truncate(log_id).await.unwrap();
                    drop(model.entries.split_off(&index));
                }
            }
            Op::Purge(forward) => {
                let first = model.purged.map_or(0, |p| p.index + 1);
                let last = model.next_index() + 1;
                let index = first + forward % (last - first + 1);
                let log_id = match model.entries.get(&index) {
                    Some(e) => e.log_id,
                    None => lid(model.term, index),
                };
                store.purge(log_id).await.unwrap();
                model.entries = model.entries.split_off(&(index + 1));
                model.purged = Some(log_id);
            }
            Op::Reopen => {
                drop(store);
                store = reopen();
            }
        }
        check(&mut store, &model).await?;
    }
    drop(store);
    let mut store = reopen();
    check(&mut store, &model).await
}

proptest! {
    #![proptest_config(ProptestConfig {
        // PROPTEST_CASES=1000 for a longer run.
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(48),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_operations_match_the_model(
        ops in proptest::collection::vec(op(), 1..40),
        // Nothing but the newest entry in memory, a few entries, all.
        cache_bytes in prop_oneof![Just(0usize), Just(800), Just(usize::MAX)],
    ) {
        let dir = tempfile::tempdir().unwrap();
        rt().block_on(run_ops(dir.path(), ops, cache_bytes))?;
    }
}
