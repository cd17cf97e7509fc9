//! Static assets, embedded in the binary (no CDN).

use axum::Router;
use axum::response::IntoResponse;
use axum::routing::get;
use http::{HeaderValue, header};

use crate::UiState;

const CSS: &str = include_str!("../assets/warrant.css");

pub(crate) fn routes() -> Router<UiState> {
    Router::new().route("/assets/warrant.css", get(css))
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
