//! Lessons: what they are, when they happen, and what became of them (ended, cancelled, who was
//! removed from them).

use jinke_signaling::LessonMode;
use rusqlite::{OptionalExtension, Row, params};
use serde::{Serialize, Serializer};

use super::{Store, StoreError};
use crate::schedule::{LessonState, Timing};

/// A lesson as stored and as the REST API returns it. Schedule times (`starts_at`, `ends_at`)
/// are RFC 3339 in JSON; record times (`created_at`, `started_at`, `ended_at`, `cancelled_at`)
/// are Unix seconds.
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
    /// The teacher's identity, if the school said.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub teacher: Option<String>,
    /// Planned start, Unix seconds (`None`: no schedule, always open).
    #[serde(serialize_with = "as_rfc3339")]
    pub starts_at: Option<i64>,
    /// Planned end, Unix seconds; the lesson ends itself a grace period after it.
    #[serde(serialize_with = "as_rfc3339")]
    pub ends_at: Option<i64>,
    /// Minutes before the start that the lobby opens.
    pub lobby_minutes: u32,
    /// The series this lesson belongs to (lessons made from one RRULE).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub series_id: Option<String>,
    /// Creation time, Unix seconds.
    pub created_at: i64,
    /// When the lobby opened (reported once), Unix seconds.
    #[serde(skip)]
    pub opened_at: Option<i64>,
    /// When a teacher first entered, Unix seconds.
    pub started_at: Option<i64>,
    /// When everyone was warned of the end, Unix seconds.
    #[serde(skip)]
    pub warned_at: Option<i64>,
    /// When it ended for everyone, Unix seconds; nobody joins it after.
    pub ended_at: Option<i64>,
    /// When it was cancelled, Unix seconds.
    pub cancelled_at: Option<i64>,
}

impl Lesson {
    /// A new lesson without a schedule.
    pub fn new(
        id: String,
        school_id: &str,
        title: String,
        mode: LessonMode,
        capacity: u32,
        now: i64,
    ) -> Lesson {
        Lesson {
            id,
            school_id: school_id.to_owned(),
            title,
            mode,
            capacity,
            teacher: None,
            starts_at: None,
            ends_at: None,
            lobby_minutes: 15,
            series_id: None,
            created_at: now,
            opened_at: None,
            started_at: None,
            warned_at: None,
            ended_at: None,
            cancelled_at: None,
        }
    }

    /// What decides its state.
    pub fn timing(&self) -> Timing {
        Timing {
            starts_at: self.starts_at,
            lobby_minutes: self.lobby_minutes,
            started_at: self.started_at,
            ended_at: self.ended_at,
            cancelled_at: self.cancelled_at,
        }
    }

    /// Its state at `now` (Unix seconds).
    pub fn state(&self, now: i64) -> LessonState {
        self.timing().state(now)
    }
}

fn as_rfc3339<S: Serializer>(t: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_str(&crate::schedule::rfc3339_seconds(*t)),
        None => s.serialize_none(),
    }
}

/// Changes to a lesson's description and schedule; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LessonChanges {
    /// New title.
    pub title: Option<String>,
    /// New capacity.
    pub capacity: Option<u32>,
    /// New teacher identity.
    pub teacher: Option<String>,
    /// New start.
    pub starts_at: Option<i64>,
    /// New end.
    pub ends_at: Option<i64>,
    /// New lobby minutes.
    pub lobby_minutes: Option<u32>,
}

const COLUMNS: &str = "id, school_id, title, mode, capacity, teacher, starts_at, ends_at, \
    lobby_minutes, series_id, created_at, opened_at, started_at, warned_at, ended_at, cancelled_at";

fn row_to_lesson(r: &Row<'_>) -> rusqlite::Result<Lesson> {
    let mode: String = r.get(3)?;
    let mode = serde_json::from_value(serde_json::Value::String(mode.clone())).map_err(|_| {
        rusqlite::Error::FromSqlConversionFailure(
            3,
            rusqlite::types::Type::Text,
            format!("unknown mode {mode:?}").into(),
        )
    })?;
    Ok(Lesson {
        id: r.get(0)?,
        school_id: r.get(1)?,
        title: r.get(2)?,
        mode,
        capacity: r.get(4)?,
        teacher: r.get(5)?,
        starts_at: r.get(6)?,
        ends_at: r.get(7)?,
        lobby_minutes: r.get(8)?,
        series_id: r.get(9)?,
        created_at: r.get(10)?,
        opened_at: r.get(11)?,
        started_at: r.get(12)?,
        warned_at: r.get(13)?,
        ended_at: r.get(14)?,
        cancelled_at: r.get(15)?,
    })
}

fn mode_name(mode: LessonMode) -> &'static str {
    match mode {
        LessonMode::OneToOne => "one_to_one",
        LessonMode::SmallClass => "small_class",
        LessonMode::Lecture => "lecture",
    }
}

