#![no_main]
//! Fuzz target `store_ops`: the body is `redkeep::fuzzing::store_ops`, which `cargo test` also runs on the
//! committed corpus.
libfuzzer_sys::fuzz_target!(|data: &[u8]| redkeep::fuzzing::store_ops(data));
