//! Static assets, embedded in the binary (no CDN).

use axum::Router;
use axum::response::IntoResponse;
use axum::routing::get;
use http::{HeaderValue, header};

use crate::UiState;

const CSS: &str = include_str!("../assets/warrant.css");
const PASSKEY_JS: &str = include_str!("../assets/passkey.js");

pub(crate) fn routes() -> Router<UiState> {
    Router::new()
        .route("/assets/warrant.css", get(css))
        .route("/assets/passkey.js", get(passkey_js))
}

async fn passkey_js() -> impl IntoResponse {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/javascript; charset=utf-8"),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=3600"),
            ),
        ],
        PASSKEY_JS,
    )
}

async fn css() -> impl IntoResponse {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/css; charset=utf-8"),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=3600"),
            ),
        ],
        CSS,
    )
}
