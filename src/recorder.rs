//! Writes lesson events to the database as they happen: attendance first, then the webhook
//! outbox (so that `lesson.ended` carries the final attendance).

use std::sync::Arc;

use tokio::sync::mpsc::UnboundedReceiver;

use crate::events::LessonEvent;
use crate::server::AppState;
use crate::{attendance, webhooks};

/// Starts recording `events` and delivering webhooks.
pub fn start(state: Arc<AppState>, mut events: UnboundedReceiver<LessonEvent>) {
    let wake = webhooks::start_delivery(state.clone());
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            if let Err(e) = attendance::apply(&state.store, &event) {
                tracing::error!(error = %e, lesson = %event.lesson, "attendance not recorded");
            }
            match webhooks::enqueue(&state, &event) {
                Ok(()) => wake.notify_one(),
                Err(e) => {
                    tracing::error!(error = %e, lesson = %event.lesson, "webhook not recorded")
                }
            }
        }
    });
}
