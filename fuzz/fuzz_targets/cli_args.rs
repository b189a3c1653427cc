#![no_main]
//! Fuzz target `cli_args`: the body is `redkeep::fuzzing::cli_args`, which `cargo test` also runs on
//! the committed corpus.
libfuzzer_sys::fuzz_target!(|data: &[u8]| redkeep::fuzzing::cli_args(data));
