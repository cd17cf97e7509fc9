//! The pages' events in the audit ledger (`docs/audit.md` lists them): who signed in,
//! gave or took back consent, decided an approval, changed a ceiling, a tool, a person
//! or a stored credential.

use warrant_consent::ledger::Entry;
use warrant_idp::IdpError;
use warrant_idp::users::User;

use crate::UiState;
use crate::page::PageError;

impl UiState {
    /// Records `entry` soon, without waiting: while the ledger cannot be written it is
    /// kept and written once it can. For what already happened and cannot be undone.
    pub(crate) fn note(&self, entry: Entry) {
        if let Some(ledger) = &self.ledger {
            ledger.note(entry);
        }
    }

    /// Records `entry` and returns once it is written; fails (and the caller does not do,
    /// or undoes, what it records) while the ledger cannot be written. For what gives an
    /// agent authority: consent, approvals.
    pub(crate) async fn record(&self, entry: Entry) -> Result<(), PageError> {
        match &self.ledger {
            Some(ledger) => ledger
                .append(entry)
                .await
                .map(drop)
                .map_err(|e| PageError(IdpError::Unrecorded(e.to_string()))),
            None => Ok(()),
        }
    }

    /// The email of the person `user_id`, the way records name them (the id when the
    /// account is gone).
    pub(crate) async fn email_of(&self, user_id: &str) -> String {
        match self.idp.users.get(user_id).await {
            Ok(Some(user)) => user.email,
            _ => user_id.to_owned(),
        }
    }

    /// Records that `user` signed in with `method` from `ip`.
    pub(crate) fn signed_in(&self, user: &User, method: &str, ip: Option<&str>) {
        self.note(
            Entry::event("sign_in")
                .by(&user.id, &user.email)
                .decided(true)
                .with("method", method)
                .with("ip", ip),
        );
    }

    /// Records a sign-in refused for `error` (whose technical reason is kept, as in the
    /// log), with the person where the attempt named one.
    pub(crate) fn sign_in_refused(
        &self,
        method: &str,
        user: Option<&User>,
        error: &IdpError,
        ip: Option<&str>,
    ) {
        let mut entry = Entry::event("sign_in.refused");
        if let Some(user) = user {
            entry = entry.by(&user.id, &user.email);
        }
        self.note(
            entry
                .decided(false)
                .reason(error.to_string())
                .with("method", method)
                .with("ip", ip),
        );
    }
}
