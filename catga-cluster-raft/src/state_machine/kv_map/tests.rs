//! The compact map against the map of `String` to `KvValue` it replaced:
//! the same answers, the same order, the same encoding.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;

fn kv(value: &[u8], revision: u64) -> KvValue {
    KvValue {
        value: value.to_vec(),
        revision,
    }
}

#[test]
fn it_decodes_what_the_map_it_replaced_encoded_and_encodes_it_the_same() {
    let mut old: imbl::OrdMap<String, KvValue> = imbl::OrdMap::new();
    old.insert("a".into(), kv(b"1", 1));
    old.insert("a/b".into(), kv(b"", 2));
    old.insert("ключ".into(), kv(&[0, 255, 7], u64::MAX));
    old.insert("z\u{10FFFF}".into(), kv(&[9; 300], 1 << 40));
    old.insert("é".into(), kv(b"accent", 5));
    let bytes = postcard::to_stdvec(&old).unwrap();

    let map: KvMap = postcard::from_bytes(&bytes).unwrap();
    assert_eq!(map.len(), old.len());
    for (key, value) in &old {
        assert_eq!(map.get(key).as_ref(), Some(value));
    }
    assert_eq!(postcard::to_stdvec(&map).unwrap(), bytes);
    // And the empty map.
    let empty = postcard::to_stdvec(&imbl::OrdMap::<String, KvValue>::new()).unwrap();
    let map: KvMap = postcard::from_bytes(&empty).unwrap();
    assert_eq!(map.len(), 0);
    assert_eq!(postcard::to_stdvec(&map).unwrap(), empty);
}

#[test]
fn a_key_longer_than_any_command_may_write_does_not_decode() {
    let mut old: BTreeMap<String, KvValue> = BTreeMap::new();
    old.insert("k".repeat(MAX_KEY_BYTES + 1), kv(b"v", 1));
    let bytes = postcard::to_stdvec(&old).unwrap();
    assert!(postcard::from_bytes::<KvMap>(&bytes).is_err());
}

#[test]
fn a_clone_keeps_its_contents_while_the_original_changes() {
    let mut map = KvMap::default();
    map.insert("k", b"old", 1);
    let copy = map.clone();
    map.insert("k", b"new", 2);
    map.insert("l", b"x", 2);
    assert_eq!(copy.get("k"), Some(kv(b"old", 1)));
    assert_eq!(copy.len(), 1);
    assert_eq!(map.get("k"), Some(kv(b"new", 2)));
}

#[test]
fn keys_written_in_order_fill_their_pages() {
    // One run of keys, and 16 runs interleaved as the benchmark writes
    // them: every page but the last of each run is full.
    for runs in [1u64, 16] {
        let mut map = KvMap::with_page_bytes(1024);
        for i in 1..=5000u64 {
            map.insert(
                &format!("bench/c{}/{}", i % runs, 100_000 + i),
                &[b'v'; 48],
                i,
            );
        }
        let sizes = map.check();
        let full = sizes.iter().filter(|&&s| s > 1024 - 70).count();
        assert!(
            full + 2 * runs as usize >= sizes.len(),
            "{runs} runs: {full} of {} pages full: {sizes:?}",
            sizes.len()
        );
    }
}

#[test]
fn large_values_get_pages_of_their_own_and_small_pages_merge_back() {
    let mut map = KvMap::with_page_bytes(256);
    for i in 0..40u64 {
        let size = if i % 7 == 3 { 1000 } else { 10 };
        map.insert(&format!("k{i:02}"), &vec![i as u8; size], i);
        map.check();
    }
    for i in 0..40u64 {
        let value = map.get(&format!("k{i:02}")).unwrap().value;
        assert_eq!(value.len(), if i % 7 == 3 { 1000 } else { 10 });
    }
    // A large value shrinks, a small one grows past the page.
    map.insert("k03", b"small now", 100);
    map.insert("k05", &[5; 600], 101);
    map.check();
    for i in (0..40u64).filter(|i| i % 2 == 0) {
        assert!(map.remove(&format!("k{i:02}")));
        map.check();
    }
    let pages = map.check().len();
    for i in (0..40u64).filter(|i| i % 2 == 1 && *i != 5) {
        assert!(map.remove(&format!("k{i:02}")));
        map.check();
    }
    assert!(map.check().len() < pages);
    assert_eq!(map.len(), 1);
    assert!(map.remove("k05"));
    assert!(!map.remove("k05"));
    assert_eq!(map.check(), Vec::<usize>::new());
    assert_eq!(postcard::to_stdvec(&map).unwrap(), [0]);
}

#[derive(Debug, Clone)]
enum Op {
    Insert(String, Vec<u8>),
    Remove(String),
    List(String, usize),
}

fn key() -> impl Strategy<Value = String> {
    // Few distinct characters, so keys share prefixes and collide, with
    // multi-byte ones among them.
    proptest::collection::vec(
        prop_oneof![
            Just('a'),
            Just('b'),
            Just('/'),
            Just('é'),
            Just('\u{10348}')
        ],
        0..5,
    )
    .prop_map(|chars| chars.into_iter().collect())
}

fn value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        8 => proptest::collection::vec(any::<u8>(), 0..40),
        1 => proptest::collection::vec(any::<u8>(), 100..400),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (key(), value()).prop_map(|(k, v)| Op::Insert(k, v)),
        2 => key().prop_map(Op::Remove),
        1 => (key(), 0..10usize).prop_map(|(k, n)| Op::List(k, n)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn it_answers_like_a_map_of_strings(
        page_bytes in prop_oneof![Just(1usize), 16..300usize, Just(PAGE_BYTES)],
        ops in proptest::collection::vec(op(), 1..300),
    ) {
        let mut map = KvMap::with_page_bytes(page_bytes);
        let mut model: BTreeMap<String, KvValue> = BTreeMap::new();
        let mut snapshots = Vec::new();
        for (revision, op) in (1u64..).zip(ops) {
            match op {
                Op::Insert(k, v) => {
                    map.insert(&k, &v, revision);
                    model.insert(k, kv(&v, revision));
                }
                Op::Remove(k) => {
                    prop_assert_eq!(map.remove(&k), model.remove(&k).is_some());
                }
                Op::List(prefix, limit) => {
                    let expected: Vec<_> = model
                        .range(prefix.clone()..)
                        .take_while(|(k, _)| k.starts_with(&prefix))
                        .take(limit)
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect();
                    prop_assert_eq!(map.list(&prefix, limit), expected);
                    // A copy, as a snapshot takes: later writes leave it be.
                    snapshots.push((map.clone(), model.clone()));
                }
            }
            map.check();
        }
        prop_assert_eq!(map.len(), model.len());
        for (k, v) in &model {
            prop_assert_eq!(map.get(k), Some(v.clone()));
            prop_assert_eq!(map.revision(k), v.revision);
        }
        prop_assert_eq!(map.revision("not a key"), 0);
        let listed: Vec<_> = map.iter().map(|(k, v, r)| (k.to_owned(), kv(v, r))).collect();
        let expected: Vec<_> = model.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        prop_assert_eq!(listed, expected);
        let bytes = postcard::to_stdvec(&model).unwrap();
        prop_assert_eq!(postcard::to_stdvec(&map).unwrap(), bytes.clone());
        postcard::from_bytes::<KvMap>(&bytes).unwrap().check();
        for (copy, model) in snapshots {
            copy.check();
            prop_assert_eq!(postcard::to_stdvec(&copy).unwrap(), postcard::to_stdvec(&model).unwrap());
        }
    }
}
