//! Attendance as it happens: each participant's join/leave intervals, time on stage, hands
//! raised and chat messages, per lesson. Written from the lesson event stream.

use rusqlite::params;

use super::{Store, StoreError};

/// One stay in a lesson, Unix milliseconds; `left_at_ms` is `None` while still there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interval {
    /// Joined (or reconnected).
    pub joined_at_ms: i64,
    /// Left, if it did.
    pub left_at_ms: Option<i64>,
}

/// A participant's attendance record as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttendanceRow {
    /// The school's identifier.
    pub identity: String,
    /// Display name (the latest).
    pub name: String,
    /// Role from the token (`teacher`, `assistant`, `student`, `observer`).
    pub role: String,
    /// Every stay, first first.
    pub intervals: Vec<Interval>,
    /// Milliseconds on stage, closed spans only.
    pub stage_ms: i64,
    /// Since when it is on stage, if it is.
    pub on_stage_since_ms: Option<i64>,
    /// Hands raised.
    pub hands_raised: u32,
    /// Chat messages posted.
    pub chat_messages: u32,
}

impl Store {
    /// A participant arrived at `at_ms`.
    pub fn attendance_joined(
        &self,
        lesson: &str,
        identity: &str,
        name: &str,
        role: &str,
        at_ms: i64,
    ) -> Result<(), StoreError> {
        let conn = self.conn();
        conn.execute(
            "INSERT INTO attendance (lesson_id, identity, name, role) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(lesson_id, identity) DO UPDATE SET name = excluded.name, role = excluded.role",
            params![lesson, identity, name, role],
        )?;
        conn.execute(
            "INSERT INTO attendance_intervals (lesson_id, identity, joined_at_ms) VALUES (?1, ?2, ?3)",
            params![lesson, identity, at_ms],
        )?;
        Ok(())
    }

    /// A participant left at `at_ms`: its open stay and any stage span end.
    pub fn attendance_left(
        &self,
        lesson: &str,
        identity: &str,
        at_ms: i64,
    ) -> Result<(), StoreError> {
        let conn = self.conn();
        conn.execute(
            "UPDATE attendance_intervals SET left_at_ms = ?3
             WHERE lesson_id = ?1 AND identity = ?2 AND left_at_ms IS NULL",
            params![lesson, identity, at_ms],
        )?;
        end_stage_spans(&conn, lesson, Some(identity), at_ms)?;
        Ok(())
    }

    /// Counts a raised hand (`hand = true`) or a chat message.
    pub fn attendance_count(
        &self,
        lesson: &str,
        identity: &str,
        hand: bool,
    ) -> Result<(), StoreError> {
        let column = if hand {
            "hands_raised"
        } else {
            "chat_messages"
        };
        self.conn().execute(
            &format!(
                "UPDATE attendance SET {column} = {column} + 1 WHERE lesson_id = ?1 AND identity = ?2"
            ),
            params![lesson, identity],
        )?;
        Ok(())
    }

    /// The stage is now `on_stage`: spans start for newcomers and end for those who left it.
    pub fn attendance_stage(
        &self,
        lesson: &str,
        on_stage: &[String],
        at_ms: i64,
    ) -> Result<(), StoreError> {
        let conn = self.conn();
        let list = serde_json::to_string(on_stage).expect("strings serialize");
        conn.execute(
            "UPDATE attendance SET stage_ms = stage_ms + (?3 - on_stage_since_ms), on_stage_since_ms = NULL
             WHERE lesson_id = ?1 AND on_stage_since_ms IS NOT NULL
               AND identity NOT IN (SELECT value FROM json_each(?2))",
            params![lesson, list, at_ms],
        )?;
        conn.execute(
            "UPDATE attendance SET on_stage_since_ms = ?3
             WHERE lesson_id = ?1 AND on_stage_since_ms IS NULL
               AND identity IN (SELECT value FROM json_each(?2))",
            params![lesson, list, at_ms],
        )?;
        Ok(())
    }

    /// The lesson ended at `at_ms`: every open stay and stage span ends.
    pub fn attendance_close(&self, lesson: &str, at_ms: i64) -> Result<(), StoreError> {
        let conn = self.conn();
        conn.execute(
            "UPDATE attendance_intervals SET left_at_ms = ?2 WHERE lesson_id = ?1 AND left_at_ms IS NULL",
            params![lesson, at_ms],
        )?;
        end_stage_spans(&conn, lesson, None, at_ms)?;
        Ok(())
    }

    /// After a restart nobody is connected any more: stays still open (the process died with
    /// them) end at `at_ms`, the restart.
    pub fn attendance_close_all(&self, at_ms: i64) -> Result<(), StoreError> {
        let conn = self.conn();
        conn.execute(
            "UPDATE attendance_intervals SET left_at_ms = ?1 WHERE left_at_ms IS NULL",
            params![at_ms],
        )?;
        conn.execute(
            "UPDATE attendance SET stage_ms = stage_ms + MAX(0, ?1 - on_stage_since_ms), on_stage_since_ms = NULL
             WHERE on_stage_since_ms IS NOT NULL",
            params![at_ms],
        )?;
        Ok(())
    }

    /// Everyone who attended a lesson, in order of first arrival.
    pub fn attendance(&self, lesson: &str) -> Result<Vec<AttendanceRow>, StoreError> {
        let conn = self.conn();
        let mut people = conn.prepare_cached(
            "SELECT identity, name, role, hands_raised, chat_messages, stage_ms, on_stage_since_ms
             FROM attendance WHERE lesson_id = ?1",
        )?;
        let mut rows: Vec<AttendanceRow> = people
            .query_map(params![lesson], |r| {
                Ok(AttendanceRow {
                    identity: r.get(0)?,
                    name: r.get(1)?,
                    role: r.get(2)?,
                    hands_raised: r.get(3)?,
                    chat_messages: r.get(4)?,
                    stage_ms: r.get(5)?,
                    on_stage_since_ms: r.get(6)?,
                    intervals: Vec::new(),
                })
            })?
            .collect::<Result<_, _>>()?;
        let mut stays = conn.prepare_cached(
            "SELECT identity, joined_at_ms, left_at_ms FROM attendance_intervals
             WHERE lesson_id = ?1 ORDER BY joined_at_ms, rowid",
        )?;
        let intervals = stays.query_map(params![lesson], |r| {
            Ok((
                r.get::<_, String>(0)?,
                Interval {
                    joined_at_ms: r.get(1)?,
                    left_at_ms: r.get(2)?,
                },
            ))
        })?;
        for item in intervals {
            let (identity, interval) = item?;
            if let Some(row) = rows.iter_mut().find(|r| r.identity == identity) {
                row.intervals.push(interval);
            }
        }
        rows.sort_by_key(|r| r.intervals.first().map(|i| i.joined_at_ms));
        Ok(rows)
    }
}

/// Ends open stage spans at `at_ms`: of one participant, or of everyone.
fn end_stage_spans(
    conn: &rusqlite::Connection,
    lesson: &str,
    identity: Option<&str>,
    at_ms: i64,
) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE attendance SET stage_ms = stage_ms + (?3 - on_stage_since_ms), on_stage_since_ms = NULL
         WHERE lesson_id = ?1 AND on_stage_since_ms IS NOT NULL AND (?2 IS NULL OR identity = ?2)",
        params![lesson, identity, at_ms],
    )?;
    Ok(())
}
