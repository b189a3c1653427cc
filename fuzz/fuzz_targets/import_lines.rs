#![no_main]
//! Fuzz target `import_lines`: the body is `redkeep::fuzzing::import_lines`, which `cargo test` also runs on the
//! committed corpus.
libfuzzer_sys::fuzz_target!(|data: &[u8]| redkeep::fuzzing::import_lines(data));
