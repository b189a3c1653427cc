#![no_main]
//! Fuzz target `token`: the body is `redkeep::fuzzing::token`, which `cargo test` also runs on
//! the committed corpus.
libfuzzer_sys::fuzz_target!(|data: &[u8]| redkeep::fuzzing::token(data));
