//! `GET /api/v1/lessons/{id}/attendance[?format=json|csv|xapi]`: the lesson's attendance records.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::doc::Routes;
use super::{ApiError, school_lesson};
use crate::attendance;
use crate::server::AppState;

pub(super) fn routes() -> Routes {
    Routes::new().get(
        "/api/v1/lessons/{id}/attendance",
        "Attendance records (format=json, csv or xapi)",
        report,
    )
}

#[derive(Deserialize)]
struct Format {
    format: Option<String>,
}

async fn report(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<Format>,
) -> Result<Response, ApiError> {
    let lesson = school_lesson(&state, &headers, id)?;
    let records = attendance::records(&state.store, &lesson.id, crate::unix_now_ms())?;
    Ok(match q.format.as_deref().unwrap_or("json") {
        "json" => Json(serde_json::json!({
            "lesson": lesson.id,
            "ended_at": lesson.ended_at,
            "participants": records,
        }))
        .into_response(),
        "csv" => (
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"attendance-{}.csv\"", lesson.id),
                ),
            ],
            attendance::csv(&records),
        )
            .into_response(),
        "xapi" => Json(attendance::xapi(&lesson, &records, &state.public_url)).into_response(),
        other => {
            return Err(ApiError::BadRequest(format!(
                "format must be json, csv or xapi, not {other:?}"
            )));
        }
    })
}
