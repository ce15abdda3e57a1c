//! What happens in live lessons, as a stream for the parts that record it (webhooks, attendance).
//! The rooms produce these events under their lock without waiting: the channel is unbounded and
//! its consumer writes them to the database.

use jinke_signaling::Role;
use serde::Serialize;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

/// One thing that happened in a lesson.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LessonEvent {
    /// The lesson.
    pub lesson: String,
    /// When, Unix milliseconds.
    pub at_ms: i64,
    /// What.
    pub kind: EventKind,
}

/// The kinds of [`LessonEvent`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EventKind {
    /// The lesson's lobby opened: by the clock for a scheduled lesson, with the first arrival
    /// otherwise.
    Opened,
    /// A teacher entered the room for the first time: the lesson is live.
    Started,
    /// Someone joined (or reconnected).
    Joined {
        /// Who.
        identity: String,
        /// Display name.
        name: String,
        /// Role from the token.
        role: Role,
    },
    /// Someone left (or was sent away, or reconnected from elsewhere).
    Left {
        /// Who.
        identity: String,
    },
    /// A hand went up.
    HandRaised {
        /// Whose.
        identity: String,
    },
    /// The students on stage changed.
    StageChanged {
        /// Students on stage, first on first.
        identities: Vec<String>,
    },
    /// A participant posted a chat message.
    Chatted {
        /// Who.
        identity: String,
    },
    /// The lesson was ended for everyone.
    Ended,
}

/// Where rooms send their events; a no-op when nobody listens (unit tests).
#[derive(Debug, Clone, Default)]
pub struct EventSink(Option<UnboundedSender<LessonEvent>>);

impl EventSink {
    /// A sink and the receiver of its events.
    pub fn channel() -> (EventSink, UnboundedReceiver<LessonEvent>) {
        let (tx, rx) = unbounded_channel();
        (EventSink(Some(tx)), rx)
    }

    /// Records that `kind` happened in `lesson` now.
    pub fn emit(&self, lesson: &str, kind: EventKind) {
        if let Some(tx) = &self.0 {
            let _ = tx.send(LessonEvent {
                lesson: lesson.to_owned(),
                at_ms: crate::unix_now_ms(),
                kind,
            });
        }
    }
}
