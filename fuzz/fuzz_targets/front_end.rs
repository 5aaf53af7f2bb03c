//! Arbitrary bytes, as (lossy) UTF-8 text, through the compiler's front end on TOML:
//! parse -> lower -> check -> infer -> plan. It must never panic, and a rejected
//! description must say why.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match cnn_compiler::check_toml(&text) {
        Ok(table) => assert!(table.contains("total params")),
        Err(messages) => {
            assert!(!messages.is_empty());
            assert!(messages.iter().all(|m| !m.is_empty()));
        }
    }
});
