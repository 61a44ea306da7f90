//! The engine test suite: every engine must pass all of it.

use std::collections::BTreeMap;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

use super::testing::{TestEngine, test_each_engine};
use super::*;

test_each_engine!(
    get_put_delete,
    spaces_are_separate,
    batch_is_atomic_and_ordered,
    delete_range,
    iterate_with_bounds_both_ways,
    snapshot_is_isolated,
    indexed_batch_reads_its_writes,
    iterators_match_a_model,
);

fn put(engine: &TestEngine, space: Space, key: &[u8], value: &[u8]) {
    let mut b = WriteBatch::new();
    b.put(space, key.to_vec(), value.to_vec());
    engine.write(b, false).unwrap();
}

fn kvs(pairs: &[(&str, &str)]) -> Vec<(Vec<u8>, Vec<u8>)> {
    pairs
        .iter()
        .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
        .collect()
}

fn get_put_delete(engine: &TestEngine) {
    assert_eq!(engine.get(Space::Data, b"a").unwrap(), None);
    put(engine, Space::Data, b"a", b"1");
    assert_eq!(engine.get(Space::Data, b"a").unwrap(), Some(b"1".to_vec()));
    put(engine, Space::Data, b"a", b"2");
    assert_eq!(engine.get(Space::Data, b"a").unwrap(), Some(b"2".to_vec()));
    let mut b = WriteBatch::new();
    b.delete(Space::Data, b"a".to_vec());
    engine.write(b, true).unwrap();
    assert_eq!(engine.get(Space::Data, b"a").unwrap(), None);
    // Empty keys and values are legal.
    put(engine, Space::Data, b"", b"");
    assert_eq!(engine.get(Space::Data, b"").unwrap(), Some(vec![]));
}

fn spaces_are_separate(engine: &TestEngine) {
    put(engine, Space::Data, b"k", b"data");
    put(engine, Space::Raft, b"k", b"raft");
    assert_eq!(
        engine.get(Space::Data, b"k").unwrap(),
        Some(b"data".to_vec())
    );
    assert_eq!(
        engine.get(Space::Raft, b"k").unwrap(),
        Some(b"raft".to_vec())
    );
    assert_eq!(
        scan_all(&**engine, Space::Raft, b"", None, false).unwrap(),
        kvs(&[("k", "raft")])
    );
}

fn batch_is_atomic_and_ordered(engine: &TestEngine) {
    let snap = engine.snapshot();
    let mut b = WriteBatch::new();
    b.put(Space::Data, b"x".to_vec(), b"1".to_vec());
    b.put(Space::Raft, b"y".to_vec(), b"2".to_vec());
    b.delete(Space::Data, b"x".to_vec());
    b.put(Space::Data, b"z".to_vec(), b"3".to_vec());
    b.put(Space::Data, b"z".to_vec(), b"4".to_vec());
    assert_eq!(b.len(), 5);
    engine.write(b, true).unwrap();
    // Later operations of a batch win over earlier ones on the same key.
    assert_eq!(engine.get(Space::Data, b"x").unwrap(), None);
    assert_eq!(engine.get(Space::Data, b"z").unwrap(), Some(b"4".to_vec()));
    assert_eq!(engine.get(Space::Raft, b"y").unwrap(), Some(b"2".to_vec()));
    // A snapshot taken before sees none of it.
    assert_eq!(snap.get(Space::Raft, b"y").unwrap(), None);
    assert_eq!(snap.get(Space::Data, b"z").unwrap(), None);
}

fn delete_range(engine: &TestEngine) {
    for k in ["a", "b", "c", "d"] {
        put(engine, Space::Data, k.as_bytes(), b"v");
        put(engine, Space::Raft, k.as_bytes(), b"v");
    }
    let mut b = WriteBatch::new();
    b.delete_range(Space::Data, b"b".to_vec(), b"d".to_vec());
    engine.write(b, false).unwrap();
    assert_eq!(
        scan_all(&**engine, Space::Data, b"", None, false).unwrap(),
        kvs(&[("a", "v"), ("d", "v")])
    );
    assert_eq!(
        scan_all(&**engine, Space::Raft, b"", None, false)
            .unwrap()
            .len(),
        4
    );
}

