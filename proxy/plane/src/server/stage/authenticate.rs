//! Stage 2, authenticate: who is calling. The access token is checked before the body
//! is read (a request without a valid one costs nothing more); once the body is read,
//! a session of the older revisions must be used by the subject (person and agent) that
//! started it. Whether the person is still active is part of the token's check: the
//! revocation set carries disabled people.

use http::HeaderMap;
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer};

use crate::enforce::auth::{Caller, McpAuth, Refusal};
use crate::protocol::codes::NOT_AUTHENTICATED;

/// The caller behind the request's `Authorization: Bearer` header (`None` when tokens
/// are off, `mcp.authorization = "none"`).
pub(crate) fn token(
    auth: Option<&McpAuth>,
    headers: &HeaderMap,
) -> Result<Option<Caller>, Refusal> {
    let Some(auth) = auth else {
        return Ok(None);
    };
    auth.verify(bearer(headers)?).map(Some)
}

/// The bearer token of a request: exactly one `Authorization` header, of the `Bearer`
/// scheme (in any case), with a token.
fn bearer(headers: &HeaderMap) -> Result<&str, Refusal> {
    let mut values = headers.get_all(http::header::AUTHORIZATION).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return Err(Refusal::Missing);
    };
    value
        .to_str()
        .ok()
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .filter(|token| !token.is_empty())
        .ok_or(Refusal::Missing)
}

/// Checks that session `id` (when the request names one) belongs to the caller.
pub(crate) fn session(
    auth: Option<&McpAuth>,
    id: Option<&str>,
    caller: Option<&Caller>,
) -> Result<(), Refusal> {
    match (auth, id, caller) {
        (Some(auth), Some(id), Some(caller)) => auth.check_session(id, caller),
        _ => Ok(()),
    }
}

/// The verified token of the request behind `context` (set by the edge).
pub(crate) fn token_caller(context: &RequestContext<RoleServer>) -> Option<Caller> {
    context
        .extensions
        .get::<http::request::Parts>()
        .and_then(|p| p.extensions.get::<Caller>())
        .cloned()
}

/// With authorization on, a request without a verified token never gets past the
/// edge; should one reach a handler anyway, it is refused.
pub(crate) fn no_token() -> ErrorData {
    ErrorData::new(
        NOT_AUTHENTICATED,
        "no verified access token came with this request",
        None,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(
                http::header::AUTHORIZATION,
                http::HeaderValue::from_str(value).expect("header"),
            );
        }
        headers
    }

    #[test]
    fn one_bearer_header_gives_its_token() {
        assert!(matches!(bearer(&headers(&["Bearer abc"])), Ok("abc")));
        assert!(matches!(bearer(&headers(&["bearer  abc "])), Ok("abc")));
    }

    #[test]
    fn no_header_two_headers_another_scheme_or_no_token_is_missing() {
        for values in [
            &[][..],
            &["Bearer a", "Bearer b"][..],
            &["Basic YWxhZGRpbjpvcGVu"][..],
            &["Bearer "][..],
            &["Bearer"][..],
        ] {
            assert!(
                matches!(bearer(&headers(values)), Err(Refusal::Missing)),
                "{values:?}"
            );
        }
    }

    #[test]
    fn without_tokens_nobody_is_asked_for_one() {
        assert!(matches!(token(None, &headers(&[])), Ok(None)));
        assert!(session(None, Some("s"), None).is_ok());
    }
}
