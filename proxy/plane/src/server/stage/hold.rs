//! Stage 4, hold: a call of a `critical` tool goes upstream only once the person behind
//! the token approved it. Asking happens in the client's own protocol (multi round-trip,
//! URL elicitation, or an error naming the page: `enforce::approve`), which the MCP
//! handler does; so on the edge a held call leaves the fast path for the handler, which
//! counts its budget once it is approved.

use warrant_consent::token::Risk;

/// Whether an allowed call of risk `risk` must wait for its person's approval
/// (`approvals`: critical calls are held at all, as they are whenever tokens are on).
pub(crate) fn waits_for_approval(risk: Risk, approvals: bool) -> bool {
    approvals && risk == Risk::Critical
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_critical_calls_wait_and_only_where_approvals_are_asked() {
        assert!(waits_for_approval(Risk::Critical, true));
        assert!(!waits_for_approval(Risk::Critical, false));
        for risk in [Risk::Low, Risk::Medium, Risk::High] {
            assert!(!waits_for_approval(risk, true), "{risk:?}");
        }
    }
}
