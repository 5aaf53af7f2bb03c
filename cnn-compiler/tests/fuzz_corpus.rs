//! Replays the committed corpus of the `front_end` fuzz target (`fuzz/corpus/front_end`)
//! through the same call on stable: every file either compiles (a summary table) or is
//! rejected with at least one message, and nothing panics.

use std::path::Path;

#[test]
fn front_end_corpus_compiles_or_explains() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/front_end");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("the fuzz corpus {} is missing: {e}", dir.display()))
        .map(|entry| entry.expect("readable directory entry").path())
        .collect();
    files.sort();
    let (mut ok, mut rejected) = (0, 0);
    for path in &files {
        let bytes = std::fs::read(path).expect("readable corpus file");
        let text = String::from_utf8_lossy(&bytes);
        match cnn_compiler::check_toml(&text) {
            Ok(table) => {
                assert!(
                    table.contains("total params"),
                    "{}: {table}",
                    path.display()
                );
                ok += 1;
            }
            Err(messages) => {
                assert!(!messages.is_empty(), "{}: no message", path.display());
                for m in &messages {
                    assert!(!m.trim().is_empty(), "{}: an empty message", path.display());
                }
                rejected += 1;
            }
        }
    }
    // A corpus that never reaches the back of the pipeline, or never an error, would
    // test little: the committed one does both.
    assert!(ok > 0 && rejected > 0, "{ok} compiled, {rejected} rejected");
}