fn iterate_with_bounds_both_ways(engine: &TestEngine) {
    for k in ["a", "b", "c", "d", "e"] {
        put(engine, Space::Data, k.as_bytes(), k.as_bytes());
    }
    let all = |lower: &str, upper: Option<&str>, reverse| {
        scan_all(
            &**engine,
            Space::Data,
            lower.as_bytes(),
            upper.map(str::as_bytes),
            reverse,
        )
        .unwrap()
        .into_iter()
        .map(|(k, _)| String::from_utf8(k).unwrap())
        .collect::<Vec<_>>()
        .join("")
    };
    assert_eq!(all("", None, false), "abcde");
    assert_eq!(all("b", Some("d"), false), "bc");
    assert_eq!(all("b", Some("d"), true), "cb");
    assert_eq!(all("bb", Some("dd"), true), "dc");
    assert_eq!(all("f", None, false), "");

    let mut it = engine.iter(Space::Data, b"b", Some(b"e")).unwrap();
    assert_eq!(it.current(), None, "an iterator starts unpositioned");
    // Seeks clamp to the bounds.
    it.seek(b"a").unwrap();
    assert_eq!(it.current().unwrap().0, b"b");
    it.seek_for_prev(b"z").unwrap();
    assert_eq!(it.current().unwrap().0, b"d");
    it.seek(b"bb").unwrap();
    assert_eq!(it.current().unwrap().0, b"c");
    it.seek_for_prev(b"bb").unwrap();
    assert_eq!(it.current().unwrap().0, b"b");
    // Change direction in the middle.
    it.next().unwrap();
    assert_eq!(it.current().unwrap().0, b"c");
    it.prev().unwrap();
    assert_eq!(it.current().unwrap().0, b"b");
    it.prev().unwrap();
    assert_eq!(it.current(), None);
    it.seek(b"e").unwrap();
    assert_eq!(it.current(), None, "the upper bound is exclusive");
}

fn snapshot_is_isolated(engine: &TestEngine) {
    put(engine, Space::Data, b"a", b"1");
    let snap = engine.snapshot();
    put(engine, Space::Data, b"a", b"2");
    put(engine, Space::Data, b"b", b"3");
    assert_eq!(snap.get(Space::Data, b"a").unwrap(), Some(b"1".to_vec()));
    assert_eq!(
        scan_all(&*snap, Space::Data, b"", None, false).unwrap(),
        kvs(&[("a", "1")])
    );
    assert_eq!(engine.get(Space::Data, b"a").unwrap(), Some(b"2".to_vec()));
}

fn indexed_batch_reads_its_writes(engine: &TestEngine) {
    for k in ["a", "c", "e"] {
        put(engine, Space::Data, k.as_bytes(), b"base");
    }
    let base = engine.snapshot();
    let mut batch = IndexedBatch::new(&*base);
    batch.put(Space::Data, b"b".to_vec(), b"new".to_vec());
    batch.put(Space::Data, b"c".to_vec(), b"over".to_vec());
    batch.delete(Space::Data, b"e".to_vec());
    batch.delete(Space::Data, b"zz".to_vec());
    assert_eq!(
        batch.get(Space::Data, b"c").unwrap(),
        Some(b"over".to_vec())
    );
    assert_eq!(batch.get(Space::Data, b"e").unwrap(), None);
    assert_eq!(
        batch.get(Space::Data, b"a").unwrap(),
        Some(b"base".to_vec())
    );
    let want = kvs(&[("a", "base"), ("b", "new"), ("c", "over")]);
    assert_eq!(
        scan_all(&batch, Space::Data, b"", None, false).unwrap(),
        want
    );
    let mut rev = want.clone();
    rev.reverse();
    assert_eq!(scan_all(&batch, Space::Data, b"", None, true).unwrap(), rev);
    // Nothing reached the engine yet.
    assert_eq!(engine.get(Space::Data, b"b").unwrap(), None);
    let wb = batch.into_write_batch();
    engine.write(wb, false).unwrap();
    assert_eq!(
        scan_all(&**engine, Space::Data, b"", None, false).unwrap(),
        want
    );
}

