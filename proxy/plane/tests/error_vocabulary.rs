//! The "Errors clients see" table of `docs/configuration.md` lists exactly the JSON-RPC
//! codes of the error vocabulary (`protocol::codes::CODES`).

use std::collections::BTreeSet;

use warrant_plane::protocol::codes::CODES;

/// The codes (`-32xxx` in backticks) of the JSON-RPC column of the table under `## Errors
/// clients see`.
fn documented(markdown: &str) -> BTreeSet<i32> {
    let section = markdown
        .split("\n## ")
        .find(|s| s.starts_with("Errors clients see"))
        .expect("docs/configuration.md has a section \"Errors clients see\"");
    let mut codes = BTreeSet::new();
    for row in section.lines().filter(|l| l.starts_with('|')) {
        let Some(column) = row.split('|').nth(3) else {
            continue;
        };
        for quoted in column.split('`').skip(1).step_by(2) {
            if let Ok(code) = quoted.parse::<i32>() {
                codes.insert(code);
            }
        }
    }
    codes
}

#[test]
fn the_documented_errors_are_the_vocabulary() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/configuration.md");
    let markdown = std::fs::read_to_string(path).expect("docs/configuration.md");
    let documented = documented(&markdown);
    let vocabulary: BTreeSet<i32> = CODES.iter().map(|c| c.0).collect();
    let undocumented: Vec<_> = vocabulary.difference(&documented).collect();
    let unknown: Vec<_> = documented.difference(&vocabulary).collect();
    assert!(
        undocumented.is_empty() && unknown.is_empty(),
        "codes in protocol::codes::CODES but not in the docs' table: {undocumented:?}; \
         codes in the docs' table but not in CODES: {unknown:?}"
    );
}

#[test]
fn a_code_missing_from_the_table_is_noticed() {
    let markdown = "# x\n\n## Errors clients see\n\n| a | b | c |\n|---|---|---|\n\
                    | parse | 400 | `-32700` Parse error |\n| other | 200 | `-32010` or `-32011` |\n\n## Next\n| `-32099` |";
    assert_eq!(
        documented(markdown),
        BTreeSet::from([-32700, -32010, -32011])
    );
}
