//! Lessons kept in an embedded SQLite database in the data folder, so they survive a restart.

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
    /// Title shown to participants.
    pub title: String,
    /// Shape of the lesson.
    pub mode: LessonMode,
    /// Most participants at once, teacher included.
    pub capacity: u32,
    /// Creation time, Unix seconds.
    pub created_at: i64,
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

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS lessons (
    id TEXT PRIMARY KEY,
    title TEXT NOT NULL,
    mode TEXT NOT NULL,
    capacity INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);";

impl Store {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.execute_batch(SCHEMA)?;
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
            "INSERT INTO lessons (id, title, mode, capacity, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                lesson.id,
                lesson.title,
                mode_name(lesson.mode),
                lesson.capacity,
                lesson.created_at
            ],
        )?;
        Ok(())
    }

    /// The lesson with this id, if any.
    pub fn lesson(&self, id: &str) -> Result<Option<Lesson>, StoreError> {
        let row = self
            .conn()
            .query_row(
                "SELECT id, title, mode, capacity, created_at FROM lessons WHERE id = ?1",
                params![id],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, u32>(3)?,
                        r.get::<_, i64>(4)?,
                    ))
                },
            )
            .optional()?;
        row.map(|(id, title, mode, capacity, created_at)| {
            let mode = parse_mode(&mode).ok_or_else(|| StoreError::Corrupt {
                id: id.clone(),
                what: format!("unknown mode {mode:?}"),
            })?;
            Ok(Lesson {
                id,
                title,
                mode,
                capacity,
                created_at,
            })
        })
        .transpose()
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
            title: "数学".into(),
            mode: LessonMode::Lecture,
            capacity: 300,
            created_at: 1,
        };
        Store::open(&path).unwrap().insert_lesson(&lesson).unwrap();
        let reopened = Store::open(&path).unwrap();
        assert_eq!(reopened.lesson("abc").unwrap(), Some(lesson));
        assert_eq!(reopened.lesson("nope").unwrap(), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
