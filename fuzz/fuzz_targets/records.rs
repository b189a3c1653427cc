#![no_main]
//! Fuzz target `records`: the body is `redkeep::fuzzing::records`, which `cargo test` also runs on the
//! committed corpus.
libfuzzer_sys::fuzz_target!(|data: &[u8]| redkeep::fuzzing::records(data));
