//! `sqlx::migrate!` embeds the migration files at compile time; rebuild this crate when a
//! migration is added or changed, so no binary runs with a stale history.
fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
