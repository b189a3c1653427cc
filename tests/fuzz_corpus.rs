//! Replays every committed fuzz corpus file through its target, on stable, in `cargo test`.

use std::path::Path;

fn replay(target: &str, run: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        run(&std::fs::read(&path).unwrap());
        n += 1;
    }
    assert!(n > 0, "no corpus in {}", dir.display());
}

#[test]
fn decode_record_corpus_never_panics() {
    replay("decode_record", redkeep::fuzzing::decode_record);
}

#[test]
fn email_corpus_never_panics() {
    replay("email", redkeep::fuzzing::email);
}

#[test]
fn token_corpus_never_panics() {
    replay("token", redkeep::fuzzing::token);
}

#[cfg(feature = "cli")]
#[test]
fn cli_args_corpus_never_panics() {
    replay("cli_args", redkeep::fuzzing::cli_args);
}
