//! Stage 8, inspect the answer: what comes back from the upstream before the client
//! sees it. The credentials the upstream is given (its configured headers or
//! environment, written by reference) are replaced wherever its answer echoes them
//! ([`Redactions`]), on both paths; guardrails go here later.

use axum::body::Body;
use axum::response::Response;
use futures::StreamExt;
use rmcp::ErrorData;
use rmcp::model::CallToolResponse;
use std::sync::Arc;

use crate::protocol::redact::Redactions;

/// The answer of a call on the direct path, its credentials redacted. An answer in one
/// piece or a stream of events: each chunk is a whole JSON message or event.
pub(crate) fn answer(response: Response, redactions: &Arc<Redactions>) -> Response {
    if redactions.is_empty() {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    // A redaction changes the length.
    parts.headers.remove(http::header::CONTENT_LENGTH);
    let redactions = redactions.clone();
    let chunks = body.into_data_stream().map(move |chunk| {
        chunk.map(|bytes| match redactions.bytes(&bytes) {
            std::borrow::Cow::Borrowed(_) => bytes,
            std::borrow::Cow::Owned(replaced) => bytes::Bytes::from(replaced),
        })
    });
    Response::from_parts(parts, Body::from_stream(chunks))
}

/// The result of a call forwarded through rmcp, its credentials redacted (in the
/// result, or in the error's message and data).
pub(crate) fn result(
    result: Result<CallToolResponse, ErrorData>,
    redactions: &Redactions,
) -> Result<CallToolResponse, ErrorData> {
    if redactions.is_empty() {
        return result;
    }
    match result {
        Ok(CallToolResponse::Complete(r)) => {
            redacted(r, redactions).map(CallToolResponse::Complete)
        }
        Ok(CallToolResponse::InputRequired(r)) => {
            redacted(r, redactions).map(CallToolResponse::InputRequired)
        }
        Ok(CallToolResponse::Task(r)) => redacted(r, redactions).map(CallToolResponse::Task),
        Ok(other) => Ok(other),
        Err(error) => Err(redacted(error, redactions).unwrap_or_else(|withheld| withheld)),
    }
}

/// Another answer of the upstream (a prompt, a resource's contents), its credentials
/// redacted.
pub(crate) fn value<T>(value: T, redactions: &Redactions) -> Result<T, ErrorData>
where
    T: serde::Serialize + serde::de::DeserializeOwned,
{
    if redactions.is_empty() {
        return Ok(value);
    }
    redacted(value, redactions)
}

/// `value` with its credentials redacted, through its JSON. Should the redacted JSON
/// not read back (a credential spanning the JSON's structure), the answer is withheld:
/// an error says so, and nothing of the answer goes out.
fn redacted<T>(value: T, redactions: &Redactions) -> Result<T, ErrorData>
where
    T: serde::Serialize + serde::de::DeserializeOwned,
{
    let Ok(json) = serde_json::to_vec(&value) else {
        return Err(withheld());
    };
    match redactions.bytes(&json) {
        std::borrow::Cow::Borrowed(_) => Ok(value),
        std::borrow::Cow::Owned(replaced) => {
            serde_json::from_slice(&replaced).map_err(|_| withheld())
        }
    }
}

fn withheld() -> ErrorData {
    ErrorData::internal_error(
        "the upstream's answer carried one of the credentials Warrant gives it and could not \
         be redacted, so it was withheld",
        None,
    )
}

#[cfg(test)]
mod tests {
    use rmcp::model::{CallToolResult, GetPromptResult};
    use serde_json::json;

    use super::*;

    const SECRET: &str = "s3cret-credential-value";

    fn text_of<T: serde::Serialize>(value: &T) -> String {
        serde_json::to_string(value).unwrap_or_default()
    }

    #[test]
    fn results_errors_and_prompts_lose_their_credentials() {
        let redactions = Redactions::of([SECRET]);
        let echoed: CallToolResult = serde_json::from_value(json!({
            "content": [{"type": "text", "text": format!("key={SECRET}")}]
        }))
        .expect("a result");
        let Ok(CallToolResponse::Complete(redacted)) =
            result(Ok(CallToolResponse::Complete(echoed)), &redactions)
        else {
            panic!("a result");
        };
        let text = text_of(&redacted);
        assert!(
            !text.contains(SECRET) && text.contains("[redacted by Warrant]"),
            "{text}"
        );

        let error = ErrorData::internal_error(format!("bad key {SECRET}"), None);
        let Err(error) = result(Err(error), &redactions) else {
            panic!("an error");
        };
        assert!(!error.message.contains(SECRET), "{}", error.message);

        let prompt: GetPromptResult = serde_json::from_value(json!({
            "messages": [{"role": "user", "content": {"type": "text", "text": format!("use {SECRET}")}}]
        }))
        .expect("a prompt");
        let prompt = value(prompt, &redactions).expect("redacted");
        assert!(!text_of(&prompt).contains(SECRET));
    }
}
