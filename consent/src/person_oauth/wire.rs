//! How Warrant talks to an upstream's authorization server: the `oauth2` crate's client
//! for one registration, and the bounded HTTP client it sends through (this module's
//! time limits, no redirects, answers of at most 64 KiB).

use oauth2::basic::BasicClient;
use oauth2::{AuthType, AuthUrl, ClientId, ClientSecret, RedirectUrl, TokenUrl};

use super::{ClientRecord, MAX_RESPONSE_BYTES, PersonOAuthError, REQUEST_TIMEOUT};
use crate::upstream_oauth::UpstreamOAuthError;

pub(super) type BoxedSend = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<oauth2::HttpResponse, HttpError>> + Send>,
>;

/// Why an authorization server could not be asked.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(super) struct HttpError(String);

pub(super) async fn send_bounded(
    http: reqwest::Client,
    request: oauth2::HttpRequest,
) -> Result<oauth2::HttpResponse, HttpError> {
    let (parts, body) = request.into_parts();
    let mut outgoing = http.request(parts.method, parts.uri.to_string());
    for (name, value) in &parts.headers {
        outgoing = outgoing.header(name, value);
    }
    let mut response = outgoing.body(body).send().await.map_err(|e| {
        HttpError(if e.is_timeout() {
            format!("no answer within {} s", REQUEST_TIMEOUT.as_secs())
        } else if e.is_connect() {
            "cannot connect".to_owned()
        } else {
            e.without_url().to_string()
        })
    })?;
    let mut builder = http::Response::builder().status(response.status());
    for (name, value) in response.headers() {
        builder = builder.header(name, value);
    }
    let mut bytes = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| HttpError(e.without_url().to_string()))?
    {
        if bytes.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Err(HttpError(format!(
                "its answer is larger than {MAX_RESPONSE_BYTES} bytes"
            )));
        }
        bytes.extend_from_slice(&chunk);
    }
    builder
        .body(bytes)
        .map_err(|e| HttpError(format!("unusable answer: {e}")))
}

pub(super) type Configured = oauth2::Client<
    oauth2::basic::BasicErrorResponse,
    oauth2::basic::BasicTokenResponse,
    oauth2::basic::BasicTokenIntrospectionResponse,
    oauth2::StandardRevocableToken,
    oauth2::basic::BasicRevocationErrorResponse,
    oauth2::EndpointSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointSet,
>;

pub(super) fn oauth_client(client: &ClientRecord) -> Result<Configured, PersonOAuthError> {
    let bad = |what: &str, e: &dyn std::fmt::Display| {
        PersonOAuthError::Discovery(UpstreamOAuthError::Document {
            url: client.issuer.clone(),
            reason: format!("its {what} is not a URL: {e}"),
        })
    };
    let mut oauth = BasicClient::new(ClientId::new(client.client_id.clone()))
        .set_auth_uri(
            AuthUrl::new(client.authorization_endpoint.clone())
                .map_err(|e| bad("authorization endpoint", &e))?,
        )
        .set_token_uri(
            TokenUrl::new(client.token_endpoint.clone()).map_err(|e| bad("token endpoint", &e))?,
        )
        .set_redirect_uri(
            RedirectUrl::new(client.redirect_uri.clone()).map_err(|e| bad("redirect URI", &e))?,
        );
    match &client.client_secret {
        Some(secret) => {
            oauth = oauth.set_client_secret(ClientSecret::new(secret.clone()));
            if client.secret_in_body {
                oauth = oauth.set_auth_type(AuthType::RequestBody);
            }
        }
        // A public client names itself in the body.
        None => oauth = oauth.set_auth_type(AuthType::RequestBody),
    }
    Ok(oauth)
}
