//! Stopping a person's agents at once: when an admin disables the person, or revokes
//! all of their agents. Every way to disable someone goes through [`People::set_status`],
//! so each ends the same things:
//!
//! - every grant the person gave, and every refresh token issued under them (refresh
//!   fails, the consent screen asks again);
//! - every access token of those grants, through the live revocation set (the grant ids
//!   are added here at once, and every replica reads them within a second);
//! - every call held for the person's approval ([`Status::Withdrawn`](crate::approvals::Status)).
//!
//! Disabling also puts the person in the live set of disabled people, which refuses
//! their tokens on `/mcp` whatever their grants (a grant made in the same instant, a
//! database changed by hand). Enabling the person again brings nothing back: the grants
//! stay revoked, and the person approves each agent anew on the consent screen.

use std::sync::Arc;

use warrant_idp::IdpError;
use warrant_idp::clock::Clock;
use warrant_idp::db::Db;
use warrant_idp::users::{Status, Users};

use crate::approvals::{ApprovalError, Approvals, DEFAULT_TIMEOUT};
use crate::grants::Grants;
use crate::oauth::{RevokedSet, StoreError};

/// What stopping a person's agents ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stopped {
    /// The grants revoked (each an agent the person had approved).
    pub grants: usize,
    /// The held calls withdrawn.
    pub approvals: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum PeopleError {
    #[error(transparent)]
    Idp(#[from] IdpError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Approvals(#[from] ApprovalError),
}

/// The person-wide operations on agents. Cheap to clone.
#[derive(Debug, Clone)]
pub struct People {
    users: Users,
    grants: Grants,
    approvals: Approvals,
    revoked: Option<RevokedSet>,
    clock: Arc<dyn Clock>,
}

impl People {
    /// `revoked` is the live revocation set of this process (`None` when there is no
    /// `/mcp` here: other replicas read the tables within a second).
    pub fn new(db: Db, clock: Arc<dyn Clock>, revoked: Option<RevokedSet>) -> Self {
        Self {
            users: Users::new(db.clone(), clock.clone()),
            grants: Grants::new(db.clone()),
            approvals: Approvals::new(db, clock.clone(), DEFAULT_TIMEOUT),
            revoked,
            clock,
        }
    }

    /// Sets a person's status. Disabling ends their sessions, stops every agent acting
    /// for them and withdraws their held calls; enabling lifts the refusal of the
    /// person only (nothing old comes back).
    pub async fn set_status(&self, user_id: &str, status: Status) -> Result<Stopped, PeopleError> {
        let person = self
            .users
            .get(user_id)
            .await?
            .ok_or(IdpError::NotFound("user"))?;
        self.users.set_status(user_id, status).await?;
        if status != Status::Disabled {
            if let Some(revoked) = &self.revoked {
                revoked.set_disabled(user_id, None);
            }
            return Ok(Stopped::default());
        }
        if let Some(revoked) = &self.revoked {
            revoked.set_disabled(user_id, Some(&person.email));
        }
        let stopped = self.revoke_agents(user_id).await?;
        Ok(stopped)
    }

    /// Revokes every agent of the person (every grant, its refresh and access tokens)
    /// and withdraws the calls held for their approval. The person stays as they are.
    pub async fn revoke_agents(&self, user_id: &str) -> Result<Stopped, PeopleError> {
        let now = self.clock.unix();
        let grants = self.grants.revoke_all_of(user_id, now).await?;
        if let Some(revoked) = &self.revoked {
            revoked.insert(&grants);
        }
        let approvals = self.approvals.withdraw_pending_of(user_id).await?;
        tracing::info!(user = %user_id, grants = grants.len(), approvals, "agents of the user stopped");
        Ok(Stopped {
            grants: grants.len(),
            approvals,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oauth::test_support::fixture;
    use crate::token::Revocations as _;
    use warrant_idp::clock::SystemClock;

    #[tokio::test]
    async fn disabling_stops_the_agents_and_enabling_brings_nothing_back() {
        let f = fixture(1_000).await;
        let revoked = RevokedSet::load(f.db.clone(), 1_000).await.expect("load");
        let people = People::new(f.db.clone(), Arc::new(SystemClock), Some(revoked.clone()));
        assert_eq!(revoked.view().disabled_user(&f.user_id), None);

        let stopped = people
            .set_status(&f.user_id, Status::Disabled)
            .await
            .expect("disable");
        assert_eq!(stopped.grants, 1);
        let view = revoked.view();
        assert_eq!(
            view.disabled_user(&f.user_id).as_deref(),
            Some("ada@example.com")
        );
        assert!(view.is_revoked(&f.grant.id), "the grant is revoked at once");

        let stopped = people
            .set_status(&f.user_id, Status::Active)
            .await
            .expect("enable");
        assert_eq!(stopped, Stopped::default());
        let view = revoked.view();
        assert_eq!(view.disabled_user(&f.user_id), None);
        assert!(view.is_revoked(&f.grant.id), "the old grant stays revoked");
        let grant = Grants::new(f.db.clone())
            .get(&f.grant.id)
            .await
            .expect("get")
            .expect("found");
        assert!(grant.revoked_at.is_some());
        assert!(matches!(
            people.set_status("nobody", Status::Disabled).await,
            Err(PeopleError::Idp(IdpError::NotFound(_)))
        ));
    }
}
