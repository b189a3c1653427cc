//! Replays every committed fuzz corpus file through its target, on stable, in `cargo test`.

use std::path::Path;

fn replay(target: &str, run: fn(&[u8])) {
    // The panics redkeep contains (the storage engine failing on a damaged page) are not
    // printed: a damaged store's corpus meets many, slow to print with RUST_BACKTRACE=1.
    static QUIET: std::sync::Once = std::sync::Once::new();
    QUIET.call_once(|| {
        let default_hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !redkeep::store::containing() {
                default_hook(info);
            }
        }));
    });
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

#[test]
fn records_corpus_never_panics() {
    replay("records", redkeep::fuzzing::records);
}

#[test]
fn workspace_doc_corpus_keeps_unknown_fields() {
    replay("workspace_doc", redkeep::fuzzing::workspace_doc);
}

#[test]
fn import_lines_corpus_passes_check_or_changes_nothing() {
    replay("import_lines", redkeep::fuzzing::import_lines);
}

#[cfg(feature = "fuzzing")]
#[test]
fn store_ops_corpus_matches_the_model() {
    replay("store_ops", redkeep::fuzzing::store_ops);
}

#[cfg(feature = "cli")]
#[test]
fn commands_corpus_runs_and_stays_clean() {
    replay("commands", redkeep::fuzzing::commands);
}

#[cfg(feature = "admin")]
#[test]
fn admin_protocol_corpus_keeps_the_server_serving() {
    replay("admin_protocol", redkeep::fuzzing::admin_protocol);
}

#[test]
fn damaged_store_corpus_never_panics_and_salvages_clean() {
    replay("damaged_store", redkeep::fuzzing::damaged_store);
}
