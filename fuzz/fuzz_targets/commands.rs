#![no_main]
//! Fuzz target `commands`: the body is `redkeep::fuzzing::commands`, which `cargo test` also runs on the
//! committed corpus.
libfuzzer_sys::fuzz_target!(|data: &[u8]| redkeep::fuzzing::commands(data));
