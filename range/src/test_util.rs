//! Helpers for the crate's tests.

/// Runs every goldenscript in `dir` (relative to the crate), each with a fresh runner.
pub fn run_goldenscripts<R: goldenscript::Runner>(dir: &str, mut new: impl FnMut() -> R) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "no scripts in {}", dir.display());
    for path in paths {
        let mut runner = new();
        goldenscript::run(&mut runner, &path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
}

/// An in-memory engine that records what is done to it: the sync flag of each write,
/// and how many iterators were opened.
#[derive(Default)]
pub struct Recording {
    inner: cairn_kv::storage::memory::Memory,
    pub syncs: parking_lot::Mutex<Vec<bool>>,
    pub iters: std::sync::atomic::AtomicUsize,
}

impl cairn_kv::storage::Reader for Recording {
    fn get(
        &self,
        space: cairn_kv::storage::Space,
        key: &[u8],
    ) -> cairn_kv::Result<Option<Vec<u8>>> {
        self.inner.get(space, key)
    }
    fn iter(
        &self,
        space: cairn_kv::storage::Space,
        lower: &[u8],
        upper: Option<&[u8]>,
    ) -> cairn_kv::Result<Box<dyn cairn_kv::storage::EngineIterator + '_>> {
        self.iters
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.inner.iter(space, lower, upper)
    }
}

impl cairn_kv::storage::Engine for Recording {
    fn write(&self, batch: cairn_kv::storage::WriteBatch, sync: bool) -> cairn_kv::Result<()> {
        self.syncs.lock().push(sync);
        self.inner.write(batch, sync)
    }
    fn snapshot(&self) -> Box<dyn cairn_kv::storage::Snapshot> {
        self.inner.snapshot()
    }
}
