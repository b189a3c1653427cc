//! The README's library setup builds what it shows: the dependency line it gives enables
//! the features its example uses, and it passes on the debug-build profile overrides that
//! keep password hashing fast (Cargo applies a dependency's profiles only when it is the
//! workspace being built, never in an application's).

use std::collections::BTreeSet;

fn file(name: &str) -> String {
    std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(name)).unwrap()
}

/// The `Library` section of the README: its text up to the next section.
fn library_section(readme: &str) -> &str {
    let start = readme.find("\n## Library\n").expect("a Library section");
    let rest = &readme[start + 1..];
    let end = rest[3..].find("\n## ").map_or(rest.len(), |e| e + 3);
    &rest[..end]
}

/// The packages a `[profile.dev.package.NAME]` table names in `text`.
fn dev_profile_packages(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("[profile.dev.package."))
        .filter_map(|l| l.strip_suffix(']'))
        .map(str::to_string)
        .collect()
}

#[test]
fn the_readme_dependency_line_builds_the_readme_example() {
    let readme = file("README.md");
    let library = library_section(&readme);
    let toml = library
        .split("```toml\n")
        .nth(1)
        .and_then(|t| t.split("```").next())
        .expect("a Cargo.toml block in the Library section");
    let line = toml
        .lines()
        .find(|l| l.starts_with("redkeep ="))
        .expect("a redkeep dependency line");
    assert!(line.contains("default-features = false"), "{line}");
    let example = library
        .split("```rust\n")
        .nth(1)
        .expect("the example")
        .split("```")
        .next()
        .unwrap();
    if example.contains("redkeep::admin::") {
        assert!(
            line.contains("\"admin\""),
            "the example needs `admin`: {line}"
        );
    }
}

#[test]
fn the_readme_passes_on_every_debug_profile_override() {
    let ours = dev_profile_packages(&file("Cargo.toml"));
    assert!(ours.contains("argon2"), "{ours:?}");
    let shown = dev_profile_packages(library_section(&file("README.md")));
    assert_eq!(shown, ours);
}
