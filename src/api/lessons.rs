//! Lessons through REST: create (one, or a weekly series from an RRULE), list with filters and
//! pages, get, update, cancel, delete, and a school's iCalendar feed.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use jinke_signaling::LessonMode;
use serde::{Deserialize, Serialize};

use super::doc::Routes;
use super::{ApiError, MAX_CAPACITY, authorize, random_id, school_lesson};
use crate::schedule::{LessonState, occurrences, parse_rfc3339};
use crate::server::AppState;
use crate::store::{Lesson, LessonChanges};
use crate::unix_now;

/// Longest lesson: a day.
const MAX_DURATION: i64 = 24 * 3600;
/// Longest lobby: a day.
const MAX_LOBBY_MINUTES: u32 = 24 * 60;

pub(super) fn routes() -> Routes {
    const L: &str = "/api/v1/lessons/{id}";
    Routes::new()
        .post(
            "/api/v1/lessons",
            "Create a lesson, or a series from an rrule",
            create,
        )
        .get(
            "/api/v1/lessons",
            "List lessons (state, from, to, page, per_page)",
            list,
        )
        .get(L, "Get a lesson", read)
        .patch(
            L,
            "Change a lesson's title, capacity, teacher or schedule",
            update,
        )
        .delete(L, "Delete a lesson nobody is in", remove)
        .post(
            "/api/v1/lessons/{id}/cancel",
            "Cancel a lesson that has not started",
            cancel,
        )
        .get(
            "/api/v1/calendar.ics",
            "The school's lessons as an iCalendar feed",
            calendar,
        )
}

/// A lesson as the API shows it: its fields and its state now.
#[derive(Serialize)]
struct View {
    #[serde(flatten)]
    lesson: Lesson,
    state: LessonState,
}

fn view(lesson: Lesson) -> View {
    View {
        state: lesson.state(unix_now()),
        lesson,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewLesson {
    title: String,
    mode: LessonMode,
    capacity: Option<u32>,
    teacher: Option<String>,
    starts_at: Option<String>,
    ends_at: Option<String>,
    lobby_minutes: Option<u32>,
    rrule: Option<String>,
}

/// The created lesson; for a series, the first one with every occurrence listed.
#[derive(Serialize)]
struct Created {
    #[serde(flatten)]
    first: View,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    occurrences: Vec<View>,
}

fn time(field: &str, value: Option<&str>) -> Result<Option<i64>, ApiError> {
    value
        .map(|v| {
            parse_rfc3339(v).ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "{field} must be an RFC 3339 date-time like 2026-12-01T19:00:00+08:00"
                ))
            })
        })
        .transpose()
}

fn title(t: &str) -> Result<String, ApiError> {
    let t = t.trim();
    if t.is_empty() || t.chars().count() > 200 {
        return Err(ApiError::BadRequest(
            "title must be 1 to 200 characters".into(),
        ));
    }
    Ok(t.to_owned())
}

fn capacity(mode: LessonMode, c: u32) -> Result<u32, ApiError> {
    let max = if mode == LessonMode::OneToOne {
        2
    } else {
        MAX_CAPACITY
    };
    if !(2..=max).contains(&c) {
        return Err(ApiError::BadRequest(format!(
            "capacity must be between 2 and {max} for this mode"
        )));
    }
    Ok(c)
}

/// Checks a schedule: an end needs a start and comes after it, within a day.
fn schedule(starts: Option<i64>, ends: Option<i64>, lobby: u32) -> Result<(), ApiError> {
    if lobby > MAX_LOBBY_MINUTES {
        return Err(ApiError::BadRequest("lobby_minutes is at most 1440".into()));
    }
    match (starts, ends) {
        (None, Some(_)) => Err(ApiError::BadRequest("ends_at needs starts_at".into())),
        (Some(s), Some(e)) if e <= s || e - s > MAX_DURATION => Err(ApiError::BadRequest(
            "ends_at must be after starts_at, at most 24 hours later".into(),
        )),
        _ => Ok(()),
    }
}

