//! Compile-fail tests: every invalid description of the conformance suite (from its TOML
//! file) and inline counterparts, with the exact compiler output committed beside them
//! (`tests/ui/*.stderr`), so messages and spans are reviewed like code.
//! Regenerate the `.stderr` files with `TRYBUILD=overwrite cargo test --test ui`.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