/// One step of a random walk of an iterator.
#[derive(Clone, Debug)]
enum Move {
    Seek(Vec<u8>),
    SeekForPrev(Vec<u8>),
    First,
    Last,
    Next,
    Prev,
}

fn key_strategy() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(prop::sample::select(vec![0u8, 1, 2, 0xff]), 0..3)
}

fn move_strategy() -> impl Strategy<Value = Move> {
    prop_oneof![
        key_strategy().prop_map(Move::Seek),
        key_strategy().prop_map(Move::SeekForPrev),
        Just(Move::First),
        Just(Move::Last),
        Just(Move::Next),
        Just(Move::Next),
        Just(Move::Prev),
        Just(Move::Prev),
    ]
}

/// The model of an iterator: a sorted list of keys and a position in it.
fn model_move(keys: &[Vec<u8>], pos: Option<usize>, m: &Move) -> Option<usize> {
    match m {
        Move::Seek(k) => keys.iter().position(|x| x >= k),
        Move::SeekForPrev(k) => keys.iter().rposition(|x| x <= k),
        Move::First => (!keys.is_empty()).then_some(0),
        Move::Last => keys.len().checked_sub(1),
        Move::Next => pos.and_then(|p| (p + 1 < keys.len()).then_some(p + 1)),
        Move::Prev => pos.and_then(|p| p.checked_sub(1)),
    }
}

/// Random engine contents, random pending writes in an indexed batch over them, random
/// bounds and random iterator moves: the engine's iterator, and the merged iterator of
/// the batch, agree with a sorted list at every step.
fn iterators_match_a_model(engine: &TestEngine) {
    let case = (
        prop::collection::btree_map(key_strategy(), key_strategy(), 0..12),
        prop::collection::vec((key_strategy(), prop::option::of(key_strategy())), 0..8),
        key_strategy(),
        prop::option::of(key_strategy()),
        prop::collection::vec(move_strategy(), 1..24),
    );
    let mut runner = TestRunner::new(Config {
        cases: 64,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&case, |(base, pending, lower, upper, moves)| {
            let mut clear = WriteBatch::new();
            clear.delete_range(Space::Data, vec![], vec![0xff; 4]);
            engine.write(clear, false).unwrap();
            let mut wb = WriteBatch::new();
            for (k, v) in &base {
                wb.put(Space::Data, k.clone(), v.clone());
            }
            engine.write(wb, false).unwrap();
            let mut merged = base.clone();
            let snap = engine.snapshot();
            let mut batch = IndexedBatch::new(&*snap);
            for (k, v) in &pending {
                match v {
                    Some(v) => {
                        batch.put(Space::Data, k.clone(), v.clone());
                        merged.insert(k.clone(), v.clone());
                    }
                    None => {
                        batch.delete(Space::Data, k.clone());
                        merged.remove(k);
                    }
                }
            }
            let bounded = |m: &BTreeMap<Vec<u8>, Vec<u8>>| -> Vec<(Vec<u8>, Vec<u8>)> {
                m.iter()
                    .filter(|(k, _)| in_bounds(k, &lower, upper.as_deref()))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            };
            for (reader, model) in [
                (&**engine as &dyn Reader, bounded(&base)),
                (&batch as &dyn Reader, bounded(&merged)),
            ] {
                let keys: Vec<Vec<u8>> = model.iter().map(|(k, _)| k.clone()).collect();
                let mut it = reader.iter(Space::Data, &lower, upper.as_deref()).unwrap();
                let mut pos = None;
                for m in &moves {
                    match m {
                        Move::Seek(k) => it.seek(k).unwrap(),
                        Move::SeekForPrev(k) => it.seek_for_prev(k).unwrap(),
                        Move::First => it.seek_to_first().unwrap(),
                        Move::Last => it.seek_to_last().unwrap(),
                        Move::Next => it.next().unwrap(),
                        Move::Prev => it.prev().unwrap(),
                    }
                    pos = model_move(&keys, pos, m);
                    let want = pos.map(|p| (model[p].0.as_slice(), model[p].1.as_slice()));
                    prop_assert_eq!(it.current(), want, "after {:?}", m);
                }
            }
            Ok(())
        })
        .unwrap();
}
