//! Group commit: one thread per store writes the Raft log appends of every range in one
//! write batch with one WAL sync.
//!
//! ```text
//!   range 1 append ─┐
//!   range 7 append ─┼─▶ queue ─▶ writer thread: merge all queued batches
//!   range 1 vote   ─┘                          one engine.write(batch, sync=true)
//!                                              then complete every job
//! ```
//!
//! Under load, while one sync runs, the next batch fills up: a sync is paid per batch of
//! writers, not per writer. Jobs are applied in the order they were queued (a truncation
//! queued after an append lands after it), and a job is completed only after its batch
//! is durable.
//!
//! A job queued with [`LogWriter::submit_unsynced`] (the committed index, which openraft
//! lets a store lose) needs no sync of its own: a batch made only of such jobs is
//! written without one, and becomes durable with the next synced batch, since the
//! engine's log keeps writes in order.
//!
//! HAZARD: a failed write fails every job of its batch. The Raft groups treat that as a
//! storage error and stop; the node must not carry on as if the entries were durable.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Instant;

use cairn_kv::storage::{Engine, WriteBatch};

/// What to do once a job's batch is durable (or failed to be).
pub type Completion = Box<dyn FnOnce(Result<(), cairn_kv::Error>) + Send>;

struct Job {
    batch: WriteBatch,
    done: Completion,
    sync: bool,
}

/// Counters of the writer's work, for benchmarks and metrics.
#[derive(Debug)]
pub struct LogWriterStats {
    /// Jobs written.
    pub jobs: AtomicU64,
    /// WAL syncs (synced engine writes) done.
    pub syncs: AtomicU64,
    /// Total time spent in synced writes, in microseconds.
    pub sync_micros: AtomicU64,
    /// Seconds each synced write (the write-ahead log's fsync) took.
    pub sync_latency: prometheus_client::metrics::histogram::Histogram,
}

impl Default for LogWriterStats {
    fn default() -> Self {
        LogWriterStats {
            jobs: AtomicU64::default(),
            syncs: AtomicU64::default(),
            sync_micros: AtomicU64::default(),
            sync_latency: crate::store::latency_histogram(),
        }
    }
}

/// The store's group-commit writer. Dropping it stops the thread once the queue is
/// drained.
pub struct LogWriter {
    tx: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
    stats: Arc<LogWriterStats>,
}

/// At most this many jobs go into one write.
const MAX_JOBS_PER_WRITE: usize = 1024;

impl LogWriter {
    /// Starts the writer thread for `engine`.
    pub fn start(engine: Arc<dyn Engine>) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel::<Job>();
        let stats = Arc::new(LogWriterStats::default());
        let thread_stats = stats.clone();
        let thread = std::thread::Builder::new()
            .name("raft-log-writer".into())
            .spawn(move || run(engine, rx, thread_stats))?;
        Ok(LogWriter {
            tx: Some(tx),
            thread: Some(thread),
            stats,
        })
    }

    /// Queues `batch`; `done` runs on the writer thread once it is durable.
    pub fn submit(&self, batch: WriteBatch, done: Completion) {
        self.queue(Job {
            batch,
            done,
            sync: true,
        });
    }

    /// Queues `batch` to be written in order with the other jobs, without waiting for
    /// a sync of its own: it is durable once a later synced batch is. For state whose
    /// loss in a crash is harmless.
    pub fn submit_unsynced(&self, batch: WriteBatch) {
        self.queue(Job {
            batch,
            done: Box::new(|_| {}),
            sync: false,
        });
    }

    fn queue(&self, job: Job) {
        let sent = match &self.tx {
            Some(tx) => tx.send(job).map_err(|e| e.0),
            None => Err(job),
        };
        if let Err(job) = sent {
            (job.done)(Err(cairn_kv::Error::Storage(
                "raft log writer stopped".into(),
            )));
        }
    }

    /// Queues `batch` and waits until it is durable.
    pub async fn write(&self, batch: WriteBatch) -> Result<(), cairn_kv::Error> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.submit(
            batch,
            Box::new(move |res| {
                // The waiter may have given up; nothing to do then.
                let _ = tx.send(res);
            }),
        );
        rx.await
            .map_err(|_| cairn_kv::Error::Storage("raft log writer stopped".into()))?
    }

    pub fn stats(&self) -> &LogWriterStats {
        &self.stats
    }
}

