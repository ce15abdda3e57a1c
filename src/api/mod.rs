//! The school REST API (`/api/v1`): lessons and join tokens, behind the school's API key.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use jinke_signaling::{LessonMode, Role};
use serde::{Deserialize, Serialize};

use crate::server::AppState;
use crate::store::{BOOTSTRAP_SCHOOL, Lesson, School, StoreError};
use crate::tokens::JoinClaims;
use crate::unix_now;
use doc::Routes;

/// Longest lifetime of a join token: a week.
const MAX_TTL_SECS: u64 = 7 * 24 * 3600;
/// Default lifetime of a join token: four hours.
const DEFAULT_TTL_SECS: u64 = 4 * 3600;
/// Largest capacity a lesson may ask for.
const MAX_CAPACITY: u32 = 10_000;

mod attendance;
mod controls;
pub mod doc;
mod lessons;
mod settings;

/// The API's routes.
pub fn routes() -> Router<Arc<AppState>> {
    let (router, docs) = Routes::new()
        .post(
            "/api/v1/lessons/{id}/tokens",
            "Sign a join token and link for a participant",
            create_token,
        )
        .merge(lessons::routes())
        .merge(controls::routes())
        .merge(settings::routes())
        .merge(attendance::routes())
        .into_parts();
    let docs = Arc::new(docs);
    router.route(
        "/api/v1/openapi.json",
        axum::routing::get(move |State(state): State<Arc<AppState>>| async move {
            Json(doc::openapi(&docs, &state.public_url))
        }),
    )
}

/// An API failure, answered as `{"error": {"code", "message"}}` with the matching status.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: malformed JSON or invalid fields.
    #[error("{0}")]
    BadRequest(String),
    /// 401: missing or wrong API key.
    #[error("missing or invalid API key: send 'Authorization: Bearer <api key>'")]
    Unauthorized,
    /// 404: no such lesson.
    #[error("no lesson with id {0:?}")]
    LessonNotFound(String),
    /// 404: the participant is not in the lesson.
    #[error("{0:?} is not in the lesson")]
    NotPresent(String),
    /// 409: the lesson's state does not allow this (code, message).
    #[error("{1}")]
    Conflict(&'static str, String),
    /// 409: the stage is full.
    #[error("the stage is full")]
    StageFull,
    /// 409: the control needs someone in the lesson.
    #[error("nobody is in the lesson now")]
    NotLive,
    /// 409: the lesson has ended.
    #[error("the lesson has ended")]
    Ended,
    /// 500: the database failed.
    #[error("internal error")]
    Store(#[from] StoreError),
}

impl ApiError {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::LessonNotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::NotPresent(_) => (StatusCode::NOT_FOUND, "not_present"),
            ApiError::Ended => (StatusCode::CONFLICT, "lesson_ended"),
            ApiError::NotLive => (StatusCode::CONFLICT, "not_live"),
            ApiError::StageFull => (StatusCode::CONFLICT, "stage_full"),
            ApiError::Conflict(code, _) => (StatusCode::CONFLICT, code),
            ApiError::Store(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Store(e) = &self {
            tracing::error!(error = %e, "API request failed in the database");
        }
        let (status, code) = self.status_and_code();
        let body = serde_json::json!({"error": {"code": code, "message": self.to_string()}});
        let mut response = (status, Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, "Bearer".parse().expect("static"));
        }
        response
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        ApiError::BadRequest(r.body_text())
    }
}

/// The school whose key is presented as `Authorization: Bearer <key>`. Keys are looked up by
/// their SHA-256 hash, so the comparison reveals nothing about a stored key.
fn authorize(state: &AppState, headers: &HeaderMap) -> Result<School, ApiError> {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or(ApiError::Unauthorized)?;
    state
        .store
        .school_by_key(presented)?
        .ok_or(ApiError::Unauthorized)
}

/// The lesson `id` of the school presenting its key; another school's lesson is a 404.
fn school_lesson(state: &AppState, headers: &HeaderMap, id: String) -> Result<Lesson, ApiError> {
    let school = authorize(state, headers)?;
    state
        .store
        .school_lesson(&school.id, &id)?
        .ok_or(ApiError::LessonNotFound(id))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewToken {
    identity: String,
    name: String,
    role: Role,
    ttl_secs: Option<u64>,
}

/// A signed join token and the link that uses it.
#[derive(Serialize)]
struct IssuedToken {
    token: String,
    join_url: String,
    expires_at: i64,
}

async fn create_token(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<Json<NewToken>, JsonRejection>,
) -> Result<(StatusCode, Json<IssuedToken>), ApiError> {
    let lesson = school_lesson(&state, &headers, id)?;
    let Json(new) = body?;
    let identity = new.identity.trim();
    let name = new.name.trim();
    if identity.is_empty() || identity.len() > 128 {
        return Err(ApiError::BadRequest(
            "identity must be 1 to 128 bytes".into(),
        ));
    }
    if name.is_empty() || name.chars().count() > 100 {
        return Err(ApiError::BadRequest(
            "name must be 1 to 100 characters".into(),
        ));
    }
    let ttl = new.ttl_secs.unwrap_or(DEFAULT_TTL_SECS);
    if !(1..=MAX_TTL_SECS).contains(&ttl) {
        return Err(ApiError::BadRequest(format!(
            "ttl_secs must be between 1 and {MAX_TTL_SECS}"
        )));
    }
    let (token, expires_at) = state.issue_token(&lesson, identity, name, new.role, ttl);
    Ok((
        StatusCode::CREATED,
        Json(IssuedToken {
            join_url: state.join_url(&lesson.id, &token),
            token,
            expires_at,
        }),
    ))
}

impl AppState {
    /// Signs a join token for `lesson`, valid `ttl_secs` from now; returns it with its expiry.
    pub fn issue_token(
        &self,
        lesson: &Lesson,
        identity: &str,
        name: &str,
        role: Role,
        ttl_secs: u64,
    ) -> (String, i64) {
        let now = unix_now();
        let exp = now + ttl_secs as i64;
        let claims = JoinClaims {
            lesson: lesson.id.clone(),
            sub: identity.to_owned(),
            name: name.to_owned(),
            role,
            iat: now,
            exp,
        };
        (self.signer.sign(&claims), exp)
    }

    /// The absolute URL of the web client for a lesson with a token (it also accepts
    /// `&autojoin=1` and `&lang=en`).
    pub fn join_url(&self, lesson: &str, token: &str) -> String {
        format!("{}/join/{lesson}?token={token}", self.public_url)
    }
}

/// A random identifier of 12 lowercase letters and digits (about 62 bits).
pub fn random_id() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyz23456789";
    let mut rng = rand::rng();
    (0..12)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// The id of the lesson `--dev` creates.
const DEMO_LESSON_ID: &str = "demo";

/// The demo lesson of `--dev`, created on first use.
pub fn demo_lesson(state: &AppState) -> Result<Lesson, StoreError> {
    if let Some(lesson) = state.store.lesson(DEMO_LESSON_ID)? {
        return Ok(lesson);
    }
    let lesson = Lesson::new(
        DEMO_LESSON_ID.into(),
        BOOTSTRAP_SCHOOL,
        "演示课 Demo lesson".into(),
        LessonMode::SmallClass,
        LessonMode::SmallClass.default_capacity(),
        unix_now(),
    );
    state.store.insert_lesson(&lesson)?;
    Ok(lesson)
}
