//! The database a unit test runs on: the test run's backend, as the end-to-end suite
//! does — SQLite in the given directory, or with `WARRANT_TEST_BACKEND=postgres` a fresh
//! database on the server of `WARRANT_TEST_DATABASE_URL` (a user that may create
//! databases). Not migrated: the caller decides when.

use warrant_idp::db::Db;

/// Opens the test database (see the module documentation); `prefix` names the
/// PostgreSQL databases of one kind of test, so a leftover is easy to trace.
pub(crate) async fn open(dir: &std::path::Path, prefix: &str) -> Db {
    if std::env::var("WARRANT_TEST_BACKEND").as_deref() != Ok("postgres") {
        return Db::open(None, dir).await.expect("open SQLite");
    }
    use sqlx::Connection;
    let base = std::env::var("WARRANT_TEST_DATABASE_URL")
        .expect("WARRANT_TEST_BACKEND=postgres needs WARRANT_TEST_DATABASE_URL");
    let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
    let mut admin = sqlx::PgConnection::connect(&base)
        .await
        .expect("connect to the test PostgreSQL");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .expect("create a test database");
    let mut url = url::Url::parse(&base).expect("a valid URL");
    url.set_path(&name);
    Db::open(Some(url.as_str()), dir)
        .await
        .expect("open PostgreSQL")
}

/// Creates an active member `email` in `groups` (set by an admin); their id.
pub(crate) async fn member(
    users: &warrant_idp::users::Users,
    email: &str,
    groups: &[&str],
) -> String {
    use warrant_idp::users::{ADMIN_SOURCE, NewUser, Role, Status};
    let user = users
        .create(NewUser {
            email: email.into(),
            display_name: email.into(),
            role: Role::Member,
            status: Status::Active,
        })
        .await
        .expect("create");
    let groups: Vec<String> = groups.iter().map(|g| (*g).to_owned()).collect();
    users
        .set_groups(&user.id, ADMIN_SOURCE, &groups)
        .await
        .expect("groups");
    user.id
}
