//! The web client, compiled into this binary by `build.rs` and served at the join URLs.

use std::sync::Arc;

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

use crate::server::AppState;

const INDEX_HTML: &str = include_str!("../web-client/static/index.html");
const STYLE_CSS: &str = include_str!("../web-client/static/style.css");
const CLIENT_JS: &str = include_str!(concat!(env!("OUT_DIR"), "/web-client/jinke_web_client.js"));
const CLIENT_WASM: &[u8] = include_bytes!(concat!(
    env!("OUT_DIR"),
    "/web-client/jinke_web_client_bg.wasm"
));

/// Routes of the web client: `/join/{lesson}` (and `/`) serve the page; `/assets/…` its files.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/", get(index))
        .route("/join/{lesson}", get(index))
        .route(
            "/assets/style.css",
            get(|| asset("text/css; charset=utf-8", STYLE_CSS.as_bytes())),
        )
        .route(
            "/assets/jinke_web_client.js",
            get(|| asset("text/javascript; charset=utf-8", CLIENT_JS.as_bytes())),
        )
        .route(
            "/assets/jinke_web_client_bg.wasm",
            get(|| asset("application/wasm", CLIENT_WASM)),
        )
}

async fn index() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        INDEX_HTML,
    )
}

async fn asset(content_type: &'static str, body: &'static [u8]) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
}
