//! Events other than calls (`consent.given`, `sign_in`, `person.disabled`, …), built by
//! whoever makes them happen: the pages, the commands, the gateway's own tasks. The list
//! of names, and what each says, is in `docs/audit.md`.

use serde::Serialize;

use super::{Entry, Kind};
use crate::token::Risk;

impl Entry {
    /// An event named `name`.
    pub fn event(name: &'static str) -> Self {
        Self::new(Kind::Event(name))
    }

    /// Who did it: the person's id (the indexed column, so a person's own records are
    /// found) and their email (in `detail`, the way the pages name people).
    pub fn by(mut self, user_id: &str, email: &str) -> Self {
        self.user = Some(user_id.into());
        self.with("by", email)
    }

    /// The person it concerns, when someone else acted (an admin disabling them):
    /// `detail.more.subject`, with their id and email.
    pub fn about(self, user_id: &str, email: &str) -> Self {
        self.with(
            "subject",
            serde_json::json!({"id": user_id, "email": email}),
        )
    }

    /// The agent it concerns (its OAuth client id).
    pub fn agent(mut self, client_id: &str) -> Self {
        self.agent = Some(client_id.into());
        self
    }

    pub fn upstream(mut self, name: &str) -> Self {
        self.upstream = Some(name.into());
        self
    }

    pub fn tool(mut self, name: &str) -> Self {
        self.tool = Some(name.into());
        self
    }

    pub fn risk(mut self, risk: Risk) -> Self {
        self.risk = Some(risk);
        self
    }

    /// The decision it records: `true` allowed (approved, succeeded), `false` refused.
    pub fn decided(mut self, allowed: bool) -> Self {
        self.allowed = Some(allowed);
        self
    }

    pub fn reason(mut self, reason: impl Into<String>) -> Self {
        self.detail.reason = Some(reason.into());
        self
    }

    /// One more fact, under `detail.more.<key>` (a value that cannot be written as JSON
    /// is left out; every type used here can).
    pub fn with(mut self, key: &str, value: impl Serialize) -> Self {
        let Ok(value) = serde_json::to_value(value) else {
            return self;
        };
        let more = self
            .detail
            .more
            .get_or_insert_with(|| serde_json::Value::Object(serde_json::Map::new()));
        if let serde_json::Value::Object(map) = more {
            map.insert(key.to_owned(), value);
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_says_who_and_what_in_its_columns_and_detail() {
        let e = Entry::event("ceiling.changed")
            .by("u1", "ada@example.com")
            .agent("c1")
            .upstream("github")
            .tool("github.create_issue")
            .risk(Risk::High)
            .decided(true)
            .reason("set on the admin page")
            .with("subject", "bob@example.com")
            .with("from", Option::<&str>::None);
        assert_eq!(e.kind.name(), "ceiling.changed");
        assert_eq!(e.user.as_deref(), Some("u1"));
        assert_eq!(e.agent.as_deref(), Some("c1"));
        assert_eq!(e.upstream.as_deref(), Some("github"));
        assert_eq!(e.tool.as_deref(), Some("github.create_issue"));
        assert_eq!(e.risk, Some(Risk::High));
        assert_eq!(e.allowed, Some(true));
        assert_eq!(e.detail.reason.as_deref(), Some("set on the admin page"));
        assert_eq!(
            e.detail.more,
            Some(
                serde_json::json!({"by": "ada@example.com", "subject": "bob@example.com", "from": null})
            )
        );
    }
}
