//! A database with one user, one public client and one grant, for the tests of the
//! authorization server and of grants.

use std::sync::Arc;

use warrant_idp::clock::SystemClock;
use warrant_idp::db::Db;
use warrant_idp::users::{NewUser, Role, Status, Users};

use super::clients::{ClientKind, Clients, NewClient};
use crate::grants::{Grant, Grants, NewGrant};

pub(crate) const RESOURCE: &str = "https://warrant.example/mcp";

/// A migrated SQLite database in a temporary directory, with one user, one public
/// client and one grant.
pub(crate) struct Fixture {
    pub(crate) _dir: tempfile::TempDir,
    pub(crate) db: Db,
    pub(crate) user_id: String,
    pub(crate) client_id: String,
    pub(crate) grant: Grant,
}

pub(crate) async fn fixture(now: i64) -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = Db::open(None, dir.path()).await.expect("open");
    fixture_in(dir, db, now).await
}

/// [`fixture`] on the test run's backend (see `crate::test_db`).
pub(crate) async fn fixture_on_test_backend(now: i64) -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = crate::test_db::open(dir.path(), "warrant_unit").await;
    fixture_in(dir, db, now).await
}

async fn fixture_in(dir: tempfile::TempDir, db: Db, now: i64) -> Fixture {
    db.migrate().await.expect("migrate");
    let users = Users::new(db.clone(), Arc::new(SystemClock));
    let user = users
        .create(NewUser {
            email: "ada@example.com".into(),
            display_name: "Ada".into(),
            role: Role::Member,
            status: Status::Active,
        })
        .await
        .expect("user");
    let (client, _) = Clients::new(db.clone())
        .register(
            NewClient {
                kind: ClientKind::Dcr,
                client_id: None,
                name: "Test agent".into(),
                redirect_uris: vec!["http://127.0.0.1/callback".into()],
                application_type: "native".into(),
                token_endpoint_auth_method: "none".into(),
            },
            now,
        )
        .await
        .expect("client");
    let grant = Grants::new(db.clone())
        .create(
            &NewGrant {
                user_id: user.id.clone(),
                client_id: client.client_id.clone(),
                resource: RESOURCE.into(),
                allow: vec!["*".into()],
                deny: vec![],
                max_risk: None,
                args: Vec::new(),
                calls_per_hour: None,
                expires_at: now + 3600,
            },
            now,
        )
        .await
        .expect("grant");
    Fixture {
        _dir: dir,
        db,
        user_id: user.id,
        client_id: client.client_id,
        grant,
    }
}
