//! Compile-fail tests: every invalid description of the conformance suite (from its TOML
//! file), inline counterparts and weight files that do not fit their model, with the exact
//! compiler output committed beside them (`tests/ui/*.stderr`), so messages and spans are
//! reviewed like code.
//! Regenerate the `.stderr` files with `TRYBUILD=overwrite cargo test --test ui`.
//!
//! The tests name their files relative to this package's root, as a user's crate names
//! its own (`#[file = "tests/cases_invalid/from_itself.toml"]`): trybuild compiles them
//! as binaries of a package it generates in `<target dir>/tests/trybuild/cnn/`, which is
//! the `CARGO_MANIFEST_DIR` the paths resolve from, so [`stage_fixtures`] first copies
//! every file they name there. Nothing depends on where the target directory is.

use std::fs;
use std::path::{Component, Path, PathBuf};
use std::process::Command;

#[test]
fn ui() {
    stage_fixtures();
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}

/// Copies each file that a `#[file = ".."]` or `#[weights = ".."]` of `tests/ui/*.rs` names
/// (relative to this package's root) to the same relative path in trybuild's package.
/// Absolute paths are left alone; a path that names no file (a test of a missing file)
/// names none there either. A file is only rewritten when its content changed, so nothing
/// is rebuilt for nothing.
fn stage_fixtures() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let project = trybuild_project_dir();
    let mut staged = 0;
    let mut tests: Vec<PathBuf> = fs::read_dir(root.join("tests/ui"))
        .expect("tests/ui")
        .map(|entry| entry.expect("tests/ui entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .collect();
    tests.sort();
    for test in &tests {
        let text = fs::read_to_string(test).expect("a UI test");
        for rel in attribute_paths(&text) {
            let rel = Path::new(rel);
            if rel.is_absolute() {
                continue; // the same file from any directory
            }
            assert!(
                rel.components().all(|c| matches!(c, Component::Normal(_))),
                "{}: name fixtures relative to the package root, without `..`: {}",
                test.display(),
                rel.display()
            );
            let src = root.join(rel);
            let dst = project.join(rel);
            if !src.is_file() {
                let _ = fs::remove_file(&dst); // a stale copy, if any
                continue;
            }
            let bytes = fs::read(&src).expect("a fixture");
            if fs::read(&dst).ok().as_deref() != Some(&bytes[..]) {
                fs::create_dir_all(dst.parent().expect("a file's directory"))
                    .expect("create the fixture's directory");
                fs::write(&dst, &bytes).expect("stage a fixture");
            }
            staged += 1;
        }
    }
    assert!(staged > 0, "no fixtures found in tests/ui/*.rs");
}

/// The string values of the `#[file = ".."]` and `#[weights = ".."]` attributes in `text`.
fn attribute_paths(text: &str) -> impl Iterator<Item = &str> {
    ["#[file = \"", "#[weights = \""]
        .into_iter()
        .flat_map(move |open| text.match_indices(open).map(move |(i, _)| i + open.len()))
        .map(move |start| {
            let len = text[start..].find('"').expect("a closing quote");
            &text[start..start + len]
        })
}

/// `<target dir>/tests/trybuild/<package>/`, the target directory found as trybuild finds
/// it (`cargo metadata`), so the two always agree.
fn trybuild_project_dir() -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .args(["metadata", "--no-deps", "--format-version=1"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo metadata");
    assert!(
        output.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("cargo metadata's JSON");
    let target = metadata["target_directory"]
        .as_str()
        .expect("cargo metadata's target_directory");
    Path::new(target)
        .join("tests")
        .join("trybuild")
        .join(env!("CARGO_PKG_NAME"))
}
