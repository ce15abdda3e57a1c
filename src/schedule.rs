//! Lesson times: RFC 3339 parsing, the lesson state machine, and weekly or daily series from an
//! RRULE. Pure functions of the time given, so they are tested with simulated time.

use serde::{Deserialize, Serialize};

/// Where a lesson is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LessonState {
    /// Before its lobby opens: nobody may join yet.
    Scheduled,
    /// The lobby is open: students wait (and see a countdown); the teacher may enter.
    Open,
    /// A teacher has started it.
    Live,
    /// Ended for everyone (by a teacher, the school, or its end time plus grace).
    Ended,
    /// Called off before it started.
    Cancelled,
}

/// What decides a lesson's state, Unix seconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timing {
    /// Planned start; `None` for a lesson without a schedule (always open).
    pub starts_at: Option<i64>,
    /// Minutes before `starts_at` that the lobby opens.
    pub lobby_minutes: u32,
    /// When a teacher first entered.
    pub started_at: Option<i64>,
    /// When it ended.
    pub ended_at: Option<i64>,
    /// When it was cancelled.
    pub cancelled_at: Option<i64>,
}

impl Timing {
    /// The state at `now`.
    pub fn state(&self, now: i64) -> LessonState {
        if self.cancelled_at.is_some() {
            LessonState::Cancelled
        } else if self.ended_at.is_some() {
            LessonState::Ended
        } else if self.started_at.is_some() {
            LessonState::Live
        } else if self.opens_at().is_some_and(|opens| now < opens) {
            LessonState::Scheduled
        } else {
            LessonState::Open
        }
    }

    /// When the lobby opens, for a scheduled lesson.
    pub fn opens_at(&self) -> Option<i64> {
        self.starts_at
            .map(|s| s - i64::from(self.lobby_minutes) * 60)
    }
}

/// UTC calendar date and time of Unix seconds: (year, month, day, hour, minute, second).
fn civil(secs: i64) -> (i64, i64, i64, i64, i64, i64) {
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day, rem / 3600, rem % 3600 / 60, rem % 60)
}

/// RFC 3339 UTC time with milliseconds, for Unix milliseconds (`2026-11-29T07:02:09.000Z`).
pub fn rfc3339(ms: i64) -> String {
    let (y, mo, d, h, mi, s) = civil(ms.div_euclid(1000));
    format!(
        "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{:03}Z",
        ms.rem_euclid(1000)
    )
}

