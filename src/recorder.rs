//! Writes lesson events to the database as they happen: attendance first, then the webhook
//! outbox (so that `lesson.ended` carries the final attendance).

use std::sync::Arc;

use tokio::sync::mpsc::UnboundedReceiver;

use crate::events::{EventKind, LessonEvent};
use crate::server::AppState;
use crate::store::StoreError;
use crate::{attendance, webhooks};

/// Starts recording `events` and delivering webhooks.
pub fn start(state: Arc<AppState>, mut events: UnboundedReceiver<LessonEvent>) {
    let wake = webhooks::start_delivery(state.clone());
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            if let Err(e) = record(&state, &event) {
                tracing::error!(error = %e, lesson = %event.lesson, "lesson event not recorded");
            }
            wake.notify_one();
        }
    });
}

fn record(state: &AppState, event: &LessonEvent) -> Result<(), StoreError> {
    attendance::apply(&state.store, event)?;
    let at = event.at_ms.div_euclid(1000);
    match event.kind {
        // The first arrival opens a lesson's lobby if the clock has not (an unscheduled lesson).
        EventKind::Joined { .. } if state.store.mark_opened(&event.lesson, at)? => {
            let opened = LessonEvent {
                kind: EventKind::Opened,
                ..event.clone()
            };
            webhooks::enqueue(state, &opened)?;
        }
        _ => {}
    }
    webhooks::enqueue(state, event)
}
