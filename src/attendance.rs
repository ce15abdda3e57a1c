//! Attendance as learning records: kept from the lesson events, reported per participant as
//! JSON, CSV, or xAPI statements (verb "attended" with the time present as duration) that a
//! learning record store or credit bank takes directly.

use serde::Serialize;
use serde_json::json;

use crate::events::{EventKind, LessonEvent};
use crate::schedule::rfc3339;
use crate::store::{AttendanceRow, Lesson, Store, StoreError};

/// Updates the stored attendance with one lesson event.
pub fn apply(store: &Store, event: &LessonEvent) -> Result<(), StoreError> {
    let (lesson, at) = (event.lesson.as_str(), event.at_ms);
    match &event.kind {
        EventKind::Joined {
            identity,
            name,
            role,
        } => {
            let role = serde_json::to_value(role)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            store.attendance_joined(lesson, identity, name, &role, at)
        }
        EventKind::Left { identity } => store.attendance_left(lesson, identity, at),
        EventKind::HandRaised { identity } => store.attendance_count(lesson, identity, true),
        EventKind::Chatted { identity } => store.attendance_count(lesson, identity, false),
        EventKind::StageChanged { identities } => store.attendance_stage(lesson, identities, at),
        EventKind::Ended => store.attendance_close(lesson, at),
        EventKind::Opened | EventKind::Started => Ok(()),
    }
}

/// One stay, as reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Stay {
    /// RFC 3339.
    pub joined_at: String,
    /// RFC 3339; `null` while still present.
    pub left_at: Option<String>,
}

/// A participant's attendance, as reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Record {
    /// The school's identifier.
    pub identity: String,
    /// Display name.
    pub name: String,
    /// Role.
    pub role: String,
    /// Every join/leave interval.
    pub intervals: Vec<Stay>,
    /// Total seconds present (stays still open count until `now`).
    pub seconds_present: u64,
    /// Seconds on stage.
    pub seconds_on_stage: u64,
    /// Hands raised.
    pub hands_raised: u32,
    /// Chat messages posted.
    pub chat_messages: u32,
}

/// The records of a lesson as of `now_ms`.
pub fn records(store: &Store, lesson: &str, now_ms: i64) -> Result<Vec<Record>, StoreError> {
    Ok(store
        .attendance(lesson)?
        .into_iter()
        .map(|row| record(row, now_ms))
        .collect())
}

fn record(row: AttendanceRow, now_ms: i64) -> Record {
    let present_ms: i64 = row
        .intervals
        .iter()
        .map(|i| (i.left_at_ms.unwrap_or(now_ms) - i.joined_at_ms).max(0))
        .sum();
    let stage_ms = row.stage_ms + row.on_stage_since_ms.map_or(0, |s| (now_ms - s).max(0));
    Record {
        intervals: row
            .intervals
            .iter()
            .map(|i| Stay {
                joined_at: rfc3339(i.joined_at_ms),
                left_at: i.left_at_ms.map(rfc3339),
            })
            .collect(),
        identity: row.identity,
        name: row.name,
        role: row.role,
        seconds_present: (present_ms / 1000) as u64,
        seconds_on_stage: (stage_ms / 1000) as u64,
        hands_raised: row.hands_raised,
        chat_messages: row.chat_messages,
    }
}

/// The records as CSV (RFC 4180), one line per participant.
pub fn csv(records: &[Record]) -> String {
    let mut out = String::from(
        "identity,name,role,first_joined_at,last_left_at,intervals,seconds_present,seconds_on_stage,hands_raised,chat_messages\r\n",
    );
    for r in records {
        let first = r.intervals.first().map(|i| i.joined_at.as_str());
        let last = r.intervals.last().and_then(|i| i.left_at.as_deref());
        let fields = [
            field(&r.identity),
            field(&r.name),
            field(&r.role),
            first.unwrap_or_default().to_owned(),
            last.unwrap_or_default().to_owned(),
            r.intervals.len().to_string(),
            r.seconds_present.to_string(),
            r.seconds_on_stage.to_string(),
            r.hands_raised.to_string(),
            r.chat_messages.to_string(),
        ];
        out.push_str(&fields.join(","));
        out.push_str("\r\n");
    }
    out
}

/// A CSV field, quoted when it holds a comma, quote or line break; a leading `=`, `+`, `-` or
/// `@` is prefixed with `'` so that spreadsheets do not run it as a formula.
fn field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@']) {
        format!("'{s}")
    } else {
        s.to_owned()
    };
    if s.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

