#![no_main]
//! Fuzz target `decode_record`: the body is `redkeep::fuzzing::decode_record`, which `cargo test` also runs on
//! the committed corpus.
libfuzzer_sys::fuzz_target!(|data: &[u8]| redkeep::fuzzing::decode_record(data));