async fn create(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Json<NewLesson>, JsonRejection>,
) -> Result<(StatusCode, Json<Created>), ApiError> {
    let school = authorize(&state, &headers)?;
    let Json(new) = body?;
    let now = unix_now();
    let starts_at = time("starts_at", new.starts_at.as_deref())?;
    let ends_at = time("ends_at", new.ends_at.as_deref())?;
    let lobby = new.lobby_minutes.unwrap_or(15);
    schedule(starts_at, ends_at, lobby)?;
    let mut lesson = Lesson::new(
        random_id(),
        &school.id,
        title(&new.title)?,
        new.mode,
        capacity(
            new.mode,
            new.capacity.unwrap_or(new.mode.default_capacity()),
        )?,
        now,
    );
    lesson.teacher = new
        .teacher
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty());
    lesson.starts_at = starts_at;
    lesson.ends_at = ends_at;
    lesson.lobby_minutes = lobby;
    let lessons = match &new.rrule {
        None => vec![lesson],
        Some(rule) => {
            let first = starts_at
                .ok_or_else(|| ApiError::BadRequest("a series (rrule) needs starts_at".into()))?;
            let starts =
                occurrences(first, rule).map_err(|e| ApiError::BadRequest(e.to_string()))?;
            let series = random_id();
            starts
                .into_iter()
                .enumerate()
                .map(|(i, s)| {
                    let mut l = lesson.clone();
                    if i > 0 {
                        l.id = random_id();
                    }
                    l.series_id = Some(series.clone());
                    l.starts_at = Some(s);
                    l.ends_at = ends_at.map(|e| e - first + s);
                    l
                })
                .collect()
        }
    };
    state.store.insert_lessons(&lessons)?;
    state.wake_scheduler();
    let first = lessons[0].clone();
    tracing::info!(id = %first.id, title = %first.title, mode = ?first.mode, count = lessons.len(), "lesson created");
    let occurrences = if new.rrule.is_some() {
        lessons.into_iter().map(view).collect()
    } else {
        Vec::new()
    };
    Ok((
        StatusCode::CREATED,
        Json(Created {
            first: view(first),
            occurrences,
        }),
    ))
}

