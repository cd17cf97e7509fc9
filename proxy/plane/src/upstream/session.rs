//! What a lane knows of its upstream's session: the id the upstream issued, that it
//! issues none, or nothing yet (see the module documentation of [`super::direct`]).

use std::sync::{Arc, RwLock};

use http::{HeaderValue, StatusCode};

use crate::locks::ReadWrite;
use crate::protocol::message::Incoming;

/// Where the lane keeps the upstream's session id (recorded by the rmcp transport).
pub(crate) type SessionSlot = Arc<UpstreamSession>;

/// What the lane knows of the upstream's session, and the header that carries its id on
/// the direct path.
#[derive(Default)]
pub(crate) struct UpstreamSession {
    current: RwLock<SessionState>,
}

#[derive(Default)]
enum SessionState {
    /// Not known yet (connecting, or the session ended): direct calls wait for it.
    #[default]
    Unknown,
    /// The upstream answered `initialize` without an `Mcp-Session-Id`: it keeps no
    /// session, and requests go without the header.
    Stateless,
    /// The id, and its header value (`None` if the id cannot be one).
    Issued(Arc<str>, Option<HeaderValue>),
}

impl UpstreamSession {
    /// Records the id the upstream issued (or that the transport used).
    pub(crate) fn record(&self, id: &str) {
        let same = |state: &SessionState| matches!(state, SessionState::Issued(known, _) if known.as_ref() == id);
        if same(&self.current.reading()) {
            return;
        }
        let mut state = self.current.writing();
        if !same(&state) {
            *state = SessionState::Issued(Arc::from(id), HeaderValue::from_str(id).ok());
        }
    }

    /// Records that the upstream answered `initialize` without issuing a session.
    pub(crate) fn record_stateless(&self) {
        let mut state = self.current.writing();
        *state = SessionState::Stateless;
    }

    /// Forgets what was known (the session ended, or the lane reconnects).
    pub(crate) fn clear(&self) {
        let mut state = self.current.writing();
        *state = SessionState::Unknown;
    }

    /// Whether direct requests can be addressed: an id is known, or none is needed.
    pub(crate) fn is_known(&self) -> bool {
        !matches!(*self.current.reading(), SessionState::Unknown)
    }

    /// Whether the upstream issues no session.
    pub(crate) fn is_stateless(&self) -> bool {
        matches!(*self.current.reading(), SessionState::Stateless)
    }

    /// The `Mcp-Session-Id` of a direct request: `Some(None)` for an upstream without
    /// sessions, `None` while the id is not known (or cannot be sent).
    pub(super) fn header(&self) -> Option<Option<HeaderValue>> {
        match &*self.current.reading() {
            SessionState::Unknown => None,
            SessionState::Stateless => Some(None),
            SessionState::Issued(_, header) => header.clone().map(Some),
        }
    }
}

/// Whether an upstream that issued no session refused a call for want of one, before
/// running it (restarted with sessions): HTTP 400 or 404 with no answer to the call —
/// a body that is no JSON-RPC response (rmcp: "Session ID is required"), or one not
/// addressed to the call (the TypeScript SDK answers with an error whose id is null).
pub(super) fn wants_a_session(status: StatusCode, reply: Option<&Incoming<'_>>, id: &str) -> bool {
    let answers_the_call = reply
        .and_then(|r| r.id)
        .is_some_and(|r| r.get().trim_matches('"') == id);
    matches!(status, StatusCode::BAD_REQUEST | StatusCode::NOT_FOUND) && !answers_the_call
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_for_want_of_a_session_is_told_from_an_answer() {
        let parse = |body: &'static str| {
            Incoming::parse(body.as_bytes())
                .ok()
                .filter(|r| r.result.is_some() || r.error.is_some())
        };
        let rmcp = parse("Bad Request: Session ID is required");
        assert!(wants_a_session(
            StatusCode::BAD_REQUEST,
            rmcp.as_ref(),
            "warrant-1"
        ));
        let typescript = parse(
            r#"{"jsonrpc":"2.0","error":{"code":-32000,"message":"Bad Request: Mcp-Session-Id header is required"},"id":null}"#,
        );
        assert!(wants_a_session(
            StatusCode::BAD_REQUEST,
            typescript.as_ref(),
            "warrant-1"
        ));
        assert!(wants_a_session(StatusCode::NOT_FOUND, None, "warrant-1"));
        let answer =
            parse(r#"{"jsonrpc":"2.0","id":"warrant-1","error":{"code":-32602,"message":"bad"}}"#);
        assert!(!wants_a_session(
            StatusCode::BAD_REQUEST,
            answer.as_ref(),
            "warrant-1"
        ));
        assert!(!wants_a_session(StatusCode::OK, None, "warrant-1"));
        assert!(!wants_a_session(StatusCode::BAD_GATEWAY, None, "warrant-1"));
    }

    #[test]
    fn a_session_not_known_yet_is_not_taken_for_no_session() {
        let slot = UpstreamSession::default();
        assert!(!slot.is_known() && slot.header().is_none(), "unknown");
        slot.record_stateless();
        assert!(slot.is_known() && slot.is_stateless());
        assert_eq!(slot.header(), Some(None), "no header without sessions");
        slot.record("abc");
        assert!(!slot.is_stateless());
        assert_eq!(slot.header(), Some(Some(HeaderValue::from_static("abc"))));
        slot.record("not\na header\n");
        assert!(slot.header().is_none(), "an id no header can carry");
        slot.clear();
        assert!(!slot.is_known() && !slot.is_stateless());
    }
}