/// RFC 3339 UTC time to the second, for Unix seconds (`2026-11-29T07:02:09Z`).
pub fn rfc3339_seconds(secs: i64) -> String {
    let (y, mo, d, h, mi, s) = civil(secs);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

/// iCalendar's UTC date-time form, for Unix seconds (`20261129T070209Z`).
pub fn ical_utc(secs: i64) -> String {
    let (y, mo, d, h, mi, s) = civil(secs);
    format!("{y:04}{mo:02}{d:02}T{h:02}{mi:02}{s:02}Z")
}

/// Parses an RFC 3339 date-time (`2026-12-01T19:00:00+08:00`, `…Z`, optional fraction) into
/// Unix seconds.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let s = s.trim();
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let mut rest = &s[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        rest = &frac[digits..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let (h, m) = rest[1..].split_once(':')?;
            if h.len() != 2 || m.len() != 2 {
                return None;
            }
            sign * (h.parse::<i64>().ok()? * 3600 + m.parse::<i64>().ok()? * 60)
        }
    };
    let valid = (1..=12).contains(&month)
        && (1..=days_in_month(year, month)).contains(&day)
        && hour < 24
        && minute < 60
        && second < 61;
    valid.then(|| {
        days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second.min(59)
            - offset
    })
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Most occurrences one series may produce.
pub const MAX_OCCURRENCES: usize = 200;

/// Why an RRULE was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("rrule: {0}")]
pub struct RruleError(String);

/// The start times of a series: `first` and the repetitions an RRULE describes. Supported:
/// `FREQ=DAILY|WEEKLY`, `INTERVAL`, `COUNT`, `UNTIL` (RFC 3339 or `YYYYMMDDTHHMMSSZ`), and for
/// weekly series `BYDAY` (e.g. `MO,WE`; days in UTC). `COUNT` or `UNTIL` is required, and a
/// series has at most [`MAX_OCCURRENCES`].
pub fn occurrences(first: i64, rrule: &str) -> Result<Vec<i64>, RruleError> {
    let err = |m: &str| RruleError(m.to_owned());
    let (mut freq, mut interval, mut count, mut until, mut byday) = (None, 1i64, None, None, None);
    for part in rrule.trim().trim_start_matches("RRULE:").split(';') {
        let (key, value) = part
            .split_once('=')
            .ok_or_else(|| err(&format!("{part:?} is not KEY=VALUE")))?;
        match key.to_ascii_uppercase().as_str() {
            "FREQ" => freq = Some(value.to_ascii_uppercase()),
            "INTERVAL" => {
                interval = value
                    .parse()
                    .ok()
                    .filter(|i| (1..=52).contains(i))
                    .ok_or_else(|| err("INTERVAL must be 1 to 52"))?;
            }
            "COUNT" => {
                count = Some(
                    value
                        .parse::<usize>()
                        .ok()
                        .filter(|c| (1..=MAX_OCCURRENCES).contains(c))
                        .ok_or_else(|| err("COUNT must be 1 to 200"))?,
                );
            }
            "UNTIL" => {
                until = Some(
                    parse_rfc3339(value)
                        .or_else(|| parse_basic_utc(value))
                        .ok_or_else(|| err("UNTIL must be a UTC date-time"))?,
                );
            }
            "BYDAY" => {
                let days = value
                    .split(',')
                    .map(weekday)
                    .collect::<Option<Vec<i64>>>()
                    .ok_or_else(|| err("BYDAY takes MO,TU,WE,TH,FR,SA,SU"))?;
                byday = Some(days);
            }
            "WKST" => {}
            other => return Err(err(&format!("{other} is not supported"))),
        }
    }
    if count.is_none() && until.is_none() {
        return Err(err("COUNT or UNTIL is required"));
    }
    let step_days = match freq.as_deref() {
        Some("DAILY") if byday.is_none() => interval,
        Some("WEEKLY") => 7 * interval,
        Some("DAILY") => return Err(err("BYDAY is for weekly series")),
        _ => return Err(err("FREQ must be DAILY or WEEKLY")),
    };
    let day = 86_400;
    let first_day = first.div_euclid(day);
    let time_of_day = first.rem_euclid(day);
    // Weekdays of the series (0 = Monday); the first date's by default.
    let weekday_of = |d: i64| (d + 3).rem_euclid(7); // 1970-01-01 was a Thursday.
    let days = byday.unwrap_or_else(|| vec![weekday_of(first_day)]);
    let week_start = first_day - weekday_of(first_day);
    let limit = count.unwrap_or(MAX_OCCURRENCES);
    let mut out = Vec::new();
    let mut period = 0;
    while out.len() < limit {
        let base = week_start + period * step_days;
        let candidates: Vec<i64> = if freq.as_deref() == Some("WEEKLY") {
            let mut ds: Vec<i64> = days.iter().map(|w| base + w).collect();
            ds.sort_unstable();
            ds
        } else {
            vec![first_day + period * step_days]
        };
        for d in candidates {
            let at = d * day + time_of_day;
            if at < first || out.len() >= limit {
                continue;
            }
            if until.is_some_and(|u| at > u) {
                return Ok(out);
            }
            out.push(at);
        }
        period += 1;
        if period > 10 * MAX_OCCURRENCES as i64 {
            break;
        }
    }
    if out.len() > MAX_OCCURRENCES {
        return Err(err("a series has at most 200 lessons"));
    }
    Ok(out)
}

/// `YYYYMMDDTHHMMSSZ`, the iCalendar form.
fn parse_basic_utc(s: &str) -> Option<i64> {
    if s.len() != 16 || !s.ends_with('Z') || s.as_bytes()[8] != b'T' {
        return None;
    }
    parse_rfc3339(&format!(
        "{}-{}-{}T{}:{}:{}Z",
        &s[0..4],
        &s[4..6],
        &s[6..8],
        &s[9..11],
        &s[11..13],
        &s[13..15]
    ))
}

fn weekday(code: &str) -> Option<i64> {
    ["MO", "TU", "WE", "TH", "FR", "SA", "SU"]
        .iter()
        .position(|d| d.eq_ignore_ascii_case(code.trim()))
        .map(|i| i as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: i64 = 1_796_108_400; // 2026-12-01T07:00:00Z, a Tuesday.

    #[test]
    fn times_are_formatted_in_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(rfc3339(1_795_935_729_000), "2026-11-29T07:02:09.000Z");
        assert_eq!(rfc3339_seconds(T), "2026-12-01T07:00:00Z");
        assert_eq!(ical_utc(T), "20261201T070000Z");
        assert_eq!(parse_rfc3339(&rfc3339_seconds(T)), Some(T));
    }

    #[test]
    fn rfc3339_with_offsets_and_fractions() {
        assert_eq!(parse_rfc3339("2026-12-01T07:00:00Z"), Some(T));
        assert_eq!(parse_rfc3339("2026-12-01T15:00:00+08:00"), Some(T));
        assert_eq!(parse_rfc3339("2026-12-01T06:30:00.250-00:30"), Some(T));
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("2024-02-29T00:00:00Z"), Some(1_709_164_800));
        for bad in [
            "2026-02-29T00:00:00Z",
            "2026-12-01 07:00",
            "2026-13-01T00:00:00Z",
            "2026-12-01T07:00:00",
            "2026-12-01T07:00:00+8",
            "tomorrow",
            "",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_lesson_moves_through_its_states_with_time() {
        let mut t = Timing {
            starts_at: Some(T),
            lobby_minutes: 15,
            ..Timing::default()
        };
        assert_eq!(t.state(T - 15 * 60 - 1), LessonState::Scheduled);
        assert_eq!(t.state(T - 15 * 60), LessonState::Open, "the lobby opens");
        assert_eq!(t.state(T + 3600), LessonState::Open, "no teacher yet");
        t.started_at = Some(T - 60);
        assert_eq!(t.state(T), LessonState::Live);
        t.ended_at = Some(T + 3600);
        assert_eq!(t.state(T + 3601), LessonState::Ended);
        let cancelled = Timing {
            cancelled_at: Some(T - 86_400),
            ..t
        };
        assert_eq!(cancelled.state(T), LessonState::Cancelled);
        assert_eq!(
            Timing::default().state(0),
            LessonState::Open,
            "unscheduled: always open"
        );
    }

    #[test]
    fn weekly_series_follow_the_rrule() {
        let week = 7 * 86_400;
        assert_eq!(
            occurrences(T, "FREQ=WEEKLY;COUNT=3").unwrap(),
            vec![T, T + week, T + 2 * week]
        );
        // Tuesdays and Thursdays, four lessons.
        assert_eq!(
            occurrences(T, "FREQ=WEEKLY;BYDAY=TU,TH;COUNT=4").unwrap(),
            vec![T, T + 2 * 86_400, T + week, T + week + 2 * 86_400]
        );
        // Every other week until the end of December.
        assert_eq!(
            occurrences(T, "FREQ=WEEKLY;INTERVAL=2;UNTIL=20261231T235959Z").unwrap(),
            vec![T, T + 2 * week, T + 4 * week]
        );
        assert_eq!(
            occurrences(T, "FREQ=DAILY;COUNT=2").unwrap(),
            vec![T, T + 86_400]
        );
        assert_eq!(occurrences(T, "FREQ=WEEKLY;COUNT=200").unwrap().len(), 200);
        for bad in [
            "FREQ=WEEKLY",
            "FREQ=MONTHLY;COUNT=2",
            "FREQ=WEEKLY;COUNT=201",
            "FREQ=WEEKLY;COUNT=2;BYMONTH=1",
            "FREQ=WEEKLY;BYDAY=XX;COUNT=2",
            "COUNT",
        ] {
            assert!(occurrences(T, bad).is_err(), "{bad}");
        }
    }
}
