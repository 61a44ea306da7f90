//! MVCC on RocksDB, next to the same operation on raw RocksDB (the peer), so the cost
//! of versioning, checksums and intent checks is read as a ratio from one run.
//!
//! Run: `cargo bench -p cairn-kv --features rocksdb --bench mvcc`

use std::hint::black_box;

use cairn_kv::Timestamp;
use cairn_kv::mvcc::{self, ReadOptions};
use cairn_kv::storage::rocksdb::RocksDb;
use cairn_kv::storage::{Engine, IndexedBatch, Reader, Space, WriteBatch};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};

const PRELOADED: u64 = 100_000;
const VALUE: &[u8] = &[7u8; 100];

fn key(i: u64) -> Vec<u8> {
    format!("user{i:012}").into_bytes()
}

/// A cheap deterministic shuffle of `0..n`.
fn scatter(i: u64, n: u64) -> u64 {
    i.wrapping_mul(0x9E37_79B9_7F4A_7C15) % n
}

fn open() -> (tempfile::TempDir, RocksDb) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let db = RocksDb::open(dir.path()).expect("open RocksDB");
    (dir, db)
}

/// A store with `PRELOADED` keys, each written both as an MVCC version (at ts 1) and as
/// a raw key under a different prefix, so both kinds of read see the same data shape.
fn preloaded() -> (tempfile::TempDir, RocksDb) {
    let (dir, db) = open();
    for chunk in (0..PRELOADED).collect::<Vec<_>>().chunks(10_000) {
        let base: &dyn Reader = &db;
        let mut batch = IndexedBatch::new(base);
        for &i in chunk {
            mvcc::put(&mut batch, &key(i), Timestamp::new(1, 0), VALUE, None).expect("put");
        }
        let mut wb = batch.into_write_batch();
        for &i in chunk {
            wb.put(Space::Raft, key(i), VALUE.to_vec());
        }
        db.write(wb, false).expect("write");
    }
    (dir, db)
}

fn puts(c: &mut Criterion) {
    let mut g = c.benchmark_group("put");
    g.throughput(Throughput::Elements(1));
    let (_dir, db) = open();
    let mut i = 0u64;
    g.bench_function("mvcc_unsynced", |b| {
        b.iter(|| {
            i += 1;
            let base: &dyn Reader = &db;
            let mut batch = IndexedBatch::new(base);
            mvcc::put(
                &mut batch,
                &key(scatter(i, 1 << 40)),
                Timestamp::new(i, 0),
                VALUE,
                None,
            )
            .expect("put");
            db.write(batch.into_write_batch(), false).expect("write");
        })
    });
    g.bench_function("raw_unsynced", |b| {
        b.iter(|| {
            i += 1;
            let mut wb = WriteBatch::new();
            wb.put(Space::Raft, key(scatter(i, 1 << 40)), VALUE.to_vec());
            db.write(wb, false).expect("write");
        })
    });

    g.throughput(Throughput::Elements(100));
    g.bench_function("mvcc_synced_batch_of_100", |b| {
        b.iter(|| {
            let base: &dyn Reader = &db;
            let mut batch = IndexedBatch::new(base);
            for _ in 0..100 {
                i += 1;
                mvcc::put(
                    &mut batch,
                    &key(scatter(i, 1 << 40)),
                    Timestamp::new(i, 0),
                    VALUE,
                    None,
                )
                .expect("put");
            }
            db.write(batch.into_write_batch(), true).expect("write");
        })
    });
    g.bench_function("raw_synced_batch_of_100", |b| {
        b.iter(|| {
            let mut wb = WriteBatch::new();
            for _ in 0..100 {
                i += 1;
                wb.put(Space::Raft, key(scatter(i, 1 << 40)), VALUE.to_vec());
            }
            db.write(wb, true).expect("write");
        })
    });
    g.finish();
}

fn reads(c: &mut Criterion) {
    let (_dir, db) = preloaded();
    let mut g = c.benchmark_group("get");
    g.throughput(Throughput::Elements(1));
    let mut i = 0u64;
    g.bench_function("mvcc", |b| {
        b.iter(|| {
            i += 1;
            let v = mvcc::get(
                &db,
                &key(scatter(i, PRELOADED)),
                ReadOptions::at(Timestamp::new(5, 0)),
            )
            .expect("get");
            black_box(v.expect("present"));
        })
    });
    g.bench_function("raw", |b| {
        b.iter(|| {
            i += 1;
            black_box(
                db.get(Space::Raft, &key(scatter(i, PRELOADED)))
                    .expect("get")
                    .expect("present"),
            );
        })
    });
    g.finish();

    let mut g = c.benchmark_group("scan_1000");
    g.throughput(Throughput::Elements(1000));
    g.bench_function("mvcc", |b| {
        b.iter_batched(
            || {
                i += 1;
                key(scatter(i, PRELOADED - 1000))
            },
            |start| {
                let r = mvcc::scan(
                    &db,
                    &start,
                    &key(u64::MAX / 2),
                    ReadOptions::at(Timestamp::new(5, 0)),
                    1000,
                    false,
                )
                .expect("scan");
                assert_eq!(r.kvs.len(), 1000);
                black_box(r);
            },
            BatchSize::SmallInput,
        )
    });
    g.bench_function("raw", |b| {
        b.iter_batched(
            || {
                i += 1;
                key(scatter(i, PRELOADED - 1000))
            },
            |start| {
                let mut it = db.iter(Space::Raft, &start, None).expect("iter");
                it.seek_to_first().expect("seek");
                let mut n = 0;
                while let Some((k, v)) = it.current() {
                    black_box((k.to_vec(), v.to_vec()));
                    n += 1;
                    if n == 1000 {
                        break;
                    }
                    it.next().expect("next");
                }
                assert_eq!(n, 1000);
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, puts, reads);
criterion_main!(benches);
