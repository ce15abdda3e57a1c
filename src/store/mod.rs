//! Schools and their lessons, kept in an embedded SQLite database in the data folder, so they
//! survive a restart.

mod attendance;
mod lessons;
mod outbox;
mod schools;

pub use attendance::{AttendanceRow, Interval};
pub use lessons::{Lesson, LessonChanges};
pub use outbox::PendingWebhook;

pub use schools::{BOOTSTRAP_SCHOOL, School};

use std::path::Path;
use std::sync::Mutex;

use rusqlite::Connection;

/// Database failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite failed.
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A stored row holds a value this version does not understand.
    #[error("corrupt lesson row {id}: {what}")]
    Corrupt {
        /// The lesson.
        id: String,
        /// What is wrong.
        what: String,
    },
}

/// The lesson store. Control-plane only: the media path never touches it.
pub struct Store {
    conn: Mutex<Connection>,
}

/// The schema, one step per version: a database at `PRAGMA user_version` n gets steps n.. applied.
const MIGRATIONS: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS lessons (
        id TEXT PRIMARY KEY,
        title TEXT NOT NULL,
        mode TEXT NOT NULL,
        capacity INTEGER NOT NULL,
        created_at INTEGER NOT NULL
    );",
    "ALTER TABLE lessons ADD COLUMN ended_at INTEGER;
     CREATE TABLE removed_participants (
        lesson_id TEXT NOT NULL REFERENCES lessons(id) ON DELETE CASCADE,
        identity TEXT NOT NULL,
        removed_at INTEGER NOT NULL,
        PRIMARY KEY (lesson_id, identity)
    );",
    "CREATE TABLE schools (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        api_key_hash TEXT NOT NULL UNIQUE,
        webhook_url TEXT,
        webhook_secret TEXT NOT NULL,
        embed_origins TEXT NOT NULL DEFAULT '[]',
        created_at INTEGER NOT NULL
    );
    ALTER TABLE lessons ADD COLUMN school_id TEXT NOT NULL DEFAULT 'bootstrap';
    CREATE INDEX lessons_by_school ON lessons(school_id);",
    "CREATE TABLE webhook_outbox (
        id TEXT PRIMARY KEY,
        school_id TEXT NOT NULL,
        url TEXT NOT NULL,
        body TEXT NOT NULL,
        created_at_ms INTEGER NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_ms INTEGER NOT NULL,
        delivered_at_ms INTEGER,
        gave_up_at_ms INTEGER,
        last_error TEXT
    );
    CREATE INDEX webhook_outbox_due ON webhook_outbox(next_attempt_ms)
        WHERE delivered_at_ms IS NULL AND gave_up_at_ms IS NULL;",
    "CREATE TABLE attendance (
        lesson_id TEXT NOT NULL,
        identity TEXT NOT NULL,
        name TEXT NOT NULL,
        role TEXT NOT NULL,
        hands_raised INTEGER NOT NULL DEFAULT 0,
        chat_messages INTEGER NOT NULL DEFAULT 0,
        stage_ms INTEGER NOT NULL DEFAULT 0,
        on_stage_since_ms INTEGER,
        PRIMARY KEY (lesson_id, identity)
    );
    CREATE TABLE attendance_intervals (
        lesson_id TEXT NOT NULL,
        identity TEXT NOT NULL,
        joined_at_ms INTEGER NOT NULL,
        left_at_ms INTEGER
    );
    CREATE INDEX attendance_intervals_by_lesson ON attendance_intervals(lesson_id, identity);",
    "ALTER TABLE lessons ADD COLUMN teacher TEXT;
    ALTER TABLE lessons ADD COLUMN starts_at INTEGER;
    ALTER TABLE lessons ADD COLUMN ends_at INTEGER;
    ALTER TABLE lessons ADD COLUMN lobby_minutes INTEGER NOT NULL DEFAULT 15;
    ALTER TABLE lessons ADD COLUMN series_id TEXT;
    ALTER TABLE lessons ADD COLUMN opened_at INTEGER;
    ALTER TABLE lessons ADD COLUMN started_at INTEGER;
    ALTER TABLE lessons ADD COLUMN warned_at INTEGER;
    ALTER TABLE lessons ADD COLUMN cancelled_at INTEGER;
    CREATE INDEX lessons_by_school_start ON lessons(school_id, starts_at);",
];

impl Store {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let mut conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "foreign_keys", true)?;
        let version: usize = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        for (i, step) in MIGRATIONS.iter().enumerate().skip(version) {
            let tx = conn.transaction()?;
            tx.execute_batch(step)?;
            tx.pragma_update(None, "user_version", i + 1)?;
            tx.commit()?;
        }
        Ok(Store {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite inconsistent: keep serving.
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_first_version_database_is_migrated() {
        let dir = std::env::temp_dir().join(format!("jinke-store-mig-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("db.sqlite3");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(MIGRATIONS[0]).unwrap();
            conn.execute(
                "INSERT INTO lessons VALUES ('old', 'Old', 'lecture', 10, 1)",
                [],
            )
            .unwrap();
        }
        let store = Store::open(&path).unwrap();
        let old = store.lesson("old").unwrap().unwrap();
        assert_eq!((old.title.as_str(), old.ended_at), ("Old", None));
        assert_eq!(
            old.school_id, BOOTSTRAP_SCHOOL,
            "old lessons belong to the bootstrap school"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
