#![no_main]
//! Fuzz target `workspace_doc`: the body is `redkeep::fuzzing::workspace_doc`, which `cargo test` also runs on the
//! committed corpus.
libfuzzer_sys::fuzz_target!(|data: &[u8]| redkeep::fuzzing::workspace_doc(data));
