#![no_main]
//! Fuzz target `email`: the body is `redkeep::fuzzing::email`, which `cargo test` also runs on
//! the committed corpus.
libfuzzer_sys::fuzz_target!(|data: &[u8]| redkeep::fuzzing::email(data));
