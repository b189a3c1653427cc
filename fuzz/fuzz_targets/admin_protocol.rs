#![no_main]
//! Fuzz target `admin_protocol`: the body is `redkeep::fuzzing::admin_protocol`, which `cargo test` also runs on the
//! committed corpus.
libfuzzer_sys::fuzz_target!(|data: &[u8]| redkeep::fuzzing::admin_protocol(data));