/// The records as xAPI statements: "<participant> attended <lesson>" with the time present as
/// an ISO 8601 duration. Statement ids are stable per lesson and participant, so sending them
/// again does not duplicate them in a learning record store.
pub fn xapi(lesson: &Lesson, records: &[Record], public_url: &str) -> Vec<serde_json::Value> {
    let activity = format!("{public_url}/lessons/{}", lesson.id);
    records
        .iter()
        .map(|r| {
            json!({
                "id": statement_id(&lesson.id, &r.identity),
                "actor": {
                    "objectType": "Agent",
                    "name": r.name,
                    "account": {"homePage": public_url, "name": r.identity},
                },
                "verb": {
                    "id": "http://adlnet.gov/expapi/verbs/attended",
                    "display": {"en-US": "attended", "zh-CN": "出席"},
                },
                "object": {
                    "objectType": "Activity",
                    "id": activity,
                    "definition": {
                        "type": "http://adlnet.gov/expapi/activities/meeting",
                        "name": {"zh-CN": lesson.title, "en-US": lesson.title},
                    },
                },
                "result": {
                    "duration": iso_duration(r.seconds_present),
                    "extensions": {
                        "https://jinke.example/xapi/seconds-on-stage": r.seconds_on_stage,
                        "https://jinke.example/xapi/hands-raised": r.hands_raised,
                        "https://jinke.example/xapi/chat-messages": r.chat_messages,
                    },
                },
                "context": {"extensions": {"https://jinke.example/xapi/role": r.role}},
                "timestamp": r.intervals.first().map(|i| i.joined_at.clone()),
            })
        })
        .collect()
}

/// `PT#H#M#S`.
fn iso_duration(seconds: u64) -> String {
    let (h, m, s) = (seconds / 3600, seconds % 3600 / 60, seconds % 60);
    match (h, m) {
        (0, 0) => format!("PT{s}S"),
        (0, _) => format!("PT{m}M{s}S"),
        _ => format!("PT{h}H{m}M{s}S"),
    }
}

/// A name-based UUID (version 8, RFC 9562) from the lesson and the identity.
fn statement_id(lesson: &str, identity: &str) -> String {
    let digest = aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        format!("jinke-attendance\0{lesson}\0{identity}").as_bytes(),
    );
    let mut b = [0u8; 16];
    b.copy_from_slice(&digest.as_ref()[..16]);
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = crate::hex(&b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use jinke_signaling::Role;

    fn event(at_ms: i64, kind: EventKind) -> LessonEvent {
        LessonEvent {
            lesson: "l".into(),
            at_ms,
            kind,
        }
    }

    #[test]
    fn intervals_stage_time_hands_and_chat_add_up() {
        let dir = std::env::temp_dir().join(format!("jinke-attendance-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let store = Store::open(&dir.join("db.sqlite3")).unwrap();
        let joined = |who: &str, role| EventKind::Joined {
            identity: who.into(),
            name: format!("{who}, \"the\" student"),
            role,
        };
        let stage = |ids: &[&str]| EventKind::StageChanged {
            identities: ids.iter().map(|s| s.to_string()).collect(),
        };
        for e in [
            event(0, joined("t", Role::Teacher)),
            event(1_000, joined("s", Role::Student)),
            event(
                5_000,
                EventKind::HandRaised {
                    identity: "s".into(),
                },
            ),
            event(6_000, stage(&["s"])),
            event(
                7_000,
                EventKind::Chatted {
                    identity: "s".into(),
                },
            ),
            event(36_000, stage(&[])),
            event(
                61_000,
                EventKind::Left {
                    identity: "s".into(),
                },
            ),
            event(121_000, joined("s", Role::Student)),
            event(130_000, stage(&["s"])),
            event(181_000, EventKind::Ended),
        ] {
            apply(&store, &e).unwrap();
        }
        let r = records(&store, "l", 999_999).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!((r[0].identity.as_str(), r[0].seconds_present), ("t", 181));
        let s = &r[1];
        assert_eq!(s.intervals.len(), 2);
        assert_eq!(s.seconds_present, 60 + 60, "two stays of a minute");
        assert_eq!(
            s.seconds_on_stage,
            30 + 51,
            "two spans, the second closed by the end"
        );
        assert_eq!((s.hands_raised, s.chat_messages), (1, 1));
        assert_eq!(
            s.intervals[1].left_at.as_deref(),
            Some("1970-01-01T00:03:01.000Z")
        );

        let table = csv(&r);
        let lines: Vec<&str> = table.split("\r\n").collect();
        assert!(lines[0].starts_with("identity,name,role,"));
        assert_eq!(
            lines[2],
            "s,\"s, \"\"the\"\" student\",student,1970-01-01T00:00:01.000Z,1970-01-01T00:03:01.000Z,2,120,81,1,1"
        );
        assert_eq!(field("=HYPERLINK(1)"), "'=HYPERLINK(1)");

        let lesson = Lesson::new(
            "l".into(),
            "x",
            "书法".into(),
            jinke_signaling::LessonMode::Lecture,
            10,
            0,
        );
        let statements = xapi(&lesson, &r, "https://jinke.example.org");
        assert_eq!(
            statements[1]["verb"]["id"],
            "http://adlnet.gov/expapi/verbs/attended"
        );
        assert_eq!(statements[1]["result"]["duration"], "PT2M0S");
        assert_eq!(statements[1]["actor"]["account"]["name"], "s");
        assert_eq!(
            statements[1]["object"]["id"],
            "https://jinke.example.org/lessons/l"
        );
        let id = statements[1]["id"].as_str().unwrap();
        assert_eq!((id.len(), &id[14..15]), (36, "8"), "a version-8 UUID");
        assert_eq!(id, xapi(&lesson, &r, "https://jinke.example.org")[1]["id"]);
        assert_ne!(id, statements[0]["id"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn durations_are_iso_8601() {
        assert_eq!(iso_duration(0), "PT0S");
        assert_eq!(iso_duration(61), "PT1M1S");
        assert_eq!(iso_duration(3725), "PT1H2M5S");
    }
}
