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