async fn read(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<View>, ApiError> {
    school_lesson(&state, &headers, id).map(|l| Json(view(l)))
}

#[derive(Deserialize)]
struct ListQuery {
    state: Option<LessonState>,
    from: Option<String>,
    to: Option<String>,
    page: Option<usize>,
    per_page: Option<usize>,
}

#[derive(Serialize)]
struct Page {
    lessons: Vec<View>,
    page: usize,
    per_page: usize,
    total: usize,
}

/// `GET /api/v1/lessons?state=&from=&to=&page=&per_page=`: the school's lessons starting in
/// `[from, to)` (default: all), earliest first, in pages (default 50, at most 200).
async fn list(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Result<Json<Page>, ApiError> {
    let school = authorize(&state, &headers)?;
    let from = time("from", q.from.as_deref())?.unwrap_or(i64::MIN);
    let to = time("to", q.to.as_deref())?.unwrap_or(i64::MAX);
    let per_page = q.per_page.unwrap_or(50);
    if !(1..=200).contains(&per_page) {
        return Err(ApiError::BadRequest("per_page must be 1 to 200".into()));
    }
    let page = q.page.unwrap_or(1).max(1);
    let now = unix_now();
    let matching: Vec<Lesson> = state
        .store
        .school_lessons(&school.id, from, to)?
        .into_iter()
        .filter(|l| q.state.is_none_or(|s| l.state(now) == s))
        .collect();
    let total = matching.len();
    let lessons = matching
        .into_iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .map(view)
        .collect();
    Ok(Json(Page {
        lessons,
        page,
        per_page,
        total,
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Update {
    title: Option<String>,
    capacity: Option<u32>,
    teacher: Option<String>,
    starts_at: Option<String>,
    ends_at: Option<String>,
    lobby_minutes: Option<u32>,
}

/// Refuses changes to a lesson that ended or was cancelled.
fn still_open(lesson: &Lesson) -> Result<(), ApiError> {
    match lesson.state(unix_now()) {
        LessonState::Ended => Err(ApiError::Ended),
        LessonState::Cancelled => Err(ApiError::Conflict(
            "lesson_cancelled",
            "the lesson was cancelled".into(),
        )),
        _ => Ok(()),
    }
}

/// `PATCH /api/v1/lessons/{id}`: changes the fields given.
async fn update(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<Json<Update>, JsonRejection>,
) -> Result<Json<View>, ApiError> {
    let lesson = school_lesson(&state, &headers, id)?;
    let Json(u) = body?;
    still_open(&lesson)?;
    let changes = LessonChanges {
        title: u.title.as_deref().map(title).transpose()?,
        capacity: u.capacity.map(|c| capacity(lesson.mode, c)).transpose()?,
        teacher: u.teacher,
        starts_at: time("starts_at", u.starts_at.as_deref())?,
        ends_at: time("ends_at", u.ends_at.as_deref())?,
        lobby_minutes: u.lobby_minutes,
    };
    schedule(
        changes.starts_at.or(lesson.starts_at),
        changes.ends_at.or(lesson.ends_at),
        changes.lobby_minutes.unwrap_or(lesson.lobby_minutes),
    )?;
    state.store.update_lesson(&lesson.id, &changes)?;
    state.wake_scheduler();
    let lesson = state
        .store
        .lesson(&lesson.id)?
        .ok_or(ApiError::LessonNotFound(lesson.id))?;
    Ok(Json(view(lesson)))
}

/// `POST /api/v1/lessons/{id}/cancel`: calls off a lesson that has not started (a live one is
/// ended instead, with `POST …/end`).
async fn cancel(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<View>, ApiError> {
    let lesson = school_lesson(&state, &headers, id)?;
    still_open(&lesson)?;
    if lesson.state(unix_now()) == LessonState::Live {
        return Err(ApiError::Conflict(
            "lesson_live",
            "the lesson is live: end it with POST /api/v1/lessons/{id}/end".into(),
        ));
    }
    state.store.cancel_lesson(&lesson.id, unix_now())?;
    let lesson = state
        .store
        .lesson(&lesson.id)?
        .ok_or(ApiError::LessonNotFound(lesson.id))?;
    Ok(Json(view(lesson)))
}

/// `DELETE /api/v1/lessons/{id}`: forgets a lesson (and its attendance) nobody is in.
async fn remove(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let lesson = school_lesson(&state, &headers, id)?;
    if !state.rooms.present(&lesson.id).is_empty() {
        return Err(ApiError::Conflict(
            "lesson_live",
            "people are in the lesson: end it first".into(),
        ));
    }
    state.store.delete_lesson(&lesson.id)?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/v1/calendar.ics`: the school's scheduled lessons as an iCalendar feed.
async fn calendar(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    let school = authorize(&state, &headers)?;
    let lessons = state.store.school_lessons(&school.id, i64::MIN, i64::MAX)?;
    Ok((
        [(header::CONTENT_TYPE, "text/calendar; charset=utf-8")],
        ical(&school.name, &lessons, &state.public_url),
    ))
}

/// An iCalendar (RFC 5545) document with one event per scheduled lesson.
fn ical(calendar_name: &str, lessons: &[Lesson], public_url: &str) -> String {
    let stamp = crate::schedule::ical_utc;
    let mut lines = vec![
        "BEGIN:VCALENDAR".to_owned(),
        "VERSION:2.0".to_owned(),
        "PRODID:-//Jinke//Jinke classroom//ZH".to_owned(),
        "CALSCALE:GREGORIAN".to_owned(),
        format!("X-WR-CALNAME:{}", ical_text(calendar_name)),
    ];
    for l in lessons {
        let Some(start) = l.starts_at else { continue };
        let end = l.ends_at.unwrap_or(start + 3600);
        lines.extend([
            "BEGIN:VEVENT".to_owned(),
            format!("UID:{}@jinke", l.id),
            format!("DTSTAMP:{}", stamp(l.created_at)),
            format!("DTSTART:{}", stamp(start)),
            format!("DTEND:{}", stamp(end)),
            format!("SUMMARY:{}", ical_text(&l.title)),
            format!("URL:{public_url}/join/{}", l.id),
            format!(
                "STATUS:{}",
                if l.cancelled_at.is_some() {
                    "CANCELLED"
                } else {
                    "CONFIRMED"
                }
            ),
            "END:VEVENT".to_owned(),
        ]);
    }
    lines.push("END:VCALENDAR".to_owned());
    lines
        .iter()
        .map(|l| fold(l))
        .collect::<Vec<_>>()
        .join("\r\n")
        + "\r\n"
}

/// Escapes a TEXT value (RFC 5545 §3.3.11).
fn ical_text(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace(';', "\\;")
        .replace(',', "\\,")
        .replace('\n', "\\n")
}

/// Folds a content line at 75 octets, never inside a UTF-8 character.
fn fold(line: &str) -> String {
    let mut out = String::new();
    let mut width = 0;
    for c in line.chars() {
        if width + c.len_utf8() > 75 {
            out.push_str("\r\n ");
            width = 1;
        }
        out.push(c);
        width += c.len_utf8();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_calendar_is_rfc_5545() {
        let mut l = Lesson::new(
            "abc".into(),
            "s",
            "书法, 第一课; 入门".into(),
            LessonMode::Lecture,
            10,
            0,
        );
        l.starts_at = Some(1_796_108_400);
        l.ends_at = Some(1_796_112_000);
        let unscheduled = Lesson::new("x".into(), "s", "x".into(), LessonMode::Lecture, 10, 0);
        let doc = ical("学校", &[l, unscheduled], "https://jinke.example");
        assert!(doc.starts_with("BEGIN:VCALENDAR\r\nVERSION:2.0\r\n"));
        assert!(doc.contains("\r\nDTSTART:20261201T070000Z\r\nDTEND:20261201T080000Z\r\n"));
        assert!(doc.contains("SUMMARY:书法\\, 第一课\\; 入门"));
        assert!(doc.contains("URL:https://jinke.example/join/abc"));
        assert_eq!(
            doc.matches("BEGIN:VEVENT").count(),
            1,
            "only scheduled lessons"
        );
        assert!(doc.lines().all(|l| l.len() <= 76));
        assert_eq!(
            fold(&"长".repeat(30)).split("\r\n").map(str::len).max(),
            Some(75)
        );
    }
}
