//! Classroom controls through REST, for a school's own tools: the same powers a teacher has over
//! signaling (who is present, mute, remove, lock, end, announcements).

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};

use super::doc::Routes;
use super::{ApiError, school_lesson};
use crate::controls::{ControlFailure, end_lesson, remove_participant, start_lesson};
use crate::rooms::{Actor, ControlError, PresentParticipant};
use crate::schedule::LessonState;
use crate::server::AppState;

pub(super) fn routes() -> Routes {
    const P: &str = "/api/v1/lessons/{id}/participants/{identity}";
    Routes::new()
        .get(
            "/api/v1/lessons/{id}/participants",
            "Who is in the lesson now",
            participants,
        )
        .delete(
            P,
            "Remove a participant for good (its tokens stop working)",
            remove,
        )
        .post(
            "/api/v1/lessons/{id}/participants/{identity}/mute",
            "Mute or unmute a participant's audio ({\"muted\": bool})",
            mute,
        )
        .post(
            "/api/v1/lessons/{id}/participants/{identity}/stage",
            "Invite a student on stage or take it off ({\"on\": bool})",
            stage,
        )
        .post(
            "/api/v1/lessons/{id}/lock",
            "Lock or unlock the live lesson",
            lock,
        )
        .post(
            "/api/v1/lessons/{id}/start",
            "Start the lesson: the lobby is over",
            start,
        )
        .post(
            "/api/v1/lessons/{id}/end",
            "End the lesson for everyone",
            end,
        )
        .post(
            "/api/v1/lessons/{id}/messages",
            "Post an announcement to the lesson's chat",
            announce,
        )
}

/// A live-lesson control refused (the school has every power, so not for its role).
fn refused(e: ControlError, identity: &str) -> ApiError {
    match e {
        ControlError::BadRequest(m) => ApiError::BadRequest(m.into()),
        ControlError::StageFull => ApiError::StageFull,
        ControlError::NotAllowed => {
            ApiError::BadRequest("only students go on stage, in small classes and lectures".into())
        }
        ControlError::NotPresent | ControlError::NotInRoom | ControlError::RateLimited => {
            ApiError::NotPresent(identity.to_owned())
        }
    }
}

/// A recorded control failed (with the school's full powers, only the database can fail).
fn failed(e: ControlFailure) -> ApiError {
    match e {
        ControlFailure::Refused(e) => ApiError::BadRequest(e.to_string()),
        ControlFailure::Store(e) => ApiError::Store(e),
    }
}

#[derive(Serialize)]
struct Present {
    participants: Vec<PresentParticipant>,
}

/// `GET …/participants`: who is in the lesson now (observers included).
async fn participants(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Present>, ApiError> {
    let lesson = school_lesson(&state, &headers, id)?;
    Ok(Json(Present {
        participants: state.rooms.present(&lesson.id),
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MuteBody {
    #[serde(default = "yes")]
    muted: bool,
}

fn yes() -> bool {
    true
}

/// `POST …/participants/{identity}/mute` `{"muted": bool}` (default true).
async fn mute(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path((id, identity)): Path<(String, String)>,
    body: Result<Json<MuteBody>, JsonRejection>,
) -> Result<StatusCode, ApiError> {
    let lesson = school_lesson(&state, &headers, id)?;
    let Json(body) = body?;
    state
        .rooms
        .mute(&lesson.id, Actor::School, &identity, body.muted)
        .map_err(|e| refused(e, &identity))?;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE …/participants/{identity}`: sends the participant away (if present) and refuses its
/// tokens from now on.
async fn remove(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path((id, identity)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let lesson = school_lesson(&state, &headers, id)?;
    remove_participant(&state, &lesson.id, Actor::School, &identity).map_err(failed)?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StageBody {
    on: bool,
}

/// `POST …/participants/{identity}/stage` `{"on": bool}`: invites a student on stage (202: the
/// student is asked and accepts or declines) or takes it off (204).
async fn stage(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path((id, identity)): Path<(String, String)>,
    body: Result<Json<StageBody>, JsonRejection>,
) -> Result<StatusCode, ApiError> {
    let lesson = school_lesson(&state, &headers, id)?;
    let Json(body) = body?;
    if body.on {
        state
            .rooms
            .invite_on_stage(&lesson.id, Actor::School, &identity)
            .map_err(|e| refused(e, &identity))?;
        Ok(StatusCode::ACCEPTED)
    } else {
        state
            .rooms
            .take_off_stage(&lesson.id, Actor::School, &identity)
            .map_err(|e| refused(e, &identity))?;
        Ok(StatusCode::NO_CONTENT)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LockBody {
    locked: bool,
}

/// `POST …/lock` `{"locked": bool}`: only teachers, assistants and reconnecting participants
/// may join a locked lesson. Applies to the live lesson (409 `not_live` when nobody is in).
async fn lock(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<Json<LockBody>, JsonRejection>,
) -> Result<StatusCode, ApiError> {
    let lesson = school_lesson(&state, &headers, id)?;
    let Json(body) = body?;
    state
        .rooms
        .set_locked(&lesson.id, Actor::School, body.locked)
        .map_err(|_| ApiError::NotLive)?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize)]
struct Started {
    started_at: Option<i64>,
}

/// `POST …/start`: starts an open lesson (students in the lobby start receiving). Idempotent.
async fn start(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Started>, ApiError> {
    let lesson = school_lesson(&state, &headers, id)?;
    match lesson.state(crate::unix_now()) {
        LessonState::Open | LessonState::Live => {}
        LessonState::Scheduled => {
            return Err(ApiError::Conflict(
                "not_open",
                "the lesson's lobby has not opened yet".into(),
            ));
        }
        LessonState::Ended => return Err(ApiError::Ended),
        LessonState::Cancelled => {
            return Err(ApiError::Conflict(
                "lesson_cancelled",
                "the lesson was cancelled".into(),
            ));
        }
    }
    start_lesson(&state, &lesson.id, Actor::School).map_err(failed)?;
    let started_at = state.store.lesson(&lesson.id)?.and_then(|l| l.started_at);
    Ok(Json(Started { started_at }))
}

#[derive(Serialize)]
struct Ended {
    ended_at: Option<i64>,
}

/// `POST …/end`: ends the lesson for everyone; nobody may join it afterwards. Idempotent.
async fn end(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Ended>, ApiError> {
    let lesson = school_lesson(&state, &headers, id)?;
    end_lesson(&state, &lesson.id, Actor::School).map_err(failed)?;
    let ended_at = state.store.lesson(&lesson.id)?.and_then(|l| l.ended_at);
    Ok(Json(Ended { ended_at }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Announcement {
    text: String,
}

#[derive(Serialize)]
struct Delivered {
    delivered_to: usize,
}

/// `POST …/messages` `{"text"}`: an announcement in the lesson's chat, shown as the school's.
async fn announce(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<Json<Announcement>, JsonRejection>,
) -> Result<(StatusCode, Json<Delivered>), ApiError> {
    let lesson = school_lesson(&state, &headers, id)?;
    let Json(body) = body?;
    if lesson.ended_at.is_some() {
        return Err(ApiError::Ended);
    }
    let delivered_to = state
        .rooms
        .announce(&lesson.id, &body.text, crate::unix_now_ms())
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    Ok((StatusCode::CREATED, Json(Delivered { delivered_to })))
}
