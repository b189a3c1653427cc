#![no_main]
//! Fuzz target `damaged_store`: the body is `redkeep::fuzzing::damaged_store`, which `cargo test`
//! also runs on the committed corpus.
libfuzzer_sys::fuzz_target!(|data: &[u8]| redkeep::fuzzing::damaged_store(data));
