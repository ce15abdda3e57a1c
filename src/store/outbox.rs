//! The webhook outbox: every event for a school with a webhook URL is written here first, then
//! delivered (and retried) from here, so a crash or restart loses nothing.

use rusqlite::{OptionalExtension, params};

use super::{Store, StoreError};

/// A webhook not yet delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingWebhook {
    /// The event's unique id (also in the body): receivers use it to drop duplicates.
    pub id: String,
    /// The school it is for.
    pub school_id: String,
    /// Where it goes (the school's URL when the event happened).
    pub url: String,
    /// The JSON body.
    pub body: String,
    /// When the event happened, Unix milliseconds.
    pub created_at_ms: i64,
    /// Failed attempts so far.
    pub attempts: u32,
}

const PENDING: &str = "delivered_at_ms IS NULL AND gave_up_at_ms IS NULL";

impl Store {
    /// Queues a webhook for delivery now.
    pub fn enqueue_webhook(&self, w: &PendingWebhook) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT OR IGNORE INTO webhook_outbox (id, school_id, url, body, created_at_ms, next_attempt_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
            params![w.id, w.school_id, w.url, w.body, w.created_at_ms],
        )?;
        Ok(())
    }

    /// Webhooks due at `now_ms`, in the order they were recorded.
    pub fn due_webhooks(&self, now_ms: i64, limit: u32) -> Result<Vec<PendingWebhook>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT id, school_id, url, body, created_at_ms, attempts FROM webhook_outbox
             WHERE {PENDING} AND next_attempt_ms <= ?1 ORDER BY rowid LIMIT ?2"
        ))?;
        let rows = stmt.query_map(params![now_ms, limit], |r| {
            Ok(PendingWebhook {
                id: r.get(0)?,
                school_id: r.get(1)?,
                url: r.get(2)?,
                body: r.get(3)?,
                created_at_ms: r.get(4)?,
                attempts: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// When the next pending webhook is due, if any.
    pub fn next_webhook_due(&self) -> Result<Option<i64>, StoreError> {
        Ok(self
            .conn()
            .query_row(
                &format!("SELECT MIN(next_attempt_ms) FROM webhook_outbox WHERE {PENDING}"),
                [],
                |r| r.get::<_, Option<i64>>(0),
            )
            .optional()?
            .flatten())
    }

    /// Marks a webhook delivered.
    pub fn webhook_delivered(&self, id: &str, now_ms: i64) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE webhook_outbox SET delivered_at_ms = ?2 WHERE id = ?1",
            params![id, now_ms],
        )?;
        Ok(())
    }

    /// Records a failed attempt: retried at `retry_at_ms`, or given up on when `None`.
    pub fn webhook_failed(
        &self,
        id: &str,
        error: &str,
        now_ms: i64,
        retry_at_ms: Option<i64>,
    ) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE webhook_outbox SET attempts = attempts + 1, last_error = ?2,
                next_attempt_ms = COALESCE(?4, next_attempt_ms),
                gave_up_at_ms = CASE WHEN ?4 IS NULL THEN ?3 END
             WHERE id = ?1",
            params![id, error, now_ms, retry_at_ms],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhooks_wait_their_turn_and_leave_when_delivered_or_given_up() {
        let dir = std::env::temp_dir().join(format!("jinke-outbox-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let store = Store::open(&dir.join("db.sqlite3")).unwrap();
        let hook = |id: &str, at: i64| PendingWebhook {
            id: id.into(),
            school_id: "s".into(),
            url: "http://127.0.0.1:9/".into(),
            body: "{}".into(),
            created_at_ms: at,
            attempts: 0,
        };
        store.enqueue_webhook(&hook("a", 10)).unwrap();
        store.enqueue_webhook(&hook("b", 20)).unwrap();
        store.enqueue_webhook(&hook("a", 10)).unwrap(); // Same event twice: one row.
        let due: Vec<String> = store
            .due_webhooks(100, 10)
            .unwrap()
            .into_iter()
            .map(|w| w.id)
            .collect();
        assert_eq!(due, ["a", "b"]);
        assert_eq!(store.due_webhooks(15, 10).unwrap().len(), 1);

        store.webhook_failed("a", "503", 100, Some(1100)).unwrap();
        store.webhook_delivered("b", 100).unwrap();
        assert!(store.due_webhooks(1000, 10).unwrap().is_empty());
        assert_eq!(store.next_webhook_due().unwrap(), Some(1100));
        let retry = store.due_webhooks(1100, 10).unwrap();
        assert_eq!((retry[0].id.as_str(), retry[0].attempts), ("a", 1));
        store.webhook_failed("a", "503", 1100, None).unwrap();
        assert_eq!(store.next_webhook_due().unwrap(), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
