//! `GET`/`PUT /api/v1/settings`: a school's own settings (webhook URL, origins allowed to embed
//! its lessons).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::HeaderMap;
use serde::Deserialize;

use super::doc::Routes;
use super::{ApiError, authorize};
use crate::server::AppState;
use crate::store::School;

pub(super) fn routes() -> Routes {
    Routes::new()
        .get("/api/v1/settings", "The school's settings", read)
        .put(
            "/api/v1/settings",
            "Change the webhook URL and embedding origins",
            write,
        )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    webhook_url: Option<String>,
    #[serde(default)]
    embed_origins: Vec<String>,
}

/// The school as it sees itself (its webhook secret and key are not shown).
async fn read(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Json<School>, ApiError> {
    authorize(&state, &headers).map(Json)
}

/// Replaces the school's webhook URL (`null` turns webhooks off) and embedding origins.
async fn write(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Json<Settings>, JsonRejection>,
) -> Result<Json<School>, ApiError> {
    let school = authorize(&state, &headers)?;
    let Json(settings) = body?;
    let webhook_url = settings
        .webhook_url
        .as_deref()
        .map(|u| http_url(u, "webhook_url"))
        .transpose()?;
    let origins = settings
        .embed_origins
        .iter()
        .map(|o| origin(o))
        .collect::<Result<Vec<_>, _>>()?;
    state
        .store
        .update_school_settings(&school.id, webhook_url.as_deref(), &origins)?;
    authorize(&state, &headers).map(Json)
}

/// An absolute http(s) URL.
fn http_url(s: &str, field: &str) -> Result<String, ApiError> {
    match url::Url::parse(s.trim()) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(u.into()),
        _ => Err(ApiError::BadRequest(format!(
            "{field} must be an absolute http or https URL"
        ))),
    }
}

/// A web origin, `scheme://host[:port]`, as the `frame-ancestors` directive takes it.
fn origin(s: &str) -> Result<String, ApiError> {
    let bad = || {
        ApiError::BadRequest(format!(
            "{s:?} is not an origin like https://school.example"
        ))
    };
    let u = url::Url::parse(s.trim()).map_err(|_| bad())?;
    if !matches!(u.scheme(), "http" | "https") || u.host().is_none() || u.path() != "/" {
        return Err(bad());
    }
    Ok(u.origin().ascii_serialization())
}