impl Store {
    /// Stores new lessons (one, or a series) in one transaction.
    pub fn insert_lessons(&self, lessons: &[Lesson]) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        for l in lessons {
            tx.execute(
                &format!("INSERT INTO lessons ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)"),
                params![
                    l.id, l.school_id, l.title, mode_name(l.mode), l.capacity, l.teacher,
                    l.starts_at, l.ends_at, l.lobby_minutes, l.series_id, l.created_at,
                    l.opened_at, l.started_at, l.warned_at, l.ended_at, l.cancelled_at
                ],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Stores a new lesson.
    pub fn insert_lesson(&self, lesson: &Lesson) -> Result<(), StoreError> {
        self.insert_lessons(std::slice::from_ref(lesson))
    }

    /// The lesson with this id if it belongs to `school`: another school's lesson does not
    /// exist for it.
    pub fn school_lesson(&self, school: &str, id: &str) -> Result<Option<Lesson>, StoreError> {
        Ok(self.lesson(id)?.filter(|l| l.school_id == school))
    }

    /// The lesson with this id, if any, whichever school owns it.
    pub fn lesson(&self, id: &str) -> Result<Option<Lesson>, StoreError> {
        Ok(self
            .conn()
            .query_row(
                &format!("SELECT {COLUMNS} FROM lessons WHERE id = ?1"),
                params![id],
                row_to_lesson,
            )
            .optional()?)
    }

    /// A school's lessons that start in `[from, to)` (unscheduled lessons count as starting when
    /// they were created), earliest first.
    pub fn school_lessons(
        &self,
        school: &str,
        from: i64,
        to: i64,
    ) -> Result<Vec<Lesson>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM lessons WHERE school_id = ?1
               AND COALESCE(starts_at, created_at) >= ?2 AND COALESCE(starts_at, created_at) < ?3
             ORDER BY COALESCE(starts_at, created_at), id"
        ))?;
        let rows = stmt.query_map(params![school, from, to], row_to_lesson)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Applies changes to a lesson.
    pub fn update_lesson(&self, id: &str, c: &LessonChanges) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE lessons SET title = COALESCE(?2, title), capacity = COALESCE(?3, capacity),
                teacher = COALESCE(?4, teacher), starts_at = COALESCE(?5, starts_at),
                ends_at = COALESCE(?6, ends_at), lobby_minutes = COALESCE(?7, lobby_minutes),
                warned_at = CASE WHEN ?6 IS NULL THEN warned_at END
             WHERE id = ?1",
            params![
                id,
                c.title,
                c.capacity,
                c.teacher,
                c.starts_at,
                c.ends_at,
                c.lobby_minutes
            ],
        )?;
        Ok(())
    }

    /// Deletes a lesson and what hangs on it (removals, attendance, undelivered webhooks stay
    /// with their school's outbox).
    pub fn delete_lesson(&self, id: &str) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute(
            "DELETE FROM attendance_intervals WHERE lesson_id = ?1",
            params![id],
        )?;
        tx.execute("DELETE FROM attendance WHERE lesson_id = ?1", params![id])?;
        tx.execute("DELETE FROM lessons WHERE id = ?1", params![id])?;
        tx.commit()?;
        Ok(())
    }

    /// Sets one of the lesson's record times (`opened_at`, `started_at`, `warned_at`,
    /// `ended_at`, `cancelled_at`) unless already set. Returns whether it was set now.
    fn mark(&self, id: &str, column: &str, at: i64) -> Result<bool, StoreError> {
        let changed = self.conn().execute(
            &format!("UPDATE lessons SET {column} = ?2 WHERE id = ?1 AND {column} IS NULL"),
            params![id, at],
        )?;
        Ok(changed > 0)
    }

    /// The lobby opened (first time only: returns whether this was it).
    pub fn mark_opened(&self, id: &str, at: i64) -> Result<bool, StoreError> {
        self.mark(id, "opened_at", at)
    }

    /// A teacher entered (first time only: returns whether this was it).
    pub fn mark_started(&self, id: &str, at: i64) -> Result<bool, StoreError> {
        self.mark(id, "started_at", at)
    }

    /// Everyone was warned that the lesson is about to end.
    pub fn mark_warned(&self, id: &str, at: i64) -> Result<bool, StoreError> {
        self.mark(id, "warned_at", at)
    }

    /// Cancels a lesson (returns whether it was cancelled now).
    pub fn cancel_lesson(&self, id: &str, at: i64) -> Result<bool, StoreError> {
        self.mark(id, "cancelled_at", at)
    }

    /// Marks a lesson ended at `at` (Unix seconds), unless it already ended. Returns whether the
    /// lesson exists.
    pub fn end_lesson(&self, id: &str, at: i64) -> Result<bool, StoreError> {
        self.mark(id, "ended_at", at)?;
        Ok(self.lesson(id)?.is_some())
    }

    /// Lessons past their planned end and not ended or cancelled: to warn, or to end.
    pub fn lessons_past_end(&self, now: i64) -> Result<Vec<Lesson>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM lessons
             WHERE ends_at <= ?1 AND ended_at IS NULL AND cancelled_at IS NULL"
        ))?;
        let rows = stmt.query_map(params![now], row_to_lesson)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Scheduled lessons whose lobby has opened by `now` and was not reported yet.
    pub fn lessons_opening(&self, now: i64) -> Result<Vec<Lesson>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM lessons
             WHERE starts_at - lobby_minutes * 60 <= ?1 AND opened_at IS NULL
               AND ended_at IS NULL AND cancelled_at IS NULL"
        ))?;
        let rows = stmt.query_map(params![now], row_to_lesson)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The next time the scheduler has something to do after `now`: a lobby opening or a
    /// planned end (plus `grace` for the end itself).
    pub fn next_schedule_deadline(&self, now: i64, grace: i64) -> Result<Option<i64>, StoreError> {
        Ok(self.conn().query_row(
            "SELECT MIN(t) FROM (
                SELECT starts_at - lobby_minutes * 60 AS t FROM lessons
                  WHERE opened_at IS NULL AND starts_at IS NOT NULL AND ended_at IS NULL AND cancelled_at IS NULL
                UNION ALL
                SELECT CASE WHEN warned_at IS NULL THEN ends_at ELSE ends_at + ?2 END FROM lessons
                  WHERE ends_at IS NOT NULL AND ended_at IS NULL AND cancelled_at IS NULL
             ) WHERE t > ?1 - 86400",
            params![now, grace],
            |r| r.get(0),
        )?)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn store(name: &str) -> (Store, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("jinke-lessons-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        (Store::open(&dir.join("db.sqlite3")).unwrap(), dir)
    }

    #[test]
    fn lessons_survive_reopening_the_database() {
        let (store, dir) = store("reopen");
        let path = dir.join("db.sqlite3");
        let mut lesson = Lesson::new(
            "abc".into(),
            "school",
            "数学".into(),
            LessonMode::Lecture,
            300,
            1,
        );
        lesson.starts_at = Some(1000);
        lesson.ends_at = Some(4600);
        lesson.teacher = Some("li".into());
        store.insert_lesson(&lesson).unwrap();
        drop(store);
        let reopened = Store::open(&path).unwrap();
        assert_eq!(reopened.lesson("abc").unwrap(), Some(lesson.clone()));
        assert_eq!(reopened.lesson("nope").unwrap(), None);
        assert_eq!(reopened.school_lesson("other", "abc").unwrap(), None);

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
    fn the_scheduler_finds_lobbies_to_open_and_lessons_to_end() {
        let (store, dir) = store("sched");
        let mut a = Lesson::new("a".into(), "s", "A".into(), LessonMode::Lecture, 10, 0);
        a.starts_at = Some(10_000);
        a.ends_at = Some(13_600);
        let mut b = a.clone();
        b.id = "b".into();
        b.starts_at = Some(20_000);
        b.ends_at = Some(23_600);
        store.insert_lessons(&[a, b]).unwrap();
        let ids = |v: Vec<Lesson>| v.into_iter().map(|l| l.id).collect::<Vec<_>>();
        assert_eq!(
            ids(store.lessons_opening(10_000 - 901).unwrap()),
            Vec::<String>::new()
        );
        assert_eq!(ids(store.lessons_opening(10_000 - 900).unwrap()), ["a"]);
        assert_eq!(
            store.next_schedule_deadline(0, 600).unwrap(),
            Some(10_000 - 900)
        );
        assert!(store.mark_opened("a", 9_100).unwrap());
        assert!(!store.mark_opened("a", 9_200).unwrap(), "reported once");
        assert_eq!(ids(store.lessons_past_end(13_600).unwrap()), ["a"]);
        assert!(store.mark_warned("a", 13_600).unwrap());
        assert_eq!(
            store.next_schedule_deadline(13_600, 600).unwrap(),
            Some(14_200)
        );
        store
            .update_lesson(
                "a",
                &LessonChanges {
                    ends_at: Some(15_000),
                    ..Default::default()
                },
            )
            .unwrap();
        assert_eq!(
            store.lesson("a").unwrap().unwrap().warned_at,
            None,
            "a new end warns again"
        );
        assert_eq!(ids(store.school_lessons("s", 0, 15_000).unwrap()), ["a"]);
        assert_eq!(
            ids(store.school_lessons("s", 0, 30_000).unwrap()),
            ["a", "b"]
        );
        store.delete_lesson("b").unwrap();
        assert!(store.lesson("b").unwrap().is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