impl Drop for LogWriter {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            // The last handle can be dropped by a completion running on the writer thread
            // itself; that thread ends on its own once the queue is closed.
            if t.thread().id() != std::thread::current().id() {
                // A panicked writer thread has already failed its jobs' callers.
                let _ = t.join();
            }
        }
    }
}

fn run(engine: Arc<dyn Engine>, rx: mpsc::Receiver<Job>, stats: Arc<LogWriterStats>) {
    while let Ok(first) = rx.recv() {
        let mut merged = WriteBatch::new();
        let mut dones = Vec::new();
        let mut sync = false;
        let mut next = Some(first);
        while let Some(job) = next {
            merged.append(job.batch);
            dones.push(job.done);
            sync |= job.sync;
            next = if dones.len() < MAX_JOBS_PER_WRITE {
                rx.try_recv().ok()
            } else {
                None
            };
        }
        let started = Instant::now();
        let result = engine.write(merged, sync);
        if sync {
            let took = started.elapsed();
            stats.sync_latency.observe(took.as_secs_f64());
            let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
            stats.syncs.fetch_add(1, Ordering::Relaxed);
            stats.sync_micros.fetch_add(micros, Ordering::Relaxed);
        }
        stats.jobs.fetch_add(dones.len() as u64, Ordering::Relaxed);
        if let Err(e) = &result {
            tracing::error!(error = %e, "raft log write failed");
        }
        for done in dones {
            done(result.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_kv::storage::memory::Memory;
    use cairn_kv::storage::{Reader, Space};

    #[tokio::test]
    async fn writes_in_order_and_completes_after_the_write() {
        let engine = Arc::new(Memory::new());
        let writer = LogWriter::start(engine.clone()).unwrap();
        let mut waits = Vec::new();
        for i in 0..100u32 {
            let mut b = WriteBatch::new();
            b.put(Space::Raft, b"k".to_vec(), i.to_be_bytes().to_vec());
            let (tx, rx) = tokio::sync::oneshot::channel();
            let engine = engine.clone();
            writer.submit(
                b,
                Box::new(move |res| {
                    // Completion runs only once the value (or a later one) is visible.
                    let v = engine.get(Space::Raft, b"k").unwrap().unwrap();
                    let _ = tx.send((res, u32::from_be_bytes(v.try_into().unwrap()) >= i));
                }),
            );
            waits.push(rx);
        }
        for w in waits {
            let (res, visible) = w.await.unwrap();
            res.unwrap();
            assert!(visible);
        }
        assert_eq!(
            engine.get(Space::Raft, b"k").unwrap().unwrap(),
            99u32.to_be_bytes().to_vec()
        );
        let s = writer.stats();
        assert_eq!(s.jobs.load(Ordering::Relaxed), 100);
        assert!(s.syncs.load(Ordering::Relaxed) <= 100);
    }

    #[tokio::test]
    async fn unsynced_jobs_alone_are_written_without_a_sync_and_in_order() {
        let engine = Arc::new(crate::test_util::Recording::default());
        let writer = LogWriter::start(engine.clone()).unwrap();
        let put = |v: u8| {
            let mut b = WriteBatch::new();
            b.put(Space::Raft, b"k".to_vec(), vec![v]);
            b
        };
        writer.write(put(1)).await.unwrap();
        writer.submit_unsynced(put(2));
        // Queued behind the unsynced job: once it is durable, so is the job before it.
        writer.write(put(3)).await.unwrap();
        assert_eq!(engine.get(Space::Raft, b"k").unwrap(), Some(vec![3]));
        let syncs = engine.syncs.lock().clone();
        // The unsynced job was written on its own without a sync, or merged into the
        // synced batch after it; every synced job got a sync.
        assert!(
            syncs == [true, false, true] || syncs == [true, true],
            "{syncs:?}"
        );
        let s = writer.stats();
        assert_eq!(s.syncs.load(Ordering::Relaxed), 2);
        assert_eq!(s.jobs.load(Ordering::Relaxed), 3);
    }
}
