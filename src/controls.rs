//! Classroom controls that must also be recorded: starting a lesson, removing a participant (its
//! tokens stop working) and ending a lesson (nobody joins it again). Shared by signaling and the REST API;
//! each checks the actor's right first, writes the database, and only then acts on the room, so
//! that an immediate rejoin is already refused.

use jinke_signaling::ServerMessage;

use crate::events::EventKind;
use crate::rooms::{Actor, ControlError};
use crate::server::AppState;
use crate::store::StoreError;

/// Why a recorded control failed.
#[derive(Debug, thiserror::Error)]
pub enum ControlFailure {
    /// The actor may not do this.
    #[error(transparent)]
    Refused(#[from] ControlError),
    /// The database failed; nothing was done.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Removes a participant from a lesson for good (sending it away if present).
pub fn remove_participant(
    state: &AppState,
    lesson: &str,
    by: Actor,
    identity: &str,
) -> Result<(), ControlFailure> {
    state.rooms.may_remove(lesson, by, identity)?;
    state
        .store
        .remove_participant(lesson, identity, crate::unix_now())?;
    let was_present = state.rooms.remove(lesson, identity);
    tracing::info!(%lesson, %identity, ?by, was_present, "participant removed");
    Ok(())
}

/// Starts a lesson: students waiting in a scheduled lesson's lobby get the teacher's media and
/// everyone is told; `lesson.started` is reported. Starting a live lesson again changes nothing.
pub fn start_lesson(state: &AppState, lesson: &str, by: Actor) -> Result<(), ControlFailure> {
    state.rooms.may_moderate(lesson, by)?;
    if state.store.mark_started(lesson, crate::unix_now())? {
        state.sfu.hold_room(lesson, false);
        // Only a scheduled lesson had a lobby to tell.
        if state
            .store
            .lesson(lesson)?
            .is_some_and(|l| l.starts_at.is_some())
        {
            state.rooms.broadcast(lesson, &ServerMessage::LessonStarted);
        }
        state.events.emit(lesson, EventKind::Started);
        tracing::info!(%lesson, ?by, "lesson started");
    }
    Ok(())
}

/// Ends a lesson for everyone.
pub fn end_lesson(state: &AppState, lesson: &str, by: Actor) -> Result<(), ControlFailure> {
    state.rooms.may_moderate(lesson, by)?;
    state.store.end_lesson(lesson, crate::unix_now())?;
    let sent_away = state.rooms.end(lesson);
    // Forget a lobby that never started.
    state.sfu.hold_room(lesson, false);
    tracing::info!(%lesson, ?by, sent_away, "lesson ended");
    Ok(())
}
