//! Webhooks: lesson events written to the database outbox for each school that has a webhook
//! URL, then POSTed with a signature, retried with exponential backoff for up to 24 hours.
//! Delivery is at least once: a receiver drops duplicates by the event `id`.
//!
//! Body: `{"id", "type", "lesson", "time" (RFC 3339), "data"}`. Header
//! `Jinke-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::sync::Notify;

use crate::events::{EventKind, LessonEvent};
use crate::schedule::rfc3339;
use crate::server::AppState;
use crate::store::PendingWebhook;

/// First retry after this; each next one waits twice as long…
const FIRST_RETRY: Duration = Duration::from_secs(1);
/// …but never longer than this.
const MAX_RETRY: Duration = Duration::from_secs(3600);
/// Undelivered after this long, a webhook is given up on.
const GIVE_UP_AFTER: Duration = Duration::from_secs(24 * 3600);
/// One attempt may take this long.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// The webhook `type` of an event, and its `data`; `None` for events schools are not sent.
fn webhook_of(kind: &EventKind) -> Option<(&'static str, serde_json::Value)> {
    Some(match kind {
        EventKind::Opened => ("lesson.opened", json!({})),
        EventKind::Started => ("lesson.started", json!({})),
        EventKind::Ended => ("lesson.ended", json!({})),
        EventKind::Joined {
            identity,
            name,
            role,
        } => (
            "participant.joined",
            json!({"identity": identity, "name": name, "role": role}),
        ),
        EventKind::Left { identity } => ("participant.left", json!({"identity": identity})),
        EventKind::HandRaised { identity } => ("hand.raised", json!({"identity": identity})),
        EventKind::StageChanged { identities } => {
            ("stage.changed", json!({"identities": identities}))
        }
        EventKind::Chatted { .. } => return None,
    })
}

/// `t=<t>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
pub fn signature(secret: &str, t: i64, body: &str) -> String {
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret.as_bytes());
    let tag = aws_lc_rs::hmac::sign(&key, format!("{t}.{body}").as_bytes());
    format!("t={t},v1={}", crate::hex(tag.as_ref()))
}

/// How long to wait after the `attempts`-th failure.
fn backoff(attempts: u32) -> Duration {
    FIRST_RETRY
        .saturating_mul(1 << attempts.min(20))
        .min(MAX_RETRY)
}

/// Starts delivering from the outbox; notify the returned handle when a webhook was queued.
pub fn start_delivery(state: Arc<AppState>) -> Arc<Notify> {
    let wake = Arc::new(Notify::new());
    tokio::spawn(deliver(state, wake.clone()));
    wake
}

/// Queues the webhook for an event, if it is one schools get and the lesson's school has a
/// webhook URL. `lesson.ended` carries the lesson's final attendance.
pub fn enqueue(state: &AppState, event: &LessonEvent) -> Result<(), crate::store::StoreError> {
    let Some((kind, mut data)) = webhook_of(&event.kind) else {
        return Ok(());
    };
    let Some(lesson) = state.store.lesson(&event.lesson)? else {
        return Ok(());
    };
    if event.kind == EventKind::Ended {
        let records = crate::attendance::records(&state.store, &lesson.id, event.at_ms)?;
        data = json!({ "attendance": records });
    }
    let Some(school) = state.store.school(&lesson.school_id)? else {
        return Ok(());
    };
    let Some(url) = school.webhook_url else {
        return Ok(());
    };
    let id = format!(
        "evt_{}",
        crate::random_secret().get(..24).unwrap_or_default()
    );
    let body = json!({
        "id": id,
        "type": kind,
        "lesson": event.lesson,
        "time": rfc3339(event.at_ms),
        "data": data,
    });
    state.store.enqueue_webhook(&PendingWebhook {
        id,
        school_id: school.id,
        url,
        body: body.to_string(),
        created_at_ms: event.at_ms,
        attempts: 0,
    })
}

/// Sends due webhooks until the server shuts down; sleeps until the next is due or a new one is
/// recorded.
async fn deliver(state: Arc<AppState>, wake: Arc<Notify>) {
    let http = match reqwest::Client::builder().timeout(ATTEMPT_TIMEOUT).build() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "webhooks disabled: no HTTP client");
            return;
        }
    };
    let mut shutdown = state.shutdown.subscribe();
    loop {
        let now = crate::unix_now_ms();
        let due = state.store.due_webhooks(now, 32).unwrap_or_else(|e| {
            tracing::error!(error = %e, "reading the webhook outbox failed");
            Vec::new()
        });
        for hook in &due {
            attempt(&state, &http, hook).await;
        }
        if due.len() == 32 {
            continue; // More are due.
        }
        let next = state.store.next_webhook_due().ok().flatten();
        let wait = next
            .map(|at| Duration::from_millis((at - crate::unix_now_ms()).max(0) as u64))
            .unwrap_or(MAX_RETRY)
            .min(MAX_RETRY);
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = wake.notified() => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}

/// One delivery attempt; records the outcome.
async fn attempt(state: &AppState, http: &reqwest::Client, hook: &PendingWebhook) {
    let secret = match state.store.school(&hook.school_id) {
        Ok(Some(s)) => s.webhook_secret,
        _ => String::new(),
    };
    let t = crate::unix_now();
    let result = http
        .post(&hook.url)
        .header("content-type", "application/json")
        .header("jinke-signature", signature(&secret, t, &hook.body))
        .header("jinke-event-id", &hook.id)
        .body(hook.body.clone())
        .send()
        .await;
    let now = crate::unix_now_ms();
    let outcome = match result {
        Ok(r) if r.status().is_success() => state.store.webhook_delivered(&hook.id, now),
        failed => {
            let error = match failed {
                Ok(r) => format!("HTTP {}", r.status()),
                Err(e) => e.to_string(),
            };
            let retry_at = now + backoff(hook.attempts).as_millis() as i64;
            let give_up = retry_at > hook.created_at_ms + GIVE_UP_AFTER.as_millis() as i64;
            if give_up {
                tracing::warn!(id = %hook.id, url = %hook.url, %error, "webhook given up after 24 hours");
            } else {
                tracing::debug!(id = %hook.id, url = %hook.url, %error, "webhook failed; will retry");
            }
            state
                .store
                .webhook_failed(&hook.id, &error, now, (!give_up).then_some(retry_at))
        }
    };
    if let Err(e) = outcome {
        tracing::error!(error = %e, "recording a webhook attempt failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_of_time_dot_body() {
        // Expected value from Python: hmac.new(b"Jefe", b'1795935729.{"id":"evt_1"}', sha256).
        assert_eq!(
            signature("Jefe", 1_795_935_729, r#"{"id":"evt_1"}"#),
            "t=1795935729,v1=fd1095c94ac46bc6cfcaf5a58e1a869dea7f3694b2f8c98801a927ccc6ae7bf4"
        );
    }

    #[test]
    fn retries_back_off_exponentially_up_to_an_hour() {
        assert_eq!(backoff(0), Duration::from_secs(1));
        assert_eq!(backoff(3), Duration::from_secs(8));
        assert_eq!(backoff(12), MAX_RETRY);
        assert_eq!(backoff(40), MAX_RETRY);
    }
}
