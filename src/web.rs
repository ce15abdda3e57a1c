//! The web client, compiled into this binary by `build.rs` and served at the join URLs, and for
//! embedding in a school's own site at `/embed/{lesson}?token=…`.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use serde::Deserialize;

use crate::server::AppState;

const INDEX_HTML: &str = include_str!("../web-client/static/index.html");
const STYLE_CSS: &str = include_str!("../web-client/static/style.css");
const CLIENT_JS: &str = include_str!(concat!(env!("OUT_DIR"), "/web-client/jinke_web_client.js"));
const CLIENT_WASM: &[u8] = include_bytes!(concat!(
    env!("OUT_DIR"),
    "/web-client/jinke_web_client_bg.wasm"
));

/// Routes of the web client: `/join/{lesson}` (and `/`) serve the page, `/embed/{lesson}` the
/// same page for an iframe on the school's site; `/assets/…` its files.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/", get(index))
        .route("/join/{lesson}", get(index))
        .route("/embed/{lesson}", get(embed))
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

/// The page, framable only by this server's own pages.
async fn index() -> impl IntoResponse {
    page("frame-ancestors 'self'".into())
}

#[derive(Deserialize)]
struct EmbedQuery {
    token: Option<String>,
}

/// The page for an iframe: framable by the origins the lesson's school allows (from the token's
/// lesson; a bad token gets a page that explains itself, framable by nobody else).
async fn embed(
    State(state): State<Arc<AppState>>,
    Path(lesson): Path<String>,
    Query(q): Query<EmbedQuery>,
) -> impl IntoResponse {
    let origins = q
        .token
        .and_then(|t| state.signer.verify(&t).ok())
        .filter(|claims| claims.lesson == lesson)
        .and_then(|claims| state.store.lesson(&claims.lesson).ok().flatten())
        .and_then(|l| state.store.school(&l.school_id).ok().flatten())
        .map(|school| school.embed_origins)
        .unwrap_or_default();
    page(frame_ancestors(&origins))
}

/// `frame-ancestors 'self' <origins>`: origins are validated when a school sets them.
fn frame_ancestors(origins: &[String]) -> String {
    std::iter::once("frame-ancestors 'self'")
        .chain(origins.iter().map(String::as_str))
        .collect::<Vec<_>>()
        .join(" ")
}

fn page(csp: String) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8".to_owned()),
            (header::CACHE_CONTROL, "no-cache".to_owned()),
            (header::CONTENT_SECURITY_POLICY, csp),
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
