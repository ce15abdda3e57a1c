//! Runs lessons by the clock: reports each scheduled lesson's lobby opening, warns everyone in a
//! lesson at its planned end, and ends it a grace period later.

use std::sync::Arc;
use std::time::Duration;

use jinke_signaling::ServerMessage;

use crate::controls;
use crate::events::EventKind;
use crate::rooms::Actor;
use crate::server::AppState;
use crate::store::StoreError;

/// Longest sleep between checks (lesson times can also change by other means than the API, for
/// example another process writing the database).
const MAX_SLEEP: Duration = Duration::from_secs(60);

/// Starts the scheduler task; it stops when the server shuts down.
pub fn start(state: Arc<AppState>) {
    tokio::spawn(async move {
        let mut shutdown = state.shutdown.subscribe();
        loop {
            let wait = match tick(&state, crate::unix_now()) {
                Ok(next) => next,
                Err(e) => {
                    tracing::error!(error = %e, "the lesson scheduler failed; retrying");
                    Duration::from_secs(5)
                }
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = state.scheduler.notified() => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
        }
    });
}

/// Does what is due at `now`; returns how long to sleep.
fn tick(state: &AppState, now: i64) -> Result<Duration, StoreError> {
    for lesson in state.store.lessons_opening(now)? {
        if state.store.mark_opened(&lesson.id, now)? {
            state.events.emit(&lesson.id, EventKind::Opened);
        }
    }
    let grace = state.end_grace.as_secs() as i64;
    for lesson in state.store.lessons_past_end(now)? {
        let Some(ends_at) = lesson.ends_at else {
            continue;
        };
        if now >= ends_at + grace {
            if let Err(e) = controls::end_lesson(state, &lesson.id, Actor::School) {
                tracing::error!(error = %e, lesson = %lesson.id, "ending a lesson on time failed");
            }
        } else if state.store.mark_warned(&lesson.id, now)? {
            let at_ms = (ends_at + grace) * 1000;
            state
                .rooms
                .broadcast(&lesson.id, &ServerMessage::EndingSoon { at_ms });
            tracing::info!(lesson = %lesson.id, "lesson past its end: everyone warned");
        }
    }
    let next = state.store.next_schedule_deadline(now, grace)?;
    Ok(next
        .map(|t| Duration::from_secs((t - now).max(1) as u64))
        .unwrap_or(MAX_SLEEP)
        .min(MAX_SLEEP))
}
