//! Schools and their lessons, kept in an embedded SQLite database in the data folder, so they
//! survive a restart.

mod attendance;
mod outbox;
mod schools;

pub use attendance::{AttendanceRow, Interval};
pub use outbox::PendingWebhook;

pub use schools::{BOOTSTRAP_SCHOOL, School};

use std::path::Path;
use std::sync::Mutex;

use jinke_signaling::LessonMode;
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

/// A lesson as stored and as the REST API returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Lesson {
    /// Identifier used in URLs and tokens.
    pub id: String,
    /// The school that owns it; no other school sees it.
    #[serde(skip)]
    pub school_id: String,
    /// Title shown to participants.
    pub title: String,
    /// Shape of the lesson.
    pub mode: LessonMode,
    /// Most participants at once, teacher included.
    pub capacity: u32,
    /// Creation time, Unix seconds.
    pub created_at: i64,
    /// When a teacher, assistant or the school ended it, Unix seconds; nobody joins it after.
    pub ended_at: Option<i64>,
}

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

    /// Stores a new lesson.
    pub fn insert_lesson(&self, lesson: &Lesson) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT INTO lessons (id, school_id, title, mode, capacity, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                lesson.id,
                lesson.school_id,
                lesson.title,
                mode_name(lesson.mode),
                lesson.capacity,
                lesson.created_at
            ],
        )?;
        Ok(())
    }

    /// The lesson with this id if it belongs to `school`: another school's lesson does not
    /// exist for it.
    pub fn school_lesson(&self, school: &str, id: &str) -> Result<Option<Lesson>, StoreError> {
        Ok(self.lesson(id)?.filter(|l| l.school_id == school))
    }

    /// The lesson with this id, if any, whichever school owns it.
    pub fn lesson(&self, id: &str) -> Result<Option<Lesson>, StoreError> {
        let row = self
            .conn()
            .query_row(
                "SELECT id, title, mode, capacity, created_at, ended_at, school_id FROM lessons WHERE id = ?1",
                params![id],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, u32>(3)?,
                        r.get::<_, i64>(4)?,
                        r.get::<_, Option<i64>>(5)?,
                        r.get::<_, String>(6)?,
                    ))
                },
            )
            .optional()?;
        row.map(
            |(id, title, mode, capacity, created_at, ended_at, school_id)| {
                let mode = parse_mode(&mode).ok_or_else(|| StoreError::Corrupt {
                    id: id.clone(),
                    what: format!("unknown mode {mode:?}"),
                })?;
                Ok(Lesson {
                    id,
                    school_id,
                    title,
                    mode,
                    capacity,
                    created_at,
                    ended_at,
                })
            },
        )
        .transpose()
    }

    /// Marks a lesson ended at `at` (Unix seconds), unless it already ended. Returns whether the
    /// lesson exists.
    pub fn end_lesson(&self, id: &str, at: i64) -> Result<bool, StoreError> {
        let conn = self.conn();
        conn.execute(
            "UPDATE lessons SET ended_at = ?2 WHERE id = ?1 AND ended_at IS NULL",
            params![id, at],
        )?;
        let exists = conn
            .query_row("SELECT 1 FROM lessons WHERE id = ?1", params![id], |_| {
                Ok(())
            })
            .optional()?;
        Ok(exists.is_some())
    }

    /// Records that `identity` was removed from a lesson: its tokens no longer admit it.
    pub fn remove_participant(
        &self,
        lesson: &str,
        identity: &str,
        at: i64,
    ) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT OR IGNORE INTO removed_participants (lesson_id, identity, removed_at) VALUES (?1, ?2, ?3)",
            params![lesson, identity, at],
        )?;
        Ok(())
    }

    /// Whether `identity` was removed from a lesson.
    pub fn is_removed(&self, lesson: &str, identity: &str) -> Result<bool, StoreError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT 1 FROM removed_participants WHERE lesson_id = ?1 AND identity = ?2",
                params![lesson, identity],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }
}

fn mode_name(mode: LessonMode) -> &'static str {
    match mode {
        LessonMode::OneToOne => "one_to_one",
        LessonMode::SmallClass => "small_class",
        LessonMode::Lecture => "lecture",
    }
}

fn parse_mode(s: &str) -> Option<LessonMode> {
    serde_json::from_value(serde_json::Value::String(s.to_owned())).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lessons_survive_reopening_the_database() {
        let dir = std::env::temp_dir().join(format!("jinke-store-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("db.sqlite3");
        let lesson = Lesson {
            id: "abc".into(),
            school_id: BOOTSTRAP_SCHOOL.into(),
            title: "数学".into(),
            mode: LessonMode::Lecture,
            capacity: 300,
            created_at: 1,
            ended_at: None,
        };
        Store::open(&path).unwrap().insert_lesson(&lesson).unwrap();
        let reopened = Store::open(&path).unwrap();
        assert_eq!(reopened.lesson("abc").unwrap(), Some(lesson.clone()));
        assert_eq!(reopened.lesson("nope").unwrap(), None);

        reopened.remove_participant("abc", "s1", 5).unwrap();
        assert!(reopened.end_lesson("abc", 7).unwrap());
        assert!(
            reopened.end_lesson("abc", 9).unwrap(),
            "ending twice keeps the first time"
        );
        assert!(!reopened.end_lesson("nope", 7).unwrap());
        drop(reopened);
        let again = Store::open(&path).unwrap();
        assert!(again.is_removed("abc", "s1").unwrap());
        assert!(!again.is_removed("abc", "s2").unwrap());
        assert_eq!(again.lesson("abc").unwrap().unwrap().ended_at, Some(7));
        std::fs::remove_dir_all(&dir).unwrap();
    }

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
