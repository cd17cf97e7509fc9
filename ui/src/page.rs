//! What every page shares: the error page, security headers, time formatting.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use warrant_idp::IdpError;

/// A page that says what went wrong (and, with `link`, where to go next).
#[derive(Template, WebTemplate)]
#[template(path = "message.html")]
pub(crate) struct MessagePage {
    pub title: String,
    pub message: String,
    pub link: Option<(String, String)>,
}

impl MessagePage {
    pub(crate) fn new(title: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            title: title.into(),
            message: message.into(),
            link: None,
        }
    }

    pub(crate) fn with_link(mut self, href: impl Into<String>, label: impl Into<String>) -> Self {
        self.link = Some((href.into(), label.into()));
        self
    }
}

/// A refusal rendered for a person: plain words on the page, the technical reason in
/// the log, never whether an email address has an account.
#[derive(Debug)]
pub struct PageError(pub IdpError);

impl From<IdpError> for PageError {
    fn from(e: IdpError) -> Self {
        Self(e)
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.0.status()).unwrap_or(StatusCode::BAD_REQUEST);
        if status.is_server_error() {
            tracing::error!(error = %self.0, "page request failed");
        } else {
            tracing::warn!(error = %self.0, "page request refused");
        }
        let title = match status {
            StatusCode::FORBIDDEN => "Not allowed",
            StatusCode::TOO_MANY_REQUESTS => "Slow down",
            StatusCode::NOT_FOUND => "Not found",
            s if s.is_server_error() => "Something went wrong",
            _ => "That did not work",
        };
        let page = MessagePage::new(title, self.0.user_message()).with_link("/signin", "Sign in");
        let mut response = (status, page).into_response();
        if status == StatusCode::TOO_MANY_REQUESTS {
            // Limits count over minutes; a minute is an honest first wait.
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
        }
        response
    }
}

/// Where a page's forms may send the browser besides the gateway itself: a handler whose
/// form answers with a redirect elsewhere (the consent form to the agent, sign-out to
/// the provider) puts this on its response, since browsers check `form-action` against
/// every redirect that follows a submission.
#[derive(Debug, Clone, Default)]
pub(crate) struct FormTargets(Vec<String>);

impl FormTargets {
    /// The one place beyond the gateway the page's forms lead to (`None`: none).
    pub(crate) fn to(url: Option<&url::Url>) -> Self {
        Self(url.and_then(form_source).into_iter().collect())
    }
}

/// `url` as a CSP source: its origin (`https://id.example.com`,
/// `http://127.0.0.1:51234`), or its scheme alone for an app's private-use scheme
/// (`cursor:`) and an IPv6 address, which a source cannot name.
fn form_source(url: &url::Url) -> Option<String> {
    let scheme = url.scheme();
    if !scheme
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
    {
        return None;
    }
    let origin = url.origin();
    if origin.is_tuple() && !matches!(url.host(), Some(url::Host::Ipv6(_))) {
        Some(origin.ascii_serialization())
    } else {
        Some(format!("{scheme}:"))
    }
}

/// The policy without any extra form target (what a page gets if one would not fit).
const STRICTEST_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; \
     frame-ancestors 'none'";

/// The content security policy: scripts, styles and everything else from the gateway
/// only, no framing, and forms submitted to the gateway (plus `extra`) only.
fn content_security_policy(extra: Option<&FormTargets>) -> String {
    let mut form_action = String::from("'self'");
    for source in extra.map(|t| t.0.as_slice()).unwrap_or_default() {
        form_action.push(' ');
        form_action.push_str(source);
    }
    format!(
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         object-src 'none'; base-uri 'none'; form-action {form_action}; frame-ancestors 'none'"
    )
}

/// Headers every page carries: a strict content security policy (no inline script, no
/// framing, forms only to the gateway and where a page says), no caching of personal
/// pages, no referrer (links carry one-time tokens).
pub(crate) async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let csp = content_security_policy(response.extensions().get::<FormTargets>());
    let headers = response.headers_mut();
    let csp =
        HeaderValue::from_str(&csp).unwrap_or_else(|_| HeaderValue::from_static(STRICTEST_POLICY));
    headers.insert(header::CONTENT_SECURITY_POLICY, csp);
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

/// Unix seconds as `2026-11-21 14:36 UTC` for pages.
pub(crate) fn when(unix: i64) -> String {
    let Ok(at) = time::OffsetDateTime::from_unix_timestamp(unix) else {
        return String::from("?");
    };
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02} UTC",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute()
    )
}

/// A name as one URL path segment (tool names may hold `/`, `?`, spaces…).
pub(crate) fn path_segment(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(url: &str) -> Option<String> {
        form_source(&url::Url::parse(url).expect("a URL"))
    }

    #[test]
    fn form_targets_name_an_origin_or_a_scheme() {
        assert_eq!(
            source("http://127.0.0.1:51234/callback?x=1").as_deref(),
            Some("http://127.0.0.1:51234")
        );
        assert_eq!(
            source("https://id.example.com/session/end").as_deref(),
            Some("https://id.example.com")
        );
        assert_eq!(
            source("cursor://anysphere.cursor/cb").as_deref(),
            Some("cursor:")
        );
        assert_eq!(
            source("com.example.app:/oauth").as_deref(),
            Some("com.example.app:")
        );
        assert_eq!(source("http://[::1]:8080/cb").as_deref(), Some("http:"));
        assert_eq!(
            content_security_policy(None),
            STRICTEST_POLICY,
            "no extra target: the strictest policy"
        );
    }
}
