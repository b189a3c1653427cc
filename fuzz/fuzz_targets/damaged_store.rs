#![no_main]
//! Fuzz target `damaged_store`: the body is `redkeep::fuzzing::damaged_store`, which `cargo test`
//! also runs on the committed corpus.
//!
//! libFuzzer's panic hook aborts on every panic, even one that is caught. A panic inside the
//! storage engine on a damaged page is caught by redkeep and becomes `Error::Damaged` (the
//! behaviour under test), so the hook lets those unwind; any other panic still aborts.
libfuzzer_sys::fuzz_target!(
    init: {
        let abort = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !redkeep::store::containing() {
                abort(info);
            }
        }));
    },
    |data: &[u8]| redkeep::fuzzing::damaged_store(data)
);
